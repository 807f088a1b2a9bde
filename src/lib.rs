// The crate's front page is the README: its examples run as doctests.
#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod sync;

pub mod cell;
pub mod error;
mod hash;
pub mod header;
pub mod list;
pub mod map;
mod name;
mod object;
pub mod process;
pub mod ring;
mod slot;
mod words;

pub mod admin;
pub mod array;
pub mod lock;
pub mod pipe;
pub mod segment;

pub use cell::{Atomic, Element};
pub use error::{Error, Result};
pub use ring::{Consumer, PopError, Producer, PushError, Ring};
pub use sync::Ordering;

pub use array::{ArrayGuard, SharedAccumulator, SharedArray, SharedValue};
pub use lock::{LockError, LockGuard, ShmLock};
pub use segment::{CreateOptions, OpenOptions, Segment};

//! shmkit: share state between processes on one machine through shared
//! memory, with no lock where none is needed.
//!
//! * [`SharedArray`] / [`SharedValue`]: atomic cells (`i8`..`u64`, `f32`,
//!   `f64`) in a named or inherited segment; `fetch_add` needs no lock.
//! * [`SharedAccumulator`]: a striped float sum for hot float adds.
//! * Every segment starts with a validated header: opening with the wrong
//!   type, length or version gives an [`Error`], never garbage.
//!
//! ```
//! use shmkit::{SharedValue, Ordering};
//! let name = format!("shmkit-doc-lib-{}", std::process::id());
//! let counter = SharedValue::<u64>::create(&name, 0)?;      // parent
//! let same = SharedValue::<u64>::open(&name)?;              // any process
//! same.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(counter.load(Ordering::Relaxed), 1);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Linux only: shared futexes, `/dev/shm`, memfd and `/proc` are Linux's.
//! The OS calls live in `segment`, `sync` and `process`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]

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

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

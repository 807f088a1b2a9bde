// The crate's front page is the README: its examples run as doctests.
#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod sync;

pub mod cell;
pub mod error;
mod event;
mod fixed_str;
mod hash;
pub mod header;
pub mod identity;
pub mod list;
pub mod map;
mod name;
mod object;
pub mod process;
pub mod queue;
pub mod ring;
mod slot;
mod sole;
mod waiter;
mod words;

pub mod admin;
pub mod array;
pub mod lock;
pub mod pipe;
pub mod record_array;
pub mod segment;
pub mod snapshot;
pub mod worker;

// The porting guide's code runs as doctests too (not part of the API).
#[cfg(doctest)]
#[doc = include_str!("../docs/from-multiprocessing.md")]
struct FromMultiprocessingGuide;

/// The crate shmkit's payload traits come from, re-exported so that your
/// `Pod` types use the very version shmkit does, with no `bytemuck` line
/// of your own. [`record!`] implements them for a record; a type of your
/// own that is not a record uses the derives, told where the crate is, and
/// an identity ([`ShmType`]):
///
/// ```
/// use shmkit::{Pod, ShmType, Zeroable, identity::TypeInfo};
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[bytemuck(crate = "shmkit::bytemuck")]
/// #[repr(C)]
/// struct Tick {
///     price: f64,
///     qty: u64,
/// }
///
/// impl ShmType for Tick {
///     const TYPE: &'static TypeInfo = &TypeInfo::opaque("demo.Tick/1", 16, 8);
/// }
///
/// let ring = shmkit::Ring::<Tick>::new_in_process(4)?;
/// let mut tx = ring.producer()?;
/// let rx = ring.consumer()?;
/// tx.push(Tick { price: 1.5, qty: 2 })?;
/// assert_eq!(rx.pop()?.qty, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use bytemuck;
/// `bytemuck`'s traits and their derives (see [`bytemuck`] for the derives'
/// `crate` attribute).
pub use bytemuck::{Pod, Zeroable};

pub use cell::{Atomic, Element};
pub use error::{Error, Result};
pub use identity::ShmType;
pub use queue::{Queue, QueueOptions};
pub use ring::{Consumer, PopError, Producer, PushError, Ring, SoleConsumer, WaitStrategy};
pub use sync::Ordering;

pub use array::{ArrayGuard, SharedAccumulator, SharedArray, SharedValue};
pub use lock::{LockError, LockGuard, ShmLock};
pub use record_array::RecordArray;
pub use segment::{CreateOptions, OpenOptions, Segment};
pub use snapshot::SharedCell;

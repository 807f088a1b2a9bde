//! The SPMC ring: one producer, any number of consumers (in any processes),
//! each item delivered to exactly one consumer. Python's `Queue` and
//! `JoinableQueue`, without a lock and without a syscall on the fast path.
//!
//! ```
//! use shmkit::ring::{Ring, PopError};
//! let name = format!("shmkit-doc-ring-{}", std::process::id());
//! let ring = Ring::<u64>::create(&name, 8)?;
//! let mut tx = ring.producer()?;
//! let rx = Ring::<u64>::open(&name)?.consumer()?; // any process
//! tx.try_push(7).unwrap();
//! assert_eq!(rx.try_pop(), Ok(7));
//! drop(tx); // closes the ring
//! assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Algorithm
//!
//! `tail` (next sequence to write, stored only by the producer) and `head`
//! (next sequence to claim) are monotonically increasing `u64`s, so there is
//! no ABA; slot `s` lives at `s & (capacity - 1)`. Invariant in a correct
//! ring: `done <= head <= tail <= head + capacity`.
//!
//! * **Push**: if `tail - head < capacity`, copy the item into the slot as
//!   atomic words, then store `tail + 1` with Release (publishes the slot).
//! * **Pop (claim = commit)**: read `head` = h and `tail` (Acquire); copy
//!   slot h; then CAS `head: h -> h + 1`. Only a successful CAS makes the
//!   copy this consumer's; on failure the copy is discarded. So a consumer
//!   killed at any instruction either took its item or left it for others:
//!   nothing is wedged, nothing delivered twice. The producer overwrites slot
//!   h only after reading (Acquire) `head > h`, which follows the winning
//!   CAS (Release), so a consumer that lost the race may read a slot being
//!   overwritten — a stale copy it then discards, never undefined behaviour,
//!   because every slot word is an atomic.
//! * **Sole consumer**: a [`SoleConsumer`] is the only consumer while it
//!   lives (a `sole` word in the control block and the registry, each side
//!   storing its claim, fencing SeqCst and then loading the other's, so a
//!   sole consumer and another consumer never both attach). Nobody races
//!   it for `head`, and its pops take `&mut self`, so it announces and
//!   commits with plain stores in the same order as the CAS path: the
//!   one-producer, one-consumer fast path. A pipe's receiving end is one.
//! * **Fast path**: a consumer keeps the last `tail` it loaded; while `head`
//!   is below it, a pop touches neither the producer's cache line nor any
//!   other the producer writes. The producer keeps the last `head` it loaded
//!   and re-reads it only when the ring looks full.
//! * **Sleeping**: a blocking call spins, then yields, for about 60 us (a
//!   futex sleep and wake-up cost 25-30 us on these machines), then sleeps
//!   on an `EventCount` (`src/event.rs`): a futex word whose low bit
//!   says "someone waits", set by sleepers and cleared by the one waker whose
//!   CAS wins. So the producer makes no syscall while nobody sleeps, and one
//!   per sleeping episode, not one per item, while someone does. Fences on
//!   both sides make "waker saw no sleeper" and "sleeper missed the change"
//!   impossible together (the loom models deadlock if either is removed).
//! * **Death**: the producer's pid and start time are in the control block; a
//!   sleeping consumer checks them every [`LIVENESS_SLICE`] and reports
//!   `Disconnected` once the ring is drained. Consumers register their
//!   tokens in a table; a producer blocked on a full ring, or joining, gives
//!   up when consumers existed and none is alive any more.
//!
//! Shared memory is untrusted: `head`, `tail` and `done` are checked against
//! each other and the capacity held in the local handle (validated at open),
//! every slot index is masked, and an impossible state is an error naming
//! the field (`Corrupt`), never a panic: a sequence at or past 2^63 (292
//! years at 10^9 items a second) is refused when the producer role is
//! claimed and whenever a consumer re-reads `tail`, so no `sequence + n`
//! can overflow, and every difference is checked before it is taken.
//!
//! # Where things live
//!
//! This file holds the shared handle [`Ring`], the checks on what may be
//! created, and the ring's `SegmentObject` implementation (its layout and
//! how a validated segment becomes ring memory; create, open and share are
//! the trait's, written once for every kind). The rest, one concern a file:
//! `control` (the shared control block and the memory it lives in),
//! `producer`, `consumer`, `sole` (the sole consumer's handle), `registry`
//! (who holds the producer role and the sole claim, which consumers are
//! registered, who is dead), `wait` (spin, then sleep in
//! liveness slices), `error`, and [`message`] (byte messages framed on a
//! ring of [`message::Frame`]s, built on the producer's and consumer's own
//! methods).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::identity::ShmType;
use crate::object::{SegmentObject, object_api};
use crate::segment::Segment;
use crate::slot::words_for;
use crate::sync::AtomicU64;

mod consumer;
pub(crate) use consumer::take_n;
pub(crate) mod control;
mod error;
mod frame_copy;
mod iter;
pub mod message;
mod producer;
mod registry;
#[cfg(feature = "serde")]
pub mod serde_msg;
mod sole;
pub(crate) mod wait;

pub use consumer::Consumer;
pub use control::{MAX_CONSUMERS, RingState};
pub use error::{JoinError, JoinReport, PopError, PushError, SendError, TaskDoneError};
pub use iter::{Iter, TryIter};
pub use producer::Producer;
pub use sole::SoleConsumer;
pub use wait::{LIVENESS_SLICE, WaitStrategy};

use control::{Backing, RingControl, RingMem};

/// Largest capacity accepted.
pub const MAX_CAPACITY: u64 = 1 << 30;

/// A handle on a ring of `T`s: make producers and consumers from it. Clones
/// share the ring; the segment's name goes when the last handle (ring,
/// producer or consumer) of the creating process is dropped.
///
/// ```
/// use shmkit::ring::Ring;
/// let name = format!("shmkit-doc-ring-handle-{}", std::process::id());
/// let ring = Ring::<[f32; 4]>::create(&name, 16)?; // a power of two
/// let mut tx = ring.producer()?;                   // one producer at a time
/// let rx = ring.consumer()?;                       // any number, any process
/// tx.push([1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(ring.len(), 1);
/// assert_eq!(rx.pop()?, [1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the creating process's last handle on a ring removes its name"]
pub struct Ring<T: Pod> {
    mem: Arc<RingMem>,
    /// Neither `Send` nor `Sync` by itself: the impls below say when.
    _elem: PhantomData<*const T>,
}

// SAFETY: a Ring holds no `T`, only shared ring memory (Send + Sync); its
// producers and consumers move `T`s between threads, so `T: Send`.
unsafe impl<T: Pod + Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` only makes handles and reads atomics.
unsafe impl<T: Pod + Send> Sync for Ring<T> {}

impl<T: Pod> Clone for Ring<T> {
    fn clone(&self) -> Self {
        Ring {
            mem: self.mem.clone(),
            _elem: PhantomData,
        }
    }
}

fn check_capacity(capacity: usize) -> Result<u64> {
    let cap = capacity as u64;
    if cap == 0 || cap > MAX_CAPACITY || !cap.is_power_of_two() {
        return Err(Error::InvalidArgument {
            what: format!(
                "ring capacity {capacity} must be a power of two from 1 to {MAX_CAPACITY} \
                 (the next one up is {})",
                cap.max(1)
                    .checked_next_power_of_two()
                    .unwrap_or(MAX_CAPACITY)
            ),
        });
    }
    Ok(cap)
}

fn check_elem<T: Pod>() -> Result<()> {
    if size_of::<T>() == 0 {
        return Err(Error::InvalidArgument {
            what: "ring items must not be zero-sized".into(),
        });
    }
    Ok(())
}

impl<T: Pod> Ring<T> {
    /// A ring on the heap, for threads of one process. (loom models run the
    /// algorithm on this; across processes use [`Ring::create`].)
    pub fn new_in_process(capacity: usize) -> Result<Self> {
        check_elem::<T>()?;
        let cap = check_capacity(capacity)?;
        let words = words_for(size_of::<T>());
        Ok(Ring {
            mem: Arc::new(RingMem::on_heap(cap, words)),
            _elem: PhantomData,
        })
    }

    /// Claim the producer role. Fails with `ProducerExists` while another
    /// live producer holds it (a dead producer's role is taken over, and its
    /// published items stay), and with `Closed` once the ring was closed.
    pub fn producer(&self) -> Result<Producer<T>> {
        let claim = self.mem.claim_producer()?;
        Ok(Producer::new(self.mem.clone(), claim))
    }

    /// Register a consumer. Any number may exist, in any processes, up to
    /// [`MAX_CONSUMERS`] alive at once.
    pub fn consumer(&self) -> Result<Consumer<T>> {
        let (slot, me) = self.mem.register_consumer()?;
        Ok(Consumer::new(self.mem.clone(), slot, me))
    }

    /// Register the ring's only consumer: [`SoleConsumer`], whose pops
    /// take no read-modify-write (the one-producer, one-consumer fast
    /// path). `SoleConsumer` while another sole consumer lives,
    /// `ConsumerExists` while any other consumer is registered; and while it
    /// lives, [`consumer`](Self::consumer) fails with `SoleConsumer`.
    pub fn sole_consumer(&self) -> Result<SoleConsumer<T>> {
        Ok(SoleConsumer::new(self.consumer_holding_sole()?))
    }

    /// A registered consumer holding the sole claim (its pops still by
    /// CAS until `into_sole_mode`).
    pub(crate) fn consumer_holding_sole(&self) -> Result<Consumer<T>> {
        let (slot, me) = self.mem.register_consumer()?;
        let mut inner = Consumer::new(self.mem.clone(), slot, me);
        // On error `inner` drops and unregisters.
        inner.claim_sole()?;
        Ok(inner)
    }

    /// The capacity (a power of two).
    pub fn capacity(&self) -> usize {
        self.mem.cap() as usize
    }

    /// Items in the ring right now (a racy snapshot).
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether the ring looks empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer closed the ring.
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// A snapshot of the shared state (for tools and diagnostics).
    pub fn state(&self) -> RingState {
        self.mem.state()
    }
}

/// Bytes of the control block before the slots.
const CTRL: u64 = size_of::<RingControl>() as u64;

impl<T: ShmType> SegmentObject for Ring<T> {
    const KIND: Kind = Kind::Ring;
    type Params = usize;

    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }

    fn len_of(&capacity: &usize) -> Result<u64> {
        check_elem::<T>()?;
        check_capacity(capacity)
    }

    /// The control block, then `capacity` slots of whole words; `None` for
    /// a capacity that is zero, not a power of two or over [`MAX_CAPACITY`].
    /// (The same for every `T`: admin validates rings of any item type with
    /// `Ring::<u8>`'s.)
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        if h.len == 0 || h.len > MAX_CAPACITY || !h.len.is_power_of_two() {
            return None;
        }
        let words = words_for(h.elem.size as usize) as u64;
        align_body(CTRL.checked_add(h.len.checked_mul(words)?.checked_mul(8)?)?)
    }

    // `init` stays the default: a fresh mapping is zero-filled, and all-zero
    // is a valid empty, open control block (every field is an atomic
    // integer).

    fn from_segment(seg: Segment) -> Self {
        Ring {
            mem: Arc::new(mem_of(seg)),
            _elem: PhantomData,
        }
    }

    fn backing(&self) -> Option<&Segment> {
        self.mem.segment()
    }
}

object_api!(impl [T: ShmType] Ring<T>, "ring", (capacity: usize), open_with);

impl<T: Pod> Ring<T> {
    /// The segment underneath (`None` for an in-process ring). The name
    /// of a ring made by `create` is removed when the creating process's
    /// last handle on it (ring, producer or consumer) is dropped; use
    /// `create_with` and `CreateOptions { keep: true, .. }` to keep it.
    pub fn segment(&self) -> Option<&Segment> {
        self.mem.segment()
    }
}

/// The state of a ring segment opened without knowing its item type
/// (for `shmkit inspect`); the segment must have been validated as a ring.
pub fn state_of(seg: Segment) -> RingState {
    mem_of(seg).state()
}

/// Ring memory over a segment validated (or sized) by `body_size`.
fn mem_of(seg: Segment) -> RingMem {
    let cap = seg.info().len;
    let words = words_for(seg.info().elem.size as usize);
    let body = seg.body_ptr();
    let label = seg.name().unwrap_or("<anonymous>").to_owned();
    // SAFETY: the body is at least CTRL + cap*words*8 bytes (validated
    // by body_size at open, sized so at create), 128-byte aligned.
    let (ctrl, slots) = unsafe { (body as *mut RingControl, body.add(CTRL as usize)) };
    let ctrl = NonNull::new(ctrl).expect("mapping is not null");
    let slots = NonNull::new(slots as *mut AtomicU64).expect("mapping is not null");
    // SAFETY: `ctrl` and `slots` point into the body `seg` maps (sized as
    // above, so a RingControl then cap*words atomics), aligned, and the
    // mapping lives and stays put as long as the Backing that owns `seg`;
    // cap is a power of two (body_size or check_capacity).
    unsafe { RingMem::from_parts(ctrl, slots, cap, words, label, Backing::Shared(seg)) }
}

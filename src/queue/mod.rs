//! The multi-producer, multi-consumer [`Queue`]: Python's
//! `multiprocessing.Queue` and `JoinableQueue` across processes, lock-free,
//! and safe against any process being killed at any instruction.
//!
//! ```
//! use shmkit::queue::{Queue, QueueOptions};
//! let name = format!("shmkit-doc-queue-{}", std::process::id());
//! // 64 slots per producer, at most 4 producers and 8 consumers at once.
//! let q = Queue::<u64>::create(&name, QueueOptions::new(64, 4, 8))?;
//! let mut tx = q.producer()?;                  // in any process
//! let rx = Queue::<u64>::open(&name)?.consumer()?;
//! tx.push(7)?;
//! assert_eq!(rx.pop()?, 7);
//! rx.task_done()?;
//! let report = q.join()?;                      // from any handle
//! assert_eq!(report.abandoned, 0);
//! q.close();                                   // for everyone
//! assert!(rx.pop().is_err());                  // Disconnected
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which to use
//!
//! One producer: the [`Ring`](crate::Ring) — one lane, no scan, the fastest
//! path. Several producers, or producers that come and go, or `join` from
//! any process: `Queue`. One consumer (a collector of many workers'
//! results): [`Queue::sole_consumer`], whose pops take no
//! read-modify-write ([`SoleConsumer`]).
//!
//! # Design: a lane per producer
//!
//! The segment holds `producers` lanes; each is the ring's single-producer,
//! multi-consumer algorithm (`src/ring/mod.rs`) over `cap_per_producer`
//! slots. A producer owns a lane while it lives (its `ProcToken`, pid and
//! start time, CAS'd into the lane's owner word); consumers scan the lanes
//! round-robin, starting at the lane they last took from for up to 32
//! claims in a row and then past it (so a busy lane is one look a claim,
//! and no producer waits more than 32 claims of another), and claim from a
//! lane by one CAS of its head (claim = commit).
//!
//! Of the two designs the issue names, this one was chosen over one shared
//! ring whose slots are claimed by CAS with the producer's identity in the
//! claim:
//!
//! * **A killed producer costs nothing to skip.** A producer writes its
//!   slots and only then publishes them with one Release store of its own
//!   lane's tail; a producer killed at any instruction has published whole
//!   items or nothing, so no consumer can see a half-written item, and no
//!   consumer ever waits on a claimed-but-unwritten slot. A shared ring has
//!   to detect such a slot (a liveness check, a /proc read, on the pop
//!   path), pad it, and make every consumer behind it wait until it is
//!   padded; here the dead producer's lane simply stops growing.
//! * **No CAS between producers.** A push is the ring's push: no
//!   read-modify-write at all, and producers never share a cache line.
//! * **Per-producer FIFO is free**: one lane, one producer, in order.
//! * **The dead's lane is recycled by takeover.** A new producer may CAS a
//!   dead owner's token out of a lane and continue from its tail: the dead
//!   one's published items stay ahead of the new one's and are delivered
//!   (nothing is lost but the item it was writing), and its unpublished
//!   half-slot is overwritten. So a lane needs no draining or retiring
//!   state, and the producer limit counts live producers only. A new
//!   producer prefers a free lane that is empty, so that it does not start
//!   behind (and block on) a departed producer's items while an empty
//!   lane is free.
//!
//! The costs: the limit on producers is fixed at creation (the segment
//! has a lane for each), memory is `producers * cap_per_producer` slots,
//! and a consumer on a mostly empty queue scans every lane (two loads per
//! empty lane) before it sleeps. Order between producers is not defined (as
//! in Python: items from several processes arrive interleaved).
//!
//! # JoinableQueue
//!
//! `done` counts `task_done` calls; each consumer's registry entry counts
//! the items it holds (taken, not yet done). A consumer announces a claim
//! in its entry *before* the CAS that makes it, and takes it back if the CAS
//! fails; `task_done` counts the item done *before* it stops holding it. So
//! a consumer killed at any instruction leaves every item it took counted
//! (as done, or as held by a dead process), never in neither; `join` (from
//! any handle: producer, consumer, or a [`Queue`] opened only to observe)
//! returns once `done + abandoned` covers every item pushed, reporting the
//! abandoned ones ([`JoinReport`]). The price of that order: a consumer
//! killed inside those two windows (a few instructions) is counted holding
//! an item another consumer then takes, or one it had marked done: the
//! report may then be one item high and the join return that much early —
//! never a hang. A consumer dropped while holding items abandons them too.
//!
//! `task_done` is per consumer: a consumer marks its own items, and one
//! that marks more than it took gets [`TaskDoneError::TooMany`]. On a queue
//! of byte messages ([`message`]) it marks one whole message; the shared
//! counts, and so `JoinReport::abandoned`, are in frames.
//!
//! # Ending
//!
//! [`close`](Queue::close) (from any handle) ends the queue for everyone:
//! pushes fail with `Closed`, pops drain what is left and then report
//! `Disconnected`. An item pushed at the same moment as the close may stay
//! in the queue undelivered (the producer had checked before the close).
//! With [`QueueOptions::disconnect_when_producers_gone`], pops also report
//! `Disconnected` once producers attached, every one has left or died, and
//! the queue is drained; a new producer may still attach later.
//!
//! # Shared memory is untrusted
//!
//! The geometry (capacity, lanes, registry size) comes from the header's
//! length, checked against the file size at open and never re-read. Every
//! lane's head and tail are checked against each other and the capacity
//! before use, sums of counters are taken in `u128`, and an impossible
//! value is an error naming the lane and field (`Corrupt`), never a panic
//! or an endless wait.
//!
//! # Where things live
//!
//! This file: [`QueueOptions`], the shared handle [`Queue`], `join`, and
//! the `SegmentObject` implementation. `mem` (the layout, lanes, registry,
//! who is gone, whether a join is over), `producer`, `consumer`, `aio`
//! (their async forms), `message` (byte messages on a queue of
//! [`Frame`](crate::ring::message::Frame)s).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::identity::ShmType;
use crate::object::{SegmentObject, object_api};
use crate::process::ProcToken;
use crate::ring::wait::sleep_slice;
use crate::segment::Segment;
use crate::slot::words_for;
use crate::sync::Ordering;

mod aio;
mod consumer;
mod mem;
pub mod message;
mod producer;
mod registry;
mod sole;

pub use crate::ring::{JoinError, JoinReport, PopError, PushError, TaskDoneError};
pub use consumer::Consumer;
pub use producer::Producer;
pub use sole::SoleConsumer;

use mem::{DISCONNECT_WHEN_PRODUCERS_GONE, Geometry, QueueMem};

/// Largest capacity per producer.
pub const MAX_CAPACITY: u64 = 1 << 30;
/// Most producers (lanes) a queue may be created with.
pub const MAX_PRODUCERS: usize = if crate::sync::MODELLED { 4 } else { 1024 };
/// Most consumers a queue may be created with.
pub const MAX_CONSUMERS: usize = if crate::sync::MODELLED { 4 } else { 1024 };

/// A queue's limits, fixed at creation: slots per producer (a power of
/// two), and how many producers and consumers may be attached at once.
///
/// ```
/// use shmkit::queue::QueueOptions;
/// let opts = QueueOptions::new(256, 4, 16).disconnect_when_producers_gone(true);
/// assert_eq!(opts.producers(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    cap_per_producer: usize,
    producers: usize,
    consumers: usize,
    disconnect_when_producers_gone: bool,
}

impl QueueOptions {
    /// `cap_per_producer` slots in each producer's lane (a power of two up
    /// to [`MAX_CAPACITY`]), at most `producers` producers (up to
    /// [`MAX_PRODUCERS`]) and `consumers` consumers (up to
    /// [`MAX_CONSUMERS`]) attached at once. Checked at create.
    pub fn new(cap_per_producer: usize, producers: usize, consumers: usize) -> Self {
        QueueOptions {
            cap_per_producer,
            producers,
            consumers,
            disconnect_when_producers_gone: false,
        }
    }

    /// Pops report `Disconnected` once producers attached, every one of
    /// them has left (dropped its handle) or died, and the queue is empty.
    /// Off by default: then only [`Queue::close`] ends the queue, and an
    /// empty queue without producers waits for one.
    pub fn disconnect_when_producers_gone(mut self, on: bool) -> Self {
        self.disconnect_when_producers_gone = on;
        self
    }

    /// Slots per producer.
    pub fn cap_per_producer(&self) -> usize {
        self.cap_per_producer
    }

    /// The producer limit.
    pub fn producers(&self) -> usize {
        self.producers
    }

    /// The consumer limit.
    pub fn consumers(&self) -> usize {
        self.consumers
    }

    /// The header's length: the three limits packed (capacity in bits
    /// 0-31, producers 32-47, consumers 48-63).
    fn pack(&self) -> Result<u64> {
        let cap = self.cap_per_producer as u64;
        let bad = |what: String| Err(Error::InvalidArgument { what });
        if cap == 0 || cap > MAX_CAPACITY || !cap.is_power_of_two() {
            return bad(format!(
                "queue capacity per producer {cap} must be a power of two from 1 to {MAX_CAPACITY}"
            ));
        }
        if self.producers == 0 || self.producers > MAX_PRODUCERS {
            return bad(format!(
                "a queue's producer limit {} must be from 1 to {MAX_PRODUCERS}",
                self.producers
            ));
        }
        if self.consumers == 0 || self.consumers > MAX_CONSUMERS {
            return bad(format!(
                "a queue's consumer limit {} must be from 1 to {MAX_CONSUMERS}",
                self.consumers
            ));
        }
        Ok(cap | (self.producers as u64) << 32 | (self.consumers as u64) << 48)
    }

    fn flags(&self) -> u32 {
        if self.disconnect_when_producers_gone {
            DISCONNECT_WHEN_PRODUCERS_GONE
        } else {
            0
        }
    }
}

/// The geometry a header's length and element size describe, if possible.
fn unpack(len: u64, elem_size: u32) -> Option<Geometry> {
    let cap = len & 0xFFFF_FFFF;
    let producers = ((len >> 32) & 0xFFFF) as usize;
    let consumers = (len >> 48) as usize;
    let ok = cap > 0
        && cap <= MAX_CAPACITY
        && cap.is_power_of_two()
        && (1..=MAX_PRODUCERS).contains(&producers)
        && (1..=MAX_CONSUMERS).contains(&consumers)
        && elem_size > 0;
    ok.then(|| Geometry {
        cap,
        producers,
        consumers,
        words: words_for(elem_size as usize),
    })
}

/// A handle on a queue of `T`s: make producers and consumers from it, and
/// join, close or observe it. Clones share the queue; the segment's name
/// goes when the creating process's last handle is dropped (unless kept).
///
/// A `Queue` opened by a process that neither produces nor consumes is an
/// observer: it may [`join`](Self::join), [`close`](Self::close) and read
/// the [`state`](Self::state).
#[derive(Debug)]
#[must_use = "dropping the creating process's last handle on a queue removes its name"]
pub struct Queue<T: Pod> {
    mem: Arc<QueueMem>,
    _elem: PhantomData<*const T>,
}

// SAFETY: a Queue holds no `T`, only shared memory (Send + Sync); its
// producers and consumers move `T`s between threads, so `T: Send`.
unsafe impl<T: Pod + Send> Send for Queue<T> {}
// SAFETY: as above; `&Queue` only makes handles and reads atomics.
unsafe impl<T: Pod + Send> Sync for Queue<T> {}

impl<T: Pod> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            mem: self.mem.clone(),
            _elem: PhantomData,
        }
    }
}

impl<T: Pod> Queue<T> {
    /// A queue on the heap, for threads of one process (loom models run the
    /// algorithm on this; across processes use [`Queue::create`]).
    pub fn new_in_process(opts: QueueOptions) -> Result<Self> {
        if size_of::<T>() == 0 {
            return Err(Error::InvalidArgument {
                what: "queue items must not be zero-sized".into(),
            });
        }
        let len = opts.pack()?;
        let geo = unpack(len, size_of::<T>() as u32).expect("checked by pack");
        Ok(Queue {
            mem: Arc::new(QueueMem::on_heap(geo, opts.flags())),
            _elem: PhantomData,
        })
    }

    /// Attach a producer: it claims a free lane (or a dead producer's).
    /// `TooManyProducers` when every lane is held by a live producer,
    /// `Closed` once the queue was closed.
    pub fn producer(&self) -> Result<Producer<T>> {
        Producer::new(self.mem.clone())
    }

    /// Attach a consumer. `TooManyConsumers` past the limit.
    pub fn consumer(&self) -> Result<Consumer<T>> {
        Consumer::new(self.mem.clone())
    }

    /// Register the queue's only consumer: [`SoleConsumer`] (many
    /// producers, one collector), whose pops take no read-modify-write.
    /// `SoleConsumer` while another sole consumer lives, `ConsumerExists`
    /// while any other consumer is registered; and while it lives,
    /// [`consumer`](Self::consumer) fails with `SoleConsumer`.
    pub fn sole_consumer(&self) -> Result<SoleConsumer<T>> {
        let mut inner = Consumer::new(self.mem.clone())?;
        // On error `inner` drops and unregisters.
        inner.claim_sole()?;
        Ok(SoleConsumer::new(inner))
    }

    /// Close the queue for everyone: pushes fail with `Closed`; pops take
    /// what is left, then report `Disconnected`. Idempotent.
    pub fn close(&self) {
        self.mem.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// Wait until every item pushed so far, by any producer, was marked
    /// done or abandoned (taken by a consumer that died or left before
    /// marking it done): Python's `JoinableQueue.join`, which a killed
    /// consumer cannot wedge. `Disconnected` if consumers existed, all are
    /// gone, and items were never taken.
    ///
    /// ```
    /// use shmkit::queue::{Queue, QueueOptions};
    /// let q = Queue::<u32>::new_in_process(QueueOptions::new(4, 1, 2))?;
    /// let mut tx = q.producer()?;
    /// let (a, b) = (q.consumer()?, q.consumer()?);
    /// tx.push_slice(&[1, 2])?;
    /// a.pop()?;
    /// a.task_done()?;
    /// b.pop()?;
    /// drop(b); // leaves holding item 2
    /// assert_eq!(q.join()?.abandoned, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> std::result::Result<JoinReport, JoinError> {
        join_until(&self.mem, None)
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<JoinReport, JoinError> {
        join_until(&self.mem, crate::ring::wait::deadline_after(timeout))
    }

    /// Items waiting right now (a racy snapshot).
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether the queue looks empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots per producer.
    pub fn cap_per_producer(&self) -> usize {
        self.mem.geo().cap as usize
    }

    /// The producer limit (lanes).
    pub fn max_producers(&self) -> usize {
        self.mem.geo().producers
    }

    /// The consumer limit.
    pub fn max_consumers(&self) -> usize {
        self.mem.geo().consumers
    }

    /// A snapshot of the shared state (for tools and diagnostics).
    pub fn state(&self) -> QueueState {
        state_of_mem(&self.mem)
    }

    /// The segment underneath (`None` for an in-process queue).
    pub fn segment(&self) -> Option<&Segment> {
        self.mem.segment()
    }
}

/// Wait on `all_done` until `joined` says so, the deadline passes, or the
/// consumers are all gone with items untaken.
fn join_until(
    mem: &QueueMem,
    deadline: Option<Instant>,
) -> std::result::Result<JoinReport, JoinError> {
    loop {
        if let Some(r) = mem.joined()? {
            return Ok(r);
        }
        let key = mem.ctrl().cold.all_done.prepare();
        match mem.joined()? {
            Some(r) => return Ok(r),
            None if mem.consumers_gone() => {
                // The last consumer may have finished just before leaving.
                return mem.joined()?.ok_or(JoinError::Disconnected);
            }
            // Woken by task_done and folds; at least every liveness slice,
            // since a consumer's death wakes nobody.
            None => match sleep_slice(deadline) {
                None => return Err(JoinError::Timeout),
                slice => mem.ctrl().cold.all_done.wait(key, slice),
            },
        }
    }
}

/// One lane as [`QueueState`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneState {
    /// Next sequence to claim.
    pub head: u64,
    /// Next sequence its producer writes.
    pub tail: u64,
    /// Its producer's pid and whether it is alive; `None` when free.
    pub owner: Option<(u32, bool)>,
}

/// A snapshot of a queue's shared state (Relaxed loads, field by field,
/// shown as read: a corrupt queue shows its impossible values).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueState {
    /// Slots per lane.
    pub cap_per_producer: u64,
    /// The lanes, one per possible producer.
    pub lanes: Vec<LaneState>,
    /// Registered consumers: pid, alive, items held.
    pub consumers: Vec<(u32, bool, u64)>,
    /// Items marked done.
    pub done: u64,
    /// Items abandoned and folded (dead consumers' entries not yet reused
    /// are in `consumers`).
    pub abandoned: u64,
    /// Whether the queue was closed.
    pub closed: bool,
    /// Whether pops end once the producers are gone.
    pub disconnect_when_producers_gone: bool,
}

fn state_of_mem(mem: &QueueMem) -> QueueState {
    let c = mem.ctrl();
    QueueState {
        cap_per_producer: mem.geo().cap,
        lanes: mem
            .lanes()
            .map(|l| LaneState {
                head: l.head.load(Ordering::Relaxed),
                tail: l.tail.load(Ordering::Relaxed),
                owner: ProcToken::from_raw(l.owner.load(Ordering::Relaxed))
                    .map(|t| (t.pid(), t.is_alive())),
            })
            .collect(),
        consumers: mem
            .entries()
            .filter_map(|e| {
                let t = ProcToken::from_raw(e.token.load(Ordering::Relaxed))?;
                Some((t.pid(), t.is_alive(), e.held.load(Ordering::Relaxed)))
            })
            .collect(),
        done: c.done.load(Ordering::Relaxed),
        abandoned: c.cold.abandoned.load(Ordering::Relaxed),
        closed: mem.closed(),
        disconnect_when_producers_gone: mem.disconnect_when_producers_gone(),
    }
}

/// The state of a queue segment opened without knowing its item type (for
/// `shmkit inspect`); the segment must have been validated as a queue.
pub fn state_of(seg: Segment) -> QueueState {
    state_of_mem(&mem_of(seg))
}

/// Queue memory over a segment validated (or sized) by `body_size`.
fn mem_of(seg: Segment) -> QueueMem {
    let geo = unpack(seg.info().len, seg.info().elem.size).expect("validated by body_size");
    // SAFETY: body_size accepted this header (at open) or sized the body
    // from it (at create): the body holds what `geo.offsets()` describes,
    // 128-byte aligned.
    unsafe { QueueMem::in_segment(seg, geo) }
}

impl<T: ShmType> SegmentObject for Queue<T> {
    const KIND: Kind = Kind::Queue;
    type Params = QueueOptions;

    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }

    fn len_of(opts: &QueueOptions) -> Result<u64> {
        if size_of::<T>() == 0 {
            return Err(Error::InvalidArgument {
                what: "queue items must not be zero-sized".into(),
            });
        }
        opts.pack()
    }

    /// The control block, the lanes, the consumer registry, then
    /// `producers * cap` slots; `None` for limits out of range. The same
    /// for every `T` of one size (admin validates any queue with
    /// `Queue::<u8>`'s, which reads the size from the header).
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        let geo = unpack(h.len, h.elem.size)?;
        align_body(geo.offsets()?.3)
    }

    fn init(seg: &Segment, opts: &QueueOptions) -> Result<()> {
        // The body is zeroed and not yet published; only the flags differ
        // from zero.
        // Relaxed: the segment is published after init (its header store).
        mem_of_ref(seg)
            .cold
            .flags
            .store(opts.flags(), Ordering::Relaxed);
        Ok(())
    }

    fn from_segment(seg: Segment) -> Self {
        Queue {
            mem: Arc::new(mem_of(seg)),
            _elem: PhantomData,
        }
    }

    fn backing(&self) -> Option<&Segment> {
        self.mem.segment()
    }
}

/// The control block of a segment being initialised.
fn mem_of_ref(seg: &Segment) -> &mem::QueueControl {
    // SAFETY: the body starts with a QueueControl (sized by body_size),
    // 128-byte aligned, all atomics; it lives as long as `seg`.
    unsafe { &*(seg.body_ptr() as *const mem::QueueControl) }
}

object_api!(impl [T: ShmType] Queue<T>, "queue", (opts: QueueOptions), open_with);

#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod tests;

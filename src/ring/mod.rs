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
//! * **Fast path**: a consumer keeps the last `tail` it loaded; while `head`
//!   is below it, a pop touches neither the producer's cache line nor any
//!   other the producer writes. The producer keeps the last `head` it loaded
//!   and re-reads it only when the ring looks full.
//! * **Sleeping**: a blocking call spins, then yields, for about 60 us (a
//!   futex sleep and wake-up cost 25-30 us on these machines), then sleeps
//!   on an [`EventCount`](crate::sync::EventCount): a futex word whose low bit
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
//! every slot index is masked, and an impossible state is an error.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};
use crate::process::ProcToken;
use crate::slot::{read_slot, words_for, write_slot};
use crate::sync::{AtomicU32, AtomicU64, EventCount, Ordering, spin_loop};

/// Consumers recorded per ring (for dead-peer detection and `shmkit inspect`).
/// loom: 4, since every registry scan is one modelled load per entry.
pub const MAX_CONSUMERS: usize = if crate::sync::MODELLED { 4 } else { 64 };
/// How often a sleeper checks whether its peers are still alive.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(200);
/// Largest capacity accepted.
pub const MAX_CAPACITY: u64 = 1 << 30;
/// How long a blocking call spins and yields before it sleeps. A sleep and
/// its wake-up cost 25-30 us on an idle-halting core, so waiting about twice
/// that first is the classic competitive choice; yielding (not just
/// spinning) lets a peer pinned to the same core run. loom: no spinning (it
/// would only multiply the explored interleavings).
const SPIN_BUDGET: Duration = Duration::from_micros(if crate::sync::MODELLED { 0 } else { 60 });

/// Spin, then yield, until the budget is spent; `false` means "sleep now".
struct Waiting {
    backoff: crossbeam_utils::Backoff,
    since: Option<std::time::Instant>,
}

impl Waiting {
    fn new() -> Self {
        Waiting {
            backoff: crossbeam_utils::Backoff::new(),
            since: None,
        }
    }

    fn keep_spinning(&mut self) -> bool {
        if SPIN_BUDGET.is_zero() {
            return false;
        }
        if !self.backoff.is_completed() {
            self.backoff.snooze();
            return true;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < SPIN_BUDGET {
            std::thread::yield_now();
            return true;
        }
        false
    }
}

/// The ring's shared control block. Fields written on every operation sit on
/// cache lines of their own.
#[repr(C)]
#[derive(Debug)]
pub struct RingControl {
    /// Next sequence the producer writes; stored only by the producer
    /// (Release, publishing the slots below it). Range `head ..= head + cap`.
    tail: CachePadded<AtomicU64>,
    /// Next sequence to claim; advanced only by a consumer's CAS (Release,
    /// handing the slot back to the producer). Range `done ..= tail`.
    head: CachePadded<AtomicU64>,
    /// Items marked done with `task_done`; range `0 ..= head`.
    done: CachePadded<AtomicU64>,
    /// Consumers sleep on this; the producer notifies it after a push or a
    /// close (a syscall only when a consumer registered to sleep).
    not_empty: CachePadded<EventCount>,
    /// Rarely written state.
    cold: CachePadded<Cold>,
}

#[repr(C)]
#[derive(Debug)]
struct Cold {
    /// Consumers between registering to sleep and waking up: a statistic for
    /// tools (a consumer killed asleep leaves it one too high).
    consumers_sleeping: AtomicU32,
    /// 1 while the producer sleeps on `not_full`: a statistic for tools.
    producer_sleeping: AtomicU32,
    /// Processes sleeping in `join`.
    joiners: AtomicU32,
    /// 0 open, 1 closed (Release by `close`, after the last tail store).
    closed: AtomicU32,
    /// The producer sleeps on this while the ring is full; consumers notify.
    not_full: EventCount,
    /// Joiners sleep on this; `task_done` notifies.
    all_done: EventCount,
    _pad: AtomicU32,
    /// The producer's `ProcToken`, 0 when nobody holds the role.
    producer: AtomicU64,
    /// Consumers that ever registered (monotonic).
    consumers_seen: AtomicU64,
    /// Live consumers' tokens; 0 = free. A dead process's slot is reusable.
    consumers: [AtomicU64; MAX_CONSUMERS],
}

impl Default for RingControl {
    fn default() -> Self {
        let pad = |v| CachePadded::new(AtomicU64::new(v));
        RingControl {
            tail: pad(0),
            head: pad(0),
            done: pad(0),
            not_empty: CachePadded::new(EventCount::new()),
            cold: CachePadded::new(Cold {
                consumers_sleeping: AtomicU32::new(0),
                producer_sleeping: AtomicU32::new(0),
                joiners: AtomicU32::new(0),
                closed: AtomicU32::new(0),
                not_full: EventCount::new(),
                all_done: EventCount::new(),
                _pad: AtomicU32::new(0),
                producer: AtomicU64::new(0),
                consumers_seen: AtomicU64::new(0),
                consumers: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }
}

/// What owns the ring's memory.
#[derive(Debug)]
enum Backing {
    Shared(crate::segment::Segment),
    Heap {
        _ctrl: Box<RingControl>,
        _slots: Box<[AtomicU64]>,
    },
}

/// The ring's memory and its validated geometry, shared by the handles.
#[derive(Debug)]
pub(crate) struct RingMem {
    ctrl: NonNull<RingControl>,
    slots: NonNull<AtomicU64>,
    /// Capacity, a power of two, validated at open; never re-read from shared
    /// memory.
    cap: u64,
    /// Words per slot.
    words: usize,
    label: String,
    _backing: Backing,
}

// SAFETY: the pointers target memory owned by `_backing` (a mapping or
// boxes) that lives as long as RingMem and is only reached through atomics.
unsafe impl Send for RingMem {}
// SAFETY: as above; shared access is only through atomics.
unsafe impl Sync for RingMem {}

impl RingMem {
    fn ctrl(&self) -> &RingControl {
        // SAFETY: points into memory owned by `_backing` for our lifetime;
        // RingControl is all atomics (valid for any bytes) and aligned.
        unsafe { self.ctrl.as_ref() }
    }

    /// The words of the slot for sequence `seq` (masked: always in bounds).
    pub(crate) fn slot(&self, seq: u64) -> &[AtomicU64] {
        let index = (seq & (self.cap - 1)) as usize;
        // SAFETY: the slot array holds cap * words atomics (validated at
        // open or allocated so); index < cap, so the range is in bounds.
        unsafe {
            std::slice::from_raw_parts(
                self.slots.as_ptr().add(index * self.words) as *const AtomicU64,
                self.words,
            )
        }
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.label.clone(),
            detail,
        }
    }

    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// Items published and not yet claimed: a racy snapshot (Relaxed loads,
    /// ordering nothing), clamped to the capacity.
    fn len(&self) -> usize {
        let c = self.ctrl();
        let head = c.head.load(Ordering::Relaxed);
        let tail = c.tail.load(Ordering::Relaxed);
        tail.saturating_sub(head).min(self.cap) as usize
    }

    fn closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`, so a tail load
        // after this sees the producer's last push.
        self.ctrl().cold.closed.load(Ordering::Acquire) != 0
    }

    /// Is the producer known to be dead (it held the role, and its process is
    /// gone without closing)?
    fn producer_dead(&self) -> bool {
        let raw = self.ctrl().cold.producer.load(Ordering::Relaxed);
        ProcToken::from_raw(raw).is_some_and(|t| !t.is_alive())
    }

    /// Did consumers exist, and are they all dead now?
    fn consumers_gone(&self) -> bool {
        let cold = &self.ctrl().cold;
        // Acquire: pairs with the Release increment in `Ring::consumer`, so
        // the registry slot that consumer claimed first is visible below.
        cold.consumers_seen.load(Ordering::Acquire) > 0
            && !cold.consumers.iter().any(|c| {
                // Acquire: pairs with the Release clear in `Consumer::drop`,
                // so what that consumer did (pops, task_done) is visible to
                // the caller's re-check after this returns true.
                ProcToken::from_raw(c.load(Ordering::Acquire)).is_some_and(|t| t.is_alive())
            })
    }

    /// Wake the producer if it sleeps on a full ring; called after `head`
    /// moved. Returns whether it made the wake system call.
    fn wake_producer(&self) -> bool {
        self.ctrl().cold.not_full.notify()
    }
}

/// Why a push failed. Each variant hands the item back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full (only from `try_push`).
    Full(T),
    /// The ring was closed.
    Closed(T),
    /// Consumers existed and every one of them is dead: nobody will ever
    /// make room.
    Disconnected(T),
    /// The timeout passed while the ring stayed full.
    Timeout(T),
    /// The shared state is impossible (someone scribbled on the segment).
    Corrupt(T),
    /// A byte message longer than the ring can ever hold (see
    /// `max_message_len`): refused whole, never truncated.
    TooLarge(T),
}

impl<T> PushError<T> {
    /// The same error carrying something else (a count instead of an item).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PushError<U> {
        match self {
            PushError::Full(t) => PushError::Full(f(t)),
            PushError::Closed(t) => PushError::Closed(f(t)),
            PushError::Disconnected(t) => PushError::Disconnected(f(t)),
            PushError::Timeout(t) => PushError::Timeout(f(t)),
            PushError::Corrupt(t) => PushError::Corrupt(f(t)),
            PushError::TooLarge(t) => PushError::TooLarge(f(t)),
        }
    }

    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(t)
            | PushError::Closed(t)
            | PushError::Disconnected(t)
            | PushError::Timeout(t)
            | PushError::Corrupt(t)
            | PushError::TooLarge(t) => t,
        }
    }
}

impl<T> std::fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Closed(_) => "Closed(..)",
            PushError::Disconnected(_) => "Disconnected(..)",
            PushError::Timeout(_) => "Timeout(..)",
            PushError::Corrupt(_) => "Corrupt(..)",
            PushError::TooLarge(_) => "TooLarge(..)",
        })
    }
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "the ring is full",
            PushError::Closed(_) => "the ring is closed",
            PushError::Disconnected(_) => "every consumer of the ring has died",
            PushError::Timeout(_) => "timed out waiting for room in the ring",
            PushError::Corrupt(_) => "the ring's shared state is corrupt (head past tail)",
            PushError::TooLarge(_) => {
                "the message is longer than the ring can hold (see max_message_len)"
            }
        })
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a pop returned no item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing to take right now (only from `try_pop`).
    Empty,
    /// The ring is drained and will get no more items: closed, or its
    /// producer died without closing.
    Disconnected,
    /// The timeout passed with the ring empty.
    Timeout,
    /// The shared state is impossible; the detail says what was seen.
    Corrupt(String),
    /// A typed receive got a message of another size than its type.
    WrongSize { got: usize, expected: usize },
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Empty => f.write_str("the ring is empty"),
            PopError::Disconnected => {
                f.write_str("the ring is drained and its producer closed it or died")
            }
            PopError::Timeout => f.write_str("timed out waiting for an item"),
            PopError::Corrupt(d) => write!(f, "the ring's shared state is corrupt: {d}"),
            PopError::WrongSize { got, expected } => write!(
                f,
                "received a message of {got} bytes where a value of {expected} bytes was \
                 expected: both ends must send and receive the same type"
            ),
        }
    }
}

impl std::error::Error for PopError {}

/// Why `join` returned before every item was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    Timeout,
    /// Consumers existed, all died, and items are still not done.
    Disconnected,
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinError::Timeout => "timed out waiting for every item to be done",
            JoinError::Disconnected => "every consumer died before all items were done",
        })
    }
}

impl std::error::Error for JoinError {}

/// `task_done` was called more times than items were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneError;

impl std::fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("task_done() called more times than items were taken")
    }
}

impl std::error::Error for TaskDoneError {}

/// A snapshot of a ring's shared state, for tools (`shmkit inspect`). Read
/// field by field with Relaxed loads: not one atomic picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    pub capacity: u64,
    pub head: u64,
    pub tail: u64,
    pub done: u64,
    pub closed: bool,
    /// Producer's pid, and whether it is alive.
    pub producer: Option<(u32, bool)>,
    /// Live registered consumers' pids.
    pub consumers: Vec<u32>,
    pub consumers_sleeping: u32,
    pub producer_sleeping: bool,
}

/// A handle on a ring: make producers and consumers from it.
#[derive(Debug)]
pub struct Ring<T: Pod> {
    mem: Arc<RingMem>,
    _elem: PhantomData<fn() -> T>,
}

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
        let ctrl = Box::new(RingControl::default());
        let slots: Box<[AtomicU64]> = (0..cap as usize * words)
            .map(|_| AtomicU64::new(0))
            .collect();
        let mem = RingMem {
            ctrl: NonNull::from(&*ctrl),
            slots: NonNull::from(&slots[..]).cast(),
            cap,
            words,
            label: "<in-process>".into(),
            _backing: Backing::Heap {
                _ctrl: ctrl,
                _slots: slots,
            },
        };
        Ok(Ring {
            mem: Arc::new(mem),
            _elem: PhantomData,
        })
    }

    /// Claim the producer role. Fails with `ProducerExists` while another
    /// live producer holds it (a dead producer's role is taken over, and its
    /// published items stay), and with `Closed` once the ring was closed.
    pub fn producer(&self) -> Result<Producer<T>> {
        let mem = &self.mem;
        let cold = &mem.ctrl().cold;
        let me = ProcToken::current();
        loop {
            if mem.closed() {
                return Err(Error::Closed {
                    name: mem.label.clone(),
                });
            }
            // Acquire: pairs with the Release of a previous producer giving
            // the role back in `Producer::drop`.
            let cur = cold.producer.load(Ordering::Acquire);
            if let Some(holder) = ProcToken::from_raw(cur)
                && holder.is_alive()
            {
                return Err(Error::ProducerExists {
                    name: mem.label.clone(),
                    pid: holder.pid(),
                });
            }
            // AcqRel: Acquire makes a dead predecessor's last tail store
            // visible to the tail load below; Release is not needed by anyone
            // but harmless.
            if cold
                .producer
                .compare_exchange(cur, me.raw(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        let ctrl = mem.ctrl();
        // Acquire: pairs with consumers' Release CAS of head (their reads of
        // the slots below head are done before we overwrite them).
        let head = ctrl.head.load(Ordering::Acquire);
        let tail = ctrl.tail.load(Ordering::Relaxed);
        if head > tail || tail - head > mem.cap {
            cold.producer.store(0, Ordering::Release);
            return Err(mem.corrupt(format!("head {head} / tail {tail} / capacity {}", mem.cap)));
        }
        Ok(Producer {
            mem: mem.clone(),
            tail,
            head_cache: head,
            me,
            closed: false,
            futex_calls: 0,
            _elem: PhantomData,
        })
    }

    /// Register a consumer. Any number may exist, in any processes, up to
    /// [`MAX_CONSUMERS`] alive at once.
    pub fn consumer(&self) -> Result<Consumer<T>> {
        let mem = &self.mem;
        let cold = &mem.ctrl().cold;
        let me = ProcToken::current();
        for (i, slot) in cold.consumers.iter().enumerate() {
            let cur = slot.load(Ordering::Relaxed);
            let free = ProcToken::from_raw(cur).is_none_or(|t| !t.is_alive());
            // Relaxed: the registry orders nothing; it is read for liveness.
            if free
                && slot
                    .compare_exchange(cur, me.raw(), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                // Release: publishes our registry slot (claimed above) to
                // `consumers_gone`, which must never count us as gone.
                cold.consumers_seen.fetch_add(1, Ordering::Release);
                return Ok(Consumer {
                    mem: mem.clone(),
                    slot: i,
                    me,
                    futex_calls: AtomicU64::new(0),
                    tail_cache: AtomicU64::new(0),
                    _elem: PhantomData,
                });
            }
        }
        Err(Error::TooManyConsumers {
            name: mem.label.clone(),
            max: MAX_CONSUMERS,
        })
    }

    /// The capacity (a power of two).
    pub fn capacity(&self) -> usize {
        self.mem.cap as usize
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

impl RingMem {
    fn state(&self) -> RingState {
        let c = self.ctrl();
        let tok = ProcToken::from_raw(c.cold.producer.load(Ordering::Relaxed));
        RingState {
            capacity: self.cap,
            head: c.head.load(Ordering::Relaxed),
            tail: c.tail.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            closed: self.closed(),
            producer: tok.map(|t| (t.pid(), t.is_alive())),
            consumers: c
                .cold
                .consumers
                .iter()
                .filter_map(|s| ProcToken::from_raw(s.load(Ordering::Relaxed)))
                .filter(|t| t.is_alive())
                .map(|t| t.pid())
                .collect(),
            consumers_sleeping: c.cold.consumers_sleeping.load(Ordering::Relaxed),
            producer_sleeping: c.cold.producer_sleeping.load(Ordering::Relaxed) != 0,
        }
    }
}

/// The one producer of a ring. Dropping it closes the ring.
#[derive(Debug)]
pub struct Producer<T: Pod> {
    pub(crate) mem: Arc<RingMem>,
    /// Our copy of `tail`: only we store it.
    pub(crate) tail: u64,
    /// Last `head` we read; re-read only when the ring looks full.
    head_cache: u64,
    me: ProcToken,
    pub(crate) closed: bool,
    /// Futex system calls this handle made (wakes and waits): local, so
    /// counting costs no shared write.
    futex_calls: u64,
    _elem: PhantomData<fn(T)>,
}

impl<T: Pod> Producer<T> {
    /// Room for at least `want` more items? Re-reads `head` only when the
    /// cached copy says no. `Err` if the shared head is impossible.
    pub(crate) fn room(&mut self, want: u64) -> Result<u64, ()> {
        let cap = self.mem.cap;
        if self.tail - self.head_cache + want <= cap {
            return Ok(cap - (self.tail - self.head_cache));
        }
        // Acquire: pairs with the Release CAS of head in `Consumer::claim`;
        // the consumers' reads of the slots we are about to reuse are done.
        let head = self.mem.ctrl().head.load(Ordering::Acquire);
        if head > self.tail || head < self.head_cache {
            return Err(());
        }
        self.head_cache = head;
        Ok(cap - (self.tail - head))
    }

    /// Store the new tail and wake sleeping consumers if any.
    pub(crate) fn publish(&mut self, new_tail: u64) {
        let ctrl = self.mem.ctrl();
        // Release: publishes the slot words; pairs with the Acquire load of
        // tail in `Consumer::claim`.
        ctrl.tail.store(new_tail, Ordering::Release);
        self.tail = new_tail;
        // Either a registering consumer's re-check sees the new tail, or we
        // see its registration (the EventCount's fences).
        if ctrl.not_empty.notify() {
            self.futex_calls += 1;
        }
    }

    /// Futex system calls (wakes and waits) this producer has made: the
    /// fast path makes none while no consumer sleeps.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls
    }

    /// Push one item if there is room, without waiting.
    pub fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        match self.room(1) {
            Err(()) => return Err(PushError::Corrupt(item)),
            Ok(0) => return Err(PushError::Full(item)),
            Ok(_) => {}
        }
        write_slot(self.mem.slot(self.tail), &item);
        self.publish(self.tail + 1);
        Ok(())
    }

    /// Push as many of `items` as fit now, publishing them with one store.
    /// Returns how many were pushed (0 when full).
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, PushError<()>> {
        if self.closed {
            return Err(PushError::Closed(()));
        }
        let room = match self.room(items.len() as u64) {
            Err(()) => return Err(PushError::Corrupt(())),
            Ok(r) => r,
        };
        let n = (room as usize).min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            write_slot(self.mem.slot(self.tail + i as u64), item);
        }
        if n > 0 {
            self.publish(self.tail + n as u64);
        }
        Ok(n)
    }

    /// Push, waiting while the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), PushError<T>> {
        self.push_until(item, None)
    }

    /// Push, waiting at most `timeout` for room.
    pub fn push_timeout(&mut self, item: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(item, Some(std::time::Instant::now() + timeout))
    }

    /// Push every item, waiting for room as needed; each chunk that fits is
    /// published with one store. On error the variant carries how many items
    /// were pushed before it (`Closed(n)`, `Disconnected(n)`, ...).
    pub fn push_slice(&mut self, items: &[T]) -> Result<(), PushError<usize>> {
        let mut sent = 0;
        while sent < items.len() {
            match self.try_push_slice(&items[sent..]) {
                Ok(0) => {
                    // Wait for room for one, by pushing it the blocking way.
                    match self.push(items[sent]) {
                        Ok(()) => sent += 1,
                        Err(e) => return Err(e.map(|_| sent)),
                    }
                }
                Ok(n) => sent += n,
                Err(e) => return Err(e.map(|()| sent)),
            }
        }
        Ok(())
    }

    fn push_until(
        &mut self,
        item: T,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), PushError<T>> {
        self.push_with(deadline, |p| p.try_push(item))
    }

    /// Retry `attempt` while it reports `Full`: spin, then sleep until a
    /// consumer makes room, the deadline passes, or every consumer is gone.
    pub(crate) fn push_with<X>(
        &mut self,
        deadline: Option<std::time::Instant>,
        mut attempt: impl FnMut(&mut Self) -> Result<(), PushError<X>>,
    ) -> Result<(), PushError<X>> {
        let mut waiting = Waiting::new();
        loop {
            match attempt(self) {
                Err(PushError::Full(_)) => {}
                other => return other,
            }
            // Resume only once a quarter of the ring is free: resuming as
            // soon as one slot frees keeps producer and consumer writing the
            // same cache lines, one item apart. (A delay only, spent within
            // the spin budget; loom builds, with no budget, skip it.)
            let slack = (self.mem.cap() / 4).max(1);
            let mut spun = false;
            while waiting.keep_spinning() {
                spun = true;
                // Acquire: as in `room`.
                let head = self.mem.ctrl().head.load(Ordering::Acquire);
                if self
                    .mem
                    .cap()
                    .saturating_sub(self.tail.saturating_sub(head))
                    >= slack
                {
                    break;
                }
            }
            if spun {
                continue;
            }
            let mem = self.mem.clone();
            let cold = &mem.ctrl().cold;
            cold.producer_sleeping.store(1, Ordering::Relaxed);
            let key = cold.not_full.prepare();
            let outcome = match attempt(self) {
                Err(PushError::Full(x)) => {
                    if self.mem.consumers_gone() {
                        // The last consumer may have made room before leaving.
                        Some(match attempt(self) {
                            Err(PushError::Full(x)) => Err(PushError::Disconnected(x)),
                            other => other,
                        })
                    } else {
                        match sleep_slice(deadline) {
                            None => Some(Err(PushError::Timeout(x))),
                            slice => {
                                cold.not_full.wait(key, slice);
                                self.futex_calls += 1;
                                None
                            }
                        }
                    }
                }
                other => Some(other),
            };
            cold.producer_sleeping.store(0, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// Close the ring: consumers take what is left, then get `Disconnected`.
    /// Idempotent; dropping the producer closes too.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ctrl = self.mem.ctrl();
        // Release: orders our last tail store before `closed`; pairs with the
        // Acquire load in `RingMem::closed`.
        ctrl.cold.closed.store(1, Ordering::Release);
        ctrl.not_empty.notify();
        ctrl.cold.all_done.notify();
    }

    /// Wait until every item pushed so far was marked done with
    /// [`Consumer::task_done`] (Python's `JoinableQueue.join`).
    pub fn join(&self) -> Result<(), JoinError> {
        self.join_until(None)
    }

    /// [`join`](Self::join) with a timeout.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.join_until(Some(std::time::Instant::now() + timeout))
    }

    fn join_until(&self, deadline: Option<std::time::Instant>) -> Result<(), JoinError> {
        let target = self.tail;
        let ctrl = self.mem.ctrl();
        let cold = &ctrl.cold;
        loop {
            // Acquire: pairs with the Release increment in `task_done`, so
            // the consumers' work on the items happened before we return.
            if ctrl.done.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            cold.joiners.fetch_add(1, Ordering::Relaxed);
            let key = cold.all_done.prepare();
            // Acquire: as above, pairs with `task_done`'s Release increment.
            let outcome = if ctrl.done.load(Ordering::Acquire) >= target {
                Some(Ok(()))
            } else if self.mem.consumers_gone() {
                // The last consumer may have finished just before leaving.
                Some(if ctrl.done.load(Ordering::Acquire) >= target {
                    Ok(())
                } else {
                    Err(JoinError::Disconnected)
                })
            } else {
                match sleep_slice(deadline) {
                    None => Some(Err(JoinError::Timeout)),
                    slice => {
                        cold.all_done.wait(key, slice);
                        None
                    }
                }
            };
            cold.joiners.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// Items pushed and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let head = self.mem.ctrl().head.load(Ordering::Relaxed);
        self.tail.saturating_sub(head).min(self.mem.cap) as usize
    }

    /// Whether no pushed item is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.mem.cap as usize
    }
}

impl<T: Pod> Drop for Producer<T> {
    fn drop(&mut self) {
        self.close();
        // Give the role back (only if it is still ours).
        let _ = self.mem.ctrl().cold.producer.compare_exchange(
            self.me.raw(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// How long the next sleep may last: one liveness slice, shortened to the
/// deadline; `None` once the deadline has passed. Sleepers wake at least
/// every slice to check that their peers are alive.
fn sleep_slice(deadline: Option<std::time::Instant>) -> Option<Duration> {
    match deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())) {
        Some(Duration::ZERO) => None,
        Some(left) => Some(left.min(LIVENESS_SLICE)),
        None => Some(LIVENESS_SLICE),
    }
}

/// A consumer of a ring. Any number may exist; each item goes to exactly one.
/// Methods take `&self`, so one consumer may be shared by threads.
#[derive(Debug)]
pub struct Consumer<T: Pod> {
    pub(crate) mem: Arc<RingMem>,
    /// Our entry in the consumer registry.
    slot: usize,
    me: ProcToken,
    /// Futex system calls made through this handle (local bookkeeping).
    futex_calls: AtomicU64,
    /// The last `tail` this handle loaded with Acquire. `tail` only grows, so
    /// every slot below it stays published: while `head` is below it, a claim
    /// needs no load of the producer's cache line. (An atomic only because
    /// the handle may be shared by threads; it lives in process memory.)
    tail_cache: AtomicU64,
    _elem: PhantomData<fn() -> T>,
}

impl<T: Pod> Consumer<T> {
    /// Claim up to `max` items (at least one) by one CAS of head. `copy` is
    /// called for each slot before the CAS; its copies count only if the CAS
    /// succeeds (on failure `copy` is called again for the new slots).
    ///
    /// `size(first, available)` says how many of the `available` published
    /// slots to claim, looking at the first one (a message's length lives
    /// there); `Err(detail)` if that slot is impossible. An impossible answer
    /// counts as corruption only if `head` has not moved meanwhile (else the
    /// slot was being reused under us, and we retry).
    #[inline]
    pub(crate) fn claim(
        &self,
        mut size: impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        mut copy: impl FnMut(usize, &[AtomicU64]),
    ) -> Result<usize, PopError> {
        let mem = &*self.mem;
        let ctrl = mem.ctrl();
        loop {
            // Acquire: pairs with the Release CAS of the consumer that moved
            // head here; that consumer had loaded tail >= h, so our tail load
            // below cannot see less than h (with Relaxed it could, and a
            // correct ring would look corrupt: loom found this).
            let h = ctrl.head.load(Ordering::Acquire);
            // Relaxed: a process-local cache, see `tail_cache`.
            let mut t = self.tail_cache.load(Ordering::Relaxed);
            if h >= t {
                // Acquire: pairs with the producer's Release store of tail, so
                // the slot words below `t` are visible.
                t = ctrl.tail.load(Ordering::Acquire);
                self.tail_cache.store(t, Ordering::Relaxed);
            }
            if t == h {
                if !mem.closed() {
                    return Err(PopError::Empty);
                }
                // Closed: `closed` was stored after the last tail store, so
                // this re-load sees the final tail.
                if ctrl.tail.load(Ordering::Acquire) == h {
                    return Err(PopError::Disconnected);
                }
                continue;
            }
            if t < h || t - h > mem.cap {
                // Legitimate only if head moved between our two loads.
                if ctrl.head.load(Ordering::Relaxed) == h {
                    return Err(PopError::Corrupt(format!(
                        "head {h}, tail {t}, capacity {}",
                        mem.cap
                    )));
                }
                continue;
            }
            let available = (t - h) as usize;
            let n = match size(mem.slot(h), available) {
                Ok(n) if (1..=available).contains(&n) => n,
                other => {
                    if ctrl.head.load(Ordering::Relaxed) == h {
                        let detail = match other {
                            Err(d) => d,
                            Ok(n) => format!("a message of {n} slots, {available} published"),
                        };
                        return Err(PopError::Corrupt(detail));
                    }
                    continue;
                }
            };
            for i in 0..n {
                copy(i, mem.slot(h + i as u64));
            }
            // Release: our slot reads happen before the producer's Acquire
            // load of head that lets it overwrite them. Claim = commit.
            match ctrl
                .head
                .compare_exchange(h, h + n as u64, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if mem.wake_producer() {
                        self.count_futex_call();
                    }
                    return Ok(n);
                }
                Err(_) => spin_loop(),
            }
        }
    }

    /// Take one item if there is one, without waiting.
    pub fn try_pop(&self) -> Result<T, PopError> {
        let mut out = T::zeroed();
        self.claim(|_, _| Ok(1), |_, slot| out = read_slot(slot))?;
        Ok(out)
    }

    /// Take up to `buf.len()` items with one claim; returns how many.
    pub fn try_pop_into(&self, buf: &mut [T]) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len();
        self.claim(|_, n| Ok(n.min(max)), |i, slot| buf[i] = read_slot(slot))
    }

    /// Take one item, waiting while the ring is empty. `Disconnected` once
    /// the ring is drained and closed (or its producer died).
    pub fn pop(&self) -> Result<T, PopError> {
        self.wait_for(None, || self.try_pop())
    }

    /// [`pop`](Self::pop), waiting at most `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        self.wait_for(Some(std::time::Instant::now() + timeout), || self.try_pop())
    }

    /// Take at least one and up to `buf.len()` items, waiting while empty.
    pub fn pop_into(&self, buf: &mut [T]) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.wait_for(None, || self.try_pop_into(buf))
    }

    /// [`pop_into`](Self::pop_into), waiting at most `timeout`.
    pub fn pop_into_timeout(&self, buf: &mut [T], timeout: Duration) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.wait_for(Some(std::time::Instant::now() + timeout), || {
            self.try_pop_into(buf)
        })
    }

    pub(crate) fn wait_for<R>(
        &self,
        deadline: Option<std::time::Instant>,
        mut attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        let mut waiting = Waiting::new();
        loop {
            match attempt() {
                Err(PopError::Empty) => {}
                other => return other,
            }
            if waiting.keep_spinning() {
                continue;
            }
            let ctrl = self.mem.ctrl();
            ctrl.cold.consumers_sleeping.fetch_add(1, Ordering::Relaxed);
            let key = ctrl.not_empty.prepare();
            let outcome = match attempt() {
                Err(PopError::Empty) => {
                    if self.mem.producer_dead() {
                        // Drained (the attempt just saw empty) and no
                        // producer left to fill it: one more look, then out.
                        Some(match attempt() {
                            Err(PopError::Empty) => Err(PopError::Disconnected),
                            other => other,
                        })
                    } else {
                        match sleep_slice(deadline) {
                            None => Some(Err(PopError::Timeout)),
                            slice => {
                                ctrl.not_empty.wait(key, slice);
                                self.count_futex_call();
                                None
                            }
                        }
                    }
                }
                other => Some(other),
            };
            ctrl.cold.consumers_sleeping.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// Mark one taken item as done (Python's `JoinableQueue.task_done`).
    /// Fails if called more often than items were taken from the ring.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let ctrl = self.mem.ctrl();
        loop {
            let d = ctrl.done.load(Ordering::Relaxed);
            // Acquire is not needed: head only bounds the count.
            let h = ctrl.head.load(Ordering::Relaxed);
            if d >= h {
                return Err(TaskDoneError);
            }
            // Release: our work on the item happens before a joiner's
            // Acquire load of done.
            if ctrl
                .done
                .compare_exchange(d, d + 1, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            spin_loop();
        }
        ctrl.cold.all_done.notify();
        Ok(())
    }

    /// Whether the producer closed the ring (items may still be left).
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// Items (slots) waiting right now: a racy snapshot.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether nothing is waiting right now (a racy snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count_futex_call(&self) {
        // Relaxed: a statistic of this handle, ordering nothing.
        self.futex_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Futex system calls (waits, and wakes of the producer) made through
    /// this handle.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls.load(Ordering::Relaxed)
    }
}

impl<T: Pod> Drop for Consumer<T> {
    fn drop(&mut self) {
        if let Some(s) = self.mem.ctrl().cold.consumers.get(self.slot) {
            // Release: our pops and task_done calls happen before a waiter's
            // Acquire in `consumers_gone` that sees us gone.
            let _ = s.compare_exchange(self.me.raw(), 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}

mod shared {
    //! Rings on segments: create, open, share with children.
    use super::*;
    use crate::header::{ElemDesc, Expect, HeaderInfo, Kind, align_body};
    use crate::segment::{CreateOptions, Layout, OpenOptions, Segment};
    use std::process::Command;

    const CTRL: u64 = size_of::<RingControl>() as u64;

    pub(crate) fn body_size(h: &HeaderInfo) -> Option<u64> {
        if h.len == 0 || h.len > MAX_CAPACITY || !h.len.is_power_of_two() {
            return None;
        }
        let words = words_for(h.elem.size as usize) as u64;
        align_body(CTRL.checked_add(h.len.checked_mul(words)?.checked_mul(8)?)?)
    }

    fn expect<T: Pod>() -> Expect {
        Expect {
            kind: Kind::Ring,
            elem: Some(ElemDesc::of::<T>()),
            len: None,
            body_size,
        }
    }

    fn layout<T: Pod>(capacity: usize) -> Result<Layout> {
        check_elem::<T>()?;
        let cap = check_capacity(capacity)?;
        let elem = ElemDesc::of::<T>();
        let words = words_for(size_of::<T>()) as u64;
        Ok(Layout {
            kind: Kind::Ring,
            elem,
            len: cap,
            body_size: align_body(CTRL + cap * words * 8).expect("bounded by MAX_CAPACITY"),
        })
    }

    fn init(seg: &Segment) -> Result<()> {
        // A fresh mapping is zero-filled, and all-zero is a valid empty,
        // open control block (every field is an atomic integer).
        let _ = seg;
        Ok(())
    }

    impl<T: Pod> Ring<T> {
        /// Create a named ring with `capacity` slots (a power of two; other
        /// values are rejected with the next power of two in the message).
        pub fn create(name: &str, capacity: usize) -> Result<Self> {
            Self::create_with(name, capacity, &CreateOptions::default())
        }

        /// Create with explicit options.
        pub fn create_with(name: &str, capacity: usize, opts: &CreateOptions) -> Result<Self> {
            let seg = Segment::create(name, opts, layout::<T>(capacity)?, init)?;
            Ok(Self::wrap(seg))
        }

        /// Create an anonymous ring, to hand to children with `share_with`.
        pub fn create_anonymous(capacity: usize) -> Result<Self> {
            let seg = Segment::create_anonymous(layout::<T>(capacity)?, init)?;
            Ok(Self::wrap(seg))
        }

        /// Open a named ring; the item type must match.
        pub fn open(name: &str) -> Result<Self> {
            Self::open_with(name, &OpenOptions::default())
        }

        /// Open with explicit options.
        pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Self> {
            Ok(Self::wrap(Segment::open(name, &expect::<T>(), opts)?))
        }

        /// Open the ring a parent passed with [`share_with`](Self::share_with).
        pub fn open_inherited(var: &str) -> Result<Self> {
            Ok(Self::wrap(Segment::open_inherited(
                var,
                &expect::<T>(),
                &OpenOptions::default(),
            )?))
        }

        /// Let the child `cmd` spawns open this ring with `open_inherited(var)`.
        pub fn share_with(&self, cmd: &mut Command, var: &str) {
            if let Backing::Shared(seg) = &self.mem._backing {
                seg.share_with(cmd, var);
            }
        }

        /// The segment underneath (`None` for an in-process ring). The name
        /// of a ring made by `create` is removed when the creating process's
        /// last handle on it (ring, producer or consumer) is dropped; use
        /// `create_with` and `CreateOptions { keep: true, .. }` to keep it.
        pub fn segment(&self) -> Option<&Segment> {
            match &self.mem._backing {
                Backing::Shared(seg) => Some(seg),
                Backing::Heap { .. } => None,
            }
        }

        fn wrap(seg: Segment) -> Self {
            Ring {
                mem: Arc::new(mem_of(seg)),
                _elem: PhantomData,
            }
        }
    }

    /// The state of a ring segment opened without knowing its item type
    /// (for `shmkit inspect`); the segment must have been validated as a ring.
    pub fn state_of(seg: Segment) -> RingState {
        mem_of(seg).state()
    }

    fn mem_of(seg: Segment) -> RingMem {
        {
            let cap = seg.info().len;
            let words = words_for(seg.info().elem.size as usize);
            let body = seg.body_ptr();
            let label = seg.name().unwrap_or("<anonymous>").to_owned();
            // SAFETY: the body is at least CTRL + cap*words*8 bytes (validated
            // by body_size at open, sized so at create), 128-byte aligned.
            let (ctrl, slots) = unsafe { (body as *mut RingControl, body.add(CTRL as usize)) };
            RingMem {
                ctrl: NonNull::new(ctrl).expect("mapping is not null"),
                slots: NonNull::new(slots as *mut AtomicU64).expect("mapping is not null"),
                cap,
                words,
                label,
                _backing: Backing::Shared(seg),
            }
        }
    }
}

pub mod message;

pub(crate) use shared::body_size;
pub use shared::state_of;

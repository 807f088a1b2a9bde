//! The ring's memory: the shared control block ([`RingControl`], its rarely
//! written part `Cold`), what owns it (`Backing`: a segment or the heap),
//! the validated handle-side view of it (`RingMem`: geometry, slot lookup,
//! racy snapshots, [`RingState`]). The algorithm that moves `head` and
//! `tail` is not here (`producer.rs`, `consumer.rs`), nor is the producer
//! and consumer registry (`registry.rs`), nor creating or opening segments
//! (`mod.rs`).

use std::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::error::Error;
use crate::event::EventCount;
use crate::process::ProcToken;
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Consumers recorded per ring (for dead-peer detection and `shmkit inspect`).
/// loom: 4, since every registry scan is one modelled load per entry.
pub const MAX_CONSUMERS: usize = if crate::sync::MODELLED { 4 } else { 64 };

/// Shared sequences (`tail`, `head`, `done`) at or past this are impossible:
/// 2^63 items at 10^9 a second take 292 years. A counter read there is
/// corruption; and with every sequence below it, `sequence + capacity`
/// cannot overflow.
pub(crate) const SEQ_LIMIT: u64 = 1 << 63;

/// `value` of shared counter `field`, if it is a possible sequence; else the
/// detail of a `Corrupt` error naming the field.
/// Inlined: on the pop path it is a compare and a branch (the message is
/// built out of line, on the corrupt path only).
#[inline(always)]
pub(crate) fn check_seq(field: &str, value: u64) -> Result<u64, String> {
    if value >= SEQ_LIMIT {
        return Err(beyond_any_sequence(field, value));
    }
    Ok(value)
}

#[cold]
#[inline(never)]
fn beyond_any_sequence(field: &str, value: u64) -> String {
    format!("{field} {value} is beyond any possible sequence")
}

/// Whether a new producer may start from `head` and `tail`: both possible
/// sequences, `head <= tail <= head + cap`. So every later `tail + n` (n at
/// most `cap`) is far from overflowing; `Producer::room` keeps it so. The
/// ring's producer claim and the queue's lane claim both check with it.
pub(crate) fn check_claim(head: u64, tail: u64, cap: u64) -> Result<(), String> {
    check_seq("tail", tail)?;
    check_seq("head", head)?;
    if head > tail || tail - head > cap {
        return Err(impossible_span(head, tail, cap));
    }
    Ok(())
}

/// The detail of a `Corrupt` error for a `tail` behind `head`, or more than
/// `cap` ahead of it (the claims' and the consumers' range check). Out of
/// line and by value: a `format!` in a claim loop borrows its arguments,
/// which kept `head` and `tail` in memory on every pop.
#[cold]
#[inline(never)]
pub(crate) fn impossible_span(head: u64, tail: u64, cap: u64) -> String {
    if head > tail {
        format!("head {head} is past tail {tail}")
    } else {
        format!(
            "tail {tail} is {} past head {head}, more than the capacity {cap}",
            tail - head
        )
    }
}

/// The ring's shared control block. Fields written on every operation sit on
/// cache lines of their own. Every value in it is untrusted: whoever reads
/// one checks it against the capacity in its local handle and the others.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RingControl {
    /// Next sequence the producer writes; stored only by the producer
    /// (Release, publishing the slots below it). Range `head ..= head + cap`,
    /// below [`SEQ_LIMIT`].
    pub(super) tail: CachePadded<AtomicU64>,
    /// Next sequence to claim; advanced only by a consumer's CAS (Release,
    /// handing the slot back to the producer). Range `done ..= tail`.
    pub(super) head: CachePadded<AtomicU64>,
    /// Items marked done with `task_done`; range `0 ..= head`.
    pub(super) done: CachePadded<AtomicU64>,
    /// Consumers sleep on this; the producer notifies it after a push or a
    /// close (a syscall only when a consumer registered to sleep).
    pub(super) not_empty: CachePadded<EventCount>,
    /// Rarely written state.
    pub(super) cold: CachePadded<Cold>,
    /// Per registry entry: items its consumer took and has not marked done
    /// (see `Consumer::claim` and `task_done`). Written by that consumer
    /// (and by whoever folds a dead consumer's count into
    /// `Cold::abandoned`); read by joiners for the dead entries. One cache
    /// line each, so consumers do not share a line on every pop.
    pub(super) held: [CachePadded<AtomicU64>; MAX_CONSUMERS],
}

#[repr(C)]
#[derive(Debug)]
pub(super) struct Cold {
    /// Consumers between registering to sleep and waking up: a statistic for
    /// tools (a consumer killed asleep leaves it one too high).
    pub(super) consumers_sleeping: AtomicU32,
    /// 1 while the producer sleeps on `not_full`: a statistic for tools.
    pub(super) producer_sleeping: AtomicU32,
    /// Processes sleeping in `join`.
    pub(super) joiners: AtomicU32,
    /// 0 open, 1 closed (Release by `close`, after the last tail store).
    pub(super) closed: AtomicU32,
    /// The producer sleeps on this while the ring is full; consumers notify.
    pub(super) not_full: EventCount,
    /// Joiners sleep on this; `task_done` notifies.
    pub(super) all_done: EventCount,
    _pad: AtomicU32,
    /// The producer's `ProcToken`, 0 when nobody holds the role.
    pub(super) producer: AtomicU64,
    /// Consumers that ever registered (monotonic).
    pub(super) consumers_seen: AtomicU64,
    /// Items taken by consumers that died before marking them done, folded
    /// here from their `held` entries when the entry is reused (monotonic).
    pub(super) abandoned: AtomicU64,
    /// The `ProcToken` of a sole consumer ([`SoleConsumer`](super::SoleConsumer)),
    /// 0 when none: while it lives no other consumer registers, so its
    /// claims move `head` with plain stores. A dead one's is taken over.
    pub(super) sole: AtomicU64,
    /// Live consumers' tokens; 0 = free. A dead process's slot is reusable.
    pub(super) consumers: [AtomicU64; MAX_CONSUMERS],
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
                abandoned: AtomicU64::new(0),
                sole: AtomicU64::new(0),
                consumers: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
            held: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }
}

/// What owns the ring's memory.
#[derive(Debug)]
pub(super) enum Backing {
    Shared(Segment),
    Heap {
        _ctrl: Box<RingControl>,
        _slots: Box<[AtomicU64]>,
    },
}

/// The ring's memory and its validated geometry, shared by the handles.
#[derive(Debug)]
pub(super) struct RingMem {
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
    /// A ring on the heap (for threads of one process, and loom models):
    /// an open, empty control block and `cap * words` zeroed slot words.
    pub(super) fn on_heap(cap: u64, words: usize) -> Self {
        let ctrl = Box::new(RingControl::default());
        let slots: Box<[AtomicU64]> = (0..cap as usize * words)
            .map(|_| AtomicU64::new(0))
            .collect();
        RingMem {
            ctrl: NonNull::from(&*ctrl),
            slots: NonNull::from(&slots[..]).cast(),
            cap,
            words,
            label: "<in-process>".into(),
            _backing: Backing::Heap {
                _ctrl: ctrl,
                _slots: slots,
            },
        }
    }

    /// A ring in memory `backing` owns (a mapped segment).
    ///
    /// # Safety
    /// `ctrl` must point to a `RingControl` and `slots` to `cap * words`
    /// `AtomicU64`s, both aligned, inside memory `backing` keeps alive and
    /// never moves; `cap` must be a power of two.
    pub(super) unsafe fn from_parts(
        ctrl: NonNull<RingControl>,
        slots: NonNull<AtomicU64>,
        cap: u64,
        words: usize,
        label: String,
        backing: Backing,
    ) -> Self {
        RingMem {
            ctrl,
            slots,
            cap,
            words,
            label,
            _backing: backing,
        }
    }

    /// The segment underneath, `None` for a ring on the heap.
    pub(super) fn segment(&self) -> Option<&Segment> {
        match &self._backing {
            Backing::Shared(seg) => Some(seg),
            Backing::Heap { .. } => None,
        }
    }

    /// The ring's name, for error messages.
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    #[inline]
    pub(super) fn ctrl(&self) -> &RingControl {
        // SAFETY: points into memory owned by `_backing` for our lifetime;
        // RingControl is all atomics (valid for any bytes) and aligned.
        unsafe { self.ctrl.as_ref() }
    }

    /// The words of the slot for sequence `seq` (masked: always in bounds).
    #[inline]
    pub(super) fn slot(&self, seq: u64) -> &[AtomicU64] {
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

    /// The words of the `n` slots from sequence `seq` on (`n <= cap`), as
    /// the (at most) two runs that are contiguous in memory: up to the end
    /// of the slot array, then from its start. The bulk copies of byte
    /// messages (`message.rs`) and batches take each run in one loop.
    #[inline]
    pub(super) fn run(&self, seq: u64, n: usize) -> [&[AtomicU64]; 2] {
        assert!(
            n as u64 <= self.cap,
            "a run of {n} slots, capacity {}",
            self.cap
        );
        let index = (seq & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - index);
        // SAFETY: the slot array holds cap * words atomics (validated at
        // open or allocated so); index + first <= cap and n - first <=
        // cap, so both ranges are in bounds.
        unsafe {
            let base = self.slots.as_ptr() as *const AtomicU64;
            [
                std::slice::from_raw_parts(base.add(index * self.words), first * self.words),
                std::slice::from_raw_parts(base, (n - first) * self.words),
            ]
        }
    }

    /// Words per slot.
    #[inline]
    pub(super) fn words(&self) -> usize {
        self.words
    }

    pub(super) fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.label.clone(),
            detail,
        }
    }

    #[inline]
    pub(super) fn cap(&self) -> u64 {
        self.cap
    }

    /// Items published and not yet claimed: a racy snapshot (Relaxed loads,
    /// ordering nothing), clamped to the capacity.
    pub(super) fn len(&self) -> usize {
        let c = self.ctrl();
        let head = c.head.load(Ordering::Relaxed);
        let tail = c.tail.load(Ordering::Relaxed);
        tail.saturating_sub(head).min(self.cap) as usize
    }

    #[inline]
    pub(super) fn closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`, so a tail load
        // after this sees the producer's last push.
        self.ctrl().cold.closed.load(Ordering::Acquire) != 0
    }

    /// Wake the producer if it sleeps on a full ring; called after `head`
    /// moved. Returns whether it made the wake system call.
    #[inline(always)]
    pub(super) fn wake_producer(&self) -> bool {
        self.ctrl().cold.not_full.notify()
    }
}

/// A snapshot of a ring's shared state, for tools (`shmkit inspect`). Read
/// field by field with Relaxed loads: not one atomic picture.
/// The counters are shown as read, unchecked: a corrupt ring shows its
/// impossible values here rather than an error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingState {
    /// Slots in the ring (from the local handle, validated at open).
    pub capacity: u64,
    /// Next sequence to claim.
    pub head: u64,
    /// Next sequence the producer writes.
    pub tail: u64,
    /// Items marked done with `task_done`.
    pub done: u64,
    /// Whether the producer closed the ring.
    pub closed: bool,
    /// Producer's pid, and whether it is alive.
    pub producer: Option<(u32, bool)>,
    /// Live registered consumers' pids.
    pub consumers: Vec<u32>,
    /// Consumers asleep on an empty ring (a statistic: a consumer killed
    /// asleep leaves it one too high).
    pub consumers_sleeping: u32,
    /// Whether the producer sleeps on a full ring.
    pub producer_sleeping: bool,
}

impl RingMem {
    pub(super) fn state(&self) -> RingState {
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

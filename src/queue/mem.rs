//! The queue's memory: the shared control block ([`QueueControl`]), the
//! lanes ([`Lane`]: one single-producer ring each), the consumer registry
//! ([`ConsumerEntry`]: token and items held), the geometry validated at open
//! (`QueueMem`), and the reads every handle makes of them (slots, runs,
//! `closed`, the length). Who holds a lane or a registry entry, who is
//! gone, and whether a join is over are `registry.rs`'s; moving items is
//! `producer.rs`'s and `consumer.rs`'s.

use std::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::error::Error;
use crate::event::EventCount;
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `Cold::flags` bit: pops report `Disconnected` once every producer that
/// attached has left and the queue is empty.
pub(super) const DISCONNECT_WHEN_PRODUCERS_GONE: u32 = 1;

/// The queue's shared control block. Every value in it is untrusted.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QueueControl {
    /// Consumers sleep on this while every lane is empty; a producer
    /// notifies after each publish (a syscall only when someone sleeps).
    pub(super) not_empty: CachePadded<EventCount>,
    /// Producers sleep on this while their lane is full; a consumer notifies
    /// after each claim.
    pub(super) not_full: CachePadded<EventCount>,
    /// Items marked done with `task_done` (monotonic; bounded by the pushed
    /// total, checked by joiners).
    pub(super) done: CachePadded<AtomicU64>,
    /// Consumers asleep on `not_empty` (a statistic for tools). Written at
    /// every sleep and wake, so on a line of its own: in `Cold` it made
    /// every producer's per-push load of `closed` a cache miss after each
    /// consumer nap (a single-producer queue ran at 0.4x the ring).
    pub(super) consumers_sleeping: CachePadded<AtomicU32>,
    /// Rarely written state: producers read `closed` on every push.
    pub(super) cold: CachePadded<Cold>,
}

#[repr(C)]
#[derive(Debug)]
pub(super) struct Cold {
    /// Joiners sleep on this; `task_done` and registry folds notify.
    pub(super) all_done: EventCount,
    /// 0 open, 1 closed (Release by `close`).
    pub(super) closed: AtomicU32,
    /// Set once at creation: [`DISCONNECT_WHEN_PRODUCERS_GONE`].
    pub(super) flags: AtomicU32,
    /// Producers that ever claimed a lane (monotonic).
    pub(super) producers_seen: AtomicU64,
    /// Consumers that ever registered (monotonic).
    pub(super) consumers_seen: AtomicU64,
    /// Items taken by consumers that died or left before marking them done,
    /// folded here from their registry entries (monotonic).
    pub(super) abandoned: AtomicU64,
    /// The `ProcToken` of a sole consumer (`queue::SoleConsumer`), 0 when
    /// none: while it lives no other consumer registers (`crate::sole`).
    pub(super) sole: AtomicU64,
}

/// One producer's lane: a single-producer, multi-consumer ring of
/// `cap` slots (the ring's algorithm, `src/ring/mod.rs`).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Lane {
    /// Next sequence the lane's producer writes; stored only by it
    /// (Release, publishing the slots below). Range `head ..= head + cap`.
    pub(super) tail: CachePadded<AtomicU64>,
    /// Next sequence to claim; advanced only by a consumer's CAS.
    pub(super) head: CachePadded<AtomicU64>,
    /// The `ProcToken` of the producer holding the lane; 0 when free.
    pub(super) owner: CachePadded<AtomicU64>,
}

/// One consumer registry entry.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ConsumerEntry {
    /// The consumer's `ProcToken`; 0 when free.
    pub(super) token: AtomicU64,
    /// Items it took and has not marked done (announced before each claim).
    pub(super) held: AtomicU64,
}

impl Default for QueueControl {
    fn default() -> Self {
        QueueControl {
            not_empty: CachePadded::new(EventCount::new()),
            not_full: CachePadded::new(EventCount::new()),
            done: CachePadded::new(AtomicU64::new(0)),
            consumers_sleeping: CachePadded::new(AtomicU32::new(0)),
            cold: CachePadded::new(Cold {
                all_done: EventCount::new(),
                closed: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                producers_seen: AtomicU64::new(0),
                consumers_seen: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                sole: AtomicU64::new(0),
            }),
        }
    }
}

fn new_lane() -> Lane {
    Lane {
        tail: CachePadded::new(AtomicU64::new(0)),
        head: CachePadded::new(AtomicU64::new(0)),
        owner: CachePadded::new(AtomicU64::new(0)),
    }
}

fn new_entry() -> CachePadded<ConsumerEntry> {
    CachePadded::new(ConsumerEntry {
        token: AtomicU64::new(0),
        held: AtomicU64::new(0),
    })
}

/// The queue's shape, from the header's length (see `mod.rs`, `pack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) cap: u64,
    pub(super) producers: usize,
    pub(super) consumers: usize,
    pub(super) words: usize,
}

impl Geometry {
    pub(super) const CTRL: u64 = size_of::<QueueControl>() as u64;
    const LANE: u64 = size_of::<Lane>() as u64;
    const ENTRY: u64 = size_of::<CachePadded<ConsumerEntry>>() as u64;

    /// Byte offsets of the lanes, the registry and the slots, and the total.
    pub(super) fn offsets(&self) -> Option<(u64, u64, u64, u64)> {
        let lanes = Self::CTRL;
        let entries = lanes.checked_add(Self::LANE.checked_mul(self.producers as u64)?)?;
        let slots = entries.checked_add(Self::ENTRY.checked_mul(self.consumers as u64)?)?;
        let slot_bytes = self
            .cap
            .checked_mul(self.producers as u64)?
            .checked_mul(self.words as u64)?
            .checked_mul(8)?;
        Some((lanes, entries, slots, slots.checked_add(slot_bytes)?))
    }
}

/// What owns the queue's memory.
#[derive(Debug)]
pub(super) enum Backing {
    Shared(Segment),
    Heap {
        _ctrl: Box<QueueControl>,
        _lanes: Box<[Lane]>,
        _entries: Box<[CachePadded<ConsumerEntry>]>,
        _slots: Box<[AtomicU64]>,
    },
}

/// The queue's memory and its validated geometry, shared by the handles.
#[derive(Debug)]
pub(crate) struct QueueMem {
    ctrl: NonNull<QueueControl>,
    lanes: NonNull<Lane>,
    entries: NonNull<CachePadded<ConsumerEntry>>,
    slots: NonNull<AtomicU64>,
    /// Validated at open; never re-read from shared memory.
    geo: Geometry,
    label: String,
    backing: Backing,
}

// SAFETY: the pointers target memory owned by `backing` (a mapping or
// boxes) that lives as long as QueueMem and is only reached through atomics.
unsafe impl Send for QueueMem {}
// SAFETY: as above; shared access is only through atomics.
unsafe impl Sync for QueueMem {}

impl QueueMem {
    /// A queue on the heap (threads of one process, loom models).
    pub(super) fn on_heap(geo: Geometry, flags: u32) -> Self {
        let ctrl = Box::new(QueueControl::default());
        ctrl.cold.flags.store(flags, Ordering::Relaxed);
        let lanes: Box<[Lane]> = (0..geo.producers).map(|_| new_lane()).collect();
        let entries: Box<[CachePadded<ConsumerEntry>]> =
            (0..geo.consumers).map(|_| new_entry()).collect();
        let slots: Box<[AtomicU64]> = (0..geo.cap as usize * geo.producers * geo.words)
            .map(|_| AtomicU64::new(0))
            .collect();
        QueueMem {
            ctrl: NonNull::from(&*ctrl),
            lanes: NonNull::from(&lanes[..]).cast(),
            entries: NonNull::from(&entries[..]).cast(),
            slots: NonNull::from(&slots[..]).cast(),
            geo,
            label: "<in-process>".into(),
            backing: Backing::Heap {
                _ctrl: ctrl,
                _lanes: lanes,
                _entries: entries,
                _slots: slots,
            },
        }
    }

    /// A queue over a segment whose body `geo.offsets()` describes.
    ///
    /// # Safety
    /// The segment's body must be at least `geo.offsets().3` bytes, aligned
    /// to 128, and laid out as `offsets` says (checked by `body_size` at
    /// open, sized so at create).
    pub(super) unsafe fn in_segment(seg: Segment, geo: Geometry) -> Self {
        let body = seg.body_ptr();
        let (lanes, entries, slots, _) = geo.offsets().expect("validated geometry");
        // SAFETY: the offsets lie inside the body (caller's contract).
        let (c, l, e, s) = unsafe {
            (
                body as *mut QueueControl,
                body.add(lanes as usize) as *mut Lane,
                body.add(entries as usize) as *mut CachePadded<ConsumerEntry>,
                body.add(slots as usize) as *mut AtomicU64,
            )
        };
        let label = seg.name().unwrap_or("<anonymous>").to_owned();
        QueueMem {
            ctrl: NonNull::new(c).expect("mapping is not null"),
            lanes: NonNull::new(l).expect("mapping is not null"),
            entries: NonNull::new(e).expect("mapping is not null"),
            slots: NonNull::new(s).expect("mapping is not null"),
            geo,
            label,
            backing: Backing::Shared(seg),
        }
    }

    pub(super) fn segment(&self) -> Option<&Segment> {
        match &self.backing {
            Backing::Shared(seg) => Some(seg),
            Backing::Heap { .. } => None,
        }
    }

    #[inline]
    pub(super) fn geo(&self) -> Geometry {
        self.geo
    }

    /// The queue's name, for errors.
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    #[inline]
    pub(super) fn ctrl(&self) -> &QueueControl {
        // SAFETY: points into memory owned by `backing` for our lifetime;
        // all atomics (valid for any bytes), aligned.
        unsafe { self.ctrl.as_ref() }
    }

    /// Lane `i`; `i` is a local index, always below `producers`.
    #[inline]
    pub(super) fn lane(&self, i: usize) -> &Lane {
        assert!(i < self.geo.producers, "lane index from a local counter");
        // SAFETY: `producers` lanes follow the control block (validated at
        // open or allocated so); i is in bounds.
        unsafe { &*self.lanes.as_ptr().add(i) }
    }

    pub(super) fn lanes(&self) -> impl Iterator<Item = &Lane> {
        (0..self.geo.producers).map(|i| self.lane(i))
    }

    /// Registry entry `i`; a local index, always below `consumers`.
    #[inline]
    pub(super) fn entry(&self, i: usize) -> &ConsumerEntry {
        assert!(i < self.geo.consumers, "entry index from a local counter");
        // SAFETY: `consumers` entries follow the lanes; i is in bounds.
        unsafe { &*self.entries.as_ptr().add(i) }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &ConsumerEntry> {
        (0..self.geo.consumers).map(|i| self.entry(i))
    }

    /// The words of lane `lane`'s slot for sequence `seq` (masked).
    #[inline]
    pub(super) fn slot(&self, lane: usize, seq: u64) -> &[AtomicU64] {
        assert!(lane < self.geo.producers, "lane index from a local counter");
        let index = lane * self.geo.cap as usize + (seq & (self.geo.cap - 1)) as usize;
        // SAFETY: the slot array holds producers * cap * words atomics;
        // index < producers * cap, so the range is in bounds.
        unsafe {
            std::slice::from_raw_parts(
                self.slots.as_ptr().add(index * self.geo.words) as *const AtomicU64,
                self.geo.words,
            )
        }
    }

    /// The words of lane `lane`'s `n` slots from sequence `seq` on (`n <=
    /// cap`), as the (at most) two runs contiguous in memory: up to the end
    /// of the lane, then from its start (see the ring's `RingMem::run`).
    #[inline]
    pub(super) fn run(&self, lane: usize, seq: u64, n: usize) -> [&[AtomicU64]; 2] {
        let cap = self.geo.cap as usize;
        assert!(lane < self.geo.producers, "lane index from a local counter");
        assert!(n <= cap, "a run of {n} slots, capacity {cap}");
        let index = (seq & (self.geo.cap - 1)) as usize;
        let first = n.min(cap - index);
        let words = self.geo.words;
        // SAFETY: the slot array holds producers * cap * words atomics and
        // lane < producers; within the lane, index + first <= cap and
        // n - first <= cap, so both ranges are in bounds.
        unsafe {
            let lane0 = (self.slots.as_ptr() as *const AtomicU64).add(lane * cap * words);
            [
                std::slice::from_raw_parts(lane0.add(index * words), first * words),
                std::slice::from_raw_parts(lane0, (n - first) * words),
            ]
        }
    }

    pub(super) fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.label.clone(),
            detail,
        }
    }

    #[inline]
    pub(super) fn closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.ctrl().cold.closed.load(Ordering::Acquire) != 0
    }

    /// Close the queue for everyone: pushes fail, pops drain then report
    /// `Disconnected`, joiners and sleepers wake.
    pub(super) fn close(&self) {
        let ctrl = self.ctrl();
        // Release: pairs with the Acquire load in `closed`; a consumer that
        // sees it and then scans the lanes sees every tail stored before.
        ctrl.cold.closed.store(1, Ordering::Release);
        ctrl.not_empty.notify();
        ctrl.not_full.notify();
        ctrl.cold.all_done.notify();
    }

    pub(super) fn disconnect_when_producers_gone(&self) -> bool {
        // Relaxed: written once at creation, before the segment was
        // published.
        self.ctrl().cold.flags.load(Ordering::Relaxed) & DISCONNECT_WHEN_PRODUCERS_GONE != 0
    }

    /// Items published and not yet claimed, summed over the lanes: a racy
    /// snapshot (each lane clamped to its capacity).
    pub(super) fn len(&self) -> usize {
        self.lanes()
            .map(|l| {
                let head = l.head.load(Ordering::Relaxed);
                let tail = l.tail.load(Ordering::Relaxed);
                tail.saturating_sub(head).min(self.geo.cap) as usize
            })
            .sum()
    }
}

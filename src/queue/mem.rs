//! The queue's memory: the shared control block ([`QueueControl`]), the
//! lanes ([`Lane`]: one single-producer ring each), the consumer registry
//! ([`ConsumerEntry`]: token and items held), the geometry validated at open
//! (`QueueMem`), and what every handle asks of them: claiming and giving
//! back a lane, registering a consumer, who is gone, and whether a join is
//! over. Moving items is `producer.rs`'s and `consumer.rs`'s.

use std::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};
use crate::event::EventCount;
use crate::process::ProcToken;
use crate::ring::control::check_seq;
use crate::ring::{JoinError, JoinReport};
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

    pub(super) fn geo(&self) -> Geometry {
        self.geo
    }

    pub(super) fn ctrl(&self) -> &QueueControl {
        // SAFETY: points into memory owned by `backing` for our lifetime;
        // all atomics (valid for any bytes), aligned.
        unsafe { self.ctrl.as_ref() }
    }

    /// Lane `i`; `i` is a local index, always below `producers`.
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
    pub(super) fn entry(&self, i: usize) -> &ConsumerEntry {
        assert!(i < self.geo.consumers, "entry index from a local counter");
        // SAFETY: `consumers` entries follow the lanes; i is in bounds.
        unsafe { &*self.entries.as_ptr().add(i) }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &ConsumerEntry> {
        (0..self.geo.consumers).map(|i| self.entry(i))
    }

    /// The words of lane `lane`'s slot for sequence `seq` (masked).
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

    /// Claim a free lane, or one whose owner died (its published items stay
    /// and are delivered before ours: per-producer order holds). Returns the
    /// lane, our token, and its tail and head, checked.
    pub(super) fn claim_lane(&self) -> Result<(usize, ProcToken, u64, u64)> {
        if self.closed() {
            return Err(Error::Closed {
                name: self.label.clone(),
            });
        }
        let me = ProcToken::current();
        // First pass: free lanes that are empty, so that a new producer does
        // not start behind a departed one's items (and block on a full lane
        // while an empty one is free); second pass: any free lane.
        for pass in 0..2 {
            for i in 0..self.geo.producers {
                if let Some(claim) = self.try_claim_lane(i, me, pass == 0)? {
                    return Ok(claim);
                }
            }
        }
        Err(Error::TooManyProducers {
            name: self.label.clone(),
            max: self.geo.producers,
        })
    }

    /// Claim lane `i` if it is free (or its owner is dead), and, when
    /// `only_empty`, holds no items.
    fn try_claim_lane(
        &self,
        i: usize,
        me: ProcToken,
        only_empty: bool,
    ) -> Result<Option<(usize, ProcToken, u64, u64)>> {
        let lane = self.lane(i);
        // Relaxed: only tested (a live owner: skip the lane), as in
        // `register_consumer`; the CAS below succeeds only from this very
        // value and is the Acquire that pairs with `release_lane`. A dead
        // owner's writes are ordered by the liveness check that follows.
        let cur = lane.owner.load(Ordering::Relaxed);
        if ProcToken::from_raw(cur).is_some_and(|t| t.is_alive()) {
            return Ok(None);
        }
        // Relaxed: a preference only; the claim re-reads both below.
        if only_empty && lane.tail.load(Ordering::Relaxed) != lane.head.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // Acquire: pairs with the Release CAS in `release_lane`: a previous
        // owner that left has its last tail store and slot writes ordered
        // before ours (a dead one's: the liveness check that found it
        // dead). No Release: nobody acquires through a claim. A later
        // claimer reads our token only while we hold the lane (alive: it
        // skips; dead: the liveness check orders our writes) or after
        // `release_lane`'s own Release; `producers_gone` only tests it, and
        // the Release increment of `producers_seen` below publishes it.
        if lane
            .owner
            .compare_exchange(cur, me.raw(), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Ok(None);
        }
        // Acquire: pairs with consumers' Release CAS of head: their
        // reads of the slots below it are done before we overwrite.
        let head = lane.head.load(Ordering::Acquire);
        let tail = lane.tail.load(Ordering::Relaxed);
        if let Err(detail) = check_lane(head, tail, self.geo.cap) {
            self.release_lane(i, me);
            return Err(self.corrupt(format!("lane {i}: {detail}")));
        }
        // Release: pairs with the Acquire load in `producers_gone`, so
        // whoever counts us sees our lane claimed.
        self.ctrl()
            .cold
            .producers_seen
            .fetch_add(1, Ordering::Release);
        Ok(Some((i, me, tail, head)))
    }

    /// Give lane `i` back, only if it is still `me`'s; its items stay.
    pub(super) fn release_lane(&self, i: usize, me: ProcToken) {
        // Release: pairs with the Acquire loads of `owner` in `claim_lane`
        // and `producers_gone`: our last tail store is seen by both.
        let _ =
            self.lane(i)
                .owner
                .compare_exchange(me.raw(), 0, Ordering::Release, Ordering::Relaxed);
        // Consumers waiting for the last producer to go re-check.
        self.ctrl().not_empty.notify();
    }

    /// Did producers attach, and has every one of them left or died?
    pub(super) fn producers_gone(&self) -> bool {
        // Acquire: pairs with the Release increment in `claim_lane`.
        self.ctrl().cold.producers_seen.load(Ordering::Acquire) > 0
            && !self.lanes().any(|l| {
                // Acquire: pairs with the Release in `release_lane`, so the
                // caller's re-scan sees the leaver's last push.
                ProcToken::from_raw(l.owner.load(Ordering::Acquire)).is_some_and(|t| t.is_alive())
            })
    }

    /// Register a consumer in a free (or dead process's) entry.
    pub(super) fn register_consumer(&self) -> Result<(usize, ProcToken)> {
        let me = ProcToken::current();
        for i in 0..self.geo.consumers {
            let e = self.entry(i);
            // Relaxed: re-checked by the CAS below.
            let cur = e.token.load(Ordering::Relaxed);
            if ProcToken::from_raw(cur).is_some_and(|t| t.is_alive()) {
                continue;
            }
            // Acquire: pairs with the Release clear in
            // `unregister_consumer`: a holder that left has its writes to
            // `held` ordered before our fold reads it (else we fold its
            // items again: `a_consumer_registers_where_another_left_...`
            // models). A dead holder's writes are ordered by the liveness
            // check above.
            if e.token
                .compare_exchange(cur, me.raw(), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.fold_held(i);
                // Release: pairs with the Acquire in `consumers_gone`.
                self.ctrl()
                    .cold
                    .consumers_seen
                    .fetch_add(1, Ordering::Release);
                // A live sole consumer shuts everyone else out.
                if let Err(refused) = crate::sole::check_registration(&self.ctrl().cold.sole) {
                    self.unregister_consumer(i, me);
                    return Err(self.refused(refused));
                }
                return Ok((i, me));
            }
        }
        Err(Error::TooManyConsumers {
            name: self.label.clone(),
            max: self.geo.consumers,
        })
    }

    /// Make the consumer registered in `entry` the queue's sole one
    /// (`crate::sole`); the caller unregisters on error.
    pub(super) fn claim_sole(&self, entry: usize, me: ProcToken) -> Result<()> {
        let others = (0..self.geo.consumers).filter(move |j| *j != entry);
        // Relaxed: ordered by the fence in `sole::claim`, which iterates this
        // after it.
        let others = others.map(|j| self.entry(j).token.load(Ordering::Relaxed));
        crate::sole::claim(&self.ctrl().cold.sole, me, others).map_err(|r| self.refused(r))
    }

    /// Give the sole-consumer claim back, only if it is still `me`'s.
    pub(super) fn release_sole(&self, me: ProcToken) {
        crate::sole::release(&self.ctrl().cold.sole, me);
    }

    /// The error for a refused registration or sole claim.
    fn refused(&self, r: crate::sole::Refused) -> Error {
        let name = self.label.clone();
        match r {
            crate::sole::Refused::Sole(pid) => Error::SoleConsumer { name, pid },
            crate::sole::Refused::Other(pid) => Error::ConsumerExists { name, pid },
        }
    }

    /// Leave entry `i`: what we hold is abandoned; then free it.
    pub(super) fn unregister_consumer(&self, i: usize, me: ProcToken) {
        let e = self.entry(i);
        // Relaxed: our own entry.
        if e.token.load(Ordering::Relaxed) == me.raw() {
            self.fold_held(i);
        }
        // Release: our task_done calls happen before a joiner's Acquire in
        // `consumers_gone` that sees us gone, and our last writes to `held`
        // (a fold, or a lost claim taking its announcement back, after
        // which no wake-up fence follows) before the fold of whoever
        // registers here next (Acquire CAS in `register_consumer`).
        let _ = e
            .token
            .compare_exchange(me.raw(), 0, Ordering::Release, Ordering::Relaxed);
    }

    /// Move entry `i`'s held count (a dead or leaving consumer's) to
    /// `abandoned`. Added before it is taken away: a process killed between
    /// the two counts it twice (a join returns early), never zero times (a
    /// join waiting forever).
    fn fold_held(&self, i: usize) {
        let ctrl = self.ctrl();
        let e = self.entry(i);
        // Relaxed: the Acquire CAS of the token (or our own entry) ordered
        // the holder's writes before this.
        let v = e.held.load(Ordering::Relaxed);
        if v == 0 {
            return;
        }
        // Release: pairs with the Acquire load in `abandoned_count`: a
        // joiner that sees this add sees our token CAS before it, so it no
        // longer counts the entry's held items as a dead holder's (else it
        // would count them twice and return early; the model
        // `join_counts_a_dead_consumers_item_once_while_its_entry_is_reused`
        // fails without it).
        ctrl.cold.abandoned.fetch_add(v, Ordering::Release);
        // Relaxed: nothing is read through this. `abandoned_count` reads
        // `held` after `abandoned`, so seeing this store means it missed
        // the add above (it counts low and waits for the notify below).
        // The next folder of this entry acquires through its token
        // (`unregister_consumer`'s Release clear, or a liveness check).
        e.held.fetch_sub(v, Ordering::Relaxed);
        ctrl.cold.all_done.notify();
    }

    /// Did consumers register, and is every one of them gone now?
    pub(super) fn consumers_gone(&self) -> bool {
        // Acquire: pairs with the Release increment in `register_consumer`.
        self.ctrl().cold.consumers_seen.load(Ordering::Acquire) > 0
            && !self.entries().any(|e| {
                // Acquire: pairs with the Release clear in
                // `unregister_consumer`.
                ProcToken::from_raw(e.token.load(Ordering::Acquire)).is_some_and(|t| t.is_alive())
            })
    }

    /// Items abandoned so far (folded, or in dead consumers' entries). The
    /// folded total is read first: an entry folded meanwhile is missed
    /// (counted low: a joiner waits for the fold's wake-up), never counted
    /// twice. A u128: the counts are untrusted and must not wrap.
    pub(super) fn abandoned_count(&self) -> u128 {
        // Acquire: pairs with the Release add in `fold_held`.
        let mut total = u128::from(self.ctrl().cold.abandoned.load(Ordering::Acquire));
        for e in self.entries() {
            // Relaxed: only says whose entry it is; liveness is the OS's.
            let tok = e.token.load(Ordering::Relaxed);
            if ProcToken::from_raw(tok).is_some_and(|t| !t.is_alive()) {
                // Relaxed: read only for a holder found dead, whose every
                // write the liveness check that found it dead ordered
                // before this (the kernel's exit; in a model the oracle's
                // SeqCst death flag). A live registrant's fold of the entry
                // meanwhile is the Release/Acquire pair on `abandoned`
                // above.
                total += u128::from(e.held.load(Ordering::Relaxed));
            }
        }
        total
    }

    /// Whether every item pushed so far is done or abandoned; if so, the
    /// report. `done` is read before the tails: in a correct queue it never
    /// exceeds them then, so `done` past the pushed total is corruption.
    pub(super) fn joined(&self) -> std::result::Result<Option<JoinReport>, JoinError> {
        // Acquire: pairs with the Release increment in `task_done`: the
        // consumers' work on the items happened before we return.
        let done = self.ctrl().done.load(Ordering::Acquire);
        let abandoned = self.abandoned_count();
        let mut pushed: u128 = 0;
        for (i, l) in self.lanes().enumerate() {
            // Relaxed: a join reads no slot; the tails only count pushes.
            // `done` was loaded first with Acquire, so every claim counted
            // in it (which loaded a tail covering its items) happened
            // before, and these loads read tails at least as high
            // (coherence): `done` never exceeds them in a correct queue. A
            // push that happened before the join is seen the same way.
            let t = l.tail.load(Ordering::Relaxed);
            check_seq("tail", t).map_err(|d| JoinError::Corrupt(format!("lane {i}: {d}")))?;
            pushed += u128::from(t);
        }
        let done = u128::from(done);
        if done > pushed {
            return Err(JoinError::Corrupt(format!(
                "done {done} is past the {pushed} items pushed"
            )));
        }
        let left = pushed - done;
        if abandoned >= left {
            // left <= pushed < 2^63 * lanes; it fits a u64 unless corrupt.
            let abandoned = u64::try_from(left)
                .map_err(|_| JoinError::Corrupt(format!("{left} items left is impossible")))?;
            return Ok(Some(JoinReport { abandoned }));
        }
        Ok(None)
    }
}

/// Whether a producer may start from `head` and `tail`.
pub(super) fn check_lane(head: u64, tail: u64, cap: u64) -> std::result::Result<(), String> {
    check_seq("tail", tail)?;
    check_seq("head", head)?;
    if head > tail {
        return Err(format!("head {head} is past tail {tail}"));
    }
    if tail - head > cap {
        return Err(format!(
            "tail {tail} is {} past head {head}, more than the capacity {cap}",
            tail - head
        ));
    }
    Ok(())
}

//! The queue's consumer handle: [`Consumer`] scans the lanes round-robin
//! from a rotating start and claims from the first non-empty one by the
//! ring's claim = commit CAS of that lane's head, announcing the items in
//! its registry entry first (so a consumer killed holding items leaves them
//! counted as abandoned); it sleeps on the shared `not_empty` while every
//! lane is empty, and marks items done.

use std::any::TypeId;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::process::ProcToken;
use crate::ring::control::check_seq;
use crate::ring::message::Frame;
use crate::ring::wait::{WaitStrategy, Waiting, sleep_slice};
use crate::ring::{JoinError, JoinReport, PopError, TaskDoneError};
use crate::slot::read_slot;
use crate::sole::Claim;
use crate::sync::{AtomicU64, Ordering, spin_loop};

use super::mem::QueueMem;

/// One consumer of a [`Queue`](super::Queue). Each item goes to exactly one
/// consumer; items of one producer arrive in the order it pushed them.
/// Methods take `&self`, so threads may share a consumer.
///
/// ```
/// use shmkit::queue::{Queue, QueueOptions};
/// let q = Queue::<u64>::new_in_process(QueueOptions::new(8, 2, 2))?;
/// let mut tx = q.producer()?;
/// let rx = q.consumer()?;
/// tx.push_slice(&[1, 2, 3])?;
/// let mut buf = [0u64; 8];
/// let n = rx.pop_into(&mut buf)?; // one claim, up to 8 items
/// assert_eq!(&buf[..n], [1, 2, 3]);
/// for _ in 0..n {
///     rx.task_done()?;
/// }
/// assert_eq!(q.join()?.abandoned, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the consumer unregisters it"]
pub struct Consumer<T: Pod> {
    pub(super) mem: Arc<QueueMem>,
    /// Our registry entry.
    entry: usize,
    me: ProcToken,
    /// The lane the next scan starts at (process-local).
    next: AtomicU64,
    /// Claims in a row from the lane `next` names (process-local).
    streak: AtomicU64,
    /// The last tail read of each lane (process-local; see `claim_lane`).
    tail_cache: Box<[AtomicU64]>,
    /// Items we took and have not marked done (process-local: the arbiter
    /// of `task_done`; its shared mirror is our entry's `held`). Frames,
    /// for a byte-message consumer.
    local_held: AtomicU64,
    /// The frame counts of the byte messages we took and have not marked
    /// done, oldest first (process-local; only a `Consumer<Frame>`'s bytes
    /// pops fill it): `task_done` marks one whole message.
    messages: Mutex<VecDeque<u32>>,
    futex_calls: AtomicU64,
    /// Whether this handle holds the queue's sole-consumer claim (given
    /// back on drop).
    sole: bool,
    /// How this handle waits while the queue is empty.
    pub(super) wait: WaitStrategy,
    _elem: PhantomData<*const T>,
}

// SAFETY: the consumer owns no `T`; it hands out copies made from shared
// memory, so moving it needs `T: Send`; the rest is atomics.
unsafe impl<T: Pod + Send> Send for Consumer<T> {}
// SAFETY: pops take `&self`; whichever thread pops gets the `T`.
unsafe impl<T: Pod + Send> Sync for Consumer<T> {}

/// Claims in a row a consumer takes from one lane before its scans start
/// at the next (fairness between producers, at a bounded cost).
const STICK: u64 = 32;

/// What one lane had for a claim.
enum Lane {
    Empty,
    /// `n` items taken; `contended`: another consumer won a claim on this
    /// lane while we tried (we lost a head CAS on the way).
    Took {
        n: usize,
        contended: bool,
    },
}

impl<T: Pod> Consumer<T> {
    pub(super) fn new(mem: Arc<QueueMem>) -> crate::Result<Self> {
        let (entry, me) = mem.register_consumer()?;
        let lanes = mem.geo().producers;
        Ok(Consumer {
            mem,
            entry,
            me,
            // Consumers start their scans at different lanes (their registry
            // entries), so two busy consumers do not begin on one lane's head
            // and fight over it (see `scan`).
            next: AtomicU64::new(entry.checked_rem(lanes).unwrap_or(0) as u64),
            streak: AtomicU64::new(0),
            tail_cache: (0..lanes).map(|_| AtomicU64::new(0)).collect(),
            local_held: AtomicU64::new(0),
            messages: Mutex::new(VecDeque::new()),
            futex_calls: AtomicU64::new(0),
            sole: false,
            wait: WaitStrategy::default(),
            _elem: PhantomData,
        })
    }

    /// Claim the queue's sole-consumer role for this registered consumer
    /// (see `SoleConsumer`); given back when the handle drops.
    pub(super) fn claim_sole(&mut self) -> crate::Result<()> {
        self.mem.claim_sole(self.entry, self.me)?;
        self.sole = true;
        Ok(())
    }

    /// How this consumer waits while the queue is empty (see
    /// [`WaitStrategy`]; the default spins 60 us, then sleeps).
    pub fn set_wait(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// Claim from lane `i` with one CAS of its head as many items as
    /// `size(first_slot, available)` says (in `1..=available`; the typed
    /// pops take `min(available, max)`, a byte message the frames its first
    /// frame names); `copy(k, run)` copies a run of whole slots contiguous
    /// in memory whose first is the k-th (at most two runs, split where the
    /// lane wraps), and counts only if the CAS wins. An `Err` from `size`,
    /// or a count out of range, is `Corrupt` unless head moved meanwhile
    /// (then the slot was being reused under us, and we retry). Adds nothing to `local_held`: the
    /// caller does (`claim`, or a bytes pop with its message's size).
    #[inline(always)]
    fn claim_lane(
        &self,
        how: Claim,
        i: usize,
        size: &mut impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        copy: &mut impl FnMut(usize, &[AtomicU64]),
    ) -> Result<Lane, PopError> {
        let mem = &*self.mem;
        let lane = mem.lane(i);
        let held = &mem.entry(self.entry).held;
        let cap = mem.geo().cap;
        let mut contended = false;
        loop {
            // Acquire: pairs with the Release CAS of the consumer that moved
            // head here, which had loaded tail >= h; so our tail load below
            // cannot see less than h.
            let h = lane.head.load(Ordering::Acquire);
            // Relaxed: a process-local cache of the lane's tail, as the
            // ring consumer's `tail_cache`: the slots below it were made
            // visible by the Acquire load that read it, and tails only
            // grow, so the shared tail (a line its producer writes on every
            // push) is read only when the cache says the lane is empty.
            let cache = &self.tail_cache[i];
            let mut t = cache.load(Ordering::Relaxed);
            if h >= t {
                // Acquire: pairs with the producer's Release store of tail
                // (producer.rs, `publish`): the slot words below it are
                // visible.
                t = lane.tail.load(Ordering::Acquire);
                check_seq("tail", t)
                    .and_then(|_| check_seq("head", h))
                    .map_err(|d| PopError::Corrupt(format!("lane {i}: {d}")))?;
                // Cached only once it passes the range checks below.
                if t >= h && t - h <= cap {
                    cache.store(t, Ordering::Relaxed);
                }
            }
            if t == h {
                return Ok(Lane::Empty);
            }
            if t < h || t - h > cap {
                // Legitimate only if head moved between our two loads.
                // Relaxed: compared only.
                if lane.head.load(Ordering::Relaxed) == h {
                    return Err(PopError::Corrupt(if t < h {
                        format!("lane {i}: head {h} is past tail {t}")
                    } else {
                        format!(
                            "lane {i}: tail {t} is {} past head {h}, more than the capacity {cap}",
                            t - h
                        )
                    }));
                }
                continue;
            }
            let available = (t - h) as usize;
            let n = match size(mem.slot(i, h), available) {
                Ok(n) if (1..=available).contains(&n) => n,
                other => {
                    // Relaxed: compared only.
                    if lane.head.load(Ordering::Relaxed) == h {
                        let detail = match other {
                            Err(d) => d,
                            Ok(n) => format!("a message of {n} slots, {available} published"),
                        };
                        return Err(PopError::Corrupt(format!("lane {i}: {detail}")));
                    }
                    continue;
                }
            };
            if n == 1 {
                // The single-item pops: no run to split.
                copy(0, mem.slot(i, h));
            } else {
                let [a, b] = mem.run(i, h, n);
                copy(0, a);
                if !b.is_empty() {
                    copy(a.len() / mem.geo().words, b);
                }
            }
            if how == Claim::Sole {
                // The sole consumer (see `SoleConsumer`): nobody else writes
                // our entry while we live, nobody else moves this lane's
                // head, so a load and a store do what the read-modify-writes
                // below do, in the same order, with their orderings (held
                // Relaxed, head Release: see there). Wrapping, as
                // fetch_add: the entry may hold garbage.
                let announced = held.load(Ordering::Relaxed).wrapping_add(n as u64);
                held.store(announced, Ordering::Relaxed);
                lane.head.store(h + n as u64, Ordering::Release);
                if mem.ctrl().not_full.notify() {
                    self.futex_calls.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(Lane::Took {
                    n,
                    contended: false,
                });
            }
            // Announce before the claim: killed in between, we count n
            // items abandoned that another consumer takes (a join returns
            // early by that much); announced after, a kill in between would
            // leave them counted nowhere and joiners waiting forever.
            // Relaxed: `held` publishes nothing. It is read for a decision
            // only by a joiner (`abandoned_count`) or a registrant folding
            // our entry (`fold_held`), and only once we are found dead
            // (the liveness check orders our writes) or after we left
            // (`unregister_consumer`'s Release clear orders them).
            held.fetch_add(n as u64, Ordering::Relaxed);
            // Release: our slot reads happen before the producer's Acquire
            // load of head that lets it overwrite them. Claim = commit.
            match lane
                .head
                .compare_exchange(h, h + n as u64, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if mem.ctrl().not_full.notify() {
                        self.futex_calls.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Lane::Took { n, contended });
                }
                Err(_) => {
                    // Relaxed: taking back our own announcement.
                    held.fetch_sub(n as u64, Ordering::Relaxed);
                    contended = true;
                    spin_loop();
                }
            }
        }
    }

    /// One pass over the lanes from the rotating start. Always inlined (as
    /// the ring's `claim_as`): its `Result` then never goes through memory.
    #[inline(always)]
    fn scan(
        &self,
        how: Claim,
        size: &mut impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        copy: &mut impl FnMut(usize, &[AtomicU64]),
    ) -> Result<Option<usize>, PopError> {
        let lanes = self.mem.geo().producers;
        // The lane after `i`, without a division (a scan ran two per pop).
        let after = |i: usize| if i + 1 >= lanes { 0 } else { i + 1 };
        // Relaxed: process-local. Always below `lanes` (stored so below),
        // checked anyway: local, but a guard costs a compare.
        let start = match self.next.load(Ordering::Relaxed) as usize {
            n if n < lanes => n,
            _ => 0,
        };
        let mut i = start;
        for j in 0..lanes {
            if j > 0 {
                i = after(i);
            }
            let took = match self.claim_lane(how, i, size, copy) {
                Ok(t) => t,
                Err(e) => {
                    // Relaxed: process-local. The next scan starts past a
                    // damaged lane, so the others are still served (it is
                    // reported again only when a scan reaches it).
                    self.next.store(after(i) as u64, Ordering::Relaxed);
                    self.streak.store(0, Ordering::Relaxed);
                    return Err(e);
                }
            };
            if let Lane::Took { n, contended } = took {
                // Relaxed, both: process-local. The next scan starts at
                // this lane again, up to STICK claims in a row, then after
                // it: a busy lane costs one look a claim, not a pass over
                // every empty lane (32 by default in Python), and no lane
                // waits more than STICK claims of another (exactly so for
                // one thread; threads sharing a consumer may overwrite each
                // other's streak, which only moves the turn a little).
                // A claim that lost a CAS to another consumer on the way
                // also moves on: two consumers on one lane pass its head's
                // line back and forth on every claim, so the loser starts
                // its next scan at the next lane, and busy consumers spread
                // over busy lanes (with one lane, it is the same lane).
                let streak = if contended {
                    STICK
                } else if j == 0 {
                    self.streak.load(Ordering::Relaxed) + 1
                } else {
                    1
                };
                if streak >= STICK {
                    self.next.store(after(i) as u64, Ordering::Relaxed);
                    self.streak.store(0, Ordering::Relaxed);
                } else {
                    self.next.store(i as u64, Ordering::Relaxed);
                    self.streak.store(streak, Ordering::Relaxed);
                }
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Claim up to `max` items from one lane, counted held by this
    /// consumer (see [`claim_sized`](Self::claim_sized)).
    #[inline]
    fn claim(
        &self,
        how: Claim,
        max: usize,
        copy: impl FnMut(usize, &[AtomicU64]),
    ) -> Result<usize, PopError> {
        let n = self.claim_sized(how, |_, available| Ok(available.min(max)), copy)?;
        // Relaxed: process-local bookkeeping. The sole consumer is alone in
        // the handle (`&mut`): a load and a store.
        if how == Claim::Sole {
            let mine = self.local_held.load(Ordering::Relaxed);
            self.local_held.store(mine + n as u64, Ordering::Relaxed);
        } else {
            self.local_held.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// A claim over every lane, of as many items as `size` decides from a
    /// lane's first slot (see [`claim_lane`](Self::claim_lane)): `Empty`,
    /// or `Disconnected` once the queue is closed (or, if asked for at
    /// creation, its producers are gone) and a scan made after learning so
    /// found nothing. The caller counts what it took in `local_held`.
    #[inline]
    pub(super) fn claim_sized(
        &self,
        how: Claim,
        mut size: impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        mut copy: impl FnMut(usize, &[AtomicU64]),
    ) -> Result<usize, PopError> {
        if let Some(n) = self.scan(how, &mut size, &mut copy)? {
            return Ok(n);
        }
        let mem = &*self.mem;
        // Both checks Acquire (see `closed`, `producers_gone`): the scan
        // below sees every push made before a close or a leave.
        let ended = mem.closed() || (mem.disconnect_when_producers_gone() && mem.producers_gone());
        if !ended {
            return Err(PopError::Empty);
        }
        match self.scan(how, &mut size, &mut copy)? {
            Some(n) => Ok(n),
            None => Err(PopError::Disconnected),
        }
    }

    /// Take one item if there is one, without waiting.
    #[must_use = "an item taken and dropped is lost to every consumer"]
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.try_pop_as(Claim::Shared)
    }

    /// Always inlined, as the ring's: the `Result` through memory cost more
    /// than the pop.
    #[inline(always)]
    pub(super) fn try_pop_as(&self, how: Claim) -> Result<T, PopError> {
        let mut out = T::zeroed();
        self.claim(how, 1, |_, run| out = read_slot(run))?;
        Ok(out)
    }

    /// Take up to `buf.len()` items from one lane with one claim; how many.
    #[must_use = "only the first n items of `buf` were filled"]
    pub fn try_pop_into(&self, buf: &mut [T]) -> Result<usize, PopError> {
        self.try_pop_into_as(Claim::Shared, buf)
    }

    #[inline]
    pub(super) fn try_pop_into_as(&self, how: Claim, buf: &mut [T]) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let words = self.mem.geo().words;
        self.claim(how, buf.len(), |k, run| {
            for (b, slot) in buf[k..].iter_mut().zip(run.chunks_exact(words)) {
                *b = read_slot(slot);
            }
        })
    }

    /// Take one item, waiting while the queue is empty. `Disconnected` once
    /// it is closed and drained (or, with
    /// [`disconnect_when_producers_gone`](super::QueueOptions::disconnect_when_producers_gone),
    /// every producer has left and it is drained).
    #[inline]
    pub fn pop(&self) -> Result<T, PopError> {
        // The first look inline; the wait (and its set-up) only when empty.
        match self.try_pop() {
            Err(PopError::Empty) => self.wait_for_from(None, true, || self.try_pop()),
            other => other,
        }
    }

    /// [`pop`](Self::pop), waiting at most `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        self.wait_for(Some(Instant::now() + timeout), || self.try_pop())
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
        self.wait_for(Some(Instant::now() + timeout), || self.try_pop_into(buf))
    }

    pub(super) fn wait_for<R>(
        &self,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        self.wait_for_from(deadline, false, attempt)
    }

    /// [`wait_for`](Self::wait_for); `tried`: the caller's own attempt just
    /// found the queue empty, so the wait starts without another scan.
    pub(super) fn wait_for_from<R>(
        &self,
        deadline: Option<Instant>,
        mut tried: bool,
        mut attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        let mut waiting = Waiting::new(self.wait, deadline);
        loop {
            if !tried {
                match attempt() {
                    Err(PopError::Empty) => {}
                    other => return other,
                }
            }
            tried = false;
            if waiting.keep_spinning() {
                continue;
            }
            let ctrl = self.mem.ctrl();
            // Relaxed, here and after the sleep: a statistic for tools,
            // paired with nothing.
            ctrl.consumers_sleeping.fetch_add(1, Ordering::Relaxed);
            let key = waiting.prepare(&ctrl.not_empty);
            // A sleeper wakes at least every liveness slice: a producer that
            // died notifies nobody, and `attempt` re-checks who is gone.
            let outcome = match attempt() {
                Err(PopError::Empty) => match sleep_slice(deadline) {
                    None => Some(Err(PopError::Timeout)),
                    slice => {
                        if waiting.sleep(&ctrl.not_empty, key, slice) {
                            self.futex_calls.fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    }
                },
                other => Some(other),
            };
            ctrl.consumers_sleeping.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// The items, one [`pop`](Self::pop) each, until `Disconnected` (or any
    /// other error).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.pop().ok())
    }

    /// Mark one item this consumer took as done (Python's
    /// `JoinableQueue.task_done`). `TooMany` if this consumer has marked
    /// every item it took already.
    ///
    /// On a `Consumer<Frame>`, it marks the oldest byte message this
    /// consumer took with a bytes pop (`pop_bytes` and its kin) and has not
    /// marked: all of its frames at once; with no such message, one frame
    /// taken by an item pop (`pop`, `pop_into`). The shared counts (what
    /// `join` compares) stay in frames.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let n = if TypeId::of::<T>() == TypeId::of::<Frame>() {
            self.take_message()
        } else {
            take_n(&self.local_held, 1).then_some(1)
        };
        let Some(n) = n else {
            return Err(TaskDoneError::TooMany);
        };
        let ctrl = self.mem.ctrl();
        // Release: our work on the item happens before a joiner's Acquire
        // load of done (`QueueMem::joined`).
        ctrl.done.fetch_add(n, Ordering::Release);
        // Counted done first, then no longer ours: a kill in between counts
        // it both done and abandoned (a join returns early), never neither.
        // Relaxed: as the claim's increment of `held` (consumer.rs,
        // `claim_lane`): read only once we are found dead or after we left.
        self.mem
            .entry(self.entry)
            .held
            .fetch_sub(n, Ordering::Relaxed);
        ctrl.cold.all_done.notify();
        Ok(())
    }

    /// Count a byte message of `frames` frames, just claimed, as held: one
    /// `task_done` marks it whole.
    pub(super) fn hold_message(&self, frames: usize) {
        // Relaxed: process-local bookkeeping. Added before the message is
        // queued below, so `take_message` never takes more than is there.
        self.local_held.fetch_add(frames as u64, Ordering::Relaxed);
        // A frame count is at most a lane's capacity (checked by the claim).
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(frames as u32);
    }

    /// Take the oldest held message off the local counts (or one frame of
    /// an item pop if no message is held); its frames, `None` if nothing is
    /// held.
    fn take_message(&self) -> Option<u64> {
        let oldest = self
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        let n = oldest.map_or(1, u64::from);
        // Not below n unless threads sharing this consumer mark more than
        // they took while another is between a claim and `hold_message`.
        take_n(&self.local_held, n).then_some(n)
    }

    /// Items this consumer took and has not marked done (frames, for byte
    /// messages).
    pub fn held(&self) -> u64 {
        self.local_held.load(Ordering::Relaxed)
    }

    /// Wait until every item pushed is done or abandoned (see
    /// [`Queue::join`](super::Queue::join)).
    pub fn join(&self) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, None)
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, Some(Instant::now() + timeout))
    }

    /// Whether the queue was closed (items may still be left).
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// Futex system calls made through this handle.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls.load(Ordering::Relaxed)
    }
}

/// Take `n` from a process-local count if it holds that many; whether it
/// did.
fn take_n(count: &AtomicU64, n: u64) -> bool {
    // Relaxed: process-local bookkeeping, ordering nothing shared.
    let mut v = count.load(Ordering::Relaxed);
    while v >= n {
        // Relaxed: as above.
        match count.compare_exchange_weak(v, v - n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

impl<T: Pod> Drop for Consumer<T> {
    fn drop(&mut self) {
        // A killed process runs no destructor (only a model's dying thread
        // gets here): its entry stays, and what it held counts as abandoned.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        if self.sole {
            self.mem.release_sole(self.me);
        }
        self.mem.unregister_consumer(self.entry, self.me);
    }
}

//! How a queue [`Consumer`] claims: one pass over the lanes from a rotating
//! start (`scan`), and in each lane the ring's claim = commit CAS of its
//! head, with the items announced in the consumer's registry entry first
//! (`claim_lane`). The handle, its pops, waits and `task_done` are in the
//! parent module.

use bytemuck::Pod;

use super::Consumer;
use crate::ring::PopError;
use crate::ring::control::{check_seq, impossible_span};
use crate::sole::Claim;
use crate::sync::{AtomicU64, Ordering, spin_loop};

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
                    .map_err(move |d| PopError::Corrupt(in_lane(i, d)))?;
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
                    return Err(PopError::Corrupt(in_lane(i, impossible_span(h, t, cap))));
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
                        return Err(PopError::Corrupt(in_lane(i, detail)));
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
    pub(super) fn claim(
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
    pub(in crate::queue) fn claim_sized(
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
}

/// A `Corrupt` detail, said of lane `i`. Out of line and by value, as
/// `impossible_span`.
#[cold]
#[inline(never)]
fn in_lane(i: usize, detail: String) -> String {
    format!("lane {i}: {detail}")
}

//! Who holds a queue: claiming and giving back a producer's lane (taking
//! over a dead owner's), the consumer registry (registering, leaving, the
//! sole-consumer claim, folding a dead or departed consumer's held items
//! into `abandoned`), who is gone, and whether a join is over. The memory
//! these read and write is `mem.rs`'s.

use crate::error::{Error, Result};
use crate::process::ProcToken;
use crate::ring::control::{check_claim, check_seq};
use crate::ring::{JoinError, JoinReport};
use crate::sync::Ordering;

use super::mem::QueueMem;

impl QueueMem {
    /// Claim a free lane, or one whose owner died (its published items stay
    /// and are delivered before ours: per-producer order holds). Returns the
    /// lane, our token, its tail, and the head to seed the producer's cache
    /// with: not the head read here (that one only validates) but the
    /// lowest one the lane allows, `tail - cap` (0 while `tail < cap`), so
    /// that the first push that would reuse a slot re-reads head in `room`,
    /// whose Acquire orders the consumers' reads of that slot before the
    /// overwrite. The slots a push may write without that re-read
    /// (sequences `tail .. cap`) were never written before, so no consumer
    /// has read them.
    pub(super) fn claim_lane(&self) -> Result<(usize, ProcToken, u64, u64)> {
        if self.closed() {
            return Err(Error::Closed {
                name: self.label().to_owned(),
            });
        }
        let me = ProcToken::current();
        // First pass: free lanes that are empty, so that a new producer does
        // not start behind a departed one's items (and block on a full lane
        // while an empty one is free); second pass: any free lane.
        for pass in 0..2 {
            for i in 0..self.geo().producers {
                if let Some(claim) = self.try_claim_lane(i, me, pass == 0)? {
                    return Ok(claim);
                }
            }
        }
        Err(Error::TooManyProducers {
            name: self.label().to_owned(),
            max: self.geo().producers,
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
        // Relaxed, both: they only validate. The previous owner's last tail
        // store and its last head read happened before this (through the
        // CAS above or the liveness check), so these loads read that tail
        // and a head at least the one it last read (coherence), and a
        // correct lane passes the check. No slot is reused on this head:
        // the cache is seeded from `tail - cap` (see `claim_lane`), and the
        // first push that needs a reused slot re-reads head with Acquire.
        let head = lane.head.load(Ordering::Relaxed);
        let tail = lane.tail.load(Ordering::Relaxed);
        let cap = self.geo().cap;
        if let Err(detail) = check_claim(head, tail, cap) {
            self.release_lane(i, me);
            return Err(self.corrupt(format!("lane {i}: {detail}")));
        }
        // Release: pairs with the Acquire load in `producers_gone`, so
        // whoever counts us sees our lane claimed.
        self.ctrl()
            .cold
            .producers_seen
            .fetch_add(1, Ordering::Release);
        Ok(Some((i, me, tail, tail.saturating_sub(cap))))
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
        for i in 0..self.geo().consumers {
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
            name: self.label().to_owned(),
            max: self.geo().consumers,
        })
    }

    /// Make the consumer registered in `entry` the queue's sole one
    /// (`crate::sole`); the caller unregisters on error.
    pub(super) fn claim_sole(&self, entry: usize, me: ProcToken) -> Result<()> {
        let others = (0..self.geo().consumers).filter(move |j| *j != entry);
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
        let name = self.label().to_owned();
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

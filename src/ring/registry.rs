//! Who holds a ring: the producer role (claimed with a CAS on a token in the
//! control block, taken over from a dead holder, given back on drop), the
//! table of registered consumers, and the dead-peer questions blocking
//! calls ask (`producer_dead`, `consumers_gone`). The tokens are
//! `ProcToken`s (pid and start time). Moving `head` and `tail` is not here.

use crate::error::{Error, Result};
use crate::process::ProcToken;
use crate::sync::Ordering;

use super::control::{MAX_CONSUMERS, RingMem, check_claim};

/// What a new producer starts from: its token, the `tail` it found, and
/// the `head` to seed its cache with: not the head it read (that one only
/// validates, see `claim_producer`) but the lowest head the ring allows,
/// `tail - cap` (0 while `tail < cap`), so that the first push that would
/// reuse a slot re-reads head in `Producer::room`, whose Acquire orders the
/// consumers' reads of that slot before the overwrite. The slots it lets a
/// push write without that re-read (sequences `tail .. cap`) were never
/// written before, so no consumer has read them.
pub(super) struct ProducerClaim {
    pub(super) me: ProcToken,
    pub(super) tail: u64,
    pub(super) head: u64,
}

impl RingMem {
    /// Claim the producer role. Fails with `ProducerExists` while another
    /// live producer holds it (a dead producer's role is taken over, and its
    /// published items stay), with `Closed` once the ring was closed, and
    /// with `Corrupt` (the role given back) if `head` and `tail` are
    /// impossible.
    pub(super) fn claim_producer(&self) -> Result<ProducerClaim> {
        let cold = &self.ctrl().cold;
        let me = ProcToken::current();
        loop {
            if self.closed() {
                return Err(Error::Closed {
                    name: self.label().to_owned(),
                });
            }
            // Relaxed: only tested (a live holder: refused); the CAS below
            // succeeds only from this very value and is the Acquire that
            // pairs with `release_producer`. A dead holder's writes are
            // ordered by the liveness check that found it dead.
            let cur = cold.producer.load(Ordering::Relaxed);
            if let Some(holder) = ProcToken::from_raw(cur)
                && holder.is_alive()
            {
                return Err(Error::ProducerExists {
                    name: self.label().to_owned(),
                    pid: holder.pid(),
                });
            }
            // Acquire: pairs with the Release CAS in `release_producer`: a
            // predecessor that gave the role back (after closing) has its
            // last tail store ordered before our tail load below. We get
            // here after a close only by racing it (we saw `closed` 0);
            // without this Acquire we could start from a stale tail and
            // overwrite its items (`a_producer_claiming_while_the_holder_
            // closes_keeps_its_items`, loom_tests/ring_registry.rs). A dead
            // predecessor never released the role, so this CAS does not
            // synchronize with its tail stores: the liveness check that found
            // it dead orders them (its death happened before our check read
            // /proc; in a model the oracle's SeqCst death flag). No Release:
            // nobody acquires through a claim. A later claimer reads our
            // token only while we hold the role (alive: refused; dead: its
            // liveness check orders our writes) or after `release_producer`'s
            // own Release.
            if cold
                .producer
                .compare_exchange(cur, me.raw(), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        let ctrl = self.ctrl();
        // Relaxed, both: they only validate. The previous holder's last
        // tail store and its last head read happened before this (through
        // the CAS above or the liveness check), so these loads read that
        // tail and a head at least the one it last read (coherence), and a
        // correct ring passes the check. No slot is reused on this head: the
        // cache is seeded from `tail - cap` (see `ProducerClaim`), and the
        // first push that needs a reused slot re-reads head with Acquire.
        let head = ctrl.head.load(Ordering::Relaxed);
        let tail = ctrl.tail.load(Ordering::Relaxed);
        match check_claim(head, tail, self.cap()) {
            Ok(()) => Ok(ProducerClaim {
                me,
                tail,
                head: tail.saturating_sub(self.cap()),
            }),
            Err(detail) => {
                // Relaxed: we wrote nothing in the role, so there is nothing
                // of ours to publish; the only thing a Release here would pass
                // on is the previous holder's tail, to a later claimer of a
                // ring we just found corrupt (which it then finds corrupt,
                // or starts from a corrupt one: no promise holds there).
                cold.producer.store(0, Ordering::Relaxed);
                Err(self.corrupt(detail))
            }
        }
    }

    /// Give the producer role back, only if it is still `me`'s.
    pub(super) fn release_producer(&self, me: ProcToken) {
        // Release: pairs with the Acquire CAS in `claim_producer`, so the
        // next producer sees our last tail. We run after `close`, so a later
        // claimer that saw `closed` is refused; this matters for one that
        // checked `closed` before our close and claims after this (it raced
        // the close and gets the role): without it, it could start from a
        // stale tail over our items. (No model fails without it: there
        // `close`'s wake-up fence is a SeqCst fence, which releases this
        // CAS too; in a real build it is a compiler fence. MUTATIONS.md.)
        let _ = self.ctrl().cold.producer.compare_exchange(
            me.raw(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Register a consumer in a free (or dead process's) registry entry;
    /// returns its entry and token. `TooManyConsumers` when every entry is
    /// held by a live process.
    pub(super) fn register_consumer(&self) -> Result<(usize, ProcToken)> {
        let cold = &self.ctrl().cold;
        let me = ProcToken::current();
        for (i, slot) in cold.consumers.iter().enumerate() {
            let cur = slot.load(Ordering::Relaxed);
            let free = ProcToken::from_raw(cur).is_none_or(|t| !t.is_alive());
            // Relaxed: the registry orders nothing; it is read for liveness.
            // Acquire on success: a dead holder's `held` count (its last
            // writes) is read below. (Relaxed would do for the token itself:
            // the registry orders nothing else.)
            if free
                && slot
                    .compare_exchange(cur, me.raw(), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // A dead holder's (or a dropped one's) unfinished items.
                self.fold_held(i);
                // Release: publishes our registry slot (claimed above) to
                // `consumers_gone`, which must never count us as gone.
                cold.consumers_seen.fetch_add(1, Ordering::Release);
                // A live sole consumer shuts everyone else out (see
                // `crate::sole`).
                if let Err(refused) = crate::sole::check_registration(&cold.sole) {
                    self.unregister_consumer(i, me);
                    return Err(self.refused(refused));
                }
                return Ok((i, me));
            }
        }
        Err(Error::TooManyConsumers {
            name: self.label().to_owned(),
            max: MAX_CONSUMERS,
        })
    }

    /// Make the consumer registered in entry `entry` the ring's sole one:
    /// `SoleConsumer` (another live sole consumer, in any process) or
    /// `ConsumerExists` (another live consumer in the registry). A dead
    /// sole consumer's claim is taken over. The caller unregisters on
    /// error.
    pub(super) fn claim_sole(&self, entry: usize, me: ProcToken) -> Result<()> {
        let cold = &self.ctrl().cold;
        let others = cold
            .consumers
            .iter()
            .enumerate()
            .filter(move |(j, _)| *j != entry);
        // Relaxed: ordered by the fence in `sole::claim`, which iterates this
        // after it.
        let others = others.map(|(_, c)| c.load(Ordering::Relaxed));
        crate::sole::claim(&cold.sole, me, others).map_err(|r| self.refused(r))
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

    /// Move what a dead consumer held in entry `i` (now ours) to
    /// `abandoned`, so that joiners keep counting it. Added before it is
    /// taken away: a process killed between the two counts it twice
    /// (`join` may then return early by that much), never zero times (which
    /// would make `join` wait forever).
    pub(super) fn fold_held(&self, i: usize) {
        let ctrl = self.ctrl();
        let Some(held) = ctrl.held.get(i) else { return };
        // Relaxed: a holder that left has its writes to `held` ordered
        // before this by our Acquire CAS of the token (`register_consumer`,
        // pairing with `unregister_consumer`'s Release clear), a dead one
        // by the liveness check that found it dead; or the entry is ours.
        let v = held.load(Ordering::Relaxed);
        if v == 0 {
            return;
        }
        // Release: pairs with the Acquire load in `abandoned_count`, so a
        // joiner that sees the fold also sees what came before it.
        ctrl.cold.abandoned.fetch_add(v, Ordering::Release);
        // Relaxed: nothing is read through this. `abandoned_count` reads
        // `held` after `abandoned`, so seeing this store means it missed
        // the add above (it counts low and waits for the notify below).
        // The next folder of this entry acquires through its token
        // (`unregister_consumer`'s Release clear, or a liveness check).
        held.fetch_sub(v, Ordering::Relaxed);
        // A joiner may have read the entry as ours (alive) and the total
        // before the fold: wake it to count again.
        ctrl.cold.all_done.notify();
    }

    /// Items abandoned so far: taken by consumers that died before marking
    /// them done (folded into `abandoned`, or still in a dead consumer's
    /// registry entry). A u128: the counts come from shared memory, and a
    /// sum of corrupt ones must not wrap.
    ///
    /// `abandoned` is read first, the entries after: an entry folded in
    /// between is missed (counted low, so a joiner waits for the fold's
    /// wake-up), never counted twice.
    pub(super) fn abandoned_count(&self) -> u128 {
        let ctrl = self.ctrl();
        // Acquire: pairs with the Release add in `fold_held`.
        let mut total = u128::from(ctrl.cold.abandoned.load(Ordering::Acquire));
        for (tok, held) in ctrl.cold.consumers.iter().zip(ctrl.held.iter()) {
            // Relaxed: liveness comes from the OS, and a dead process's last
            // writes are ordered by how its death was learnt; the token only
            // says whose entry this is.
            let dead =
                ProcToken::from_raw(tok.load(Ordering::Relaxed)).is_some_and(|t| !t.is_alive());
            if dead {
                // Relaxed: read only for a holder found dead, whose every
                // write the liveness check that found it dead ordered
                // before this (the kernel's exit; in a model the oracle's
                // SeqCst death flag). A live registrant's fold of the entry
                // meanwhile is the Release/Acquire pair on `abandoned`
                // above.
                total += u128::from(held.load(Ordering::Relaxed));
            }
        }
        total
    }

    /// Free registry entry `slot`, only if it still holds `me`.
    pub(super) fn unregister_consumer(&self, slot: usize, me: ProcToken) {
        if let Some(s) = self.ctrl().cold.consumers.get(slot) {
            // Items taken and never marked done are abandoned by leaving.
            if s.load(Ordering::Relaxed) == me.raw() {
                self.fold_held(slot);
            }
            // Release: our pops and task_done calls happen before a waiter's
            // Acquire in `consumers_gone` that sees us gone.
            let _ = s.compare_exchange(me.raw(), 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    /// Is the producer known to be dead (it held the role, and its process is
    /// gone without closing)?
    pub(super) fn producer_dead(&self) -> bool {
        let raw = self.ctrl().cold.producer.load(Ordering::Relaxed);
        ProcToken::from_raw(raw).is_some_and(|t| !t.is_alive())
    }

    /// Did consumers exist, and are they all dead now?
    pub(super) fn consumers_gone(&self) -> bool {
        let cold = &self.ctrl().cold;
        // Acquire: pairs with the Release increment in `register_consumer`,
        // so the registry slot that consumer claimed first is visible below.
        cold.consumers_seen.load(Ordering::Acquire) > 0
            && !cold.consumers.iter().any(|c| {
                // Acquire: pairs with the Release clear in
                // `unregister_consumer` (from `Consumer::drop`), so what that
                // consumer did (pops, task_done) is visible to the caller's
                // re-check after this returns true.
                ProcToken::from_raw(c.load(Ordering::Acquire)).is_some_and(|t| t.is_alive())
            })
    }
}

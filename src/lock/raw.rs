//! The lock algorithm itself, on borrowed words: the same code runs on a
//! shared mapping in real life and on heap memory inside a loom model. No
//! mapping, no segment, no statistics display here (see the parent module
//! for the why of the algorithm).
//!
//! Every step that touches shared memory is preceded by a call to `fate`,
//! which in real use is `|| true` and compiles away. A loom model passes a
//! closure that at its k-th call declares the process dead and returns
//! `false`; the algorithm then stops at once, touching nothing more, exactly
//! like a process killed at that point (its earlier writes stay behind).

use std::time::{Duration, Instant};

use crate::process::ProcToken;
use crate::sync::{AtomicU32, AtomicU64, Futex, Ordering};

/// The lock's words. Every bit pattern of every word is a valid state (see
/// each field): an owner that is not a running process is a dead owner.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LockWords {
    /// The lock, and whether anyone sleeps on it. Bits 0..63: 0 when free,
    /// else the raw [`ProcToken`] (pid + start time) of the holding process,
    /// so taking the lock and naming the holder are one CAS. Bit 63
    /// ([`WAITERS`]): a sleeper registered since the lock was last freed, so
    /// the release must wake. Any holder value that is not a running process
    /// (pid 0, a pid no process has, a start time that does not match) reads
    /// as a dead holder and is taken over.
    owner: AtomicU64,
    /// Times the lock was taken (wrapping). Written only by the holder.
    acquisitions: AtomicU64,
    /// Acquisitions by another pid than `last_holder` (wrapping). Written
    /// only by the holder.
    handoffs: AtomicU64,
    /// Bumped (wrapping) by every release that found [`WAITERS`]; sleepers
    /// sleep on it. Any value is valid: a foreign one only makes a sleeper
    /// return early and re-check.
    wake: Futex,
    /// Nonzero while a dead holder's data awaits `mark_consistent` (any
    /// nonzero value counts). Read and written only by the holder.
    dirty: AtomicU32,
    /// pid of the previous holder, any value. Written only by the holder.
    last_holder: AtomicU32,
}

/// The waiters bit of the owner word. A token's top bit is the start
/// time's bit 41, set only after 2^41 clock ticks (700 years at 100 Hz) of
/// uptime, so it is free for this.
pub(crate) const WAITERS: u64 = 1 << 63;

/// The holder part of an owner word (0: free).
fn holder(v: u64) -> u64 {
    v & !WAITERS
}

/// How long a sleeper sleeps before it checks whether the holder still
/// runs: the bound on noticing a dead holder (plus one `/proc` read).
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// How an acquirer may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// `try_lock`: never sleep.
    Never,
    /// Sleep until acquired, or until the deadline if there is one.
    Until(Option<Instant>),
}

/// Why an acquisition did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    WouldBlock,
    Timeout,
    /// `fate` said the process died here; `holding` says whether it had the
    /// lock at that moment.
    Died {
        holding: bool,
    },
}

/// A snapshot of the statistics, read racily.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    pub owner: u64,
    pub dirty: bool,
    pub acquisitions: u64,
    pub handoffs: u64,
}

macro_rules! step {
    ($fate:expr, $holding:expr) => {
        if !$fate() {
            return Err(Miss::Died { holding: $holding });
        }
    };
}

/// Whether the process named by the owner word `v` runs. Garbage (pid 0, a
/// pid no process has, a start time that does not match) is "not running".
fn runs(v: u64) -> bool {
    match ProcToken::from_raw(v) {
        None => false,
        Some(owner) if owner.is_alive() => true,
        // A liveness check that could not read /proc (no file descriptors
        // left, /proc not mounted) also says "not running", and taking the
        // lock from a live holder would break mutual exclusion. So a "dead"
        // verdict counts only if the same check finds us alive; otherwise
        // keep waiting (a timed lock then times out).
        Some(_) => !ProcToken::current().is_alive(),
    }
}

impl LockWords {
    /// Take the lock for `me` (the caller's raw [`ProcToken`], never with
    /// [`WAITERS`]). `Ok(dirty)`: acquired; `dirty` says a holder died and
    /// the data still awaits repair.
    ///
    /// Inline: the uncontended case is one CAS and a few plain accesses to
    /// the same cache line; the rest lives out of line in `contended`.
    #[inline]
    pub(crate) fn acquire(
        &self,
        me: u64,
        wait: Wait,
        fate: &mut impl FnMut() -> bool,
    ) -> Result<bool, Miss> {
        step!(fate, false);
        match self.claim(0, me) {
            Ok(()) => self.enter(me, false, fate),
            Err(seen) => self.contended(me, seen, wait, fate),
        }
    }

    /// `acquire` after the first CAS found the owner word `cur` (not free).
    #[cold]
    #[inline(never)]
    fn contended(
        &self,
        me: u64,
        mut cur: u64,
        wait: Wait,
        fate: &mut impl FnMut() -> bool,
    ) -> Result<bool, Miss> {
        // No spinning before sleeping. Measured with `shmkit bench --only
        // counter` (2 processes on 2 cores): 100 polls made the contended
        // lock 3x slower than none, because the spinner wins the lock from
        // the releaser's next acquire and the line then moves on every
        // operation; glibc's default mutex does not spin either. (Under
        // loom a spin would also hide interleavings: a yielding thread runs
        // again only once the others have blocked or yielded.) Re-measured
        // once the fast path was inlined (lock-2p, Intel Xeon model 207): 64
        // read-only polls before registering gave 34–36M ops/s against
        // 31–40M without, inside the run-to-run noise; so still none, and the
        // no-lost-wakeup model needs no exception for model builds.
        //
        // Check the holder's liveness on entry and after every sleep through
        // which the owner word did not change (a full slice, or a wake-up
        // that found the same holder): a holder that dies is noticed within
        // about one slice, and a hand-off costs no /proc read.
        let mut suspect = true;
        loop {
            if holder(cur) == 0 || (suspect && !runs(holder(cur))) {
                let took_over = holder(cur) != 0;
                step!(fate, false);
                // Keep the waiters bit: sleepers may still sleep, and our
                // release must wake them.
                match self.claim(cur, me | (cur & WAITERS)) {
                    Ok(()) => return self.enter(me, took_over, fate),
                    Err(seen) => {
                        // Freed, taken, or taken over by someone else (who
                        // just acquired, so runs): look again.
                        suspect = false;
                        cur = seen;
                        continue;
                    }
                }
            }
            suspect = false;
            let slice = match wait {
                Wait::Never => return Err(Miss::WouldBlock),
                Wait::Until(None) => SLICE,
                Wait::Until(Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Miss::Timeout);
                    }
                    left.min(SLICE)
                }
            };
            if cur & WAITERS == 0 {
                step!(fate, false);
                // Register: a CAS on the owner word itself, so the holder's
                // release CAS (`me -> 0`) fails and it wakes. Relaxed: this
                // publishes nothing; the claim CAS acquires.
                match self.owner.compare_exchange(
                    cur,
                    cur | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => cur |= WAITERS,
                    Err(seen) => {
                        cur = seen;
                        continue;
                    }
                }
            }
            step!(fate, false);
            // Acquire: pairs with the Release bump in `release`. If the key
            // includes the bump of the release that clears our bit, the load
            // of the owner below sees that release; if not, the futex sees
            // the word differ from the key, or the wake comes after we
            // sleep. Either way no wakeup is lost.
            let key = self.wake.word().load(Ordering::Acquire);
            step!(fate, false);
            // Relaxed: a hint (the claim CAS acquires), to skip a sleep.
            let seen = self.owner.load(Ordering::Relaxed);
            if seen != cur {
                cur = seen;
                continue;
            }
            step!(fate, false);
            self.wake.wait(key, Some(slice));
            step!(fate, false);
            let after = self.owner.load(Ordering::Relaxed);
            suspect = after == cur;
            cur = after;
        }
    }

    /// CAS the owner word from `from` (free, or a holder that does not run)
    /// to `to` (`me`, with the waiters bit kept).
    #[inline]
    fn claim(&self, from: u64, to: u64) -> Result<(), u64> {
        // Acquire: pairs with the Release CAS in `release`, so the critical
        // section sees everything the previous holder wrote in its own. After
        // a takeover the dead holder released nothing: what it wrote is
        // ordered before its death, which we observed through liveness (the
        // kernel's exit; under loom a SeqCst death flag).
        self.owner
            .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
    }

    /// Just acquired: count, mark a takeover dirty, read the dirty flag.
    #[inline]
    fn enter(
        &self,
        me: u64,
        took_over: bool,
        fate: &mut impl FnMut() -> bool,
    ) -> Result<bool, Miss> {
        step!(fate, true);
        let pid = ProcToken::from_raw(me).map_or(0, ProcToken::pid);
        // Relaxed loads and stores, not read-modify-writes: only the holder
        // writes these, and the lock orders holders. Wrapping: the words
        // may hold anything. They sit on the owner word's cache line, which
        // the CAS just made ours: measured with criterion (lock-uncontended),
        // leaving them out saved nothing (21.1 ns per lock + unlock without,
        // 20.4–20.7 ns with), so every acquisition still counts.
        if self.last_holder.load(Ordering::Relaxed) != pid {
            self.last_holder.store(pid, Ordering::Relaxed);
            let h = self.handoffs.load(Ordering::Relaxed);
            self.handoffs.store(h.wrapping_add(1), Ordering::Relaxed);
        }
        let a = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions
            .store(a.wrapping_add(1), Ordering::Relaxed);
        if took_over {
            // Relaxed: guarded by the lock. Set after the takeover CAS: a
            // taker that dies before this is itself a dead holder, and the
            // next taker sets it.
            self.dirty.store(1, Ordering::Relaxed);
        }
        step!(fate, true);
        Ok(self.dirty.load(Ordering::Relaxed) != 0)
    }

    /// Give the lock back (called by the holder `me` only). Inline: the
    /// common case is one CAS and no wake-up.
    #[inline]
    pub(crate) fn release(&self, me: u64, fate: &mut impl FnMut() -> bool) -> Result<(), Miss> {
        step!(fate, true);
        // Release (both CASes): publishes the critical section; pairs with
        // the Acquire of the next `claim`. CASes, not a store: a word that
        // no longer names us (scribbled on, then taken over) is not ours to
        // clear.
        match self
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(seen) if seen != me | WAITERS => Ok(()),
            Err(_) => self.release_and_wake(me, fate),
        }
    }

    /// `release` when sleepers registered: clear the word, then wake them.
    #[cold]
    #[inline(never)]
    fn release_and_wake(&self, me: u64, fate: &mut impl FnMut() -> bool) -> Result<(), Miss> {
        // Only sleepers add the bit, and only while we hold: this succeeds
        // unless the word was scribbled on meanwhile. Release: our critical
        // section happens before the next holder's Acquire CAS that takes
        // the word from 0 (`claim`), as on the fast path.
        if self
            .owner
            .compare_exchange(me | WAITERS, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return Ok(());
        }
        step!(fate, false);
        // Release: a sleeper whose key includes this bump sees the owner
        // word freed (pairs with the Acquire load of the key in `acquire`).
        self.wake.word().fetch_add(1, Ordering::Release);
        step!(fate, false);
        // One bit cannot count sleepers: wake them all; the losers register
        // again.
        self.wake.wake(u32::MAX);
        Ok(())
    }

    /// Say the data is consistent again (holder only).
    pub(crate) fn mark_consistent(&self) {
        // Relaxed: guarded by the lock.
        self.dirty.store(0, Ordering::Relaxed);
    }

    /// Whether the data awaits repair (holder only, or a racy read).
    pub(crate) fn dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed) != 0
    }

    /// A racy snapshot for tools (Relaxed: no one relies on it).
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            owner: holder(self.owner.load(Ordering::Relaxed)),
            dirty: self.dirty(),
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            handoffs: self.handoffs.load(Ordering::Relaxed),
        }
    }
}

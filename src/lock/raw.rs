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
use crate::sync::{AtomicU32, AtomicU64, EventCount, Ordering};

/// The lock's words. Every bit pattern of every word is a valid state (see
/// each field): an owner that is not a running process is a dead owner.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LockWords {
    /// The lock: 0 when free, else the raw [`ProcToken`] (pid + start time)
    /// of the holding process. Taken by one CAS, so the lock and the
    /// holder's identity change in one atomic step. Any other value (pid 0,
    /// a pid that does not run, a start time that does not match) reads as
    /// a dead holder and is taken over.
    owner: AtomicU64,
    /// Times the lock was taken (wrapping). Written only by the holder.
    acquisitions: AtomicU64,
    /// Acquisitions by another pid than `last_holder` (wrapping). Written
    /// only by the holder.
    handoffs: AtomicU64,
    /// Sleepers register here (sequence << 1 | waiting bit, any value valid:
    /// a foreign value only makes a sleeper return early and re-check).
    waiters: EventCount,
    /// Nonzero while a dead holder's data awaits `mark_consistent` (any
    /// nonzero value counts). Read and written only by the holder.
    dirty: AtomicU32,
    /// pid of the previous holder, any value. Written only by the holder.
    last_holder: AtomicU32,
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
    /// Take the lock for `me` (the caller's raw [`ProcToken`]). `Ok(dirty)`:
    /// acquired; `dirty` says a holder died and the data still awaits repair.
    pub(crate) fn acquire(
        &self,
        me: u64,
        wait: Wait,
        fate: &mut impl FnMut() -> bool,
    ) -> Result<bool, Miss> {
        step!(fate, false);
        let mut cur = match self.claim(0, me) {
            Ok(()) => return self.enter(me, false, fate),
            Err(seen) => seen,
        };
        // No spinning before sleeping. Measured with `shmkit bench --only
        // counter` (2 processes on 2 cores): 100 polls made the contended
        // lock 3x slower than none, because the spinner wins the lock from
        // the releaser's next acquire and the line then moves on every
        // operation; glibc's default mutex does not spin either. (Under
        // loom a spin would also hide interleavings: a yielding thread runs
        // again only once the others have blocked or yielded.)
        //
        // Check the holder's liveness on entry and after every sleep through
        // which the owner word did not change (a full slice, or a wake-up
        // that found the same holder): a holder that dies is noticed within
        // about one slice, and a hand-off costs no /proc read.
        let mut suspect = true;
        loop {
            if cur == 0 {
                step!(fate, false);
                match self.claim(0, me) {
                    Ok(()) => return self.enter(me, false, fate),
                    Err(seen) => {
                        cur = seen;
                        continue;
                    }
                }
            }
            if suspect {
                suspect = false;
                if !runs(cur) {
                    step!(fate, false);
                    match self.claim(cur, me) {
                        Ok(()) => return self.enter(me, true, fate),
                        Err(seen) => {
                            // Someone else took it over (or it was released):
                            // that one just acquired, so it runs.
                            cur = seen;
                            continue;
                        }
                    }
                }
            }
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
            step!(fate, false);
            // Register, then re-check: `prepare`'s SeqCst fence pairs with
            // the one in `notify` after the releaser's CAS, so either the
            // releaser sees our bit and wakes us, or we see its 0 here.
            let key = self.waiters.prepare();
            step!(fate, false);
            // Relaxed: a hint (the claim CAS acquires); the fence above
            // orders it after our registration.
            let seen = self.owner.load(Ordering::Relaxed);
            if seen != cur {
                cur = seen;
                continue;
            }
            step!(fate, false);
            self.waiters.wait(key, Some(slice));
            step!(fate, false);
            let after = self.owner.load(Ordering::Relaxed);
            suspect = after == cur;
            cur = after;
        }
    }

    /// CAS the owner word from `from` (0, or a holder that does not run) to
    /// `me`.
    fn claim(&self, from: u64, me: u64) -> Result<(), u64> {
        // Acquire: pairs with the Release CAS in `release`, so the critical
        // section sees everything the previous holder wrote in its own. After
        // a takeover the dead holder released nothing: what it wrote is
        // ordered before its death, which we observed through liveness (the
        // kernel's exit; under loom a SeqCst death flag).
        self.owner
            .compare_exchange(from, me, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
    }

    /// Just acquired: count, mark a takeover dirty, read the dirty flag.
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
        // may hold anything.
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

    /// Give the lock back (called by the holder `me` only).
    pub(crate) fn release(&self, me: u64, fate: &mut impl FnMut() -> bool) -> Result<(), Miss> {
        step!(fate, true);
        // Release: publishes the critical section; pairs with the Acquire of
        // the next `claim`. A CAS, not a store: if the word no longer names
        // us (scribbled on, and someone took it over), it is not ours to
        // clear.
        let _ = self
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
        step!(fate, false);
        // Wakes sleepers only if one registered; its SeqCst fence pairs with
        // the one in `prepare` (see `acquire`).
        self.waiters.notify();
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
            owner: self.owner.load(Ordering::Relaxed),
            dirty: self.dirty(),
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            handoffs: self.handoffs.load(Ordering::Relaxed),
        }
    }
}

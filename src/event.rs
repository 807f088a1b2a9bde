//! An event count: sleepers and wakers meet on a shared futex word without a
//! lost wake-up, and a waker makes a system call only when someone sleeps.
//!
//! An algorithm on top of the [`crate::sync`] facade (its atomics, fences and
//! [`Futex`]), not part of it: it runs unchanged under loom, and its
//! orderings are mutation sites like any other algorithm's.

use std::time::Duration;

use crate::sync::{Futex, Ordering, asymmetric_ok, fence_heavy, fence_light};

/// How long a sleeper sleeps at a time when its fence could not pair with
/// the wakers' (no membarrier): the bound on a missed wake-up's cost.
pub const UNPAIRED_SLEEP: Duration = Duration::from_millis(1);

/// An event count on a futex word: sleepers and a waker meet without a lost
/// wakeup, and the waker makes a system call only when someone sleeps.
///
/// The word holds `sequence << 1 | waiting`. A sleeper sets `waiting` with a
/// CAS ([`prepare`](Self::prepare)), re-checks its condition, then sleeps
/// while the word still equals the key it got. A waker, after changing the
/// condition, clears the bit and bumps the sequence with one CAS
/// ([`notify`](Self::notify)) and only then calls `FUTEX_WAKE`. Because
/// setting and clearing are read-modify-writes on the same word, a
/// registration can never be overwritten, and of many wakers only the one
/// whose CAS clears the bit makes the syscall.
///
/// Both sides fence between their store and their load of the other's
/// location (the sleeper: bit, then condition; the waker: condition, then
/// bit), so "the waker saw no sleeper" and "the sleeper missed the change"
/// cannot both happen. The fences are the two halves of an asymmetric
/// fence ([`fence_heavy`] for the sleeper, a `membarrier` system call on a
/// path that is about to sleep anyway; [`fence_light`] for the waker, a
/// compiler fence): together they order as two `fence(SeqCst)` would, and
/// the waker's fast path (every push, every pop) has no fence instruction.
/// Where membarrier is unavailable the sleeper's fence is a plain one that
/// a waker's compiler fence does not pair with; the sleeper then sleeps at
/// most [`UNPAIRED_SLEEP`] at a time, so a missed wake-up costs that much,
/// never a hang.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct EventCount {
    futex: Futex,
}

impl EventCount {
    /// An event count with no sleeper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register as a sleeper; returns the key to pass to [`wait`](Self::wait).
    /// Re-check the condition after this and before waiting.
    pub fn prepare(&self) -> u32 {
        let word = self.futex.word();
        let mut cur = word.load(Ordering::Relaxed);
        let key = loop {
            if cur & 1 == 1 {
                break cur;
            }
            // AcqRel: Acquire pairs with a waker's Release bump (a key that
            // includes its bump comes with its condition change).
            match word.compare_exchange_weak(cur, cur | 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break cur | 1,
                Err(seen) => cur = seen,
            }
        };
        // Pairs with the fence in `notify`: our bit is seen by the waker, or
        // the caller's re-check sees the waker's change. The heavy half of
        // an asymmetric pair (a membarrier system call), so that wakers, who
        // run on every push and pop, pay only a compiler fence.
        fence_heavy(Ordering::SeqCst);
        key
    }

    /// The futex word, for a thread that waits on many at once
    /// ([`Futex::wait_any`]) with a key from [`prepare`](Self::prepare).
    pub fn futex(&self) -> &Futex {
        &self.futex
    }

    /// Sleep while the word equals `key` (see [`Futex::wait`]); at most
    /// [`UNPAIRED_SLEEP`] where the asymmetric fences cannot pair.
    pub fn wait(&self, key: u32, timeout: Option<Duration>) {
        let timeout = if asymmetric_ok() {
            timeout
        } else {
            Some(timeout.map_or(UNPAIRED_SLEEP, |t| t.min(UNPAIRED_SLEEP)))
        };
        self.futex.wait(key, timeout)
    }

    /// After changing the condition: wake every sleeper, if any is
    /// registered (one bit cannot say how many sleep, so all are woken once
    /// per sleeping episode). Returns whether it made the wake system call.
    /// Inlined: every push and pop ends here, and with nobody asleep it is
    /// a load and a branch; the wake is out of line.
    #[inline(always)]
    pub fn notify(&self) -> bool {
        // Pairs with the fence in `prepare`: the light half, a compiler
        // fence once this process is registered for membarrier (see
        // `sync::fence_light`), so the fast path has no fence instruction.
        fence_light(Ordering::SeqCst);
        // Relaxed: ordered by the fence above (see `wake_sleepers`).
        let cur = self.futex.word().load(Ordering::Relaxed);
        if cur & 1 == 0 {
            return false;
        }
        self.wake_sleepers(cur)
    }

    /// `notify`'s slow path: a sleeper is registered (bit 0 of `cur`, the
    /// word as `notify` loaded it after its fence).
    #[cold]
    #[inline(never)]
    fn wake_sleepers(&self, mut cur: u32) -> bool {
        let word = self.futex.word();
        while cur & 1 == 1 {
            // Release: a sleeper whose CAS or load sees the new sequence sees
            // the caller's condition change.
            match word.compare_exchange_weak(
                cur,
                cur.wrapping_add(2) & !1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.futex.wake(u32::MAX);
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{fence_heavy, fence_light};

    /// The machines this crate runs on (Linux 4.16 and later, no seccomp
    /// filter against membarrier) take the fast path: wakers pay a compiler
    /// fence, sleepers a membarrier. If this fails, the crate still works
    /// (sleepers then sleep at most UNPAIRED_SLEEP at a time), but slower.
    #[test]
    fn the_asymmetric_fences_pair_here() {
        fence_light(Ordering::SeqCst);
        assert!(
            fence_heavy(Ordering::SeqCst),
            "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) failed: {}",
            std::io::Error::last_os_error()
        );
        assert!(asymmetric_ok());
    }

    #[test]
    fn a_notify_with_a_sleeper_bumps_the_word_and_one_without_does_not() {
        let ev = EventCount::new();
        assert!(!ev.notify(), "no sleeper: no system call");
        let key = ev.prepare();
        assert_eq!(key & 1, 1);
        assert!(ev.notify(), "a registered sleeper is woken");
        assert_ne!(ev.futex().word().load(Ordering::Relaxed), key);
        // The sleeper's key is stale: its wait returns at once.
        ev.wait(key, None);
    }
}

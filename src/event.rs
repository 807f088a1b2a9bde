//! An event count: sleepers and wakers meet on a shared futex word without a
//! lost wake-up, and a waker makes a system call only when someone sleeps.
//!
//! An algorithm on top of the [`crate::sync`] facade (its atomics, fences and
//! [`Futex`]), not part of it: it runs unchanged under loom, and its
//! orderings are mutation sites like any other algorithm's.

use std::time::Duration;

use crate::sync::{Futex, Ordering, fence};

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
/// Both sides issue `fence(SeqCst)` between their store and their load of the
/// other's location (the sleeper: bit, then condition; the waker: condition,
/// then bit), so "the waker saw no sleeper" and "the sleeper missed the
/// change" cannot both happen.
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
        // the caller's re-check sees the waker's change.
        fence(Ordering::SeqCst);
        key
    }

    /// The futex word, for a thread that waits on many at once
    /// ([`Futex::wait_any`]) with a key from [`prepare`](Self::prepare).
    pub fn futex(&self) -> &Futex {
        &self.futex
    }

    /// Sleep while the word equals `key` (see [`Futex::wait`]).
    pub fn wait(&self, key: u32, timeout: Option<Duration>) {
        self.futex.wait(key, timeout)
    }

    /// After changing the condition: wake every sleeper, if any is
    /// registered (one bit cannot say how many sleep, so all are woken once
    /// per sleeping episode). Returns whether it made the wake system call.
    pub fn notify(&self) -> bool {
        // Pairs with the fence in `prepare`.
        fence(Ordering::SeqCst);
        let word = self.futex.word();
        let mut cur = word.load(Ordering::Relaxed);
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

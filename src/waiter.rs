//! The process's one waiter thread for async calls (`pop_async`,
//! `push_async`, ...): a future that finds nothing to do parks its waker
//! here, with the futex word it would have slept on and the key it got from
//! the event count's `prepare`; this thread sleeps on all parked words at
//! once with `futex_waitv` and wakes the wakers whose word moved.
//!
//! So any number of pending futures cost one thread per process, not a
//! thread each, and a waker never waits for a poll interval: a producer's
//! `notify` wakes this thread through the kernel, as it would wake a
//! blocked `pop`. Every [`SLICE`] the thread wakes every parked future, so a
//! future re-checks its peers' liveness (a dead producer gives
//! `Disconnected`) as a blocking call does.
//!
//! No lost wake-up: a future parks with the key it read *before* its last
//! attempt, and this thread sleeps only while each word still equals its key
//! (the kernel compares them under the futex bucket lock), so a notify
//! between the attempt and the sleep makes the sleep return at once. A
//! registration made while the thread sleeps on an older list bumps
//! `news`, one of the words it sleeps on.
//!
//! A future dropped while parked (cancelled) takes its entry back at once
//! ([`Parking`]'s drop), so its keepalive of the ring's or queue's memory
//! ends with it: the segment is unmapped, and its name removed, when the
//! last handle goes, as without async calls.

use std::any::Any;
// Process-local state of this process's waiter, never in shared memory:
// std's atomics, as in `sync`'s own process-local statics.
#[allow(clippy::disallowed_types)]
use std::sync::atomic::{AtomicBool, AtomicPtr};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::event::UNPAIRED_SLEEP;
use crate::sync::{Futex, Ordering, WAIT_ANY_MAX, asymmetric_ok};

/// How often every parked future is woken to re-check its peers' liveness
/// (the blocking calls' slice, `ring::wait::LIVENESS_SLICE`).
pub(crate) const SLICE: Duration = Duration::from_millis(200);

/// One parked future.
struct Parked {
    /// Which [`Parking`] parked it (to take it back when dropped).
    id: u64,
    futex: *const Futex,
    key: u32,
    waker: Waker,
    /// Keeps the mapping that holds `futex` alive while this entry exists.
    _keep: Arc<dyn Any + Send + Sync>,
}

// SAFETY: `futex` points into memory that `_keep` keeps mapped, and it is
// only read (atomically) while the entry exists, or while the round that
// took it in lasts (`Parking::unpark` keeps `_keep` until then); a `Waker`
// is Send.
unsafe impl Send for Parked {}

struct Waiter {
    parked: Mutex<List>,
    /// Signalled when a round ends (`List::in_round` cleared).
    round_done: Condvar,
    /// Bumped and woken by every registration, so a thread asleep on an
    /// older list wakes to take the new entry in.
    news: Futex,
}

#[derive(Default)]
struct List {
    entries: Vec<Parked>,
    next_id: u64,
    /// Set while the waiter thread sleeps on words it took from `entries`
    /// (it reads them through the entries' pointers until it clears this).
    in_round: bool,
    /// Rounds ended, so a thread waiting for one to end is not held up by
    /// the next.
    rounds: u64,
}

/// A future's hold on its parked entry: dropping the future (cancelling
/// it) takes the entry back at once, so the entry's keepalive (the ring's
/// or queue's mapping, and through it the segment's name) does not outlive
/// every handle until the next [`SLICE`], or for good if the process exits
/// first.
#[derive(Default)]
pub(crate) struct Parking {
    /// The waiter and id of the entry this future parked last, if any.
    last: Option<(&'static Waiter, u64)>,
}

impl Parking {
    /// Park `waker` until `futex` no longer holds `key` (or is woken), or
    /// at most [`SLICE`]. `keep` must own the memory `futex` lives in.
    /// Replaces this future's earlier entry, if it is still parked.
    pub(crate) fn park(
        &mut self,
        futex: &Futex,
        key: u32,
        keep: Arc<dyn Any + Send + Sync>,
        waker: &Waker,
    ) {
        if self.repark(futex, key, waker) {
            return;
        }
        self.unpark();
        let Some(w) = waiter() else {
            waker.wake_by_ref();
            return;
        };
        // A poisoned lock only means a waker panicked while being woken;
        // the list itself is still a valid list.
        let mut list = w.parked.lock().unwrap_or_else(|e| e.into_inner());
        let id = list.next_id;
        list.next_id = id.wrapping_add(1);
        list.entries.push(Parked {
            id,
            futex,
            key,
            waker: waker.clone(),
            _keep: keep,
        });
        drop(list);
        self.last = Some((w, id));
        // Release: pairs with the Acquire load at the top of `run`'s loop; a
        // thread that loads the bumped value takes the list after our push.
        w.news.word().fetch_add(1, Ordering::Release);
        w.news.wake(1);
    }

    /// A future polled again while its entry is still parked (an executor
    /// may poll for its own reasons) parks on the same word: update the
    /// entry in place, without the wait `unpark` may need. Whether it did.
    fn repark(&mut self, futex: &Futex, key: u32, waker: &Waker) -> bool {
        let Some((w, id)) = self.last else {
            return false;
        };
        // Acquire: as in `waiter` (a forked parent's waiter is left alone).
        if !std::ptr::eq(WAITER.load(Ordering::Acquire), w) {
            return false;
        }
        let mut list = w.parked.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = list
            .entries
            .iter_mut()
            .find(|p| p.id == id && std::ptr::eq(p.futex, futex))
        else {
            return false;
        };
        // The entry's own keepalive still owns the word's memory.
        p.key = key;
        let old = std::mem::replace(&mut p.waker, waker.clone());
        drop(list);
        // Dropped outside the lock: the last reference to another task's
        // waker may drop that task's future, whose `Parking` takes the lock.
        drop(old);
        // Release: as in `park`; the thread re-reads the keys.
        w.news.word().fetch_add(1, Ordering::Release);
        w.news.wake(1);
        true
    }

    /// Take this future's entry back if the waiter has not woken it yet,
    /// and drop its keepalive here. If the waiter thread is asleep on its
    /// word, wake it and wait for that round to end first: until then the
    /// thread may read the word, so the mapping must stay (a wait of one
    /// wake-up; never on the waiter thread itself, which is in no round
    /// while it runs wakers).
    fn unpark(&mut self) {
        let Some((w, id)) = self.last.take() else {
            return;
        };
        // Acquire: as in `waiter`. Another waiter than the process's is a
        // forked parent's, whose thread does not exist here and whose lock
        // may be held for good: leave its entry alone.
        if !std::ptr::eq(WAITER.load(Ordering::Acquire), w) {
            return;
        }
        let mut list = w.parked.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = list.entries.iter().position(|p| p.id == id) else {
            return; // already woken (and its keepalive dropped)
        };
        let entry = list.entries.swap_remove(at);
        if list.in_round {
            // Release: as in `park`; the thread wakes and ends its round.
            w.news.word().fetch_add(1, Ordering::Release);
            w.news.wake(1);
            let round = list.rounds;
            while list.in_round && list.rounds == round {
                list = w.round_done.wait(list).unwrap_or_else(|e| e.into_inner());
            }
        }
        drop(list);
        drop(entry);
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        self.unpark();
    }
}

/// The waiter of this process, started on first use; `None` if its thread
/// could not start, or another thread is starting it right now (then the
/// future polls again at once instead of parking: a busy wait, not a hang,
/// and a later park tries to start the thread again).
///
/// Not a `OnceLock`: a forked child inherits the parent's pointer but not
/// its thread (and perhaps a `parked` lock some other thread held at the
/// fork), so a future parked there would never be woken. The `atfork`
/// handler forgets the parent's waiter in the child (leaking it), and the
/// child's first park starts its own.
fn waiter() -> Option<&'static Waiter> {
    // Acquire: pairs with the Release store in `start`, so the Waiter's
    // fields are initialised for us.
    let w = WAITER.load(Ordering::Acquire);
    if w.is_null() {
        return start();
    }
    // SAFETY: a non-null WAITER was leaked by `start` and is never freed.
    Some(unsafe { &*w })
}

/// The process's waiter (null: none yet, or a forked child's).
#[allow(clippy::disallowed_types)]
static WAITER: AtomicPtr<Waiter> = AtomicPtr::new(std::ptr::null_mut());
/// Set while one thread starts the waiter thread.
#[allow(clippy::disallowed_types)]
static STARTING: AtomicBool = AtomicBool::new(false);

/// In a forked child: the parent's waiter thread does not exist here.
extern "C" fn forget_in_child() {
    // Async-signal-safe: two atomic stores. Relaxed: the child has one
    // thread, this one.
    WAITER.store(std::ptr::null_mut(), Ordering::Relaxed);
    STARTING.store(false, Ordering::Relaxed);
}

#[cold]
fn start() -> Option<&'static Waiter> {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: `forget_in_child` only stores to two atomics and lives
        // for the whole program.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    });
    // Acquire: pairs with the Release store below (one starter at a time).
    if STARTING.swap(true, Ordering::Acquire) {
        return None;
    }
    // Acquire: as in `waiter` (another thread may have finished starting).
    let mut w = WAITER.load(Ordering::Acquire);
    if w.is_null() {
        let fresh = Box::into_raw(Box::new(Waiter {
            parked: Mutex::new(List::default()),
            round_done: Condvar::new(),
            news: Futex::new(0),
        }));
        let addr = fresh as usize;
        let spawned = std::thread::Builder::new()
            .name("shmkit-waiter".into())
            // SAFETY: `fresh` is leaked once the thread runs: never freed.
            .spawn(move || run(unsafe { &*(addr as *const Waiter) }));
        if spawned.is_ok() {
            // Release: pairs with the Acquire loads above and in `waiter`.
            WAITER.store(fresh, Ordering::Release);
            w = fresh;
        } else {
            // SAFETY: the thread was not created, so its closure never ran
            // and nothing else saw `fresh`: we still own the box.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
    // Release: pairs with the Acquire swap above.
    STARTING.store(false, Ordering::Release);
    // SAFETY: as in `waiter`.
    (!w.is_null()).then(|| unsafe { &*w })
}

fn run(w: &'static Waiter) {
    let mut since = Instant::now();
    let mut wake = Vec::new();
    loop {
        // Acquire: pairs with the Release bump in `park` (see there).
        let news = w.news.word().load(Ordering::Acquire);
        let mut words: Vec<(*const Futex, u32)> = {
            let mut list = w.parked.lock().unwrap_or_else(|e| e.into_inner());
            // Until cleared below, `Parking::unpark` keeps a taken-back
            // entry's mapping alive.
            list.in_round = true;
            list.entries.iter().map(|p| (p.futex, p.key)).collect()
        };
        words.sort_unstable();
        words.dedup();
        // Past the kernel's limit (`news` takes one place) the rest are
        // polled: a short sleep, then the check below wakes each entry whose
        // word moved. Not every entry: each woken future re-registers, a
        // membarrier system call that interrupts every CPU, so waking all
        // of them every millisecond would flood the machine.
        let overflow = words.len() > WAIT_ANY_MAX - 1;
        let mut waits: Vec<(&Futex, u32)> = Vec::with_capacity(words.len().min(WAIT_ANY_MAX));
        waits.push((&w.news, news));
        for &(f, key) in words.iter().take(WAIT_ANY_MAX - 1) {
            // SAFETY: every pointer comes from an entry in `parked` when we
            // set `in_round`; this thread removes entries only below, after
            // `waits` is gone, and a future that takes its entry back
            // (`Parking::unpark`) keeps its `_keep`, and so the mapping,
            // until we clear `in_round` below.
            waits.push((unsafe { &*f }, key));
        }
        // Where a sleeper's fence cannot pair with the wakers' (no
        // membarrier, see `event.rs`), a notify may be missed: poll often.
        let slice = if asymmetric_ok() {
            SLICE
        } else {
            UNPAIRED_SLEEP
        };
        let left = slice.saturating_sub(since.elapsed());
        let supported = Futex::wait_any(
            &waits,
            Some(if overflow {
                Duration::from_millis(1)
            } else {
                left
            }),
        );
        drop(waits);
        if !supported {
            // No futex_waitv (a kernel before 5.16, a seccomp filter): poll
            // every millisecond.
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every entry whose word moved is woken below, in the kernel's
        // list or not: polled entries need no more than that.
        let all = since.elapsed() >= slice;
        if all {
            since = Instant::now();
        }
        {
            let mut list = w.parked.lock().unwrap_or_else(|e| e.into_inner());
            list.in_round = false;
            list.rounds = list.rounds.wrapping_add(1);
            w.round_done.notify_all();
            list.entries.retain_mut(|p| {
                // SAFETY: as above: the entry, and so its mapping, exists.
                // Relaxed: only a hint that the word moved; the woken future
                // re-reads everything it needs with its own orderings.
                let moved = unsafe { &*p.futex }.word().load(Ordering::Relaxed) != p.key;
                if all || moved {
                    wake.push(p.waker.clone());
                    false
                } else {
                    true
                }
            });
        }
        // Woken outside the lock: a waker may run code that parks again.
        for waker in wake.drain(..) {
            // A waker that panics must not end this thread: every parked
            // call of the process would then wait forever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
    }
}

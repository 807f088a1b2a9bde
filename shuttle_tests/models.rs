//! shuttle models: the production ring, queue and lock through the same `sync`
//! facade as the loom models (`--cfg shmkit_shuttle` swaps in shuttle's
//! atomics, threads, mutex and condvar, and the same liveness oracle), run
//! over many thousands of random schedules.
//!
//! What this adds to loom: configurations loom cannot explore exhaustively
//! (1 producer and 3 consumers on a ring of 4 pushing 12 items with single
//! and batch pops, `task_done` and `join`; 3 processes taking a lock 3 times
//! each; a consumer killed at a random step among three; 3 producers into
//! a queue's sole consumer, with a plain consumer trying to attach
//! meanwhile; 3 producers and 3 consumers of a queue whose lanes wrap, and
//! the same with a producer killed at a random step). What it does not:
//! shuttle's atomics are sequentially consistent, so a weakened memory
//! ordering is loom's to find (`loom_tests/`, `scripts/mutate.py`), not
//! shuttle's; shuttle finds interleavings.
//!
//! Reproducible: each model runs `SHMKIT_SHUTTLE_ITERS` schedules (default
//! in [`iterations`]) drawn from the seed `SHMKIT_SHUTTLE_SEED` (default
//! fixed), printed on failure with shuttle's own replay string.
//!
//! ```text
//! RUSTFLAGS="--cfg shmkit_shuttle" cargo test -p shmkit --release \
//!     --target-dir target/shuttle --test shuttle_models
//! ```
#![cfg(shmkit_shuttle)]

use std::sync::Arc as StdArc;
use std::sync::Mutex as StdMutex;

use shmkit::lock::LockArea;
use shmkit::ring::{PopError, Ring};
use shmkit::sync::liveness::model::{become_process, run_killed_after, timeouts_expire};
use shmkit::{Atomic, Ordering};
use shuttle::scheduler::RandomScheduler;
use shuttle::sync::Arc;
use shuttle::{Config, Runner, thread};

// The queue's models (3 producers into a sole consumer; 3 x 3, also with
// a producer killed), with the helpers above.
#[path = "queue.rs"]
mod queue;

/// Schedules per model: `SHMKIT_SHUTTLE_ITERS`, else `default`.
fn iterations(default: usize) -> usize {
    std::env::var("SHMKIT_SHUTTLE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seed of the random schedules: `SHMKIT_SHUTTLE_SEED`, else fixed, so
/// that CI runs the same schedules every time.
fn seed() -> u64 {
    std::env::var("SHMKIT_SHUTTLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// Run `f` over `iters` random schedules from [`seed`].
fn check(name: &str, iters: usize, f: impl Fn() + Send + Sync + 'static) {
    let iters = iterations(iters);
    let seed = seed();
    eprintln!("{name}: {iters} random schedules, seed {seed}");
    let mut config = Config::new();
    // shuttle drops lazy statics (the liveness oracle's) after each
    // execution, which is what the oracle wants: no warning about it.
    config.silence_warnings = true;
    let scheduler = RandomScheduler::new_from_seed(seed, iters);
    Runner::new(scheduler, config).run(f);
}

/// The k of the next kill: executions take 0, 1, .., `n - 1` in turn, so
/// every step is a kill point under many random schedules. (A counter
/// outside the model, as the loom models' `for_every_kill_step` is.)
fn next_k(n: usize) -> usize {
    #[allow(clippy::disallowed_types)] // the test's bookkeeping, not model state
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n
}

/// Take from `pop` until Disconnected, returning what it got in order.
fn drain<T>(mut pop: impl FnMut() -> Result<Vec<T>, PopError>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match pop() {
            Ok(v) => got.extend(v),
            Err(PopError::Disconnected) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// 1 producer, 3 consumers, capacity 4, 12 items (the ring wraps three
/// times and the producer blocks on full). Consumer 0 pops one at a time,
/// consumers 1 and 2 pop batches of up to 3; each marks every item done.
/// Every item arrives exactly once, each consumer's items increase, the
/// sum is exact, and `join` (called before close) returns only once every
/// item was marked done, with the consumers' work visible.
///
/// Planted bug that fails it (tried, and the next model too): `claim` in
/// `src/ring/consumer.rs` moving head with a plain store instead of its
/// CAS (two consumers take the same items: "delivered twice").
#[test]
fn ring_one_producer_three_consumers_exactly_once() {
    const ITEMS: u64 = 12;
    check("ring 1x3 cap 4", 5000, || {
        let ring = Ring::<u64>::new_in_process(4).unwrap();
        let mut tx = ring.producer().unwrap();
        let work = Arc::new(Atomic::<u64>::new(0));
        let consumers: Vec<_> = (0..3)
            .map(|c| {
                let rx = ring.consumer().unwrap();
                let work = work.clone();
                thread::spawn(move || {
                    become_process(2 + c as u32);
                    let mut buf = [0u64; 3];
                    drain(|| {
                        let got = if c == 0 {
                            rx.pop().map(|v| vec![v])
                        } else {
                            rx.pop_into(&mut buf).map(|n| buf[..n].to_vec())
                        }?;
                        for v in &got {
                            // Relaxed: only join's ordering may publish it.
                            work.fetch_add(*v, Ordering::Relaxed);
                            rx.task_done().unwrap();
                        }
                        Ok(got)
                    })
                })
            })
            .collect();
        for v in 1..=ITEMS {
            tx.push(v).unwrap();
        }
        tx.join().unwrap();
        assert_eq!(
            work.load(Ordering::Relaxed),
            ITEMS * (ITEMS + 1) / 2,
            "join returned before the work was done"
        );
        drop(tx); // close
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            all.extend(got);
        }
        all.sort();
        assert!(all.iter().copied().eq(1..=ITEMS), "{all:?}");
    });
}

/// A consumer killed at a step k (0..40 of its own shared-memory
/// operations, in turn) among three batch-popping consumers of 8 items pushed by a
/// producer that keeps the ring (capacity 4) full. No item twice, nothing
/// lost beyond the one batch (up to 2) the dead consumer held, and the
/// producer and the survivors finish (timeouts expire: that is how a
/// sleeper notices a death).
#[test]
fn ring_consumer_killed_among_three() {
    const ITEMS: u64 = 8;
    check("ring consumer killed", 5000, || {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(4).unwrap();
        let mut tx = ring.producer().unwrap();
        let k = next_k(40);
        let victim_got = StdArc::new(StdMutex::new(Vec::<u64>::new()));
        let mut consumers = Vec::new();
        for c in 0..3u32 {
            let rx = ring.consumer().unwrap();
            let vg = victim_got.clone();
            consumers.push(thread::spawn(move || {
                become_process(2 + c);
                let mut buf = [0u64; 2];
                let mut pop = || rx.pop_into(&mut buf).map(|n| buf[..n].to_vec());
                if c == 0 {
                    // The victim's output lives outside shared memory, as a
                    // process's own would.
                    let killed = run_killed_after(2, Some(k), || {
                        drain(|| {
                            let got = pop()?;
                            vg.lock().unwrap().extend(&got);
                            Ok(got)
                        })
                    })
                    .is_none();
                    (Vec::new(), killed)
                } else {
                    (drain(pop), false)
                }
            }));
        }
        for v in 1..=ITEMS {
            tx.push(v).unwrap();
        }
        drop(tx);
        let mut all = Vec::new();
        let mut killed = false;
        for c in consumers {
            let (got, k) = c.join().unwrap();
            killed |= k;
            all.extend(got);
        }
        all.extend(victim_got.lock().unwrap().iter().copied());
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(n, all.len(), "an item was delivered twice");
        assert!(all.iter().all(|v| (1..=ITEMS).contains(v)), "torn: {all:?}");
        let lost = ITEMS as usize - all.len();
        assert!(
            lost <= if killed { 2 } else { 0 },
            "lost {lost} (killed: {killed}): {all:?}"
        );
    });
}

/// Three processes take the lock three times each and bump a counter with
/// a load, a yield and a store (a lost update if two ever hold the lock at
/// once); the sum is exact and the statistics agree.
///
/// Planted bug that fails it (tried, and the next model too): `claim` in
/// `src/lock/raw.rs` as a load and a store instead of one CAS (two
/// processes enter: a lost update).
#[test]
fn lock_three_processes_three_times_each() {
    check("lock 3 processes", 5000, || {
        let lock = Arc::new(LockArea::new());
        let count = Arc::new(Atomic::<u64>::new(0));
        let ts: Vec<_> = (1..=3u32)
            .map(|pid| {
                let lock = lock.clone();
                let count = count.clone();
                thread::spawn(move || {
                    become_process(pid);
                    for _ in 0..3 {
                        let g = lock.lock().expect("no process dies here");
                        let v = count.load(Ordering::Relaxed);
                        thread::yield_now();
                        count.store(v + 1, Ordering::Relaxed);
                        drop(g);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), 9);
        let st = lock.state();
        assert_eq!(st.acquisitions, 9);
        assert_eq!(st.holder, None);
        assert!(!st.owner_died);
    });
}

/// How far the lock's victim got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// Died without holding the lock (before taking it, or after giving it
    /// back).
    DiedFree,
    /// Died holding it.
    DiedHolding,
    /// Lived to the end.
    Lived,
}

/// The lock's owner (process 1) takes the lock, bumps and releases it,
/// dying before its k-th lock step (`lock_or_die`, as in
/// `loom_tests/lock.rs`), k drawn in turn from 0..20; processes 2 and 3 take
/// it twice each, repairing on `OwnerDied` (timeouts expire). Both always
/// get it; `OwnerDied` reaches exactly one of them exactly when the victim
/// died holding the lock; the counter shows every completed critical
/// section.
#[test]
fn lock_owner_killed_at_every_step() {
    check("lock owner killed", 5000, || {
        timeouts_expire(true);
        let k = next_k(20);
        let lock = Arc::new(LockArea::new());
        let count = Arc::new(Atomic::<u64>::new(0));
        let bump = |count: &Atomic<u64>| {
            let v = count.load(Ordering::Relaxed);
            thread::yield_now();
            count.store(v + 1, Ordering::Relaxed);
        };
        let (l, c) = (lock.clone(), count.clone());
        let victim = thread::spawn(move || {
            become_process(1);
            let mut steps = 0;
            let mut fate = move || {
                steps += 1;
                if steps > k {
                    shmkit::sync::liveness::model::die();
                    false
                } else {
                    true
                }
            };
            let guard = match l.lock_or_die(&mut fate) {
                Err(d) if d.holding => return Victim::DiedHolding,
                Err(_) => return Victim::DiedFree,
                Ok(Ok(guard)) => guard,
                Ok(Err(e)) => panic!("victim: {e:?}"),
            };
            if !fate() {
                std::mem::forget(guard);
                return Victim::DiedHolding;
            }
            bump(&c);
            match guard.unlock_or_die(&mut fate) {
                Err(d) if d.holding => Victim::DiedHolding,
                Err(_) => Victim::DiedFree,
                Ok(()) => Victim::Lived,
            }
        });
        let others: Vec<_> = (2..=3u32)
            .map(|pid| {
                let (l, c) = (lock.clone(), count.clone());
                thread::spawn(move || {
                    become_process(pid);
                    let mut saw_death = 0;
                    for _ in 0..2 {
                        let g = match l.lock() {
                            Ok(g) => g,
                            Err(shmkit::lock::LockError::OwnerDied(mut g)) => {
                                saw_death += 1;
                                g.mark_consistent();
                                g
                            }
                            Err(e) => panic!("survivor {pid}: {e:?}"),
                        };
                        bump(&c);
                        drop(g);
                    }
                    saw_death
                })
            })
            .collect();
        let v = victim.join().unwrap();
        let saw_death: u32 = others.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(
            saw_death,
            u32::from(v == Victim::DiedHolding),
            "k = {k}: victim {v:?}"
        );
        let n = count.load(Ordering::Relaxed);
        match v {
            Victim::Lived => assert_eq!(n, 5, "k = {k}"),
            _ => assert!((4..=5).contains(&n), "k = {k}: {n}"),
        }
        let st = lock.state();
        assert_eq!(st.holder, None);
        assert!(!st.owner_died, "repaired, yet dirty");
    });
}

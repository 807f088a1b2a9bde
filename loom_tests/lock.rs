//! loom models of the lock (`src/lock.rs`, `src/lock/raw.rs`), run on the
//! production code with the lock's words on the heap and processes modelled
//! as threads (each calls `become_process`). Timed waits do not expire
//! unless a model says so, so a lost wakeup shows up as a loom deadlock.
#![cfg(shmkit_loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::lock::{LockArea, LockError, LockGuard};
use shmkit::sync::UnsafeCell;
use shmkit::sync::liveness::model;

/// The data a lock guards: a plain cell, so loom reports any access that
/// the lock did not order.
struct Guarded {
    lock: LockArea,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is only touched while holding `lock` (which is what the
// models check).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Guarded {
            lock: LockArea::new(),
            count: UnsafeCell::new(0),
        })
    }

    /// A read-modify-write of the counter in two separate accesses.
    fn bump(&self) {
        let v = self.count.with(|p| {
            // SAFETY: the caller holds the lock.
            unsafe { *p }
        });
        self.count.with_mut(|p| {
            // SAFETY: as above.
            unsafe { *p = v + 1 }
        });
    }

    fn read(&self) -> u64 {
        // SAFETY: called after every other thread was joined, or under the lock.
        self.count.with(|p| unsafe { *p })
    }
}

fn plain<'a>(r: Result<LockGuard<'a>, LockError<LockGuard<'a>>>) -> LockGuard<'a> {
    match r {
        Ok(g) => g,
        Err(e) => panic!("expected a plain guard, got {e:?}"),
    }
}

/// Mutual exclusion: three processes each bump the counter once under the
/// lock; the sum is exact and loom sees no unordered access to the cell.
/// The statistics, written by holders only, agree.
#[test]
fn three_processes_exclude_each_other() {
    loom::model(|| {
        let g = Guarded::new();
        let others: Vec<_> = (2..=3)
            .map(|pid| {
                let g = g.clone();
                thread::spawn(move || {
                    model::become_process(pid);
                    let guard = plain(g.lock.lock());
                    g.bump();
                    drop(guard);
                })
            })
            .collect();
        let guard = plain(g.lock.lock());
        g.bump();
        drop(guard);
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(g.read(), 3);
        let st = g.lock.state();
        assert_eq!(st.acquisitions, 3);
        assert_eq!(st.holder, None);
        assert!(!st.owner_died);
    });
}

/// try_lock never sleeps and never enters while another process holds the
/// lock: two processes try once each; whoever gets it bumps.
#[test]
fn try_lock_excludes_without_sleeping() {
    loom::model(|| {
        let g = Guarded::new();
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                model::become_process(2);
                match g.lock.try_lock() {
                    Ok(guard) => {
                        g.bump();
                        drop(guard);
                        1
                    }
                    Err(LockError::WouldBlock) => 0,
                    Err(e) => panic!("{e:?}"),
                }
            })
        };
        let mine = match g.lock.try_lock() {
            Ok(guard) => {
                g.bump();
                drop(guard);
                1
            }
            Err(LockError::WouldBlock) => 0,
            Err(e) => panic!("{e:?}"),
        };
        let theirs = t.join().unwrap();
        assert!(mine + theirs >= 1, "a free lock was refused to both");
        assert_eq!(g.read(), mine + theirs);
    });
}

/// No lost wakeup: process 1 holds the lock while process 2 asks for it;
/// timeouts never expire, so only the release's wake-up can end process
/// 2's sleep (a lost one is a loom deadlock).
#[test]
fn release_wakes_a_sleeper() {
    loom::model(|| {
        let g = Guarded::new();
        let guard = plain(g.lock.lock());
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                model::become_process(2);
                let guard = plain(g.lock.lock());
                g.bump();
                drop(guard);
            })
        };
        g.bump();
        drop(guard);
        t.join().unwrap();
        assert_eq!(g.read(), 2);
    });
}

/// How far the victim got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// Died without holding the lock (before taking it, or after giving it
    /// back).
    DiedFree,
    /// Died holding it.
    DiedHolding,
    /// Lived to the end (`k` was past its last step).
    Lived,
}

/// Process 2 takes the lock, bumps, unlocks, dying just before its `k`-th
/// step that touches the lock or the data (the acquire CAS, the bookkeeping
/// after it, the critical section, the release CAS, the wake-up after it,
/// and while sleeping if it must wait).
fn victim(g: &Guarded, k: usize) -> Victim {
    model::become_process(2);
    let mut steps = 0;
    let mut fate = move || {
        steps += 1;
        if steps > k {
            model::die();
            false
        } else {
            true
        }
    };
    let guard = match g.lock.lock_or_die(&mut fate) {
        Err(d) if d.holding => return Victim::DiedHolding,
        Err(_) => return Victim::DiedFree,
        Ok(Ok(guard)) => guard,
        // The survivor never dies, so nobody died before us.
        Ok(Err(e)) => panic!("victim: {e:?}"),
    };
    if !fate() {
        std::mem::forget(guard);
        return Victim::DiedHolding;
    }
    g.bump();
    match guard.unlock_or_die(&mut fate) {
        Err(d) if d.holding => Victim::DiedHolding,
        Err(_) => Victim::DiedFree,
        Ok(()) => Victim::Lived,
    }
}

/// Owner death at every step: for each `k`, the victim dies before its
/// `k`-th step while process 3 takes the lock once, with timeouts expiring
/// (the only way a sleeper notices a death). Process 3 always gets the lock
/// (never a deadlock), and gets `OwnerDied` only if the victim died holding
/// it; afterwards process 1's try_lock says `OwnerDied` exactly when the
/// victim died holding the lock and nobody marked it consistent, and the
/// counter shows every completed critical section (a victim that died in
/// its critical section before bumping left it as it was).
#[test]
fn owner_death_at_every_step() {
    // Past the victim's path when it must sleep once (claim, register,
    // read the key, re-check, sleep, look, claim, two bookkeeping steps,
    // the critical section, release, bump, wake) and into a second sleep.
    for k in 0..20 {
        loom::model(move || {
            model::timeouts_expire(true);
            let g = Guarded::new();
            let v = {
                let g = g.clone();
                thread::spawn(move || victim(&g, k))
            };
            let s = {
                let g = g.clone();
                thread::spawn(move || {
                    model::become_process(3);
                    let (guard, died) = match g.lock.lock() {
                        Ok(guard) => (guard, false),
                        Err(LockError::OwnerDied(guard)) => (guard, true),
                        Err(e) => panic!("survivor: {e:?}"),
                    };
                    g.bump();
                    drop(guard);
                    died
                })
            };
            let v = v.join().unwrap();
            let survivor_saw_death = s.join().unwrap();
            if survivor_saw_death {
                assert_eq!(v, Victim::DiedHolding, "k = {k}");
            }
            let after = g.lock.try_lock();
            match (&after, v) {
                (Err(LockError::OwnerDied(_)), Victim::DiedHolding) => {}
                (Ok(_), Victim::DiedFree | Victim::Lived) => {}
                (r, v) => panic!("k = {k}: victim {v:?}, then try_lock {r:?}"),
            }
            drop(after);
            let bumps = g.read();
            match v {
                Victim::Lived => assert_eq!(bumps, 2, "k = {k}"),
                _ => assert!((1..=2).contains(&bumps), "k = {k}: {bumps}"),
            }
        });
    }
}

/// A repairer that dies hands the duty on: process 2 dies holding the lock;
/// processes 3 and 4 race for it. 3 never repairs and dies holding it; 4
/// repairs. 4 must always get `OwnerDied` (nobody repaired before it), 3
/// gets `OwnerDied` exactly when it came before 4, and afterwards the lock
/// is dirty again exactly when 3 came after 4 (it died holding a clean lock).
#[test]
fn a_repairer_that_dies_hands_the_duty_on() {
    loom::model(|| {
        model::timeouts_expire(true);
        let g = Guarded::new();
        let first = {
            let g = g.clone();
            thread::spawn(move || {
                model::become_process(2);
                let guard = plain(g.lock.lock());
                model::die();
                std::mem::forget(guard);
            })
        };
        first.join().unwrap();
        let second = {
            let g = g.clone();
            thread::spawn(move || {
                model::become_process(3);
                let (guard, died) = match g.lock.lock() {
                    Err(LockError::OwnerDied(guard)) => (guard, true),
                    Ok(guard) => (guard, false),
                    Err(e) => panic!("second: {e:?}"),
                };
                model::die();
                std::mem::forget(guard);
                died
            })
        };
        let third = {
            let g = g.clone();
            thread::spawn(move || {
                model::become_process(4);
                match g.lock.lock() {
                    Err(LockError::OwnerDied(mut guard)) => guard.mark_consistent(),
                    r => panic!("the repairer got {r:?}"),
                }
            })
        };
        let second_saw_death = second.join().unwrap();
        third.join().unwrap();
        match g.lock.try_lock() {
            Err(LockError::OwnerDied(_)) => assert!(!second_saw_death),
            Ok(_) => assert!(second_saw_death),
            Err(e) => panic!("{e:?}"),
        }
    });
}

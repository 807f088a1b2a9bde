//! The robust process-shared lock across real processes: mutual exclusion,
//! and kill -9 of the holder inside its critical section.
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::lock::{LockError, ShmLock};
use shmkit::{Ordering, SharedArray};

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let arr = SharedArray::<u64>::open(&name).unwrap();
    match role.as_str() {
        // Non-atomic read-modify-write of several cells under the lock.
        "locked_rmw" => {
            let iters: u64 = std::env::var("ITERS").unwrap().parse().unwrap();
            for _ in 0..iters {
                let g = arr.lock().unwrap();
                g.update(|v| {
                    for x in v.iter_mut() {
                        *x += 1;
                    }
                });
            }
        }
        // Take the lock, half-update (cell 0 but not cell 1), say so in
        // cell 2, and wait inside the critical section to be killed.
        "die_holding" => {
            let g = match arr.lock() {
                Ok(g) => g,
                // A repairer that dies before repairing: keep the duty open.
                Err(LockError::OwnerDied(g)) => g,
                Err(e) => panic!("{e}"),
            };
            g[0].fetch_add(1, Ordering::Relaxed);
            g[2].store(1, Ordering::Release);
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, name: &str, iters: u64) -> Reaper {
    let c = child_command(ENTRY, role)
        .env("SHMKIT_NAME", name)
        .env("ITERS", iters.to_string())
        .spawn()
        .unwrap();
    Reaper(Some(c))
}

#[test]
fn mutual_exclusion_across_four_processes() {
    let c = Cleanup::new("lockmx");
    let arr = SharedArray::<u64>::create(c.name(), 3).unwrap();
    let kids: Vec<Reaper> = (0..4)
        .map(|_| spawn("locked_rmw", c.name(), 20_000))
        .collect();
    for k in kids {
        k.wait_ok();
    }
    // Without mutual exclusion, read-then-write would lose updates.
    assert_eq!(arr.to_vec(), [80_000; 3]);
    let st = arr.lock_state();
    assert_eq!(st.acquisitions, 80_000);
    assert!(!st.owner_died);
}

/// Wait until the holder child has half-updated and is parked in its
/// critical section (cell 2 set), then kill it.
fn kill_inside(arr: &SharedArray<u64>, holder: &mut Reaper) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    while arr[2].load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "holder never entered");
        std::thread::sleep(Duration::from_millis(1));
    }
    arr[2].store(0, Ordering::Relaxed);
    holder.0.as_mut().unwrap().kill().unwrap();
    Instant::now()
}

#[test]
fn killed_holder_is_reported_and_repaired_repeatedly() {
    let c = Cleanup::new("lockkill");
    let arr = SharedArray::<u64>::create(c.name(), 3).unwrap();
    for round in 1..=5u64 {
        let mut holder = spawn("die_holding", c.name(), 0);
        let killed = kill_inside(&arr, &mut holder);
        let mut g = match arr.lock() {
            Err(LockError::OwnerDied(g)) => g,
            Ok(_) => panic!("round {round}: the death was not reported"),
            Err(e) => panic!("round {round}: {e}"),
        };
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "learned too late"
        );
        assert!(g.owner_died());
        // Repair: the holder bumped cell 0 but died before cell 1.
        assert_eq!(g[0].load(Ordering::Relaxed), round);
        assert_eq!(g[1].load(Ordering::Relaxed), round - 1);
        g[1].store(round, Ordering::Relaxed);
        g.mark_consistent();
        drop(g);
        // Consistent again: a plain guard.
        assert!(arr.lock().is_ok(), "round {round}");
    }
}

#[test]
fn a_repairer_that_dies_hands_the_duty_on() {
    let c = Cleanup::new("lockrepair");
    let arr = SharedArray::<u64>::create(c.name(), 3).unwrap();
    // First holder dies holding it.
    let mut first = spawn("die_holding", c.name(), 0);
    kill_inside(&arr, &mut first);
    // The second gets "owner died", does not repair, and dies holding it too.
    let mut second = spawn("die_holding", c.name(), 0);
    kill_inside(&arr, &mut second);
    // The lock is still usable, and still says the data needs repair.
    let mut g = match arr.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    };
    assert_eq!(g[0].load(Ordering::Relaxed), 2);
    g.mark_consistent();
    drop(g);
    assert!(arr.try_lock().is_ok());
}

#[test]
fn try_lock_and_timeout() {
    let c = Cleanup::new("locktry");
    let lock = ShmLock::create(c.name()).unwrap();
    let other = ShmLock::open(c.name()).unwrap();
    let g = lock.lock().unwrap();
    let t = std::thread::spawn(move || {
        let busy = matches!(other.try_lock(), Err(LockError::WouldBlock));
        let start = Instant::now();
        let timed_out = matches!(
            other.lock_timeout(Duration::from_millis(50)),
            Err(LockError::Timeout)
        );
        (busy, timed_out, start.elapsed())
    });
    let (busy, timed_out, took) = t.join().unwrap();
    drop(g);
    assert!(busy && timed_out, "busy {busy} timed out {timed_out}");
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert_eq!(lock.state().holder, None);
    let g = lock.lock().unwrap();
    assert_eq!(lock.state().holder, Some(std::process::id()));
    drop(g);
}

//! `SharedCell` across real processes, with writers killed by SIGKILL.
//!
//! - `killed_writers_never_tear_or_block_readers`: two reader processes
//!   load the record without pause while, round after round, a writer
//!   process stores (read-modify-write `update`) and is killed with SIGKILL
//!   after a random number of stores, at whatever point of a store it is.
//!   Every field of the record derives from one counter `n`, and `n` equals
//!   the version it was published as: a reader checks every snapshot
//!   (untorn, `n == version`, versions never go back) and times every load
//!   (none may take a second: a dead writer never blocks a reader). Each
//!   new writer continues from the last complete record, taking the lock
//!   over from a writer killed holding it. `SHMKIT_CELL_KILLS` sets the
//!   rounds (default 200; the suite's run stops at about 20 s).
//! - `a_killed_program_restarts_with_open_or_create`: a program that
//!   `open_or_create`s its status cell and counts to 300 is killed midway,
//!   started again, opens the cell its dead first run made and finishes
//!   the count from where that run got to.
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, Reaper, child_command, child_role, wait_until};
use shmkit::{Ordering, SharedArray, SharedCell};

const ENTRY: &str = "child_entry";

shmkit::record! {
    #[name = "test.Snapshot/1"]
    #[derive(Debug, PartialEq)]
    pub struct Rec {
        pub n: u64,
        pub square: u64,
        pub neg: i64,
        pub half: f64,
        pub tags: [u32; 16],
        pub low: u16,
        pub odd: u16,
        pub tail: u32,
    }
}

/// The record of counter `n`: every field derives from it.
fn rec(n: u64) -> Rec {
    Rec {
        n,
        square: n.wrapping_mul(n),
        neg: -(n as i64),
        half: n as f64 / 2.0,
        tags: std::array::from_fn(|i| (n as u32) ^ (i as u32 * 0x0101_0101)),
        low: n as u16,
        odd: (n & 1) as u16,
        tail: !(n as u32),
    }
}

// Cells of the control array.
const STOP: usize = 0; // parent: "readers, finish"
const LOADS: usize = 1; // loads done by the readers
const TORN: usize = 2; // snapshots whose fields disagree
const WRONG_VERSION: usize = 3; // n != version, or a version going back
const MAX_LOAD_NS: usize = 4; // slowest load
const ERRORS: usize = 5; // loads that returned an error
const CELLS: usize = 6;

fn env(key: &str) -> String {
    std::env::var(key).unwrap()
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    match role.as_str() {
        "reader" => {
            let cell = SharedCell::<Rec>::open(&env("CELL")).unwrap();
            let ctl = SharedArray::<u64>::open(&env("CTL")).unwrap();
            reader(&cell, &ctl);
        }
        "writer" => {
            let cell = SharedCell::<Rec>::open(&env("CELL")).unwrap();
            // Until killed.
            loop {
                cell.update(|r| *r = rec(r.n + 1)).unwrap();
            }
        }
        "program" => {
            // A program that keeps its progress in a status cell: created
            // by the first run, found again by a restarted one.
            let cell = SharedCell::open_or_create(&env("CELL"), rec(0)).unwrap();
            let target: u64 = env("TARGET").parse().unwrap();
            while cell
                .update(|r| {
                    if r.n < target {
                        *r = rec(r.n + 1);
                    }
                    r.n < target
                })
                .unwrap()
            {
                // The program's own work between two steps (so that it is
                // still running when the test kills it).
                std::thread::sleep(Duration::from_millis(1));
            }
            // This run may not be the creator; keep the name either way
            // for the parent to check.
            let mut cell = cell;
            cell.keep();
        }
        other => panic!("unknown role {other}"),
    }
}

fn reader(cell: &SharedCell<Rec>, ctl: &SharedArray<u64>) {
    let mut last = 0;
    while ctl[STOP].load(Ordering::Acquire) == 0 {
        let t = Instant::now();
        let got = cell.load_versioned();
        let ns = t.elapsed().as_nanos() as u64;
        ctl[MAX_LOAD_NS].fetch_max(ns, Ordering::Relaxed);
        ctl[LOADS].fetch_add(1, Ordering::Relaxed);
        match got {
            Ok((v, r)) => {
                if r != rec(r.n) {
                    ctl[TORN].fetch_add(1, Ordering::Relaxed);
                }
                if r.n != v || v < last {
                    ctl[WRONG_VERSION].fetch_add(1, Ordering::Relaxed);
                }
                last = v;
            }
            Err(_) => {
                ctl[ERRORS].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn spawn(role: &str, cell: &str, ctl: &str) -> Reaper {
    let c = child_command(ENTRY, role)
        .env("CELL", cell)
        .env("CTL", ctl)
        .spawn()
        .unwrap();
    Reaper(Some(c))
}

/// xorshift64: the random store counts, replayable from the printed seed.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn killed_writers_never_tear_or_block_readers() {
    let set: Option<u64> = std::env::var("SHMKIT_CELL_KILLS")
        .ok()
        .map(|v| v.parse().expect("SHMKIT_CELL_KILLS: a number"));
    let rounds = set.unwrap_or(200);
    let cap = set.map_or(Duration::from_secs(20), |_| Duration::MAX);
    let mut seed = std::env::var("SHMKIT_CELL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("snapshot_mp: seed {seed} (SHMKIT_CELL_SEED replays the store counts)");
    let (c, k) = (Cleanup::new("cellkill"), Cleanup::new("cellkillctl"));
    let cell = SharedCell::create(c.name(), rec(0)).unwrap();
    let ctl = SharedArray::<u64>::create(k.name(), CELLS).unwrap();
    let readers: Vec<Reaper> = (0..2)
        .map(|_| spawn("reader", c.name(), k.name()))
        .collect();
    let start = Instant::now();
    let mut done = 0;
    for _ in 0..rounds {
        let v0 = cell.version().unwrap();
        let stores = 1 + next(&mut seed) % 64;
        let mut writer = spawn("writer", c.name(), k.name());
        wait_until("the writer stores", Duration::from_secs(10), || {
            cell.version().unwrap() >= v0 + stores
        });
        let mut child = writer.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        done += 1;
        if start.elapsed() > cap {
            break;
        }
    }
    // A last writer after the last kill: the lock is taken over, the count
    // goes on from the last complete record.
    let v = cell.version().unwrap();
    let r = cell.update(|r| {
        *r = rec(r.n + 1);
        *r
    });
    assert_eq!(r.unwrap(), rec(v + 1));
    // The readers run a little longer, then stop.
    let loads = ctl[LOADS].load(Ordering::Relaxed);
    wait_until("the readers load", Duration::from_secs(10), || {
        ctl[LOADS].load(Ordering::Relaxed) > loads + 100
    });
    ctl[STOP].store(1, Ordering::Release);
    for r in readers {
        r.wait_ok();
    }
    let max_load = Duration::from_nanos(ctl[MAX_LOAD_NS].load(Ordering::Relaxed));
    eprintln!(
        "snapshot_mp: {done} writers killed in {:?}; {} stores, {} takeovers of a lock \
         held by a killed writer; {} loads, slowest {max_load:?}",
        start.elapsed(),
        cell.version().unwrap(),
        cell.takeovers(),
        ctl[LOADS].load(Ordering::Relaxed),
    );
    assert!(done >= 20 || set.is_some(), "only {done} rounds in time");
    assert_eq!(ctl[TORN].load(Ordering::Relaxed), 0, "torn snapshots");
    assert_eq!(
        ctl[WRONG_VERSION].load(Ordering::Relaxed),
        0,
        "a record that is not its version's, or a version going back"
    );
    assert_eq!(ctl[ERRORS].load(Ordering::Relaxed), 0, "loads that failed");
    assert!(
        max_load < Duration::from_secs(1),
        "a load took {max_load:?}"
    );
    assert!(
        cell.takeovers() >= 1,
        "no writer was killed holding the lock in {done} rounds"
    );
}

#[test]
fn a_killed_program_restarts_with_open_or_create() {
    let c = Cleanup::new("cellrestart");
    let run = || {
        let child = child_command(ENTRY, "program")
            .env("CELL", c.name())
            .env("TARGET", "300")
            .spawn()
            .unwrap();
        Reaper(Some(child))
    };
    let mut first = run();
    // Wait until the first run made the cell and got partway.
    let mut seen = None;
    wait_until(
        "the first run counts to 50",
        Duration::from_secs(20),
        || {
            seen = SharedCell::<Rec>::open(c.name()).ok();
            seen.as_ref()
                .is_some_and(|cell| cell.load().unwrap().n >= 50)
        },
    );
    // Killed directly (not through the pool, which would remove what it
    // created: the point is that the restart finds it).
    let mut child = first.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let cell = seen.unwrap();
    let at_kill = cell.load().unwrap();
    assert!(at_kill.n >= 50 && at_kill.n < 300, "{at_kill:?}");
    assert_eq!(at_kill, rec(at_kill.n));
    run().wait_ok();
    assert_eq!(cell.load_versioned().unwrap(), (300, rec(300)));
}

//! loom models of `SharedCell` (`src/snapshot.rs`), run on the production
//! code with the cell on the heap and processes modelled as threads.
//!
//! The record is two words that both derive from one counter (`[n, !n]`),
//! and a store of `n` is always the `n`-th: so a snapshot is untorn when
//! its words agree, and is the record of its version when `n` equals it.
//! A hang is a loom deadlock or branch-limit failure.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use common::for_every_kill_step;
use loom::sync::Arc;
use loom::thread;
use shmkit::SharedCell;
use shmkit::snapshot::ATTEMPTS;
use shmkit::sync::liveness::model::{become_process, run_killed_after, timeouts_expire};

type Rec = [u64; 2];

fn rec(n: u64) -> Rec {
    [n, !n]
}

/// A snapshot, checked: untorn and the record of its version. Returns n.
fn checked_load(cell: &SharedCell<Rec>, attempts: u32) -> u64 {
    let (v, r) = cell
        .load_with_attempts(attempts, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r, rec(r[0]), "torn snapshot at version {v}");
    assert_eq!(r[0], v, "the record is not its version's");
    v
}

/// The next record, stored by read-modify-write.
fn bump(cell: &SharedCell<Rec>) {
    cell.update(|r| *r = rec(r[0] + 1)).unwrap();
}

/// A writer stores twice (so the second store rewrites the buffer of the
/// initial record) while a reader loads twice: every snapshot is whole and
/// its version's, and versions never go back.
fn reader_vs_writer(attempts: u32) {
    loom::model(move || {
        let cell = Arc::new(SharedCell::new_in_process(rec(0)).unwrap());
        let w = {
            let cell = cell.clone();
            thread::spawn(move || {
                become_process(2);
                cell.store(&rec(1)).unwrap();
                cell.store(&rec(2)).unwrap();
            })
        };
        let a = checked_load(&cell, attempts);
        let b = checked_load(&cell, attempts);
        assert!(a <= b, "version went back: {a} then {b}");
        w.join().unwrap();
        assert_eq!(checked_load(&cell, attempts), 2);
    });
}

#[test]
fn reader_vs_writer_never_torn() {
    reader_vs_writer(ATTEMPTS);
}

/// As above, with a reader that falls back to the writers' lock after its
/// first torn copy (and may sleep on it while the writer holds it: a lost
/// wake-up is a deadlock, timeouts never expire here).
#[test]
fn reader_falling_back_to_the_lock_never_torn() {
    reader_vs_writer(1);
}

/// Two writers update (read-modify-write) once each while a reader loads:
/// serialised, so neither update is lost (the last writer's record is
/// version 2 and holds n = 2), and the reader's snapshot is whole.
#[test]
fn two_writers_serialise() {
    loom::model(|| {
        let cell = Arc::new(SharedCell::new_in_process(rec(0)).unwrap());
        let ws: Vec<_> = (2..=3)
            .map(|pid| {
                let cell = cell.clone();
                thread::spawn(move || {
                    become_process(pid);
                    bump(&cell);
                })
            })
            .collect();
        checked_load(&cell, ATTEMPTS);
        for w in ws {
            w.join().unwrap();
        }
        assert_eq!(checked_load(&cell, ATTEMPTS), 2);
        assert_eq!(cell.takeovers(), 0);
    });
}

/// Two writers store different records: the last one wins whole, as
/// version 2 (never a mix of the two).
#[test]
fn two_storers_last_writer_wins() {
    loom::model(|| {
        let cell = Arc::new(SharedCell::new_in_process([0u64, 0]).unwrap());
        let ws: Vec<_> = [(2, [5u64, 50]), (3, [7, 70])]
            .into_iter()
            .map(|(pid, r)| {
                let cell = cell.clone();
                thread::spawn(move || {
                    become_process(pid);
                    cell.store(&r).unwrap()
                })
            })
            .collect();
        let mut versions: Vec<u64> = ws.into_iter().map(|w| w.join().unwrap()).collect();
        versions.sort();
        assert_eq!(versions, [1, 2]);
        let (v, r) = cell.load_versioned().unwrap();
        assert_eq!(v, 2);
        assert!(r == [5, 50] || r == [7, 70], "{r:?}");
    });
}

/// A writer (process 2) is killed before each of its shared-memory steps in
/// turn (taking the lock, stamping, copying, publishing, unlocking) while a
/// reader (process 3) loads twice; then a second writer (process 1)
/// updates. The reader is never torn and never stuck; the second writer
/// always gets the lock, taking it over (counted) exactly when the victim
/// died holding it, and continues from the last complete record.
#[test]
fn a_writer_killed_at_every_step() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let cell = Arc::new(SharedCell::new_in_process(rec(0)).unwrap());
        let victim = {
            let cell = cell.clone();
            thread::spawn(move || {
                become_process(2);
                run_killed_after(2, Some(k), || bump(&cell)).is_none()
            })
        };
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                become_process(3);
                let a = checked_load(&cell, ATTEMPTS);
                let b = checked_load(&cell, ATTEMPTS);
                assert!(a <= b, "version went back: {a} then {b}");
            })
        };
        let killed = victim.join().unwrap();
        let held = cell.lock_state().holder == Some(2);
        assert!(!held || killed, "a live victim left the lock held");
        let before = cell.version().unwrap();
        bump(&cell);
        assert_eq!(cell.takeovers(), u64::from(held));
        assert_eq!(checked_load(&cell, ATTEMPTS), before + 1);
        if !killed {
            assert_eq!(before, 1);
        }
        reader.join().unwrap();
        killed
    });
}

/// `version()` is an announcement: a writer sets another shared word
/// (Relaxed), then stores; a reader that sees the new version sees that
/// word set.
#[test]
fn version_announces_earlier_writes() {
    loom::model(|| {
        let cell = Arc::new(SharedCell::new_in_process(rec(0)).unwrap());
        let flag = Arc::new(shmkit::sync::AtomicU64::new(0));
        let r = {
            let (cell, flag) = (cell.clone(), flag.clone());
            thread::spawn(move || {
                become_process(3);
                if cell.version().unwrap() == 1 {
                    assert_eq!(flag.load(shmkit::Ordering::Relaxed), 1);
                }
            })
        };
        become_process(2);
        flag.store(1, shmkit::Ordering::Relaxed);
        cell.store(&rec(1)).unwrap();
        r.join().unwrap();
    });
}

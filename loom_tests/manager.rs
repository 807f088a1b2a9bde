//! loom models of SharedMap and SharedList (`src/map.rs`, `src/list.rs`) on the
//! production code, with processes modelled as threads.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use common::for_every_kill_step;
use loom::sync::Arc;
use loom::thread;
use shmkit::list::SharedList;
use shmkit::map::SharedMap;
use shmkit::sync::liveness::model::{become_process, run_killed_after};

/// A key whose bytes differ from an empty slot's.
const KEY: u64 = 0x5eed_0000_0000_0001;

/// `get(key)` until it is there (a reader that waits forces the writer to
/// run first; see `reader_sees_a_fresh_entry_whole` for why that matters).
fn wait_for(map: &SharedMap<u64, u64>, key: u64) -> u64 {
    loop {
        match map.get(&key) {
            Some(v) => break v,
            None => thread::yield_now(),
        }
    }
}

/// Two writers insert the same key while a reader looks it up: the key is
/// stored once, and the reader sees nothing or one of the written values,
/// never a half-written entry. Run with key 0, whose bytes equal an empty
/// slot's (a reader that saw FULL without the key and value words would
/// match the stale zero key and return a bogus 0), and with a non-zero key
/// (a writer whose failed CAS did not acquire the other's key would not
/// recognise it and store the key twice).
fn same_key_inserts_and_a_reader(key: u64) {
    loom::model(move || {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        let writers: Vec<_> = [11u64, 22]
            .into_iter()
            .map(|v| {
                let m = map.clone();
                thread::spawn(move || {
                    m.insert(key, v).unwrap();
                })
            })
            .collect();
        let seen = map.get(&key);
        assert!(matches!(seen, None | Some(11) | Some(22)), "{seen:?}");
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(map.len(), 1, "the key was stored twice");
        assert!(matches!(map.get(&key), Some(11) | Some(22)));
    });
}

#[test]
fn same_key_inserts_and_a_reader_key_zero() {
    same_key_inserts_and_a_reader(0);
}

#[test]
fn same_key_inserts_and_a_reader_key_nonzero() {
    same_key_inserts_and_a_reader(KEY);
}

/// A reader that waits for a fresh insert sees the whole entry. (Why a
/// second model: in loom 0.7.2, when a thread loads a word before it CASes
/// that word, as `insert` does, loom explored only one interleaving of the
/// model above with a concurrent reader, and missed a weakened FULL store.
/// A reader that retries until the entry appears forces the writer to run
/// first, and then loom does explore stale key and value reads: with the
/// FULL store weakened to Relaxed this model fails.)
fn reader_sees_a_fresh_entry_whole(key: u64) {
    loom::model(move || {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        let m = map.clone();
        let writer = thread::spawn(move || m.insert(key, 11).unwrap());
        let v = loop {
            match map.get(&key) {
                Some(v) => break v,
                None => thread::yield_now(),
            }
        };
        assert_eq!(v, 11, "saw the key before its value");
        assert_eq!(writer.join().unwrap(), None);
    });
}

#[test]
fn reader_sees_a_fresh_entry_whole_key_zero() {
    reader_sees_a_fresh_entry_whole(0);
}

#[test]
fn reader_sees_a_fresh_entry_whole_key_nonzero() {
    reader_sees_a_fresh_entry_whole(KEY);
}

/// Insert and remove of one key race: afterwards the map holds the key once
/// or not at all, and what `remove` returned was a value really stored.
#[test]
fn insert_remove_race() {
    loom::model(|| {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        map.insert(1, 10).unwrap();
        let m = map.clone();
        let remover = thread::spawn(move || m.remove(&1).unwrap());
        let prev = map.insert(1, 20).unwrap();
        let removed = remover.join().unwrap();
        assert!(matches!(removed, Some(10) | Some(20)), "{removed:?}");
        assert!(matches!(prev, None | Some(10)), "{prev:?}");
        assert!(map.len() <= 1);
        match map.get(&1) {
            None => assert_eq!(removed, Some(20)),
            Some(v) => assert_eq!((v, removed), (20, Some(10))),
        }
    });
}

/// Two pushers claim indices while a reader reads slot 0: the reader sees
/// nothing or a whole, published value; at the end both values are there
/// once.
#[test]
fn list_claim_and_publish() {
    loom::model(|| {
        let list = Arc::new(SharedList::<[u64; 2]>::new_in_process(2).unwrap());
        let pushers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let l = list.clone();
                thread::spawn(move || l.push([v, v * 100]).unwrap())
            })
            .collect();
        // Every pushed value is non-zero: an unpublished slot reads [0, 0],
        // which `x[1] == x[0] * 100` alone would accept.
        if let Some(x) = list.get(0) {
            assert!(
                matches!(x, [1, 100] | [2, 200]),
                "torn or unpublished: {x:?}"
            );
        }
        let mut idx: Vec<usize> = pushers.into_iter().map(|p| p.join().unwrap()).collect();
        idx.sort();
        assert_eq!(idx, [0, 1]);
        let mut all = list.to_vec();
        all.sort();
        assert_eq!(all, [[1, 100], [2, 200]]);
    });
}

/// fetch_add and remove race: the outcome is one of the two serial orders,
/// exactly (no lost add, no stale removed value).
#[test]
fn fetch_add_remove_race() {
    loom::model(|| {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        map.insert(1, 10).unwrap();
        let m = map.clone();
        let adder = thread::spawn(move || m.fetch_add(&1, 5));
        let removed = map.remove(&1).unwrap();
        let added = adder.join().unwrap();
        match added {
            Ok(prev) => assert_eq!((prev, removed), (10, Some(15)), "add, then remove"),
            Err(_) => assert_eq!(removed, Some(10), "remove, then add finds nothing"),
        }
        assert_eq!(map.get(&1), None);
    });
}

/// A reader that waits for a push sees the value whole: the value is
/// non-zero, so reading the slot's words before they were published shows.
#[test]
fn list_reader_sees_a_pushed_value_whole() {
    loom::model(|| {
        let list = Arc::new(SharedList::<[u64; 2]>::new_in_process(1).unwrap());
        let l = list.clone();
        let pusher = thread::spawn(move || l.push([7, 700]).unwrap());
        let x = loop {
            match list.get(0) {
                Some(x) => break x,
                None => thread::yield_now(),
            }
        };
        assert_eq!(x, [7, 700], "saw the slot before its value");
        assert_eq!(pusher.join().unwrap(), 0);
    });
}

/// `entries` that waits for a fresh insert sees the whole entry: its key
/// and value, not the empty slot's zero words.
#[test]
fn entries_sees_a_fresh_entry_whole() {
    loom::model(|| {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        let m = map.clone();
        let writer = thread::spawn(move || m.insert(KEY, 11).unwrap());
        let all = loop {
            let all = map.entries();
            if !all.is_empty() {
                break all;
            }
            thread::yield_now();
        };
        assert_eq!(all, [(KEY, 11)], "saw the slot before its key and value");
        assert_eq!(writer.join().unwrap(), None);
    });
}

/// A removed key inserted again revives its tombstone: a reader that waits
/// for it sees the new value, never the removed one (the old value is still
/// in the slot's value word, so a revive that published its FULL state
/// without ordering the value store before it would show 10).
#[test]
fn a_revived_key_is_seen_with_its_new_value() {
    loom::model(|| {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        map.insert(KEY, 10).unwrap();
        assert_eq!(map.remove(&KEY).unwrap(), Some(10));
        let m = map.clone();
        let writer = thread::spawn(move || m.insert(KEY, 20).unwrap());
        assert_eq!(wait_for(&map, KEY), 20, "the removed value came back");
        assert_eq!(writer.join().unwrap(), None);
        assert_eq!(map.len(), 1);
    });
}

/// An updater (process 2, `fetch_add(5)` on 10) is killed at every step,
/// maybe while it holds the slot mid-update (BUSY|UPD) with its new value
/// already written. Process 3 removes the key at any time; process 1 learns
/// of the death (here by `join`, as a real process does by asking), reads
/// the key and removes it. Whoever first meets the dead updater's slot
/// restores it (`settle`). Exactly one remove gets the value, and it is the
/// value process 1 saw: a remover that reads a slot another process restored
/// sees the value as of the restore, including what the dead updater wrote
/// before it died (the restore's Release publishes it).
#[test]
fn a_dead_updaters_slot_is_taken_over() {
    for_every_kill_step(32, |k| {
        let map = Arc::new(SharedMap::<u64, u64>::new_in_process(2).unwrap());
        map.insert(KEY, 10).unwrap();
        let m = map.clone();
        let victim =
            thread::spawn(move || run_killed_after(2, Some(k), move || m.fetch_add(&KEY, 5)));
        let m = map.clone();
        let other = thread::spawn(move || {
            become_process(3);
            m.remove(&KEY).unwrap()
        });
        // Process 1 learns of the death before it looks (as by asking).
        let added = victim.join().unwrap();
        let seen = map.get(&KEY);
        let mine = map.remove(&KEY).unwrap();
        let theirs = other.join().unwrap();
        let removed = match (mine, theirs) {
            (Some(v), None) | (None, Some(v)) => v,
            both => panic!("removed twice or never: {both:?}"),
        };
        assert!(removed == 10 || removed == 15, "{removed}");
        if let Some(v) = seen {
            assert_eq!(removed, v, "saw {v}, then removed another value");
        }
        match added {
            Some(Ok(10)) => assert_eq!(removed, 15, "the finished add was lost"),
            Some(Err(_)) => assert_eq!(removed, 10, "an add of an absent key took effect"),
            Some(Ok(v)) => panic!("fetch_add returned {v}"),
            None => {}
        }
        assert_eq!(map.get(&KEY), None);
        added.is_none()
    });
}

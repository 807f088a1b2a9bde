//! `Consumer::iter` (waits; ends when the ring is closed and drained, or its
//! producer died) and `Consumer::try_iter` (what is there now, never waits).
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::ring::Ring;

const ENTRY: &str = "child_entry";

/// Entry point of every child. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    match role.as_str() {
        // Push 1..=5, then exit without closing (a producer that died).
        "push_and_exit" => {
            let ring = Ring::<u64>::open(&name).unwrap();
            let mut tx = ring.producer().unwrap();
            for x in 1..=5 {
                tx.push(x).unwrap();
            }
            std::mem::forget(tx);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn iter_waits_and_ends_when_closed_and_drained() {
    let ring = Ring::<u64>::new_in_process(4).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    // More items than the capacity: the iterator must wait for the rest.
    let sender = std::thread::spawn(move || {
        for x in 0..100 {
            tx.push(x).unwrap();
        }
        // Dropping the producer closes the ring.
    });
    let got: Vec<u64> = rx.iter().collect();
    sender.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // Ended for good: `for` over `&rx` is the same iterator.
    assert_eq!((&rx).into_iter().next(), None);
}

#[test]
fn try_iter_drains_and_never_waits() {
    let ring = Ring::<u32>::new_in_process(8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let t = Instant::now();
    assert_eq!(rx.try_iter().count(), 0);
    for x in [3, 1, 4] {
        tx.push(x).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [3, 1, 4]);
    assert!(rx.is_empty());
    // The producer is open and idle: nothing to wait for.
    assert_eq!(rx.try_iter().next(), None);
    assert!(t.elapsed() < Duration::from_secs(1));
    tx.push(9).unwrap();
    let mut sum = 0;
    for x in &rx {
        sum += x;
        if x == 9 {
            break;
        }
    }
    assert_eq!(sum, 9);
}

#[test]
fn iter_ends_when_the_producer_process_died() {
    let c = Cleanup::new("iterdead");
    let ring = Ring::<u64>::create(c.name(), 8).unwrap();
    let rx = ring.consumer().unwrap();
    let child = child_command(ENTRY, "push_and_exit")
        .env("SHMKIT_NAME", c.name())
        .spawn()
        .unwrap();
    Reaper(Some(child)).wait_ok();
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

//! loom models of the ring's death paths: a process is killed before its
//! k-th shared-memory operation, for every k in turn, wherever in the
//! production code that falls (`sync::liveness::model::run_killed_after`).
//! Timed waits expire in these models (`timeouts_expire`), because a timeout
//! is how a sleeper learns that its peer died.
//!
//! Each model asserts what a kill may cost and what it may never do: no item
//! twice, no torn item, nothing lost but the items the dead process held,
//! and every survivor finishes (a hang is a loom deadlock or branch-limit
//! failure).
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Mutex;

use common::{
    assert_once_and_lost_at_most, drain, for_every_kill_step, pop_into_until_disconnected,
};
use loom::thread;
use shmkit::ring::{PopError, PushError, Ring};
use shmkit::sync::liveness::model::{become_process, run_killed_after, timeouts_expire};

/// The producer is killed at every step of pushing 1, 2 (and of closing).
/// The one consumer gets a prefix of 1, 2 in order (nothing torn, nothing
/// twice, nothing published lost) and then Disconnected: it is never left
/// waiting on a dead producer.
#[test]
fn producer_killed_at_every_step_of_a_push() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let rx = ring.consumer().unwrap();
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let mut tx = r.producer().unwrap();
            run_killed_after(2, Some(k), move || {
                tx.push(1).unwrap();
                tx.push(2).unwrap();
                drop(tx); // closes
            })
            .is_none()
        });
        let got = drain(|| rx.pop());
        let killed = victim.join().unwrap();
        assert!(
            got.iter().copied().eq(1..=got.len() as u64),
            "not a prefix: {got:?}"
        );
        if !killed {
            assert_eq!(got, [1, 2]);
        }
        killed
    });
}

/// The producer is killed mid-push; a new producer takes the role over,
/// pushes 10 and closes. The consumer gets a prefix of the dead producer's
/// 1, 2 and then 10: the dead one's half-written slot is never delivered.
#[test]
fn a_new_producer_takes_over_from_a_killed_one() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let rx = ring.consumer().unwrap();
        // The consumer may see the dead producer and stop before the
        // takeover (a dead producer disconnects); it then drains again.
        let consumer = thread::spawn(move || (drain(|| rx.pop()), rx));
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let mut tx = r.producer().unwrap();
            run_killed_after(2, Some(k), move || {
                tx.push(1).unwrap();
                tx.push(2).unwrap();
                std::mem::forget(tx); // leaves without closing
            })
            .is_none()
        });
        let killed = victim.join().unwrap();
        if !killed {
            // A producer that left without closing is not dead; say so.
            shmkit::sync::liveness::model::kill(2);
        }
        let mut tx = ring
            .producer()
            .expect("the dead producer's role is taken over");
        tx.push(10).unwrap();
        drop(tx);
        let (mut got, rx) = consumer.join().unwrap();
        got.extend(drain(|| rx.pop()));
        assert!(!got.is_empty(), "10 was lost");
        let (old, new) = got.split_at(got.len() - 1);
        assert_eq!(new, [10], "{got:?}");
        assert!(old.iter().copied().eq(1..=old.len() as u64), "{got:?}");
        if !killed {
            assert_eq!(old, [1, 2]);
        }
        killed
    });
}

/// One of two consumers is killed at every step of its pops (the single pop
/// and the batch pop) of a ring holding 1, 2, closed. No item reaches both;
/// the items lost are at most the ones the dead consumer had claimed (one
/// pop, or one batch of 2); the survivor drains the rest and sees
/// Disconnected. (The ring is filled and closed first: a producer waiting
/// beside two consumers made the model take minutes without adding a death
/// path; the producer's side has its own models above.)
fn consumer_killed(batch: bool) {
    for_every_kill_step(96, move |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        drop(tx); // closed: the consumers drain, then see Disconnected
        // What the victim received, kept outside the shared memory as a
        // process's own output would be.
        let victim_got = std::sync::Arc::new(Mutex::new(Vec::new()));
        let vg = victim_got.clone();
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let victim_rx = r.consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                pop_into_until_disconnected(&vg, |buf| {
                    if batch {
                        victim_rx.pop_into(buf)
                    } else {
                        victim_rx.pop().map(|v| {
                            buf[0] = v;
                            1
                        })
                    }
                })
            })
            .is_none()
        });
        let survivor_rx = ring.consumer().unwrap();
        let mut all = drain(|| survivor_rx.pop());
        let killed = victim.join().unwrap();
        all.extend(victim_got.lock().unwrap().iter().copied());
        let may_lose = if batch { 2 } else { 1 };
        assert_once_and_lost_at_most(all, 2, killed, may_lose);
        killed
    });
}

#[test]
fn consumer_killed_at_every_step_of_a_pop() {
    consumer_killed(false);
}

#[test]
fn consumer_killed_at_every_step_of_a_batch_pop() {
    consumer_killed(true);
}

/// The producer sleeps on a full ring whose only consumer is killed at
/// every step of taking the one item: the push returns (the consumer's pop
/// made room, or Disconnected), never waits forever on a dead consumer.
#[test]
fn a_producer_blocked_on_a_full_ring_learns_its_consumer_died() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(1).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap(); // full
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let rx = r.consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                assert_eq!(rx.pop(), Ok(1));
            })
            .is_none()
        });
        let r = tx.push(2);
        let killed = victim.join().unwrap();
        match r {
            Ok(()) => {}
            Err(PushError::Disconnected(2)) => assert!(killed, "Disconnected with a live consumer"),
            Err(e) => panic!("{e}"),
        }
        drop(tx);
        killed
    });
}

/// The only consumer is killed at every step of its batch pops while the
/// producer pushes 1, 2 and closes; a consumer that comes after it drains
/// the rest. What the dead one took arrived whole (1 or 2, never a stale
/// slot), nothing is delivered twice, and a consumer that lived lost
/// nothing. (The models above fill the ring before the consumers start,
/// so no ordering between producer and consumer is at stake there; here it
/// is.)
///
/// Planted bug that fails it (tried): `Consumer::claim`'s Acquire load of
/// tail made Relaxed (the consumer sees the new tail but reads the slot
/// stale). Not caught by it (tried): `publish`'s Release store of tail and
/// `closed`'s Acquire load made Relaxed (other models kill both).
#[test]
fn consumer_killed_while_the_producer_pushes() {
    for_every_kill_step(96, |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let victim_got = std::sync::Arc::new(Mutex::new(Vec::new()));
        let vg = victim_got.clone();
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let rx = r.consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                let mut buf = [0u64; 2];
                loop {
                    match rx.pop_into(&mut buf) {
                        Ok(n) => vg.lock().unwrap().extend_from_slice(&buf[..n]),
                        Err(PopError::Disconnected) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
            .is_none()
        });
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        drop(tx); // closes
        let killed = victim.join().unwrap();
        let got = victim_got.lock().unwrap().clone();
        assert!(got.iter().all(|v| (1..=2).contains(v)), "torn: {got:?}");
        let rx = ring.consumer().unwrap();
        let mut all = got.clone();
        all.extend(drain(|| rx.pop()));
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "twice or out of order: {all:?}"
        );
        assert!(all.iter().all(|v| (1..=2).contains(v)), "torn: {all:?}");
        if !killed {
            // It drained until Disconnected: it got everything itself.
            assert_eq!(got, [1, 2]);
        }
        killed
    });
}

/// Issue 14: a consumer is killed at every step of taking an item and
/// marking it done, while a second consumer lives and drains the rest. The
/// producer's `join` returns — never waits for the dead — and reports at
/// most the victim's one item abandoned (none if it was not killed); every
/// item is done or abandoned.
#[test]
fn join_returns_when_a_consumer_dies_holding_an_item() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        let survivor = ring.consumer().unwrap();
        let r = ring.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let rx = r.consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                let took = rx.try_pop().is_ok();
                if took {
                    rx.task_done().unwrap();
                }
                took
            })
        });
        let mut done = 0;
        while survivor.try_pop().is_ok() {
            survivor.task_done().unwrap();
            done += 1;
        }
        let report = tx.join().expect("join returns");
        let victim = victim.join().unwrap();
        let killed = victim.is_none();
        assert!(report.abandoned <= 1, "{report:?}");
        if !killed {
            assert_eq!(report.abandoned, 0);
            done += usize::from(victim == Some(true));
            assert_eq!(done, 2);
        } else {
            assert!(done + report.abandoned as usize <= 2);
        }
        drop(tx);
        killed
    });
}

//! loom models of the SPMC ring (`src/ring/`), run on the production code
//! with the ring on heap memory and processes modelled as threads. With the
//! futex modelled by a Mutex + Condvar and timeouts modelled as untimed
//! waits, a lost wakeup shows up as a loom deadlock.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use common::drain;
use loom::sync::Arc;
use loom::thread;
use shmkit::ring::Ring;
use shmkit::{Atomic, Ordering};

/// 1 producer, 2 consumers, capacity 2, 3 items (so the ring wraps and the
/// producer blocks on full): every item exactly once, each consumer sees
/// increasing sequence numbers, and everyone finishes (no lost wakeup).
/// Explored at preemption bound 2 in CI: bound 3 takes far longer.
#[test]
fn spmc_every_item_exactly_once() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = ring.consumer().unwrap();
                thread::spawn(move || drain(|| rx.pop()))
            })
            .collect();
        for v in 0..3 {
            tx.push(v).unwrap();
        }
        drop(tx); // close
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            all.extend(got);
        }
        all.sort();
        assert_eq!(all, [0, 1, 2]);
    });
}

/// A consumer asleep on an empty ring is woken by a push (the producer stays
/// open, so only the push's wake can end the wait).
#[test]
fn push_wakes_a_sleeping_consumer() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        let t = thread::spawn(move || rx.pop());
        tx.push(42).unwrap();
        assert_eq!(t.join().unwrap(), Ok(42));
        drop(tx);
    });
}

/// A producer asleep on a full ring is woken by a pop.
#[test]
fn pop_wakes_a_blocked_producer() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(1).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        tx.push(1).unwrap();
        let t = thread::spawn(move || {
            let a = rx.pop();
            let b = rx.pop();
            (a, b)
        });
        tx.push(2).unwrap(); // full until the consumer pops
        let (a, b) = t.join().unwrap();
        assert_eq!((a, b), (Ok(1), Ok(2)));
        drop(tx);
    });
}

/// close() while consumers sleep: all wake, the item still in the ring is
/// delivered to exactly one of them, then both see Disconnected.
#[test]
fn close_wakes_all_and_delivers_the_rest() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = ring.consumer().unwrap();
                thread::spawn(move || drain(|| rx.pop()))
            })
            .collect();
        tx.push(7).unwrap();
        tx.close();
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, [7]);
    });
}

/// task_done / join: join returns only after every pushed item was marked
/// done, and the consumers' work on the items is visible to the joiner.
#[test]
fn join_waits_for_task_done() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        let work = Arc::new(Atomic::<u64>::new(0));
        let w = work.clone();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                let v = rx.pop().unwrap();
                // Relaxed on purpose: only join's Acquire of `done` orders it.
                w.fetch_add(v, Ordering::Relaxed);
                rx.task_done().unwrap();
            }
            assert!(rx.task_done().is_err(), "more task_done than items");
        });
        tx.push(10).unwrap();
        tx.push(5).unwrap();
        tx.join().unwrap();
        assert_eq!(work.load(Ordering::Relaxed), 15);
        t.join().unwrap();
    });
}

/// task_done from a consumer that took nothing, racing one that took an
/// item and marked it done: each sees `TooMany` or succeeds, exactly one
/// counts the item, and neither reports `Corrupt` ("done past head").
///
/// A weak test for one ordering: with task_done's load of done (in
/// `mark_done`) weakened to Relaxed it still passes (tried; the taker's
/// head CAS is followed by the producer wake-up's fence, and loom finds no
/// stale head after it). The Acquire rests on the argument written beside
/// it in `Consumer::mark_done`.
#[test]
fn task_done_from_another_consumer_never_looks_corrupt() {
    use shmkit::ring::TaskDoneError;
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        let taker = ring.consumer().unwrap();
        let other = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            assert_eq!(taker.pop(), Ok(1));
            taker.task_done()
        });
        let mine = other.task_done();
        let theirs = t.join().unwrap();
        for r in [&mine, &theirs] {
            assert!(matches!(r, Ok(()) | Err(TaskDoneError::TooMany)), "{r:?}");
        }
        // One item, so exactly one of the two counted it.
        assert!(mine.is_ok() != theirs.is_ok(), "{mine:?} {theirs:?}");
        tx.join().unwrap();
    });
}

/// Byte messages (`src/ring/message.rs`): a 2-frame and a 1-frame message, two
/// consumers. Each message arrives whole, at exactly one consumer (a split
/// message would fail the content check or the count).
#[test]
fn byte_messages_arrive_whole_and_once() {
    use shmkit::ring::message::Frame;
    loom::model(|| {
        let ring = Ring::<Frame>::new_in_process(4).unwrap();
        let mut tx = ring.producer().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = ring.consumer().unwrap();
                thread::spawn(move || drain(|| rx.pop_bytes()))
            })
            .collect();
        let long: Vec<u8> = (0..60).collect(); // 2 frames
        tx.push_bytes(&long).unwrap();
        tx.push_bytes(b"x").unwrap();
        drop(tx);
        let mut all: Vec<Vec<u8>> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, vec![long, b"x".to_vec()]);
    });
}

/// A consumer registers while the producer is blocked on a full ring: the
/// producer must never conclude "every consumer is gone" from a half-seen
/// registration (consumers_seen visible, registry slot not yet).
#[test]
fn registration_races_a_blocked_producer() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(1).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        let r = ring.clone();
        let t = thread::spawn(move || {
            let rx = r.consumer().unwrap();
            (rx.pop(), rx.pop())
        });
        tx.push(2).unwrap(); // blocks until the consumer pops
        assert_eq!(t.join().unwrap(), (Ok(1), Ok(2)));
    });
}

/// join must see the work of a consumer that left: the only consumer takes
/// the item, works on it, marks it done and drops (unregisters) while the
/// producer joins. join returns Ok (never Disconnected: everything was
/// done before the consumer left) and the work is visible.
///
/// Planted bugs that fail it (tried): `task_done`'s Release CAS of `done`
/// made Relaxed (the joiner sees done but not the work); and `join_until`
/// answering Disconnected as soon as `consumers_gone` says so, without the
/// re-check of `done` (the consumer finished just before leaving); and
/// `consumers_gone`'s Acquire load of a registry entry made Relaxed. Not
/// caught by it: `unregister_consumer`'s clear made Relaxed, after which
/// the joiner could in C11 see the consumer gone and still re-read a stale
/// `done`; loom, even unbounded, does not produce that stale read here
/// (`a_consumer_registers_where_another_left_after_losing_a_claim`, in
/// loom_tests/ring_registry.rs, kills that mutant through `held`).
#[test]
fn join_sees_the_work_of_a_consumer_that_left() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        let work = Arc::new(Atomic::<u64>::new(0));
        let w = work.clone();
        tx.push(10).unwrap();
        let t = thread::spawn(move || {
            let v = rx.pop().unwrap();
            // Relaxed on purpose: only join's ordering may publish it.
            w.fetch_add(v, Ordering::Relaxed);
            rx.task_done().unwrap();
            drop(rx); // leaves
        });
        assert_eq!(tx.join().map(|r| r.abandoned), Ok(0));
        assert_eq!(work.load(Ordering::Relaxed), 10);
        t.join().unwrap();
    });
}

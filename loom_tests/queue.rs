//! loom models of the multi-producer queue (`src/queue`), on the production
//! code: processes are threads, and a process dies before its k-th
//! shared-memory operation for every k in turn
//! (`sync::liveness::model::run_killed_after`).
//!
//! Each model asserts: no item twice, no torn item (every value is one that
//! was pushed, whole), nothing lost beyond what a dead process held, and
//! every waiter is woken (a hang is a loom deadlock or branch-limit
//! failure). CI runs them at preemption bound 2 (.ci/run).
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};

use common::{drain, for_every_kill_step};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmkit::queue::message::Frame;
use shmkit::queue::{Consumer, Producer, Queue, QueueOptions};
use shmkit::sync::liveness::model::{become_process, run_killed_after, timeouts_expire};

/// An item whose two words must agree: a torn copy shows.
type Item = [u64; 2];

fn item(v: u64) -> Item {
    [v, !v]
}

fn check_whole(got: &[Item]) -> Vec<u64> {
    got.iter()
        .map(|&[v, c]| {
            assert_eq!(c, !v, "torn item {v:#x}/{c:#x}");
            v
        })
        .collect()
}

fn opts(cap: usize, p: usize, c: usize) -> QueueOptions {
    QueueOptions::new(cap, p, c).disconnect_when_producers_gone(true)
}

/// 2 producers × 2 consumers at capacity 1 per lane, 2 items each (so each
/// lane wraps around: the second item reuses the slot the first was taken
/// from). (Capacity 2 with 3 items each ran past 14 minutes at bound 2.) Blocking pushes and pops: producers sleep on full
/// lanes, consumers on an empty queue; every item is delivered exactly
/// once, each producer's in order, and the consumers end when the
/// producers are gone.
///
/// Not run in CI: about 15 minutes at preemption bound 1 on 2 busy cores
/// (4 threads, each pop a scan of both lanes), and past loom's default of
/// 1000 branches an execution: run it with `LOOM_MAX_BRANCHES=20000` and
/// `--ignored` (README, "Long runs"). The two 3-thread models below split
/// it into its pairwise races and run at bound 2; shuttle's 3 x 3 queue
/// models run in CI.
#[test]
#[ignore = "15 minutes at bound 1, LOOM_MAX_BRANCHES=20000; the two models below cover its races"]
fn two_producers_two_consumers_wraparound() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(1, 2, 2)).unwrap();
        let rx2 = q.consumer().unwrap();
        let rx1 = q.consumer().unwrap();
        let mut pa = q.producer().unwrap();
        let mut pb = q.producer().unwrap();
        let a = thread::spawn(move || {
            for v in 1..=2 {
                pa.push(item(v)).unwrap();
            }
        });
        let b = thread::spawn(move || {
            for v in 11..=12 {
                pb.push(item(v)).unwrap();
            }
        });
        let c = thread::spawn(move || check_whole(&drain(|| rx1.pop())));
        let mine = check_whole(&drain(|| rx2.pop()));
        a.join().unwrap();
        b.join().unwrap();
        let theirs = c.join().unwrap();
        for got in [&mine, &theirs] {
            for lane in [1..=2, 11..=12] {
                let sub: Vec<u64> = got.iter().copied().filter(|v| lane.contains(v)).collect();
                assert!(sub.is_sorted(), "out of order: {got:?}");
            }
        }
        let mut all: Vec<u64> = mine.into_iter().chain(theirs).collect();
        all.sort();
        assert_eq!(all, [1, 2, 11, 12]);
    });
}

/// 2 producers × 1 consumer at capacity 1 per lane, 2 items each (each lane
/// wraps around): producers race each other's publishes and the consumer's
/// scan; blocking on both sides.
#[test]
fn two_producers_one_consumer_wraparound() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(1, 2, 1)).unwrap();
        let rx = q.consumer().unwrap();
        let mut pa = q.producer().unwrap();
        let mut pb = q.producer().unwrap();
        let a = thread::spawn(move || {
            for v in 1..=2 {
                pa.push(item(v)).unwrap();
            }
        });
        let b = thread::spawn(move || {
            for v in 11..=12 {
                pb.push(item(v)).unwrap();
            }
        });
        let got = check_whole(&drain(|| rx.pop()));
        a.join().unwrap();
        b.join().unwrap();
        for lane in [1..=2, 11..=12] {
            let sub: Vec<u64> = got.iter().copied().filter(|v| lane.contains(v)).collect();
            assert_eq!(sub, lane.collect::<Vec<_>>(), "{got:?}");
        }
    });
}

/// 1 producer × 2 consumers at capacity 1, 2 items (the lane wraps):
/// the consumers' claims race on one lane's head; each item is delivered
/// once, each consumer's share in order, and both end once the producer
/// leaves.
#[test]
fn one_producer_two_consumers_wraparound() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(1, 1, 2)).unwrap();
        let rx1 = q.consumer().unwrap();
        let rx2 = q.consumer().unwrap();
        let mut tx = q.producer().unwrap();
        let p = thread::spawn(move || {
            for v in 1..=2 {
                tx.push(item(v)).unwrap();
            }
        });
        let c = thread::spawn(move || check_whole(&drain(|| rx1.pop())));
        let mine = check_whole(&drain(|| rx2.pop()));
        p.join().unwrap();
        let theirs = c.join().unwrap();
        assert!(
            mine.is_sorted() && theirs.is_sorted(),
            "{mine:?} {theirs:?}"
        );
        let mut all: Vec<u64> = mine.into_iter().chain(theirs).collect();
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}

/// Two lanes, one consumer, a survivor producer and a victim producer. Both
/// producers attach before either runs (else the consumer may rightly see
/// every producer gone before the victim arrives): the victim's lane is
/// claimed here, as process 2.
fn queue_with_a_victim<T: bytemuck::Pod>() -> (Consumer<T>, Producer<T>, Producer<T>) {
    let q = Queue::<T>::new_in_process(opts(2, 2, 1)).unwrap();
    let rx = q.consumer().unwrap();
    let other = q.producer().unwrap();
    become_process(2);
    let victim = q.producer().unwrap();
    become_process(1);
    (rx, other, victim)
}

/// Run `push` as process 2, killed after its `k`-th step (if it gets that
/// far); the handle says whether it was killed.
fn victim_killed_after(k: usize, push: impl FnOnce() + Send + 'static) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        become_process(2);
        run_killed_after(2, Some(k), push).is_none()
    })
}

/// A producer is killed at every step of pushing 1, 2 into its lane while
/// another pushes 10 and leaves; the consumer gets the survivor's 10, a
/// prefix of 1, 2 in order (never a half-written slot, nothing published
/// lost), and then Disconnected: not left waiting on the dead.
#[test]
fn a_producer_killed_at_every_step_of_a_push() {
    for_every_kill_step(64, |k| {
        timeouts_expire(true);
        let (rx, mut other, mut tx) = queue_with_a_victim::<Item>();
        let victim = victim_killed_after(k, move || {
            tx.push(item(1)).unwrap();
            tx.push(item(2)).unwrap();
            drop(tx); // leaves: its lane is free
        });
        let survivor = thread::spawn(move || {
            other.push(item(10)).unwrap();
        });
        let got = check_whole(&drain(|| rx.pop()));
        let killed = victim.join().unwrap();
        survivor.join().unwrap();
        let (tens, mine): (Vec<u64>, Vec<u64>) = got.iter().partition(|&&v| v == 10);
        assert_eq!(tens, [10], "{got:?}");
        assert!(mine.iter().copied().eq(1..=mine.len() as u64), "{got:?}");
        if !killed {
            assert_eq!(mine, [1, 2]);
        }
        killed
    });
}

/// A consumer is killed at every step of taking an item and marking it
/// done, while another drains the rest; `join` from an observer handle
/// returns (never waits for the dead) with at most the victim's one item
/// abandoned, none if it lived, and every item done or abandoned.
#[test]
fn join_with_a_consumer_that_dies_holding_an_item() {
    for_every_kill_step(96, |k| {
        timeouts_expire(true);
        let q = Queue::<Item>::new_in_process(opts(2, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(item(1)).unwrap();
        tx.push(item(2)).unwrap();
        let survivor = q.consumer().unwrap();
        let victim_got = Arc::new(Mutex::new(Vec::new()));
        let vg = victim_got.clone();
        // The victim's "work" on its item, written before task_done with
        // no ordering of its own: join must make it visible.
        let work = Arc::new(AtomicU64::new(0));
        let w = work.clone();
        let qv = q.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let rx = qv.consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                if let Ok(v) = rx.try_pop() {
                    vg.lock().unwrap().push(v);
                    w.store(v[0], Ordering::Relaxed);
                    rx.task_done().unwrap();
                }
            })
            .is_none()
        });
        let mut got = Vec::new();
        while let Ok(v) = survivor.try_pop() {
            got.push(v);
            survivor.task_done().unwrap();
        }
        let observer = q.clone();
        let report = observer.join().expect("join returns");
        if got.len() == 1 && report.abandoned == 0 {
            // The victim took the other item and marked it done: its work
            // happened before join returned.
            assert_ne!(
                work.load(Ordering::Relaxed),
                0,
                "join returned before the work"
            );
        }
        let killed = victim.join().unwrap();
        got.extend(victim_got.lock().unwrap().iter().copied());
        let mut vals = check_whole(&got);
        vals.sort();
        let n = vals.len();
        vals.dedup();
        assert_eq!(n, vals.len(), "delivered twice: {vals:?}");
        assert!(report.abandoned <= 1, "{report:?}");
        if killed {
            assert!(2 - n <= 1, "lost more than the victim held: {vals:?}");
        } else {
            assert_eq!((n, report.abandoned), (2, 0));
        }
        drop(tx);
        killed
    });
}

/// A producer pushes and closes the queue; the consumer (asleep or not) is
/// woken, gets the item, then Disconnected: a close never hides what was
/// pushed before it. (No `disconnect_when_producers_gone`: only the close
/// ends the pops.)
#[test]
fn close_delivers_what_was_pushed_before_it() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(QueueOptions::new(2, 1, 1)).unwrap();
        let rx = q.consumer().unwrap();
        let mut tx = q.producer().unwrap();
        let t = thread::spawn(move || {
            tx.push(item(1)).unwrap();
            tx.close();
        });
        let got = check_whole(&drain(|| rx.pop()));
        t.join().unwrap();
        assert_eq!(got, [1]);
    });
}

/// A 2-frame byte message that shows whether it is whole: `tag`, then a
/// pattern of it, 60 bytes (56 in the first frame, 4 in the second).
fn two_frames(tag: u8) -> Vec<u8> {
    (0..60u8).map(|j| tag ^ j.wrapping_mul(7)).collect()
}

/// The tags of whole messages made by `two_frames`; panics on a torn one.
fn check_messages(got: &[Vec<u8>]) -> Vec<u8> {
    got.iter()
        .map(|m| {
            assert_eq!(*m, two_frames(m[0]), "torn message");
            m[0]
        })
        .collect()
}

/// A queue of frames, capacity 2 per lane, with each of `lanes` lanes'
/// head and tail moved to 1 (a 1-frame message pushed and taken), so that
/// a 2-frame message wraps around its lane's end; its producers, which
/// stay attached.
fn frame_queue_at_one(
    lanes: usize,
    consumers: usize,
) -> (Queue<Frame>, Vec<shmkit::queue::Producer<Frame>>) {
    let q = Queue::<Frame>::new_in_process(opts(2, lanes, consumers)).unwrap();
    let mut txs: Vec<_> = (0..lanes).map(|_| q.producer().unwrap()).collect();
    let rx = q.consumer().unwrap();
    for tx in &mut txs {
        tx.push_bytes(b"x").unwrap();
        assert_eq!(rx.try_pop_bytes().unwrap(), b"x");
    }
    drop(rx);
    (q, txs)
}

/// 2 producers x 2 consumers, byte messages: each producer pushes one
/// 2-frame message that wraps around its lane (capacity 2); each message
/// goes whole (no frame of another, no torn frame) to exactly one consumer,
/// and both consumers end once the producers are gone.
///
/// Not run in CI, like the items' 4-thread model: it passes at bound 2 in
/// about 5 minutes (313 s measured on 2 busy cores), more than the whole
/// script's budget for it. Its pairwise races are the two models below.
/// Run it by name with `--ignored`.
#[test]
#[ignore = "5 minutes at bound 2; the two bytes models below cover its races"]
fn bytes_two_producers_two_consumers_whole_messages() {
    loom::model(|| {
        let (q, txs) = frame_queue_at_one(2, 2);
        let rx1 = q.consumer().unwrap();
        let rx2 = q.consumer().unwrap();
        let ps: Vec<_> = txs
            .into_iter()
            .zip([1u8, 2])
            .map(|(mut tx, tag)| thread::spawn(move || tx.push_bytes(&two_frames(tag)).unwrap()))
            .collect();
        let c = thread::spawn(move || check_messages(&drain(|| rx1.pop_bytes())));
        let mine = check_messages(&drain(|| rx2.pop_bytes()));
        for p in ps {
            p.join().unwrap();
        }
        let mut all: Vec<u8> = mine.into_iter().chain(c.join().unwrap()).collect();
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}

/// 2 producers x 1 consumer, byte messages: each producer pushes a 2-frame
/// message that wraps around its lane (capacity 2) while the consumer
/// scans both lanes; each message whole, exactly once. Fails (a torn
/// message) with the producer's tail publish weakened to Relaxed.
#[test]
fn bytes_two_producers_one_consumer_whole_messages() {
    loom::model(|| {
        let (q, txs) = frame_queue_at_one(2, 1);
        let rx = q.consumer().unwrap();
        let ps: Vec<_> = txs
            .into_iter()
            .zip([1u8, 2])
            .map(|(mut tx, tag)| thread::spawn(move || tx.push_bytes(&two_frames(tag)).unwrap()))
            .collect();
        let mut got = check_messages(&drain(|| rx.pop_bytes()));
        for p in ps {
            p.join().unwrap();
        }
        got.sort();
        assert_eq!(got, [1, 2]);
    });
}

/// 1 producer x 2 consumers, byte messages: the producer pushes a 2-frame
/// message that wraps (capacity 2); the consumers' claims race on one
/// head: the message goes whole to exactly one of them. (With a second
/// message behind it the model ran past 10 minutes at bound 2.)
#[test]
fn bytes_one_producer_two_consumers_whole_messages() {
    loom::model(|| {
        let (q, mut txs) = frame_queue_at_one(1, 2);
        let mut tx = txs.pop().unwrap();
        let rx1 = q.consumer().unwrap();
        let rx2 = q.consumer().unwrap();
        let p = thread::spawn(move || tx.push_bytes(&two_frames(1)).unwrap());
        let c = thread::spawn(move || check_messages(&drain(|| rx1.pop_bytes())));
        let mine = check_messages(&drain(|| rx2.pop_bytes()));
        p.join().unwrap();
        let mut all: Vec<u8> = mine.into_iter().chain(c.join().unwrap()).collect();
        all.sort();
        assert_eq!(all, [1]);
    });
}

/// A producer is killed at every step of pushing a 2-frame message (which
/// wraps around its lane) while another pushes a 1-frame one and leaves:
/// the consumer gets the survivor's message and the victim's whole or not
/// at all (never some of its frames), then Disconnected.
#[test]
fn a_producer_killed_at_every_step_of_a_bytes_push() {
    for_every_kill_step(96, |k| {
        timeouts_expire(true);
        let (rx, mut other, mut tx) = queue_with_a_victim::<Frame>();
        // The victim's lane at 1, so that its message wraps.
        tx.push_bytes(b"x").unwrap();
        assert_eq!(rx.try_pop_bytes().unwrap(), b"x");
        let victim = victim_killed_after(k, move || {
            tx.push_bytes(&two_frames(1)).unwrap();
            drop(tx);
        });
        let survivor = thread::spawn(move || other.push_bytes(&[9]).unwrap());
        let got = drain(|| rx.pop_bytes());
        let killed = victim.join().unwrap();
        survivor.join().unwrap();
        let (nines, mine): (Vec<Vec<u8>>, Vec<Vec<u8>>) = got.into_iter().partition(|m| *m == [9]);
        assert_eq!(nines.len(), 1);
        assert_eq!(check_messages(&mine).len(), usize::from(!mine.is_empty()));
        if !killed {
            assert_eq!(mine.len(), 1);
        }
        killed
    });
}

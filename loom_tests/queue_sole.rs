//! loom models of the queue's sole consumer (`queue::SoleConsumer`, claims
//! by plain stores): the exclusion that makes the stores safe, exactly-once
//! delivery from two producers across wraparound, and a sole consumer
//! killed at every step of its pops and taken over. Run at preemption bound
//! 2, as the queue's other models.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Mutex;

use common::{
    assert_once_and_lost_at_most, drain, for_every_kill_step, pop_into_until_disconnected,
};
use loom::thread;
use shmkit::queue::{Queue, QueueOptions};
use shmkit::sync::liveness::model::{become_process, run_killed_after, timeouts_expire};

fn opts(cap: usize, p: usize, c: usize) -> QueueOptions {
    QueueOptions::new(cap, p, c).disconnect_when_producers_gone(true)
}

/// A sole consumer and a plain consumer, in two processes, attach at once:
/// never both. Each handle is kept until both have tried.
#[test]
fn a_sole_consumer_and_another_never_both_attach() {
    loom::model(|| {
        let q = Queue::<u64>::new_in_process(opts(1, 1, 2)).unwrap();
        let q2 = q.clone();
        let sole = thread::spawn(move || {
            become_process(2);
            q2.sole_consumer().ok()
        });
        become_process(3);
        let plain = q.consumer();
        let sole = sole.join().unwrap();
        assert!(
            !(sole.is_some() && plain.is_ok()),
            "a sole consumer and another consumer both attached"
        );
    });
}

/// Two producers push 1, 2 and 11, 12 through lanes of one slot (each
/// wraps once) and leave; the sole consumer gets all four once, each
/// producer's in order, then Disconnected.
#[test]
fn a_sole_consumer_gets_two_producers_items_once_in_order() {
    loom::model(|| {
        let q = Queue::<u64>::new_in_process(opts(1, 2, 1)).unwrap();
        let mut rx = q.sole_consumer().unwrap();
        let producers: Vec<_> = [1u64, 11]
            .into_iter()
            .map(|base| {
                let mut tx = q.producer().unwrap();
                thread::spawn(move || {
                    tx.push(base).unwrap();
                    tx.push(base + 1).unwrap();
                })
            })
            .collect();
        let got = drain(|| rx.pop());
        for p in producers {
            p.join().unwrap();
        }
        let low: Vec<u64> = got.iter().copied().filter(|v| *v < 10).collect();
        let high: Vec<u64> = got.iter().copied().filter(|v| *v > 10).collect();
        assert_eq!(low, [1, 2], "{got:?}");
        assert_eq!(high, [11, 12], "{got:?}");
    });
}

/// The sole consumer of a queue holding 1, 2 (closed) is killed at every
/// step of its single and batch pops; a new sole consumer then attaches
/// (the dead one's claim is taken over) and drains. No item twice, nothing
/// torn, nothing lost but what the dead one had claimed.
fn sole_killed(batch: bool) {
    for_every_kill_step(96, move |k| {
        timeouts_expire(true);
        let q = Queue::<u64>::new_in_process(opts(2, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        q.close();
        let victim_got = std::sync::Arc::new(Mutex::new(Vec::new()));
        let vg = victim_got.clone();
        let q2 = q.clone();
        let victim = thread::spawn(move || {
            become_process(2);
            let mut rx = q2.sole_consumer().unwrap();
            run_killed_after(2, Some(k), move || {
                pop_into_until_disconnected(&vg, |buf| {
                    if batch {
                        rx.pop_into(buf)
                    } else {
                        rx.pop().map(|v| {
                            buf[0] = v;
                            1
                        })
                    }
                })
            })
            .is_none()
        });
        let killed = victim.join().unwrap();
        let mut survivor = q
            .sole_consumer()
            .expect("a dead or dropped sole consumer's claim is free again");
        let mut all = drain(|| survivor.pop());
        all.extend(victim_got.lock().unwrap().iter().copied());
        let may_lose = if batch { 2 } else { 1 };
        assert_once_and_lost_at_most(all, 2, killed, may_lose);
        killed
    });
}

#[test]
fn a_sole_consumer_killed_at_every_step_of_a_pop() {
    sole_killed(false);
}

#[test]
fn a_sole_consumer_killed_at_every_step_of_a_batch_pop() {
    sole_killed(true);
}

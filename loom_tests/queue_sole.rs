//! loom models of the queue's sole consumer (`queue::SoleConsumer`, claims
//! by plain stores): the exclusion that makes the stores safe, exactly-once
//! delivery from two producers across wraparound, and a sole consumer
//! killed at every step of its pops and taken over. Run at preemption bound
//! 2, as the queue's other models.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use common::{drain, sole_and_plain_model, sole_killed_model};
use loom::thread;
use shmkit::queue::{Queue, QueueOptions};

fn opts(cap: usize, p: usize, c: usize) -> QueueOptions {
    QueueOptions::new(cap, p, c).disconnect_when_producers_gone(true)
}

/// A sole consumer and a plain consumer, in two processes, attach at once:
/// never both (see `sole_and_plain_model!`).
#[test]
fn a_sole_consumer_and_another_never_both_attach() {
    sole_and_plain_model!(Queue::<u64>::new_in_process(opts(1, 1, 2)).unwrap());
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
    sole_killed_model!(batch, {
        let q = Queue::<u64>::new_in_process(opts(2, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        q.close();
        q
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

//! loom models of the ring's sole consumer (`SoleConsumer`, claims by plain
//! stores): the exclusion that makes the stores safe, exactly-once delivery
//! across wraparound, and a sole consumer killed at every step of its pops
//! and taken over.
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use common::{drain, sole_and_plain_model, sole_killed_model};
use loom::thread;
use shmkit::ring::Ring;

/// A sole consumer and a plain consumer, in two processes, attach at once:
/// never both (see `sole_and_plain_model!`).
#[test]
fn a_sole_consumer_and_another_never_both_attach() {
    sole_and_plain_model!(Ring::<u64>::new_in_process(2).unwrap());
}

/// A producer pushes 1..=4 through a ring of 2 slots (two wraps) and
/// closes; the sole consumer gets exactly 1, 2, 3, 4. Its head stores hand
/// slots back to the producer: weakened, the producer overwrites a slot the
/// consumer has not read yet.
#[test]
fn a_sole_consumer_gets_everything_once_across_wraps() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.sole_consumer().unwrap();
        let producer = thread::spawn(move || {
            for v in 1..=4 {
                tx.push(v).unwrap();
            }
            drop(tx); // closes
        });
        let got = drain(|| rx.pop());
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
    });
}

/// The sole consumer of a ring holding 1, 2 (closed) is killed at every
/// step of its single and batch pops; a new sole consumer then attaches
/// (the dead one's claim is taken over) and drains. No item twice, nothing
/// torn, nothing lost but what the dead one had claimed.
fn sole_killed(batch: bool) {
    sole_killed_model!(batch, {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        drop(tx); // closes
        ring
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

//! The classic work queue: one producer puts 1..=9 on a ring, three consumer
//! processes double each item into a shared results array; each item is
//! handled by exactly one consumer.
//!
//! ```text
//! cargo run --example producer_consumer               # close, then wait
//! cargo run --example producer_consumer -- --joinable # task_done / join
//! ```
//! With `--joinable` the parent calls `join()`, which returns once every
//! item was marked done: the results are complete before the queue closes.

use shmkit::ring::Ring;
use shmkit::worker::{self, Spawn};
use shmkit::{Ordering, SharedArray};

const CONSUMERS: usize = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let joinable = std::env::args().any(|a| a == "--joinable");
    if worker::current()?.is_some() {
        let rx = Ring::<u64>::open_inherited("QUEUE")?.consumer()?;
        let results = SharedArray::<u64>::open_inherited("RESULTS")?;
        // Until the producer closes the ring and it is drained.
        for item in &rx {
            let slot = results.get(item as usize).ok_or("item out of range")?;
            slot.store(item * 2, Ordering::Release);
            if joinable {
                rx.task_done()?;
            }
        }
        return Ok(());
    }
    let ring = Ring::<u64>::create_anonymous(4)?;
    let results = SharedArray::<u64>::create_anonymous(10)?;
    let consumers = Spawn::new("consumer")
        .count(CONSUMERS)
        .exe_args(std::env::args_os().skip(1)) // --joinable, if given
        .share(&ring, "QUEUE")
        .share(&results, "RESULTS")
        .start()?;
    let mut tx = ring.producer()?;
    for item in 1..=9 {
        tx.push(item)?; // waits while the 4 slots are full
    }
    if joinable {
        tx.join()?; // every item done: results are complete now
        println!("joined: all 9 items done");
    }
    drop(tx); // close: consumers drain what is left, then exit
    consumers.join_all()?;
    let got: Vec<u64> = results.values().skip(1).collect();
    println!("results: {got:?}");
    if got != (1..=9).map(|i| i * 2).collect::<Vec<_>>() {
        return Err("wrong results".into());
    }
    Ok(())
}

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

use std::process::{Command, ExitCode};

use shmkit::ring::Ring;
use shmkit::{Ordering, SharedArray};

const CONSUMERS: usize = 3;

fn consumer(joinable: bool) -> Result<(), Box<dyn std::error::Error>> {
    let ring = Ring::<u64>::open_inherited("QUEUE_FD")?;
    let results = SharedArray::<u64>::open_inherited("RESULTS_FD")?;
    let rx = ring.consumer()?;
    // Until the producer closes the ring and it is drained.
    for item in &rx {
        let slot = results.get(item as usize).ok_or("item out of range")?;
        slot.store(item * 2, Ordering::Release);
        if joinable {
            rx.task_done()?;
        }
    }
    Ok(())
}

fn producer(joinable: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let ring = Ring::<u64>::create_anonymous(4)?;
    let results = SharedArray::<u64>::create_anonymous(10)?;
    let exe = std::env::current_exe()?;
    let mut kids = Vec::new();
    for _ in 0..CONSUMERS {
        let mut cmd = Command::new(&exe);
        cmd.arg("--consumer");
        if joinable {
            cmd.arg("--joinable");
        }
        ring.share_with(&mut cmd, "QUEUE_FD");
        results.share_with(&mut cmd, "RESULTS_FD");
        kids.push(cmd.spawn()?);
    }
    let mut tx = ring.producer()?;
    for item in 1..=9 {
        tx.push(item)?; // waits while the 4 slots are full
    }
    if joinable {
        tx.join()?; // every item done: results are complete now
        println!("joined: all 9 items done");
    }
    drop(tx); // close: consumers drain what is left, then exit
    let mut ok = true;
    for mut k in kids {
        ok &= k.wait()?.success();
    }
    let got: Vec<u64> = results.values().skip(1).collect();
    println!("results: {got:?}");
    Ok(ok && got == (1..=9).map(|i| i * 2).collect::<Vec<_>>())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let joinable = args.iter().any(|a| a == "--joinable");
    if args.iter().any(|a| a == "--consumer") {
        return match consumer(joinable) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("consumer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match producer(joinable) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("wrong results");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

//! The classic shared counter: N worker processes each add 1 to one shared
//! value M times. With a lock-free `fetch_add` the result is exact, with no
//! lock.
//!
//! ```text
//! cargo run --release --example counter -- --procs 4 --iters 50000
//! final: 200000
//! ```
//! Exits non-zero unless the final value is exactly procs * iters.

use std::time::Instant;

use shmkit::worker::{self, Spawn};
use shmkit::{Ordering, SharedValue};

fn arg(args: &[String], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| {
            format!("usage: counter [--procs N] [--iters M]: {flag} needs a whole number")
        }),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        // A worker: open the parent's counter by name and add to it.
        let counter = SharedValue::<u64>::open(w.args()[0].as_str())?;
        for _ in 0..w.arg::<u64>(1)? {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(());
    }
    let args: Vec<String> = std::env::args().collect();
    let (procs, iters) = (arg(&args, "--procs", 4)?, arg(&args, "--iters", 50_000)?);
    let name = format!("shmkit-example-counter-{}", std::process::id());
    // The creator's handle removes the name when it goes out of scope.
    let counter = SharedValue::<u64>::create(&name, 0)?;
    let start = Instant::now();
    Spawn::new("add")
        .count(procs as usize)
        .args([name.as_str(), &iters.to_string()])
        .start()?
        .join_all()?;
    let total = counter.load(Ordering::SeqCst);
    println!("final: {total}");
    eprintln!(
        "{procs} processes x {iters} fetch_add in {:.1} ms (process start included)",
        start.elapsed().as_secs_f64() * 1e3
    );
    if total != procs * iters {
        return Err(format!("expected {}", procs * iters).into());
    }
    Ok(())
}

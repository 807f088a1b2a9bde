//! The numpy-on-SharedMemory case: 4 worker processes square disjoint ranges
//! of a 10,000,000-element shared `f64` array in place, with plain (not
//! atomic) arithmetic through the `unsafe` exclusive view; the parent checks
//! every element.
//!
//! `cargo run --release --example square_in_place [-- N]`

use std::time::Instant;

use shmkit::SharedArray;
use shmkit::worker::{self, Spawn};

const WORKERS: usize = 4;

fn range(len: usize, worker: usize) -> std::ops::Range<usize> {
    let chunk = len.div_ceil(WORKERS);
    (worker * chunk).min(len)..((worker + 1) * chunk).min(len)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let arr = SharedArray::<f64>::open_inherited("DATA")?;
        let r = range(arr.len(), w.index());
        // SAFETY: each worker touches only its own range, and the parent
        // does not read until every worker has exited.
        let all = unsafe { arr.as_mut_slice_unsync() };
        for x in &mut all[r] {
            *x *= *x;
        }
        return Ok(());
    }
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("usage: square_in_place [N]; got {a:?}"))?,
        None => 10_000_000,
    };
    let arr = SharedArray::<f64>::create_anonymous(n)?;
    {
        // SAFETY: no worker exists yet; this process is the only user.
        let init = unsafe { arr.as_mut_slice_unsync() };
        for (i, x) in init.iter_mut().enumerate() {
            *x = i as f64;
        }
    }
    let start = Instant::now();
    Spawn::new("square")
        .count(WORKERS)
        .share(&arr, "DATA")
        .start()?
        .join_all()?;
    let took = start.elapsed();
    // SAFETY: every worker has exited (joined above): no writer remains.
    let done = unsafe { arr.as_slice_unsync() };
    let wrong = done
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x != (i as f64) * (i as f64))
        .count();
    println!(
        "squared {n} elements in {WORKERS} processes in {:.1} ms; wrong: {wrong}",
        took.as_secs_f64() * 1e3
    );
    if wrong != 0 {
        return Err(format!("{wrong} elements wrong").into());
    }
    Ok(())
}

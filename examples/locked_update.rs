//! The classic lock example, three ways, 4 worker processes x 50,000
//! increments:
//!
//! 1. read-then-write *with* the array's lock (Python's `get_lock()`): exact;
//! 2. read-then-write *without* it: updates are lost, and we count them;
//! 3. lock-free `fetch_add`: exact, and no lock at all.
//!
//! `cargo run --release --example locked_update`

use std::time::Instant;

use shmkit::worker::{self, Spawn, Worker};
use shmkit::{Ordering, SharedArray};

const PROCS: usize = 4;
const ITERS: u64 = 50_000;

fn child(w: &Worker) -> Result<(), Box<dyn std::error::Error>> {
    let arr = SharedArray::<u64>::open_inherited("COUNTER")?;
    // Start together (cells 1 and 2 are a barrier), so the processes overlap.
    arr[1].fetch_add(1, Ordering::AcqRel);
    while arr[2].load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    for _ in 0..ITERS {
        match w.role() {
            "locked" => {
                let g = arr.lock().map_err(shmkit::LockError::into_unguarded)?;
                let v = g[0].load(Ordering::Relaxed);
                g[0].store(v + 1, Ordering::Relaxed);
            }
            "unlocked" => {
                // The bug the lock exists for: another process can write
                // between this load and this store.
                let v = arr[0].load(Ordering::Relaxed);
                arr[0].store(v + 1, Ordering::Relaxed);
            }
            _ => {
                arr[0].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn run(mode: &str) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    // Cell 0: the counter; cells 1 and 2: a start barrier.
    let arr = SharedArray::<u64>::create_anonymous(3)?;
    let start = Instant::now();
    let pool = Spawn::new(mode)
        .count(PROCS)
        .share(&arr, "COUNTER")
        .start()?;
    while arr[1].load(Ordering::Acquire) < PROCS as u64 {
        std::thread::yield_now();
    }
    arr[2].store(1, Ordering::Release);
    pool.join_all()?;
    Ok((arr[0].load(Ordering::SeqCst), start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        return child(&w);
    }
    let want = PROCS as u64 * ITERS;
    let mut ok = true;
    for (mode, what) in [
        ("locked", "read-then-write under the lock"),
        ("unlocked", "read-then-write without a lock"),
        ("fetch_add", "lock-free fetch_add"),
    ] {
        let (got, secs) = run(mode)?;
        let lost = want - got.min(want);
        println!(
            "{what:<32} final {got:>7} of {want}  lost {lost:>6}  ({:.1} ms)",
            secs * 1e3
        );
        ok &= mode == "unlocked" || got == want;
    }
    if !ok {
        return Err("a locked or lock-free count was not exact".into());
    }
    Ok(())
}

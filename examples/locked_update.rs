//! The classic lock example, three ways, 4 processes x 50,000 increments:
//!
//! 1. read-then-write *with* the array's lock (Python's `get_lock()`): exact;
//! 2. read-then-write *without* it: updates are lost, and we count them;
//! 3. lock-free `fetch_add`: exact, and no lock at all.
//!
//! `cargo run --release --example locked_update`

use std::process::{Command, ExitCode};
use std::time::Instant;

use shmkit::{Ordering, SharedArray};

const PROCS: usize = 4;
const ITERS: u64 = 50_000;

fn child(mode: &str) -> Result<(), Box<dyn std::error::Error>> {
    let arr = SharedArray::<u64>::open_inherited("COUNTER_FD")?;
    // Start together (cells 1 and 2 are a barrier), so the processes overlap.
    arr[1].fetch_add(1, Ordering::AcqRel);
    while arr[2].load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    for _ in 0..ITERS {
        match mode {
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
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut kids = Vec::new();
    for _ in 0..PROCS {
        let mut cmd = Command::new(&exe);
        cmd.args(["--child", mode]);
        arr.share_with(&mut cmd, "COUNTER_FD");
        kids.push(cmd.spawn()?);
    }
    while arr[1].load(Ordering::Acquire) < PROCS as u64 {
        std::thread::yield_now();
    }
    arr[2].store(1, Ordering::Release);
    for mut k in kids {
        if !k.wait()?.success() {
            return Err("a child failed".into());
        }
    }
    Ok((arr[0].load(Ordering::SeqCst), start.elapsed().as_secs_f64()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return match child(args.get(2).map_or("", String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let want = PROCS as u64 * ITERS;
    let mut ok = true;
    for (mode, what) in [
        ("locked", "read-then-write under the lock"),
        ("unlocked", "read-then-write without a lock"),
        ("fetch_add", "lock-free fetch_add"),
    ] {
        match run(mode) {
            Ok((got, secs)) => {
                let lost = want - got.min(want);
                println!(
                    "{what:<32} final {got:>7} of {want}  lost {lost:>6}  ({:.1} ms)",
                    secs * 1e3
                );
                if mode != "unlocked" && got != want {
                    ok = false;
                }
            }
            Err(e) => {
                eprintln!("{mode}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

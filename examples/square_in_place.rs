//! The numpy-on-SharedMemory case: 4 worker processes square disjoint ranges
//! of a 10,000,000-element shared `f64` array in place, with plain (not
//! atomic) arithmetic through the `unsafe` exclusive view; the parent checks
//! every element.
//!
//! `cargo run --release --example square_in_place [-- N]`

use std::process::{Command, ExitCode};
use std::time::Instant;

use shmkit::SharedArray;

const WORKERS: usize = 4;

fn range(len: usize, worker: usize) -> std::ops::Range<usize> {
    let chunk = len.div_ceil(WORKERS);
    (worker * chunk).min(len)..((worker + 1) * chunk).min(len)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let worker: usize = args[2].parse().unwrap_or(usize::MAX);
        let arr = match SharedArray::<f64>::open_inherited("DATA_FD") {
            Ok(a) => a,
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        let r = range(arr.len(), worker);
        // SAFETY: each worker touches only its own range, and the parent
        // does not read until every worker has exited.
        let all = unsafe { arr.as_mut_slice_unsync() };
        for x in &mut all[r] {
            *x *= *x;
        }
        return ExitCode::SUCCESS;
    }
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let run = || -> Result<bool, Box<dyn std::error::Error>> {
        let arr = SharedArray::<f64>::create_anonymous(n)?;
        {
            // SAFETY: no child exists yet; this process is the only user.
            let init = unsafe { arr.as_mut_slice_unsync() };
            for (i, x) in init.iter_mut().enumerate() {
                *x = i as f64;
            }
        }
        let exe = std::env::current_exe()?;
        let start = Instant::now();
        let mut kids = Vec::new();
        for w in 0..WORKERS {
            let mut cmd = Command::new(&exe);
            cmd.args(["--child", &w.to_string()]);
            arr.share_with(&mut cmd, "DATA_FD");
            kids.push(cmd.spawn()?);
        }
        let mut ok = true;
        for mut k in kids {
            ok &= k.wait()?.success();
        }
        let took = start.elapsed();
        // SAFETY: every worker has exited (waited above): no writer remains.
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
        Ok(ok && wrong == 0)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

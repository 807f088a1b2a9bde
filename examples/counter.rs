//! The classic shared counter: N processes each add 1 to one shared value M
//! times. With a lock-free `fetch_add` the result is exact, with no lock.
//!
//! ```text
//! cargo run --release --example counter -- --procs 4 --iters 50000
//! final: 200000
//! ```
//! Exits non-zero unless the final value is exactly procs * iters.

use std::process::{Command, ExitCode};
use std::time::Instant;

use shmkit::{Ordering, SharedValue};

fn arg(args: &[String], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a whole number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        // Child: open the parent's counter by name and add to it.
        let (name, iters) = (&args[2], args[3].parse::<u64>().unwrap_or(0));
        let counter = match SharedValue::<u64>::open(name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("child: {e}");
                return ExitCode::FAILURE;
            }
        };
        for _ in 0..iters {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        return ExitCode::SUCCESS;
    }
    let (procs, iters) = match (arg(&args, "--procs", 4), arg(&args, "--iters", 50_000)) {
        (Ok(p), Ok(i)) => (p, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("usage: counter [--procs N] [--iters M]: {e}");
            return ExitCode::from(2);
        }
    };
    let name = format!("shmkit-example-counter-{}", std::process::id());
    // The creator's handle removes the name when it goes out of scope.
    let counter = match SharedValue::<u64>::create(&name, 0) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = std::env::current_exe().expect("own path");
    let start = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .args(["--child", &name, &iters.to_string()])
                .spawn()
        })
        .collect();
    let mut ok = true;
    for child in children {
        ok &= child.and_then(|mut c| c.wait()).is_ok_and(|s| s.success());
    }
    let total = counter.load(Ordering::SeqCst);
    println!("final: {total}");
    eprintln!(
        "{procs} processes x {iters} fetch_add in {:.1} ms (process start included)",
        start.elapsed().as_secs_f64() * 1e3
    );
    if ok && total == procs * iters {
        ExitCode::SUCCESS
    } else {
        eprintln!("expected {}", procs * iters);
        ExitCode::FAILURE
    }
}

//! Python's `Array` example without the lock: two processes each increment
//! every element of a shared `i32` array 50 times (all end at 100), and add
//! to a shared `f64` array per element.
//!
//! `cargo run --example array`

use std::process::{Command, ExitCode};

use shmkit::{Ordering, SharedArray};

const LOOPS: i32 = 50;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        // Inherited anonymous segments: no names to clean up.
        let (ints, floats) = match (
            SharedArray::<i32>::open_inherited("INTS_FD"),
            SharedArray::<f64>::open_inherited("FLOATS_FD"),
        ) {
            (Ok(i), Ok(f)) => (i, f),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("child: {e}");
                return ExitCode::FAILURE;
            }
        };
        for _ in 0..LOOPS {
            for cell in ints.iter() {
                cell.fetch_add(1, Ordering::Relaxed);
            }
            for cell in floats.iter() {
                cell.fetch_add(0.5, Ordering::Relaxed);
            }
        }
        return ExitCode::SUCCESS;
    }

    let run = || -> Result<bool, Box<dyn std::error::Error>> {
        let ints = SharedArray::<i32>::create_anonymous(5)?;
        let floats = SharedArray::<f64>::create_anonymous(3)?;
        floats.copy_from_slice(&[1.5, 2.5, 3.5])?;
        let exe = std::env::current_exe()?;
        let mut kids = Vec::new();
        for _ in 0..2 {
            let mut cmd = Command::new(&exe);
            cmd.arg("--child");
            ints.share_with(&mut cmd, "INTS_FD");
            floats.share_with(&mut cmd, "FLOATS_FD");
            kids.push(cmd.spawn()?);
        }
        let mut ok = true;
        for mut k in kids {
            ok &= k.wait()?.success();
        }
        let (i, f) = (ints.to_vec(), floats.to_vec());
        println!("ints:   {i:?}");
        println!("floats: {f:?}");
        Ok(ok && i == [100; 5] && f == [51.5, 52.5, 53.5])
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("wrong result");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

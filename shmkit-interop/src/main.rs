//! A second program for shmkit's type-identity test
//! (`tests/two_programs.rs`): built as its own binary, with its records
//! declared in its own modules, it opens a ring the test created and says
//! on stdout what it found.
//!
//! `shmkit-interop-peer same NAME`: open `NAME` as a ring of this
//! program's `acme.Tick/1` (the same layout as the test's), take one tick
//! and print it; exit 0.
//! `shmkit-interop-peer reordered NAME`: open it as a record with the same
//! name and two fields swapped; print the error and exit 3 (exit 0 would
//! mean the open wrongly succeeded).

use std::process::ExitCode;
use std::time::Duration;

/// The feed's records as this program declares them.
mod feed {
    shmkit::record! {
        /// One trade: the same definition as the test's, in another crate
        /// and module.
        #[name = "acme.Tick/1"]
        pub struct Tick { pub px: f64, pub qty: u32, pub side: u8, pub _pad: [u8; 3] }
    }
}

/// An out-of-date copy of the record: `side` and `qty` swapped, name kept.
mod stale {
    shmkit::record! {
        #[name = "acme.Tick/1"]
        pub struct Tick { pub px: f64, pub side: u8, pub _pad: [u8; 3], pub qty: u32 }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(name)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: shmkit-interop-peer same|reordered NAME");
        return ExitCode::from(2);
    };
    match mode.as_str() {
        "same" => {
            let got = shmkit::Ring::<feed::Tick>::open(name)
                .and_then(|r| r.consumer())
                .map_err(|e| e.to_string())
                .and_then(|rx| {
                    rx.pop_timeout(Duration::from_secs(10))
                        .map_err(|e| e.to_string())
                });
            match got {
                Ok(t) => {
                    println!("px={} qty={} side={}", t.px, t.qty, t.side);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        "reordered" => match shmkit::Ring::<stale::Tick>::open(name) {
            Ok(_) => {
                println!("opened a ring of another layout");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e}");
                ExitCode::from(3)
            }
        },
        _ => {
            eprintln!("unknown mode {mode}");
            ExitCode::from(2)
        }
    }
}

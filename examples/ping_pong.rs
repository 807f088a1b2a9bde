//! Python's classic `Pipe()` request/response: the parent sends 5 numbers,
//! the child squares each and replies; closing the parent's end tells the
//! child to stop.
//!
//! `cargo run --example ping_pong`

use std::process::{Command, ExitCode};

use shmkit::pipe::Pipe;
use shmkit::ring::PopError;

fn child() -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = Pipe::open_inherited("PIPE")?.end_b()?;
    loop {
        match conn.recv::<i64>() {
            Ok(n) => conn.send(&(n * n))?,
            Err(PopError::Disconnected) => return Ok(()), // parent closed
            Err(e) => return Err(e.into()),
        }
    }
}

fn parent() -> Result<bool, Box<dyn std::error::Error>> {
    let pipe = Pipe::create_anonymous(64)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--child");
    pipe.share_with(&mut cmd, "PIPE");
    let mut kid = cmd.spawn()?;
    let mut conn = pipe.end_a()?;
    let mut ok = true;
    for n in 1..=5i64 {
        conn.send(&n)?;
        let sq: i64 = conn.recv()?;
        println!("{n} -> {sq}");
        ok &= sq == n * n;
    }
    conn.close(); // the child's recv now returns Disconnected
    ok &= kid.wait()?.success();
    Ok(ok)
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        return match child() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match parent() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

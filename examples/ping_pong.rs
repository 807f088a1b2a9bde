//! Python's classic `Pipe()` request/response: the parent sends 5 numbers,
//! a worker process squares each and replies; closing the parent's end tells
//! the worker to stop (where Python sends a `None` sentinel).
//!
//! `cargo run --example ping_pong`

use shmkit::pipe::Pipe;
use shmkit::ring::PopError;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if worker::current()?.is_some() {
        let mut conn = Pipe::open_inherited("PIPE")?.end_b()?;
        loop {
            match conn.recv::<i64>() {
                Ok(n) => conn.send(&(n * n))?,
                Err(PopError::Disconnected) => return Ok(()), // parent closed
                Err(e) => return Err(e.into()),
            }
        }
    }
    let pipe = Pipe::create_anonymous(64)?;
    let pool = Spawn::new("square").share(&pipe, "PIPE").start()?;
    let mut conn = pipe.end_a()?;
    for n in [3i64, 7, 11, 15, 20] {
        conn.send(&n)?;
        let sq: i64 = conn.recv()?;
        println!("{n}^2 = {sq}");
    }
    conn.close(); // the worker's recv now returns Disconnected
    pool.join_all()?;
    Ok(())
}

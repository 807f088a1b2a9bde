//! Port of a one-way `Pipe` between two processes: the sender sends a string
//! and a list of numbers, then closes; the receiver prints both.
use shmkit::pipe::Pipe;
use shmkit::worker::{self, Pool, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let pipe = Pipe::open_inherited("PIPE")?;
        if w.role() == "sender" {
            let mut conn = pipe.end_a()?;
            conn.send_bytes("Hello from sender!".as_bytes())?; // text: as bytes
            conn.send(&[1i64, 2, 3])?; // any Pod value: here an array
            conn.close();
        } else {
            let mut conn = pipe.end_b()?;
            let msg1 = String::from_utf8(conn.recv_bytes()?)?;
            let msg2: [i64; 3] = conn.recv()?;
            println!("Received: {msg1}");
            println!("Received: {msg2:?}");
        }
        return Ok(());
    }
    let pipe = Pipe::create_anonymous(16)?;
    let mut pool = Pool::new();
    pool.spawn(&Spawn::new("sender").share(&pipe, "PIPE"))?;
    pool.spawn(&Spawn::new("receiver").share(&pipe, "PIPE"))?;
    pool.join_all()?;
    Ok(())
}

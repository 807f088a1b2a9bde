//! Port of a two-way `Pipe`: the main process and a worker take turns, three
//! messages each way.
use shmkit::pipe::Pipe;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if worker::current()?.is_some() {
        let (mut conn, name) = (Pipe::open_inherited("PIPE")?.end_b()?, "Worker");
        for i in 0..3 {
            let msg = String::from_utf8(conn.recv_bytes()?)?;
            println!("{name} received: {msg}");
            conn.send_bytes(format!("{name} reply {i}").as_bytes())?;
        }
        return Ok(());
    }
    let pipe = Pipe::create_anonymous(16)?;
    let p = Spawn::new("ping_pong").share(&pipe, "PIPE").start()?;
    let mut conn1 = pipe.end_a()?;
    for i in 0..3 {
        conn1.send_bytes(format!("Main message {i}").as_bytes())?;
        let reply = String::from_utf8(conn1.recv_bytes()?)?;
        println!("Main received: {reply}");
    }
    p.join_all()?;
    Ok(())
}

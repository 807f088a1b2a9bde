//! Port of collecting results through a `Queue` that 5 processes put into.
//! The ring has one producer, so each worker gets its own (handed out per
//! index); the parent drains them all. (Coming: the multi-producer `Queue`.)
use shmkit::ring::Ring;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let task_id = w.index() as u64;
        let mut q = Ring::<[u64; 2]>::open_inherited("RESULTS")?.producer()?;
        q.push([task_id, task_id.pow(2)])?;
        return Ok(());
    }
    let queues = (0..5)
        .map(|_| Ring::<[u64; 2]>::create_anonymous(1))
        .collect::<Result<Vec<_>, _>>()?;
    let workers = Spawn::new("worker").count(5);
    workers
        .configure(|cmd, i| queues[i].share_with(cmd, "RESULTS"))
        .start()?
        .join_all()?;
    let mut results = std::collections::BTreeMap::new();
    for q in &queues {
        for [task_id, result] in &q.consumer()? {
            results.insert(task_id, result);
        }
    }
    println!("{results:?}");
    Ok(())
}

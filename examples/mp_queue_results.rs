//! Port of collecting results through a `Queue` that 5 processes put into:
//! one multi-producer `Queue`, each worker a producer (its own lane); the
//! parent is the one consumer and drains it once the workers are done.
use shmkit::queue::{Queue, QueueOptions};
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let task_id = w.index() as u64;
        let mut q = Queue::<[u64; 2]>::open_inherited("RESULTS")?.producer()?;
        q.push([task_id, task_id.pow(2)])?;
        return Ok(());
    }
    // One slot per producer, up to 5 producers and 1 consumer at once.
    let q = Queue::<[u64; 2]>::create_anonymous(QueueOptions::new(1, 5, 1))?;
    Spawn::new("worker")
        .count(5)
        .share(&q, "RESULTS")
        .start()?
        .join_all()?;
    q.close(); // everything is in: the consumer drains, then stops
    let rx = q.consumer()?;
    let results: std::collections::BTreeMap<u64, u64> = rx
        .iter()
        .map(|[task_id, result]| (task_id, result))
        .collect();
    println!("{results:?}");
    Ok(())
}

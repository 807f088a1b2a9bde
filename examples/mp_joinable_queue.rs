//! Port of a `JoinableQueue` with one producer process and 3 consumers that
//! double each item into a shared array and call `task_done()`; the queue's
//! `join()` returns once all 9 are done. The producer closing the queue ends
//! the consumers (no `queue.Empty` time-out guessing).
use shmkit::ring::Ring;
use shmkit::worker::{self, Pool, Spawn};
use shmkit::{Ordering::Relaxed, SharedArray};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let queue = Ring::<i32>::open_inherited("QUEUE")?;
        if w.role() == "producer" {
            let mut tx = queue.producer()?;
            for item in 1..=9 {
                tx.push(item)?;
            }
            tx.join()?; // JoinableQueue.join(): every item task_done
            println!("all 9 items processed");
            return Ok(()); // dropping tx closes the queue
        }
        let (rx, shared_array) = (
            queue.consumer()?,
            SharedArray::<i32>::open_inherited("OUT")?,
        );
        for item in &rx {
            shared_array[item as usize - 1].store(item * 2, Relaxed); // simulate processing
            rx.task_done()?;
        }
        return Ok(());
    }
    let queue = Ring::<i32>::create_anonymous(16)?;
    let shared_array = SharedArray::<i32>::create_anonymous(9)?;
    let spawn = |role| {
        Spawn::new(role)
            .share(&queue, "QUEUE")
            .share(&shared_array, "OUT")
    };
    let mut pool = Pool::new();
    pool.spawn(&spawn("producer"))?;
    pool.spawn(&spawn("consumer").count(3))?;
    pool.join_all()?;
    println!(
        "Processed Data in Shared Array: {:?}",
        shared_array.to_vec()
    );
    Ok(())
}

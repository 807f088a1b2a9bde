//! Port of a `Queue` between a producer process and a consumer process.
//! No sentinel: the producer's end closing (its drop) ends the consumer's
//! loop once everything was taken.
use shmkit::ring::Ring;
use shmkit::worker::{self, Pool, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let q = Ring::<i64>::open_inherited("QUEUE")?;
        if w.role() == "producer" {
            let mut tx = q.producer()?;
            for item in 1..=5 {
                tx.push(item)?;
                println!("Produced: {item}");
            }
        } else {
            for item in &q.consumer()? {
                println!("Consumed: {item}");
            }
        }
        return Ok(());
    }
    let q = Ring::<i64>::create_anonymous(16)?;
    let mut pool = Pool::new();
    pool.spawn(&Spawn::new("producer").share(&q, "QUEUE"))?;
    pool.spawn(&Spawn::new("consumer").share(&q, "QUEUE"))?;
    pool.join_all()?;
    Ok(())
}

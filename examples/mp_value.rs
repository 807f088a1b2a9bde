//! Port of `Value` + `Lock`: 4 processes add 1 to a shared int 50,000 times
//! each, with a lock (exact), without one (updates lost), and lock-free.
use shmkit::worker::{self, Spawn};
use shmkit::{LockError, Ordering::Relaxed, SharedValue, ShmLock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let counter = SharedValue::<i32>::open_inherited("COUNTER")?;
        let lock = ShmLock::open_inherited("LOCK")?;
        for _ in 0..50_000 {
            match w.role() {
                "fetch_add" => drop(counter.fetch_add(1, Relaxed)), // atomic: no lock needed
                "with_lock" => {
                    let _held = lock.lock().map_err(LockError::into_unguarded)?;
                    counter.store(counter.load(Relaxed) + 1, Relaxed);
                }
                _ => counter.store(counter.load(Relaxed) + 1, Relaxed), // races
            }
        }
        return Ok(());
    }
    for role in ["with_lock", "no_lock", "fetch_add"] {
        let (counter, lock) = (
            SharedValue::<i32>::create_anonymous(0)?,
            ShmLock::create_anonymous()?,
        );
        let spawn = Spawn::new(role).count(4).share(&counter, "COUNTER");
        spawn.share(&lock, "LOCK").start()?.join_all()?;
        println!("{role}: {} (expected 200000)", counter.load(Relaxed));
    }
    Ok(())
}

//! Port of `Value`, `Array` and one `Lock` shared by both: 2 processes add 1
//! to a counter 100,000 times each under the lock, then one process squares
//! an array under it.
use shmkit::worker::{self, Spawn};
use shmkit::{LockError, Ordering::Relaxed, SharedArray, SharedValue, ShmLock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let lock = ShmLock::open_inherited("LOCK")?;
        if w.role() == "increment" {
            let counter = SharedValue::<i32>::open_inherited("COUNTER")?;
            for _ in 0..100_000 {
                let _held = lock.lock().map_err(LockError::into_unguarded)?;
                counter.store(counter.load(Relaxed) + 1, Relaxed);
            }
        } else {
            let arr = SharedArray::<f64>::open_inherited("ARRAY")?;
            let _held = lock.lock().map_err(LockError::into_unguarded)?; // the whole loop is one step
            for x in arr.iter() {
                x.store(x.load(Relaxed) * x.load(Relaxed), Relaxed);
            }
        }
        return Ok(());
    }
    let counter = SharedValue::<i32>::create_anonymous(0)?;
    let array = SharedArray::<f64>::create_anonymous(4)?;
    array.copy_from_slice(&[1.0, 2.0, 3.0, 4.0])?;
    let lock = ShmLock::create_anonymous()?;
    let spawn = |role| {
        Spawn::new(role)
            .share(&counter, "COUNTER")
            .share(&array, "ARRAY")
            .share(&lock, "LOCK")
    };
    spawn("increment").count(2).start()?.join_all()?;
    println!("Final counter value: {}", counter.load(Relaxed));
    spawn("square").start()?.join_all()?;
    println!("Squared array: {:?}", array.to_vec());
    Ok(())
}

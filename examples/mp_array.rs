//! Port of `Array` with `get_lock()`: 2 processes, 50 rounds each, add 1 to
//! every element of a shared 5-int array, each `+= 1` under the array's own
//! lock; then the same lock-free with `fetch_add`.
use shmkit::worker::{self, Spawn};
use shmkit::{LockError, Ordering::Relaxed, SharedArray};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let pid = std::process::id();
        println!("[Process-{pid}] Started");
        let arr = SharedArray::<i32>::open_inherited("ARR")?;
        for _ in 0..w.arg::<u32>(0)? {
            for i in 0..arr.len() {
                if w.role() == "get_lock" {
                    let guard = arr.lock().map_err(LockError::into_unguarded)?; // get_lock()
                    guard[i].store(guard[i].load(Relaxed) + 1, Relaxed);
                } else {
                    arr[i].fetch_add(1, Relaxed); // one atomic instruction, no lock
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1)); // "some work"
        }
        println!("[Process-{pid}] Finished");
        return Ok(());
    }
    let (process_count, loops) = (2, 50);
    for role in ["get_lock", "fetch_add"] {
        let shared_arr = SharedArray::<i32>::create_anonymous(5)?;
        println!("Initial State: {:?}", shared_arr.to_vec());
        let spawn = Spawn::new(role).count(process_count).arg(loops);
        spawn.share(&shared_arr, "ARR").start()?.join_all()?;
        println!("--- All processes completed ({role}) ---");
        println!("Final Result: {:?}", shared_arr.to_vec());
        if shared_arr.to_vec() == vec![process_count as i32 * loops; 5] {
            println!(">> Success: All elements were updated correctly.");
        } else {
            println!(">> Failure: Data inconsistency occurred.");
        }
    }
    Ok(())
}

//! Port of a "structured" `Array('d', 2 * n)`: worker i writes the record
//! (data[i].0 + 1, data[i].1 * 2) as two doubles, under the array's lock.
//! (Coming: `SharedArray` of `#[repr(C)]` records, one element per record.)
use shmkit::worker::{self, Spawn};
use shmkit::{LockError, SharedArray};

const DATA: [(f64, f64); 5] = [(1.0, 2.5), (3.0, 4.2), (5.0, 1.1), (7.0, 9.8), (2.0, 6.7)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let (arr, i) = (SharedArray::<f64>::open_inherited("ARR")?, w.index());
        let guard = arr.lock().map_err(LockError::into_unguarded)?;
        guard.update(|v| [v[2 * i], v[2 * i + 1]] = [DATA[i].0 + 1.0, DATA[i].1 * 2.0]);
        return Ok(());
    }
    let shared_array = SharedArray::<f64>::create_anonymous(DATA.len() * 2)?;
    let pool = Spawn::new("worker")
        .count(DATA.len())
        .share(&shared_array, "ARR");
    pool.start()?.join_all()?;
    println!("Shared array after processing:");
    for pair in shared_array.to_vec().chunks(2) {
        println!("{pair:?}");
    }
    Ok(())
}

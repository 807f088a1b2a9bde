//! Port of `Array(..., lock=False)` with each process writing its own index
//! range: no lock, no atomic read-modify-write, no race.
use shmkit::worker::{self, Spawn};
use shmkit::{Ordering::Relaxed, SharedArray};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let arr = SharedArray::<i32>::open_inherited("ARR")?;
        let (start, end, value): (usize, usize, i32) = (w.arg(0)?, w.arg(1)?, w.arg(2)?);
        for i in start..end {
            arr[i].store(value, Relaxed); // a plain store (Relaxed: lock=False)
        }
        return Ok(());
    }
    let arr = SharedArray::<i32>::create_anonymous(10)?;
    let p1 = Spawn::new("compute_part")
        .args([0, 5, 100])
        .share(&arr, "ARR")
        .start()?;
    let p2 = Spawn::new("compute_part")
        .args([5, 10, 200])
        .share(&arr, "ARR")
        .start()?;
    p1.join_all()?;
    p2.join_all()?;
    println!("{:?}", arr.to_vec());
    Ok(())
}

//! Port of `SharedMemory` holding a NumPy array that 4 processes square in
//! place, each its own slice of 1,000,000 doubles.
use shmkit::SharedArray;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let shm = SharedArray::<f64>::open(&w.args()[0])?;
        let (size, i, num_workers) = (shm.len(), w.index(), w.count());
        let chunk_size = size / num_workers;
        let start = i * chunk_size;
        let end = if i < num_workers - 1 {
            start + chunk_size
        } else {
            size
        };
        // SAFETY: the slices are disjoint, and the parent reads only after
        // every worker has exited.
        let arr = unsafe { shm.as_mut_slice_unsync() };
        arr[start..end].iter_mut().for_each(|x| *x = *x * *x);
        return Ok(());
    }
    let size = 1_000_000;
    let name = format!("shmkit-example-numpy-{}", std::process::id());
    let shm =
        SharedArray::<f64>::create_from(&name, &(0..size).map(f64::from).collect::<Vec<_>>())?;
    Spawn::new("compute_in_place")
        .count(4)
        .arg(&name)
        .start()?
        .join_all()?;
    // SAFETY: every worker has exited: no writer is left.
    let shared_arr = unsafe { shm.as_slice_unsync() };
    println!("First 10: {:?}", &shared_arr[..10]);
    println!("Last: {:?}", shared_arr[size as usize - 1]);
    Ok(())
}

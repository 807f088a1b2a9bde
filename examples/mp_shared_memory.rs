//! Port of `shared_memory.SharedMemory` with a NumPy view: the parent puts
//! [1, 2, 3, 4, 5] in a named segment, a worker opens it by name and doubles
//! it in place. (`square_in_place.rs` ports the chunked 4-worker version.)
use shmkit::SharedArray;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let existing = SharedArray::<f64>::open(&w.args()[0])?; // attach by name
        // SAFETY: the parent does not touch the array until this worker exits.
        let array = unsafe { existing.as_mut_slice_unsync() };
        array.iter_mut().for_each(|x| *x *= 2.0);
        return Ok(()); // the handle closes ("shm.close()") when dropped
    }
    let name = format!("shmkit-example-shm-{}", std::process::id());
    let shm = SharedArray::<f64>::create_from(&name, &[1.0, 2.0, 3.0, 4.0, 5.0])?;
    println!("Before: {:?}", shm.to_vec());
    Spawn::new("worker").arg(&name).start()?.join_all()?;
    println!("After: {:?}", shm.to_vec());
    Ok(()) // dropping the creator's handle unlinks the name ("shm.unlink()")
}

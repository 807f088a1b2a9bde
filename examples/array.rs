//! Python's `Array` example without the lock: two worker processes each
//! increment every element of a shared `i32` array 50 times (all end at 100),
//! and add to a shared `f64` array per element.
//!
//! `cargo run --example array`

use shmkit::worker::{self, Spawn};
use shmkit::{Ordering, SharedArray};

const LOOPS: i32 = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if worker::current()?.is_some() {
        // Inherited anonymous segments: no names to clean up.
        let ints = SharedArray::<i32>::open_inherited("INTS")?;
        let floats = SharedArray::<f64>::open_inherited("FLOATS")?;
        for _ in 0..LOOPS {
            for cell in ints.iter() {
                cell.fetch_add(1, Ordering::Relaxed);
            }
            for cell in floats.iter() {
                cell.fetch_add(0.5, Ordering::Relaxed);
            }
        }
        return Ok(());
    }
    let ints = SharedArray::<i32>::create_anonymous(5)?;
    let floats = SharedArray::<f64>::create_anonymous(3)?;
    floats.copy_from_slice(&[1.5, 2.5, 3.5])?;
    Spawn::new("add")
        .count(2)
        .share(&ints, "INTS")
        .share(&floats, "FLOATS")
        .start()?
        .join_all()?;
    let (i, f) = (ints.to_vec(), floats.to_vec());
    println!("ints:   {i:?}");
    println!("floats: {f:?}");
    if i != [100; 5] || f != [51.5, 52.5, 53.5] {
        return Err("wrong result".into());
    }
    Ok(())
}

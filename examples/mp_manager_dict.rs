//! Port of `Manager().dict()`: 5 processes each write 10 entries
//! `proc{p}_key{i} = i * p`; the map is in shared memory, with no manager
//! process and no lock.
use shmkit::map::{FixedStr, SharedMap};
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let d = SharedMap::<FixedStr<32>, i64>::open_inherited("DICT")?;
        let pid = w.index() as i64;
        for i in 0..10 {
            d.insert(FixedStr::new(&format!("proc{pid}_key{i}"))?, i * pid)?;
        }
        return Ok(());
    }
    let d = SharedMap::<FixedStr<32>, i64>::create_anonymous(128)?; // capacity: a power of two
    let procs = Spawn::new("writer").count(5);
    procs.share(&d, "DICT").start()?.join_all()?;
    let mut result = d.entries();
    result.sort_by_key(|(k, _)| k.as_string());
    println!("Total entries: {} (expected 50)", result.len());
    for (k, v) in &result[..5] {
        println!("  {}: {v}", k.as_string());
    }
    println!("  ...");
    Ok(())
}

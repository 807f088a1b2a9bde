//! Port of `Manager().list()`: 5 processes each append one value; the
//! append is atomic, with no manager process.
use shmkit::list::SharedList;
use shmkit::worker::{self, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(w) = worker::current()? {
        let shared_list = SharedList::<i64>::open_inherited("LIST")?;
        shared_list.push(w.index() as i64 * 10)?;
        return Ok(());
    }
    let shared_list = SharedList::<i64>::create_anonymous(16)?; // fixed capacity
    Spawn::new("worker")
        .count(5)
        .share(&shared_list, "LIST")
        .start()?
        .join_all()?;
    let mut got = shared_list.to_vec();
    println!("Final shared list: {got:?}"); // order varies, e.g. [0, 10, 20, 30, 40]
    got.sort();
    println!("Sorted: {got:?}");
    Ok(())
}

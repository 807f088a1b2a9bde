//! Port of `Manager().Namespace()` with `ns.x += 1; ns.items.append(ns.x)`
//! in 5 processes: `x` is a shared value (the `+= 1` one atomic fetch_add,
//! so no update is lost), `items` a shared list. (Coming: `SharedCell`, one
//! record of several fields read and written whole.)
use shmkit::list::SharedList;
use shmkit::worker::{self, Spawn};
use shmkit::{Ordering::SeqCst, SharedValue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if worker::current()?.is_some() {
        let x = SharedValue::<i64>::open_inherited("NS_X")?;
        let items = SharedList::<i64>::open_inherited("NS_ITEMS")?;
        let new_x = x.fetch_add(1, SeqCst) + 1; // the value this process made
        items.push(new_x)?;
        return Ok(());
    }
    let x = SharedValue::<i64>::create_anonymous(0)?;
    let items = SharedList::<i64>::create_anonymous(8)?;
    let procs = Spawn::new("worker").count(5).share(&x, "NS_X");
    procs.share(&items, "NS_ITEMS").start()?.join_all()?;
    println!("x = {}", x.load(SeqCst));
    let mut sorted = items.to_vec();
    sorted.sort();
    println!("items = {:?} (sorted: {sorted:?})", items.to_vec());
    Ok(())
}

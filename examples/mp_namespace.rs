//! Port of `Manager().Namespace()` with `ns.x += 1; ns.items.append(ns.x)`
//! in 5 processes. The namespace is one record in a `SharedCell`: readers
//! get it whole, and `update` is a read-modify-write under the writers'
//! lock, so no `+= 1` is lost and each item is the `x` its process made.
use shmkit::worker::{self, Spawn};
use shmkit::{SharedCell, Zeroable};

shmkit::record! {
    #[name = "example.Namespace/1"]
    struct Ns { x: i64, len: u64, items: [i64; 8] }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if worker::current()?.is_some() {
        let ns = SharedCell::<Ns>::open_inherited("NS")?;
        ns.update(|ns| {
            ns.x += 1;
            ns.items[ns.len as usize] = ns.x; // items.append(ns.x)
            ns.len += 1;
        })?;
        return Ok(());
    }
    let ns = SharedCell::create_anonymous(Ns::zeroed())?; // x = 0, items = []
    let workers = Spawn::new("worker").count(5).share(&ns, "NS");
    workers.start()?.join_all()?;
    let ns = ns.load()?; // one consistent snapshot of every field
    let items = &ns.items[..ns.len as usize];
    let mut sorted = items.to_vec();
    sorted.sort();
    println!("x = {}\nitems = {items:?} (sorted: {sorted:?})", ns.x);
    Ok(())
}

//! The `shmkit` command-line tool.

fn main() {
    println!("shmkit {}", env!("CARGO_PKG_VERSION"));
}

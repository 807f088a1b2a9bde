//! loom model of the header's publication (`src/header.rs`): an opener that
//! sees `ready` sees the whole header, and one sleeping on `ready` is woken.
#![cfg(shmkit_loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::header::{ElemDesc, Header, HeaderInfo, Kind};

fn info() -> HeaderInfo {
    HeaderInfo {
        kind_raw: Kind::Array as u32,
        elem: ElemDesc::of::<u32>(),
        len: 7,
        data_offset: 256,
        total_size: 384,
        creator: 12345,
        created_unix_ms: 99,
    }
}

/// An opener that checks once: if it sees `ready`, every field is the
/// creator's (weaken the Release in `publish` to Relaxed and this fails).
#[test]
fn ready_publishes_the_whole_header() {
    loom::model(|| {
        let h = Arc::new(Header::new_zeroed());
        let h2 = h.clone();
        let creator = thread::spawn(move || h2.publish(&info()));
        if h.is_ready() {
            assert_eq!(h.snapshot(), info());
            assert_eq!(h.magic(), shmkit::header::MAGIC);
        }
        creator.join().unwrap();
        assert!(h.is_ready());
    });
}

/// An opener that sleeps on `ready` until it is set is always woken: with
/// the futex model a lost wakeup is a deadlock, which loom reports.
#[test]
fn waiting_opener_is_woken() {
    loom::model(|| {
        let h = Arc::new(Header::new_zeroed());
        let h2 = h.clone();
        let creator = thread::spawn(move || h2.publish(&info()));
        while !h.is_ready() {
            h.wait_ready(std::time::Duration::from_secs(1));
        }
        assert_eq!(h.snapshot(), info());
        creator.join().unwrap();
    });
}

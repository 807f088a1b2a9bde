//! Shared memory is untrusted input: garbage written into each word of a
//! `SharedCell`'s segment (through the file, as another process would)
//! gives a record or a clear error from every operation, never a panic
//! (overflow checks are on in this build and in release-checked) and never
//! a hang (each case runs under a time limit).
//!
//! The offsets are the body layout of `src/snapshot.rs` (the lock, then the
//! control line: version, stamp 0, stamp 1, takeovers; then the buffers),
//! each checked against a value the cell reports before it is overwritten.
#![cfg(not(shmkit_loom))]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use common::Cleanup;
use shmkit::snapshot::CellError;
use shmkit::{Error, SharedCell};

/// Far above what any case needs: only a hang trips it.
const LIMIT: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_millis(50);

/// Run `f` on a thread and fail if it does not finish within [`LIMIT`]
/// (a hang) or if it panics.
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(r) => {
            worker.join().unwrap();
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("{what}: panicked");
        }
    }
}

// Byte offsets in the body.
const OWNER: u64 = 0; // the lock's owner word
const VERSION: u64 = 128;
const TAKEOVERS: u64 = 192;
// Buffer b of a `[u64; 3]` cell (8 buffers): 128 bytes at 256 + 128 b, its
// stamp first, then the record. The fixture publishes version 2, in
// buffer 2; buffer 1 holds version 1.
const fn stamp(b: u64) -> u64 {
    256 + 128 * b
}
const PUB_STAMP: u64 = stamp(2);
const PUB_BUF: u64 = stamp(2) + 8;
const OLD_STAMP: u64 = stamp(1);

struct Fixture {
    _c: Cleanup,
    name: String,
    file: File,
    body: u64,
}

impl Fixture {
    /// A cell of `[u64; 3]` stored twice (version 2, in buffer 2; version
    /// 1 in buffer 1).
    fn new(tag: &str) -> (Self, SharedCell<[u64; 3]>) {
        let c = Cleanup::new(tag);
        let mut cell = SharedCell::create(c.name(), [0u64; 3]).unwrap();
        cell.keep();
        cell.store(&[1, 1, 1]).unwrap();
        cell.store(&[2, 2, 2]).unwrap();
        let seg = cell.segment().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(std::path::Path::new(shmkit::segment::SHM_DIR).join(c.name()))
            .unwrap();
        let f = Fixture {
            name: c.name().to_owned(),
            _c: c,
            file,
            body: seg.info().data_offset,
        };
        assert_eq!(f.read(VERSION), 2);
        assert_eq!(f.read(PUB_STAMP), 2);
        assert_eq!(f.read(OLD_STAMP), 1);
        assert_eq!(f.read(stamp(0)), 0);
        assert_eq!(f.read(TAKEOVERS), 0);
        assert_eq!(f.read(PUB_BUF), 2);
        (f, cell)
    }

    fn read(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, self.body + off).unwrap();
        u64::from_ne_bytes(b)
    }

    fn write(&self, off: u64, v: u64) {
        self.file
            .write_all_at(&v.to_ne_bytes(), self.body + off)
            .unwrap();
    }

    /// Another handle, as another process would open it.
    fn open(&self) -> SharedCell<[u64; 3]> {
        SharedCell::open(&self.name).unwrap()
    }
}

fn corrupt_with(e: Error, words: &str) {
    let msg = e.to_string();
    assert!(matches!(e, Error::Corrupt { .. }), "{msg}");
    assert!(msg.contains(words), "{msg:?} does not say {words:?}");
    assert!(msg.contains("remove and recreate"), "{msg}");
}

#[test]
fn a_garbage_version_is_corrupt_everywhere() {
    for bad in [u64::MAX, 1 << 63, (1 << 63) | 2] {
        let (f, _cell) = Fixture::new("cellbadversion");
        f.write(VERSION, bad);
        let c = f.open();
        within("garbage version", move || {
            corrupt_with(c.load().unwrap_err(), "version word");
            corrupt_with(c.version().unwrap_err(), "version word");
            corrupt_with(c.store(&[3; 3]).unwrap_err(), "version word");
            corrupt_with(c.update(|r| r[0] += 1).unwrap_err(), "version word");
            match c.load_timeout(SHORT) {
                Err(CellError::Failed(e)) => corrupt_with(e, "version word"),
                r => panic!("{r:?}"),
            }
        });
    }
    // The largest version a store cannot grow.
    let (f, _cell) = Fixture::new("cellmaxversion");
    f.write(VERSION, (1 << 63) - 1);
    let c = f.open();
    within("max version", move || {
        corrupt_with(c.store(&[3; 3]).unwrap_err(), "cannot grow");
    });
}

#[test]
fn a_version_its_buffer_does_not_have_is_corrupt_until_a_store() {
    // 1000 names buffer 0 (1000 % 8), stamped 0.
    let (f, _cell) = Fixture::new("cellwrongversion");
    f.write(VERSION, 1000);
    let c = f.open();
    within("wrong version", move || {
        corrupt_with(c.load().unwrap_err(), "not its version 1000");
        corrupt_with(c.update(|r| r[0] += 1).unwrap_err(), "not its version 1000");
        // A store writes buffer 1 and publishes 1001: repaired.
        assert_eq!(c.store(&[7; 3]).unwrap(), 1001);
        assert_eq!(c.load_versioned().unwrap(), (1001, [7; 3]));
    });
}

#[test]
fn a_garbage_stamp_on_the_published_buffer_is_corrupt_until_a_store() {
    for bad in [0, 1, 3, u64::MAX, (1 << 63) | 2] {
        let (f, _cell) = Fixture::new("cellbadstamp");
        f.write(PUB_STAMP, bad);
        let c = f.open();
        within("garbage stamp", move || {
            corrupt_with(c.load().unwrap_err(), "published buffer 2 is stamped");
            assert_eq!(c.store(&[4; 3]).unwrap(), 3);
            assert_eq!(c.load().unwrap(), [4; 3]);
        });
    }
}

#[test]
fn garbage_in_the_other_buffer_or_the_statistics_is_harmless() {
    let (f, _cell) = Fixture::new("cellbadother");
    f.write(OLD_STAMP, u64::MAX);
    f.write(TAKEOVERS, u64::MAX);
    let c = f.open();
    within("garbage elsewhere", move || {
        assert_eq!(c.load().unwrap(), [2; 3]);
        assert_eq!(c.takeovers(), u64::MAX);
        assert_eq!(c.store(&[5; 3]).unwrap(), 3);
        assert_eq!(c.load().unwrap(), [5; 3]);
    });
    // Garbage in the published record is a record (every bit pattern of a
    // Pod type is one).
    let (f, _cell) = Fixture::new("cellbadrecord");
    f.write(PUB_BUF, u64::MAX);
    let c = f.open();
    within("garbage record", move || {
        assert_eq!(c.load().unwrap(), [u64::MAX, 2, 2]);
    });
}

#[test]
fn garbage_in_the_lock() {
    // An owner that is no process: a dead writer, taken over by the next.
    let (f, cell) = Fixture::new("cellbadlock");
    let g = cell.store(&[9; 3]); // the owner word is 0 again after this
    assert_eq!(g.unwrap(), 3);
    assert_eq!(f.read(OWNER), 0);
    f.write(OWNER, u64::MAX >> 1);
    let c = f.open();
    within("garbage owner", move || {
        assert_eq!(c.load().unwrap(), [9; 3], "readers do not need the lock");
        assert_eq!(c.store(&[10; 3]).unwrap(), 4);
        assert_eq!(c.takeovers(), 1);
        assert_eq!(c.load().unwrap(), [10; 3]);
    });
    // An owner that is a running process (init): held for as long as it
    // runs. Readers go on; writers time out; a reader that must fall back
    // to the lock times out too.
    let (f, _cell) = Fixture::new("cellinitlock");
    let init = shmkit::process::ProcToken::of_pid(1).expect("init runs");
    // The owner word's packing (src/process.rs): pid low, start time above.
    f.write(OWNER, 1 | init.start_ticks() << 22);
    let c = f.open();
    within("init holds the lock", move || {
        assert_eq!(c.load().unwrap(), [2; 3]);
        assert!(matches!(
            c.store_timeout(&[1; 3], SHORT),
            Err(CellError::Timeout)
        ));
        assert!(matches!(
            c.update_timeout(SHORT, |r| r[0] += 1),
            Err(CellError::Timeout)
        ));
        assert!(matches!(
            c.load_with_attempts(0, Some(std::time::Instant::now() + SHORT)),
            Err(CellError::Timeout)
        ));
        let e = c.store_timeout(&[1; 3], SHORT).unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
    });
}

/// Random words in the whole control line and the lock, over and over:
/// every call returns a record, a version, `Corrupt` or `Timeout`.
#[test]
fn random_words_never_panic_or_hang() {
    let (f, _cell) = Fixture::new("cellfuzz");
    let c = f.open();
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // Small values too, so that plausible versions and stamps occur.
        if s.is_multiple_of(3) { s % 8 } else { s }
    };
    let mut outcomes = [0u32; 3];
    for _ in 0..300 {
        for off in [VERSION, PUB_STAMP, OLD_STAMP, stamp(0), TAKEOVERS] {
            f.write(off, next());
        }
        if next() % 4 == 0 {
            f.write(OWNER, next());
        }
        let ok = |r: Result<(), CellError>| match r {
            Ok(()) => 0,
            Err(CellError::Failed(Error::Corrupt { .. })) => 1,
            Err(CellError::Timeout) => 2,
            Err(e) => panic!("{e}"),
        };
        let c = &c;
        for r in [
            c.load_timeout(SHORT).map(drop),
            c.store_timeout(&[1; 3], SHORT).map(drop),
            c.update_timeout(SHORT, |r| r[0] = r[0].wrapping_add(1)),
            c.version().map(drop).map_err(CellError::Failed),
        ] {
            outcomes[ok(r)] += 1;
        }
        let _ = c.takeovers();
    }
    eprintln!("snapshot_corrupt fuzz: ok / corrupt / timeout = {outcomes:?}");
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// The record's identity is checked at open, as for arrays: another record
/// type, another kind, and open_or_create of an existing cell of another
/// type are refused with the error that names both sides.
#[test]
fn opening_as_another_type_or_kind_is_refused() {
    let c = Cleanup::new("celltype");
    let _cell = SharedCell::create(c.name(), [1u64, 2]).unwrap();
    let e = SharedCell::<[u32; 4]>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e}");
    assert!(e.to_string().contains("[u64; 2]"), "{e}");
    let e = SharedCell::<[u32; 4]>::open_or_create(c.name(), [0; 4]).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e}");
    let e = shmkit::SharedArray::<u64>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e}");
    assert!(e.to_string().contains("cell"), "{e}");
    // The same type opens, and sees the same record.
    let again = SharedCell::<[u64; 2]>::open_or_create(c.name(), [9, 9]).unwrap();
    assert_eq!(again.load().unwrap(), [1, 2]);
}

//! Bad input when creating and opening segments: each case gets its own error
//! variant, and no segment content makes shmkit panic.
#![cfg(not(shmkit_loom))]

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::Cleanup;
use shmkit::segment::unlink;
use shmkit::{Error, OpenOptions, SharedAccumulator, SharedArray, SharedValue};

/// Byte offsets of header fields (see `src/header.rs`).
const VERSION_AT: u64 = 12;
const LEN_AT: u64 = 40;
const TOTAL_AT: u64 = 56;

fn quick() -> OpenOptions {
    OpenOptions::new().ready_timeout(Duration::from_millis(50))
}

fn patch(c: &Cleanup, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    f.write_all_at(bytes, at).unwrap();
}

/// Create an i32 array of 8 whose name outlives the handle.
fn kept_array(c: &Cleanup) {
    let mut a = SharedArray::<i32>::create(c.name(), 8).unwrap();
    a.keep();
}

#[test]
fn wrong_element_type() {
    let c = Cleanup::new("wrongtype");
    let _a = SharedArray::<i32>::create(c.name(), 4).unwrap();
    let e = SharedArray::<f32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    // Same size, other signedness: still another type.
    let e = SharedArray::<u32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    assert!(e.to_string().contains("i32"), "{e}");
}

#[test]
fn wrong_length() {
    let c = Cleanup::new("wronglen");
    let _a = SharedArray::<u64>::create(c.name(), 4).unwrap();
    let e = SharedArray::<u64>::open_len(c.name(), 5).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongLength {
                found: 4,
                expected: 5,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("has 4 elements, not 5: open it with the length it was created with"),
        "{e}"
    );
    // A value is an array of one: opening a longer array as a value is
    // opening it as the wrong type, and the message says so (no talk of
    // lengths to open it with).
    let e = SharedValue::<u64>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("holds an array of 4 elements, not a value: open it with the type"),
        "{e}"
    );
    assert_eq!(SharedArray::<u64>::open_len(c.name(), 4).unwrap().len(), 4);
}

#[test]
fn wrong_kind() {
    let c = Cleanup::new("wrongkind");
    let _acc = SharedAccumulator::create(c.name(), 2).unwrap();
    let e = SharedArray::<f64>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    // Articles: "an accumulator", "an array", "a ring".
    let text = format!(
        "segment {:?} holds an accumulator, not an array: open it with the type it was \
         created as",
        c.name()
    );
    assert_eq!(e.to_string(), text);
    let e = shmkit::Ring::<u64>::open(c.name()).unwrap_err();
    assert!(
        e.to_string().contains("holds an accumulator, not a ring"),
        "{e}"
    );
}

#[test]
fn debug_is_the_variant_and_the_message() {
    // What `fn main() -> Result<(), shmkit::Error>` prints.
    let name = common::unique("debug");
    let e = SharedArray::<i32>::open(&name).unwrap_err();
    assert_eq!(
        format!("{e:?}"),
        format!(
            "NotFound: no shared segment named {name:?}: check the name, or create it \
             first (`shmkit ls` lists the segments that exist)"
        )
    );
    assert_eq!(format!("{e:?}"), format!("NotFound: {e}"));
    let e = SharedArray::<i32>::create("a/b", 1).unwrap_err();
    assert!(
        format!("{e:?}").starts_with("BadName: bad segment name \"a/b\""),
        "{e:?}"
    );
}

#[test]
fn too_large_names_the_sizes() {
    // The element count times the size overflows: refused before any file.
    let c = Cleanup::new("huge");
    let e = SharedArray::<u64>::create(c.name(), usize::MAX).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "invalid argument: an array of {} elements of 8 bytes needs more than 2^64 \
             bytes, more than the {} bytes one segment can map",
            usize::MAX,
            isize::MAX
        )
    );
    // It fits in 64 bits but not in one mapping.
    let e = SharedArray::<u64>::create(c.name(), 1 << 60).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "invalid argument: an array of {} elements of 8 bytes needs at least {} bytes, \
             more than the {} bytes one segment can map",
            1u64 << 60,
            (1u64 << 63) + 256,
            isize::MAX
        )
    );
    assert!(!c.path().exists(), "the failed create left its file");
}

#[test]
fn empty_and_odd_sizes_are_refused_with_the_fix() {
    use shmkit::list::SharedList;
    use shmkit::map::SharedMap;
    use shmkit::ring::Ring;
    let c = Cleanup::new("zero");
    let text = |e: Error| {
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        e.to_string()
    };
    let e = SharedArray::<u32>::create(c.name(), 0).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: an array needs at least 1 element, not 0"
    );
    let e = SharedArray::<u32>::create_from(c.name(), &[]).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: an array needs at least 1 element, not 0"
    );
    let e = SharedArray::<u32>::create_anonymous(0).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: an array needs at least 1 element, not 0"
    );
    let e = SharedAccumulator::create(c.name(), 0).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: an accumulator needs 1 to 65536 stripes, not 0"
    );
    let e = SharedMap::<u32, u64>::create(c.name(), 0).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: map capacity 0 must be a power of two from 1 to 2^26 (use 1)"
    );
    let e = SharedMap::<u32, u64>::create(c.name(), 100).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: map capacity 100 must be a power of two from 1 to 2^26 (use 128)"
    );
    let e = SharedMap::<u32, u64>::create(c.name(), (1 << 26) + 1).unwrap_err();
    assert!(text(e).ends_with(&format!("(use {})", 1 << 26)));
    let e = SharedList::<u64>::create(c.name(), 0).unwrap_err();
    assert_eq!(
        text(e),
        "invalid argument: list capacity 0 must be from 1 to 2^30"
    );
    let e = Ring::<u64>::create(c.name(), 0).unwrap_err();
    assert!(text(e).ends_with("(the next one up is 1)"));
    let e = Ring::<u64>::create(c.name(), 100).unwrap_err();
    assert!(text(e).ends_with("(the next one up is 128)"));
    assert!(!c.path().exists());
}

#[test]
fn producer_exists_in_this_process_says_so() {
    let c = Cleanup::new("twoproducers");
    let ring = shmkit::Ring::<u64>::create(c.name(), 4).unwrap();
    let _tx = ring.producer().unwrap();
    let e = ring.producer().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "ring {:?} already has a producer in this process (pid {}): a ring has one \
             producer; drop that Producer first, or use another ring",
            c.name(),
            std::process::id()
        )
    );
}

#[test]
fn foreign_file_has_wrong_magic() {
    let c = Cleanup::new("magic");
    std::fs::write(c.path(), vec![0xA5u8; 4096]).unwrap();
    let e = SharedArray::<i32>::open_with(c.name(), None, &quick()).unwrap_err();
    assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");
}

#[test]
fn version_from_the_future() {
    let c = Cleanup::new("version");
    kept_array(&c);
    patch(&c, VERSION_AT, &99u32.to_le_bytes());
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongVersion { found: 99, .. }), "{e:?}");
}

#[test]
fn truncated_below_the_header() {
    let c = Cleanup::new("trunc");
    kept_array(&c);
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap()
        .set_len(100)
        .unwrap();
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(
        matches!(e, Error::Truncated { file_size: 100, .. }),
        "{e:?}"
    );
}

#[test]
fn header_sizes_disagree_with_file() {
    // The file grew behind the header's back.
    let c = Cleanup::new("sizes");
    kept_array(&c);
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap()
        .set_len(1 << 16)
        .unwrap();
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");

    // The header's total size disagrees with its own length.
    let c = Cleanup::new("sizes2");
    kept_array(&c);
    patch(&c, TOTAL_AT, &(1u64 << 40).to_le_bytes());
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");

    // A length that would run past the end of the file.
    let c = Cleanup::new("sizes3");
    kept_array(&c);
    patch(&c, LEN_AT, &u64::MAX.to_le_bytes());
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");
}

#[test]
fn bad_names() {
    let long = "x".repeat(300);
    for name in ["", "a/b", "..", "../etc/passwd", ".hidden", "sp ace", &long] {
        let e = SharedArray::<i32>::create(name, 1).unwrap_err();
        assert!(matches!(e, Error::BadName { .. }), "{name:?}: {e:?}");
        let e = SharedArray::<i32>::open(name).unwrap_err();
        assert!(matches!(e, Error::BadName { .. }), "{name:?}: {e:?}");
    }
}

#[test]
fn create_over_an_existing_name() {
    let c = Cleanup::new("exists");
    let a = SharedArray::<i32>::create(c.name(), 4).unwrap();
    a[1].store(7, shmkit::Ordering::Relaxed);
    let e = SharedArray::<i32>::create(c.name(), 4).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    // The failed create did not disturb the first one.
    assert_eq!(a.to_vec(), [0, 7, 0, 0]);
    assert_eq!(SharedArray::<i32>::open(c.name()).unwrap().to_vec()[1], 7);
}

#[test]
fn symlink_planted_at_the_name() {
    let target = Cleanup::new("symtarget");
    std::fs::write(target.path(), b"precious").unwrap();
    let c = Cleanup::new("symlink");
    std::os::unix::fs::symlink(target.path(), c.path()).unwrap();
    let e = SharedArray::<i32>::create(c.name(), 4).unwrap_err();
    assert!(matches!(e, Error::NotARegularFile { .. }), "{e:?}");
    let e = SharedArray::<i32>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::NotARegularFile { .. }), "{e:?}");
    assert_eq!(std::fs::read(target.path()).unwrap(), b"precious");
}

#[test]
fn open_before_ready() {
    // A creator that sized the file but never published the header.
    let c = Cleanup::new("notready");
    std::fs::write(c.path(), vec![0u8; 4096]).unwrap();
    let e = SharedArray::<i32>::open_with(c.name(), None, &quick()).unwrap_err();
    assert!(matches!(e, Error::NotReady { .. }), "{e:?}");
    // A creator that has not even sized it.
    let c = Cleanup::new("notready0");
    std::fs::write(c.path(), b"").unwrap();
    let e = SharedArray::<i32>::open_with(c.name(), None, &quick()).unwrap_err();
    assert!(matches!(e, Error::NotReady { .. }), "{e:?}");
}

#[test]
fn not_found() {
    let e = SharedArray::<i32>::open(&common::unique("missing")).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    let e = unlink(&common::unique("missing")).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[test]
fn creator_drop_removes_the_name_unless_kept() {
    let c = Cleanup::new("drop");
    drop(SharedArray::<i32>::create(c.name(), 1).unwrap());
    assert!(!c.path().exists());
    let mut a = SharedArray::<i32>::create(c.name(), 1).unwrap();
    a.keep();
    drop(a);
    assert!(c.path().exists());
}

#[test]
fn creator_drop_leaves_a_successor_alone() {
    let c = Cleanup::new("successor");
    let first = SharedArray::<i32>::create(c.name(), 1).unwrap();
    unlink(c.name()).unwrap();
    let _second = SharedArray::<i32>::create(c.name(), 2).unwrap();
    drop(first);
    assert_eq!(SharedArray::<i32>::open(c.name()).unwrap().len(), 2);
}

#[test]
fn opener_drop_keeps_the_name() {
    let c = Cleanup::new("opener");
    let _a = SharedArray::<i32>::create(c.name(), 1).unwrap();
    drop(SharedArray::<i32>::open(c.name()).unwrap());
    assert!(c.path().exists());
}

#[test]
fn corrupted_headers_never_panic() {
    // Flip bytes all over a valid header, one at a time and in bursts, and
    // open each result: an error or a valid array, never a panic.
    let c = Cleanup::new("fuzz");
    kept_array(&c);
    let good = std::fs::read(c.path()).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut err) = (0, 0);
    for round in 0..600 {
        f.write_all_at(&good, 0).unwrap();
        let flips = 1 + round % 4;
        for _ in 0..flips {
            let at = next() % 256;
            let byte = (next() & 0xff) as u8;
            f.write_all_at(&[byte], at).unwrap();
        }
        match SharedArray::<i32>::open_with(c.name(), None, &quick()) {
            Ok(a) => {
                // Whatever opened must be usable within its validated length.
                assert_eq!(a.len(), 8);
                let _ = a.to_vec();
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
        }
    }
    assert!(err > 0 && ok > 0, "ok {ok} err {err}");
}

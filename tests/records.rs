//! `RecordArray<T>`: records of every alignment copied in and out whole,
//! bounds, the identity check, the shared layout with `SharedArray`,
//! read-modify-writes under the lock from several threads, and whole
//! records under the lock across processes.
#![cfg(not(shmkit_loom))]

mod common;

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::{Error, Ordering, RecordArray, SharedArray};

const ENTRY: &str = "child_entry";
/// Records the child writes, 1 to ROUNDS.
const ROUNDS: u64 = 2_000;

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let arr = RecordArray::<Wide>::open(&name).unwrap();
    match role.as_str() {
        // Write record 0 as (k, k, [k, k]) for k = 1..=ROUNDS, each under
        // the lock.
        "writer" => {
            for k in 1..=ROUNDS {
                let _held = arr.lock().map_err(|e| e.to_string()).unwrap();
                let w = Wide {
                    a: k,
                    b: k as f64,
                    c: [k as u32; 2],
                };
                arr.set(0, w).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

shmkit::record! {
    #[name = "test.Wide/1"]
    #[derive(Debug, PartialEq)]
    pub struct Wide { pub a: u64, pub b: f64, pub c: [u32; 2] }
}

shmkit::record! {
    #[name = "test.Narrow/1"]
    #[derive(Debug, PartialEq)]
    pub struct Narrow { pub x: u16, pub y: [u8; 4] }
}

#[test]
fn records_of_every_alignment_round_trip() {
    let c = Cleanup::new("rec-wide");
    let w = RecordArray::<Wide>::create(c.name(), 3).unwrap();
    assert_eq!(w.len(), 3);
    assert_eq!(
        w.get(1),
        Some(Wide {
            a: 0,
            b: 0.0,
            c: [0; 2]
        })
    );
    let v = Wide {
        a: u64::MAX,
        b: -1.5,
        c: [7, 8],
    };
    w.set(1, v).unwrap();
    let again = RecordArray::<Wide>::open(c.name()).unwrap();
    assert_eq!(again.get(1), Some(v));
    assert_eq!(again.to_vec()[1], v);

    let c2 = Cleanup::new("rec-narrow");
    let n = RecordArray::<Narrow>::create_from(
        c2.name(),
        &[
            Narrow { x: 1, y: *b"abcd" },
            Narrow {
                x: 65535,
                y: [9; 4],
            },
        ],
    )
    .unwrap();
    assert_eq!(
        n.get(1),
        Some(Narrow {
            x: 65535,
            y: [9; 4]
        })
    );

    let c3 = Cleanup::new("rec-bytes");
    let b = RecordArray::<[u8; 3]>::create_from(c3.name(), &[*b"xyz", *b"abc"]).unwrap();
    assert_eq!(b.to_vec(), [*b"xyz", *b"abc"]);
}

#[test]
fn bounds_and_lengths_are_errors_with_the_numbers() {
    let c = Cleanup::new("rec-bounds");
    let w = RecordArray::<Wide>::create(c.name(), 2).unwrap();
    assert_eq!(w.get(2), None);
    let v = Wide {
        a: 1,
        b: 1.0,
        c: [1; 2],
    };
    assert_eq!(
        w.set(2, v).unwrap_err().to_string(),
        "invalid argument: record index 2 is past the end of a record array of 2"
    );
    let e = RecordArray::<Wide>::create(&common::unique("rec0"), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid argument: a record array needs at least 1 record, not 0"
    );
}

#[test]
fn another_record_type_is_refused() {
    let c = Cleanup::new("rec-type");
    let _w = RecordArray::<Wide>::create(c.name(), 2).unwrap();
    let e = RecordArray::<Narrow>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("holds elements of type test.Wide/1 (24 bytes, align 8)"),
        "{e}"
    );
    assert!(
        e.contains("asked for as test.Narrow/1 (6 bytes, align 2): { x: u16 @0, y: [u8; 4] @2 }"),
        "{e}"
    );
}

#[test]
fn a_record_array_of_u64_is_a_shared_array_of_u64() {
    let c = Cleanup::new("rec-u64");
    let r = RecordArray::<u64>::create_from(c.name(), &[1, 2, 3]).unwrap();
    let s = SharedArray::<u64>::open(c.name()).unwrap();
    s[1].fetch_add(40, Ordering::Relaxed);
    assert_eq!(r.to_vec(), [1, 42, 3]);
}

#[test]
fn locked_read_modify_writes_lose_nothing() {
    let c = Cleanup::new("rec-lock");
    let arr = RecordArray::<Wide>::create(c.name(), 1).unwrap();
    const PER: u64 = 500;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mine = RecordArray::<Wide>::open(c.name()).unwrap();
                for _ in 0..PER {
                    let _held = mine.lock().map_err(|e| e.to_string()).unwrap();
                    let mut w = mine.get(0).unwrap();
                    w.a += 1;
                    w.c[0] += 2;
                    mine.set(0, w).unwrap();
                }
            });
        }
    });
    let w = arr.get(0).unwrap();
    assert_eq!((w.a, w.c[0]), (2 * PER, 4 * PER as u32));
}

#[test]
fn records_read_under_the_lock_are_whole_across_processes() {
    let c = Cleanup::new("rec-mp");
    let arr = RecordArray::<Wide>::create(c.name(), 1).unwrap();
    let child = child_command(ENTRY, "writer")
        .env("SHMKIT_NAME", c.name())
        .spawn()
        .unwrap();
    let child = Reaper(Some(child));
    let (mut last, mut reads) = (0, 0u64);
    while last < ROUNDS {
        let w = {
            let _held = arr.lock().map_err(|e| e.to_string()).unwrap();
            arr.get(0).unwrap()
        };
        // Whole: every field from the same write.
        assert_eq!((w.b, w.c), (w.a as f64, [w.a as u32; 2]), "torn: {w:?}");
        assert!(w.a >= last, "went back from {last} to {}", w.a);
        last = w.a;
        reads += 1;
        // Bounded: the writer finishes ROUNDS writes, or the test fails.
        assert!(reads < 50_000_000, "the writer stopped at {last}");
    }
    child.wait_ok();
}

shmkit::record! {
    #[name = "test.Worker/1"]
    #[derive(Debug, PartialEq)]
    pub struct Worker { pub pid: u32, pub done: u32, pub load: f64, pub hist: [u16; 4] }
}

#[test]
fn number_fields_are_atomic_cells() {
    use std::mem::offset_of;
    let c = Cleanup::new("rec-field");
    let arr = RecordArray::<Worker>::create(c.name(), 2).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mine = RecordArray::<Worker>::open(c.name()).unwrap();
                let done = mine.field::<u32>(1, offset_of!(Worker, done)).unwrap();
                let load = mine.field::<f64>(1, offset_of!(Worker, load)).unwrap();
                for _ in 0..1000 {
                    done.fetch_add(1, Ordering::Relaxed);
                    load.fetch_add(0.5, Ordering::Relaxed);
                }
            });
        }
    });
    let w = arr.get(1).unwrap();
    assert_eq!((w.done, w.load, w.pid), (2000, 1000.0, 0));
    assert_eq!(
        arr.get(0),
        Some(Worker {
            pid: 0,
            done: 0,
            load: 0.0,
            hist: [0; 4]
        })
    );
}

#[test]
fn a_field_of_another_type_or_offset_is_refused_with_the_fields() {
    use std::mem::offset_of;
    let arr = RecordArray::<Worker>::create_anonymous(1).unwrap();
    let fields = "test.Worker/1 (24 bytes, align 8): { pid: u32 @0, done: u32 @4, load: f64 @8, \
                  hist: [u16; 4] @16 }";
    let e = arr.field::<u64>(0, offset_of!(Worker, load)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "invalid argument: record test.Worker/1 has no u64 field starting at byte 8: its \
             fields are {fields}"
        )
    );
    // Inside a field, and an element of an array field: not cells.
    assert!(arr.field::<u16>(0, 2).is_err());
    assert!(arr.field::<u16>(0, offset_of!(Worker, hist)).is_err());
    assert_eq!(
        arr.field::<u32>(1, 0).unwrap_err().to_string(),
        "invalid argument: record index 1 is past the end of a record array of 1"
    );
}

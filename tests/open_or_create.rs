//! `open_or_create` for every kind: the first call creates, the next opens
//! the same segment; another type or length is an error and the segment is
//! left alone; processes racing to do it all end up on one segment.
#![cfg(not(shmkit_loom))]

mod common;

use std::sync::{Arc, Barrier};

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::list::SharedList;
use shmkit::map::SharedMap;
use shmkit::pipe::Pipe;
use shmkit::ring::Ring;
use shmkit::{
    CreateOptions, Error, OpenOptions, Ordering, SharedAccumulator, SharedArray, SharedValue,
    ShmLock,
};

const ENTRY: &str = "child_entry";
const RACERS: usize = 4;

/// Entry point of every child. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    match role.as_str() {
        // Everyone races to make the counter, keeps it, counts itself in.
        "race" => {
            let keep = CreateOptions::new().keep(true);
            let arr = SharedArray::<u64>::open_or_create_with(&name, 2, &keep, &OpenOptions::new())
                .unwrap();
            arr[0].fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn every_kind_creates_then_opens_the_same_one() {
    let c = Cleanup::new("ooc-array");
    let a = SharedArray::<u32>::open_or_create(c.name(), 3).unwrap();
    a[1].store(7, Ordering::Relaxed);
    let b = SharedArray::<u32>::open_or_create(c.name(), 3).unwrap();
    assert_eq!(b.to_vec(), [0, 7, 0]);

    let c = Cleanup::new("ooc-value");
    let v = SharedValue::<i64>::open_or_create(c.name(), 5).unwrap();
    // The initial value is used only by the creator.
    let w = SharedValue::<i64>::open_or_create(c.name(), 99).unwrap();
    v.fetch_add(1, Ordering::Relaxed);
    assert_eq!(w.load(Ordering::Relaxed), 6);

    let c = Cleanup::new("ooc-acc");
    let acc = SharedAccumulator::open_or_create(c.name(), 2).unwrap();
    acc.add_at(0, 1.5);
    assert_eq!(
        SharedAccumulator::open_or_create(c.name(), 2)
            .unwrap()
            .sum(),
        1.5
    );

    let c = Cleanup::new("ooc-lock");
    let lock = ShmLock::open_or_create(c.name()).unwrap();
    let guard = lock.lock().unwrap();
    let other = ShmLock::open_or_create(c.name()).unwrap();
    assert!(
        other.try_lock().is_err(),
        "the second handle is the same lock"
    );
    drop(guard);

    let c = Cleanup::new("ooc-ring");
    let ring = Ring::<u64>::open_or_create(c.name(), 4).unwrap();
    let rx = Ring::<u64>::open_or_create(c.name(), 4)
        .unwrap()
        .consumer()
        .unwrap();
    ring.producer().unwrap().push(42).unwrap();
    assert_eq!(rx.pop(), Ok(42));

    let c = Cleanup::new("ooc-map");
    let map = SharedMap::<u32, u64>::open_or_create(c.name(), 8).unwrap();
    map.insert(1, 10).unwrap();
    let again = SharedMap::<u32, u64>::open_or_create(c.name(), 8).unwrap();
    assert_eq!(again.get(&1), Some(10));

    let c = Cleanup::new("ooc-list");
    let list = SharedList::<u64>::open_or_create(c.name(), 8).unwrap();
    let i = list.push(3).unwrap();
    let again = SharedList::<u64>::open_or_create(c.name(), 8).unwrap();
    assert_eq!(again.get(i), Some(3));
}

#[test]
fn pipe_ends_meet_whoever_comes_first() {
    let c = Cleanup::new("ooc-pipe");
    let (_a2b, _b2a) = (
        Cleanup(format!("{}.a2b", c.name())),
        Cleanup(format!("{}.b2a", c.name())),
    );
    let first = Pipe::open_or_create(c.name(), 8).unwrap();
    let second = Pipe::open_or_create(c.name(), 8).unwrap();
    let mut a = first.end_a().unwrap();
    let mut b = second.end_b().unwrap();
    a.send(&21u64).unwrap();
    let x: u64 = b.recv().unwrap();
    b.send(&(x * 2)).unwrap();
    assert_eq!(a.recv::<u64>().unwrap(), 42);
}

#[test]
fn another_type_or_length_is_an_error_and_left_alone() {
    let c = Cleanup::new("ooc-mismatch");
    let a = SharedArray::<u32>::open_or_create(c.name(), 4).unwrap();
    a[0].store(9, Ordering::Relaxed);
    let e = SharedArray::<u32>::open_or_create(c.name(), 5).unwrap_err();
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
    let e = SharedArray::<f32>::open_or_create(c.name(), 4).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    let e = SharedValue::<u32>::open_or_create(c.name(), 0).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    let e = Ring::<u32>::open_or_create(c.name(), 4).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    // Bad parameters are refused before anything is looked at.
    let e = Ring::<u32>::open_or_create(c.name(), 3).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    // Still the first array, untouched.
    assert_eq!(SharedArray::<u32>::open(c.name()).unwrap().to_vec()[0], 9);
}

#[test]
fn racing_threads_share_one_segment() {
    let c = Cleanup::new("ooc-threads");
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (name, start) = (c.name().to_owned(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let v = SharedValue::<u64>::open_or_create(&name, 0).unwrap();
                v.fetch_add(1, Ordering::Relaxed);
                // Hold the handle until everyone is in: the creator's drop
                // would remove the name.
                start.wait();
                v
            })
        })
        .collect();
    let values: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for v in &values {
        assert_eq!(v.load(Ordering::Relaxed), 8);
    }
}

#[test]
fn racing_processes_share_one_segment() {
    let c = Cleanup::new("ooc-procs");
    let kids: Vec<Reaper> = (0..RACERS)
        .map(|_| {
            let child = child_command(ENTRY, "race")
                .env("SHMKIT_NAME", c.name())
                .spawn()
                .unwrap();
            Reaper(Some(child))
        })
        .collect();
    for k in kids {
        k.wait_ok();
    }
    let arr = SharedArray::<u64>::open_len(c.name(), 2).unwrap();
    assert_eq!(arr[0].load(Ordering::Relaxed), RACERS as u64);
}

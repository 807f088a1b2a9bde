//! A damaged queue segment (garbage in its lanes, counters, registry,
//! byte-message frames or header) gives clear errors naming what is wrong: never a panic, never an
//! endless wait. Also run in release with overflow checks (.ci/run).
#![cfg(not(shmkit_loom))]

mod common;

use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use common::Cleanup;
use shmkit::Error;
use shmkit::queue::message::Frame;
use shmkit::queue::{JoinError, PopError, PushError, Queue, QueueOptions};

const LIMIT: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(20);

/// Run `f` on a thread; fail if it panics or takes longer than LIMIT.
fn within(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("{what}: panicked");
        }
    }
}

/// Byte offsets in the body (src/queue/mem.rs): a 640-byte control block
/// (`done` at 256, the sleeping consumers' count at 384), then 384 bytes per lane (tail, head, owner on lines of
/// their own), then 128 bytes per consumer entry (token, held).
const DONE: u64 = 256;
fn lane(i: u64) -> u64 {
    640 + 384 * i
}
fn entry(producers: u64, j: u64) -> u64 {
    640 + 384 * producers + 128 * j
}

/// Writes words into a queue segment's file.
struct Scribbler {
    file: std::fs::File,
    body: u64,
}

impl Scribbler {
    fn new<T: bytemuck::Pod>(c: &Cleanup, q: &Queue<T>) -> Self {
        Scribbler {
            file: std::fs::OpenOptions::new()
                .write(true)
                .open(c.path())
                .unwrap(),
            body: q.segment().unwrap().info().data_offset,
        }
    }
    fn set(&self, at: u64, v: u64) {
        self.file
            .write_all_at(&v.to_ne_bytes(), self.body + at)
            .unwrap();
    }
}

#[test]
fn impossible_lane_indices_are_errors() {
    within("lane indices", || {
        let c = Cleanup::new("qcorrupt-lane");
        // One lane: a new producer prefers an empty lane to a damaged one.
        let q = Queue::<u64>::create(c.name(), QueueOptions::new(4, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        let rx = q.consumer().unwrap();
        tx.push(1).unwrap();
        let s = Scribbler::new(&c, &q);
        let cases: [(u64, u64, &str); 3] = [
            (5, 2, "lane 0: head 5 is past tail 2"),
            (
                0,
                9,
                "lane 0: tail 9 is 9 past head 0, more than the capacity 4",
            ),
            (0, 1 << 63, "beyond any possible sequence"),
        ];
        for (head, tail, want) in cases {
            s.set(lane(0) + 128, head);
            s.set(lane(0), tail);
            for r in [rx.try_pop(), rx.pop_timeout(SHORT), rx.pop()] {
                match r {
                    Err(PopError::Corrupt(d)) => assert!(d.contains(want), "{d}"),
                    other => panic!("{other:?}"),
                }
            }
            assert!(matches!(
                q.join_timeout(SHORT),
                Err(JoinError::Corrupt(_)) | Err(JoinError::Timeout)
            ));
            // A new producer does not start from an impossible lane.
            drop(tx);
            let e = q.producer().map(|_| ()).unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
            assert!(e.to_string().contains("lane 0"), "{e}");
            // The lane was given back, so the next attempt says so again.
            assert!(matches!(q.producer(), Err(Error::Corrupt { .. })));
            s.set(lane(0) + 128, 1);
            s.set(lane(0), 1);
            tx = q.producer().unwrap();
        }
        // A producer whose lane's head goes backwards or past its tail.
        for _ in 0..4 {
            let _ = tx.try_push(7);
        }
        s.set(lane(0) + 128, 1 << 40);
        assert!(matches!(tx.try_push(8), Err(PushError::Corrupt { .. })));
        assert!(matches!(
            tx.push_timeout(8, SHORT),
            Err(PushError::Corrupt { .. })
        ));
    });
}

/// A byte-message queue's frame lengths scribbled: `Corrupt`, naming the
/// lane, from every pop form, never a panic, an out-of-bounds copy or a
/// wait; a message claimed and then found damaged is held like any other.
#[test]
fn impossible_frame_lengths_are_corrupt() {
    within("frame lengths", || {
        let c = Cleanup::new("qcorrupt-frames");
        let q = Queue::<Frame>::create(c.name(), QueueOptions::new(4, 1, 1)).unwrap();
        let mut tx = q.producer().unwrap();
        let rx = q.consumer().unwrap();
        let s = Scribbler::new(&c, &q);
        // Lane 0's slots follow the registry; a frame is 64 bytes, its
        // first word the message's length (low half) and the frame's index.
        let frame = |seq: u64| entry(1, 1) + 64 * seq;
        tx.push_bytes(&[5; 100]).unwrap(); // frames 0 and 1
        let mut buf = Vec::new();
        for (word, want) in [
            (
                100_000,
                "lane 0: frame length 100000 needs 1786 frames, more than the capacity 4",
            ),
            (u64::from(u32::MAX), "more than the capacity 4"),
            (
                200,
                "lane 0: frame length 200 needs 4 frames, only 2 published",
            ),
        ] {
            s.set(frame(0), word);
            for r in [
                rx.try_pop_bytes_into(&mut buf),
                rx.pop_bytes_into_timeout(&mut buf, SHORT),
                rx.pop_bytes().map(|_| ()),
            ] {
                match r {
                    Err(PopError::Corrupt(d)) => assert!(d.contains(want), "{d}"),
                    other => panic!("{other:?}"),
                }
            }
        }
        s.set(frame(0), 100);
        assert_eq!(rx.pop_bytes().unwrap(), [5; 100]);
        rx.task_done().unwrap();
        // The second frame of the next message disagrees with the first.
        tx.push_bytes(&[6; 100]).unwrap(); // frames 2 and 3
        s.set(frame(3), 1 << 32 | 99);
        match rx.try_pop_bytes() {
            Err(PopError::Corrupt(d)) => {
                assert!(d.contains("says it is frame 1 of 99 bytes"), "{d}")
            }
            other => panic!("{other:?}"),
        }
        rx.task_done().unwrap();
        assert_eq!(q.join().unwrap().abandoned, 0);
    });
}

#[test]
fn impossible_done_and_held_counts_never_hang_join() {
    within("done and held", || {
        let c = Cleanup::new("qcorrupt-done");
        let q = Queue::<u64>::create(c.name(), QueueOptions::new(4, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push_slice(&[1, 2, 3]).unwrap();
        let s = Scribbler::new(&c, &q);
        s.set(DONE, u64::MAX);
        match q.join() {
            Err(JoinError::Corrupt(d)) => assert!(d.contains("past the 3 items pushed"), "{d}"),
            other => panic!("{other:?}"),
        }
        s.set(DONE, 0);
        // A dead process's entry holding an absurd count: join returns,
        // reporting no more than the items left.
        let dead = u64::from(u32::MAX >> 10); // pid 4194303, start time 0
        s.set(entry(1, 0), dead);
        s.set(entry(1, 0) + 8, u64::MAX);
        assert_eq!(q.join().unwrap().abandoned, 3);
        // Registering over it folds the absurd count without overflow.
        let rx = q.consumer().unwrap();
        let rx2 = q.consumer().unwrap();
        assert_eq!(q.join().unwrap().abandoned, 3);
        assert_eq!(rx.try_pop(), Ok(1));
        drop(rx2);
        // Garbage in an owner word: a token of nobody alive; the lane is
        // taken over, its items kept.
        drop(tx);
        s.set(lane(0) + 256, 0xDEAD_BEEF_0000_0001);
        let mut tx = q.producer().unwrap();
        tx.push(4).unwrap();
        assert_eq!(rx.try_pop(), Ok(2));
    });
}

#[test]
fn impossible_limits_in_the_header_are_refused_at_open() {
    let c = Cleanup::new("qcorrupt-len");
    let q = Queue::<u64>::create_with(
        c.name(),
        QueueOptions::new(4, 2, 2),
        &shmkit::CreateOptions::new().keep(true),
    )
    .unwrap();
    drop(q);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    for bad in [
        0u64,
        3 | 2 << 32 | 2 << 48,    // capacity not a power of two
        4 | 2 << 48,              // no producers
        4 | 2 << 32,              // no consumers
        4 | 2 << 32 | 9999 << 48, // too many consumers
        64 | 2 << 32 | 2 << 48,   // more than the file holds
    ] {
        f.write_all_at(&bad.to_le_bytes(), 40).unwrap(); // the header's len
        let e = match Queue::<u64>::open(c.name()) {
            Ok(_) => panic!("{bad:#x} opened"),
            Err(e) => e,
        };
        assert!(
            matches!(e, Error::SizeMismatch { .. } | Error::Corrupt { .. }),
            "{bad:#x}: {e:?}"
        );
    }
}

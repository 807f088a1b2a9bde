//! Shared memory is untrusted input: impossible counters written into a
//! ring's segment (through the file, as another process would) give a value
//! or a clear error from every operation, never a panic (this is a debug
//! build: overflow checks are on) and never a hang (each case runs under a
//! time limit).
//!
//! The offsets are not guessed: `tail`, `head` and `done` are the control
//! block's first three fields, each on its own `CachePadded` line, and each
//! offset is checked against a value the ring's `state()` reports before it
//! is overwritten; a frame is found by its content.
#![cfg(not(shmkit_loom))]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use bytemuck::Pod;
use common::Cleanup;
use shmkit::Error;
use shmkit::ring::message::{FRAME_DATA, Frame};
use shmkit::ring::{JoinError, PopError, PushError, Ring, SendError, TaskDoneError};

/// A wait short enough for a test, long enough to prove "it returned".
const SHORT: Duration = Duration::from_millis(50);
/// Far above what any case needs: only a hang trips it.
const LIMIT: Duration = Duration::from_secs(20);

/// Run `f` on a thread and fail if it does not finish within [`LIMIT`]
/// (a hang) or if it panics.
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

/// The shared counters a test scribbles on.
#[derive(Clone, Copy, Debug)]
enum Field {
    Tail,
    Head,
    Done,
}

/// Writes into a named ring's segment file, as a foreign process would.
struct Scribbler {
    file: File,
    body: u64,
}

impl Scribbler {
    fn new<T: Pod>(ring: &Ring<T>) -> Self {
        let seg = ring.segment().expect("a named ring");
        let name = seg.name().expect("a named ring");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(std::path::Path::new(shmkit::segment::SHM_DIR).join(name))
            .unwrap();
        Scribbler {
            file,
            body: seg.info().data_offset,
        }
    }

    /// The file offset of `field`, checked: it must hold what `state()` says
    /// the field holds (call with distinct tail, head and done).
    fn offset_of<T: Pod>(&self, ring: &Ring<T>, field: Field) -> u64 {
        // `RingControl` is `repr(C)`: tail, head, done, each a CachePadded
        // u64, so each on its own line of the padded size.
        let line = size_of::<crossbeam_utils::CachePadded<u64>>() as u64;
        let (index, want) = match field {
            Field::Tail => (0, ring.state().tail),
            Field::Head => (1, ring.state().head),
            Field::Done => (2, ring.state().done),
        };
        let off = self.body + index * line;
        assert_eq!(self.read_u64(off), want, "{field:?} is not at {off}");
        off
    }

    fn read_u64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, off).unwrap();
        u64::from_ne_bytes(b)
    }

    fn write_u64(&self, off: u64, v: u64) {
        self.file.write_all_at(&v.to_ne_bytes(), off).unwrap();
    }

    /// Set `field` to `v` (its offset found with [`offset_of`](Self::offset_of)).
    fn set<T: Pod>(&self, ring: &Ring<T>, field: Field, v: u64) {
        let off = self.offset_of(ring, field);
        self.write_u64(off, v);
    }

    /// The file offset of the first frame that starts a message of `len`
    /// bytes all equal to `fill` (found by content, 64-byte aligned).
    fn find_frame(&self, len: u32, fill: u8) -> u64 {
        let size = self.file.metadata().unwrap().len();
        let mut all = vec![0u8; size as usize];
        self.file.read_exact_at(&mut all, 0).unwrap();
        let frame = size_of::<Frame>();
        let mut want = Vec::with_capacity(frame);
        want.extend_from_slice(&len.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[fill; FRAME_DATA]);
        (self.body as usize..size as usize - frame)
            .step_by(frame)
            .find(|&p| all[p..p + frame] == want[..])
            .expect("the frame is in the file") as u64
    }
}

fn corrupt_detail(e: &Error) -> &str {
    match e {
        Error::Corrupt { detail, .. } => detail,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn pop_detail<R: std::fmt::Debug>(r: Result<R, PopError>) -> String {
    match r {
        Err(PopError::Corrupt(d)) => d,
        other => panic!("expected PopError::Corrupt, got {other:?}"),
    }
}

fn push_detail<X>(r: Result<X, PushError<impl Sized>>) -> String {
    match r {
        Err(PushError::Corrupt { detail, .. }) => detail,
        Err(e) => panic!("expected PushError::Corrupt, got {e:?}"),
        Ok(_) => panic!("expected PushError::Corrupt, got Ok"),
    }
}

/// A named u64 ring with tail 7, head 4, done 3 (distinct, so the offsets
/// can be checked), its producer and a consumer.
fn ring_at_7_4_3(
    clean: &Cleanup,
    cap: usize,
) -> (
    Ring<u64>,
    shmkit::ring::Producer<u64>,
    shmkit::ring::Consumer<u64>,
) {
    let ring = Ring::<u64>::create(clean.name(), cap).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    for i in 0..7 {
        if i >= 4 {
            tx.push(0xC0DE_0000 + i).unwrap();
        } else {
            tx.push(0xC0DE_0000 + i).unwrap();
            assert_eq!(rx.pop().unwrap(), 0xC0DE_0000 + i);
            if i < 3 {
                rx.task_done().unwrap();
            }
        }
    }
    let s = ring.state();
    assert_eq!((s.tail, s.head, s.done), (7, 4, 3));
    (ring, tx, rx)
}

const BEYOND: &str = "is beyond any possible sequence";

#[test]
fn tail_at_u64_max() {
    within("tail = u64::MAX", || {
        // Before any producer: producer() refuses the ring.
        let clean = Cleanup::new("corrupt-tail");
        let (ring, tx, rx) = ring_at_7_4_3(&clean, 8);
        drop(tx); // closes the ring; reopen a fresh one below for producer()
        let s = Scribbler::new(&ring);
        s.set(&ring, Field::Tail, u64::MAX);
        let d = pop_detail(rx.try_pop());
        assert_eq!(d, format!("tail {} {BEYOND}", u64::MAX));
        pop_detail(rx.pop());
        pop_detail(rx.pop_timeout(SHORT));
        pop_detail(rx.try_pop_into(&mut [0; 4]));
        pop_detail(rx.pop_into_timeout(&mut [0; 4], SHORT));
        assert!(ring.len() <= ring.capacity());
        assert_eq!(ring.state().tail, u64::MAX);
        // task_done: one item (seq 3) is taken and not yet done.
        assert_eq!(rx.task_done(), Ok(()));
        assert_eq!(rx.task_done(), Err(TaskDoneError::TooMany));

        let clean = Cleanup::new("corrupt-tail-claim");
        let ring = Ring::<u64>::create(clean.name(), 8).unwrap();
        let s = Scribbler::new(&ring);
        s.write_u64(s.body, u64::MAX);
        assert_eq!(ring.state().tail, u64::MAX, "tail is the first field");
        let e = ring.producer().unwrap_err();
        assert_eq!(corrupt_detail(&e), format!("tail {} {BEYOND}", u64::MAX));
        // The role was given back: mend the tail and a producer may claim.
        s.write_u64(s.body, 0);
        let mut tx = ring.producer().unwrap();
        // A producer works from its own tail: a later scribble is
        // overwritten by its next publish, never added to.
        s.write_u64(s.body, u64::MAX);
        assert_eq!(tx.try_push(1), Ok(()));
        assert_eq!(tx.push_timeout(2, SHORT), Ok(()));
        assert_eq!(tx.push_slice(&[3, 4]), Ok(()));
        assert_eq!(ring.state().tail, 4);
        assert_eq!(tx.join_timeout(SHORT), Err(JoinError::Timeout));
    });
}

#[test]
fn head_past_tail() {
    within("head > tail", || {
        let clean = Cleanup::new("corrupt-head");
        let (ring, mut tx, rx) = ring_at_7_4_3(&clean, 4);
        tx.push(7).unwrap(); // full: tail 8, head 4
        let s = Scribbler::new(&ring);
        // State now: tail 8, head 4, done 3.
        s.set(&ring, Field::Head, 100);
        let d = push_detail(tx.try_push(1));
        assert_eq!(d, "head 100 is past tail 8");
        push_detail(tx.push(1));
        push_detail(tx.push_timeout(1, SHORT));
        push_detail(tx.try_push_slice(&[1, 2]));
        push_detail(tx.push_slice(&[1, 2]));
        assert_eq!(pop_detail(rx.try_pop()), "head 100 is past tail 8");
        pop_detail(rx.pop());
        pop_detail(rx.try_pop_into(&mut [0; 2]));
        assert_eq!(ring.len(), 0);
        assert_eq!(tx.len(), 0);
        // head cannot be told from a real one by task_done: a value.
        assert_eq!(rx.task_done(), Ok(()));
        assert_eq!(tx.join_timeout(SHORT), Err(JoinError::Timeout));

        // Before any producer: producer() refuses.
        let clean = Cleanup::new("corrupt-head-claim");
        let ring = Ring::<u64>::create(clean.name(), 4).unwrap();
        let s = Scribbler::new(&ring);
        let line = size_of::<crossbeam_utils::CachePadded<u64>>() as u64;
        s.write_u64(s.body + line, 5);
        assert_eq!(ring.state().head, 5, "head is the second field");
        let e = ring.producer().unwrap_err();
        assert_eq!(corrupt_detail(&e), "head 5 is past tail 0");
        s.write_u64(s.body + line, u64::MAX);
        s.write_u64(s.body, u64::MAX);
        let e = ring.producer().unwrap_err();
        assert_eq!(corrupt_detail(&e), format!("tail {} {BEYOND}", u64::MAX));
        let rx = ring.consumer().unwrap();
        pop_detail(rx.try_pop());
        assert_eq!(
            rx.task_done(),
            Err(TaskDoneError::Corrupt(format!(
                "head {} {BEYOND}",
                u64::MAX
            )))
        );
    });
}

#[test]
fn tail_more_than_capacity_past_head() {
    within("tail - head > capacity", || {
        let clean = Cleanup::new("corrupt-span");
        let (ring, tx, rx) = ring_at_7_4_3(&clean, 8);
        let s = Scribbler::new(&ring);
        s.set(&ring, Field::Tail, 4 + 9);
        let want = "tail 13 is 9 past head 4, more than the capacity 8";
        assert_eq!(pop_detail(rx.try_pop()), want);
        pop_detail(rx.pop());
        pop_detail(rx.pop_timeout(SHORT));
        pop_detail(rx.try_pop_into(&mut [0; 3]));
        assert_eq!(ring.len(), 8, "clamped to the capacity");
        drop(tx);

        let clean = Cleanup::new("corrupt-span-claim");
        let ring = Ring::<u64>::create(clean.name(), 8).unwrap();
        let s = Scribbler::new(&ring);
        s.write_u64(s.body, 100);
        assert_eq!(ring.state().tail, 100, "tail is the first field");
        let e = ring.producer().unwrap_err();
        assert_eq!(
            corrupt_detail(&e),
            "tail 100 is 100 past head 0, more than the capacity 8"
        );
    });
}

#[test]
fn done_past_head() {
    within("done > head", || {
        let clean = Cleanup::new("corrupt-done");
        let (ring, tx, rx) = ring_at_7_4_3(&clean, 8);
        let s = Scribbler::new(&ring);
        s.set(&ring, Field::Done, 50);
        assert_eq!(
            rx.task_done(),
            Err(TaskDoneError::Corrupt("done 50 is past head 4".into()))
        );
        assert_eq!(
            tx.join_timeout(SHORT),
            Err(JoinError::Corrupt("done 50 is past tail 7".into()))
        );
        assert_eq!(
            tx.join(),
            Err(JoinError::Corrupt("done 50 is past tail 7".into()))
        );
        s.set(&ring, Field::Done, u64::MAX);
        assert!(matches!(rx.task_done(), Err(TaskDoneError::Corrupt(_))));
        assert!(matches!(tx.join_timeout(SHORT), Err(JoinError::Corrupt(_))));
        // Items still flow: done orders nothing but join.
        assert_eq!(rx.pop(), Ok(0xC0DE_0004));
        assert_eq!(ring.state().done, u64::MAX);
    });
}

#[test]
fn frame_length_larger_than_the_ring() {
    within("frame length > ring", || {
        let clean = Cleanup::new("corrupt-frame");
        let ring = Ring::<Frame>::create(clean.name(), 4).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        let s = Scribbler::new(&ring);
        let msg = [0xA5u8; FRAME_DATA + 10]; // 2 frames
        // Sequence 0 is slot 0: its frame shows where the slots start.
        tx.push_bytes(&msg).unwrap();
        let slots = s.find_frame(msg.len() as u32, 0xA5);
        assert_eq!(rx.pop_bytes().unwrap(), msg);
        for len in [10_000u32, u32::MAX, 4 * FRAME_DATA as u32] {
            let seq = ring.state().tail;
            tx.push_bytes(&msg).unwrap();
            let off = slots + (seq % 4) * size_of::<Frame>() as u64;
            s.file.write_all_at(&len.to_ne_bytes(), off).unwrap();
            let d = pop_detail(rx.try_pop_bytes());
            let k = (len as usize).div_ceil(FRAME_DATA);
            let want = if k > 4 {
                format!("frame length {len} needs {k} frames, more than the capacity 4")
            } else {
                format!("frame length {len} needs {k} frames, only 2 published")
            };
            assert_eq!(d, want);
            pop_detail(rx.pop_bytes());
            pop_detail(rx.pop_bytes_timeout(SHORT));
            pop_detail(rx.try_pop_bytes_into(&mut Vec::new()));
            // Repair it, so the next round starts from a clean ring.
            s.file
                .write_all_at(&(msg.len() as u32).to_ne_bytes(), off)
                .unwrap();
            assert_eq!(rx.pop_bytes().unwrap(), msg);
        }
        // A message longer than the ring is refused before anything is read.
        assert_eq!(
            tx.try_push_bytes(&[0; 4 * FRAME_DATA + 1]),
            Err(SendError::TooLarge {
                len: 4 * FRAME_DATA + 1,
                max: 4 * FRAME_DATA
            })
        );
        // Head past tail on a byte ring: byte pushes say Corrupt too.
        tx.push_bytes(&[1; 3 * FRAME_DATA]).unwrap();
        tx.push_bytes(&[2; 1]).unwrap(); // full: 4 frames
        s.set(&ring, Field::Head, 99); // was 8, tail 12
        let bad = Err(SendError::Corrupt("head 99 is past tail 12".into()));
        assert_eq!(tx.try_push_bytes(b"x"), bad);
        assert_eq!(tx.push_bytes(b"x"), bad);
        assert_eq!(tx.push_bytes_timeout(b"x", SHORT), bad);
        s.set(&ring, Field::Tail, u64::MAX);
        pop_detail(rx.pop_bytes());
    });
}

//! In-process tests of the queue's byte messages (`message.rs`): lengths at
//! every frame boundary, wraparound, many producers x many consumers,
//! `task_done` per message, and damaged frames. Across processes:
//! tests/queue_mp.rs; models: loom_tests/queue.rs.

use std::time::Duration;

use super::*;
use crate::ring::SendError;
use crate::ring::message::{FRAME_DATA, Frame};
use crate::slot::{read_slot, write_slot};

fn mk(cap: usize, p: usize, c: usize) -> Queue<Frame> {
    Queue::new_in_process(QueueOptions::new(cap, p, c).disconnect_when_producers_gone(true))
        .unwrap()
}

/// A message of `len` bytes that shows where it came from and whether it is
/// whole: `[producer, seq as 4 bytes]` and then a pattern of both.
fn message(p: u8, seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| match j {
            0 => p,
            1..=4 => seq.to_le_bytes()[j - 1],
            _ => (j as u32).wrapping_mul(31).wrapping_add(seq) as u8 ^ p,
        })
        .collect()
}

/// The producer and sequence of a message made by `message` (len >= 5),
/// checking that it is whole.
fn origin(m: &[u8]) -> (u8, u32) {
    let (p, seq) = (m[0], u32::from_le_bytes(m[1..5].try_into().unwrap()));
    assert_eq!(m, message(p, seq, m.len()), "torn message {p}/{seq}");
    (p, seq)
}

#[test]
fn lengths_at_every_frame_boundary_and_one_past_a_lane() {
    let q = mk(4, 2, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let max = 4 * FRAME_DATA;
    assert_eq!(tx.max_message_len(), max);
    let mut buf = vec![1, 2, 3];
    for len in [0, 1, 55, 56, 57, max - 1, max] {
        let m = message(1, len as u32, len);
        tx.try_push_bytes(&m).unwrap();
        rx.try_pop_bytes_into(&mut buf).unwrap();
        assert_eq!(buf, m, "length {len}");
        rx.task_done().unwrap();
    }
    assert_eq!(
        tx.try_push_bytes(&vec![0; max + 1]),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    assert_eq!(
        tx.push_bytes_timeout(&vec![0; max + 1], Duration::ZERO),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    // A lane full of one message: the next does not fit now.
    tx.try_push_bytes(&vec![9; max]).unwrap();
    assert_eq!(tx.try_push_bytes(b""), Err(SendError::Full));
    assert_eq!(
        tx.push_bytes_timeout(b"", Duration::from_millis(5)),
        Err(SendError::Timeout)
    );
    assert_eq!(rx.pop_bytes().unwrap(), vec![9; max]);
    assert_eq!(rx.try_pop_bytes(), Err(PopError::Empty));
    assert_eq!(
        rx.pop_bytes_into_timeout(&mut buf, Duration::from_millis(5)),
        Err(PopError::Timeout)
    );
    assert_eq!(rx.pop_bytes_timeout(Duration::ZERO), Err(PopError::Timeout));
    q.close();
    assert_eq!(tx.try_push_bytes(b"x"), Err(SendError::Closed));
    assert_eq!(rx.pop_bytes(), Err(PopError::Disconnected));
}

#[test]
fn messages_wrap_around_a_lane() {
    // Capacity 4 frames; messages of 1 to 3 frames never line up with the
    // lane's end, so most of them wrap.
    let q = mk(4, 1, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let mut buf = Vec::new();
    for seq in 0..500u32 {
        let m = message(0, seq, 5 + (seq as usize * 37) % (3 * FRAME_DATA - 5));
        tx.try_push_bytes(&m).unwrap();
        rx.try_pop_bytes_into(&mut buf).unwrap();
        assert_eq!(origin(&buf), (0, seq));
        assert_eq!(buf.len(), m.len());
    }
    assert!(q.state().lanes[0].tail > 1000);
}

#[test]
fn many_producers_many_consumers_each_message_whole_once_in_order() {
    const N: u32 = 2_000;
    const P: u8 = 3;
    let q = mk(8, P as usize, 3);
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let mut tx = q.producer().unwrap();
            std::thread::spawn(move || {
                for seq in 0..N {
                    // 1 to 8 frames: up to a whole lane.
                    let len = 5 + (seq as usize * 53 + p as usize * 17) % (8 * FRAME_DATA - 4);
                    tx.push_bytes(&message(p, seq, len)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|c| {
            let rx = q.consumer().unwrap();
            std::thread::spawn(move || {
                let mut last = [None::<u32>; P as usize];
                let mut got = Vec::new();
                let mut buf = Vec::new();
                loop {
                    // Each consumer uses another form of pop.
                    let r = match c {
                        0 => rx.pop_bytes().map(|m| buf = m),
                        1 => rx.pop_bytes_into_timeout(&mut buf, Duration::from_millis(1)),
                        _ => rx.try_pop_bytes_into(&mut buf),
                    };
                    match r {
                        Ok(()) => {}
                        Err(PopError::Empty | PopError::Timeout) => continue,
                        Err(PopError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                    let (p, seq) = origin(&buf);
                    let l = &mut last[p as usize];
                    assert!(l.is_none_or(|l| l < seq), "producer {p} out of order");
                    *l = Some(seq);
                    got.push((p, seq));
                    rx.task_done().unwrap();
                }
                assert_eq!(rx.task_done(), Err(TaskDoneError::TooMany));
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<(u8, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let want: Vec<(u8, u32)> = (0..P).flat_map(|p| (0..N).map(move |s| (p, s))).collect();
    assert_eq!(all, want);
    assert_eq!(q.join().unwrap().abandoned, 0);
}

#[test]
fn task_done_marks_one_whole_message_and_join_counts_frames() {
    let q = mk(8, 1, 2);
    let mut tx = q.producer().unwrap();
    let (a, b) = (q.consumer().unwrap(), q.consumer().unwrap());
    // 1, 3 and 2 frames.
    for len in [10, 2 * FRAME_DATA + 1, FRAME_DATA + 1] {
        tx.push_bytes(&vec![len as u8; len]).unwrap();
    }
    assert_eq!(a.pop_bytes().unwrap().len(), 10);
    assert_eq!(a.pop_bytes().unwrap().len(), 2 * FRAME_DATA + 1);
    assert_eq!(a.held(), 4, "frames");
    a.task_done().unwrap(); // the oldest: 1 frame
    assert_eq!(a.held(), 3);
    assert_eq!(
        q.join_timeout(Duration::from_millis(5)),
        Err(JoinError::Timeout)
    );
    a.task_done().unwrap(); // 3 frames
    assert_eq!((a.held(), q.state().done), (0, 4));
    assert_eq!(a.task_done(), Err(TaskDoneError::TooMany));
    assert_eq!(b.pop_bytes().unwrap().len(), FRAME_DATA + 1);
    assert_eq!(b.held(), 2);
    drop(b); // leaves holding a 2-frame message
    assert_eq!(q.join().unwrap(), JoinReport { abandoned: 2 });
    // Item pops on a frame consumer count one frame each.
    tx.push_bytes(b"x").unwrap();
    let c = q.consumer().unwrap();
    let _frame: Frame = c.pop().unwrap();
    c.task_done().unwrap();
    assert_eq!(c.task_done(), Err(TaskDoneError::TooMany));
    assert_eq!(q.join().unwrap().abandoned, 2);
}

#[test]
fn async_forms_push_and_pop_whole_messages() {
    let q = mk(2, 1, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let m = message(0, 7, 100);
    {
        let mut push = std::pin::pin!(tx.push_bytes_async(&m));
        assert_eq!(push.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(())));
    }
    {
        let big = vec![0; 3 * FRAME_DATA];
        let mut push = std::pin::pin!(tx.push_bytes_async(&big));
        assert!(matches!(
            push.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Err(SendError::TooLarge { .. }))
        ));
    }
    let mut pop = std::pin::pin!(rx.pop_bytes_async());
    assert_eq!(pop.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(m)));
}

/// Lane 0's slot `seq`, as a frame.
fn frame_at(q: &Queue<Frame>, seq: u64) -> Frame {
    read_slot(q.mem.slot(0, seq))
}

#[test]
fn impossible_frames_are_corrupt_not_a_panic() {
    let q = mk(4, 1, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let mut buf = Vec::new();
    // (what to damage, the detail expected). Word 0 of a frame is its
    // length (low half) and index (high half).
    let cases: [(u64, u64, &str); 4] = [
        (0, 100_000, "needs 1786 frames, more than the capacity 4"),
        (0, 200, "needs 4 frames, only 2 published"),
        (0, 1 << 32 | 100, "starts with frame 1"),
        (
            1,
            100,
            "frame 1 of a 100-byte message says it is frame 0 of 100",
        ),
    ];
    for (frame, word0, want) in cases {
        tx.push_bytes(&[5; 100]).unwrap(); // 2 frames
        let h = q.state().lanes[0].head;
        let whole = frame_at(&q, h + frame);
        let mut f = whole;
        bytemuck::bytes_of_mut(&mut f)[..8].copy_from_slice(&word0.to_le_bytes());
        write_slot(q.mem.slot(0, h + frame), &f);
        match rx.try_pop_bytes_into(&mut buf) {
            Err(PopError::Corrupt(d)) => assert!(d.contains(want), "{d}"),
            other => panic!("{other:?}"),
        }
        if frame == 0 {
            // Nothing was taken: repair and take it.
            write_slot(q.mem.slot(0, h), &whole);
            assert_eq!(rx.try_pop_bytes().unwrap(), [5; 100]);
        }
        // A claimed damaged message was taken: held, like any other.
        rx.task_done().unwrap();
    }
    assert_eq!(q.join().unwrap().abandoned, 0);
}

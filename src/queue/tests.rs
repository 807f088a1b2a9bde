//! In-process tests of the queue (threads as processes); across processes:
//! tests/queue_mp.rs; damaged segments: tests/queue_corrupt.rs; models:
//! loom_tests/queue.rs.

use std::time::Duration;

use super::*;

fn mk(cap: usize, p: usize, c: usize) -> Queue<u64> {
    Queue::new_in_process(QueueOptions::new(cap, p, c)).unwrap()
}

#[test]
fn limits_are_checked() {
    for (cap, p, c) in [
        (0, 1, 1),
        (3, 1, 1),
        (4, 0, 1),
        (4, 1, 0),
        (4, MAX_PRODUCERS + 1, 1),
    ] {
        assert!(matches!(
            Queue::<u64>::new_in_process(QueueOptions::new(cap, p, c)),
            Err(Error::InvalidArgument { .. })
        ));
    }
    let q = mk(4, 2, 1);
    let _a = q.producer().unwrap();
    let _b = q.producer().unwrap();
    let e = q.producer().unwrap_err();
    assert!(matches!(e, Error::TooManyProducers { max: 2, .. }), "{e}");
    assert!(e.to_string().contains("2 live producers"), "{e}");
    let _c = q.consumer().unwrap();
    assert!(matches!(
        q.consumer(),
        Err(Error::TooManyConsumers { max: 1, .. })
    ));
}

#[test]
fn a_dropped_producer_frees_its_lane_and_its_items_stay() {
    let q = mk(4, 1, 1);
    let mut a = q.producer().unwrap();
    a.push_slice(&[1, 2]).unwrap();
    drop(a);
    let mut b = q.producer().unwrap();
    b.push(3).unwrap();
    let rx = q.consumer().unwrap();
    assert_eq!(rx.try_iter_all(), [1, 2, 3]);
}

impl Consumer<u64> {
    fn try_iter_all(&self) -> Vec<u64> {
        std::iter::from_fn(|| self.try_pop().ok()).collect()
    }
}

#[test]
fn full_lane_empty_queue_and_batches() {
    let q = mk(2, 2, 1);
    let mut a = q.producer().unwrap();
    let mut b = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    a.try_push(1).unwrap();
    a.try_push(2).unwrap();
    assert!(matches!(a.try_push(3), Err(PushError::Full(3))));
    assert_eq!(b.try_push_slice(&[10, 11, 12]).unwrap(), 2);
    assert!(matches!(
        a.push_timeout(3, Duration::from_millis(10)),
        Err(PushError::Timeout(3))
    ));
    assert_eq!(q.len(), 4);
    let mut buf = [0; 8];
    let n = rx.try_pop_into(&mut buf).unwrap();
    let m = rx.try_pop_into(&mut buf[n..]).unwrap();
    let mut got = buf[..n + m].to_vec();
    got.sort();
    assert_eq!(got, [1, 2, 10, 11]);
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(10)),
        Err(PopError::Timeout)
    );
}

#[test]
fn close_ends_pops_and_pushes_for_everyone() {
    let q = mk(4, 2, 2);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    tx.push(5).unwrap();
    q.close();
    assert!(matches!(tx.try_push(6), Err(PushError::Closed(6))));
    assert!(matches!(q.producer(), Err(Error::Closed { .. })));
    assert_eq!(rx.pop(), Ok(5));
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
}

#[test]
fn disconnect_when_producers_gone_is_opt_in() {
    let q = Queue::<u64>::new_in_process(
        QueueOptions::new(4, 2, 1).disconnect_when_producers_gone(true),
    )
    .unwrap();
    let rx = q.consumer().unwrap();
    // No producer ever attached: waiting, not disconnected.
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    let mut a = q.producer().unwrap();
    let mut b = q.producer().unwrap();
    a.push(1).unwrap();
    b.push(2).unwrap();
    drop(a);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(b);
    });
    let mut got = rx.iter().collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, [1, 2]);
    t.join().unwrap();
    assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    // Without the option, the same queue state only waits.
    let q2 = mk(4, 1, 1);
    drop(q2.producer().unwrap());
    assert_eq!(q2.consumer().unwrap().try_pop(), Err(PopError::Empty));
}

#[test]
fn per_producer_fifo_exactly_once_threads() {
    const N: u64 = 20_000;
    let q = mk(64, 3, 3);
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let mut tx = q.producer().unwrap();
            std::thread::spawn(move || {
                for i in 0..N {
                    tx.push(p << 32 | i).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let rx = q.consumer().unwrap();
            std::thread::spawn(move || {
                let mut last = [None::<u64>; 3];
                let mut got = Vec::new();
                let mut buf = [0u64; 16];
                while let Ok(n) = rx.pop_into(&mut buf) {
                    for &v in &buf[..n] {
                        let (p, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
                        assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
                        last[p] = Some(i);
                        got.push(v);
                        rx.task_done().unwrap();
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(q.join().unwrap().abandoned, 0);
    q.close();
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let want: Vec<u64> = (0..3u64)
        .flat_map(|p| (0..N).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all, want);
}

#[test]
fn task_done_is_per_consumer_and_join_counts_what_leavers_held() {
    let q = mk(4, 1, 2);
    let mut tx = q.producer().unwrap();
    let (a, b) = (q.consumer().unwrap(), q.consumer().unwrap());
    assert_eq!(a.task_done(), Err(TaskDoneError::TooMany));
    tx.push_slice(&[1, 2, 3]).unwrap();
    assert_eq!(
        q.join_timeout(Duration::from_millis(10)),
        Err(JoinError::Timeout)
    );
    a.pop().unwrap();
    b.pop().unwrap();
    assert_eq!(b.held(), 1);
    assert_eq!(a.task_done(), Ok(()));
    assert_eq!(a.task_done(), Err(TaskDoneError::TooMany));
    drop(b); // abandons its item
    assert_eq!(
        tx.join_timeout(Duration::from_millis(10)),
        Err(JoinError::Timeout)
    );
    a.pop().unwrap();
    a.task_done().unwrap();
    assert_eq!(tx.join().unwrap(), JoinReport { abandoned: 1 });
    assert_eq!(a.join().unwrap().abandoned, 1);
    let s = q.state();
    assert_eq!((s.done, s.abandoned), (2, 1));
    // A new consumer in the freed entry starts holding nothing.
    let c = q.consumer().unwrap();
    assert_eq!(c.held(), 0);
}

#[test]
fn join_with_every_consumer_gone_and_items_untaken_is_disconnected() {
    let q = mk(4, 1, 1);
    let mut tx = q.producer().unwrap();
    tx.push(1).unwrap();
    drop(q.consumer().unwrap());
    assert_eq!(q.join(), Err(JoinError::Disconnected));
}

#[test]
fn producer_blocked_on_a_full_lane_wakes_when_a_consumer_takes() {
    let q = mk(1, 1, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    tx.push(1).unwrap();
    let t = std::thread::spawn(move || {
        tx.push(2).unwrap();
        tx
    });
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(rx.pop(), Ok(1));
    let _tx = t.join().unwrap();
    assert_eq!(rx.pop(), Ok(2));
}

#[test]
fn a_consumer_stays_on_a_busy_lane_for_a_bounded_streak() {
    // Two full lanes of 64 (items 0.. and 1000..): one-item pops take 32
    // in a row from one lane (one look a claim), then 32 from the other;
    // never more than 32 of one while the other waits.
    let q = mk(64, 2, 1);
    let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
    let rx = q.consumer().unwrap();
    for i in 0..64 {
        a.push(i).unwrap();
        b.push(1000 + i).unwrap();
    }
    let got: Vec<u64> = (0..128).map(|_| rx.try_pop().unwrap()).collect();
    let runs: Vec<(bool, usize)> = got
        .chunk_by(|x, y| (*x < 1000) == (*y < 1000))
        .map(|r| (r[0] < 1000, r.len()))
        .collect();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.iter().all(|&(_, n)| n == 32), "{runs:?}");
    // Each producer's items in order.
    let (lo, hi): (Vec<u64>, Vec<u64>) = got.iter().partition(|&&x| x < 1000);
    assert!(lo.is_sorted() && hi.is_sorted());
}

#[test]
fn a_damaged_lane_does_not_keep_a_consumer_from_the_others() {
    // Lane 0's tail scribbled past its capacity, lane 1 holding items: a
    // pop that reaches lane 0 reports it, and the next scans start past it,
    // so lane 1's items are still delivered.
    let q = mk(4, 2, 1);
    let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
    a.push(1).unwrap();
    b.push_slice(&[10, 11]).unwrap();
    let lane_a = a.lane();
    q.mem.lane(lane_a).tail.store(1 + 4 + 5, Ordering::Relaxed);
    let rx = q.consumer().unwrap();
    let mut got = Vec::new();
    let mut corrupt = 0;
    for _ in 0..6 {
        match rx.try_pop() {
            Ok(v) => got.push(v),
            Err(PopError::Corrupt(d)) => {
                assert!(d.contains(&format!("lane {lane_a}")), "{d}");
                corrupt += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, [10, 11]);
    assert!(corrupt >= 1);
}

/// Consumers begin their scans at different lanes (their registry entries):
/// with an item in each of two lanes, the first consumer takes the first
/// lane's and the second the second's, each without touching the other's
/// lane. A change that starts every consumer at lane 0 fails it.
#[test]
fn consumers_start_their_scans_at_different_lanes() {
    let q = mk(4, 2, 2);
    let mut a = q.producer().unwrap();
    let mut b = q.producer().unwrap();
    a.push(10).unwrap();
    b.push(20).unwrap();
    let first = q.consumer().unwrap();
    let second = q.consumer().unwrap();
    assert_eq!(second.try_pop(), Ok(20));
    assert_eq!(first.try_pop(), Ok(10));
}

/// The queue shares the ring's error types; their texts name neither kind,
/// so a queue's user is never told about "the ring".
#[test]
fn error_texts_fit_a_queue() {
    let q = mk(2, 1, 1);
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let empty = rx.try_pop().unwrap_err().to_string();
    tx.push_slice(&[1, 2]).unwrap();
    let full = tx.try_push(3).unwrap_err().to_string();
    q.close();
    let closed = tx.try_push(4).unwrap_err().to_string();
    assert_eq!(rx.try_iter_all(), [1, 2]);
    let drained = rx.try_pop().unwrap_err().to_string();
    for (text, word) in [
        (&empty, "empty"),
        (&full, "full"),
        (&closed, "closed"),
        (&drained, "drained"),
    ] {
        assert!(text.contains(word), "{text}");
        assert!(!text.contains("ring"), "{text}");
    }
}

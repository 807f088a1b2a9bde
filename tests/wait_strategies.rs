//! Every `WaitStrategy` on the ring and the queue: items delivered exactly
//! once, timeouts honoured, a dead producer noticed by consumers that never
//! sleep, and no futex call from a handle that never sleeps.
#![cfg(not(shmkit_loom))]
// Test bookkeeping (a shared count), not algorithm code.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
use std::time::Duration;

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::ring::{PopError, Ring, WaitStrategy};
use shmkit::{Queue, QueueOptions};

const ENTRY: &str = "child_entry";

const ALL: [WaitStrategy; 4] = [
    WaitStrategy::Spin,
    WaitStrategy::SpinYield,
    WaitStrategy::SpinThenSleep(Duration::from_micros(60)),
    WaitStrategy::Block,
];

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let ring = Ring::<u64>::open(&std::env::var("RING").unwrap()).unwrap();
    match role.as_str() {
        "push_one_then_park" => {
            let mut tx = ring.producer().unwrap();
            tx.push(7).unwrap();
            loop {
                std::thread::park(); // until killed
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn each_strategy_delivers_every_item_once_on_the_ring() {
    const N: u64 = 50_000;
    for w in ALL {
        let ring = Ring::<u64>::new_in_process(64).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.set_wait(w);
        let mut rx = ring.consumer().unwrap();
        rx.set_wait(w);
        assert_eq!(rx.wait_strategy(), w);
        let feeder = std::thread::spawn(move || {
            for v in 0..N {
                tx.push(v).unwrap();
            }
        });
        let (mut count, mut sum) = (0, 0);
        while let Ok(v) = rx.pop() {
            count += 1;
            sum += v;
        }
        feeder.join().unwrap();
        assert_eq!((count, sum), (N, N * (N - 1) / 2), "{w:?}");
        if matches!(w, WaitStrategy::Spin | WaitStrategy::SpinYield) {
            assert_eq!(rx.futex_calls(), 0, "{w:?} never sleeps");
        }
    }
}

#[test]
fn each_strategy_delivers_every_item_once_on_the_queue() {
    const N: u64 = 20_000;
    for w in ALL {
        let q = Queue::<u64>::new_in_process(QueueOptions::new(32, 2, 2)).unwrap();
        // Items taken by both consumers together: each stops once all are.
        let taken = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let mut tx = q.producer().unwrap();
                tx.set_wait(w);
                std::thread::spawn(move || {
                    for v in 0..N {
                        tx.push(p * N + v).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = q.consumer().unwrap();
                rx.set_wait(w);
                let taken = taken.clone();
                std::thread::spawn(move || {
                    let (mut count, mut sum) = (0u64, 0u64);
                    while taken.load(StdOrdering::SeqCst) < 2 * N {
                        match rx.pop_timeout(Duration::from_millis(20)) {
                            Ok(v) => {
                                taken.fetch_add(1, StdOrdering::SeqCst);
                                count += 1;
                                sum += v;
                            }
                            Err(PopError::Timeout) => {}
                            Err(e) => panic!("{w:?}: {e}"),
                        }
                    }
                    (count, sum)
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let (mut count, mut sum) = (0, 0);
        for c in consumers {
            let (n, s) = c.join().unwrap();
            count += n;
            sum += s;
        }
        let total = 2 * N;
        assert_eq!((count, sum), (total, total * (total - 1) / 2), "{w:?}");
    }
}

#[test]
fn each_strategy_honours_a_timeout() {
    for w in ALL {
        let ring = Ring::<u64>::new_in_process(8).unwrap();
        let _tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_wait(w);
        assert!(
            matches!(
                rx.pop_timeout(Duration::from_millis(30)),
                Err(PopError::Timeout)
            ),
            "{w:?}"
        );
    }
}

#[test]
fn consumers_that_never_sleep_notice_a_killed_producer() {
    for w in [WaitStrategy::Spin, WaitStrategy::SpinYield] {
        let r = Cleanup::new("waitdead");
        let ring = Ring::<u64>::create(r.name(), 8).unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_wait(w);
        let mut child = Reaper(Some(
            child_command(ENTRY, "push_one_then_park")
                .env("RING", r.name())
                .spawn()
                .unwrap(),
        ));
        assert_eq!(rx.pop().unwrap(), 7);
        child.0.as_mut().unwrap().kill().unwrap();
        assert!(matches!(rx.pop(), Err(PopError::Disconnected)), "{w:?}");
        assert_eq!(rx.futex_calls(), 0, "{w:?} never sleeps");
    }
}

/// Run `f` on a thread; its result, or a failure naming `what` if it has
/// not returned within 20 s (a hang fails the test instead of the suite).
fn within_limit<R: Send + 'static>(what: String, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[test]
fn each_strategy_lets_a_producer_on_a_full_ring_time_out_and_see_consumers_gone() {
    use shmkit::ring::PushError;
    for w in ALL {
        let ring = Ring::<u64>::new_in_process(8).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        tx.set_wait(w);
        for v in 0..8 {
            tx.push(v).unwrap();
        }
        let (tx, got) = within_limit(format!("{w:?}: push_timeout on a full ring"), move || {
            let got = tx.push_timeout(8, Duration::from_millis(30));
            (tx, got)
        });
        assert!(matches!(got, Err(PushError::Timeout(8))), "{w:?}: {got:?}");
        drop(rx);
        let mut tx = tx;
        let got = within_limit(format!("{w:?}: push with every consumer gone"), move || {
            tx.push(9)
        });
        assert!(
            matches!(got, Err(PushError::Disconnected(9))),
            "{w:?}: {got:?}"
        );
        drop(ring);
    }
}

/// `Duration::MAX` (or any timeout past what an `Instant` holds) means "no
/// limit" in every `*_timeout` call, never an `Instant` overflow panic: each
/// call below has what it waits for at hand and returns at once.
#[test]
fn a_timeout_too_long_for_an_instant_is_no_limit() {
    let forever = Duration::MAX;
    let ring = Ring::<u64>::new_in_process(8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    tx.push_timeout(1, forever).unwrap();
    tx.push_timeout(2, forever).unwrap();
    assert_eq!(rx.pop_timeout(forever), Ok(1));
    let mut buf = [0u64; 4];
    assert_eq!(rx.pop_into_timeout(&mut buf, forever), Ok(1));
    assert_eq!(buf[0], 2);
    rx.task_done().unwrap();
    rx.task_done().unwrap();
    assert_eq!(tx.join_timeout(forever).unwrap().abandoned, 0);
    drop(rx);
    let mut sole = ring.sole_consumer().unwrap();
    tx.push(3).unwrap();
    tx.push(4).unwrap();
    assert_eq!(sole.pop_timeout(forever), Ok(3));
    assert_eq!(sole.pop_into_timeout(&mut buf, forever), Ok(1));
    assert_eq!(buf[0], 4);

    let q = Queue::<u64>::new_in_process(QueueOptions::new(4, 1, 1)).unwrap();
    let mut qtx = q.producer().unwrap();
    let qrx = q.consumer().unwrap();
    qtx.push_timeout(5, forever).unwrap();
    assert_eq!(qrx.pop_timeout(forever), Ok(5));
    qrx.task_done().unwrap();
    assert_eq!(q.join_timeout(forever).unwrap().abandoned, 0);
    assert_eq!(qtx.join_timeout(forever).unwrap().abandoned, 0);
    assert_eq!(qrx.join_timeout(forever).unwrap().abandoned, 0);

    let pipe = shmkit::pipe::Pipe::create_anonymous(8).unwrap();
    let (mut a, mut b) = (pipe.end_a().unwrap(), pipe.end_b().unwrap());
    a.send_timeout(&6u64, forever).unwrap();
    assert_eq!(b.recv_timeout::<u64>(forever), Ok(6));
    a.send_bytes_timeout(b"seven", forever).unwrap();
    assert_eq!(b.recv_bytes_timeout(forever).unwrap(), b"seven");

    // Opening waits up to `ready_timeout` for a creator to finish.
    let seg = Cleanup::new("forever-ready");
    let made = shmkit::SharedArray::<u64>::create(seg.name(), 4).unwrap();
    let opts = shmkit::OpenOptions::new().ready_timeout(forever);
    let opened = shmkit::SharedArray::<u64>::open_with(seg.name(), Some(4), &opts).unwrap();
    made[0].store(8, shmkit::Ordering::Relaxed);
    assert_eq!(opened[0].load(shmkit::Ordering::Relaxed), 8);
}

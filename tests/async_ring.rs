//! The async ring calls under tokio's multi-thread runtime: exactly-once
//! delivery to async consumers fed by another process, cancellation that
//! loses nothing, one waiter thread however many calls are pending, a dead
//! producer ending a pending pop, and async pushes waiting for room.
#![cfg(not(shmkit_loom))]
// Test bookkeeping (a wake counter), not algorithm code.
#![allow(clippy::disallowed_types)]

#[path = "common/aio.rs"]
mod aio;
mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use aio::tokio_runtime;
use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::ring::{PopError, PushError, Ring, WaitStrategy};

const ENTRY: &str = "child_entry";

fn env(key: &str) -> String {
    std::env::var(key).unwrap()
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let ring = Ring::<u64>::open(&env("RING")).unwrap();
    let mut tx = ring.producer().unwrap();
    match role.as_str() {
        "produce" => {
            let n: u64 = env("N").parse().unwrap();
            for v in 0..n {
                tx.push(v).unwrap();
            }
            // Dropping the producer closes the ring: consumers drain, then
            // get Disconnected.
        }
        "produce_one_then_park" => {
            tx.push(41).unwrap();
            loop {
                std::thread::park(); // until killed
            }
        }
        other => panic!("unknown role {other}"),
    }
}

const FORK_ENTRY: &str = "fork_entry";

/// Whether a pop parked in this process is woken by a push within 20 s.
fn a_parked_pop_is_woken() -> bool {
    let ring = Ring::<u64>::new_in_process(4).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_wait(WaitStrategy::Block); // park at the first empty poll
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut pop = pin!(rx.pop_async());
    assert!(pop.as_mut().poll(&mut cx).is_pending());
    tx.push(7).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter.0.load(StdOrdering::SeqCst) == 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    matches!(pop.as_mut().poll(&mut cx), Poll::Ready(Ok(7)))
}

/// A child process that forks (never the test runner itself): the
/// parent's waiter thread is started first, and does not exist in the
/// forked grandchild, whose parked pop must still be woken.
#[test]
fn fork_entry() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "park_fork_park");
    assert!(a_parked_pop_is_woken(), "before the fork");
    // SAFETY: the forked child only runs Rust code that is fine after a
    // fork in a threaded program with glibc (allocation, thread creation,
    // futexes), then `_exit`s without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(a_parked_pop_is_woken).unwrap_or(false);
        // SAFETY: ends the forked child at once, as a forked child should.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "in a forked child, a parked pop was never woken (status {status:#x})"
    );
}

#[test]
fn a_parked_pop_is_woken_in_a_forked_child() {
    Reaper(Some(
        child_command(FORK_ENTRY, "park_fork_park").spawn().unwrap(),
    ))
    .wait_ok();
}

#[test]
fn async_consumers_get_each_item_of_another_process_once() {
    const N: u64 = 200_000;
    let r = Cleanup::new("aring");
    let ring = Ring::<u64>::create(r.name(), 256).unwrap();
    // Consumers first, so the producer's close cannot come before them.
    let consumers: Vec<_> = (0..3).map(|_| ring.consumer().unwrap()).collect();
    let child = Reaper(Some(
        child_command(ENTRY, "produce")
            .env("RING", r.name())
            .env("N", N.to_string())
            .spawn()
            .unwrap(),
    ));
    let (count, sum) = tokio_runtime().block_on(async {
        let tasks: Vec<_> = consumers
            .into_iter()
            .map(|rx| {
                tokio::spawn(async move {
                    let (mut count, mut sum, mut last) = (0u64, 0u64, None);
                    loop {
                        match rx.pop_async().await {
                            Ok(v) => {
                                // One producer: each consumer sees its
                                // items in the order pushed.
                                assert!(last.is_none_or(|l| l < v), "{last:?} then {v}");
                                last = Some(v);
                                count += 1;
                                sum += v;
                            }
                            Err(PopError::Disconnected) => return (count, sum),
                            Err(e) => panic!("pop_async: {e}"),
                        }
                    }
                })
            })
            .collect();
        let mut total = (0, 0);
        for t in tasks {
            let (c, s) = t.await.unwrap();
            total.0 += c;
            total.1 += s;
        }
        total
    });
    child.wait_ok();
    assert_eq!((count, sum), (N, N * (N - 1) / 2));
}

#[test]
fn a_cancelled_pop_loses_no_item() {
    const N: u64 = 20_000;
    let ring = Ring::<u64>::new_in_process(64).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let feeder = std::thread::spawn(move || {
        for v in 0..N {
            tx.push(v).unwrap();
            if v % 512 == 0 {
                // Gaps, so that many pops are pending when cancelled.
                std::thread::yield_now();
            }
        }
    });
    let (got, cancelled) = tokio_runtime().block_on(async {
        let (mut got, mut cancelled) = (Vec::new(), 0u64);
        loop {
            match tokio::time::timeout(Duration::from_micros(20), rx.pop_async()).await {
                Ok(Ok(v)) => got.push(v),
                Ok(Err(PopError::Disconnected)) => return (got, cancelled),
                Ok(Err(e)) => panic!("pop_async: {e}"),
                Err(_elapsed) => cancelled += 1,
            }
        }
    });
    feeder.join().unwrap();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "after {cancelled} cancelled pops"
    );
}

/// A waker that counts its wakes.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

/// Threads of this process named `shmkit-waiter`.
fn waiter_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "shmkit-waiter")
        .count()
}

#[test]
fn many_pending_pops_share_one_waiter_thread_and_all_wake() {
    park_and_wake(40);
}

/// More parked words than one futex_waitv takes (128): those past it are
/// polled, and each is still woken by its push.
#[test]
fn pops_past_the_kernels_limit_all_wake() {
    park_and_wake(300);
}

/// Park `K` pops, each on its own ring, then push one item to each: every
/// one is woken and gets its item.
fn park_and_wake(k: usize) {
    let rings: Vec<Ring<u64>> = (0..k).map(|_| Ring::new_in_process(4).unwrap()).collect();
    let mut txs: Vec<_> = rings.iter().map(|r| r.producer().unwrap()).collect();
    let rxs: Vec<_> = rings.iter().map(|r| r.consumer().unwrap()).collect();
    let counters: Vec<_> = (0..k)
        .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
        .collect();
    let wakers: Vec<Waker> = counters.iter().map(|c| Waker::from(c.clone())).collect();
    let mut futs: Vec<_> = rxs.iter().map(|rx| Box::pin(rx.pop_async())).collect();
    let mut parked_at = vec![0; k];
    for (i, f) in futs.iter_mut().enumerate() {
        // Poll through the spin phase (each such poll wakes its own waker
        // at once) until the future parks: a poll that leaves it unwoken.
        let mut cx = Context::from_waker(&wakers[i]);
        loop {
            let before = counters[i].0.load(StdOrdering::SeqCst);
            assert!(
                f.as_mut().poll(&mut cx).is_pending(),
                "an empty ring gave an item"
            );
            if counters[i].0.load(StdOrdering::SeqCst) == before {
                parked_at[i] = before;
                break;
            }
        }
    }
    // The other tests of this binary may have started it already: one
    // thread per process, never one per parked call.
    assert_eq!(waiter_threads(), 1, "one waiter thread for {k} parked pops");
    for (i, tx) in txs.iter_mut().enumerate() {
        tx.push(i as u64).unwrap();
    }
    // Each parked pop is woken (by its push, through the waiter thread).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, c) in counters.iter().enumerate() {
        while c.0.load(StdOrdering::SeqCst) == parked_at[i] {
            assert!(Instant::now() < deadline, "parked pop {i} was never woken");
            std::thread::yield_now();
        }
    }
    for (i, f) in futs.iter_mut().enumerate() {
        let mut cx = Context::from_waker(&wakers[i]);
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(v)) => assert_eq!(v, i as u64),
            other => panic!("pop {i} after its wake: {other:?}"),
        }
    }
}

#[test]
fn a_killed_producer_ends_a_pending_pop() {
    let r = Cleanup::new("adead");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let rx = ring.consumer().unwrap();
    let mut child = Reaper(Some(
        child_command(ENTRY, "produce_one_then_park")
            .env("RING", r.name())
            .spawn()
            .unwrap(),
    ));
    tokio_runtime().block_on(async {
        assert_eq!(rx.pop_async().await.unwrap(), 41);
        let pending = tokio::spawn(async move { rx.pop_async().await });
        child.0.as_mut().unwrap().kill().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), pending)
            .await
            .expect("a pop pending on a dead producer's ring hung")
            .unwrap();
        assert!(matches!(got, Err(PopError::Disconnected)), "{got:?}");
    });
}

#[test]
fn an_async_push_waits_for_room_and_bytes_round_trip() {
    let ring = Ring::<u64>::new_in_process(2).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    tokio_runtime().block_on(async {
        let pusher = tokio::spawn(async move {
            for v in 0..1000u64 {
                tx.push_async(v).await.unwrap();
            }
        });
        let mut want = 0;
        while want < 1000 {
            assert_eq!(rx.pop_async().await.unwrap(), want);
            want += 1;
        }
        pusher.await.unwrap();
    });

    // The consumers leave: a push pending on a full ring ends.
    let ring = Ring::<u64>::new_in_process(2).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    let waker = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
    let mut cx = Context::from_waker(&waker);
    {
        let mut f = pin!(tx.push_async(3));
        assert!(
            f.as_mut().poll(&mut cx).is_pending(),
            "a full ring took an item"
        );
        drop(rx);
        // Polled again until it ends (through the spin phase first).
        let deadline = Instant::now() + Duration::from_secs(30);
        let end = loop {
            if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                break r;
            }
            assert!(Instant::now() < deadline, "a push on a deserted ring hung");
            std::thread::yield_now();
        };
        assert!(matches!(end, Err(PushError::Disconnected(3))), "{end:?}");
    }

    let ring = Ring::<shmkit::ring::message::Frame>::new_in_process(64).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    tokio_runtime().block_on(async {
        let big = vec![7u8; 1000];
        let sender = tokio::spawn(async move {
            for i in 0..200u32 {
                let msg: Vec<u8> = big.iter().map(|b| b ^ i as u8).collect();
                tx.push_bytes_async(&msg).await.unwrap();
            }
            let too_big = vec![0u8; 64 * 64 * 2];
            assert!(tx.push_bytes_async(&too_big).await.is_err());
        });
        for i in 0..200u32 {
            let msg = rx.pop_bytes_async().await.unwrap();
            assert_eq!(msg.len(), 1000);
            assert!(msg.iter().all(|&b| b == 7 ^ i as u8), "message {i} changed");
        }
        sender.await.unwrap();
    });
}

#[test]
fn a_pipe_round_trips_from_async_code() {
    let pipe = shmkit::pipe::Pipe::create_anonymous(4096).unwrap();
    let (mut a, mut b) = (pipe.end_a().unwrap(), pipe.end_b().unwrap());
    tokio_runtime().block_on(async {
        let echo = tokio::spawn(async move {
            while let Ok(msg) = b.recv_bytes_async().await {
                b.send_bytes_async(&msg).await.unwrap();
            }
        });
        for i in 0..500u32 {
            let msg = i.to_le_bytes().repeat(1 + i as usize % 40);
            a.send_bytes_async(&msg).await.unwrap();
            assert_eq!(a.recv_bytes_async().await.unwrap(), msg);
        }
        a.close();
        echo.await.unwrap();
    });
}

/// A pop cancelled while parked leaves nothing behind: once every handle
/// is dropped the creator's segment is unlinked at once, as after a
/// blocking pop (the waiter thread kept it mapped, and named, until the
/// next liveness slice, and for good if the process exited first).
#[test]
fn a_cancelled_parked_pop_keeps_no_segment_alive() {
    let r = Cleanup::new("acancel");
    let path = std::path::Path::new("/dev/shm").join(r.name());
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_wait(WaitStrategy::Block); // park at the first empty poll
    {
        let mut cx = Context::from_waker(Waker::noop());
        let mut pop = pin!(rx.pop_async());
        assert!(pop.as_mut().poll(&mut cx).is_pending());
    } // cancelled here
    drop((tx, rx, ring));
    assert!(
        !path.exists(),
        "a cancelled pop kept {} alive after every handle was dropped",
        path.display()
    );
}

/// Every async call's future can move between an executor's threads
/// (`tokio::spawn` needs it), the join futures included.
#[test]
fn the_async_calls_futures_are_send() {
    fn send<F: Future + Send>(_: F) {}
    let ring = Ring::<u64>::new_in_process(4).unwrap();
    let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    send(rx.pop_async());
    send(tx.push_async(1));
    let q = shmkit::Queue::<u64>::new_in_process(shmkit::QueueOptions::new(8, 2, 1)).unwrap();
    let (mut qtx, qrx) = (q.producer().unwrap(), q.consumer().unwrap());
    send(qrx.pop_async());
    send(qrx.join_async());
    send(qtx.push_async(1));
    send(qtx.join_async());
    send(q.join_async());
    let pipe = shmkit::pipe::Pipe::create_anonymous(4096).unwrap();
    let mut a = pipe.end_a().unwrap();
    send(a.recv_bytes_async());
    send(a.send_bytes_async(b"x"));
}

/// A parked pop polled again (as an executor may, for its own reasons)
/// with another waker: the push wakes the latest waker.
#[test]
fn a_parked_pop_polled_again_wakes_its_latest_waker() {
    let ring = Ring::<u64>::new_in_process(4).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_wait(WaitStrategy::Block);
    let (first, latest) = (
        Arc::new(Counter(AtomicUsize::new(0))),
        Arc::new(Counter(AtomicUsize::new(0))),
    );
    let mut pop = pin!(rx.pop_async());
    for c in [&first, &latest] {
        let waker = Waker::from(c.clone());
        assert!(
            pop.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    tx.push(7).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while latest.0.load(StdOrdering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the re-polled pop was never woken"
        );
        std::thread::yield_now();
    }
    let waker = Waker::from(latest.clone());
    let got = pop.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(matches!(got, Poll::Ready(Ok(7))), "{got:?}");
}

struct Panics(AtomicUsize);

impl Wake for Panics {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
        panic!("this waker panics (on purpose)");
    }
}

/// A waker that panics when woken does not end the waiter thread: pops
/// parked afterwards are still woken.
#[test]
fn a_panicking_waker_leaves_the_waiter_running() {
    {
        let ring = Ring::<u64>::new_in_process(4).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_wait(WaitStrategy::Block);
        let panics = Arc::new(Panics(AtomicUsize::new(0)));
        let waker = Waker::from(panics.clone());
        let mut pop = pin!(rx.pop_async());
        assert!(
            pop.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        tx.push(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while panics.0.load(StdOrdering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the pop was never woken");
            std::thread::yield_now();
        }
    }
    assert!(
        a_parked_pop_is_woken(),
        "a pop parked after a panicking waker was never woken"
    );
}

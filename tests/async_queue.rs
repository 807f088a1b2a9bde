//! The queue's async calls under tokio's multi-thread runtime: producers in
//! other processes, async consumers marking items done, an async join that
//! resolves when they are, async pushes waiting for room, and cancelled
//! pops that lose nothing.
#![cfg(not(shmkit_loom))]

#[path = "common/aio.rs"]
mod aio;
mod common;

use std::time::Duration;

use aio::tokio_runtime;
use common::{Cleanup, child_role, child_spawn, join_ok};
use shmkit::ring::PopError;
use shmkit::{Queue, QueueOptions};

const ENTRY: &str = "child_entry";
const N: u64 = 50_000;

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let w = shmkit::worker::current().unwrap().unwrap();
    let q = Queue::<u64>::open(&w.args()[0]).unwrap();
    match role.as_str() {
        "produce" => {
            let base = w.index() as u64 * N;
            let mut tx = q.producer().unwrap();
            for v in 0..N {
                tx.push(base + v).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn async_consumers_and_an_async_join_with_producer_processes() {
    let name = Cleanup::new("aqueue");
    let opts = QueueOptions::new(64, 4, 4).disconnect_when_producers_gone(true);
    let q = Queue::<u64>::create(name.name(), opts).unwrap();
    let consumers: Vec<_> = (0..2).map(|_| q.consumer().unwrap()).collect();
    let pool = child_spawn(ENTRY, "produce")
        .count(2)
        .arg(name.name())
        .start()
        .unwrap();
    let (count, sum, report) = tokio_runtime().block_on(async {
        let tasks: Vec<_> = consumers
            .into_iter()
            .map(|rx| {
                tokio::spawn(async move {
                    let (mut count, mut sum) = (0u64, 0u64);
                    loop {
                        match rx.pop_async().await {
                            Ok(v) => {
                                count += 1;
                                sum += v;
                                rx.task_done().unwrap();
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
        // Every item was taken and marked done: the join resolves at once,
        // with nothing abandoned.
        let report = tokio::time::timeout(Duration::from_secs(30), q.join_async())
            .await
            .expect("join_async hung")
            .unwrap();
        (total.0, total.1, report)
    });
    join_ok(pool);
    let n = 2 * N;
    assert_eq!((count, sum), (n, n * (n - 1) / 2));
    assert_eq!(report.abandoned, 0);
}

#[test]
fn a_join_pending_until_the_last_task_done() {
    let q = Queue::<u64>::new_in_process(QueueOptions::new(8, 1, 1)).unwrap();
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    tokio_runtime().block_on(async {
        tx.push_async(1).await.unwrap();
        assert_eq!(rx.pop_async().await.unwrap(), 1);
        let join = tokio::spawn(async move {
            let report = q.join_async().await;
            (report, q)
        });
        // The join cannot resolve before this task_done: the item is held.
        tokio::task::yield_now().await;
        assert!(!join.is_finished());
        rx.task_done().unwrap();
        let (report, _q) = tokio::time::timeout(Duration::from_secs(30), join)
            .await
            .expect("join_async missed the task_done")
            .unwrap();
        assert_eq!(report.unwrap().abandoned, 0);
    });
}

#[test]
fn async_pushes_wait_for_room_and_cancelled_pops_lose_nothing() {
    const M: u64 = 5_000;
    let q = Queue::<u64>::new_in_process(QueueOptions::new(2, 1, 1)).unwrap();
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    let got = tokio_runtime().block_on(async {
        let pusher = tokio::spawn(async move {
            for v in 0..M {
                tx.push_async(v).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < M as usize {
            if let Ok(r) = tokio::time::timeout(Duration::from_micros(20), rx.pop_async()).await {
                got.push(r.unwrap());
            }
        }
        pusher.await.unwrap();
        got
    });
    assert_eq!(got, (0..M).collect::<Vec<_>>());
}

//! `shmkit bridge out` and `shmkit bridge in` as a user runs them, against a
//! real `redis-server` started by the test: items pushed into one queue come
//! out of the other, every entry acknowledged, and both commands print their
//! stats and exit 0 when their queues are closed.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../shmkit-bridge/tests/redis_server/mod.rs"]
mod redis_server;

use std::process::{Command, Stdio};

use common::{CHILD_LIMIT, Cleanup, Reaper};
use redis_server::RedisServer;
use shmkit::queue::{Queue, QueueOptions};

fn bridge(args: &[&str]) -> Reaper {
    let child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .arg("bridge")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Reaper(Some(child))
}

/// Wait for the command to exit 0; its stderr.
fn stderr_of(mut r: Reaper) -> String {
    let child = r.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "shmkit bridge: {}\n{err}", out.status);
    err
}

#[test]
fn out_and_in_commands_carry_items_through_redis() {
    const N: u64 = 2_000;
    let redis = RedisServer::start();
    let (qo_name, qi_name) = (Cleanup::new("cli-out"), Cleanup::new("cli-in"));
    let qout = Queue::<u64>::create(qo_name.name(), QueueOptions::new(256, 1, 2)).unwrap();
    let qin = Queue::<u64>::create(qi_name.name(), QueueOptions::new(256, 1, 2)).unwrap();
    let url = redis.url.as_str();
    let out = bridge(&[
        "out",
        "--queue",
        qo_name.name(),
        "--redis",
        url,
        "--stream",
        "cli",
        "--stats",
    ]);
    let inb = bridge(&[
        "in",
        "--queue",
        qi_name.name(),
        "--redis",
        url,
        "--stream",
        "cli",
        "--group",
        "g",
        "--stats",
    ]);
    let mut tx = qout.producer().unwrap();
    for i in 0..N {
        tx.push_timeout(i, CHILD_LIMIT).unwrap();
    }
    let rx = qin.consumer().unwrap();
    let mut sum = 0;
    for _ in 0..N {
        sum += rx.pop_timeout(CHILD_LIMIT).unwrap();
        rx.task_done().unwrap();
    }
    assert_eq!(sum, N * (N - 1) / 2);
    qout.close();
    let out_err = stderr_of(out);
    assert!(out_err.contains(&format!("forwarded={N}")), "{out_err}");
    qin.join_timeout(CHILD_LIMIT).unwrap();
    qin.close();
    let in_err = stderr_of(inb);
    let last = in_err.lines().last().unwrap_or("");
    assert!(last.contains(&format!("acked={N} pending=0")), "{in_err}");
}

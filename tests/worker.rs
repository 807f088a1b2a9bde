//! The worker helper (`shmkit::worker`) with this test binary as the
//! workers: roles, indices and arguments arrive; a panicking, killed or hung
//! worker is an error value naming it; a failed worker's segments are
//! removed; dropping a pool leaves no process behind; a worker dies with
//! its parent.
#![cfg(not(shmkit_loom))]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{CHILD_LIMIT, Cleanup, child_role, child_spawn, join_ok};
use shmkit::process::ProcToken;
use shmkit::worker::{self, Failure, Pool, Spawn};
use shmkit::{CreateOptions, Ordering, SharedArray};

const ENTRY: &str = "child_entry";

/// Entry point of every worker. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let w = worker::current().unwrap().unwrap();
    match role.as_str() {
        // Record index, count and arguments where the parent can check them.
        "report" => {
            let out = SharedArray::<u64>::open_inherited("OUT").unwrap();
            let (a, b): (u64, String) = (w.arg(0).unwrap(), w.arg(1).unwrap());
            assert_eq!(b, "two words");
            assert!(w.arg::<u64>(1).is_err() && w.arg::<u64>(2).is_err());
            out[w.index()].store(
                1000 * w.count() as u64 + a + w.index() as u64,
                Ordering::SeqCst,
            );
        }
        "panic" => panic!("worker {} panics on purpose", w.index()),
        "exit3" => std::process::exit(3),
        // Create a segment, keep its name, then die without running drops.
        "create_and_abort" => {
            let arr =
                SharedArray::<u64>::create_with(&w.args()[0], 4, &CreateOptions::new().keep(true))
                    .unwrap();
            drop(arr);
            std::process::abort();
        }
        "create_and_exit" => {
            let arr =
                SharedArray::<u64>::create_with(&w.args()[0], 4, &CreateOptions::new().keep(true))
                    .unwrap();
            drop(arr);
        }
        // Tell the parent we run (cell 0 = our pid), then wait to be killed.
        "hang" => {
            let out = SharedArray::<u64>::open_inherited("OUT").unwrap();
            out[w.index()].store(u64::from(std::process::id()), Ordering::SeqCst);
            loop {
                std::thread::park();
            }
        }
        // Start a hanging worker of our own, publish its pid, then hang.
        "parent_of_hang" => {
            let out = SharedArray::<u64>::open_inherited("OUT").unwrap();
            let pool = child_spawn(ENTRY, "hang")
                .die_with_parent(true)
                .share(&out, "OUT")
                .start()
                .unwrap();
            while out[0].load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            out[1].store(1, Ordering::SeqCst);
            let _keep = pool;
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Wait until cell `i` of `out` is not 0 (a worker reports), bounded.
fn wait_nonzero(out: &SharedArray<u64>, i: usize) -> u64 {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        let v = out[i].load(Ordering::SeqCst);
        if v != 0 {
            return v;
        }
        assert!(Instant::now() < deadline, "worker never reported");
        std::thread::yield_now();
    }
}

/// Not running, and reaped: no /proc entry (or one of a newer process).
fn gone(pid: u32, was: ProcToken) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists() || ProcToken::of_pid(pid).is_some_and(|t| t != was)
}

#[test]
fn workers_get_role_index_count_and_args() {
    let out = SharedArray::<u64>::create_anonymous(3).unwrap();
    let pool = child_spawn(ENTRY, "report")
        .count(3)
        .arg(7)
        .arg("two words")
        .share(&out, "OUT")
        .start()
        .unwrap();
    assert_eq!(pool.len(), 3);
    let ids: Vec<_> = pool.ids().map(|id| (id.role.clone(), id.index)).collect();
    assert_eq!(
        ids,
        [
            ("report".into(), 0),
            ("report".into(), 1),
            ("report".into(), 2)
        ]
    );
    let results = pool.join_timeout(CHILD_LIMIT);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(out.to_vec(), [3007, 3008, 3009]);
}

#[test]
fn a_panicking_worker_is_an_error_naming_it() {
    let pool = child_spawn(ENTRY, "panic")
        .count(2)
        .configure(|cmd, _| {
            cmd.stderr(std::process::Stdio::null());
        })
        .start()
        .unwrap();
    let pids: Vec<u32> = pool.ids().map(|id| id.pid).collect();
    let results = pool.join_timeout(CHILD_LIMIT);
    assert_eq!(results.len(), 2);
    for (i, r) in results.into_iter().enumerate() {
        let e = r.unwrap_err();
        assert!(e.panicked(), "{e}");
        assert_eq!((e.code(), e.signal()), (Some(101), None));
        assert_eq!(
            (e.id.role.as_str(), e.id.index, e.id.pid),
            ("panic", i, pids[i])
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "worker \"panic\" #{i} (pid {}) panicked (exit code 101",
                pids[i]
            )),
            "{msg}"
        );
        assert!(format!("{e:?}").contains(&msg));
    }
}

#[test]
fn join_all_reports_the_first_failure_and_reaps_all() {
    let mut pool = Pool::new();
    let out = SharedArray::<u64>::create_anonymous(1).unwrap();
    pool.spawn(
        &child_spawn(ENTRY, "report")
            .arg(1)
            .arg("two words")
            .share(&out, "OUT"),
    )
    .unwrap();
    pool.spawn(&child_spawn(ENTRY, "exit3")).unwrap();
    let e = pool.join_all().unwrap_err();
    assert_eq!((e.id.role.as_str(), e.code()), ("exit3", Some(3)));
    assert!(e.to_string().contains("failed: exit code 3"), "{e}");
    assert_eq!(out[0].load(Ordering::SeqCst), 1001);
}

#[test]
fn a_killed_worker_is_an_error_with_its_signal() {
    let out = SharedArray::<u64>::create_anonymous(1).unwrap();
    let mut pool = child_spawn(ENTRY, "hang")
        .share(&out, "OUT")
        .start()
        .unwrap();
    let pid = wait_nonzero(&out, 0);
    assert_eq!(pool.ids().next().unwrap().pid as u64, pid);
    pool.kill(0).unwrap();
    assert!(pool.kill(1).is_err());
    let e = pool.join_timeout(CHILD_LIMIT).pop().unwrap().unwrap_err();
    assert_eq!((e.code(), e.signal()), (None, Some(9)));
    assert!(matches!(e.failure, Failure::Signaled(9)));
    assert!(
        e.to_string().ends_with("was killed by signal 9 (SIGKILL)"),
        "{e}"
    );
}

#[test]
fn join_timeout_kills_a_hung_worker() {
    let out = SharedArray::<u64>::create_anonymous(1).unwrap();
    let pool = child_spawn(ENTRY, "hang")
        .share(&out, "OUT")
        .start()
        .unwrap();
    let pid = wait_nonzero(&out, 0) as u32;
    let token = ProcToken::of_pid(pid).unwrap();
    let limit = Duration::from_millis(200);
    let start = Instant::now();
    let e = pool.join_timeout(limit).pop().unwrap().unwrap_err();
    assert!(start.elapsed() >= limit);
    assert!(
        matches!(e.failure, Failure::TimedOut(d) if d == limit),
        "{e}"
    );
    assert_eq!(e.signal(), Some(9));
    assert!(gone(pid, token), "the hung worker was not reaped");
}

#[test]
fn a_failed_workers_segments_are_removed_a_successful_ones_kept() {
    let (aborted, exited) = (Cleanup::new("w-abort"), Cleanup::new("w-exit"));
    let e = child_spawn(ENTRY, "create_and_abort")
        .arg(aborted.name())
        .configure(|cmd, _| {
            cmd.stderr(std::process::Stdio::null());
        })
        .start()
        .unwrap()
        .join_all()
        .unwrap_err();
    assert_eq!(e.signal(), Some(libc::SIGABRT), "{e}");
    assert_eq!(e.removed, [aborted.name()]);
    assert!(
        !aborted.path().exists(),
        "the failed worker's segment is still there"
    );
    assert!(
        e.to_string().contains(&format!(
            "removed the segments it created: {}",
            aborted.name()
        )),
        "{e}"
    );

    // A worker that ran to its end keeps what it kept.
    child_spawn(ENTRY, "create_and_exit")
        .arg(exited.name())
        .start()
        .unwrap()
        .join_all()
        .unwrap();
    assert!(exited.path().exists());

    // And with clean-up off, a failed worker's segment stays too.
    let e = child_spawn(ENTRY, "create_and_abort")
        .arg(aborted.name())
        .clean_up_on_failure(false)
        .configure(|cmd, _| {
            cmd.stderr(std::process::Stdio::null());
        })
        .start()
        .unwrap()
        .join_all()
        .unwrap_err();
    assert!(e.removed.is_empty() && aborted.path().exists(), "{e}");
}

#[test]
fn dropping_a_pool_kills_and_reaps_its_workers() {
    let out = SharedArray::<u64>::create_anonymous(2).unwrap();
    let pool = child_spawn(ENTRY, "hang")
        .count(2)
        .share(&out, "OUT")
        .start()
        .unwrap();
    let pids = [wait_nonzero(&out, 0) as u32, wait_nonzero(&out, 1) as u32];
    let tokens = pids.map(|p| ProcToken::of_pid(p).unwrap());
    drop(pool);
    for (p, t) in pids.into_iter().zip(tokens) {
        assert!(gone(p, t), "worker {p} left behind (running or a zombie)");
    }
}

#[test]
fn a_worker_dies_with_its_parent() {
    let out = SharedArray::<u64>::create_anonymous(2).unwrap();
    let mut pool = child_spawn(ENTRY, "parent_of_hang")
        .share(&out, "OUT")
        .start()
        .unwrap();
    let grandchild = wait_nonzero(&out, 0) as u32;
    wait_nonzero(&out, 1);
    let token = ProcToken::of_pid(grandchild).unwrap();
    pool.kill(0).unwrap();
    join_err(pool);
    // The kernel kills the orphan (PR_SET_PDEATHSIG); init reaps it.
    let deadline = Instant::now() + CHILD_LIMIT;
    while token.is_alive() {
        assert!(
            Instant::now() < deadline,
            "the grandchild outlived its parent"
        );
        std::thread::yield_now();
    }
}

fn join_err(pool: Pool) {
    assert!(pool.join_timeout(CHILD_LIMIT).pop().unwrap().is_err());
}

#[test]
fn a_worker_that_cannot_start_is_an_error() {
    let e = Spawn::new("x")
        .exe("/nonexistent/shmkit-worker")
        .count(2)
        .start()
        .unwrap_err();
    assert_eq!((e.id.index, e.id.pid), (0, 0));
    assert!(matches!(e.failure, Failure::Spawn(_)));
    assert!(
        e.to_string()
            .starts_with("worker \"x\" #0 could not be started:"),
        "{e}"
    );
}

#[test]
fn not_a_worker_here_and_a_bad_environment_is_an_error() {
    assert_eq!(worker::current().unwrap(), None);
    // A role without the rest: the child must see an error, not run as a parent.
    let mut cmd = child_spawn(ENTRY, "never").command(0).unwrap();
    cmd.env_remove("SHMKIT_WORKER_INDEX");
    let mut pool = Pool::new();
    cmd.stderr(std::process::Stdio::null());
    pool.adopt(cmd.spawn().unwrap(), "never", 0);
    let e = pool.join_timeout(CHILD_LIMIT).pop().unwrap().unwrap_err();
    // child_role()'s expect("worker environment") panicked.
    assert!(e.panicked(), "{e}");
    join_ok(Pool::new());
}

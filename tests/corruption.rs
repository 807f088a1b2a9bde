//! Shared memory is untrusted input: another process scribbles random bytes
//! into a segment, before a worker opens it and while the worker uses it.
//! For every kind of segment, the worker (a child process running this test
//! binary) must get values or clear errors from every call: no signal, no
//! panic, and no call that outlives its timeout.
//!
//! Trials per kind: `SHMKIT_FUZZ_TRIALS` (default 24, well under a minute in
//! all on 2 cores); `SHMKIT_FUZZ_SEED` replays a run (the seed of every
//! failure is printed). The figures of the long run are in BENCHMARKS.md's
//! robustness section.
#![cfg(not(shmkit_loom))]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use common::{Cleanup, child_command, child_role};
use shmkit::list::SharedList;
use shmkit::lock::{LockError, ShmLock};
use shmkit::map::SharedMap;
use shmkit::pipe::Pipe;
use shmkit::ring::Ring;
use shmkit::ring::message::Frame;
use shmkit::{Ordering, SharedAccumulator, SharedArray, SharedValue};

const ENTRY: &str = "child_entry";
/// Operations each worker makes; each one bounded by [`OP_TIMEOUT`].
const OPS: usize = 2000;
const OP_TIMEOUT: Duration = Duration::from_millis(2);
/// A worker that has not exited by then hung: even OPS * 2 timeouts is 8 s.
const WORKER_LIMIT: Duration = Duration::from_secs(20);
/// Bytes of a segment that hold its header and the start of its control
/// words (the "control words only" phase scribbles here).
const CONTROL_BYTES: u64 = 256 + 512;

/// The worker: open the segment (a corrupt header must give an error, which
/// ends the worker cleanly) and use it with every call bounded.
#[test]
fn child_entry() {
    let Some(kind) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let t = OP_TIMEOUT;
    match kind.as_str() {
        "array" => {
            let Ok(a) = SharedArray::<u64>::open(&name) else {
                return;
            };
            for i in 0..OPS {
                let n = a.len();
                if n > 0 {
                    a[i % n].fetch_add(1, Ordering::Relaxed);
                }
                let _ = a.to_vec();
                match a.lock_timeout(t) {
                    // Wrapping: the cells hold whatever was scribbled there.
                    Ok(g) => g.update(|s| s.iter_mut().for_each(|v| *v = v.wrapping_add(1))),
                    Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
                    Err(_) => {}
                }
            }
        }
        "value" => {
            let Ok(v) = SharedValue::<f64>::open(&name) else {
                return;
            };
            for _ in 0..OPS {
                v.fetch_add(1.5, Ordering::Relaxed);
                let _ = v.load(Ordering::Relaxed);
            }
        }
        "accumulator" => {
            let Ok(acc) = SharedAccumulator::open(&name) else {
                return;
            };
            for i in 0..OPS {
                acc.add(i as f64);
                let _ = acc.sum();
            }
        }
        "lock" => {
            let Ok(l) = ShmLock::open(&name) else { return };
            for i in 0..OPS {
                let r = if i % 2 == 0 {
                    l.lock_timeout(t)
                } else {
                    l.try_lock()
                };
                match r {
                    Ok(g) => drop(g),
                    Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
                    Err(_) => {}
                }
                let _ = l.state();
            }
        }
        "ring" => {
            let Ok(ring) = Ring::<u64>::open(&name) else {
                return;
            };
            let mut tx = ring.producer().ok();
            let rx = ring.consumer().ok();
            let mut buf = [0u64; 4];
            for i in 0..OPS {
                if let Some(tx) = tx.as_mut() {
                    let _ = tx.push_timeout(i as u64, t);
                    let _ = tx.try_push_slice(&[1, 2, 3]);
                    if i % 50 == 0 {
                        let _ = tx.join_timeout(t);
                    }
                }
                if let Some(rx) = rx.as_ref() {
                    if rx.pop_timeout(t).is_ok() {
                        let _ = rx.task_done();
                    }
                    let _ = rx.try_pop_into(&mut buf);
                }
                let _ = ring.state();
            }
        }
        "bytes" => {
            let Ok(ring) = Ring::<Frame>::open(&name) else {
                return;
            };
            let mut tx = ring.producer().ok();
            let rx = ring.consumer().ok();
            let msg = [7u8; 150];
            for i in 0..OPS {
                if let Some(tx) = tx.as_mut() {
                    let _ = tx.push_bytes_timeout(&msg[..i % msg.len()], t);
                }
                if let Some(rx) = rx.as_ref() {
                    let _ = rx.pop_bytes_timeout(t);
                }
            }
        }
        "pipe" => {
            let Ok(pipe) = Pipe::open(&name) else { return };
            let Ok(mut a) = pipe.end_a() else { return };
            let Ok(mut b) = pipe.end_b() else { return };
            for i in 0..OPS {
                let _ = a.send_bytes_timeout(&[i as u8; 40], t);
                let _ = b.recv_bytes_timeout(t);
                let _ = b.send_timeout(&(i as u64), t);
                let _ = a.recv_timeout::<u64>(t);
                let _ = a.poll();
            }
        }
        "map" => {
            let Ok(map) = SharedMap::<u64, u64>::open(&name) else {
                return;
            };
            for i in 0..OPS as u64 {
                let k = i % 40 + 1;
                let _ = map.insert(k, i);
                let _ = map.get(&k);
                let _ = map.fetch_add(&k, 1);
                if i % 3 == 0 {
                    let _ = map.remove(&k);
                }
                if i % 50 == 0 {
                    let _ = map.entries();
                }
                let _ = map.len();
            }
        }
        "list" => {
            let Ok(list) = SharedList::<[u64; 2]>::open(&name) else {
                return;
            };
            for i in 0..OPS as u64 {
                let _ = list.push([i, !i]);
                let _ = list.get(i as usize);
                if i % 50 == 0 {
                    let _ = list.to_vec();
                }
                let _ = list.len();
            }
        }
        other => panic!("unknown kind {other}"),
    }
}

/// A segment of `kind` held by the parent (the creator) for one trial.
enum Held {
    Array(#[allow(dead_code)] SharedArray<u64>),
    Value(#[allow(dead_code)] SharedValue<f64>),
    Accumulator(#[allow(dead_code)] SharedAccumulator),
    Lock(#[allow(dead_code)] ShmLock),
    Ring(#[allow(dead_code)] Ring<u64>),
    Bytes(#[allow(dead_code)] Ring<Frame>),
    Pipe(#[allow(dead_code)] Pipe),
    Map(#[allow(dead_code)] SharedMap<u64, u64>),
    List(#[allow(dead_code)] SharedList<[u64; 2]>),
}

fn create(kind: &str, name: &str) -> Held {
    match kind {
        "array" => Held::Array(SharedArray::create(name, 8).unwrap()),
        "value" => Held::Value(SharedValue::create(name, 0.0).unwrap()),
        "accumulator" => Held::Accumulator(SharedAccumulator::create(name, 4).unwrap()),
        "lock" => Held::Lock(ShmLock::create(name).unwrap()),
        "ring" => Held::Ring(Ring::create(name, 8).unwrap()),
        "bytes" => Held::Bytes(Ring::create(name, 16).unwrap()),
        "pipe" => Held::Pipe(Pipe::create(name, 16).unwrap()),
        "map" => Held::Map(SharedMap::create(name, 64).unwrap()),
        "list" => Held::List(SharedList::create(name, 64).unwrap()),
        other => panic!("unknown kind {other}"),
    }
}

/// The files a kind's segment lives in (a pipe is two rings).
fn files(kind: &str, name: &str) -> Vec<String> {
    if kind == "pipe" {
        vec![format!("{name}.a2b"), format!("{name}.b2a")]
    } else {
        vec![name.to_owned()]
    }
}

/// Write `1..=16` random bytes at a random offset of one of the files;
/// `control` limits the offset to the header and the first control words.
fn scribble(rng: &mut StdRng, kind: &str, name: &str, control: bool) {
    let files = files(kind, name);
    let path = format!("/dev/shm/{}", files[rng.random_range(0..files.len())]);
    let Ok(f) = OpenOptions::new().write(true).open(&path) else {
        return;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return;
    }
    let span = if control { len.min(CONTROL_BYTES) } else { len };
    let n = rng.random_range(1..=16u64).min(span);
    let at = rng.random_range(0..=span - n);
    let mut bytes = vec![0u8; n as usize];
    match rng.random_range(0..4) {
        0 => bytes.fill(0xff),
        1 => bytes.fill(0),
        _ => rng.fill(&mut bytes[..]),
    }
    f.write_all_at(&bytes, at).unwrap();
}

fn spawn_worker(kind: &str, name: &str) -> Child {
    child_command(ENTRY, kind)
        .env("SHMKIT_NAME", name)
        .spawn()
        .unwrap()
}

/// Wait for the worker; scribble meanwhile if `rng` is given. Returns how
/// many scribbles were made, and the failure, if any.
fn finish(
    mut child: Child,
    mut scribbler: Option<(&mut StdRng, &str, &str, bool)>,
) -> (u64, Option<String>) {
    let deadline = Instant::now() + WORKER_LIMIT;
    let mut scribbles = 0;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let failure = match (st.code(), st.signal()) {
                (Some(0), _) => None,
                (_, Some(sig)) => Some(format!("worker killed by signal {sig}")),
                (code, _) => Some(format!("worker failed (exit code {code:?}): a panic")),
            };
            return (scribbles, failure);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (
                scribbles,
                Some(format!("worker hung: still running after {WORKER_LIMIT:?}")),
            );
        }
        match scribbler.as_mut() {
            Some((rng, kind, name, control)) => {
                scribble(rng, kind, name, *control);
                scribbles += 1;
                // Let the worker run between scribbles: pacing, not
                // synchronisation.
                std::thread::sleep(Duration::from_micros(200));
            }
            // Pacing while we poll the child, not synchronisation.
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn fuzz(kind: &str) {
    let trials: usize = std::env::var("SHMKIT_FUZZ_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let base_seed: u64 = std::env::var("SHMKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut failures = Vec::new();
    let mut scribbles = 0;
    for trial in 0..trials {
        let seed = base_seed.wrapping_add(trial as u64);
        let mut rng = StdRng::seed_from_u64(seed);
        let guard = Cleanup::new(&format!("fuzz-{kind}"));
        let name = guard.name().to_owned();
        let _pipe_files: Vec<Cleanup> = files(kind, &name)
            .into_iter()
            .filter(|f| *f != name)
            .map(Cleanup)
            .collect();
        let held = create(kind, &name);
        // Phase by trial: corrupt the header before the worker opens it,
        // scribble anywhere while it works, or only on the control words.
        let (n, failure) = match seed % 3 {
            0 => {
                let n = rng.random_range(1..4);
                for _ in 0..n {
                    scribble(&mut rng, kind, &name, true);
                }
                let (_, f) = finish(spawn_worker(kind, &name), None);
                (n, f)
            }
            1 => finish(
                spawn_worker(kind, &name),
                Some((&mut rng, kind, &name, false)),
            ),
            _ => finish(
                spawn_worker(kind, &name),
                Some((&mut rng, kind, &name, true)),
            ),
        };
        scribbles += n;
        // The creator's own handle, on the damaged segment, must drop quietly.
        drop(held);
        if let Some(f) = failure {
            failures.push(format!(
                "{kind} trial {trial} (SHMKIT_FUZZ_SEED={seed}, SHMKIT_FUZZ_TRIALS=1): {f}"
            ));
        }
    }
    eprintln!(
        "{kind}: {trials} trials, {scribbles} scribbles, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {trials} trials failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_array() {
    fuzz("array");
}

#[test]
fn fuzz_value() {
    fuzz("value");
}

#[test]
fn fuzz_accumulator() {
    fuzz("accumulator");
}

#[test]
fn fuzz_lock() {
    fuzz("lock");
}

#[test]
fn fuzz_ring() {
    fuzz("ring");
}

#[test]
fn fuzz_bytes() {
    fuzz("bytes");
}

#[test]
fn fuzz_pipe() {
    fuzz("pipe");
}

#[test]
fn fuzz_map() {
    fuzz("map");
}

#[test]
fn fuzz_list() {
    fuzz("list");
}

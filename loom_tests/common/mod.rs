//! Helpers shared by the loom models (each model file uses some of them).
#![allow(dead_code)]
// The flag that survives from one loom execution to the next is the test's
// bookkeeping, outside the model: a std atomic on purpose.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, Ordering};

use shmkit::ring::PopError;

/// Run `model(k)` under loom for k = 0, 1, ... until a k at which the victim
/// was never killed in any execution (it finished before its k-th step), so
/// that the victim dies at each of its steps in turn
/// (`shmkit::sync::liveness::model::run_killed_after`). `model` returns
/// whether the victim was killed in that execution.
pub fn for_every_kill_step(
    max: usize,
    model: impl Fn(usize) -> bool + Sync + Send + Copy + 'static,
) {
    for k in 0..max {
        let killed_somewhere = std::sync::Arc::new(AtomicBool::new(false));
        let flag = killed_somewhere.clone();
        loom::model(move || {
            if model(k) {
                flag.store(true, Ordering::Relaxed);
            }
        });
        if !killed_somewhere.load(Ordering::Relaxed) {
            assert!(k > 0, "the victim was never killed: steps are not counted");
            eprintln!("the victim died at each of its first {k} steps");
            return;
        }
    }
    panic!("the victim was still being killed at step {max}: raise the bound");
}

/// Take from `pop` until Disconnected, returning what it got in order.
pub fn drain<T>(mut pop: impl FnMut() -> Result<T, PopError>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match pop() {
            Ok(v) => got.push(v),
            Err(PopError::Disconnected) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A consumer's pop loop until Disconnected, each pop `pop(buf)` (how many
/// it put in `buf`), appending what it got to `got` as it goes (so a
/// consumer killed mid-loop leaves what it had received).
pub fn pop_into_until_disconnected(
    got: &std::sync::Mutex<Vec<u64>>,
    mut pop: impl FnMut(&mut [u64; 2]) -> Result<usize, PopError>,
) {
    let mut buf = [0u64; 2];
    loop {
        match pop(&mut buf) {
            Ok(n) => got.lock().unwrap().extend_from_slice(&buf[..n]),
            Err(PopError::Disconnected) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// After a consumer was (perhaps) killed while items `1..=n` were taken:
/// `all` (everything every consumer received) holds no item twice and no
/// item outside `1..=n`, and lost at most `may_lose` items when the victim
/// was killed (none when it was not).
pub fn assert_once_and_lost_at_most(mut all: Vec<u64>, n: u64, killed: bool, may_lose: usize) {
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an item was delivered twice: {all:?}");
    assert!(
        all.iter().all(|v| (1..=n).contains(v)),
        "torn item: {all:?}"
    );
    let lost = n as usize - all.len();
    let may_lose = if killed { may_lose } else { 0 };
    assert!(lost <= may_lose, "lost {lost} (killed: {killed}): {all:?}");
}

/// The model of a sole consumer killed at every step of its pops, for a
/// ring or a queue: `$make` builds the kind holding 1, 2 and closed; the
/// victim (process 2) takes a `sole_consumer()` and pops (`$batch`: in
/// batches of 2) until Disconnected, killed after its k-th step; then a new
/// sole consumer must attach (the dead one's claim taken over) and drain.
/// No item twice, nothing torn, nothing lost but what the victim claimed.
#[allow(unused_macros)] // used by the sole models only
macro_rules! sole_killed_model {
    ($batch:expr, $make:expr) => {{
        let batch: bool = $batch;
        $crate::common::for_every_kill_step(96, move |k| {
            shmkit::sync::liveness::model::timeouts_expire(true);
            let kind = $make;
            let victim_got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let vg = victim_got.clone();
            let theirs = kind.clone();
            let victim = loom::thread::spawn(move || {
                shmkit::sync::liveness::model::become_process(2);
                let mut rx = theirs.sole_consumer().unwrap();
                shmkit::sync::liveness::model::run_killed_after(2, Some(k), move || {
                    $crate::common::pop_into_until_disconnected(&vg, |buf| {
                        if batch {
                            rx.pop_into(buf)
                        } else {
                            rx.pop().map(|v| {
                                buf[0] = v;
                                1
                            })
                        }
                    })
                })
                .is_none()
            });
            let killed = victim.join().unwrap();
            let mut survivor = kind
                .sole_consumer()
                .expect("a dead or dropped sole consumer's claim is free again");
            let mut all = $crate::common::drain(|| survivor.pop());
            all.extend(victim_got.lock().unwrap().iter().copied());
            let may_lose = if batch { 2 } else { 1 };
            $crate::common::assert_once_and_lost_at_most(all, 2, killed, may_lose);
            killed
        })
    }};
}
#[allow(unused_imports)] // used by the sole models only
pub(crate) use sole_killed_model;

/// The model of a sole consumer and a plain consumer, in two processes,
/// attaching at once to what `$make` builds (a ring or a queue): never
/// both (each one's fence-ordered look at the other's claim sees it, or
/// the other's sees its own); both may be refused. Each handle is kept
/// until both have tried: one dropped before the other attached would be
/// a success of both, and no overlap.
#[allow(unused_macros)] // used by the sole models only
macro_rules! sole_and_plain_model {
    ($make:expr) => {
        loom::model(|| {
            let kind = $make;
            let other = kind.clone();
            let sole = loom::thread::spawn(move || {
                shmkit::sync::liveness::model::become_process(2);
                other.sole_consumer().ok()
            });
            shmkit::sync::liveness::model::become_process(3);
            let plain = kind.consumer();
            let sole = sole.join().unwrap();
            assert!(
                !(sole.is_some() && plain.is_ok()),
                "a sole consumer and another consumer both attached"
            );
        })
    };
}
#[allow(unused_imports)] // used by the sole models only
pub(crate) use sole_and_plain_model;

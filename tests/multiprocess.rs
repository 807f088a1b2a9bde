//! Real processes sharing counters and arrays: exact results, no lock.
//!
//! Children are this test binary re-run with only `child_entry` selected and
//! a role in the environment (never a fork of the multi-threaded runner).
#![cfg(not(shmkit_loom))]

mod common;

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::{Ordering, SharedAccumulator, SharedArray, SharedValue};

const ENTRY: &str = "child_entry";

fn env_usize(key: &str) -> usize {
    std::env::var(key).unwrap().parse().unwrap()
}

/// Entry point of every child. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap_or_default();
    match role.as_str() {
        "counter" => {
            let v = SharedValue::<u64>::open(&name).unwrap();
            for _ in 0..env_usize("ITERS") {
                v.fetch_add(1, Ordering::Relaxed);
            }
        }
        "array_i32" => {
            let a = SharedArray::<i32>::open_len(&name, 5).unwrap();
            for _ in 0..env_usize("ITERS") {
                for c in a.iter() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        "array_f64" => {
            let a = SharedArray::<f64>::open(&name).unwrap();
            for _ in 0..env_usize("ITERS") {
                for c in a.iter() {
                    c.fetch_add(0.25, Ordering::Relaxed);
                }
            }
        }
        "inherited" => {
            let v = SharedValue::<i64>::open_inherited("SHMKIT_FD").unwrap();
            for _ in 0..env_usize("ITERS") {
                v.fetch_sub(1, Ordering::Relaxed);
            }
        }
        "accumulator" => {
            let acc = SharedAccumulator::open(&name).unwrap();
            let stripe = env_usize("STRIPE");
            for _ in 0..env_usize("ITERS") {
                acc.add_at(stripe, 0.5);
            }
        }
        "max" => {
            let a = SharedArray::<u32>::open(&name).unwrap();
            let me = env_usize("STRIPE") as u32;
            for i in 0..env_usize("ITERS") as u32 {
                a[0].fetch_max(i * 4 + me, Ordering::Relaxed);
                a[1].fetch_min(i * 4 + me, Ordering::Relaxed);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Run `n` children in `role` on segment `name`, each with `iters`, and
/// wait for all of them to succeed.
fn run_children(role: &str, name: &str, n: usize, iters: usize) {
    let kids: Vec<Reaper> = (0..n)
        .map(|i| {
            let child = child_command(ENTRY, role)
                .env("SHMKIT_NAME", name)
                .env("ITERS", iters.to_string())
                .env("STRIPE", i.to_string())
                .spawn()
                .unwrap();
            Reaper(Some(child))
        })
        .collect();
    for k in kids {
        k.wait_ok();
    }
}

#[test]
fn counter_is_exact_across_processes() {
    let c = Cleanup::new("counter");
    let v = SharedValue::<u64>::create(c.name(), 0).unwrap();
    run_children("counter", c.name(), 4, 50_000);
    assert_eq!(v.load(Ordering::SeqCst), 200_000);
}

#[test]
fn int_array_is_exact_across_processes() {
    let c = Cleanup::new("arri32");
    let a = SharedArray::<i32>::create(c.name(), 5).unwrap();
    run_children("array_i32", c.name(), 2, 50);
    assert_eq!(a.to_vec(), [100; 5]);
}

#[test]
fn float_array_is_exact_across_processes() {
    // 0.25 and every partial sum here are exact in binary, so any order of
    // additions gives exactly the same result: a lost update would show.
    let c = Cleanup::new("arrf64");
    let a = SharedArray::<f64>::create_from(c.name(), &[1.5, 2.5, 3.5]).unwrap();
    run_children("array_f64", c.name(), 3, 20_000);
    assert_eq!(a.to_vec(), [15_001.5, 15_002.5, 15_003.5]);
}

#[test]
fn inherited_anonymous_value() {
    let v = SharedValue::<i64>::create_anonymous(1_000).unwrap();
    let mut cmd = child_command(ENTRY, "inherited");
    cmd.env("ITERS", "300");
    v.share_with(&mut cmd, "SHMKIT_FD");
    Reaper(Some(cmd.spawn().unwrap())).wait_ok();
    assert_eq!(v.load(Ordering::SeqCst), 700);
    assert!(v.segment().name().is_none());
}

#[test]
fn accumulator_is_exact_across_processes() {
    let c = Cleanup::new("acc");
    let acc = SharedAccumulator::create(c.name(), 4).unwrap();
    run_children("accumulator", c.name(), 4, 25_000);
    assert_eq!(acc.sum(), 4.0 * 25_000.0 * 0.5);
}

#[test]
fn max_and_min_across_processes() {
    let c = Cleanup::new("max");
    let a = SharedArray::<u32>::create_from(c.name(), &[0, u32::MAX]).unwrap();
    run_children("max", c.name(), 3, 10_000);
    // Child k offers i*4+k for i < 10_000: the max is 9_999*4+2, the min 0.
    assert_eq!(a.to_vec(), [9_999 * 4 + 2, 0]);
}

#[test]
fn inherited_variable_must_name_an_open_fd() {
    // SAFETY (test): setting an env var while other test threads may read the
    // environment; the variable name is unique to this test.
    unsafe { std::env::set_var("SHMKIT_TEST_BAD_FD", "987654") };
    let e = SharedValue::<i64>::open_inherited("SHMKIT_TEST_BAD_FD").unwrap_err();
    assert!(matches!(e, shmkit::Error::InvalidArgument { .. }), "{e:?}");
    let e = SharedValue::<i64>::open_inherited("SHMKIT_TEST_UNSET_FD").unwrap_err();
    assert!(matches!(e, shmkit::Error::InvalidArgument { .. }), "{e:?}");
}

//! Group `counter`: processes incrementing one shared counter (shmkit's
//! `fetch_add`, a process-shared pthread mutex, shmkit's lock; std's `Mutex`
//! between threads), and the lock against the mutexes it replaces. Its
//! pthread counter also serves `float-add`.

use std::sync::{Arc, Mutex};

use super::{
    Options, Record, Res, alternate, e, group_worker, pinned_threads, placement, procs, record,
    reps,
};
use crate::baseline::PthreadShared;
use crate::{Ctl, summary};
use shmkit::{Ordering, SharedValue};

pub(in crate::cases) fn counter_atomic(w: usize, iters: u64) -> Res<f64> {
    let v = SharedValue::<u64>::create_anonymous(0).map_err(e)?;
    let (wall, _) = procs("counter-atomic", w, iters, &|c| v.share_with(c, "B_DATA"))?;
    let got = v.load(Ordering::SeqCst);
    if got != w as u64 * iters {
        return Err(format!("fetch_add counter ended at {got}"));
    }
    Ok(w as f64 * iters as f64 / wall)
}

/// Returns (ops/s, hand-offs per op).
pub(in crate::cases) fn counter_pthread(w: usize, iters: u64, float: bool) -> Res<(f64, f64)> {
    counter_mutex(PthreadShared::create(3, 0).map_err(e)?, w, iters, float)
}

/// The same counter on a process-shared *robust* pthread mutex, the one
/// shmkit's lock replaced. Returns (ops/s, hand-offs per op).
fn counter_pthread_robust(w: usize, iters: u64) -> Res<(f64, f64)> {
    counter_mutex(PthreadShared::create_robust(3).map_err(e)?, w, iters, false)
}

/// `w` processes increment a counter guarded by the mutex of `p` (3 data
/// words: count, last holder, hand-offs).
fn counter_mutex(p: PthreadShared, w: usize, iters: u64, float: bool) -> Res<(f64, f64)> {
    let case = if float {
        "float-pthread"
    } else {
        "counter-pthread"
    };
    let (wall, _) = procs(case, w, iters, &|c| p.share_with(c, "B_DATA"))?;
    // SAFETY: every worker exited; we are the only user now.
    let (count, handoffs) = unsafe { (*p.data(0, 0), *p.data(0, 2)) };
    let want = w as u64 * iters;
    let ok = if float {
        f64::from_bits(count) == want as f64
    } else {
        count == want
    };
    if !ok {
        return Err(format!("mutex counter ended wrong ({count:#x})"));
    }
    Ok((want as f64 / wall, handoffs as f64 / want as f64))
}

/// The array's own robust lock guarding a read-then-write of one cell.
/// Returns (ops/s, hand-offs per op).
fn counter_shmlock(w: usize, iters: u64) -> Res<(f64, f64)> {
    let arr = shmkit::SharedArray::<u64>::create_anonymous(1).map_err(e)?;
    let (wall, _) = procs("counter-shmlock", w, iters, &|c| {
        arr.share_with(c, "B_DATA")
    })?;
    let want = w as u64 * iters;
    if arr[0].load(Ordering::SeqCst) != want {
        return Err("shmkit lock counter ended wrong".into());
    }
    let st = arr.lock_state();
    Ok((want as f64 / wall, st.handoffs as f64 / want as f64))
}

/// shmkit's lock guarding the same three words as the pthread cases (count,
/// last holder, hand-offs), so that hand-offs are counted the same way for
/// every lock, not by the lock's own statistics. Returns (ops/s, hand-offs
/// per op).
fn lock_shmkit(w: usize, iters: u64) -> Res<(f64, f64)> {
    let arr = shmkit::SharedArray::<u64>::create_anonymous(3).map_err(e)?;
    let (wall, _) = procs("lock-shmkit", w, iters, &|c| arr.share_with(c, "B_DATA"))?;
    let want = w as u64 * iters;
    if arr[0].load(Ordering::SeqCst) != want {
        return Err("shmkit lock counter ended wrong".into());
    }
    Ok((
        want as f64 / wall,
        arr[2].load(Ordering::SeqCst) as f64 / want as f64,
    ))
}

fn counter_std_mutex(w: usize, iters: u64) -> Res<f64> {
    let m = Arc::new(Mutex::new(0u64));
    let m2 = m.clone();
    let wall = pinned_threads(w, move |_| {
        for _ in 0..iters {
            *m2.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    })?;
    let got = *m.lock().unwrap_or_else(|p| p.into_inner());
    if got != w as u64 * iters {
        return Err(format!("std mutex counter ended at {got}"));
    }
    Ok(w as f64 * iters as f64 / wall)
}

pub(crate) fn counter(o: &Options) -> Res<Vec<Record>> {
    let iters: u64 = if o.full { 3_000_000 } else { 400_000 };
    let mut out = Vec::new();
    for w in [1usize, 2, 4] {
        let (mut handoffs, mut lock_handoffs) = (Vec::new(), Vec::new());
        let [a, p, l, s] = alternate(
            reps(o),
            [
                &mut || counter_atomic(w, iters),
                &mut || {
                    let (ops, h) = counter_pthread(w, iters, false)?;
                    handoffs.push(h);
                    Ok(ops)
                },
                &mut || {
                    let (ops, h) = counter_shmlock(w, iters)?;
                    lock_handoffs.push(h);
                    Ok(ops)
                },
                &mut || counter_std_mutex(w, iters),
            ],
        )?;
        let place = placement(w, "processes");
        out.push(record(
            "counter",
            format!("shmkit-fetch_add/{w}p"),
            "throughput",
            "ops/s",
            a,
            place.clone(),
        ));
        let (h, _, _) = summary(handoffs);
        out.push(record(
            "counter",
            format!("pthread-mutex/{w}p"),
            "throughput",
            "ops/s",
            p,
            format!("{place}; lock changed hands on {:.1}% of ops", h * 100.0),
        ));
        let (h, _, _) = summary(lock_handoffs);
        out.push(record(
            "counter",
            format!("shmkit-lock/{w}p"),
            "throughput",
            "ops/s",
            l,
            format!(
                "{place}; robust lock, changed hands on {:.1}% of ops",
                h * 100.0
            ),
        ));
        out.push(record(
            "counter",
            format!("std-mutex/{w}t"),
            "throughput",
            "ops/s",
            s,
            placement(w, "threads"),
        ));
    }
    out.extend(lock_cases(o)?);
    Ok(out)
}

/// The lock against the mutexes it replaces: 1 process (uncontended) and 2
/// processes on the two cores (contended), lock + increment + unlock, with
/// the share of acquisitions that changed process.
fn lock_cases(o: &Options) -> Res<Vec<Record>> {
    let iters: u64 = if o.full { 3_000_000 } else { 400_000 };
    let mut out = Vec::new();
    for (w, label) in [(1usize, "lock-uncontended"), (2, "lock-2p")] {
        // Hand-off shares, one per sample, per implementation.
        let (mut hs, mut hr, mut hp) = (Vec::new(), Vec::new(), Vec::new());
        let keep = |hands: &mut Vec<f64>, (ops, h): (f64, f64)| {
            hands.push(h);
            ops
        };
        let [s, r, p] = alternate(
            reps(o),
            [
                &mut || lock_shmkit(w, iters).map(|x| keep(&mut hs, x)),
                &mut || counter_pthread_robust(w, iters).map(|x| keep(&mut hr, x)),
                &mut || counter_pthread(w, iters, false).map(|x| keep(&mut hp, x)),
            ],
        )?;
        let hand = [hs, hr, hp];
        let place = placement(w, "processes");
        for ((impl_, what), (xs, hs)) in [
            ("shmkit", "shmkit's lock (SharedArray::lock)"),
            ("pthread-robust", "process-shared robust pthread mutex"),
            ("pthread", "process-shared pthread mutex, not robust"),
        ]
        .into_iter()
        .zip([s, r, p].into_iter().zip(hand))
        {
            let (h, hmin, hmax) = summary(hs);
            out.push(record(
                "counter",
                format!("{label}/{impl_}"),
                "throughput",
                "ops/s",
                xs,
                format!(
                    "{place}; {what}; lock changed process on {:.2}% of acquisitions \
                     [{:.2}–{:.2}]",
                    h * 100.0,
                    hmin * 100.0,
                    hmax * 100.0
                ),
            ));
        }
    }
    Ok(out)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(
        case,
        "counter-atomic" | "counter-pthread" | "float-pthread" | "counter-shmlock" | "lock-shmkit"
    );
    group_worker(ours, args, |n| {
        match case {
            "counter-atomic" => {
                let v = SharedValue::<u64>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for _ in 0..n {
                    v.fetch_add(1, Ordering::Relaxed);
                }
                ctl.finish(idx);
            }
            "counter-pthread" | "float-pthread" => {
                let p = PthreadShared::open_inherited("B_DATA").map_err(e)?;
                let float = case == "float-pthread";
                let me = idx as u64 + 1;
                ctl.start(idx);
                for _ in 0..n {
                    p.with_lock(|| {
                        // SAFETY: the words are only touched with the mutex held.
                        unsafe {
                            let c = p.data(0, 0);
                            *c = if float {
                                (f64::from_bits(*c) + 1.0).to_bits()
                            } else {
                                *c + 1
                            };
                            let last = p.data(0, 1);
                            if *last != me {
                                *last = me;
                                *p.data(0, 2) += 1;
                            }
                        }
                    });
                }
                ctl.finish(idx);
            }
            "counter-shmlock" => {
                let arr = shmkit::SharedArray::<u64>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for _ in 0..n {
                    let g = arr.lock().map_err(e)?;
                    // A read-then-write, made safe by the lock.
                    let v = g[0].load(Ordering::Relaxed);
                    g[0].store(v + 1, Ordering::Relaxed);
                }
                ctl.finish(idx);
            }
            "lock-shmkit" => {
                let arr = shmkit::SharedArray::<u64>::open_inherited("B_DATA").map_err(e)?;
                let me = idx as u64 + 1;
                ctl.start(idx);
                for _ in 0..n {
                    let g = arr.lock().map_err(e)?;
                    // The same read-then-writes as the pthread worker.
                    g[0].store(g[0].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    if g[1].load(Ordering::Relaxed) != me {
                        g[1].store(me, Ordering::Relaxed);
                        g[2].store(g[2].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    }
                }
                ctl.finish(idx);
            }
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
}

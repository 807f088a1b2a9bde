//! Group `snapshot`: one writer process storing a 64-byte status record,
//! one reader process taking consistent copies of it (the job of Python's
//! `Manager().Namespace()`), in two regimes: a writer storing without pause
//! (the stress case: a lock wins it by shutting the writer out while the
//! reader copies, so the reader works on lines in its own cache), and a
//! writer paced at one store per microsecond (a fast telemetry feed, the
//! case a status record is for). shmkit's `SharedCell::load`
//! (lock-free, two stamped buffers) against a copy of the same record taken
//! under a process-shared pthread mutex in shared memory, the lock-based
//! way. Writer on core 0, reader on core 1. Every copy is checked whole
//! (all words equal), so a torn snapshot fails the run instead of posting a
//! figure.

use super::{
    Options, Record, Res, alternate, arg, e, placement, record, reps, spawn_worker, wait_all,
};
use crate::Ctl;
use crate::baseline::PthreadShared;
use shmkit::{Ordering, SharedCell};

/// The record: 8 words, all the same counter when whole.
type Rec = [u64; 8];
const WORDS: usize = 8;

/// Result words of the reader (worker 1): torn copies; its stop flag for
/// the writer. Of the writer (worker 0): stores done.
const TORN: usize = 2;
const STOP: usize = 3;
const STORES: usize = 2;

/// Nanoseconds between the paced writer's stores.
const PACE_NS: u64 = 1_000;

/// Run the writer and the reader of `case` (the reader does `n` copies;
/// the writer stores every `pace_ns`, or without pause for 0); returns
/// (copies/s, stores by the writer meanwhile).
fn run(
    case: &str,
    n: u64,
    pace_ns: u64,
    share: &dyn Fn(&mut std::process::Command),
) -> Res<(f64, u64)> {
    let ctl = Ctl::create(2).map_err(e)?;
    let args = [n.to_string(), pace_ns.to_string()];
    let mut kids = Vec::with_capacity(2);
    for (i, role) in [(0, "w"), (1, "r")] {
        kids.push(
            spawn_worker(&ctl, &format!("{case}-{role}"), i, &args, |c| share(c)).map_err(e)?,
        );
    }
    ctl.go();
    wait_all(kids)?;
    let torn = ctl.slot(1, TORN).load(Ordering::Acquire);
    if torn != 0 {
        return Err(format!("{case}: {torn} torn snapshots"));
    }
    let secs = ctl
        .slot(1, 1)
        .load(Ordering::Acquire)
        .saturating_sub(ctl.slot(1, 0).load(Ordering::Acquire)) as f64
        / 1e9;
    Ok((n as f64 / secs, ctl.slot(0, STORES).load(Ordering::Acquire)))
}

pub(crate) fn snapshot(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 5_000_000 } else { 500_000 };
    let mut out = Vec::new();
    for (pace_ns, suffix, how) in [
        (0, "", "writer without pause"),
        (PACE_NS, "-paced1us", "writer paced at 1 store/us"),
    ] {
        let (mut cell_stores, mut mutex_stores) = (Vec::new(), Vec::new());
        let [c, m] = alternate(
            reps(o),
            [
                &mut || {
                    let cell = SharedCell::<Rec>::create_anonymous([0; WORDS]).map_err(e)?;
                    let (rate, stores) = run("snapshot-cell", n, pace_ns, &|cmd| {
                        cell.share_with(cmd, "B_DATA")
                    })?;
                    cell_stores.push(stores as f64 / n as f64);
                    Ok(rate)
                },
                &mut || {
                    let p = PthreadShared::create(WORDS, 0).map_err(e)?;
                    let (rate, stores) = run("snapshot-pthread", n, pace_ns, &|cmd| {
                        p.share_with(cmd, "B_DATA")
                    })?;
                    mutex_stores.push(stores as f64 / n as f64);
                    Ok(rate)
                },
            ],
        )?;
        let place = placement(2, "writer, reader");
        for (case, rates, stores) in [
            ("shmkit-cell-load", c, cell_stores),
            ("pthread-mutex-copy", m, mutex_stores),
        ] {
            let (st, _, _) = crate::summary(stores);
            out.push(record(
                "snapshot",
                format!("{case}/1w1r{suffix}"),
                "throughput",
                "copies/s",
                rates,
                format!("{place}; 64-byte record, {how}; {st:.2} stores per copy meanwhile"),
            ));
        }
    }
    Ok(out)
}

/// Wait until `next` (a paced writer's next store), or not at all when
/// `pace_ns` is 0; returns the time of the store after.
fn pace(pace_ns: u64, next: std::time::Instant) -> std::time::Instant {
    if pace_ns == 0 {
        return next;
    }
    while std::time::Instant::now() < next {
        std::hint::spin_loop();
    }
    next + std::time::Duration::from_nanos(pace_ns)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(in crate::cases) fn worker(
    case: &str,
    idx: usize,
    args: &[String],
    ctl: &Ctl,
) -> Option<Res<()>> {
    let stop = || ctl.slot(1, STOP).load(Ordering::Acquire) != 0;
    let done = |torn: u64| {
        ctl.finish(1);
        ctl.slot(1, TORN).store(torn, Ordering::Release);
        ctl.slot(1, STOP).store(1, Ordering::Release);
    };
    let run = || -> Res<()> {
        let n = arg(args, 2)?;
        let pace_ns = arg(args, 3)?;
        match case {
            "snapshot-cell-w" => {
                let cell = SharedCell::<Rec>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                let (mut i, mut next) = (0, std::time::Instant::now());
                while !stop() {
                    next = pace(pace_ns, next);
                    i += 1;
                    cell.store(&[i; WORDS]).map_err(e)?;
                }
                ctl.finish(idx);
                ctl.slot(idx, STORES).store(i, Ordering::Release);
            }
            "snapshot-cell-r" => {
                let cell = SharedCell::<Rec>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                let mut torn = 0;
                for _ in 0..n {
                    let r = cell.load().map_err(e)?;
                    torn += u64::from(r.iter().any(|&w| w != r[0]));
                }
                done(torn);
            }
            "snapshot-pthread-w" => {
                let p = PthreadShared::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                let (mut i, mut next) = (0, std::time::Instant::now());
                while !stop() {
                    next = pace(pace_ns, next);
                    i += 1;
                    p.with_lock(|| {
                        for w in 0..WORDS {
                            // SAFETY: a guarded word, written under the mutex.
                            unsafe { std::ptr::write_volatile(p.data(0, w), i) };
                        }
                    });
                }
                ctl.finish(idx);
                ctl.slot(idx, STORES).store(i, Ordering::Release);
            }
            _ => {
                let p = PthreadShared::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                let mut torn = 0;
                for _ in 0..n {
                    let r: Rec = p.with_lock(|| {
                        // SAFETY: guarded words, read under the mutex.
                        std::array::from_fn(|w| unsafe { std::ptr::read_volatile(p.data(0, w)) })
                    });
                    torn += u64::from(r.iter().any(|&w| w != r[0]));
                }
                done(torn);
            }
        }
        Ok(())
    };
    matches!(
        case,
        "snapshot-cell-w" | "snapshot-cell-r" | "snapshot-pthread-w" | "snapshot-pthread-r"
    )
    .then(run)
}

//! The benchmark cases, one module a group: what the parent sets up and what
//! each worker does. Here: what the groups share, and the worker dispatch.

use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};

use super::{Ctl, Options, Record, now_ns, pin, progress, spawn_worker, summary, wait_all};

mod bridge;
mod counter;
mod float_add;
mod latency;
mod manager;
mod mpmc;
mod pipe;
mod python;
mod queue;
mod snapshot;

pub(super) use bridge::bridge;
pub(super) use counter::counter;
pub(super) use float_add::float_add;
pub(super) use latency::latency;
pub(super) use manager::manager;
pub(super) use mpmc::mpmc;
pub(super) use pipe::pipe;
pub(super) use python::python;
pub(super) use queue::queue;
pub(super) use snapshot::snapshot;

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn reps(o: &Options) -> usize {
    if o.full { 7 } else { 3 }
}

/// Placement of worker `i` of `n`: core i % cores.
fn placement(n: usize, tag: &str) -> String {
    let c = super::cores();
    let cores: Vec<String> = (0..n).map(|i| (i % c).to_string()).collect();
    let over = if n > c {
        format!(", {n} on {c} cores: oversubscribed")
    } else {
        String::new()
    };
    format!("{tag} pinned to cores {}{over}", cores.join(","))
}

/// Run `reps` rounds; each round runs every implementation once (so they
/// alternate), collecting one sample each.
fn alternate<const N: usize>(
    reps: usize,
    mut impls: [&mut dyn FnMut() -> Res<f64>; N],
) -> Res<[Vec<f64>; N]> {
    let out = alternate_all(reps, &mut impls)?;
    Ok(out
        .try_into()
        .expect("alternate_all returns one sample list per implementation"))
}

/// [`alternate`] for a number of implementations known only at run time
/// (a case that only some configurations have).
fn alternate_all(reps: usize, impls: &mut [&mut dyn FnMut() -> Res<f64>]) -> Res<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); impls.len()];
    for _ in 0..reps {
        for (i, f) in impls.iter_mut().enumerate() {
            out[i].push(f()?);
        }
    }
    Ok(out)
}

fn record(
    group: &'static str,
    name: String,
    metric: &'static str,
    unit: &'static str,
    samples: Vec<f64>,
    note: String,
) -> Record {
    let (value, min, max) = summary(samples);
    let r = Record {
        group,
        name,
        metric,
        unit,
        value,
        min,
        max,
        pct: None,
        note,
    };
    progress(&r);
    r
}

// ----------------------------------------------------------------- running

/// Run `w` worker processes of `case`, each doing `iters`, with the data
/// shared by `share`; returns the wall time in seconds.
fn procs(case: &str, w: usize, iters: u64, share: &dyn Fn(&mut Command)) -> Res<(f64, Ctl)> {
    let ctl = Ctl::create(w).map_err(e)?;
    let mut kids = Vec::new();
    for i in 0..w {
        kids.push(spawn_worker(&ctl, case, i, &[iters.to_string()], |c| share(c)).map_err(e)?);
    }
    ctl.go();
    wait_all(kids)?;
    Ok((ctl.wall(), ctl))
}

/// Run `w` threads pinned to cores `0..w`, released together by a barrier,
/// each running `body(thread index)`; the wall time in seconds from the
/// first start to the last end.
fn pinned_threads(w: usize, body: impl Fn(usize) + Send + Sync + 'static) -> Res<f64> {
    let body = Arc::new(body);
    let barrier = Arc::new(Barrier::new(w));
    let handles: Vec<_> = (0..w)
        .map(|t| {
            let (body, b) = (body.clone(), barrier.clone());
            std::thread::spawn(move || {
                pin(t);
                b.wait();
                let t0 = now_ns();
                body(t);
                (t0, now_ns())
            })
        })
        .collect();
    let times = handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| "a benchmark thread panicked".to_string())
        })
        .collect::<Res<Vec<(u64, u64)>>>()?;
    let start = times.iter().map(|t| t.0).min().unwrap_or(0);
    let end = times.iter().map(|t| t.1).max().unwrap_or(0);
    Ok(end.saturating_sub(start) as f64 / 1e9)
}

/// Run a python3 script once and read the `key value` lines it prints.
fn python_once<const N: usize>(script: &str, args: &[String], keys: [&str; N]) -> Res<[f64; N]> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|x| format!("cannot run python3: {x}"))?;
    if !out.status.success() {
        return Err("a python3 benchmark script failed".into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut got = [0.0; N];
    for (slot, key) in got.iter_mut().zip(keys) {
        *slot = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("python3 printed no figure for {key}"))?;
    }
    Ok(got)
}

// ------------------------------------------------------------------ workers

fn arg(args: &[String], i: usize) -> Res<u64> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("worker argument {i} missing"))
}

/// A group's `worker`: when the case is `ours`, run `body` with the worker's
/// count (argument 2); `None` leaves the case to the other groups.
fn group_worker(ours: bool, args: &[String], body: impl FnOnce(u64) -> Res<()>) -> Option<Res<()>> {
    ours.then(|| arg(args, 2).and_then(body))
}

/// One pop of a consumer worker into `buf`: a single `pop` when `buf` holds
/// one item, else `pop_into` (a batch). How many items landed in `buf`.
fn pop_one_or_batch<E>(
    buf: &mut [u64],
    pop: impl FnOnce() -> Result<u64, E>,
    pop_into: impl FnOnce(&mut [u64]) -> Result<usize, E>,
) -> Result<usize, E> {
    if buf.len() <= 1 {
        pop().map(|v| {
            buf[0] = v;
            1
        })
    } else {
        pop_into(buf)
    }
}

/// `shmkit __bench-worker CASE INDEX ARGS...`: one worker process.
pub fn worker(args: &[String]) -> ExitCode {
    match worker_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("bench worker {args:?}: {m}");
            ExitCode::FAILURE
        }
    }
}

fn worker_inner(args: &[String]) -> Res<()> {
    let case = args.first().ok_or("no case")?.as_str();
    let idx = arg(args, 1)? as usize;
    // Every case's first argument is its count, checked here before the
    // control block is opened; each group's `worker` reads it again.
    arg(args, 2)?;
    let ctl = Ctl::open().map_err(e)?;
    pin(idx);
    counter::worker(case, idx, args, &ctl)
        .or_else(|| float_add::worker(case, idx, args, &ctl))
        .or_else(|| queue::worker(case, idx, args, &ctl))
        .or_else(|| latency::worker(case, idx, args, &ctl))
        .or_else(|| pipe::worker(case, idx, args, &ctl))
        .or_else(|| manager::worker(case, idx, args, &ctl))
        .or_else(|| mpmc::worker(case, idx, args, &ctl))
        .or_else(|| snapshot::worker(case, idx, args, &ctl))
        .unwrap_or_else(|| Err(format!("unknown case {case}")))
}

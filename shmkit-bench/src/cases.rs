//! The benchmark cases: what the parent sets up and what each worker does.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier, Mutex};

use super::baseline::{PthreadRing, PthreadShared};
use super::{
    Ctl, Options, Record, now_ns, percentiles, pin, progress, spawn_worker, summary, wait_all,
};
use shmkit::Ordering;
use shmkit::ring::{PopError, Ring, WaitStrategy};
use shmkit::{SharedAccumulator, SharedValue};

mod bridge;
mod mpmc;
mod snapshot;

pub(super) use bridge::bridge;
pub(super) use mpmc::mpmc;
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

// ---------------------------------------------------------------- counters

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

fn counter_atomic(w: usize, iters: u64) -> Res<f64> {
    let v = SharedValue::<u64>::create_anonymous(0).map_err(e)?;
    let (wall, _) = procs("counter-atomic", w, iters, &|c| v.share_with(c, "B_DATA"))?;
    let got = v.load(Ordering::SeqCst);
    if got != w as u64 * iters {
        return Err(format!("fetch_add counter ended at {got}"));
    }
    Ok(w as f64 * iters as f64 / wall)
}

/// Returns (ops/s, hand-offs per op).
fn counter_pthread(w: usize, iters: u64, float: bool) -> Res<(f64, f64)> {
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

pub(super) fn counter(o: &Options) -> Res<Vec<Record>> {
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

pub(super) fn float_add(o: &Options) -> Res<Vec<Record>> {
    let iters: u64 = if o.full { 2_000_000 } else { 300_000 };
    let mut out = Vec::new();
    for w in [1usize, 2] {
        let [c, m, s] = alternate(
            reps(o),
            [
                &mut || {
                    let v = SharedValue::<f64>::create_anonymous(0.0).map_err(e)?;
                    let (wall, _) = procs("float-cas", w, iters, &|c| v.share_with(c, "B_DATA"))?;
                    if v.load(Ordering::SeqCst) != (w as u64 * iters) as f64 {
                        return Err("CAS float sum wrong".into());
                    }
                    Ok(w as f64 * iters as f64 / wall)
                },
                &mut || counter_pthread(w, iters, true).map(|r| r.0),
                &mut || {
                    let acc = SharedAccumulator::create_anonymous(w).map_err(e)?;
                    let (wall, _) =
                        procs("float-striped", w, iters, &|c| acc.share_with(c, "B_DATA"))?;
                    if acc.sum() != (w as u64 * iters) as f64 {
                        return Err("striped float sum wrong".into());
                    }
                    Ok(w as f64 * iters as f64 / wall)
                },
            ],
        )?;
        let place = placement(w, "processes");
        for (name, xs) in [
            (format!("shmkit-cas-f64/{w}p"), c),
            (format!("pthread-mutex-f64/{w}p"), m),
            (format!("shmkit-striped/{w}p"), s),
        ] {
            out.push(record(
                "float-add",
                name,
                "throughput",
                "adds/s",
                xs,
                place.clone(),
            ));
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ queues

const RING_CAP: usize = 4096;

/// Run worker `{case}-prod` (index 0) and `c` workers `{case}-cons`
/// (indices 1..=c) on a queue that `share` hands to each; check that the
/// consumers together report `n` items (result word 2). Returns the control
/// block for the wall time and other results.
fn producer_consumers(
    case: &str,
    n: u64,
    c: usize,
    args: &[String],
    share: &dyn Fn(&mut Command),
) -> Res<Ctl> {
    let ctl = Ctl::create(1 + c).map_err(e)?;
    let mut kids = Vec::with_capacity(1 + c);
    for i in 0..=c {
        let role = if i == 0 { "prod" } else { "cons" };
        kids.push(spawn_worker(&ctl, &format!("{case}-{role}"), i, args, share).map_err(e)?);
    }
    ctl.go();
    wait_all(kids)?;
    let got: u64 = (1..=c)
        .map(|i| ctl.slot(i, 2).load(Ordering::Acquire))
        .sum();
    if got != n {
        return Err(format!("{case}: consumers got {got} of {n} items"));
    }
    Ok(ctl)
}

/// shmkit ring, 1 producer and `c` consumers, batch size `batch`.
/// Returns (items/s, futex calls per item).
/// The `batch` of [`ring_throughput`] that pops one item at a time through
/// a `SoleConsumer` (plain stores, no read-modify-write; one consumer).
const SOLE: usize = 0;

fn ring_throughput(n: u64, c: usize, batch: usize) -> Res<(f64, f64)> {
    let ring = Ring::<u64>::create_anonymous(RING_CAP).map_err(e)?;
    let args = [n.to_string(), batch.to_string()];
    let ctl = producer_consumers("ring", n, c, &args, &|cmd| ring.share_with(cmd, "B_RING"))?;
    let futex: u64 = (0..=c)
        .map(|i| ctl.slot(i, 3).load(Ordering::Acquire))
        .sum();
    Ok((n as f64 / ctl.wall(), futex as f64 / n as f64))
}

/// `ring_throughput`, keeping its futex calls per item in `futex`.
fn ring_keeping_futex(n: u64, c: usize, batch: usize, futex: &mut Vec<f64>) -> Res<f64> {
    let (rate, f) = ring_throughput(n, c, batch)?;
    futex.push(f);
    Ok(rate)
}

fn pthread_ring_throughput(n: u64, c: usize) -> Res<f64> {
    let ring = PthreadRing::create(RING_CAP).map_err(e)?;
    let args = [n.to_string()];
    let ctl = producer_consumers("pring", n, c, &args, &|cmd| ring.share_with(cmd, "B_RING"))?;
    Ok(n as f64 / ctl.wall())
}

fn pipe_throughput(n: u64) -> Res<f64> {
    let ctl = Ctl::create(2).map_err(e)?;
    let args = [n.to_string()];
    let mut prod = spawn_worker(&ctl, "pipe-prod", 0, &args, |cmd| {
        cmd.stdout(Stdio::piped());
    })
    .map_err(e)?;
    let out = prod.stdout.take().ok_or("no pipe")?;
    let cons = spawn_worker(&ctl, "pipe-cons", 1, &args, |cmd| {
        cmd.stdin(Stdio::from(out));
    })
    .map_err(e)?;
    ctl.go();
    wait_all(vec![prod, cons])?;
    if ctl.slot(1, 2).load(Ordering::Acquire) != n {
        return Err("pipe lost items".into());
    }
    Ok(n as f64 / ctl.wall())
}

/// One producer thread (core 0) pushing `0..n` through `push` (false: full,
/// try again) and one consumer thread (core 1) popping with `pop` (`None`:
/// empty) until it has `n` items; checks their sum. Returns items/s.
fn spsc_threads(
    n: u64,
    mut push: impl FnMut(u64) -> bool + Send + 'static,
    mut pop: impl FnMut() -> Option<u64> + Send + 'static,
) -> Res<f64> {
    let b = Arc::new(Barrier::new(2));
    let b2 = b.clone();
    let prod = std::thread::spawn(move || {
        pin(0);
        b2.wait();
        let t0 = now_ns();
        for v in 0..n {
            while !push(v) {
                std::hint::spin_loop();
            }
        }
        t0
    });
    let cons = std::thread::spawn(move || {
        pin(1);
        b.wait();
        let (mut got, mut sum) = (0u64, 0u64);
        while got < n {
            match pop() {
                Some(v) => {
                    got += 1;
                    sum = sum.wrapping_add(v);
                }
                None => std::hint::spin_loop(),
            }
        }
        (now_ns(), sum)
    });
    let t0 = prod.join().map_err(|_| "producer panicked")?;
    let (end, sum) = cons.join().map_err(|_| "consumer panicked")?;
    if sum != n * n.saturating_sub(1) / 2 {
        return Err(format!("items summed to {sum}: lost or repeated"));
    }
    Ok(n as f64 / ((end - t0) as f64 / 1e9))
}

fn arrayqueue_threads(n: u64) -> Res<f64> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<u64>::new(RING_CAP));
    let q2 = q.clone();
    spsc_threads(n, move |v| q2.push(v).is_ok(), move || q.pop())
}

/// `rtrb`, the best-known Rust SPSC ring, between two pinned threads: the
/// ceiling a one-consumer queue can reach here (shmkit's ring serves any
/// number of consumers, in any process, and survives their deaths).
fn rtrb_threads(n: u64) -> Res<f64> {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(RING_CAP);
    spsc_threads(n, move |v| tx.push(v).is_ok(), move || rx.pop().ok())
}

fn mutex_vecdeque_threads(n: u64) -> Res<f64> {
    use std::collections::VecDeque;
    let q = Arc::new(Mutex::new(VecDeque::<u64>::with_capacity(RING_CAP)));
    let q2 = q.clone();
    spsc_threads(
        n,
        move |v| {
            let mut g = q2.lock().unwrap_or_else(|p| p.into_inner());
            let room = g.len() < RING_CAP;
            if room {
                g.push_back(v);
            }
            room
        },
        move || q.lock().unwrap_or_else(|p| p.into_inner()).pop_front(),
    )
}

pub(super) fn queue(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 10_000_000 } else { 2_000_000 };
    let mut out = Vec::new();
    let (mut f1, mut fb, mut f2, mut f2b) = (vec![], vec![], vec![], vec![]);
    let mut fq = vec![];
    let mut fs = vec![];
    let [r1, rs, q1, rb, aq, rt, mv, pr, pp] = alternate(
        reps(o),
        [
            &mut || ring_keeping_futex(n, 1, 1, &mut f1),
            &mut || ring_keeping_futex(n, 1, SOLE, &mut fs),
            &mut || mpmc::shmkit_queue(n, 1, 1, mpmc::QueueMode::One, &mut fq),
            &mut || ring_keeping_futex(n, 1, 64, &mut fb),
            &mut || arrayqueue_threads(n),
            &mut || rtrb_threads(n),
            &mut || mutex_vecdeque_threads(n),
            &mut || pthread_ring_throughput(n, 1),
            &mut || pipe_throughput(n),
        ],
    )?;
    let [r2, r2b, pr2] = alternate(
        reps(o),
        [
            &mut || ring_keeping_futex(n, 2, 1, &mut f2),
            &mut || ring_keeping_futex(n, 2, 64, &mut f2b),
            &mut || pthread_ring_throughput(n, 2),
        ],
    )?;
    let fx = mpmc::futex_note;
    let p2 = placement(2, "producer, consumer");
    let p3 = placement(3, "producer, consumers");
    let one = mpmc::QueueMode::One;
    let rows: Vec<(&str, Vec<f64>, String)> = vec![
        ("shmkit-ring/1p1c", r1, format!("{p2}; {}", fx(f1))),
        (
            "shmkit-ring-sole/1p1c",
            rs,
            format!("{p2}; a SoleConsumer, one item a pop; {}", fx(fs)),
        ),
        (
            "shmkit-queue-1/1p1c",
            q1,
            format!("{p2}; the MPMC Queue, {}; {}", one.note(), fx(fq)),
        ),
        ("shmkit-ring-batch64/1p1c", rb, format!("{p2}; {}", fx(fb))),
        ("arrayqueue/1t1t", aq, placement(2, "threads")),
        ("rtrb/1t1t", rt, placement(2, "threads; SPSC only")),
        ("mutex-vecdeque/1t1t", mv, placement(2, "threads")),
        ("pthread-ring/1p1c", pr, format!("{p2}; mutex + condvars")),
        ("pipe/1p1c", pp, format!("{p2}; 64 KiB buffered writes")),
        ("shmkit-ring/1p2c", r2, format!("{p3}; {}", fx(f2))),
        (
            "shmkit-ring-batch64/1p2c",
            r2b,
            format!("{p3}; {}", fx(f2b)),
        ),
        ("pthread-ring/1p2c", pr2, format!("{p3}; mutex + condvars")),
    ];
    for (name, xs, note) in rows {
        out.push(record(
            "queue-throughput",
            name.into(),
            "throughput",
            "items/s",
            xs,
            note,
        ));
    }
    Ok(out)
}

// ----------------------------------------------------------------- latency

/// Run a ping (worker 0, core 0) / pong (worker 1, core 1) pair; the ping
/// writes percentiles of the one-way latency (RTT / 2) into its result words.
fn pingpong(case: &str, samples: u64, share: &dyn Fn(&mut Command, bool)) -> Res<[f64; 3]> {
    let ctl = Ctl::create(2).map_err(e)?;
    let args = [samples.to_string()];
    let ping =
        spawn_worker(&ctl, &format!("{case}-ping"), 0, &args, |c| share(c, true)).map_err(e)?;
    let pong =
        spawn_worker(&ctl, &format!("{case}-pong"), 1, &args, |c| share(c, false)).map_err(e)?;
    ctl.go();
    wait_all(vec![ping, pong])?;
    Ok(std::array::from_fn(|i| {
        f64::from_bits(ctl.slot(0, 2 + i).load(Ordering::Acquire))
    }))
}

fn os_pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(super) fn latency(o: &Options) -> Res<Vec<Record>> {
    let spin_n: u64 = if o.full { 200_000 } else { 20_000 };
    let block_n: u64 = if o.full { 20_000 } else { 2_000 };
    let mut pct: [Vec<[f64; 3]>; 8] = Default::default();
    for _ in 0..reps(o) {
        let cl = shmkit::SharedArray::<u64>::create_anonymous(16).map_err(e)?;
        pct[0].push(pingpong("lat-cl", spin_n, &|c, _| {
            cl.share_with(c, "B_DATA")
        })?);
        for (k, mode, n) in [
            (1, "spin", spin_n),
            (2, "block", block_n),
            (4, "async", block_n),
            (5, "yield", spin_n),
            (6, "sleep", block_n),
            (7, "sole", spin_n),
        ] {
            let a = Ring::<u64>::create_anonymous(64).map_err(e)?;
            let b = Ring::<u64>::create_anonymous(64).map_err(e)?;
            let case = if mode == "sole" {
                "lat-sole".to_string()
            } else {
                format!("lat-ring-{mode}")
            };
            pct[k].push(pingpong(&case, n, &|c, _| {
                a.share_with(c, "B_RING");
                b.share_with(c, "B_RING2");
            })?);
        }
        // Pipes: ping writes to pong's stdin, pong writes to ping's stdin.
        let (a_r, a_w) = os_pipe()?;
        let (b_r, b_w) = os_pipe()?;
        let fds = Mutex::new(Some((a_r, a_w, b_r, b_w)));
        pct[3].push(pingpong("lat-pipe", block_n, &|c, is_ping| {
            let mut g = fds.lock().unwrap();
            let (a_r, a_w, b_r, b_w) = g.as_ref().unwrap();
            let dup = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
            if is_ping {
                c.stdout(dup(a_w)).stdin(dup(b_r));
            } else {
                c.stdin(dup(a_r)).stdout(dup(b_w));
                // Both ends are spawned: drop the parent's copies so EOF works.
                *g = None;
            }
        })?);
    }
    let place = "ping on core 0, pong on core 1; one-way = round trip / 2".to_string();
    let names = [
        (
            "cacheline-pingpong",
            "one word bouncing between two cores (the floor)",
        ),
        ("shmkit-ring-spin", "two rings, pop with WaitStrategy::Spin"),
        (
            "shmkit-ring-blocking",
            "two rings, pop with the default WaitStrategy::SpinThenSleep(60 us)",
        ),
        ("pipe", "two pipes, blocking read"),
        (
            "shmkit-ring-async",
            "two rings, pop_async on a current-thread tokio runtime: re-polls up to \
             60 us, then parks with the process's waiter thread",
        ),
        (
            "shmkit-ring-spinyield",
            "two rings, pop with WaitStrategy::SpinYield (never sleeps)",
        ),
        (
            "shmkit-ring-block",
            "two rings, pop with WaitStrategy::Block (sleeps at once: every hand-off a wake-up)",
        ),
        (
            "shmkit-ring-sole-spin",
            "two rings, a SoleConsumer on each, pop with WaitStrategy::Spin",
        ),
    ];
    let mut out = Vec::new();
    for (i, (name, what)) in names.iter().enumerate() {
        let p50s: Vec<f64> = pct[i].iter().map(|p| p[0]).collect();
        let (value, min, max) = summary(p50s.clone());
        let mid = pct[i]
            .iter()
            .find(|p| p[0] == value)
            .copied()
            .unwrap_or([f64::NAN; 3]);
        let r = Record {
            group: "latency",
            name: (*name).into(),
            metric: "one-way p50",
            unit: "ns",
            value,
            min,
            max,
            pct: Some(mid),
            note: format!("{what}; {place}"),
        };
        progress(&r);
        out.push(r);
    }
    Ok(out)
}

fn socketpair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dup(f: &OwnedFd) -> Res<Stdio> {
    Ok(Stdio::from(f.try_clone().map_err(e)?))
}

/// Ring capacity (frames) for the pipe group: room for a 1 MiB message.
const PIPE_CAP: usize = 32768;

/// shmkit pipe vs a kernel pipe vs a Unix socketpair: round-trip latency of
/// an 8-byte message, and one-way bytes/s for 64 B, 4 KiB and 1 MiB messages.
pub(super) fn pipe(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 100_000 } else { 10_000 };
    let mut lat: [Vec<[f64; 3]>; 3] = Default::default();
    for _ in 0..reps(o) {
        let p = shmkit::pipe::Pipe::create_anonymous(64).map_err(e)?;
        lat[0].push(pingpong("lat-shmpipe", n, &|c, _| {
            p.share_with(c, "B_PIPE")
        })?);
        let (a_r, a_w) = os_pipe()?;
        let (b_r, b_w) = os_pipe()?;
        lat[1].push(pingpong("lat-pipe", n, &|c, ping| {
            let (i, o) = if ping { (&b_r, &a_w) } else { (&a_r, &b_w) };
            c.stdin(dup(i).unwrap()).stdout(dup(o).unwrap());
        })?);
        let (sa, sb) = socketpair()?;
        lat[2].push(pingpong("lat-pipe", n, &|c, ping| {
            let s = if ping { &sa } else { &sb };
            c.stdin(dup(s).unwrap()).stdout(dup(s).unwrap());
        })?);
    }
    let mut out = Vec::new();
    let place = "ping on core 0, pong on core 1; one-way = round trip / 2".to_string();
    for (i, name) in ["shmkit-pipe", "kernel-pipe", "socketpair"]
        .iter()
        .enumerate()
    {
        let (value, min, max) = summary(lat[i].iter().map(|p| p[0]).collect());
        let mid = lat[i]
            .iter()
            .find(|p| p[0] == value)
            .copied()
            .unwrap_or([f64::NAN; 3]);
        let r = Record {
            group: "pipe",
            name: format!("{name}-roundtrip"),
            metric: "one-way p50",
            unit: "ns",
            value,
            min,
            max,
            pct: Some(mid),
            note: format!("8-byte messages, blocking receive; {place}"),
        };
        progress(&r);
        out.push(r);
    }
    let total: u64 = if o.full { 256 << 20 } else { 64 << 20 };
    for (size, label) in [(64u64, "64B"), (4096, "4KiB"), (1 << 20, "1MiB")] {
        let count = (total / size).max(4);
        let args = [count.to_string(), size.to_string()];
        let [shm, kp, sp] = alternate(
            reps(o),
            [
                &mut || {
                    let p = shmkit::pipe::Pipe::create_anonymous(PIPE_CAP).map_err(e)?;
                    let ctl = producer_consumers("msg-shm", count, 1, &args, &|c| {
                        p.share_with(c, "B_PIPE")
                    })?;
                    Ok((count * size) as f64 / ctl.wall())
                },
                &mut || {
                    let (r, w) = os_pipe()?;
                    fd_stream(count, size, &args, &r, &w)
                },
                &mut || {
                    let (a, b) = socketpair()?;
                    fd_stream(count, size, &args, &b, &a)
                },
            ],
        )?;
        let place = placement(2, "sender, receiver");
        for (name, xs) in [
            ("shmkit-pipe", shm),
            ("kernel-pipe", kp),
            ("socketpair", sp),
        ] {
            out.push(record(
                "pipe",
                format!("{name}-{label}"),
                "throughput",
                "bytes/s",
                xs,
                place.clone(),
            ));
        }
    }
    Ok(out)
}

/// Stream `count` messages of `size` bytes from a writer worker (stdout =
/// `w`) to a reader worker (stdin = `r`); bytes/s.
fn fd_stream(count: u64, size: u64, args: &[String], r: &OwnedFd, w: &OwnedFd) -> Res<f64> {
    let ctl = Ctl::create(2).map_err(e)?;
    let prod = spawn_worker(&ctl, "msg-fd-prod", 0, args, |c| {
        c.stdout(dup(w).unwrap());
    })
    .map_err(e)?;
    let cons = spawn_worker(&ctl, "msg-fd-cons", 1, args, |c| {
        c.stdin(dup(r).unwrap());
    })
    .map_err(e)?;
    ctl.go();
    wait_all(vec![prod, cons])?;
    if ctl.slot(1, 2).load(Ordering::Acquire) != count {
        return Err("a message stream lost messages".into());
    }
    Ok((count * size) as f64 / ctl.wall())
}

/// Keys for worker `idx`: distinct across workers, never 0.
fn mkey(idx: usize, i: u64) -> u64 {
    ((idx as u64 + 1) << 32) | i
}

/// Python's Manager dict and list, 2 processes, for the manager group.
const PYTHON_MANAGER: &str = include_str!("../python/manager.py");

/// SharedMap and SharedList against the same jobs under a process-shared
/// mutex (processes) and std's Mutex (threads); Python's Manager with
/// `--python`.
pub(super) fn manager(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 500_000 } else { 100_000 };
    let w = 2usize;
    let cap = ((w as u64 * n * 2) as usize).next_power_of_two();
    let args_share = |case: &str, share: &dyn Fn(&mut Command)| -> Res<f64> {
        let (wall, _) = procs(case, w, n, share)?;
        Ok(w as f64 * n as f64 / wall)
    };
    let (mut map_get, mut tab_get, mut hm_get) = (Vec::new(), Vec::new(), Vec::new());
    let [map_ins, tab_ins, hm_ins, list, pvec, mvec] = alternate(
        reps(o),
        [
            &mut || {
                let map = shmkit::map::SharedMap::<u64, u64>::create_anonymous(cap).map_err(e)?;
                let ins = args_share("map-ins", &|c| map.share_with(c, "B_DATA"))?;
                map_get.push(args_share("map-get", &|c| map.share_with(c, "B_DATA"))?);
                if map.len() != w * n as usize {
                    return Err(format!("map holds {} entries", map.len()));
                }
                Ok(ins)
            },
            &mut || {
                let t = super::baseline::PthreadTable::create(cap).map_err(e)?;
                let ins = args_share("ptab-ins", &|c| t.share_with(c, "B_DATA"))?;
                tab_get.push(args_share("ptab-get", &|c| t.share_with(c, "B_DATA"))?);
                Ok(ins)
            },
            &mut || {
                let (ins, get) = hashmap_threads(w, n)?;
                hm_get.push(get);
                Ok(ins)
            },
            &mut || {
                let l =
                    shmkit::list::SharedList::<u64>::create_anonymous(w * n as usize).map_err(e)?;
                let r = args_share("list-push", &|c| l.share_with(c, "B_DATA"))?;
                if l.to_vec().len() != w * n as usize {
                    return Err("list lost items".into());
                }
                Ok(r)
            },
            &mut || {
                let t = super::baseline::PthreadTable::create(cap).map_err(e)?;
                let r = args_share("pvec-push", &|c| t.share_with(c, "B_DATA"))?;
                if t.vec_len() != w as u64 * n {
                    return Err("pthread vector lost items".into());
                }
                Ok(r)
            },
            &mut || vec_threads(w, n),
        ],
    )?;
    let pp = placement(w, "processes");
    let pt = placement(w, "threads");
    let mut out = Vec::new();
    for (name, xs, place) in [
        ("shmkit-map-insert/2p", map_ins, &pp),
        ("pthread-table-insert/2p", tab_ins, &pp),
        ("mutex-hashmap-insert/2t", hm_ins, &pt),
        ("shmkit-map-get/2p", map_get, &pp),
        ("pthread-table-get/2p", tab_get, &pp),
        ("mutex-hashmap-get/2t", hm_get, &pt),
        ("shmkit-list-push/2p", list, &pp),
        ("pthread-vec-push/2p", pvec, &pp),
        ("mutex-vec-push/2t", mvec, &pt),
    ] {
        out.push(record(
            "manager",
            name.into(),
            "throughput",
            "ops/s",
            xs,
            place.clone(),
        ));
    }
    if o.python {
        let m: u64 = if o.full { 10_000 } else { 2_000 };
        let mut py: [Vec<f64>; 3] = Default::default();
        let keys = [
            "python-manager-dict-set/2p",
            "python-manager-dict-get/2p",
            "python-manager-list-append/2p",
        ];
        for _ in 0..reps(o) {
            let got = python_once(PYTHON_MANAGER, &[m.to_string()], keys)?;
            for (xs, v) in py.iter_mut().zip(got) {
                xs.push(v);
            }
        }
        for (key, xs) in keys.iter().zip(py) {
            out.push(record(
                "manager",
                (*key).into(),
                "throughput",
                "ops/s",
                xs,
                "python3 Manager server, fork, unpinned".into(),
            ));
        }
    }
    Ok(out)
}

/// `Mutex<HashMap>` between `w` pinned threads: (insert ops/s, get ops/s).
fn hashmap_threads(w: usize, n: u64) -> Res<(f64, f64)> {
    let m = Arc::new(Mutex::new(std::collections::HashMap::<u64, u64>::new()));
    let m2 = m.clone();
    let ins = pinned_threads(w, move |t| {
        for i in 0..n {
            m2.lock().unwrap().insert(mkey(t, i), i);
        }
    })?;
    let m3 = m.clone();
    let get = pinned_threads(w, move |t| {
        for i in 0..n {
            assert_eq!(m3.lock().unwrap().get(&mkey(t, i)).copied(), Some(i));
        }
    })?;
    let ops = w as f64 * n as f64;
    Ok((ops / ins, ops / get))
}

/// `Mutex<Vec>` pushes from `w` pinned threads, ops/s.
fn vec_threads(w: usize, n: u64) -> Res<f64> {
    let v = Arc::new(Mutex::new(Vec::<u64>::with_capacity(w * n as usize)));
    let wall = pinned_threads(w, move |t| {
        for i in 0..n {
            v.lock().unwrap().push(mkey(t, i));
        }
    })?;
    Ok(w as f64 * n as f64 / wall)
}

/// Python's multiprocessing doing the same jobs: a Value incremented under
/// get_lock() by 2 processes, a Queue and a Pipe from 1 producer to 1
/// consumer. Prints `name ops_per_second` lines.
const PYTHON_SCRIPT: &str = include_str!("../python/multiprocessing_jobs.py");

pub(super) fn python(o: &Options) -> Res<Vec<Record>> {
    let (n, q) = if o.full {
        (200_000u64, 200_000u64)
    } else {
        (50_000, 30_000)
    };
    let mut py: [Vec<f64>; 3] = Default::default();
    let (mut ours_counter, mut ours_ring, mut ours_batch) = (Vec::new(), Vec::new(), Vec::new());
    let keys = [
        "python-value-get_lock/2p",
        "python-queue/1p1c",
        "python-pipe/1p1c",
    ];
    for _ in 0..reps(o) {
        let got = python_once(PYTHON_SCRIPT, &[n.to_string(), q.to_string()], keys)?;
        for (xs, v) in py.iter_mut().zip(got) {
            xs.push(v);
        }
        // shmkit doing the same jobs in the same run, alternating with Python.
        ours_counter.push(counter_atomic(2, n)?);
        ours_ring.push(ring_throughput(q.max(1_000_000), 1, 1)?.0);
        ours_batch.push(ring_throughput(q.max(1_000_000), 1, 64)?.0);
    }
    let [pv, pq, pp] = py;
    let note = "python3 multiprocessing, fork start method, unpinned".to_string();
    Ok(vec![
        record(
            "python",
            "shmkit-fetch_add/2p".into(),
            "throughput",
            "ops/s",
            ours_counter,
            placement(2, "processes"),
        ),
        record(
            "python",
            "python-value-get_lock/2p".into(),
            "throughput",
            "ops/s",
            pv,
            note.clone(),
        ),
        record(
            "python",
            "shmkit-ring/1p1c".into(),
            "throughput",
            "items/s",
            ours_ring,
            placement(2, "producer, consumer"),
        ),
        record(
            "python",
            "shmkit-ring-batch64/1p1c".into(),
            "throughput",
            "items/s",
            ours_batch,
            placement(2, "producer, consumer"),
        ),
        record(
            "python",
            "python-queue/1p1c".into(),
            "throughput",
            "items/s",
            pq,
            note.clone(),
        ),
        record(
            "python",
            "python-pipe/1p1c".into(),
            "throughput",
            "items/s",
            pp,
            note,
        ),
    ])
}

// ------------------------------------------------------------------ workers

fn arg(args: &[String], i: usize) -> Res<u64> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("worker argument {i} missing"))
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
    let n = arg(args, 2)?;
    let ctl = Ctl::open().map_err(e)?;
    pin(idx);
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
        "float-cas" => {
            let v = SharedValue::<f64>::open_inherited("B_DATA").map_err(e)?;
            ctl.start(idx);
            for _ in 0..n {
                v.fetch_add(1.0, Ordering::Relaxed);
            }
            ctl.finish(idx);
        }
        "float-striped" => {
            let acc = SharedAccumulator::open_inherited("B_DATA").map_err(e)?;
            ctl.start(idx);
            for _ in 0..n {
                acc.add_at(idx, 1.0);
            }
            ctl.finish(idx);
        }
        "ring-prod" => {
            let batch = arg(args, 3)? as usize;
            let ring = Ring::<u64>::open_inherited("B_RING").map_err(e)?;
            let mut tx = ring.producer().map_err(e)?;
            let mut buf = vec![0u64; batch.max(1)];
            ctl.start(idx);
            let mut v = 0;
            while v < n {
                if batch <= 1 {
                    tx.push(v).map_err(e)?;
                    v += 1;
                } else {
                    let k = (n - v).min(batch as u64) as usize;
                    for (j, slot) in buf[..k].iter_mut().enumerate() {
                        *slot = v + j as u64;
                    }
                    tx.push_slice(&buf[..k]).map_err(e)?;
                    v += k as u64;
                }
            }
            ctl.finish(idx);
            ctl.slot(idx, 3).store(tx.futex_calls(), Ordering::Release);
        }
        "ring-cons" if arg(args, 3)? as usize == SOLE => {
            let ring = Ring::<u64>::open_inherited("B_RING").map_err(e)?;
            let mut rx = ring.sole_consumer().map_err(e)?;
            let (mut got, mut last) = (0u64, None::<u64>);
            ctl.start(idx);
            loop {
                match rx.pop() {
                    Ok(v) => {
                        if last.is_some_and(|l| l >= v) {
                            return Err(format!("out of order: {last:?} then {v}"));
                        }
                        last = Some(v);
                        got += 1;
                    }
                    Err(PopError::Disconnected) => break,
                    Err(x) => return Err(e(x)),
                }
            }
            ctl.finish(idx);
            // Release: pairs with the parent's Acquire loads of the result
            // words after `wait_all` (which orders them anyway).
            ctl.slot(idx, 2).store(got, Ordering::Release);
            ctl.slot(idx, 3).store(rx.futex_calls(), Ordering::Release);
        }
        "ring-cons" => {
            let batch = arg(args, 3)? as usize;
            let ring = Ring::<u64>::open_inherited("B_RING").map_err(e)?;
            let rx = ring.consumer().map_err(e)?;
            let mut buf = vec![0u64; batch.max(1)];
            let (mut got, mut last) = (0u64, None::<u64>);
            ctl.start(idx);
            loop {
                match pop_one_or_batch(&mut buf, || rx.pop(), |b| rx.pop_into(b)) {
                    Ok(k) => {
                        for &v in &buf[..k] {
                            if last.is_some_and(|l| l >= v) {
                                return Err(format!("out of order: {last:?} then {v}"));
                            }
                            last = Some(v);
                        }
                        got += k as u64;
                    }
                    Err(PopError::Disconnected) => break,
                    Err(x) => return Err(e(x)),
                }
            }
            ctl.finish(idx);
            // Release: pairs with the parent's Acquire loads of the result
            // words after `wait_all` (which orders them anyway).
            ctl.slot(idx, 2).store(got, Ordering::Release);
            ctl.slot(idx, 3).store(rx.futex_calls(), Ordering::Release);
        }
        "pring-prod" => {
            let ring = PthreadRing::open_inherited("B_RING", RING_CAP).map_err(e)?;
            ctl.start(idx);
            for v in 0..n {
                ring.push(v);
            }
            ring.close();
            ctl.finish(idx);
        }
        "pring-cons" => {
            let ring = PthreadRing::open_inherited("B_RING", RING_CAP).map_err(e)?;
            let mut got = 0u64;
            ctl.start(idx);
            while ring.pop().is_some() {
                got += 1;
            }
            ctl.finish(idx);
            ctl.slot(idx, 2).store(got, Ordering::Release);
        }
        "pipe-prod" => {
            let mut w = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
            ctl.start(idx);
            for v in 0..n {
                w.write_all(&v.to_ne_bytes()).map_err(e)?;
            }
            w.flush().map_err(e)?;
            ctl.finish(idx);
        }
        "pipe-cons" => {
            let mut r = std::io::BufReader::with_capacity(64 << 10, std::io::stdin().lock());
            let mut b = [0u8; 8];
            let mut got = 0u64;
            ctl.start(idx);
            while got < n && r.read_exact(&mut b).is_ok() {
                got += 1;
            }
            ctl.finish(idx);
            ctl.slot(idx, 2).store(got, Ordering::Release);
        }
        "lat-cl-ping" | "lat-cl-pong" => {
            let w = shmkit::SharedArray::<u64>::open_inherited("B_DATA").map_err(e)?;
            let cell = &w[0];
            let ping = case.ends_with("ping");
            let mut xs = Vec::with_capacity(n as usize);
            ctl.start(idx);
            for i in 0..n {
                if ping {
                    let t0 = now_ns();
                    cell.store(2 * i + 1, Ordering::Release);
                    while cell.load(Ordering::Acquire) != 2 * i + 2 {
                        std::hint::spin_loop();
                    }
                    xs.push((now_ns() - t0) as f64 / 2.0);
                } else {
                    while cell.load(Ordering::Acquire) != 2 * i + 1 {
                        std::hint::spin_loop();
                    }
                    cell.store(2 * i + 2, Ordering::Release);
                }
            }
            ctl.finish(idx);
            report(&ctl, idx, &mut xs);
        }
        c if c.starts_with("lat-ring-") => {
            let asynchronous = c.contains("async");
            let wait = if c.contains("-spin-") {
                WaitStrategy::Spin
            } else if c.contains("-yield-") {
                WaitStrategy::SpinYield
            } else if c.contains("-sleep-") {
                WaitStrategy::Block
            } else {
                WaitStrategy::default()
            };
            let ping = c.ends_with("ping");
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(e)?;
            let a = Ring::<u64>::open_inherited("B_RING").map_err(e)?;
            let b = Ring::<u64>::open_inherited("B_RING2").map_err(e)?;
            let (mut tx, mut rx) = if ping {
                (a.producer().map_err(e)?, b.consumer().map_err(e)?)
            } else {
                (b.producer().map_err(e)?, a.consumer().map_err(e)?)
            };
            rx.set_wait(wait);
            let recv = || -> Res<u64> {
                if asynchronous {
                    rt.block_on(rx.pop_async()).map_err(e)
                } else {
                    rx.pop().map_err(e)
                }
            };
            ping_pong_loop(&ctl, idx, n, ping, |v| tx.push(v).map_err(e), recv)?;
        }
        "lat-sole-ping" | "lat-sole-pong" => {
            let ping = case.ends_with("ping");
            let a = Ring::<u64>::open_inherited("B_RING").map_err(e)?;
            let b = Ring::<u64>::open_inherited("B_RING2").map_err(e)?;
            let (mut tx, mut rx) = if ping {
                (a.producer().map_err(e)?, b.sole_consumer().map_err(e)?)
            } else {
                (b.producer().map_err(e)?, a.sole_consumer().map_err(e)?)
            };
            rx.set_wait(WaitStrategy::Spin);
            ping_pong_loop(
                &ctl,
                idx,
                n,
                ping,
                |v| tx.push(v).map_err(e),
                || rx.pop().map_err(e),
            )?;
        }
        "lat-pipe-ping" | "lat-pipe-pong" => {
            let ping = case.ends_with("ping");
            let (mut out, mut inp) = (std::io::stdout().lock(), std::io::stdin().lock());
            let mut b = [0u8; 8];
            let mut xs = Vec::with_capacity(n as usize);
            ctl.start(idx);
            for i in 0..n {
                if ping {
                    let t0 = now_ns();
                    out.write_all(&i.to_ne_bytes()).map_err(e)?;
                    out.flush().map_err(e)?;
                    inp.read_exact(&mut b).map_err(e)?;
                    xs.push((now_ns() - t0) as f64 / 2.0);
                } else {
                    inp.read_exact(&mut b).map_err(e)?;
                    out.write_all(&b).map_err(e)?;
                    out.flush().map_err(e)?;
                }
            }
            ctl.finish(idx);
            report(&ctl, idx, &mut xs);
        }
        "lat-shmpipe-ping" | "lat-shmpipe-pong" => {
            let ping = case.ends_with("ping");
            let p = shmkit::pipe::Pipe::open_inherited("B_PIPE").map_err(e)?;
            let mut conn = if ping { p.end_a() } else { p.end_b() }.map_err(e)?;
            let mut xs = Vec::with_capacity(n as usize);
            ctl.start(idx);
            for i in 0..n {
                if ping {
                    let t0 = now_ns();
                    conn.send(&i).map_err(e)?;
                    conn.recv::<u64>().map_err(e)?;
                    xs.push((now_ns() - t0) as f64 / 2.0);
                } else {
                    let v: u64 = conn.recv().map_err(e)?;
                    conn.send(&v).map_err(e)?;
                }
            }
            ctl.finish(idx);
            report(&ctl, idx, &mut xs);
        }
        "msg-shm-prod" | "msg-shm-cons" => {
            let size = arg(args, 3)? as usize;
            let p = shmkit::pipe::Pipe::open_inherited("B_PIPE").map_err(e)?;
            if case.ends_with("prod") {
                let mut conn = p.end_a().map_err(e)?;
                let msg = vec![0x5au8; size];
                ctl.start(idx);
                for _ in 0..n {
                    conn.send_bytes(&msg).map_err(e)?;
                }
                ctl.finish(idx);
            } else {
                let mut conn = p.end_b().map_err(e)?;
                let mut got = 0u64;
                let mut m = Vec::with_capacity(size);
                ctl.start(idx);
                loop {
                    match conn.recv_bytes_into(&mut m) {
                        Ok(()) if m.len() == size => got += 1,
                        Ok(()) => return Err(format!("message of {} bytes", m.len())),
                        Err(PopError::Disconnected) => break,
                        Err(x) => return Err(e(x)),
                    }
                }
                ctl.finish(idx);
                ctl.slot(idx, 2).store(got, Ordering::Release);
            }
        }
        "msg-fd-prod" => {
            let size = arg(args, 3)? as usize;
            // Unbuffered: one write per message, as Python's send_bytes does
            // (Rust's stdout would batch small messages per syscall).
            // SAFETY: fd 1 is open for the whole process; ManuallyDrop keeps
            // this File from closing it.
            let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
            let msg = vec![0x5au8; size];
            ctl.start(idx);
            for _ in 0..n {
                out.write_all(&msg).map_err(e)?;
            }
            ctl.finish(idx);
        }
        "msg-fd-cons" => {
            let size = arg(args, 3)? as usize;
            let mut inp = std::io::stdin().lock();
            let mut buf = vec![0u8; size];
            let mut got = 0u64;
            ctl.start(idx);
            while got < n && inp.read_exact(&mut buf).is_ok() {
                got += 1;
            }
            ctl.finish(idx);
            ctl.slot(idx, 2).store(got, Ordering::Release);
        }
        "map-ins" | "map-get" => {
            let map = shmkit::map::SharedMap::<u64, u64>::open_inherited("B_DATA").map_err(e)?;
            let get = case == "map-get";
            ctl.start(idx);
            for i in 0..n {
                if get {
                    if map.get(&mkey(idx, i)) != Some(i) {
                        return Err(format!("map lost key {i}"));
                    }
                } else {
                    map.insert(mkey(idx, i), i).map_err(e)?;
                }
            }
            ctl.finish(idx);
        }
        "ptab-ins" | "ptab-get" | "pvec-push" => {
            let t = super::baseline::PthreadTable::open_inherited("B_DATA").map_err(e)?;
            ctl.start(idx);
            for i in 0..n {
                let ok = match case {
                    "ptab-ins" => t.insert(mkey(idx, i), i),
                    "ptab-get" => t.get(mkey(idx, i)) == Some(i),
                    _ => t.push(mkey(idx, i)),
                };
                if !ok {
                    return Err(format!("{case}: failed at {i}"));
                }
            }
            ctl.finish(idx);
        }
        "list-push" => {
            let list = shmkit::list::SharedList::<u64>::open_inherited("B_DATA").map_err(e)?;
            ctl.start(idx);
            for i in 0..n {
                list.push(mkey(idx, i))
                    .map_err(|_| "list full".to_string())?;
            }
            ctl.finish(idx);
        }
        other => {
            return mpmc::worker(other, idx, args, &ctl)
                .or_else(|| snapshot::worker(other, idx, args, &ctl))
                .unwrap_or_else(|| Err(format!("unknown case {other}")));
        }
    }
    Ok(())
}

/// One side of a ping-pong: ping sends `i` and times until the answer is
/// back (one-way = half), pong echoes what it receives; `n` rounds.
fn ping_pong_loop(
    ctl: &Ctl,
    idx: usize,
    n: u64,
    ping: bool,
    mut send: impl FnMut(u64) -> Res<()>,
    mut recv: impl FnMut() -> Res<u64>,
) -> Res<()> {
    let mut xs = Vec::with_capacity(n as usize);
    ctl.start(idx);
    for i in 0..n {
        if ping {
            let t0 = now_ns();
            send(i)?;
            recv()?;
            xs.push((now_ns() - t0) as f64 / 2.0);
        } else {
            send(recv()?)?;
        }
    }
    ctl.finish(idx);
    report(ctl, idx, &mut xs);
    Ok(())
}

fn report(ctl: &Ctl, idx: usize, xs: &mut [f64]) {
    if xs.is_empty() {
        return;
    }
    for (i, p) in percentiles(xs).into_iter().enumerate() {
        ctl.slot(idx, 2 + i).store(p.to_bits(), Ordering::Release);
    }
}

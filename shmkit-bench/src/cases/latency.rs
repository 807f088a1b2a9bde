//! Group `latency`: one-way latency of a ping-pong between two pinned processes
//! (a cache line, shmkit's rings, pipes), and the ping-pong harness `pipe` uses.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{Options, Record, Res, e, group_worker, reps};
use crate::{Ctl, now_ns, percentiles, progress, spawn_worker, summary, wait_all};
use shmkit::Ordering;
use shmkit::ring::{Ring, WaitStrategy};

/// Run a ping (worker 0, core 0) / pong (worker 1, core 1) pair; the ping
/// writes percentiles of the one-way latency (RTT / 2) into its result words.
pub(in crate::cases) fn pingpong(
    case: &str,
    samples: u64,
    share: &dyn Fn(&mut Command, bool),
) -> Res<[f64; 3]> {
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

pub(in crate::cases) fn os_pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn latency(o: &Options) -> Res<Vec<Record>> {
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
        let r = latency_record(
            "latency",
            (*name).into(),
            &pct[i],
            format!("{what}; {place}"),
        );
        out.push(r);
    }
    Ok(out)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(
        case,
        "lat-cl-ping"
            | "lat-cl-pong"
            | "lat-sole-ping"
            | "lat-sole-pong"
            | "lat-pipe-ping"
            | "lat-pipe-pong"
    ) || case.starts_with("lat-ring-");
    group_worker(ours, args, |n| {
        match case {
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
                report(ctl, idx, &mut xs);
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
                ping_pong_loop(ctl, idx, n, ping, |v| tx.push(v).map_err(e), recv)?;
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
                    ctl,
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
                report(ctl, idx, &mut xs);
            }
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
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

pub(in crate::cases) fn report(ctl: &Ctl, idx: usize, xs: &mut [f64]) {
    if xs.is_empty() {
        return;
    }
    for (i, p) in percentiles(xs).into_iter().enumerate() {
        ctl.slot(idx, 2 + i).store(p.to_bits(), Ordering::Release);
    }
}

/// The record of a one-way latency case from its repetitions (each
/// `[p50, p99, p99.9]` in ns): the median of the p50s, their range, and the
/// percentiles of the repetition whose p50 is that median. Printed as
/// progress. The latency, pipe and bridge groups report with it.
pub(in crate::cases) fn latency_record(
    group: &'static str,
    name: String,
    reps: &[[f64; 3]],
    note: String,
) -> Record {
    let (value, min, max) = summary(reps.iter().map(|p| p[0]).collect());
    let mid = reps
        .iter()
        .find(|p| p[0] == value)
        .copied()
        .unwrap_or([f64::NAN; 3]);
    let r = Record {
        group,
        name,
        metric: "one-way p50",
        unit: "ns",
        value,
        min,
        max,
        pct: Some(mid),
        note,
    };
    progress(&r);
    r
}

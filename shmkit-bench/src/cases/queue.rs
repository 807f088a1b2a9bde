//! Group `queue-throughput`: items/s from one producer to one or two consumers
//! (shmkit's `Ring`, the pthread ring, a pipe; `ArrayQueue`, `rtrb` and a
//! `Mutex<VecDeque>` between threads); its producer/consumers runner also
//! serves the `pipe` group's shmkit streams.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};

use super::mpmc;
use super::{
    Options, Record, Res, alternate, arg, e, group_worker, placement, pop_one_or_batch, record,
    reps,
};
use crate::baseline::PthreadRing;
use crate::{Ctl, now_ns, pin, spawn_worker, wait_all};
use shmkit::Ordering;
use shmkit::ring::{PopError, Ring};

pub(in crate::cases) const RING_CAP: usize = 4096;

/// Run worker `{case}-prod` (index 0) and `c` workers `{case}-cons`
/// (indices 1..=c) on a queue that `share` hands to each; check that the
/// consumers together report `n` items (result word 2). Returns the control
/// block for the wall time and other results.
pub(in crate::cases) fn producer_consumers(
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

/// The `batch` of [`ring_throughput`] that pops one item at a time through
/// a `SoleConsumer` (plain stores, no read-modify-write; one consumer).
const SOLE: usize = 0;

/// shmkit ring, 1 producer and `c` consumers, batch size `batch`.
/// Returns (items/s, futex calls per item).
pub(in crate::cases) fn ring_throughput(n: u64, c: usize, batch: usize) -> Res<(f64, f64)> {
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

pub(crate) fn queue(o: &Options) -> Res<Vec<Record>> {
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

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(
        case,
        "ring-prod" | "ring-cons" | "pring-prod" | "pring-cons" | "pipe-prod" | "pipe-cons"
    );
    group_worker(ours, args, |n| {
        match case {
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
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
}

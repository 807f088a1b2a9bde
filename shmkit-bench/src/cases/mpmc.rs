//! Group `queue-mpmc`: several producers and several consumers on one queue,
//! the job of Python's `multiprocessing.Queue`. Each configuration runs the
//! lock-based queue in shared memory (a process-shared pthread mutex and
//! two condvars), shmkit's `Queue` (a lane per producer, processes),
//! crossbeam's `ArrayQueue` between threads (the in-process best of class),
//! and, with `--python`, `multiprocessing.Queue` itself. Group
//! `queue-single` sets one-producer `Queue` beside the SPMC `Ring`.
//! Every run checks that the consumers together got each item once (count
//! and sum of the values), so a queue that loses or repeats items fails the
//! run instead of posting a figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as StdOrdering};

use super::{
    Options, PthreadRing, RING_CAP, Record, Res, alternate, arg, e, pinned_threads, placement,
    python_once, record, reps, spawn_worker, wait_all,
};
use crate::Ctl;
use shmkit::Ordering;

/// (producers, consumers) of each configuration; 4p4c oversubscribes the
/// two cores of the machines this runs on, on purpose.
const CONFIGS: [(usize, usize); 4] = [(2, 1), (1, 2), (2, 2), (4, 4)];

const PYTHON_SCRIPT: &str = include_str!("../../python/mpmc_queue.py");

/// Sum of the values `0 .. n` that the producers push between them.
fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn check(case: &str, n: u64, got: u64, sum: u64) -> Res<()> {
    if got != n || sum != expected_sum(n) {
        return Err(format!(
            "{case}: consumers got {got} items (sum {sum}) of {n} (sum {})",
            expected_sum(n)
        ));
    }
    Ok(())
}

/// The pthread ring in shared memory: `p` producer processes (workers
/// `0..p`, each pushing `per` values of its own range) and `c` consumers
/// (workers `p..p+c`). Returns items/s.
fn pthread_ring(per: u64, p: usize, c: usize) -> Res<f64> {
    let ring = PthreadRing::with_producers(RING_CAP, p as u64).map_err(e)?;
    let ctl = Ctl::create(p + c).map_err(e)?;
    let args = [per.to_string()];
    let mut kids = Vec::with_capacity(p + c);
    for i in 0..p + c {
        let role = if i < p { "mpring-prod" } else { "mpring-cons" };
        kids.push(
            spawn_worker(&ctl, role, i, &args, |cmd| ring.share_with(cmd, "B_RING")).map_err(e)?,
        );
    }
    ctl.go();
    wait_all(kids)?;
    let n = per * p as u64;
    let got = (p..p + c)
        .map(|i| ctl.slot(i, 2).load(Ordering::Acquire))
        .sum();
    let sum = (p..p + c)
        .map(|i| ctl.slot(i, 3).load(Ordering::Acquire))
        .sum();
    check("pthread-ring", n, got, sum)?;
    Ok(n as f64 / ctl.wall())
}

/// Slots per producer lane: the pthread ring's capacity shared out, so the
/// queues hold the same number of items in all.
fn lane_cap(p: usize) -> usize {
    (RING_CAP / p).max(1).next_power_of_two()
}

/// shmkit's `Queue` in shared memory: `p` producer processes and `c`
/// consumers, as [`pthread_ring`]. The last producer to finish closes the
/// queue; consumers pop (in batches) until it is drained.
fn shmkit_queue(per: u64, p: usize, c: usize) -> Res<f64> {
    let q = shmkit::Queue::<u64>::create_anonymous(shmkit::QueueOptions::new(lane_cap(p), p, c))
        .map_err(e)?;
    let ctl = Ctl::create(p + c).map_err(e)?;
    let args = [per.to_string(), p.to_string()];
    let mut kids = Vec::with_capacity(p + c);
    for i in 0..p + c {
        let role = if i < p { "shmq-prod" } else { "shmq-cons" };
        kids.push(
            spawn_worker(&ctl, role, i, &args, |cmd| q.share_with(cmd, "B_QUEUE")).map_err(e)?,
        );
    }
    ctl.go();
    wait_all(kids)?;
    let n = per * p as u64;
    let got = (p..p + c)
        .map(|i| ctl.slot(i, 2).load(Ordering::Acquire))
        .sum();
    let sum = (p..p + c)
        .map(|i| ctl.slot(i, 3).load(Ordering::Acquire))
        .sum();
    check("shmkit-queue", n, got, sum)?;
    Ok(n as f64 / ctl.wall())
}

/// `ArrayQueue` between `p` producer and `c` consumer threads, pinned like
/// the processes. Consumers stop once every producer is done and the queue
/// is empty.
fn arrayqueue(per: u64, p: usize, c: usize) -> Res<f64> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<u64>::new(RING_CAP));
    let finished = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let (q2, f2, g2, s2) = (q.clone(), finished.clone(), got.clone(), sum.clone());
    let wall = pinned_threads(p + c, move |t| {
        if t < p {
            for v in t as u64 * per..(t as u64 + 1) * per {
                let mut item = v;
                while let Err(back) = q2.push(item) {
                    item = back;
                    std::hint::spin_loop();
                }
            }
            // Release: pairs with the consumers' Acquire load below, so a
            // consumer that sees every producer done sees all their pushes.
            f2.fetch_add(1, StdOrdering::Release);
        } else {
            let (mut n, mut s) = (0u64, 0u64);
            loop {
                if let Some(v) = q2.pop() {
                    n += 1;
                    s += v;
                } else if f2.load(StdOrdering::Acquire) == p && q2.is_empty() {
                    break;
                } else {
                    std::hint::spin_loop();
                }
            }
            g2.fetch_add(n, StdOrdering::Relaxed);
            s2.fetch_add(s, StdOrdering::Relaxed);
        }
    })?;
    let n = per * p as u64;
    check(
        "arrayqueue",
        n,
        got.load(StdOrdering::Relaxed),
        sum.load(StdOrdering::Relaxed),
    )?;
    Ok(n as f64 / wall)
}

pub(crate) fn mpmc(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 4_000_000 } else { 1_000_000 };
    let mut out = Vec::new();
    for (p, c) in CONFIGS {
        let per = n / p as u64;
        let [pr, aq, sq] = alternate(
            reps(o),
            [
                &mut || pthread_ring(per, p, c),
                &mut || arrayqueue(per, p, c),
                &mut || shmkit_queue(per, p, c),
            ],
        )?;
        let place = placement(p + c, "producers, consumers");
        out.push(record(
            "queue-mpmc",
            format!("shmkit-queue/{p}p{c}c"),
            "throughput",
            "items/s",
            sq,
            format!("{place}; processes, a lane per producer, batches of 256"),
        ));
        out.push(record(
            "queue-mpmc",
            format!("pthread-ring/{p}p{c}c"),
            "throughput",
            "items/s",
            pr,
            format!("{place}; processes, mutex + condvars"),
        ));
        out.push(record(
            "queue-mpmc",
            format!("arrayqueue/{p}t{c}t"),
            "throughput",
            "items/s",
            aq,
            placement(p + c, "threads: producers, consumers"),
        ));
        if o.python {
            // multiprocessing.Queue moves ~10^5 items/s: fewer items.
            let q = if o.full { 200_000u64 } else { 40_000 };
            let key = format!("python-queue/{p}p{c}c");
            let mut xs = Vec::new();
            for _ in 0..reps(o) {
                let args = [q.to_string(), p.to_string(), c.to_string()];
                xs.push(python_once(PYTHON_SCRIPT, &args, [key.as_str()])?[0]);
            }
            out.push(record(
                "queue-mpmc",
                key,
                "throughput",
                "items/s",
                xs,
                format!("{} processes, unpinned; pickled ints", p + c),
            ));
        }
    }
    Ok(out)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(in crate::cases) fn worker(
    case: &str,
    idx: usize,
    args: &[String],
    ctl: &Ctl,
) -> Option<Res<()>> {
    let run = || -> Res<()> {
        let per = arg(args, 2)?;
        let ring = PthreadRing::open_inherited("B_RING", RING_CAP).map_err(e)?;
        if case == "mpring-prod" {
            let base = idx as u64 * per;
            ctl.start(idx);
            for v in base..base + per {
                ring.push(v);
            }
            ring.producer_done();
            ctl.finish(idx);
        } else {
            let (mut got, mut sum) = (0u64, 0u64);
            ctl.start(idx);
            while let Some(v) = ring.pop() {
                got += 1;
                sum += v;
            }
            ctl.finish(idx);
            ctl.slot(idx, 2).store(got, Ordering::Release);
            ctl.slot(idx, 3).store(sum, Ordering::Release);
        }
        Ok(())
    };
    let queue = || -> Res<()> {
        let per = arg(args, 2)?;
        let producers = arg(args, 3)?;
        let q = shmkit::Queue::<u64>::open_inherited("B_QUEUE").map_err(e)?;
        if case == "shmq-prod" {
            let mut tx = q.producer().map_err(e)?;
            let base = idx as u64 * per;
            let items: Vec<u64> = (base..base + per).collect();
            ctl.start(idx);
            for chunk in items.chunks(256) {
                tx.push_slice(chunk).map_err(e)?;
            }
            // The last producer done closes the queue for the consumers.
            // AcqRel: the closer's close follows every producer's pushes.
            if ctl.slot(0, 4).fetch_add(1, Ordering::AcqRel) + 1 == producers {
                tx.close();
            }
            ctl.finish(idx);
        } else {
            let rx = q.consumer().map_err(e)?;
            let (mut got, mut sum) = (0u64, 0u64);
            let mut buf = [0u64; 256];
            ctl.start(idx);
            loop {
                match rx.pop_into(&mut buf) {
                    Ok(n) => {
                        got += n as u64;
                        sum += buf[..n].iter().sum::<u64>();
                    }
                    Err(shmkit::PopError::Disconnected) => break,
                    Err(err) => return Err(e(err)),
                }
            }
            ctl.finish(idx);
            ctl.slot(idx, 2).store(got, Ordering::Release);
            ctl.slot(idx, 3).store(sum, Ordering::Release);
        }
        Ok(())
    };
    if matches!(case, "shmq-prod" | "shmq-cons") {
        return Some(queue());
    }
    matches!(case, "mpring-prod" | "mpring-cons").then(run)
}

//! Group `queue-mpmc`: several producers and several consumers on one queue,
//! the job of Python's `multiprocessing.Queue`. Each configuration runs the
//! lock-based queue in shared memory (a process-shared pthread mutex and
//! two condvars), shmkit's `Queue` (a lane per producer, processes) one
//! item a call (`shmkit-queue-1`, like for like with the others) and in
//! batches of 256 (`shmkit-queue-batch256`), crossbeam's `ArrayQueue`
//! between threads (the in-process best of class), and, with `--python`,
//! `multiprocessing.Queue` itself. The oversubscribed 4p4c also runs the
//! one-item `Queue` with `WaitStrategy::Block` (`shmkit-queue-1-block`).
//! Group `queue-throughput` sets the one-producer `Queue`
//! (`shmkit-queue-1/1p1c`, from [`shmkit_queue`]) beside the SPMC `Ring`.
//! Every run checks that the consumers together got each item once (count
//! and sum of the values), so a queue that loses or repeats items fails the
//! run instead of posting a figure.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as StdOrdering};

use super::queue::RING_CAP;
use super::{
    Options, Record, Res, alternate_all, arg, e, pinned_threads, placement, pop_one_or_batch,
    python_once, record, reps, spawn_worker, summary, wait_all,
};
use crate::Ctl;
use crate::baseline::PthreadRing;
use shmkit::{Ordering, WaitStrategy};

/// (producers, consumers) of each configuration; 4p4c oversubscribes the
/// two cores of the machines this runs on, on purpose.
const CONFIGS: [(usize, usize); 4] = [(2, 1), (1, 2), (2, 2), (4, 4)];

/// The configuration that also runs the `Queue` with every handle set to
/// `WaitStrategy::Block`: the oversubscribed one, where a spinning waiter
/// takes the core its peer needs.
const BLOCK_CONFIG: (usize, usize) = (4, 4);

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

/// Spawn `p` producers (workers `0..p`, role `{role}-prod`) and `c`
/// consumers (workers `p..p+c`, `{role}-cons`) with `args`, sharing what
/// `share` shares; release them together, wait for them, and check that the
/// consumers' counts and sums (result words 2 and 3) add up to the
/// `per * p` items pushed. Returns the control block for the wall time.
fn producers_consumers(
    case: &str,
    role: &str,
    per: u64,
    (p, c): (usize, usize),
    args: &[String],
    share: &dyn Fn(&mut Command),
) -> Res<Ctl> {
    let ctl = Ctl::create(p + c).map_err(e)?;
    let mut kids = Vec::with_capacity(p + c);
    for i in 0..p + c {
        let side = if i < p { "prod" } else { "cons" };
        kids.push(spawn_worker(&ctl, &format!("{role}-{side}"), i, args, share).map_err(e)?);
    }
    ctl.go();
    wait_all(kids)?;
    let total = |word| {
        (p..p + c)
            .map(|i| ctl.slot(i, word).load(Ordering::Acquire))
            .sum()
    };
    check(case, per * p as u64, total(2), total(3))?;
    Ok(ctl)
}

/// The pthread ring in shared memory: `p` producer processes, each pushing
/// `per` values of its own range, and `c` consumers. Returns items/s.
fn pthread_ring(per: u64, p: usize, c: usize) -> Res<f64> {
    let ring = PthreadRing::with_producers(RING_CAP, p as u64).map_err(e)?;
    let args = [per.to_string()];
    let ctl = producers_consumers("pthread-ring", "mpring", per, (p, c), &args, &|cmd| {
        ring.share_with(cmd, "B_RING")
    })?;
    Ok((per * p as u64) as f64 / ctl.wall())
}

/// Slots per producer lane: the pthread ring's capacity shared out, so the
/// queues hold the same number of items in all.
fn lane_cap(p: usize) -> usize {
    (RING_CAP / p).max(1).next_power_of_two()
}

/// How the shmkit `Queue` cases move items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::cases) enum QueueMode {
    /// `push_slice` / `pop_into` of up to 256 items, default wait strategy.
    Batch256,
    /// One item a blocking `push` / `pop`, default wait strategy (spin,
    /// then sleep): like for like with the pthread ring and `ArrayQueue`.
    One,
    /// One item a call, every handle set to `WaitStrategy::Block` (sleep
    /// at once): the mode for more processes than cores.
    OneBlock,
    /// One item a call, the one consumer a `SoleConsumer` (plain stores):
    /// many producers, one collector.
    OneSole,
}

impl QueueMode {
    /// Items a call: the batch size the workers get.
    fn batch(self) -> usize {
        match self {
            QueueMode::Batch256 => 256,
            QueueMode::One | QueueMode::OneBlock | QueueMode::OneSole => 1,
        }
    }

    /// The case's name, before `/<p>p<c>c`.
    pub(in crate::cases) fn name(self) -> &'static str {
        match self {
            QueueMode::Batch256 => "shmkit-queue-batch256",
            QueueMode::One => "shmkit-queue-1",
            QueueMode::OneBlock => "shmkit-queue-1-block",
            QueueMode::OneSole => "shmkit-queue-1-sole",
        }
    }

    /// What the note says of the calls and the waiting.
    pub(in crate::cases) fn note(self) -> &'static str {
        match self {
            QueueMode::Batch256 => "batches of 256 (push_slice / pop_into)",
            QueueMode::One => "one item a push / pop, default wait (spin 60 us, then sleep)",
            QueueMode::OneBlock => "one item a push / pop, WaitStrategy::Block on every handle",
            QueueMode::OneSole => "one item a push / pop, the consumer a SoleConsumer",
        }
    }
}

/// shmkit's `Queue` in shared memory: `p` producer processes and `c`
/// consumers, as [`pthread_ring`], moving items as `mode` says. The last
/// producer to finish closes the queue; consumers pop until it is drained.
/// Returns items/s and pushes the futex calls per item (all handles) onto
/// `futex`.
pub(in crate::cases) fn shmkit_queue(
    per: u64,
    p: usize,
    c: usize,
    mode: QueueMode,
    futex: &mut Vec<f64>,
) -> Res<f64> {
    let q = shmkit::Queue::<u64>::create_anonymous(shmkit::QueueOptions::new(lane_cap(p), p, c))
        .map_err(e)?;
    let block = u64::from(mode == QueueMode::OneBlock);
    let sole = u64::from(mode == QueueMode::OneSole);
    let args = [per, p as u64, mode.batch() as u64, block, sole].map(|a| a.to_string());
    let ctl = producers_consumers(mode.name(), "shmq", per, (p, c), &args, &|cmd| {
        q.share_with(cmd, "B_QUEUE")
    })?;
    let n = per * p as u64;
    let calls: u64 = (0..p + c)
        .map(|i| ctl.slot(i, FUTEX_WORD).load(Ordering::Acquire))
        .sum();
    futex.push(calls as f64 / n as f64);
    Ok(n as f64 / ctl.wall())
}

/// The result word where a `Queue` worker leaves its handle's futex calls
/// (word 4 of worker 0 counts the producers done).
const FUTEX_WORD: usize = 5;

/// "futex calls/item" of the median repetition, for a note.
pub(in crate::cases) fn futex_note(per_item: Vec<f64>) -> String {
    format!("futex calls/item {:.5}", summary(per_item).0)
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
        let block = (p, c) == BLOCK_CONFIG;
        let mut futex = [vec![], vec![], vec![], vec![]];
        let [fbatch, fone, fblock, fsole] = &mut futex;
        let mut batch = || shmkit_queue(per, p, c, QueueMode::Batch256, fbatch);
        let mut one = || shmkit_queue(per, p, c, QueueMode::One, fone);
        let mut blocking = || shmkit_queue(per, p, c, QueueMode::OneBlock, fblock);
        let mut sole = || shmkit_queue(per, p, c, QueueMode::OneSole, fsole);
        let mut ring = || pthread_ring(per, p, c);
        let mut aq = || arrayqueue(per, p, c);
        let mut impls: Vec<&mut dyn FnMut() -> Res<f64>> =
            vec![&mut ring, &mut aq, &mut batch, &mut one];
        // The blocking mode where it is oversubscribed; the sole consumer
        // where there is one consumer. A mode not run has no samples.
        let (mut skip_block, mut skip_sole) = (|| Ok(f64::NAN), || Ok(f64::NAN));
        impls.push(if block {
            &mut blocking
        } else {
            &mut skip_block
        });
        impls.push(if c == 1 { &mut sole } else { &mut skip_sole });
        let mut xs = alternate_all(reps(o), &mut impls)?;
        for x in &mut xs {
            x.retain(|v| !v.is_nan());
        }
        let [pr, aq, sq @ ..]: [Vec<f64>; 6] = xs.try_into().map_err(|_| "six cases")?;
        let place = placement(p + c, "producers, consumers");
        let modes = [
            QueueMode::Batch256,
            QueueMode::One,
            QueueMode::OneBlock,
            QueueMode::OneSole,
        ];
        for ((mode, xs), f) in modes.into_iter().zip(sq).zip(futex) {
            if xs.is_empty() {
                continue;
            }
            out.push(record(
                "queue-mpmc",
                format!("{}/{p}p{c}c", mode.name()),
                "throughput",
                "items/s",
                xs,
                format!(
                    "{place}; processes, a lane per producer, {}; {}",
                    mode.note(),
                    futex_note(f)
                ),
            ));
        }
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

/// A `Queue` consumer worker's loop: `pop` fills a buffer of `batch` (at
/// least 1) and says how many, until Disconnected; the count and the sum go
/// to the worker's result words 2 and 3.
fn consume_counting(
    ctl: &Ctl,
    idx: usize,
    batch: usize,
    mut pop: impl FnMut(&mut [u64]) -> Result<usize, shmkit::PopError>,
) -> Res<()> {
    let (mut got, mut sum) = (0u64, 0u64);
    let mut buf = vec![0u64; batch.max(1)];
    ctl.start(idx);
    loop {
        match pop(&mut buf) {
            Ok(n) => {
                got += n as u64;
                sum += buf[..n].iter().sum::<u64>();
            }
            Err(shmkit::PopError::Disconnected) => break,
            Err(err) => return Err(e(err)),
        }
    }
    ctl.finish(idx);
    // Release: pairs with the parent's Acquire loads of the result words,
    // made after `wait_all` (which orders them anyway).
    ctl.slot(idx, 2).store(got, Ordering::Release);
    ctl.slot(idx, 3).store(sum, Ordering::Release);
    Ok(())
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
        let batch = arg(args, 4)? as usize;
        let sole = arg(args, 6)? == 1;
        let wait = if arg(args, 5)? == 1 {
            WaitStrategy::Block
        } else {
            WaitStrategy::default()
        };
        let q = shmkit::Queue::<u64>::open_inherited("B_QUEUE").map_err(e)?;
        let futex_calls = if case == "shmq-prod" {
            let mut tx = q.producer().map_err(e)?;
            tx.set_wait(wait);
            let base = idx as u64 * per;
            let items: Vec<u64> = (base..base + per).collect();
            ctl.start(idx);
            if batch <= 1 {
                for &v in &items {
                    tx.push(v).map_err(e)?;
                }
            } else {
                for chunk in items.chunks(batch) {
                    tx.push_slice(chunk).map_err(e)?;
                }
            }
            // The last producer done closes the queue for the consumers.
            // AcqRel: the closer's close follows every producer's pushes.
            if ctl.slot(0, 4).fetch_add(1, Ordering::AcqRel) + 1 == producers {
                tx.close();
            }
            ctl.finish(idx);
            tx.futex_calls()
        } else if sole {
            let mut rx = q.sole_consumer().map_err(e)?;
            rx.set_wait(wait);
            consume_counting(ctl, idx, 1, |buf| {
                rx.pop().map(|v| {
                    buf[0] = v;
                    1
                })
            })?;
            rx.futex_calls()
        } else {
            let mut rx = q.consumer().map_err(e)?;
            rx.set_wait(wait);
            consume_counting(ctl, idx, batch, |buf| {
                pop_one_or_batch(buf, || rx.pop(), |b| rx.pop_into(b))
            })?;
            rx.futex_calls()
        };
        // Release: pairs with the parent's Acquire load in `shmkit_queue`
        // (after `wait_all`, which orders it anyway).
        ctl.slot(idx, FUTEX_WORD)
            .store(futex_calls, Ordering::Release);
        Ok(())
    };
    if matches!(case, "shmq-prod" | "shmq-cons") {
        return Some(queue());
    }
    matches!(case, "mpring-prod" | "mpring-cons").then(run)
}

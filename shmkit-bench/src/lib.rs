//! `shmkit bench`: shmkit's lock-free ways against the lock-based ways of
//! doing the same job, side by side in one run, in real processes.
//!
//! Every case runs in worker processes pinned to cores, or in pinned threads
//! where the comparison is an in-process one (`std::sync::Mutex`,
//! `crossbeam_queue::ArrayQueue`). Implementations alternate within each
//! repetition; figures are the median of the repetitions with min–max.
//! Workers stamp their own start and end with `CLOCK_MONOTONIC` (shared by
//! all processes), so process start-up is not timed.
//!
//! A worker is the running program re-run with the hidden subcommand
//! [`WORKER_COMMAND`]: a program that calls [`run`] must hand that
//! subcommand's arguments to [`worker`] (the `shmkit` binary of `shmkit-cli`
//! does). Argument parsing and the rest of the tool live in `shmkit-cli`.
#![allow(clippy::disallowed_types)] // std atomics in thread-only baselines

pub mod baseline;
mod cases;

use std::fmt::Write as _;
use std::process::{Command, ExitCode};
use std::time::Duration;

use serde::Serialize;

use shmkit::Ordering;
use shmkit::SharedArray;

pub use cases::worker;

/// The hidden subcommand that makes the running program a bench worker:
/// `PROGRAM __bench-worker CASE INDEX ARGS...`.
pub const WORKER_COMMAND: &str = "__bench-worker";

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub full: bool,
    pub only: Option<String>,
    pub json: bool,
    pub python: bool,
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Record {
    pub group: &'static str,
    pub name: String,
    pub metric: &'static str,
    pub unit: &'static str,
    /// Median over repetitions.
    pub value: f64,
    pub min: f64,
    pub max: f64,
    /// Latency percentiles (of the median repetition).
    pub pct: Option<[f64; 3]>,
    /// Free-form notes: placement, hand-offs, syscalls.
    pub note: String,
}

/// Groups in run order.
pub const GROUPS: [&str; 10] = [
    "counter",
    "float-add",
    "queue-throughput",
    "queue-mpmc",
    "latency",
    "pipe",
    "manager",
    "snapshot",
    "bridge",
    "python",
];

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Online CPUs. Not `available_parallelism`, which shrinks to the calling
/// thread's affinity mask once it is pinned.
pub fn cores() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Pin the calling thread to `core % cores()`. Returns the core used.
pub fn pin(core: usize) -> usize {
    let c = core % cores();
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; the call
    // affects only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(c, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
    c
}

/// The control block every case shares with its workers: a start barrier
/// and per-worker result words.
pub(crate) struct Ctl {
    pub arr: SharedArray<u64>,
    pub workers: usize,
}

pub(crate) const CTL_READY: usize = 0;
pub(crate) const CTL_GO: usize = 1;
/// Per worker: start ns, end ns, then 6 result words.
pub(crate) const PER_WORKER: usize = 8;
const CTL_BASE: usize = 2;

impl Ctl {
    pub fn create(workers: usize) -> shmkit::Result<Self> {
        Ok(Ctl {
            arr: SharedArray::create_anonymous(CTL_BASE + workers * PER_WORKER)?,
            workers,
        })
    }
    pub fn open() -> shmkit::Result<Self> {
        let arr = SharedArray::open_inherited("SHMKIT_BENCH_CTL")?;
        let workers = (arr.len() - CTL_BASE) / PER_WORKER;
        Ok(Ctl { arr, workers })
    }
    pub fn slot(&self, worker: usize, i: usize) -> &shmkit::Atomic<u64> {
        &self.arr[CTL_BASE + worker * PER_WORKER + i]
    }
    /// Worker side: say ready, wait for go, stamp the start.
    pub fn start(&self, worker: usize) {
        self.arr[CTL_READY].fetch_add(1, Ordering::AcqRel);
        while self.arr[CTL_GO].load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        self.slot(worker, 0).store(now_ns(), Ordering::Relaxed);
    }
    pub fn finish(&self, worker: usize) {
        self.slot(worker, 1).store(now_ns(), Ordering::Release);
    }
    /// Parent side: release the workers once all are ready.
    pub fn go(&self) {
        while self.arr[CTL_READY].load(Ordering::Acquire) < self.workers as u64 {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.arr[CTL_GO].store(1, Ordering::Release);
    }
    /// Wall time from the first start to the last end, in seconds.
    pub fn wall(&self) -> f64 {
        let start = (0..self.workers)
            .map(|w| self.slot(w, 0).load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        let end = (0..self.workers)
            .map(|w| self.slot(w, 1).load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        end.saturating_sub(start) as f64 / 1e9
    }
}

/// Spawn worker `idx` of `case`, sharing the control block; `extra` shares
/// more and adds arguments.
pub(crate) fn spawn_worker(
    ctl: &Ctl,
    case: &str,
    idx: usize,
    args: &[String],
    extra: impl FnOnce(&mut Command),
) -> std::io::Result<std::process::Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(WORKER_COMMAND)
        .arg(case)
        .arg(idx.to_string())
        .args(args);
    ctl.arr.share_with(&mut cmd, "SHMKIT_BENCH_CTL");
    extra(&mut cmd);
    cmd.spawn()
}

pub(crate) fn wait_all(kids: Vec<std::process::Child>) -> Result<(), String> {
    let mut failed = 0;
    for mut k in kids {
        if !k.wait().map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    if failed > 0 {
        Err(format!("{failed} worker(s) failed"))
    } else {
        Ok(())
    }
}

/// Median, min, max of samples.
pub(crate) fn summary(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

/// p50, p99, p99.9 of latency samples (ns), sorting them.
pub(crate) fn percentiles(xs: &mut [f64]) -> [f64; 3] {
    xs.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if xs.is_empty() {
            f64::NAN
        } else {
            xs[((xs.len() - 1) as f64 * q).round() as usize]
        }
    };
    [at(0.5), at(0.99), at(0.999)]
}

/// A record as `--json` prints it: README.md describes these keys, in this
/// order. serde_json writes a non-finite figure (a case that measured
/// nothing) as `null`.
#[derive(Serialize)]
struct JsonRecord<'a> {
    group: &'a str,
    name: &'a str,
    metric: &'a str,
    value: f64,
    unit: &'a str,
    min: f64,
    max: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p999: Option<f64>,
    note: &'a str,
}

impl Record {
    /// One line of `shmkit bench --json`: a JSON object.
    pub fn to_json(&self) -> String {
        let [p50, p99, p999] = self.pct.map_or([None; 3], |p| p.map(Some));
        let r = JsonRecord {
            group: self.group,
            name: &self.name,
            metric: self.metric,
            value: self.value,
            unit: self.unit,
            min: self.min,
            max: self.max,
            p50,
            p99,
            p999,
            note: &self.note,
        };
        serde_json::to_string(&r).expect("a record of strings and numbers always serializes")
    }

    fn to_line(&self) -> String {
        let v = |x: f64| fmt_si(x);
        let mut s = format!(
            "{:<16} {:<34} {:>10} {:<8} [{} – {}]",
            self.group,
            self.name,
            v(self.value),
            self.unit,
            v(self.min),
            v(self.max)
        );
        if let Some([p50, p99, p999]) = self.pct {
            let _ = write!(s, "  p50 {p50:.0} p99 {p99:.0} p99.9 {p999:.0} ns");
        }
        if !self.note.is_empty() {
            let _ = write!(s, "  ({})", self.note);
        }
        s
    }
}

fn fmt_si(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// A ratio "shmkit vs other": value > 1 means shmkit is faster.
fn ratio(records: &[Record], group: &str, ours: &str, theirs: &str) -> Option<Record> {
    let find = |n: &str| records.iter().find(|r| r.group == group && r.name == n);
    let (a, b) = (find(ours)?, find(theirs)?);
    let value = if a.unit.ends_with("/s") {
        a.value / b.value
    } else {
        b.value / a.value // times and latencies: smaller is better
    };
    Some(Record {
        group: a.group,
        name: format!("{ours}/{theirs}"),
        metric: "ratio",
        unit: "x",
        value,
        min: value,
        max: value,
        pct: None,
        note: String::new(),
    })
}

/// The pairs the final table compares.
const RATIOS: &[(&str, &str, &str)] = &[
    ("counter", "shmkit-fetch_add/1p", "pthread-mutex/1p"),
    ("counter", "shmkit-fetch_add/2p", "pthread-mutex/2p"),
    ("counter", "shmkit-fetch_add/4p", "pthread-mutex/4p"),
    ("counter", "shmkit-fetch_add/2p", "std-mutex/2t"),
    ("counter", "shmkit-fetch_add/2p", "shmkit-lock/2p"),
    ("counter", "shmkit-lock/2p", "pthread-mutex/2p"),
    (
        "counter",
        "lock-uncontended/shmkit",
        "lock-uncontended/pthread-robust",
    ),
    (
        "counter",
        "lock-uncontended/shmkit",
        "lock-uncontended/pthread",
    ),
    ("counter", "lock-2p/shmkit", "lock-2p/pthread-robust"),
    ("counter", "lock-2p/shmkit", "lock-2p/pthread"),
    ("float-add", "shmkit-cas-f64/2p", "pthread-mutex-f64/2p"),
    ("float-add", "shmkit-striped/2p", "pthread-mutex-f64/2p"),
    ("float-add", "shmkit-striped/2p", "shmkit-cas-f64/2p"),
    ("queue-throughput", "shmkit-ring/1p1c", "arrayqueue/1t1t"),
    ("queue-throughput", "shmkit-ring/1p1c", "rtrb/1t1t"),
    (
        "queue-throughput",
        "shmkit-ring-sole/1p1c",
        "arrayqueue/1t1t",
    ),
    ("queue-throughput", "shmkit-ring-sole/1p1c", "rtrb/1t1t"),
    (
        "queue-throughput",
        "shmkit-ring-sole/1p1c",
        "shmkit-ring/1p1c",
    ),
    ("queue-throughput", "shmkit-ring-batch64/1p1c", "rtrb/1t1t"),
    (
        "queue-throughput",
        "shmkit-ring-batch64/1p1c",
        "arrayqueue/1t1t",
    ),
    (
        "queue-throughput",
        "shmkit-ring/1p1c",
        "mutex-vecdeque/1t1t",
    ),
    ("queue-throughput", "shmkit-ring/1p1c", "pthread-ring/1p1c"),
    ("queue-throughput", "shmkit-ring/1p2c", "pthread-ring/1p2c"),
    ("queue-throughput", "shmkit-ring/1p1c", "pipe/1p1c"),
    ("queue-throughput", "shmkit-ring-batch64/1p1c", "pipe/1p1c"),
    // Issue 14's goals: the one-producer Queue within 20% of the ring
    // (>= 0.8), 2P2C one item a call >= 5x the pthread ring and >= 1x
    // ArrayQueue, blocking 4P4C >= 1x the pthread ring.
    (
        "queue-throughput",
        "shmkit-queue-1/1p1c",
        "shmkit-ring/1p1c",
    ),
    ("queue-mpmc", "shmkit-queue-1/2p2c", "pthread-ring/2p2c"),
    (
        "queue-mpmc",
        "shmkit-queue-1-sole/2p1c",
        "pthread-ring/2p1c",
    ),
    (
        "queue-mpmc",
        "shmkit-queue-1-sole/2p1c",
        "shmkit-queue-1/2p1c",
    ),
    ("queue-mpmc", "shmkit-queue-1/2p2c", "arrayqueue/2t2t"),
    (
        "queue-mpmc",
        "shmkit-queue-1-block/4p4c",
        "pthread-ring/4p4c",
    ),
    ("latency", "shmkit-ring-spin", "cacheline-pingpong"),
    ("latency", "shmkit-ring-sole-spin", "cacheline-pingpong"),
    ("latency", "shmkit-ring-spin", "pipe"),
    ("latency", "shmkit-ring-blocking", "pipe"),
    ("latency", "shmkit-ring-async", "pipe"),
    ("latency", "shmkit-ring-async", "shmkit-ring-blocking"),
    ("latency", "shmkit-ring-spinyield", "pipe"),
    ("latency", "shmkit-ring-block", "pipe"),
    ("pipe", "shmkit-pipe-roundtrip", "kernel-pipe-roundtrip"),
    ("pipe", "shmkit-pipe-roundtrip", "socketpair-roundtrip"),
    ("pipe", "shmkit-pipe-64B", "kernel-pipe-64B"),
    ("pipe", "shmkit-pipe-64B", "socketpair-64B"),
    ("pipe", "shmkit-pipe-4KiB", "kernel-pipe-4KiB"),
    ("pipe", "shmkit-pipe-4KiB", "socketpair-4KiB"),
    ("pipe", "shmkit-pipe-1MiB", "kernel-pipe-1MiB"),
    ("pipe", "shmkit-pipe-1MiB", "socketpair-1MiB"),
    ("manager", "shmkit-map-insert/2p", "pthread-table-insert/2p"),
    ("manager", "shmkit-map-insert/2p", "mutex-hashmap-insert/2t"),
    ("manager", "shmkit-map-get/2p", "pthread-table-get/2p"),
    ("manager", "shmkit-map-get/2p", "mutex-hashmap-get/2t"),
    ("manager", "shmkit-list-push/2p", "pthread-vec-push/2p"),
    ("manager", "shmkit-list-push/2p", "mutex-vec-push/2t"),
    (
        "manager",
        "shmkit-map-insert/2p",
        "python-manager-dict-set/2p",
    ),
    ("manager", "shmkit-map-get/2p", "python-manager-dict-get/2p"),
    (
        "manager",
        "shmkit-list-push/2p",
        "python-manager-list-append/2p",
    ),
    (
        "snapshot",
        "shmkit-cell-load/1w1r",
        "pthread-mutex-copy/1w1r",
    ),
    (
        "snapshot",
        "shmkit-cell-load/1w1r-paced1us",
        "pthread-mutex-copy/1w1r-paced1us",
    ),
    (
        "bridge",
        "shmkit-bridge/out+in",
        "redis-raw/xadd+xreadgroup",
    ),
    ("python", "shmkit-fetch_add/2p", "python-value-get_lock/2p"),
    ("python", "shmkit-ring/1p1c", "python-queue/1p1c"),
    ("python", "shmkit-ring-batch64/1p1c", "python-queue/1p1c"),
    ("python", "shmkit-ring/1p1c", "python-pipe/1p1c"),
];

/// `shmkit bench [--full] [--only GROUP] [--json] [--python]`.
pub fn run(opts: &Options) -> ExitCode {
    if let Some(g) = &opts.only
        && !GROUPS.contains(&g.as_str())
    {
        eprintln!(
            "shmkit bench: unknown group {g:?}; groups are {}",
            GROUPS.join(", ")
        );
        return ExitCode::from(2);
    }
    let wanted =
        |g: &str| opts.only.as_deref().is_none_or(|o| o == g) && (g != "python" || opts.python);
    eprintln!(
        "shmkit bench: {} run on {} cores ({}); progress below, results last",
        if opts.full { "full" } else { "quick" },
        cores(),
        cpu_model()
    );
    let mut records = Vec::new();
    for g in GROUPS {
        if !wanted(g) {
            continue;
        }
        let got = match g {
            "counter" => cases::counter(opts),
            "float-add" => cases::float_add(opts),
            "queue-throughput" => cases::queue(opts),
            "queue-mpmc" => cases::mpmc(opts),
            "latency" => cases::latency(opts),
            "pipe" => cases::pipe(opts),
            "manager" => cases::manager(opts),
            "snapshot" => cases::snapshot(opts),
            "bridge" => cases::bridge(opts),
            "python" => cases::python(opts),
            _ => unreachable!(),
        };
        match got {
            Ok(rs) => records.extend(rs),
            Err(e) => {
                eprintln!("shmkit bench: group {g} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ratios: Vec<Record> = RATIOS
        .iter()
        .filter_map(|(g, a, b)| ratio(&records, g, a, b))
        .collect();
    if opts.json {
        for r in records.iter().chain(&ratios) {
            println!("{}", r.to_json());
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<16} {:<34} {:>10} {:<8} [min – max over repetitions]",
        "group", "case", "median", "unit"
    );
    for r in &records {
        println!("{}", r.to_line());
    }
    println!();
    println!("shmkit vs the alternative (median against median; > 1 = shmkit faster):");
    for r in &ratios {
        let verdict = if r.value >= 1.0 {
            format!("{:.1}x faster", r.value)
        } else {
            format!("{:.1}x SLOWER: the alternative wins here", 1.0 / r.value)
        };
        println!("  {:<16} {:<55} {}", r.group, r.name, verdict);
    }
    ExitCode::SUCCESS
}

/// Progress line on stderr.
pub(crate) fn progress(r: &Record) {
    eprintln!("  .. {}", r.to_line());
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

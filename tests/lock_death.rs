//! The lock under kill -9 and under scribbling, across real processes.
//!
//! - `killed_holders_are_noticed_within_a_second`: two worker processes take
//!   the lock over and over while, round after round, a third takes it,
//!   half-updates the data, says so through shared memory, and is killed
//!   with SIGKILL. The next acquirer must get `OwnerDied` within 1 s of the
//!   kill and repair. `SHMKIT_LOCK_DEATH_ROUNDS` sets the rounds (default
//!   100, capped at about 20 s unless set).
//! - `garbage_in_the_lock_never_crashes_or_hangs`: while two worker
//!   processes call `lock_timeout`/`try_lock`, this process writes bit
//!   patterns into the lock's 128 bytes (all-ones, random words, a dead or
//!   impossible pid, init as the owner, huge counters). Every call returns
//!   within its timeout with a guard, `OwnerDied`, `Timeout` or
//!   `WouldBlock`; no worker panics or gets a signal.
//!   `SHMKIT_LOCK_FUZZ_MS` sets how long (default 3000).
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, Reaper, child_command, child_role, wait_until};
use shmkit::lock::LockError;
use shmkit::sync::AtomicU64;
use shmkit::{Ordering, SharedArray};

const ENTRY: &str = "child_entry";

// Cells of the kill test's array.
const A: usize = 0; // A and B are equal whenever the data is consistent;
const B: usize = 1; // a victim bumps A, then dies before B.
const READY: usize = 2; // victim: "I hold it, half-updated"
const STOP: usize = 3; // parent: "workers, finish"
const KILL_NS: usize = 4; // CLOCK_MONOTONIC just before the kill
const REPAIRED: usize = 5; // repairs done (one per round)
const MAX_LAT: usize = 6; // slowest kill-to-OwnerDied, ns
const SUM_LAT: usize = 7; // sum of them, ns
const TIMEOUTS: usize = 8; // workers' lock_timeout(2 s) that expired
const BAD: usize = 9; // plain guards that found A != B
const KILL_CELLS: usize = 10;

// Cells of the fuzz test's array (its lock is the one scribbled on).
const F_STOP: usize = 0;
const F_CALLS: usize = 1;
const F_OK: usize = 2;
const F_DIED: usize = 3;
const F_TIMEOUT: usize = 4;
const F_BUSY: usize = 5;
const F_LATE: usize = 6; // calls that returned later than their limit
const F_MAX_OVER: usize = 7; // worst overshoot past the timeout, ns
const FUZZ_CELLS: usize = 8;

/// How long a fuzz worker's `lock_timeout` may wait.
const FUZZ_TIMEOUT: Duration = Duration::from_millis(100);
/// What a call may take beyond its timeout before it counts as late: a
/// scheduler delay on a loaded 2-core machine and one /proc read.
const FUZZ_SLACK: Duration = Duration::from_millis(400);

/// CLOCK_MONOTONIC in ns: one clock for every process on the machine.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let arr = SharedArray::<u64>::open(&name).unwrap();
    match role.as_str() {
        "worker" => kill_worker(&arr),
        "victim" => {
            let g = match arr.lock() {
                Ok(g) => g,
                Err(e) => panic!("victim: {e}"),
            };
            g[A].fetch_add(1, Ordering::Relaxed);
            g[READY].store(1, Ordering::Release);
            loop {
                std::thread::park();
            }
        }
        "fuzz_worker" => fuzz_worker(&arr),
        other => panic!("unknown role {other}"),
    }
}

/// Take the lock until told to stop; repair after a death and report how
/// long after the kill it was noticed.
fn kill_worker(arr: &SharedArray<u64>) {
    while arr[STOP].load(Ordering::Acquire) == 0 {
        match arr.lock_timeout(Duration::from_secs(2)) {
            Ok(g) => {
                if g[A].load(Ordering::Relaxed) != g[B].load(Ordering::Relaxed) {
                    arr[BAD].fetch_add(1, Ordering::Relaxed);
                }
                g.update(|v| {
                    v[A] += 1;
                    v[B] += 1;
                });
            }
            Err(LockError::OwnerDied(mut g)) => {
                let lat = mono_ns().saturating_sub(arr[KILL_NS].load(Ordering::Relaxed));
                arr[MAX_LAT].fetch_max(lat, Ordering::Relaxed);
                arr[SUM_LAT].fetch_add(lat, Ordering::Relaxed);
                // Repair: the victim bumped A but died before B.
                g[B].store(g[A].load(Ordering::Relaxed), Ordering::Relaxed);
                g.mark_consistent();
                arr[REPAIRED].fetch_add(1, Ordering::Release);
            }
            Err(LockError::Timeout) => {
                arr[TIMEOUTS].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("worker: {e}"),
        }
        // Outside the lock for a moment, so the victim gets its turn.
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn spawn(role: &str, name: &str) -> Reaper {
    let c = child_command(ENTRY, role)
        .env("SHMKIT_NAME", name)
        .spawn()
        .unwrap();
    Reaper(Some(c))
}

#[test]
fn killed_holders_are_noticed_within_a_second() {
    let set: Option<u64> = std::env::var("SHMKIT_LOCK_DEATH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("SHMKIT_LOCK_DEATH_ROUNDS: a number"));
    let rounds = set.unwrap_or(100);
    // The suite's run stops early on a slow machine; a run by hand does not.
    let cap = set.map_or(Duration::from_secs(20), |_| Duration::MAX);
    let c = Cleanup::new("lockdeath");
    let arr = SharedArray::<u64>::create(c.name(), KILL_CELLS).unwrap();
    let workers: Vec<Reaper> = (0..2).map(|_| spawn("worker", c.name())).collect();
    let start = Instant::now();
    let mut done = 0;
    for round in 1..=rounds {
        let mut victim = spawn("victim", c.name());
        wait_until("the victim holds the lock", Duration::from_secs(10), || {
            arr[READY].load(Ordering::Acquire) == 1
        });
        arr[READY].store(0, Ordering::Relaxed);
        arr[KILL_NS].store(mono_ns(), Ordering::Relaxed);
        victim.0.as_mut().unwrap().kill().unwrap();
        wait_until("a worker repaired", Duration::from_secs(5), || {
            arr[REPAIRED].load(Ordering::Acquire) == round
        });
        drop(victim); // reap
        done = round;
        if start.elapsed() > cap {
            break;
        }
    }
    arr[STOP].store(1, Ordering::Release);
    for w in workers {
        w.wait_ok();
    }
    let max = Duration::from_nanos(arr[MAX_LAT].load(Ordering::Relaxed));
    let mean = Duration::from_nanos(arr[SUM_LAT].load(Ordering::Relaxed) / done.max(1));
    eprintln!(
        "lock_death: {done} rounds in {:?}; kill -> OwnerDied max {max:?}, mean {mean:?}; \
         {} acquisitions, {} hand-offs",
        start.elapsed(),
        arr.lock_state().acquisitions,
        arr.lock_state().handoffs,
    );
    assert!(done >= 10 || set.is_some(), "only {done} rounds in time");
    assert_eq!(
        arr[BAD].load(Ordering::Relaxed),
        0,
        "a plain guard saw A != B"
    );
    assert_eq!(
        arr[TIMEOUTS].load(Ordering::Relaxed),
        0,
        "a worker timed out"
    );
    assert!(
        max < Duration::from_secs(1),
        "a death noticed after {max:?}"
    );
    assert_eq!(
        arr[A].load(Ordering::Relaxed),
        arr[B].load(Ordering::Relaxed)
    );
    let g = arr.try_lock().expect("consistent and free at the end");
    drop(g);
}

/// Call the lock in every way until told to stop; count the outcomes and
/// any call that overran its limit.
fn fuzz_worker(arr: &SharedArray<u64>) {
    let mut n = 0u64;
    while arr[F_STOP].load(Ordering::Acquire) == 0 {
        n += 1;
        let t = Instant::now();
        let (r, limit) = if n.is_multiple_of(4) {
            (arr.try_lock(), Duration::ZERO)
        } else {
            (arr.lock_timeout(FUZZ_TIMEOUT), FUZZ_TIMEOUT)
        };
        let took = t.elapsed();
        let over = took.saturating_sub(limit);
        arr[F_MAX_OVER].fetch_max(over.as_nanos() as u64, Ordering::Relaxed);
        if over > FUZZ_SLACK {
            arr[F_LATE].fetch_add(1, Ordering::Relaxed);
        }
        arr[F_CALLS].fetch_add(1, Ordering::Relaxed);
        let _ = arr.lock_state(); // tools read it too
        match r {
            Ok(g) => {
                arr[F_OK].fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(50));
                drop(g);
            }
            Err(LockError::OwnerDied(mut g)) => {
                arr[F_DIED].fetch_add(1, Ordering::Relaxed);
                g.mark_consistent();
            }
            Err(LockError::Timeout) => {
                arr[F_TIMEOUT].fetch_add(1, Ordering::Relaxed);
            }
            Err(LockError::WouldBlock) => {
                arr[F_BUSY].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// xorshift64*: enough for bit patterns (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A raw owner word naming `pid` started at `start` ticks (the layout of
/// `shmkit::process::ProcToken`: pid in the low 22 bits).
fn token(pid: u32, start: u64) -> u64 {
    u64::from(pid) | start << 22
}

#[test]
fn garbage_in_the_lock_never_crashes_or_hangs() {
    let ms: u64 = std::env::var("SHMKIT_LOCK_FUZZ_MS")
        .map(|v| v.parse().expect("SHMKIT_LOCK_FUZZ_MS: a number"))
        .unwrap_or(3000);
    let c = Cleanup::new("lockfuzz");
    let arr = SharedArray::<u64>::create(c.name(), FUZZ_CELLS).unwrap();
    // A second mapping of the same file, as a scribbling process has.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.path())
        .unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    let off = arr.segment().info().data_offset as usize;
    assert!(off + 128 <= map.len());
    // SAFETY: the 128 lock bytes start 128-aligned at `off` inside the
    // mapping, which outlives `words`; other processes access them only
    // atomically too.
    let words: &[AtomicU64] =
        unsafe { std::slice::from_raw_parts(map.as_mut_ptr().add(off) as *const AtomicU64, 16) };
    let workers: Vec<Reaper> = (0..2).map(|_| spawn("fuzz_worker", c.name())).collect();
    let worker_pids: Vec<u32> = workers.iter().map(|w| w.0.as_ref().unwrap().id()).collect();
    let init_start = shmkit::sync::liveness::start_ticks(1).unwrap_or(0);
    let seed = mono_ns() | 1;
    let mut rng = Rng(seed);
    let mut patterns = 0u64;
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        patterns += 1;
        let kind = rng.next() % 9;
        let owner = match kind {
            0 => 0,
            1 => u64::MAX,
            // Init (or the container's first process) as the holder: it
            // runs, so the lock looks held until the next pattern.
            2 => token(1, init_start),
            // A pid beyond pid_max, and pid 0 with a start time.
            3 => token((1 << 22) - 1, rng.next() >> 22),
            4 => rng.next() << 22,
            // A worker's pid with a wrong start time (a reused pid).
            5 => token(worker_pids[0], rng.next() >> 22),
            _ => rng.next(),
        };
        match kind {
            0 => words.iter().for_each(|w| w.store(0, Ordering::Relaxed)),
            1 => words
                .iter()
                .for_each(|w| w.store(u64::MAX, Ordering::Relaxed)),
            // Counters about to wrap, a foreign futex word, dirty garbage.
            6 => {
                for w in &words[1..5] {
                    w.store(u64::MAX - (rng.next() % 3), Ordering::Relaxed);
                }
            }
            // One random word anywhere in the 128 bytes.
            7 => words[(rng.next() % 16) as usize].store(rng.next(), Ordering::Relaxed),
            _ => words
                .iter()
                .for_each(|w| w.store(rng.next(), Ordering::Relaxed)),
        }
        if kind != 6 && kind != 7 {
            words[0].store(owner, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 20));
    }
    // Leave a dead owner behind: the lock must come back by itself.
    words[0].store(u64::MAX, Ordering::Relaxed);
    arr[F_STOP].store(1, Ordering::Release);
    for w in workers {
        w.wait_ok(); // no panic, no signal, no hang
    }
    let get = |i: usize| arr[i].load(Ordering::Relaxed);
    eprintln!(
        "lock fuzz: seed {seed:#x}, {patterns} patterns, {} calls: {} ok, {} owner-died, \
         {} timeout, {} busy; {} late, worst overshoot {:?}",
        get(F_CALLS),
        get(F_OK),
        get(F_DIED),
        get(F_TIMEOUT),
        get(F_BUSY),
        get(F_LATE),
        Duration::from_nanos(get(F_MAX_OVER)),
    );
    assert_eq!(get(F_LATE), 0, "calls overran their timeout");
    assert!(get(F_CALLS) > 0);
    // The dead owner left behind is taken over, then the lock is plain.
    match arr.lock_timeout(Duration::from_secs(1)) {
        Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
        Ok(_) => {} // a worker took it over and repaired before stopping
        Err(e) => panic!("after the fuzz: {e}"),
    }
    assert!(arr.lock_timeout(Duration::from_secs(1)).is_ok());
}

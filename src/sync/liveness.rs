//! Process identity and liveness, the OS side of [`crate::process`].
//!
//! A process is named by its pid and its start time (clock ticks since boot,
//! field 22 of `/proc/PID/stat`), so a pid that the kernel reused for a newer
//! process does not count as the old one.
//!
//! Under loom every model thread is a process (pid 1 unless it says
//! otherwise), all with start time 1, and a process is dead once the model
//! says so (`model::die`, or killed at a chosen step by
//! `model::run_killed_after`): the recovery paths then run under the model
//! checker like everything else.

/// The calling process: `(pid, start ticks)`.
pub fn current() -> (u32, u64) {
    imp::current()
}

/// The start time of process `pid` if it is running (not exited, not a
/// zombie); `None` otherwise.
pub fn start_ticks(pid: u32) -> Option<u64> {
    imp::start_ticks(pid)
}

/// Whether the calling process has died. Never in a real process (one
/// that runs is alive); in a model, once the model killed the calling
/// thread's process. A killed process runs no destructors, but a model
/// thread that dies unwinds: every `Drop` that writes shared memory asks
/// this first and does nothing for a dead process.
#[inline(always)]
pub fn current_is_dead() -> bool {
    #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
    return false;
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    return model::is_dead(model::current_pid());
}

/// Clock ticks per second (`_SC_CLK_TCK`), to turn a start time into
/// seconds since boot.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
mod imp {
    #![allow(clippy::disallowed_types)] // process identity, not algorithm state
    use std::sync::atomic::{AtomicU64, Ordering};

    /// `pid << 32 | 1` once known; 0 before. The start time is cached
    /// beside it. Hot paths (every lock acquisition) ask, and a getpid()
    /// plus a /proc read each time cost more than the lock itself.
    static PID: AtomicU64 = AtomicU64::new(0);
    static START: AtomicU64 = AtomicU64::new(0);

    pub(super) fn current() -> (u32, u64) {
        static HOOK: std::sync::Once = std::sync::Once::new();
        // A fork's child must not keep its parent's identity.
        extern "C" fn forget_in_child() {
            // Async-signal-safe: one atomic store.
            PID.store(0, Ordering::Relaxed);
        }
        HOOK.call_once(|| {
            // SAFETY: registers a handler that only does an atomic store.
            unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
        });
        // Acquire: pairs with the Release store below, so START is the
        // start time of the pid we read. mutate: skip (std side only).
        let cached = PID.load(Ordering::Acquire);
        if cached != 0 {
            return ((cached >> 32) as u32, START.load(Ordering::Relaxed));
        }
        let pid = std::process::id();
        let start = start_ticks(pid).unwrap_or(0);
        START.store(start, Ordering::Relaxed);
        // mutate: skip (std side only; pairs with the Acquire above).
        PID.store(u64::from(pid) << 32 | 1, Ordering::Release);
        (pid, start)
    }

    /// Parse `/proc/PID/stat`. The command name (field 2) may hold spaces
    /// and parentheses, so fields are counted from the *last* `)`.
    pub(super) fn start_ticks(pid: u32) -> Option<u64> {
        if pid == 0 {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        // After ")": field 3 is the state, field 22 the start time.
        let state = fields.next()?;
        let start = fields.nth(18)?.parse().ok()?;
        (!matches!(state, "Z" | "X" | "x")).then_some(start)
    }
}

#[cfg(any(shmkit_loom, shmkit_shuttle))]
mod imp {
    pub(super) fn current() -> (u32, u64) {
        (super::model::current_pid(), 1)
    }

    pub(super) fn start_ticks(pid: u32) -> Option<u64> {
        (pid != 0 && !super::model::is_dead(pid)).then_some(1)
    }
}

/// The liveness oracle of a model (only in `shmkit_loom` and
/// `shmkit_shuttle` builds).
///
/// The idiom for a death path: run the model once for each step `k` at
/// which the victim stops ([`run_killed_after`] kills it before its
/// k-th shared-memory operation, wherever in the production code that
/// is); from then on every liveness check reports it dead, exactly as a
/// killed process whose memory effects stay behind.
#[cfg(any(shmkit_loom, shmkit_shuttle))]
pub mod model {
    use crate::sync::rt;
    use rt::sync::atomic::{AtomicU64, Ordering};
    use std::cell::Cell;

    rt::thread_local! {
        static PID: Cell<u32> = Cell::new(1);
        /// Shared-memory operations the calling thread may still make
        /// before its process dies; `None`: no limit.
        static BUDGET: Cell<Option<usize>> = Cell::new(None);
    }

    /// What a model thread unwinds with when its process is killed.
    struct Killed;

    /// Count one shared-memory operation of the calling thread (every
    /// facade atomic operation, fence and futex call is one); when the
    /// budget set by [`run_killed_after`] is spent, the process dies
    /// *before* the operation and the thread unwinds.
    pub(crate) fn step() {
        let spent = BUDGET.with(|b| match b.get() {
            Some(0) => {
                b.set(None);
                true
            }
            Some(n) => {
                b.set(Some(n - 1));
                false
            }
            None => false,
        });
        if spent {
            die();
            // resume_unwind: no panic hook, so no noise in the output.
            std::panic::resume_unwind(Box::new(Killed));
        }
    }

    /// Run `f` as process `pid`, killed just before its `steps`-th
    /// shared-memory operation (counting from 0), or never if `steps` is
    /// `None`. Returns `f`'s result if it finished, `None` if the
    /// process was killed. A killed process leaves every shared write it
    /// made behind, runs no destructor that writes shared memory (see
    /// [`current_is_dead`](super::current_is_dead)), and is reported
    /// dead to every liveness check from then on.
    ///
    /// The idiom: for k in 0.. { loom::model(|| ... a thread runs
    /// `run_killed_after(2, Some(k), victim)` ...) } until a k at which
    /// the victim finished in every execution, so that the victim dies
    /// at each of its steps in turn.
    pub fn run_killed_after<R>(pid: u32, steps: Option<usize>, f: impl FnOnce() -> R) -> Option<R> {
        become_process(pid);
        BUDGET.with(|b| b.set(steps));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        BUDGET.with(|b| b.set(None));
        match out {
            Ok(v) => Some(v),
            Err(p) if p.is::<Killed>() => None,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    rt::lazy_static! {
        /// Bit `p` set: process `p` is dead. Reset for each execution.
        static ref DEAD: AtomicU64 = AtomicU64::new(0);
        /// Whether timed futex waits expire (see [`timeouts_expire`]).
        /// Reset (off) for each execution. A std atomic, not loom's: a
        /// model switch is not state to explore, and a loom load in
        /// every timed wait would enlarge every existing model.
        static ref TIMEOUTS_EXPIRE: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
    }

    /// From now on (in this execution), a timed [`Futex::wait`](crate::sync::Futex::wait)
    /// returns after a yield instead of blocking, as an expiring timeout
    /// would; untimed waits still block. Off by default, so that a
    /// timeout cannot hide a lost wakeup; turn it on in models of a death
    /// path, where a timeout is how a sleeper notices that a process died.
    pub fn timeouts_expire(on: bool) {
        // mutate: skip (a switch of the model, not our code).
        TIMEOUTS_EXPIRE.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether timed waits expire now (see [`timeouts_expire`]).
    pub fn timeouts_expire_now() -> bool {
        // SeqCst, and outside the model: loom runs one thread at a
        // time, so a switch set by the model is seen by every thread.
        // mutate: skip (a switch of the model, not our code).
        TIMEOUTS_EXPIRE.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Make the calling model thread the process `pid` (1..=63; every
    /// thread is process 1 until it calls this).
    pub fn become_process(pid: u32) {
        assert!((1..64).contains(&pid), "model pids are 1..=63");
        PID.with(|p| p.set(pid));
    }

    /// The calling thread's model pid.
    pub fn current_pid() -> u32 {
        PID.with(|p| p.get())
    }

    /// The calling thread's process dies here: from now on it is
    /// reported dead. The thread must touch no shared state after this.
    pub fn die() {
        kill(current_pid());
    }

    /// Process `pid` is dead from now on.
    pub fn kill(pid: u32) {
        // SeqCst: a death is one event in the model's total order; a
        // checker that reads it later in that order sees it.
        // mutate: skip (the model's oracle, not our code).
        DEAD.fetch_or(1 << pid, Ordering::SeqCst);
    }

    /// Has the model declared process `pid` dead?
    pub fn is_dead(pid: u32) -> bool {
        // mutate: skip (the model's oracle, not our code).
        pid < 64 && DEAD.load(Ordering::SeqCst) & (1 << pid) != 0
    }
}

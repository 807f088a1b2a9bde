//! The one facade for every synchronisation primitive shmkit uses.
//!
//! Normal builds get `std`'s atomics and a real, process-shared Linux futex.
//! Builds with `--cfg shmkit_loom` get loom's atomics, a futex modelled by a
//! loom `Mutex` + `Condvar`, and a liveness oracle the model controls, so that
//! the *same* algorithm code in `cell`, `header`, `ring`, `map`, `list` and
//! `lock` is model-checked, death of a process included. Builds with
//! `--cfg shmkit_shuttle` get the same from `shuttle` (a randomised
//! scheduler: sequentially consistent atomics, but configurations far larger
//! than loom can explore exhaustively; `shuttle_tests/`). The cfgs are our
//! own names, not plain `loom`: a user who runs their own loom models with
//! `--cfg loom` must not switch our internals too. Nothing else in `src/`
//! names them (code that cannot run under a model checks [`MODELLED`]
//! instead), and `clippy.toml` forbids naming `core::sync::atomic` types
//! elsewhere. The two model cfgs exclude each other.
//!
//! What does not live here: anything that maps memory (`segment`), and the
//! packing of a process identity into a shared word (`process`).
#![allow(clippy::disallowed_types)]

#[cfg(all(shmkit_loom, shmkit_shuttle))]
compile_error!("--cfg shmkit_loom and --cfg shmkit_shuttle exclude each other");

#[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
use std::sync::atomic as imp;

#[cfg(shmkit_loom)]
use loom::sync::atomic as imp;

#[cfg(shmkit_shuttle)]
use shuttle::sync::atomic as imp;

/// The model checker's runtime (threads, mutex and condvar, thread locals,
/// lazy statics) in a model build: loom's or shuttle's, same API.
#[cfg(shmkit_loom)]
use loom as rt;

#[cfg(shmkit_shuttle)]
use shuttle as rt;

pub use imp::Ordering;

/// A memory fence (`std::sync::atomic::fence`, or loom's).
#[inline]
pub fn fence(order: Ordering) {
    step();
    imp::fence(order)
}

/// The cheap half of an asymmetric fence: a fence of `order` for the side
/// of a store-then-load handshake that runs on every operation (an event
/// count's waker), paired with [`fence_heavy`] on the side that runs
/// rarely (a sleeper registering).
///
/// Normal builds: only a compiler fence, once this process is registered
/// for `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`: a [`fence_heavy`] in
/// any process then makes every running thread of this one execute a full
/// barrier, so the pair orders as two `fence(order)`s would (the technique
/// of Linux's `membarrier(2)`, folly's `asymmetricLightBarrier` and
/// liburcu). The first call registers (the system call itself is a full
/// barrier); a process whose registration fails uses `fence(order)`
/// instead, which also pairs with a heavy fence. A forked child starts
/// unregistered (the registration belongs to the parent's address space).
/// Model builds: `fence(order)`, the semantics the pair provides.
#[inline]
pub fn fence_light(order: Ordering) {
    #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
    {
        use std::sync::atomic::{Ordering as O, compiler_fence};
        // Relaxed: a process-local flag that pairs with nothing; it is
        // written only by `register_light` (whose system call is itself a
        // full barrier), and a thread that reads a stale 0 registers again.
        match asymmetric::LIGHT.load(O::Relaxed) {
            asymmetric::REGISTERED => compiler_fence(order),
            asymmetric::FAILED => imp::fence(order),
            _ => {
                asymmetric::register_light();
                imp::fence(order);
            }
        }
    }
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    fence(order)
}

/// The expensive half of an asymmetric fence (see [`fence_light`]): a
/// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` system call, which runs a
/// full barrier on every running thread of every registered process (and
/// on ours). Returns whether it did; `false` (no membarrier here: an old
/// kernel, a seccomp filter) means it was only `fence(order)`, which does
/// not pair with a waker's compiler fence, so the caller must not sleep
/// long on the strength of it ([`asymmetric_ok`]). Model builds:
/// `fence(order)`, returning `true`.
pub fn fence_heavy(order: Ordering) -> bool {
    #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
    {
        if asymmetric::heavy() {
            return true;
        }
        imp::fence(order);
        false
    }
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    {
        fence(order);
        true
    }
}

/// Whether [`fence_heavy`] works in this process (it has not failed yet).
pub fn asymmetric_ok() -> bool {
    #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
    {
        use std::sync::atomic::Ordering as O;
        // Relaxed: a process-local flag that only ever goes 0 -> 1; a stale
        // 0 costs one long sleep slice more, which its sleepers' liveness
        // slices bound anyway.
        asymmetric::HEAVY_FAILED.load(O::Relaxed) == 0
    }
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    true
}

/// The process-local state of the asymmetric fences: std atomics in this
/// process's memory, never in a segment.
#[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
mod asymmetric;

/// One operation on shared memory is about to happen. In model builds this
/// is where a process the model kills at its k-th step dies (see
/// [`liveness::model::run_killed_after`]); in normal builds it is nothing.
#[inline(always)]
fn step() {
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    liveness::model::step();
}

/// Whether this build runs the algorithms under a model checker (loom or
/// shuttle). Code that needs the real OS (mapping a segment) checks this and
/// fails cleanly, so no other file needs a cfg of its own.
pub const MODELLED: bool = cfg!(any(shmkit_loom, shmkit_shuttle));

/// Our own atomic types: `repr(transparent)` wrappers around std's (same
/// layout, so they may live in a shared mapping) or loom's. Being our own
/// types lets `clippy.toml` forbid std's everywhere else.
macro_rules! facade_atomic {
    ($($name:ident($int:ty);)*) => {$(
        #[doc = concat!("An atomic `", stringify!($int), "`: the std type's layout, the std or loom operations.")]
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub struct $name(imp::$name);

        impl $name {
            /// A new atomic holding `v`.
            #[inline]
            pub fn new(v: $int) -> Self { Self(imp::$name::new(v)) }
            /// Load the value.
            #[inline]
            pub fn load(&self, o: Ordering) -> $int { step(); self.0.load(o) }
            /// Store `v`.
            #[inline]
            pub fn store(&self, v: $int, o: Ordering) { step(); self.0.store(v, o) }
            /// Store `v`, returning the previous value.
            #[inline]
            pub fn swap(&self, v: $int, o: Ordering) -> $int { step(); self.0.swap(v, o) }
            /// Store `n` if the value is `c`; `Ok(previous)` or `Err(actual)`.
            #[inline]
            pub fn compare_exchange(&self, c: $int, n: $int, s: Ordering, f: Ordering)
                -> Result<$int, $int> { step(); self.0.compare_exchange(c, n, s, f) }
            /// As [`compare_exchange`](Self::compare_exchange), but may fail spuriously.
            #[inline]
            pub fn compare_exchange_weak(&self, c: $int, n: $int, s: Ordering, f: Ordering)
                -> Result<$int, $int> { step(); self.0.compare_exchange_weak(c, n, s, f) }
            /// Add `v` (wrapping), returning the previous value.
            #[inline]
            pub fn fetch_add(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_add(v, o) }
            /// Subtract `v` (wrapping), returning the previous value.
            #[inline]
            pub fn fetch_sub(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_sub(v, o) }
            /// Bitwise or with `v`, returning the previous value.
            #[inline]
            pub fn fetch_or(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_or(v, o) }
            /// Bitwise and with `v`, returning the previous value.
            #[inline]
            pub fn fetch_and(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_and(v, o) }
            /// Store the maximum of the value and `v`, returning the previous value.
            #[inline]
            pub fn fetch_max(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_max(v, o) }
            /// Store the minimum of the value and `v`, returning the previous value.
            #[inline]
            pub fn fetch_min(&self, v: $int, o: Ordering) -> $int { step(); self.0.fetch_min(v, o) }
        }
    )*};
}

facade_atomic! {
    AtomicI8(i8);
    AtomicU8(u8);
    AtomicI16(i16);
    AtomicU16(u16);
    AtomicI32(i32);
    AtomicU32(u32);
    AtomicI64(i64);
    AtomicU64(u64);
}

use std::time::Duration;

/// Tell the CPU (or loom's scheduler) that we are busy-waiting.
///
/// Under a model checker this yields, so that spin loops do not exhaust
/// loom's branch budget and the model lets the thread we wait for run.
#[inline]
pub fn spin_loop() {
    #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
    std::hint::spin_loop();
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    rt::thread::yield_now();
}

/// The ordering to use for the *load* half of a read-modify-write loop whose
/// successful update uses `order` (a failed CAS may not be Release).
#[inline]
pub fn load_ordering(order: Ordering) -> Ordering {
    match order {
        Ordering::Release => Ordering::Relaxed,
        Ordering::AcqRel => Ordering::Acquire,
        o => o,
    }
}

/// An `UnsafeCell` with loom's closure-based API on both sides, so code that
/// uses it is checked by loom for unsynchronised access. (shuttle has no
/// such check: its builds use this plain one.)
#[cfg(not(shmkit_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(shmkit_loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }
    /// Read access through a raw pointer; the caller upholds aliasing rules.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Write access through a raw pointer; the caller upholds aliasing rules.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(shmkit_loom)]
pub use loom::cell::UnsafeCell;

/// A 32-bit word that processes can sleep on and wake each other through.
///
/// In a normal build this is exactly an `AtomicU32` (same size and layout, so
/// it may sit in a shared mapping) and [`Futex::wait`]/[`Futex::wake`] are the
/// `FUTEX_WAIT`/`FUTEX_WAKE` system calls **without** `FUTEX_PRIVATE_FLAG`:
/// a private futex is keyed by virtual address and never wakes a waiter in
/// another process.
///
/// Under loom the word carries a `Mutex` + `Condvar`: `wait` re-checks the
/// value under the mutex and then waits, `wake` notifies under the mutex. This
/// is the futex contract (the check and the sleep are atomic with respect to
/// a wake), so an algorithm that can lose a wakeup deadlocks the model.
/// loom has no clock: a timed wait is modelled as an untimed one, so a
/// timeout can never be what rescues a model from a lost wakeup; a model of
/// a death path, where an expiring timeout is how a sleeper notices the
/// death, turns on `liveness::model::timeouts_expire`, and then a timed
/// wait returns after a yield (untimed waits still block).
#[cfg_attr(not(any(shmkit_loom, shmkit_shuttle)), repr(transparent))]
#[derive(Debug)]
pub struct Futex {
    word: AtomicU32,
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    lock: rt::sync::Mutex<()>,
    #[cfg(any(shmkit_loom, shmkit_shuttle))]
    cond: rt::sync::Condvar,
}

impl Default for Futex {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Futex {
    /// A futex word holding `value` (on the heap: models and tests; a
    /// segment's futexes are its zeroed bytes).
    pub fn new(value: u32) -> Self {
        Self {
            word: AtomicU32::new(value),
            #[cfg(any(shmkit_loom, shmkit_shuttle))]
            lock: rt::sync::Mutex::new(()),
            #[cfg(any(shmkit_loom, shmkit_shuttle))]
            cond: rt::sync::Condvar::new(),
        }
    }

    /// The word itself, for loads, stores and read-modify-writes.
    #[inline]
    pub fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sleep while the word equals `expected`, for at most `timeout`.
    ///
    /// May return early for any reason (a wake, a signal, a value change, a
    /// timeout): callers re-check their condition in a loop.
    pub fn wait(&self, expected: u32, timeout: Option<Duration>) {
        step();
        #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
        {
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `self.word` is a live, aligned 4-byte atomic for the whole
            // call; FUTEX_WAIT only reads it. `ts_ptr` is null or points to
            // `ts`, which outlives the call. The result (EAGAIN, EINTR,
            // ETIMEDOUT or 0) is deliberately ignored: callers re-check.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.word.0.as_ptr(),
                    libc::FUTEX_WAIT,
                    expected,
                    ts_ptr,
                    std::ptr::null::<u32>(),
                    0u32,
                );
            }
        }
        #[cfg(any(shmkit_loom, shmkit_shuttle))]
        {
            if timeout.is_some() && liveness::model::timeouts_expire_now() {
                // The model lets timeouts expire: the wait ends after letting
                // others run, as a spurious wake-up or an expiry may.
                rt::thread::yield_now();
                return;
            }
            let guard = self.lock.lock().unwrap();
            // SeqCst stands for the kernel's own check, which is ordered with
            // the waker's store by the futex hash-bucket lock.
            // mutate: skip (the model of the kernel, not our code).
            if self.word.load(Ordering::SeqCst) != expected {
                return;
            }
            drop(self.cond.wait(guard).unwrap());
        }
    }

    /// Wake up to `count` sleepers (use `u32::MAX` for all).
    pub fn wake(&self, count: u32) {
        step();
        #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
        {
            let n = count.min(i32::MAX as u32) as i32;
            // SAFETY: FUTEX_WAKE only uses the address as a key; the word is
            // live for the call. No memory is read or written through it.
            unsafe {
                libc::syscall(libc::SYS_futex, self.word.0.as_ptr(), libc::FUTEX_WAKE, n);
            }
        }
        #[cfg(any(shmkit_loom, shmkit_shuttle))]
        {
            let _guard = self.lock.lock().unwrap();
            if count == 1 {
                self.cond.notify_one();
            } else {
                self.cond.notify_all();
            }
        }
    }
}

/// The most words one [`Futex::wait_any`] call sleeps on (the kernel's
/// limit for `futex_waitv`).
pub const WAIT_ANY_MAX: usize = 128;

impl Futex {
    /// Sleep until any of `waits`' futexes is woken or no longer holds its
    /// expected value, or `timeout` passes: one thread waits on many words
    /// at once (Linux `futex_waitv`, 5.16 and later). At most
    /// [`WAIT_ANY_MAX`] entries are used; the rest are ignored.
    ///
    /// May return early for any reason, as [`wait`](Self::wait); callers
    /// re-check every word. Returns `false` when the call cannot sleep
    /// here (no `futex_waitv` in the kernel, a seccomp filter refusing it,
    /// any error but a value change, a signal or the timeout) and the
    /// caller must poll instead.
    pub fn wait_any(waits: &[(&Futex, u32)], timeout: Option<Duration>) -> bool {
        step();
        #[cfg(not(any(shmkit_loom, shmkit_shuttle)))]
        {
            /// The kernel's `struct futex_waitv` (include/uapi/linux/futex.h).
            #[repr(C)]
            struct FutexWaitv {
                val: u64,
                uaddr: u64,
                flags: u32,
                reserved: u32,
            }
            // FUTEX2_SIZE_U32 without FUTEX2_PRIVATE: the words are shared
            // between processes, like every futex of ours.
            const FUTEX2_SIZE_U32: u32 = 0x02;
            let list: Vec<FutexWaitv> = waits
                .iter()
                .take(WAIT_ANY_MAX)
                .map(|(f, expected)| FutexWaitv {
                    val: u64::from(*expected),
                    uaddr: f.word.0.as_ptr() as usize as u64,
                    flags: FUTEX2_SIZE_U32,
                    reserved: 0,
                })
                .collect();
            // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
            let deadline = timeout.map(|d| {
                let mut now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `now` is a valid timespec for clock_gettime to fill.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
                let nanos = (now.tv_nsec as u64).saturating_add(u64::from(d.subsec_nanos()));
                libc::timespec {
                    tv_sec: now
                        .tv_sec
                        .saturating_add(d.as_secs().min(i64::MAX as u64 / 2) as libc::time_t)
                        .saturating_add((nanos / 1_000_000_000) as libc::time_t),
                    tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
                }
            });
            let ts_ptr = deadline
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `list` holds `list.len()` (at most 128) initialised
            // entries, each naming a live, aligned 4-byte word borrowed for
            // the whole call (the kernel only reads them); `ts_ptr` is null
            // or points to `deadline`, which outlives the call. EAGAIN, EINTR
            // and ETIMEDOUT need no action: callers re-check.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex_waitv,
                    list.as_ptr(),
                    list.len() as libc::c_uint,
                    0 as libc::c_uint,
                    ts_ptr,
                    libc::CLOCK_MONOTONIC,
                )
            };
            // Any other error means the call cannot sleep here: ENOSYS (a
            // kernel before 5.16), but also EPERM from a seccomp filter
            // that predates the call (older container runtimes), which
            // would otherwise return at once forever and spin the caller.
            r != -1
                || matches!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT)
                )
        }
        #[cfg(any(shmkit_loom, shmkit_shuttle))]
        {
            // Not modelled: a spurious wake-up, which callers must handle.
            let _ = (waits, timeout);
            rt::thread::yield_now();
            true
        }
    }
}

/// Process identity and liveness, the OS side of [`crate::process`].
///
/// A process is named by its pid and its start time (clock ticks since boot,
/// field 22 of `/proc/PID/stat`), so a pid that the kernel reused for a newer
/// process does not count as the old one.
///
/// Under loom every model thread is a process (pid 1 unless it says
/// otherwise), all with start time 1, and a process is dead once the model
/// says so (`model::die`, or killed at a chosen step by
/// `model::run_killed_after`): the recovery paths then run under the model
/// checker like everything else.
pub mod liveness {
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
        pub fn run_killed_after<R>(
            pid: u32,
            steps: Option<usize>,
            f: impl FnOnce() -> R,
        ) -> Option<R> {
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
}

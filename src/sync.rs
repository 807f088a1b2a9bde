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

#[cfg(any(shmkit_loom, shmkit_shuttle))]
use std::sync::PoisonError;
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
            // Poisoning ignored, here and in `wake`: the kernel's futex has
            // none, and the model's lock is poisoned spuriously. Model
            // threads share one OS thread, and a killed one unwinds; while
            // it does, its destructors' atomic loads (`current_is_dead`)
            // let other threads run, for which `thread::panicking()` is
            // then true, so every guard they drop marks the lock poisoned.
            let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            // SeqCst stands for the kernel's own check, which is ordered with
            // the waker's store by the futex hash-bucket lock.
            // mutate: skip (the model of the kernel, not our code).
            if self.word.load(Ordering::SeqCst) != expected {
                return;
            }
            drop(
                self.cond
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
            );
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
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
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

pub mod liveness;

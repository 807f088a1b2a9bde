//! A process-shared lock that survives the death of its holder: Python's
//! `Lock` / `get_lock()` for the multi-step critical sections that remain
//! once counters and queues need no lock.
//!
//! ```
//! use shmkit::lock::{LockError, ShmLock};
//! let name = format!("shmkit-doc-lock-{}", std::process::id());
//! let lock = ShmLock::create(&name)?;
//! match lock.lock() {
//!     Ok(guard) => drop(guard), // the usual case
//!     Err(LockError::OwnerDied(mut guard)) => {
//!         // The last holder died inside its critical section:
//!         // repair the data it guards, then say so.
//!         guard.mark_consistent();
//!     }
//!     Err(e) => return Err(e.to_string().into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Mechanism, and why
//!
//! The lock is glibc's **robust, process-shared pthread mutex**. Each thread
//! that holds a robust mutex is on a list the kernel walks when the thread
//! exits for any reason, `kill -9` included: the kernel marks the mutex
//! "owner died" and wakes a waiter, which then acquires it with
//! `EOWNERDEAD`. So an acquirer learns of the death at once, with no polling
//! and no window in which a holder that died just after acquiring leaves a
//! lock nobody can take (glibc registers the mutex as "pending" before it
//! takes it). A futex lock of our own with an owner pid + start-time word
//! would have to poll `/proc` to learn of a death (delay) and close that
//! window by hand; the kernel already does both. The fast path is glibc's
//! (one CAS to lock, one to unlock). The cost: the mutex layout is glibc's, so
//! every process must use glibc (a musl build would read garbage); and the
//! algorithm is glibc's and the kernel's, so it is not a loom model of ours.
//!
//! On top, a `dirty` word (read and written only while holding the mutex)
//! records "a holder died and nobody has marked the data consistent yet".
//! The acquirer that gets `EOWNERDEAD` makes the mutex consistent at once
//! (so it stays usable even if this acquirer dies too) and sets `dirty`;
//! every acquirer that finds `dirty` set gets [`LockError::OwnerDied`] until
//! one calls [`LockGuard::mark_consistent`]. A repairer that dies mid-repair
//! therefore hands the duty to the next acquirer.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::ProcToken;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The lock's shared state: 128 bytes, at the start of a lock segment or of
/// an array's body.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct LockArea {
    /// Storage of the `pthread_mutex_t` (40 bytes on x86-64 glibc), touched
    /// only through pthread calls.
    mutex: [AtomicU64; 8],
    /// 1 while a dead holder's data awaits `mark_consistent` (guarded by the
    /// mutex).
    dirty: AtomicU32,
    /// pid of the current holder, 0 when free (written by the holder; read by
    /// tools).
    holder: AtomicU32,
    /// Times the lock was taken, and times it was taken by another process
    /// than the previous holder (hand-offs); guarded by the mutex.
    acquisitions: AtomicU64,
    handoffs: AtomicU64,
    /// pid of the previous holder (guarded by the mutex).
    last_holder: AtomicU32,
    _pad: [AtomicU32; 7],
}

const _: () = assert!(size_of::<libc::pthread_mutex_t>() <= 64);
const _: () = assert!(crate::sync::MODELLED || size_of::<LockArea>() == 128);

/// Bytes a lock takes in a segment.
pub const LOCK_AREA: u64 = size_of::<LockArea>() as u64;

impl LockArea {
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.mutex.as_ptr() as *mut libc::pthread_mutex_t
    }

    /// Initialise the mutex as robust and process-shared. Only the creator
    /// calls this, on fresh (zeroed) memory, before publishing the segment.
    pub(crate) fn init(&self) -> Result<()> {
        let fail = |what: &str, rc: i32| Error::Os {
            op: "pthread_mutex_init",
            name: what.to_owned(),
            source: std::io::Error::from_raw_os_error(rc),
        };
        // SAFETY: the attribute object is initialised before use and
        // destroyed after; the mutex storage is 64 bytes (>= its size),
        // 8-aligned, in memory no other process uses yet.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            let rc = libc::pthread_mutexattr_init(attr.as_mut_ptr());
            if rc != 0 {
                return Err(fail("attr", rc));
            }
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
            let rc = libc::pthread_mutex_init(self.mutex(), attr.as_ptr());
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            if rc != 0 {
                return Err(fail("mutex", rc));
            }
        }
        Ok(())
    }

    /// Take the lock, however `acquire` does (lock, trylock, timedlock).
    fn take<'a>(
        &'a self,
        acquire: impl FnOnce(*mut libc::pthread_mutex_t) -> i32,
    ) -> std::result::Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        let rc = acquire(self.mutex());
        let died = match rc {
            0 => false,
            libc::EOWNERDEAD => {
                // Make the mutex usable again at once (if we die too, the
                // next acquirer gets EOWNERDEAD again); remember that the data
                // still needs repair.
                // SAFETY: we hold the mutex (EOWNERDEAD means acquired).
                unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                // Relaxed: guarded by the mutex.
                self.dirty.store(1, Ordering::Relaxed);
                true
            }
            libc::EBUSY => return Err(LockError::WouldBlock),
            libc::ETIMEDOUT => return Err(LockError::Timeout),
            libc::ENOTRECOVERABLE => return Err(LockError::Unrecoverable),
            libc::EDEADLK => return Err(LockError::Deadlock),
            other => return Err(LockError::Os(other)),
        };
        let me = ProcToken::current().pid();
        // Relaxed loads and stores, not read-modify-writes: only the holder
        // writes these, and the mutex orders holders. (Locked RMWs here made
        // the critical section, and so the contended lock, measurably slower.)
        if self.last_holder.load(Ordering::Relaxed) != me {
            self.last_holder.store(me, Ordering::Relaxed);
            let h = self.handoffs.load(Ordering::Relaxed);
            self.handoffs.store(h + 1, Ordering::Relaxed);
        }
        let a = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions.store(a + 1, Ordering::Relaxed);
        self.holder.store(me, Ordering::Relaxed);
        let guard = LockGuard { area: self };
        if died || self.dirty.load(Ordering::Relaxed) != 0 {
            Err(LockError::OwnerDied(guard))
        } else {
            Ok(guard)
        }
    }

    pub(crate) fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        // SAFETY: the mutex was initialised by the segment's creator.
        self.take(|m| unsafe { libc::pthread_mutex_lock(m) })
    }

    pub(crate) fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        // SAFETY: as in `lock`.
        self.take(|m| unsafe { libc::pthread_mutex_trylock(m) })
    }

    pub(crate) fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        // pthread_mutex_timedlock takes an absolute CLOCK_REALTIME deadline.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let at = now + timeout;
        let ts = libc::timespec {
            tv_sec: at.as_secs() as libc::time_t,
            tv_nsec: at.subsec_nanos() as libc::c_long,
        };
        // SAFETY: as in `lock`; `ts` outlives the call.
        self.take(|m| unsafe { libc::pthread_mutex_timedlock(m, &ts) })
    }

    /// A snapshot for tools.
    pub fn state(&self) -> LockState {
        LockState {
            holder: match self.holder.load(Ordering::Relaxed) {
                0 => None,
                pid => Some(pid),
            },
            owner_died: self.dirty.load(Ordering::Relaxed) != 0,
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            handoffs: self.handoffs.load(Ordering::Relaxed),
        }
    }
}

/// What tools show of a lock (read without taking it: a racy snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// pid of the holder, if held (it may have died holding it).
    pub holder: Option<u32>,
    /// A holder died and nobody has marked the data consistent yet.
    pub owner_died: bool,
    pub acquisitions: u64,
    /// Acquisitions by another process than the previous holder.
    pub handoffs: u64,
}

/// Why a lock call returned without a plain guard.
pub enum LockError<G> {
    /// The lock is held, *and* the previous holder died inside its critical
    /// section (or a repairer died before finishing): the data it guards may
    /// be half-updated. Repair it, then [`LockGuard::mark_consistent`]. The
    /// guard holds the lock either way.
    OwnerDied(G),
    /// `try_lock`: someone else holds it.
    WouldBlock,
    /// `lock_timeout`: not acquired in time.
    Timeout,
    /// This process already holds it (a relock would deadlock).
    Deadlock,
    /// The mutex was unlocked without being made consistent by a non-shmkit
    /// user; it can never be locked again. Recreate the segment.
    Unrecoverable,
    /// Another error from the pthread call (errno).
    Os(i32),
}

impl<G> LockError<G> {
    /// Change the guard type (wrapping a guard in a richer one).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::Deadlock => LockError::Deadlock,
            LockError::Unrecoverable => LockError::Unrecoverable,
            LockError::Os(e) => LockError::Os(e),
        }
    }

    /// The guard, if the lock was acquired (only `OwnerDied`).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Deadlock => f.write_str("Deadlock"),
            LockError::Unrecoverable => f.write_str("Unrecoverable"),
            LockError::Os(e) => write!(f, "Os({e})"),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the previous holder died while holding the lock: repair the data, then \
                 call mark_consistent() on the guard",
            ),
            LockError::WouldBlock => f.write_str("the lock is held by someone else"),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::Deadlock => f.write_str("this process already holds the lock"),
            LockError::Unrecoverable => f.write_str(
                "the lock is unrecoverable (unlocked inconsistent by a non-shmkit user): \
                 recreate the segment",
            ),
            LockError::Os(e) => write!(
                f,
                "locking failed: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    area: &'a LockArea,
}

impl LockGuard<'_> {
    /// Say the guarded data is consistent again after a holder died; later
    /// acquirers get plain guards.
    pub fn mark_consistent(&mut self) {
        // Relaxed: guarded by the mutex we hold.
        self.area.dirty.store(0, Ordering::Relaxed);
    }

    /// Whether the data still awaits repair after a holder died.
    pub fn owner_died(&self) -> bool {
        self.area.dirty.load(Ordering::Relaxed) != 0
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: ordered before the unlock, which releases.
        self.area.holder.store(0, Ordering::Relaxed);
        // SAFETY: we hold the mutex (the guard exists only while held).
        unsafe { libc::pthread_mutex_unlock(self.area.mutex()) };
    }
}

mod segment_lock {
    use super::*;
    use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
    use crate::object::{SegmentObject, object_api};
    use crate::segment::Segment;

    pub(crate) fn body_size(h: &HeaderInfo) -> Option<u64> {
        (h.len == 1).then(|| align_body(LOCK_AREA)).flatten()
    }

    fn area_of(seg: &Segment) -> &LockArea {
        // SAFETY: a lock segment's body is LOCK_AREA bytes (validated),
        // 128-aligned, alive as long as `seg`; LockArea is all atomics.
        unsafe { &*(seg.body_ptr() as *const LockArea) }
    }

    /// A named (or inherited) process-shared lock that survives the death of
    /// its holder. See the [module docs](crate::lock).
    #[derive(Debug)]
    pub struct ShmLock {
        seg: Segment,
    }

    impl SegmentObject for ShmLock {
        const KIND: Kind = Kind::Lock;
        const FIXED_LEN: Option<u64> = Some(1);
        type Params = ();
        fn elem() -> ElemDesc {
            ElemDesc::of::<LockArea>()
        }
        fn len_of(_: &()) -> Result<u64> {
            Ok(1)
        }
        fn body_size(h: &HeaderInfo) -> Option<u64> {
            body_size(h)
        }
        fn init(seg: &Segment, _: &()) -> Result<()> {
            area_of(seg).init()
        }
        fn from_segment(seg: Segment) -> Self {
            ShmLock { seg }
        }
        fn backing(&self) -> Option<&Segment> {
            Some(&self.seg)
        }
    }

    object_api!(impl [] ShmLock, "lock", (), open_with);

    impl ShmLock {
        fn area(&self) -> &LockArea {
            area_of(&self.seg)
        }

        /// Take the lock, waiting as long as it takes. A holder's death is
        /// reported at once, as [`LockError::OwnerDied`] with the guard.
        pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
            self.area().lock()
        }

        /// Take the lock if it is free now.
        pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
            self.area().try_lock()
        }

        /// Take the lock, waiting at most `timeout`.
        pub fn lock_timeout(
            &self,
            timeout: Duration,
        ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
            self.area().lock_timeout(timeout)
        }

        /// Holder, owner-died flag and hand-off counts (a racy snapshot).
        pub fn state(&self) -> LockState {
            self.area().state()
        }

        /// The segment underneath.
        pub fn segment(&self) -> &Segment {
            &self.seg
        }
    }

    /// The lock state of a validated lock or array segment (both start
    /// their body with the lock), for tools.
    pub fn state_of(seg: &Segment) -> LockState {
        area_of(seg).state()
    }
}

pub(crate) use segment_lock::body_size;
pub use segment_lock::{ShmLock, state_of};

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
//! The lock is shmkit's own, on the [`crate::sync`] facade only, so loom
//! checks the very code that runs (`loom_tests/lock.rs`). Its state lives in
//! memory other processes may scribble on, so every bit pattern of every
//! word means something harmless (see [`LockArea`]).
//!
//! - **The lock is the owner word.** 0 is free; otherwise it holds the
//!   holder's [`ProcToken`] (pid + process start
//!   time). Acquiring is one CAS `0 -> me`, so taking the lock and recording
//!   who holds it are one atomic step: there is no window in which a holder
//!   that dies right after acquiring leaves a lock nobody can attribute.
//! - **Sleepers** set a waiters bit in the same word (bit 63, which no
//!   token uses) with a CAS, then sleep on a 32-bit futex word beside it (a
//!   futex word has 32 bits; a token needs 64). Releasing is one CAS
//!   `me -> 0` with Release; it fails only if the bit is set, and then the
//!   releaser clears the word, bumps the futex word and wakes the sleepers.
//!   Because registering and releasing are read-modify-writes of one word,
//!   either the releaser sees the bit or the sleeper sees the lock free; and
//!   a sleeper reads the futex key after registering, so a bump it missed
//!   makes its sleep return at once. No fence, and no second word touched,
//!   when nobody sleeps (glibc's mutex works the same way). An acquirer
//!   that finds the lock held sleeps at once (no spinning: measured slower,
//!   then no faster, see `raw.rs`), in slices of 50 ms. The uncontended
//!   path (a CAS, the statistics on the same cache line, a CAS) is inlined
//!   into the caller; sleeping and waking stay out of line.
//! - **A dead holder.** On entering the slow path, and after every sleep
//!   through which the owner word did not change, the acquirer asks whether
//!   the owner still runs (`/proc/PID/stat`: pid and start time, so a reused
//!   pid does not count; a zombie is dead). If not, it takes the lock over
//!   with a CAS `dead -> me` (of several takers one wins), sets `dirty`, and
//!   gets [`LockError::OwnerDied`]. A "dead" verdict counts only if the
//!   same check finds the acquirer itself alive, so an unreadable `/proc`
//!   (no file descriptors left) never hands a live holder's lock to another
//!   process. A holder killed with `-9` is noticed within one slice (plus
//!   a `/proc` read) by a sleeper, at once by a new acquirer. The dead
//!   holder's writes are visible to the taker: they precede its death,
//!   which the taker observed.
//! - **Repair duty.** Every acquirer that finds `dirty` set gets
//!   `OwnerDied` until one calls [`LockGuard::mark_consistent`]; a repairer
//!   that dies first hands the duty on.
//! - **Garbage.** An owner word that names no running process (pid 0, a
//!   pid beyond `pid_max`, a wrong start time, all-ones) is a dead holder:
//!   taken over, `OwnerDied`. Counters wrap; any nonzero `dirty` is dirty; a
//!   foreign futex word only makes a sleeper return early and re-check. An
//!   owner word that names a process that *does* run (say init, pid 1, with
//!   its true start time) looks held by that process for as long as it runs,
//!   and is treated exactly like a live holder that never unlocks: `lock`
//!   waits, `lock_timeout` returns `Timeout`, `try_lock` `WouldBlock`. No
//!   lock can tell the two apart, and a process able to write the segment
//!   can hold the lock forever anyway; use `lock_timeout` where that matters.
//!
//! Not supported: re-locking from the thread that holds the lock. As with
//! a non-recursive mutex, `lock` then waits forever and `lock_timeout`
//! times out. Threads of one process share its identity; they exclude each
//! other all the same (the CAS does that), but a thread of a live process
//! is never taken for dead.
//!
//! Why not glibc's robust pthread mutex (the previous mechanism): its kind
//! and list pointers live in the shared memory and glibc trusts them, so
//! scribbled bytes made other processes abort, segfault or wait forever,
//! and loom cannot model it. What it did better: the kernel reports a
//! holder's death at once. Here a sleeper learns of it within a slice, which
//! is the price of a lock whose every word is untrusted.

use std::time::Duration;

use crate::error::Result;
use crate::process::ProcToken;

mod raw;

use raw::{LockWords, Miss, Wait};

/// The lock's shared state: 128 bytes, at the start of a lock segment or of
/// an array's body. All of it is the lock's words (`raw::LockWords`, 40
/// bytes; the rest is padding that keeps neighbours off its cache line).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct LockArea {
    words: LockWords,
}

const _: () = assert!(crate::sync::MODELLED || size_of::<LockArea>() == 128);

/// Bytes a lock takes in a segment.
pub const LOCK_AREA: u64 = size_of::<LockArea>() as u64;

type LockResult<'a> = std::result::Result<LockGuard<'a>, LockError<LockGuard<'a>>>;

/// A model's process died inside a lock call (see [`LockArea::lock_or_die`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Died {
    /// Whether it held the lock when it died.
    pub holding: bool,
}

impl LockArea {
    /// A free lock on the heap, for one process's threads and for loom
    /// models (which cannot map segments). In a segment, zeroed memory is
    /// a free lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepare a lock in fresh (zeroed) memory: zero is a free, consistent
    /// lock, so there is nothing to do. Kept so that every segment kind
    /// initialises its body the same way.
    pub(crate) fn init(&self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn result(&self, me: u64, r: std::result::Result<bool, Miss>) -> LockResult<'_> {
        let guard = || LockGuard { area: self, me };
        match r {
            Ok(false) => Ok(guard()),
            Ok(true) => Err(LockError::OwnerDied(guard())),
            Err(Miss::WouldBlock) => Err(LockError::WouldBlock),
            Err(Miss::Timeout) => Err(LockError::Timeout),
            Err(Miss::Died { .. }) => unreachable!("only `lock_or_die` lets a process die"),
        }
    }

    /// Take the lock, waiting as long as it takes. A dead holder is taken
    /// over, as [`LockError::OwnerDied`] with the guard.
    #[inline]
    pub fn lock(&self) -> LockResult<'_> {
        let me = ProcToken::current().raw();
        self.result(me, self.words.acquire(me, Wait::Until(None), &mut || true))
    }

    /// Take the lock if it is free now, or if its holder is dead. Never
    /// sleeps (a held lock costs one `/proc` read to tell a dead holder from
    /// a live one).
    #[inline]
    pub fn try_lock(&self) -> LockResult<'_> {
        let me = ProcToken::current().raw();
        self.result(me, self.words.acquire(me, Wait::Never, &mut || true))
    }

    /// Take the lock, waiting at most `timeout` (give or take a scheduler
    /// tick and one `/proc` read).
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<'_> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let me = ProcToken::current().raw();
        self.result(
            me,
            self.words.acquire(me, Wait::Until(deadline), &mut || true),
        )
    }

    /// `lock`, for loom models of a process that dies: `fate` is called
    /// before each step that touches the lock's words; when it returns
    /// `false` (having declared the process dead), the call stops there and
    /// leaves everything as a killed process would.
    #[doc(hidden)]
    pub fn lock_or_die(
        &self,
        fate: &mut impl FnMut() -> bool,
    ) -> std::result::Result<LockResult<'_>, Died> {
        let me = ProcToken::current().raw();
        match self.words.acquire(me, Wait::Until(None), fate) {
            Err(Miss::Died { holding }) => Err(Died { holding }),
            r => Ok(self.result(me, r)),
        }
    }

    /// A snapshot for tools.
    pub fn state(&self) -> LockState {
        let s = self.words.snapshot();
        LockState {
            holder: ProcToken::from_raw(s.owner).map(|t| t.pid()),
            owner_died: s.dirty,
            acquisitions: s.acquisitions,
            handoffs: s.handoffs,
        }
    }
}

/// What tools show of a lock (read without taking it: a racy snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// pid of the holder, if held (it may have died holding it; garbage in
    /// the owner word shows as whatever pid it names).
    pub holder: Option<u32>,
    /// A holder died and nobody has marked the data consistent yet.
    pub owner_died: bool,
    /// Times the lock was taken (wrapping).
    pub acquisitions: u64,
    /// Acquisitions by another process than the previous holder (wrapping).
    pub handoffs: u64,
}

/// Why a lock call returned without a plain guard.
pub enum LockError<G> {
    /// The lock is held, *and* the previous holder died inside its critical
    /// section (or a repairer died before finishing): the data it guards may
    /// be half-updated. Repair it, then [`LockGuard::mark_consistent`]. The
    /// guard holds the lock either way.
    OwnerDied(G),
    /// `try_lock`: a running process holds it.
    WouldBlock,
    /// `lock_timeout`: not acquired in time.
    Timeout,
}

impl<G> LockError<G> {
    /// Change the guard type (wrapping a guard in a richer one).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
        }
    }

    /// The guard, if the lock was acquired (only `OwnerDied`).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The same error without the guard, so that it borrows nothing and
    /// `?` can turn it into `Box<dyn Error>` (or `anyhow::Error`). An
    /// `OwnerDied` guard is dropped here: the lock is released and the data
    /// stays marked dirty, so the next acquirer gets `OwnerDied` too; repair
    /// and [`mark_consistent`](LockGuard::mark_consistent) through
    /// [`into_guard`](Self::into_guard) instead when you can.
    ///
    /// ```
    /// use shmkit::{LockError, ShmLock};
    /// fn transfer(lock: &ShmLock) -> Result<(), Box<dyn std::error::Error>> {
    ///     let _guard = lock.lock().map_err(LockError::into_unguarded)?;
    ///     // ... the multi-step update ...
    ///     Ok(())
    /// }
    /// let lock = ShmLock::create_anonymous()?;
    /// transfer(&lock)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_unguarded(self) -> LockError<()> {
        self.map(drop)
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
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
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    area: &'a LockArea,
    /// The holder's raw token, as written into the owner word.
    me: u64,
}

impl LockGuard<'_> {
    /// Say the guarded data is consistent again after a holder died; later
    /// acquirers get plain guards.
    pub fn mark_consistent(&mut self) {
        self.area.words.mark_consistent();
    }

    /// Whether the data still awaits repair after a holder died.
    pub fn owner_died(&self) -> bool {
        self.area.words.dirty()
    }

    /// Unlock, for loom models of a process that dies (see
    /// [`LockArea::lock_or_die`]).
    #[doc(hidden)]
    pub fn unlock_or_die(self, fate: &mut impl FnMut() -> bool) -> std::result::Result<(), Died> {
        let (area, me) = (self.area, self.me);
        // The release below is this guard's drop.
        std::mem::forget(self);
        match area.words.release(me, fate) {
            Err(Miss::Died { holding }) => Err(Died { holding }),
            _ => Ok(()),
        }
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A killed holder does not unlock (only a model's dying thread gets
        // here): the next acquirer takes over and gets `OwnerDied`.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        let _ = self.area.words.release(self.me, &mut || true);
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

    #[inline]
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
            ElemDesc::internal::<LockArea>("shmkit.Lock")
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
        #[inline]
        fn area(&self) -> &LockArea {
            area_of(&self.seg)
        }

        /// Take the lock, waiting as long as it takes. A holder's death is
        /// reported at once, as [`LockError::OwnerDied`] with the guard.
        #[inline]
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

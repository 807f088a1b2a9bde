//! `SharedCell<T>`: Python's `Manager().Namespace()` (a status record, a
//! telemetry snapshot, a config) without a server process. One record of
//! any [`ShmType`] in shared memory; many readers get a consistent copy of
//! the whole record without taking a lock, writers take turns.
//!
//! ```
//! shmkit::record! {
//!     #[name = "demo.Status/1"]
//!     #[derive(Debug, PartialEq)]
//!     pub struct Status { pub step: u64, pub loss: f64, pub done: u64 }
//! }
//! use shmkit::SharedCell;
//! let name = format!("shmkit-doc-cell-{}", std::process::id());
//! let status = SharedCell::create(&name, Status { step: 0, loss: 1.0, done: 0 })?;
//! // Another process: SharedCell::<Status>::open(&name)?
//! status.store(&Status { step: 1, loss: 0.5, done: 0 })?;
//! status.update(|s| s.step += 1)?; // read-modify-write under the writers' lock
//! assert_eq!(status.load()?, Status { step: 2, loss: 0.5, done: 0 });
//! assert_eq!(status.version()?, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Mechanism, and why
//!
//! A ring of `N` stamped buffers and a published version word, after the
//! writers' lock (the crate's own robust [`LockArea`]):
//!
//! | bytes of the body | word | meaning |
//! |---|---|---|
//! | 0..128 | lock | the writers' [`LockArea`] |
//! | 128 | `version` | how many stores completed, `0 ..= MAX_VERSION`; the record of version `v` is in buffer `v % N` |
//! | 192 | `takeovers` | writers (or falling-back readers) that found the lock's holder dead (wrapping) |
//! | 256.. | `N` buffers | each a `stamp` word, then the record (rounded up to 8 bytes) as atomic words (`slot::write_slot` / `read_slot`), each buffer padded to whole 128-byte pairs of lines |
//!
//! A buffer's `stamp` is the version whose record it holds, or `BUSY | n`
//! while the writer of version `n` fills it. `N` is fixed by the record's
//! size (so every process derives it from the header): [`buffers_for`]
//! gives 8 for records up to 4 KiB, 4 above (2 under the model checkers,
//! the tightest wrap, which is what the models need to reach).
//!
//! - **A writer** (holding the lock) reads `version` = `v`, sets the stamp
//!   of buffer `b = (v + 1) % N` to `BUSY | v+1`, fences (Release), copies
//!   the record into it, stamps it `v + 1`, then publishes `version = v +
//!   1` with Release. The published buffer is never written.
//! - **A reader** loads `version` (Acquire, so the record of that version
//!   is complete and visible), copies buffer `v % N` with per-word
//!   atomics, fences (Acquire) and re-checks that the buffer's stamp is
//!   still `v`. A later writer that wrote any word the reader copied
//!   stamped the buffer `BUSY` before (Release fence) so the re-check sees
//!   it (the seqlock argument), and the reader retries. The reader's
//!   buffer is overwritten only by the `N`-th store after the version it
//!   loaded, so a retry needs `N` stores to start during one copy; the
//!   reader never waits for a writer that is merely slow, or dead.
//! - **Why `N` buffers and the stamp beside the record.** A writer that
//!   stores without pause finishes a small store in the time a reader on
//!   another core takes to fetch the lines it changed (2 buffers measured
//!   4 stores per copy on an AMD EPYC: nearly every copy torn, every load
//!   ending on the lock). With 8, a copy is torn only by 8 stores during
//!   it. The stamp shares its buffer's first line, so the re-check reads a
//!   line the copy just fetched, and the version sits alone on its line:
//!   a load touches the version's line and its buffer's, nothing else.
//! - **Retries are bounded.** After [`ATTEMPTS`] torn copies in a row
//!   (writers storing faster than the record can be copied), the reader
//!   takes the writers' lock for one copy, which then cannot be torn. Why
//!   the lock rather than an error: a reader that loses the race that often
//!   is starved by writers making progress, and the lock queues it among
//!   them, so `load` always returns a record (an error would push a retry
//!   loop onto every caller, who could do no better). `load_timeout`
//!   bounds that wait. It also makes garbage harmless: a stamp that never
//!   matches is retried [`ATTEMPTS`] times, then found wrong under the lock
//!   (where no writer can explain it) and reported as [`Error::Corrupt`].
//! - **A writer killed mid-store** leaves the buffer it was filling
//!   stamped `BUSY` (or complete but unpublished) and the published ones
//!   untouched: readers keep seeing the last complete record. The next
//!   writer finds the lock's holder dead ([`LockError::OwnerDied`]); as the
//!   buffer it is about to fill is exactly the one the dead writer left
//!   half-written, there is nothing to repair: it counts the takeover,
//!   marks the lock consistent and stores.
//! - **Untrusted words.** A version past `MAX_VERSION` (or one that a store
//!   would take there), and a published buffer whose stamp is not its
//!   version when no writer runs, are [`Error::Corrupt`]; a garbage stamp
//!   on an unpublished buffer is overwritten by the store that reuses it. A garbage
//!   record is just a record (every bit pattern of a `Pod` type is one).
//!   Nothing read from the segment is used as a length, and the version
//!   picks a buffer only reduced modulo `N`.
//!
//! Why not a single-buffer seqlock: a writer killed between its two
//! sequence stores leaves an odd sequence number, and readers would spin
//! until the next writer repairs it (forever, if no writer comes); with
//! several buffers a dead writer never touches what readers read.
//!
//! What does not live here: the lock ([`crate::lock`]), the word copies
//! (`slot`), create/open (`object`). `src/cell.rs` is something else: the
//! atomic cells of arrays.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind};
use crate::identity::ShmType;
use crate::lock::{LockArea, LockError, LockGuard};
use crate::object::{SegmentObject, object_api};
use crate::segment::Segment;
use crate::slot::{read_slot, words_for, write_slot};
use crate::sync::{AtomicU64, Ordering, fence, spin_loop};
use crate::words::Words;

pub use error::CellError;
use error::untimed;
pub(crate) use layout::cell_body;
use layout::{CTRL_WORDS, LOCK_WORDS, TAKEOVERS, VERSION, body_words, cell_words, stride_for};
pub use layout::{buffers_for, state_of};

/// Torn copies in a row after which a reader takes the writers' lock for
/// one copy (see the [module docs](self)).
pub const ATTEMPTS: u32 = 64;

/// A stamp with this bit is a buffer being filled (`BUSY | version`).
const BUSY: u64 = 1 << 63;
/// The largest version: stores past it are [`Error::Corrupt`] (2^63 stores
/// do not happen; a version that large is garbage).
const MAX_VERSION: u64 = BUSY - 1;

/// What owns the lock: inside the segment's body, or on the heap (threads
/// of one process, loom models, whose atomics cannot live in a mapping).
#[derive(Debug)]
enum LockHome {
    Segment,
    Heap(Box<LockArea>),
}

/// One record shared between processes: consistent lock-free snapshots for
/// readers, serialised writers that may die at any moment. See the [module
/// docs](self).
#[derive(Debug)]
pub struct SharedCell<T: ShmType> {
    words: Words,
    /// Index of the control line in `words` (after the lock in a segment).
    ctrl: usize,
    lock: LockHome,
    /// Invariant in `T`, not `Send`/`Sync` by itself (see below).
    _t: PhantomData<*mut T>,
}

// SAFETY: the cell owns no `T`, only atomic words and a lock; records
// cross threads by copy (stored by one, loaded by another), which is
// sending a `T`: `T: Send` is required and enough. No `&T` into shared
// memory is ever handed out.
unsafe impl<T: ShmType + Send> Send for SharedCell<T> {}
// SAFETY: as above.
unsafe impl<T: ShmType + Send> Sync for SharedCell<T> {}

impl<T: ShmType> SegmentObject for SharedCell<T> {
    const KIND: Kind = Kind::Cell;
    const FIXED_LEN: Option<u64> = Some(1);
    type Params = T;
    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }
    fn len_of(_: &T) -> Result<u64> {
        check::<T>()?;
        Ok(1)
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        cell_body(h)
    }
    fn init(seg: &Segment, initial: &T) -> Result<()> {
        // Fresh zeroed body: a free lock, version 0, every stamp 0; buffer
        // 0 (version 0's) gets the initial record. Nobody else sees the
        // segment before the header is published.
        let start = LOCK_WORDS + CTRL_WORDS + 1;
        write_slot(
            &body_words(seg)[start..start + words_for(size_of::<T>())],
            initial,
        );
        Ok(())
    }
    fn from_segment(seg: Segment) -> Self {
        SharedCell {
            words: Words::shared(seg),
            ctrl: LOCK_WORDS,
            lock: LockHome::Segment,
            _t: PhantomData,
        }
    }
    fn backing(&self) -> Option<&Segment> {
        self.words.segment()
    }
}

object_api!(impl [T: ShmType] SharedCell<T>, "shared cell", (initial: T), open_with);

fn check<T>() -> Result<()> {
    if size_of::<T>() == 0 {
        return Err(Error::InvalidArgument {
            what: "a shared cell's record must not be zero-sized".into(),
        });
    }
    Ok(())
}

/// One attempt at a snapshot.
enum Attempt<T> {
    /// A consistent record of this version.
    Got(u64, T),
    /// A writer overwrote the buffer during the copy (or a garbage stamp).
    Torn,
}

impl<T: ShmType> SharedCell<T> {
    /// A cell on the heap holding `initial`, for threads of one process
    /// (and loom models).
    ///
    /// ```
    /// let c = shmkit::SharedCell::new_in_process([1u32, 2])?;
    /// c.store(&[3, 4])?;
    /// assert_eq!(c.load()?, [3, 4]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn new_in_process(initial: T) -> Result<Self> {
        check::<T>()?;
        let cell = SharedCell {
            words: Words::heap(cell_words(size_of::<T>()).ok_or_else(|| {
                Error::InvalidArgument {
                    what: "a shared cell's record is too large".into(),
                }
            })?),
            ctrl: 0,
            lock: LockHome::Heap(Box::new(LockArea::new())),
            _t: PhantomData,
        };
        write_slot(cell.buf(0), &initial);
        Ok(cell)
    }

    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words.all()[self.ctrl + i]
    }

    #[inline]
    fn version_word(&self) -> &AtomicU64 {
        self.word(VERSION)
    }

    /// How many buffers this cell has (see [`buffers_for`]).
    #[inline]
    fn buffers(&self) -> u64 {
        buffers_for(size_of::<T>()) as u64
    }

    /// The first word of buffer `b` (`b < N`): inside the body, which was
    /// sized for `T` by `cell_words` (checked at open).
    #[inline]
    fn buf_start(&self, b: usize) -> usize {
        // Cannot overflow: `cell_words` computed the whole body's size.
        let stride = stride_for(size_of::<T>()).unwrap_or(0);
        self.ctrl + CTRL_WORDS + b * stride
    }

    /// The stamp of buffer `b`.
    #[inline]
    fn stamp(&self, b: usize) -> &AtomicU64 {
        &self.words.all()[self.buf_start(b)]
    }

    /// The record words of buffer `b`.
    #[inline]
    fn buf(&self, b: usize) -> &[AtomicU64] {
        let start = self.buf_start(b) + 1;
        &self.words.all()[start..start + words_for(size_of::<T>())]
    }

    fn lock_area(&self) -> &LockArea {
        match &self.lock {
            LockHome::Heap(l) => l,
            LockHome::Segment => {
                let seg = self.words.segment().expect("a segment cell has a segment");
                // SAFETY: a cell segment's body starts with LOCK_AREA bytes
                // of lock (sized by `cell_body`, validated at open),
                // 128-aligned, alive as long as `self.words` owns `seg`;
                // LockArea is all atomics.
                unsafe { &*(seg.body_ptr() as *const LockArea) }
            }
        }
    }

    fn name_for_errors(&self) -> String {
        self.words
            .segment()
            .map_or("<in-process>", |s| s.name().unwrap_or("<anonymous>"))
            .to_owned()
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.name_for_errors(),
            detail,
        }
    }

    /// The published version, checked.
    #[inline]
    fn checked_version(&self, v: u64) -> Result<u64> {
        if v > MAX_VERSION {
            return Err(self.version_corrupt(v));
        }
        Ok(v)
    }

    /// The error of a version word past any number of stores (out of line:
    /// the load path stays small enough to inline).
    #[cold]
    #[inline(never)]
    fn version_corrupt(&self, v: u64) -> Error {
        self.corrupt(format!(
            "its version word is {v:#x}, more than any number of stores"
        ))
    }

    /// One attempt: load the version, copy its buffer, re-check its stamp.
    /// Always inlined: left to the inliner, one build of `shmkit bench` kept
    /// it out of line and its reader loop ran at a quarter of the speed of
    /// another build's with the same code (15 ns against 3-4 ns a load, a
    /// call returning the copy through memory).
    #[inline(always)]
    fn try_copy(&self) -> Result<Attempt<T>> {
        // Acquire: pairs with the Release store of `version` in `write`, so
        // the record of version v (written before it) is visible.
        let v = self.checked_version(self.version_word().load(Ordering::Acquire))?;
        let b = (v % self.buffers()) as usize;
        let rec = read_slot::<T>(self.buf(b));
        // Acquire fence: pairs with the Release fence in `write` after the
        // BUSY stamp, so if any word copied above came from a later writer
        // filling this buffer, the stamp load below sees its BUSY (or later).
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        let s = self.stamp(b).load(Ordering::Relaxed);
        Ok(if s == v {
            Attempt::Got(v, rec)
        } else {
            Attempt::Torn
        })
    }

    /// Up to `attempts` lock-free copies; `None` if every one was torn.
    fn optimistic(&self, attempts: u32) -> Result<Option<(u64, T)>> {
        for _ in 0..attempts {
            if let Attempt::Got(v, rec) = self.try_copy()? {
                return Ok(Some((v, rec)));
            }
            spin_loop();
        }
        Ok(None)
    }

    /// A copy under the lock: no writer runs, so a torn copy is garbage.
    fn copy_locked(&self, _held: &LockGuard<'_>) -> Result<(u64, T)> {
        match self.try_copy()? {
            Attempt::Got(v, rec) => Ok((v, rec)),
            Attempt::Torn => {
                // Relaxed: under the lock, only for the message.
                let v = self.version_word().load(Ordering::Relaxed);
                let b = v % self.buffers();
                let s = self.stamp(b as usize).load(Ordering::Relaxed);
                Err(self.corrupt(format!(
                    "its published buffer {b} is stamped {s:#x}, not its version {v} \
                     (and no writer is running)"
                )))
            }
        }
    }

    /// Take the writers' lock, taking over from a dead holder (counted; the
    /// dead writer's half-filled buffer needs no repair: the next store
    /// rewrites exactly that buffer).
    fn take_lock(&self, deadline: Option<Instant>) -> Result<LockGuard<'_>, CellError> {
        let area = self.lock_area();
        let r = match deadline {
            None => area.lock(),
            Some(d) => area.lock_timeout(d.saturating_duration_since(Instant::now())),
        };
        match r {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                // Relaxed: a statistic, read by `takeovers` only.
                self.word(TAKEOVERS).fetch_add(1, Ordering::Relaxed);
                g.mark_consistent();
                Ok(g)
            }
            Err(LockError::Timeout) => Err(CellError::Timeout),
            Err(LockError::WouldBlock) => Err(CellError::Timeout),
        }
    }

    /// Store `rec` as the next version; the caller holds the lock.
    fn write(&self, _held: &LockGuard<'_>, rec: &T) -> Result<u64> {
        // Relaxed: under the lock; the previous writer's store of it was
        // ordered by the lock's release/acquire (or by its observed death).
        let v = self.checked_version(self.version_word().load(Ordering::Relaxed))?;
        let n = v
            .checked_add(1)
            .filter(|&n| n <= MAX_VERSION)
            .ok_or_else(|| self.corrupt(format!("its version word {v:#x} cannot grow")))?;
        let b = (n % self.buffers()) as usize;
        // Relaxed, then the Release fence: the fence orders this BUSY stamp
        // before every record word below; pairs with the reader's Acquire
        // fence in `try_copy`.
        self.stamp(b).store(BUSY | n, Ordering::Relaxed);
        fence(Ordering::Release);
        write_slot(self.buf(b), rec);
        // Relaxed: the stamp is only re-checked by readers after their
        // Acquire load of `version` below (which this precedes).
        self.stamp(b).store(n, Ordering::Relaxed);
        // Release: publishes the record and its stamp; pairs with the
        // Acquire load of `version` in `try_copy`.
        self.version_word().store(n, Ordering::Release);
        Ok(n)
    }

    /// A consistent copy of the record: the last complete store. Lock-free
    /// unless writers keep tearing the copy (see the [module docs](self)),
    /// then it waits for the writers' lock once. `Corrupt` if the segment
    /// holds garbage.
    #[inline]
    pub fn load(&self) -> Result<T> {
        self.load_versioned().map(|(_, rec)| rec)
    }

    /// [`load`](Self::load) with the version of the record it returns.
    #[inline]
    pub fn load_versioned(&self) -> Result<(u64, T)> {
        // The first attempt inline (the common case: no writer tore it),
        // the retries and the lock out of line.
        match self.try_copy()? {
            Attempt::Got(v, rec) => Ok((v, rec)),
            Attempt::Torn => self.load_slow(),
        }
    }

    /// The rest of [`load_versioned`](Self::load_versioned) after a torn
    /// first attempt.
    #[cold]
    #[inline(never)]
    fn load_slow(&self) -> Result<(u64, T)> {
        self.load_with_attempts(ATTEMPTS - 1, None).map_err(untimed)
    }

    /// [`load`](Self::load), waiting at most `timeout` for the writers' lock
    /// if it falls back to it.
    pub fn load_timeout(&self, timeout: Duration) -> Result<T, CellError> {
        let deadline = Instant::now().checked_add(timeout);
        self.load_with_attempts(ATTEMPTS, Some(deadline.unwrap_or_else(far_future)))
            .map(|(_, rec)| rec)
    }

    /// `load_versioned` with `attempts` lock-free tries before the lock
    /// (tests and loom models use small numbers to reach the fallback).
    #[doc(hidden)]
    pub fn load_with_attempts(
        &self,
        attempts: u32,
        deadline: Option<Instant>,
    ) -> Result<(u64, T), CellError> {
        if let Some(got) = self.optimistic(attempts)? {
            return Ok(got);
        }
        let g = self.take_lock(deadline)?;
        Ok(self.copy_locked(&g)?)
    }

    /// Replace the record (waiting for the writers' lock); returns the new
    /// version. Readers see the old record or the new one, never a mix.
    pub fn store(&self, rec: &T) -> Result<u64> {
        let g = self.take_lock(None).map_err(untimed)?;
        self.write(&g, rec)
    }

    /// [`store`](Self::store), waiting at most `timeout` for the lock.
    pub fn store_timeout(&self, rec: &T, timeout: Duration) -> Result<u64, CellError> {
        let g = self.take_lock(Some(deadline_in(timeout)))?;
        Ok(self.write(&g, rec)?)
    }

    /// Read-modify-write under the writers' lock: `f` gets the current
    /// record to change; the result is stored as the next version, and `f`'s
    /// return value is handed back. Concurrent updates never lose each
    /// other's changes (Python's `with ns_lock: ns.x += 1`).
    ///
    /// ```
    /// let hits = shmkit::SharedCell::new_in_process([0u64, 0])?;
    /// let n = hits.update(|[a, b]| { *a += 1; *b += 2; *a })?;
    /// assert_eq!((n, hits.load()?), (1, [1, 2]));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let g = self.take_lock(None).map_err(untimed)?;
        self.update_locked(&g, f)
    }

    /// [`update`](Self::update), waiting at most `timeout` for the lock.
    pub fn update_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, CellError> {
        let g = self.take_lock(Some(deadline_in(timeout)))?;
        Ok(self.update_locked(&g, f)?)
    }

    fn update_locked<R>(&self, g: &LockGuard<'_>, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let (_, mut rec) = self.copy_locked(g)?;
        let out = f(&mut rec);
        self.write(g, &rec)?;
        Ok(out)
    }

    /// How many stores completed since the cell was created (the version of
    /// the record [`load`](Self::load) would return now). `Corrupt` if the
    /// word holds garbage. A caller that sees version `n` also sees
    /// everything the writer of `n` did before its store (as with `load`),
    /// so a version can announce other shared data written first.
    #[inline]
    pub fn version(&self) -> Result<u64> {
        // Acquire: pairs with the Release store of `version` in `write`, so
        // the writer's earlier writes (to anything) are visible to the
        // caller (loom: version_announces_earlier_writes).
        self.checked_version(self.version_word().load(Ordering::Acquire))
    }

    /// How many times a writer (or a reader falling back to the lock) found
    /// the writers' lock held by a dead process and took it over (wrapping).
    pub fn takeovers(&self) -> u64 {
        // Relaxed: a statistic.
        self.word(TAKEOVERS).load(Ordering::Relaxed)
    }

    /// The writers' lock state (holder, owner died, counts), for tools.
    pub fn lock_state(&self) -> crate::lock::LockState {
        self.lock_area().state()
    }

    /// The segment underneath; `None` for a cell made by
    /// [`new_in_process`](Self::new_in_process).
    pub fn segment(&self) -> Option<&Segment> {
        self.words.segment()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

fn deadline_in(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(far_future)
}

mod error;
mod layout;

#[cfg(test)]
mod tests;

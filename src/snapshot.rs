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
//! Two buffers, a stamp per buffer and a published version word, after the
//! writers' lock (the crate's own robust [`LockArea`]):
//!
//! | bytes of the body | word | meaning |
//! |---|---|---|
//! | 0..128 | lock | the writers' [`LockArea`] |
//! | 128 | `version` | how many stores completed, `0 ..= MAX_VERSION`; the record of version `v` is in buffer `v % 2` |
//! | 136, 144 | `stamp[b]` | the version whose record buffer `b` holds, or `BUSY \| n` while the writer of version `n` fills it |
//! | 152 | `takeovers` | writers (or falling-back readers) that found the lock's holder dead (wrapping) |
//! | 256.. | `buf[0]`, `buf[1]` | the record (each rounded up to 8 bytes), as atomic words (`slot::write_slot` / `read_slot`) |
//!
//! - **A writer** (holding the lock) reads `version` = `v`, sets the stamp
//!   of the *other* buffer `b = (v + 1) % 2` to `BUSY | v+1`, fences
//!   (Release), copies the record into `buf[b]`, stamps it `v + 1`, then
//!   publishes `version = v + 1` with Release. The published buffer is
//!   never written.
//! - **A reader** loads `version` (Acquire, so the record of that version
//!   is complete and visible), copies `buf[v % 2]` with per-word atomics,
//!   fences (Acquire) and re-checks that the buffer's stamp is still `v`.
//!   A later writer that wrote any word the reader copied stamped the
//!   buffer `BUSY` before (Release fence) so the re-check sees it
//!   (the seqlock argument), and the reader retries. The reader's buffer is
//!   overwritten only by the *second* write after the version it loaded, so
//!   a retry needs two stores to start during one copy; the reader never
//!   waits for a writer that is merely slow, or dead.
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
//!   stamped `BUSY` (or complete but unpublished) and the published one
//!   untouched: readers keep seeing the last complete record. The next
//!   writer finds the lock's holder dead ([`LockError::OwnerDied`]); as the
//!   buffer it is about to fill is exactly the one the dead writer left
//!   half-written, there is nothing to repair: it counts the takeover,
//!   marks the lock consistent and stores.
//! - **Untrusted words.** A version past `MAX_VERSION` (or one that a store
//!   would take there), and a published buffer whose stamp is not its
//!   version when no writer runs, are [`Error::Corrupt`]; a garbage stamp
//!   on the unpublished buffer is overwritten by the next store. A garbage
//!   record is just a record (every bit pattern of a `Pod` type is one).
//!   Nothing read from the segment is used as an index or a length.
//!
//! Why not a single-buffer seqlock: a writer killed between its two
//! sequence stores leaves an odd sequence number, and readers would spin
//! until the next writer repairs it (forever, if no writer comes); with two
//! buffers a dead writer never touches what readers read.
//!
//! What does not live here: the lock ([`crate::lock`]), the word copies
//! (`slot`), create/open (`object`). `src/cell.rs` is something else: the
//! atomic cells of arrays.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::identity::ShmType;
use crate::lock::{LOCK_AREA, LockArea, LockError, LockGuard};
use crate::object::{SegmentObject, object_api};
use crate::segment::Segment;
use crate::slot::{read_slot, words_for, write_slot};
use crate::sync::{AtomicU64, Ordering, fence, spin_loop};
use crate::words::Words;

/// Torn copies in a row after which a reader takes the writers' lock for
/// one copy (see the [module docs](self)).
pub const ATTEMPTS: u32 = 64;

/// A stamp with this bit is a buffer being filled (`BUSY | version`).
const BUSY: u64 = 1 << 63;
/// The largest version: stores past it are [`Error::Corrupt`] (2^63 stores
/// do not happen; a version that large is garbage).
const MAX_VERSION: u64 = BUSY - 1;

/// Words of the control line: version, two stamps, takeovers, padding to
/// 128 bytes so the buffers start on their own line.
const CTRL_WORDS: usize = 16;
const VERSION: usize = 0;
const STAMP: usize = 1; // and 2
const TAKEOVERS: usize = 3;

/// Words of the body before the control line in a segment: the lock.
const LOCK_WORDS: usize = (LOCK_AREA / 8) as usize;

/// Bytes of a cell body holding a record of `elem_size` bytes: the lock,
/// the control line, two buffers.
pub(crate) fn cell_body(h: &HeaderInfo) -> Option<u64> {
    if h.len != 1 || h.elem.size == 0 {
        return None;
    }
    let w = words_for(h.elem.size as usize) as u64;
    let words = (CTRL_WORDS as u64).checked_add(w.checked_mul(2)?)?;
    align_body(LOCK_AREA.checked_add(words.checked_mul(8)?)?)
}

/// Why a `_timeout` call of a [`SharedCell`] returned without its result.
#[derive(Debug)]
pub enum CellError {
    /// The writers' lock was not acquired in time (a store, an update, or a
    /// reader that fell back to the lock, see the [module docs](self)).
    Timeout,
    /// Anything else: a corrupt segment.
    Failed(Error),
}

impl From<Error> for CellError {
    fn from(e: Error) -> Self {
        CellError::Failed(e)
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellError::Timeout => f.write_str(
                "timed out waiting for the shared cell's writers' lock: other writers \
                 are storing without pause, or hold the lock for long",
            ),
            CellError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CellError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CellError::Timeout => None,
            CellError::Failed(e) => Some(e),
        }
    }
}

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
        // Fresh zeroed body: a free lock, version 0, both stamps 0; buffer
        // 0 (version 0's) gets the initial record. Nobody else sees the
        // segment before the header is published.
        let w = words_for(size_of::<T>());
        let start = LOCK_WORDS + CTRL_WORDS;
        write_slot(&body_words(seg)[start..start + w], initial);
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
            words: Words::heap(CTRL_WORDS + 2 * words_for(size_of::<T>())),
            ctrl: 0,
            lock: LockHome::Heap(Box::new(LockArea::new())),
            _t: PhantomData,
        };
        write_slot(cell.buf(0), &initial);
        Ok(cell)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words.all()[self.ctrl + i]
    }

    fn version_word(&self) -> &AtomicU64 {
        self.word(VERSION)
    }

    /// The stamp of buffer `b` (0 or 1).
    fn stamp(&self, b: usize) -> &AtomicU64 {
        self.word(STAMP + b)
    }

    /// Buffer `b` (0 or 1): `words_for(size_of::<T>())` words, inside the
    /// body (the body was sized for `T` by `cell_body`, checked at open).
    fn buf(&self, b: usize) -> &[AtomicU64] {
        let w = words_for(size_of::<T>());
        let start = self.ctrl + CTRL_WORDS + b * w;
        &self.words.all()[start..start + w]
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
    fn checked_version(&self, v: u64) -> Result<u64> {
        if v > MAX_VERSION {
            return Err(self.corrupt(format!(
                "its version word is {v:#x}, more than any number of stores"
            )));
        }
        Ok(v)
    }

    /// One attempt: load the version, copy its buffer, re-check its stamp.
    fn try_copy(&self) -> Result<Attempt<T>> {
        // Acquire: pairs with the Release store of `version` in `write`, so
        // the record of version v (written before it) is visible.
        let v = self.checked_version(self.version_word().load(Ordering::Acquire))?;
        let b = (v & 1) as usize;
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
                let s = self.stamp((v & 1) as usize).load(Ordering::Relaxed);
                Err(self.corrupt(format!(
                    "its published buffer {} is stamped {s:#x}, not its version {v} \
                     (and no writer is running)",
                    v & 1
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
        let b = (n & 1) as usize;
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
    pub fn load(&self) -> Result<T> {
        self.load_versioned().map(|(_, rec)| rec)
    }

    /// [`load`](Self::load) with the version of the record it returns.
    pub fn load_versioned(&self) -> Result<(u64, T)> {
        self.load_with_attempts(ATTEMPTS, None)
            .map_err(|e| match e {
                CellError::Failed(e) => e,
                CellError::Timeout => unreachable!("no deadline"),
            })
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

/// The body of a validated (or freshly sized) cell segment as words: the
/// lock's, the control line's and the buffers'.
fn body_words(seg: &Segment) -> &[AtomicU64] {
    let len = ((seg.info().total_size - seg.info().data_offset) / 8) as usize;
    // SAFETY: the body is `len * 8` bytes of the live mapping `seg` owns,
    // 128-aligned, and only ever accessed through atomics.
    unsafe { std::slice::from_raw_parts(seg.body_ptr() as *const AtomicU64, len) }
}

fn untimed(e: CellError) -> Error {
    match e {
        CellError::Failed(e) => e,
        CellError::Timeout => unreachable!("no deadline"),
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

/// The state of a validated cell segment, for tools: `(version, takeovers)`
/// as stored (unchecked).
pub fn state_of(seg: &Segment) -> (u64, u64) {
    let ctrl = &body_words(seg)[LOCK_WORDS..LOCK_WORDS + CTRL_WORDS];
    // Relaxed: a racy snapshot for display.
    (
        ctrl[VERSION].load(Ordering::Relaxed),
        ctrl[TAKEOVERS].load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests;

//! `SharedArray<T>`, `SharedValue<T>` and `SharedAccumulator`: Python's
//! `multiprocessing.Array`/`Value` without the lock, on a segment.
//!
//! An array dereferences to a slice of [`Atomic<T>`] cells, so every slice
//! method works (`len`, `iter`, `get`, indexing) and every cell has
//! `fetch_add` and friends. The slice's length is the one validated at open,
//! never re-read from shared memory.
//!
//! What does not live here: the cells' operations (`cell`), the lock
//! inside every array (`lock`) and create/open (`object`, `segment`).
//!
//! ```
//! use shmkit::{SharedArray, Ordering};
//! let name = format!("shmkit-doc-array-{}", std::process::id());
//! let counts = SharedArray::<u64>::create(&name, 4)?;
//! counts[2].fetch_add(5, Ordering::Relaxed);
//! // Another process: SharedArray::<u64>::open(&name)?
//! let again = SharedArray::<u64>::open(&name)?;
//! assert_eq!(again.to_vec(), [0, 0, 5, 0]);
//! # Ok::<(), shmkit::Error>(())
//! ```

use std::marker::PhantomData;
use std::ops::Deref;

use crossbeam_utils::CachePadded;

use crate::cell::{Atomic, Element};
use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::lock::{LOCK_AREA, LockArea, LockError, LockGuard};
use crate::object::{SegmentObject, object_api};
use crate::segment::{OpenOptions, Segment};
use crate::sync::Ordering;

/// An array's body: its lock (see [`SharedArray::lock`]), then the elements.
pub(crate) fn array_body(h: &HeaderInfo) -> Option<u64> {
    align_body(LOCK_AREA.checked_add(h.len.checked_mul(u64::from(h.elem.size))?)?)
}

/// A fixed-length array of atomic `T` cells in shared memory: Python's
/// `multiprocessing.Array` without the lock. It dereferences to
/// `[Atomic<T>]`, so slice methods and indexing work; the length is fixed
/// at create.
///
/// ```
/// use shmkit::{Ordering, SharedArray};
/// let name = format!("shmkit-doc-sharedarray-{}", std::process::id());
/// let hist = SharedArray::<u32>::create_from(&name, &[0; 8])?;
/// // Any process: SharedArray::<u32>::open(&name)? (or open_len to check
/// // the length too).
/// for x in [3, 5, 3] {
///     hist[x].fetch_add(1, Ordering::Relaxed);
/// }
/// assert_eq!(hist.len(), 8);
/// assert_eq!(hist[3].load(Ordering::Relaxed), 2);
/// assert_eq!(hist.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u32>(), 3);
/// // An index past the end panics, as for any slice; `get` does not.
/// assert!(hist.get(8).is_none());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedArray<T: Element> {
    seg: Segment,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: Element> SegmentObject for SharedArray<T> {
    const KIND: Kind = Kind::Array;
    type Params = usize;
    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }
    fn len_of(&len: &usize) -> Result<u64> {
        if len == 0 {
            return Err(Error::InvalidArgument {
                what: "an array needs at least 1 element, not 0".into(),
            });
        }
        Ok(len as u64)
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        array_body(h)
    }
    fn init(seg: &Segment, _: &usize) -> Result<()> {
        init_lock(seg)
    }
    fn from_segment(seg: Segment) -> Self {
        // `len` was validated against the file size by the segment layer.
        let len = seg.info().len as usize;
        SharedArray {
            seg,
            len,
            _elem: PhantomData,
        }
    }
    fn backing(&self) -> Option<&Segment> {
        Some(&self.seg)
    }
}

object_api!(impl [T: Element] SharedArray<T>, "array", (len: usize));

impl<T: Element> SharedArray<T> {
    /// Create an array holding a copy of `values`.
    pub fn create_from(name: &str, values: &[T]) -> Result<Self> {
        let arr = Self::create(name, values.len())?;
        arr.copy_from_slice(values)?;
        Ok(arr)
    }

    /// Open an existing array that must have exactly `len` elements.
    pub fn open_len(name: &str, len: usize) -> Result<Self> {
        Self::open_with(name, Some(len), &OpenOptions::default())
    }

    /// Open with explicit options (how long to wait for the creator); with
    /// `Some(len)` the array must have exactly `len` elements.
    pub fn open_with(name: &str, len: Option<usize>, opts: &OpenOptions) -> Result<Self> {
        Self::open_len_with(name, len.map(|l| l as u64), opts)
    }

    /// Start of the elements: after the lock area.
    fn elems_ptr(&self) -> *mut u8 {
        // SAFETY: the body is LOCK_AREA + len * size bytes (validated).
        unsafe { self.seg.body_ptr().add(LOCK_AREA as usize) }
    }

    /// The cells, as a slice.
    pub fn cells(&self) -> &[Atomic<T>] {
        // SAFETY: the elements hold `len` values of T's size (validated at
        // open or sized at create), are aligned to 128 bytes, and live as long
        // as `self.seg`. Atomic<T> has T's size and alignment and is valid for
        // any bit pattern of T; all access to it is atomic.
        unsafe { std::slice::from_raw_parts(self.elems_ptr() as *const Atomic<T>, self.len) }
    }

    /// Take the array's lock (Python's `get_lock()`), for multi-step updates
    /// of several elements that must not interleave with other lockers. The
    /// lock survives its holder's death: see [`crate::lock`]. Lock-free
    /// operations on the cells do not take it.
    ///
    /// ```
    /// use shmkit::SharedArray;
    /// let name = format!("shmkit-doc-getlock-{}", std::process::id());
    /// let balances = SharedArray::<i64>::create_from(&name, &[100, 0])?;
    /// let guard = balances.lock().map_err(|e| e.to_string())?;
    /// guard.update(|b| { b[0] -= 30; b[1] += 30; }); // both, or neither seen
    /// drop(guard);
    /// assert_eq!(balances.to_vec(), [70, 30]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.guard(self.lock_area().lock())
    }

    /// Take the lock if it is free now.
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.guard(self.lock_area().try_lock())
    }

    /// Take the lock, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.guard(self.lock_area().lock_timeout(timeout))
    }

    /// Holder, owner-died flag and hand-offs of the array's lock.
    pub fn lock_state(&self) -> crate::lock::LockState {
        self.lock_area().state()
    }

    #[inline]
    fn lock_area(&self) -> &LockArea {
        // SAFETY: the body starts with LOCK_AREA bytes of lock (validated),
        // 128-aligned, alive as long as `self.seg`; LockArea is all atomics.
        unsafe { &*(self.seg.body_ptr() as *const LockArea) }
    }

    #[inline]
    fn guard<'a>(
        &'a self,
        r: Result<LockGuard<'a>, LockError<LockGuard<'a>>>,
    ) -> Result<ArrayGuard<'a, T>, LockError<ArrayGuard<'a, T>>> {
        let wrap = |guard| ArrayGuard {
            guard,
            cells: self.cells(),
        };
        r.map(wrap).map_err(|e| e.map(wrap))
    }

    /// Copy out every element (Acquire loads).
    pub fn to_vec(&self) -> Vec<T> {
        self.values().collect()
    }

    /// The elements' current values, one Acquire load each.
    pub fn values(&self) -> impl Iterator<Item = T> + '_ {
        self.cells().iter().map(|c| c.load(Ordering::Acquire))
    }

    /// Store `src` element by element (Release stores). Fails if the lengths
    /// differ. Not one atomic snapshot: a concurrent reader may see a mix.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::InvalidArgument {
                what: format!(
                    "copy_from_slice: {} values into an array of {}",
                    src.len(),
                    self.len
                ),
            });
        }
        for (c, &v) in self.cells().iter().zip(src) {
            // Release: pairs with the Acquire loads in `values`/`to_vec`.
            c.store(v, Ordering::Release);
        }
        Ok(())
    }

    /// Store `v` into every element (Release stores).
    pub fn fill(&self, v: T) {
        for c in self.cells() {
            // Release: pairs with the Acquire loads in `values`/`to_vec`.
            c.store(v, Ordering::Release);
        }
    }

    /// View the array as a plain `&[T]`, for bulk reads at full speed.
    ///
    /// # Safety
    /// No thread or process may write to the array while the returned slice
    /// is alive (otherwise the reads race with the writes: undefined
    /// behaviour). Typical use: a phase after every writer finished, ordered
    /// by a join, a lock, or an Acquire load of a flag the writers Released.
    pub unsafe fn as_slice_unsync(&self) -> &[T]
    where
        T: bytemuck::Pod,
    {
        // SAFETY: same region as `cells`; the caller promises no concurrent
        // writes, so plain reads do not race. bytemuck checks size/alignment.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.elems_ptr() as *const u8, self.len * size_of::<T>())
        };
        bytemuck::cast_slice(bytes)
    }

    /// View the array as a plain `&mut [T]`, for in-place number crunching
    /// (the numpy-on-SharedMemory case) without atomic operations.
    ///
    /// # Safety
    /// While the returned slice (or any slice from it) is alive, nothing else
    /// may read or write the same elements: not another process, thread, or
    /// call of this method. Disjoint ranges (`split_at_mut`, or each process
    /// working on its own range) are fine.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice_unsync(&self) -> &mut [T]
    where
        T: bytemuck::Pod,
    {
        // SAFETY: same region as `cells`; the caller promises exclusive access
        // to the elements it touches, so `&mut` aliases nothing live.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.elems_ptr(), self.len * size_of::<T>()) };
        bytemuck::cast_slice_mut(bytes)
    }

    /// The segment underneath: its name and validated header copy
    /// ([`Segment::info`]).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: Element> Deref for SharedArray<T> {
    type Target = [Atomic<T>];
    fn deref(&self) -> &[Atomic<T>] {
        self.cells()
    }
}

pub(crate) fn init_lock(seg: &Segment) -> Result<()> {
    // SAFETY: the body starts with LOCK_AREA bytes reserved for the lock,
    // 128-aligned, zeroed, not yet visible to any other process.
    unsafe { &*(seg.body_ptr() as *const LockArea) }.init()
}

/// Holds an array's lock; dereferences to the cells. Dropping it unlocks.
///
/// The cells stay atomics while locked, so a process that writes without
/// taking the lock causes lost updates, never undefined behaviour.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element> {
    guard: LockGuard<'a>,
    cells: &'a [Atomic<T>],
}

impl<T: Element> ArrayGuard<'_, T> {
    /// Copy every value out, let `f` change the copy, and write it back: the
    /// multi-element read-modify-write that needs the lock. (Relaxed loads
    /// and stores: the lock orders them.)
    pub fn update<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut vals: Vec<T> = self
            .cells
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let r = f(&mut vals);
        for (c, v) in self.cells.iter().zip(vals) {
            c.store(v, Ordering::Relaxed);
        }
        r
    }

    /// Mark the data consistent after repairing what a dead holder left.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent();
    }

    /// Whether a dead holder's data still awaits repair.
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

impl<T: Element> Deref for ArrayGuard<'_, T> {
    type Target = [Atomic<T>];
    fn deref(&self) -> &[Atomic<T>] {
        self.cells
    }
}

/// One shared atomic value: an array of length one that dereferences to its
/// [`Atomic<T>`] cell. Python's `Value('i', 0)` is
/// `SharedValue::<i32>::create(name, 0)`.
///
/// ```
/// use shmkit::{SharedValue, Ordering};
/// let name = format!("shmkit-doc-value-{}", std::process::id());
/// let hits = SharedValue::<u64>::create(&name, 0)?;
/// hits.fetch_add(1, Ordering::Relaxed); // no lock, in any process
/// assert_eq!(hits.load(Ordering::Relaxed), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedValue<T: Element> {
    arr: SharedArray<T>,
}

/// A value is an array of exactly one element, made with its first value.
impl<T: Element> SegmentObject for SharedValue<T> {
    const KIND: Kind = Kind::Array;
    const FIXED_LEN: Option<u64> = Some(1);
    type Params = T;
    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }
    fn len_of(_: &T) -> Result<u64> {
        Ok(1)
    }
    /// An array of another length is not a value: say so, not "open it with
    /// its length".
    fn open_error(e: Error) -> Error {
        match e {
            Error::WrongLength { name, found, .. } => Error::WrongKind {
                name,
                found: format!("array of {found} elements"),
                expected: "value",
            },
            e => e,
        }
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        array_body(h)
    }
    fn init(seg: &Segment, &initial: &T) -> Result<()> {
        init_lock(seg)?;
        // SAFETY: the body is the lock, then one T (sized so), 128-aligned,
        // zeroed, not yet visible to any other process; Atomic<T> has T's
        // size and alignment. The header's Release publishes the store.
        let cell = unsafe { &*(seg.body_ptr().add(LOCK_AREA as usize) as *const Atomic<T>) };
        cell.store(initial, Ordering::Relaxed);
        Ok(())
    }
    fn from_segment(seg: Segment) -> Self {
        SharedValue {
            arr: SharedArray::from_segment(seg),
        }
    }
    fn backing(&self) -> Option<&Segment> {
        Some(&self.arr.seg)
    }
}

object_api!(impl [T: Element] SharedValue<T>, "value", (initial: T), open_with);

impl<T: Element> SharedValue<T> {
    /// The segment underneath.
    pub fn segment(&self) -> &Segment {
        self.arr.segment()
    }
}

impl<T: Element> Deref for SharedValue<T> {
    type Target = Atomic<T>;
    fn deref(&self) -> &Atomic<T> {
        // The array has exactly one element (checked at create/open).
        &self.arr.cells()[0]
    }
}

type Stripe = CachePadded<Atomic<f64>>;

pub(crate) fn accumulator_body(h: &HeaderInfo) -> Option<u64> {
    if h.len == 0 || h.elem.size as usize != size_of::<Stripe>() {
        return None;
    }
    align_body(h.len.checked_mul(u64::from(h.elem.size))?)
}

/// A float sum that many processes add to without contending: one padded
/// cell per writer ("stripe"), summed on read.
///
/// A CAS loop on one shared `f64` retries whenever another writer got in
/// first, and the cache line bounces between cores on every add; with a
/// stripe per writer each add is an uncontended CAS on a line the writer
/// keeps. Reading costs one load per stripe. The sum read while writers are
/// active is a sum of each stripe's value at some moment, not one snapshot.
///
/// ```
/// use shmkit::SharedAccumulator;
/// let name = format!("shmkit-doc-acc-{}", std::process::id());
/// let acc = SharedAccumulator::create(&name, 4)?;
/// acc.add_at(0, 1.5);
/// acc.add_at(3, 2.25);
/// assert_eq!(acc.sum(), 3.75);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedAccumulator {
    seg: Segment,
    stripes: usize,
}

impl SegmentObject for SharedAccumulator {
    const KIND: Kind = Kind::Accumulator;
    type Params = usize;
    fn elem() -> ElemDesc {
        ElemDesc::internal::<Stripe>("shmkit.Stripe")
    }
    fn len_of(&stripes: &usize) -> Result<u64> {
        if stripes == 0 || stripes > 1 << 16 {
            return Err(Error::InvalidArgument {
                what: format!("an accumulator needs 1 to 65536 stripes, not {stripes}"),
            });
        }
        Ok(stripes as u64)
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        accumulator_body(h)
    }
    fn from_segment(seg: Segment) -> Self {
        let stripes = seg.info().len as usize;
        SharedAccumulator { seg, stripes }
    }
    fn backing(&self) -> Option<&Segment> {
        Some(&self.seg)
    }
}

object_api!(impl [] SharedAccumulator, "accumulator", (stripes: usize), open_with);

impl SharedAccumulator {
    fn cells(&self) -> &[Stripe] {
        // SAFETY: the body holds `stripes` padded cells (validated), aligned
        // to 128 bytes, alive as long as `self.seg`; all access is atomic.
        unsafe { std::slice::from_raw_parts(self.seg.body_ptr() as *const Stripe, self.stripes) }
    }

    /// Number of stripes.
    pub fn stripes(&self) -> usize {
        self.stripes
    }

    /// Add `v` to stripe `stripe % stripes()` (give each writer its own).
    /// Release: pairs with the Acquire loads in [`sum`](Self::sum).
    pub fn add_at(&self, stripe: usize, v: f64) {
        self.cells()[stripe % self.stripes].fetch_add(v, Ordering::Release);
    }

    /// Add `v` to a stripe chosen from the calling process's pid.
    pub fn add(&self, v: f64) {
        self.add_at(std::process::id() as usize, v)
    }

    /// The sum of all stripes (Acquire loads, pairing with `add_at`).
    pub fn sum(&self) -> f64 {
        self.cells().iter().map(|c| c.load(Ordering::Acquire)).sum()
    }

    /// The segment underneath.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

//! `RecordArray<T>`: Python's `multiprocessing.Array` of a ctypes
//! `Structure`, a fixed-length array of `#[repr(C)]` records
//! ([`record!`](crate::record)) in shared memory, copied in and out whole.
//!
//! ```
//! shmkit::record! {
//!     #[name = "demo.Slot/1"]
//!     #[derive(Debug, PartialEq)]
//!     pub struct Slot { pub pid: u32, pub state: u32, pub progress: f64 }
//! }
//! use shmkit::RecordArray;
//! let name = format!("shmkit-doc-records-{}", std::process::id());
//! let table = RecordArray::<Slot>::create(&name, 4)?;
//! // Another process: RecordArray::<Slot>::open(&name)?, with the same
//! // #[name] and layout (checked, see `shmkit::identity`).
//! table.set(2, Slot { pid: 77, state: 1, progress: 0.5 })?;
//! assert_eq!(table.get(2), Some(Slot { pid: 77, state: 1, progress: 0.5 }));
//! assert_eq!(table.get(4), None);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # What a concurrent reader sees
//!
//! A record is copied as a run of atomic accesses: one per number field
//! (its own size), and arrays and other byte runs in the widest aligned
//! accesses (at most 8 bytes). So there is no undefined behaviour whatever
//! other processes do at the same time. But a record is not one atomic
//! value: a [`get`](RecordArray::get) that races a [`set`](RecordArray::set)
//! of the same record can return some fields of the old record and some of
//! the new one. When readers need a record consistent as a whole, either
//! take the array's [`lock`](RecordArray::lock) around the writes and the
//! reads, or keep the record in a `SharedCell` (a seqlock: lock-free
//! consistent snapshots).
//!
//! # Per-field atomics
//!
//! A number field of a record (not an element of an array field) is also an
//! [`Atomic`] cell of its own, with `fetch_add` and friends:
//! [`field`](RecordArray::field) checks against the record's description
//! that a field of that type starts at that offset. Because the copies
//! touch that field with an access of the same size, mixing the two is
//! allowed by Rust's memory model (racing atomic writes of different sizes
//! to the same bytes would not be). A `set` racing a `fetch_add` on the same
//! record: one of them lands last for that field (the add may be lost);
//! use the lock when that matters.
//!
//! ```
//! shmkit::record! {
//!     #[name = "demo.Worker/1"]
//!     pub struct Worker { pub pid: u32, pub done: u32, pub busy_ns: u64 }
//! }
//! use shmkit::{Ordering, RecordArray};
//! use std::mem::offset_of;
//! let workers = RecordArray::<Worker>::create_anonymous(4)?;
//! let done = workers.field::<u32>(1, offset_of!(Worker, done))?;
//! done.fetch_add(3, Ordering::Relaxed); // lock-free, from any process
//! assert_eq!(workers.get(1).map(|w| w.done), Some(3));
//! // Another type, or an offset that is not a field's start: refused.
//! assert!(workers.field::<u64>(1, offset_of!(Worker, done)).is_err());
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! The layout is an array's (a lock, then the records back to back), so
//! `RecordArray<u64>` and `SharedArray<u64>` open each other's segments.
//! What does not live here: the identity check (`identity`, `header`), the
//! lock (`lock`) and create/open (`object`).

use std::marker::PhantomData;

use crate::array::{array_body, init_lock};
use crate::cell::{Atomic, Element};
use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind};
use crate::identity::{ShmType, TypeInfo};
use crate::lock::{LOCK_AREA, LockArea, LockError, LockGuard};
use crate::object::{SegmentObject, object_api};
use crate::segment::Segment;
use crate::sync::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// A fixed-length array of records in shared memory, each copied in and out
/// whole (see the [module docs](self) for what a racing reader sees).
#[derive(Debug)]
pub struct RecordArray<T: ShmType> {
    seg: Segment,
    len: usize,
    /// How one record is copied ([`plan`]).
    plan: Box<[Access]>,
    _elem: PhantomData<T>,
}

impl<T: ShmType> SegmentObject for RecordArray<T> {
    const KIND: Kind = Kind::Array;
    type Params = usize;
    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }
    fn len_of(&len: &usize) -> Result<u64> {
        if len == 0 {
            return Err(Error::InvalidArgument {
                what: "a record array needs at least 1 record, not 0".into(),
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
        RecordArray {
            seg,
            len,
            plan: plan::<T>(),
            _elem: PhantomData,
        }
    }
    fn backing(&self) -> Option<&Segment> {
        Some(&self.seg)
    }
}

object_api!(impl [T: ShmType] RecordArray<T>, "record array", (len: usize), open_with);

/// One atomic access of a record copy: `width` bytes (1, 2, 4 or 8) at
/// `offset` from the record's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    offset: usize,
    width: usize,
}

/// How a record of `T` is copied: one access per scalar field of a record
/// (so that a field's own atomic, see `field`, and the copies touch its
/// bytes with the same size), every other run of bytes (arrays, opaque
/// types) in the widest accesses its alignment allows. Falls back to
/// uniform accesses if the type's description does not tile the record
/// (a hand-written `TypeInfo` that is wrong).
fn plan<T: ShmType>() -> Box<[Access]> {
    let (size, a) = (size_of::<T>(), align_of::<T>().min(8));
    let mut out = Vec::new();
    walk(T::TYPE, 0, a, &mut out);
    out.sort_by_key(|x| x.offset);
    let mut next = 0;
    let tiles = out.iter().all(|x| {
        let ok = x.offset == next && x.width <= a && x.offset.is_multiple_of(x.width);
        next = x.offset.saturating_add(x.width);
        ok
    }) && next == size;
    if !tiles {
        out = chunks(0, size, a);
    }
    out.into_boxed_slice()
}

/// The accesses of a value of type `ty` at `base` in a record whose start
/// is aligned to `a` (at most 8).
fn walk(ty: &TypeInfo, base: usize, a: usize, out: &mut Vec<Access>) {
    let size = ty.size();
    let end = base.saturating_add(size);
    if ty.is_scalar() && size <= a && matches!(size, 1 | 2 | 4 | 8) && base.is_multiple_of(size) {
        out.push(Access {
            offset: base,
            width: size,
        });
    } else if !ty.fields().is_empty() {
        for f in ty.fields() {
            walk(f.ty(), base.saturating_add(f.offset()), a, out);
        }
    } else {
        out.extend(chunks(base, end, a));
    }
}

/// `[start, end)` in the widest accesses that are aligned (to at most `a`)
/// and fit.
fn chunks(start: usize, end: usize, a: usize) -> Vec<Access> {
    let mut out = Vec::new();
    let mut p = start;
    while p < end {
        let width = [8, 4, 2, 1]
            .into_iter()
            .find(|&w| w <= a && p.is_multiple_of(w) && p + w <= end)
            .unwrap_or(1);
        out.push(Access { offset: p, width });
        p += width;
    }
    out
}

/// The scalar field of a record of type `ty` that starts at byte `offset`
/// (looking into nested records, not into arrays).
fn scalar_field_at(ty: &TypeInfo, offset: usize) -> Option<&'static TypeInfo> {
    ty.fields().iter().find_map(|f| {
        let inside = offset.checked_sub(f.offset())?;
        if inside >= f.ty().size() {
            None
        } else if inside == 0 && f.ty().is_scalar() {
            Some(f.ty())
        } else {
            scalar_field_at(f.ty(), inside)
        }
    })
}

impl<T: ShmType> RecordArray<T> {
    /// Create an array holding a copy of `records`.
    pub fn create_from(name: &str, records: &[T]) -> Result<Self> {
        let arr = Self::create(name, records.len())?;
        for (i, r) in records.iter().enumerate() {
            arr.set(i, *r)?;
        }
        Ok(arr)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an array has at least one record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Record `i`'s address; `i < len`.
    fn record_ptr(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.len);
        // SAFETY: the body is LOCK_AREA + len * size bytes (validated at
        // open, sized at create), so record i < len is inside it.
        unsafe {
            self.seg
                .body_ptr()
                .add(LOCK_AREA as usize + i * size_of::<T>())
        }
    }

    /// A copy of record `i` (Acquire loads: pairs with the Release stores
    /// of [`set`](Self::set)), `None` past the end. Racing a `set` of the
    /// same record, it may mix the two (see the [module docs](self)).
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let rec = self.record_ptr(i);
        let mut out = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut out);
        for &acc in self.plan.iter() {
            let dst = &mut bytes[acc.offset..acc.offset + acc.width];
            // SAFETY: the plan tiles the record with accesses aligned to
            // their width (checked in `plan`) and the record (i < len,
            // checked above) starts aligned to T's alignment (the body is
            // 128-aligned, records are T-sized), so each access is an
            // aligned atomic inside the live mapping.
            unsafe { load(rec, acc, dst) };
        }
        Some(out)
    }

    /// Store `record` as record `i` (Release stores: pair with the Acquire
    /// loads of [`get`](Self::get)). `InvalidArgument` past the end.
    pub fn set(&self, i: usize, record: T) -> Result<()> {
        if i >= self.len {
            return Err(Error::InvalidArgument {
                what: format!(
                    "record index {i} is past the end of a record array of {}",
                    self.len
                ),
            });
        }
        let rec = self.record_ptr(i);
        let bytes = bytemuck::bytes_of(&record);
        for &acc in self.plan.iter() {
            let src = &bytes[acc.offset..acc.offset + acc.width];
            // SAFETY: as in `get`.
            unsafe { store(rec, acc, src) };
        }
        Ok(())
    }

    /// The number field of record `i` that starts at byte `offset` (use
    /// `std::mem::offset_of!`), as an atomic cell: see the [module
    /// docs](self). `InvalidArgument` if `i` is past the end, or if the
    /// record has no field of type `U` starting there (fields inside array
    /// fields are not cells).
    pub fn field<U: Element>(&self, i: usize, offset: usize) -> Result<&Atomic<U>> {
        if i >= self.len {
            return Err(Error::InvalidArgument {
                what: format!(
                    "record index {i} is past the end of a record array of {}",
                    self.len
                ),
            });
        }
        let found = scalar_field_at(T::TYPE, offset);
        let own = self.plan.contains(&Access {
            offset,
            width: size_of::<U>(),
        });
        if found.is_none_or(|t| t != U::TYPE) || !own {
            return Err(Error::InvalidArgument {
                what: format!(
                    "record {} has no {} field starting at byte {offset}: its fields are {}",
                    T::TYPE.name(),
                    U::TYPE.name(),
                    T::TYPE.describe()
                ),
            });
        }
        // SAFETY: a field of type U starts at `offset` of record i (checked
        // against T's description just above), is accessed by the copies
        // with one access of U's size (in the plan), and is aligned (the
        // plan's accesses are); Atomic<U> has U's size and alignment and
        // all access to it is atomic. It lives as long as `self.seg`.
        Ok(unsafe { &*(self.record_ptr(i).add(offset) as *const Atomic<U>) })
    }

    /// Copy out every record, one [`get`](Self::get) each.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).filter_map(|i| self.get(i)).collect()
    }

    /// Take the array's lock (Python's `get_lock()`), for a read-modify-write
    /// of records that must not interleave with other lockers, or for reads
    /// that must see whole records: hold it around the `get`s and `set`s.
    /// It survives its holder's death: see [`crate::lock`].
    ///
    /// ```
    /// # shmkit::record! {
    /// #     #[name = "demo.Acct/1"]
    /// #     pub struct Acct { pub balance: i64, pub ops: u64 }
    /// # }
    /// let accts = shmkit::RecordArray::<Acct>::create_anonymous(2)?;
    /// {
    ///     let _held = accts.lock().map_err(|e| e.to_string())?;
    ///     let mut a = accts.get(0).unwrap();
    ///     a.balance += 10;
    ///     a.ops += 1;
    ///     accts.set(0, a)?;
    /// }
    /// assert_eq!(accts.get(0).map(|a| (a.balance, a.ops)), Some((10, 1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock_area().lock()
    }

    /// Take the lock if it is free now.
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock_area().try_lock()
    }

    fn lock_area(&self) -> &LockArea {
        // SAFETY: the body starts with LOCK_AREA bytes of lock (validated),
        // 128-aligned, alive as long as `self.seg`; LockArea is all atomics.
        unsafe { &*(self.seg.body_ptr() as *const LockArea) }
    }

    /// The segment underneath: its name and validated header copy.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// Copy access `acc` of the record at `rec` into `dst` (`acc.width`
/// bytes). Acquire: pairs with the Release stores of [`store`] (from `set`)
/// and with the field cells' writers, so a record read after a lock (or
/// any other Acquire) sees what was written before it.
///
/// # Safety
/// `rec + acc.offset` must be aligned to `acc.width` (1, 2, 4 or 8) inside
/// a live mapping whose bytes there are only accessed atomically, with that
/// width.
unsafe fn load(rec: *mut u8, acc: Access, dst: &mut [u8]) {
    // SAFETY: the caller's promise.
    let p = unsafe { rec.add(acc.offset) };
    let o = Ordering::Acquire;
    // SAFETY: in each arm `p` is an aligned atomic of that width (the
    // caller's promise).
    unsafe {
        match acc.width {
            8 => dst.copy_from_slice(&(*(p as *const AtomicU64)).load(o).to_ne_bytes()),
            4 => dst.copy_from_slice(&(*(p as *const AtomicU32)).load(o).to_ne_bytes()),
            2 => dst.copy_from_slice(&(*(p as *const AtomicU16)).load(o).to_ne_bytes()),
            _ => dst.copy_from_slice(&(*(p as *const AtomicU8)).load(o).to_ne_bytes()),
        }
    }
}

/// Copy `src` (`acc.width` bytes) into access `acc` of the record at `rec`.
/// Release: pairs with the Acquire loads of [`load`] (from `get`).
///
/// # Safety
/// As for [`load`].
unsafe fn store(rec: *mut u8, acc: Access, src: &[u8]) {
    // SAFETY: the caller's promise.
    let p = unsafe { rec.add(acc.offset) };
    let o = Ordering::Release;
    // SAFETY: as in `load`.
    unsafe {
        match acc.width {
            8 => (*(p as *const AtomicU64)).store(u64::from_ne_bytes(word(src)), o),
            4 => (*(p as *const AtomicU32)).store(u32::from_ne_bytes(word(src)), o),
            2 => (*(p as *const AtomicU16)).store(u16::from_ne_bytes(word(src)), o),
            _ => (*(p as *const AtomicU8)).store(u8::from_ne_bytes(word(src)), o),
        }
    }
}

/// `src` (exactly N bytes, from a plan access of width N) as an array.
fn word<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(src);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::record! {
        #[name = "t.Tick/1"]
        #[allow(dead_code)]
        struct Tick { px: f64, qty: u32, side: u8, pad: [u8; 3] }
    }

    crate::record! {
        #[name = "t.Outer/1"]
        #[allow(dead_code)]
        struct Outer { tag: u16, bytes: [u8; 6], inner: Tick, n: [u32; 2] }
    }

    fn accesses<T: ShmType>() -> Vec<(usize, usize)> {
        plan::<T>().iter().map(|a| (a.offset, a.width)).collect()
    }

    #[test]
    fn numbers_get_their_own_access_byte_runs_the_widest() {
        assert_eq!(
            accesses::<Tick>(),
            [(0, 8), (8, 4), (12, 1), (13, 1), (14, 2)]
        );
        assert_eq!(
            accesses::<Outer>(),
            [
                (0, 2),
                (2, 2),
                (4, 4),
                (8, 8),
                (16, 4),
                (20, 1),
                (21, 1),
                (22, 2),
                (24, 8)
            ]
        );
        assert_eq!(accesses::<[u8; 3]>(), [(0, 1), (1, 1), (2, 1)]);
        assert_eq!(accesses::<u128>(), [(0, 8), (8, 8)]);
    }

    #[test]
    fn fields_are_found_by_offset_and_type() {
        let at = |off| scalar_field_at(Outer::TYPE, off).map(|t| t.name());
        assert_eq!(at(0).as_deref(), Some("u16"));
        assert_eq!(at(8).as_deref(), Some("f64"));
        assert_eq!(at(16).as_deref(), Some("u32"));
        assert_eq!(at(20).as_deref(), Some("u8"));
        assert_eq!(at(2), None, "inside an array");
        assert_eq!(at(9), None, "inside a field");
        assert_eq!(at(24), None, "an array field");
        assert_eq!(at(99), None);
    }
}

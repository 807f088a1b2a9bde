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
//! A record is copied as a run of atomic words, each as wide as the
//! record's alignment (at most 8 bytes): no undefined behaviour whatever
//! other processes do at the same time. But a record is not one atomic
//! value: a [`get`](RecordArray::get) that races a [`set`](RecordArray::set)
//! of the same record can return some words of the old record and some of
//! the new one (fields from two updates). When readers need a record
//! consistent as a whole, either take the array's [`lock`](RecordArray::lock)
//! around the writes and the reads, or keep the record in a `SharedCell`
//! (a seqlock: lock-free consistent snapshots).
//!
//! There is no per-field atomic access (`arr.qty(i).fetch_add(..)`): a
//! field's own atomic would race the whole-record copies with accesses of
//! another size, which Rust's memory model does not allow for writes. Use
//! a [`SharedArray`](crate::SharedArray) of the field's type for a counter
//! that needs `fetch_add`.
//!
//! The layout is an array's (a lock, then the records back to back), so
//! `RecordArray<u64>` and `SharedArray<u64>` open each other's segments.
//! What does not live here: the identity check (`identity`, `header`), the
//! lock (`lock`) and create/open (`object`).

use std::marker::PhantomData;

use crate::array::{array_body, init_lock};
use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind};
use crate::identity::ShmType;
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
            _elem: PhantomData,
        }
    }
    fn backing(&self) -> Option<&Segment> {
        Some(&self.seg)
    }
}

object_api!(impl [T: ShmType] RecordArray<T>, "record array", (len: usize), open_with);

/// Copy `size_of::<T>() / W` atomics of width `W` between a record in shared
/// memory and a local value, for each width a record's alignment can give.
macro_rules! copy_as {
    ($atom:ty, $w:literal, $rec:expr, $bytes:expr, load $o:expr) => {
        for (i, chunk) in $bytes.chunks_exact_mut($w).enumerate() {
            // SAFETY: the record is aligned to at least $w (T's alignment,
            // and the body is 128-aligned), its size a multiple of $w, so
            // each chunk is an aligned $w-byte atomic inside it.
            let a = unsafe { &*($rec.add(i * $w) as *const $atom) };
            chunk.copy_from_slice(&a.load($o).to_ne_bytes());
        }
    };
    ($atom:ty, $int:ty, $w:literal, $rec:expr, $bytes:expr, store $o:expr) => {
        for (i, chunk) in $bytes.chunks_exact($w).enumerate() {
            // SAFETY: as for the loads.
            let a = unsafe { &*($rec.add(i * $w) as *const $atom) };
            // `chunks_exact` hands out exactly $w bytes: the conversion holds.
            let word = <[u8; $w]>::try_from(chunk).map_or(0, <$int>::from_ne_bytes);
            a.store(word, $o);
        }
    };
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
        // Acquire: pairs with the Release stores of `set`, so a record read
        // after a lock (or any other Acquire) sees what was written before.
        match align_of::<T>() {
            1 => copy_as!(AtomicU8, 1, rec, bytes, load Ordering::Acquire),
            2 => copy_as!(AtomicU16, 2, rec, bytes, load Ordering::Acquire),
            4 => copy_as!(AtomicU32, 4, rec, bytes, load Ordering::Acquire),
            _ => copy_as!(AtomicU64, 8, rec, bytes, load Ordering::Acquire),
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
        // Release: pairs with the Acquire loads of `get`.
        match align_of::<T>() {
            1 => copy_as!(AtomicU8, u8, 1, rec, bytes, store Ordering::Release),
            2 => copy_as!(AtomicU16, u16, 2, rec, bytes, store Ordering::Release),
            4 => copy_as!(AtomicU32, u32, 4, rec, bytes, store Ordering::Release),
            _ => copy_as!(AtomicU64, u64, 8, rec, bytes, store Ordering::Release),
        }
        Ok(())
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

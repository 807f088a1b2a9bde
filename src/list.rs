//! Python's `Manager().list()` without a server process: an append-only
//! list in shared memory, lock-free. (The map is in [`crate::map`].)
//!
//! ```
//! use shmkit::list::SharedList;
//! let tag = std::process::id();
//! let list = SharedList::<u64>::create(&format!("shmkit-doc-list-{tag}"), 100)?;
//! let i = list.push(42)?;
//! assert_eq!(list.get(i), Some(42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `push` claims an index with `fetch_add` on a shared counter, writes the
//! value's words, then stores the slot's state with Release. Readers load the
//! state with Acquire and skip a slot that is not published yet, so they
//! never see a half-written value. A writer killed between claim and
//! publish leaves a permanent hole that readers skip.

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::identity::ShmType;
use crate::object::{SegmentObject, object_api};
use crate::segment::Segment;
use crate::slot::{read_slot, words_for, write_slot};
use crate::sync::{AtomicU64, Ordering};
use crate::words::Words;

/// Words per list slot: state, then the value.
const fn list_slot_words(size: usize) -> usize {
    1 + words_for(size)
}
/// Words before the list's slots: the claim counter on its own line.
const LIST_HEAD_WORDS: usize = 16;

/// An append-only list in shared memory. See the [module docs](self).
///
/// Items are any [`Pod`] type; `capacity` (1 to 2^30) is fixed at create.
///
/// ```
/// use shmkit::list::{ListFull, SharedList};
/// let name = format!("shmkit-doc-sharedlist-{}", std::process::id());
/// let log = SharedList::<[u32; 2]>::create(&name, 2)?;
/// // In any process: SharedList::<[u32; 2]>::open(&name)?
/// assert_eq!(log.push([1, 10])?, 0);
/// assert_eq!(log.push([2, 20])?, 1);
/// // Full: the value comes back.
/// assert_eq!(log.push([3, 30]), Err(ListFull([3, 30])));
/// assert_eq!(log.to_vec(), [[1, 10], [2, 20]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `Send` and `Sync` when `T: Send`: a value pushed by one thread is read
/// by another, so a list of a type that may not cross threads may not
/// either.
///
/// ```compile_fail
/// # use std::marker::PhantomData;
/// // Plain bytes, but tied to its thread (like a `MutexGuard`'s data).
/// #[derive(Clone, Copy)]
/// #[repr(transparent)]
/// struct ThreadBound(u64, PhantomData<*const u8>);
/// unsafe impl bytemuck::Zeroable for ThreadBound {}
/// unsafe impl bytemuck::Pod for ThreadBound {}
/// fn shared_between_threads<S: Send + Sync>() {}
/// shared_between_threads::<shmkit::list::SharedList<ThreadBound>>();
/// ```
#[derive(Debug)]
pub struct SharedList<T> {
    words: Words,
    cap: usize,
    /// Invariant in `T`, and neither `Send` nor `Sync` by itself: the
    /// impls below say when the list is.
    _t: PhantomData<*mut T>,
}

// SAFETY: the list owns no `T`, only atomic words (`Words` is Send + Sync);
// items cross threads by copy, pushed by one and read by another, which
// is sending a `T`, so `T: Send` is required, and enough.
unsafe impl<T: Send> Send for SharedList<T> {}
// SAFETY: as above: through `&SharedList` a `T` moves between threads by
// copy; no `&T` into the list is ever handed out, so `T: Sync` is not needed.
unsafe impl<T: Send> Sync for SharedList<T> {}

/// `push` on a full list; hands the value back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFull<T>(pub T);

impl<T> std::fmt::Display for ListFull<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the list is full: create it with a larger capacity")
    }
}

impl<T: std::fmt::Debug> std::error::Error for ListFull<T> {}

impl<T: Pod> SharedList<T> {
    fn check(capacity: usize) -> Result<()> {
        if capacity == 0 || capacity > 1 << 30 {
            return Err(Error::InvalidArgument {
                what: format!("list capacity {capacity} must be from 1 to 2^30"),
            });
        }
        if size_of::<T>() == 0 {
            return Err(Error::InvalidArgument {
                what: "list items must not be zero-sized".into(),
            });
        }
        Ok(())
    }

    /// A list on the heap, for threads of one process (and loom models).
    pub fn new_in_process(capacity: usize) -> Result<Self> {
        Self::check(capacity)?;
        let w = LIST_HEAD_WORDS + capacity * list_slot_words(size_of::<T>());
        Ok(SharedList {
            words: Words::heap(w),
            cap: capacity,
            _t: PhantomData,
        })
    }

    fn claimed(&self) -> &AtomicU64 {
        &self.words.all()[0]
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        let sw = list_slot_words(size_of::<T>());
        let start = LIST_HEAD_WORDS + i * sw;
        &self.words.all()[start..start + sw]
    }

    /// Append `v`; returns its index. `ListFull(v)` once capacity is used.
    pub fn push(&self, v: T) -> std::result::Result<usize, ListFull<T>> {
        // Claim the next index, never counting past the capacity: a
        // fetch_add would keep counting on a full list and, from a counter
        // that garbage set near u64::MAX, wrap to 0 and overwrite entry 0.
        // Relaxed: the counter only hands out indices; the slot's own state
        // word publishes the value.
        // CAS first (from 0) rather than load-then-CAS: the failed CAS
        // returns the count, and loom 0.7 under-explores a load of a word
        // followed by a CAS of it (the map's insert does the same), which
        // hid a weakened publication here.
        let claimed = self.claimed();
        let mut i = 0;
        loop {
            if i >= self.cap as u64 {
                return Err(ListFull(v));
            }
            match claimed.compare_exchange_weak(i, i + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => i = now,
            }
        }
        let slot = self.slot(i as usize);
        write_slot(&slot[1..], &v);
        // Release: publishes the value; pairs with the Acquire in `get`.
        slot[0].store(1, Ordering::Release);
        Ok(i as usize)
    }

    /// Indices handed out so far (at most the capacity). Some may not be
    /// published yet, or ever (a writer killed between claim and publish).
    pub fn len(&self) -> usize {
        (self.claimed().load(Ordering::Relaxed)).min(self.cap as u64) as usize
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items it holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Item `i`, if it is published.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        let slot = self.slot(i);
        // Acquire: pairs with the Release store in `push`.
        (slot[0].load(Ordering::Acquire) == 1).then(|| read_slot(&slot[1..]))
    }

    /// Published items with their indices, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, T)> + '_ {
        (0..self.len()).filter_map(|i| self.get(i).map(|v| (i, v)))
    }

    /// Published items in index order.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().map(|(_, v)| v).collect()
    }
}

/// Bytes of a list body: the claim counter's line, then `len` slots.
pub(crate) fn list_body(h: &HeaderInfo) -> Option<u64> {
    let sw = list_slot_words(h.elem.size as usize) as u64;
    align_body((LIST_HEAD_WORDS as u64 + h.len.checked_mul(sw)?).checked_mul(8)?)
}

impl<T: ShmType> SegmentObject for SharedList<T> {
    const KIND: Kind = Kind::List;
    type Params = usize;
    fn elem() -> ElemDesc {
        ElemDesc::of::<T>()
    }
    fn len_of(&capacity: &usize) -> Result<u64> {
        Self::check(capacity)?;
        Ok(capacity as u64)
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        list_body(h)
    }
    fn from_segment(seg: Segment) -> Self {
        let cap = seg.info().len as usize;
        SharedList {
            words: Words::shared(seg),
            cap,
            _t: PhantomData,
        }
    }
    fn backing(&self) -> Option<&Segment> {
        self.words.segment()
    }
}

object_api!(impl [T: ShmType] SharedList<T>, "list", (capacity: usize), open_with);

//! A run of shared atomic words, in a mapped segment or on the heap.
//!
//! The map and the list keep their whole body as `AtomicU64` words. In real
//! use the words are a segment's body; inside a loom model (whose atomics
//! cannot live in a mapping) and for in-process use they are a heap box.
//! The algorithms see only `&[AtomicU64]` either way. What does not live
//! here: the layout of the words (each kind's own) and the mapping itself
//! (`segment`).

use std::ptr::NonNull;

use crate::segment::Segment;
use crate::sync::AtomicU64;

/// What owns the words.
#[derive(Debug)]
enum Backing {
    Shared(Segment),
    /// Owns the heap words that `Words::ptr` points into.
    Heap(#[allow(dead_code)] Box<[AtomicU64]>),
}

/// A body of atomic words, in a segment or on the heap (loom models).
#[derive(Debug)]
pub(crate) struct Words {
    ptr: NonNull<AtomicU64>,
    len: usize,
    /// Owns the memory; read back only by the segment code.
    backing: Backing,
}

// SAFETY: the words live as long as `backing` and are only used atomically.
unsafe impl Send for Words {}
// SAFETY: as above.
unsafe impl Sync for Words {}

impl Words {
    /// `len` zeroed words on the heap.
    pub(crate) fn heap(len: usize) -> Self {
        let b: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
        Words {
            ptr: NonNull::from(&b[..]).cast(),
            len,
            backing: Backing::Heap(b),
        }
    }

    /// The whole body of a validated segment, as words.
    pub(crate) fn shared(seg: Segment) -> Self {
        let len = ((seg.info().total_size - seg.info().data_offset) / 8) as usize;
        Words {
            ptr: NonNull::new(seg.body_ptr() as *mut AtomicU64).expect("mapping is not null"),
            len,
            backing: Backing::Shared(seg),
        }
    }

    /// Every word.
    #[inline]
    pub(crate) fn all(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` points at `len` atomics owned by `backing` (a heap box,
        // or a validated mapping body of len * 8 bytes, 128-aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The segment holding the words, `None` on the heap.
    pub(crate) fn segment(&self) -> Option<&Segment> {
        match &self.backing {
            Backing::Shared(s) => Some(s),
            Backing::Heap(_) => None,
        }
    }
}

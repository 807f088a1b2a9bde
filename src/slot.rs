//! Copying a `Pod` value into and out of a run of shared atomic words.
//!
//! Slots in shared memory are `AtomicU64` words, so a reader racing a writer
//! gets a stale or mixed value, never undefined behaviour; the algorithms
//! that use these copies (ring, map, list) decide by their own protocol
//! whether a copy is kept or discarded. Here: only the copies.

use bytemuck::Pod;

use crate::sync::{AtomicU64, Ordering};

/// Words of 8 bytes one item of `T` takes in a slot.
#[inline]
pub(crate) const fn words_for(size: usize) -> usize {
    size.div_ceil(8)
}

/// Copy `item` into a slot, word by word (Relaxed: the caller publishes the
/// slot with a Release store after this).
pub(crate) fn write_slot<T: Pod>(slot: &[AtomicU64], item: &T) {
    let bytes = bytemuck::bytes_of(item);
    // At most the words `T` takes (a slot has exactly as many in a ring of
    // `T`): a count known when compiling, so an item of one word is one
    // store, with no loop over the slot's run-time length.
    for (i, word) in slot.iter().take(words_for(size_of::<T>())).enumerate() {
        let start = i * 8;
        let end = (start + 8).min(bytes.len());
        let mut buf = [0u8; 8];
        buf[..end - start].copy_from_slice(&bytes[start..end]);
        word.store(u64::from_ne_bytes(buf), Ordering::Relaxed);
    }
}

/// Copy a slot out, word by word (Relaxed: the caller orders it with an
/// Acquire load before it, and discards a copy torn by a racing writer).
pub(crate) fn read_slot<T: Pod>(slot: &[AtomicU64]) -> T {
    let mut out = T::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut out);
    let len = bytes.len();
    // At most the words `T` takes, as in `write_slot`.
    for (i, word) in slot.iter().take(words_for(size_of::<T>())).enumerate() {
        let start = i * 8;
        let end = (start + 8).min(len);
        let w = word.load(Ordering::Relaxed).to_ne_bytes();
        bytes[start..end].copy_from_slice(&w[..end - start]);
    }
    out
}

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
    for (i, word) in slot.iter().enumerate() {
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
    for (i, word) in slot.iter().enumerate() {
        let start = i * 8;
        let end = (start + 8).min(len);
        let w = word.load(Ordering::Relaxed).to_ne_bytes();
        bytes[start..end].copy_from_slice(&w[..end - start]);
    }
    out
}

/// Copy `src` into the words of `dst` (the last word padded with zeros),
/// one Relaxed store per word, in memory order (byte `j` is byte `j % 8`
/// of word `j / 8` in native order, as [`write_slot`] lays a value out;
/// the byte messages' loop over whole frames is `ring::frame_copy`'s, this
/// writes a last, partial frame). Atomics, not `ptr::copy_nonoverlapping`:
/// a stale consumer may be reading these words (and discards what it
/// read), and a non-atomic write racing a read is undefined behaviour. The
/// caller publishes the words with a Release store after this (the
/// producer's store of `tail`), and only writes words no consumer may still
/// be copying as its own (the producer's Acquire load of `head` before).
///
/// Panics if `dst` holds fewer than `src.len()` bytes.
#[inline]
pub(crate) fn store_bytes(dst: &[AtomicU64], src: &[u8]) {
    let n = src.len();
    assert!(
        n.div_ceil(8) <= dst.len(),
        "{n} bytes into {} words",
        dst.len()
    );
    let mut words = src.chunks_exact(8);
    for (w, b) in dst.iter().zip(&mut words) {
        // One 8-byte load: the chunk is exactly 8 bytes.
        let v = u64::from_ne_bytes(b.try_into().expect("an 8-byte chunk"));
        w.store(v, Ordering::Relaxed);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        dst[n / 8].store(u64::from_ne_bytes(last), Ordering::Relaxed);
    }
}

#[cfg(all(test, not(any(shmkit_loom, shmkit_shuttle))))]
mod tests {
    use super::*;

    /// Every length across word boundaries: the bytes land in memory
    /// order, the last word padded with zeros, and no word past the
    /// message is touched.
    #[test]
    fn store_bytes_writes_in_memory_order_at_every_length() {
        for len in 0..100usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let words: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(u64::MAX)).collect();
            store_bytes(&words[1..], &msg);
            let bytes: Vec<u8> = words
                .iter()
                .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
                .collect();
            let used = len.div_ceil(8) * 8;
            assert_eq!(&bytes[..8], &[0xff; 8]);
            assert_eq!(&bytes[8..8 + len], &msg[..], "{len} bytes");
            assert!(bytes[8 + len..8 + used].iter().all(|&b| b == 0));
            assert!(bytes[8 + used..].iter().all(|&b| b == 0xff));
        }
    }
}

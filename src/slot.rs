//! Copying a `Pod` value into and out of a run of shared atomic words.
//!
//! Slots in shared memory are `AtomicU64` words, so a reader racing a writer
//! gets a stale or mixed value, never undefined behaviour; the algorithms
//! that use these copies (ring, map, list) decide by their own protocol
//! whether a copy is kept or discarded. Here: only the copies.

use std::mem::MaybeUninit;

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

/// Copy the first `dst.len()` bytes held by `src` into `dst`, one Relaxed
/// load per word, in memory order (byte `j` is byte `j % 8` of word
/// `j / 8` in native order, as [`write_slot`] lays a value out). The bulk
/// path of byte messages: no intermediate buffer, eight words (a cache
/// line) a step, each word stored with one unaligned 8-byte write.
///
/// Why atomics and not `ptr::copy_nonoverlapping` (which would vectorise):
/// another process may be storing into these words while we read (a stale
/// consumer copies a slot its producer is reusing; the claim's CAS then
/// discards the copy), and a non-atomic read racing a write is undefined
/// behaviour in Rust's memory model even when the value is thrown away. A
/// Relaxed load of an aligned `AtomicU64` is a plain 8-byte `mov` on x86-64
/// and `ldr` on AArch64: the copy costs one load and one store per 8 bytes,
/// which keeps up with the memory system for copies that miss the cache.
///
/// Orderings: Relaxed, ordered by the caller (an Acquire load of `tail`
/// before, pairing with the producer's Release store after [`store_bytes`];
/// the consumer's Release CAS of head after).
///
/// Panics if `src` holds fewer than `dst.len()` bytes (a caller's bug: the
/// message code checks every length it read back before it copies).
#[inline]
pub(crate) fn load_bytes(src: &[AtomicU64], dst: &mut [MaybeUninit<u8>]) {
    let n = dst.len();
    let full = n / 8;
    assert!(n.div_ceil(8) <= src.len(), "{n} bytes from {} words", src.len());
    let (lines, rest) = dst.split_at_mut(full / 8 * 64);
    for (s, d) in src.chunks_exact(8).zip(lines.chunks_exact_mut(64)) {
        let d = d.as_mut_ptr().cast::<u64>();
        for (k, w) in s.iter().enumerate() {
            // SAFETY: `d` is a chunk of exactly 64 bytes and k < 8, so the
            // 8 bytes at `d + k` are in it; unaligned write, MaybeUninit
            // bytes may be overwritten with anything.
            unsafe { d.add(k).write_unaligned(w.load(Ordering::Relaxed)) };
        }
    }
    let done = full / 8 * 8;
    let (words, tail) = rest.split_at_mut((full - done) * 8);
    for (w, d) in src[done..full].iter().zip(words.chunks_exact_mut(8)) {
        // SAFETY: `d` is a chunk of exactly 8 bytes.
        unsafe { d.as_mut_ptr().cast::<u64>().write_unaligned(w.load(Ordering::Relaxed)) };
    }
    if !tail.is_empty() {
        let w = src[full].load(Ordering::Relaxed).to_ne_bytes();
        for (d, b) in tail.iter_mut().zip(w) {
            d.write(b);
        }
    }
}

/// Copy `src` into the words of `dst` (the last word padded with zeros),
/// one Relaxed store per word, in the order [`load_bytes`] reads them. The
/// caller publishes the words with a Release store after this (the
/// producer's store of `tail`), and only writes words no consumer may still
/// be copying as its own (the producer's Acquire load of `head` before).
///
/// Panics if `dst` holds fewer than `src.len()` bytes.
#[inline]
pub(crate) fn store_bytes(dst: &[AtomicU64], src: &[u8]) {
    let n = src.len();
    let full = n / 8;
    assert!(n.div_ceil(8) <= dst.len(), "{n} bytes into {} words", dst.len());
    let (lines, rest) = src.split_at(full / 8 * 64);
    for (d, s) in dst.chunks_exact(8).zip(lines.chunks_exact(64)) {
        for (w, b) in d.iter().zip(s.chunks_exact(8)) {
            // One 8-byte load: the chunk is exactly 8 bytes.
            let v = u64::from_ne_bytes(b.try_into().expect("an 8-byte chunk"));
            w.store(v, Ordering::Relaxed);
        }
    }
    let done = full / 8 * 8;
    let (words, tail) = rest.split_at((full - done) * 8);
    for (w, b) in dst[done..full].iter().zip(words.chunks_exact(8)) {
        let v = u64::from_ne_bytes(b.try_into().expect("an 8-byte chunk"));
        w.store(v, Ordering::Relaxed);
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        dst[full].store(u64::from_ne_bytes(last), Ordering::Relaxed);
    }
}

#[cfg(all(test, not(any(shmkit_loom, shmkit_shuttle))))]
mod tests {
    use super::*;

    /// Every length across line and word boundaries, from every offset of
    /// a word run: what `store_bytes` wrote, `load_bytes` reads back, and
    /// no word past the message is touched.
    #[test]
    fn bulk_copies_round_trip_at_every_length() {
        for len in 0..200usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let words: Vec<AtomicU64> = (0..30).map(|_| AtomicU64::new(u64::MAX)).collect();
            store_bytes(&words[1..], &msg);
            assert_eq!(words[0].load(Ordering::Relaxed), u64::MAX);
            let used = len.div_ceil(8);
            assert!(words[1 + used..].iter().all(|w| w.load(Ordering::Relaxed) == u64::MAX));
            let mut out = Vec::<u8>::with_capacity(len);
            load_bytes(&words[1..], &mut out.spare_capacity_mut()[..len]);
            // SAFETY: load_bytes wrote the first len bytes.
            unsafe { out.set_len(len) };
            assert_eq!(out, msg, "{len} bytes");
        }
    }
}

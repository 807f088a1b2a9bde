//! The copy kernels of byte messages: a message's [`Frame`]s written into,
//! and read out of, runs of slot words, one Relaxed atomic access per 8
//! bytes, with each frame's header word written (or checked) in the same
//! pass. `message.rs` frames and claims messages on them; here: only the
//! copies.
//!
//! # Why this path
//!
//! Shared slots may be written by another process while a stale consumer
//! copies them (the claim's CAS then discards the copy), so a plain
//! `memcpy` of them is a data race, undefined behaviour even for bytes
//! thrown away. What was weighed (issue #13):
//!
//! * **Relaxed `AtomicU64` loads and stores straight between the slots and
//!   the caller's bytes** (taken): on x86-64 and AArch64 a Relaxed load or
//!   store of an aligned word is a plain `mov` / `ldr`, so a frame costs
//!   one header load and compare plus 7 loads and 7 stores (about 21
//!   instructions a side), with no intermediate [`Frame`] on the stack, no
//!   closure call per frame (the claim hands over whole runs of slots), no
//!   `Vec` growth check per frame (the destination is spare capacity,
//!   reserved once) and no branch per frame for the checks (the header
//!   differences are or-ed, and searched only when something differs).
//!   A reader copies whole frames (the last one's bytes past the message
//!   land in spare capacity never exposed), and a writer stores a last,
//!   partial frame from a zeroed 56-byte buffer, so neither has a
//!   partial-frame path and short messages cost what they did.
//!   `valgrind --tool=callgrind`, one thread pushing and popping on a
//!   32768-frame ring, instructions per message for push and pop together
//!   (this loop against the `Frame` round trip it replaces): 1 MiB 0.79 M
//!   against 3.37 M, 4 KiB 3780 against 13678, 100 B 719 against 716, 64 B
//!   720 against 718. In time (`cargo bench --bench ring -- byte-messages`,
//!   a noisy 2-vCPU host): a 1 MiB push and pop about 70 us against about
//!   205 us, where two plain `memcpy`s of it take 45-55 us.
//! * **The `atomic-memcpy` crate** (taiki-e; byte-wise atomic memcpy after
//!   C++'s P1478): for a `T` aligned to the pointer width it copies
//!   pointer-sized words through atomics, the same instructions as above,
//!   and it copies a sized `T`, not a run of frames with a header word to
//!   check in each; it would add a dependency (and `portable-atomic`) for
//!   nothing this loop lacks.
//! * **A contiguous layout** (a header frame, then raw 64-byte data
//!   slots), which would let one loop copy a message without a header word
//!   every 56 bytes (estimated, not built: about 19 instructions a side per
//!   64 bytes against 21 per 56 here, a fifth fewer per byte, and 12.5%
//!   more message per ring), but drops the per-frame check (a frame index
//!   and length in every frame, which is how a consumer tells a damaged or
//!   mis-claimed run from a message), breaks the on-segment layout (a
//!   `header::LAYOUT_VERSION` bump: every segment of older processes
//!   refused) and would still not fit two
//!   1 MiB messages in the Pipe's 32768 slots (16385 each with the header).
//!   The fused loop below already runs at one load and one store per data
//!   word plus one load and compare per frame, so the layout stays.
//! * **Wider than 8-byte copies** (SSE/AVX moves, or `rep movsb`) would
//!   need inline assembly argued to be a per-byte atomic copy; not done:
//!   across processes a large message's copy misses the cache and waits on
//!   lines coming from the other core, and what was left between this loop
//!   and `memcpy` (above) is less than what overlapping the producer's copy
//!   with the consumer's gained (`message::write_ahead`).

use std::mem::MaybeUninit;

use crate::sync::{AtomicU64, Ordering};

use super::message::{FRAME_DATA, Frame};

/// Words of a frame: its header word, then [`FRAME_DATA`] bytes.
pub(super) const FRAME_WORDS: usize = size_of::<Frame>() / 8;

/// The header word of frame `index` of a `len`-byte message, as a [`Frame`]
/// lays it out (`len`, then `index`, native order).
#[inline]
pub(super) fn header_word(len: u32, index: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b[4..].copy_from_slice(&index.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// The (`len`, `index`) a header word holds.
#[inline]
pub(super) fn split_header(w: u64) -> (u32, u32) {
    let b = w.to_ne_bytes();
    let half = |r: std::ops::Range<usize>| u32::from_ne_bytes(b[r].try_into().expect("4 bytes"));
    (half(0..4), half(4..8))
}

/// Frames of a `len`-byte message whose data is whole (all of the last
/// frame's [`FRAME_DATA`] bytes belong to the message), from frame `first`
/// and at most `frames`.
#[inline]
fn full_frames(len: usize, first: usize, frames: usize) -> usize {
    (len / FRAME_DATA).saturating_sub(first).min(frames)
}

/// Write frames `first..` of the message `msg` into `run` (whole frames;
/// as many as `run` holds, each frame's data the next 56 bytes of `msg`,
/// the last frame's padded with zeros).
/// Relaxed stores: the producer's Release store of tail after all of a
/// message's frames publishes them (and it writes only slots its Acquire
/// load of head said no consumer still copies).
#[inline]
pub(super) fn store_frames(run: &[AtomicU64], first: usize, msg: &[u8]) {
    let len = msg.len() as u32;
    let frames = run.len() / FRAME_WORDS;
    let full = full_frames(msg.len(), first, frames);
    let (head, rest) = run.split_at(full * FRAME_WORDS);
    let data = &msg[(first * FRAME_DATA).min(msg.len())..];
    // Frame indices below `u32::MAX` (a message has at most u32::MAX / 56
    // frames): the header words of consecutive frames differ by `step`.
    let mut want = header_word(len, first as u32);
    let step = header_word(0, 1);
    // The loop of whole frames: a header word and 7 data words a frame.
    for (frame, d) in head
        .chunks_exact(FRAME_WORDS)
        .zip(data.chunks_exact(FRAME_DATA))
    {
        frame[0].store(want, Ordering::Relaxed);
        want = want.wrapping_add(step);
        for (w, b) in frame[1..].iter().zip(d.chunks_exact(8)) {
            let v = u64::from_ne_bytes(b.try_into().expect("an 8-byte chunk"));
            w.store(v, Ordering::Relaxed);
        }
    }
    // The last frame, partly filled (or an empty message's one frame).
    for (j, frame) in rest.chunks_exact(FRAME_WORDS).enumerate() {
        let i = first + full + j;
        frame[0].store(header_word(len, i as u32), Ordering::Relaxed);
        let start = (i * FRAME_DATA).min(msg.len());
        store_tail(&frame[1..], msg, start);
    }
}

/// Store `msg[start..]` (less than a frame's data) into `words`, a
/// frame's data words, padded with zeros: through a zeroed frame-sized
/// buffer, so the stores are the same 7 as for a whole frame.
#[inline]
fn store_tail(words: &[AtomicU64], msg: &[u8], start: usize) {
    let data = &msg[start..];
    let mut buf = [0u8; FRAME_DATA];
    buf[..data.len()].copy_from_slice(data);
    for (w, b) in words.iter().zip(buf.chunks_exact(8)) {
        let v = u64::from_ne_bytes(b.try_into().expect("an 8-byte chunk"));
        // Relaxed: as the other data words.
        w.store(v, Ordering::Relaxed);
    }
}

/// Copy the frames of `run` (whole frames), frames `first..` of a
/// `len`-byte message, into `dst`: all [`FRAME_DATA`] bytes of each, also
/// of the last frame (its bytes past the message are whatever the producer
/// left there, copied into memory the caller never exposes: `dst` is spare
/// capacity, and only the message's `len` bytes become the `Vec`'s), so the
/// loop has no partial frame to handle. Checks each frame's header word on
/// the way: what is wrong with the first frame whose header is not (`len`,
/// its index), if any.
///
/// Relaxed loads: the consumer's Acquire load of tail before (pairing with
/// the producer's Release store in `Producer::publish`) makes the message's
/// words visible; a copy racing a producer that reuses the slots is
/// discarded by the claim's failed CAS.
///
/// Panics unless `dst` holds exactly the frames of `run` (a caller's bug).
#[inline]
pub(super) fn load_frames(
    run: &[AtomicU64],
    first: usize,
    len: usize,
    dst: &mut [MaybeUninit<u8>],
) -> Option<String> {
    let frames = run.len() / FRAME_WORDS;
    assert_eq!(
        dst.len(),
        frames * FRAME_DATA,
        "the destination is the frames' data"
    );
    let first_want = header_word(len as u32, first as u32);
    let step = header_word(0, 1);
    let mut want = first_want;
    // Any bit set: some frame's header differs from what it should be.
    let mut diff = 0u64;
    // A header word loaded and compared (no branch: the differences are
    // or-ed together), then 7 data words copied.
    for (frame, d) in run
        .chunks_exact(FRAME_WORDS)
        .zip(dst.chunks_exact_mut(FRAME_DATA))
    {
        diff |= frame[0].load(Ordering::Relaxed) ^ want;
        want = want.wrapping_add(step);
        let d = d.as_mut_ptr().cast::<u64>();
        for (k, w) in frame[1..].iter().enumerate() {
            // SAFETY: `d` points at a chunk of FRAME_DATA = 8 * 7 bytes and
            // k < 7 (a frame's data words), so the 8 bytes at `d + k` are
            // in bounds; an unaligned write into MaybeUninit bytes.
            unsafe { d.add(k).write_unaligned(w.load(Ordering::Relaxed)) };
        }
    }
    if diff == 0 {
        return None;
    }
    // Rare (damage, or a copy the claim will discard): find the first.
    // Relaxed: as above. A word may have changed since (then, most likely,
    // the claim's CAS fails and the report is dropped).
    let bad = run
        .chunks_exact(FRAME_WORDS)
        .enumerate()
        .find_map(|(j, f)| {
            let h = f[0].load(Ordering::Relaxed);
            (h != header_word(len as u32, (first + j) as u32))
                .then(|| frame_says(first + j, len, h))
        });
    Some(bad.unwrap_or_else(|| {
        format!("a frame header of a {len}-byte message changed while it was copied")
    }))
}

/// Frame `i` of a `len`-byte message found with header word `h`.
fn frame_says(i: usize, len: usize, h: u64) -> String {
    let (flen, findex) = split_header(h);
    format!("frame {i} of a {len}-byte message says it is frame {findex} of {flen} bytes")
}

#[cfg(all(test, not(any(shmkit_loom, shmkit_shuttle))))]
mod tests {
    use super::super::message::frames_for;
    use super::*;

    /// Every length over a few frames, written as two runs split at every
    /// frame: read back whole, headers checked, and a scribbled header
    /// named.
    #[test]
    fn frames_round_trip_at_every_length_and_split() {
        for len in 0..300usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            let k = frames_for(len);
            let words: Vec<AtomicU64> = (0..k * FRAME_WORDS).map(|_| AtomicU64::new(!0)).collect();
            for split in 0..=k {
                let (a, b) = words.split_at(split * FRAME_WORDS);
                store_frames(a, 0, &msg);
                store_frames(b, split, &msg);
                let mut out = Vec::<u8>::with_capacity(k * FRAME_DATA);
                let dst = &mut out.spare_capacity_mut()[..k * FRAME_DATA];
                let (da, db) = dst.split_at_mut(split * FRAME_DATA);
                assert_eq!(load_frames(a, 0, len, da), None);
                assert_eq!(load_frames(b, split, len, db), None);
                // SAFETY: load_frames wrote all k frames, len <= k * 56.
                unsafe { out.set_len(len) };
                assert_eq!(out, msg, "{len} bytes split at frame {split}");
            }
            let last = (k - 1) * FRAME_WORDS;
            words[last].store(
                header_word(len as u32 + 1, (k - 1) as u32),
                Ordering::Relaxed,
            );
            let mut out = Vec::<u8>::with_capacity(k * FRAME_DATA);
            let d = load_frames(
                &words,
                0,
                len,
                &mut out.spare_capacity_mut()[..k * FRAME_DATA],
            );
            let want = format!(
                "frame {} of a {len}-byte message says it is frame {} of {} bytes",
                k - 1,
                k - 1,
                len + 1
            );
            assert_eq!(d, Some(want));
        }
    }
}

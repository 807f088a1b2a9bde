//! The cell's layout in shared memory (see the table in the [parent
//! module's docs](super)): where the version, the statistics and each
//! stamped buffer sit, how many buffers a record gets, and the body's size
//! for a header.

use crate::header::{HeaderInfo, align_body};
use crate::lock::LOCK_AREA;
use crate::segment::Segment;
use crate::slot::words_for;
use crate::sync::{AtomicU64, Ordering};

/// Words of the control line: version, takeovers, padding to 128 bytes so
/// the buffers start on their own line and nothing else shares the
/// version's.
pub(super) const CTRL_WORDS: usize = 16;
pub(super) const VERSION: usize = 0;
/// On the control block's second line: the version's is read on every
/// load, and shares with nothing.
pub(super) const TAKEOVERS: usize = 8;

/// Words of the body before the control line in a segment: the lock.
pub(super) const LOCK_WORDS: usize = (LOCK_AREA / 8) as usize;

/// Buffers of a cell whose record is `size` bytes: 8 up to 4 KiB, 4 above
/// (a large record's copy and store take about as long as each other, so
/// fewer suffice); 2 under the model checkers (see the [module
/// docs](super)). Derived from the header's element size, never stored.
#[inline]
pub const fn buffers_for(size: usize) -> usize {
    if crate::sync::MODELLED {
        2
    } else if size <= 4096 {
        8
    } else {
        4
    }
}

/// Words of one buffer: the stamp and the record, padded to whole
/// 128-byte pairs of lines (x86 prefetchers fetch lines in such pairs, so
/// a writer filling the next buffer does not disturb a reader of this
/// one). `None` past `usize` (a size read from a header).
#[inline]
pub(super) const fn stride_for(size: usize) -> Option<usize> {
    match words_for(size).checked_add(1) {
        Some(w) => w.checked_next_multiple_of(16),
        None => None,
    }
}

/// Words after the lock: the control line and every buffer.
pub(super) fn cell_words(size: usize) -> Option<usize> {
    stride_for(size)?
        .checked_mul(buffers_for(size))?
        .checked_add(CTRL_WORDS)
}

/// Bytes of a cell body holding a record of `elem_size` bytes: the lock,
/// the control line, the buffers.
pub(crate) fn cell_body(h: &HeaderInfo) -> Option<u64> {
    if h.len != 1 || h.elem.size == 0 {
        return None;
    }
    let words = cell_words(usize::try_from(h.elem.size).ok()?)? as u64;
    align_body(LOCK_AREA.checked_add(words.checked_mul(8)?)?)
}

/// The body of a validated (or freshly sized) cell segment as words: the
/// lock's, the control line's and the buffers'.
pub(super) fn body_words(seg: &Segment) -> &[AtomicU64] {
    let len = ((seg.info().total_size - seg.info().data_offset) / 8) as usize;
    // SAFETY: the body is `len * 8` bytes of the live mapping `seg` owns,
    // 128-aligned, and only ever accessed through atomics.
    unsafe { std::slice::from_raw_parts(seg.body_ptr() as *const AtomicU64, len) }
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

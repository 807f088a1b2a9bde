//! 64-bit FNV-1a, the one hash shmkit stores in shared memory: element type
//! fingerprints (`identity`, its own const copy) and key hashes in the map. Both are on-disk
//! facts, so this function must never change. Nothing else lives here.

/// 64-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

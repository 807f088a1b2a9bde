//! Python's `Manager().dict()` without a server process: a fixed-capacity
//! map in shared memory, lock-free. (The list is in [`crate::list`].)
//!
//! ```
//! use shmkit::map::{FixedStr, SharedMap};
//! let tag = std::process::id();
//! let map = SharedMap::<FixedStr<32>, u64>::create(&format!("shmkit-doc-map-{tag}"), 64)?;
//! map.insert(FixedStr::new("proc1_key0")?, 10)?;
//! map.fetch_add(&FixedStr::new("proc1_key0")?, 5)?; // in place, atomic
//! assert_eq!(map.get(&FixedStr::new("proc1_key0")?), Some(15));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! Open addressing with linear probing over `capacity` slots (a power of
//! two). Each slot is words: `[state][key words][value]`. The state word
//! holds a 2-bit tag (EMPTY, BUSY, FULL, TOMB), 16 bits of the key's hash,
//! and, while BUSY, the inserting process's identity.
//!
//! * **insert** of a new key claims the first EMPTY slot of its probe chain
//!   with a CAS (EMPTY -> BUSY), writes key and value, then stores FULL
//!   with Release. Two processes inserting one key race for that same first
//!   slot; the loser waits for the winner's FULL and then updates it, so a
//!   key is never stored twice.
//! * **updates** of an existing entry (insert over it, `fetch_add`) take
//!   the slot with a CAS FULL -> BUSY|UPD, write the value, and store FULL
//!   with Release; **remove** CASes FULL -> TOMB. Because no writer changes a
//!   value without holding the slot, the value `remove` reads after its CAS
//!   is final: every operation is linearizable (loom found the race when
//!   updates were lock-free).
//! * **get** loads each state with Acquire and never waits: it reads FULL
//!   and BUSY|UPD slots alike (the key is valid and the value is one whole
//!   atomic word), skipping BUSY (a key being inserted) and TOMB.
//! * A tombstone is revived only by the same key (keys are never rewritten
//!   once published, so a reader comparing a key never sees it change).
//!   Capacity therefore counts every distinct key ever inserted; a full map
//!   is [`MapError::Full`], never a hang.
//! * **kill -9**: a writer killed mid-insert leaves a BUSY slot with a dead
//!   owner: never visible, skipped by inserters (taking it over could store
//!   a key twice), so it costs one slot. A writer killed mid-update leaves
//!   BUSY|UPD: the next writer restores it to FULL (the value word is whole,
//!   old or new). A process that keeps a slot BUSY for over a second while
//!   alive (stopped, hostile) makes writers return [`MapError::Busy`].
//!
//! Values are the crate's [`Element`] types held in one atomic word: reads,
//! overwrites and [`SharedMap::fetch_add`] never tear. Iteration
//! ([`SharedMap::entries`]) reads slot by slot: each entry is as it was when
//! its slot was read, and entries inserted or removed meanwhile may or may
//! not appear. It is not one consistent snapshot.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::cell::Element;
use crate::error::{Error, Result};
pub use crate::fixed_str::FixedStr;
use crate::hash::fnv1a;
use crate::header::{ElemDesc, HeaderInfo, Kind, align_body};
use crate::identity::ShmType;
use crate::object::{SegmentObject, object_api};
use crate::process::ProcToken;
use crate::segment::Segment;
use crate::slot::{read_slot, words_for, write_slot};
use crate::sync::{AtomicU64, Ordering, spin_loop};
use crate::words::Words;

/// Why a map operation failed. More reasons may be added, so a `match`
/// needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// No free slot is left in the key's probe chain (the map is full).
    Full,
    /// `fetch_add` on a key that is not in the map.
    NotFound,
    /// A live process has been inserting a key with the same hash in the
    /// slot we need for over a second (stopped, or hostile).
    Busy,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapError::Full => "the map is full: create it with a larger capacity",
            MapError::NotFound => "no such key in the map",
            MapError::Busy => {
                "another process has been inserting into the needed slot for too long"
            }
        })
    }
}

impl std::error::Error for MapError {}

const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const FULL: u64 = 2;
const TOMB: u64 = 3;
/// With BUSY: "updating an existing entry": the key is valid and the value
/// is whole, so readers use it and a dead updater's slot is restored.
const UPD: u64 = 1 << 63;
/// How long a writer waits on another live process's BUSY slot.
const BUSY_LIMIT: Duration = Duration::from_secs(1);

fn tag_of(s: u64) -> u64 {
    s & 3
}
fn hash16(s: u64) -> u64 {
    (s >> 2) & 0xffff
}
/// The owner of a BUSY slot, or the version of a FULL or TOMB one.
fn owner(s: u64) -> u64 {
    (s >> 18) & ((1 << 45) - 1)
}
/// The next version after state `s` (FULL/TOMB), wrapping in 45 bits.
fn next_version(s: u64) -> u64 {
    (owner(s) + 1) & ((1 << 45) - 1)
}
fn state(tag: u64, h16: u64, owner: u64) -> u64 {
    tag | (h16 << 2) | (owner << 18)
}
/// FULL, or BUSY updating an existing entry: the key words are valid.
fn has_entry(s: u64) -> bool {
    tag_of(s) == FULL || (tag_of(s) == BUSY && s & UPD != 0)
}

/// Bits of a [`compact45`] identity that hold the pid (a Linux pid is
/// below 2^22), and of the start time above them: 45 in all.
const OWNER_PID_BITS: u32 = 22;
const OWNER_START_MASK: u64 = (1 << 23) - 1;

/// A 45-bit identity of `t` (pid, then the low 23 bits of its start time)
/// for the owner field of a BUSY state word, which has only 45 bits to
/// spare. Pid reuse within the same 2^23 ticks (about 23 hours at 100 Hz)
/// would be mistaken for the same process: the price of fitting in one
/// word with a tag. An on-disk format: never change it.
fn compact45(t: ProcToken) -> u64 {
    u64::from(t.pid()) | ((t.start_ticks() & OWNER_START_MASK) << OWNER_PID_BITS)
}

/// Is the process a [`compact45`] identity names alive?
fn compact45_alive(v: u64) -> bool {
    let pid = (v & ((1 << OWNER_PID_BITS) - 1)) as u32;
    ProcToken::of_pid(pid).is_some_and(|t| {
        t.start_ticks() & OWNER_START_MASK == (v >> OWNER_PID_BITS) & OWNER_START_MASK
    })
}

/// The map's element description: key type, value type, and the slot size.
#[repr(C)]
#[derive(Clone, Copy)]
struct MapTypes<K, V> {
    key: K,
    value: u64,
    _v: PhantomData<V>,
}

/// Words per map slot: state, key words, value.
const fn map_slot_words(key_size: usize) -> usize {
    1 + words_for(key_size) + 1
}

/// A fixed-capacity map in shared memory. See the [module docs](self) for
/// how it works and what survives a killed writer.
///
/// Keys are any [`Pod`] type (integers, [`FixedStr`], `#[repr(C)]`
/// structs of them); values are [`Element`]s. `capacity` is a power of two
/// and counts every distinct key ever inserted, removed ones included.
///
/// ```
/// use shmkit::map::{MapError, SharedMap};
/// let name = format!("shmkit-doc-sharedmap-{}", std::process::id());
/// let seen = SharedMap::<u32, u64>::create(&name, 4)?;
/// // In any process: SharedMap::<u32, u64>::open(&name)?
/// assert_eq!(seen.insert(7, 1)?, None);
/// assert_eq!(seen.insert(7, 2)?, Some(1)); // replaced
/// assert_eq!(seen.fetch_add(&7, 10)?, 2);
/// assert_eq!(seen.fetch_add(&8, 1), Err(MapError::NotFound));
/// assert_eq!(seen.remove(&7)?, Some(12));
/// for k in 0..3 {
///     seen.insert(k, 0)?;
/// }
/// // Four distinct keys were inserted (7, 0, 1, 2): no room for a fifth.
/// assert_eq!(seen.insert(3, 0), Err(MapError::Full));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `Send` and `Sync` when `K: Send` and `V: Send` (every [`Element`] is):
/// a key inserted by one thread is copied out by another's
/// [`entries`](Self::entries).
#[derive(Debug)]
pub struct SharedMap<K, V> {
    words: Words,
    cap: usize,
    kw: usize,
    /// Covariant in `K` and `V`, and neither `Send` nor `Sync` by itself:
    /// the impls below say when the map is.
    _types: PhantomData<*const MapTypes<K, V>>,
}

// SAFETY: the map owns no `K` or `V`, only atomic words (`Words` is Send +
// Sync); keys and values cross threads by copy, inserted by one and read by
// another, which is sending them, so `K: Send, V: Send` is required, and
// enough.
unsafe impl<K: Send, V: Send> Send for SharedMap<K, V> {}
// SAFETY: as above: through `&SharedMap` keys and values move between
// threads by copy; no reference into the map is ever handed out, so `Sync`
// of `K` or `V` is not needed.
unsafe impl<K: Send, V: Send> Sync for SharedMap<K, V> {}

impl<K: Pod + PartialEq, V: Element> SharedMap<K, V> {
    fn check_capacity(capacity: usize) -> Result<()> {
        if capacity == 0 || !capacity.is_power_of_two() || capacity > 1 << 26 {
            return Err(Error::InvalidArgument {
                what: format!(
                    "map capacity {capacity} must be a power of two from 1 to 2^26 (use {})",
                    capacity.clamp(1, 1 << 26).next_power_of_two()
                ),
            });
        }
        if size_of::<K>() == 0 {
            return Err(Error::InvalidArgument {
                what: "map keys must not be zero-sized".into(),
            });
        }
        Ok(())
    }

    fn with_words(words: Words, cap: usize) -> Self {
        SharedMap {
            words,
            cap,
            kw: words_for(size_of::<K>()),
            _types: PhantomData,
        }
    }

    /// A map on the heap, for threads of one process (and loom models).
    pub fn new_in_process(capacity: usize) -> Result<Self> {
        Self::check_capacity(capacity)?;
        let w = capacity * map_slot_words(size_of::<K>());
        Ok(Self::with_words(Words::heap(w), capacity))
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        let sw = self.kw + 2;
        let start = (i & (self.cap - 1)) * sw;
        &self.words.all()[start..start + sw]
    }

    fn key_matches(&self, slot: &[AtomicU64], k: &K) -> bool {
        read_slot::<K>(&slot[1..=self.kw]) == *k
    }

    fn value_cell<'s>(&self, slot: &'s [AtomicU64]) -> &'s AtomicU64 {
        &slot[self.kw + 1]
    }

    fn hash(k: &K) -> (usize, u64) {
        let h = fnv1a(bytemuck::bytes_of(k).iter().copied());
        (h as usize, (h >> 48) & 0xffff)
    }

    /// Wait while another process updates `slot` (state `s`); restore the
    /// slot if that process died mid-update (its value word is whole).
    /// Returns the settled state.
    fn settle(&self, slot: &[AtomicU64], mut s: u64) -> std::result::Result<u64, MapError> {
        let mut since: Option<Instant> = None;
        while tag_of(s) == BUSY && s & UPD != 0 {
            if !compact45_alive(owner(s)) {
                // AcqRel: we take over a slot whose last writer is gone.
                // The version is lost with the dead updater; its identity
                // makes a fresh one (a remove holding the old FULL word
                // then fails its CAS and retries, as it should).
                let _ = slot[0].compare_exchange(
                    s,
                    state(FULL, hash16(s), owner(s)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            } else if since.get_or_insert_with(Instant::now).elapsed() > BUSY_LIMIT {
                return Err(MapError::Busy);
            } else {
                spin_loop();
            }
            // Acquire: pairs with the updater's Release store of FULL.
            s = slot[0].load(Ordering::Acquire);
        }
        Ok(s)
    }

    /// Change an existing entry's value with `f(old) -> new` while holding
    /// its slot (FULL -> BUSY|UPD -> FULL); `None` if the slot stopped
    /// holding the entry (removed) before we got it.
    fn update_slot(
        &self,
        slot: &[AtomicU64],
        h16: u64,
        f: impl FnOnce(V) -> V,
    ) -> std::result::Result<Option<V>, MapError> {
        let me = compact45(ProcToken::current());
        loop {
            // Acquire: pairs with the Release store of FULL.
            let s = self.settle(slot, slot[0].load(Ordering::Acquire))?;
            if tag_of(s) != FULL {
                return Ok(None);
            }
            // Acquire: we read the value the last updater Released.
            if slot[0]
                .compare_exchange(
                    s,
                    state(BUSY, h16, me) | UPD,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let cell = self.value_cell(slot);
                let old = V::from_word(cell.load(Ordering::Relaxed));
                // Relaxed: published by the Release store of FULL below; a
                // lock-free reader may see old or new, each whole.
                cell.store(f(old).to_word(), Ordering::Relaxed);
                // Release: publishes the value; pairs with Acquire loads of
                // the state in readers and the next updater. A new version,
                // so a remove that read the old value fails its CAS.
                slot[0].store(state(FULL, h16, next_version(s)), Ordering::Release);
                return Ok(Some(old));
            }
        }
    }

    /// Insert `k -> v`; returns the previous value if `k` was present.
    pub fn insert(&self, k: K, v: V) -> std::result::Result<Option<V>, MapError> {
        let (h, h16) = Self::hash(&k);
        let me = compact45(ProcToken::current());
        'probe: for p in 0..self.cap {
            let slot = self.slot(h.wrapping_add(p));
            let mut since: Option<Instant> = None;
            loop {
                // Try to claim the slot as if it were EMPTY (the word 0); a
                // failed CAS returns the state, which serves as our load.
                // (CAS first rather than load-then-CAS: besides saving a
                // load, loom 0.7.2 under-explores a load of a word followed
                // by a CAS of it, and missed a weakened publication here.)
                // Acquire on failure: pairs with the Release store of FULL,
                // so an entry's key and value words are visible. Relaxed on
                // success: nothing is read through the claim; the FULL store
                // below publishes.
                let s = match slot[0].compare_exchange(
                    EMPTY,
                    state(BUSY, h16, me),
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        write_slot(&slot[1..=self.kw], &k);
                        self.value_cell(slot).store(v.to_word(), Ordering::Relaxed);
                        // Release: publishes key and value; pairs with the
                        // Acquire loads of the state in readers.
                        slot[0].store(state(FULL, h16, 0), Ordering::Release);
                        return Ok(None);
                    }
                    Err(s) => s,
                };
                let ours = hash16(s) == h16;
                match tag_of(s) {
                    EMPTY => {
                        // Tagged EMPTY but not the word 0: garbage from a
                        // hostile writer. Claim it from what is there.
                        let _ = slot[0].compare_exchange(
                            s,
                            EMPTY,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    _ if has_entry(s) && ours && self.key_matches(slot, &k) => {
                        match self.update_slot(slot, h16, |_| v)? {
                            Some(prev) => return Ok(Some(prev)),
                            None => continue, // removed meanwhile: look again
                        }
                    }
                    TOMB if ours && self.key_matches(slot, &k) => {
                        // Revive our own key's slot (its key words are ours).
                        // Plain BUSY: if we die here the slot stays invisible
                        // rather than resurrecting the removed value.
                        // Acquire: pairs with remove's AcqRel CAS to TOMB.
                        if slot[0]
                            .compare_exchange(
                                s,
                                state(BUSY, h16, me),
                                Ordering::Acquire,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                        {
                            self.value_cell(slot).store(v.to_word(), Ordering::Relaxed);
                            // Release: as for a fresh insert; a new version.
                            slot[0].store(state(FULL, h16, next_version(s)), Ordering::Release);
                            return Ok(None);
                        }
                    }
                    BUSY if ours => {
                        // Maybe our key being inserted: wait for the outcome,
                        // unless its writer is dead (then it never will be).
                        if !compact45_alive(owner(s)) {
                            continue 'probe;
                        }
                        if since.get_or_insert_with(Instant::now).elapsed() > BUSY_LIMIT {
                            return Err(MapError::Busy);
                        }
                        spin_loop();
                    }
                    _ => continue 'probe,
                }
            }
        }
        Err(MapError::Full)
    }

    /// Find the slot holding `k` (FULL, or being updated).
    fn find(&self, k: &K) -> Option<&[AtomicU64]> {
        let (h, h16) = Self::hash(k);
        for p in 0..self.cap {
            let slot = self.slot(h.wrapping_add(p));
            // Acquire: pairs with the Release store of FULL.
            let s = slot[0].load(Ordering::Acquire);
            if tag_of(s) == EMPTY {
                return None;
            }
            if has_entry(s) && hash16(s) == h16 && self.key_matches(slot, k) {
                return Some(slot);
            }
        }
        None
    }

    /// The value for `k`, if present. Never waits: during another process's
    /// update it returns the old or the new value.
    pub fn get(&self, k: &K) -> Option<V> {
        // Acquire: pairs with the Release store of FULL after an update.
        self.find(k)
            .map(|slot| V::from_word(self.value_cell(slot).load(Ordering::Acquire)))
    }

    /// Remove `k`; returns its value if it was present (`Ok(None)`: absent).
    /// `Err(MapError::Busy)` when another live process has held the key's
    /// slot mid-update for over a second: the key may well be present, so
    /// this is not reported as absent.
    pub fn remove(&self, k: &K) -> std::result::Result<Option<V>, MapError> {
        let (_, h16) = Self::hash(k);
        loop {
            let Some(slot) = self.find(k) else {
                return Ok(None);
            };
            // Acquire: pairs with the Release store of FULL.
            let s = self.settle(slot, slot[0].load(Ordering::Acquire))?;
            if tag_of(s) != FULL {
                continue;
            }
            // The value as of state `s` (its Acquire load made the update
            // that produced it visible). Writers change the value only
            // after moving the state off `s`, and every FULL state carries a
            // fresh version, so if the CAS from exactly `s` succeeds this is
            // the value removed. (Reading after the CAS was wrong: a reviver
            // may write the slot once it is TOMB. loom found it.)
            let v = self.value_cell(slot).load(Ordering::Relaxed);
            // AcqRel: Release orders the tombstone before a reviver's
            // Acquire; the version travels into TOMB for the revive.
            if slot[0]
                .compare_exchange(
                    s,
                    state(TOMB, h16, owner(s)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(Some(V::from_word(v)));
            }
        }
    }

    /// Add `delta` to `k`'s value in place (wrapping for integers); returns
    /// the previous value. `NotFound` if `k` is absent.
    pub fn fetch_add(&self, k: &K, delta: V) -> std::result::Result<V, MapError> {
        let (_, h16) = Self::hash(k);
        loop {
            let slot = self.find(k).ok_or(MapError::NotFound)?;
            if let Some(prev) = self.update_slot(slot, h16, |old| old.add_wrapping(delta))? {
                return Ok(prev);
            }
        }
    }

    /// Entries present now (a scan of every slot).
    pub fn len(&self) -> usize {
        (0..self.cap)
            .filter(|&i| has_entry(self.slot(i)[0].load(Ordering::Relaxed)))
            .count()
    }

    /// Whether no entry is present now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots (the most distinct keys it can ever hold).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Every entry, slot by slot (not one consistent snapshot: see the
    /// module docs).
    pub fn entries(&self) -> Vec<(K, V)> {
        (0..self.cap)
            .filter_map(|i| {
                let slot = self.slot(i);
                // Acquire: pairs with the Release store of FULL.
                has_entry(slot[0].load(Ordering::Acquire)).then(|| {
                    let k: K = read_slot(&slot[1..=self.kw]);
                    let v = V::from_word(self.value_cell(slot).load(Ordering::Acquire));
                    (k, v)
                })
            })
            .collect()
    }
}

/// Words of a map body: `len` slots of the state word plus
/// `elem.size / 8` words (the key words and the value, see [`MapTypes`]).
pub(crate) fn map_body(h: &HeaderInfo) -> Option<u64> {
    // elem.size is size_of::<MapTypes<K, V>>() = key words * 8 + 8.
    if h.len == 0 || !h.len.is_power_of_two() || !h.elem.size.is_multiple_of(8) {
        return None;
    }
    let sw = 1 + u64::from(h.elem.size) / 8;
    align_body(h.len.checked_mul(sw)?.checked_mul(8)?)
}

impl<K: ShmType + PartialEq, V: Element> SegmentObject for SharedMap<K, V> {
    const KIND: Kind = Kind::Map;
    type Params = usize;
    fn elem() -> ElemDesc {
        // The key's and the value's identities, as a pair.
        let (k, v) = (K::TYPE, V::TYPE);
        let (size, align) = (size_of::<MapTypes<K, V>>(), align_of::<MapTypes<K, V>>());
        ElemDesc::named(
            &format!("{}=>{}", k.name(), v.name()),
            size,
            align,
            crate::identity::pair_fingerprint(k, v, size, align),
        )
    }
    fn len_of(&capacity: &usize) -> Result<u64> {
        Self::check_capacity(capacity)?;
        Ok(capacity as u64)
    }
    fn body_size(h: &HeaderInfo) -> Option<u64> {
        map_body(h)
    }
    fn from_segment(seg: Segment) -> Self {
        let cap = seg.info().len as usize;
        Self::with_words(Words::shared(seg), cap)
    }
    fn backing(&self) -> Option<&Segment> {
        self.words.segment()
    }
}

object_api!(impl [K: ShmType + PartialEq, V: Element] SharedMap<K, V>, "map", (capacity: usize), open_with);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact45_names_the_live_process_only() {
        let me = ProcToken::current();
        let c = compact45(me);
        assert!(c < 1 << 45);
        assert_eq!(c & ((1 << OWNER_PID_BITS) - 1), u64::from(me.pid()));
        assert!(compact45_alive(c));
        // Same pid, another start time: a process that reused the pid.
        assert!(!compact45_alive(c ^ (1 << OWNER_PID_BITS)));
    }
}

//! The validated header at the start of every shmkit segment.
//!
//! Layout (256 bytes, `repr(C)`, every field an atomic so a process racing to
//! scribble on it can cause an error but never undefined behaviour):
//!
//! | field | meaning |
//! |---|---|
//! | `magic` | [`MAGIC`]; anything else is a foreign file |
//! | `ready` | 0 while the creator builds the segment, `READY` (`0x52454459`) once published |
//! | `version` | [`LAYOUT_VERSION`] of the creator's shmkit |
//! | `kind` | what the body is: [`Kind`] |
//! | `elem_size`, `elem_align`, `elem_fingerprint`, `elem_name` | the element type |
//! | `len` | number of elements (array), stripes (accumulator) or slots (ring); a queue packs its three limits |
//! | `data_offset` | where the body starts, a multiple of 128 |
//! | `total_size` | bytes of the whole segment: equals the file size |
//! | `creator` | [`ProcToken`] of the creating process |
//! | `created_unix_ms` | creation time, for `shmkit ls` |
//! | `attached` | tokens of processes that have it open, for `shmkit gc` (16 slots) |
//!
//! The creator writes every field, then stores `ready` with Release; an opener
//! loads `ready` with Acquire before reading any other field (the loom model
//! `loom_tests/header.rs` checks this). Openers copy the fields into a local
//! [`HeaderInfo`] once and validate it; nothing later trusts the shared copy.
//!
//! What does not live here: mapping files (`segment`), the bodies (each
//! kind's own file) and reading headers of files that are not mapped
//! (`admin`). Public for inspection tools and the loom models; a user of
//! the shared objects needs only [`HeaderInfo`], through
//! [`Segment::info`](crate::Segment::info).

use crate::error::{Error, Result};
use crate::identity::{ShmType, TypeInfo};
use crate::process::ProcToken;
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Futex, Ordering};

/// The first 8 bytes of every shmkit segment: `"SHMKIT"` + 0x0001,
/// little-endian on disk. A file that starts otherwise is not shmkit's.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\x00\x01");
/// Value of `ready` once the header is complete.
pub(crate) const READY: u32 = 0x5245_4459;
/// The version of every shared layout (header and bodies) this shmkit reads
/// and writes; bumped whenever any of them changes. Opening a segment of
/// another version fails with [`Error::WrongVersion`].
/// 2: the lock area holds shmkit's own lock (owner word + futex), not a
/// glibc robust mutex.
/// 3: the element identity is a [`ShmType`]'s: `elem_name` holds the first
/// 32 bytes of its name (not the last of a Rust type path) and
/// `elem_fingerprint` its layout fingerprint (not a hash of the type path).
/// 4: a ring's control block counts, per consumer entry, the items taken and
/// not yet done, and the items of dead consumers (`held`, `abandoned`: join
/// reports them instead of waiting for them); kinds 7 (queue) and 8 (cell).
/// 5: a cell has 8 buffers (4 for records over 4 KiB), each with its stamp
/// in its first word, instead of 2 buffers stamped in the control line.
/// 6: a queue's count of sleeping consumers has a cache line of its own
/// after `done`, out of the rarely written block that producers read on
/// every push; a ring's rarely written block holds a sole consumer's token
/// (`sole`, before the registry).
pub const LAYOUT_VERSION: u32 = 6;
/// Size of the header; bodies start at or after it.
pub(crate) const HEADER_SIZE: u64 = 256;
/// Alignment of every body (fits `CachePadded`, which is 128 on x86-64).
pub(crate) const BODY_ALIGN: u64 = 128;
/// Processes that can be recorded as attached (more still work, see
/// `attach_overflow`).
pub(crate) const ATTACH_SLOTS: usize = 16;
const NAME_BYTES: usize = 32;

/// What a segment's body holds; the header stores it as its `u32` value.
/// Newer versions may add kinds, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum Kind {
    /// A [`SharedArray`](crate::SharedArray) or a
    /// [`SharedValue`](crate::SharedValue) (an array of one): a lock,
    /// then the elements.
    Array = 1,
    /// A [`SharedAccumulator`](crate::SharedAccumulator): padded `f64`
    /// stripes.
    Accumulator = 2,
    /// A [`Ring`](crate::Ring) (also the two rings of a
    /// [`Pipe`](crate::pipe::Pipe)).
    Ring = 3,
    /// A [`ShmLock`](crate::ShmLock).
    Lock = 4,
    /// A [`SharedMap`](crate::map::SharedMap).
    Map = 5,
    /// A [`SharedList`](crate::list::SharedList).
    List = 6,
    /// A [`Queue`](crate::queue::Queue): lanes of slots, one per producer.
    Queue = 7,
    /// A [`SharedCell`](crate::SharedCell): the writers' lock, a version,
    /// stamped buffers (8; 4 for records over 4 KiB).
    Cell = 8,
}

impl Kind {
    /// The kind stored as `raw` in a header, `None` for a value no shmkit
    /// of this layout version writes.
    pub(crate) fn from_raw(raw: u32) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Array,
            2 => Kind::Accumulator,
            3 => Kind::Ring,
            4 => Kind::Lock,
            5 => Kind::Map,
            6 => Kind::List,
            7 => Kind::Queue,
            8 => Kind::Cell,
            _ => return None,
        })
    }

    /// The kind's name in messages and `shmkit ls`: `"array"`, `"ring"`, ...
    pub fn name(self) -> &'static str {
        match self {
            Kind::Array => "array",
            Kind::Accumulator => "accumulator",
            Kind::Ring => "ring",
            Kind::Lock => "lock",
            Kind::Map => "map",
            Kind::List => "list",
            Kind::Queue => "queue",
            Kind::Cell => "cell",
        }
    }
}

/// Describes an element type well enough that two processes agree on it:
/// its identity ([`ShmType`]) as the header stores it. An opener compares
/// `size`, `align`, `fingerprint` and the name with its own type's; any
/// difference is [`Error::WrongElementType`], naming both sides.
#[derive(Clone, Copy, Debug)]
pub struct ElemDesc {
    /// `size_of` the element type in bytes; at least 1 in a valid header.
    pub size: u32,
    /// `align_of` the element type: a power of two, at most 128.
    pub align: u32,
    /// The type's layout fingerprint ([`TypeInfo::fingerprint`]).
    pub fingerprint: u64,
    /// The type's name, zero-padded; the first 32 bytes of a longer one
    /// (see [`ElemDesc::name`]).
    name: [u8; NAME_BYTES],
    /// The whole identity, for messages; `None` when read from a header.
    ty: Option<&'static TypeInfo>,
}

/// Two descriptions are equal when the header would store the same: the
/// full [`TypeInfo`] a local one carries is only for messages.
impl PartialEq for ElemDesc {
    fn eq(&self, other: &Self) -> bool {
        (self.size, self.align, self.fingerprint, self.name)
            == (other.size, other.align, other.fingerprint, other.name)
    }
}

impl Eq for ElemDesc {}

impl ElemDesc {
    /// The description of `T`: its [`ShmType`] name and fingerprint, and
    /// its size and alignment as the compiler lays it out.
    pub fn of<T: ShmType>() -> Self {
        let ty = T::TYPE;
        let mut d = Self::named(
            &ty.name(),
            size_of::<T>(),
            align_of::<T>(),
            ty.fingerprint(),
        );
        d.ty = Some(ty);
        d
    }

    /// A description from its parts (shmkit's own structures, a map's key
    /// and value pair); names longer than 32 bytes keep their first 32.
    pub(crate) fn named(name: &str, size: usize, align: usize, fingerprint: u64) -> Self {
        let mut stored = [0u8; NAME_BYTES];
        let bytes = &name.as_bytes()[..name.len().min(NAME_BYTES)];
        stored[..bytes.len()].copy_from_slice(bytes);
        ElemDesc {
            size: size as u32,
            align: align as u32,
            fingerprint,
            name: stored,
            ty: None,
        }
    }

    /// One of shmkit's own structures, by a name of its own (`"shmkit.Lock"`).
    pub(crate) fn internal<T>(name: &str) -> Self {
        let (size, align) = (size_of::<T>(), align_of::<T>());
        Self::named(
            name,
            size,
            align,
            crate::identity::internal_fingerprint(name, size, align),
        )
    }

    /// The type name as the header stores it (at most 32 bytes), for
    /// messages.
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_BYTES);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// How messages show it: the whole identity when known (a local type),
    /// else the name, size, alignment and layout fingerprint the header
    /// holds.
    pub(crate) fn describe(&self) -> String {
        let fp = format!("layout {:016x}", self.fingerprint);
        match self.ty {
            Some(t) => format!("{}, {fp}", t.describe()),
            None => format!(
                "{} ({} bytes, align {}), {fp}",
                self.name(),
                self.size,
                self.align
            ),
        }
    }

    /// What to do when a segment holding `found` is opened as `self`.
    pub(crate) fn advice(&self, found: &ElemDesc) -> &'static str {
        let same_name = self.name == found.name;
        let same_layout = (self.size, self.align, self.fingerprint)
            == (found.size, found.align, found.fingerprint);
        match (same_name, same_layout) {
            (true, _) => {
                "the same name with another layout: a field was added, removed, \
                 reordered, renamed or retyped in one program. Build every program from \
                 the same definition, and give a changed layout a new name (a new version \
                 suffix, say /2)"
            }
            (false, true) => {
                "the same layout under another name: if they are the same type, give \
                 both programs the same #[name]"
            }
            (false, false) => "open it with the element type it was created with",
        }
    }
}

/// The shared header at the start of every segment: 256 bytes of atomics.
/// See the module docs for what each field means and who writes it.
///
/// Inside the crate it is reached through a mapping; the loom models build
/// one on the heap with [`Header::new_zeroed`] and race
/// [`publish`](Header::publish) against [`is_ready`](Header::is_ready).
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`], written by the creator in `publish`; anything else (0
    /// included, once `ready` is set) is a foreign or damaged file.
    magic: AtomicU64,
    /// 0 while the creator builds the segment, `READY` once published (set
    /// once, never cleared); openers sleep on it as a futex.
    ready: Futex,
    /// The creator's [`LAYOUT_VERSION`].
    version: AtomicU32,
    /// [`Kind`] as its `u32` value, 1 to 8.
    kind: AtomicU32,
    /// `size_of` the element type, at least 1.
    elem_size: AtomicU32,
    /// `align_of` the element type: a power of two, at most `BODY_ALIGN`.
    elem_align: AtomicU32,
    /// Attachers that found every `attached` slot taken by a live process;
    /// only ever incremented (Relaxed), by any opener.
    attach_overflow: AtomicU32,
    /// The element type's layout fingerprint, [`TypeInfo::fingerprint`].
    elem_fingerprint: AtomicU64,
    /// Elements, stripes or slots: the kind's length, in its valid range.
    len: AtomicU64,
    /// Where the body starts: at least `HEADER_SIZE`, a multiple of
    /// `BODY_ALIGN`.
    data_offset: AtomicU64,
    /// Bytes of the whole segment: `data_offset` plus the kind's body size;
    /// equals the file size.
    total_size: AtomicU64,
    /// The creator's [`ProcToken`] word, never 0 for a real creator.
    creator: AtomicU64,
    /// Creation time in milliseconds since the Unix epoch.
    created_unix_ms: AtomicU64,
    /// The element type's name ([`ShmType`]), zero-padded; the first 32
    /// bytes of a longer one.
    elem_name: [AtomicU8; NAME_BYTES],
    /// [`ProcToken`] words of processes that have the segment open; 0 is a
    /// free slot. Claimed by openers (CAS from 0 or from a dead token),
    /// cleared by their drop.
    attached: [AtomicU64; ATTACH_SLOTS],
    /// Zero; pads the header to `HEADER_SIZE` bytes.
    _reserved: [AtomicU64; 2],
}

// loom's atomics are larger; models keep headers on the heap, never mapped.
const _: () = assert!(crate::sync::MODELLED || size_of::<Header>() == HEADER_SIZE as usize);

/// A local copy of a header: validated when it comes from
/// [`Segment::info`](crate::Segment::info), as read (maybe garbage) in an
/// [`admin::Entry`](crate::admin::Entry) whose `problem` is set. The
/// creator writes every field once, before publishing; nobody changes them
/// afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The body's [`Kind`] as its `u32` value (1 to 8); see
    /// [`HeaderInfo::kind`].
    pub kind_raw: u32,
    /// The element type the body holds.
    pub elem: ElemDesc,
    /// Number of elements (array), stripes (accumulator), slots (ring, map)
    /// or capacity (list); 1 for a value or a lock. Its valid range is the
    /// kind's (a map's is a power of two up to 2^26).
    pub len: u64,
    /// Byte offset of the body from the start of the segment: at least 256
    /// (the header's size), a multiple of 128.
    pub data_offset: u64,
    /// Bytes of the whole segment, header included; equals the file size.
    pub total_size: u64,
    /// The creating process's identity as stored (pid in the low 22 bits,
    /// start time above); 0 if unknown. Read it with
    /// [`admin::Entry::creator`](crate::admin::Entry::creator).
    pub creator: u64,
    /// When the segment was created, in milliseconds since the Unix epoch
    /// (the creator's clock); 0 if the clock was before 1970.
    pub created_unix_ms: u64,
}

impl HeaderInfo {
    /// The body's kind; `None` for a value no shmkit of this version writes.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_raw(self.kind_raw)
    }
}

/// What an opener expects of a segment.
#[derive(Debug)]
pub(crate) struct Expect {
    /// The kind the header must name.
    pub kind: Kind,
    /// `None` accepts any element type (tools that only inspect).
    pub elem: Option<ElemDesc>,
    /// `None` accepts any length.
    pub len: Option<u64>,
    /// The body size the kind needs for a given header, or `None` when the
    /// header's numbers are impossible (overflow, zero, not a power of two).
    pub body_size: fn(&HeaderInfo) -> Option<u64>,
}

/// Round `n` up to a multiple of `BODY_ALIGN`, `None` on overflow.
pub(crate) fn align_body(n: u64) -> Option<u64> {
    n.checked_add(BODY_ALIGN - 1).map(|v| v & !(BODY_ALIGN - 1))
}

impl Header {
    /// A zeroed header, for heap-backed segments (loom models, tests).
    pub fn new_zeroed() -> Self {
        Header {
            magic: AtomicU64::new(0),
            ready: Futex::new(0),
            version: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            elem_size: AtomicU32::new(0),
            elem_align: AtomicU32::new(0),
            attach_overflow: AtomicU32::new(0),
            elem_fingerprint: AtomicU64::new(0),
            len: AtomicU64::new(0),
            data_offset: AtomicU64::new(0),
            total_size: AtomicU64::new(0),
            creator: AtomicU64::new(0),
            created_unix_ms: AtomicU64::new(0),
            elem_name: std::array::from_fn(|_| AtomicU8::new(0)),
            attached: std::array::from_fn(|_| AtomicU64::new(0)),
            _reserved: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Write every field, then publish. Relaxed stores: they are ordered
    /// before the Release store of `ready`, which pairs with the Acquire load
    /// in [`Header::is_ready`].
    pub fn publish(&self, info: &HeaderInfo) {
        self.magic.store(MAGIC, Ordering::Relaxed);
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.kind.store(info.kind_raw, Ordering::Relaxed);
        self.elem_size.store(info.elem.size, Ordering::Relaxed);
        self.elem_align.store(info.elem.align, Ordering::Relaxed);
        self.elem_fingerprint
            .store(info.elem.fingerprint, Ordering::Relaxed);
        for (cell, &b) in self.elem_name.iter().zip(info.elem.name.iter()) {
            cell.store(b, Ordering::Relaxed);
        }
        self.len.store(info.len, Ordering::Relaxed);
        self.data_offset.store(info.data_offset, Ordering::Relaxed);
        self.total_size.store(info.total_size, Ordering::Relaxed);
        self.creator.store(info.creator, Ordering::Relaxed);
        self.created_unix_ms
            .store(info.created_unix_ms, Ordering::Relaxed);
        // Release: publishes every store above; pairs with the Acquire load of
        // `ready` in `is_ready`.
        self.ready.word().store(READY, Ordering::Release);
        self.ready.wake(u32::MAX);
    }

    /// Has the creator published the header? Acquire: pairs with the Release
    /// store in `publish`, so every field read afterwards is the creator's.
    pub fn is_ready(&self) -> bool {
        self.ready.word().load(Ordering::Acquire) == READY
    }

    /// The magic number as it is now (Relaxed: only compared, never trusted).
    pub fn magic(&self) -> u64 {
        self.magic.load(Ordering::Relaxed)
    }

    /// Sleep until `ready` changes from `seen` or `timeout` passes.
    pub fn wait_ready(&self, timeout: std::time::Duration) {
        let seen = self.ready.word().load(Ordering::Relaxed);
        if seen != READY {
            self.ready.wait(seen, Some(timeout));
        }
    }

    /// Copy the header into a local value. Call only after `is_ready()`;
    /// the loads are Relaxed because that Acquire already ordered them.
    pub fn snapshot(&self) -> HeaderInfo {
        let mut name = [0u8; NAME_BYTES];
        for (b, cell) in name.iter_mut().zip(self.elem_name.iter()) {
            *b = cell.load(Ordering::Relaxed);
        }
        HeaderInfo {
            kind_raw: self.kind.load(Ordering::Relaxed),
            elem: ElemDesc {
                size: self.elem_size.load(Ordering::Relaxed),
                align: self.elem_align.load(Ordering::Relaxed),
                fingerprint: self.elem_fingerprint.load(Ordering::Relaxed),
                name,
                ty: None,
            },
            len: self.len.load(Ordering::Relaxed),
            data_offset: self.data_offset.load(Ordering::Relaxed),
            total_size: self.total_size.load(Ordering::Relaxed),
            creator: self.creator.load(Ordering::Relaxed),
            created_unix_ms: self.created_unix_ms.load(Ordering::Relaxed),
        }
    }

    /// The layout version (read after `is_ready`).
    pub(crate) fn version(&self) -> u32 {
        self.version.load(Ordering::Relaxed)
    }

    /// Record `me` as attached: claim a free slot or one whose process died.
    /// Returns the slot index, or `None` (and counts an overflow) when all
    /// slots hold live processes.
    pub(crate) fn attach(&self, me: ProcToken) -> Option<usize> {
        for (i, slot) in self.attached.iter().enumerate() {
            let cur = slot.load(Ordering::Relaxed);
            let free = cur == 0 || ProcToken::from_raw(cur).is_none_or(|t| !t.is_alive());
            // Relaxed: the slot is bookkeeping read by `shmkit gc`; it orders
            // nothing else.
            if free
                && slot
                    .compare_exchange(cur, me.raw(), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(i);
            }
        }
        self.attach_overflow.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Give back slot `i` if it still holds `me`.
    pub(crate) fn detach(&self, slot: usize, me: ProcToken) {
        if let Some(cell) = self.attached.get(slot) {
            // Relaxed: bookkeeping only (see `attach`).
            let _ = cell.compare_exchange(me.raw(), 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Tokens recorded as attached, and how many attachers found no slot.
    pub(crate) fn attached(&self) -> (Vec<ProcToken>, u32) {
        let toks = self
            .attached
            .iter()
            .filter_map(|c| ProcToken::from_raw(c.load(Ordering::Relaxed)))
            .collect();
        (toks, self.attach_overflow.load(Ordering::Relaxed))
    }
}

/// Check a snapshot against what the opener expects and against the file
/// size. Each disagreement is its own error variant.
pub(crate) fn validate(
    name: &str,
    h: &HeaderInfo,
    version: u32,
    file_size: u64,
    e: &Expect,
) -> Result<()> {
    let name_s = || name.to_owned();
    if version != LAYOUT_VERSION {
        return Err(Error::WrongVersion {
            name: name_s(),
            found: version,
            supported: LAYOUT_VERSION,
        });
    }
    if h.kind() != Some(e.kind) {
        return Err(Error::WrongKind {
            name: name_s(),
            found: h.kind().map_or_else(
                || format!("unknown kind {}", h.kind_raw),
                |k| k.name().into(),
            ),
            expected: e.kind.name(),
        });
    }
    if let Some(want) = &e.elem
        && *want != h.elem
    {
        return Err(Error::WrongElementType {
            name: name_s(),
            found: h.elem.describe(),
            expected: want.describe(),
            advice: want.advice(&h.elem),
        });
    }
    if let Some(len) = e.len
        && len != h.len
    {
        return Err(Error::WrongLength {
            name: name_s(),
            found: h.len,
            expected: len,
        });
    }
    let mismatch = |detail: String| Error::SizeMismatch {
        name: name_s(),
        detail,
    };
    if h.elem.size == 0 || !h.elem.align.is_power_of_two() || h.elem.align as u64 > BODY_ALIGN {
        return Err(mismatch(format!(
            "element size {} / alignment {} is impossible",
            h.elem.size, h.elem.align
        )));
    }
    if h.data_offset < HEADER_SIZE || !h.data_offset.is_multiple_of(BODY_ALIGN) {
        return Err(mismatch(format!(
            "body offset {} is not a multiple of {BODY_ALIGN} past the header",
            h.data_offset
        )));
    }
    let body = (e.body_size)(h).ok_or_else(|| {
        mismatch(format!(
            "length {} with {}-byte elements does not describe a valid {}",
            h.len,
            h.elem.size,
            e.kind.name()
        ))
    })?;
    let need = h
        .data_offset
        .checked_add(body)
        .ok_or_else(|| mismatch("sizes overflow".into()))?;
    if h.total_size != need {
        return Err(mismatch(format!(
            "header says {} bytes in all, but its length needs {need}",
            h.total_size
        )));
    }
    if file_size != h.total_size {
        return Err(mismatch(format!(
            "header says {} bytes, the file has {file_size}",
            h.total_size
        )));
    }
    Ok(())
}

//! The library half of the `shmkit` tool: seeing and cleaning up segments,
//! what `shmkit ls | inspect | rm | gc` do (the tool only prints).
//!
//! Listing reads the first 256 bytes of each file in `/dev/shm` with `pread`
//! (never a mapping, so a foreign or truncated file cannot fault us) and keeps
//! only files that start with shmkit's magic number. Removing refuses any file
//! that is not a shmkit segment. A segment is garbage when its creator and
//! every process recorded as attached are dead (pid + start time, so a reused
//! pid does not keep it alive) and no attacher overflowed the record.
//!
//! What does not live here: printing (the `shmkit` tool) and opening a
//! segment as its kind (each kind's `open`).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::header::{self, Expect, HEADER_SIZE, Header, HeaderInfo, Kind, MAGIC};
use crate::process::ProcToken;
use crate::segment::{self, OpenOptions, SHM_DIR, Segment};

/// One shmkit segment found in `/dev/shm`: its header as read (not
/// trusted: see `problem`) and what can be said about its users.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Entry {
    /// The file's name in `/dev/shm` (a valid segment name).
    pub name: String,
    /// The file's size in bytes.
    pub file_size: u64,
    /// The header as read (meaningful when `ready`).
    pub info: HeaderInfo,
    /// Whether the creator published the header (its `ready` word is set).
    pub ready: bool,
    /// The header's layout version (this shmkit reads
    /// [`LAYOUT_VERSION`](crate::header::LAYOUT_VERSION) only).
    pub version: u32,
    /// Processes recorded as attached (up to 16; dead ones included, see
    /// [`Entry::live_attached`]).
    pub attached: Vec<ProcToken>,
    /// How many attachers found all 16 records held by live processes; while
    /// it is not 0 the segment is never garbage.
    pub attach_overflow: u32,
    /// What is wrong with it, if anything (then it is "corrupt").
    pub problem: Option<String>,
    /// The file read (device, inode): removing checks the name still
    /// refers to it.
    file_id: (u64, u64),
}

impl Entry {
    /// The kind's name (`"array"`, ...), or `"kind N"` for an unknown value.
    pub fn kind_name(&self) -> String {
        self.info.kind().map_or_else(
            || format!("kind {}", self.info.kind_raw),
            |k| k.name().into(),
        )
    }

    /// The creator, if the header names one.
    pub fn creator(&self) -> Option<ProcToken> {
        ProcToken::from_raw(self.info.creator)
    }

    /// Whether the creator is still running (the same process, not a newer
    /// one that reused its pid).
    pub fn creator_alive(&self) -> bool {
        self.creator().is_some_and(|t| t.is_alive())
    }

    /// Live attached processes (the creator not counted).
    pub fn live_attached(&self) -> Vec<ProcToken> {
        self.attached
            .iter()
            .copied()
            .filter(|t| t.is_alive())
            .collect()
    }

    /// Nobody can be using it: creator and attachers dead, none overflowed.
    /// The one rule for "stale": [`gc`] removes such segments, and
    /// [`CreateOptions::replace_stale`](crate::CreateOptions::replace_stale)
    /// replaces one. A header still being published may show the magic
    /// number before its creator (`publish` writes the creator last), so an
    /// unpublished header that names no creator is never garbage.
    pub fn is_garbage(&self) -> bool {
        (self.ready || self.creator().is_some())
            && !self.creator_alive()
            && self.live_attached().is_empty()
            && self.attach_overflow == 0
    }

    /// Age from the header's creation time.
    pub fn age(&self) -> Option<Duration> {
        let created = SystemTime::UNIX_EPOCH + Duration::from_millis(self.info.created_unix_ms);
        SystemTime::now().duration_since(created).ok()
    }
}

/// The body-size rule of each kind, for validating a segment of any kind.
fn expect_for(kind: Kind) -> Option<Expect> {
    let body_size = match kind {
        Kind::Array => crate::array::array_body,
        Kind::Accumulator => crate::array::accumulator_body,
        Kind::Ring => <crate::ring::Ring<u8> as crate::object::SegmentObject>::body_size,
        Kind::Lock => crate::lock::body_size,
        Kind::Map => crate::map::map_body,
        Kind::List => crate::list::list_body,
        Kind::Queue => <crate::queue::Queue<u8> as crate::object::SegmentObject>::body_size,
        Kind::Cell => crate::snapshot::cell_body,
    };
    Some(Expect {
        kind,
        elem: None,
        len: None,
        body_size,
    })
}

/// A local, aligned copy of a header's bytes.
#[repr(C, align(128))]
struct RawHeader([u8; HEADER_SIZE as usize]);

/// Read a file's header without mapping it. `Ok(None)`: not a shmkit file.
fn read_entry(name: &str) -> std::io::Result<Option<Entry>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(segment::path_of(name))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.len() < 8 {
        return Ok(None);
    }
    let mut raw = RawHeader([0; HEADER_SIZE as usize]);
    let n = read_up_to(&file, &mut raw.0)?;
    // SAFETY: `raw` is 256 bytes, aligned to 128 (more than Header needs),
    // and lives for this function; Header is all atomic integers, valid for
    // any bytes. Only its loads are used.
    let hdr: &Header = unsafe { &*(raw.0.as_ptr() as *const Header) };
    if hdr.magic() != MAGIC {
        return Ok(None);
    }
    let (attached, attach_overflow) = hdr.attached();
    let mut e = Entry {
        name: name.to_owned(),
        file_size: meta.len(),
        info: hdr.snapshot(),
        ready: hdr.is_ready(),
        version: hdr.version(),
        attached,
        attach_overflow,
        problem: None,
        file_id: (meta.dev(), meta.ino()),
    };
    e.problem = if n < HEADER_SIZE as usize {
        Some(format!(
            "file is {} bytes, shorter than a header",
            meta.len()
        ))
    } else if !e.ready {
        Some("not ready: its creator has not finished building it".into())
    } else {
        match e.info.kind().and_then(expect_for) {
            None => Some(format!("unknown {}", e.kind_name())),
            Some(expect) => header::validate(name, &e.info, e.version, meta.len(), &expect)
                .err()
                .map(|err| err.to_string()),
        }
    };
    Ok(Some(e))
}

fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// What [`list`] found in `/dev/shm`.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Listing {
    /// Every shmkit segment, sorted by name.
    pub entries: Vec<Entry>,
    /// Files this user may not read (another user's, or mode 0600), sorted:
    /// whether they are shmkit segments cannot be told, so they are neither
    /// listed nor silently ignored.
    pub unreadable: Vec<String>,
}

/// Every shmkit segment in `/dev/shm`. Foreign files are skipped; files we
/// may not read are named in [`Listing::unreadable`].
pub fn list() -> Result<Listing> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::from_io("readdir", SHM_DIR, e))?;
    let mut out = Listing::default();
    for ent in dir.flatten() {
        let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if segment::validate_name(&name).is_err() {
            continue;
        }
        match read_entry(&name) {
            Ok(Some(e)) => out.entries.push(e),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => out.unreadable.push(name),
            // Not ours, or gone since readdir.
            _ => {}
        }
    }
    out.entries.sort_by(|a, b| a.name.cmp(&b.name));
    out.unreadable.sort();
    Ok(out)
}

/// Read one named segment's header; `BadMagic` if it is not ours.
pub fn entry(name: &str) -> Result<Entry> {
    segment::validate_name(name)?;
    match read_entry(name) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(Error::BadMagic {
            name: name.to_owned(),
            found: 0,
        }),
        Err(e) => Err(Error::from_io("open", name, e)),
    }
}

/// Open a segment of any kind, fully validated, for inspection.
pub fn open_any(name: &str) -> Result<Segment> {
    let e = entry(name)?;
    let kind = e.info.kind().ok_or_else(|| Error::Corrupt {
        name: name.to_owned(),
        detail: format!("unknown {}", e.kind_name()),
    })?;
    let expect = expect_for(kind).ok_or_else(|| Error::Corrupt {
        name: name.to_owned(),
        detail: format!("this shmkit cannot inspect a {}", kind.name()),
    })?;
    Segment::open(
        name,
        &expect,
        &OpenOptions::new().ready_timeout(Duration::ZERO),
    )
}

/// Remove a shmkit segment by name; refuses files that are not shmkit's.
pub fn remove(name: &str) -> Result<()> {
    entry(name)?;
    segment::unlink(name)
}

/// Remove the file `e` was read from, if the name still refers to it (a
/// segment made at the name since is left alone). What is left between
/// this check and the unlink is a window of two system calls.
fn remove_garbage(e: &Entry) -> Result<()> {
    let now = std::fs::symlink_metadata(segment::path_of(&e.name))
        .map_err(|err| Error::from_io("stat", &e.name, err))?;
    if (now.dev(), now.ino()) != e.file_id {
        return Err(Error::Exists {
            name: e.name.clone(),
        });
    }
    segment::unlink(&e.name)
}

/// For [`CreateOptions::replace_stale`](crate::CreateOptions::replace_stale):
/// remove segment `name` if it is stale by [`gc`]'s rule
/// ([`Entry::is_garbage`]); whether it was removed. A file that is not a
/// shmkit segment, or that cannot be read, is left alone.
pub(crate) fn remove_if_stale(name: &str) -> bool {
    match read_entry(name) {
        Ok(Some(e)) => e.is_garbage() && remove_garbage(&e).is_ok(),
        _ => false,
    }
}

/// Remove every segment whose header names `creator` (pid and start time)
/// as its creator; the names removed. For the worker pool: what a worker
/// that failed created is part of its failed work (see `crate::worker`).
/// Files that cannot be read, or were replaced since read, are left alone.
pub(crate) fn remove_created_by(creator: ProcToken) -> Vec<String> {
    let Ok(listing) = list() else {
        return Vec::new();
    };
    listing
        .entries
        .into_iter()
        .filter(|e| e.creator() == Some(creator) && remove_garbage(e).is_ok())
        .map(|e| e.name)
        .collect()
}

/// What [`gc`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Collected {
    /// Each segment nobody can be using, with the outcome of removing it.
    pub removed: Vec<(Entry, Result<()>)>,
    /// Files that could not be read (and match the prefix), so were not
    /// considered.
    pub unreadable: Vec<String>,
}

/// Segments nobody can be using whose names start with `prefix` (`""`: all).
/// With `dry_run`, only report them.
pub fn gc(dry_run: bool, prefix: &str) -> Result<Collected> {
    let listing = list()?;
    let removed = listing
        .entries
        .into_iter()
        .filter(|e| e.name.starts_with(prefix) && e.is_garbage())
        .map(|e| {
            let r = if dry_run { Ok(()) } else { remove_garbage(&e) };
            (e, r)
        })
        .collect();
    Ok(Collected {
        removed,
        unreadable: listing
            .unreadable
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect(),
    })
}

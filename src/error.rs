//! The crate's error type: one variant per way opening or using a segment can
//! fail, each with a message that says what happened and what to do.
//!
//! What does not live here: the errors of one operation on one kind, which
//! are values of their own (`PushError`, `PopError`, `LockError`,
//! `MapError`, `ListFull`) in their kinds' modules.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::header::{HEADER_SIZE, Kind};
use crate::name::MAX_NAME_LEN;
use crate::segment::MAX_MAPPING;

/// Everything that can go wrong in shmkit. Segment contents are untrusted, so
/// every inconsistency found in them is one of these, never a panic.
///
/// Every variant names the segment (`name`: the name given to `create` or
/// `open`, or `"<anonymous>"` for a memfd segment) and its `Display` says
/// what happened and what to do. Match the variants you can act on and
/// report the rest; new variants may be added, so keep a `_` arm.
///
/// ```
/// use shmkit::{Error, SharedArray};
/// let name = format!("shmkit-doc-error-{}", std::process::id());
/// let counts = match SharedArray::<u64>::open(&name) {
///     Ok(existing) => existing,
///     // Nobody made it yet: be the creator.
///     Err(Error::NotFound { .. }) => SharedArray::<u64>::create(&name, 16)?,
///     Err(e) => return Err(e),
/// };
/// assert_eq!(counts.len(), 16);
/// // Opening it as another element type is refused, with a message saying so.
/// let e = SharedArray::<f32>::open(&name).unwrap_err();
/// assert!(matches!(e, Error::WrongElementType { .. }));
/// println!("{e}");
/// # Ok::<(), Error>(())
/// ```
///
/// `Debug` (what `fn main() -> Result<(), shmkit::Error>` prints on an
/// error) is the variant's name and the same message, not a struct dump:
///
/// ```
/// let e = shmkit::SharedArray::<u64>::open("shmkit-doc-nobody-made-this").unwrap_err();
/// assert!(format!("{e:?}").starts_with("NotFound: no shared segment named"));
/// ```
#[non_exhaustive]
pub enum Error {
    /// No segment by that name exists.
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// Creating failed because the name is taken.
    Exists {
        /// The segment's name.
        name: String,
    },
    /// Something other than a regular file (a symlink, a directory) sits at
    /// the name; shmkit never follows or opens those.
    NotARegularFile {
        /// The segment's name.
        name: String,
    },
    /// The name cannot be used: empty, too long, or holding `/`, `..` or
    /// characters outside `[A-Za-z0-9._-]`.
    BadName {
        /// The name as given.
        name: String,
        /// Which rule it breaks, as a sentence fragment.
        reason: &'static str,
    },
    /// The OS refused access (another user's segment, or mode 0600).
    PermissionDenied {
        /// The segment's name.
        name: String,
    },
    /// The file does not start with shmkit's magic number: it is not ours.
    BadMagic {
        /// The file's name in `/dev/shm`.
        name: String,
        /// The file's first 8 bytes as a `u64` (native byte order), or 0
        /// when not reported (`admin` only says "not ours"); shmkit's is
        /// [`header::MAGIC`](crate::header::MAGIC).
        found: u64,
    },
    /// The segment was made by a shmkit with another layout version.
    WrongVersion {
        /// The segment's name.
        name: String,
        /// The layout version in the segment's header.
        found: u32,
        /// The one version this shmkit reads:
        /// [`header::LAYOUT_VERSION`](crate::header::LAYOUT_VERSION).
        supported: u32,
    },
    /// The segment holds another kind of object (say a ring, not an array).
    WrongKind {
        /// The segment's name.
        name: String,
        /// The kind the header names (`"ring"`, ...), or `"unknown kind N"`.
        found: String,
        /// The kind the caller opened it as.
        expected: &'static str,
    },
    /// The segment's elements are of another type: another name or another
    /// layout (see [`ShmType`](crate::ShmType)).
    WrongElementType {
        /// The segment's name.
        name: String,
        /// The header's element type: its name, size, alignment and layout
        /// fingerprint, as `"acme.Tick/1 (16 bytes, align 8), layout
        /// 5f1c..."`.
        found: String,
        /// The caller's element type, in the same form, with a record's
        /// fields and offsets.
        expected: String,
        /// What differs and what to do, as a sentence.
        advice: &'static str,
    },
    /// The segment has another number of elements than asked for.
    WrongLength {
        /// The segment's name.
        name: String,
        /// The header's length (elements, stripes or slots).
        found: u64,
        /// The length the caller asked for.
        expected: u64,
    },
    /// The file is shorter than a shmkit header: cut short or not ours.
    Truncated {
        /// The segment's name.
        name: String,
        /// The file's size in bytes (1 to 255).
        file_size: u64,
        /// The bytes a header needs: 256.
        needed: u64,
    },
    /// The header's sizes disagree with each other or with the file.
    SizeMismatch {
        /// The segment's name.
        name: String,
        /// Which sizes disagree, with their values.
        detail: String,
    },
    /// Shared state that no correct process can produce (say a ring whose
    /// head is past its tail): someone scribbled on the segment.
    Corrupt {
        /// The segment's name.
        name: String,
        /// What is impossible about it.
        detail: String,
    },
    /// The creator has not finished (or died before finishing) building the
    /// segment within the time allowed.
    NotReady {
        /// The segment's name.
        name: String,
        /// How long the opener waited: its
        /// [`OpenOptions::ready_timeout`](crate::OpenOptions::ready_timeout).
        waited: Duration,
    },
    /// An argument was out of range (a zero length, a size that overflows).
    InvalidArgument {
        /// Which argument, its value and the range it must be in.
        what: String,
    },
    /// A ring's producer role is held by a live process.
    ProducerExists {
        /// The ring's name.
        name: String,
        /// The process holding the producer role (the caller's own pid
        /// when another handle of this process holds it).
        pid: u32,
    },
    /// A ring or queue has a live sole consumer ([`crate::ring::SoleConsumer`],
    /// [`crate::queue::SoleConsumer`]): no other consumer may register while
    /// it lives.
    SoleConsumer {
        /// The ring's or queue's name.
        name: String,
        /// The process holding the sole consumer.
        pid: u32,
    },
    /// A sole consumer was asked for on a ring or queue that already has
    /// another live consumer.
    ConsumerExists {
        /// The ring's or queue's name.
        name: String,
        /// A process holding another consumer.
        pid: u32,
    },
    /// A ring or queue already has the most live consumers it can record.
    TooManyConsumers {
        /// The ring's or queue's name.
        name: String,
        /// The most consumers it records (64 for a ring; a queue's limit is
        /// set at creation, `QueueOptions`).
        max: usize,
    },
    /// A queue already has as many live producers as it has lanes (the
    /// limit set at creation, [`QueueOptions`](crate::queue::QueueOptions)).
    TooManyProducers {
        /// The queue's name.
        name: String,
        /// Its producer limit.
        max: usize,
    },
    /// The ring was closed; it takes no new producer.
    Closed {
        /// The ring's name.
        name: String,
    },
    /// An operating-system call failed.
    Os {
        /// The call that failed (`"mmap"`, `"ftruncate"`, ...).
        op: &'static str,
        /// The segment's name, or the directory for `readdir`.
        name: String,
        /// The OS error; [`Error::errno`] gives its number.
        source: io::Error,
    },
}

impl Error {
    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The variant's name, as `Debug` prints it.
    fn variant(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::Exists { .. } => "Exists",
            Error::NotARegularFile { .. } => "NotARegularFile",
            Error::BadName { .. } => "BadName",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::BadMagic { .. } => "BadMagic",
            Error::WrongVersion { .. } => "WrongVersion",
            Error::WrongKind { .. } => "WrongKind",
            Error::WrongElementType { .. } => "WrongElementType",
            Error::WrongLength { .. } => "WrongLength",
            Error::Truncated { .. } => "Truncated",
            Error::SizeMismatch { .. } => "SizeMismatch",
            Error::Corrupt { .. } => "Corrupt",
            Error::NotReady { .. } => "NotReady",
            Error::InvalidArgument { .. } => "InvalidArgument",
            Error::ProducerExists { .. } => "ProducerExists",
            Error::SoleConsumer { .. } => "SoleConsumer",
            Error::ConsumerExists { .. } => "ConsumerExists",
            Error::TooManyConsumers { .. } => "TooManyConsumers",
            Error::TooManyProducers { .. } => "TooManyProducers",
            Error::Closed { .. } => "Closed",
            Error::Os { .. } => "Os",
        }
    }

    /// `create` asked for more than one mapping can hold: a `kind` of `len`
    /// elements of `elem_size` bytes. The message names the sizes and the
    /// limit.
    pub(crate) fn too_large(kind: Kind, len: u64, elem_size: u32) -> Self {
        let need = len
            .checked_mul(u64::from(elem_size))
            .and_then(|b| b.checked_add(HEADER_SIZE))
            .map_or_else(|| "more than 2^64".to_owned(), |b| format!("at least {b}"));
        Error::InvalidArgument {
            what: format!(
                "{} of {len} elements of {elem_size} bytes needs {need} bytes, more than \
                 the {MAX_MAPPING} bytes one segment can map",
                with_article(kind.name())
            ),
        }
    }

    /// Map an OS error from `op` on segment `name` to the most specific variant.
    pub(crate) fn from_io(op: &'static str, name: &str, source: io::Error) -> Self {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound { name },
            Some(libc::EEXIST) => Error::Exists { name },
            Some(libc::ELOOP) => Error::NotARegularFile { name },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { name },
            _ => Error::Os { op, name, source },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => write!(
                f,
                "no shared segment named {name:?}: check the name, or create it first \
                 (`shmkit ls` lists the segments that exist)"
            ),
            Error::Exists { name } => write!(
                f,
                "a shared segment named {name:?} already exists: open it instead (or use \
                 open_or_create), pick another name, or, if a run that died left it, create \
                 with CreateOptions::replace_stale(true) or remove it (`shmkit gc`)"
            ),
            Error::NotARegularFile { name } => write!(
                f,
                "{name:?} in /dev/shm is a symlink or not a regular file; shmkit refuses \
                 to follow or use it. Remove it if you did not put it there"
            ),
            Error::BadName { name, reason } => write!(
                f,
                "bad segment name {name:?}: {reason}. Use 1 to {} characters from \
                 [A-Za-z0-9._-], not starting with '.'",
                MAX_NAME_LEN
            ),
            Error::PermissionDenied { name } => write!(
                f,
                "permission denied on shared segment {name:?}: it belongs to another user \
                 or its mode forbids access (segments are created 0600 unless asked)"
            ),
            Error::BadMagic { name, found } => write!(
                f,
                "{name:?} is not a shmkit segment (magic {found:#018x}); it was made by \
                 another program, so shmkit will not touch it"
            ),
            Error::WrongVersion {
                name,
                found,
                supported,
            } => write!(
                f,
                "segment {name:?} has layout version {found}, this shmkit reads version \
                 {supported}: use the same shmkit version in every process"
            ),
            Error::WrongKind {
                name,
                found,
                expected,
            } => write!(
                f,
                "segment {name:?} holds {}, not {}: open it with the type it was \
                 created as",
                with_article(found),
                with_article(expected)
            ),
            Error::WrongElementType {
                name,
                found,
                expected,
                advice,
            } => write!(
                f,
                "segment {name:?} holds elements of type {found}; they were asked for as \
                 {expected}: {advice}"
            ),
            Error::WrongLength {
                name,
                found,
                expected,
            } => write!(
                f,
                "segment {name:?} has {found} elements, not {expected}: open it with the \
                 length it was created with (or without a length)"
            ),
            Error::Truncated {
                name,
                file_size,
                needed,
            } => write!(
                f,
                "segment {name:?} is {file_size} bytes, shorter than the {needed} bytes its \
                 header needs: it was cut short or is not a shmkit segment"
            ),
            Error::SizeMismatch { name, detail } => write!(
                f,
                "segment {name:?} is corrupt: {detail}. Remove and recreate it"
            ),
            Error::Corrupt { name, detail } => write!(
                f,
                "segment {name:?} is corrupt: {detail}. Some process wrote garbage into \
                 it; remove and recreate it"
            ),
            Error::NotReady { name, waited } => write!(
                f,
                "segment {name:?} was not ready after {waited:?}: its creator has not \
                 finished building it, or died while doing so (then remove it)"
            ),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::ProducerExists { name, pid } if *pid == std::process::id() => write!(
                f,
                "ring {name:?} already has a producer in this process (pid {pid}): a ring \
                 has one producer; drop that Producer first, or use another ring"
            ),
            Error::ProducerExists { name, pid } => write!(
                f,
                "ring {name:?} already has a producer, process {pid} (alive): a ring has \
                 one producer; stop that one first, or use another ring"
            ),
            Error::SoleConsumer { name, pid } => write!(
                f,
                "{name:?} has a sole consumer, process {pid} (alive): no other \
                 consumer may attach while it lives; drop that SoleConsumer first, or \
                 use consumer() everywhere"
            ),
            Error::ConsumerExists { name, pid } => write!(
                f,
                "{name:?} already has a consumer, process {pid} (alive): a sole \
                 consumer must be the only one; drop the others first, or use \
                 consumer()"
            ),
            Error::TooManyConsumers { name, max } => write!(
                f,
                "{name:?} already has {max} live consumers, the most it records: drop \
                 a consumer first, or share one consumer handle between threads"
            ),
            Error::TooManyProducers { name, max } => write!(
                f,
                "queue {name:?} already has {max} live producers, the limit it was created \
                 with (QueueOptions): drop a producer first, share one producer handle \
                 between threads, or create the queue with more"
            ),
            Error::Closed { name } => write!(
                f,
                "ring {name:?} was closed by its producer: create a new ring to send more"
            ),
            Error::Os { op, name, source } => {
                write!(f, "{op} failed on segment {name:?}: {source}")
            }
        }
    }
}

/// The variant's name and the `Display` message, as in
/// `NotFound: no shared segment named "x": ...`: what `fn main() -> Result`
/// prints, so it says what to do rather than dumping fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {self}", self.variant())
    }
}

/// `word` with its indefinite article: "an array", "a ring", "an unknown
/// kind 9".
pub(crate) fn with_article(word: &str) -> String {
    let an = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if an { "an" } else { "a" })
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

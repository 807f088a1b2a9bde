//! Shared-memory segments: a mapping of a file in `/dev/shm` (named) or of a
//! memfd (anonymous, inherited by spawned children), with a validated header.
//!
//! * Creating uses `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 unless asked:
//!   an existing file, or a symlink planted at the name, is never reused.
//!   The mode is set with `fchmod` after creation, so it is exactly the one
//!   asked for: the creator's umask (which `open` applies) does not filter
//!   it, as it would silently turn a group-shared 0660 into 0640 under the
//!   usual umask 022.
//! * Opening uses `O_NOFOLLOW`, checks the file is a regular file, waits
//!   (bounded) for the creator's `ready` word, then validates the header
//!   against the file size and what the caller expects.
//! * The creating handle removes the name when dropped, unless told to
//!   [`keep`](Segment::keep) it, and only if the name still refers to the
//!   file it created (a successor that reused the name is left alone).
//!
//! Linux only. What does not live here: what the body means (`array`, `ring`).
//!
//! A process that truncates a segment after others mapped it makes their next
//! access past the new end fault with SIGBUS; that is outside what any
//! mapping-based design can prevent. Every open checks the size first.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::header::{self, ElemDesc, Expect, HEADER_SIZE, Header, HeaderInfo, Kind, MAGIC};
use crate::process::ProcToken;
use crate::sync::{AtomicU32, Ordering};

pub use crate::name::MAX_NAME_LEN;

/// Where named segments live.
pub const SHM_DIR: &str = "/dev/shm";
/// Label used in messages for segments without a name.
const ANON: &str = "<anonymous>";

/// How to create a segment: its file mode and whether its name outlives the
/// creating handle. Build it with [`CreateOptions::new`] (or `default()`)
/// and the chainable setters; fields may be added later, so there is no
/// struct literal.
///
/// ```
/// use shmkit::{CreateOptions, SharedArray};
/// let name = format!("shmkit-doc-createopts-{}", std::process::id());
/// // Group members may open it too; it stays after this handle is dropped.
/// let opts = CreateOptions::new().mode(0o660).keep(true);
/// let arr = SharedArray::<u32>::create_with(&name, 8, &opts)?;
/// # drop(arr);
/// # shmkit::segment::unlink(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateOptions {
    /// File mode of a named segment: permission bits only (at most 0o777).
    mode: u32,
    /// Keep the name after the creating handle is dropped.
    keep: bool,
    /// Replace a stale segment found at the name (see `replace_stale`).
    replace_stale: bool,
}

impl CreateOptions {
    /// The defaults: mode 0o600, name removed when the creating handle is
    /// dropped.
    pub const fn new() -> Self {
        CreateOptions {
            mode: 0o600,
            keep: false,
            replace_stale: false,
        }
    }

    /// File mode of a named segment (default 0o600: only this user):
    /// permission bits only (at most 0o777; more fails `create` with
    /// [`Error::InvalidArgument`]), applied exactly, not filtered by the
    /// umask. Every opener maps read-write, so a user that should open the
    /// segment needs read *and* write permission (0o660 for the group,
    /// 0o666 for everyone). Ignored for anonymous segments.
    #[must_use]
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Keep the name in `/dev/shm` after the creating handle is dropped
    /// (default false: the creator's drop removes it).
    #[must_use]
    pub const fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// When the name is taken by a stale segment, remove it and create
    /// anew instead of failing with [`Error::Exists`] (default false).
    /// Stale is what `shmkit gc` removes
    /// ([`admin::Entry::is_garbage`](crate::admin::Entry::is_garbage)):
    /// a shmkit segment whose creator has exited (pid and start time, so a
    /// reused pid does not count) and that no live process is recorded as
    /// having open. A segment any live process uses still fails with
    /// `Exists`; a file that is not a published shmkit segment (another
    /// program's, or one whose creator died before finishing it) is never
    /// removed.
    ///
    /// This is for restarting after a crash: a segment kept (or left) by a
    /// run that died is replaced by the new run's.
    ///
    /// ```
    /// use shmkit::{CreateOptions, SharedArray};
    /// let name = format!("shmkit-doc-replace-{}", std::process::id());
    /// let opts = CreateOptions::new().replace_stale(true);
    /// let arr = SharedArray::<u32>::create_with(&name, 8, &opts)?;
    /// // Its creator (this process) is alive: not stale, so not replaced.
    /// assert!(SharedArray::<u32>::create_with(&name, 8, &opts).is_err());
    /// # drop(arr);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[must_use]
    pub const fn replace_stale(mut self, replace: bool) -> Self {
        self.replace_stale = replace;
        self
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// How to open a segment: how long to wait for a creator that has not
/// finished building it. Build it with [`OpenOptions::new`] (or
/// `default()`) and the chainable setter.
///
/// ```
/// use std::time::Duration;
/// use shmkit::{Error, OpenOptions, SharedArray};
/// let name = format!("shmkit-doc-openopts-{}", std::process::id());
/// // Check once, do not wait: nobody created it.
/// let opts = OpenOptions::new().ready_timeout(Duration::ZERO);
/// match SharedArray::<u32>::open_with(&name, None, &opts) {
///     Err(Error::NotFound { name: missing }) => assert_eq!(missing, name),
///     other => panic!("expected NotFound, got {other:?}"),
/// }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenOptions {
    /// How long to wait for the creator to publish the header.
    ready_timeout: Duration,
}

impl OpenOptions {
    /// The defaults: wait up to 2 s for the creator.
    pub const fn new() -> Self {
        OpenOptions {
            ready_timeout: Duration::from_secs(2),
        }
    }

    /// How long to wait for a creator that has not published the header
    /// yet (default 2 s); after it, opening fails with [`Error::NotReady`].
    /// Zero checks once.
    #[must_use]
    pub const fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Check a segment name: 1..=200 bytes of `[A-Za-z0-9._-]`, not starting with
/// '.', so it can never climb out of `/dev/shm` or hide as a dotfile.
pub fn validate_name(name: &str) -> Result<()> {
    match crate::name::problem(name) {
        None => Ok(()),
        Some(reason) => Err(Error::BadName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// The path of a named segment.
pub(crate) fn path_of(name: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(name)
}

/// The most bytes one segment (header included) may have: what one
/// mapping can address.
pub(crate) const MAX_MAPPING: u64 = isize::MAX as u64;

/// Remove a named segment from `/dev/shm`. Processes that have it mapped keep
/// using it; new opens fail with `NotFound`.
pub fn unlink(name: &str) -> Result<()> {
    validate_name(name)?;
    std::fs::remove_file(path_of(name)).map_err(|e| Error::from_io("unlink", name, e))
}

/// A mapped segment with a validated header.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    file: File,
    name: Option<String>,
    info: HeaderInfo,
    /// The pid of the process whose drop removes the name (the creator,
    /// unless `keep`); 0: nobody's. A copy of the handle in a forked child
    /// has another pid, so the child's drop leaves the parent's name alone.
    /// Process-local; an atomic so that a handle shared between threads (a
    /// ring's) can be told to keep or unlink through `&self`.
    unlink_on_drop: AtomicU32,
    attach_slot: Option<usize>,
}

// SAFETY: the mapping is shared memory reached only through atomics (header)
// or through the body types' own synchronisation; the raw pointer in MmapRaw
// is what makes the auto traits conservative.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` hands out only `&Header` (atomics) and a raw
// body pointer whose users synchronise.
unsafe impl Sync for Segment {}

/// How to build a new segment.
pub(crate) struct Layout {
    pub kind: Kind,
    pub elem: ElemDesc,
    pub len: u64,
    pub body_size: u64,
}

impl Segment {
    /// Create a named segment. `init` fills the body before the header is
    /// published; if it fails, the file is removed again.
    pub(crate) fn create(
        name: &str,
        opts: &CreateOptions,
        layout: Layout,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        validate_name(name)?;
        if opts.mode & !0o777 != 0 {
            return Err(Error::InvalidArgument {
                what: format!(
                    "mode {:o} for {name:?}: only permission bits (at most 777) are allowed",
                    opts.mode
                ),
            });
        }
        let path = path_of(name);
        let create_new = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(opts.mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| match e.raw_os_error() {
                    // O_EXCL fails with EEXIST on a symlink too: say which it is.
                    Some(libc::EEXIST) if is_not_regular(&path) => Error::NotARegularFile {
                        name: name.to_owned(),
                    },
                    _ => Error::from_io("create", name, e),
                })
        };
        let file = match create_new() {
            // Once: if another process re-made the name meanwhile, it is
            // not stale, and `Exists` is the answer.
            Err(Error::Exists { .. })
                if opts.replace_stale && crate::admin::remove_if_stale(name) =>
            {
                create_new()
            }
            other => other,
        }?;
        // fchmod: the exact mode asked for (open's was filtered by the umask).
        // Done before the header is published, so no opener sees another.
        let built = file
            .set_permissions(std::fs::Permissions::from_mode(opts.mode))
            .map_err(|e| Error::from_io("fchmod", name, e))
            .and_then(|()| Self::build(file, Some(name.to_owned()), layout, init));
        match built {
            Ok(seg) => {
                // Relaxed: process-local flag, read by our own drop.
                let owner = if opts.keep { 0 } else { std::process::id() };
                seg.unlink_on_drop.store(owner, Ordering::Relaxed);
                Ok(seg)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Create an anonymous segment (a memfd). Share it with a child process
    /// through [`Segment::share_with`].
    pub(crate) fn create_anonymous(
        layout: Layout,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        // SAFETY: the name is a NUL-terminated literal; memfd_create returns a
        // new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"shmkit-anon".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::from_io(
                "memfd_create",
                ANON,
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Self::build(file, None, layout, init)
    }

    fn build(
        file: File,
        name: Option<String>,
        layout: Layout,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let label = name.as_deref().unwrap_or(ANON).to_owned();
        let data_offset = HEADER_SIZE;
        let total = data_offset
            .checked_add(layout.body_size)
            .filter(|&t| t <= MAX_MAPPING)
            .ok_or_else(|| Error::too_large(layout.kind, layout.len, layout.elem.size))?;
        file.set_len(total)
            .map_err(|e| Error::from_io("ftruncate", &label, e))?;
        let map = map_file(&file, total as usize, &label)?;
        let info = HeaderInfo {
            kind_raw: layout.kind as u32,
            elem: layout.elem,
            len: layout.len,
            data_offset,
            total_size: total,
            creator: ProcToken::current().raw(),
            created_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let seg = Segment {
            map,
            file,
            name,
            info,
            unlink_on_drop: AtomicU32::new(0),
            attach_slot: None,
        };
        init(&seg)?;
        seg.header().publish(&seg.info);
        Ok(seg)
    }

    /// Open a named segment and validate it against `expect`.
    pub(crate) fn open(name: &str, expect: &Expect, opts: &OpenOptions) -> Result<Segment> {
        validate_name(name)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path_of(name))
            .map_err(|e| Error::from_io("open", name, e))?;
        Self::attach_file(file, Some(name.to_owned()), expect, opts)
    }

    /// Open the anonymous segment whose descriptor number a parent passed in
    /// environment variable `var` (see [`Segment::share_with`]).
    pub(crate) fn open_inherited(
        var: &str,
        expect: &Expect,
        opts: &OpenOptions,
    ) -> Result<Segment> {
        let bad = |what: String| Error::InvalidArgument { what };
        let raw = std::env::var(var).map_err(|_| {
            bad(format!(
                "environment variable {var} is not set: was this process spawned with share_with?"
            ))
        })?;
        let fd: i32 = raw
            .trim()
            .parse()
            .map_err(|_| bad(format!("{var}={raw:?} is not a file descriptor number")))?;
        // SAFETY: F_GETFD only queries the descriptor table; it fails with
        // EBADF if `fd` is not open, which we check before borrowing it.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(bad(format!(
                "{var}={fd} does not name an open file descriptor in this process"
            )));
        }
        // SAFETY: `fd` is open (checked above) and stays open for this
        // statement; we only duplicate it, leaving the inherited one alone.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("dup", ANON, e))?;
        Self::attach_file(File::from(owned), None, expect, opts)
    }

    fn attach_file(
        file: File,
        name: Option<String>,
        expect: &Expect,
        opts: &OpenOptions,
    ) -> Result<Segment> {
        let label = name.as_deref().unwrap_or(ANON).to_owned();
        // None: a wait too long for an `Instant` to hold is no limit.
        let deadline = Instant::now().checked_add(opts.ready_timeout);
        let not_ready = || Error::NotReady {
            name: label.clone(),
            waited: opts.ready_timeout,
        };
        // A creator sizes the file in one ftruncate right after creating it;
        // until then the size is 0. Any other size below a header is damage.
        let size = loop {
            let meta = file
                .metadata()
                .map_err(|e| Error::from_io("fstat", &label, e))?;
            if !meta.file_type().is_file() {
                return Err(Error::NotARegularFile { name: label });
            }
            match meta.len() {
                0 if deadline.is_none_or(|d| Instant::now() < d) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                0 => return Err(not_ready()),
                n if n < HEADER_SIZE => {
                    return Err(Error::Truncated {
                        name: label,
                        file_size: n,
                        needed: HEADER_SIZE,
                    });
                }
                n => break n,
            }
        };
        let len = usize::try_from(size).map_err(|_| Error::SizeMismatch {
            name: label.clone(),
            detail: format!("file of {size} bytes cannot be mapped"),
        })?;
        let map = map_file(&file, len, &label)?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page-aligned, and
        // lives as long as `map`; Header is all atomics, valid for any bytes.
        let hdr: &Header = unsafe { &*(map.as_ptr() as *const Header) };
        loop {
            if hdr.is_ready() {
                break;
            }
            let magic = hdr.magic();
            if magic != 0 && magic != MAGIC {
                return Err(Error::BadMagic {
                    name: label,
                    found: magic,
                });
            }
            let slice = Duration::from_millis(20);
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => slice,
            };
            if left.is_zero() {
                return Err(not_ready());
            }
            hdr.wait_ready(left.min(slice));
        }
        if hdr.magic() != MAGIC {
            return Err(Error::BadMagic {
                name: label,
                found: hdr.magic(),
            });
        }
        let info = hdr.snapshot();
        header::validate(&label, &info, hdr.version(), size, expect)?;
        let attach_slot = hdr.attach(ProcToken::current());
        Ok(Segment {
            map,
            file,
            name,
            info,
            unlink_on_drop: AtomicU32::new(0),
            attach_slot,
        })
    }

    /// The shared header.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: every mapping is at least HEADER_SIZE bytes, page-aligned
        // (so aligned for Header), and outlives `&self`; Header is all atomics.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    /// The validated local copy of the header.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// Start of the body: `info().data_offset` bytes into the mapping, with
    /// `total_size - data_offset` bytes behind it (both validated).
    pub(crate) fn body_ptr(&self) -> *mut u8 {
        // SAFETY: data_offset <= total_size == mapping length (validated).
        unsafe { self.map.as_mut_ptr().add(self.info.data_offset as usize) }
    }

    /// The segment's name, `None` if anonymous.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Keep the name in `/dev/shm` after this handle is dropped.
    pub fn keep(&self) {
        // Relaxed: process-local flag, read by our own drop.
        self.unlink_on_drop.store(0, Ordering::Relaxed);
    }

    /// Remove the name from `/dev/shm` now, if it still names this
    /// segment (a name since reused by another segment is left alone).
    /// Processes that have it mapped keep using it; new opens fail with
    /// `NotFound`. Nothing for an anonymous segment.
    pub fn unlink(&self) -> Result<()> {
        self.keep();
        self.remove_name()
    }

    fn remove_name(&self) -> Result<()> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        // Only remove the name if it still refers to our file.
        let path = path_of(name);
        let ours = match (std::fs::symlink_metadata(&path), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            std::fs::remove_file(&path).map_err(|e| Error::from_io("unlink", name, e))?;
        }
        Ok(())
    }

    /// Let a child spawned from `cmd` open this segment: the child inherits
    /// the descriptor, and finds its number in environment variable `var`.
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        use std::os::unix::process::CommandExt;
        let fd = self.file.as_raw_fd();
        cmd.env(var, fd.to_string());
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only fcntl, which is async-signal-safe. It clears close-on-exec
        // on the one descriptor we mean to pass.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(slot) = self.attach_slot {
            self.header().detach(slot, ProcToken::current());
        }
        // Relaxed: process-local flag (see the field).
        let owner = self.unlink_on_drop.load(Ordering::Relaxed);
        if owner != 0 && owner == std::process::id() {
            let _ = self.remove_name();
        }
    }
}

/// Map `len` bytes of `file` shared. Under the loom model checker the
/// facade's atomics are not plain words, so nothing may be mapped: models
/// keep their control blocks on the heap.
fn map_file(file: &File, len: usize, label: &str) -> Result<MmapRaw> {
    if crate::sync::MODELLED {
        return Err(Error::InvalidArgument {
            what: format!("{label}: segments cannot be mapped under the loom model checker"),
        });
    }
    MmapOptions::new()
        .len(len)
        .map_raw(file)
        .map_err(|e| Error::from_io("mmap", label, e))
}

fn is_not_regular(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file())
}

//! Worker processes: what Python's `Process(target=f, args=...)`, `start()`
//! and `join()` do, for a program that shares state through shmkit.
//!
//! A Rust program cannot start a function in a new process without `fork`
//! (unsound in a multi-threaded program), so a worker is a new copy of the
//! program itself (or of another executable) started in a named **role**.
//! The parent describes the workers with [`Spawn`] and gets a [`Pool`]; each
//! child asks [`current`] whether it is a worker, and if so runs its role:
//!
//! ```standalone_crate
//! use shmkit::worker::{self, Spawn};
//! use shmkit::{Ordering, SharedValue};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     if let Some(w) = worker::current()? {
//!         // A child: role "add", index 0..4, its arguments as given below.
//!         let hits = SharedValue::<u64>::open_inherited("HITS")?;
//!         for _ in 0..w.arg::<u64>(0)? {
//!             hits.fetch_add(1, Ordering::Relaxed);
//!         }
//!         return Ok(());
//!     }
//!     let hits = SharedValue::<u64>::create_anonymous(0)?;
//!     let pool = Spawn::new("add").count(4).arg(50_000).share(&hits, "HITS").start()?;
//!     pool.join_all()?; // an error names the worker, its pid and its exit code or signal
//!     assert_eq!(hits.load(Ordering::SeqCst), 200_000);
//!     Ok(())
//! }
//! ```
//!
//! # How a worker learns its part
//!
//! Role, index, count and arguments travel in environment variables
//! (`SHMKIT_WORKER_ROLE`, `..._INDEX`, `..._COUNT`, `..._NARGS`,
//! `..._ARG_<i>`), not on the command line, so the program's own argv is
//! free: a test binary is started with the harness's arguments
//! ([`Spawn::libtest`]) and still finds its role. Segments reach a worker by
//! name (an argument) or as an inherited memfd ([`Spawn::share`], opened in
//! the child with `open_inherited(var)`).
//!
//! # Joining, failures and clean-up
//!
//! [`Pool::join`] waits for every worker and gives one result per worker, in
//! the order they were spawned; [`Pool::join_timeout`] kills those still
//! running at the limit. A worker that exits with a non-zero code (101: it
//! panicked), is killed by a signal, or outlives the limit is a
//! [`WorkerError`] value naming its role, index, pid and code or signal:
//! never a panic in the parent.
//!
//! The rule for segments: **what a failed worker created is removed.** The
//! pool records each worker's identity (pid + start time) while the child
//! is not yet reaped, so it cannot be confused with a later process that
//! reuses the pid; when the worker fails, every segment in `/dev/shm` whose
//! header names it as creator is unlinked and listed in
//! [`WorkerError::removed`]. A worker that ran to its end had the chance to
//! remove (or deliberately [`keep`](crate::SharedArray::keep)) its
//! segments; one that died did not, and had it exited normally its
//! creating handles would have removed the names. Unlinking a name does not
//! disturb processes that have the segment open. A program that wants a
//! crashed worker's segments for a restart turns this off with
//! [`Spawn::clean_up_on_failure`]`(false)`.
//!
//! Dropping a [`Pool`] kills (SIGKILL) and reaps the workers still running,
//! and cleans up after them the same way: no zombie, no orphan. And since a
//! parent killed outright runs no drop, each worker by default asks the
//! kernel to kill it when its parent dies ([`Spawn::die_with_parent`]).
//!
//! Linux only (`prctl`, `pidfd_open`, `/proc`), like the rest of the crate.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::ProcToken;

mod error;
mod pool;
pub use error::{Failure, WorkerError, WorkerId};
pub use pool::Pool;

/// The environment variable that holds a worker's role; the others are
/// named after it (`SHMKIT_WORKER_INDEX`, `SHMKIT_WORKER_COUNT`,
/// `SHMKIT_WORKER_NARGS`, `SHMKIT_WORKER_ARG_0`, ...).
pub const ROLE_VAR: &str = "SHMKIT_WORKER_ROLE";
const INDEX_VAR: &str = "SHMKIT_WORKER_INDEX";
const COUNT_VAR: &str = "SHMKIT_WORKER_COUNT";
const NARGS_VAR: &str = "SHMKIT_WORKER_NARGS";
const ARG_VAR: &str = "SHMKIT_WORKER_ARG_";

/// The arguments libtest needs to run one test, verbatim and alone, with
/// its output shown: what [`Spawn::libtest`] passes.
const LIBTEST_ARGS: [&str; 4] = ["--exact", "--nocapture", "--test-threads=1", "-q"];

/// What a worker process was started to do: its role, its index among the
/// workers of that role, how many there are, and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    role: String,
    index: usize,
    count: usize,
    args: Vec<String>,
}

/// The calling process's part if it was started as a worker ([`Spawn`]);
/// `Ok(None)` in a process that was not. Same as [`Worker::current`].
pub fn current() -> Result<Option<Worker>> {
    Worker::current()
}

impl Worker {
    /// The calling process's part if it was started as a worker; `Ok(None)`
    /// if not. An error when the role is set but the other variables are
    /// missing or malformed (set by hand, or by another program): running
    /// as the parent then would spawn workers again.
    pub fn current() -> Result<Option<Worker>> {
        let Some(role) = std::env::var_os(ROLE_VAR) else {
            return Ok(None);
        };
        let text = |var: String| -> Result<String> {
            std::env::var(&var).map_err(|e| Error::InvalidArgument {
                what: format!("worker environment variable {var}: {e} (was this process started by shmkit::worker::Spawn?)"),
            })
        };
        let number = |var: &str| -> Result<usize> {
            let raw = text(var.to_owned())?;
            raw.parse().map_err(|_| Error::InvalidArgument {
                what: format!("worker environment variable {var}={raw:?} is not a whole number"),
            })
        };
        let role = role.into_string().map_err(|raw| Error::InvalidArgument {
            what: format!("worker environment variable {ROLE_VAR}={raw:?} is not UTF-8"),
        })?;
        let (index, count, nargs) = (number(INDEX_VAR)?, number(COUNT_VAR)?, number(NARGS_VAR)?);
        let args = (0..nargs)
            .map(|i| text(format!("{ARG_VAR}{i}")))
            .collect::<Result<_>>()?;
        Ok(Some(Worker {
            role,
            index,
            count,
            args,
        }))
    }

    /// The role it was spawned in ([`Spawn::new`]).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Its index among the workers of one [`Spawn`]: `0..count()`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers that [`Spawn`] started.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Its arguments ([`Spawn::arg`]), as text.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Argument `i` parsed as a `T` (`w.arg::<u64>(0)?`, `w.arg::<String>(1)?`);
    /// an error naming the argument when it is missing or does not parse.
    pub fn arg<T: FromStr>(&self, i: usize) -> Result<T> {
        let raw = self.args.get(i).ok_or_else(|| Error::InvalidArgument {
            what: format!(
                "worker {:?} #{} has {} arguments, no argument {i}",
                self.role,
                self.index,
                self.args.len()
            ),
        })?;
        raw.parse().map_err(|_| Error::InvalidArgument {
            what: format!(
                "worker {:?} #{} argument {i} = {raw:?} is not a {}",
                self.role,
                self.index,
                std::any::type_name::<T>()
            ),
        })
    }
}

/// Something a worker can inherit: a segment-backed object whose `share_with`
/// passes its descriptor, for the child's `open_inherited(var)`.
pub trait Share {
    /// Let the child that `cmd` spawns open this object with
    /// `open_inherited(var)`.
    fn share_with(&self, cmd: &mut Command, var: &str);
}

macro_rules! share_via_object {
    ($([$($g:tt)*] $ty:ty),* $(,)?) => {$(
        impl<$($g)*> Share for $ty {
            fn share_with(&self, cmd: &mut Command, var: &str) {
                crate::object::SegmentObject::share_with(self, cmd, var)
            }
        }
    )*};
}

share_via_object!(
    [T: crate::cell::Element] crate::array::SharedArray<T>,
    [T: crate::cell::Element] crate::array::SharedValue<T>,
    [] crate::array::SharedAccumulator,
    [] crate::lock::ShmLock,
    [T: crate::ShmType] crate::ring::Ring<T>,
    [T: crate::ShmType] crate::queue::Queue<T>,
    [K: crate::ShmType + PartialEq, V: crate::cell::Element] crate::map::SharedMap<K, V>,
    [T: crate::ShmType] crate::list::SharedList<T>,
    [T: crate::ShmType] crate::snapshot::SharedCell<T>,
);

impl Share for crate::pipe::Pipe {
    fn share_with(&self, cmd: &mut Command, var: &str) {
        crate::pipe::Pipe::share_with(self, cmd, var)
    }
}

impl Share for crate::segment::Segment {
    fn share_with(&self, cmd: &mut Command, var: &str) {
        crate::segment::Segment::share_with(self, cmd, var)
    }
}

type Hook<'a> = Box<dyn Fn(&mut Command, usize) + 'a>;

/// How to start workers: a role, how many, their arguments, what they
/// inherit, and which executable. Build it with the chainable setters, then
/// [`start`](Self::start) it (or [`Pool::spawn`] several into one pool).
pub struct Spawn<'a> {
    role: String,
    count: usize,
    args: Vec<String>,
    exe: Option<PathBuf>,
    exe_args: Vec<OsString>,
    hooks: Vec<Hook<'a>>,
    clean_up: bool,
    die_with_parent: bool,
}

impl fmt::Debug for Spawn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawn")
            .field("role", &self.role)
            .field("count", &self.count)
            .field("args", &self.args)
            .field("exe", &self.exe)
            .field("exe_args", &self.exe_args)
            .field("hooks", &self.hooks.len())
            .field("clean_up", &self.clean_up)
            .field("die_with_parent", &self.die_with_parent)
            .finish()
    }
}

impl<'a> Spawn<'a> {
    /// One worker in `role`, running this program (`current_exe`), with no
    /// arguments; failed workers' segments are removed, and workers die
    /// with the parent.
    pub fn new(role: &str) -> Self {
        Spawn {
            role: role.to_owned(),
            count: 1,
            args: Vec::new(),
            exe: None,
            exe_args: Vec::new(),
            hooks: Vec::new(),
            clean_up: true,
            die_with_parent: true,
        }
    }

    /// Start `n` workers (indices `0..n`), all with the same arguments.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Add an argument for the workers ([`Worker::arg`] reads it back).
    pub fn arg(mut self, a: impl ToString) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Add several arguments.
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: ToString,
    {
        self.args.extend(args.into_iter().map(|a| a.to_string()));
        self
    }

    /// Let the workers inherit `obj` (an anonymous or named segment): the
    /// child opens it with `open_inherited(var)`.
    pub fn share(self, obj: &'a (impl Share + ?Sized), var: &str) -> Self {
        let var = var.to_owned();
        self.configure(move |cmd, _| obj.share_with(cmd, &var))
    }

    /// Run `exe` instead of this program (`current_exe`).
    pub fn exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.exe = Some(exe.into());
        self
    }

    /// Command-line arguments for the executable itself (not the worker's
    /// arguments, which travel in the environment).
    pub fn exe_args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        self.exe_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The workers are copies of a test binary (libtest's harness): run
    /// only the test `test` in them (`test --exact --nocapture
    /// --test-threads=1 -q`). That test calls [`current`] and runs the role.
    pub fn libtest(self, test: &str) -> Self {
        self.exe_args(std::iter::once(test).chain(LIBTEST_ARGS))
    }

    /// Change each worker's `Command` before it is spawned (environment,
    /// standard streams, ...); `f` gets the worker's index.
    pub fn configure(mut self, f: impl Fn(&mut Command, usize) + 'a) -> Self {
        self.hooks.push(Box::new(f));
        self
    }

    /// Whether a failed worker's segments are removed (default: yes; see
    /// the [module docs](self)).
    pub fn clean_up_on_failure(mut self, yes: bool) -> Self {
        self.clean_up = yes;
        self
    }

    /// Whether the kernel kills a worker (SIGKILL) when its parent dies
    /// (default: yes; `prctl(PR_SET_PDEATHSIG)`). Linux ties this to the
    /// parent *thread* that spawned it: spawn from a thread that outlives
    /// the pool (the main thread, a test's thread), or turn it off.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    /// The command that starts worker `index`, not yet spawned: for a
    /// program that spawns it itself and hands the child to
    /// [`Pool::adopt`].
    pub fn command(&self, index: usize) -> std::result::Result<Command, WorkerError> {
        let exe = match &self.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe().map_err(|e| self.failed(index, Failure::Spawn(e)))?,
        };
        let mut cmd = Command::new(exe);
        cmd.args(&self.exe_args)
            .env(ROLE_VAR, &self.role)
            .env(INDEX_VAR, index.to_string())
            .env(COUNT_VAR, self.count.to_string())
            .env(NARGS_VAR, self.args.len().to_string());
        for (i, a) in self.args.iter().enumerate() {
            cmd.env(format!("{ARG_VAR}{i}"), a);
        }
        for hook in &self.hooks {
            hook(&mut cmd, index);
        }
        if self.die_with_parent {
            // SAFETY: getpid has no preconditions.
            let parent = unsafe { libc::getpid() };
            // SAFETY: the closure runs in the child between fork and exec
            // and calls only prctl and getppid, both async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent died before the prctl: nobody will reap
                    // this worker's results, so do not start it.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }

    /// Start the workers; a pool holding them. If one cannot be started,
    /// the ones already started are killed and reaped (the pool is dropped)
    /// and the error says which could not.
    pub fn start(self) -> std::result::Result<Pool, WorkerError> {
        let mut pool = Pool::new();
        pool.spawn(&self)?;
        Ok(pool)
    }

    fn failed(&self, index: usize, failure: Failure) -> WorkerError {
        WorkerError {
            id: WorkerId {
                role: self.role.clone(),
                index,
                pid: 0,
            },
            failure,
            removed: Vec::new(),
        }
    }
}

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

/// Which worker: its role, its index in that role, its pid (0 for one that
/// never started).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WorkerId {
    /// The role it was spawned in.
    pub role: String,
    /// Its index among the workers of its [`Spawn`].
    pub index: usize,
    /// Its process id (0: it never started).
    pub pid: u32,
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {:?} #{}", self.role, self.index)?;
        if self.pid != 0 {
            write!(f, " (pid {})", self.pid)?;
        }
        Ok(())
    }
}

/// How a worker failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure {
    /// It could not be started (the executable, `fork`, `exec`).
    Spawn(std::io::Error),
    /// It exited with this non-zero code (101: a Rust panic).
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It was still running at the join's time limit, and was killed.
    TimedOut(Duration),
    /// Waiting for it failed (should not happen; it was killed and reaped).
    Wait(std::io::Error),
}

/// A worker that did not run to a successful end: which one, how, and the
/// segments it created that were removed after it. Its `Debug` is its
/// message, so a `main` returning it prints something to act on.
#[non_exhaustive]
pub struct WorkerError {
    /// Which worker.
    pub id: WorkerId,
    /// What happened to it.
    pub failure: Failure,
    /// The segments it had created, removed after its failure.
    pub removed: Vec<String>,
}

impl WorkerError {
    /// Its exit code, if it exited (101: it panicked).
    pub fn code(&self) -> Option<i32> {
        match self.failure {
            Failure::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// The signal that killed it, if one did (9 also after a time-out).
    pub fn signal(&self) -> Option<i32> {
        match self.failure {
            Failure::Signaled(s) => Some(s),
            Failure::TimedOut(_) => Some(libc::SIGKILL),
            _ => None,
        }
    }

    /// Whether it panicked (exit code 101, what a Rust panic in `main`
    /// exits with).
    pub fn panicked(&self) -> bool {
        self.code() == Some(101)
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.id)?;
        match &self.failure {
            Failure::Spawn(e) => write!(f, "could not be started: {e}")?,
            Failure::Exited(101) => write!(f, "panicked (exit code 101; its stderr says where)")?,
            Failure::Exited(c) => write!(f, "failed: exit code {c}")?,
            Failure::Signaled(s) => write!(f, "was killed by signal {s} ({})", signal_name(*s))?,
            Failure::TimedOut(d) => write!(f, "was still running after {d:?}; killed (SIGKILL)")?,
            Failure::Wait(e) => write!(f, "could not be waited for: {e}")?,
        }
        if !self.removed.is_empty() {
            write!(
                f,
                "; removed the segments it created: {}",
                self.removed.join(", ")
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerError: {self}")
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Spawn(e) | Failure::Wait(e) => Some(e),
            _ => None,
        }
    }
}

/// One started worker, until it is reaped.
struct Running {
    child: Child,
    id: WorkerId,
    /// Its identity, read before it could be reaped; `None` if `/proc` did
    /// not tell (then nothing is cleaned up after it).
    token: Option<ProcToken>,
    /// Becomes readable when the process exits (`None`: pidfd_open is not
    /// available; then it is polled).
    pidfd: Option<OwnedFd>,
    clean_up: bool,
    /// Set once it was reaped: how it ended.
    done: Option<std::result::Result<(), WorkerError>>,
}

impl Running {
    fn new(child: Child, role: &str, index: usize, clean_up: bool) -> Self {
        let pid = child.id();
        // The child is not reaped until we wait for it, so its pid names it
        // (running or a zombie): its token and pidfd are its own.
        let token = ProcToken::of_unreaped_child(pid);
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a non-negative result is a new descriptor nothing else owns.
        let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) });
        Running {
            child,
            id: WorkerId {
                role: role.to_owned(),
                index,
                pid,
            },
            token,
            pidfd,
            clean_up,
            done: None,
        }
    }

    /// Reap it if it has exited; whether it has.
    fn try_reap(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.finish(Ok(st), None);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.finish(Err(e), None);
                true
            }
        }
    }

    /// Kill it (if still running) and reap it; `why` says why it was killed.
    fn kill_and_reap(&mut self, why: Option<Failure>) {
        if self.done.is_some() {
            return;
        }
        let _ = self.child.kill();
        let st = self.child.wait();
        self.finish(st, why);
    }

    fn finish(&mut self, st: std::io::Result<ExitStatus>, why: Option<Failure>) {
        let failure = match (why, st) {
            (Some(w), _) => Some(w),
            (None, Err(e)) => Some(Failure::Wait(e)),
            (None, Ok(st)) => match (st.code(), st.signal()) {
                (Some(0), _) => None,
                (Some(c), _) => Some(Failure::Exited(c)),
                (None, Some(s)) => Some(Failure::Signaled(s)),
                (None, None) => Some(Failure::Exited(-1)),
            },
        };
        self.pidfd = None;
        self.done = Some(match failure {
            None => Ok(()),
            Some(failure) => {
                let removed = match (self.clean_up, self.token) {
                    (true, Some(t)) => crate::admin::remove_created_by(t),
                    _ => Vec::new(),
                };
                Err(WorkerError {
                    id: self.id.clone(),
                    failure,
                    removed,
                })
            }
        });
    }
}

/// Started workers, until joined. Dropping it kills (SIGKILL) and reaps the
/// workers still running and removes the segments they created: no zombie
/// and no orphan is left behind.
pub struct Pool {
    workers: Vec<Running>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.workers.iter().map(|w| &w.id))
            .finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool {
    /// An empty pool, to [`spawn`](Self::spawn) workers of several roles into.
    pub fn new() -> Self {
        Pool {
            workers: Vec::new(),
        }
    }

    /// Start the workers `spec` describes and add them to this pool. On an
    /// error, the workers of `spec` started before it stay in the pool (to
    /// be joined or dropped).
    pub fn spawn(&mut self, spec: &Spawn<'_>) -> std::result::Result<(), WorkerError> {
        for index in 0..spec.count {
            let child = spec
                .command(index)?
                .spawn()
                .map_err(|e| spec.failed(index, Failure::Spawn(e)))?;
            self.workers
                .push(Running::new(child, &spec.role, index, spec.clean_up));
        }
        Ok(())
    }

    /// Take charge of a child spawned elsewhere (from
    /// [`Spawn::command`], say) as worker `index` of `role`: it is joined,
    /// reported, cleaned up after and killed on drop like the others.
    pub fn adopt(&mut self, child: Child, role: &str, index: usize) {
        self.workers.push(Running::new(child, role, index, true));
    }

    /// The workers, in the order they were spawned.
    pub fn ids(&self) -> impl Iterator<Item = &WorkerId> {
        self.workers.iter().map(|w| &w.id)
    }

    /// How many workers it holds.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether it holds no worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Send SIGKILL to the `i`-th worker (in spawn order), without reaping
    /// it: a later join reports it killed by signal 9. An error if `i` is
    /// out of range; nothing if it was already reaped.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        let w = self.workers.get_mut(i).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no such worker")
        })?;
        if w.done.is_some() {
            return Ok(());
        }
        w.child.kill()
    }

    /// Wait for every worker; one result per worker, in spawn order: its
    /// id, or how it failed.
    pub fn join(mut self) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        self.wait_until(None);
        self.results()
    }

    /// [`join`](Self::join), but kill (SIGKILL) the workers still running
    /// after `limit`, and report those as [`Failure::TimedOut`].
    pub fn join_timeout(
        mut self,
        limit: Duration,
    ) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        let deadline = Instant::now().checked_add(limit);
        if !self.wait_until(deadline) {
            for w in &mut self.workers {
                w.kill_and_reap(Some(Failure::TimedOut(limit)));
            }
        }
        self.results()
    }

    /// Wait for every worker; `Ok` if all succeeded, else the first failure
    /// (in spawn order). Every worker has been reaped either way.
    pub fn join_all(self) -> std::result::Result<(), WorkerError> {
        self.join().into_iter().try_for_each(|r| r.map(drop))
    }

    fn results(mut self) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        std::mem::take(&mut self.workers)
            .into_iter()
            .map(|mut w| {
                let id = w.id.clone();
                w.done.take().unwrap_or(Ok(())).map(|()| id)
            })
            .collect()
    }

    /// Reap workers as they exit until all have or `deadline` passes;
    /// whether all have. Waits in poll(2) on their pidfds (no busy wait);
    /// without pidfds, checks every 10 ms.
    fn wait_until(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let mut unpollable = false;
            for w in &mut self.workers {
                if w.try_reap() {
                    continue;
                }
                match &w.pidfd {
                    Some(fd) => fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    }),
                    None => unpollable = true,
                }
            }
            if fds.is_empty() && !unpollable {
                return true;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return false,
                },
            };
            let mut ms = left.map_or(-1, |l| l.as_millis().clamp(1, i32::MAX as u128) as i32);
            if unpollable {
                ms = if ms < 0 { 10 } else { ms.min(10) };
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the
            // duration of the call. EINTR and the like just loop again.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.kill_and_reap(None);
        }
    }
}

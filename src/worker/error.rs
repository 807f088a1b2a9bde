//! How a worker is named in reports, and how it failed: [`WorkerId`],
//! [`Failure`], [`WorkerError`].

use std::fmt;
use std::time::Duration;

/// Which worker: its role, its index in that role, its pid (0 for one that
/// never started).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WorkerId {
    /// The role it was spawned in.
    pub role: String,
    /// Its index among the workers of its [`Spawn`](super::Spawn).
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

//! Helpers shared by the integration tests: unique segment names, cleanup
//! that runs even when a test fails, and re-running this test binary as a
//! child process.
#![allow(dead_code)]
// A test-name counter, not algorithm code: loom need not see it.
#![allow(clippy::disallowed_types)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The start of every name this test process makes (see [`unique`]).
pub fn prefix() -> String {
    format!("shmkit-test-{}-", std::process::id())
}

/// A name no other test (or test run) uses: prefix, pid, tag, counter.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}{tag}-{}", prefix(), N.fetch_add(1, Ordering::Relaxed))
}

/// Removes `/dev/shm/<name>` when dropped, whatever the test did.
pub struct Cleanup(pub String);

impl Cleanup {
    pub fn new(tag: &str) -> Self {
        Cleanup(unique(tag))
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(&self.0)
    }
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// Environment variable that turns this test binary into a child.
pub const ROLE: &str = "SHMKIT_TEST_CHILD_ROLE";

/// The child's role, if this process is a child.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A command that re-runs this test binary as a child: it runs only the test
/// `entry` (which must call `child_role()` and act on it).
pub fn child_command(entry: &str, role: &str) -> Command {
    child_command_at(&std::env::current_exe().expect("current_exe"), entry, role)
}

/// [`child_command`] running `exe`, a copy of this test binary.
pub fn child_command_at(exe: &std::path::Path, entry: &str, role: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// How long any child may take before the test calls it hung. Far above
/// what a passing child needs (under a second), so only a real hang trips it,
/// and then the test fails with a message instead of wedging the suite.
pub const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// Kills (SIGKILL) and reaps a child when dropped, so a failing test leaves
/// no process behind.
pub struct Reaper(pub Option<Child>);

impl Reaper {
    /// Wait for the child to exit (at most [`CHILD_LIMIT`]) and assert that
    /// it succeeded. A child still running at the limit is killed and the
    /// test fails.
    pub fn wait_ok(mut self) {
        let mut c = self.0.take().unwrap();
        let exited = exits_within(&c, CHILD_LIMIT);
        if !exited {
            let _ = c.kill();
        }
        let st = c.wait().unwrap();
        assert!(
            exited,
            "child {} hung: killed after {CHILD_LIMIT:?}",
            c.id()
        );
        assert!(st.success(), "child failed: {st}");
    }
}

/// Block until `child` exits or `limit` passes, without reaping it: poll(2)
/// on a pidfd, which becomes readable when the process exits.
fn exits_within(child: &Child, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(raw >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: `raw` is a new descriptor that nothing else owns; OwnedFd
    // closes it on every path out, panics included.
    let owned = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    let fd = owned.as_raw_fd();
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n > 0 {
            return true;
        }
        if n == 0 {
            return false;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The user `nobody`: the "other user" of the permission tests.
pub const NOBODY: u32 = 65534;

/// Whether the tests run as root (who ignores file modes).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A copy of an executable that any user may run (the build directory may
/// sit below a directory that `nobody` cannot enter). Removed on drop.
pub struct ExeCopy(PathBuf);

impl ExeCopy {
    pub fn new(exe: &std::path::Path) -> Self {
        let path = std::env::temp_dir().join(unique("exe"));
        // Copied by another process: had this multi-threaded process written
        // the file, a child forked meanwhile by another test could still hold
        // the write descriptor at our exec, which then fails with ETXTBSY.
        let st = Command::new("install")
            .arg("-m0755")
            .arg(exe)
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "install: {st}");
        ExeCopy(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ExeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

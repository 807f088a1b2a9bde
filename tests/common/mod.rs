//! Helpers shared by the integration tests: unique segment names, cleanup
//! that runs even when a test fails, and re-running this test binary as a
//! child process (through the worker helper, `shmkit::worker`).
#![allow(dead_code)]
// A test-name counter, not algorithm code: loom need not see it.
#![allow(clippy::disallowed_types)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmkit::worker::{Pool, Spawn};

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

/// Environment variable that turns this test binary into a child: the worker
/// helper's role variable (`shmkit::worker`).
pub const ROLE: &str = shmkit::worker::ROLE_VAR;

/// The child's role, if this process is a child (started by
/// [`child_command`] or any `shmkit::worker::Spawn`).
pub fn child_role() -> Option<String> {
    shmkit::worker::current()
        .expect("worker environment")
        .map(|w| w.role().to_owned())
}

/// A command that re-runs this test binary as a child: it runs only the test
/// `entry` (which must call `child_role()` and act on it). Built by the
/// worker helper (`Spawn::libtest`), with stdin and stdout closed.
pub fn child_command(entry: &str, role: &str) -> Command {
    child_command_at(&std::env::current_exe().expect("current_exe"), entry, role)
}

/// [`child_command`] running `exe`, a copy of this test binary.
pub fn child_command_at(exe: &std::path::Path, entry: &str, role: &str) -> Command {
    let mut cmd = child_spawn(entry, role)
        .exe(exe)
        .command(0)
        .expect("command");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// The worker helper's description of children running the test `entry` in
/// `role` (stdin and stdout closed): add `.count(n)`, `.arg(..)`,
/// `.share(..)`, then `.start()` for a pool.
///
/// Without `die_with_parent`: the kernel ties it to the spawning *thread*,
/// and a test may spawn from a short-lived thread; a test's children are
/// killed by its `Reaper` or pool instead (and CI's `timeout` kills the
/// whole process group).
pub fn child_spawn<'a>(entry: &str, role: &str) -> Spawn<'a> {
    Spawn::new(role)
        .libtest(entry)
        .die_with_parent(false)
        .configure(|cmd, _| {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        })
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
    /// test fails. The worker helper's pool joins it: a failure names the
    /// pid and the exit code or signal, and removes what the child created.
    pub fn wait_ok(mut self) {
        let child = self.0.take().unwrap();
        let mut pool = Pool::new();
        pool.adopt(child, "child", 0);
        for r in pool.join_timeout(CHILD_LIMIT) {
            if let Err(e) = r {
                panic!("{e}");
            }
        }
    }
}

/// Join every worker of `pool` within [`CHILD_LIMIT`], asserting that each
/// succeeded.
pub fn join_ok(pool: Pool) {
    for r in pool.join_timeout(CHILD_LIMIT) {
        if let Err(e) = r {
            panic!("{e}");
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            // The pool's drop kills and reaps it.
            Pool::new().adopt(c, "child", 0);
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

/// Poll `cond`, a state another process or thread makes true, until it
/// holds; the test fails after `limit` naming `what`. A deadline on a
/// condition, not a sleep standing in for one.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

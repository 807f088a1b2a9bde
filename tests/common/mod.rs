//! Helpers shared by the integration tests: unique segment names, cleanup
//! that runs even when a test fails, and re-running this test binary as a
//! child process.
#![allow(dead_code)]
// A test-name counter, not algorithm code: loom need not see it.
#![allow(clippy::disallowed_types)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A name no other test (or test run) uses: prefix, pid, tag, counter.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "shmkit-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
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
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// Kills (SIGKILL) and reaps a child when dropped, so a failing test leaves
/// no process behind.
pub struct Reaper(pub Option<Child>);

impl Reaper {
    pub fn wait_ok(mut self) {
        let mut c = self.0.take().unwrap();
        let st = c.wait().unwrap();
        assert!(st.success(), "child failed: {st}");
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

//! Who is alive: a process identity that survives pid reuse. Used for the
//! header's creator and attached records, ring roles and map slot owners;
//! what does not live here: reading `/proc` (in `sync`, see below).
//!
//! A [`ProcToken`] packs a pid with the process's start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot) into one `u64`, so it can be
//! claimed or cleared with a single CAS in shared memory. A pid that was
//! reused by a newer process has another start time, so it is not "alive".
//! A zombie (killed but not yet reaped) is dead: it will never run again.
//!
//! The OS side (reading `/proc`) is in [`crate::sync::liveness`], so that
//! under loom a model decides who is alive and death paths are model-checked.

use crate::sync::liveness;

/// Bits of the token that hold the pid.
const PID_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
/// Start times are kept modulo 2^42 ticks: 1.4e10 s at 100 Hz, ample.
const START_MASK: u64 = (1 << (64 - PID_BITS)) - 1;

/// A process identity: pid and start time in one word. Never zero for a real
/// process (pid 0 is not a user process), so 0 means "nobody" in shared slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcToken(u64);

impl ProcToken {
    /// The token stored in a shared word, or `None` for 0 ("nobody") or a
    /// word whose pid bits are 0 (no user process has pid 0).
    pub(crate) fn from_raw(raw: u64) -> Option<Self> {
        (raw != 0 && raw & PID_MASK != 0).then_some(Self(raw))
    }

    /// The word to store in shared memory: pid in the low 22 bits, start
    /// time above. Never 0.
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    /// The process id (1 to 2^22 - 1, Linux's `pid_max` limit).
    pub fn pid(self) -> u32 {
        (self.0 & PID_MASK) as u32
    }

    /// The process's start time in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`), modulo 2^42; divide by [`ticks_per_second`] for
    /// seconds.
    pub fn start_ticks(self) -> u64 {
        self.0 >> PID_BITS
    }

    fn pack(pid: u32, start: u64) -> Self {
        Self((u64::from(pid) & PID_MASK) | ((start & START_MASK) << PID_BITS))
    }

    /// The calling process's token.
    pub fn current() -> Self {
        let (pid, start) = liveness::current();
        Self::pack(pid, start)
    }

    /// The token of the process running now as `pid`, if one is (not a
    /// zombie).
    pub fn of_pid(pid: u32) -> Option<Self> {
        liveness::start_ticks(pid).map(|start| Self::pack(pid, start))
    }

    /// The token of child `pid` that the caller has not reaped yet, running
    /// or a zombie (whose `/proc/PID/stat` still holds its start time; once
    /// reaped, the pid may name another process). For the worker pool,
    /// which must know who its dead worker was to remove what it created.
    pub(crate) fn of_unreaped_child(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: count
        // fields from the last `)`; field 22, the start time, is the 20th
        // after it.
        let rest = &text[text.rfind(')')? + 1..];
        let start = rest.split_ascii_whitespace().nth(19)?.parse().ok()?;
        (pid != 0).then(|| Self::pack(pid, start))
    }

    /// Is the process this token names still running (not exited, not a
    /// zombie, and not a newer process that reused the pid)?
    pub fn is_alive(self) -> bool {
        liveness::start_ticks(self.pid()).is_some_and(|s| (s & START_MASK) == self.start_ticks())
    }
}

impl std::fmt::Display for ProcToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid())
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on usual Linux
/// systems), to turn [`ProcToken::start_ticks`] into seconds since boot.
pub fn ticks_per_second() -> u64 {
    liveness::ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_stable() {
        let me = ProcToken::current();
        assert_eq!(me.pid(), std::process::id());
        assert!(me.is_alive());
        assert_eq!(ProcToken::from_raw(me.raw()), Some(me));
    }

    #[test]
    fn reused_pid_with_other_start_time_is_dead() {
        let me = ProcToken::current();
        let impostor = ProcToken::pack(me.pid(), me.start_ticks() + 1);
        assert!(!impostor.is_alive());
    }

    #[test]
    fn exited_child_is_dead_even_as_zombie() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = liveness::start_ticks(pid).expect("the child runs for 50 ms");
        let token = ProcToken::pack(pid, start);
        // Wait for it to exit without reaping it: poll /proc for the zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while token.is_alive() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!token.is_alive());
        // Not reaped yet, so /proc still lists it: it was judged a zombie.
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        child.wait().unwrap();
        assert!(!token.is_alive());
    }

    #[test]
    fn unreaped_child_token_matches_its_own_and_outlives_its_exit() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let before = ProcToken::of_unreaped_child(pid).expect("unreaped: in /proc");
        // Exited or not, it is not reaped: the same token (now a zombie's).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while before.is_alive() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!before.is_alive());
        assert_eq!(ProcToken::of_unreaped_child(pid), Some(before));
        child.wait().unwrap();
        assert_eq!(
            ProcToken::current(),
            ProcToken::of_unreaped_child(std::process::id()).unwrap()
        );
    }

    #[test]
    fn zero_is_nobody() {
        assert_eq!(ProcToken::from_raw(0), None);
    }
}

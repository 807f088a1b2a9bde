//! Who is alive: a process identity that survives pid reuse.
//!
//! A [`ProcToken`] packs a pid with the process's start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot) into one `u64`, so it can be
//! claimed or cleared with a single CAS in shared memory. A pid that was
//! reused by a newer process has another start time, so it is not "alive".
//! A zombie (killed but not yet reaped) is dead: it will never run again.
//!
//! Under loom, processes are modelled as threads that never die: every token
//! is alive. Death is tested with real processes (`tests/`).

/// Bits of the token that hold the pid. Linux's `pid_max` is at most 2^22.
const PID_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
/// Start times are kept modulo 2^42 ticks: 1.4e10 s at 100 Hz, ample.
const START_MASK: u64 = (1 << (64 - PID_BITS)) - 1;

/// A process identity: pid and start time in one word. Never zero for a real
/// process (pid 0 is not a user process), so 0 means "nobody" in shared slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcToken(u64);

impl ProcToken {
    pub const NONE: u64 = 0;

    pub fn from_raw(raw: u64) -> Option<Self> {
        (raw != 0 && raw & PID_MASK != 0).then_some(Self(raw))
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn pid(self) -> u32 {
        (self.0 & PID_MASK) as u32
    }

    pub fn start_ticks(self) -> u64 {
        self.0 >> PID_BITS
    }

    fn pack(pid: u32, start: u64) -> Self {
        Self((u64::from(pid) & PID_MASK) | ((start & START_MASK) << PID_BITS))
    }

    /// The calling process's token.
    pub fn current() -> Self {
        #[cfg(not(loom))]
        {
            // Cached, because hot paths (every lock acquisition) ask: a
            // getpid() syscall each time cost more than the lock itself.
            // A fork's child must not keep its parent's identity, so a
            // pthread_atfork child handler clears the cache.
            #[allow(clippy::disallowed_types)] // process identity, not algorithm state
            static CACHE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            static HOOK: std::sync::Once = std::sync::Once::new();
            extern "C" fn forget_in_child() {
                // Async-signal-safe: one atomic store.
                CACHE.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            HOOK.call_once(|| {
                // SAFETY: registers a handler that only does an atomic store.
                unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
            });
            let cached = CACHE.load(std::sync::atomic::Ordering::Relaxed);
            if cached != 0 {
                return Self(cached);
            }
            let pid = std::process::id();
            let start = stat(pid).map(|s| s.start_ticks).unwrap_or(0);
            let tok = Self::pack(pid, start);
            CACHE.store(tok.0, std::sync::atomic::Ordering::Relaxed);
            tok
        }
        #[cfg(loom)]
        {
            Self::pack(1, 1)
        }
    }

    /// A 45-bit identity (pid, then the low 23 bits of the start time) for
    /// state words that have only 45 bits to spare. Pid reuse within the
    /// same 2^23 ticks (about 23 hours at 100 Hz) would be mistaken for the
    /// same process: the price of fitting in one word with a tag.
    pub fn compact45(self) -> u64 {
        (self.0 & PID_MASK) | ((self.start_ticks() & 0x7f_ffff) << PID_BITS)
    }

    /// Is the process a [`compact45`](Self::compact45) identity names alive?
    pub fn compact45_alive(v: u64) -> bool {
        let pid = (v & PID_MASK) as u32;
        if pid == 0 {
            return false;
        }
        #[cfg(not(loom))]
        {
            match stat(pid) {
                Some(s) => !s.dead && (s.start_ticks & 0x7f_ffff) == (v >> PID_BITS) & 0x7f_ffff,
                None => false,
            }
        }
        #[cfg(loom)]
        {
            true
        }
    }

    /// Is the process this token names still running (not exited, not a
    /// zombie, and not a newer process that reused the pid)?
    pub fn is_alive(self) -> bool {
        #[cfg(not(loom))]
        {
            match stat(self.pid()) {
                Some(s) => !s.dead && (s.start_ticks & START_MASK) == self.start_ticks(),
                None => false,
            }
        }
        #[cfg(loom)]
        {
            true
        }
    }
}

impl std::fmt::Display for ProcToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid())
    }
}

#[cfg(not(loom))]
struct Stat {
    dead: bool,
    start_ticks: u64,
}

/// Parse `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the *last* `)`.
#[cfg(not(loom))]
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ")": field 3 is the state, field 22 the start time.
    let state = fields.next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        dead: matches!(state, "Z" | "X" | "x"),
        start_ticks,
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`), for turning a start time into
/// seconds since boot.
#[cfg(not(loom))]
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(all(test, not(loom)))]
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
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = stat(pid).map(|s| s.start_ticks);
        // Wait for it to exit without reaping it: poll /proc for the zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(pid).is_some_and(|s| !s.dead) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        if let Some(start) = start {
            assert!(!ProcToken::pack(pid, start).is_alive());
        }
        child.wait().unwrap();
        if let Some(start) = start {
            assert!(!ProcToken::pack(pid, start).is_alive());
        }
    }

    #[test]
    fn zero_is_nobody() {
        assert_eq!(ProcToken::from_raw(0), None);
    }
}

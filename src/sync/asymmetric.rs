//! The process-local state of the asymmetric fences (`fence_light`,
//! `fence_heavy`): whether this process is registered for membarrier, and
//! whether a heavy fence failed. std atomics in this process's memory, never
//! in a segment; normal builds only (the models run both halves as fences).

use std::sync::atomic::{AtomicU8, Ordering};

pub(super) const REGISTERED: u8 = 1;
pub(super) const FAILED: u8 = 2;
// From linux/membarrier.h.
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// 0: not yet registered (or a forked child); REGISTERED; FAILED.
pub(super) static LIGHT: AtomicU8 = AtomicU8::new(0);
/// 1 once a heavy fence failed: from then on every heavy fence is a
/// plain fence, and sleepers keep their sleeps short.
pub(super) static HEAVY_FAILED: AtomicU8 = AtomicU8::new(0);

fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes no pointers; a command the kernel lacks
    // fails with EINVAL or ENOSYS, which we report.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        ) == 0
    }
}

/// A forked child's registration state: none (see `fence_light`).
extern "C" fn forked() {
    // Relaxed: the child has one thread at this point; nothing pairs.
    LIGHT.store(0, Ordering::Relaxed);
}

#[cold]
pub(super) fn register_light() {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: `forked` is async-signal-safe (one atomic store) and
        // lives for the whole program.
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    let state = if membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) {
        REGISTERED
    } else {
        FAILED
    };
    // Relaxed: a process-local flag; the caller's own full fence
    // follows, and a thread that reads a stale 0 registers again.
    LIGHT.store(state, Ordering::Relaxed);
}

#[cold]
pub(super) fn heavy() -> bool {
    // Relaxed: a process-local 0 -> 1 flag (see `asymmetric_ok`).
    if HEAVY_FAILED.load(Ordering::Relaxed) != 0 {
        return false;
    }
    if membarrier(CMD_GLOBAL_EXPEDITED) {
        return true;
    }
    // Relaxed: as above; sleepers read it to keep their sleeps short.
    HEAVY_FAILED.store(1, Ordering::Relaxed);
    false
}

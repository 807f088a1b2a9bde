//! How a blocking ring call waits: spin, then yield, for a short budget
//! ([`Waiting`]), then sleep in slices of at most [`LIVENESS_SLICE`]
//! ([`sleep_slice`]) so a sleeper notices a dead peer. The futex words slept
//! on, and who wakes them, live with the callers (`producer.rs`,
//! `consumer.rs`); whether a peer is dead is `registry.rs`'s question.

use std::time::{Duration, Instant};

/// How often a sleeper checks whether its peers are still alive.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(200);

/// How long a blocking call spins and yields before it sleeps. A sleep and
/// its wake-up cost 25-30 us on an idle-halting core, so waiting about twice
/// that first is the classic competitive choice; yielding (not just
/// spinning) lets a peer pinned to the same core run. loom: no spinning (it
/// would only multiply the explored interleavings).
const SPIN_BUDGET: Duration = Duration::from_micros(if crate::sync::MODELLED { 0 } else { 60 });

/// Spin, then yield, until the budget is spent; `false` means "sleep now".
pub(crate) struct Waiting {
    backoff: crossbeam_utils::Backoff,
    since: Option<Instant>,
}

impl Waiting {
    pub(crate) fn new() -> Self {
        Waiting {
            backoff: crossbeam_utils::Backoff::new(),
            since: None,
        }
    }

    pub(crate) fn keep_spinning(&mut self) -> bool {
        if SPIN_BUDGET.is_zero() {
            return false;
        }
        if !self.backoff.is_completed() {
            self.backoff.snooze();
            return true;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPIN_BUDGET {
            std::thread::yield_now();
            return true;
        }
        false
    }
}

/// The async calls' spin phase: whether a future that found nothing to do
/// should poll again at once (after letting its executor run other tasks)
/// rather than park, because the first empty poll was less than the spin
/// budget ago. `since` is the future's own state.
pub(super) fn keep_polling(since: &mut Option<Instant>) -> bool {
    if SPIN_BUDGET.is_zero() {
        return false;
    }
    since.get_or_insert_with(Instant::now).elapsed() < SPIN_BUDGET
}

/// How long the next sleep may last: one liveness slice, shortened to the
/// deadline; `None` once the deadline has passed. Sleepers wake at least
/// every slice to check that their peers are alive.
pub(crate) fn sleep_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
        Some(Duration::ZERO) => None,
        Some(left) => Some(left.min(LIVENESS_SLICE)),
        None => Some(LIVENESS_SLICE),
    }
}

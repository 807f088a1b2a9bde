//! How a blocking ring or queue call waits: by the handle's
//! [`WaitStrategy`] ([`Waiting`]): spin, yield, or both for a budget, then
//! sleep in slices of at most [`LIVENESS_SLICE`] ([`sleep_slice`]) so a
//! sleeper notices a dead peer. The futex words slept on, and who wakes
//! them, live with the callers (`producer.rs`, `consumer.rs`, the queue's);
//! whether a peer is dead is the registries' question.

use std::time::{Duration, Instant};

use crate::event::EventCount;

/// How often a sleeper checks whether its peers are still alive.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(200);

/// How often a handle that never sleeps ([`WaitStrategy::Spin`],
/// [`WaitStrategy::SpinYield`]) stops spinning to check its peers'
/// liveness (the same check a sleeper makes when it wakes).
const SPIN_CHECK: Duration = Duration::from_millis(20);

/// How many looks a consumer waiting for an item takes one spin-loop hint
/// apart before its backoff starts (see [`Waiting::for_items`]).
const EAGER_LOOKS: u32 = 16;

/// The default spin budget. A sleep and its wake-up cost 25-30 us on an
/// idle-halting core, so waiting about twice that first is the classic
/// competitive choice.
const DEFAULT_BUDGET: Duration = Duration::from_micros(60);

/// How a handle waits when its ring or queue is empty (a consumer) or full
/// (a producer): the trade between hand-off latency and CPU. Set per handle
/// (`Consumer::set_wait`, `Producer::set_wait`, `Connection::set_wait`, and
/// the queue's); the default is [`SpinThenSleep`](Self::SpinThenSleep) of
/// 60 us.
///
/// Whatever the strategy, a waiting call notices a dead peer (within about
/// [`LIVENESS_SLICE`] when it sleeps, 20 ms when it never does) and honours
/// its timeout. Figures for each, side by side: `shmkit bench --only
/// latency`.
///
/// ```
/// use shmkit::ring::{Ring, WaitStrategy};
/// let ring = Ring::<u64>::new_in_process(64)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// rx.set_wait(WaitStrategy::Spin); // this consumer owns a core
/// tx.push(1)?;
/// assert_eq!(rx.pop()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-spin, never sleep and never yield: the lowest hand-off latency
    /// (a cache-line transfer, 25-200 ns depending on the host), for a
    /// latency-critical consumer that owns a core. Burns that core while
    /// waiting; on a shared core it slows everyone.
    Spin,
    /// Spin briefly, then yield the CPU in a loop; never sleep in the
    /// kernel. Latency close to `Spin` when the core is free, and a peer on
    /// the same core still runs; still 100% CPU while waiting.
    SpinYield,
    /// Spin and yield for the budget, then sleep on the futex until woken
    /// (the default, with 60 us: about twice what a sleep and wake-up
    /// cost, so a fast peer is met spinning and a slow one costs no CPU).
    /// The budget is counted from the first yield, after a spin of some
    /// 150 spin-loop hints (a few microseconds); a zero budget skips both
    /// and sleeps at once, as `Block`.
    SpinThenSleep(Duration),
    /// Sleep at once (after one more look): no CPU while waiting, and every
    /// hand-off to a sleeping peer pays a wake-up (25-30 us on a core that
    /// halted). For consumers that wait long and often.
    Block,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenSleep(DEFAULT_BUDGET)
    }
}

impl WaitStrategy {
    /// Whether a handle waiting this way ever sleeps on the futex.
    fn sleeps(self) -> bool {
        matches!(self, WaitStrategy::SpinThenSleep(_) | WaitStrategy::Block)
    }

    /// How long to spin (and yield) before sleeping; `None`: never sleep.
    /// loom: no spinning (it would only multiply the interleavings).
    fn budget(self) -> Option<Duration> {
        if crate::sync::MODELLED {
            return Some(Duration::ZERO);
        }
        match self {
            WaitStrategy::Spin | WaitStrategy::SpinYield => None,
            WaitStrategy::SpinThenSleep(d) => Some(d),
            WaitStrategy::Block => Some(Duration::ZERO),
        }
    }
}

/// One wait of a blocking call: spins and yields as the strategy says;
/// `keep_spinning` returning `false` means "go to the sleep path" (register,
/// look again, check liveness and the deadline), where [`sleep`](Self::sleep)
/// sleeps only if the strategy does.
pub(crate) struct Waiting {
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    backoff: crossbeam_utils::Backoff,
    since: Option<Instant>,
    spins: u32,
    /// Looks to take one spin-loop hint apart before the backoff's groups
    /// of 1, 2, 4 ... 64 hints: [`EAGER_LOOKS`] for a consumer, 0 for a
    /// producer.
    eager: u32,
}

impl Waiting {
    /// A producer's wait for room: the backoff from the first look.
    pub(crate) fn new(strategy: WaitStrategy, deadline: Option<Instant>) -> Self {
        Waiting {
            strategy,
            deadline,
            backoff: crossbeam_utils::Backoff::new(),
            since: None,
            spins: 0,
            eager: 0,
        }
    }

    /// A consumer's wait for an item (`SpinThenSleep` and `SpinYield`):
    /// [`EAGER_LOOKS`] looks one hint apart, then the backoff. An item
    /// usually comes within a cache-line hand-off or two; looking only
    /// after groups that double saw it up to a group late, and the default
    /// wait's one-way ping-pong was 299-311 ns where `Spin`'s was 207-225
    /// (BENCHMARKS.md, Intel, run U). A producer waiting for room keeps the
    /// backoff from the start: its look loads the line every pop writes,
    /// and eager looks there cost the consumers' pops more than they
    /// gained (the sole Queue consumer at 2p1c, run T).
    pub(crate) fn for_items(strategy: WaitStrategy, deadline: Option<Instant>) -> Self {
        Waiting {
            eager: EAGER_LOOKS,
            ..Waiting::new(strategy, deadline)
        }
    }

    pub(crate) fn keep_spinning(&mut self) -> bool {
        let Some(budget) = self.strategy.budget() else {
            return self.spin_forever();
        };
        if budget.is_zero() {
            return false;
        }
        if self.spins < self.eager {
            self.spins += 1;
            crate::sync::spin_loop();
            return true;
        }
        if !self.backoff.is_completed() {
            self.backoff.snooze();
            return true;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < budget {
            std::thread::yield_now();
            return true;
        }
        false
    }

    /// `Spin` and `SpinYield`: spin (or yield) on, except every
    /// [`SPIN_CHECK`] and at the deadline, when the caller checks its peers
    /// and its deadline. The clock is read every 64 spins only.
    fn spin_forever(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        if self.spins.is_multiple_of(64) {
            let now = Instant::now();
            let since = *self.since.get_or_insert(now);
            if self.deadline.is_some_and(|d| now >= d) || now - since >= SPIN_CHECK {
                self.since = Some(now);
                return false;
            }
        }
        match self.strategy {
            WaitStrategy::SpinYield if self.spins <= self.eager => crate::sync::spin_loop(),
            WaitStrategy::SpinYield if self.backoff.is_completed() => std::thread::yield_now(),
            WaitStrategy::SpinYield => self.backoff.snooze(),
            _ => crate::sync::spin_loop(),
        }
        true
    }

    /// A full single-producer lane (the ring, or a queue lane): spin until a
    /// quarter of its `cap` slots is free, as `used()` (an Acquire load of
    /// the consumers' head, minus our tail) says; `true` if it came free
    /// within the spin budget, `false` when the caller should go to its
    /// sleep path. Resuming as soon as one slot frees keeps producer and
    /// consumers writing the same cache lines one item apart, every item a
    /// miss on both sides (the queue ran at 0.4-0.5x the ring without
    /// this). A delay only, spent within the spin budget; loom builds, with
    /// no budget, skip it.
    pub(crate) fn spin_for_slack(&mut self, cap: u64, mut used: impl FnMut() -> u64) -> bool {
        let slack = (cap / 4).max(1);
        while self.keep_spinning() {
            if cap.saturating_sub(used()) >= slack {
                return true;
            }
        }
        false
    }

    /// Register on `event` before the last look ([`EventCount::prepare`]),
    /// if the strategy sleeps at all. A handle that never sleeps only
    /// looks again and checks its peers and deadline: registering would
    /// cost a membarrier and make its peer's next push or pop a wake
    /// system call for a sleeper that does not exist. The key it returns
    /// then is never slept on ([`sleep`](Self::sleep) does nothing).
    pub(crate) fn prepare(&self, event: &EventCount) -> u32 {
        if self.strategy.sleeps() {
            event.prepare()
        } else {
            0
        }
    }

    /// Sleep on `event` with `key` for at most `slice`, if the strategy
    /// sleeps at all; returns whether it made the wait system call.
    pub(crate) fn sleep(&self, event: &EventCount, key: u32, slice: Option<Duration>) -> bool {
        if !self.strategy.sleeps() {
            return false;
        }
        event.wait(key, slice);
        true
    }
}

/// The async calls' spin phase: whether a future that found nothing to do
/// should poll again at once (after letting its executor run other tasks)
/// rather than park, because its first empty poll was less than the
/// strategy's budget ago (`Spin` and `SpinYield`: a liveness slice, after
/// which it parks and checks as a sleeper does). `since` is the future's
/// own state.
pub(crate) fn keep_polling(strategy: WaitStrategy, since: &mut Option<Instant>) -> bool {
    let budget = strategy.budget().unwrap_or(LIVENESS_SLICE);
    if budget.is_zero() {
        return false;
    }
    since.get_or_insert_with(Instant::now).elapsed() < budget
}

/// The deadline of a `*_timeout` call, `timeout` from now; `None` (no
/// deadline: wait as long as it takes) when that instant is past what an
/// `Instant` can hold, where `Instant + Duration` would panic
/// (`Duration::MAX` as "forever").
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
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

/// The waiting pops of every consumer handle, written once: `pop`,
/// `pop_timeout`, `pop_into`, `pop_into_timeout`, for the ring's and the
/// queue's `Consumer` (`&self`) and `SoleConsumer` (`&mut self`: start
/// with `mut;`). `$what` names the kind in the docs; the attributes given
/// are `pop`'s docs. The handle has `pops(&self)`, which returns the
/// consumer that makes the attempts (with `try_pop_as`,
/// `try_pop_into_as`, `wait_for`, `wait_for_from`) and how its claims
/// commit.
macro_rules! waiting_pops {
    ($($m:ident)?; $what:literal; $(#[$pop_doc:meta])*) => {
        $(#[$pop_doc])*
        #[inline]
        pub fn pop(&$($m)? self) -> Result<T, $crate::ring::PopError> {
            let (c, how) = self.pops();
            // The first look inline; the wait (and its set-up) only when
            // empty.
            match c.try_pop_as(how) {
                // The item's own arm: built in place, not moved as a whole
                // `Result` (PopError holds strings).
                Ok(item) => Ok(item),
                Err($crate::ring::PopError::Empty) => {
                    c.wait_for_from(None, true, || c.try_pop_as(how))
                }
                Err(e) => Err(e),
            }
        }

        /// [`pop`](Self::pop), waiting at most `timeout` (one too long for
        /// an `Instant` to hold, such as `Duration::MAX`, is no limit).
        pub fn pop_timeout(
            &$($m)? self,
            timeout: std::time::Duration,
        ) -> Result<T, $crate::ring::PopError> {
            let (c, how) = self.pops();
            let deadline = $crate::ring::wait::deadline_after(timeout);
            c.wait_for(deadline, || c.try_pop_as(how))
        }

        #[doc = concat!("Take at least one and up to `buf.len()` items, waiting while the ", $what, " is empty.")]
        pub fn pop_into(&$($m)? self, buf: &mut [T]) -> Result<usize, $crate::ring::PopError> {
            if buf.is_empty() {
                return Ok(0);
            }
            let (c, how) = self.pops();
            c.wait_for(None, || c.try_pop_into_as(how, buf))
        }

        /// [`pop_into`](Self::pop_into), waiting at most `timeout`.
        pub fn pop_into_timeout(
            &$($m)? self,
            buf: &mut [T],
            timeout: std::time::Duration,
        ) -> Result<usize, $crate::ring::PopError> {
            if buf.is_empty() {
                return Ok(0);
            }
            let (c, how) = self.pops();
            let deadline = $crate::ring::wait::deadline_after(timeout);
            c.wait_for(deadline, || c.try_pop_into_as(how, buf))
        }
    };
}
pub(crate) use waiting_pops;

/// The waiting pushes of both producer handles (the ring's and the
/// queue's `Producer`), written once: `push`, `push_timeout` and
/// `push_slice` (whose docs are the attributes given), over the handle's
/// own `try_push`, `try_push_slice` and `push_with_from`; and `push_with`:
/// the handle's `push_with_from` without a first attempt of the caller's.
/// `$what` names the kind in the docs.
macro_rules! waiting_pushes {
    ($what:literal; $(#[$slice_doc:meta])*) => {
        #[doc = concat!("Push, waiting while the ", $what, " is full.")]
        #[inline]
        pub fn push(&mut self, item: T) -> Result<(), $crate::ring::PushError<T>> {
            // The first attempt inline; the wait (and its set-up) only when
            // full.
            match self.try_push(item) {
                // Success's own arm, not a move of the whole `Result`
                // (PushError holds strings).
                Ok(()) => Ok(()),
                Err($crate::ring::PushError::Full(item)) => {
                    self.push_with_from(None, true, |p| p.try_push(item))
                }
                Err(e) => Err(e),
            }
        }

        /// Push, waiting at most `timeout` for room (one too long for an
        /// `Instant` to hold, such as `Duration::MAX`, is no limit).
        pub fn push_timeout(
            &mut self,
            item: T,
            timeout: std::time::Duration,
        ) -> Result<(), $crate::ring::PushError<T>> {
            let deadline = $crate::ring::wait::deadline_after(timeout);
            self.push_with(deadline, |p| p.try_push(item))
        }

        $(#[$slice_doc])*
        pub fn push_slice(&mut self, items: &[T]) -> Result<(), $crate::ring::PushError<usize>> {
            let mut sent = 0;
            while sent < items.len() {
                match self.try_push_slice(&items[sent..]) {
                    // Wait for room for one, by pushing it the blocking way.
                    Ok(0) => match self.push(items[sent]) {
                        Ok(()) => sent += 1,
                        Err(e) => return Err(e.map(|_| sent)),
                    },
                    Ok(n) => sent += n,
                    Err(e) => return Err(e.map(|()| sent)),
                }
            }
            Ok(())
        }

        /// Retry `attempt` (a non-blocking push) while it reports `Full`:
        /// spin, then sleep until a consumer makes room, the deadline
        /// passes, or every consumer is gone.
        pub(super) fn push_with<X>(
            &mut self,
            deadline: Option<std::time::Instant>,
            attempt: impl FnMut(&mut Self) -> Result<(), $crate::ring::PushError<X>>,
        ) -> Result<(), $crate::ring::PushError<X>> {
            self.push_with_from(deadline, false, attempt)
        }
    };
}
pub(crate) use waiting_pushes;

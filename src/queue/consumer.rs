//! The queue's consumer handle: [`Consumer`] scans the lanes round-robin
//! from a rotating start and claims from the first non-empty one by the
//! ring's claim = commit CAS of that lane's head, announcing the items in
//! its registry entry first (so a consumer killed holding items leaves them
//! counted as abandoned); it sleeps on the shared `not_empty` while every
//! lane is empty, and marks items done.

use std::any::TypeId;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::process::ProcToken;
use crate::ring::message::Frame;
use crate::ring::wait::{WaitStrategy, Waiting, sleep_slice};
use crate::ring::{JoinError, JoinReport, PopError, TaskDoneError, take_n};
use crate::slot::read_slot;
use crate::sole::Claim;
use crate::sync::{AtomicU64, Ordering};

use super::mem::QueueMem;

mod claim;

/// One consumer of a [`Queue`](super::Queue). Each item goes to exactly one
/// consumer; items of one producer arrive in the order it pushed them.
/// Methods take `&self`, so threads may share a consumer.
///
/// ```
/// use shmkit::queue::{Queue, QueueOptions};
/// let q = Queue::<u64>::new_in_process(QueueOptions::new(8, 2, 2))?;
/// let mut tx = q.producer()?;
/// let rx = q.consumer()?;
/// tx.push_slice(&[1, 2, 3])?;
/// let mut buf = [0u64; 8];
/// let n = rx.pop_into(&mut buf)?; // one claim, up to 8 items
/// assert_eq!(&buf[..n], [1, 2, 3]);
/// for _ in 0..n {
///     rx.task_done()?;
/// }
/// assert_eq!(q.join()?.abandoned, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the consumer unregisters it"]
pub struct Consumer<T: Pod> {
    pub(super) mem: Arc<QueueMem>,
    /// Our registry entry.
    entry: usize,
    me: ProcToken,
    /// The lane the next scan starts at (process-local).
    next: AtomicU64,
    /// Claims in a row from the lane `next` names (process-local).
    streak: AtomicU64,
    /// The last tail read of each lane (process-local; see `claim_lane`).
    tail_cache: Box<[AtomicU64]>,
    /// Items we took and have not marked done (process-local: the arbiter
    /// of `task_done`; its shared mirror is our entry's `held`). Frames,
    /// for a byte-message consumer.
    local_held: AtomicU64,
    /// The frame counts of the byte messages we took and have not marked
    /// done, oldest first (process-local; only a `Consumer<Frame>`'s bytes
    /// pops fill it): `task_done` marks one whole message.
    messages: Mutex<VecDeque<u32>>,
    futex_calls: AtomicU64,
    /// Whether this handle holds the queue's sole-consumer claim (given
    /// back on drop).
    sole: bool,
    /// How this handle waits while the queue is empty.
    pub(super) wait: WaitStrategy,
    _elem: PhantomData<*const T>,
}

// SAFETY: the consumer owns no `T`; it hands out copies made from shared
// memory, so moving it needs `T: Send`; the rest is atomics.
unsafe impl<T: Pod + Send> Send for Consumer<T> {}
// SAFETY: pops take `&self`; whichever thread pops gets the `T`.
unsafe impl<T: Pod + Send> Sync for Consumer<T> {}

impl<T: Pod> Consumer<T> {
    pub(super) fn new(mem: Arc<QueueMem>) -> crate::Result<Self> {
        let (entry, me) = mem.register_consumer()?;
        let lanes = mem.geo().producers;
        Ok(Consumer {
            mem,
            entry,
            me,
            // Consumers start their scans at different lanes (their registry
            // entries), so two busy consumers do not begin on one lane's head
            // and fight over it (see `scan`).
            next: AtomicU64::new(entry.checked_rem(lanes).unwrap_or(0) as u64),
            streak: AtomicU64::new(0),
            tail_cache: (0..lanes).map(|_| AtomicU64::new(0)).collect(),
            local_held: AtomicU64::new(0),
            messages: Mutex::new(VecDeque::new()),
            futex_calls: AtomicU64::new(0),
            sole: false,
            wait: WaitStrategy::default(),
            _elem: PhantomData,
        })
    }

    /// Claim the queue's sole-consumer role for this registered consumer
    /// (see `SoleConsumer`); given back when the handle drops.
    pub(super) fn claim_sole(&mut self) -> crate::Result<()> {
        self.mem.claim_sole(self.entry, self.me)?;
        self.sole = true;
        Ok(())
    }

    /// How this consumer waits while the queue is empty (see
    /// [`WaitStrategy`]; the default spins 60 us, then sleeps).
    pub fn set_wait(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// Take one item if there is one, without waiting.
    #[must_use = "an item taken and dropped is lost to every consumer"]
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.try_pop_as(Claim::Shared)
    }

    /// Always inlined, as the ring's: the `Result` through memory cost more
    /// than the pop.
    #[inline(always)]
    pub(super) fn try_pop_as(&self, how: Claim) -> Result<T, PopError> {
        let mut out = T::zeroed();
        self.claim(how, 1, |_, run| out = read_slot(run))?;
        Ok(out)
    }

    /// Take up to `buf.len()` items from one lane with one claim; how many.
    #[must_use = "only the first n items of `buf` were filled"]
    pub fn try_pop_into(&self, buf: &mut [T]) -> Result<usize, PopError> {
        self.try_pop_into_as(Claim::Shared, buf)
    }

    #[inline]
    pub(super) fn try_pop_into_as(&self, how: Claim, buf: &mut [T]) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let words = self.mem.geo().words;
        self.claim(how, buf.len(), |k, run| {
            for (b, slot) in buf[k..].iter_mut().zip(run.chunks_exact(words)) {
                *b = read_slot(slot);
            }
        })
    }

    /// The consumer that makes the attempts (this one) and how its claims
    /// commit, for `waiting_pops!` (ring/wait.rs).
    #[inline(always)]
    fn pops(&self) -> (&Self, Claim) {
        (self, Claim::Shared)
    }

    crate::ring::wait::waiting_pops! {
        ; "queue";
        /// Take one item, waiting while the queue is empty. `Disconnected` once
        /// it is closed and drained (or, with
        /// [`disconnect_when_producers_gone`](super::QueueOptions::disconnect_when_producers_gone),
        /// every producer has left and it is drained).
    }

    pub(super) fn wait_for<R>(
        &self,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        self.wait_for_from(deadline, false, attempt)
    }

    /// [`wait_for`](Self::wait_for); `tried`: the caller's own attempt just
    /// found the queue empty, so the wait starts without another scan.
    pub(super) fn wait_for_from<R>(
        &self,
        deadline: Option<Instant>,
        mut tried: bool,
        mut attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        let mut waiting = Waiting::for_items(self.wait, deadline);
        loop {
            if !tried {
                match attempt() {
                    Err(PopError::Empty) => {}
                    other => return other,
                }
            }
            tried = false;
            if waiting.keep_spinning() {
                continue;
            }
            let ctrl = self.mem.ctrl();
            // Relaxed, here and after the sleep: a statistic for tools,
            // paired with nothing.
            ctrl.consumers_sleeping.fetch_add(1, Ordering::Relaxed);
            let key = waiting.prepare(&ctrl.not_empty);
            // A sleeper wakes at least every liveness slice: a producer that
            // died notifies nobody, and `attempt` re-checks who is gone.
            let outcome = match attempt() {
                Err(PopError::Empty) => match sleep_slice(deadline) {
                    None => Some(Err(PopError::Timeout)),
                    slice => {
                        if waiting.sleep(&ctrl.not_empty, key, slice) {
                            self.futex_calls.fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    }
                },
                other => Some(other),
            };
            ctrl.consumers_sleeping.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// The items, one [`pop`](Self::pop) each, until `Disconnected` (or any
    /// other error).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.pop().ok())
    }

    /// Mark one item this consumer took as done (Python's
    /// `JoinableQueue.task_done`). `TooMany` if this consumer has marked
    /// every item it took already.
    ///
    /// On a `Consumer<Frame>`, it marks the oldest byte message this
    /// consumer took with a bytes pop (`pop_bytes` and its kin) and has not
    /// marked: all of its frames at once; with no such message, one frame
    /// taken by an item pop (`pop`, `pop_into`). The shared counts (what
    /// `join` compares) stay in frames.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let n = if TypeId::of::<T>() == TypeId::of::<Frame>() {
            self.take_message()
        } else {
            take_n(&self.local_held, 1).then_some(1)
        };
        let Some(n) = n else {
            return Err(TaskDoneError::TooMany);
        };
        let ctrl = self.mem.ctrl();
        // Release: our work on the item happens before a joiner's Acquire
        // load of done (`QueueMem::joined`).
        ctrl.done.fetch_add(n, Ordering::Release);
        // Counted done first, then no longer ours: a kill in between counts
        // it both done and abandoned (a join returns early), never neither.
        // Relaxed: as the claim's increment of `held` (consumer.rs,
        // `claim_lane`): read only once we are found dead or after we left.
        self.mem
            .entry(self.entry)
            .held
            .fetch_sub(n, Ordering::Relaxed);
        ctrl.cold.all_done.notify();
        Ok(())
    }

    /// Count a byte message of `frames` frames, just claimed, as held: one
    /// `task_done` marks it whole.
    pub(super) fn hold_message(&self, frames: usize) {
        // Relaxed: process-local bookkeeping. Added before the message is
        // queued below, so `take_message` never takes more than is there.
        self.local_held.fetch_add(frames as u64, Ordering::Relaxed);
        // A frame count is at most a lane's capacity (checked by the claim).
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(frames as u32);
    }

    /// Take the oldest held message off the local counts (or one frame of
    /// an item pop if no message is held); its frames, `None` if nothing is
    /// held.
    fn take_message(&self) -> Option<u64> {
        let oldest = self
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        let n = oldest.map_or(1, u64::from);
        // Not below n unless threads sharing this consumer mark more than
        // they took while another is between a claim and `hold_message`.
        take_n(&self.local_held, n).then_some(n)
    }

    /// Items this consumer took and has not marked done (frames, for byte
    /// messages).
    pub fn held(&self) -> u64 {
        self.local_held.load(Ordering::Relaxed)
    }

    /// Wait until every item pushed is done or abandoned (see
    /// [`Queue::join`](super::Queue::join)).
    pub fn join(&self) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, None)
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, crate::ring::wait::deadline_after(timeout))
    }

    /// Whether the queue was closed (items may still be left).
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// Futex system calls made through this handle.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls.load(Ordering::Relaxed)
    }
}

impl<T: Pod> Drop for Consumer<T> {
    fn drop(&mut self) {
        // A killed process runs no destructor (only a model's dying thread
        // gets here): its entry stays, and what it held counts as abandoned.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        if self.sole {
            self.mem.release_sole(self.me);
        }
        self.mem.unregister_consumer(self.entry, self.me);
    }
}

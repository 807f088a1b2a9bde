//! The queue's producer handle: [`Producer`] owns one lane and pushes into
//! it exactly as the ring's producer does (write the slots, then one
//! Release store of the lane's tail), sleeping on the shared `not_full`
//! while its lane is full. Claiming the lane is `mem.rs`'s.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::process::ProcToken;
use crate::ring::control::check_seq;
use crate::ring::wait::{WaitStrategy, Waiting, sleep_slice};
use crate::ring::{JoinError, JoinReport, PushError};
use crate::slot::write_slot;
use crate::sync::{AtomicU64, Ordering};

use super::mem::QueueMem;

/// One producer of a [`Queue`](super::Queue): it owns a lane of the queue
/// while it lives. Dropping it gives the lane back (its items stay, for the
/// consumers); it does not close the queue.
///
/// ```
/// use shmkit::queue::{Queue, QueueOptions};
/// let q = Queue::<u64>::new_in_process(QueueOptions::new(4, 2, 1))?;
/// let mut a = q.producer()?;
/// let mut b = q.producer()?;
/// let rx = q.consumer()?;
/// a.push(1)?;
/// b.push_slice(&[10, 11])?;
/// let mut got = vec![rx.pop()?, rx.pop()?, rx.pop()?];
/// got.sort();
/// assert_eq!(got, [1, 10, 11]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the producer gives its lane back"]
pub struct Producer<T: Pod> {
    pub(super) mem: Arc<QueueMem>,
    lane: usize,
    me: ProcToken,
    /// Our copy of the lane's tail: only we store it.
    tail: u64,
    /// A lower bound of the lane's head: the last one we read (with
    /// Acquire, in `room`), or, just after the claim, `tail - cap` (0 below
    /// it; see `try_claim_lane`). Re-read only when the lane looks full by
    /// it.
    head_cache: u64,
    futex_calls: u64,
    /// How this handle waits while its lane is full.
    pub(super) wait: WaitStrategy,
    _elem: PhantomData<*const T>,
}

// SAFETY: the producer owns no `T`; it copies `T`s into shared memory that
// other threads read, so moving it needs `T: Send`.
unsafe impl<T: Pod + Send> Send for Producer<T> {}
// SAFETY: every method that moves a `T` takes `&mut self`.
unsafe impl<T: Pod + Send> Sync for Producer<T> {}

impl<T: Pod> Producer<T> {
    pub(super) fn new(mem: Arc<QueueMem>) -> crate::Result<Self> {
        let (lane, me, tail, head) = mem.claim_lane()?;
        Ok(Producer {
            mem,
            lane,
            me,
            tail,
            head_cache: head,
            futex_calls: 0,
            wait: WaitStrategy::default(),
            _elem: PhantomData,
        })
    }

    /// How this producer waits while its lane is full (see
    /// [`WaitStrategy`]; the default spins 60 us, then sleeps).
    pub fn set_wait(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// Which lane this producer owns (0-based; for diagnostics).
    pub fn lane(&self) -> usize {
        self.lane
    }

    /// Room for `want` more? From the cached head when it says yes (nearly
    /// always: inlined into every push, as the ring producer's), else
    /// [`room`](Self::room) re-reads the lane's head.
    #[inline(always)]
    pub(super) fn room_now(&mut self, want: u64) -> Result<u64, String> {
        let cap = self.mem.geo().cap;
        let used = self.tail - self.head_cache;
        if used.saturating_add(want) <= cap {
            return Ok(cap - used);
        }
        self.room()
    }

    /// [`room_now`](Self::room_now)'s slow part, once the cached head said
    /// there is no room for the items wanted: re-read the lane's head and say
    /// how much room there is. `Err(detail)` if the shared head is
    /// impossible.
    /// `head_cache <= tail <= head_cache + cap` holds (checked at claim and
    /// on each re-read), and `tail` stays below `SEQ_LIMIT`.
    #[inline(never)]
    pub(super) fn room(&mut self) -> Result<u64, String> {
        let cap = self.mem.geo().cap;
        check_seq("tail", self.tail)?;
        // Acquire: pairs with the Release CAS of head in the consumer's
        // `claim_lane` (consumer/claim.rs): their slot reads are done.
        let head = self.mem.lane(self.lane).head.load(Ordering::Acquire);
        if head > self.tail {
            return Err(format!(
                "lane {}: head {head} is past tail {}",
                self.lane, self.tail
            ));
        }
        if head < self.head_cache {
            return Err(format!(
                "lane {}: head {head} went back (it was {})",
                self.lane, self.head_cache
            ));
        }
        self.head_cache = head;
        // tail - head <= cap: head only grew since the claim's check.
        Ok(cap.saturating_sub(self.tail - head))
    }

    fn publish(&mut self, new_tail: u64) {
        let ctrl = self.mem.ctrl();
        // Release: publishes the slot words; pairs with the Acquire load of
        // tail in the consumer's `claim_lane` (consumer/claim.rs).
        self.mem
            .lane(self.lane)
            .tail
            .store(new_tail, Ordering::Release);
        self.tail = new_tail;
        if ctrl.not_empty.notify() {
            self.futex_calls += 1;
        }
    }

    /// The words of the `n` slots from `tail + i` on (`room` said they are
    /// free), as the runs contiguous in memory (see `QueueMem::run`).
    pub(super) fn ahead_run(&self, i: usize, n: usize) -> [&[AtomicU64]; 2] {
        self.mem.run(self.lane, self.tail + i as u64, n)
    }

    /// Publish the `n` slots written past our tail with one store.
    pub(super) fn publish_ahead(&mut self, n: u64) {
        self.publish(self.tail + n);
    }

    /// Push one item if there is room in our lane, without waiting.
    #[must_use = "the item comes back in the error when the lane is full"]
    #[inline]
    pub fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        if self.mem.closed() {
            return Err(PushError::Closed(item));
        }
        match self.room_now(1) {
            Err(detail) => return Err(PushError::Corrupt { item, detail }),
            Ok(0) => return Err(PushError::Full(item)),
            Ok(_) => {}
        }
        write_slot(self.mem.slot(self.lane, self.tail), &item);
        self.publish(self.tail + 1);
        Ok(())
    }

    /// Push as many of `items` as fit now, publishing them with one store;
    /// how many were pushed (0 when full).
    #[must_use = "fewer items than given may have been pushed"]
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, PushError<()>> {
        if self.mem.closed() {
            return Err(PushError::Closed(()));
        }
        let room = match self.room_now(items.len() as u64) {
            Err(detail) => return Err(PushError::Corrupt { item: (), detail }),
            Ok(r) => r,
        };
        let n = (room as usize).min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            write_slot(self.mem.slot(self.lane, self.tail + i as u64), item);
        }
        if n > 0 {
            self.publish(self.tail + n as u64);
        }
        Ok(n)
    }

    crate::ring::wait::waiting_pushes! {
        "lane";
        /// Push every item, waiting for room as needed (each run that fits is
        /// published with one store). On error, how many were pushed before it.
    }

    /// [`push_with`](Self::push_with); `tried`: the caller's own attempt just
    /// found no room, so the wait starts without another.
    pub(super) fn push_with_from<X>(
        &mut self,
        deadline: Option<Instant>,
        mut tried: bool,
        mut attempt: impl FnMut(&mut Self) -> Result<(), PushError<X>>,
    ) -> Result<(), PushError<X>> {
        let mut waiting = Waiting::new(self.wait, deadline);
        loop {
            if !tried {
                match attempt(self) {
                    Err(PushError::Full(_)) => {}
                    other => return other,
                }
            }
            tried = false;
            // Resume only once a quarter of the lane is free (see
            // `spin_for_slack`); retry only when the spin found room, so
            // that a stop reaches the checks below (consumers gone, the
            // deadline).
            let (cap, tail, lane) = (self.mem.geo().cap, self.tail, self.mem.lane(self.lane));
            // Relaxed: the value only decides when to stop spinning; no slot is
            // reused on it (the retry's `room` re-reads head with Acquire,
            // since the spin leaves `head_cache` as it was).
            let head = || lane.head.load(Ordering::Relaxed);
            if waiting.spin_for_slack(cap, || tail.saturating_sub(head())) {
                continue;
            }
            let mem = self.mem.clone();
            let key = waiting.prepare(&mem.ctrl().not_full);
            match attempt(self) {
                Err(PushError::Full(x)) => {
                    if mem.consumers_gone() {
                        // The last consumer may have made room first.
                        return match attempt(self) {
                            Err(PushError::Full(x)) => Err(PushError::Disconnected(x)),
                            other => other,
                        };
                    }
                    match sleep_slice(deadline) {
                        None => return Err(PushError::Timeout(x)),
                        slice => {
                            if waiting.sleep(&mem.ctrl().not_full, key, slice) {
                                self.futex_calls += 1;
                            }
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// Futex system calls (wakes and waits) this producer has made.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls
    }

    /// Close the queue for everyone (see [`Queue::close`](super::Queue::close)).
    pub fn close(&self) {
        self.mem.close();
    }

    /// Wait until every item pushed (by any producer) is done or abandoned
    /// (see [`Queue::join`](super::Queue::join)).
    pub fn join(&self) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, None)
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<JoinReport, JoinError> {
        super::join_until(&self.mem, crate::ring::wait::deadline_after(timeout))
    }
}

impl<T: Pod> Drop for Producer<T> {
    fn drop(&mut self) {
        // A killed process gives nothing back (only a model's dying thread
        // gets here): the lane is taken over once its owner is seen dead.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        self.mem.release_lane(self.lane, self.me);
    }
}

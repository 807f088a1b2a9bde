//! The producer handle: [`Producer`] pushes items, one or a run at a time,
//! publishing each run with one Release store of `tail`; it sleeps on
//! `not_full` while the ring is full, closes the ring, and joins. Claiming
//! the producer role and asking whether consumers are gone is
//! `registry.rs`'s; the control block is `control.rs`'s; byte messages are
//! `message.rs`'s (through `free`, `reserved_run`, `publish_reserved`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytemuck::Pod;

use crate::process::ProcToken;
use crate::slot::write_slot;
use crate::sync::{AtomicU64, Ordering};
use crate::waiter::Parking;

use super::control::{RingMem, check_seq};
use super::error::{JoinError, JoinReport, PushError};
use super::registry::ProducerClaim;
use super::wait::{WaitStrategy, Waiting, keep_polling, sleep_slice};

/// The one producer of a ring. Dropping it closes the ring.
///
/// ```
/// use shmkit::ring::{PushError, Ring};
/// let ring = Ring::<u32>::new_in_process(4)?;
/// let mut tx = ring.producer()?;
/// let rx = ring.consumer()?;
/// tx.push_slice(&[1, 2, 3])?;                     // one publish for the run
/// assert_eq!(tx.try_push_slice(&[4, 5, 6])?, 1);  // only one slot was left
/// assert!(matches!(tx.try_push(7), Err(PushError::Full(7))));
/// assert_eq!(rx.pop()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the producer closes the ring"]
pub struct Producer<T: Pod> {
    mem: Arc<RingMem>,
    /// Our copy of `tail`: only we store it.
    tail: u64,
    /// A lower bound of `head`: the last one we read (with Acquire, in
    /// `room`), or, for a producer that just claimed the role, `tail - cap`
    /// (0 below it), so that its first push into a slot a consumer may have
    /// read re-reads head (see `claim_producer`). Re-read only when the
    /// ring looks full by it.
    head_cache: u64,
    me: ProcToken,
    closed: bool,
    /// Futex system calls this handle made (wakes and waits): local, so
    /// counting costs no shared write.
    futex_calls: u64,
    /// How this handle waits while the ring is full.
    wait: WaitStrategy,
    /// Neither `Send` nor `Sync` by itself: the impls below say when.
    _elem: PhantomData<*const T>,
}

// SAFETY: the producer owns no `T`; it copies `T`s into shared memory that
// other threads read, so moving it to another thread needs `T: Send`. The
// rest is local integers and ring memory (Send + Sync).
unsafe impl<T: Pod + Send> Send for Producer<T> {}
// SAFETY: every method that moves a `T` takes `&mut self`; `&Producer`
// reads atomics and local integers only.
unsafe impl<T: Pod + Send> Sync for Producer<T> {}

impl<T: Pod> Producer<T> {
    /// A producer holding the role `claim` describes.
    pub(super) fn new(mem: Arc<RingMem>, claim: ProducerClaim) -> Self {
        Producer {
            mem,
            tail: claim.tail,
            head_cache: claim.head,
            me: claim.me,
            closed: false,
            futex_calls: 0,
            wait: WaitStrategy::default(),
            _elem: PhantomData,
        }
    }

    /// Whether this handle closed the ring (then every push fails `Closed`).
    pub(super) fn has_closed(&self) -> bool {
        self.closed
    }

    /// How many slots from `tail` on are free to write (re-reading `head`
    /// if fewer than `want` looked free): `Corrupt` if the shared head is
    /// impossible. Does not check `closed` (see
    /// [`has_closed`](Self::has_closed)).
    pub(super) fn free(&mut self, want: u64) -> Result<u64, PushError<()>> {
        self.room_now(want)
            .map_err(|detail| PushError::Corrupt { item: (), detail })
    }

    /// The words of the `n` slots from `tail + i` on (all of them within
    /// what [`free`](Self::free) said), as the runs contiguous in memory
    /// (see `RingMem::run`): not visible to consumers until
    /// [`publish_reserved`](Self::publish_reserved).
    pub(super) fn reserved_run(&self, i: usize, n: usize) -> [&[AtomicU64]; 2] {
        self.mem.run(self.tail + i as u64, n)
    }

    /// Publish the first `n` reserved slots with one store of `tail`, and
    /// wake sleeping consumers if any.
    pub(super) fn publish_reserved(&mut self, n: u64) {
        self.publish(self.tail + n);
    }

    /// Room for at least `want` more items? From the cached head when it
    /// says yes (nearly always: inlined into every push, a subtraction and
    /// a compare), else [`room`](Self::room) re-reads `head`.
    #[inline(always)]
    fn room_now(&mut self, want: u64) -> Result<u64, String> {
        let cap = self.mem.cap();
        let used = self.tail - self.head_cache;
        if used.saturating_add(want) <= cap {
            return Ok(cap - used);
        }
        self.room()
    }

    /// [`room_now`](Self::room_now)'s slow part, once the cached head said
    /// there is no room for the items wanted: re-read `head` and say how
    /// much room there is. `Err(detail)` if the shared head is impossible.
    ///
    /// Overflow: `head_cache <= tail <= head_cache + cap` always holds here
    /// (checked at claim and on every re-read), and `tail` stays below
    /// `SEQ_LIMIT` (checked at claim and here, at most `cap` pushes apart),
    /// so neither the subtractions nor `tail + cap` can wrap.
    #[inline(never)]
    fn room(&mut self) -> Result<u64, String> {
        let cap = self.mem.cap();
        check_seq("tail", self.tail)?;
        // Acquire: pairs with the Release CAS of head in `Consumer::claim`
        // (consumer.rs);
        // the consumers' reads of the slots we are about to reuse are done.
        let head = self.mem.ctrl().head.load(Ordering::Acquire);
        if head > self.tail {
            return Err(format!("head {head} is past tail {}", self.tail));
        }
        if head < self.head_cache {
            return Err(format!(
                "head {head} went back (it was {})",
                self.head_cache
            ));
        }
        let used = self.tail - head;
        if used > cap {
            // Unreachable while head only grows; kept so no subtraction wraps.
            return Err(format!(
                "head {head} is {used} behind tail {}, past capacity {cap}",
                self.tail
            ));
        }
        self.head_cache = head;
        Ok(cap - used)
    }

    /// Store the new tail and wake sleeping consumers if any.
    fn publish(&mut self, new_tail: u64) {
        let ctrl = self.mem.ctrl();
        // Release: publishes the slot words; pairs with the Acquire load of
        // tail in `Consumer::claim` (consumer.rs).
        ctrl.tail.store(new_tail, Ordering::Release);
        self.tail = new_tail;
        // Either a registering consumer's re-check sees the new tail, or we
        // see its registration (the EventCount's fences).
        if ctrl.not_empty.notify() {
            self.futex_calls += 1;
        }
    }

    /// Futex system calls (wakes and waits) this producer has made: the
    /// fast path makes none while no consumer sleeps.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls
    }

    /// Push one item if there is room, without waiting.
    #[must_use = "the item comes back in the error when the ring is full"]
    #[inline]
    pub fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        match self.room_now(1) {
            Err(detail) => return Err(PushError::Corrupt { item, detail }),
            Ok(0) => return Err(PushError::Full(item)),
            Ok(_) => {}
        }
        write_slot(self.mem.slot(self.tail), &item);
        self.publish(self.tail + 1);
        Ok(())
    }

    /// Push as many of `items` as fit now, publishing them with one store.
    /// Returns how many were pushed (0 when full).
    #[must_use = "fewer items than given may have been pushed"]
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, PushError<()>> {
        if self.closed {
            return Err(PushError::Closed(()));
        }
        let room = match self.room_now(items.len() as u64) {
            Err(detail) => return Err(PushError::Corrupt { item: (), detail }),
            Ok(r) => r,
        };
        let n = (room as usize).min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            write_slot(self.mem.slot(self.tail + i as u64), item);
        }
        if n > 0 {
            self.publish(self.tail + n as u64);
        }
        Ok(n)
    }

    super::wait::waiting_pushes! {
        "ring";
        /// Push every item, waiting for room as needed; each chunk that fits is
        /// published with one store. On error the variant carries how many items
        /// were pushed before it (`Closed(n)`, `Disconnected(n)`, ...).
        ///
        /// ```
        /// use shmkit::ring::Ring;
        /// let ring = Ring::<u64>::new_in_process(8)?;
        /// let mut tx = ring.producer()?;
        /// let rx = ring.consumer()?;
        /// let reader = std::thread::spawn(move || {
        ///     let mut buf = [0u64; 8];
        ///     let mut sum = 0;
        ///     while let Ok(n) = rx.pop_into(&mut buf) {  // Disconnected ends it
        ///         sum += buf[..n].iter().sum::<u64>();
        ///     }
        ///     sum
        /// });
        /// let items: Vec<u64> = (1..=100).collect();
        /// tx.push_slice(&items)?;  // waits for room as the reader drains
        /// drop(tx);                // closes the ring
        /// assert_eq!(reader.join().unwrap(), 5050);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
    }

    /// [`push_with`](Self::push_with); `tried`: the caller's own attempt just
    /// found no room, so the wait starts without another.
    pub(super) fn push_with_from<X>(
        &mut self,
        deadline: Option<std::time::Instant>,
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
            // Resume only once a quarter of the ring is free (see
            // `spin_for_slack`). Retry only when the spin found room: a
            // `keep_spinning` that said stop must reach the checks below
            // (consumers gone, the deadline). `Spin` and `SpinYield` spin
            // again at once after each stop, so "we spun, retry" skipped the
            // checks forever: such a producer on a full ring hung, timeout
            // or not.
            let (cap, tail) = (self.mem.cap(), self.tail);
            // Relaxed: the value only decides when to stop spinning; no slot is
            // reused on it (the retry's `room` re-reads head with Acquire,
            // since the spin leaves `head_cache` as it was).
            let head = || self.mem.ctrl().head.load(Ordering::Relaxed);
            if waiting.spin_for_slack(cap, || tail.saturating_sub(head())) {
                continue;
            }
            let mem = self.mem.clone();
            let cold = &mem.ctrl().cold;
            cold.producer_sleeping.store(1, Ordering::Relaxed);
            let key = waiting.prepare(&cold.not_full);
            let outcome = match attempt(self) {
                Err(PushError::Full(x)) => {
                    if self.mem.consumers_gone() {
                        // The last consumer may have made room before leaving.
                        Some(match attempt(self) {
                            Err(PushError::Full(x)) => Err(PushError::Disconnected(x)),
                            other => other,
                        })
                    } else {
                        match sleep_slice(deadline) {
                            None => Some(Err(PushError::Timeout(x))),
                            slice => {
                                if waiting.sleep(&cold.not_full, key, slice) {
                                    self.futex_calls += 1;
                                }
                                None
                            }
                        }
                    }
                }
                other => Some(other),
            };
            cold.producer_sleeping.store(0, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// How this producer waits while the ring is full (see
    /// [`WaitStrategy`]; the default spins 60 us, then sleeps).
    pub fn set_wait(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// This producer's [`WaitStrategy`].
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Push one item, waiting asynchronously while the ring is full: the
    /// `async` form of [`push`](Self::push) (see
    /// [`Consumer::pop_async`](super::Consumer::pop_async) for how a pending
    /// call waits). A future dropped before it completes has pushed nothing:
    /// the item is dropped with it.
    pub fn push_async(&mut self, item: T) -> impl Future<Output = Result<(), PushError<T>>> + '_ {
        let (mut pending, mut since) = (Some(item), None);
        let mut parking = Parking::default();
        std::future::poll_fn(move |cx| {
            self.poll_room(cx, &mut pending, &mut since, &mut parking, Self::try_push)
        })
    }

    /// The poll step of the async pushes: one attempt with the value in
    /// `pending`; if the ring is full, poll again at once while within the
    /// spin budget (`since`), else register on `not_full`, try again, and
    /// park the task (the value stays in `pending` for the next poll).
    /// The async twin of [`push_with`](Self::push_with), with the same
    /// all-consumers-gone rule. A poll after completion stays pending.
    pub(super) fn poll_room<X>(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut Option<X>,
        since: &mut Option<std::time::Instant>,
        parking: &mut Parking,
        mut attempt: impl FnMut(&mut Self, X) -> Result<(), PushError<X>>,
    ) -> Poll<Result<(), PushError<X>>> {
        let Some(x) = pending.take() else {
            return Poll::Pending;
        };
        let x = match attempt(self, x) {
            Err(PushError::Full(x)) => x,
            other => return Poll::Ready(other),
        };
        if keep_polling(self.wait, since) {
            *pending = Some(x);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mem = self.mem.clone();
        let cold = &mem.ctrl().cold;
        // Either a consumer's wake sees our bit, or the re-check sees its head
        // (the EventCount's fences).
        let key = cold.not_full.prepare();
        match attempt(self, x) {
            Err(PushError::Full(x)) if self.mem.consumers_gone() => {
                // The last consumer may have made room before leaving.
                Poll::Ready(match attempt(self, x) {
                    Err(PushError::Full(x)) => Err(PushError::Disconnected(x)),
                    other => other,
                })
            }
            Err(PushError::Full(x)) => {
                *pending = Some(x);
                let keep: Arc<RingMem> = mem.clone();
                parking.park(cold.not_full.futex(), key, keep, cx.waker());
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }

    /// Close the ring: consumers take what is left, then get `Disconnected`.
    /// Idempotent; dropping the producer closes too.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ctrl = self.mem.ctrl();
        // Release: orders our last tail store before `closed`; pairs with the
        // Acquire load in `RingMem::closed` (control.rs).
        ctrl.cold.closed.store(1, Ordering::Release);
        ctrl.not_empty.notify();
        ctrl.cold.all_done.notify();
    }

    /// Wait until every item pushed so far was marked done with
    /// [`Consumer::task_done`](super::Consumer::task_done) (Python's
    /// `JoinableQueue.join`), or abandoned: taken by a consumer that died,
    /// or dropped its handle, before marking it done. The report says how
    /// many were abandoned; Python's `join` would wait for them forever.
    pub fn join(&self) -> Result<JoinReport, JoinError> {
        self.join_until(None)
    }

    /// [`join`](Self::join) with a timeout.
    pub fn join_timeout(&self, timeout: Duration) -> Result<JoinReport, JoinError> {
        self.join_until(super::wait::deadline_after(timeout))
    }

    fn join_until(&self, deadline: Option<std::time::Instant>) -> Result<JoinReport, JoinError> {
        let target = self.tail;
        let ctrl = self.mem.ctrl();
        let cold = &ctrl.cold;
        loop {
            if let Some(r) = self.joined(target)? {
                return Ok(r);
            }
            cold.joiners.fetch_add(1, Ordering::Relaxed);
            let key = cold.all_done.prepare();
            let outcome = match self.joined(target) {
                Ok(Some(r)) => Some(Ok(r)),
                Err(e) => Some(Err(e)),
                Ok(None) if self.mem.consumers_gone() => {
                    // The last consumer may have finished just before leaving.
                    Some(match self.joined(target) {
                        Ok(Some(r)) => Ok(r),
                        Ok(None) => Err(JoinError::Disconnected),
                        Err(e) => Err(e),
                    })
                }
                Ok(None) => match sleep_slice(deadline) {
                    None => Some(Err(JoinError::Timeout)),
                    slice => {
                        cold.all_done.wait(key, slice);
                        None
                    }
                },
            };
            cold.joiners.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// Whether every item below `target` (our own tail) is done or
    /// abandoned; if so, how many were abandoned. `done <= head <= tail` in
    /// a correct ring, and only this producer stores `tail`, so `done` past
    /// it is corruption.
    fn joined(&self, target: u64) -> Result<Option<JoinReport>, JoinError> {
        // Acquire: pairs with the Release increment in `Consumer::task_done`
        // (consumer.rs), so the consumers' work on the items happened before
        // we return.
        let done = self.mem.ctrl().done.load(Ordering::Acquire);
        if done > target {
            return Err(JoinError::Corrupt(format!(
                "done {done} is past tail {target}"
            )));
        }
        let left = target - done;
        if left == 0 {
            return Ok(Some(JoinReport { abandoned: 0 }));
        }
        let abandoned = self.mem.abandoned_count();
        Ok((abandoned >= u128::from(left)).then_some(JoinReport { abandoned: left }))
    }

    /// Items pushed and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let head = self.mem.ctrl().head.load(Ordering::Relaxed);
        self.tail.saturating_sub(head).min(self.mem.cap()) as usize
    }

    /// Whether no pushed item is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.mem.cap() as usize
    }
}

impl<T: Pod> Drop for Producer<T> {
    fn drop(&mut self) {
        // A killed process neither closes nor gives the role back (only a
        // model's dying thread gets here): consumers learn of its death.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        self.close();
        // Give the role back (only if it is still ours).
        self.mem.release_producer(self.me);
    }
}

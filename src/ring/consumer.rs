//! The consumer handle: [`Consumer`] claims items by one CAS of `head`
//! (claim = commit), sleeps on `not_empty` while the ring is empty, and
//! marks items done. Registering and unregistering in the consumer table,
//! and asking whether the producer is dead, are `registry.rs`'s; byte
//! messages are `message.rs`'s (through `claim`, which sizes a run by its
//! first slot).

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use crate::process::ProcToken;
use crate::slot::read_slot;
pub(super) use crate::sole::Claim;
use crate::sync::{AtomicU64, Ordering, spin_loop};

use super::control::{RingMem, check_seq, impossible_span};
use super::error::{PopError, TaskDoneError};
use super::wait::{WaitStrategy, Waiting, sleep_slice};

mod aio;

/// A consumer of a ring. Any number may exist; each item goes to exactly one.
/// Methods take `&self`, so one consumer may be shared by threads.
///
/// `task_done` and the producer's `join` make it Python's `JoinableQueue`:
///
/// ```
/// use shmkit::ring::Ring;
/// let ring = Ring::<u64>::new_in_process(16)?;
/// let mut tx = ring.producer()?;
/// let rx = ring.consumer()?;
/// let worker = std::thread::spawn(move || {
///     while let Ok(job) = rx.pop() {     // Disconnected once closed and drained
///         let _ = job * 2;                // the work
///         rx.task_done().unwrap();
///     }
/// });
/// for job in 0..10 {
///     tx.push(job)?;
/// }
/// tx.join()?;   // every job pushed so far is done
/// drop(tx);     // closes: the worker's pop returns Disconnected
/// worker.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the consumer unregisters it"]
pub struct Consumer<T: Pod> {
    mem: Arc<RingMem>,
    /// Our entry in the consumer registry.
    slot: usize,
    me: ProcToken,
    /// Futex system calls made through this handle (local bookkeeping).
    futex_calls: AtomicU64,
    /// The last `tail` this handle loaded with Acquire. `tail` only grows, so
    /// every slot below it stays published: while `head` is below it, a claim
    /// needs no load of the producer's cache line. (An atomic only because
    /// the handle may be shared by threads; it lives in process memory.)
    tail_cache: AtomicU64,
    /// How this handle waits while the ring is empty.
    wait: WaitStrategy,
    /// Items this handle took and has not marked done: the arbiter of
    /// `task_done` (process memory, so threads sharing the handle cannot
    /// both mark the same item). Its shared mirror is our `held` registry
    /// entry, which outlives us if we are killed.
    local_held: AtomicU64,
    /// Whether this handle holds the ring's sole-consumer claim (given back
    /// on drop).
    sole: bool,
    /// How [`claim`](Self::claim) commits: `Shared` for every public
    /// `Consumer` (a `SoleConsumer`'s fast pops pass `Sole` themselves);
    /// `Sole` only for a crate-internal handle that pops through `&mut`
    /// alone (a pipe's receiving end).
    mode: Claim,
    /// Neither `Send` nor `Sync` by itself: the impls below say when.
    _elem: PhantomData<*const T>,
}

// SAFETY: the consumer owns no `T`; it hands out `T`s copied from shared
// memory that other threads wrote, so moving it needs `T: Send`. The rest is
// atomics and ring memory (Send + Sync).
unsafe impl<T: Pod + Send> Send for Consumer<T> {}
// SAFETY: pops take `&self`, so a shared consumer moves `T`s to whichever
// thread pops: `T: Send` again; its own state is atomics.
unsafe impl<T: Pod + Send> Sync for Consumer<T> {}

impl<T: Pod> Consumer<T> {
    /// A consumer holding registry entry `slot` under token `me`.
    pub(super) fn new(mem: Arc<RingMem>, slot: usize, me: ProcToken) -> Self {
        Consumer {
            mem,
            slot,
            me,
            futex_calls: AtomicU64::new(0),
            tail_cache: AtomicU64::new(0),
            wait: WaitStrategy::default(),
            local_held: AtomicU64::new(0),
            sole: false,
            mode: Claim::Shared,
            _elem: PhantomData,
        }
    }

    /// Claim the ring's sole-consumer role for this registered consumer
    /// (see `SoleConsumer`); given back when the handle drops.
    pub(super) fn claim_sole(&mut self) -> crate::Result<()> {
        self.mem.claim_sole(self.slot, self.me)?;
        self.sole = true;
        Ok(())
    }

    /// A handle holding the sole claim whose every pop commits by plain
    /// stores. Only for owners that pop through `&mut` alone and never lend
    /// the handle out (`pipe::Connection`): a `&Consumer` in this mode
    /// shared by two threads would deliver items twice.
    pub(crate) fn into_sole_mode(mut self) -> Self {
        debug_assert!(self.sole, "only a handle holding the sole claim");
        if self.sole {
            self.mode = Claim::Sole;
        }
        self
    }

    /// The ring's capacity in slots (for framing: no message is longer).
    pub(super) fn capacity(&self) -> usize {
        self.mem.cap() as usize
    }

    /// Claim up to `max` items (at least one) by one CAS of head. Before
    /// the CAS, `copy(i, run)` is called for the claimed slots as at most
    /// two runs of whole slots contiguous in memory (split where the ring
    /// wraps), `i` the index in the claim of the run's first slot; its
    /// copies count only if the CAS succeeds (on failure `copy` is called
    /// again for the new slots).
    ///
    /// `size(first, available)` says how many of the `available` published
    /// slots to claim, looking at the first one (a message's length lives
    /// there); `Err(detail)` if that slot is impossible. An impossible answer
    /// counts as corruption only if `head` has not moved meanwhile (else the
    /// slot was being reused under us, and we retry).
    #[inline]
    pub(super) fn claim(
        &self,
        size: impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        copy: impl FnMut(usize, &[AtomicU64]),
    ) -> Result<usize, PopError> {
        self.claim_as(self.mode, size, copy)
    }

    /// [`claim`](Self::claim), by one CAS of `head` (`Claim::Shared`) or,
    /// for the ring's sole consumer called through `&mut` (`Claim::Sole`:
    /// no other consumer exists and no other thread is in this handle), by
    /// plain stores: the same order of announcement and commit, with no
    /// read-modify-write on the way. Always inlined: its `Result` then
    /// never goes through memory, and each pop keeps only its own branches.
    #[inline(always)]
    pub(super) fn claim_as(
        &self,
        how: Claim,
        mut size: impl FnMut(&[AtomicU64], usize) -> Result<usize, String>,
        mut copy: impl FnMut(usize, &[AtomicU64]),
    ) -> Result<usize, PopError> {
        let mem = &*self.mem;
        let ctrl = mem.ctrl();
        let held = &*ctrl.held[self.slot];
        loop {
            // Acquire: pairs with the Release CAS of the consumer that moved
            // head here; that consumer had loaded tail >= h, so our tail load
            // below cannot see less than h (with Relaxed it could, and a
            // correct ring would look corrupt: loom found this).
            let h = ctrl.head.load(Ordering::Acquire);
            // Relaxed: a process-local cache, see `tail_cache`.
            let mut t = self.tail_cache.load(Ordering::Relaxed);
            if h >= t {
                // Acquire: pairs with the producer's Release store of tail
                // in `Producer::publish` (producer.rs), so the slot words
                // below `t` are visible.
                t = ctrl.tail.load(Ordering::Acquire);
                // Never a possible sequence, whatever head does: no retry.
                // (Below SEQ_LIMIT, `h + n <= t` below cannot wrap.)
                check_seq("tail", t)
                    .and_then(|_| check_seq("head", h))
                    .map_err(PopError::Corrupt)?;
                self.tail_cache.store(t, Ordering::Relaxed);
            }
            if t == h {
                if !mem.closed() {
                    touch_next(mem.slot(h));
                    return Err(PopError::Empty);
                }
                // Closed: `closed` was stored (Release, `Producer::close`)
                // after the last tail store, and `closed()` loaded it with
                // Acquire, so this re-load sees the final tail (coherence).
                // Relaxed: its value is only compared with h; a tail that
                // moved sends us round the loop, whose Acquire load of tail
                // above orders the slot reads.
                if ctrl.tail.load(Ordering::Relaxed) == h {
                    return Err(PopError::Disconnected);
                }
                continue;
            }
            if t < h || t - h > mem.cap() {
                // Legitimate only if head moved between our two loads.
                if ctrl.head.load(Ordering::Relaxed) == h {
                    return Err(PopError::Corrupt(impossible_span(h, t, mem.cap())));
                }
                continue;
            }
            let available = (t - h) as usize;
            let n = match size(mem.slot(h), available) {
                Ok(n) if (1..=available).contains(&n) => n,
                other => {
                    if ctrl.head.load(Ordering::Relaxed) == h {
                        let detail = match other {
                            Err(d) => d,
                            Ok(n) => format!("a message of {n} slots, {available} published"),
                        };
                        return Err(PopError::Corrupt(detail));
                    }
                    continue;
                }
            };
            if n == 1 {
                // The single-item pops: no run to split.
                copy(0, mem.slot(h));
            } else {
                let [a, b] = mem.run(h, n);
                copy(0, a);
                if !b.is_empty() {
                    copy(a.len() / mem.words(), b);
                }
            }
            // Announce the items as ours before the claim: killed between
            // the two, we count n items as abandoned that another consumer
            // then takes (a joiner may return that much early); announced
            // after, a kill in between would leave them counted nowhere and
            // every joiner waiting forever.
            if how == Claim::Sole {
                // The sole consumer: nobody else writes our entry while we
                // live (a fold happens only once we are dead or gone), and
                // nobody else moves head, so a load and a store do what the
                // read-modify-writes below do. Release for head: as below.
                // Wrapping, as fetch_add: the entry may hold garbage.
                let announced = held.load(Ordering::Relaxed).wrapping_add(n as u64);
                // Relaxed: `held` is read for a decision only once we are
                // dead (the liveness check orders our writes) or gone
                // (`unregister_consumer`'s Release clear does).
                held.store(announced, Ordering::Relaxed);
                ctrl.head.store(h + n as u64, Ordering::Release);
                // Relaxed: process-local bookkeeping, see `local_held`.
                let mine = self.local_held.load(Ordering::Relaxed);
                self.local_held.store(mine + n as u64, Ordering::Relaxed);
                if mem.wake_producer() {
                    self.count_futex_call();
                }
                return Ok(n);
            }
            // Relaxed: `held` is read for a decision only once we are dead
            // (the liveness check orders our writes) or gone
            // (`unregister_consumer`'s Release clear does).
            held.fetch_add(n as u64, Ordering::Relaxed);
            // Release: our slot reads happen before the producer's Acquire
            // load of head (`Producer::room`, producer.rs) that lets it
            // overwrite them. Claim = commit.
            match ctrl
                .head
                .compare_exchange(h, h + n as u64, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    // Relaxed: process-local bookkeeping, see `local_held`.
                    self.local_held.fetch_add(n as u64, Ordering::Relaxed);
                    if mem.wake_producer() {
                        self.count_futex_call();
                    }
                    return Ok(n);
                }
                Err(_) => {
                    // Relaxed: taking back our own announcement above.
                    held.fetch_sub(n as u64, Ordering::Relaxed);
                    spin_loop()
                }
            }
        }
    }

    /// Take one item if there is one, without waiting.
    #[must_use = "an item taken and dropped is lost to every consumer"]
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.try_pop_as(self.mode)
    }

    /// Always inlined: a call returning a `Result<T, PopError>` through
    /// memory (PopError holds strings) cost more than the pop itself.
    #[inline(always)]
    pub(super) fn try_pop_as(&self, how: Claim) -> Result<T, PopError> {
        let mut out = T::zeroed();
        self.claim_as(how, |_, _| Ok(1), |_, run| out = read_slot(run))?;
        Ok(out)
    }

    /// Take up to `buf.len()` items with one claim; returns how many.
    #[must_use = "only the first n items of `buf` were filled"]
    pub fn try_pop_into(&self, buf: &mut [T]) -> Result<usize, PopError> {
        self.try_pop_into_as(self.mode, buf)
    }

    #[inline]
    pub(super) fn try_pop_into_as(&self, how: Claim, buf: &mut [T]) -> Result<usize, PopError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len();
        let words = self.mem.words();
        self.claim_as(
            how,
            |_, n| Ok(n.min(max)),
            |i, run| {
                for (b, slot) in buf[i..].iter_mut().zip(run.chunks_exact(words)) {
                    *b = read_slot(slot);
                }
            },
        )
    }

    /// The consumer that makes the attempts (this one) and how its claims
    /// commit, for `waiting_pops!` (wait.rs).
    #[inline(always)]
    fn pops(&self) -> (&Self, Claim) {
        (self, self.mode)
    }

    super::wait::waiting_pops! {
        ; "ring";
        /// Take one item, waiting while the ring is empty. `Disconnected` once
        /// the ring is drained and closed (or its producer died).
        ///
        /// ```
        /// use shmkit::ring::{PopError, Ring};
        /// let ring = Ring::<u32>::new_in_process(4)?;
        /// let mut tx = ring.producer()?;
        /// let rx = ring.consumer()?;
        /// tx.push(1)?;
        /// tx.close();
        /// assert_eq!(rx.pop(), Ok(1));                     // what was sent first
        /// assert_eq!(rx.pop(), Err(PopError::Disconnected)); // then the end
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
    }

    /// Retry `attempt` while it reports `Empty`: spin, then sleep until the
    /// producer pushes, the deadline passes, or the producer is dead.
    pub(super) fn wait_for<R>(
        &self,
        deadline: Option<std::time::Instant>,
        attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Result<R, PopError> {
        self.wait_for_from(deadline, false, attempt)
    }

    /// [`wait_for`](Self::wait_for); `tried`: the caller's own attempt just
    /// found the ring empty, so the wait starts without another (a look more
    /// per wait is a scan more in the loom models' every execution).
    pub(super) fn wait_for_from<R>(
        &self,
        deadline: Option<std::time::Instant>,
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
            ctrl.cold.consumers_sleeping.fetch_add(1, Ordering::Relaxed);
            let key = waiting.prepare(&ctrl.not_empty);
            let outcome = match attempt() {
                Err(PopError::Empty) => {
                    if self.mem.producer_dead() {
                        // Drained (the attempt just saw empty) and no
                        // producer left to fill it: one more look, then out.
                        Some(match attempt() {
                            Err(PopError::Empty) => Err(PopError::Disconnected),
                            other => other,
                        })
                    } else {
                        match sleep_slice(deadline) {
                            None => Some(Err(PopError::Timeout)),
                            slice => {
                                if waiting.sleep(&ctrl.not_empty, key, slice) {
                                    self.count_futex_call();
                                }
                                None
                            }
                        }
                    }
                }
                other => Some(other),
            };
            ctrl.cold.consumers_sleeping.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    /// How this consumer waits while the ring is empty (see
    /// [`WaitStrategy`]; the default spins 60 us, then sleeps).
    pub fn set_wait(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// This consumer's [`WaitStrategy`].
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Mark one taken item as done (Python's `JoinableQueue.task_done`).
    /// `TooMany` if called more often than items were taken from the ring;
    /// `Corrupt` if the shared counters are impossible. See [`Consumer`]
    /// for an example with `join`.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let ctrl = self.mem.ctrl();
        // One of our own items, if we hold any (else another consumer's,
        // as before: the shared count below still bounds the calls).
        let mine = take_n(&self.local_held, 1);
        let r = self.mark_done(ctrl);
        if mine {
            match r {
                // Done is counted: now the item is no longer ours. In this
                // order, a kill in between counts it both done and
                // abandoned (a joiner returns early by one), never neither.
                // Relaxed: as the announcement in `claim_as`.
                Ok(()) => {
                    ctrl.held[self.slot].fetch_sub(1, Ordering::Relaxed);
                }
                // Not counted: still ours.
                Err(_) => {
                    self.local_held.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        r?;
        ctrl.cold.all_done.notify();
        Ok(())
    }

    /// Count one item done in the shared `done`, bounded by `head`.
    fn mark_done(&self, ctrl: &super::control::RingControl) -> Result<(), TaskDoneError> {
        loop {
            // Acquire: pairs with the Release CAS of done below (another
            // consumer's task_done), which that consumer made after loading
            // head >= d; so our head load below sees at least that, and
            // `d > h` can only be corruption, never a stale head.
            let d = ctrl.done.load(Ordering::Acquire);
            // Relaxed: head only bounds the count (ordered by the load above).
            let h = ctrl.head.load(Ordering::Relaxed);
            check_seq("head", h).map_err(TaskDoneError::Corrupt)?;
            if d > h {
                return Err(TaskDoneError::Corrupt(format!("done {d} is past head {h}")));
            }
            if d == h {
                return Err(TaskDoneError::TooMany);
            }
            // Release: our work on the item happens before a joiner's
            // Acquire load of done (`Producer::join_until`, producer.rs).
            if ctrl
                .done
                .compare_exchange(d, d + 1, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
            spin_loop();
        }
    }

    /// Whether the producer closed the ring (items may still be left).
    pub fn is_closed(&self) -> bool {
        self.mem.closed()
    }

    /// Items (slots) waiting right now: a racy snapshot.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether nothing is waiting right now (a racy snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count_futex_call(&self) {
        // Relaxed: a statistic of this handle, ordering nothing.
        self.futex_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Futex system calls (waits, and wakes of the producer) made through
    /// this handle.
    pub fn futex_calls(&self) -> u64 {
        self.futex_calls.load(Ordering::Relaxed)
    }
}

/// Take `n` from a process-local count (`Consumer::local_held`, the
/// queue's too) if it holds that many; whether it did.
pub(crate) fn take_n(count: &AtomicU64, n: u64) -> bool {
    // Relaxed: process-local bookkeeping, ordering nothing in shared memory.
    let mut v = count.load(Ordering::Relaxed);
    while v >= n {
        // Relaxed: as above.
        match count.compare_exchange_weak(v, v - n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

impl<T: Pod> Drop for Consumer<T> {
    fn drop(&mut self) {
        // A killed process runs no destructor (only a model's dying thread
        // gets here); its registry slot stays until a liveness check frees it.
        if crate::sync::liveness::current_is_dead() {
            return;
        }
        if self.sole {
            self.mem.release_sole(self.me);
        }
        self.mem.unregister_consumer(self.slot, self.me);
    }
}

/// An empty look reads the slot the next item will fill as well as `tail`:
/// the producer writes that slot and then `tail`, so a consumer polling both
/// has the slot's line on its way when it sees the tail move, and the hand-off
/// costs about one cache miss instead of two in a row (tail, then the slot).
/// The value is discarded: only the claim's Acquire load of tail orders a
/// slot read that counts. Not in model builds, where it only adds steps.
#[inline]
fn touch_next(slot: &[AtomicU64]) {
    if crate::sync::MODELLED {
        return;
    }
    if let Some(w) = slot.first() {
        // Relaxed: a prefetch; the value is thrown away.
        std::hint::black_box(w.load(Ordering::Relaxed));
    }
}

//! The queue's async calls: `pop_async`, `push_async`, `join_async`, the
//! twins of the blocking ones for any executor. Each poll makes one attempt;
//! an attempt that finds nothing to do re-polls while the handle's
//! [`WaitStrategy`](crate::ring::WaitStrategy) would spin, then registers
//! on the event count the blocking call would sleep on, looks once more,
//! and parks the task with the process's one waiter thread (`waiter.rs`)
//! under the key it registered. The rules for a dead peer and for the end
//! of the queue are the blocking calls', through the same attempts.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytemuck::Pod;

use crate::event::EventCount;
use crate::ring::wait::keep_polling;
use crate::ring::{JoinError, PopError, PushError};
use crate::waiter::Parking;

use super::mem::QueueMem;
use super::{Consumer, JoinReport, Producer, Queue};

/// Register on `event`, then park the task with the waiter thread.
fn park(
    parking: &mut Parking,
    mem: &Arc<QueueMem>,
    event: &EventCount,
    key: u32,
    cx: &mut Context<'_>,
) {
    let keep: Arc<QueueMem> = mem.clone();
    parking.park(event.futex(), key, keep, cx.waker());
}

impl<T: Pod> Consumer<T> {
    /// Take one item, waiting asynchronously while the queue is empty: the
    /// `async` form of [`pop`](Self::pop) (see
    /// [`ring::Consumer::pop_async`](crate::ring::Consumer::pop_async) for
    /// how a pending call waits). Cancellation-safe: an item is taken only
    /// by the poll that returns it.
    ///
    /// ```
    /// use shmkit::{Queue, QueueOptions};
    /// let q = Queue::<u64>::new_in_process(QueueOptions::new(8, 2, 1))?;
    /// let (mut tx, rx) = (q.producer()?, q.consumer()?);
    /// tx.push(5)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut pop = std::pin::pin!(rx.pop_async());
    /// // Any executor polls it; by hand here.
    /// assert!(matches!(pop.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(5))));
    /// # use std::future::Future;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_async(&self) -> impl Future<Output = Result<T, PopError>> + '_ {
        self.pop_async_with(|| self.try_pop())
    }

    /// The async waiting loop around `attempt` (a non-blocking pop): retry
    /// while it reports `Empty`, spinning, then parked on `not_empty`.
    pub(super) fn pop_async_with<'a, R: 'a>(
        &'a self,
        mut attempt: impl FnMut() -> Result<R, PopError> + 'a,
    ) -> impl Future<Output = Result<R, PopError>> + 'a {
        let mut since: Option<Instant> = None;
        let mut parking = Parking::default();
        std::future::poll_fn(move |cx| {
            match attempt() {
                Err(PopError::Empty) => {}
                other => return Poll::Ready(other),
            }
            if keep_polling(self.wait, &mut since) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let event = &self.mem.ctrl().not_empty;
            // The registration's fence orders it before the re-check: either
            // a producer's notify sees our bit, or the re-check sees its item.
            let key = event.prepare();
            match attempt() {
                Err(PopError::Empty) => {
                    park(&mut parking, &self.mem, event, key, cx);
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        })
    }

    /// [`join`](Self::join) for async code.
    pub fn join_async(&self) -> impl Future<Output = Result<JoinReport, JoinError>> + '_ {
        join_async(&self.mem)
    }
}

impl<T: Pod> Producer<T> {
    /// Push one item, waiting asynchronously while this producer's lane is
    /// full: the `async` form of [`push`](Self::push). A future dropped
    /// before it completes has pushed nothing.
    pub fn push_async(&mut self, item: T) -> impl Future<Output = Result<(), PushError<T>>> + '_ {
        self.push_async_with(item, Self::try_push)
    }

    /// The async waiting loop around `attempt` (a non-blocking push of the
    /// value it is given, handing it back when `Full`): retry while the lane
    /// is full, spinning, then parked on `not_full`; `Disconnected` once
    /// every consumer is gone. A future dropped before it completes has
    /// pushed nothing.
    pub(super) fn push_async_with<'a, X: 'a>(
        &'a mut self,
        item: X,
        mut attempt: impl FnMut(&mut Self, X) -> Result<(), PushError<X>> + 'a,
    ) -> impl Future<Output = Result<(), PushError<X>>> + 'a {
        let mut since: Option<Instant> = None;
        let mut pending = Some(item);
        let mut parking = Parking::default();
        std::future::poll_fn(move |cx| {
            let Some(x) = pending.take() else {
                return Poll::Pending; // polled after completion
            };
            let x = match attempt(self, x) {
                Err(PushError::Full(x)) => x,
                other => return Poll::Ready(other),
            };
            if keep_polling(self.wait, &mut since) {
                pending = Some(x);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mem = self.mem.clone();
            let event = &mem.ctrl().not_full;
            let key = event.prepare();
            match attempt(self, x) {
                Err(PushError::Full(x)) if mem.consumers_gone() => {
                    // The last consumer may have made room before leaving.
                    Poll::Ready(match attempt(self, x) {
                        Err(PushError::Full(x)) => Err(PushError::Disconnected(x)),
                        other => other,
                    })
                }
                Err(PushError::Full(x)) => {
                    pending = Some(x);
                    park(&mut parking, &mem, event, key, cx);
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        })
    }

    /// [`join`](Self::join) for async code.
    pub fn join_async(&self) -> impl Future<Output = Result<JoinReport, JoinError>> + '_ {
        join_async(&self.mem)
    }
}

impl<T: Pod> Queue<T> {
    /// [`join`](Self::join) for async code: resolves once every item pushed
    /// so far is done or abandoned, as `join` returns.
    pub fn join_async(&self) -> impl Future<Output = Result<JoinReport, JoinError>> + '_ {
        join_async(&self.mem)
    }
}

/// The async twin of the blocking join (`mod.rs`): same checks, parking on
/// `all_done` where it would sleep.
fn join_async(mem: &Arc<QueueMem>) -> impl Future<Output = Result<JoinReport, JoinError>> + '_ {
    let mut parking = Parking::default();
    std::future::poll_fn(move |cx| {
        match mem.joined() {
            Ok(Some(r)) => return Poll::Ready(Ok(r)),
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        let event = &mem.ctrl().cold.all_done;
        let key = event.prepare();
        Poll::Ready(match mem.joined() {
            Ok(Some(r)) => Ok(r),
            Err(e) => Err(e),
            Ok(None) if mem.consumers_gone() => match mem.joined() {
                Ok(r) => r.ok_or(JoinError::Disconnected),
                Err(e) => Err(e),
            },
            Ok(None) => {
                park(&mut parking, mem, event, key, cx);
                return Poll::Pending;
            }
        })
    })
}

//! The consumer's async pops: [`pop_async`](Consumer::pop_async) and the
//! poll step the async byte-message pops share
//! ([`poll_for`](Consumer::poll_for)), the twins of the blocking ones.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytemuck::Pod;

use crate::waiter::Parking;

use super::super::control::RingMem;
use super::super::error::PopError;
use super::super::wait::keep_polling;
use super::Consumer;

impl<T: Pod> Consumer<T> {
    /// Take one item, waiting asynchronously while the ring is empty: the
    /// `async` form of [`pop`](Self::pop), for any executor (tokio, smol,
    /// ...). As `pop` spins before it sleeps, the future first polls again
    /// at once for up to 60 us (yielding to the executor in between, so
    /// other tasks run); then it parks. A parked pop costs no thread of its
    /// own: the process's one waiter thread sleeps on every parked call's
    /// futex at once and wakes the task when the producer pushes (or every
    /// 200 ms, to notice a dead producer, which gives `Disconnected` as
    /// `pop` does).
    ///
    /// Cancellation-safe: an item is taken only in the poll that returns it,
    /// so dropping the future (a `select!` branch that lost, a timeout)
    /// never loses one.
    ///
    /// ```
    /// use shmkit::ring::Ring;
    /// let ring = Ring::<u32>::new_in_process(8)?;
    /// let mut tx = ring.producer()?;
    /// let rx = ring.consumer()?;
    /// let t = std::thread::spawn(move || tx.push(7));
    /// // Any executor drives it; a minimal one here.
    /// let got = futures_lite_block_on(rx.pop_async())?;
    /// assert_eq!(got, 7);
    /// t.join().unwrap()?;
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct W(std::thread::Thread);
    /// #     impl std::task::Wake for W { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(W(std::thread::current())).into();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_async(&self) -> impl Future<Output = Result<T, PopError>> + '_ {
        let (mut since, mut parking) = (None, Parking::default());
        std::future::poll_fn(move |cx| {
            self.poll_for(cx, &mut since, &mut parking, || self.try_pop())
        })
    }

    /// The poll step of the async pops: one attempt; if it finds the ring
    /// empty, poll again at once while within the spin budget (`since`, the
    /// future's state: the executor runs other tasks in between), else
    /// register on `not_empty`, try once more, and park the task with the
    /// process's waiter (`waiter.rs`) under the key registered. The async
    /// twin of [`wait_for`](Self::wait_for), with the same dead-producer rule.
    pub(in crate::ring) fn poll_for<R>(
        &self,
        cx: &mut Context<'_>,
        since: &mut Option<std::time::Instant>,
        parking: &mut Parking,
        mut attempt: impl FnMut() -> Result<R, PopError>,
    ) -> Poll<Result<R, PopError>> {
        match attempt() {
            Err(PopError::Empty) => {}
            other => return Poll::Ready(other),
        }
        if keep_polling(self.wait, since) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let ctrl = self.mem.ctrl();
        // The registration's fence orders it before the re-check: either the
        // producer's notify sees our bit, or the re-check sees its tail.
        let key = ctrl.not_empty.prepare();
        match attempt() {
            Err(PopError::Empty) if self.mem.producer_dead() => {
                // Drained and no producer left: one more look, then out.
                Poll::Ready(match attempt() {
                    Err(PopError::Empty) => Err(PopError::Disconnected),
                    other => other,
                })
            }
            Err(PopError::Empty) => {
                let keep: Arc<RingMem> = self.mem.clone();
                parking.park(ctrl.not_empty.futex(), key, keep, cx.waker());
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }
}

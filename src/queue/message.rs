//! Byte messages on the multi-producer [`Queue`](super::Queue): a queue of
//! [`Frame`]s carries messages of any length up to a lane's capacity * 56
//! bytes, each delivered whole to exactly one consumer, each producer's in
//! the order it pushed them. The frames and their checks are the ring's
//! (`src/ring/message.rs`, shared); the lane algorithm is `producer.rs`'s
//! and `consumer.rs`'s. What lives here is only the glue.
//!
//! A producer writes every frame of a message into its own lane and
//! publishes them with **one** Release store of the lane's tail: a
//! producer killed mid-push has published the whole message or nothing. A
//! consumer reads a lane's first frame, computes how many frames the
//! message has, and claims exactly those with **one** CAS of the lane's
//! head (claim = commit). An impossible frame is [`PopError::Corrupt`],
//! never an out-of-bounds copy; a message longer than a lane is
//! [`SendError::TooLarge`], never split. A lane's head and tail stand at
//! message boundaries only as long as every pop is a bytes pop: an item
//! pop (`pop`, `try_pop`) takes single frames, and a bytes pop that then
//! meets the middle of a message reports it as `Corrupt`.
//!
//! # JoinableQueue, per message
//!
//! [`task_done`](Consumer::task_done) after a bytes pop marks that whole
//! message done (the consumer keeps the frame counts of the messages it
//! holds, oldest first). The shared accounting stays in frames, so `join`
//! holds for a consumer killed at any instruction exactly as for items;
//! hence [`JoinReport::abandoned`](super::JoinReport::abandoned) counts
//! **frames** on a queue of byte messages (a dead consumer's held frames
//! cannot be told apart into messages), and so does
//! [`held`](Consumer::held).
//!
//! ```
//! use shmkit::queue::{Queue, QueueOptions};
//! use shmkit::ring::message::Frame;
//! let name = format!("shmkit-doc-qbytes-{}", std::process::id());
//! // 64 frames (3584 bytes) per producer, 4 producers, 8 consumers.
//! let q = Queue::<Frame>::create(&name, QueueOptions::new(64, 4, 8))?;
//! let mut tx = q.producer()?;
//! let rx = q.consumer()?;
//! tx.push_bytes(b"hello")?;
//! tx.push_bytes(&vec![7u8; 1000])?;   // 18 frames, one publish
//! let mut buf = Vec::new();
//! rx.pop_bytes_into_timeout(&mut buf, std::time::Duration::from_secs(1))?;
//! assert_eq!(buf, b"hello");
//! assert_eq!(rx.pop_bytes()?.len(), 1000);
//! rx.task_done()?;                     // one whole message each
//! rx.task_done()?;
//! assert_eq!(q.join()?.abandoned, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::time::Duration;

use crate::ring::message::{
    bytes_pop_api, bytes_push_api, check_len, frames_for, max_message_len, read_message,
    write_ahead,
};
use crate::ring::{PopError, PushError, SendError};

pub use crate::ring::message::Frame;

use super::{Consumer, Producer};

impl Producer<Frame> {
    /// The longest message this queue carries: a lane's capacity * 56
    /// bytes (at most `u32::MAX`).
    pub fn max_message_len(&self) -> usize {
        max_message_len(self.mem.geo().cap as usize)
    }

    /// Push one message if our lane has room for all of its frames now
    /// (`SendError::Full` if not; nothing was sent).
    #[must_use = "the message may not have been sent (Full)"]
    pub fn try_push_bytes(&mut self, msg: &[u8]) -> Result<(), SendError> {
        check_len(msg, self.max_message_len())?;
        self.try_push_checked(msg, None).map_err(SendError::from)
    }

    /// One attempt to push a message that passed `check_len` (its length
    /// fits a frame's `u32`, its frames a lane): all or nothing with
    /// `ahead` `None`; a waiting push passes its count of frames written
    /// ahead (see [`write_ahead`]).
    fn try_push_checked(
        &mut self,
        msg: &[u8],
        ahead: Option<&mut usize>,
    ) -> Result<(), PushError<()>> {
        if self.mem.closed() {
            return Err(PushError::Closed(()));
        }
        let k = frames_for(msg.len()) as u64;
        let free = self
            .room_now(k)
            .map_err(|detail| PushError::Corrupt { item: (), detail })?;
        if !write_ahead(msg, free, ahead, |i, n| self.ahead_run(i, n)) {
            return Err(PushError::Full(()));
        }
        // One Release store of the lane's tail (`Producer::publish`)
        // publishes every frame of the message.
        self.publish_ahead(k);
        Ok(())
    }

    bytes_push_api!("lane");

    /// Push one message, waiting asynchronously while our lane lacks room:
    /// the `async` form of [`push_bytes`](Self::push_bytes). A future
    /// dropped before it completes has sent nothing.
    pub fn push_bytes_async<'a>(
        &'a mut self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<(), SendError>> + 'a {
        let checked = check_len(msg, self.max_message_len());
        let push = checked
            .is_ok()
            .then(|| self.push_async_with((), move |p, ()| p.try_push_checked(msg, None)));
        async move {
            match push {
                Some(push) => push.await.map_err(SendError::from),
                None => checked, // TooLarge
            }
        }
    }
}

impl Consumer<Frame> {
    /// Take one whole message into `out` (cleared first and reused) if one
    /// is there, claiming exactly its frames from one lane with one CAS.
    #[must_use = "a message taken and dropped is lost to every consumer"]
    pub fn try_pop_bytes_into(&self, out: &mut Vec<u8>) -> Result<(), PopError> {
        let cap = self.mem.geo().cap as usize;
        read_message(cap, out, |size, copy| {
            let k = self.claim_sized(crate::sole::Claim::Shared, size, copy)?;
            // Held as soon as claimed: also a message then found damaged
            // (`Corrupt`), which `task_done` marks like any other.
            self.hold_message(k);
            Ok(k)
        })
        .map(|_| ())
    }

    bytes_pop_api!("queue");

    /// Take one whole message into `out` (cleared first and reused),
    /// waiting at most `timeout` while the queue is empty (`Timeout` then;
    /// a binding may call it in short slices to run its signal handlers).
    pub fn pop_bytes_into_timeout(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), PopError> {
        self.pop_bytes_into_until(out, crate::ring::wait::deadline_after(timeout))
    }

    /// Take one whole message, waiting asynchronously while the queue is
    /// empty: the `async` form of [`pop_bytes`](Self::pop_bytes);
    /// cancellation-safe as [`pop_async`](Self::pop_async).
    pub fn pop_bytes_async(&self) -> impl Future<Output = Result<Vec<u8>, PopError>> + '_ {
        self.pop_async_with(|| self.try_pop_bytes())
    }
}

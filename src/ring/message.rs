//! Byte messages of any length on a ring: Python's `send_bytes` /
//! `recv_bytes`, each message delivered whole to exactly one consumer.
//! Built only on the producer's and consumer's own methods (reserve, write,
//! publish; claim a run sized by its first frame); the ring algorithm and
//! its orderings are in `producer.rs` and `consumer.rs`, not here. The
//! frame encoding and its checks (`write_frames`, `read_message`,
//! `check_len`) and the waiting forms (`bytes_push_api!`,
//! `bytes_pop_api!`) also serve the multi-producer queue's byte messages
//! (`src/queue/message.rs`). The copies themselves (straight between the
//! slots and the caller's bytes, one Relaxed atomic access per 8 bytes, the
//! frame headers written or checked in the same pass) are
//! `frame_copy.rs`'s, with the argument for them over a plain or a crate's
//! memcpy and over a contiguous layout.
//!
//! A ring of [`Frame`]s (64 bytes: a 4-byte total length, a 4-byte frame
//! index, 56 bytes of data) carries a message of `L` bytes as
//! `max(1, ceil(L / 56))` frames. The producer writes all of a message's
//! frames and publishes them with **one** store of `tail`, so `tail` only
//! ever stands at a message boundary (a push waiting for room writes the
//! frames that already fit meanwhile, past `tail`, where no consumer takes
//! them: see `write_ahead`). A consumer reads the first frame,
//! computes how many frames the message has, and claims exactly that many
//! with **one** CAS of `head` (claim = commit, as for single items). So a
//! message is never split between consumers, never half-visible, and a
//! consumer killed mid-copy loses at most the message it had claimed.
//!
//! A message longer than the ring (`capacity * 56` bytes, see
//! [`max_message_len`]) is refused with [`SendError::TooLarge`]: never
//! split over several publishes, never truncated. Lengths read back are
//! checked against what was published: an impossible frame is
//! [`PopError::Corrupt`], never an out-of-bounds copy.
//!
//! # Typed messages
//!
//! [`Producer::push_value`] / [`Consumer::pop_value`] (and the
//! [`Pipe`](crate::pipe::Pipe)'s `send` / `recv`) carry any [`ShmType`]
//! value with its identity in front: an 8-byte tag (a hash of the type's
//! name and layout fingerprint), the name's length in one byte and the name
//! (at most 64 bytes), then the value's bytes. A receive for another type
//! is [`PopError::WrongType`], naming both types, never a reinterpretation
//! of the bytes; an `f64` sent is not an `i64` received.
//!
//! ```
//! use shmkit::ring::{PopError, Ring, message::Frame};
//! let ring = Ring::<Frame>::new_in_process(8)?;
//! let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
//! tx.push_value(&2.5f64)?;
//! let e = rx.pop_value::<i64>().unwrap_err();
//! assert!(matches!(e, PopError::WrongType { .. }));
//! assert_eq!(
//!     e.to_string(),
//!     "received a message of type f64 where a value of type i64 (8 bytes, align 8) was \
//!      expected: both ends must send and receive the same type"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```
//! use shmkit::ring::message::Frame;
//! use shmkit::ring::Ring;
//! let name = format!("shmkit-doc-bytes-{}", std::process::id());
//! let ring = Ring::<Frame>::create(&name, 64)?;
//! let mut tx = ring.producer()?;
//! let rx = ring.consumer()?;
//! tx.push_bytes(b"hello")?;
//! tx.push_bytes(&vec![7u8; 1000])?;   // 18 frames, one publish
//! assert_eq!(rx.pop_bytes()?, b"hello");
//! assert_eq!(rx.pop_bytes()?.len(), 1000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use crate::waiter::Parking;

use crate::identity::ShmType;
use crate::sync::{AtomicU64, Ordering};

use super::consumer::Consumer;
use super::error::{PopError, SendError};
use super::frame_copy::{FRAME_WORDS, load_frames, split_header, store_frames};
use super::producer::Producer;

/// Data bytes per frame.
pub const FRAME_DATA: usize = 56;

/// One slot of a byte-message ring. Its fields are private: a producer
/// fills frames through `push_bytes`, a consumer reads them through
/// `pop_bytes`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct Frame {
    /// The whole message's length in bytes (in every frame).
    len: u32,
    /// This frame's index in its message, from 0.
    index: u32,
    data: [u8; FRAME_DATA],
}

/// A frame ring's identity: shmkit's own.
impl crate::ShmType for Frame {
    const TYPE: &'static crate::identity::TypeInfo =
        &crate::identity::TypeInfo::opaque("shmkit.Frame", size_of::<Frame>(), align_of::<Frame>());
}

/// Frames a message of `len` bytes takes (an empty message takes one).
pub fn frames_for(len: usize) -> usize {
    len.div_ceil(FRAME_DATA).max(1)
}

/// The longest message a ring of `capacity` frames carries.
pub fn max_message_len(capacity: usize) -> usize {
    capacity.saturating_mul(FRAME_DATA).min(u32::MAX as usize)
}

/// `TooLarge` if a message of `msg.len()` bytes is longer than `max`.
pub(crate) fn check_len(msg: &[u8], max: usize) -> Result<(), SendError> {
    if msg.len() > max {
        return Err(SendError::TooLarge {
            len: msg.len(),
            max,
        });
    }
    Ok(())
}

/// Write frames `first..` of `msg` (at most `u32::MAX` bytes: see
/// [`check_len`]; as many frames as `runs` hold) into `runs`, reserved
/// slots (whole frames, in order, possibly split in two where the ring
/// wraps).
#[inline]
fn write_frames(msg: &[u8], first: usize, runs: [&[AtomicU64]; 2]) {
    let [a, b] = runs;
    store_frames(a, first, msg);
    if !b.is_empty() {
        store_frames(b, first + a.len() / FRAME_WORDS, msg);
    }
}

/// One attempt of a byte-message push (`msg` passed [`check_len`]), given
/// `free` slots past the producer's tail: writes what it may of the
/// message's frames through `run(i, n)` (the words of the `n` slots from
/// `tail + i`), and says whether all of them are written, to be published
/// with one store of tail.
///
/// `ahead` is `None` for an all-or-nothing attempt (the `try_` pushes):
/// nothing is written unless every frame fits. A waiting push passes the
/// count of frames its earlier attempts wrote (from 0): this attempt writes
/// the frames that now fit past them, so the producer copies most of a
/// message while the consumers still copy the one before it (a 1 MiB
/// message on a ring with room for less than two: the copies overlap
/// instead of taking turns). Frames written past tail are invisible to
/// every consumer (a stale one may read them, and discards what it read):
/// a push that then times out, finds the ring closed, or dies has published
/// nothing, and the next push overwrites them.
#[inline]
pub(crate) fn write_ahead<'a>(
    msg: &[u8],
    free: u64,
    ahead: Option<&mut usize>,
    run: impl FnOnce(usize, usize) -> [&'a [AtomicU64]; 2],
) -> bool {
    let k = frames_for(msg.len());
    // Free slots only grow while the producer waits (head only moves on,
    // and a head that went back is `Corrupt` before this).
    let fits = free.min(k as u64) as usize;
    let mut none = 0;
    let done = match ahead {
        Some(done) => done,
        None if fits < k => return false,
        None => &mut none,
    };
    if fits > *done {
        write_frames(msg, *done, run(*done, fits - *done));
        *done = fits;
    }
    *done == k
}

/// What a claim asks of one message: `size(first_slot, available)`, how
/// many slots to take, decided from the first.
type ClaimSized<'a> = &'a mut dyn FnMut(&[AtomicU64], usize) -> Result<usize, String>;
/// What a claim does with the slots it takes: `copy(i, run)`, a run of
/// whole slots contiguous in memory starting at the claim's `i`-th (at
/// most two runs), called before the claim's CAS (and again on a retry).
type CopyRun<'a> = &'a mut dyn FnMut(usize, &[AtomicU64]);

/// Take one whole message into `out` (cleared first) through `claim` (the
/// ring's or a queue lane's claim = commit, which must take exactly the
/// count `size` returns, `1..=available`, or report an `Err` of `size` as
/// `Corrupt`). The first frame says how many frames the message has,
/// checked against `cap` (frames a lane holds) and what was published; the
/// others must agree with it. Returns the frames taken.
///
/// The data goes straight from the slots into `out`'s spare capacity
/// (`frame_copy::load_frames`: one Relaxed load and one store per 8
/// bytes, whole frames), and `out`'s length is set only once every frame
/// of the claimed message was copied.
pub(crate) fn read_message(
    cap: usize,
    out: &mut Vec<u8>,
    claim: impl FnOnce(ClaimSized<'_>, CopyRun<'_>) -> Result<usize, PopError>,
) -> Result<usize, PopError> {
    let total = Cell::new(0usize);
    let mut bad = None::<String>;
    // Frames 0..copied of the message are in `out`'s spare capacity
    // (counted only for runs that continue the prefix, so the count is
    // never more than what was written).
    let mut copied = 0usize;
    out.clear();
    let k = claim(
        &mut |first, available| {
            // Relaxed: ordered by the claim's Acquire load of tail, as the
            // data words.
            let (len, index) = split_header(first[0].load(Ordering::Relaxed));
            // A u32: frames_for cannot overflow, nor can `i * FRAME_DATA`
            // below (i < k <= cap).
            let len = len as usize;
            let k = frames_for(len);
            if index != 0 {
                return Err(format!(
                    "a message starts with frame {index} of a {len}-byte message"
                ));
            }
            if k > cap {
                return Err(format!(
                    "frame length {len} needs {k} frames, more than the capacity {cap}"
                ));
            }
            total.set(len);
            // More frames than published means a scribbled length (the
            // producer publishes whole messages); the claim reports it.
            if k > available {
                return Err(format!(
                    "frame length {len} needs {k} frames, only {available} published"
                ));
            }
            Ok(k)
        },
        &mut |i0, run| {
            let len = total.get();
            if i0 == 0 {
                // A new attempt: what an earlier one found is void.
                bad = None;
                copied = 0;
                // Whole frames: the last one's bytes past `len` too.
                out.reserve(frames_for(len) * FRAME_DATA);
            }
            let frames = run.len() / FRAME_WORDS;
            // i0 + frames <= k = frames_for(len): no overflow, in bounds.
            let dst = &mut out.spare_capacity_mut()[i0 * FRAME_DATA..][..frames * FRAME_DATA];
            if let Some(d) = load_frames(run, i0, len, dst) {
                bad = bad.take().or(Some(d));
            }
            if i0 == copied {
                copied += frames;
            }
        },
    )?;
    let len = total.get();
    if copied != k {
        // Unreachable: a claim of k frames copies each.
        return Err(PopError::Corrupt(format!(
            "copied {copied} frames of a {k}-frame message"
        )));
    }
    // SAFETY: copied == k: the copies of the claim's last attempt (which
    // started at frame 0, reserving k * FRAME_DATA >= len bytes) wrote
    // frames 0..k of the message, in order, into the spare capacity: bytes
    // 0..len are initialised, and len <= capacity.
    unsafe { out.set_len(len) };
    // The claim succeeded, so these frames were not being overwritten: an
    // inconsistency is real damage.
    match bad {
        Some(d) => Err(PopError::Corrupt(d)),
        None => Ok(k),
    }
}

/// The waiting forms of the byte-message pushes, written once for the
/// ring's and the queue's producers (`$what` names the container in the
/// docs): `push_bytes`, `push_bytes_timeout`, and `push_bytes_until` under
/// them. The type provides `max_message_len`, `try_push_checked` (one
/// attempt for a message that passed [`check_len`], writing ahead as
/// [`write_ahead`] says) and `push_with` (retry while full).
macro_rules! bytes_push_api {
    ($what:literal) => {
        #[doc = concat!("Push one message, waiting while the ", $what, " lacks room for it.")]
        pub fn push_bytes(&mut self, msg: &[u8]) -> Result<(), $crate::ring::SendError> {
            self.push_bytes_until(msg, None)
        }

        /// [`push_bytes`](Self::push_bytes), waiting at most `timeout`.
        pub fn push_bytes_timeout(
            &mut self,
            msg: &[u8],
            timeout: std::time::Duration,
        ) -> Result<(), $crate::ring::SendError> {
            self.push_bytes_until(msg, crate::ring::wait::deadline_after(timeout))
        }

        /// Push one message, waiting for room until `deadline` if any.
        fn push_bytes_until(
            &mut self,
            msg: &[u8],
            deadline: Option<std::time::Instant>,
        ) -> Result<(), $crate::ring::SendError> {
            $crate::ring::message::check_len(msg, self.max_message_len())?;
            // Frames of `msg` written ahead by the attempts so far.
            let mut ahead = 0;
            self.push_with(deadline, |p| p.try_push_checked(msg, Some(&mut ahead)))
                .map_err($crate::ring::SendError::from)
        }
    };
}
pub(crate) use bytes_push_api;

/// The other forms of the byte-message pops, written once for the ring's
/// and the queue's consumers, on the type's `try_pop_bytes_into` and
/// `wait_for` (retry while empty): `try_pop_bytes`, `pop_bytes`,
/// `pop_bytes_timeout`, `pop_bytes_into_until` (for `pipe`, which reuses one
/// buffer across receives).
macro_rules! bytes_pop_api {
    ($what:literal) => {
        /// Take one whole message if one is there.
        #[must_use = "a message taken and dropped is lost to every consumer"]
        pub fn try_pop_bytes(&self) -> Result<Vec<u8>, $crate::ring::PopError> {
            let mut v = Vec::new();
            self.try_pop_bytes_into(&mut v)?;
            Ok(v)
        }

        #[doc = concat!("Take one whole message, waiting while the ", $what, " is empty.")]
        pub fn pop_bytes(&self) -> Result<Vec<u8>, $crate::ring::PopError> {
            let mut v = Vec::new();
            self.pop_bytes_into_until(&mut v, None)?;
            Ok(v)
        }

        /// [`pop_bytes`](Self::pop_bytes), waiting at most `timeout`.
        pub fn pop_bytes_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<Vec<u8>, $crate::ring::PopError> {
            let mut v = Vec::new();
            self.pop_bytes_into_until(&mut v, crate::ring::wait::deadline_after(timeout))?;
            Ok(v)
        }

        #[doc = concat!("Take one whole message into `out` (cleared first), waiting while the ", $what, " is empty, until `deadline` if any.")]
        pub(crate) fn pop_bytes_into_until(
            &self,
            out: &mut Vec<u8>,
            deadline: Option<std::time::Instant>,
        ) -> Result<(), $crate::ring::PopError> {
            self.wait_for(deadline, || self.try_pop_bytes_into(out))
        }
    };
}
pub(crate) use bytes_pop_api;

impl Producer<Frame> {
    /// Push one message if the ring has room for all of its frames now
    /// (`SendError::Full` if not).
    #[must_use = "the message may not have been sent (Full)"]
    pub fn try_push_bytes(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.check_len(msg)?;
        self.try_push_checked(msg, None).map_err(SendError::from)
    }

    /// `TooLarge` if `msg` can never fit in this ring.
    fn check_len(&self, msg: &[u8]) -> Result<(), SendError> {
        check_len(msg, self.max_message_len())
    }

    /// One attempt to push a message that passed
    /// [`check_len`](Self::check_len) (so its length fits in a frame's
    /// `u32` and its frames in the ring): all or nothing with `ahead`
    /// `None`; a waiting push passes its count of frames written ahead
    /// (see [`write_ahead`]).
    fn try_push_checked(
        &mut self,
        msg: &[u8],
        ahead: Option<&mut usize>,
    ) -> Result<(), super::PushError<()>> {
        if self.has_closed() {
            return Err(super::PushError::Closed(()));
        }
        let k = frames_for(msg.len());
        let free = self.free(k as u64)?;
        if !write_ahead(msg, free, ahead, |i, n| self.reserved_run(i, n)) {
            return Err(super::PushError::Full(()));
        }
        // One Release store of tail (in `Producer::publish`) publishes every
        // frame of the message.
        self.publish_reserved(k as u64);
        Ok(())
    }

    bytes_push_api!("ring");

    /// Push one message, waiting asynchronously while the ring lacks room:
    /// the `async` form of [`push_bytes`](Self::push_bytes) (see
    /// [`Consumer::pop_async`](super::Consumer::pop_async)). A future dropped
    /// before it completes has sent nothing.
    pub fn push_bytes_async<'a>(
        &'a mut self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<(), SendError>> + 'a {
        let (mut pending, mut since) = (Some(()), None);
        let mut parking = Parking::default();
        std::future::poll_fn(move |cx| {
            if let Err(e) = self.check_len(msg) {
                return Poll::Ready(Err(e));
            }
            self.poll_room(cx, &mut pending, &mut since, &mut parking, |p, ()| {
                p.try_push_checked(msg, None)
            })
            .map(|r| r.map_err(SendError::from))
        })
    }

    /// The longest message this ring carries.
    pub fn max_message_len(&self) -> usize {
        max_message_len(self.capacity())
    }
}

impl Consumer<Frame> {
    /// Take one whole message into `out` (cleared first) if one is there.
    #[must_use = "a message taken and dropped is lost to every consumer"]
    pub fn try_pop_bytes_into(&self, out: &mut Vec<u8>) -> Result<(), PopError> {
        read_message(self.capacity(), out, |size, copy| self.claim(size, copy)).map(|_| ())
    }

    bytes_pop_api!("ring");

    /// Take one whole message, waiting asynchronously while the ring is
    /// empty: the `async` form of [`pop_bytes`](Self::pop_bytes);
    /// cancellation-safe as [`pop_async`](Self::pop_async).
    pub fn pop_bytes_async(&self) -> impl Future<Output = Result<Vec<u8>, PopError>> + '_ {
        let (mut since, mut parking) = (None, Parking::default());
        std::future::poll_fn(move |cx| {
            self.poll_for(cx, &mut since, &mut parking, || self.try_pop_bytes())
        })
    }
}

/// The most bytes of a type name a typed message carries.
const MAX_TAG_NAME: usize = 64;

/// Append a typed message's identity to `out`: the tag, the name's length,
/// the name (its first [`MAX_TAG_NAME`] bytes, cut at a char boundary).
pub(crate) fn put_identity(out: &mut Vec<u8>, tag: u64, name: &str) {
    let mut end = name.len().min(MAX_TAG_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&tag.to_le_bytes());
    out.push(end as u8);
    out.extend_from_slice(&name.as_bytes()[..end]);
}

/// Split a typed message into its tag, its name and its payload; `None` for
/// a message too short to be one (a byte message).
pub(crate) fn split_identity(msg: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let tag = u64::from_le_bytes(msg.get(..8)?.try_into().ok()?);
    let n = usize::from(*msg.get(8)?);
    let name = msg.get(9..9 + n)?;
    Some((tag, name, &msg[9 + n..]))
}

/// The payload of a message that must carry identity `tag`; `WrongType`,
/// naming what it carries and what `expected()` gives (the name, and the
/// type as messages show it), if it does not.
pub(crate) fn payload_of(
    msg: &[u8],
    tag: u64,
    expected: impl FnOnce() -> (String, String),
) -> Result<&[u8], PopError> {
    match split_identity(msg) {
        Some((t, _, payload)) if t == tag => Ok(payload),
        Some((_, name, _)) => {
            let (want_name, want) = expected();
            let name = String::from_utf8_lossy(name);
            // The same name with another tag: the sender's layout differs.
            let other = if name == want_name {
                " with another layout"
            } else {
                ""
            };
            Err(PopError::WrongType {
                found: format!("a message of type {name}{other}"),
                expected: want,
            })
        }
        None => Err(PopError::WrongType {
            found: format!("a byte message of {} bytes", msg.len()),
            expected: expected().1,
        }),
    }
}

/// `value` as a typed message, into `out` (cleared first).
pub(crate) fn encode_value<T: ShmType>(value: &T, out: &mut Vec<u8>) {
    out.clear();
    put_identity(out, T::TYPE.message_tag(), &T::TYPE.name());
    out.extend_from_slice(bytemuck::bytes_of(value));
}

/// The value a typed message of `T` carries.
pub(crate) fn decode_value<T: ShmType>(msg: &[u8]) -> Result<T, PopError> {
    let expected = || (T::TYPE.name(), T::TYPE.describe());
    let payload = payload_of(msg, T::TYPE.message_tag(), expected)?;
    // The tag matched, so a payload of another size is damage, not a type
    // mix-up.
    bytemuck::try_pod_read_unaligned(payload).map_err(|_| {
        PopError::Corrupt(format!(
            "a message of type {} carries {} bytes, not {}",
            T::TYPE.name(),
            payload.len(),
            size_of::<T>()
        ))
    })
}

impl Producer<Frame> {
    /// Push `value` as one typed message (its identity, then its bytes),
    /// waiting while the ring lacks room.
    pub fn push_value<T: ShmType>(&mut self, value: &T) -> Result<(), SendError> {
        let mut msg = Vec::new();
        encode_value(value, &mut msg);
        self.push_bytes(&msg)
    }

    /// [`push_value`](Self::push_value) if the ring has room now
    /// (`SendError::Full` if not; nothing was sent).
    #[must_use = "the value may not have been sent (Full)"]
    pub fn try_push_value<T: ShmType>(&mut self, value: &T) -> Result<(), SendError> {
        let mut msg = Vec::new();
        encode_value(value, &mut msg);
        self.try_push_bytes(&msg)
    }
}

impl Consumer<Frame> {
    /// Take one typed message of `T` (waits while the ring is empty). A
    /// message of another type is taken and reported as
    /// [`PopError::WrongType`].
    pub fn pop_value<T: ShmType>(&self) -> Result<T, PopError> {
        decode_value(&self.pop_bytes()?)
    }

    /// [`pop_value`](Self::pop_value) if a message is there now.
    #[must_use = "a message taken and dropped is lost to every consumer"]
    pub fn try_pop_value<T: ShmType>(&self) -> Result<T, PopError> {
        decode_value(&self.try_pop_bytes()?)
    }

    /// [`pop_value`](Self::pop_value), waiting at most `timeout`.
    pub fn pop_value_timeout<T: ShmType>(&self, timeout: Duration) -> Result<T, PopError> {
        decode_value(&self.pop_bytes_timeout(timeout)?)
    }
}

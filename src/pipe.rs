//! Python's `Pipe()`: a duplex connection between two processes, through
//! shared memory rather than the kernel.
//!
//! A [`Pipe`] is two rings of [`Frame`]s, one per direction; each
//! [`Connection`] end is the producer of one and the only consumer of the
//! other. Values (`send`/`recv`, any [`ShmType`], checked by type identity
//! at the receiver: see [`crate::ring::message`]) and byte messages
//! (`send_bytes`/`recv_bytes`) travel as whole messages (see
//! [`crate::ring::message`]): up to [`Connection::max_message_len`] bytes, fixed by
//! the capacity chosen at creation; a longer message is refused with
//! `SendError::TooLarge`, never truncated. When the other end closes, is
//! dropped or dies, `recv` returns what was already sent and then
//! `PopError::Disconnected`; a `send` that finds the ring full and the other
//! end gone returns `SendError::Disconnected`. `send` waits while the other
//! end's buffer is full; `send_timeout` waits at most a given time, and
//! `try_send` never waits.
//!
//! Each direction is a single-producer, single-consumer use of the SPMC ring,
//! with no separate algorithm, so the ring's loom models cover it.
//!
//! ```
//! use shmkit::pipe::Pipe;
//! let name = format!("shmkit-doc-pipe-{}", std::process::id());
//! let pipe = Pipe::create(&name, 64)?;
//! let mut a = pipe.end_a()?;
//! let mut b = Pipe::open(&name)?.end_b()?; // in another process, usually
//! a.send(&21u64)?;
//! let x: u64 = b.recv()?;
//! b.send(&(x * 2))?;
//! assert_eq!(a.recv::<u64>()?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::identity::ShmType;
use crate::ring::message::{Frame, decode_value, encode_value, max_message_len};
use crate::ring::{Consumer, PopError, Producer, Ring, SendError};

/// Both directions of a duplex connection: two rings of [`Frame`]s. Make
/// the two ends from it (see the [module docs](self) for an example).
#[derive(Debug, Clone)]
#[must_use = "dropping the creating process's last handle on a pipe removes its names"]
pub struct Pipe {
    a_to_b: Ring<Frame>,
    b_to_a: Ring<Frame>,
}

/// The two rings' names (or environment variables) for pipe `name`.
fn names(name: &str) -> [String; 2] {
    [format!("{name}.a2b"), format!("{name}.b2a")]
}

impl Pipe {
    /// A pipe of the rings `ring` makes for each of `names` (a2b, then b2a).
    fn of(names: [String; 2], ring: impl Fn(&str) -> Result<Ring<Frame>>) -> Result<Self> {
        Ok(Pipe {
            a_to_b: ring(&names[0])?,
            b_to_a: ring(&names[1])?,
        })
    }

    /// Create a named pipe: two segments, `NAME.a2b` and `NAME.b2a`, each of
    /// `capacity` frames (a power of two; 56 bytes of message per frame).
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        Self::of(names(name), |n| Ring::create(n, capacity))
    }

    /// Open the named pipe if it exists, else create it (each of its two
    /// rings: opened if there, created with `capacity` if not; see
    /// [`Ring::open_or_create`]). Both ends may call this, in either order
    /// or at once.
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Self> {
        Self::of(names(name), |n| Ring::open_or_create(n, capacity))
    }

    /// Open a named pipe made by [`Pipe::create`].
    pub fn open(name: &str) -> Result<Self> {
        Self::of(names(name), Ring::open)
    }

    /// An anonymous pipe, to hand to a child with [`share_with`](Self::share_with).
    pub fn create_anonymous(capacity: usize) -> Result<Self> {
        Self::of(Default::default(), |_| Ring::create_anonymous(capacity))
    }

    /// Let the child `cmd` spawns open this pipe with `open_inherited(var)`
    /// (it uses environment variables `VAR_A2B` and `VAR_B2A`).
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        let [ab, ba] = vars(var);
        self.a_to_b.share_with(cmd, &ab);
        self.b_to_a.share_with(cmd, &ba);
    }

    /// In a child: open the pipe the parent passed with `share_with`.
    pub fn open_inherited(var: &str) -> Result<Self> {
        Self::of(vars(var), Ring::open_inherited)
    }

    /// End A: sends on `a2b`, receives on `b2a`.
    pub fn end_a(&self) -> Result<Connection> {
        Connection::new(&self.a_to_b, &self.b_to_a)
    }

    /// End B: sends on `b2a`, receives on `a2b`.
    pub fn end_b(&self) -> Result<Connection> {
        Connection::new(&self.b_to_a, &self.a_to_b)
    }
}

/// The environment variables `share_with(cmd, var)` passes the rings in.
fn vars(var: &str) -> [String; 2] {
    [format!("{var}_A2B"), format!("{var}_B2A")]
}

/// One end of a [`Pipe`].
#[derive(Debug)]
#[must_use = "dropping a connection closes its sending direction"]
pub struct Connection {
    tx: Producer<Frame>,
    rx: Consumer<Frame>,
    /// The last message received (reused).
    buf: Vec<u8>,
    /// The last typed message sent (reused).
    out: Vec<u8>,
}

impl Connection {
    fn new(out: &Ring<Frame>, inp: &Ring<Frame>) -> Result<Self> {
        Ok(Connection {
            tx: out.producer()?,
            // Our end's only reader (the producer role above already makes
            // the end ours alone), popping by plain stores: see
            // `ring::SoleConsumer`.
            rx: inp.consumer_holding_sole()?.into_sole_mode(),
            buf: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Send a value as a typed message (its [`ShmType`] identity, then its
    /// bytes), waiting while the other end's buffer is full.
    pub fn send<T: ShmType>(&mut self, value: &T) -> Result<(), SendError> {
        encode_value(value, &mut self.out);
        self.tx.push_bytes(&self.out)
    }

    /// [`send`](Self::send), waiting at most `timeout` for room
    /// (`SendError::Timeout` then; nothing was sent).
    ///
    /// ```
    /// use shmkit::pipe::Pipe;
    /// use shmkit::ring::SendError;
    /// use std::time::Duration;
    /// let pipe = Pipe::create_anonymous(1)?;   // room for one small message
    /// let (mut a, _b) = (pipe.end_a()?, pipe.end_b()?);
    /// a.send_timeout(&1u64, Duration::from_millis(10))?;
    /// // Nobody receives: the second one finds no room.
    /// assert_eq!(a.send_timeout(&2u64, Duration::from_millis(10)), Err(SendError::Timeout));
    /// assert_eq!(a.try_send(&2u64), Err(SendError::Full));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout<T: ShmType>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendError> {
        encode_value(value, &mut self.out);
        self.tx.push_bytes_timeout(&self.out, timeout)
    }

    /// Send a value if the other end's buffer has room now, never waiting
    /// (`SendError::Full` if not; nothing was sent).
    #[must_use = "the value may not have been sent (Full)"]
    pub fn try_send<T: ShmType>(&mut self, value: &T) -> Result<(), SendError> {
        encode_value(value, &mut self.out);
        self.tx.try_push_bytes(&self.out)
    }

    /// Receive a value sent with `send::<T>` (waits). A message of another
    /// type (another name or layout, or a byte message) is consumed and
    /// reported as `PopError::WrongType`, naming both types.
    ///
    /// ```
    /// use shmkit::pipe::Pipe;
    /// use shmkit::ring::PopError;
    /// let pipe = Pipe::create_anonymous(4)?;
    /// let (mut a, mut b) = (pipe.end_a()?, pipe.end_b()?);
    /// a.send(&-1i64)?;
    /// assert!(matches!(b.recv::<f64>(), Err(PopError::WrongType { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv<T: ShmType>(&mut self) -> Result<T, PopError> {
        self.rx.pop_bytes_into_until(&mut self.buf, None)?;
        decode_value(&self.buf)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout<T: ShmType>(&mut self, timeout: Duration) -> Result<T, PopError> {
        let deadline = crate::ring::wait::deadline_after(timeout);
        self.rx.pop_bytes_into_until(&mut self.buf, deadline)?;
        decode_value(&self.buf)
    }

    /// Send any `Serialize` value (`serde` feature), named by its Rust type
    /// name, waiting while the other end's buffer is full. See
    /// [`crate::ring::message`] and the ring's `push_serde` for the format;
    /// programs built apart should name the type with
    /// [`send_serde_as`](Self::send_serde_as).
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.send_serde_as(std::any::type_name::<T>(), value)
    }

    /// Send any `Serialize` value (`serde` feature) with the type name
    /// `name`, which the receiver checks. A value whose encoding is longer
    /// than [`max_message_len`](Self::max_message_len) is
    /// `SendError::TooLarge`.
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use shmkit::pipe::Pipe;
    /// let pipe = Pipe::create_anonymous(8)?;
    /// let (mut a, mut b) = (pipe.end_a()?, pipe.end_b()?);
    /// a.send_serde_as("demo.Job/1", &("resize", vec![640u32, 480]))?;
    /// let (op, dims): (String, Vec<u32>) = b.recv_serde_as("demo.Job/1")?;
    /// assert_eq!((op.as_str(), dims), ("resize", vec![640, 480]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn send_serde_as<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), SendError> {
        crate::ring::serde_msg::encode(name, value, &mut self.out)?;
        self.tx.push_bytes(&self.out)
    }

    /// Receive a value sent with [`send_serde`](Self::send_serde) of the
    /// same type (waits).
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, PopError> {
        self.recv_serde_as(std::any::type_name::<T>())
    }

    /// Receive a value sent with [`send_serde_as`](Self::send_serde_as)
    /// under `name` (waits): another name is `PopError::WrongType`, a value
    /// that does not decode `PopError::Decode`.
    #[cfg(feature = "serde")]
    pub fn recv_serde_as<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<T, PopError> {
        self.rx.pop_bytes_into_until(&mut self.buf, None)?;
        crate::ring::serde_msg::decode(name, &self.buf)
    }

    /// [`recv_serde_as`](Self::recv_serde_as), waiting at most `timeout`.
    #[cfg(feature = "serde")]
    pub fn recv_serde_as_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<T, PopError> {
        let deadline = crate::ring::wait::deadline_after(timeout);
        self.rx.pop_bytes_into_until(&mut self.buf, deadline)?;
        crate::ring::serde_msg::decode(name, &self.buf)
    }

    /// Send a byte message of up to [`max_message_len`](Self::max_message_len)
    /// bytes, waiting while the other end's buffer is full.
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.tx.push_bytes(msg)
    }

    /// [`send_bytes`](Self::send_bytes), waiting at most `timeout` for room
    /// (`SendError::Timeout` then; nothing was sent).
    pub fn send_bytes_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.tx.push_bytes_timeout(msg, timeout)
    }

    /// Send a byte message if the other end's buffer has room for all of it
    /// now, never waiting (`SendError::Full` if not; nothing was sent).
    #[must_use = "the message may not have been sent (Full)"]
    pub fn try_send_bytes(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.tx.try_push_bytes(msg)
    }

    /// Receive one whole byte message (waits).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, PopError> {
        self.rx.pop_bytes()
    }

    /// Receive one whole byte message into `buf` (cleared first), reusing
    /// its allocation (waits).
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<(), PopError> {
        self.rx.pop_bytes_into_until(buf, None)
    }

    /// [`recv_bytes`](Self::recv_bytes), waiting at most `timeout`.
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PopError> {
        self.rx.pop_bytes_timeout(timeout)
    }

    /// [`send_bytes`](Self::send_bytes) for async code: waits
    /// asynchronously while the other end's buffer is full (see
    /// [`Consumer::pop_async`](crate::ring::Consumer::pop_async) for how).
    /// A future dropped before it completes has sent nothing.
    pub fn send_bytes_async<'a>(
        &'a mut self,
        msg: &'a [u8],
    ) -> impl std::future::Future<Output = Result<(), SendError>> + 'a {
        self.tx.push_bytes_async(msg)
    }

    /// [`recv_bytes`](Self::recv_bytes) for async code; cancellation-safe (a
    /// message is taken only by the poll that returns it).
    pub fn recv_bytes_async(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, PopError>> + '_ {
        self.rx.pop_bytes_async()
    }

    /// How this end waits, for room to send and for a message to receive
    /// (see [`WaitStrategy`](crate::ring::WaitStrategy)).
    pub fn set_wait(&mut self, strategy: crate::ring::WaitStrategy) {
        self.tx.set_wait(strategy);
        self.rx.set_wait(strategy);
    }

    /// Whether a message is waiting (Python's `poll()` without a timeout).
    pub fn poll(&self) -> bool {
        !self.rx.is_empty()
    }

    /// The longest message this connection sends.
    pub fn max_message_len(&self) -> usize {
        max_message_len(self.tx.capacity())
    }

    /// Close the sending direction: the other end receives what was sent,
    /// then `Disconnected`. Dropping the connection closes too.
    pub fn close(&mut self) {
        self.tx.close();
    }
}

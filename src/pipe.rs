//! Python's `Pipe()`: a duplex connection between two processes, through
//! shared memory rather than the kernel.
//!
//! A [`Pipe`] is two rings of [`Frame`]s, one per direction; each
//! [`Connection`] end is the producer of one and the only consumer of the
//! other. Values (`send`/`recv`, any `T: Pod`) and byte messages
//! (`send_bytes`/`recv_bytes`) travel as whole messages (see
//! [`crate::ring::message`]): up to [`Connection::max_message_len`] bytes, fixed by
//! the capacity chosen at creation; a longer message is refused with
//! `PushError::TooLarge`, never truncated. When the other end closes, is
//! dropped or dies, `recv` returns what was already sent and then
//! `PopError::Disconnected`; a `send` that finds the ring full and the other
//! end gone returns `PushError::Disconnected`.
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

use bytemuck::Pod;

use crate::error::Result;
use crate::ring::message::{Frame, max_message_len};
use crate::ring::{Consumer, PopError, Producer, PushError, Ring};

/// Both directions of a duplex connection. Make the two ends from it.
#[derive(Debug, Clone)]
pub struct Pipe {
    a_to_b: Ring<Frame>,
    b_to_a: Ring<Frame>,
}

fn names(name: &str) -> (String, String) {
    (format!("{name}.a2b"), format!("{name}.b2a"))
}

impl Pipe {
    /// Create a named pipe: two segments, `NAME.a2b` and `NAME.b2a`, each of
    /// `capacity` frames (a power of two; 56 bytes of message per frame).
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        let (ab, ba) = names(name);
        let a_to_b = Ring::create(&ab, capacity)?;
        let b_to_a = Ring::create(&ba, capacity)?;
        Ok(Pipe { a_to_b, b_to_a })
    }

    /// Open a named pipe made by [`Pipe::create`].
    pub fn open(name: &str) -> Result<Self> {
        let (ab, ba) = names(name);
        Ok(Pipe {
            a_to_b: Ring::open(&ab)?,
            b_to_a: Ring::open(&ba)?,
        })
    }

    /// An anonymous pipe, to hand to a child with [`share_with`](Self::share_with).
    pub fn create_anonymous(capacity: usize) -> Result<Self> {
        Ok(Pipe {
            a_to_b: Ring::create_anonymous(capacity)?,
            b_to_a: Ring::create_anonymous(capacity)?,
        })
    }

    /// Let the child `cmd` spawns open this pipe with `open_inherited(var)`
    /// (it uses environment variables `VAR_A2B` and `VAR_B2A`).
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        self.a_to_b.share_with(cmd, &format!("{var}_A2B"));
        self.b_to_a.share_with(cmd, &format!("{var}_B2A"));
    }

    /// In a child: open the pipe the parent passed with `share_with`.
    pub fn open_inherited(var: &str) -> Result<Self> {
        Ok(Pipe {
            a_to_b: Ring::open_inherited(&format!("{var}_A2B"))?,
            b_to_a: Ring::open_inherited(&format!("{var}_B2A"))?,
        })
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

/// One end of a [`Pipe`].
#[derive(Debug)]
pub struct Connection {
    tx: Producer<Frame>,
    rx: Consumer<Frame>,
    buf: Vec<u8>,
}

impl Connection {
    fn new(out: &Ring<Frame>, inp: &Ring<Frame>) -> Result<Self> {
        Ok(Connection {
            tx: out.producer()?,
            rx: inp.consumer()?,
            buf: Vec::new(),
        })
    }

    /// Send a value, waiting while the other end's buffer is full.
    pub fn send<T: Pod>(&mut self, value: &T) -> Result<(), PushError<()>> {
        self.tx.push_bytes(bytemuck::bytes_of(value))
    }

    /// Receive a value sent with `send::<T>` (waits). A message of another
    /// size is `PopError::WrongSize`.
    pub fn recv<T: Pod>(&mut self) -> Result<T, PopError> {
        self.rx.pop_bytes_into_until(&mut self.buf, None)?;
        value_of(&self.buf)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, PopError> {
        let deadline = std::time::Instant::now() + timeout;
        self.rx
            .pop_bytes_into_until(&mut self.buf, Some(deadline))?;
        value_of(&self.buf)
    }

    /// Send a byte message of up to [`max_message_len`](Self::max_message_len) bytes.
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), PushError<()>> {
        self.tx.push_bytes(msg)
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

fn value_of<T: Pod>(bytes: &[u8]) -> Result<T, PopError> {
    bytemuck::try_pod_read_unaligned(bytes).map_err(|_| PopError::WrongSize {
        got: bytes.len(),
        expected: size_of::<T>(),
    })
}

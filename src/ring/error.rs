//! Why a ring or queue operation failed (the queue shares these types, so
//! their texts name neither): [`PushError`] (an item push; hands the item
//! back), [`SendError`] (a byte-message push, which can also be too large),
//! [`PopError`], [`JoinError`] and [`TaskDoneError`], each with `Display`
//! and `std::error::Error`. Errors about segments themselves (open, create,
//! a corrupt header) are [`crate::Error`], not here.

/// Why an item push failed. Each variant hands the item back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError<T> {
    /// The ring is full (only from `try_push`).
    Full(T),
    /// The ring was closed.
    Closed(T),
    /// Consumers existed and every one of them is dead: nobody will ever
    /// make room.
    Disconnected(T),
    /// The timeout passed while the ring stayed full.
    Timeout(T),
    /// The shared state is impossible (someone scribbled on the segment).
    Corrupt {
        /// The item that was not pushed.
        item: T,
        /// What was seen, naming the field.
        detail: String,
    },
}

impl<T> PushError<T> {
    /// The same error carrying something else (a count instead of an item).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PushError<U> {
        match self {
            PushError::Full(t) => PushError::Full(f(t)),
            PushError::Closed(t) => PushError::Closed(f(t)),
            PushError::Disconnected(t) => PushError::Disconnected(f(t)),
            PushError::Timeout(t) => PushError::Timeout(f(t)),
            PushError::Corrupt { item, detail } => PushError::Corrupt {
                item: f(item),
                detail,
            },
        }
    }

    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(t)
            | PushError::Closed(t)
            | PushError::Disconnected(t)
            | PushError::Timeout(t)
            | PushError::Corrupt { item: t, .. } => t,
        }
    }
}

impl<T> std::fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
            PushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PushError::Timeout(_) => f.write_str("Timeout(..)"),
            PushError::Corrupt { detail, .. } => write!(f, "Corrupt({detail:?})"),
        }
    }
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("full: no room for the item"),
            PushError::Closed(_) => f.write_str("closed: it takes no more items"),
            PushError::Disconnected(_) => {
                f.write_str("every consumer has died: nobody will make room")
            }
            PushError::Timeout(_) => f.write_str("timed out waiting for room"),
            PushError::Corrupt { detail, .. } => {
                write!(f, "the shared state is corrupt: {detail}")
            }
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a byte message was not sent (`Producer::push_bytes`,
/// `Connection::send_bytes`, ...). Unlike an item, a message can be too
/// large for the ring; nothing is handed back (the caller still has it).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The ring lacks room for the whole message now (only from `try_`
    /// sends).
    Full,
    /// The ring was closed.
    Closed,
    /// Consumers existed and every one of them is dead.
    Disconnected,
    /// The timeout passed while the ring lacked room.
    Timeout,
    /// The shared state is impossible; the detail names the field.
    Corrupt(String),
    /// The message is longer than the ring can ever hold: refused whole,
    /// never truncated.
    TooLarge {
        /// The message's length in bytes.
        len: usize,
        /// The longest message the ring carries (`max_message_len`).
        max: usize,
    },
    /// A value could not be serialised (`serde` feature); the detail is the
    /// encoder's.
    Encode(String),
}

impl From<PushError<()>> for SendError {
    fn from(e: PushError<()>) -> Self {
        match e {
            PushError::Full(()) => SendError::Full,
            PushError::Closed(()) => SendError::Closed,
            PushError::Disconnected(()) => SendError::Disconnected,
            PushError::Timeout(()) => SendError::Timeout,
            PushError::Corrupt { detail, .. } => SendError::Corrupt(detail),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full => f.write_str("full: no room for the message"),
            SendError::Closed => f.write_str("closed: it takes no more messages"),
            SendError::Disconnected => {
                f.write_str("every consumer has died: nobody will make room")
            }
            SendError::Timeout => f.write_str("timed out waiting for room"),
            SendError::Corrupt(d) => write!(f, "the shared state is corrupt: {d}"),
            SendError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes is longer than the ring can hold ({max} bytes): \
                 create it with a larger capacity, or send less at once"
            ),
            SendError::Encode(d) => write!(f, "the value could not be serialised: {d}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a pop returned no item.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopError {
    /// Nothing to take right now (only from `try_pop`).
    Empty,
    /// The ring is drained and will get no more items: closed, or its
    /// producer died without closing.
    Disconnected,
    /// The timeout passed with the ring empty.
    Timeout,
    /// The shared state is impossible; the detail says what was seen.
    Corrupt(String),
    /// A typed receive got a message of another type: another name or
    /// layout ([`ShmType`](crate::ShmType)), or a byte message. The message
    /// is consumed; nothing was reinterpreted.
    WrongType {
        /// What the message says it is (its type's name), or `"a byte
        /// message of N bytes"`.
        found: String,
        /// The type asked for: name, size, alignment, fields.
        expected: String,
    },
    /// A serialised message (`serde` feature) did not decode as the type
    /// asked for, though its type name matched; the detail is the decoder's.
    Decode(String),
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Empty => f.write_str("empty: no item is waiting"),
            PopError::Disconnected => f.write_str(
                "drained, and no producer will push again (closed, or every producer gone)",
            ),
            PopError::Timeout => f.write_str("timed out waiting for an item"),
            PopError::Corrupt(d) => write!(f, "the shared state is corrupt: {d}"),
            PopError::WrongType { found, expected } => write!(
                f,
                "received {found} where a value of type {expected} was expected: both \
                 ends must send and receive the same type"
            ),
            PopError::Decode(d) => write!(
                f,
                "a message of the expected type did not decode: {d} (are both ends built \
                 from the same definition of the type?)"
            ),
        }
    }
}

impl std::error::Error for PopError {}

/// What a successful `join` found: every item pushed was marked done or
/// abandoned. An item is abandoned when the consumer that took it died (or
/// dropped its handle) before marking it done; Python's `join` would wait
/// for it forever.
///
/// ```
/// use shmkit::ring::Ring;
/// let ring = Ring::<u32>::new_in_process(4)?;
/// let mut tx = ring.producer()?;
/// let rx = ring.consumer()?;
/// tx.push(1)?;
/// tx.push(2)?;
/// rx.pop()?;
/// rx.task_done()?;
/// rx.pop()?;
/// drop(rx); // leaves with 2 taken and not done
/// assert_eq!(tx.join()?.abandoned, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct JoinReport {
    /// Items taken by consumers that died or left before marking them done.
    /// (A consumer killed inside a pop, between announcing a claim and making
    /// it, is counted as holding what it was claiming: the count may then be
    /// one claim too high, and the join return that early.) On a queue of
    /// byte messages ([`Frame`](super::message::Frame)s), frames, not
    /// messages: a dead consumer's held frames cannot be told apart into
    /// messages.
    pub abandoned: u64,
}

/// Why `join` returned before every item was done.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The timeout passed with items still not done.
    Timeout,
    /// Consumers existed, all died, and items are still not done.
    Disconnected,
    /// The shared `done` counter is impossible; the detail says what was
    /// seen.
    Corrupt(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Timeout => f.write_str("timed out waiting for every item to be done"),
            JoinError::Disconnected => {
                f.write_str("every consumer died before all items were done")
            }
            JoinError::Corrupt(d) => write!(f, "the shared state is corrupt: {d}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Why `task_done` failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskDoneError {
    /// Called more times than items were taken from the ring.
    TooMany,
    /// The shared `done` or `head` counter is impossible; the detail says
    /// what was seen.
    Corrupt(String),
}

impl std::fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskDoneError::TooMany => {
                f.write_str("task_done() called more times than items were taken")
            }
            TaskDoneError::Corrupt(d) => write!(f, "the shared state is corrupt: {d}"),
        }
    }
}

impl std::error::Error for TaskDoneError {}

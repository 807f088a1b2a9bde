//! Why a ring operation failed: [`PushError`] (hands the item back),
//! [`PopError`], [`JoinError`] and [`TaskDoneError`], each with `Display`
//! and `std::error::Error`. Errors about segments themselves (open, create,
//! a corrupt header) are [`crate::Error`], not here.

/// Why a push failed. Each variant hands the item back.
#[derive(Clone, Copy, PartialEq, Eq)]
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
    Corrupt(T),
    /// A byte message longer than the ring can ever hold (see
    /// `max_message_len`): refused whole, never truncated.
    TooLarge(T),
}

impl<T> PushError<T> {
    /// The same error carrying something else (a count instead of an item).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PushError<U> {
        match self {
            PushError::Full(t) => PushError::Full(f(t)),
            PushError::Closed(t) => PushError::Closed(f(t)),
            PushError::Disconnected(t) => PushError::Disconnected(f(t)),
            PushError::Timeout(t) => PushError::Timeout(f(t)),
            PushError::Corrupt(t) => PushError::Corrupt(f(t)),
            PushError::TooLarge(t) => PushError::TooLarge(f(t)),
        }
    }

    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(t)
            | PushError::Closed(t)
            | PushError::Disconnected(t)
            | PushError::Timeout(t)
            | PushError::Corrupt(t)
            | PushError::TooLarge(t) => t,
        }
    }
}

impl<T> std::fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Closed(_) => "Closed(..)",
            PushError::Disconnected(_) => "Disconnected(..)",
            PushError::Timeout(_) => "Timeout(..)",
            PushError::Corrupt(_) => "Corrupt(..)",
            PushError::TooLarge(_) => "TooLarge(..)",
        })
    }
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "the ring is full",
            PushError::Closed(_) => "the ring is closed",
            PushError::Disconnected(_) => "every consumer of the ring has died",
            PushError::Timeout(_) => "timed out waiting for room in the ring",
            PushError::Corrupt(_) => "the ring's shared state is corrupt (head past tail)",
            PushError::TooLarge(_) => {
                "the message is longer than the ring can hold (see max_message_len)"
            }
        })
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a pop returned no item.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A typed receive got a message of another size than its type.
    WrongSize { got: usize, expected: usize },
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Empty => f.write_str("the ring is empty"),
            PopError::Disconnected => {
                f.write_str("the ring is drained and its producer closed it or died")
            }
            PopError::Timeout => f.write_str("timed out waiting for an item"),
            PopError::Corrupt(d) => write!(f, "the ring's shared state is corrupt: {d}"),
            PopError::WrongSize { got, expected } => write!(
                f,
                "received a message of {got} bytes where a value of {expected} bytes was \
                 expected: both ends must send and receive the same type"
            ),
        }
    }
}

impl std::error::Error for PopError {}

/// Why `join` returned before every item was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    Timeout,
    /// Consumers existed, all died, and items are still not done.
    Disconnected,
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinError::Timeout => "timed out waiting for every item to be done",
            JoinError::Disconnected => "every consumer died before all items were done",
        })
    }
}

impl std::error::Error for JoinError {}

/// `task_done` was called more times than items were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneError;

impl std::fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("task_done() called more times than items were taken")
    }
}

impl std::error::Error for TaskDoneError {}

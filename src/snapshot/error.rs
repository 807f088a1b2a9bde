//! Why a call of a [`SharedCell`](super::SharedCell) returned without its
//! result.

use crate::error::Error;

/// Why a `_timeout` call of a [`SharedCell`](super::SharedCell) returned without its result.
#[derive(Debug)]
pub enum CellError {
    /// The writers' lock was not acquired in time (a store, an update, or a
    /// reader that fell back to the lock, see the [module docs](super)).
    Timeout,
    /// Anything else: a corrupt segment.
    Failed(Error),
}

impl From<Error> for CellError {
    fn from(e: Error) -> Self {
        CellError::Failed(e)
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellError::Timeout => f.write_str(
                "timed out waiting for the shared cell's writers' lock: other writers \
                 are storing without pause, or hold the lock for long",
            ),
            CellError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CellError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CellError::Timeout => None,
            CellError::Failed(e) => Some(e),
        }
    }
}

/// The error of a call without a deadline, which cannot time out.
pub(super) fn untimed(e: CellError) -> Error {
    match e {
        CellError::Failed(e) => e,
        CellError::Timeout => unreachable!("no deadline"),
    }
}

//! The `serde` feature: any `Serialize + Deserialize` type as a byte
//! message on a ring of [`Frame`]s (and so on a [`Pipe`](crate::pipe::Pipe)),
//! Python's pickling `send`/`recv` for types that are not plain bytes (a
//! `String`, a `Vec`, an enum).
//!
//! A message is the type's identity (as for typed messages, see
//! [`message`](super::message): a tag, then the name) followed by the
//! value in [postcard](https://docs.rs/postcard)'s format. The identity is
//! a name: by default `std::any::type_name::<T>()`, which two programs
//! built from different sources (or by different compilers) may spell
//! differently, so programs that are built apart give it explicitly with
//! the `_as` methods (`"acme.Order/1"`). A receive that finds another name
//! is [`PopError::WrongType`]; a value that does not decode is
//! [`PopError::Decode`]; a value whose encoding is longer than the ring
//! holds is refused whole with [`SendError::TooLarge`].
//!
//! ```
//! use shmkit::ring::{PopError, Ring, message::Frame};
//! let ring = Ring::<Frame>::new_in_process(16)?;
//! let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
//! tx.push_serde_as("demo.Names/1", &vec!["ada".to_string(), "grace".into()])?;
//! let names: Vec<String> = rx.pop_serde_as("demo.Names/1")?;
//! assert_eq!(names, ["ada", "grace"]);
//! tx.push_serde(&Some(3u8))?; // named "core::option::Option<u8>"
//! assert!(matches!(rx.pop_serde::<u8>(), Err(PopError::WrongType { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why postcard
//!
//! postcard 1.x has a documented wire format that is stable across its 1.x
//! releases (the specification is in its repository), is maintained, works
//! without `std`, and is compact (integers as varints: a small `u64` takes
//! one byte, which matters at 56 bytes a frame). bincode 2 was the other
//! candidate; its development has ceased (RUSTSEC-2025-0141, its 3.0.0 is a
//! placeholder that does not compile), so a new dependency on it would be
//! on an unmaintained crate.
//!
//! What does not live here: the framing (`message`), the ring (`producer`,
//! `consumer`).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::consumer::Consumer;
use super::error::{PopError, SendError};
use super::message::{Frame, payload_of, put_identity};
use super::producer::Producer;

/// `value`, named `name`, as a message into `out` (cleared first).
pub(crate) fn encode<T: Serialize + ?Sized>(
    name: &str,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), SendError> {
    out.clear();
    put_identity(out, crate::identity::serde_tag(name), name);
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf).map_err(|e| SendError::Encode(e.to_string()))?;
    Ok(())
}

/// The value a message named `name` carries.
pub(crate) fn decode<T: DeserializeOwned>(name: &str, msg: &[u8]) -> Result<T, PopError> {
    let payload = payload_of(msg, crate::identity::serde_tag(name), || {
        (name.to_owned(), format!("{name} (serialised)"))
    })?;
    match postcard::take_from_bytes::<T>(payload) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(PopError::Decode(format!(
            "{name}: {} bytes left over after the value",
            rest.len()
        ))),
        Err(e) => Err(PopError::Decode(format!("{name}: {e}"))),
    }
}

impl Producer<Frame> {
    /// Push `value` serialised, named by its Rust type name, waiting while
    /// the ring lacks room. Programs built apart should name it
    /// ([`push_serde_as`](Self::push_serde_as)).
    pub fn push_serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.push_serde_as(std::any::type_name::<T>(), value)
    }

    /// Push `value` serialised, with the type name `name` the receiver
    /// checks, waiting while the ring lacks room.
    pub fn push_serde_as<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), SendError> {
        let mut msg = Vec::new();
        encode(name, value, &mut msg)?;
        self.push_bytes(&msg)
    }

    /// [`push_serde_as`](Self::push_serde_as) if the ring has room now
    /// (`SendError::Full` if not; nothing was sent).
    #[must_use = "the value may not have been sent (Full)"]
    pub fn try_push_serde_as<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), SendError> {
        let mut msg = Vec::new();
        encode(name, value, &mut msg)?;
        self.try_push_bytes(&msg)
    }
}

impl Consumer<Frame> {
    /// Take one serialised message named by `T`'s Rust type name (waits).
    pub fn pop_serde<T: DeserializeOwned>(&self) -> Result<T, PopError> {
        self.pop_serde_as(std::any::type_name::<T>())
    }

    /// Take one serialised message that must be named `name` (waits); one
    /// of another name is taken and reported as [`PopError::WrongType`].
    pub fn pop_serde_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, PopError> {
        decode(name, &self.pop_bytes()?)
    }

    /// [`pop_serde_as`](Self::pop_serde_as) if a message is there now.
    #[must_use = "a message taken and dropped is lost to every consumer"]
    pub fn try_pop_serde_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, PopError> {
        decode(name, &self.try_pop_bytes()?)
    }

    /// [`pop_serde_as`](Self::pop_serde_as), waiting at most `timeout`.
    pub fn pop_serde_as_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<T, PopError> {
        let mut v = Vec::new();
        self.pop_bytes_into_until(&mut v, crate::ring::wait::deadline_after(timeout))?;
        decode(name, &v)
    }
}

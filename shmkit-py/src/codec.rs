//! How a Python object becomes a queue message and back: the common small
//! types directly (an `int` that fits 64 bits, a `float`, a `str`, `bytes`,
//! `None`, `True`, `False`), anything else through `pickle`.
//!
//! Why not pickle everything: a `put` of a small int spent more time in
//! `pickle.dumps` and `pickle.loads` (two Python calls, a bytes object
//! each) than in the queue. The direct forms give back an equal object of
//! the same type, as unpickling would; only the exact types are taken
//! (a subclass of `int` or `str` may carry state of its own, so it is
//! pickled).
//!
//! A message read back comes from shared memory: its tag and length are
//! checked, and anything impossible is `CorruptError`, never a panic.

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

use crate::CorruptError;

/// The payload is a pickle.
pub(crate) const TAG_PICKLE: u8 = 0;
/// A `bytes` object, as is.
pub(crate) const TAG_BYTES: u8 = 1;
/// An `int` in -2^63 .. 2^63, 8 bytes little-endian.
pub(crate) const TAG_INT: u8 = 2;
/// A `float`, its 8 bytes little-endian.
pub(crate) const TAG_FLOAT: u8 = 3;
/// A `str`, UTF-8.
pub(crate) const TAG_STR: u8 = 4;
/// `None`, `True`, `False`: no payload.
pub(crate) const TAG_NONE: u8 = 5;
pub(crate) const TAG_TRUE: u8 = 6;
pub(crate) const TAG_FALSE: u8 = 7;

/// An object ready to be copied into a message: its tag and bytes.
pub(crate) enum Encoded<'a, 'py> {
    /// A fixed-size value (int, float) or no payload at all.
    Word(u8, [u8; 8], usize),
    /// A `bytes` object or a pickle, borrowed from Python.
    Bytes(u8, Bound<'py, PyBytes>),
    /// A `str`'s UTF-8.
    Text(Cow<'a, str>),
}

impl Encoded<'_, '_> {
    pub(crate) fn tag(&self) -> u8 {
        match self {
            Encoded::Word(t, ..) | Encoded::Bytes(t, _) => *t,
            Encoded::Text(_) => TAG_STR,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Encoded::Word(_, w, n) => &w[..*n],
            Encoded::Bytes(_, b) => b.as_bytes(),
            Encoded::Text(s) => s.as_bytes(),
        }
    }

    /// What the message is, for an error about its size.
    pub(crate) fn what(&self) -> &'static str {
        match self.tag() {
            TAG_BYTES => "the bytes object is",
            TAG_STR => "the str is",
            _ => "the object pickles to",
        }
    }
}

/// A pickle that does not load. A damaged one (EOFError, UnpicklingError)
/// is CorruptError with the cause chained: EOFError is what `get` raises
/// for a queue shut down and drained, and a loop ending on it must not end
/// on damage. Anything else (a class the receiver cannot import) is the
/// loader's own error.
fn unpickle_error(py: Python<'_>, e: PyErr, queue: &str) -> PyErr {
    let damaged = e.is_instance_of::<pyo3::exceptions::PyEOFError>(py)
        || py
            .import("pickle")
            .and_then(|m| m.getattr("UnpicklingError"))
            .is_ok_and(|t| e.matches(py, t).unwrap_or(false));
    if !damaged {
        return e;
    }
    let c = CorruptError::new_err(format!(
        "queue {queue:?}: a pickled item does not load ({e}): damaged data"
    ));
    c.set_cause(py, Some(e));
    c
}

/// `obj` as a message; `dumps` is `pickle.dumps`, for everything else.
pub(crate) fn encode<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    dumps: &Py<PyAny>,
) -> PyResult<Encoded<'a, 'py>> {
    if obj.is_exact_instance_of::<PyInt>() {
        // An int too large for 64 bits is pickled.
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Encoded::Word(TAG_INT, v.to_le_bytes(), 8));
        }
    } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Encoded::Bytes(TAG_BYTES, b.clone()));
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        // A str with lone surrogates (a file name decoded with
        // surrogateescape) has no UTF-8: pickled instead.
        if let Ok(text) = s.to_cow() {
            return Ok(Encoded::Text(text));
        }
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(Encoded::Word(TAG_FLOAT, f.value().to_le_bytes(), 8));
    } else if obj.is_none() {
        return Ok(Encoded::Word(TAG_NONE, [0; 8], 0));
    } else if let Ok(b) = obj.cast_exact::<PyBool>() {
        let tag = if b.is_true() { TAG_TRUE } else { TAG_FALSE };
        return Ok(Encoded::Word(tag, [0; 8], 0));
    }
    let pickled = dumps.bind(obj.py()).call1((obj, -1))?;
    Ok(Encoded::Bytes(TAG_PICKLE, pickled.cast_into::<PyBytes>()?))
}

/// The object a message of `tag` with payload `d` stands for; `loads` is
/// `pickle.loads`. `queue` names the queue in errors.
pub(crate) fn decode(
    py: Python<'_>,
    tag: u8,
    d: &[u8],
    loads: &Py<PyAny>,
    queue: &str,
) -> PyResult<Py<PyAny>> {
    let word = || -> PyResult<[u8; 8]> {
        d.try_into().map_err(|_| {
            CorruptError::new_err(format!(
                "queue {queue:?}: an item of kind {tag} holds {} bytes, not 8",
                d.len()
            ))
        })
    };
    Ok(match tag {
        TAG_INT => i64::from_le_bytes(word()?)
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        TAG_FLOAT => PyFloat::new(py, f64::from_le_bytes(word()?))
            .into_any()
            .unbind(),
        TAG_BYTES => PyBytes::new(py, d).into_any().unbind(),
        TAG_STR => {
            let s = std::str::from_utf8(d).map_err(|e| {
                CorruptError::new_err(format!("queue {queue:?}: a str item is not UTF-8: {e}"))
            })?;
            PyString::new(py, s).into_any().unbind()
        }
        TAG_NONE | TAG_TRUE | TAG_FALSE if !d.is_empty() => {
            return Err(CorruptError::new_err(format!(
                "queue {queue:?}: an item of kind {tag} holds {} bytes, not 0",
                d.len()
            )));
        }
        TAG_NONE => py.None(),
        TAG_TRUE => PyBool::new(py, true).to_owned().into_any().unbind(),
        TAG_FALSE => PyBool::new(py, false).to_owned().into_any().unbind(),
        TAG_PICKLE => match loads.bind(py).call1((PyBytes::new(py, d),)) {
            Ok(v) => v.unbind(),
            Err(e) => return Err(unpickle_error(py, e, queue)),
        },
        // The tag comes from shared memory: checked, never trusted.
        other => {
            return Err(CorruptError::new_err(format!(
                "queue {queue:?}: an item of unknown kind {other}"
            )));
        }
    })
}

//! Fixed-width string keys for [`crate::map::SharedMap`]: map keys must be
//! plain bytes of a fixed size, which `String` is not. Re-exported as
//! `shmkit::map::FixedStr`; the map itself is in `map.rs`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};

/// A fixed-width string key (UTF-8, at most `N` bytes, zero-padded), for
/// string keys such as `"proc17_key3"`. Map keys must be plain bytes of a
/// fixed size, which `String` is not; this is.
///
/// ```
/// use shmkit::map::FixedStr;
/// let key = FixedStr::<16>::new("proc17_key3")?;
/// assert_eq!(key.as_string(), "proc17_key3");
/// assert_eq!(key, FixedStr::new("proc17_key3")?);
/// // Longer than 16 bytes (or holding a NUL): refused, not cut.
/// assert!(FixedStr::<16>::new("a key of more than sixteen bytes").is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(transparent)]
pub struct FixedStr<const N: usize>([u8; N]);

impl<const N: usize> FixedStr<N> {
    /// `s` as a key; fails if it is longer than `N` bytes or holds a NUL.
    pub fn new(s: &str) -> Result<Self> {
        if s.len() > N || s.as_bytes().contains(&0) {
            return Err(Error::InvalidArgument {
                what: format!("key {s:?} is longer than {N} bytes or holds a NUL"),
            });
        }
        let mut b = [0u8; N];
        b[..s.len()].copy_from_slice(s.as_bytes());
        Ok(FixedStr(b))
    }

    /// The string (up to the first NUL; invalid UTF-8 is replaced).
    pub fn as_string(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl<const N: usize> std::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_string())
    }
}

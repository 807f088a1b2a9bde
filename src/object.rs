//! One segment-object abstraction: create / open / anonymous / share /
//! unlink, written once for every kind.
//!
//! Every shared object (array, value, accumulator, lock, map, list, ring)
//! is one segment whose header names its kind, its element type and its
//! length. What differs between kinds is only the layout (kind, element
//! description, length, body size) and what a fresh body needs before it is
//! published. A kind says exactly that by implementing [`SegmentObject`];
//! the constructors are its provided methods, and [`object_api!`] gives
//! each kind the same public inherent methods over them, so users need no
//! trait import.
//!
//! What does not live here: mapping files and validating headers
//! (`segment`, `header`), and any kind: each kind implements the trait in
//! its own file, and this module imports none of them.

use std::process::Command;

use crate::error::{Error, Result};
use crate::header::{ElemDesc, Expect, HeaderInfo, Kind};
use crate::segment::{CreateOptions, Layout, OpenOptions, Segment};

/// A kind of object that lives in one segment: its layout and its body's
/// initialisation, and in return create / open / share / unlink.
pub(crate) trait SegmentObject: Sized {
    /// The kind the header records.
    const KIND: Kind;
    /// The length every segment of this type has, if fixed (a lock, a
    /// value); `None` opens any length that [`body_size`](Self::body_size)
    /// accepts.
    const FIXED_LEN: Option<u64> = None;
    /// What `create` takes besides the name: a length or capacity, an
    /// initial value, or `()`.
    type Params;

    /// The element description the header records and an opener checks.
    fn elem() -> ElemDesc;
    /// Check `create`'s parameters; returns the header's `len`.
    fn len_of(params: &Self::Params) -> Result<u64>;
    /// Body bytes a header needs, or `None` when its numbers are impossible
    /// (overflow, zero, not a power of two). `create` sizes the body with
    /// it; `open` checks the file against it, so a handle built by
    /// [`from_segment`](Self::from_segment) may trust `info().len`.
    fn body_size(h: &HeaderInfo) -> Option<u64>;
    /// Fill the fresh, zeroed body before the header is published. The
    /// default does nothing: all-zero is a valid empty body.
    fn init(seg: &Segment, params: &Self::Params) -> Result<()> {
        let _ = (seg, params);
        Ok(())
    }
    /// The handle over a segment validated (or sized) by the rules above.
    fn from_segment(seg: Segment) -> Self;
    /// The segment underneath; `None` for a handle on heap memory.
    fn backing(&self) -> Option<&Segment>;

    /// Reword an error from opening a segment as this type (the default
    /// keeps it). A kind whose fixed length is its identity (a value is an
    /// array of one) turns a length mismatch into a kind mismatch.
    fn open_error(e: Error) -> Error {
        e
    }

    /// Create a named one with options (mode, keep).
    fn create_with(name: &str, params: Self::Params, opts: &CreateOptions) -> Result<Self> {
        let layout = layout::<Self>(&params)?;
        let seg = Segment::create(name, opts, layout, |s| Self::init(s, &params))?;
        Ok(Self::from_segment(seg))
    }

    /// Create an anonymous one (a memfd), to hand to children.
    fn create_anonymous(params: Self::Params) -> Result<Self> {
        let layout = layout::<Self>(&params)?;
        let seg = Segment::create_anonymous(layout, |s| Self::init(s, &params))?;
        Ok(Self::from_segment(seg))
    }

    /// Open a named one that must have `len` elements (`None`: any).
    fn open_len_with(name: &str, len: Option<u64>, opts: &OpenOptions) -> Result<Self> {
        Segment::open(name, &expect::<Self>(len), opts)
            .map(Self::from_segment)
            .map_err(Self::open_error)
    }

    /// Open the named one if it exists (it must be of this type and of the
    /// length `params` give), else create it with `params`. Of several
    /// processes doing this at once, one creates and the others open what
    /// it created: a create that finds the name taken (`O_EXCL`) opens,
    /// and an open waits for a creator still building (`open_opts`); an
    /// open that finds the name gone again (its creator failed, or it was
    /// unlinked) creates again. A segment of another type or length is an
    /// error, never replaced; a stale one is replaced only under
    /// [`CreateOptions::replace_stale`].
    fn open_or_create_with(
        name: &str,
        params: Self::Params,
        create_opts: &CreateOptions,
        open_opts: &OpenOptions,
    ) -> Result<Self> {
        let len = Self::len_of(&params)?;
        // Each extra round is a create that found the name taken, then an
        // open that found it gone: only a name removed and re-made over and
        // over by others keeps this going, and then the last open's
        // `NotFound` is the answer.
        const ROUNDS: usize = 16;
        let (mut params, mut round) = (params, 0);
        loop {
            round += 1;
            params = match try_create::<Self>(name, params, create_opts)? {
                Ok(made) => return Ok(made),
                Err(p) => p,
            };
            match Self::open_len_with(name, Some(len), open_opts) {
                Err(Error::NotFound { .. }) if round < ROUNDS => {}
                other => return other,
            }
        }
    }

    /// Open a named one with options (how long to wait for the creator).
    fn open_with(name: &str, opts: &OpenOptions) -> Result<Self> {
        Self::open_len_with(name, Self::FIXED_LEN, opts)
    }

    /// Open the one a parent passed with [`share_with`](Self::share_with).
    fn open_inherited(var: &str) -> Result<Self> {
        let seg = Segment::open_inherited(
            var,
            &expect::<Self>(Self::FIXED_LEN),
            &OpenOptions::default(),
        )
        .map_err(Self::open_error)?;
        Ok(Self::from_segment(seg))
    }

    /// Let the child that `cmd` spawns open this one with `open_inherited(var)`
    /// (nothing for a handle on heap memory).
    fn share_with(&self, cmd: &mut Command, var: &str) {
        if let Some(seg) = self.backing() {
            seg.share_with(cmd, var);
        }
    }

    /// The name in `/dev/shm`; `None` if anonymous or on the heap.
    fn name(&self) -> Option<&str> {
        self.backing().and_then(Segment::name)
    }

    /// Keep the name after this handle is dropped.
    fn keep(&self) {
        if let Some(seg) = self.backing() {
            seg.keep();
        }
    }

    /// Remove the name now (see [`Segment::unlink`]).
    fn unlink(&self) -> Result<()> {
        self.backing().map_or(Ok(()), Segment::unlink)
    }
}

/// `create_with`, except that a taken name hands the parameters back
/// (`Ok(Err(params))`) for the caller to open instead.
fn try_create<O: SegmentObject>(
    name: &str,
    params: O::Params,
    opts: &CreateOptions,
) -> Result<Result<O, O::Params>> {
    let layout = layout::<O>(&params)?;
    match Segment::create(name, opts, layout, |s| O::init(s, &params)) {
        Ok(seg) => Ok(Ok(O::from_segment(seg))),
        Err(Error::Exists { .. }) => Ok(Err(params)),
        Err(e) => Err(e),
    }
}

/// What an opener of `O` expects: its kind, element type and body rule.
fn expect<O: SegmentObject>(len: Option<u64>) -> Expect {
    Expect {
        kind: O::KIND,
        elem: Some(O::elem()),
        len,
        body_size: O::body_size,
    }
}

/// The layout `create` builds for `params`, sized by `O::body_size` (the
/// rule `open` checks), so the two can never disagree.
fn layout<O: SegmentObject>(params: &O::Params) -> Result<Layout> {
    let len = O::len_of(params)?;
    let elem = O::elem();
    let info = HeaderInfo {
        kind_raw: O::KIND as u32,
        elem,
        len,
        data_offset: 0,
        total_size: 0,
        creator: 0,
        created_unix_ms: 0,
    };
    let body_size = O::body_size(&info).ok_or_else(|| Error::too_large(O::KIND, len, elem.size))?;
    Ok(Layout {
        kind: O::KIND,
        elem,
        len,
        body_size,
    })
}

/// The public constructors of a [`SegmentObject`], as inherent methods so
/// callers need no trait import: `create`, `create_with`,
/// `create_anonymous`, `open`, `open_or_create`, `open_or_create_with`, `open_inherited`, `share_with`, `name`,
/// `keep`, `unlink`, and with a trailing `open_with`, `open_with(name, opts)`
/// too (a kind with its own `open_with` leaves it out).
///
/// `object_api!(impl [T: Pod] SharedList<T>, "list", (capacity: usize));`
/// gives `SharedList::<T>::create(name, capacity)`; `()` instead of
/// `(capacity: usize)` gives `ShmLock::create(name)`.
macro_rules! object_api {
    (impl [$($g:tt)*] $ty:ty, $what:literal, ($($p:ident: $pt:ty)?) $(, $ow:ident)?) => {
        impl<$($g)*> $ty {
            #[doc = concat!("Create a named ", $what, " (in `/dev/shm`, mode 0600). ")]
            #[doc = "The name is removed when this handle is dropped, unless"]
            #[doc = "[`keep`](Self::keep) is called."]
            pub fn create(name: &str $(, $p: $pt)?) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::create_with(
                    name,
                    $crate::object::object_api!(@params $($p)?),
                    &$crate::segment::CreateOptions::default(),
                )
            }

            #[doc = concat!("Create a named ", $what, " with explicit options (mode, keep).")]
            pub fn create_with(
                name: &str,
                $($p: $pt,)?
                opts: &$crate::segment::CreateOptions,
            ) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::create_with(
                    name,
                    $crate::object::object_api!(@params $($p)?),
                    opts,
                )
            }

            #[doc = concat!("Create an anonymous ", $what, " (no name), to hand to ")]
            #[doc = "children with [`share_with`](Self::share_with)."]
            pub fn create_anonymous($($p: $pt)?) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::create_anonymous(
                    $crate::object::object_api!(@params $($p)?),
                )
            }

            #[doc = concat!("Open a named ", $what, "; its element types are checked.")]
            pub fn open(name: &str) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::open_with(
                    name,
                    &$crate::segment::OpenOptions::default(),
                )
            }

            #[doc = concat!("Open the named ", $what, " if it exists, else create it (mode 0600, ")]
            #[doc = "removed when the creating handle is dropped). Several processes"]
            #[doc = "doing this at once all end up with the same segment. One that"]
            #[doc = "exists with another type or length is an error, never replaced."]
            $(#[doc = concat!("`", stringify!($p), "` is used only when creating.")])?
            pub fn open_or_create(name: &str $(, $p: $pt)?) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::open_or_create_with(
                    name,
                    $crate::object::object_api!(@params $($p)?),
                    &$crate::segment::CreateOptions::default(),
                    &$crate::segment::OpenOptions::default(),
                )
            }

            #[doc = concat!("[`open_or_create`](Self::open_or_create) with options: `create_opts`")]
            #[doc = "when it creates (mode, keep, replace a stale segment), `open_opts`"]
            #[doc = "when it opens (how long to wait for a creator still building)."]
            pub fn open_or_create_with(
                name: &str,
                $($p: $pt,)?
                create_opts: &$crate::segment::CreateOptions,
                open_opts: &$crate::segment::OpenOptions,
            ) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::open_or_create_with(
                    name,
                    $crate::object::object_api!(@params $($p)?),
                    create_opts,
                    open_opts,
                )
            }

            #[doc = concat!("In a child spawned with [`share_with`](Self::share_with): open the ")]
            #[doc = concat!($what, " whose descriptor the parent passed in environment variable `var`.")]
            pub fn open_inherited(var: &str) -> $crate::error::Result<Self> {
                <Self as $crate::object::SegmentObject>::open_inherited(var)
            }

            #[doc = concat!("Let the child that `cmd` spawns open this ", $what, " with")]
            #[doc = "[`open_inherited`](Self::open_inherited)`(var)`."]
            pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
                <Self as $crate::object::SegmentObject>::share_with(self, cmd, var)
            }

            /// The name in `/dev/shm`; `None` if anonymous (or in-process).
            pub fn name(&self) -> Option<&str> {
                <Self as $crate::object::SegmentObject>::name(self)
            }

            /// Keep the name after this handle is dropped.
            pub fn keep(&mut self) {
                <Self as $crate::object::SegmentObject>::keep(self)
            }

            /// Remove the name now; processes that have it open keep using
            /// it, new opens fail with `NotFound`.
            pub fn unlink(&mut self) -> $crate::error::Result<()> {
                <Self as $crate::object::SegmentObject>::unlink(self)
            }

            $($crate::object::object_api!(@open_with $ow);)?
        }
    };
    (@params) => {
        ()
    };
    (@params $p:ident) => {
        $p
    };
    (@open_with $ow:ident) => {
        /// Open a named one with explicit options (how long to wait for
        /// the creator).
        pub fn open_with(
            name: &str,
            opts: &$crate::segment::OpenOptions,
        ) -> $crate::error::Result<Self> {
            <Self as $crate::object::SegmentObject>::open_with(name, opts)
        }
    };
}
pub(crate) use object_api;

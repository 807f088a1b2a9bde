//! A stable, explicit identity for the types that live in shared memory:
//! [`ShmType`], the [`record!`](crate::record) macro that defines
//! `#[repr(C)]` records with one, and the [`TypeInfo`] they describe
//! themselves with.
//!
//! Two programs share a segment only if they agree on what its bytes mean.
//! shmkit checks that at open: the header records the element type's
//! **name** (chosen by you for a record, like `"acme.Tick/1"`; `"u64"` for a
//! scalar; `"[f32; 4]"` for an array) and its **layout fingerprint** (a hash
//! of its size and alignment, and for a record of each field's name,
//! offset, and field type's name and layout, recursively). A program that
//! opens the segment with another name or layout gets
//! [`Error::WrongElementType`](crate::Error::WrongElementType), which names
//! both sides. Neither the Rust module path nor the compiler enters the
//! identity, so two programs built separately, or a type moved to another
//! module, still agree; a changed field does not, and should get a new
//! name (`"acme.Tick/2"`).
//!
//! ```
//! shmkit::record! {
//!     /// One trade, as every program of the feed sees it.
//!     #[name = "acme.Tick/1"]
//!     #[derive(Debug, PartialEq)]
//!     pub struct Tick {
//!         pub px: f64,
//!         pub qty: u32,
//!         pub side: u8,
//!         pub _pad: [u8; 3],
//!     }
//! }
//! use shmkit::ShmType;
//! let t = Tick::TYPE;
//! assert_eq!(t.name(), "acme.Tick/1");
//! assert_eq!(
//!     t.describe(),
//!     "acme.Tick/1 (16 bytes, align 8): { px: f64 @0, qty: u32 @8, side: u8 @12, _pad: [u8; 3] @13 }"
//! );
//! let ring = shmkit::Ring::<Tick>::new_in_process(8)?;
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Why a declarative macro, not a derive
//!
//! A `#[derive(ShmType)]` would need a proc-macro crate (and `syn`) in every
//! user's build for what `macro_rules!` does here in a few lines: the macro
//! sees each field's name and type, `core::mem::offset_of!` (stable since
//! 1.77) gives the offsets in a constant, and the whole identity is computed
//! at compile time. It also implements `bytemuck`'s `Pod` and `Zeroable`
//! itself through `$crate`, with the checks bytemuck's derive makes
//! (`#[repr(C)]`, every field `Pod`, no padding), so a user crate needs no
//! `bytemuck` dependency and works even with shmkit renamed in its
//! `Cargo.toml` (the derive's `#[bytemuck(crate = "shmkit::bytemuck")]`
//! needs the path spelled as a string, which a renamed dependency breaks).
//! The price: the macro accepts only a plain struct with named fields and
//! no generics, which is what a shared record is.
//!
//! Implementations here: every integer and float type, `[T; N]` of any
//! `ShmType`, [`FixedStr<N>`](crate::map::FixedStr). Tuples, `bool` and
//! `char` are not [`Pod`] (padding, invalid bit patterns), so they have
//! none; use a record. A type from another crate that is `Pod` but that you
//! cannot redefine gets one by hand with [`TypeInfo::opaque`] (name, size
//! and alignment only) or [`TypeInfo::record`].
//!
//! What does not live here: the header fields the identity is stored in
//! (`header`), and where it is checked (`segment`).

use bytemuck::Pod;

/// A type with a stable identity in shared memory: a name you choose and a
/// layout fingerprint (see the [module docs](self)). Every kind that stores
/// typed elements (rings, lists, map keys, arrays of records, typed
/// messages) requires it, and checks it when a segment is opened or a
/// message received.
///
/// Define records with [`record!`](crate::record), which implements it.
/// Implementing it by hand is safe (shmkit takes sizes from the type
/// itself, never from `TYPE`), but a wrong `TYPE` defeats the check.
pub trait ShmType: Pod {
    /// The type's name and layout, computed at compile time.
    const TYPE: &'static TypeInfo;
}

/// The most bytes of a name a segment header stores; a record's name may
/// not be longer.
pub const MAX_NAME_LEN: usize = 32;

/// A type's identity: its name, size, alignment and fields. Made at compile
/// time by the [`ShmType`] impls, for messages and checks at run time.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeInfo {
    name: Name,
    size: usize,
    align: usize,
    fields: &'static [Field],
    /// A number (`u8` .. `f64`): one atomic access of its size copies it.
    scalar: bool,
    /// Hash of the name, for the fingerprints of types that contain this one.
    name_hash: u64,
    /// The layout fingerprint (see [`TypeInfo::fingerprint`]).
    layout: u64,
}

/// How a type's name is spelled.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    /// A fixed name: a scalar's, a record's.
    Plain(&'static str),
    /// `[elem; len]`.
    Array { elem: &'static TypeInfo, len: usize },
    /// `base<len>`, as `FixedStr<16>`.
    Sized { base: &'static str, len: usize },
}

/// One field of a record: its name, byte offset and type.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    name: &'static str,
    offset: usize,
    ty: &'static TypeInfo,
}

impl Field {
    /// A field called `name` at byte `offset`, of the type `ty` describes
    /// (`<f64 as ShmType>::TYPE`). [`record!`](crate::record) makes these.
    pub const fn new(name: &'static str, offset: usize, ty: &'static TypeInfo) -> Field {
        Field { name, offset, ty }
    }

    /// The field's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its byte offset in the record.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Its type.
    pub fn ty(&self) -> &'static TypeInfo {
        self.ty
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a of `bytes`, continuing from `h`. (The fingerprints are stored in
/// headers and sent with messages: this must never change.)
const fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u64).wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

const fn fnv_u64(h: u64, v: u64) -> u64 {
    fnv(h, &v.to_le_bytes())
}

/// A string, length first (so `"ab","c"` and `"a","bc"` differ).
const fn fnv_str(h: u64, s: &str) -> u64 {
    fnv(fnv_u64(h, s.len() as u64), s.as_bytes())
}

/// Panics (at compile time, where `TYPE` is evaluated) unless `name` is 1
/// to [`MAX_NAME_LEN`] bytes.
const fn check_name(name: &str) {
    assert!(
        !name.is_empty() && name.len() <= MAX_NAME_LEN,
        "a shared type's name must be 1 to 32 bytes"
    );
}

impl TypeInfo {
    /// A scalar: a name and nothing else to its layout.
    pub(crate) const fn scalar(name: &'static str, size: usize, align: usize) -> TypeInfo {
        let layout = fnv_u64(
            fnv_u64(fnv_str(FNV_OFFSET, "scalar"), size as u64),
            align as u64,
        );
        TypeInfo {
            name: Name::Plain(name),
            size,
            align,
            fields: &[],
            scalar: true,
            name_hash: fnv_str(FNV_OFFSET, name),
            layout,
        }
    }

    /// A type known by name, size and alignment only: for a `Pod` type you
    /// cannot define with [`record!`](crate::record) (one from another
    /// crate). Its fields are not checked, so keep the name unique to one
    /// layout.
    ///
    /// ```
    /// use shmkit::{ShmType, identity::TypeInfo};
    /// # #[derive(Clone, Copy, shmkit::Pod, shmkit::Zeroable)]
    /// # #[bytemuck(crate = "shmkit::bytemuck")]
    /// # #[repr(C)]
    /// # struct Vec3 { x: f32, y: f32, z: f32 }
    /// // Vec3 comes from a geometry crate and is Pod there.
    /// impl ShmType for Vec3 {
    ///     const TYPE: &'static TypeInfo =
    ///         &TypeInfo::opaque("geo.Vec3/1", size_of::<Vec3>(), align_of::<Vec3>());
    /// }
    /// assert_eq!(Vec3::TYPE.describe(), "geo.Vec3/1 (12 bytes, align 4)");
    /// ```
    ///
    /// # Panics
    /// At compile time, if `name` is empty or longer than
    /// [`MAX_NAME_LEN`] bytes.
    pub const fn opaque(name: &'static str, size: usize, align: usize) -> TypeInfo {
        check_name(name);
        let layout = fnv_u64(
            fnv_u64(fnv_str(FNV_OFFSET, "opaque"), size as u64),
            align as u64,
        );
        TypeInfo {
            name: Name::Plain(name),
            size,
            align,
            fields: &[],
            scalar: false,
            name_hash: fnv_str(FNV_OFFSET, name),
            layout,
        }
    }

    /// A record (a `#[repr(C)]` struct) called `name`, of `size` bytes and
    /// alignment `align`, with `fields` in declaration order.
    /// [`record!`](crate::record) calls this; call it yourself only for a
    /// struct you cannot define with the macro.
    ///
    /// # Panics
    /// At compile time, if `name` is empty or longer than
    /// [`MAX_NAME_LEN`] bytes, or a field reaches past `size`.
    pub const fn record(
        name: &'static str,
        size: usize,
        align: usize,
        fields: &'static [Field],
    ) -> TypeInfo {
        check_name(name);
        let mut layout = fnv_u64(
            fnv_u64(fnv_str(FNV_OFFSET, "record"), size as u64),
            align as u64,
        );
        let mut i = 0;
        while i < fields.len() {
            let f = &fields[i];
            assert!(
                f.offset + f.ty.size <= size,
                "a record field reaches past the record's size"
            );
            layout = fnv_str(layout, f.name);
            layout = fnv_u64(layout, f.offset as u64);
            layout = fnv_u64(layout, f.ty.name_hash);
            layout = fnv_u64(layout, f.ty.layout);
            i += 1;
        }
        TypeInfo {
            name: Name::Plain(name),
            size,
            align,
            fields,
            scalar: false,
            name_hash: fnv_str(FNV_OFFSET, name),
            layout,
        }
    }

    /// `[elem; len]`.
    const fn array(elem: &'static TypeInfo, len: usize, size: usize, align: usize) -> TypeInfo {
        let mut layout = fnv_str(FNV_OFFSET, "array");
        layout = fnv_u64(layout, elem.name_hash);
        layout = fnv_u64(layout, elem.layout);
        layout = fnv_u64(layout, len as u64);
        layout = fnv_u64(fnv_u64(layout, size as u64), align as u64);
        TypeInfo {
            name: Name::Array { elem, len },
            size,
            align,
            fields: &[],
            scalar: false,
            name_hash: fnv_u64(
                fnv_u64(fnv_str(FNV_OFFSET, "["), elem.name_hash),
                len as u64,
            ),
            layout,
        }
    }

    /// `base<len>`, a type whose layout is its name.
    const fn sized(base: &'static str, len: usize, size: usize, align: usize) -> TypeInfo {
        let name_hash = fnv_u64(fnv_str(FNV_OFFSET, base), len as u64);
        let layout = fnv_u64(
            fnv_u64(fnv_str(FNV_OFFSET, "opaque"), size as u64),
            align as u64,
        );
        TypeInfo {
            name: Name::Sized { base, len },
            size,
            align,
            fields: &[],
            scalar: false,
            name_hash,
            layout,
        }
    }

    /// The type's name: a record's own, `"u64"`, `"[f32; 4]"`.
    pub fn name(&self) -> String {
        match self.name {
            Name::Plain(s) => s.to_owned(),
            Name::Array { elem, len } => format!("[{}; {len}]", elem.name()),
            Name::Sized { base, len } => format!("{base}<{len}>"),
        }
    }

    /// `size_of` the type.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `align_of` the type.
    pub fn align(&self) -> usize {
        self.align
    }

    /// Whether it is a number (`u8` .. `f64`, `usize`, `isize`).
    pub fn is_scalar(&self) -> bool {
        self.scalar
    }

    /// A record's fields in declaration order; empty for other types.
    pub fn fields(&self) -> &'static [Field] {
        self.fields
    }

    /// The layout fingerprint: a hash of the size and alignment, and for a
    /// record of each field's name, offset, type name and type layout
    /// (recursively); for an array, of its element's name and layout and
    /// its length. The name of the type itself is not in it: the header
    /// stores the name beside it.
    pub fn fingerprint(&self) -> u64 {
        self.layout
    }

    /// The identity of a message of this type: the name's hash mixed with
    /// the layout, one word.
    pub(crate) fn message_tag(&self) -> u64 {
        fnv_u64(fnv_u64(FNV_OFFSET, self.name_hash), self.layout)
    }

    /// The name, size, alignment and (for a record) each field with its
    /// type and offset, as error messages show a type:
    /// `acme.Tick/1 (16 bytes, align 8): { px: f64 @0, qty: u32 @8 }`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({} bytes, align {})",
            self.name(),
            self.size,
            self.align
        );
        if !self.fields.is_empty() {
            let fields: Vec<String> = self
                .fields
                .iter()
                .map(|f| format!("{}: {} @{}", f.name, f.ty.name(), f.offset))
                .collect();
            s.push_str(&format!(": {{ {} }}", fields.join(", ")));
        }
        s
    }
}

/// The tag of a serialised message (`serde` feature) whose type is named
/// `name`.
#[cfg(feature = "serde")]
pub(crate) fn serde_tag(name: &str) -> u64 {
    fnv_str(fnv_str(FNV_OFFSET, "serde"), name)
}

/// The layout fingerprint of a pair stored together (a map's key and
/// value), from both types' names and layouts.
pub(crate) fn pair_fingerprint(a: &TypeInfo, b: &TypeInfo, size: usize, align: usize) -> u64 {
    let mut h = fnv_str(FNV_OFFSET, "pair");
    for t in [a, b] {
        h = fnv_u64(fnv_u64(h, t.name_hash), t.layout);
    }
    fnv_u64(fnv_u64(h, size as u64), align as u64)
}

/// The layout fingerprint of one of shmkit's own structures (a lock area, a
/// stripe): its name, size and alignment.
pub(crate) fn internal_fingerprint(name: &str, size: usize, align: usize) -> u64 {
    let h = fnv_str(fnv_str(FNV_OFFSET, "internal"), name);
    fnv_u64(fnv_u64(h, size as u64), align as u64)
}

macro_rules! scalars {
    ($($t:ty),*) => {$(
        impl ShmType for $t {
            const TYPE: &'static TypeInfo =
                &TypeInfo::scalar(stringify!($t), size_of::<$t>(), align_of::<$t>());
        }
    )*};
}

scalars!(
    u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize, f32, f64
);

impl<T: ShmType, const N: usize> ShmType for [T; N] {
    const TYPE: &'static TypeInfo =
        &TypeInfo::array(T::TYPE, N, size_of::<[T; N]>(), align_of::<[T; N]>());
}

impl<const N: usize> ShmType for crate::map::FixedStr<N> {
    const TYPE: &'static TypeInfo = &TypeInfo::sized("FixedStr", N, N, 1);
}

/// Define a `#[repr(C)]` record that can live in shared memory, with a
/// stable identity: the struct, `Clone`/`Copy`, `bytemuck`'s
/// [`Pod`]/[`Zeroable`](crate::Zeroable) (through shmkit's re-export: no
/// `bytemuck` dependency of your own) and [`ShmType`] with the name you
/// give in `#[name = "..."]` (1 to 32 bytes; put a version in it).
///
/// Every field must be a [`ShmType`] (a number, an array, another record),
/// and the struct must have no padding: add explicit `_pad: [u8; N]` fields
/// where `#[repr(C)]` would insert some. Both are checked at compile time.
/// Other attributes (`#[derive(Debug, PartialEq)]`, doc comments) go
/// through to the struct; `#[name]` comes right after the doc comment,
/// before them.
///
/// ```
/// shmkit::record! {
///     /// A point of a trajectory.
///     #[name = "demo.Point/1"]
///     #[derive(Debug, PartialEq)]
///     pub struct Point {
///         pub t: u64,
///         pub xyz: [f32; 3],
///         pub flags: u32,
///     }
/// }
/// let ring = shmkit::Ring::<Point>::new_in_process(4)?;
/// let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
/// tx.push(Point { t: 1, xyz: [0.5; 3], flags: 0 })?;
/// assert_eq!(rx.pop()?.xyz, [0.5; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A record with padding does not compile:
///
/// ```compile_fail
/// shmkit::record! {
///     #[name = "demo.Padded/1"]
///     pub struct Padded { pub a: u8, pub b: u64 } // 7 bytes of padding after `a`
/// }
/// ```
#[macro_export]
macro_rules! record {
    (
        $(#[doc = $doc:literal])*
        #[name = $name:literal]
        $(#[$attr:meta])*
        $vis:vis struct $ty:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        $(#[$attr])*
        #[derive(Clone, Copy)]
        #[repr(C)]
        $vis struct $ty {
            $( $(#[$fattr])* $fvis $field : $fty ),*
        }

        const _: () = {
            // Every field is a ShmType, hence Pod.
            const fn field_is_shm_type<T: $crate::ShmType>() {}
            $( field_is_shm_type::<$fty>(); )*
            // No padding: the fields fill the struct (what bytemuck's derive
            // checks for `Pod`).
            assert!(
                0 $( + ::core::mem::size_of::<$fty>() )* == ::core::mem::size_of::<$ty>(),
                concat!(
                    "record ", stringify!($ty), " has padding: add explicit `_pad: [u8; N]` ",
                    "fields where #[repr(C)] leaves gaps"
                )
            );
        };

        // SAFETY: `#[repr(C)]`, no padding (asserted above), every field is
        // Pod (ShmType: Pod, asserted above); so every bit pattern, zero
        // included, is a valid value.
        unsafe impl $crate::bytemuck::Zeroable for $ty {}
        // SAFETY: as above; the derived `Copy` is a plain copy.
        unsafe impl $crate::bytemuck::Pod for $ty {}

        impl $crate::ShmType for $ty {
            const TYPE: &'static $crate::identity::TypeInfo = &$crate::identity::TypeInfo::record(
                $name,
                ::core::mem::size_of::<$ty>(),
                ::core::mem::align_of::<$ty>(),
                &[$(
                    $crate::identity::Field::new(
                        stringify!($field),
                        ::core::mem::offset_of!($ty, $field),
                        <$fty as $crate::ShmType>::TYPE,
                    )
                ),*],
            );
        }

        // Evaluate the identity now, so a bad name fails the build even
        // where the type is never stored.
        const _: &$crate::identity::TypeInfo = <$ty as $crate::ShmType>::TYPE;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::record! {
        #[name = "t.A/1"]
        #[allow(dead_code)]
        struct A { x: u64, y: u32, z: [u8; 4] }
    }

    mod other {
        // The same record in another module: the same identity.
        crate::record! {
            #[name = "t.A/1"]
            pub struct A { pub x: u64, pub y: u32, pub z: [u8; 4] }
        }
        // Two fields swapped: another layout.
        crate::record! {
            #[name = "t.A/1"]
            pub struct Swapped { pub y: u32, pub z: [u8; 4], pub x: u64 }
        }
        // A field retyped (same size): another layout.
        crate::record! {
            #[name = "t.A/1"]
            pub struct Retyped { pub x: f64, pub y: u32, pub z: [u8; 4] }
        }
    }

    #[test]
    fn identity_ignores_module_path_but_not_fields() {
        let (a, b) = (A::TYPE, other::A::TYPE);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.name(), b.name());
        assert_ne!(a.fingerprint(), other::Swapped::TYPE.fingerprint());
        assert_ne!(a.fingerprint(), other::Retyped::TYPE.fingerprint());
    }

    #[test]
    fn names_and_descriptions() {
        assert_eq!(<[[u16; 2]; 3]>::TYPE.name(), "[[u16; 2]; 3]");
        assert_eq!(crate::map::FixedStr::<16>::TYPE.name(), "FixedStr<16>");
        assert_eq!(
            A::TYPE.describe(),
            "t.A/1 (16 bytes, align 8): { x: u64 @0, y: u32 @8, z: [u8; 4] @12 }"
        );
        assert_ne!(u64::TYPE.message_tag(), i64::TYPE.message_tag());
        assert_eq!(u64::TYPE.fingerprint(), i64::TYPE.fingerprint());
        assert_ne!(<[u8; 4]>::TYPE.fingerprint(), <[i8; 4]>::TYPE.fingerprint());
    }
}

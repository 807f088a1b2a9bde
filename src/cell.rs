//! Typed atomic cells: the element types a [`SharedArray`](crate::SharedArray)
//! can hold, and [`Atomic<T>`], one cell of shared memory.
//!
//! Integers use the native atomic instructions (`fetch_add` is one
//! `lock xadd`). `f32`/`f64` are stored as their bit patterns in an
//! `AtomicU32`/`AtomicU64`; their read-modify-write operations are CAS loops
//! on the bits. Under contention a CAS loop can be slower than a lock: for hot
//! float sums use [`SharedAccumulator`](crate::SharedAccumulator).
//!
//! Integer arithmetic wraps on overflow, like `std`'s atomics.
//! What does not live here: where the cells are (`array`) and the
//! `Ordering`/atomic types themselves (the `sync` facade).
//! Float `compare_exchange` compares bit patterns: `-0.0 != 0.0`, and a NaN
//! equals itself only with the same bits.

use crate::sync::{self, Ordering};

mod sealed {
    pub trait Sealed {}
}

/// An element type of shared arrays: `i8 u8 i16 u16 i32 u32 i64 u64 f32 f64`.
///
/// Sealed: the set is fixed so every process agrees on the layout.
pub trait Element:
    sealed::Sealed
    + crate::ShmType
    + Copy
    + PartialEq
    + PartialOrd
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The atomic that stores it.
    #[doc(hidden)]
    type Atom: Send + Sync;
    /// Python's `array`/`multiprocessing` typecode (`'i'`, `'d'`, ...).
    const TYPECODE: char;
    /// The value a fresh (zero-filled) cell holds.
    const ZERO: Self;
    #[doc(hidden)]
    fn new_atom(v: Self) -> Self::Atom;
    #[doc(hidden)]
    fn load(a: &Self::Atom, o: Ordering) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Atom, v: Self, o: Ordering);
    #[doc(hidden)]
    fn swap(a: &Self::Atom, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn compare_exchange(
        a: &Self::Atom,
        current: Self,
        new: Self,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self, Self>;
    #[doc(hidden)]
    fn fetch_add(a: &Self::Atom, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_sub(a: &Self::Atom, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_max(a: &Self::Atom, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_min(a: &Self::Atom, v: Self, o: Ordering) -> Self;
    /// The value's bits in the low bytes of a `u64` (for containers that
    /// keep any element in one atomic word).
    #[doc(hidden)]
    fn to_word(self) -> u64;
    #[doc(hidden)]
    fn from_word(w: u64) -> Self;
    /// `self + other`, wrapping for integers.
    #[doc(hidden)]
    fn add_wrapping(self, other: Self) -> Self;
}

macro_rules! int_element {
    ($($t:ty => $atom:ident, $u:ty, $code:literal;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            type Atom = sync::$atom;
            const TYPECODE: char = $code;
            const ZERO: Self = 0;
            fn new_atom(v: Self) -> Self::Atom { sync::$atom::new(v) }
            #[inline]
            fn load(a: &Self::Atom, o: Ordering) -> Self { a.load(o) }
            #[inline]
            fn store(a: &Self::Atom, v: Self, o: Ordering) { a.store(v, o) }
            #[inline]
            fn swap(a: &Self::Atom, v: Self, o: Ordering) -> Self { a.swap(v, o) }
            #[inline]
            fn compare_exchange(a: &Self::Atom, c: Self, n: Self, s: Ordering, f: Ordering)
                -> Result<Self, Self> { a.compare_exchange(c, n, s, f) }
            #[inline]
            fn fetch_add(a: &Self::Atom, v: Self, o: Ordering) -> Self { a.fetch_add(v, o) }
            #[inline]
            fn fetch_sub(a: &Self::Atom, v: Self, o: Ordering) -> Self { a.fetch_sub(v, o) }
            #[inline]
            fn fetch_max(a: &Self::Atom, v: Self, o: Ordering) -> Self { a.fetch_max(v, o) }
            #[inline]
            fn fetch_min(a: &Self::Atom, v: Self, o: Ordering) -> Self { a.fetch_min(v, o) }
            #[inline]
            fn to_word(self) -> u64 { self as $u as u64 }
            #[inline]
            fn from_word(w: u64) -> Self { w as $u as $t }
            #[inline]
            fn add_wrapping(self, other: Self) -> Self { self.wrapping_add(other) }
        }
    )*};
}

int_element! {
    i8 => AtomicI8, u8, 'b';
    u8 => AtomicU8, u8, 'B';
    i16 => AtomicI16, u16, 'h';
    u16 => AtomicU16, u16, 'H';
    i32 => AtomicI32, u32, 'i';
    u32 => AtomicU32, u32, 'I';
    i64 => AtomicI64, u64, 'q';
    u64 => AtomicU64, u64, 'Q';
}

/// Apply `f` to the float in `a` with a CAS loop on its bits; returns the
/// previous value. `o` orders the successful update.
macro_rules! float_rmw {
    ($t:ty, $a:expr, $o:expr, $f:expr) => {{
        let a = $a;
        let fail = sync::load_ordering($o);
        let mut cur = a.load(fail);
        loop {
            let new = ($f)(<$t>::from_bits(cur)).to_bits();
            match a.compare_exchange_weak(cur, new, $o, fail) {
                Ok(prev) => break <$t>::from_bits(prev),
                Err(seen) => cur = seen,
            }
        }
    }};
}

macro_rules! float_element {
    ($($t:ty => $atom:ident, $u:ty, $code:literal;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            type Atom = sync::$atom;
            const TYPECODE: char = $code;
            const ZERO: Self = 0.0;
            fn new_atom(v: Self) -> Self::Atom { sync::$atom::new(v.to_bits()) }
            #[inline]
            fn load(a: &Self::Atom, o: Ordering) -> Self { <$t>::from_bits(a.load(o)) }
            #[inline]
            fn store(a: &Self::Atom, v: Self, o: Ordering) { a.store(v.to_bits(), o) }
            #[inline]
            fn swap(a: &Self::Atom, v: Self, o: Ordering) -> Self {
                <$t>::from_bits(a.swap(v.to_bits(), o))
            }
            #[inline]
            fn compare_exchange(a: &Self::Atom, c: Self, n: Self, s: Ordering, f: Ordering)
                -> Result<Self, Self> {
                a.compare_exchange(c.to_bits(), n.to_bits(), s, f)
                    .map(<$t>::from_bits)
                    .map_err(<$t>::from_bits)
            }
            #[inline]
            fn fetch_add(a: &Self::Atom, v: Self, o: Ordering) -> Self {
                float_rmw!($t, a, o, |x: $t| x + v)
            }
            #[inline]
            fn fetch_sub(a: &Self::Atom, v: Self, o: Ordering) -> Self {
                float_rmw!($t, a, o, |x: $t| x - v)
            }
            #[inline]
            fn fetch_max(a: &Self::Atom, v: Self, o: Ordering) -> Self {
                float_rmw!($t, a, o, |x: $t| x.max(v))
            }
            #[inline]
            fn fetch_min(a: &Self::Atom, v: Self, o: Ordering) -> Self {
                float_rmw!($t, a, o, |x: $t| x.min(v))
            }
            #[inline]
            fn to_word(self) -> u64 { self.to_bits() as u64 }
            #[inline]
            fn from_word(w: u64) -> Self { <$t>::from_bits(w as $u) }
            #[inline]
            fn add_wrapping(self, other: Self) -> Self { self + other }
        }
    )*};
}

float_element! {
    f32 => AtomicU32, u32, 'f';
    f64 => AtomicU64, u64, 'd';
}

/// The name of the element type with Python typecode `code` (`'l'` and `'L'`
/// are 8 bytes, as on 64-bit Linux), for tools that open by typecode.
pub fn type_for_typecode(code: char) -> Option<&'static str> {
    Some(match code {
        'b' => "i8",
        'B' => "u8",
        'h' => "i16",
        'H' => "u16",
        'i' => "i32",
        'I' => "u32",
        'l' | 'q' => "i64",
        'L' | 'Q' => "u64",
        'f' => "f32",
        'd' => "f64",
        _ => return None,
    })
}

/// One atomic cell of type `T`, living in shared memory (or anywhere).
///
/// Every operation takes an [`Ordering`], as `std`'s atomics do. If unsure,
/// use `SeqCst`; `Relaxed` is right for counters read only at the end (after
/// the writers were joined) and is what Python's `lock=False` amounts to.
#[repr(transparent)]
pub struct Atomic<T: Element> {
    atom: T::Atom,
}

impl<T: Element> Atomic<T> {
    /// A cell holding `v` (on the heap or stack; shared cells come from a
    /// [`SharedArray`](crate::SharedArray)).
    pub fn new(v: T) -> Self {
        Atomic {
            atom: T::new_atom(v),
        }
    }
    /// The current value. `order` is `Relaxed`, `Acquire` or `SeqCst`
    /// (`Release` and `AcqRel` panic, as in `std`).
    #[inline]
    pub fn load(&self, order: Ordering) -> T {
        T::load(&self.atom, order)
    }
    /// Replace the value with `v`. `order` is `Relaxed`, `Release` or
    /// `SeqCst` (`Acquire` and `AcqRel` panic, as in `std`).
    #[inline]
    pub fn store(&self, v: T, order: Ordering) {
        T::store(&self.atom, v, order)
    }
    /// Store `v`, returning the previous value.
    #[inline]
    pub fn swap(&self, v: T, order: Ordering) -> T {
        T::swap(&self.atom, v, order)
    }
    /// Store `new` if the cell holds `current`; `Ok(previous)` if it did,
    /// `Err(actual)` if not.
    #[inline]
    pub fn compare_exchange(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        T::compare_exchange(&self.atom, current, new, success, failure)
    }
    /// Add `v` (wrapping for integers), returning the previous value.
    #[inline]
    pub fn fetch_add(&self, v: T, order: Ordering) -> T {
        T::fetch_add(&self.atom, v, order)
    }
    /// Subtract `v` (wrapping for integers), returning the previous value.
    #[inline]
    pub fn fetch_sub(&self, v: T, order: Ordering) -> T {
        T::fetch_sub(&self.atom, v, order)
    }
    /// Store the larger of the current value and `v`; returns the previous.
    /// For floats, a NaN operand is ignored (as `f64::max` does).
    #[inline]
    pub fn fetch_max(&self, v: T, order: Ordering) -> T {
        T::fetch_max(&self.atom, v, order)
    }
    /// Store the smaller of the current value and `v`; returns the previous.
    #[inline]
    pub fn fetch_min(&self, v: T, order: Ordering) -> T {
        T::fetch_min(&self.atom, v, order)
    }
}

impl<T: Element> std::fmt::Debug for Atomic<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load(Ordering::Relaxed).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::SeqCst;

    #[test]
    fn integer_ops_wrap_and_return_previous() {
        let c = Atomic::new(250u8);
        assert_eq!(c.fetch_add(10, SeqCst), 250);
        assert_eq!(c.load(SeqCst), 4);
        assert_eq!(c.fetch_sub(5, SeqCst), 4);
        assert_eq!(c.load(SeqCst), 255);
        assert_eq!(c.fetch_min(7, SeqCst), 255);
        assert_eq!(c.fetch_max(9, SeqCst), 7);
        assert_eq!(c.swap(1, SeqCst), 9);
        assert_eq!(c.compare_exchange(2, 3, SeqCst, SeqCst), Err(1));
        assert_eq!(c.compare_exchange(1, 3, SeqCst, SeqCst), Ok(1));
        assert_eq!(c.load(SeqCst), 3);
    }

    #[test]
    fn float_ops() {
        let c = Atomic::new(1.5f64);
        assert_eq!(c.fetch_add(2.25, SeqCst), 1.5);
        assert_eq!(c.fetch_sub(0.75, SeqCst), 3.75);
        assert_eq!(c.load(SeqCst), 3.0);
        assert_eq!(c.fetch_max(f64::NAN, SeqCst), 3.0);
        assert_eq!(c.load(SeqCst), 3.0, "NaN is ignored by max");
        assert_eq!(c.fetch_min(-1.0, SeqCst), 3.0);
        assert_eq!(c.compare_exchange(-1.0, 2.0, SeqCst, SeqCst), Ok(-1.0));
        let z = Atomic::new(0.0f32);
        assert_eq!(z.compare_exchange(-0.0, 1.0, SeqCst, SeqCst), Err(0.0));
    }

    #[test]
    fn cell_has_the_layout_of_its_value() {
        assert_eq!(size_of::<Atomic<f64>>(), 8);
        assert_eq!(align_of::<Atomic<f64>>(), align_of::<f64>());
        assert_eq!(size_of::<Atomic<i16>>(), 2);
        assert_eq!(align_of::<Atomic<i8>>(), 1);
    }

    #[test]
    fn word_round_trips() {
        assert_eq!(i8::from_word((-5i8).to_word()), -5);
        assert_eq!((-1i16).to_word(), 0xffff);
        assert_eq!(f64::from_word(2.5f64.to_word()), 2.5);
        assert_eq!(f32::from_word((-0.5f32).to_word()), -0.5);
        assert_eq!(250u8.add_wrapping(10), 4);
    }

    #[test]
    fn typecodes_match_python() {
        assert_eq!(<i32 as Element>::TYPECODE, 'i');
        assert_eq!(<f64 as Element>::TYPECODE, 'd');
        assert_eq!(type_for_typecode('l'), Some("i64"));
        assert_eq!(type_for_typecode('x'), None);
    }
}

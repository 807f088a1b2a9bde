//! The sole-consumer claim, shared by the ring and the queue: one word in
//! shared memory holds the `ProcToken` of a consumer that is the only one
//! (0: none), and the consumer registry holds everyone's tokens.
//!
//! Each side stores its own claim first (a registering consumer its entry,
//! a sole consumer the word), then a SeqCst fence, then loads the other's:
//! the two fences forbid both loads missing the other's store (store
//! buffering), so a sole consumer and another consumer never both get in.
//! Both may be refused at once; each then gets a clear error. A dead
//! holder's claim is taken over (its token is not alive).

use crate::process::ProcToken;
use crate::sync::{AtomicU64, Ordering, fence};

/// How a consumer's claim commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Announce with an atomic add, commit with one CAS of head: any number
    /// of consumers, and threads sharing the handle.
    Shared,
    /// The same order by plain stores: the sole consumer, popping through
    /// `&mut` (no other consumer, no other thread in the handle).
    Sole,
}

/// Why a claim or a registration was refused: the pid of the live process
/// in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A live sole consumer holds the word.
    Sole(u32),
    /// Another live consumer is registered.
    Other(u32),
}

/// After a consumer registered in the registry (its token stored): may it
/// stay? `Err(Sole(pid))` if a live sole consumer holds `word`; the caller
/// then unregisters.
pub(crate) fn check_registration(word: &AtomicU64) -> Result<(), Refused> {
    // SeqCst: pairs with the fence in `claim` (see the module docs).
    fence(Ordering::SeqCst);
    // Relaxed: ordered by the fence above.
    match ProcToken::from_raw(word.load(Ordering::Relaxed)).filter(|t| t.is_alive()) {
        Some(holder) => Err(Refused::Sole(holder.pid())),
        None => Ok(()),
    }
}

/// Claim `word` for `me`, a consumer already registered; `others` loads
/// the raw tokens of every *other* registry entry, lazily (Relaxed loads
/// made as it is iterated, so after the fence). The caller unregisters on
/// error.
pub(crate) fn claim(
    word: &AtomicU64,
    me: ProcToken,
    others: impl Iterator<Item = u64>,
) -> Result<(), Refused> {
    loop {
        // Relaxed: the claim orders nothing of a previous holder's (its head
        // stores are Release, read by the next consumer's Acquire loads).
        let cur = word.load(Ordering::Relaxed);
        if let Some(holder) = ProcToken::from_raw(cur).filter(|t| t.is_alive()) {
            return Err(Refused::Sole(holder.pid()));
        }
        // Relaxed: the fence below orders it before the registry loads.
        if word
            .compare_exchange(cur, me.raw(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            break;
        }
    }
    // SeqCst: pairs with the fence in `check_registration`.
    fence(Ordering::SeqCst);
    for raw in others {
        if let Some(t) = ProcToken::from_raw(raw).filter(|t| t.is_alive()) {
            release(word, me);
            return Err(Refused::Other(t.pid()));
        }
    }
    Ok(())
}

/// Give the claim back, only if it is still `me`'s.
pub(crate) fn release(word: &AtomicU64, me: ProcToken) {
    // Relaxed: publishes nothing. The next consumer's pops are ordered after
    // ours by their Acquire loads of head (our claims' Release stores), and
    // our `held` entry is folded by our own unregister.
    let _ = word.compare_exchange(me.raw(), 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// A sole consumer's type (`ring::SoleConsumer`, `queue::SoleConsumer`),
/// with the docs given: a `Consumer` (the module's own, in scope) that
/// holds the sole claim, not `Sync`, its pops ([`sole_pops!`]) by plain
/// stores and the rest of the consumer's API through `Deref`.
macro_rules! sole_consumer {
    ($(#[$doc:meta])* $what:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[must_use = "dropping the consumer unregisters it"]
        pub struct SoleConsumer<T: bytemuck::Pod> {
            inner: Consumer<T>,
            /// Not `Sync`: the plain stores of a claim assume one thread.
            _one_thread: std::marker::PhantomData<std::cell::Cell<()>>,
        }

        impl<T: bytemuck::Pod> SoleConsumer<T> {
            /// Wrap a consumer whose sole claim succeeded.
            pub(super) fn new(inner: Consumer<T>) -> Self {
                SoleConsumer {
                    inner,
                    _one_thread: std::marker::PhantomData,
                }
            }

            $crate::sole::sole_pops!($what);
        }

        impl<T: bytemuck::Pod> std::ops::Deref for SoleConsumer<T> {
            type Target = Consumer<T>;

            /// The consumer underneath, for the rest of its API. A
            /// `&Consumer` borrowed from here pops by CAS, and while it is
            /// borrowed the sole pops (`&mut self`) cannot run: the two
            /// never overlap.
            fn deref(&self) -> &Consumer<T> {
                &self.inner
            }
        }
    };
}
pub(crate) use sole_consumer;

/// The pops of a sole consumer (`ring::SoleConsumer`, `queue::SoleConsumer`):
/// each passes [`Claim::Sole`] to the wrapped consumer's claim, through
/// `&mut self`. `$what` names the kind in the docs. The wrapped consumer
/// (`self.inner`) has `try_pop_as`, `try_pop_into_as`, `set_wait`, and
/// what `waiting_pops!` needs (`wait_for`, `wait_for_from`).
macro_rules! sole_pops {
    ($what:literal) => {
        /// Take one item if there is one, without waiting.
        #[must_use = "an item taken and dropped is lost to every consumer"]
        #[inline]
        pub fn try_pop(&mut self) -> Result<T, $crate::ring::PopError> {
            self.inner.try_pop_as($crate::sole::Claim::Sole)
        }

        /// Take up to `buf.len()` items with one claim; how many.
        #[must_use = "only the first n items of `buf` were filled"]
        pub fn try_pop_into(&mut self, buf: &mut [T]) -> Result<usize, $crate::ring::PopError> {
            self.inner.try_pop_into_as($crate::sole::Claim::Sole, buf)
        }

        /// The consumer underneath and how its claims commit, for
        /// `waiting_pops!` (ring/wait.rs).
        #[inline(always)]
        fn pops(&self) -> (&Consumer<T>, $crate::sole::Claim) {
            (&self.inner, $crate::sole::Claim::Sole)
        }

        $crate::ring::wait::waiting_pops! {
            mut; $what;
            #[doc = concat!("Take one item, waiting while the ", $what, " is empty (as a consumer's `pop`).")]
        }

        #[doc = concat!("How this consumer waits while the ", $what, " is empty.")]
        pub fn set_wait(&mut self, strategy: $crate::ring::WaitStrategy) {
            self.inner.set_wait(strategy);
        }
    };
}
pub(crate) use sole_pops;

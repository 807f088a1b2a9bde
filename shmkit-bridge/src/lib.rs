//! Carry a shmkit [`Queue`] beyond one machine through Redis Streams.
//!
//! Two halves, each a loop that runs in its own process (the `shmkit bridge
//! out|in` commands run them):
//!
//! * [`run_out`]: a consumer of a local queue that forwards every item to a
//!   Redis stream (`XADD`, one entry per item, a batch of entries per
//!   pipelined round trip), then marks the items done in the local queue.
//! * [`run_in`]: a member of a Redis consumer group that reads entries
//!   (`XREADGROUP`) into a local queue (as its only producer), and
//!   acknowledges them (`XACK`) only once local consumers have called
//!   `task_done()` for them.
//!
//! Each entry carries the element type's identity (its [`ShmType`] name and
//! layout fingerprint, `src/identity.rs`) beside the item's bytes; `in`
//! checks both against its local queue's type, and an entry that does not
//! match is moved to a dead-letter stream (`<stream>:dead`, with the
//! reason) and acknowledged, never pushed.
//!
//! # Entries
//!
//! Fields: `type` (the name), `fp` (the fingerprint, 16 hex digits),
//! `item` (the item's bytes, `size_of::<T>()` of them, as in memory: the
//! two machines must share endianness, as the fingerprint assumes). Byte
//! messages travel as fixed-size records ([`Msg256`]: a length and 252
//! bytes) through `Queue<Msg256>` until the queue has a byte form.
//!
//! # out: what can be lost, what can be doubled
//!
//! `out` pops a batch, `XADD`s it in one `MULTI`/`EXEC` pipeline (applied
//! whole or not at all), and only then calls `task_done` for its items, so
//! a producer's `join()` on the local queue returns once its items are in
//! Redis. While Redis is unreachable `out` retries the batch with
//! exponential back-off ([`Retry`]) and pops nothing more: the local queue
//! fills, and its producers block or get `Full`, as they chose. No item is
//! dropped for want of Redis. If the retries are bounded and run out, the
//! batch is pushed back into the local queue before `out` exits with an
//! error (order among other items is then not kept).
//!
//! Honest limits:
//!
//! * **Items popped but not yet added when `out` itself is killed are lost**
//!   (at most one batch): they were copied out of shared memory into the
//!   dead process. The local queue reports them: a `join()` there returns
//!   `JoinReport { abandoned }` with their count. So `out` is at-most-once
//!   for those items, exactly-once for all others. (Making it at-least-once
//!   needs the items kept in shared memory until added, e.g. a journal
//!   segment re-sent at restart; not done here.)
//! * **A batch whose `EXEC` reply was lost** (the connection dropped after
//!   Redis applied it) is sent again: those items are then in the stream
//!   twice. At-least-once for that window.
//!
//! # in: which entries are done, and when they are acknowledged
//!
//! The local queue counts how many items were marked done (`done`, one
//! counter for the whole queue), not which. A consumer may take an item and
//! hold it while others take and finish many later ones, so no count tells
//! that a given early entry is done. The rule used here acknowledges only
//! what is *provably* done, by epochs:
//!
//! 1. `in` is the queue's only producer (it creates the queue with one
//!    producer lane; a restarted `in` takes over a dead one's lane).
//! 2. It pushes a batch of entries (an *epoch*: up to `ack_every` items or
//!    `ack_interval` of time), remembering their ids, then stops pushing.
//! 3. It waits for a *quiescent point*: every lane drained (head == tail)
//!    and every **live** consumer holding nothing (its registry entry's
//!    `held` is 0). Consumers announce a claim in `held` before making it,
//!    and count an item done before they stop holding it; so at a
//!    quiescent point every item ever pushed is either counted in `done` or
//!    was taken by a consumer that died or left (it can never be counted
//!    done later), and `done` cannot change until `in` pushes again.
//!    (The check reads the registry, then an `Acquire` fence, then `done`
//!    again, so the `done` read sees every increment that came before a
//!    `held` reached 0.)
//! 4. `done` at this point minus `done` at the previous quiescent point is
//!    exactly how many of this epoch's items were done. If it equals the
//!    epoch's size, **every** entry of the epoch is done and all are
//!    acknowledged (`XACK`, pipelined). Otherwise some consumer died or
//!    left holding some of them, and which is unknown: the whole epoch is
//!    left pending in Redis (counted in [`Stats::unacked`]).
//!
//! Entries left pending go idle in the group's pending list; after
//! `claim_idle` any bridge of the group (this one included) takes them
//! with `XAUTOCLAIM` and delivers them again ([`Stats::redelivered`]).
//! While an epoch is waiting for its quiescent point, `in` renews its
//! entries' idle time (`XCLAIM ... JUSTID`) so that other bridges do not
//! take entries that are still being worked on here. So across machines
//! delivery is **at-least-once**: an entry is delivered again only if it
//! was never acknowledged, and the duplicates a local consumer may see are
//! the done items of an epoch that also held an abandoned one, and the
//! items of a bridge killed before it acknowledged them. Exactly-once is
//! not claimed. One more window: a bridge that stalls past `claim_idle`
//! (Redis unreachable, the process stopped) may find its entries already
//! taken by another bridge; both then deliver them (the renewal, an
//! `XCLAIM` of the entry, takes it back rather than checking its owner).
//!
//! The price of the rule: at the end of each epoch the local queue runs
//! empty while the last items are finished (a pipeline bubble per
//! `ack_every` items), and a foreign producer on the `in` queue makes
//! `done` count items that are not the epoch's (detected: more done than
//! pushed leaves the epoch pending, with a warning). Knowing *which* items
//! are done (a per-lane done watermark in the queue) would remove both; it
//! needs a change in `src/queue/`.
//!
//! A restarted `in` (same consumer name) first waits for a quiescent point
//! (the dead one's items still in the queue are worked off), then reads its
//! own pending entries from the start (`XREADGROUP ... 0`) and delivers
//! them again, then new ones (`>`).
//!
//! # Stats
//!
//! [`Stats`] counts what each loop did; with a stats interval the loops
//! print a line on stderr: forwarded, acked, pending (the group's pending
//! entries, `XPENDING`), lag (entries not yet delivered to the group,
//! `XINFO GROUPS`), redelivered, dead-lettered, left unacked.

// Statistics counters of one process, not shared-memory algorithm code:
// loom need not see them (clippy.toml's rule is for the library).
#![allow(clippy::disallowed_types)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmkit::ShmType;

mod inbound;
mod link;
mod outbound;

pub use inbound::{InConfig, run_in};
pub use link::Retry;
pub use outbound::{OutConfig, run_out};

pub use shmkit::queue::Queue;

shmkit::record! {
    /// A byte message of up to 252 bytes as a fixed-size record, for byte
    /// payloads through a `Queue` (which carries fixed-size items).
    ///
    /// ```
    /// let m = shmkit_bridge::Msg256::new(b"hello").unwrap();
    /// assert_eq!(m.bytes(), b"hello");
    /// assert!(shmkit_bridge::Msg256::new(&[0; 300]).is_none());
    /// ```
    #[name = "shmkit.Msg256/1"]
    pub struct Msg256 {
        /// How many bytes of `data` are the message.
        pub len: u32,
        /// The message, then zeros.
        pub data: [u8; 252],
    }
}

impl Msg256 {
    /// A message of `bytes`; `None` past 252 bytes.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut m = Msg256 {
            len: u32::try_from(bytes.len()).ok()?,
            data: [0; 252],
        };
        m.data.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(m)
    }

    /// The message's bytes (a bad length, from another program, is cut to
    /// the array).
    pub fn bytes(&self) -> &[u8] {
        let n = (self.len as usize).min(self.data.len());
        &self.data[..n]
    }
}

/// What went wrong in a bridge.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The local queue failed (its message).
    Queue(String),
    /// Redis refused a command (not a connection failure; not retried).
    Redis(String),
    /// Redis stayed unreachable through every retry; `returned` items were
    /// pushed back into the local queue, `lost` could not be.
    Unreachable {
        /// The last connection error.
        last: String,
        /// Items pushed back into the local queue.
        returned: usize,
        /// Items that could be neither sent nor pushed back.
        lost: usize,
    },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Queue(m) => write!(f, "local queue: {m}"),
            BridgeError::Redis(m) => write!(f, "redis: {m}"),
            BridgeError::Unreachable {
                last,
                returned,
                lost,
            } => write!(
                f,
                "redis unreachable after every retry ({last}); {returned} items pushed back into the local queue, {lost} lost"
            ),
        }
    }
}

impl std::error::Error for BridgeError {}

impl From<shmkit::Error> for BridgeError {
    fn from(e: shmkit::Error) -> Self {
        BridgeError::Queue(e.to_string())
    }
}

/// Counters of a bridge, shared with whoever prints or checks them.
///
/// ```
/// let s = shmkit_bridge::Stats::default();
/// assert_eq!(s.snapshot().forwarded, 0);
/// ```
#[derive(Debug, Default)]
pub struct Stats {
    /// out: items added to the stream; in: items pushed into the local queue.
    pub forwarded: AtomicU64,
    /// in: entries acknowledged (`XACK`) after their items were done.
    pub acked: AtomicU64,
    /// in: entries left pending because their epoch held an item a
    /// consumer abandoned (delivered again after the idle time).
    pub unacked: AtomicU64,
    /// in: entries delivered again (this consumer's own pending entries at
    /// start, and entries taken over with `XAUTOCLAIM`).
    pub redelivered: AtomicU64,
    /// in: entries whose type did not match, moved to `<stream>:dead`.
    pub dead_lettered: AtomicU64,
    /// Failed Redis calls that were retried.
    pub retries: AtomicU64,
    /// The group's pending entries at the last stats query.
    pub pending: AtomicU64,
    /// Entries not yet delivered to the group at the last stats query.
    pub lag: AtomicU64,
}

/// A plain copy of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// See [`Stats::forwarded`].
    pub forwarded: u64,
    /// See [`Stats::acked`].
    pub acked: u64,
    /// See [`Stats::unacked`].
    pub unacked: u64,
    /// See [`Stats::redelivered`].
    pub redelivered: u64,
    /// See [`Stats::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Stats::retries`].
    pub retries: u64,
    /// See [`Stats::pending`].
    pub pending: u64,
    /// See [`Stats::lag`].
    pub lag: u64,
}

impl Stats {
    /// The counters now (each read on its own).
    pub fn snapshot(&self) -> StatsSnapshot {
        // Relaxed: statistics; no other memory is read through them.
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            forwarded: r(&self.forwarded),
            acked: r(&self.acked),
            unacked: r(&self.unacked),
            redelivered: r(&self.redelivered),
            dead_lettered: r(&self.dead_lettered),
            retries: r(&self.retries),
            pending: r(&self.pending),
            lag: r(&self.lag),
        }
    }

    pub(crate) fn add(a: &AtomicU64, n: u64) {
        // Relaxed: a statistics counter, paired with nothing.
        a.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(a: &AtomicU64, n: u64) {
        // Relaxed: a statistics value, paired with nothing.
        a.store(n, Ordering::Relaxed);
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forwarded={} acked={} pending={} lag={} redelivered={} dead_lettered={} unacked={} retries={}",
            self.forwarded,
            self.acked,
            self.pending,
            self.lag,
            self.redelivered,
            self.dead_lettered,
            self.unacked,
            self.retries
        )
    }
}

/// Settings both halves share.
#[derive(Clone, Debug)]
pub struct Common {
    /// The Redis URL (`redis://127.0.0.1:6379/`).
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// Entries per pipelined round trip.
    pub batch: usize,
    /// Retries and back-off when Redis is unreachable.
    pub retry: Retry,
    /// Print [`Stats`] on stderr this often (`None`: never).
    pub stats_every: Option<Duration>,
    /// The counters (shared, so a caller can watch them).
    pub stats: Arc<Stats>,
}

impl Common {
    /// Defaults: batches of 256, retries for ever (back-off 10 ms to 2 s),
    /// no stats lines.
    ///
    /// ```
    /// let c = shmkit_bridge::Common::new("redis://127.0.0.1:6379/", "jobs");
    /// assert_eq!(c.batch, 256);
    /// ```
    pub fn new(url: &str, stream: &str) -> Self {
        Common {
            url: url.to_owned(),
            stream: stream.to_owned(),
            batch: 256,
            retry: Retry::default(),
            stats_every: None,
            stats: Arc::new(Stats::default()),
        }
    }
}

/// The identity fields of `T`: its name and its fingerprint in hex.
pub fn identity<T: ShmType>() -> (String, String) {
    (T::TYPE.name(), format!("{:016x}", T::TYPE.fingerprint()))
}

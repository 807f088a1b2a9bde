//! `in`: a Redis consumer group into a local queue, acknowledging by
//! epochs (the rule and its argument are in the crate docs).

use std::collections::VecDeque;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use redis::Value;
use shmkit::ShmType;
use shmkit::queue::{Producer, PushError, Queue, QueueState};

use crate::link::{CallError, Entry, Link, parse_autoclaim, parse_read, pending_and_lag};
use crate::{BridgeError, Common, Stats, StatsSnapshot, identity};

/// Settings of [`run_in`].
#[derive(Clone, Debug)]
pub struct InConfig {
    /// URL, stream, batch, retries, stats.
    pub common: Common,
    /// The consumer group (created at the stream's start if missing).
    pub group: String,
    /// This bridge's consumer name in the group: keep it across restarts,
    /// so that a restarted bridge takes back its own pending entries at
    /// once.
    pub consumer: String,
    /// Entries pending this long in the group are taken over
    /// (`XAUTOCLAIM`) and delivered again.
    pub claim_idle: Duration,
    /// Most items in one epoch (pushed between two acknowledgements).
    pub ack_every: usize,
    /// Longest an epoch stays open before it is settled.
    pub ack_interval: Duration,
    /// How long one `XREADGROUP` waits for new entries (at most 4 s).
    pub block: Duration,
}

impl InConfig {
    /// Defaults: claim after 30 s idle, epochs of up to 4096 items or
    /// 50 ms, reads blocking 100 ms.
    ///
    /// ```
    /// use shmkit_bridge::{Common, InConfig};
    /// let c = InConfig::new(Common::new("redis://127.0.0.1:6379/", "jobs"), "workers", "host-a");
    /// assert_eq!(c.ack_every, 4096);
    /// ```
    pub fn new(common: Common, group: &str, consumer: &str) -> Self {
        InConfig {
            common,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            claim_idle: Duration::from_secs(30),
            ack_every: 4096,
            ack_interval: Duration::from_millis(50),
            block: Duration::from_millis(100),
        }
    }
}

/// Every lane drained and no live consumer holding an item.
fn calm(s: &QueueState) -> bool {
    s.lanes.iter().all(|l| l.head == l.tail)
        && s.consumers
            .iter()
            .all(|&(_, alive, held)| !alive || held == 0)
}

/// `done` at a quiescent point (crate docs, step 3), if this is one.
fn quiescent<T: ShmType>(q: &Queue<T>) -> Option<u64> {
    let first = q.state();
    if !calm(&first) {
        return None;
    }
    // Acquire fence: pairs with the Release decrement of a consumer's
    // `held` (task_done) that the Relaxed loads in `state` read as 0, so
    // that the `done` read below sees the increment made before it.
    fence(Ordering::Acquire);
    let second = q.state();
    (calm(&second) && second.done == first.done).then_some(second.done)
}

struct InBridge<'a, T: ShmType> {
    cfg: &'a InConfig,
    queue: &'a Queue<T>,
    link: Link,
    tx: Producer<T>,
    name: String,
    fp: String,
    /// `done` at the last quiescent point.
    base: u64,
    /// Ids of the items pushed since then, in push order.
    epoch: Vec<String>,
    epoch_start: Instant,
    /// Entries read but not yet pushed (the queue was full).
    backlog: VecDeque<(String, T)>,
    last_heartbeat: Instant,
    last_stats: Instant,
}

/// Read the group into `queue` until the queue is closed, acknowledging
/// entries once their items are provably done (crate docs); the counters
/// at the end. `queue` should have one producer lane, this bridge's.
///
/// ```no_run
/// use shmkit_bridge::{Common, InConfig, Queue, run_in};
/// let q = Queue::<u64>::open("jobs-here")?;
/// let cfg = InConfig::new(Common::new("redis://10.0.0.1:6379/", "jobs"), "workers", "host-b");
/// let stats = run_in(&q, &cfg)?;
/// println!("{stats}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_in<T: ShmType>(queue: &Queue<T>, cfg: &InConfig) -> Result<StatsSnapshot, BridgeError> {
    let c = &cfg.common;
    let mut link = Link::new(&c.url, c.retry)?;
    let stats = &*c.stats;
    match link.call(stats, |conn| {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&c.stream)
            .arg(&cfg.group)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(conn)
    }) {
        Ok(()) => {}
        Err(CallError::Refused(e)) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => return Err(e.into()),
    }
    if queue.max_producers() > 1 {
        eprintln!(
            "shmkit bridge in {}: the local queue allows {} producers; another producer's done items would leave epochs unacknowledged (create it with one)",
            c.stream,
            queue.max_producers()
        );
    }
    let tx = queue.producer()?;
    let (name, fp) = identity::<T>();
    let mut b = InBridge {
        cfg,
        queue,
        link,
        tx,
        name,
        fp,
        base: 0,
        epoch: Vec::new(),
        epoch_start: Instant::now(),
        backlog: VecDeque::new(),
        last_heartbeat: Instant::now(),
        last_stats: Instant::now(),
    };
    // A dead bridge's items may still be in the queue: wait until they are
    // worked off, then start counting from there.
    match b.wait_quiescent()? {
        Some(d) => b.base = d,
        None => return b.finish(),
    }
    b.run()?;
    b.finish()
}

impl<T: ShmType> InBridge<'_, T> {
    fn stats(&self) -> &Stats {
        &self.cfg.common.stats
    }

    fn finish(&mut self) -> Result<StatsSnapshot, BridgeError> {
        if self.cfg.common.stats_every.is_some() {
            self.query_stats();
            eprintln!(
                "shmkit bridge in {} (end): {}",
                self.cfg.common.stream,
                self.stats().snapshot()
            );
        }
        Ok(self.stats().snapshot())
    }

    fn run(&mut self) -> Result<(), BridgeError> {
        let c = &self.cfg.common;
        let claim_every = (self.cfg.claim_idle / 2).max(Duration::from_millis(10));
        let mut recovering = true;
        let mut own_from = "0".to_owned();
        let mut cursor = "0-0".to_owned();
        let mut last_claim = Instant::now();
        loop {
            if self.queue.is_closed() {
                return self.settle().map(|_| ());
            }
            if !self.backlog.is_empty() {
                if !self.push_backlog()? {
                    // Closed while pushing: what was not pushed stays
                    // pending in Redis.
                    return self.settle().map(|_| ());
                }
            } else {
                let entries: Vec<Entry>;
                let again: bool;
                if recovering {
                    // Our own pending entries, from the oldest, each once:
                    // they stay pending until acknowledged, so the next
                    // read starts after the last one read.
                    entries = self.read(&own_from, None)?;
                    match entries.last() {
                        Some((id, _)) => own_from = id.clone(),
                        None => recovering = false,
                    }
                    again = true;
                } else if last_claim.elapsed() >= claim_every {
                    let (next, e) = self.autoclaim(&cursor)?;
                    if next == "0-0" {
                        last_claim = Instant::now();
                    }
                    cursor = next;
                    entries = e;
                    again = true;
                } else {
                    entries = self.read(">", Some(self.cfg.block))?;
                    again = false;
                }
                if again {
                    Stats::add(&self.stats().redelivered, entries.len() as u64);
                }
                let idle = entries.is_empty();
                self.take(entries)?;
                if !self.push_backlog()? {
                    return self.settle().map(|_| ());
                }
                if idle && !self.epoch.is_empty() && !again {
                    self.settle()?;
                }
            }
            if self.epoch.len() >= self.cfg.ack_every
                || (!self.epoch.is_empty() && self.epoch_start.elapsed() >= self.cfg.ack_interval)
            {
                self.settle()?;
            }
            if let Some(every) = c.stats_every
                && self.last_stats.elapsed() >= every
            {
                self.last_stats = Instant::now();
                self.query_stats();
                eprintln!("shmkit bridge in {}: {}", c.stream, self.stats().snapshot());
            }
        }
    }

    fn query_stats(&mut self) {
        let (s, g) = (&self.cfg.common.stream, &self.cfg.group);
        let stats = &*self.cfg.common.stats;
        if let Ok((p, l)) = self.link.call(stats, |conn| pending_and_lag(conn, s, g)) {
            Stats::set(&stats.pending, p);
            Stats::set(&stats.lag, l);
        }
    }

    /// `XREADGROUP` from `from` (`0`: our own pending entries; `>`: new).
    fn read(&mut self, from: &str, block: Option<Duration>) -> Result<Vec<Entry>, BridgeError> {
        let c = &self.cfg.common;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(c.batch.max(1));
        if let Some(b) = block {
            // Below the connection's 5 s read timeout, which would
            // otherwise take a quiet stream for a dead connection.
            let ms = b.as_millis().clamp(1, 4000) as u64;
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&c.stream).arg(from);
        let v: Value = self.link.call(&c.stats, |conn| cmd.query(conn))?;
        parse_read(v).map_err(BridgeError::Redis)
    }

    fn autoclaim(&mut self, cursor: &str) -> Result<(String, Vec<Entry>), BridgeError> {
        let c = &self.cfg.common;
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&c.stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(self.cfg.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(c.batch.max(1));
        let v: Value = self.link.call(&c.stats, |conn| cmd.query(conn))?;
        parse_autoclaim(v).map_err(BridgeError::Redis)
    }

    /// Check each entry's type; good ones go to the backlog, others to the
    /// dead-letter stream (and are acknowledged), deleted ones are
    /// acknowledged.
    fn take(&mut self, entries: Vec<Entry>) -> Result<(), BridgeError> {
        // (id, why it is dead-lettered or None if deleted, its fields)
        type Settle = (String, Option<String>, Vec<(Vec<u8>, Vec<u8>)>);
        let mut settle_now: Vec<Settle> = Vec::new();
        for (id, fields) in entries {
            let Some(fields) = fields else {
                settle_now.push((id, None, Vec::new()));
                continue;
            };
            match self.decode(&fields) {
                Ok(item) => self.backlog.push_back((id, item)),
                Err(why) => settle_now.push((id, Some(why), fields)),
            }
        }
        if settle_now.is_empty() {
            return Ok(());
        }
        let c = &self.cfg.common;
        let dead = format!("{}:dead", c.stream);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut n_dead = 0;
        for (id, why, fields) in &settle_now {
            if let Some(why) = why {
                n_dead += 1;
                let cmd = pipe.cmd("XADD").arg(&dead).arg("*");
                cmd.arg("reason").arg(why).arg("source_id").arg(id);
                for (k, v) in fields {
                    cmd.arg(k).arg(v);
                }
                cmd.ignore();
            }
            pipe.cmd("XACK")
                .arg(&c.stream)
                .arg(&self.cfg.group)
                .arg(id)
                .ignore();
        }
        self.link.call(&c.stats, |conn| pipe.query::<()>(conn))?;
        if n_dead > 0 {
            eprintln!(
                "shmkit bridge in {}: {n_dead} entries of another type moved to {dead}",
                c.stream
            );
        }
        Stats::add(&c.stats.dead_lettered, n_dead);
        Ok(())
    }

    fn decode(&self, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<T, String> {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k.as_bytes())
                .map(|(_, v)| v.as_slice())
        };
        let ty = get("type").map(String::from_utf8_lossy);
        let fp = get("fp").map(String::from_utf8_lossy);
        if ty.as_deref() != Some(self.name.as_str()) || fp.as_deref() != Some(self.fp.as_str()) {
            return Err(format!(
                "type {} (fingerprint {}) where the local queue holds {} (fingerprint {})",
                ty.as_deref().unwrap_or("<none>"),
                fp.as_deref().unwrap_or("<none>"),
                self.name,
                self.fp
            ));
        }
        let bytes = get("item").ok_or("no item field")?;
        let mut item = T::zeroed();
        let dst = shmkit::bytemuck::bytes_of_mut(&mut item);
        if bytes.len() != dst.len() {
            return Err(format!(
                "item of {} bytes where {} holds {}",
                bytes.len(),
                self.name,
                dst.len()
            ));
        }
        dst.copy_from_slice(bytes);
        Ok(item)
    }

    /// Push the backlog into the queue, renewing the epoch's entries while
    /// waiting for room. `false` once the queue is closed.
    fn push_backlog(&mut self) -> Result<bool, BridgeError> {
        while let Some((id, item)) = self.backlog.pop_front() {
            if self.epoch.is_empty() {
                self.epoch_start = Instant::now();
            }
            match self.tx.push_timeout(item, Duration::from_millis(20)) {
                Ok(()) => {
                    self.epoch.push(id);
                    Stats::add(&self.stats().forwarded, 1);
                }
                Err(PushError::Timeout(item)) => {
                    // Full: keep it and wait.
                    self.backlog.push_front((id, item));
                    self.heartbeat()?;
                    if self.epoch.len() >= self.cfg.ack_every {
                        self.settle()?;
                    }
                }
                Err(PushError::Disconnected(item)) => {
                    // Every consumer died: keep it until another attaches.
                    self.backlog.push_front((id, item));
                    std::thread::sleep(Duration::from_millis(20));
                    self.heartbeat()?;
                }
                Err(PushError::Closed(_)) => {
                    self.backlog.clear();
                    return Ok(false);
                }
                Err(e) => return Err(BridgeError::Queue(e.to_string())),
            }
        }
        Ok(true)
    }

    /// Renew the idle time of the epoch's entries and of those read but not
    /// yet pushed, so that no other bridge claims entries still being
    /// worked on here.
    fn heartbeat(&mut self) -> Result<(), BridgeError> {
        if (self.epoch.is_empty() && self.backlog.is_empty())
            || self.last_heartbeat.elapsed() < self.cfg.claim_idle / 3
        {
            return Ok(());
        }
        self.last_heartbeat = Instant::now();
        let c = &self.cfg.common;
        let ours: Vec<&String> = self
            .epoch
            .iter()
            .chain(self.backlog.iter().map(|(id, _)| id))
            .collect();
        for ids in ours.chunks(1000) {
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&c.stream)
                .arg(&self.cfg.group)
                .arg(&self.cfg.consumer)
                .arg(0)
                .arg(ids)
                .arg("JUSTID");
            self.link.call(&c.stats, |conn| cmd.query::<Value>(conn))?;
        }
        Ok(())
    }

    /// Wait for a quiescent point (renewing the epoch's entries meanwhile);
    /// `None` if the queue was closed with no live consumer left to reach
    /// one.
    fn wait_quiescent(&mut self) -> Result<Option<u64>, BridgeError> {
        loop {
            if let Some(d) = quiescent(self.queue) {
                return Ok(Some(d));
            }
            if self.queue.is_closed() && !self.queue.state().consumers.iter().any(|c| c.1) {
                return Ok(None);
            }
            self.heartbeat()?;
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Close the epoch: wait for a quiescent point, then acknowledge the
    /// epoch if all of it is done (crate docs, step 4).
    fn settle(&mut self) -> Result<(), BridgeError> {
        if self.epoch.is_empty() {
            return Ok(());
        }
        let Some(done) = self.wait_quiescent()? else {
            Stats::add(&self.stats().unacked, self.epoch.len() as u64);
            self.epoch.clear();
            return Ok(());
        };
        let n = self.epoch.len() as u64;
        let c = &self.cfg.common;
        match done.checked_sub(self.base) {
            Some(d) if d == n => {
                for ids in self.epoch.chunks(1000) {
                    let mut cmd = redis::cmd("XACK");
                    cmd.arg(&c.stream).arg(&self.cfg.group).arg(ids);
                    self.link.call(&c.stats, |conn| cmd.query::<Value>(conn))?;
                }
                Stats::add(&c.stats.acked, n);
            }
            Some(d) if d < n => {
                eprintln!(
                    "shmkit bridge in {}: {} of {n} items of an epoch were abandoned by a consumer; the epoch stays pending (delivered again after {:?} idle)",
                    c.stream,
                    n - d,
                    self.cfg.claim_idle
                );
                Stats::add(&c.stats.unacked, n);
            }
            _ => {
                eprintln!(
                    "shmkit bridge in {}: the queue counts {} items done against {n} pushed (another producer?); the epoch stays pending",
                    c.stream,
                    done.wrapping_sub(self.base)
                );
                Stats::add(&c.stats.unacked, n);
            }
        }
        self.base = done;
        self.epoch.clear();
        Ok(())
    }
}

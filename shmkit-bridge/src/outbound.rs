//! `out`: a local queue's items to a Redis stream (see the crate docs).

use std::time::{Duration, Instant};

use shmkit::ShmType;
use shmkit::queue::{PopError, Queue};

use crate::link::{CallError, Link};
use crate::{BridgeError, Common, Stats, StatsSnapshot, identity};

/// Settings of [`run_out`].
#[derive(Clone, Debug)]
pub struct OutConfig {
    /// URL, stream, batch, retries, stats.
    pub common: Common,
    /// Trim the stream to about this many entries (`XADD MAXLEN ~`);
    /// `None`: never trim. Trimming may drop entries no group has read.
    pub maxlen: Option<u64>,
}

/// Forward items popped from `queue` to the stream until the queue is
/// closed (or, if it was created so, its producers are gone) and drained;
/// the counters at the end.
///
/// Each batch (up to `batch` items, as many as are waiting) is added in one
/// `MULTI`/`EXEC` pipeline, then marked done in the local queue. While
/// Redis is unreachable the batch is retried (see [`Retry`](crate::Retry))
/// and nothing more is popped.
///
/// ```no_run
/// use shmkit_bridge::{Common, OutConfig, Queue, run_out};
/// let q = Queue::<u64>::open("jobs")?;
/// let cfg = OutConfig { common: Common::new("redis://127.0.0.1:6379/", "jobs"), maxlen: None };
/// let stats = run_out(&q, &cfg)?;
/// println!("{stats}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_out<T: ShmType>(
    queue: &Queue<T>,
    cfg: &OutConfig,
) -> Result<StatsSnapshot, BridgeError> {
    let c = &cfg.common;
    let stats = &*c.stats;
    let rx = queue.consumer()?;
    let mut link = Link::new(&c.url, c.retry)?;
    let (name, fp) = identity::<T>();
    let mut buf = vec![T::zeroed(); c.batch.max(1)];
    let mut last_stats = Instant::now();
    loop {
        let n = match rx.pop_into_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => n,
            Err(PopError::Timeout | PopError::Empty) => 0,
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(BridgeError::Queue(e.to_string())),
        };
        if n > 0 {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for item in &buf[..n] {
                let cmd = pipe.cmd("XADD").arg(&c.stream);
                if let Some(m) = cfg.maxlen {
                    cmd.arg("MAXLEN").arg("~").arg(m);
                }
                cmd.arg("*")
                    .arg("type")
                    .arg(&name)
                    .arg("fp")
                    .arg(&fp)
                    .arg("item")
                    .arg(shmkit::bytemuck::bytes_of(item))
                    .ignore();
            }
            match link.call(stats, |conn| pipe.query::<()>(conn)) {
                Ok(()) => {}
                Err(CallError::Unreachable(last)) => {
                    return Err(give_back(queue, &rx, &buf[..n], last));
                }
                Err(e) => return Err(e.into()),
            }
            for _ in 0..n {
                rx.task_done()
                    .map_err(|e| BridgeError::Queue(e.to_string()))?;
            }
            Stats::add(&stats.forwarded, n as u64);
        }
        if let Some(every) = c.stats_every
            && last_stats.elapsed() >= every
        {
            last_stats = Instant::now();
            eprintln!("shmkit bridge out {}: {}", c.stream, stats.snapshot());
        }
    }
    if c.stats_every.is_some() {
        eprintln!("shmkit bridge out {} (end): {}", c.stream, stats.snapshot());
    }
    Ok(stats.snapshot())
}

/// Out of retries: push the batch back into the local queue (a producer of
/// our own, if a lane is free), so that nothing is dropped.
fn give_back<T: ShmType>(
    queue: &Queue<T>,
    rx: &shmkit::queue::Consumer<T>,
    items: &[T],
    last: String,
) -> BridgeError {
    let returned = match queue.producer() {
        Ok(mut tx) => match tx.push_slice(items) {
            Ok(()) => items.len(),
            Err(e) => {
                eprintln!("shmkit bridge out: pushing the batch back failed: {e}");
                0
            }
        },
        Err(e) => {
            eprintln!("shmkit bridge out: no producer lane to push the batch back: {e}");
            0
        }
    };
    // The batch is no longer ours: back in the queue (or reported lost).
    for _ in 0..items.len() {
        let _ = rx.task_done();
    }
    BridgeError::Unreachable {
        last,
        returned,
        lost: items.len() - returned,
    }
}

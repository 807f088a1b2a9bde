//! A Redis connection that reconnects, with bounded retries and
//! exponential back-off, and the parsing of stream replies.

use std::time::{Duration, Instant};

use redis::{Connection, RedisError, RedisResult, Value};

use crate::{BridgeError, Stats};

/// How to retry when Redis is unreachable: back-off from `initial`,
/// doubling up to `max`; `max_retries` consecutive failures at most
/// (`None`: for ever).
///
/// ```
/// let r = shmkit_bridge::Retry { max_retries: Some(5), ..Default::default() };
/// assert_eq!(r.initial, std::time::Duration::from_millis(10));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// First pause.
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
    /// Consecutive failures before giving up (`None`: never give up).
    pub max_retries: Option<u32>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(2),
            max_retries: None,
        }
    }
}

/// Failure of a call through a [`Link`].
pub(crate) enum CallError {
    /// Redis answered with an error (bad command, wrong type...).
    Refused(RedisError),
    /// Still unreachable after every retry.
    Unreachable(String),
}

impl From<CallError> for BridgeError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused(e) => BridgeError::Redis(e.to_string()),
            CallError::Unreachable(last) => BridgeError::Unreachable {
                last,
                returned: 0,
                lost: 0,
            },
        }
    }
}

/// A connection made on first use and again after a failure.
pub(crate) struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    retry: Retry,
    /// Read timeout: above the longest `BLOCK` the bridge asks for.
    read_timeout: Duration,
}

fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl Link {
    pub(crate) fn new(url: &str, retry: Retry) -> Result<Self, BridgeError> {
        let client = redis::Client::open(url)
            .map_err(|e| BridgeError::Redis(format!("bad url {url:?}: {e}")))?;
        Ok(Link {
            client,
            conn: None,
            retry,
            read_timeout: Duration::from_secs(5),
        })
    }

    fn connect(&mut self) -> RedisResult<&mut Connection> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))?;
            c.set_read_timeout(Some(self.read_timeout))?;
            c.set_write_timeout(Some(self.read_timeout))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Run `f` on the connection; on a connection failure drop it, wait
    /// (back-off) and run `f` again, up to the retry limit. `f` must be
    /// safe to run again (a whole pipeline, a read).
    pub(crate) fn call<R>(
        &mut self,
        stats: &Stats,
        mut f: impl FnMut(&mut Connection) -> RedisResult<R>,
    ) -> Result<R, CallError> {
        let mut failures = 0u32;
        let mut pause = self.retry.initial;
        let mut last_print: Option<Instant> = None;
        loop {
            let r = self.connect().and_then(&mut f);
            match r {
                Ok(v) => return Ok(v),
                Err(e) if !is_connection_failure(&e) => return Err(CallError::Refused(e)),
                Err(e) => {
                    self.conn = None;
                    failures += 1;
                    Stats::add(&stats.retries, 1);
                    if self.retry.max_retries.is_some_and(|m| failures > m) {
                        return Err(CallError::Unreachable(e.to_string()));
                    }
                    if last_print.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        eprintln!(
                            "shmkit bridge: redis unreachable ({e}); retry {failures} in {pause:?}"
                        );
                        last_print = Some(Instant::now());
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.retry.max);
                }
            }
        }
    }
}

/// One stream entry: its id and fields (`None`: deleted from the stream
/// while pending).
pub(crate) type Entry = (String, Option<Vec<(Vec<u8>, Vec<u8>)>>);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn items(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        Value::Nil => Some(Vec::new()),
        Value::Map(m) => Some(m.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        _ => None,
    }
}

/// Entries from a list of `[id, [field, value, ...]]`.
pub(crate) fn parse_entries(v: Value) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for e in items(v).ok_or("entries are not a list")? {
        let mut pair = items(e).ok_or("an entry is not a list")?.into_iter();
        let id = pair
            .next()
            .as_ref()
            .and_then(text)
            .ok_or("an entry has no id")?;
        let fields = match pair.next() {
            None | Some(Value::Nil) => None,
            Some(f) => {
                let flat = items(f).ok_or("an entry's fields are not a list")?;
                let mut it = flat.into_iter();
                let mut fields = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    fields.push((
                        bytes(k).ok_or("a field name is not a string")?,
                        bytes(v).ok_or("a field value is not a string")?,
                    ));
                }
                Some(fields)
            }
        };
        out.push((id, fields));
    }
    Ok(out)
}

/// The entries of an `XREADGROUP` reply for one stream (nil: none).
pub(crate) fn parse_read(v: Value) -> Result<Vec<Entry>, String> {
    let streams = items(v).ok_or("XREADGROUP reply is not a list")?;
    // RESP2: [[name, entries]]; RESP3 (a map): [name, entries] flattened.
    let mut flat = Vec::new();
    for s in streams {
        match s {
            Value::Array(a) => flat.extend(a),
            other => flat.push(other),
        }
    }
    let mut out = Vec::new();
    let mut it = flat.into_iter();
    while let (Some(_name), Some(entries)) = (it.next(), it.next()) {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// An `XAUTOCLAIM` reply: the next start id and the claimed entries
/// (deleted ones come back with no fields).
pub(crate) fn parse_autoclaim(v: Value) -> Result<(String, Vec<Entry>), String> {
    let mut it = items(v)
        .ok_or("XAUTOCLAIM reply is not a list")?
        .into_iter();
    let next = it
        .next()
        .as_ref()
        .and_then(text)
        .ok_or("XAUTOCLAIM reply has no cursor")?;
    let mut entries = parse_entries(it.next().unwrap_or(Value::Nil))?;
    if let Some(deleted) = it.next() {
        for d in items(deleted).unwrap_or_default() {
            if let Some(id) = text(&d) {
                entries.push((id, None));
            }
        }
    }
    Ok((next, entries))
}

/// The group's pending count and lag (`XPENDING` summary, `XINFO
/// GROUPS`); zeros where Redis does not say.
pub(crate) fn pending_and_lag(
    conn: &mut Connection,
    stream: &str,
    group: &str,
) -> RedisResult<(u64, u64)> {
    let p: Value = redis::cmd("XPENDING").arg(stream).arg(group).query(conn)?;
    let pending = match items(p).and_then(|v| v.into_iter().next()) {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let g: Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query(conn)?;
    let mut lag = 0;
    for grp in items(g).unwrap_or_default() {
        let kv = items(grp).unwrap_or_default();
        let mut name_ok = false;
        let mut l = 0;
        let mut it = kv.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match text(k).as_deref() {
                Some("name") => name_ok = text(v).as_deref() == Some(group),
                Some("lag") => {
                    if let Value::Int(n) = v {
                        l = u64::try_from(*n).unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
        if name_ok {
            lag = l;
        }
    }
    Ok((pending, lag))
}

//! Group `bridge`: items/s from a local queue through Redis Streams into
//! another local queue (`shmkit-bridge`'s `out` and `in`, each on its own
//! thread, with a producer and a consumer thread), against the same client
//! crate doing `XADD` (pipelined, `MULTI`/`EXEC`, the same batch) and
//! `XREADGROUP` + `XACK` (the same count) directly, on a `redis-server`
//! started for the run on a loopback port. Skipped, with a note, when
//! `redis-server` is not installed. Each run checks the count and sum of
//! what came out. Then end-to-end latency, one item at a time (the next
//! pushed once the last arrived): push to pop through both bridges, against
//! `XADD` to `XREADGROUP` returning on a second connection.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::Value;
use shmkit::queue::{Queue, QueueOptions};
use shmkit_bridge::{Common, InConfig, OutConfig, identity, run_in, run_out};

use super::latency::latency_record;
use super::{Options, Record, Res, alternate, e, record, reps};
use crate::{now_ns, percentiles};

const BATCH: usize = 256;

struct Server {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of the run's own; `None` if none is installed.
fn start() -> Res<Option<Server>> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(e)?
        .port();
    let dir = std::env::temp_dir().join(format!("shmkit-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(e)?;
    let child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(None);
        }
    };
    let mut s = Server {
        child,
        dir,
        url: format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(s.url.as_str()).map_err(e)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            return Ok(Some(s));
        }
        if let Ok(Some(st)) = s.child.try_wait() {
            return Err(format!("redis-server exited at start: {st}"));
        }
        if Instant::now() > deadline {
            return Err("redis-server did not answer".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stream key no other run of this process uses.
fn key(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    // Relaxed: a name counter; no other memory is read through it.
    format!("bench-{tag}-{}", N.fetch_add(1, StdOrdering::Relaxed))
}

fn check(case: &str, n: u64, got: u64, sum: u64) -> Res<()> {
    let want = n * n.saturating_sub(1) / 2;
    if got != n || sum != want {
        return Err(format!(
            "{case}: got {got} items (sum {sum}) of {n} (sum {want})"
        ));
    }
    Ok(())
}

/// Through the bridge: producer -> queue -> out -> Redis -> in -> queue ->
/// consumer. Items/s from the first push to the last pop.
fn through_bridge(url: &str, n: u64) -> Res<f64> {
    let opts = QueueOptions::new(4096, 1, 1);
    let qout = Queue::<u64>::new_in_process(opts).map_err(e)?;
    let qin = Queue::<u64>::new_in_process(opts).map_err(e)?;
    let mut common = Common::new(url, &key("bridge"));
    common.batch = BATCH;
    let out_cfg = OutConfig {
        common: common.clone(),
        maxlen: None,
    };
    let in_cfg = InConfig::new(common, "g", "b");
    let (qo, qi) = (qout.clone(), qin.clone());
    let out = std::thread::spawn(move || run_out(&qo, &out_cfg).map_err(e));
    let inb = std::thread::spawn(move || run_in(&qi, &in_cfg).map_err(e));
    let rx = qin.consumer().map_err(e)?;
    let consumer = std::thread::spawn(move || -> Res<(u64, u64)> {
        let mut sum = 0;
        for _ in 0..n {
            sum += rx.pop_timeout(Duration::from_secs(60)).map_err(e)?;
            rx.task_done().map_err(e)?;
        }
        Ok((n, sum))
    });
    let t0 = Instant::now();
    let mut tx = qout.producer().map_err(e)?;
    for i in 0..n {
        tx.push_timeout(i, Duration::from_secs(60)).map_err(e)?;
    }
    let got = consumer.join().map_err(|_| "consumer panicked")?;
    let secs = t0.elapsed().as_secs_f64();
    qout.close();
    qin.join_timeout(Duration::from_secs(60)).map_err(e)?;
    qin.close();
    out.join().map_err(|_| "out panicked")??;
    inb.join().map_err(|_| "in panicked")??;
    let (count, sum) = got?;
    check("shmkit-bridge", n, count, sum)?;
    Ok(n as f64 / secs)
}

/// The same client crate directly: a writer thread adds batches (one
/// MULTI/EXEC pipeline each), this thread reads the group and acknowledges
/// each batch it read.
fn raw_client(url: &str, n: u64) -> Res<f64> {
    let stream = key("raw");
    let client = redis::Client::open(url).map_err(e)?;
    let mut rd = client.get_connection().map_err(e)?;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(&mut rd)
        .map_err(e)?;
    let mut wr = client.get_connection().map_err(e)?;
    let (name, fp) = identity::<u64>();
    let s2 = stream.clone();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || -> Res<()> {
        let mut i = 0;
        while i < n {
            let mut p = redis::pipe();
            p.atomic();
            for v in i..(i + BATCH as u64).min(n) {
                p.cmd("XADD")
                    .arg(&s2)
                    .arg("*")
                    .arg("type")
                    .arg(&name)
                    .arg("fp")
                    .arg(&fp)
                    .arg("item")
                    .arg(&v.to_ne_bytes()[..])
                    .ignore();
            }
            p.query::<()>(&mut wr).map_err(e)?;
            i = (i + BATCH as u64).min(n);
        }
        Ok(())
    });
    let (mut got, mut sum) = (0u64, 0u64);
    while got < n {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query(&mut rd)
            .map_err(e)?;
        let mut ids = Vec::new();
        for (id, item) in entries(v) {
            sum += item;
            got += 1;
            ids.push(id);
        }
        if !ids.is_empty() {
            redis::cmd("XACK")
                .arg(&stream)
                .arg("g")
                .arg(&ids)
                .query::<Value>(&mut rd)
                .map_err(e)?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    writer.join().map_err(|_| "writer panicked")??;
    check("redis-raw", n, got, sum)?;
    Ok(n as f64 / secs)
}

/// (id, item) of each entry of an XREADGROUP reply (RESP2).
fn entries(v: Value) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let Value::Array(streams) = v else {
        return out;
    };
    for s in streams {
        let Value::Array(pair) = s else { continue };
        let Some(Value::Array(es)) = pair.into_iter().nth(1) else {
            continue;
        };
        for en in es {
            let Value::Array(en) = en else { continue };
            let mut it = en.into_iter();
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (it.next(), it.next())
            else {
                continue;
            };
            let mut f = fields.into_iter();
            while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) =
                (f.next(), f.next())
            {
                if k == b"item"
                    && let Ok(b) = <[u8; 8]>::try_from(v.as_slice())
                {
                    out.push((id.clone(), u64::from_ne_bytes(b)));
                }
            }
        }
    }
    out
}

/// Latencies (ns) of `n` items through the bridge, one at a time.
fn bridge_latency(url: &str, n: u64) -> Res<Vec<f64>> {
    let opts = QueueOptions::new(64, 1, 1);
    let qout = Queue::<u64>::new_in_process(opts).map_err(e)?;
    let qin = Queue::<u64>::new_in_process(opts).map_err(e)?;
    let mut common = Common::new(url, &key("bridge-lat"));
    common.batch = BATCH;
    let out_cfg = OutConfig {
        common: common.clone(),
        maxlen: None,
    };
    let in_cfg = InConfig::new(common, "g", "b");
    let (qo, qi) = (qout.clone(), qin.clone());
    let out = std::thread::spawn(move || run_out(&qo, &out_cfg).map_err(e));
    let inb = std::thread::spawn(move || run_in(&qi, &in_cfg).map_err(e));
    let rx = qin.consumer().map_err(e)?;
    let mut tx = qout.producer().map_err(e)?;
    let mut lat = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tx.push(now_ns()).map_err(e)?;
        let t0 = rx.pop_timeout(Duration::from_secs(60)).map_err(e)?;
        lat.push(now_ns().saturating_sub(t0) as f64);
        rx.task_done().map_err(e)?;
    }
    qout.close();
    qin.join_timeout(Duration::from_secs(60)).map_err(e)?;
    qin.close();
    out.join().map_err(|_| "out panicked")??;
    inb.join().map_err(|_| "in panicked")??;
    Ok(lat)
}

/// Latencies (ns) of `n` entries from XADD to a blocked XREADGROUP on
/// another connection and thread returning them, one at a time.
fn raw_latency(url: &str, n: u64) -> Res<Vec<f64>> {
    let stream = key("raw-lat");
    let client = redis::Client::open(url).map_err(e)?;
    let mut rd = client.get_connection().map_err(e)?;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query::<()>(&mut rd)
        .map_err(e)?;
    let mut wr = client.get_connection().map_err(e)?;
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let s2 = stream.clone();
    let reader = std::thread::spawn(move || -> Res<()> {
        let mut got = 0;
        while got < n {
            let v: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&s2)
                .arg(">")
                .query(&mut rd)
                .map_err(e)?;
            for (id, _) in entries(v) {
                let t = now_ns();
                redis::cmd("XACK")
                    .arg(&s2)
                    .arg("g")
                    .arg(&id)
                    .query::<Value>(&mut rd)
                    .map_err(e)?;
                got += 1;
                if done_tx.send(t).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    let (name, fp) = identity::<u64>();
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t0 = now_ns();
        redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("type")
            .arg(&name)
            .arg("fp")
            .arg(&fp)
            .arg("item")
            .arg(&i.to_ne_bytes()[..])
            .query::<Value>(&mut wr)
            .map_err(e)?;
        let t = done_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "reader gone")?;
        lat.push(t.saturating_sub(t0) as f64);
    }
    reader.join().map_err(|_| "reader panicked")??;
    Ok(lat)
}

pub(crate) fn bridge(o: &Options) -> Res<Vec<Record>> {
    let Some(server) = start()? else {
        eprintln!("  .. bridge: redis-server is not installed; group skipped");
        return Ok(Vec::new());
    };
    let n: u64 = if o.full { 500_000 } else { 50_000 };
    let url = server.url.clone();
    let [br, raw] = alternate(
        reps(o),
        [&mut || through_bridge(&url, n), &mut || raw_client(&url, n)],
    )?;
    let note = format!(
        "{n} u64 items, batches of {BATCH}, loopback redis-server; threads: producer, out, in, consumer"
    );
    let lat_n: u64 = if o.full { 10_000 } else { 1_000 };
    let mut lat: [Vec<[f64; 3]>; 2] = Default::default();
    for _ in 0..reps(o) {
        lat[0].push(percentiles(&mut bridge_latency(&url, lat_n)?));
        lat[1].push(percentiles(&mut raw_latency(&url, lat_n)?));
    }
    let mut out = vec![
        record(
            "bridge",
            "shmkit-bridge/out+in".into(),
            "throughput",
            "items/s",
            br,
            note.clone(),
        ),
        record(
            "bridge",
            "redis-raw/xadd+xreadgroup".into(),
            "throughput",
            "items/s",
            raw,
            format!(
                "{n} u64 items, XADD in MULTI/EXEC batches of {BATCH}, XREADGROUP COUNT {BATCH} + XACK"
            ),
        ),
    ];
    let names = [
        (
            "shmkit-bridge/e2e",
            "push to pop through out, Redis and in, one item at a time",
        ),
        (
            "redis-raw/e2e",
            "XADD to a blocked XREADGROUP returning it on another connection",
        ),
    ];
    for (i, (name, what)) in names.iter().enumerate() {
        let r = latency_record(
            "bridge",
            (*name).into(),
            &lat[i],
            format!("{what}; {lat_n} items, loopback redis-server"),
        );
        out.push(r);
    }
    Ok(out)
}

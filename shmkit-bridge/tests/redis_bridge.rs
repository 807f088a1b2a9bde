//! The bridge against a real `redis-server` (started here on a free
//! loopback port, in a temporary directory, killed on drop): a round trip
//! of 100,000 items out -> Redis -> in with each bridge in its own process;
//! an `in` bridge killed with SIGKILL mid-stream and restarted; a local
//! consumer killed holding an item. Children are this test binary in a
//! role (tests/common, `shmkit::worker`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod redis_server;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{CHILD_LIMIT, Cleanup, Reaper, child_command, child_role};
use redis::Value;
use redis_server::{RedisServer, free_port};
use shmkit::SharedArray;
use shmkit::queue::{PopError, Queue, QueueOptions};
use shmkit_bridge::{Common, InConfig, OutConfig, identity, run_in, run_out};

const ENTRY: &str = "child_entry";
const STREAM: &str = "jobs";
const GROUP: &str = "workers";

fn env(key: &str) -> String {
    std::env::var(key).unwrap()
}

// Every Relaxed access below is to a test's own counters (the seen counts,
// the stats and control words), read after the children that wrote them
// exited or polled until they show a value: they order no other memory.

/// Slots of the STATS array an `in` child fills at its end.
const S_ACKED: usize = 0;
const S_UNACKED: usize = 1;
const S_REDELIVERED: usize = 2;
const S_FORWARDED: usize = 3;
/// Slot of CTL: the item a `take_one_and_park` consumer holds, plus one.
const HELD: usize = 0;

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let q = Queue::<u64>::open(&env("QUEUE")).unwrap();
    match role.as_str() {
        "out" => {
            let mut common = Common::new(&env("URL"), STREAM);
            if let Ok(b) = std::env::var("BATCH") {
                common.batch = b.parse().unwrap();
            }
            let cfg = OutConfig {
                common,
                maxlen: None,
            };
            run_out(&q, &cfg).unwrap();
        }
        "in" => {
            let mut common = Common::new(&env("URL"), STREAM);
            common.batch = env("BATCH").parse().unwrap();
            let mut cfg = InConfig::new(common, GROUP, &env("NAME"));
            cfg.claim_idle = Duration::from_millis(env("IDLE_MS").parse().unwrap());
            cfg.ack_every = env("ACK_EVERY").parse().unwrap();
            let s = run_in(&q, &cfg).unwrap();
            let stats = SharedArray::<u64>::open(&env("STATS")).unwrap();
            stats[S_ACKED].store(s.acked, Ordering::Relaxed);
            stats[S_UNACKED].store(s.unacked, Ordering::Relaxed);
            stats[S_REDELIVERED].store(s.redelivered, Ordering::Relaxed);
            stats[S_FORWARDED].store(s.forwarded, Ordering::Relaxed);
        }
        "consume" => {
            let seen = SharedArray::<u32>::open(&env("SEEN")).unwrap();
            let rx = q.consumer().unwrap();
            loop {
                match rx.pop_timeout(CHILD_LIMIT) {
                    Ok(i) => {
                        seen[i as usize].fetch_add(1, Ordering::Relaxed);
                        rx.task_done().unwrap();
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        }
        "take_one_and_park" => {
            let ctl = SharedArray::<u64>::open(&env("CTL")).unwrap();
            let rx = q.consumer().unwrap();
            let i = rx.pop_timeout(CHILD_LIMIT).unwrap();
            ctl[HELD].store(i + 1, Ordering::Relaxed);
            loop {
                std::thread::park(); // until killed, never task_done
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// One test's segments (removed when it ends, also on failure) and server.
struct Setup {
    redis: RedisServer,
    names: Vec<Cleanup>,
    /// The `in` side's queue (one producer lane: the bridge's).
    qin: Queue<u64>,
    seen: SharedArray<u32>,
    stats: SharedArray<u64>,
    ctl: SharedArray<u64>,
}

impl Setup {
    fn new(tag: &str, n: usize, lane: usize) -> Self {
        let redis = RedisServer::start();
        let names: Vec<Cleanup> = ["qin", "seen", "stats", "ctl"]
            .iter()
            .map(|t| Cleanup::new(&format!("{tag}-{t}")))
            .collect();
        Setup {
            qin: Queue::create(names[0].name(), QueueOptions::new(lane, 1, 8)).unwrap(),
            seen: SharedArray::create(names[1].name(), n).unwrap(),
            stats: SharedArray::create(names[2].name(), 4).unwrap(),
            ctl: SharedArray::create(names[3].name(), 1).unwrap(),
            redis,
            names,
        }
    }

    fn spawn(&self, role: &str, queue: &str, extra: &[(&str, String)]) -> Reaper {
        let mut cmd = child_command(ENTRY, role);
        cmd.env("QUEUE", queue)
            .env("URL", &self.redis.url)
            .env("SEEN", self.names[1].name())
            .env("STATS", self.names[2].name())
            .env("CTL", self.names[3].name());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Reaper(Some(cmd.spawn().unwrap()))
    }

    fn spawn_in(&self, name: &str, idle_ms: u64, ack_every: usize, batch: usize) -> Reaper {
        self.spawn(
            "in",
            self.names[0].name(),
            &[
                ("NAME", name.to_owned()),
                ("IDLE_MS", idle_ms.to_string()),
                ("ACK_EVERY", ack_every.to_string()),
                ("BATCH", batch.to_string()),
            ],
        )
    }

    fn consumer(&self) -> Reaper {
        self.spawn("consume", self.names[0].name(), &[])
    }

    /// Wait until every item was seen at least once.
    fn wait_all_seen(&self, what: &str) {
        let deadline = Instant::now() + CHILD_LIMIT;
        while self.seen.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
            assert!(Instant::now() < deadline, "{what}: items never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until at least `k` distinct items were seen.
    fn wait_seen_at_least(&self, k: usize) {
        let deadline = Instant::now() + CHILD_LIMIT;
        while self
            .seen
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count()
            < k
        {
            assert!(Instant::now() < deadline, "fewer than {k} items arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Items seen more than once: item -> extra deliveries.
    fn duplicates(&self) -> HashMap<u64, u32> {
        self.seen
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.load(Ordering::Relaxed);
                (c > 1).then_some((i as u64, c - 1))
            })
            .collect()
    }

    /// Close the in queue once its items are done: the bridge settles its
    /// last epoch and exits, the consumers drain and exit.
    fn finish(&self, bridge: Reaper, consumers: Vec<Reaper>, abandoned: u64) {
        let r = self.qin.join_timeout(CHILD_LIMIT).unwrap();
        assert_eq!(r.abandoned, abandoned);
        self.qin.close();
        bridge.wait_ok();
        for c in consumers {
            c.wait_ok();
        }
    }

    /// The group's pending entries (id -> item), read from Redis.
    fn pending(&self) -> HashMap<String, u64> {
        let mut c = self.redis.conn();
        let v: Value = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1_000_000)
            .query(&mut c)
            .unwrap();
        let mut out = HashMap::new();
        let Value::Array(rows) = v else {
            return out;
        };
        for row in rows {
            let Value::Array(f) = row else { continue };
            let Some(Value::BulkString(id)) = f.first() else {
                continue;
            };
            let id = String::from_utf8(id.clone()).unwrap();
            let item = item_of(&mut c, &id);
            out.insert(id, item);
        }
        out
    }

    fn stat(&self, slot: usize) -> u64 {
        self.stats[slot].load(Ordering::Relaxed)
    }
}

/// The item of entry `id` (XRANGE id id).
fn item_of(c: &mut redis::Connection, id: &str) -> u64 {
    let v: Value = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg(id)
        .arg(id)
        .query(c)
        .unwrap();
    let Value::Array(entries) = v else {
        panic!("XRANGE {id}: {v:?}")
    };
    let Some(Value::Array(e)) = entries.into_iter().next() else {
        panic!("entry {id} gone")
    };
    let Some(Value::Array(fields)) = e.into_iter().nth(1) else {
        panic!("entry {id} has no fields")
    };
    let mut it = fields.into_iter();
    while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) = (it.next(), it.next()) {
        if k == b"item" {
            return u64::from_ne_bytes(v.try_into().unwrap());
        }
    }
    panic!("entry {id} has no item")
}

/// Add items `0..n` to the stream directly, as an `out` bridge would.
fn add_items(redis: &RedisServer, n: u64) {
    let mut c = redis.conn();
    let (name, fp) = identity::<u64>();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("type")
                .arg(&name)
                .arg("fp")
                .arg(&fp)
                .arg("item")
                .arg(&i.to_ne_bytes()[..])
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
}

#[test]
fn round_trip_100k_items_through_two_bridge_processes() {
    const N: usize = 100_000;
    let s = Setup::new("rt", N, 1024);
    let out_name = Cleanup::new("rt-qout");
    let qout = Queue::<u64>::create(out_name.name(), QueueOptions::new(1024, 1, 1)).unwrap();
    let out = s.spawn("out", out_name.name(), &[]);
    let bridge = s.spawn_in("b1", 30_000, 4096, 256);
    let consumers = vec![s.consumer(), s.consumer()];
    let mut tx = qout.producer().unwrap();
    for i in 0..N as u64 {
        tx.push_timeout(i, CHILD_LIMIT).unwrap();
    }
    // Done in the out queue = added to Redis.
    assert_eq!(qout.join_timeout(CHILD_LIMIT).unwrap().abandoned, 0);
    qout.close();
    out.wait_ok();
    s.wait_all_seen("round trip");
    s.finish(bridge, consumers, 0);
    let dups = s.duplicates();
    let pending = s.pending().len();
    eprintln!(
        "round trip: {N} items, duplicates {}, acked {}, unacked {}, redelivered {}, pending at end {pending}",
        dups.len(),
        s.stat(S_ACKED),
        s.stat(S_UNACKED),
        s.stat(S_REDELIVERED)
    );
    assert!(dups.is_empty(), "duplicates without any failure: {dups:?}");
    assert_eq!(s.stat(S_ACKED), N as u64);
    assert_eq!(pending, 0);
}

#[test]
fn in_bridge_killed_mid_stream_and_restarted_loses_nothing() {
    const N: usize = 20_000;
    let s = Setup::new("kill", N, 256);
    add_items(&s.redis, N as u64);
    let consumers = vec![s.consumer(), s.consumer()];
    // Small epochs, so that some are acknowledged before the kill.
    let mut bridge = s.spawn_in("b1", 30_000, 512, 128);
    s.wait_seen_at_least(N / 3);
    let child = bridge.0.as_mut().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What Redis still holds unacknowledged at the kill: the only items
    // that may be delivered twice.
    let pending_at_kill: HashSet<u64> = s.pending().into_values().collect();
    // The same consumer name: it takes back its own pending entries.
    let bridge = s.spawn_in("b1", 30_000, 512, 128);
    s.wait_all_seen("after restart");
    s.finish(bridge, consumers, 0);
    let dups = s.duplicates();
    let extra: u32 = dups.values().sum();
    let stray: Vec<_> = dups
        .keys()
        .filter(|i| !pending_at_kill.contains(i))
        .collect();
    let pending = s.pending().len();
    eprintln!(
        "bridge killed: {N} items, {} pending at the kill, {} items delivered twice ({extra} extra deliveries), restarted bridge: redelivered {}, acked {}, pending at end {pending}",
        pending_at_kill.len(),
        dups.len(),
        s.stat(S_REDELIVERED),
        s.stat(S_ACKED)
    );
    assert!(
        stray.is_empty(),
        "duplicates of acknowledged items: {stray:?}"
    );
    assert_eq!(pending, 0);
}

#[test]
fn consumer_killed_holding_an_item_gets_it_redelivered_after_the_idle_time() {
    const N: usize = 64;
    let s = Setup::new("held", N, 64);
    add_items(&s.redis, N as u64);
    // Alone at first, so that it takes an item; then killed with it.
    let mut holder = s.spawn("take_one_and_park", s.names[0].name(), &[]);
    let bridge = s.spawn_in("b1", 500, 8, 8);
    let deadline = Instant::now() + CHILD_LIMIT;
    while s.ctl[HELD].load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the holder took nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = s.ctl[HELD].load(Ordering::Relaxed) - 1;
    let child = holder.0.as_mut().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let consumer = s.consumer();
    s.wait_all_seen("after the holder died");
    s.finish(bridge, vec![consumer], 1);
    let dups = s.duplicates();
    let pending = s.pending().len();
    eprintln!(
        "consumer killed holding item {held}: {N} items, {} delivered twice, redelivered {}, unacked epochs' items {}, acked {}, pending at end {pending}",
        dups.len(),
        s.stat(S_REDELIVERED),
        s.stat(S_UNACKED),
        s.stat(S_ACKED)
    );
    assert!(s.seen[held as usize].load(Ordering::Relaxed) >= 1);
    assert!(s.stat(S_REDELIVERED) >= 1);
    assert_eq!(pending, 0);
}

#[test]
fn an_entry_of_another_type_is_dead_lettered_not_pushed() {
    const N: usize = 10;
    let s = Setup::new("dead", N, 16);
    add_items(&s.redis, N as u64);
    // One entry that says u32 with a u64's bytes, one with no type at all.
    let mut c = s.redis.conn();
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("type")
        .arg("u32")
        .arg("fp")
        .arg("0")
        .arg("item")
        .arg(&7u64.to_ne_bytes()[..])
        .query(&mut c)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("item")
        .arg(&8u64.to_ne_bytes()[..])
        .query(&mut c)
        .unwrap();
    // The bridge on a thread of this process, a consumer on another.
    let mut cfg = InConfig::new(Common::new(&s.redis.url, STREAM), GROUP, "b1");
    cfg.ack_every = 4;
    let qin = s.qin.clone();
    let bridge = std::thread::spawn(move || run_in(&qin, &cfg).unwrap());
    let rx = s.qin.consumer().unwrap();
    for _ in 0..N {
        let i = rx.pop_timeout(CHILD_LIMIT).unwrap();
        s.seen[i as usize].fetch_add(1, Ordering::Relaxed);
        rx.task_done().unwrap();
    }
    assert_eq!(s.qin.join_timeout(CHILD_LIMIT).unwrap().abandoned, 0);
    s.qin.close();
    let stats = bridge.join().unwrap();
    assert!(rx.pop().is_err(), "a mismatched entry was pushed");
    let dead: u64 = redis::cmd("XLEN")
        .arg(format!("{STREAM}:dead"))
        .query(&mut c)
        .unwrap();
    eprintln!(
        "dead letters: {N} good items, 2 of other types: dead_lettered {}, acked {}, pending {}",
        stats.dead_lettered,
        stats.acked,
        s.pending().len()
    );
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(dead, 2);
    assert_eq!(stats.acked, N as u64);
    assert!(s.seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    assert!(s.pending().is_empty());
}

#[test]
fn while_redis_is_unreachable_the_local_queue_fills_and_nothing_is_dropped() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let name = Cleanup::new("down-qout");
    // 64 slots: the out bridge holds one batch of up to 16, the queue the
    // rest.
    let q = Queue::<u64>::create(name.name(), QueueOptions::new(64, 1, 1)).unwrap();
    let mut common = Common::new(&url, STREAM);
    common.batch = 16;
    let cfg = OutConfig {
        common,
        maxlen: None,
    };
    let stats = cfg.common.stats.clone();
    let qo = q.clone();
    let out = std::thread::spawn(move || run_out(&qo, &cfg).unwrap());
    let mut tx = q.producer().unwrap();
    // Nobody listens on the port. Push until the bridge has taken a batch
    // and is retrying it, then until the queue says Full with every slot
    // taken: the bridge holds one batch, the queue the rest, nothing else.
    let mut pushed = 0u64;
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        match tx.try_push(pushed) {
            Ok(()) => pushed += 1,
            Err(shmkit::queue::PushError::Full(_)) => {
                if stats.retries.load(Ordering::Relaxed) >= 2 && q.len() == 64 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("push: {e}"),
        }
        assert!(Instant::now() < deadline, "the queue never filled");
    }
    assert_eq!(pushed, 64 + 16, "the bridge holds one batch of 16");
    assert_eq!(q.state().done, 0, "nothing can have reached Redis");
    // Redis comes up: every item goes through, none twice.
    let redis = RedisServer::start_on(port);
    assert_eq!(q.join_timeout(CHILD_LIMIT).unwrap().abandoned, 0);
    q.close();
    let stats = out.join().unwrap();
    let mut c = redis.conn();
    let len: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut c).unwrap();
    eprintln!(
        "redis down: {pushed} items pushed before the queue was full, {} retries, {len} in the stream after Redis came up",
        stats.retries
    );
    assert_eq!(len, pushed);
    assert_eq!(stats.forwarded, pushed);
    assert!(stats.retries > 0);
}

#[test]
fn out_bridge_killed_holding_a_batch_loses_that_batch_and_the_queue_reports_it() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let names = [Cleanup::new("outkill-q"), Cleanup::new("outkill-ctl")];
    let q = Queue::<u64>::create(names[0].name(), QueueOptions::new(64, 1, 2)).unwrap();
    let mut tx = q.producer().unwrap();
    for i in 0..64 {
        tx.push(i).unwrap();
    }
    let spawn_out = |url: &str| {
        let mut cmd = child_command(ENTRY, "out");
        cmd.env("QUEUE", names[0].name())
            .env("URL", url)
            .env("BATCH", "16");
        Reaper(Some(cmd.spawn().unwrap()))
    };
    // Redis is down: the bridge takes one batch and retries it.
    let mut out = spawn_out(&url);
    let deadline = Instant::now() + CHILD_LIMIT;
    while q.len() != 48 {
        assert!(Instant::now() < deadline, "the bridge took no batch");
        std::thread::sleep(Duration::from_millis(5));
    }
    let child = out.0.as_mut().unwrap();
    child.kill().unwrap(); // SIGKILL, holding 16 items
    child.wait().unwrap();
    let redis = RedisServer::start_on(port);
    let out = spawn_out(&url);
    // join says Disconnected while no consumer lives: wait for the new one.
    while !q.state().consumers.iter().any(|c| c.1) {
        assert!(Instant::now() < deadline, "the new bridge never attached");
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = q.join_timeout(CHILD_LIMIT).unwrap();
    q.close();
    out.wait_ok();
    let mut c = redis.conn();
    let len: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut c).unwrap();
    eprintln!(
        "out bridge killed holding a batch: 64 items, {len} in the stream, {} reported abandoned by the local queue",
        report.abandoned
    );
    assert_eq!(report.abandoned, 16);
    assert_eq!(len, 48);
}

#[test]
fn entries_are_acknowledged_only_after_every_item_of_their_epoch_is_done() {
    const N: usize = 8;
    let s = Setup::new("ackrule", N, 16);
    add_items(&s.redis, N as u64);
    let mut common = Common::new(&s.redis.url, STREAM);
    common.batch = N;
    let mut cfg = InConfig::new(common, GROUP, "b1");
    cfg.ack_every = N;
    let qin = s.qin.clone();
    let bridge = std::thread::spawn(move || run_in(&qin, &cfg).unwrap());
    // One consumer takes an item and holds it; another does the rest.
    let holder = s.qin.consumer().unwrap();
    let held = holder.pop_timeout(CHILD_LIMIT).unwrap();
    let worker = s.qin.consumer().unwrap();
    for _ in 1..N {
        worker.pop_timeout(CHILD_LIMIT).unwrap();
        worker.task_done().unwrap();
    }
    // Seven of eight are done, and which seven the queue cannot say: the
    // bridge acknowledges none of the epoch while the eighth is held.
    assert_eq!(
        s.pending().len(),
        N,
        "acknowledged before item {held} was done"
    );
    holder.task_done().unwrap();
    let deadline = Instant::now() + CHILD_LIMIT;
    while !s.pending().is_empty() {
        assert!(Instant::now() < deadline, "never acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.qin.close();
    let stats = bridge.join().unwrap();
    assert_eq!(stats.acked, N as u64);
    assert_eq!(stats.unacked, 0);
}

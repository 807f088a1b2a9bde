//! The multi-producer Queue across real processes: producers × consumers
//! exactly once and in per-producer order, join from an observer process, a
//! consumer killed holding an item (join reports it abandoned), a producer
//! killed mid-stream, a kill -9 soak of producers and consumers, and byte
//! messages (`Queue<Frame>`) between processes, each whole and exactly once.
//!
//! Items are `[producer incarnation, sequence, payload, checksum]`: a torn
//! item fails its checksum. Each consumer records what it got in the shared
//! `seen` array (one counter per incarnation × sequence), so duplicates and
//! losses are counted by the parent; a producer records how many pushes
//! returned (`pushed`), so an item published by a producer killed before it
//! recorded it is extra, never "lost".
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{CHILD_LIMIT, Cleanup, Reaper, child_command, child_role};
use shmkit::queue::message::Frame;
use shmkit::queue::{JoinError, PopError, Queue, QueueOptions};
use shmkit::{Error, Ordering, SharedArray, ShmType};

const ENTRY: &str = "child_entry";

type Item = [u64; 4];

/// Sequences per producer incarnation (the `seen` array's stride).
const PER: u64 = 1 << 15;

fn checksum(k: u64, i: u64, payload: u64) -> u64 {
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.rotate_left(17) ^ payload)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        | 1
}

fn item(k: u64, i: u64) -> Item {
    let payload = i.wrapping_mul(2654435761) ^ k;
    [k, i, payload, checksum(k, i, payload)]
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap()
}

/// Control words: [0] stop producers, [1] items popped by
/// `consume_one_then_park`, [2] observer's join result (abandoned + 1).
const STOP: usize = 0;
const PARKED: usize = 1;
const OBSERVED: usize = 2;

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    if let Some(role) = role.strip_prefix("bytes_") {
        return bytes_child(role);
    }
    let q = Queue::<Item>::open(&env("QUEUE")).unwrap();
    let ctl = SharedArray::<u64>::open(&env("CTL")).unwrap();
    match role.as_str() {
        "produce" => {
            let mut tx = q.producer().unwrap();
            produce_all(|k, i| {
                tx.push_timeout(item(k, i), CHILD_LIMIT)
                    .map_err(|e| e.to_string())
            });
        }
        "consume" => {
            let rx = q.consumer().unwrap();
            consume_all(
                || {
                    let [k, i, payload, sum] = rx.pop_timeout(CHILD_LIMIT)?;
                    assert_eq!(sum, checksum(k, i, payload), "torn item {k}/{i}");
                    Ok((k, i))
                },
                || rx.task_done().unwrap(),
            );
        }
        "consume_one_then_park" => {
            let rx = q.consumer().unwrap();
            rx.pop().unwrap();
            ctl[PARKED].fetch_add(1, Ordering::Relaxed);
            loop {
                std::thread::park(); // until killed
            }
        }
        "sole_one_then_park" => {
            let mut rx = q.sole_consumer().unwrap();
            rx.pop().unwrap();
            ctl[PARKED].fetch_add(1, Ordering::Relaxed);
            loop {
                std::thread::park(); // until killed
            }
        }
        "observe" => {
            let r = q.join_timeout(CHILD_LIMIT).unwrap();
            ctl[OBSERVED].store(r.abandoned + 1, Ordering::Relaxed);
        }
        other => panic!("unknown role {other}"),
    }
}

/// A producer's loop: `push` item or message `i` of incarnation K, for i
/// up to N or until told to stop, recording how many pushes returned.
fn produce_all(mut push: impl FnMut(u64, u64) -> Result<(), String>) {
    let ctl = SharedArray::<u64>::open(&env("CTL")).unwrap();
    let pushed = SharedArray::<u64>::open(&env("PUSHED")).unwrap();
    let k: u64 = env("K").parse().unwrap();
    let n: u64 = env("N").parse().unwrap();
    for i in 0..n {
        if ctl[STOP].load(Ordering::Relaxed) != 0 {
            break;
        }
        push(k, i).unwrap_or_else(|e| panic!("producer {k} wedged at {i}: {e}"));
        pushed[k as usize].store(i + 1, Ordering::Relaxed);
    }
}

/// A consumer's loop: `pop` gives (producer incarnation, sequence) of a
/// whole item or message it checked, until `Disconnected`; each is recorded
/// in `seen`, checked to come after the last of its producer, and marked
/// done.
fn consume_all(mut pop: impl FnMut() -> Result<(u64, u64), PopError>, done: impl Fn()) {
    let seen = SharedArray::<u8>::open(&env("SEEN")).unwrap();
    let mut last = std::collections::HashMap::<u64, u64>::new();
    loop {
        match pop() {
            Ok((k, i)) => {
                assert!(i < PER, "sequence {i} out of range");
                let prev = last.insert(k, i);
                assert!(
                    prev.is_none_or(|p| p < i),
                    "producer {k}: {i} after {prev:?}"
                );
                seen[(k * PER + i) as usize].fetch_add(1, Ordering::Relaxed);
                done();
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

/// The shared objects of one test, removed when it ends.
struct Setup<T: ShmType = Item> {
    names: [Cleanup; 4],
    q: Queue<T>,
    ctl: SharedArray<u64>,
    pushed: SharedArray<u64>,
    seen: SharedArray<u8>,
}

impl<T: ShmType> Setup<T> {
    fn new(tag: &str, opts: QueueOptions, incarnations: usize) -> Self {
        let names = [
            Cleanup::new(&format!("{tag}-q")),
            Cleanup::new(&format!("{tag}-ctl")),
            Cleanup::new(&format!("{tag}-pushed")),
            Cleanup::new(&format!("{tag}-seen")),
        ];
        Setup {
            q: Queue::create(names[0].name(), opts).unwrap(),
            ctl: SharedArray::create(names[1].name(), 4).unwrap(),
            pushed: SharedArray::create(names[2].name(), incarnations).unwrap(),
            seen: SharedArray::create(names[3].name(), incarnations * PER as usize).unwrap(),
            names,
        }
    }

    fn spawn(&self, role: &str, k: u64, n: u64) -> Reaper {
        let child = child_command(ENTRY, role)
            .env("QUEUE", self.names[0].name())
            .env("CTL", self.names[1].name())
            .env("PUSHED", self.names[2].name())
            .env("SEEN", self.names[3].name())
            .env("K", k.to_string())
            .env("N", n.to_string())
            .spawn()
            .unwrap();
        Reaper(Some(child))
    }

    /// `k` consumer and `k` producer processes (roles `consume` and
    /// `produce` after `prefix`), `n` items each; once the producers are
    /// done, `joined` (every item must be done by then), then close: each
    /// item delivered exactly once (the consumers check order).
    fn exactly_once(&self, prefix: &str, k: u64, n: u64, joined: impl FnOnce(&Self)) {
        let role = |r: &str| format!("{prefix}{r}");
        let consumers: Vec<Reaper> = (0..k).map(|_| self.spawn(&role("consume"), 0, 0)).collect();
        let producers: Vec<Reaper> = (0..k).map(|i| self.spawn(&role("produce"), i, n)).collect();
        for p in producers {
            p.wait_ok();
        }
        joined(self);
        self.q.close();
        for c in consumers {
            c.wait_ok();
        }
        assert_eq!(
            self.tally(k as usize),
            (0, 0, 0),
            "(duplicated, lost, extra)"
        );
        let count: u64 = self.seen.values().map(u64::from).sum();
        assert_eq!(count, k * n);
    }

    /// (duplicated, lost, extra): items seen twice or more; items whose
    /// push returned and that nobody recorded; items recorded beyond what
    /// their producer recorded as pushed (published just before a kill).
    fn tally(&self, incarnations: usize) -> (usize, usize, usize) {
        let seen = self.seen.to_vec();
        let (mut dup, mut lost, mut extra) = (0, 0, 0);
        for k in 0..incarnations {
            let pushed = self.pushed[k].load(Ordering::Relaxed) as usize;
            for (i, &c) in seen[k * PER as usize..(k + 1) * PER as usize]
                .iter()
                .enumerate()
            {
                dup += usize::from(c > 1);
                lost += usize::from(i < pushed && c == 0);
                extra += usize::from(i >= pushed && c > 0);
            }
        }
        (dup, lost, extra)
    }
}

/// Poll a condition another process makes true, with a deadline.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn three_producers_three_consumers_exactly_once_in_order_and_an_observer_joins() {
    const N: u64 = 30_000;
    let s = Setup::<Item>::new("qmp", QueueOptions::new(64, 3, 3), 3);
    s.exactly_once("", 3, N, |s| {
        // Every item is pushed: an observer process joins (it neither
        // produces nor consumes), and returns once every item is done.
        s.spawn("observe", 0, 0).wait_ok();
        assert_eq!(s.ctl[OBSERVED].load(Ordering::Relaxed), 1, "abandoned 0");
        assert_eq!(s.q.join().unwrap().abandoned, 0);
    });
}

/// A sole consumer (the one collector of two producers) in another process
/// shuts other consumers out; killed -9 holding an item, it is taken over:
/// the next sole consumer gets every other item once, each producer's in
/// order, and `join` reports the one it held.
#[test]
fn a_killed_sole_consumer_is_taken_over() {
    let s = Setup::<Item>::new("qsolekill", QueueOptions::new(8, 2, 2), 1);
    let (mut a, mut b) = (s.q.producer().unwrap(), s.q.producer().unwrap());
    for i in 0..3 {
        a.push(item(0, i)).unwrap();
        b.push(item(1, i)).unwrap();
    }
    let mut victim = s.spawn("sole_one_then_park", 0, 0);
    wait_until("the sole consumer to take one", CHILD_LIMIT, || {
        s.ctl[PARKED].load(Ordering::Relaxed) == 1
    });
    let pid = victim.0.as_ref().unwrap().id();
    match s.q.consumer() {
        Err(Error::SoleConsumer { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("a consumer beside a live sole one: {other:?}"),
    }
    victim.0.as_mut().unwrap().kill().unwrap();
    // Reaped, so that the claim is free at once (a killed child is alive to
    // a liveness check until the signal is delivered).
    victim.0.as_mut().unwrap().wait().unwrap();
    let mut rx = s.q.sole_consumer().unwrap();
    let mut got = Vec::new();
    while let Ok(it) = rx.try_pop() {
        rx.task_done().unwrap();
        got.push(it);
    }
    assert_eq!(got.len(), 5, "all but the one the victim held");
    for k in 0..2 {
        let mine: Vec<_> = got.iter().filter(|it| it[0] == k).collect();
        assert!(
            mine.windows(2).all(|w| w[0][1] < w[1][1]),
            "producer {k} out of order"
        );
    }
    assert_eq!(a.join_timeout(CHILD_LIMIT).unwrap().abandoned, 1);
}

#[test]
fn a_consumer_killed_holding_an_item_is_reported_abandoned() {
    let s = Setup::<Item>::new("qabandon", QueueOptions::new(8, 1, 3), 1);
    let mut tx = s.q.producer().unwrap();
    for i in 0..3 {
        tx.push(item(0, i)).unwrap();
    }
    let mut victim = s.spawn("consume_one_then_park", 0, 0);
    wait_until("the victim to take one", CHILD_LIMIT, || {
        s.ctl[PARKED].load(Ordering::Relaxed) == 1
    });
    // Another consumer stays alive all along: the case that used to hang.
    let rx = s.q.consumer().unwrap();
    for _ in 0..2 {
        rx.pop().unwrap();
        rx.task_done().unwrap();
    }
    assert_eq!(
        tx.join_timeout(Duration::from_millis(50)),
        Err(JoinError::Timeout),
        "the victim still holds its item, alive"
    );
    victim.0.as_mut().unwrap().kill().unwrap();
    // A zombie counts as dead: no reaping needed for join to see it.
    let r = tx.join_timeout(CHILD_LIMIT).unwrap();
    assert_eq!(r.abandoned, 1);
    assert_eq!(rx.join().unwrap().abandoned, 1);
    drop(victim);
    // A new consumer may reuse the dead one's entry: the count stays.
    let _again = s.q.consumer().unwrap();
    assert_eq!(s.q.join().unwrap().abandoned, 1);
}

#[test]
fn a_producer_killed_mid_stream_wedges_nobody() {
    let s = Setup::<Item>::new(
        "qprodkill",
        QueueOptions::new(16, 2, 2).disconnect_when_producers_gone(true),
        2,
    );
    let rx = s.q.consumer().unwrap();
    let mut victim = s.spawn("produce", 0, PER);
    let first = rx.pop_timeout(CHILD_LIMIT).unwrap();
    assert_eq!(first, item(0, 0));
    victim.0.as_mut().unwrap().kill().unwrap();
    // The consumer drains the dead producer's lane, in order, whole, and
    // then learns that no producer is left.
    let started = Instant::now();
    let mut next = 1;
    loop {
        match rx.pop_timeout(CHILD_LIMIT) {
            Ok(v) => {
                assert_eq!(v, item(0, next));
                next += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The dead producer's lane is taken over; the queue works on.
    let mut tx0 = s.q.producer().unwrap();
    let mut tx1 = s.q.producer().unwrap();
    tx0.push(item(1, 0)).unwrap();
    tx1.push(item(1, 1)).unwrap();
    let mut got = vec![rx.pop().unwrap(), rx.pop().unwrap()];
    got.sort();
    assert_eq!(got, [item(1, 0), item(1, 1)]);
}

/// 3 producers and 3 consumers; kill -9 a random one again and again and
/// start a replacement, `SHMKIT_SOAK_KILLS` times (200 by default, about
/// half a minute). Then stop the producers, join, close, and count.
#[test]
fn soak_kill_producers_and_consumers_at_random() {
    let kills: usize = std::env::var("SHMKIT_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let incarnations = kills + 4;
    let s = Setup::<Item>::new("qsoak", QueueOptions::new(64, 4, 4), incarnations);
    let mut seed = u64::from(std::process::id()) | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut next_k = 0u64;
    let mut producers: Vec<Reaper> = Vec::new();
    let mut consumers: Vec<Reaper> = (0..3).map(|_| s.spawn("consume", 0, 0)).collect();
    for _ in 0..3 {
        producers.push(s.spawn("produce", next_k, PER));
        next_k += 1;
    }
    let (mut killed_p, mut killed_c) = (0usize, 0usize);
    let started = Instant::now();
    for _ in 0..kills {
        // A random moment: 0-100 ms of running between kills.
        std::thread::sleep(Duration::from_millis(rand() % 100));
        let victim = (rand() % 6) as usize;
        if victim < 3 {
            drop(producers.swap_remove(victim)); // SIGKILL + reap
            killed_p += 1;
            producers.push(s.spawn("produce", next_k, PER));
            next_k += 1;
        } else {
            drop(consumers.swap_remove(victim - 3));
            killed_c += 1;
            consumers.push(s.spawn("consume", 0, 0));
        }
    }
    let kill_phase = started.elapsed();
    s.ctl[STOP].store(1, Ordering::Relaxed);
    for p in producers {
        p.wait_ok();
    }
    let report =
        s.q.join_timeout(CHILD_LIMIT)
            .unwrap_or_else(|e| panic!("join after the soak: {e}"));
    s.q.close();
    for c in consumers {
        c.wait_ok();
    }
    let (dup, lost, extra) = s.tally(next_k as usize);
    let delivered: u64 = s.seen.values().map(u64::from).sum();
    eprintln!(
        "soak: {kills} kills ({killed_p} producers, {killed_c} consumers) in {kill_phase:?}; \
         {delivered} items delivered, {dup} duplicated, {lost} lost, {extra} published by \
         producers killed before recording them; join: {} abandoned",
        report.abandoned
    );
    assert_eq!(dup, 0, "items delivered twice");
    // A consumer holds at most one item (it pops one at a time); a killed
    // one's item is counted abandoned, and lost if it was killed before
    // recording it.
    assert!(lost <= killed_c, "{lost} lost, {killed_c} consumers killed");
    assert!(
        report.abandoned as usize <= killed_c,
        "{} abandoned, {killed_c} consumers killed",
        report.abandoned
    );
    assert!(lost as u64 <= report.abandoned, "lost items not reported");
}

/// Byte message `i` of producer `k`: its 16-byte header (k, i), then a
/// pattern of both, 16 to 16 * 56 bytes long (1 to 16 frames: up to a
/// whole lane of the test's queue).
fn message(k: u64, i: u64) -> Vec<u8> {
    let len = 16 + ((i * 97 + k * 31) % (16 * 56 - 15)) as usize;
    let mut m = [k.to_le_bytes(), i.to_le_bytes()].concat();
    m.extend((16..len).map(|j| ((k * 131 + i * 7 + j as u64 * 13) % 251) as u8));
    m
}

/// The byte-message roles: `produce` pushes N messages as incarnation K,
/// `consume` pops them into one reused buffer until Disconnected, checking
/// each is whole and each producer's in order.
fn bytes_child(role: &str) {
    let q = Queue::<Frame>::open(&env("QUEUE")).unwrap();
    match role {
        "produce" => {
            let mut tx = q.producer().unwrap();
            produce_all(|k, i| {
                tx.push_bytes_timeout(&message(k, i), CHILD_LIMIT)
                    .map_err(|e| e.to_string())
            });
        }
        "consume" => {
            let rx = q.consumer().unwrap();
            let mut buf = Vec::new();
            consume_all(
                || {
                    rx.pop_bytes_into_timeout(&mut buf, CHILD_LIMIT)?;
                    let k = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    let i = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                    assert!(k < 2 && i < PER, "message {k}/{i} out of range");
                    assert!(buf == message(k, i), "torn message {k}/{i}");
                    Ok((k, i))
                },
                || rx.task_done().unwrap(),
            );
        }
        other => panic!("unknown role bytes_{other}"),
    }
}

#[test]
fn byte_messages_two_producers_two_consumers_whole_and_exactly_once() {
    const N: u64 = 3_000;
    let s = Setup::<Frame>::new("qbytes", QueueOptions::new(16, 2, 2), 2);
    s.exactly_once("bytes_", 2, N, |s| {
        // task_done per message: the join's count is in frames, all done.
        assert_eq!(s.q.join_timeout(CHILD_LIMIT).unwrap().abandoned, 0);
    });
}

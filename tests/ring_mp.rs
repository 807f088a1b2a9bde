//! The SPMC ring across real processes: exactly-once delivery of a million
//! items, kill -9 of consumers and of the producer, role claims, corruption.
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{CHILD_LIMIT, Cleanup, Reaper, child_command, child_role, wait_until};
use shmkit::ring::{PopError, PushError, Ring};
use shmkit::{Error, Ordering, SharedArray};

const ENTRY: &str = "child_entry";

fn env(key: &str) -> String {
    std::env::var(key).unwrap()
}

/// Record the items a consumer got in the shared `seen` array, checking that
/// this consumer sees increasing values.
fn record(seen: &SharedArray<u8>, last: &mut Option<u64>, v: u64) {
    assert!(
        last.is_none_or(|l| l < v),
        "out of order: {last:?} then {v}"
    );
    *last = Some(v);
    seen[v as usize].fetch_add(1, Ordering::Relaxed);
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let ring = Ring::<u64>::open(&env("RING")).unwrap();
    match role.as_str() {
        "consume_batch" | "consume_one" => {
            let seen = SharedArray::<u8>::open(&env("SEEN")).unwrap();
            let rx = ring.consumer().unwrap();
            let mut last = None;
            let mut buf = [0u64; 64];
            loop {
                let r = if role == "consume_batch" {
                    rx.pop_into(&mut buf)
                } else {
                    rx.pop().map(|v| {
                        buf[0] = v;
                        1
                    })
                };
                match r {
                    Ok(n) => {
                        for &v in &buf[..n] {
                            record(&seen, &mut last, v);
                        }
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        }
        "produce_then_park" => {
            let mut tx = ring.producer().unwrap();
            let n: u64 = env("N").parse().unwrap();
            for v in 0..n {
                tx.push(v).unwrap();
            }
            loop {
                std::thread::park(); // until killed
            }
        }
        "sole_one_then_park" => {
            let mut rx = ring.sole_consumer().unwrap();
            rx.pop().unwrap();
            loop {
                std::thread::park(); // until killed
            }
        }
        "consume_one_then_park" => {
            let rx = ring.consumer().unwrap();
            rx.pop().unwrap();
            loop {
                std::thread::park(); // until killed
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, ring: &str, seen: &str) -> Reaper {
    let child = child_command(ENTRY, role)
        .env("RING", ring)
        .env("SEEN", seen)
        .spawn()
        .unwrap();
    Reaper(Some(child))
}

#[test]
fn one_producer_three_consumers_a_million_items() {
    const N: usize = 1_000_000;
    let (r, s) = (Cleanup::new("ring1m"), Cleanup::new("seen1m"));
    let ring = Ring::<u64>::create(r.name(), 4096).unwrap();
    let seen = SharedArray::<u8>::create(s.name(), N).unwrap();
    let mut tx = ring.producer().unwrap();
    let kids: Vec<Reaper> = (0..3)
        .map(|_| spawn("consume_batch", r.name(), s.name()))
        .collect();
    let items: Vec<u64> = (0..N as u64).collect();
    for chunk in items.chunks(1000) {
        tx.push_slice(chunk).unwrap();
    }
    drop(tx); // close: consumers drain, then see Disconnected
    for k in kids {
        k.wait_ok();
    }
    let counts = seen.to_vec();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    let dup = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!(
        (missing, dup),
        (0, 0),
        "missing {missing}, duplicated {dup}"
    );
}

#[test]
fn kill_consumers_mid_stream() {
    const N: usize = 200_000;
    const KILLS: usize = 5;
    let (r, s) = (Cleanup::new("ringkill"), Cleanup::new("seenkill"));
    let ring = Ring::<u64>::create(r.name(), 256).unwrap();
    let seen = SharedArray::<u8>::create(s.name(), N).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut kids: Vec<Reaper> = (0..3)
        .map(|_| spawn("consume_one", r.name(), s.name()))
        .collect();
    // Kill points at pseudo-random positions in the stream.
    let mut seed = std::process::id() as u64 | 1;
    let mut kill_at: Vec<usize> = (0..KILLS)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % N
        })
        .collect();
    kill_at.sort();
    let mut next_kill = 0;
    for v in 0..N {
        while next_kill < KILLS && kill_at[next_kill] == v {
            let victim = (seed as usize + next_kill) % kids.len();
            drop(kids.swap_remove(victim)); // SIGKILL + reap
            kids.push(spawn("consume_one", r.name(), s.name()));
            next_kill += 1;
        }
        // A timeout turns a wedged ring into a test failure, not a hang.
        tx.push_timeout(v as u64, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("producer wedged at {v}: {e}"));
    }
    drop(tx);
    for k in kids {
        k.wait_ok();
    }
    let counts = seen.to_vec();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    let dup = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!(dup, 0, "an item was delivered twice");
    assert!(
        missing <= KILLS,
        "{missing} items missing after {KILLS} kills"
    );
}

#[test]
fn killed_producer_disconnects_waiting_consumers_within_a_second() {
    let r = Cleanup::new("ringprodkill");
    let ring = Ring::<u64>::create(r.name(), 16).unwrap();
    let child = child_command(ENTRY, "produce_then_park")
        .env("RING", r.name())
        .env("N", "5")
        .spawn()
        .unwrap();
    let mut producer = Reaper(Some(child));
    let rx = ring.consumer().unwrap();
    for want in 0..5 {
        assert_eq!(rx.pop(), Ok(want));
    }
    // The producer holds the role and is alive: a second claim fails.
    let e = ring.producer().unwrap_err();
    assert!(matches!(e, Error::ProducerExists { .. }), "{e:?}");
    // The message names the holder, not the caller.
    let holder = producer.0.as_ref().unwrap().id();
    assert!(
        e.to_string()
            .contains(&format!("already has a producer, process {holder} (alive)")),
        "{e}"
    );
    // The consumer now sleeps on the empty ring; kill the producer.
    let waiter = std::thread::spawn(move || {
        // A timeout only so that a regression fails instead of hanging.
        let r = rx.pop_timeout(CHILD_LIMIT);
        (r, Instant::now())
    });
    wait_until("the consumer to sleep", Duration::from_secs(10), || {
        ring.state().consumers_sleeping > 0
    });
    let killed_at = Instant::now();
    // Killed but not reaped until `producer` drops: a zombie counts as dead.
    producer.0.as_mut().unwrap().kill().unwrap();
    let (r, woke_at) = waiter.join().unwrap();
    assert_eq!(r, Err(PopError::Disconnected));
    let took = woke_at - killed_at;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The dead producer's role can be taken over.
    let mut tx = ring.producer().unwrap();
    tx.try_push(99).unwrap();
}

#[test]
fn producer_on_full_ring_sees_consumers_die() {
    let r = Cleanup::new("ringconskill");
    let ring = Ring::<u64>::create(r.name(), 4).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut consumer = spawn("consume_one_then_park", r.name(), "");
    for v in 0..5 {
        tx.push(v).unwrap(); // the 5th fits once the consumer took one
    }
    assert!(matches!(tx.try_push(5), Err(PushError::Full(5))));
    let blocked = std::thread::spawn(move || {
        let r = tx.push_timeout(6, CHILD_LIMIT);
        (r, Instant::now())
    });
    wait_until("the producer to sleep", Duration::from_secs(10), || {
        ring.state().producer_sleeping
    });
    let killed_at = Instant::now();
    consumer.0.as_mut().unwrap().kill().unwrap();
    let (r, woke_at) = blocked.join().unwrap();
    assert!(matches!(r, Err(PushError::Disconnected(6))), "{r:?}");
    assert!(woke_at - killed_at < Duration::from_secs(1));
}

/// Byte offsets in a ring segment: header 256, then `tail` and `head` on
/// their own 128-byte lines.
const TAIL_AT: u64 = 256;
const HEAD_AT: u64 = 256 + 128;

#[test]
fn corrupt_indices_are_errors_not_hangs() {
    use std::os::unix::fs::FileExt;
    let r = Cleanup::new("ringcorrupt");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(r.path())
        .unwrap();
    let rx = ring.consumer().unwrap();

    // head past tail
    f.write_all_at(&10u64.to_le_bytes(), HEAD_AT).unwrap();
    f.write_all_at(&3u64.to_le_bytes(), TAIL_AT).unwrap();
    assert!(matches!(rx.try_pop(), Err(PopError::Corrupt(_))));
    assert!(matches!(rx.pop(), Err(PopError::Corrupt(_))));
    assert!(matches!(ring.producer(), Err(Error::Corrupt { .. })));

    // more items than slots (a fresh consumer: a handle checks the indices
    // whenever it loads tail, and this one has not cached the old tail)
    let rx = ring.consumer().unwrap();
    f.write_all_at(&0u64.to_le_bytes(), HEAD_AT).unwrap();
    f.write_all_at(&1000u64.to_le_bytes(), TAIL_AT).unwrap();
    assert!(matches!(rx.try_pop(), Err(PopError::Corrupt(_))));
    assert!(matches!(ring.producer(), Err(Error::Corrupt { .. })));

    // Tail at u64::MAX with head 0 also never reads out of bounds.
    let rx = ring.consumer().unwrap();
    f.write_all_at(&u64::MAX.to_le_bytes(), TAIL_AT).unwrap();
    assert!(matches!(rx.try_pop(), Err(PopError::Corrupt(_))));
}

#[test]
fn bad_capacity_in_header_is_rejected_at_open() {
    use std::os::unix::fs::FileExt;
    let r = Cleanup::new("ringcap");
    let mut ring =
        Ring::<u64>::create_with(r.name(), 8, &shmkit::CreateOptions::new().keep(true)).unwrap();
    let _ = &mut ring;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(r.path())
        .unwrap();
    f.write_all_at(&6u64.to_le_bytes(), 40).unwrap(); // len: not a power of two
    let e = Ring::<u64>::open(r.name()).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");
}

#[test]
fn ring_type_and_capacity_checks() {
    let r = Cleanup::new("ringtype");
    let _ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let e = Ring::<u32>::open(r.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    let e = SharedArray::<u64>::open(r.name()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    let e = Ring::<u64>::create(&common::unique("cap"), 1000).unwrap_err();
    assert!(e.to_string().contains("1024"), "{e}");
}

#[test]
fn items_larger_than_a_word_round_trip() {
    shmkit::record! {
        #[name = "test.Tick/1"]
        #[derive(Debug, PartialEq)]
        struct Tick {
            id: u32,
            qty: u16,
            side: u8,
            flag: u8,
            price: f64,
            seq: [u8; 8],
        }
    }
    let r = Cleanup::new("ringtick");
    let ring = Ring::<[u8; 19]>::create(r.name(), 4).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let msg = *b"nineteen bytes here";
    tx.push(msg).unwrap();
    assert_eq!(rx.pop(), Ok(msg));

    let r2 = Cleanup::new("ringtick2");
    let ring = Ring::<Tick>::create(r2.name(), 2).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = Ring::<Tick>::open(r2.name()).unwrap().consumer().unwrap();
    let t = Tick {
        id: 7,
        qty: 300,
        side: 1,
        flag: 0,
        price: 101.25,
        seq: [1, 2, 3, 4, 5, 6, 7, 8],
    };
    for _ in 0..5 {
        tx.push(t).unwrap();
        assert_eq!(rx.pop(), Ok(t));
    }
}

#[test]
fn task_done_and_join_across_handles() {
    let r = Cleanup::new("ringjoin");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    for v in 0..3 {
        tx.push(v).unwrap();
    }
    assert_eq!(
        tx.join_timeout(Duration::from_millis(20)),
        Err(shmkit::ring::JoinError::Timeout)
    );
    let t = std::thread::spawn(move || {
        for _ in 0..3 {
            rx.pop().unwrap();
            rx.task_done().unwrap();
        }
        assert!(rx.task_done().is_err());
    });
    tx.join().unwrap();
    t.join().unwrap();
}

/// Issue 14: a consumer killed between taking an item and `task_done`,
/// while another consumer lives, used to make `join` wait forever. Its item
/// is now reported abandoned.
#[test]
fn join_reports_the_item_of_a_consumer_killed_holding_it() {
    let r = Cleanup::new("ringjoinkill");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    for v in 0..3 {
        tx.push(v).unwrap();
    }
    let mut victim = spawn("consume_one_then_park", r.name(), "");
    wait_until("the victim to take one", CHILD_LIMIT, || ring.len() == 2);
    let rx = ring.consumer().unwrap();
    for _ in 0..2 {
        rx.pop().unwrap();
        rx.task_done().unwrap();
    }
    assert_eq!(
        tx.join_timeout(Duration::from_millis(50)),
        Err(shmkit::ring::JoinError::Timeout),
        "the victim holds its item, alive"
    );
    victim.0.as_mut().unwrap().kill().unwrap();
    let report = tx.join_timeout(CHILD_LIMIT).unwrap();
    assert_eq!(report.abandoned, 1);
    // The dead consumer's entry is reused; the item stays counted.
    drop(victim);
    let _again = ring.consumer().unwrap();
    assert_eq!(tx.join().unwrap().abandoned, 1);
}

/// A sole consumer in another process shuts every other consumer out while
/// it lives; killed -9 holding an item, it is taken over: the next consumer
/// (sole or not) gets every other item once, in order, and `join` reports
/// the one it held.
#[test]
fn a_killed_sole_consumer_is_taken_over() {
    let r = Cleanup::new("ringsolekill");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    for v in 0..5 {
        tx.push(v).unwrap();
    }
    let mut victim = spawn("sole_one_then_park", r.name(), "");
    let pid = victim.0.as_ref().unwrap().id();
    wait_until("the sole consumer to take one", CHILD_LIMIT, || {
        ring.len() == 4
    });
    match ring.consumer() {
        Err(Error::SoleConsumer { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("a consumer beside a live sole one: {other:?}"),
    }
    assert!(matches!(
        ring.sole_consumer(),
        Err(Error::SoleConsumer { .. })
    ));
    victim.0.as_mut().unwrap().kill().unwrap();
    // Reaped: a killed process stays alive to a liveness check (a zombie
    // with its start time) until its parent waits for it.
    victim.0.as_mut().unwrap().wait().unwrap();
    let mut rx = ring.sole_consumer().unwrap();
    for want in 1..5 {
        assert_eq!(rx.pop_timeout(CHILD_LIMIT), Ok(want));
        rx.task_done().unwrap();
    }
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    assert_eq!(tx.join_timeout(CHILD_LIMIT).unwrap().abandoned, 1);
}

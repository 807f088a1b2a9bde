//! Pipes and byte messages across real processes: boundary sizes, kill -9 of
//! either end, and whole messages to exactly one of several consumers.
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{CHILD_LIMIT, Cleanup, Reaper, child_command, child_role};
use shmkit::pipe::Pipe;
use shmkit::ring::message::{FRAME_DATA, Frame};
use shmkit::ring::{PopError, Ring, SendError};
use shmkit::{Ordering, SharedArray};

const ENTRY: &str = "child_entry";
const CAP: usize = 16;

/// The content of message `seq` of length `len`: checkable by the receiver.
fn body(seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + seq) as u8).collect();
    if len >= 8 {
        v[..8].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    match role.as_str() {
        // End B: echo every byte message back until the other end closes.
        "echo" => {
            let mut b = Pipe::open(&name).unwrap().end_b().unwrap();
            loop {
                match b.recv_bytes() {
                    Ok(m) => b.send_bytes(&m).unwrap(),
                    Err(PopError::Disconnected) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // End A that sends one message and waits to be killed.
        "send_then_park" => {
            let mut a = Pipe::open(&name).unwrap().end_a().unwrap();
            a.send(&7u32).unwrap();
            loop {
                std::thread::park();
            }
        }
        // End B: receive, then expect Disconnected within a second of the
        // sender's death (the parent kills it once we sleep).
        "recv_until_gone" => {
            let mut b = Pipe::open(&name).unwrap().end_b().unwrap();
            assert_eq!(b.recv_timeout::<u32>(CHILD_LIMIT), Ok(7));
            let start = Instant::now();
            assert_eq!(
                b.recv_timeout::<u32>(CHILD_LIMIT),
                Err(PopError::Disconnected)
            );
            // Generous against the parent's own delay before killing.
            assert!(start.elapsed() < Duration::from_secs(20));
        }
        // A consumer of byte messages on an SPMC ring.
        "bytes_consumer" => {
            let ring = Ring::<Frame>::open(&name).unwrap();
            let seen = SharedArray::<u8>::open(&std::env::var("SEEN").unwrap()).unwrap();
            let rx = ring.consumer().unwrap();
            loop {
                match rx.pop_bytes() {
                    Ok(m) => {
                        let len = m.len();
                        assert!(len >= 8, "message too short: {len}");
                        let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(m, body(seq, len), "message {seq} damaged");
                        seen[seq as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(PopError::Disconnected) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, name: &str, extra: &[(&str, &str)]) -> Reaper {
    let mut cmd = child_command(ENTRY, role);
    cmd.env("SHMKIT_NAME", name);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Reaper(Some(cmd.spawn().unwrap()))
}

/// A pipe name whose two segments are removed whatever happens (the
/// guards run on drop; the fields are never read).
struct PipeNames {
    _guards: [Cleanup; 2],
    base: String,
}

impl PipeNames {
    fn new(tag: &str) -> Self {
        let base = common::unique(tag);
        PipeNames {
            _guards: [
                Cleanup(format!("{base}.a2b")),
                Cleanup(format!("{base}.b2a")),
            ],
            base,
        }
    }
}

#[test]
fn boundary_sizes_round_trip_through_another_process() {
    let names = PipeNames::new("pipesizes");
    let pipe = Pipe::create(&names.base, CAP).unwrap();
    let mut a = pipe.end_a().unwrap();
    let echo = spawn("echo", &names.base, &[]);
    let max = a.max_message_len();
    assert_eq!(max, CAP * FRAME_DATA);
    for (i, len) in [
        0,
        1,
        FRAME_DATA,
        FRAME_DATA + 1,
        3 * FRAME_DATA,
        max - 1,
        max,
    ]
    .into_iter()
    .enumerate()
    {
        let msg = body(i as u64, len);
        a.send_bytes(&msg).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), msg, "length {len}");
    }
    // One byte over the maximum: refused whole, nothing sent.
    assert_eq!(
        a.send_bytes(&vec![1; max + 1]),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    // Values: any ShmType, the type checked by its identity (through the
    // child's echo, which copies the bytes).
    a.send(&[1.5f64, -2.0]).unwrap();
    assert_eq!(a.recv::<[f64; 2]>(), Ok([1.5, -2.0]));
    a.send(&9u32).unwrap();
    assert_eq!(
        a.recv::<u64>(),
        Err(PopError::WrongType {
            found: "a message of type u32".into(),
            expected: "u64 (8 bytes, align 8)".into(),
        })
    );
    a.send(&2.5f64).unwrap(); // same size, another type: not reinterpreted
    assert!(matches!(a.recv::<i64>(), Err(PopError::WrongType { .. })));
    a.send_bytes(b"plain").unwrap();
    assert_eq!(
        a.recv::<u64>().unwrap_err().to_string(),
        "received a byte message of 5 bytes where a value of type u64 (8 bytes, align 8) \
         was expected: both ends must send and receive the same type"
    );
    drop(a); // close: the echo child sees Disconnected and exits
    echo.wait_ok();
}

#[test]
fn killed_other_end_gives_disconnected() {
    // The child end dies while we wait to receive.
    let names = PipeNames::new("pipekill");
    let pipe = Pipe::create(&names.base, CAP).unwrap();
    let mut a = pipe.end_a().unwrap();
    let mut echo = spawn("echo", &names.base, &[]);
    a.send(&1u8).unwrap();
    assert_eq!(a.recv::<u8>(), Ok(1));
    // A timeout only so that a regression fails instead of hanging.
    let waiter = std::thread::spawn(move || (a.recv_timeout::<u8>(CHILD_LIMIT), Instant::now()));
    let killed = Instant::now();
    echo.0.as_mut().unwrap().kill().unwrap();
    let (r, at) = waiter.join().unwrap();
    assert_eq!(r, Err(PopError::Disconnected));
    assert!(at - killed < Duration::from_secs(1), "{:?}", at - killed);

    // The sending end dies while the other end (a child) waits.
    let names = PipeNames::new("pipekill2");
    let _pipe = Pipe::create(&names.base, CAP).unwrap();
    let receiver = spawn("recv_until_gone", &names.base, &[]);
    let mut sender = spawn("send_then_park", &names.base, &[]);
    let state = Ring::<Frame>::open(&format!("{}.a2b", names.base)).unwrap();
    // Kill only once the receiver has taken the message (so the sender held
    // the producer role; killed before claiming it, it would leave a ring
    // that never had a producer, on which a receiver rightly waits) and
    // sleeps again on the empty ring.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !{
        let st = state.state();
        st.head >= 1 && st.head == st.tail && st.consumers_sleeping > 0
    } {
        assert!(
            Instant::now() < deadline,
            "receiver never took the message and slept"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    sender.0.as_mut().unwrap().kill().unwrap();
    receiver.wait_ok();
}

#[test]
fn byte_messages_go_whole_to_exactly_one_consumer() {
    const N: usize = 20_000;
    let r = Cleanup::new("bytesring");
    let s = Cleanup::new("bytesseen");
    let ring = Ring::<Frame>::create(r.name(), 64).unwrap();
    let seen = SharedArray::<u8>::create(s.name(), N).unwrap();
    let mut tx = ring.producer().unwrap();
    let kids: Vec<Reaper> = (0..3)
        .map(|_| spawn("bytes_consumer", r.name(), &[("SEEN", s.name())]))
        .collect();
    for seq in 0..N as u64 {
        // Lengths from 8 to 8 + 500: one to ten frames.
        let len = 8 + (seq as usize * 37) % 501;
        tx.push_bytes_timeout(&body(seq, len), Duration::from_secs(30))
            .unwrap();
    }
    drop(tx);
    for k in kids {
        k.wait_ok();
    }
    let counts = seen.to_vec();
    assert!(
        counts.iter().all(|&c| c == 1),
        "a message was lost or duplicated"
    );
}

#[test]
fn corrupt_frames_are_errors() {
    use std::os::unix::fs::FileExt;
    let r = Cleanup::new("bytescorrupt");
    let ring = Ring::<Frame>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    tx.push_bytes(&[5u8; 100]).unwrap(); // 2 frames
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(r.path())
        .unwrap();
    // Body at 256; control block, then slots. Find slot 0: after the control
    // block, whose size the segment tells us indirectly: scan for the frame.
    let bytes = std::fs::read(r.path()).unwrap();
    let at = (256..bytes.len() - 8)
        .step_by(8)
        .find(|&i| bytes[i..i + 8] == [100, 0, 0, 0, 0, 0, 0, 0])
        .expect("frame 0 header");
    // Claim the message is 10,000 bytes: more frames than the ring holds.
    f.write_all_at(&10_000u32.to_le_bytes(), at as u64).unwrap();
    assert!(matches!(rx.try_pop_bytes(), Err(PopError::Corrupt(_))));
}

#[test]
fn send_with_a_timeout_and_without_waiting() {
    let names = PipeNames::new("pipesendtimeout");
    // Two frames each way: one 100-byte message fills a direction.
    let pipe = Pipe::create(&names.base, 2).unwrap();
    let mut a = pipe.end_a().unwrap();
    let mut b = pipe.end_b().unwrap();
    let wait = Duration::from_millis(100);

    a.try_send_bytes(&[1; 100]).unwrap();
    // Full: try_ never waits, _timeout waits about its timeout, and nothing
    // is sent by either.
    assert_eq!(a.try_send_bytes(b"x"), Err(SendError::Full));
    assert_eq!(a.try_send(&7u64), Err(SendError::Full));
    let t = Instant::now();
    assert_eq!(a.send_bytes_timeout(b"x", wait), Err(SendError::Timeout));
    assert_eq!(a.send_timeout(&7u64, wait), Err(SendError::Timeout));
    let took = t.elapsed();
    assert!(
        took >= 2 * wait && took < 2 * wait + CHILD_LIMIT,
        "{took:?}"
    );
    // Too large is refused at once, by every flavour.
    let big = vec![0; a.max_message_len() + 1];
    let too_large = Err(SendError::TooLarge {
        len: big.len(),
        max: a.max_message_len(),
    });
    assert_eq!(a.try_send_bytes(&big), too_large);
    assert_eq!(a.send_bytes_timeout(&big, wait), too_large);

    // Room again once the other end receives: both flavours send.
    assert_eq!(b.recv_bytes().unwrap(), [1; 100]);
    a.try_send(&7u64).unwrap();
    a.send_timeout(&8u64, wait).unwrap();
    assert_eq!(b.recv::<u64>(), Ok(7));
    assert_eq!(b.recv::<u64>(), Ok(8));

    // A sender waiting on a full pipe is woken by the receiver.
    a.send_bytes(&[2; 100]).unwrap();
    let receiver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let first = b.recv_bytes().unwrap();
        (first, b.recv_bytes().unwrap(), b)
    });
    a.send_bytes_timeout(&[3; 100], CHILD_LIMIT).unwrap();
    let (first, second, b) = receiver.join().unwrap();
    assert_eq!((first, second), (vec![2; 100], vec![3; 100]));

    // The other end gone: a full pipe gives Disconnected, not a timeout.
    a.send_bytes(&[4; 100]).unwrap();
    drop(b);
    let t = Instant::now();
    assert_eq!(
        a.send_bytes_timeout(b"x", CHILD_LIMIT),
        Err(SendError::Disconnected)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A waiting push writes what fits of a message while the ring is full
/// (`message::write_ahead`), but publishes only the whole message: a push
/// that times out has sent nothing, its frames written ahead are never
/// read, and one that waits delivers its message whole.
#[test]
fn a_waiting_push_writes_ahead_and_publishes_only_whole_messages() {
    let r = Cleanup::new("bytesahead");
    let ring = Ring::<Frame>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let four = body(1, 4 * FRAME_DATA); // 4 frames
    let six = body(2, 6 * FRAME_DATA); // 6 frames: 4 fit while `four` waits
    tx.push_bytes(&four).unwrap();
    let wait = Duration::from_millis(50);
    assert_eq!(tx.push_bytes_timeout(&six, wait), Err(SendError::Timeout));
    assert_eq!(
        ring.state().tail,
        4,
        "nothing of the timed-out push published"
    );
    assert_eq!(rx.pop_bytes().unwrap(), four);
    assert_eq!(rx.try_pop_bytes(), Err(PopError::Empty));
    // The same waiting push, with a consumer taking `four` meanwhile.
    tx.push_bytes(&four).unwrap();
    let taker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (rx.pop_bytes().unwrap(), rx.pop_bytes().unwrap())
    });
    tx.push_bytes_timeout(&six, CHILD_LIMIT).unwrap();
    assert_eq!(taker.join().unwrap(), (four, six));
}

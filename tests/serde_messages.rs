//! The `serde` feature: any `Serialize + Deserialize` type on a byte-message
//! ring and a pipe, its type name checked, too-large and undecodable
//! messages refused with errors a user can act on.
//! (`cargo test --workspace` enables the feature through shmkit-interop.)
#![cfg(feature = "serde")]

mod common;

use serde::{Deserialize, Serialize};
use shmkit::pipe::Pipe;
use shmkit::ring::message::Frame;
use shmkit::ring::{PopError, Ring, SendError};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Job {
    Resize { path: String, dims: Vec<u32> },
    Stop,
}

#[test]
fn values_round_trip_on_a_ring_and_a_pipe() {
    let ring = Ring::<Frame>::new_in_process(16).unwrap();
    let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let job = Job::Resize {
        path: "/tmp/a.png".into(),
        dims: vec![640, 480],
    };
    tx.push_serde_as("test.Job/1", &job).unwrap();
    tx.push_serde(&Job::Stop).unwrap();
    assert_eq!(rx.pop_serde_as::<Job>("test.Job/1"), Ok(job));
    assert_eq!(rx.pop_serde::<Job>(), Ok(Job::Stop));

    let c = common::Cleanup::new("serde-pipe");
    let pipe = Pipe::create(c.name(), 8).unwrap();
    let (mut a, mut b) = (pipe.end_a().unwrap(), pipe.end_b().unwrap());
    a.send_serde(&"hello".to_string()).unwrap();
    assert_eq!(b.recv_serde::<String>().unwrap(), "hello");
    drop((a, b, pipe));
    // The pipe's two rings are removed with the creating handle.
    for part in ["a2b", "b2a"] {
        let path = format!("/dev/shm/{}.{part}", c.name());
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }
}

#[test]
fn another_name_is_wrong_type_naming_both() {
    let ring = Ring::<Frame>::new_in_process(8).unwrap();
    let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.push_serde_as("test.Job/1", &Job::Stop).unwrap();
    let e = rx.pop_serde_as::<Job>("test.Job/2").unwrap_err();
    assert_eq!(
        e.to_string(),
        "received a message of type test.Job/1 where a value of type test.Job/2 (serialised) \
         was expected: both ends must send and receive the same type"
    );
    // A Pod value is not a serialised one either.
    tx.push_value(&7u64).unwrap();
    assert!(matches!(
        rx.pop_serde::<u64>(),
        Err(PopError::WrongType { .. })
    ));
}

#[test]
fn a_value_that_does_not_decode_is_a_decode_error() {
    let ring = Ring::<Frame>::new_in_process(8).unwrap();
    let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    // Same name, another shape: a string where a Job is expected.
    tx.push_serde_as("test.Job/1", &"not a job").unwrap();
    let e = rx.pop_serde_as::<Job>("test.Job/1").unwrap_err();
    assert!(matches!(e, PopError::Decode(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("a message of the expected type did not decode: test.Job/1: "),
        "{msg}"
    );
    assert!(
        msg.ends_with("(are both ends built from the same definition of the type?)"),
        "{msg}"
    );
    // A u8 followed by more bytes: refused, not half-read.
    tx.push_serde_as("test.Pair/1", &(1u8, 2u8)).unwrap();
    let e = rx.pop_serde_as::<u8>("test.Pair/1").unwrap_err();
    assert_eq!(
        e,
        PopError::Decode("test.Pair/1: 1 bytes left over after the value".into())
    );
}

#[test]
fn a_value_too_large_for_the_ring_is_refused_whole() {
    let ring = Ring::<Frame>::new_in_process(2).unwrap(); // 112 bytes at most
    let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let big = vec![1u8; 200];
    let e = tx.push_serde_as("test.Blob/1", &big).unwrap_err();
    // 8-byte tag + 1 + 11-byte name + 2-byte varint length + 200 bytes.
    assert_eq!(e, SendError::TooLarge { len: 222, max: 112 });
    assert_eq!(
        e.to_string(),
        "a message of 222 bytes is longer than the ring can hold (112 bytes): create it \
         with a larger capacity, or send less at once"
    );
    assert_eq!(rx.try_pop_bytes(), Err(PopError::Empty), "nothing was sent");
}

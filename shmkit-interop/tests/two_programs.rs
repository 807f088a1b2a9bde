//! Two programs built separately share a segment through a record's
//! explicit identity: this test binary creates a ring of `acme.Tick/1`,
//! and `shmkit-interop-peer` (another binary, declaring the record in its
//! own module) opens it. With the same layout it reads the tick; with two
//! fields swapped it gets an error naming both sides.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::Cleanup;
use shmkit::{Ring, ShmType};

/// This program's declaration of the record (the peer has its own).
mod ticks {
    shmkit::record! {
        #[name = "acme.Tick/1"]
        #[derive(Debug, PartialEq)]
        pub struct Tick { pub px: f64, pub qty: u32, pub side: u8, pub _pad: [u8; 3] }
    }
}
use ticks::Tick;

/// Run the peer in `mode` on segment `name`: its exit code and stdout.
fn peer(mode: &str, name: &str) -> (Option<i32>, String) {
    // Every wait in the peer is bounded (an open fails at once, a pop
    // times out after 10 s), so `output` returns.
    let out = Command::new(env!("CARGO_BIN_EXE_shmkit-interop-peer"))
        .args([mode, name])
        .output()
        .expect("run the peer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn the_same_identity_opens_in_another_program() {
    let c = Cleanup::new("interop-same");
    let ring = Ring::<Tick>::create(c.name(), 4).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.push(Tick {
        px: 101.25,
        qty: 300,
        side: 1,
        _pad: [0; 3],
    })
    .unwrap();
    assert_eq!(
        peer("same", c.name()),
        (Some(0), "px=101.25 qty=300 side=1".to_owned())
    );
    assert!(ring.is_empty(), "the peer took the tick");
}

#[test]
fn another_layout_is_refused_naming_both_sides() {
    let c = Cleanup::new("interop-stale");
    let _ring = Ring::<Tick>::create(c.name(), 4).unwrap();
    let (code, msg) = peer("reordered", c.name());
    assert_eq!(code, Some(3), "{msg}");
    let fp = Tick::TYPE.fingerprint();
    let expect_start = format!(
        "segment {:?} holds elements of type acme.Tick/1 (16 bytes, align 8), layout {fp:016x}; \
         they were asked for as acme.Tick/1 (16 bytes, align 8): {{ px: f64 @0, side: u8 @8, \
         _pad: [u8; 3] @9, qty: u32 @12 }}, layout ",
        c.name()
    );
    assert!(msg.starts_with(&expect_start), "{msg}");
    assert!(
        msg.ends_with("the same name with another layout: a field was added, removed, reordered, renamed or retyped in one program. Build every program from the same definition, and give a changed layout a new name (a new version suffix, say /2)"),
        "{msg}"
    );
}

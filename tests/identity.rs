//! Element type identity (`shmkit::ShmType`, `shmkit::record!`): what an
//! opener sees when the segment holds another name or another layout, word
//! for word as a user reads it. (Two separately built programs sharing a
//! record: `shmkit-interop/`.)

mod common;

use common::Cleanup;
use shmkit::{Error, Ring, ShmType};

mod v1 {
    shmkit::record! {
        #[name = "acme.Tick/1"]
        #[derive(Debug, PartialEq)]
        pub struct Tick { pub px: f64, pub qty: u32, pub side: u8, pub _pad: [u8; 3] }
    }
}

mod moved {
    // The same record declared in another module: the same identity.
    shmkit::record! {
        #[name = "acme.Tick/1"]
        #[derive(Debug, PartialEq)]
        pub struct Tick { pub px: f64, pub qty: u32, pub side: u8, pub _pad: [u8; 3] }
    }
    // The same name, two fields swapped.
    shmkit::record! {
        #[name = "acme.Tick/1"]
        pub struct Reordered { pub px: f64, pub side: u8, pub _pad: [u8; 3], pub qty: u32 }
    }
    // The same layout under a new name.
    shmkit::record! {
        #[name = "acme.Tick/2"]
        pub struct Renamed { pub px: f64, pub qty: u32, pub side: u8, pub _pad: [u8; 3] }
    }
}

fn open_err<T: ShmType>(name: &str) -> Error {
    Ring::<T>::open(name).err().expect("the open must fail")
}

#[test]
fn the_same_record_in_another_module_opens() {
    let c = Cleanup::new("ident-same");
    let ring = Ring::<v1::Tick>::create(c.name(), 4).unwrap();
    let mut tx = ring.producer().unwrap();
    let t = v1::Tick {
        px: 1.5,
        qty: 7,
        side: 1,
        _pad: [0; 3],
    };
    tx.push(t).unwrap();
    let rx = Ring::<moved::Tick>::open(c.name())
        .unwrap()
        .consumer()
        .unwrap();
    let got = rx.pop().unwrap();
    assert_eq!((got.px, got.qty, got.side), (1.5, 7, 1));
    assert_eq!(ring.segment().unwrap().info().elem.name(), "acme.Tick/1");
}

#[test]
fn a_changed_layout_names_both_sides() {
    let c = Cleanup::new("ident-layout");
    let _ring = Ring::<v1::Tick>::create(c.name(), 4).unwrap();
    let e = open_err::<moved::Reordered>(c.name());
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    let fp = v1::Tick::TYPE.fingerprint();
    let fp2 = moved::Reordered::TYPE.fingerprint();
    assert_eq!(
        e.to_string(),
        format!(
            "segment {:?} holds elements of type acme.Tick/1 (16 bytes, align 8), layout \
             {fp:016x}; they were asked for as acme.Tick/1 (16 bytes, align 8): {{ px: f64 @0, \
             side: u8 @8, _pad: [u8; 3] @9, qty: u32 @12 }}, layout {fp2:016x}: the same name \
             with another layout: a field was added, removed, reordered, renamed or retyped \
             in one program. Build every program from the same definition, and give a \
             changed layout a new name (a new version suffix, say /2)",
            c.name()
        )
    );
}

#[test]
fn a_new_name_for_the_same_layout_is_refused_and_said_so() {
    let c = Cleanup::new("ident-name");
    let _ring = Ring::<v1::Tick>::create(c.name(), 4).unwrap();
    let e = open_err::<moved::Renamed>(c.name()).to_string();
    assert!(e.contains("holds elements of type acme.Tick/1 ("), "{e}");
    assert!(e.contains("asked for as acme.Tick/2 ("), "{e}");
    assert!(e.ends_with("the same layout under another name: if they are the same type, give both programs the same #[name]"), "{e}");
}

#[test]
fn scalars_are_told_apart_by_name() {
    let c = Cleanup::new("ident-scalar");
    let _ring = Ring::<u64>::create(c.name(), 4).unwrap();
    let e = open_err::<i64>(c.name()).to_string();
    assert!(
        e.contains("holds elements of type u64 (8 bytes, align 8), layout "),
        "{e}"
    );
    assert!(
        e.contains("asked for as i64 (8 bytes, align 8), layout "),
        "{e}"
    );
    let e = open_err::<[u16; 4]>(c.name()).to_string();
    assert!(
        e.contains("asked for as [u16; 4] (8 bytes, align 2)"),
        "{e}"
    );
    assert!(
        e.ends_with("open it with the element type it was created with"),
        "{e}"
    );
}

#[test]
fn a_typed_message_of_another_layout_is_refused_not_reinterpreted() {
    use shmkit::pipe::Pipe;
    use shmkit::ring::PopError;
    let pipe = Pipe::create_anonymous(4).unwrap();
    let (mut a, mut b) = (pipe.end_a().unwrap(), pipe.end_b().unwrap());
    a.send(&v1::Tick {
        px: 1.0,
        qty: 2,
        side: 3,
        _pad: [0; 3],
    })
    .unwrap();
    assert_eq!(
        b.recv::<moved::Reordered>().err(),
        Some(PopError::WrongType {
            found: "a message of type acme.Tick/1 with another layout".into(),
            expected: "acme.Tick/1 (16 bytes, align 8): { px: f64 @0, side: u8 @8, \
                       _pad: [u8; 3] @9, qty: u32 @12 }"
                .into(),
        })
    );
    a.send(&v1::Tick {
        px: 1.0,
        qty: 2,
        side: 3,
        _pad: [0; 3],
    })
    .unwrap();
    let t = b.recv::<moved::Tick>().unwrap(); // the same record, declared elsewhere
    assert_eq!((t.px, t.qty, t.side), (1.0, 2, 3));
}

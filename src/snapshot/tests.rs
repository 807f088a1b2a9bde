//! Unit tests of the shared cell (threads as processes); across processes:
//! tests/snapshot_mp.rs; damaged segments: tests/snapshot_corrupt.rs;
//! models: loom_tests/snapshot.rs.

use super::*;

crate::record! {
    #[name = "test.Rec/1"]
    #[derive(Debug, PartialEq)]
    struct Rec { a: u64, b: u32, c: u16, d: u16 }
}

#[test]
fn stores_rotate_buffers_and_publish_versions() {
    let c = SharedCell::new_in_process(Rec {
        a: 1,
        b: 2,
        c: 3,
        d: 4,
    })
    .unwrap();
    assert_eq!(c.version().unwrap(), 0);
    assert_eq!(
        c.load().unwrap(),
        Rec {
            a: 1,
            b: 2,
            c: 3,
            d: 4
        }
    );
    // Past N stores: every buffer reused at least twice.
    for i in 1..=20u64 {
        let r = Rec {
            a: i,
            b: i as u32,
            c: i as u16,
            d: i as u16,
        };
        assert_eq!(c.store(&r).unwrap(), i);
        assert_eq!(c.load_versioned().unwrap(), (i, r));
        assert_eq!(
            c.stamp((i % c.buffers()) as usize).load(Ordering::Relaxed),
            i
        );
    }
    assert_eq!(
        c.update(|r| {
            r.a += 10;
            r.a
        })
        .unwrap(),
        30
    );
    assert_eq!(c.load().unwrap().a, 30);
    assert_eq!(c.version().unwrap(), 21);
    assert_eq!(c.takeovers(), 0);
}

#[test]
fn a_half_written_buffer_is_not_read() {
    let c = SharedCell::new_in_process(7u64).unwrap();
    c.store(&8).unwrap(); // version 1, buffer 1
    // A writer of version 2 died filling buffer 2 % N.
    let b = (2 % c.buffers()) as usize;
    c.stamp(b).store(BUSY | 2, Ordering::Relaxed);
    c.buf(b)[0].store(999, Ordering::Relaxed);
    assert_eq!(c.load().unwrap(), 8);
    assert_eq!(c.store(&9).unwrap(), 2);
    assert_eq!(c.load().unwrap(), 9);
}

#[test]
fn garbage_is_corrupt_not_a_hang() {
    let c = SharedCell::new_in_process(1u32).unwrap();
    c.version_word().store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(c.load(), Err(Error::Corrupt { .. })));
    assert!(matches!(c.version(), Err(Error::Corrupt { .. })));
    assert!(matches!(c.store(&2), Err(Error::Corrupt { .. })));
    c.version_word().store(MAX_VERSION, Ordering::Relaxed);
    let e = c.store(&2).unwrap_err().to_string();
    assert!(e.contains("cannot grow"), "{e}");
    c.version_word().store(4, Ordering::Relaxed);
    // Buffer 0's stamp is 0, not 4: torn every time, then corrupt
    // under the lock.
    let e = c.load().unwrap_err().to_string();
    assert!(e.contains("stamped 0x0, not its version 4"), "{e}");
    // A store repairs it (writes buffer 1, publishes 5).
    assert_eq!(c.store(&3).unwrap(), 5);
    assert_eq!(c.load().unwrap(), 3);
}

#[test]
fn zero_sized_records_are_refused() {
    assert!(matches!(check::<()>(), Err(Error::InvalidArgument { .. })));
}

#[test]
fn body_sizes() {
    let mut h = HeaderInfo {
        kind_raw: Kind::Cell as u32,
        elem: ElemDesc::of::<u64>(),
        len: 1,
        data_offset: 256,
        total_size: 0,
        creator: 0,
        created_unix_ms: 0,
    };
    // The lock, the control line, 8 buffers of a stamp and a u64 (a
    // 128-byte pair of lines each).
    assert_eq!(cell_body(&h), Some(128 + 128 + 8 * 128));
    h.elem = ElemDesc::of::<[u64; 8]>(); // stamp + 64 bytes: two lines
    assert_eq!(cell_body(&h), Some(128 + 128 + 8 * 128));
    h.elem = ElemDesc::of::<[u8; 4096]>(); // 4 KiB: still 8 buffers
    assert_eq!(cell_body(&h), Some(128 + 128 + 8 * 4224));
    h.elem = ElemDesc::of::<[u8; 4097]>(); // past 4 KiB: 4 buffers
    assert_eq!(cell_body(&h), Some(128 + 128 + 4 * 4224));
    h.len = 2;
    assert_eq!(cell_body(&h), None);
}

#[test]
fn a_segment_cell_of_a_large_record_has_four_buffers() {
    // 8 KiB: past 4 KiB, so 4 buffers; a memfd segment, stored past a wrap.
    let c = SharedCell::<[u64; 1024]>::create_anonymous([7; 1024]).unwrap();
    assert_eq!(c.buffers(), 4);
    for i in 1..=9u64 {
        assert_eq!(c.store(&[i; 1024]).unwrap(), i);
    }
    assert_eq!(c.load_versioned().unwrap(), (9, [9; 1024]));
    let body = c.segment().unwrap().info().total_size - c.segment().unwrap().info().data_offset;
    assert!(body >= 128 + 128 + 4 * (1024 * 8 + 64));
}

//! loom models of the typed atomic cells (`src/cell.rs`), run on the
//! production code: processes are modelled as threads.
#![cfg(shmkit_loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::{Atomic, Ordering};

/// Three writers add to one integer cell: the sum is exact.
#[test]
fn integer_fetch_add_sum_is_exact() {
    loom::model(|| {
        let cell = Arc::new(Atomic::<u64>::new(0));
        let handles: Vec<_> = (1..=3u64)
            .map(|k| {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.fetch_add(k, Ordering::Relaxed);
                    cell.fetch_add(10 * k, Ordering::Relaxed);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cell.load(Ordering::Relaxed), 66);
    });
}

/// Three writers add floats that are exact in binary with the CAS loop: no
/// update is lost, whatever the interleaving.
#[test]
fn float_fetch_add_sum_is_exact() {
    loom::model(|| {
        let cell = Arc::new(Atomic::<f64>::new(0.5));
        let handles: Vec<_> = [0.25f64, 1.5, 8.0]
            .into_iter()
            .map(|v| {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.fetch_add(v, Ordering::AcqRel);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cell.load(Ordering::Relaxed), 10.25);
    });
}

/// A float max and an add race: the result is one of the two serial orders.
#[test]
fn float_max_and_add_linearize() {
    loom::model(|| {
        let cell = Arc::new(Atomic::<f32>::new(1.0));
        let c2 = cell.clone();
        let t = thread::spawn(move || {
            c2.fetch_max(4.0, Ordering::AcqRel);
        });
        cell.fetch_add(2.0, Ordering::AcqRel);
        t.join().unwrap();
        let v = cell.load(Ordering::Relaxed);
        // max then add: 6.0; add then max: max(3, 4) = 4.0.
        assert!(v == 6.0 || v == 4.0, "{v}");
    });
}

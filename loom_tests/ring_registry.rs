//! loom models of the ring's registries (`src/ring/registry.rs`), on the
//! production code: a producer claiming the role while its holder closes
//! and gives it back, a consumer registering in the entry another left
//! after losing a claim, and a join racing a registration that folds a
//! dead consumer's entry. Processes are threads (`become_process` gives each
//! its own liveness token); loom_tests/ring.rs has the data-path models and
//! loom_tests/ring_death.rs the killed processes.
//!
//! Each model is small and asserts something a weakened ordering breaks:
//! loom_tests/MUTATIONS.md names, for each, the mutant it kills. CI runs
//! them at preemption bound 3 (.ci/run).
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::drain;
use loom::sync::Arc;
use loom::thread;
use shmkit::Error;
use shmkit::ring::{JoinError, PopError, Ring};
use shmkit::sync::liveness::model::{become_process, kill};
use shmkit::{Atomic, Ordering};

/// The producer (the main thread) pushes 1 and drops its handle (close,
/// then `release_producer`), while process 3 tries to claim the role. A
/// claimer that checked `closed` before the close and won the role after
/// the release gets it (it raced the close), so it may push 2. Either way
/// 1 is never lost: a claimer that takes the role from `release_producer`
/// starts at the tail the first producer left, never over its item.
///
/// Kills: `claim_producer`'s CAS without its Acquire, or
/// `release_producer`'s CAS without its Release (the claimer reads the
/// role given back without synchronizing, then a stale tail 0, and
/// overwrites 1 with 2).
#[test]
fn a_producer_claiming_while_the_holder_closes_keeps_its_items() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let rx = ring.consumer().unwrap();
        let mut tx = ring.producer().unwrap();
        let r = ring.clone();
        let claimer = thread::spawn(move || {
            become_process(3);
            match r.producer() {
                Ok(mut tx) => {
                    tx.push(2).unwrap();
                    true // dropped: closes again and gives the role back
                }
                Err(Error::Closed { .. } | Error::ProducerExists { .. }) => false,
                Err(e) => panic!("{e}"),
            }
        });
        tx.push(1).unwrap();
        drop(tx); // closes, then gives the role back
        let pushed_2 = claimer.join().unwrap();
        let got = drain(|| rx.pop());
        let want: &[u64] = if pushed_2 { &[1, 2] } else { &[1] };
        assert_eq!(got, want);
    });
}

/// One item, two consumers W and L (threads) race to take it, so that L
/// may lose its claim (it announced the item in its entry's `held`, and
/// takes the announcement back); L then leaves and says so through a flag
/// that orders nothing (Relaxed), and N (the main thread) registers once
/// W is gone too, in L's entry if it sees it free (the first free entry). Whichever of W, L
/// took the item leaves holding it, so at most one item is ever abandoned:
/// N, folding the entry it takes over, must see L's announcement taken
/// back, not count it again. Checked while N holds its entry (its own fold
/// when it leaves would wrap a double count back): with a second item
/// pushed and never taken, `join` must not find both items done or
/// abandoned.
///
/// (N waits on the flag instead of racing L for the entry, as in the
/// queue's model of the same race: loom_tests/queue_registry.rs.)
///
/// Kills: `unregister_consumer`'s Release clear of the token made Relaxed
/// (after a lost claim no wake-up fence stands between L's last write to
/// `held` and its leave, so only that Release orders them for N).
#[test]
fn a_consumer_registers_where_another_left_after_losing_a_claim() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        let l = ring.consumer().unwrap();
        let w = ring.consumer().unwrap();
        let left = Arc::new(Atomic::<u64>::new(0));
        let flag = left.clone();
        let lt = thread::spawn(move || {
            let got = match l.try_pop() {
                Ok(v) => v == 1,
                Err(PopError::Empty) => false,
                Err(e) => panic!("{e}"),
            };
            drop(l);
            // Relaxed: a signal to the model's N only, ordering nothing.
            flag.store(1, Ordering::Relaxed);
            got
        });
        let wt = thread::spawn(move || w.try_pop().is_ok());
        while left.load(Ordering::Relaxed) == 0 {
            thread::yield_now();
        }
        // W done (and gone, folding the item if it took it) before item 2
        // is pushed, so that nobody takes item 2.
        let w_got = wt.join().unwrap();
        let n = ring.consumer().unwrap();
        // Never taken: at most item 1 is abandoned, so item 2 keeps the
        // join from being over.
        tx.push(2).unwrap();
        match tx.join_timeout(Duration::ZERO) {
            Err(JoinError::Timeout) => {}
            other => panic!("join over with item 2 never taken: {other:?}"),
        }
        drop(n);
        let l_got = lt.join().unwrap();
        assert!(w_got != l_got, "the item went to exactly one of W, L");
        drop(tx);
    });
}

/// Two items: D (the main thread) registers and takes nothing; V (process
/// 2) takes item 1 and dies holding it. C (process 3) registers, which
/// reuses V's entry (the first one not held by a live process) and folds
/// V's held item into `abandoned`, then takes item 2, records its "work"
/// and marks it done, while the main thread joins. The join returns only
/// after C's task_done, with C's work visible, and reports one item
/// abandoned: V's, counted once (still in V's entry or folded, never
/// both).
///
/// Kills: `fold_held`'s Release add to `abandoned`, or `abandoned_count`'s
/// Acquire load of it, made Relaxed (the joiner sees the folded total and
/// still V's dead token in the entry, counts the item twice, and returns
/// before C's work). The queue's model of the same race:
/// `join_counts_a_dead_consumers_item_once_while_its_entry_is_reused`.
#[test]
fn join_counts_a_dead_consumers_item_once_while_its_entry_is_reused() {
    loom::model(|| {
        let ring = Ring::<u64>::new_in_process(2).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        let _d = ring.consumer().unwrap();
        become_process(2);
        let v = ring.consumer().unwrap();
        assert_eq!(v.try_pop(), Ok(1));
        kill(2);
        drop(v); // dead: its entry stays, holding 1
        become_process(1);
        let work = Arc::new(Atomic::<u64>::new(0));
        let (r, w) = (ring.clone(), work.clone());
        let c = thread::spawn(move || {
            become_process(3);
            let rx = r.consumer().unwrap();
            let v = rx.try_pop().unwrap();
            // Relaxed on purpose: only join's ordering may publish it.
            w.store(v, Ordering::Relaxed);
            rx.task_done().unwrap();
        });
        let report = tx.join().expect("join returns");
        assert_eq!(report.abandoned, 1, "{report:?}");
        assert_eq!(work.load(Ordering::Relaxed), 2, "join before the work");
        c.join().unwrap();
        drop(tx);
    });
}

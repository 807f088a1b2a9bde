//! loom models of the multi-producer queue's registries (`src/queue/mem.rs`),
//! on the production code: producers and consumers that attach while
//! another waits, a producer taking over the lane another left, a consumer
//! registering in the entry another left (or died in) holding an item, and
//! joins racing those. Processes are threads (`become_process` gives each
//! its own liveness token); loom_tests/queue.rs has the data-path models.
//!
//! Each model is small (one or two threads beside the main one) and asserts
//! something a weakened ordering breaks: loom_tests/MUTATIONS.md names, for
//! each, the mutant it kills. CI runs them at preemption bound 2 (.ci/run).
#![cfg(shmkit_loom)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use common::drain;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmkit::Error;
use shmkit::queue::{JoinError, PopError, Queue, QueueOptions};
use shmkit::sync::liveness::model::{become_process, kill};

/// An item whose two words must agree: a torn copy shows.
type Item = [u64; 2];

fn item(v: u64) -> Item {
    [v, !v]
}

fn value(got: Item) -> u64 {
    assert_eq!(got[1], !got[0], "torn item {got:?}");
    got[0]
}

fn opts(cap: usize, p: usize, c: usize) -> QueueOptions {
    QueueOptions::new(cap, p, c).disconnect_when_producers_gone(true)
}

/// One lane of capacity 1, one consumer entry: a producer attaches (claims
/// the lane) and pushes 1, 2 while the consumer registers and drains. The
/// consumer gets both, in order: it never takes the producer for gone
/// while it still holds the lane (it counted the producer, so it must see
/// its claim); and the producer, blocked on the full lane, never takes the
/// consumer for gone (it counted the consumer, so it must see its entry).
///
/// Kills: `producers_seen`'s Release increment (`try_claim_lane`) or its
/// Acquire load (`producers_gone`) made Relaxed, and the same pair for
/// `consumers_seen` (`register_consumer`, `consumers_gone`).
#[test]
fn a_producer_and_a_consumer_attach_while_the_other_waits() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(1, 1, 1)).unwrap();
        let qp = q.clone();
        let p = thread::spawn(move || {
            let mut tx = qp.producer().unwrap();
            tx.push(item(1)).unwrap();
            tx.push(item(2)).unwrap();
        });
        let rx = q.consumer().unwrap();
        let got: Vec<u64> = drain(|| rx.pop()).into_iter().map(value).collect();
        p.join().unwrap();
        assert_eq!(got, [1, 2]);
    });
}

/// Try to attach a producer to `q` as process `pid`; if it got the lane,
/// push `items` and leave (the lane is free again, its items stay).
/// Whether it got the lane.
fn producer_if_free(q: Queue<Item>, pid: u32, items: [u64; 2]) -> bool {
    become_process(pid);
    match q.producer() {
        Ok(mut tx) => {
            for v in items {
                tx.push(item(v)).unwrap();
            }
            true
        }
        Err(Error::TooManyProducers { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

/// One lane (a producer limit of 1, so a second producer can only take the
/// lane over), capacity 4: two producers (processes 2 and 3) each try to
/// attach, push two items and leave, while the consumer takes one item;
/// the one that comes second finds the lane free again only if the first
/// left. The consumer then drains the rest. Every item pushed arrives once,
/// the first producer's before the second's: the new owner starts at the
/// tail the first left, never over its items (which the consumer sees).
///
/// Kills: the owner CAS in `try_claim_lane` without its Acquire (the new
/// owner reads a stale tail and overwrites the first producer's items).
#[test]
fn a_producer_takes_over_the_lane_another_left() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(4, 1, 1)).unwrap();
        let rx = q.consumer().unwrap();
        let (qa, qb) = (q.clone(), q.clone());
        let a = thread::spawn(move || producer_if_free(qa, 2, [1, 2]));
        let b = thread::spawn(move || producer_if_free(qb, 3, [11, 12]));
        let early = match rx.try_pop() {
            Ok(v) => Some(value(v)),
            Err(PopError::Empty) => None,
            Err(e) => panic!("{e}"),
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let mut got: Vec<u64> = early.into_iter().collect();
        got.extend(drain(|| rx.pop()).into_iter().map(value));
        let (mine_a, mine_b) = (
            if a { vec![1, 2] } else { vec![] },
            if b { vec![11, 12] } else { vec![] },
        );
        let a_then_b: Vec<u64> = mine_a.iter().chain(&mine_b).copied().collect();
        let b_then_a: Vec<u64> = mine_b.iter().chain(&mine_a).copied().collect();
        assert!(a || b, "the lane was free: one producer gets it");
        assert!(got == a_then_b || got == b_then_a, "{got:?} (a {a}, b {b})");
    });
}

/// Try to register a consumer of `q` as process `pid`; if it got the entry,
/// take one item if `take` and leave without marking it done. Whether it
/// got the entry.
fn consumer_if_free(q: Queue<Item>, pid: u32, take: bool) -> bool {
    become_process(pid);
    match q.consumer() {
        Ok(rx) => {
            if take {
                rx.try_pop().unwrap();
            }
            true
        }
        Err(Error::TooManyConsumers { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

/// One consumer entry, two items pushed: consumer X (process 2) takes an
/// item and leaves without marking it done (its leave folds the item into
/// `abandoned`), consumer Y (process 3) registers and leaves holding
/// nothing; the second gets the entry only if the first left. The item is
/// counted abandoned exactly once: Y's registration, folding the entry it
/// takes over, must see X's fold (held back to 0), not fold it again. So
/// `join` (no consumer left, one item never taken) says Disconnected,
/// never that everything is done or abandoned.
///
/// Kills: `register_consumer`'s CAS without its Acquire (Y reads X's held
/// count from before X's fold and counts the item twice).
#[test]
fn a_consumer_registers_where_another_left_holding_an_item() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(2, 1, 1)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(item(1)).unwrap();
        tx.push(item(2)).unwrap();
        let (qx, qy) = (q.clone(), q.clone());
        let x = thread::spawn(move || consumer_if_free(qx, 2, true));
        let y = thread::spawn(move || consumer_if_free(qy, 3, false));
        let (x, y) = (x.join().unwrap(), y.join().unwrap());
        assert!(x || y, "the entry was free: one consumer gets it");
        let s = q.state();
        assert_eq!(s.abandoned, u64::from(x), "{s:?}");
        assert!(matches!(q.join(), Err(JoinError::Disconnected)));
    });
}

/// Two consumer entries, two items pushed: D (the main thread) registers
/// and takes nothing; V (process 2) takes item 1 and dies holding it. C (process 3) registers, which reuses V's entry and folds
/// V's held item into `abandoned`, then takes item 2, records its "work"
/// and marks it done, while the main thread joins. The join reports exactly
/// one item abandoned (V's, counted once: either still in V's entry or
/// folded, never both) and returns only after C's task_done, with C's work
/// visible.
///
/// Kills: `fold_held`'s Release add to `abandoned`, or `abandoned_count`'s
/// Acquire load of it, made Relaxed (the joiner sees the folded total and
/// still V's entry, and counts the item twice: it returns early).
#[test]
fn join_counts_a_dead_consumers_item_once_while_its_entry_is_reused() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(2, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(item(1)).unwrap();
        tx.push(item(2)).unwrap();
        let _d = q.consumer().unwrap();
        become_process(2);
        let v = q.consumer().unwrap();
        assert_eq!(value(v.try_pop().unwrap()), 1);
        kill(2);
        drop(v); // dead: its entry stays, holding 1
        become_process(1);
        let work = Arc::new(AtomicU64::new(0));
        let (qc, w) = (q.clone(), work.clone());
        let c = thread::spawn(move || {
            become_process(3);
            let rx = qc.consumer().unwrap();
            let v = value(rx.try_pop().unwrap());
            w.store(v, Ordering::Relaxed);
            rx.task_done().unwrap();
        });
        let report = q.join().expect("join returns");
        assert_eq!(report.abandoned, 1, "{report:?}");
        assert_eq!(work.load(Ordering::Relaxed), 2, "join before the work");
        c.join().unwrap();
        assert_eq!(q.state().abandoned, 1);
        drop(tx);
    });
}

/// One item: a consumer (registered before) takes it, records its "work",
/// marks it done and leaves, while the main thread joins. The join returns
/// Ok with nothing abandoned (never Disconnected: a joiner that sees the
/// consumer gone must also see its task_done), and the work is visible.
///
/// Kills: `consumers_gone`'s Acquire load of an entry's token made Relaxed
/// (the joiner sees the entry cleared but a stale `done`, and says
/// Disconnected).
#[test]
fn join_sees_the_work_of_a_consumer_that_left() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(2, 1, 1)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(item(1)).unwrap();
        let rx = q.consumer().unwrap();
        let work = Arc::new(AtomicU64::new(0));
        let w = work.clone();
        let c = thread::spawn(move || {
            let v = value(rx.try_pop().unwrap());
            w.store(v, Ordering::Relaxed);
            rx.task_done().unwrap();
        });
        let report = q.join().expect("join returns Ok: the item was done");
        assert_eq!(report.abandoned, 0);
        assert_eq!(work.load(Ordering::Relaxed), 1, "join before the work");
        c.join().unwrap();
        drop(tx);
    });
}

/// One item, one lane, two consumer entries: W and L (threads) race to
/// take the item, so that L may lose its claim (it announced the item in
/// its entry's `held`, and takes the announcement back); L then leaves and
/// says so through a flag that orders nothing (Relaxed), and N (the main
/// thread) registers in L's entry. Whichever took the item left holding
/// it, so exactly one item is abandoned: N, folding the entry it takes
/// over, must see L's announcement taken back, not count it again.
///
/// (N waits on the flag instead of racing L for the entry: the same race,
/// but loom, at preemption bound 2, did not schedule N's registration after
/// a lost claim of L's when N was a third racing thread.)
///
/// Kills: `unregister_consumer`'s Release clear of the token made Relaxed
/// (after a lost claim no wake-up fence stands between L's last write to
/// `held` and its leave, so only that Release orders them for N).
#[test]
fn a_consumer_registers_where_another_left_after_losing_a_claim() {
    loom::model(|| {
        let q = Queue::<Item>::new_in_process(opts(1, 1, 2)).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(item(1)).unwrap();
        let l = q.consumer().unwrap();
        let w = q.consumer().unwrap();
        let left = Arc::new(AtomicU64::new(0));
        let flag = left.clone();
        let lt = thread::spawn(move || {
            let got = match l.try_pop() {
                Ok(v) => value(v) == 1,
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
        // The flag orders nothing, so N may still see L's token (or W's
        // in entry 1) and find no entry free: then it folds nothing.
        match q.consumer() {
            Ok(n) => {
                // Checked while N holds the entry: once N leaves, its own
                // fold of a wrapped count would wrap the totals back.
                let s = q.state();
                let held_ok = s.consumers.iter().all(|&(_, _, held)| held <= 1);
                assert!(s.abandoned <= 1 && held_ok, "counted twice: {s:?}");
                drop(n);
            }
            Err(Error::TooManyConsumers { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        let (l_got, w_got) = (lt.join().unwrap(), wt.join().unwrap());
        assert!(w_got != l_got, "the item went to exactly one of W, L");
        let s = q.state();
        // Whichever took it left holding it: one item abandoned, once.
        assert_eq!(s.abandoned, 1, "{s:?}");
        drop(tx);
    });
}

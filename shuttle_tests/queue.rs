//! shuttle models of the multi-producer queue (a module of
//! `shuttle_tests/models.rs`, whose helpers and schedule settings they use).

use super::*;

/// 3 producer processes, one sole consumer (`queue::SoleConsumer`), lanes
/// of 2, 4 items each (every lane wraps, producers block on full); the
/// consumer alternates single and batch pops and marks every item done.
/// Every item arrives exactly once, each producer's in order, and `join`
/// returns with nothing abandoned. Meanwhile a fourth process keeps trying
/// to attach a plain consumer: it is always refused while the sole one
/// lives.
///
/// Planted bug that fails it (tried): `claim_lane` moving the lane's head
/// by its sole store *before* copying the slot (the producer overwrites it
/// first: an item of a later lap, or one twice).
#[test]
fn queue_three_producers_one_sole_consumer() {
    const PER: u64 = 4;
    check("queue 3x1 sole, cap 2", 5000, || {
        let q =
            shmkit::queue::Queue::<u64>::new_in_process(shmkit::queue::QueueOptions::new(2, 3, 2))
                .unwrap();
        let mut rx = q.sole_consumer().unwrap();
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let mut tx = q.producer().unwrap();
                thread::spawn(move || {
                    become_process(2 + p as u32);
                    for i in 0..PER {
                        tx.push(p * 100 + i).unwrap();
                    }
                })
            })
            .collect();
        let q2 = q.clone();
        let intruder = thread::spawn(move || {
            become_process(9);
            q2.consumer().is_err()
        });
        let (mut got, mut buf) = (Vec::new(), [0u64; 2]);
        while got.len() < (3 * PER) as usize {
            let n = if got.len() % 2 == 0 {
                rx.pop_into(&mut buf).unwrap()
            } else {
                buf[0] = rx.pop().unwrap();
                1
            };
            got.extend_from_slice(&buf[..n]);
            for _ in 0..n {
                rx.task_done().unwrap();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert!(
            intruder.join().unwrap(),
            "a consumer attached beside the sole one"
        );
        for p in 0..3 {
            let mine: Vec<u64> = got.iter().copied().filter(|v| v / 100 == p).collect();
            assert_eq!(
                mine,
                (0..PER).map(|i| p * 100 + i).collect::<Vec<_>>(),
                "{got:?}"
            );
        }
        assert_eq!(q.join().unwrap().abandoned, 0);
    });
}

/// A queue item that shows a torn read: the value and its complement.
type Pair = [u64; 2];

/// The values of `got`, each checked whole.
fn whole(got: &[Pair]) -> Vec<u64> {
    got.iter()
        .map(|&[v, c]| {
            assert_eq!(c, !v, "torn item {v:#x}/{c:#x}");
            v
        })
        .collect()
}

/// Producer `p`'s items in `got` (its values are `p * 100 + i`).
fn of_producer(got: &[u64], p: u64) -> Vec<u64> {
    got.iter().copied().filter(|v| v / 100 == p).collect()
}

/// Three consumers of a queue, as processes 5, 6 and 7: consumer 0 pops one
/// item at a time, the others batches of up to 2; each marks every item
/// done and adds it to `work`. Each returns what it got, in order.
fn three_queue_consumers(
    q: &shmkit::queue::Queue<Pair>,
    work: &Arc<Atomic<u64>>,
) -> Vec<thread::JoinHandle<Vec<u64>>> {
    (0..3u32)
        .map(|c| {
            let q = q.clone();
            let work = work.clone();
            thread::spawn(move || {
                // Registered by the process that pops (its identity is
                // what the liveness checks see).
                become_process(5 + c);
                let rx = q.consumer().unwrap();
                let mut buf = [[0u64; 2]; 2];
                let got = drain(|| {
                    let got = if c == 0 {
                        rx.pop().map(|v| vec![v])
                    } else {
                        rx.pop_into(&mut buf).map(|n| buf[..n].to_vec())
                    }?;
                    for v in whole(&got) {
                        // Relaxed: only join's ordering may publish it.
                        work.fetch_add(v, Ordering::Relaxed);
                        rx.task_done().unwrap();
                    }
                    Ok(got)
                });
                whole(&got)
            })
        })
        .collect()
}

/// A queue for 3 producers and 3 consumers, lanes of 2, that disconnects
/// once every producer is gone.
fn queue_3x3() -> shmkit::queue::Queue<Pair> {
    let opts = shmkit::queue::QueueOptions::new(2, 3, 3).disconnect_when_producers_gone(true);
    shmkit::queue::Queue::new_in_process(opts).unwrap()
}

/// Join the consumers of [`three_queue_consumers`]: each saw each
/// producer's items in order; together nothing twice. Everything they got,
/// sorted.
fn every_item_once(consumers: Vec<thread::JoinHandle<Vec<u64>>>) -> Vec<u64> {
    let mut all = Vec::new();
    for c in consumers {
        let got = c.join().unwrap();
        for p in 0..3 {
            let mine = of_producer(&got, p);
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        }
        all.extend(got);
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, all.len(), "an item was delivered twice: {all:?}");
    all
}

/// 3 producers and 3 consumers of a queue whose lanes hold 2 items, each
/// producer pushing 4 (every lane wraps twice and its producer waits on
/// it full), with single and batch pops: the configuration loom cannot
/// explore (its 2x2 model takes over 8 minutes at bound 1). Every item
/// arrives exactly once and whole, each consumer sees each producer's items
/// in order, and `join` from an observer returns once everything is done,
/// with the work visible and nothing abandoned.
///
/// Planted bug that fails it (tried): `claim_lane` in
/// `src/queue/consumer.rs` moving the lane's head with a plain store
/// instead of its CAS (consumers take items twice, and `join` fails first:
/// "done 19 is past the 12 items pushed").
#[test]
fn queue_three_producers_three_consumers_exactly_once() {
    const PER: u64 = 4;
    check("queue 3x3, lanes of 2", 3000, || {
        let q = queue_3x3();
        let work = Arc::new(Atomic::<u64>::new(0));
        let consumers = three_queue_consumers(&q, &work);
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    become_process(2 + p as u32);
                    let mut tx = q.producer().unwrap();
                    for i in 0..PER {
                        let v = p * 100 + i;
                        tx.push([v, !v]).unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let report = q.join().unwrap();
        assert_eq!(report.abandoned, 0);
        let expected: u64 = (0..3)
            .flat_map(|p| (0..PER).map(move |i| p * 100 + i))
            .sum();
        assert_eq!(
            work.load(Ordering::Relaxed),
            expected,
            "join returned before the work was done"
        );
        let all = every_item_once(consumers);
        assert_eq!(all.len() as u64, 3 * PER, "lost: {all:?}");
    });
}

/// A producer killed at a step k (0..60 of its shared-memory operations,
/// in turn) while it and two others push 4 items each into lanes of 2, and
/// three consumers drain the queue (it disconnects once every producer is
/// gone: the dead one too, learnt through liveness). Nothing twice, nothing
/// torn, each producer's items arrive as a prefix of what it pushed, in
/// order; the survivors' all arrive, the victim's up to its death (its item
/// in flight may be lost), and nobody waits forever.
///
/// Planted bug that fails it (tried): `producers_gone` in
/// `src/queue/registry.rs` treating a dead producer's lane as live (the
/// consumers wait for it forever: shuttle stops the execution at its step
/// bound, "exceeded max_steps").
#[test]
fn queue_producer_killed_among_three() {
    const PER: u64 = 4;
    check("queue producer killed", 3000, || {
        timeouts_expire(true);
        let q = queue_3x3();
        let k = next_k(60);
        let work = Arc::new(Atomic::<u64>::new(0));
        let consumers = three_queue_consumers(&q, &work);
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    // The producer attaches in the process that dies (it
                    // may die attaching, too).
                    let push_all = move || {
                        let mut tx = q.producer().unwrap();
                        for i in 0..PER {
                            let v = p * 100 + i;
                            tx.push([v, !v]).unwrap();
                        }
                    };
                    if p == 0 {
                        run_killed_after(2, Some(k), push_all).is_none()
                    } else {
                        become_process(2 + p as u32);
                        push_all();
                        false
                    }
                })
            })
            .collect();
        let killed = producers.into_iter().map(|p| p.join().unwrap()).any(|k| k);
        let all = every_item_once(consumers);
        for p in 0..3 {
            let mine = of_producer(&all, p);
            let pushed: Vec<u64> = (0..PER).map(|i| p * 100 + i).collect();
            if p == 0 && killed {
                assert_eq!(mine, pushed[..mine.len()], "not a prefix: {all:?}");
            } else {
                assert_eq!(mine, pushed, "lost: {all:?}");
            }
        }
    });
}

//! [`SoleConsumer`]: a ring's only consumer, whose pops take no
//! read-modify-write at all.
//!
//! A [`Consumer`] claims by one CAS of `head` and counts what it holds with
//! two atomic additions (its shared `held` entry, its own `local_held`),
//! because other consumers may race it for the same slots and other
//! threads may share the handle. Each is a locked instruction on x86, and
//! together they are about half the cost of a pop with the producer on
//! another core (`shmkit bench --only queue-throughput`: the
//! `shmkit-ring-sole/1p1c` case beside `shmkit-ring/1p1c`; figures in
//! BENCHMARKS.md).
//!
//! A sole consumer is sure of both facts instead of defending against
//! them: no other consumer is registered while it lives (a claim in the
//! ring's control block, checked against the registry both ways), and its
//! pops take `&mut self` and the type is not `Sync`, so no other thread is
//! in the handle. Its claims keep the order that makes a kill safe
//! (announce in `held`, then move `head`, the copy made before either), so
//! a sole consumer killed at any instruction loses at most the items it
//! held, as any consumer, and the next consumer (sole or not) takes over.
//!
//! ```
//! use shmkit::ring::Ring;
//! use shmkit::Error;
//! let ring = Ring::<u64>::new_in_process(64)?;
//! let mut tx = ring.producer()?;
//! let mut rx = ring.sole_consumer()?;
//! assert!(matches!(ring.consumer(), Err(Error::SoleConsumer { .. })));
//! tx.push(7)?;
//! assert_eq!(rx.pop()?, 7);
//! rx.task_done()?;           // the rest of `Consumer`'s API, by Deref
//! tx.join()?;
//! drop(rx);
//! let _rx = ring.consumer()?; // free again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::consumer::Consumer;

crate::sole::sole_consumer! {
    /// A ring's only consumer (from [`Ring::sole_consumer`](super::Ring::sole_consumer)):
    /// single-item and batch pops by plain stores, for a one-producer,
    /// one-consumer pipeline. While it lives, [`Ring::consumer`](super::Ring::consumer)
    /// fails with [`Error::SoleConsumer`](crate::Error::SoleConsumer); it is refused
    /// with [`Error::ConsumerExists`](crate::Error::ConsumerExists) while another
    /// consumer is registered. It is `Send` but not `Sync`: move it to the
    /// thread that pops.
    ///
    /// Everything else a [`Consumer`] does (byte messages, `task_done`,
    /// `join`, iterators, async pops) is reached through `Deref` and works as
    /// for any consumer, at a consumer's speed.
    "ring"
}

#[cfg(test)]
mod tests {
    use super::super::Ring;
    use crate::Error;
    use crate::ring::PopError;

    #[test]
    fn excludes_other_consumers_both_ways_and_frees_on_drop() {
        let ring = Ring::<u32>::new_in_process(8).unwrap();
        let other = ring.consumer().unwrap();
        let pid = std::process::id();
        match ring.sole_consumer() {
            Err(e @ Error::ConsumerExists { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "\"<in-process>\" already has a consumer, process {pid} (alive): a sole \
                     consumer must be the only one; drop the others first, or use consumer()"
                )
            ),
            r => panic!("{r:?}"),
        }
        drop(other);
        let sole = ring.sole_consumer().unwrap();
        assert!(matches!(ring.consumer(), Err(Error::SoleConsumer { pid: p, .. }) if p == pid));
        assert!(matches!(
            ring.sole_consumer(),
            Err(Error::SoleConsumer { .. })
        ));
        drop(sole);
        let again = ring.consumer().unwrap();
        drop(again);
        let _sole = ring.sole_consumer().unwrap();
    }

    #[test]
    fn pops_in_order_across_wraps_with_the_consumer_api_beside() {
        let ring = Ring::<u64>::new_in_process(4).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.sole_consumer().unwrap();
        let mut next = 0u64;
        let mut buf = [0u64; 3];
        for round in 0..50u64 {
            for v in round * 3..round * 3 + 3 {
                tx.push(v).unwrap();
            }
            // Alternate the sole pops, a batch, and a CAS pop through Deref.
            let got: Vec<u64> = match round % 3 {
                0 => (0..3).map(|_| rx.try_pop().unwrap()).collect(),
                1 => {
                    let n = rx.pop_into(&mut buf).unwrap();
                    assert_eq!(n, 3);
                    buf.to_vec()
                }
                // `(*rx)`: the consumer underneath, whose pop claims by CAS.
                _ => (0..3).map(|_| (*rx).pop().unwrap()).collect(),
            };
            for v in got {
                assert_eq!(v, next);
                next += 1;
            }
            for _ in 0..3 {
                rx.task_done().unwrap();
            }
        }
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        assert_eq!(tx.join().unwrap().abandoned, 0);
        assert!(rx.task_done().is_err(), "every item taken is done");
        drop(tx);
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
    }

    #[test]
    fn timed_pops_wait_then_take_in_order() {
        use std::time::Duration;
        let ring = Ring::<u64>::new_in_process(8).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.sole_consumer().unwrap();
        let short = Duration::from_millis(5);
        let mut buf = [0u64; 4];
        assert_eq!(rx.pop_timeout(short), Err(PopError::Timeout));
        assert_eq!(rx.pop_into_timeout(&mut buf, short), Err(PopError::Timeout));
        assert_eq!(rx.pop_into_timeout(&mut [], short), Ok(0));
        for v in 1..=3 {
            tx.push(v).unwrap();
        }
        assert_eq!(rx.pop_timeout(short), Ok(1));
        assert_eq!(rx.pop_into_timeout(&mut buf, short), Ok(2));
        assert_eq!(buf[..2], [2, 3]);
    }

    #[test]
    fn threads_one_producer_one_sole_consumer_exactly_once() {
        const N: u64 = 200_000;
        let ring = Ring::<u64>::new_in_process(64).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.sole_consumer().unwrap();
        let t = std::thread::spawn(move || {
            for v in 0..N {
                tx.push(v).unwrap();
            }
        });
        for want in 0..N {
            assert_eq!(rx.pop(), Ok(want));
        }
        t.join().unwrap();
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
    }
}

//! [`SoleConsumer`]: a queue's only consumer — many producers, one
//! collector — whose pops take no read-modify-write.
//!
//! As the ring's [`SoleConsumer`](crate::ring::SoleConsumer): a
//! [`Consumer`] announces what it takes with an atomic add and claims by
//! one CAS of a lane's head, because other consumers may race it and other
//! threads may share the handle. The sole consumer is sure of neither (the
//! queue's `sole` word and the registry shut other consumers out, both
//! ways; its pops take `&mut self` and the type is not `Sync`), so it does
//! both with plain stores in the same order, and a sole consumer killed at
//! any instruction loses at most what it held, as any consumer, and is
//! taken over.
//!
//! ```
//! use shmkit::queue::{Queue, QueueOptions};
//! use shmkit::Error;
//! let q = Queue::<u64>::new_in_process(QueueOptions::new(16, 4, 4))?;
//! let (mut a, mut b) = (q.producer()?, q.producer()?);
//! let mut collector = q.sole_consumer()?;
//! assert!(matches!(q.consumer(), Err(Error::SoleConsumer { .. })));
//! a.push(1)?;
//! b.push(2)?;
//! let mut got = [collector.pop()?, collector.pop()?];
//! got.sort();
//! assert_eq!(got, [1, 2]);
//! collector.task_done()?; // the rest of `Consumer`'s API, by Deref
//! collector.task_done()?;
//! assert_eq!(q.join()?.abandoned, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::consumer::Consumer;

crate::sole::sole_consumer! {
    /// A queue's only consumer (from [`Queue::sole_consumer`](super::Queue::sole_consumer)):
    /// single-item and batch pops by plain stores. While it lives,
    /// [`Queue::consumer`](super::Queue::consumer) fails with
    /// [`Error::SoleConsumer`](crate::Error::SoleConsumer); it is refused with
    /// [`Error::ConsumerExists`](crate::Error::ConsumerExists) while another
    /// consumer is registered. `Send`, not `Sync`.
    ///
    /// Everything else a [`Consumer`] does (byte messages, `task_done`,
    /// `join`, iterators, async pops) is reached through `Deref`, at a
    /// consumer's speed.
    "queue"
}

#[cfg(test)]
mod tests {
    use super::super::{Queue, QueueOptions};
    use crate::Error;
    use crate::ring::PopError;

    #[test]
    fn excludes_other_consumers_both_ways_and_frees_on_drop() {
        let q = Queue::<u32>::new_in_process(QueueOptions::new(4, 2, 3)).unwrap();
        let other = q.consumer().unwrap();
        assert!(matches!(
            q.sole_consumer(),
            Err(Error::ConsumerExists { .. })
        ));
        drop(other);
        let sole = q.sole_consumer().unwrap();
        assert!(matches!(q.consumer(), Err(Error::SoleConsumer { .. })));
        assert!(matches!(q.sole_consumer(), Err(Error::SoleConsumer { .. })));
        drop(sole);
        drop(q.consumer().unwrap());
        let _again = q.sole_consumer().unwrap();
    }

    #[test]
    fn three_producer_threads_one_collector_exactly_once_in_order() {
        const N: u64 = 50_000;
        let q = Queue::<u64>::new_in_process(QueueOptions::new(64, 3, 2)).unwrap();
        let mut rx = q.sole_consumer().unwrap();
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let mut tx = q.producer().unwrap();
                std::thread::spawn(move || {
                    for v in 0..N {
                        tx.push(p << 32 | v).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u64; 3];
        let mut buf = [0u64; 8];
        let mut got = 0;
        while got < 3 * N {
            let n = if got % 2 == 0 {
                rx.pop_into(&mut buf).unwrap()
            } else {
                buf[0] = rx.pop().unwrap();
                1
            };
            for &v in &buf[..n] {
                let p = (v >> 32) as usize;
                assert_eq!(v & 0xffff_ffff, next[p], "producer {p} out of order");
                next[p] += 1;
            }
            got += n as u64;
        }
        for t in producers {
            t.join().unwrap();
        }
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        for _ in 0..3 * N {
            rx.task_done().unwrap();
        }
        assert_eq!(q.join().unwrap().abandoned, 0);
        q.close();
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
    }
}

//! Iterating a consumer: [`Consumer::iter`] (blocking, until the ring is
//! closed and drained) and [`Consumer::try_iter`] (what is there now), both
//! built on the consumer's public `pop` / `try_pop`.

use bytemuck::Pod;

use super::consumer::Consumer;

impl<T: Pod> Consumer<T> {
    /// The items, one [`pop`](Self::pop) each: waits while the ring is
    /// empty, and ends once it is closed and drained (or its producer died:
    /// `Disconnected`). Any other error ends it too (`Corrupt`); call `pop`
    /// after the loop to see why it ended if that matters. Each item taken
    /// is gone for the other consumers, as with `pop`.
    ///
    /// ```
    /// use shmkit::ring::Ring;
    /// let ring = Ring::<u32>::new_in_process(8)?;
    /// let mut tx = ring.producer()?;
    /// let rx = ring.consumer()?;
    /// let worker = std::thread::spawn(move || rx.iter().sum::<u32>());
    /// for x in 1..=10 {
    ///     tx.push(x)?;
    /// }
    /// drop(tx); // closes: the worker's loop ends after the last item
    /// assert_eq!(worker.join().unwrap(), 55);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// The items there now, one [`try_pop`](Self::try_pop) each: never
    /// waits, and ends at the first `Empty` (or any other error).
    ///
    /// ```
    /// use shmkit::ring::Ring;
    /// let ring = Ring::<u32>::new_in_process(8)?;
    /// let mut tx = ring.producer()?;
    /// let rx = ring.consumer()?;
    /// tx.push(1)?;
    /// tx.push(2)?;
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// assert_eq!(rx.try_iter().next(), None); // the producer is still open
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

/// The blocking iterator of [`Consumer::iter`].
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Iter<'a, T: Pod> {
    rx: &'a Consumer<T>,
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.pop().ok()
    }
}

/// The non-blocking iterator of [`Consumer::try_iter`].
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct TryIter<'a, T: Pod> {
    rx: &'a Consumer<T>,
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_pop().ok()
    }
}

/// `for item in &consumer`: [`Consumer::iter`].
impl<'a, T: Pod> IntoIterator for &'a Consumer<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

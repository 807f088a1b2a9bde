//! `JoinableQueue`: the `Queue` with `task_done()` and `join()`.

use super::*;

/// `JoinableQueue(maxsize=0, *, itemsize=55, max_producers=32,
/// max_consumers=64)`: a `Queue` with `task_done()` and `join()`, as
/// `multiprocessing.JoinableQueue`.
///
/// `task_done()` marks one item that *this process* took with `get` as
/// done (ValueError when it took none left unmarked). `join()` returns once
/// every item put, by any process, was marked done or abandoned: taken by
/// a consumer process that was killed (or closed its handle) before
/// marking it. A killed consumer never hangs `join()`; what it abandoned
/// is `last_join_abandoned` afterwards, in frames (one per item under 56
/// bytes: a dead consumer's messages cannot be told apart).
#[pyclass(module = "shmkit", name = "JoinableQueue", extends = PyQueue)]
pub(crate) struct PyJoinableQueue;

#[pymethods]
impl PyJoinableQueue {
    #[new]
    #[pyo3(signature = (maxsize = 0, *, itemsize = DEFAULT_ITEMSIZE, max_producers = DEFAULT_MAX_PRODUCERS, max_consumers = DEFAULT_MAX_CONSUMERS))]
    fn py_new(
        py: Python<'_>,
        maxsize: isize,
        itemsize: usize,
        max_producers: usize,
        max_consumers: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = PyQueue::py_new(py, maxsize, itemsize, max_producers, max_consumers)?;
        Ok(PyClassInitializer::from(base).add_subclass(PyJoinableQueue))
    }

    /// Mark one item this process took with `get` as done.
    fn task_done(slf: PyRef<'_, Self>) -> PyResult<()> {
        let q = slf.as_super();
        let c = poisoned(&q.consumer).mine().cloned();
        let Some(c) = c else {
            return Err(PyValueError::new_err("task_done() called too many times"));
        };
        match c.task_done() {
            Ok(()) => Ok(()),
            Err(TaskDoneError::TooMany) => Err(PyValueError::new_err(
                "task_done() called too many times (in this process: each process \
                 marks the items it took)",
            )),
            Err(e) => Err(CorruptError::new_err(e.to_string())),
        }
    }

    /// Block until every item put (by any process) was marked done, or
    /// taken by a consumer process that died or closed before marking it
    /// (counted in `last_join_abandoned`). `timeout` seconds at most
    /// (`None`: no limit): TimeoutError after it.
    #[pyo3(signature = (timeout = None))]
    fn join(slf: PyRef<'_, Self>, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let q = slf.as_super();
        let shared = q.q.clone();
        let until = deadline(timeout)?;
        loop {
            let wait = slice_until(until).unwrap_or(Duration::ZERO);
            match py.detach(|| shared.join_timeout(wait)) {
                Ok(r) => {
                    // Relaxed: a statistic for `last_join_abandoned`, paired with nothing.
                    q.last_abandoned
                        .store(r.abandoned, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                // Every consumer is gone with items untaken: as Python's,
                // the join waits (a consumer may still come).
                Err(JoinError::Timeout | JoinError::Disconnected) => {
                    if slice_until(until).is_none() {
                        return Err(PyTimeoutError::new_err(
                            "timed out waiting for every item to be done",
                        ));
                    }
                    if wait.is_zero() {
                        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
                    }
                    py.check_signals()?;
                }
                Err(e) => return Err(CorruptError::new_err(e.to_string())),
            }
        }
    }

    /// What the last `join()` through this handle counted as abandoned:
    /// taken by a consumer process that died (or closed its handle)
    /// before calling `task_done` for it, in frames (one per item under 56
    /// bytes).
    #[getter]
    fn last_join_abandoned(slf: PyRef<'_, Self>) -> u64 {
        // Relaxed: a statistic this process stored, paired with nothing.
        slf.as_super()
            .last_abandoned
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

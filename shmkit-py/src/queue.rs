//! `Queue` and `JoinableQueue`: Python's `multiprocessing.Queue` and
//! `JoinableQueue` on shmkit's multi-producer queue.

use super::*;
use crate::codec::{self, Encoded};

// The records a `Queue` carries: one Python message each, whole. `tag`
// says what the payload is (`codec`'s tags), `len` how many
// of `data`'s bytes it fills. Five sizes, chosen by `itemsize=`: every
// push copies a whole record, so a queue of small messages should not pay
// for 64 KiB slots.
macro_rules! item_records {
    ($($ty:ident = $name:literal, $size:literal;)*) => {$(
        shmkit::record! {
            #[name = $name]
            struct $ty {
                tag: u32,
                len: u32,
                data: [u8; $size - 8],
            }
        }
    )*};
}
item_records! {
    Item256 = "shmkit.py.QueueItem256/2", 256;
    Item1K = "shmkit.py.QueueItem1K/2", 1024;
    Item4K = "shmkit.py.QueueItem4K/2", 4096;
    Item16K = "shmkit.py.QueueItem16K/2", 16384;
    Item64K = "shmkit.py.QueueItem64K/2", 65536;
}

/// The record sizes `itemsize=` picks from (the smallest that is at least
/// the size asked for).
const ITEM_SIZES: [usize; 5] = [256, 1024, 4096, 16384, 65536];

/// What a queue does with a record, whatever its size.
trait Item: shmkit::ShmType + Send + Sync + 'static {
    /// The most payload bytes it holds.
    const CAPACITY: usize = std::mem::size_of::<Self>() - 8;
    fn make(tag: u32, bytes: &[u8]) -> Self;
    /// The tag and payload; an impossible length (shared memory is
    /// untrusted) is an error, never a panic.
    fn parts(&self) -> PyResult<(u32, &[u8])>;
}

macro_rules! item {
    ($($ty:ident),*) => {$(
        impl Item for $ty {
            fn make(tag: u32, bytes: &[u8]) -> Self {
                let mut r: $ty = shmkit::Zeroable::zeroed();
                // Callers check the length against CAPACITY first.
                let n = bytes.len().min(Self::CAPACITY);
                r.data[..n].copy_from_slice(&bytes[..n]);
                r.tag = tag;
                r.len = n as u32;
                r
            }
            fn parts(&self) -> PyResult<(u32, &[u8])> {
                usize::try_from(self.len)
                    .ok()
                    .and_then(|n| self.data.get(..n))
                    .map(|d| (self.tag, d))
                    .ok_or_else(|| {
                        CorruptError::new_err(format!(
                            "a queue item says it holds {} bytes in a record of {}",
                            self.len,
                            Self::CAPACITY
                        ))
                    })
            }
        }
    )*};
}
item!(Item256, Item1K, Item4K, Item16K, Item64K);

/// Why a push did not happen, without the item.
enum PushFail {
    Full,
    Closed,
    Disconnected,
    Corrupt(String),
}

fn push_fail<T>(e: shmkit::PushError<T>) -> PushFail {
    match e {
        shmkit::PushError::Full(_) | shmkit::PushError::Timeout(_) => PushFail::Full,
        shmkit::PushError::Closed(_) => PushFail::Closed,
        shmkit::PushError::Disconnected(_) => PushFail::Disconnected,
        shmkit::PushError::Corrupt { detail, .. } => PushFail::Corrupt(detail),
        _ => PushFail::Corrupt("an unknown push error".into()),
    }
}

/// A `shmkit::Queue` of records of one size.
trait AnyQueue: Send + Sync {
    fn capacity(&self) -> usize;
    fn record_size(&self) -> usize;
    fn name(&self) -> Option<String>;
    fn len(&self) -> usize;
    fn cap_per_producer(&self) -> usize;
    fn max_producers(&self) -> usize;
    fn max_consumers(&self) -> usize;
    /// (head, tail) of lane `i`, if there is one.
    fn lane(&self, i: usize) -> Option<(u64, u64)>;
    fn close(&self);
    fn is_closed(&self) -> bool;
    fn join_timeout(&self, wait: Duration) -> Result<JoinReport, JoinError>;
    fn producer(&self) -> Result<Box<dyn AnyProducer>, Error>;
    fn consumer(&self) -> Result<Arc<dyn AnyConsumer>, Error>;
}

trait AnyProducer: Send + Sync {
    fn lane(&self) -> usize;
    /// Push `bytes`, waiting up to `wait` for room (`None`: not at all).
    fn push(&mut self, tag: u32, bytes: &[u8], wait: Option<Duration>) -> Result<(), PushFail>;
}

trait AnyConsumer: Send + Sync {
    /// Take one item, waiting up to `wait` (`None`: not at all); the tag
    /// and payload go to `f`.
    fn pop(
        &self,
        wait: Option<Duration>,
        f: &mut dyn FnMut(u32, &[u8]) -> PyResult<()>,
    ) -> Result<PyResult<()>, PopError>;
    fn task_done(&self) -> Result<(), TaskDoneError>;
}

impl<T: Item> AnyQueue for Queue<T> {
    fn capacity(&self) -> usize {
        T::CAPACITY
    }
    fn record_size(&self) -> usize {
        std::mem::size_of::<T>()
    }
    fn name(&self) -> Option<String> {
        self.segment()?.name().map(str::to_owned)
    }
    fn len(&self) -> usize {
        Queue::len(self)
    }
    fn cap_per_producer(&self) -> usize {
        Queue::cap_per_producer(self)
    }
    fn max_producers(&self) -> usize {
        Queue::max_producers(self)
    }
    fn max_consumers(&self) -> usize {
        Queue::max_consumers(self)
    }
    fn lane(&self, i: usize) -> Option<(u64, u64)> {
        self.state().lanes.get(i).map(|l| (l.head, l.tail))
    }
    fn close(&self) {
        Queue::close(self)
    }
    fn is_closed(&self) -> bool {
        Queue::is_closed(self)
    }
    fn join_timeout(&self, wait: Duration) -> Result<JoinReport, JoinError> {
        Queue::join_timeout(self, wait)
    }
    fn producer(&self) -> Result<Box<dyn AnyProducer>, Error> {
        Ok(Box::new(Queue::producer(self)?))
    }
    fn consumer(&self) -> Result<Arc<dyn AnyConsumer>, Error> {
        Ok(Arc::new(Queue::consumer(self)?))
    }
}

impl<T: Item> AnyProducer for QueueProducer<T> {
    fn lane(&self) -> usize {
        QueueProducer::lane(self)
    }
    fn push(&mut self, tag: u32, bytes: &[u8], wait: Option<Duration>) -> Result<(), PushFail> {
        let item = T::make(tag, bytes);
        match wait {
            None => self.try_push(item),
            Some(w) => self.push_timeout(item, w),
        }
        .map_err(push_fail)
    }
}

impl<T: Item> AnyConsumer for QueueConsumer<T> {
    fn pop(
        &self,
        wait: Option<Duration>,
        f: &mut dyn FnMut(u32, &[u8]) -> PyResult<()>,
    ) -> Result<PyResult<()>, PopError> {
        let item = match wait {
            None => self.try_pop()?,
            Some(w) => self.pop_timeout(w)?,
        };
        Ok(item.parts().and_then(|(tag, d)| f(tag, d)))
    }
    fn task_done(&self) -> Result<(), TaskDoneError> {
        QueueConsumer::task_done(self)
    }
}

/// A new queue of the smallest record of at least `itemsize` bytes.
fn create_queue(name: &str, itemsize: usize, opts: QueueOptions) -> PyResult<Arc<dyn AnyQueue>> {
    fn make<T: Item>(name: &str, opts: QueueOptions) -> PyResult<Arc<dyn AnyQueue>> {
        Ok(Arc::new(Queue::<T>::create(name, opts).map_err(py_err)?))
    }
    match ITEM_SIZES.iter().find(|&&s| s >= itemsize) {
        Some(256) => make::<Item256>(name, opts),
        Some(1024) => make::<Item1K>(name, opts),
        Some(4096) => make::<Item4K>(name, opts),
        Some(16384) => make::<Item16K>(name, opts),
        Some(_) => make::<Item64K>(name, opts),
        None => Err(PyValueError::new_err(format!(
            "itemsize {itemsize} is more than the largest queue item, {} bytes \
             (send larger data through an Array, a Pipe, or a file)",
            ITEM_SIZES[ITEM_SIZES.len() - 1]
        ))),
    }
}

/// Open the named queue whose records are `record_size` bytes.
fn open_queue(name: &str, record_size: usize) -> PyResult<Arc<dyn AnyQueue>> {
    fn open<T: Item>(name: &str) -> PyResult<Arc<dyn AnyQueue>> {
        Ok(Arc::new(Queue::<T>::open(name).map_err(py_err)?))
    }
    match record_size {
        256 => open::<Item256>(name),
        1024 => open::<Item1K>(name),
        4096 => open::<Item4K>(name),
        16384 => open::<Item16K>(name),
        65536 => open::<Item64K>(name),
        _ => Err(PyValueError::new_err(format!(
            "no queue has items of {record_size} bytes"
        ))),
    }
}

/// A handle made in one process: one inherited across `fork` is the
/// parent's, and is forgotten (never dropped, which would detach the
/// parent's producer or consumer) before this process makes its own.
struct PerProcess<H>(Option<(u32, H)>);

impl<H> PerProcess<H> {
    /// This process's handle, if it made one.
    fn mine(&mut self) -> Option<&mut H> {
        let pid = this_pid();
        if self.0.as_ref().is_some_and(|(p, _)| *p != pid)
            && let Some(inherited) = self.0.take()
        {
            std::mem::forget(inherited);
        }
        self.0.as_mut().map(|(_, h)| h)
    }

    fn set(&mut self, h: H) -> &mut H {
        self.mine();
        &mut self.0.insert((this_pid(), h)).1
    }

    /// Take this process's handle out (to drop it).
    fn take(&mut self) -> Option<H> {
        self.mine()?;
        self.0.take().map(|(_, h)| h)
    }
}

impl<H> Drop for PerProcess<H> {
    fn drop(&mut self) {
        // An inherited handle is forgotten, ours dropped.
        self.mine();
    }
}

/// Default slots per producer for `maxsize=0`: about 512 KiB of records
/// per lane, from 8 to 1024 slots.
fn default_lane(record_size: usize) -> usize {
    let n = (512 * 1024 / record_size.max(1)).clamp(8, 1024);
    // A power of two at most n.
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Default producer and consumer limits.
const DEFAULT_MAX_PRODUCERS: usize = 32;
const DEFAULT_MAX_CONSUMERS: usize = 64;

fn queue_empty(py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_value(
        py.import("queue")?.getattr("Empty")?.call0()?,
    ))
}

fn queue_full(py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_value(
        py.import("queue")?.getattr("Full")?.call0()?,
    ))
}

fn pickle_fn(py: Python<'_>, f: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("pickle")?.getattr(f)?.unbind())
}

/// `Queue(maxsize=0, *, itemsize=1024, max_producers=32, max_consumers=64)`:
/// `multiprocessing.Queue` on lock-free shared memory, for any number of
/// producer and consumer processes.
///
/// `put(obj)` pickles `obj` (a `bytes` object travels as is, unpickled)
/// into one fixed-size item of `itemsize` bytes: 256, 1024, 4096, 16384
/// or 65536 (a value in between is rounded up). The message may fill all
/// but 8 bytes of it (`max_message_len`); a larger one raises ValueError
/// and nothing is sent. Every put copies a whole item, so pick the
/// smallest size your messages fit.
///
/// Capacity: each producer process has a lane of its own, of `maxsize`
/// items rounded up to a power of two (`maxsize=0`: about 512 KiB of
/// items, from 8 to 1024). `put` waits only while *its own* lane is full,
/// so with several producers the queue holds up to `max_producers` times
/// that. At most `max_producers` processes put and `max_consumers`
/// processes get at the same time (a dead one's place is reused); the
/// shared memory is `max_producers * lane capacity * itemsize` bytes.
/// Items of one producer arrive in the order it put them.
///
/// A process attaches its producer on its first `put` and its consumer on
/// its first `get`; threads of a process share them. The handle pickles
/// by name, so it passes to `Process` children (fork or spawn) and to
/// pool workers. Blocking calls release the GIL and honour Ctrl-C;
/// timeouts raise `queue.Empty` / `queue.Full`. `close()` is this
/// process's, as in Python; `shutdown()` ends the queue for everyone.
#[pyclass(module = "shmkit", name = "Queue", subclass)]
pub(crate) struct PyQueue {
    q: Arc<dyn AnyQueue>,
    name: String,
    producer: Mutex<PerProcess<Box<dyn AnyProducer>>>,
    consumer: Mutex<PerProcess<Arc<dyn AnyConsumer>>>,
    /// The process that called `close()` on this handle, if one did.
    closed_in: Mutex<Option<u32>>,
    /// Abandoned items the last `join` reported.
    last_abandoned: StdAtomicU64,
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
}

impl PyQueue {
    fn from_queue(py: Python<'_>, q: Arc<dyn AnyQueue>) -> PyResult<Self> {
        let name = q
            .name()
            .ok_or_else(|| PyValueError::new_err("an anonymous queue cannot be used here"))?;
        Ok(PyQueue {
            q,
            name,
            producer: Mutex::new(PerProcess(None)),
            consumer: Mutex::new(PerProcess(None)),
            closed_in: Mutex::new(None),
            last_abandoned: StdAtomicU64::new(0),
            dumps: pickle_fn(py, "dumps")?,
            loads: pickle_fn(py, "loads")?,
        })
    }

    fn check_open(&self) -> PyResult<()> {
        if *poisoned(&self.closed_in) == Some(this_pid()) {
            return Err(PyValueError::new_err(format!(
                "Queue {:?} is closed (in this process)",
                self.name
            )));
        }
        Ok(())
    }

    /// This process's consumer, attached on first use.
    fn consumer(&self) -> PyResult<Arc<dyn AnyConsumer>> {
        let mut c = poisoned(&self.consumer);
        if let Some(h) = c.mine() {
            return Ok(h.clone());
        }
        let h = self.q.consumer().map_err(py_err)?;
        Ok(c.set(h).clone())
    }

    /// The error of a failed push other than `Full`.
    fn push_err(&self, f: PushFail) -> PyErr {
        match f {
            PushFail::Full => PyRuntimeError::new_err("a push failed for want of room"),
            PushFail::Closed => {
                PyBrokenPipeError::new_err(format!("queue {:?} was shut down", self.name))
            }
            PushFail::Disconnected => PyBrokenPipeError::new_err(format!(
                "every consumer of queue {:?} died: nobody will make room",
                self.name
            )),
            PushFail::Corrupt(d) => CorruptError::new_err(format!("queue {:?}: {d}", self.name)),
        }
    }

    /// The error of a failed pop other than `Empty` / `Timeout`.
    fn pop_err(&self, e: PopError) -> PyErr {
        match e {
            PopError::Disconnected => PyEOFError::new_err(format!(
                "queue {:?} was shut down and is drained",
                self.name
            )),
            PopError::Corrupt(d) => CorruptError::new_err(format!("queue {:?}: {d}", self.name)),
            e => pop_err(e),
        }
    }

    /// Push one message, waiting until `until` (`block`) in slices.
    ///
    /// The first attempt keeps the GIL: it never waits, and releasing and
    /// taking back the GIL would cost more than the push. Only a full lane
    /// (or this process's producer busy in another thread) releases it.
    fn push(
        &self,
        py: Python<'_>,
        msg: &Encoded<'_, '_>,
        block: bool,
        until: Option<Instant>,
    ) -> PyResult<()> {
        let (tag, bytes) = (u32::from(msg.tag()), msg.bytes());
        let cap = self.q.capacity();
        if bytes.len() > cap {
            return Err(PyValueError::new_err(format!(
                "{} {} bytes, more than this queue's items hold ({cap} bytes, \
                 itemsize={}): create the queue with a larger itemsize (up to {}), \
                 or send large data through an Array or a Pipe",
                msg.what(),
                bytes.len(),
                self.q.record_size(),
                ITEM_SIZES[ITEM_SIZES.len() - 1]
            )));
        }
        if let Ok(mut p) = self.producer.try_lock() {
            let h = match p.mine() {
                Some(h) => h,
                None => p.set(self.q.producer().map_err(py_err)?),
            };
            match h.push(tag, bytes, None) {
                Ok(()) => return Ok(()),
                Err(PushFail::Full) if block => {}
                Err(PushFail::Full) => return Err(queue_full(py)?),
                Err(f) => return Err(self.push_err(f)),
            }
        }
        loop {
            let wait = if block {
                Some(slice_until(until).unwrap_or(Duration::ZERO))
            } else {
                None
            };
            let r = py.detach(|| -> PyResult<Result<(), PushFail>> {
                let mut p = poisoned(&self.producer);
                let h = match p.mine() {
                    Some(h) => h,
                    None => p.set(self.q.producer().map_err(py_err)?),
                };
                Ok(h.push(tag, bytes, wait))
            })?;
            match r {
                Ok(()) => return Ok(()),
                Err(PushFail::Full) if block && slice_until(until).is_some() => {
                    py.check_signals()?
                }
                Err(PushFail::Full) => return Err(queue_full(py)?),
                Err(f) => return Err(self.push_err(f)),
            }
        }
    }

    /// Take one message and make it an object, waiting until `until`
    /// (`block`) in slices.
    ///
    /// The first attempt keeps the GIL and builds the object straight from
    /// shared memory; only an empty queue releases the GIL, and then the
    /// message is copied out before the object is made.
    fn pop(&self, py: Python<'_>, block: bool, until: Option<Instant>) -> PyResult<Py<PyAny>> {
        self.check_open()?;
        let c = self.consumer()?;
        let mut got = None;
        match c.pop(None, &mut |tag, d| {
            got = Some(self.decode(py, tag, d)?);
            Ok(())
        }) {
            Ok(checked) => {
                checked?;
                return got.ok_or_else(|| PyRuntimeError::new_err("a pop returned no item"));
            }
            Err(PopError::Empty | PopError::Timeout) if block => {}
            Err(PopError::Empty | PopError::Timeout) => return Err(queue_empty(py)?),
            Err(e) => return Err(self.pop_err(e)),
        }
        loop {
            let wait = Some(slice_until(until).unwrap_or(Duration::ZERO));
            let mut got: Option<(u32, Vec<u8>)> = None;
            let r = py.detach(|| {
                c.pop(wait, &mut |tag, d| {
                    got = Some((tag, d.to_vec()));
                    Ok(())
                })
            });
            match r {
                Ok(checked) => {
                    checked?;
                    let (tag, d) =
                        got.ok_or_else(|| PyRuntimeError::new_err("a pop returned no item"))?;
                    return self.decode(py, tag, &d);
                }
                Err(PopError::Timeout | PopError::Empty) if slice_until(until).is_some() => {
                    py.check_signals()?
                }
                Err(PopError::Timeout | PopError::Empty) => return Err(queue_empty(py)?),
                Err(e) => return Err(self.pop_err(e)),
            }
        }
    }

    fn decode(&self, py: Python<'_>, tag: u32, d: &[u8]) -> PyResult<Py<PyAny>> {
        // A tag past a byte is garbage: 255 is no kind either.
        let tag = u8::try_from(tag).unwrap_or(u8::MAX);
        codec::decode(py, tag, d, &self.loads, &self.name)
    }
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (maxsize = 0, *, itemsize = 1024, max_producers = DEFAULT_MAX_PRODUCERS, max_consumers = DEFAULT_MAX_CONSUMERS))]
    fn py_new(
        py: Python<'_>,
        maxsize: isize,
        itemsize: usize,
        max_producers: usize,
        max_consumers: usize,
    ) -> PyResult<Self> {
        let record = ITEM_SIZES
            .iter()
            .copied()
            .find(|&s| s >= itemsize)
            .unwrap_or(usize::MAX);
        let lane = if maxsize <= 0 {
            default_lane(record)
        } else {
            (maxsize as usize)
                .checked_next_power_of_two()
                .ok_or_else(|| PyValueError::new_err(format!("maxsize {maxsize} is too large")))?
        };
        let opts = QueueOptions::new(lane, max_producers, max_consumers);
        let q = create_queue(&fresh_name("queue"), itemsize, opts)?;
        PyQueue::from_queue(py, q)
    }

    /// Put `obj` into the queue (an int, float, str, bytes, None or bool
    /// as it is; anything else pickled).
    #[pyo3(signature = (obj, block = true, timeout = None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.check_open()?;
        let until = deadline(timeout)?;
        let msg = codec::encode(obj, &self.dumps)?;
        self.push(py, &msg, block, until)
    }

    /// `put(obj, False)`.
    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// Remove and return an item.
    #[pyo3(signature = (block = true, timeout = None))]
    fn get(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let until = deadline(timeout)?;
        self.pop(py, block, until)
    }

    /// `get(False)`.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get(py, false, None)
    }

    /// Items waiting right now (approximate: others change it at once).
    fn qsize(&self) -> usize {
        self.q.len()
    }

    /// Whether the queue looks empty right now (approximate).
    fn empty(&self) -> bool {
        self.q.len() == 0
    }

    /// Whether a `put` from this process would have to wait right now
    /// (approximate): this process's lane is full, or, before it put
    /// anything, the whole queue holds a lane's worth.
    fn full(&self) -> bool {
        let cap = self.q.cap_per_producer() as u64;
        let lane = poisoned(&self.producer).mine().map(|p| p.lane());
        match lane.and_then(|l| self.q.lane(l)) {
            Some((head, tail)) => tail.saturating_sub(head) >= cap,
            None => self.q.len() as u64 >= cap,
        }
    }

    /// This process is done with this queue: its producer and consumer
    /// detach (items it put stay for the others), and later calls on this
    /// handle in this process raise ValueError. Other processes go on.
    fn close(&self) {
        *poisoned(&self.closed_in) = Some(this_pid());
        drop(poisoned(&self.producer).take());
        drop(poisoned(&self.consumer).take());
    }

    /// Nothing to wait for: `put` has copied the item into shared memory
    /// before it returns (there is no feeder thread).
    fn join_thread(&self) {}

    /// Nothing to cancel (see `join_thread`).
    fn cancel_join_thread(&self) {}

    /// End the queue for every process: `put` raises BrokenPipeError
    /// everywhere, `get` returns what is left, then raises EOFError.
    fn shutdown(&self) {
        self.q.close();
    }

    /// Whether `shutdown()` was called (by any process).
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.q.is_closed()
    }

    /// The record size of each item in bytes.
    #[getter]
    fn itemsize(&self) -> usize {
        self.q.record_size()
    }

    /// The longest message (pickle, or bytes object) an item holds.
    #[getter]
    fn max_message_len(&self) -> usize {
        self.q.capacity()
    }

    /// Slots of each producer's lane.
    #[getter]
    fn lane_capacity(&self) -> usize {
        self.q.cap_per_producer()
    }

    #[getter]
    fn max_producers(&self) -> usize {
        self.q.max_producers()
    }

    #[getter]
    fn max_consumers(&self) -> usize {
        self.q.max_consumers()
    }

    /// The segment's name (what pickling sends).
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let me = slf.borrow();
        let joinable = slf.is_instance_of::<PyJoinableQueue>();
        let open = py.import("shmkit._shmkit")?.getattr("_open_queue")?;
        let args = (me.name.clone(), me.q.record_size(), joinable).into_pyobject(py)?;
        PyTuple::new(py, [open.into_any(), args.into_any()])
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let kind = if slf.is_instance_of::<PyJoinableQueue>() {
            "JoinableQueue"
        } else {
            "Queue"
        };
        format!("<shmkit.{kind} {:?}>", slf.borrow().name)
    }
}

/// `JoinableQueue(maxsize=0, *, itemsize=1024, max_producers=32,
/// max_consumers=64)`: a `Queue` with `task_done()` and `join()`, as
/// `multiprocessing.JoinableQueue`.
///
/// `task_done()` marks one item that *this process* took with `get` as
/// done (ValueError when it took none left unmarked). `join()` returns once
/// every item put, by any process, was marked done or abandoned: taken by
/// a consumer process that was killed (or closed its handle) before
/// marking it. A killed consumer never hangs `join()`; the count of
/// abandoned items is `last_join_abandoned` afterwards.
#[pyclass(module = "shmkit", name = "JoinableQueue", extends = PyQueue)]
pub(crate) struct PyJoinableQueue;

#[pymethods]
impl PyJoinableQueue {
    #[new]
    #[pyo3(signature = (maxsize = 0, *, itemsize = 1024, max_producers = DEFAULT_MAX_PRODUCERS, max_consumers = DEFAULT_MAX_CONSUMERS))]
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

    /// Items the last `join()` through this handle counted as abandoned:
    /// taken by a consumer process that died (or closed its handle)
    /// before calling `task_done` for them.
    #[getter]
    fn last_join_abandoned(slf: PyRef<'_, Self>) -> u64 {
        slf.as_super()
            .last_abandoned
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Unpickling a `Queue` or `JoinableQueue`: open the named segment.
#[pyfunction]
pub(crate) fn _open_queue(
    py: Python<'_>,
    name: &str,
    record_size: usize,
    joinable: bool,
) -> PyResult<Py<PyAny>> {
    let base = PyQueue::from_queue(py, open_queue(name, record_size)?)?;
    if joinable {
        let init = PyClassInitializer::from(base).add_subclass(PyJoinableQueue);
        Ok(Py::new(py, init)?.into_any())
    } else {
        Ok(Py::new(py, base)?.into_any())
    }
}

//! `Queue` and `JoinableQueue`: Python's `multiprocessing.Queue` and
//! `JoinableQueue` on shmkit's multi-producer queue.

use super::*;
use crate::codec::{self, Encoded};
use shmkit::ring::message::Frame;

mod joinable;
mod per_process;
pub(crate) use joinable::PyJoinableQueue;
use per_process::PerProcess;

/// Data bytes of one frame of the queue (its unit of room).
const FRAME: usize = shmkit::ring::message::FRAME_DATA;
/// The largest lane, in frames.
const MAX_LANE: usize = shmkit::queue::MAX_CAPACITY as usize;
/// Frames of each producer's lane when `maxsize` is 0: 4096 (a message
/// up to 229 KiB; the pages of a lane never written cost nothing).
const DEFAULT_LANE: usize = 4096;
/// The `itemsize` a queue is sized for when none is given: one frame.
const DEFAULT_ITEMSIZE: usize = FRAME - 1;

/// Why a push did not happen.
enum PushFail {
    Full,
    TooLarge,
    Closed,
    Disconnected,
    Corrupt(String),
}

fn push_fail(e: SendError) -> PushFail {
    match e {
        SendError::Full | SendError::Timeout => PushFail::Full,
        SendError::TooLarge { .. } => PushFail::TooLarge,
        SendError::Closed => PushFail::Closed,
        SendError::Disconnected => PushFail::Disconnected,
        other => PushFail::Corrupt(other.to_string()),
    }
}

/// This process's producer and the buffer its messages are built in (the
/// kind tag, then the payload: one contiguous message).
struct Sender {
    p: QueueProducer<Frame>,
    buf: Vec<u8>,
}

impl Sender {
    /// Push `tag` + `bytes` as one message, waiting up to `wait` for room
    /// (`None`: not at all).
    fn push(&mut self, tag: u8, bytes: &[u8], wait: Option<Duration>) -> Result<(), PushFail> {
        self.buf.clear();
        self.buf.push(tag);
        self.buf.extend_from_slice(bytes);
        match wait {
            None => self.p.try_push_bytes(&self.buf),
            Some(w) => self.p.push_bytes_timeout(&self.buf, w),
        }
        .map_err(push_fail)
    }
}

/// This process's producer: its lane (for `full()`, read without the
/// lock) and the sender, behind a lock held for a whole push (a blocking
/// one waits in it, in 50 ms slices). One per process: a forked child
/// makes its own instead of inheriting a lock another thread of the parent
/// may have held at the fork (and would never release in the child).
struct ProducerSlot {
    /// The lane, once attached; `usize::MAX` before.
    lane: std::sync::atomic::AtomicUsize,
    sender: Mutex<Option<Sender>>,
}

/// Messages up to this long are pushed with the GIL held on the first
/// attempt; a longer one is copied with the GIL released.
const GIL_HELD_MAX: usize = 64 * 1024;

/// Frames each producer's lane gets for `maxsize` items of up to
/// `itemsize` bytes each (`maxsize <= 0`: the default lane, or more if one
/// item of `itemsize` needs it).
fn lane_frames(maxsize: isize, itemsize: usize) -> PyResult<usize> {
    let too_large = || {
        PyValueError::new_err(format!(
            "maxsize {maxsize} items of itemsize {itemsize} bytes need more than a \
             queue's largest lane ({MAX_LANE} frames of {FRAME} bytes)"
        ))
    };
    let per_item = itemsize
        .checked_add(1)
        .ok_or_else(too_large)?
        .div_ceil(FRAME);
    let frames = if maxsize <= 0 {
        per_item.max(DEFAULT_LANE)
    } else {
        per_item
            .checked_mul(maxsize as usize)
            .ok_or_else(too_large)?
    };
    frames
        .checked_next_power_of_two()
        .filter(|&f| f <= MAX_LANE)
        .ok_or_else(too_large)
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

/// `Queue(maxsize=0, *, itemsize=55, max_producers=32, max_consumers=64)`:
/// `multiprocessing.Queue` on lock-free shared memory, for any number of
/// producer and consumer processes.
///
/// `put(obj)` sends an `int` (64-bit), `float`, `str`, `bytes`, `None` or
/// `bool` as it is, anything else pickled, as one message of any length:
/// it takes one 64-byte frame per 56 bytes (a small int takes one), and
/// only its own bytes are copied.
///
/// Capacity: each producer process has a lane of its own, of `maxsize`
/// items of up to `itemsize` bytes (rounded up to a power of two of
/// frames; smaller items take less room, larger ones more). `maxsize=0`
/// is **not** unbounded, unlike Python's (there is no feeder thread to
/// hold the rest): 4096 frames a lane, and `put` then waits for a
/// consumer, so a program that puts everything before it starts its
/// workers needs a `maxsize` that holds it all. `put` waits only while
/// *its own* lane is full, so with several producers the queue holds up to
/// `max_producers` times that. The longest message is a lane
/// (`max_message_len`; `Queue(2)` holds 2 items of up to 55 bytes, and
/// `Queue(2, itemsize=1000)` 2 of up to 1000); a longer one raises
/// ValueError and nothing is sent.
///
/// A message is taken before it is unpickled: if unpickling fails (a
/// class the receiver cannot import), `get` raises and the item is gone
/// (on a `JoinableQueue` it still counts as taken: call `task_done()`).
/// A pickle that does not load at all is `CorruptError`. As with any
/// pickle, whoever can write the segment can make `get` run code. At most `max_producers`
/// processes put and `max_consumers` processes get at the same time (a
/// dead one's place is reused). Items of one producer arrive in the order
/// it put them.
///
/// A process attaches its producer on its first `put` and its consumer on
/// its first `get`; threads of a process share them. The handle pickles
/// by name, so it passes to `Process` children (fork or spawn) and to
/// pool workers. Blocking calls release the GIL and honour Ctrl-C;
/// timeouts raise `queue.Empty` / `queue.Full`. `close()` is this
/// process's, as in Python; `shutdown()` ends the queue for everyone.
#[pyclass(module = "shmkit", name = "Queue", subclass)]
pub(crate) struct PyQueue {
    q: Arc<Queue<Frame>>,
    name: String,
    /// The `itemsize` it was created with (what `maxsize` counts in).
    itemsize: usize,
    /// Held only to find or make this process's slot (a few instructions).
    producer: Mutex<PerProcess<Arc<ProducerSlot>>>,
    consumer: Mutex<PerProcess<Arc<QueueConsumer<Frame>>>>,
    /// The process that called `close()` on this handle, if one did.
    closed_in: Mutex<Option<u32>>,
    /// Abandoned frames the last `join` reported.
    last_abandoned: StdAtomicU64,
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
}

thread_local! {
    /// A buffer each thread receives messages into, reused: taken out while
    /// in use (so a `get` re-entered from a `__setstate__` makes its own).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl PyQueue {
    fn from_queue(py: Python<'_>, q: Queue<Frame>, itemsize: usize) -> PyResult<Self> {
        let name = q
            .segment()
            .and_then(|s| s.name())
            .map(str::to_owned)
            .ok_or_else(|| PyValueError::new_err("an anonymous queue cannot be used here"))?;
        Ok(PyQueue {
            q: Arc::new(q),
            name,
            itemsize,
            producer: Mutex::new(PerProcess(None)),
            consumer: Mutex::new(PerProcess(None)),
            closed_in: Mutex::new(None),
            last_abandoned: StdAtomicU64::new(0),
            dumps: pickle_fn(py, "dumps")?,
            loads: pickle_fn(py, "loads")?,
        })
    }

    /// The longest message payload (after the kind tag) a lane holds.
    fn max_payload(&self) -> usize {
        shmkit::ring::message::max_message_len(self.q.cap_per_producer()).saturating_sub(1)
    }

    /// This process's producer slot, made on first use.
    fn slot(&self) -> Arc<ProducerSlot> {
        let mut p = poisoned(&self.producer);
        if let Some(s) = p.mine() {
            return s.clone();
        }
        p.set(Arc::new(ProducerSlot {
            lane: std::sync::atomic::AtomicUsize::new(usize::MAX),
            sender: Mutex::new(None),
        }))
        .clone()
    }

    /// Push through `sender` (attaching this process's producer first if
    /// it has none), waiting up to `wait`.
    fn push_in(
        &self,
        slot: &ProducerSlot,
        sender: &mut Option<Sender>,
        tag: u8,
        bytes: &[u8],
        wait: Option<Duration>,
    ) -> Result<Result<(), PushFail>, Error> {
        let s = match sender {
            Some(s) => s,
            None => {
                let h = self.q.producer()?;
                // Relaxed: read by `full()` as a hint, paired with nothing.
                slot.lane
                    .store(h.lane(), std::sync::atomic::Ordering::Relaxed);
                sender.insert(Sender {
                    p: h,
                    buf: Vec::new(),
                })
            }
        };
        Ok(s.push(tag, bytes, wait))
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
    fn consumer(&self) -> PyResult<Arc<QueueConsumer<Frame>>> {
        let mut c = poisoned(&self.consumer);
        if let Some(h) = c.mine() {
            return Ok(h.clone());
        }
        let h = Arc::new(self.q.consumer().map_err(py_err)?);
        Ok(c.set(h).clone())
    }

    /// The error of a failed push other than `Full`.
    fn push_err(&self, f: PushFail) -> PyErr {
        match f {
            PushFail::Full => PyRuntimeError::new_err("a push failed for want of room"),
            PushFail::TooLarge => self.too_large(None),
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

    /// A message longer than a lane: ValueError, naming what to change.
    fn too_large(&self, msg: Option<&Encoded<'_, '_>>) -> PyErr {
        let what = msg.map_or_else(
            || "the message is too long".to_owned(),
            |m| format!("{} {} bytes", m.what(), m.bytes().len()),
        );
        PyValueError::new_err(format!(
            "{what}, more than this queue's lanes hold ({} bytes: {} frames of {FRAME}); \
             create the queue with a larger maxsize or itemsize, or send large data \
             through an Array or a Pipe",
            self.max_payload(),
            self.q.cap_per_producer(),
        ))
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
        let (tag, bytes) = (msg.tag(), msg.bytes());
        if bytes.len() > self.max_payload() {
            return Err(self.too_large(Some(msg)));
        }
        let slot = self.slot();
        // Every result is taken out of the lock before an error is built:
        // building one runs Python code, which may switch threads.
        if bytes.len() <= GIL_HELD_MAX
            && let Ok(mut sender) = slot.sender.try_lock()
        {
            let r = self.push_in(&slot, &mut sender, tag, bytes, None);
            drop(sender);
            match r.map_err(py_err)? {
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
            let r = py.detach(|| {
                let mut sender = poisoned(&slot.sender);
                self.push_in(&slot, &mut sender, tag, bytes, wait)
            });
            match r.map_err(py_err)? {
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
    /// The first attempt keeps the GIL; only an empty queue releases it.
    /// Either way the message lands in this thread's reused buffer, and the
    /// object is made from it with the GIL held.
    fn pop(&self, py: Python<'_>, block: bool, until: Option<Instant>) -> PyResult<Py<PyAny>> {
        self.check_open()?;
        let c = self.consumer()?;
        let mut buf = SCRATCH.take();
        let r = self.pop_into(py, &c, &mut buf, block, until);
        let out = r.and_then(|()| self.decode(py, &buf));
        buf.clear();
        SCRATCH.set(buf);
        out
    }

    fn pop_into(
        &self,
        py: Python<'_>,
        c: &QueueConsumer<Frame>,
        buf: &mut Vec<u8>,
        block: bool,
        until: Option<Instant>,
    ) -> PyResult<()> {
        match c.try_pop_bytes_into(buf) {
            Ok(()) => return Ok(()),
            Err(PopError::Empty | PopError::Timeout) if block => {}
            Err(PopError::Empty | PopError::Timeout) => return Err(queue_empty(py)?),
            Err(e) => return Err(self.pop_err(e)),
        }
        loop {
            let wait = slice_until(until).unwrap_or(Duration::ZERO);
            match py.detach(|| c.pop_bytes_into_timeout(buf, wait)) {
                Ok(()) => return Ok(()),
                Err(PopError::Timeout | PopError::Empty) if slice_until(until).is_some() => {
                    py.check_signals()?
                }
                Err(PopError::Timeout | PopError::Empty) => return Err(queue_empty(py)?),
                Err(e) => return Err(self.pop_err(e)),
            }
        }
    }

    /// The object a message stands for: its first byte the kind, the rest
    /// the payload (checked by `codec::decode`).
    fn decode(&self, py: Python<'_>, msg: &[u8]) -> PyResult<Py<PyAny>> {
        let Some((&tag, d)) = msg.split_first() else {
            return Err(CorruptError::new_err(format!(
                "queue {:?}: an empty message (every item has a kind byte)",
                self.name
            )));
        };
        codec::decode(py, tag, d, &self.loads, &self.name)
    }
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (maxsize = 0, *, itemsize = DEFAULT_ITEMSIZE, max_producers = DEFAULT_MAX_PRODUCERS, max_consumers = DEFAULT_MAX_CONSUMERS))]
    fn py_new(
        py: Python<'_>,
        maxsize: isize,
        itemsize: usize,
        max_producers: usize,
        max_consumers: usize,
    ) -> PyResult<Self> {
        let lane = lane_frames(maxsize, itemsize)?;
        let opts = QueueOptions::new(lane, max_producers, max_consumers);
        let q = Queue::<Frame>::create(&fresh_name("queue"), opts).map_err(py_err)?;
        PyQueue::from_queue(py, q, itemsize)
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

    /// Items waiting right now (approximate: others change it at once),
    /// counted in frames: exact for items under 56 bytes, more for longer
    /// ones.
    fn qsize(&self) -> usize {
        self.q.len()
    }

    /// Whether the queue looks empty right now (approximate).
    fn empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether a `put` from this process would have to wait right now
    /// (approximate): this process's lane is full, or, before it put
    /// anything, the whole queue holds a lane's worth.
    fn full(&self) -> bool {
        let cap = self.q.cap_per_producer() as u64;
        // Relaxed: a hint from this process's own store in `push_in`; a stale
        // one only makes the answer approximate, as documented.
        let lane = self.slot().lane.load(std::sync::atomic::Ordering::Relaxed);
        match self.q.state().lanes.get(lane).map(|l| (l.head, l.tail)) {
            Some((head, tail)) => tail.saturating_sub(head) >= cap,
            None => self.q.len() as u64 >= cap,
        }
    }

    /// This process is done with this queue: its producer and consumer
    /// detach (items it put stay for the others), and later calls on this
    /// handle in this process raise ValueError. Other processes go on.
    fn close(&self, py: Python<'_>) {
        *poisoned(&self.closed_in) = Some(this_pid());
        let slot = self.slot();
        // Without the GIL: another thread may be in a blocking put, holding
        // the sender for up to one wait slice.
        py.detach(|| drop(poisoned(&slot.sender).take()));
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

    /// The item size `maxsize` counts in (as created; in this process).
    #[getter]
    fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// The longest message (a bytes object, a str's UTF-8, or a pickle) a
    /// lane holds.
    #[getter]
    fn max_message_len(&self) -> usize {
        self.max_payload()
    }

    /// Frames (of 56 data bytes) of each producer's lane.
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
        let args = (me.name.clone(), me.itemsize, joinable).into_pyobject(py)?;
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

/// Unpickling a `Queue` or `JoinableQueue`: open the named segment.
#[pyfunction]
pub(crate) fn _open_queue(
    py: Python<'_>,
    name: &str,
    itemsize: usize,
    joinable: bool,
) -> PyResult<Py<PyAny>> {
    let q = Queue::<Frame>::open(name).map_err(py_err)?;
    let base = PyQueue::from_queue(py, q, itemsize)?;
    if joinable {
        let init = PyClassInitializer::from(base).add_subclass(PyJoinableQueue);
        Ok(Py::new(py, init)?.into_any())
    } else {
        Ok(Py::new(py, base)?.into_any())
    }
}

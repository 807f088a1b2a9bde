//! `shmkit._shmkit`: the compiled half of the Python package `shmkit`.
//!
//! Python's `multiprocessing` names, on shmkit's segments: `Value` and
//! `Array` of the `array`-module typecodes with lock-free `add`,
//! `fetch_add` and `compare_exchange`, each with a `get_lock()`; a `Lock`
//! that survives its holder's death; and the two ends of a `Pipe`. The
//! pure-Python half (`python/shmkit/__init__.py`) adds pickling of objects
//! sent through a pipe and the `Pipe()` function.
//!
//! Every handle is picklable by its segment's name, so it reaches a child
//! started with `fork` or `spawn` (and a pool worker) and opens the same
//! memory there. Blocking calls release the GIL and wake every 50 ms to
//! let Ctrl-C (or any signal handler) interrupt them.

// Binding code, not an algorithm loom checks: the one std atomic here is a
// counter that makes segment names unique.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::create_exception;
use pyo3::exceptions::{
    PyBrokenPipeError, PyEOFError, PyFileExistsError, PyFileNotFoundError, PyIndexError, PyOSError,
    PyPermissionError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PySlice, PyTuple};

use shmkit::pipe::{Connection, Pipe};
use shmkit::queue::{
    Consumer as QueueConsumer, JoinError, Producer as QueueProducer, QueueOptions, TaskDoneError,
};
use shmkit::ring::{PopError, SendError};
use shmkit::snapshot::CellError;
use shmkit::{Element, Error, LockError, Ordering, Queue, SharedArray, SharedCell, ShmLock};

create_exception!(
    _shmkit,
    OwnerDiedError,
    PyRuntimeError,
    "The previous holder of a lock died while holding it: the data it guards may be half-updated."
);
create_exception!(
    _shmkit,
    CorruptError,
    PyRuntimeError,
    "A shared segment holds values no correct process writes (damage, or a foreign program)."
);

/// How often a blocking call gives Python a chance to run signal handlers.
const SLICE: Duration = Duration::from_millis(50);

/// This process's pid, cached (and forgotten in a fork's child) by shmkit:
/// `this_pid()` is a system call, and hot calls (every `put` and
/// `get`) ask which process they run in.
fn this_pid() -> u32 {
    shmkit::process::ProcToken::current().pid()
}

/// shmkit's error as the stdlib exception that fits it, with shmkit's text.
fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Exists { .. } => PyFileExistsError::new_err(msg),
        Error::NotFound { .. } => PyFileNotFoundError::new_err(msg),
        Error::PermissionDenied { .. } => PyPermissionError::new_err(msg),
        Error::Corrupt { .. } => CorruptError::new_err(msg),
        Error::Os { .. } => PyOSError::new_err(msg),
        Error::WrongKind { .. }
        | Error::WrongElementType { .. }
        | Error::WrongLength { .. }
        | Error::BadName { .. }
        | Error::InvalidArgument { .. } => PyValueError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// A name for a new segment: unique in this process and, through the pid
/// and a random part, across processes and runs.
fn fresh_name(kind: &str) -> String {
    static N: StdAtomicU64 = StdAtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "shmkit-py-{kind}-{}-{n}-{:x}",
        this_pid(),
        noise & 0xffff_ffff
    )
}

/// `Some(deadline)` for a Python timeout (`None` or negative: wait forever;
/// so does one too long for a deadline to hold, such as `1e300`, where the
/// arithmetic would overflow).
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t < 0.0 => Ok(None),
        Some(t) if t.is_finite() => Ok(Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be finite, not {t}"
        ))),
    }
}

/// The next wait slice before `deadline`, or `None` when it has passed.
fn slice_until(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SLICE))
        }
    }
}

// ------------------------------------------------------------- elements

/// A typecode's element type: how its values cross into and out of Python.
trait Scalar: Element {
    fn to_py(self, py: Python<'_>, code: char) -> PyResult<Py<PyAny>>;
    fn from_py(v: &Bound<'_, PyAny>, code: char) -> PyResult<Self>;
}

macro_rules! int_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_py(self, py: Python<'_>, code: char) -> PyResult<Py<PyAny>> {
                if code == 'c' {
                    return Ok(PyBytes::new(py, &[self as u8]).into_any().unbind());
                }
                Ok(self.into_pyobject(py)?.into_any().unbind())
            }
            fn from_py(v: &Bound<'_, PyAny>, code: char) -> PyResult<Self> {
                if code == 'c' {
                    let b = v.cast::<PyBytes>().map_err(|_| {
                        PyTypeError::new_err("a 'c' element is a bytes object of length 1")
                    })?;
                    return match b.as_bytes() {
                        [x] => Ok(*x as $t),
                        _ => Err(PyTypeError::new_err(
                            "a 'c' element is a bytes object of length 1",
                        )),
                    };
                }
                v.extract::<$t>()
            }
        }
    )*};
}
int_scalar!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! float_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_py(self, py: Python<'_>, _: char) -> PyResult<Py<PyAny>> {
                Ok((self as f64).into_pyobject(py)?.into_any().unbind())
            }
            fn from_py(v: &Bound<'_, PyAny>, _: char) -> PyResult<Self> {
                Ok(v.extract::<f64>()? as $t)
            }
        }
    )*};
}
float_scalar!(f32, f64);

// --------------------------------------------------------------- arrays

/// What a `Value` or `Array` does with its cells, whatever their type.
trait Cells: Send + Sync {
    fn len(&self) -> usize;
    fn code(&self) -> char;
    fn name(&self) -> Option<String>;
    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>>;
    fn set(&self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()>;
    fn fetch_add(&self, py: Python<'_>, i: usize, v: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>>;
    fn compare_exchange(
        &self,
        py: Python<'_>,
        i: usize,
        current: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, Py<PyAny>)>;
    /// Address and byte length of the cells, for `__array_interface__`.
    fn memory(&self) -> (usize, usize);
    /// numpy's type string of an element (`'<i4'`, `'<f8'`, `'|S1'`).
    fn typestr(&self) -> String;
    /// Take the array's lock, waiting at most `wait`.
    fn lock_for(&self, wait: Duration) -> Acquired<'_>;
}

/// A lock attempt's outcome, with the guard if it was taken.
enum Acquired<'a> {
    Plain(Box<dyn Guard + 'a>),
    OwnerDied(Box<dyn Guard + 'a>),
    Timeout,
}

/// A held lock of any kind: dropping it releases the lock.
trait Guard: Send + Sync {
    fn mark_consistent(&mut self);
}

impl Guard for shmkit::LockGuard<'_> {
    fn mark_consistent(&mut self) {
        shmkit::LockGuard::mark_consistent(self)
    }
}

impl<T: Element> Guard for shmkit::ArrayGuard<'_, T> {
    fn mark_consistent(&mut self) {
        shmkit::ArrayGuard::mark_consistent(self)
    }
}

fn acquired<'a, G: Guard + 'a>(r: Result<G, LockError<G>>) -> Acquired<'a> {
    match r {
        Ok(g) => Acquired::Plain(Box::new(g)),
        Err(LockError::OwnerDied(g)) => Acquired::OwnerDied(Box::new(g)),
        Err(LockError::Timeout | LockError::WouldBlock) => Acquired::Timeout,
    }
}

struct Typed<T: Element> {
    arr: SharedArray<T>,
    code: char,
}

impl<T: Scalar> Typed<T> {
    fn cell(&self, i: usize) -> PyResult<&shmkit::Atomic<T>> {
        self.arr
            .get(i)
            .ok_or_else(|| PyIndexError::new_err("array index out of range"))
    }
}

impl<T: Scalar> Cells for Typed<T> {
    fn len(&self) -> usize {
        self.arr.len()
    }
    fn code(&self) -> char {
        self.code
    }
    fn name(&self) -> Option<String> {
        self.arr.name().map(str::to_owned)
    }
    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        // SeqCst, as multiprocessing's locked Value reads: every process
        // agrees on one order of all reads and writes of the cells.
        self.cell(i)?.load(Ordering::SeqCst).to_py(py, self.code)
    }
    fn set(&self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = T::from_py(v, self.code)?;
        self.cell(i)?.store(x, Ordering::SeqCst);
        Ok(())
    }
    fn fetch_add(&self, py: Python<'_>, i: usize, v: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let x = T::from_py(v, self.code)?;
        self.cell(i)?
            .fetch_add(x, Ordering::SeqCst)
            .to_py(py, self.code)
    }
    fn compare_exchange(
        &self,
        py: Python<'_>,
        i: usize,
        current: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, Py<PyAny>)> {
        let (c, n) = (T::from_py(current, self.code)?, T::from_py(new, self.code)?);
        match self
            .cell(i)?
            .compare_exchange(c, n, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(old) => Ok((true, old.to_py(py, self.code)?)),
            Err(now) => Ok((false, now.to_py(py, self.code)?)),
        }
    }
    fn memory(&self) -> (usize, usize) {
        let cells = self.arr.cells();
        (cells.as_ptr() as usize, std::mem::size_of_val(cells))
    }
    fn typestr(&self) -> String {
        let kind = match self.code {
            'c' => return "|S1".into(),
            'f' | 'd' => 'f',
            'B' | 'H' | 'I' | 'L' | 'Q' => 'u',
            _ => 'i',
        };
        format!("<{kind}{}", size_of::<T>())
    }
    fn lock_for(&self, wait: Duration) -> Acquired<'_> {
        acquired(self.arr.lock_timeout(wait))
    }
}

/// The typecodes `Value` and `Array` take, as in the `array` module.
const TYPECODES: &str = "bBhHiIlLqQfdc";

fn open_cells(code: char, name: &str, make: Make<'_>) -> PyResult<Arc<dyn Cells>> {
    fn typed<T: Scalar>(code: char, name: &str, make: Make<'_>) -> PyResult<Arc<dyn Cells>> {
        let arr = match make {
            Make::Open => SharedArray::<T>::open(name),
            Make::Create(init) => {
                let values = init
                    .iter()
                    .map(|v| T::from_py(v, code))
                    .collect::<PyResult<Vec<T>>>()?;
                SharedArray::<T>::create_from(name, &values)
            }
            Make::Zeroed(len) => SharedArray::<T>::create(name, len),
        }
        .map_err(py_err)?;
        Ok(Arc::new(Typed { arr, code }))
    }
    match code {
        'b' => typed::<i8>(code, name, make),
        'B' | 'c' => typed::<u8>(code, name, make),
        'h' => typed::<i16>(code, name, make),
        'H' => typed::<u16>(code, name, make),
        'i' => typed::<i32>(code, name, make),
        'I' => typed::<u32>(code, name, make),
        'l' | 'q' => typed::<i64>(code, name, make),
        'L' | 'Q' => typed::<u64>(code, name, make),
        'f' => typed::<f32>(code, name, make),
        'd' => typed::<f64>(code, name, make),
        _ => Err(PyValueError::new_err(format!(
            "bad typecode {code:?} (must be one of {TYPECODES:?}; ctypes types are not supported)"
        ))),
    }
}

enum Make<'a> {
    Open,
    Create(&'a [Bound<'a, PyAny>]),
    Zeroed(usize),
}

fn typecode(s: &str) -> PyResult<char> {
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if TYPECODES.contains(c) => Ok(c),
        _ => Err(PyValueError::new_err(format!(
            "bad typecode {s:?} (must be one of {TYPECODES:?})"
        ))),
    }
}

// ----------------------------------------------------------------- locks

/// The lock inside every `Value` and `Array`, or a standalone `Lock`, as
/// Python's `Lock`: `acquire`, `release`, and a context manager.
#[pyclass(module = "shmkit", name = "Lock")]
struct PyLock {
    target: LockTarget,
    held: Mutex<Held>,
}

/// The guard this handle holds, and the pid of the process that took it.
#[derive(Default)]
struct Held(Option<(u32, Box<dyn Guard + 'static>)>);

impl Held {
    /// The guard, if this process took it. A guard copied into a forked
    /// child is the parent's: it is forgotten, never dropped (dropping it
    /// would release the parent's lock from the child).
    fn mine(&mut self) -> &mut Option<(u32, Box<dyn Guard + 'static>)> {
        if self.0.as_ref().is_some_and(|(pid, _)| *pid != this_pid())
            && let Some(inherited) = self.0.take()
        {
            std::mem::forget(inherited);
        }
        &mut self.0
    }
}

enum LockTarget {
    Standalone(Arc<ShmLock>),
    Cells(Arc<dyn Cells>),
}

impl LockTarget {
    fn try_for(&self, wait: Duration) -> Acquired<'static> {
        let got = match self {
            LockTarget::Standalone(l) => acquired(l.lock_timeout(wait)),
            LockTarget::Cells(c) => c.lock_for(wait),
        };
        // SAFETY: the guard borrows the lock's memory, which lives in the
        // segment behind the `Arc` this `PyLock` holds in `target`. The
        // guard is kept only in `PyLock::held`, and `PyLock`'s `Drop` takes
        // it out and drops it before `target` goes, so it never outlives
        // the memory; the 'static is never observed past that.
        unsafe { std::mem::transmute::<Acquired<'_>, Acquired<'static>>(got) }
    }
}

impl Drop for PyLock {
    fn drop(&mut self) {
        // Release before the mapping goes (see `LockTarget::try_for`); a
        // guard inherited across fork is forgotten by `mine`.
        poisoned(&self.held).mine().take();
    }
}

fn poisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PyLock {
    fn new(target: LockTarget) -> Self {
        PyLock {
            target,
            held: Mutex::new(Held::default()),
        }
    }

    /// Acquire, waiting until `deadline`, in slices that let signal
    /// handlers run. `Ok(None)`: timed out. `Ok(Some(died))`: held.
    fn acquire_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Option<bool>> {
        if poisoned(&self.held).mine().is_some() {
            return Err(PyRuntimeError::new_err(
                "this handle already holds the lock (shmkit's Lock is not recursive); \
                 release it first, or use another handle",
            ));
        }
        loop {
            let wait = slice_until(deadline).unwrap_or(Duration::ZERO);
            let got = py.detach(|| self.target.try_for(wait));
            match got {
                Acquired::Plain(g) => {
                    *poisoned(&self.held).mine() = Some((this_pid(), g));
                    return Ok(Some(false));
                }
                Acquired::OwnerDied(g) => {
                    *poisoned(&self.held).mine() = Some((this_pid(), g));
                    return Ok(Some(true));
                }
                Acquired::Timeout => {
                    if slice_until(deadline).is_none() {
                        return Ok(None);
                    }
                    py.check_signals()?;
                }
            }
        }
    }
}

#[pymethods]
impl PyLock {
    /// Create a new lock (in a new segment), or open lock `name`.
    #[new]
    #[pyo3(signature = (*, name = None))]
    fn py_new(name: Option<String>) -> PyResult<Self> {
        let lock = match name {
            Some(n) => ShmLock::open(&n),
            None => ShmLock::create(&fresh_name("lock")),
        }
        .map_err(py_err)?;
        Ok(PyLock::new(LockTarget::Standalone(Arc::new(lock))))
    }

    /// Take the lock. `block=False` never waits; `timeout` (seconds) bounds
    /// the wait. Returns whether the lock was taken. If the previous holder
    /// died holding it, the lock is taken all the same and `OwnerDiedError`
    /// is raised: repair the data, call `mark_consistent()`, then `release()`.
    #[pyo3(signature = (block = true, timeout = None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        let until = if block {
            deadline(timeout)?
        } else {
            Some(Instant::now())
        };
        match self.acquire_until(py, until)? {
            None => Ok(false),
            Some(false) => Ok(true),
            Some(true) => Err(OwnerDiedError::new_err(
                "the previous holder died while holding the lock; it is now held by this \
                 process: repair the data, call mark_consistent(), then release()",
            )),
        }
    }

    /// Release the lock this handle holds.
    fn release(&self) -> PyResult<()> {
        match poisoned(&self.held).mine().take() {
            Some(g) => {
                drop(g);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("release unlocked lock")),
        }
    }

    /// After an `OwnerDiedError`: the data is consistent again, so later
    /// acquirers get the lock plainly.
    fn mark_consistent(&self) -> PyResult<()> {
        match poisoned(&self.held).mine().as_mut() {
            Some((_, g)) => {
                g.mark_consistent();
                Ok(())
            }
            None => Err(PyRuntimeError::new_err(
                "mark_consistent() needs the lock held by this handle",
            )),
        }
    }

    /// Whether this handle holds the lock.
    fn held(&self) -> bool {
        poisoned(&self.held).mine().is_some()
    }

    /// `with lock:` takes the lock. If its previous holder died, the lock
    /// is released again (still marked for repair, so the next acquirer
    /// hears of it too) and `OwnerDiedError` is raised: a `with` block
    /// never leaves the lock held behind an exception.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let died = slf.borrow().acquire_until(slf.py(), None)?;
        if died == Some(true) {
            poisoned(&slf.borrow().held).mine().take();
            return Err(OwnerDiedError::new_err(
                "the previous holder died while holding the lock: the data may be \
                 half-updated; repair it under acquire() and call mark_consistent()",
            ));
        }
        Ok(slf)
    }

    fn __exit__(
        &self,
        _t: Option<Bound<'_, PyAny>>,
        _v: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    /// The lock's segment name (standalone locks); `None` for the lock of
    /// a `Value` or `Array` (pickle the value instead).
    #[getter]
    fn name(&self) -> Option<String> {
        match &self.target {
            LockTarget::Standalone(l) => l.name().map(str::to_owned),
            LockTarget::Cells(_) => None,
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let name = slf.borrow().name().ok_or_else(|| {
            PyTypeError::new_err("pickle the Value or Array whose get_lock() this is")
        })?;
        let open = py.import("shmkit._shmkit")?.getattr("_open_lock")?;
        PyTuple::new(py, [open.into_any(), PyTuple::new(py, [name])?.into_any()])
    }

    fn __repr__(&self) -> String {
        let state = if self.held() {
            "held here"
        } else {
            "not held here"
        };
        match self.name() {
            Some(n) => format!("<shmkit.Lock {n:?} ({state})>"),
            None => format!("<shmkit.Lock of a Value/Array ({state})>"),
        }
    }
}

// -------------------------------------------------------- Value and Array

/// Shared state of `Value` and `Array`.
struct Shared {
    cells: Arc<dyn Cells>,
    lock: Py<PyLock>,
}

impl Shared {
    fn new(py: Python<'_>, cells: Arc<dyn Cells>) -> PyResult<Self> {
        let lock = Py::new(py, PyLock::new(LockTarget::Cells(cells.clone())))?;
        Ok(Shared { cells, lock })
    }

    fn reduce<'py>(&self, py: Python<'py>, opener: &str) -> PyResult<Bound<'py, PyTuple>> {
        let name = self
            .cells
            .name()
            .ok_or_else(|| PyTypeError::new_err("an anonymous segment cannot be pickled"))?;
        let open = py.import("shmkit._shmkit")?.getattr(opener)?;
        let code = self.cells.code().to_string();
        PyTuple::new(
            py,
            [open.into_any(), PyTuple::new(py, [name, code])?.into_any()],
        )
    }
}

/// A shared scalar: `multiprocessing.Value` whose arithmetic needs no lock.
#[pyclass(module = "shmkit", name = "Value")]
struct PyValue {
    s: Shared,
}

#[pymethods]
impl PyValue {
    /// `Value(typecode, value=0)`: a new shared value, as
    /// `multiprocessing.Value`. `lock` is accepted for compatibility: every
    /// value has its lock (`get_lock()`), and reads and writes are atomic
    /// without it.
    #[new]
    #[pyo3(signature = (typecode, value = None, *, lock = true))]
    fn py_new(
        py: Python<'_>,
        typecode: &str,
        value: Option<Bound<'_, PyAny>>,
        lock: bool,
    ) -> PyResult<Self> {
        let _ = lock;
        let code = self::typecode(typecode)?;
        let init = match value {
            Some(v) => vec![v],
            None if code == 'c' => vec![PyBytes::new(py, b"\0").into_any()],
            None => vec![0i64.into_pyobject(py)?.into_any()],
        };
        let cells = open_cells(code, &fresh_name("value"), Make::Create(&init))?;
        Ok(PyValue {
            s: Shared::new(py, cells)?,
        })
    }

    /// The value (an atomic load; assigning stores atomically).
    #[getter]
    fn get_value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.s.cells.get(py, 0)
    }

    #[setter]
    fn set_value(&self, v: Bound<'_, PyAny>) -> PyResult<()> {
        self.s.cells.set(0, &v)
    }

    /// Add `v` atomically (no lock): `v.add(1)` is the safe `v.value += 1`.
    fn add(&self, py: Python<'_>, v: Bound<'_, PyAny>) -> PyResult<()> {
        self.s.cells.fetch_add(py, 0, &v).map(drop)
    }

    /// Add `v` atomically and return the value before.
    fn fetch_add(&self, py: Python<'_>, v: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.s.cells.fetch_add(py, 0, &v)
    }

    /// Store `new` if the value is `current`. Returns `(stored, value)`:
    /// the value before when stored, else the value found.
    fn compare_exchange(
        &self,
        py: Python<'_>,
        current: Bound<'_, PyAny>,
        new: Bound<'_, PyAny>,
    ) -> PyResult<(bool, Py<PyAny>)> {
        self.s.cells.compare_exchange(py, 0, &current, &new)
    }

    /// The value's lock, for multi-step updates (as `multiprocessing`).
    fn get_lock(&self, py: Python<'_>) -> Py<PyLock> {
        self.s.lock.clone_ref(py)
    }

    /// The typecode.
    #[getter]
    fn typecode(&self) -> String {
        self.s.cells.code().to_string()
    }

    /// The segment's name (what pickling passes).
    #[getter]
    fn name(&self) -> Option<String> {
        self.s.cells.name()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.s.reduce(py, "_open_value")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.s.cells.get(py, 0)?;
        Ok(format!(
            "<shmkit.Value {:?} {}>",
            self.s.cells.code(),
            v.bind(py).repr()?
        ))
    }
}

/// A shared array: `multiprocessing.Array` whose cells are atomics.
#[pyclass(module = "shmkit", name = "Array", sequence)]
struct PyArray {
    s: Shared,
}

impl PyArray {
    fn index(&self, i: isize) -> PyResult<usize> {
        let n = self.s.cells.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if (0..n).contains(&j) {
            Ok(j as usize)
        } else {
            Err(PyIndexError::new_err("array index out of range"))
        }
    }
}

#[pymethods]
impl PyArray {
    /// `Array(typecode, size_or_initializer)`: a new shared array, as
    /// `multiprocessing.Array` (zeros, or a copy of the sequence given).
    #[new]
    #[pyo3(signature = (typecode, size_or_initializer, *, lock = true))]
    fn py_new(
        py: Python<'_>,
        typecode: &str,
        size_or_initializer: Bound<'_, PyAny>,
        lock: bool,
    ) -> PyResult<Self> {
        let _ = lock;
        let code = self::typecode(typecode)?;
        let name = fresh_name("array");
        let cells = if let Ok(n) = size_or_initializer.extract::<isize>() {
            if n <= 0 {
                return Err(PyValueError::new_err(format!(
                    "an array needs at least 1 element, not {n}"
                )));
            }
            open_cells(code, &name, Make::Zeroed(n as usize))?
        } else if code == 'c' && size_or_initializer.is_instance_of::<PyBytes>() {
            let b = size_or_initializer.cast::<PyBytes>()?.as_bytes().to_vec();
            let items: Vec<Bound<'_, PyAny>> = b
                .iter()
                .map(|x| PyBytes::new(py, &[*x]).into_any())
                .collect();
            open_cells(code, &name, Make::Create(&items))?
        } else {
            let items: Vec<Bound<'_, PyAny>> =
                size_or_initializer.try_iter()?.collect::<PyResult<_>>()?;
            if items.is_empty() {
                return Err(PyValueError::new_err("an array needs at least 1 element"));
            }
            open_cells(code, &name, Make::Create(&items))?
        };
        Ok(PyArray {
            s: Shared::new(py, cells)?,
        })
    }

    fn __len__(&self) -> usize {
        self.s.cells.len()
    }

    fn __getitem__(&self, py: Python<'_>, key: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let ix = slice.indices(self.s.cells.len() as isize)?;
            let mut out = Vec::with_capacity(ix.slicelength);
            let mut i = ix.start;
            for _ in 0..ix.slicelength {
                out.push(self.s.cells.get(py, i as usize)?);
                i += ix.step;
            }
            if self.s.cells.code() == 'c' {
                let bytes: Vec<u8> = out
                    .iter()
                    .map(|b| b.bind(py).cast::<PyBytes>().map(|b| b.as_bytes()[0]))
                    .collect::<Result<_, _>>()?;
                return Ok(PyBytes::new(py, &bytes).into_any().unbind());
            }
            return Ok(pyo3::types::PyList::new(py, out)?.into_any().unbind());
        }
        let i = self.index(key.extract::<isize>()?)?;
        self.s.cells.get(py, i)
    }

    fn __setitem__(&self, key: Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let ix = slice.indices(self.s.cells.len() as isize)?;
            let values: Vec<Bound<'_, PyAny>> =
                if self.s.cells.code() == 'c' && value.is_instance_of::<PyBytes>() {
                    let py = value.py();
                    value
                        .cast::<PyBytes>()?
                        .as_bytes()
                        .iter()
                        .map(|x| PyBytes::new(py, &[*x]).into_any())
                        .collect()
                } else {
                    value.try_iter()?.collect::<PyResult<_>>()?
                };
            if values.len() != ix.slicelength {
                return Err(PyValueError::new_err(format!(
                    "can only assign {} values to this slice, not {}",
                    ix.slicelength,
                    values.len()
                )));
            }
            let mut i = ix.start;
            for v in &values {
                self.s.cells.set(i as usize, v)?;
                i += ix.step;
            }
            return Ok(());
        }
        let i = self.index(key.extract::<isize>()?)?;
        self.s.cells.set(i, &value)
    }

    /// Add `v` to element `i` atomically (no lock).
    fn add(&self, py: Python<'_>, i: isize, v: Bound<'_, PyAny>) -> PyResult<()> {
        let i = self.index(i)?;
        self.s.cells.fetch_add(py, i, &v).map(drop)
    }

    /// Add `v` to element `i` atomically and return its value before.
    fn fetch_add(&self, py: Python<'_>, i: isize, v: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let i = self.index(i)?;
        self.s.cells.fetch_add(py, i, &v)
    }

    /// Store `new` in element `i` if it holds `current`; see
    /// `Value.compare_exchange`.
    fn compare_exchange(
        &self,
        py: Python<'_>,
        i: isize,
        current: Bound<'_, PyAny>,
        new: Bound<'_, PyAny>,
    ) -> PyResult<(bool, Py<PyAny>)> {
        let i = self.index(i)?;
        self.s.cells.compare_exchange(py, i, &current, &new)
    }

    /// The array's lock, for multi-element updates.
    fn get_lock(&self, py: Python<'_>) -> Py<PyLock> {
        self.s.lock.clone_ref(py)
    }

    /// numpy's zero-copy view: `numpy.asarray(arr)` sees the shared memory
    /// itself (numpy keeps the array alive while the view exists).
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (addr, _) = self.s.cells.memory();
        let d = PyDict::new(py);
        d.set_item("shape", (self.s.cells.len(),))?;
        d.set_item("typestr", self.s.cells.typestr())?;
        d.set_item("data", (addr, false))?;
        d.set_item("version", 3)?;
        Ok(d)
    }

    #[getter]
    fn typecode(&self) -> String {
        self.s.cells.code().to_string()
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.s.cells.name()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.s.reduce(py, "_open_array")
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Array {:?} of {} elements>",
            self.s.cells.code(),
            self.s.cells.len()
        )
    }
}

/// Unpickling a `Value`: open the named segment.
#[pyfunction]
fn _open_value(py: Python<'_>, name: &str, typecode: &str) -> PyResult<PyValue> {
    let cells = open_cells(self::typecode(typecode)?, name, Make::Open)?;
    if cells.len() != 1 {
        return Err(PyValueError::new_err(format!(
            "segment {name:?} is an array of {} elements, not a Value",
            cells.len()
        )));
    }
    Ok(PyValue {
        s: Shared::new(py, cells)?,
    })
}

/// Unpickling a `Lock`: open the named segment.
#[pyfunction]
fn _open_lock(name: &str) -> PyResult<PyLock> {
    let lock = ShmLock::open(name).map_err(py_err)?;
    Ok(PyLock::new(LockTarget::Standalone(Arc::new(lock))))
}

/// Unpickling an `Array`: open the named segment.
#[pyfunction]
fn _open_array(py: Python<'_>, name: &str, typecode: &str) -> PyResult<PyArray> {
    let cells = open_cells(self::typecode(typecode)?, name, Make::Open)?;
    Ok(PyArray {
        s: Shared::new(py, cells)?,
    })
}

// ----------------------------------------------------------------- pipes

/// One end of a pipe, opened in this process on first use: a pipe end
/// pickled to a child is only claimed there, where it is used.
#[pyclass(module = "shmkit._shmkit", name = "PipeEnd")]
struct PipeEnd {
    name: String,
    side: char,
    /// The pipe's segments, kept mapped by the creating handle (whose drop
    /// removes the names).
    pipe: Mutex<Option<Pipe>>,
    conn: Mutex<Option<(u32, Connection)>>,
}

impl PipeEnd {
    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> PyResult<R> {
        let mut c = poisoned(&self.conn);
        let pid = this_pid();
        if c.as_ref().is_none_or(|(p, _)| *p != pid) {
            let mut p = poisoned(&self.pipe);
            if p.is_none() {
                *p = Some(Pipe::open(&self.name).map_err(py_err)?);
            }
            let pipe = p.as_ref().expect("set above");
            let conn = if self.side == 'a' {
                pipe.end_a()
            } else {
                pipe.end_b()
            }
            .map_err(py_err)?;
            // A connection inherited across fork belongs to the parent: it
            // is forgotten, not dropped (dropping would close the parent's
            // direction).
            if let Some(old) = c.take() {
                std::mem::forget(old);
            }
            *c = Some((pid, conn));
        }
        Ok(f(&mut c.as_mut().expect("set above").1))
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        // A connection copied into a forked child is the parent's: dropping
        // it would close the parent's sending direction. Forget it.
        let mut c = poisoned(&self.conn);
        if c.as_ref().is_some_and(|(pid, _)| *pid != this_pid())
            && let Some(inherited) = c.take()
        {
            std::mem::forget(inherited);
        }
    }
}

fn send_err(e: SendError) -> PyErr {
    match e {
        SendError::Disconnected | SendError::Closed => PyBrokenPipeError::new_err(e.to_string()),
        SendError::Timeout | SendError::Full => PyTimeoutError::new_err(e.to_string()),
        SendError::TooLarge { .. } => PyValueError::new_err(e.to_string()),
        SendError::Corrupt(_) => CorruptError::new_err(e.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn pop_err(e: PopError) -> PyErr {
    match e {
        PopError::Disconnected => PyEOFError::new_err(e.to_string()),
        PopError::Timeout | PopError::Empty => PyTimeoutError::new_err(e.to_string()),
        PopError::Corrupt(_) => CorruptError::new_err(e.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

#[pymethods]
impl PipeEnd {
    /// `PipeEnd(name, side)`: end `'a'` or `'b'` of pipe `name`.
    #[new]
    fn py_new(name: String, side: &str) -> PyResult<Self> {
        let side = match side {
            "a" => 'a',
            "b" => 'b',
            _ => return Err(PyValueError::new_err("side is 'a' or 'b'")),
        };
        Ok(PipeEnd {
            name,
            side,
            pipe: Mutex::new(None),
            conn: Mutex::new(None),
        })
    }

    /// Create a new pipe of `capacity` frames each way; returns its name.
    #[staticmethod]
    fn create(capacity: usize) -> PyResult<(String, PipeEnd, PipeEnd)> {
        let name = fresh_name("pipe");
        let pipe = Pipe::create(&name, capacity).map_err(py_err)?;
        let a = PipeEnd::py_new(name.clone(), "a")?;
        *poisoned(&a.pipe) = Some(pipe.clone());
        let b = PipeEnd::py_new(name.clone(), "b")?;
        *poisoned(&b.pipe) = Some(pipe);
        Ok((name, a, b))
    }

    /// Send one message, waiting (GIL released, Ctrl-C honoured) while the
    /// other end's buffer is full.
    fn send_bytes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        loop {
            let r = py.detach(|| self.with(|c| c.send_bytes_timeout(data, SLICE)))?;
            match r {
                Ok(()) => return Ok(()),
                Err(SendError::Timeout) => py.check_signals()?,
                Err(e) => return Err(send_err(e)),
            }
        }
    }

    /// Receive one message; `timeout` seconds at most (`None`: wait).
    /// `EOFError` once the other end is closed and everything was read.
    #[pyo3(signature = (timeout = None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let until = deadline(timeout)?;
        loop {
            let wait = slice_until(until).unwrap_or(Duration::ZERO);
            let r = py.detach(|| self.with(|c| c.recv_bytes_timeout(wait)))?;
            match r {
                Ok(v) => return Ok(PyBytes::new(py, &v)),
                Err(PopError::Timeout) if slice_until(until).is_some() => py.check_signals()?,
                Err(e) => return Err(pop_err(e)),
            }
        }
    }

    /// Whether a message is waiting; with `timeout`, wait that long for one.
    #[pyo3(signature = (timeout = 0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let until = deadline(timeout)?;
        loop {
            if self.with(|c| c.poll())? {
                return Ok(true);
            }
            let Some(wait) = slice_until(until) else {
                return Ok(false);
            };
            py.detach(|| std::thread::sleep(wait.min(Duration::from_micros(200))));
            py.check_signals()?;
        }
    }

    /// The longest message this end sends.
    fn max_message_len(&self) -> PyResult<usize> {
        self.with(|c| c.max_message_len())
    }

    /// Close the sending direction (the other end reads what was sent,
    /// then gets `EOFError`).
    fn close(&self) -> PyResult<()> {
        let mut c = poisoned(&self.conn);
        if let Some((pid, conn)) = c.as_mut()
            && *pid == this_pid()
        {
            conn.close();
        }
        Ok(())
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[getter]
    fn side(&self) -> String {
        self.side.to_string()
    }
}

// ------------------------------------------------------------ namespace

// The record a `Namespace` keeps its pickled dict in: its length, then the
// bytes. Two sizes, so a small namespace does not copy 64 KiB on each read.
shmkit::record! {
    #[name = "shmkit.py.Namespace4K/1"]
    struct Blob4K {
        len: u64,
        data: [u8; 4088],
    }
}
shmkit::record! {
    #[name = "shmkit.py.Namespace64K/1"]
    struct Blob64K {
        len: u64,
        data: [u8; 65528],
    }
}

/// What the namespace needs of a blob record, whatever its size.
trait Blob: shmkit::ShmType + Send + Sync {
    const CAPACITY: usize;
    fn new(bytes: &[u8]) -> Self;
    fn bytes(&self) -> PyResult<&[u8]>;
    fn set(&mut self, bytes: &[u8]);
}

macro_rules! blob {
    ($($ty:ident),*) => {$(
        impl Blob for $ty {
            const CAPACITY: usize = std::mem::size_of::<$ty>() - 8;
            fn new(bytes: &[u8]) -> Self {
                let mut b: $ty = shmkit::Zeroable::zeroed();
                b.set(bytes);
                b
            }
            fn bytes(&self) -> PyResult<&[u8]> {
                // The length comes from shared memory: checked, never trusted.
                usize::try_from(self.len)
                    .ok()
                    .and_then(|n| self.data.get(..n))
                    .ok_or_else(|| {
                        CorruptError::new_err(format!(
                            "a namespace records {} bytes in a record of {}",
                            self.len,
                            Self::CAPACITY
                        ))
                    })
            }
            fn set(&mut self, bytes: &[u8]) {
                self.data[..bytes.len()].copy_from_slice(bytes);
                self.len = bytes.len() as u64;
            }
        }
    )*};
}
blob!(Blob4K, Blob64K);

/// A `SharedCell` of a blob, whatever its size.
trait BlobCell: Send + Sync {
    fn capacity(&self) -> usize;
    fn name(&self) -> Option<String>;
    fn load(&self) -> PyResult<Vec<u8>>;
    fn version(&self) -> PyResult<u64>;
    /// Under the writers' lock (waiting at most `wait`): the current bytes
    /// through `f`, and what it returns stored. `None`: the wait ran out.
    fn update(
        &self,
        wait: Duration,
        f: &mut dyn FnMut(&[u8]) -> PyResult<Vec<u8>>,
    ) -> PyResult<Option<()>>;
}

impl<B: Blob> BlobCell for SharedCell<B> {
    fn capacity(&self) -> usize {
        B::CAPACITY
    }
    fn name(&self) -> Option<String> {
        self.segment()?.name().map(str::to_owned)
    }
    fn load(&self) -> PyResult<Vec<u8>> {
        let rec = SharedCell::load(self).map_err(py_err)?;
        Ok(rec.bytes()?.to_vec())
    }
    fn version(&self) -> PyResult<u64> {
        SharedCell::version(self).map_err(py_err)
    }
    fn update(
        &self,
        wait: Duration,
        f: &mut dyn FnMut(&[u8]) -> PyResult<Vec<u8>>,
    ) -> PyResult<Option<()>> {
        let r = self.update_timeout(wait, |rec| -> PyResult<()> {
            // Everything that can fail comes before the record changes: on
            // an error it is written back as it was.
            let new = f(rec.bytes()?)?;
            if new.len() > B::CAPACITY {
                return Err(too_big(new.len(), B::CAPACITY));
            }
            rec.set(&new);
            Ok(())
        });
        match r {
            Ok(r) => r.map(Some),
            Err(CellError::Timeout) => Ok(None),
            Err(CellError::Failed(e)) => Err(py_err(e)),
        }
    }
}

fn too_big(len: usize, cap: usize) -> PyErr {
    PyValueError::new_err(format!(
        "the namespace's fields pickle to {len} bytes, more than its {cap}: \
         create it with a larger _size (at most {})",
        Blob64K::CAPACITY
    ))
}

/// The shared record behind a `shmkit.Namespace`: a pickled dict in a
/// `SharedCell`, read lock-free and consistent, written under its lock.
#[pyclass(module = "shmkit._shmkit", name = "_Blob")]
struct PyBlob {
    cell: Box<dyn BlobCell>,
}

#[pymethods]
impl PyBlob {
    /// A new blob holding `initial`, in a record of 4 KiB (`size` up to
    /// 4096) or 64 KiB (up to 65536).
    #[new]
    fn py_new(size: usize, initial: &[u8]) -> PyResult<Self> {
        fn make<B: Blob + 'static>(initial: &[u8]) -> PyResult<Box<dyn BlobCell>> {
            if initial.len() > B::CAPACITY {
                return Err(too_big(initial.len(), B::CAPACITY));
            }
            let cell = SharedCell::create(&fresh_name("ns"), B::new(initial)).map_err(py_err)?;
            Ok(Box::new(cell))
        }
        // `size` is the record's: the pickled fields may fill all of it
        // but the 8-byte length.
        let cell = if size <= std::mem::size_of::<Blob4K>() {
            make::<Blob4K>(initial)?
        } else if size <= std::mem::size_of::<Blob64K>() {
            make::<Blob64K>(initial)?
        } else {
            return Err(PyValueError::new_err(format!(
                "a namespace's record is at most {} bytes, not {size}",
                std::mem::size_of::<Blob64K>()
            )));
        };
        Ok(PyBlob { cell })
    }

    /// The pickled dict as last stored (lock-free, never torn).
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = self.cell.load()?;
        Ok(PyBytes::new(py, &b))
    }

    /// Read-modify-write under the writers' lock: `f(bytes) -> bytes`.
    /// Waits in slices so Ctrl-C can interrupt; an exception from `f`
    /// leaves the record as it was.
    fn update(&self, py: Python<'_>, f: Bound<'_, PyAny>) -> PyResult<()> {
        loop {
            let mut call = |cur: &[u8]| -> PyResult<Vec<u8>> {
                let out = f.call1((PyBytes::new(py, cur),))?;
                let out = out
                    .cast::<PyBytes>()
                    .map_err(|_| PyTypeError::new_err("the update function must return bytes"))?;
                Ok(out.as_bytes().to_vec())
            };
            if self.cell.update(SLICE, &mut call)?.is_some() {
                return Ok(());
            }
            py.check_signals()?;
        }
    }

    /// Completed stores since creation.
    #[getter]
    fn version(&self) -> PyResult<u64> {
        self.cell.version()
    }

    /// The most bytes of pickled fields it holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.cell.capacity()
    }

    /// The segment's name (what pickling sends).
    #[getter]
    fn name(&self) -> Option<String> {
        self.cell.name()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let name = self
            .cell
            .name()
            .ok_or_else(|| PyTypeError::new_err("an anonymous namespace cannot be pickled"))?;
        let open = py.import("shmkit._shmkit")?.getattr("_open_blob")?;
        let args = PyTuple::new(
            py,
            [
                name.into_pyobject(py)?.into_any(),
                self.cell.capacity().into_pyobject(py)?.into_any(),
            ],
        )?;
        PyTuple::new(py, [open.into_any(), args.into_any()])
    }
}

/// Open a pickled `_Blob` by its name and capacity.
#[pyfunction]
fn _open_blob(name: &str, capacity: usize) -> PyResult<PyBlob> {
    let cell: Box<dyn BlobCell> = if capacity == Blob4K::CAPACITY {
        Box::new(SharedCell::<Blob4K>::open(name).map_err(py_err)?)
    } else if capacity == Blob64K::CAPACITY {
        Box::new(SharedCell::<Blob64K>::open(name).map_err(py_err)?)
    } else {
        return Err(PyValueError::new_err(format!(
            "no namespace holds {capacity} bytes"
        )));
    };
    Ok(PyBlob { cell })
}

mod codec;
mod queue;
use queue::{_open_queue, PyJoinableQueue, PyQueue};

/// The compiled module.
#[pymodule]
fn _shmkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyValue>()?;
    m.add_class::<PyArray>()?;
    m.add_class::<PyLock>()?;
    m.add_class::<PipeEnd>()?;
    m.add_class::<PyBlob>()?;
    m.add_class::<PyQueue>()?;
    m.add_class::<PyJoinableQueue>()?;
    m.add_function(wrap_pyfunction!(_open_queue, m)?)?;
    m.add_function(wrap_pyfunction!(_open_blob, m)?)?;
    m.add_function(wrap_pyfunction!(_open_value, m)?)?;
    m.add_function(wrap_pyfunction!(_open_array, m)?)?;
    m.add_function(wrap_pyfunction!(_open_lock, m)?)?;
    m.add("OwnerDiedError", py.get_type::<OwnerDiedError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    Ok(())
}

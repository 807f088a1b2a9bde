"""shmkit: multiprocessing's shared objects on lock-free shared memory.

Change one import line::

    import shmkit as mp          # instead of: import multiprocessing as mp

    counter = mp.Value('q', 0)
    counter.add(1)               # atomic, no lock, in any process
    with counter.get_lock():     # the lock is still there for multi-step work
        counter.value += 1

`Value` and `Array` live in shared-memory segments whose cells are atomics,
so `add`, `fetch_add` and `compare_exchange` need no lock. `Lock` survives
the death of its holder (the next acquirer gets `OwnerDiedError` instead of
waiting forever). `Pipe` moves messages through shared memory, not the
kernel. `Queue` and `JoinableQueue` carry objects (ints, floats, strs,
bytes, None and bools as they are, anything else pickled) between any
number of producer and consumer processes, and a consumer killed holding
an item does not hang `join()`. Every object is picklable by name, so it can be passed to a
`Process` (fork or spawn start method) or a pool worker.

`Process`, `current_process`, `cpu_count`, `get_context` and
`set_start_method` are multiprocessing's own, re-exported so that
``import shmkit as mp`` runs a multiprocessing program unchanged where it
uses only what shmkit provides.
"""

import pickle as _pickle
from multiprocessing import (  # noqa: F401  (re-exported)
    Process,
    cpu_count,
    current_process,
    get_context,
    set_start_method,
)

from ._shmkit import Array, CorruptError, JoinableQueue, Lock, OwnerDiedError, Queue, Value
from ._shmkit import _Blob
from ._shmkit import PipeEnd as _PipeEnd

__all__ = [
    "Array",
    "Connection",
    "CorruptError",
    "JoinableQueue",
    "Lock",
    "Namespace",
    "OwnerDiedError",
    "Pipe",
    "Process",
    "Queue",
    "Value",
    "cpu_count",
    "current_process",
    "get_context",
    "set_start_method",
]

# Frames of 56 bytes: about 900 KiB of messages in flight each way, and the
# longest single message a little less than that.
DEFAULT_PIPE_CAPACITY = 16384


class Connection:
    """One end of a `Pipe`: `send`/`recv` any picklable object,
    `send_bytes`/`recv_bytes` raw bytes, `poll` to see whether a message
    waits. Blocking calls release the GIL and honour Ctrl-C.

    `recv` raises `EOFError` once the other end is closed (or its process
    died) and everything it sent has been read; `send` raises
    `BrokenPipeError` when nobody is left to read.
    """

    __slots__ = ("_end", "_readable", "_writable")

    def __init__(self, end, readable=True, writable=True):
        self._end = end
        self._readable = readable
        self._writable = writable

    @property
    def readable(self):
        return self._readable

    @property
    def writable(self):
        return self._writable

    def _check(self, want_write):
        if want_write and not self._writable:
            raise OSError("connection is read-only")
        if not want_write and not self._readable:
            raise OSError("connection is write-only")

    def send(self, obj):
        """Send a picklable object."""
        self._check(True)
        self._end.send_bytes(_pickle.dumps(obj, protocol=_pickle.HIGHEST_PROTOCOL))

    def recv(self):
        """Receive an object sent with `send`."""
        self._check(False)
        return _pickle.loads(self._end.recv_bytes())

    def send_bytes(self, buf, offset=0, size=None):
        """Send bytes (or a slice of any bytes-like object) as one message."""
        self._check(True)
        view = memoryview(buf).cast("B")
        if offset < 0 or offset > len(view):
            raise ValueError("offset is out of range")
        end = len(view) if size is None else offset + size
        if size is not None and (size < 0 or end > len(view)):
            raise ValueError("size is out of range")
        self._end.send_bytes(bytes(view[offset:end]))

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes."""
        self._check(False)
        data = self._end.recv_bytes()
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def poll(self, timeout=0.0):
        """Whether a message is waiting; wait up to `timeout` seconds
        (`None`: until one is)."""
        self._check(False)
        return self._end.poll(timeout)

    def close(self):
        """Close the sending direction of this end."""
        self._end.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (
            _open_connection,
            (self._end.name, self._end.side, self._readable, self._writable),
        )

    def __repr__(self):
        return f"<shmkit.Connection {self._end.name!r} end {self._end.side}>"


def _open_connection(name, side, readable, writable):
    return Connection(_PipeEnd(name, side), readable, writable)


def Pipe(duplex=True, capacity=DEFAULT_PIPE_CAPACITY):
    """A pair of connected `Connection` objects, as `multiprocessing.Pipe`.

    With `duplex=False` the first can only receive and the second only send.
    `capacity` is the number of 56-byte frames buffered each way (a power of
    two); it bounds the longest message.
    """
    _, a, b = _PipeEnd.create(capacity)
    if duplex:
        return Connection(a), Connection(b)
    return Connection(b, writable=False), Connection(a, readable=False)


class Namespace:
    """`multiprocessing.Manager().Namespace()` without a manager process:
    named fields that every process holding it reads and writes.

    ::

        status = shmkit.Namespace(step=0, loss=1.0)
        status.step = 10                  # in any process
        status._update(step=11, loss=0.5) # several fields in one store
        snap = status._snapshot()         # {'step': 11, 'loss': 0.5}, never torn

    The fields live pickled in one shared record (a `SharedCell`): reading
    any field copies a consistent snapshot of all of them without a lock
    (never a mix of two stores), and writers take turns under a lock that
    survives a writer's death (a writer killed mid-store leaves the last
    complete record). As with the manager's Namespace, ``ns.x += 1`` is a
    read then a write, not atomic; ``ns._modify(f)`` runs ``f`` on the dict
    under the writers' lock for read-modify-write.

    Names starting with ``_`` are the namespace's own. ``_size`` (4096 by
    default, or up to 65536) is the shared record's size: all fields
    together, pickled, may take all of it but 8 bytes. A store that would
    exceed it raises ValueError and changes nothing.
    """

    __slots__ = ("_blob",)

    def __init__(self, _size=4096, **fields):
        object.__setattr__(self, "_blob", _Blob(_size, _pickle.dumps(fields)))

    @classmethod
    def _attach(cls, blob):
        ns = cls.__new__(cls)
        object.__setattr__(ns, "_blob", blob)
        return ns

    def __reduce__(self):
        return (Namespace._attach, (self._blob,))

    def _snapshot(self):
        """Every field, as one consistent dict."""
        return _pickle.loads(self._blob.load())

    def _modify(self, f):
        """Call ``f(fields)`` under the writers' lock and store the dict it
        changed in place; an exception from ``f`` stores nothing."""

        def step(raw):
            fields = _pickle.loads(raw)
            f(fields)
            return _pickle.dumps(fields)

        self._blob.update(step)

    def _update(self, **fields):
        """Set several fields in one store: readers see all or none."""
        self._modify(lambda d: d.update(fields))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._snapshot()[name]
        except KeyError:
            raise AttributeError(f"'Namespace' object has no attribute {name!r}") from None

    def __setattr__(self, name, value):
        if name.startswith("_"):
            raise AttributeError(f"names starting with '_' are the Namespace's own: {name!r}")
        self._update(**{name: value})

    def __delattr__(self, name):
        def drop(fields):
            if name not in fields:
                raise AttributeError(f"'Namespace' object has no attribute {name!r}")
            del fields[name]

        self._modify(drop)

    def __dir__(self):
        return sorted(set(self._snapshot()) | {"_snapshot", "_modify", "_update"})

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._snapshot().items())
        return f"Namespace({fields})"


"""`python -m shmkit.bench [--full]`: shmkit's Python objects against
multiprocessing's, side by side in one run, with the same worker counts.

Cases: a counter incremented by 2 processes (`Value.add` against
multiprocessing's `Value` under `get_lock()`), a `Pipe` round trip of a
small message between 2 processes, small ints through a `Queue` (1
producer and 1 consumer, then 2 and 2; against `multiprocessing.Queue`
and, if it is installed, `faster_fifo.Queue`), a field of a `Namespace` stored and
read back (against a `Manager().Namespace()`, whose fields live in the
manager's server process), and the sum of a shared array through numpy
(zero-copy on both sides). Workers are pinned to cores (worker i to
core i mod cores). Each figure is the median of the repetitions; the last
lines give the ratios (> 1: shmkit faster).
"""
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

import shmkit


def _pin(i):
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[i % len(cores)]})


def _count_shmkit(v, go, n, i):
    _pin(i)
    go.wait()
    for _ in range(n):
        v.add(1)


def _count_mp(v, go, n, i):
    _pin(i)
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _count_shmkit_locked(v, go, n, i):
    _pin(i)
    go.wait()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def _echo(conn, go, n, i):
    _pin(i)
    go.wait()
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def _produce(q, go, n, sentinels, i, as_bytes=False):
    _pin(i)
    go.wait()
    if as_bytes:
        # 16-byte bytes objects: the item's number, then padding.
        for x in range(n):
            q.put(x.to_bytes(8, "little") + b"........")
        for _ in range(sentinels):
            q.put(b"")
        return
    for x in range(n):
        q.put(x)
    for _ in range(sentinels):
        q.put(-1)


def _consume(q, go, out, producers, i, as_bytes=False):
    # Each producer ends with one sentinel per consumer; a consumer stops
    # at its `producers`-th, when every producer's items before them are
    # taken (items of one producer arrive in order, in every queue here).
    _pin(i)
    go.wait()
    count = total = ends = 0
    while ends < producers:
        x = q.get()
        if as_bytes:
            x = int.from_bytes(x[:8], "little") if x else -1
        if x == -1:
            ends += 1
        else:
            count += 1
            total += x
    out.put((count, total))


def queue_ints(n, make, producers, consumers, as_bytes=False):
    """Small ints (or 16-byte bytes objects numbering them) from
    `producers` to `consumers` processes; items/s, with the count and sum
    checked."""
    q = make()
    out = mp.get_context("fork").SimpleQueue()
    per = n // producers
    argsets = [(q, per, consumers, i, as_bytes) for i in range(producers)]
    argsets += [(q, out, producers, producers + j, as_bytes) for j in range(consumers)]
    targets = [_produce] * producers + [_consume] * consumers
    dt = _timed_each(targets, argsets)
    got = [out.get() for _ in range(consumers)]
    if sum(c for c, _ in got) != per * producers or \
            sum(t for _, t in got) != producers * per * (per - 1) // 2:
        raise SystemExit(f"queue lost or duplicated items: {got}")
    return per * producers / dt


def _timed(target, argsets):
    return _timed_each([target] * len(argsets), argsets)


def _timed_each(targets, argsets):
    ctx = mp.get_context("fork")
    # Every worker and this process meet at the start line; the clock starts
    # when all of them have arrived, so process start-up is not timed.
    go = ctx.Barrier(len(argsets) + 1)
    ps = [ctx.Process(target=t, args=a[:1] + (go,) + a[1:]) for t, a in zip(targets, argsets)]
    for p in ps:
        p.start()
    go.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a benchmark worker failed: {p.exitcode}")
    return time.perf_counter() - t0


def counter(n, make, target):
    v = make()
    dt = _timed(target, [(v, n, 0), (v, n, 1)])
    if v.value != 2 * n:
        raise SystemExit(f"counter ended at {v.value}, not {2 * n}")
    return 2 * n / dt


def pipe_round_trip(n, pipe):
    a, b = pipe()
    ctx = mp.get_context("fork")
    go = ctx.Barrier(2)
    p = ctx.Process(target=_echo, args=(b, go, n, 1))
    p.start()
    _pin(0)
    go.wait()
    msg = b"x" * 16
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
        if a.recv_bytes() != msg:
            raise SystemExit("pipe round trip corrupted a message")
    dt = time.perf_counter() - t0
    p.join()
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    return dt / n * 1e6  # microseconds per round trip


def numpy_sum(size, reps, arr, view):
    v = view(arr)
    v[:] = 1.0
    t0 = time.perf_counter()
    for _ in range(reps):
        s = v.sum()
    dt = (time.perf_counter() - t0) / reps
    if s != size:
        raise SystemExit("numpy sum is wrong")
    return size * 8 / dt / 1e9  # GB/s read


def cpu_model():
    """The CPU's model name as /proc/cpuinfo gives it (figures differ a lot
    between hosts, so every run says which one it ran on)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv):
    full = "--full" in argv
    reps = 5 if full else 3
    n = 200_000 if full else 50_000
    rows = {}

    def add(name, unit, f):
        xs = [f() for _ in range(reps)]
        rows[name] = (statistics.median(xs), min(xs), max(xs), unit)
        print(f"  .. {name:<36} {rows[name][0]:>12.4g} {unit}", file=sys.stderr)

    add("shmkit Value.add /2p", "ops/s",
        lambda: counter(n, lambda: shmkit.Value("q", 0), _count_shmkit))
    add("shmkit Value + get_lock /2p", "ops/s",
        lambda: counter(n // 4, lambda: shmkit.Value("q", 0), _count_shmkit_locked))
    add("multiprocessing Value + get_lock /2p", "ops/s",
        lambda: counter(n // 4, lambda: mp.Value("q", 0), _count_mp))
    add("shmkit Pipe round trip 16 B", "us",
        lambda: pipe_round_trip(n // 5, shmkit.Pipe))
    add("multiprocessing Pipe round trip 16 B", "us",
        lambda: pipe_round_trip(n // 5, mp.Pipe))
    queues = [("shmkit", shmkit.Queue), ("multiprocessing", mp.Queue)]
    try:
        import faster_fifo

        queues.append(("faster_fifo", lambda: faster_fifo.Queue(1 << 20)))
    except ImportError:
        print("  (faster_fifo not installed: no faster_fifo case)", file=sys.stderr)
    for pc in (1, 2):
        for qname, make in queues:
            add(f"{qname} Queue ints {pc}p{pc}c", "items/s",
                lambda make=make, pc=pc: queue_ints(n // 2, make, pc, pc))
    for qname, make in queues:
        add(f"{qname} Queue bytes16 1p1c", "items/s",
            lambda make=make: queue_ints(n // 2, make, 1, 1, as_bytes=True))

    def namespace_ops(n, ns):
        # One process reads and writes fields of a namespace another process
        # could read at any time (the manager's lives in its server process).
        ns.x = 0
        t0 = time.perf_counter()
        for i in range(n):
            ns.x = i
            if ns.x != i:
                raise SystemExit("namespace lost a store")
        return 2 * n / (time.perf_counter() - t0)

    add("shmkit Namespace set+get", "ops/s",
        lambda: namespace_ops(n // 10, shmkit.Namespace()))
    with mp.Manager() as manager:
        add("multiprocessing Manager Namespace set+get", "ops/s",
            lambda: namespace_ops(n // 100, manager.Namespace()))
    try:
        import numpy as np

        size = 1 << 22
        add("shmkit Array numpy sum", "GB/s",
            lambda: numpy_sum(size, 10, shmkit.Array("d", size), np.asarray))
        add("multiprocessing Array numpy sum", "GB/s",
            lambda: numpy_sum(size, 10, mp.Array("d", size, lock=False),
                              lambda a: np.frombuffer(a, dtype=np.float64)))
    except ImportError:
        print("  (numpy not installed: no array case)", file=sys.stderr)

    print(f"shmkit.bench on {os.cpu_count()} cores ({cpu_model()}), "
          f"Python {platform.python_version()}, {'full' if full else 'quick'} run")
    for name, (med, lo, hi, unit) in rows.items():
        print(f"{name:<40} {med:>12.4g} {unit:<6} [{lo:.4g} - {hi:.4g}]")
    print("ratios (> 1: shmkit faster):")

    def ratio(a, b, lower_is_better=False):
        if a in rows and b in rows:
            r = rows[b][0] / rows[a][0] if lower_is_better else rows[a][0] / rows[b][0]
            print(f"  {a}  vs  {b}: {r:.1f}x")

    ratio("shmkit Value.add /2p", "multiprocessing Value + get_lock /2p")
    ratio("shmkit Value + get_lock /2p", "multiprocessing Value + get_lock /2p")
    ratio("shmkit Pipe round trip 16 B", "multiprocessing Pipe round trip 16 B", True)
    for pc in (1, 2):
        for other in ("multiprocessing", "faster_fifo"):
            ratio(f"shmkit Queue ints {pc}p{pc}c", f"{other} Queue ints {pc}p{pc}c")
    for other in ("multiprocessing", "faster_fifo"):
        ratio("shmkit Queue bytes16 1p1c", f"{other} Queue bytes16 1p1c")
    ratio("shmkit Namespace set+get", "multiprocessing Manager Namespace set+get")
    ratio("shmkit Array numpy sum", "multiprocessing Array numpy sum")


if __name__ == "__main__":
    main(sys.argv[1:])

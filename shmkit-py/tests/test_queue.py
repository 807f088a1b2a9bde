"""Queue and JoinableQueue: several producer and consumer processes
(exactly once, per-producer order), bytes without pickling, size limits,
timeouts, join with task_done and with a consumer killed holding an item,
a ProcessPoolExecutor, and a forked child that does not reuse its
parent's handles."""
import concurrent.futures
import os
import queue
import signal

import pytest

import shmkit
from conftest import run

N = 300


def produce(q, k, n):
    for i in range(n):
        q.put((k, i))


def consume_until_none(q, results):
    # Count and sum what this consumer took, checking that each producer's
    # items arrive in order.
    last, count, total = {}, 0, 0
    while (item := q.get(timeout=30)) is not None:
        k, i = item
        assert i > last.get(k, -1), f"producer {k}: {i} after {last.get(k)}"
        last[k] = i
        count += 1
        total += i
    results.put((count, total))


def test_producers_times_consumers_exactly_once(ctx):
    q, results = shmkit.Queue(16), shmkit.Queue()
    producers, consumers = 3, 3
    cs = [ctx.Process(target=consume_until_none, args=(q, results)) for _ in range(consumers)]
    for c in cs:
        c.start()
    run(ctx, produce, [(q, k, N) for k in range(producers)])
    for _ in range(consumers):
        q.put(None)
    got = [results.get(timeout=60) for _ in range(consumers)]
    for c in cs:
        c.join(60)
        assert c.exitcode == 0
    assert sum(c for c, _ in got) == producers * N
    assert sum(t for _, t in got) == producers * N * (N - 1) // 2


def test_per_producer_fifo_one_consumer(ctx):
    q = shmkit.Queue(8)
    ps = [ctx.Process(target=produce, args=(q, k, N)) for k in range(2)]
    for p in ps:
        p.start()
    seen = {0: [], 1: []}
    for _ in range(2 * N):
        k, i = q.get(timeout=30)
        seen[k].append(i)
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert seen == {0: list(range(N)), 1: list(range(N))}


def test_bytes_travel_unpickled():
    # Two items of up to 200 bytes: 4 frames each (a kind byte + 200), so
    # a lane of 8 frames, the longest message 8 * 56 - 1 bytes.
    q = shmkit.Queue(2, itemsize=200)
    assert q.itemsize == 200 and q.lane_capacity == 8
    assert q.max_message_len == 447
    # Exactly as long as a lane holds: a pickle of it would not fit.
    full = bytes(range(256)) + bytes(191)
    q.put(full)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(b"")
    assert q.get() == full
    q.put(b"")
    q.put(bytearray(b"ab"))  # not bytes: pickled, and comes back a bytearray
    assert q.get() == b""
    got = q.get()
    assert type(got) is bytearray and got == b"ab"


class MyInt(int):
    pass


class MyStr(str):
    pass


# Ints, floats, strs, bytes, None and bools travel without pickle; their
# edges, and the things that must still be pickled (ints past 64 bits,
# subclasses, containers).
KINDS = [0, 1, -1, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 10**30,
         1.5, float("inf"), -0.0, float("nan"),
         "", "h\u00e9llo \u2603", "x" * 200, "lone \udcff surrogate",
         b"", b"\x00\xff", None, True, False,
         MyInt(5), MyStr("s"), (1, "a"), {"k": [1.0]}]


def same(a, b):
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if isinstance(a, float):
        return type(b) is float and a == b and str(a) == str(b)  # -0.0
    return type(a) is type(b) and a == b


def echo_kinds(q, out):
    out.put([q.get(timeout=30) for _ in KINDS])


def test_direct_kinds_round_trip(ctx):
    q = shmkit.Queue(itemsize=256)
    for k in KINDS:
        q.put(k)
    got = [q.get() for _ in KINDS]
    for a, b in zip(KINDS, got):
        assert same(a, b), (a, b)
    assert got[KINDS.index(None)] is None
    assert [got[i] for i, k in enumerate(KINDS) if k is True or k is False] == [True, False]
    assert all(got[i] is k for i, k in enumerate(KINDS) if isinstance(k, bool))
    # The same through another process (which decodes them itself).
    out = shmkit.Queue(itemsize=1024)
    p = ctx.Process(target=echo_kinds, args=(q, out))
    p.start()
    for k in KINDS:
        q.put(k)
    got = out.get(timeout=30)
    p.join(30)
    assert p.exitcode == 0
    for a, b in zip(KINDS, got):
        assert same(a, b), (a, b)


def test_too_large_sends_nothing():
    q = shmkit.Queue(4, itemsize=300)
    assert q.lane_capacity == 32 and q.max_message_len == 32 * 56 - 1
    with pytest.raises(ValueError, match="itemsize"):
        q.put(b"x" * (32 * 56))
    with pytest.raises(ValueError, match="pickles to"):
        q.put(list(range(1000)))
    with pytest.raises(ValueError, match="the str is"):
        q.put("\u00e9" * 1000)
    assert q.empty() and q.qsize() == 0
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(ValueError, match="largest lane"):
        shmkit.Queue(2**29, itemsize=1000)
    # maxsize=0: 4096 frames, or one item of itemsize if more.
    assert shmkit.Queue().lane_capacity == 4096
    big = shmkit.Queue(itemsize=1 << 20)
    assert big.max_message_len >= 1 << 20
    big.put(b"y" * (1 << 20))
    assert big.get() == b"y" * (1 << 20)


def test_timeouts_and_full():
    q = shmkit.Queue(2)
    assert q.lane_capacity == 2
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(False)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert [q.get(), q.get()] == [1, 2]
    assert not q.full()
    # A timeout too long for a deadline is no limit, not an error.
    q.put(4, timeout=1e300)
    assert q.get(timeout=1e300) == 4


def test_close_and_shutdown():
    q = shmkit.Queue()
    q.put(1)
    other = shmkit._shmkit._open_queue(q.name, q.itemsize, False)
    q.close()
    q.join_thread()
    q.cancel_join_thread()
    with pytest.raises(ValueError, match="closed"):
        q.put(2)
    with pytest.raises(ValueError, match="closed"):
        q.get()
    # Another handle goes on; the item put before close stays.
    assert other.get(timeout=5) == 1
    other.put(3)
    other.shutdown()
    assert other.is_shutdown
    with pytest.raises(BrokenPipeError):
        other.put(4)
    assert other.get() == 3
    with pytest.raises(EOFError):
        other.get()


def work_and_mark(q):
    while (item := q.get(timeout=30)) is not None:
        assert item >= 0
        q.task_done()
    q.task_done()


def test_joinable_join_after_task_done(ctx):
    q = shmkit.JoinableQueue()
    cs = [ctx.Process(target=work_and_mark, args=(q,)) for _ in range(2)]
    for c in cs:
        c.start()
    for i in range(200):
        q.put(i)
    for _ in cs:
        q.put(None)
    q.join(timeout=60)
    assert q.last_join_abandoned == 0
    for c in cs:
        c.join(60)
        assert c.exitcode == 0
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def take_one_and_hang(q, holding, never):
    q.get(timeout=30)
    holding.set()
    never.wait()


def test_consumer_killed_holding_an_item(ctx):
    q = shmkit.JoinableQueue(max_consumers=3)
    q.put("victim's")
    holding, never = ctx.Event(), ctx.Event()
    victim = ctx.Process(target=take_one_and_hang, args=(q, holding, never))
    victim.start()
    assert holding.wait(30)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    assert victim.exitcode == -signal.SIGKILL
    for i in range(100):
        q.put(i)
    cs = [ctx.Process(target=work_and_mark, args=(q,)) for _ in range(2)]
    for _ in cs:
        q.put(None)
    for c in cs:
        c.start()
    q.join(timeout=60)  # would hang forever on multiprocessing's
    assert q.last_join_abandoned == 1
    for c in cs:
        c.join(60)
        assert c.exitcode == 0


def put_square(q, i):
    q.put((i, i * i))
    return i


def test_process_pool_executor(ctx):
    q = shmkit.Queue()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert sorted(ex.map(put_square, [q] * 6, range(6))) == list(range(6))
    assert dict(q.get(timeout=30) for _ in range(6)) == {i: i * i for i in range(6)}


def child_uses_own_handles(q, out):
    q.put("from child")
    out.put(q.get(timeout=30))


def test_forked_child_does_not_reuse_parent_handles():
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    q, out = shmkit.Queue(4, max_producers=2, max_consumers=2), shmkit.Queue()
    q.put("from parent")  # the parent's producer and consumer exist now
    assert q.get() == "from parent"
    run(fork, child_uses_own_handles, [(q, out)])
    assert out.get(timeout=30) == "from child"
    # The parent's handles still work: the child forgot, not dropped, them.
    for i in range(4):
        q.put(i)
    assert [q.get() for _ in range(4)] == [0, 1, 2, 3]


def test_pickled_kinds():
    import pickle

    jq = shmkit.JoinableQueue()
    assert isinstance(pickle.loads(pickle.dumps(jq)), shmkit.JoinableQueue)
    q = shmkit.Queue()
    assert type(pickle.loads(pickle.dumps(q))) is shmkit.Queue


class Alarm(Exception):
    pass


def _alarm(*_):
    raise Alarm


@pytest.mark.parametrize("call", ["get", "put", "join"])
def test_blocking_calls_let_signal_handlers_run(call):
    # Ctrl-C is a signal handler raising KeyboardInterrupt; SIGALRM's here
    # raises Alarm, from inside the blocked call.
    q = shmkit.JoinableQueue(1)
    if call in ("put", "join"):
        q.put(0)  # the lane is full; an item is not done
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(Alarm):
            if call == "get":
                q.get()
            elif call == "put":
                q.put(1)
            else:
                q.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_damaged_messages_are_corrupt_errors():
    # A message's first byte is its kind, the rest its payload; a kind byte
    # or payload scribbled in shared memory is CorruptError, and the queue
    # goes on with the next item.
    q = shmkit.Queue()
    path = f"/dev/shm/{q.name}"
    for tag, payload, match in [(4, b"\xff", "not UTF-8"),
                                (2, None, "holds 7 bytes, not 8"),
                                (5, None, "holds 7 bytes, not 0"),
                                # A pickle cut short: protocol 4, then a
                                # frame whose 8-byte length is not there.
                                (0, b"\x80\x04\x95", "does not load"),
                                (99, None, "unknown kind 99")]:
        q.put("MARKERx")
        with open(path, "r+b") as f:
            data = f.read()
            at = data.rindex(b"MARKERx")  # the newest
            assert data[at - 1] == 4  # the kind byte of a str
            f.seek(at - 1)
            f.write(bytes([tag]))
            if payload is not None:
                f.write(payload)
        with pytest.raises(shmkit.CorruptError, match=match):
            q.get_nowait()
        q.put(7)
        assert q.get_nowait() == 7


def put_one(q, x):
    q.put(x, timeout=20)


def test_fork_while_a_thread_is_blocked_in_put():
    # A thread of the parent waits in put() on its full lane, holding this
    # process's producer; a child forked meanwhile must not inherit that
    # hold (it would wait forever): it attaches a producer of its own.
    import multiprocessing
    import threading
    q = shmkit.Queue(1)
    q.put(0)
    entered = threading.Event()

    def blocked():
        entered.set()
        q.put(1, timeout=30)

    t = threading.Thread(target=blocked)
    t.start()
    entered.wait(10)
    child = multiprocessing.get_context("fork").Process(target=put_one, args=(q, 2))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert sorted(q.get(timeout=10) for _ in range(3)) == [0, 1, 2]
    t.join(10)
    assert not t.is_alive()

"""Namespace: named fields shared by processes, consistent snapshots without
a lock, writers serialised, a killed writer leaving the last whole record."""
import os
import pickle
import signal

import pytest

import shmkit
from conftest import run


def bump(ns, n):
    for _ in range(n):
        ns._modify(lambda d: d.__setitem__("x", d["x"] + 1))


def write_pairs(ns, n):
    for i in range(n):
        ns._update(a=i, b=-i, tag="w" * (i % 50))


def write_forever(ns, ready):
    ns.a = 1
    ready.set()
    i = 1
    while True:
        i += 1
        ns._update(a=i, b=-i)


def test_fields_like_a_managers_namespace():
    ns = shmkit.Namespace(x=1, name="job")
    assert (ns.x, ns.name) == (1, "job")
    ns.x += 1
    ns.items = [1, 2, 3]
    assert ns._snapshot() == {"x": 2, "name": "job", "items": [1, 2, 3]}
    del ns.name
    with pytest.raises(AttributeError):
        ns.name
    with pytest.raises(AttributeError):
        del ns.missing
    with pytest.raises(AttributeError):
        ns._private = 1
    assert repr(ns) == "Namespace(x=2, items=[1, 2, 3])"
    assert "items" in dir(ns)


def test_too_large_a_store_is_refused_and_changes_nothing():
    ns = shmkit.Namespace(x=1)
    with pytest.raises(ValueError, match="bytes"):
        ns.blob = b"x" * 10_000
    assert ns._snapshot() == {"x": 1}
    big = shmkit.Namespace(_size=65_000, blob=b"x" * 60_000)
    assert len(big.blob) == 60_000
    with pytest.raises(ValueError):
        shmkit.Namespace(_size=1 << 20)


def test_an_exception_in_modify_stores_nothing():
    ns = shmkit.Namespace(x=1)

    def bad(d):
        d["x"] = 2
        raise KeyError("no")

    with pytest.raises(KeyError):
        ns._modify(bad)
    assert ns.x == 1


def test_modify_serialises_writers_across_processes(ctx):
    ns = shmkit.Namespace(x=0)
    run(ctx, bump, [(ns, 300)] * 3)
    assert ns.x == 900


def test_readers_never_see_a_torn_record(ctx):
    ns = shmkit.Namespace(a=0, b=0, tag="")
    p = ctx.Process(target=write_pairs, args=(ns, 3000))
    p.start()
    seen = 0
    while p.is_alive() or seen == 0:
        d = ns._snapshot()
        assert d["a"] == -d["b"] and d["tag"] == "w" * (d["a"] % 50), d
        seen += 1
    p.join()
    assert p.exitcode == 0
    assert ns.a == 2999


def test_a_writer_killed_mid_store_leaves_a_whole_record(ctx):
    ns = shmkit.Namespace(a=0, b=0)
    ready = ctx.Event()
    p = ctx.Process(target=write_forever, args=(ns, ready))
    p.start()
    assert ready.wait(60)
    for _ in range(200):
        d = ns._snapshot()
        assert d["a"] == -d["b"] or d == {"a": 1, "b": 0}, d
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    d = ns._snapshot()
    assert d["a"] == -d["b"] or d == {"a": 1, "b": 0}, d
    # The next writer takes the dead one's lock over and goes on.
    ns._update(a=-5, b=5)
    assert ns._snapshot() == {"a": -5, "b": 5}


def test_pickles_by_name():
    ns = shmkit.Namespace(x=7)
    other = pickle.loads(pickle.dumps(ns))
    other.x = 8
    assert ns.x == 8

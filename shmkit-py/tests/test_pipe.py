"""Pipe: objects and bytes both ways, poll, EOF when the peer closes or is
killed, and big messages."""
import os
import signal

import pytest

import shmkit
from conftest import run


def echo_doubled(conn):
    # Objects until "raw", then byte messages until EOF.
    while (x := conn.recv()) != "raw":
        conn.send(x * 2)
    while True:
        try:
            b = conn.recv_bytes()
        except EOFError:
            break
        conn.send_bytes(b * 2)
    conn.close()


def send_then_die(conn):
    conn.send("last words")
    os.kill(os.getpid(), signal.SIGKILL)


def test_round_trips(ctx):
    a, b = shmkit.Pipe()
    p = ctx.Process(target=echo_doubled, args=(b,))
    p.start()
    for x in [1, "ab", [1, {"k": 3.5}], (None,)]:
        a.send(x)
        assert a.recv() == x * 2
    a.send("raw")
    a.send_bytes(b"\x00\x01")
    assert a.recv_bytes() == b"\x00\x01" * 2
    a.close()
    p.join(30)
    assert p.exitcode == 0
    with pytest.raises(EOFError):
        a.recv()


def test_poll_and_one_way_pipe():
    r, w = shmkit.Pipe(duplex=False)
    assert not r.poll()
    w.send(42)
    assert r.poll(1.0)
    assert r.recv() == 42
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        w.recv()


def test_killed_peer_gives_eof_not_a_hang(ctx):
    a, b = shmkit.Pipe()
    p = ctx.Process(target=send_then_die, args=(b,))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert a.recv() == "last words"
    with pytest.raises(EOFError):
        a.recv()


def test_message_too_large_is_a_value_error():
    a, b = shmkit.Pipe(capacity=64)
    with pytest.raises(ValueError):
        a.send_bytes(b"x" * 100_000)
    big = os.urandom(3_000)
    a.send_bytes(big)
    assert b.recv_bytes() == big


def drop_inherited_end(conn, done):
    # A forked child that drops its copy of the parent's end must not close
    # the parent's sending direction (or remove the pipe's names).
    conn._end = None  # the child's only reference to the end object
    done.value = 1


def test_a_forked_child_dropping_a_copy_closes_nothing():
    import multiprocessing

    a, b = shmkit.Pipe()
    a.send("opened here first")
    assert b.recv() == "opened here first"
    done = shmkit.Value("i", 0)
    p = multiprocessing.get_context("fork").Process(target=drop_inherited_end, args=(a, done))
    p.start()
    p.join(30)
    assert p.exitcode == 0 and done.value == 1
    a.send("still open")
    assert b.recv() == "still open"
    # Nothing more was sent and the direction is open: a wait times out
    # (it would be EOFError had the child closed it).
    with pytest.raises(TimeoutError):
        b._end.recv_bytes(timeout=0.05)

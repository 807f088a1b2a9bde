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

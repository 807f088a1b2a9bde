"""The programs of the seed tutorials (../shared/seeds: Value, Array, Lock,
Pipe), each run twice: with `import multiprocessing as mp` and with
`import shmkit as mp` in its place; the results must be the same. Queue,
JoinableQueue and Manager programs join once shmkit has them."""
import multiprocessing

import pytest

import shmkit

MODULES = [multiprocessing, shmkit]
N = 5_000


def inc_with_lock(counter, lock, n):
    for _ in range(n):
        with lock:
            counter.value += 1


def inc_with_get_lock(counter, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1


def square_my_slot(arr, lock, i):
    with lock:
        arr[i] = i * i


def fill_doubles(arr, start, n):
    for j in range(start, start + n):
        arr[j] = j * 0.5


def add_to_all(arr, n):
    # Seed 001: an Array shared with lock=False, each process touching
    # only its own half.
    for j in n:
        arr[j] += j


def child_says_hello(conn):
    conn.send(["hello", 42, None])
    conn.close()


def ping_pong_child(conn):
    while (msg := conn.recv()) != "stop":
        conn.send(msg.upper())


def counter_with_lock(mp):
    counter, lock = mp.Value("i", 0), mp.Lock()
    ps = [mp.Process(target=inc_with_lock, args=(counter, lock, N)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return counter.value


def counter_with_get_lock(mp):
    counter = mp.Value("i", 0)
    ps = [mp.Process(target=inc_with_get_lock, args=(counter, N)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return counter.value


def array_of_squares(mp):
    num = 4
    arr, lock = mp.Array("i", [0] * num), mp.Lock()
    ps = [mp.Process(target=square_my_slot, args=(arr, lock, i)) for i in range(num)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return list(arr)


def doubles_in_halves(mp):
    arr = mp.Array("d", 10)
    ps = [mp.Process(target=fill_doubles, args=(arr, s, 5)) for s in (0, 5)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return arr[:]


def unlocked_array(mp):
    arr = mp.Array("i", 6, lock=False)
    ps = [mp.Process(target=add_to_all, args=(arr, r)) for r in (range(0, 3), range(3, 6))]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return list(arr)


def pipe_hello(mp):
    parent_conn, child_conn = mp.Pipe()
    p = mp.Process(target=child_says_hello, args=(child_conn,))
    p.start()
    got = parent_conn.recv()
    p.join()
    return got


def pipe_ping_pong(mp):
    conn1, conn2 = mp.Pipe()
    p = mp.Process(target=ping_pong_child, args=(conn2,))
    p.start()
    out = []
    for word in ["ping", "pong", "done"]:
        conn1.send(word)
        out.append(conn1.recv())
    conn1.send("stop")
    p.join()
    return out


PROGRAMS = [
    (counter_with_lock, 2 * N),
    (counter_with_get_lock, 2 * N),
    (array_of_squares, [0, 1, 4, 9]),
    (doubles_in_halves, [j * 0.5 for j in range(10)]),
    (unlocked_array, [0, 1, 2, 3, 4, 5]),
    (pipe_hello, ["hello", 42, None]),
    (pipe_ping_pong, ["PING", "PONG", "DONE"]),
]


@pytest.mark.parametrize("program,expected", PROGRAMS, ids=[p.__name__ for p, _ in PROGRAMS])
def test_same_results_as_multiprocessing(program, expected):
    results = [program(mp) for mp in MODULES]
    assert results[0] == expected, "the multiprocessing run itself"
    assert results[1] == results[0]

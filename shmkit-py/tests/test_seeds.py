"""The programs of the seed tutorials (../shared/seeds: Value, Array, Lock,
Pipe, Queue, JoinableQueue), each run twice: with `import multiprocessing
as mp` and with `import shmkit as mp` in its place; the results must be
the same. Manager programs join once shmkit has them."""
import multiprocessing
import queue as stdqueue

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


def queue_producer(q, items):
    for item in items:
        q.put(item)
    q.put(None)  # sentinel


def queue_consumer(q, seen, total):
    # Seed 002's consumer prints what it takes; here it records it.
    i = 0
    while (item := q.get()) is not None:
        seen[i] = item
        i += 1
        with total.get_lock():
            total.value += item


def square_worker(task_id, q):
    q.put((task_id, task_id**2))


def joinable_producer(q, data, lock):
    for item in data:
        q.put(item)


def joinable_consumer(q, shared_array, lock, index):
    # Seed 000, ported as its text means: the parameter no longer shadows
    # the `queue` module, and each consumer adds to its slot (as printed it
    # overwrote it, so the result depended on scheduling).
    while True:
        try:
            item = q.get(True, 1)  # timeout of 1 second
            with lock:
                shared_array[index] += item * 2
            q.task_done()
        except stdqueue.Empty:
            break


def basic_queue(mp):
    q = mp.Queue()
    seen, total = mp.Array("i", 5), mp.Value("i", 0)
    p1 = mp.Process(target=queue_producer, args=(q, [1, 2, 3, 4, 5]))
    p2 = mp.Process(target=queue_consumer, args=(q, seen, total))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    return list(seen), total.value


def results_by_task(mp):
    result_queue = mp.Queue()
    processes = []
    for i in range(5):
        p = mp.Process(target=square_worker, args=(i, result_queue))
        processes.append(p)
        p.start()
    for p in processes:
        p.join()
    results = {}
    while not result_queue.empty():
        task_id, result = result_queue.get()
        results[task_id] = result
    return results


def joinable_producer_consumers(mp):
    num_consumers = 3
    data = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    shared_array = mp.Array("i", num_consumers)
    q = mp.JoinableQueue()
    lock = mp.Lock()
    producer_process = mp.Process(target=joinable_producer, args=(q, data, lock))
    consumers = [
        mp.Process(target=joinable_consumer, args=(q, shared_array, lock, i))
        for i in range(num_consumers)
    ]
    producer_process.start()
    for p in consumers:
        p.start()
    q.join()  # wait for all items to be processed
    producer_process.join()
    for p in consumers:
        p.join()
    return sum(shared_array)


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
    (basic_queue, ([1, 2, 3, 4, 5], 15)),
    (results_by_task, {i: i * i for i in range(5)}),
    (joinable_producer_consumers, 90),
]


@pytest.mark.parametrize("program,expected", PROGRAMS, ids=[p.__name__ for p, _ in PROGRAMS])
def test_same_results_as_multiprocessing(program, expected):
    results = [program(mp) for mp in MODULES]
    assert results[0] == expected, "the multiprocessing run itself"
    assert results[1] == results[0]

# `shmkit bench --python`: Python's multiprocessing doing shmkit's jobs: a
# Value incremented under get_lock() by 2 processes, a Queue and a Pipe from
# 1 producer to 1 consumer. Usage: multiprocessing_jobs.py N Q. Prints
# `name ops_per_second` lines. shmkit-bench embeds this file (include_str!)
# and runs it with `python3 -c`; it also runs on its own.
import multiprocessing as mp, sys, time
N = int(sys.argv[1]); Q = int(sys.argv[2])
def count(v, go, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
def put(q, go, n):
    go.wait()
    for i in range(n):
        q.put(i)
    q.put(None)
def send(c, go, n):
    go.wait()
    for i in range(n):
        c.send(i)
    c.send(None)
def run(target, args, go, drain=None):
    ps = [mp.Process(target=target, args=a) for a in args]
    for p in ps: p.start()
    t0 = time.perf_counter(); go.set()
    if drain: drain()
    for p in ps: p.join()
    return time.perf_counter() - t0
if __name__ == "__main__":
    mp.set_start_method("fork")
    v = mp.Value("q", 0); go = mp.Event()
    dt = run(count, [(v, go, N), (v, go, N)], go)
    assert v.value == 2 * N, v.value
    print("python-value-get_lock/2p", 2 * N / dt)
    q = mp.Queue(); go = mp.Event()
    def drain_q():
        while q.get() is not None: pass
    print("python-queue/1p1c", Q / run(put, [(q, go, Q)], go, drain_q))
    a, b = mp.Pipe(duplex=False); go = mp.Event()
    def drain_p():
        while a.recv() is not None: pass
    print("python-pipe/1p1c", Q / run(send, [(b, go, Q)], go, drain_p))

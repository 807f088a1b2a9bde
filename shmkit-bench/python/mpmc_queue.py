# `shmkit bench --python`, group queue-mpmc: Python's multiprocessing.Queue
# with P producer and C consumer processes, the job shmkit's Queue does.
# Usage: mpmc_queue.py N P C (N items in all, N/P per producer). Prints one
# `python-queue/{P}p{C}c items_per_second` line; exits non-zero when the
# consumers did not get every item exactly once (by count and sum).
# shmkit-bench embeds this file (include_str!) and runs it with `python3 -c`.
import multiprocessing as mp, sys, time
N = int(sys.argv[1]); P = int(sys.argv[2]); C = int(sys.argv[3])
def put(q, go, base, n):
    go.wait()
    for i in range(base, base + n):
        q.put(i)
def get(q, go, out):
    go.wait()
    got = total = 0
    while True:
        v = q.get()
        if v is None:
            break
        got += 1; total += v
    out.put((got, total))
if __name__ == "__main__":
    mp.set_start_method("fork")
    q = mp.Queue(); out = mp.Queue(); go = mp.Event()
    per = N // P
    prods = [mp.Process(target=put, args=(q, go, i * per, per)) for i in range(P)]
    cons = [mp.Process(target=get, args=(q, go, out)) for _ in range(C)]
    for p in prods + cons: p.start()
    t0 = time.perf_counter(); go.set()
    for p in prods: p.join()
    for _ in cons: q.put(None)
    res = [out.get() for _ in cons]
    for p in cons: p.join()
    dt = time.perf_counter() - t0
    n = per * P
    got = sum(r[0] for r in res); total = sum(r[1] for r in res)
    if got != n or total != n * (n - 1) // 2:
        sys.exit(f"python queue: got {got} items (sum {total}) of {n}")
    print(f"python-queue/{P}p{C}c", n / dt)

# `shmkit bench --python`, manager group: Python's Manager dict and list,
# 2 processes. Usage: manager.py M (operations per process). Prints
# `name ops_per_second` lines. shmkit-bench embeds this file (include_str!)
# and runs it with `python3 -c`; it also runs on its own.
import multiprocessing as mp, sys, time
M = int(sys.argv[1])
def setter(d, w, go):
    go.wait()
    for i in range(M): d[f"p{w}_{i}"] = i
def getter(d, w, go):
    go.wait()
    for i in range(M): assert d[f"p{w}_{i}"] == i
def appender(l, w, go):
    go.wait()
    for i in range(M): l.append(i)
def run(target, obj):
    go = mp.Event()
    ps = [mp.Process(target=target, args=(obj, w, go)) for w in range(2)]
    for p in ps: p.start()
    t0 = time.perf_counter(); go.set()
    for p in ps: p.join()
    return 2 * M / (time.perf_counter() - t0)
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Manager() as m:
        d = m.dict()
        print("python-manager-dict-set/2p", run(setter, d))
        print("python-manager-dict-get/2p", run(getter, d))
        print("python-manager-list-append/2p", run(appender, m.list()))

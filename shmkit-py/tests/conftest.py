"""Shared fixtures: both start methods, and a check that the tests leave
no shmkit segment of theirs behind in /dev/shm."""
import multiprocessing
import os

import pytest


def _ours():
    # Segments made by this process (the names carry the creating pid).
    tag = f"-{os.getpid()}-"
    return {n for n in os.listdir("/dev/shm") if n.startswith("shmkit-py-") and tag in n}


@pytest.fixture(params=["fork", "spawn"])
def ctx(request):
    """A multiprocessing context of each start method."""
    return multiprocessing.get_context(request.param)


@pytest.fixture(autouse=True, scope="session")
def no_leaked_segments():
    before = _ours()
    yield
    import gc

    gc.collect()
    leaked = _ours() - before
    assert not leaked, f"segments left in /dev/shm: {sorted(leaked)}"


def run(ctx, target, args_list, timeout=60):
    """Start one process per args tuple, join them, and assert each exited 0."""
    ps = [ctx.Process(target=target, args=a) for a in args_list]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise AssertionError(f"process {p.pid} hung")
        assert p.exitcode == 0, f"process {p.pid} exited with {p.exitcode}"

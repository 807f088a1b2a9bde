"""Value and Array: atomic arithmetic across processes, the lock, typecodes,
slices, pickling under fork and spawn, numpy's zero-copy view."""
import math
import pickle

import pytest

import shmkit
from conftest import run

N = 20_000


def add_many(v, n):
    for _ in range(n):
        v.add(1)


def add_locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def fill_row(arr, i, width):
    for j in range(width):
        arr[i * width + j] = i * 100 + j


def test_add_is_atomic_across_processes(ctx):
    v = shmkit.Value("q", 0)
    run(ctx, add_many, [(v, N)] * 4)
    assert v.value == 4 * N


def test_get_lock_guards_a_read_modify_write(ctx):
    v = shmkit.Value("i", 0)
    run(ctx, add_locked, [(v, 2_000)] * 3)
    assert v.value == 6_000


def test_array_written_by_children(ctx):
    arr = shmkit.Array("i", 4 * 8)
    run(ctx, fill_row, [(arr, i, 8) for i in range(4)])
    assert arr[:] == [i * 100 + j for i in range(4) for j in range(8)]


def add_and_report(v, arr, i, n):
    for _ in range(n):
        v.add(1)
    arr[i] = i + 1


def test_handles_pass_to_a_process_pool_executor(ctx):
    # ProcessPoolExecutor pickles each call's arguments for a worker that
    # already runs: the handles travel by segment name, as with Process.
    from concurrent.futures import ProcessPoolExecutor

    v = shmkit.Value("q", 0)
    arr = shmkit.Array("i", 8)
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        done = [pool.submit(add_and_report, v, arr, i, 500) for i in range(8)]
        for f in done:
            f.result(timeout=60)
    assert v.value == 8 * 500
    assert arr[:] == list(range(1, 9))


def test_fetch_add_and_compare_exchange():
    v = shmkit.Value("Q", 10)
    assert v.fetch_add(5) == 10
    assert v.compare_exchange(15, 1) == (True, 15)
    assert v.compare_exchange(15, 2) == (False, 1)
    assert v.value == 1
    f = shmkit.Value("d", 0.5)
    f.add(0.25)
    assert f.value == 0.75


@pytest.mark.parametrize(
    "code,value",
    [("b", -128), ("B", 255), ("h", -32768), ("H", 65535), ("i", -(2**31)), ("I", 2**32 - 1),
     ("l", -(2**63)), ("L", 2**64 - 1), ("q", 2**63 - 1), ("Q", 2**64 - 1), ("f", 1.5),
     ("d", math.pi), ("c", b"x")],
)
def test_every_typecode_round_trips(code, value):
    v = shmkit.Value(code, value)
    assert v.value == value
    assert v.typecode == code
    again = pickle.loads(pickle.dumps(v))
    assert again.value == value


def test_out_of_range_and_bad_input_are_python_errors():
    with pytest.raises(OverflowError):
        shmkit.Value("B", 256)
    with pytest.raises(ValueError, match="typecode"):
        shmkit.Value("z", 0)
    with pytest.raises(ValueError, match="at least 1"):
        shmkit.Array("i", 0)
    a = shmkit.Array("i", 3)
    with pytest.raises(IndexError):
        a[3]
    with pytest.raises(IndexError):
        a.add(-4, 1)
    with pytest.raises(TypeError):
        a[0] = "seven"
    with pytest.raises(ValueError, match="assign 2 values"):
        a[0:2] = [1, 2, 3]


def test_array_sequence_protocol():
    a = shmkit.Array("d", [1.5, 2.5, 3.5])
    assert len(a) == 3
    assert list(a) == [1.5, 2.5, 3.5]
    assert a[-1] == 3.5
    assert a[::2] == [1.5, 3.5]
    a[1:3] = [7.0, 8.0]
    assert a[:] == [1.5, 7.0, 8.0]
    assert sum(a) == 16.5
    c = shmkit.Array("c", b"hey")
    assert c[:] == b"hey"
    c[0] = b"H"
    assert c[:] == b"Hey"


def test_numpy_view_is_zero_copy(ctx):
    np = pytest.importorskip("numpy")
    arr = shmkit.Array("d", 8)
    view = np.asarray(arr)
    assert view.dtype == np.float64 and view.shape == (8,)
    run(ctx, fill_row, [(arr, 0, 8)])
    # The children's writes are seen through the view: no copy was made.
    assert view.tolist() == [float(j) for j in range(8)]
    view[3] = -1.0
    assert arr[3] == -1.0


def test_opening_a_value_as_an_array_of_another_type_is_refused():
    v = shmkit.Value("i", 1)
    with pytest.raises(ValueError, match="element"):
        shmkit._shmkit._open_value(v.name, "d")


def drop_the_only_reference(holder):
    holder.clear()  # the child's copy of the Value is freed here


def test_a_forked_child_dropping_a_copy_keeps_the_name():
    import multiprocessing

    holder = [shmkit.Value("i", 7)]
    p = multiprocessing.get_context("fork").Process(target=drop_the_only_reference, args=(holder,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    # The name still opens: only the creating process's drop removes it.
    assert pickle.loads(pickle.dumps(holder[0])).value == 7

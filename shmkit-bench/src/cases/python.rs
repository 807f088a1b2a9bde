//! Group `python`: Python's `multiprocessing` (`Value`, `Queue`, `Pipe`) against
//! shmkit doing the same jobs in the same run.

use super::counter::counter_atomic;
use super::queue::ring_throughput;
use super::{Options, Record, Res, placement, python_once, record, reps};

/// Python's multiprocessing doing the same jobs: a Value incremented under
/// get_lock() by 2 processes, a Queue and a Pipe from 1 producer to 1
/// consumer. Prints `name ops_per_second` lines.
const PYTHON_SCRIPT: &str = include_str!("../../python/multiprocessing_jobs.py");

pub(crate) fn python(o: &Options) -> Res<Vec<Record>> {
    let (n, q) = if o.full {
        (200_000u64, 200_000u64)
    } else {
        (50_000, 30_000)
    };
    let mut py: [Vec<f64>; 3] = Default::default();
    let (mut ours_counter, mut ours_ring, mut ours_batch) = (Vec::new(), Vec::new(), Vec::new());
    let keys = [
        "python-value-get_lock/2p",
        "python-queue/1p1c",
        "python-pipe/1p1c",
    ];
    for _ in 0..reps(o) {
        let got = python_once(PYTHON_SCRIPT, &[n.to_string(), q.to_string()], keys)?;
        for (xs, v) in py.iter_mut().zip(got) {
            xs.push(v);
        }
        // shmkit doing the same jobs in the same run, alternating with Python.
        ours_counter.push(counter_atomic(2, n)?);
        ours_ring.push(ring_throughput(q.max(1_000_000), 1, 1)?.0);
        ours_batch.push(ring_throughput(q.max(1_000_000), 1, 64)?.0);
    }
    let [pv, pq, pp] = py;
    let note = "python3 multiprocessing, fork start method, unpinned".to_string();
    Ok(vec![
        record(
            "python",
            "shmkit-fetch_add/2p".into(),
            "throughput",
            "ops/s",
            ours_counter,
            placement(2, "processes"),
        ),
        record(
            "python",
            "python-value-get_lock/2p".into(),
            "throughput",
            "ops/s",
            pv,
            note.clone(),
        ),
        record(
            "python",
            "shmkit-ring/1p1c".into(),
            "throughput",
            "items/s",
            ours_ring,
            placement(2, "producer, consumer"),
        ),
        record(
            "python",
            "shmkit-ring-batch64/1p1c".into(),
            "throughput",
            "items/s",
            ours_batch,
            placement(2, "producer, consumer"),
        ),
        record(
            "python",
            "python-queue/1p1c".into(),
            "throughput",
            "items/s",
            pq,
            note.clone(),
        ),
        record(
            "python",
            "python-pipe/1p1c".into(),
            "throughput",
            "items/s",
            pp,
            note,
        ),
    ])
}

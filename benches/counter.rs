//! Micro-benchmarks, one group per question: what does one increment of a
//! shared counter cost without contention, lock-free against locked?
//! And what does one uncontended lock + increment + unlock cost, shmkit's
//! lock against the pthread mutexes it replaced?
//! (Contended, cross-process figures: `shmkit bench --only counter`.)

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmkit::{Ordering, SharedAccumulator, SharedArray, SharedValue};
use shmkit_bench::baseline::PthreadShared;

const OPS: u64 = 1_000;

fn counter(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter-increment");
    g.throughput(Throughput::Elements(OPS));
    let v = SharedValue::<u64>::create_anonymous(0).unwrap();
    g.bench_function(BenchmarkId::new("shmkit-fetch_add", "shared-memory"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                black_box(v.fetch_add(1, Ordering::Relaxed));
            }
        })
    });
    let p = PthreadShared::create(1, 0).unwrap();
    g.bench_function(BenchmarkId::new("pthread-mutex", "shared-memory"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                // SAFETY: the word is only touched with the mutex held.
                p.with_lock(|| unsafe { *p.data(0, 0) += 1 });
            }
        })
    });
    let m = Mutex::new(0u64);
    g.bench_function(BenchmarkId::new("std-mutex", "heap"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                *m.lock().unwrap() += 1;
            }
        })
    });
    g.finish();
}

fn float_add(c: &mut Criterion) {
    let mut g = c.benchmark_group("float-add");
    g.throughput(Throughput::Elements(OPS));
    let v = SharedValue::<f64>::create_anonymous(0.0).unwrap();
    g.bench_function(BenchmarkId::new("shmkit-cas-f64", "shared-memory"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                black_box(v.fetch_add(1.0, Ordering::Relaxed));
            }
        })
    });
    let acc = SharedAccumulator::create_anonymous(2).unwrap();
    g.bench_function(BenchmarkId::new("shmkit-striped", "shared-memory"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                acc.add_at(0, 1.0);
            }
        })
    });
    let p = PthreadShared::create(1, 0).unwrap();
    g.bench_function(
        BenchmarkId::new("pthread-mutex-f64", "shared-memory"),
        |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    // SAFETY: the word is only touched with the mutex held.
                    p.with_lock(|| unsafe {
                        let w = p.data(0, 0);
                        *w = (f64::from_bits(*w) + 1.0).to_bits();
                    });
                }
            })
        },
    );
    g.finish();
}

fn lock_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock-uncontended");
    g.throughput(Throughput::Elements(OPS));
    let arr = SharedArray::<u64>::create_anonymous(1).unwrap();
    g.bench_function(BenchmarkId::new("shmkit-lock", "shared-memory"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                let g = arr.lock().unwrap();
                g[0].store(g[0].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        })
    });
    for (name, p) in [
        ("pthread-robust", PthreadShared::create_robust(1).unwrap()),
        ("pthread-mutex", PthreadShared::create(1, 0).unwrap()),
    ] {
        g.bench_function(BenchmarkId::new(name, "shared-memory"), |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    // SAFETY: the word is only touched with the mutex held.
                    p.with_lock(|| unsafe { *p.data(0, 0) += 1 });
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, counter, float_add, lock_uncontended);
criterion_main!(benches);

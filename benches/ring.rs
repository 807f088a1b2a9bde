//! Micro-benchmarks of the queue's own cost per item, without a second core
//! in the way: push then pop on one thread, single items and batches, next to
//! crossbeam's ArrayQueue and a Mutex<VecDeque>; and byte messages (64 B
//! and 1 MiB, push then pop into a reused buffer, on the Pipe's ring size)
//! next to the two plain memcpys a message costs at least. (Cross-process
//! throughput and latency: `shmkit bench --only queue-throughput` /
//! `--only latency` / `--only pipe`.)

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use shmkit::ring::Ring;
use shmkit::ring::message::Frame;

const ITEMS: u64 = 1_024;

fn push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue-push-pop");
    g.throughput(Throughput::Elements(ITEMS));

    let ring = Ring::<u64>::create_anonymous(4096).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    g.bench_function(BenchmarkId::new("shmkit-ring", "single"), |b| {
        b.iter(|| {
            for i in 0..ITEMS {
                tx.try_push(i).unwrap();
            }
            for _ in 0..ITEMS {
                black_box(rx.try_pop().unwrap());
            }
        })
    });
    let src: Vec<u64> = (0..ITEMS).collect();
    let mut dst = vec![0u64; ITEMS as usize];
    g.bench_function(BenchmarkId::new("shmkit-ring", "batch"), |b| {
        b.iter(|| {
            tx.try_push_slice(&src).unwrap();
            black_box(rx.try_pop_into(&mut dst).unwrap());
        })
    });

    let q = ArrayQueue::<u64>::new(4096);
    g.bench_function(BenchmarkId::new("arrayqueue", "single"), |b| {
        b.iter(|| {
            for i in 0..ITEMS {
                q.push(i).unwrap();
            }
            for _ in 0..ITEMS {
                black_box(q.pop().unwrap());
            }
        })
    });

    let m = Mutex::new(VecDeque::<u64>::with_capacity(4096));
    g.bench_function(BenchmarkId::new("mutex-vecdeque", "single"), |b| {
        b.iter(|| {
            for i in 0..ITEMS {
                m.lock().unwrap().push_back(i);
            }
            for _ in 0..ITEMS {
                black_box(m.lock().unwrap().pop_front().unwrap());
            }
        })
    });
    g.finish();
}

/// Frames of the byte-message ring: the size `shmkit bench` gives the Pipe.
const MSG_RING: usize = 32768;

fn byte_messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("byte-messages");
    let ring = Ring::<Frame>::create_anonymous(MSG_RING).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let mut out = Vec::new();
    for (len, label) in [(64usize, "64B"), (1 << 20, "1MiB")] {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("shmkit-ring", label), |b| {
            b.iter(|| {
                tx.try_push_bytes(black_box(&msg)).unwrap();
                rx.try_pop_bytes_into(&mut out).unwrap();
                black_box(&out);
            })
        });
        // The floor: the message copied into a buffer and out again.
        let mut mid = vec![0u8; len];
        let mut dst = vec![0u8; len];
        g.bench_function(BenchmarkId::new("memcpy-twice", label), |b| {
            b.iter(|| {
                mid.copy_from_slice(black_box(&msg));
                dst.copy_from_slice(black_box(&mid));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, push_pop, byte_messages);
criterion_main!(benches);

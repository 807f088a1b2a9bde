//! Group `pipe`: shmkit's `Pipe` against a kernel pipe and a Unix socketpair:
//! round-trip latency, and one-way bytes/s for 64 B, 4 KiB and 1 MiB messages.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

use super::latency::{latency_record, os_pipe, pingpong, report};
use super::queue::producer_consumers;
use super::{Options, Record, Res, alternate, arg, e, group_worker, placement, record, reps};
use crate::{Ctl, now_ns, spawn_worker, wait_all};
use shmkit::Ordering;
use shmkit::ring::PopError;

fn socketpair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dup(f: &OwnedFd) -> Res<Stdio> {
    Ok(Stdio::from(f.try_clone().map_err(e)?))
}

/// Ring capacity (frames) for the pipe group: room for a 1 MiB message.
const PIPE_CAP: usize = 32768;

/// shmkit pipe vs a kernel pipe vs a Unix socketpair: round-trip latency of
/// an 8-byte message, and one-way bytes/s for 64 B, 4 KiB and 1 MiB messages.
pub(crate) fn pipe(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 100_000 } else { 10_000 };
    let mut lat: [Vec<[f64; 3]>; 3] = Default::default();
    for _ in 0..reps(o) {
        let p = shmkit::pipe::Pipe::create_anonymous(64).map_err(e)?;
        lat[0].push(pingpong("lat-shmpipe", n, &|c, _| {
            p.share_with(c, "B_PIPE")
        })?);
        let (a_r, a_w) = os_pipe()?;
        let (b_r, b_w) = os_pipe()?;
        lat[1].push(pingpong("lat-pipe", n, &|c, ping| {
            let (i, o) = if ping { (&b_r, &a_w) } else { (&a_r, &b_w) };
            c.stdin(dup(i).unwrap()).stdout(dup(o).unwrap());
        })?);
        let (sa, sb) = socketpair()?;
        lat[2].push(pingpong("lat-pipe", n, &|c, ping| {
            let s = if ping { &sa } else { &sb };
            c.stdin(dup(s).unwrap()).stdout(dup(s).unwrap());
        })?);
    }
    let mut out = Vec::new();
    let place = "ping on core 0, pong on core 1; one-way = round trip / 2".to_string();
    for (i, name) in ["shmkit-pipe", "kernel-pipe", "socketpair"]
        .iter()
        .enumerate()
    {
        let r = latency_record(
            "pipe",
            format!("{name}-roundtrip"),
            &lat[i],
            format!("8-byte messages, blocking receive; {place}"),
        );
        out.push(r);
    }
    let total: u64 = if o.full { 256 << 20 } else { 64 << 20 };
    for (size, label) in [(64u64, "64B"), (4096, "4KiB"), (1 << 20, "1MiB")] {
        let count = (total / size).max(4);
        let args = [count.to_string(), size.to_string()];
        let [shm, kp, sp] = alternate(
            reps(o),
            [
                &mut || {
                    let p = shmkit::pipe::Pipe::create_anonymous(PIPE_CAP).map_err(e)?;
                    let ctl = producer_consumers("msg-shm", count, 1, &args, &|c| {
                        p.share_with(c, "B_PIPE")
                    })?;
                    Ok((count * size) as f64 / ctl.wall())
                },
                &mut || {
                    let (r, w) = os_pipe()?;
                    fd_stream(count, size, &args, &r, &w)
                },
                &mut || {
                    let (a, b) = socketpair()?;
                    fd_stream(count, size, &args, &b, &a)
                },
            ],
        )?;
        let place = placement(2, "sender, receiver");
        for (name, xs) in [
            ("shmkit-pipe", shm),
            ("kernel-pipe", kp),
            ("socketpair", sp),
        ] {
            out.push(record(
                "pipe",
                format!("{name}-{label}"),
                "throughput",
                "bytes/s",
                xs,
                place.clone(),
            ));
        }
    }
    Ok(out)
}

/// Stream `count` messages of `size` bytes from a writer worker (stdout =
/// `w`) to a reader worker (stdin = `r`); bytes/s.
fn fd_stream(count: u64, size: u64, args: &[String], r: &OwnedFd, w: &OwnedFd) -> Res<f64> {
    let ctl = Ctl::create(2).map_err(e)?;
    let prod = spawn_worker(&ctl, "msg-fd-prod", 0, args, |c| {
        c.stdout(dup(w).unwrap());
    })
    .map_err(e)?;
    let cons = spawn_worker(&ctl, "msg-fd-cons", 1, args, |c| {
        c.stdin(dup(r).unwrap());
    })
    .map_err(e)?;
    ctl.go();
    wait_all(vec![prod, cons])?;
    if ctl.slot(1, 2).load(Ordering::Acquire) != count {
        return Err("a message stream lost messages".into());
    }
    Ok((count * size) as f64 / ctl.wall())
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(
        case,
        "lat-shmpipe-ping"
            | "lat-shmpipe-pong"
            | "msg-shm-prod"
            | "msg-shm-cons"
            | "msg-fd-prod"
            | "msg-fd-cons"
    );
    group_worker(ours, args, |n| {
        match case {
            "lat-shmpipe-ping" | "lat-shmpipe-pong" => {
                let ping = case.ends_with("ping");
                let p = shmkit::pipe::Pipe::open_inherited("B_PIPE").map_err(e)?;
                let mut conn = if ping { p.end_a() } else { p.end_b() }.map_err(e)?;
                let mut xs = Vec::with_capacity(n as usize);
                ctl.start(idx);
                for i in 0..n {
                    if ping {
                        let t0 = now_ns();
                        conn.send(&i).map_err(e)?;
                        conn.recv::<u64>().map_err(e)?;
                        xs.push((now_ns() - t0) as f64 / 2.0);
                    } else {
                        let v: u64 = conn.recv().map_err(e)?;
                        conn.send(&v).map_err(e)?;
                    }
                }
                ctl.finish(idx);
                report(ctl, idx, &mut xs);
            }
            "msg-shm-prod" | "msg-shm-cons" => {
                let size = arg(args, 3)? as usize;
                let p = shmkit::pipe::Pipe::open_inherited("B_PIPE").map_err(e)?;
                if case.ends_with("prod") {
                    let mut conn = p.end_a().map_err(e)?;
                    let msg = vec![0x5au8; size];
                    ctl.start(idx);
                    for _ in 0..n {
                        conn.send_bytes(&msg).map_err(e)?;
                    }
                    ctl.finish(idx);
                } else {
                    let mut conn = p.end_b().map_err(e)?;
                    let mut got = 0u64;
                    let mut m = Vec::with_capacity(size);
                    ctl.start(idx);
                    loop {
                        match conn.recv_bytes_into(&mut m) {
                            Ok(()) if m.len() == size => got += 1,
                            Ok(()) => return Err(format!("message of {} bytes", m.len())),
                            Err(PopError::Disconnected) => break,
                            Err(x) => return Err(e(x)),
                        }
                    }
                    ctl.finish(idx);
                    ctl.slot(idx, 2).store(got, Ordering::Release);
                }
            }
            "msg-fd-prod" => {
                let size = arg(args, 3)? as usize;
                // Unbuffered: one write per message, as Python's send_bytes does
                // (Rust's stdout would batch small messages per syscall).
                // SAFETY: fd 1 is open for the whole process; ManuallyDrop keeps
                // this File from closing it.
                let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
                let msg = vec![0x5au8; size];
                ctl.start(idx);
                for _ in 0..n {
                    out.write_all(&msg).map_err(e)?;
                }
                ctl.finish(idx);
            }
            "msg-fd-cons" => {
                let size = arg(args, 3)? as usize;
                let mut inp = std::io::stdin().lock();
                let mut buf = vec![0u8; size];
                let mut got = 0u64;
                ctl.start(idx);
                while got < n && inp.read_exact(&mut buf).is_ok() {
                    got += 1;
                }
                ctl.finish(idx);
                ctl.slot(idx, 2).store(got, Ordering::Release);
            }
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
}

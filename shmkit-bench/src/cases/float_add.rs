//! Group `float-add`: processes adding 1.0 to one shared `f64`: shmkit's CAS
//! loop, a process-shared pthread mutex, and shmkit's striped accumulator.

use super::counter::counter_pthread;
use super::{Options, Record, Res, alternate, e, group_worker, placement, procs, record, reps};
use crate::Ctl;
use shmkit::{Ordering, SharedAccumulator, SharedValue};

pub(crate) fn float_add(o: &Options) -> Res<Vec<Record>> {
    let iters: u64 = if o.full { 2_000_000 } else { 300_000 };
    let mut out = Vec::new();
    for w in [1usize, 2] {
        let [c, m, s] = alternate(
            reps(o),
            [
                &mut || {
                    let v = SharedValue::<f64>::create_anonymous(0.0).map_err(e)?;
                    let (wall, _) = procs("float-cas", w, iters, &|c| v.share_with(c, "B_DATA"))?;
                    if v.load(Ordering::SeqCst) != (w as u64 * iters) as f64 {
                        return Err("CAS float sum wrong".into());
                    }
                    Ok(w as f64 * iters as f64 / wall)
                },
                &mut || counter_pthread(w, iters, true).map(|r| r.0),
                &mut || {
                    let acc = SharedAccumulator::create_anonymous(w).map_err(e)?;
                    let (wall, _) =
                        procs("float-striped", w, iters, &|c| acc.share_with(c, "B_DATA"))?;
                    if acc.sum() != (w as u64 * iters) as f64 {
                        return Err("striped float sum wrong".into());
                    }
                    Ok(w as f64 * iters as f64 / wall)
                },
            ],
        )?;
        let place = placement(w, "processes");
        for (name, xs) in [
            (format!("shmkit-cas-f64/{w}p"), c),
            (format!("pthread-mutex-f64/{w}p"), m),
            (format!("shmkit-striped/{w}p"), s),
        ] {
            out.push(record(
                "float-add",
                name,
                "throughput",
                "adds/s",
                xs,
                place.clone(),
            ));
        }
    }
    Ok(out)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(case, "float-cas" | "float-striped");
    group_worker(ours, args, |n| {
        match case {
            "float-cas" => {
                let v = SharedValue::<f64>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for _ in 0..n {
                    v.fetch_add(1.0, Ordering::Relaxed);
                }
                ctl.finish(idx);
            }
            "float-striped" => {
                let acc = SharedAccumulator::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for _ in 0..n {
                    acc.add_at(idx, 1.0);
                }
                ctl.finish(idx);
            }
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
}

//! Group `manager`: `SharedMap` and `SharedList` against the same jobs under a
//! process-shared mutex and std's `Mutex`; Python's `Manager` with `--python`.

use std::process::Command;
use std::sync::{Arc, Mutex};

use super::{
    Options, Record, Res, alternate, e, group_worker, pinned_threads, placement, procs,
    python_once, record, reps,
};
use crate::Ctl;
use crate::baseline::PthreadTable;

/// Keys for worker `idx`: distinct across workers, never 0.
fn mkey(idx: usize, i: u64) -> u64 {
    ((idx as u64 + 1) << 32) | i
}

/// Python's Manager dict and list, 2 processes, for the manager group.
const PYTHON_MANAGER: &str = include_str!("../../python/manager.py");

/// SharedMap and SharedList against the same jobs under a process-shared
/// mutex (processes) and std's Mutex (threads); Python's Manager with
/// `--python`.
pub(crate) fn manager(o: &Options) -> Res<Vec<Record>> {
    let n: u64 = if o.full { 500_000 } else { 100_000 };
    let w = 2usize;
    let cap = ((w as u64 * n * 2) as usize).next_power_of_two();
    let args_share = |case: &str, share: &dyn Fn(&mut Command)| -> Res<f64> {
        let (wall, _) = procs(case, w, n, share)?;
        Ok(w as f64 * n as f64 / wall)
    };
    let (mut map_get, mut tab_get, mut hm_get) = (Vec::new(), Vec::new(), Vec::new());
    let [map_ins, tab_ins, hm_ins, list, pvec, mvec] = alternate(
        reps(o),
        [
            &mut || {
                let map = shmkit::map::SharedMap::<u64, u64>::create_anonymous(cap).map_err(e)?;
                let ins = args_share("map-ins", &|c| map.share_with(c, "B_DATA"))?;
                map_get.push(args_share("map-get", &|c| map.share_with(c, "B_DATA"))?);
                if map.len() != w * n as usize {
                    return Err(format!("map holds {} entries", map.len()));
                }
                Ok(ins)
            },
            &mut || {
                let t = PthreadTable::create(cap).map_err(e)?;
                let ins = args_share("ptab-ins", &|c| t.share_with(c, "B_DATA"))?;
                tab_get.push(args_share("ptab-get", &|c| t.share_with(c, "B_DATA"))?);
                Ok(ins)
            },
            &mut || {
                let (ins, get) = hashmap_threads(w, n)?;
                hm_get.push(get);
                Ok(ins)
            },
            &mut || {
                let l =
                    shmkit::list::SharedList::<u64>::create_anonymous(w * n as usize).map_err(e)?;
                let r = args_share("list-push", &|c| l.share_with(c, "B_DATA"))?;
                if l.to_vec().len() != w * n as usize {
                    return Err("list lost items".into());
                }
                Ok(r)
            },
            &mut || {
                let t = PthreadTable::create(cap).map_err(e)?;
                let r = args_share("pvec-push", &|c| t.share_with(c, "B_DATA"))?;
                if t.vec_len() != w as u64 * n {
                    return Err("pthread vector lost items".into());
                }
                Ok(r)
            },
            &mut || vec_threads(w, n),
        ],
    )?;
    let pp = placement(w, "processes");
    let pt = placement(w, "threads");
    let mut out = Vec::new();
    for (name, xs, place) in [
        ("shmkit-map-insert/2p", map_ins, &pp),
        ("pthread-table-insert/2p", tab_ins, &pp),
        ("mutex-hashmap-insert/2t", hm_ins, &pt),
        ("shmkit-map-get/2p", map_get, &pp),
        ("pthread-table-get/2p", tab_get, &pp),
        ("mutex-hashmap-get/2t", hm_get, &pt),
        ("shmkit-list-push/2p", list, &pp),
        ("pthread-vec-push/2p", pvec, &pp),
        ("mutex-vec-push/2t", mvec, &pt),
    ] {
        out.push(record(
            "manager",
            name.into(),
            "throughput",
            "ops/s",
            xs,
            place.clone(),
        ));
    }
    if o.python {
        let m: u64 = if o.full { 10_000 } else { 2_000 };
        let mut py: [Vec<f64>; 3] = Default::default();
        let keys = [
            "python-manager-dict-set/2p",
            "python-manager-dict-get/2p",
            "python-manager-list-append/2p",
        ];
        for _ in 0..reps(o) {
            let got = python_once(PYTHON_MANAGER, &[m.to_string()], keys)?;
            for (xs, v) in py.iter_mut().zip(got) {
                xs.push(v);
            }
        }
        for (key, xs) in keys.iter().zip(py) {
            out.push(record(
                "manager",
                (*key).into(),
                "throughput",
                "ops/s",
                xs,
                "python3 Manager server, fork, unpinned".into(),
            ));
        }
    }
    Ok(out)
}

/// `Mutex<HashMap>` between `w` pinned threads: (insert ops/s, get ops/s).
fn hashmap_threads(w: usize, n: u64) -> Res<(f64, f64)> {
    let m = Arc::new(Mutex::new(std::collections::HashMap::<u64, u64>::new()));
    let m2 = m.clone();
    let ins = pinned_threads(w, move |t| {
        for i in 0..n {
            m2.lock().unwrap().insert(mkey(t, i), i);
        }
    })?;
    let m3 = m.clone();
    let get = pinned_threads(w, move |t| {
        for i in 0..n {
            assert_eq!(m3.lock().unwrap().get(&mkey(t, i)).copied(), Some(i));
        }
    })?;
    let ops = w as f64 * n as f64;
    Ok((ops / ins, ops / get))
}

/// `Mutex<Vec>` pushes from `w` pinned threads, ops/s.
fn vec_threads(w: usize, n: u64) -> Res<f64> {
    let v = Arc::new(Mutex::new(Vec::<u64>::with_capacity(w * n as usize)));
    let wall = pinned_threads(w, move |t| {
        for i in 0..n {
            v.lock().unwrap().push(mkey(t, i));
        }
    })?;
    Ok(w as f64 * n as f64 / wall)
}

/// The workers of this group, or `None` for a case that is not one of them.
pub(super) fn worker(case: &str, idx: usize, args: &[String], ctl: &Ctl) -> Option<Res<()>> {
    let ours = matches!(
        case,
        "map-ins" | "map-get" | "ptab-ins" | "ptab-get" | "pvec-push" | "list-push"
    );
    group_worker(ours, args, |n| {
        match case {
            "map-ins" | "map-get" => {
                let map =
                    shmkit::map::SharedMap::<u64, u64>::open_inherited("B_DATA").map_err(e)?;
                let get = case == "map-get";
                ctl.start(idx);
                for i in 0..n {
                    if get {
                        if map.get(&mkey(idx, i)) != Some(i) {
                            return Err(format!("map lost key {i}"));
                        }
                    } else {
                        map.insert(mkey(idx, i), i).map_err(e)?;
                    }
                }
                ctl.finish(idx);
            }
            "ptab-ins" | "ptab-get" | "pvec-push" => {
                let t = PthreadTable::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for i in 0..n {
                    let ok = match case {
                        "ptab-ins" => t.insert(mkey(idx, i), i),
                        "ptab-get" => t.get(mkey(idx, i)) == Some(i),
                        _ => t.push(mkey(idx, i)),
                    };
                    if !ok {
                        return Err(format!("{case}: failed at {i}"));
                    }
                }
                ctl.finish(idx);
            }
            "list-push" => {
                let list = shmkit::list::SharedList::<u64>::open_inherited("B_DATA").map_err(e)?;
                ctl.start(idx);
                for i in 0..n {
                    list.push(mkey(idx, i))
                        .map_err(|_| "list full".to_string())?;
                }
                ctl.finish(idx);
            }
            _ => unreachable!("{case} is not a case of this group"),
        }
        Ok(())
    })
}

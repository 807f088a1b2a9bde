//! `shmkit ls | inspect | rm | gc`: printing only; the work is in
//! `shmkit::admin`, the argument parsing in `main.rs`.

use std::process::ExitCode;

use serde::Serialize;
use shmkit::admin::{self, Entry};
use shmkit::ring;

fn fail(cmd: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("shmkit {cmd}: {e}");
    ExitCode::FAILURE
}

fn age(e: &Entry) -> String {
    match e.age().map(|d| d.as_secs()) {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

fn status(e: &Entry) -> String {
    e.problem
        .as_ref()
        .map_or_else(|| "ok".into(), |p| format!("corrupt: {p}"))
}

/// A segment as `ls --json` prints it, one object per line, keys in this
/// order.
#[derive(Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    kind: String,
    elem: String,
    len: u64,
    size: u64,
    creator_pid: u32,
    creator_alive: bool,
    attached_alive: usize,
    age_s: u64,
    status: String,
}

pub fn ls(json: bool) -> ExitCode {
    let listing = match admin::list() {
        Ok(l) => l,
        Err(e) => return fail("ls", e),
    };
    // On stderr, so that stdout stays one JSON object per line.
    note_unreadable("ls", &listing.unreadable, "not listed");
    let entries = listing.entries;
    if json {
        for e in &entries {
            let line = JsonEntry {
                name: &e.name,
                kind: e.kind_name(),
                elem: e.info.elem.name(),
                len: e.info.len,
                size: e.file_size,
                creator_pid: e.creator().map_or(0, |t| t.pid()),
                creator_alive: e.creator_alive(),
                attached_alive: e.live_attached().len(),
                age_s: e.age().map_or(0, |d| d.as_secs()),
                status: status(e),
            };
            match serde_json::to_string(&line) {
                Ok(l) => println!("{l}"),
                Err(err) => return fail("ls", err),
            }
        }
        return ExitCode::SUCCESS;
    }
    if entries.is_empty() {
        println!("no shmkit segments in {}", shmkit::segment::SHM_DIR);
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<32} {:<11} {:<10} {:>10} {:>10} {:>8} {:<6} {:>5}  STATUS",
        "NAME", "KIND", "TYPE", "LEN", "BYTES", "CREATOR", "ALIVE", "AGE"
    );
    for e in &entries {
        let alive = if e.creator_alive() {
            "yes".to_string()
        } else if !e.live_attached().is_empty() {
            format!("no(+{})", e.live_attached().len())
        } else {
            "no".to_string()
        };
        println!(
            "{:<32} {:<11} {:<10} {:>10} {:>10} {:>8} {:<6} {:>5}  {}",
            e.name,
            e.kind_name(),
            e.info.elem.name(),
            e.info.len,
            e.file_size,
            e.creator().map_or(0, |t| t.pid()),
            alive,
            age(e),
            status(e)
        );
    }
    ExitCode::SUCCESS
}

pub fn inspect(name: &str) -> ExitCode {
    let e = match admin::entry(name) {
        Ok(e) => e,
        Err(err) => return fail("inspect", err),
    };
    println!("name:            {}", e.name);
    println!("kind:            {}", e.kind_name());
    println!(
        "element:         {} ({} bytes, align {}, fingerprint {:#018x})",
        e.info.elem.name(),
        e.info.elem.size,
        e.info.elem.align,
        e.info.elem.fingerprint
    );
    println!("length:          {}", e.info.len);
    println!("layout version:  {}", e.version);
    println!(
        "bytes:           {} (header says {}, body at {})",
        e.file_size, e.info.total_size, e.info.data_offset
    );
    println!(
        "creator:         pid {} ({})",
        e.creator().map_or(0, |t| t.pid()),
        if e.creator_alive() { "alive" } else { "dead" }
    );
    let live: Vec<String> = e
        .live_attached()
        .iter()
        .map(|t| t.pid().to_string())
        .collect();
    println!(
        "attached:        {} live [{}]{}",
        live.len(),
        live.join(", "),
        if e.attach_overflow > 0 {
            format!(", {} more unrecorded", e.attach_overflow)
        } else {
            String::new()
        }
    );
    println!("age:             {}", age(&e));
    println!("ready:           {}", e.ready);
    if let Some(p) = &e.problem {
        println!("status:          CORRUPT: {p}");
        return ExitCode::FAILURE;
    }
    println!("status:          ok");
    let seg = match admin::open_any(name) {
        Ok(s) => s,
        Err(err) => {
            println!("status:          CORRUPT: {err}");
            return ExitCode::FAILURE;
        }
    };
    match seg.info().kind() {
        Some(shmkit::header::Kind::Ring) => {
            let s = ring::state_of(seg);
            let fill = s.tail.wrapping_sub(s.head);
            println!("ring head:       {}", s.head);
            println!("ring tail:       {}", s.tail);
            println!("ring fill:       {fill} of {}", s.capacity);
            println!("ring done:       {}", s.done);
            println!("closed:          {}", s.closed);
            match s.producer {
                Some((pid, alive)) => println!(
                    "producer:        pid {pid} ({})",
                    if alive { "alive" } else { "dead" }
                ),
                None => println!("producer:        none"),
            }
            println!("consumers:       {:?}", s.consumers);
            println!(
                "sleepers:        {} consumer(s), producer {}",
                s.consumers_sleeping,
                if s.producer_sleeping {
                    "asleep"
                } else {
                    "awake"
                }
            );
            if s.head > s.tail || fill > s.capacity {
                println!("status:          CORRUPT: head/tail out of range");
                return ExitCode::FAILURE;
            }
        }
        Some(shmkit::header::Kind::Queue) => {
            let s = shmkit::queue::state_of(seg);
            println!(
                "queue lanes:     {} of {} slots",
                s.lanes.len(),
                s.cap_per_producer
            );
            let mut bad = false;
            for (i, l) in s.lanes.iter().enumerate() {
                let owner = match l.owner {
                    Some((pid, alive)) => {
                        format!("pid {pid} ({})", if alive { "alive" } else { "dead" })
                    }
                    None => "free".into(),
                };
                println!(
                    "lane {i:<3}        head {} tail {} fill {}, producer {owner}",
                    l.head,
                    l.tail,
                    l.tail.wrapping_sub(l.head)
                );
                bad |= l.head > l.tail || l.tail - l.head > s.cap_per_producer;
            }
            for (pid, alive, held) in &s.consumers {
                println!(
                    "consumer:        pid {pid} ({}), holding {held}",
                    if *alive { "alive" } else { "dead" }
                );
            }
            println!("done:            {}", s.done);
            println!("abandoned:       {}", s.abandoned);
            println!("closed:          {}", s.closed);
            if bad {
                println!("status:          CORRUPT: a lane's head/tail out of range");
                return ExitCode::FAILURE;
            }
        }
        Some(shmkit::header::Kind::Array) => {
            print_lock(&shmkit::lock::state_of(&seg));
            drop(seg);
            println!("first values:    {}", first_values(name, &e));
        }
        Some(shmkit::header::Kind::Lock) => print_lock(&shmkit::lock::state_of(&seg)),
        Some(shmkit::header::Kind::Cell) => {
            // The writers' lock starts the body, as in an array.
            print_lock(&shmkit::lock::state_of(&seg));
            let (version, takeovers) = shmkit::snapshot::state_of(&seg);
            println!("cell version:    {version} (stores completed)");
            println!("takeovers:       {takeovers} (writers found dead holding the lock)");
        }
        Some(shmkit::header::Kind::Accumulator) => {
            drop(seg);
            match shmkit::SharedAccumulator::open(name) {
                Ok(a) => println!("sum:             {} over {} stripes", a.sum(), a.stripes()),
                Err(err) => println!("sum:             unreadable: {err}"),
            }
        }
        _ => {}
    }
    ExitCode::SUCCESS
}

fn print_lock(s: &shmkit::lock::LockState) {
    match s.holder {
        Some(pid) => println!("lock:            held by pid {pid}"),
        None => println!("lock:            free"),
    }
    println!(
        "owner died:      {}",
        if s.owner_died {
            "yes: a holder died and the data awaits repair (mark_consistent)"
        } else {
            "no"
        }
    );
    println!(
        "lock use:        {} acquisitions, {} hand-offs between processes",
        s.acquisitions, s.handoffs
    );
}

fn first_values(name: &str, e: &Entry) -> String {
    macro_rules! show {
        ($($t:ty),*) => {
            match e.info.elem.name().as_str() {
                $(stringify!($t) => match shmkit::SharedArray::<$t>::open(name) {
                    Ok(a) => {
                        let v: Vec<String> =
                            a.values().take(8).map(|x| format!("{x:?}")).collect();
                        let more = if a.len() > 8 { ", ..." } else { "" };
                        format!("[{}{more}]", v.join(", "))
                    }
                    Err(err) => format!("unreadable: {err}"),
                },)*
                other => format!("(element type {other} not shown)"),
            }
        };
    }
    show!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64)
}

pub fn rm(names: &[String]) -> ExitCode {
    let mut ok = true;
    for name in names {
        match admin::remove(name) {
            Ok(()) => println!("removed {name}"),
            Err(shmkit::Error::BadMagic { .. }) => {
                eprintln!(
                    "shmkit rm: {name} is not a shmkit segment; refusing to remove it \
                     (use rm /dev/shm/{name} if you are sure)"
                );
                ok = false;
            }
            Err(e) => {
                eprintln!("shmkit rm: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Say on stderr which files in /dev/shm could not be read: they may be
/// shmkit segments of another user. Up to five names, then a count.
fn note_unreadable(cmd: &str, names: &[String], fate: &str) {
    if names.is_empty() {
        return;
    }
    let mut shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        shown.push_str(&format!(" and {} more", names.len() - 5));
    }
    eprintln!(
        "shmkit {cmd}: {} file(s) in {} could not be read (permission denied: another \
         user's, or mode 0600), so whether they are shmkit segments is unknown; {fate}: {shown}",
        names.len(),
        shmkit::segment::SHM_DIR
    );
}

/// `prefix` is "" for every segment; the parser has checked it.
pub fn gc(dry: bool, prefix: &str) -> ExitCode {
    let found = match admin::gc(dry, prefix) {
        Ok(f) => f,
        Err(e) => return fail("gc", e),
    };
    let mut ok = true;
    for (e, r) in &found.removed {
        let why = format!(
            "creator pid {} dead, no live process attached",
            e.creator().map_or(0, |t| t.pid())
        );
        match r {
            Ok(()) if dry => println!("would remove {} ({why})", e.name),
            Ok(()) => println!("removed {} ({why})", e.name),
            Err(err) => {
                eprintln!("shmkit gc: {err}");
                ok = false;
            }
        }
    }
    if found.removed.is_empty() {
        println!("nothing to remove");
    }
    note_unreadable("gc", &found.unreadable, "not considered");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

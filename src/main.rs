//! The `shmkit` command-line tool.

use std::process::ExitCode;

fn main() -> ExitCode {
    // loom builds model the algorithms only; the tool needs real shared
    // memory, so a loom build of it does nothing.
    if shmkit::sync::MODELLED {
        return ExitCode::SUCCESS;
    }
    cli::main()
}

mod cli {
    use std::process::ExitCode;

    const USAGE: &str = "\
shmkit: shared memory between processes, without locks where none are needed

USAGE:
    shmkit ls [--json]
    shmkit inspect NAME
    shmkit rm NAME...
    shmkit gc [--dry-run] [--prefix PREFIX]
    shmkit bench [--full] [--only GROUP] [--json] [--python]
    shmkit help

COMMANDS:
    ls      List every shmkit segment in /dev/shm (never a foreign file):
            name, kind, element type, length, size, creator pid and whether
            it is alive (pid + start time, so a reused pid is not), age,
            status. --json prints one JSON object per line.
    inspect Show a segment's whole validated header, and for a ring: head,
            tail, fill, closed, producer, consumers, sleepers; for an
            array: its first values. A corrupt segment is reported with
            what is wrong (exit code 1).
    rm      Remove the named shmkit segments. Refuses files that are not
            shmkit segments. Processes that have a segment open keep using it.
    gc      Remove segments whose creator and every attached process are
            dead. --dry-run only prints what would be removed; --prefix
            considers only segments whose name starts with PREFIX (one
            application's segments, say).
    bench   Measure shmkit against the lock-based way of doing each job, side
            by side in one run, in real (pinned) processes, and print ratios.
            --full       longer, steadier runs (minutes instead of < 60 s)
            --only GROUP one of: counter, float-add, queue-throughput,
                         latency, pipe, manager, python
            --json       one JSON object per line (schema in README.md)
            --python     also run Python multiprocessing's versions (needs python3)

EXIT CODES:
    0 success, 1 a command failed (the message says why), 2 bad usage
";

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let Some(cmd) = args.first() else {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        };
        let rest = &args[1..];
        if cmd != "__bench-worker" && rest.iter().any(|a| a == "-h" || a == "--help") {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        match cmd.as_str() {
            "bench" => bench(rest),
            "ls" => crate::tools::ls(rest),
            "inspect" => crate::tools::inspect(rest),
            "rm" => crate::tools::rm(rest),
            "gc" => crate::tools::gc(rest),
            "__bench-worker" => shmkit::bench::worker(rest),
            "help" | "-h" | "--help" => {
                print!("{USAGE}");
                ExitCode::SUCCESS
            }
            "-V" | "--version" => {
                println!("shmkit {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            other => {
                eprintln!("shmkit: unknown command {other:?}\n\n{USAGE}");
                ExitCode::from(2)
            }
        }
    }

    fn bench(args: &[String]) -> ExitCode {
        let mut opts = shmkit::bench::Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--full" => opts.full = true,
                "--json" => opts.json = true,
                "--python" => opts.python = true,
                "--only" => match it.next() {
                    Some(g) => opts.only = Some(g.clone()),
                    None => {
                        eprintln!("shmkit bench: --only needs a group name");
                        return ExitCode::from(2);
                    }
                },
                "-h" | "--help" => {
                    print!("{USAGE}");
                    return ExitCode::SUCCESS;
                }
                other => {
                    eprintln!("shmkit bench: unknown option {other:?} (see `shmkit help`)");
                    return ExitCode::from(2);
                }
            }
        }
        shmkit::bench::run(&opts)
    }
}

mod tools {
    //! `shmkit ls | inspect | rm | gc`: printing only; the work is in
    //! `shmkit::inspect`.
    use std::process::ExitCode;

    use shmkit::bench::json_str;
    use shmkit::inspect::{self, Entry};
    use shmkit::ring;

    fn fail(cmd: &str, e: impl std::fmt::Display) -> ExitCode {
        eprintln!("shmkit {cmd}: {e}");
        ExitCode::FAILURE
    }

    fn usage(cmd: &str, what: &str) -> ExitCode {
        eprintln!("shmkit {cmd}: {what} (see `shmkit help`)");
        ExitCode::from(2)
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

    pub fn ls(args: &[String]) -> ExitCode {
        let json = match args {
            [] => false,
            [a] if a == "--json" => true,
            _ => return usage("ls", "takes only --json"),
        };
        let listing = match inspect::list() {
            Ok(l) => l,
            Err(e) => return fail("ls", e),
        };
        // On stderr, so that stdout stays one JSON object per line.
        note_unreadable("ls", &listing.unreadable, "not listed");
        let entries = listing.entries;
        if json {
            for e in &entries {
                println!(
                    "{{\"name\":{},\"kind\":{},\"elem\":{},\"len\":{},\"size\":{},\"creator_pid\":{},\"creator_alive\":{},\"attached_alive\":{},\"age_s\":{},\"status\":{}}}",
                    json_str(&e.name),
                    json_str(&e.kind_name()),
                    json_str(&e.info.elem.name()),
                    e.info.len,
                    e.file_size,
                    e.creator().map_or(0, |t| t.pid()),
                    e.creator_alive(),
                    e.live_attached().len(),
                    e.age().map_or(0, |d| d.as_secs()),
                    json_str(&status(e)),
                );
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

    pub fn inspect(args: &[String]) -> ExitCode {
        let [name] = args else {
            return usage("inspect", "needs exactly one segment name");
        };
        let e = match inspect::entry(name) {
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
        let seg = match inspect::open_any(name) {
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
            Some(shmkit::header::Kind::Array) => {
                print_lock(&shmkit::lock::state_of(&seg));
                drop(seg);
                println!("first values:    {}", first_values(name, &e));
            }
            Some(shmkit::header::Kind::Lock) => print_lock(&shmkit::lock::state_of(&seg)),
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

    pub fn rm(args: &[String]) -> ExitCode {
        if args.is_empty() {
            return usage("rm", "needs one or more segment names");
        }
        let mut ok = true;
        for name in args {
            match inspect::remove(name) {
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

    pub fn gc(args: &[String]) -> ExitCode {
        let (mut dry, mut prefix) = (false, String::new());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--dry-run" => dry = true,
                "--prefix" => match it.next() {
                    Some(p) if !p.is_empty() && !p.contains('/') => prefix = p.clone(),
                    _ => {
                        return usage("gc", "--prefix needs a non-empty name prefix without '/'");
                    }
                },
                _ => return usage("gc", "takes only --dry-run and --prefix PREFIX"),
            }
        }
        let found = match inspect::gc(dry, &prefix) {
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
}

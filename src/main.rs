//! The `shmkit` command-line tool.

use std::process::ExitCode;

const USAGE: &str = "\
shmkit: shared memory between processes, without locks where none are needed

USAGE:
    shmkit bench [--full] [--only GROUP] [--json] [--python]
    shmkit help

COMMANDS:
    bench   Measure shmkit against the lock-based way of doing each job, side
            by side in one run, in real (pinned) processes, and print ratios.
            --full       longer, steadier runs (minutes instead of < 60 s)
            --only GROUP one of: counter, float-add, queue-throughput,
                         latency, python
            --json       one JSON object per line (schema in README.md)
            --python     also run Python multiprocessing's versions (needs python3)

EXIT CODES:
    0 success, 1 a command failed (the message says why), 2 bad usage
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "bench" => bench(rest),
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

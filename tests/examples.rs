//! CI runs the examples: each program under `examples/` (the porting guide's
//! `mp_*` ones and the others) as a process, asserting its exit status and
//! the results it prints (sums, final arrays), which are the Python
//! programs' results for the ports (docs/from-multiprocessing.md).
//!
//! The example binaries are cargo's: `cargo test --all-targets` builds them
//! into `target/<profile>/examples/` before any test runs. So that a plain
//! `cargo test --test examples` (or a stale build) also runs the current
//! sources, the first test asks cargo to build them: a no-op when they are
//! fresh (cargo has released its build lock while tests run). Run outside
//! cargo (no `CARGO` variable), the binaries found are used as they are.
#![cfg(not(shmkit_loom))]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use shmkit::worker::Pool;

/// Far above what any example needs in a debug build (a few seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// `target/<profile>`, from this test binary's path
/// (`target/<profile>/deps/examples-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in target/<profile>/deps")
        .to_owned()
}

/// Build the examples (once per test run) in this test's target directory
/// and profile; the directory holding them.
fn examples_dir() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let built = BUILT.get_or_init(|| {
        let Some(cargo) = std::env::var_os("CARGO") else {
            return Ok(());
        };
        let target = dir.parent().expect("target dir");
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(p) => p.to_owned(),
            None => return Err(format!("no profile in {}", dir.display())),
        };
        let out = Command::new(cargo)
            .args(["build", "--examples", "-p", "shmkit", "--profile", &profile])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cargo build --examples failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    dir.join("examples")
}

/// Run example `name` with `args`; its stdout, once it exited successfully
/// (a failure, or a run over [`LIMIT`], fails the test with its stderr).
fn run(name: &str, args: &[&str]) -> String {
    let exe = examples_dir().join(name);
    assert!(
        exe.exists(),
        "{} is missing: build the examples (cargo build --examples)",
        exe.display()
    );
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    // Read both pipes while it runs (a full pipe would stall it); they
    // close when it and its workers are gone.
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    // The worker pool joins it: a time limit, a message naming a failure,
    // and it is killed and reaped if the test fails.
    let mut pool = Pool::new();
    pool.adopt(child, name, 0);
    let result = pool.join_timeout(LIMIT).pop().unwrap();
    let (out, err) = (out.join().unwrap().unwrap(), err.join().unwrap().unwrap());
    if let Err(e) = result {
        panic!("example {name}: {e}\nstdout:\n{out}\nstderr:\n{err}");
    }
    out
}

/// The lines of `out`, to compare with what the program must print.
fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

fn assert_has(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l == line),
        "no line {line:?} in:\n{out}"
    );
}

#[test]
fn mp_value_counts_exactly_with_the_lock_and_lock_free() {
    let out = run("mp_value", &[]);
    assert_has(&out, "with_lock: 200000 (expected 200000)");
    assert_has(&out, "fetch_add: 200000 (expected 200000)");
    // Without the lock the count is at most exact (updates can only be lost).
    let racy: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("no_lock: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no no_lock count in:\n{out}"));
    assert!((1..=200_000).contains(&racy), "{out}");
}

#[test]
fn mp_lock_counts_and_squares_under_one_lock() {
    let out = run("mp_lock", &[]);
    assert_eq!(
        lines(&out),
        [
            "Final counter value: 200000",
            "Squared array: [1.0, 4.0, 9.0, 16.0]"
        ]
    );
}

#[test]
fn mp_array_ends_at_100_everywhere_with_get_lock_and_fetch_add() {
    let out = run("mp_array", &[]);
    let finals: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("Final Result: "))
        .collect();
    assert_eq!(
        finals, ["Final Result: [100, 100, 100, 100, 100]"; 2],
        "{out}"
    );
    let verdicts: Vec<_> = out.lines().filter(|l| l.starts_with(">> ")).collect();
    assert_eq!(
        verdicts,
        [">> Success: All elements were updated correctly."; 2]
    );
    // Each of the 2 x 2 processes started and finished.
    assert_eq!(
        out.lines().filter(|l| l.ends_with("] Finished")).count(),
        4,
        "{out}"
    );
}

#[test]
fn mp_array_ranges_fills_disjoint_halves() {
    let out = run("mp_array_ranges", &[]);
    assert_eq!(
        lines(&out),
        ["[100, 100, 100, 100, 100, 200, 200, 200, 200, 200]"]
    );
}

#[test]
fn mp_array_pairs_writes_each_record() {
    let out = run("mp_array_pairs", &[]);
    assert_eq!(
        lines(&out),
        [
            "Shared array after processing:",
            "[2.0, 5.0]",
            "[4.0, 8.4]",
            "[6.0, 2.2]",
            "[8.0, 19.6]",
            "[3.0, 13.4]",
        ]
    );
}

#[test]
fn mp_queue_delivers_all_five_in_order() {
    let out = run("mp_queue", &[]);
    let consumed: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("Consumed: "))
        .collect();
    let produced: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("Produced: "))
        .collect();
    let want = |what: &str| (1..=5).map(|i| format!("{what}: {i}")).collect::<Vec<_>>();
    assert_eq!(consumed, want("Consumed"), "{out}");
    assert_eq!(produced, want("Produced"), "{out}");
    assert_eq!(out.lines().count(), 10, "{out}");
}

#[test]
fn mp_queue_results_collects_every_square() {
    let out = run("mp_queue_results", &[]);
    assert_eq!(lines(&out), ["{0: 0, 1: 1, 2: 4, 3: 9, 4: 16}"]);
}

#[test]
fn mp_joinable_queue_processes_all_nine() {
    let out = run("mp_joinable_queue", &[]);
    assert_eq!(
        lines(&out),
        [
            "all 9 items processed",
            "Processed Data in Shared Array: [2, 4, 6, 8, 10, 12, 14, 16, 18]"
        ]
    );
}

#[test]
fn mp_pipe_carries_text_and_a_list() {
    let out = run("mp_pipe", &[]);
    assert_eq!(
        lines(&out),
        ["Received: Hello from sender!", "Received: [1, 2, 3]"]
    );
}

#[test]
fn mp_pipe_duplex_takes_turns() {
    let out = run("mp_pipe_duplex", &[]);
    let want: Vec<String> = (0..3)
        .flat_map(|i| {
            [
                format!("Worker received: Main message {i}"),
                format!("Main received: Worker reply {i}"),
            ]
        })
        .collect();
    assert_eq!(lines(&out), want);
}

#[test]
fn ping_pong_squares_each_request() {
    let out = run("ping_pong", &[]);
    assert_eq!(
        lines(&out),
        [
            "3^2 = 9",
            "7^2 = 49",
            "11^2 = 121",
            "15^2 = 225",
            "20^2 = 400"
        ]
    );
}

#[test]
fn mp_manager_list_holds_every_append() {
    let out = run("mp_manager_list", &[]);
    assert_has(&out, "Sorted: [0, 10, 20, 30, 40]");
}

#[test]
fn mp_manager_dict_holds_fifty_entries() {
    let out = run("mp_manager_dict", &[]);
    assert_eq!(
        lines(&out),
        [
            "Total entries: 50 (expected 50)",
            "  proc0_key0: 0",
            "  proc0_key1: 0",
            "  proc0_key2: 0",
            "  proc0_key3: 0",
            "  proc0_key4: 0",
            "  ...",
        ]
    );
}

#[test]
fn mp_namespace_loses_no_increment() {
    let out = run("mp_namespace", &[]);
    let l = lines(&out);
    assert_eq!(l[0], "x = 5", "{out}");
    assert!(
        l[1].starts_with("items = [") && l[1].ends_with("(sorted: [1, 2, 3, 4, 5])"),
        "{out}"
    );
}

#[test]
fn mp_shared_memory_doubles_in_place() {
    let out = run("mp_shared_memory", &[]);
    assert_eq!(
        lines(&out),
        [
            "Before: [1.0, 2.0, 3.0, 4.0, 5.0]",
            "After: [2.0, 4.0, 6.0, 8.0, 10.0]"
        ]
    );
}

#[test]
fn mp_shared_memory_numpy_squares_each_slice() {
    let out = run("mp_shared_memory_numpy", &[]);
    assert_eq!(
        lines(&out),
        [
            "First 10: [0.0, 1.0, 4.0, 9.0, 16.0, 25.0, 36.0, 49.0, 64.0, 81.0]",
            "Last: 999998000001.0"
        ]
    );
}

#[test]
fn square_in_place_squares_a_million() {
    let out = run("square_in_place", &["1000000"]);
    assert!(
        out.starts_with("squared 1000000 elements in 4 processes in "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("; wrong: 0"), "{out}");
}

#[test]
fn counter_is_exact() {
    let out = run("counter", &["--procs", "3", "--iters", "20000"]);
    assert_eq!(lines(&out), ["final: 60000"]);
}

#[test]
fn array_adds_per_element() {
    let out = run("array", &[]);
    assert_eq!(
        lines(&out),
        [
            "ints:   [100, 100, 100, 100, 100]",
            "floats: [51.5, 52.5, 53.5]"
        ]
    );
}

#[test]
fn locked_update_is_exact_with_the_lock_and_lock_free() {
    let out = run("locked_update", &[]);
    let finals: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| {
            let (what, rest) = l.split_once(" final ")?;
            Some((what.trim(), rest.split_whitespace().next()?))
        })
        .collect();
    assert_eq!(finals.len(), 3, "{out}");
    assert_eq!(finals[0], ("read-then-write under the lock", "200000"));
    assert_eq!(finals[2], ("lock-free fetch_add", "200000"));
}

#[test]
fn producer_consumer_doubles_every_item_both_ways() {
    let want = "results: [2, 4, 6, 8, 10, 12, 14, 16, 18]";
    assert_eq!(lines(&run("producer_consumer", &[])), [want]);
    assert_eq!(
        lines(&run("producer_consumer", &["--joinable"])),
        ["joined: all 9 items done", want]
    );
}

#[test]
fn a_failing_example_fails_the_test() {
    // The harness itself: an example that exits non-zero is reported with
    // its code and output, not taken for a pass.
    let r = std::panic::catch_unwind(|| run("counter", &["--procs", "x"]));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        msg.contains("example counter: worker \"counter\" #0"),
        "{msg}"
    );
    assert!(
        msg.contains("exit code 1") && msg.contains("--procs needs a whole number"),
        "{msg}"
    );
}

//! `shmkit ls | inspect | rm | gc` driven through the real binary, against
//! real segments with live and dead owners, corrupt and foreign files.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fs::Permissions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Cleanup, ExeCopy, NOBODY, Reaper, child_command, child_role, is_root};
use shmkit::ring::Ring;
use shmkit::{CreateOptions, Ordering, SharedArray};

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "create_keep");
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let opts = CreateOptions::new().keep(true);
    SharedArray::<u16>::create_with(&name, 3, &opts).unwrap();
}

/// `gc` is machine-wide: tests that make orphans or run it take this lock,
/// so one test's `gc` never removes another's orphan mid-test.
static GC: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gc_lock() -> std::sync::MutexGuard<'static, ()> {
    GC.lock().unwrap_or_else(|p| p.into_inner())
}

/// A segment whose creator process has exited.
fn orphan(c: &Cleanup) {
    let child = child_command("child_entry", "create_keep")
        .env("SHMKIT_NAME", c.name())
        .spawn()
        .unwrap();
    Reaper(Some(child)).wait_ok();
    assert!(c.path().exists());
}

#[test]
fn ls_lists_live_segments_and_never_foreign_files() {
    let a = Cleanup::new("lsarr");
    let arr = SharedArray::<i32>::create(a.name(), 5).unwrap();
    arr[0].store(1, Ordering::Relaxed);
    let foreign = Cleanup::new("lsforeign");
    std::fs::write(foreign.path(), vec![7u8; 4096]).unwrap();

    let out = shmkit(&["ls"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let line = t.lines().find(|l| l.starts_with(a.name())).expect(&t);
    assert!(line.contains("array") && line.contains("i32"), "{line}");
    assert!(line.contains(&std::process::id().to_string()), "{line}");
    assert!(line.contains(" yes "), "creator alive: {line}");
    assert!(!t.contains(foreign.name()), "listed a foreign file: {t}");

    let out = shmkit(&["ls", "--json"]);
    let t = text(&out);
    let line = t.lines().find(|l| l.contains(a.name())).expect(&t);
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains("\"creator_alive\":true"), "{line}");
    assert!(line.contains("\"len\":5"), "{line}");
    // Every line is one JSON object with the same keys, in this order.
    let keys = [
        "name",
        "kind",
        "elem",
        "len",
        "size",
        "creator_pid",
        "creator_alive",
        "attached_alive",
        "age_s",
        "status",
    ];
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect(l);
        let obj = v.as_object().expect(l);
        assert_eq!(obj.len(), keys.len(), "{l}");
        let at: Vec<usize> = keys
            .iter()
            .map(|k| l.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(at.is_sorted(), "keys out of order: {l}");
    }
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["name"], a.name());
    assert_eq!(v["elem"], "i32");
    assert_eq!(v["creator_pid"], std::process::id());
    assert_eq!(v["status"], "ok");
}

#[test]
fn ls_and_gc_see_dead_owners() {
    let _gc = gc_lock();
    let dead = Cleanup::new("gcdead");
    orphan(&dead);
    let other = Cleanup::new("gcother");
    orphan(&other);
    let live = Cleanup::new("gclive");
    let _arr = SharedArray::<u8>::create(live.name(), 1).unwrap();

    let t = text(&shmkit(&["ls"]));
    let line = t.lines().find(|l| l.starts_with(dead.name())).expect(&t);
    assert!(line.contains(" no "), "creator is dead: {line}");

    let out = shmkit(&["gc", "--dry-run"]);
    let t = text(&out);
    assert!(t.contains(&format!("would remove {}", dead.name())), "{t}");
    assert!(!t.contains(live.name()), "{t}");
    assert!(dead.path().exists(), "dry run removed it");

    // --prefix: only names that start with it (this one dead segment).
    let out = shmkit(&["gc", "--prefix", dead.name()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dead.path().exists(), "gc left a dead segment");
    assert!(other.path().exists(), "gc went past its prefix");
    // This test process's names: the other orphan, never the live segment.
    // (A bare `gc` would also collect other processes' garbage.)
    let out = shmkit(&["gc", "--prefix", &common::prefix()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!other.path().exists(), "gc left a dead segment");
    assert!(live.path().exists(), "gc removed a live segment");
}

#[test]
fn a_live_opener_keeps_an_orphan_alive() {
    let _gc = gc_lock();
    let c = Cleanup::new("gcopened");
    orphan(&c);
    let held = SharedArray::<u16>::open(c.name()).unwrap();
    let t = text(&shmkit(&["gc", "--dry-run"]));
    assert!(!t.contains(c.name()), "would remove a segment in use: {t}");
    drop(held);
    let t = text(&shmkit(&["gc", "--dry-run"]));
    assert!(t.contains(c.name()), "{t}");
}

#[test]
fn inspect_shows_arrays_and_rings() {
    let a = Cleanup::new("insparr");
    let arr = SharedArray::<f64>::create_from(a.name(), &[1.5, -2.0]).unwrap();
    let out = shmkit(&["inspect", a.name()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("[1.5, -2.0]"), "{t}");
    assert!(t.contains("lock:            free"), "{t}");
    assert!(t.contains("status:          ok"), "{t}");
    drop(arr);

    let r = Cleanup::new("inspring");
    let ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    for v in 0..3 {
        tx.push(v).unwrap();
    }
    rx.pop().unwrap();
    let out = shmkit(&["inspect", r.name()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("ring head:       1"), "{t}");
    assert!(t.contains("ring tail:       3"), "{t}");
    assert!(t.contains("ring fill:       2 of 8"), "{t}");
    assert!(
        t.contains(&format!("pid {} (alive)", std::process::id())),
        "{t}"
    );
}

#[test]
fn inspect_shows_a_cell() {
    let c = Cleanup::new("inspcell");
    let cell = shmkit::SharedCell::create(c.name(), [1u64, 2]).unwrap();
    cell.store(&[3, 4]).unwrap();
    cell.store(&[5, 6]).unwrap();
    let out = shmkit(&["inspect", c.name()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("cell version:    2"), "{t}");
    assert!(t.contains("takeovers:       0"), "{t}");
    assert!(t.contains("lock:            free"), "{t}");
}

#[test]
fn inspect_reports_corruption() {
    let c = Cleanup::new("inspbad");
    let mut arr = SharedArray::<i32>::create(c.name(), 4).unwrap();
    arr.keep();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    f.write_all_at(&1000u64.to_le_bytes(), 40).unwrap(); // length
    let out = shmkit(&["inspect", c.name()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("CORRUPT"), "{}", text(&out));
    // ls shows it too, as corrupt.
    let t = text(&shmkit(&["ls"]));
    let line = t.lines().find(|l| l.starts_with(c.name())).expect(&t);
    assert!(line.contains("corrupt"), "{line}");

    // A ring whose head is past its tail.
    let r = Cleanup::new("inspring2");
    let _ring = Ring::<u64>::create(r.name(), 8).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(r.path())
        .unwrap();
    f.write_all_at(&9u64.to_le_bytes(), 256 + 128).unwrap(); // head
    let out = shmkit(&["inspect", r.name()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn rm_removes_ours_and_refuses_foreign_files() {
    let c = Cleanup::new("rmours");
    let mut arr = SharedArray::<u8>::create(c.name(), 1).unwrap();
    arr.keep();
    drop(arr);
    let foreign = Cleanup::new("rmforeign");
    std::fs::write(foreign.path(), b"not ours").unwrap();

    let out = shmkit(&["rm", c.name(), foreign.name()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not a shmkit segment"),
        "{}",
        text(&out)
    );
    assert!(!c.path().exists());
    assert!(foreign.path().exists(), "removed a foreign file");

    let out = shmkit(&["rm", "no-such-segment-shmkit-test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no shared segment named"),
        "{}",
        text(&out)
    );
}

#[test]
fn usage_errors_and_help() {
    assert_eq!(shmkit(&[]).status.code(), Some(2));
    assert_eq!(shmkit(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(shmkit(&["inspect"]).status.code(), Some(2));
    assert_eq!(shmkit(&["rm"]).status.code(), Some(2));
    assert_eq!(shmkit(&["gc", "--now"]).status.code(), Some(2));
    assert_eq!(shmkit(&["gc", "--prefix"]).status.code(), Some(2));
    assert_eq!(shmkit(&["gc", "--prefix", "a/b"]).status.code(), Some(2));
    assert_eq!(shmkit(&["bench", "--only", "nope"]).status.code(), Some(2));
    for cmd in ["ls", "inspect", "rm", "gc", "bench"] {
        let out = shmkit(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let usage = format!("Usage: shmkit {cmd}");
        assert!(text(&out).contains(&usage), "{cmd} --help: {}", text(&out));
    }
    let out = shmkit(&["help"]);
    assert!(out.status.success());
    for cmd in ["ls", "inspect", "rm", "gc", "bench", "EXIT CODES"] {
        assert!(text(&out).contains(cmd), "help lacks {cmd}");
    }
    let out = shmkit(&["inspect", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bad segment name"), "{}", text(&out));
    // A flag no command has is bad usage, before or after the command.
    for args in [
        &["--frobnicate"][..],
        &["ls", "--frobnicate"],
        &["bench", "-x"],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    assert_eq!(shmkit(&["gc", "--prefix="]).status.code(), Some(2));
    assert_eq!(
        shmkit(&["completions", "no-such-shell"]).status.code(),
        Some(2)
    );
    let out = shmkit(&["--version"]);
    assert!(out.status.success());
    assert!(
        text(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out)
    );
}

/// Each subcommand's `--help` lists its own options and not the others'.
#[test]
fn each_subcommand_has_its_own_help() {
    let own: [(&str, &[&str]); 5] = [
        ("ls", &["--json"]),
        ("inspect", &["NAME"]),
        ("rm", &["NAME"]),
        ("gc", &["--dry-run", "--prefix"]),
        ("bench", &["--full", "--only", "--json", "--python"]),
    ];
    let all = [
        "--json",
        "--dry-run",
        "--prefix",
        "--full",
        "--only",
        "--python",
    ];
    for (cmd, opts) in own {
        for help in [vec![cmd, "--help"], vec!["help", cmd]] {
            let out = shmkit(&help);
            assert!(out.status.success(), "{help:?}");
            let t = text(&out);
            for o in opts {
                assert!(t.contains(o), "{help:?} lacks {o}: {t}");
            }
            for o in all.iter().filter(|o| !opts.contains(o)) {
                assert!(!t.contains(o), "{help:?} mentions {o}: {t}");
            }
        }
    }
    // The descriptions of the old hand-written help are kept.
    let t = text(&shmkit(&["gc", "--help"]));
    assert!(
        t.contains("creator and every attached process are dead"),
        "{t}"
    );
    let t = text(&shmkit(&["bench", "--help"]));
    for g in [
        "counter",
        "float-add",
        "queue-throughput",
        "manager",
        "python",
    ] {
        assert!(t.contains(g), "bench --help lacks group {g}: {t}");
    }
}

#[test]
fn completions_print_a_script() {
    for shell in ["bash", "zsh", "fish"] {
        let out = shmkit(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(t.contains("shmkit"), "{shell}: {t}");
        for cmd in ["inspect", "gc", "bench"] {
            assert!(t.contains(cmd), "{shell} script lacks {cmd}");
        }
        // The bench's worker protocol is not part of the tool's command line.
        assert!(
            !t.contains("worker"),
            "{shell} script offers the bench worker"
        );
    }
}

/// `--opt=value` is the same as `--opt value`, and `--` ends the options,
/// so a segment name may start with a dash.
#[test]
fn equals_values_and_double_dash() {
    let _gc = gc_lock();
    let dead = Cleanup::new("eqdead");
    orphan(&dead);
    let t = text(&shmkit(&[
        "gc",
        "--dry-run",
        &format!("--prefix={}", dead.name()),
    ]));
    assert!(t.contains(&format!("would remove {}", dead.name())), "{t}");
    let out = shmkit(&["gc", &format!("--prefix={}", dead.name())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !dead.path().exists(),
        "gc --prefix=NAME left a dead segment"
    );

    let out = shmkit(&["rm", "--", "-no-such-segment-shmkit-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        !text(&out).contains("unexpected argument"),
        "{}",
        text(&out)
    );
    let out = shmkit(&["bench", "--only=nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn inspect_shows_a_held_lock() {
    let c = Cleanup::new("insplock");
    let lock = shmkit::ShmLock::create(c.name()).unwrap();
    let g = lock.lock().unwrap();
    let t = text(&shmkit(&["inspect", c.name()]));
    assert!(t.contains("kind:            lock"), "{t}");
    assert!(
        t.contains(&format!("held by pid {}", std::process::id())),
        "{t}"
    );
    assert!(t.contains("owner died:      no"), "{t}");
    drop(g);
    let t = text(&shmkit(&["inspect", c.name()]));
    assert!(t.contains("lock:            free"), "{t}");
    assert!(t.contains("1 acquisitions"), "{t}");
}

#[test]
fn ls_and_inspect_know_maps_and_lists() {
    let m = Cleanup::new("lsmap");
    let map = shmkit::map::SharedMap::<u64, u64>::create(m.name(), 8).unwrap();
    map.insert(1, 2).unwrap();
    let l = Cleanup::new("lslist");
    let _list = shmkit::list::SharedList::<u32>::create(l.name(), 4).unwrap();
    let t = text(&shmkit(&["ls"]));
    let line = t.lines().find(|x| x.starts_with(m.name())).expect(&t);
    assert!(line.contains(" map ") && line.ends_with("ok"), "{line}");
    let line = t.lines().find(|x| x.starts_with(l.name())).expect(&t);
    assert!(line.contains(" list ") && line.contains("u32"), "{line}");
    let out = shmkit(&["inspect", m.name()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kind:            map"),
        "{}",
        text(&out)
    );
}

#[test]
fn ls_and_gc_name_the_files_they_may_not_read() {
    // Another user's 0600 segment: the command cannot tell whether it is a
    // shmkit segment, so it says so on stderr instead of hiding it.
    let private = Cleanup::new("lsprivate");
    let _seg = SharedArray::<u8>::create(private.name(), 1).unwrap();
    // Root reads everything: as root, run the tool as nobody. Otherwise the
    // owner itself is refused by mode 000.
    let exe = is_root().then(|| ExeCopy::new(Path::new(env!("CARGO_BIN_EXE_shmkit"))));
    if exe.is_none() {
        std::fs::set_permissions(private.path(), Permissions::from_mode(0o000)).unwrap();
    }
    let run = |args: &[&str]| {
        let mut c = match &exe {
            Some(copy) => {
                let mut c = Command::new(copy.path());
                c.uid(NOBODY).gid(NOBODY);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_shmkit")),
        };
        c.args(args).output().unwrap()
    };
    for (args, fate) in [
        (&["ls"][..], "not listed"),
        (&["ls", "--json"][..], "not listed"),
        (&["gc", "--dry-run"][..], "not considered"),
    ] {
        let out = run(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stdout.contains(private.name()), "{args:?}: {stdout}");
        let note = stderr
            .lines()
            .find(|l| l.contains("could not be read"))
            .unwrap_or_else(|| panic!("{args:?}: no note on stderr: {stderr}"));
        assert!(
            note.contains(private.name()) && note.contains(fate),
            "{note}"
        );
    }
}

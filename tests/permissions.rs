//! File modes: a segment gets exactly the mode asked for (the creator's umask
//! does not filter it), and another user is refused with `PermissionDenied`.
//!
//! The suite runs as root here, and root ignores modes, so "another user" is
//! a child that the kernel starts as `nobody` (uid/gid 65534): exec switches
//! the user, nothing is forked from the test runner.
#![cfg(not(shmkit_loom))]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::{Cleanup, ExeCopy, NOBODY, Reaper, child_command, child_command_at, child_role};
use shmkit::{CreateOptions, Error, Ordering, SharedValue};

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let var = |k: &str| std::env::var(k).unwrap();
    match role.as_str() {
        // Create with a restrictive umask in force, and keep the name for
        // the parent to look at.
        "create_under_umask" => {
            // SAFETY: umask only sets this process's mask; this child runs
            // nothing else that creates files.
            unsafe { libc::umask(0o077) };
            let mode = u32::from_str_radix(&var("MODE"), 8).unwrap();
            let opts = CreateOptions::new().mode(mode).keep(true);
            SharedValue::<u64>::create_with(&var("SHMKIT_NAME"), 0, &opts).unwrap();
        }
        // Running as another user: the 0600 segment is refused, the 0666
        // one opens and counts.
        "other_user" => {
            // SAFETY: geteuid has no preconditions.
            assert_ne!(
                unsafe { libc::geteuid() },
                0,
                "the child still runs as root"
            );
            match SharedValue::<u64>::open(&var("DENIED")) {
                Err(Error::PermissionDenied { .. }) => {}
                other => panic!("expected PermissionDenied, got {other:?}"),
            }
            let shared = SharedValue::<u64>::open(&var("SHARED")).unwrap();
            shared.fetch_add(1, Ordering::SeqCst);
        }
        other => panic!("unknown role {other}"),
    }
}

fn mode_of(c: &Cleanup) -> u32 {
    std::fs::metadata(c.path()).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_mode_asked_for_is_the_mode_given_whatever_the_umask() {
    for mode in [0o600, 0o640, 0o660, 0o666] {
        let c = Cleanup::new("mode");
        Reaper(Some(
            child_command(ENTRY, "create_under_umask")
                .env("SHMKIT_NAME", c.name())
                .env("MODE", format!("{mode:o}"))
                .spawn()
                .unwrap(),
        ))
        .wait_ok();
        assert_eq!(mode_of(&c), mode, "asked for {mode:o}");
    }
    // The default is 0600: this user only.
    let c = Cleanup::new("mode");
    let _v = SharedValue::<u64>::create(c.name(), 0).unwrap();
    assert_eq!(mode_of(&c), 0o600);
}

#[test]
fn another_user_is_refused_unless_the_mode_allows() {
    let denied = Cleanup::new("denied");
    let shared = Cleanup::new("shared");
    let _d = SharedValue::<u64>::create(denied.name(), 0).unwrap(); // 0600
    let opts = CreateOptions::new().mode(0o666);
    let s = SharedValue::<u64>::create_with(shared.name(), 0, &opts).unwrap();
    if !common::is_root() {
        // Not root: another user is not to be had, but the owner itself is
        // refused once the mode forbids it.
        std::fs::set_permissions(denied.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = SharedValue::<u64>::open(denied.name()).unwrap_err();
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        return;
    }
    // The segments stay root's; the copy of the binary anyone may run.
    let exe = ExeCopy::new(&std::env::current_exe().unwrap());
    let mut cmd = child_command_at(exe.path(), ENTRY, "other_user");
    cmd.env("DENIED", denied.name())
        .env("SHARED", shared.name())
        .uid(NOBODY)
        .gid(NOBODY);
    Reaper(Some(cmd.spawn().unwrap())).wait_ok();
    assert_eq!(s.load(Ordering::SeqCst), 1, "the child did not count");
}

#[test]
fn a_mode_beyond_permission_bits_is_refused() {
    let c = Cleanup::new("badmode");
    for mode in [0o1777, 0o4600, 0o10_000] {
        let opts = CreateOptions::new().mode(mode).keep(false);
        let e = SharedValue::<u64>::create_with(c.name(), 0, &opts).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { .. }),
            "{mode:o}: {e:?}"
        );
        assert!(!c.path().exists(), "a refused create left a file");
    }
}

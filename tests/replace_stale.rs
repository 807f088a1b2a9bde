//! `CreateOptions::replace_stale`: a name left over by a run that died is
//! replaced; one any live process uses, or a file that is not shmkit's, is
//! not. The rule is `shmkit gc`'s.
#![cfg(not(shmkit_loom))]

mod common;

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::{CreateOptions, Error, Ordering, SharedArray, admin};

const ENTRY: &str = "child_entry";

/// Entry point of every child. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    match role.as_str() {
        // A run that keeps its segment, then ends (as a crashed one would).
        "create_keep" => {
            let opts = CreateOptions::new().keep(true);
            let arr = SharedArray::<u32>::create_with(&name, 4, &opts).unwrap();
            arr[0].store(7, Ordering::Relaxed);
        }
        other => panic!("unknown role {other}"),
    }
}

/// A segment `name` left by a child that has exited.
fn left_over(name: &str) {
    let child = child_command(ENTRY, "create_keep")
        .env("SHMKIT_NAME", name)
        .spawn()
        .unwrap();
    Reaper(Some(child)).wait_ok();
}

fn replacing() -> CreateOptions {
    CreateOptions::new().replace_stale(true)
}

#[test]
fn a_dead_creators_segment_is_replaced_only_when_asked() {
    let c = Cleanup::new("stale");
    left_over(c.name());
    let e = SharedArray::<u32>::create(c.name(), 4).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    // The message offers the ways out.
    assert_eq!(
        e.to_string(),
        format!(
            "a shared segment named {:?} already exists: open it instead (or use \
             open_or_create), pick another name, or, if a run that died left it, create \
             with CreateOptions::replace_stale(true) or remove it (`shmkit gc`)",
            c.name()
        )
    );
    // The same verdict `shmkit gc` would reach.
    assert!(admin::entry(c.name()).unwrap().is_garbage());
    let fresh = SharedArray::<u32>::create_with(c.name(), 8, &replacing()).unwrap();
    assert_eq!(fresh.to_vec(), [0; 8]);
    // And the new one, whose creator is alive, is not stale.
    assert!(!admin::entry(c.name()).unwrap().is_garbage());
    let e = SharedArray::<u32>::create_with(c.name(), 8, &replacing()).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
}

#[test]
fn a_live_attacher_keeps_it() {
    let c = Cleanup::new("attached");
    left_over(c.name());
    let user = SharedArray::<u32>::open(c.name()).unwrap();
    let e = SharedArray::<u32>::create_with(c.name(), 4, &replacing()).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    assert_eq!(user[0].load(Ordering::Relaxed), 7);
    assert_eq!(SharedArray::<u32>::open(c.name()).unwrap().to_vec()[0], 7);
    // Once the user is gone, nobody is left.
    drop(user);
    let fresh = SharedArray::<u32>::create_with(c.name(), 4, &replacing()).unwrap();
    assert_eq!(fresh.to_vec(), [0; 4]);
}

#[test]
fn a_foreign_file_is_never_removed() {
    let c = Cleanup::new("foreign");
    std::fs::write(c.path(), vec![0xA5u8; 4096]).unwrap();
    let e = SharedArray::<u32>::create_with(c.name(), 4, &replacing()).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    assert_eq!(std::fs::read(c.path()).unwrap(), vec![0xA5u8; 4096]);
    // Nor a file whose creator never published its header.
    let c = Cleanup::new("unpublished");
    std::fs::write(c.path(), vec![0u8; 4096]).unwrap();
    let e = SharedArray::<u32>::create_with(c.name(), 4, &replacing()).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    assert_eq!(std::fs::read(c.path()).unwrap().len(), 4096);
}

#[test]
fn open_or_create_restarts_after_a_crash() {
    let c = Cleanup::new("restart");
    left_over(c.name());
    // Without the option the left-over segment is opened, data and all.
    let old = SharedArray::<u32>::open_or_create(c.name(), 4).unwrap();
    assert_eq!(old[0].load(Ordering::Relaxed), 7);
    drop(old);
    // With it, the stale one is replaced by a fresh one.
    let fresh = SharedArray::<u32>::open_or_create_with(
        c.name(),
        4,
        &replacing(),
        &shmkit::OpenOptions::new(),
    )
    .unwrap();
    assert_eq!(fresh.to_vec(), [0; 4]);
}

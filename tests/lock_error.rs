//! `LockError::into_unguarded`: a lock error that borrows nothing, so `?`
//! turns it into `Box<dyn Error>`; dropping an `OwnerDied` guard that way
//! releases the lock and leaves the data marked dirty.
#![cfg(not(shmkit_loom))]

mod common;

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::{LockError, ShmLock};

const ENTRY: &str = "child_entry";

/// Entry point of every child. In the parent's own run it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    match role.as_str() {
        // Take the lock and exit holding it: a holder that died.
        "hold_and_exit" => {
            let lock = ShmLock::open(&name).unwrap();
            std::mem::forget(lock.lock().unwrap());
        }
        other => panic!("unknown role {other}"),
    }
}

/// The lock the way a program's helper would take it: `?` and done.
fn locked_step(lock: &ShmLock) -> Result<(), Box<dyn std::error::Error>> {
    let _guard = lock.lock().map_err(LockError::into_unguarded)?;
    Ok(())
}

#[test]
fn owner_died_goes_through_question_mark_and_stays_dirty() {
    let c = Cleanup::new("lockerr");
    let lock = ShmLock::create(c.name()).unwrap();
    let child = child_command(ENTRY, "hold_and_exit")
        .env("SHMKIT_NAME", c.name())
        .spawn()
        .unwrap();
    Reaper(Some(child)).wait_ok();

    let e = locked_step(&lock).unwrap_err();
    let e = e
        .downcast_ref::<LockError<()>>()
        .expect("the boxed error is the unguarded LockError");
    assert!(matches!(e, LockError::OwnerDied(())), "{e:?}");
    assert!(e.to_string().starts_with("the previous holder died"), "{e}");
    // The guard was dropped: the lock is free, and the data still awaits
    // repair, so the next acquirer is told too.
    match lock.try_lock() {
        Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
        other => panic!("expected OwnerDied again, got {other:?}"),
    }
    assert!(locked_step(&lock).is_ok());
    assert!(!lock.state().owner_died);
}

#[test]
fn unguarded_keeps_the_other_variants() {
    let lock = ShmLock::create_anonymous().unwrap();
    let held = lock.lock().unwrap();
    let e = lock.try_lock().unwrap_err().into_unguarded();
    assert!(matches!(e, LockError::WouldBlock), "{e:?}");
    let e = lock
        .lock_timeout(std::time::Duration::from_millis(10))
        .unwrap_err()
        .into_unguarded();
    assert!(matches!(e, LockError::Timeout), "{e:?}");
    drop(held);
}

//! SharedMap and SharedList across real processes: exact contents, kill -9
//! of writers at any moment, concurrent same-key inserts, hostile contents.
#![cfg(not(shmkit_loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, Reaper, child_command, child_role};
use shmkit::Error;
use shmkit::list::{ListFull, SharedList};
use shmkit::map::{FixedStr, MapError, SharedMap};

const ENTRY: &str = "child_entry";
type Key = FixedStr<32>;

fn key(pid: u64, i: u64) -> Key {
    FixedStr::new(&format!("proc{pid}_key{i}")).unwrap()
}

/// A list value that carries its own checksum, so a torn one shows.
fn item(writer: u64, i: u64) -> [u64; 2] {
    [
        writer << 32 | i,
        (writer << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ]
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let name = std::env::var("SHMKIT_NAME").unwrap();
    let me: u64 = std::env::var("WHO").unwrap().parse().unwrap();
    let n: u64 = std::env::var("N").unwrap().parse().unwrap();
    match role.as_str() {
        "map_keys" => {
            let map = SharedMap::<Key, u64>::open(&name).unwrap();
            for i in 0..n {
                assert_eq!(map.insert(key(me, i), me * 100 + i), Ok(None));
            }
        }
        "map_add" => {
            let map = SharedMap::<Key, u64>::open(&name).unwrap();
            let k = FixedStr::new("shared").unwrap();
            for _ in 0..n {
                map.fetch_add(&k, 1).unwrap();
            }
        }
        "map_forever" => {
            let map = SharedMap::<u64, u64>::open(&name).unwrap();
            let mut i = 0u64;
            loop {
                let k = (me << 40) | (i % 3000);
                let _ = map.insert(k, k.wrapping_mul(3));
                if i.is_multiple_of(7) {
                    let _ = map.remove(&k);
                }
                i += 1;
            }
        }
        "list_push" => {
            let list = SharedList::<[u64; 2]>::open(&name).unwrap();
            for i in 0..n {
                list.push(item(me, i)).unwrap();
            }
        }
        "list_forever" => {
            let list = SharedList::<[u64; 2]>::open(&name).unwrap();
            let mut i = 0;
            while list.push(item(me, i)).is_ok() {
                i += 1;
            }
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, name: &str, who: u64, n: u64) -> Reaper {
    let c = child_command(ENTRY, role)
        .env("SHMKIT_NAME", name)
        .env("WHO", who.to_string())
        .env("N", n.to_string())
        .spawn()
        .unwrap();
    Reaper(Some(c))
}

#[test]
fn five_processes_ten_keys_each() {
    let c = Cleanup::new("map50");
    let map = SharedMap::<Key, u64>::create(c.name(), 128).unwrap();
    let kids: Vec<_> = (1..=5)
        .map(|p| spawn("map_keys", c.name(), p, 10))
        .collect();
    for k in kids {
        k.wait_ok();
    }
    assert_eq!(map.len(), 50);
    let mut entries = map.entries();
    entries.sort_by_key(|e| e.1);
    for p in 1..=5u64 {
        for i in 0..10u64 {
            assert_eq!(map.get(&key(p, i)), Some(p * 100 + i));
        }
    }
    assert_eq!(entries.len(), 50);
    assert_eq!(entries[0], (key(1, 0), 100));
}

#[test]
fn fetch_add_across_processes_is_exact() {
    let c = Cleanup::new("mapadd");
    let map = SharedMap::<Key, u64>::create(c.name(), 16).unwrap();
    map.insert(FixedStr::new("shared").unwrap(), 0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|p| spawn("map_add", c.name(), p, 20_000))
        .collect();
    for k in kids {
        k.wait_ok();
    }
    assert_eq!(map.get(&FixedStr::new("shared").unwrap()), Some(80_000));
    assert_eq!(
        map.fetch_add(&FixedStr::new("absent").unwrap(), 1),
        Err(MapError::NotFound)
    );
}

#[test]
fn four_processes_append_a_hundred_thousand_each() {
    let c = Cleanup::new("list400k");
    let list = SharedList::<[u64; 2]>::create(c.name(), 400_000).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|p| spawn("list_push", c.name(), p, 100_000))
        .collect();
    for k in kids {
        k.wait_ok();
    }
    let mut all = list.to_vec();
    assert_eq!(all.len(), 400_000);
    all.sort();
    let mut want: Vec<_> = (0..4)
        .flat_map(|p| (0..100_000).map(move |i| item(p, i)))
        .collect();
    want.sort();
    assert_eq!(all, want, "a value was lost, duplicated or torn");
    assert!(matches!(list.push(item(9, 9)), Err(ListFull(_))));
}

#[test]
fn killed_map_writers_never_leave_a_visible_half_entry() {
    let c = Cleanup::new("mapkill");
    let map = SharedMap::<u64, u64>::create(c.name(), 1 << 15).unwrap();
    for round in 0..4u64 {
        let mut w = spawn("map_forever", c.name(), round + 1, 0);
        // Let it write for a while (observed progress, not a fixed sleep).
        let deadline = Instant::now() + Duration::from_secs(10);
        while map.len() < 200 * (round as usize + 1) {
            assert!(Instant::now() < deadline, "writer made no progress");
            std::thread::yield_now();
        }
        w.0.as_mut().unwrap().kill().unwrap();
    }
    // Every visible entry is whole: its value matches its key; no key twice.
    let entries = map.entries();
    let mut keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
    for (k, v) in &entries {
        assert_eq!(*v, k.wrapping_mul(3), "half-written entry for {k}");
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), entries.len(), "a key appears twice");
    // The map still works after the kills.
    assert_eq!(map.insert(7, 21), Ok(None));
    assert_eq!(map.get(&7), Some(21));
}

#[test]
fn killed_list_writer_leaves_only_whole_items() {
    let c = Cleanup::new("listkill");
    let list = SharedList::<[u64; 2]>::create(c.name(), 50_000).unwrap();
    let mut w = spawn("list_forever", c.name(), 1, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while list.len() < 1_000 {
        assert!(Instant::now() < deadline, "writer made no progress");
        std::thread::yield_now();
    }
    w.0.as_mut().unwrap().kill().unwrap();
    for (_, v) in list.iter() {
        assert_eq!(v[1], v[0].wrapping_mul(0x9E37_79B9_7F4A_7C15), "torn item");
    }
}

#[test]
fn same_key_from_many_threads_is_stored_once() {
    let map = std::sync::Arc::new(SharedMap::<u64, u64>::new_in_process(256).unwrap());
    let ts: Vec<_> = (0..4u64)
        .map(|t| {
            let m = map.clone();
            std::thread::spawn(move || {
                for k in 0..100u64 {
                    m.insert(k, t).unwrap();
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(map.len(), 100);
    let entries = map.entries();
    let mut keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 100);
}

#[test]
fn remove_revive_and_full() {
    let map = SharedMap::<u32, f64>::new_in_process(4).unwrap();
    assert_eq!(map.insert(1, 1.5), Ok(None));
    assert_eq!(map.insert(1, 2.5), Ok(Some(1.5)));
    assert_eq!(map.remove(&1), Ok(Some(2.5)));
    assert_eq!(map.get(&1), None);
    assert_eq!(map.remove(&1), Ok(None));
    assert_eq!(map.insert(1, 3.0), Ok(None)); // revives its own slot
    assert_eq!(map.fetch_add(&1, 0.5), Ok(3.0));
    assert_eq!(map.get(&1), Some(3.5));
    for k in 2..=4 {
        map.insert(k, 0.0).unwrap();
    }
    assert_eq!(map.insert(5, 0.0), Err(MapError::Full));
    assert_eq!(map.len(), 4);
}

#[test]
fn types_are_checked_at_open() {
    let c = Cleanup::new("maptypes");
    let _m = SharedMap::<u64, u64>::create(c.name(), 8).unwrap();
    let e = SharedMap::<u64, f64>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongElementType { .. }), "{e:?}");
    let e = SharedList::<u64>::open(c.name()).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    assert!(SharedMap::<u64, u64>::create(&common::unique("m"), 100).is_err());
    assert!(FixedStr::<4>::new("too long").is_err());
}

#[test]
fn hostile_slot_words_never_panic_or_hang() {
    use std::os::unix::fs::FileExt;
    let c = Cleanup::new("mapfuzz");
    let map = SharedMap::<u64, u64>::create(c.name(), 64).unwrap();
    for k in 0..40 {
        map.insert(k, k).unwrap();
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    for _ in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The body starts at 256; 64 slots of 3 words.
        let at = 256 + (seed % (64 * 3)) * 8;
        f.write_all_at(&seed.to_le_bytes(), at).unwrap();
        let k = seed % 50;
        let _ = map.get(&k);
        let _ = map.insert(k, 1);
        let _ = map.remove(&(k + 1));
        let _ = map.fetch_add(&k, 1);
        let _ = map.entries();
    }
}

/// A list whose claim counter was set near `u64::MAX` (garbage) refuses
/// every push and never wraps around onto its first entries.
#[test]
fn list_counter_near_the_end_never_wraps() {
    use std::os::unix::fs::FileExt;
    let c = Cleanup::new("listwrap");
    let list = SharedList::<[u64; 2]>::create(c.name(), 4).unwrap();
    list.push([1, 1]).unwrap();
    list.push([2, 2]).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path())
        .unwrap();
    // The body starts at 256; its first word is the claim counter.
    f.write_all_at(&(u64::MAX - 1).to_le_bytes(), 256).unwrap();
    for i in 0..5 {
        assert!(list.push([9, i]).is_err(), "push {i} was accepted");
    }
    assert_eq!(list.get(0), Some([1, 1]));
    assert_eq!(list.get(1), Some([2, 2]));
    assert!(list.len() <= 4);
}

/// `remove` of a key whose slot a live process holds mid-update (here: the
/// slot word says so, naming this very process) is `Busy` after the wait,
/// not "absent": the key is there.
#[test]
fn remove_of_a_slot_held_mid_update_is_busy_not_absent() {
    use std::os::unix::fs::FileExt;
    let c = Cleanup::new("mapbusy");
    let map = SharedMap::<u64, u64>::create(c.name(), 4).unwrap();
    map.insert(1, 10).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.path())
        .unwrap();
    // Slots of 3 words (state, key, value) from offset 256. The state word:
    // tag in bits 0-1 (BUSY = 1), hash in 2-17, owner in 18-62 (pid in 22
    // bits, then 23 bits of start time), "updating" in bit 63.
    let slot = (0..4u64)
        .find(|i| {
            let mut w = [0u8; 8];
            f.read_exact_at(&mut w, 256 + i * 24).unwrap();
            u64::from_le_bytes(w) & 3 == 2
        })
        .expect("the inserted key's slot");
    let mut w = [0u8; 8];
    f.read_exact_at(&mut w, 256 + slot * 24).unwrap();
    let full = u64::from_le_bytes(w);
    let me = shmkit::process::ProcToken::current();
    let owner = u64::from(me.pid()) | ((me.start_ticks() & 0x7f_ffff) << 22);
    let busy = (full & (0xffff << 2)) | 1 | (owner << 18) | (1 << 63);
    f.write_all_at(&busy.to_le_bytes(), 256 + slot * 24)
        .unwrap();
    assert_eq!(map.remove(&1), Err(MapError::Busy));
    // Its writer "finishes": the entry is whole and removable again.
    f.write_all_at(&full.to_le_bytes(), 256 + slot * 24)
        .unwrap();
    assert_eq!(map.remove(&1), Ok(Some(10)));
}

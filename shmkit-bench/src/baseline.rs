//! The lock-based ways of doing shmkit's jobs, in shared memory, for the
//! side-by-side benchmarks: a process-shared pthread mutex (plain, or robust
//! like the one shmkit's lock replaced) guarding a counter, and a bounded
//! ring guarded by a process-shared mutex and two condvars.

use std::mem::MaybeUninit;

use shmkit::SharedArray;
use shmkit::{Error, Result};

/// A process-shared `pthread_mutex_t` followed by guarded data, living in an
/// anonymous [`SharedArray<u64>`] so children can inherit it.
#[derive(Debug)]
pub struct PthreadShared {
    mem: SharedArray<u64>,
}

/// Words of the mutex area (pthread_mutex_t is 40 bytes on x86-64 glibc;
/// leave room for other layouts).
const MUTEX_WORDS: usize = 8;
/// Words of each condvar area (pthread_cond_t is 48 bytes).
const COND_WORDS: usize = 8;

impl PthreadShared {
    /// A mutex plus `data_words` guarded words; with `conds` condvars.
    pub fn create(data_words: usize, conds: usize) -> Result<Self> {
        Self::create_with(data_words, conds, false)
    }

    /// A process-shared *robust* mutex (`PTHREAD_MUTEX_ROBUST`, what
    /// shmkit's lock replaced) plus `data_words` guarded words.
    /// [`with_lock`](Self::with_lock) repairs a dead owner's mutex with
    /// `pthread_mutex_consistent`.
    pub fn create_robust(data_words: usize) -> Result<Self> {
        Self::create_with(data_words, 0, true)
    }

    fn create_with(data_words: usize, conds: usize, robust: bool) -> Result<Self> {
        let mem =
            SharedArray::<u64>::create_anonymous(MUTEX_WORDS + conds * COND_WORDS + data_words)?;
        let me = PthreadShared { mem };
        // SAFETY: the areas are inside the fresh mapping, suitably aligned
        // (8 bytes, the body is 128-aligned), and no other process exists yet.
        unsafe {
            let mut ma = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            libc::pthread_mutexattr_init(ma.as_mut_ptr());
            libc::pthread_mutexattr_setpshared(ma.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            if robust {
                libc::pthread_mutexattr_setrobust(ma.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
            }
            let rc = libc::pthread_mutex_init(me.mutex(), ma.as_ptr());
            libc::pthread_mutexattr_destroy(ma.as_mut_ptr());
            if rc != 0 {
                return Err(Error::InvalidArgument {
                    what: format!("pthread_mutex_init failed: {rc}"),
                });
            }
            for c in 0..conds {
                let mut ca = MaybeUninit::<libc::pthread_condattr_t>::uninit();
                libc::pthread_condattr_init(ca.as_mut_ptr());
                libc::pthread_condattr_setpshared(ca.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
                libc::pthread_cond_init(me.cond(c), ca.as_ptr());
                libc::pthread_condattr_destroy(ca.as_mut_ptr());
            }
        }
        Ok(me)
    }

    /// Open the instance a parent passed in environment variable `var`.
    pub fn open_inherited(var: &str) -> Result<Self> {
        Ok(PthreadShared {
            mem: SharedArray::<u64>::open_inherited(var)?,
        })
    }

    /// Hand it to a child (see [`SharedArray::share_with`]).
    pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
        self.mem.share_with(cmd, var)
    }

    fn base(&self) -> *mut u64 {
        self.mem.cells().as_ptr() as *mut u64
    }

    /// The mutex.
    pub fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.base() as *mut libc::pthread_mutex_t
    }

    /// Condvar `i`.
    pub fn cond(&self, i: usize) -> *mut libc::pthread_cond_t {
        // SAFETY: the caller created `i + 1` condvars: in bounds.
        unsafe { self.base().add(MUTEX_WORDS + i * COND_WORDS) as *mut libc::pthread_cond_t }
    }

    /// Guarded word `i` (read and write it only while holding the mutex).
    pub fn data(&self, conds: usize, i: usize) -> *mut u64 {
        assert!(MUTEX_WORDS + conds * COND_WORDS + i < self.mem.len());
        // SAFETY: bounds checked above.
        unsafe { self.base().add(MUTEX_WORDS + conds * COND_WORDS + i) }
    }

    /// Guarded words available after `conds` condvars.
    pub fn data_words(&self, conds: usize) -> usize {
        self.mem.len() - MUTEX_WORDS - conds * COND_WORDS
    }

    /// Run `f` with the mutex held. A robust mutex whose owner died is
    /// marked consistent first (the benchmarks' data needs no repair); a
    /// plain mutex never reports that.
    pub fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the mutex was initialised process-shared by `create`.
        let rc = unsafe { libc::pthread_mutex_lock(self.mutex()) };
        if rc == libc::EOWNERDEAD {
            // SAFETY: we hold it (EOWNERDEAD returns with the mutex held).
            unsafe { libc::pthread_mutex_consistent(self.mutex()) };
        }
        let r = f();
        // SAFETY: we hold it.
        unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        r
    }
}

/// A bounded ring of `u64` guarded by a process-shared mutex and two
/// condvars: the lock-based way to share a queue between processes.
#[derive(Debug)]
pub struct PthreadRing {
    shared: PthreadShared,
    cap: u64,
}

// Data words: 0 head, 1 tail, 2 closed, 3 producers still pushing,
// 4.. slots.
const HEAD: usize = 0;
const TAIL: usize = 1;
const CLOSED: usize = 2;
const PRODUCERS: usize = 3;
const SLOTS: usize = 4;
const NOT_EMPTY: usize = 0;
const NOT_FULL: usize = 1;

impl PthreadRing {
    pub fn create(cap: usize) -> Result<Self> {
        Ok(PthreadRing {
            shared: PthreadShared::create(SLOTS + cap, 2)?,
            cap: cap as u64,
        })
    }

    /// A ring that `producers` processes push into: it closes when the last
    /// of them calls [`producer_done`](Self::producer_done).
    pub fn with_producers(cap: usize, producers: u64) -> Result<Self> {
        let r = Self::create(cap)?;
        // SAFETY: no other process has the ring yet; the mutex is held anyway.
        r.shared
            .with_lock(|| unsafe { *r.word(PRODUCERS) = producers });
        Ok(r)
    }

    pub fn open_inherited(var: &str, cap: usize) -> Result<Self> {
        Ok(PthreadRing {
            shared: PthreadShared::open_inherited(var)?,
            cap: cap as u64,
        })
    }

    pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
        self.shared.share_with(cmd, var)
    }

    fn word(&self, i: usize) -> *mut u64 {
        self.shared.data(2, i)
    }

    /// Push, waiting while full.
    pub fn push(&self, v: u64) {
        let s = &self.shared;
        // SAFETY: all words are read and written with the mutex held; the
        // mutex and condvars were initialised process-shared.
        unsafe {
            libc::pthread_mutex_lock(s.mutex());
            while *self.word(TAIL) - *self.word(HEAD) >= self.cap {
                libc::pthread_cond_wait(s.cond(NOT_FULL), s.mutex());
            }
            let t = *self.word(TAIL);
            *self.word(SLOTS + (t % self.cap) as usize) = v;
            *self.word(TAIL) = t + 1;
            libc::pthread_cond_signal(s.cond(NOT_EMPTY));
            libc::pthread_mutex_unlock(s.mutex());
        }
    }

    /// Pop, waiting while empty; `None` once closed and drained.
    pub fn pop(&self) -> Option<u64> {
        let s = &self.shared;
        // SAFETY: as in `push`.
        unsafe {
            libc::pthread_mutex_lock(s.mutex());
            while *self.word(TAIL) == *self.word(HEAD) {
                if *self.word(CLOSED) != 0 {
                    libc::pthread_mutex_unlock(s.mutex());
                    return None;
                }
                libc::pthread_cond_wait(s.cond(NOT_EMPTY), s.mutex());
            }
            let h = *self.word(HEAD);
            let v = *self.word(SLOTS + (h % self.cap) as usize);
            *self.word(HEAD) = h + 1;
            libc::pthread_cond_signal(s.cond(NOT_FULL));
            libc::pthread_mutex_unlock(s.mutex());
            Some(v)
        }
    }

    /// One producer of a [`with_producers`](Self::with_producers) ring has
    /// pushed all it will: the last one closes the ring.
    pub fn producer_done(&self) {
        // SAFETY: the word is only touched with the mutex held.
        let last = self.shared.with_lock(|| unsafe {
            let left = self.word(PRODUCERS);
            *left = (*left).saturating_sub(1);
            *left == 0
        });
        if last {
            self.close();
        }
    }

    /// Mark closed and wake every consumer.
    pub fn close(&self) {
        let s = &self.shared;
        // SAFETY: as in `push`.
        unsafe {
            libc::pthread_mutex_lock(s.mutex());
            *self.word(CLOSED) = 1;
            libc::pthread_cond_broadcast(s.cond(NOT_EMPTY));
            libc::pthread_mutex_unlock(s.mutex());
        }
    }
}

/// A fixed open-addressing table of `u64 -> u64` (key 0 reserved as
/// "empty") guarded by one process-shared mutex: the lock-based way to share
/// a dict between processes. Also a bounded vector of `u64` (word 0 is its
/// length) on the same mutex.
#[derive(Debug)]
pub struct PthreadTable {
    shared: PthreadShared,
    cap: usize,
}

impl PthreadTable {
    /// `cap` must be a power of two.
    pub fn create(cap: usize) -> Result<Self> {
        Ok(PthreadTable {
            shared: PthreadShared::create(1 + 2 * cap, 0)?,
            cap,
        })
    }

    /// Open the table a parent passed; its capacity follows from its size.
    pub fn open_inherited(var: &str) -> Result<Self> {
        let shared = PthreadShared::open_inherited(var)?;
        let cap = (shared.data_words(0) - 1) / 2;
        Ok(PthreadTable { shared, cap })
    }

    pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
        self.shared.share_with(cmd, var)
    }

    fn word(&self, i: usize) -> *mut u64 {
        self.shared.data(0, i)
    }

    /// Word indices of `k`'s key slots, in probe order (linear probing).
    fn probe(&self, k: u64) -> impl Iterator<Item = usize> + use<> {
        let mask = self.cap - 1;
        let h = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize;
        (0..self.cap).map(move |p| 1 + 2 * ((h + p) & mask))
    }

    /// Insert or overwrite; false when full.
    pub fn insert(&self, k: u64, v: u64) -> bool {
        self.shared.with_lock(|| {
            for i in self.probe(k) {
                // SAFETY: all words are touched only with the mutex held.
                unsafe {
                    let key = *self.word(i);
                    if key == 0 || key == k {
                        *self.word(i) = k;
                        *self.word(i + 1) = v;
                        return true;
                    }
                }
            }
            false
        })
    }

    pub fn get(&self, k: u64) -> Option<u64> {
        self.shared.with_lock(|| {
            for i in self.probe(k) {
                // SAFETY: as in `insert`.
                unsafe {
                    match *self.word(i) {
                        0 => return None,
                        key if key == k => return Some(*self.word(i + 1)),
                        _ => {}
                    }
                }
            }
            None
        })
    }

    /// Append to the vector view (word 0 = length); false when full.
    pub fn push(&self, v: u64) -> bool {
        self.shared.with_lock(|| {
            // SAFETY: as in `insert`.
            unsafe {
                let n = *self.word(0) as usize;
                if n >= 2 * self.cap {
                    return false;
                }
                *self.word(1 + n) = v;
                *self.word(0) = n as u64 + 1;
                true
            }
        })
    }

    pub fn vec_len(&self) -> u64 {
        // SAFETY: as in `insert`.
        self.shared.with_lock(|| unsafe { *self.word(0) })
    }
}

//! [`Pool`]: started workers until they are joined, and what reaping one
//! (its exit status, its pidfd, the segments it created) involves.

use super::*;

/// One started worker, until it is reaped.
struct Running {
    child: Child,
    id: WorkerId,
    /// Its identity, read before it could be reaped; `None` if `/proc` did
    /// not tell (then nothing is cleaned up after it).
    token: Option<ProcToken>,
    /// Becomes readable when the process exits (`None`: pidfd_open is not
    /// available; then it is polled).
    pidfd: Option<OwnedFd>,
    clean_up: bool,
    /// Set once it was reaped: how it ended.
    done: Option<std::result::Result<(), WorkerError>>,
}

impl Running {
    fn new(child: Child, role: &str, index: usize, clean_up: bool) -> Self {
        let pid = child.id();
        // The child is not reaped until we wait for it, so its pid names it
        // (running or a zombie): its token and pidfd are its own.
        let token = ProcToken::of_unreaped_child(pid);
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a non-negative result is a new descriptor nothing else owns.
        let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) });
        Running {
            child,
            id: WorkerId {
                role: role.to_owned(),
                index,
                pid,
            },
            token,
            pidfd,
            clean_up,
            done: None,
        }
    }

    /// Reap it if it has exited; whether it has.
    fn try_reap(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.finish(Ok(st), None);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.finish(Err(e), None);
                true
            }
        }
    }

    /// Kill it (if still running) and reap it; `why` says why it was killed.
    fn kill_and_reap(&mut self, why: Option<Failure>) {
        if self.done.is_some() {
            return;
        }
        let _ = self.child.kill();
        let st = self.child.wait();
        self.finish(st, why);
    }

    fn finish(&mut self, st: std::io::Result<ExitStatus>, why: Option<Failure>) {
        let failure = match (why, st) {
            (Some(w), _) => Some(w),
            (None, Err(e)) => Some(Failure::Wait(e)),
            (None, Ok(st)) => match (st.code(), st.signal()) {
                (Some(0), _) => None,
                (Some(c), _) => Some(Failure::Exited(c)),
                (None, Some(s)) => Some(Failure::Signaled(s)),
                (None, None) => Some(Failure::Exited(-1)),
            },
        };
        self.pidfd = None;
        self.done = Some(match failure {
            None => Ok(()),
            Some(failure) => {
                let removed = match (self.clean_up, self.token) {
                    (true, Some(t)) => crate::admin::remove_created_by(t),
                    _ => Vec::new(),
                };
                Err(WorkerError {
                    id: self.id.clone(),
                    failure,
                    removed,
                })
            }
        });
    }
}

/// Started workers, until joined. Dropping it kills (SIGKILL) and reaps the
/// workers still running and removes the segments they created: no zombie
/// and no orphan is left behind.
pub struct Pool {
    workers: Vec<Running>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.workers.iter().map(|w| &w.id))
            .finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool {
    /// An empty pool, to [`spawn`](Self::spawn) workers of several roles into.
    pub fn new() -> Self {
        Pool {
            workers: Vec::new(),
        }
    }

    /// Start the workers `spec` describes and add them to this pool. On an
    /// error, the workers of `spec` started before it stay in the pool (to
    /// be joined or dropped).
    pub fn spawn(&mut self, spec: &Spawn<'_>) -> std::result::Result<(), WorkerError> {
        for index in 0..spec.count {
            let child = spec
                .command(index)?
                .spawn()
                .map_err(|e| spec.failed(index, Failure::Spawn(e)))?;
            self.workers
                .push(Running::new(child, &spec.role, index, spec.clean_up));
        }
        Ok(())
    }

    /// Take charge of a child spawned elsewhere (from
    /// [`Spawn::command`], say) as worker `index` of `role`: it is joined,
    /// reported, cleaned up after and killed on drop like the others.
    pub fn adopt(&mut self, child: Child, role: &str, index: usize) {
        self.workers.push(Running::new(child, role, index, true));
    }

    /// The workers, in the order they were spawned.
    pub fn ids(&self) -> impl Iterator<Item = &WorkerId> {
        self.workers.iter().map(|w| &w.id)
    }

    /// How many workers it holds.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether it holds no worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Send SIGKILL to the `i`-th worker (in spawn order), without reaping
    /// it: a later join reports it killed by signal 9. An error if `i` is
    /// out of range; nothing if it was already reaped.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        let w = self.workers.get_mut(i).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no such worker")
        })?;
        if w.done.is_some() {
            return Ok(());
        }
        w.child.kill()
    }

    /// Wait for every worker; one result per worker, in spawn order: its
    /// id, or how it failed.
    pub fn join(mut self) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        self.wait_until(None);
        self.results()
    }

    /// [`join`](Self::join), but kill (SIGKILL) the workers still running
    /// after `limit`, and report those as [`Failure::TimedOut`].
    pub fn join_timeout(
        mut self,
        limit: Duration,
    ) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        let deadline = Instant::now().checked_add(limit);
        if !self.wait_until(deadline) {
            for w in &mut self.workers {
                w.kill_and_reap(Some(Failure::TimedOut(limit)));
            }
        }
        self.results()
    }

    /// Wait for every worker; `Ok` if all succeeded, else the first failure
    /// (in spawn order). Every worker has been reaped either way.
    pub fn join_all(self) -> std::result::Result<(), WorkerError> {
        self.join().into_iter().try_for_each(|r| r.map(drop))
    }

    fn results(mut self) -> Vec<std::result::Result<WorkerId, WorkerError>> {
        std::mem::take(&mut self.workers)
            .into_iter()
            .map(|mut w| {
                let id = w.id.clone();
                w.done.take().unwrap_or(Ok(())).map(|()| id)
            })
            .collect()
    }

    /// Reap workers as they exit until all have or `deadline` passes;
    /// whether all have. Waits in poll(2) on their pidfds (no busy wait);
    /// without pidfds, checks every 10 ms.
    fn wait_until(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let mut unpollable = false;
            for w in &mut self.workers {
                if w.try_reap() {
                    continue;
                }
                match &w.pidfd {
                    Some(fd) => fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    }),
                    None => unpollable = true,
                }
            }
            if fds.is_empty() && !unpollable {
                return true;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return false,
                },
            };
            let mut ms = left.map_or(-1, |l| l.as_millis().clamp(1, i32::MAX as u128) as i32);
            if unpollable {
                ms = if ms < 0 { 10 } else { ms.min(10) };
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the
            // duration of the call. EINTR and the like just loop again.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.kill_and_reap(None);
        }
    }
}

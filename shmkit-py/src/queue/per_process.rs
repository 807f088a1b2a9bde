//! One handle per process, forgotten in a forked child.

use crate::this_pid;

/// A handle made in one process: one inherited across `fork` is the
/// parent's, and is forgotten (never dropped, which would detach the
/// parent's producer or consumer) before this process makes its own.
pub(super) struct PerProcess<H>(pub(super) Option<(u32, H)>);

impl<H> PerProcess<H> {
    /// This process's handle, if it made one.
    pub(super) fn mine(&mut self) -> Option<&mut H> {
        let pid = this_pid();
        if self.0.as_ref().is_some_and(|(p, _)| *p != pid)
            && let Some(inherited) = self.0.take()
        {
            std::mem::forget(inherited);
        }
        self.0.as_mut().map(|(_, h)| h)
    }

    pub(super) fn set(&mut self, h: H) -> &mut H {
        self.mine();
        &mut self.0.insert((this_pid(), h)).1
    }

    /// Take this process's handle out (to drop it).
    pub(super) fn take(&mut self) -> Option<H> {
        self.mine()?;
        self.0.take().map(|(_, h)| h)
    }
}

impl<H> Drop for PerProcess<H> {
    fn drop(&mut self) {
        // An inherited handle is forgotten, ours dropped.
        self.mine();
    }
}

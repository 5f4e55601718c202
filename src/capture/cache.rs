//! Letting go of the page cache of a capture's synced past: the pages of
//! lines that are written, synced and answered, 32 MiB behind the end, on
//! a thread of its own at the lowest priority.

use std::fs::File;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, unbounded};

/// The last bytes of a capture kept in the page cache, for forwards
/// reading right behind the writer; older synced pages are let go.
pub(super) const CACHE_KEPT: u64 = 32 * 1024 * 1024;
/// Pages are let go this many bytes at a time.
pub(super) const CACHE_STEP: u64 = 4 * 1024 * 1024;

/// Lets the page cache of a capture's synced past go, on a thread of its
/// own (dropping 4 MiB of pages takes about 0.4 ms, kept off every
/// answer's path).
///
/// A capture is only appended to, and read back soon after by forwards or
/// much later, so its cached pages are worth little once a forward has
/// read them; kept, they grow with the session and push out the cache of
/// everything else. Let go, they are reused for the next lines at once:
/// on a VM whose host takes free memory back (free page reporting), a
/// page the guest has not touched for a while costs about 12 us on first
/// write, so a capture growing into fresh pages was copied at 0.25 GB/s
/// instead of 0.9 or more (see the README's Performance section).
pub(super) struct CacheRelease {
    file: Arc<File>,
    /// Pages before this offset were let go (or asked to be).
    released: u64,
    to: Option<Sender<(Arc<File>, u64, u64)>>,
    /// Joined when the sink goes: its copies of the file share the
    /// file's lock, which a capture opened again must find released.
    thread: Option<JoinHandle<()>>,
}

impl Drop for CacheRelease {
    fn drop(&mut self) {
        drop(self.to.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl CacheRelease {
    /// None when the thread cannot be started (nothing is let go then).
    pub(super) fn start(file: &File) -> Option<CacheRelease> {
        let (to, asks) = unbounded::<(Arc<File>, u64, u64)>();
        let file = Arc::new(file.try_clone().ok()?);
        let thread = std::thread::Builder::new()
            .name("capture-cache".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // The lowest priority: pages are let go when a core has
                // nothing better to do (a lone device's answer is not held
                // up by it), or later, when it has.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                let mut next = None;
                // Each ask's copy of the file is let go before waiting for
                // the next: a file deleted and replaced is not kept open.
                while let Some((file, from, mut to)) = next.take().or_else(|| asks.recv().ok()) {
                    // What queued meanwhile for the same file, at once.
                    for ask in asks.try_iter() {
                        if Arc::ptr_eq(&ask.0, &file) {
                            to = to.max(ask.2);
                        } else {
                            next = Some(ask);
                            break;
                        }
                    }
                    // (A length of None would mean "to the end".) Advice:
                    // nothing to do when it is not taken.
                    if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
                        let _ = rustix::fs::fadvise(
                            &*file,
                            from,
                            Some(len),
                            rustix::fs::Advice::DontNeed,
                        );
                    }
                }
            })
            .ok()?;
        Some(CacheRelease {
            file,
            released: 0,
            to: Some(to),
            thread: Some(thread),
        })
    }

    /// What to let go once `len` bytes are synced: whole steps, keeping
    /// the last `CACHE_KEPT` bytes.
    fn next(released: u64, len: u64) -> Option<(u64, u64)> {
        let until = len.saturating_sub(CACHE_KEPT) / CACHE_STEP * CACHE_STEP;
        (until > released).then_some((released, until))
    }

    pub(super) fn synced_to(&mut self, len: u64) {
        if let Some((from, until)) = CacheRelease::next(self.released, len) {
            if let Some(to) = &self.to {
                let _ = to.send((self.file.clone(), from, until));
            }
            self.released = until;
        }
    }

    /// The sink is cut back to `len`.
    pub(super) fn cut(&mut self, len: u64) {
        self.released = self.released.min(len);
    }

    /// The sink writes to `file` from now on (the capture path names a
    /// new file); nothing of it was let go yet.
    pub(super) fn moved_to(&mut self, file: &File) -> std::io::Result<()> {
        self.file = Arc::new(file.try_clone()?);
        self.released = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_steps_are_let_go_keeping_the_last_bytes() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(CacheRelease::next(0, CACHE_KEPT + CACHE_STEP - 1), None);
        assert_eq!(
            CacheRelease::next(0, CACHE_KEPT + CACHE_STEP),
            Some((0, CACHE_STEP))
        );
        assert_eq!(
            CacheRelease::next(CACHE_STEP, CACHE_KEPT + 3 * CACHE_STEP + MIB),
            Some((CACHE_STEP, 3 * CACHE_STEP))
        );
        // Cut back below what was let go: nothing more until it grows.
        assert_eq!(CacheRelease::next(3 * CACHE_STEP, CACHE_KEPT), None);
    }
}

//! Turns at decoding a large body. A gzip body of a few kilobytes can
//! inflate to `--max-body` (32 MiB of whitespace from 32 KB), and what
//! decoding holds is a few times that: many at once would take memory a
//! client pays nothing for. Bodies over `LARGE_BODY` once inflated are
//! therefore decoded one at a time; a device's batch (about 100 kB) never
//! waits. One that waited `wait` without its turn is refused 503, to be
//! sent again: nothing is lost, since nothing was acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ingest::Rejection;

/// Bodies larger than this as JSON text are decoded one at a time.
pub const LARGE_BODY: usize = 1024 * 1024;

/// How long a large body waits for its turn before it is refused.
pub const TURN_WAIT: Duration = Duration::from_secs(5);

/// Whose turn it is to decode a large body.
pub struct Turns {
    taken: Mutex<bool>,
    freed: Condvar,
    wait: Duration,
    /// Bodies waiting for the turn now.
    waiting: AtomicUsize,
}

/// A large body's turn, given back when dropped.
pub struct Turn(Arc<Turns>);

impl Turns {
    pub fn new(wait: Duration) -> Turns {
        Turns {
            taken: Mutex::new(false),
            freed: Condvar::new(),
            wait,
            waiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the turn, at most `wait`; a 503 after that.
    pub fn take(self: &Arc<Self>) -> Result<Turn, Rejection> {
        let until = Instant::now() + self.wait;
        let mut taken = self.lock();
        if *taken {
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
        let waited = *taken;
        let _counted = Waited(&self.waiting, waited);
        while *taken {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Rejection {
                    status: 503,
                    error: format!(
                        "busy: bodies over {} MiB are decoded one at a time, and this one \
                         waited {} s for its turn; send it again",
                        LARGE_BODY >> 20,
                        self.wait.as_secs_f64()
                    ),
                });
            }
            taken = self
                .freed
                .wait_timeout(taken, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *taken = true;
        Ok(Turn(self.clone()))
    }

    /// Bodies waiting for the turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// Counts a body out of the waiting ones when it stops waiting.
struct Waited<'a>(&'a AtomicUsize, bool);

impl Drop for Waited<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.0.lock() = false;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One turn at a time: a second waits, and gets it once the first is
    /// given back; one that waits too long is refused 503.
    #[test]
    fn one_turn_at_a_time() {
        let turns = Arc::new(Turns::new(Duration::from_millis(50)));
        let first = turns.take().expect("free");
        let refused = turns.take().err().expect("taken");
        assert_eq!(refused.status, 503);
        assert!(refused.error.contains("one at a time"), "{}", refused.error);
        let patient = Arc::new(Turns::new(Duration::from_secs(60)));
        std::thread::scope(|s| {
            let turns = &patient;
            let held = turns.take().unwrap();
            let waiting = s.spawn(|| turns.take().map(|_| ()).is_ok());
            // Given back only once the other is seen waiting for it.
            while turns.waiting() == 0 {
                std::thread::yield_now();
            }
            drop(held);
            assert!(waiting.join().unwrap(), "given once the first is back");
        });
        assert_eq!(patient.waiting(), 0);
        drop(first);
        assert!(turns.take().is_ok());
    }
}

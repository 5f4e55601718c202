//! Turns at decoding a large body. A gzip body of a few kilobytes can
//! inflate to `--max-body` (32 MiB of whitespace from 32 KB), and what
//! decoding holds is a few times that: many at once would take memory a
//! client pays nothing for. Bodies over `LARGE_BODY` once inflated are
//! therefore decoded one at a time; a device's batch (about 100 kB) never
//! waits. One that waited `wait` without its turn is refused 503, to be
//! sent again: nothing is lost, since nothing was acknowledged. Bodies
//! under it share a budget of bytes being decoded, the same way, and
//! bodies going on past their first bytes another for the wire while
//! they are read (`WIRE_BUDGET`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
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

/// Bytes of body held by the uploads being decoded at once, below
/// `LARGE_BODY` each (a large one has its turn instead): what came, and
/// what inflating may give (what the gzip trailer says while it inflates,
/// what it gave after), until the batch is saved or refused. The copies
/// decoding makes (the line, the records' buffer) come on top: 8 MiB of
/// shares hold about 16–24 MiB. Without it, a client with the token could
/// have every worker inflate a kilobyte into 1 MiB at once: 300
/// connections doing so took a release build to 786–807 MiB, and a
/// device's batch waited 0.7–0.8 s behind them; with it, 192 MiB and
/// 0.02 s. About 70 of the benchmark's batches (106 kB of records from
/// 15 kB of gzip) fit at once. An upload that waited `TURN_WAIT` for its
/// share is refused 503, to be sent again.
pub const DECODE_BUDGET: usize = 8 << 20;

/// Bytes of every body read before it asks for a share of `WIRE_BUDGET`:
/// a device's batch, even plain (1 000 records, about 106 kB; 15 kB
/// gzipped), never asks.
pub const WIRE_FREE: usize = 128 * 1024;

/// Bytes of body held while they are read, past the first `WIRE_FREE` of
/// each body and below `LARGE_BODY` (a large one has its turn before it
/// is read): a body going on past `WIRE_FREE` takes a share of what is
/// left of it before it reads on, and holds it until its batch is saved
/// or refused. Without it, a client with the token could have every
/// worker hold a body of just under 1 MiB: 800 connections each sending
/// one and stopping held 906–930 MB until the read timeout (236–250 MB
/// with it). A share held by a body that stops coming while another
/// upload waits lapses as the turn does (`heads::TURN_LAPSE`).
pub const WIRE_BUDGET: usize = 16 << 20;

/// A budget of body bytes (`DECODE_BUDGET`, `WIRE_BUDGET`). Shares are
/// given first come, first served among those that fit: when bytes come
/// back, the oldest waiter they cover gets them, then the next, and so on,
/// each woken alone (a waiter that does not fit yet keeps its place and
/// is passed over, so a device's batch is not held back by a larger body
/// ahead of it that needs more than is free).
pub struct Budget {
    ledger: Mutex<Ledger>,
    size: usize,
    wait: Duration,
    /// Who holds the budget, as a refusal names them.
    holders: String,
    /// The waiters' count, set under the ledger's lock whenever it
    /// changes, read without it (the closer asks at every connection).
    waiters: AtomicUsize,
}

struct Ledger {
    left: usize,
    waiting: VecDeque<Waiter>,
}

/// One upload waiting for its share.
struct Waiter {
    bytes: usize,
    given: Arc<AtomicBool>,
    thread: Thread,
}

/// An upload's share of the budget, given back when dropped.
pub struct Share {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    /// A budget of `size` bytes, a share waited for at most `wait`, held
    /// by `holders` (as a refusal says: "uploads being decoded").
    pub fn new(size: usize, wait: Duration, holders: String) -> Budget {
        Budget {
            ledger: Mutex::new(Ledger {
                left: size,
                waiting: VecDeque::new(),
            }),
            size,
            wait,
            holders,
            waiters: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A share of `bytes` (at most the whole budget), waiting at most
    /// `wait` for it; a 503 after that.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Result<Share, Rejection> {
        let bytes = bytes.min(self.size);
        let share = || Share {
            budget: self.clone(),
            bytes,
        };
        let given = Arc::new(AtomicBool::new(false));
        {
            let mut ledger = self.lock();
            if ledger.left >= bytes {
                ledger.left -= bytes;
                return Ok(share());
            }
            ledger.waiting.push_back(Waiter {
                bytes,
                given: given.clone(),
                thread: std::thread::current(),
            });
            self.count_waiters(&ledger);
        }
        let until = Instant::now() + self.wait;
        loop {
            if given.load(Ordering::SeqCst) {
                return Ok(share());
            }
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            std::thread::park_timeout(remaining);
        }
        let mut ledger = self.lock();
        // Given in the meantime: taken after all.
        if given.load(Ordering::SeqCst) {
            return Ok(share());
        }
        ledger.waiting.retain(|w| !Arc::ptr_eq(&w.given, &given));
        self.count_waiters(&ledger);
        Err(Rejection {
            status: 503,
            error: format!(
                "busy: {} hold the {} MiB the receiver gives them at once, and this one \
                 waited {} s for its share; send it again",
                self.holders,
                self.size >> 20,
                self.wait.as_secs_f64()
            ),
        })
    }

    /// Gives `bytes` back, and them on to the waiters they cover, oldest
    /// first.
    fn give_back(&self, bytes: usize) {
        let mut ledger = self.lock();
        ledger.left += bytes;
        let Ledger { left, waiting } = &mut *ledger;
        waiting.retain(|w| {
            if w.bytes > *left {
                return true;
            }
            *left -= w.bytes;
            w.given.store(true, Ordering::SeqCst);
            w.thread.unpark();
            false
        });
        self.count_waiters(&ledger);
    }

    fn count_waiters(&self, ledger: &Ledger) {
        self.waiters.store(ledger.waiting.len(), Ordering::SeqCst);
    }

    /// Uploads waiting for a share now.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::SeqCst)
    }

    /// Bytes given out now.
    pub fn held(&self) -> usize {
        self.size - self.lock().left
    }
}

impl Share {
    /// Gives back what the share holds beyond `bytes`.
    pub fn shrink(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.budget.give_back(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shrink(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares are given while they fit; one that does not waits until
    /// enough is given back (shrunk or dropped), and is refused 503 after
    /// its wait.
    #[test]
    fn shares_of_the_budget_wait_until_they_fit() {
        let budget = Arc::new(Budget::new(
            100,
            Duration::from_millis(50),
            "uploads being decoded".into(),
        ));
        let mut first = budget.take(60).expect("fits");
        let refused = budget.take(41).err().expect("does not fit");
        assert_eq!(refused.status, 503);
        assert!(refused.error.contains("waited"), "{}", refused.error);
        assert_eq!(budget.waiting(), 0);
        let second = budget.take(40).expect("fits beside the first");
        assert_eq!(budget.held(), 100);
        first.shrink(20);
        assert_eq!(budget.held(), 60);
        // More than the whole budget is asked as the whole budget.
        drop((first, second));
        let all = budget.take(usize::MAX).expect("the whole budget");
        assert_eq!(budget.held(), 100);
        drop(all);
        assert_eq!(budget.held(), 0);
        let patient = Arc::new(Budget::new(100, Duration::from_secs(60), "uploads".into()));
        std::thread::scope(|s| {
            let budget = &patient;
            let mut held = budget.take(100).unwrap();
            let waiting = s.spawn(|| budget.take(30).map(|share| share.bytes).ok());
            while budget.waiting() == 0 {
                std::thread::yield_now();
            }
            // Shrinking gives back enough for the one waiting.
            held.shrink(70);
            assert_eq!(waiting.join().unwrap(), Some(30));
        });
        assert_eq!((patient.held(), patient.waiting()), (0, 0));
    }

    /// Bytes given back go to the oldest waiter they cover, passing over
    /// one they do not cover yet, which keeps its place.
    #[test]
    fn bytes_given_back_go_to_the_oldest_waiter_they_cover() {
        // Waiting longer than a test should: a share not given fails it.
        let budget = Arc::new(Budget::new(100, Duration::from_secs(10), "uploads".into()));
        let mut held = budget.take(100).unwrap();
        std::thread::scope(|s| {
            let wait_for = |n| {
                while budget.waiting() != n {
                    std::thread::yield_now();
                }
            };
            let large = s.spawn(|| budget.take(80).map(|share| share.bytes).ok());
            wait_for(1);
            let small = s.spawn(|| budget.take(30).unwrap());
            wait_for(2);
            // 40 back: the small one's, not the large one's.
            held.shrink(60);
            let small = small.join().unwrap();
            assert_eq!((small.bytes, budget.waiting(), budget.held()), (30, 1, 90));
            // 60 more: 70 free, still not the large one's 80.
            held.shrink(0);
            assert_eq!((budget.waiting(), budget.held()), (1, 30));
            drop(small);
            assert_eq!(large.join().unwrap(), Some(80));
        });
        assert_eq!((budget.held(), budget.waiting()), (0, 0));
    }

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

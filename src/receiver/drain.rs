//! Letting go of requests whose unread body is large.
//!
//! tiny_http 0.12 drains what is left of a request's body when the request
//! is dropped (`EqualReader::drop`), and first allocates the whole
//! remainder at once (`vec![0; remaining]`). A client announcing
//! `Content-Length: 1099511627776` and closing thus makes dropping its
//! request allocate 1 TiB. Three cases:
//!
//! - up to the free address space: jemalloc (the process's allocator, see
//!   `lib.rs`) maps such a block without reserving memory for it, as the
//!   kernel's overcommit heuristic allows, and only the pages a `read`
//!   fills are ever touched; the block is address space, not memory. So it
//!   is drained, on a thread of its own (a stalled client holds the read
//!   for one read timeout), while the address space all such drains hold
//!   stays under a budget: beyond it, the next waits for one to end.
//! - beyond `isize::MAX`: the allocation panics (capacity overflow) before
//!   anything is read; the panic is caught and claimed. Unwinding drops the
//!   reader, and tiny_http hands the socket on to the next request at
//!   once, so the server ignores the connection first: nothing sent after
//!   the head is taken as a request.
//! - in between (more than the address space, no more than `isize::MAX`):
//!   the allocation would fail and abort the process. Such a request is
//!   kept, unanswered or answered, until the process ends ("parked").
//!
//! The change tiny_http would need is in the README (Hostile networks, 1).

use crate::event::Stats;
use crate::panic::lock;
use std::io::Cursor;
use std::sync::{Arc, Condvar, Mutex};
use tiny_http::{Request, Response};

/// Letting go of a request: answering it (or not) and dropping it, or,
/// when it cannot be dropped, keeping it.
pub trait Finish: Send + 'static {
    /// Answers (if there is an answer) and drops the request.
    fn run(self);
    /// What is kept instead, answered first if there is an answer.
    fn keep(self) -> Box<dyn Send>;
}

/// A request and its answer, or none for a request let go of silently.
pub struct Answered(pub Request, pub Option<Response<Cursor<Vec<u8>>>>);

impl Finish for Answered {
    fn run(self) {
        match self {
            // A client that hung up is its own problem.
            Answered(request, Some(response)) => {
                let _ = request.respond(response);
            }
            // The writer is taken out unused: no answer is written, and
            // tiny_http then does not answer 500 either.
            Answered(request, None) => drop(request.into_writer()),
        }
    }

    fn keep(self) -> Box<dyn Send> {
        match self {
            Answered(request, Some(response)) => Box::new(request.upgrade("close", response)),
            Answered(request, None) => Box::new(request),
        }
    }
}

/// Unread bytes a worker drains itself when it drops a request: a
/// request's own answer path handles these at once.
const ALWAYS_DRAINABLE: usize = 64 * 1024 * 1024;
/// Address space that drains in progress may hold at once (x86-64 and
/// AArch64 give a process 128 TiB or more).
const BUDGET: u128 = 32 << 40;
/// Stack of a drain thread: it only drops a request.
const DRAIN_STACK: usize = 128 * 1024;
const DRAIN_THREAD: &str = "autopi-rx drain";
const OVERFLOW_THREAD: &str = "autopi-rx overflowing drain";

/// Requests being let go of, and those that never can be.
#[derive(Default)]
pub struct Drains {
    /// Address space held by drains in progress.
    held: Mutex<u128>,
    freed: Condvar,
    /// What could not be dropped without aborting the process, kept.
    parked: Mutex<Vec<Box<dyn Send>>>,
    /// Drain threads running now.
    running: std::sync::atomic::AtomicUsize,
}

/// Counts a drain thread as running from before it is started until
/// dropped: with the thread, or with its closure when it cannot start.
struct Running(Arc<Drains>);

impl Running {
    fn new(drains: Arc<Drains>) -> Running {
        drains
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(drains)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Gives `size` back to the budget when dropped.
struct Returned<'a>(&'a Drains, u128);

impl Drop for Returned<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.0.held);
        *held -= self.1;
        drop(held);
        self.0.freed.notify_all();
    }
}

/// At the end of a run, what was kept is left to the process's exit:
/// dropping it would abort (the reason it was kept), and the system
/// closes its connections when the process ends.
impl Drop for Drains {
    fn drop(&mut self) {
        let kept = std::mem::take(&mut *lock(&self.parked));
        std::mem::forget(kept);
    }
}

/// How a request with `unread` bytes left will be let go of.
#[derive(Debug, PartialEq, Eq)]
pub enum Way {
    /// Dropped where it is.
    Here,
    /// Dropped on a drain thread, within the budget.
    Drained,
    /// Dropped while its allocation panics (beyond `isize::MAX`).
    Overflowing,
}

/// The way for `unread` bytes left.
pub fn way(unread: usize) -> Way {
    if unread <= ALWAYS_DRAINABLE {
        Way::Here
    } else if unread > isize::MAX as usize {
        Way::Overflowing
    } else {
        Way::Drained
    }
}

impl Drains {
    /// Drain threads running now (each waits for a body to come or stop).
    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `finish` for a request that still has `unread` body bytes so
    /// that the process survives it: at once when little is left, else on
    /// a drain thread. `stalled` (its body stopped coming) sends it to a
    /// drain thread whatever is left, since tiny_http's drain then waits
    /// for one more read timeout. `stats.parked` counts what has to be
    /// kept instead.
    pub fn let_go(
        self: &Arc<Self>,
        unread: usize,
        stalled: bool,
        stats: &Arc<Stats>,
        finish: impl Finish,
    ) {
        let way = way(unread);
        if way == Way::Here && !stalled {
            finish.run();
            return;
        }
        crate::panic::claim(drain_overflowed);
        // Kept here until the thread takes it: a thread that cannot be
        // started must not drop the request on the way out.
        let slot = Arc::new(Mutex::new(Some(finish)));
        let theirs = slot.clone();
        let running = Running::new(self.clone());
        let their_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name(thread_name(&way).into())
            .stack_size(DRAIN_STACK)
            .spawn(move || {
                crate::receiver::accept::keep_pace();
                if let Some(finish) = take(&theirs) {
                    running.0.drain(unread, &their_stats, finish);
                }
            });
        if spawned.is_err()
            && let Some(finish) = take(&slot)
        {
            // No thread to be had: the caller waits for the drain itself
            // (one read timeout at most for a stalled client), rather than
            // keeping the request for good.
            self.drain(unread, stats, finish);
        }
    }

    fn drain(&self, unread: usize, stats: &Stats, finish: impl Finish) {
        match way(unread) {
            Way::Here => finish.run(),
            Way::Overflowing => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish.run()));
            }
            Way::Drained => {
                let size = unread as u128;
                let mut held = lock(&self.held);
                while *held > 0 && *held + size > BUDGET {
                    held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
                }
                // The trial reservation is address space only, freed at once;
                // with the budget held, no other drain takes it meanwhile.
                if Vec::<u8>::new().try_reserve_exact(unread).is_err() {
                    drop(held);
                    self.park(finish.keep(), stats);
                    return;
                }
                *held += size;
                drop(held);
                // Given back however `finish` ends (a panic included), so
                // the budget never shrinks for good.
                let _returned = Returned(self, size);
                finish.run();
            }
        }
    }

    fn park(&self, what: Box<dyn Send>, stats: &Stats) {
        lock(&self.parked).push(what);
        Stats::add(&stats.parked, 1);
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    lock(slot).take()
}

fn thread_name(way: &Way) -> &'static str {
    match way {
        Way::Overflowing => OVERFLOW_THREAD,
        _ => DRAIN_THREAD,
    }
}

/// Claims the panic of a drain whose remainder is beyond `isize::MAX`:
/// expected (tiny_http's allocation overflows), caught, nothing to report.
fn drain_overflowed(_info: &std::panic::PanicHookInfo<'_>) -> bool {
    std::thread::current().name() == Some(OVERFLOW_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_remainder_has_its_way() {
        assert_eq!(way(0), Way::Here);
        assert_eq!(way(ALWAYS_DRAINABLE), Way::Here);
        assert_eq!(way(ALWAYS_DRAINABLE + 1), Way::Drained);
        assert_eq!(way(1 << 40), Way::Drained);
        assert_eq!(way(isize::MAX as usize), Way::Drained);
        assert_eq!(way(isize::MAX as usize + 1), Way::Overflowing);
    }

    /// The allocator maps a tebibyte without memory behind it: the drain
    /// of an absurd `Content-Length` costs address space only.
    #[test]
    fn a_tebibyte_remainder_can_be_allocated_and_freed() {
        for _ in 0..3 {
            let mut buf = Vec::<u8>::new();
            assert!(buf.try_reserve_exact(1 << 40).is_ok(), "1 TiB not mapped");
            buf.resize(12346, 0);
            buf[12345] = 1;
            assert_eq!(buf[12345], 1);
        }
    }

    /// Address space freed by a drain goes back to the system (jemalloc
    /// built with `retain:false`, see `.cargo/config.toml`): remainders of
    /// growing sizes, one after another, do not add up until the next
    /// cannot be mapped.
    #[test]
    fn address_space_of_drains_is_given_back() {
        for tib in [1usize, 2, 3, 5, 8, 13, 21, 30, 60] {
            let mut buf = Vec::<u8>::new();
            assert!(
                buf.try_reserve_exact(tib << 40).is_ok(),
                "{tib} TiB could not be mapped after the smaller ones were freed"
            );
        }
    }

    struct Sends(crossbeam_channel::Sender<usize>, usize);

    impl Finish for Sends {
        fn run(self) {
            self.0.send(self.1).unwrap();
        }
        fn keep(self) -> Box<dyn Send> {
            Box::new(self.0)
        }
    }

    #[test]
    fn finishing_runs_once_whatever_the_way() {
        let drains = Arc::new(Drains::default());
        let stats = Arc::new(Stats::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        for unread in [0, ALWAYS_DRAINABLE + 1, 1 << 40] {
            let tx = tx.clone();
            drains.let_go(unread, unread == 0, &stats, Sends(tx.clone(), unread));
        }
        drop(tx);
        let mut got: Vec<usize> = rx.iter().collect();
        got.sort();
        assert_eq!(got, vec![0, ALWAYS_DRAINABLE + 1, 1 << 40]);
        assert_eq!(Stats::get(&stats.parked), 0);
    }
}

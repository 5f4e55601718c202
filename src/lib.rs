//! autopi-rx: a bench receiver for AutoPi telematics uploads.
//!
//! The entry (`main`, `cli`, `run`) parses the command line and composes
//! the wings: `run` sets up, receives until a signal, and shuts down.
//!
//! Wings, each depending only on the shared vocabulary below it:
//! - `receiver`: takes requests, decides on them, answers (tiny_http);
//! - `capture`: makes accepted batches durable and reads them back;
//! - `dashboard`: folds request events into state and draws it;
//! - `simulate`: a simulated device (and the demo that runs one);
//! - `forward`: passes the capture on to an HTTP upstream or MQTT broker.
//!
//! The vocabulary every wing shares: `record` (typed records), `event`
//! (what the receiver reports), `batch` (a decoded batch), `time`, `text`
//! (what a terminal must not obey), `upload` (one POST the way the device
//! makes it, and what its answer means), `upstream` (what each forward
//! target is doing).

#![forbid(unsafe_code)]
#![deny(clippy::print_stderr, clippy::print_stdout)]

/// `eprintln!` that cannot panic. `eprintln!` panics when stderr is a
/// pipe whose reader has gone (`autopi-rx --headless 2>&1 | grep -m1
/// listening` in a script), and the thread that said it ended with it: the
/// SIGHUP thread (and with it the handler, so the next SIGHUP ended the
/// run), the notices, a worker. Here the line is lost and the thread goes
/// on. Every message on stderr goes through it (the lints in `lib.rs` and
/// `main.rs` refuse `eprintln!`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = $crate::scrub::said(format!($($arg)*));
        let _ = writeln!(std::io::stderr(), "{line}");
    }};
}

/// jemalloc maps large blocks without reserving memory for them, where the
/// kernel's default overcommit heuristic would refuse a block larger than
/// memory and swap. tiny_http 0.12 allocates a request's whole unread body
/// when it drops the request (`receiver::drain` says why that matters);
/// with this allocator that costs address space, not memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Lets jemalloc give freed memory back to the system on a thread of its
/// own, on its usual decay (about ten seconds): without it, pages freed
/// after a burst (a pipelined flood) stay with the process until the
/// next allocations come. Nothing depends on it succeeding.
pub fn tune_allocator() {
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}

pub mod batch;
pub mod capture;
pub mod cli;
pub mod dashboard;
pub mod event;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod forward;
pub mod input;
pub mod latency;
pub mod panic;
pub mod receiver;
pub mod record;
pub mod run;
pub mod scrub;
pub mod simulate;
pub mod text;
pub mod time;
pub mod upload;
pub mod upstream;

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
//! (what the receiver reports), `batch` (a decoded batch), `time`,
//! `upload` (one POST the way the device makes it, and what its answer
//! means), `upstream` (what each forward target is doing).

#![forbid(unsafe_code)]

pub mod batch;
pub mod capture;
pub mod cli;
pub mod dashboard;
pub mod event;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod forward;
pub mod latency;
pub mod panic;
pub mod receiver;
pub mod record;
pub mod run;
pub mod simulate;
pub mod time;
pub mod upload;
pub mod upstream;

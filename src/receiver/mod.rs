//! The receiver wing: `run` sets up, receives until a signal and shuts
//! down; `server` is the tiny_http workers (body → `ingest` → capture →
//! answer → event); `ingest` makes the pure decisions (auth, decoding,
//! limits); `headless` prints one JSON line per request.

pub mod headless;
pub mod ingest;
pub mod run;
pub mod server;

pub use run::{Fatal, run};

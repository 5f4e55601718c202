//! autopi-rx: a bench receiver for AutoPi telematics uploads.
//!
//! `server` takes requests, `ingest` decides on them, `capture` makes
//! accepted batches durable, and consumers (`headless`) show the events.

#![forbid(unsafe_code)]

pub mod app;
pub mod capture;
pub mod cli;
pub mod demo;
pub mod event;
#[doc(hidden)]
pub mod fixtures;
pub mod headless;
pub mod ingest;
pub mod receive;
pub mod record;
pub mod server;
pub mod simulate;
pub mod state;
pub mod tui;
pub mod ui;

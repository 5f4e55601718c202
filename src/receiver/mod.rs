//! The receiver wing: `server` is the tiny_http workers (body → `ingest`
//! → capture → answer → event); `ingest` makes the pure decisions (auth,
//! decoding, limits); `headless` prints one JSON line per request;
//! `drain` lets go of requests with a large unread body; `closer` shuts
//! the connections tiny_http would hold on to; `spawner` starts workers
//! off the pumps.

pub mod accept;
pub mod activity;
pub mod closer;
pub mod drain;
pub mod headless;
pub mod heads;
pub mod ingest;
pub mod listener;
pub mod respond;
pub mod server;
pub mod spawner;
pub mod turns;

//! What the listener tells its consumers (headless printer, UI) about each
//! request. Events are facts, already redacted: no event carries a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use crate::upstream::ForwardBoard;

/// One request and what we answered.
#[derive(Clone, Debug)]
pub struct RequestEvent {
    /// Counts up from 1 in arrival order.
    pub id: u64,
    pub received: Timestamp,
    pub peer: String,
    pub method: String,
    pub path: String,
    pub unit_id: Option<String>,
    pub status: u16,
    /// Request headers as received, except `authorization`, whose
    /// credential is replaced by a short fingerprint.
    pub headers: Vec<(String, String)>,
    /// Whether the credential matched a configured token (None: no header
    /// or `--no-auth`).
    pub token_matched: Option<bool>,
    pub wire_bytes: u64,
    /// Bytes after inflating; equals `wire_bytes` for plain bodies.
    pub body_bytes: u64,
    /// `gzip` or `identity` as found on the wire; None when not decoded.
    pub encoding: Option<&'static str>,
    pub records: usize,
    pub malformed: usize,
    pub naive_timestamps: usize,
    /// `received` of the earlier identical batch in the capture.
    pub duplicate_of: Option<String>,
    /// The `content-encoding` header disagreed with the body.
    pub warning: Option<String>,
    /// Why the request was refused (one line).
    pub error: Option<String>,
    /// Time from the request's arrival to the answer being ready.
    pub elapsed: Duration,
    /// The batch as captured (accepted), or the start of the body as
    /// received (refused), for inspection.
    pub body: Option<Arc<[u8]>>,
}

impl RequestEvent {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn duplicate(&self) -> bool {
        self.duplicate_of.is_some()
    }
}

/// Running totals shared by the workers, read by the status page and the
/// screen.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Events the consumer was too slow to take (the listener never waits).
    pub dropped_events: AtomicU64,
    /// What each `--forward` target is doing (written by the forwarders).
    pub forward: Arc<ForwardBoard>,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

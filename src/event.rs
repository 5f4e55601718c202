//! What the listener tells its consumers (headless printer, UI) about each
//! request. Events are facts, already redacted: no event carries a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

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

/// Counts over requests. `Totals::of` is the one rule for what a request
/// adds: the server's status page and the dashboard both count by it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Accepted uploads, duplicates included.
    pub batches: u64,
    /// Records of accepted batches that are not duplicates.
    pub records: u64,
    pub duplicates: u64,
    /// Uploads answered 4xx/5xx.
    pub rejected: u64,
    /// Malformed records of accepted batches that are not duplicates.
    pub malformed: u64,
}

impl Totals {
    /// What one request adds to the totals: every request counts; an
    /// upload (POST) is a batch when accepted, else rejected; a duplicate's
    /// records were counted with its first copy.
    pub fn of(e: &RequestEvent) -> Totals {
        let mut t = Totals {
            requests: 1,
            ..Totals::default()
        };
        if e.method != "POST" {
            return t;
        }
        if !e.accepted() {
            t.rejected = 1;
            return t;
        }
        t.batches = 1;
        if e.duplicate() {
            t.duplicates = 1;
        } else {
            t.records = e.records as u64;
            t.malformed = e.malformed as u64;
        }
        t
    }

    /// Adds another count to this one.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.batches += other.batches;
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.malformed += other.malformed;
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
    /// Requests kept because tiny_http 0.12 cannot let go of them (a
    /// `Content-Length` beyond what the system can map, body unread).
    pub parked: AtomicU64,
}

impl Stats {
    /// Counts one request by the totals rule (`Totals::of`).
    pub fn count(&self, e: &RequestEvent) {
        let t = Totals::of(e);
        Stats::add(&self.requests, t.requests);
        Stats::add(&self.batches, t.batches);
        Stats::add(&self.records, t.records);
        Stats::add(&self.duplicates, t.duplicates);
        Stats::add(&self.rejected, t.rejected);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

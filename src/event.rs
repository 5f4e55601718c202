//! What the listener tells its consumers (headless printer, UI) about each
//! request. Events are facts, already redacted: no event carries a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use crate::upstream::ForwardBoard;

/// Shown for requests that carried no `unit-id` header (very old firmware).
pub const NO_UNIT_ID: &str = "(no unit-id)";

/// How a record without `@t` is named where types are listed (the Types
/// tab, `view --summary`): an empty name read as a blank row.
pub const NO_TYPE: &str = "(no @t)";

/// `kind` as a list of types names it: `NO_TYPE` for none.
pub fn type_label(kind: &str) -> &str {
    if kind.is_empty() { NO_TYPE } else { kind }
}
/// Shown for a `unit-id` header sent empty (a device whose id is not set).
pub const EMPTY_UNIT_ID: &str = "(empty unit-id)";

/// What a device is called on screen, in summaries and in exports' names:
/// its `unit-id`, or a label saying that it sent none or an empty one (an
/// empty name would draw as a blank row and title a GPX track with "").
pub fn device_name(unit_id: Option<&str>) -> &str {
    match unit_id {
        None => NO_UNIT_ID,
        Some("") => EMPTY_UNIT_ID,
        Some(u) => u,
    }
}

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
    /// The status sent; `NO_ANSWER` when nothing was (answer mode `hangup`).
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
    /// The newest valid `@ts` of the batch, when decoded.
    pub newest_ts: Option<Timestamp>,
    /// `received` of the earlier identical batch in the capture that was
    /// acknowledged.
    pub duplicate_of: Option<String>,
    /// `received` of the earlier identical batch when none of its copies
    /// was acknowledged: a retry (after a refusal) or re-send (after no
    /// answer).
    pub retry_of: Option<String>,
    /// The batch was decoded and saved to the capture (whatever it was
    /// answered).
    pub captured: bool,
    /// The answer mode that decided the answer (`ok`, `500`, `late:15`,
    /// ...); None when the request never reached it (refused for what it
    /// is, or not an upload).
    pub mode: Option<String>,
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

/// `status` of a request that got no answer at all.
pub const NO_ANSWER: u16 = 0;

impl RequestEvent {
    /// A 2xx was sent: the device deletes the batch.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn duplicate(&self) -> bool {
        self.duplicate_of.is_some()
    }
    /// An identical batch was captured before, never acknowledged.
    pub fn retry(&self) -> bool {
        self.retry_of.is_some()
    }
    /// A device's upload: a POST, or a GET or HEAD carrying a `unit-id`,
    /// which the receiver refuses (a redirect in front of it turned the
    /// device's POST into a GET; see `REDIRECTED` in the server).
    pub fn upload(&self) -> bool {
        self.method == "POST" || self.redirected()
    }
    /// A GET or HEAD carrying a `unit-id` (see `upload`).
    pub fn redirected(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD") && self.unit_id.is_some()
    }
    /// The seconds its 2xx was held back by `late:SECS` (it is sent that
    /// long after the batch was saved, which `elapsed` does not count).
    pub fn held_back(&self) -> Option<&str> {
        self.mode
            .as_deref()
            .and_then(|m| m.strip_prefix("late:"))
            .filter(|_| self.accepted())
    }
}

/// Counts over requests. `Totals::of` is the one rule for what a request
/// adds: the server's status page and the dashboard both count by it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Acknowledged uploads (2xx), duplicates and retries included.
    pub batches: u64,
    /// Records of captured batches that are neither duplicates nor
    /// retries: each batch's records count once, at its first copy.
    pub records: u64,
    /// Copies of an acknowledged batch.
    pub duplicates: u64,
    /// Copies of a batch none of whose copies was acknowledged yet.
    pub retries: u64,
    /// Uploads answered 4xx/5xx, or not answered (a device's upload a
    /// redirect turned into a GET too: see `RequestEvent::upload`).
    pub rejected: u64,
    /// Malformed records, counted as `records` are.
    pub malformed: u64,
}

impl Totals {
    /// What one request adds to the totals: every request counts; an
    /// upload (POST) is a batch when acknowledged, else rejected; the
    /// records of a captured batch count at its first copy only (a
    /// duplicate's or a retry's were counted with it).
    pub fn of(e: &RequestEvent) -> Totals {
        let mut t = Totals {
            requests: 1,
            ..Totals::default()
        };
        if !e.upload() {
            return t;
        }
        if e.accepted() {
            t.batches = 1;
        } else {
            t.rejected = 1;
        }
        if !e.captured {
            return t;
        }
        if e.duplicate() {
            t.duplicates = 1;
        } else if e.retry() {
            t.retries = 1;
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
        self.retries += other.retries;
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
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    /// Events the consumer was too slow to take (the listener never waits).
    pub dropped_events: AtomicU64,
    /// Requests kept because tiny_http 0.12 cannot let go of them (a
    /// `Content-Length` beyond what the system can map, body unread).
    pub parked: AtomicU64,
    /// What each `--forward` target is doing (written by the forwarders).
    pub forward: Arc<ForwardBoard>,
}

impl Stats {
    /// Counts one request by the totals rule (`Totals::of`).
    pub fn count(&self, e: &RequestEvent) {
        let t = Totals::of(e);
        Stats::add(&self.requests, t.requests);
        Stats::add(&self.batches, t.batches);
        Stats::add(&self.records, t.records);
        Stats::add(&self.duplicates, t.duplicates);
        Stats::add(&self.retries, t.retries);
        Stats::add(&self.rejected, t.rejected);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

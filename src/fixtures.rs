//! Request events built without a server, for tests, screenshots and
//! benchmarks: the same shape the listener sends, already redacted. Test
//! support only: compiled for unit tests and, through the `test-support`
//! feature that the tests turn on, for the integration tests; never part
//! of a release build.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::capture::Sink;
use crate::event::RequestEvent;
use crate::record::parse_batch;

/// The sample requests and batches kept with the tests (`tests/fixtures`).
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reads one sample file as text.
pub fn sample(name: &str) -> String {
    let path = samples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The five single-record examples from AutoPi's guide, in name order.
pub fn guide_examples() -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(samples_dir().join("guide-examples"))
        .expect("guide examples")
        .map(|e| e.expect("dir entry").path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("guide example"))
        .collect()
}

/// Parses `2026-11-27T08:00:00Z`-style text; panics on a typo in a test.
pub fn at(text: &str) -> Timestamp {
    text.parse().expect("RFC 3339 timestamp")
}

/// An accepted, new batch as the listener reports it (plain JSON body).
pub fn accepted(id: u64, received: Timestamp, unit_id: Option<&str>, body: &str) -> RequestEvent {
    let records = parse_batch(body).map_or(0, |r| r.len());
    let compact = one_line(body);
    let mut headers = vec![
        ("Host".to_string(), "192.168.1.20:8000".to_string()),
        (
            "User-Agent".to_string(),
            "python-requests/2.27.1".to_string(),
        ),
        ("content-type".to_string(), "application/json".to_string()),
        (
            "authorization".to_string(),
            "token [redacted, fingerprint 5e1f0c2a]".to_string(),
        ),
        ("Content-Length".to_string(), body.len().to_string()),
    ];
    if let Some(u) = unit_id {
        headers.insert(3, ("unit-id".to_string(), u.to_string()));
    }
    RequestEvent {
        id,
        received,
        peer: "192.168.1.57:40522".into(),
        method: "POST".into(),
        path: "/logbook/storage".into(),
        unit_id: unit_id.map(str::to_string),
        status: 200,
        headers,
        token_matched: Some(true),
        wire_bytes: body.len() as u64,
        body_bytes: body.len() as u64,
        encoding: Some("identity"),
        records,
        malformed: 0,
        naive_timestamps: 0,
        newest_ts: newest_ts(body),
        duplicate_of: None,
        retry_of: None,
        captured: true,
        mode: Some("ok".into()),
        warning: None,
        error: None,
        elapsed: Duration::from_micros(1_850),
        body: Some(Arc::from(compact.into_bytes())),
    }
}

/// The newest valid `@ts` in a batch's text, as the receiver finds it.
fn newest_ts(body: &str) -> Option<Timestamp> {
    let records: Vec<serde_json::Value> = serde_json::from_str(body).ok()?;
    records
        .iter()
        .filter_map(|r| r.get("@ts")?.as_str())
        .filter_map(|ts| crate::time::parse_timestamp(ts).map(|(t, _)| t))
        .max()
}

/// The same batch sent again: accepted (2xx) but a duplicate.
pub fn duplicate(of: &RequestEvent, id: u64, received: Timestamp) -> RequestEvent {
    let mut e = of.clone();
    e.id = id;
    e.received = received;
    e.duplicate_of = Some(crate::time::format_received(of.received));
    e
}

/// An upload captured and then answered as `mode` made it (`status`, or
/// `NO_ANSWER` for a hang-up); `retry_of` links it to an earlier
/// unacknowledged copy.
pub fn answered_by_mode(
    mut e: RequestEvent,
    mode: &str,
    status: u16,
    retry_of: Option<&RequestEvent>,
) -> RequestEvent {
    e.mode = Some(mode.to_string());
    e.status = status;
    e.retry_of = retry_of.map(|r| crate::time::format_received(r.received));
    e
}

/// A refused request with the given status, reason and body start.
pub fn refused(id: u64, received: Timestamp, status: u16, error: &str, body: &str) -> RequestEvent {
    let mut e = accepted(id, received, Some("ee3df171ff0f6209a3dbaa00b00e1d05"), "[]");
    e.status = status;
    e.error = Some(error.to_string());
    e.records = 0;
    e.encoding = None;
    e.captured = false;
    e.mode = None;
    e.wire_bytes = body.len() as u64;
    e.body_bytes = body.len() as u64;
    e.body = Some(Arc::from(body.as_bytes()));
    for (name, value) in &mut e.headers {
        if name == "Content-Length" {
            *value = body.len().to_string();
        }
    }
    if status == 401 {
        e.token_matched = Some(false);
        for (name, value) in &mut e.headers {
            if name == "authorization" {
                *value = "token [redacted, fingerprint 9d0b77e1]".into();
            }
        }
    }
    e
}

/// Drops whitespace between JSON tokens, keeping key order, as the listener
/// does before capturing a multi-line body.
fn one_line(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// A call a `RecordingSink` received, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// The bytes written, as text.
    Write(String),
    Sync,
    /// A sync that was made to fail.
    FailedSync,
}

/// Counts the calls that reached it and lets through as many as allowed,
/// so a test can look around while a write or a sync is under way.
#[derive(Default)]
pub struct Gate {
    /// (calls that reached the gate, calls allowed through)
    counts: Mutex<(usize, usize)>,
    moved: Condvar,
}

impl Gate {
    /// A gate that lets every call through (still counting them).
    pub fn open() -> Arc<Gate> {
        let g = Gate::default();
        g.counts.lock().unwrap().1 = usize::MAX;
        Arc::new(g)
    }

    /// A gate that holds every call until `allow`.
    pub fn closed() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Called by the sink: waits until this call is allowed through.
    fn pass(&self) {
        let mut c = self.counts.lock().unwrap();
        c.0 += 1;
        self.moved.notify_all();
        let me = c.0;
        while c.1 < me {
            c = self.moved.wait(c).unwrap();
        }
    }

    /// Lets `n` more calls through.
    pub fn allow(&self, n: usize) {
        let mut c = self.counts.lock().unwrap();
        c.1 = c.1.saturating_add(n);
        self.moved.notify_all();
    }

    /// Waits (10 s at most, then panics) until `n` calls reached the gate.
    pub fn reached(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = self.counts.lock().unwrap();
        while c.0 < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "only {} of {n} calls came", c.0);
            c = self.moved.wait_timeout(c, left).unwrap().0;
        }
    }
}

/// A capture sink that logs every call, holds writes and syncs at gates,
/// can fail the next syncs on demand, and keeps the bytes that landed.
#[derive(Clone)]
pub struct RecordingSink {
    calls: Arc<Mutex<Vec<Call>>>,
    data: Arc<Mutex<Vec<u8>>>,
    writes: Arc<Gate>,
    syncs: Arc<Gate>,
    failing_syncs: Arc<AtomicUsize>,
}

impl RecordingSink {
    pub fn new(writes: Arc<Gate>, syncs: Arc<Gate>) -> RecordingSink {
        RecordingSink {
            calls: Arc::default(),
            data: Arc::default(),
            writes,
            syncs,
            failing_syncs: Arc::default(),
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The bytes that stayed written (after any cut-back).
    pub fn data(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    /// Makes the next `n` syncs fail with EIO.
    pub fn fail_syncs(&self, n: usize) {
        self.failing_syncs.store(n, Ordering::SeqCst);
    }
}

impl Sink for RecordingSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writes.pass();
        self.data.lock().unwrap().extend_from_slice(buf);
        let text = String::from_utf8_lossy(buf).into_owned();
        self.calls.lock().unwrap().push(Call::Write(text));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.syncs.pass();
        let fail = self
            .failing_syncs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            self.calls.lock().unwrap().push(Call::FailedSync);
            return Err(io::Error::from_raw_os_error(5));
        }
        self.calls.lock().unwrap().push(Call::Sync);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.data.lock().unwrap().truncate(len as usize);
        Ok(())
    }
}

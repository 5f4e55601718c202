//! Request events built without a server, for tests, screenshots and
//! benchmarks: the same shape the listener sends, already redacted. Test
//! support only: compiled for unit tests and, through the `test-support`
//! feature that the tests turn on, for the integration tests; never part
//! of a release build.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

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
        duplicate_of: None,
        warning: None,
        error: None,
        elapsed: Duration::from_micros(1_850),
        body: Some(Arc::from(compact.into_bytes())),
    }
}

/// The same batch sent again: accepted (2xx) but a duplicate.
pub fn duplicate(of: &RequestEvent, id: u64, received: Timestamp) -> RequestEvent {
    let mut e = of.clone();
    e.id = id;
    e.received = received;
    e.duplicate_of = Some(crate::time::format_received(of.received));
    e
}

/// A refused request with the given status, reason and body start.
pub fn refused(id: u64, received: Timestamp, status: u16, error: &str, body: &str) -> RequestEvent {
    let mut e = accepted(id, received, Some("ee3df171ff0f6209a3dbaa00b00e1d05"), "[]");
    e.status = status;
    e.error = Some(error.to_string());
    e.records = 0;
    e.encoding = None;
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

//! The listener: worker threads on one tiny_http server. Each request is
//! read (capped), decided by `ingest`, saved by the capture writer when
//! accepted, answered, and reported as an event that never waits on its
//! consumer.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use jiff::Timestamp;
use tiny_http::{Header, Method, Request, Response};

use crate::capture::{Capture, CaptureHandle, Entry};
use crate::event::{RequestEvent, Stats};
use crate::ingest::{self, Config, Rejection};

/// Seconds the device is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 5;
/// How often an idle worker looks whether it should stop.
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(200);
/// How much of a refused body an event keeps for inspection.
const REFUSED_BODY_KEPT: usize = 64 * 1024;

/// Settings of a running receiver.
pub struct Settings {
    pub listen: String,
    pub ingest: Config,
    pub workers: usize,
}

/// A running receiver; `shutdown` stops it cleanly.
pub struct Running {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    capture: Capture,
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

struct Ctx {
    server: Arc<tiny_http::Server>,
    config: Config,
    capture: CaptureHandle,
    capture_path: String,
    events: Sender<RequestEvent>,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    next_id: std::sync::atomic::AtomicU64,
    started: Instant,
}

/// Binds, starts the workers and returns at once.
pub fn start(
    settings: Settings,
    capture: Capture,
    events: Sender<RequestEvent>,
) -> io::Result<Running> {
    let listener = TcpListener::bind(&settings.listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", settings.listen),
        )
    })?;
    let addr = listener.local_addr()?;
    let server =
        Arc::new(tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?);
    let stats = Arc::new(Stats::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Ctx {
        server: server.clone(),
        config: settings.ingest,
        capture: capture.handle(),
        capture_path: capture.path().display().to_string(),
        events,
        stats: stats.clone(),
        stopping: stopping.clone(),
        next_id: Default::default(),
        started: Instant::now(),
    });
    let workers = (0..settings.workers.max(1))
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || worker(&ctx))
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Running {
        server,
        workers,
        stopping,
        capture,
        addr,
        stats,
    })
}

impl Running {
    /// Stops taking requests, finishes those already received, flushes the
    /// capture and returns once everything is on disk.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.server);
        self.capture.close();
    }

    pub fn capture_path(&self) -> &std::path::Path {
        self.capture.path()
    }
}

fn worker(ctx: &Ctx) {
    loop {
        if ctx.stopping.load(Ordering::SeqCst) {
            while let Ok(Some(request)) = ctx.server.try_recv() {
                handle(ctx, request);
            }
            return;
        }
        // Not `recv()`: a sibling draining with `try_recv` can eat this
        // worker's unblock token, which left it waiting forever at shutdown.
        if let Ok(Some(request)) = ctx.server.recv_timeout(STOP_CHECK) {
            handle(ctx, request);
        }
    }
}

/// What we answer and what we learned, before it becomes an event.
struct Outcome {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    extra_header: Option<(&'static str, String)>,
    error: Option<String>,
    batch: Option<ingest::Batch>,
    duplicate_of: Option<String>,
    wire_bytes: u64,
    kept_body: Option<Arc<[u8]>>,
}

impl Outcome {
    fn json(status: u16, body: serde_json::Value) -> Outcome {
        Outcome {
            status,
            body: body.to_string().into_bytes(),
            content_type: "application/json",
            extra_header: None,
            error: None,
            batch: None,
            duplicate_of: None,
            wire_bytes: 0,
            kept_body: None,
        }
    }

    fn refused(r: Rejection) -> Outcome {
        let mut out = Outcome::json(r.status, serde_json::json!({ "error": r.error }));
        out.extra_header = match r.status {
            401 => Some((
                "WWW-Authenticate",
                r#"Token realm="autopi-rx", Bearer realm="autopi-rx""#.into(),
            )),
            503 => Some(("Retry-After", RETRY_AFTER_SECS.to_string())),
            _ => None,
        };
        out.error = Some(r.error);
        out
    }
}

fn header<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn handle(ctx: &Ctx, mut request: Request) {
    let started = Instant::now();
    let received = Timestamp::now();
    let outcome = match request.method() {
        Method::Post => post(ctx, &mut request, received),
        Method::Get | Method::Head => status_page(ctx),
        _ => {
            let mut out = Outcome::refused(Rejection {
                status: 405,
                error: format!(
                    "method {} not allowed: the device uploads with POST",
                    request.method()
                ),
            });
            out.extra_header = Some(("Allow", "GET, HEAD, POST".into()));
            out
        }
    };
    let event = make_event(ctx, &request, received, &outcome, started);
    let mut response = Response::from_data(outcome.body)
        .with_status_code(outcome.status)
        .with_header(
            Header::from_bytes("Content-Type", outcome.content_type).expect("static header"),
        );
    if let Some((name, value)) = outcome.extra_header {
        response.add_header(Header::from_bytes(name, value).expect("ascii header"));
    }
    // A client that hung up is its own problem; the batch is saved already.
    let _ = request.respond(response);
    count(ctx, &event);
    match ctx.events.try_send(event) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => Stats::add(&ctx.stats.dropped_events, 1),
    }
}

fn post(ctx: &Ctx, request: &mut Request, received: Timestamp) -> Outcome {
    let limit = ctx.config.max_body;
    if let Err(r) = ingest::authorize(&ctx.config.auth, header(request, "authorization")) {
        return Outcome::refused(r);
    }
    if let Some(len) = request.body_length().filter(|&len| len > limit) {
        let mut out = Outcome::refused(Rejection {
            status: 413,
            error: format!(
                "body of {len} bytes is larger than the limit of {limit} bytes (--max-body)"
            ),
        });
        out.wire_bytes = len as u64;
        return out;
    }
    let mut wire = Vec::with_capacity(request.body_length().unwrap_or(8192).min(limit));
    let read = request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut wire);
    if let Err(e) = read {
        let mut out = Outcome::refused(Rejection {
            status: 400,
            error: format!("could not read the whole body: {e}"),
        });
        out.wire_bytes = wire.len() as u64;
        return out;
    }
    let wire_bytes = wire.len() as u64;
    let decided = ingest::decode(&ctx.config, header(request, "content-encoding"), &wire);
    let batch = match decided {
        Ok(batch) => batch,
        Err(r) => {
            let mut out = Outcome::refused(r);
            out.wire_bytes = wire_bytes;
            wire.truncate(REFUSED_BODY_KEPT);
            out.kept_body = Some(wire.into());
            return out;
        }
    };
    let entry = Entry {
        received: format_received(received),
        peer: peer(request),
        unit_id: header(request, "unit-id").map(str::to_owned),
        wire_bytes,
    };
    match ctx.capture.save(&entry, &batch) {
        Ok(saved) => {
            let mut out = Outcome::json(
                200,
                serde_json::json!({ "accepted": batch.records, "duplicate": saved.duplicate_of.is_some() }),
            );
            out.wire_bytes = wire_bytes;
            out.duplicate_of = saved.duplicate_of;
            out.kept_body = Some(batch.records_json.as_slice().into());
            out.batch = Some(batch);
            out
        }
        Err(e) => {
            let mut out = Outcome::refused(Rejection {
                status: 503,
                error: format!("capture not writable, batch not saved (send it again): {e}"),
            });
            out.wire_bytes = wire_bytes;
            out
        }
    }
}

/// `received` in the capture: RFC 3339, UTC, milliseconds.
pub fn format_received(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn peer(request: &Request) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn status_page(ctx: &Ctx) -> Outcome {
    let s = &ctx.stats;
    let text = format!(
        "autopi-rx {version}: receiver for AutoPi uploads\n\
         uptime: {uptime} s\n\
         requests: {req} ({rej} refused)\n\
         batches saved: {bat} ({dup} duplicates)\n\
         records saved: {rec}\n\
         capture: {path}\n\
         auth: {auth}\n\
         Upload with POST to any path here, header 'authorization: token <T>' or 'Bearer <T>'.\n",
        version = env!("CARGO_PKG_VERSION"),
        uptime = ctx.started.elapsed().as_secs(),
        req = Stats::get(&s.requests),
        rej = Stats::get(&s.rejected),
        bat = Stats::get(&s.batches),
        dup = Stats::get(&s.duplicates),
        rec = Stats::get(&s.records),
        path = ctx.capture_path,
        auth = match ctx.config.auth.token_count() {
            0 => "OFF (--no-auth)".to_string(),
            n => format!("{n} token(s)"),
        },
    );
    let mut out = Outcome::json(200, serde_json::Value::Null);
    out.body = text.into_bytes();
    out.content_type = "text/plain; charset=utf-8";
    out
}

fn count(ctx: &Ctx, e: &RequestEvent) {
    let s = &ctx.stats;
    Stats::add(&s.requests, 1);
    if e.method != "POST" {
        return;
    }
    if e.accepted() {
        Stats::add(&s.batches, 1);
        if e.duplicate() {
            Stats::add(&s.duplicates, 1);
        } else {
            Stats::add(&s.records, e.records as u64);
        }
    } else {
        Stats::add(&s.rejected, 1);
    }
}

fn make_event(
    ctx: &Ctx,
    request: &Request,
    received: Timestamp,
    outcome: &Outcome,
    started: Instant,
) -> RequestEvent {
    let mut token_matched = None;
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            let name = h.field.as_str().as_str().to_string();
            let value = if h.field.equiv("authorization") {
                let (shown, matched) = redact_authorization(&ctx.config.auth, h.value.as_str());
                token_matched = matched;
                shown
            } else {
                h.value.as_str().to_string()
            };
            (name, value)
        })
        .collect();
    let batch = outcome.batch.as_ref();
    RequestEvent {
        id: ctx.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        received,
        peer: peer(request),
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
        unit_id: header(request, "unit-id").map(str::to_owned),
        status: outcome.status,
        headers,
        token_matched,
        wire_bytes: outcome.wire_bytes,
        body_bytes: batch.map_or(outcome.wire_bytes, |b| b.body_bytes as u64),
        encoding: batch.map(|b| b.encoding.as_str()),
        records: batch.map_or(0, |b| b.records),
        malformed: batch.map_or(0, |b| b.malformed),
        naive_timestamps: batch.map_or(0, |b| b.naive_timestamps),
        duplicate_of: outcome.duplicate_of.clone(),
        warning: batch.and_then(|b| b.warning.clone()),
        error: outcome.error.clone(),
        elapsed: started.elapsed(),
        body: outcome.kept_body.clone(),
    }
}

/// `token 1a2b3c4d…` in place of the credential, and whether it matched.
pub fn redact_authorization(auth: &ingest::Auth, value: &str) -> (String, Option<bool>) {
    match ingest::split_authorization(value) {
        Some((scheme, credential)) => {
            let matched = match auth {
                ingest::Auth::Open => None,
                _ => Some(auth.matches(credential)),
            };
            let scheme: String = scheme
                .chars()
                .filter(char::is_ascii_graphic)
                .take(20)
                .collect();
            (
                format!(
                    "{scheme} [redacted, fingerprint {}]",
                    ingest::fingerprint(credential)
                ),
                matched,
            )
        }
        None => {
            let matched = (!matches!(auth, ingest::Auth::Open)).then_some(false);
            (format!("[redacted, {} bytes]", value.len()), matched)
        }
    }
}

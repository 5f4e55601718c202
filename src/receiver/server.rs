//! The listener: worker threads on one tiny_http server. Each request is
//! read (capped), decided by `ingest`, saved by the capture writer when
//! accepted, answered, and reported as an event that never waits on its
//! consumer.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use jiff::Timestamp;
use tiny_http::{Header, Method, Request, Response};

use crate::batch::Batch;
use crate::capture::{Capture, CaptureHandle, Entry};
use crate::event::{RequestEvent, Stats};
use crate::receiver::ingest::{self, Config, Rejection};
use crate::time::format_received;

/// Seconds the device is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 5;
/// How much of a refused body an event keeps for inspection.
const REFUSED_BODY_KEPT: usize = 64 * 1024;

/// Settings of a running receiver.
pub struct Settings {
    pub listen: String,
    pub ingest: Config,
    /// Workers started at once; more are added while all are busy (a
    /// device that stalls mid-upload holds one, as tiny_http has no read
    /// timeout), up to `MAX_WORKERS`.
    pub workers: usize,
    /// Whether events carry the batch text (the screen shows it; the
    /// headless printer does not need it).
    pub event_bodies: bool,
}

/// Most worker threads, however many uploads stall.
pub const MAX_WORKERS: usize = 256;
/// A declared body this large is never drained: tiny_http 0.12 allocates
/// the whole unread remainder when it drops a request, which aborts the
/// process for absurd `Content-Length`s.
const UNREAD_DRAIN_LIMIT: usize = 1 << 30;

/// The file where tiny_http 0.12's accept thread unwraps `try_clone` of
/// each new socket (upstream issue tiny-http#195). Out of descriptors,
/// that thread panics: the listening socket is closed, and `recv` never
/// learns of it.
const ACCEPT_PANIC_FILE: &str = "refined_tcp_stream.rs";
/// How a dead listener is reported, before the reason.
const LISTENER_STOPPED: &str = "the listener stopped accepting connections";
/// EMFILE on Linux and macOS.
const EMFILE: i32 = 24;

/// Every receiver running in this process (a panic cannot tell which
/// server's accept thread it came from); gone ones are pruned.
static LISTENER_WATCHERS: Mutex<Vec<std::sync::Weak<Ctx>>> = Mutex::new(Vec::new());

/// A running receiver; `shutdown` stops it cleanly.
pub struct Running {
    ctx: Arc<Ctx>,
    capture: Capture,
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    /// Says why the listener died: tiny_http stops accepting after any
    /// accept error, and its accept thread panics when a descriptor runs
    /// out just after an accept.
    pub fatal: Receiver<String>,
}

struct Ctx {
    server: Arc<tiny_http::Server>,
    config: Config,
    capture: CaptureHandle,
    capture_path: String,
    events: Sender<RequestEvent>,
    stats: Arc<Stats>,
    stopping: AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
    started: Instant,
    event_bodies: bool,
    busy: AtomicUsize,
    workers: Mutex<Vec<JoinHandle<()>>>,
    fatal: Sender<String>,
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
    let (fatal_tx, fatal) = bounded(1);
    let ctx = Arc::new(Ctx {
        server,
        config: settings.ingest,
        capture: capture.handle(),
        capture_path: capture.path().display().to_string(),
        events,
        stats: stats.clone(),
        stopping: AtomicBool::new(false),
        next_id: Default::default(),
        started: Instant::now(),
        event_bodies: settings.event_bodies,
        busy: AtomicUsize::new(0),
        workers: Mutex::new(Vec::new()),
        fatal: fatal_tx,
    });
    crate::panic::claim(listener_lost);
    {
        let mut watchers = LISTENER_WATCHERS.lock().unwrap_or_else(|p| p.into_inner());
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(Arc::downgrade(&ctx));
    }
    for _ in 0..settings.workers.clamp(1, MAX_WORKERS) {
        add_worker(&ctx)?;
    }
    Ok(Running {
        ctx,
        capture,
        addr,
        stats,
        fatal,
    })
}

/// The receiver's claim on panics (see `crate::panic`): whether this panic
/// is tiny_http's accept thread dying; if it is, every receiver of this
/// process that is not already stopping is told, so the run ends with a
/// clear reason instead of leaving a receiver that no longer accepts
/// connections, and nothing is printed here.
fn listener_lost(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let in_accept_thread = info.location().is_some_and(|l| {
        let file = l.file().replace('\\', "/");
        // Registry, vendored and patched checkouts alike.
        file.ends_with(ACCEPT_PANIC_FILE)
            && (file.contains("tiny_http") || file.contains("tiny-http"))
    });
    if !in_accept_thread {
        return false;
    }
    let payload = info.payload();
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    let why = format!(
        "{LISTENER_STOPPED}: tiny_http's accept thread failed: {}",
        unwrapped_os_error(what)
    );
    let watchers = LISTENER_WATCHERS.lock().unwrap_or_else(|p| p.into_inner());
    for ctx in watchers.iter().filter_map(std::sync::Weak::upgrade) {
        if !ctx.stopping.load(Ordering::SeqCst) {
            let _ = ctx.fatal.try_send(why.clone());
        }
    }
    true
}

/// `unwrap`'s panic text around an io::Error (`... Os { code: 24, ... }`)
/// as the error's own message, with advice when descriptors ran out; any
/// other text as it is.
fn unwrapped_os_error(what: &str) -> String {
    let code = what.split_once("code: ").and_then(|(_, rest)| {
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse::<i32>().ok()
    });
    match code {
        Some(code) => os_error_text(&io::Error::from_raw_os_error(code)),
        None => what.to_string(),
    }
}

/// An OS error's message, with advice when descriptors ran out.
fn os_error_text(e: &io::Error) -> String {
    if e.raw_os_error() == Some(EMFILE) {
        format!("{e}{}", descriptor_hint())
    } else {
        e.to_string()
    }
}

/// What to do when descriptors run out, with the limit in force.
fn descriptor_hint() -> String {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => {
            format!(" (out of file descriptors: the limit is {soft}; raise it with `ulimit -n`)")
        }
        Err(_) => " (out of file descriptors; raise the limit with `ulimit -n`)".into(),
    }
}

/// Starts one more worker thread.
fn add_worker(ctx: &Arc<Ctx>) -> io::Result<()> {
    let mut workers = ctx.workers.lock().unwrap_or_else(|p| p.into_inner());
    let worker_ctx = ctx.clone();
    let handle = std::thread::Builder::new()
        .name(format!("http-{}", workers.len()))
        .spawn(move || worker(&worker_ctx))?;
    workers.push(handle);
    Ok(())
}

impl Running {
    /// Stops taking requests, finishes those already received, flushes the
    /// capture and returns once everything is on disk.
    pub fn shutdown(self) {
        let ctx = self.ctx;
        ctx.stopping.store(true, Ordering::SeqCst);
        loop {
            let workers =
                std::mem::take(&mut *ctx.workers.lock().unwrap_or_else(|p| p.into_inner()));
            if workers.is_empty() {
                break;
            }
            // Each worker consumes at most two wake-ups: one ends its
            // `recv`, and `try_recv` while draining swallows at most one more.
            for _ in 0..2 * workers.len() {
                ctx.server.unblock();
            }
            for w in workers {
                let _ = w.join();
            }
        }
        drop(ctx);
        self.capture.close();
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.ctx.busy.load(Ordering::SeqCst)
    }

    pub fn capture_path(&self) -> &std::path::Path {
        self.capture.path()
    }
}

fn worker(ctx: &Arc<Ctx>) {
    loop {
        if ctx.stopping.load(Ordering::SeqCst) {
            while let Ok(Some(request)) = ctx.server.try_recv() {
                serve(ctx, request);
            }
            return;
        }
        match ctx.server.recv() {
            Ok(request) => serve(ctx, request),
            // Wake-ups come only with `stopping`; any other error means
            // tiny_http's accept loop has ended for good.
            Err(e) if !ctx.stopping.load(Ordering::SeqCst) => {
                let _ = ctx
                    .fatal
                    .try_send(format!("{LISTENER_STOPPED}: {}", os_error_text(&e)));
                return;
            }
            Err(_) => {}
        }
    }
}

/// Handles one request on this worker, adding a worker first when this
/// was the last idle one, and keeping the worker alive through a panic
/// (tiny_http answers 500 for a request dropped unanswered).
fn serve(ctx: &Arc<Ctx>, request: Request) {
    let busy = ctx.busy.fetch_add(1, Ordering::SeqCst) + 1;
    let total = ctx.workers.lock().map_or(MAX_WORKERS, |w| w.len());
    if busy >= total && total < MAX_WORKERS && !ctx.stopping.load(Ordering::SeqCst) {
        let _ = add_worker(ctx);
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(ctx, request)));
    ctx.busy.fetch_sub(1, Ordering::SeqCst);
}

/// What we answer and what we learned, before it becomes an event.
struct Outcome {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    extra_header: Option<(&'static str, String)>,
    error: Option<String>,
    batch: Option<Batch>,
    duplicate_of: Option<String>,
    wire_bytes: u64,
    kept_body: Option<Arc<[u8]>>,
    /// The body was read off the socket (so nothing is left to drain).
    body_read: bool,
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
            body_read: false,
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
    // Counted before answering, so a status request sent after this answer
    // already sees it.
    count(ctx, &event);
    let unread = request.body_length().filter(|_| !outcome.body_read);
    if unread.is_some_and(|n| n > UNREAD_DRAIN_LIMIT) {
        // Answer, then keep tiny_http from draining the absurd remainder:
        // the connection is left to the client to close.
        std::mem::forget(request.upgrade("close", response));
    } else {
        // A client that hung up is its own problem; the batch is saved already.
        let _ = request.respond(response);
    }
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
        let mut out = Outcome::refused(ingest::too_large("body", len, limit));
        out.wire_bytes = len as u64;
        return out;
    }
    let mut out = match read_body(request, limit) {
        Ok(wire) => decode_and_save(ctx, request, received, wire),
        Err((rejection, read)) => {
            let mut out = Outcome::refused(rejection);
            out.wire_bytes = read;
            out
        }
    };
    out.body_read = true;
    out
}

/// Reads at most `limit` + 1 bytes of body, refusing a body cut short
/// (with how many bytes did arrive).
fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, (Rejection, u64)> {
    let declared = request.body_length();
    let mut wire = Vec::with_capacity(declared.unwrap_or(8192).min(limit));
    let read = request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut wire);
    let short = declared.filter(|&len| wire.len() < len);
    let error = match (read, short) {
        (Err(e), _) => format!("could not read the whole body: {e}"),
        (Ok(_), Some(len)) => format!(
            "the body ended after {} of the {len} bytes its Content-Length announced",
            wire.len()
        ),
        (Ok(_), None) => return Ok(wire),
    };
    Err((Rejection { status: 400, error }, wire.len() as u64))
}

fn decode_and_save(
    ctx: &Ctx,
    request: &Request,
    received: Timestamp,
    mut wire: Vec<u8>,
) -> Outcome {
    let wire_bytes = wire.len() as u64;
    let decided = ingest::decode(&ctx.config, header(request, "content-encoding"), &wire);
    let batch = match decided {
        Ok(batch) => batch,
        Err(r) => {
            let mut out = Outcome::refused(r);
            out.wire_bytes = wire_bytes;
            wire.truncate(REFUSED_BODY_KEPT);
            out.kept_body = ctx.event_bodies.then(|| wire.into());
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
            out.kept_body = ctx.event_bodies.then(|| batch.records_json.clone());
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
         {forward}\
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
        forward = s
            .forward
            .snapshot()
            .iter()
            .map(|f| format!(
                "forward {}: {} ({} forwarded)\n",
                f.target,
                f.summary(Timestamp::now()),
                f.forwarded
            ))
            .collect::<String>(),
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
            // Only the two known schemes are shown: anything else may be a
            // token sent without one.
            let scheme =
                if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
                    scheme
                } else {
                    "[unknown scheme]"
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_panic_text_becomes_the_os_message() {
        let emfile = r#"called `Result::unwrap()` on an `Err` value: Os { code: 24, kind: Uncategorized, message: "Too many open files" }"#;
        let text = unwrapped_os_error(emfile);
        assert!(
            text.starts_with(
                "Too many open files (os error 24) (out of file descriptors: the limit is "
            ),
            "{text}"
        );
        let enfile = r#"called `Result::unwrap()` on an `Err` value: Os { code: 23, kind: Uncategorized, message: "Too many open files in system" }"#;
        assert_eq!(
            unwrapped_os_error(enfile),
            io::Error::from_raw_os_error(23).to_string()
        );
        assert_eq!(unwrapped_os_error("something else"), "something else");
    }
}

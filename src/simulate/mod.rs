//! `autopi-rx simulate`: a simulated AutoPi device, and with
//! `--interval 0 --concurrency C` a load generator. It uploads a generated
//! session the way the device's uploader (autopi-core's `cloud_cache.py`) does:
//! an answer below 400 is done, 4xx/5xx puts the batch in a retry queue
//! for the next cycle, and no answer re-sends the identical bytes.

pub mod demo;
mod session;

use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, Sender, select};
use jiff::Timestamp;

use crate::latency::{Latencies, Latency};

pub use crate::upload::{Answer, MAX_FAILURES, Payload, Target, Uploader, encode, encode_json};
pub use session::{HOME, Session, Stamps, default_start, format_ts};

/// Above this many records, batches are made while sending instead of
/// beforehand, to bound memory (about 100 bytes of JSON per record).
pub const PREPARE_LIMIT_RECORDS: u64 = 2_000_000;

/// Uploads a generated session like an AutoPi device.
#[derive(Args, Clone)]
// A negative number is a flag's value, refused with its range, where
// clap took `-1` for a flag and advised `-- -1`, which does not work.
#[command(allow_negative_numbers = true)]
pub struct SimulateArgs {
    /// Where to POST, as set on the device's Cloud Storage page.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// The device's Auth Token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "AUTOPI_RX_TOKEN",
        hide_env_values = true
    )]
    pub token: String,

    /// Authorization scheme: `token` as the device's code sends, or
    /// `bearer` as AutoPi's guide shows.
    #[arg(long, value_enum, default_value_t = Scheme::Token)]
    pub scheme: Scheme,

    /// Gzip every body (content-encoding: gzip) at LEVEL 0-9 [9 when no
    /// level is given, like the settings page].
    #[arg(
        long,
        value_name = "LEVEL",
        num_args = 0..=1,
        default_missing_value = "9",
        value_parser = clap::value_parser!(u32).range(0..=9)
    )]
    pub gzip: Option<u32>,

    /// Device id sent as `unit-id` [default: 32 hex digits derived from --seed].
    #[arg(long, value_name = "ID")]
    pub unit_id: Option<String>,

    /// Most records per batch (the device's code: 100; settings page: 1000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub batch: u64,

    /// Seconds between upload cycles (the device: 60); 0 sends the next
    /// batch as soon as one is answered.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,

    /// Stop after N acknowledged batches [default: run until Ctrl-C].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Uploaders at once, each on its own keep-alive connection.
    #[arg(
        long,
        value_name = "C",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..=1024)
    )]
    pub concurrency: u64,

    /// Seed of the generated session: the same seed sends the same records.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,

    /// `@ts` style: `naive` UTC as the device's code writes, or `zulu`
    /// (trailing Z) as the guide shows.
    #[arg(long, value_enum, default_value_t = Stamps::Naive)]
    pub timestamps: Stamps,

    /// First power-on of the session: RFC 3339, naive UTC, or `now`
    /// [default: a fixed day per seed].
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,

    /// Seconds to wait for an answer before sending the same bytes again
    /// (the device's code: 10).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Least wait before a cycle that re-sends a failed batch, even with
    /// --interval 0, so a receiver restarting is not given up on at once.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub retry_wait: f64,

    /// Trust the CA certificates in this PEM file (instead of the Mozilla
    /// roots) for an https:// URL.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    Token,
    Bearer,
}

/// The checked settings of one run.
pub struct Settings {
    pub target: Arc<Target>,
    pub gzip: Option<u32>,
    pub batch: usize,
    pub interval: Duration,
    pub count: Option<u64>,
    pub concurrency: usize,
    pub seed: u64,
    pub stamps: Stamps,
    pub start: Timestamp,
    /// One line on stderr per answer (acks only when --interval > 0);
    /// off for callers that own the screen.
    pub notes: bool,
    /// Least time between cycles while a batch waits to be sent again.
    pub retry_wait: Duration,
}

impl Settings {
    /// Checks every flag; the message names the flag, never the token.
    pub fn from_args(args: &SimulateArgs) -> Result<Settings, String> {
        crate::scrub::keep_out_of_stderr(&args.token, "[token]");
        let authorization = authorization(&args.token, args.scheme)?;
        let unit_id = match &args.unit_id {
            Some(id) => check_unit_id(id)?,
            None => unit_id_for(args.seed),
        };
        let timeout = seconds("--timeout", args.timeout, 0.001)?;
        let ca = crate::forward::load_ca_of("--ca", args.ca.as_deref())?;
        let target =
            Target::new(check_url(&args.url)?, authorization, unit_id, timeout).trusting(ca);
        Ok(Settings {
            target: Arc::new(target),
            gzip: args.gzip,
            batch: args.batch as usize,
            interval: seconds("--interval", args.interval, 0.0)?,
            count: args.count,
            concurrency: args.concurrency as usize,
            seed: args.seed,
            stamps: args.timestamps,
            start: match &args.start {
                Some(s) => parse_start(s)?,
                None => default_start(args.seed),
            },
            notes: true,
            retry_wait: seconds("--retry-wait", args.retry_wait, 0.0)?,
        })
    }
}

/// The `authorization` header value for a token, or why the token cannot
/// be sent (never quoting it).
pub fn authorization(token: &str, scheme: Scheme) -> Result<String, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("an empty --token (or AUTOPI_RX_TOKEN) was given".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the --token (or AUTOPI_RX_TOKEN) holds spaces or non-ASCII characters".into());
    }
    Ok(match scheme {
        Scheme::Token => format!("token {token}"),
        Scheme::Bearer => format!("Bearer {token}"),
    })
}

/// The URL if it is one a device could post to (http or https, a host).
pub fn check_url(url: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("--url is not a URL: {e}"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("--url: put no credentials in the URL (they would show in process lists and in messages); give the token with --token or AUTOPI_RX_TOKEN".into());
    }
    crate::upload::check_port("--url", &uri)?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(url.to_string()),
        _ => Err("--url must start with http:// or https:// and name a host".to_string()),
    }
}

fn check_unit_id(id: &str) -> Result<String, String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "--unit-id {id:?} must be printable ASCII without spaces (the device sends 32 lowercase hex digits)"
        ));
    }
    Ok(id.to_string())
}

/// A unit id of the device's form, the same for the same seed.
pub fn unit_id_for(seed: u64) -> String {
    let hash = blake3::hash(format!("autopi-rx simulate unit {seed}").as_bytes());
    hash.to_hex()[..32].to_string()
}

/// A number of seconds from a flag, within `min` and a day.
pub fn seconds(flag: &str, value: f64, min: f64) -> Result<Duration, String> {
    if !value.is_finite() || value < min || value > 86_400.0 {
        return Err(format!(
            "{flag} {value} is out of range: give seconds from {min} to 86400"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// `now`, an RFC 3339 time, or a naive time or a date taken as UTC, as
/// `export --from` reads them (a date alone was "not a time" here).
pub fn parse_start(s: &str) -> Result<Timestamp, String> {
    if s == "now" {
        return Ok(Timestamp::now());
    }
    let start = crate::time::parse_timestamp(s)
        .map(|(t, _)| t)
        .ok_or_else(|| {
            format!("--start {s:?} is not a time: give e.g. 2026-11-27T08:00:00Z, or now")
        })?;
    // The session's stamps must not pass the last time there is
    // (9999-12-30): past it they were written as 1970, the stream going
    // back 8 000 years without a word (a review, December 7).
    if start >= LATEST_START {
        return Err(format!(
            "--start {s:?} leaves the drive no room before the year 9999: give a time before {LATEST_START}"
        ));
    }
    Ok(start)
}

/// The latest `--start` taken: thousands of years before the last time
/// a stamp can say, more than any run lasts.
const LATEST_START: Timestamp = Timestamp::constant(221_845_392_000, 0);

/// Cuts the endless session into encoded batches, in time order.
pub struct Batches {
    session: Session,
    size: usize,
    gzip: Option<u32>,
    next_number: u64,
}

impl Batches {
    pub fn new(settings: &Settings) -> Batches {
        Batches {
            session: Session::new(settings.seed, settings.start, settings.stamps),
            size: settings.batch,
            gzip: settings.gzip,
            // Counted from 1, as replay and view count batches (a README
            // audit found simulate's first was batch 0).
            next_number: 1,
        }
    }
}

impl Iterator for Batches {
    type Item = Payload;

    fn next(&mut self) -> Option<Payload> {
        let records: Vec<_> = self.session.by_ref().take(self.size).collect();
        let payload = encode(self.next_number, &records, self.gzip);
        self.next_number += 1;
        Some(payload)
    }
}

/// Where uploaders take new batches from: made beforehand when the run is
/// bounded, so a load run measures the receiver and not the generator.
enum Source {
    Prepared {
        payloads: Vec<Arc<Payload>>,
        next: AtomicUsize,
    },
    /// Made on demand; `left` counts down a --count too big to prepare.
    Live(Box<Mutex<(Batches, Option<u64>)>>),
}

impl Source {
    fn new(settings: &Settings) -> Source {
        let mut batches = Batches::new(settings);
        match settings.count {
            Some(n) if n.saturating_mul(settings.batch as u64) <= PREPARE_LIMIT_RECORDS => {
                Source::Prepared {
                    payloads: batches.by_ref().take(n as usize).map(Arc::new).collect(),
                    next: AtomicUsize::new(0),
                }
            }
            left => Source::Live(Box::new(Mutex::new((batches, left)))),
        }
    }

    /// Whether `next` has nothing more to give.
    fn drained(&self) -> bool {
        match self {
            Source::Prepared { payloads, next } => next.load(Ordering::Relaxed) >= payloads.len(),
            Source::Live(live) => live.lock().unwrap_or_else(|p| p.into_inner()).1 == Some(0),
        }
    }

    fn next(&self) -> Option<Arc<Payload>> {
        match self {
            Source::Prepared { payloads, next } => {
                payloads.get(next.fetch_add(1, Ordering::Relaxed)).cloned()
            }
            Source::Live(live) => {
                let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                let (batches, left) = &mut *live;
                match left {
                    Some(0) => return None,
                    Some(n) => *n -= 1,
                    None => {}
                }
                batches.next().map(Arc::new)
            }
        }
    }
}

/// A batch waiting in an uploader's retry queue.
struct Queued {
    payload: Arc<Payload>,
    failures: u32,
    /// The last attempt got no answer (so the next one is a re-send of
    /// the same bytes, not a retry after a refusal).
    unanswered: bool,
}

/// What one uploader did.
#[derive(Default)]
struct Tally {
    batches: u64,
    records: u64,
    retries: u64,
    resends: u64,
    latencies: Latencies,
    unacknowledged: u64,
}

/// State all uploaders share.
struct Shared<'a> {
    settings: &'a Settings,
    source: Source,
    /// Dropped to wake every waiting uploader when the run must end.
    halt_tx: Mutex<Option<Sender<()>>>,
    halt_rx: Receiver<()>,
    halted: AtomicBool,
    fatal: Mutex<Option<String>>,
    redirect_warned: AtomicBool,
    informational_warned: AtomicBool,
}

impl Shared<'_> {
    /// Ends the run for every uploader; the first reason wins.
    fn halt(&self, reason: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if fatal.is_none() {
            *fatal = Some(reason);
        }
        self.halted.store(true, Ordering::SeqCst);
        self.halt_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// Whether no upload may start now: halted, or told to stop.
    fn ending(&self, stop: &Receiver<()>) -> bool {
        self.halted() || stopped(stop)
    }

    /// Waits until `until`; false when the run is to end instead.
    fn wait(&self, stop: &Receiver<()>, until: Instant) -> bool {
        if self.ending(stop) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        select! {
            recv(stop) -> _ => false,
            recv(self.halt_rx) -> _ => false,
            default(left) => true,
        }
    }

    /// Upload cycles for one uploader until the run is done or halted.
    fn upload(&self, stop: &Receiver<()>) -> Tally {
        let uploader = Uploader::new(self.settings.target.clone());
        let mut tally = Tally::default();
        let mut queue: VecDeque<Queued> = VecDeque::new();
        loop {
            let cycle = Instant::now();
            self.send_queued(&uploader, &mut queue, &mut tally, stop);
            if self.ending(stop) {
                break;
            }
            match self.source.next() {
                Some(payload) => {
                    let item = Queued {
                        payload,
                        failures: 0,
                        unanswered: false,
                    };
                    queue.extend(self.attempt(&uploader, item, &mut tally, stop));
                }
                None if queue.is_empty() => break,
                None => {}
            }
            // The last batch taken: no cycle to wait for (it waited one
            // more interval before exiting, a README audit).
            if queue.is_empty() && self.source.drained() {
                break;
            }
            let mut pause = self.settings.interval;
            if !queue.is_empty() {
                pause = pause.max(self.settings.retry_wait);
            }
            if !self.wait(stop, cycle + pause) {
                break;
            }
        }
        tally.unacknowledged = queue.len() as u64;
        tally
    }

    /// The retry queue goes first in a cycle, oldest first, each batch
    /// once, as on the device; and as on the device, the cycle's retries
    /// end at the first that gets no answer (its uploader's loop stops at
    /// a connection error or a timeout), the rest kept in order for the
    /// next cycle (it went on through the queue until December 8).
    /// Once told to stop, none is sent (it sent the whole queue first,
    /// each batch waiting up to `--timeout`).
    fn send_queued(
        &self,
        uploader: &Uploader,
        queue: &mut VecDeque<Queued>,
        tally: &mut Tally,
        stop: &Receiver<()>,
    ) {
        let mut tried = VecDeque::with_capacity(queue.len());
        while !self.ending(stop) {
            let Some(item) = queue.pop_front() else {
                break;
            };
            if item.unanswered {
                tally.resends += 1;
            } else {
                tally.retries += 1;
            }
            let back = self.attempt(uploader, item, tally, stop);
            let unanswered = back.as_ref().is_some_and(|b| b.unanswered);
            tried.extend(back);
            if unanswered {
                break;
            }
        }
        tried.append(queue);
        *queue = tried;
    }

    /// Sends one batch; gives it back when it must go again. A failure
    /// that ends while the run is told to stop is not said to be sent
    /// again (it will not be).
    fn attempt(
        &self,
        uploader: &Uploader,
        item: Queued,
        tally: &mut Tally,
        stop: &Receiver<()>,
    ) -> Option<Queued> {
        let number = item.payload.number;
        match uploader.post(&item.payload) {
            Answer::Acknowledged { status, latency } => {
                tally.batches += 1;
                tally.records += item.payload.records as u64;
                tally.latencies.record(latency);
                self.acknowledged(number, status, latency, &item);
                None
            }
            // Told to stop while it was out: it is not sent again, so
            // not counted as failed (a 401 or 403 too: it made the run
            // exit 1, a review); a refusal's reason is still said.
            Answer::Refused { status, reason, .. } if self.ending(stop) => {
                if self.settings.notes {
                    crate::say!(
                        "batch {number}: HTTP {status}: {reason}; not sent again (stopping)"
                    );
                }
                Some(item)
            }
            Answer::Refused {
                status: status @ (401 | 403),
                reason,
                ..
            } => {
                self.halt(format!(
                    "token rejected by the receiver (HTTP {status}: {reason}); check --token and --scheme"
                ));
                Some(item)
            }
            Answer::NoAnswer { .. } if self.ending(stop) => Some(item),
            // The device's uploader ignores `Retry-After`: so does its
            // imitation.
            Answer::Refused { status, reason, .. } => {
                self.failed(item, format!("HTTP {status}: {reason}"), false)
            }
            Answer::NoAnswer { reason } => self.failed(item, reason, true),
        }
    }

    fn acknowledged(&self, number: u64, status: u16, latency: Duration, item: &Queued) {
        if !self.settings.notes {
            return;
        }
        if (300..400).contains(&status) && !self.redirect_warned.swap(true, Ordering::Relaxed) {
            crate::say!(
                "warning: batch {number}: HTTP {status} counts as success for the device, \
                 which then follows the redirect with a body-less GET and loses the batch"
            );
        }
        if status < 200 && !self.informational_warned.swap(true, Ordering::Relaxed) {
            crate::say!(
                "warning: batch {number}: HTTP {status} (not a final answer) counts as success \
                 for the device, which deletes the batch though nothing says it was stored"
            );
        }
        if !self.settings.interval.is_zero() {
            crate::say!(
                "batch {number}: {} records, HTTP {status} in {:.1} ms",
                item.payload.records,
                latency.as_secs_f64() * 1e3
            );
        }
    }

    fn failed(&self, mut item: Queued, why: String, unanswered: bool) -> Option<Queued> {
        item.failures += 1;
        item.unanswered = unanswered;
        let number = item.payload.number;
        if item.failures >= MAX_FAILURES {
            self.halt(format!(
                "gave up on batch {number} after {MAX_FAILURES} failed attempts (last: {why})"
            ));
        } else if self.settings.notes {
            let next = if unanswered {
                "trying the identical bytes again"
            } else {
                "retrying it"
            };
            crate::say!(
                "batch {number}: {why}; {next} at the next cycle (attempt {} of {MAX_FAILURES})",
                item.failures + 1
            );
        }
        Some(item)
    }
}

/// What a run achieved.
#[derive(Clone, Debug)]
pub struct Summary {
    pub batches: u64,
    pub records: u64,
    /// Re-sends after an error answer (4xx/5xx).
    pub retries: u64,
    /// Re-sends of the same bytes after no answer (timeout, dropped connection).
    pub resends: u64,
    pub latency: Option<Latency>,
    /// Time spent sending, from the first POST to the last answer.
    pub elapsed: Duration,
    /// Batches still in a retry queue when the run ended.
    pub unacknowledged: u64,
    /// Ended by Ctrl-C (or the caller's stop) rather than by --count.
    pub interrupted: bool,
}

impl Summary {
    fn from_tallies(tallies: Vec<Tally>, elapsed: Duration, interrupted: bool) -> Summary {
        let mut latencies = Latencies::default();
        let mut s = Summary {
            batches: 0,
            records: 0,
            retries: 0,
            resends: 0,
            latency: None,
            elapsed,
            unacknowledged: 0,
            interrupted,
        };
        for t in tallies {
            s.batches += t.batches;
            s.records += t.records;
            s.retries += t.retries;
            s.resends += t.resends;
            s.unacknowledged += t.unacknowledged;
            latencies.merge(&t.latencies);
        }
        s.latency = latencies.summary();
        s
    }

    pub fn batches_per_sec(&self) -> f64 {
        per_sec(self.batches, self.elapsed)
    }

    pub fn records_per_sec(&self) -> f64 {
        per_sec(self.records, self.elapsed)
    }
}

fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acknowledged: {} batches, {} records in {:.2} s{}",
            self.batches,
            self.records,
            self.elapsed.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "retries: {} after an error answer, resends: {} after no answer",
            self.retries, self.resends
        )?;
        if self.unacknowledged > 0 {
            writeln!(
                f,
                "not acknowledged: {} batches still queued at the end",
                self.unacknowledged
            )?;
        }
        match self.latency {
            Some(l) => writeln!(
                f,
                "ack latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                ms(l.p50),
                ms(l.p99),
                ms(l.max)
            )?,
            None => writeln!(f, "ack latency: no batch acknowledged")?,
        }
        write!(
            f,
            "throughput: {:.1} batches/s, {:.0} records/s",
            self.batches_per_sec(),
            self.records_per_sec()
        )
    }
}

/// Why a run failed: the one-line reason, the exit status, and what was
/// achieved before (None when it never started).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
    pub summary: Option<Box<Summary>>,
}

/// Runs until `--count` batches are acknowledged, with no outside stop.
pub fn run(args: &SimulateArgs) -> Result<Summary, Failure> {
    run_until(args, &crossbeam_channel::never())
}

/// Runs until `--count` batches are acknowledged, the run gives up, or
/// `stop` is disconnected (its sender dropped).
pub fn run_until(args: &SimulateArgs, stop: &Receiver<()>) -> Result<Summary, Failure> {
    let settings = Settings::from_args(args).map_err(|message| Failure {
        message,
        code: 2,
        summary: None,
    })?;
    run_settings(&settings, stop)
}

/// Runs with checked settings (tests and the demo build them directly).
pub fn run_settings(settings: &Settings, stop: &Receiver<()>) -> Result<Summary, Failure> {
    let (halt_tx, halt_rx) = crossbeam_channel::bounded(0);
    let preparing = Instant::now();
    let source = Source::new(settings);
    if settings.notes {
        note_preparation(&source, preparing.elapsed());
    }
    let shared = Shared {
        settings,
        source,
        halt_tx: Mutex::new(Some(halt_tx)),
        halt_rx,
        halted: AtomicBool::new(false),
        fatal: Mutex::new(None),
        redirect_warned: AtomicBool::new(false),
        informational_warned: AtomicBool::new(false),
    };
    let started = Instant::now();
    let tallies = std::thread::scope(|scope| {
        let uploaders: Vec<_> = (0..settings.concurrency)
            .map(|_| scope.spawn(|| shared.upload(stop)))
            .collect();
        uploaders
            .into_iter()
            .map(|u| u.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let interrupted = matches!(
        stop.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    );
    let summary = Summary::from_tallies(tallies, started.elapsed(), interrupted);
    let fatal = shared.fatal.into_inner().unwrap_or_else(|p| p.into_inner());
    match fatal {
        Some(message) => Err(Failure {
            message,
            code: 1,
            summary: Some(Box::new(summary)),
        }),
        None => Ok(summary),
    }
}

fn note_preparation(source: &Source, took: Duration) {
    match source {
        Source::Prepared { .. } if took > Duration::from_secs(1) => crate::say!(
            "prepared the batches in {:.1} s (not counted in the rates)",
            took.as_secs_f64()
        ),
        Source::Live(live) if live.lock().is_ok_and(|l| l.1.is_some()) => crate::say!(
            "note: more than {PREPARE_LIMIT_RECORDS} records: batches are made while sending, \
             so the rates include making them"
        ),
        _ => {}
    }
}

/// `autopi-rx simulate`: Ctrl-C ends the run with a summary (exit 0: it
/// is how a run without `--count` ends); the summary goes to stdout,
/// progress and errors to stderr.
pub fn main(args: SimulateArgs) -> ExitCode {
    let timeout = Duration::try_from_secs_f64(args.timeout).unwrap_or_default();
    let stop_rx = match stop_on_signals("simulate", timeout) {
        Ok(stop) => stop,
        Err(e) => {
            crate::say!("autopi-rx simulate: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run_until(&args, &stop_rx) {
        Ok(summary) => {
            print_summary(&summary);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if let Some(summary) = &failure.summary {
                print_summary(summary);
            }
            crate::say!("autopi-rx simulate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A channel disconnected by the first Ctrl-C (or SIGTERM, SIGHUP): no
/// upload starts after it, and the run ends once the answers in flight
/// came (at most `timeout`), which is said if it has not ended a second
/// later. A second one exits 130 at once, without the summary.
pub fn stop_on_signals(
    command: &'static str,
    timeout: Duration,
) -> Result<Receiver<()>, ctrlc::Error> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let stop_tx = Mutex::new(Some(stop_tx));
    ctrlc::set_handler(move || {
        let first = stop_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if first.is_some() {
            drop(first);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                let _ = writeln!(
                    std::io::stderr(),
                    "autopi-rx {command}: stopping once the answers in flight come (at most {:.1} s more, --timeout); Ctrl-C again quits now",
                    timeout.as_secs_f64()
                );
            });
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "autopi-rx {command}: quitting without waiting for the answers in flight (their batches may have been stored, or not)"
            );
            std::process::exit(130);
        }
    })?;
    Ok(stop_rx)
}

/// Whether the run was told to end (`stop` disconnected).
pub fn stopped(stop: &Receiver<()>) -> bool {
    matches!(
        stop.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    )
}

/// Prints a run's summary on stdout; a stdout that was closed is let be
/// (`println!` panicked on it).
pub fn print_summary(summary: &impl fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{summary}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// --start reads what `export --from` reads: an instant, a naive time
    /// or a date as UTC; the last start there is room for, not after.
    #[test]
    fn a_start_is_read_as_export_reads_a_time() {
        let t = |s: &str| parse_start(s).map(|t| t.to_string());
        assert_eq!(t("2100-01-01").as_deref(), Ok("2100-01-01T00:00:00Z"));
        assert_eq!(
            t("2100-01-01T08:00:00").as_deref(),
            Ok("2100-01-01T08:00:00Z")
        );
        assert_eq!(
            t("2100-01-01T08:00:00+02:00").as_deref(),
            Ok("2100-01-01T06:00:00Z")
        );
        assert!(t("soon").unwrap_err().contains("is not a time"));
        assert!(t("9990-01-01").unwrap_err().contains("no room"));
    }

    #[test]
    fn batches_made_on_demand_stop_at_the_count() {
        let args = SimulateArgs {
            url: "http://127.0.0.1:9/".into(),
            token: "t".into(),
            scheme: Scheme::Token,
            gzip: None,
            unit_id: None,
            batch: 3,
            interval: 0.0,
            count: Some(2),
            concurrency: 1,
            seed: 1,
            timestamps: Stamps::Naive,
            start: None,
            timeout: 1.0,
            retry_wait: 0.0,
            ca: None,
        };
        let settings = Settings::from_args(&args).unwrap();
        let live = Source::Live(Box::new(Mutex::new((Batches::new(&settings), Some(2)))));
        let numbers: Vec<_> = std::iter::from_fn(|| live.next())
            .map(|p| p.number)
            .collect();
        assert_eq!(numbers, [1, 2]);
        let Source::Prepared { payloads, .. } = Source::new(&settings) else {
            panic!("a small run is prepared beforehand");
        };
        assert_eq!(
            payloads.iter().map(|p| p.records).collect::<Vec<_>>(),
            [3, 3]
        );
    }

    #[test]
    fn unit_ids_look_like_the_devices() {
        let id = unit_id_for(1);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(id, unit_id_for(1));
        assert_ne!(id, unit_id_for(2));
    }
}

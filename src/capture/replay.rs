//! `autopi-rx replay`: re-POSTs a capture's batches, in order, to another
//! receiver the way the device does, with the device's uploader (`upload`): each
//! batch with the `unit-id` it came with and its records byte for byte, a
//! refused batch (4xx/5xx) retried, an unanswered one re-sent identically.
//! Unlike the device, a failed batch is retried before the next is sent,
//! so the other receiver gets the batches in the capture's order.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use jiff::Timestamp;

use super::load::{self, CaptureLine};
use crate::simulate::stopped;
use crate::upload::{self, Answer, MAX_FAILURES, Payload, Target, Uploader, encode_json};

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// The capture's own pace, sped up this many times.
    Speed(f64),
    /// Each batch as soon as the one before was acknowledged.
    AsFastAsPossible,
}

/// The longest wait a `Retry-After` gets between two attempts.
const RETRY_AFTER_MOST: Duration = Duration::from_secs(300);
/// The longest wait for a batch's time at `--speed` (a century: longer
/// is the same to a person, and an `Instant` cannot hold any time).
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A checked replay.
pub struct Settings {
    pub target: Arc<Target>,
    pub pacing: Pacing,
    pub gzip: Option<u32>,
    /// Send the batches captured as duplicates too, as they were received.
    pub include_duplicates: bool,
    /// Wait before sending a failed batch again (at least: a refusal's
    /// Retry-After can ask for longer).
    pub retry_wait: Duration,
    /// One line on stderr per failure and per long wait.
    pub notes: bool,
}

/// What the replay achieved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Batches in the capture that were to be sent.
    pub to_send: u64,
    pub acknowledged: u64,
    /// Of `to_send`, those never sent: after a failure, or from a stop
    /// on (one stopped between its attempts is neither this nor acknowledged).
    pub not_sent: u64,
    pub records: u64,
    pub skipped_duplicates: u64,
    /// Duplicates sent and acknowledged (`--include-duplicates`), also
    /// counted in `acknowledged`.
    pub sent_duplicates: u64,
    /// Unacknowledged lines: batches the device was not told were saved.
    pub skipped_undelivered: u64,
    pub retries: u64,
    pub resends: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acknowledged: {} of {} batches, {} records in {:.2} s{}{}",
            self.acknowledged,
            self.to_send,
            self.records,
            self.elapsed.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            match self.not_sent {
                0 => String::new(),
                n => format!("; {n} not sent (stopped before them)"),
            }
        )?;
        writeln!(
            f,
            "skipped: {} duplicates{}, {} never delivered (unacknowledged)",
            self.skipped_duplicates,
            match self.sent_duplicates {
                0 => String::new(),
                n => format!(" ({n} sent: --include-duplicates)"),
            },
            self.skipped_undelivered
        )?;
        write!(
            f,
            "retries: {} after an error answer, resends: {} after no answer",
            self.retries, self.resends
        )
    }
}

/// Why a replay stopped early.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
    pub summary: Option<Box<Summary>>,
}

/// Replays `path` until its end, a fatal answer, or `stop` disconnecting.
pub fn run(path: &Path, settings: &Settings, stop: &Receiver<()>) -> Result<Summary, Failure> {
    if let Err(why) = inflates_to_its_end(path) {
        return Err(Failure {
            message: format!("cannot read {}: {why}", crate::text::path(&path)),
            code: 1,
            summary: None,
        });
    }
    let uploader = Uploader::new(settings.target.clone());
    let mut summary = Summary::default();
    let mut fatal: Option<String> = None;
    let started = Instant::now();
    let mut first: Option<(Timestamp, Instant)> = None;
    // Batches delivered earlier in the file: one found again (captures
    // joined with `cat`, a device re-sending across a restart of the
    // receiver) is a duplicate too, as `view` and `export` count it (it
    // was sent again: a probe of the offline tools).
    let mut seen = crate::capture::SeenBatches::default();
    let report = load::scan(
        path,
        None,
        load::Packed::Inflated,
        |_, line| Some(line),
        |at, line: CaptureLine| {
            if !line.acked {
                summary.skipped_undelivered += 1;
                return;
            }
            let again = line.duplicate_of.is_some()
                || line
                    .batch_hash
                    .as_deref()
                    .map(|h| crate::capture::seen_batch(line.unit_id.as_deref(), h))
                    .is_some_and(|key| !seen.insert(key));
            if again && !settings.include_duplicates {
                summary.skipped_duplicates += 1;
                return;
            }
            summary.to_send += 1;
            if fatal.is_some() || summary.interrupted {
                summary.not_sent += 1;
                return;
            }
            let (t0, w0) = *first.get_or_insert((line.received, Instant::now()));
            let wait = match settings.pacing {
                Pacing::AsFastAsPossible => Duration::ZERO,
                Pacing::Speed(x) => {
                    let ahead = (line.received.as_millisecond() - t0.as_millisecond()).max(0) as f64;
                // However far apart the capture's times (a line edited by
                // hand to the year 9999), the wait is a Duration and an
                // Instant can hold (at the slowest speed it panicked).
                    let delay = Duration::try_from_secs_f64(ahead / 1000.0 / x)
                        .unwrap_or(Duration::MAX)
                        .min(LONGEST_WAIT);
                    (w0 + delay).saturating_duration_since(Instant::now())
                }
            };
            if settings.notes && wait > Duration::from_secs(10) {
                crate::say!(
                    "waiting {:.0} s for the next batch (the capture's pace; --speed or --as-fast-as-possible shorten it)",
                    wait.as_secs_f64()
                );
            }
            // Stopped while waiting for its time, or (Ctrl-C) while the
            // one before was out: not sent.
            if !sleep(stop, wait) {
                summary.interrupted = true;
                summary.not_sent += 1;
                return;
            }
            // A unit-id no HTTP client can send as a header: a hand edit's
            // line end, or a control character tiny_http let through and
            // the receiver captured as it came. Stopped at, as a batch
            // given up on is (it failed ten times as "connection failed").
            // Nor one beyond ASCII, which the http crate lets through as
            // raw bytes: no receiver of ours can have captured it (tiny_http
            // hangs up on a header that is not ASCII), so it is a hand edit.
            if let Some(unit) = line.unit_id.as_deref()
                && (!unit.is_ascii() || ureq::http::HeaderValue::from_str(unit).is_err())
            {
                fatal = Some(format!(
                    "line {} of {}: its unit_id holds a character a header cannot carry (a control character such as a line end, or one beyond ASCII), so it cannot be sent as it came",
                    at.line,
                    crate::text::path(&path)
                ));
                summary.not_sent += 1;
                return;
            }
            let counts = line
                .records_text()
                .as_deref()
                .map(load::count_records)
                .unwrap_or_default();
            let payload = encode_json(
                summary.to_send,
                counts.records,
                line.records.to_vec(),
                settings.gzip,
            );
            match deliver(&uploader, &payload, line.unit_id.as_deref(), settings, stop, &mut summary) {
                Ok(true) => {
                    summary.acknowledged += 1;
                    summary.records += counts.records as u64;
                    if again {
                        summary.sent_duplicates += 1;
                    }
                }
                Ok(false) => summary.interrupted = true,
                Err(why) => fatal = Some(why),
            }
        },
        |_, _| {},
    )
    .map_err(|e| format!("cannot read {}: {e}", crate::text::path(&path)));
    summary.elapsed = started.elapsed();
    let report = match report {
        Ok(report) => report,
        // A gzip stream damaged further on: what was sent before it is
        // said (it was not: only "cannot read").
        Err(unread) => {
            let sent = summary.to_send > 0;
            return Err(Failure {
                message: match fatal {
                    Some(first) => format!("{first}; then {unread}"),
                    None => unread,
                },
                code: 1,
                summary: sent.then(|| Box::new(summary)),
            });
        }
    };
    report.warn();
    match fatal {
        Some(message) => Err(Failure {
            message,
            code: 1,
            summary: Some(Box::new(summary)),
        }),
        None => Ok(summary),
    }
}

/// A capture gzipped to keep is inflated to its end once before anything
/// is sent: gzip's checksum is at the end of a stream, so a changed byte
/// inflates to lines that read well and carry other values (a hostile-
/// client probe flipped one bit in 200 places of a 2 000-batch capture:
/// 66 still read as batches, and `replay` had sent every one, one of them
/// with a longitude changed, before it said the file was damaged).
/// Anything else is read as it is.
fn inflates_to_its_end(path: &Path) -> Result<(), String> {
    // A pipe or a device is refused by the read that follows (opening a
    // pipe here would wait for a writer), as is what cannot be opened.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    if !crate::input::gzipped(&file) {
        return Ok(());
    }
    let mut stream = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    std::io::copy(&mut stream, &mut std::io::sink()).map(|_| ()).map_err(|e| {
        format!(
            "it is gzip-compressed, and its gzip stream does not inflate to its end (damaged or \
             cut short): {e}; nothing was sent (the whole file is checked first, as damage shows \
             only at a stream's end)"
        )
    })
}

/// Sends one batch until it is acknowledged (true), the run is stopped
/// (false) or given up on (the reason).
fn deliver(
    uploader: &Uploader,
    payload: &Payload,
    unit_id: Option<&str>,
    settings: &Settings,
    stop: &Receiver<()>,
    summary: &mut Summary,
) -> Result<bool, String> {
    let number = payload.number;
    let mut wait = settings.retry_wait;
    for attempt in 1..=MAX_FAILURES {
        if attempt > 1 && !sleep(stop, wait) {
            return Ok(false);
        }
        let (why, unanswered, asked) = match uploader.post_as(payload, unit_id) {
            // A device takes a 3xx (or a 1xx) for success; a replay fills
            // a receiver, and a redirect (not followed) stored nothing: it
            // was counted as delivered, and a URL that redirects would
            // "deliver" all.
            Answer::Acknowledged { status, .. } if !(200..300).contains(&status) => {
                let what = if (300..400).contains(&status) {
                    "a redirect (not followed)"
                } else {
                    "not a 2xx"
                };
                return Err(format!(
                    "the receiver answered batch {number} with HTTP {status}, {what}: nothing was stored there; give --url the address of a receiver"
                ));
            }
            Answer::Acknowledged { .. } => return Ok(true),
            Answer::Refused {
                status: status @ (401 | 403),
                reason,
                ..
            } => {
                return stop_at(
                    stop,
                    settings,
                    format!(
                        "token rejected by the receiver (HTTP {status}: {reason}); check --token and --scheme"
                    ),
                );
            }
            // A refusal of the batch itself (too large, not JSON, a wrong
            // path): the device retries it for ever; a replay stops at
            // once, saying why, as the forwarder parks such a batch (a 413
            // was tried ten times). (Another autopi-rx answering 413 on
            // purpose, `--respond 413`, saved it first.)
            Answer::Refused { status, reason, .. } if upload::refused_for_good(status) => {
                let hint = match status {
                    404 | 405 => "; check --url",
                    _ => "",
                };
                return stop_at(
                    stop,
                    settings,
                    format!(
                        "the receiver refused batch {number} (HTTP {status}: {reason}): a 4xx other than 408 or 429 refuses the batch itself, so it was not sent again{hint}"
                    ),
                );
            }
            Answer::Refused {
                status,
                reason,
                retry_after,
            } => (format!("HTTP {status}: {reason}"), false, retry_after),
            Answer::NoAnswer { reason } => (reason, true, None),
        };
        if stopped(stop) {
            // Told to stop while this attempt was out: it is not sent
            // again, so not counted as a retry or re-send; a refusal's
            // reason is still said.
            if settings.notes && !unanswered {
                crate::say!("batch {number}: {why}; not sent again (stopping)");
            }
            return Ok(false);
        }
        if attempt == MAX_FAILURES {
            return Err(format!(
                "gave up on batch {number} after {MAX_FAILURES} failed attempts (last: {why})"
            ));
        }
        // Unlike the device, a replay waits as long as the receiver asked
        // (`Retry-After`), up to `RETRY_AFTER_MOST`.
        wait = settings
            .retry_wait
            .max(asked.unwrap_or_default().min(RETRY_AFTER_MOST));
        let next = if unanswered {
            summary.resends += 1;
            "trying the identical bytes again".to_string()
        } else {
            summary.retries += 1;
            match asked {
                Some(asked) if wait > settings.retry_wait => format!(
                    "retrying it in {:.0} s, as the receiver asked (Retry-After: {}{})",
                    wait.as_secs_f64(),
                    // 20 digits read as 18446744073709551616 s.
                    if asked.as_secs() > 86_400 {
                        "over a day".to_string()
                    } else {
                        format!("{:.0} s", asked.as_secs_f64())
                    },
                    if asked > wait {
                        format!(", cut to {} s", RETRY_AFTER_MOST.as_secs())
                    } else {
                        String::new()
                    }
                ),
                _ => "retrying it".to_string(),
            }
        };
        if settings.notes {
            crate::say!(
                "batch {number}: {why}; {next} (attempt {} of {MAX_FAILURES})",
                attempt + 1
            );
        }
    }
    Ok(false)
}

/// The replay ends at a refusal that no attempt of the same bytes can
/// pass: with `why` as its error (exit 1), or, told to stop while the
/// attempt was out, as a stop (exit 130), `why` still said.
fn stop_at(stop: &Receiver<()>, settings: &Settings, why: String) -> Result<bool, String> {
    if !stopped(stop) {
        return Err(why);
    }
    if settings.notes {
        crate::say!("{why} (stopping)");
    }
    Ok(false)
}

/// Waits `d` unless stopped first (false).
fn sleep(stop: &Receiver<()>, d: Duration) -> bool {
    if stopped(stop) {
        return false;
    }
    if d.is_zero() {
        return true;
    }
    select! {
        recv(stop) -> _ => false,
        default(d) => true,
    }
}

/// `autopi-rx replay`: Ctrl-C ends it with a summary; the summary goes to
/// stdout, failures and notes to stderr. Ended by Ctrl-C (or SIGTERM)
/// before its end, it exits 130.
pub fn main(path: &Path, settings: Result<Settings, String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let settings = match settings {
        Ok(s) => s,
        Err(message) => {
            crate::say!("autopi-rx replay: {message}");
            return ExitCode::from(2);
        }
    };
    let stop_rx = match crate::simulate::stop_on_signals("replay", settings.target.timeout) {
        Ok(stop) => stop,
        Err(e) => {
            crate::say!("autopi-rx replay: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(path, &settings, &stop_rx) {
        Ok(summary) => {
            crate::simulate::print_summary(&summary);
            if summary.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(failure) => {
            if let Some(summary) = &failure.summary {
                crate::simulate::print_summary(summary);
            }
            crate::say!("autopi-rx replay: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

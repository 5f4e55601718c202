//! Headless output: one JSON object per request on stdout, and one per
//! change of a forward target's state.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, never, select};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use jiff::Timestamp;
use serde::Serialize;

use crate::event::RequestEvent;
use crate::time::format_received;
use crate::upstream::{ForwardStatus, Link};

#[derive(Serialize)]
struct Printed<'a> {
    id: u64,
    time: String,
    status: u16,
    method: &'a str,
    path: &'a str,
    peer: &'a str,
    unit_id: Option<&'a str>,
    records: usize,
    malformed: usize,
    naive_timestamps: usize,
    wire_bytes: u64,
    body_bytes: u64,
    encoding: Option<&'a str>,
    duplicate: bool,
    duplicate_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_of: Option<&'a str>,
    /// Whether a 2xx was sent.
    acked: bool,
    /// The answer mode that decided (null: refused for what it was).
    mode: Option<&'a str>,
    /// Seconds since this device's previous upload (null for its first).
    gap_s: Option<f64>,
    /// Arrival minus the newest `@ts` of the batch (null: not decoded, or
    /// no valid `@ts`). Hours or days: data from a retry or fail queue.
    lag_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    ms: f64,
}

/// Devices whose last upload `Gaps` remembers; past it, the half whose
/// last upload is oldest are forgotten (their next `gap_s` is null). A
/// client with the token sending a new `unit-id` with every upload grew
/// the map without end: 77 MB after 153 000 ids, 135 MB after 131 000
/// ids of 500 characters, never given back.
pub const GAP_DEVICES: usize = 16_384;

/// Each device's last upload, for `gap_s`, by a hash of its `unit-id`
/// (which a client can make as long as a request head).
#[derive(Default)]
pub struct Gaps {
    last: HashMap<Option<[u8; 32]>, Timestamp>,
}

impl Gaps {
    /// Seconds since the previous upload of `e`'s device (None for its
    /// first, or for what is not an upload); remembers this one.
    pub fn gap(&mut self, e: &RequestEvent) -> Option<f64> {
        if e.method != "POST" || !(e.captured || e.accepted()) {
            return None;
        }
        let device = e
            .unit_id
            .as_deref()
            .map(|id| *blake3::hash(id.as_bytes()).as_bytes());
        if self.last.len() >= GAP_DEVICES && !self.last.contains_key(&device) {
            self.forget_the_older_half();
        }
        let previous = self.last.insert(device, e.received)?;
        Some(seconds(e.received.duration_since(previous).as_secs_f64()))
    }

    /// Keeps the half of the devices whose last upload is newest.
    fn forget_the_older_half(&mut self) {
        let mut times: Vec<Timestamp> = self.last.values().copied().collect();
        let middle = times.len() / 2;
        let cut = *times.select_nth_unstable(middle).1;
        self.last.retain(|_, last| *last > cut);
    }

    /// Devices remembered now.
    pub fn devices(&self) -> usize {
        self.last.len()
    }
}

/// Seconds rounded to the millisecond.
fn seconds(s: f64) -> f64 {
    (s * 1e3).round() / 1e3
}

/// The JSON line for one event (without the newline), with no `gap_s`.
pub fn to_line(e: &RequestEvent) -> String {
    line(e, None)
}

/// The JSON line for one event, `gap_s` from `gaps`.
pub fn to_line_after(e: &RequestEvent, gaps: &mut Gaps) -> String {
    line(e, gaps.gap(e))
}

fn line(e: &RequestEvent, gap_s: Option<f64>) -> String {
    let line = Printed {
        id: e.id,
        time: format_received(e.received),
        status: e.status,
        method: &e.method,
        path: &e.path,
        peer: &e.peer,
        unit_id: e.unit_id.as_deref(),
        records: e.records,
        malformed: e.malformed,
        naive_timestamps: e.naive_timestamps,
        wire_bytes: e.wire_bytes,
        body_bytes: e.body_bytes,
        encoding: e.encoding,
        duplicate: e.duplicate(),
        duplicate_of: e.duplicate_of.as_deref(),
        retry_of: e.retry_of.as_deref(),
        acked: e.accepted(),
        mode: e.mode.as_deref(),
        gap_s,
        lag_s: e
            .newest_ts
            .map(|ts| seconds(e.received.duration_since(ts).as_secs_f64())),
        warning: e.warning.as_deref(),
        error: e.error.as_deref(),
        ms: (e.elapsed.as_secs_f64() * 1e6).round() / 1e3,
    };
    crate::text::escape_invisible(serde_json::to_string(&line).expect("plain struct serializes"))
}

/// A forward target's state, printed when it changes.
#[derive(Serialize)]
struct ForwardLine<'a> {
    time: String,
    forward: &'a str,
    state: &'static str,
    pending: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    down_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    forwarded: u64,
    parked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_parked: Option<&'a str>,
}

/// The JSON line for a forward target's state at `now` (no newline).
pub fn forward_line(s: &ForwardStatus, now: Timestamp) -> String {
    let (down_since, error) = match &s.link {
        Link::Down { since, error } => (Some(format_received(*since)), Some(error.as_str())),
        _ => (None, None),
    };
    let line = ForwardLine {
        time: format_received(now),
        forward: &s.target,
        state: s.kind(),
        pending: s.pending,
        lag_s: s.lag_seconds(now),
        down_since,
        error,
        forwarded: s.forwarded,
        parked: s.parked,
        last_parked: s.last_parked.as_deref(),
    };
    crate::text::escape_invisible(serde_json::to_string(&line).expect("plain struct serializes"))
}

/// Lines listed at once for requests that matched no token and saved
/// nothing, before `UNLISTED_PER_SECOND` rations them.
pub const UNLISTED_BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();

/// Lines listed a second for such requests, past the burst.
pub const UNLISTED_PER_SECOND: NonZeroU32 = NonZeroU32::new(10).unwrap();

/// Requests that matched no token and saved nothing (a refusal, a status
/// page) are listed as the quota allows; the rest are counted by status
/// and said in one line, a second after the first of them at the most.
/// Each such line cost 300 to 540 bytes of stdout for a request of 19: a
/// client without the token wrote 600 MB in 20 s under `> log`, and on a
/// disk shared with the capture, filled it until devices were answered
/// 503 (a hostile-client probe, December 7). A device's uploads (its token
/// matched, or its batch was captured) are always listed. Requests that
/// came as a device's do, with a `unit-id` and a token that is not ours,
/// have a quota of their own: a flood without them hid a device's 401
/// lines (0 of 10 listed under 600 token-less requests a second: a
/// hostile-client probe, December 7). A flood that sends a `unit-id` and
/// a made-up token still shares that one.
pub struct Unlisted<C: Clock = DefaultClock> {
    quota: Limiter<C>,
    /// For requests with a `unit-id` and a token that matched none.
    devices: Limiter<C>,
    /// Requests not listed since the last count was said, by status.
    counts: BTreeMap<u16, u64>,
    /// When the first of them came.
    since: Option<Instant>,
}

type Limiter<C> = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

/// How often, at the most, the requests not listed are said.
pub const UNLISTED_SAID_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct UnlistedLine<'a> {
    time: String,
    unlisted: u64,
    statuses: &'a BTreeMap<u16, u64>,
    note: String,
}

impl Unlisted<DefaultClock> {
    pub fn new() -> Self {
        Unlisted::with_clock(DefaultClock::default())
    }
}

impl Default for Unlisted<DefaultClock> {
    fn default() -> Self {
        Unlisted::new()
    }
}

impl<C: Clock + Clone> Unlisted<C> {
    pub fn with_clock(clock: C) -> Self {
        let quota = Quota::per_second(UNLISTED_PER_SECOND).allow_burst(UNLISTED_BURST);
        Unlisted {
            quota: RateLimiter::direct_with_clock(quota, clock.clone()),
            devices: RateLimiter::direct_with_clock(quota, clock),
            counts: BTreeMap::new(),
            since: None,
        }
    }

    /// Whether `e` gets a line of its own; counted when it does not.
    pub fn listed(&mut self, e: &RequestEvent, now: Instant) -> bool {
        if e.token_matched == Some(true) || e.captured {
            return true;
        }
        let quota = match (e.token_matched, &e.unit_id) {
            (Some(false), Some(_)) => &self.devices,
            _ => &self.quota,
        };
        if quota.check().is_ok() {
            return true;
        }
        *self.counts.entry(e.status).or_default() += 1;
        self.since.get_or_insert(now);
        false
    }

    /// When the count is to be said (None: nothing counted).
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|at| at + UNLISTED_SAID_EVERY)
    }

    /// The line saying what was counted (no newline), the count then
    /// started again; None when nothing was.
    pub fn said(&mut self, now: Timestamp) -> Option<String> {
        self.since.take()?;
        let counts = std::mem::take(&mut self.counts);
        let line = UnlistedLine {
            time: format_received(now),
            unlisted: counts.values().sum(),
            statuses: &counts,
            note: format!(
                "requests that matched no token and saved nothing, past {} listed at once and \
                 {} a second: counted here, not listed",
                UNLISTED_BURST, UNLISTED_PER_SECOND
            ),
        };
        Some(serde_json::to_string(&line).expect("plain struct serializes"))
    }
}

/// Prints every event until the channel closes, and each forward state
/// change meanwhile. If stdout goes away (`| head -2` has read its lines)
/// the run is told to stop, as Ctrl-C would, through `stop`; the events
/// are still drained meanwhile, so the listener is never held up while it
/// finishes the requests in flight. Any other failure to write (a full
/// disk under `> log`) stopped the run too, without a word and with exit
/// 0; now it is said once on stderr, those lines are lost, and the run
/// goes on (the capture has every batch), trying each next line.
pub fn print(
    events: Receiver<RequestEvent>,
    forward: Receiver<ForwardStatus>,
    mut out: impl Write,
    stop: Sender<()>,
) {
    let mut broken = false;
    let mut failing = false;
    let mut forward = forward;
    let mut gaps = Gaps::default();
    let mut unlisted = Unlisted::new();
    // The timer for the count of what was not listed, made once per count.
    let (mut say_at, mut say_unlisted) = (None, never());
    loop {
        if unlisted.due() != say_at {
            say_at = unlisted.due();
            say_unlisted = match say_at {
                Some(at) => after(at.saturating_duration_since(Instant::now())),
                None => never(),
            };
        }
        let mut line = select! {
            recv(events) -> e => match e {
                Ok(e) if unlisted.listed(&e, Instant::now()) => to_line_after(&e, &mut gaps),
                Ok(_) => continue,
                // The count so far is said before the end.
                Err(_) => match unlisted.said(Timestamp::now()) {
                    Some(line) if !broken => {
                        let line = format!("{line}\n");
                        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                        return;
                    }
                    _ => return,
                },
            },
            recv(forward) -> s => match s {
                Ok(s) => forward_line(&s, Timestamp::now()),
                Err(_) => {
                    forward = never();
                    continue;
                }
            },
            recv(say_unlisted) -> _ => match unlisted.said(Timestamp::now()) {
                Some(line) => line,
                None => continue,
            },
        };
        if broken {
            continue;
        }
        line.push('\n');
        match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) if failing => {
                failing = false;
                crate::say!("autopi-rx: stdout writable again: request lines printed again");
            }
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                broken = true;
                let _ = stop.try_send(());
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    crate::say!(
                        "autopi-rx: cannot write a request line on stdout ({e}): lines are lost \
                         until it can be written again; every batch is still captured"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{accepted, answered_by_mode, at};

    #[test]
    fn a_line_says_the_mode_whether_acked_and_what_it_retries() {
        let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":900}]"#;
        let first = answered_by_mode(
            accepted(1, at("2026-11-27T08:00:01Z"), None, body),
            "500",
            500,
            None,
        );
        let line: serde_json::Value = serde_json::from_str(&to_line(&first)).unwrap();
        assert_eq!(line["mode"], "500");
        assert_eq!(line["acked"], false);
        assert!(line.get("retry_of").is_none());
        let retry = answered_by_mode(
            accepted(2, at("2026-11-27T08:01:01Z"), None, body),
            "ok",
            200,
            Some(&first),
        );
        let line: serde_json::Value = serde_json::from_str(&to_line(&retry)).unwrap();
        assert_eq!(line["acked"], true);
        assert_eq!(line["retry_of"], format_received(first.received));
        assert_eq!(line["lag_s"], 61.0, "arrival minus the newest @ts");
        let mut gaps = Gaps::default();
        let line = |e: &RequestEvent, gaps: &mut Gaps| -> serde_json::Value {
            serde_json::from_str(&to_line_after(e, gaps)).unwrap()
        };
        assert_eq!(line(&first, &mut gaps)["gap_s"], serde_json::Value::Null);
        assert_eq!(line(&retry, &mut gaps)["gap_s"], 60.0);
        let other = accepted(
            3,
            at("2026-11-27T08:01:31Z"),
            Some("7c1e9a0b4d2f48e3a5b6c7d8e9f00112"),
            body,
        );
        assert_eq!(
            line(&other, &mut gaps)["gap_s"],
            serde_json::Value::Null,
            "per device"
        );
    }

    /// Requests without a matched token that saved nothing: listed up to
    /// the burst, then as the quota refills; the rest counted by status
    /// and said once, then counted afresh. A device's are always listed.
    #[test]
    fn requests_without_the_token_are_listed_as_the_quota_allows() {
        use crate::fixtures::refused;
        let clock = governor::clock::FakeRelativeClock::default();
        let mut unlisted = Unlisted::with_clock(clock.clone());
        let start = Instant::now();
        let when = at("2026-12-07T08:00:00Z");
        // A flood without a token or a unit-id, as a probe's was.
        let mut wrong = refused(1, when, 401, "no token", "[]");
        wrong.token_matched = None;
        wrong.unit_id = None;
        let mut status = refused(2, when, 200, "", "");
        status.method = "GET".to_string();
        status.token_matched = None;
        let device = accepted(3, when, None, r#"[{"@t":"a"}]"#);
        let mut refused_device = refused(4, when, 400, "not JSON", "x");
        refused_device.token_matched = Some(true);
        let burst = UNLISTED_BURST.get() as usize;
        let listed = (0..burst)
            .filter(|_| unlisted.listed(&wrong, start))
            .count();
        assert_eq!(listed, burst);
        assert_eq!(unlisted.due(), None, "nothing counted yet");
        assert!(!unlisted.listed(&wrong, start + Duration::from_millis(5)));
        assert!(!unlisted.listed(&status, start + Duration::from_millis(9)));
        assert!(!unlisted.listed(&wrong, start + Duration::from_millis(9)));
        // The first one counted sets when the count is said.
        assert_eq!(
            unlisted.due(),
            Some(start + Duration::from_millis(5) + UNLISTED_SAID_EVERY)
        );
        // A device with a wrong token (a unit-id and a token that is not
        // ours) has a quota of its own: listed through the flood, up to
        // its own burst.
        let device_wrong = refused(5, when, 401, "wrong token", "[]");
        let listed = (0..1000)
            .filter(|_| unlisted.listed(&device_wrong, start))
            .count();
        assert_eq!(listed, burst);
        // A device's requests, captured or with its token: always listed.
        for _ in 0..1000 {
            assert!(unlisted.listed(&device, start));
            assert!(unlisted.listed(&refused_device, start));
        }
        // A second on, the quota has refilled by its rate.
        clock.advance(Duration::from_secs(1));
        let listed = (0..1000).filter(|_| unlisted.listed(&wrong, start)).count();
        assert_eq!(listed, UNLISTED_PER_SECOND.get() as usize);
        let line: serde_json::Value =
            serde_json::from_str(&unlisted.said(when).expect("a count to say")).unwrap();
        assert_eq!(line["unlisted"], 3 + 990 + (1000 - burst));
        assert_eq!(line["statuses"]["401"], 2 + 990 + (1000 - burst));
        assert_eq!(line["statuses"]["200"], 1);
        assert_eq!(line["time"], "2026-12-07T08:00:00.000Z");
        // Said once: nothing more to say until more come.
        assert_eq!(unlisted.due(), None);
        assert_eq!(unlisted.said(when), None);
    }

    /// A new `unit-id` with every upload: the devices remembered stay
    /// within `GAP_DEVICES`, the ones uploading lately keep their gaps.
    #[test]
    fn gaps_remember_a_bounded_number_of_devices() {
        let mut gaps = Gaps::default();
        let start = at("2026-11-27T08:00:00Z");
        let upload = |n: i64, id: &str| {
            let when = start + jiff::SignedDuration::from_secs(n);
            accepted(n as u64, when, Some(id), "[]")
        };
        let regular = "ee3df171ff0f6209a3dbaa00b00e1d05";
        let mut n = 0;
        for round in 0..3 * GAP_DEVICES {
            n += 1;
            gaps.gap(&upload(n, &format!("{round:0>600}")));
            if round % 1000 == 0 {
                n += 1;
                gaps.gap(&upload(n, regular));
            }
            assert!(gaps.devices() <= GAP_DEVICES, "{} devices", gaps.devices());
        }
        // The regular device uploaded 1 000 ids ago: still known.
        let gap = gaps.gap(&upload(n + 1, regular)).expect("remembered");
        assert!(gap > 0.0 && gap < 1002.0, "{gap}");
        // The first of the new ids is long forgotten.
        assert_eq!(gaps.gap(&upload(n + 2, &format!("{:0>600}", 0))), None);
    }
}

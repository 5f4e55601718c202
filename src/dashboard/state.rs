//! What the screen knows: a pure fold of request events. `State::apply`
//! never reads the clock and never does I/O, so the same events always give
//! the same state, and every history is a ring of a fixed size so memory
//! stays bounded however long the receiver runs.

use std::collections::BTreeMap;

use std::time::Duration;

use jiff::Timestamp;

use crate::dashboard::uplink::Log;
pub use crate::event::Totals;
use crate::event::{RequestEvent, device_name};
use crate::record::{Position, Record, View, for_each_record};

/// Requests kept for the Requests tab (all devices together).
pub const REQUEST_RING: usize = 1_000;
/// Event records kept per device for the Events panel.
pub const EVENT_RING: usize = 1_000;
/// Battery voltage samples kept per device (about an hour at the device's
/// usual rate of one per second).
pub const VOLTAGE_RING: usize = 4_096;
/// Positions kept per device for the map.
pub const TRACK_RING: usize = 2_048;
/// Request bodies kept for the detail view, in bytes all together. Past
/// it the oldest accepted bodies are let go first (the capture file has
/// every accepted batch), refused ones (held nowhere else) only after.
pub const BODY_BUDGET: usize = 64 * 1024 * 1024;
/// Devices tracked; records of further `unit-id`s are counted but not
/// shown, unless a device has gone quiet for `QUIET_DEVICE` (see
/// `device_mut`).
pub const MAX_DEVICES: usize = 64;
/// A device tracked that has sent nothing for this long gives its place
/// to a new one when all are taken: in a long session of devices coming
/// and going, the 65th was never shown (a hostile-client probe left 64
/// made-up ones, and the real device after them was only counted).
pub const QUIET_DEVICE: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Record types, OBD pids and trouble codes tracked per device; a device
/// inventing endless new names cannot grow memory past this.
pub const MAX_KEYS: usize = 256;
/// Longest name kept (a record type, an event's tag, an OBD pid, a
/// trouble code, a battery state); longer ones are cut, ending in `…`, so
/// a device sending 100 000-character tags holds a few hundred bytes per
/// event, not the tag. Two names alike in their first 200 characters
/// count as one.
pub const NAME_CHARS: usize = crate::text::NAME_CHARS;
/// Longest one-line value kept for the Types tab.
const SUMMARY_CHARS: usize = 160;

pub use crate::dashboard::ring::Ring;

/// A value and the time it was measured (record `@ts`, or arrival when the
/// record has none).
#[derive(Clone, Debug, PartialEq)]
pub struct Stamped<T> {
    pub ts: Timestamp,
    /// Where it sorts among the device's values (see `rank`): `ts`, or no
    /// later than its batch's arrival when the batch was stamped further
    /// ahead of that than `AHEAD`.
    pub rank: Timestamp,
    pub value: T,
    /// It came in a batch of old data (`uplink::OLD_DATA`): the newest
    /// known, but not the device's current state.
    pub old: bool,
}

/// The latest `obd.bat`, and since when its state holds.
#[derive(Clone, Debug, PartialEq)]
pub struct BatteryNow {
    pub voltage: Option<f64>,
    pub level: Option<f64>,
    pub state: String,
    pub error: bool,
    /// Where the first reading in this state sorts (see `rank`).
    pub state_since: Timestamp,
}

/// Modem counters from `ec2x.data_usage`, with the change since the first
/// sample of the session. When the modem restarts its counters from zero
/// the growth on each side of the reset is added up (so the change can be
/// larger than the counter), and the reset is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub sent: u64,
    pub recv: u64,
    pub sent_change: u64,
    pub recv_change: u64,
    /// Where the first sample sorts (see `rank`).
    pub first_ts: Timestamp,
    /// Counter resets seen this session, and the time of the latest.
    pub resets: u32,
    pub last_reset: Option<Timestamp>,
}

/// One battery voltage reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoltageSample {
    pub ts: Timestamp,
    pub volts: f64,
}

/// Below this a battery is being cranked: a healthy one rests at 12.4 to
/// 12.8 V and charges at 13.8 to 14.7 V, and a starter motor pulls it to
/// about 9.6 to 10.8 V for a second or two.
pub const CRANK_BELOW_V: f64 = 11.0;

/// What the voltage history says at a glance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoltageSummary {
    pub min: VoltageSample,
    pub max: VoltageSample,
    /// The lowest reading of the last crank (the last run of readings
    /// below `CRANK_BELOW_V`), if any is kept.
    pub last_crank: Option<VoltageSample>,
}

use crate::time::{past_ahead, rank};

/// A gap between fixes longer than this ends a drive: the map shows the
/// current drive, not every drive of the session piled up.
pub const DRIVE_GAP_SECS: i64 = 5 * 60;

/// One fix of the map's track.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackPoint {
    pub ts: Timestamp,
    pub lon: f64,
    pub lat: f64,
}

/// Latest value of one `obd.<pid>`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObdValue {
    pub value: String,
    pub unit: Option<String>,
}

/// One line of the Events panel.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub ts: Timestamp,
    /// Where it sorts (see `rank`).
    pub rank: Timestamp,
    pub tag: String,
    pub fields: String,
    pub failure: bool,
    /// Order of arrival on this device (ties between equal `ts` keep it).
    pub seq: u64,
    /// Set when the line arrived after newer ones (a retried batch): how
    /// long after its `@ts` it reached us.
    pub late: Option<Duration>,
}

impl LogLine {
    /// Where the line sorts: device time (see `rank`), then arrival.
    pub fn key(&self) -> (Timestamp, u64) {
        (self.rank, self.seq)
    }
}

/// What is known of one `@t`. Its records' times are where they sort
/// (see `rank`).
#[derive(Clone, Debug, PartialEq)]
pub struct TypeStats {
    pub count: u64,
    pub last_ts: Timestamp,
    pub last_value: String,
    /// The stamp of the record `last_value` shows.
    pub value_ts: Timestamp,
    /// The latest run of records, up to `last_ts`: where it starts and
    /// how many it holds (see `RUN_GAP`).
    run_first: Timestamp,
    run_count: u64,
}

/// A silence longer than this between a type's records ends a run of
/// them, and the rate counts over the latest run only: over the whole
/// span, a car parked overnight halved a drive's rate, and one record
/// from a clock not yet set (1970) made it read 0.0 for the rest of the
/// session. An hour, so that a type recorded every few minutes keeps its
/// rate across them.
const RUN_GAP: i64 = 60 * 60 * 1000;

/// The least silence that ends a type's run while the device records
/// other types (see `TypeStats::ended`): a minute, so that a type sampled
/// a little late is not called ended between two of its records.
const ENDED_AFTER: i64 = 60 * 1000;

impl TypeStats {
    /// The first `count` records of a type, stamped from `first` to
    /// `last`.
    fn new(first: Timestamp, count: u64, last: Timestamp) -> TypeStats {
        let mut t = TypeStats {
            count: 0,
            last_ts: last,
            last_value: String::new(),
            value_ts: last,
            run_first: first,
            run_count: 0,
        };
        t.add(first, count, last);
        t
    }

    /// Adds `count` records stamped from `first` to `last`.
    fn add(&mut self, first: Timestamp, count: u64, last: Timestamp) {
        let (from, to) = (first.as_millisecond(), last.as_millisecond());
        let latest = self.last_ts.as_millisecond();
        let run_from = self.run_first.as_millisecond();
        self.count += count;
        self.last_ts = self.last_ts.max(last);
        if to.saturating_sub(from) > RUN_GAP {
            // A silence within the batch (a clock set while it was
            // taken): a run starts again at its newest record, if that is
            // the newest of all.
            if to >= latest {
                (self.run_first, self.run_count) = (last, 1);
            }
        } else if from.saturating_sub(latest) > RUN_GAP {
            // After a silence: a new run.
            (self.run_first, self.run_count) = (first, count);
        } else if run_from.saturating_sub(to) <= RUN_GAP {
            // In the run, or just before it (a batch sent again late).
            self.run_first = self.run_first.min(first);
            self.run_count += count;
        }
        // Else older, before a silence: not in the run.
    }

    /// Records per minute over the latest run of them (see `RUN_GAP`),
    /// if it spans any time.
    pub fn per_minute(&self) -> Option<f64> {
        let span = (self.last_ts.as_millisecond() - self.run_first.as_millisecond()) as f64;
        (span > 0.0 && self.run_count > 1).then(|| (self.run_count - 1) as f64 * 60_000.0 / span)
    }

    /// Whether the type's latest run is over: the device went on
    /// recording (`newest`, its newest stamp of any type) for more than
    /// three of the run's intervals, and more than `ENDED_AFTER`, without
    /// one of these. Two records seconds apart read 30 a minute for the
    /// rest of the session otherwise (a review).
    pub fn ended(&self, newest: Timestamp) -> bool {
        let Some(per_minute) = self.per_minute() else {
            return false;
        };
        let interval = 60_000.0 / per_minute;
        let since = newest
            .as_millisecond()
            .saturating_sub(self.last_ts.as_millisecond()) as f64;
        since > (3.0 * interval).max(ENDED_AFTER as f64)
    }
}

/// Everything known about one `unit-id`.
#[derive(Clone, Debug)]
pub struct Device {
    pub unit_id: String,
    pub last_upload: Timestamp,
    pub batches: u64,
    pub records: u64,
    /// Bytes of this device's new batches as they reached us, and inflated.
    pub wire_bytes: u64,
    pub body_bytes: u64,
    /// The latest `track.pos`.
    pub position: Option<Stamped<Position>>,
    /// Recent fixes, in time order.
    pub track: Ring<TrackPoint>,
    pub battery: Option<Stamped<BatteryNow>>,
    /// Battery voltage samples, in time order.
    pub voltages: Ring<VoltageSample>,
    pub usage: Option<Stamped<Usage>>,
    pub obd: BTreeMap<String, Stamped<ObdValue>>,
    pub rpi_temp: Option<Stamped<(Option<f64>, Option<f64>)>>,
    pub acc: Option<Stamped<[Option<f64>; 3]>>,
    pub dtcs: BTreeMap<String, Stamped<String>>,
    pub events: Ring<LogLine>,
    /// Event lines ever added (the ring forgets; this does not).
    pub events_seen: u64,
    pub types: BTreeMap<String, TypeStats>,
    /// Records of types past the first `MAX_KEYS`, which are not listed.
    pub unlisted: u64,
    /// Set while a batch of old data is folded.
    folding_old: bool,
    /// Set while a batch stamped further than `AHEAD` past its arrival
    /// is folded (see `rank`).
    folding_far_ahead: bool,
}

/// The whole fold.
#[derive(Clone, Debug)]
pub struct State {
    pub totals: Totals,
    pub requests: Ring<RequestEvent>,
    /// Devices in the order they first sent a batch.
    pub devices: Vec<Device>,
    pub last_upload: Option<Timestamp>,
    /// Batches and records of devices beyond `MAX_DEVICES`, not shown.
    pub untracked_batches: u64,
    pub untracked_records: u64,
    /// Devices let go (quiet for `QUIET_DEVICE`) to make room for new ones.
    pub devices_let_go: u64,
    /// Each device's uplink, in the order they first uploaded: also
    /// devices none of whose batches was captured yet (refused for what
    /// they are, by a device whose token matched).
    pub uplinks: Vec<Log>,
    body_bytes_kept: usize,
    /// Requests in the ring whose body was let go for the budget.
    bodies_let_go: std::collections::BTreeSet<u64>,
}

impl Default for State {
    fn default() -> State {
        State {
            totals: Totals::default(),
            requests: Ring::new(REQUEST_RING),
            devices: Vec::new(),
            last_upload: None,
            untracked_batches: 0,
            untracked_records: 0,
            devices_let_go: 0,
            uplinks: Vec::new(),
            body_bytes_kept: 0,
            bodies_let_go: Default::default(),
        }
    }
}

impl State {
    /// Folds one request into the state, for a receiver that asks a
    /// token (a capture's requests: no redirected upload is captured).
    pub fn apply(&mut self, e: &RequestEvent) {
        self.apply_asking(e, true);
    }

    /// Folds one request into the state; `asks`: the receiver asks a
    /// token. Under `--no-auth` it asks none, and a redirected upload
    /// without one is a device's (it reached the totals only, its token
    /// unmatchable).
    pub fn apply_asking(&mut self, e: &RequestEvent, asks: bool) {
        self.totals.add(&Totals::of(e));
        // A batch captured but not acknowledged (an answer mode) is data
        // the device sent all the same: shown once, at its first copy.
        if e.method == "POST" && (e.accepted() || e.captured) {
            self.last_upload = Some(self.last_upload.map_or(e.received, |t| t.max(e.received)));
            if !e.duplicate() && !e.retry() {
                self.fold_batch(e);
            } else {
                // A copy's records were folded with the first, but the
                // device did upload just now.
                let unit_id = device_name(e.unit_id.as_deref());
                if let Some(d) = self.devices.iter_mut().find(|d| d.unit_id == unit_id) {
                    d.last_upload = d.last_upload.max(e.received);
                }
            }
        }
        // A redirected upload is the device's only with its token: the
        // redirect may have dropped it (python-requests does across hosts),
        // and then anyone could have sent it.
        let matched = e.token_matched == Some(true) || (!asks && e.token_matched.is_none());
        if e.method == "POST" || (e.redirected() && matched) {
            self.log_uplink(e);
        }
        self.keep_request(e);
    }

    /// Adds an upload to its device's uplink log. A device is added by a
    /// batch captured, or a refusal when its token matched (or none is
    /// asked): a stranger's wrong or missing token adds no row.
    fn log_uplink(&mut self, e: &RequestEvent) {
        let unit_id = device_name(e.unit_id.as_deref());
        if let Some(log) = self.uplinks.iter_mut().find(|l| l.unit_id == unit_id) {
            log.add(e);
            return;
        }
        // 401: no token, or not one of ours (with `--no-auth` there are none).
        let known = e.captured || (e.token_matched != Some(false) && e.status != 401);
        if !known {
            return;
        }
        if self.uplinks.len() >= MAX_DEVICES {
            // A device with a batch captured takes the row of the first
            // whose uploads were all refused, so that the devices shown
            // elsewhere are on Uplink too; else any takes the row of the
            // one quiet longest, once quiet for `QUIET_DEVICE`.
            let refused_only = || self.uplinks.iter().position(|l| !l.captured_any());
            let quiet = || {
                quietest(&self.uplinks, e.received, |l| {
                    l.last_seen.unwrap_or(e.received)
                })
            };
            let Some(at) = e.captured.then(refused_only).flatten().or_else(quiet) else {
                return;
            };
            self.uplinks.remove(at);
        }
        let mut log = Log::new(unit_id);
        log.add(e);
        self.uplinks.push(log);
    }

    /// How many devices are shown: `64+` once a device beyond
    /// `MAX_DEVICES` sent a batch (its records are counted, not shown).
    pub fn devices_shown(&self) -> String {
        self.and_more(self.devices.len())
    }

    /// `n` (of devices, of rows), with `+` once a device beyond
    /// `MAX_DEVICES` sent a batch.
    pub fn and_more(&self, n: usize) -> String {
        let more = if self.untracked_batches > 0 || self.devices_let_go > 0 {
            "+"
        } else {
            ""
        };
        format!("{n}{more}")
    }

    /// The uplink log of the device with this `unit-id`.
    pub fn uplink(&self, unit_id: &str) -> Option<&Log> {
        self.uplinks.iter().find(|l| l.unit_id == unit_id)
    }

    /// The device with this `unit-id`, if it sent anything.
    pub fn device(&self, unit_id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.unit_id == unit_id)
    }

    /// Bytes of request bodies currently held for the detail view.
    pub fn body_bytes_kept(&self) -> usize {
        self.body_bytes_kept
    }

    /// True when request `id`'s body was let go to stay within
    /// `BODY_BUDGET` (rather than never kept).
    pub fn body_let_go(&self, id: u64) -> bool {
        self.bodies_let_go.contains(&id)
    }

    /// Lets go of every kept request body (the view's saved states keep
    /// none: the capture file has them all).
    pub fn forget_bodies(&mut self) {
        for r in self.requests.iter_mut() {
            r.body = None;
        }
        self.body_bytes_kept = 0;
    }

    /// Keeps the request for the Requests tab, letting go of the oldest
    /// bodies once they take more than `BODY_BUDGET`: accepted ones first
    /// (the capture has them), then refused ones.
    fn keep_request(&mut self, e: &RequestEvent) {
        self.body_bytes_kept += e.body.as_ref().map_or(0, |b| b.len());
        if let Some(old) = self.requests.push(e.clone()) {
            self.body_bytes_kept -= old.body.as_ref().map_or(0, |b| b.len());
            self.bodies_let_go.remove(&old.id);
        }
        let newest = self.requests.len() - 1;
        for refused_too in [false, true] {
            for (i, r) in self.requests.iter_mut().enumerate() {
                if self.body_bytes_kept <= BODY_BUDGET || i == newest {
                    break;
                }
                if !refused_too && !r.accepted() {
                    continue;
                }
                if let Some(body) = r.body.take() {
                    self.body_bytes_kept -= body.len();
                    self.bodies_let_go.insert(r.id);
                }
            }
        }
    }

    /// Folds a new accepted batch into its device's values.
    fn fold_batch(&mut self, e: &RequestEvent) {
        let unit_id = device_name(e.unit_id.as_deref());
        let Some(device) = self.device_mut(unit_id, e.received) else {
            self.untracked_batches += 1;
            self.untracked_records += e.records as u64;
            return;
        };
        device.last_upload = device.last_upload.max(e.received);
        device.batches += 1;
        device.wire_bytes += e.wire_bytes;
        device.body_bytes += e.body_bytes;
        let Some(text) = e.body.as_deref().and_then(|b| std::str::from_utf8(b).ok()) else {
            return;
        };
        // Old data is folded (counted, listed, kept in the histories) but
        // every value it sets is marked as not current.
        device.folding_old = crate::dashboard::uplink::old_data(e);
        device.folding_far_ahead = e
            .newest_ts
            .is_some_and(|newest| past_ahead(newest, e.received));
        device.fold_records(text, e.received);
        device.folding_old = false;
        device.folding_far_ahead = false;
    }

    /// The device for `unit_id`, added if new and there is room.
    fn device_mut(&mut self, unit_id: &str, now: Timestamp) -> Option<&mut Device> {
        let index = match self.devices.iter().position(|d| d.unit_id == unit_id) {
            Some(i) => i,
            None => {
                if self.devices.len() >= MAX_DEVICES {
                    // Quiet by its uploads of any kind, as the Uplink rows
                    // go: one refused every minute is not quiet (a review:
                    // it was let go here while its row stayed, and the new
                    // device got no row). Its batches alone first: when
                    // none has been quiet that long, none is (a flood of
                    // new unit-ids looked up every row for every device).
                    quietest(&self.devices, now, |d| d.last_upload)?;
                    let uplinks = &self.uplinks;
                    let last = |d: &Device| {
                        let seen = uplinks
                            .iter()
                            .find(|l| l.unit_id == d.unit_id)
                            .and_then(|l| l.last_seen);
                        seen.map_or(d.last_upload, |s| s.max(d.last_upload))
                    };
                    let at = quietest(&self.devices, now, last)?;
                    self.devices.remove(at);
                    self.devices_let_go += 1;
                }
                self.devices.push(Device::new(unit_id, now));
                self.devices.len() - 1
            }
        };
        self.devices.get_mut(index)
    }
}

/// Of `all`, the one whose `last` is oldest, if that is `QUIET_DEVICE` or
/// more before `now`.
fn quietest<T>(all: &[T], now: Timestamp, last: impl Fn(&T) -> Timestamp) -> Option<usize> {
    let (at, one) = all.iter().enumerate().min_by_key(|(_, t)| last(t))?;
    let quiet: std::time::Duration = now.duration_since(last(one)).try_into().ok()?;
    (quiet >= QUIET_DEVICE).then_some(at)
}

impl Device {
    /// A device that has just sent its first batch.
    fn new(unit_id: &str, now: Timestamp) -> Device {
        Device {
            unit_id: unit_id.to_string(),
            last_upload: now,
            batches: 0,
            records: 0,
            wire_bytes: 0,
            body_bytes: 0,
            position: None,
            track: Ring::new(TRACK_RING),
            battery: None,
            voltages: Ring::new(VOLTAGE_RING),
            usage: None,
            obd: BTreeMap::new(),
            rpi_temp: None,
            acc: None,
            dtcs: BTreeMap::new(),
            events: Ring::new(EVENT_RING),
            events_seen: 0,
            types: BTreeMap::new(),
            unlisted: 0,
            folding_old: false,
            folding_far_ahead: false,
        }
    }

    /// Folds the records of one new batch as they are parsed; `received`
    /// stands in for a missing `@ts`. Records that feed a history
    /// (positions, voltages, modem counters, events, trouble codes) are all
    /// read; of the others only the last of each type in the batch, as the
    /// rest would be replaced at once (a batch is in time order). The last
    /// record of each type also gives the Types tab its value.
    fn fold_records(&mut self, text: &str, received: Timestamp) {
        // One entry per `@t` of this batch, in first-seen order: the type
        // table is updated once per type, not once per record. Keyed, and
        // capped at four times the type table, so that a batch of many
        // distinct `@t`s stays linear.
        struct Seen<'a> {
            count: u64,
            first: Timestamp,
            last: Timestamp,
            record: Record<'a>,
        }
        let mut index: foldhash::HashMap<std::borrow::Cow<'_, str>, usize> =
            foldhash::HashMap::default();
        let mut seen: Vec<Seen<'_>> = Vec::new();
        // The listener accepted this batch, so it parses (read as the
        // listener read it); a failure could only leave the batch partly
        // shown, never wrong.
        let text = crate::batch::readable(text);
        let passed_over = for_each_record(&text, |r| {
            let ts = r.ts.unwrap_or(received);
            let at = rank(ts, received, self.folding_far_ahead);
            self.records += 1;
            if feeds_history(&r) {
                let view = r.make_view();
                self.fold_record(&r, &view, (ts, at), received);
            }
            // Keyed by the name as kept, so that names the cut makes one
            // are one entry (past the cap too).
            let kept = match &r.kind_name {
                std::borrow::Cow::Borrowed(raw) => name(raw),
                std::borrow::Cow::Owned(raw) => std::borrow::Cow::Owned(name(raw).into_owned()),
            };
            if let Some(&i) = index.get(&kept) {
                let s = &mut seen[i];
                s.count += 1;
                s.first = s.first.min(at);
                // The latest of the batch, the last of equals: a batch
                // is in time order, but one out of it is not the latest
                // for being last (its value was left blank).
                if at >= s.last {
                    s.last = at;
                    s.record = r;
                }
            } else if seen.len() < 4 * MAX_KEYS {
                index.insert(kept, seen.len());
                seen.push(Seen {
                    count: 1,
                    first: at,
                    last: at,
                    record: r,
                });
            } else if let Some(t) = self.types.get_mut(kept.as_ref()) {
                t.add(at, 1, at);
            } else {
                // Past the cap, a type neither listed nor of this batch's
                // first ones: those, merged below, fill the table (they
                // came first), so it is one of the unlisted. They were
                // counted nowhere until December 7 (a probe: 2 000 types
                // in one batch read "768 in types past 256 unlisted").
                self.unlisted += 1;
            }
        })
        .unwrap_or(0);
        // Items that are not objects (only in a capture edited by hand:
        // the receiver refuses them) count as records, as loading a
        // capture counts them (malformed ones).
        self.records += passed_over;
        for s in &seen {
            let r = &s.record;
            let kind = name(&r.kind_name);
            self.count_type(&kind, s.first, s.count, s.last);
            let ts = r.ts.unwrap_or(received);
            let view = r.make_view();
            if !feeds_history(r) {
                // `s.last` is where `s.record` sorts (it is the latest).
                self.fold_record(r, &view, (ts, s.last), received);
            }
            if let Some(t) = self
                .types
                .get_mut(kind.as_ref())
                .filter(|t| t.last_ts == s.last)
            {
                t.last_value = summary(r, &view);
                t.value_ts = ts;
            }
        }
    }

    /// Counts `count` records of type `kind` (a name as kept, see `name`),
    /// stamped from `first` to `last`.
    fn count_type(&mut self, kind: &str, first: Timestamp, count: u64, last: Timestamp) {
        if let Some(t) = self.types.get_mut(kind) {
            t.add(first, count, last);
        } else if self.types.len() < MAX_KEYS {
            self.types
                .insert(kind.to_string(), TypeStats::new(first, count, last));
        } else {
            self.unlisted += count;
        }
    }

    /// Folds one record into the latest values and histories.
    /// `received` is when the batch reached us (for events that arrive
    /// late).
    /// `(ts, at)`: its stamp, and where it sorts (see `rank`).
    fn fold_record(
        &mut self,
        r: &Record<'_>,
        view: &View<'_>,
        (ts, at): (Timestamp, Timestamp),
        received: Timestamp,
    ) {
        let old = self.folding_old;
        match view {
            View::Position(p) => {
                // Coordinates no place has are no fix to draw (near f64's
                // limit they hung the map: see `ui::position`).
                if let Some((lat, lon)) = p.on_earth() {
                    // At its place in time: a fix stamped far ahead is
                    // drawn where it arrived (see `rank`).
                    self.track
                        .insert_ordered(TrackPoint { ts: at, lon, lat }, |p| p.ts);
                }
                set_if_newer(&mut self.position, (ts, at), p.clone(), old);
            }
            View::Battery(b) => self.fold_battery(b, ts, at),
            View::DataUsage { sent, recv } => self.fold_usage(*sent, *recv, ts, at),
            View::Event { tag } => {
                self.events_seen += 1;
                let newer_shown = self.events.last().is_some_and(|l| l.rank > at);
                let late = (newer_shown || self.folding_old).then(|| {
                    let ms = (received.as_millisecond() - ts.as_millisecond()).max(0);
                    Duration::from_millis(ms as u64)
                });
                let line = LogLine {
                    ts,
                    rank: at,
                    failure: is_failure(tag),
                    tag: name(tag).into_owned(),
                    fields: clip(r.fields_as_pairs(FIELD_CHARS), FIELD_CHARS),
                    seq: self.events_seen,
                    late,
                };
                self.events.insert_ordered(line, LogLine::key);
            }
            View::Obd { pid, value, unit } => {
                let pid = name(pid);
                let room = self.obd.len() < MAX_KEYS || self.obd.contains_key(pid.as_ref());
                if room && newer(self.obd.get(pid.as_ref()), at) {
                    let value = ObdValue {
                        value: clip(
                            value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            FIELD_CHARS,
                        ),
                        unit: unit.as_ref().map(|u| clip(u.to_string(), FIELD_CHARS)),
                    };
                    let stamped = Stamped {
                        ts,
                        rank: at,
                        value,
                        old,
                    };
                    self.obd.insert(pid.into_owned(), stamped);
                }
            }
            View::Dtc { code, text } => {
                let code = name(code.as_deref().unwrap_or("?")).into_owned();
                let text = clip(text.as_deref().unwrap_or("").to_string(), FIELD_CHARS);
                let room = self.dtcs.len() < MAX_KEYS || self.dtcs.contains_key(&code);
                if room && newer(self.dtcs.get(&code), at) {
                    self.dtcs.insert(
                        code,
                        Stamped {
                            ts,
                            rank: at,
                            value: text,
                            old,
                        },
                    );
                }
            }
            View::Accelerometer { x, y, z } => {
                set_if_newer(&mut self.acc, (ts, at), [*x, *y, *z], old);
            }
            View::RpiTemp { cpu, gpu } => {
                set_if_newer(&mut self.rpi_temp, (ts, at), (*cpu, *gpu), old);
            }
            View::Other => {}
        }
    }

    /// Adds a voltage sample and updates the battery state and its start.
    /// `at` is where it sorts (see `rank`); the chart draws it there.
    fn fold_battery(&mut self, b: &crate::record::Battery<'_>, ts: Timestamp, at: Timestamp) {
        if let Some(v) = b.voltage {
            self.voltages
                .insert_ordered(VoltageSample { ts: at, volts: v }, |s| s.ts);
        }
        if !newer(self.battery.as_ref(), at) {
            return;
        }
        let state = name(b.state.as_deref().unwrap_or("")).into_owned();
        // Where the state began sorts as the readings do: a first
        // reading stamped 2038 held the state 0 s for as long as it held.
        let state_since = match &self.battery {
            Some(old) if old.value.state == state => old.value.state_since,
            _ => at,
        };
        let value = BatteryNow {
            voltage: b.voltage,
            level: b.level,
            error: b.is_error_state(),
            state,
            state_since,
        };
        let old = self.folding_old;
        self.battery = Some(Stamped {
            ts,
            rank: at,
            value,
            old,
        });
    }

    /// Updates the modem counters and their growth this session.
    /// `at` is where it sorts (see `rank`): the growth per second counts
    /// from there.
    fn fold_usage(&mut self, sent: Option<u64>, recv: Option<u64>, ts: Timestamp, at: Timestamp) {
        let (Some(sent), Some(recv)) = (sent, recv) else {
            return;
        };
        let value = match &self.usage {
            None => Usage {
                sent,
                recv,
                sent_change: 0,
                recv_change: 0,
                first_ts: at,
                resets: 0,
                last_reset: None,
            },
            Some(old) if at >= old.rank => {
                let o = &old.value;
                let reset = sent < o.sent || recv < o.recv;
                Usage {
                    sent,
                    recv,
                    sent_change: o.sent_change.saturating_add(counter_step(o.sent, sent)),
                    recv_change: o.recv_change.saturating_add(counter_step(o.recv, recv)),
                    first_ts: o.first_ts,
                    resets: o.resets + u32::from(reset),
                    last_reset: if reset { Some(ts) } else { o.last_reset },
                }
            }
            Some(_) => return,
        };
        let old = self.folding_old;
        self.usage = Some(Stamped {
            ts,
            rank: at,
            value,
            old,
        });
    }

    /// Where each drive of the kept track begins (indices into `track`):
    /// a drive is a run of fixes without a gap over `DRIVE_GAP_SECS`.
    pub fn drive_starts(&self) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut previous: Option<Timestamp> = None;
        for (i, p) in self.track.iter().enumerate() {
            let gap = previous.is_none_or(|t| p.ts.as_second() - t.as_second() > DRIVE_GAP_SECS);
            if gap {
                starts.push(i);
            }
            previous = Some(p.ts);
        }
        starts
    }

    /// Lowest and highest voltage kept, and the last crank's lowest.
    pub fn voltage_summary(&self) -> Option<VoltageSummary> {
        let first = *self.voltages.iter().next()?;
        let (mut min, mut max) = (first, first);
        let mut last_crank: Option<VoltageSample> = None;
        let mut in_crank = false;
        for &s in self.voltages.iter() {
            if s.volts < min.volts {
                min = s;
            }
            if s.volts > max.volts {
                max = s;
            }
            if s.volts < CRANK_BELOW_V {
                // A new run starts a new crank; within one, the lowest.
                if !in_crank || last_crank.is_none_or(|c| s.volts < c.volts) {
                    last_crank = Some(s);
                }
                in_crank = true;
            } else {
                in_crank = false;
            }
        }
        Some(VoltageSummary {
            min,
            max,
            last_crank,
        })
    }

    /// True when a value of the Vehicle and sensors panel came in a batch
    /// of old data.
    pub fn has_old_vehicle_values(&self) -> bool {
        self.dtcs.values().any(|s| s.old)
            || self.obd.values().any(|s| s.old)
            || self.rpi_temp.as_ref().is_some_and(|s| s.old)
            || self.acc.as_ref().is_some_and(|s| s.old)
    }

    /// Rows of the Vehicle and sensors panel: trouble codes, OBD values,
    /// `rpi.temp` and `acc.xyz`.
    pub fn vehicle_rows(&self) -> usize {
        self.dtcs.len()
            + self.obd.len()
            + usize::from(self.rpi_temp.is_some())
            + usize::from(self.acc.is_some())
    }

    /// Bytes per second the modem counters grew since the first sample.
    pub fn usage_rate(&self) -> Option<(f64, f64)> {
        let u = self.usage.as_ref()?;
        let secs = (u.rank.as_millisecond() - u.value.first_ts.as_millisecond()) as f64 / 1000.0;
        (secs > 0.0).then(|| {
            (
                u.value.sent_change as f64 / secs,
                u.value.recv_change as f64 / secs,
            )
        })
    }
}

/// Growth of a counter between two samples; a smaller value means the modem
/// restarted its count from zero.
fn counter_step(old: u64, new: u64) -> u64 {
    if new >= old { new - old } else { new }
}

/// True when a sample that sorts at `at` (see `rank`) is at least as
/// recent as `old`.
fn newer<T>(old: Option<&Stamped<T>>, at: Timestamp) -> bool {
    old.is_none_or(|o| at >= o.rank)
}

/// Replaces `slot` unless it holds a more recent sample (late retries
/// must not hide newer values).
/// `(ts, rank)`: its stamp, and where it sorts.
fn set_if_newer<T>(
    slot: &mut Option<Stamped<T>>,
    (ts, rank): (Timestamp, Timestamp),
    value: T,
    old: bool,
) {
    if newer(slot.as_ref(), rank) {
        *slot = Some(Stamped {
            ts,
            rank,
            value,
            old,
        });
    }
}

/// Event tags that mean something went wrong.
pub fn is_failure(tag: &str) -> bool {
    tag.ends_with("/failed") || tag.contains("critical_level") || tag.contains("error")
}

/// True for records every one of which the screen keeps (in a history or
/// as a counter step), not only the latest.
fn feeds_history(r: &Record<'_>) -> bool {
    r.tag.is_some()
        || matches!(
            r.kind_name.as_ref(),
            "track.pos" | "obd.bat" | "ec2x.data_usage" | "obd.dtc"
        )
        || r.kind_name.starts_with("event.")
}

/// A record's value in one line, for the Types tab.
pub fn summary(r: &Record<'_>, view: &View<'_>) -> String {
    let mut s = match view {
        View::Position(p) => format!(
            "{} {} alt {} m {} km/h {}° {} sat",
            opt(p.lat),
            opt(p.lon),
            opt(p.alt),
            opt(p.sog_kmh),
            opt(p.cog),
            p.nsat.map_or("-".into(), |n| n.to_string())
        ),
        View::Battery(b) => format!(
            "{} V {} % {}",
            opt(b.voltage),
            opt(b.level),
            b.state.as_deref().unwrap_or("-")
        ),
        View::Event { tag } => format!("@{tag} {}", r.fields_as_pairs(SUMMARY_CHARS)),
        View::RpiTemp { cpu, gpu } => format!("cpu {} gpu {}", opt(*cpu), opt(*gpu)),
        View::Accelerometer { x, y, z } => format!("x {} y {} z {} g", opt(*x), opt(*y), opt(*z)),
        View::Dtc { code, text } => format!(
            "{} {}",
            code.as_deref().unwrap_or("-"),
            text.as_deref().unwrap_or("")
        ),
        View::Obd { value, unit, .. } => format!(
            "{} {}",
            value.as_ref().map_or("-".into(), |v| v.to_string()),
            unit.as_deref().unwrap_or("")
        ),
        _ => r.fields_as_pairs(SUMMARY_CHARS),
    };
    s = clip(s, SUMMARY_CHARS);
    s.trim_end().to_string()
}

/// Longest text kept from a device value for the screen (event fields,
/// OBD strings, trouble-code text): the rings bound lines, this bounds
/// their bytes. The capture keeps everything.
const FIELD_CHARS: usize = 400;

/// A name as kept: its invisible characters written as `\u{..}`
/// (`text::shown`), so that `rpm` and `rpm` with a zero-width space are
/// two rows that look different, not two alike (the screen drops what
/// it cannot show); cut to `NAME_CHARS` characters, ending in `…` when cut.
fn name(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::shown_cut(s, NAME_CHARS)
}

/// `s` on one line (a tab or line end is a space: the screen drops them,
/// and `tab\there` read `tabhere`), cut to `max` characters, marked with
/// `…` when cut. A cut one is a new string: `truncate` keeps the
/// capacity, and a 100 000-character tag cut to 200 held its 100 000
/// bytes for as long as the line was kept.
fn clip(s: String, max: usize) -> String {
    const BREAKS: [char; 3] = ['\t', '\n', '\r'];
    let s = if s.contains(BREAKS) {
        s.replace(BREAKS, " ")
    } else {
        s
    };
    match crate::text::cut(&s, max) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

/// An optional number, `-` when missing.
fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| crate::record::Shown(v).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{accepted, at, duplicate, guide_examples, refused, sample};

    #[test]
    fn a_batch_refused_on_purpose_is_shown_once_and_its_retry_not_again() {
        let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.5,"level":80,"state":"discharging"}]"#;
        let id = "ee3df171ff0f6209a3dbaa00b00e1d05";
        let unit = Some(id);
        let first = crate::fixtures::answered_by_mode(
            accepted(1, at("2026-11-27T08:00:01Z"), unit, body),
            "500",
            500,
            None,
        );
        let retry = crate::fixtures::answered_by_mode(
            accepted(2, at("2026-11-27T08:01:01Z"), unit, body),
            "ok",
            200,
            Some(&first),
        );
        let mut s = State::default();
        s.apply(&first);
        s.apply(&retry);
        let d = s
            .device(id)
            .expect("the device is known from its refused batch");
        assert_eq!(d.records, 1, "the retry is not folded again");
        assert_eq!(d.last_upload, at("2026-11-27T08:01:01Z"));
        assert_eq!(
            (s.totals.records, s.totals.retries, s.totals.rejected),
            (1, 1, 1)
        );
    }

    const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";

    #[test]
    fn old_data_is_marked_and_never_stands_for_the_current_state() {
        let bat = |ts: &str, v: f64| {
            format!(
                r#"[{{"@t":"obd.bat","@ts":"{ts}","voltage":{v},"state":"charging"}},{{"@t":"event.system.power","@ts":"{ts}","@tag":"system/power/on"}}]"#
            )
        };
        let mut s = State::default();
        // After a reboot: yesterday's fail queue comes first.
        s.apply(&accepted(
            1,
            at("2026-11-27T08:00:05Z"),
            Some(UNIT),
            &bat("2026-11-26T17:00:00Z", 11.9),
        ));
        let d = s.device(UNIT).unwrap();
        let reading = d.battery.as_ref().unwrap();
        assert!(reading.old, "the only reading is old data, and says so");
        assert_eq!(
            d.events.last().unwrap().late.map(|l| l.as_secs()),
            Some(15 * 3600 + 5)
        );
        // Then the live batch: current, whatever came before.
        s.apply(&accepted(
            2,
            at("2026-11-27T08:00:10Z"),
            Some(UNIT),
            &bat("2026-11-27T08:00:08Z", 12.6),
        ));
        // And an older batch still, after it.
        s.apply(&accepted(
            3,
            at("2026-11-27T08:00:15Z"),
            Some(UNIT),
            &bat("2026-11-25T09:00:00Z", 12.1),
        ));
        let d = s.device(UNIT).unwrap();
        let reading = d.battery.as_ref().unwrap();
        assert_eq!((reading.value.voltage, reading.old), (Some(12.6), false));
        assert_eq!(d.records, 6, "old records are counted all the same");
        assert_eq!(s.uplink(UNIT).unwrap().old_batches, 2);
    }

    #[test]
    fn uplink_rows_come_from_devices_not_from_strangers() {
        let mut s = State::default();
        // A wrong token with some unit-id: no row.
        s.apply(&refused(
            1,
            at("2026-11-27T08:00:00Z"),
            401,
            "bad token",
            "",
        ));
        assert!(s.uplinks.is_empty());
        // No authorization header at all (nothing to match): no row either.
        let mut no_header = refused(1, at("2026-11-27T08:00:00Z"), 401, "no token", "");
        no_header.token_matched = None;
        no_header.unit_id = Some("anyone".into());
        s.apply(&no_header);
        assert!(s.uplinks.is_empty(), "a client without a token made a row");
        // A batch too large from a device whose token matched: a row,
        // before any of its batches was captured.
        let mut too_big = refused(2, at("2026-11-27T08:00:01Z"), 413, "too large", "");
        too_big.token_matched = Some(true);
        s.apply(&too_big);
        assert_eq!(s.uplink(UNIT).unwrap().refusals_text(), "413×1");
        assert!(s.devices.is_empty(), "no device panels without data");
        // Once it has a row, its wrong tokens count there too.
        s.apply(&refused(
            3,
            at("2026-11-27T08:00:02Z"),
            401,
            "bad token",
            "",
        ));
        assert_eq!(s.uplink(UNIT).unwrap().refusals_text(), "401×1 413×1");
        // GETs are not uploads.
        let mut get = accepted(4, at("2026-11-27T08:00:03Z"), None, "[]");
        get.method = "GET".into();
        s.apply(&get);
        assert_eq!(s.uplinks.len(), 1);
        let rejected = s.totals.rejected;
        // But for one carrying a unit-id, refused (a redirect in front
        // turned a device's POST into a GET): a refused upload, the
        // device's when its token came with it.
        let mut redirected = refused(5, at("2026-11-27T08:00:04Z"), 400, "a GET", "");
        redirected.method = "GET".into();
        redirected.unit_id = Some("redirected".into());
        redirected.token_matched = None;
        s.apply(&redirected);
        assert_eq!(s.totals.rejected, rejected + 1);
        assert_eq!(s.uplinks.len(), 1, "no token: anyone could have sent it");
        redirected.token_matched = Some(true);
        redirected.id = 6;
        s.apply(&redirected);
        assert_eq!(s.totals.rejected, rejected + 2);
        assert_eq!(s.uplink("redirected").unwrap().refusals_text(), "400×1");
        // With no token asked (`--no-auth`), one without a token is the
        // device's too.
        let mut open = State::default();
        redirected.token_matched = None;
        open.apply_asking(&redirected, false);
        assert_eq!(open.uplink("redirected").unwrap().refusals_text(), "400×1");
        // And so in the dashboard, which starts from the capture's state
        // (a flag kept in the state lost whether tokens are asked there: a
        // review), but not where they are.
        for (tokens, counted) in [(0, true), (1, false)] {
            let setup = crate::dashboard::app::Setup {
                tokens,
                ..Default::default()
            };
            let mut app = crate::dashboard::app::App::new(
                setup,
                crate::dashboard::theme::Theme::mono(),
                at("2026-11-27T08:00:05Z"),
            );
            app.replace_state(State::default());
            app.apply(&redirected);
            assert_eq!(
                app.live().uplink("redirected").is_some(),
                counted,
                "{tokens}"
            );
        }
    }

    #[test]
    fn a_device_with_a_batch_takes_the_row_of_one_only_refused() {
        let mut s = State::default();
        // Every row taken by devices whose token matched and whose
        // batches were all refused (not JSON, say).
        for i in 0..MAX_DEVICES {
            let mut bad = refused(i as u64, at("2026-11-27T08:00:00Z"), 400, "not JSON", "");
            bad.token_matched = Some(true);
            bad.unit_id = Some(format!("refused-{i}"));
            s.apply(&bad);
        }
        assert_eq!(s.uplinks.len(), MAX_DEVICES);
        // One more refused only: no room.
        let mut late = refused(99, at("2026-11-27T08:00:01Z"), 400, "not JSON", "");
        late.token_matched = Some(true);
        late.unit_id = Some("refused-late".into());
        s.apply(&late);
        assert!(s.uplink("refused-late").is_none());
        // A device with a batch captured: shown, in the first one's place.
        s.apply(&accepted(100, at("2026-11-27T08:00:02Z"), Some(UNIT), "[]"));
        assert_eq!(s.uplinks.len(), MAX_DEVICES);
        assert!(s.uplink(UNIT).is_some(), "the device with data has no row");
        assert!(s.uplink("refused-0").is_none() && s.uplink("refused-1").is_some());
        assert_eq!(s.devices_shown(), "1");
    }

    /// All places taken: a new device takes the place of the one quiet
    /// longest once that one has been quiet ten minutes (the 65th device
    /// was only ever counted).
    #[test]
    fn a_new_device_takes_the_place_of_one_quiet_for_ten_minutes() {
        let mut s = State::default();
        for i in 0..MAX_DEVICES {
            let unit = format!("made-up-{i}");
            s.apply(&accepted(
                i as u64,
                at("2026-11-27T08:00:00Z"),
                Some(&unit),
                "[]",
            ));
        }
        s.apply(&accepted(
            100,
            at("2026-11-27T08:09:00Z"),
            Some("made-up-0"),
            "[]",
        ));
        // Refused, but uploading: not quiet either.
        let mut too_large = refused(98, at("2026-11-27T08:09:10Z"), 413, "too large", "");
        too_large.token_matched = Some(true);
        too_large.unit_id = Some("made-up-1".into());
        s.apply(&too_large);
        // The others quiet for 9 min 30 s: no room yet.
        s.apply(&accepted(101, at("2026-11-27T08:09:30Z"), Some(UNIT), "[]"));
        assert!(s.device(UNIT).is_none() && s.uplink(UNIT).is_none());
        assert_eq!(s.devices_shown(), "64+");
        // Ten minutes: in the place of the first of them (not of those
        // that uploaded since), on the Live tab and the Uplink tab alike.
        s.apply(&accepted(102, at("2026-11-27T08:10:00Z"), Some(UNIT), "[]"));
        assert!(s.device(UNIT).is_some() && s.uplink(UNIT).is_some());
        assert!(s.device("made-up-2").is_none() && s.uplink("made-up-2").is_none());
        assert!(s.device("made-up-0").is_some() && s.device("made-up-1").is_some());
        assert!(s.uplink("made-up-1").is_some() && s.device("made-up-3").is_some());
        assert_eq!(
            (s.devices.len(), s.uplinks.len()),
            (MAX_DEVICES, MAX_DEVICES)
        );
        assert_eq!((s.devices_let_go, s.devices_shown().as_str()), (1, "64+"));
    }

    fn guide_state() -> State {
        let mut s = State::default();
        for (i, body) in guide_examples().iter().enumerate() {
            s.apply(&accepted(
                i as u64 + 1,
                at("2026-11-27T09:00:00Z"),
                Some(UNIT),
                body,
            ));
        }
        s
    }

    #[test]
    fn guide_examples_give_latest_values() {
        let s = guide_state();
        let d = s.device(UNIT).expect("device");
        let fix = &d.position.as_ref().unwrap().value;
        assert_eq!(
            (fix.lat, fix.lon, fix.nsat),
            (Some(57.02241), Some(9.89919), Some(9))
        );
        let bat = &d.battery.as_ref().unwrap().value;
        assert_eq!(
            (bat.voltage, bat.state.as_str(), bat.error),
            (Some(15.4), "overcharging", true)
        );
        let usage = &d.usage.as_ref().unwrap().value;
        assert_eq!((usage.sent, usage.recv), (2695, 4742));
        let tags: Vec<_> = d.events.iter().map(|l| l.tag.as_str()).collect();
        // In the device's order (the guide's power/on is the older one).
        assert_eq!(tags, ["system/power/on", "system/minion/online"]);
        assert_eq!(
            d.events.get(0).unwrap().fields,
            "trigger=stn awaken=sleeping"
        );
        assert_eq!(d.types.len(), 5);
        assert_eq!(s.totals.records, 5);
        assert_eq!(s.totals.batches, 5);
    }

    #[test]
    fn ages_come_from_record_timestamps() {
        let s = guide_state();
        let d = s.device(UNIT).unwrap();
        assert_eq!(
            d.position.as_ref().unwrap().ts,
            at("2020-09-03T12:38:24.374314Z")
        );
        assert_eq!(
            d.battery.as_ref().unwrap().ts,
            at("2021-02-24T09:03:09.310362Z")
        );
        assert_eq!(d.last_upload, at("2026-11-27T09:00:00Z"));
        assert_eq!(s.last_upload, Some(at("2026-11-27T09:00:00Z")));
    }

    #[test]
    fn a_lone_surrogate_shows_as_the_replacement_character() {
        let mut s = State::default();
        let body = r#"[{"@t":"obd.\udc80x","@ts":"2026-12-05T08:00:00Z","k\ud800":1}]"#;
        s.apply(&accepted(1, at("2026-12-05T08:00:01Z"), Some(UNIT), body));
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.records, 1);
        assert_eq!(d.types["obd.\u{fffd}x"].count, 1);
    }

    #[test]
    fn tabs_and_line_ends_in_values_are_spaces() {
        let mut s = State::default();
        let body = r#"[{"@t":"event.x","@ts":"2026-12-05T08:00:00Z","@tag":"a/b","note":"tab\there\r\nnext"},{"@t":"obd.vin","@ts":"2026-12-05T08:00:01Z","value":"WVW\tZZZ"}]"#;
        s.apply(&accepted(1, at("2026-12-05T08:00:02Z"), Some(UNIT), body));
        let d = s.device(UNIT).unwrap();
        assert_eq!(
            d.events.iter().last().unwrap().fields,
            "note=tab here  next"
        );
        assert_eq!(d.obd["vin"].value.value, "WVW ZZZ");
        assert_eq!(d.types["event.x"].last_value, "@a/b note=tab here  next");
    }

    #[test]
    fn long_names_are_kept_cut() {
        let long = "x".repeat(100_000);
        let body = format!(
            r#"[{{"@t":"event.{long}","@ts":"2026-12-05T08:00:00Z","@tag":"a/{long}"}},{{"@t":"obd.{long}","@ts":"2026-12-05T08:00:01Z","value":1}},{{"@t":"obd.bat","@ts":"2026-12-05T08:00:02Z","voltage":12.5,"state":"{long}"}},{{"@t":"obd.{long}","@ts":"2026-12-05T08:00:03Z","value":2}}]"#
        );
        let mut s = State::default();
        s.apply(&accepted(1, at("2026-12-05T08:00:04Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        let fits = |n: &str| n.chars().count() <= NAME_CHARS && n.ends_with('…');
        assert!(d.types.keys().all(|k| k.len() < 300), "type names cut");
        assert!(d.types.keys().filter(|k| k.len() > 100).all(|k| fits(k)));
        let obd = d
            .types
            .iter()
            .find(|(k, _)| k.starts_with("obd.x"))
            .unwrap();
        assert_eq!(obd.1.count, 2, "one type for the two records");
        assert!(d.obd.keys().all(|k| fits(k)), "{:?}", d.obd.len());
        assert_eq!(d.obd.values().next().unwrap().value.value, "2");
        assert!(d.events.iter().all(|e| fits(&e.tag)));
        assert!(fits(&d.battery.as_ref().unwrap().value.state));
        assert!(
            d.events.iter().all(|e| e.tag.capacity() < 1_000),
            "what was cut is not held"
        );

        // Names alike but for an invisible character are told apart.
        let twins = r#"[{"@t":"obd.rpm","@ts":"2026-12-05T08:00:05Z","value":850},{"@t":"obd.rpm\u200b","@ts":"2026-12-05T08:00:05Z","value":6500}]"#;
        s.apply(&accepted(2, at("2026-12-05T08:00:06Z"), Some(UNIT), twins));
        let d = s.device(UNIT).unwrap();
        assert!(d.types.contains_key("obd.rpm"));
        assert!(
            d.types.contains_key("obd.rpm\\u{200b}"),
            "{:?}",
            d.types.keys()
        );
        assert!(d.obd.contains_key("rpm\\u{200b}"));
    }

    #[test]
    fn full_batch_folds_every_type() {
        let mut s = State::default();
        s.apply(&accepted(
            1,
            at("2026-11-27T08:04:00Z"),
            Some(UNIT),
            &sample("batch-1000-naive.json"),
        ));
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.records, 1000);
        assert_eq!(d.types["track.pos"].count, 200);
        assert_eq!(d.track.len(), 200);
        assert_eq!(d.voltages.len(), 100);
        assert_eq!(
            d.obd.keys().collect::<Vec<_>>(),
            ["coolant_temp", "rpm", "speed"]
        );
        assert_eq!(d.events.len(), 100);
        // The naive `@ts` of the last record of the batch is read as UTC.
        assert_eq!(
            d.types["track.pos"].last_ts.to_string().get(..16),
            Some("2026-11-27T08:03")
        );
        let rate = d.types["track.pos"].per_minute().unwrap();
        assert!((40.0..70.0).contains(&rate), "{rate}");
        let usage = &d.usage.as_ref().unwrap().value;
        assert!(usage.sent_change > 0 && usage.recv_change > 0);
        assert!(d.acc.is_some() && d.rpi_temp.is_some());
    }

    #[test]
    fn duplicates_are_not_counted_twice() {
        let mut s = State::default();
        let first = accepted(
            1,
            at("2026-11-27T08:04:00Z"),
            Some(UNIT),
            &sample("batch-1000-naive.json"),
        );
        s.apply(&first);
        s.apply(&duplicate(&first, 2, at("2026-11-27T08:05:10Z")));
        assert_eq!(s.totals.records, 1000);
        assert_eq!((s.totals.batches, s.totals.duplicates), (2, 1));
        let d = s.device(UNIT).unwrap();
        assert_eq!((d.records, d.batches, d.events.len()), (1000, 1, 100));
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.last_upload, Some(at("2026-11-27T08:05:10Z")));
    }

    #[test]
    fn refused_requests_are_listed_but_not_folded() {
        let mut s = State::default();
        s.apply(&refused(
            1,
            at("2026-11-27T08:00:00Z"),
            401,
            "bad token",
            "[]",
        ));
        assert_eq!(
            (s.totals.requests, s.totals.rejected, s.totals.batches),
            (1, 1, 0)
        );
        assert!(s.devices.is_empty());
        assert_eq!(s.requests.len(), 1);
    }

    /// A type the device stopped recording while it went on with others
    /// is `ended`: two events two seconds apart, then a minute and more of
    /// other records. A steady type sampled every five minutes is not
    /// ended between two samples, nor is any type while nothing newer came.
    #[test]
    fn a_type_the_device_stopped_recording_is_ended() {
        let record = |kind: &str, ts: &str| format!(r#"{{"@t":"{kind}","@ts":"{ts}","value":1}}"#);
        let mut s = State::default();
        let batch = |records: &[String]| format!("[{}]", records.join(","));
        s.apply(&accepted(
            1,
            at("2026-11-27T12:00:00Z"),
            Some(UNIT),
            &batch(&[
                record("event.burst", "2026-11-27T10:00:00Z"),
                record("event.burst", "2026-11-27T10:00:02Z"),
                record("obd.slow", "2026-11-27T10:00:00Z"),
                record("obd.slow", "2026-11-27T10:05:00Z"),
            ]),
        ));
        let ended = |s: &State, kind: &str| {
            let d = s.device(UNIT).unwrap();
            let newest = d.types.values().map(|t| t.last_ts).max().unwrap();
            d.types[kind].ended(newest)
        };
        // Nothing newer than the burst's second record but the slow type.
        assert!(ended(&s, "event.burst"), "burst, 5 minutes of others");
        assert!(!ended(&s, "obd.slow"));
        let mut s2 = State::default();
        s2.apply(&accepted(
            1,
            at("2026-11-27T12:00:00Z"),
            Some(UNIT),
            &batch(&[
                record("event.burst", "2026-11-27T10:00:00Z"),
                record("event.burst", "2026-11-27T10:00:02Z"),
                record("obd.other", "2026-11-27T10:00:50Z"),
            ]),
        ));
        assert!(!ended(&s2, "event.burst"), "within a minute");
        // Ten minutes of another type: the slow one (every 5 min) is
        // late by twice its interval, not three times.
        s.apply(&accepted(
            2,
            at("2026-11-27T12:01:00Z"),
            Some(UNIT),
            &batch(&[record("obd.fast", "2026-11-27T10:15:00Z")]),
        ));
        assert!(!ended(&s, "obd.slow"), "two intervals late");
        s.apply(&accepted(
            3,
            at("2026-11-27T12:02:00Z"),
            Some(UNIT),
            &batch(&[record("obd.fast", "2026-11-27T10:20:01Z")]),
        ));
        assert!(ended(&s, "obd.slow"), "over three intervals late");
    }

    /// The Types tab's rate counts over the latest run of a type's
    /// records: a record from a clock not yet set (1970), before or after
    /// the others or in one batch with them, a night parked, and a batch
    /// sent again from before it, leave a drive's rate as it is. Over the
    /// whole span it read 0.0 with the 1970 record, and half with the
    /// night.
    #[test]
    fn the_types_rate_counts_over_the_latest_run_of_records() {
        // `n` records a minute apart from `start`, one batch.
        let run = |start: &str, n: i64| {
            let records: Vec<String> = (0..n)
                .map(|i| {
                    let ts = at(start) + jiff::SignedDuration::from_secs(60 * i);
                    format!(r#"{{"@t":"obd.rpm","@ts":"{ts}","value":{i}}}"#)
                })
                .collect();
            format!("[{}]", records.join(","))
        };
        let rate = |batches: &[String]| {
            let mut s = State::default();
            for (i, b) in batches.iter().enumerate() {
                s.apply(&accepted(
                    i as u64 + 1,
                    at("2026-11-27T12:00:00Z"),
                    Some(UNIT),
                    b,
                ));
            }
            let t = &s.device(UNIT).unwrap().types["obd.rpm"];
            t.per_minute().map(|r| (r * 100.0).round() / 100.0)
        };
        let drive = run("2026-11-27T10:00:00Z", 11);
        let unset = run("1970-01-01T00:00:42Z", 1);
        assert_eq!(rate(std::slice::from_ref(&drive)), Some(1.0));
        assert_eq!(
            rate(&[unset.clone(), drive.clone()]),
            Some(1.0),
            "1970 first"
        );
        assert_eq!(
            rate(&[drive.clone(), unset.clone()]),
            Some(1.0),
            "1970 after"
        );
        let both = format!(
            "{},{}",
            unset.trim_end_matches(']'),
            drive.trim_start_matches('[')
        );
        let on = run("2026-11-27T10:11:00Z", 10);
        assert_eq!(rate(&[both, on]), Some(1.0), "in one batch");
        // The evening before, at one every 2 minutes, then a night parked.
        let evening = r#"[{"@t":"obd.rpm","@ts":"2026-11-26T18:00:00Z"},{"@t":"obd.rpm","@ts":"2026-11-26T18:02:00Z"}]"#;
        assert_eq!(rate(&[evening.to_string(), drive.clone()]), Some(1.0));
        // A batch from 30 minutes before the drive, sent again late: in
        // it (12 records over 40 minutes); one from the evening is not.
        let early = run("2026-11-27T09:30:00Z", 1);
        assert_eq!(rate(&[drive.clone(), early]), Some(0.28));
        assert_eq!(rate(&[drive, evening.to_string()]), Some(1.0));
    }

    #[test]
    fn late_retries_do_not_hide_newer_values() {
        let mut s = State::default();
        let new = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:10:00Z","voltage":12.5,"state":"discharging"}]"#;
        let old =
            r#"[{"@t":"obd.bat","@ts":"2026-11-27T07:00:00Z","voltage":14.2,"state":"charging"}]"#;
        s.apply(&accepted(1, at("2026-11-27T08:10:05Z"), Some(UNIT), new));
        s.apply(&accepted(2, at("2026-11-27T08:11:00Z"), Some(UNIT), old));
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.battery.as_ref().unwrap().value.voltage, Some(12.5));
        assert_eq!(d.voltages.len(), 2, "history keeps both samples");
        let volts: Vec<f64> = d.voltages.iter().map(|s| s.volts).collect();
        assert_eq!(volts, [14.2, 12.5], "in time order");
        assert_eq!(d.types["obd.bat"].last_value, "12.5 V - % discharging");
    }

    /// A clock gone wrong for one batch (stamped 2038) is shown, and then
    /// the batches after it are, though stamped earlier: a batch stamped
    /// further than `AHEAD` past its arrival sorts no later than that.
    #[test]
    fn a_batch_stamped_far_ahead_does_not_stay_the_latest() {
        let batch = |ts: &str, n: u32| {
            let state = if n == 1 { "discharging" } else { "charging" };
            format!(
                r#"[{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":57.{n},"lon":9.9}}}},
                {{"@t":"obd.bat","@ts":"{ts}","voltage":12.{n},"state":"{state}"}},
                {{"@t":"ec2x.data_usage","@ts":"{ts}","sent":{n}00,"recv":{n}000}},
                {{"@t":"obd.rpm","@ts":"{ts}","value":{n}00}},
                {{"@t":"acc.xyz","@ts":"{ts}","x":0.{n},"y":0,"z":1}},
                {{"@t":"event.x","@ts":"{ts}","@tag":"t/{n}"}}]"#
            )
        };
        let mut s = State::default();
        let check = |s: &State, n: u32, ts: &str| {
            let d = s.device(UNIT).unwrap();
            let lat = d.position.as_ref().unwrap().value.lat.unwrap();
            assert_eq!(format!("{lat}"), format!("57.{n}"), "position");
            let p = d.position.as_ref().unwrap();
            assert_eq!(p.ts, at(ts), "shown with its own stamp");
            assert_eq!(
                d.battery.as_ref().unwrap().value.voltage,
                Some(f64::from(12) + f64::from(n) / 10.0)
            );
            assert_eq!(d.usage.as_ref().unwrap().value.sent, u64::from(n) * 100);
            assert_eq!(d.obd["rpm"].value.value, format!("{n}00"));
            assert_eq!(d.acc.as_ref().unwrap().value[0], Some(f64::from(n) / 10.0));
            assert_eq!(d.events.last().unwrap().tag, format!("t/{n}"));
            assert_eq!(d.types["obd.bat"].value_ts, at(ts));
            assert!(
                d.types["obd.bat"]
                    .last_value
                    .starts_with(&format!("12.{n} V")),
                "{}",
                d.types["obd.bat"].last_value
            );
        };
        let upload = |s: &mut State, id: u64, received: &str, ts: &str, n: u32| {
            s.apply(&accepted(id, at(received), Some(UNIT), &batch(ts, n)));
            check(s, n, ts);
        };
        upload(&mut s, 1, "2026-11-27T08:00:05Z", "2026-11-27T08:00:00Z", 1);
        upload(&mut s, 2, "2026-11-27T08:01:05Z", "2038-01-19T03:14:07Z", 2);
        upload(&mut s, 3, "2026-11-27T08:02:05Z", "2026-11-27T08:02:00Z", 3);
        let d = s.device(UNIT).unwrap();
        let battery = d.battery.as_ref().unwrap();
        assert_eq!(
            battery.value.state_since,
            at("2026-11-27T08:01:05Z"),
            "charging since the 2038 reading, where it sorts"
        );
        // A clock running fast by less than `AHEAD` is taken at its word: a
        // batch stamped before it, arriving after it, is older.
        upload(&mut s, 4, "2026-11-27T08:03:05Z", "2026-11-27T08:08:00Z", 4);
        s.apply(&accepted(
            5,
            at("2026-11-27T08:04:05Z"),
            Some(UNIT),
            &batch("2026-11-27T08:04:00Z", 5),
        ));
        check(&s, 4, "2026-11-27T08:08:00Z");
        let d = s.device(UNIT).unwrap();
        // Rates count from where the records sort: not over twelve years.
        assert!(d.types["obd.bat"].per_minute().unwrap() > 0.4);
        assert!(d.usage_rate().unwrap().0 > 0.1);
        let track: Vec<Timestamp> = d.track.iter().map(|p| p.ts).collect();
        assert!(
            track.is_sorted() && track[1] == at("2026-11-27T08:01:05Z"),
            "{track:?}"
        );
    }

    /// A clock fast by about `AHEAD`, a batch's stamps on both sides of
    /// it: the batch keeps its order (one drive, the last fix the
    /// position), and the next batch is newer.
    #[test]
    fn a_clock_far_ahead_keeps_each_batch_in_order() {
        let fix = |ts: &str, lat: &str| {
            format!(r#"{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":{lat},"lon":9.9}}}}"#)
        };
        let body = format!(
            "[{},{},{},{}]",
            fix("2026-11-27T08:09:30Z", "57.0"),
            fix("2026-11-27T08:09:50Z", "57.1"),
            fix("2026-11-27T08:10:10Z", "57.2"),
            fix("2026-11-27T08:10:30Z", "57.3")
        );
        let mut s = State::default();
        s.apply(&accepted(1, at("2026-11-27T08:00:00Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        let lats: Vec<f64> = d.track.iter().map(|p| p.lat).collect();
        assert_eq!(lats, [57.0, 57.1, 57.2, 57.3]);
        assert_eq!(d.drive_starts(), [0]);
        assert_eq!(d.position.as_ref().unwrap().value.lat, Some(57.3));
        let next = format!("[{}]", fix("2026-11-27T08:11:01Z", "57.4"));
        s.apply(&accepted(2, at("2026-11-27T08:01:00Z"), Some(UNIT), &next));
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.position.as_ref().unwrap().value.lat, Some(57.4));
    }

    /// The Types tab shows the latest record of a batch, also when the
    /// batch is not in time order (it showed none).
    #[test]
    fn a_type_shows_the_latest_of_a_batch_out_of_order() {
        let mut s = State::default();
        let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:10Z","voltage":12.7},
            {"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.1}]"#;
        s.apply(&accepted(1, at("2026-11-27T08:00:30Z"), Some(UNIT), body));
        let t = &s.device(UNIT).unwrap().types["obd.bat"];
        assert!(t.last_value.starts_with("12.7 V"), "{}", t.last_value);
    }

    /// A number past any reading is written in exponent form on the Types
    /// tab, as OBD values are (a level of 1e308 was 309 digits, cut).
    #[test]
    fn a_type_shows_an_absurd_number_in_exponent_form() {
        let mut s = State::default();
        let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:10Z","voltage":12.7,"level":1e308},
            {"@t":"track.pos","@ts":"2026-11-27T08:00:10Z","loc":{"lat":57.0,"lon":-1e300}}]"#;
        s.apply(&accepted(1, at("2026-11-27T08:00:30Z"), Some(UNIT), body));
        let types = &s.device(UNIT).unwrap().types;
        assert_eq!(types["obd.bat"].last_value, "12.7 V 1e308 % -");
        assert!(
            types["track.pos"].last_value.starts_with("57 -1e300 alt"),
            "{}",
            types["track.pos"].last_value
        );
    }

    #[test]
    fn battery_state_since_and_usage_resets() {
        let mut s = State::default();
        let body = r#"[
          {"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.6,"state":"discharging"},
          {"@t":"obd.bat","@ts":"2026-11-27T08:00:10Z","voltage":14.1,"state":"charging"},
          {"@t":"obd.bat","@ts":"2026-11-27T08:00:20Z","voltage":14.2,"state":"charging"},
          {"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:00Z","sent":1000,"recv":5000},
          {"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:10Z","sent":1500,"recv":6000},
          {"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:20Z","sent":200,"recv":100}]"#;
        s.apply(&accepted(1, at("2026-11-27T08:00:30Z"), Some(UNIT), body));
        let d = s.device(UNIT).unwrap();
        assert_eq!(
            d.battery.as_ref().unwrap().value.state_since,
            at("2026-11-27T08:00:10Z")
        );
        let u = &d.usage.as_ref().unwrap().value;
        assert_eq!((u.sent_change, u.recv_change), (700, 1100));
        assert_eq!(
            (u.resets, u.last_reset),
            (1, Some(at("2026-11-27T08:00:20Z")))
        );
        let (sent_rate, _) = d.usage_rate().unwrap();
        assert!((sent_rate - 35.0).abs() < 1e-9, "{sent_rate}");
    }

    #[test]
    fn rings_stay_bounded() {
        let mut s = State::default();
        let mut body = String::from("[");
        for i in 0..(EVENT_RING + 10) {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"@t":"event.vehicle.motion","@ts":"2026-11-27T08:00:00Z","@tag":"vehicle/motion/steady","n":{i}}},{{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.0}},{{"@t":"track.pos","@ts":"2026-11-27T08:00:00Z","loc":{{"lat":57.0,"lon":9.9}}}}"#
            ));
        }
        body.push(']');
        for _ in 0..5 {
            let id = s.totals.requests + 1;
            s.apply(&accepted(id, at("2026-11-27T08:00:01Z"), Some(UNIT), &body));
        }
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.events.len(), EVENT_RING);
        // Equal times keep their order of arrival.
        assert_eq!(
            d.events.last().unwrap().fields,
            format!("n={}", EVENT_RING + 9)
        );
        assert_eq!(d.voltages.len(), VOLTAGE_RING);
        assert_eq!(d.track.len(), TRACK_RING);
        for id in 0..(REQUEST_RING as u64 + 5) {
            s.apply(&refused(
                100 + id,
                at("2026-11-27T08:00:02Z"),
                401,
                "bad token",
                "[]",
            ));
        }
        assert_eq!(s.requests.len(), REQUEST_RING);
        assert_eq!(s.requests.last().unwrap().id, 100 + REQUEST_RING as u64 + 4);
    }

    #[test]
    fn bodies_beyond_the_budget_are_let_go_oldest_first() {
        let mut s = State::default();
        let big = "a".repeat(BODY_BUDGET / 3);
        for id in 1..=4 {
            s.apply(&refused(
                id,
                at("2026-11-27T08:00:00Z"),
                400,
                "not JSON",
                &big,
            ));
        }
        let kept: Vec<bool> = s.requests.iter().map(|r| r.body.is_some()).collect();
        assert_eq!(kept, [false, true, true, true]);
        assert!(s.body_bytes_kept() <= BODY_BUDGET);
        assert!(s.body_let_go(1) && !s.body_let_go(2));
        // An accepted body goes before an older refused one: the capture
        // has the batch, while a refused body is held nowhere else.
        let mut s = State::default();
        let batch = format!(r#"[{{"@t":"x","@ts":"2026-11-27T08:00:00Z","v":"{big}"}}]"#);
        s.apply(&refused(
            1,
            at("2026-11-27T08:00:00Z"),
            400,
            "not JSON",
            &big,
        ));
        s.apply(&accepted(2, at("2026-11-27T08:00:01Z"), Some(UNIT), &batch));
        for id in 3..=4 {
            s.apply(&refused(
                id,
                at("2026-11-27T08:00:02Z"),
                400,
                "not JSON",
                &big,
            ));
        }
        let kept: Vec<bool> = s.requests.iter().map(|r| r.body.is_some()).collect();
        assert_eq!(kept, [true, false, true, true]);
    }

    #[test]
    fn devices_are_kept_apart() {
        let mut s = State::default();
        let a = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.1}]"#;
        let b = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":13.9}]"#;
        s.apply(&accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), a));
        s.apply(&accepted(
            2,
            at("2026-11-27T08:00:02Z"),
            Some("0123456789abcdef0123456789abcdef"),
            b,
        ));
        s.apply(&accepted(3, at("2026-11-27T08:00:03Z"), None, a));
        s.apply(&accepted(4, at("2026-11-27T08:00:04Z"), Some(""), a));
        let ids: Vec<_> = s.devices.iter().map(|d| d.unit_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                UNIT,
                "0123456789abcdef0123456789abcdef",
                crate::event::NO_UNIT_ID,
                crate::event::EMPTY_UNIT_ID
            ]
        );
        let uplinks: Vec<_> = s.uplinks.iter().map(|l| l.unit_id.as_str()).collect();
        assert_eq!(uplinks, ids);
        assert_eq!(
            s.devices[1].battery.as_ref().unwrap().value.voltage,
            Some(13.9)
        );
    }

    #[test]
    fn endless_new_names_are_capped() {
        let mut s = State::default();
        let records: Vec<String> = (0..MAX_KEYS + 20)
            .map(|i| format!(r#"{{"@t":"obd.pid{i}","@ts":"2026-11-27T08:00:00Z","value":{i}}},{{"@t":"obd.dtc","@ts":"2026-11-27T08:00:00Z","code":"P{i:04}"}}"#))
            .collect();
        let body = format!("[{}]", records.join(","));
        s.apply(&accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        assert_eq!(
            (d.types.len(), d.obd.len(), d.dtcs.len()),
            (MAX_KEYS, MAX_KEYS, MAX_KEYS)
        );
        assert_eq!(d.records, 2 * (MAX_KEYS as u64 + 20), "still counted");
        // The 255 pids after the first and the trouble codes' type are
        // listed; the 21 pids past them are counted.
        assert_eq!(d.unlisted, 21);
    }

    /// A batch of more distinct types than the per-batch table holds
    /// (four times the listed ones): every record is counted, listed or
    /// unlisted, and names the cut makes one stay one row however many
    /// there are. 976 of 2 000 were counted nowhere (a probe).
    #[test]
    fn a_batch_of_more_types_than_its_table_counts_every_record() {
        let batch = |names: &mut dyn Iterator<Item = String>| {
            let records: Vec<String> = names
                .map(|n| format!(r#"{{"@t":"{n}","@ts":"2026-11-27T08:00:00Z"}}"#))
                .collect();
            format!("[{}]", records.join(","))
        };
        let mut s = State::default();
        let body = batch(&mut (0..2_000).map(|i| format!("k{i}")));
        s.apply(&accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        let listed: u64 = d.types.values().map(|t| t.count).sum();
        assert_eq!((d.types.len(), listed), (MAX_KEYS, MAX_KEYS as u64));
        assert_eq!(d.unlisted, 2_000 - MAX_KEYS as u64);
        // Names alike in their first NAME_CHARS characters are one.
        let long = "p".repeat(NAME_CHARS + 10);
        let mut s = State::default();
        let body = batch(&mut (0..2_000).map(|i| format!("{long}{i}")));
        s.apply(&accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        let counts: Vec<u64> = d.types.values().map(|t| t.count).collect();
        assert_eq!((counts, d.unlisted), (vec![2_000], 0));
    }

    #[test]
    fn failure_tags() {
        assert!(is_failure("system/service/modem/failed"));
        assert!(is_failure("vehicle/battery/critical_level"));
        assert!(!is_failure("vehicle/battery/charging"));
    }

    #[test]
    fn a_hostile_batch_stays_bounded() {
        let long = "x".repeat(100_000);
        let mut records = vec![
            format!(r#"{{"@t":"event.x","@ts":"2026-11-27T08:00:01","@tag":"a/b","v":"{long}"}}"#),
            format!(r#"{{"@t":"obd.vin","@ts":"2026-11-27T08:00:01","value":"{long}"}}"#),
        ];
        records.extend(
            (0..50_000).map(|i| format!(r#"{{"@t":"kind.{i}","@ts":"2026-11-27T08:00:00"}}"#)),
        );
        let body = format!("[{}]", records.join(","));
        let mut s = State::default();
        s.apply(&accepted(1, at("2026-11-27T08:00:02Z"), Some(UNIT), &body));
        let d = s.device(UNIT).unwrap();
        assert_eq!(d.types.len(), MAX_KEYS);
        // The table keeps the types that came first, with their values.
        assert!(!d.types["event.x"].last_value.is_empty());
        assert!(d.types.contains_key("kind.0"));
        assert!(!d.types.contains_key("kind.40000"));
        let line = d.events.iter().last().unwrap();
        assert_eq!(line.fields.chars().count(), FIELD_CHARS);
        assert!(line.fields.ends_with('…'));
        assert_eq!(d.obd["vin"].value.value.chars().count(), FIELD_CHARS);
    }

    #[test]
    fn events_are_in_device_order_and_late_ones_marked() {
        let event =
            |t: &str, tag: &str| format!(r#"[{{"@t":"event.x","@ts":"{t}","@tag":"{tag}"}}]"#);
        let mut s = State::default();
        s.apply(&accepted(
            1,
            at("2026-11-27T08:10:05Z"),
            Some(UNIT),
            &event("2026-11-27T08:10:00Z", "new"),
        ));
        // A retried batch, recorded four and a half minutes before it came.
        s.apply(&accepted(
            2,
            at("2026-11-27T08:10:30Z"),
            Some(UNIT),
            &event("2026-11-27T08:06:00Z", "retried"),
        ));
        s.apply(&accepted(
            3,
            at("2026-11-27T08:11:05Z"),
            Some(UNIT),
            &event("2026-11-27T08:11:00Z", "newest"),
        ));
        let d = s.device(UNIT).unwrap();
        let lines: Vec<_> = d
            .events
            .iter()
            .map(|l| (l.tag.as_str(), l.late.map(|d| d.as_secs())))
            .collect();
        assert_eq!(
            lines,
            [("retried", Some(270)), ("new", None), ("newest", None)]
        );
    }

    #[test]
    fn the_last_crank_is_the_lowest_of_the_last_dip() {
        let volts = [12.6, 10.4, 10.1, 14.2, 14.3, 10.7, 10.5, 10.9, 14.1, 12.7];
        let records: Vec<String> = volts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(r#"{{"@t":"obd.bat","@ts":"2026-11-27T08:00:{i:02}Z","voltage":{v}}}"#)
            })
            .collect();
        let mut s = State::default();
        let body = format!("[{}]", records.join(","));
        s.apply(&accepted(1, at("2026-11-27T08:00:30Z"), Some(UNIT), &body));
        let sum = s.device(UNIT).unwrap().voltage_summary().unwrap();
        assert_eq!((sum.min.volts, sum.max.volts), (10.1, 14.3));
        let crank = sum.last_crank.unwrap();
        assert_eq!((crank.volts, crank.ts), (10.5, at("2026-11-27T08:00:06Z")));
    }

    #[test]
    fn a_late_batch_takes_its_place_in_the_track() {
        let pos = |t: &str, lat: f64| {
            format!(r#"[{{"@t":"track.pos","@ts":"{t}","loc":{{"lat":{lat},"lon":9.9}}}}]"#)
        };
        let mut s = State::default();
        let now = at("2026-11-27T08:10:00Z");
        s.apply(&accepted(
            1,
            now,
            Some(UNIT),
            &pos("2026-11-27T08:00:00", 57.1),
        ));
        s.apply(&accepted(
            2,
            now,
            Some(UNIT),
            &pos("2026-11-27T08:02:00", 57.3),
        ));
        // Retried later, recorded in between.
        s.apply(&accepted(
            3,
            now,
            Some(UNIT),
            &pos("2026-11-27T08:01:00", 57.2),
        ));
        let lats: Vec<f64> = s
            .device(UNIT)
            .unwrap()
            .track
            .iter()
            .map(|p| p.lat)
            .collect();
        assert_eq!(lats, [57.1, 57.2, 57.3]);
        let mut ring = Ring::new(2);
        for k in [5, 7, 6, 1] {
            ring.insert_ordered(k, |k| *k);
        }
        assert_eq!(
            ring.iter().copied().collect::<Vec<_>>(),
            [6, 7],
            "older than a full ring: dropped"
        );
    }
}

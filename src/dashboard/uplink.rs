//! Uplink health of each device, from its requests as they arrived: the
//! cycle it keeps (learned, not configured) and whether it is keeping it
//! now, how full its batches are and whether a backlog is draining, how
//! old its data is when it arrives, what its clock looks like, and how
//! often it had to send a batch again. Pure: the clock is an argument, and
//! `Log::add` is the whole fold.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::dashboard::ring::Ring;
use crate::event::{NO_ANSWER, RequestEvent};

/// Arrivals (and new batches) kept per device.
pub const ARRIVALS_KEPT: usize = 32;
/// A batch of at least this many records, as many as the device's
/// largest, is taken for full where the cycle is learned: the device's
/// smallest batch size (100 in its code). A device sending fewer, the
/// same number every cycle, would have no gap between cycles otherwise.
const FULL_FROM: usize = 100;
/// With its cycle not known, a device silent this long is silent: ten of
/// the device's default 60 s cycles.
const UNKNOWN_SILENT: Duration = Duration::from_secs(600);
/// The longest gap between two uploads of one run: the device's splay
/// (0 to 10 s between two POSTs) and a little more.
const BACK_TO_BACK: Duration = Duration::from_secs(12);
/// A `late:SECS` answer this late or later may have come after the
/// device gave up waiting (its code's timeout; 60 s on its settings
/// page): the batch counts as held until its next run says otherwise.
const DEVICE_TIMEOUT_LEAST: u64 = 10;
/// From this many batches held, the device sends no new batch until
/// they drain (its uploader pauses at 10 retry queues).
pub const RETRY_QUEUES_PAUSE: usize = 10;
/// The device's most splay between two POSTs of a run (`upload_splay`);
/// with retry queues its uploader multiplies it by the queues left.
const SPLAY: Duration = Duration::from_secs(10);
/// A clock behind is said after this many new batches of old data ...
const BEHIND_BATCHES: usize = 3;
/// ... lagging within this much of each other ...
const BEHIND_SPREAD: SignedDuration = SignedDuration::from_secs(60);
/// ... over this long at least.
const BEHIND_SPAN: SignedDuration = SignedDuration::from_secs(30);
/// Gaps shorter than this are uploads within one cycle (a retry next to
/// the new batch, a backlog draining), not a cycle.
pub const SAME_CYCLE: Duration = Duration::from_secs(1);
/// Slack on top of the cycle before an upload counts as late (the cycle
/// is the device's sleep after its last upload; its splay of 0 to 10 s
/// falls between uploads within a cycle, see `Arrival::more_follow`).
const SLACK: Duration = Duration::from_secs(2);
/// A batch whose newest record is older than this when it arrives is old
/// data: a batch from the device's fail queue after a reboot (hours or
/// days old), not what the device sees now. A batch refused with a status
/// waits 30 cycles at most (about 30 to 40 minutes) before it is parked,
/// so most retries stay under it; one never answered is re-sent without a
/// count, and can pass it.
pub const OLD_DATA: Duration = Duration::from_secs(60 * 60);
/// Records stamped more than this after their batch arrived: the device's
/// clock runs ahead (a few seconds are the two clocks' difference).
pub const CLOCK_AHEAD: Duration = Duration::from_secs(5);
/// How the first copies of recent batches were answered, per device, to
/// tell a retry from a re-send.
const ANSWERS_KEPT: usize = 64;

/// Whether the device keeps its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keeping {
    /// Too few uploads yet to know its cycle.
    Learning,
    /// The last upload is no older than 1.5 cycles (plus slack).
    OnTime,
    /// Its latest upload was refused or not answered at all: it holds the
    /// batch and sends it again. Said in place of learning, on time or
    /// late, until an upload is acknowledged; overdue and silent say more.
    Retrying,
    /// Up to 3 cycles, and a cycle past on time at least.
    Late,
    /// Up to 10 cycles.
    Overdue,
    /// Longer.
    Silent,
}

impl Keeping {
    pub fn as_str(self) -> &'static str {
        match self {
            Keeping::Learning => "learning its cycle",
            Keeping::OnTime => "on time",
            Keeping::Retrying => "retrying",
            Keeping::Late => "late",
            Keeping::Overdue => "overdue",
            Keeping::Silent => "silent",
        }
    }

    /// The state in a word, for tables.
    pub fn short(self) -> &'static str {
        match self {
            Keeping::Learning => "learning",
            other => other.as_str(),
        }
    }
}

/// A device's uplink at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// Since the last upload; while retrying, since the first upload not
    /// acknowledged (how long it has been retrying: the summary's worst
    /// read "retrying 5m42s" for a device that had posted a second ago,
    /// a truthfulness probe).
    pub age: Duration,
    /// The median gap between upload cycles, once two are known.
    pub cycle: Option<Duration>,
    pub keeping: Keeping,
    /// What the cycle alone says (`keeping` before retrying takes the
    /// place of late): the ranking of the worst device reads it.
    pub schedule: Keeping,
}

/// One upload, as the cycle is learned from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at: Timestamp,
    /// Answered late or not at all (`late:SECS`, `hangup`): the device
    /// waited for the answer, its timeout at most, before its next upload,
    /// so the gap after it is no cycle. Counted, a device uploading every
    /// 2 s under `late:15` had a cycle of 10 s, and its next batches a
    /// backlog draining (a UX review).
    pub held: bool,
    /// A copy: its retry queue and a batch it sends again go first in a
    /// cycle, then the new data. The gap after it is the device's splay,
    /// not its cycle, unless the next upload starts the next cycle (see
    /// `gaps`): counted, a backlog 5 s apart gave a cycle of
    /// 5 s, and the device went on time, late, silent within its first
    /// 60 s cycle after (a device-realism review).
    pub more_follow: bool,
    /// A full batch (at least `FULL_FROM` records, as many as the
    /// device's largest), or old data (its fail queue, first after a
    /// reboot): the device sends the next at once, a splay later; a gap
    /// longer than `BACK_TO_BACK` after one is its cycle all the same
    /// (its queue ran out on a full batch; a clock hours behind makes
    /// every batch old: such a device read learning, a truthfulness
    /// probe).
    pub full: bool,
    /// The batch it carried, by its first copy's arrival: a batch sent
    /// again in one run of uploads is the next cycle's (see
    /// `gaps`).
    pub batch: Timestamp,
}

impl Arrival {
    /// An upload of a new batch answered at once, the last of its cycle.
    pub fn at(at: Timestamp) -> Arrival {
        Arrival {
            at,
            held: false,
            more_follow: false,
            full: false,
            batch: at,
        }
    }
}

/// The gaps between `arrivals` (oldest first), each with whether it runs
/// from one cycle to the next: after an upload that no other follows in its cycle, or
/// before one that carries a batch the run sent already (the device's
/// retry queues, the only uploads of a cycle once ten of them wait: a
/// batch is sent once a cycle). Within a run of uploads, no gap is a
/// cycle: counted, retries 5 s apart gave a cycle of 5 s (a review).
fn gaps(arrivals: &[Arrival]) -> Vec<Gap> {
    let mut run: Vec<Timestamp> = arrivals.first().map(|a| a.batch).into_iter().collect();
    arrivals
        .windows(2)
        .map(|w| {
            let len: Option<Duration> = w[1].at.duration_since(w[0].at).try_into().ok();
            // Before a full batch too: a batch kept after no answer goes
            // first, then the backlog (its gap read as the cycle: a
            // review).
            let within = w[0].more_follow
                || (w[0].full || w[1].full) && len.unwrap_or_default() <= BACK_TO_BACK;
            // The device sends its retry queues oldest first: a copy of
            // an older batch than the one before starts the next run. A
            // repeat alone marked the gap before the first batch the ring
            // held, which may be mid-run: a device paused behind ten
            // queues read a cycle of 4 s, its splay (a review).
            let wraps = w[0].more_follow && w[1].more_follow && w[1].batch < w[0].batch;
            let between = !within || wraps || run.contains(&w[1].batch);
            if between {
                run.clear();
            }
            run.push(w[1].batch);
            Gap {
                len,
                between,
                held: w[0].held,
            }
        })
        .collect()
}

/// One gap between two arrivals (see `gaps`).
struct Gap {
    /// None when the later arrival is stamped before the earlier.
    len: Option<Duration>,
    /// From one cycle to the next.
    between: bool,
    /// After an upload held for its answer.
    held: bool,
}

/// Of `gaps`, the lengths of 1 s and more (`SAME_CYCLE`) between cycles,
/// without those after a held upload if asked.
fn between(gaps: &[Gap], skip_held: bool) -> Vec<Duration> {
    gaps.iter()
        .filter(|g| g.between && !(skip_held && g.held))
        .filter_map(|g| g.len)
        .filter(|len| *len >= SAME_CYCLE)
        .collect()
}

/// The cycle learned from `arrivals` (oldest first): `learned`, else
/// `one_between`; None, not known yet (a backlog drained, nothing after
/// it yet).
pub fn cycle(arrivals: &[Arrival]) -> Option<Duration> {
    let gaps = gaps(arrivals);
    learned(&gaps).or_else(|| one_between(&gaps))
}

/// The cycle two gaps or more say: the median (of two, the smaller) of the
/// gaps from the last upload of one cycle to the first of the next (see
/// `gaps`) that follow no upload held for its answer; with fewer than two,
/// of those with held ones too (under `hangup` throughout, the device's
/// pace is its cycle and its timeout: without it the device never had a
/// cycle, and read retrying for ever, gone or not: a review).
fn learned(gaps: &[Gap]) -> Option<Duration> {
    [true, false]
        .into_iter()
        .map(|skip_held| between(gaps, skip_held))
        .find(|g| g.len() >= 2)
        .map(|mut g| {
            g.sort();
            // Of two, the smaller: of a cycle and an outage, the cycle
            // (the upper one made a device gone read on time for half an
            // hour after one: a review).
            if g.len() == 2 { g[0] } else { g[g.len() / 2] }
        })
}

/// The one gap between cycles beside gaps within them, of two gaps or
/// more: after a backlog drained, its gaps were the cycle.
fn one_between(gaps: &[Gap]) -> Option<Duration> {
    let between = between(gaps, false);
    (gaps.len() >= 2 && between.len() == 1).then(|| between[0])
}

/// How the device with these arrivals (oldest first) is doing at `now`.
pub fn of_arrivals(arrivals: &[Arrival], now: Timestamp) -> Option<Uplink> {
    judged_arrivals(arrivals, cycle(arrivals), now)
}

/// `of_arrivals` with the cycle given.
fn judged_arrivals(
    arrivals: &[Arrival],
    cycle: Option<Duration>,
    now: Timestamp,
) -> Option<Uplink> {
    let last = arrivals.last()?.at;
    let age: Duration = now.duration_since(last).try_into().unwrap_or_default();
    let keeping = judged(cycle, age);
    Some(Uplink {
        age,
        cycle,
        keeping,
        schedule: keeping,
    })
}

/// How a device with this cycle is doing `age` after its last upload.
fn judged(cycle: Option<Duration>, age: Duration) -> Keeping {
    // Late lasts a cycle at least: for a cycle under 4 s the slack put
    // 3 cycles before the end of on time, and such a device (the demo's,
    // 1 s) went from on time straight to overdue (a README audit).
    match cycle {
        // Not known yet, and no upload for as long as ten of the
        // device's default cycles: gone, whatever its cycle (a device
        // that went quiet before one was learned read "learning" for
        // ever, and was never named the worst: a review).
        None if age > UNKNOWN_SILENT => Keeping::Silent,
        None => Keeping::Learning,
        Some(c) if age <= c.mul_f64(1.5) + SLACK => Keeping::OnTime,
        Some(c) if age <= (c * 3).max(c.mul_f64(2.5) + SLACK) => Keeping::Late,
        Some(c) if age <= c * 10 => Keeping::Overdue,
        Some(_) => Keeping::Silent,
    }
}

/// How `log`'s device is doing at `now`: retrying in place of learning,
/// on time or late while its latest upload was not acknowledged in time.
/// While it is not, whether it keeps its cycle is judged by its latest
/// attempt, captured or refused before (a body refused 400 every cycle,
/// a token rotated on the device: it tried every cycle and read overdue,
/// then silent, a truthfulness probe); `age` stays the time since its
/// last captured upload.
pub fn of(log: &Log, now: Timestamp) -> Option<Uplink> {
    let since =
        |at: Timestamp| -> Duration { now.duration_since(at).try_into().unwrap_or_default() };
    let tried = log.unacked_since.and(log.last_seen);
    // With N retry queues each splay the device takes is up to N times
    // its 10 s, before each of them and so before the run's first POST:
    // at a 15 s cycle, 5 queues put 50 s gaps in a device that kept its
    // schedule, which read overdue (closing note 47).
    let cycle = log.cycle();
    let queues = log.retry_queues() as u32;
    let judge_by = cycle.map(|c| c + SPLAY * queues);
    let mut up = match judged_arrivals(&log.arrivals(), judge_by, now) {
        Some(up) => up,
        // Nothing captured yet, every upload refused: its attempts alone.
        None => {
            let age = since(tried?);
            let keeping = judged(None, age);
            Uplink {
                age,
                cycle: None,
                keeping,
                schedule: keeping,
            }
        }
    };
    up.cycle = cycle;
    if let Some(tried) = tried {
        up.schedule = judged(judge_by, since(tried));
        up.keeping = up.schedule;
        if up.keeping <= Keeping::Late {
            up.keeping = Keeping::Retrying;
            up.age = log.unacked_since.map_or(up.age, since);
        }
    }
    Some(up)
}

/// Arrival minus the newest `@ts` of the batch: seconds for a live
/// device, hours or days for a batch from its fail queue, negative when
/// its clock is ahead. None when no record had a readable `@ts`.
pub fn lag(e: &RequestEvent) -> Option<SignedDuration> {
    e.newest_ts.map(|newest| e.received.duration_since(newest))
}

/// True when the batch's newest data is older than `OLD_DATA` when it
/// arrives: it is never shown as the device's current state.
pub fn old_data(e: &RequestEvent) -> bool {
    lag(e).is_some_and(too_old)
}

/// A lag beyond `OLD_DATA`.
fn too_old(lag: SignedDuration) -> bool {
    lag > SignedDuration::from_secs(OLD_DATA.as_secs() as i64)
}

/// What one copy of a batch was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// A 2xx at once.
    Acked,
    /// A 2xx held back by `late:SECS`, past the device's timeout.
    AckedLate,
    /// A 4xx or 5xx.
    Refused(u16),
    /// Nothing (`hangup`).
    NoAnswer,
}

impl Answered {
    /// How it was answered, in a few words.
    pub fn said(self) -> String {
        match self {
            Answered::Acked => "200".into(),
            Answered::AckedLate => "200, held back past the device's timeout (late)".into(),
            Answered::Refused(status) => status.to_string(),
            Answered::NoAnswer => "nothing (hangup)".into(),
        }
    }

    pub fn of(e: &RequestEvent) -> Answered {
        if e.status == NO_ANSWER {
            Answered::NoAnswer
        } else if !e.accepted() {
            Answered::Refused(e.status)
        } else if e.held_back().is_some() {
            Answered::AckedLate
        } else {
            Answered::Acked
        }
    }
}

/// Whether the device may hold the batch after this answer: refused, not
/// answered, or answered `DEVICE_TIMEOUT_LEAST` late or later.
fn holds(e: &RequestEvent, answered: Answered) -> bool {
    match answered {
        Answered::Refused(_) | Answered::NoAnswer => true,
        Answered::AckedLate => e
            .held_back()
            .and_then(|secs| secs.parse::<u64>().ok())
            .is_none_or(|secs| secs >= DEVICE_TIMEOUT_LEAST),
        Answered::Acked => false,
    }
}

/// A batch the device sent (by its first copy), as its copies were
/// answered (see `Log::unacked`).
#[derive(Clone, Debug)]
struct Told {
    /// `received` of its first copy, as later copies name it.
    key: String,
    /// How its latest copy was answered, and when that copy came.
    answered: Answered,
    at: Timestamp,
    /// The device may still hold it (see `holds`).
    holds: bool,
    /// Left out of a run of the device since (see `Log::close_run`).
    parked: bool,
    /// Refused once: in a retry queue of the device's until acknowledged.
    queued: bool,
    /// Keys of copies of it acknowledged after a refusal, which later
    /// copies name.
    aliases: Vec<String>,
}

/// The device's current run, as its copies tell it.
#[derive(Clone, Debug, Default)]
struct Run {
    /// Copies came since its last new batch: its retry queues.
    retrying: bool,
    started: Option<Timestamp>,
    /// Keys of the batches it sent again.
    copies: Vec<String>,
    /// A copy in it got no answer (see `Log::copy_in_run`).
    broken: bool,
    /// Its latest new batch, and whether it was full.
    last_new: Option<(Timestamp, bool)>,
    /// Its last run ended with no new batch.
    only_retries: bool,
    /// A run that has sent new batches and no copy yet, from when.
    unclosed: Option<Timestamp>,
}

impl Run {
    fn start(&mut self, at: Timestamp) {
        self.retrying = true;
        self.started = Some(at);
        self.copies.clear();
        self.broken = false;
    }
}

/// Why a device sent a batch again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// After a refusal (4xx/5xx): from its retry queue.
    Retry,
    /// After no answer in time (none at all, a late one, or an
    /// acknowledgement that did not reach it): the identical bytes.
    Resend,
}

/// Why a copy came, from how the copy before it was answered (None when
/// that is not known: a copy of an acknowledged batch is a re-send, the
/// device having missed the answer; of an unacknowledged one, a retry).
pub fn again(before: Option<Answered>, duplicate: bool) -> Again {
    match before {
        Some(Answered::Refused(_)) => Again::Retry,
        Some(_) => Again::Resend,
        None if duplicate => Again::Resend,
        None => Again::Retry,
    }
}

/// A new batch (not a copy) as it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub received: Timestamp,
    pub records: usize,
    /// Arrival minus its newest `@ts`.
    pub lag: Option<SignedDuration>,
    /// At least `FULL_FROM` records, as many as the largest batch from
    /// the device so far.
    pub full: bool,
}

impl Seen {
    /// Its data was old when it came (see `OLD_DATA`).
    pub fn old(&self) -> bool {
        self.lag.is_some_and(too_old)
    }
}

/// What the device's timestamps say about its clock, flagged once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// The furthest a batch's newest record was ahead of its arrival,
    /// beyond `CLOCK_AHEAD`, and when that was first seen.
    pub ahead: Option<(SignedDuration, Timestamp)>,
    /// When a new batch came on time again after `ahead` (its clock
    /// synced): the flag goes, a note says it was. None while it is
    /// still ahead; a batch ahead again starts the flag anew.
    pub ahead_ended: Option<Timestamp>,
    /// Records stamped without an offset (naive, read as UTC) and with one.
    pub naive: u64,
    pub zoned: u64,
    /// When both kinds were first seen from the device.
    pub mixed_since: Option<Timestamp>,
}

/// A flag on the device's clock, with its one-line hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockFlag {
    /// Timestamps up to this far after their arrival.
    Ahead(SignedDuration),
    /// Both naive and `Z`/offset timestamps.
    Mixed { naive: u64, zoned: u64 },
    /// Its latest new batches all old data by about this much, over
    /// several cycles: a clock behind, not a fail queue (see
    /// `Log::clock_flag`).
    Behind(SignedDuration),
}

impl ClockFlag {
    /// The flag in a word or two, for tables.
    pub fn short(&self) -> &'static str {
        match self {
            ClockFlag::Ahead(_) => "ahead",
            ClockFlag::Mixed { .. } => "naive+Z",
            ClockFlag::Behind(_) => "behind?",
        }
    }

    /// What it means and what to check, in one line.
    pub fn hint(&self) -> String {
        match self {
            ClockFlag::Ahead(by) => format!(
                "clock ahead: stamped up to {} after arrival; check its time sync",
                crate::dashboard::format::span(by.as_secs().unsigned_abs())
            ),
            ClockFlag::Mixed { naive, zoned } => format!(
                "{naive} naive @ts (read as UTC) beside {zoned} with Z: is one clock local?"
            ),
            ClockFlag::Behind(by) => format!(
                "each batch about {} old on arrival: its clock behind? (not synced, or on local time)",
                crate::dashboard::format::span(by.as_secs().unsigned_abs())
            ),
        }
    }
}

/// Everything the Uplink tab knows of one device (by `unit-id`).
#[derive(Clone, Debug)]
pub struct Log {
    pub unit_id: String,
    /// Its uploads that were captured (copies too, whatever they were
    /// answered), in time order: the cycle is learned from them. Requests
    /// refused before capture count as refusals, and but for a 401 (a
    /// wrong token may be someone else) as attempts (see `of`).
    arrivals: Ring<Arrival>,
    /// Its new batches, in order of arrival.
    pub batches: Ring<Seen>,
    /// Records of its largest batch so far.
    pub largest: usize,
    /// New batches whose data was old when they came (see `OLD_DATA`).
    pub old_batches: u64,
    pub clock: Clock,
    /// Copies sent after a refusal.
    pub retries: u64,
    /// Copies sent after no answer in time.
    pub resends: u64,
    /// Its uploads refused, by status (`NO_ANSWER`, 0, for none at all).
    pub refusals: BTreeMap<u16, u64>,
    /// Its recent batches (by first copy), as their copies were answered.
    answers: VecDeque<Told>,
    /// Its current run, as far as its copies tell it (see `close_run`).
    run: Run,
    /// Its latest upload, captured or refused.
    pub last_seen: Option<Timestamp>,
    /// Its latest upload and how it was answered.
    pub last_answer: Option<(Timestamp, Answered)>,
    /// The first of its uploads refused or not answered since the last
    /// one acknowledged, while none has been since: it is retrying.
    pub unacked_since: Option<Timestamp>,
    /// The cycle last learned: kept while the arrivals hold no gap
    /// between cycles (a backlog's gaps are within one), where it read
    /// learning through every backlog after a refusal (a tmux check).
    known_cycle: Option<Duration>,
}

impl Log {
    pub fn new(unit_id: &str) -> Log {
        Log {
            unit_id: unit_id.to_string(),
            arrivals: Ring::new(ARRIVALS_KEPT),
            batches: Ring::new(ARRIVALS_KEPT),
            largest: 0,
            old_batches: 0,
            clock: Clock::default(),
            retries: 0,
            resends: 0,
            refusals: BTreeMap::new(),
            answers: VecDeque::new(),
            run: Run::default(),
            last_seen: None,
            last_answer: None,
            unacked_since: None,
            known_cycle: None,
        }
    }

    /// Whether any of its uploads was captured (its others all refused).
    pub fn captured_any(&self) -> bool {
        !self.arrivals.is_empty()
    }

    /// Folds one upload (a POST) from this device.
    pub fn add(&mut self, e: &RequestEvent) {
        let answered = Answered::of(e);
        if let Answered::Refused(status) = answered {
            *self.refusals.entry(status).or_default() += 1;
        } else if answered == Answered::NoAnswer {
            *self.refusals.entry(NO_ANSWER).or_default() += 1;
        }
        // A 401 before capture may be anyone sending its unit-id: counted,
        // but no sign of the device (a stranger's kept it retrying for
        // ever: a review). A token rotated on the device reads overdue,
        // then silent, its 401s counted beside.
        if !e.captured && e.status == 401 {
            return;
        }
        self.last_seen = Some(self.last_seen.map_or(e.received, |t| t.max(e.received)));
        // Refused uploads too, captured or not (a body refused 400 every
        // cycle kept the device's batch, and the device read silent
        // while it tried every cycle: a truthfulness probe). Events may
        // come a little out of order: the latest decides. A
        // late 200 may have reached the device (a `late:1` is well inside
        // its timeout: a review), so only a refusal or no answer at all
        // says that it keeps the batch; a re-send after a late answer is
        // judged by its own.
        let holds = holds(e, answered);
        if self.last_answer.is_none_or(|(at, _)| at <= e.received) {
            self.last_answer = Some((e.received, answered));
            // A 200 held back past the device's timeout (10 s in its
            // code) is no acknowledgement it got: a device answered
            // `late:15` every time read on time (a review).
            if holds {
                self.unacked_since.get_or_insert(e.received);
            } else {
                self.unacked_since = None;
            }
        }
        if !e.captured {
            return;
        }
        let held = matches!(answered, Answered::NoAnswer | Answered::AckedLate);
        // The batch's first copy, by the copy this one names: a copy of an
        // acknowledged retry names that retry (`duplicate_of`), so it had
        // a key of its own, counted twice after a late answer and breaking
        // the order of a run (a review).
        let named = e.duplicate_of.as_ref().or(e.retry_of.as_ref());
        let slot = named.and_then(|n| {
            self.answers
                .iter()
                .position(|t| t.key == *n || t.aliases.contains(n))
        });
        let first: Option<(String, Timestamp)> = named.map(|n| {
            let key = slot.map_or(n, |i| &self.answers[i].key);
            (key.clone(), key.parse().unwrap_or(e.received))
        });
        let largest = self.largest.max(e.records);
        let full = first.is_none() && e.records >= FULL_FROM && e.records == largest;
        self.arrivals.insert_ordered(
            Arrival {
                at: e.received,
                held,
                more_follow: first.is_some(),
                full: full || old_data(e),
                batch: first.as_ref().map_or(e.received, |(_, at)| *at),
            },
            |a| a.at,
        );
        // Only what two gaps or more say is kept: a single gap may be an
        // outage, or a splay (a review).
        if let Some(c) = learned(&gaps(&self.arrivals())) {
            self.known_cycle = Some(c);
        }
        if let Some((first, _)) = first {
            let told = slot.map(|i| &mut self.answers[i]);
            match again(told.as_ref().map(|t| t.answered), e.duplicate()) {
                Again::Retry => self.retries += 1,
                Again::Resend => self.resends += 1,
            }
            // The latest copy decides (events may come a little out of
            // order); one that comes again was not parked after all, or
            // comes from the fail queue after a reboot (parked again at
            // the next run without it).
            if let Some(t) = told.filter(|t| t.at <= e.received) {
                (t.answered, t.at, t.holds, t.parked) = (answered, e.received, holds, false);
                // In a retry queue once refused, until acknowledged: a
                // hang-up on a later copy leaves it there (it moved to the
                // upload cache's count: a review).
                t.queued |= matches!(answered, Answered::Refused(_));
            }
            self.copy_in_run(&first, answered, holds, e.received);
            // A retry acknowledged is the copy later ones name
            // (`duplicate_of` names the copy acknowledged): kept too, or
            // every copy after it counted as a re-send, whatever it
            // followed (a cross-tool probe: 10 re-sends, where the device
            // had made 9 retries after refusals).
            // Named by its own time, which leads back to the first copy.
            if e.retry_of.is_some() && matches!(answered, Answered::Acked | Answered::AckedLate) {
                match slot {
                    Some(i) => self.answers[i]
                        .aliases
                        .push(crate::time::format_received(e.received)),
                    None => self.remember(e.received, answered, holds),
                }
            }
            return;
        }
        self.remember(e.received, answered, holds);
        // Old data comes from the fail queue, first in the run after a
        // boot, before its retry queues: no sign they are done.
        if !old_data(e) || self.run.retrying || self.behind().is_some() {
            self.new_in_run(e.received, full);
        }
        self.largest = self.largest.max(e.records);
        let seen = Seen {
            received: e.received,
            records: e.records,
            lag: lag(e),
            full,
        };
        self.old_batches += u64::from(seen.old());
        self.batches.push(seen);
        let ahead_by_more = -SignedDuration::from_secs(CLOCK_AHEAD.as_secs() as i64);
        match seen.lag {
            Some(l) if l < ahead_by_more => {
                let by = -l;
                self.clock.ahead = match (self.clock.ahead, self.clock.ahead_ended) {
                    (Some((was, since)), None) => Some((was.max(by), since)),
                    _ => Some((by, e.received)),
                };
                self.clock.ahead_ended = None;
            }
            // On time again: the flag stayed after the clock was synced,
            // and read as the clock's state now (closing note 47). Old
            // data (a fail queue) says nothing of the clock now.
            Some(l)
                if !too_old(l)
                    && self.clock.ahead.is_some()
                    && self.clock.ahead_ended.is_none() =>
            {
                self.clock.ahead_ended = Some(e.received);
            }
            _ => {}
        }
        let naive = e.naive_timestamps as u64;
        let zoned = e.records.saturating_sub(e.malformed + e.naive_timestamps) as u64;
        self.clock.naive += naive;
        self.clock.zoned += zoned;
        if self.clock.naive > 0 && self.clock.zoned > 0 && self.clock.mixed_since.is_none() {
            self.clock.mixed_since = Some(e.received);
        }
    }

    /// How the copy received at `received` was answered, for the copies
    /// that will name it. The oldest batch the device no longer holds
    /// makes room, before any it holds (a batch held through 64 newer
    /// ones, a backlog, dropped out of the count).
    fn remember(&mut self, received: Timestamp, answered: Answered, holds: bool) {
        if self.answers.len() == ANSWERS_KEPT {
            let gone = self.answers.iter().position(|t| !t.holds || t.parked);
            self.answers.remove(gone.unwrap_or(0));
        }
        self.answers.push_back(Told {
            key: crate::time::format_received(received),
            answered,
            at: received,
            holds,
            parked: false,
            queued: matches!(answered, Answered::Refused(_)),
            aliases: Vec::new(),
        });
    }

    /// A copy of the batch first received as `key`: in the device's run
    /// its retry queues come first, each once, so a copy after a new
    /// batch starts a run, and a second copy of one batch starts the next
    /// (ten retry queues wait: the device sends only them).
    fn copy_in_run(&mut self, key: &str, answered: Answered, holds: bool, at: Timestamp) {
        // A run of batches with no copy before this one was the fail queue
        // a boot sends first: its retry queues follow (it parked every
        // batch held, a review).
        self.run.unclosed = None;
        if !self.run.retrying {
            self.run.start(at);
        } else if self.run.copies.iter().any(|k| k == key) {
            self.close_run();
            self.run.start(at);
            self.run.only_retries = true;
        }
        self.run.copies.push(key.to_string());
        // Its uploader stops going through its retry queues at a
        // connection error or its timeout: those after it were not left
        // out for good.
        self.run.broken |=
            answered == Answered::NoAnswer || (answered == Answered::AckedLate && holds);
    }

    /// A new batch: the device's retry queues are done for this run. One
    /// after a new batch starts a run that had none, unless it continues
    /// a backlog (full, within `BACK_TO_BACK`).
    fn new_in_run(&mut self, at: Timestamp, full: bool) {
        self.run.only_retries = false;
        if self.run.retrying {
            self.close_run();
            self.run.retrying = false;
        } else if let Some((before, was_full)) = self.run.last_new {
            let gap: Duration = at.duration_since(before).try_into().unwrap_or_default();
            if !(was_full && gap <= BACK_TO_BACK) {
                // A run with no copy so far: closed once the next run
                // begins without one (see `copy_in_run`).
                if let Some(began) = self.run.unclosed.replace(at) {
                    self.run.start(began);
                    self.run.retrying = false;
                    self.close_run();
                }
            }
        }
        self.run.last_new = Some((at, full));
    }

    /// The run ends: every batch held from before it that it did not
    /// send was parked in the device's fail queue after its MAX RETRY
    /// failures (10 in its code, 30 on its settings page), to be tried
    /// again only after its next boot, or was never held (a late answer
    /// the device did get).
    fn close_run(&mut self) {
        let Some(started) = self.run.started else {
            return;
        };
        if self.run.broken {
            return;
        }
        let copies = &self.run.copies;
        for t in self.answers.iter_mut() {
            if t.holds && !t.parked && t.at < started && !copies.contains(&t.key) {
                t.parked = true;
            }
        }
    }

    /// Its batches captured whose latest copy was refused, not answered,
    /// or answered past the device's timeout, none acknowledged since, and
    /// not left out of a run since: the device holds them and sends them
    /// again each cycle (a refusal's in a retry queue, first in its run).
    /// Batches refused before capture (not JSON, too large) have no key
    /// and are not counted.
    pub fn unacked(&self) -> usize {
        self.held().count()
    }

    /// Of `unacked`, those refused: each in a retry queue of its own on
    /// the device (one not answered waits in its upload cache).
    pub fn retry_queues(&self) -> usize {
        self.held().filter(|t| t.queued).count()
    }

    /// Its uploader has paused new uploads: `RETRY_QUEUES_PAUSE` retry
    /// queues held, and its last run sent none (seen, not inferred: a
    /// batch parked is only seen a run later, so the count can read 10
    /// while the device holds 9 and goes on).
    pub fn paused(&self) -> bool {
        self.run.only_retries && self.retry_queues() >= RETRY_QUEUES_PAUSE
    }

    fn held(&self) -> impl Iterator<Item = &Told> + '_ {
        self.answers.iter().filter(|t| t.holds && !t.parked)
    }

    /// Arrival times, oldest first.
    pub fn arrival_times(&self) -> Vec<Timestamp> {
        self.arrivals.iter().map(|a| a.at).collect()
    }

    /// Arrivals, oldest first.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.iter().copied().collect()
    }

    /// Its cycle: learned from its arrivals, else the one learned last.
    pub fn cycle(&self) -> Option<Duration> {
        let gaps = gaps(&self.arrivals());
        learned(&gaps)
            .or(self.known_cycle)
            .or_else(|| one_between(&gaps))
    }

    /// The newest upload.
    pub fn last_arrival(&self) -> Option<Timestamp> {
        self.arrivals.last().map(|a| a.at)
    }

    /// The newest batch's records and the largest seen.
    pub fn fill(&self) -> Option<(usize, usize)> {
        self.batches.last().map(|b| (b.records, self.largest))
    }

    /// Full batches arriving back to back up to the newest (at most half
    /// the cycle and `BACK_TO_BACK` apart; `BACK_TO_BACK` while no cycle
    /// is known): a backlog
    /// draining, as the device sends the next batch at once while its
    /// batches come out full. The length of that run, 0 when there is none
    /// (a single full batch is not a run).
    pub fn draining(&self) -> usize {
        let cycle = self.cycle();
        // With a cycle of a second, `SAME_CYCLE` took a batch 0.98 s
        // after the one before for a backlog: a busy device on a 1 s
        // cycle was flagged draining (a soak run, 13 times in 35 min).
        // Under the device's splay, back to back is up to `BACK_TO_BACK`
        // apart: under 1 s, a backlog sent a splay apart was never seen
        // draining before its cycle was known (a truthfulness probe).
        let back_to_back = |gap: Duration| match cycle {
            Some(c) => gap <= (c / 2).min(BACK_TO_BACK),
            None => gap <= BACK_TO_BACK,
        };
        let batches: Vec<&Seen> = self.batches.iter().collect();
        let mut run = 0;
        for w in batches.windows(2).rev() {
            let gap: Duration = w[1]
                .received
                .duration_since(w[0].received)
                .try_into()
                .unwrap_or_default();
            if !(w[0].full && w[1].full && back_to_back(gap)) {
                break;
            }
            run = if run == 0 { 2 } else { run + 1 };
        }
        run
    }

    /// The newest batch's data lag.
    pub fn lag(&self) -> Option<SignedDuration> {
        self.batches.last().and_then(|b| b.lag)
    }

    /// The clock flag, once there is one (ahead first, while its newest
    /// new batch is).
    pub fn clock_flag(&self) -> Option<ClockFlag> {
        if let (Some((by, _)), None) = (self.clock.ahead, self.clock.ahead_ended) {
            return Some(ClockFlag::Ahead(by));
        }
        if let Some(by) = self.behind() {
            return Some(ClockFlag::Behind(by));
        }
        self.clock.mixed_since.map(|_| ClockFlag::Mixed {
            naive: self.clock.naive,
            zoned: self.clock.zoned,
        })
    }

    /// How far its clock was ahead at most, and when a batch came on
    /// time again, once it has.
    pub fn was_ahead(&self) -> Option<(SignedDuration, Timestamp)> {
        let (by, _) = self.clock.ahead?;
        Some((by, self.clock.ahead_ended?))
    }

    /// How far its clock seems behind: its last `BEHIND_BATCHES` new
    /// batches all old data, lagging within `BEHIND_SPREAD` of each other
    /// and spread over `BEHIND_SPAN` at least. A fail queue's batches lag
    /// less and less (each is newer, sent a splay after the one before)
    /// and come within one run; a clock behind lags the same cycle after
    /// cycle (it read as a fail queue for ever: a truthfulness probe).
    fn behind(&self) -> Option<SignedDuration> {
        let n = self.batches.len();
        if n < BEHIND_BATCHES {
            return None;
        }
        let last: Vec<&Seen> = self.batches.iter().skip(n - BEHIND_BATCHES).collect();
        let lags: Option<Vec<SignedDuration>> =
            last.iter().map(|b| b.lag.filter(|_| b.old())).collect();
        let lags = lags?;
        let (least, most) = (lags.iter().min()?, lags.iter().max()?);
        let span = last[BEHIND_BATCHES - 1]
            .received
            .duration_since(last[0].received);
        let spread = *most - *least;
        (spread <= BEHIND_SPREAD && span >= BEHIND_SPAN).then_some(*least)
    }

    /// Gaps between its uploads in milliseconds, oldest first, for the
    /// inter-arrival sparkline.
    pub fn gaps_ms(&self) -> Vec<u64> {
        let times = self.arrival_times();
        times
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_millis().max(0) as u64)
            .collect()
    }

    /// Refusals in one short text: `hangup×2 500×3 503×1`.
    pub fn refusals_text(&self) -> String {
        self.refusals
            .iter()
            .map(|(status, n)| format!("{}×{n}", refusal_name(*status)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `refusals_text` where it fits in `width` columns, else the total
    /// and the kinds, most first: `19: 503 hangup` where `hangup×7 503×12`
    /// was cut to `hangup×7 503×…` at 120 columns (a UX review). What
    /// does not fit still ends in `…` where it is drawn.
    pub fn refusals_within(&self, width: usize) -> String {
        let whole = self.refusals_text();
        if whole.chars().count() <= width {
            return whole;
        }
        let mut kinds: Vec<_> = self.refusals.iter().collect();
        // Most first; of equal counts, in status order (hangup first).
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        let total: u64 = self.refusals.values().sum();
        let names: Vec<String> = kinds.iter().map(|(s, _)| refusal_name(**s)).collect();
        format!("{total}: {}", names.join(" "))
    }
}

/// A refusal's status as the Uplink tab names it: `hangup` for none.
fn refusal_name(status: u16) -> String {
    match status {
        NO_ANSWER => "hangup".into(),
        s => s.to_string(),
    }
}

/// Every device's uplink at a glance, for the Live tab's summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Devices by state, in `Keeping`'s order.
    pub learning: usize,
    pub on_time: usize,
    pub retrying: usize,
    pub late: usize,
    pub overdue: usize,
    pub silent: usize,
    /// The device doing worst (past on time), and how.
    pub worst: Option<(String, Uplink)>,
    /// New batches of old data, all devices.
    pub old_batches: u64,
    /// A device whose newest batch was old data.
    pub old_now: Option<String>,
}

/// The summary of `logs` at `now`.
pub fn summary(logs: &[Log], now: Timestamp) -> Summary {
    let mut s = Summary::default();
    for log in logs {
        s.old_batches += log.old_batches;
        if log.batches.last().is_some_and(Seen::old) && s.old_now.is_none() {
            s.old_now = Some(log.unit_id.clone());
        }
        let Some(u) = of(log, now) else {
            continue;
        };
        match u.keeping {
            Keeping::Learning => s.learning += 1,
            Keeping::OnTime => s.on_time += 1,
            Keeping::Retrying => s.retrying += 1,
            Keeping::Late => s.late += 1,
            Keeping::Overdue => s.overdue += 1,
            Keeping::Silent => s.silent += 1,
        }
        // Ranked by the worse of its state and its schedule: a device
        // retrying while late by its cycle ranked under one only late
        // (a review).
        let rank = |u: &Uplink| (u.keeping.max(u.schedule), u.age);
        let worse = s.worst.as_ref().is_none_or(|(_, w)| rank(&u) > rank(w));
        if u.keeping > Keeping::OnTime && worse {
            s.worst = Some((log.unit_id.clone(), u));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;

    /// Arrivals at these seconds after 08:00:00.
    fn arrivals(secs: &[i64]) -> Vec<Arrival> {
        let base = at("2026-11-27T08:00:00Z");
        secs.iter()
            .map(|s| Arrival::at(base + jiff::SignedDuration::from_secs(*s)))
            .collect()
    }

    fn keeping(secs: &[i64], now: i64) -> (Option<u64>, Keeping) {
        let now = at("2026-11-27T08:00:00Z") + jiff::SignedDuration::from_secs(now);
        let u = of_arrivals(&arrivals(secs), now).unwrap();
        (u.cycle.map(|c| c.as_secs()), u.keeping)
    }

    #[test]
    fn a_device_keeping_its_60_s_cycle_with_splay_is_on_time_then_late_overdue_silent() {
        let cycle = [0, 63, 125, 190, 251];
        assert_eq!(keeping(&cycle, 251), (Some(63), Keeping::OnTime));
        assert_eq!(keeping(&cycle, 251 + 90), (Some(63), Keeping::OnTime));
        assert_eq!(keeping(&cycle, 251 + 100), (Some(63), Keeping::Late));
        assert_eq!(keeping(&cycle, 251 + 189), (Some(63), Keeping::Late));
        assert_eq!(keeping(&cycle, 251 + 190), (Some(63), Keeping::Overdue));
        assert_eq!(keeping(&cycle, 251 + 631), (Some(63), Keeping::Silent));
    }

    #[test]
    fn a_short_cycle_is_late_for_a_cycle_before_it_is_overdue() {
        let cycle = [0, 1, 2, 3, 4];
        assert_eq!(keeping(&cycle, 4 + 3), (Some(1), Keeping::OnTime));
        assert_eq!(keeping(&cycle, 4 + 4), (Some(1), Keeping::Late));
        assert_eq!(keeping(&cycle, 4 + 5), (Some(1), Keeping::Overdue));
        assert_eq!(keeping(&cycle, 4 + 10), (Some(1), Keeping::Overdue));
        assert_eq!(keeping(&cycle, 4 + 11), (Some(1), Keeping::Silent));
    }

    #[test]
    fn uploads_within_one_cycle_do_not_shorten_it() {
        // A retry right after the new batch, and a backlog of three.
        let arrivals = [0, 60, 60, 120, 120, 120, 180];
        assert_eq!(keeping(&arrivals, 185), (Some(60), Keeping::OnTime));
    }

    const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";

    /// 08:00:00 plus `secs` (fractions allowed).
    fn t(secs: f64) -> Timestamp {
        at("2026-11-27T08:00:00Z") + jiff::SignedDuration::from_secs_f64(secs)
    }

    /// A batch of `n` battery records, the newest stamped `newest` (`Z`
    /// or naive as given).
    fn batch(n: usize, newest: &str) -> String {
        let records: Vec<String> = (0..n)
            .map(|_| format!(r#"{{"@t":"obd.bat","@ts":"{newest}","voltage":12.5}}"#))
            .collect();
        format!("[{}]", records.join(","))
    }

    /// An upload of `body` arriving at `secs`, answered 200.
    fn upload(id: u64, secs: f64, body: &str) -> RequestEvent {
        let mut e = crate::fixtures::accepted(id, t(secs), Some(UNIT), body);
        e.naive_timestamps = crate::capture::load::count_records(body).naive;
        e
    }

    /// A copy of `first` arriving at `secs`, answered as `mode` made it.
    fn copy_of(first: &RequestEvent, id: u64, secs: f64, mode: &str, status: u16) -> RequestEvent {
        let mut e = first.clone();
        e.id = id;
        e.received = t(secs);
        crate::fixtures::answered_by_mode(e, mode, status, Some(first))
    }

    fn log_of(events: &[RequestEvent]) -> Log {
        let mut log = Log::new(UNIT);
        for e in events {
            log.add(e);
        }
        log
    }

    /// After a reboot the device sends its fail queue (old data), then a
    /// backlog of full batches a splay apart, the last one not full, then
    /// keeps its 60 s cycle. The gaps within that first cycle are no
    /// cycle: until the next upload the cycle is not known (it read 5 s,
    /// and the device went late, overdue and silent in the 60 s after:
    /// a device-realism review); after it, that gap is the cycle.
    #[test]
    fn a_backlog_after_a_reboot_is_no_cycle() {
        let now = |secs: f64| {
            let stamp = t(secs).to_string();
            stamp.trim_end_matches('Z').to_string()
        };
        let mut events = vec![
            upload(1, 0.0, &batch(100, "2026-11-26T09:00:00")),
            upload(2, 3.0, &batch(20, "2026-11-26T09:10:00")),
        ];
        let mut secs = 3.0;
        for (i, splay) in [4.0, 6.0, 5.0, 4.5, 5.5, 6.0].iter().enumerate() {
            secs += splay;
            events.push(upload(3 + i as u64, secs, &batch(100, &now(secs))));
        }
        secs += 5.0;
        events.push(upload(9, secs, &batch(37, &now(secs))));
        let log = log_of(&events);
        let up = of(&log, t(secs + 50.0)).unwrap();
        assert_eq!((up.cycle, up.keeping), (None, Keeping::Learning), "{up:?}");
        // The first cycle after it: its gap is the cycle.
        let next = secs + 62.0;
        events.push(upload(10, next, &batch(41, &now(next))));
        let up = of(&log_of(&events), t(next + 50.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(62)), Keeping::OnTime),
            "{up:?}"
        );
    }

    /// Batches of 100 or more records that set the largest so far are
    /// taken for full, but a gap longer than the device's splay after one
    /// is its cycle all the same: a short trip on a device batching 1 000
    /// left no gap between cycles, and the device gone quiet read learning
    /// for ever (a review). With nothing but full batches a splay apart,
    /// it is silent after 10 minutes.
    #[test]
    fn a_device_quiet_before_its_cycle_is_known_goes_silent() {
        let fresh = "2026-11-27T08:00:00";
        let log = log_of(&[
            upload(1, 0.0, &batch(150, fresh)),
            upload(2, 65.0, &batch(180, fresh)),
            upload(3, 130.0, &batch(120, fresh)),
        ]);
        // Full, but followed by no upload within the device's splay: the
        // gaps are its cycle.
        let up = of(&log, t(130.0 + 3600.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(65)), Keeping::Silent),
            "{up:?}"
        );
        // Nothing but full batches a splay apart: not known, and silent
        // once quiet for 10 minutes.
        let log = log_of(&[
            upload(1, 0.0, &batch(150, fresh)),
            upload(2, 5.0, &batch(180, fresh)),
            upload(3, 10.0, &batch(180, fresh)),
        ]);
        let up = of(&log, t(10.0 + 601.0)).unwrap();
        assert_eq!((up.cycle, up.keeping), (None, Keeping::Silent), "{up:?}");
    }

    /// A batch refused before it was captured (a body refused 400, a
    /// token rotated on the device) is kept by the device, which tries
    /// again every cycle: retrying, judged by its attempts, not overdue
    /// then silent by its last captured upload (a truthfulness probe).
    /// Once it stops trying, overdue and silent as ever.
    #[test]
    fn a_device_refused_before_capture_every_cycle_is_retrying() {
        let body = batch(3, "2026-11-27T08:00:00Z");
        let mut events: Vec<RequestEvent> =
            (0..4).map(|i| upload(i, 60.0 * i as f64, &body)).collect();
        for i in 4..10u64 {
            let mut refused = upload(i, 60.0 * i as f64, "[{");
            refused.status = 400;
            refused.captured = false;
            events.push(refused);
        }
        let log = log_of(&events);
        let up = of(&log, t(9.0 * 60.0 + 30.0)).unwrap();
        assert_eq!(up.keeping, Keeping::Retrying, "{up:?}");
        assert_eq!(log.refusals_text(), "400×6");
        let up = of(&log, t(9.0 * 60.0 + 700.0)).unwrap();
        assert_eq!(up.keeping, Keeping::Silent, "{up:?}");
        // Never captured at all: its attempts alone.
        let mut never = upload(1, 0.0, &body);
        never.status = 400;
        never.captured = false;
        let log = log_of(std::slice::from_ref(&never));
        assert_eq!(of(&log, t(30.0)).unwrap().keeping, Keeping::Retrying);
        assert_eq!(of(&log, t(700.0)).unwrap().keeping, Keeping::Silent);
        // A 401 may be anyone sending its unit-id: counted, no attempt.
        never.status = 401;
        let log = log_of(&[never]);
        assert_eq!(
            (of(&log, t(30.0)), log.refusals_text().as_str()),
            (None, "401×1")
        );
    }

    /// A clock hours behind makes every batch old data; a device on its
    /// cycle is still learned, the gap after an old batch being its cycle
    /// when nothing follows within the splay (it read learning: a
    /// truthfulness probe).
    #[test]
    fn a_clock_hours_behind_keeps_its_cycle() {
        // Stamped five hours before they arrive.
        let behind = |secs: f64| {
            let stamp = t(secs) - jiff::SignedDuration::from_hours(5);
            stamp.to_string().trim_end_matches('Z').to_string()
        };
        let events: Vec<RequestEvent> = (0..5)
            .map(|i| upload(i, 60.0 * i as f64, &batch(3, &behind(60.0 * i as f64))))
            .collect();
        let log = log_of(&events);
        assert_eq!(log.old_batches, 5);
        // Flagged: the same lag over several cycles is a clock behind.
        assert!(
            matches!(log.clock_flag(), Some(ClockFlag::Behind(by)) if by.as_secs() / 3600 == 5),
            "{:?}",
            log.clock_flag()
        );
        // A fail queue within one run is not.
        let fail_queue: Vec<RequestEvent> = (0..5)
            .map(|i| {
                let newest = format!("2026-11-26T0{i}:00:00");
                upload(i, 5.0 * i as f64, &batch(100, &newest))
            })
            .collect();
        assert_eq!(log_of(&fail_queue).clock_flag(), None);
        let up = of(&log, t(4.0 * 60.0 + 10.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(60)), Keeping::OnTime),
            "{up:?}"
        );
    }

    /// Once ten retry queues wait, the device sends only them, a splay
    /// apart, each once a cycle: a batch sent again starts the next
    /// cycle. The gaps within a run of copies gave a cycle of 5 s, and
    /// the device read overdue while it kept retrying (a review).
    #[test]
    fn retry_queues_alone_keep_their_cycle() {
        use crate::fixtures::answered_by_mode;
        let firsts: Vec<RequestEvent> = (0..10u64)
            .map(|i| {
                let e = upload(i, i as f64 * 0.1, &batch(3, "2026-11-27T08:00:00Z"));
                answered_by_mode(e, "500", 500, None)
            })
            .collect();
        let mut events = firsts.clone();
        let mut secs = 1.0;
        for cycle in 0..3u64 {
            secs += 60.0;
            for (i, first) in firsts.iter().enumerate() {
                if i > 0 {
                    secs += 5.0;
                }
                let copy = upload(
                    100 + 10 * cycle + i as u64,
                    secs,
                    &batch(3, "2026-11-27T08:00:00Z"),
                );
                events.push(answered_by_mode(copy, "500", 500, Some(first)));
            }
        }
        let log = log_of(&events);
        let up = of(&log, t(secs + 30.0)).unwrap();
        assert_eq!(up.cycle, Some(Duration::from_secs(60)), "{up:?}");
        assert_eq!(up.keeping, Keeping::Retrying, "{up:?}");
    }

    /// Under refusals the device sends its retry queue first, then the
    /// new batch a splay later, then waits its interval (60 s after its
    /// last upload: its uploader sleeps between runs): the gap after the
    /// copy is within the cycle. Counted, the cycle was 4 s.
    #[test]
    fn a_retry_before_the_new_batch_is_within_the_cycle() {
        use crate::fixtures::answered_by_mode;
        let mut events = Vec::new();
        // The first two cycles' batches are refused: two retry queues.
        let mut refused: Vec<RequestEvent> = Vec::new();
        for cycle in 0..5u64 {
            let start = 68.0 * cycle as f64;
            // The retry queues, 4 s apart, before the new batch.
            for (i, first) in refused.iter().enumerate() {
                let copy = upload(
                    100 + 2 * cycle + i as u64,
                    start + 4.0 * i as f64,
                    &batch(5, "2026-11-27T08:00:00Z"),
                );
                events.push(answered_by_mode(copy, "500", 500, Some(first)));
            }
            let new = upload(cycle, start + 8.0, &batch(5, "2026-11-27T08:00:00Z"));
            let new = answered_by_mode(new, "500", 500, None);
            if refused.len() < 2 {
                refused.push(new.clone());
            }
            events.push(new);
        }
        let up = of(&log_of(&events), t(4.0 * 68.0 + 9.0)).unwrap();
        assert_eq!(up.cycle, Some(Duration::from_secs(60)), "{up:?}");
    }

    /// A batch refused after capture is sent again first in each run,
    /// beside new batches acknowledged: the device reads on time, and
    /// the batches it holds are counted until one copy is acknowledged,
    /// or until it stops coming (parked after its MAX RETRY failures).
    /// It read `retrying` only for the splay before each new batch, and
    /// nothing said a batch was held (closing note 47).
    #[test]
    fn batches_the_device_holds_unacknowledged_are_counted_until_acked_or_parked() {
        use crate::fixtures::answered_by_mode;
        let stamp = |secs: f64| t(secs - 1.0).to_string();
        let new = |id: u64, secs: f64| upload(id, secs, &batch(5, &stamp(secs)));
        let mut log = Log::new(UNIT);
        // Cycles 60 s apart, the new batch acknowledged each time.
        for (i, secs) in [0.0, 60.0, 120.0].into_iter().enumerate() {
            log.add(&new(i as u64, secs));
        }
        assert_eq!(log.unacked(), 0);
        // A batch refused 500; the next run, it is refused again and the
        // new batch is hung up on.
        let refused = answered_by_mode(new(10, 180.0), "500", 500, None);
        log.add(&refused);
        log.add(&copy_of(&refused, 11, 240.0, "500", 500));
        let hung = answered_by_mode(new(12, 242.0), "hangup", NO_ANSWER, None);
        log.add(&hung);
        assert_eq!(log.unacked(), 2);
        // Each run: the refused one again (refused), the hung-up one again
        // (hung up on: the device's loop stops there, so nothing is left
        // out for good), then nothing new.
        for run in 1..=3u64 {
            let start = 240.0 + 60.0 * run as f64;
            log.add(&copy_of(&refused, 20 + run, start, "500", 500));
            log.add(&copy_of(&hung, 30 + run, start + 2.0, "hangup", NO_ANSWER));
        }
        assert_eq!(log.unacked(), 2, "held through the runs");
        // A run: the refused one refused, the hung-up one acknowledged at
        // last, a new batch acknowledged: one left, and the device on time.
        log.add(&copy_of(&refused, 40, 480.0, "500", 500));
        log.add(&copy_of(&hung, 41, 482.0, "ok", 200));
        log.add(&new(42, 484.0));
        assert_eq!(log.unacked(), 1);
        let up = of(&log, log.last_seen.unwrap()).unwrap();
        assert_eq!(up.keeping, Keeping::OnTime, "its new batch acknowledged");
        // The next run leaves the refused one out: parked (MAX RETRY),
        // seen once the run after it begins without a copy either (a run
        // of new batches alone may be a boot's fail queue, its retry
        // queues still to come).
        log.add(&new(50, 544.0));
        assert_eq!(log.unacked(), 1, "a run of new batches alone, not over yet");
        // An answer held back 15 s may have come after the device gave up
        // (10 s in its code): held until a run without it says it was
        // taken. One held back a second was not.
        log.add(&answered_by_mode(new(60, 604.0), "late:1", 200, None));
        assert_eq!(log.unacked(), 0, "parked: left out of a run");
        log.add(&answered_by_mode(new(61, 664.0), "late:15", 200, None));
        assert_eq!(log.unacked(), 1, "late:15 may be past the device's timeout");
        log.add(&new(62, 724.0));
        log.add(&new(63, 784.0));
        assert_eq!(log.unacked(), 0, "not sent again: the device took the 200");
    }

    /// The device's uploader as its code does it (`cloud_cache.py`): each
    /// run its retry queues oldest first, each waiting a splay times the
    /// queues left; a refused one parked after `max_retry` failures; the
    /// loop stopped by a hang-up; no new batch while 10 queues are left;
    /// else the batch it cached after a hang-up, then a new one, which
    /// becomes a retry queue when refused. `answer(run, nth)` says how the
    /// receiver answers the run's nth upload.
    struct Device {
        retry: Vec<(RequestEvent, u32)>,
        cached: Option<RequestEvent>,
        max_retry: u32,
        secs: f64,
        next: u64,
        rng: u64,
        /// How far its clock is behind (its batches old data when it is
        /// hours).
        behind: f64,
    }

    impl Device {
        fn new(max_retry: u32) -> Device {
            Device {
                retry: Vec::new(),
                cached: None,
                max_retry,
                secs: 0.0,
                next: 1,
                rng: 7,
                behind: 0.0,
            }
        }

        fn splay(&mut self) -> f64 {
            self.rng = self
                .rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.rng >> 33) % 11) as f64
        }

        /// What it holds, and how many it parked in this run.
        fn held(&self) -> usize {
            self.retry.len() + usize::from(self.cached.is_some())
        }

        /// One run into `log`: the batches it parked, whether it sent a
        /// new one, and whether it sent a copy.
        fn run(
            &mut self,
            log: &mut Log,
            answer: &dyn Fn(u64, usize) -> &'static str,
            run: u64,
        ) -> (usize, bool, bool) {
            use crate::fixtures::answered_by_mode;
            let mut nth = 0;
            let mut send = |dev: &mut Device, first: Option<&RequestEvent>, wait: f64| {
                dev.secs += wait;
                let mode = answer(run, nth);
                nth += 1;
                let status = match mode {
                    "ok" => 200,
                    "hangup" => NO_ANSWER,
                    _ => 500,
                };
                let id = dev.next;
                dev.next += 1;
                let e = match first {
                    Some(first) => copy_of(first, id, dev.secs, mode, status),
                    None => {
                        let body = batch(5, &t(dev.secs - 1.0 - dev.behind).to_string());
                        answered_by_mode(upload(id, dev.secs, &body), mode, status, None)
                    }
                };
                log.add(&e);
                (e, status)
            };
            let copies = !self.retry.is_empty() || self.cached.is_some();
            let mut left = self.retry.len();
            let mut parked = 0;
            let mut kept = Vec::new();
            let queues = std::mem::take(&mut self.retry);
            let mut broken = false;
            for (first, failures) in queues {
                if broken {
                    kept.push((first, failures));
                    continue;
                }
                let wait = self.splay() * left as f64 + 0.1;
                match send(self, Some(&first), wait).1 {
                    200 => left -= 1,
                    NO_ANSWER => {
                        broken = true;
                        kept.push((first, failures));
                    }
                    _ if failures + 1 >= self.max_retry => parked += 1,
                    _ => kept.push((first, failures + 1)),
                }
            }
            self.retry = kept;
            let mut sent_new = false;
            if left < RETRY_QUEUES_PAUSE {
                if let Some(first) = self.cached.take() {
                    let wait = self.splay() + 0.1;
                    match send(self, Some(&first), wait).1 {
                        200 => {}
                        NO_ANSWER => self.cached = Some(first),
                        _ => self.retry.push((first, 0)),
                    }
                }
                if self.cached.is_none() {
                    sent_new = true;
                    let wait = self.splay() + 0.1;
                    match send(self, None, wait) {
                        (_, 200) => {}
                        (e, NO_ANSWER) => self.cached = Some(e),
                        (e, _) => self.retry.push((e, 0)),
                    }
                }
            }
            self.secs += 60.0;
            (parked, sent_new, copies)
        }
    }

    /// The count of batches held, against a model of the device's
    /// uploader through refusal storms (parking at 10 failures, and at
    /// 30 as its settings page has it; pausing at 10 queues), flaky
    /// answers and hang-ups: at most what it holds and what it parked in
    /// its last two runs (a batch left out of a run is seen at the run's
    /// end, which the next upload tells), and exactly what it holds once
    /// runs come with new batches again. It counted parked batches for
    /// two cycles and two minutes, `22 unacked` for 9 held (a review).
    #[test]
    fn the_count_of_batches_held_follows_the_devices_uploader() {
        let flaky = |run: u64, nth: usize| -> &'static str {
            match (run * 7 + nth as u64 * 3) % 5 {
                0 | 1 => "500",
                2 if run.is_multiple_of(4) => "hangup",
                _ => "ok",
            }
        };
        let storm = |run: u64, _nth: usize| -> &'static str {
            if (5..45).contains(&run) { "500" } else { "ok" }
        };
        // Queues built up, then a hang-up at the first of them: the rest
        // of that run's queues are not sent, and not parked.
        let cut_short = |run: u64, nth: usize| -> &'static str {
            match run {
                5..12 => "500",
                12 | 13 if nth == 0 => "hangup",
                12 | 13 => "500",
                _ => "ok",
            }
        };
        for (max_retry, answer, behind) in [
            (10, &storm as &dyn Fn(u64, usize) -> &'static str, 0.0),
            (30, &storm, 0.0),
            (10, &flaky, 0.0),
            (1, &flaky, 0.0),
            (10, &cut_short, 0.0),
            // A clock hours behind: every batch old data, which ends a
            // run all the same (one held read held for ever, a review).
            (10, &storm, 7200.0),
        ] {
            let mut device = Device::new(max_retry);
            device.behind = behind;
            let mut log = Log::new(UNIT);
            let mut parked = [0; 2];
            let mut seen_paused = false;
            for run in 0..70u64 {
                let (now, sent_new, sent_copy) = device.run(&mut log, answer, run);
                parked = [parked[1], now];
                let held = device.held();
                let counted = log.unacked();
                // Exact once a run with copies and new data is over; a run
                // of new data alone is over only when the next begins.
                let exact = sent_new && sent_copy;
                let most = if exact {
                    held + now
                } else {
                    held + parked[0] + now
                };
                let least = if exact { most } else { held };
                assert!(
                    (least..=most).contains(&counted),
                    "max retry {max_retry}, run {run}: {counted} counted, {held} held, {parked:?} parked"
                );
                // Paused is said only of a run that sent nothing new.
                assert!(
                    !(log.paused() && sent_new),
                    "max retry {max_retry}, run {run}"
                );
                seen_paused |= log.paused();
            }
            // At 30 failures the storm keeps ten queues for runs on end.
            assert_eq!(seen_paused, max_retry == 30, "max retry {max_retry}");
            assert!(behind == 0.0 || log.behind().is_some());
            assert_eq!(log.unacked(), device.held(), "max retry {max_retry}");
        }
    }

    /// After a boot the device sends its fail queue first (batches made
    /// again of what it parked, minutes old: no copies), then its retry
    /// queues: the batches it holds stay counted through the fail queue
    /// (they were all taken for parked at its first batch, a review).
    #[test]
    fn a_fail_queue_after_a_boot_parks_nothing_it_holds() {
        use crate::fixtures::answered_by_mode;
        let new = |id: u64, secs: f64| upload(id, secs, &batch(5, &t(secs - 1.0).to_string()));
        let mut log = Log::new(UNIT);
        for (i, secs) in [0.0, 60.0, 120.0].into_iter().enumerate() {
            log.add(&new(i as u64, secs));
        }
        let refused = answered_by_mode(new(10, 180.0), "500", 500, None);
        log.add(&refused);
        assert_eq!(log.unacked(), 1);
        // The boot: two batches of its fail queue (stamped 10 minutes
        // ago), then the retry queue, then new data.
        let old = |id: u64, secs: f64| upload(id, secs, &batch(100, &t(secs - 600.0).to_string()));
        log.add(&old(20, 400.0));
        log.add(&old(21, 405.0));
        assert_eq!(
            log.unacked(),
            1,
            "the fail queue comes before the retry queues"
        );
        log.add(&copy_of(&refused, 22, 410.0, "500", 500));
        log.add(&new(23, 415.0));
        assert_eq!(log.unacked(), 1);
        // Hung up on next time: still in its retry queue.
        log.add(&copy_of(&refused, 24, 475.0, "hangup", NO_ANSWER));
        assert_eq!((log.unacked(), log.retry_queues()), (1, 1));
    }

    /// A copy answered 200 past the device's timeout is named by the
    /// copies after it (`duplicate_of`): they are the same batch, counted
    /// once and keyed by its first copy (a second key counted it twice
    /// and broke a run's order, a review).
    #[test]
    fn copies_naming_a_late_acknowledged_copy_are_the_same_batch() {
        use crate::fixtures::{answered_by_mode, duplicate};
        let body = batch(5, &t(-1.0).to_string());
        let refused = answered_by_mode(upload(1, 0.0, &body), "500", 500, None);
        let mut log = log_of(std::slice::from_ref(&refused));
        let late = answered_by_mode(upload(2, 60.0, &body), "late:15", 200, Some(&refused));
        log.add(&late);
        assert_eq!(log.unacked(), 1);
        let again = answered_by_mode(duplicate(&late, 3, t(120.0)), "500", 500, None);
        log.add(&again);
        assert_eq!(log.unacked(), 1);
        assert_eq!(log.arrivals().last().map(|a| a.batch), Some(t(0.0)));
        assert_eq!((log.retries, log.resends), (1, 1));
    }

    /// A batch held through a backlog of more new batches than are kept
    /// by key: those acknowledged make room first (it dropped out of the
    /// count after 64, a review).
    #[test]
    fn a_batch_held_through_a_long_backlog_stays_counted() {
        use crate::fixtures::answered_by_mode;
        let full = |id: u64, secs: f64| upload(id, secs, &batch(100, &t(secs - 1.0).to_string()));
        let mut log = Log::new(UNIT);
        let refused = answered_by_mode(full(1, 0.0), "500", 500, None);
        log.add(&refused);
        log.add(&copy_of(&refused, 2, 60.0, "500", 500));
        for i in 0..(ANSWERS_KEPT as u64 + 10) {
            log.add(&full(10 + i, 61.0 + i as f64));
        }
        assert_eq!(log.unacked(), 1);
    }

    /// Ten retry queues and nothing else, run after run, the ring of
    /// arrivals starting mid-run: the cycle is the gap between runs, not
    /// a splay within one (it read 4 s against 60 s, a review).
    #[test]
    fn a_device_paused_behind_ten_queues_keeps_its_cycle() {
        use crate::fixtures::answered_by_mode;
        let firsts: Vec<RequestEvent> = (0..10u64)
            .map(|i| {
                let secs = i as f64 * 60.0;
                answered_by_mode(
                    upload(i, secs, &batch(5, &t(secs - 1.0).to_string())),
                    "500",
                    500,
                    None,
                )
            })
            .collect();
        let mut log = Log::new(UNIT);
        for e in &firsts {
            log.add(e);
        }
        let mut secs = 600.0;
        for run in 0..5u64 {
            for (i, first) in firsts.iter().enumerate() {
                log.add(&copy_of(first, 100 + run * 10 + i as u64, secs, "500", 500));
                secs += 4.0;
            }
            secs += 60.0;
        }
        assert!(log.arrivals().len() == ARRIVALS_KEPT && !ARRIVALS_KEPT.is_multiple_of(10));
        let cycle = log.cycle().unwrap();
        assert!(cycle >= Duration::from_secs(60), "{cycle:?}");
    }

    /// With N retry queues the device's uploader waits up to N times its
    /// 10 s splay before each POST of them: at a 15 s cycle, five queues
    /// put 50 s between two uploads of a device keeping its schedule,
    /// which read overdue (closing note 47).
    #[test]
    fn retry_queues_stretch_the_schedule_by_their_splay() {
        use crate::fixtures::answered_by_mode;
        let stamp = |secs: f64| t(secs - 1.0).to_string();
        let new = |id: u64, secs: f64| upload(id, secs, &batch(5, &stamp(secs)));
        let mut log = Log::new(UNIT);
        for i in 0..5u64 {
            log.add(&new(i, 15.0 * i as f64));
        }
        // Five runs, each new batch refused, each run sending the retry
        // queues first, a second apart.
        let mut refused: Vec<RequestEvent> = Vec::new();
        for i in 5..10u64 {
            let start = 15.0 * i as f64 - refused.len() as f64;
            for (j, first) in refused.iter().enumerate() {
                log.add(&copy_of(
                    first,
                    100 * i + j as u64,
                    start + j as f64,
                    "500",
                    500,
                ));
            }
            let e = answered_by_mode(new(i, 15.0 * i as f64), "500", 500, None);
            log.add(&e);
            refused.push(e);
        }
        assert_eq!(log.retry_queues(), 5);
        // The next run's first retry, 50 s on.
        log.add(&copy_of(&refused[0], 20, 185.0, "500", 500));
        let up = of(&log, t(235.0)).unwrap();
        assert_eq!(up.cycle, Some(Duration::from_secs(15)), "{up:?}");
        assert_eq!(up.keeping, Keeping::Retrying, "{up:?}");
        // A hang-up waits in the upload cache, no retry queue: no stretch.
        assert_eq!(log.unacked(), 5);
        let mut log = Log::new(UNIT);
        for i in 0..5u64 {
            log.add(&new(i, 15.0 * i as f64));
        }
        let hung = answered_by_mode(new(5, 75.0), "hangup", NO_ANSWER, None);
        log.add(&hung);
        assert_eq!((log.unacked(), log.retry_queues()), (1, 0));
        assert_eq!(of(&log, t(75.0 + 50.0)).unwrap().keeping, Keeping::Overdue);
    }

    #[test]
    fn batch_fill_and_a_backlog_draining_then_drained() {
        let fresh = "2026-11-27T08:00:00Z";
        let mut events = vec![
            upload(1, 0.0, &batch(40, fresh)),
            upload(2, 60.0, &batch(30, fresh)),
            upload(3, 120.0, &batch(35, fresh)),
        ];
        assert_eq!(log_of(&events).fill(), Some((35, 40)));
        assert_eq!(log_of(&events).draining(), 0);
        // The device fell behind: full batches, each sent as soon as the
        // one before was answered.
        for (i, secs) in [180.0, 180.4, 180.9, 181.3].iter().enumerate() {
            events.push(upload(4 + i as u64, *secs, &batch(100, fresh)));
        }
        let log = log_of(&events);
        assert_eq!((log.fill(), log.draining()), (Some((100, 100)), 4));
        // The next cycle's batch is not full: drained.
        events.push(upload(9, 241.0, &batch(20, fresh)));
        let log = log_of(&events);
        assert_eq!((log.fill(), log.draining()), (Some((20, 100)), 0));
        // Batches that are not full, back to back, are no backlog either.
        events.push(upload(10, 241.5, &batch(25, fresh)));
        assert_eq!(log_of(&events).draining(), 0);
        // Full batches a cycle apart are a busy device, not a backlog.
        let steady: Vec<RequestEvent> = (0..5)
            .map(|i| upload(i, 60.0 * i as f64, &batch(100, fresh)))
            .collect();
        assert_eq!(log_of(&steady).draining(), 0);
        // The same on a cycle of a second, with a little jitter, once the
        // cycle is known (full batches alone, every one followed by the
        // next within the device's splay, are a backlog to it).
        let second: Vec<RequestEvent> = [0.0, 1.0, 2.0, 3.0, 3.98, 4.97]
            .iter()
            .enumerate()
            .map(|(i, secs)| upload(i as u64, *secs, &batch(100 - i % 2, fresh)))
            .collect();
        assert_eq!(log_of(&second).draining(), 0);
        let all_full: Vec<RequestEvent> = [0.0, 1.0, 2.0, 3.0]
            .iter()
            .enumerate()
            .map(|(i, secs)| upload(i as u64, *secs, &batch(100, fresh)))
            .collect();
        assert_eq!(log_of(&all_full).draining(), 4);
    }

    /// A long backlog after its cycle was learned (full batches a splay
    /// apart, more than the arrivals kept) keeps that cycle: it read
    /// learning through every backlog after a refusal (a tmux check).
    #[test]
    fn a_cycle_learned_is_kept_through_a_long_backlog() {
        let fresh = "2026-11-27T08:00:00";
        let mut events: Vec<RequestEvent> = (0..5)
            .map(|i| upload(i, 60.0 * i as f64, &batch(20, fresh)))
            .collect();
        for i in 0..40u64 {
            events.push(upload(10 + i, 300.0 + 5.0 * i as f64, &batch(100, fresh)));
        }
        let log = log_of(&events);
        let up = of(&log, t(300.0 + 5.0 * 39.0 + 2.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(60)), Keeping::OnTime),
            "{up:?}"
        );
        assert_eq!(log.draining(), ARRIVALS_KEPT);
    }

    /// After the receiver was out of reach: the batch the device kept
    /// goes first, then its backlog a splay apart, then a partial batch.
    /// The gap before a full batch is within the run: it read a cycle of
    /// 5 s, and the device silent within its next sleep (a review). With
    /// a cycle learned before an outage, the outage and the backlog
    /// leave it as it was (it kept 5 s, or the outage's 30 minutes).
    #[test]
    fn a_kept_batch_before_a_backlog_and_an_outage_leave_the_cycle_alone() {
        let recent = "2026-11-27T07:40:00";
        let mut events = vec![upload(0, 0.0, &batch(20, recent))];
        for (i, secs) in [5.0, 11.0, 16.0, 22.0, 27.0].iter().enumerate() {
            events.push(upload(1 + i as u64, *secs, &batch(100, recent)));
        }
        events.push(upload(9, 32.0, &batch(37, recent)));
        let log = log_of(&events);
        let up = of(&log, t(32.0 + 55.0)).unwrap();
        assert_eq!((up.cycle, up.keeping), (None, Keeping::Learning), "{up:?}");
        assert_eq!(log_of(&events[..6]).draining(), 5);
        // Ten cycles of 60 s, half an hour out of reach, the kept batch,
        // a backlog longer than the arrivals kept, a partial batch.
        let mut events: Vec<RequestEvent> = (0..10)
            .map(|i| upload(i, 60.0 * i as f64, &batch(20, recent)))
            .collect();
        let mut secs = 540.0 + 1800.0;
        events.push(upload(20, secs, &batch(20, recent)));
        for i in 0..40u64 {
            secs += 5.0;
            events.push(upload(30 + i, secs, &batch(100, recent)));
        }
        secs += 5.0;
        events.push(upload(80, secs, &batch(37, recent)));
        let log = log_of(&events);
        let up = of(&log, t(secs + 30.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(60)), Keeping::OnTime),
            "{up:?}"
        );
        // Of a cycle and an outage, the cycle: gone, silent.
        let log = log_of(&[
            upload(1, 0.0, &batch(20, recent)),
            upload(2, 60.0, &batch(20, recent)),
            upload(3, 1860.0, &batch(20, recent)),
        ]);
        let up = of(&log, t(1860.0 + 900.0)).unwrap();
        assert_eq!(
            (up.cycle, up.keeping),
            (Some(Duration::from_secs(60)), Keeping::Silent),
            "{up:?}"
        );
    }

    /// A backlog sent a splay apart (0 to 10 s between two uploads, as
    /// the device does) drains before its cycle is known: under 1 s was
    /// back to back then, and it was never seen (a truthfulness probe).
    #[test]
    fn a_backlog_a_splay_apart_is_draining_before_the_cycle_is_known() {
        let fresh = "2026-11-27T08:00:00";
        let events: Vec<RequestEvent> = [0.0, 6.5, 7.2, 12.6, 19.0]
            .iter()
            .enumerate()
            .map(|(i, secs)| upload(i as u64, *secs, &batch(100, fresh)))
            .collect();
        let log = log_of(&events);
        let up = of(&log, t(20.0)).unwrap();
        assert_eq!((up.cycle, up.keeping), (None, Keeping::Learning), "{up:?}");
        assert_eq!(log.draining(), 5);
    }

    #[test]
    fn data_lag_and_old_data() {
        let log = log_of(&[upload(1, 7.5, &batch(3, "2026-11-27T08:00:02.5Z"))]);
        assert_eq!(log.lag(), Some(jiff::SignedDuration::from_secs(5)));
        assert_eq!(log.old_batches, 0);
        // A reboot: its fail queue from the day before, then a live batch.
        let stale = upload(2, 60.0, &batch(3, "2026-11-26T07:10:00Z"));
        assert!(old_data(&stale));
        let mut log = log_of(std::slice::from_ref(&stale));
        assert_eq!(
            log.lag(),
            Some(jiff::SignedDuration::from_secs(86_400 + 51 * 60))
        );
        assert!(log.batches.last().unwrap().old());
        let s = summary(std::slice::from_ref(&log), t(61.0));
        assert_eq!(s.old_now.as_deref(), Some(UNIT));
        log.add(&upload(3, 61.0, &batch(3, "2026-11-27T08:00:59Z")));
        assert_eq!(log.old_batches, 1);
        let s = summary(&[log], t(62.0));
        assert_eq!((s.old_batches, s.old_now), (1, None));
        // The threshold: an hour is still current, a second more is not.
        let hour = upload(4, 3600.0, &batch(1, "2026-11-27T08:00:00Z"));
        let over = upload(5, 3601.0, &batch(1, "2026-11-27T08:00:00Z"));
        assert!(!old_data(&hour) && old_data(&over));
    }

    #[test]
    fn a_clock_ahead_or_mixed_timestamps_are_flagged_once_with_a_hint() {
        // Two seconds ahead is the two clocks' difference.
        let log = log_of(&[upload(1, 10.0, &batch(2, "2026-11-27T08:00:12Z"))]);
        assert_eq!(log.clock_flag(), None);
        let mut log = log_of(&[
            upload(1, 10.0, &batch(2, "2026-11-27T08:03:10Z")),
            upload(2, 70.0, &batch(2, "2026-11-27T08:02:10Z")),
        ]);
        let flag = log.clock_flag().unwrap();
        assert_eq!(flag, ClockFlag::Ahead(jiff::SignedDuration::from_secs(180)));
        assert!(
            flag.hint().contains("up to 3m00s after arrival"),
            "{}",
            flag.hint()
        );
        let since = log.clock.ahead.unwrap().1;
        log.add(&upload(3, 130.0, &batch(2, "2026-11-27T08:04:10Z")));
        assert_eq!(
            log.clock.ahead.unwrap().1,
            since,
            "flagged once, when first seen"
        );
        assert_eq!(log.was_ahead(), None);
        // Old data (a fail queue) says nothing of the clock now.
        log.add(&upload(4, 160.0, &batch(2, "2026-11-26T08:00:00Z")));
        assert!(matches!(log.clock_flag(), Some(ClockFlag::Ahead(_))));
        // Synced: on time again, the flag goes and the note says it was.
        log.add(&upload(6, 190.0, &batch(2, "2026-11-27T08:03:09Z")));
        assert_eq!(log.clock_flag(), None, "a clock synced is no longer ahead");
        let (by, until) = log.was_ahead().unwrap();
        assert_eq!(by, jiff::SignedDuration::from_secs(180));
        assert_eq!(until, log.last_arrival().unwrap());
        // Ahead again: flagged anew, by what it is now.
        log.add(&upload(5, 250.0, &batch(2, "2026-11-27T08:05:10Z")));
        assert_eq!(
            log.clock_flag(),
            Some(ClockFlag::Ahead(jiff::SignedDuration::from_secs(60)))
        );
        assert_eq!(log.was_ahead(), None);
        // Naive stamps beside `Z` ones.
        let log = log_of(&[
            upload(1, 10.0, &batch(2, "2026-11-27T08:00:05Z")),
            upload(2, 70.0, &batch(3, "2026-11-27T08:01:05")),
        ]);
        let flag = log.clock_flag().unwrap();
        assert_eq!(flag, ClockFlag::Mixed { naive: 3, zoned: 2 });
        assert!(flag.hint().contains("3 naive"), "{}", flag.hint());
        let naive_only = log_of(&[upload(1, 10.0, &batch(2, "2026-11-27T08:00:05"))]);
        assert_eq!(naive_only.clock_flag(), None);
    }

    #[test]
    fn retries_re_sends_and_refusals_are_counted_apart() {
        use crate::fixtures::answered_by_mode;
        let body = batch(2, "2026-11-27T08:00:00Z");
        let refused = answered_by_mode(upload(1, 1.0, &body), "500", 500, None);
        let retried = answered_by_mode(upload(2, 61.0, &body), "ok", 200, Some(&refused));
        let other = batch(3, "2026-11-27T08:02:00Z");
        let unanswered = answered_by_mode(upload(3, 121.0, &other), "hangup", NO_ANSWER, None);
        let resent = answered_by_mode(upload(4, 181.0, &other), "ok", 200, Some(&unanswered));
        let third = batch(4, "2026-11-27T08:03:00Z");
        let late = answered_by_mode(upload(5, 241.0, &third), "late:70", 200, None);
        let mut after_late = upload(6, 301.0, &third);
        after_late.duplicate_of = Some(crate::time::format_received(late.received));
        let mut wrong_size = upload(7, 361.0, &body);
        wrong_size.status = 413;
        wrong_size.captured = false;
        let log = log_of(&[
            refused, retried, unanswered, resent, late, after_late, wrong_size,
        ]);
        assert_eq!((log.retries, log.resends), (1, 2));
        assert_eq!(log.refusals_text(), "hangup×1 413×1 500×1");
        assert_eq!(log.batches.len(), 3, "copies are not new batches");
    }

    /// Refusals too long for their cell give the total and the kinds,
    /// most first, so that no count is cut in half.
    #[test]
    fn refusals_that_do_not_fit_give_the_total_and_the_kinds() {
        let mut log = Log::new("a");
        log.refusals = [(NO_ANSWER, 7), (503, 12), (500, 7)].into();
        assert_eq!(log.refusals_within(26), "hangup×7 500×7 503×12");
        assert_eq!(log.refusals_within(14), "26: 503 hangup 500");
    }

    #[test]
    fn a_retry_after_a_refusal_then_no_answer_is_a_re_send() {
        use crate::fixtures::answered_by_mode;
        let body = batch(2, "2026-11-27T08:00:00Z");
        let first = answered_by_mode(upload(1, 1.0, &body), "503", 503, None);
        let second = answered_by_mode(upload(2, 61.0, &body), "hangup", NO_ANSWER, Some(&first));
        let third = answered_by_mode(upload(3, 121.0, &body), "ok", 200, Some(&first));
        let log = log_of(&[first, second, third]);
        assert_eq!((log.retries, log.resends), (1, 1));
    }

    /// A batch acknowledged on a retry, then sent again and refused ten
    /// times: one re-send (the device missed the acknowledgement), then
    /// nine retries after refusals. The copies name the acknowledged retry
    /// (`duplicate_of`), which was not remembered: all ten counted as
    /// re-sends (a cross-tool probe; the simulator said 9 retries).
    #[test]
    fn copies_after_a_retry_acknowledged_follow_its_answer() {
        use crate::fixtures::answered_by_mode;
        let body = batch(2, "2026-11-27T08:00:00Z");
        let first = answered_by_mode(upload(1, 1.0, &body), "500", 500, None);
        let acked = answered_by_mode(upload(2, 61.0, &body), "ok", 200, Some(&first));
        let mut events = vec![first, acked.clone()];
        for i in 0..10 {
            let mut copy =
                answered_by_mode(upload(3 + i, 121.0 + i as f64, &body), "500", 500, None);
            copy.duplicate_of = Some(crate::time::format_received(acked.received));
            events.push(copy);
        }
        let log = log_of(&events);
        assert_eq!((log.retries, log.resends), (1 + 9, 1));
    }

    #[test]
    fn the_sparkline_gets_the_gaps_between_uploads() {
        let body = batch(1, "2026-11-27T08:00:00Z");
        let log = log_of(&[
            upload(1, 0.0, &body),
            upload(2, 60.0, &body),
            upload(3, 60.25, &body),
            upload(4, 125.0, &body),
        ]);
        assert_eq!(log.gaps_ms(), [60_000, 250, 64_750]);
    }

    #[test]
    fn the_summary_counts_states_and_names_the_worst() {
        let body = batch(1, "2026-11-27T08:00:00Z");
        let keeping = |unit: &str, arrivals: &[f64]| {
            let mut log = Log::new(unit);
            for (i, secs) in arrivals.iter().enumerate() {
                log.add(&upload(i as u64, *secs, &body));
            }
            log
        };
        let logs = [
            keeping("a", &[0.0, 60.0, 120.0, 180.0]),
            keeping("b", &[0.0, 60.0, 120.0, 170.0]),
            keeping("c", &[0.0, 60.0, 120.0, 175.0]),
            keeping("d", &[0.0, 30.0, 60.0]),
        ];
        // At 260 s the 30 s device is overdue; at 330 s the others are late.
        let s = summary(&logs, t(260.0));
        assert_eq!((s.on_time, s.late, s.overdue), (3, 0, 1), "{s:?}");
        assert_eq!(s.worst.as_ref().map(|(u, _)| u.as_str()), Some("d"));
        let s = summary(&logs[..3], t(330.0));
        assert_eq!((s.on_time, s.late), (0, 3));
        assert_eq!(
            s.worst.as_ref().map(|(u, _)| u.as_str()),
            Some("b"),
            "the longest silent of equally late devices"
        );
    }

    /// A device retrying while late by its cycle is worse than one only
    /// late, when it has waited longer: retrying ranked under late.
    #[test]
    fn a_device_retrying_and_late_ranks_by_its_lateness() {
        use crate::fixtures::answered_by_mode;
        let body = batch(1, "2026-11-27T08:00:00Z");
        let mut late = Log::new("late");
        for (i, secs) in [0.0, 60.0, 120.0, 180.0].iter().enumerate() {
            late.add(&upload(i as u64, *secs, &body));
        }
        let mut retrying = Log::new("retrying");
        for (i, secs) in [0.0, 60.0, 120.0].iter().enumerate() {
            retrying.add(&upload(10 + i as u64, *secs, &body));
        }
        retrying.add(&answered_by_mode(
            upload(13, 170.0, &body),
            "500",
            500,
            None,
        ));
        // At 300 s both are late by their cycle (60 s); the one retrying
        // has waited 130 s since its last upload, the other 120 s.
        let now = t(300.0);
        assert_eq!(of(&retrying, now).unwrap().keeping, Keeping::Retrying);
        assert_eq!(of(&late, now).unwrap().keeping, Keeping::Late);
        let s = summary(&[late, retrying], now);
        assert_eq!((s.late, s.retrying), (1, 1));
        assert_eq!(s.worst.as_ref().map(|(u, _)| u.as_str()), Some("retrying"));
    }

    /// A device uploading every 2 s whose uploads are answered late or
    /// not at all waits for the answer (10 s here) before its next: those
    /// gaps are no cycle, and the batches after them no backlog. The
    /// cycle read 10 s and the backlog "draining" (a UX review).
    #[test]
    fn a_wait_for_an_answer_is_no_cycle_and_the_device_is_retrying() {
        use crate::fixtures::answered_by_mode;
        let body = |i: u64| batch(60, &format!("2026-11-27T08:00:{:02}Z", i % 60));
        let mut events = Vec::new();
        let mut secs = 0.0;
        for i in 0..4u64 {
            events.push(upload(i, secs, &body(i)));
            secs += 2.0;
        }
        // Each held 10 s: hung up on, then late, twice; the copy comes at
        // once after the wait, and the next batch with it.
        let held = [("late:15", 200), ("hangup", NO_ANSWER)];
        for (i, (mode, status)) in held.iter().chain(&held).enumerate() {
            let i = 10 + 2 * i as u64;
            let first = answered_by_mode(upload(i, secs, &body(i)), mode, *status, None);
            secs += 10.0;
            let copy = answered_by_mode(upload(i + 1, secs, &body(i)), mode, *status, Some(&first));
            events.extend([first, copy]);
            secs += 0.05;
        }
        let log = log_of(&events);
        let now = t(secs + 0.5);
        let up = of(&log, now).unwrap();
        assert_eq!(up.cycle, Some(Duration::from_secs(2)), "{up:?}");
        assert_eq!(log.draining(), 0);
        // Nothing acknowledged since the first late answer (15 s, past
        // the device's timeout: no acknowledgement it got): retrying.
        assert_eq!(up.keeping, Keeping::Retrying);
        let late = events[4].received;
        assert_eq!(log.unacked_since, Some(late));
        assert_eq!(
            log.last_answer.map(|(_, a)| a.said()).as_deref(),
            Some("nothing (hangup)")
        );
        let s = summary(std::slice::from_ref(&log), now);
        assert_eq!((s.retrying, s.on_time), (1, 0));
        // Overdue says more than retrying.
        assert_eq!(of(&log, t(secs + 12.0)).unwrap().keeping, Keeping::Overdue);
        // An upload acknowledged in time ends it.
        let mut log = log;
        log.add(&upload(20, secs + 1.0, &body(20)));
        assert_eq!(log.unacked_since, None);
        assert_eq!(of(&log, t(secs + 1.5)).unwrap().keeping, Keeping::OnTime);
        // A refusal (answered at once) is a retry too, and keeps the cycle.
        let refused = answered_by_mode(upload(21, secs + 3.0, &body(21)), "500", 500, None);
        log.add(&refused);
        let up = of(&log, t(secs + 3.5)).unwrap();
        assert_eq!(
            (up.keeping, up.cycle),
            (Keeping::Retrying, Some(Duration::from_secs(2)))
        );
        // An older event coming after a newer one changes nothing.
        let mut early = upload(22, secs + 2.5, &body(22));
        early.status = 200;
        log.add(&early);
        assert_eq!(log.unacked_since, Some(refused.received));
    }

    /// A late 200 may reach the device (`late:1` is well inside its
    /// timeout): no retrying for it. Under `hangup` throughout, the
    /// device's pace (its cycle and its timeout) is its cycle, so it goes
    /// overdue and silent when it stops; it was retrying for ever, with no
    /// cycle (a review).
    #[test]
    fn a_late_answer_is_no_retry_and_a_device_always_hung_up_on_has_a_pace() {
        use crate::fixtures::answered_by_mode;
        let body = batch(1, "2026-11-27T08:00:00Z");
        let late: Vec<RequestEvent> = (0..10)
            .map(|i| answered_by_mode(upload(i, 61.0 * i as f64, &body), "late:1", 200, None))
            .collect();
        let log = log_of(&late);
        assert_eq!(log.unacked_since, None);
        let up = of(&log, t(61.0 * 9.0 + 1.0)).unwrap();
        assert_eq!(up.keeping, Keeping::OnTime, "{up:?}");
        let hung: Vec<RequestEvent> = (0..10)
            .map(|i| {
                let e = upload(i, 70.0 * i as f64, &body);
                answered_by_mode(e, "hangup", NO_ANSWER, None)
            })
            .collect();
        let log = log_of(&hung);
        let now = |secs: f64| t(70.0 * 9.0 + secs);
        let up = of(&log, now(1.0)).unwrap();
        assert_eq!(
            (up.keeping, up.cycle),
            (Keeping::Retrying, Some(Duration::from_secs(70)))
        );
        assert_eq!(of(&log, now(3600.0)).unwrap().keeping, Keeping::Silent);
    }

    /// Until a cycle is known a device is learning it, and silent once
    /// quiet for ten of the device's default cycles: a device that went
    /// quiet before one was learned read "learning" for ever (a review).
    #[test]
    fn two_uploads_are_not_enough_to_know_a_cycle() {
        assert_eq!(keeping(&[0, 60], 600), (None, Keeping::Learning));
        assert_eq!(keeping(&[0, 60], 661), (None, Keeping::Silent));
        assert_eq!(
            of_arrivals(&[], at("2026-11-27T08:00:00Z")),
            None,
            "no upload, no uplink"
        );
    }
}

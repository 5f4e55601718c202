//! What each forward target is doing, in the words the header, the status
//! page, the headless output and the exit message all use. The forwarders
//! write it; every other wing only reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

/// One forward target's state.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardStatus {
    /// The target as shown: its URL without credentials or query.
    pub target: String,
    pub link: Link,
    /// Batches in the capture not yet passed on (the one being sent
    /// included).
    pub pending: u64,
    /// `received` of the oldest batch not yet passed on: the lag.
    pub oldest_waiting: Option<Timestamp>,
    /// Batches the target acknowledged since the start.
    pub forwarded: u64,
    /// Batches set aside for good because the target refused them, in all
    /// (they are listed in the cursor file).
    pub parked: u64,
    /// Why the latest batch was parked.
    pub last_parked: Option<String>,
    /// When the attempt under way was sent, or last heard from (an MQTT
    /// acknowledgement: `ForwardBoard::heard`), while it waits for its
    /// answer: a target that takes the batch and never answers was only
    /// `catching up` for as long as the attempt's timeout (minutes for a
    /// large batch).
    pub sending_since: Option<Timestamp>,
    /// Capture lines the target is done with (passed on, skipped or
    /// parked): with the capture's synced line count, `pending` is
    /// counted afresh on each snapshot, also while a batch hangs.
    pub done_lines: Option<u64>,
}

/// An attempt waiting this long (seconds) for its answer is said.
const NO_ANSWER_SHOWN: i64 = 3;

/// Whether the target takes what it is sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// Nothing tried yet.
    Starting,
    /// The capture read to its end with nothing to send: the target is
    /// not tried until a batch comes. It was shown `up` (a README audit:
    /// also for a target refusing every connection).
    Idle,
    /// The last attempt was acknowledged.
    Up,
    /// Attempts fail since `since`; `error` says how the last one failed.
    Down { since: Timestamp, error: String },
}

impl ForwardStatus {
    pub fn new(target: String) -> ForwardStatus {
        ForwardStatus {
            target,
            link: Link::Starting,
            pending: 0,
            oldest_waiting: None,
            forwarded: 0,
            parked: 0,
            last_parked: None,
            sending_since: None,
            done_lines: None,
        }
    }

    /// ` · no answer for 42 s` when the attempt under way has waited
    /// `NO_ANSWER_SHOWN` or more, else nothing.
    fn waiting(&self, now: Timestamp) -> String {
        // In milliseconds: whole seconds of each instant made a wait of
        // 2.1 s read 3 s (a broker answering every 2.7 s was said to give
        // no answer; a hostile-client probe).
        let waited = self
            .sending_since
            .map(|since| now.as_millisecond().saturating_sub(since.as_millisecond()));
        match waited {
            Some(ms) if ms >= NO_ANSWER_SHOWN * 1000 => {
                format!(" · no answer for {} s", ms / 1000)
            }
            _ => String::new(),
        }
    }

    /// One word for the state: `up`, `catching_up`, `down`, `starting`
    /// or `idle`.
    pub fn kind(&self) -> &'static str {
        match (&self.link, self.pending) {
            (Link::Down { .. }, _) => "down",
            (Link::Starting, 0) => "starting",
            (Link::Idle, 0) => "idle",
            (_, 0) => "up",
            _ => "catching_up",
        }
    }

    /// Seconds between the oldest waiting batch's arrival and `now`.
    pub fn lag_seconds(&self, now: Timestamp) -> Option<u64> {
        let oldest = self.oldest_waiting.filter(|_| self.pending > 0)?;
        Some(u64::try_from(now.as_second() - oldest.as_second()).unwrap_or(0))
    }

    /// The state in a few words: `up`, `catching up 12 batches, lag 40 s`,
    /// `down since 08:01:02 UTC (connection refused), 12 batches waiting`,
    /// then `· parked 1 (413 …)` when any was parked.
    pub fn summary(&self, now: Timestamp) -> String {
        let batches = |n: u64| format!("{n} batch{}", if n == 1 { "" } else { "es" });
        let lag = self
            .lag_seconds(now)
            .map_or(String::new(), |s| format!(", lag {s} s"));
        let mut text = match &self.link {
            Link::Down { since, error } => {
                let mut t = format!("down since {} ({error})", since.strftime("%H:%M:%S UTC"));
                if self.pending > 0 {
                    t.push_str(&format!(", {} waiting{lag}", batches(self.pending)));
                }
                t
            }
            _ if self.pending > 0 => format!("catching up {}{lag}", batches(self.pending)),
            Link::Starting => "starting".to_string(),
            Link::Idle => "nothing sent yet (tried with the first batch)".to_string(),
            Link::Up => "up".to_string(),
        };
        text.push_str(&self.waiting(now));
        if self.parked > 0 {
            text.push_str(&format!(" · parked {}", self.parked));
            if let Some(why) = &self.last_parked {
                text.push_str(&format!(" (last: {why})"));
            }
        }
        text
    }
}

impl ForwardStatus {
    /// The target in a few characters: `host:port`, with `mqtt ` before a
    /// broker (the header's narrow line).
    pub fn short_target(&self) -> String {
        let (scheme, rest) = self.target.split_once("://").unwrap_or(("", &self.target));
        let authority = rest.split('/').next().unwrap_or(rest);
        if scheme.starts_with("mqtt") {
            format!("{scheme} {authority}")
        } else {
            authority.to_string()
        }
    }

    /// `summary` without the error texts, for the header: `up`,
    /// `catching up 12 (lag 40 s)`, `down since 08:01:02, 12 waiting`,
    /// then `· parked 1`.
    pub fn brief(&self, now: Timestamp) -> String {
        let lag = self
            .lag_seconds(now)
            .map_or(String::new(), |s| format!(" (lag {s} s)"));
        let mut text = match &self.link {
            Link::Down { since, .. } => {
                // Since when says how old the backlog is.
                let mut t = format!("down since {}", since.strftime("%H:%M:%S"));
                if self.pending > 0 {
                    t.push_str(&format!(", {} waiting", self.pending));
                }
                t
            }
            _ if self.pending > 0 => format!("catching up {}{lag}", self.pending),
            Link::Starting => "starting".to_string(),
            Link::Idle => "nothing sent yet".to_string(),
            Link::Up => "up".to_string(),
        };
        text.push_str(&self.waiting(now));
        if self.parked > 0 {
            text.push_str(&format!(" · parked {}", self.parked));
        }
        text
    }
}

/// Every target's latest state, shared between the forwarders (writing)
/// and the screen, status page and printer (reading snapshots).
#[derive(Debug, Default)]
pub struct ForwardBoard {
    statuses: Mutex<Vec<ForwardStatus>>,
    /// Complete lines synced to the capture, kept by its writer.
    synced_lines: Mutex<Option<Arc<AtomicU64>>>,
}

impl ForwardBoard {
    /// Adds a target; its index is what `set` takes.
    pub fn register(&self, status: ForwardStatus) -> usize {
        let mut all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        all.push(status);
        all.len() - 1
    }

    /// Counts backlogs against this count of synced capture lines.
    pub fn count_backlog_from(&self, synced_lines: Arc<AtomicU64>) {
        *self.synced_lines.lock().unwrap_or_else(|p| p.into_inner()) = Some(synced_lines);
    }

    pub fn set(&self, index: usize, status: &ForwardStatus) {
        let mut all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = all.get_mut(index) {
            slot.clone_from(status);
        }
    }

    /// Target `index` answered something while its attempt is under way
    /// (one of a batch's MQTT acknowledgements): its wait for an answer
    /// counts from now. A long batch whose acknowledgements kept coming
    /// said `no answer for 149 s` (a hostile-client probe, December 7).
    pub fn heard(&self, index: usize) {
        let mut all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = all.get_mut(index).and_then(|s| s.sending_since.as_mut()) {
            *since = Timestamp::now();
        }
    }

    /// Every target's state, its backlog counted now.
    pub fn snapshot(&self) -> Vec<ForwardStatus> {
        let synced = self
            .synced_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.load(Ordering::SeqCst));
        let mut all = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for s in &mut all {
            if let (Some(synced), Some(done)) = (synced, s.done_lines) {
                s.pending = synced.saturating_sub(done);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_state_the_backlog_and_the_parked() {
        let now: Timestamp = "2026-11-27T08:01:00Z".parse().unwrap();
        let mut s = ForwardStatus::new("http://up/".into());
        assert_eq!(s.summary(now), "starting");
        s.link = Link::Up;
        assert_eq!((s.summary(now).as_str(), s.kind()), ("up", "up"));
        s.pending = 12;
        s.oldest_waiting = Some("2026-11-27T08:00:20Z".parse().unwrap());
        assert_eq!(s.summary(now), "catching up 12 batches, lag 40 s");
        assert_eq!(s.kind(), "catching_up");
        s.link = Link::Down {
            since: "2026-11-27T08:00:30Z".parse().unwrap(),
            error: "connection refused".into(),
        };
        s.parked = 1;
        s.last_parked = Some("413: too large".into());
        assert_eq!(
            s.summary(now),
            "down since 08:00:30 UTC (connection refused), 12 batches waiting, lag 40 s · parked 1 (last: 413: too large)"
        );
        assert_eq!(s.kind(), "down");
        assert_eq!(s.brief(now), "down since 08:00:30, 12 waiting · parked 1");
        // An attempt waiting for its answer, from 3 s.
        s.link = Link::Up;
        s.sending_since = Some("2026-11-27T08:00:58Z".parse().unwrap());
        assert_eq!(s.brief(now), "catching up 12 (lag 40 s) · parked 1");
        // 2.2 s, across three whole seconds: not 3 s.
        let just_after = "2026-11-27T08:01:00.100Z".parse().unwrap();
        s.sending_since = Some("2026-11-27T08:00:57.900Z".parse().unwrap());
        assert_eq!(s.brief(just_after), "catching up 12 (lag 40 s) · parked 1");
        s.sending_since = Some("2026-11-27T08:00:57.050Z".parse().unwrap());
        assert_eq!(
            s.brief(just_after),
            "catching up 12 (lag 40 s) · no answer for 3 s · parked 1"
        );
        s.sending_since = Some("2026-11-27T08:00:18Z".parse().unwrap());
        assert_eq!(
            s.brief(now),
            "catching up 12 (lag 40 s) · no answer for 42 s · parked 1"
        );
        assert_eq!(
            s.summary(now),
            "catching up 12 batches, lag 40 s · no answer for 42 s · parked 1 (last: 413: too large)"
        );
        assert_eq!(s.short_target(), "up");
        let m = ForwardStatus::new("mqtt://b:1883/bench".into());
        assert_eq!(m.short_target(), "mqtt b:1883");
    }

    #[test]
    fn the_backlog_is_counted_at_each_snapshot() {
        let board = ForwardBoard::default();
        let lines = Arc::new(AtomicU64::new(10));
        board.count_backlog_from(lines.clone());
        let mut s = ForwardStatus::new("t".into());
        s.done_lines = Some(7);
        let i = board.register(s);
        assert_eq!(board.snapshot()[i].pending, 3);
        // More lines synced while the forwarder is stuck on one batch.
        lines.store(15, Ordering::SeqCst);
        assert_eq!(board.snapshot()[i].pending, 8);
    }
}

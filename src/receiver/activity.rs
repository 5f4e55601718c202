//! What the receiver knows of each peer's connection, as the closer and
//! its head cap ask it (the server keeps the books: `Connections`).

use std::time::Duration;

/// What the receiver knows of a peer's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A request of it is in hand (being read, decided or answered);
    /// `done` of its requests were done with before it, and `body` is the
    /// body being read now, if one is (by a worker, or drained).
    Busy { done: u64, body: Option<Body> },
    /// Nothing in hand; its last request came or was done `ago`, and
    /// `done` of its requests have been done with so far.
    Quiet { ago: Duration, done: u64 },
    /// No request of it seen (lately: see `Connections`).
    Unseen,
}

impl Activity {
    /// Quiet for at least `d`.
    pub fn quiet_for(self, d: Duration) -> bool {
        match self {
            Activity::Busy { .. } => false,
            Activity::Quiet { ago, .. } => ago >= d,
            Activity::Unseen => true,
        }
    }

    /// A request of it is in hand.
    pub fn busy(self) -> bool {
        matches!(self, Activity::Busy { .. })
    }
}

/// A body being read, as the closer's deadline sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Body {
    /// Which of the connection's requests it belongs to (they are numbered
    /// as workers take them): a cut is for this one only.
    pub seq: u64,
    /// How long it has been read.
    pub took: Duration,
    /// It holds what another body may wait for: the turn for large
    /// bodies, or a share of the wire budget (see `turns`).
    pub holds: bool,
    /// Another body waits now for what it holds.
    pub wanted: bool,
    /// What comes of it earns it time (`heads::arrival_deadline`): not
    /// for a body drained after a refusal without the token, which
    /// nobody waits for (a client trickling 16 KiB/s into a 1 TiB one
    /// kept its drain for as long as it went on: a hostile-client probe).
    pub earns: bool,
}

/// Why the closer cut a body in the middle (its refusal says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Still coming past its deadline.
    Slow,
    /// Holding the turn for large bodies, or a share of the wire budget,
    /// without coming on, while another body waited for it.
    Lapsed,
}

//! What the receiver knows of each peer's connection, as the closer and
//! its head cap ask it (the server keeps the books: `Connections`).

use std::time::Duration;

/// What the receiver knows of a peer's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A request of it is in hand (being read, decided or answered);
    /// `done` of its requests were done with before it. While its body is
    /// chunked and being read, `chunked` counts the body bytes tiny_http
    /// has handed over so far (the closer's cap on chunk framing sees the
    /// body go on by this moving). While its body is being read (by a
    /// worker, or drained), `body_for` says for how long (the closer's
    /// deadline on slow bodies).
    Busy {
        done: u64,
        chunked: Option<u64>,
        body_for: Option<Duration>,
    },
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

/// Why the closer cut a body in the middle (its refusal says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Chunk framing past the cap with no body between.
    Framing,
    /// Still coming past its deadline.
    Slow,
}

//! What the receiver knows of each peer's connection, as the closer and
//! its head cap ask it (the server keeps the books: `Connections`).

use std::time::Duration;

/// What the receiver knows of a peer's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A request of it is in hand (being read, decided or answered).
    Busy,
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
            Activity::Busy => false,
            Activity::Quiet { ago, .. } => ago >= d,
            Activity::Unseen => true,
        }
    }
}

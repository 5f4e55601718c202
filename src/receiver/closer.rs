//! Closing connections that tiny_http 0.12 holds on to, and nudging its
//! connection pools past their race.
//!
//! tiny_http owns every accepted socket and gives a handler no way to close
//! one: keep-alive is decided from the request alone, and some connections
//! never reach a handler at all (an `HTTP/2.0` request line deadlocks its
//! thread, a connection left in a pool's queue by its race is never read).
//! The lever left is the process's own descriptor table: on Linux,
//! `pidfd_getfd` on our own pid gives a duplicate of any descriptor, and
//! `shutdown` on the duplicate acts on the socket tiny_http holds. After a
//! `shutdown` of the reading side, Linux still hands over bytes that were
//! queued (or keep arriving while the queue is not empty), so what is
//! queued is thrown away too (`discard_queued`): tiny_http's next read
//! returns end-of-file, it answers what it has in hand and drops the
//! connection itself. The duplicate is closed at once: holding it would
//! keep the socket open after tiny_http let go of it.
//!
//! One thread does this, on request and on a sweep every quarter read
//! timeout (every 2 s at most):
//!
//! - `close(peer)`: a connection that broke HTTP's framing, pipelined past
//!   the limit, stalled mid-body, or announced a body no drain can take
//!   has its reading side shut: its answer still goes out, and tiny_http
//!   closes it instead of waiting a read timeout.
//! - the sweep: a connection open at least one read timeout, or on which
//!   nothing came for all but a sweep of one (so that it is closed within
//!   the read timeout of its last bytes), with no request in hand and
//!   none seen for one read timeout, found by two
//!   sweeps of its life with nothing in hand and no thread reading it, is
//!   shut both ways. A connection tiny_http reads from the start (an idle
//!   keep-alive, a head or a small body still coming) is left to its own
//!   read timeout; one nobody reads, or read only after a wait, is one it
//!   hung on (the `HTTP/2.0` deadlock, a connection left in a pool's
//!   queue, a request kept for good), and its client gets a close. Which
//!   descriptors threads are blocked reading comes from
//!   `/proc/self/task/*/syscall`; where that cannot be read, every
//!   connection counts as read and the sweep closes nothing.
//! - the nudge (every 100 ms): see `nudge_due` and `nudge`.
//! - resets: a connection its client reset before tiny_http read its
//!   address has what was queued on it thrown away when first found, and
//!   the pools are nudged while one is still held: see `clear_resets`.
//! - shedding: while descriptors run short, idle connections are shut both
//!   ways, longest known first: see `shed`.
//!
//! Without `pidfd_getfd` (kernels before 5.6, a seccomp filter) the thread
//! says so once and only nudges.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::accept::RESET_BEFORE_READ;
use super::activity::{Activity, Cut};
use super::heads::{self, Counted};

/// Asks the closing thread to shut connections by their peer address.
#[derive(Clone)]
pub struct Closer {
    requests: Sender<SocketAddr>,
    pub tally: Arc<Tally>,
}

/// What the closing thread did, for the status page.
#[derive(Debug, Default)]
pub struct Tally {
    /// Connections shut so far (on request and by the sweep).
    pub closed: AtomicU64,
    /// Connections made to our own listener to free ones stuck in a
    /// tiny_http pool's queue.
    pub nudges: AtomicU64,
    /// Idle connections shut early while descriptors ran short (counted in
    /// `closed` too).
    pub shed: AtomicU64,
    /// Connections shut both ways here that were still among our
    /// descriptors `held_after` later, at the last read of the table:
    /// nothing of ours holds them, and tiny_http never lets go of them
    /// (the thread it deadlocked on an `HTTP/2.0` request line keeps the
    /// connection's two descriptors until exit). A restart in place frees
    /// them (`run`).
    pub held: AtomicU64,
    /// When the longest held of them was shut (None: none held).
    pub held_since: std::sync::Mutex<Option<Instant>>,
    /// Descriptors ran short at the last look (fewer than the limit's
    /// `SHORT_PART`th free).
    pub short: AtomicBool,
    /// Connections of ours open at the last read of the descriptor table
    /// (those shut here and closing not counted, as for the cap), and
    /// when that was (never, where the table cannot be read).
    pub open_seen: std::sync::Mutex<Option<(u64, Instant)>>,
}

impl Tally {
    /// Connections open at the last read of the descriptor table, and how
    /// long ago that was.
    pub fn open_when_seen(&self) -> Option<(u64, Duration)> {
        let seen = *crate::panic::lock(&self.open_seen);
        seen.map(|(n, at)| (n, at.elapsed()))
    }
}

impl Closer {
    /// A closer whose requests go to `requests` (the thread is started by
    /// `run` on the other end).
    pub fn new(requests: Sender<SocketAddr>) -> Closer {
        Closer {
            requests,
            tally: Arc::default(),
        }
    }

    /// Shuts the reading side of `peer`'s connection: its answers still go
    /// out, and tiny_http closes it once it has read what is queued.
    pub fn close(&self, peer: Option<SocketAddr>) {
        if let Some(peer) = peer {
            let _ = self.requests.send(peer);
        }
    }
}

/// How often the sweep looks for hung connections.
pub fn sweep_every(read_timeout: Duration) -> Duration {
    (read_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// A socket of this process, as the sweep knows it.
enum Known {
    /// Accepted on our listener at `local`, from `peer`, first seen at `since`, now
    /// on descriptor `fd` (one of tiny_http's two); `shut` both ways
    /// already, and when; `counted` on the status page, as shut here (both ways or
    /// its reading side); `unread` counts the sweeps that found nobody
    /// reading it and nothing of it in hand.
    Ours {
        fd: RawFd,
        local: SocketAddr,
        peer: SocketAddr,
        since: Instant,
        shut: Option<Instant>,
        counted: bool,
        unread: u8,
    },
    /// A connection accepted on our listener whose peer could not be read
    /// when we first saw it (its client had reset it), now on descriptor
    /// `fd`: ours, and tiny_http may still hand over requests it read of
    /// it, but not under its address. `cleared` once what was queued on it
    /// was thrown away; `nudged` counts the nudges made for it since, each
    /// at a look that found it held; `next` is when it may be nudged for
    /// again (see `clear_resets`).
    Reset {
        fd: RawFd,
        cleared: bool,
        nudged: u32,
        next: Instant,
    },
    /// A listener, an outgoing connection, another server's socket.
    Other,
}

impl Known {
    /// A connection of ours with its addresses, as the head cap looks it
    /// up, when this is one (`inode` its socket's).
    fn ours(&self, inode: u64) -> Option<heads::Ours> {
        match self {
            Known::Ours { local, peer, .. } => Some(heads::Ours {
                inode,
                local: *local,
                peer: *peer,
            }),
            Known::Reset { .. } | Known::Other => None,
        }
    }

    /// The peer of a connection of ours that has one.
    fn peer(&self) -> Option<SocketAddr> {
        match self {
            Known::Ours { peer, .. } => Some(*peer),
            Known::Reset { .. } | Known::Other => None,
        }
    }

    /// A reset connection that a look may still nudge for.
    fn may_nudge(&self) -> bool {
        matches!(self, Known::Reset { nudged, .. } if *nudged < MAX_NUDGES)
    }
}

/// Where the closing thread watches, and how.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    /// The listener's own address (its port names our connections; a
    /// nudge connects to it, on loopback if it is unspecified).
    pub listening: SocketAddr,
    pub read_timeout: Duration,
    /// Connections one nudge makes: one per tiny_http server.
    pub nudges: usize,
    /// Past this many open connections, idle ones are shed (`shed`).
    pub max_connections: u64,
}

/// How often the thread looks for connections left in a pool's queue,
/// while it looks: only for `LOOK_WINDOW` after the process gained
/// descriptors (new connections, where the race happens), while a
/// connection waits, and at each sweep. A look counts our connections as
/// the head cap does (`heads`): a microsecond or so per connection, or one
/// dump of the kernel's table in a crowd. (Without duplicates or socket
/// diagnostics it reads the kernel's TCP table as text, which walks all
/// of its hash buckets: 5 ms per table here, whatever the connections.)
const LOOK_EVERY: Duration = Duration::from_millis(100);
const LOOK_WINDOW: Duration = Duration::from_secs(2);
/// Descriptors up to which a look (and a count of heads) reads our own
/// descriptor table and looks each connection up, rather than dumping
/// the kernel's: reading 512 descriptors costs about as much as one dump.
const LOOK_UP_BELOW: u64 = 512;
/// How soon it looks again after a nudge.
const LOOK_AGAIN: Duration = Duration::from_millis(20);
/// Rounds of connections one nudge makes at most, looking in between.
const NUDGE_ROUNDS: usize = 4;
/// Nudging connections made per `LOOK_EVERY` at most (about 100 µs of
/// CPU each), however many connections look stuck.
const NUDGE_BUDGET: usize = 512;
/// Looks at which one stuck connection is nudged and no dead task was
/// freed, before it is left to the sweep. Looks after which a dead task
/// was freed do not count (see `nudge_due`).
const MAX_NUDGES: u32 = 20;

/// Descriptors run short when fewer than the limit's `SHORT_PART`th are
/// free (2 500 of 20 000; 32 of 256): idle connections are then shed
/// until a `ROOM_PART`th is free again.
const SHORT_PART: u64 = 8;
const ROOM_PART: u64 = 4;
/// Past `Watch::max_connections` open, idle connections are shed until
/// this many quarters of it are left.
const CROWD_LEFT_QUARTERS: u64 = 3;
/// How often shedding looks while descriptors run short or connections
/// may be past `Watch::max_connections`.
const SHED_EVERY: Duration = Duration::from_millis(250);
/// A connection known for less than this is never shed (a device's new
/// connection whose request has not come whole yet).
const SHED_AGE: Duration = Duration::from_secs(1);
/// Descriptors the thread keeps for itself, let go of while it sheds:
/// duplicating a descriptor to shut its socket takes one, and with none
/// free nothing could be shed.
const SPARE: usize = 4;

/// What the closer asks of the receiver's books.
pub trait Books {
    /// What the receiver knows of `peer`'s connection.
    fn activity(&self, peer: SocketAddr) -> Activity;
    /// Asked right before `peer`'s connection is shut both ways: no when
    /// a request of it is in hand. Once yes, the receiver ignores every
    /// request of it (one tiny_http still reads from what was queued,
    /// however late), so none is saved and left unanswered by the
    /// shutdown.
    fn claim(&self, peer: SocketAddr) -> bool;
    /// The claimed connection was not shut after all (the address may be a
    /// new connection's).
    fn unclaim(&self, peer: SocketAddr);
    /// A connection from `peer` that was shut (both ways, or its reading
    /// side: broke the framing, pipelined too much, stalled) is gone from
    /// our descriptors, so no request of it is left anywhere (each holds a
    /// clone of its socket to answer through), and no other connection
    /// from the address is open (one accepted while this one was still
    /// held is ignored with it, and stays so: it is left to the sweeps).
    /// What is known of the address is forgotten, so that a new connection
    /// from the same port is not taken for it. Seen at the next read of the
    /// descriptor table: every 100 ms with the head cap's counts (up to 512
    /// descriptors), at the next sweep otherwise. Not told apart: such
    /// another connection that its own client reset (its address cannot be
    /// read), whose requests tiny_http may still hand over.
    fn gone(&self, peer: SocketAddr);
    /// At a sweep at `now`, after a read of the whole descriptor table:
    /// `open` are the addresses of the connections of ours found in it.
    /// What is known of an address found without one at two sweeps in a
    /// row, and quiet since the first, belonged to a connection that is
    /// gone and is forgotten: a new connection from the same address (its
    /// client's port used again) must not inherit it, above all not its
    /// being ignored. Not in `open` although still there: a connection
    /// accepted after the read (any request of it is newer than `now`),
    /// and one its client reset, whose address can no longer be read.
    /// tiny_http may still hand over requests it had read of the latter,
    /// each as soon as the one before it is dropped: that they all come
    /// within a sweep (50 ms to 2 s) of each other is assumed, not known.
    fn forget_gone(&self, open: &HashSet<SocketAddr>, now: Instant);
    /// After a read of the whole descriptor table begun at `since`, in
    /// which every connection's peer could be read: `open` are the
    /// addresses of the connections of ours found in it. An address
    /// without one, with no request in hand and nothing of it since
    /// `since`, belonged to connections that are gone with all their
    /// requests, and is forgotten at once (without waiting for two
    /// sweeps): a new connection from its port is served, even when
    /// tiny_http closed the last one by itself before the closer could
    /// shut it and name its socket. A connection accepted during the read
    /// is left out of `open`; any request of it is newer than `since`.
    fn forget_absent(&self, open: &HashSet<SocketAddr>, since: Instant);
    /// `peer`'s connection is about to be shut for reading in the middle
    /// of the body of its request `seq` (past its deadline, or holding the
    /// turn for large bodies without coming on): the body's read fails,
    /// and its refusal says why. Says whether to go on and shut it: not
    /// when that body is no longer read, nor when one found lapsed holds
    /// nothing now. Told `None` when the
    /// shutdown failed after all: the body goes on as if never cut.
    fn cut(&self, peer: SocketAddr, seq: u64, why: Option<Cut>) -> bool;
}

/// The descriptors the closing thread works with, taken before the
/// receiver accepts its first connection: a pidfd of this process to
/// duplicate descriptors through, the socket diagnostics' netlink socket
/// for the head cap, and the spare descriptors that shedding lets go of.
/// Taken once the thread ran, they could be missing for the whole run:
/// in CI the thread first ran after 160 idle connections had used every
/// descriptor (a limit of 256), took none of them, and shed nothing.
pub struct Kit {
    me: Result<OwnedFd, String>,
    head_cap: heads::HeadCap,
    spare: Spare,
    /// Descriptors the process held once these were taken, before any
    /// connection.
    base_descriptors: u64,
}

impl Kit {
    /// Takes them now, with deadlines on heads and bodies by `read_timeout`.
    pub fn take(read_timeout: Duration) -> Kit {
        let me = duplicating();
        let head_cap = heads::HeadCap::start(read_timeout);
        let mut spare = Spare::default();
        spare.refill();
        Kit {
            me,
            head_cap,
            spare,
            base_descriptors: open_descriptors(),
        }
    }
}

/// The closing thread: serves `requests`, sweeps, and nudges tiny_http's
/// pools, until `stopping` or until every `Closer` is gone, with what
/// `kit` holds. `books` says what the receiver knows of a peer, and is
/// asked before a shutdown both ways. `notice` is told, once each, when
/// descriptors cannot be duplicated (only the nudges run then) and when a
/// reset connection cannot be disconnected.
pub fn run(
    watch: Watch,
    kit: Kit,
    requests: Receiver<SocketAddr>,
    tally: Arc<Tally>,
    stopping: Arc<AtomicBool>,
    books: &impl Books,
    mut notice: impl FnMut(String),
) {
    let activity = |peer| books.activity(peer);
    let Kit {
        me,
        mut head_cap,
        mut spare,
        base_descriptors,
    } = kit;
    let me = match me {
        Ok(me) => Some(me),
        Err(why) => {
            notice(format!(
                "connections tiny_http hangs on are left to it ({why}): a connection it \
                 deadlocks on stays open, and one that broke the rules waits for the read timeout"
            ));
            None
        }
    };
    let mut disconnect_failed = false;
    let port = watch.listening.port();
    let every = sweep_every(watch.read_timeout);
    let mut known: HashMap<u64, Known> = HashMap::new();
    let mut asked: Vec<SocketAddr> = Vec::new();
    let mut waiting: HashMap<SocketAddr, Waiting> = HashMap::new();
    let mut next_sweep = Instant::now() + every;
    let mut next_look = Instant::now() + LOOK_EVERY;
    let (mut budget, mut next_budget) = (NUDGE_BUDGET, Instant::now() + LOOK_EVERY);
    let (mut descriptors, mut look_until) = (open_descriptors(), Instant::now() + LOOK_WINDOW);
    let mut resets_seen = RESET_BEFORE_READ.load(Ordering::Relaxed);
    let mut next_reset_nudge = Instant::now();
    let limit = descriptor_limit();
    // Descriptors at which connections are counted for the cap: two each
    // beyond what the process held before it accepted any.
    let crowd_floor = base_descriptors.saturating_add(watch.max_connections.saturating_mul(2));
    let mut crowd_at = crowd_floor;
    let mut next_shed = Instant::now();
    // Inodes over the cap that are not among our descriptors (another
    // process's connection on the same port): not looked up again.
    let mut foreign: HashSet<u64> = HashSet::new();
    loop {
        // The head cap's time counts only where it can count.
        let cap_next = me.as_ref().and(head_cap.next()).unwrap_or(next_sweep);
        let wait = next_sweep
            .min(next_look)
            .min(cap_next)
            .saturating_duration_since(Instant::now());
        match requests.recv_timeout(wait) {
            Ok(peer) => asked.push(peer),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        asked.extend(requests.try_iter());
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let sweeping = now >= next_sweep;
        if now >= next_budget {
            (budget, next_budget) = (NUDGE_BUDGET, now + LOOK_EVERY);
        }
        let mut look = false;
        // Reset connections that may still be nudged for: the looks go on
        // while there are any (see `clear_resets`).
        let mut resets = false;
        // Both the look and the head cap go by the descriptor count.
        let mut count = None;
        let mut descriptors_now = || *count.get_or_insert_with(open_descriptors);
        if now >= next_look || sweeping {
            next_look = now + LOOK_EVERY;
            let count = descriptors_now();
            if count > descriptors {
                look_until = now + LOOK_WINDOW;
            }
            descriptors = count;
            resets = known.values().any(Known::may_nudge);
            look = budget > 0
                && (now < look_until
                    || sweeping
                    || resets
                    || waiting.values().any(Waiting::may_nudge));
        }
        let count_heads = me.is_some() && head_cap.due(now);
        let asked_now: HashSet<SocketAddr> = asked.drain(..).collect();
        // One count serves the head cap and the look. With few
        // descriptors, our connections are read from the descriptor table
        // (about a microsecond each) and looked up; with many, a dump
        // walks the kernel's table once. Without socket diagnostics the
        // look reads the kernel's TCP table.
        let few = (look || count_heads) && descriptors_now() <= LOOK_UP_BELOW;
        let mut sockets = match &me {
            Some(me) if few => refresh(me, watch.listening, &mut known, now, books),
            _ => None,
        };
        let ours: Option<Vec<heads::Ours>> = few.then(|| {
            known
                .iter()
                .filter_map(|(inode, k)| k.ours(*inode))
                .collect()
        });
        let count_now = |head_cap: &mut heads::HeadCap| {
            let which = match &ours {
                Some(ours) => heads::Which::These(ours),
                None => heads::Which::AllOn(watch.listening),
            };
            head_cap.count(Instant::now(), which, &activity)
        };
        let counts = (me.is_some() && (look || count_heads))
            .then(|| count_now(&mut head_cap))
            .flatten();
        if look {
            // Peers with bytes waiting and none ever read, by a count
            // (this round's first, then fresh ones after each nudge), or
            // by the kernel's table where there is no count to be had. A
            // connection waits in a pool's queue only before its first
            // read: tiny_http reads it on one thread from then on. One
            // that was read is being served, however far behind the
            // pumps are: a pipelining flood looked stuck on every
            // connection and drew thousands of nudges.
            let waiting_in = |all: &[Counted]| -> Vec<SocketAddr> {
                all.iter()
                    .filter(|c| c.unread > 0 && c.read == 0)
                    .map(|c| c.peer)
                    .collect()
            };
            let unread = match &counts {
                Some((all, _)) => waiting_in(all),
                None => unread_connections(port),
            };
            // Dead tasks freed since the last look that asked.
            let resets = RESET_BEFORE_READ.load(Ordering::Relaxed);
            let freed = resets > resets_seen;
            resets_seen = resets;
            let due = nudge_due(unread, &mut waiting, &activity, freed);
            if !due.is_empty() {
                let mut recount = || {
                    let counted = me.is_some().then(|| count_now(&mut head_cap));
                    match counted.flatten() {
                        Some((all, _)) => waiting_in(&all),
                        None => unread_connections(port),
                    }
                };
                let made = nudge(watch, &due, &mut budget, &mut recount);
                tally.nudges.fetch_add(made, Ordering::Relaxed);
                // Look again soon: a nudge may not reach every pool.
                next_look = now + LOOK_AGAIN;
            }
        }
        // How long nothing came on each connection, for the sweep.
        let silent: HashMap<u64, Duration> = match (&counts, sweeping) {
            (Some((all, _)), true) => all.iter().map(|c| (c.inode, c.silent)).collect(),
            _ => HashMap::new(),
        };
        let mut over_cap = counts.map(|(_, over)| over).unwrap_or_default();
        over_cap.retain(|(c, _)| !foreign.contains(&c.inode));
        let Some(me) = &me else {
            if sweeping {
                next_sweep = now + every;
            }
            continue;
        };
        // A requested close, or one over the cap, looks at the descriptor
        // table only when its connection is not known yet; a sweep always
        // does, and `being_read` uses what it saw.
        let unknown_asked = || {
            let known_peers: HashSet<SocketAddr> = known.values().filter_map(Known::peer).collect();
            !asked_now.is_subset(&known_peers)
        };
        if sockets.is_none()
            && (sweeping
                || (!asked_now.is_empty() && unknown_asked())
                || !over_cap.iter().all(|(c, _)| known.contains_key(&c.inode)))
        {
            sockets = refresh(me, watch.listening, &mut known, now, books);
        }
        // Connections reset before their address was read: cleared at
        // every read of the table (a look's, the head cap's, a sweep's),
        // and nudged for when held, `LOOK_AGAIN` apart at the most. Beyond
        // `LOOK_UP_BELOW` descriptors only a sweep reads the table, and a
        // look checks the held ones by their own descriptors.
        if sockets.is_some() || (look && resets) {
            let due = budget > 0 && now >= next_reset_nudge;
            let mut failed = None;
            let held = clear_resets(me, &mut known, now, due, &mut failed);
            if let Some(e) = failed.filter(|_| !disconnect_failed) {
                disconnect_failed = true;
                notice(format!(
                    "a connection its client reset cannot be disconnected ({e}): what it \
                     had queued may be read as a request, ending the pool thread that takes \
                     it on the address it cannot read"
                ));
            }
            if held {
                let made = nudge(watch, &[], &mut budget, &mut Vec::new);
                tally.nudges.fetch_add(made, Ordering::Relaxed);
                next_look = now + LOOK_AGAIN;
                next_reset_nudge = now + LOOK_AGAIN;
            }
        }
        // Short of descriptors, or (by the two tiny_http holds of each)
        // perhaps past the connections allowed: counted from the table.
        let short = limit.is_some_and(|l| descriptors.saturating_add(l / SHORT_PART) >= l);
        tally.short.store(short, Ordering::Relaxed);
        if descriptors < crowd_floor {
            crowd_at = crowd_floor;
        }
        let crowded = descriptors >= crowd_at;
        if now >= next_shed && (short || crowded) {
            next_shed = now + SHED_EVERY;
            // Room for the table's read and each shutdown's duplicate.
            spare.release();
            if sockets.is_none() {
                sockets = refresh(me, watch.listening, &mut known, now, books);
            }
            let room = limit
                .filter(|_| short)
                .map(|l| (l / ROOM_PART).saturating_sub(l.saturating_sub(descriptors)));
            let open = open_connections(&known);
            // Within the connections allowed, the table is read again only
            // once descriptors grew by a quarter of them (busy uploads can
            // hold more than two descriptors each).
            crowd_at = if open > watch.max_connections {
                crowd_floor
            } else {
                descriptors.saturating_add((watch.max_connections / 4).max(1) * 2)
            };
            let want = to_shed(room, open, watch.max_connections);
            let (made, newly) = if want > 0 {
                shed(me, &mut known, books, &activity, &mut head_cap, now, want)
            } else {
                (0, 0)
            };
            tally.shed.fetch_add(made, Ordering::Relaxed);
            tally.closed.fetch_add(newly, Ordering::Relaxed);
            spare.refill();
        }
        // Every read of the table this round came before this point.
        if sockets.is_some() {
            *crate::panic::lock(&tally.open_seen) = Some((open_connections(&known), now));
            let (held, since) = held_for_good(&known, now, held_after(watch.read_timeout));
            tally.held.store(held, Ordering::Relaxed);
            *crate::panic::lock(&tally.held_since) = since;
        }
        if asked_now.is_empty() && !sweeping && over_cap.is_empty() {
            continue;
        }
        let whole = sockets.as_ref().is_some_and(|t| t.whole);
        if sweeping && whole {
            let open = known.values().filter_map(Known::peer).collect();
            books.forget_gone(&open, now);
        }
        // Only a table read whole tells ours from another's.
        if whole {
            foreign.extend(
                over_cap
                    .iter()
                    .map(|(c, _)| c.inode)
                    .filter(|i| !known.contains_key(i)),
            );
        }
        let capped: HashMap<u64, heads::Over> =
            over_cap.iter().map(|(c, over)| (c.inode, *over)).collect();
        let ours = known.values().any(|k| matches!(k, Known::Ours { .. }));
        let read_now =
            (sweeping && ours).then(|| being_read(&known, sockets.as_ref().map(|t| &t.sockets)));
        for (inode, k) in known.iter_mut() {
            let Known::Ours {
                fd,
                peer,
                since,
                shut,
                counted,
                unread,
                ..
            } = k
            else {
                continue;
            };
            // Asked again, in case it moved on since the count: a head is
            // cut only while it is still the head that was measured (never
            // with a request in hand), a body only while the same body is
            // still being read (its read fails: nothing of it is saved,
            // and its refusal can still go out).
            let over_cap = match capped.get(inode).copied() {
                None => false,
                Some(over @ (heads::Over::Head { .. } | heads::Over::SlowHead { .. })) => {
                    shut.is_none() && over.still(activity(*peer))
                }
                Some(over @ (heads::Over::SlowBody { seq } | heads::Over::TurnLapsed { seq })) => {
                    let why = match over {
                        heads::Over::TurnLapsed { .. } => Cut::Lapsed,
                        _ => Cut::Slow,
                    };
                    if shut.is_none()
                        && over.still(activity(*peer))
                        && books.cut(*peer, seq, Some(why))
                    {
                        if !shut_down(me, *fd, *inode, *peer, Shutdown::Read, false) {
                            // Not cut: a body that then comes whole is taken.
                            books.cut(*peer, seq, None);
                        } else if !std::mem::replace(counted, true) {
                            tally.closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    continue;
                }
            };
            let how = if over_cap {
                Shutdown::Both
            } else if asked_now.contains(peer) {
                Shutdown::Read
            } else if let Some(read) = &read_now {
                let activity = activity(*peer);
                // Counted at every sweep while nothing of it is in hand,
                // from its first: a connection tiny_http never read, or
                // read only after a wait in a pool's queue.
                if !activity.busy() && !read.contains(inode) {
                    *unread = unread.saturating_add(1);
                }
                // Hung for a read timeout: open that long, or with nothing
                // come for all but a sweep of it, so that the close comes
                // within the read timeout of its last bytes rather than at
                // the first sweep after it. The kernel counts the silence of
                // a connection that never sent anything from its handshake,
                // time in the accept backlog included: it counts here for
                // at most a sweep more than the connection has been seen,
                // so this is never more than a sweep ahead of its age.
                let age = now.duration_since(*since);
                let hung_long = age >= watch.read_timeout
                    || silent
                        .get(inode)
                        .is_some_and(|s| (*s).min(age + every) + every >= watch.read_timeout);
                // One that made requests is left to tiny_http while a thread
                // reads it (a slow next request); one that never made any
                // and waited unread is not (tiny_http would give it a whole
                // read timeout from when it picked it up late).
                let due = shut.is_none()
                    && *unread >= 2
                    && hung_long
                    && activity.quiet_for(watch.read_timeout)
                    && (activity == Activity::Unseen || !read.contains(inode));
                if !due {
                    continue;
                }
                Shutdown::Both
            } else {
                continue;
            };
            // What was quiet a moment ago may have a request in hand now:
            // shut both ways, it could be read and saved, and never
            // answered.
            if how == Shutdown::Both && !books.claim(*peer) {
                continue;
            }
            // A head over the cap is reset when tiny_http lets go of it,
            // rather than left to stall its sender until the kernel gives
            // up on the orphan.
            if shut_down(me, *fd, *inode, *peer, how, over_cap) {
                if how == Shutdown::Both && shut.is_none() {
                    *shut = Some(now);
                }
                if !std::mem::replace(counted, true) {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                }
            } else if how == Shutdown::Both && shut.is_none() {
                books.unclaim(*peer);
            }
        }
        if sweeping {
            next_sweep = now + every;
        }
    }
}

/// Shuts up to `want` idle connections of ours both ways, those known
/// longest first: while descriptors run short, one client holding
/// connections it sends nothing on would otherwise keep every other one
/// out until the read timeout (a hostile-client probe, December 6: 10 000
/// idle connections against a limit of 20 000 had devices reset or kept
/// waiting for the 30 s of the read timeout); and past
/// `Watch::max_connections`, each costing tiny_http a thread's stack and
/// buffers (the same 10 000 under a limit high enough peaked over 200
/// MB). Idle: nothing of it in hand
/// (a device's keep-alive connection between uploads too: it connects
/// again), known for `SHED_AGE` at least. Returns how many were shut,
/// and how many of them had not been counted as closed before.
fn shed(
    me: &OwnedFd,
    known: &mut HashMap<u64, Known>,
    books: &impl Books,
    activity: &dyn Fn(SocketAddr) -> Activity,
    head_cap: &mut heads::HeadCap,
    now: Instant,
    want: u64,
) -> (u64, u64) {
    // Those that never sent anything first, then those between requests
    // (a device's keep-alive connection between uploads), then those
    // that sent part of a first request (a head, or a body of 1 KiB or
    // less, which tiny_http reads before it hands the request over: a
    // device's upload on its way), each oldest first.
    let mut idle: Vec<(u8, Instant, u64)> = known
        .iter()
        .filter_map(|(inode, k)| match k {
            Known::Ours {
                since,
                peer,
                shut: None,
                ..
            } if now.duration_since(*since) >= SHED_AGE => match activity(*peer) {
                Activity::Busy { .. } => None,
                Activity::Quiet { .. } => Some((1, *since, *inode)),
                Activity::Unseen => Some((0, *since, *inode)),
            },
            _ => None,
        })
        .collect();
    let unseen: Vec<heads::Ours> = idle
        .iter()
        .filter(|(class, _, _)| *class == 0)
        .filter_map(|(_, _, inode)| known.get(inode)?.ours(*inode))
        .collect();
    if let Some(counted) = head_cap.received(&unseen) {
        let sent: HashSet<u64> = counted
            .iter()
            .filter(|c| c.read + c.unread > 0)
            .map(|c| c.inode)
            .collect();
        for (class, _, inode) in &mut idle {
            if *class == 0 && sent.contains(inode) {
                *class = 2;
            }
        }
    }
    idle.sort_unstable();
    let (mut made, mut newly) = (0, 0);
    for (_, _, inode) in idle {
        if made >= want {
            break;
        }
        let Some(Known::Ours {
            fd,
            peer,
            shut,
            counted,
            ..
        }) = known.get_mut(&inode)
        else {
            continue;
        };
        // Bytes waiting unread: a request on its way (a device's new
        // connection in a pool's queue), not an idle connection.
        if waiting_bytes(me, *fd, inode) {
            continue;
        }
        // Quiet a moment ago, it may have a request in hand now.
        if !books.claim(*peer) {
            continue;
        }
        if shut_down(me, *fd, inode, *peer, Shutdown::Both, false) {
            *shut = Some(now);
            if !std::mem::replace(counted, true) {
                newly += 1;
            }
            made += 1;
        } else {
            books.unclaim(*peer);
        }
    }
    (made, newly)
}

/// Descriptors held in reserve (see `SPARE`).
#[derive(Default)]
struct Spare(Vec<File>);

impl Spare {
    fn release(&mut self) {
        self.0.clear();
    }

    /// Takes back what it can: the process may have used them meanwhile.
    fn refill(&mut self) {
        while self.0.len() < SPARE {
            match File::open("/dev/null") {
                Ok(f) => self.0.push(f),
                Err(_) => break,
            }
        }
    }
}

/// Connections of ours open and not shut here yet (either way), as far
/// as the table was read.
fn open_connections(known: &HashMap<u64, Known>) -> u64 {
    known
        .values()
        .filter(|k| {
            matches!(
                k,
                Known::Ours {
                    shut: None,
                    counted: false,
                    ..
                }
            )
        })
        .count() as u64
}

/// How long a connection shut both ways may stay among our descriptors
/// before it counts as held for good: two read timeouts, 5 s at least.
/// Once shut, tiny_http's thread finds it ended at its next read or write
/// and drops it within milliseconds, and nothing of ours holds one (a
/// request in hand refuses the shutdown, and those tiny_http hands over
/// later are let go of at once); what keeps one longer is a thread that
/// will never read or write it again. A wait in a pool's queue that the
/// nudges have not ended yet (3.3 s at the worst measured) stays under it.
pub fn held_after(read_timeout: Duration) -> Duration {
    (read_timeout * 2).max(HELD_AFTER_LEAST)
}

/// The least of `held_after`.
const HELD_AFTER_LEAST: Duration = Duration::from_secs(5);

/// Connections in `known` (as the last read of the table left it) shut
/// both ways at least `after` before `now`, and when the first of them
/// was shut.
fn held_for_good(
    known: &HashMap<u64, Known>,
    now: Instant,
    after: Duration,
) -> (u64, Option<Instant>) {
    let shut = known.values().filter_map(|k| match k {
        Known::Ours { shut: Some(at), .. } if now.duration_since(*at) >= after => Some(*at),
        _ => None,
    });
    shut.fold((0, None), |(n, first): (u64, Option<Instant>), at| {
        (n + 1, Some(first.map_or(at, |f| f.min(at))))
    })
}

/// Connections to shed: enough for a `ROOM_PART`th of the descriptors
/// to be free (`room` descriptors more, while they run short; two each),
/// and past `max` open, down to `CROWD_LEFT_QUARTERS` quarters of it.
fn to_shed(room: Option<u64>, open: u64, max: u64) -> u64 {
    let for_room = room.map_or(0, |r| r.div_ceil(2));
    let for_crowd = if open > max {
        open - max.saturating_mul(CROWD_LEFT_QUARTERS) / 4
    } else {
        0
    };
    for_room.max(for_crowd)
}

/// Whether the connection on our descriptor `fd` has bytes waiting
/// unread (false when it cannot be looked at).
fn waiting_bytes(me: &OwnedFd, fd: RawFd, inode: u64) -> bool {
    duplicate(me, fd, inode).is_some_and(|s| rustix::io::ioctl_fionread(&s).is_ok_and(|n| n > 0))
}

/// A pidfd of this process through which its descriptors can be
/// duplicated, after one try on a descriptor we know: if the kernel or a
/// seccomp filter refuses, that is known at once.
fn duplicating() -> Result<OwnedFd, String> {
    use std::os::fd::AsRawFd;
    let me = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open: {e}"))?;
    let probe = File::open("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
    rustix::process::pidfd_getfd(
        &me,
        probe.as_raw_fd(),
        rustix::process::PidfdGetfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_getfd: {e}"))?;
    Ok(me)
}

/// What the thread knows of a connection whose bytes wait unread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// Seen so at the last look only.
    Seen,
    /// Seen so at looks in a row, and nudged for this many of them after
    /// which no dead task was freed.
    Nudged(u32),
}

impl Waiting {
    /// Whether another look may still nudge it.
    fn may_nudge(&self) -> bool {
        match self {
            Waiting::Seen => true,
            Waiting::Nudged(n) => *n < MAX_NUDGES,
        }
    }
}

/// Connections left in a tiny_http pool's queue (README, Hostile
/// networks, 5): what a client sent waits unread, and no request of it is
/// in hand. Seen so at two looks in a row, a connection counts as stuck
/// and is due a nudge, at most `MAX_NUDGES` times in all without `freed`.
///
/// `freed`: a dead task was freed since the last look, that is, a pool
/// thread ended on a connection its client had reset before tiny_http
/// read its address (`accept::reset_before_its_request`). Such a task
/// ends the thread that takes it, so a queue that the pools' race filled
/// with them during a storm of resets does not drain by itself: each
/// nudge landing in that pool starts one thread, which frees one. While
/// they are being freed the nudges go on, however many it takes.
fn nudge_due(
    unread: impl IntoIterator<Item = SocketAddr>,
    waiting: &mut HashMap<SocketAddr, Waiting>,
    activity: &dyn Fn(SocketAddr) -> Activity,
    freed: bool,
) -> Vec<SocketAddr> {
    let mut now_waiting = HashMap::new();
    let mut due = Vec::new();
    for peer in unread {
        // Only a connection never read can wait in a pool's queue
        // (tiny_http serves a connection on one thread from its first
        // read to its end; the caller passes only those), but what the
        // receiver knows is kept by peer address, for a while after a
        // connection ends: a new connection from an address used again
        // looks served. So only one with a request in hand is passed
        // over.
        if activity(peer).busy() {
            continue;
        }
        let next = match waiting.get(&peer) {
            None => Waiting::Seen,
            Some(Waiting::Seen) => Waiting::Nudged(1),
            Some(Waiting::Nudged(n)) if freed => Waiting::Nudged(*n),
            Some(Waiting::Nudged(n)) if *n < MAX_NUDGES => Waiting::Nudged(n + 1),
            Some(w) => *w,
        };
        if next != Waiting::Seen && waiting.get(&peer).is_some_and(Waiting::may_nudge) {
            due.push(peer);
        }
        now_waiting.insert(peer, next);
    }
    *waiting = now_waiting;
    due
}

/// Connections their clients reset before tiny_http read their address
/// (`Known::Reset`), as the last read of the descriptor table found them.
/// Each has what was queued on it thrown away when first found: tiny_http
/// would build a request of it, unwrap the address it could not read
/// (`client.rs`) and end the pool thread that took it, and no request of
/// it is ever served. A reset connection found again after that is not
/// being read: it waits in a pool's queue that no thread takes from,
/// stranded there when the threads it woke ended on such tasks (README,
/// Hostile networks). Says whether one is, still named by its descriptor
/// and due at `now`, when `due`: a nudge then wakes a thread of that pool,
/// or starts one, and it takes the whole queue, none of it ending it now.
/// Each is said at most `MAX_NUDGES` times, twice as long apart each time
/// (from `LOOK_AGAIN` up to `RESET_NUDGES_APART`): one may also be held
/// by a request of it in hand (`--respond hangup` holds one a read
/// timeout), which no nudge frees, and every nudge costs a look.
/// A disconnect that failed (a security policy refusing it) is put in
/// `failed`.
fn clear_resets(
    me: &OwnedFd,
    known: &mut HashMap<u64, Known>,
    now: Instant,
    due: bool,
    failed: &mut Option<rustix::io::Errno>,
) -> bool {
    let mut held = false;
    for (inode, k) in known.iter_mut() {
        let Known::Reset {
            fd,
            cleared,
            nudged,
            next,
        } = k
        else {
            continue;
        };
        if !*cleared {
            // Still the reset socket: a descriptor number is used again.
            if let Some(s) = duplicate(me, *fd, *inode).filter(|s| s.peer_addr().is_err())
                && let Err(e) = disconnect_reset(&s)
            {
                *failed = Some(e);
            }
            *cleared = true;
        } else if due
            && *nudged < MAX_NUDGES
            && now >= *next
            && linked_socket(format!("/proc/self/fd/{fd}")) == Some(*inode)
        {
            *nudged += 1;
            *next = now + (LOOK_AGAIN * (1 << (*nudged).min(16))).min(RESET_NUDGES_APART);
            held = true;
        }
    }
    held
}

/// The longest a held reset connection waits between nudges for it.
const RESET_NUDGES_APART: Duration = Duration::from_secs(1);

/// Throws away what a reset connection has queued, and makes every read
/// of it from now on fail: a `connect` to no address (`AF_UNSPEC`, the
/// kernel's `tcp_disconnect`) empties its queue under the socket's lock,
/// leaves the reset's error for the next read, and after that a read is
/// "not connected", never a plain end. A plain end is what made a
/// chunked body cut by the reset look whole: `chunked_transfer` takes an
/// end inside a chunk for the body's end, and it was saved (chunked
/// uploads were decoded until December 8 and are refused since; a body
/// of known length cut short is refused whatever ends its read). Reading the
/// queue away instead (`recv` of what `FIONREAD` said) left a window: a
/// worker already reading the body (the connection first seen after its
/// reset) could empty the queue between the two calls, and the `recv`
/// then took the error in its place (a hostile-client probe: 9 to 25 of
/// 1 200 such uploads saved with a read to the end, 1 in several runs of
/// 1 200 with a read of what was queued; none now). Only for a socket
/// whose peer can no longer be read: on a live one this would end the
/// connection. Such a socket is one its client reset, or one closed in
/// order both ways while our descriptor is still open (tiny_http shuts
/// its writing half when done with a connection): its reads end with an
/// error rather than a plain end, which ends a finished connection all
/// the same. (A `shutdown` of its reading side after this would make a
/// read a plain end again; nothing shuts a socket the closer took for
/// reset.)
fn disconnect_reset(s: &TcpStream) -> rustix::io::Result<()> {
    rustix::net::connect_unspec(s)
}

/// Descriptors this process has open: the size Linux (6.2 and later)
/// gives `/proc/self/fd`, else a count of its entries (0 where it cannot
/// be counted).
fn open_descriptors() -> u64 {
    count_descriptors().unwrap_or(0)
}

/// As `open_descriptors`, with why they could not be counted: a count of
/// the entries takes a descriptor itself (`EMFILE` when none is free).
pub(super) fn count_descriptors() -> std::io::Result<u64> {
    match std::fs::metadata("/proc/self/fd") {
        Ok(m) if m.len() > 0 => Ok(m.len()),
        _ => Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64),
    }
}

/// The process's limit on open descriptors (None: none, or unknown).
pub(super) fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Connects to our own listener once per server and hangs up at once,
/// for up to `NUDGE_ROUNDS` rounds while a connection `due` a nudge
/// still waits. tiny_http hands each such connection to the pool of the
/// server that accepted it: a pool with an idle thread wakes it, and the
/// thread takes the oldest connection in the queue, the stuck one; a pool
/// without one starts a thread, which reads our end-of-file, then takes
/// the queue's oldest. The kernel wakes the waiting accept threads in
/// turn, but one that is running takes several connections in a row, so
/// a round does not always reach every server. Returns the connections
/// made.
fn nudge(
    watch: Watch,
    due: &[SocketAddr],
    budget: &mut usize,
    unread_now: &mut dyn FnMut() -> Vec<SocketAddr>,
) -> u64 {
    let mut made = 0;
    let mut to = watch.listening;
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    for _ in 0..NUDGE_ROUNDS {
        // One per server, and one more per stuck connection: each nudge
        // that reaches a pool frees the oldest connection of its queue,
        // and a burst can leave dozens in one queue.
        let n = (watch.nudges + due.len()).min(*budget);
        *budget -= n;
        for _ in 0..n {
            // A full accept queue drops our handshake: stop rather than
            // wait out a timeout per connection.
            let Ok(s) = TcpStream::connect_timeout(&to, Duration::from_millis(50)) else {
                return made;
            };
            made += 1;
            // Hung up with a reset: no TIME_WAIT left on our side for
            // each nudge; tiny_http takes the reset like an end-of-file.
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        if *budget == 0 {
            return made;
        }
        let still: HashSet<SocketAddr> = unread_now().into_iter().collect();
        if !due.iter().any(|p| still.contains(p)) {
            return made;
        }
    }
    made
}

/// Peers of established connections on our port with bytes waiting
/// unread, from the kernel's table (`/proc/self/net/tcp` and `tcp6`):
/// the looks' way when descriptors cannot be duplicated.
fn unread_connections(port: u16) -> Vec<SocketAddr> {
    let mut peers = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            peers.extend(unread_in_table(&text, port));
        }
    }
    peers
}

/// `unread_connections` in one table's text. The table lists both ends of
/// every connection in the namespace (thousands under a burst), so a line
/// is split only as far as its local address unless that names our port.
fn unread_in_table(text: &str, port: u16) -> impl Iterator<Item = SocketAddr> + '_ {
    let ours = format!(":{port:04X}");
    text.lines().skip(1).filter_map(move |line| {
        let mut f = line.split_ascii_whitespace();
        let local = f.nth(1)?;
        if !local.ends_with(ours.as_str()) {
            return None;
        }
        let (remote, state, queues) = (f.next()?, f.next()?, f.next()?);
        let rx = u64::from_str_radix(queues.split_once(':')?.1, 16).ok()?;
        // 01: ESTABLISHED.
        if state != "01" || rx == 0 {
            return None;
        }
        table_address(remote)
    })
}

/// An address as the kernel's TCP table writes it: the address as 32-bit
/// words in the machine's byte order, in hex, then `:` and the port.
fn table_address(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in addr.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The socket descriptors `refresh` saw.
struct Table {
    /// Every socket descriptor, with its inode.
    sockets: HashMap<RawFd, u64>,
    /// Each of them is known as ours or not: none was left unlooked at
    /// because it could not be duplicated (out of descriptors, say).
    whole: bool,
}

/// Brings `known` up to date with the descriptor table: new sockets are
/// looked at once, closed ones forgotten, and each of ours is given a
/// descriptor that names it now. A connection shut both ways that is
/// gone is unclaimed. A socket that cannot be duplicated while its
/// descriptor still names it is looked at again next time. None when the
/// table cannot be read.
fn refresh(
    me: &OwnedFd,
    listening: SocketAddr,
    known: &mut HashMap<u64, Known>,
    now: Instant,
    books: &impl Books,
) -> Option<Table> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut sockets = HashMap::with_capacity(known.len());
    let mut whole = true;
    for entry in dir {
        // A listing cut short would leave connections out.
        let entry = entry.ok()?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let Some(inode) = linked_socket(entry.path()) else {
            continue;
        };
        sockets.insert(fd, inode);
        let k = match known.entry(inode) {
            std::collections::hash_map::Entry::Occupied(k) => k.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(s) = duplicate(me, fd, inode) else {
                    // Closed meanwhile, or not to be had now.
                    whole &= linked_socket(entry.path()) != Some(inode);
                    continue;
                };
                v.insert(classify(&s, fd, listening, now))
            }
        };
        if let Known::Ours { fd: current, .. } | Known::Reset { fd: current, .. } = k {
            *current = fd;
        }
    }
    let present: HashSet<u64> = sockets.values().copied().collect();
    // Addresses with a connection still open (a port used again while the
    // connection before it was still held).
    let live: HashSet<SocketAddr> = known
        .iter()
        .filter(|(inode, _)| present.contains(inode))
        .filter_map(|(_, k)| k.peer())
        .collect();
    // Every socket of ours was named: one not among them is gone, with
    // every request of it (each holds a clone of its socket). A connection
    // its client reset before we first saw it cannot be named, and
    // tiny_http may still hand over what it read of it, under an address
    // that no longer shows in `live`; while one such socket is open (or
    // one could not be looked at), no address is forgotten here, and the
    // sweeps decide (`forget_gone`).
    let unnamed = known
        .iter()
        .any(|(inode, k)| present.contains(inode) && matches!(k, Known::Reset { .. }));
    let named_all = whole && !unnamed;
    known.retain(|inode, k| {
        let here = present.contains(inode);
        if let (
            false,
            Known::Ours {
                peer,
                shut,
                counted: true,
                ..
            },
        ) = (here, &k)
        {
            // A shut connection gone; the address is forgotten unless
            // another from it is open, named or not. (A client that
            // pipelined uploads after breaking the framing, reset, and
            // connected again from the same port: the closer shut the new
            // connection, the only one with the address; once that one
            // closed, forgetting the address let the reset one's uploads
            // that tiny_http still handed over be served and saved, eight
            // at a time.)
            if !live.contains(peer) && named_all {
                books.gone(*peer);
            } else if shut.is_some() {
                books.unclaim(*peer);
            }
        }
        here
    });
    if named_all {
        books.forget_absent(&live, now);
    }
    Some(Table { sockets, whole })
}

/// What socket `s`, first seen at `now` on our descriptor `fd`, is to the
/// closer.
fn classify(s: &TcpStream, fd: RawFd, listening: SocketAddr, now: Instant) -> Known {
    match (s.local_addr(), s.peer_addr()) {
        // Outgoing, or on another port: never one of ours, whatever comes
        // of it (an outgoing one may be connecting still).
        (Ok(local), _) if !accepted_on(local, listening) => Known::Other,
        (Ok(local), Ok(peer)) => Known::Ours {
            fd,
            local,
            peer,
            since: now,
            shut: None,
            counted: false,
            unread: 0,
        },
        // On our port without a peer: a connection its client reset (it
        // keeps its own address, not its peer's), or our listener (and
        // each clone a tiny_http server accepts on), or a UDP socket on
        // the same port. No address of its own that reads as one: netlink
        // and Unix sockets, or an internet TCP socket that, in doubt, may
        // be ours.
        _ if unnamed_connection(s) => Known::Reset {
            fd,
            cleared: false,
            nudged: 0,
            next: now,
        },
        _ => Known::Other,
    }
}

/// Whether a socket may be a connection (TCP, not listening): one that
/// would be ours but for addresses that cannot be read. Netlink, Unix and
/// listening sockets are not. In doubt, it may.
fn unnamed_connection(s: impl AsFd) -> bool {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let s = s.as_fd();
    let inet = sockopt::socket_domain(s).map_or(true, |d| {
        d == AddressFamily::INET || d == AddressFamily::INET6
    });
    let stream = sockopt::socket_type(s).map_or(true, |t| t == SocketType::STREAM);
    let listening = sockopt::socket_acceptconn(s).unwrap_or(false);
    inet && stream && !listening
}

/// Whether a connection whose local end is `local` was accepted on our
/// listener: same port, and same address unless it listens on all.
fn accepted_on(local: SocketAddr, listening: SocketAddr) -> bool {
    local.port() == listening.port()
        && (listening.ip().is_unspecified() || local.ip() == listening.ip())
}

/// The sockets (by inode) some thread of this process is blocked reading
/// now. On an architecture whose system call numbers are not known here,
/// every socket counts as read, so the sweep closes nothing.
/// `sockets` is every socket descriptor of ours with its inode (as
/// `refresh` saw them), not only the one `known` keeps: tiny_http reads a
/// connection through a clone of it.
fn being_read(known: &HashMap<u64, Known>, sockets: Option<&HashMap<RawFd, u64>>) -> HashSet<u64> {
    let all = || known.keys().copied().collect();
    let (Some(reads), Some(inodes)) = (READ_CALLS, sockets) else {
        return all();
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return all();
    };
    let mut read = HashSet::new();
    let mut seen = 0;
    for task in tasks.flatten() {
        let line = match std::fs::read_to_string(task.path().join("syscall")) {
            Ok(line) => {
                seen += 1;
                line
            }
            // The thread ended meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Not readable here (a sandbox, a security module): nothing
            // can be told apart, so nothing counts as unread.
            Err(_) => return all(),
        };
        // "<number> <arg1> ...", "running", or "-1 ..." outside a call.
        let mut words = line.split_whitespace();
        let (Some(Ok(nr)), Some(fd)) = (words.next().map(str::parse::<i64>), words.next()) else {
            continue;
        };
        let fd = fd
            .strip_prefix("0x")
            .and_then(|h| RawFd::from_str_radix(h, 16).ok());
        if let Some(inode) = fd
            .filter(|_| reads.contains(&nr))
            .and_then(|fd| inodes.get(&fd))
        {
            read.insert(*inode);
        }
    }
    // Not one thread's file (this one's included) could be read.
    if seen == 0 {
        return all();
    }
    read
}

/// The system calls that read a socket, whose first argument is its
/// descriptor: read, readv, recvfrom, recvmsg.
#[cfg(target_arch = "x86_64")]
const READ_CALLS: Option<&[i64]> = Some(&[0, 19, 45, 47]);
#[cfg(target_arch = "aarch64")]
const READ_CALLS: Option<&[i64]> = Some(&[63, 65, 207, 212]);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const READ_CALLS: Option<&[i64]> = None;

/// The socket a descriptor's link (`/proc/self/fd/N`) names, by inode.
fn linked_socket(link: impl AsRef<std::path::Path>) -> Option<u64> {
    socket_inode(std::fs::read_link(link).ok()?.to_str()?)
}

/// The inode in a descriptor link `socket:[12345]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A duplicate of our descriptor `fd`, if it still names socket `inode`
/// (a descriptor number is reused once closed).
fn duplicate(me: &OwnedFd, fd: RawFd, inode: u64) -> Option<TcpStream> {
    let dup =
        rustix::process::pidfd_getfd(me.as_fd(), fd, rustix::process::PidfdGetfdFlags::empty())
            .ok()?;
    let file = File::from(dup);
    (file.metadata().ok()?.ino() == inode).then(|| TcpStream::from(OwnedFd::from(file)))
}

/// Shuts `peer`'s connection, socket `inode`, through descriptor `fd`, if
/// that still names it; with `reset`, its close (tiny_http's, once it
/// lets go) is a reset.
fn shut_down(
    me: &OwnedFd,
    fd: RawFd,
    inode: u64,
    peer: SocketAddr,
    how: Shutdown,
    reset: bool,
) -> bool {
    match duplicate(me, fd, inode) {
        Some(s) if s.peer_addr().ok() == Some(peer) => {
            if reset {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            let shut = s.shutdown(how).is_ok();
            if shut && how != Shutdown::Write {
                // Bytes that come after the shutdown are queued and read
                // like the rest: throwing away the queue opens the window,
                // and a pipelining client's kernel fills it again from its
                // send buffer at once. With the receive buffer at the
                // kernel's minimum (it rounds 0 up) most are dropped on
                // arrival instead. Not all: the kernel still takes one
                // segment into an empty queue (up to 64 KiB on loopback),
                // which tiny_http parses if it reads before finding the
                // queue empty, the end of the connection for it.
                let _ = socket2::SockRef::from(&s).set_recv_buffer_size(0);
                discard_queued(&s);
            }
            shut
        }
        _ => false,
    }
}

/// At most this much is discarded from one connection at one shutdown
/// (a sender faster than that meets the next look, or its reset once
/// tiny_http lets go).
const DISCARD_AT_MOST: usize = 64 << 20;

/// Throws away what a connection shut for reading still has queued, so
/// that tiny_http's next read is its end. Linux keeps handing queued
/// bytes to `read` after `shutdown(SHUT_RD)`, and tiny_http would parse
/// all of them: a client that pipelined a flood before its connection
/// was shut had every request of it parsed and queued (150 such
/// connections: over 400 MB). `recv` with `MSG_TRUNC` on TCP drops the
/// bytes in the kernel without copying them; `MSG_DONTWAIT` keeps this
/// thread from waiting (the flag is per call: the socket tiny_http reads
/// stays blocking). Nothing of what is discarded is taken anyway: these
/// connections are ignored from now on.
fn discard_queued(s: &TcpStream) -> usize {
    use rustix::net::RecvFlags;
    // Never written to (the kernel copies nothing with `TRUNC`), so never
    // touched: it takes no memory.
    let mut room: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut gone = 0;
    while gone < DISCARD_AT_MOST {
        match rustix::net::recv(
            s,
            room.spare_capacity_mut(),
            RecvFlags::TRUNC | RecvFlags::DONTWAIT,
        ) {
            Ok((_, 0)) | Err(_) => break,
            Ok((_, n)) => gone += n,
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Resets `client`'s connection from its side and waits until `accepted`,
    /// our end of it, has seen the reset (a read fails with it).
    fn reset_by_its_client(client: TcpStream, accepted: &TcpStream) {
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        accepted
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let read = std::io::Read::read(&mut &*accepted, &mut [0u8; 1]);
        assert!(
            read.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
    }

    /// How the closer takes each kind of socket at first sight: a
    /// connection accepted on our listener is ours by its peer; one its
    /// client reset before that is ours unnamed; the listener, an outgoing
    /// connection, a UDP socket on our port and a Unix socket are
    /// another's, and never hold a forget back.
    #[test]
    fn sockets_are_told_apart_at_first_sight() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let now = Instant::now();
        let as_tcp = |fd: OwnedFd| TcpStream::from(fd);
        let kind = |s: &TcpStream| match classify(s, 7, listening, now) {
            Known::Ours { peer, fd, .. } => format!("ours {peer} on {fd}"),
            Known::Reset { fd, .. } => format!("reset on {fd}"),
            Known::Other => "other".to_string(),
        };
        let client = TcpStream::connect(listening).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(kind(&accepted), format!("ours {peer} on 7"));
        assert_eq!(kind(&client), "other", "outgoing");
        reset_by_its_client(client, &accepted);
        assert_eq!(kind(&accepted), "reset on 7", "reset");
        let listener = as_tcp(listener.into());
        assert_eq!(kind(&listener), "other", "listener");
        let udp = as_tcp(std::net::UdpSocket::bind(listening).unwrap().into());
        assert_eq!(kind(&udp), "other", "udp on our port");
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(kind(&as_tcp(unix.into())), "other", "unix");
        // Where its own address cannot be read either, a TCP socket that
        // is not listening may be a connection of ours.
        assert!(unnamed_connection(&accepted));
        assert!(!unnamed_connection(&listener));
    }

    /// Books that note each time the closer forgets absent addresses.
    #[derive(Default)]
    struct Forgets(std::sync::Mutex<Vec<HashSet<SocketAddr>>>);

    impl Books for Forgets {
        fn activity(&self, _: SocketAddr) -> Activity {
            Activity::Unseen
        }
        fn claim(&self, _: SocketAddr) -> bool {
            false
        }
        fn unclaim(&self, _: SocketAddr) {}
        fn gone(&self, _: SocketAddr) {}
        fn forget_gone(&self, _: &HashSet<SocketAddr>, _: Instant) {}
        fn forget_absent(&self, open: &HashSet<SocketAddr>, _: Instant) {
            self.0.lock().unwrap().push(open.clone());
        }
        fn cut(&self, _: SocketAddr, _: u64, _: Option<Cut>) -> bool {
            false
        }
    }

    /// Absent addresses are forgotten at a read of the table only when
    /// every connection in it was named: not while a connection its client
    /// reset before it was first seen is open (tiny_http may still hand
    /// over what it read of it), and again once it is closed. Other tests
    /// of this process hold sockets too, so the second is waited for.
    #[test]
    fn absent_addresses_wait_while_a_reset_connection_is_open() {
        let me = duplicating().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let client = TcpStream::connect(listening).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        reset_by_its_client(client, &accepted);
        let books = Forgets::default();
        let mut known = HashMap::new();
        for _ in 0..3 {
            refresh(&me, listening, &mut known, Instant::now(), &books).unwrap();
        }
        assert!(
            books.0.lock().unwrap().is_empty(),
            "forgotten while a reset connection was open"
        );
        drop(accepted);
        let deadline = Instant::now() + Duration::from_secs(10);
        while books.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "never forgotten after it closed");
            refresh(&me, listening, &mut known, Instant::now(), &books).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection its client reset before it was accepted, a request
    /// queued on it, as a tiny_http pool finds hundreds in a storm of
    /// resets: at the first read of the table that finds it, what was
    /// queued is thrown away (no pool thread ends on it then); found held
    /// at later reads, it is stranded in a queue and due a nudge, at most
    /// `MAX_NUDGES` times; closed, it is forgotten.
    #[test]
    fn a_held_reset_connection_is_cleared_then_nudged_a_bounded_number_of_times() {
        let me = duplicating().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let client = TcpStream::connect(listening).unwrap();
        (&client)
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let (accepted, _) = listener.accept().unwrap();
        // Accepted before or after the reset landed: looked at after.
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.peer_addr().is_ok() {
            assert!(Instant::now() < deadline, "the reset never landed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut buf = [0u8; 64];
        assert!(accepted.peek(&mut buf).unwrap() > 0, "its request queued");
        let books = Forgets::default();
        let mut known = HashMap::new();
        let start = Instant::now();
        let read_at = |known: &mut HashMap<u64, Known>, at: Instant, due: bool| {
            refresh(&me, listening, known, at, &books).unwrap();
            clear_resets(&me, known, at, due, &mut None)
        };
        assert!(!read_at(&mut known, start, true), "first found: cleared");
        // Nothing queued is left, the reset's error is, and every read
        // after it fails too: a plain end would let tiny_http take a
        // chunked body cut there as whole.
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::NotConnected,
            std::io::ErrorKind::NotConnected,
        ] {
            let after = (&accepted).read(&mut buf);
            assert!(after.as_ref().is_err_and(|e| e.kind() == kind), "{after:?}");
        }
        // Held: said at reads far enough apart, never twice at once, nor
        // when no nudge can go out.
        let mut at = start;
        for look in 0..MAX_NUDGES {
            at += RESET_NUDGES_APART;
            assert!(!read_at(&mut known, at, false), "not due at look {look}");
            assert!(read_at(&mut known, at, true), "held at look {look}");
            assert!(!read_at(&mut known, at, true), "said twice at look {look}");
        }
        // The first ones come sooner than that.
        let mut soon = HashMap::new();
        assert!(!read_at(&mut soon, start, true));
        assert!(read_at(&mut soon, start + LOOK_AGAIN, true));
        assert!(read_at(&mut soon, start + LOOK_AGAIN * 3, true));
        assert!(
            !read_at(&mut soon, start + LOOK_AGAIN * 6, true),
            "too soon"
        );
        assert!(
            !read_at(&mut known, at + RESET_NUDGES_APART, true),
            "given up"
        );
        let reset =
            |known: &HashMap<u64, Known>| known.values().any(|k| matches!(k, Known::Reset { .. }));
        assert!(reset(&known) && !known.values().any(Known::may_nudge));
        drop(accepted);
        read_at(&mut known, at, true);
        assert!(!reset(&known), "forgotten once closed");
    }

    /// The race a worker reading a body can win: it empties the queue of
    /// a connection reset under it, and the reset's error goes to another
    /// read than the worker's. Once the closer has cleared the connection,
    /// the worker's next read fails all the same, never a plain end (a
    /// chunked body cut by the reset was saved as whole so).
    #[test]
    fn a_reset_connection_cleared_after_its_error_was_taken_still_fails_its_reads() {
        let me = duplicating().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let client = TcpStream::connect(listening).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (&client).write_all(b"POST / HTTP/1.1\r\n").unwrap();
        let mut buf = [0u8; 64];
        assert!((&accepted).read(&mut buf).unwrap() > 0);
        // Its error taken by a read other than the worker's.
        reset_by_its_client(client, &accepted);
        let books = Forgets::default();
        let mut known = HashMap::new();
        refresh(&me, listening, &mut known, Instant::now(), &books).unwrap();
        let mut failed = None;
        clear_resets(&me, &mut known, Instant::now(), true, &mut failed);
        assert_eq!(failed, None);
        let after = (&accepted).read(&mut buf);
        assert!(
            after
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotConnected),
            "{after:?}"
        );
    }

    #[test]
    fn connections_are_shed_for_room_and_down_to_three_quarters_past_the_cap() {
        // Within the cap, and descriptors to spare: none.
        assert_eq!(to_shed(None, 64, 64), 0);
        // Past it: down to 48.
        assert_eq!(to_shed(None, 65, 64), 17);
        assert_eq!(to_shed(None, 152, 64), 104);
        // Short of descriptors: two come free with each.
        assert_eq!(to_shed(Some(7), 10, 64), 4);
        // Both: whichever sheds more.
        assert_eq!(to_shed(Some(7), 152, 64), 104);
        assert_eq!(to_shed(Some(300), 152, 64), 150);
        // A cap too large to take three quarters of.
        assert_eq!(to_shed(None, u64::MAX, u64::MAX), 0);
    }

    /// Bytes come unread on a connection, then are read: seen through a
    /// duplicate of its descriptor, as the shedding looks.
    #[test]
    fn bytes_waiting_unread_are_seen_through_a_duplicate() {
        use std::os::fd::AsRawFd;
        let me = duplicating().expect("a pidfd of this process");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let fd = accepted.as_raw_fd();
        let inode = linked_socket(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(!waiting_bytes(&me, fd, inode));
        client.write_all(b"GET").unwrap();
        // Wait for them by reading them, without taking them.
        let mut peek = [0; 3];
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while accepted.peek(&mut peek).unwrap() < 3 {}
        assert!(waiting_bytes(&me, fd, inode));
        // Another socket's inode on this number: not looked at.
        assert!(!waiting_bytes(&me, fd, inode + 1));
        accepted.read_exact(&mut peek).unwrap();
        assert!(!waiting_bytes(&me, fd, inode));
    }

    /// Books where every connection is idle and can be claimed.
    struct AllIdle;

    impl Books for AllIdle {
        fn activity(&self, _: SocketAddr) -> Activity {
            Activity::Unseen
        }
        fn claim(&self, _: SocketAddr) -> bool {
            true
        }
        fn unclaim(&self, _: SocketAddr) {}
        fn gone(&self, _: SocketAddr) {}
        fn forget_gone(&self, _: &HashSet<SocketAddr>, _: Instant) {}
        fn forget_absent(&self, _: &HashSet<SocketAddr>, _: Instant) {}
        fn cut(&self, _: SocketAddr, _: u64, _: Option<Cut>) -> bool {
            false
        }
    }

    /// Shedding goes by age among connections that never sent anything,
    /// leaves one with bytes waiting unread (a request on its way, queued
    /// in a pool) however old, and one known for less than `SHED_AGE`.
    #[test]
    fn shedding_leaves_a_connection_with_bytes_waiting() {
        use std::os::fd::AsRawFd;
        let me = duplicating().expect("a pidfd of this process");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let now = Instant::now();
        let mut known = HashMap::new();
        // Oldest first: the one with bytes waiting, then two silent ones,
        // then one too young to shed.
        let ages = [5, 4, 3, 0];
        let mut pairs = Vec::new();
        for secs in ages {
            let client = TcpStream::connect(listening).unwrap();
            let (accepted, peer) = listener.accept().unwrap();
            let fd = accepted.as_raw_fd();
            let inode = linked_socket(format!("/proc/self/fd/{fd}")).unwrap();
            known.insert(
                inode,
                Known::Ours {
                    fd,
                    local: listening,
                    peer,
                    since: now.checked_sub(Duration::from_secs(secs)).unwrap(),
                    shut: None,
                    counted: false,
                    unread: 0,
                },
            );
            pairs.push((client, accepted, inode));
        }
        pairs[0].0.write_all(b"POST / HTTP/1.1\r\n").unwrap();
        let mut peek = [0; 4];
        pairs[0]
            .1
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while pairs[0].1.peek(&mut peek).unwrap() < 4 {}
        let mut head_cap = heads::HeadCap::start(Duration::from_secs(30));
        let activity = |_| Activity::Unseen;
        let shut_now = |known: &HashMap<u64, Known>| -> Vec<bool> {
            pairs
                .iter()
                .map(|(_, _, inode)| {
                    matches!(known.get(inode), Some(Known::Ours { shut: Some(_), .. }))
                })
                .collect()
        };
        // One wanted: the oldest silent one.
        let made = shed(&me, &mut known, &AllIdle, &activity, &mut head_cap, now, 1);
        assert_eq!(made, (1, 1));
        assert_eq!(shut_now(&known), [false, true, false, false]);
        // As many as there are: the other silent one, no more.
        let made = shed(&me, &mut known, &AllIdle, &activity, &mut head_cap, now, 4);
        assert_eq!(made, (1, 1));
        let shut = shut_now(&known);
        assert_eq!(shut, [false, true, true, false]);
        // The two shed see their end; the others are open.
        for (i, (client, _, _)) in pairs.iter_mut().enumerate() {
            if shut[i] {
                client
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                assert!(matches!(client.read(&mut [0; 1]), Ok(0)), "connection {i}");
            } else {
                client.set_nonblocking(true).unwrap();
                let read = client.read(&mut [0; 1]);
                assert!(
                    read.as_ref()
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
                    "connection {i}: {read:?}"
                );
            }
        }
    }

    #[test]
    fn a_socket_link_names_its_inode() {
        assert_eq!(socket_inode("socket:[4026]"), Some(4026));
        assert_eq!(socket_inode("pipe:[4026]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    /// The thread, on a listener of its own: a connection asked for is
    /// shut for reading, what it had queued thrown away (its peer reads
    /// our last words, then the end); a
    /// quiet one nobody reads is shut by the sweep once nothing came on it
    /// for all but a sweep of the read timeout;
    /// a busy one, one a thread is reading and an outgoing one are left
    /// alone.
    #[test]
    fn asked_and_quiet_connections_are_shut_and_busy_ones_left() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let read_timeout = Duration::from_millis(400);
        let (tx, rx) = crossbeam_channel::unbounded();
        let closer = Closer::new(tx);
        let tally = closer.tally.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let busy_peer = Arc::new(std::sync::Mutex::new(None));
        let kept_peer = Arc::new(std::sync::Mutex::new(None));
        let unclaimed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gone = Arc::new(std::sync::Mutex::new(Vec::new()));
        let forgetting = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let stopping = stopping.clone();
            let busy_peer = busy_peer.clone();
            let kept_peer = kept_peer.clone();
            let unclaimed = unclaimed.clone();
            let gone = gone.clone();
            let forgetting = forgetting.clone();
            std::thread::spawn(move || {
                let watch = Watch {
                    listening: SocketAddr::from(([127, 0, 0, 1], port)),
                    read_timeout,
                    nudges: 0,
                    max_connections: 1_000,
                };
                // `busy` has a request in hand; `kept` is quiet when looked
                // at, busy by the time it is claimed; the unclaimed are
                // noted.
                type Shared<T> = Arc<std::sync::Mutex<T>>;
                struct Scripted {
                    busy: Shared<Option<SocketAddr>>,
                    kept: Shared<Option<SocketAddr>>,
                    unclaimed: Shared<Vec<SocketAddr>>,
                    gone: Shared<Vec<SocketAddr>>,
                    forgetting: Shared<Vec<(HashSet<SocketAddr>, Instant)>>,
                }
                impl Books for Scripted {
                    fn activity(&self, peer: SocketAddr) -> Activity {
                        if *self.busy.lock().unwrap() == Some(peer) {
                            Activity::Busy {
                                done: 0,
                                body: None,
                            }
                        } else {
                            Activity::Unseen
                        }
                    }
                    fn claim(&self, peer: SocketAddr) -> bool {
                        *self.kept.lock().unwrap() != Some(peer)
                    }
                    fn unclaim(&self, peer: SocketAddr) {
                        self.unclaimed.lock().unwrap().push(peer);
                    }
                    fn gone(&self, peer: SocketAddr) {
                        self.gone.lock().unwrap().push(peer);
                    }
                    fn cut(&self, _: SocketAddr, _: u64, _: Option<Cut>) -> bool {
                        true
                    }
                    fn forget_gone(&self, open: &HashSet<SocketAddr>, now: Instant) {
                        self.forgetting.lock().unwrap().push((open.clone(), now));
                    }
                    fn forget_absent(&self, _: &HashSet<SocketAddr>, _: Instant) {}
                }
                let books = Scripted {
                    busy: busy_peer,
                    kept: kept_peer,
                    unclaimed,
                    gone,
                    forgetting,
                };
                let mut refused = None;
                run(
                    watch,
                    Kit::take(watch.read_timeout),
                    rx,
                    tally,
                    stopping,
                    &books,
                    |why| refused = Some(why),
                );
                refused
            })
        };
        let asked_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut asked_server, asked_peer) = listener.accept().unwrap();
        let mut quiet_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (quiet_server, quiet) = listener.accept().unwrap();
        let quiet_since = Instant::now();
        let mut busy_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_busy_server, busy) = listener.accept().unwrap();
        *busy_peer.lock().unwrap() = Some(busy);
        let mut kept_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_kept_server, kept) = listener.accept().unwrap();
        *kept_peer.lock().unwrap() = Some(kept);
        let mut read_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut read_server, _) = listener.accept().unwrap();
        let reading = std::thread::spawn(move || {
            read_server
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = [0u8; 4];
            read_server.read(&mut buf).map(|n| buf[..n].to_vec())
        });

        // What it sent before it was shut is queued, unread.
        let mut asked_client = asked_client;
        asked_client.write_all(&[b'x'; 64 * 1024]).unwrap();
        asked_server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert!(asked_server.peek(&mut buf).unwrap() > 0);
        let started = Instant::now();
        closer.close(Some(asked_peer));
        while closer.tally.closed.load(Ordering::Relaxed) == 0 {
            assert!(
                started.elapsed() < read_timeout,
                "shut on request, not by the sweep"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Its reading side has ended, what was queued thrown away; writing
        // still works.
        assert_eq!(asked_server.read(&mut buf).unwrap(), 0, "read side shut");
        // And what it sends from now on finds little room (the kernel's
        // least receive buffer is a few KiB; it was 128 KiB or more).
        let room = socket2::SockRef::from(&asked_server)
            .recv_buffer_size()
            .unwrap();
        assert!(room <= 8 * 1024, "{room} bytes of room left to queue");
        asked_server.write_all(b"last words").unwrap();
        drop(asked_server);
        let mut got = Vec::new();
        asked_client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        // Gone: the books hear of it.
        let has_gone = |peer: SocketAddr| gone.lock().unwrap().contains(&peer);
        let until = Instant::now() + Duration::from_secs(10);
        while !has_gone(asked_peer) {
            assert!(Instant::now() < until, "the asked one never reported gone");
            std::thread::sleep(Duration::from_millis(10));
        }

        // The quiet one: closed by the sweep, once nothing came for all
        // but a sweep of the read timeout (it has sent nothing since it
        // was made).
        quiet_client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(quiet_client.read(&mut buf).unwrap_or(0), 0);
        // (The kernel's count of the silence is in clock ticks, up to
        // 10 ms high.)
        assert!(
            quiet_since.elapsed() + Duration::from_millis(10)
                >= read_timeout - sweep_every(read_timeout),
            "not before its time: {:?}",
            quiet_since.elapsed()
        );
        // Claimed until its socket is gone, then reported gone.
        assert!(!has_gone(quiet));
        drop(quiet_server);
        let until = Instant::now() + Duration::from_secs(10);
        while !has_gone(quiet) {
            assert!(Instant::now() < until, "never reported gone");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(unclaimed.lock().unwrap().is_empty());
        // A sweep after it is gone counts the connections still open, and
        // not it.
        let gone = Instant::now();
        let until = gone + Duration::from_secs(10);
        let open = loop {
            let last = forgetting.lock().unwrap().last().cloned();
            if let Some((open, _)) = last.filter(|(_, swept)| *swept > gone) {
                break open;
            }
            assert!(Instant::now() < until, "no sweep after it was gone");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(!open.contains(&quiet), "{open:?}");
        assert!(open.contains(&busy) && open.contains(&kept), "{open:?}");
        // Nothing arrives on `client` for `wait`: its connection is open.
        let still_open = |client: &mut TcpStream, wait: Duration, what: &str| {
            client.set_read_timeout(Some(wait)).unwrap();
            let e = client.read(&mut [0u8; 16]).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{what}: {e}"
            );
        };
        // The busy one is still open well after that.
        still_open(&mut busy_client, read_timeout * 3, "the busy one was shut");
        // So is the one whose claim was refused.
        still_open(
            &mut kept_client,
            read_timeout,
            "a connection was shut although its claim was refused",
        );
        // The one being read is still open too: what it is sent arrives.
        read_client.write_all(b"late").unwrap();
        assert_eq!(reading.join().unwrap().unwrap(), b"late");
        assert_eq!(closer.tally.closed.load(Ordering::Relaxed), 2);
        stopping.store(true, Ordering::SeqCst);
        drop(closer);
        assert_eq!(thread.join().unwrap(), None);
    }

    #[test]
    fn the_kernel_table_addresses_are_read() {
        let v4 = if cfg!(target_endian = "little") {
            "0100007F:1F90"
        } else {
            "7F000001:1F90"
        };
        assert_eq!(table_address(v4), Some("127.0.0.1:8080".parse().unwrap()));
        let mapped = if cfg!(target_endian = "little") {
            "0000000000000000FFFF00000100007F:0050"
        } else {
            "00000000000000000000FFFF7F000001:0050"
        };
        assert_eq!(
            table_address(mapped),
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert_eq!(table_address("zz:1"), None);
    }

    /// A connection whose bytes nobody reads is found in the kernel's
    /// table by its peer; once read, it is not.
    #[test]
    fn connections_with_unread_bytes_are_found() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert!(!unread_connections(port).contains(&peer));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !unread_connections(port).contains(&peer) {
            assert!(Instant::now() < deadline, "never seen waiting");
            std::thread::yield_now();
        }
        let mut buf = [0u8; 64];
        let _ = server.read(&mut buf).unwrap();
        assert!(!unread_connections(port).contains(&peer));
    }

    /// Only established connections on our port (as their local end) with
    /// bytes waiting count: not the client ends of the same connections,
    /// not the listener, not other ports.
    #[test]
    fn only_our_ends_with_unread_bytes_are_taken_from_a_table() {
        // 127.0.0.1:8080 (1F90) is ours; 127.0.0.1:40000 (9C40) a client.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 11 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:0000002A 00:00000000 00000000     0        0 12 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000010 00:00000000 00000000     0        0 13 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 14 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F90 0100007F:9C42 08 00000000:00000003 00:00000000 00000000     0        0 15 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:1F91 0100007F:9C43 01 00000000:00000003 00:00000000 00000000     0        0 16 1 0000000000000000 20 4 30 10 -1
";
        let found: Vec<SocketAddr> = unread_in_table(table, 8080).collect();
        assert_eq!(
            found,
            vec!["127.0.0.1:40000".parse::<SocketAddr>().unwrap()]
        );
    }

    /// Stuck at two looks in a row, a nudge is due, at most `MAX_NUDGES`
    /// times; a connection with a request in hand never counts.
    #[test]
    fn a_connection_waiting_at_two_looks_is_nudged_a_bounded_number_of_times() {
        let mut waiting = HashMap::new();
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let quiet = |_| Activity::Unseen;
        let busy = |_| Activity::Busy {
            done: 0,
            body: None,
        };
        let found = |w: &mut HashMap<SocketAddr, Waiting>, a: &dyn Fn(SocketAddr) -> Activity| {
            nudge_due([peer], w, a, false) == [peer]
        };
        assert!(!found(&mut waiting, &busy));
        assert!(!found(&mut waiting, &busy), "busy: never");
        assert!(!found(&mut waiting, &quiet), "first look");
        assert!(waiting[&peer].may_nudge());
        for _ in 0..MAX_NUDGES {
            assert!(found(&mut waiting, &quiet));
        }
        assert!(!found(&mut waiting, &quiet), "given up");
        assert!(!waiting[&peer].may_nudge(), "and no reason to look for it");
        assert!(nudge_due([], &mut waiting, &quiet, false).is_empty());
        assert!(!found(&mut waiting, &quiet), "seen anew: first look again");
        assert!(found(&mut waiting, &quiet));
    }

    /// Looks after which a dead task was freed do not count against
    /// `MAX_NUDGES`: a connection behind hundreds of others that each end
    /// their thread (a storm of resets) is nudged for as long as the
    /// queue drains, and given up after `MAX_NUDGES` looks in all at which
    /// it did not.
    #[test]
    fn a_stuck_connection_is_nudged_while_the_queue_ahead_drains() {
        let mut waiting = HashMap::new();
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let quiet = |_| Activity::Unseen;
        let mut due = |freed| nudge_due([peer], &mut waiting, &quiet, freed) == [peer];
        assert!(!due(true), "first look: seen only");
        for look in 0..10 * MAX_NUDGES {
            assert!(due(true), "look {look}: draining");
        }
        // The first of those looks was its first nudge.
        for look in 1..MAX_NUDGES {
            assert!(due(false), "look {look} with nothing freed");
        }
        assert!(!due(false), "given up");
        assert!(!due(true), "and not taken up again");
    }
}

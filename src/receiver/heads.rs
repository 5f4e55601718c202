//! A cap on request heads, from outside tiny_http.
//!
//! tiny_http 0.12 reads a request's head line by line into a growing
//! `Vec`, with no limit on a line or on the head, before the receiver sees
//! the request: a client sending header bytes without end makes it hold
//! them all. What the kernel counts per connection is the lever left: its
//! TCP information (`tcpi_bytes_received`), less what still waits unread,
//! is what tiny_http has read from the socket. Read while no request of the
//! connection is in hand and none came since, that can only be a head (a
//! body is read while its request is in hand). Past `HEAD_LIMIT`, the
//! connection is due to be shut; so is every head past `HEAD_FLOOR` while
//! heads hold more than `HEADS_BUDGET` across all connections.
//!
//! The counts come from the kernel's socket diagnostics (`sock_diag`
//! netlink, as `ss` reads them), in one of two ways. With few
//! connections, each is asked for by its two addresses (the closing
//! thread knows them from our own descriptors): an exact lookup is one
//! hash probe in the kernel, about a microsecond. With many, one dump of
//! the established TCP sockets, filtered to our port here: a dump walks
//! all of the kernel's hash buckets (262 144 here, about 5 ms whatever
//! the connections), which costs less than reading a thousand
//! descriptors. `HeadCap` is the cap as that thread runs it; `HeadWatch`
//! its bookkeeping.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::activity::Activity;

/// Bytes tiny_http may read for one head (request line and headers)
/// before the connection is shut. A device's head is under 1 KiB.
pub const HEAD_LIMIT: u64 = 1024 * 1024;

/// Head bytes tiny_http may hold across all connections at once. tiny_http
/// keeps every header line of a head as two heap strings in a `Vec`, so a
/// head of tiny lines (`a:b` and its line end, 5 bytes) costs 20 to 30
/// times its size in memory: 50 connections each a little under
/// `HEAD_LIMIT` took the receiver to 1 GB. Past this budget, every head
/// longer than `HEAD_FLOOR` is cut.
pub const HEADS_BUDGET: u64 = 2 * 1024 * 1024;
/// Heads this long or shorter are never cut for the budget: a device's
/// head is about 300 bytes, and tiny_http reads at most 1 KiB of a body
/// along with its head.
pub const HEAD_FLOOR: u64 = 2 * 1024;

/// How often the cap counts what tiny_http has read of each connection.
/// A client sending an endless head at loopback speed (about 90 MB/s into
/// tiny_http here) gets this long past the cap (after a body, up to the
/// next count after it as well: see `Head::after_body`).
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Connections of ours beyond which it counts only every `LOOK_IN_A_CROWD`
/// (in a dump: fewer than 512 descriptors never hold so many): a dump
/// costs more with each, and the nudges need the CPU.
const CROWD: usize = 256;
const LOOK_IN_A_CROWD: Duration = Duration::from_millis(500);
/// How soon the next count comes, outside a crowd, after one that found
/// a connection's head growing fast (`GROWING` since the count before).
const LOOK_SOON: Duration = Duration::from_millis(10);
/// Head bytes read between two counts `LOOK_EVERY` apart that make the
/// next one come `LOOK_SOON`; as a rate, for counts closer together (the
/// closer's own looks and its recounts after nudges come in between), but
/// never less than `GROWING_FLOOR`. A device's head is
/// under 1 KiB, and tiny_http reads at most its buffer (1 KiB in 0.12)
/// ahead of a request waiting its turn.
const GROWING: u64 = 64 * 1024;
/// See `GROWING`.
const GROWING_FLOOR: u64 = 8 * 1024;
/// Lookups sent in one message: their answers (about 300 bytes each)
/// must fit the socket's receive buffer.
const LOOKUPS_AT_ONCE: usize = 32;
/// The kernel's number for an established TCP connection.
const TCP_ESTABLISHED: u8 = 1;
/// The kernel's error for a lookup that found no socket.
const ENOENT: i32 = 2;

/// One of our connections, as the closing thread found it among our
/// descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ours {
    pub inode: u64,
    pub local: SocketAddr,
    /// As `getpeername` gives it, as tiny_http has it.
    pub peer: SocketAddr,
}

/// The cap as the closing thread runs it: when to count, and the socket
/// to count with. Without socket diagnostics there is no cap.
pub struct HeadCap {
    diag: Option<Diag>,
    /// Diagnostics opened at start: a failed socket is opened again.
    available: bool,
    watch: HeadWatch,
    next: Instant,
}

impl HeadCap {
    /// The cap, with deadlines on heads and bodies by `read_timeout`.
    pub fn start(read_timeout: Duration) -> HeadCap {
        let diag = Diag::open().ok();
        HeadCap {
            available: diag.is_some(),
            diag,
            watch: HeadWatch::with_deadlines(read_timeout),
            next: Instant::now() + LOOK_EVERY,
        }
    }

    /// Whether a count for the cap is due at `now` (every `LOOK_EVERY`, or
    /// `LOOK_IN_A_CROWD` after a count of more than `CROWD`).
    pub fn due(&self, now: Instant) -> bool {
        self.available && now >= self.next
    }

    /// When the next count for the cap is due; None without socket
    /// diagnostics.
    pub fn next(&self) -> Option<Instant> {
        self.available.then_some(self.next)
    }

    /// Counts our connections at `now` (when due, or sooner for the
    /// closing thread's looks): every one's counts, and those over a cap
    /// (a head past `HEAD_LIMIT`, or past `HEAD_FLOOR` while all heads
    /// hold more than `HEADS_BUDGET`) or past a deadline; None without socket diagnostics.
    pub fn count(
        &mut self,
        now: Instant,
        which: Which,
        activity: &dyn Fn(SocketAddr) -> Activity,
    ) -> Option<(Vec<Counted>, Vec<Overs>)> {
        // Due again in any case: a socket that cannot be opened (out of
        // descriptors) must not make the closing thread spin.
        self.next = now + LOOK_EVERY;
        let counted = self.ask(|diag| match which {
            Which::These(ours) => diag.looked_up(ours),
            Which::AllOn(listening) => diag.dumped(listening),
        })?;
        let over = self.watch.look_at(now, &counted, activity);
        if counted.len() > CROWD {
            self.next = now + LOOK_IN_A_CROWD;
        } else if self.watch.soon {
            self.next = now + LOOK_SOON;
        }
        Some((counted, over))
    }

    /// What the kernel counts of `ours` now, each looked up, without the
    /// cap's bookkeeping (the shedding asks which connections have sent
    /// anything). None without socket diagnostics.
    pub fn received(&mut self, ours: &[Ours]) -> Option<Vec<Counted>> {
        self.ask(|diag| diag.looked_up(ours))
    }

    /// Counts with the diagnostics socket, opened first if need be. After
    /// any failure a new socket is opened: the rest of an answer cut short
    /// must not pass for the next one.
    fn ask(&mut self, how: impl FnOnce(&mut Diag) -> Option<Vec<Counted>>) -> Option<Vec<Counted>> {
        if self.diag.is_none() && self.available {
            self.diag = Diag::open().ok();
        }
        let counted = how(self.diag.as_mut()?);
        if counted.is_none() {
            self.diag = None;
        }
        counted
    }
}

/// The connections to count.
pub enum Which<'a> {
    /// These, each looked up.
    These(&'a [Ours]),
    /// Every established one accepted on this listener's port, in a dump.
    AllOn(SocketAddr),
}

/// One of our connections as the kernel counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub peer: SocketAddr,
    pub inode: u64,
    /// Bytes the process has read from it so far.
    pub read: u64,
    /// Bytes that came and wait unread.
    pub unread: u64,
    /// Since the last bytes came (the kernel's `last_data_recv`).
    pub silent: Duration,
}

/// A socket for the kernel's socket diagnostics.
struct Diag {
    socket: netlink_sys::Socket,
    /// Where answers are received (kept between counts).
    buf: Vec<u8>,
}

impl Diag {
    fn open() -> std::io::Result<Diag> {
        let mut socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        // The closing thread must never block for good on an answer that
        // was lost (a full receive buffer drops it); the caller opens a new
        // socket after any failure, so an answer cut short leaves nothing
        // behind to be read as the next one.
        socket2::SockRef::from(&socket).set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Diag {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// What the process has read of each of `ours` that is still
    /// established (one closing or closed meanwhile is left out); None
    /// when the kernel did not answer as expected.
    fn looked_up(&mut self, ours: &[Ours]) -> Option<Vec<Counted>> {
        let mut found = Vec::with_capacity(ours.len());
        for chunk in ours.chunks(LOOKUPS_AT_ONCE) {
            let mut out = Vec::new();
            for (n, c) in chunk.iter().enumerate() {
                let mut request = NetlinkMessage::new(lookup_header(n), lookup(c).into());
                request.finalize();
                let at = out.len();
                out.resize(at + request.buffer_len(), 0);
                request.serialize(&mut out[at..]);
            }
            self.socket.send(&out, 0).ok()?;
            // One answer per lookup: the socket, or an error (gone).
            let mut answered = 0;
            self.receive(|message| {
                let c = chunk.get(message.header.sequence_number as usize)?;
                answered += 1;
                match message.payload {
                    // The lookup ignores the state asked for: a connection
                    // closing or closed is not counted.
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                        if u64::from(r.header.inode) == c.inode
                            && r.header.state == TCP_ESTABLISHED =>
                    {
                        if let Some((read, unread, silent)) = counts(&r) {
                            found.push(Counted {
                                peer: c.peer,
                                inode: c.inode,
                                read,
                                unread,
                                silent,
                            });
                        }
                    }
                    // Closing, or its addresses now name another socket.
                    NetlinkPayload::InnerMessage(_) => {}
                    // Gone. Any other error says the lookups do not work
                    // here: no count, rather than every connection gone.
                    NetlinkPayload::Error(e) if e.code.map(|c| c.get()) == Some(-ENOENT) => {}
                    _ => return None,
                }
                Some(answered < chunk.len())
            })?;
        }
        Some(found)
    }

    /// Our established connections accepted on `listening` (by its port,
    /// as their local end), with what the process has read of each; None
    /// when the kernel did not answer as expected. Only the listener's
    /// family is asked: an IPv6 listener's IPv4 clients are IPv6 sockets
    /// with mapped addresses.
    fn dumped(&mut self, listening: SocketAddr) -> Option<Vec<Counted>> {
        let port = listening.port();
        let (family, socket_id) = if listening.is_ipv4() {
            (AF_INET, SocketId::new_v4())
        } else {
            (AF_INET6, SocketId::new_v6())
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: StateFlags::ESTABLISHED,
                socket_id,
            })
            .into(),
        );
        request.finalize();
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        self.socket.send(&out, 0).ok()?;
        let mut found = Vec::new();
        self.receive(|message| match message.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                let id = &r.header.socket_id;
                // Not ours: a client end, another service.
                if id.source_port == port
                    && let Some((read, unread, silent)) = counts(&r)
                {
                    found.push(Counted {
                        peer: peer_of(id),
                        inode: u64::from(r.header.inode),
                        read,
                        unread,
                        silent,
                    });
                }
                Some(true)
            }
            NetlinkPayload::Done(_) => Some(false),
            NetlinkPayload::Error(_) | NetlinkPayload::Overrun(_) => None,
            _ => Some(true),
        })?;
        Some(found)
    }

    /// Receives the kernel's answers, handing each message to `each` until
    /// it says there is no more to come; None when a receive fails, a
    /// message cannot be read, or `each` says so.
    fn receive(
        &mut self,
        mut each: impl FnMut(NetlinkMessage<SockDiagMessage>) -> Option<bool>,
    ) -> Option<()> {
        loop {
            let size = self.socket.recv(&mut &mut self.buf[..], 0).ok()?;
            let mut at = 0;
            while at < size {
                let message =
                    NetlinkMessage::<SockDiagMessage>::deserialize(&self.buf[at..size]).ok()?;
                let length = message.header.length as usize;
                if !each(message)? {
                    return Some(());
                }
                if length == 0 {
                    break;
                }
                at += length;
            }
        }
    }
}

/// What the process has read of a socket, what waits unread, and how long
/// nothing came, from the kernel's answer about it.
fn counts(r: &InetResponse) -> Option<(u64, u64, Duration)> {
    let (received, silent_ms) = r.nlas.iter().find_map(|n| match n {
        Nla::TcpInfo(info) => Some((info.bytes_received, info.last_data_recv)),
        _ => None,
    })?;
    let unread = u64::from(r.header.recv_queue);
    Some((
        received.saturating_sub(unread),
        unread,
        Duration::from_millis(silent_ms.into()),
    ))
}

/// The peer's address as `getpeername` gives it to tiny_http: an IPv6
/// link-local peer carries its interface as scope (and must, to compare
/// equal).
fn peer_of(id: &SocketId) -> SocketAddr {
    match id.destination_address {
        IpAddr::V6(ip) if ip.is_unicast_link_local() => SocketAddr::V6(SocketAddrV6::new(
            ip,
            id.destination_port,
            0,
            id.interface_id,
        )),
        ip => SocketAddr::new(ip, id.destination_port),
    }
}

fn lookup_header(n: usize) -> NetlinkHeader {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = n as u32;
    header
}

/// The exact lookup of one connection. An IPv6 socket's IPv4 peers have
/// mapped addresses, which the kernel looks up as IPv4.
fn lookup(c: &Ours) -> SockDiagMessage {
    let family = if c.local.is_ipv4() { AF_INET } else { AF_INET6 };
    let interface_id = match c.peer {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::INFO,
        states: StateFlags::ESTABLISHED,
        socket_id: SocketId {
            source_port: c.local.port(),
            destination_port: c.peer.port(),
            source_address: c.local.ip(),
            destination_address: c.peer.ip(),
            interface_id,
            // All ones: no cookie to check.
            cookie: [0xff; 8],
        },
    })
}

/// What the watch remembers of a connection.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Read when its current stretch began (as far as the watch saw): a
    /// head, or a body.
    from: u64,
    /// What the connection was doing then: the stretch goes on while
    /// this stays the same.
    mark: Mark,
    /// The first look that saw bytes of the current head.
    began: Option<Instant>,
    /// The stretch began where a body being read ended: where the head
    /// began is known only from `settled` on (see there).
    after_body: bool,
    /// Read at the first look after this mark was first seen (0 for a
    /// connection's first head, seen from its start): what the budget for
    /// all heads counts from. A look counts first and asks what each
    /// connection is doing after, so a request that ended in between
    /// leaves `from` short of where its head began, by the end of its
    /// body: the next look's count comes after it for sure.
    settled: Option<u64>,
    /// Read when the body being read was first seen.
    body_from: Option<u64>,
    /// Read at the last look.
    read: u64,
    /// The body being read: when it last came on by `ARRIVAL_RATE`, and
    /// what had come of it then.
    progress: Option<(Instant, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Between requests, after `done` of them: reading a head.
    Head { done: u64 },
    /// A request in hand, after `done` of them; with the number of its
    /// body being read.
    Body { done: u64, seq: Option<u64> },
    /// No request seen: reading its first head.
    First,
}

/// A connection over a cap, and which.
pub type Overs = (Counted, Over);

/// Which cap or deadline a connection went past, and what it was doing
/// when measured (the closer cuts only if it still is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// A head longer than `HEAD_LIMIT` (or than `HEAD_FLOOR` while all
    /// heads hold more than `HEADS_BUDGET`), read with no request in hand,
    /// after `done` requests (None: before any).
    Head { done: Option<u64> },
    /// A head still coming past its deadline (`arrival_deadline`).
    SlowHead { done: Option<u64> },
    /// Body `seq` still coming past its deadline (`arrival_deadline`).
    SlowBody { seq: u64 },
    /// Body `seq` holds the turn for large bodies or a share of the wire
    /// budget, another waits for it, and less than `ARRIVAL_RATE` of it
    /// came in `TURN_LAPSE`.
    TurnLapsed { seq: u64 },
}

impl Over {
    /// The connection is still doing what it was measured doing: the
    /// same head, or the same body being read.
    pub fn still(self, now: Activity) -> bool {
        match (self, now) {
            (Over::Head { done } | Over::SlowHead { done }, Activity::Quiet { done: d, .. }) => {
                done == Some(d)
            }
            (Over::Head { .. } | Over::SlowHead { .. }, Activity::Unseen) => true,
            (Over::SlowBody { seq }, Activity::Busy { body: Some(b), .. }) => b.seq == seq,
            (Over::TurnLapsed { seq }, Activity::Busy { body: Some(b), .. }) => {
                b.seq == seq && b.wanted
            }
            _ => false,
        }
    }
}

/// Read timeouts a head, or a body, may take to arrive, before the time
/// its bytes earn (`ARRIVAL_RATE`).
pub const ARRIVAL_TIMEOUTS: u32 = 4;
/// Bytes that earn a head or a body one more second: one that keeps
/// coming at this rate or faster is never cut, however large.
pub const ARRIVAL_RATE: u64 = 8 * 1024;
/// A body holding the turn for large bodies while another waits for it
/// must bring `ARRIVAL_RATE` in this long, or it is cut (and refused 503,
/// to be sent again): a body sent fast and then trickled would otherwise
/// hold the turn for the time its first bytes earned (minutes), every
/// other large body refused meanwhile. Shorter than the turn's wait
/// (`turns::TURN_WAIT`), so the one waiting gets the turn. A share of the
/// wire budget (`turns::WIRE_BUDGET`) lapses the same way.
pub const TURN_LAPSE: Duration = Duration::from_secs(3);

/// How long a head, or a body, may take to arrive once `came` bytes of it
/// came: `ARRIVAL_TIMEOUTS` read timeouts, plus a second per
/// `ARRIVAL_RATE` bytes. One that stalls is cut by the read timeout; one
/// that trickles (a byte now and then, each read in time) by this. A head
/// and a body tiny_http reads whole before handing the request over (up
/// to 1 KiB) count as one head.
pub fn arrival_deadline(read_timeout: Duration, came: u64) -> Duration {
    read_timeout.saturating_mul(ARRIVAL_TIMEOUTS) + Duration::from_secs(came / ARRIVAL_RATE)
}

/// Follows what tiny_http reads of each connection that it does not hand
/// over (heads between requests) and how long heads and bodies take;
/// deadlines only with a read timeout.
#[derive(Default)]
pub struct HeadWatch {
    heads: HashMap<u64, Head>,
    read_timeout: Option<Duration>,
    /// The last look found a head growing fast: the next look should
    /// come soon.
    soon: bool,
    /// When the last look was.
    looked: Option<Instant>,
}

impl HeadWatch {
    /// A watch with deadlines: a head must come whole within
    /// `arrival_deadline` from the first look that saw its bytes, a body
    /// from when it began to be read.
    pub fn with_deadlines(read_timeout: Duration) -> HeadWatch {
        HeadWatch {
            heads: HashMap::new(),
            read_timeout: Some(read_timeout),
            soon: false,
            looked: None,
        }
    }

    /// `look_at` now.
    pub fn look(
        &mut self,
        counted: &[Counted],
        activity: &dyn Fn(SocketAddr) -> Activity,
    ) -> Vec<Overs> {
        self.look_at(Instant::now(), counted, activity)
    }

    /// Brings the watch up to date with `counted` at `now` and returns the
    /// connections over a cap or past a deadline. A stretch starts at what
    /// a connection has read now whenever what it is doing changes: a
    /// request taken in hand or done with. One never
    /// seen before, with no request yet, started its head with its first
    /// byte. Heads under their own cap go on to the budget for all heads
    /// (`over_budget`), each counted from its `settled` point.
    pub fn look_at(
        &mut self,
        now: Instant,
        counted: &[Counted],
        activity: &dyn Fn(SocketAddr) -> Activity,
    ) -> Vec<Overs> {
        let mut heads = HashMap::with_capacity(counted.len());
        self.soon = false;
        // What counts as growing fast since the last look, by the time
        // since it.
        let since = self
            .looked
            .replace(now)
            .map_or(LOOK_EVERY, |then| now.saturating_duration_since(then));
        let fast =
            u64::try_from(u128::from(GROWING) * since.as_micros() / LOOK_EVERY.as_micros().max(1))
                .unwrap_or(GROWING)
                .clamp(GROWING_FLOOR, GROWING);
        let mut over = Vec::new();
        // Heads under their own cap, for the budget across them all.
        let mut under = Vec::new();
        for c in counted {
            let seen = self.heads.get(&c.inode).copied();
            let activity = activity(c.peer);
            let mark = match activity {
                Activity::Busy { done, body } => Mark::Body {
                    done,
                    seq: body.map(|b| b.seq),
                },
                Activity::Quiet { done, .. } => Mark::Head { done },
                // What was seen goes on.
                Activity::Unseen => seen.map_or(Mark::First, |h| h.mark),
            };
            let fresh = |from| Head {
                from,
                mark,
                began: None,
                after_body: seen.is_some_and(|h| matches!(h.mark, Mark::Body { .. })),
                settled: None,
                body_from: None,
                read: c.read,
                progress: None,
            };
            let mut head = match seen {
                Some(h) if h.mark == mark => Head {
                    settled: h.settled.or(Some(c.read)),
                    ..h
                },
                // The same body goes on: when it began stays.
                Some(h) if same_body(h.mark, mark) => Head {
                    body_from: h.body_from,
                    progress: h.progress,
                    ..fresh(c.read)
                },
                None if mark == Mark::First => Head {
                    settled: Some(0),
                    ..fresh(0)
                },
                _ => fresh(c.read),
            };
            // The same head read fast since the last look (a connection's
            // first head from its start).
            let head_like = matches!(mark, Mark::Head { .. } | Mark::First);
            let growing = match seen {
                Some(h) if h.mark == mark && head_like => c.read.saturating_sub(h.read) > fast,
                None => mark == Mark::First && c.read > GROWING,
                _ => false,
            };
            self.soon |= growing;
            head.read = c.read;
            let stretch = c.read.saturating_sub(head.from);
            let body = match activity {
                Activity::Busy { body, .. } => body,
                _ => None,
            };
            let head_done = match mark {
                Mark::Head { done } => Some(Some(done)),
                Mark::First => Some(None),
                Mark::Body { .. } => None,
            };
            if head_done.is_some() && stretch > 0 {
                head.began.get_or_insert(now);
            }
            head.body_from = body.map(|_| head.body_from.unwrap_or(c.read));
            // Only a head has a time it began (see `began`).
            let late_head = self
                .read_timeout
                .zip(head.began)
                .is_some_and(|(t, began)| now.duration_since(began) > arrival_deadline(t, stretch));
            // A body earns time by what was read of it.
            let came = body.map(|_| c.read.saturating_sub(head.body_from.unwrap_or(c.read)));
            let late_body = self
                .read_timeout
                .zip(body.zip(came))
                .is_some_and(|(t, (b, came))| {
                    b.took > arrival_deadline(t, if b.earns { came } else { 0 })
                });
            // Followed from the first look that sees the body holding the
            // turn (or a share): time it waited for it does not count.
            head.progress =
                body.zip(came)
                    .filter(|(b, _)| b.holds)
                    .map(|(_, came)| match head.progress {
                        Some((_, then)) if came >= then.saturating_add(ARRIVAL_RATE) => (now, came),
                        Some(p) => p,
                        None => (now, came),
                    });
            // Bytes of it waiting unread: the worker is behind, not the
            // client.
            let lapsed = body.is_some_and(|b| b.wanted)
                && c.unread < ARRIVAL_RATE
                && head
                    .progress
                    .is_some_and(|(then, _)| now.duration_since(then) > TURN_LAPSE);
            // A head after a body counts from where it surely began, as
            // the budget does (see `settled`): counted from `from`, the
            // end of a large body read during a look made an idle
            // keep-alive connection's next head "over 1 MiB" (a review).
            // Such a head is cut a look or two later; any other from
            // `from` (counting from `settled` everywhere left what came
            // between two looks uncounted: a review).
            let settled = head.settled.map_or(0, |from| c.read.saturating_sub(from));
            let size = if head.after_body { settled } else { stretch };
            let this = match (head_done, body) {
                (Some(done), _) if size > HEAD_LIMIT => Some(Over::Head { done }),
                (Some(done), _) if late_head => Some(Over::SlowHead { done }),
                (None, Some(b)) => late_body
                    .then_some(Over::SlowBody { seq: b.seq })
                    .or(lapsed.then_some(Over::TurnLapsed { seq: b.seq })),
                _ => None,
            };
            match (this, head_done) {
                (Some(o), _) => over.push((*c, o)),
                (None, Some(done)) if settled > 0 => under.push((settled, *c, done)),
                _ => {}
            }
            heads.insert(c.inode, head);
        }
        self.heads = heads;
        over.extend(over_budget(under));
        over
    }
}

/// The heads to cut when `heads` (each its length, its connection, and the
/// requests done before it) hold more than `HEADS_BUDGET` in all: every
/// one longer than `HEAD_FLOOR`. Not only the largest down to the budget:
/// tiny_http parses a head of tiny lines faster than the looks come, and
/// what is left would be past the budget again at the next look.
fn over_budget(heads: Vec<(u64, Counted, Option<u64>)>) -> Vec<Overs> {
    let all: u64 = heads.iter().map(|(len, ..)| len).sum();
    if all <= HEADS_BUDGET {
        return Vec::new();
    }
    heads
        .into_iter()
        .filter(|&(len, ..)| len > HEAD_FLOOR)
        .map(|(_, c, done)| (c, Over::Head { done }))
        .collect()
}

/// Both marks are of the same body being read.
fn same_body(a: Mark, b: Mark) -> bool {
    matches!(
        (a, b),
        (Mark::Body { seq: Some(x), .. }, Mark::Body { seq: Some(y), .. }) if x == y
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    fn at(inode: u64, read: u64) -> Counted {
        Counted {
            peer: SocketAddr::from(([10, 0, 0, 1], 4000 + inode as u16)),
            inode,
            read,
            unread: 0,
            silent: Duration::ZERO,
        }
    }

    /// A head counts from the connection's first byte, or from the end of
    /// its last request; bytes read while a request is in hand never count.
    #[test]
    fn only_bytes_read_outside_a_request_count_toward_a_head() {
        let quiet = |done: u64| {
            move |_: SocketAddr| Activity::Quiet {
                ago: Duration::from_millis(5),
                done,
            }
        };
        // Never made a request: everything read is head.
        let mut w = HeadWatch::default();
        let unseen = |_: SocketAddr| Activity::Unseen;
        assert!(w.look(&[at(1, 1000)], &unseen).is_empty());
        assert_eq!(
            w.look(&[at(1, HEAD_LIMIT + 1)], &unseen),
            vec![(at(1, HEAD_LIMIT + 1), Over::Head { done: None })]
        );

        // A 30 MiB upload read while in hand, then a small next head, then
        // an endless one after the same request.
        let mut w = HeadWatch::default();
        let busy = |_: SocketAddr| Activity::Busy {
            done: 0,
            body: None,
        };
        w.look(&[at(2, 500)], &busy);
        assert!(w.look(&[at(2, 30 << 20)], &busy).is_empty());
        assert!(w.look(&[at(2, (30 << 20) + 2000)], &quiet(1)).is_empty());
        // Counted from the look after the request was seen done (where
        // the head surely began: see `settled`).
        assert!(w.look(&[at(2, (30 << 20) + 3000)], &quiet(1)).is_empty());
        let over = w.look(&[at(2, (30 << 20) + HEAD_LIMIT + 3001)], &quiet(1));
        assert_eq!(over.len(), 1);

        // A whole request between two looks starts a new head, however
        // late the look that sees it (the reviewer's stale clock: the
        // count moves, whatever the times say).
        let mut w = HeadWatch::default();
        w.look(&[at(3, 0)], &quiet(1));
        assert!(w.look(&[at(3, 2 * HEAD_LIMIT)], &quiet(2)).is_empty());
        assert!(w.look(&[at(3, 2 * HEAD_LIMIT + 10)], &quiet(2)).is_empty());
        // Counted from the look that saw it (no body to end during a
        // look): cut at the first look past the cap.
        assert_eq!(w.look(&[at(3, 3 * HEAD_LIMIT + 1)], &quiet(2)).len(), 1);
        let mut w = HeadWatch::default();
        w.look(&[at(5, 0)], &quiet(1));
        assert!(w.look(&[at(5, 1000)], &quiet(2)).is_empty());
        assert_eq!(w.look(&[at(5, 1000 + (50 << 20))], &quiet(2)).len(), 1);

        // An upload that ends between two looks: what it read after the
        // first look is body, not head.
        let mut w = HeadWatch::default();
        w.look(&[at(4, 1000)], &busy);
        assert!(
            w.look(&[at(4, 1000 + 2 * HEAD_LIMIT)], &quiet(1))
                .is_empty()
        );
    }

    /// Heads under their own cap are cut together once they hold more
    /// than `HEADS_BUDGET` in all: every one over `HEAD_FLOOR`, the largest
    /// and the smallest alike; never one of `HEAD_FLOOR` or less (a
    /// device's head is a few hundred bytes), and bytes read while a
    /// request is in hand never count.
    #[test]
    fn heads_past_the_budget_for_all_are_cut_down_to_the_floor() {
        let unseen = |_: SocketAddr| Activity::Unseen;
        let each = HEAD_LIMIT / 2;
        let n = HEADS_BUDGET / each;
        let heads: Vec<Counted> = (1..=n).map(|i| at(i, each)).collect();
        // Exactly the budget, with an upload in hand under its own cap
        // beside it: nothing cut.
        let upload = at(100, each);
        let in_hand = move |peer: SocketAddr| {
            if peer == upload.peer {
                Activity::Busy {
                    done: 0,
                    body: None,
                }
            } else {
                Activity::Unseen
            }
        };
        let mut with_upload = heads.clone();
        with_upload.push(upload);
        assert!(HeadWatch::default().look(&with_upload, &in_hand).is_empty());
        // One byte more, from a head of exactly the floor: every head over
        // the floor is cut, and only those.
        let mut crowd = heads.clone();
        crowd.push(at(101, 300));
        crowd.push(at(102, HEAD_FLOOR));
        crowd.push(at(103, HEAD_FLOOR + 1));
        crowd[0].read -= 300 + HEAD_FLOOR + HEAD_FLOOR + 1;
        let mut w = HeadWatch::default();
        assert!(w.look(&crowd, &unseen).is_empty());
        crowd[0].read += 1;
        let mut cut: Vec<u64> = w
            .look(&crowd, &unseen)
            .into_iter()
            .map(|(c, over)| {
                assert_eq!(over, Over::Head { done: None });
                c.inode
            })
            .collect();
        cut.sort_unstable();
        let mut expected: Vec<u64> = (1..=n).collect();
        expected.push(103);
        assert_eq!(cut, expected);
    }

    /// The budget counts a head from the look after its request was seen
    /// done. A look counts first and asks what each connection is doing
    /// after: an upload that ended in between (the worker read the end of
    /// its body and answered) must not leave that end of its body counted
    /// as a head while the device waits idle on its keep-alive connection.
    #[test]
    fn the_budget_never_counts_the_end_of_a_body_read_during_a_look() {
        let each = HEAD_LIMIT / 2;
        let n = HEADS_BUDGET / each + 1;
        // Attack heads past the budget, all the time.
        let attack =
            |grown: u64| -> Vec<Counted> { (1..=n).map(|i| at(i, each + grown)).collect() };
        let device = |read: u64| at(100, read);
        let busy = Activity::Busy {
            done: 0,
            body: None,
        };
        let quiet = |done: u64| Activity::Quiet {
            ago: Duration::from_millis(5),
            done,
        };
        let ask = |device_now: Activity| {
            move |peer: SocketAddr| {
                if peer == device(0).peer {
                    device_now
                } else {
                    Activity::Unseen
                }
            }
        };
        let cut_device = |overs: Vec<Overs>| overs.iter().any(|(c, _)| c.inode == 100);
        let mut w = HeadWatch::default();
        // The upload is read: 1 000 bytes of it at the first look.
        assert!(!cut_device(
            w.look(&[attack(0), vec![device(1000)]].concat(), &ask(busy))
        ));
        // Counted with 1 000 read; by the time it is asked, the worker has
        // read the last 20 000 bytes and answered.
        assert!(!cut_device(w.look(
            &[attack(1), vec![device(1000)]].concat(),
            &ask(quiet(1))
        )));
        // Then idle: those 20 000 bytes were body, not head.
        for grown in 2..5 {
            let overs = w.look(
                &[attack(grown), vec![device(21_000)]].concat(),
                &ask(quiet(1)),
            );
            assert!(!overs.is_empty(), "the attack is cut");
            assert!(!cut_device(overs), "the device's idle connection was cut");
        }
        // A head that does come after the request counts from the look
        // after it was seen done: past the floor, it is cut with the rest.
        let overs = w.look(
            &[attack(5), vec![device(21_000 + HEAD_FLOOR + 1)]].concat(),
            &ask(quiet(1)),
        );
        assert!(overs.contains(&(
            device(21_000 + HEAD_FLOOR + 1),
            Over::Head { done: Some(1) }
        )));
    }

    /// The end of a large body read during a look (counted before it,
    /// the request seen answered after) is no head: the idle keep-alive
    /// connection after it is not cut as over `HEAD_LIMIT`. A head over it
    /// after the request is cut from the look after.
    #[test]
    fn the_end_of_a_large_body_read_during_a_look_is_no_head_over_the_limit() {
        let busy = |_: SocketAddr| Activity::Busy {
            done: 0,
            body: None,
        };
        let quiet = |_: SocketAddr| Activity::Quiet {
            ago: Duration::from_millis(5),
            done: 1,
        };
        let mut w = HeadWatch::default();
        assert!(w.look(&[at(1, 1000)], &busy).is_empty());
        // Counted at 1 000; asked once the worker read the last 2 MiB of
        // the body and answered.
        assert!(w.look(&[at(1, 1000)], &quiet).is_empty());
        let end = 1000 + 2 * HEAD_LIMIT;
        for _ in 0..3 {
            let overs = w.look(&[at(1, end)], &quiet);
            assert!(overs.is_empty(), "the idle connection was cut: {overs:?}");
        }
        // A head of over `HEAD_LIMIT` after it is cut.
        let overs = w.look(&[at(1, end + HEAD_LIMIT + 1)], &quiet);
        assert_eq!(
            overs,
            [(at(1, end + HEAD_LIMIT + 1), Over::Head { done: Some(1) })]
        );
    }

    /// A body holding the turn for large bodies lapses once it stops
    /// coming on while another waits for the turn: less than
    /// `ARRIVAL_RATE` in `TURN_LAPSE`. Not while nothing waits, nor while
    /// it comes on, however long it takes (its deadline is another rule).
    #[test]
    fn a_body_holding_the_turn_lapses_when_it_stops_coming_while_another_waits() {
        let t0 = Instant::now();
        let body = |holds: bool, wanted: bool| {
            move |_: SocketAddr| Activity::Busy {
                done: 1,
                body: Some(crate::receiver::activity::Body {
                    earns: true,
                    seq: 2,
                    took: Duration::ZERO,
                    holds,
                    wanted: holds && wanted,
                }),
            }
        };
        let holding = |wanted: bool| body(true, wanted);
        let lapse = TURN_LAPSE + Duration::from_millis(1);
        // A trickle (a byte a look), another waiting: cut past the lapse.
        let mut w = HeadWatch::default();
        w.look_at(t0, &[at(1, 1 << 20)], &holding(true));
        assert!(
            w.look_at(t0 + TURN_LAPSE, &[at(1, (1 << 20) + 1)], &holding(true))
                .is_empty()
        );
        assert_eq!(
            w.look_at(t0 + lapse, &[at(1, (1 << 20) + 2)], &holding(true)),
            vec![(at(1, (1 << 20) + 2), Over::TurnLapsed { seq: 2 })]
        );
        // The same trickle with nothing waiting: kept.
        let mut w = HeadWatch::default();
        w.look_at(t0, &[at(2, 1 << 20)], &holding(false));
        assert!(
            w.look_at(t0 + 10 * lapse, &[at(2, (1 << 20) + 2)], &holding(false))
                .is_empty()
        );
        // Coming on by `ARRIVAL_RATE` at each look, another waiting: kept
        // however long it takes.
        let mut w = HeadWatch::default();
        for i in 0..10u64 {
            let read = (1 << 20) + i * ARRIVAL_RATE;
            let now = t0 + TURN_LAPSE * u32::try_from(i).unwrap();
            assert!(
                w.look_at(now, &[at(3, read)], &holding(true)).is_empty(),
                "look {i}"
            );
        }
        // Time waiting for the turn does not count: a body seen still
        // without it, then holding it with another waiting, starts its
        // clock when first seen holding it.
        let mut w = HeadWatch::default();
        w.look_at(t0, &[at(6, 1 << 20)], &body(false, false));
        assert!(
            w.look_at(t0 + 2 * lapse, &[at(6, 1 << 20)], &holding(true))
                .is_empty()
        );
        assert_eq!(
            w.look_at(t0 + 3 * lapse, &[at(6, 1 << 20)], &holding(true))
                .len(),
            1
        );
        // Its bytes waiting unread (the worker behind): not the client's doing.
        let mut w = HeadWatch::default();
        let unread = |read| Counted {
            unread: ARRIVAL_RATE,
            ..at(7, read)
        };
        w.look_at(t0, &[unread(1 << 20)], &holding(true));
        assert!(
            w.look_at(t0 + lapse, &[unread(1 << 20)], &holding(true))
                .is_empty()
        );
        // Asked again before the cut: still holding the turn, still wanted.
        let over = Over::TurnLapsed { seq: 2 };
        assert!(over.still(holding(true)(at(1, 0).peer)));
        assert!(!over.still(holding(false)(at(1, 0).peer)));
    }

    /// A body being read, as the books would give it.
    fn reading(done: u64, seq: u64, took: Duration) -> Activity {
        Activity::Busy {
            done,
            body: Some(crate::receiver::activity::Body {
                seq,
                took,
                holds: false,
                wanted: false,
                earns: true,
            }),
        }
    }

    /// The next look comes soon after one that found a head read fast (by
    /// the time since the last look: a look that comes early sees less);
    /// never for a body, a head that only trickles, or requests that
    /// follow one another, however fast.
    #[test]
    fn a_look_comes_soon_only_after_a_head_read_fast() {
        let body = |done: u64, seq: u64| move |_: SocketAddr| reading(done, seq, Duration::ZERO);
        let quiet = |done: u64| {
            move |_: SocketAddr| Activity::Quiet {
                ago: Duration::ZERO,
                done,
            }
        };
        let unseen = |_: SocketAddr| Activity::Unseen;
        let t0 = Instant::now();
        let at_ms = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = HeadWatch::default();
        // A connection first seen with a large head, then one growing.
        w.look_at(at_ms(0), &[at(1, GROWING + 1)], &unseen);
        assert!(w.soon);
        w.look_at(at_ms(100), &[at(1, GROWING + 1)], &unseen);
        assert!(!w.soon, "a head that stopped");
        w.look_at(at_ms(200), &[at(1, 2 * GROWING + 2)], &unseen);
        assert!(w.soon);
        // A look 20 ms later: a fifth of that is fast; 1 ms later, under
        // `GROWING_FLOOR` is not.
        w.look_at(
            at_ms(220),
            &[at(1, 2 * GROWING + 2 + GROWING / 5 + 1)],
            &unseen,
        );
        assert!(w.soon, "an early look at the same rate");
        w.look_at(
            at_ms(221),
            &[at(1, 2 * GROWING + 2 + GROWING / 5 + 4000)],
            &unseen,
        );
        assert!(!w.soon, "under the floor");
        // A trickling head after a request.
        let mut w = HeadWatch::default();
        w.look_at(at_ms(0), &[at(2, 500)], &quiet(1));
        w.look_at(at_ms(100), &[at(2, 500 + GROWING)], &quiet(1));
        assert!(!w.soon, "a head that grew by no more than GROWING");
        // Requests that follow one another: the mark changes each time.
        w.look_at(at_ms(200), &[at(2, 10 * GROWING)], &quiet(5));
        assert!(!w.soon, "requests done in between");
        // A body read fast.
        w.look_at(at_ms(300), &[at(2, 20 * GROWING)], &body(5, 6));
        w.look_at(at_ms(400), &[at(2, 40 * GROWING)], &body(5, 6));
        assert!(!w.soon, "a body");
    }

    /// A head must come whole within its deadline from the first look that
    /// saw its bytes; an idle connection has no head to time. A body must
    /// come within its deadline from when it began to be read; a request
    /// in hand whose body is not being read is never timed. Deadlines
    /// grow with what came.
    #[test]
    fn slow_heads_and_slow_bodies_are_past_their_deadlines() {
        let t = Duration::from_secs(2);
        let t0 = Instant::now();
        let quiet = |_: SocketAddr| Activity::Quiet {
            ago: Duration::from_secs(1),
            done: 1,
        };
        // Idle: no bytes, never late.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(1, 500)], &quiet);
        assert!(w.look_at(t0 + 60 * t, &[at(1, 500)], &quiet).is_empty());
        let deadline = t * ARRIVAL_TIMEOUTS;
        let late = deadline + Duration::from_millis(1);
        // A head trickling in: late past its deadline from its first byte.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(2, 500)], &quiet);
        w.look_at(t0 + t / 2, &[at(2, 501)], &quiet);
        assert!(
            w.look_at(t0 + t / 2 + deadline, &[at(2, 510)], &quiet)
                .is_empty()
        );
        assert_eq!(
            w.look_at(t0 + t / 2 + late, &[at(2, 520)], &quiet),
            vec![(at(2, 520), Over::SlowHead { done: Some(1) })]
        );
        // The same without deadlines: never.
        let mut w = HeadWatch::default();
        w.look_at(t0, &[at(3, 500)], &quiet);
        w.look_at(t0 + t / 2, &[at(3, 501)], &quiet);
        assert!(w.look_at(t0 + 10 * t, &[at(3, 520)], &quiet).is_empty());

        let body = |took: Option<Duration>| {
            move |_: SocketAddr| match took {
                Some(took) => reading(1, 2, took),
                None => Activity::Busy {
                    done: 1,
                    body: None,
                },
            }
        };
        // A body trickling: late past its deadline.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(4, 500)], &body(Some(Duration::ZERO)));
        assert!(
            w.look_at(t0 + deadline, &[at(4, 530)], &body(Some(deadline)))
                .is_empty()
        );
        assert_eq!(
            w.look_at(t0 + late, &[at(4, 531)], &body(Some(late))),
            vec![(at(4, 531), Over::SlowBody { seq: 2 })]
        );
        // One that came at `ARRIVAL_RATE` a second is not.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(5, 500)], &body(Some(Duration::ZERO)));
        let came = 500 + ARRIVAL_RATE * (late.as_secs() + 1);
        assert!(
            w.look_at(t0 + late, &[at(5, came)], &body(Some(late)))
                .is_empty()
        );
        // The same drained after a refusal without the token earns
        // nothing by it: late at its deadline however fast it comes.
        let refused = |took| {
            move |_: SocketAddr| match reading(1, 2, took) {
                Activity::Busy { done, body } => Activity::Busy {
                    done,
                    body: body.map(|b| crate::receiver::activity::Body { earns: false, ..b }),
                },
                other => other,
            }
        };
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(9, 500)], &refused(Duration::ZERO));
        assert_eq!(
            w.look_at(t0 + late, &[at(9, came)], &refused(late)),
            vec![(at(9, came), Over::SlowBody { seq: 2 })]
        );
        // In hand but no longer being read (answered late, say): never, however
        // long ago its body began.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(7, 500)], &body(Some(Duration::ZERO)));
        assert!(
            w.look_at(t0 + 10 * deadline, &[at(7, 600)], &body(None))
                .is_empty()
        );
        // In hand and never read: never.
        let mut w = HeadWatch::with_deadlines(t);
        w.look_at(t0, &[at(6, 500)], &body(None));
        assert!(
            w.look_at(t0 + 10 * deadline, &[at(6, 500)], &body(None))
                .is_empty()
        );
    }

    /// A count that cannot be made (no diagnostics socket: out of
    /// descriptors, say) is still due only `LOOK_EVERY` later, so the
    /// closing thread, which waits until `next`, never spins.
    #[test]
    fn a_count_that_cannot_be_made_is_not_due_again_at_once() {
        let now = Instant::now();
        let mut cap = HeadCap {
            diag: None,
            available: false,
            watch: HeadWatch::default(),
            next: now,
        };
        assert!(
            cap.count(now, Which::These(&[]), &|_| Activity::Unseen)
                .is_none()
        );
        assert_eq!(cap.next, now + LOOK_EVERY);
        // Nor does a cap without diagnostics give the thread a time to
        // wake for.
        assert_eq!(cap.next(), None);
    }

    /// Link-local IPv6 peers in a dump carry their interface, as tiny_http
    /// sees them; other peers none.
    #[test]
    fn a_link_local_peer_keeps_its_interface() {
        let mut id = SocketId::new_v6();
        id.destination_port = 4000;
        id.interface_id = 3;
        id.destination_address = "fe80::1".parse().unwrap();
        assert_eq!(
            peer_of(&id),
            "[fe80::1%3]:4000".parse::<SocketAddr>().unwrap()
        );
        id.destination_address = "2001:db8::1".parse().unwrap();
        assert_eq!(
            peer_of(&id),
            "[2001:db8::1]:4000".parse::<SocketAddr>().unwrap()
        );
    }

    /// A lookup names the connection by both its ends, in the local end's
    /// family; a link-local IPv6 peer gives its interface.
    #[test]
    fn a_lookup_names_both_ends_and_the_interface() {
        let ours = |local: &str, peer: &str| Ours {
            inode: 1,
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
        };
        let id = |m: SockDiagMessage| match m {
            SockDiagMessage::InetRequest(r) => (r.family, r.socket_id),
            _ => unreachable!("a lookup is a request"),
        };
        let (family, v4) = id(lookup(&ours("127.0.0.1:8080", "127.0.0.2:4000")));
        assert_eq!(family, AF_INET);
        assert_eq!((v4.source_port, v4.destination_port), (8080, 4000));
        assert_eq!(
            v4.destination_address,
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!((v4.interface_id, v4.cookie), (0, [0xff; 8]));
        let (family, v6) = id(lookup(&ours("[fe80::2%3]:8080", "[fe80::1%3]:4000")));
        assert_eq!(family, AF_INET6);
        assert_eq!(v6.interface_id, 3);
        assert_eq!(v6.source_address, "fe80::2".parse::<IpAddr>().unwrap());
    }

    /// The kernel's counts: what our side read of each connection asked
    /// for (and what waits unread); one that closed is left out, and so is
    /// one whose addresses name another socket now.
    #[test]
    fn the_kernel_counts_what_we_read() {
        let Ok(mut diag) = Diag::open() else {
            crate::say!("no sock_diag here: skipped");
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(local).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        let inode_of = |s: &TcpStream| {
            std::fs::File::from(std::os::fd::OwnedFd::from(s.try_clone().unwrap()))
                .metadata()
                .unwrap()
                .ino()
        };
        let inode = inode_of(&server);
        client.write_all(&[b'a'; 5000]).unwrap();
        let mut buf = [0u8; 3000];
        server.read_exact(&mut buf).unwrap();
        let gone = TcpStream::connect(local).unwrap();
        let (gone_server, gone_peer) = listener.accept().unwrap();
        let gone_inode = inode_of(&gone_server);
        drop((gone, gone_server));
        let asked = [
            Ours { inode, local, peer },
            Ours {
                inode: inode + 1_000_000,
                local,
                peer,
            },
            Ours {
                inode: gone_inode,
                local,
                peer: gone_peer,
            },
        ];
        let counted = diag.looked_up(&asked).expect("the kernel answers");
        let silent = counted.first().map(|c| c.silent).unwrap_or_default();
        assert!(
            silent < Duration::from_secs(5),
            "its bytes just came: {silent:?}"
        );
        assert_eq!(
            counted,
            vec![Counted {
                peer,
                inode,
                read: 3000,
                unread: 2000,
                silent,
            }]
        );
        // Many at once: answered in several rounds.
        let many = vec![asked[0]; 3 * LOOKUPS_AT_ONCE + 1];
        assert_eq!(diag.looked_up(&many).unwrap().len(), many.len());
        // A dump finds the same, and only connections on our port as their
        // local end (not the client's ends).
        let dumped = diag.dumped(local).expect("the kernel answers");
        // (How long nothing came moves between the two answers.)
        let ours: Vec<Counted> = dumped
            .iter()
            .filter(|c| c.peer == peer)
            .map(|c| Counted { silent, ..*c })
            .collect();
        assert_eq!(ours, [counted[0]], "{dumped:?}");
        assert!(
            dumped.iter().all(|c| c.peer.port() != local.port()),
            "{dumped:?}"
        );
    }
}

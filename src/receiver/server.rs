//! The receiver's workers. Requests come from the supervised accept side
//! (`accept`); each is checked for framing, read (capped), decided by
//! `ingest`, saved by the capture writer when accepted, answered, and
//! reported as an event that never waits on its consumer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, unbounded};
use jiff::Timestamp;
use tiny_http::{Header, Method, Request, Response};

use crate::batch::Batch;
use crate::capture::{Capture, CaptureHandle, Entry};
use crate::event::{NO_ANSWER, RequestEvent, Stats};
use crate::receiver::accept::{self, Acceptors, Handout, Notice, Work};
use crate::receiver::activity::{Activity, Body, Cut};
use crate::receiver::closer::{self, Closer};
use crate::receiver::drain::{self, Answered, Drains, Finish};
use crate::receiver::heads;
use crate::receiver::ingest::{self, Config, Rejection};
use crate::receiver::listener;
use crate::receiver::respond::{self, Answer, Mode};
use crate::receiver::spawner::Spawner;
use crate::receiver::turns::{
    self, Budget, DECODE_BUDGET, Share, TURN_WAIT, Turn, Turns, WIRE_BUDGET, WIRE_FREE,
};
use crate::time::format_received;

/// Seconds the device is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 5;
/// How much of a refused body an event keeps for inspection.
const REFUSED_BODY_KEPT: usize = 64 * 1024;
/// Header bytes (names and values) an event keeps; the rest is counted.
pub const EVENT_HEADER_BYTES: usize = 4096;
/// Longest header value an event keeps whole.
const EVENT_HEADER_VALUE: usize = 512;
/// Header bytes looked through for what a request's event shows: searching
/// a value for a token spelt otherwise (decoded, in base64) costs tens of
/// nanoseconds a byte, and a head can hold a megabyte before the token is
/// checked.
const EVENT_HEADER_EXAMINED: usize = 64 << 10;
/// Longest request path an event keeps.
const EVENT_PATH: usize = 1024;
/// Requests a connection may have waiting for their answers (pipelined)
/// before it is ignored: a device sends one at a time.
pub const PIPELINE_LIMIT: usize = 8;
/// An idle worker beyond the initial ones ends after this long.
const WORKER_IDLE: Duration = Duration::from_secs(5);
/// Stack of a worker: decoding and validation need little, and thousands
/// of stalled uploads each hold one.
const WORKER_STACK: usize = 512 * 1024;
/// Bodies tiny_http 0.12 reads whole before handing a request over.
const READ_AHEAD_BY_TINY_HTTP: usize = 1024;

/// Drains of unread bodies that may wait for their body at once; past
/// them, a request answered with its body unread has its connection
/// closed after the answer (the drain then ends at once).
pub const DRAINS_AT_MOST: usize = 256;
/// Default for `--read-timeout`: a device's own timeout is 10 to 60 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `--max-connections`. Each open connection costs tiny_http a
/// thread: about 14 KiB of stack and 6 KiB of buffers while it waits, and
/// 4 KiB more of stack once the thread first allocates (at the
/// connection's end at the latest), so 4 096 of them hold about 80 MiB. A
/// burst holds more for a moment, since a thread whose connection was shed
/// waits 5 s in its pool for another: 10 000 idle connections made in 3 to
/// 4.5 s peaked at 135–194 MiB with this cap, 201–205 MiB without.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4096;
/// The fewest `--max-connections` allows.
pub const MIN_MAX_CONNECTIONS: u64 = 8;

/// Settings of a running receiver.
pub struct Settings {
    pub listen: String,
    pub ingest: Config,
    /// Workers started at once; more are added while all are busy, up to
    /// what the descriptor limit allows.
    pub workers: usize,
    /// Whether events carry the batch text (the screen shows it; the
    /// headless printer does not need it).
    pub event_bodies: bool,
    /// Idle or stalled connections are dropped after this long.
    pub read_timeout: Duration,
    /// Past this many open connections, idle ones are closed.
    pub max_connections: u64,
}

/// A running receiver; `shutdown` stops it cleanly.
pub struct Running {
    ctx: Arc<Ctx>,
    acceptors: Acceptors,
    capture: Capture,
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    /// What the operator should know while it runs (accepting failed or
    /// recovered, the capture file replaced), one line each.
    pub notices: Receiver<String>,
}

struct Ctx {
    config: Config,
    capture: CaptureHandle,
    capture_path: String,
    /// What became of the capture file, for the status page.
    durable: crate::capture::Durable,
    events: Sender<RequestEvent>,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    next_id: AtomicU64,
    started: Instant,
    event_bodies: bool,
    /// What the events queued for the consumer carry (`QUEUED_BODIES`).
    queued: Mutex<Queued>,
    work: Receiver<Work>,
    /// Requests taken by a worker whose answer is not yet being written.
    unanswered: AtomicUsize,
    /// Workers serving a request now, and alive.
    busy: AtomicUsize,
    alive: AtomicUsize,
    /// Requests handed to the workers and not yet done with (taken or
    /// still queued): what the workers must cover.
    handed: AtomicUsize,
    min_workers: usize,
    max_workers: usize,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Starts workers when the pumps find them short (not on a pump).
    spawner: Spawner,
    connections: Connections,
    /// Shuts connections tiny_http would keep open.
    closer: Closer,
    read_timeout: Duration,
    /// `--max-connections`, for the status page.
    max_connections: u64,
    /// Requests with a large unread body, let go of safely.
    drains: Arc<Drains>,
    /// How valid batches are answered (set by `--respond` and the
    /// dashboard).
    respond: Arc<respond::Control>,
    /// The tokens accepted now (`config.auth` is only the first set):
    /// SIGHUP replaces them.
    auth: std::sync::RwLock<ingest::Auth>,
    /// Large bodies are decoded one at a time.
    turns: Arc<Turns>,
    /// The bytes smaller bodies hold while they are decoded.
    budget: Arc<Budget>,
    /// The bytes bodies hold past their first `WIRE_FREE` while read.
    wire: Arc<Budget>,
}

/// Binds, starts the accept side and the workers, and returns at once;
/// every valid batch is answered 200 once saved.
pub fn start(
    settings: Settings,
    capture: Capture,
    events: Sender<RequestEvent>,
) -> io::Result<Running> {
    start_with(settings, capture, events, Arc::default())
}

/// As `start`, with valid batches answered as `respond` says.
pub fn start_with(
    settings: Settings,
    capture: Capture,
    events: Sender<RequestEvent>,
    respond: Arc<respond::Control>,
) -> io::Result<Running> {
    let listener = listener::bind(&settings.listen, settings.read_timeout).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", settings.listen),
        )
    })?;
    start_on(listener, settings, capture, events, respond)
}

/// As `start_with`, on a listening socket made with `listener::bind`
/// (`settings.listen` is not bound again: a restart in place keeps its
/// socket, see `listener::inherit`).
pub fn start_on(
    listener: std::net::TcpListener,
    settings: Settings,
    capture: Capture,
    events: Sender<RequestEvent>,
    respond: Arc<respond::Control>,
) -> io::Result<Running> {
    let stats = Arc::new(Stats::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let (work_tx, work) = unbounded();
    let (notice_tx, notice_rx) = bounded(64);
    let min_workers = settings.workers.max(1);
    let (close_tx, close_rx) = unbounded();
    let closer = Closer::new(close_tx);
    let (spawner, spawning) = Spawner::new();
    // Fewer would shed devices' keep-alive connections between uploads on
    // any bench.
    let max_connections = settings.max_connections.max(MIN_MAX_CONNECTIONS);
    let ctx = Arc::new(Ctx {
        config: settings.ingest.clone(),
        capture: capture.handle(),
        capture_path: crate::text::path(&capture.path()).to_string(),
        durable: capture.durable(),
        events,
        stats: stats.clone(),
        stopping: stopping.clone(),
        next_id: AtomicU64::new(0),
        started: Instant::now(),
        event_bodies: settings.event_bodies,
        queued: Mutex::default(),
        work,
        unanswered: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        alive: AtomicUsize::new(0),
        handed: AtomicUsize::new(0),
        min_workers,
        max_workers: max_workers().max(min_workers),
        workers: Mutex::new(Vec::new()),
        spawner,
        connections: Connections::forgetting_after(settings.read_timeout),
        closer: closer.clone(),
        read_timeout: settings.read_timeout,
        max_connections,
        drains: Arc::default(),
        respond,
        auth: std::sync::RwLock::new(settings.ingest.auth.clone()),
        turns: Arc::new(Turns::new(TURN_WAIT)),
        budget: Arc::new(Budget::new(
            DECODE_BUDGET,
            TURN_WAIT,
            "uploads being decoded".into(),
        )),
        wire: Arc::new(Budget::new(
            WIRE_BUDGET,
            TURN_WAIT,
            format!(
                "bodies being read past their first {} KiB",
                WIRE_FREE / 1024
            ),
        )),
    });
    for _ in 0..min_workers {
        add_worker(&ctx)?;
    }
    spawning.run(Arc::downgrade(&ctx), add_workers)?;
    // Before the first connection is accepted: the closing thread's
    // descriptors (see `closer::Kit`).
    let kit = closer::Kit::take(settings.read_timeout);
    let (accept_notices, notices) = bounded(64);
    let grow: Weak<Ctx> = Arc::downgrade(&ctx);
    let acceptors = Acceptors::start(
        listener,
        settings.read_timeout,
        work_tx,
        stopping,
        accept_notices,
        Box::new(move |request: &Request| {
            let Some(ctx) = grow.upgrade() else {
                return Handout::Serve(0);
            };
            // Only whether it passes is used here.
            let framing = framing(request, |_| String::new());
            let peer = request.remote_addr().copied();
            let (admit, close) = ctx.connections.admit(peer, framing.is_ok());
            if close {
                // It broke the framing or pipelined past the limit: its
                // reading side is shut now, so tiny_http stops parsing
                // what it sends; an answer due still goes out.
                ctx.closer.close(peer);
            }
            if admit == Admit::Ignore
                && request
                    .body_length()
                    .is_none_or(|n| n <= READ_AHEAD_BY_TINY_HTTP)
                && !held_back(request)
            {
                // Nothing of it left to read (a request with
                // Transfer-Encoding, refused unread, is closed with its
                // connection): let go of at once, no worker woken or added
                // for it.
                ctx.connections.finish(peer, 0, false);
                return Handout::LetGo;
            }
            grow_workers(&ctx);
            if admit == Admit::Serve {
                Handout::Serve(ctx.connections.number(peer))
            } else {
                Handout::Ignore
            }
        }),
    )?;
    let quiet: Weak<Ctx> = Arc::downgrade(&ctx);
    let watch = closer::Watch {
        listening: acceptors.addr,
        read_timeout: settings.read_timeout,
        nudges: acceptors.servers().max(1),
        max_connections,
    };
    let stop = ctx.stopping.clone();
    let closer_notices = notice_tx.clone();
    std::thread::Builder::new()
        .name("closer".into())
        .spawn(move || {
            accept::step_ahead();
            closer::run(
                watch,
                kit,
                close_rx,
                closer.tally,
                stop,
                &Books(quiet),
                |note| {
                    let _ = closer_notices.send(note);
                },
            );
        })?;
    // The capture writer's notices go out as they are.
    let capture_notices = capture.notices.clone();
    let relay = notice_tx.clone();
    std::thread::Builder::new()
        .name("capture-notices".into())
        .spawn(move || {
            for line in capture_notices {
                if relay.send(line).is_err() {
                    return;
                }
            }
        })?;
    // Accept-side notices become lines for the operator.
    std::thread::Builder::new()
        .name("accept-notices".into())
        .spawn(move || {
            // Once per bout, not once per try: while descriptors are short,
            // every server that starts fails again at once. The bout is
            // over after `QUIET` without a failure.
            const QUIET: Duration = Duration::from_secs(5);
            let mut failing_since: Option<Instant> = None;
            loop {
                match notices.recv_timeout(Duration::from_secs(1)) {
                    Ok(Notice::AcceptFailed(why)) => {
                        if failing_since.is_none() {
                            let line = format!(
                                "accepting connections failed: {}; new connections wait until it recovers",
                                with_descriptor_hint(&why)
                            );
                            if notice_tx.send(line).is_err() {
                                return;
                            }
                        }
                        failing_since = Some(Instant::now());
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if failing_since.is_some_and(|t| t.elapsed() > QUIET) {
                            failing_since = None;
                            let line = "accepting connections again".to_string();
                            if notice_tx.send(line).is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    let addr = acceptors.addr;
    Ok(Running {
        ctx,
        acceptors,
        capture,
        addr,
        stats,
        notices: notice_rx,
    })
}

/// Workers the descriptor limit can keep busy: each stalled upload holds
/// one worker and two descriptors.
fn max_workers() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 65_536)
}

/// `why` with advice when descriptors ran out.
fn with_descriptor_hint(why: &str) -> String {
    let emfile = io::Error::from_raw_os_error(24).to_string();
    if !why.contains(&emfile) {
        return why.to_string();
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => {
            format!(
                "{why} (out of file descriptors: the limit is {soft}; raise it with `ulimit -n`)"
            )
        }
        Err(_) => format!("{why} (out of file descriptors; raise the limit with `ulimit -n`)"),
    }
}

/// Starts one more worker thread, unless the receiver is stopping (checked
/// under the lock `shutdown` takes the workers with, so none is missed).
fn add_worker(ctx: &Arc<Ctx>) -> io::Result<()> {
    let mut workers = ctx.workers.lock().unwrap_or_else(|p| p.into_inner());
    if ctx.stopping.load(Ordering::SeqCst) {
        return Err(io::Error::other("the receiver is stopping"));
    }
    workers.retain(|w| !w.is_finished());
    let worker_ctx = ctx.clone();
    ctx.alive.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("http-worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            accept::keep_pace();
            worker(&worker_ctx)
        });
    match spawned {
        Ok(handle) => {
            workers.push(handle);
            Ok(())
        }
        Err(e) => {
            ctx.alive.fetch_sub(1, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// Counts the request about to be handed out, and has workers added when
/// those alive would not cover every request handed out. Counted here and
/// done with by the worker after it served it, not by the workers' own
/// busy count: a worker between taking a request and counting itself busy
/// passed for idle, so in a burst of uploads whose bodies stall the
/// request behind them found every worker held by one and waited for a
/// read timeout (a hostile-client probe, December 3). Called on a pump,
/// which only wakes the spawning thread (see `spawner`).
fn grow_workers(ctx: &Arc<Ctx>) {
    let handed = ctx.handed.fetch_add(1, Ordering::SeqCst) + 1;
    if short_of_workers(ctx, handed) {
        ctx.spawner.wake();
    }
}

fn short_of_workers(ctx: &Ctx, handed: usize) -> bool {
    let alive = ctx.alive.load(Ordering::SeqCst);
    handed > alive && alive < ctx.max_workers && !ctx.stopping.load(Ordering::SeqCst)
}

/// On the spawning thread: adds workers until they cover what is handed
/// out (or none can be started now; the next request wakes it again).
fn add_workers(ctx: &Arc<Ctx>) {
    while short_of_workers(ctx, ctx.handed.load(Ordering::SeqCst)) {
        if add_worker(ctx).is_err() {
            break;
        }
    }
}

impl Running {
    /// Stops taking requests, finishes those already received, flushes the
    /// capture and returns once everything is on disk.
    pub fn shutdown(self) {
        self.shutdown_and(Acceptors::stop);
    }

    /// As `shutdown`, but the listening socket keeps listening (and
    /// queueing connections) for the program a restart in place executes.
    pub fn shutdown_keeping_listener(self) {
        self.shutdown_and(Acceptors::stop_keeping_listener);
    }

    fn shutdown_and(self, stop: fn(Acceptors)) {
        let ctx = self.ctx;
        ctx.stopping.store(true, Ordering::SeqCst);
        // The pumps hand out what their servers hold, then drop their
        // senders: the workers end once the channel is empty.
        stop(self.acceptors);
        loop {
            let workers =
                std::mem::take(&mut *ctx.workers.lock().unwrap_or_else(|p| p.into_inner()));
            if workers.is_empty() {
                break;
            }
            for w in workers {
                let _ = w.join();
            }
        }
        drop(ctx);
        self.capture.close();
    }

    /// What replaces the accepted tokens while it runs (SIGHUP).
    pub fn auth_switch(&self) -> AuthSwitch {
        AuthSwitch(Arc::downgrade(&self.ctx))
    }

    /// Reads, from any thread, what tiny_http 0.12 keeps until exit, each
    /// with a thread: connections the closer shut that are still held
    /// (`closer::Tally::held`, the `HTTP/2.0` deadlock, with two
    /// descriptors each) and requests parked for a body beyond the address
    /// space (whose connections are closed: not counted twice); and when
    /// the first held connection was shut; and whether descriptors run
    /// short.
    pub fn held_gauge(&self) -> impl Fn() -> (u64, Option<Instant>, bool) + Send + 'static {
        let tally = self.ctx.closer.tally.clone();
        let stats = self.stats.clone();
        move || {
            (
                tally.held.load(Ordering::Relaxed) + Stats::get(&stats.parked),
                *crate::panic::lock(&tally.held_since),
                tally.short.load(Ordering::Relaxed),
            )
        }
    }

    /// A descriptor for the listening socket that a program this process
    /// executes inherits (the process keeps it open, unowned, for the
    /// rest of its life).
    pub fn inheritable_listener(&self) -> io::Result<std::os::fd::RawFd> {
        use std::os::fd::IntoRawFd;
        Ok(rustix::io::dup(self.acceptors.listener())?.into_raw_fd())
    }

    /// Whether a restart in place could take the listening socket over
    /// (`listener::inherit` works here: `pidfd_getfd`, which kernels
    /// before 5.6 or a seccomp filter refuse) and execute this program
    /// (`/proc/self/exe`).
    pub fn can_hand_on_listener(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        std::fs::metadata("/proc/self/exe")?;
        listener::inherit(self.acceptors.listener().as_raw_fd(), self.ctx.read_timeout).map(drop)
    }

    /// Requests being handled whose answer is not yet being written, and
    /// requests waiting their turn behind one of them.
    pub fn in_flight(&self) -> usize {
        self.ctx.unanswered.load(Ordering::SeqCst)
            + self.ctx.connections.parked.load(Ordering::SeqCst)
    }

    pub fn capture_path(&self) -> &std::path::Path {
        self.capture.path()
    }

    /// tiny_http servers running (accepting or being drained).
    pub fn servers(&self) -> usize {
        self.acceptors.servers()
    }
}

/// Replaces the tokens a running receiver accepts.
pub struct AuthSwitch(Weak<Ctx>);

impl AuthSwitch {
    /// The tokens accepted from the next request on; false once the
    /// receiver is gone.
    pub fn set(&self, auth: ingest::Auth) -> bool {
        let Some(ctx) = self.0.upgrade() else {
            return false;
        };
        *ctx.auth.write().unwrap_or_else(|p| p.into_inner()) = auth;
        true
    }

    /// Tokens accepted now (0 for `--no-auth`); None once the receiver
    /// is gone.
    pub fn token_count(&self) -> Option<usize> {
        Some(self.0.upgrade()?.auth().token_count())
    }

    /// Of them, those shorter than `ingest::SHORT_TOKEN`.
    pub fn short_token_count(&self) -> Option<usize> {
        Some(self.0.upgrade()?.auth().short_count())
    }
}

impl Ctx {
    fn auth(&self) -> std::sync::RwLockReadGuard<'_, ingest::Auth> {
        self.auth.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn worker(ctx: &Arc<Ctx>) {
    loop {
        match ctx.work.recv_timeout(WORKER_IDLE) {
            Ok(work) => serve(ctx, work),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                // Beyond the initial workers, an idle one ends, unless a
                // request handed out meanwhile counts on it.
                let ended = ctx
                    .alive
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n > ctx.min_workers && ctx.handed.load(Ordering::SeqCst) < n)
                            .then(|| n - 1)
                    })
                    .is_ok();
                if ended {
                    // A request counted between the look at `handed` and
                    // the decrement found this worker still alive and woke
                    // nobody: it is woken here (whichever of the two looks
                    // last sees the other's count).
                    if short_of_workers(ctx, ctx.handed.load(Ordering::SeqCst)) {
                        ctx.spawner.wake();
                    }
                    return;
                }
            }
        }
    }
    ctx.alive.fetch_sub(1, Ordering::SeqCst);
}

/// Handles one request on this worker, once its turn among its
/// connection's requests has come, then each request of that connection
/// parked behind it in turn. Requests pipelined on one connection are
/// handled one at a time, in the order it sent them: tiny_http reads a
/// body of up to 1 KiB with its head, so such requests reached the
/// workers together, their lines were captured out of order (8 of 20 runs
/// of 8 pipelined uploads), and of four copies of one batch the first was
/// answered as the duplicate (a hostile-client probe, December 5). One
/// whose turn has not come is parked in the books and holds no worker.
fn serve(ctx: &Arc<Ctx>, work: Work) {
    let Some(mut now) = ctx.connections.take_turn(work) else {
        // No worker counts on it while it is parked: the one that ends the
        // turn before it takes it up.
        ctx.handed.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    // One request done, the next taken up on this worker: still handed.
    while let Some(next) = serve_in_turn(ctx, now) {
        now = next;
    }
    ctx.handed.fetch_sub(1, Ordering::SeqCst);
}

/// Handles a request whose turn has come, keeping the worker alive through
/// a panic (tiny_http answers 500 for a request dropped unanswered), and
/// ends its turn: the next request of its connection, if that one is
/// parked.
fn serve_in_turn(ctx: &Arc<Ctx>, work: Work) -> Option<Work> {
    ctx.busy.fetch_add(1, Ordering::SeqCst);
    let peer = work.request.remote_addr().copied();
    let Work {
        request,
        from,
        serve: admitted,
        order,
    } = work;
    let held = InHand {
        ctx: ctx.clone(),
        peer,
        seq: ctx.connections.begin(peer),
        unanswered: admitted,
    };
    if admitted {
        let answering = Answering::new(&ctx.unanswered);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(ctx, request, answering, held);
        }));
    } else {
        ignore(ctx, request, held);
    }
    // Done with it before the turn ends: the connection's next request
    // may be taken up on another worker from then on, and a connection is
    // never counted busy on two (the status page's count had one more
    // than the connections holding workers now and then).
    ctx.busy.fetch_sub(1, Ordering::SeqCst);
    // After the catch: a turn ends even when its handling panicked, and
    // the requests parked behind it are not stranded.
    let next = ctx.connections.end_turn(peer, order);
    from.finish();
    next
}

/// Lets go of a request without answering it: its connection broke the
/// rules, and nothing it sends is taken any more.
fn ignore(ctx: &Ctx, request: Request, held: InHand) {
    let unread = request.body_length().unwrap_or(0);
    if unread > 0 {
        ctx.connections.draining(held.peer, held.seq, false);
    }
    // Its connection is shut by now (or about to be), which ends a drain;
    // a body held back is let go of off the worker all the same.
    let held_back = held_back(&request);
    ctx.drains.let_go(
        unread,
        held_back,
        &ctx.stats,
        Release(Answered(request, None), held, held_back),
    );
}

/// A request in hand until dropped: its connection counts as busy, so the
/// closer leaves it alone, until its answer is out (which for a large
/// unread body may be on a drain thread, after the worker is done).
struct InHand {
    ctx: Arc<Ctx>,
    peer: Option<SocketAddr>,
    /// The request's number among its connection's (`Connections::begin`).
    seq: u64,
    /// Served, and its answer not yet going out.
    unanswered: bool,
}

impl InHand {
    /// Its answer starts going out.
    fn answering(&mut self) {
        if std::mem::take(&mut self.unanswered) {
            self.ctx.connections.answering(self.peer);
        }
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.ctx
            .connections
            .finish(self.peer, self.seq, self.unanswered);
    }
}

/// A request let go of, its connection's hold released once it is done
/// with, or once it is kept for good (the closer may then close it). With
/// the flag, tiny_http drains a body we did not read: if that took a read
/// timeout, the body stalled and its connection is closed, rather than
/// left to tiny_http, which would wait one more read timeout for a next
/// request. A drain that ends sooner leaves a keep-alive connection be.
struct Release(Answered, InHand, bool);

impl Finish for Release {
    fn run(self) {
        let Release(answered, mut held, drained) = self;
        let started = Instant::now();
        // Counted off before the answer can reach the client: one that
        // sends more once it has it finds room for them.
        held.answering();
        answered.run();
        // A body drained is read: no longer timed.
        held.ctx.connections.read_done(held.peer, held.seq);
        // tiny_http's drain gives up on a silent socket at the read
        // timeout (the socket's own receive timeout), not before it. A
        // drain that slow may still have ended well, with the next request
        // already taken: that one is left to go on (shut now, its body
        // would be cut and refused 400). Otherwise the connection is
        // ignored from now on, then shut: what comes next is never taken.
        if drained
            && started.elapsed() >= held.ctx.read_timeout
            && held.ctx.connections.ignore_if_alone(held.peer)
        {
            held.ctx.closer.close(held.peer);
        }
        drop(held);
    }

    fn keep(self) -> Box<dyn Send> {
        let Release(answered, mut held, _) = self;
        held.answering();
        let kept = answered.keep();
        drop(held);
        kept
    }
}

/// The receiver's books as the closer asks them (a connection is busy,
/// and none is claimed, once the receiver is gone).
struct Books(Weak<Ctx>);

impl closer::Books for Books {
    fn activity(&self, peer: SocketAddr) -> Activity {
        self.0.upgrade().map_or(
            Activity::Busy {
                done: 0,
                body: None,
            },
            |ctx| {
                ctx.connections
                    .activity(peer, ctx.turns.waiting() > 0, ctx.wire.waiting() > 0)
            },
        )
    }
    fn claim(&self, peer: SocketAddr) -> bool {
        self.0
            .upgrade()
            .is_some_and(|ctx| ctx.connections.claim(peer))
    }
    fn unclaim(&self, peer: SocketAddr) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.connections.unclaim(peer);
        }
    }
    fn gone(&self, peer: SocketAddr) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.connections.gone(peer);
        }
    }
    fn forget_gone(&self, open: &HashSet<SocketAddr>, now: Instant) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.connections.forget_gone(open, now);
        }
    }
    fn forget_absent(&self, open: &HashSet<SocketAddr>, since: Instant) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.connections.forget_absent(open, since);
        }
    }
    fn cut(&self, peer: SocketAddr, seq: u64, why: Option<Cut>) -> bool {
        self.0
            .upgrade()
            .is_some_and(|ctx| ctx.connections.cut(peer, seq, why))
    }
}

/// What is known of each connection that has a request in hand, broke
/// the rules, or was active lately, by peer address (unique while the
/// connection lives).
struct Connections {
    open: Mutex<HashMap<SocketAddr, Connection>>,
    /// How long a quiet connection is remembered: longer than the read
    /// timeout, after which tiny_http has closed it.
    forget: Duration,
    /// Size of `open` beyond which the next finish sweeps it.
    sweep_at: AtomicUsize,
    /// Requests parked until their turn, on every connection.
    parked: AtomicUsize,
}

/// Connections known before the first sweep.
const SWEEP_FIRST: usize = 1024;

impl Default for Connections {
    fn default() -> Connections {
        Connections::forgetting_after(DEFAULT_READ_TIMEOUT)
    }
}

impl Connections {
    /// Remembering quiet connections for `FORGET`, or twice the read
    /// timeout when that is longer.
    fn forgetting_after(read_timeout: Duration) -> Connections {
        Connections {
            forget: FORGET.max(2 * read_timeout),
            open: Mutex::default(),
            sweep_at: AtomicUsize::new(SWEEP_FIRST),
            parked: AtomicUsize::new(0),
        }
    }
}

#[derive(Default)]
struct Connection {
    /// Requests handed out and not yet done with (more than one:
    /// pipelined); one is done with once its answer is out.
    outstanding: usize,
    /// Requests of it to be served whose answer has not started going
    /// out: past `PIPELINE_LIMIT` it pipelined too much. Not
    /// `outstanding`, which lasts until an answer is out: a client that
    /// read all eight answers and sent eight more could find the last of
    /// the first eight still counted, and its connection ignored (most of
    /// the pipelining status clients of a hostile-network test were; a
    /// device that then connected from one's port got no answer).
    unanswered: usize,
    /// It broke HTTP's framing or pipelined too much: ignored from now on.
    ignored: bool,
    /// When a request of it last came or was done with: the closer leaves
    /// alone a connection active within a read timeout.
    last: Option<Instant>,
    /// Requests of it done with so far (the closer's head cap starts a new
    /// head when this moves).
    done: u64,
    /// The closer claimed it, to shut it both ways (until its socket is
    /// gone: the address is then free for a new connection).
    claimed: bool,
    /// The closer's sweep found no connection open from its address, first
    /// at this time and at every sweep since (see `forget_gone`).
    absent_since: Option<Instant>,
    /// Requests of it a worker took so far (the last one's number).
    begun: u64,
    /// Requests of it to be served, numbered in the order it sent them
    /// (the last one's number), and how many of them have had their turn
    /// (see `Connections::take_turn`).
    served: u64,
    turns_done: u64,
    /// Requests of it whose turn has not come, parked here rather than
    /// each holding a worker: the worker that ends a turn takes up the
    /// next (`Connections::end_turn`). A client pipelining without reading
    /// its answers held a worker for each request waiting behind the
    /// one whose answer could not be written, 9 per connection for the
    /// send timeout (a hostile-client probe: 1 250 such connections, 7 858
    /// workers and 292 MB).
    parked: Vec<Work>,
    /// The body being read now, if any.
    body: Option<BodyRead>,
}

impl Connection {
    /// Ignored from now on.
    fn ignore(&mut self) {
        self.ignored = true;
    }

    /// A request of it in hand, or one done with whose turn has not ended
    /// yet (`finish` comes a moment before `end_turn`): its entry must not
    /// be forgotten, or a new connection's entry from the same port would
    /// count that end as its own first.
    fn unfinished(&self) -> bool {
        self.outstanding > 0 || self.turns_done < self.served
    }
}

/// A body being read, by a worker or drained, as the books keep it.
struct BodyRead {
    /// The number of its request (`Connection::begun` when it was taken).
    seq: u64,
    since: Instant,
    /// The closer cut it, why, and what it held then.
    cut: Option<(Cut, Holds)>,
    /// What it holds that another body may wait for.
    holds: Holds,
    /// What comes of it earns it time (see `activity::Body::earns`).
    earns: bool,
}

/// What a body being read holds that another may wait for: the turn for
/// large bodies (one announced over `LARGE_BODY`), or a share of the wire
/// budget (`WIRE_BUDGET`, one that goes on past `WIRE_FREE`). Either lapses
/// if the body stops coming while another waits for it
/// (`heads::TURN_LAPSE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Holds {
    turn: bool,
    share: bool,
}

/// Whether a request is served or ignored.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Serve,
    Ignore,
}

/// Connections are forgotten after this long without a request (the read
/// timeout has closed them by then).
const FORGET: Duration = Duration::from_secs(120);

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Connection>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request in, in the order its connection sent it; says to
    /// ignore it when its connection is ignored or now has too many
    /// requests waiting. A request whose framing is broken is still served
    /// (answered 400/501), and its connection ignored from then on. The
    /// flag is true once, when the connection turns ignored: it is to be
    /// closed.
    fn admit(&self, peer: Option<SocketAddr>, framing_ok: bool) -> (Admit, bool) {
        let Some(peer) = peer else {
            return (Admit::Serve, false);
        };
        let mut open = self.lock();
        let c = open.entry(peer).or_default();
        // Ignored or claimed: whatever socket this request came on, it may
        // be one the connection had pipelined and tiny_http read before it
        // was shut, or reset (tiny_http names a request by its peer
        // address alone). Until December 6 a request on another socket at
        // the same pair of addresses (the kernel's socket diagnostics) was
        // taken for a new connection's and served at once: a probe's client
        // that pipelined uploads after breaking the framing, reset, and
        // connected again from its port had them served and saved. The
        // address is free once the closer finds every connection from it
        // gone (`forget_absent`, `gone`).
        let was_ignored = c.ignored;
        c.outstanding += 1;
        c.last = Some(Instant::now());
        let admit = if c.claimed {
            // Being shut: nothing to close, and not ignored for good (the
            // address will be a new connection's).
            Admit::Ignore
        } else if c.ignored || c.unanswered >= PIPELINE_LIMIT {
            c.ignore();
            Admit::Ignore
        } else {
            if !framing_ok {
                c.ignore();
            }
            c.unanswered += 1;
            Admit::Serve
        };
        (admit, c.ignored && !was_ignored)
    }

    /// A request of `peer` admitted to be served: its number among them,
    /// in the order the connection sent them (called by its server's
    /// pump, which sees them in that order).
    fn number(&self, peer: Option<SocketAddr>) -> u64 {
        self.count(peer, |c| &mut c.served)
    }

    /// One more on the counter `of` `peer`'s connection: the new count (0
    /// for no peer).
    fn count(&self, peer: Option<SocketAddr>, of: fn(&mut Connection) -> &mut u64) -> u64 {
        let Some(peer) = peer else {
            return 0;
        };
        let mut open = self.lock();
        let n = of(open.entry(peer).or_default());
        *n += 1;
        *n
    }

    /// `work` if its turn among its connection's requests has come (every
    /// request of it numbered before has had its turn); otherwise it is
    /// parked until then, holding no worker (None). A request not
    /// numbered, or of no known peer, has its turn at once.
    fn take_turn(&self, work: Work) -> Option<Work> {
        let peer = work.request.remote_addr().copied();
        let Some(peer) = peer.filter(|_| work.order > 0) else {
            return Some(work);
        };
        let mut open = self.lock();
        let Some(c) = open.get_mut(&peer) else {
            return Some(work);
        };
        if c.turns_done.saturating_add(1) >= work.order {
            return Some(work);
        }
        c.parked.push(work);
        self.parked.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The turn of `peer`'s request numbered `order` ends: the next request
    /// of it, if it is parked, to be served now on the same worker. Turns
    /// end in the order of their numbers: each waits for the one before.
    /// An end that is not the next is not counted: the entry it was
    /// numbered in was forgotten while it was handled (nothing parked, and
    /// its hold on the entry let go before its turn ended), and this one is
    /// a new connection's from the same address.
    fn end_turn(&self, peer: Option<SocketAddr>, order: u64) -> Option<Work> {
        let peer = peer.filter(|_| order > 0)?;
        let mut open = self.lock();
        let c = open.get_mut(&peer)?;
        if order == c.turns_done.saturating_add(1) {
            c.turns_done = order;
        }
        let at = c
            .parked
            .iter()
            .position(|w| w.order <= c.turns_done.saturating_add(1))?;
        let next = c.parked.swap_remove(at);
        self.parked.fetch_sub(1, Ordering::Relaxed);
        Some(next)
    }

    /// A worker takes a request of `peer`: its number among them.
    fn begin(&self, peer: Option<SocketAddr>) -> u64 {
        self.count(peer, |c| &mut c.begun)
    }

    /// The answer of a request of `peer` that was served starts going out.
    fn answering(&self, peer: Option<SocketAddr>) {
        if let Some(peer) = peer
            && let Some(c) = self.lock().get_mut(&peer)
        {
            c.unanswered = c.unanswered.saturating_sub(1);
        }
    }

    /// Request `seq` of `peer` is done with; `unanswered`: it was served
    /// and no answer of it went out (`answering` was not called).
    fn finish(&self, peer: Option<SocketAddr>, seq: u64, unanswered: bool) {
        let Some(peer) = peer else {
            return;
        };
        let mut open = self.lock();
        if let Some(c) = open.get_mut(&peer) {
            c.outstanding = c.outstanding.saturating_sub(1);
            if unanswered {
                c.unanswered = c.unanswered.saturating_sub(1);
            }
            c.last = Some(Instant::now());
            c.done += 1;
            if c.body.as_ref().is_some_and(|b| b.seq == seq) {
                c.body = None;
            }
        }
        // Connections that went quiet are forgotten now and then: each
        // time the map has doubled since the last sweep, so a flood of
        // connections costs each request O(1), not a scan.
        if open.len() > self.sweep_at.load(Ordering::Relaxed) {
            let forget = self.forget;
            open.retain(|_, c| {
                c.outstanding > 0 || c.last.is_some_and(|t| t.elapsed() < forget) || c.claimed
            });
            self.sweep_at
                .store((2 * open.len()).max(SWEEP_FIRST), Ordering::Relaxed);
        }
    }

    /// Whether `peer` has a request in hand, or how long it has been quiet;
    /// `turn_waited`: another body waits for the turn for large bodies;
    /// `share_waited`: another waits for a share of the wire budget.
    fn activity(&self, peer: SocketAddr, turn_waited: bool, share_waited: bool) -> Activity {
        match self.lock().get(&peer) {
            Some(c) if c.outstanding > 0 => Activity::Busy {
                done: c.done,
                body: c.body.as_ref().map(|b| Body {
                    seq: b.seq,
                    took: b.since.elapsed(),
                    holds: b.holds.turn || b.holds.share,
                    wanted: (b.holds.turn && turn_waited) || (b.holds.share && share_waited),
                    earns: b.earns,
                }),
            },
            Some(Connection {
                last: Some(t),
                done,
                ..
            }) => Activity::Quiet {
                ago: t.elapsed(),
                done: *done,
            },
            _ => Activity::Unseen,
        }
    }

    /// The closer is about to shut `peer`'s connection both ways: agreed
    /// only while none of its requests is in hand. A request of it that
    /// still comes (tiny_http reads what was queued before the shutdown)
    /// is ignored, not saved: its answer could not reach the device.
    fn claim(&self, peer: SocketAddr) -> bool {
        let mut open = self.lock();
        let c = open.entry(peer).or_default();
        if c.outstanding > 0 {
            return false;
        }
        c.claimed = true;
        true
    }

    /// `peer`'s claimed connection was not shut after all.
    fn unclaim(&self, peer: SocketAddr) {
        if let Some(c) = self.lock().get_mut(&peer) {
            c.claimed = false;
        }
    }

    /// `peer`'s shut connection is gone, and no other from the address is
    /// open (see `Books::gone`): forgotten, unless a request from the
    /// address is in hand (which is then no longer claimed).
    fn gone(&self, peer: SocketAddr) {
        let mut open = self.lock();
        match open.get_mut(&peer) {
            Some(c) if c.unfinished() => {
                c.claimed = false;
            }
            Some(_) => {
                open.remove(&peer);
            }
            None => {}
        }
    }

    /// Forgets every address found without a connection `open` at two
    /// sweeps in a row, with no request in hand and nothing of it since
    /// the first (see `Books::forget_gone`). Unlike `forget_absent` it
    /// does not wait for every turn to end (`Connection::unfinished`): a
    /// turn ends a moment after its request is done with, so an entry
    /// absent at two sweeps with a turn still open is one whose end was
    /// missed, and this is the backstop that lets it go.
    fn forget_gone(&self, open: &HashSet<SocketAddr>, now: Instant) {
        self.lock().retain(|peer, c| {
            if open.contains(peer) || c.outstanding > 0 {
                c.absent_since = None;
                return true;
            }
            match c.absent_since {
                Some(first) if c.last.is_none_or(|t| t < first) => false,
                _ => {
                    c.absent_since = Some(now);
                    true
                }
            }
        });
    }

    /// Forgets every address without a connection `open` in a read of the
    /// descriptor table begun at `since` that named every connection, with
    /// no request in hand, every turn of it ended (a request is done with
    /// a moment before its turn ends: a new connection's entry from the
    /// same port would take that end for its own first) and nothing of it
    /// since (see `Books::forget_absent`).
    fn forget_absent(&self, open: &HashSet<SocketAddr>, since: Instant) {
        self.lock().retain(|peer, c| {
            open.contains(peer) || c.unfinished() || c.last.is_some_and(|t| t >= since)
        });
    }

    /// Request `seq` of `peer` has its body read from now on by a worker,
    /// for the closer's deadline.
    fn reading(&self, peer: Option<SocketAddr>, seq: u64, holds: Holds) {
        self.body_begins(peer, seq, holds, true);
    }

    /// Request `seq` of `peer` has its body drained from now on, unread,
    /// under the same deadline: `earns` as `activity::Body::earns` says.
    fn draining(&self, peer: Option<SocketAddr>, seq: u64, earns: bool) {
        self.body_begins(peer, seq, Holds::default(), earns);
    }

    fn body_begins(&self, peer: Option<SocketAddr>, seq: u64, holds: Holds, earns: bool) {
        if let Some(peer) = peer
            && let Some(c) = self.lock().get_mut(&peer)
        {
            c.body = Some(BodyRead {
                seq,
                since: Instant::now(),
                cut: None,
                holds,
                earns,
            });
        }
    }

    /// The body of request `seq` of `peer` took what it `holds` now while
    /// it was read.
    fn took(&self, peer: Option<SocketAddr>, seq: u64, holds: Holds) {
        if let Some(peer) = peer
            && let Some(c) = self.lock().get_mut(&peer)
            && let Some(b) = c.body.as_mut().filter(|b| b.seq == seq)
        {
            b.holds = holds;
        }
    }

    /// The closer cuts the body of request `seq` of `peer`, for `why`
    /// (None: it could not, after all); says whether it may. A lapse is
    /// not cut once the body holds nothing (the closer's look found it
    /// holding what another waited for a moment ago). A body cut already is
    /// not cut again.
    fn cut(&self, peer: SocketAddr, seq: u64, why: Option<Cut>) -> bool {
        let mut open = self.lock();
        let Some(b) = open
            .get_mut(&peer)
            .and_then(|c| c.body.as_mut())
            .filter(|b| b.seq == seq)
        else {
            return false;
        };
        if why == Some(Cut::Lapsed) && !(b.holds.turn || b.holds.share) {
            return false;
        }
        // Cut once: its reading side is shut, so a second look finds it
        // still over, and a second cut would relabel it with what it holds
        // by then, or, if that shutdown failed, be undone and erase the
        // first.
        if why.is_some() && b.cut.is_some() {
            return false;
        }
        b.cut = why.map(|why| (why, b.holds));
        true
    }

    /// The body of request `seq` of `peer` is read (or drained): no longer
    /// timed; why the closer cut it, if it did, and what it held then.
    fn read_done(&self, peer: Option<SocketAddr>, seq: u64) -> Option<(Cut, Holds)> {
        let mut open = self.lock();
        let c = open.get_mut(&peer?)?;
        if c.body.as_ref().is_some_and(|b| b.seq == seq) {
            return c.body.take().and_then(|b| b.cut);
        }
        None
    }

    /// Connections ignored now (for the status page).
    fn ignored(&self) -> usize {
        self.lock().values().filter(|c| c.ignored).count()
    }

    /// Nothing more `peer` sends is served.
    fn ignore(&self, peer: Option<SocketAddr>) {
        if let Some(peer) = peer {
            self.lock().entry(peer).or_default().ignore();
        }
    }

    /// Ignores `peer`'s connection from now on, unless a request of it
    /// other than the one in hand was taken already; says whether it did.
    fn ignore_if_alone(&self, peer: Option<SocketAddr>) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        let mut open = self.lock();
        let c = open.entry(peer).or_default();
        if c.outstanding > 1 {
            return false;
        }
        c.ignore();
        true
    }
}
/// What we answer and what we learned, before it becomes an event.
struct Outcome {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    extra_header: Option<(&'static str, String)>,
    error: Option<String>,
    batch: Option<Batch>,
    duplicate_of: Option<String>,
    retry_of: Option<String>,
    /// The batch is in the capture.
    captured: bool,
    /// The answer mode that decided, and how: a late answer waits, a
    /// hang-up sends nothing.
    mode: Option<(Mode, Answer)>,
    wire_bytes: u64,
    kept_body: Option<Arc<[u8]>>,
    /// The body was read off the socket (so nothing is left to drain).
    body_read: bool,
    /// Reading the body failed (a stall past the read timeout, a reset):
    /// dropping the request may wait another read timeout in tiny_http's
    /// drain, so that is not done on a worker.
    body_cut: bool,
}

impl Outcome {
    fn json(status: u16, body: serde_json::Value) -> Outcome {
        Outcome {
            status,
            body: body.to_string().into_bytes(),
            content_type: "application/json",
            extra_header: None,
            error: None,
            batch: None,
            duplicate_of: None,
            retry_of: None,
            captured: false,
            mode: None,
            wire_bytes: 0,
            kept_body: None,
            body_read: false,
            body_cut: false,
        }
    }

    fn refused(r: Rejection) -> Outcome {
        let mut out = Outcome::json(r.status, serde_json::json!({ "error": r.error }));
        out.extra_header = match r.status {
            401 => Some((
                "WWW-Authenticate",
                r#"Token realm="autopi-rx", Bearer realm="autopi-rx""#.into(),
            )),
            503 => Some(("Retry-After", RETRY_AFTER_SECS.to_string())),
            _ => None,
        };
        out.error = Some(r.error);
        out
    }
}

/// Whether `request`'s client holds its body back until told to send it
/// (`Expect: 100-continue`): tiny_http then reads none of it ahead (it
/// does up to 1 KiB otherwise), and tells the client to go on only when
/// the body is opened. A request answered without opening its body leaves
/// bytes that will not come: tiny_http's drain waits a read timeout for
/// them when the request is dropped.
fn held_back(request: &Request) -> bool {
    request.body_length().is_some_and(|n| n > 0)
        && header(request, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

fn header<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Whether `request` can be trusted to end where it says: its version,
/// its request line, then its framing headers (`ingest::check_framing`). A request that
/// fails is answered, and nothing more its connection sends is taken.
fn framing(request: &Request, quote: impl Fn(&str) -> String) -> Result<(), Rejection> {
    let version = request.http_version();
    ingest::check_version(version.0, version.1)?;
    ingest::check_request_line(request.method().as_str(), request.url(), &quote)?;
    ingest::check_framing(
        (version.0, version.1) == (1, 0),
        request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        quote,
    )
}

/// Counts a request as unanswered until dropped: when its answer starts
/// being written, or if handling it panics.
struct Answering<'a>(&'a AtomicUsize);

impl<'a> Answering<'a> {
    fn new(unanswered: &'a AtomicUsize) -> Answering<'a> {
        unanswered.fetch_add(1, Ordering::SeqCst);
        Answering(unanswered)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle(ctx: &Ctx, mut request: Request, answering: Answering<'_>, held: InHand) {
    let started = Instant::now();
    // To the millisecond, as the capture keeps it: the live dashboard then
    // folds the very times `view` reads back (a gap of 0.9996 s live was
    // 1.000 s in view, either side of the 1 s that makes two full batches
    // a backlog draining).
    let now = Timestamp::now();
    let received = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
    let framing = framing(&request, |value| ctx.auth().clipped(value, 40));
    let outcome = match (framing, request.method()) {
        (Err(r), _) => {
            // Where this request ends is in doubt: whatever the connection
            // sends next is not taken as a request (admitting it asked for
            // the connection to be closed).
            ctx.connections.ignore(request.remote_addr().copied());
            Outcome::refused(r)
        }
        (Ok(()), Method::Post) => post(ctx, &mut request, received, held.seq),
        // A device's POST, redirected by something in front with a 301,
        // 302 or 303, comes back as a GET with the device's headers and
        // no body. Answered with the status page (200), it told the
        // device its batch was saved, and the device deleted it (a
        // device-realism review): refused, the device keeps it.
        (Ok(()), Method::Get | Method::Head) if header(&request, "unit-id").is_some() => {
            Outcome::refused(Rejection {
                status: 400,
                error: REDIRECTED.into(),
            })
        }
        (Ok(()), Method::Get | Method::Head) => status_page(ctx),
        (Ok(()), _) => {
            let mut out = Outcome::refused(Rejection {
                status: 405,
                error: format!(
                    "method {} not allowed: the device uploads with POST",
                    shown_method(&ctx.auth(), request.method(), 40)
                ),
            });
            out.extra_header = Some(("Allow", "GET, HEAD, POST".into()));
            out
        }
    };
    if matches!(outcome.mode, Some((_, Answer::Hangup))) {
        // A request this connection sends after a hang-up got its answer,
        // which an HTTP/1.1 client reads as the hung-up one's: nothing it
        // sends is served from now on, from before the event is reported
        // (one sent after the event is seen is not). One pipelined behind
        // it and taken before this point is still answered, once the
        // hang-up's hold ends: tiny_http orders the answers, and gives a
        // handler no way to close a connection's writing side.
        ctx.connections.ignore(request.remote_addr().copied());
    }
    let event = make_event(ctx, &request, received, &outcome, started);
    let mut response = Response::from_data(outcome.body)
        .with_status_code(outcome.status)
        .with_header(
            Header::from_bytes("Content-Type", outcome.content_type).expect("static header"),
        );
    if let Some((name, value)) = outcome.extra_header {
        response.add_header(Header::from_bytes(name, value).expect("ascii header"));
    }
    // Counted and reported before answering, so a status request sent
    // after this answer already sees it, and the consumers see requests in
    // the order their clients saw the answers (a client's next request
    // comes after its answer).
    ctx.stats.count(&event);
    send_event(ctx, event);
    drop(answering);
    let unread = request
        .body_length()
        .filter(|_| !outcome.body_read)
        .unwrap_or(0);
    match outcome.mode {
        Some((_, Answer::Hangup)) => {
            // Nothing goes on the wire: the writer is taken out and dropped
            // unused (tiny_http 0.12 then sends no 500 either). The device
            // sees what it sees on a hang-up: no answer before its own
            // timeout. Nothing sent after it on this connection is answered
            // either (ignored above, before the event). And the request is held for a read timeout, as a late answer
            // holds its worker: dropping it at once closed a connection
            // that asked to be closed (`Connection: close`, HTTP/1.0)
            // there and then, a close rather than a silence. Held, the
            // answer's side of the socket stays open (tiny_http shuts only
            // the reading side when its connection ends).
            wait_unless_stopping(ctx, ctx.read_timeout);
            drop(request.into_writer());
            return;
        }
        Some((_, Answer::Late(delay))) => wait_unless_stopping(ctx, delay),
        _ => {}
    }
    // Where this request ends is in doubt, and nothing more its
    // connection sends is taken as a request (whatever tiny_http already
    // read past this one included); the answer goes out and the
    // connection closes:
    // - a length beyond `isize::MAX`: tiny_http cannot drain it and hands
    //   the socket on at once;
    // - a body that stalled past the read timeout (rather than tiny_http
    //   draining a silent socket for one more), or broke off;
    // - any request with `Transfer-Encoding` (refused with the framing,
    //   its body never read): tiny_http's drain would decode chunks and
    //   parse what follows a break in them as a request;
    // - a body held back for a "100 Continue" never sent (see
    //   `held_back`): its client may still send it after our answer, or
    //   not. Until December 6 tiny_http's drain waited a read timeout for
    //   it on the worker, and the connection was closed after two (a
    //   hostile-client probe: 1 000 such requests without a token held
    //   1 000 workers).
    // - a body left unread while `DRAINS_AT_MOST` drains run already:
    //   each holds a thread and its connection for as long as the body
    //   keeps coming (a hostile-client probe, December 7: a client
    //   without a token sent thousands of heads announcing 2 000 bytes
    //   and no body, held 2.2 threads and 56 KiB each, passed 200 MB at
    //   4 000, and at about 8 000 the process ran out of memory mappings
    //   and aborted).
    let coded = header(&request, "transfer-encoding").is_some();
    let held_back = unread > 0 && held_back(&request);
    // A body never read may be a stalled one: tiny_http's drain would
    // then wait a read timeout on the worker. Bodies of up to 1 KiB it
    // has read whole before handing the request over: nothing to wait for.
    let stalled = outcome.body_cut || unread > READ_AHEAD_BY_TINY_HTTP || held_back;
    if drain::way(unread) == drain::Way::Overflowing
        || outcome.body_cut
        || coded
        || held_back
        || (stalled && unread > 0 && ctx.drains.running() >= DRAINS_AT_MOST)
    {
        ctx.connections.ignore(request.remote_addr().copied());
        ctx.closer.close(request.remote_addr().copied());
    }
    // A body drained is read all the same: under the same deadline, which
    // what comes of it stretches but after a refusal without the token.
    if unread > 0 {
        ctx.connections
            .draining(held.peer, held.seq, outcome.status != 401);
    }
    ctx.drains.let_go(
        unread,
        stalled,
        &ctx.stats,
        Release(Answered(request, Some(response)), held, stalled),
    );
}

/// Waits `delay` before a late answer; a receiver shutting down answers
/// at once rather than holding up the shutdown.
fn wait_unless_stopping(ctx: &Ctx, delay: Duration) {
    let until = Instant::now() + delay;
    while !ctx.stopping.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn post(ctx: &Ctx, request: &mut Request, received: Timestamp, seq: u64) -> Outcome {
    let limit = ctx.config.max_body;
    let names = request.headers().iter().map(|h| h.field.as_str().as_str());
    if let Err(r) = ingest::check_once(names) {
        return Outcome::refused(r);
    }
    if let Err(r) = ingest::authorize(&ctx.auth(), header(request, "authorization")) {
        return Outcome::refused(r);
    }
    if let Err(r) = ingest::check_kept_headers(|name| header(request, name)) {
        return Outcome::refused(r);
    }
    if let Some(len) = request.body_length().filter(|&len| len > limit) {
        let mut out = Outcome::refused(ingest::too_large("body", len, limit));
        out.wire_bytes = len as u64;
        return out;
    }
    // A large body takes its turn before it is read: the wire holds no
    // more of them at once than decoding does. (Every body announces its
    // length: chunked ones are refused with the framing.)
    let turn = match request.body_length().filter(|&len| len > turns::LARGE_BODY) {
        Some(_) => match ctx.turns.take() {
            Ok(turn) => Some(turn),
            Err(r) => return Outcome::refused(r),
        },
        None => None,
    };
    let mut out = match read_body(ctx, request, limit, seq, turn.is_some()) {
        Ok((wire, share)) => {
            let out = decode_and_save(ctx, request, received, wire, turn);
            // The wire's share is held until the wire itself is let go.
            drop(share);
            out
        }
        Err(Unread {
            rejection,
            read,
            drained,
        }) => {
            let mut out = Outcome::refused(rejection);
            out.wire_bytes = read;
            out.body_cut = !drained;
            out
        }
    };
    out.body_read = true;
    out
}

/// A body refused while it was read: the refusal, the bytes that came,
/// and whether the rest was read to its end and thrown away (the
/// connection can then go on).
struct Unread {
    rejection: Rejection,
    read: u64,
    drained: bool,
}

/// Reads at most `limit` + 1 bytes of body, refusing a body cut short
/// (with how many bytes did arrive). The books time it (request `seq`)
/// for the closer's deadline; a body the closer cut is refused saying
/// why. A body that goes on past `WIRE_FREE` without the turn for large
/// bodies (`has_turn`: taken before the read, by one announced over
/// `LARGE_BODY`) takes a share of the wire budget for the rest there,
/// returned with the body. Refused 503 when it waited too long for it,
/// its rest is read and thrown away (within the limit and the closer's
/// deadline), as tiny_http drains a refused body of known length: a
/// client sending its whole body before it reads gets the refusal, where
/// a close would leave it waiting on a window nobody opens.
fn read_body(
    ctx: &Ctx,
    request: &mut Request,
    limit: usize,
    seq: u64,
    has_turn: bool,
) -> Result<(Vec<u8>, Option<Share>), Unread> {
    // No length: no body (tiny_http reads none; a chunked one was refused
    // with the framing).
    let declared = request.body_length().unwrap_or(0);
    let peer = request.remote_addr().copied();
    let mut holds = Holds {
        turn: has_turn,
        share: false,
    };
    ctx.connections.reading(peer, seq, holds);
    let reader = request.as_reader();
    let most = limit + 1;
    // A body with its turn holds the wire alone; any other reads its
    // first `WIRE_FREE`, and a byte more to tell whether it goes on,
    // before it asks for a share.
    let free = if has_turn {
        most
    } else {
        most.min(WIRE_FREE + 1)
    };
    let mut wire = Vec::with_capacity(declared.min(free));
    let mut read = (&mut *reader).take(free as u64).read_to_end(&mut wire);
    let mut share = None;
    let rest = declared.min(most).saturating_sub(free);
    if read.is_ok() && wire.len() == free && rest > 0 {
        match ctx.wire.take(rest) {
            Ok(taken) => {
                share = Some(taken);
                holds.share = true;
                ctx.connections.took(peer, seq, holds);
            }
            Err(rejection) => {
                let came = wire.len();
                drop(wire);
                return Err(refused_while_read(
                    ctx, reader, rejection, came, most, peer, seq,
                ));
            }
        }
        wire.reserve_exact(rest);
        read = (&mut *reader)
            .take((most - free) as u64)
            .read_to_end(&mut wire);
    }
    let short = Some(declared).filter(|&len| wire.len() < len);
    let cut = ctx.connections.read_done(peer, seq);
    let mut status = 400;
    let error = match (read, short, cut) {
        // Whole, even if the cut came as it ended: taken.
        (Ok(_), None, _) => return Ok((wire, share)),
        (_, _, Some((Cut::Lapsed, held))) => {
            // Nothing wrong with the body: it is to come again.
            status = 503;
            let turn = format!("the turn for bodies over {} MiB", turns::LARGE_BODY >> 20);
            let share = format!(
                "a share of the {} MiB that bodies hold past their first {} KiB while read",
                WIRE_BUDGET >> 20,
                WIRE_FREE / 1024
            );
            let held = if held.turn { turn } else { share };
            format!(
                "the body held {held} while less than {} KiB of it came in {} s, and another \
                 upload was waiting for it: the receiver cut it off; send it again",
                heads::ARRIVAL_RATE / 1024,
                heads::TURN_LAPSE.as_secs()
            )
        }
        (_, _, Some((Cut::Slow, _))) => format!(
            "the body was still coming {} s after it began (a body gets {} read timeouts, \
             plus a second per {} KiB that came): the receiver cut it off",
            heads::arrival_deadline(ctx.read_timeout, wire.len() as u64).as_secs(),
            heads::ARRIVAL_TIMEOUTS,
            heads::ARRIVAL_RATE / 1024
        ),
        // The socket's receive timeout: nothing came for a read timeout.
        (Err(e), _, None)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "the body stopped coming: nothing came for {} s (the read timeout) after {} \
                 bytes of the {declared} bytes its Content-Length announced",
                ctx.read_timeout.as_secs_f64(),
                wire.len()
            )
        }
        (Err(e), _, None) => format!("could not read the whole body: {e}"),
        (Ok(_), Some(len), None) => format!(
            "the body ended after {} of the {len} bytes its Content-Length announced",
            wire.len()
        ),
    };
    Err(Unread {
        rejection: Rejection { status, error },
        read: wire.len() as u64,
        drained: false,
    })
}

/// A body refused (503) after `came` bytes of it were read, for want of
/// its turn or its share: the rest, up to `most` in all, is read and
/// thrown away.
fn refused_while_read(
    ctx: &Ctx,
    reader: &mut dyn Read,
    rejection: Rejection,
    came: usize,
    most: usize,
    peer: Option<SocketAddr>,
    seq: u64,
) -> Unread {
    let left = (most - came) as u64;
    let rest = io::copy(&mut reader.take(left), &mut io::sink());
    let cut = ctx.connections.read_done(peer, seq);
    Unread {
        rejection,
        read: came as u64 + rest.as_ref().map_or(0, |n| *n),
        drained: rest.is_ok_and(|n| n < left) && cut.is_none(),
    }
}

fn decode_and_save(
    ctx: &Ctx,
    request: &Request,
    received: Timestamp,
    wire: Vec<u8>,
    turn: Option<Turn>,
) -> Outcome {
    let wire_bytes = wire.len() as u64;
    let refused = |r: Rejection, mut wire: Vec<u8>| {
        let mut out = Outcome::refused(r);
        out.wire_bytes = wire_bytes;
        wire.truncate(REFUSED_BODY_KEPT);
        out.kept_body = ctx.event_bodies.then(|| wire.into());
        out
    };
    // A header as quoted in warnings and errors and kept beside the batch:
    // any token in it taken out first (before it is cut or lowercased).
    let kept = |name: &'static str| header(request, name).map(|v| ctx.auth().scrub(v).into_owned());
    let prepared = ingest::prepare_in_turn(
        &ctx.config,
        kept("content-encoding").as_deref(),
        &wire,
        Some((&ctx.turns, &ctx.budget)),
        turn,
    );
    let unchecked = match prepared {
        Ok(unchecked) => unchecked,
        Err(r) => return refused(r, wire),
    };
    let (mode, answer, undo) = ctx.respond.take_undoable();
    let entry = Entry {
        received: format_received(received),
        peer: peer(request),
        unit_id: kept("unit-id"),
        user_agent: kept("user-agent"),
        content_type: kept("content-type"),
        accept: kept("accept"),
        accept_encoding: kept("accept-encoding"),
        wire_bytes,
        acked: answer.acked(),
        mode: mode.to_string(),
    };
    // The records are read while the line is written and synced: the
    // line counts (and the device hears 2xx) only once both are done.
    // A lone upload has a core to spare: its records are read in two halves.
    let helper = (ctx.busy.load(Ordering::SeqCst) <= 1)
        .then(ingest::helper)
        .flatten();
    // A refusal quoting the body is cut with any token in it replaced
    // whole (the lock is taken only then).
    let cut = |text: &str, max: usize| ctx.auth().shown(text, max);
    let checked = if unchecked.large() {
        unchecked
            .check_on(helper, &cut)
            .map(|counts| (counts, ctx.capture.save(&entry, unchecked.batch())))
    } else {
        ctx.capture.save_checking(&entry, unchecked.batch(), || {
            unchecked.check_on(helper, &cut)
        })
    };
    let (batch, saved) = match checked {
        Ok((counts, saved)) => (unchecked.finish(counts), saved),
        Err(r) => {
            ctx.respond.undo(undo);
            drop(unchecked);
            return refused(r, wire);
        }
    };
    match saved {
        Ok(saved) => {
            let mut out = match answer {
                Answer::Ack | Answer::Late(_) => Outcome::json(
                    200,
                    serde_json::json!({ "accepted": batch.records, "duplicate": saved.duplicate_of.is_some() }),
                ),
                Answer::Refuse(status) => {
                    let mut out = Outcome::refused(Rejection {
                        status,
                        error: format!(
                            "answer mode {mode}: batch saved, answered {status} on purpose"
                        ),
                    });
                    // The device is not told the batch was saved: the
                    // body says only what a refusal would.
                    out.body = serde_json::json!({ "error": format!("answer mode {mode}") })
                        .to_string()
                        .into_bytes();
                    out
                }
                Answer::Hangup => {
                    let mut out = Outcome::json(NO_ANSWER, serde_json::Value::Null);
                    out.error = Some(format!("answer mode {mode}: batch saved, no answer sent"));
                    out
                }
            };
            out.wire_bytes = wire_bytes;
            out.duplicate_of = saved.duplicate_of;
            out.retry_of = saved.retry_of;
            out.captured = true;
            out.mode = Some((mode, answer));
            out.kept_body = ctx.event_bodies.then(|| batch.records_json.clone());
            out.batch = Some(batch);
            out
        }
        Err(e) => {
            let mut out = Outcome::refused(Rejection {
                status: 503,
                error: format!("capture not writable, batch not saved (send it again): {e}"),
            });
            out.wire_bytes = wire_bytes;
            out
        }
    }
}

fn peer(request: &Request) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// `at` in whole seconds, cut as the dashboard's clock cuts them.
fn whole_seconds(at: jiff::Timestamp) -> jiff::Timestamp {
    at.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(at)
}

/// The refusal of a GET carrying a `unit-id` (see `handle`).
const REDIRECTED: &str = "a GET with a unit-id: a device's upload turned into a GET by a redirect in front of autopi-rx (after a 301, 302 or 303 the device's HTTP client asks again with GET and no body); answered 400 so that the device keeps the batch and sends it again. Point the device at the URL the redirect goes to, or have the redirect answer 307 or 308, which keep the POST";

fn status_page(ctx: &Ctx) -> Outcome {
    let s = &ctx.stats;
    let text = format!(
        "autopi-rx {version}: receiver for AutoPi uploads\n\
         uptime: {uptime} s\n\
         requests: {req} ({rej} rejected)\n\
         batches acknowledged: {bat}\n\
         copies: {dup} duplicates (of a batch acknowledged), {ret} retries and re-sends (of one not acknowledged)\n\
         records: {rec} (at each batch's first copy)\n\
         capture: {path}\n\
         {taken}\
         {failing}\
         answer mode: {mode}\n\
         auth: {auth}\n\
         workers: {busy} busy of {alive} (at most {max})\n\
         {connections}\
         {parked}\
         {pipelined}\
         {large}\
         {wire}\
         {budget}\
         {reset}\
         {closed}\
         {shed}\
         {held}\
         {nudges}\
         {ignored}\
         {forward}\
         Upload with POST to any path here, header 'authorization: token <T>' or 'Bearer <T>'.\n",
        version = env!("CARGO_PKG_VERSION"),
        uptime = ctx.started.elapsed().as_secs(),
        req = Stats::get(&s.requests),
        rej = Stats::get(&s.rejected),
        bat = Stats::get(&s.batches),
        dup = Stats::get(&s.duplicates),
        ret = Stats::get(&s.retries),
        mode = mode_line(&ctx.respond.shown()),
        rec = Stats::get(&s.records),
        path = ctx.capture_path,
        taken = ctx
            .durable
            .taken()
            .map_or(String::new(), |(at, what)| format!(
                "capture was {} at {}: {} (stderr says more)\n",
                what.label(),
                whole_seconds(at),
                what.then()
            )),
        failing = ctx
            .durable
            .failing()
            .map_or(String::new(), |f| format!(
                "capture NOT SAVING since {}, last failed at {}: {} (uploads are answered 503 \
                 until one is saved)\n",
                whole_seconds(f.since),
                whole_seconds(f.last),
                f.why.escape_debug()
            )),
        auth = match ctx.auth().token_count() {
            0 => "OFF (--no-auth)".to_string(),
            n => format!("{n} token(s)"),
        },
        busy = ctx.busy.load(Ordering::SeqCst),
        alive = ctx.alive.load(Ordering::SeqCst),
        max = ctx.max_workers,
        connections = ctx
            .closer
            .tally
            .open_when_seen()
            .map_or(String::new(), |(n, ago)| format!(
                "connections: {n} open when last counted, {ago:.1} s ago (idle ones are shed past {} open: --max-connections)\n",
                ctx.max_connections,
                ago = ago.as_secs_f64()
            )),
        parked = count_line(Stats::get(&s.parked), |n| format!(
            "parked: {n} request(s) announcing a body larger than this process's address space, kept until exit (tiny_http 0.12 cannot let go of them)"
        )),
        pipelined = count_line(
            ctx.connections.parked.load(Ordering::Relaxed) as u64,
            |n| format!(
                "pipelined: {n} request(s) waiting for the one before them on their connection to be done (they hold no worker)"
            )
        ),
        large = count_line(ctx.turns.waiting() as u64, |n| format!(
            "large bodies: {n} waiting for their turn (bodies over {} MiB are read and decoded one at a time)",
            turns::LARGE_BODY >> 20
        )),
        wire = count_line(ctx.wire.waiting() as u64, |n| format!(
            "reading: {n} upload(s) waiting for a share of the {} MiB that bodies hold past their first {} KiB while they are read",
            WIRE_BUDGET >> 20,
            WIRE_FREE / 1024
        )),
        budget = count_line(ctx.budget.waiting() as u64, |n| format!(
            "decoding: {n} upload(s) waiting for a share of the {} MiB that smaller bodies hold while they are decoded",
            DECODE_BUDGET >> 20
        )),
        reset = count_line(
            crate::receiver::accept::RESET_BEFORE_READ.load(Ordering::Relaxed) as u64,
            |n| format!(
                "reset early: {n} connection(s) reset by their client before tiny_http read their address (its thread for each ends; nothing was lost)"
            )
        ),
        closed = count_line(
            ctx.closer.tally.closed.load(Ordering::Relaxed),
            |n| format!(
                "closed: {n} connection(s) tiny_http would have kept open (broke the framing, pipelined too much, stalled mid-body, held the turn for large bodies or a share of the wire budget without coming on, sent a head over {} KiB or over {} KiB while heads held more than {} KiB in all, hung, or were shed)",
                heads::HEAD_LIMIT / 1024,
                heads::HEAD_FLOOR / 1024,
                heads::HEADS_BUDGET / 1024,
            )
        ),
        shed = count_line(ctx.closer.tally.shed.load(Ordering::Relaxed), |n| format!(
            "shed: {n} idle connection(s) shut early while descriptors ran short (fewer than an eighth of the limit free) or more than {} connections were open (--max-connections), those known longest first",
            ctx.max_connections
        )),
        held = count_line(
            ctx.closer.tally.held.load(Ordering::Relaxed),
            |n| format!(
                "held: {n} connection(s) shut here that tiny_http keeps for good, each with a thread and two descriptors (an HTTP/2.0 request line deadlocks one; --restart-held restarts in place to free them)"
            )
        ),
        nudges = count_line(
            ctx.closer.tally.nudges.load(Ordering::Relaxed),
            |n| format!(
                "nudges: {n} connection(s) to ourselves, to free connections left in a tiny_http pool's queue"
            )
        ),
        ignored = count_line(ctx.connections.ignored() as u64, |n| format!(
            "ignored: {n} connection(s) that broke the framing, pipelined too much or were hung up on: nothing more they send is taken, until they are gone"
        )),
        forward = s
            .forward
            .snapshot()
            .iter()
            .map(|f| format!(
                "forward {}: {} ({} forwarded)\n",
                crate::forward::public_text(&f.target, &f.target),
                crate::forward::public_text(&f.target, &f.summary(Timestamp::now())),
                f.forwarded
            ))
            .collect::<String>(),
    );
    let mut out = Outcome::json(200, serde_json::Value::Null);
    out.body = text.into_bytes();
    out.content_type = "text/plain; charset=utf-8";
    out
}

/// A status line shown only while its count is not zero.
fn count_line(n: u64, line: impl FnOnce(u64) -> String) -> String {
    match n {
        0 => String::new(),
        n => line(n) + "\n",
    }
}

/// The status page's mode line: the mode and what the device does.
fn mode_line(shown: &respond::Shown) -> String {
    let mut line = match shown.next {
        Some(next) => format!("{next} for the next upload, then {}", shown.lasting),
        None => shown.lasting.to_string(),
    };
    let upcoming = shown.upcoming();
    if upcoming != Mode::Ok {
        line.push_str(&format!(" ({})", upcoming.consequence()));
    }
    line
}

/// Bytes of bodies the events waiting for the consumer may carry: past
/// them, the next event goes without its body (the screen counts the batch
/// but does not fold its records; the capture has it), unless nothing
/// waits. The screen folds a batch's records as it takes it, so behind a
/// batch of millions of records, events waited holding theirs: 41 batches
/// of 31 MB (2.8 million records each, from four clients) took a fresh
/// dashboard to 743-830 MiB (a hostile-client probe, December 4).
pub const QUEUED_BODIES: u64 = 32 * 1024 * 1024;

/// Body bytes of the events sent, newest last, as running totals: the
/// channel is first in, first out, so the events still waiting are the
/// last `len()` sent.
#[derive(Default)]
struct Queued {
    /// The running total after each of the latest sends (at most the
    /// channel's capacity of them).
    after: VecDeque<u64>,
    /// The running total before the oldest of `after`.
    before: u64,
}

impl Queued {
    /// Body bytes of the last `n` events sent.
    fn last(&self, n: usize) -> u64 {
        let total = self.after.back().copied().unwrap_or(self.before);
        let from = match self.after.len().checked_sub(n + 1) {
            Some(i) => self.after[i],
            None => self.before,
        };
        total - from
    }

    /// Counts an event sent with `bytes` of body, keeping at most `keep`.
    fn sent(&mut self, bytes: u64, keep: usize) {
        let total = self.after.back().copied().unwrap_or(self.before) + bytes;
        self.after.push_back(total);
        while self.after.len() > keep.max(1) {
            self.before = self.after.pop_front().unwrap_or(self.before);
        }
    }
}

/// Sends `event` to the consumer without waiting, its body left out when
/// the events waiting already carry `QUEUED_BODIES`; counted as dropped
/// when the queue is full.
fn send_event(ctx: &Ctx, mut event: RequestEvent) {
    let mut queued = crate::panic::lock(&ctx.queued);
    let waiting = ctx.events.len();
    let mut bytes = event.body.as_ref().map_or(0, |b| b.len() as u64);
    if waiting > 0 && queued.last(waiting) + bytes > QUEUED_BODIES {
        event.body = None;
        bytes = 0;
    }
    match ctx.events.try_send(event) {
        Ok(()) => queued.sent(
            bytes,
            ctx.events.capacity().unwrap_or(crate::run::EVENT_QUEUE),
        ),
        Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => Stats::add(&ctx.stats.dropped_events, 1),
    }
}

/// A request's method as shown: one of HTTP's own (`POST`, `GET`…) is a
/// word of the protocol, not the client's, so it is shown as it is, even
/// with a short token inside it (a token `T` or `OS` turned every upload's
/// method into `POS[token]`, which the dashboard and the headless lines
/// then did not count as an upload); a method of the client's own making
/// may be the token, and is scrubbed as a header's value is (cut at
/// `max` characters).
fn shown_method(auth: &ingest::Auth, method: &Method, max: usize) -> String {
    match method {
        Method::NonStandard(_) => auth.shown(method.as_str(), max),
        known => known.as_str().to_string(),
    }
}

fn make_event(
    ctx: &Ctx,
    request: &Request,
    received: Timestamp,
    outcome: &Outcome,
    started: Instant,
) -> RequestEvent {
    let auth = ctx.auth();
    let (headers, token_matched) = event_headers(&auth, request.headers());
    let batch = outcome.batch.as_ref();
    let scrubbed = |text: &String| auth.scrub(text).into_owned();
    RequestEvent {
        id: ctx.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        received,
        peer: peer(request),
        method: shown_method(&auth, request.method(), EVENT_HEADER_VALUE),
        path: auth.shown(request.url(), EVENT_PATH),
        unit_id: header(request, "unit-id").map(|u| auth.shown(u, EVENT_HEADER_VALUE)),
        status: outcome.status,
        headers,
        token_matched,
        wire_bytes: outcome.wire_bytes,
        body_bytes: batch.map_or(outcome.wire_bytes, |b| b.body_bytes as u64),
        encoding: batch.map(|b| b.encoding.as_str()),
        records: batch.map_or(0, |b| b.records),
        malformed: batch.map_or(0, |b| b.malformed),
        naive_timestamps: batch.map_or(0, |b| b.naive_timestamps),
        newest_ts: batch.and_then(|b| b.newest_ts),
        duplicate_of: outcome.duplicate_of.clone(),
        retry_of: outcome.retry_of.clone(),
        captured: outcome.captured,
        mode: outcome.mode.map(|(m, _)| m.to_string()),
        warning: batch.and_then(|b| b.warning.as_ref().map(scrubbed)),
        error: outcome.error.as_ref().map(scrubbed),
        elapsed: started.elapsed(),
        body: outcome.kept_body.clone(),
    }
}

/// The request's headers as an event keeps them: the credential redacted
/// (and whether it matched), each value cut at `EVENT_HEADER_VALUE`
/// characters, and no more than `EVENT_HEADER_BYTES` in all; what is left
/// out is said in one last line. tiny_http caps no header, and the
/// dashboard keeps the last thousand requests.
fn event_headers(auth: &ingest::Auth, headers: &[Header]) -> (Vec<(String, String)>, Option<bool>) {
    let mut token_matched = None;
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut examined = 0;
    let mut left_out = (0usize, 0usize);
    for h in headers {
        let name = h.field.as_str().as_str();
        let value = if h.field.equiv("authorization") {
            // Always read, for whether it matched.
            let (shown, matched) = redact_authorization(auth, h.value.as_str());
            token_matched = matched;
            Some(shown)
        } else {
            // What showing it looks through (a long value only as far as
            // the shown part and a token after it may be spelt): past the
            // bound, the rest are left out unlooked at.
            examined += name.len() + h.value.as_str().len().min(EVENT_HEADER_EXAMINED / 8);
            (left_out.0 == 0 && examined <= EVENT_HEADER_EXAMINED)
                .then(|| auth.shown(h.value.as_str(), EVENT_HEADER_VALUE))
        };
        let kept_whole =
            value.filter(|v| left_out.0 == 0 && bytes + name.len() + v.len() <= EVENT_HEADER_BYTES);
        let Some(value) = kept_whole else {
            left_out.0 += 1;
            left_out.1 += name.len() + h.value.as_str().len();
            continue;
        };
        bytes += name.len() + value.len();
        kept.push((auth.shown(name, EVENT_HEADER_VALUE), value));
    }
    if left_out.0 > 0 {
        kept.push((
            "…".to_string(),
            format!(
                "{} more headers ({} bytes) not kept",
                left_out.0, left_out.1
            ),
        ));
    }
    (kept, token_matched)
}

/// `token 1a2b3c4d…` in place of the credential, and whether it matched.
pub fn redact_authorization(auth: &ingest::Auth, value: &str) -> (String, Option<bool>) {
    match ingest::split_authorization(value) {
        Some((scheme, credential)) => {
            let matched = match auth {
                ingest::Auth::Open => None,
                _ => Some(auth.matches(credential)),
            };
            // Only the two known schemes are shown: anything else may be a
            // token sent without one.
            let scheme =
                if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
                    scheme
                } else {
                    "[unknown scheme]"
                };
            (
                format!(
                    "{scheme} [redacted, fingerprint {}]",
                    ingest::fingerprint(credential)
                ),
                matched,
            )
        }
        None => {
            let matched = (!matches!(auth, ingest::Auth::Open)).then_some(false);
            (format!("[redacted, {} bytes]", value.len()), matched)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_keeps_a_few_kib_of_headers_and_says_what_it_left_out() {
        let mut headers: Vec<Header> = (0..200)
            .map(|i| Header::from_bytes(format!("x-pad-{i}"), "v".repeat(8 * 1024)).unwrap())
            .collect();
        headers.insert(
            0,
            Header::from_bytes("authorization", "token secret-1").unwrap(),
        );
        let (kept, matched) = event_headers(&ingest::Auth::tokens(&["secret-1"]), &headers);
        assert_eq!(matched, Some(true));
        let bytes: usize = kept.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= EVENT_HEADER_BYTES + 100, "{bytes}");
        assert!(kept[0].1.contains("[redacted"), "{:?}", kept[0]);
        assert!(!kept.iter().any(|(_, v)| v.contains("secret-1")));
        let (name, last) = kept.last().unwrap();
        assert_eq!(name, "…");
        assert!(
            last.ends_with("more headers (1622400 bytes) not kept")
                || last.contains("more headers"),
            "{last}"
        );
        assert!(kept[1].1.ends_with('…') && kept[1].1.chars().count() == EVENT_HEADER_VALUE + 1);
    }

    /// The bytes of the last n events sent, over the running totals kept
    /// for at most the channel's capacity of them.
    #[test]
    fn queued_bodies_are_the_last_sent() {
        let mut q = Queued::default();
        assert_eq!(q.last(0), 0);
        assert_eq!(q.last(3), 0);
        for bytes in [10, 0, 5, 100] {
            q.sent(bytes, 3);
        }
        // Kept: 0, 5, 100 (the 10 fell out of the window of 3).
        assert_eq!(q.last(0), 0);
        assert_eq!(q.last(1), 100);
        assert_eq!(q.last(2), 105);
        assert_eq!(q.last(3), 105);
        assert_eq!(q.last(10), 105);
        q.sent(7, 3);
        assert_eq!((q.last(1), q.last(3)), (7, 112));
    }

    /// A token across the cut of a shown path or header value is replaced
    /// whole, so no part of it is shown (the text may then run past the
    /// cut by what `[token]` adds); one that begins past the cut is cut
    /// off with the rest.
    #[test]
    fn a_token_across_the_cut_is_not_shown_in_part() {
        let auth = ingest::Auth::tokens(&["s3cret-token"]);
        for before in [EVENT_PATH - 12, EVENT_PATH - 5, EVENT_PATH - 1, EVENT_PATH] {
            let text = format!("/{}s3cret-token/x", "p".repeat(before - 1));
            let path = auth.shown(&text, EVENT_PATH);
            assert!(!path.contains("s3c"), "{before}: {path}");
            assert!(path.chars().count() <= EVENT_PATH + 8, "{before}: {path}");
            assert!(path.ends_with('…'), "{before}: {path}");
        }
        assert_eq!(auth.shown("/?t=s3cret-token", 10), "/?t=[token]…");
        // Tokens in a row: each replaced whole, none in part at the cut,
        // however much shorter `[token]` is than what it replaces.
        let many = "s3cret-token".repeat(3);
        assert_eq!(auth.shown(&many, 10), "[token]…");
        let path = format!("/{}", "s3cret-token".repeat(200));
        let long = auth.shown(&path, EVENT_PATH);
        assert!(
            !long.contains("s3c") && long.ends_with("[token]…"),
            "{long}"
        );
        assert_eq!(auth.shown("short", 10), "short");
        assert_eq!(auth.shown("0123456789abc", 10), "0123456789…");
    }

    /// A token sent percent-encoded is found in the decoded path, which is
    /// then shown; a path with no token in it is shown as sent.
    #[test]
    fn a_percent_encoded_token_is_found() {
        let auth = ingest::Auth::tokens(&["a+b/c=d"]);
        assert_eq!(
            auth.shown("/x?token=a%2Bb%2Fc%3Dd&y=%20", 100),
            "/x?token=[token]&y= "
        );
        assert_eq!(auth.shown("/x?y=%20", 100), "/x?y=%20");
        // In a header value, quoted in an error.
        assert_eq!(
            auth.clipped("sid=a%2Bb%2Fc%3Dd; x=1", 40),
            "sid=[token]; x=1"
        );
        for (path, shown) in [
            // Encoded twice, three and four times over (`%25` is `%`): the
            // decoding that shows it is what is shown.
            ("/x?t=a%252Bb%252Fc%253Dd", "/x?t=[token]"),
            ("/x?t=a%25252Bb%25252Fc%25253Dd", "/x?t=[token]"),
            ("/x?t=a%2525252Bb%2525252Fc%2525253Dd", "/x?t=[token]"),
            // Found as it is too: it leads to no decoding on its own.
            ("/x?t=a+b/c=d&y=%20", "/x?t=[token]&y=%20"),
            (
                "/x?t=a+b/c=d&u=a%252Bb%252Fc%253Dd",
                "/x?t=[token]&u=[token]",
            ),
        ] {
            assert_eq!(auth.shown(path, 100), shown, "{path}");
        }
    }

    /// A token in base64 whose `+` and `/` were percent-encoded (a query
    /// string), and one that looks like base64 itself, encoded twice.
    #[test]
    fn a_token_in_base64_under_percent_encoding_is_found() {
        use base64::Engine as _;
        let token = "pr0b?e~t0ken1234567890";
        let auth = ingest::Auth::tokens(&[token]);
        let packed = base64::engine::general_purpose::STANDARD.encode(format!("user:{token}"));
        assert!(packed.contains('+') || packed.contains('/'), "{packed}");
        let query = packed.replace('+', "%2B").replace('/', "%2F");
        let shown = auth.shown(&format!("/?auth={query}"), 200);
        assert_eq!(shown, "/?auth=[token]");
        assert_eq!(auth.scrub(&format!("agent {query}")), "agent [token]");
        let keyish = ingest::Auth::tokens(&["++8Ba5oRIjP/ECAwQFBg"]);
        assert_eq!(
            keyish.shown("/x?t=%252B%252B8Ba5oRIjP%252FECAwQFBg", 100),
            "/x?t=[token]"
        );
        // Base64 is not searched for a token under 8 bytes: it would be
        // found in too much (here `ab` in the reading of `eHhhYg`).
        let short = ingest::Auth::tokens(&["ab"]);
        assert_eq!(short.shown("id eHhhYg", 100), "id eHhhYg");
    }

    /// Headers are looked through for a token spelt otherwise up to a
    /// bound: values that each show short (`[token]` for 4 KiB of base64)
    /// cannot make a request's event look through a whole head. The
    /// authorization header is read wherever it stands.
    #[test]
    fn headers_past_the_bound_are_left_out_unlooked_at() {
        use base64::Engine as _;
        let token = "sekrit-token-4242";
        let auth = ingest::Auth::tokens(&[token]);
        let packed = base64::engine::general_purpose::STANDARD
            .encode(format!("{}{token}", "x".repeat(3000)));
        let mut headers: Vec<Header> = (0..50)
            .map(|i| Header::from_bytes(format!("x-{i}"), packed.as_bytes()).unwrap())
            .collect();
        headers.push(Header::from_bytes("authorization", format!("token {token}")).unwrap());
        let (kept, matched) = event_headers(&auth, &headers);
        assert_eq!(matched, Some(true));
        let (shown, more) = kept.split_at(kept.len() - 1);
        assert!(
            (12..=16).contains(&shown.len()) && shown.iter().all(|(_, v)| v == "[token]"),
            "{shown:?}"
        );
        assert_eq!(more[0].0, "…");
        assert!(
            more[0]
                .1
                .starts_with(&format!("{} more headers", 51 - shown.len())),
            "{more:?}"
        );
    }

    /// A long value is looked at only as far as it can spell what is
    /// shown and a token after it; a token spelt across that end, decoded
    /// in part, is never shown in part. Here a token encoded four times
    /// over leads to the decoding, and a second one, after a dozen emoji
    /// encoded as deep (36 characters each), crosses the end.
    #[test]
    fn a_token_decoded_in_part_at_the_end_of_what_is_looked_at_is_not_shown() {
        let token = "Zq7-partial-secret-01";
        let auth = ingest::Auth::tokens(&[token]);
        let four_times = |text: &str| {
            let mut t: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
            for _ in 0..3 {
                t = t.replace('%', "%25");
            }
            t
        };
        let value = format!(
            "{}{}{}",
            four_times(token),
            four_times(&"\u{1F600}".repeat(12)),
            four_times(token)
        );
        for max in [10, 20, 40, 60] {
            let shown = auth.shown(&value, max);
            for part in token.as_bytes().windows(4) {
                let part = std::str::from_utf8(part).unwrap();
                assert!(!shown.contains(part), "{max}: {part} in {shown}");
            }
        }
    }

    /// A token inside base64 (`Basic` credentials in a header of a proxy,
    /// a key packed with a user name) is taken out with the whole run, at
    /// whatever place in the run it begins, in either alphabet; base64
    /// that holds no token is shown as sent.
    #[test]
    fn a_token_inside_base64_is_found() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let token = "s3cret-token?>>";
        let auth = ingest::Auth::tokens(&[token]);
        for user in ["", "u", "us", "use", "user:"] {
            for encoded in [
                STANDARD.encode(format!("{user}{token}")),
                URL_SAFE_NO_PAD.encode(format!("{user}{token}!")),
            ] {
                let value = format!("Basic {encoded}, realm=x");
                let shown = auth.shown(&value, 200);
                assert_eq!(shown, "Basic [token], realm=x", "{value}");
                assert_eq!(auth.scrub(&value), shown, "{value}");
            }
        }
        let other = format!("Basic {}", STANDARD.encode("user:not-the-token-at-all"));
        assert_eq!(auth.shown(&other, 200), other);
        assert_eq!(ingest::Auth::Open.shown(&other, 200), other);
    }

    #[test]
    fn a_connection_the_closer_claims_is_never_served_and_a_busy_one_is_not_claimed() {
        let c = Connections::default();
        let busy: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let quiet: SocketAddr = "10.0.0.2:4001".parse().unwrap();
        assert_eq!(c.admit(Some(busy), true), (Admit::Serve, false));
        assert!(!c.claim(busy), "a request of it is in hand");
        c.finish(Some(busy), 0, true);
        assert!(c.claim(busy), "done with: it may be shut");
        // What tiny_http still reads from it after the claim is ignored.
        assert_eq!(c.admit(Some(busy), true), (Admit::Ignore, false));
        c.finish(Some(busy), 0, true);
        assert!(c.claim(quiet), "never seen: it may be shut");
        assert_eq!(c.admit(Some(quiet), true), (Admit::Ignore, false));
        c.finish(Some(quiet), 0, true);
        // However late: claimed until the closer says its socket is gone.
        assert_eq!(c.admit(Some(quiet), true), (Admit::Ignore, false));
        c.finish(Some(quiet), 0, true);
        c.unclaim(quiet);
        // The address is a new connection's now.
        assert_eq!(c.admit(Some(quiet), true), (Admit::Serve, false));
    }

    /// Request number `order` of `peer`, as a pump hands it out.
    fn work_of(peer: SocketAddr, order: u64, slot: &Arc<accept::Slot>) -> Work {
        Work {
            request: tiny_http::TestRequest::new()
                .with_remote_addr(peer)
                .with_path(&format!("/{order}"))
                .into(),
            from: slot.clone(),
            serve: true,
            order,
        }
    }

    /// A connection's requests take their turns by number: one whose turn
    /// has not come is parked, holding no worker, and handed back by the
    /// end of the turn before it, in order, whatever order they were
    /// parked in; another connection's turns never hand it out. Not
    /// numbered, or of no peer: its turn at once.
    #[test]
    fn requests_of_one_connection_take_their_turns_by_number() {
        let c = Connections::default();
        let slot = accept::Slot::unpumped();
        let (peer, other): (SocketAddr, SocketAddr) = (
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:4001".parse().unwrap(),
        );
        for p in [peer, other] {
            for _ in 0..4 {
                assert_eq!(c.admit(Some(p), true), (Admit::Serve, false));
            }
        }
        let numbers: Vec<u64> = (0..4).map(|_| c.number(Some(peer))).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        for _ in 0..4 {
            c.number(Some(other));
        }
        let order = |w: Option<Work>| w.map(|w| w.order);
        let first = c.take_turn(work_of(peer, 1, &slot));
        assert_eq!(order(first), Some(1), "the first has its turn");
        // The others come while it is served, the fourth first.
        for n in [4, 2, 3] {
            assert!(c.take_turn(work_of(peer, n, &slot)).is_none(), "{n} parked");
        }
        assert_eq!(c.parked.load(Ordering::SeqCst), 3);
        // The other connection's turns hand out none of them.
        assert_eq!(order(c.take_turn(work_of(other, 1, &slot))), Some(1));
        assert!(c.take_turn(work_of(other, 2, &slot)).is_none());
        assert_eq!(order(c.end_turn(Some(other), 1)), Some(2));
        assert_eq!(order(c.end_turn(Some(other), 2)), None);
        assert_eq!(c.parked.load(Ordering::SeqCst), 3);
        // Each turn's end hands over the next, in order.
        assert_eq!(order(c.end_turn(Some(peer), 1)), Some(2));
        assert_eq!(order(c.end_turn(Some(peer), 2)), Some(3));
        assert_eq!(order(c.end_turn(Some(peer), 3)), Some(4));
        assert_eq!(order(c.end_turn(Some(peer), 4)), None);
        assert_eq!(c.parked.load(Ordering::SeqCst), 0);
        assert_eq!(c.lock()[&peer].turns_done, 4);
        // The next one comes after its turn came: served at once.
        c.admit(Some(peer), true);
        assert_eq!(c.number(Some(peer)), 5);
        assert_eq!(order(c.take_turn(work_of(peer, 5, &slot))), Some(5));
        // Not numbered, or of no known connection: at once.
        assert_eq!(order(c.take_turn(work_of(peer, 0, &slot))), Some(0));
        let unknown = "127.0.0.1:4002".parse().unwrap();
        assert_eq!(order(c.take_turn(work_of(unknown, 7, &slot))), Some(7));
        assert_eq!(order(c.end_turn(None, 7)), None);
        assert_eq!(order(c.end_turn(Some(peer), 5)), None);
        // A turn's end from an entry since forgotten (a number not next
        // here) is not counted: the one behind the request in hand here
        // still waits for it.
        for n in 6..=8 {
            c.admit(Some(peer), true);
            assert_eq!(c.number(Some(peer)), n);
        }
        assert_eq!(order(c.take_turn(work_of(peer, 6, &slot))), Some(6));
        assert_eq!(order(c.end_turn(Some(peer), 9)), None);
        assert!(
            c.take_turn(work_of(peer, 7, &slot)).is_none(),
            "7 waits for 6"
        );
        assert_eq!(order(c.end_turn(Some(peer), 6)), Some(7));
        assert_eq!(order(c.end_turn(Some(peer), 7)), None);
        assert_eq!(order(c.take_turn(work_of(peer, 8, &slot))), Some(8));
    }

    /// An ignored connection's address is forgotten once no connection
    /// from it is open and it has been quiet since the time given: a new
    /// connection from the same client port is served. Never while one is
    /// open from it, a request of it is in hand, or it was active since.
    #[test]
    fn a_gone_connection_is_forgotten_and_its_address_served_again() {
        let c = Connections::default();
        let peer: SocketAddr = "10.0.0.3:4000".parse().unwrap();
        let busy: SocketAddr = "10.0.0.3:4001".parse().unwrap();
        let late: SocketAddr = "10.0.0.3:4002".parse().unwrap();
        for p in [peer, busy] {
            assert_eq!(c.admit(Some(p), false), (Admit::Serve, true));
        }
        c.finish(Some(peer), 0, true);
        assert_eq!(c.admit(Some(late), false), (Admit::Serve, true));
        c.finish(Some(late), 0, true);
        assert_eq!(c.ignored(), 3);
        // `peer` is open at the first sweep, gone at the next two; `late`
        // is gone at all three, but sends one more request after the
        // first (tiny_http had read it): still ignored, and forgotten a
        // sweep later.
        let sweep =
            |open: &[SocketAddr]| c.forget_gone(&open.iter().copied().collect(), Instant::now());
        sweep(&[peer]);
        assert_eq!(c.admit(Some(late), true), (Admit::Ignore, false), "late");
        c.finish(Some(late), 0, true);
        sweep(&[]);
        assert_eq!(c.ignored(), 3);
        sweep(&[]);
        assert_eq!(c.admit(Some(peer), true), (Admit::Serve, false), "gone");
        assert_eq!(c.admit(Some(late), true), (Admit::Serve, false), "gone");
        assert_eq!(c.admit(Some(busy), true), (Admit::Ignore, false), "in hand");
        assert_eq!(c.ignored(), 1);
    }

    /// After a read of the table that named every connection, an ignored
    /// address with none open is forgotten at once: not while one is open
    /// from it, a request of it is in hand, one came since the read began,
    /// or a turn of it has not ended (nor, for that, when a shut
    /// connection is found gone).
    #[test]
    fn an_absent_address_is_forgotten_at_one_whole_read() {
        let c = Connections::default();
        let [gone, open, busy, late]: [SocketAddr; 4] = [
            "10.0.0.4:4000",
            "10.0.0.4:4001",
            "10.0.0.4:4002",
            "10.0.0.4:4003",
        ]
        .map(|a| a.parse().unwrap());
        for p in [gone, open, busy, late] {
            assert_eq!(c.admit(Some(p), false), (Admit::Serve, true));
        }
        for p in [gone, open, late] {
            c.finish(Some(p), 0, true);
        }
        let since = Instant::now();
        // Handed over by tiny_http after the read began (read of it before).
        assert_eq!(c.admit(Some(late), true), (Admit::Ignore, false));
        c.finish(Some(late), 0, true);
        c.forget_absent(&[open].into_iter().collect(), since);
        assert_eq!(c.admit(Some(gone), true), (Admit::Serve, false), "gone");
        assert_eq!(c.admit(Some(open), true), (Admit::Ignore, false), "open");
        assert_eq!(c.admit(Some(busy), true), (Admit::Ignore, false), "in hand");
        assert_eq!(c.admit(Some(late), true), (Admit::Ignore, false), "since");
        // A request served and done with whose turn has not ended: its
        // entry stays until the end, which counts there.
        let turn: SocketAddr = "10.0.0.4:4004".parse().unwrap();
        assert_eq!(c.admit(Some(turn), true), (Admit::Serve, false));
        assert_eq!(c.number(Some(turn)), 1);
        c.finish(Some(turn), 0, true);
        c.forget_absent(&HashSet::new(), Instant::now());
        assert_eq!(c.number(Some(turn)), 2, "its entry was forgotten");
        c.end_turn(Some(turn), 1);
        c.end_turn(Some(turn), 2);
        c.forget_absent(&HashSet::new(), Instant::now());
        assert_eq!(c.number(Some(turn)), 1, "its entry was kept");
        // The same for a shut connection found gone.
        let shut: SocketAddr = "10.0.0.4:4005".parse().unwrap();
        assert_eq!(c.admit(Some(shut), true), (Admit::Serve, false));
        assert_eq!(c.number(Some(shut)), 1);
        c.finish(Some(shut), 0, true);
        c.gone(shut);
        assert_eq!(c.number(Some(shut)), 2, "gone before its turn ended");
        c.end_turn(Some(shut), 1);
        c.end_turn(Some(shut), 2);
        c.gone(shut);
        assert_eq!(c.number(Some(shut)), 1, "gone");
    }

    #[test]
    fn a_pipelining_or_rule_breaking_connection_is_ignored() {
        let c = Connections::default();
        let peer: Option<SocketAddr> = Some("10.0.0.1:4000".parse().unwrap());
        let other: Option<SocketAddr> = Some("10.0.0.1:4001".parse().unwrap());
        for _ in 0..PIPELINE_LIMIT {
            assert_eq!(c.admit(peer, true), (Admit::Serve, false));
        }
        assert_eq!(c.admit(peer, true), (Admit::Ignore, true), "closed");
        for n in 0..=PIPELINE_LIMIT {
            c.finish(peer, 0, n < PIPELINE_LIMIT);
        }
        assert_eq!(
            c.admit(peer, true),
            (Admit::Ignore, false),
            "stays ignored, closed once"
        );
        assert_eq!(
            c.admit(other, false),
            (Admit::Serve, true),
            "a broken request is answered, and its connection closed"
        );
        c.finish(other, 0, true);
        assert_eq!(
            c.admit(other, true),
            (Admit::Ignore, false),
            "what follows it is not"
        );
        assert_eq!(c.admit(None, true), (Admit::Serve, false));
    }

    /// The limit counts requests whose answer has not started going out:
    /// a client that read all eight answers may send eight more at once,
    /// though the receiver is not yet done with the last of the first
    /// (a pipelining client was ignored for it, and a device that then
    /// reused its port got no answer).
    #[test]
    fn a_client_that_read_every_answer_may_pipeline_the_limit_again() {
        let c = Connections::default();
        let addr: SocketAddr = "10.0.0.1:4002".parse().unwrap();
        let peer = Some(addr);
        for round in 0..3 {
            for _ in 0..PIPELINE_LIMIT {
                assert_eq!(c.admit(peer, true), (Admit::Serve, false), "round {round}");
            }
            // Every answer is going out; none is done with yet.
            for _ in 0..PIPELINE_LIMIT {
                c.answering(peer);
            }
        }
        assert_eq!(c.lock()[&addr].outstanding, 3 * PIPELINE_LIMIT);
        // Requests done with that got no answer (a hang-up, a panic) are
        // counted off too.
        for _ in 0..PIPELINE_LIMIT {
            assert_eq!(c.admit(peer, true), (Admit::Serve, false));
        }
        for _ in 0..PIPELINE_LIMIT {
            c.finish(peer, 0, true);
        }
        // One more than the limit unanswered is pipelining too much.
        for _ in 0..PIPELINE_LIMIT {
            assert_eq!(c.admit(peer, true), (Admit::Serve, false));
        }
        assert_eq!(c.admit(peer, true), (Admit::Ignore, true));
    }

    /// What the closer is told: a connection with a request in hand is
    /// busy, with the body being read if one is (its number, and how
    /// long); once done, quiet since then; never
    /// seen, unseen. What belongs to one request is never touched by
    /// another's: a pipelined request done with after the next began
    /// leaves the next one's body be.
    #[test]
    fn a_connection_is_busy_while_a_request_is_in_hand() {
        let c = Connections::default();
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(c.activity(peer, false, false), Activity::Unseen);
        c.admit(Some(peer), true);
        c.admit(Some(peer), true);
        let first = c.begin(Some(peer));
        let body = |done| match c.activity(peer, false, false) {
            Activity::Busy { done: d, body } if d == done => body,
            other => panic!("not busy after {done}: {other:?}"),
        };
        assert_eq!(body(0), None);
        // A body being read says which request's it is, and for how long
        // it has been read.
        c.reading(Some(peer), first, Holds::default());
        assert!(matches!(body(0), Some(Body { seq, .. }) if seq == first));
        // Another request's cut does not touch it.
        assert!(!c.cut(peer, first + 1, Some(Cut::Slow)));
        assert!(matches!(body(0), Some(Body { seq, .. }) if seq == first));
        // What it holds is wanted only while another waits for that.
        let share = Holds {
            turn: false,
            share: true,
        };
        c.took(Some(peer), first, share);
        let wanted = |turn_waited, share_waited| match c.activity(peer, turn_waited, share_waited) {
            Activity::Busy { body: Some(b), .. } => (b.holds, b.wanted),
            other => panic!("no body: {other:?}"),
        };
        assert_eq!(wanted(true, false), (true, false));
        assert_eq!(wanted(false, true), (true, true));
        c.took(
            Some(peer),
            first,
            Holds {
                turn: true,
                share: true,
            },
        );
        assert_eq!(wanted(true, false), (true, true));
        c.took(Some(peer), first + 1, Holds::default());
        assert_eq!(wanted(false, true), (true, true), "another request's hold");
        assert!(c.cut(peer, first, Some(Cut::Slow)));
        let held = Holds {
            turn: true,
            share: true,
        };
        assert_eq!(
            c.read_done(Some(peer), first),
            Some((Cut::Slow, held)),
            "told once"
        );
        assert_eq!(body(0), None, "read: no longer timed");
        assert_eq!(c.read_done(Some(peer), first), None);
        // The next (pipelined) request begins and reads its body before
        // the first is done with: the first's end leaves it be.
        let second = c.begin(Some(peer));
        c.reading(Some(peer), second, Holds::default());
        c.finish(Some(peer), first, true);
        assert!(matches!(body(1), Some(Body { seq, .. }) if seq == second));
        c.finish(Some(peer), second, true);
        assert!(
            matches!(c.activity(peer, false, false), Activity::Quiet { ago, done: 2 } if ago < Duration::from_secs(60)),
            "{:?}",
            c.activity(peer, false, false)
        );
    }

    /// Holding a share of the wire budget; and that and the turn.
    const SHARE: Holds = Holds {
        turn: false,
        share: true,
    };
    const BOTH: Holds = Holds {
        turn: true,
        share: true,
    };

    /// A request of `peer` taken and reading its body, holding `holds`:
    /// its number.
    fn reading_body(c: &Connections, peer: SocketAddr, holds: Holds) -> u64 {
        c.admit(Some(peer), true);
        let seq = c.begin(Some(peer));
        c.reading(Some(peer), seq, holds);
        seq
    }

    /// A lapse is cut only while the body still holds what another waited
    /// for, and its refusal names what it held when cut. The closer's look
    /// and its cut are apart: between them the body may let go of its
    /// share to wait for the turn (holding nothing, it cannot lapse), or
    /// take the turn after the cut (the cut was for its share alone).
    #[test]
    fn a_lapse_is_cut_for_what_the_body_held_then() {
        let c = Connections::default();
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let first = reading_body(&c, peer, SHARE);
        // It lets go of its share to wait for the turn: not cut.
        c.took(Some(peer), first, Holds::default());
        assert!(!c.cut(peer, first, Some(Cut::Lapsed)));
        assert_eq!(c.read_done(Some(peer), first), None);
        c.finish(Some(peer), first, true);
        // Cut while it held its share, then it takes the turn: the cut
        // says the share.
        let second = reading_body(&c, peer, SHARE);
        assert!(c.cut(peer, second, Some(Cut::Lapsed)));
        c.took(Some(peer), second, BOTH);
        assert_eq!(c.read_done(Some(peer), second), Some((Cut::Lapsed, SHARE)));
        // Another request's body is never cut.
        assert!(!c.cut(peer, second + 1, Some(Cut::Slow)));
    }

    /// Its reading side shut at the first cut, a body is found still over
    /// at the closer's next look: it is not cut again, which would give it
    /// a new label, or, after a failed shutdown, undo the first cut.
    #[test]
    fn a_body_is_cut_once() {
        let c = Connections::default();
        let peer: SocketAddr = "10.0.0.3:4000".parse().unwrap();
        let seq = reading_body(&c, peer, SHARE);
        assert!(c.cut(peer, seq, Some(Cut::Lapsed)));
        c.took(Some(peer), seq, BOTH);
        assert!(!c.cut(peer, seq, Some(Cut::Lapsed)));
        assert!(!c.cut(peer, seq, Some(Cut::Slow)));
        assert_eq!(c.read_done(Some(peer), seq), Some((Cut::Lapsed, SHARE)));
        // A cut undone (its shutdown failed) may be made again.
        let next = reading_body(&c, peer, SHARE);
        assert!(c.cut(peer, next, Some(Cut::Slow)));
        assert!(c.cut(peer, next, None));
        assert!(c.cut(peer, next, Some(Cut::Slow)));
        assert_eq!(c.read_done(Some(peer), next), Some((Cut::Slow, SHARE)));
    }
}

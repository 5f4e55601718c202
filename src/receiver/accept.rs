//! The accept side, supervised: several tiny_http servers on clones of one
//! listening socket, each with a pump thread handing its requests to the
//! shared workers.
//!
//! tiny_http 0.12 ends a server's accept thread for good on the first
//! accept error, and the listener's receive timeout (which accepted
//! connections inherit: see `listener`) makes an idle `accept` fail every
//! read timeout. Running out of descriptors ends it too, either through
//! `accept` or through a panic on its clone of the new socket (upstream
//! issue tiny-http#195). So the supervisor keeps `ACCEPTING` servers whose
//! accept thread lives, starting a fresh one whenever one ends (retrying
//! while descriptors are short: new connections wait in the kernel's
//! backlog meanwhile), and a server whose accept thread ended keeps being
//! drained until its connections are gone. Several servers also spread a
//! burst of new connections over several of tiny_http's connection pools,
//! each of which leaves a burst larger than its idle threads unserved
//! (its idle count lags the wake-ups).
//!
//! ```text
//!   listener ──clone──▶ server 1 ── pump ──┐
//!            ──clone──▶ server 2 ── pump ──┼──▶ work channel ──▶ workers
//!            ──clone──▶ …        ── pump ──┘
//!   supervisor: replaces servers whose accept thread ended; retires them
//!   once drained
//! ```

use crate::panic::lock;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use tiny_http::Request;

/// Servers with a live accept thread the supervisor keeps, at most: each
/// holds a clone of the listener and six threads, so fewer under a low
/// descriptor limit (one per 64 descriptors).
///
/// Four, not more: a burst strands connections in a pool's queue however
/// many pools there are (its woken threads have not run yet while its
/// accept thread queues the rest; see `closer`), and a nudge frees a
/// stranded connection only when it lands in that pool. Nudges are spread
/// over the servers in turn, so each extra server divides their effect.
/// Measured with 1 000 stalled connections and two busy loops beside the
/// receiver: the nudges took 3.2–3.3 s to free the stranded ones with 32
/// servers, 0.65–1.35 s with 8, 0.83–1.08 s with 4; one or two servers
/// had one slow device in four runs each.
pub const ACCEPTING: usize = 4;

/// Servers to keep accepting under the descriptor limit in force.
fn accepting() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 64)
        .unwrap_or(ACCEPTING)
        .clamp(1, ACCEPTING)
}
/// How often a pump looks up from its queue (to stop, or to retire).
const PUMP_TICK: Duration = Duration::from_millis(200);
/// How often the supervisor checks its servers and retries failed starts.
const SUPERVISE_TICK: Duration = Duration::from_millis(500);
/// Read timeouts a server whose accept ended stays quiet before it is
/// retired, when it cannot be told that its threads are gone (see
/// `ServerName`; no /proc, or naming refused). A connection it still
/// serves ends after one read timeout of silence, but an upload trickling
/// in (each byte restarts the timeout) can take longer; tiny_http reads
/// bodies of up to 1 KiB itself before handing the request over, so such
/// a request would find its server gone. Several timeouts leave room for
/// it; what takes longer is hostile.
const RETIRE_AFTER_TIMEOUTS: u32 = 4;
/// Added to that wait.
const RETIRE_SLACK: Duration = Duration::from_secs(2);

/// The file where tiny_http 0.12's accept thread unwraps `try_clone` of
/// each new socket. Out of descriptors, that thread panics without
/// telling `recv`.
const ACCEPT_PANIC_FILE: &str = "refined_tcp_stream.rs";

/// The file of tiny_http 0.12's connection pool. It starts a thread per
/// connection with `thread::spawn`, which panics when the system refuses
/// a thread (a thread limit: systemd's `TasksMax`, `ulimit -u`, a cgroup's
/// `pids.max`), on the accept thread and while holding the pool's lock:
/// that accept thread is gone, as `ACCEPT_PANIC_FILE`'s, and each thread
/// of that pool panics on the poisoned lock once its connection is done.
/// The refusal's panic is std's own (its location is in std), so it is
/// told by its message and its thread: tiny_http's threads have no name,
/// and every thread of ours has one.
/// A hostile-client probe found it (December 5): 5 500 connections without
/// a token under a limit of 4 915 threads printed 4 881 panics with their
/// backtraces (5 MB on stderr), and the receiver never accepted again.
const POOL_PANIC_FILE: &str = "task_pool.rs";

/// The supervisor's thread, where `Server::from_listener` starts the
/// accept thread with `thread::spawn`: refused a thread, it panics there
/// (caught: see `start_server`).
const SUPERVISOR: &str = "accept-supervisor";

/// What `thread::spawn` panics with when the system refuses a thread.
const SPAWN_FAILED: &str = "failed to spawn thread";

/// How the threads of each tiny_http server are named: this and a number
/// of five digits (a thread's name on Linux is 15 bytes at most).
const SERVER_NAME: &str = "tiny-http-";
/// Servers named so far, for the next one's number.
static SERVERS_NAMED: AtomicUsize = AtomicUsize::new(0);

/// The calling thread renamed, for as long as this lives, to a name of its
/// own for the next tiny_http server. tiny_http names none of its threads,
/// and Linux gives a new thread its creator's name: the accept thread
/// started meanwhile takes this name, and every pool thread it starts
/// takes it from there. A server whose accept thread has ended can then be
/// told done once no thread of the process has its name: nothing is left
/// that could hand over another of its requests (see `mark_threadless`).
/// `top -H` shows the names too.
struct ServerName {
    name: String,
    before: std::ffi::CString,
}

impl ServerName {
    /// None where the names cannot be read or set: the server is then
    /// retired by the time rule (`RETIRE_AFTER_TIMEOUTS`).
    fn take() -> Option<ServerName> {
        let n = SERVERS_NAMED.fetch_add(1, Ordering::Relaxed) % 100_000;
        let name = format!("{SERVER_NAME}{n:05}");
        let before = rustix::thread::name().ok()?;
        rustix::thread::set_name(&std::ffi::CString::new(name.clone()).ok()?).ok()?;
        Some(ServerName { name, before })
    }
}

impl Drop for ServerName {
    fn drop(&mut self) {
        let _ = rustix::thread::set_name(&self.before);
    }
}

/// A request taken from one of the servers, with the server it came from.
pub struct Work {
    pub request: Request,
    pub from: Arc<Slot>,
    /// What `on_work` decided, in the order the connection sent its
    /// requests (one server's pump sees them in that order).
    pub serve: bool,
    /// Its number among its connection's requests to be served, from 1
    /// (0: none), given in that order (see `Handout::Serve`).
    pub order: u64,
}

impl Slot {
    /// A request of this server was handled (it may retire once idle).
    pub fn finish(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// A slot of a server on 127.0.0.1 that no pump drains, for the
    /// workers' unit tests to hand requests of.
    #[cfg(test)]
    pub fn unpumped() -> Arc<Slot> {
        Arc::new(Slot {
            server: Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a server")),
            listener_fd: -1,
            accept_ended: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_request: Mutex::new(Instant::now()),
            retired: AtomicBool::new(false),
            name: None,
            threadless: AtomicBool::new(false),
        })
    }
}

/// One tiny_http server and what the supervisor knows of it.
pub struct Slot {
    server: Arc<tiny_http::Server>,
    /// The number of its clone of the listener, which its accept thread
    /// owns: closed when that thread ends, by an error or a panic.
    listener_fd: i32,
    /// Its accept thread reported an error and ended.
    accept_ended: AtomicBool,
    /// Requests handed to the workers and not yet done.
    in_flight: AtomicUsize,
    last_request: Mutex<Instant>,
    /// The pump has stopped: nothing more comes from this server.
    retired: AtomicBool,
    /// The name its threads have (see `ServerName`).
    name: Option<String>,
    /// Its accept thread had ended and no thread had its name: nothing
    /// more can come from it but what its queue holds.
    threadless: AtomicBool,
}

/// What the accept side tells the rest of the receiver.
pub enum Notice {
    /// Accepting connections failed; the supervisor is on it.
    AcceptFailed(String),
}

/// Shared by the supervisor and the pumps.
struct Side {
    listener: TcpListener,
    /// What `/proc/self/fd/N` names for the listening socket (every clone
    /// names the same: `socket:[INODE]`); None where /proc cannot say.
    listener_target: Option<std::path::PathBuf>,
    /// Servers kept accepting (see `accepting`).
    accepting: usize,
    read_timeout: Duration,
    work: Sender<Work>,
    stopping: Arc<AtomicBool>,
    slots: Mutex<Vec<(Arc<Slot>, JoinHandle<()>)>>,
    /// Wakes the supervisor (an accept thread ended, or panicked).
    wake: Sender<()>,
    /// Accept threads that died by panic, not yet retired: they count as
    /// accepting but are not.
    zombies: AtomicUsize,
    notices: Sender<Notice>,
    /// Called when work is handed out: what becomes of it.
    on_work: Box<dyn Fn(&Request) -> Handout + Send + Sync>,
}

/// What becomes of a request taken from a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handout {
    /// To a worker, to be served, with its number among its connection's
    /// requests to be served (0: none): the worker takes its turn by it.
    Serve(u64),
    /// To a worker, to be let go of unanswered (its body may need a
    /// drain).
    Ignore,
    /// Let go of unanswered here and now: nothing of it is left to read
    /// (tiny_http read its body with its head, or never drains it), so it
    /// costs neither a worker nor a wait. A connection pipelining a flood
    /// is dropped as fast as tiny_http parses it.
    LetGo,
}

/// Every accept side in this process (a panic cannot tell which server's
/// accept thread it came from); gone ones are pruned.
static SIDES: Mutex<Vec<Weak<Side>>> = Mutex::new(Vec::new());

/// The running accept side; `stop` ends it.
pub struct Acceptors {
    side: Arc<Side>,
    supervisor: JoinHandle<()>,
    stop: Sender<()>,
    pub addr: SocketAddr,
}

impl Acceptors {
    /// Starts `ACCEPTING` servers on clones of `listener` and their
    /// supervisor. Requests go to `work`; `on_work` is called for each, in
    /// order, and says what becomes of it.
    pub fn start(
        listener: TcpListener,
        read_timeout: Duration,
        work: Sender<Work>,
        stopping: Arc<AtomicBool>,
        notices: Sender<Notice>,
        on_work: Box<dyn Fn(&Request) -> Handout + Send + Sync>,
    ) -> io::Result<Acceptors> {
        let addr = listener.local_addr()?;
        let (wake, woken) = bounded(64);
        let listener_target = fd_target(std::os::fd::AsRawFd::as_raw_fd(&listener)).ok();
        let side = Arc::new(Side {
            listener,
            listener_target,
            accepting: accepting(),
            read_timeout,
            work,
            stopping,
            slots: Mutex::new(Vec::new()),
            wake,
            zombies: AtomicUsize::new(0),
            notices,
            on_work,
        });
        // Claimed before the first server accepts: after a restart in
        // place, connections a flood left in the queue are there at once,
        // and an accept thread out of descriptors panicked before the
        // claim, its message and backtrace printed.
        crate::panic::claim(accept_thread_died);
        crate::panic::claim(reset_before_its_request);
        crate::panic::claim(pool_thread_poisoned);
        crate::panic::claim(no_thread_for_a_server);
        {
            let mut sides = lock(&SIDES);
            sides.retain(|w| w.strong_count() > 0);
            sides.push(Arc::downgrade(&side));
        }
        for _ in 0..side.accepting {
            start_server(&side)?;
        }
        let (stop, stopped) = bounded(1);
        let supervised = side.clone();
        let supervisor = std::thread::Builder::new()
            .name(SUPERVISOR.into())
            .spawn(move || supervise(&supervised, &woken, &stopped))?;
        Ok(Acceptors {
            side,
            supervisor,
            stop,
            addr,
        })
    }

    /// Stops the supervisor, then every pump after it has handed out what
    /// its server already holds; no server accepts any more, and the
    /// listening socket refuses new connections from here on.
    pub fn stop(self) {
        self.stop_with(stop_listening);
    }

    /// As `stop`, but the listening socket keeps listening, for the
    /// program that a restart in place executes next (see
    /// `listener::inherit`): its accept threads are made to end instead
    /// (`stop_accepting`), so connections made from then on wait in its
    /// queue for that program.
    ///
    /// The servers are never dropped: dropping a tiny_http server connects
    /// to its own address to wake its accept thread, and on a socket that
    /// still listens with nothing accepting, that waits for room in a full
    /// queue (15 s, until the shutdown's grace ran out, under a flood that
    /// filled it). The program executed next is rid of them.
    pub fn stop_keeping_listener(self) {
        let addr = self.addr;
        self.stop_with(|side| {
            stop_accepting(side, addr);
            crate::say!(
                "autopi-rx: restart in place: no longer accepting; new connections wait in the listening socket's queue for the next run"
            );
            for (slot, _) in lock(&side.slots).iter() {
                std::mem::forget(slot.clone());
            }
        });
    }

    fn stop_with(self, listener_done: impl FnOnce(&Side)) {
        let _ = self.stop.send(());
        let _ = self.supervisor.join();
        listener_done(&self.side);
        let slots = std::mem::take(&mut *lock(&self.side.slots));
        for (_, pump) in slots {
            let _ = pump.join();
        }
    }

    /// Servers running now (accepting or draining).
    pub fn servers(&self) -> usize {
        lock(&self.side.slots).len()
    }

    /// The listening socket every server accepts on.
    pub fn listener(&self) -> &TcpListener {
        &self.side.listener
    }
}

/// Makes the listening socket (every clone of it: one socket) stop
/// listening: connections queued and not yet accepted are reset, new ones
/// refused, and every accept thread waiting on it wakes with an error and
/// ends. Without it a connection made while the shutdown waited for the
/// requests in flight (up to `SHUTDOWN_GRACE`) was accepted by a server no
/// pump read any more, and left unanswered until the process exited; a
/// device is better told at once, and sends again later. Dropping a
/// tiny_http server does not do it: it sets its own server's stop flag and
/// connects once to its address, which wakes one accept thread of the
/// several on this socket, not necessarily its own. Linux: `shutdown` of a
/// listening socket for reading disconnects it; a port the kernel picked
/// (`--listen …:0`) is then free for another socket to take while this
/// process still runs.
fn stop_listening(side: &Side) {
    let _ = socket2::SockRef::from(&side.listener).shutdown(std::net::Shutdown::Read);
}

/// How long `stop_accepting` tries to end the accept threads.
const STOP_ACCEPTING_WITHIN: Duration = Duration::from_secs(2);

/// Ends every server's accept thread and leaves the socket listening.
/// tiny_http ends an accept thread at its first error: with a receive
/// timeout of a millisecond on the socket, each `accept` from now on
/// times out as soon as the queue is empty. One already waiting keeps the
/// timeout it started with (the read timeout), so connections to our own
/// address wake them; each is accepted and let go of by tiny_http at once
/// (it sends nothing). A thread ends when its clone of the listener is
/// closed (`mark_dead_accept_threads`). Connections accepted meanwhile
/// (a few milliseconds) stay with this process. Then the socket's own
/// timeout is set back: a connection takes the listener's options when
/// its handshake completes, not when it is accepted, so those that came
/// while the shutdown waited for the requests in flight were cut by the
/// next run a millisecond after it read what they had sent (a
/// hostile-client probe: uploads still streaming their bodies got 400).
/// Only those whose handshake completes in the moment the threads take to
/// end get it still.
fn stop_accepting(side: &Side, addr: SocketAddr) {
    let listener = socket2::SockRef::from(&side.listener);
    let _ = listener.set_read_timeout(Some(Duration::from_millis(1)));
    end_accept_threads(side, addr);
    let _ = listener.set_read_timeout(Some(side.read_timeout));
}

/// Wakes the accept threads with connections to our own address until
/// every one has ended, `STOP_ACCEPTING_WITHIN` at most.
fn end_accept_threads(side: &Side, addr: SocketAddr) {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let until = Instant::now() + STOP_ACCEPTING_WITHIN;
    while Instant::now() < until {
        let slots = lock(&side.slots);
        mark_dead_accept_threads(side, &slots);
        let accepting = slots
            .iter()
            .filter(|(s, _)| !s.accept_ended.load(Ordering::SeqCst))
            .count();
        drop(slots);
        if accepting == 0 {
            return;
        }
        for _ in 0..accepting {
            let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50));
        }
        // The woken threads' next accept times out a millisecond later.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts one more server on a clone of the listener, with its pump.
///
/// The pump's thread is started first, and given its server once there is
/// one: a server dropped on this thread (the supervisor's) connects to its
/// own address to wake its accept thread, which waits minutes while the
/// backlog is full and nothing accepts. Started the other way round, a
/// pump refused a thread (out of threads) dropped its new server here and
/// held the supervisor there: the receiver never accepted again.
fn start_server(side: &Arc<Side>) -> io::Result<()> {
    let (give, given) = bounded::<Arc<Slot>>(1);
    let pump_side = side.clone();
    let pump = std::thread::Builder::new()
        .name("accept-pump".into())
        .spawn(move || {
            if let Ok(slot) = given.recv() {
                pump(&pump_side, &slot);
            }
        })?;
    let mut listener_fd = -1;
    let mut name = None;
    let made = side.listener.try_clone().and_then(|clone| {
        listener_fd = std::os::fd::AsRawFd::as_raw_fd(&clone);
        let named = ServerName::take();
        name = named.as_ref().map(|n| n.name.clone());
        // Refused a thread for its accept thread, `from_listener` panics
        // (claimed by `no_thread_for_a_server`), before any server exists.
        let made = std::panic::catch_unwind(move || tiny_http::Server::from_listener(clone, None));
        drop(named);
        made.map_err(|_| io::Error::other("tiny_http could not start its accept thread"))?
            .map_err(io::Error::other)
    });
    let server = match made {
        Ok(server) => server,
        Err(e) => {
            drop(give);
            let _ = pump.join();
            return Err(e);
        }
    };
    let slot = Arc::new(Slot {
        server: Arc::new(server),
        listener_fd,
        accept_ended: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        last_request: Mutex::new(Instant::now()),
        retired: AtomicBool::new(false),
        name,
        threadless: AtomicBool::new(false),
    });
    // Never waits: room for one, and the pump waits for it.
    let _ = give.send(slot.clone());
    lock(&side.slots).push((slot, pump));
    Ok(())
}

/// How many nice values the threads that cut hostile connections and let
/// go of what they sent (the closer, the pumps) take ahead of the rest at
/// most; they take as many of them as the system allows (root,
/// `CAP_SYS_NICE`, or `RLIMIT_NICE`). From a process at 0 that is -20, the
/// most there is: 87 times a thread at 0's share of a busy core, where 10
/// ahead gave 9.
pub const AHEAD: i32 = 20;

/// Puts the calling thread up to `AHEAD` of the process's other threads,
/// as far as the system allows. tiny_http runs a thread per connection:
/// hundreds of connections parsing heads or pipelined requests without end
/// share the cores equally with the one closer that cuts them, and what
/// they send piles up in memory meanwhile (300 connections of tiny header
/// lines, release build: 284–560 MiB, against 119–297 MiB with the closer
/// and pumps 10 ahead; 20 ahead made no further difference there, but
/// devices beside 260 connections pipelining without end were answered
/// within 1 s in six runs of six, against one of six at 10). Not allowed,
/// nothing changes. (Lowering tiny_http's threads instead needs no
/// privilege, but a device's head is parsed on them: with two busy loops
/// beside the receiver, devices then missed the 1 s bound.)
pub fn step_ahead() {
    // Linux: the calling thread's nice value alone.
    if let Ok(now) = rustix::process::getpriority_process(None) {
        // Taken from the first thread to step ahead, started at the
        // process's own (threads start with their creator's).
        BASE_NICE.get_or_init(|| now);
        // The furthest the system allows: an `RLIMIT_NICE` may reach part
        // of the way (each refusal is one system call, once per thread).
        let _ = ((now - AHEAD).max(-20)..now)
            .any(|nice| rustix::process::setpriority_process(None, nice).is_ok());
    }
}

/// The process's nice value, as the first thread to step ahead found it.
static BASE_NICE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Puts the calling thread back at the process's own priority: a thread
/// starts with its creator's, and the spawning thread (as far ahead as
/// the pumps) starts workers; drains call it too, as a safeguard.
pub fn keep_pace() {
    if let Some(&base) = BASE_NICE.get()
        && rustix::process::getpriority_process(None).is_ok_and(|now| now != base)
    {
        // Going back down is always allowed.
        let _ = rustix::process::setpriority_process(None, base);
    }
}

/// Hands the server's requests to the workers until it is retired or the
/// receiver stops.
fn pump(side: &Side, slot: &Arc<Slot>) {
    step_ahead();
    loop {
        if side.stopping.load(Ordering::SeqCst) {
            // The listener's shutdown puts an accept error in every
            // server's queue, possibly before a request a pool thread
            // queued after it: passed over, not taken for the end.
            loop {
                match slot.server.try_recv() {
                    Ok(Some(request)) => hand_out(side, slot, request),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            break;
        }
        match slot.server.recv_timeout(PUMP_TICK) {
            Ok(Some(request)) => hand_out(side, slot, request),
            Ok(None) => {
                // A request may have come after the wait and before the
                // last of the server's threads ended: handed out first.
                if retirable(side, slot) && !drain(side, slot) {
                    break;
                }
            }
            Err(e) => {
                // An accept thread reports one error, then ends (and the
                // supervisor may have seen it end first: see
                // `mark_dead_accept_threads`).
                slot.accept_ended.store(true, Ordering::SeqCst);
                // Timeouts are the listener's read timeout on an idle
                // server: routine, not worth a word.
                // Nor is the listener's shutdown when the receiver stops.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && !side.stopping.load(Ordering::SeqCst)
                {
                    let _ = side.notices.try_send(Notice::AcceptFailed(e.to_string()));
                }
                let _ = side.wake.try_send(());
            }
        }
    }
    slot.retired.store(true, Ordering::SeqCst);
    let _ = side.wake.try_send(());
}

/// Hands out what the server's queue holds now, without waiting: whether
/// there was any.
fn drain(side: &Side, slot: &Arc<Slot>) -> bool {
    let mut any = false;
    while let Ok(Some(request)) = slot.server.try_recv() {
        hand_out(side, slot, request);
        any = true;
    }
    any
}

fn hand_out(side: &Side, slot: &Arc<Slot>, request: Request) {
    *lock(&slot.last_request) = Instant::now();
    slot.in_flight.fetch_add(1, Ordering::SeqCst);
    let (serve, order) = match (side.on_work)(&request) {
        Handout::Serve(order) => (true, order),
        Handout::Ignore => (false, 0),
        Handout::LetGo => {
            // The writer is taken out unused: no answer, and no 500 from
            // tiny_http either.
            drop(request.into_writer());
            slot.finish();
            return;
        }
    };
    let work = Work {
        request,
        from: slot.clone(),
        serve,
        order,
    };
    if let Err(e) = side.work.send(work) {
        // The workers are gone (shutting down): nothing will answer it.
        e.into_inner().from.finish();
    }
}

/// Whether a server can go: nothing in flight, its accept thread ended,
/// and either none of its threads left (`mark_threadless`) or, where that
/// cannot be told, quiet long enough that every connection it had has
/// been closed by the read timeout. One whose accept thread still runs
/// goes only in place of a panicked one.
///
/// Until December 6 every server waited out the time rule, with the
/// default read timeout 2 minutes and 2 s of quiet: an idle receiver's
/// servers end by accept's timeout every read timeout and are replaced,
/// so it ran up to 20 pumps of servers long done where 4 are needed, and
/// out of threads each failed start left one more (11 with a test's
/// limit of 250 threads, which then saw threads over idle 15 s after).
/// Their threads gone, they go a supervisor's look later: tiny_http's
/// pool threads end 5 s after their last connection.
fn retirable(side: &Side, slot: &Slot) -> bool {
    if slot.in_flight.load(Ordering::SeqCst) > 0 {
        return false;
    }
    let quiet = lock(&slot.last_request).elapsed();
    let wait = RETIRE_AFTER_TIMEOUTS * side.read_timeout + RETIRE_SLACK;
    if slot.accept_ended.load(Ordering::SeqCst) {
        return slot.threadless.load(Ordering::SeqCst) || quiet > wait;
    }
    // A panicked accept thread never says so: the longest-quiet server that
    // never reported an error stands for it.
    quiet > wait + side.read_timeout
        && side
            .zombies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |z| z.checked_sub(1))
            .is_ok()
}

/// Keeps `ACCEPTING` servers accepting, and forgets retired ones.
fn supervise(side: &Arc<Side>, woken: &Receiver<()>, stop: &Receiver<()>) {
    let ticks = tick(SUPERVISE_TICK);
    let mut failing = false;
    let mut unreaped: Vec<Arc<Slot>> = Vec::new();
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(woken) -> _ => {}
            recv(ticks) -> _ => {}
        }
        if side.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut slots = lock(&side.slots);
        let mut finished = Vec::new();
        slots.retain(|(slot, _)| {
            !slot.retired.load(Ordering::SeqCst) || {
                finished.push(slot.clone());
                false
            }
        });
        mark_dead_accept_threads(side, &slots);
        mark_threadless(&slots);
        let accepting = slots
            .iter()
            .filter(|(s, _)| !s.accept_ended.load(Ordering::SeqCst))
            .count();
        drop(slots);
        // Retired pumps have returned or are about to (their handles were
        // dropped above). Dropping a tiny_http server connects to its own
        // address to wake its accept thread, which can wait minutes for a
        // full backlog: never on this thread. Out of threads, they wait
        // here for the next look.
        unreaped.append(&mut finished);
        if !unreaped.is_empty() {
            unreaped = reap(std::mem::take(&mut unreaped))
                .err()
                .unwrap_or_default();
        }
        let wanted = side.accepting + side.zombies.load(Ordering::SeqCst);
        if accepting < wanted && !room_to_accept() {
            // Tried again at the next look, once the closing thread has
            // shed idle connections or the read timeout closed them.
            continue;
        }
        for _ in accepting..wanted {
            match start_server(side) {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        failing = true;
                        let _ = side.notices.try_send(Notice::AcceptFailed(format!(
                            "cannot start accepting again: {e}; retrying"
                        )));
                    }
                    break;
                }
            }
        }
    }
}

/// Part of the descriptor limit that must be free for a server to be
/// started (at least `START_ROOM_LEAST`).
const START_ROOM_PART: u64 = 16;
const START_ROOM_LEAST: u64 = 8;

/// Whether enough descriptors are free to start a server. With none to
/// spare, a server started again takes the oldest waiting connection,
/// finds no descriptor for tiny_http's second handle and dies, dropping
/// that connection unread (a reset), and the next is started at once: a
/// hostile-client probe's 10 000 idle connections had every device reset,
/// and under a limit of 256 the churn took every descriptor the closing
/// thread let go of to shed idle connections, which then shed none (the
/// test of it failed 2 runs in 5 under two busy loops). While they are
/// short, new connections wait in the kernel's queue instead.
fn room_to_accept() -> bool {
    let Some(limit) = super::closer::descriptor_limit() else {
        return true;
    };
    // Counting them may take a descriptor: none to be had is no room.
    let open = match super::closer::count_descriptors() {
        Ok(open) => open,
        Err(e) => return e.raw_os_error() != Some(rustix::io::Errno::MFILE.raw_os_error()),
    };
    let room = (limit / START_ROOM_PART).max(START_ROOM_LEAST);
    open.saturating_add(room) <= limit
}

/// What the descriptor `fd` of this process names (`socket:[INODE]`).
fn fd_target(fd: i32) -> io::Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

/// Marks as ended the servers whose accept thread is gone without a word
/// (a panic: see `accept_thread_died`), each one a zombie fewer: its clone
/// of the listener, which that thread owned, is closed, or its number now
/// names something else, or a later server's clone (numbers are reused
/// lowest first). A panicked accept thread used to be stood for by the
/// longest-quiet server, retired only after several read timeouts: out of
/// threads, every server died at once, and their replacements came on
/// top, 8 servers instead of 4 for minutes after the probe had ended.
fn mark_dead_accept_threads(side: &Side, slots: &[(Arc<Slot>, JoinHandle<()>)]) {
    let Some(listener) = &side.listener_target else {
        return;
    };
    for (i, (slot, _)) in slots.iter().enumerate() {
        if slot.accept_ended.load(Ordering::SeqCst) {
            continue;
        }
        let reused = slots[i + 1..]
            .iter()
            .any(|(later, _)| later.listener_fd == slot.listener_fd);
        let gone = reused
            || match fd_target(slot.listener_fd) {
                Ok(target) => &target != listener,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            };
        if gone && !slot.accept_ended.swap(true, Ordering::SeqCst) {
            let _ = side
                .zombies
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |z| z.checked_sub(1));
        }
    }
}

/// Marks the servers whose accept thread had ended before this look and
/// no thread of which is left: their pumps then hand out what their
/// queue holds and retire. No thread can join them later: only the
/// accept thread starts a server's threads, and it had ended before the
/// look began. Where the process's threads cannot all be named (no /proc,
/// or out of descriptors), nothing is marked.
fn mark_threadless(slots: &[(Arc<Slot>, JoinHandle<()>)]) {
    let waiting: Vec<&Slot> = slots
        .iter()
        .map(|(slot, _)| &**slot)
        .filter(|s| {
            s.name.is_some()
                && s.accept_ended.load(Ordering::SeqCst)
                && !s.threadless.load(Ordering::SeqCst)
        })
        .collect();
    if waiting.is_empty() {
        return;
    }
    let Some(names) = server_thread_names() else {
        return;
    };
    for slot in waiting {
        if slot.name.as_ref().is_some_and(|n| !names.contains(n)) {
            slot.threadless.store(true, Ordering::SeqCst);
        }
    }
}

/// The names of this process's threads that are tiny_http servers' (see
/// `ServerName`); None unless every thread's name could be read or the
/// thread was gone.
fn server_thread_names() -> Option<std::collections::HashSet<String>> {
    let mut names = std::collections::HashSet::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?;
        match std::fs::read_to_string(task.path().join("comm")) {
            Ok(name) => {
                let name = name.trim_end_matches('\n');
                if name.starts_with(SERVER_NAME) {
                    names.insert(name.to_string());
                }
            }
            // Ended meanwhile.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
            Err(_) => return None,
        }
    }
    Some(names)
}

/// Drops `servers` on a thread of their own (see `supervise`); refused a
/// thread, gives them back untouched: a closure handed to a thread that
/// cannot start is dropped by the caller, so they go over a channel.
fn reap(servers: Vec<Arc<Slot>>) -> Result<(), Vec<Arc<Slot>>> {
    let (give, given) = bounded::<Vec<Arc<Slot>>>(1);
    match std::thread::Builder::new()
        .name("accept-reaper".into())
        .spawn(move || drop(given.recv()))
    {
        Ok(_) => {
            // Never waits: room for one.
            let _ = give.send(servers);
            Ok(())
        }
        Err(_) => Err(servers),
    }
}

/// The accept side's claim on panics (see `crate::panic`): tiny_http's
/// accept thread dying on its clone of a new socket. Every accept side of
/// this process starts a replacement; nothing is printed.
fn accept_thread_died(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let no_thread =
        payload(info).starts_with(SPAWN_FAILED) && std::thread::current().name().is_none();
    if !(in_tiny_http(info, ACCEPT_PANIC_FILE) || no_thread) {
        return false;
    }
    let what = payload_text(info);
    let what = if no_thread {
        format!(
            "tiny_http could not start a thread for a connection ({what}): out of threads (a \
             limit such as `ulimit -u`, systemd's TasksMax or a cgroup's pids.max); that \
             server stopped accepting, and another starts once threads are free"
        )
    } else {
        format!("tiny_http's accept thread failed: {what}")
    };
    for side in lock(&SIDES).iter().filter_map(Weak::upgrade) {
        if !side.stopping.load(Ordering::SeqCst) {
            side.zombies.fetch_add(1, Ordering::SeqCst);
            let _ = side.notices.try_send(Notice::AcceptFailed(what.clone()));
            let _ = side.wake.try_send(());
        }
    }
    true
}

/// The accept side's claim on panics: a thread of tiny_http's pool ending
/// on the lock a refused thread poisoned (see `POOL_PANIC_FILE`). Its
/// connection was done; nothing printed (the refusal was said once).
fn pool_thread_poisoned(info: &std::panic::PanicHookInfo<'_>) -> bool {
    in_tiny_http(info, POOL_PANIC_FILE) && payload(info).contains("PoisonError")
}

/// The accept side's claim on panics: `Server::from_listener` refused a
/// thread, on the supervisor's thread, which catches it and tries again
/// later (see `start_server`); nothing printed.
fn no_thread_for_a_server(info: &std::panic::PanicHookInfo<'_>) -> bool {
    payload(info).starts_with(SPAWN_FAILED) && std::thread::current().name() == Some(SUPERVISOR)
}

/// The file of tiny_http 0.12 that builds a request, unwrapping the peer's
/// address it read when the connection began.
const CLIENT_PANIC_FILE: &str = "client.rs";

/// Connections whose client reset them before tiny_http could read their
/// address (see `reset_before_its_request`), in this process.
pub static RESET_BEFORE_READ: AtomicUsize = AtomicUsize::new(0);

/// The accept side's claim on panics: tiny_http 0.12 reads a new
/// connection's peer address and unwraps it when it builds the request
/// (`client.rs`), which panics when the client reset the connection
/// first (`NotConnected`). Only that connection's thread ends (its pool
/// lets the thread go, and the connection was gone anyway): counted for
/// the status page, nothing printed. Printed, each one's message and
/// backtrace flooded stderr (2 000 such resets: 1 793 panics), and with
/// the dashboard up each was held in memory until it closed.
fn reset_before_its_request(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let not_connected = info
        .payload()
        .downcast_ref::<String>()
        .is_some_and(|what| what.contains("NotConnected"));
    if !(in_tiny_http(info, CLIENT_PANIC_FILE) && not_connected) {
        return false;
    }
    RESET_BEFORE_READ.fetch_add(1, Ordering::Relaxed);
    true
}

/// Whether a panic comes from tiny_http's source file `file` (registry,
/// vendored and patched checkouts alike).
fn in_tiny_http(info: &std::panic::PanicHookInfo<'_>, file: &str) -> bool {
    info.location().is_some_and(|l| {
        let path = l.file().replace('\\', "/");
        path.ends_with(file) && (path.contains("tiny_http") || path.contains("tiny-http"))
    })
}

/// A panic's message as it was given.
fn payload<'a>(info: &'a std::panic::PanicHookInfo<'_>) -> &'a str {
    let payload = info.payload();
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic")
}

/// A panic's message: `unwrap`'s text around an io::Error becomes the
/// error's own message (`Too many open files (os error 24)`).
fn payload_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    unwrapped_os_error(payload(info))
}

/// `unwrap`'s panic text around an io::Error (`... Os { code: 24, ... }`)
/// as the error's own message; any other text as it is.
fn unwrapped_os_error(what: &str) -> String {
    let code = what.split_once("code: ").and_then(|(_, rest)| {
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse::<i32>().ok()
    });
    match code {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_panic_text_becomes_the_os_message() {
        let emfile = r#"called `Result::unwrap()` on an `Err` value: Os { code: 24, kind: Uncategorized, message: "Too many open files" }"#;
        assert_eq!(
            unwrapped_os_error(emfile),
            io::Error::from_raw_os_error(24).to_string()
        );
        assert_eq!(unwrapped_os_error("something else"), "something else");
    }
}

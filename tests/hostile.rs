//! The hostile-network suite (issue 8): the real binary on 127.0.0.1,
//! probed over real sockets the way one machine on a shared bench network
//! could, each probe bounded in count and time.
//!
//! What each test holds the receiver to:
//! - while a probe runs (stalled connections, a pipelined flood never
//!   read, absurd `Content-Length`s, endless header bytes, endless
//!   pipelining) a device's upload on a fresh connection is answered 200
//!   within `DEVICE_ACK`; the receiver never exits; once the probe's
//!   connections close, descriptors and threads return to what they were
//!   when idle (within `FD_TOLERANCE` and `THREAD_TOLERANCE`) before
//!   `RETURN_WITHIN`; RSS stays under `RSS_LIMIT_KIB` through the issue's
//!   probes, while for endless input what memory remains is printed
//!   (lines starting `REMAINS`) for the README;
//! - idle or stalled connections are closed after `--read-timeout`, and a
//!   stalled upload is given back to the worker pool as a refused request;
//! - out of descriptors, the receiver waits and recovers by itself;
//! - framing is strict (400/501/505 and a close, never a hang);
//! - a client port used again after a connection that broke the framing
//!   or was hung up on is served as a new connection within a look of the
//!   closing thread once the old one is gone, and never before: nothing
//!   the old one pipelined is taken for the new one's;
//! - a connection pipelining without reading its answers holds one worker
//!   at most (requests waiting their turn are parked, holding none);
//! - 64 keep-alive clients arriving at once are all answered;
//! - a listed request keeps a few KiB of headers at most;
//! - a head tiny_http reads without end is cut past 1 MiB, and heads on
//!   many connections past 2 MiB in all;
//! - a deleted capture is noticed and a new one started at its path;
//! - token files with a BOM and CRLF work; unprintable tokens are refused.
//!
//! Probes that measure a device's answer time or the process's resources
//! take `HEAVY` so that two of them never share the two cores.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autopi_rx::receiver::accept::ACCEPTING;
use autopi_rx::receiver::server::DRAINS_AT_MOST;
use common::*;

/// The read timeout of receivers whose timeouts a test waits out.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// `--read-timeout` for probes that must stay in force while a device is
/// measured: the receiver never drops them on its own during the test,
/// the client closes them.
const LONG_READ_TIMEOUT: &str = "30";
/// Beyond the read timeout, how long the receiver may take to notice and
/// close (two shared cores).
const SLACK: Duration = Duration::from_secs(3);
/// How long a client waits for the receiver to close a connection that
/// broke the rules, with a read timeout (`LONG_READ_TIMEOUT`) far beyond
/// it: a close within it is the receiver's doing.
const CLOSED_BY_US: Duration = Duration::from_secs(3);
/// The issue's bound on a device's acknowledgement while a probe runs.
const DEVICE_ACK: Duration = Duration::from_secs(1);
/// How long a device waits for any answer before it counts as blocked.
const DEVICE_GIVES_UP: Duration = Duration::from_secs(3);
/// The issue's bound on memory through every probe.
const RSS_LIMIT_KIB: u64 = 200 * 1024;
/// Threads above the idle count still accepted after a probe: a
/// supervisor may be between an ended tiny_http server and its
/// replacement (each brings its accept thread and a pool of 4).
const THREAD_TOLERANCE: u64 = 6;
/// Descriptors above the idle count still accepted after a probe: a
/// listener clone being replaced, the capture being reopened.
const FD_TOLERANCE: u64 = 4;
/// How long resources may take to return after a probe's connections
/// close: tiny_http's pool threads end after 5 s idle.
const RETURN_WITHIN: Duration = Duration::from_secs(15);

static HEAVY: Mutex<()> = Mutex::new(());

/// Serialises the probes that measure time or resources.
fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}

/// The receiver with `--read-timeout` (seconds).
fn receiver(read_timeout: &str) -> Receiver {
    receiver_with(read_timeout, &[])
}

/// The receiver with `--read-timeout` (seconds) and `extra` flags.
fn receiver_with(read_timeout: &str, extra: &[&str]) -> Receiver {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut args = vec!["--read-timeout", read_timeout];
    args.extend_from_slice(extra);
    Receiver::start(&args)
}

/// A batch of one record, different each time.
fn batch(tag: &str) -> Vec<u8> {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(r#"[{{"@t":"{tag}","@ts":"2026-12-02T01:00:00","n":{n}}}]"#).into_bytes()
}

fn upload_request(tag: &str) -> Vec<u8> {
    let auth = format!("token {TOKEN}");
    request_bytes(
        "POST",
        &[
            ("authorization", &auth),
            ("unit-id", "ee3df171ff0f6209a3dbaa00b00e1d05"),
        ],
        &batch(tag),
    )
}

/// A device's new connection to `addr`, from 127.0.0.2: a host of its
/// own, as on a bench network, not the probes' 127.0.0.1. From the
/// probes' address, a device making 1 700 connections a second went
/// through the client's ports in about 8 s, and once took a port a probe
/// connection cut at that very moment had used: the receiver ignores a
/// new connection from a cut one's address until it has seen that one
/// gone (up to 100 ms later, README, *Hostile networks*), and one CI run
/// failed on it.
///
/// The port is picked at the connect, as without a bind
/// (`IP_BIND_ADDRESS_NO_PORT`): picked at the bind, before the kernel
/// knows where the connection goes, it could be one whose last connection
/// to the receiver lingered in TIME_WAIT for less than a second, and the
/// connect failed (`EADDRINUSE`, twice in eight runs of the suite); and
/// the TIME_WAITs of 28 000 connections in a minute used up every port.
fn device_connection(addr: SocketAddr) -> io::Result<Conn> {
    use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    setsockopt(&s, IpBindAddressNoPort, &true)?;
    s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())?;
    s.connect_timeout(&addr.into(), DEVICE_GIVES_UP)?;
    s.set_read_timeout(Some(DEVICE_GIVES_UP))?;
    s.set_write_timeout(Some(DEVICE_GIVES_UP))?;
    Ok(Conn::on(s.into()))
}

/// One device upload on a fresh connection: the time to its 200, or what
/// went wrong instead.
fn device_upload(addr: SocketAddr) -> Result<Duration, String> {
    device_upload_as(addr, "device.upload")
}

/// `device_upload` of a batch whose records say `tag`.
fn device_upload_as(addr: SocketAddr, tag: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut c = device_connection(addr)
        .map_err(|e| format!("not connected after {:?}: {e}", started.elapsed()))?;
    let answer = c.try_request(&upload_request(tag));
    let took = started.elapsed();
    match answer {
        Ok(r) if r.status == 200 => Ok(took),
        Ok(r) => Err(format!(
            "answered {} after {took:?}: {}",
            r.status,
            r.text()
        )),
        // Both ends of the connection as the kernel holds them, while it
        // is still open: bytes unread at the receiver's end say it was
        // never read (left in a pool's queue), none that it was read.
        Err(e) => {
            let ends = match c.stream().local_addr() {
                Ok(ours) => sockets_on(ours.port()),
                Err(why) => format!("(our end: {why})"),
            };
            Err(format!(
                "no answer after {took:?}: {e}; its ends then:\n{ends}"
            ))
        }
    }
}

/// Devices uploading one after another, at least three, until `done` is
/// set: join the handle for how they fared.
fn devices_meanwhile(addr: SocketAddr) -> (Arc<AtomicBool>, JoinHandle<Devices>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    (
        done,
        std::thread::spawn(move || Devices::during(addr, 3, &flag)),
    )
}

/// The receiver's status page right after a device was not answered in
/// time, for what a rare failure leaves to read (the workers, the
/// closer's nudges, what is parked); within 2 s, or said not given.
fn status_then(addr: SocketAddr) -> String {
    let page = Conn::open_within(addr, Duration::from_secs(2))
        .and_then(|mut c| c.try_request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
    match page {
        Ok(r) => format!("the status page then:\n{}", r.text()),
        Err(e) => format!("no status page within 2 s ({e})"),
    }
}

/// Device uploads one after another while a probe runs.
#[derive(Debug, Default)]
struct Devices {
    answered: Vec<Duration>,
    failures: Vec<String>,
}

impl Devices {
    /// Uploads until `done` is set (at least `min` times); stops early
    /// after two devices got no answer at all (the receiver is blocked:
    /// more would only lengthen the test).
    fn during(addr: SocketAddr, min: usize, done: &AtomicBool) -> Devices {
        let mut d = Devices::default();
        let mut blocked = 0;
        while d.answered.len() + d.failures.len() < min || !done.load(Ordering::SeqCst) {
            // The status page with the first few failures only.
            let then = |d: &Devices| match d.failures.len() {
                0..3 => format!("; {}", status_then(addr)),
                _ => String::new(),
            };
            match device_upload(addr) {
                Ok(t) if t <= DEVICE_ACK => d.answered.push(t),
                Ok(t) => {
                    let then = then(&d);
                    d.failures.push(format!("answered after {t:?}{then}"));
                }
                Err(e) => {
                    blocked += 1;
                    let then = then(&d);
                    d.failures.push(format!("{e}{then}"));
                    if blocked == 2 {
                        break;
                    }
                }
            }
        }
        d
    }

    /// `count` uploads in a row.
    fn now(addr: SocketAddr, count: usize) -> Devices {
        Devices::during(addr, count, &AtomicBool::new(true))
    }

    fn check(&self, probe: &str, failures: &mut Vec<String>) {
        let slowest = self.answered.iter().max().copied().unwrap_or_default();
        println!(
            "{probe}: {} device uploads answered within {DEVICE_ACK:?} (slowest {slowest:?}), {} not",
            self.answered.len(),
            self.failures.len()
        );
        if !self.failures.is_empty() {
            failures.push(format!(
                "{probe}: a device was not acknowledged within {DEVICE_ACK:?}: {:?}",
                self.failures
            ));
        }
    }
}

/// The highest use seen while watching a process.
#[derive(Clone, Copy, Debug, Default)]
struct Peak {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

/// Samples a process's use every few milliseconds until stopped.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peak>,
}

impl Watch {
    fn start(pid: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Peak::default();
            while !flag.load(Ordering::SeqCst) {
                if let Some(u) = usage(pid) {
                    peak.rss_kib = peak.rss_kib.max(u.rss_kib);
                    peak.threads = peak.threads.max(u.threads);
                    peak.fds = peak.fds.max(u.fds);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        Watch { stop, thread }
    }

    fn stop(self) -> Peak {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// A receiver under probe, with its use when idle.
struct Probed {
    rx: Receiver,
    idle: Usage,
    failures: Vec<String>,
}

impl Probed {
    fn start(read_timeout: &str) -> Probed {
        Probed::start_with(read_timeout, &[])
    }

    /// `start` with `extra` flags.
    fn start_with(read_timeout: &str, extra: &[&str]) -> Probed {
        let rx = receiver_with(read_timeout, extra);
        // Warm up: a first upload and a status request start whatever
        // starts lazily, then the idle use is taken as the baseline.
        device_upload(rx.addr).expect("a first upload");
        Conn::open(rx.addr).request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        // The supervisor replaces each server whose idle accept timed out
        // (every read timeout), so the idle thread count swings: the
        // baseline is the most seen over a window of two read timeouts
        // (at most 3 s for long ones).
        let timeout: u64 = read_timeout.parse().unwrap();
        let window = if timeout <= 2 {
            Duration::from_secs(2 * timeout + 1)
        } else {
            Duration::from_secs(3)
        };
        let watch = Watch::start(rx.child.id());
        std::thread::sleep(window);
        let peak = watch.stop();
        let idle = Usage {
            threads: peak.threads,
            rss_kib: peak.rss_kib,
            fds: peak.fds,
        };
        println!("idle (most over {window:?}): {idle:?}");
        Probed {
            rx,
            idle,
            failures: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.rx.child.id()
    }

    fn alive(&mut self, probe: &str) -> bool {
        match self.rx.child.try_wait() {
            Ok(None) => true,
            other => {
                self.failures.push(format!(
                    "{probe}: the receiver exited ({other:?}); stderr: {}",
                    self.rx.stderr()
                ));
                false
            }
        }
    }

    fn check_peak(&mut self, probe: &str, peak: Peak) {
        println!(
            "{probe}: peak RSS {} MiB (idle {} MiB), threads {} (idle {}), descriptors {} (idle {})",
            peak.rss_kib / 1024,
            self.idle.rss_kib / 1024,
            peak.threads,
            self.idle.threads,
            peak.fds,
            self.idle.fds
        );
        if peak.rss_kib >= RSS_LIMIT_KIB {
            self.failures.push(format!(
                "{probe}: RSS reached {} MiB (limit {} MiB)",
                peak.rss_kib / 1024,
                RSS_LIMIT_KIB / 1024
            ));
        }
    }

    /// After the probe's connections closed: descriptors and threads back
    /// to idle (within the tolerances) before `RETURN_WITHIN`.
    fn check_return(&mut self, probe: &str) {
        if !self.alive(probe) {
            return;
        }
        let idle = self.idle;
        let started = Instant::now();
        let mut last = None;
        let back = wait_until(RETURN_WITHIN, || {
            last = usage(self.rx.child.id());
            last.is_some_and(|u| {
                u.fds <= idle.fds + FD_TOLERANCE && u.threads <= idle.threads + THREAD_TOLERANCE
            })
        });
        if back {
            println!(
                "{probe}: back to idle after {:?}: {last:?}",
                started.elapsed()
            );
        } else {
            self.failures.push(format!(
                "{probe}: not back to idle {RETURN_WITHIN:?} after the connections closed: \
                 {last:?}, idle {idle:?}"
            ));
        }
        self.alive(probe);
    }

    fn finish(self) {
        assert!(self.failures.is_empty(), "\n{}", self.failures.join("\n"));
    }
}

/// The ways a connection can stall: request head cut short, or body cut
/// short, with and without the token, with a body tiny_http reads whole
/// before handing the request over (<= 1 KiB) or one the worker reads.
fn stall_bytes(kind: usize) -> Vec<u8> {
    let auth = format!("authorization: token {TOKEN}\r\n");
    let head = |path: &str, auth: &str, len: usize| {
        format!("POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {len}\r\n\r\n")
    };
    let part = r#"[{"@t":"stalled","@ts":"2026-12-02T01:"#;
    match kind % 6 {
        0 => b"POST /stall/head HTTP/1.1\r\nHost: t\r\nContent-Le".to_vec(),
        1 => {
            format!("POST /stall/head-token HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 5000\r\n")
                .into_bytes()
        }
        2 => (head("/stall/body-token", &auth, 5000) + part).into_bytes(),
        3 => (head("/stall/body", "", 5000) + part).into_bytes(),
        4 => (head("/stall/small-body-token", &auth, 1000) + part).into_bytes(),
        _ => (head("/stall/small-body", "", 1000) + part).into_bytes(),
    }
}

/// Opens `n` stalled connections of every kind in turn.
fn open_stalls(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(&stall_bytes(i)).ok()?;
            Some(s)
        })
        .collect()
}

#[test]
fn probe_1000_stalled_connections() {
    let _heavy = heavy();
    let probe = "1000 stalled connections";
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let stalls = open_stalls(p.rx.addr, 1000);
    println!("{probe}: {} opened", stalls.len());
    if stalls.len() < 1000 {
        p.failures
            .push(format!("{probe}: only {} could connect", stalls.len()));
    }
    Devices::now(p.rx.addr, 5).check(probe, &mut p.failures);
    p.alive(probe);
    drop(stalls);
    let peak = watch.stop();
    p.check_peak(probe, peak);
    p.check_return(probe);
    p.finish();
}

/// The costliest of the issue's stalls that is read freely: 1 000
/// connections with the token, each sending the head of the guide's
/// 1000-record batch sent plain (106 kB, under the 128 KiB every body
/// reads before it asks for a share) and its first 100 KiB, then
/// nothing. Each holds a worker, one of tiny_http's threads and what came
/// of its body. With jemalloc's per-thread caches on (its default), the
/// 2 000 threads' caches came on top of the 100 MB of bodies: a debug
/// build peaked at 237 MiB while they stalled and 274–283 MiB as they
/// closed (release, 128 KiB each: 247–248 and 273–276 MiB); with them off
/// (`.cargo/config.toml`), 169–172 MiB. The peak counts only if they did
/// stall: each held its two threads.
#[test]
fn a_thousand_device_batches_cut_short_stay_under_the_memory_bound() {
    let _heavy = heavy();
    let probe = "1000 device batches cut short at 100 KiB";
    let batch = std::fs::read(samples().join("batch-1000-naive.json")).unwrap();
    let head = large_post(batch.len());
    let sent = &batch[..100 * 1024];
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let stalls: Vec<TcpStream> = (0..1000)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&p.rx.addr, Duration::from_secs(2)).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
            s.write_all(head.as_bytes()).ok()?;
            s.write_all(sent).ok()?;
            Some(s)
        })
        .collect();
    println!("{probe}: {} opened", stalls.len());
    if stalls.len() < 1000 {
        p.failures.push(format!(
            "{probe}: only {} could connect and send their 100 KiB",
            stalls.len()
        ));
    }
    // Measured once the receiver has read all that was sent (nothing left
    // queued on its side of the connections).
    let port = p.rx.addr.port();
    if !wait_until(Duration::from_secs(20), || queued_for(port) == Some(0)) {
        p.failures.push(format!(
            "{probe}: bytes still queued to the receiver after 20 s: {:?}",
            queued_for(port)
        ));
    }
    Devices::now(p.rx.addr, 5).check(probe, &mut p.failures);
    p.alive(probe);
    // Closed by the client: each worker refuses its body cut short, and
    // tiny_http drains what was announced and never came.
    drop(stalls);
    p.check_return(probe);
    let peak = watch.stop();
    p.check_peak(probe, peak);
    if peak.threads < p.idle.threads + 1500 {
        p.failures.push(format!(
            "{probe}: at most {} threads (idle {}): the uploads did not stall in the receiver",
            peak.threads, p.idle.threads
        ));
    }
    p.finish();
}

/// What the kernel holds for the receiver on 127.0.0.1:`port`, not yet
/// taken (the receive queues of `/proc/net/tcp` whose local address is
/// the receiver's): bytes of its connections not yet read, and, for its
/// listening socket, connections not yet accepted. `None` where that
/// cannot be read.
fn queued_for(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let ours = format!("0100007F:{port:04X}");
    let mut queued = 0;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local address, remote address, state, tx_queue:rx_queue
        if fields.get(1) != Some(&ours.as_str()) {
            continue;
        }
        let rx = fields.get(4)?.split(':').nth(1)?;
        queued += u64::from_str_radix(rx, 16).ok()?;
    }
    Some(queued)
}

/// Malformed requests of every kind the framing tests send, each from a
/// client that leaves at once.
fn malformed_requests() -> Vec<(&'static str, Vec<u8>)> {
    let auth = format!("authorization: token {TOKEN}\r\n");
    vec![
        ("LF only", b"GET / HTTP/1.1\nHost: t\n\n".to_vec()),
        (
            "Content-Length with Transfer-Encoding",
            format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .into_bytes(),
        ),
        (
            "two Content-Lengths",
            format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]")
                .into_bytes(),
        ),
        (
            "Transfer-Encoding: gzip",
            format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}Transfer-Encoding: gzip\r\n\r\nxx").into_bytes(),
        ),
    ]
}

/// Every malformed request, 40 times each, from clients that leave at
/// once: once they are gone nothing of theirs may stay (descriptors,
/// threads), whatever tiny_http made of their bytes.
#[test]
fn probe_malformed_requests_leave_nothing_behind() {
    leave_nothing_behind(&[], malformed_requests()).finish();
}

/// The same for `HTTP/2.0` request lines. Their clients get a close (see
/// `other_http_versions_and_bare_lf_are_answered_or_closed_never_hung`),
/// but the thread tiny_http deadlocks on each keeps its two descriptors
/// until exit: past `--restart-held` of them the receiver restarts in
/// place, which ends them all. The same process, on the same socket and
/// the same capture: the upload before and those after are all in it.
#[test]
fn probe_http2_request_lines_leave_nothing_behind() {
    let mut p = leave_nothing_behind(
        &["--restart-held", "16"],
        vec![("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec())],
    );
    let said = p.rx.stderr();
    if !said.contains("restarting in place: ") {
        p.failures.push(format!(
            "back to idle, but not by a restart in place: {said}"
        ));
    }
    let after = device_upload(p.rx.addr);
    let saved = std::fs::read_to_string(&p.rx.capture).unwrap();
    let uploads = saved.matches("device.upload").count();
    println!("after the restart: {after:?}; the capture holds {uploads} uploads");
    if after.is_err() || uploads != 5 {
        p.failures.push(format!(
            "after the restart, an upload: {after:?}; the capture holds {uploads} uploads, \
             not the 5 acknowledged (one before the probe, three during it, one after)"
        ));
    }
    p.finish();
}

/// An upload whose body trickles in, a byte every 400 ms from `after` on,
/// until `stop` or 16 s: it holds a worker, so a restart in place that
/// comes meanwhile (about 7 s after an `HTTP/2.0` line, two read timeouts
/// after its close, 5 s at least) waits for it. The status it got, if any.
fn held_in_flight_from(
    addr: SocketAddr,
    after: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<io::Result<u16>> {
    std::thread::sleep(after);
    std::thread::spawn(move || {
        let mut c = device_connection(addr)?;
        // Over 1 KiB: tiny_http reads smaller bodies itself before it
        // hands the request over.
        let auth = format!("token {TOKEN}");
        let whole = request_bytes("POST", &[("authorization", &auth)], &[b' '; 5000]);
        c.send(&whole[..whole.len() - 4999]);
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(400));
            if stop.load(Ordering::SeqCst) || c.stream().write_all(b" ").is_err() {
                break;
            }
        }
        c.try_read_response(false).map(|r| r.status)
    })
}

/// A signal while a restart in place waits for the requests in flight
/// stops the receiver instead, once they are done: status 0, no restart.
/// Until December 8 it was taken for a second signal (exit 1 at once,
/// the requests in flight dropped: a hostile-client probe, 14 runs of 15
/// with the signal within 90 ms of the restart's line).
#[test]
fn a_signal_during_a_restart_stops_instead() {
    let _heavy = heavy();
    let mut rx = receiver_with(&secs(READ_TIMEOUT), &["--restart-held", "1"]);
    let mut h2 = TcpStream::connect(rx.addr).unwrap();
    h2.write_all(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = held_in_flight_from(rx.addr, Duration::from_secs(4), stop.clone());
    rx.wait_stderr("finishing 1 request(s) in flight");
    signal(&rx.child, "TERM");
    rx.wait_stderr("stopping instead");
    // The upload in flight ends (its client goes): the run is done.
    stop.store(true, Ordering::SeqCst);
    let (status, said) = rx.wait_exit();
    println!("the upload in flight: {:?}", trickle.join().unwrap());
    assert!(status.success(), "{status}: {said}");
    assert!(!said.contains("restarted in place"), "{said}");
    assert!(!said.contains("second signal"), "{said}");
}

/// A connection made while a restart in place waits for a request in
/// flight (an upload trickling in here) waits in the socket's queue and is served
/// by the next run, its upload sent in two pieces: it has the socket's
/// own read timeout. Until December 8 it took the 1 ms timeout the old
/// run set to end its accept threads (a connection takes the listener's
/// options when its handshake completes), and the next run refused it
/// 400 a millisecond after its first piece (a hostile-client probe).
#[test]
fn a_connection_made_during_a_restart_is_served_by_the_next_run() {
    let _heavy = heavy();
    let rx = receiver_with(&secs(READ_TIMEOUT), &["--restart-held", "1"]);
    let mut h2 = TcpStream::connect(rx.addr).unwrap();
    h2.write_all(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").unwrap();
    let trickle = held_in_flight_from(rx.addr, Duration::from_secs(4), Arc::default());
    rx.wait_stderr("finishing 1 request(s) in flight");
    rx.wait_stderr("no longer accepting");
    let mut c = device_connection(rx.addr).unwrap();
    // Made before the next run began (the upload in flight holds it).
    assert!(
        !rx.stderr().contains("restarted in place"),
        "{}",
        rx.stderr()
    );
    rx.wait_stderr("restarted in place");
    let bytes = upload_request("restart.queued");
    let (first, rest) = bytes.split_at(bytes.len() - 10);
    c.send(first);
    std::thread::sleep(Duration::from_millis(100));
    c.send(rest);
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let answer = c.try_read_response(false);
    println!("the trickle: {:?}", trickle.join().unwrap());
    let answer = answer.expect("an answer from the next run");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let saved = std::fs::read_to_string(&rx.capture).unwrap();
    assert!(saved.contains("restart.queued"), "{saved}");
}

/// A restart in place reads `--token-file` again: with a token file it
/// cannot read again, the receiver goes on rather than restart into a
/// run that would end at once (a hostile-client probe: a file given as
/// `<(…)` or deleted after the start, and one `HTTP/2.0` line past
/// `--restart-held`, ended it: exit 2, nothing listening). A pipe is said
/// at start; a file gone is said when a restart is due.
#[test]
fn a_token_file_that_cannot_be_read_again_keeps_the_run() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let capture = dir.path().join("c.jsonl");
    let common = ["--restart-held", "1", "--read-timeout", "2", "--capture"];
    let from_file = Receiver::spawn(
        binary()
            .env_remove("AUTOPI_RX_TOKEN")
            .args(common)
            .arg(dir.path().join("a.jsonl"))
            .arg("--token-file")
            .arg(&file),
    );
    let mut piped = std::process::Command::new("bash");
    piped.env_remove("AUTOPI_RX_TOKEN").args([
        "-c",
        &format!("exec \"$0\" \"$@\" --token-file <(printf '%s\\n' {TOKEN})"),
        env!("CARGO_BIN_EXE_autopi-rx"),
    ]);
    piped.args(common).arg(&capture);
    let piped = Receiver::spawn(&mut piped);
    piped.wait_stderr("--restart-held is off: a restart could not start again");
    std::fs::remove_file(&file).unwrap();
    for rx in [&from_file, &piped] {
        let mut s = TcpStream::connect(rx.addr).unwrap();
        s.write_all(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").unwrap();
    }
    from_file.wait_stderr("not restarting in place while the next run could not start");
    let mut page = String::new();
    let held = wait_until(Duration::from_secs(20), || {
        page = status_page(piped.addr);
        status_count(&page, "held: ") == Some(1)
    });
    assert!(held, "{page}");
    for mut rx in [from_file, piped] {
        device_upload(rx.addr).expect("served, by the same run");
        let said = rx.stderr();
        assert!(!said.contains("autopi-rx: restarting in place"), "{said}");
        assert!(rx.child.try_wait().unwrap().is_none(), "{said}");
        assert!(!said.contains(TOKEN), "{said}");
        rx.stop();
    }
}

/// With `--restart-held 0` the receiver never restarts: the connections
/// tiny_http deadlocked on stay, counted on the status page as held once
/// shut for two read timeouts (5 s at least), and devices are served.
#[test]
fn held_connections_are_counted_and_kept_when_restarts_are_off() {
    let _heavy = heavy();
    let rx = receiver_with(&secs(READ_TIMEOUT), &["--restart-held", "0"]);
    let pid = rx.child.id();
    let idle = usage(pid).unwrap().fds;
    for _ in 0..10 {
        let mut s = TcpStream::connect(rx.addr).unwrap();
        s.write_all(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").unwrap();
    }
    let mut page = String::new();
    let counted = wait_until(Duration::from_secs(20), || {
        page = status_page(rx.addr);
        status_count(&page, "held: ") == Some(10)
    });
    assert!(counted, "not counted as held: {page}");
    // Not restarted two looks of a restarter later (one that asked at
    // the first would have said so by then).
    std::thread::sleep(Duration::from_secs(1));
    device_upload(rx.addr).expect("a device meanwhile");
    let said = rx.stderr();
    assert!(!said.contains("restart"), "{said}");
    let fds = usage(pid).unwrap().fds;
    assert!(
        fds >= idle + 20,
        "the held descriptors are gone: {fds}, idle {idle}"
    );
}

/// Sends `requests` as `probe_malformed_requests_leave_nothing_behind`
/// says, to a receiver given `extra` flags, and checks what is left;
/// returns it to be checked further and finished.
fn leave_nothing_behind(extra: &[&str], requests: Vec<(&'static str, Vec<u8>)>) -> Probed {
    let _heavy = heavy();
    let mut p = Probed::start_with(&secs(READ_TIMEOUT), extra);
    let watch = Watch::start(p.pid());
    let count = 40 * requests.len();
    for (name, bytes) in requests {
        let mut sent = 0;
        for _ in 0..40 {
            if let Ok(mut s) = TcpStream::connect_timeout(&p.rx.addr, Duration::from_secs(2)) {
                sent += usize::from(s.write_all(&bytes).is_ok());
            }
        }
        let now = usage(p.pid());
        println!("{name}: {sent} sent and closed; receiver now {now:?}");
    }
    let probe = format!("{count} malformed requests");
    let probe = probe.as_str();
    Devices::now(p.rx.addr, 3).check(probe, &mut p.failures);
    let peak = watch.stop();
    p.check_peak(probe, peak);
    p.check_return(probe);
    p
}

/// Writes `requests` pipelined GETs on one connection and never reads an
/// answer. Sets `written` when done or when the receiver stopped taking
/// them (write timeout or error).
fn pipelined_flood(
    addr: SocketAddr,
    requests: usize,
    written: Arc<AtomicBool>,
) -> (TcpStream, JoinHandle<usize>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_write_timeout(Some(SLACK)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let chunk = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
        let mut sent = 0;
        while sent < requests && writer.write_all(&chunk).is_ok() {
            sent += 100;
        }
        written.store(true, Ordering::SeqCst);
        sent
    });
    (stream, thread)
}

#[test]
fn probe_pipelined_flood_never_read() {
    let _heavy = heavy();
    let probe = "20 000 pipelined GETs never read";
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let written = Arc::new(AtomicBool::new(false));
    let (flood, writer) = pipelined_flood(p.rx.addr, 20_000, written.clone());
    // The receiver has read what it is going to read before the devices
    // come: all of it, or until the socket's buffers are full.
    wait_until(Duration::from_secs(10), || written.load(Ordering::SeqCst));
    Devices::now(p.rx.addr, 5).check(probe, &mut p.failures);
    p.alive(probe);
    drop(flood);
    println!("{probe}: {} requests written", writer.join().unwrap());
    let peak = watch.stop();
    p.check_peak(probe, peak);
    p.check_return(probe);
    p.finish();
}

/// 30 connections at once, each pipelining 20 000 GETs it never reads:
/// the requests past each connection's pipelining limit are let go of as
/// tiny_http hands them over, without a worker woken or added for each
/// (threads stay within tiny_http's one per connection and a margin), no
/// flooding connection is taken for one stuck in a pool's queue (nudged),
/// and devices are served. Memory is printed, not judged: a connection past
/// the limit is shut and what it had queued thrown away (the closer's unit
/// test checks that), but how much tiny_http parsed before that depends on
/// how far behind its queue the pump was (29-65 MiB over idle here; 82-98
/// when nothing was thrown away).
#[test]
fn pipelined_floods_on_many_connections_add_no_worker_per_request() {
    let _heavy = heavy();
    let probe = "30 connections pipelining 20 000 GETs each, never read";
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let floods: Vec<_> = (0..30)
        .map(|_| {
            let written = Arc::new(AtomicBool::new(false));
            let (flood, writer) = pipelined_flood(p.rx.addr, 20_000, written.clone());
            (flood, writer, written)
        })
        .collect();
    for (_, _, written) in &floods {
        wait_until(Duration::from_secs(20), || written.load(Ordering::SeqCst));
    }
    Devices::now(p.rx.addr, 5).check(probe, &mut p.failures);
    p.alive(probe);
    let mut sent = 0;
    for (flood, writer, _) in floods {
        drop(flood);
        sent += writer.join().unwrap();
    }
    let peak = watch.stop();
    println!(
        "{probe}: {sent} requests written; peak RSS {} MiB (idle {} MiB), threads {} (idle {})",
        peak.rss_kib / 1024,
        p.idle.rss_kib / 1024,
        peak.threads,
        p.idle.threads
    );
    // tiny_http's threads for the connections, the closer's nudges, a
    // worker or two per connection's served requests: 64-169 at the peak
    // here, where a worker woken or added per request let go of made it
    // 905-912.
    let most = p.idle.threads + 200;
    if peak.threads > most {
        p.failures.push(format!(
            "{probe}: {} threads at the peak, more than {most}",
            peak.threads
        ));
    }
    // A flooding connection is being read, however far behind tiny_http's
    // queue the pumps are: it is never taken for one stuck in a pool's
    // queue. Taken so, every one of them drew nudges, each a connection to
    // ourselves and often a thread: thousands on 260 connections.
    let nudges = nudges(&status_page(p.rx.addr));
    println!("{probe}: {nudges} nudges");
    if nudges > NUDGES_FOR_DEVICES {
        p.failures.push(format!(
            "{probe}: {nudges} nudges, more than the devices' {NUDGES_FOR_DEVICES}"
        ));
    }
    p.check_return(probe);
    p.finish();
}

/// A connection that takes its answers as slowly as the kernel allows: a
/// receive buffer and a segment size as small as it lets them be, so that
/// a few hundred answers fill what the receiver can send to it.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(2304).unwrap();
    s.set_tcp_mss(536).unwrap();
    s.connect(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

/// Workers busy now, from the status page (the status request's own
/// included).
fn busy_workers(addr: SocketAddr) -> u64 {
    busy_of(&status_page(addr))
}

/// Workers busy, as a status page says.
fn busy_of(page: &str) -> u64 {
    status_count(page, "workers: ").unwrap_or_else(|| panic!("no workers line: {page}"))
}

/// The count a status page's line starting with `label` begins with; None
/// without such a line (a count of 0 is not shown).
fn status_count(page: &str, label: &str) -> Option<u64> {
    let rest = page.lines().find_map(|l| l.strip_prefix(label))?;
    let n = rest.split(' ').next().unwrap_or_default();
    Some(
        n.parse()
            .unwrap_or_else(|_| panic!("not a count: {label}{rest}")),
    )
}

/// 40 connections pipelining status requests (no token) and never reading
/// their answers, until the receiver's send buffers to them are full: each
/// holds one worker at most (the one whose answer cannot be written); the
/// requests waiting behind it are parked and hold none (a worker each, 9
/// per connection for the send timeout, before). Devices are served
/// meanwhile. Once the clients are gone, the workers are free and nothing
/// is left parked: each parked request had its turn.
#[test]
fn pipelining_clients_that_never_read_hold_one_worker_each_at_most() {
    const PROBE: &str = "40 connections pipelining status requests, never reading";
    const CONNECTIONS: u64 = 40;
    let _heavy = heavy();
    // The send timeout is the read timeout: a write blocked stays so for
    // the whole probe.
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let addr = p.rx.addr;
    let watch = Watch::start(p.pid());
    let mut conns: Vec<(TcpStream, usize)> =
        (0..CONNECTIONS).map(|_| (slow_reader(addr), 0)).collect();
    let (done, devices) = devices_meanwhile(addr);
    let gets = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut most = 0;
    // About 25 requests a second on each, slow enough that a receiver
    // sharing a loaded machine keeps up (one that lags 8 behind cuts the
    // connection for pipelining before its send buffer is full): their
    // answers fill the send buffers in about four seconds.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for (c, at) in &mut conns {
            // Whole requests only: what a write leaves is sent next time.
            if let Ok(n) = c.write(&gets[*at..]) {
                *at = (*at + n) % gets.len();
            }
        }
        most = most.max(busy_workers(addr));
        std::thread::sleep(Duration::from_millis(40));
    }
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check(PROBE, &mut p.failures);
    println!("{PROBE}: {most} workers busy at the most");
    // Enough connections held up by an answer they do not read that the
    // bound below tells: 6 or more (one busy each, and the device's and
    // the status request's) would have held 54 workers or more when each
    // waiting request held one. Fewer, and the probe did not probe. How
    // many fill at once depends on the machine's load (19-38 here).
    if most < 8 {
        p.failures.push(format!(
            "{PROBE}: {most} workers busy at the most: the answers never filled the send buffers"
        ));
    }
    // One per connection, the status request's, and two of the device's:
    // it sends its next upload on a new connection as soon as it has its
    // answer, and the worker that answered counts busy until it is done
    // after that (43 in 2 runs of 20 with a bound of 42).
    if most > CONNECTIONS + 3 {
        p.failures.push(format!(
            "{PROBE}: {most} workers busy: requests waiting their turn held workers"
        ));
    }
    p.alive(PROBE);
    // Gone, they reset their connections: the blocked writes fail, and
    // each request parked behind one has its turn (its answer fails too).
    drop(conns);
    let started = Instant::now();
    let mut page = String::new();
    let free = wait_until(SLACK, || {
        page = status_page(addr);
        busy_of(&page) <= 1 && !page.contains("pipelined:")
    });
    if free {
        println!(
            "{PROBE}: workers free and nothing parked {:?} after the clients went",
            started.elapsed()
        );
    } else {
        p.failures.push(format!(
            "{PROBE}: workers busy or requests parked {:?} after the clients went:\n{page}",
            started.elapsed()
        ));
    }
    let peak = watch.stop();
    p.check_peak(PROBE, peak);
    p.check_return(PROBE);
    p.finish();
}

/// Nudges a few devices' connections may draw, each left in a pool's
/// queue by the burst around it: a look nudges once per server and once
/// per stuck connection, up to four rounds, and a connection is nudged at
/// up to 20 looks. Without the check that a flooding connection was read,
/// the 30 connections drew 572 and 1 456.
const NUDGES_FOR_DEVICES: u64 = 250;

/// The closer's nudges so far, from the status page (no line: none).
fn nudges(status: &str) -> u64 {
    assert!(
        status.contains("workers: "),
        "not the status page: {status}"
    );
    status_count(status, "nudges: ").unwrap_or(0)
}

/// One hostile request announcing a 1 TiB body; `read` waits for the
/// status line before closing.
fn absurd_length(addr: SocketAddr, with_token: bool, read: bool) -> io::Result<()> {
    let mut s = absurd_head(addr, "1099511627776", with_token)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"[]")?;
    if read {
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
    }
    Ok(())
}

/// Opens a connection and sends a request head announcing `length` body
/// bytes; the connection is returned open.
fn absurd_head(addr: SocketAddr, length: &str, with_token: bool) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    let auth = if with_token {
        format!("authorization: token {TOKEN}\r\n")
    } else {
        String::new()
    };
    write!(
        s,
        "POST /absurd HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {length}\r\n\r\n"
    )?;
    Ok(s)
}

#[test]
fn probe_10000_absurd_content_lengths() {
    let _heavy = heavy();
    let probe = "10 000 requests announcing Content-Length: 1099511627776";
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let addr = p.rx.addr;
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut failed = 0;
                for i in 0..2500 {
                    if Instant::now() > deadline {
                        return (i, failed);
                    }
                    // Every fourth with the token (413 rather than 401);
                    // half wait for the answer, half close at once.
                    if absurd_length(addr, (i + t) % 4 == 0, i % 2 == 0).is_err() {
                        failed += 1;
                    }
                }
                (2500, failed)
            })
        })
        .collect();
    let devices = {
        let done = done.clone();
        std::thread::spawn(move || Devices::during(addr, 5, &done))
    };
    let (mut sent, mut failed) = (0, 0);
    for t in threads {
        let (s, f) = t.join().unwrap();
        sent += s;
        failed += f;
    }
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check(probe, &mut p.failures);
    println!("{probe}: {sent} sent, {failed} without an answer or cut by the receiver");
    if sent < 10_000 {
        p.failures
            .push(format!("{probe}: only {sent} sent in 30 s"));
    }
    p.alive(probe);
    let peak = watch.stop();
    p.check_peak(probe, peak);
    p.check_return(probe);
    p.finish();
}

/// Absurd lengths whose connections stay open: more tebibyte drains than
/// the address space holds at once, and lengths beyond `isize::MAX`.
#[test]
fn absurd_lengths_held_open_are_let_go() {
    let _heavy = heavy();
    let probe =
        "150 held connections announcing 1 TiB, 20 announcing 2^64-1 with a request after the head";
    let mut p = Probed::start(&secs(READ_TIMEOUT));
    let watch = Watch::start(p.pid());
    let addr = p.rx.addr;
    let done = Arc::new(AtomicBool::new(false));
    let devices = {
        let done = done.clone();
        std::thread::spawn(move || Devices::during(addr, 5, &done))
    };
    // Opened 10 ms apart, not all at the same instant: a burst would also
    // meet tiny_http's pool race, which has its own test below.
    let held: Vec<TcpStream> = (0..170)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(10));
            if i < 150 {
                absurd_head(addr, "1099511627776", i % 2 == 0).unwrap()
            } else {
                // What follows the head must never be taken as a request.
                let mut s = absurd_head(addr, &u64::MAX.to_string(), i % 2 == 0).unwrap();
                s.write_all(b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                s
            }
        })
        .collect();
    // Every one is answered (in its turn: 32 TiB of drains at a time,
    // each held for up to one read timeout) and then closed.
    let deadline = Instant::now() + READ_TIMEOUT * 10 + SLACK * 2;
    let mut unanswered = 0;
    let mut held = held;
    for s in &mut held {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        // Answered, then closed by the receiver (not by the deadline).
        let mut all = Vec::new();
        let closed = s.read_to_end(&mut all).is_ok();
        let text = String::from_utf8_lossy(&all);
        if !closed
            || !(text.starts_with("HTTP/1.1 401") || text.starts_with("HTTP/1.1 413"))
            || text.matches("HTTP/1.1").count() != 1
        {
            unanswered += 1;
        }
    }
    done.store(true, Ordering::SeqCst);
    // A device meeting tiny_http's pool race while every thread of the
    // pool is held is nudged through (README: Hostile networks, 5).
    devices.join().unwrap().check(probe, &mut p.failures);
    if unanswered > 0 {
        p.failures.push(format!(
            "{probe}: {unanswered} of {} not answered 401/413 and closed",
            held.len()
        ));
    }
    drop(held);
    p.alive(probe);
    let smuggled: Vec<String> =
        p.rx.remaining_stdout()
            .into_iter()
            .filter(|l| l.contains("/smuggled"))
            .collect();
    if !smuggled.is_empty() {
        p.failures.push(format!(
            "{probe}: a request inside an announced body was taken: {smuggled:?}"
        ));
    }
    let status = status_page(p.rx.addr);
    if status.contains("parked:") {
        p.failures
            .push(format!("{probe}: requests were kept for good: {status}"));
    }
    let stderr = p.rx.stderr();
    if stderr.contains("panicked") || stderr.contains("overflow") {
        p.failures
            .push(format!("{probe}: a panic was printed: {stderr}"));
    }
    let peak = watch.stop();
    p.check_peak(probe, peak);
    p.check_return(probe);
    p.finish();
}

/// A length beyond the address space but within `isize::MAX` (1 PiB) is
/// what no lever reaches: answered, then kept until exit and counted on
/// the status page, while the receiver goes on.
#[test]
fn a_length_beyond_the_address_space_is_answered_and_parked() {
    let rx = receiver(&secs(READ_TIMEOUT));
    for with_token in [false, true] {
        let mut s = absurd_head(rx.addr, &(1u64 << 50).to_string(), with_token).unwrap();
        s.set_read_timeout(Some(SLACK)).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert!(head.starts_with(b"HTTP/1.1 4"), "{head:?}");
    }
    let status = wait_until(SLACK, || {
        status_page(rx.addr).contains("parked: 2 request(s)")
    });
    assert!(status, "the status page does not count them");
    // Their connections are closed, so they are not counted as held
    // connections as well (a restart in place counts them once).
    assert_eq!(status_count(&status_page(rx.addr), "held: "), None);
    device_upload(rx.addr).expect("a device after them");
    assert!(!rx.stderr().contains("panicked"), "{}", rx.stderr());
    // Stopping leaves them to the process's exit instead of dropping them.
    let mut rx = rx;
    let status = rx.stop();
    assert!(status.success(), "{status:?}; stderr: {}", rx.stderr());
}

/// Sends a request head whose one header line never ends, in 64 KiB
/// pieces, until `limit` bytes went out, the receiver stopped reading
/// for `SLACK`, or its RSS passed the limit (kept off the machine).
fn endless_header(addr: SocketAddr, pid: u32, limit: usize) -> (usize, Duration, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(SLACK)).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    let end = match s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ") {
        Err(e) => e.to_string(),
        Ok(()) => {
            let piece = vec![b'a'; 64 * 1024];
            loop {
                if sent >= limit {
                    break "sent all".to_string();
                }
                if usage(pid).is_none_or(|u| u.rss_kib >= RSS_LIMIT_KIB) {
                    break "stopped at the RSS limit".to_string();
                }
                if let Err(e) = s.write_all(&piece) {
                    break format!("cut by the receiver: {e}");
                }
                sent += piece.len();
            }
        }
    };
    (sent, started.elapsed(), end)
}

/// Pipelines GETs without reading for `for_how_long`, or until the
/// receiver stops reading for `SLACK`, or its RSS passes the limit.
fn endless_pipeline(addr: SocketAddr, pid: u32, for_how_long: Duration) -> (usize, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(SLACK)).unwrap();
    let chunk = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
    let started = Instant::now();
    let mut sent = 0;
    let end = loop {
        if started.elapsed() >= for_how_long {
            break "sent for the whole time".to_string();
        }
        if usage(pid).is_none_or(|u| u.rss_kib >= RSS_LIMIT_KIB) {
            break "stopped at the RSS limit".to_string();
        }
        if let Err(e) = s.write_all(&chunk) {
            break format!("cut by the receiver after {:?}: {e}", started.elapsed());
        }
        sent += 1000;
    };
    (sent, end)
}

/// Runs one endless probe (`run` returns a line saying how it went)
/// while devices upload; devices must be served, the receiver must live,
/// and its descriptors and threads must return once the probe closes. How
/// much memory the probe could hold is printed, not judged: the writer
/// stops at the RSS limit to spare the machine.
fn endless(p: &mut Probed, probe: &str, run: impl FnOnce() -> String) {
    let addr = p.rx.addr;
    let watch = Watch::start(p.pid());
    let (done, devices) = devices_meanwhile(addr);
    let how = run();
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check(probe, &mut p.failures);
    let peak = watch.stop();
    p.alive(probe);
    p.check_return(probe);
    let after = usage(p.pid()).map_or(0, |u| u.rss_kib);
    println!(
        "REMAINS, {probe}: {how}; RSS grew by {} MiB to {} MiB (idle {} MiB, {} MiB once it closed)",
        peak.rss_kib.saturating_sub(p.idle.rss_kib) / 1024,
        peak.rss_kib / 1024,
        p.idle.rss_kib / 1024,
        after / 1024
    );
}

/// How an endless sender fared: what it sent before its writes stopped
/// (and how they stopped), whether the receiver closed the connection,
/// what it answered, and how much the receiver's RSS grew.
struct EndlessCut {
    sent_mib: usize,
    stopped: Option<io::ErrorKind>,
    closed: bool,
    answer: String,
    grew_mib: u64,
}

/// Sends `start`, then `each` without end in 64 KiB pieces, until 256 MiB
/// went out (what the receiver would hold whole without a cap), its RSS
/// reached the limit, or a write failed; then reads what comes back until
/// the receiver closes, or `SLACK` passes. Devices upload meanwhile and
/// are checked as `probe`.
fn endless_cut(p: &mut Probed, probe: &str, start: &[u8], each: u8) -> EndlessCut {
    let (addr, pid) = (p.rx.addr, p.pid());
    let watch = Watch::start(pid);
    let (done, devices) = devices_meanwhile(addr);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(SLACK)).unwrap();
    s.write_all(start).unwrap();
    let piece = vec![each; 64 * 1024];
    let mut sent = 0usize;
    let mut stopped = None;
    while sent < 256 << 20 && usage(pid).is_some_and(|u| u.rss_kib < RSS_LIMIT_KIB) {
        if let Err(e) = s.write_all(&piece) {
            stopped = Some(e.kind());
            break;
        }
        sent += piece.len();
    }
    // End-of-file or a reset is the receiver's close (a reset may come
    // before an answer, which is then lost); a timeout is not.
    s.set_read_timeout(Some(SLACK)).unwrap();
    let mut answer = Vec::new();
    let closed = match s.read_to_end(&mut answer) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    };
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check(probe, &mut p.failures);
    let peak = watch.stop();
    let cut = EndlessCut {
        sent_mib: sent >> 20,
        stopped,
        closed,
        answer: String::from_utf8_lossy(&answer).into_owned(),
        grew_mib: peak.rss_kib.saturating_sub(p.idle.rss_kib) / 1024,
    };
    println!(
        "{probe}: {} MiB sent before the writer stopped ({:?}); closed by the receiver: {}; \
         RSS grew by {} MiB; answer: {:?}",
        cut.sent_mib,
        cut.stopped,
        cut.closed,
        cut.grew_mib,
        cut.answer.lines().next().unwrap_or("")
    );
    if !cut.closed {
        p.failures.push(format!("{probe}: never closed"));
    }
    if cut.grew_mib >= 64 {
        p.failures
            .push(format!("{probe}: RSS grew by {} MiB", cut.grew_mib));
    }
    drop(s);
    p.alive(probe);
    p.check_return(probe);
    cut
}

/// An endless head is cut: once tiny_http has read 1 MiB of a head with
/// no request of the connection in hand, the receiver closes it (the
/// client reads end-of-file) and resets it, memory stays far under what
/// the client sent, and devices are served meanwhile.
#[test]
fn an_endless_head_is_cut_past_its_cap() {
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let cut = endless_cut(
        &mut p,
        "endless head",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ",
        b'a',
    );
    // Reset, not left to stall: a write that times out means the sender
    // was left waiting on a closed window.
    if matches!(
        cut.stopped,
        None | Some(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    ) {
        p.failures.push(format!(
            "endless head: the writer was not reset (it stopped with {:?})",
            cut.stopped
        ));
    }
    p.finish();
}

/// Uploads with the token whose bodies never come each hold a worker
/// until the read timeout. A device that comes after a burst of them must
/// find a worker: workers are added as requests are handed out, counted
/// when handed out rather than when a worker starts on one (a worker that
/// had taken a request but not yet counted itself busy passed for idle,
/// so the request behind a burst could find every worker held and wait
/// for a read timeout: about half the runs of such a burst here, found by
/// a hostile-client probe). Six bursts of 30, each followed by a device.
#[test]
fn a_device_after_a_burst_of_stalled_uploads_finds_a_worker() {
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let addr = p.rx.addr;
    // An upload with the token, cut mid-body (`stall_bytes`' third kind).
    let held = stall_bytes(2);
    let mut stalled = Vec::new();
    for burst in 1..=6 {
        for _ in 0..30 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&held).unwrap();
            stalled.push(s);
        }
        match device_upload(addr) {
            Ok(took) if took <= DEVICE_ACK => {}
            Ok(took) => p.failures.push(format!(
                "burst {burst}: the device was answered after {took:?}; {}",
                status_then(addr)
            )),
            Err(e) => p
                .failures
                .push(format!("burst {burst}: {e}; {}", status_then(addr))),
        }
    }
    drop(stalled);
    p.alive("stalled uploads");
    p.check_return("stalled uploads");
    p.finish();
}

/// Heads of tiny header lines on many connections at once, each under the
/// 1 MiB cap: tiny_http keeps every line as two strings in a `Vec`, 20 to
/// 30 times the line's 5 bytes (30 such heads of 900 KiB took the
/// receiver to 711–813 MiB before the budget). Past the budget for all
/// heads (`HEADS_BUDGET`, 2 MiB) every head over `HEAD_FLOOR` (2 KiB) is
/// cut, and closed within `CLOSED_BY_US` (the read timeout is 30 s); heads
/// that tiny_http had not read yet at that look may go on while they hold
/// no more than the budget together (at most 2 of these). Memory stays
/// under the issue's bound, and devices are served meanwhile.
#[test]
fn heads_of_tiny_lines_on_many_connections_are_cut_past_the_budget() {
    const CONNECTIONS: usize = 20;
    const EACH: usize = 900 * 1024;
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let (addr, pid) = (p.rx.addr, p.pid());
    let watch = Watch::start(pid);
    let (done, devices) = devices_meanwhile(addr);
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(SLACK)).unwrap();
                let lines = b"a:b\r\n".repeat(EACH / 5);
                let sent = s
                    .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
                    .and_then(|()| s.write_all(&lines));
                // End-of-file or a reset is the receiver's close; a
                // timeout is not.
                s.set_read_timeout(Some(CLOSED_BY_US)).unwrap();
                let closed = match sent.and_then(|()| s.read_to_end(&mut Vec::new())) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                };
                (closed, s)
            })
        })
        .collect();
    let ended: Vec<(bool, TcpStream)> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let open = ended.iter().filter(|(closed, _)| !closed).count();
    done.store(true, Ordering::SeqCst);
    let probe = "heads of tiny lines on 20 connections";
    devices.join().unwrap().check(probe, &mut p.failures);
    let peak = watch.stop();
    p.check_peak(probe, peak);
    println!("{probe}: {open} of {CONNECTIONS} left open");
    if open > autopi_rx::receiver::heads::HEADS_BUDGET as usize / EACH {
        p.failures.push(format!(
            "{probe}: {open} of {CONNECTIONS} not closed within {CLOSED_BY_US:?}"
        ));
    }
    drop(ended);
    p.alive(probe);
    p.check_return(probe);
    p.finish();
}

/// Sends an upload on `c` in 8 pieces 40 ms apart (it spans several of
/// the closer's looks), and checks it is answered 200.
fn paced_upload(c: &mut Conn, bytes: &[u8], what: &str) {
    for piece in bytes.chunks(bytes.len() / 8 + 1) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(40));
    }
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert_eq!(r.status, 200, "{what}: {}", r.text());
}

/// The head cap never cuts a healthy keep-alive client: large uploads,
/// each sent in pieces over several of the closer's looks, with pauses
/// between them, all answered on one connection.
#[test]
fn large_uploads_on_one_keep_alive_connection_are_never_cut_by_the_head_cap() {
    let _heavy = heavy();
    let rx = receiver(LONG_READ_TIMEOUT);
    let mut c = Conn::open(rx.addr);
    let auth = format!("token {TOKEN}");
    for i in 0..4 {
        let body = format!(
            r#"[{{"@t":"big","@ts":"2026-12-02T01:00:0{i}","blob":"{}"}}]"#,
            "a".repeat(3 << 20)
        );
        let bytes = request_bytes(
            "POST",
            &[
                ("authorization", &auth),
                ("unit-id", "ee3df171ff0f6209a3dbaa00b00e1d05"),
            ],
            body.as_bytes(),
        );
        paced_upload(&mut c, &bytes, &format!("upload {i}"));
        // Quiet between uploads, over several looks.
        std::thread::sleep(Duration::from_millis(300));
    }
    // The same connection still serves, and the receiver closed nothing.
    let status = c.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(!status.text().contains("closed: "), "{}", status.text());
}

/// Requests pipelined behind a slow one wait for their turn (their
/// connection's order), parked without a worker, and a turn's end hands
/// over its own connection's next request, never another's. A large upload coming
/// slowly holds the turn for large bodies; 400 connections with the token
/// each pipeline 8 gzip uploads whose trailers claim 2 MiB inflated, so
/// the first of each waits for that turn (then 503) and 7 wait behind it,
/// while 60 connections pipeline status requests 8 at a time, each ending
/// a turn, and reading the 8 answers before sending 8 more: none of them is
/// cut for pipelining too much. Devices are answered within 1 s. (When
/// each waiting request held a worker woken by one wake-up shared by all
/// connections, a probe saw devices wait 1.6 to 4.9 s. Until December 5,
/// most status clients were cut in every run, each
/// a moment before its last answer was done with, and in about one run in
/// 13 under two busy loops a device that connected from such a client's
/// port got no answer.)
#[test]
fn requests_waiting_their_turn_on_many_connections_do_not_delay_devices() {
    const PROBE: &str = "requests waiting their turn";
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let (addr, pid) = (p.rx.addr, p.pid());
    let (mut holder, coming) = large_coming(addr, "large.holder", 8 << 10);
    let mut claiming = gzip(&batch("turn.waiter"));
    let at = claiming.len() - 4;
    claiming[at..].copy_from_slice(&(2u32 << 20).to_le_bytes());
    let auth = format!("token {TOKEN}");
    let uploads = request_bytes(
        "POST",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        &claiming,
    )
    .repeat(8);
    let watch = Watch::start(pid);
    let waiting: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&uploads).unwrap();
            s
        })
        .collect();
    // Until most of them wait their turn (7 on each connection).
    let mut page = String::new();
    let piled = wait_until(Duration::from_secs(20), || {
        page = status_page(addr);
        status_count(&page, "pipelined: ").unwrap_or(0) >= 2000
    });
    assert!(piled, "the pipelined uploads never waited:\n{page}");
    let (done, devices) = devices_meanwhile(addr);
    let until = Instant::now() + Duration::from_secs(6);
    let statuses = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(8);
    // Each pipelining client's answers, and how it ended if not in time.
    let ends: Vec<(usize, Option<String>)> = std::thread::scope(|s| {
        let pipeliners: Vec<_> = (0..60)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Conn::open(addr);
                    let mut answered = 0;
                    while Instant::now() < until {
                        c.send(&statuses);
                        for _ in 0..8 {
                            match c.try_read_response(false) {
                                Ok(r) if r.status == 200 => answered += 1,
                                Ok(r) => return (answered, Some(format!("answered {}", r.status))),
                                Err(e) => return (answered, Some(e.to_string())),
                            }
                        }
                    }
                    (answered, None)
                })
            })
            .collect();
        pipeliners.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let answered: usize = ends.iter().map(|(n, _)| n).sum();
    let cut: Vec<String> = ends
        .iter()
        .filter_map(|(n, end)| end.as_ref().map(|e| format!("after {n} answers: {e}")))
        .collect();
    if !cut.is_empty() {
        p.failures.push(format!(
            "{PROBE}: status clients pipelining 8 at a time were cut: {cut:?}"
        ));
    }
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check(PROBE, &mut p.failures);
    let peak = watch.stop();
    // Turns ended meanwhile: each pipelining connection had at least a
    // round of 8 answered.
    if answered < 60 * 8 {
        p.failures.push(format!(
            "{PROBE}: only {answered} status answers: the turns were not exercised"
        ));
    }
    println!(
        "{PROBE}: 400 connections with 8 uploads pipelined, 60 pipelining status requests: \
         {answered} status answers in 6 s"
    );
    // The large upload ends: the turn for large bodies goes to each
    // waiting upload in turn (small, once inflated), and their workers
    // return.
    coming.finish();
    assert_eq!(holder.read_response(false).status, 200);
    drop(waiting);
    p.check_peak(PROBE, peak);
    p.check_return(PROBE);
    p.finish();
}

/// Gzip bodies of a few kilobytes that each inflate to 31 MiB (line ends
/// around one record, under `--max-body`), 24 at once with the token: large
/// bodies are decoded one at a time, so RSS stays under the limit; each is
/// answered 200, or 503 with `Retry-After` when it waited too long for its
/// turn; devices are served meanwhile, and everything returns.
#[test]
fn bodies_that_inflate_large_are_decoded_one_at_a_time() {
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let (addr, pid) = (p.rx.addr, p.pid());
    let record = r#"{"@t":"inflated","@ts":"2026-12-02T01:00:00"}"#;
    let bomb = gzip(format!("[{}{record}]", "\n".repeat(31 << 20)).as_bytes());
    let auth = format!("token {TOKEN}");
    let request = request_bytes("POST", &[("authorization", &auth)], &bomb);
    let watch = Watch::start(pid);
    let (done, devices) = devices_meanwhile(addr);
    let answers: Vec<Result<(u16, bool), String>> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..24)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Conn::open(addr);
                    c.send(&request);
                    c.try_read_response(false)
                        .map(|r| (r.status, r.header("retry-after").is_some()))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        senders.into_iter().map(|t| t.join().unwrap()).collect()
    });
    done.store(true, Ordering::SeqCst);
    devices
        .join()
        .unwrap()
        .check("inflating bodies", &mut p.failures);
    let peak = watch.stop();
    let saved = answers.iter().filter(|a| matches!(a, Ok((200, _)))).count();
    let busy = answers
        .iter()
        .filter(|a| matches!(a, Ok((503, true))))
        .count();
    println!(
        "24 bodies inflating to 31 MiB each, at once: {saved} answered 200, {busy} 503 (wait for their turn); \
         RSS grew by {} MiB",
        peak.rss_kib.saturating_sub(p.idle.rss_kib) / 1024
    );
    if saved == 0 || saved + busy != answers.len() {
        p.failures.push(format!(
            "inflating bodies: wanted 200s and 503s with Retry-After, got {answers:?}"
        ));
    }
    p.check_peak("inflating bodies", peak);
    p.alive("inflating bodies");
    p.check_return("inflating bodies");
    p.finish();
}

/// Bodies under 1 MiB once inflated share a budget of bytes being decoded
/// (`DECODE_BUDGET`): 150 connections with the token, each sending gzip
/// bodies of about 1 KiB that inflate to just under 1 MiB, as fast as they
/// are answered, for 3 s; half of them as two members, the last of one
/// byte, whose trailer says 1 (so the share first asked is too small, and
/// the body must ask again for one of 1 MiB before it inflates further).
/// Every one of them used to be inflated at once
/// (a release build peaked at 431 MiB; 303 MiB with 100 connections),
/// and a device's batch waited behind them (0.4 s at the median). Within
/// the budget RSS stays under the limit, each is answered 200 or 503 with
/// `Retry-After`, devices are served meanwhile, and everything returns.
#[test]
fn bodies_that_inflate_under_1_mib_share_a_budget_for_decoding() {
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let (addr, pid) = (p.rx.addr, p.pid());
    let record = r#"{"@t":"inflated","@ts":"2026-12-02T01:00:00"}"#;
    let text = format!("[{}{record}]", " ".repeat(1_000_000));
    let bomb = gzip(text.as_bytes());
    let (most, last) = text.as_bytes().split_at(text.len() - 1);
    let understated = [gzip(most), gzip(last)].concat();
    let auth = format!("token {TOKEN}");
    let requests =
        [&bomb, &understated].map(|body| request_bytes("POST", &[("authorization", &auth)], body));
    let watch = Watch::start(pid);
    let (done, devices) = devices_meanwhile(addr);
    let until = Instant::now() + Duration::from_secs(3);
    let answers: Vec<Result<u16, String>> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..150)
            .map(|i| {
                let request = &requests[i % 2];
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let mut answers = Vec::new();
                    while Instant::now() < until {
                        c.send(request);
                        let answer = c.try_read_response(false).map_err(|e| e.to_string());
                        answers.push(answer.and_then(|r| match r.status {
                            200 => Ok(200),
                            503 if r.header("retry-after").is_some() => Ok(503),
                            status => Err(format!("{status}: {}", r.text())),
                        }));
                    }
                    answers
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    done.store(true, Ordering::SeqCst);
    devices
        .join()
        .unwrap()
        .check("bodies inflating under 1 MiB", &mut p.failures);
    let peak = watch.stop();
    let saved = answers.iter().filter(|a| matches!(a, Ok(200))).count();
    let busy = answers.iter().filter(|a| matches!(a, Ok(503))).count();
    println!(
        "150 connections of {} B bodies inflating to {} B, 3 s: {saved} answered 200, {busy} 503 \
         (waited for a share); RSS grew by {} MiB",
        bomb.len(),
        text.len(),
        peak.rss_kib.saturating_sub(p.idle.rss_kib) / 1024
    );
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    if saved == 0 || !failed.is_empty() {
        p.failures.push(format!(
            "bodies inflating under 1 MiB: wanted 200s (and 503s with Retry-After), \
             {saved} saved, failures {failed:?}"
        ));
    }
    p.check_peak("bodies inflating under 1 MiB", peak);
    p.alive("bodies inflating under 1 MiB");
    p.check_return("bodies inflating under 1 MiB");
    p.finish();
}

/// Bodies read past their first 128 KiB hold a share of a 16 MiB budget
/// while they are read: 300 connections with the token, each sending the
/// head of a 1 MB upload and as much of its body as the receiver takes
/// (all but its last byte), then stopping, hold the receiver under
/// `RSS_LIMIT_KIB` while devices are answered within `DEVICE_ACK`. (Read
/// before any share was asked, such bodies took a release build to 347 MB
/// on 300 connections, 906–930 MB on 800, until the read timeout.) Those
/// that got no share stop waiting after 5 s and throw away what comes of
/// their body (their 503 would go out once it ended; here the test closes
/// them first); those holding one lose it as they stop coming while
/// others wait.
#[test]
fn bodies_read_past_128_kib_share_a_budget_while_read() {
    let _heavy = heavy();
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let (addr, pid) = (p.rx.addr, p.pid());
    let len = 1_000_000;
    let head = large_post(len);
    let body = vec![b' '; len - 1];
    let watch = Watch::start(pid);
    let (done, devices) = devices_meanwhile(addr);
    let held_until = Instant::now() + Duration::from_secs(7);
    let stalls: Vec<(TcpStream, usize)> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..300)
            .map(|_| {
                let (head, body) = (&head, &body);
                s.spawn(move || {
                    let mut stream =
                        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
                    stream
                        .set_write_timeout(Some(Duration::from_secs(2)))
                        .ok()?;
                    stream.write_all(head.as_bytes()).ok()?;
                    let mut sent = 0;
                    for piece in body.chunks(64 * 1024) {
                        if stream.write_all(piece).is_err() {
                            break;
                        }
                        sent += piece.len();
                    }
                    Some((stream, sent))
                })
            })
            .collect();
        senders
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect()
    });
    // Held while the waiting ones are refused and the holders lapse.
    std::thread::sleep(held_until.saturating_duration_since(Instant::now()));
    done.store(true, Ordering::SeqCst);
    devices
        .join()
        .unwrap()
        .check("bodies stalled past 128 KiB", &mut p.failures);
    let peak = watch.stop();
    let sent: usize = stalls.iter().map(|(_, n)| n).sum();
    println!(
        "{} connections stalled in 1 MB bodies after sending {} MiB in all (whole 64 KiB \
         pieces the receiver or the kernel took); RSS grew by {} MiB",
        stalls.len(),
        sent >> 20,
        peak.rss_kib.saturating_sub(p.idle.rss_kib) / 1024
    );
    if stalls.len() < 250 {
        p.failures.push(format!(
            "bodies stalled past 128 KiB: only {} of 300 connections opened",
            stalls.len()
        ));
    }
    p.check_peak("bodies stalled past 128 KiB", peak);
    drop(stalls);
    p.alive("bodies stalled past 128 KiB");
    p.check_return("bodies stalled past 128 KiB");
    p.finish();
}

/// A body that stops coming while it holds a share of the wire budget
/// loses it to one waiting, as a large body loses its turn. 19 uploads of
/// 1 MB send all but their last byte and stop: each holds a share of
/// what follows its first 128 KiB (849 KiB), and the 19 hold all but
/// 260 KiB of the 16 MiB. With nothing waiting, they keep their shares
/// past the lapse, and a body of 128 KiB needs none.
/// A 20th upload, sent whole, then waits for a share: those of the 19
/// the closer finds lapsed before the share is freed (at least one) are
/// cut (less than 8 KiB in 3 s while another waited) and refused 503,
/// nothing of them saved; the 20th gets its share within its 5 s wait and is
/// saved (without the lapse it would be refused 503 after its wait).
#[test]
fn a_body_that_stops_coming_loses_its_share_to_one_waiting() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let len = 1_000_000;
    let stalled = sized_batch("share.stalled", len);
    let mut holders: Vec<Conn> = (0..19)
        .map(|_| {
            let mut c = Conn::open(rx.addr);
            c.send(large_post(len).as_bytes());
            c.send(&stalled.as_bytes()[..len - 1]);
            c
        })
        .collect();
    let busy = wait_until(Duration::from_secs(10), || {
        status_page(rx.addr).contains("workers: 20 busy")
    });
    assert!(busy, "the 19 uploads were never all taken by workers");
    // With nothing waiting for a share, they keep theirs past the lapse.
    std::thread::sleep(autopi_rx::receiver::heads::TURN_LAPSE + Duration::from_secs(1));
    let page = status_page(rx.addr);
    assert!(
        page.contains("workers: 20 busy") && !page.contains("waiting for a share"),
        "a stalled upload lost its share with nothing waiting for it, or one waits: {page}"
    );
    // A body of 128 KiB never asks: answered at once, and no share lapses
    // for it.
    let free = sized_batch("share.free", 128 * 1024);
    let mut c = Conn::open(rx.addr);
    let answer = c.request(format!("{}{free}", large_post(free.len())).as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The worker that answered counts busy a moment after its answer is
    // out (21 busy, once in eight runs of the suite): the count settles at
    // 20, not fewer, and nothing was refused.
    let mut page = String::new();
    wait_until(Duration::from_secs(2), || {
        page = status_page(rx.addr);
        busy_of(&page) <= 20
    });
    assert!(
        busy_of(&page) == 20 && page.contains("(0 rejected)"),
        "a stalled upload lost its share to a body that needs none: {page}"
    );
    let whole = sized_batch("share.whole", len);
    let started = Instant::now();
    let mut last = Conn::open(rx.addr);
    last.send(large_post(len).as_bytes());
    last.send(whole.as_bytes());
    let saved = last
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", started.elapsed()));
    assert_eq!(
        saved.status,
        200,
        "after {:?}: {}",
        started.elapsed(),
        saved.text()
    );
    // As many are cut as lapsed at the look that freed the share; the
    // others, nothing waiting any more, keep theirs.
    let answers: Vec<Response> = std::thread::scope(|s| {
        let readers: Vec<_> = holders
            .iter_mut()
            .map(|holder| {
                s.spawn(move || {
                    holder
                        .stream()
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    holder.try_read_response(false).ok()
                })
            })
            .collect();
        readers
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect()
    });
    assert!(!answers.is_empty(), "no stalled upload was cut");
    for cut in &answers {
        assert_eq!(cut.status, 503, "{}", cut.text());
        assert!(cut.header("retry-after").is_some());
        assert!(cut.text().contains("held a share"), "{}", cut.text());
    }
    println!("{} of the 19 stalled uploads cut", answers.len());
    drop(holders);
    let saved = saved_after_stop(rx);
    assert!(saved.contains("share.whole"));
    assert!(!saved.contains("share.stalled"));
}

/// A batch of one record whose JSON is `len` bytes long.
fn sized_batch(tag: &str, len: usize) -> String {
    let frame = format!(r#"[{{"@t":"{tag}","@ts":"2026-12-02T01:00:00","blob":""}}]"#);
    let batch = format!(
        r#"[{{"@t":"{tag}","@ts":"2026-12-02T01:00:00","blob":"{}"}}]"#,
        "a".repeat(len - frame.len())
    );
    assert_eq!(batch.len(), len);
    batch
}

/// A body announced over 1 MiB takes its turn before it is read, so the
/// wire holds no more large bodies at once than decoding does: while one
/// large upload is being read (half sent, its turn held), a second one is
/// answered 503 with `Retry-After` once it has waited 5 s for its turn,
/// without a byte of its body read (it sends none; read first, it would
/// wait for its body until the read timeout, 30 s). The first is then
/// sent whole and saved.
#[test]
fn a_large_body_waits_for_its_turn_before_it_is_read() {
    let rx = receiver(LONG_READ_TIMEOUT);
    // It keeps coming while the others wait (one that stopped would lose
    // the turn to them: see the test after this one): 8 KiB every 500 ms,
    // six times what a body holding the turn must bring, and the 1 MiB
    // left lasts a minute.
    let (mut first, coming) = large_coming(rx.addr, "large.first", 8 << 10);
    // The others send a body of the same size.
    let body = large_batch("large.first");
    // Its worker holds the turn while it reads (the status request is
    // the other busy one).
    let busy = wait_until(Duration::from_secs(10), || {
        status_page(rx.addr).contains("workers: 2 busy")
    });
    assert!(busy, "the first upload was never taken by a worker");
    let started = Instant::now();
    let mut second = Conn::open_within(rx.addr, Duration::from_secs(15)).unwrap();
    second.send(large_post(body.len()).as_bytes());
    let refused = second
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", started.elapsed()));
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.text().contains("one at a time"),
        "{}",
        refused.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    coming.finish();
    let saved = first.read_response(false);
    assert_eq!(saved.status, 200, "{}", saved.text());
}

/// A 2 MiB batch (a body over the 1 MiB of a large one) tagged `tag`.
fn large_batch(tag: &str) -> String {
    format!(
        r#"[{{"@t":"{tag}","@ts":"2026-12-02T01:00:00","blob":"{}"}}]"#,
        "a".repeat(2 << 20)
    )
}

/// A large upload (`large_batch(tag)`) with half its body sent and the
/// rest coming `piece` bytes every 500 ms: it takes the turn for large
/// bodies, and keeps it while `piece` is 4 KiB or more. Its connection
/// reads the answer.
fn large_coming(addr: SocketAddr, tag: &str, piece: usize) -> (Conn, Pacer) {
    let body = large_batch(tag);
    let (mut conn, stream) = paced_conn(addr);
    conn.send(large_post(body.len()).as_bytes());
    let (sent, rest) = body.as_bytes().split_at(body.len() / 2);
    conn.send(sent);
    (conn, Pacer::start(stream, rest.to_vec(), piece))
}

/// The head of an upload with the token and a `Content-Length` of `len`.
fn large_post(len: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A connection to read answers on (patient: 30 s), and a clone of its
/// stream for a `Pacer` to write on.
fn paced_conn(addr: SocketAddr) -> (Conn, TcpStream) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (Conn::on(stream.try_clone().unwrap()), stream)
}

/// Sends `bytes` on a stream of its own, `piece` bytes every 500 ms, until
/// told to `finish` (the rest at once) or to `stop`, or a write fails.
struct Pacer {
    finish: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Pacer {
    fn start(mut stream: TcpStream, bytes: Vec<u8>, piece: usize) -> Pacer {
        let (finish, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (told_finish, told_stop) = (finish.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut pieces = bytes.chunks(piece);
            for piece in pieces.by_ref() {
                if told_stop.load(Ordering::SeqCst) || stream.write_all(piece).is_err() {
                    return;
                }
                if told_finish.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            for piece in pieces {
                if stream.write_all(piece).is_err() {
                    return;
                }
            }
        });
        Pacer {
            finish,
            stop,
            thread,
        }
    }

    /// The rest at once.
    fn finish(self) {
        self.finish.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
    }

    /// Nothing more.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// A large body that stops coming on while it holds the turn for large
/// bodies loses it to one waiting. The first sends three quarters of its
/// body, then a byte every half second: each read is in time, and its
/// deadline is minutes away (4 read timeouts, plus a second per 8 KiB that
/// came). With nothing waiting it keeps the turn past the lapse. Another
/// large upload, sent whole, then waits for the turn: the first is cut
/// (less than 8 KiB in 3 s while another waited) and refused 503,
/// nothing of it saved; the second gets the turn within its 5 s wait and
/// is saved. (Holding the turn, the first left every other large upload
/// refused 503 for as long as its deadline allowed: a review saw 49 s.)
#[test]
fn a_large_body_that_stops_coming_loses_its_turn_to_one_waiting() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let stalled = large_batch("large.stalled");
    let (mut first, stream) = paced_conn(rx.addr);
    first.send(large_post(stalled.len()).as_bytes());
    let (sent, rest) = stalled.as_bytes().split_at(stalled.len() * 3 / 4);
    first.send(sent);
    let busy = wait_until(Duration::from_secs(10), || {
        status_page(rx.addr).contains("workers: 2 busy")
    });
    assert!(busy, "the first upload was never taken by a worker");
    let trickle = Pacer::start(stream, rest.to_vec(), 1);
    // With nothing waiting for the turn, the trickle keeps it past the
    // lapse (a slow link is not cut for being slow alone).
    std::thread::sleep(autopi_rx::receiver::heads::TURN_LAPSE + Duration::from_secs(1));
    assert!(
        status_page(rx.addr).contains("workers: 2 busy"),
        "the first upload lost its turn with nothing waiting for it"
    );
    let whole = large_batch("large.whole");
    let started = Instant::now();
    let mut second = Conn::open_within(rx.addr, Duration::from_secs(15)).unwrap();
    second.send(large_post(whole.len()).as_bytes());
    second.send(whole.as_bytes());
    let saved = second
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", started.elapsed()));
    assert_eq!(
        saved.status,
        200,
        "after {:?}: {}",
        started.elapsed(),
        saved.text()
    );
    let cut = first.read_response(false);
    assert_eq!(cut.status, 503, "{}", cut.text());
    assert!(cut.header("retry-after").is_some());
    assert!(cut.text().contains("held the turn"), "{}", cut.text());
    trickle.stop();
    let saved = saved_after_stop(rx);
    assert!(saved.contains("large.whole"));
    assert!(!saved.contains("large.stalled"));
}

/// What the levers reach for endless input: devices are served and
/// nothing is left behind. How much memory one client can still make the
/// receiver hold is printed for the README (tiny_http 0.12 reads a whole
/// header line, and the heads of pipelined requests, before the receiver
/// sees them).
#[test]
fn endless_header_bytes_and_endless_pipelining_measured() {
    let _heavy = heavy();
    let mut p = Probed::start(&secs(READ_TIMEOUT));
    let (addr, pid) = (p.rx.addr, p.pid());
    endless(&mut p, "one header line of 32 MiB", || {
        let (sent, took, end) = endless_header(addr, pid, 32 << 20);
        format!("{} MiB sent in {took:?} ({end})", sent >> 20)
    });
    endless(&mut p, "pipelined GETs never read, for 5 s", || {
        let started = Instant::now();
        let (sent, end) = endless_pipeline(addr, pid, Duration::from_secs(5));
        format!("{sent} requests sent in {:?} ({end})", started.elapsed())
    });
    p.finish();
}

/// How a connection ended as seen by the client.
#[derive(Debug, PartialEq)]
enum End {
    /// EOF or reset: the receiver closed it.
    Closed,
    /// Still open when the client stopped waiting.
    Open,
}

/// Everything that came back on a connection after `bytes`, until it
/// closed or `wait` passed.
#[derive(Debug)]
struct Exchange {
    statuses: Vec<u16>,
    raw: String,
    end: End,
    after: Duration,
}

fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Exchange {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    // The receiver may close before all is written; what it answered is
    // still read.
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            break End::Open;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break End::Closed,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break End::Open;
            }
            Err(_) => break End::Closed,
        }
    };
    Exchange {
        statuses: statuses(&raw),
        raw: String::from_utf8_lossy(&raw).into_owned(),
        end,
        after: started.elapsed(),
    }
}

/// The receiver's status page, on a connection of its own.
fn status_page(addr: SocketAddr) -> String {
    let mut c = Conn::open(addr);
    let from = c.stream().local_addr().ok();
    match c.try_request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") {
        Ok(r) => r.text(),
        // Rare (once in eight runs of the suite, under a probe): what the
        // kernel then held of this connection, to tell one left in a
        // pool's queue (bytes unread at the server's end) from one read
        // and not answered. Only this one: under the probes of thousands
        // of connections, the whole port would be megabytes.
        Err(e) => panic!(
            "no status page from {addr} (our end {from:?}): {e}; both ends as the kernel held them:\n{}",
            from.map_or_else(|| "(our end unknown)".into(), |f| sockets_on(f.port()))
        ),
    }
}

/// `ss`'s lines for TCP sockets from or to `port` (with their queues and
/// timers), or why there are none: a client's port names both ends of its
/// connection.
fn sockets_on(port: u16) -> String {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    match std::process::Command::new("ss")
        .args(["-tanoi", &filter])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "(ss: {}: {})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("(ss: {e})"),
    }
}

/// The status of each response in `raw`, in order.
fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..head_end]);
        let Some(status) = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
        else {
            break;
        };
        out.push(status);
        let len = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        rest = &rest[(head_end + 4 + len).min(rest.len())..];
    }
    out
}

/// Runs every case at once (each waits out at most the read timeout and
/// the slack); returns each with its exchange.
fn exchanges(addr: SocketAddr, cases: Vec<(String, Vec<u8>)>) -> Vec<(String, Exchange)> {
    exchanges_within(addr, cases, READ_TIMEOUT + SLACK)
}

/// `exchanges`, each client waiting at most `wait`.
fn exchanges_within(
    addr: SocketAddr,
    cases: Vec<(String, Vec<u8>)>,
    wait: Duration,
) -> Vec<(String, Exchange)> {
    let threads: Vec<_> = cases
        .into_iter()
        .map(|(name, bytes)| {
            std::thread::spawn(move || {
                let x = exchange(addr, &bytes, wait);
                (name, x)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Each thread of a process by name, with its nice value (from
/// `/proc/PID/task/*/stat`).
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (open, close) = (stat.find('(')?, stat.rfind(')')?);
            let name = stat[open + 1..close].to_string();
            // After the name: state is field 3, nice field 19.
            let nice = stat[close + 2..].split(' ').nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

/// Whether this process may lower a nice value to `nice`: it has
/// `CAP_SYS_NICE`, or its `RLIMIT_NICE` reaches that far (the receiver,
/// started by it, has the same).
fn may_take_nice(nice: i64) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let rlimit: i64 = limits
        .lines()
        .find(|l| l.starts_with("Max nice priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| {
            if v == "unlimited" {
                Some(40)
            } else {
                v.parse().ok()
            }
        })
        .unwrap_or(0);
    caps & (1 << 23) != 0 || 20 - rlimit <= nice
}

/// The closer and the pumps, which cut hostile connections and let go of
/// what they sent, run up to 20 nice values ahead of the receiver's other
/// threads, as far as the system allows (`CAP_SYS_NICE`, which root has on
/// CI's machines, or `RLIMIT_NICE`; where nothing is allowed the test
/// checks only that nothing moved), and so does the thread that starts
/// workers; workers (also those it starts) and tiny_http's threads (named
/// as the process) keep the process's own. Hundreds of connections
/// parsing without end would otherwise share the cores equally with the
/// closer (README: "The closer and the pumps ahead").
#[test]
fn the_closer_and_pumps_run_ahead_where_the_system_allows() {
    let rx = receiver(LONG_READ_TIMEOUT);
    device_upload(rx.addr).expect("an upload");
    // Uploads whose bodies stall hold a worker each: past the 16 started
    // with the receiver, the spawning thread starts more, which must not
    // keep its priority (the pumps').
    let stalls: Vec<TcpStream> = (0..24)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&rx.addr, Duration::from_secs(2)).ok()?;
            s.write_all(large_post(5000).as_bytes()).ok()?;
            Some(s)
        })
        .collect();
    let pid = rx.child.id();
    let workers = || {
        thread_nice(pid)
            .iter()
            .filter(|(n, _)| n == "http-worker")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || workers() > 20),
        "workers: {}",
        workers()
    );
    // A worker just started has its creator's priority until its first
    // step: looked at once every worker has taken it (or the test fails
    // below, naming them).
    wait_until(Duration::from_secs(10), || {
        let mut nice = thread_nice(pid)
            .into_iter()
            .filter(|(n, _)| n == "http-worker")
            .map(|(_, nice)| nice);
        let first = nice.next();
        nice.all(|n| Some(n) == first)
    });
    let threads = thread_nice(pid);
    drop(stalls);
    let nice_of = |name: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, nice)| *nice)
            .collect()
    };
    let base = nice_of("http-worker");
    assert!(!base.is_empty(), "{threads:?}");
    let base = base[0];
    // As far ahead as the system allows, up to 20.
    let expected = ((base - 20).max(-20)..base)
        .find(|&nice| may_take_nice(nice))
        .unwrap_or(base);
    println!("receiver's threads at {base}; the closer, pumps and spawner expected at {expected}");
    for (name, want) in [
        ("closer", expected),
        ("accept-pump", expected),
        ("worker-spawner", expected),
        ("http-worker", base),
        ("autopi-rx", base),
    ] {
        let seen = nice_of(name);
        assert!(
            !seen.is_empty() && seen.iter().all(|&n| n == want),
            "{name} expected at {want}: {threads:?}"
        );
    }
}

#[test]
fn idle_and_stalled_connections_are_closed_after_the_read_timeout() {
    // Timed: not beside another heavy probe on two cores.
    let _heavy = heavy();
    let rx = receiver(&secs(READ_TIMEOUT));
    let mut cases: Vec<(String, Vec<u8>)> = (0..6)
        .map(|k| (format!("stall kind {k}"), stall_bytes(k)))
        .collect();
    cases.push(("idle, nothing sent".into(), Vec::new()));
    cases.push((
        "idle after one answered request".into(),
        b"GET /keep-alive HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
    ));
    // An upload stalled mid-body on a worker, held open by this test: its
    // event (refused) can only come from the receiver giving up on it, so
    // the worker is free again.
    let auth = format!("authorization: token {TOKEN}\r\n");
    let mut held = TcpStream::connect(rx.addr).unwrap();
    write!(
        held,
        "POST /stall/held HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 5000\r\n\r\n[{{\"@t\":"
    )
    .unwrap();
    let started = Instant::now();
    let addr = rx.addr;
    let others = std::thread::spawn(move || exchanges(addr, cases));
    let mut events = Vec::new();
    let worker_freed = wait_until(READ_TIMEOUT + SLACK, || {
        events.extend(rx.remaining_stdout());
        events
            .iter()
            .any(|l| l.contains(r#""path":"/stall/held""#) && !l.contains(r#""status":200"#))
    });
    let mut failures = Vec::new();
    if !worker_freed {
        failures.push(format!(
            "the upload stalled mid-body still had no answer or event {:?} after it stalled; events: {events:?}",
            started.elapsed()
        ));
    }
    drop(held);
    for (name, x) in others.join().unwrap() {
        println!(
            "{name}: {:?} after {:?}, answers {:?}",
            x.end, x.after, x.statuses
        );
        // Closed at the read timeout: before a second one could pass
        // (tiny_http alone drains a stalled body for one more).
        if x.end != End::Closed || x.after >= 2 * READ_TIMEOUT - Duration::from_millis(200) {
            failures.push(format!(
                "{name}: {:?} {:?} after it stalled (read timeout {READ_TIMEOUT:?})",
                x.end, x.after
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// An upload stalled mid-body holds a worker for one read timeout, not
/// two: tiny_http's drain of the rest (one more timeout on a silent
/// socket) happens elsewhere. The status page counts the busy workers.
#[test]
fn a_stalled_upload_frees_its_worker_at_the_read_timeout() {
    const T: Duration = Duration::from_secs(4);
    let rx = receiver(&secs(T));
    let auth = format!("authorization: token {TOKEN}\r\n");
    let held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = TcpStream::connect(rx.addr).unwrap();
            write!(
                s,
                "POST /stall/{i} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 5000\r\n\r\n[{{\"@t\":"
            )
            .unwrap();
            s
        })
        .collect();
    let mut events = Vec::new();
    let refused = wait_until(T + SLACK, || {
        events.extend(rx.remaining_stdout());
        events
            .iter()
            .filter(|l| l.contains(r#""path":"/stall/"#))
            .count()
            == 3
    });
    assert!(refused, "the stalled uploads were not given up: {events:?}");
    // Half a read timeout later every worker but the one answering the
    // status request is free; before, each stayed held for another timeout.
    let mut status = String::new();
    let freed = wait_until(T / 2, || {
        status = status_page(rx.addr);
        status.contains("workers: 1 busy")
    });
    assert!(freed, "workers still held: {status}");
    drop(held);
}

/// A refused upload whose body was sent whole (tiny_http drains it) leaves
/// its keep-alive connection open for the next request: only a drain that
/// stalls makes the receiver close it.
#[test]
fn a_refusal_with_a_drained_body_keeps_the_connection() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let padding = "x".repeat(2048);
    let refused = request_bytes(
        "POST",
        &[("authorization", "token wrong")],
        format!("[{{\"@t\":\"{padding}\"}}]").as_bytes(),
    );
    let mut conn = Conn::open(rx.addr);
    for i in 0..40 {
        let r = conn.request(&refused);
        assert_eq!(r.status, 401, "refusal {i}");
        let r = conn.request(&upload_request(&format!("after.refusal.{i}")));
        assert_eq!(r.status, 200, "upload {i} after a refusal: {}", r.text());
    }
}

/// Clients that send a request and reset their connection at once:
/// tiny_http 0.12 panics on each one it had not yet read the address of
/// (`client.rs` unwraps it). Those panics are claimed: counted on the
/// status page, never printed (2 000 resets printed 1 793 panics with
/// their backtraces), and the receiver serves on.
///
/// A device right after them is answered long before the sweep would
/// free it (the read timeout, 30 s). The pools' race can queue hundreds
/// of the resets, each of which ends the thread that takes it, so the
/// device's connection can wait behind them while the nudges free one
/// each; the nudges for it used to stop after 20 looks however fast the
/// queue drained (this test as it was, 300 resets and asked again on
/// failure: about one run in ten; a Python client against the release
/// build: 1 run in about 670). This test can fail that way but rarely
/// does; the rule that keeps the nudges going is checked in `closer`'s
/// unit tests. 40 runs of this test under two busy loops: 13 ms to 2.4 s.
#[test]
fn connections_reset_at_once_print_no_panic() {
    use socket2::SockRef;
    const AFTER_RESETS: Duration = Duration::from_secs(15);
    // 1 000 connections and as many panics: a probe that loads both cores
    // for a second or two, never beside one that measures time.
    let _heavy = heavy();
    let rx = receiver(LONG_READ_TIMEOUT);
    for _ in 0..1000 {
        let mut s = TcpStream::connect(rx.addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    }
    // The status page on a connection of its own, each step within `within`.
    let ask = |within| {
        Conn::open_within(rx.addr, within)
            .and_then(|mut c| c.try_request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
    };
    let asked = Instant::now();
    let device = ask(AFTER_RESETS).map(|r| r.status);
    let took = asked.elapsed();
    if device.as_ref().ok() != Some(&200) || took > AFTER_RESETS {
        let status = ask(SLACK).map(|r| r.text());
        panic!("a device after the resets: {device:?} after {took:?}; status page: {status:?}");
    }
    println!("a device after 1 000 resets answered in {took:?}");
    // The count may trail the answer: resets queued in other pools.
    let counted = wait_until(Duration::from_secs(20), || {
        ask(SLACK).is_ok_and(|r| r.text().contains("reset early: "))
    });
    assert!(counted, "the resets were not counted");
    assert_eq!(rx.upload(&batch("after.resets")).status, 200);
    let stderr = rx.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// 2 000 connections, 64 clients at a time each from a port of its own
/// used again, each connection pipelining 30 requests and reset at once.
/// tiny_http 0.12 ends the pool thread that builds a request of a
/// connection reset before it read its address, and in such a burst the
/// tasks a pool queued behind that thread were left with none to take
/// them: their reset sockets were held, two descriptors each, until new
/// connections came to that pool (the README's *Reset connections held
/// after a burst*), and their clients' ports stayed ignored. With nothing
/// else coming, 55 to 965 descriptors were still held 2 to 6 s after the
/// burst in 12 of 12 runs of a Python probe against the release build,
/// and uploads from the burst's 200 ports were answered 125 to 180 of 200.
/// The closer now throws away what was queued on each reset connection
/// it finds, and nudges the pools while one is held: descriptors and
/// threads are back to idle with no other connection made, the ports are
/// free again, and an upload from each is answered and saved. Each
/// client's port is held by a bound socket of the test's throughout, so
/// that no other test's connection takes it meanwhile.
#[test]
fn connections_pipelining_then_reset_are_not_held() {
    use socket2::SockRef;
    let _heavy = heavy();
    let probe = "2 000 connections pipelining 30 requests, reset at once";
    let mut p = Probed::start(LONG_READ_TIMEOUT);
    let watch = Watch::start(p.pid());
    let pipelined = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(30);
    let addr = p.rx.addr;
    let reserved: Vec<socket2::Socket> = (0..64).map(|_| bound_with_reuse(0).unwrap()).collect();
    let ports: Vec<u16> = reserved
        .iter()
        .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
        .collect();
    from_clients(ports.len(), 2000, |client, _| {
        if let Ok(mut s) = connect_from(addr, ports[client], SLACK) {
            let _ = s.write_all(&pipelined);
            let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
    });
    p.alive(probe);
    // Nothing else connects until the descriptors are back: a new
    // connection to a pool takes what its queue held.
    p.check_peak(probe, watch.stop());
    p.check_return(probe);
    if !p.failures.is_empty() {
        p.finish();
        return;
    }
    // Every port is free once the closer has read a table with all its
    // connections gone: at the latest at the second sweep (2 s apart).
    let deadline = Instant::now() + Duration::from_secs(4) + SLACK;
    assert!(
        ignored_becomes(addr, 0, deadline),
        "{probe}: still {} ignored",
        ignored_now(addr)
    );
    for (n, port) in ports.iter().enumerate() {
        let tag = format!("from.a.reset.port.{n}");
        match connect_from(addr, *port, SLACK)
            .and_then(|s| Conn::on(s).try_request(&upload_request(&tag)))
        {
            Ok(r) if r.status == 200 => {}
            Ok(r) => panic!("{probe}: port {port}: {} {}", r.status, r.text()),
            Err(e) => panic!("{probe}: port {port}: no answer: {e}"),
        }
    }
    drop(reserved);
    let saved = saved_after_stop(p.rx);
    for n in 0..ports.len() {
        assert!(
            saved.contains(&format!("from.a.reset.port.{n}\"")),
            "{n} not saved"
        );
    }
}

/// Uploads whose body begins with a whole batch, announce 200 000 bytes
/// more (JSON whitespace, which would still parse as that batch), send
/// some of them or none, then reset: 1 200 of them, 32 clients at a
/// time, some resetting at once, some a few milliseconds later. None may
/// be saved: each body came short of its `Content-Length`. (Until December
/// 8 these were chunked: `chunked_transfer` takes a plain end inside a
/// chunk for the end of the body, and the closer's first clearing of
/// reset connections, which took the reset's error, had 9 to 25 of 1 200
/// saved: a hostile-client probe. Chunked uploads are refused since.)
#[test]
fn uploads_cut_by_a_reset_are_never_saved() {
    use socket2::SockRef;
    let _heavy = heavy();
    let rx = receiver(LONG_READ_TIMEOUT);
    let addr = rx.addr;
    let auth = format!("token {TOKEN}");
    from_clients(32, 1200, |_, n| {
        let first = batch(&format!("cut.upload.{n}."));
        let mut sent = format!(
            "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\n\
             Content-Length: {}\r\n\r\n",
            first.len() + 200_000
        )
        .into_bytes();
        sent.extend_from_slice(&first);
        sent.resize(
            sent.len() + (n as usize * 7919) % 150_000 * (n as usize % 2),
            b' ',
        );
        let Ok(mut s) = TcpStream::connect_timeout(&addr, SLACK) else {
            return;
        };
        let _ = s.write_all(&sent);
        // Spread over the moments a reset can meet the body: before
        // tiny_http takes the connection, while the head is read, while
        // the body is.
        std::thread::sleep(Duration::from_millis(n % 4 * 5));
        let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    });
    assert_eq!(rx.upload(&batch("after.the.cut.uploads")).status, 200);
    let saved = saved_after_stop(rx);
    assert!(saved.contains("after.the.cut.uploads"));
    let cut = saved.lines().filter(|l| l.contains("cut.upload.")).count();
    assert_eq!(cut, 0, "uploads cut by a reset saved");
}

/// A refused body drained slowly (over a read timeout, each piece in
/// time) and a valid upload right after it on the same connection: the
/// upload is answered 200 and saved, or not taken at all (the connection
/// closed without an answer, sent again by a device), never refused for a
/// body cut short: the receiver used to shut a connection whose drain took
/// a read timeout after the fact, cutting the next upload's body (400
/// "the body ended after …" in 5 of 5 tries; found by a review).
#[test]
fn a_slow_drain_never_cuts_the_next_upload_on_its_connection() {
    let rx = receiver("2");
    let mut answered = Vec::new();
    for round in 0..2 {
        let mut c = Conn::open(rx.addr);
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n");
        // 3 s of a 2 s read timeout, each piece within it.
        for _ in 0..4 {
            c.send(&[b' '; 680]);
            std::thread::sleep(Duration::from_millis(750));
        }
        // A body of 300 kB, read by a worker (not with its head).
        let tag = format!("after.a.slow.drain.{round}");
        let body = format!(
            r#"[{{"@t":"{tag}","@ts":"2026-12-03T01:00:00","blob":"{}"}}]"#,
            "b".repeat(300_000)
        );
        let auth = format!("token {TOKEN}");
        let mut rest = vec![b' '; 4096 - 4 * 680];
        rest.extend_from_slice(&request_bytes(
            "POST",
            &[("authorization", &auth)],
            body.as_bytes(),
        ));
        c.send(&rest);
        let refused = c.read_response(false);
        assert_eq!(refused.status, 401, "{}", refused.text());
        match c.try_read_response(false) {
            Ok(r) => {
                assert_eq!(r.status, 200, "round {round}: {}", r.text());
                answered.push(tag);
            }
            Err(e) => println!("round {round}: the upload was not taken ({e})"),
        }
    }
    let saved = saved_after_stop(rx);
    for tag in &answered {
        assert!(
            saved.contains(tag.as_str()),
            "{tag} answered 200, not saved"
        );
    }
    println!("answered 200 and saved after a slow drain: {answered:?}");
}

/// A late answer (`--respond late:SECS`) longer than the read timeout,
/// and longer than the time a body gets to arrive (4 read timeouts), is
/// still given, and the receiver does not cut its connection meanwhile:
/// the connection is busy while its answer waits, and its body, read long
/// ago, is no longer timed. (tiny_http itself then ends the keep-alive
/// connection: it reads ahead for the next request while the answer
/// waits, and that read times out.)
#[test]
fn a_late_answer_beyond_the_read_timeout_is_given() {
    let rx = Receiver::start(&["--read-timeout", "1", "--respond", "late:5"]);
    let started = Instant::now();
    let r = Conn::open(rx.addr).request(&upload_request("late.answer"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_secs(5));
    let status = Conn::open(rx.addr).request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status.status, 200);
    assert!(!status.text().contains("closed: "), "{}", status.text());
}

/// How a trickle went: when the receiver closed it (None: it never did
/// within the trickle's time), and what it answered.
struct Trickled {
    closed_after: Option<Duration>,
    answer: String,
}

/// Sends `start`, then `each` every `pace` (under the read timeout: every
/// read is in time) for at most `for_how_long`, reading whatever comes
/// back meanwhile, until the receiver closes.
fn trickle(
    addr: SocketAddr,
    start: &[u8],
    each: &[u8],
    pace: Duration,
    for_how_long: Duration,
) -> Trickled {
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed_after = None;
    if s.write_all(start).is_ok() {
        s.set_read_timeout(Some(pace)).unwrap();
        let mut buf = [0u8; 4096];
        while started.elapsed() < for_how_long {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed_after = Some(started.elapsed());
                    break;
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if s.write_all(each).is_err() {
                        closed_after = Some(started.elapsed());
                        break;
                    }
                }
                Err(_) => {
                    closed_after = Some(started.elapsed());
                    break;
                }
            }
        }
    } else {
        closed_after = Some(started.elapsed());
    }
    Trickled {
        closed_after,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    }
}

/// A trickle to cut: its first bytes, the bytes trickled, and what its
/// answer must say (None: no answer).
struct TrickleCase {
    name: &'static str,
    start: Vec<u8>,
    each: Vec<u8>,
    answer: Option<&'static str>,
}

/// Trickles (a byte every quarter of the read timeout, each read in time)
/// are cut at their deadline, four read timeouts after they began (a byte
/// at a time earns no more): a head, and a body with or without the
/// token, drained or read; a body read by a worker is
/// answered 400 saying why. So is a body drained after a refusal without
/// the token, however fast it comes. Devices are served meanwhile and everything
/// returns.
#[test]
fn slow_trickles_are_cut_at_their_deadlines() {
    let _heavy = heavy();
    let mut p = Probed::start(&secs(READ_TIMEOUT));
    let addr = p.rx.addr;
    let pace = READ_TIMEOUT / 4;
    let deadline = READ_TIMEOUT * 4;
    let auth = format!("authorization: token {TOKEN}\r\n");
    let post = |auth: &str, framing: &str| {
        format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}{framing}\r\n\r\n").into_bytes()
    };
    let case = |name, start, each, answer| TrickleCase {
        name,
        start,
        each,
        answer,
    };
    let cases = [
        case(
            "head",
            b"POST / HTTP/1.1\r\nX-Slow: ".to_vec(),
            b"a".to_vec(),
            None,
        ),
        // A whole batch, then spaces: only the cut tells it from a whole
        // body.
        case(
            "body with the token",
            [post(&auth, "Content-Length: 100000"), batch("smuggled")].concat(),
            b" ".to_vec(),
            Some("still coming"),
        ),
        case(
            "body without the token (drained)",
            post("", "Content-Length: 100000"),
            b" ".to_vec(),
            Some("401"),
        ),
        // 16 KiB a second into a refused body of 1 TiB: what comes of a
        // body drained after a refusal without the token earns no time
        // (it earned a second per 8 KiB, and the drain went on for as long
        // as the client did: a hostile-client probe).
        case(
            "fast into a drained 1 TiB body without the token",
            post("", "Content-Length: 1099511627776"),
            vec![b' '; 8192],
            Some("401"),
        ),
    ];
    let (done, devices) = devices_meanwhile(addr);
    let longest = deadline * 3;
    let results: Vec<Trickled> = std::thread::scope(|s| {
        let threads: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(move || trickle(addr, &c.start, &c.each, pace, longest)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    done.store(true, Ordering::SeqCst);
    devices.join().unwrap().check("trickles", &mut p.failures);
    for (c, t) in cases.iter().zip(results) {
        println!(
            "trickle, {}: closed after {:?} (deadline {deadline:?}); answer: {:?}",
            c.name,
            t.closed_after,
            t.answer.lines().next().unwrap_or("")
        );
        // Cut no sooner than its deadline, and within the closer's look
        // and the slack after it.
        let in_time = t
            .closed_after
            .is_some_and(|after| after >= deadline && after <= deadline + SLACK);
        let answered = c.answer.is_none_or(|e| t.answer.contains(e));
        if !in_time || !answered {
            p.failures.push(format!(
                "trickle, {}: wanted a close between {deadline:?} and {:?} after it began{}, got {:?} and {:?}",
                c.name,
                deadline + SLACK,
                c.answer
                    .map(|e| format!(" and an answer with {e:?}"))
                    .unwrap_or_default(),
                t.closed_after,
                t.answer
            ));
        }
    }
    p.alive("trickles");
    p.check_return("trickles");
    let failures = std::mem::take(&mut p.failures);
    let saved = saved_after_stop(p.rx);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(!saved.contains("smuggled"), "a cut body was saved");
}

#[test]
fn a_slow_upload_that_keeps_sending_is_not_cut() {
    let rx = receiver(&secs(READ_TIMEOUT));
    let body = batch("slow.upload");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = Conn::open(rx.addr);
    conn.send(head.as_bytes());
    // Longer in all than the read timeout, never silent for half of it.
    let pieces: Vec<&[u8]> = body.chunks(body.len().div_ceil(6)).collect();
    let started = Instant::now();
    for piece in pieces {
        std::thread::sleep(READ_TIMEOUT / 3);
        conn.send(piece);
    }
    let r = conn.read_response(false);
    assert!(started.elapsed() > READ_TIMEOUT);
    assert_eq!(r.status, 200, "{:?}; receiver's stderr: {}", r, rx.stderr());
}

/// Threads of process `pid` named `name` (a name of 15 bytes at most).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.trim_end() == name)
                .count()
        })
        .unwrap_or(0)
}

/// With `held` open the receiver must still run; once they close, a
/// device's upload is answered within `RETURN_WITHIN`, and its `what` is
/// back to `idle` (as `back` tells) within `RETURN_WITHIN` after that, as
/// are its servers: those whose accept thread ended in the probe retired
/// once their threads are gone (until December 6 each stayed 4 read
/// timeouts and 2 s, two minutes here, with its pump: 8 and 142 of them
/// here 15 s after the threads and the descriptors came back). One more is
/// allowed: in one run of 36 one was left, with the threads back to idle
/// (the README's suspect: a lost wake-up in tiny_http's pool).
fn recovers_once_released(
    rx: &mut Receiver,
    held: Vec<TcpStream>,
    idle: Usage,
    what: &str,
    back: fn(Usage, Usage) -> bool,
) {
    assert!(
        rx.child.try_wait().unwrap().is_none(),
        "exited with the connections held: {}",
        rx.stderr()
    );
    drop(held);
    let started = Instant::now();
    let mut last = Err(String::new());
    let recovered = wait_until(RETURN_WITHIN, || {
        last = device_upload(rx.addr);
        last.is_ok()
    });
    assert!(
        recovered,
        "no upload answered {RETURN_WITHIN:?} after the connections closed: {last:?}; exited: {:?}; stderr: {}",
        rx.child.try_wait(),
        rx.stderr()
    );
    println!("recovered {:?} after they closed", started.elapsed());
    let mut now = None;
    let returned = wait_until(RETURN_WITHIN, || {
        now = usage(rx.child.id());
        now.is_some_and(|u| back(u, idle))
    });
    assert!(returned, "{what} not back to idle: {now:?}, idle {idle:?}");
    let mut pumps = 0;
    let retired = wait_until(RETURN_WITHIN, || {
        pumps = threads_named(rx.child.id(), "accept-pump");
        pumps <= ACCEPTING + 1
    });
    assert!(retired, "{pumps} servers still pumped, {ACCEPTING} kept");
}

#[test]
fn out_of_descriptors_it_waits_and_recovers_by_itself() {
    let _heavy = heavy();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx = limited_receiver("ulimit -n 256", "", &capture, LONG_READ_TIMEOUT);
    device_upload(rx.addr).expect("a first upload");
    let idle = usage(rx.child.id()).unwrap();
    // More than fit; stops at the first connection that does not complete
    // within a second (the backlog is full: new connections wait).
    let held: Vec<TcpStream> = (0..400)
        .map_while(|_| TcpStream::connect_timeout(&rx.addr, Duration::from_secs(1)).ok())
        .collect();
    let mut peak = usage(rx.child.id());
    wait_until(Duration::from_secs(2), || {
        peak = usage(rx.child.id());
        peak.is_some_and(|u| u.fds >= 250)
    });
    // Whatever a device gets meanwhile (a wait, a refusal), the receiver
    // must not end.
    let meanwhile = device_upload(rx.addr);
    println!(
        "{} idle connections held under 256 descriptors (receiver: {peak:?}); a device meanwhile: {meanwhile:?}",
        held.len()
    );
    recovers_once_released(&mut rx, held, idle, "descriptors", |now, idle| {
        now.fds <= idle.fds + FD_TOLERANCE
    });
    assert!(rx.child.try_wait().unwrap().is_none(), "{}", rx.stderr());
    rx.stop();
}

/// `HTTP/2.0` request lines, each deadlocking a tiny_http thread that
/// keeps its two descriptors, until none is left (600 of them under a
/// limit of 1 024): the receiver restarts in place (the same process, on
/// its listening socket), as often as the connections queued meanwhile
/// need, and serves devices again by itself, with every batch it
/// acknowledged still in its capture and the new ones after them. Until
/// December 8 it stayed out of descriptors until someone restarted it (a
/// hostile-client probe).
#[test]
fn out_of_descriptors_by_deadlocked_threads_it_restarts_in_place() {
    restarts_in_place_until_served(1024);
}

/// The same under a limit of 256: each run takes what waited in the
/// queue until its descriptors run out again, so it takes five restarts,
/// each as soon as any connection is held while descriptors run short
/// (33-40 s in 14 runs of 15 by hand; before that rule, over 90 s, the
/// threshold never reached while the closer could not count them all).
#[test]
#[ignore = "known failure in about 1 run of 5: after two restarts, no more comes and devices are not served (not diagnosed yet; README, Hostile networks, A restart in place)"]
fn out_of_256_descriptors_by_deadlocked_threads_it_restarts_until_served() {
    restarts_in_place_until_served(256);
}

/// 600 `HTTP/2.0` request lines against a receiver under a limit of
/// `limit` descriptors (see the two tests above).
fn restarts_in_place_until_served(limit: u32) {
    let _heavy = heavy();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    // A token file too: the restart reads it again first. (Out of
    // descriptors it could not, and goes ahead on the file being there, a
    // review's point; not reached here: the look that finds the restart
    // due finds descriptors free, 2 runs with that rule taken out.)
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ANOTHER-TOKEN-1234\n").unwrap();
    let mut rx = limited_receiver_with(
        &format!("ulimit -n {limit}"),
        "",
        &capture,
        &secs(READ_TIMEOUT),
        &["--token-file", tokens.to_str().unwrap()],
    );
    device_upload_as(rx.addr, "up.0").expect("a first upload");
    let idle = usage(rx.child.id()).unwrap();
    let pid = rx.child.id();
    let mut sent = 0;
    for _ in 0..600 {
        let Ok(mut s) = TcpStream::connect_timeout(&rx.addr, Duration::from_secs(1)) else {
            break;
        };
        sent += usize::from(s.write_all(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").is_ok());
    }
    let peak = usage(pid);
    println!("{sent} HTTP/2.0 request lines sent; the receiver then: {peak:?}");
    // Out of descriptors, the first restart comes two read timeouts after
    // the closer could shut them (5 s at least), and the connections that
    // waited in the queue meanwhile take one more (7-16 s here, 8 runs;
    // longer beside a run of the whole suite).
    let started = Instant::now();
    let mut last = Err(String::new());
    // Each upload is a batch of its own: those acknowledged, and all sent.
    let (mut acked, mut sent) = (vec!["up.0".to_string()], 1);
    let mut upload = |acked: &mut Vec<String>| {
        let tag = format!("up.{sent}");
        sent += 1;
        let answer = device_upload_as(rx.addr, &tag);
        if answer.is_ok() {
            acked.push(tag);
        }
        answer
    };
    let recovered = wait_until(
        Duration::from_secs(if limit < 1024 { 80 } else { 90 }),
        || {
            last = upload(&mut acked);
            last.is_ok() && rx.stderr().contains("restarted in place")
        },
    );
    assert!(
        recovered,
        "no upload answered after a restart in place: {last:?}; exited: {:?}; the receiver \
         now: {:?} (idle {idle:?}); stderr: {}",
        rx.child.try_wait(),
        usage(pid),
        rx.stderr()
    );
    println!("recovered {:?} after the last was sent", started.elapsed());
    let mut now = None;
    let returned = wait_until(Duration::from_secs(45), || {
        now = usage(pid);
        now.is_some_and(|u| u.fds <= idle.fds + FD_TOLERANCE)
    });
    assert!(
        returned,
        "descriptors not back to idle: {now:?}, idle {idle:?}; stderr: {}",
        rx.stderr()
    );
    upload(&mut acked).expect("an upload once back to idle");
    let said = rx.stderr();
    assert!(rx.child.try_wait().unwrap().is_none(), "{said}");
    assert!(
        !said.contains("in flight after"),
        "a restart waited out the shutdown's grace: {said}"
    );
    println!("{said}");
    rx.stop();
    let saved = std::fs::read_to_string(&capture).unwrap();
    // Every upload acknowledged is there, once. (One a device gave up
    // waiting for, in the queue or while descriptors ran out, may be
    // there too: its device sends it again.)
    for tag in &acked {
        let quoted = format!("\"{tag}\"");
        assert_eq!(saved.matches(&quoted).count(), 1, "{tag} in {saved}");
    }
    // The headless output went on across the restarts: each batch
    // answered 200 was printed, once (a run prints what it answered
    // before the next starts).
    let printed = rx.remaining_stdout();
    let answered = printed
        .iter()
        .filter(|l| l.contains("\"status\":200"))
        .count();
    let answered_saved = saved.matches("\"acked\":true").count();
    assert_eq!(
        answered, answered_saved,
        "printed: {printed:?}\nsaved: {saved}"
    );
    println!(
        "{} uploads acknowledged, {} saved; {} restarts in place",
        acked.len(),
        saved.lines().count(),
        said.matches("restarting in place").count()
    );
}

/// One client holding idle connections until descriptors run out (160
/// under a limit of 256), and keeping them (a read timeout of 30 s): the closing thread shuts idle
/// ones, longest known first, while descriptors run short, so a device is
/// served within seconds rather than after the read timeout, and the
/// status page counts them. Until December 6 devices were reset or left
/// waiting until the idle connections timed out (a hostile-client probe:
/// 10 000 of them against a limit of 20 000).
#[test]
fn idle_connections_are_shed_while_descriptors_run_short() {
    let _heavy = heavy();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let rx = limited_receiver("ulimit -n 256", "", &capture, LONG_READ_TIMEOUT);
    device_upload(rx.addr).expect("a first upload");
    // More than fit (two descriptors each), not many more: the rest wait
    // in the kernel's queue ahead of the device, each let in as room is
    // made and shed a second later at the earliest.
    let held: Vec<TcpStream> = (0..160)
        .map_while(|_| TcpStream::connect_timeout(&rx.addr, Duration::from_secs(1)).ok())
        .collect();
    let started = Instant::now();
    let mut last = Err(String::new());
    let served = wait_until(Duration::from_secs(10), || {
        last = device_upload(rx.addr);
        last.is_ok()
    });
    assert!(
        served,
        "no device served within 10 s while {} idle connections were held: {last:?}; stderr: {}",
        held.len(),
        rx.stderr()
    );
    println!(
        "{} idle connections held; a device served {:?} after",
        held.len(),
        started.elapsed()
    );
    let page = Conn::open(rx.addr)
        .request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .text();
    let shed = status_count(&page, "shed: ").unwrap_or(0);
    assert!(shed > 0, "{page}");
    drop(held);
}

/// Past `--max-connections` open, idle connections are shed down to three
/// quarters of it: those that never sent anything first, oldest first,
/// then those between requests (a device's keep-alive connection), then
/// those with part of a first request come, while an upload in hand keeps
/// its connection however long it has been open. Each
/// connection costs tiny_http a thread (about 20 KiB): 10 000 idle ones
/// under a limit of 20 000 descriptors took the receiver past 200 MB
/// (202–204 MiB; a probe, December 6), with descriptors to spare.
#[test]
fn idle_connections_past_the_most_allowed_are_shed() {
    let _heavy = heavy();
    // Under 200 descriptors, shedding while they run short alone would
    // bring the connections down as far.
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("the open-file limit");
    assert!(limit >= 1024, "an open-file limit of {limit}: 1024 wanted");
    let rx = Receiver::start(&[
        "--read-timeout",
        LONG_READ_TIMEOUT,
        "--max-connections",
        "64",
    ]);
    // A keep-alive connection between requests, the oldest of all.
    let mut keep_alive = Conn::open(rx.addr);
    let first = keep_alive.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.status, 200);
    // An upload stalled halfway through its body, open before the rest.
    let len = 100_000;
    let body = sized_batch("crowd.stalled", len);
    let mut stalled = Conn::open(rx.addr);
    stalled.send(large_post(len).as_bytes());
    stalled.send(&body.as_bytes()[..len / 2]);
    // Taken by a worker (the status page's own counts as the second).
    assert!(
        wait_until(Duration::from_secs(10), || busy_of(&status_page(rx.addr))
            >= 2),
        "the stalled upload was never taken by a worker"
    );
    // A device's upload on its way: its head only partly come (as a
    // small body paused after the head would be: tiny_http reads a body of
    // 1 KiB or less before it hands the request over).
    let mut slow: Vec<(Conn, Vec<u8>)> = (0..40)
        .map(|_| {
            let upload = upload_request("crowd.slow");
            let mut c = Conn::open(rx.addr);
            c.send(&upload[..40]);
            (c, upload)
        })
        .collect();
    let idle: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(rx.addr).expect("an idle connection"))
        .collect();
    let open = idle.len() + slow.len() + 2;
    // A shed connection sees its stream end.
    let ended = |idle: &[TcpStream]| {
        idle.iter()
            .filter(|s| {
                s.set_nonblocking(true).unwrap();
                !matches!((&**s).read(&mut [0; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let mut shut = 0;
    let enough = wait_until(Duration::from_secs(20), || {
        shut = ended(&idle);
        open - shut <= 64
    });
    assert!(
        enough,
        "{shut} of {open} connections shed after 20 s; past 64 open, idle ones are shed"
    );
    // Settled: the same count for a second (four shedding rounds).
    let mut last = (shut, Instant::now());
    let settled = wait_until(Duration::from_secs(10), || {
        let now = ended(&idle);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(1)
    });
    assert!(settled, "still shedding after 10 s: {} shed", last.0);
    shut = last.0;
    // Three quarters of 64 is 48; a status page's connection that the
    // receiver still counted when it shed (closed by its client a moment
    // before) can take one or two more.
    assert!(
        (46..=64).contains(&(open - shut)),
        "{shut} of {open} shed: not down to three quarters of 64"
    );
    // The status page counts those held (and its own connection, once the
    // closing thread has read the table since it came).
    let held = (open - shut) as u64;
    let mut page = String::new();
    let counted = wait_until(Duration::from_secs(5), || {
        page = status_page(rx.addr);
        status_count(&page, "connections: ").is_some_and(|n| (held..=held + 2).contains(&n))
    });
    assert!(counted, "{held} connections held: {page}");
    // The uploads on their way were kept, each answered once it has come.
    for (c, upload) in &mut slow {
        c.send(&upload[40..]);
        let answer = c.read_response(false);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // The keep-alive connection was kept, having made a request.
    let again = keep_alive.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(again.status, 200);
    // The oldest connection, with an upload in hand, is still served.
    stalled.send(&body.as_bytes()[len / 2..]);
    let answer = stalled.read_response(false);
    assert_eq!(answer.status, 200, "{}", answer.text());
    device_upload(rx.addr).expect("a device upload after the shedding");
    let page = status_page(rx.addr);
    assert_eq!(status_count(&page, "shed: "), Some(shut as u64), "{page}");
    println!("{shut} of {open} connections shed down to {}", open - shut);
}

/// Heads without a token announcing a body that never comes: each is
/// answered 401 and its body drained on a thread of its own, which waits
/// for the body as long as it keeps coming. Past `DRAINS_AT_MOST` drains
/// running, the connection is closed after the answer instead. Until
/// December 7 each held its connection, a tiny_http thread and a drain
/// thread (56 KiB): 4 000 took the receiver past 200 MB, and at about
/// 8 000 it ran out of memory mappings and aborted (a hostile-client
/// probe).
#[test]
fn refused_bodies_that_never_come_hold_a_bounded_number_of_drains() {
    let _heavy = heavy();
    let rx = receiver(LONG_READ_TIMEOUT);
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n";
    let n = DRAINS_AT_MOST + 200;
    let held: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(rx.addr).expect("a connection");
            s.write_all(head).unwrap();
            s
        })
        .collect();
    // Each is answered 401; the connections past the drains allowed then
    // end, long before the 30 s read timeout.
    let started = Instant::now();
    let mut answered = 0;
    let mut ended = 0;
    for mut s in held.iter() {
        s.set_read_timeout(Some(Duration::from_millis(
            (5_000u128.saturating_sub(started.elapsed().as_millis())).max(1) as u64,
        )))
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    ended += 1;
                    break;
                }
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(_) => break,
            }
        }
        if got.starts_with(b"HTTP/1.1 401") {
            answered += 1;
        }
    }
    assert_eq!(answered, n, "every head is answered 401");
    assert!(
        ended >= n - DRAINS_AT_MOST - 20,
        "{ended} of {n} connections ended within 5 s; at most {DRAINS_AT_MOST} drains wait for their bodies"
    );
    device_upload(rx.addr).expect("a device upload beside them");
    println!("{ended} of {n} ended after their 401 within 5 s");
    drop(held);
}

/// Threads of the user `uid` in the whole system (what `ulimit -u`
/// counts).
fn threads_of_user(uid: u32) -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        })
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Out of threads (a limit of the user's threads: systemd's `TasksMax`
/// does the same with a cgroup), tiny_http panicked on its accept thread
/// while holding its pool's lock: each server stopped accepting, every
/// thread of its pool panicked on the poisoned lock (thousands of
/// backtraces on stderr), and the receiver never accepted again (a
/// hostile-client probe, December 5). Now the panics are claimed, said in
/// one line, and servers are started again once threads are free. Run as
/// `nobody` when the tests run as root (root ignores `ulimit -u`).
#[test]
fn out_of_threads_it_waits_and_recovers_by_itself() {
    use std::os::unix::fs::PermissionsExt;
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let capture = dir.path().join("c.jsonl");
    let root = rustix::process::getuid().is_root();
    let uid = if root {
        65534
    } else {
        rustix::process::getuid().as_raw()
    };
    // Room for the receiver at rest (about 50 threads) and a couple of
    // hundred connections, whatever else the user runs.
    let limit = threads_of_user(uid) + 250;
    let as_user = if root {
        "setpriv --reuid=65534 --regid=65534 --clear-groups"
    } else {
        ""
    };
    let mut rx = limited_receiver(
        &format!("ulimit -u {limit}"),
        as_user,
        &capture,
        LONG_READ_TIMEOUT,
    );
    device_upload(rx.addr).expect("a first upload");
    let idle = usage(rx.child.id()).unwrap();
    // Heads begun and never finished, without a token: each holds one of
    // tiny_http's threads until the read timeout.
    let held: Vec<TcpStream> = (0..600)
        .map_while(|_| {
            let mut s = TcpStream::connect_timeout(&rx.addr, Duration::from_secs(1)).ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nX-Begun: ").ok()?;
            Some(s)
        })
        .collect();
    let said = rx.wait_stderr("could not start a thread");
    assert!(said.contains("out of threads"), "{said}");
    let meanwhile = device_upload(rx.addr);
    println!(
        "{} connections held under a limit of {limit} threads; a device meanwhile: {meanwhile:?}",
        held.len()
    );
    recovers_once_released(&mut rx, held, idle, "threads", |now, idle| {
        now.threads <= idle.threads + THREAD_TOLERANCE
    });
    assert!(rx.stop().success());
    let stderr = rx.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.len() < 4096, "{} bytes on stderr", stderr.len());
}

/// A request smuggled inside another: an upload with the token whose
/// record is tagged `smuggled`.
fn smuggled() -> Vec<u8> {
    let mut r = upload_request("smuggled");
    // Closing after it: if it is answered at all, it shows at once.
    let at = r.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    r.splice(at..at, b"Connection: close\r\n".iter().copied());
    r
}

/// Checks that each case's first answer is one of `allowed`, that nothing
/// after it was answered 2xx (tiny_http may answer the bytes that follow
/// with its own 400 before the close: printed, not judged), and that the
/// connection was closed within the read timeout and the slack.
fn refused_and_closed(
    results: Vec<(String, Exchange)>,
    allowed: &[u16],
    failures: &mut Vec<String>,
) {
    for (name, x) in results {
        println!(
            "{name}: answers {:?}, {:?} after {:?}",
            x.statuses, x.end, x.after
        );
        let first = x.statuses.first().is_some_and(|s| allowed.contains(s));
        let nothing_after = x.statuses.iter().skip(1).all(|s| !(200..300).contains(s));
        if !first || !nothing_after || x.end != End::Closed {
            failures.push(format!(
                "{name}: wanted one of {allowed:?}, nothing after it answered 2xx, then a close; \
                 got answers {:?}, {:?} after {:?}: {:?}",
                x.statuses,
                x.end,
                x.after,
                x.raw.chars().take(300).collect::<String>()
            ));
        }
    }
}

/// The capture once the receiver has stopped (empty if it has none).
fn saved_after_stop(mut rx: Receiver) -> String {
    rx.stop();
    std::fs::read_to_string(&rx.capture).unwrap_or_default()
}

fn assert_nothing_smuggled_saved(rx: Receiver) {
    let saved = saved_after_stop(rx);
    assert!(
        !saved.contains("smuggled"),
        "a smuggled batch was saved: {saved}"
    );
}

/// `Connection: upgrade` makes tiny_http hand the rest of the connection
/// over as the body: refused 400 and closed at once (it was a 400 after the
/// read timeout, with the bytes after it read as body), with and without
/// the token, whatever the method, and nothing after it is taken.
#[test]
fn connection_upgrade_is_400_and_a_close() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let auth = format!("authorization: token {TOKEN}\r\n");
    let body = batch("upgrade");
    let upgrade = |method: &str, auth: &str, connection: &str| {
        let mut r = format!(
            "{method} / HTTP/1.1\r\nHost: t\r\n{auth}Connection: {connection}\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r.extend_from_slice(&smuggled());
        r
    };
    let mut failures = Vec::new();
    let results = exchanges_within(
        rx.addr,
        vec![
            ("POST, token".into(), upgrade("POST", &auth, "Upgrade")),
            (
                "POST, token, upgrade among others".into(),
                upgrade("POST", &auth, "keep-alive, Upgrade"),
            ),
            ("POST, no token".into(), upgrade("POST", "", "upgrade")),
            ("GET".into(), upgrade("GET", "", "upgrade")),
        ],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[400], &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_nothing_smuggled_saved(rx);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_a_close() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let inner = smuggled();
    let auth = format!("authorization: token {TOKEN}\r\n");
    let mut body_clte = b"0\r\n\r\n".to_vec();
    body_clte.extend_from_slice(&inner);
    let clte = |method: &str, auth: &str| {
        let mut r = format!(
            "{method} / HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            body_clte.len()
        )
        .into_bytes();
        r.extend_from_slice(&body_clte);
        r
    };
    let mut tecl = format!(
        "POST / HTTP/1.1\r\nHost: t\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n",
        inner.len()
    )
    .into_bytes();
    tecl.extend_from_slice(&inner);
    tecl.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut failures = Vec::new();
    let results = exchanges_within(
        rx.addr,
        vec![
            ("POST, CL.TE".into(), clte("POST", &auth)),
            ("GET, CL.TE".into(), clte("GET", "")),
            ("POST, TE.CL".into(), tecl),
        ],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[400], &mut failures);
    // Without the token, refused either way, but still closed.
    let results = exchanges_within(
        rx.addr,
        vec![("POST, CL.TE, no token".into(), clte("POST", ""))],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[400, 401], &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_nothing_smuggled_saved(rx);
}

/// A client that asks for "100 Continue" and holds its small body back
/// until told to send it, answered without being told (no token; a status
/// request): answered at once and closed, not kept a read timeout. tiny_http
/// reads no body ahead for such a client, and its drain waited a read
/// timeout on the worker for bytes that never came, then the connection
/// was closed after a second (a hostile-client probe, December 6: 1 000
/// such requests held 1 000 workers). The status page is asked while the
/// clients still hold their connections: no worker is busy for them.
#[test]
fn a_body_held_back_for_100_continue_and_not_asked_for_is_answered_and_closed() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let held_back = |method: &str| {
        format!(
            "{method} / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n"
        )
        .into_bytes()
    };
    let held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(rx.addr).unwrap();
            s.write_all(&held_back("POST")).unwrap();
            s
        })
        .collect();
    let mut failures = Vec::new();
    for (method, answer) in [("POST", 401), ("GET", 200)] {
        let results = exchanges_within(
            rx.addr,
            vec![(format!("{method}, no token"), held_back(method))],
            CLOSED_BY_US,
        );
        refused_and_closed(results, &[answer], &mut failures);
    }
    let busy = wait_until(CLOSED_BY_US, || {
        busy_of(
            &Conn::open(rx.addr)
                .request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .text(),
        ) <= 1
    });
    assert!(busy, "workers still busy with the held-back bodies");
    drop(held);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// HTTP/1.0 has no transfer codings: a chunked upload in that version,
/// kept alive, is refused 400 and closed, and the request after its chunks
/// is not taken. Until December 6 both were answered 200 and saved (a
/// hostile-client probe); a proxy in front that reads the body as running
/// to the close would have seen one request where tiny_http saw two.
#[test]
fn http_1_0_with_transfer_encoding_is_400_and_a_close() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let auth = format!("authorization: token {TOKEN}\r\n");
    let body = batch("chunked.1.0");
    let chunked_1_0 = |auth: &str| {
        let mut r = format!(
            "POST / HTTP/1.0\r\nHost: t\r\n{auth}Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r.extend_from_slice(b"\r\n0\r\n\r\n");
        r.extend_from_slice(&smuggled());
        r
    };
    let mut failures = Vec::new();
    let results = exchanges_within(
        rx.addr,
        vec![("HTTP/1.0, chunked, token".into(), chunked_1_0(&auth))],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[400], &mut failures);
    let results = exchanges_within(
        rx.addr,
        vec![("HTTP/1.0, chunked, no token".into(), chunked_1_0(""))],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[400, 401], &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let saved = saved_after_stop(rx);
    assert!(
        !saved.contains("smuggled") && !saved.contains("chunked.1.0"),
        "saved: {saved}"
    );
}

#[test]
fn conflicting_or_invalid_content_lengths_are_400_and_a_close() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let inner = smuggled();
    let auth = format!("authorization: token {TOKEN}\r\n");
    let with_length = |lengths: &[&str]| {
        let mut r = format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}").into_bytes();
        for l in lengths {
            r.extend_from_slice(format!("Content-Length: {l}\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n[]");
        r.extend_from_slice(&inner);
        r
    };
    let two = (2 + inner.len()).to_string();
    let mut cases = vec![
        (
            "two lengths, short first".to_string(),
            with_length(&["2", &two]),
        ),
        (
            "two lengths, long first".to_string(),
            with_length(&[&two, "2"]),
        ),
        (
            "two lengths in one header".to_string(),
            with_length(&[&format!("2, {two}")]),
        ),
    ];
    for bad in [
        "-1",
        "abc",
        "+2",
        "0x2",
        "2 2",
        "99999999999999999999999",
        "2.0",
    ] {
        cases.push((format!("Content-Length: {bad}"), with_length(&[bad])));
    }
    let mut failures = Vec::new();
    refused_and_closed(
        exchanges_within(rx.addr, cases, CLOSED_BY_US),
        &[400],
        &mut failures,
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_nothing_smuggled_saved(rx);
}

/// A bare line feed, carriage return or NUL inside a header or the
/// request line's method or target (or any control character there), and
/// a header line with no name: 400 and a close, nothing after them taken.
/// tiny_http ends a line at CRLF only, so `unit-id: dev\nTransfer-Encoding:
/// chunked` was one header to it (answered 200, captured with that
/// unit-id) and two to a proxy in front that ends lines at LF (a
/// hostile-client probe, December 5); the same in the request line's
/// target was answered 200 and saved until December 7 (another probe).
#[test]
fn line_breaks_inside_the_request_line_or_headers_and_nameless_headers_are_400_and_a_close() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let inner = smuggled();
    let body = batch("inside.header");
    let request = |line: &str, extra: &str| {
        let mut r = format!(
            "{line}\r\nHost: t\r\nauthorization: token {TOKEN}\r\n{extra}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r.extend_from_slice(&inner);
        r
    };
    let with = |extra: &str| request("POST / HTTP/1.1", extra);
    let line = |line: &str| request(line, "unit-id: dev");
    let cases = vec![
        (
            "bare LF in unit-id".to_string(),
            with("unit-id: dev\nTransfer-Encoding: chunked"),
        ),
        (
            "bare LF before a length".to_string(),
            with("X-A: a\nContent-Length: 9999"),
        ),
        ("bare CR".to_string(), with("X-A: a\rb")),
        ("NUL".to_string(), with("X-A: a\0b")),
        ("no name".to_string(), with(": value")),
        (
            "bare LF in the target".to_string(),
            line("POST /a\nTransfer-Encoding: HTTP/1.1"),
        ),
        (
            "bare CR in the target".to_string(),
            line("POST /a\rb HTTP/1.1"),
        ),
        ("NUL in the target".to_string(), line("POST /a\0b HTTP/1.1")),
        ("tab in the target".to_string(), line("POST /a\tb HTTP/1.1")),
        (
            "escape in the target".to_string(),
            line("POST /\x1b[2J HTTP/1.1"),
        ),
        ("NUL in the method".to_string(), line("PO\0ST / HTTP/1.1")),
    ];
    let mut failures = Vec::new();
    refused_and_closed(
        exchanges_within(rx.addr, cases, CLOSED_BY_US),
        &[400],
        &mut failures,
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let saved = saved_after_stop(rx);
    assert!(
        !saved.contains("inside.header"),
        "a refused batch was saved: {saved}"
    );
    assert!(
        !saved.contains("smuggled"),
        "a smuggled batch was saved: {saved}"
    );
}

/// Requests without the token that save nothing (status pages, 401s)
/// are listed on stdout as a quota allows, 100 at once and 10 a second,
/// and the rest counted in a line a second; a device's uploads among
/// them are all listed. Each such line cost 300 to 540 bytes for a
/// request of 19, and a client without the token filled the disk shared
/// with the capture until devices were answered 503 (a hostile-client
/// probe, December 7).
#[test]
fn requests_without_the_token_are_counted_past_a_quota_not_each_listed() {
    let mut rx = receiver(LONG_READ_TIMEOUT);
    let started = Instant::now();
    let mut flood = Conn::open(rx.addr);
    let refused = request_bytes("POST", &[("authorization", "token wrong")], b"[]");
    // A device with a wrong token: its 401 lines have a quota of their own
    // (the flood's, without a unit-id, hid them all: a probe).
    let misconfigured = request_bytes(
        "POST",
        &[
            ("authorization", "token also-wrong"),
            ("unit-id", "ee3df171ff0f6209a3dbaa00b00e1d05"),
        ],
        b"[]",
    );
    let (total, devices) = (400, 5);
    for n in 0..total {
        let answer = if n % 2 == 0 {
            flood.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        } else {
            flood.request(&refused)
        };
        assert!(matches!(answer.status, 200 | 401), "{}", answer.text());
        // Uploads of a device's among the last of them, the quota spent.
        if n >= total - devices {
            device_upload(rx.addr).expect("a device upload");
            let answer = Conn::open(rx.addr).request(&misconfigured);
            assert_eq!(answer.status, 401, "{}", answer.text());
        }
    }
    let took = started.elapsed();
    // The count is said a second after the first request counted, while
    // the receiver runs.
    let mut lines = Vec::new();
    let said = wait_until(Duration::from_secs(5), || {
        while let Some(line) = rx.stdout_json(Duration::from_millis(100)) {
            let unlisted = line.get("unlisted").is_some();
            lines.push(line);
            if unlisted {
                return true;
            }
        }
        false
    });
    assert!(
        said,
        "no count of requests not listed among {} lines",
        lines.len()
    );
    rx.stop();
    lines.extend(
        rx.remaining_stdout()
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
    );
    let listed = |status: u64| lines.iter().filter(|l| l["status"] == status).count() as u64;
    let device_lines = lines
        .iter()
        .filter(|l| l["method"] == "POST" && l["acked"] == true)
        .count();
    let unlisted: u64 = lines.iter().filter_map(|l| l["unlisted"].as_u64()).sum();
    let by_status = |status: &str| -> u64 {
        lines
            .iter()
            .filter_map(|l| l["statuses"][status].as_u64())
            .sum()
    };
    // Every request is listed or counted, none twice.
    assert_eq!(
        listed(200) - device_lines as u64 + by_status("200"),
        total / 2
    );
    assert_eq!(unlisted, by_status("200") + by_status("401"));
    assert_eq!(device_lines, devices as usize, "every device upload listed");
    let misconfigured_lines = lines
        .iter()
        .filter(|l| l["status"] == 401 && l["unit_id"] == "ee3df171ff0f6209a3dbaa00b00e1d05")
        .count();
    assert_eq!(
        misconfigured_lines, devices as usize,
        "every 401 of the device with a wrong token listed"
    );
    assert_eq!(listed(401) + by_status("401"), total / 2 + devices);
    let allowed = 100 + 10 * (took.as_secs() + 2);
    let shown = listed(200) + listed(401) - device_lines as u64 - misconfigured_lines as u64;
    assert!(
        shown <= allowed,
        "{shown} listed in {took:?}: at most {allowed} allowed"
    );
    println!("{shown} of {total} listed in {took:?}, {unlisted} counted");
}

/// Makes `total` connections from `clients` threads at once, each taking
/// the next number: `each(client, n)` makes connection `n` as client
/// `client` (its thread's index).
fn from_clients(clients: usize, total: u64, each: impl Fn(usize, u64) + Sync) {
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (next, each) = (&next, &each);
            scope.spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    each(client, n);
                }
            });
        }
    });
}

/// A TCP socket bound to 127.0.0.1's `port` (0: any) with `SO_REUSEADDR`:
/// another such socket may take the same port while it is open, unless
/// one of them listens.
fn bound_with_reuse(port: u16) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(s)
}

/// A connection to `to` from 127.0.0.1's `port` (0: any), the port
/// taken even while an earlier connection from it lingers, reads giving
/// up after `read_timeout`.
fn connect_from(to: SocketAddr, port: u16, read_timeout: Duration) -> io::Result<TcpStream> {
    let s = bound_with_reuse(port)?;
    s.connect_timeout(&to.into(), DEVICE_GIVES_UP)?;
    s.set_read_timeout(Some(read_timeout))?;
    Ok(s.into())
}

/// A client goes through its ports in some thousands of connections (a
/// busy device, a probe), and a port is used again once its connection is
/// gone. A connection from it is a new one, and is served whatever the
/// connection before it did, once the receiver has seen that one gone
/// (the status page no longer counts it as ignored), or half a second
/// after it: here that one broke the framing, which has the receiver
/// ignore whatever else its connection sends.
#[test]
fn a_client_port_used_again_is_served_as_a_new_connection() {
    use socket2::SockRef;
    // Sweeps come every quarter read timeout, 2 s apart here: forgetting
    // an address by two sweeps without it takes 2 s at least.
    let read_timeout = Duration::from_secs(8);
    let rx = receiver(&secs(read_timeout));
    let from = |port: u16| connect_from(rx.addr, port, read_timeout + SLACK);
    // The port used again as soon as the address is free (three times:
    // the closing thread's look every 100 ms could fall anywhere), then
    // half a second later with nothing else connecting meanwhile.
    let waits = [0, 0, 0, 500].map(Duration::from_millis);
    for (round, wait) in waits.into_iter().enumerate() {
        // Answered 400 and closed by the receiver first; the client hangs
        // up with a reset, so that the receiver's end of the pair of
        // addresses is gone at once (no FIN_WAIT_2 or TIME_WAIT left for
        // it).
        let mut first = from(0).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut broken =
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]"
                .to_vec();
        broken.extend_from_slice(&upload_request("after.broken.framing"));
        first.write_all(&broken).unwrap();
        let mut answer = Vec::new();
        first.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
        SockRef::from(&first)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(first);
        // Ignored, as long as it lasts, and until the closing thread's next
        // read of our descriptors (every 100 ms with the head cap's counts)
        // finds it gone: a request from the address before that may be
        // one the old connection had pipelined (from December 5 to 6 a
        // request on another socket at the pair was served at once, which
        // let a reset connection's pipelined uploads through). It was two
        // sweeps, 2 to 4 s here, until December 6, 2026; before that it
        // was remembered for 120 s.
        assert!(
            ignored_becomes(rx.addr, 0, Instant::now() + SLACK),
            "round {round}: port {port} still ignored"
        );
        std::thread::sleep(wait);
        let tag = format!("port.used.again.{round}");
        let answer = from(port)
            .map(Conn::on)
            .and_then(|mut c| c.try_request(&upload_request(&tag)));
        match answer {
            Ok(r) => assert_eq!(r.status, 200, "round {round}: {}", r.text()),
            Err(e) => {
                panic!("round {round}: no answer to a connection from port {port} again: {e}")
            }
        }
    }
    let saved = saved_after_stop(rx);
    for round in 0..waits.len() {
        assert!(
            saved.contains(&format!("port.used.again.{round}")),
            "round {round} not saved"
        );
    }
    assert!(
        !saved.contains("after.broken.framing"),
        "smuggled in: {saved}"
    );
}

/// How many connections the status page counts as ignored now (the line
/// is left out at none).
fn ignored_now(addr: SocketAddr) -> u64 {
    status_count(&status_page(addr), "ignored: ").unwrap_or(0)
}

/// Waits until the status page counts `n` ignored connections, until
/// `deadline`: whether it did.
fn ignored_becomes(addr: SocketAddr, n: u64, deadline: Instant) -> bool {
    wait_until(deadline.saturating_duration_since(Instant::now()), || {
        ignored_now(addr) == n
    })
}

/// An ignored address whose last connection is gone is forgotten at the
/// closing thread's next read of our descriptors (every 100 ms here), not
/// two sweeps later, whenever every connection in that read could be
/// named; a new connection from its port is then served. Two ways the
/// closer never shut the connection, so never named its socket: a
/// connection hung up on (`--respond hangup`: ignored, held for the read
/// timeout, then let go), and one that broke the framing and was closed
/// by tiny_http before the closer's look (a race it lost about one time
/// in eight in a probe: that connection's port was then ignored for 2 to
/// 4 s, two sweeps). With the sweeps alone the hung-up address is still
/// ignored a whole sweep (1 s here) after its hold ends.
#[test]
fn an_address_whose_connections_are_gone_is_forgotten_at_the_next_look() {
    use socket2::SockRef;
    let _guard = heavy();
    // Sweeps every second: two of them after the hold are 1 s at least.
    let read_timeout = Duration::from_secs(4);
    let sweep = read_timeout / 4;
    let mut rx = Receiver::start(&["--read-timeout", &secs(read_timeout), "--respond", "hangup"]);
    let addr = rx.addr;
    let from = |addr, port| connect_from(addr, port, read_timeout + SLACK).unwrap();
    // Hung up on: captured, no answer, the connection ignored and held.
    let mut hung = from(addr, 0);
    let port = hung.local_addr().unwrap().port();
    hung.write_all(&upload_request("hung.up")).unwrap();
    assert!(
        ignored_becomes(addr, 1, Instant::now() + SLACK),
        "the hung-up connection was not ignored"
    );
    let held_from = Instant::now();
    // The device gives up (a reset frees the port at once on its side).
    SockRef::from(&hung)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(hung);
    // The hold ends a read timeout after it began, then tiny_http lets
    // go of the socket; the sweeps alone forget the address a sweep or
    // two after that.
    let forgotten_by = held_from + read_timeout + sweep * 9 / 10;
    assert!(
        ignored_becomes(addr, 0, forgotten_by),
        "still ignored {:?} after the hang-up's hold began (the hold is {read_timeout:?})",
        held_from.elapsed()
    );
    // Its re-send from the same port is taken (and hung up on: captured).
    let mut again = from(addr, port);
    again
        .write_all(&upload_request("resent.same.port"))
        .unwrap();
    assert!(
        ignored_becomes(addr, 1, Instant::now() + SLACK),
        "the re-send from port {port} was not taken"
    );
    SockRef::from(&again)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(again);
    rx.stop();
    let saved = std::fs::read_to_string(&rx.capture).unwrap_or_default();
    for tag in ["hung.up", "resent.same.port"] {
        assert!(saved.contains(tag), "{tag} not saved: {saved}");
    }

    // Broken framing, answered 400, then closed by tiny_http itself
    // (Content-Length with chunked Transfer-Encoding): whether the closer
    // shut it first or not, its port is free within a look or two.
    let rx = Receiver::start(&["--read-timeout", &secs(read_timeout)]);
    let addr = rx.addr;
    for round in 0..16 {
        let mut broken = from(addr, 0);
        let port = broken.local_addr().unwrap().port();
        broken
            .write_all(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
                  Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
            .unwrap();
        let mut answer = Vec::new();
        broken.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        drop(broken);
        let waited = Instant::now();
        assert!(
            ignored_becomes(addr, 0, waited + sweep * 9 / 10),
            "round {round}: port {port} still ignored {:?} after its 400 was read",
            waited.elapsed()
        );
        let tag = format!("after.framing.{round}");
        let answer = Conn::on(from(addr, port)).try_request(&upload_request(&tag));
        match answer {
            Ok(r) => assert_eq!(r.status, 200, "round {round}: {}", r.text()),
            Err(e) => panic!("round {round}: no answer from port {port} again: {e}"),
        }
    }
    let saved = saved_after_stop(rx);
    for round in 0..16 {
        assert!(
            saved.contains(&format!("after.framing.{round}")),
            "round {round} not saved"
        );
    }
}

/// A client that breaks the framing with uploads pipelined behind it,
/// resets at once and connects again from the same port: what tiny_http
/// had read of the reset connection is never taken, however the new
/// connection's closing and the old one's requests interleave. (A
/// hostile-client probe, December 6: the closer, asked to shut the
/// address, shut the new connection instead, which it could name; once
/// that one was gone it forgot the address while tiny_http still handed
/// over the reset one's uploads, and eight at a time were served and
/// saved, in 23 of 150 rounds. The address's socket check could also
/// take them for the new connection's.)
#[test]
fn uploads_pipelined_before_a_reset_are_never_taken_for_a_reconnects() {
    use socket2::SockRef;
    let rx = receiver(LONG_READ_TIMEOUT);
    let addr = rx.addr;
    let from = |port| connect_from(addr, port, SLACK);
    for round in 0..60 {
        let mut first = from(0).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut sent =
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]"
                .to_vec();
        for n in 0..60 {
            sent.extend_from_slice(&upload_request(&format!("smuggled.{round}.{n}")));
        }
        first.write_all(&sent).unwrap();
        SockRef::from(&first)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(first);
        // Its client connects again from the port, sends nothing, and
        // closes a moment later.
        if let Ok(again) = from(port) {
            std::thread::sleep(Duration::from_millis(100));
            SockRef::from(&again)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    // A device is answered after all that.
    device_upload(addr).unwrap();
    assert_nothing_smuggled_saved(rx);
}

/// A port used again while the connection before it is still open in the
/// receiver (its client reset it, and the receiver holds it for a late
/// answer): the new connection is taken for the old one and ignored with
/// it, so when it breaks the framing itself nothing closes it. When the
/// old one's socket goes, the address is not forgotten at once (a
/// connection from it is still open): what the new connection sends after
/// its own broken request is still never taken. (Found by a review:
/// forgetting at once served it 200 and saved it.)
#[test]
fn an_address_is_not_forgotten_while_another_connection_from_it_is_ignored() {
    use socket2::SockRef;
    let rx = Receiver::start(&["--read-timeout", "8", "--respond", "late:3"]);
    // Reads wait for a late answer (3 s) and some.
    let from = |port| connect_from(rx.addr, port, Duration::from_secs(6)).unwrap();
    // The old one: an upload whose answer waits 3 s, then a broken
    // request; its client resets it.
    let mut old = from(0);
    let port = old.local_addr().unwrap().port();
    let mut sent = upload_request("old.late");
    sent.extend_from_slice(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]",
    );
    old.write_all(&sent).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    SockRef::from(&old)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(old);
    // The new one, from the same port, breaks the framing at once.
    std::thread::sleep(Duration::from_millis(200));
    let mut new = from(port);
    let auth = format!("authorization: token {TOKEN}\r\n");
    new.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nContent-Length: 5\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // Once the old one's late answer is out, its socket is gone.
    std::thread::sleep(Duration::from_secs(4));
    let _ = new.write_all(&upload_request("after.its.own.broken.framing"));
    let mut answers = Vec::new();
    let _ = new.read_to_end(&mut answers);
    let answers = String::from_utf8_lossy(&answers).into_owned();
    assert!(!answers.contains("HTTP/1.1 200"), "{answers}");
    let saved = saved_after_stop(rx);
    assert!(
        !saved.contains("after.its.own.broken.framing"),
        "taken after a broken request: {saved}"
    );
}

/// A chunked upload is refused 411 before any of its body is read, with
/// or without the token, whole or with framing tiny_http's decoder would
/// have taken loosely or refused (a size with a sign or whitespace, a bare
/// LF in an extension, trailer fields, a size that is not hex): answered
/// 411 first, nothing after it but tiny_http's own empty 400 for the bytes
/// it read past the head (never a 2xx), closed, nothing of it saved, and
/// the request after its chunks never taken. Until December 8 such bodies were decoded; a size line
/// `2;` LF `AB` then hid a request from a proxy that ends lines at a bare
/// LF, and this one answered it (a hostile-client probe, December 7).
#[test]
fn every_chunked_upload_is_refused_411_and_closed() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let auth = format!("authorization: token {TOKEN}\r\n");
    let body = batch("chunked.upload");
    let chunked = |auth: &str, extra: &str, framed: &[u8]| {
        let mut r = format!(
            "POST / HTTP/1.1\r\nHost: t\r\n{auth}{extra}Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(framed);
        r.extend_from_slice(&smuggled());
        r
    };
    let whole = {
        let mut b = format!("{:x}\r\n", body.len()).into_bytes();
        b.extend_from_slice(&body);
        b.extend_from_slice(b"\r\n0\r\n\r\n");
        b
    };
    let loose = {
        let mut b = format!("+{:x}\r\n", body.len()).into_bytes();
        b.extend_from_slice(&body);
        b.extend_from_slice(b"\r\n 0\r\n\r\n");
        b
    };
    let framings: [(&str, &[u8]); 9] = [
        ("whole", &whole),
        ("a size with a sign and a space", &loose),
        ("a bare LF in an extension", b"2;\nAB\r\n[]\r\n0\r\n\r\n"),
        ("trailer fields", b"2\r\n[]\r\n0\r\nx-trailer: 1\r\n\r\n"),
        ("not hex", b"zz\r\n"),
        ("overflowing", b"10000000000000000\r\n"),
        ("negative", b"-1\r\n"),
        ("0x prefix", b"0x5\r\n"),
        ("bad size after a good chunk", b"3\r\n[1,\r\nq\r\n"),
    ];
    let mut cases = Vec::new();
    for (name, framed) in framings {
        cases.push((format!("{name}, token"), chunked(&auth, "", framed)));
        cases.push((format!("{name}, no token"), chunked("", "", framed)));
    }
    // Refused before the body, so no 100 Continue is sent for it.
    cases.push((
        "whole, expecting 100 Continue".into(),
        chunked(&auth, "Expect: 100-continue\r\n", &whole),
    ));
    let results = exchanges_within(rx.addr, cases, CLOSED_BY_US);
    let mut failures = Vec::new();
    for (name, x) in &results {
        if x.raw.contains("100 Continue") || !x.raw.contains("send the body with Content-Length") {
            failures.push(format!("{name}: {}", x.raw));
        }
    }
    refused_and_closed(results, &[411], &mut failures);
    // The control: the same batch with a Content-Length is saved.
    let mut plain = format!(
        "POST / HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    plain.extend_from_slice(&body);
    let x = exchange(rx.addr, &plain, READ_TIMEOUT + SLACK);
    if x.statuses != [200] {
        failures.push(format!("with Content-Length: {:?}: {}", x.statuses, x.raw));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let saved = saved_after_stop(rx);
    assert!(
        !saved.contains("smuggled"),
        "a smuggled batch was saved: {saved}"
    );
    let lines: Vec<&str> = saved
        .lines()
        .filter(|l| l.contains("chunked.upload"))
        .collect();
    assert_eq!(lines.len(), 1, "only the control is saved: {lines:?}");
}

#[test]
fn unsupported_transfer_codings_are_501() {
    let rx = receiver(LONG_READ_TIMEOUT);
    let auth = format!("authorization: token {TOKEN}\r\n");
    let gz = gzip(&batch("gzip.transfer.coding"));
    let coded = |coding: &str, body: &[u8]| {
        let mut r =
            format!("POST / HTTP/1.1\r\nHost: t\r\n{auth}Transfer-Encoding: {coding}\r\n\r\n")
                .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let mut chunked_gz = format!("{:x}\r\n", gz.len()).into_bytes();
    chunked_gz.extend_from_slice(&gz);
    chunked_gz.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut failures = Vec::new();
    let results = exchanges_within(
        rx.addr,
        vec![
            ("gzip".into(), coded("gzip", &gz)),
            ("deflate".into(), coded("deflate", &gz)),
            ("gzip, chunked".into(), coded("gzip, chunked", &chunked_gz)),
        ],
        CLOSED_BY_US,
    );
    refused_and_closed(results, &[501], &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let saved = saved_after_stop(rx);
    assert!(!saved.contains("gzip.transfer.coding"), "{saved}");
}

#[test]
fn other_http_versions_and_bare_lf_are_answered_or_closed_never_hung() {
    const CLOSE_ROOM: Duration = Duration::from_millis(250);
    let _heavy = heavy();
    let rx = receiver(&secs(READ_TIMEOUT));
    let auth = format!("authorization: token {TOKEN}\r\n");
    let body = String::from_utf8(batch("bare.lf")).unwrap();
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("GET HTTP/2.0".into(), b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec()),
        ("GET HTTP/3.0".into(), b"GET / HTTP/3.0\r\nHost: t\r\n\r\n".to_vec()),
        (
            "POST HTTP/2.0".into(),
            format!("POST / HTTP/2.0\r\nHost: t\r\n{auth}Content-Length: 2\r\n\r\n[]").into_bytes(),
        ),
        ("GET HTTP/0.9".into(), b"GET / HTTP/0.9\r\nHost: t\r\n\r\n".to_vec()),
        (
            "POST HTTP/0.9, a GET behind it".into(),
            format!(
                "POST / HTTP/0.9\r\nHost: t\r\n{auth}Content-Length: 2\r\n\r\n[]\
                 GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .into_bytes(),
        ),
        ("GET, LF only".into(), b"GET / HTTP/1.1\nHost: t\n\n".to_vec()),
        (
            "POST, LF only".into(),
            format!(
                "POST / HTTP/1.1\nHost: t\nauthorization: token {TOKEN}\nContent-Length: {}\n\n{body}",
                body.len()
            )
            .into_bytes(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, x) in exchanges(rx.addr, cases) {
        println!(
            "{name}: answers {:?}, {:?} after {:?}",
            x.statuses, x.end, x.after
        );
        let version = name.contains("HTTP/");
        // A version we do not speak: 505, or a close (tiny_http may say 408
        // when it gives up reading). Bare LF: any answer, or a close.
        // The close within the read timeout of the request (the sweep
        // goes by how long nothing came; it used to come up to a sweep
        // after, 2.5 s here), with a little room for two busy cores.
        // HTTP/0.9, which tiny_http hands over (it kept the connection
        // alive and served it, the GET behind a POST too): 505 and a close,
        // nothing after it taken.
        let ok = if name.contains("HTTP/0.9") {
            x.statuses == [505] && x.end == End::Closed && x.after < READ_TIMEOUT
        } else if version {
            x.statuses.iter().all(|&s| s == 505 || s == 408)
                && (x.statuses.contains(&505)
                    || (x.end == End::Closed && x.after <= READ_TIMEOUT + CLOSE_ROOM))
        } else {
            !x.statuses.is_empty() || x.end == End::Closed
        };
        if !ok {
            failures.push(format!(
                "{name}: hung: answers {:?}, {:?} after {:?}: {:?}",
                x.statuses, x.end, x.after, x.raw
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn sixty_four_keep_alive_clients_arriving_at_once_are_all_served() {
    let _heavy = heavy();
    let rx = receiver(LONG_READ_TIMEOUT);
    const CLIENTS: usize = 64;
    for round in 0..3 {
        let start = Arc::new(std::sync::Barrier::new(CLIENTS));
        let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
        let (results_tx, results) = crossbeam_channel::unbounded();
        let addr = rx.addr;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (start, release, results_tx) =
                    (start.clone(), release.clone(), results_tx.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    let request = if i % 2 == 0 {
                        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()
                    } else {
                        upload_request("keep.alive")
                    };
                    let answer = Conn::open_within(addr, Duration::from_secs(5))
                        .and_then(|mut c| Ok((c.try_request(&request)?, c)));
                    let (status, conn) = match answer {
                        Ok((r, c)) => (Ok((r.status, t.elapsed())), Some(c)),
                        Err(e) => (Err(e.to_string()), None),
                    };
                    let _ = results_tx.send(status);
                    // Keep the connection open until every client is done.
                    let _ = release.recv_timeout(Duration::from_secs(30));
                    drop(conn);
                })
            })
            .collect();
        drop(results_tx);
        let got: Vec<_> = (0..CLIENTS)
            .map(|_| {
                results
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| Err("the client never reported".into()))
            })
            .collect();
        drop(release_tx);
        for c in clients {
            c.join().unwrap();
        }
        let served: Vec<_> = got
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|(s, _)| *s == 200)
            .collect();
        let slowest = served.iter().map(|(_, t)| *t).max().unwrap_or_default();
        println!(
            "round {round}: {} of {CLIENTS} served, slowest {slowest:?}",
            served.len()
        );
        assert_eq!(
            served.len(),
            CLIENTS,
            "round {round}: not every keep-alive client was served: {got:?}"
        );
    }
}

mod in_process {
    use autopi_rx::capture::{Capture, Index};
    use autopi_rx::receiver::ingest::{Auth, Config};
    use autopi_rx::receiver::server::{self, Settings};

    use super::*;

    /// Bytes of header names and values an event keeps.
    fn kept(headers: &[(String, String)]) -> usize {
        headers.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    #[test]
    fn a_listed_request_keeps_a_few_kib_of_headers_at_most() {
        let sink = autopi_rx::fixtures::RecordingSink::new(
            autopi_rx::fixtures::Gate::open(),
            autopi_rx::fixtures::Gate::open(),
        );
        let capture = Capture::with_sink(sink, 0, Index::default());
        let (events_tx, events) = crossbeam_channel::bounded(16);
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            ingest: Config {
                auth: Auth::Open,
                max_body: 1 << 20,
            },
            workers: 2,
            event_bodies: true,
            max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
            read_timeout: server::DEFAULT_READ_TIMEOUT,
        };
        let running = server::start(settings, capture, events_tx).unwrap();
        // 1 MiB of headers: 128 of 8 KiB.
        let pad = "h".repeat(8 * 1024 - 16);
        let mut headers = vec![("X-Small", "kept whole".to_string())];
        headers.extend((0..128).map(|_| ("X-Pad", pad.clone())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let big = post(running.addr, &headers, b"[]");
        assert_eq!(big.status, 200, "{}", big.text());
        let small = post(running.addr, &[("X-Small", "kept whole")], b"[]");
        assert_eq!(small.status, 200);
        let wait = Duration::from_secs(10);
        let big = events.recv_timeout(wait).unwrap();
        let small = events.recv_timeout(wait).unwrap();
        running.shutdown();
        println!(
            "1 MiB of headers: {} headers, {} bytes kept",
            big.headers.len(),
            kept(&big.headers)
        );
        assert!(
            kept(&big.headers) <= 8 * 1024,
            "{} bytes of headers kept for one listed request",
            kept(&big.headers)
        );
        assert!(
            small
                .headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("x-small") && v == "kept whole"),
            "a small request's headers are kept: {:?}",
            small.headers
        );
    }
}

/// The line a status page has about the capture taken away, if any.
fn capture_taken_line(rx: &Receiver) -> Option<String> {
    let page = Conn::open(rx.addr)
        .request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .text();
    page.lines()
        .find(|l| l.starts_with("capture was "))
        .map(str::to_string)
}

/// Checks that after `lose` takes the capture away from its path, three
/// times, the receiver says so (stderr, the status page: `said`) and the
/// next uploads' lines land in a new
/// file at the path, and that it holds no descriptor of the files taken
/// away: with no forward target nothing reads them again. Until December
/// 6 each stayed open until exit (a capture deleted to free a full disk
/// kept it full, every upload answered 503; a hostile-client probe).
fn capture_taken_away(said: &str, then: &str, lose: impl Fn(&std::path::Path, usize)) {
    let rx = receiver(&secs(READ_TIMEOUT));
    assert_eq!(capture_taken_line(&rx), None);
    for round in 0..3 {
        assert_eq!(rx.upload(&batch(&format!("before.{round}"))).status, 200);
        lose(&rx.capture, round);
        for tag in ["after.first", "after.second"].map(|t| format!("{t}.{round}")) {
            let r = rx.upload(&batch(&tag));
            let at_path = std::fs::read_to_string(&rx.capture).unwrap_or_default();
            assert!(
                r.status != 200 || at_path.contains(&tag),
                "{tag}: answered 200 but its line is not in the file at {}: {at_path:?}",
                rx.capture.display()
            );
            assert_eq!(r.status, 200, "{tag}: {}", r.text());
        }
    }
    let name = rx.capture.file_name().unwrap().to_str().unwrap();
    println!("stderr: {}", rx.wait_stderr(name));
    let line = capture_taken_line(&rx).expect("a line about the capture on the status page");
    assert!(
        line.starts_with(&format!("capture was {said} at ")) && line.contains(then),
        "{line}"
    );
    // The descriptors of the receiver's that name a file in the capture's
    // folder other than the capture itself.
    let dir = rx.capture.parent().unwrap();
    let others = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(format!("/proc/{}/fd", rx.child.id()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|to| to.starts_with(dir) && *to != rx.capture)
            .collect()
    };
    let mut held = Vec::new();
    let let_go = wait_until(SLACK, || {
        held = others();
        held.is_empty()
    });
    assert!(let_go, "the files taken away are still open: {held:?}");
}

/// The capture cut short in place while running (`: > capture`,
/// logrotate's `copytruncate`), then a large upload that is refused after
/// its line was written (its records are checked while it is saved), then
/// more: the file must hold exactly the batches answered 200 after the cut,
/// each line readable. Until December 6 the writer went by its own count of
/// the file's length: the refused line's cut-back grew the file with a run
/// of NUL bytes back to the old length (or left part of the line), and the
/// next batch answered 200 was glued to it, unreadable (a hostile-client
/// probe, logrotate's copytruncate: 1 of 84 acknowledged batches lost).
#[test]
fn a_capture_cut_short_in_place_is_written_on_at_its_end() {
    let rx = receiver(&secs(READ_TIMEOUT));
    for n in 0..3 {
        assert_eq!(rx.upload(&batch(&format!("before.{n}"))).status, 200);
    }
    cut_short_in_place(&rx.capture);
    // About 900 kB of records, then one that is not a record.
    let records: Vec<String> = (0..9000)
        .map(|n| format!(r#"{{"@t":"filler","@ts":"2026-12-02T01:00:00","pad":"{n:0>60}"}}"#))
        .collect();
    let refused = format!("[{},1.5]", records.join(","));
    assert_eq!(rx.upload(refused.as_bytes()).status, 400);
    let mut acked = Vec::new();
    for n in 0..3 {
        let tag = format!("after.{n}");
        assert_eq!(rx.upload(&batch(&tag)).status, 200);
        acked.push(tag);
    }
    let text = std::fs::read(&rx.capture).unwrap();
    assert!(!text.contains(&0), "NUL bytes in the capture");
    let lines: Vec<serde_json::Value> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a readable capture line"))
        .collect();
    let tags: Vec<&str> = lines
        .iter()
        .map(|l| l["records"][0]["@t"].as_str().unwrap())
        .collect();
    assert_eq!(tags, acked, "the file after the cut");
    rx.wait_stderr("was cut short while running");
    let line = capture_taken_line(&rx).expect("a line about the capture on the status page");
    assert!(
        line.starts_with("capture was CUT SHORT at ") && line.contains("written on at its new end"),
        "{line}"
    );
}

#[test]
fn a_deleted_capture_is_reported_and_started_again_at_its_path() {
    capture_taken_away("DELETED OR MOVED", "a new file was started", |path, _| {
        std::fs::remove_file(path).unwrap()
    });
}

#[test]
fn a_capture_moved_away_is_reported_and_started_again_at_its_path() {
    capture_taken_away(
        "DELETED OR MOVED",
        "a new file was started",
        |path, round| std::fs::rename(path, path.with_extension(format!("moved.{round}"))).unwrap(),
    );
}

/// Another file renamed over the capture's path (an editor's save, a
/// rotation that writes the new file first).
#[test]
fn a_capture_replaced_is_reported_and_the_new_file_written_to() {
    capture_taken_away(
        "REPLACED",
        "the file now at the path is written on",
        |path, round| {
            let new = path.with_extension(format!("new.{round}"));
            std::fs::write(&new, "").unwrap();
            std::fs::rename(&new, path).unwrap()
        },
    );
}

/// Starts the receiver on `args`: Some(exit status, stderr) when it
/// refuses to start, None when it started listening (it is then stopped).
fn start_refused(args: &[&std::ffi::OsStr]) -> Option<(std::process::ExitStatus, String)> {
    let mut child = binary()
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--headless"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    let mut lines = io::BufReader::new(child.stderr.take().unwrap());
    // Ends at the exit (EOF) or at the listening line.
    while io::BufRead::read_line(&mut lines, &mut err).unwrap_or(0) > 0 {
        if err.contains("listening on") {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    }
    Some((child.wait().unwrap(), err))
}

#[test]
fn a_token_file_with_a_bom_and_crlf_works() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("\u{feff}{TOKEN}\r\n# the spare device\r\nSECOND-TOKEN\r\n"),
    )
    .unwrap();
    let capture = dir.path().join("c.jsonl");
    let rx = Receiver::spawn(
        binary()
            .arg("--token-file")
            .arg(&tokens)
            .arg("--capture")
            .arg(&capture),
    );
    for token in [TOKEN, "SECOND-TOKEN"] {
        let r = rx.post(
            &[("authorization", &format!("token {token}"))],
            &batch("bom"),
        );
        assert_eq!(r.status, 200, "token {token}: {}", r.text());
    }
    let r = rx.post(&[("authorization", "token WRONG")], &batch("bom"));
    assert_eq!(r.status, 401);
}

#[test]
fn tokens_with_non_ascii_or_control_characters_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut failures = Vec::new();
    for bad in [
        "t\u{f6}ken-\u{fc}",
        "abc\u{1}def",
        "ab\u{7f}cd",
        "ab\tcd",
        "\u{202e}abcd",
    ] {
        let file = dir.path().join("tokens");
        std::fs::write(&file, format!("{bad}\n")).unwrap();
        let from_file = [
            "--token-file".as_ref(),
            file.as_os_str(),
            "--capture".as_ref(),
            capture.as_os_str(),
        ];
        let from_flag = [
            "--token".as_ref(),
            bad.as_ref(),
            "--capture".as_ref(),
            capture.as_os_str(),
        ];
        for (how, args) in [("--token-file", &from_file), ("--token", &from_flag)] {
            match start_refused(args) {
                None => failures.push(format!("{how} {bad:?}: started and kept running")),
                Some((status, err)) => {
                    let clear = err.to_lowercase().contains("token") && !err.contains(bad);
                    if status.code() != Some(2) || !clear {
                        failures.push(format!("{how} {bad:?}: {status}: {err:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

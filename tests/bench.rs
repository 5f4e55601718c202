//! Benchmarks with printed figures (not pass/fail timings):
//!
//! ```text
//! cargo test --release --test bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `AUTOPI_RX_BENCH_DIR=/some/dir` puts the capture there (default: a
//! temporary folder under `target/`, on the same disk as the project).
//!
//! The acknowledgement benchmark also runs the Express peer
//! (`tests/peers/express_receiver.js`, a minimal correct Express receiver)
//! side by side, when express is installed; node and express stay out of
//! the build and of `cargo test`. To install express where the benchmark
//! looks by default:
//!
//! ```text
//! npm install --prefix /tmp/express-peer express@4
//! ```
//!
//! (`AUTOPI_RX_EXPRESS_PEER=/other/dir` to look elsewhere; the folder must
//! hold `node_modules/express`, and `node` must be on the PATH.) Without
//! it, that part is skipped with a message.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use autopi_rx::capture::Capture;
use autopi_rx::latency::Latencies;
use autopi_rx::receiver::ingest::{Auth, Config, decode};
use autopi_rx::receiver::server::{self, Settings};
use common::*;

fn batch_gz() -> (Vec<u8>, Vec<u8>) {
    let json = std::fs::read(samples().join("batch-1000-naive.json")).unwrap();
    (gzip(&json), json)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("AUTOPI_RX_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => {
            // The project's disk, as a capture would be. `target` is not
            // there when the build went elsewhere (`CARGO_TARGET_DIR`).
            let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
            std::fs::create_dir_all(&base).unwrap();
            tempfile::tempdir_in(base).unwrap()
        }
    }
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn decode_a_1000_record_gzip_batch() {
    let (gz, json) = batch_gz();
    let config = Config {
        auth: Auth::Open,
        max_body: 32 << 20,
    };
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        let b = decode(&config, Some("gzip"), &gz).unwrap();
        assert_eq!(b.records, 1000);
    }
    let per = start.elapsed() / rounds;
    println!(
        "decode (inflate {} -> {} bytes, validate, hash): {:?} per batch, {:.2} M records/s on one core",
        gz.len(),
        json.len(),
        per,
        1000.0 / per.as_secs_f64() / 1e6
    );
}

/// The disk's own floor: the capture's line for the 1000-record batch
/// (106 kB) appended and `fdatasync`ed, back to back, in the capture's
/// folder. Kept open so that its probes can be taken in blocks between the
/// device's posts: both then see the same moments of a shared machine.
struct Floor {
    file: std::fs::File,
    path: std::path::PathBuf,
    line: Vec<u8>,
}

impl Floor {
    fn open(dir: &std::path::Path, line_len: usize) -> Floor {
        let path = dir.join("floor-probe.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut line = vec![b'x'; line_len - 1];
        line.push(b'\n');
        Floor { file, path, line }
    }

    fn probe(&mut self, times: usize) -> Latencies {
        (0..times)
            .map(|_| {
                let t = Instant::now();
                self.file.write_all(&self.line).unwrap();
                self.file.sync_data().unwrap();
                t.elapsed()
            })
            .collect()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The device's request for `batch`, as the device sends it.
fn device_request(gz: &[u8]) -> Vec<u8> {
    let auth = format!("token {TOKEN}");
    request_bytes(
        "POST",
        &[
            ("unit-id", "ee3df171ff0f6209a3dbaa00b00e1d05"),
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("content-encoding", "gzip"),
        ],
        gz,
    )
}

/// Posts `request` on `conns` keep-alive connections, each as fast as it
/// is answered, for `secs`; the batches per second and the latencies.
fn throughput(addr: SocketAddr, request: &[u8], conns: usize, secs: u64) -> (f64, Latencies) {
    let (rate, times, _) = throughput_with_cpu(addr, request, conns, secs);
    (rate, times)
}

/// `throughput`, and the CPU time its client threads used.
fn throughput_with_cpu(
    addr: SocketAddr,
    request: &[u8],
    conns: usize,
    secs: u64,
) -> (f64, Latencies, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let request = request.to_vec();
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut times = Latencies::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = conn.request(&request);
                    assert_eq!(r.status, 200, "{}", r.text());
                    times.record(t.elapsed());
                }
                drop(conn);
                (times, cpu_time(rustix::time::ClockId::ThreadCPUTime))
            })
        })
        .collect();
    let start = Instant::now();
    let mut times = Latencies::default();
    let mut clients = Duration::ZERO;
    for t in threads {
        let (got, cpu) = t.join().unwrap();
        times.merge(&got);
        clients += cpu;
    }
    (
        times.count() as f64 / start.elapsed().as_secs_f64(),
        times,
        clients,
    )
}

/// A CPU clock of this process (the whole process, or the calling thread).
fn cpu_time(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The CPU time another process has used so far, all its threads (user and
/// system, from `/proc`, in clock ticks).
fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the peer's /proc stat");
    // Fields after the command name (which may hold spaces), from the
    // state (field 3): utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// CPU per upload over a side's rounds: the server's, and its clients'.
#[derive(Default)]
struct CpuUse {
    server: Duration,
    clients: Duration,
    wall: Duration,
}

impl CpuUse {
    /// One round that began at `began`: the server's CPU and its clients'.
    fn add(&mut self, server: Duration, clients: Duration, began: Instant) {
        self.server += server;
        self.clients += clients;
        self.wall += began.elapsed();
    }

    fn print(&self, who: &str, uploads: u64) {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / uploads.max(1) as f64;
        println!(
            "{who}: {:.3} ms of CPU per upload ({:.2} cores), its clients {:.3} ms",
            per(self.server),
            self.server.as_secs_f64() / self.wall.as_secs_f64(),
            per(self.clients),
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn print_throughput(who: &str, conns: usize, (rate, times): &(f64, Latencies)) {
    println!(
        "{who}, {conns} connections: {rate:.0} batches/s ({:.2} M records/s), ack p50 {}, p99 {}",
        rate * 1000.0 / 1e6,
        ms(times.quantile(0.5)),
        ms(times.quantile(0.99))
    );
}

/// The Express peer, if installed: its folder.
fn express_peer() -> Result<std::path::PathBuf, String> {
    let dir = std::env::var_os("AUTOPI_RX_EXPRESS_PEER")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("/tmp/express-peer"));
    if !dir.join("node_modules/express").is_dir() {
        return Err(format!(
            "no {}/node_modules/express (see the top of tests/bench.rs to install it)",
            dir.display()
        ));
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(dir),
        _ => Err("node is not on the PATH".into()),
    }
}

/// The Express peer listening on a free loopback port, capturing in `dir`.
struct Express(std::process::Child, SocketAddr);

impl Express {
    fn start(peer: &std::path::Path, dir: &std::path::Path) -> Express {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/express_receiver.js"
        );
        let mut child = std::process::Command::new("node")
            .env("NODE_PATH", peer.join("node_modules"))
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("express.jsonl"))
            .arg(TOKEN)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start node");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
            line.clear();
        }
        assert!(line.contains("listening on"), "express did not start");
        Express(child, SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

impl Drop for Express {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Blocks the sequential run and the throughput run are cut into: the
/// disk's floor and the device, or autopi-rx and the Express peer, take
/// turns, so a burst of a shared machine's load falls on both sides alike.
const BLOCKS: usize = 10;
const ROUNDS: usize = 4;
const ROUND_SECS: u64 = 3;

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn acknowledgement_latency_and_throughput() {
    let dir = bench_dir();
    let (gz, json) = batch_gz();
    let request = device_request(&gz);
    // The capture's line: the records plus the entry's fields.
    let line_len = json.len() + 150;
    println!("capture folder: {}", dir.path().display());

    let capture = Capture::open(&dir.path().join("bench.jsonl")).unwrap();
    let (events, drain) = crossbeam_channel::bounded(autopi_rx::run::EVENT_QUEUE);
    std::thread::spawn(move || for _ in drain {});
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        ingest: Config {
            auth: Auth::tokens(&[TOKEN]),
            max_body: 32 << 20,
        },
        workers: 16,
        event_bodies: false,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    let running = server::start(settings, capture, events).unwrap();
    let addr = running.addr;

    // One device posting in sequence on a keep-alive connection, 1000
    // posts in blocks of 100, each block after 50 of the floor's probes.
    let mut floor = Floor::open(dir.path(), line_len);
    let mut floor_times = Latencies::default();
    let mut conn = Conn::open(addr);
    let mut times = Latencies::default();
    for _ in 0..BLOCKS {
        floor_times.merge(&floor.probe(500 / BLOCKS));
        for _ in 0..1000 / BLOCKS {
            let t = Instant::now();
            let r = conn.request(&request);
            assert_eq!(r.status, 200, "{}", r.text());
            times.record(t.elapsed());
        }
    }
    drop((conn, floor));
    let floor = floor_times.summary().unwrap();
    println!(
        "disk floor ({} kB line + fdatasync, back to back, 500 times in {BLOCKS} blocks between the device's): \
         p50 {}, p99 {}",
        line_len / 1000,
        ms(floor.p50),
        ms(floor.p99),
    );
    let l = times.summary().unwrap();
    let over = l.p99.as_secs_f64() - floor.p99.as_secs_f64();
    println!(
        "autopi-rx, 1 connection, 1000 gzip batches of 1000 records in sequence: p50 {}, p99 {}, max {}; \
         p99 minus the floor's p99: {:+.3} ms (target <= 0.6 ms)",
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        over * 1e3
    );

    print_throughput("autopi-rx", 4, &throughput(addr, &request, 4, 5));

    // Eight connections, autopi-rx and Express taking turns.
    let express = match express_peer() {
        Err(why) => {
            println!("Express peer skipped: {why}");
            None
        }
        Ok(peer) => Some(Express::start(&peer, dir.path())),
    };
    let (mut ours, mut theirs) = (Latencies::default(), Latencies::default());
    let (mut ours_secs, mut theirs_secs) = (0.0, 0.0);
    let mut ratios = Vec::new();
    // CPU time: ours is this process's less its client threads' (the
    // receiver runs in-process); Express's is the node process's own.
    let (mut ours_cpu, mut theirs_cpu) = (CpuUse::default(), CpuUse::default());
    for round in 1..=ROUNDS {
        let (began, cpu) = (
            Instant::now(),
            cpu_time(rustix::time::ClockId::ProcessCPUTime),
        );
        let (rate, got, clients) = throughput_with_cpu(addr, &request, 8, ROUND_SECS);
        let process = cpu_time(rustix::time::ClockId::ProcessCPUTime) - cpu;
        ours_cpu.add(process.saturating_sub(clients), clients, began);
        ours_secs += got.count() as f64 / rate;
        ours.merge(&got);
        let Some(express) = &express else {
            println!("  round {round}: autopi-rx {rate:.0}/s");
            continue;
        };
        let (began, cpu) = (Instant::now(), cpu_time_of(express.0.id()));
        let (their_rate, got, clients) = throughput_with_cpu(express.1, &request, 8, ROUND_SECS);
        theirs_cpu.add(cpu_time_of(express.0.id()) - cpu, clients, began);
        theirs_secs += got.count() as f64 / their_rate;
        theirs.merge(&got);
        ratios.push(rate / their_rate);
        println!(
            "  round {round}: autopi-rx {rate:.0}/s, express {their_rate:.0}/s, {:.1}x",
            rate / their_rate
        );
    }
    running.shutdown();
    let ours_rate = ours.count() as f64 / ours_secs;
    let ours_count = ours.count();
    print_throughput("autopi-rx, rounds pooled", 8, &(ours_rate, ours));
    ours_cpu.print("autopi-rx, 8 connections", ours_count);
    if let Some(express) = express {
        drop(express);
        let theirs_rate = theirs.count() as f64 / theirs_secs;
        print_throughput("express, rounds pooled", 8, &(theirs_rate, theirs.clone()));
        theirs_cpu.print("express, 8 connections", theirs.count());
        let saved = std::fs::metadata(dir.path().join("express.jsonl")).map_or(0, |m| m.len());
        println!(
            "express saved {} MB ({} kB per batch: the records were parsed and written)",
            saved / 1_000_000,
            saved / 1000 / theirs.count().max(1)
        );
        ratios.sort_by(f64::total_cmp);
        println!(
            "autopi-rx / express over 8 connections, {ROUNDS} rounds of {ROUND_SECS} s each, taking turns: \
             {:.1}x overall, rounds {:.1}x to {:.1}x (target >= 10x)",
            ours_rate / theirs_rate,
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

/// Sequential ack latency of the real binary, p50/p99/max over `n` posts.
fn sequential_latency(r: &Receiver, request: &[u8], n: usize) -> (Duration, Duration, Duration) {
    let mut conn = Conn::open(r.addr);
    let times: Latencies = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(conn.request(request).status, 200);
            t.elapsed()
        })
        .collect();
    let l = times.summary().expect("at least one post");
    (l.p50, l.p99, l.max)
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn answer_latency_with_a_dead_upstream() {
    let dir = bench_dir();
    let (gz, _) = batch_gz();
    let auth = format!("token {TOKEN}");
    let request = request_bytes(
        "POST",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        &gz,
    );
    // Nothing listens on a port that was just free: refused at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    // Accepts connections and never answers: a hung upstream.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hung.incoming() {
            held.push(s);
        }
    });
    let upstream = Receiver::start(&[]);
    let live = format!("http://{}/", upstream.addr);
    let setups: Vec<(&str, Vec<String>)> = vec![
        ("no --forward", vec![]),
        (
            "upstream refusing connections",
            vec![format!("http://127.0.0.1:{dead_port}/")],
        ),
        (
            "upstream accepting, never answering",
            vec![format!("http://127.0.0.1:{hung_port}/")],
        ),
        (
            "MQTT broker down",
            vec![format!("mqtt://127.0.0.1:{dead_port}/bench")],
        ),
        ("live upstream (a second autopi-rx)", vec![live]),
    ];
    println!("1000-record gzip batches in sequence, 1000 per setup, 3 rounds interleaved:");
    for round in 1..=3 {
        for (i, (name, forward)) in setups.iter().enumerate() {
            let capture = dir.path().join(format!("fwd-{round}-{i}.jsonl"));
            let mut args = vec![
                "--token".to_string(),
                TOKEN.into(),
                "--capture".into(),
                capture.display().to_string(),
            ];
            for f in forward {
                args.extend(["--forward".to_string(), f.clone()]);
            }
            let mut cmd = binary();
            cmd.env("AUTOPI_RX_FORWARD_TOKEN", TOKEN).args(&args);
            let mut r = Receiver::spawn(&mut cmd);
            let (p50, p99, max) = sequential_latency(&r, &request, 1000);
            println!("  round {round}, {name:38}: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}");
            r.child.kill().unwrap();
            r.child.wait().unwrap();
        }
    }
}

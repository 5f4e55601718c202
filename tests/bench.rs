//! Benchmarks with printed figures (not pass/fail timings):
//!
//! ```text
//! cargo test --release --test bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `AUTOPI_RX_BENCH_DIR=/some/dir` puts the capture there (default: a
//! temporary folder under `target/`, on the same disk as the project).

mod common;

use std::io::Write;
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
            let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
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

/// Raw `write + fdatasync` latency of the disk under the capture folder.
fn disk_fsync_p50(dir: &std::path::Path) -> Duration {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let buf = vec![b'x'; 100_000];
    let times: Latencies = (0..50)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    times.quantile(0.5)
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn acknowledgement_latency_and_throughput() {
    let dir = bench_dir();
    println!(
        "capture folder: {} (disk write+fdatasync of 100 kB: p50 {:?})",
        dir.path().display(),
        disk_fsync_p50(dir.path())
    );
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
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    let running = server::start(settings, capture, events).unwrap();
    let addr = running.addr;
    let (gz, _) = batch_gz();
    let auth = format!("token {TOKEN}");
    let request = request_bytes(
        "POST",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        &gz,
    );

    // One device posting in sequence on a keep-alive connection.
    let mut conn = Conn::open(addr);
    let mut times = Latencies::default();
    for _ in 0..1000 {
        let t = Instant::now();
        assert_eq!(conn.request(&request).status, 200);
        times.record(t.elapsed());
    }
    let l = times.summary().unwrap();
    println!(
        "1 connection, 1000-record gzip batches in sequence: p50 {:?}, p99 {:?}, max {:?}",
        l.p50, l.p99, l.max
    );

    // Several connections, each posting as fast as it is acknowledged.
    for conns in [4, 8, 16] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let threads: Vec<_> = (0..conns)
            .map(|_| {
                let request = request.clone();
                std::thread::spawn(move || {
                    let mut conn = Conn::open(addr);
                    let mut times = Latencies::default();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        assert_eq!(conn.request(&request).status, 200);
                        times.record(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        let start = Instant::now();
        let mut times = Latencies::default();
        for t in threads {
            times.merge(&t.join().unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        let n = times.count() as f64;
        println!(
            "{conns} connections: {:.0} batches/s ({:.2} M records/s), ack p50 {:?}, p99 {:?}",
            n / secs,
            n * 1000.0 / secs / 1e6,
            times.quantile(0.5),
            times.quantile(0.99)
        );
    }
    running.shutdown();
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

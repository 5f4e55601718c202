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

//! The simulator against real HTTP on 127.0.0.1: the receiver itself, and
//! small scripted servers that refuse or answer too late.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use autopi_rx::capture::{self, Capture};
use autopi_rx::cli::{Cli, Command};
use autopi_rx::receiver::ingest::{Auth, Config, DEFAULT_MAX_BODY};
use autopi_rx::receiver::server::{self, Running};
use autopi_rx::simulate::{
    Batches, HOME, Scheme, Session, Settings, SimulateArgs, Stamps, Summary, default_start, run,
    run_until, unit_id_for,
};
use clap::Parser;
use flate2::read::GzDecoder;
use serde_json::Value;

const TOKEN: &str = "bench-token-5f2c";
/// Guards against a hung test, never orders anything.
const GUARD: Duration = Duration::from_secs(20);

fn args(url: &str, count: u64) -> SimulateArgs {
    SimulateArgs {
        url: url.to_string(),
        token: TOKEN.to_string(),
        scheme: Scheme::Token,
        gzip: None,
        unit_id: None,
        batch: 25,
        interval: 0.0,
        count: Some(count),
        concurrency: 1,
        seed: 42,
        timestamps: Stamps::Naive,
        start: None,
        timeout: 10.0,
        // Tests script their failures; waiting between retries would only
        // slow them down.
        retry_wait: 0.0,
        ca: None,
    }
}

/// The real receiver on a free port, capturing into `dir`.
fn receiver(dir: &Path) -> Running {
    let capture = Capture::open(&dir.join("capture.jsonl")).unwrap();
    let (events, _) = crossbeam_channel::bounded(1024);
    let settings = server::Settings {
        listen: "127.0.0.1:0".into(),
        ingest: Config {
            auth: Auth::tokens(&[TOKEN]),
            max_body: DEFAULT_MAX_BODY,
        },
        workers: 4,
        event_bodies: true,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    server::start(settings, capture, events).unwrap()
}

fn captured(path: &Path) -> Vec<capture::CapturedBatch> {
    capture::read(path).unwrap().map(Result::unwrap).collect()
}

/// The JSON text of every batch the run is expected to send.
fn expected_batches(args: &SimulateArgs, n: usize) -> Vec<Vec<u8>> {
    let settings = Settings::from_args(args).unwrap();
    Batches::new(&settings)
        .take(n)
        .map(|p| if p.gzip { gunzip(&p.body) } else { p.body })
        .collect()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(body).read_to_end(&mut out).unwrap();
    out
}

/// One request as a scripted server saw it.
#[derive(Debug)]
struct Seen {
    body: Vec<u8>,
    status: u16,
    authorization: Option<String>,
    encoding: Option<String>,
    unit_id: Option<String>,
    content_type: Option<String>,
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.to_string())
}

fn seen(request: &mut tiny_http::Request, status: u16) -> Seen {
    let mut body = Vec::new();
    request.as_reader().read_to_end(&mut body).unwrap();
    Seen {
        body,
        status,
        authorization: header(request, "authorization"),
        encoding: header(request, "content-encoding"),
        unit_id: header(request, "unit-id"),
        content_type: header(request, "content-type"),
    }
}

fn local_server() -> (Arc<tiny_http::Server>, String) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    (server, format!("http://127.0.0.1:{port}/logbook/storage"))
}

/// Answers the i-th request with `statuses[i]`, later ones with 200,
/// until unblocked.
fn scripted(statuses: Vec<u16>) -> (Arc<tiny_http::Server>, String, JoinHandle<Vec<Seen>>) {
    let (server, url) = local_server();
    let serving = server.clone();
    let handle = std::thread::spawn(move || {
        let mut log = Vec::new();
        while let Ok(mut request) = serving.recv() {
            let status = statuses.get(log.len()).copied().unwrap_or(200);
            log.push(seen(&mut request, status));
            let body = if status < 400 {
                r#"{"accepted":1}"#
            } else {
                r#"{"error":"scripted failure"}"#
            };
            request
                .respond(tiny_http::Response::from_string(body).with_status_code(status))
                .unwrap();
        }
        log
    });
    (server, url, handle)
}

fn assert_clean(summary: &Summary, batches: u64, records: u64) {
    assert_eq!(summary.batches, batches, "{summary}");
    assert_eq!(summary.records, records, "{summary}");
    assert_eq!(summary.unacknowledged, 0, "{summary}");
    assert!(!summary.interrupted);
    let latency = summary
        .latency
        .expect("acknowledged batches have a latency");
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
}

#[test]
fn round_trip_with_the_receiver_acknowledges_and_captures_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path());
    let mut a = args(&format!("http://{}/logbook/storage", rx.addr), 12);
    a.gzip = Some(9);
    a.concurrency = 3;
    let summary = run(&a).unwrap();
    assert_clean(&summary, 12, 12 * 25);
    assert_eq!((summary.retries, summary.resends), (0, 0));
    let path = rx.capture_path().to_path_buf();
    rx.shutdown();

    let lines = captured(&path);
    assert_eq!(lines.len(), 12);
    let unit_id = unit_id_for(42);
    assert!(
        unit_id.len() == 32
            && unit_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    for line in &lines {
        assert_eq!(line.unit_id.as_deref(), Some(unit_id.as_str()));
        assert_eq!(line.encoding, "gzip");
        assert_eq!(line.duplicate_of, None);
    }
    let got: BTreeSet<&[u8]> = lines.iter().map(|l| l.records.get().as_bytes()).collect();
    let want = expected_batches(&a, 12);
    let want: BTreeSet<&[u8]> = want.iter().map(Vec::as_slice).collect();
    assert_eq!(got, want, "the capture holds exactly the batches sent");
}

/// With its last batch acknowledged the run ends; it waited one more
/// interval first (a README audit: `--count 1 --interval 1` took 1 s; here
/// an hour).
#[test]
fn the_run_ends_with_its_last_batch_not_an_interval_later() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path());
    let mut a = args(&format!("http://{}/logbook/storage", rx.addr), 1);
    a.interval = 3600.0;
    let (tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(run(&a).map(|s| s.batches).map_err(|f| f.message));
    });
    let batches = done
        .recv_timeout(Duration::from_secs(30))
        .expect("still running 30 s after its one batch");
    assert_eq!(batches, Ok(1));
    rx.shutdown();
}

#[test]
fn refused_batches_are_retried_whole_and_nothing_is_lost() {
    let (server, url, log) = scripted(vec![500, 500]);
    let summary = run(&args(&url, 3)).unwrap();
    server.unblock();
    let log = log.join().unwrap();
    assert_clean(&summary, 3, 75);
    assert_eq!((summary.retries, summary.resends), (2, 0));

    assert_eq!(log.len(), 5);
    let acked: Vec<&[u8]> = log
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.body.as_slice())
        .collect();
    let distinct: HashSet<&[u8]> = acked.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "each batch acknowledged once");
    let want = expected_batches(&args(&url, 3), 3);
    assert_eq!(distinct, want.iter().map(Vec::as_slice).collect());
    for refused in log.iter().filter(|s| s.status == 500) {
        assert!(distinct.contains(refused.body.as_slice()));
    }
}

#[test]
fn device_headers_are_sent_as_the_device_sends_them() {
    let (server, url, log) = scripted(vec![]);
    let mut a = args(&url, 2);
    a.gzip = Some(9);
    a.unit_id = Some("0123456789abcdef0123456789abcdef".into());
    let with_token = run(&a).unwrap();
    a.scheme = Scheme::Bearer;
    a.gzip = None;
    let with_bearer = run(&a).unwrap();
    server.unblock();
    let log = log.join().unwrap();
    assert_eq!((with_token.batches, with_bearer.batches), (2, 2));
    assert_eq!(log.len(), 4);
    for (i, s) in log.iter().enumerate() {
        let scheme = if i < 2 { "token" } else { "Bearer" };
        assert_eq!(s.authorization, Some(format!("{scheme} {TOKEN}")));
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            s.unit_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        let json = if i < 2 {
            assert_eq!(s.encoding.as_deref(), Some("gzip"));
            gunzip(&s.body)
        } else {
            assert_eq!(s.encoding, None);
            s.body.clone()
        };
        assert!(json.is_ascii() && !json.contains(&b'\n') && !json.contains(&b' '));
        let records: Vec<Value> = serde_json::from_slice(&json).unwrap();
        assert_eq!(records.len(), 25);
    }
}

#[test]
fn an_answer_after_the_timeout_brings_the_identical_bytes_again() {
    let (server, url) = local_server();
    let serving = server.clone();
    let late = std::thread::spawn(move || {
        let mut first = serving.recv().unwrap();
        let first_seen = seen(&mut first, 200);
        // Holding the first answer until the re-send arrives: by then the
        // simulator has given up on it.
        let mut second = serving.recv_timeout(GUARD).unwrap().expect("a re-send");
        let second_seen = seen(&mut second, 200);
        second
            .respond(tiny_http::Response::from_string("{}"))
            .unwrap();
        let _ = first.respond(tiny_http::Response::from_string("{}"));
        (first_seen, second_seen)
    });
    let mut a = args(&url, 1);
    a.gzip = Some(6);
    a.timeout = 0.3;
    let summary = run(&a).unwrap();
    let (first, second) = late.join().unwrap();
    assert_clean(&summary, 1, 25);
    assert_eq!((summary.retries, summary.resends), (0, 1));
    assert_eq!(first.body, second.body, "byte for byte");
    assert_eq!(first.encoding.as_deref(), Some("gzip"));
    assert_eq!(first.encoding, second.encoding);
}

/// Forwards to the receiver, but holds the receiver's first answer until
/// the simulator, timed out, has sent the batch again.
fn late_proxy(to: String) -> (String, JoinHandle<()>) {
    let (server, url) = local_server();
    let handle = std::thread::spawn(move || {
        let forward = |request: &mut tiny_http::Request| {
            let seen = seen(request, 0);
            let mut post = ureq::post(&to).header("content-type", "application/json");
            for (name, value) in [
                ("authorization", &seen.authorization),
                ("content-encoding", &seen.encoding),
                ("unit-id", &seen.unit_id),
            ] {
                if let Some(value) = value {
                    post = post.header(name, value);
                }
            }
            post.send(&seen.body[..]).unwrap().status().as_u16()
        };
        let mut first = server.recv().unwrap();
        let first_status = forward(&mut first);
        let mut second = server.recv_timeout(GUARD).unwrap().expect("a re-send");
        let second_status = forward(&mut second);
        let answer = |s: u16| tiny_http::Response::from_string("{}").with_status_code(s);
        second.respond(answer(second_status)).unwrap();
        let _ = first.respond(answer(first_status));
    });
    (url, handle)
}

#[test]
fn the_receiver_flags_the_re_sent_batch_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path());
    let (url, proxy) = late_proxy(format!("http://{}/logbook/storage", rx.addr));
    let mut a = args(&url, 1);
    a.scheme = Scheme::Bearer;
    a.timeout = 0.3;
    let summary = run(&a).unwrap();
    proxy.join().unwrap();
    let path = rx.capture_path().to_path_buf();
    rx.shutdown();
    assert_clean(&summary, 1, 25);
    assert_eq!(summary.resends, 1);

    let lines = captured(&path);
    assert_eq!(lines.len(), 2, "both copies are saved");
    assert_eq!(lines[0].batch_hash, lines[1].batch_hash);
    assert_eq!(lines[0].duplicate_of, None);
    assert_eq!(
        lines[1].duplicate_of.as_deref(),
        Some(lines[0].received.as_str())
    );
}

#[test]
fn a_rejected_token_stops_the_run_at_once_without_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path());
    let mut a = args(&format!("http://{}/", rx.addr), 5);
    a.token = "not-the-bench-token".into();
    let failure = run(&a).unwrap_err();
    rx.shutdown();
    assert_eq!(failure.code, 1);
    assert!(
        failure.message.contains("token rejected"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains("not-the-bench-token"));
    // The receiver's reason whole, with its hint at the end (it was cut at
    // 200 characters, inside `autopi-rx fingerprint`).
    assert!(
        failure
            .message
            .contains("compare fingerprints with `autopi-rx fingerprint`"),
        "{}",
        failure.message
    );
    let summary = failure.summary.unwrap();
    assert_eq!((summary.batches, summary.unacknowledged), (0, 1));
    assert!(!summary.to_string().contains("not-the-bench-token"));
}

#[test]
fn a_batch_refused_ten_times_is_given_up_with_the_reason() {
    let (server, url, log) = scripted(vec![503; 10]);
    let failure = run(&args(&url, 1)).unwrap_err();
    server.unblock();
    let log = log.join().unwrap();
    assert_eq!(log.len(), 10);
    assert!(log.iter().all(|s| s.body == log[0].body));
    assert_eq!(failure.code, 1);
    assert!(
        failure
            .message
            .contains("gave up on batch 1 after 10 failed attempts")
            && failure.message.contains("HTTP 503: scripted failure"),
        "{}",
        failure.message
    );
    assert_eq!(failure.summary.unwrap().retries, 9);
}

#[test]
fn nothing_listening_is_a_clear_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let failure = run(&args(&format!("http://127.0.0.1:{port}/"), 1)).unwrap_err();
    assert!(
        failure.message.contains("connection failed"),
        "{}",
        failure.message
    );
    assert_eq!(failure.summary.unwrap().resends, 9);
}

#[test]
fn without_a_count_it_runs_until_stopped_and_sums_up() {
    let (server, url) = local_server();
    let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
    let serving = server.clone();
    let answering = std::thread::spawn(move || {
        let mut stop_tx = Some(stop_tx);
        let mut bodies = Vec::new();
        for n in 1..=3 {
            let mut request = serving.recv_timeout(GUARD).unwrap().expect("a batch");
            bodies.push(seen(&mut request, 200).body);
            if n == 3 {
                // Ctrl-C while the third batch is in flight.
                stop_tx.take();
            }
            request
                .respond(tiny_http::Response::from_string("{}"))
                .unwrap();
        }
        bodies
    });
    let mut a = args(&url, 1);
    a.count = None;
    let summary = run_until(&a, &stop).unwrap();
    let bodies = answering.join().unwrap();
    assert!(summary.interrupted);
    assert_eq!(
        (summary.batches, summary.records, summary.unacknowledged),
        (3, 75, 0)
    );
    assert!(summary.to_string().contains("(interrupted)"));
    assert_eq!(
        bodies,
        expected_batches(&a, 3),
        "the session, batch by batch"
    );
}

fn records(seed: u64, n: usize, stamps: Stamps) -> Vec<Value> {
    Session::new(seed, default_start(seed), stamps)
        .take(n)
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_records() {
    assert_eq!(
        records(7, 5000, Stamps::Naive),
        records(7, 5000, Stamps::Naive)
    );
    assert_ne!(
        records(7, 500, Stamps::Naive),
        records(8, 500, Stamps::Naive)
    );
    let mut a = args("http://127.0.0.1:9/", 1);
    a.gzip = Some(9);
    let once = expected_batches(&a, 30);
    assert_eq!(once, expected_batches(&a, 30));
    let settings = Settings::from_args(&a).unwrap();
    let wire = |s: &Settings| Batches::new(s).take(5).map(|p| p.body).collect::<Vec<_>>();
    assert_eq!(wire(&settings), wire(&settings), "gzip bytes too");
}

/// One power cycle: from power on to the first sleep.
fn first_power_cycle(seed: u64) -> Vec<Value> {
    let mut cycle = Vec::new();
    for r in Session::new(seed, default_start(seed), Stamps::Naive) {
        let sleep = r["@tag"] == "system/power/sleep";
        cycle.push(r);
        if sleep {
            return cycle;
        }
    }
    unreachable!("the session is endless")
}

#[test]
fn every_record_type_of_the_protocol_appears_in_a_session() {
    const TYPES: &[&str] = &[
        "track.pos",
        "obd.bat",
        "ec2x.data_usage",
        "obd.rpm",
        "obd.speed",
        "obd.coolant_temp",
        "obd.engine_load",
        "obd.fuel_level",
        "obd.intake_temp",
        "obd.ambiant_air_temp",
        "obd.dtc",
        "acc.xyz",
        "rpi.temp",
        "event.system.power",
        "event.system.minion",
        "event.vehicle.engine",
        "event.vehicle.battery",
        "event.vehicle.position",
        "event.vehicle.motion",
    ];
    for seed in [1, 2, 3, 42] {
        let cycle = first_power_cycle(seed);
        let kinds: HashSet<&str> = cycle.iter().map(|r| r["@t"].as_str().unwrap()).collect();
        for t in TYPES {
            assert!(kinds.contains(t), "seed {seed}: no {t}");
        }
        assert!(kinds.iter().any(|k| k.starts_with("event.system.service.")));
        assert!(
            kinds
                .iter()
                .any(|k| k.starts_with("event.vehicle.geofence."))
        );
        let tags: Vec<&str> = cycle.iter().filter_map(|r| r["@tag"].as_str()).collect();
        for tag in [
            "system/power/on",
            "vehicle/engine/running",
            "vehicle/engine/stopped",
            "system/power/sleep",
        ] {
            assert!(tags.contains(&tag), "seed {seed}: no {tag}");
        }
        assert_eq!(cycle[0]["@tag"], "system/power/on");
        assert_eq!(cycle[0]["trigger"], "stn");
        let sleep = cycle.last().unwrap();
        for field in ["reason", "delay", "interval", "uptime"] {
            assert!(sleep.get(field).is_some(), "sleep without {field}");
        }
        for r in &cycle {
            let tag = r["@tag"].as_str();
            if let Some(tag) = tag {
                let (head, _) = tag.rsplit_once('/').unwrap();
                assert_eq!(r["@t"], format!("event.{}", head.replace('/', ".")));
            }
        }
    }
}

fn numbers<'a>(
    cycle: &'a [Value],
    kind: &'a str,
    field: &'a str,
) -> impl Iterator<Item = f64> + 'a {
    cycle
        .iter()
        .filter(move |r| r["@t"] == kind)
        .map(move |r| r[field].as_f64().unwrap())
}

#[test]
fn the_battery_dips_when_cranking_and_charges_while_running() {
    let cycle = first_power_cycle(3);
    let running_at = cycle
        .iter()
        .position(|r| r["@tag"] == "vehicle/engine/running")
        .unwrap();
    let stopped_at = cycle
        .iter()
        .position(|r| r["@tag"] == "vehicle/engine/stopped")
        .unwrap();
    let before = numbers(&cycle[..running_at], "obd.bat", "voltage").fold(f64::MAX, f64::min);
    assert!((10.2..10.8).contains(&before), "cranking dip {before}");
    let running: Vec<f64> = numbers(&cycle[running_at..stopped_at], "obd.bat", "voltage").collect();
    assert!(running.len() > 10);
    assert!(
        running.iter().all(|v| (14.1..=14.4).contains(v)),
        "{running:?}"
    );
    for r in cycle.iter().filter(|r| r["@t"] == "obd.bat") {
        let level = r["level"].as_i64().unwrap();
        assert!(level % 10 == 0 && (0..=100).contains(&level));
    }
}

fn meters(a: &Value, b: &Value) -> f64 {
    let lat = |r: &Value| r["loc"]["lat"].as_f64().unwrap();
    let lon = |r: &Value| r["loc"]["lon"].as_f64().unwrap();
    let dy = (lat(b) - lat(a)) * 111_320.0;
    let dx = (lon(b) - lon(a)) * 111_320.0 * lat(a).to_radians().cos();
    dx.hypot(dy)
}

#[test]
fn positions_move_as_fast_as_the_speed_says_and_the_drive_comes_home() {
    let cycle = first_power_cycle(5);
    let fixes: Vec<&Value> = cycle.iter().filter(|r| r["@t"] == "track.pos").collect();
    assert_eq!(fixes[0]["loc"]["lat"].as_f64(), Some(HOME.0));
    assert_eq!(fixes[0]["loc"]["lon"].as_f64(), Some(HOME.1));
    let last = fixes.last().unwrap();
    assert!(meters(fixes[0], last) < 5.0, "the drive ends at home");
    let mut far = 0.0_f64;
    for pair in fixes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let step = meters(a, b);
        far = far.max(meters(fixes[0], b));
        let fastest = a["sog"].as_f64().unwrap().max(b["sog"].as_f64().unwrap());
        // Fixes one second apart: the distance fits the speed.
        if b["utc"] != a["utc"] && fastest > 0.0 {
            assert!(step <= fastest / 3.6 + 1.0, "{step} m at {fastest} km/h");
        }
        let nsat = b["nsat"].as_i64().unwrap();
        assert!((4..=16).contains(&nsat));
    }
    assert!(far > 800.0, "a real drive leaves town: {far} m");
    let speeds: Vec<f64> = numbers(&cycle, "obd.speed", "value").collect();
    let rpm: Vec<f64> = numbers(&cycle, "obd.rpm", "value").collect();
    assert!(speeds.iter().cloned().fold(0.0, f64::max) >= 30.0);
    assert!(rpm.iter().any(|&r| r > 1500.0) && rpm.iter().any(|&r| r < 900.0));
}

#[test]
fn timestamps_are_in_order_and_styled_as_asked() {
    for (stamps, zone) in [(Stamps::Naive, ""), (Stamps::Zulu, "Z")] {
        let all = records(11, 3000, stamps);
        let ts: Vec<&str> = all.iter().map(|r| r["@ts"].as_str().unwrap()).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "time order");
        for t in &ts {
            let bare = t.strip_suffix(zone).unwrap();
            assert!(bare.len() == 19 || bare.len() == 26, "{t}");
            assert!(!bare.contains('Z') && !bare.contains('+'));
            let parsed = format!("{bare}Z").parse::<jiff::Timestamp>();
            assert!(parsed.is_ok(), "{t}");
        }
    }
}

#[test]
fn the_command_line_reads_like_the_issue() {
    let parse = |line: &[&str]| Cli::try_parse_from(line.iter().copied());
    let cli = parse(&[
        "autopi-rx",
        "simulate",
        "--url",
        "http://h/x",
        "--token",
        "T",
        "--gzip",
    ])
    .unwrap();
    let Some(Command::Simulate(a)) = cli.command else {
        panic!("not simulate")
    };
    assert_eq!(
        (a.gzip, a.scheme, a.batch, a.timeout),
        (Some(9), Scheme::Token, 100, 10.0)
    );
    let cli = parse(&[
        "autopi-rx",
        "simulate",
        "--url",
        "http://h/x",
        "--token",
        "T",
        "--gzip",
        "3",
        "--scheme",
        "bearer",
        "--timestamps",
        "zulu",
        "--interval",
        "0",
        "--concurrency",
        "4",
    ])
    .unwrap();
    let Some(Command::Simulate(a)) = cli.command else {
        panic!("not simulate")
    };
    assert_eq!(
        (a.gzip, a.scheme, a.timestamps, a.concurrency),
        (Some(3), Scheme::Bearer, Stamps::Zulu, 4)
    );
    assert!(
        parse(&["autopi-rx", "--token", "T"])
            .unwrap()
            .command
            .is_none()
    );
    let base = [
        "autopi-rx",
        "simulate",
        "--url",
        "http://h/",
        "--token",
        "T",
    ];
    // A receiver flag before `simulate`, a gzip level past 9, an empty batch.
    let refused: [&[&str]; 3] = [
        &[
            "autopi-rx",
            "--token",
            "T",
            "simulate",
            "--url",
            "http://h/",
            "--token",
            "T",
        ],
        &[&base[..], &["--gzip", "10"]].concat(),
        &[&base[..], &["--batch", "0"]].concat(),
    ];
    for args in refused {
        assert!(parse(args).is_err(), "{args:?}");
    }
}

#[test]
fn bad_settings_are_refused_with_the_flag_named() {
    let check = |f: &dyn Fn(&mut SimulateArgs), needle: &str| {
        let mut a = args("http://127.0.0.1:9/", 1);
        f(&mut a);
        let failure = run(&a).unwrap_err();
        assert_eq!(failure.code, 2);
        assert!(failure.message.contains(needle), "{}", failure.message);
        assert!(failure.summary.is_none());
    };
    check(&|a| a.url = "ftp://x/".into(), "--url");
    check(&|a| a.url = "not a url".into(), "--url");
    check(&|a| a.token = " ".into(), "empty --token");
    check(&|a| a.token = "two words".into(), "--token");
    check(&|a| a.timeout = 0.0, "--timeout");
    check(&|a| a.interval = f64::NAN, "--interval");
    check(&|a| a.unit_id = Some("has space".into()), "--unit-id");
    check(&|a| a.start = Some("yesterday".into()), "--start");
    check(
        &|a| a.start = Some("9999-12-30T21:30:00Z".into()),
        "--start",
    );
}

#[test]
fn a_failed_batch_waits_at_least_the_retry_wait_even_at_interval_0() {
    let (server, url, log) = scripted(vec![503]);
    let mut a = args(&url, 1);
    a.retry_wait = 0.3;
    let started = std::time::Instant::now();
    let summary = run(&a).unwrap();
    // A lower bound only: a slow machine can make it longer, never shorter.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.unblock();
    assert_eq!(log.join().unwrap().len(), 2);
    assert_eq!(summary.retries, 1);
}

/// Runs `simulate` against `server` with `args`, sends Ctrl-C once the
/// server has taken `taken` requests, lets its gated answer go, and
/// gives the exit code, stdout and stderr.
fn ctrl_c_after(
    server: &common::ScriptedServer,
    args: &[&str],
    taken: usize,
) -> (Option<i32>, String, String) {
    use common::{binary, lines_until, signal, stderr_lines, wait_output};
    let mut child = binary()
        .args(["simulate", "--url", &server.url])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(20);
    for _ in 0..taken {
        server.requests.recv_timeout(limit).unwrap();
    }
    let lines = stderr_lines(&mut child);
    signal(&child, "INT");
    lines_until(&lines, "Ctrl-C again quits now", limit);
    server.release();
    let out = wait_output(&mut child, limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout, lines.iter().collect())
}

/// Ctrl-C stops the simulator from starting any upload: a receiver that
/// refused had it send its whole retry queue after the signal, and say
/// each was to be sent again.
#[test]
fn ctrl_c_starts_no_upload_after_it() {
    use common::{Scripted, ScriptedServer, answer};
    let refusal = answer("500 Internal Server Error", br#"{"error":"down"}"#);
    // Cycle 1 sends batch 1 (refused); cycle 2 batch 1 again and batch 2
    // (both refused); cycle 3 batch 1 again, whose answer waits for the
    // signal to be taken: batch 2 is behind it in the queue, and batch 3
    // after that.
    let server = ScriptedServer::start(vec![
        Scripted::Answer(refusal.clone()),
        Scripted::Answer(refusal.clone()),
        Scripted::Answer(refusal.clone()),
        Scripted::Gated(refusal),
    ]);
    let args = [
        "--token",
        "t",
        "--interval",
        "0",
        "--timeout",
        "10",
        "--retry-wait",
        "0",
    ];
    let (code, stdout, stderr) = ctrl_c_after(&server, &args, 4);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        server.requests.try_iter().count(),
        0,
        "an upload after Ctrl-C:\n{stderr}"
    );
    assert!(
        stderr.contains("batch 1: HTTP 500: down; not sent again (stopping)"),
        "{stderr}"
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
}

/// A 401 that comes after Ctrl-C, for an upload sent before it, ends the
/// run as Ctrl-C does (exit 0, the reason said): it exited 1, "token
/// rejected", where `replay` already stopped (a review).
#[test]
fn a_refused_token_after_ctrl_c_still_ends_the_run_as_asked() {
    use common::{Scripted, ScriptedServer, answer};
    let server = ScriptedServer::start(vec![Scripted::Gated(answer(
        "401 Unauthorized",
        br#"{"error":"bad token"}"#,
    ))]);
    let args = [
        "--token",
        "SIM-TOKEN-1",
        "--interval",
        "0",
        "--timeout",
        "10",
    ];
    let (code, stdout, stderr) = ctrl_c_after(&server, &args, 1);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("batch 1: HTTP 401: bad token; not sent again (stopping)"),
        "{stderr}"
    );
    assert!(!stderr.contains("token rejected"), "{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
}

/// As the device's uploader does, a cycle's retries end at the first that
/// gets no answer: the batches queued behind it wait for the next cycle,
/// in order, and the cycle's new batch still goes. Two batches refused
/// (the first twice), then the first one's retry held past the timeout:
/// the next request is the third batch, not the second (it went on
/// through the queue until December 8).
#[test]
fn a_retry_with_no_answer_ends_the_cycles_retries() {
    let (server, url) = local_server();
    let serving = server.clone();
    let log = std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut held = Vec::new();
        while let Ok(mut request) = serving.recv() {
            // 500, 500, 500, then no answer (held until the end), then 200.
            let status = match log.len() {
                0..=2 => 500,
                3 => 0,
                _ => 200,
            };
            log.push(seen(&mut request, status));
            if status == 0 {
                held.push(request);
                continue;
            }
            request
                .respond(tiny_http::Response::from_string("{}").with_status_code(status))
                .unwrap();
        }
        drop(held);
        log
    });
    let mut a = args(&url, 3);
    a.timeout = 0.3;
    let summary = run(&a).unwrap();
    server.unblock();
    let log = log.join().unwrap();
    assert_clean(&summary, 3, 75);
    let want = expected_batches(&a, 3);
    let order: Vec<usize> = log
        .iter()
        .map(|s| {
            want.iter()
                .position(|b| *b == s.body)
                .expect("a batch of the run")
        })
        .collect();
    // Batch 1 refused; its retry refused and batch 2 refused; batch 1's
    // retry unanswered, so batch 2 waits and batch 3 goes; then batch 1
    // again (the same bytes) and batch 2, in that order.
    assert_eq!(order, [0, 0, 1, 0, 2, 0, 1]);
    assert_eq!((summary.retries, summary.resends), (3, 1));
}

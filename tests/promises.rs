//! The receiver's promises, each over real HTTP, each with a test that
//! fails when the code it guards breaks: a 2xx comes only after the batch's
//! line is written and synced; a batch whose sync fails is answered 503 and
//! the next one is still saved whole; duplicates are judged per device, also
//! after a restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use autopi_rx::capture::{Capture, Index};
use autopi_rx::fixtures::{Call, Gate, RecordingSink};
use autopi_rx::receiver::ingest::{Auth, Config};
use autopi_rx::receiver::server::{self, Running};
use common::{Receiver, TOKEN, binary, capture_lines, post};
use serde_json::Value;

const UNIT_A: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";
const UNIT_B: &str = "0123456789abcdef0123456789abcdef";

/// A receiver in this process whose capture goes to `sink`.
fn receiver_on(sink: &RecordingSink) -> (Running, SocketAddr) {
    let settings = server::Settings {
        listen: "127.0.0.1:0".into(),
        ingest: Config {
            auth: Auth::Open,
            max_body: 1 << 20,
        },
        workers: 2,
        event_bodies: false,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout: std::time::Duration::from_secs(30),
    };
    let capture = Capture::with_sink(sink.clone(), 0, Index::default());
    let (events, _) = crossbeam_channel::bounded(16);
    let running = server::start(settings, capture, events).unwrap();
    let addr = running.addr;
    (running, addr)
}

fn body(tag: &str) -> Vec<u8> {
    format!(r#"[{{"@t":"{tag}","@ts":"2026-11-27T08:00:00"}}]"#).into_bytes()
}

#[test]
fn an_http_answer_comes_only_after_the_sync_that_covers_its_line() {
    let syncs = Gate::closed();
    let sink = RecordingSink::new(Gate::open(), syncs.clone());
    let (running, addr) = receiver_on(&sink);
    let (answered_tx, answered) = crossbeam_channel::bounded(1);
    let client = std::thread::spawn(move || {
        let r = post(addr, &[("unit-id", UNIT_A)], &body("a"));
        answered_tx.send(r.status).unwrap();
    });
    syncs.reached(1);
    // The line is written and its sync is under way. Answering before the
    // sync ends would put a response on the loopback socket at once; give
    // it ample time to show.
    assert!(
        answered.recv_timeout(Duration::from_millis(500)).is_err(),
        "answered while the sync was still under way"
    );
    assert!(matches!(&sink.calls()[..], [Call::Write(line)] if line.contains(r#""@t":"a""#)));
    syncs.allow(1);
    assert_eq!(answered.recv_timeout(Duration::from_secs(10)), Ok(200));
    client.join().unwrap();
    assert_eq!(sink.calls().last(), Some(&Call::Sync));
    running.shutdown();
}

#[test]
fn a_failed_sync_is_503_never_200_and_the_next_batch_is_saved_whole() {
    let sink = RecordingSink::new(Gate::open(), Gate::open());
    let (running, addr) = receiver_on(&sink);
    sink.fail_syncs(1);
    let refused = post(addr, &[("unit-id", UNIT_A)], &body("lost"));
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(refused.text().contains("not saved"), "{}", refused.text());
    let saved = post(addr, &[("unit-id", UNIT_A)], &body("kept"));
    assert_eq!(saved.status, 200, "{}", saved.text());
    // The same body as the refused one is new: it never landed.
    let again = post(addr, &[("unit-id", UNIT_A)], &body("lost"));
    assert_eq!(again.json()["duplicate"], false);
    running.shutdown();
    let data = String::from_utf8(sink.data()).unwrap();
    let lines: Vec<Value> = data
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line whole"))
        .collect();
    let tags: Vec<&str> = lines
        .iter()
        .map(|l| l["records"][0]["@t"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["kept", "lost"]);
    assert!(data.ends_with('\n'));
    assert!(sink.calls().contains(&Call::FailedSync));
}

/// Posts `body` as device `unit` and returns the answer's `duplicate`.
fn duplicate(rx: &Receiver, unit: &str, body: &[u8]) -> bool {
    let auth = format!("token {TOKEN}");
    let r = rx.post(&[("authorization", &auth), ("unit-id", unit)], body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["duplicate"].as_bool().unwrap()
}

#[test]
fn the_same_body_from_two_devices_is_two_batches_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let args = ["--token", TOKEN, "--capture", capture.to_str().unwrap()];
    let shared = body("system.power");
    let mut rx = Receiver::spawn(binary().args(args));
    assert!(!duplicate(&rx, UNIT_A, &shared));
    assert!(
        !duplicate(&rx, UNIT_B, &shared),
        "device B's batch taken for A's"
    );
    assert_eq!(rx.event()["duplicate"], false);
    assert_eq!(rx.event()["unit_id"], UNIT_B);
    assert!(duplicate(&rx, UNIT_A, &shared));
    rx.stop();
    let mut rx = Receiver::spawn(binary().args(args));
    assert!(
        duplicate(&rx, UNIT_B, &shared),
        "B's batch forgotten on restart"
    );
    assert!(
        !duplicate(&rx, "fedcba9876543210fedcba9876543210", &shared),
        "a third device's batch taken for another's after a restart"
    );
    rx.stop();
    let lines = capture_lines(&capture);
    let seen: Vec<(&str, bool)> = lines
        .iter()
        .map(|l| (l["unit_id"].as_str().unwrap(), l["duplicate_of"].is_null()))
        .collect();
    assert_eq!(
        seen,
        [
            (UNIT_A, true),
            (UNIT_B, true),
            (UNIT_A, false),
            (UNIT_B, false),
            ("fedcba9876543210fedcba9876543210", true),
        ]
    );
    assert_eq!(lines[2]["duplicate_of"], lines[0]["received"]);
    assert_eq!(lines[3]["duplicate_of"], lines[1]["received"]);
}

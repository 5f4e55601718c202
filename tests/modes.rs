//! Answer modes over real HTTP on 127.0.0.1: the real receiver answering
//! as `--respond` (or the dashboard) says, the simulated device reacting
//! as a device does, and the capture keeping every batch it sent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use autopi_rx::capture::{self, Capture, CapturedBatch};
use autopi_rx::event::{RequestEvent, Stats};
use autopi_rx::receiver::ingest::{Auth, Config, DEFAULT_MAX_BODY};
use autopi_rx::receiver::respond::{Control, Mode, Scope};
use autopi_rx::receiver::server::{self, Running};
use autopi_rx::simulate::{Scheme, SimulateArgs, Stamps, run};
use crossbeam_channel::Receiver;

const TOKEN: &str = "modes-token-7d1e";

fn args(url: &str, count: u64) -> SimulateArgs {
    SimulateArgs {
        url: url.to_string(),
        token: TOKEN.to_string(),
        scheme: Scheme::Token,
        gzip: Some(6),
        unit_id: None,
        batch: 20,
        interval: 0.0,
        count: Some(count),
        concurrency: 1,
        seed: 7,
        timestamps: Stamps::Naive,
        start: None,
        timeout: 10.0,
        retry_wait: 0.0,
        ca: None,
    }
}

struct Bench {
    rx: Running,
    control: Arc<Control>,
    events: Receiver<RequestEvent>,
    path: PathBuf,
}

/// The receiver on a free port with its mode control.
fn bench(dir: &Path, mode: Mode) -> Bench {
    bench_timing_out(dir, mode, server::DEFAULT_READ_TIMEOUT)
}

/// `bench` with `read_timeout`.
fn bench_timing_out(dir: &Path, mode: Mode, read_timeout: Duration) -> Bench {
    let capture = Capture::open(&dir.join("capture.jsonl")).unwrap();
    let (events_tx, events) = crossbeam_channel::bounded(1024);
    let control = Arc::new(Control::new(mode));
    let settings = server::Settings {
        listen: "127.0.0.1:0".into(),
        ingest: Config {
            auth: Auth::tokens(&[TOKEN]),
            max_body: DEFAULT_MAX_BODY,
        },
        workers: 4,
        event_bodies: false,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout,
    };
    let rx = server::start_with(settings, capture, events_tx, control.clone()).unwrap();
    let path = rx.capture_path().to_path_buf();
    Bench {
        rx,
        control,
        events,
        path,
    }
}

impl Bench {
    fn url(&self) -> String {
        format!("http://{}/logbook/storage", self.rx.addr)
    }

    /// Stops the receiver; the capture lines and the events it reported.
    fn finish(self) -> (Vec<CapturedBatch>, Vec<RequestEvent>, Arc<Stats>) {
        let stats = self.rx.stats.clone();
        self.rx.shutdown();
        let lines = capture::read(&self.path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (lines, self.events.try_iter().collect(), stats)
    }
}

/// Every batch hash in the capture has an acknowledged line.
fn every_batch_acked(lines: &[CapturedBatch]) -> bool {
    let all: BTreeSet<&str> = lines.iter().map(|l| l.batch_hash.as_str()).collect();
    let acked: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.acked)
        .map(|l| l.batch_hash.as_str())
        .collect();
    all == acked
}

/// One refusal for the first upload: retried, acknowledged, linked, and
/// its records counted once.
fn refused_once_then_acked(status: u16) {
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Ok);
    bench.control.set(Mode::Refuse(status), Scope::NextUpload);
    let summary = run(&args(&bench.url(), 3)).unwrap();
    assert_eq!((summary.batches, summary.retries), (3, 1), "{summary}");
    let (lines, events, stats) = bench.finish();

    assert_eq!(lines.len(), 4, "the refused copy is captured too");
    let (first, retry) = (&lines[0], &lines[1]);
    assert!(!first.acked, "{status}: answered {status}, so not acked");
    assert_eq!(first.mode.as_deref(), Some(status.to_string().as_str()));
    assert_eq!(first.retry_of, None);
    assert!(retry.acked && retry.mode.as_deref() == Some("ok"));
    assert_eq!(retry.batch_hash, first.batch_hash);
    assert_eq!(retry.retry_of.as_deref(), Some(first.received.as_str()));
    assert_eq!(retry.duplicate_of, None);
    assert!(every_batch_acked(&lines));

    assert_eq!(events[0].status, status);
    assert!(events[0].captured && !events[0].accepted());
    assert_eq!(events[1].retry_of.as_deref(), Some(first.received.as_str()));
    assert_eq!(Stats::get(&stats.records), 3 * 20, "records counted once");
    assert_eq!(Stats::get(&stats.retries), 1);
    assert_eq!(Stats::get(&stats.rejected), 1);
    assert_eq!(Stats::get(&stats.batches), 3);
}

#[test]
fn a_500_is_retried_and_acknowledged_later() {
    refused_once_then_acked(500);
}

#[test]
fn a_503_is_retried_and_acknowledged_later() {
    refused_once_then_acked(503);
}

#[test]
fn a_413_is_retried_and_acknowledged_later() {
    refused_once_then_acked(413);
}

#[test]
fn a_late_answer_past_the_timeout_brings_an_identical_re_send_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Ok);
    bench
        .control
        .set(Mode::Late(Duration::from_secs(1)), Scope::NextUpload);
    let mut a = args(&bench.url(), 2);
    a.timeout = 0.3;
    let summary = run(&a).unwrap();
    assert_eq!((summary.batches, summary.resends), (2, 1), "{summary}");
    let (lines, _, stats) = bench.finish();

    assert_eq!(lines.len(), 3);
    assert!(lines[0].acked, "a late 200 is still a 200");
    assert_eq!(lines[0].mode.as_deref(), Some("late:1"));
    assert_eq!(lines[1].batch_hash, lines[0].batch_hash);
    assert_eq!(
        lines[1].duplicate_of.as_deref(),
        Some(lines[0].received.as_str()),
        "the re-send of an acknowledged batch is a duplicate"
    );
    assert_eq!(Stats::get(&stats.records), 2 * 20);
    assert_eq!(Stats::get(&stats.duplicates), 1);
}

#[test]
fn a_hang_up_brings_an_identical_re_send_linked_as_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Ok);
    bench.control.set(Mode::Hangup, Scope::NextUpload);
    let mut a = args(&bench.url(), 2);
    a.timeout = 0.3;
    let summary = run(&a).unwrap();
    assert_eq!((summary.batches, summary.resends), (2, 1), "{summary}");
    let (lines, events, stats) = bench.finish();

    assert_eq!(lines.len(), 3);
    assert!(!lines[0].acked);
    assert_eq!(lines[0].mode.as_deref(), Some("hangup"));
    assert_eq!(
        lines[1].retry_of.as_deref(),
        Some(lines[0].received.as_str())
    );
    assert!(lines[1].acked);
    assert_eq!(events[0].status, autopi_rx::event::NO_ANSWER);
    assert_eq!(Stats::get(&stats.records), 2 * 20);
}

#[test]
fn a_401_stops_the_simulator_and_the_batch_is_captured_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Refuse(401));
    let failure = run(&args(&bench.url(), 3)).unwrap_err();
    assert!(failure.message.contains("HTTP 401"), "{}", failure.message);
    let (lines, events, stats) = bench.finish();

    assert_eq!(lines.len(), 1);
    assert!(!lines[0].acked);
    assert_eq!(lines[0].mode.as_deref(), Some("401"));
    assert_eq!(events[0].status, 401);
    assert_eq!(Stats::get(&stats.records), 20, "captured, so counted");
    assert_eq!(Stats::get(&stats.batches), 0);
}

#[test]
fn flaky_50_acknowledges_every_batch_eventually_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Flaky(50));
    let count = 12;
    let summary = run(&args(&bench.url(), count)).unwrap();
    assert_eq!(summary.batches, count, "{summary}");
    assert_eq!(summary.unacknowledged, 0);
    assert!(summary.retries > 0, "some uploads were refused: {summary}");
    let (lines, _, stats) = bench.finish();

    assert!(every_batch_acked(&lines));
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &lines {
        *copies.entry(&l.batch_hash).or_default() += 1;
        assert_eq!(l.mode.as_deref(), Some("flaky:50"));
    }
    assert_eq!(copies.len() as u64, count, "every batch captured");
    assert_eq!(lines.len() as u64, count + summary.retries);
    assert!(lines.iter().filter(|l| l.retry_of.is_some()).count() as u64 == summary.retries);
    assert_eq!(
        Stats::get(&stats.records),
        count * 20,
        "records counted once"
    );
}

#[test]
fn a_hang_up_puts_no_byte_on_the_wire_and_leaves_the_connection_open() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Hangup);
    let body = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":900}]"#;
    let mut conn = std::net::TcpStream::connect(bench.rx.addr).unwrap();
    write!(
        conn,
        "POST /logbook/storage HTTP/1.1\r\nHost: x\r\nauthorization: token {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(body).unwrap();
    // The event is reported before the answer would be written.
    let event = bench.events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(event.captured && event.mode.as_deref() == Some("hangup"));
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(n) => panic!(
            "{n} bytes arrived: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    drop(conn);
    let (lines, _, _) = bench.finish();
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].acked);
}

/// After a hang-up nothing more comes on its connection until the read
/// timeout: not the answer to a request sent after it (which an HTTP/1.1
/// client takes for the hung-up one's), and not a close when the request
/// asked for one (`Connection: close`): both came at once. The next
/// request goes once the hang-up is reported (one pipelined behind it and
/// taken before is still answered: README, the hang-up mode).
#[test]
fn a_hang_up_answers_nothing_more_and_holds_its_connection_for_the_read_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let read_timeout = Duration::from_secs(2);
    let bench = bench_timing_out(dir.path(), Mode::Hangup, read_timeout);
    let body = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":900}]"#;
    for (after, connection) in [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "keep-alive"),
        ("", "close"),
    ] {
        let started = std::time::Instant::now();
        let mut conn = std::net::TcpStream::connect(bench.rx.addr).unwrap();
        write!(
            conn,
            "POST /logbook/storage HTTP/1.1\r\nHost: x\r\nauthorization: token {TOKEN}\r\n\
             connection: {connection}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(body).unwrap();
        let event = bench.events.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(event.mode.as_deref(), Some("hangup"));
        conn.write_all(after.as_bytes()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        let took = started.elapsed();
        assert!(
            got.is_empty(),
            "{connection}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            took >= read_timeout,
            "{connection}: closed after {took:?}, before the read timeout"
        );
    }
    let (lines, events, _) = bench.finish();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| !l.acked));
    assert!(events.is_empty(), "the GET after the hang-up is not served");
}

#[test]
fn the_status_page_shows_the_mode_and_what_the_device_does() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Ok);
    bench.control.set(Mode::Refuse(503), Scope::NextUpload);
    let mut conn = std::net::TcpStream::connect(bench.rx.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    bench.finish();
    assert!(
        page.contains("answer mode: 503 for the next upload, then ok (the device keeps"),
        "{page}"
    );
}

/// A mode set for the next upload waits for the next valid one: the
/// receiver chooses its answer before the records are read (they are
/// read while the line is written), and takes that choice back when they
/// fail. The refused body leaves nothing in the capture.
#[test]
fn an_invalid_upload_does_not_use_up_the_next_uploads_mode() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), Mode::Ok);
    bench.control.set(Mode::Refuse(500), Scope::NextUpload);
    let post = |body: &[u8]| {
        let mut conn = std::net::TcpStream::connect(bench.rx.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            conn,
            "POST /logbook/storage HTTP/1.1\r\nHost: x\r\nauthorization: token {TOKEN}\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(body).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    };
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    // Valid JSON, long enough to be written before it is read, but not an
    // array of records.
    let not_records = format!(r#"{{"@t":"obd.rpm","pad":"{}"}}"#, "x".repeat(200_000));
    for body in [
        not_records.as_bytes(),
        b"[{\"@t\":1},2]",
        b"[{\"a\":1}",
        b"[{\"@t\":\"a\nb\"}]",
    ] {
        let answer = post(body);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert_eq!(size(&bench.path), 0, "a refused body left bytes behind");
    }
    assert_eq!(
        bench.control.shown().next,
        Some(Mode::Refuse(500)),
        "an invalid upload used up the next upload's mode"
    );
    let answer = post(br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":900}]"#);
    assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
    let answer = post(br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:01","value":901}]"#);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let (lines, _, _) = bench.finish();
    let acked: Vec<bool> = lines.iter().map(|l| l.acked).collect();
    assert_eq!(acked, [false, true]);
}

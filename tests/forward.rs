//! `--forward` to an HTTP upstream, end to end: the real binary forwards to
//! a second real `autopi-rx` (or to a scripted server for refusals), over
//! real HTTP on 127.0.0.1.

mod common;
mod ui_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use autopi_rx::capture::CapturedBatch;
use base64::Engine as _;
use common::*;
use crossbeam_channel::Receiver as Rx;
use serde_json::Value;

const UP_TOKEN: &str = "UPSTREAM-TOKEN-5f2c9e";
const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";
const DEADLINE: Duration = Duration::from_secs(40);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A second receiver, the upstream, on `port`.
fn upstream(dir: &Path, port: u16) -> Receiver {
    let capture = dir.join("upstream.jsonl");
    let mut r = Receiver::spawn_at(
        binary().args(["--token", UP_TOKEN, "--capture", capture.to_str().unwrap()]),
        &format!("127.0.0.1:{port}"),
    );
    r.capture = capture;
    r
}

/// The receiver under test, forwarding to `url` with the upstream's token
/// from the environment.
fn forwarder(capture: &Path, url: &str, extra: &[&str]) -> Receiver {
    let mut cmd = binary();
    cmd.env("AUTOPI_RX_FORWARD_TOKEN", UP_TOKEN)
        .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
        .args(["--forward", url])
        .args(extra);
    let mut r = Receiver::spawn(&mut cmd);
    r.capture = capture.to_path_buf();
    r
}

/// Polls `check` until it gives a value, failing after `DEADLINE`.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The complete lines of a capture (one being written is left out).
fn complete_lines(path: &Path) -> Vec<CapturedBatch> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    text.split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// The body a capture line says arrived on the wire.
fn wire_of(line: &CapturedBatch) -> Vec<u8> {
    match &line.wire {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        None => line.records.get().as_bytes().to_vec(),
    }
}

fn hashes(lines: &[CapturedBatch]) -> Vec<String> {
    lines.iter().map(|l| l.batch_hash.clone()).collect()
}

/// A small batch that differs for each `i`.
fn batch(i: usize) -> Vec<u8> {
    format!(
        r#"[{{"@t":"track.pos","@ts":"2026-11-27T08:{:02}:{:02}","loc":{{"lat":57.02,"lon":9.89}},"n":{i}}},{{"@t":"obd.bat","@ts":"2026-11-27T08:00:00","voltage":12.61,"n":{i}}}]"#,
        (i / 60) % 60,
        i % 60
    )
    .into_bytes()
}

fn upload(r: &Receiver, body: &[u8]) {
    let auth = format!("token {TOKEN}");
    let answer = r.post(
        &[
            ("authorization", &auth),
            ("unit-id", UNIT),
            ("content-type", "application/json"),
        ],
        body,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
}

fn status_page(r: &Receiver) -> String {
    let mut c = Conn::open(r.addr);
    c.request(&request_bytes("GET", &[], b"")).text()
}

/// The next forward note on the receiver's stdout in state `state` (any
/// when empty) for which `also` holds.
fn forward_note(r: &Receiver, state: &str, also: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Some(v) = r.stdout_json(Duration::from_millis(200))
            && v.get("forward").is_some()
            && (state.is_empty() || v["state"] == state)
            && also(&v)
        {
            return v;
        }
    }
    panic!(
        "no such forward note in state {state}; stderr: {}",
        r.stderr()
    );
}

type Headers = Vec<(&'static str, &'static str)>;

#[test]
fn every_batch_arrives_byte_identical_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), 0);
    let url = format!("http://{}/logbook/storage", up.addr);
    let mut rx = forwarder(&dir.path().join("capture.jsonl"), &url, &[]);

    // (headers beyond the token, body): every way a device sends a batch.
    let plain = batch(1);
    let pretty =
        b"[\n  {\"@t\": \"obd.rpm\", \"@ts\": \"2026-11-27T08:00:01\", \"value\": 812.0}\n]\n"
            .to_vec();
    let gz = gzip(&batch(2));
    let gz_unlabelled = gzip(&batch(3));
    let mislabelled = batch(4);
    let cases: Vec<(Headers, Vec<u8>)> = vec![
        (vec![("unit-id", UNIT)], plain.clone()),
        (vec![("unit-id", UNIT)], pretty),
        (
            vec![("unit-id", UNIT), ("content-encoding", "gzip")],
            gz.clone(),
        ),
        // Firmware before 2022-03: gzip unlabelled, and no unit-id before that.
        (vec![], gz_unlabelled),
        (
            vec![("unit-id", UNIT), ("content-encoding", "gzip")],
            mislabelled,
        ),
    ];
    let auth = format!("token {TOKEN}");
    let mut expected: Vec<(Vec<u8>, Option<String>, Option<String>)> = Vec::new();
    for (headers, body) in &cases {
        let mut all = headers.clone();
        all.push(("authorization", &auth));
        assert_eq!(rx.post(&all, body).status, 200);
        let header = |n: &str| headers.iter().find(|h| h.0 == n).map(|h| h.1.to_string());
        expected.push((body.clone(), header("content-encoding"), header("unit-id")));
    }
    // The device's own recorded requests, replayed byte for byte.
    let mut names: Vec<_> = std::fs::read_dir(samples().join("device-requests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(Conn::open(rx.addr).request(&raw).status, 200);
        let head = String::from_utf8_lossy(&raw[..raw.len() - http_body(&raw).len()]).to_string();
        let header = |n: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{n}: ")).map(str::to_string))
        };
        expected.push((
            http_body(&raw).to_vec(),
            header("content-encoding"),
            header("unit-id"),
        ));
    }
    // A re-send of a batch already captured is not passed on again.
    upload(&rx, &plain);
    expected.push((plain, None, Some(UNIT.into())));
    // Nor are the device's recordings that repeat a batch in another
    // encoding: keep what the capture says was new.
    let captured = complete_lines(&rx.capture);
    assert_eq!(captured.len(), expected.len());
    let expected: Vec<_> = expected
        .into_iter()
        .zip(&captured)
        .filter(|(_, line)| line.duplicate_of.is_none())
        .map(|(e, _)| e)
        .collect();
    assert!(expected.len() >= cases.len(), "too few new batches to test");
    let n = expected.len();
    let got = wait_for("every batch upstream", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= n).then_some(lines)
    });
    for (i, (line, (body, encoding, unit))) in got.iter().zip(&expected).enumerate() {
        assert_eq!(wire_of(line), *body, "batch {i}: the body differs");
        assert_eq!(line.content_encoding, *encoding, "batch {i}");
        assert_eq!(line.unit_id, *unit, "batch {i}");
        assert_eq!(line.duplicate_of, None, "batch {i}");
    }
    // The status page says so once the re-sends behind them are passed.
    let page = wait_for("the status page to say up", || {
        let page = status_page(&rx);
        page.contains(&format!("forward http://{}/…: up ({n} forwarded)", up.addr))
            .then_some(page)
    });
    // The page asks for no token: a target's path (a webhook's may hold
    // its key) is left out there.
    assert!(!page.contains("/logbook/storage"), "{page}");

    rx.stop();
    // The duplicate was not sent: still exactly n lines upstream.
    assert_eq!(complete_lines(&up.capture).len(), n);
    // The forward token appears nowhere we write.
    let mut everything = rx.stderr() + &rx.remaining_stdout().join("\n") + &page;
    for f in ["capture.jsonl", "capture.jsonl.forward"] {
        everything += &std::fs::read_to_string(dir.path().join(f)).unwrap();
    }
    assert!(!everything.contains(UP_TOKEN), "the forward token leaked");
    assert!(!everything.contains("5f2c9e"));
}

#[test]
fn upstream_down_then_up_gets_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(&capture, &url, &["--forward-scheme", "bearer"]);
    // The device is answered at once while nothing listens upstream.
    for i in 0..20 {
        upload(&rx, &batch(i));
    }
    let down = forward_note(&rx, "down", |_| true);
    assert!(down["pending"].as_u64().unwrap() > 0, "{down}");
    let page = status_page(&rx);
    assert!(page.contains("down since"), "{page}");

    let up = upstream(dir.path(), port);
    let caught_up = forward_note(&rx, "up", |v| v["forwarded"] != 0);
    assert_eq!(caught_up["pending"], 0, "{caught_up}");
    assert_eq!(caught_up["forwarded"], 20, "{caught_up}");
    let sent = complete_lines(&capture);
    let got = complete_lines(&up.capture);
    assert_eq!(
        hashes(&got),
        hashes(&sent),
        "not all delivered, or out of order"
    );
}

/// A target nothing was sent to yet is `idle` (it was `up`, also when
/// nothing listened there: a README audit); the first batch then makes it
/// `up` in one note (not a `catching_up` before it), or `down`.
#[test]
fn a_target_is_idle_until_its_first_batch_then_up_or_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let rx = forwarder(&dir.path().join("refused.jsonl"), &url, &[]);
    let first = forward_note(&rx, "", |_| true);
    assert_eq!(first["state"], "idle", "{first}");
    let page = status_page(&rx);
    assert!(page.contains("nothing sent yet"), "{page}");
    upload(&rx, &batch(0));
    let next = forward_note(&rx, "", |_| true);
    assert_eq!(next["state"], "down", "{next}");
    drop(rx);

    let up = upstream(dir.path(), port);
    let rx = forwarder(&dir.path().join("taken.jsonl"), &url, &[]);
    let first = forward_note(&rx, "", |_| true);
    assert_eq!(first["state"], "idle", "{first}");
    upload(&rx, &batch(1));
    let next = forward_note(&rx, "", |_| true);
    assert_eq!(
        (&next["state"], &next["forwarded"]),
        (&"up".into(), &1.into()),
        "{next}"
    );
    assert_eq!(complete_lines(&up.capture).len(), 1);
}

/// An upstream that takes the connection and the batch and never
/// answers: the status page says how long the attempt has waited for its
/// answer (it said only `catching up` for the attempt's whole timeout,
/// minutes for a large batch).
#[test]
fn an_upstream_that_never_answers_is_said_to_give_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/logbook/storage", silent.local_addr().unwrap());
    // Reads what it is sent until the receiver goes, answering nothing.
    std::thread::spawn(move || {
        let (mut conn, _) = silent.accept().unwrap();
        let mut buf = [0u8; 65536];
        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let rx = forwarder(&dir.path().join("capture.jsonl"), &url, &[]);
    upload(&rx, &batch(0));
    let line = wait_for("the wait for an answer said", || {
        let page = status_page(&rx);
        page.lines()
            .find(|l| l.starts_with("forward ") && l.contains("no answer for"))
            .map(str::to_string)
    });
    assert!(line.contains("catching up 1 batch"), "{line}");
    let waited: u64 = line
        .split("no answer for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(waited >= 3, "{line}");
}

/// The capture cut short in place while forwarding (`: > capture`,
/// logrotate's `copytruncate`): the writer goes on at the file's new end,
/// and the forwarder follows it there, so every batch acknowledged after
/// the cut is sent, and a restart resumes. Until December 6 the forwarder
/// read on at its old offsets: none of the later batches was sent, the
/// target still said "up", and the next start exited 1 (its cursor was
/// past the file's end).
#[test]
fn a_capture_cut_short_in_place_is_followed_to_its_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let up = upstream(dir.path(), port);
    let mut rx = forwarder(&capture, &url, &[]);
    for i in 0..3 {
        upload(&rx, &batch(i));
    }
    wait_for("the first batches upstream", || {
        (complete_lines(&up.capture).len() == 3).then_some(())
    });
    let mut want = hashes(&complete_lines(&up.capture));
    cut_short_in_place(&capture);
    for i in 3..6 {
        upload(&rx, &batch(i));
    }
    rx.wait_stderr("was cut short while running");
    let after = hashes(&complete_lines(&capture));
    assert_eq!(after.len(), 3, "the file holds the batches after the cut");
    want.extend(after);
    let got = wait_for("the batches after the cut upstream", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 6).then_some(lines)
    });
    assert_eq!(hashes(&got), want, "lost, repeated or out of order");
    assert!(rx.stop().success());
    let mut again = forwarder(&capture, &url, &[]);
    upload(&again, &batch(6));
    want.push(hashes(&complete_lines(&capture)).pop().unwrap());
    wait_for("the batch after the restart", || {
        (complete_lines(&up.capture).len() > 6).then_some(())
    });
    again.stop();
    assert_eq!(hashes(&complete_lines(&up.capture)), want, "sent twice");
}

/// The capture cut short in place, ten times, while a forwarder is behind
/// (its upstream down): it sends the batch it had in hand, loses those the
/// cuts took away (the writer says so), then follows the writer, and its
/// backlog comes back to 0; the cuts cost no descriptors. Until the review of the change above, the
/// lines cut away stayed counted as its backlog for the rest of the run
/// ("catching up", never "up" again).
#[test]
fn a_forwarder_behind_a_cut_goes_on_and_its_backlog_empties() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(&capture, &url, &[]);
    for i in 0..3 {
        upload(&rx, &batch(i));
    }
    // The first batch is in hand, tried and refused (the upstream is
    // down); the other two wait in the file.
    forward_note(&rx, "down", |_| true);
    let first = hashes(&complete_lines(&capture))[0].clone();
    let fds = format!("/proc/{}/fd", rx.child.id());
    let open = || {
        std::fs::read_dir(&fds)
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|to| to == &capture)
            .count()
    };
    let before = open();
    // Cut again and again, each cut seen by the writer at an upload.
    for i in 3..13 {
        cut_short_in_place(&capture);
        upload(&rx, &batch(i));
    }
    rx.wait_stderr("was cut short while running");
    // Each cut took a descriptor of its own, kept for the forwarder behind
    // (a probe's cuts held 912, and out of descriptors it never moved on).
    assert!(
        open() <= before,
        "{} descriptors on the capture, {before} before the cuts",
        open()
    );
    for i in 13..15 {
        upload(&rx, &batch(i));
    }
    let mut want = vec![first];
    want.extend(hashes(&complete_lines(&capture)));
    let up = upstream(dir.path(), port);
    let note = forward_note(&rx, "up", |v| v["pending"] == 0);
    assert_eq!(note["forwarded"], 4, "{note}");
    assert_eq!(hashes(&complete_lines(&up.capture)), want);
}

/// The capture deleted while forwarding (the writer starts a new file at
/// its path): what the old file still had to send goes first, then the new
/// file from its start, in order; the cursor then counts in the new file,
/// so a restart resumes there without sending anything twice.
#[test]
fn a_capture_deleted_while_forwarding_is_drained_then_the_new_one_followed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let mut rx = forwarder(&capture, &url, &[]);
    // The upstream is down: these wait in the first file.
    for i in 0..4 {
        upload(&rx, &batch(i));
    }
    forward_note(&rx, "down", |_| true);
    let old = hashes(&complete_lines(&capture));
    std::fs::remove_file(&capture).unwrap();
    for i in 4..7 {
        upload(&rx, &batch(i));
    }
    rx.wait_stderr("was deleted or moved away");
    let new = hashes(&complete_lines(&capture));
    assert_eq!(new.len(), 3, "the new file holds the later batches");
    let up = upstream(dir.path(), port);
    let want: Vec<String> = old.iter().chain(&new).cloned().collect();
    let got = wait_for("every batch of both files upstream", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= want.len()).then_some(lines)
    });
    assert_eq!(hashes(&got), want, "lost, repeated or out of order");
    let note = forward_note(&rx, "up", |v| v["pending"] == 0);
    assert_eq!(note["forwarded"], 7, "{note}");
    // The deleted file was kept open for the forwarder until it moved on,
    // then let go (it was held until exit before December 6).
    let deleted = format!("{} (deleted)", capture.display());
    let fds = format!("/proc/{}/fd", rx.child.id());
    let let_go = wait_until(Duration::from_secs(5), || {
        std::fs::read_dir(&fds)
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .all(|to| to.to_str() != Some(deleted.as_str()))
    });
    assert!(let_go, "the deleted capture is still open");
    rx.stop();
    // The cursor is in the new file: a restart resumes there.
    let cursor: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("capture.jsonl.forward")).unwrap(),
    )
    .unwrap();
    let len = std::fs::metadata(&capture).unwrap().len();
    assert_eq!(cursor["targets"][url.as_str()]["offset"], len, "{cursor}");
    let again = forwarder(&capture, &url, &[]);
    upload(&again, &batch(7));
    let got = wait_for("the batch after the restart", || {
        let lines = complete_lines(&up.capture);
        (lines.len() > want.len()).then_some(lines)
    });
    let last = hashes(&complete_lines(&capture)).last().unwrap().clone();
    assert_eq!(got.last().unwrap().batch_hash, last);
    let mut again = again;
    again.stop();
    assert_eq!(
        complete_lines(&up.capture).len(),
        want.len() + 1,
        "nothing sent twice"
    );
}

/// The capture's folder moved away while the forwarder is behind (`mv
/// captures old`, no upload after it): the forwarder makes the folder
/// again and saves its cursor there at once, and goes on. Every save
/// failed, 30 s at a time, until an upload made the folder again, and a
/// crash meanwhile left no cursor beside the new file (a hostile-client
/// probe). Stopped with nothing left and nothing at the path, the next
/// start begins the file it makes there; it refused to start at all.
#[test]
fn a_capture_folder_moved_away_while_forwarding_holds_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("captures");
    std::fs::create_dir(&folder).unwrap();
    let capture = folder.join("c.jsonl");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let mut rx = forwarder(&capture, &url, &[]);
    for i in 0..5 {
        upload(&rx, &batch(i));
    }
    forward_note(&rx, "down", |_| true);
    std::fs::rename(&folder, dir.path().join("old")).unwrap();
    let up = upstream(dir.path(), port);
    let started = Instant::now();
    wait_for("the five batches upstream", || {
        (complete_lines(&up.capture).len() >= 5).then_some(())
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let mut cursor = capture.as_os_str().to_owned();
    cursor.push(".forward");
    assert!(
        PathBuf::from(cursor).exists(),
        "no cursor beside the new file"
    );
    assert_eq!(rx.stop().code(), Some(0));
    assert!(!rx.stderr().contains("refuses"), "{}", rx.stderr());
    let mut again = forwarder(&capture, &url, &[]);
    upload(&again, &batch(5));
    let got = wait_for("the batch after the restart", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 6).then_some(lines)
    });
    again.stop();
    let mut all = hashes(&got);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "lost or sent twice");
}

/// A forwarder that passed one batch on, then stopped while its upstream
/// was down with a second in hand, after `lose` did something to the
/// capture and a third upload saw it (stderr saying `noticed`; with None,
/// no upload after it, so the writer never saw it): the folder, the
/// capture, the target's URL and port, and its stderr.
struct StoppedBehind {
    dir: tempfile::TempDir,
    capture: PathBuf,
    url: String,
    port: u16,
    said: String,
}

fn stopped_behind(lose: impl Fn(&Path), noticed: Option<&str>) -> StoppedBehind {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let mut up = upstream(dir.path(), port);
    let mut rx = forwarder(&capture, &url, &[]);
    upload(&rx, &batch(0));
    wait_for("the first batch upstream", || {
        (complete_lines(&up.capture).len() == 1).then_some(())
    });
    up.stop();
    upload(&rx, &batch(1));
    forward_note(&rx, "down", |_| true);
    lose(&capture);
    if let Some(noticed) = noticed {
        upload(&rx, &batch(2));
        rx.wait_stderr(noticed);
    }
    rx.stop();
    StoppedBehind {
        said: rx.stderr(),
        dir,
        capture,
        url,
        port,
    }
}

/// Checks that the next start with the cursor left behind refuses it.
fn next_start_refuses_the_cursor(capture: &Path, url: &str) {
    let mut child = binary()
        .env("AUTOPI_RX_FORWARD_TOKEN", UP_TOKEN)
        .args(["--headless", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(["--capture", capture.to_str().unwrap(), "--forward", url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A start that takes the cursor runs on: stopped and failed, not
    // waited for.
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the start took the cursor and ran on");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was the capture replaced or cut short?"),
        "{stderr}"
    );
}

/// The last line a target was done with was unreadable (set aside as
/// such): the next start still checks that line is where it was, by its
/// bytes. A capture replaced by a longer file while stopped is refused,
/// where it was resumed mid-file and the new file's first lines never
/// sent (a review).
#[test]
fn a_capture_replaced_after_an_unreadable_last_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A capture of `n` batches, made by a receiver forwarding nowhere.
    let made = |name: &str, n: usize| {
        let path = dir.path().join(name);
        let mut rx = forwarder(&path, "http://127.0.0.1:9/unused", &[]);
        for i in 0..n {
            upload(&rx, &batch(i));
        }
        rx.stop();
        path
    };
    let capture = made("capture.jsonl", 1);
    let mut text = std::fs::read(&capture).unwrap();
    text.extend_from_slice(b"an edit by hand, not a capture line\n");
    std::fs::write(&capture, text).unwrap();
    let up = upstream(dir.path(), 0);
    let url = format!("http://{}/logbook/storage", up.addr);
    let mut rx = forwarder(&capture, &url, &[]);
    forward_note(&rx, "", |v| v["parked"] == 1 && v["forwarded"] == 1);
    rx.stop();
    // Another capture, longer, in its place.
    std::fs::rename(made("other.jsonl", 3), &capture).unwrap();
    next_start_refuses_the_cursor(&capture, &url);
}

/// Renamed while a batch was still to go, an empty file put at the path
/// in its place (logrotate's `create`), then stopped before any upload:
/// the next start refuses the cursor. It went on from the empty file's
/// start, and the batch only the renamed file held was never sent, without
/// a word (a review of the rule that lets a start go on after a rotation
/// with nothing left). The exit said "0 batch(es) not yet passed on",
/// counted in the empty file.
#[test]
fn a_batch_left_in_a_renamed_capture_is_never_skipped_for_an_empty_file() {
    let behind = stopped_behind(
        |capture| {
            std::fs::rename(capture, capture.with_extension("jsonl.1")).unwrap();
            std::fs::write(capture, "").unwrap();
        },
        None,
    );
    let said = &behind.said;
    // The batch is counted as left, not the empty file's none.
    assert!(
        said.contains("1 batch(es) not yet passed on") && said.contains("refuses it"),
        "{said}"
    );
    next_start_refuses_the_cursor(&behind.capture, &behind.url);
}

/// A target that has passed nothing on yet (its upstream down from the
/// start, so it has no cursor) starts the file at the path next time:
/// stopped after the capture was renamed unseen (nothing, or an empty
/// file, put at the path), the exit counts the batch left and says it is
/// only in the file moved away. It said the batch would be sent at the
/// next start, or (the empty file) nothing, and it never was (a probe).
#[test]
fn a_target_without_a_cursor_says_what_a_moved_capture_still_holds() {
    // Renamed; renamed with an empty file put in its place; copied and
    // emptied in place (`copytruncate`).
    for how in ["mv", "mv and create", "copytruncate"] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}/logbook/storage", free_port());
        let capture = dir.path().join("capture.jsonl");
        let mut rx = forwarder(&capture, &url, &[]);
        upload(&rx, &batch(0));
        forward_note(&rx, "down", |_| true);
        let kept = capture.with_extension("jsonl.1");
        if how == "copytruncate" {
            std::fs::copy(&capture, &kept).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&capture)
                .unwrap()
                .set_len(0)
                .unwrap();
        } else {
            std::fs::rename(&capture, &kept).unwrap();
        }
        if how == "mv and create" {
            std::fs::write(&capture, "").unwrap();
        }
        rx.stop();
        let said = rx.stderr();
        let where_ = match how {
            "copytruncate" => {
                "1 batch(es) not yet passed on, and the capture file was cut short in place"
            }
            _ => {
                "1 batch(es) not yet passed on, some of them in a capture file that was deleted or replaced"
            }
        };
        assert!(
            said.contains(where_)
                && said.contains(&format!(
                    "the next start with --capture {} forwards the file at the path from its start",
                    capture.display()
                )),
            "{how}: {said}"
        );
    }
}

/// Stopped while batches of a deleted capture file were still to go: the
/// exit says that they are gone from the capture path and that the next
/// start refuses the cursor, and it does.
#[test]
fn a_stop_before_a_deleted_capture_was_drained_says_what_the_next_start_does() {
    let behind = stopped_behind(
        |capture| std::fs::remove_file(capture).unwrap(),
        Some("was deleted or moved away"),
    );
    let said = &behind.said;
    assert!(
        said.contains("in a capture file that was deleted or replaced while running")
            && said.contains("refuses it: move"),
        "{said}"
    );
    next_start_refuses_the_cursor(&behind.capture, &behind.url);
}

/// The capture deleted after the last upload, with a batch waiting for a
/// down upstream: the writer never saw it go, yet the exit says that the
/// cursor no longer matches the capture and that the next start refuses
/// it, which it does. It said the batch would be sent at the next start
/// (a reviewer's finding).
#[test]
fn a_stop_after_the_capture_went_unseen_says_the_next_start_refuses_the_cursor() {
    let behind = stopped_behind(|capture| std::fs::remove_file(capture).unwrap(), None);
    let said = &behind.said;
    assert!(
        said.contains(&format!(
            "no longer matches the capture at {0} (deleted, replaced or cut short after the last upload), so the next start with --capture {0} and --forward refuses it: move",
            behind.capture.display()
        )),
        "{said}"
    );
    next_start_refuses_the_cursor(&behind.capture, &behind.url);
}

/// Stopped while behind a capture cut short in place (its upstream down):
/// the exit says that the batches in the part cut away are gone, and what
/// the next start does, which it then does: with the file emptied the
/// cursor's line is gone and the start refuses it; with the file cut back
/// to the end of the batch passed on last the cursor holds, and the start
/// goes on from it with the batch that came after the cut. Until December
/// 6 the exit said the file was deleted or replaced and that the next
/// start refuses the cursor, in both cases.
#[test]
fn a_stop_behind_a_cut_says_what_the_next_start_does() {
    for keep_passed in [false, true] {
        let kept = std::cell::Cell::new(0);
        let cut = |capture: &Path| {
            let text = std::fs::read(capture).unwrap();
            let first_line = text.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
            kept.set(if keep_passed { first_line } else { 0 });
            let file = std::fs::OpenOptions::new().write(true).open(capture);
            file.unwrap().set_len(kept.get()).unwrap();
        };
        let behind = stopped_behind(cut, Some("was cut short while running"));
        let said = &behind.said;
        assert!(
            said.contains("the capture file was cut short in place while it was behind")
                && !said.contains("deleted or replaced"),
            "{said}"
        );
        if !keep_passed {
            assert!(said.contains("refuses it: move"), "{said}");
            next_start_refuses_the_cursor(&behind.capture, &behind.url);
            continue;
        }
        assert!(
            said.contains(&format!(
                "the next start with --capture {} goes on from byte {} of",
                behind.capture.display(),
                kept.get()
            )),
            "{said}"
        );
        let after_cut = hashes(&complete_lines(&behind.capture))[1].clone();
        let mut up = upstream(behind.dir.path(), behind.port);
        let mut again = forwarder(&behind.capture, &behind.url, &[]);
        let got = wait_for("the batch after the cut upstream", || {
            let lines = complete_lines(&up.capture);
            (lines.len() >= 2).then_some(lines)
        });
        assert_eq!(got[1].batch_hash, after_cut);
        again.stop();
        up.stop();
    }
}

/// The capture replaced by another file while forwarding (moved over it):
/// the writer appends to that file, and the forward goes on from where the
/// writer started in it; the lines the file already held are not ours and
/// are not sent.
#[test]
fn a_capture_replaced_while_forwarding_is_followed_from_where_the_writer_started() {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = scripted_upstream(vec![]);
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(&capture, &url, &[]);
    for i in 0..2 {
        upload(&rx, &batch(i));
    }
    for i in 0..2 {
        let got = requests.recv_timeout(DEADLINE).expect("a forwarded batch");
        assert_eq!(got.body, batch(i));
    }
    // Another capture, with a batch of its own, moved over ours.
    let foreign = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T07:00:00","value":1}]"#;
    let other = dir.path().join("other.jsonl");
    let line = format!(
        r#"{{"received":"2026-11-27T07:00:00.000Z","peer":"x","unit_id":null,"encoding":"identity","wire_bytes":{},"batch_hash":"ff","duplicate_of":null,"records":{}}}"#,
        foreign.len(),
        String::from_utf8_lossy(foreign)
    );
    std::fs::write(&other, format!("{line}\n")).unwrap();
    std::fs::rename(&other, &capture).unwrap();
    for i in 2..4 {
        upload(&rx, &batch(i));
    }
    rx.wait_stderr("was replaced by another file");
    for i in 2..4 {
        let got = requests.recv_timeout(DEADLINE).expect("a forwarded batch");
        assert_eq!(got.body, batch(i), "the foreign batch is not sent");
    }
    wait_for("the status page to say up with 4 forwarded", || {
        status_page(&rx)
            .contains(&format!(
                "forward http://127.0.0.1:{port}/…: up (4 forwarded)"
            ))
            .then_some(())
    });
    assert!(requests.try_recv().is_err(), "nothing more was sent");
}

#[test]
fn kill_9_mid_catch_up_loses_nothing_and_repeats_at_most_one() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let mut rx = forwarder(&capture, &url, &[]);
    for i in 0..N {
        upload(&rx, &batch(i));
    }
    let up = upstream(dir.path(), port);
    let before_kill = wait_for("the catch-up to start", || {
        let n = complete_lines(&up.capture).len();
        (n >= 20).then_some(n)
    });
    rx.child.kill().unwrap();
    rx.child.wait().unwrap();
    let at_kill = complete_lines(&up.capture).len();
    assert!(
        at_kill < N,
        "the catch-up ended before the kill ({before_kill}, {at_kill}): nothing was tested"
    );

    let _again = forwarder(&capture, &url, &[]);
    let sent = hashes(&complete_lines(&capture));
    let got = wait_for("the rest upstream", || {
        let lines = complete_lines(&up.capture);
        let distinct: std::collections::HashSet<_> = lines.iter().map(|l| &l.batch_hash).collect();
        (distinct.len() >= N).then_some(lines)
    });
    let twice = got.iter().filter(|l| l.duplicate_of.is_some()).count();
    assert!(twice <= 1, "{twice} batches delivered twice");
    let first_seen: Vec<String> = got
        .iter()
        .filter(|l| l.duplicate_of.is_none())
        .map(|l| l.batch_hash.clone())
        .collect();
    assert_eq!(first_seen, sent, "lost or out of order");
}

/// The device's recorded requests, and requests with unusual headers,
/// reach the upstream with the same body bytes and the same headers that
/// matter (user-agent, unit-id, content-encoding, content-type, each
/// absent when the device sent none): the upstream cannot tell the
/// forward from the device.
#[test]
fn the_upstream_gets_the_devices_own_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = scripted_upstream(vec![]);
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let mut rx = forwarder(&dir.path().join("capture.jsonl"), &url, &[]);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(samples().join("device-requests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        sent.push(std::fs::read(path).unwrap());
    }
    let auth = format!("token {TOKEN}");
    let odd_type = "application/json; charset=utf-8";
    for (headers, body) in [
        // No user-agent, no content-type, no unit-id.
        (vec![("authorization", auth.as_str())], batch(1)),
        (
            vec![
                ("authorization", auth.as_str()),
                ("User-Agent", "python-requests/2.31.0 (bench 7)"),
                ("content-type", odd_type),
                ("unit-id", UNIT),
            ],
            batch(2),
        ),
    ] {
        sent.push(request_bytes("POST", &headers, &body));
    }
    let mut device = Vec::new();
    for raw in &sent {
        assert_eq!(Conn::open(rx.addr).request(raw).status, 200);
        let head = String::from_utf8_lossy(&raw[..raw.len() - http_body(raw).len()]);
        device.push(Got {
            head: head
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect(),
            body: http_body(raw).to_vec(),
        });
    }
    // The recordings repeat a batch in another encoding: only the first
    // copy goes on.
    let captured = complete_lines(&rx.capture);
    assert_eq!(captured.len(), device.len());
    let device: Vec<Got> = device
        .into_iter()
        .zip(&captured)
        .filter(|(_, line)| line.duplicate_of.is_none())
        .map(|(d, _)| d)
        .collect();
    assert!(device.len() >= 4, "too few new batches to test");
    for (i, want) in device.iter().enumerate() {
        let got = requests.recv_timeout(DEADLINE).expect("a forwarded batch");
        assert_eq!(got.body, want.body, "request {i}: the body differs");
        for name in [
            "user-agent",
            "unit-id",
            "content-encoding",
            "content-type",
            "accept",
            "accept-encoding",
        ] {
            assert_eq!(got.header(name), want.header(name), "request {i}: {name}");
        }
        // Nothing of ours is added beyond what HTTP needs, and the token.
        let http = ["host", "content-length"];
        for name in got.header_names() {
            assert!(
                want.header(&name).is_some() || http.contains(&name.as_str()),
                "request {i}: {name} was added: {:?}",
                got.head
            );
        }
        assert_eq!(
            got.header("authorization"),
            Some(&*format!("token {UP_TOKEN}"))
        );
    }
    rx.stop();
}

/// A `unit-id` or `user-agent` holding a control character (ESC, DEL),
/// which tiny_http takes and HTTP forbids in a header: the batch is
/// forwarded with a space in its place (RFC 9110, 5.5), the capture keeps
/// the value as sent. Until December 6 such a batch was answered 200 and
/// parked as unsendable, never reaching the upstream (a hostile-client
/// probe).
#[test]
fn a_header_holding_a_control_character_is_forwarded_with_a_space_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = scripted_upstream(vec![]);
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let mut rx = forwarder(&dir.path().join("capture.jsonl"), &url, &[]);
    let auth = format!("token {TOKEN}");
    for (i, (name, value, sent_as)) in [
        ("unit-id", "bench\u{1b}[31m7", "bench [31m7"),
        ("unit-id", "bench\u{7f}8", "bench 8"),
        (
            "user-agent",
            "python-requests\u{1b}/2.31",
            "python-requests /2.31",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = rx.post(&[("authorization", &auth), (name, value)], &batch(i));
        assert_eq!(answer.status, 200, "{}", answer.text());
        let got = requests
            .recv_timeout(DEADLINE)
            .expect("the batch forwarded");
        assert_eq!(got.body, batch(i));
        assert_eq!(got.header(name), Some(sent_as), "{name}");
    }
    rx.stop();
    let captured = complete_lines(&rx.capture);
    assert_eq!(captured[0].unit_id.as_deref(), Some("bench\u{1b}[31m7"));
}

/// A scripted upstream that refuses batches holding `TOO-BIG` with 413
/// and batches holding `NO-AUTH` with 401.
fn refusing_upstream() -> (u16, crossbeam_channel::Receiver<Got>) {
    scripted_upstream(vec![
        (
            "TOO-BIG",
            "413 Payload Too Large",
            r#"{"error":"request entity too big"}"#,
        ),
        (
            "NO-AUTH",
            "401 Unauthorized",
            r#"{"error":"invalid token"}"#,
        ),
    ])
}

/// A batch `refusing_upstream` answers 401, and one it answers 413.
const NO_AUTH: &[u8] = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":"NO-AUTH"}]"#;
const TOO_BIG: &[u8] = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":"TOO-BIG"}]"#;

/// A forwarder to `refusing_upstream` at `path`, `bodies` uploaded in
/// order and each taken by the upstream: the folder, the receiver, the
/// target's URL and the upstream's requests (later ones still to come).
fn forwarding_to_a_refuser(
    path: &str,
    bodies: &[&[u8]],
) -> (
    tempfile::TempDir,
    Receiver,
    String,
    crossbeam_channel::Receiver<Got>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = refusing_upstream();
    let url = format!("http://127.0.0.1:{port}{path}");
    let rx = forwarder(&dir.path().join("capture.jsonl"), &url, &[]);
    for body in bodies {
        upload(&rx, body);
    }
    let got: Vec<Vec<u8>> = bodies
        .iter()
        .map(|_| {
            requests
                .recv_timeout(DEADLINE)
                .expect("a forwarded batch")
                .body
        })
        .collect();
    assert_eq!(got, bodies, "each once, in order");
    (dir, rx, url, requests)
}

#[test]
fn upstream_413_parks_the_batch_shows_it_and_goes_on() {
    let (dir, mut rx, url, _) = forwarding_to_a_refuser("/", &[&batch(1), TOO_BIG, &batch(2)]);
    let note = forward_note(&rx, "", |v| v["parked"] != 0);
    assert_eq!(note["parked"], 1, "{note}");
    assert!(
        note["last_parked"].as_str().unwrap().contains("413"),
        "{note}"
    );
    let page = status_page(&rx);
    assert!(
        page.contains("parked 1 (last: 413: request entity too big)"),
        "{page}"
    );
    rx.stop();
    assert!(
        rx.stderr().contains("1 batch(es) parked, listed in")
            && rx.stderr().contains("capture.jsonl.forward.parked"),
        "{}",
        rx.stderr()
    );
    let parked = parked_list(dir.path());
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["target"], url.as_str());
    assert!(
        parked[0]["reason"].as_str().unwrap().starts_with("413"),
        "{parked:?}"
    );
}

/// The parked log beside the capture, one entry per line.
fn parked_list(dir: &Path) -> Vec<Value> {
    let log = std::fs::read_to_string(dir.join("capture.jsonl.forward.parked")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A refusal with long words keeps its hint: the words are cut where the
/// reason is made, and the hint after them stays whole (a cut of the
/// whole reason at 600 characters took the hint: a review).
#[test]
fn a_long_refusal_keeps_its_hint() {
    let dir = tempfile::tempdir().unwrap();
    let words = format!("{{\"error\":\"{}\"}}", "w ".repeat(400));
    let refuser = ScriptedServer::start(vec![Scripted::Answer(
        format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{words}",
            words.len()
        )
        .into_bytes(),
    )]);
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(&capture, &format!("{}in", refuser.url), &[]);
    upload(&rx, &batch(0));
    forward_note(&rx, "", |v| v["parked"] == 1);
    let reason = parked_list(dir.path())[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("401: ")
            && reason.ends_with("(check --forward-token and --forward-scheme)"),
        "{reason}"
    );
}

/// The issue's rule: every 4xx but 408/429 parks the batch with the
/// reason, 401 included (the token is wrong for this batch as for any:
/// the outbox is never held, each refused batch is listed), and the
/// batches after it go on.
#[test]
fn upstream_401_parks_the_batch_with_the_reason_and_the_next_ones_go_on() {
    let (dir, mut rx, url, requests) = forwarding_to_a_refuser(
        "/logbook/storage",
        &[&batch(1), NO_AUTH, &batch(2), &batch(3)],
    );
    let why = "401: invalid token (check --forward-token and --forward-scheme)";
    let note = forward_note(&rx, "", |v| v["parked"] != 0);
    assert_eq!(note["parked"], 1, "{note}");
    assert_eq!(note["last_parked"], why, "{note}");
    let page = wait_for("the status page to say up with 3 forwarded", || {
        let page = status_page(&rx);
        page.contains(&format!(
            "forward {}/…: up · parked 1 (last: {why}) (3 forwarded)",
            url.trim_end_matches("/logbook/storage")
        ))
        .then_some(page)
    });
    assert!(!page.contains("down"), "{page}");
    rx.stop();
    // Nothing is tried again by itself: the refused batch went once.
    assert!(requests.try_recv().is_err());
    let parked = parked_list(dir.path());
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["reason"], why, "{parked:?}");
}

#[test]
fn the_header_shows_each_target_and_its_state() {
    use autopi_rx::upstream::{ForwardStatus, Link};
    let at = autopi_rx::fixtures::at;
    // The scene's clock reads 07:59:55.
    let mut app = ui_support::empty();
    let mut http = ForwardStatus::new("http://10.0.0.5:8000/logbook/storage".into());
    http.link = Link::Down {
        since: at("2026-11-27T07:59:40Z"),
        error: "io: Connection refused (os error 111)".into(),
    };
    http.pending = 12;
    let mut mqtt = ForwardStatus::new("mqtt://broker:1883/bench".into());
    mqtt.link = Link::Up;
    mqtt.pending = 3;
    mqtt.oldest_waiting = Some(at("2026-11-27T07:59:35Z"));
    mqtt.parked = 1;
    app.setup.forward = vec![http, mqtt];
    for (width, height) in [(80, 24), (120, 40)] {
        let frame = ui_support::text(&ui_support::draw(&app, width, height));
        let lines: Vec<&str> = frame.lines().collect();
        let want = " forward 10.0.0.5:8000 down since 07:59:40, 12 waiting · mqtt broker:1883 catching up 3 (lag 20 s) · parked 1";
        // Cut at the screen's edge, never wrapped.
        let shown: String = want.chars().take(width as usize).collect();
        assert_eq!(lines[3].trim_end(), shown.trim_end(), "{width}");
        assert!(lines[4].contains("1 Live"), "{width}: {}", lines[4]);
    }
    // Without --forward the header keeps its four lines.
    let frame = ui_support::text(&ui_support::draw(&ui_support::empty(), 120, 40));
    assert!(!frame.contains("forward"));
    assert!(frame.lines().nth(3).unwrap().contains("1 Live"));
}

#[test]
fn unusable_forward_urls_exit_2_and_say_why() {
    for (url, says) in [
        (
            "ftp://host/x",
            "give an http://, https://, mqtt:// or mqtts:// URL",
        ),
        ("http://user:pw@host/x", "put no credentials in the URL"),
        ("mqtt://user:pw@host/x", "put no credentials in the URL"),
        ("mqtt://host:port/x", "is not a port"),
        ("mqtt://host/a/#", "may not hold '+', '#' or NUL"),
        // No refusal quotes the URL: a password written with a slash
        // read as the port, a key in the query, a token pasted in by
        // mistake were each quoted (a review).
        ("mqtt://u:pwS3CRET/PASS@h/x", "is not a port"),
        ("http://h:80080/x?key=pwQUERYKEY", "is not a port"),
        (&format!("http://h/{TOKEN} x"), "--forward is not a URL"),
    ] {
        let out = binary()
            .args(["--token", TOKEN, "--headless", "--forward", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("pw"), "{url}: {stderr}");
        assert!(!stderr.contains(TOKEN), "{url}: {stderr}");
    }
    // Of several URLs, the refusal says which.
    let out = binary()
        .args(["--token", TOKEN, "--headless"])
        .args(["--forward", "http://h/x", "--forward", "mqtt://h:x/y"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a port (a number from 0 to 65535) (the URL given 2 of 2)"),
        "{stderr}"
    );
    let out = binary()
        .args(["--token", TOKEN, "--headless"])
        .args(["--forward", "http://h/x", "--forward", "http://h/x?k=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is given twice"));
    // A capture that cannot be read back is no outbox: refused before
    // listening.
    let out = binary()
        .args(["--token", TOKEN, "--headless", "--listen", "127.0.0.1:0"])
        .args(["--capture", "/dev/full", "--forward", "http://h/x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/full is not a regular file"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
    // A parked log or a cursor that stops the start stops it before any
    // device is answered (25 uploads were acknowledged by a receiver about
    // to exit); a replaced capture too.
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let log = dir.path().join("c.jsonl.forward.parked");
    let cursor = dir.path().join("c.jsonl.forward");
    let cases = [
        (&log, "garbage\n", "line 1 of"),
        (
            &cursor,
            r#"{"targets":{"http://h/x":{"offset":99}}}"#,
            "was the capture replaced or cut short?",
        ),
    ];
    for (file, text, says) in cases {
        std::fs::write(file, text).unwrap();
        let out = binary()
            .args(["--token", TOKEN, "--headless", "--listen", "127.0.0.1:0"])
            .args([
                "--capture",
                capture.to_str().unwrap(),
                "--forward",
                "http://h/x",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
        std::fs::remove_file(file).unwrap();
    }
    // --help names the environment variable, never its value.
    let help = binary()
        .env("AUTOPI_RX_FORWARD_TOKEN", UP_TOKEN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("AUTOPI_RX_FORWARD_TOKEN") && !help.contains(UP_TOKEN));
}

/// A target's place carries over to a new URL (an upstream that moved,
/// `http://` to `https://`) by putting the new URL in place of the old in
/// the cursor file: the new target then gets only what the old one had
/// not. A new URL started from the capture's first line, and following
/// the redirect's advice sent every batch again (a hostile-upstream
/// probe): the README says how, and this is what it says.
#[test]
fn a_target_s_place_carries_over_to_a_new_url_in_the_cursor_file() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let (old_port, new_port) = (free_port(), free_port());
    let old_url = format!("http://127.0.0.1:{old_port}/logbook/storage");
    let new_url = format!("http://127.0.0.1:{new_port}/logbook/storage");
    let old_dir = dir.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    let old = upstream(&old_dir, old_port);
    let mut rx = forwarder(&capture, &old_url, &[]);
    for i in 0..2 {
        upload(&rx, &batch(i));
    }
    wait_for("both batches at the old upstream", || {
        (complete_lines(&old.capture).len() == 2).then_some(())
    });
    rx.stop();
    let cursor = dir.path().join("capture.jsonl.forward");
    let text = std::fs::read_to_string(&cursor).unwrap();
    assert!(text.contains(&old_url), "{text}");
    std::fs::write(&cursor, text.replace(&old_url, &new_url)).unwrap();
    let new_dir = dir.path().join("new");
    std::fs::create_dir(&new_dir).unwrap();
    let new = upstream(&new_dir, new_port);
    let rx = forwarder(&capture, &new_url, &[]);
    upload(&rx, &batch(2));
    let got = wait_for("the third batch at the new upstream", || {
        let lines = complete_lines(&new.capture);
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(hashes(&got), hashes(&complete_lines(&capture))[2..]);
}

/// Two answers that say nothing useful on their own get a hint: a 200
/// whose head ureq cannot read (a control byte in a value) may have been
/// taken, and goes again; a plain-HTTP server answering our TLS hello
/// with an HTTP page may want `http://` (a hostile-upstream probe).
#[test]
fn unreadable_answers_and_plain_http_behind_https_say_what_they_may_be() {
    let dir = tempfile::tempdir().unwrap();
    let odd = ScriptedServer::start(vec![Scripted::Answer(
        b"HTTP/1.1 200 OK\r\nx-odd: a\x01b\r\ncontent-length: 0\r\n\r\n".to_vec(),
    )]);
    let rx = forwarder(&dir.path().join("a.jsonl"), &format!("{}in", odd.url), &[]);
    upload(&rx, &batch(0));
    let note = forward_note(&rx, "down", |_| true);
    let error = note["error"].as_str().unwrap();
    assert!(
        error.contains("the upstream's answer could not be read: it may have taken the batch"),
        "{note}"
    );
    // A server that answers anything with an HTTP 400, as a plain-HTTP
    // one answers a TLS hello.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in plain.incoming().flatten() {
            let mut first = [0u8; 512];
            let _ = conn.read(&mut first);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let rx = forwarder(
        &dir.path().join("b.jsonl"),
        &format!("https://127.0.0.1:{port}/in"),
        &[],
    );
    upload(&rx, &batch(1));
    let note = forward_note(&rx, "down", |_| true);
    assert!(
        note["error"]
            .as_str()
            .unwrap()
            .contains("(the upstream may speak plain HTTP: try http://)"),
        "{note}"
    );
}

/// Stopping while a batch is in flight to a target that never answers:
/// the wait for it is said, and a second signal ends it at once (status
/// 1), as it does while requests finish. It waited out the 2 s (a
/// hostile-upstream probe).
#[test]
fn a_second_signal_ends_the_wait_for_a_batch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let silent = ScriptedServer::start(vec![Scripted::Hold(Vec::new())]);
    let capture = dir.path().join("capture.jsonl");
    let mut rx = forwarder(&capture, &format!("{}in", silent.url), &[]);
    upload(&rx, &batch(0));
    silent
        .requests
        .recv_timeout(DEADLINE)
        .expect("the batch reaches the upstream");
    signal(&rx.child, "INT");
    rx.wait_stderr("stopping: waiting up to 2 s for the batch in flight to 1 forward target(s)");
    signal(&rx.child, "INT");
    let (status, said) = rx.wait_exit();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains("second signal: exiting without waiting for the batches in flight to the forward targets"),
        "{said}"
    );
}

/// A cursor that cannot be saved when the run stops is said at the exit,
/// with the batches passed on since its last save, which the next start
/// sends again (as it then does). The exit said nothing (a review).
#[test]
fn a_cursor_that_cannot_be_saved_at_exit_says_what_goes_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let up = upstream(dir.path(), port);
    let mut rx = forwarder(&capture, &url, &[]);
    upload(&rx, &batch(0));
    forward_note(&rx, "up", |_| true);
    // The cursor's temporary file cannot be made from now on.
    let blocker = dir.path().join("capture.jsonl.forward.tmp");
    std::fs::create_dir(&blocker).unwrap();
    upload(&rx, &batch(1));
    forward_note(&rx, "down", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot save the cursor"))
    });
    rx.stop();
    let said = rx.stderr();
    assert!(
        said.contains("cannot be saved at exit")
            && said.contains(
                "the next start sends again the 1 batch(es) passed on since it was last saved (one per target each went to)"
            ),
        "{said}"
    );
    std::fs::remove_dir(&blocker).unwrap();
    let _again = forwarder(&capture, &url, &[]);
    let got = wait_for("the batch sent again", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 3).then_some(lines)
    });
    let sent = hashes(&complete_lines(&capture));
    assert_eq!(hashes(&got), [&sent[..], &sent[1..]].concat());
}

/// Started without `--capture`, the receiver makes a new file under
/// `captures/` at each start, so the exit names the file to start again
/// with, and started with it the backlog goes. It said "the same
/// --capture", and the same command run again forwarded nothing into a
/// new empty file (a review).
#[test]
fn a_backlog_at_exit_names_the_capture_a_start_without_one_made() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let start = |capture: Option<&str>| {
        let mut cmd = binary();
        cmd.current_dir(dir.path())
            .env("AUTOPI_RX_FORWARD_TOKEN", UP_TOKEN)
            .args(["--token", TOKEN, "--forward", &url])
            .args(capture.map(|c| ["--capture", c]).into_iter().flatten());
        Receiver::spawn(&mut cmd)
    };
    let mut rx = start(None);
    upload(&rx, &batch(0));
    forward_note(&rx, "down", |_| true);
    rx.stop();
    let said = rx.stderr();
    let made: Vec<PathBuf> = std::fs::read_dir(dir.path().join("captures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let named = said
        .split("starts again with --capture ")
        .nth(1)
        .and_then(|rest| rest.split(" and the same --forward").next())
        .unwrap_or_else(|| panic!("no capture named: {said}"));
    assert_eq!(
        dir.path().join(named).canonicalize().unwrap(),
        made[0].canonicalize().unwrap(),
        "{said}"
    );
    let up = upstream(dir.path(), port);
    let _again = start(Some(named));
    let got = wait_for("the backlog upstream", || {
        let lines = complete_lines(&up.capture);
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(hashes(&got), hashes(&complete_lines(&made[0])));
}

#[test]
fn a_backlog_at_exit_is_told_and_sent_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let capture = dir.path().join("capture.jsonl");
    let mut rx = forwarder(&capture, &url, &[]);
    for i in 0..3 {
        upload(&rx, &batch(i));
    }
    forward_note(&rx, "down", |_| true);
    rx.stop();
    let said = rx.stderr();
    assert!(
        said.contains(&format!(
            "forward {url}: 3 batch(es) not yet passed on; they are sent when autopi-rx starts again with --capture {} and the same --forward",
            capture.display()
        )),
        "{said}"
    );
    let up = upstream(dir.path(), port);
    let _again = forwarder(&capture, &url, &[]);
    let got = wait_for("the backlog upstream", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 3).then_some(lines)
    });
    assert_eq!(hashes(&got), hashes(&complete_lines(&capture)));
}

/// An HTTPS front for `upstream`: terminates TLS with `cert` and `key`
/// and relays each request unchanged over plain HTTP, and its answer back.
fn https_front(upstream: std::net::SocketAddr, cert: &Path, key: &Path) -> u16 {
    https_front_asking(upstream, cert, key, None)
}

/// `https_front`; given `clients`, a CA, it asks every client for a
/// certificate that CA signed and refuses a client without one.
fn https_front_asking(
    upstream: std::net::SocketAddr,
    cert: &Path,
    key: &Path,
    clients: Option<&Path>,
) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let certs = read(cert);
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read(ca) {
                roots.add(c).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).unwrap();
    let config = std::sync::Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let tls = rustls::StreamOwned::new(connection, stream);
            std::thread::spawn(move || relay(BufReader::new(tls), upstream));
        }
    });
    port
}

/// Relays HTTP/1.1 requests read from `client` to `upstream`, one by one.
fn relay(mut client: BufReader<impl Read + Write>, upstream: std::net::SocketAddr) {
    loop {
        let mut raw = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if client.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
            raw.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        client.read_exact(&mut body).unwrap();
        raw.extend_from_slice(&body);
        let answer = Conn::open(upstream).request(&raw);
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n\r\n",
            answer.status,
            answer.body.len()
        );
        let out = client.get_mut();
        out.write_all(head.as_bytes()).unwrap();
        out.write_all(&answer.body).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn https_upstream_gets_the_same_bytes_and_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let up = upstream(dir.path(), 0);
    let port = https_front(up.addr, &cert, &key);
    let url = format!("https://127.0.0.1:{port}/logbook/storage");
    let ca_arg = ca.display().to_string();
    let rx = forwarder(
        &dir.path().join("capture.jsonl"),
        &url,
        &["--forward-ca", &ca_arg],
    );
    let gz = gzip(&batch(1));
    let auth = format!("token {TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("unit-id", UNIT),
        ("content-encoding", "gzip"),
    ];
    assert_eq!(rx.post(&headers, &gz).status, 200);
    upload(&rx, &batch(2));
    let got = wait_for("both batches over https", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 2).then_some(lines)
    });
    assert_eq!(wire_of(&got[0]), gz);
    assert_eq!(got[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(wire_of(&got[1]), batch(2));

    // Without the CA the server is not trusted: down, saying why.
    let strict = forwarder(&dir.path().join("strict.jsonl"), &url, &[]);
    upload(&strict, &batch(3));
    let note = forward_note(&strict, "down", |_| true);
    let error = note["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{note}"
    );
    assert_eq!(complete_lines(&up.capture).len(), 2);
}

/// An upstream asking for a client certificate (mutual TLS) gets the
/// batches when `--forward-cert` and `--forward-key` name one its CA
/// signed; without them the forwarder is down saying why, and nothing
/// reaches it. A key that is not the certificate's, an encrypted key or a
/// file with no key is refused at start (exit 2), naming the file and
/// never the key; the key is in no output.
#[test]
fn an_upstream_asking_for_a_client_certificate_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, client, client_key) = certificates_and_client(dir.path());
    let up = upstream(dir.path(), 0);
    let port = https_front_asking(up.addr, &cert, &key, Some(&ca));
    let url = format!("https://127.0.0.1:{port}/logbook/storage");
    let (ca, client, client_key) = (
        ca.to_str().unwrap(),
        client.to_str().unwrap(),
        client_key.to_str().unwrap(),
    );
    let tls_flags = [
        "--forward-ca",
        ca,
        "--forward-cert",
        client,
        "--forward-key",
        client_key,
    ];
    let mut rx = forwarder(&dir.path().join("capture.jsonl"), &url, &tls_flags);
    upload(&rx, &batch(1));
    upload(&rx, &batch(2));
    let got = wait_for("both batches over mutual TLS", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 2).then_some(lines)
    });
    assert_eq!(wire_of(&got[0]), batch(1));
    assert_eq!(wire_of(&got[1]), batch(2));
    let page = status_page(&rx);
    assert!(rx.stop().success());
    let (out, err) = (rx.remaining_stdout().join("\n"), rx.stderr());
    let key_pem = std::fs::read_to_string(client_key).unwrap();
    let secret: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!secret.is_empty());
    for text in [&page, &out, &err] {
        assert!(!secret.iter().any(|l| text.contains(l)), "{text}");
    }

    // Without a client certificate: refused by the upstream, down.
    let bare = forwarder(&dir.path().join("bare.jsonl"), &url, &["--forward-ca", ca]);
    upload(&bare, &batch(3));
    let note = forward_note(&bare, "down", |_| true);
    let error = note["error"].as_str().unwrap();
    assert!(error.contains("client certificate"), "{note}");
    assert!(error.contains("--forward-cert"), "{note}");
    assert_eq!(complete_lines(&up.capture).len(), 2);

    // Files that cannot be a client identity: exit 2 before listening.
    let server_key = key.to_str().unwrap();
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let encrypted = encrypted.to_str().unwrap();
    for (cert, key, says) in [
        (client, server_key, "the key is not the certificate's"),
        (client, encrypted, "the key is encrypted with a passphrase"),
        (client, client, "no private key in it"),
        (client_key, client_key, "no certificate in it"),
    ] {
        let out = binary()
            .args(["--token", TOKEN, "--listen", "127.0.0.1:0", "--headless"])
            .args([
                "--capture",
                dir.path().join("never.jsonl").to_str().unwrap(),
            ])
            .args([
                "--forward",
                &url,
                "--forward-cert",
                cert,
                "--forward-key",
                key,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(!secret.iter().any(|l| stderr.contains(l)), "{stderr}");
    }

    // No TLS target: the TLS flags are said to be unused.
    let plain = format!("http://{}/logbook/storage", up.addr);
    let mut rx = forwarder(&dir.path().join("plain.jsonl"), &plain, &tls_flags);
    assert!(rx.stop().success());
    let said = rx.stderr();
    assert!(
        said.contains("warning: --forward-ca and --forward-cert/--forward-key: for https:// and mqtts:// targets only"),
        "{said}"
    );
}

/// `replay` and `simulate` to an HTTPS receiver with a CA of its own:
/// trusted with `--ca`; without it the certificate is named and the run
/// gives up.
#[test]
fn replay_and_simulate_trust_an_https_receiver_by_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let up = upstream(dir.path(), 0);
    let port = https_front(up.addr, &cert, &key);
    let url = format!("https://127.0.0.1:{port}/logbook/storage");
    // A capture of two batches to replay.
    let capture = dir.path().join("capture.jsonl");
    let rx = Receiver::spawn(binary().args(["--no-auth", "--capture", capture.to_str().unwrap()]));
    upload(&rx, &batch(1));
    upload(&rx, &batch(2));
    drop(rx);
    let run = |args: &[&str]| {
        binary()
            .args(args)
            .args([
                "--url",
                &url,
                "--token",
                UP_TOKEN,
                "--retry-wait",
                "0",
                "--timeout",
                "5",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let ca_arg = ca.to_str().unwrap();
    let replayed = run(&[
        "replay",
        capture.to_str().unwrap(),
        "--as-fast-as-possible",
        "--ca",
        ca_arg,
    ]);
    let said = String::from_utf8_lossy(&replayed.stdout);
    assert!(
        replayed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(said.contains("acknowledged: 2 of 2"), "{said}");
    let simulated = run(&[
        "simulate",
        "--count",
        "1",
        "--interval",
        "0",
        "--ca",
        ca_arg,
    ]);
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    let got = wait_for("three batches over https", || {
        let lines = complete_lines(&up.capture);
        (lines.len() >= 3).then_some(lines)
    });
    assert_eq!(wire_of(&got[0]), batch(1));

    let strict = run(&["replay", capture.to_str().unwrap(), "--as-fast-as-possible"]);
    let said = String::from_utf8_lossy(&strict.stderr).to_lowercase();
    assert_eq!(strict.status.code(), Some(1), "{said}");
    assert!(
        said.contains("certificate") || said.contains("issuer"),
        "{said}"
    );
    assert_eq!(complete_lines(&up.capture).len(), 3);
}

#[test]
fn each_batch_goes_once_per_device_and_a_retry_of_an_unacknowledged_one_goes() {
    // A capture as answer modes leave it: a batch saved but answered 500
    // on purpose ("acked": false), its re-send (a duplicate, acknowledged),
    // a late-answer re-send of that, then the same content from another
    // device, and a last batch.
    let line = |received: &str,
                unit: &str,
                body: &[u8],
                duplicate_of: Option<&str>,
                acked: Option<bool>| {
        let mut v = serde_json::json!({
            "received": received,
            "peer": "127.0.0.1:1",
            "unit_id": unit,
            "encoding": "identity",
            "wire_bytes": body.len(),
            "batch_hash": blake3::hash(body).to_hex().to_string(),
            "duplicate_of": duplicate_of,
        });
        if let Some(acked) = acked {
            v["acked"] = acked.into();
            v["mode"] = "500".into();
        }
        let mut text = serde_json::to_string(&v).unwrap();
        text.pop();
        format!("{text},\"records\":{}}}\n", String::from_utf8_lossy(body))
    };
    let t = |s: u32| format!("2026-11-27T08:00:{s:02}.000Z");
    let capture_text = [
        line(&t(1), UNIT, &batch(1), None, Some(false)),
        line(&t(2), UNIT, &batch(1), Some(&t(1)), None),
        line(&t(3), UNIT, &batch(1), Some(&t(1)), None),
        line(&t(4), UNIT, &batch(2), None, None),
        line(
            &t(5),
            "7c1e9a0b4d2f48e3a5b6c7d8e9f00112",
            &batch(2),
            Some(&t(4)),
            None,
        ),
        line(&t(6), UNIT, &batch(3), None, None),
    ]
    .concat();
    for (extra, want) in [
        (vec![], vec![batch(1), batch(2), batch(2), batch(3)]),
        (
            vec!["--forward-all"],
            vec![batch(1), batch(1), batch(1), batch(2), batch(2), batch(3)],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("capture.jsonl");
        std::fs::write(&capture, &capture_text).unwrap();
        let (port, bodies) = refusing_upstream();
        let _rx = forwarder(&capture, &format!("http://127.0.0.1:{port}/"), &extra);
        // The last batch comes last: whatever was to be sent before it has been.
        let mut got = Vec::new();
        while got.last() != Some(&batch(3)) {
            got.push(
                bodies
                    .recv_timeout(DEADLINE)
                    .expect("a forwarded batch")
                    .body,
            );
        }
        let text = |v: &[Vec<u8>]| -> Vec<String> {
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into())
                .collect()
        };
        assert_eq!(text(&got), text(&want), "{extra:?}");
    }
}

/// A receiver in a folder of its own, forwarding to an upstream on
/// 127.0.0.1 at `port`; the folder goes when it is dropped.
fn forwarding_to(port: u16) -> (tempfile::TempDir, Receiver) {
    let dir = tempfile::tempdir().unwrap();
    let rx = forwarder(
        &dir.path().join("capture.jsonl"),
        &format!("http://127.0.0.1:{port}/"),
        &[],
    );
    (dir, rx)
}

#[test]
fn a_hung_upstream_does_not_hold_the_answers() {
    // Accepts connections and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hung.incoming() {
            held.push(s);
        }
    });
    let (_dir, rx) = forwarding_to(port);
    // Each answer comes while the forwarder waits on the first batch (its
    // timeout, 30 s, is longer than the client's).
    for i in 0..5 {
        upload(&rx, &batch(i));
    }
    assert_eq!(complete_lines(&rx.capture).len(), 5);
    let page = wait_for("the backlog on the status page", || {
        let page = status_page(&rx);
        page.contains("catching up 5 batches").then_some(page)
    });
    assert!(page.contains("(0 forwarded)"), "{page}");
}

/// An upstream whose keep-alive connections each take one request: the
/// first is answered 200 (and sent on `answered`), the next one read (and
/// sent on `dropped`) and the connection closed unanswered, as a server
/// whose keep-alive timeout ran out just as a request came.
fn one_request_a_connection_upstream() -> (u16, Rx<Vec<u8>>, Rx<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (answered_tx, answered) = crossbeam_channel::unbounded();
    let (dropped_tx, dropped) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (answered_tx, dropped_tx) = (answered_tx.clone(), dropped_tx.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some(first) = read_request(&mut reader) else {
                    return;
                };
                let mut out = stream;
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
                let _ = answered_tx.send(first.body);
                if let Some(next) = read_request(&mut reader) {
                    let _ = dropped_tx.send(next.body);
                }
            });
        }
    });
    (port, answered, dropped)
}

/// A POST on a kept connection the upstream closes without answering goes
/// again at once on a new one, the upstream never seen "down": until
/// December 6 each such batch waited the backoff, and an upstream closing
/// its connections just after each answer had half the batches fail once.
#[test]
fn a_kept_connection_closed_unanswered_is_retried_at_once_on_a_new_one() {
    let (port, answered, dropped) = one_request_a_connection_upstream();
    let (_dir, rx) = forwarding_to(port);
    let bodies: Vec<Vec<u8>> = (0..3).map(batch).collect();
    for body in &bodies {
        upload(&rx, body);
        let got = answered.recv_timeout(DEADLINE).expect("the batch answered");
        assert_eq!(&got, body);
    }
    // The second and third went first on the connection kept from the
    // answer before: the case is made.
    let tried: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            dropped
                .recv_timeout(DEADLINE)
                .expect("a kept connection tried")
        })
        .collect();
    assert_eq!(tried, bodies[1..]);
    // Every state the headless output noted, to the exit: the retry was
    // not seen as the upstream going down.
    let (_dir, mut rx) = (_dir, rx);
    let states = forward_states_to_the_exit(&mut rx);
    assert!(!states.is_empty(), "no forward note at all");
    assert!(
        !states.iter().any(|s| s.contains("down")),
        "the upstream was shown down: {states:?}"
    );
}

/// Stops `rx` (exit 0) and gives the state of every forward note its
/// headless output printed, in order.
fn forward_states_to_the_exit(rx: &mut Receiver) -> Vec<String> {
    assert!(rx.stop().success());
    let mut states = Vec::new();
    while let Some(note) = rx.stdout_json(DEADLINE) {
        if note.get("forward").is_some() {
            states.push(note["state"].to_string());
        }
    }
    states
}

/// Only a connection kept from an answer is tried again at once: after an
/// answer saying `connection: close`, a POST on its new connection that
/// the upstream drops unanswered is a failure like any other (the target
/// noted down, tried again after the backoff). The upstream answers the
/// first, third, … connection's request and drops the others'.
#[test]
fn a_new_connection_closed_unanswered_is_not_tried_again_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, answered) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(request) = read_request(&mut reader) else {
                continue;
            };
            if n % 2 == 0 {
                let mut out = stream;
                let _ = out.write_all(
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
                );
                let _ = tx.send(request.body);
            }
        }
    });
    let (_dir, mut rx) = forwarding_to(port);
    let bodies: Vec<Vec<u8>> = (0..2).map(batch).collect();
    for body in &bodies {
        upload(&rx, body);
        let got = answered.recv_timeout(DEADLINE).expect("the batch answered");
        assert_eq!(&got, body);
    }
    let states = forward_states_to_the_exit(&mut rx);
    assert!(
        states.iter().any(|s| s.contains("down")),
        "the dropped POST on a new connection was not noted: {states:?}"
    );
}

/// An upstream that answers each batch with `status` and a body it never
/// finishes (`content-length: 100`, `start` sent), holding the
/// connection; sends when each batch arrived.
fn stalling_upstream(
    status: &'static str,
    start: &'static str,
) -> (u16, crossbeam_channel::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if read_request(&mut reader).is_none() {
                    return;
                }
                let _ = tx.send(Instant::now());
                let mut out = stream;
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: 100\r\n\r\n{start}");
                let _ = out.write_all(head.as_bytes());
                // Held until the forwarder gives up on it.
                let _ = reader.read_to_end(&mut Vec::new());
            });
        }
    });
    (port, rx)
}

/// A 2xx whose body never ends counts as delivered once the answer's body
/// has had `ANSWER_BODY_TIMEOUT` (2 s), not the whole request's 30 s: a
/// hostile-upstream probe saw 2 batches a minute go out this way while the
/// device posted 300.
#[test]
fn a_2xx_whose_body_stalls_holds_each_batch_for_seconds_not_the_timeout() {
    let (port, arrived) = stalling_upstream("200 OK", "0123456789");
    let (_dir, rx) = forwarding_to(port);
    for i in 0..3 {
        upload(&rx, &batch(i));
    }
    let at: Vec<Instant> = (0..3)
        .map(|_| arrived.recv_timeout(DEADLINE).expect("a forwarded batch"))
        .collect();
    for pair in at.windows(2) {
        let apart = pair[1] - pair[0];
        assert!(
            apart < Duration::from_secs(10),
            "{apart:?} between two batches"
        );
    }
}

/// A refusal whose body stalls keeps what came of it as its reason (it
/// said "no reason given" once the body's 2 s were up).
#[test]
fn a_refusal_whose_body_stalls_keeps_what_came_as_its_reason() {
    let (port, arrived) = stalling_upstream("401 Unauthorized", "bad forward token");
    let (_dir, rx) = forwarding_to(port);
    upload(&rx, &batch(0));
    arrived.recv_timeout(DEADLINE).expect("a forwarded batch");
    let note = forward_note(&rx, "", |v| v["parked"] != 0);
    let reason = note["last_parked"].as_str().unwrap_or_default();
    assert!(reason.contains("401: bad forward token"), "{note}");
}

/// An upstream busy until a date: its 503's `Retry-After` is an HTTP date
/// 3 s after its own `Date`, and the batch is not tried again before it
/// (the date was ignored, and the retry came after the first backoff,
/// 0.25 s). Answers 200 once tried again; sends when each attempt came.
#[test]
fn a_retry_after_date_is_waited_for() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, arrived) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            while read_request(&mut reader).is_some() {
                let _ = tx.send(Instant::now());
                let reply = if std::mem::take(&mut first) {
                    // A clock a day behind ours: only its own Date tells
                    // how far ahead it means.
                    let date = std::time::SystemTime::now() - Duration::from_secs(86_400);
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\ndate: {}\r\nretry-after: {}\r\ncontent-length: 4\r\n\r\nbusy",
                        httpdate::fmt_http_date(date),
                        httpdate::fmt_http_date(date + Duration::from_secs(3)),
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_string()
                };
                if out.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    let (_dir, rx) = forwarding_to(port);
    upload(&rx, &batch(0));
    let refused = arrived.recv_timeout(DEADLINE).expect("the first attempt");
    let again = arrived
        .recv_timeout(DEADLINE)
        .expect("the batch tried again");
    let apart = again - refused;
    assert!(
        apart >= Duration::from_millis(2_900),
        "tried again after {apart:?}"
    );
    forward_note(&rx, "up", |v| v["forwarded"] == 1);
}

/// A crash between the parked log's line and the cursor's save: the next
/// start sends the batch again, and the upstream refusing it again lists
/// and counts it once (the count shown said 2 while the log listed 1).
#[test]
fn a_batch_parked_again_after_a_crash_is_counted_once() {
    let (dir, mut rx, url, requests) =
        forwarding_to_a_refuser("/logbook/storage", &[&batch(1), NO_AUTH]);
    let capture = dir.path().join("capture.jsonl");
    forward_note(&rx, "", |v| v["parked"] == 1);
    rx.stop();
    // The cursor as the crash left it: past the first batch only.
    let lines = complete_lines(&capture);
    let listed = parked_list(dir.path());
    let cursor = serde_json::json!({"targets": {url.as_str(): {
        "offset": listed[0]["offset"], "last_line": 0, "last_hash": lines[0].batch_hash,
    }}});
    std::fs::write(dir.path().join("capture.jsonl.forward"), cursor.to_string()).unwrap();
    let mut rx = forwarder(&capture, &url, &[]);
    let again = requests
        .recv_timeout(DEADLINE)
        .expect("the batch sent again");
    assert_eq!(again.body, NO_AUTH);
    let note = forward_note(&rx, "", |v| v["pending"] == 0);
    assert_eq!(note["parked"], 1, "{note}");
    rx.stop();
    assert_eq!(parked_list(dir.path()).len(), 1);
    assert!(
        rx.stderr().contains("1 batch(es) parked"),
        "{}",
        rx.stderr()
    );
}

/// A TLS failure names the certificate's names, which the server chose:
/// escape sequences in them (a title change, here) reached the terminal
/// through `replay`'s and `simulate`'s stderr, and anyone's through the
/// status page of a forwarding receiver (found by a probe). They are
/// written as escapes now, wherever the failure is shown.
#[test]
fn certificate_names_a_server_chose_are_shown_never_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let name = "ev\x1b]0;PWNED\x07il\x7f.example";
    let (ca, cert, key) = certificates_for(dir.path(), name);
    let up = upstream(dir.path(), 0);
    let port = https_front(up.addr, &cert, &key);
    let url = format!("https://127.0.0.1:{port}/logbook/storage");
    let raw = |t: &str| t.contains(['\x1b', '\x07', '\x7f']);
    let ca_arg = ca.to_str().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(&capture, &url, &["--forward-ca", ca_arg]);
    upload(&rx, &batch(1));
    let note = forward_note(&rx, "down", |_| true);
    let error = note["error"].as_str().unwrap();
    assert!(
        error.contains(r"ev\u{1b}]0;PWNED\u{7}il\u{7f}.example"),
        "{note}"
    );
    let page = status_page(&rx);
    assert!(page.contains("down since"), "{page}");
    assert!(!raw(&page), "{page}");
    drop(rx);
    for command in [
        &["replay", capture.to_str().unwrap(), "--as-fast-as-possible"][..],
        &["simulate", "--count", "1"],
    ] {
        let out = binary()
            .args(command)
            .args(["--url", &url, "--token", UP_TOKEN, "--ca", ca_arg])
            .args(["--retry-wait", "0", "--timeout", "5"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{command:?}: {said}");
        assert!(said.contains(r"PWNED\u{7}"), "{command:?}: {said}");
        assert!(!raw(&said), "{command:?}: {said}");
    }
}

/// A forward credential is never shown however it comes back (a
/// hostile-upstream probe, December 5): an HTTPS upstream's certificate
/// made out to the token (a TLS failure quotes its names; the token was on
/// the status page, which asks for no token), an MQTT broker's made out to
/// the password, and a refusal echoing the token percent-encoded twice, as
/// a JSON escape outside an `error` field, in base64, and the URL's query.
#[test]
fn a_forward_credential_quoted_back_in_any_spelling_is_never_shown() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = tempfile::tempdir().unwrap();
    let token = "fwdsecret0123456789abcdef";
    // Its last part, looked for alone, is letters: digits such as 4242
    // turn up in a port or a peer's address (CI saw one, December 7).
    let password = "mqttpw-secret-qzjx";
    let (http_dir, mqtt_dir) = (dir.path().join("http"), dir.path().join("mqtt"));
    std::fs::create_dir(&http_dir).unwrap();
    std::fs::create_dir(&mqtt_dir).unwrap();
    let (http_ca, cert, key) = certificates_for(&http_dir, &format!("{token}.example"));
    let (mqtt_ca, mqtt_cert, mqtt_key) =
        certificates_for(&mqtt_dir, &format!("{password}.benchuser77.example"));
    // Both CAs trusted: each failure is the name's, quoting it.
    let ca = dir.path().join("cas.pem");
    let both =
        std::fs::read_to_string(&http_ca).unwrap() + &std::fs::read_to_string(&mqtt_ca).unwrap();
    std::fs::write(&ca, both).unwrap();
    let up = upstream(dir.path(), 0);
    let https = https_front(up.addr, &cert, &key);
    let mqtts = https_front(up.addr, &mqtt_cert, &mqtt_key);
    let capture = dir.path().join("capture.jsonl");
    let mut rx = Receiver::spawn(
        binary()
            .env("AUTOPI_RX_FORWARD_TOKEN", token)
            .env("AUTOPI_RX_MQTT_USERNAME", "benchuser77")
            .env("AUTOPI_RX_MQTT_PASSWORD", password)
            .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &format!("https://127.0.0.1:{https}/in")])
            .args(["--forward", &format!("mqtts://127.0.0.1:{mqtts}/fleet")])
            .args(["--forward-ca", ca.to_str().unwrap()]),
    );
    upload(&rx, &batch(1));
    let shown = |t: &str| {
        t.contains(token) || t.contains(password) || t.contains(&b64(token)) || t.contains("qzjx")
    };
    // Each target's first note of being down, in whichever order they come.
    let mut down = std::collections::BTreeMap::new();
    while down.len() < 2 {
        let note = forward_note(&rx, "down", |v| {
            !down.contains_key(&v["forward"].as_str().unwrap_or("")[..5])
        });
        let target = note["forward"].as_str().unwrap()[..5].to_string();
        down.insert(target, note);
    }
    for note in down.values() {
        let error = note["error"].as_str().unwrap();
        assert!(!shown(error), "{note}");
        assert!(
            error.contains(".example"),
            "the names are still said: {note}"
        );
    }
    let page = status_page(&rx);
    assert!(page.contains("[forward token].example"), "{page}");
    // The username is a name, not a secret: shown.
    assert!(
        page.contains("[mqtt password].benchuser77.example"),
        "{page}"
    );
    assert!(!shown(&page), "{page}");
    rx.stop();
    assert!(!shown(&rx.stderr()));
    assert!(!shown(&rx.remaining_stdout().join("\n")));
    drop(up);

    // An upstream echoing the token and the query in a refusal.
    let secret = "Fw0rdT0ken/Secret+xyz9876";
    // A signature written percent-encoded in the URL, quoted as the
    // upstream read it (a review found such a key on the status page).
    let query = "key=QUERYSECRET42&sig=SIGN%2BAT%2FURE%3D99";
    let echo = format!(
        r#"{{"headers":{{"authorization":"token Fw0rdT0ken/Secret\u002Bxyz9876","basic":"{}"}},"url":"/in?{query}","twice":"Fw0rdT0ken%252FSecret%252Bxyz9876","key":"QUERYSECRET42","sig":"SIGN+AT/URE=99","msg":"bad key%3DQUERYSECRET42 %1B]0;PWNED%07"}}"#,
        b64(&format!("token {secret}"))
    );
    let answer = format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{echo}",
        echo.len()
    );
    let refuser = ScriptedServer::start(vec![Scripted::Answer(answer.into_bytes())]);
    let capture = dir.path().join("echoed.jsonl");
    let mut rx = Receiver::spawn(
        binary()
            .env("AUTOPI_RX_FORWARD_TOKEN", secret)
            .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &format!("{}in?{query}", refuser.url)]),
    );
    upload(&rx, &batch(2));
    let note = forward_note(&rx, "", |v| v["parked"] != 0);
    let shown = |t: &str| {
        t.contains("Fw0rd")
            || t.contains("xyz9876")
            || t.contains("QUERYSECRET")
            || t.contains("URE=99")
            || t.contains(&b64(&format!("token {secret}")))
    };
    let reason = note["last_parked"].as_str().unwrap();
    assert!(reason.starts_with("401: "), "{note}");
    assert!(reason.contains("[forward token]"), "{note}");
    assert!(!shown(reason), "{note}");
    let page = status_page(&rx);
    assert!(!shown(&page), "{page}");
    // What decoding made of `%1B` is shown as the rest of a reason is,
    // never obeyed.
    assert!(!page.contains('\x1b') && !reason.contains('\x1b'), "{page}");
    rx.stop();
    let log = std::fs::read_to_string(dir.path().join("echoed.jsonl.forward.parked")).unwrap();
    assert!(log.contains("[forward token]"), "{log}");
    assert!(!shown(&log), "{log}");
    assert!(!shown(&rx.stderr()));
    assert!(!shown(&rx.remaining_stdout().join("\n")));
}

/// A large batch reaches an upstream that takes it slowly but steadily: one
/// timeout for the whole POST (30 s) never let a 3 MB batch reach an
/// upstream taking 64 KiB a second, tried again for ever with every later
/// batch waiting behind it, the upstream given the whole batch at each try
/// (a hostile-upstream probe, December 5). Here at `--forward-timeout 2`,
/// a 400 kB batch taken at 64 KiB a second (about 6 s), and small ones
/// after it: each delivered once, in order.
#[test]
fn a_large_batch_reaches_an_upstream_that_takes_it_slowly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (got, bodies) = crossbeam_channel::unbounded::<usize>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::with_capacity(1024, stream.try_clone().unwrap());
                let mut out = stream;
                while let Some((_, length)) = read_head(&mut reader) {
                    // A slow link: 16 KiB each quarter of a second.
                    let mut body = vec![0u8; length];
                    for piece in body.chunks_mut(16 * 1024) {
                        if reader.read_exact(piece).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    let _ = got.send(length);
                    if out
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let rx = forwarder(
        &capture,
        &format!("http://127.0.0.1:{port}/in"),
        &["--forward-timeout", "2"],
    );
    let records: Vec<String> = (0..2_000)
        .map(|i| {
            format!(
                r#"{{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":{i},"pad":"{}"}}"#,
                "x".repeat(150)
            )
        })
        .collect();
    let large = format!("[{}]", records.join(","));
    assert!(large.len() > 350_000);
    upload(&rx, large.as_bytes());
    upload(&rx, &batch(1));
    upload(&rx, &batch(2));
    let first = bodies
        .recv_timeout(DEADLINE)
        .expect("the large batch taken");
    assert_eq!(first, large.len());
    for _ in 0..2 {
        let small = bodies
            .recv_timeout(DEADLINE)
            .expect("the small ones after it");
        assert!(small < 1_000, "{small}");
    }
    let note = forward_note(&rx, "up", |v| v["forwarded"] == 3);
    assert_eq!(note["pending"], 0, "{note}");
    // Nothing was sent twice.
    assert!(bodies.recv_timeout(Duration::from_millis(500)).is_err());
}

//! Hostile and unlucky clients: absurd lengths, stalled and cut-short
//! uploads, a second receiver on the same file, and shutdown while an upload
//! hangs.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use common::*;

fn status_page(rx: &Receiver) -> String {
    Conn::open(rx.addr)
        .request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .text()
}

/// Opens an authorised upload whose body never comes, and returns once a
/// worker has taken it ("100 Continue" is sent when it starts reading).
fn stalled_upload(rx: &Receiver) -> TcpStream {
    let mut s = TcpStream::connect(rx.addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 25];
    s.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 100 Continue"));
    s
}

#[test]
fn absurd_content_length_is_answered_and_the_receiver_lives_on() {
    let rx = Receiver::start(&[]);
    for (auth, expected) in [(None, 401), (Some(format!("token {TOKEN}")), 413)] {
        let mut s = TcpStream::connect(rx.addr).unwrap();
        let mut req =
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775807\r\n".to_string();
        if let Some(a) = &auth {
            req.push_str(&format!("authorization: {a}\r\n"));
        }
        req.push_str("\r\n[]");
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, format!("HTTP/1.1 {expected}").as_bytes());
        drop(s);
        assert!(
            status_page(&rx).contains("uptime"),
            "still serving after {expected}"
        );
    }
    assert_eq!(rx.upload(b"[]").status, 200);
}

#[test]
fn a_body_cut_short_is_refused_not_saved() {
    let mut rx = Receiver::start(&[]);
    let mut s = TcpStream::connect(rx.addr).unwrap();
    write!(s, "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nContent-Length: 2000\r\n\r\n[]").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("ended after 2 of the 2000 bytes"),
        "{answer}"
    );
    rx.stop();
    assert!(rx.capture_lines().is_empty());
}

/// A body that stops coming is answered 400 after the read timeout,
/// saying so and how much came (it said "Resource temporarily
/// unavailable (os error 11)" until a hostile-client probe found it); the
/// same for a client that asked for "100 Continue" and sent nothing.
#[test]
fn a_body_that_stops_coming_is_answered_saying_so() {
    let mut rx = Receiver::start(&["--read-timeout", "1"]);
    // A regression fails here rather than hangs.
    let within = Some(std::time::Duration::from_secs(10));
    let mut s = TcpStream::connect(rx.addr).unwrap();
    s.set_read_timeout(within).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nContent-Length: 5000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[b' '; 1500]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(
            "the body stopped coming: nothing came for 1 s (the read timeout) \
             after 1500 bytes of the 5000 bytes its Content-Length announced"
        ),
        "{answer}"
    );
    let mut s = stalled_upload(&rx);
    s.set_read_timeout(within).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("after 0 bytes of the 5000"), "{answer}");
    rx.stop();
    assert!(rx.capture_lines().is_empty());
}

/// A chunked upload is refused 411 before its body is read, saying how
/// to send it instead, and its connection is closed; nothing is saved.
/// (Until December 8 chunked bodies were decoded, and one whose framing
/// broke was refused 400 after it was read.)
#[test]
fn a_chunked_upload_is_refused_411_saying_how_to_send_it() {
    let mut rx = Receiver::start(&[]);
    let mut s = TcpStream::connect(rx.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
    )
    .unwrap();
    // No shutdown of our side: the receiver closes the connection itself.
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(
        answer.contains("send the body with Content-Length") && answer.contains("--data-binary"),
        "{answer}"
    );
    rx.stop();
    assert!(rx.capture_lines().is_empty());
}

/// A second `Authorization` (or `unit-id`) header is refused 400, in
/// either order, and nothing is saved: the first used to win silently.
#[test]
fn a_header_read_once_given_twice_is_refused() {
    let mut rx = Receiver::start(&[]);
    let good = format!("token {TOKEN}");
    let body = br#"[{"@t":"a","@ts":"2026-12-04T01:00:00"}]"#;
    for headers in [
        [
            ("authorization", good.as_str()),
            ("authorization", "token wrong"),
        ],
        [
            ("authorization", "token wrong"),
            ("authorization", good.as_str()),
        ],
        [("authorization", good.as_str()), ("unit-id", "a")],
    ] {
        let mut all = headers.to_vec();
        if headers[1].0 == "unit-id" {
            all.push(("unit-id", "b"));
        }
        let r = rx.post(&all, body);
        assert_eq!(r.status, 400, "{all:?}: {}", r.text());
        assert!(r.text().contains("given more than once"), "{}", r.text());
    }
    assert_eq!(rx.upload(body).status, 200);
    rx.stop();
    assert_eq!(rx.capture_lines().len(), 1);
}

#[test]
fn stalled_uploads_do_not_starve_the_others() {
    let rx = Receiver::start(&["--workers", "1"]);
    let _stalled: Vec<TcpStream> = (0..3).map(|_| stalled_upload(&rx)).collect();
    // Every worker is stuck reading a body that never comes; a fresh one is
    // added each time, so this upload is still answered.
    assert_eq!(rx.upload(b"[]").status, 200);
}

#[test]
fn a_second_signal_exits_at_once_when_an_upload_hangs() {
    let mut rx = Receiver::start(&[]);
    let _stalled = stalled_upload(&rx);
    signal(&rx.child, "TERM");
    rx.wait_stderr("signal again to exit now");
    signal(&rx.child, "TERM");
    assert_eq!(rx.child.wait().unwrap().code(), Some(1));
    rx.wait_stderr("second signal");
}

/// While the shutdown waits for an upload in flight, new connections are
/// refused: until December 6 one was accepted by a server nobody read any
/// more and left unanswered until the process exited (up to the 15 s
/// grace), where a device is better told at once. The upload in flight is
/// still answered and saved, and the receiver then exits 0.
#[test]
fn while_it_stops_new_connections_are_refused_and_the_upload_in_flight_is_saved() {
    use std::time::Duration;
    let mut rx = Receiver::start(&[]);
    let mut stalled = stalled_upload(&rx);
    signal(&rx.child, "TERM");
    rx.wait_stderr("signal again to exit now");
    // The listener stops once the shutdown has begun, a moment after the
    // line: until then connections are still taken (and let go here).
    let mut refused = None;
    let stopped = wait_until(Duration::from_secs(10), || {
        refused = TcpStream::connect(rx.addr).err();
        refused.is_some()
    });
    assert!(stopped, "connections still accepted 10 s into the shutdown");
    let refused = refused.unwrap();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    let mut body = b"[]".to_vec();
    body.resize(5000, b' ');
    stalled.write_all(&body).unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.contains(" 200 "), "{answer}");
    let (status, _) = rx.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert_eq!(rx.capture_lines().len(), 1);
}

/// Headless, with stdout a pipe nobody reads (a `| less` left alone): once
/// the pipe is full the printer blocks in its write, and a signal must
/// still stop the receiver, a second one at once, a first one after the
/// shutdown grace. Until December 6 it waited for the printer for ever,
/// deaf to signals (a hostile-client probe had to `kill -9` it).
#[test]
fn a_signal_stops_it_while_nobody_reads_stdout() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    for signals in [2, 1] {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        let mut child = Reaped(
            binary()
                .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
                .args(["--listen", "127.0.0.1:0", "--headless"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Held, never read.
        let _stdout = child.0.stdout.take().unwrap();
        let mut err = std::io::BufReader::new(child.0.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "no listening line");
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                break a.parse().unwrap();
            }
        };
        // Each printed event is several hundred bytes: far more than a
        // pipe holds (64 KiB).
        let mut conn = Conn::open(addr);
        for n in 0..600 {
            let body = format!(r#"[{{"@t":"filler","@ts":"2026-12-02T01:00:00","n":{n}}}]"#);
            let auth = format!("token {TOKEN}");
            let r = conn.request(&request_bytes(
                "POST",
                &[("authorization", &auth)],
                body.as_bytes(),
            ));
            assert_eq!(r.status, 200);
        }
        drop(conn);
        let asked = Instant::now();
        signal(&child.0, "TERM");
        if signals == 2 {
            // The second once the shutdown is done, while the printer is
            // waited for: the capture is closed then, and with it its lock.
            let closed = wait_until(Duration::from_secs(5), || {
                std::fs::File::open(&capture).is_ok_and(|f| f.try_lock().is_ok())
            });
            assert!(closed, "the capture still open after a signal");
            signal(&child.0, "TERM");
        }
        let limit = if signals == 2 {
            Duration::from_secs(5)
        } else {
            autopi_rx::run::SHUTDOWN_GRACE + Duration::from_secs(10)
        };
        let exited = wait_until(limit, || child.0.try_wait().unwrap().is_some());
        assert!(exited, "{signals} signal(s): still running {limit:?} after");
        let mut said = String::new();
        let _ = err.read_to_string(&mut said);
        println!(
            "{signals} signal(s): exited after {:?}: {said}",
            asked.elapsed()
        );
        let want = if signals == 2 {
            "second signal: exiting without printing"
        } else {
            "stdout did not take the last request events"
        };
        assert!(said.contains(want), "{said}");
        assert_eq!(
            capture_lines(&capture).len(),
            600,
            "the capture has every batch"
        );
    }
}

#[test]
fn a_capture_file_in_use_is_refused() {
    let rx = Receiver::start(&[]);
    let out = binary()
        .args([
            "--token",
            TOKEN,
            "--listen",
            "127.0.0.1:0",
            "--headless",
            "--capture",
        ])
        .arg(&rx.capture)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another autopi-rx"), "{err}");
    // The first one still works.
    assert_eq!(rx.upload(b"[]").status, 200);
}

#[test]
fn no_auth_ignores_a_token_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let rx = Receiver::spawn(binary().env("AUTOPI_RX_TOKEN", "set-in-my-shell").args([
        "--no-auth",
        "--capture",
        capture.to_str().unwrap(),
    ]));
    assert_eq!(rx.post(&[], b"[]").status, 200);
}

#[test]
fn max_body_out_of_range_is_a_usage_error() {
    for value in ["0", "18446744073709551615", "lots"] {
        let out = binary()
            .args(["--token", "t", "--max-body", value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{value}");
    }
}

#[test]
fn long_json_errors_are_cut_but_keep_the_position() {
    let rx = Receiver::start(&[]);
    let long = "x".repeat(100_000);
    let r = rx.upload(format!("[\"{long}\"]").as_bytes());
    assert_eq!(r.status, 400);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.len() < 600, "{} chars", error.len());
    assert!(
        error.contains("(cut)") && error.contains("line 1 column"),
        "{error}"
    );
}

/// How tiny_http met the descriptor limit, as the receiver reported it.
#[derive(Debug, PartialEq)]
enum Ran {
    /// `accept` failed: tiny_http hands the error to `recv`.
    OutOnAccept,
    /// `accept` worked but cloning the socket failed: tiny_http's accept
    /// thread panics (tiny-http#195).
    OutOnClone,
}

/// Runs the receiver under a hard descriptor limit it cannot raise and
/// holds idle connections until it runs out: it must say so in one clear
/// line (no raw panic), keep running, and recover by itself once the read
/// timeout has closed the idle connections, whichever way tiny_http met
/// the limit: a device's upload queued behind them is acknowledged.
fn out_of_descriptors_at(limit: u32) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx = limited_receiver(&format!("ulimit -n {limit}"), "", &capture, "1");
    let held: Vec<TcpStream> = (0..limit)
        .map(|_| TcpStream::connect(rx.addr).unwrap())
        .collect();
    let line = rx.wait_stderr("accepting connections failed");
    assert!(line.contains("ulimit -n"), "{line}");
    // A connection tiny_http accepted just as descriptors ran out may be
    // closed unanswered: the device sends again, as it would next cycle.
    let tries = upload_until_acknowledged(rx.addr, b"[]");
    assert_eq!(tries.last(), Some(&200), "{tries:?} {}", rx.stderr());
    assert!(
        rx.child.try_wait().unwrap().is_none(),
        "the receiver exited"
    );
    drop(held);
    let stderr = rx.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(rx.stop().code(), Some(0));
    assert_eq!(
        capture_lines(&capture).len(),
        1,
        "tries: {tries:?}\n{stderr}"
    );
    if line.contains("accept thread failed") {
        Ran::OutOnClone
    } else {
        Ran::OutOnAccept
    }
}

/// Each accepted connection costs tiny_http two descriptors (the socket
/// and its clone), so the number of free ones decides which call runs
/// out. That number depends on what the receiver inherited, so limits are
/// raised one by one until both ways have been seen.
#[test]
fn out_of_descriptors_it_says_so_keeps_running_and_recovers_either_way() {
    common::until_both_ways(64..96, out_of_descriptors_at);
}

/// The capture file deleted, then replaced, while the receiver runs: each
/// time it says so on stderr and the next batch lands in a file at the
/// path; no batch is acknowledged that is only in an unlinked file.
#[test]
fn a_capture_deleted_or_replaced_while_running_is_started_again_at_its_path() {
    let mut rx = Receiver::start(&[]);
    assert_eq!(
        rx.upload(br#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#)
            .status,
        200
    );
    std::fs::remove_file(&rx.capture).unwrap();
    assert_eq!(
        rx.upload(br#"[{"@t":"b","@ts":"2026-11-27T08:00:01"}]"#)
            .status,
        200
    );
    let said = rx.wait_stderr("was deleted or moved away while running");
    assert!(said.contains(rx.capture.to_str().unwrap()), "{said}");
    let lines = capture_lines(&rx.capture);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["records"][0]["@t"], "b");
    // Replaced (as an editor or a rotation would): the old inode is moved
    // away and a new file takes the path, here one whose last line has no
    // line end (the next line was glued to it).
    let moved = rx.capture.with_extension("old");
    std::fs::rename(&rx.capture, &moved).unwrap();
    std::fs::write(&rx.capture, br#"{"note":"by hand"}"#).unwrap();
    assert_eq!(
        rx.upload(br#"[{"@t":"c","@ts":"2026-11-27T08:00:02"}]"#)
            .status,
        200
    );
    rx.wait_stderr("was replaced by another file");
    let lines = capture_lines(&rx.capture);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["note"], "by hand");
    assert_eq!(lines[1]["records"][0]["@t"], "c");
    assert_eq!(capture_lines(&moved).len(), 1, "the moved file keeps b");
    // Replaced by a pipe nobody reads (every upload hung once it was
    // full), then by a link to /dev/null (every upload acknowledged and
    // thrown away): 503 and said, nothing saved, until a file is back.
    std::fs::remove_file(&rx.capture).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&rx.capture)
        .status()
        .unwrap();
    assert!(made.success());
    let big = format!(
        r#"[{{"@t":"d","@ts":"2026-11-27T08:00:03","pad":"{}"}}]"#,
        "x".repeat(200_000)
    );
    assert_eq!(rx.upload(big.as_bytes()).status, 503);
    rx.wait_stderr("no longer names a file");
    // The status page says so while it lasts.
    let page = status_page(&rx);
    assert!(
        page.contains("capture NOT SAVING since ") && page.contains("no longer names a file"),
        "{page}"
    );
    std::fs::remove_file(&rx.capture).unwrap();
    std::os::unix::fs::symlink("/dev/null", &rx.capture).unwrap();
    assert_eq!(rx.upload(big.as_bytes()).status, 503);
    std::fs::remove_file(&rx.capture).unwrap();
    assert_eq!(
        rx.upload(br#"[{"@t":"e","@ts":"2026-11-27T08:00:04"}]"#)
            .status,
        200
    );
    // Said once for the bout, not once per refused upload; the notice of
    // the new file comes after it.
    rx.wait_stderr("was deleted or moved away");
    assert_eq!(rx.stderr().matches("capture not writable").count(), 1);
    let lines = capture_lines(&rx.capture);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["records"][0]["@t"], "e");
    assert!(!status_page(&rx).contains("NOT SAVING"));
    assert_eq!(rx.stop().code(), Some(0));
}

/// The capture's folder moved away while running (`mv captures old`):
/// the folder is made again and the next batch saved there, where every
/// upload was answered 503 until someone made it (a hostile-client probe).
#[test]
fn a_capture_whose_folder_is_moved_away_is_started_again_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("captures");
    std::fs::create_dir(&folder).unwrap();
    let capture = folder.join("c.jsonl");
    let mut rx = Receiver::spawn(binary().args(["--token", TOKEN, "--capture"]).arg(&capture));
    rx.capture = capture.clone();
    assert_eq!(
        rx.upload(br#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#)
            .status,
        200
    );
    let moved = dir.path().join("old");
    std::fs::rename(&folder, &moved).unwrap();
    assert_eq!(
        rx.upload(br#"[{"@t":"b","@ts":"2026-11-27T08:00:01"}]"#)
            .status,
        200
    );
    rx.wait_stderr("in its folder made again");
    let lines = capture_lines(&capture);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["records"][0]["@t"], "b");
    let kept = capture_lines(&moved.join("c.jsonl"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["records"][0]["@t"], "a");
    assert_eq!(rx.stop().code(), Some(0));
}

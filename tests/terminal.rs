//! The dashboard in a real pseudo-terminal: the real binary draws into a
//! pty, and a terminal emulator (vt100) turns what it wrote into the
//! screen a user would see. Checks what snapshot tests cannot: the
//! listening line before the UI, nothing else written while it is up, the
//! terminal given back (main screen, cooked mode) on quit and on a fatal
//! error, the token never on the terminal, and `--headless | head -2`
//! ending the receiver once `head` is gone.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use common::{TOKEN, cut_short_in_place, post, samples};
use crossbeam_channel::{Receiver, RecvTimeoutError, unbounded};
use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtySize, native_pty_system};

const WAIT: Duration = Duration::from_secs(20);
const ENTER_ALT: &[u8] = b"\x1b[?1049h";
const LEAVE_ALT: &[u8] = b"\x1b[?1049l";

/// The binary running in a 120×40 pty, and everything it wrote there.
struct Tty {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    output: Receiver<Vec<u8>>,
    raw: Vec<u8>,
    screen: vt100::Parser,
    _dir: tempfile::TempDir,
}

impl Tty {
    /// Runs `autopi-rx ARGS` (through `sh -c PREFIX exec ...` when a
    /// prefix is given) on its own terminal.
    fn start(prefix: &str, args: &[&str]) -> Tty {
        Tty::start_script(&format!("{prefix} exec \"$0\" \"$@\""), args)
    }

    /// Runs the shell `script` on its own terminal, with `$0` the binary
    /// and `$@` its arguments (a capture in a fresh directory, then ARGS).
    fn start_script(script: &str, args: &[&str]) -> Tty {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--capture",
            capture.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Tty::launch(dir, script, &all)
    }

    /// Runs the receiver with the sample token on its own terminal,
    /// capturing to `capture` (a file under `dir`).
    fn receiving(dir: tempfile::TempDir, capture: &std::path::Path) -> Tty {
        let capture = capture.to_str().unwrap();
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--capture",
            capture,
            "--token",
            TOKEN,
        ];
        Tty::launch(dir, "exec \"$0\" \"$@\"", &args)
    }

    /// Runs the shell `script` (`$0` the binary, `$@` exactly ARGS) on its
    /// own terminal, in `dir`.
    fn launch(dir: tempfile::TempDir, script: &str, args: &[&str]) -> Tty {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal (is /dev/ptmx available?)");
        let mut cmd = CommandBuilder::new("sh");
        cmd.arg("-c");
        cmd.arg(script);
        cmd.arg(env!("CARGO_BIN_EXE_autopi-rx"));
        for a in args {
            cmd.arg(a);
        }
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("AUTOPI_RX_TOKEN");
        cmd.env_remove("NO_COLOR");
        cmd.cwd(dir.path());
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let (tx, output) = unbounded();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends at EOF or EIO, once the child and its pty side are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        let writer = pty.master.take_writer().unwrap();
        Tty {
            master: pty.master,
            writer,
            child,
            output,
            raw: Vec::new(),
            screen: vt100::Parser::new(
                NonZeroU16::new(40).unwrap(),
                NonZeroU16::new(120).unwrap(),
                0,
            ),
            _dir: dir,
        }
    }

    /// Takes in one chunk of output; the token must never be on the
    /// screen, however it was drawn.
    fn take(&mut self, chunk: &[u8]) {
        self.screen.process(chunk);
        self.raw.extend_from_slice(chunk);
        assert!(
            !self.contents().contains(TOKEN),
            "the token is on the screen:\n{}",
            self.contents()
        );
    }

    /// Reads what the binary wrote until `done` holds for it.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Tty) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.take(&chunk),
                Err(_) => panic!(
                    "no {what} on the terminal; it shows:\n{}\nraw tail: {:?}",
                    self.contents(),
                    String::from_utf8_lossy(&self.raw[self.raw.len().saturating_sub(600)..])
                ),
            }
        }
    }

    /// Reads output until `done` holds or a short while has passed.
    fn wait_for_a_while(&mut self, _what: &str, done: impl Fn(&Tty) -> bool) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.take(&chunk),
                Err(_) => return,
            }
        }
    }

    /// Everything written so far, as text.
    fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn wait_screen(&mut self, text: &str) {
        self.wait_for(text, |t| t.contents().contains(text));
    }

    /// Everything written before the dashboard took the screen, as text.
    fn before_ui(&self) -> String {
        let end = find(&self.raw, ENTER_ALT).unwrap_or(self.raw.len());
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }

    fn contents(&self) -> String {
        self.screen.screen().contents()
    }

    /// The address from the `listening on` line printed before the UI.
    fn addr(&mut self) -> SocketAddr {
        self.wait_for("listening line", |t| {
            let text = t.before_ui();
            text.find("listening on http://")
                .is_some_and(|at| text[at..].contains('\n'))
        });
        let text = self.before_ui();
        let line = text.lines().find(|l| l.contains("listening on")).unwrap();
        let at = line.find("http://").unwrap() + "http://".len();
        line[at..].trim().parse().unwrap()
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the process to end and for the last of its output (the
    /// reader ends once the pty is closed); its exit status.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.take(&chunk),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "still running ({:?}, threads {:?}):\n{}",
                    self.child.try_wait(),
                    self.child.process_id().map(|pid| std::fs::read_dir(format!(
                        "/proc/{pid}/task"
                    ))
                    .map(|d| d
                        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                        .collect::<Vec<_>>())),
                    self.contents()
                ),
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.signal().is_none(), "killed by {status:?}");
        status
    }

    /// Whether the terminal is back in cooked mode with echo.
    fn cooked(&self) -> bool {
        use nix::sys::termios::LocalFlags;
        let termios = self.master.get_termios().expect("the pty's settings");
        termios
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }

    /// Bytes written between the UI taking the screen and giving it back.
    fn during_ui(&self) -> &[u8] {
        let start = find(&self.raw, ENTER_ALT).expect("the UI took the screen");
        let end = find(&self.raw[start..], LEAVE_ALT).map_or(self.raw.len(), |e| start + e);
        &self.raw[start..end]
    }

    /// Text written after the UI gave the screen back, without the
    /// control sequences (showing the cursor again, say).
    fn after_ui(&self) -> String {
        let end = rfind(&self.raw, LEAVE_ALT).expect("the UI gave the screen back");
        let mut text = String::new();
        let mut rest = String::from_utf8_lossy(&self.raw[end + LEAVE_ALT.len()..]).into_owned();
        while let Some(at) = rest.find("\x1b[") {
            text.push_str(&rest[..at]);
            let args = &rest[at + 2..];
            // A CSI sequence ends with its first byte in @..~.
            let len = args
                .find(|c: char| ('@'..='~').contains(&c))
                .map_or(args.len(), |i| i + 1);
            rest = args[len..].to_string();
        }
        text + &rest
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle.as_bytes()).is_some()
}

#[test]
fn the_dashboard_draws_in_a_terminal_and_gives_it_back_on_quit() {
    let mut tty = Tty::start("", &["--token", TOKEN]);
    let addr = tty.addr();
    assert!(tty.before_ui().contains("capture: "), "{}", tty.before_ui());
    tty.wait_screen("Position");

    let body = std::fs::read(samples().join("guide-examples/track-pos.json")).unwrap();
    let auth = format!("token {TOKEN}");
    let ok = post(addr, &[("authorization", &auth)], &body);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused = post(addr, &[("authorization", "token not-the-token")], &body);
    assert_eq!(refused.status, 401);
    // The fix, as the engineer reads it, with the rejected upload counted.
    tty.wait_screen("57.022410°");
    tty.wait_screen("rejected 1");

    // The requests tab follows the newest (the 401); one up is the
    // accepted upload, whose detail shows the authorization redacted.
    tty.press("2");
    tty.wait_screen("Enter opens");
    tty.press("k");
    tty.press("\r");
    tty.wait_screen("matches a configured token: yes");
    tty.wait_screen("authorization: token [redacted, fingerprint");
    tty.press("q");
    let status = tty.exit();
    assert_eq!(status.exit_code(), 0);

    let ui = tty.during_ui();
    assert!(
        !contains(ui, "listening on"),
        "the listening line came again"
    );
    // What the headless printer, warnings and panics would have written.
    assert!(!contains(ui, "\"status\":"), "a JSON line on the dashboard");
    assert!(!contains(ui, "autopi-rx:"), "a message on the dashboard");
    assert!(!contains(&tty.raw, "panicked"), "a panic on the terminal");
    assert!(!contains(&tty.raw, TOKEN), "the token reached the terminal");
    assert!(!tty.screen.screen().alternate_screen());
    assert!(tty.cooked(), "raw mode left on");
    assert!(tty.after_ui().trim().is_empty(), "{:?}", tty.after_ui());
}

/// Under a hard descriptor limit the receiver cannot raise, with room for
/// the dashboard to start, idle connections use the rest up. Whichever way
/// tiny_http meets the limit, the dashboard stays up, an upload queued
/// behind them shows once the read timeout has freed descriptors, and the
/// reason is printed after the terminal is given back; returns whether the
/// accept thread panicked.
fn out_of_descriptors_under_the_dashboard(limit: u32) -> bool {
    let mut tty = Tty::start(
        &format!("ulimit -n {limit} &&"),
        &["--token", TOKEN, "--read-timeout", "1"],
    );
    let addr = tty.addr();
    tty.wait_screen("Position");
    let held: Vec<std::net::TcpStream> = (0..limit)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let body = std::fs::read(samples().join("guide-examples/track-pos.json")).unwrap();
    let tries = common::upload_until_acknowledged(addr, &body);
    assert_eq!(tries.last(), Some(&200), "{tries:?}");
    tty.wait_screen("57.022410°");
    drop(held);
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    let after = tty.after_ui();
    assert!(
        after.contains("accepting connections failed") && after.contains("ulimit -n"),
        "{after:?}"
    );
    assert!(!contains(&tty.raw, "panicked"), "{after:?}");
    assert!(!contains(tty.during_ui(), "autopi-rx:"));
    assert!(!tty.screen.screen().alternate_screen());
    assert!(tty.cooked(), "raw mode left on");
    after.contains("accept thread failed")
}

/// Which call runs out (`accept`, or tiny_http's clone of the socket,
/// which panics its accept thread) depends on how many descriptors are
/// free, so limits are raised one by one until both ways have been seen.
#[test]
fn out_of_descriptors_under_the_dashboard_it_recovers_and_says_why_after() {
    common::until_both_ways(64..96, out_of_descriptors_under_the_dashboard);
}

/// `--headless | head -2`: once `head` has its two lines and is gone, the
/// receiver ends as on Ctrl-C (requests in flight finished, capture
/// flushed, exit 0) instead of running on with nowhere to print.
#[test]
fn headless_ends_when_its_reader_goes_away() {
    let mut tty = Tty::start_script(
        r#"("$0" "$@"; echo "receiver exited with $?" >&2) | head -2"#,
        &["--headless", "--no-auth"],
    );
    let addr = tty.addr();
    let body = std::fs::read(samples().join("guide-examples/track-pos.json")).unwrap();
    // head leaves after two lines; the first write after that fails. How
    // many posts that takes depends on when head exits, so post until the
    // receiver is gone (a bounded number of times).
    let mut posts = 0;
    while !tty.raw_text().contains("receiver exited") {
        assert!(posts < 50, "still running after {posts} uploads");
        let answer = post(addr, &[], &body);
        assert_eq!(answer.status, 200, "{}", answer.text());
        posts += 1;
        if posts >= 2 {
            tty.wait_for_a_while("the receiver to exit", |t| {
                t.raw_text().contains("receiver exited")
            });
        }
    }
    tty.exit();
    let text = tty.raw_text();
    assert!(text.contains("receiver exited with 0"), "{text}");
    assert_eq!(text.matches("\"status\":200").count(), 2, "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A receiver started on a capture that already holds a session shows
/// that session at once (and goes on counting from there).
#[test]
fn a_restarted_receiver_shows_the_session_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("earlier.jsonl");
    let mut rx = common::Receiver::spawn(common::binary().args([
        "--token",
        TOKEN,
        "--capture",
        earlier.to_str().unwrap(),
    ]));
    let body = std::fs::read(samples().join("batch-1000-naive.json")).unwrap();
    let auth = format!("token {TOKEN}");
    let fix = std::fs::read(samples().join("guide-examples/track-pos.json")).unwrap();
    for (unit, body) in [
        ("ee3df171ff0f6209a3dbaa00b00e1d05", &body),
        ("0123456789abcdef0123456789abcdef", &fix),
    ] {
        let r = rx.post(&[("authorization", &auth), ("unit-id", unit)], body);
        assert_eq!(r.status, 200);
    }
    let again = rx.post(
        &[
            ("authorization", &auth),
            ("unit-id", "ee3df171ff0f6209a3dbaa00b00e1d05"),
        ],
        &body,
    );
    assert_eq!(again.json()["duplicate"], true);
    assert!(rx.stop().success());

    let copy = format!("cp '{}' c.jsonl &&", earlier.display());
    let mut tty = Tty::start(&copy, &["--token", TOKEN]);
    let addr = tty.addr();
    tty.wait_screen("batches 3 · records 1,001 · duplicates 1");
    // The picker lists both devices, the session's, loaded from the file.
    tty.wait_screen("ee3d…1d05");
    tty.wait_screen("0123…cdef");
    let battery = std::fs::read(samples().join("guide-examples/obd-bat.json")).unwrap();
    let r = post(
        addr,
        &[
            ("authorization", &auth),
            ("unit-id", "aaaa0000aaaa0000aaaa0000aaaa0000"),
        ],
        &battery,
    );
    assert_eq!(r.status, 200);
    tty.wait_screen("batches 4 · records 1,002");
    tty.wait_screen("aaaa…0000");
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
}

/// `autopi-rx view` on a terminal: the dashboard over a capture with its
/// timeline, no listener, the keys moving the cursor, the terminal given
/// back on q.
#[test]
fn view_shows_a_capture_with_its_timeline_and_no_listener() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("earlier.jsonl");
    let mut rx = common::Receiver::spawn(common::binary().args([
        "--token",
        TOKEN,
        "--capture",
        capture.to_str().unwrap(),
    ]));
    let auth = format!("token {TOKEN}");
    for name in ["track-pos", "obd-bat", "ec2x-data-usage"] {
        let body = std::fs::read(samples().join(format!("guide-examples/{name}.json"))).unwrap();
        assert_eq!(rx.post(&[("authorization", &auth)], &body).status, 200);
    }
    assert!(rx.stop().success());
    let path = capture.to_str().unwrap().to_string();
    let mut tty = Tty::launch(dir, "exec \"$0\" \"$@\"", &["view", &path]);
    tty.wait_screen("looking back at a capture: no listener");
    tty.wait_screen("upload 3 of 3");
    tty.wait_screen("batches 3 · records 3");
    tty.press("\x1b[H"); // Home
    tty.wait_screen("upload 1 of 3");
    tty.wait_screen("batches 1 · records 1");
    tty.wait_screen("57.022410°");
    tty.press("\x1b[C"); // →
    tty.wait_screen("upload 2 of 3");
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    assert!(
        !contains(&tty.raw, "listening on"),
        "a listener was started"
    );
    assert!(!contains(&tty.raw, "panicked"));
    assert!(!tty.screen.screen().alternate_screen());
    assert!(tty.cooked(), "raw mode left on");
}

/// Opens the newest request on the Requests tab, saves its body with `s`,
/// quits; the `.json` files then in `folder`, sorted.
fn save_the_newest_request(mut tty: Tty, folder: &std::path::Path) -> Vec<String> {
    tty.press("2");
    tty.wait_screen("Enter opens");
    tty.press("\r");
    tty.press("s");
    tty.wait_screen("body saved to");
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    let mut saved: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    saved.sort();
    saved
}

/// `view` over two captures saves a body with `s` beside the first,
/// named after it: the two names joined for the header were taken as the
/// path (`a.jsonl, b-captured-2.json` in the folder, or a folder that
/// does not exist; a review, December 7).
#[test]
fn view_of_two_captures_saves_a_body_beside_the_first() {
    let dir = tempfile::tempdir().unwrap();
    for (name, second) in [("a.jsonl", 0), ("b\tx.jsonl", 1)] {
        let line = format!(
            r#"{{"received":"2026-11-27T08:00:0{second}.000Z","unit_id":"aa","batch_hash":"h{second}","acked":true,"records":[{{"@t":"obd.bat","@ts":"2026-11-27T08:00:0{second}Z","voltage":12.{second}}}]}}"#
        );
        std::fs::write(dir.path().join(name), line + "\n").unwrap();
    }
    let folder = dir.path().to_path_buf();
    let mut tty = Tty::launch(
        dir,
        "exec \"$0\" \"$@\"",
        &["view", "a.jsonl", "b\tx.jsonl"],
    );
    tty.wait_screen("upload 2 of 2");
    // The header names both, a tab in a name written as its escape (the
    // frame drops it: it read `bx.jsonl`).
    tty.wait_screen("a.jsonl, b\\u{9}x.jsonl");
    let saved = save_the_newest_request(tty, &folder);
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].starts_with("a-captured-"), "{saved:?}");
}

/// An upstream answering 401 to one batch: the header shows the target
/// up with the batch parked, while the next batches go on.
#[test]
fn the_header_shows_a_batch_the_upstream_refused_as_parked() {
    let (port, requests) = common::scripted_upstream(vec![(
        "NO-AUTH",
        "401 Unauthorized",
        r#"{"error":"invalid token"}"#,
    )]);
    let url = format!("http://127.0.0.1:{port}/logbook/storage");
    let mut tty = Tty::start("", &["--token", TOKEN, "--forward", &url]);
    let addr = tty.addr();
    let auth = format!("token {TOKEN}");
    for value in ["NO-AUTH", "fine-1", "fine-2"] {
        let body = format!(r#"[{{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00","value":"{value}"}}]"#);
        let r = post(addr, &[("authorization", &auth)], body.as_bytes());
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        requests.recv_timeout(WAIT).expect("a forwarded batch");
    }
    tty.wait_screen(&format!("forward 127.0.0.1:{port} up · parked 1"));
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
}

/// Requests that arrive while a big capture loads at start are all shown
/// once it is loaded: more than the event queue holds (4096) arrive during
/// the load, and none is dropped. The capture starts at 127 MB and is
/// doubled while the load ends before the requests are sent (how fast
/// each goes depends on the machine: a 127 MB load that took seconds here
/// took under one on December 5, and the test failed on its own check).
#[test]
fn requests_arriving_while_a_big_capture_loads_are_all_shown() {
    for lines in [1200, 2400, 4800] {
        if requests_arrive_while_loading(lines) {
            return;
        }
    }
    panic!("the load of 4800 lines (509 MB) ended before the requests were sent");
}

/// `requests_arriving_while_a_big_capture_loads_are_all_shown` on a
/// capture of `lines` lines: false if the load ended too soon to tell.
fn requests_arrive_while_loading(lines: usize) -> bool {
    const SENT: usize = 5000;
    let mut tty = loading_a_big_capture(lines);
    let addr = tty.addr();
    tty.wait_for("the load's progress", |t| t.raw_text().contains("loading "));
    // Four connections at once, to be done well within the load.
    let sending = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = common::Conn::open(addr);
                let wrong =
                    common::request_bytes("POST", &[("authorization", "token WRONG")], b"[]");
                for _ in 0..SENT / 4 {
                    assert_eq!(conn.request(&wrong).status, 401);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let sent_in = sending.elapsed();
    eprintln!("{lines} lines: sent in {sent_in:?}");
    // All of them arrived while the file was still loading (else this
    // tests nothing): the load had not said it was done.
    tty.wait_for_a_while("more output", |_| false);
    if tty.raw_text().contains("done in") {
        eprintln!("the load ended before the requests did: a bigger capture");
        tty.press("q");
        assert_eq!(tty.exit().exit_code(), 0);
        return false;
    }
    tty.wait_screen(&format!("requests {}", fmt_count(SENT + lines)));
    eprintln!(
        "{:?}",
        tty.raw_text().split("done in").nth(1).map(|t| &t[..8])
    );
    assert!(
        !tty.contents().contains("events not shown"),
        "{}",
        tty.contents()
    );
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    true
}

/// The receiver under the dashboard, started on a capture of `lines`
/// lines of the 1000-record sample (106 kB each: from 302 lines, enough
/// for the load's progress line; a debug build loads 50 MB in 2 to 4 s).
fn loading_a_big_capture(lines: usize) -> Tty {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let records = std::fs::read_to_string(samples().join("batch-1000-naive.json")).unwrap();
    let records = records.trim();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&capture).unwrap());
    for i in 0..lines {
        writeln!(
            file,
            r#"{{"received":"2026-11-27T08:00:00.000Z","peer":"127.0.0.1:1","unit_id":"ee3df171ff0f6209a3dbaa00b00e1d05","encoding":"identity","wire_bytes":{},"batch_hash":"{i:064x}","duplicate_of":null,"acked":true,"mode":"ok","records":{records}}}"#,
            records.len()
        )
        .unwrap();
    }
    file.flush().unwrap();
    drop(file);
    // Big enough for the progress line (32 MB).
    assert!(std::fs::metadata(&capture).unwrap().len() > 32_000_000);
    Tty::receiving(dir, &capture)
}

/// A signal while a big capture loads at start stops the run there, as
/// it would under the dashboard: the load goes no further, the screen is
/// never taken, and the run ends gracefully (0), without waiting for the
/// rest of the file or for a second signal.
#[test]
fn a_signal_while_a_big_capture_loads_stops_the_run_there() {
    let mut tty = loading_a_big_capture(500);
    tty.addr();
    tty.wait_for("the load's progress", |t| t.raw_text().contains("loading "));
    let pid = tty.child.process_id().expect("the receiver's pid");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert_eq!(tty.exit().exit_code(), 0, "{}", tty.raw_text());
    let text = tty.raw_text();
    assert!(
        text.contains("stopped after") && !text.contains("done in"),
        "the load went on: {text}"
    );
    let said = text
        .split("stopping: a signal while the dashboard was loading")
        .nth(1)
        .unwrap_or_else(|| panic!("no word of the stop: {text}"));
    let read: u64 = said
        .split(" % read")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no share read: {said}"));
    assert!(read < 100, "the whole file was read first: {said}");
    assert!(find(&tty.raw, ENTER_ALT).is_none(), "the screen was taken");
}

/// A count as the header writes it (thousands separated by commas).
fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// SIGHUP under the dashboard: the token file is read again and the
/// header's token count follows (stderr, where headless says it, is hidden
/// behind the screen); nothing is written over the dashboard.
#[test]
fn sighup_under_the_dashboard_refreshes_the_token_count() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let capture = dir.path().join("c.jsonl").display().to_string();
    let tokens_arg = tokens.display().to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--capture",
        &capture,
        "--token-file",
        &tokens_arg,
    ];
    let mut tty = Tty::launch(dir, "exec \"$0\" \"$@\"", &args);
    tty.wait_screen("auth 1 token ·");
    std::fs::write(&tokens, format!("{TOKEN}\nanother-bench-token\n")).unwrap();
    let pid = tty.child.process_id().expect("the receiver's pid");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tty.wait_screen("auth 2 tokens ·");
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    assert!(
        !contains(tty.during_ui(), "SIGHUP"),
        "a message on the dashboard"
    );
    assert!(
        !contains(&tty.raw, "another-bench-token"),
        "a token reached the terminal"
    );
}

/// The capture file taken away under the dashboard: the header says so for
/// the rest of the run (stderr, which the screen hides, says it only at
/// the exit); until December 6 nothing on screen did.
#[test]
fn the_header_says_when_the_capture_was_taken_away() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut tty = Tty::receiving(dir, &capture);
    let addr = tty.addr();
    let auth = format!("token {TOKEN}");
    let body = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":800}]"#;
    assert_eq!(post(addr, &[("authorization", &auth)], body).status, 200);
    cut_short_in_place(&capture);
    assert_eq!(post(addr, &[("authorization", &auth)], body).status, 200);
    tty.wait_screen("CUT SHORT");
    std::fs::remove_file(&capture).unwrap();
    assert_eq!(post(addr, &[("authorization", &auth)], body).status, 200);
    tty.wait_screen("DELETED OR MOVED");
    tty.press("q");
    assert_eq!(tty.exit().exit_code(), 0);
    assert!(tty.after_ui().contains("was deleted or moved away"));
}

/// The terminal closing under a dashboard whose stderr is a pipe nobody
/// reads any more (the listening line taken by `sed … q`): giving the
/// terminal back fails, and ratatui said so with `eprintln!`, which
/// panicked on the closed pipe, then again in the panic hook: the process
/// aborted (SIGABRT). It now ends by itself, killed by no signal.
#[test]
fn a_terminal_closing_under_a_closed_stderr_ends_the_run_without_abort() {
    let dir = tempfile::tempdir().unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new("sh");
    cmd.arg("-c");
    // The shell outlives the hang-up to write down how the receiver ended.
    cmd.arg(
        "trap '' HUP; exec 3>&1; { \"$0\" \"$@\" 2>&1 >&3; echo \"$?\" >status; } \
         | sed '/listening on/q' >&3",
    );
    cmd.arg(env!("CARGO_BIN_EXE_autopi-rx"));
    for a in [
        "--listen",
        "127.0.0.1:0",
        "--capture",
        "c.jsonl",
        "--token",
        TOKEN,
    ] {
        cmd.arg(a);
    }
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("AUTOPI_RX_TOKEN");
    cmd.cwd(dir.path());
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    // Read on a thread of its own until the dashboard is drawn; the thread
    // then ends, and its copy of the terminal's master side with it.
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (drawn_tx, drawn) = unbounded();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
            if contains(&seen, "Position") {
                let _ = drawn_tx.send(());
                return;
            }
        }
    });
    let up = drawn.recv_timeout(WAIT);
    if up.is_err() {
        let _ = child.kill();
        panic!("the dashboard was not drawn");
    }
    // The terminal goes away: its master side closed.
    drop(pty.master);
    let status = dir.path().join("status");
    let ended = common::wait_until(WAIT, || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.ends_with('\n'))
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "the receiver did not end once its terminal closed");
    let code: i32 = std::fs::read_to_string(&status)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(code < 128, "ended by signal {}", code - 128);
    let _ = child.wait();
}

/// The save key `s` writes beside the capture whatever its folder is
/// called: the capture's path was kept written for a terminal (`\u{9}` for
/// a tab) for a day, and saving then looked for a folder of that name (a
/// reviewer's finding, December 5).
#[test]
fn a_body_is_saved_beside_a_capture_in_a_folder_with_a_tab_in_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cap\tdir");
    std::fs::create_dir(&folder).unwrap();
    let capture = folder.join("c.jsonl");
    let mut tty = Tty::receiving(dir, &capture);
    let addr = tty.addr();
    tty.wait_screen("Position");
    let body = std::fs::read(samples().join("guide-examples/track-pos.json")).unwrap();
    let ok = post(addr, &[("authorization", &format!("token {TOKEN}"))], &body);
    assert_eq!(ok.status, 200, "{}", ok.text());
    tty.wait_screen("57.022410°");
    let saved = save_the_newest_request(tty, &folder);
    assert_eq!(saved, ["c-request-1.json"], "{saved:?}");
}

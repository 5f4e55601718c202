//! The binary's command line, start-up, shutdown and secrecy.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn no_token_exits_2_and_says_how_to_give_one() {
    let out = binary()
        .args(["--listen", "127.0.0.1:0", "--headless"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token") && err.contains("AUTOPI_RX_TOKEN") && err.contains("--no-auth"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_empty_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, "# nothing\n\n").unwrap();
    let out = binary()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no token"));
}

#[test]
fn help_never_shows_the_token() {
    let out = binary()
        .env("AUTOPI_RX_TOKEN", "s3cr3t-from-env")
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--token") && help.contains("--no-auth") && help.contains("--max-body"),
        "{help}"
    );
    assert!(!help.contains("s3cr3t-from-env"), "{help}");
}

#[test]
fn headless_stderr_is_only_the_listening_line_and_sigterm_exits_0() {
    let mut rx = Receiver::start(&[]);
    assert_ne!(rx.addr.port(), 0, "the real port is reported");
    assert_eq!(rx.upload(b"[]").status, 200);
    assert_eq!(rx.stop().code(), Some(0));
    assert_eq!(rx.stderr(), format!("listening on http://{}\n", rx.addr));
}

#[test]
fn no_auth_accepts_anything_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let rx = Receiver::spawn(binary().args(["--no-auth", "--capture", capture.to_str().unwrap()]));
    assert!(
        rx.stderr().contains("WARNING: --no-auth"),
        "{}",
        rx.stderr()
    );
    assert_eq!(rx.post(&[], b"[]").status, 200);
    assert_eq!(
        rx.post(&[("authorization", "token whatever")], b"[]")
            .status,
        200
    );
}

#[test]
fn default_capture_goes_under_captures_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::spawn(binary().current_dir(dir.path()).args(["--token", TOKEN]));
    assert_eq!(rx.upload(b"[]").status, 200);
    rx.stop();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("captures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.ends_with("Z.jsonl") && name.starts_with("20"),
        "{name}"
    );
    assert_eq!(capture_lines(&files[0]).len(), 1);
}

/// Two receivers (two demos side by side) started within one second would
/// share the default name; the later one takes it with `-2`. Which second
/// the receiver starts in is not ours to choose: every name it could start
/// with for the next 30 s is held by another "receiver" (this test, with
/// the lock the writer takes).
#[test]
fn a_default_capture_name_in_use_is_taken_with_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let captures = dir.path().join("captures");
    std::fs::create_dir(&captures).unwrap();
    let now = jiff::Timestamp::now();
    let names: Vec<String> = (-1..30)
        .map(|s| {
            let at = now + jiff::SignedDuration::from_secs(s);
            at.strftime("%Y%m%dT%H%M%SZ").to_string()
        })
        .collect();
    let held: Vec<std::fs::File> = names
        .iter()
        .map(|name| {
            let file = std::fs::File::create(captures.join(format!("{name}.jsonl"))).unwrap();
            file.try_lock().unwrap();
            file
        })
        .collect();
    let mut rx = Receiver::spawn(binary().current_dir(dir.path()).args(["--token", TOKEN]));
    assert_eq!(rx.upload(b"[]").status, 200);
    assert_eq!(rx.stop().code(), Some(0), "{}", rx.stderr());
    let taken: Vec<_> = names
        .iter()
        .map(|name| captures.join(format!("{name}-2.jsonl")))
        .filter(|path| path.exists())
        .collect();
    assert_eq!(taken.len(), 1, "{:?}", std::fs::read_dir(&captures));
    assert_eq!(capture_lines(&taken[0]).len(), 1);
    for name in &names {
        let held = captures.join(format!("{name}.jsonl"));
        assert_eq!(std::fs::metadata(held).unwrap().len(), 0, "{name}");
    }
    drop(held);
}

#[test]
fn sigterm_finishes_a_request_in_flight() {
    let mut rx = Receiver::start(&[]);
    let body = std::fs::read(samples().join("batch-1000-naive.json")).unwrap();
    let mut stream = TcpStream::connect(rx.addr).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: t\r\nauthorization: token {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // "100 Continue" comes once a worker has taken the request and starts
    // reading its body: the request is in flight.
    let mut head = [0u8; 25];
    stream.read_exact(&mut head).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    signal(&rx.child, "TERM");
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains(" 200 ") && answer.contains("\"accepted\":1000"),
        "{answer}"
    );
    assert_eq!(rx.child.wait().unwrap().code(), Some(0));
    assert_eq!(rx.capture_lines().len(), 1);
}

#[test]
fn the_token_never_appears_in_any_output_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let secret = "tok-9f8e7d6c5b4a";
    let wrong = "tok-0000-wrong-guess";
    let mut rx = Receiver::spawn(
        binary()
            .env("AUTOPI_RX_TOKEN", secret)
            .args(["--capture", capture.to_str().unwrap()]),
    );
    let body: &[u8] = br#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#;
    // A refusal quotes the string that is not a record, cut at 300
    // characters: here the token stands across the cut.
    let quoting = format!(r#"["{}{secret}"]"#, "9".repeat(268));
    let cases: [(String, &[u8], u16); 6] = [
        (format!("token {secret}"), body, 200),
        (format!("Bearer {secret}"), b"nope", 400),
        (format!("token {secret}"), quoting.as_bytes(), 400),
        (format!("token {wrong}"), body, 401),
        (format!("Weird {secret}"), body, 401),
        // A device set up with the token where the scheme goes.
        (format!("{secret} x"), body, 401),
    ];
    let mut answers = String::new();
    for (header, body, status) in &cases {
        let r = rx.post(&[("authorization", header)], body);
        assert_eq!(r.status, *status, "{header}");
        answers.push_str(&r.text());
    }
    // The token in upper case where the coding goes: the 415 quotes the
    // coding as sent (it quoted it lowered, which spelt the token again).
    let r = rx.post(
        &[
            ("authorization", &format!("token {secret}")),
            ("content-encoding", &secret.to_uppercase()),
        ],
        b"xx",
    );
    assert_eq!(r.status, 415);
    answers.push_str(&r.text());
    answers.push_str(
        &Conn::open(rx.addr)
            .request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .text(),
    );
    // The token sent where it does not belong: in the URL (as a query
    // string, as a path segment), in other headers, with and without the
    // token where it belongs. Each is shown and kept with `[token]`.
    let encoded = secret.replace('-', "%2D");
    let misplaced = [
        ("POST", format!("/upload?token={secret}"), "", 200),
        (
            "POST",
            format!("/{secret}{secret}/x"),
            "x-api-key: {s}\r\nunit-id: {s}\r\nuser-agent: dev/{s}\r\n",
            200,
        ),
        ("POST", format!("/?access_token={secret}"), "", 401),
        // Percent-encoded, in the content coding (quoted in the warning and
        // kept in the capture), and as the method.
        (
            "POST",
            format!("/p?t={encoded}"),
            "content-encoding: {s}\r\n",
            200,
        ),
        (secret, "/".to_string(), "", 405),
        // Spelt otherwise: percent-encoded in the unit id (shown on
        // stdout), inside base64 in the user agent (kept in the capture).
        (
            "POST",
            "/".to_string(),
            "unit-id: {p}\r\nuser-agent: dev {b}\r\n",
            200,
        ),
        // Percent-encoded twice in the path; base64 percent-encoded in the
        // user agent.
        (
            "POST",
            format!("/d?t={}", encoded.replace('%', "%25")),
            "user-agent: dev {q}\r\n",
            200,
        ),
        // A line feed in the target: its 400 quotes the target cut at 40
        // characters, here across the token.
        ("POST", format!("/{}?t={secret}\n", "p".repeat(30)), "", 400),
    ];
    use base64::Engine as _;
    let packed = base64::engine::general_purpose::STANDARD.encode(format!("key:{secret}"));
    let quoted: String = packed.bytes().map(|b| format!("%{b:02X}")).collect();
    for (method, path, extra, status) in &misplaced {
        let auth = if *status != 401 {
            format!("authorization: token {secret}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}{}Content-Length: {}\r\n\r\n",
            extra
                .replace("{s}", secret)
                .replace("{p}", &encoded)
                .replace("{b}", &packed)
                .replace("{q}", &quoted),
            body.len()
        );
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let r = Conn::open(rx.addr).request(&bytes);
        assert_eq!(r.status, *status, "{path}");
        answers.push_str(&r.text());
    }
    rx.stop();
    let stdout = rx.remaining_stdout().join("\n");
    assert_eq!(stdout.lines().count(), 16);
    for shown in [
        "\"path\":\"/upload?token=[token]\"",
        "\"path\":\"/[token][token]/x\"",
        "\"unit_id\":\"[token]\"",
        "\"path\":\"/?access_token=[token]\"",
        "\"path\":\"/p?t=[token]\"",
        "\"path\":\"/d?t=[token]\"",
        "content-encoding says '[token]'",
        "\"method\":\"[token]\"",
    ] {
        assert!(stdout.contains(shown), "{shown} not in {stdout}");
    }
    let file = std::fs::read_to_string(&capture).unwrap();
    assert_eq!(
        file.matches("\"user_agent\":\"dev [token]\"").count(),
        2,
        "{file}"
    );
    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &rx.stderr()),
        ("capture", &file),
        ("answers and status page", &answers),
    ] {
        assert!(!text.contains(secret), "{what} shows the token: {text}");
        assert!(
            !text.contains(&encoded)
                && !text.contains(&packed[8..20])
                && !text.contains(&quoted[24..60]),
            "{what} shows the token spelt otherwise: {text}"
        );
        assert!(
            !text.contains(&secret[..6]),
            "{what} shows part of the token: {text}"
        );
        assert!(
            !text.contains(wrong),
            "{what} shows the wrong token: {text}"
        );
    }
}

#[test]
fn demo_feeds_the_receiver_over_real_http() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("demo.jsonl");
    let mut rx = Receiver::spawn(binary().args(["--demo", "--capture", capture.to_str().unwrap()]));
    assert!(rx.addr.ip().is_loopback());
    for _ in 0..3 {
        let e = rx.event();
        assert_eq!(
            (e["status"].as_u64(), e["encoding"].as_str()),
            (Some(200), Some("gzip")),
            "{e}"
        );
        assert_eq!(e["unit_id"].as_str().map(str::len), Some(32));
        assert!(e["records"].as_u64().unwrap() > 0);
    }
    assert_eq!(rx.stop().code(), Some(0));
    assert!(rx.stderr().contains("DEMO"), "{}", rx.stderr());
    let lines = capture_lines(&capture);
    assert!(lines.len() >= 3);
    // The generated token stays secret too.
    let all = format!(
        "{}{}{}",
        rx.stderr(),
        rx.remaining_stdout().join(""),
        std::fs::read_to_string(&capture).unwrap()
    );
    assert!(!all.contains("demo-"), "token leaked");
}

#[test]
fn demo_refuses_a_token() {
    let out = binary().args(["--demo", "--token", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_token_starting_with_a_dash_is_taken_and_no_refusal_quotes_a_token() {
    // Written after its flag as its own word, a token starting with `-`
    // is that flag's value (clap alone refused it as a flag it did not
    // know, quoting the token's start).
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let dashed = "-Dk3f9-dash-token";
    let mut rx =
        Receiver::spawn(binary().args(["--token", dashed, "--capture", capture.to_str().unwrap()]));
    let body: &[u8] = br#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#;
    let r = rx.post(&[("authorization", &format!("token {dashed}"))], body);
    assert_eq!(r.status, 200);
    assert_eq!(rx.post(&[("authorization", "token x")], body).status, 401);
    rx.stop();
    // A refusal of the command line never quotes a token given on it,
    // however it was mistyped: pasted again where another flag's value
    // goes, given twice, or starting with dashes before a word clap
    // refuses.
    let secret = "Sekr3t-9f8e7d6c";
    let cases: [&[&str]; 9] = [
        &["--token", secret, "--respond", secret],
        &[
            "--token=--Sekr3t-9f8e7d6c",
            "--respond",
            "--Sekr3t-9f8e7d6c",
        ],
        &["--token", "--Sekr3t-9f8e7d6c", "stray"],
        &["--token", "-Sekr3t-9f8e7d6c", "--no-auth"],
        &["--forward-token", secret, "--workers", secret],
        &[
            "simulate",
            "--url",
            "http://127.0.0.1:9/",
            "--token",
            secret,
            secret,
        ],
        &[
            "replay",
            "--token",
            "--Sekr3t-9f8e7d6c",
            "--speed",
            "--Sekr3t-9f8e7d6c",
        ],
        // Quoted lowered, inside a value.
        &["--token", secret, "--respond", "late:Sekr3t-9f8e7d6c"],
        // After `--`, as clap's own tip writes a value starting with `-`.
        &[
            "replay",
            "f",
            "--token",
            "--",
            "-Sekr3t-9f8e7d6c",
            "-Sekr3t-9f8e7d6c",
        ],
    ];
    for args in cases {
        let out = binary().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            !err.contains("Sekr3t") && !err.contains("'-S'") && !err.contains("'--S"),
            "{args:?} quotes the token: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            !err.to_lowercase().contains("sekr3t"),
            "{args:?} quotes it lowered: {err}"
        );
    }
    // A short token that is a word of the refusal's own leaves the words
    // as they are (they were replaced, which showed what the token was).
    let out = binary()
        .args(["--token", "found", "--bogus"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unexpected argument '--bogus' found"),
        "{err}"
    );
    // A token given after `--`, as clap's tip has it, is taken.
    let mut rx = Receiver::spawn(binary().args([
        "--capture",
        capture.to_str().unwrap(),
        "--token",
        "--",
        "-Dk3f9-after-separator",
    ]));
    let r = rx.post(&[("authorization", "token -Dk3f9-after-separator")], body);
    assert_eq!(r.status, 200);
    rx.stop();
}

#[test]
fn a_token_file_with_a_byte_order_mark_and_crlf_works() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(
        &file,
        format!("\u{feff}{TOKEN}\r\n# bench two\r\nsecond-token\r\n"),
    )
    .unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx = Receiver::spawn(binary().args([
        "--token-file",
        file.to_str().unwrap(),
        "--capture",
        capture.to_str().unwrap(),
    ]));
    assert_eq!(
        rx.upload(b"[]").status,
        200,
        "the first token, after the BOM"
    );
    let r = rx.post(&[("authorization", "Bearer second-token")], b"[]");
    assert_eq!(r.status, 200, "the second token, before a CRLF");
    rx.stop();
}

#[test]
fn a_token_with_control_or_non_ascii_characters_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("control", "good-token\nbad\u{7}token\n"),
        ("non-ascii", "tök\u{e9}n\n"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = binary()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("printable ASCII") && err.contains("line"),
            "{err}"
        );
        assert!(
            !err.contains("bad\u{7}token") && !err.contains("tök"),
            "the token is never quoted: {err}"
        );
    }
    let out = binary()
        .args(["--listen", "127.0.0.1:0", "--token", "tab\there"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("control character"));
    // A quote or a backslash: escaped where a refusal quotes a value, so
    // the scrub would not find the token there.
    for token in ["quote\"d-token", "back\\slash-token"] {
        // An address that cannot be listened on: with the token taken, the
        // run ends there rather than listening for ever.
        let out = binary()
            .args(["--listen", "not-an-address", "--token", token])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{token}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("out of reach of the scrub"), "{err}");
        assert!(!err.contains(token), "the token is never quoted: {err}");
    }
}

#[test]
fn fingerprint_prints_what_a_refusal_shows_and_never_the_token() {
    let wrong = "tok-device-typo-4411";
    let mut rx = Receiver::start(&[]);
    let r = rx.post(&[("authorization", &format!("Bearer {wrong}"))], b"[]");
    assert_eq!(r.status, 401);
    let detail = r.text();
    rx.stop();
    for want in ["scheme Bearer", "Cloud Storage", "autopi-rx fingerprint"] {
        assert!(
            detail.contains(want),
            "the 401 says what to check: {detail}"
        );
    }
    for input in [format!("{wrong}\n"), format!("  token {wrong}  ")] {
        let mut child = binary()
            .arg("fingerprint")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let printed = String::from_utf8(out.stdout).unwrap();
        let fp = printed.trim();
        assert_eq!(fp.len(), 8, "{printed}");
        assert!(
            detail.contains(&format!("fingerprint {fp}")),
            "{fp} in {detail}"
        );
        assert!(!printed.contains(wrong) && !String::from_utf8_lossy(&out.stderr).contains(wrong));
    }
    let empty = binary()
        .arg("fingerprint")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no token on stdin"));

    // The first line is taken at its line end, as typed on a terminal:
    // stdin stays open (it was read to its end, so nothing came until
    // Ctrl-D), and what follows is never read (a line that is not UTF-8
    // failed it).
    let mut child = binary()
        .arg("fingerprint")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{wrong}\n").as_bytes()).unwrap();
    stdin.write_all(b"\xff\xfe\n").unwrap();
    let out = wait_output(&mut child, std::time::Duration::from_secs(20));
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fp = String::from_utf8(out.stdout).unwrap();
    assert!(
        detail.contains(&format!("fingerprint {}", fp.trim())),
        "{fp}"
    );
}

#[test]
fn sighup_reads_the_token_file_again_and_says_how_many_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx = Receiver::spawn(binary().args([
        "--token-file",
        file.to_str().unwrap(),
        "--capture",
        capture.to_str().unwrap(),
    ]));
    let added = "tok-added-later-77";
    let bearer = format!("Bearer {added}");
    assert_eq!(rx.post(&[("authorization", &bearer)], b"[]").status, 401);
    std::fs::write(&file, format!("{TOKEN}\n{added}\n")).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &rx.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    rx.wait_stderr("2 token(s) configured");
    assert_eq!(rx.post(&[("authorization", &bearer)], b"[]").status, 200);
    // A file that went bad keeps the tokens in force.
    std::fs::write(&file, "# nothing\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &rx.child.id().to_string()])
        .status()
        .unwrap();
    rx.wait_stderr("tokens kept as they were");
    assert_eq!(rx.post(&[("authorization", &bearer)], b"[]").status, 200);
    rx.stop();
    assert!(!rx.stderr().contains(added), "{}", rx.stderr());
}

/// A token under 16 characters is easy to guess, and hiding it in what
/// clients send hides ordinary text too: said at start (and when a
/// SIGHUP reads a short one), never saying which token or how long.
#[test]
fn a_short_token_is_warned_about_at_start_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let capture = dir.path().join("c.jsonl");
    let short = "q7Zx9";
    let mut rx =
        Receiver::spawn(binary().args(["--token", short, "--capture", capture.to_str().unwrap()]));
    assert_eq!(
        rx.upload(b"[]").status,
        401,
        "the sample token is not given"
    );
    assert_eq!(
        rx.post(&[("authorization", &format!("token {short}"))], b"[]")
            .status,
        200
    );
    rx.stop();
    let said = rx.stderr();
    assert!(
        said.starts_with("warning: the token is shorter than 16 characters"),
        "{said}"
    );
    assert!(!said.contains(short) && !said.contains(" 5 "), "{said}");
    assert!(said.contains("from its fingerprint too"), "{said}");

    let mut rx = Receiver::spawn(binary().args([
        "--token-file",
        file.to_str().unwrap(),
        "--capture",
        capture.to_str().unwrap(),
    ]));
    assert!(!rx.stderr().contains("warning"), "{}", rx.stderr());
    std::fs::write(&file, format!("{TOKEN}\n{short}\n")).unwrap();
    common::signal(&rx.child, "HUP");
    rx.wait_stderr("1 of the 2 tokens are shorter than 16 characters");
    rx.stop();
    assert!(!rx.stderr().contains(short), "{}", rx.stderr());
}

/// A one-letter token stands inside `POST`: the method is shown as it is,
/// so every upload is still counted as one. It was scrubbed to
/// `POS[token]`, and the dashboard's counts and the headless lines' device
/// figures (`gap_s`, `lag_s`) took no upload as one.
#[test]
fn a_token_inside_the_method_leaves_uploads_counted() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx =
        Receiver::spawn(binary().args(["--token", "T", "--capture", capture.to_str().unwrap()]));
    let body: &[u8] = br#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#;
    for n in 0..2 {
        let r = rx.post(&[("authorization", "token T"), ("unit-id", "dev1")], body);
        assert_eq!(r.status, 200, "upload {n}");
    }
    let first = rx.event();
    let second = rx.event();
    rx.stop();
    assert_eq!(first["method"], "POST", "{first}");
    assert!(first["lag_s"].is_number(), "{first}");
    assert!(
        second["gap_s"].is_number(),
        "counted as the device's second upload: {second}"
    );
}

/// Headless, a closed stdout (the reader of its lines gone) stops the run
/// as a signal does; it has a channel of its own since the signals' one
/// lets a signal that waits untaken end the process at once.
#[test]
fn a_closed_stdout_stops_a_headless_run() {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut child = binary()
        .args([
            "--headless",
            "--token",
            "tok-stdout-1",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--capture", capture.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    drop(child.stdout.take());
    let body = br#"[{"@t":"a","@ts":"2026-11-27T08:00:00Z"}]"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: token tok-stdout-1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 20 s after its stdout closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// A stderr whose reader has gone (a script's `2>&1 | grep -m1 listening`)
/// loses what is said, not the threads that say it: `eprintln!` panicked
/// on it, and the SIGHUP thread died with its first line, so a second
/// SIGHUP read nothing (or, its handler gone with it, ended the run).
/// `fingerprint` to a stdout nobody reads ends quietly too.
#[test]
fn a_closed_stderr_loses_lines_not_the_threads_that_say_them() {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let capture = dir.path().join("c.jsonl");
    let mut rx = Reaped(
        binary()
            .args(["--headless", "--listen", "127.0.0.1:0"])
            .args(["--token-file", file.to_str().unwrap()])
            .args(["--capture", capture.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut rx.0;
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr: std::net::SocketAddr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            break a.parse().unwrap();
        }
    };
    drop(stderr);
    let mut tokens = vec![TOKEN.to_string()];
    for added in ["tok-after-stderr-closed-1", "tok-after-stderr-closed-2"] {
        tokens.push(added.to_string());
        std::fs::write(&file, tokens.join("\n") + "\n").unwrap();
        signal(child, "HUP");
        let accepted = wait_until(std::time::Duration::from_secs(20), || {
            if let Some(ended) = child.try_wait().unwrap() {
                panic!("the receiver ended after a SIGHUP: {ended}");
            }
            post(addr, &[("authorization", &format!("token {added}"))], b"[]").status == 200
        });
        assert!(accepted, "{added} never accepted after SIGHUP");
    }
    assert_eq!(child.try_wait().unwrap(), None, "the receiver ended");
    signal(child, "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(capture_lines(&capture).len(), 2);

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut fp = binary()
        .arg("fingerprint")
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fp.stdin.take().unwrap().write_all(b"tok-x\n").unwrap();
    let out = fp.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.is_empty(), "{said}");
}

/// Headless with a stdout that fails for another reason than a reader
/// gone (a full disk: /dev/full) keeps receiving: the failure is said
/// once, the lines are lost, every batch is captured. It stopped the run
/// with exit 0 and no word.
#[test]
fn a_stdout_that_fails_loses_lines_not_the_run() {
    use std::process::Stdio;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.jsonl");
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut rx = Reaped(
        binary()
            .args(["--headless", "--listen", "127.0.0.1:0", "--token", TOKEN])
            .args(["--capture", capture.to_str().unwrap()])
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = stderr_lines(&mut rx.0);
    let said = lines_until(&lines, "listening on", Duration::from_secs(20));
    let addr: std::net::SocketAddr = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("listening on http://"))
        .unwrap()
        .parse()
        .unwrap();
    let auth = format!("token {TOKEN}");
    for i in 0..3 {
        let body = format!(r#"[{{"@t":"a","@ts":"2026-11-27T08:00:0{i}"}}]"#);
        let r = post(addr, &[("authorization", &auth)], body.as_bytes());
        assert_eq!(r.status, 200, "upload {i}");
    }
    lines_until(
        &lines,
        "cannot write a request line on stdout",
        Duration::from_secs(20),
    );
    assert_eq!(rx.0.try_wait().unwrap(), None, "the receiver ended");
    signal(&rx.0, "TERM");
    assert_eq!(rx.0.wait().unwrap().code(), Some(0));
    assert_eq!(capture_lines(&capture).len(), 3);
    let rest: String = lines.iter().collect();
    assert!(
        !rest.contains("cannot write a request line"),
        "said more than once: {rest}"
    );
}

/// `--workers` past what a machine can start at once aborted the process
/// (20 000: a thread's guard page could not be set up, exit 134) or ended
/// it with only "Resource temporarily unavailable": refused by the
/// command line now, as `--concurrency` is.
#[test]
fn workers_beyond_1024_are_refused_before_anything_starts() {
    for n in ["0", "1025", "20000"] {
        let out = binary()
            .args(["--listen", "127.0.0.1:0", "--headless", "--token", TOKEN])
            .args(["--workers", n])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err}");
        assert!(err.contains("1..=1024"), "{n}: {err}");
    }
}

/// What is named as an input never leaves a command waiting for ever or
/// reading without end: a named pipe with no writer made `view`, `export`
/// and `replay` wait in `open` (and `replay` ignore its first SIGTERM),
/// and `/dev/zero` as a token or CA file was read until memory ran out.
/// Each now ends with its reason; a token file that is a pipe with a
/// writer (`--token-file <(pass show bench)`) is still read.
#[test]
fn inputs_that_are_pipes_or_endless_devices_end_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let f = fifo.to_str().unwrap();
    let capture = dir.path().join("c.jsonl");
    let c = capture.to_str().unwrap();
    let reads = "not a regular file (a pipe): captures are read from files";
    let listen = ["--listen", "127.0.0.1:0", "--headless"];
    for (args, code, says) in [
        (vec!["view", f], 1, reads),
        (vec!["view", f, "--summary"], 1, reads),
        (vec!["export", f, "--format", "batches"], 1, reads),
        (
            vec![
                "replay",
                f,
                "--url",
                "http://127.0.0.1:9/",
                "--token",
                TOKEN,
            ],
            1,
            reads,
        ),
        (
            vec!["--token-file", "/dev/zero", "--capture", c],
            2,
            "cannot read token file /dev/zero: it holds more than 1 MiB",
        ),
        (
            vec!["--token-file", f, "--capture", c],
            2,
            "holds no token (a pipe nobody had written to yet",
        ),
        (
            vec![
                "--token",
                TOKEN,
                "--capture",
                c,
                "--forward",
                "https://127.0.0.1:9/",
                "--forward-ca",
                "/dev/zero",
            ],
            2,
            "--forward-ca /dev/zero: it holds more than 16 MiB",
        ),
    ] {
        let receiver = args[0].starts_with("--");
        let mut child = binary()
            .args(&args)
            .args(if receiver { &listen[..] } else { &[] })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output(&mut child, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // A token file that is a pipe, as `<(…)` gives, written to only once
    // the receiver waits for it.
    let (reader, mut writer) = std::io::pipe().unwrap();
    let mut child = binary()
        .args(["--token-file", "/dev/stdin", "--capture", c])
        .args(listen)
        .stdin(reader)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    // The receiver waits in `read` for the token (the pipe is opened
    // without waiting, then read waiting); the token is written once one
    // of its threads is seen there, so a read that did not wait (a pipe
    // left non-blocking: "Resource temporarily unavailable") fails.
    let read_syscall = if cfg!(target_arch = "aarch64") {
        "63 "
    } else {
        "0 "
    };
    let pid = child.id();
    let pipe = {
        use std::os::unix::fs::MetadataExt;
        let fd = std::os::fd::AsFd::as_fd(&writer)
            .try_clone_to_owned()
            .unwrap();
        format!(
            "pipe:[{}]",
            std::fs::File::from(fd).metadata().unwrap().ino()
        )
    };
    let reading_the_pipe = |syscall: String| {
        let mut parts = syscall.split(' ');
        parts.next() == Some(read_syscall.trim())
            && parts
                .next()
                .and_then(|fd| u32::from_str_radix(fd.trim_start_matches("0x"), 16).ok())
                .and_then(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
                .is_some_and(|to| to.to_string_lossy() == pipe)
    };
    let _ = wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("syscall")).ok())
            .any(reading_the_pipe)
    });
    writer.write_all(format!("{TOKEN}\n").as_bytes()).unwrap();
    drop(writer);
    let child = Reaped(child);
    let said = lines_until(&lines, "listening on http://", Duration::from_secs(20));
    let addr: std::net::SocketAddr = said
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = post(addr, &[("authorization", &format!("token {TOKEN}"))], b"[]");
    assert_eq!(r.status, 200);
    signal(&child.0, "TERM");
    drop(child);
}

/// A file name given on the command line is written in every message as a
/// name, never as what a terminal obeys: an escape sequence or a bidi
/// override in it comes out as `\u{..}`.
#[test]
fn file_names_in_messages_are_shown_never_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let odd = "a\u{1b}]0;PWNED\u{7}\u{202e}b";
    let seen = r"a\u{1b}]0;PWNED\u{7}\u{202e}b";
    let missing = dir.path().join(format!("{odd}.jsonl"));
    let m = missing.to_str().unwrap();
    let capture = dir.path().join(format!("{odd}-capture.jsonl"));
    let c = capture.to_str().unwrap();
    let plain = dir.path().join("plain.jsonl");
    let p = plain.to_str().unwrap();
    let obeyed = |text: &str| text.contains('\u{1b}') || text.contains('\u{202e}');

    for (args, code) in [
        (vec!["view", m], 1),
        (vec!["view", m, "--summary"], 1),
        (vec!["export", m, "--format", "gpx"], 1),
        (
            vec![
                "replay",
                m,
                "--url",
                "http://127.0.0.1:9/",
                "--token",
                TOKEN,
            ],
            1,
        ),
        (vec!["--token-file", m, "--capture", p], 2),
        (
            vec![
                "--token",
                TOKEN,
                "--capture",
                p,
                "--forward",
                "https://127.0.0.1:9/",
                "--forward-ca",
                m,
            ],
            2,
        ),
    ] {
        let out = binary().args(&args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(seen), "{args:?}: {stderr}");
        assert!(!obeyed(&stderr), "{args:?}: {stderr}");
    }

    // A capture under such a name is written, and read back naming it.
    let mut rx = Receiver::spawn(binary().args(["--token", TOKEN, "--capture", c]));
    assert_eq!(rx.upload(b"[]").status, 200);
    rx.stop();
    let out = binary().args(["view", c, "--summary"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(seen), "{stdout}");
    assert!(!obeyed(&stdout), "{stdout}");

    // An export whose output cannot be created says which.
    let out_path = dir.path().join(odd).join("out.gpx");
    let out = binary()
        .args(["export", c, "--format", "gpx", "-o"])
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(seen), "{stderr}");
    assert!(!obeyed(&stderr), "{stderr}");
}

/// `replay` and `simulate` never write their token to stderr, whatever a
/// message quotes: a capture path or a `--ca` file named as the token by
/// mistake, and a capture line holding it (not a capture line: its text
/// is quoted in the warning). A hostile-client probe of December 7 saw
/// `cannot read TOKEN: No such file or directory`.
#[test]
fn replay_and_simulate_never_quote_their_token_from_a_path_or_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "CLI-TOKEN-abcdef123456";
    let capture = dir.path().join("c.jsonl");
    // The last line's value is cut at 200 characters with the token across
    // the cut: it came through in part (a review).
    let long = "x".repeat(160);
    std::fs::write(
        &capture,
        format!(
            "{{\"received\":\"{secret}\",\"records\":[]}}\nnot json {secret}\n\
             {{\"received\":\"{long}{secret}\",\"records\":[]}}\n"
        ),
    )
    .unwrap();
    let capture = capture.to_str().unwrap();
    let (plain, tls) = ("http://127.0.0.1:1/", "https://127.0.0.1:1/");
    let runs: [&[&str]; 4] = [
        // The file argument is the token (no such file).
        &["replay", secret, "--url", plain],
        // --ca names the token.
        &["replay", capture, "--url", tls, "--ca", secret],
        // The capture's lines hold it: each is quoted in a warning.
        &["replay", capture, "--url", plain],
        &["simulate", "--url", tls, "--ca", secret, "--count", "1"],
    ];
    let outputs: Vec<_> = runs
        .iter()
        .map(|args| {
            binary()
                .current_dir(dir.path())
                .args(*args)
                .args(["--token", secret])
                .output()
                .unwrap()
        })
        .collect();
    for out in &outputs {
        let err = String::from_utf8_lossy(&out.stderr);
        let said = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            !said.contains(secret) && !said.contains("xCLI-TOKEN"),
            "{said}"
        );
        // Each said something about what it could not do.
        assert!(
            err.contains("[token]") || err.contains("not a capture line"),
            "{err}"
        );
    }
    // A token of a few characters is in ordinary words: not taken out of
    // them (a token `t` made every line `au[token]opi-rx …`).
    let out = binary()
        .args([
            "replay",
            "no-such-file",
            "--url",
            "http://127.0.0.1:1/",
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("autopi-rx replay: cannot read no-such-file"),
        "{err}"
    );
}

/// A negative number of seconds (or speed) is refused saying the range,
/// exit 2, where clap took it for a flag and said "use '-- -1'", which
/// does not work.
#[test]
fn negative_seconds_are_refused_with_their_range() {
    for (args, flag) in [
        (
            &["replay", "c.jsonl", "--timeout", "-1"][..],
            "--timeout -1",
        ),
        (
            &["replay", "c.jsonl", "--retry-wait", "-2"],
            "--retry-wait -2",
        ),
        (&["replay", "c.jsonl", "--speed", "-3"], "--speed -3"),
        (&["simulate", "--interval", "-1"], "--interval -1"),
        (&["simulate", "--timeout", "-1"], "--timeout -1"),
        (&["simulate", "--retry-wait", "-1"], "--retry-wait -1"),
    ] {
        let out = binary()
            .args(args)
            .args(["--url", "http://127.0.0.1:1/", "--token", "t"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("out of range") && !err.contains("'-- "),
            "{args:?}: {err}"
        );
    }
}

//! Helpers shared by the integration tests: the real binary on 127.0.0.1:0,
//! and a raw HTTP/1.1 client that sends exactly the bytes a test gives it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver as Rx, unbounded};

pub const TOKEN: &str = "DEVICE-AUTH-TOKEN";
const WAIT: Duration = Duration::from_secs(20);

/// The `autopi-rx` binary running headless on a free loopback port.
pub struct Receiver {
    pub child: Child,
    pub addr: SocketAddr,
    pub capture: PathBuf,
    stdout: Rx<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: Rx<()>,
    stderr_lines: Rx<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_autopi-rx"));
    c.env_remove("AUTOPI_RX_TOKEN");
    c
}

impl Receiver {
    /// Starts with the sample token and a capture in a fresh folder.
    pub fn start(extra: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("capture.jsonl");
        let mut args = vec!["--token", TOKEN, "--capture", capture.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut r = Receiver::spawn(binary().args(&args));
        r.capture = capture;
        r._dir = Some(dir);
        r
    }

    /// Starts `cmd` (to which `--listen 127.0.0.1:0 --headless` is added) and
    /// waits for its `listening on` line.
    pub fn spawn(cmd: &mut Command) -> Receiver {
        Receiver::spawn_at(cmd, "127.0.0.1:0")
    }

    /// `spawn` listening on `listen`.
    pub fn spawn_at(cmd: &mut Command, listen: &str) -> Receiver {
        let mut child = cmd
            .args(["--listen", listen, "--headless"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start autopi-rx");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 {
            stderr.lock().unwrap().push_str(&line);
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                addr = Some(a.parse().expect("address in listening line"));
                break;
            }
            line.clear();
        }
        let addr = addr.unwrap_or_else(|| {
            let status = child.wait().unwrap();
            panic!(
                "no listening line ({status}); stderr: {}",
                stderr.lock().unwrap()
            )
        });
        let (done_tx, stderr_done) = unbounded();
        let (line_tx, stderr_lines) = unbounded();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = line_tx.send(line);
            }
            let _ = done_tx.send(());
        });
        let (tx, stdout) = unbounded();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Receiver {
            child,
            addr,
            capture: PathBuf::new(),
            stdout,
            stderr,
            stderr_done,
            stderr_lines,
            _dir: None,
        }
    }

    /// The next JSON line the receiver printed on stdout, whatever it is
    /// about, or None when none comes within `wait`.
    pub fn stdout_json(&self, wait: Duration) -> Option<serde_json::Value> {
        let line = self.stdout.recv_timeout(wait).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
    }

    /// The next JSON line the receiver printed for a request.
    pub fn event(&self) -> serde_json::Value {
        let line = self
            .stdout
            .recv_timeout(WAIT)
            .expect("an event line on stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Raw stdout lines not read yet (after `stop`, all of them).
    pub fn remaining_stdout(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    /// Waits for a stderr line (after the listening line) containing `needle`.
    pub fn wait_stderr(&self, needle: &str) -> String {
        loop {
            let line = self.stderr_lines.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("no stderr line with {needle:?}; stderr: {}", self.stderr())
            });
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process to end on its own; its status and all of
    /// its stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        self.stderr_done
            .recv_timeout(WAIT)
            .expect("stderr closed after the exit");
        (status, self.stderr())
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        let status = self.child.wait().unwrap();
        let _ = self.stderr_done.recv_timeout(WAIT);
        status
    }

    pub fn capture_lines(&self) -> Vec<serde_json::Value> {
        capture_lines(&self.capture)
    }

    pub fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Response {
        post(self.addr, headers, body)
    }

    /// POST with the sample token in the device's own scheme.
    pub fn upload(&self, body: &[u8]) -> Response {
        self.post(&[("authorization", &format!("token {TOKEN}"))], body)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver (the sample token, `capture`, `read_timeout`) started by
/// bash after `setup` (a limit: `ulimit -n 256`), through `run_as` (a
/// command that runs it as another user, or nothing).
pub fn limited_receiver(setup: &str, run_as: &str, capture: &Path, read_timeout: &str) -> Receiver {
    limited_receiver_with(setup, run_as, capture, read_timeout, &[])
}

/// `limited_receiver` with `extra` flags.
pub fn limited_receiver_with(
    setup: &str,
    run_as: &str,
    capture: &Path,
    read_timeout: &str,
    extra: &[&str],
) -> Receiver {
    let mut cmd = Command::new("bash");
    cmd.env_remove("AUTOPI_RX_TOKEN").args([
        "-c",
        &format!("{setup} && exec {run_as} \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_autopi-rx"),
        "--token",
        TOKEN,
        "--capture",
        capture.to_str().unwrap(),
        "--read-timeout",
        read_timeout,
    ]);
    cmd.args(extra);
    Receiver::spawn(&mut cmd)
}

/// A child killed (and reaped) when dropped: a test that fails midway
/// leaves no receiver running.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Empties the file at `path` in place, as `: > path` or logrotate's
/// `copytruncate` does: the same file, cut to nothing.
pub fn cut_short_in_place(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

pub fn capture_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Conn::on(stream)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// A connection on a stream connected already.
    pub fn on(stream: TcpStream) -> Conn {
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// A connection whose connect, reads and writes each give up after
    /// `timeout`.
    pub fn open_within(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn::on(stream))
    }

    /// Reads one response; `head_only` for answers to HEAD.
    pub fn read_response(&mut self, head_only: bool) -> Response {
        self.try_read_response(head_only).unwrap()
    }

    /// Reads one response, or the error that stopped it (EOF included).
    pub fn try_read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| bad(format!("header line: {l:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 100 {
            return Ok(r);
        }
        if let Some(len) = r.header("content-length") {
            let len = len
                .parse()
                .map_err(|_| bad(format!("content-length {len:?}")))?;
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body)?;
            r.body = body;
        } else if r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| bad(format!("chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                r.body.extend_from_slice(&chunk[..size]);
            }
        }
        Ok(r)
    }

    /// Sends `bytes` and reads the answer, or the error that stopped it.
    pub fn try_request(&mut self, bytes: &[u8]) -> io::Result<Response> {
        self.reader.get_mut().write_all(bytes)?;
        let head_only = bytes.starts_with(b"HEAD ");
        self.try_read_response(head_only)
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn request(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        let head_only = bytes.starts_with(b"HEAD ");
        self.read_response(head_only)
    }
}

/// Builds a request with a Content-Length.
pub fn request_bytes(method: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} /logbook/storage HTTP/1.1\r\nHost: test\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> Response {
    Conn::open(addr).request(&request_bytes("POST", headers, body))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    let mut e = GzEncoder::new(Vec::new(), Compression::new(9));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The body of a captured raw request (after the blank line).
pub fn http_body(raw: &[u8]) -> &[u8] {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &raw[at + 4..]
}

/// Runs `run` at each descriptor limit in turn until it has returned two
/// different outcomes (tiny_http running out on `accept` or on its clone
/// of the socket: which one depends on how many descriptors the process
/// inherited, so no single limit is right on every machine).
pub fn until_both_ways<T: PartialEq + std::fmt::Debug>(
    limits: std::ops::Range<u32>,
    mut run: impl FnMut(u32) -> T,
) {
    let mut seen = Vec::new();
    for limit in limits.clone() {
        let outcome = run(limit);
        if !seen.contains(&outcome) {
            seen.push(outcome);
        }
        if seen.len() == 2 {
            return;
        }
    }
    panic!("only {seen:?} seen for descriptor limits {limits:?}");
}

/// Opens connections to `addr` (at most 200) until one is refused, and
/// keeps them open: a receiver under a low descriptor limit runs out.
pub fn connect_until_refused(addr: SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    held
}

/// What a process uses right now, from /proc (Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub threads: u64,
    pub rss_kib: u64,
    /// Open descriptors (entries of /proc/PID/fd).
    pub fds: u64,
}

/// What process `pid` uses now; None once it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        threads: field("Threads:")?,
        rss_kib: field("VmRSS:")?,
        fds,
    })
}

/// Polls `cond` every few milliseconds until it holds (true) or `limit`
/// has passed (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Uploads `body` the way a device does until it is acknowledged: an
/// upload that gets no answer, or an error answer, is sent again (at most
/// 200 tries, 30 s in all). Returns the statuses seen, the last one 200
/// unless it never was.
pub fn upload_until_acknowledged(addr: SocketAddr, body: &[u8]) -> Vec<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}/logbook/storage");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    for _ in 0..200 {
        if std::time::Instant::now() > deadline {
            break;
        }
        let answer = agent
            .post(&url)
            .header("authorization", &format!("token {TOKEN}"))
            .send(body);
        match answer {
            Ok(r) => {
                seen.push(r.status().as_u16());
                if r.status() == 200 {
                    break;
                }
            }
            Err(_) => seen.push(0),
        }
    }
    seen
}

/// A CA, and a certificate it signed for 127.0.0.1 with its key, as PEM
/// files in `dir`.
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    certificates_for(dir, "127.0.0.1")
}

/// `certificates`, the certificate made out to `name`.
pub fn certificates_for(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, cert, key, _, _) = certificates_and_client_for(dir, name);
    (ca, cert, key)
}

/// `certificates`, and a client's certificate and key (`client.pem`,
/// `client-key.pem`, PKCS#8) signed by the same CA: (CA, server
/// certificate, server key, client certificate, client key).
pub fn certificates_and_client(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    certificates_and_client_for(dir, "127.0.0.1")
}

fn certificates_and_client_for(
    dir: &Path,
    name: &str,
) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["bench-client".to_string()]).unwrap();
    // A subject of its own: with rcgen's default, the CA's, OpenSSL (the
    // broker's) takes the certificate for a self-signed one.
    client.distinguished_name = rcgen::DistinguishedName::new();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench-client");
    let client = client.signed_by(&client_key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("client.pem"),
        dir.join("client-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    std::fs::write(&paths.3, client.pem()).unwrap();
    std::fs::write(&paths.4, client_key.serialize_pem()).unwrap();
    paths
}

/// One request a scripted upstream got: its head lines (request line
/// first, then each header as sent, without CRLF) and its body.
#[derive(Clone, Debug)]
pub struct Got {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

impl Got {
    /// The value of header `name` (case-insensitive), as sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The names of every header sent, lowercased.
    pub fn header_names(&self) -> Vec<String> {
        self.head
            .iter()
            .skip(1)
            .filter_map(|l| Some(l.split_once(':')?.0.to_ascii_lowercase()))
            .collect()
    }
}

/// A scripted HTTP upstream on 127.0.0.1:0: answers each request with the
/// first `(marker, status line, body)` whose marker is in its body, 200
/// `{}` to the rest, and reports every request it got. Returns its port.
pub fn scripted_upstream(
    script: Vec<(&'static str, &'static str, &'static str)>,
) -> (u16, Rx<Got>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = unbounded();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (tx, script) = (tx.clone(), script.clone());
            std::thread::spawn(move || serve_scripted(stream, &script, &tx));
        }
    });
    (port, rx)
}

/// Reads one request from `reader`: its head lines (without their line
/// ends) and its body, as long as its `Content-Length` says; None at the
/// end of the connection or when the body is cut short.
pub fn read_request(reader: &mut impl BufRead) -> Option<Got> {
    let (head, length) = read_head(reader)?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Got { head, body })
}

/// Reads a request's head from `reader`: its lines (without their line
/// ends) and what its `Content-Length` says (0 without one); None at the
/// end of the connection.
pub fn read_head(reader: &mut impl BufRead) -> Option<(Vec<String>, usize)> {
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Some((head, length));
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
        head.push(line);
    }
}

fn serve_scripted(
    stream: TcpStream,
    script: &[(&'static str, &'static str, &'static str)],
    got: &crossbeam_channel::Sender<Got>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    while let Some(Got { head, body }) = read_request(&mut reader) {
        let (status, answer) = script
            .iter()
            .find(|(marker, _, _)| body.windows(marker.len()).any(|w| w == marker.as_bytes()))
            .map_or(("200 OK", "{}"), |&(_, status, answer)| (status, answer));
        let _ = got.send(Got { head, body });
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// What a scripted server does with one request.
#[derive(Clone)]
pub enum Scripted {
    /// Writes these bytes (a whole answer, or the start of one) and goes on
    /// reading the connection's next request.
    Answer(Vec<u8>),
    /// Writes these bytes (nothing, or a head and part of a body), then
    /// holds the connection open without another byte until the server
    /// is dropped.
    Hold(Vec<u8>),
    /// Writes these bytes once `ScriptedServer::release` lets it (one
    /// release, one gated answer), then goes on as `Answer`.
    Gated(Vec<u8>),
}

/// A server on 127.0.0.1:0 that reads each request (head and
/// `Content-Length` body) and answers it with the next step of its
/// script, the last step repeating; it tells of every request it read.
pub struct ScriptedServer {
    pub url: String,
    /// One item per request read: its head.
    pub requests: Rx<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    gate: crossbeam_channel::Sender<()>,
}

impl ScriptedServer {
    pub fn start(script: Vec<Scripted>) -> ScriptedServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let (tx, requests) = unbounded();
        let (gate, gated) = unbounded::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => return,
                };
                let (tx, script, stopped) = (tx.clone(), script.clone(), stopped.clone());
                let gated = gated.clone();
                std::thread::spawn(move || serve_script(stream, &tx, &script, &stopped, &gated));
            }
        });
        ScriptedServer {
            url,
            requests,
            stop,
            gate,
        }
    }

    /// Lets one `Gated` answer go.
    pub fn release(&self) {
        self.gate.send(()).unwrap();
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One connection of a `ScriptedServer`.
fn serve_script(
    stream: TcpStream,
    told: &crossbeam_channel::Sender<String>,
    script: &Mutex<std::collections::VecDeque<Scripted>>,
    stopped: &std::sync::atomic::AtomicBool,
    gated: &Rx<()>,
) {
    use std::sync::atomic::Ordering;
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let step = {
            let mut script = script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap()
            }
        };
        let _ = told.send(head);
        match step {
            Scripted::Gated(bytes) => {
                if gated.recv().is_err() || writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Scripted::Answer(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Scripted::Hold(bytes) => {
                let _ = writer.write_all(&bytes);
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

/// A whole HTTP/1.1 answer with this status line and body.
pub fn answer(status_line: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Waits for `child` to end, killing it past `limit` (and failing), and
/// collects what it wrote (stdout and stderr still piped).
pub fn wait_output(child: &mut Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(out) = child.stdout.as_mut() {
        out.read_to_end(&mut stdout).unwrap();
    }
    if let Some(err) = child.stderr.as_mut() {
        err.read_to_end(&mut stderr).unwrap();
    }
    std::process::Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

/// `child`'s stderr, line by line as it comes (each with its line end),
/// until it ends.
pub fn stderr_lines(child: &mut Child) -> Rx<String> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(err);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The lines of `lines` up to the first holding `needle`; fails when they
/// end or `limit` passes first.
pub fn lines_until(lines: &Rx<String>, needle: &str, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    let mut said = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                said.push_str(&line);
                if line.contains(needle) {
                    return said;
                }
            }
            Err(_) => panic!("no {needle:?} within {limit:?}:\n{said}"),
        }
    }
}

//! `--forward mqtt://…` end to end: the real binary publishes to a real
//! Mosquitto that the test starts on a free loopback port (and stops), and
//! a subscriber counts what arrives on each topic. Needs the `mosquitto`
//! binary (Debian package `mosquitto`; `.ci/run` installs it).

mod common;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::value::RawValue;

const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";
const PREFIX: &str = "bench";
const DEADLINE: Duration = Duration::from_secs(40);

/// Polls `check` until it holds, failing after `DEADLINE`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Mosquitto on `port`, keeping its sessions in `dir` across restarts.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn mosquitto() -> PathBuf {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("the mosquitto broker is needed: apt-get install -y mosquitto")
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        Broker::start_with(dir, port, "", None)
    }

    /// `start`, with more configuration and another port to wait for.
    fn start_with(dir: &Path, port: u16, more: &str, also: Option<u16>) -> Broker {
        // Started as root, Mosquitto drops to its own user: let that user
        // keep its sessions here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n{more}",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        wait_until("mosquitto to listen", || {
            [Some(port), also]
                .into_iter()
                .flatten()
                .all(|p| TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        Broker {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGTERM (Mosquitto saves its sessions), then wait for the exit.
    fn stop(&mut self) {
        signal(&self.child, "TERM");
        self.child.wait().unwrap();
    }

    /// Starts it again after `stop`, on the same port with the same sessions.
    fn start_again(&mut self) {
        *self = Broker::start(&self.dir.clone(), self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (topic, payload) → times received.
type Counts = Arc<Mutex<HashMap<(String, Vec<u8>), usize>>>;

/// A subscriber to `PREFIX/#` with a persistent session (QoS 1), so that
/// what the broker acknowledged while it was away still reaches it.
fn subscribe(port: u16) -> Counts {
    let mut options = MqttOptions::new("autopi-rx-test-counter", "127.0.0.1", port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 16);
    client
        .subscribe(format!("{PREFIX}/#"), QoS::AtLeastOnce)
        .unwrap();
    let counts: Counts = Arc::default();
    let (subscribed_tx, subscribed) = crossbeam_channel::bounded(1);
    let sink = counts.clone();
    std::thread::spawn(move || {
        let _client = client;
        loop {
            match connection.recv() {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    *sink
                        .lock()
                        .unwrap()
                        .entry((p.topic.clone(), p.payload.to_vec()))
                        .or_default() += 1;
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Ok(_)) => {}
                // The broker is restarting: the next recv reconnects;
                // pace the attempts.
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return,
            }
        }
    });
    subscribed
        .recv_timeout(DEADLINE)
        .expect("the subscription acknowledged");
    counts
}

/// A batch of four record types that differs for each `i`.
fn batch(i: usize) -> Vec<u8> {
    batch_of(i, 1)
}

/// `rounds` times the four record types of `batch`, each record distinct.
fn batch_of(i: usize, rounds: usize) -> Vec<u8> {
    let ts = format!("2026-11-27T08:{:02}:{:02}", (i / 60) % 60, i % 60);
    let records: Vec<String> = (0..rounds)
        .map(|r| {
            format!(
                r#"{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":57.02241,"lon":9.89919}},"sog":1.5e1,"n":{i},"r":{r}}},{{"@t":"obd.bat","@ts":"{ts}","voltage":12.61,"state":"charging","n":{i},"r":{r}}},{{"@t":"event.vehicle.engine","@ts":"{ts}","@tag":"vehicle/engine/running","n":{i},"r":{r}}},{{"@ts":"{ts}","no_type":true,"n":{i},"r":{r}}}"#
            )
        })
        .collect();
    format!("[{}]", records.join(",")).into_bytes()
}

/// Messages the subscriber has received in all.
fn received(counts: &Counts) -> usize {
    counts.lock().unwrap().values().sum()
}

/// Each record of `body` as the topic and payload it should arrive with.
fn expected(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let records: Vec<&RawValue> = serde_json::from_slice(body).unwrap();
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.get()).unwrap();
            let kind = v["@t"].as_str().unwrap_or("_untyped").replace('.', "/");
            (
                format!("{PREFIX}/{UNIT}/{kind}"),
                r.get().as_bytes().to_vec(),
            )
        })
        .collect()
}

fn forwarder(dir: &Path, port: u16) -> Receiver {
    let capture = dir.join("capture.jsonl");
    let mut r = Receiver::spawn(
        binary()
            .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &format!("mqtt://127.0.0.1:{port}/{PREFIX}")]),
    );
    r.capture = capture;
    r
}

fn upload(r: &Receiver, body: &[u8]) {
    let auth = format!("token {TOKEN}");
    let answer = r.post(&[("authorization", &auth), ("unit-id", UNIT)], body);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Whether every expected message arrived at least as often as expected.
fn all_arrived(counts: &Counts, want: &HashMap<(String, Vec<u8>), usize>) -> bool {
    let got = counts.lock().unwrap();
    want.iter()
        .all(|(k, n)| got.get(k).copied().unwrap_or(0) >= *n)
}

fn tally(bodies: impl IntoIterator<Item = Vec<u8>>) -> HashMap<(String, Vec<u8>), usize> {
    let mut want = HashMap::new();
    for body in bodies {
        for m in expected(&body) {
            *want.entry(m).or_default() += 1;
        }
    }
    want
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_record_arrives_on_its_topic_with_its_captured_json() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let counts = subscribe(broker.port);
    let rx = forwarder(dir.path(), broker.port);
    let bodies: Vec<Vec<u8>> = (0..30).map(batch).collect();
    for b in &bodies {
        upload(&rx, b);
    }
    let want = tally(bodies);
    assert_eq!(want.len(), 30 * 4);
    wait_until("every record at the subscriber", || {
        all_arrived(&counts, &want)
    });
    // Nothing but these topics and payloads was published.
    let got = counts.lock().unwrap();
    assert!(
        got.keys().all(|k| want.contains_key(k)),
        "unexpected messages"
    );
    let topics: std::collections::BTreeSet<&str> = got.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(
        topics.into_iter().collect::<Vec<_>>(),
        [
            format!("{PREFIX}/{UNIT}/_untyped"),
            format!("{PREFIX}/{UNIT}/event/vehicle/engine"),
            format!("{PREFIX}/{UNIT}/obd/bat"),
            format!("{PREFIX}/{UNIT}/track/pos"),
        ]
    );
}

#[test]
fn broker_restart_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), free_port());
    let counts = subscribe(broker.port);
    let rx = forwarder(dir.path(), broker.port);
    // 40 batches of 100 records: the broker goes away while they are
    // still being published.
    let first: Vec<Vec<u8>> = (0..40).map(|i| batch_of(i, 25)).collect();
    for b in &first {
        upload(&rx, b);
    }
    wait_until("the first messages", || received(&counts) >= 200);
    broker.stop();
    let at_stop = received(&counts);
    assert!(
        at_stop < 4000,
        "all published before the broker stopped: nothing was tested"
    );
    // The device is answered while the broker is away, and the forward
    // shows it down.
    let second: Vec<Vec<u8>> = (40..60).map(batch).collect();
    for b in &second {
        upload(&rx, b);
    }
    wait_until("the forward to show down", || {
        let mut c = Conn::open(rx.addr);
        c.request(&request_bytes("GET", &[], b""))
            .text()
            .contains("down since")
    });
    broker.start_again();
    let want = tally(first.into_iter().chain(second));
    let deadline = Instant::now() + DEADLINE;
    while !all_arrived(&counts, &want) {
        if Instant::now() > deadline {
            let page = Conn::open(rx.addr)
                .request(&request_bytes("GET", &[], b""))
                .text();
            let got = counts.lock().unwrap();
            let missing = want
                .iter()
                .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
                .count();
            let log = std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
            panic!(
                "{missing} of {} messages missing after the restart\n{page}\nmosquitto:\n{log}",
                want.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A broker with a plain listener and a TLS one (`ca`, `cert`, `key`, and
/// `more` configuration for it): the broker and both ports.
fn tls_broker(dir: &Path, ca: &Path, cert: &Path, key: &Path, more: &str) -> (Broker, u16, u16) {
    let (plain, tls) = (free_port(), free_port());
    let broker = Broker::start_with(
        dir,
        plain,
        &format!(
            "listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{more}",
            ca.display(),
            cert.display(),
            key.display()
        ),
        Some(tls),
    );
    (broker, plain, tls)
}

/// The first headless line saying the forward target is down.
fn down_note(r: &Receiver) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no down note");
        if let Some(v) = r.stdout_json(Duration::from_millis(200))
            && v["state"] == "down"
        {
            return v;
        }
    }
}

/// Whether a record of `batch(n)` reached the subscriber.
fn published(counts: &Counts, n: usize) -> bool {
    let tag = format!("\"n\":{n}");
    counts
        .lock()
        .unwrap()
        .keys()
        .any(|(_, payload)| payload.windows(tag.len()).any(|w| w == tag.as_bytes()))
}

#[test]
fn mqtts_verifies_the_broker_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (_broker, plain, tls) = tls_broker(dir.path(), &ca, &cert, &key, "");
    let counts = subscribe(plain);
    let url = format!("mqtts://127.0.0.1:{tls}/{PREFIX}");
    let run = |name: &str, ca: Option<&Path>| {
        let capture = dir.path().join(name);
        let mut cmd = binary();
        cmd.args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &url]);
        if let Some(ca) = ca {
            cmd.arg("--forward-ca").arg(ca);
        }
        Receiver::spawn(&mut cmd)
    };

    let trusting = run("trusting.jsonl", Some(&ca));
    let bodies: Vec<Vec<u8>> = (0..5).map(batch).collect();
    for b in &bodies {
        upload(&trusting, b);
    }
    let want = tally(bodies);
    wait_until("every record over TLS", || all_arrived(&counts, &want));

    // Without the CA, the Mozilla roots do not know this broker: down,
    // saying why, and nothing published.
    let strict = run("strict.jsonl", None);
    upload(&strict, &batch(99));
    let note = down_note(&strict);
    let error = note["error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{note}");
    assert!(
        !published(&counts, 99),
        "published without a trusted certificate"
    );
}

/// A broker that requires a client certificate (Mosquitto's
/// `require_certificate`, as AWS IoT Core always does) takes the records
/// from a forwarder given `--forward-cert` and `--forward-key`; without
/// them the forwarder is down and nothing is published.
#[test]
fn mqtts_presents_the_client_certificate_a_broker_requires() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, client, client_key) = certificates_and_client(dir.path());
    let (_broker, plain, tls) =
        tls_broker(dir.path(), &ca, &cert, &key, "require_certificate true\n");
    let counts = subscribe(plain);
    let url = format!("mqtts://127.0.0.1:{tls}/{PREFIX}");
    let run = |name: &str, identity: bool| {
        let capture = dir.path().join(name);
        let mut cmd = binary();
        cmd.args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &url])
            .arg("--forward-ca")
            .arg(&ca);
        if identity {
            cmd.arg("--forward-cert")
                .arg(&client)
                .arg("--forward-key")
                .arg(&client_key);
        }
        Receiver::spawn(&mut cmd)
    };
    let presenting = run("presenting.jsonl", true);
    let bodies: Vec<Vec<u8>> = (0..3).map(batch).collect();
    for b in &bodies {
        upload(&presenting, b);
    }
    let want = tally(bodies);
    wait_until("every record over mutual TLS", || {
        all_arrived(&counts, &want)
    });

    let bare = run("bare.jsonl", false);
    upload(&bare, &batch(99));
    let note = down_note(&bare);
    let error = note["error"].as_str().unwrap();
    assert!(error.contains("CertificateRequired"), "{note}");
    assert!(
        !published(&counts, 99),
        "published without a client certificate"
    );
}

/// How `relay` passes the broker's bytes on to the receiver.
#[derive(Clone, Copy)]
enum Slow {
    /// The first read held this long (a broker slow to answer a
    /// connection), then everything as it comes.
    FirstAnswer(Duration),
    /// `bytes` at a time, each after `every` (4 bytes is one PUBACK: a
    /// broker acknowledging steadily but slowly).
    Trickle { bytes: usize, every: Duration },
}

/// A relay to the broker on a free port, passing what the broker sends as
/// `slow` says; also how many connections it took.
fn relay(broker: u16, slow: Slow) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", broker)) else {
                continue;
            };
            let (mut c_in, mut u_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut u_out);
                let _ = u_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut u_in, mut c_out) = (upstream, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let mut first = true;
                'relay: loop {
                    let n = match u_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (piece, every) = match slow {
                        Slow::FirstAnswer(delay) => {
                            if std::mem::take(&mut first) {
                                std::thread::sleep(delay);
                            }
                            (n, Duration::ZERO)
                        }
                        Slow::Trickle { bytes, every } => (bytes, every),
                    };
                    for part in buf[..n].chunks(piece) {
                        std::thread::sleep(every);
                        if c_out.write_all(part).is_err() {
                            break 'relay;
                        }
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, taken)
}

/// A broker that takes 600 ms to answer a connection is connected to once
/// and gets every record. It used to be never connected to: the forwarder
/// waited 200 ms at a time, and rumqttc starts connecting again from the
/// start when a wait ends while it connects (a hostile-upstream probe saw 5
/// connections a second and nothing published).
#[test]
fn a_broker_slow_to_answer_a_connection_is_connected_to_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let counts = subscribe(broker.port);
    let (slow, taken) = relay(broker.port, Slow::FirstAnswer(Duration::from_millis(600)));
    let rx = forwarder(dir.path(), slow);
    // A batch of no records first, then a second of quiet: it makes no
    // connection (one made for it and kept alive by short waits was
    // dialled again every 50 ms).
    upload(&rx, b"[]");
    std::thread::sleep(Duration::from_secs(1));
    let bodies: Vec<Vec<u8>> = (0..3).map(batch).collect();
    for b in &bodies {
        upload(&rx, b);
    }
    let want = tally(bodies);
    wait_until("every record at the subscriber", || {
        all_arrived(&counts, &want)
    });
    let connections = taken.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 1, "connections to the slow broker");
}

/// A batch whose acknowledgements come steadily but slowly (one every
/// 100 ms: 60 records take 6 s) is never said to have `no answer`: the
/// wait counts from the last acknowledgement. It counted from the batch's
/// start, and a long batch read `no answer for 149 s` while 20 000
/// acknowledgements came a second (a hostile-client probe).
#[test]
fn a_batch_acknowledged_slowly_is_not_said_to_have_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let counts = subscribe(broker.port);
    let every = Duration::from_millis(100);
    let (slow, _) = relay(broker.port, Slow::Trickle { bytes: 4, every });
    let rx = forwarder(dir.path(), slow);
    let body = batch_of(0, 15);
    let want = tally([body.clone()]);
    let sent = Instant::now();
    upload(&rx, &body);
    let mut under_way_for = Duration::ZERO;
    loop {
        assert!(
            sent.elapsed() < DEADLINE,
            "the batch was never acknowledged"
        );
        let page = {
            let mut c = Conn::open(rx.addr);
            c.request(&request_bytes("GET", &[], b"")).text()
        };
        let line = page
            .lines()
            .find(|l| l.starts_with("forward "))
            .unwrap_or_else(|| panic!("{page}"))
            .to_string();
        assert!(!line.contains("no answer"), "{line}");
        if line.contains("(1 forwarded)") {
            break;
        }
        if line.contains("catching up") {
            under_way_for = sent.elapsed();
        }
        std::thread::sleep(every);
    }
    assert!(all_arrived(&counts, &want));
    // Long enough that a wait counted from the start would be said (3 s).
    assert!(under_way_for > Duration::from_secs(4), "{under_way_for:?}");
}

/// A batch of no records has nothing to publish: passed over, the broker
/// not tried, so the target's state stays as it was. It turned `up` with
/// no broker listening (a review).
#[test]
fn batches_that_need_not_or_cannot_go_leave_the_target_untried() {
    let dir = tempfile::tempdir().unwrap();
    let rx = forwarder(dir.path(), free_port());
    upload(&rx, b"[]");
    let line = forward_line_once(&rx, "the empty batch passed over", "(1 forwarded)");
    assert!(line.contains(": nothing sent yet"), "{line}");
    // A batch no broker can take (a topic past 65 535 bytes) is parked
    // without trying the broker: the state stays as it was.
    let long = format!(
        r#"[{{"@t":"{}","@ts":"2026-11-27T08:00:00Z"}}]"#,
        "t".repeat(70_000)
    );
    upload(&rx, long.as_bytes());
    let line = forward_line_once(&rx, "the batch parked", "parked 1");
    assert!(line.contains(": nothing sent yet"), "{line}");
}

/// The status page's forward line, once it holds `holding`.
fn forward_line_once(rx: &Receiver, what: &str, holding: &str) -> String {
    let mut line = String::new();
    wait_until(what, || {
        let page = Conn::open(rx.addr)
            .request(&request_bytes("GET", &[], b""))
            .text();
        line = page
            .lines()
            .find(|l| l.starts_with("forward "))
            .unwrap_or_default()
            .to_string();
        line.contains(holding)
    });
    line
}

/// Records MQTT cannot carry as they are hold back none of the batches
/// after them (each did, for ever, until a hostile-client probe found it):
/// a control character in `@t` goes to a topic with `_` in its place
/// (mosquitto closes the connection for one), and a record whose topic
/// would be over 65 535 bytes, or deeper than the 201 levels mosquitto
/// takes, parks its batch, the reason in the log.
#[test]
fn records_mqtt_cannot_carry_hold_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let counts = subscribe(broker.port);
    let rx = forwarder(dir.path(), broker.port);
    let control = r#"{"@t":"obd.\u0001x","@ts":"2026-11-27T08:00:00","n":1}"#;
    upload(&rx, format!("[{control}]").as_bytes());
    let long = format!(
        r#"[{{"@t":"{}","@ts":"2026-11-27T08:00:00","n":2}}]"#,
        "a".repeat(70_000)
    );
    upload(&rx, long.as_bytes());
    // 202 levels with the prefix and the unit: mosquitto closes the
    // connection for more than 200 `/`s; 201 levels go.
    let parts = |n: usize| vec!["a"; n].join(".");
    let deep = format!(
        r#"[{{"@t":"{}","@ts":"2026-11-27T08:00:00","n":3}}]"#,
        parts(200)
    );
    upload(&rx, deep.as_bytes());
    let deepest = format!(
        r#"{{"@t":"{}","@ts":"2026-11-27T08:00:00","n":4}}"#,
        parts(199)
    );
    upload(&rx, format!("[{deepest}]").as_bytes());
    let after = batch(3);
    upload(&rx, &after);
    let mut want = tally([after]);
    want.insert(
        (
            format!("{PREFIX}/{UNIT}/obd/_x"),
            control.as_bytes().to_vec(),
        ),
        1,
    );
    want.insert(
        (
            format!("{PREFIX}/{UNIT}/{}", vec!["a"; 199].join("/")),
            deepest.as_bytes().to_vec(),
        ),
        1,
    );
    wait_until("the batches around the long one at the subscriber", || {
        all_arrived(&counts, &want)
    });
    assert!(
        counts
            .lock()
            .unwrap()
            .keys()
            .all(|(topic, _)| topic.len() < 1_000),
        "a part of the long record was published"
    );
    let parked = std::fs::read_to_string(dir.path().join("capture.jsonl.forward.parked")).unwrap();
    assert_eq!(parked.lines().count(), 2, "{parked}");
    assert!(
        parked.contains("record 0 (0-based) would go to a topic of 70"),
        "{parked}"
    );
    assert!(
        parked.contains("record 0 (0-based) would go to a topic of 202 levels"),
        "{parked}"
    );
}

/// A broker whose ACL refuses the topics acknowledges each message with
/// "not authorized" (MQTT 5): the batch is parked with that reason and the
/// next one goes on, while a topic it allows is delivered. With MQTT
/// 3.1.1, whose acknowledgements carry no reason, mosquitto acknowledged
/// the messages it dropped, and every batch was counted forwarded and was
/// lost (a hostile-upstream probe).
#[test]
fn messages_a_broker_refuses_park_their_batch_and_are_never_counted_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    // Anonymous clients may read under the prefix and publish for one
    // device, and for another its positions only.
    std::fs::write(
        &acl,
        format!(
            "topic read {PREFIX}/#\ntopic readwrite {PREFIX}/{UNIT}/#\ntopic write {PREFIX}/denied-unit/track/#\n"
        ),
    )
    .unwrap();
    let broker = Broker::start_with(
        dir.path(),
        free_port(),
        &format!("acl_file {}\n", acl.display()),
        None,
    );
    let counts = subscribe(broker.port);
    let rx = forwarder(dir.path(), broker.port);
    let auth = format!("token {TOKEN}");
    let answer = rx.post(
        &[
            ("authorization", &auth),
            ("unit-id", "denied-unit"),
            ("content-type", "application/json"),
        ],
        &batch(1),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let allowed = batch(2);
    upload(&rx, &allowed);
    let want = tally([allowed]);
    wait_until("the allowed batch at the subscriber", || {
        all_arrived(&counts, &want)
    });
    let line = forward_line_once(&rx, "the allowed batch counted", "(1 forwarded)");
    assert!(line.contains("parked 1"), "{line}");
    let parked = std::fs::read_to_string(dir.path().join("capture.jsonl.forward.parked")).unwrap();
    assert_eq!(parked.lines().count(), 1, "{parked}");
    assert!(
        parked.contains(&format!(
            "the broker refused 3 of the batch's 4 messages, the first on {PREFIX}/denied-unit/obd/bat: NotAuthorized (check the broker's ACL: may this login publish on it?)"
        )),
        "{parked}"
    );
    assert!(
        counts
            .lock()
            .unwrap()
            .keys()
            .all(|(t, _)| !t.contains("denied-unit") || t.contains("denied-unit/track/")),
        "a refused message arrived"
    );
}

/// A message over the broker's size limit parks its batch and the next
/// one goes on: mosquitto's `message_size_limit` refuses it with reason
/// code 149, and its `max_packet_size` (told in the CONNACK) has rumqttc
/// refuse to send it. The first was counted forwarded and lost with MQTT
/// 3.1.1 (a hostile-upstream probe); the second was retried for ever,
/// every later batch held back (a review).
#[test]
fn a_message_over_the_broker_s_size_limit_parks_its_batch() {
    for (setting, says) in [
        (
            "message_size_limit 300",
            "the broker refused a message of the batch as too large (reason code 149",
        ),
        (
            "max_packet_size 300",
            "over the broker's maximum packet size of 300",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_with(dir.path(), free_port(), &format!("{setting}\n"), None);
        let counts = subscribe(broker.port);
        let rx = forwarder(dir.path(), broker.port);
        let big = format!(
            r#"[{{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":800,"pad":"{}"}}]"#,
            "x".repeat(400)
        );
        upload(&rx, big.as_bytes());
        let small = batch(5);
        upload(&rx, &small);
        let want = tally([small]);
        wait_until("the small batch at the subscriber", || {
            all_arrived(&counts, &want)
        });
        let line = forward_line_once(&rx, "the small batch counted", "(1 forwarded)");
        assert!(line.contains("parked 1"), "{setting}: {line}");
        let parked =
            std::fs::read_to_string(dir.path().join("capture.jsonl.forward.parked")).unwrap();
        assert!(parked.contains(says), "{setting}: {parked}");
    }
}

/// MQTT's variable byte integer.
fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A broker of MQTT 5 written out by hand on 127.0.0.1: it accepts the
/// connection and acknowledges each PUBLISH with `reason` and a reason
/// string `says`, or with `disconnect` closes the connection for it,
/// giving that reason code.
fn refusing_broker(reason: u8, says: String, disconnect: Option<u8>) -> u16 {
    hand_broker(reason, says, disconnect, Vec::new(), true)
}

/// `refusing_broker`, its CONNACK with these properties, answering pings
/// or not.
fn hand_broker(
    reason: u8,
    says: String,
    disconnect: Option<u8>,
    connack: Vec<u8>,
    pongs: bool,
) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let says = says.clone();
            let mut connack_packet = vec![0x00, 0x00];
            connack_packet.extend(varint(connack.len()));
            connack_packet.extend(&connack);
            let mut connack_packet =
                [vec![0x20], varint(connack_packet.len()), connack_packet].concat();
            std::thread::spawn(move || {
                // One packet: its first byte and its body.
                let read_packet = |conn: &mut TcpStream| -> Option<(u8, Vec<u8>)> {
                    let mut first = [0u8; 1];
                    conn.read_exact(&mut first).ok()?;
                    let (mut len, mut shift) = (0usize, 0);
                    loop {
                        let mut b = [0u8; 1];
                        conn.read_exact(&mut b).ok()?;
                        len |= usize::from(b[0] & 0x7f) << shift;
                        shift += 7;
                        if b[0] & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    conn.read_exact(&mut body).ok()?;
                    Some((first[0], body))
                };
                while let Some((kind, body)) = read_packet(&mut conn) {
                    let answer = match kind >> 4 {
                        // CONNECT: CONNACK, success, with its properties.
                        1 => std::mem::take(&mut connack_packet),
                        3 if disconnect.is_some() => {
                            let code = disconnect.unwrap_or_default();
                            let _ = conn.write_all(&[0xe0, 0x02, code, 0x00]);
                            return;
                        }
                        // PUBLISH (QoS 1): its packet id follows the topic.
                        3 => {
                            let topic = usize::from(u16::from_be_bytes([body[0], body[1]]));
                            let id = &body[2 + topic..4 + topic];
                            let mut props = vec![0x1f];
                            props.extend((says.len() as u16).to_be_bytes());
                            props.extend(says.as_bytes());
                            let mut rest = vec![id[0], id[1], reason];
                            rest.extend(varint(props.len()));
                            rest.extend(props);
                            let mut packet = vec![0x40];
                            packet.extend(varint(rest.len()));
                            packet.extend(rest);
                            packet
                        }
                        // PINGREQ: PINGRESP.
                        12 if pongs => vec![0xd0, 0x00],
                        _ => continue,
                    };
                    if conn.write_all(&answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A broker's reason string is cut only once the secrets are out of it:
/// cut first, a password across the cut kept its first part on the
/// status page, which asks for no token (a hostile-broker probe).
#[test]
fn a_broker_s_reason_never_shows_part_of_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Its last part, looked for alone, is letters (digits turn up in a
    // port on the status page).
    let password = "MQTTPASS-secret-qzjxw";
    // Across the 300 characters a reason string is cut to.
    let port = refusing_broker(0x87, format!("{}{password}", "A".repeat(290)), None);
    let capture = dir.path().join("capture.jsonl");
    let rx = Receiver::spawn(
        binary()
            .env("AUTOPI_RX_MQTT_USERNAME", "benchuser")
            .env("AUTOPI_RX_MQTT_PASSWORD", password)
            .args(["--token", TOKEN, "--capture", capture.to_str().unwrap()])
            .args(["--forward", &format!("mqtt://127.0.0.1:{port}/{PREFIX}")]),
    );
    upload(&rx, &batch(1));
    let line = forward_line_once(&rx, "the refused batch parked", "parked 1");
    assert!(line.contains("NotAuthorized (AAAA"), "{line}");
    // Cut after the label was put in, past the password's place.
    assert!(line.contains("[mqtt pas"), "{line}");
    let parked = std::fs::read_to_string(dir.path().join("capture.jsonl.forward.parked")).unwrap();
    for shown in [&line, &parked] {
        assert!(
            !shown.contains("MQTTPASS") && !shown.contains("qzjx"),
            "{shown}"
        );
    }
}

/// A broker that closes the connection for a packet over its limit,
/// saying so (HiveMQ and EMQX do; reason code 0x95): the batch is parked,
/// where it was retried for ever (a hostile-broker probe).
#[test]
fn a_broker_closing_for_a_packet_too_large_parks_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let port = refusing_broker(0, String::new(), Some(0x95));
    let rx = forwarder(dir.path(), port);
    upload(&rx, &batch(1));
    let line = forward_line_once(&rx, "the batch parked", "parked 1");
    assert!(
        line.contains("the broker closed the connection for a message of the batch as too large"),
        "{line}"
    );
}

/// What a broker's CONNACK announces that rumqttc cannot work with is
/// said in the target's reason: Receive Maximum 0 (MQTT 5 does not allow
/// it) has rumqttc hold every message back, said at the CONNACK where it
/// read "no acknowledgement" after 30 s for a batch never sent; Server
/// Keep Alive 0 has rumqttc 0.25 ping without a pause, and a broker not
/// answering at once drops the connection ("Last pingreq isn't acked",
/// now saying why).
#[test]
fn what_a_broker_s_connack_announces_that_cannot_work_is_said() {
    let cases = [
        (
            vec![0x21, 0x00, 0x00],
            true,
            1,
            ["Receive Maximum 0", "no message"],
        ),
        (
            vec![0x13, 0x00, 0x00],
            false,
            1000,
            ["Last pingreq isn't acked", "Server Keep Alive 0"],
        ),
    ];
    for (connack, pongs, rounds, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let port = hand_broker(0, String::new(), None, connack, pongs);
        let rx = forwarder(dir.path(), port);
        upload(&rx, &batch_of(1, rounds));
        let down = down_note(&rx);
        let error = down["error"].as_str().unwrap_or_default();
        assert!(says.iter().all(|s| error.contains(s)), "{down}");
    }
}

//! Forwarding to an MQTT broker, the fleet path: each record of a batch is
//! published on `PREFIX/<unit-id>/<@t with '.' as '/'>` (the topic naming
//! of the device's own MQTT returner, under a prefix and the unit id),
//! its payload the record's JSON exactly as captured, with QoS 1. A batch
//! counts as delivered once the broker acknowledged every one of its
//! records on one connection; any failure drops the connection (and the
//! client's in-flight state with it) and the whole batch is published
//! again on a fresh one: at least once, never lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::Error as MqttError;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet, PubAckReason};
use rumqttc::v5::{
    Client, Connection, ConnectionError, Event, MqttOptions, RecvTimeoutError, StateError,
};
use rumqttc::{TlsConfiguration, Transport};
use serde_json::value::RawValue;

use super::{Attempt, Deliver, Heard};
use crate::capture::{Durable, OutboxLine};

/// How long a batch may wait for its acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Records published ahead of their acknowledgements.
const WINDOW: usize = 100;
/// Largest record published (a broker's own limit may be lower).
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// A checked `--forward mqtt(s)://HOST[:PORT]/PREFIX` target.
#[derive(Clone)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Topic levels before the unit id; may be empty.
    pub prefix: String,
    /// The URL as shown.
    pub name: String,
    username: Option<String>,
    password: Option<String>,
    /// CA certificates (DER) trusted instead of the Mozilla roots.
    ca: Option<Arc<Vec<Vec<u8>>>>,
    /// The client certificate, for a broker that asks for one.
    identity: Option<Arc<super::ClientIdentity>>,
}

impl std::fmt::Debug for MqttTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MqttTarget {
    /// What is never shown, with what is shown in its place: the password,
    /// where a broker's answer (or its certificate) quotes it. Not the
    /// username: a name, often a short common word (`mqtt`, `user`), which
    /// taken out would mangle every reason that holds it (a reviewer's
    /// finding); the receiver itself never prints it.
    pub fn secrets(&self) -> Vec<(String, &'static str)> {
        self.password
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| (p.clone(), "[mqtt password]"))
            .collect()
    }

    pub fn parse(url: &str, credentials: &super::Credentials) -> Result<MqttTarget, String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let tls = scheme.eq_ignore_ascii_case("mqtts");
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(
                "--forward: put no credentials in the URL; give them in AUTOPI_RX_MQTT_USERNAME and AUTOPI_RX_MQTT_PASSWORD"
                    .into(),
            );
        }
        let default_port = if tls { 8883 } else { 1883 };
        let bad_port = || {
            "--forward: the port after the broker's host is not a port (a number from 0 to 65535)"
                .to_string()
        };
        // `[::1]` or `[::1]:1884`; else `host` or `host:1884`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                    "--forward: an IPv6 broker host opened with [ is not closed with ]".to_string()
                })?;
                match after {
                    "" => (host, default_port),
                    _ => match after.strip_prefix(':').map(str::parse::<u16>) {
                        Some(Ok(port)) => (host, port),
                        _ => return Err(bad_port()),
                    },
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad_port())?),
                None => (authority, default_port),
            },
        };
        if host.is_empty() {
            return Err("--forward must name a broker host (mqtt://HOST[:PORT]/PREFIX)".into());
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(
                "--forward: an IPv6 broker host goes in brackets (mqtt://[::1]:1883/PREFIX)".into(),
            );
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.contains(unfit_in_topic) {
            return Err(
                "--forward: the topic prefix may not hold '+', '#' or NUL, nor another control character or a noncharacter"
                    .into(),
            );
        }
        if credentials.mqtt_password.is_some() && credentials.mqtt_username.is_none() {
            return Err("AUTOPI_RX_MQTT_PASSWORD is set without AUTOPI_RX_MQTT_USERNAME".into());
        }
        Ok(MqttTarget {
            host: host.to_string(),
            port,
            tls,
            prefix: prefix.to_string(),
            name: format!(
                "{}://{authority}/{prefix}",
                if tls { "mqtts" } else { "mqtt" }
            ),
            username: credentials.mqtt_username.clone(),
            password: credentials.mqtt_password.clone(),
            ca: credentials.ca.clone(),
            identity: credentials.identity.clone(),
        })
    }

    fn options(&self) -> MqttOptions {
        let id = format!("autopi-rx-{}-{}", std::process::id(), rand::random::<u32>());
        let mut o = MqttOptions::new(id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_PACKET as u32))
            .set_outgoing_inflight_upper_limit(WINDOW as u16);
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if self.tls {
            o.set_transport(Transport::tls_with_config(tls_config(
                self.ca.as_deref(),
                self.identity.as_deref(),
            )));
        }
        o
    }
}

/// rustls with the ring provider (as ureq uses) and the Mozilla roots, or
/// only the `--forward-ca` ones; `identity` is presented to a broker that
/// asks for a client certificate (AWS IoT Core always does).
fn tls_config(
    ca: Option<&Vec<Vec<u8>>>,
    identity: Option<&super::ClientIdentity>,
) -> TlsConfiguration {
    let roots = match ca {
        Some(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = certs
                .iter()
                .map(|der| rustls::pki_types::CertificateDer::from(der.clone()));
            // Certificates that are not CAs are left out, as curl does.
            roots.add_parsable_certificates(certs);
            roots
        }
        None => rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some(id) => config.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(id.certified.clone()),
        )),
        None => config.with_no_client_auth(),
    };
    TlsConfiguration::Rustls(Arc::new(config))
}

/// The MQTT forwarder; connects when it first has something to publish.
pub struct Mqtt {
    target: MqttTarget,
    /// The client, its events, and whether the broker's CONNACK came on
    /// this connection.
    connection: Option<(Client, Connection, bool)>,
    /// Told of each acknowledgement.
    heard: Heard,
    /// `target.secrets()`, made once: taken out of a broker's reason
    /// string before it is cut.
    secrets: Vec<(String, &'static str)>,
    /// The broker's latest CONNACK set Server Keep Alive 0 (see
    /// `KEEP_ALIVE_OFF`).
    keep_alive_off: bool,
}

/// Said after a ping left unanswered on a connection whose broker set
/// Server Keep Alive 0 (keep-alive off, which MQTT 5 allows): rumqttc 0.25 takes it as a
/// zero interval and pings without a pause, dropping the connection as
/// soon as one ping is not answered before the next ("Last pingreq isn't
/// acked"): small batches go, large ones never do (a hostile-broker probe:
/// 788 connections in 20 s).
const KEEP_ALIVE_OFF: &str = " (the broker's CONNACK set Server Keep Alive 0, keep-alive off, which rumqttc 0.25 takes as pinging without a pause: a broker that sends no Server Keep Alive, or one above 0, is not met by this)";

impl Mqtt {
    pub fn new(target: MqttTarget, heard: Heard) -> Mqtt {
        Mqtt {
            secrets: target.secrets(),
            target,
            connection: None,
            heard,
            keep_alive_off: false,
        }
    }
}

/// `PREFIX/<unit-id>/<@t with '.' as '/'>`; characters a topic cannot
/// hold become `_`, as does a `/` in the unit id: `+` and `#`, and what
/// MQTT 3.1.1 lets a broker close the connection for (NUL, the control
/// characters U+0001–U+001F and U+007F–U+009F, the noncharacters).
/// mosquitto does close it, so one such `@t` held every later batch back.
pub fn topic(prefix: &str, unit_id: Option<&str>, record_type: Option<&str>) -> String {
    let clean = |s: &str| s.replace(unfit_in_topic, "_");
    let unit = clean(unit_id.unwrap_or("_unknown")).replace('/', "_");
    let kind = clean(record_type.unwrap_or("_untyped")).replace('.', "/");
    if prefix.is_empty() {
        // A topic starting with `$` is the broker's own (`$SYS`): mosquitto
        // took such messages and gave them to no subscriber.
        let unit = match unit.strip_prefix('$') {
            Some(rest) => format!("_{rest}"),
            None => unit,
        };
        format!("{unit}/{kind}")
    } else {
        format!("{prefix}/{unit}/{kind}")
    }
}

/// One record's message: its topic (`topic`, from its `@t` read as the
/// dashboard reads it, a lone surrogate escape as U+FFFD) and the record's
/// JSON exactly as captured.
fn message(prefix: &str, unit_id: Option<&str>, record: &RawValue) -> (String, Vec<u8>) {
    (
        record_topic(prefix, unit_id, record),
        record.get().as_bytes().to_vec(),
    )
}

/// The topic of `record`'s message (see `message`).
fn record_topic(prefix: &str, unit_id: Option<&str>, record: &RawValue) -> String {
    let t = crate::record::type_of(&crate::batch::readable(record.get()));
    topic(prefix, unit_id, t.as_deref())
}

impl Deliver for Mqtt {
    fn deliver(&mut self, line: &OutboxLine) -> Attempt {
        // The records are read one at a time, twice: once to check each
        // message, once to publish them. Held at once, the messages took
        // about 160 bytes a record and the records' list 16 more (an
        // 11-million-record batch of `{}`s, 32 MiB, took the receiver to
        // 1.8 GB; a hostile-client probe, December 7).
        let text = line.records.get();
        let prefix = self.target.prefix.clone();
        let unit = line.unit_id.as_deref();
        // A record MQTT cannot carry would fail every time, holding back
        // every batch after it: the batch is set aside, as a refusal is.
        let mut unfit = None;
        let counted = crate::batch::each_record(text, |i, r| {
            let topic = record_topic(&prefix, unit, r);
            unfit = unpublishable(i, &topic, r.get().as_bytes());
            unfit.is_none()
        });
        let total = match (counted, unfit) {
            (_, Some(reason)) => return Attempt::Unsendable { reason },
            (Err(e), None) => {
                return Attempt::Unsendable {
                    reason: format!("its records are not a JSON array: {e}"),
                };
            }
            (Ok(0), None) => {
                // No connection is made for nothing (see `publish_all`).
                return Attempt::NothingToSend;
            }
            (Ok(n), None) => n,
        };
        // Made on a thread of their own while they are published, a few
        // at a time; it stops once nobody takes them.
        let (tx, rx) = crossbeam_channel::bounded(WINDOW);
        let published = std::thread::scope(|scope| {
            let made = std::thread::Builder::new()
                .name("mqtt-messages".into())
                .spawn_scoped(scope, move || {
                    let _ = crate::batch::each_record(text, |_, r| {
                        tx.send(message(&prefix, unit, r)).is_ok()
                    });
                });
            match made {
                Ok(_) => self.publish_all(total, rx.into_iter()),
                Err(e) => Err(format!("no thread to read the batch with: {e}")),
            }
        });
        match published {
            Ok(None) => Attempt::Delivered,
            // The broker took the batch's messages and said it refused
            // some: set aside, as an HTTP upstream's 4xx is.
            Ok(Some(reason)) => {
                // A refusal rumqttc could not read dropped the connection.
                self.connection = None;
                Attempt::Park { reason }
            }
            Err(error) => {
                // A fresh client next time: nothing half-sent lingers.
                self.connection = None;
                Attempt::Retry { error, after: None }
            }
        }
    }

    fn idle(&mut self, durable: &Durable, seen: u64, wait: Duration) {
        // Only a connection the broker answered is kept alive here: short
        // waits would start a connect in progress over and over.
        let Some((_, connection, true)) = &mut self.connection else {
            durable.wait_beyond(seen, wait);
            return;
        };
        // Keeps the connection alive (pings) while waiting for lines.
        let until = Instant::now() + wait;
        while Instant::now() < until && durable.synced() <= seen {
            match connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                    self.connection = None;
                    return;
                }
            }
        }
    }
}

impl Mqtt {
    /// Publishes every message with QoS 1 and returns once the broker
    /// acknowledged them all: with the reason it refused some for, if it
    /// did (MQTT 5's acknowledgements say so; 3.1.1's acknowledge a
    /// message its ACL or size limit dropped as if it were delivered, and
    /// such batches were counted forwarded and were lost: a
    /// hostile-upstream probe).
    fn publish_all(
        &mut self,
        total: usize,
        mut queue: impl Iterator<Item = (String, Vec<u8>)>,
    ) -> Result<Option<String>, String> {
        // A batch of no records (`[]`) has nothing to publish: no
        // connection is made for it (one made and never polled would be
        // connected by `idle`'s short waits, each starting over).
        if total == 0 {
            return Ok(None);
        }
        let mut refused = Refused::default();
        let mut largest = 0;
        // Topics handed to rumqttc and not yet sent, oldest first; once
        // sent, by packet id (rumqttc says which id each took, in the
        // order they were handed to it), so that a refusal names its
        // topic also where a broker acknowledges out of order.
        let mut handed: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut by_id: std::collections::HashMap<u16, String> = std::collections::HashMap::new();
        let (client, connection, connected) = self.connection.get_or_insert_with(|| {
            let (client, connection) = Client::new(self.target.options(), WINDOW + 10);
            (client, connection, false)
        });
        let (mut sent, mut acked) = (0usize, 0usize);
        let mut deadline = Instant::now() + ACK_TIMEOUT;
        while acked < total {
            while sent < total && sent - acked < WINDOW {
                let Some((topic, payload)) = queue.next() else {
                    return Err("the batch's records ended before they were all read".into());
                };
                largest = largest.max(payload.len());
                handed.push_back(topic.clone());
                client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload)
                    .map_err(|e| format!("cannot publish: {e}"))?;
                sent += 1;
            }
            // rumqttc starts connecting again from the start when a wait
            // ends while it connects: until the CONNACK, one wait runs to
            // the deadline (with 200 ms, a broker slower than that to
            // answer was never connected to, and was connected to again 5
            // times a second; a hostile-upstream probe found it).
            let wait = if *connected {
                Duration::from_millis(200)
            } else {
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            match connection.recv_timeout(wait) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    *connected = true;
                    let said = ack.properties.as_ref();
                    self.keep_alive_off = said.and_then(|p| p.server_keep_alive) == Some(0);
                    // rumqttc then holds every message back, waiting for
                    // room the broker never gives: it read "no
                    // acknowledgement within 30 s" though nothing was sent.
                    if said.and_then(|p| p.receive_max) == Some(0) {
                        return Err("the broker's CONNACK set Receive Maximum 0, which MQTT 5 does not allow: no message can be sent to it".into());
                    }
                }
                // HiveMQ and EMQX close the connection for a packet over
                // their limit, saying why: refused for good, parked (it
                // was retried for ever: a hostile-broker probe).
                Ok(Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                    reason_code: DisconnectReasonCode::PacketTooLarge,
                    ..
                }))) => {
                    return Ok(Some(format!(
                        "the broker closed the connection for a message of the batch as too large (reason code 0x95, packet too large; the batch's largest record so far is {largest} bytes of JSON)"
                    )));
                }
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Publish(id)))) => {
                    if let Some(topic) = handed.pop_front() {
                        by_id.insert(id, topic);
                    }
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    let topic = by_id.remove(&ack.pkid).unwrap_or_default();
                    if let Some(error) = refused.note(&ack, &topic, &self.secrets) {
                        return Err(error);
                    }
                    acked += 1;
                    deadline = Instant::now() + ACK_TIMEOUT;
                    self.heard.now();
                }
                Ok(Ok(_)) => {}
                // mosquitto acknowledges a message over its
                // `message_size_limit` with 149 (packet too large), which
                // MQTT 5 does not give a PUBACK; rumqttc refuses that as
                // malformed (calling it a connect return code) and drops
                // the connection. A refusal for good: parked.
                Ok(Err(ConnectionError::MqttState(StateError::Deserialization(
                    MqttError::InvalidConnectReturnCode(149),
                )))) if *connected => {
                    return Ok(Some(format!(
                        "the broker refused a message of the batch as too large (reason code 149, packet too large: its message_size_limit is below the batch's largest record, {largest} bytes of JSON)"
                    )));
                }
                // A broker's Maximum Packet Size (its CONNACK says it;
                // mosquitto's `max_packet_size`, EMQX's default): rumqttc
                // refuses the publish itself and drops the connection. It
                // was retried for ever, every later batch held back (a
                // review): refused for good, parked.
                Ok(Err(ConnectionError::MqttState(
                    StateError::OutgoingPacketTooLarge { pkt_size, max }
                    | StateError::Deserialization(MqttError::OutgoingPacketTooLarge {
                        pkt_size,
                        max,
                    }),
                ))) => {
                    return Ok(Some(format!(
                        "a message of the batch is {pkt_size} bytes, over the broker's maximum packet size of {max} (its CONNACK said so)"
                    )));
                }
                Ok(Err(e)) if !*connected => {
                    // A broker of MQTT 3.1.1 only closes the connection
                    // (or answers in 3.1.1) when asked for MQTT 5; the
                    // hint is for that alone (it was added to a name not
                    // resolved: a review).
                    let closed = match &e {
                        ConnectionError::MqttState(
                            StateError::ConnectionAborted | StateError::Deserialization(_),
                        ) => true,
                        ConnectionError::Io(io) => matches!(
                            io.kind(),
                            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                        ),
                        _ => false,
                    };
                    let hint = if closed {
                        " (a broker that speaks only MQTT 3.1.1 closes the connection so: autopi-rx publishes with MQTT 5)"
                    } else {
                        ""
                    };
                    return Err(format!("connecting to the broker: {}{hint}", describe(&e)));
                }
                Ok(Err(e)) => {
                    let pinged = matches!(e, ConnectionError::MqttState(StateError::AwaitPingResp));
                    let hint = if pinged && self.keep_alive_off {
                        KEEP_ALIVE_OFF
                    } else {
                        ""
                    };
                    return Err(format!("{}{hint}", describe(&e)));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("the client stopped".into()),
                Err(RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    let what = if *connected {
                        "acknowledgement"
                    } else {
                        "CONNACK (the answer to connecting)"
                    };
                    return Err(format!(
                        "no {what} from the broker within {} s",
                        ACK_TIMEOUT.as_secs()
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        Ok(refused.reason(total))
    }
}

/// Most characters of a broker's reason string a reason quotes.
const REASON_STRING_CHARS: usize = 300;

/// The messages of a batch the broker refused: how many, and the first's
/// reason and topic.
#[derive(Default)]
struct Refused {
    count: usize,
    first: Option<(String, String)>,
}

impl Refused {
    /// Notes one acknowledgement: a refusal for good is counted; one the
    /// broker may take later (its quota, an error of its own) is an error
    /// the whole batch is sent again for.
    fn note(
        &mut self,
        ack: &rumqttc::v5::mqttbytes::v5::PubAck,
        topic: &str,
        secrets: &[(String, &str)],
    ) -> Option<String> {
        // Read only for a refusal (a broker may say something with every
        // acknowledgement), and cut once the secrets are out of it (cut
        // first, a password across the cut kept its first part: a
        // hostile-broker probe), short enough to leave the hint after it
        // whole.
        let said = || {
            ack.properties
                .as_ref()
                .and_then(|p| p.reason_string.as_deref())
                .map(|r| {
                    let r = crate::scrub::all_taken_out(r.to_string(), secrets);
                    format!(" ({})", crate::text::cut(&r, REASON_STRING_CHARS))
                })
                .unwrap_or_default()
        };
        match ack.reason {
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
            PubAckReason::NotAuthorized
            | PubAckReason::TopicNameInvalid
            | PubAckReason::PayloadFormatInvalid => {
                self.count += 1;
                self.first.get_or_insert_with(|| {
                    (format!("{:?}{}", ack.reason, said()), topic.to_string())
                });
                None
            }
            other => Some(format!(
                "the broker did not take a message: {other:?}{}; the batch goes again",
                said()
            )),
        }
    }

    /// Why the batch is set aside, if the broker refused any of it.
    fn reason(&self, total: usize) -> Option<String> {
        let (first, topic) = self.first.as_ref()?;
        let hint = if first.starts_with("NotAuthorized") {
            " (check the broker's ACL: may this login publish on it?)"
        } else {
            ""
        };
        Some(format!(
            "the broker refused {} of the batch's {total} messages, the first on {topic}: {first}{hint}",
            self.count
        ))
    }
}

/// What a topic cannot hold: the wildcards `+` and `#`, and what MQTT
/// lets a broker close the connection for (control characters, NUL among
/// them, and Unicode's noncharacters).
fn unfit_in_topic(c: char) -> bool {
    matches!(c, '+' | '#') || c.is_control() || {
        let n = u32::from(c);
        (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
    }
}

/// Longest topic MQTT can name (its length is written in two bytes).
const MAX_TOPIC: usize = u16::MAX as usize;

/// Most levels in a topic: mosquitto refuses a topic of more than 200
/// `/`s (`TOPIC_HIERARCHY_LIMIT`) by closing the connection, so a record
/// whose `@t` held 200 dots held every later batch back for ever (a
/// hostile-client probe, December 7). MQTT itself sets no limit; a
/// broker with a lower one still holds such a batch back.
const MAX_LEVELS: usize = 201;

/// Why record `index` (0-based) cannot be published, if it cannot: its
/// topic is over `MAX_TOPIC` bytes (rumqttc writes the length's low two
/// bytes without a check, and the broker read the rest of the topic as
/// the packet id and the payload), or the message is over `MAX_PACKET`.
fn unpublishable(index: usize, topic: &str, payload: &[u8]) -> Option<String> {
    let levels = topic.bytes().filter(|b| *b == b'/').count() + 1;
    if levels > MAX_LEVELS {
        return Some(format!(
            "record {index} (0-based) would go to a topic of {levels} levels (the prefix, the unit id and a level for each part of its @t), over the {MAX_LEVELS} mosquitto takes (it closes the connection for a deeper one)"
        ));
    }
    if topic.len() > MAX_TOPIC {
        return Some(format!(
            "record {index} (0-based) would go to a topic of {} bytes (its @t, unit id and the prefix), over the {MAX_TOPIC} an MQTT topic can hold",
            topic.len()
        ));
    }
    // The fixed header (at most 5 bytes), the topic's length and the
    // packet id (2 each), then the topic and the record.
    let size = 5 + 2 + topic.len() + 2 + payload.len();
    (size > MAX_PACKET).then(|| {
        format!(
            "record {index} (0-based) is a message of {size} bytes, over the {MAX_PACKET} this forwarder publishes in one packet"
        )
    })
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        ConnectionError::MqttState(StateError::Deserialization(
            MqttError::InvalidConnectReturnCode(code),
        )) => format!(
            "the broker sent reason code {code} where MQTT 5 allows none such (rumqttc cannot read it)"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_returner_under_prefix_and_unit() {
        assert_eq!(
            topic("bench", Some("ee3d"), Some("track.pos")),
            "bench/ee3d/track/pos"
        );
        assert_eq!(topic("", Some("ee3d"), Some("obd.bat")), "ee3d/obd/bat");
        assert_eq!(topic("a/b", None, None), "a/b/_unknown/_untyped");
        assert_eq!(topic("p", Some("x/y+"), Some("odd#.t")), "p/x_y_/odd_/t");
        // A topic of the broker's own (`$SYS`) only without a prefix.
        assert_eq!(topic("", Some("$SYS"), Some("obd.rpm")), "_SYS/obd/rpm");
        assert_eq!(topic("p", Some("$SYS"), Some("$x")), "p/$SYS/$x");
        let deep = |n| unpublishable(0, &vec!["a"; n].join("/"), b"{}");
        assert_eq!(deep(201), None);
        assert!(deep(202).is_some_and(|r| r.contains("202 levels")));
        // What a broker may close the connection for.
        assert_eq!(
            topic(
                "p",
                Some("u\u{1b}1"),
                Some("a\u{1}b\u{7f}\u{85}\t.\u{fdd0}\u{fffe}\u{1ffff}é😀")
            ),
            "p/u_1/a_b___/___é😀"
        );
    }

    #[test]
    fn a_lone_surrogate_in_the_type_is_read_for_the_topic_and_kept_in_the_payload() {
        let record: Box<RawValue> =
            serde_json::from_str(r#"{"@t":"obd.\udc80x","@ts":"2026-12-05T08:00:00Z"}"#).unwrap();
        let (topic, payload) = message("p", Some("ee3d"), &record);
        assert_eq!(topic, "p/ee3d/obd/\u{fffd}x");
        assert_eq!(payload, record.get().as_bytes());
        // Of `@t` given twice, the last, as every reader takes it (a
        // review: such a record went to `_untyped`); one that is no
        // string is none.
        for (json, want) in [
            (r#"{"@t":"obd.speed","@t":"obd.rpm"}"#, "p/u/obd/rpm"),
            (r#"{"@t":"obd.rpm","@t":1}"#, "p/u/_untyped"),
            (r#"{"@t":"a\u002eb"}"#, "p/u/a/b"),
        ] {
            let record: Box<RawValue> = serde_json::from_str(json).unwrap();
            assert_eq!(message("p", Some("u"), &record).0, want, "{json}");
        }
    }

    #[test]
    fn a_record_mqtt_cannot_carry_is_named() {
        let long = "t".repeat(MAX_TOPIC);
        assert_eq!(unpublishable(0, &long, b"{}"), None);
        let over = unpublishable(3, &format!("{long}x"), b"{}").unwrap();
        assert!(
            over.starts_with("record 3 (0-based)") && over.contains("65536 bytes"),
            "{over}"
        );
        let at_limit = vec![b'x'; MAX_PACKET - 5 - 2 - 1 - 2];
        assert_eq!(unpublishable(0, "t", &at_limit), None);
        let too_big = vec![b'x'; MAX_PACKET];
        assert!(
            unpublishable(1, "t", &too_big)
                .unwrap()
                .contains("16777226 bytes")
        );
    }

    #[test]
    fn urls_give_host_port_prefix_and_never_credentials() {
        let none = super::super::Credentials::default();
        let t = MqttTarget::parse("mqtt://127.0.0.1:1884/bench/a/", &none).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("127.0.0.1", 1884, "bench/a")
        );
        let t = MqttTarget::parse("mqtts://broker.example", &none).unwrap();
        assert_eq!((t.port, t.tls, t.prefix.as_str()), (8883, true, ""));
        assert!(MqttTarget::parse("mqtt://u:p@h/x", &none).is_err());
        assert!(MqttTarget::parse("mqtt://h:x/x", &none).is_err());
        assert!(MqttTarget::parse("mqtt://h/a/#", &none).is_err());
        assert!(MqttTarget::parse("mqtt://h/a\u{1}b", &none).is_err());
        // An IPv6 host in brackets, with or without a port (`[::1]/x`
        // was refused, its port read as "1]": a review).
        for (url, port) in [("mqtt://[::1]/bench", 1883), ("mqtts://[::1]:1884/b", 1884)] {
            let t = MqttTarget::parse(url, &none).unwrap();
            assert_eq!((t.host.as_str(), t.port), ("::1", port), "{url}");
        }
        for bad in [
            "mqtt://[::1/x",
            "mqtt://[::1]x/x",
            "mqtt://[::1]:/x",
            "mqtt://::1/x",
        ] {
            assert!(MqttTarget::parse(bad, &none).is_err(), "{bad}");
        }
        // A refusal quotes no part of the URL (a password written with a
        // slash read as the port, and was quoted).
        let e = MqttTarget::parse("mqtt://u:S3CRET/PASS@h/x", &none).unwrap_err();
        assert!(e.contains("is not a port") && !e.contains("S3CRET"), "{e}");
    }
}

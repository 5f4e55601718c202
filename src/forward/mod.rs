//! The forward wing: the capture is the outbox. One thread per `--forward`
//! target follows the capture file (never past what the writer synced),
//! passes each acknowledged batch on in order, retries with backoff while
//! the target is down, parks what the target refuses for good, and moves
//! the target's cursor in `<capture>.forward` after each acknowledgement.
//! Nothing here is on the device's answer path: the receiver never waits
//! for a forwarder, and a forwarder only reads what is already saved.

pub mod cursor;
pub mod http;
pub mod mqtt;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use jiff::Timestamp;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::capture::{DeviceBatch, Durable, OutboxLine, Reader, Tail};
use crate::upstream::{ForwardBoard, ForwardStatus, Link};
use cursor::{Cursors, Parked};

/// First wait after a failed attempt; doubled after each failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often an idle forwarder looks for new lines or a stop.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// A backlog younger than this is live traffic (see `noted_kind`).
const LIVE_LAG: Duration = Duration::from_secs(5);

/// Where to forward, checked.
#[derive(Clone, Debug)]
pub enum Target {
    Http(http::HttpTarget),
    Mqtt(mqtt::MqttTarget),
}

impl Target {
    /// The target as shown everywhere: no credentials, no query.
    pub fn name(&self) -> &str {
        match self {
            Target::Http(t) => &t.name,
            Target::Mqtt(t) => &t.name,
        }
    }

    /// What is never shown (credentials, a URL's query), with what is
    /// shown in its place.
    fn secrets(&self) -> Vec<(String, &'static str)> {
        match self {
            Target::Http(t) => t.secrets(),
            Target::Mqtt(t) => t.secrets(),
        }
    }
}

/// Everything the forwarders need, already checked.
pub struct Settings {
    pub targets: Vec<Target>,
    /// `--forward-all`: every captured line, also batches the device was
    /// not told were saved and re-sends of batches already passed on.
    pub all: bool,
}

/// Credentials for the targets, given by flags and the environment.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `authorization` header value for HTTP targets (`token T`/`Bearer T`).
    pub authorization: Option<String>,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// CA certificates (DER) trusted instead of the Mozilla roots.
    pub ca: Option<Arc<Vec<Vec<u8>>>>,
    /// `--forward-cert` and `--forward-key`: presented to TLS targets
    /// that ask for a client certificate.
    pub identity: Option<Arc<ClientIdentity>>,
    /// `--forward-timeout` (HTTP targets); none given: `http::TIMEOUT`.
    pub timeout: Option<Duration>,
}

/// Reads the CA certificates of a PEM file (`--forward-ca`).
pub fn load_ca(path: &Path) -> Result<Arc<Vec<Vec<u8>>>, String> {
    read_ca("--forward-ca", path)
}

/// The CA certificates of the PEM file given with `flag`, if one was.
pub fn load_ca_of(flag: &str, path: Option<&Path>) -> Result<Option<Arc<Vec<Vec<u8>>>>, String> {
    path.map(|path| read_ca(flag, path)).transpose()
}

/// The most of a CA file read: Mozilla's whole bundle is about 200 KiB.
const CA_FILE_MOST: u64 = 16 << 20;

/// Reads the CA certificates of a PEM file given with `flag`.
fn read_ca(flag: &str, path: &Path) -> Result<Arc<Vec<Vec<u8>>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = crate::input::read_at_most(path, CA_FILE_MOST)
        .map_err(|e| format!("{flag} {}: {e}", crate::text::path(&path)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{flag} {}: not PEM certificates: {e}",
                crate::text::path(&path)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it",
            crate::text::path(&path)
        ));
    }
    Ok(Arc::new(certs))
}

/// A client certificate chain and its private key (`--forward-cert`,
/// `--forward-key`), checked at start to be usable and to belong
/// together: ureq builds its TLS configuration with `expect` on them, so
/// a key that does not fit would otherwise panic the forwarder at its
/// first connection.
pub struct ClientIdentity {
    /// The chain and the loaded key, as rustls presents them (MQTT).
    pub certified: Arc<rustls::sign::CertifiedKey>,
    /// The same, as ureq takes them (HTTP): made from the PEM text, since
    /// ureq 3 gives no way to name a DER key's kind (`KeyKind` is not
    /// exported).
    pub http: ureq::tls::ClientCert,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

/// The most of a key file read (a 16 384-bit RSA key is 13 KiB of PEM).
const KEY_FILE_MOST: u64 = 1 << 20;

impl ClientIdentity {
    /// Reads `cert` (PEM certificates, the client's own first) and `key`
    /// (one PEM private key: PKCS#8, PKCS#1 or SEC1, not encrypted).
    /// Messages name the files and what is wrong, never the key's bytes.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ClientIdentity, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = read_ca("--forward-cert", cert_path)?
            .iter()
            .map(|der| CertificateDer::from(der.clone()))
            .collect();
        let named = |what: &str| format!("--forward-key {}: {what}", crate::text::path(&key_path));
        let pem = crate::input::read_at_most(key_path, KEY_FILE_MOST)
            .map_err(|e| named(&e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            named(&match e {
                _ if memchr::memmem::find(&pem, b"ENCRYPTED").is_some() => {
                    "the key is encrypted with a passphrase: give it decrypted \
                     (openssl pkey -in KEY -out PLAIN), readable by this user only"
                        .to_string()
                }
                rustls::pki_types::pem::Error::NoItemsFound => "no private key in it (PEM: \
                     BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .to_string(),
                // What the PEM parser says names a line or a position,
                // never the key's own bytes.
                e => format!("not a PEM private key: {e}"),
            })
        })?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider)
            .map_err(|e| {
                format!(
                    "--forward-cert {} and --forward-key {}: {}",
                    crate::text::path(&cert_path),
                    crate::text::path(&key_path),
                    match e {
                        rustls::Error::InconsistentKeys(_) => "the key is not the \
                                certificate's (the first certificate holds another public key)"
                            .to_string(),
                        e => format!("the key cannot be used: {e}"),
                    }
                )
            })?;
        let http_key = ureq::tls::PrivateKey::from_pem(&pem)
            .map_err(|e| named(&format!("not a private key ureq takes: {e}")))?;
        let http_chain: Vec<ureq::tls::Certificate<'static>> = chain
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        Ok(ClientIdentity {
            certified: Arc::new(certified),
            http: ureq::tls::ClientCert::new_with_certs(&http_chain, http_key),
        })
    }
}

/// `text` as the status page shows it to anyone on the network (it asks
/// for no token): `target`'s path written `/…` wherever it is quoted, a
/// webhook's path may hold its key. Given the target itself, its name
/// (`https://hooks.example/…`); given its state, the reasons an upstream
/// gave (a 404's "Cannot POST /hooks/KEY", a redirect's location: a
/// reviewer's finding). The operator's own screen and output keep the path
/// (the query is never shown anywhere).
///
/// The path is taken out as written and decoded (`/hooks/Ab%2BCd` quoted
/// as `/hooks/Ab+Cd`, a review), the longest spelling first.
pub fn public_text(target: &str, text: &str) -> String {
    let path = target
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .filter(|p| p.len() > 1);
    match path {
        Some(p) => {
            let mut spellings = http::spelled_as_read(p);
            spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
            // A decoded spelling short enough to be anything (`/%2F` reads
            // `//`, which every URL holds: a review) is left alone.
            spellings
                .iter()
                .filter(|s| s.as_str() == p || s.len() >= 8)
                .fold(text.to_string(), |text, s| text.replace(s.as_str(), "/…"))
        }
        None => text.to_string(),
    }
}

/// Most characters of a reason a target's state or the parked log shows.
/// An upstream's words are cut to `upload::REASON_CHARS` where the reason
/// is made, before the hint after them; this bounds what else may be long
/// (a broker's error text), well past any reason so made, so that no hint
/// is cut (cut at 600 here, the hints after an upstream's long words
/// went: a review).
const REASON_MOST: usize = 2 * crate::upload::REASON_CHARS;

/// `text` on one line and cut to `REASON_MOST` characters with `…`: once
/// the secrets are out of it, since a cut could leave part of one.
fn reason_cut(text: &str) -> String {
    crate::upload::one_line_within(text, REASON_MOST)
}

/// Checks a `--forward` value: `http(s)://…` or `mqtt(s)://HOST[:PORT]/PREFIX`.
pub fn parse_target(url: &str, credentials: &Credentials) -> Result<Target, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => http::HttpTarget::parse(url, credentials).map(Target::Http),
        Some("mqtt" | "mqtts") => mqtt::MqttTarget::parse(url, credentials).map(Target::Mqtt),
        _ => Err("--forward: give an http://, https://, mqtt:// or mqtts:// URL".into()),
    }
}

/// What one attempt to pass a batch on came to.
pub enum Attempt {
    /// The target acknowledged it.
    Delivered,
    /// Nothing of it had to go (a batch of no records, to a broker): done
    /// with, counted as passed on, and the target not tried, so its state
    /// stays what it was (it turned `up` with no broker listening, a
    /// review found).
    NothingToSend,
    /// It may work later (down, slow, busy): try again after a wait, at
    /// least `after` when the target said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The target refused this batch for good: set it aside.
    Park { reason: String },
    /// This batch cannot go as it is (a header no request can carry, a
    /// record no broker can): set aside without trying the target, whose
    /// state stays what it was (it turned `up`, a review found).
    Unsendable { reason: String },
}

/// A target that batches are passed on to.
pub trait Deliver: Send {
    /// Sends one batch and waits for the target's answer.
    fn deliver(&mut self, line: &OutboxLine) -> Attempt;
    /// Called while there is nothing to send (an MQTT client keeps its
    /// connection alive here); returns within about `wait`.
    fn idle(&mut self, durable: &Durable, seen: u64, wait: Duration) {
        durable.wait_beyond(seen, wait);
    }
}

/// Tells the board, at most every `HEARD_EVERY`, that a target answered
/// while a batch is under way, so its state's `no answer for` counts from
/// the last answer, not from the start of a batch that takes minutes.
pub struct Heard {
    board: Arc<ForwardBoard>,
    index: usize,
    last: Option<Instant>,
}

const HEARD_EVERY: Duration = Duration::from_millis(500);

impl Heard {
    pub fn now(&mut self) {
        if self.last.is_some_and(|l| l.elapsed() < HEARD_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.board.heard(self.index);
    }
}

/// The running forwarders; `stop` ends them and says what is left.
pub struct Forwarders {
    threads: Vec<JoinHandle<()>>,
    stop: Option<Sender<()>>,
    /// Each forwarder's index and how it ended.
    done: Receiver<(usize, Ended)>,
    cursors: Arc<Cursors>,
    board: Arc<ForwardBoard>,
}

/// What the forwarders left when the run ended.
pub struct Stopped {
    /// Each target's own.
    pub targets: Vec<Leftover>,
    /// The cursor could not be saved at the stop: why, and how many
    /// batches passed on since its last save the next start sends again
    /// (it said nothing, and they went twice: a review).
    pub unsaved: Option<(std::io::Error, u64)>,
}

/// What a target still had to send when the run ended.
pub struct Leftover {
    pub target: String,
    pub pending: u64,
    pub parked: u64,
    /// It was still sending a capture file the path no longer names as
    /// it was: what became of it (None: it was at the current file).
    pub behind: Option<Behind>,
    /// What the next start with the same cursor file does.
    pub next_start: NextStart,
}

/// What became of the capture file a forwarder was still reading when it
/// stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behind {
    /// Deleted, moved or replaced: the rest of it is not at the capture
    /// path any more.
    Replaced,
    /// Cut short in place, once or more (and nothing else): what was in
    /// the part cut away is gone.
    CutShort,
}

/// What the next start does with a target's cursor, found by the check
/// that start makes (`Cursors::resume`), run at the stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NextStart {
    /// From the start of the file at the capture path.
    #[default]
    FromItsStart,
    /// From this byte of the file at the capture path.
    From(u64),
    /// The cursor points at what is no longer in the file: refused.
    Refused,
}

/// How a forwarder ended.
#[derive(Clone, Copy, Default)]
struct Ended {
    /// The exact backlog left (None when it could not be counted).
    pending: Option<u64>,
    behind: Option<Behind>,
    next_start: NextStart,
}

/// The cursor file read and each target's place in the capture checked,
/// before anything is sent: what `start` starts from.
pub struct Opened {
    settings: Settings,
    cursors: Arc<Cursors>,
    /// Per target: where it resumes and how many batches it parked.
    places: Vec<(u64, u64)>,
    /// The capture file those places are in (the writer may move to a
    /// new one before `start`, if the file is deleted or replaced).
    file: usize,
    /// Per target, registered as a reader of that file, so that the files
    /// the writer moves to are kept for it until it gets there.
    readers: Vec<Reader>,
}

/// Reads the cursor file and its parked log and checks each target's
/// place in the capture. Done before the receiver listens, so that a
/// cursor or log that stops the start does so before any device is
/// answered (a hostile probe saw 25 uploads acknowledged by a receiver
/// about to exit).
pub fn open(settings: Settings, capture: &Path, durable: &Durable) -> Result<Opened, String> {
    let file = durable.current();
    let readers = settings
        .targets
        .iter()
        .map(|_| durable.reader(file))
        .collect();
    let cursors = Arc::new(Cursors::open(capture)?);
    let places = settings
        .targets
        .iter()
        .map(|t| cursors.resume(t.name(), capture))
        .collect::<Result<_, _>>()?;
    Ok(Opened {
        settings,
        cursors,
        places,
        file,
        readers,
    })
}

impl Opened {
    /// The targets' names, in the order given.
    pub fn names(&self) -> Vec<String> {
        self.settings
            .targets
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }
}

/// Starts one thread per target.
pub fn start(
    opened: Opened,
    capture: &Path,
    durable: Durable,
    board: Arc<ForwardBoard>,
    notes: Option<Sender<ForwardStatus>>,
) -> Result<Forwarders, String> {
    let Opened {
        settings,
        cursors,
        places,
        file,
        readers,
    } = opened;
    board.count_backlog_from(durable.lines());
    let (stop_tx, stop) = bounded::<()>(0);
    let (done_tx, done) = bounded::<(usize, Ended)>(settings.targets.len().max(1));
    let mut threads = Vec::new();
    for ((target, (offset, parked)), reader) in
        settings.targets.into_iter().zip(places).zip(readers)
    {
        let name = target.name().to_string();
        let mut status = ForwardStatus::new(name.clone());
        status.parked = parked;
        let job = Job {
            name: name.clone(),
            capture: capture.to_path_buf(),
            durable: durable.clone(),
            cursors: cursors.clone(),
            index: board.register(status.clone()),
            board: board.clone(),
            notes: notes.clone(),
            stop: stop.clone(),
            seen: Seen {
                all: settings.all,
                ..Seen::default()
            },
            status,
            offset,
            file,
            reader,
            synced_lines: durable.lines(),
            done_lines: 0,
            gone_from_path: None,
            last_noted: None,
            secrets: target.secrets(),
        };
        let index = job.index;
        let sink: Box<dyn Deliver> = match target {
            Target::Http(t) => Box::new(http::Http::new(t)),
            Target::Mqtt(t) => Box::new(mqtt::Mqtt::new(
                t,
                Heard {
                    board: board.clone(),
                    index,
                    last: None,
                },
            )),
        };
        let done_tx = done_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("forward-{}", threads.len()))
            .spawn(move || {
                let left = job.run(sink);
                let _ = done_tx.send((index, left));
            })
            .map_err(|e| format!("cannot start a forwarder: {e}"))?;
        threads.push(thread);
    }
    Ok(Forwarders {
        threads,
        stop: Some(stop_tx),
        done,
        cursors,
        board,
    })
}

impl Forwarders {
    /// Stops every forwarder, waiting at most `grace` for a batch in
    /// flight (one not acknowledged by then is sent again on the next
    /// start), and returns what each target still has to send.
    pub fn stop(mut self, grace: Duration) -> Stopped {
        drop(self.stop.take());
        let deadline = Instant::now() + grace;
        let mut ended = vec![Ended::default(); self.threads.len()];
        let mut finished = 0;
        while finished < self.threads.len() {
            match self.done.recv_deadline(deadline) {
                Ok((index, left)) => {
                    finished += 1;
                    if let Some(slot) = ended.get_mut(index) {
                        *slot = left;
                    }
                }
                Err(_) => break,
            }
        }
        if finished == self.threads.len() {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        let unsaved = self
            .cursors
            .flush()
            .err()
            .map(|e| (e, self.cursors.unsaved()));
        // A forwarder still busy with a batch is counted by lines (a
        // re-send it would skip counts too).
        let targets = self
            .board
            .snapshot()
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let ended = ended.get(i).copied().unwrap_or_default();
                Leftover {
                    pending: ended.pending.unwrap_or(s.pending),
                    target: s.target,
                    parked: s.parked,
                    behind: ended.behind,
                    next_start: ended.next_start,
                }
            })
            .collect();
        Stopped { targets, unsaved }
    }

    pub fn cursor_path(&self) -> &Path {
        self.cursors.path()
    }

    /// Targets with a batch in flight now (the stop waits for them).
    pub fn sending(&self) -> usize {
        self.board
            .snapshot()
            .iter()
            .filter(|s| s.sending_since.is_some())
            .count()
    }

    /// Where the batches the targets refused for good are listed.
    pub fn parked_path(&self) -> PathBuf {
        self.cursors.parked_path()
    }
}

/// Which batches a target is sent: without `--forward-all`, those the
/// device was told were saved, once per device and content. A re-send
/// goes only when its first copy did not (the first was answered with an
/// error on purpose, `"acked": false`, so the device sent it again).
#[derive(Clone, Default)]
struct Seen {
    all: bool,
    /// Every batch passed on or parked, by a hash of its unit id and batch
    /// hash: 32 bytes each. The two as text took about 150 bytes a batch
    /// for the run (a soak, December 6).
    passed: Passed,
}

/// Batches passed on, as many as the duplicate index holds at most, in
/// two generations: once the newer holds half of them, the older is
/// forgotten and the newer takes its place. A re-send of a batch passed
/// on that long ago goes again. Without the bound, a client with the token
/// posting distinct batches as fast as they were answered grew it without
/// end (the index did: 1.9 million in 3 minutes, 312 MB; a hostile-client
/// probe, December 7).
#[derive(Clone)]
struct Passed {
    newer: HashSet<DeviceBatch>,
    older: HashSet<DeviceBatch>,
    /// Batches a generation holds.
    each: usize,
}

impl Default for Passed {
    fn default() -> Self {
        Passed::holding_at_most(crate::capture::INDEX_AT_MOST)
    }
}

impl Passed {
    fn holding_at_most(at_most: usize) -> Passed {
        Passed {
            newer: HashSet::new(),
            older: HashSet::new(),
            each: (at_most / 2).max(1),
        }
    }

    fn contains(&self, k: &DeviceBatch) -> bool {
        self.newer.contains(k) || self.older.contains(k)
    }

    fn insert(&mut self, k: DeviceBatch) {
        if self.contains(&k) {
            return;
        }
        if self.newer.len() >= self.each {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(k);
    }
}

impl Seen {
    fn key(line: &OutboxLine) -> Option<DeviceBatch> {
        let hash = line.batch_hash.as_deref()?;
        Some(crate::capture::device_batch_of_text(
            line.unit_id.as_deref(),
            hash,
        ))
    }

    /// Whether `line` is to be sent.
    fn wants(&self, line: &OutboxLine) -> bool {
        self.all
            || (line.acknowledged() && Seen::key(line).is_none_or(|k| !self.passed.contains(&k)))
    }

    /// Notes that `line` was passed on (or parked).
    fn passed(&mut self, line: &OutboxLine) {
        if let Some(k) = Seen::key(line) {
            self.passed.insert(k);
        }
    }

    /// Replays the decisions over the capture between two offsets:
    /// how many lines there are, and how many of them would be sent.
    fn replay(&mut self, capture: &Path, from: u64, to: u64) -> std::io::Result<(u64, u64)> {
        let mut tail = Tail::open(capture, from)?;
        let mut line = Vec::new();
        let (mut lines, mut sent) = (0, 0);
        while tail.next_line(to, &mut line)?.is_some() {
            lines += 1;
            let Ok(l) = OutboxLine::parse(&line) else {
                sent += 1; // parked
                continue;
            };
            if self.wants(&l) {
                self.passed(&l);
                sent += 1;
            }
        }
        Ok((lines, sent))
    }
}

/// Where a capture line is, and its batch hash.
struct Span<'a> {
    start: u64,
    end: u64,
    /// The line's `batch_hash`.
    hash: Option<&'a str>,
    /// What the cursor keeps of the line: its batch hash, or for a line
    /// without one a hash of its bytes (`cursor::line_mark`).
    mark: Option<&'a str>,
}

/// One target's forwarder.
struct Job {
    name: String,
    capture: PathBuf,
    durable: Durable,
    cursors: Arc<Cursors>,
    board: Arc<ForwardBoard>,
    index: usize,
    notes: Option<Sender<ForwardStatus>>,
    stop: Receiver<()>,
    seen: Seen,
    status: ForwardStatus,
    offset: u64,
    /// The number of the capture file being read (see `Durable`): a new
    /// one when the path was deleted or replaced while running.
    file: usize,
    /// Its registration as a reader of that file (see `Durable::reader`).
    reader: Reader,
    /// Complete lines synced to the capture (kept by its writer).
    synced_lines: Arc<AtomicU64>,
    /// Capture lines this target is done with.
    done_lines: u64,
    /// At the stop: the file it read was no longer at the capture path
    /// (moved or deleted after the last upload, so the writer never saw
    /// it go), or was shorter than the writer synced (cut short in place
    /// after the last upload, `copytruncate`).
    gone_from_path: Option<Behind>,
    /// What the last headless note said: state, parked, error.
    last_noted: Option<(&'static str, u64, Option<String>)>,
    /// The target's credentials and query, taken out of every reason
    /// before it is kept or shown, with what is shown in their place.
    secrets: Vec<(String, &'static str)>,
}

/// Whether no file, or an empty one, is at `path`.
fn nothing_at(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The state a headless note names. Uploads arriving while the target is
/// up (or idle, nothing sent yet) are live traffic, not a backlog: noting
/// each one as "catching up" would print two lines per upload, so a
/// backlog younger than `LIVE_LAG` keeps such a target noted as it was
/// (an idle one's first delivery is then noted `up`). After a `down`, the
/// catch-up is noted until it is over.
fn noted_kind(s: &ForwardStatus, before: Option<&'static str>) -> &'static str {
    match (s.kind(), before) {
        ("catching_up", Some(was @ ("up" | "idle")))
            if s.lag_seconds(Timestamp::now()).unwrap_or(0) < LIVE_LAG.as_secs() =>
        {
            was
        }
        (kind, _) => kind,
    }
}

impl Job {
    /// Follows the capture until told to stop; says how it ended.
    fn run(mut self, sink: Box<dyn Deliver>) -> Ended {
        let pending = self.follow(sink);
        let current = self.durable.current();
        let behind = (self.file < current).then(|| {
            if (self.file + 1..=current).all(|n| self.durable.same_file(n)) {
                Behind::CutShort
            } else {
                Behind::Replaced
            }
        });
        // The check the next start makes, made now on the cursor it will
        // read (saved as it is once every forwarder stopped): after a cut
        // that left the cursor's line in place, it goes on from there.
        let next_start = match self.cursors.resume(&self.name, &self.capture) {
            // Nothing left, and nothing at the path (moved or deleted after
            // the last upload, a rotation by `mv` before a restart), or an
            // empty file: the next start begins the file there, where it
            // refused to start at all (a hostile-client probe). Nothing
            // left is known from the cursor and the synced length, never
            // by reading the path: a file put there after a rename reads
            // as nothing left, and a batch the moved file still held was
            // then skipped without a word (a review).
            Err(_) if self.done_with_every_synced_line() && nothing_at(&self.capture) => {
                match self.cursors.moved(&self.name, 0) {
                    Ok(()) => NextStart::FromItsStart,
                    Err(_) => NextStart::Refused,
                }
            }
            Err(_) => NextStart::Refused,
            Ok(_) if !self.cursors.has(&self.name) => NextStart::FromItsStart,
            Ok((offset, _)) => NextStart::From(offset),
        };
        // A count read from a file the cursor no longer matches counts
        // that file's lines, not what this target had left (an empty file
        // put at the path read as none left): counted from the lines
        // instead (see `left_by_lines`).
        let pending = match next_start {
            NextStart::Refused if !self.done_with_every_synced_line() => Some(self.left_by_lines()),
            _ => pending,
        };
        // A target with no cursor yet (it acknowledged nothing) starts the
        // file at the path next time: what it had left is then only in the
        // file moved away, and the exit says so. It said they would be
        // sent at the next start, or (an empty file put at the path)
        // nothing at all, and the next start sent nothing (a probe,
        // December 7).
        // A cut unseen is said as one seen (what was in the part cut away
        // is gone); a file moved unseen, for a target with a cursor, by the
        // cursor's refusal.
        let left = pending.unwrap_or(0) > 0;
        let behind = behind.or(match self.gone_from_path {
            Some(Behind::CutShort) if left => Some(Behind::CutShort),
            Some(Behind::Replaced) if left && !self.cursors.has(&self.name) => {
                Some(Behind::Replaced)
            }
            _ => None,
        });
        Ended {
            pending,
            behind,
            next_start,
        }
    }

    /// Follows the capture until told to stop; returns the exact backlog
    /// left (None when the capture could not be read).
    fn follow(&mut self, mut sink: Box<dyn Deliver>) -> Option<u64> {
        let mut tail = match Tail::open(&self.capture, self.offset) {
            Ok(t) => t,
            Err(e) => {
                self.down(format!("cannot read the capture: {e}"));
                return None;
            }
        };
        // What was passed on before the cursor decides what follows.
        match self.seen.replay(&self.capture, 0, self.offset) {
            Ok((lines, _)) => self.done_lines = lines,
            Err(e) => {
                self.down(format!("cannot read the capture: {e}"));
                return None;
            }
        }
        let mut line = Vec::new();
        let mut backoff = BACKOFF_FIRST;
        loop {
            if self.stopped() {
                return self.stop_count(&tail);
            }
            let limit = self.durable.bound(self.file).limit;
            let read = tail.next_line(limit, &mut line);
            // Where this file's synced lines end now, after the read: a line
            // read past it is none of its own (the file was cut short in
            // place meanwhile, and the writer has gone on at its new end,
            // published before it wrote there, where the next file's lines
            // begin).
            let bound = self.durable.bound(self.file);
            let read = match read {
                Ok(Some(_)) if tail.pos() > bound.limit => Ok(None),
                read => read,
            };
            let start = match read {
                Ok(Some(start)) => start,
                Ok(None) => {
                    if let Some(next) = bound.next {
                        // Every synced line of a file the writer left is
                        // done: go on in the one at the path now.
                        match self.next_file(next, &mut tail) {
                            Ok(()) => {}
                            Err(e) => {
                                self.down(format!("cannot read the capture: {e}"));
                                self.wait(BACKOFF_MAX);
                            }
                        }
                        continue;
                    }
                    if self.status.pending == 0 && self.status.link == Link::Starting {
                        self.status.link = Link::Idle;
                    }
                    self.publish();
                    sink.idle(&self.durable, limit, IDLE_WAIT);
                    continue;
                }
                Err(e) => {
                    self.down(format!("cannot read the capture: {e}"));
                    self.wait(BACKOFF_MAX);
                    continue;
                }
            };
            let parsed = OutboxLine::parse(&line);
            let hash = parsed.as_ref().ok().and_then(|l| l.batch_hash.clone());
            let mark = match &hash {
                Some(_) => None,
                None => Some(cursor::line_mark(&line)),
            };
            let span = Span {
                start,
                end: tail.pos(),
                hash: hash.as_deref(),
                mark: hash.as_deref().or(mark.as_deref()),
            };
            let went_on = match parsed {
                Err(reason) => self.park(&span, String::new(), reason),
                Ok(l) if !self.seen.wants(&l) => {
                    self.cursors
                        .skipped(&self.name, span.start, span.end, span.mark);
                    true
                }
                Ok(l) => {
                    let went_on = self.send(&mut *sink, &l, &span, &mut backoff);
                    if went_on {
                        self.seen.passed(&l);
                    }
                    went_on
                }
            };
            if !went_on {
                return self.stop_count(&tail);
            }
            self.done_lines += 1;
            self.publish();
            if self.status.pending == 0 {
                self.status.oldest_waiting = None;
            }
        }
    }

    /// Moves to the capture file after the current one, from `start`
    /// (where the writer started it), and moves the cursor there.
    fn next_file(&mut self, start: u64, tail: &mut Tail) -> std::io::Result<()> {
        // The same file cut short in place: its own handle goes on there.
        let other = if self.durable.same_file(self.file + 1) {
            None
        } else {
            Some(match self.durable.file(self.file + 1) {
                Some(file) => Tail::from_file(file?, start),
                None => Tail::open(&self.capture, start)?,
            })
        };
        let mut wait = BACKOFF_FIRST;
        while let Err(e) = self.cursors.moved(&self.name, start) {
            let kind = e.kind();
            if !self.cursor_failed(e, &mut wait) {
                return Err(std::io::Error::new(kind, "stopped while the cursor failed"));
            }
        }
        match other {
            Some(other) => *tail = other,
            None => tail.move_to(start),
        }
        if let Some(lines) = self.durable.lines_through(self.file) {
            self.done_lines = lines;
        }
        self.file += 1;
        self.reader.moved_to(self.file);
        Ok(())
    }

    /// Sends one batch until the target takes it or parks it, waiting
    /// between attempts; false when told to stop meanwhile (the batch is
    /// then sent again on the next start).
    fn send(
        &mut self,
        sink: &mut dyn Deliver,
        line: &OutboxLine,
        span: &Span<'_>,
        backoff: &mut Duration,
    ) -> bool {
        self.status.oldest_waiting = line.received.parse::<Timestamp>().ok();
        loop {
            self.status.sending_since = Some(Timestamp::now());
            self.publish();
            let attempt = sink.deliver(line);
            self.status.sending_since = None;
            match attempt {
                Attempt::Delivered | Attempt::NothingToSend => {
                    // Only the cursor is retried here: sending again would
                    // repeat a batch the target has.
                    let before = self.status.link.clone();
                    let mut wait = BACKOFF_FIRST;
                    while let Err(e) = self
                        .cursors
                        .passed(&self.name, span.start, span.end, span.mark)
                    {
                        if !self.cursor_failed(e, &mut wait) {
                            return false;
                        }
                    }
                    self.status.forwarded += 1;
                    // Not tried (nothing to send): as it was, also after
                    // the cursor failed meanwhile.
                    self.status.link = match attempt {
                        Attempt::Delivered => Link::Up,
                        _ => before,
                    };
                    *backoff = BACKOFF_FIRST;
                    return true;
                }
                Attempt::Retry { error, after } => {
                    self.down(error);
                    let wait = (*backoff).max(after.unwrap_or_default()).min(BACKOFF_MAX);
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    if !self.wait(wait) {
                        return false;
                    }
                }
                Attempt::Park { reason } => {
                    if !self.park(span, line.received.clone(), reason) {
                        return false;
                    }
                    self.status.link = Link::Up;
                    return true;
                }
                Attempt::Unsendable { reason } => {
                    // The target was not tried: as it was, also after the
                    // cursor failed meanwhile.
                    let before = self.status.link.clone();
                    let parked = self.park(span, line.received.clone(), reason);
                    if parked {
                        self.status.link = before;
                    }
                    return parked;
                }
            }
        }
    }

    /// Parks a line and moves past it; false when the cursor cannot be
    /// saved and a stop came while waiting to try again.
    fn park(&mut self, span: &Span<'_>, received: String, reason: String) -> bool {
        // On one line and with no control, as the reason was made: what
        // the scrub decoded may hold them (a probe's `%1B]0;…` reached the
        // status page raw, for a day).
        let reason = reason_cut(&self.scrubbed(reason));
        let parked = Parked {
            offset: span.start,
            batch_hash: span.hash.map(str::to_owned),
            received,
            reason: reason.clone(),
        };
        let mut wait = BACKOFF_FIRST;
        loop {
            match self
                .cursors
                .park(&self.name, span.start, span.end, span.mark, parked.clone())
            {
                Ok(count) => {
                    // The log's count: a batch parked again after a crash
                    // is listed, and counted, once.
                    self.status.parked = count;
                    break;
                }
                Err(e) => {
                    // The log may list it already (the cursor failed).
                    self.status.parked = self.cursors.parked_count(&self.name);
                    if !self.cursor_failed(e, &mut wait) {
                        return false;
                    }
                }
            }
        }
        self.status.last_parked = Some(reason);
        true
    }

    /// Whether this target is done with every line the writer synced in
    /// the file it writes now: known without reading the file.
    fn done_with_every_synced_line(&self) -> bool {
        self.file == self.durable.current()
            && self.cursors.offset(&self.name) >= self.durable.synced()
    }

    /// At a stop: notes whether the file read is still at the path, and
    /// counts what is left (see `count_rest`).
    fn stop_count(&mut self, tail: &Tail) -> Option<u64> {
        let current = self.file == self.durable.current();
        self.gone_from_path = if !tail.is_at(&self.capture) {
            Some(Behind::Replaced)
        } else if current
            && tail
                .file_len()
                .is_some_and(|len| len < self.durable.synced())
        {
            Some(Behind::CutShort)
        } else {
            None
        };
        self.count_rest()
    }

    /// The lines the writer synced less those this target is done with,
    /// as the board counts them, made now (the board is told only at a
    /// publish, and missed a line synced just before the stop): what is
    /// left without reading the path.
    fn left_by_lines(&self) -> u64 {
        self.synced_lines
            .load(Ordering::SeqCst)
            .saturating_sub(self.done_lines)
    }

    /// Counts exactly what is left to send, at a stop (the receiver has
    /// written its last line by then).
    fn count_rest(&mut self) -> Option<u64> {
        // Done with every synced line: nothing to read (the file may be
        // gone from the path since the last upload).
        if self.done_with_every_synced_line() {
            return Some(0);
        }
        // What is at the path now is not what was left.
        if self.gone_from_path.is_some() {
            return Some(self.left_by_lines());
        }
        if self.file != self.durable.current() {
            return None;
        }
        let from = self.cursors.offset(&self.name);
        let to = self.durable.synced();
        let (_, sent) = self.seen.clone().replay(&self.capture, from, to).ok()?;
        Some(sent)
    }

    /// The cursor could not be saved: says so and waits `wait` before the
    /// next try, doubling it up to `BACKOFF_MAX`; false when told to stop
    /// meanwhile. A flat 30 s made a capture folder gone for a moment (and
    /// made again at the next upload) an outage of 30 s, and a crash in it
    /// left no cursor beside the new file (a hostile-client probe).
    fn cursor_failed(&mut self, e: std::io::Error, wait: &mut Duration) -> bool {
        self.down(format!("cannot save the cursor: {e}"));
        let waited = self.wait(*wait);
        *wait = (*wait * 2).min(BACKOFF_MAX);
        waited
    }

    /// Marks the target down (keeping the first time it went down).
    fn down(&mut self, error: String) {
        let since = match &self.status.link {
            Link::Down { since, .. } => *since,
            _ => Timestamp::now(),
        };
        // Shown on the screen, the status page and headless lines; a TLS
        // failure names the certificate's names, chosen by the server
        // (escape sequences in them reached terminals, found by a probe).
        let error = reason_cut(&crate::text::shown(&self.scrubbed(error)));
        self.status.link = Link::Down { since, error };
        self.publish();
    }

    /// `text` without the target's secrets, in any spelling (see
    /// `scrub::taken_out`): every reason passes here, also those made from
    /// no answer of the upstream's (a TLS failure quotes the certificate's
    /// names, which the server chose, and may spell the token it was sent
    /// earlier: a probe's finding).
    fn scrubbed(&self, text: String) -> String {
        crate::scrub::all_taken_out(text, &self.secrets)
    }

    /// Shows the state; a change of state, or a new parked batch, is also
    /// a note for the headless output.
    fn publish(&mut self) {
        self.status.done_lines = Some(self.done_lines);
        let synced = self.synced_lines.load(Ordering::SeqCst);
        self.status.pending = synced.saturating_sub(self.done_lines);
        self.board.set(self.index, &self.status);
        let Some(notes) = &self.notes else {
            return;
        };
        let before = self.last_noted.as_ref().map(|n| n.0);
        let noted = (
            noted_kind(&self.status, before),
            self.status.parked,
            self.error(),
        );
        if self.last_noted.as_ref() != Some(&noted) {
            self.last_noted = Some(noted);
            match notes.try_send(self.status.clone()) {
                Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn error(&self) -> Option<String> {
        match &self.status.link {
            Link::Down { error, .. } => Some(error.clone()),
            _ => None,
        }
    }

    /// Waits `d` unless told to stop (false then).
    fn wait(&self, d: Duration) -> bool {
        !matches!(
            self.stop.recv_timeout(d),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        )
    }

    fn stopped(&self) -> bool {
        !self.wait(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the most it holds, the older generation of batches passed on
    /// is forgotten whole; a batch known in either is not added again.
    #[test]
    fn batches_passed_on_are_remembered_in_two_bounded_generations() {
        let mut passed = Passed::holding_at_most(4);
        for n in 1..=2 {
            passed.insert([n; 32]);
        }
        passed.insert([1; 32]);
        passed.insert([3; 32]);
        // 1 and 2 are the older generation now; 3 the newer.
        assert!((1..=3).all(|n| passed.contains(&[n; 32])));
        passed.insert([1; 32]);
        passed.insert([4; 32]);
        assert!((1..=4).all(|n| passed.contains(&[n; 32])));
        passed.insert([5; 32]);
        let held: Vec<u8> = (1..=5).filter(|n| passed.contains(&[*n; 32])).collect();
        assert_eq!(held, [3, 4, 5]);
        assert_eq!(passed.newer.len() + passed.older.len(), 3);
    }

    #[test]
    fn the_status_page_shows_no_target_path_even_where_a_reason_quotes_it() {
        let target = "https://hooks.example:8443/hooks/KEY123";
        assert_eq!(public_text(target, target), "https://hooks.example:8443/…");
        assert_eq!(
            public_text(
                target,
                "up · parked 1 (last: 404: Cannot POST /hooks/KEY123 (check the --forward URL))"
            ),
            "up · parked 1 (last: 404: Cannot POST /… (check the --forward URL))"
        );
        assert_eq!(
            public_text(
                target,
                "down (301: redirected to https://b.example/hooks/KEY123/)"
            ),
            "down (301: redirected to https://b.example/…/)"
        );
        // Quoted as the upstream read it, percent-decoded.
        assert_eq!(
            public_text(
                "https://h.example/hooks/Ab%2BCd%2Fef",
                "404: Cannot POST /hooks/Ab+Cd/ef, nor /hooks/Ab%2BCd%2Fef"
            ),
            "404: Cannot POST /…, nor /…"
        );
        // A decoded spelling short enough to be anything is left alone.
        assert_eq!(
            public_text("https://h/%2F", "see https://other.example/x"),
            "see https://other.example/x"
        );
        assert_eq!(public_text("http://h:1/", "http://h:1/"), "http://h:1/");
        assert_eq!(public_text("http://h:1/", "a / b"), "a / b");
        assert_eq!(
            public_text("mqtt://broker:1883/bench", "mqtt://broker:1883/bench"),
            "mqtt://broker:1883/…"
        );
    }
}

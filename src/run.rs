//! The `autopi-rx` main job: set up, receive until a signal, shut down.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, select};

use crate::capture::load::{self, Progress};
use crate::capture::{Capture, Durable};
use crate::dashboard::app::{Probed, Setup};
use crate::dashboard::state::State;
use crate::dashboard::tui;
use crate::event::{RequestEvent, Stats};
use crate::forward::{self, Forwarders};
use crate::receiver::ingest::{Auth, Config};
use crate::receiver::respond::{Control, Mode};
use crate::receiver::{headless, server};
use crate::simulate::demo::Demo;
use crate::upstream::ForwardStatus;
use std::sync::Arc;
use std::sync::Mutex;

/// Events queued for the consumer before new ones are dropped (and counted):
/// the listener never waits for the screen.
pub const EVENT_QUEUE: usize = 4096;
/// Bodies of events held while a capture loads at start, at most: the
/// listener is up meanwhile, and what arrives is folded after the load.
/// Beyond it, events wait in the queue (and past that are dropped and
/// counted, as always).
const HELD_DURING_LOAD: u64 = 512 * 1024 * 1024;
/// How long shutdown waits for requests in flight (a device's timeout is
/// 10 to 60 s; an upload stalled longer is not coming).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long shutdown waits for a batch a forwarder has in flight (one not
/// acknowledged by then is sent again on the next start).
const FORWARD_GRACE: Duration = Duration::from_secs(2);

/// Everything the main job needs, already decided from the command line.
pub struct Settings {
    pub listen: String,
    pub auth: Auth,
    /// `--demo`: a simulated device posts here with this token.
    pub demo_token: Option<String>,
    /// `--capture`; None for a new file under `captures/` named for the
    /// start time.
    pub capture: Option<PathBuf>,
    pub max_body: usize,
    /// One JSON line per request on stdout instead of the dashboard.
    pub headless: bool,
    pub workers: usize,
    /// Idle or stalled connections are dropped after this long.
    pub read_timeout: Duration,
    /// Idle connections are closed past this many open (`--max-connections`).
    pub max_connections: u64,
    /// `--respond`: how valid batches are answered at start.
    pub respond: Mode,
    /// `--restart-held`: restart in place once this many connections are
    /// held for good by tiny_http (0: never).
    pub restart_held: u64,
    /// The listening socket inherited from before a restart in place.
    pub inherit_listener: Option<std::os::fd::RawFd>,
    /// When the restart in place that started this run came.
    pub restarted_at: Option<jiff::Timestamp>,
    /// With `--token-file`: reads the tokens again (on SIGHUP).
    pub reload_tokens: Option<TokenReload>,
    /// The same, for a restart in place to check that its next run can
    /// read them (it reads them again at its start).
    pub tokens_again: Option<TokenReload>,
    /// `--token-file`, where tokens come from one.
    pub token_file: Option<PathBuf>,
    /// `--forward` URLs, as given.
    pub forward: Vec<String>,
    /// The `authorization` header for HTTP forward targets (never shown).
    pub forward_authorization: Option<String>,
    pub forward_all: bool,
    /// `--forward-ca`: a PEM file of CAs to trust instead of the Mozilla roots.
    pub forward_ca: Option<PathBuf>,
    /// `--forward-cert` and `--forward-key`: the client certificate and
    /// its key, for TLS targets that ask for one.
    pub forward_identity: Option<(PathBuf, PathBuf)>,
    /// `--forward-timeout`: the longest wait on an HTTP target at any step.
    pub forward_timeout: std::time::Duration,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
}

/// Reads every configured token again (`--token` and `--token-file`).
pub type TokenReload = Box<dyn Fn() -> Result<Vec<String>, String> + Send>;

/// A reason to stop, with the process exit status.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    pub fn new(code: u8, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

/// Default capture file: `captures/<start time, UTC>.jsonl`, or with
/// `-2`, `-3`, … before the extension for the `n`th try.
fn default_capture_path(start: jiff::Timestamp, n: u32) -> PathBuf {
    let stamp = start.strftime("%Y%m%dT%H%M%SZ").to_string();
    let name = match n {
        0 | 1 => format!("{stamp}.jsonl"),
        n => format!("{stamp}-{n}.jsonl"),
    };
    PathBuf::from("captures").join(name)
}

/// Names tried for the default capture before giving up.
const DEFAULT_CAPTURE_TRIES: u32 = 100;

/// Runs the receiver until SIGINT or SIGTERM (or q on the dashboard).
pub fn run(mut settings: Settings) -> Result<(), Fatal> {
    // More descriptors than the default 1024: each connection holds two.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if matches!(settings.auth, Auth::Open) {
        crate::say!("WARNING: --no-auth: accepting uploads from anyone, without checking a token");
    }
    let targets = forward_targets(&settings)?;
    let capture = open_capture(settings.capture.as_deref())?;
    if !targets.is_empty() && !capture.regular {
        return Err(Fatal::new(
            1,
            format!(
                "--forward reads the capture back, and {} is not a regular file",
                crate::text::path(&capture.path())
            ),
        ));
    }
    // The cursor and its parked log are read, and each target's place
    // checked, before anything listens.
    let opened = if targets.is_empty() {
        None
    } else {
        let settings = forward::Settings {
            targets,
            all: settings.forward_all,
        };
        let opened = forward::open(settings, capture.path(), &capture.durable());
        Some(opened.map_err(|m| Fatal::new(1, m))?)
    };
    let durable = capture.durable();
    let outbox = (capture.path().to_path_buf(), durable.clone());
    // What the file held before this run: the dashboard loads it, and
    // everything after arrives as events.
    let held = std::fs::metadata(capture.path())
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len());
    let signals = Signals::install(settings.reload_tokens.is_some())?;
    // Taken before the listening line: a SIGHUP sent as soon as it is
    // read waits for the thread below, where it ended the run (the
    // default action) while the server was starting.
    let hups = match &settings.reload_tokens {
        Some(_) => Some(
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
                .map_err(|e| Fatal::new(1, format!("cannot install the SIGHUP handler: {e}")))?,
        ),
        None => None,
    };
    let token_count = settings.auth.token_count();
    let (events_tx, events_rx) = bounded(EVENT_QUEUE);
    let (notes_tx, notes_rx) = bounded(EVENT_QUEUE);
    let respond = Arc::new(Control::new(settings.respond));
    let running = start_server(&settings, capture, events_tx, respond.clone())?;
    let next = NextRun {
        files: [&settings.token_file, &settings.forward_ca]
            .into_iter()
            .flatten()
            .cloned()
            .chain(
                settings
                    .forward_identity
                    .iter()
                    .flat_map(|(cert, key)| [cert.clone(), key.clone()]),
            )
            .collect(),
        tokens_again: settings.tokens_again.take(),
        capture: running.capture_path().to_path_buf(),
    };
    let restarter = Restarter::start(&settings, &running, next, signals.ask.clone());
    if let (Some(reload), Some(hups)) = (settings.reload_tokens.take(), hups) {
        reload_on_sighup(reload, hups, running.auth_switch(), settings.headless)?;
    }
    let forwarders = start_forwarding(&settings, opened, outbox, &running, notes_tx)?;
    let demo = start_demo(&settings, &running)?;
    let notices = relay_notices(&running, settings.headless);
    let shown = show(
        &settings,
        &running,
        token_count,
        demo.is_some(),
        respond.clone(),
        (events_rx, notes_rx, held, durable),
        &signals,
    );
    let (printer, outcome) = match shown {
        Ok(printer) => (printer, Ok(())),
        Err(e) => (None, Err(Fatal::new(1, format!("terminal: {e}")))),
    };
    let restart = restarter.stop(&signals.received).map(|(held, listener)| {
        crate::say!(
            "autopi-rx: restarting in place: {held} connection(s) or request(s) held for good by \
             tiny_http 0.12 (a thread and two descriptors each until exit: an HTTP/2.0 request \
             line deadlocks one; --restart-held). The listening socket stays open: connections \
             wait in its queue meanwhile, and nothing acknowledged is lost"
        );
        (listener, respond.shown().lasting)
    });
    if let Some(demo) = demo {
        demo.stop();
    }
    let stats = running.stats.clone();
    let capture = shell_word(&crate::text::path(running.capture_path()).to_string());
    let capture_path = running.capture_path().to_path_buf();
    // Cleared by a signal that comes before the exec: the run stops.
    let restarting = Cell::new(restart.is_some());
    let finished = shut_down(running, &signals.received, &restarting);
    if let Some(forwarders) = forwarders {
        stop_forwarding(forwarders, &capture, &signals.received, &restarting);
    }
    // A restart goes on whether or not the requests in flight finished.
    if !finished && !restarting.get() {
        return outcome;
    }
    // Every worker is gone, so the printer has had every event (before a
    // restart too: the next run prints only its own).
    if let Some(printed) = printer.filter(|_| finished) {
        wait_for_printer(&printed, &signals.received, &restarting);
    }
    // Said again after the dashboard, whose screen hid stderr.
    for notice in notices.try_iter() {
        crate::say!("autopi-rx: {notice}");
    }
    warn_dropped_events(&stats, settings.headless);
    // A signal since the last wait stops the run too.
    let signalled = signals.received.try_recv().is_ok();
    if signalled && restarting.get() {
        crate::say!("autopi-rx: a signal during the restart in place: stopping instead");
    }
    match restart.filter(|_| restarting.get() && !signalled) {
        Some((listener, mode)) => Err(restart_in_place(listener, &capture_path, mode)),
        None => outcome,
    }
}

/// How often the restarter looks at what tiny_http holds for good.
const RESTART_LOOK: Duration = Duration::from_millis(500);

/// Read timeouts that any connection held for good may stay before a
/// restart in place frees it, however few there are (5 minutes with the
/// default read timeout).
const HELD_LONGEST_TIMEOUTS: u32 = 10;

/// Watches what tiny_http 0.12 holds for good (`Running::held_gauge`)
/// and, once it reaches `--restart-held` (or a sixteenth of the descriptor
/// limit, if fewer), or once one has been held for
/// `HELD_LONGEST_TIMEOUTS` read timeouts, or once any is held while
/// descriptors run short, ends the run as a signal would, for a restart in
/// place (`restart_in_place`).
struct Restarter {
    /// How the run ends, decided once, under the lock, by whichever comes
    /// first: the restarter's ask, or the run's end for another reason.
    end: Arc<Mutex<End>>,
    /// The descriptor of the listening socket that the restart hands on:
    /// taken at start, since a restart comes when descriptors may have run
    /// out (a duplicate taken then failed with `EMFILE`, and the receiver
    /// stopped instead of restarting).
    listener: std::os::fd::RawFd,
    /// Its thread, and what stops it (dropped).
    thread: Option<(Sender<()>, std::thread::JoinHandle<()>)>,
}

/// How the run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Not decided yet.
    Running,
    /// The restarter asked, with this many held.
    Restart(u64),
    /// For another reason (q, a signal, stdout gone): no restart.
    Stopping,
}

/// What the next run reads again at its start, and where: each must
/// still be there for a restart.
struct NextRun {
    /// `--token-file`, `--forward-ca`, `--forward-cert` and `--forward-key`.
    files: Vec<PathBuf>,
    /// The tokens, read as the next run reads them (with `--token-file`).
    tokens_again: Option<TokenReload>,
    capture: PathBuf,
}

impl NextRun {
    /// Why the next run could not start now, if it could not. A pipe given
    /// as a file (`<(…)`, `/dev/stdin`) is read once: the next run found
    /// it empty and exited 2 (a probe), and so would a file deleted since.
    /// Out of descriptors (a restart's very case), the tokens cannot be
    /// read here but the next run starts with them free: the file being
    /// there has to do.
    fn cannot_start(&self) -> Option<String> {
        for file in &self.files {
            if !std::fs::metadata(file).is_ok_and(|m| m.is_file()) {
                return Some(format!(
                    "{} is not a regular file now",
                    crate::text::path(file)
                ));
            }
        }
        // Gone, the next run makes it again; another kind of file is
        // refused (this run answers 503 meanwhile).
        match std::fs::symlink_metadata(&self.capture) {
            Ok(m) if !m.is_file() => {
                return Some(format!(
                    "the capture path {} is not a regular file now",
                    crate::text::path(&self.capture)
                ));
            }
            _ => {}
        }
        let read = self.tokens_again.as_ref()?;
        read().err().filter(|_| !out_of_descriptors())
    }
}

/// Whether this process has no descriptor free now.
fn out_of_descriptors() -> bool {
    std::fs::File::open("/dev/null").is_err_and(|e| {
        matches!(
            e.raw_os_error(),
            Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                || code == rustix::io::Errno::NFILE.raw_os_error()
        )
    })
}

impl Restarter {
    /// Started after the server: what `next` needs is checked at once
    /// (restarts are off, said so, where the next run could not start:
    /// a failed restart ends the receiver) and again when one is due (it
    /// waits while the next run could not start).
    fn start(
        settings: &Settings,
        running: &server::Running,
        next: NextRun,
        ask: Sender<()>,
    ) -> Restarter {
        let end = Arc::new(Mutex::new(End::Running));
        let off = |why: String| {
            crate::say!(
                "autopi-rx: --restart-held is off: {why}; what tiny_http holds for good stays until exit"
            );
            Restarter {
                end: end.clone(),
                listener: -1,
                thread: None,
            }
        };
        let Some(threshold) = restart_threshold(settings.restart_held) else {
            return Restarter {
                end: end.clone(),
                listener: -1,
                thread: None,
            };
        };
        if let Some(why) = next.cannot_start() {
            return off(format!("a restart could not start again ({why})"));
        }
        // A run begun by a restart took its socket over already; checked
        // again, the flood that waited in the queue could have used every
        // descriptor by now (restarts were off for that run, which then
        // stayed out of descriptors: 256 of them, 600 `HTTP/2.0` lines).
        let listener = match settings.inherit_listener {
            Some(fd) => Ok(fd),
            None => running
                .can_hand_on_listener()
                .and_then(|()| running.inheritable_listener()),
        };
        let listener = match listener {
            Ok(fd) => fd,
            Err(e) => {
                return off(format!(
                    "the listening socket could not be handed on to a restart ({e})"
                ));
            }
        };
        let (stop, stopped) = bounded::<()>(0);
        let gauge = running.held_gauge();
        let decided = end.clone();
        let longest = settings.read_timeout * HELD_LONGEST_TIMEOUTS;
        let started = std::thread::Builder::new()
            .name("restarter".into())
            .spawn(move || {
                let mut said_why_not = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(RESTART_LOOK) {
                    let (held, oldest, short) = gauge();
                    // Short of descriptors, whatever is held holds some of
                    // them: under a limit of 256, 600 `HTTP/2.0` lines
                    // kept devices out for over 90 s, a restart at a time
                    // as each batch that had waited in the queue used the
                    // descriptors up again without reaching the threshold
                    // (the closer cannot count them all then).
                    let due = held >= threshold
                        || (short && held > 0)
                        || oldest.is_some_and(|t| t.elapsed() >= longest);
                    if !due {
                        continue;
                    }
                    if let Some(why) = next.cannot_start() {
                        if !std::mem::replace(&mut said_why_not, true) {
                            crate::say!(
                                "autopi-rx: not restarting in place while the next run could not start ({why}): {held} held by tiny_http stay"
                            );
                        }
                        continue;
                    }
                    let mut end = crate::panic::lock(&decided);
                    // A signal waiting untaken ends the run for itself.
                    if *end == End::Running && ask.try_send(()).is_ok() {
                        *end = End::Restart(held);
                    }
                    return;
                }
            });
        match started {
            Ok(thread) => Restarter {
                end,
                listener,
                thread: Some((stop, thread)),
            },
            Err(e) => off(format!("cannot start its thread: {e}")),
        }
    }

    /// Once the run has ended: whether for a restart, with how many were
    /// held and the listener's descriptor to hand on. The run ended for the
    /// restarter's ask only if `signals` has nothing left: an ask still
    /// there was not what ended it (q came first), and a signal there came
    /// since; either way the run stops.
    fn stop(self, signals: &Receiver<()>) -> Option<(u64, std::os::fd::RawFd)> {
        let decided = {
            let mut end = crate::panic::lock(&self.end);
            if *end == End::Running {
                *end = End::Stopping;
            }
            *end
        };
        if let Some((stop, thread)) = self.thread {
            drop(stop);
            let _ = thread.join();
        }
        match decided {
            End::Restart(held) if signals.try_recv().is_err() => Some((held, self.listener)),
            _ => None,
        }
    }
}

/// Held connections at which to restart: `restart_held`, or a sixteenth
/// of the descriptor limit (each holds two) if that is fewer; None for 0.
fn restart_threshold(restart_held: u64) -> Option<u64> {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    (restart_held > 0).then(|| restart_held.min(soft / 16).max(1))
}

/// Names the process after its command again (as `ps` and `top` show
/// it): executed through `/proc/self/exe`, it is named `exe`. Called on
/// the main thread, whose name is the process's.
fn name_process_again() {
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let name = std::path::Path::new(&arg0).file_name().map(|n| {
        n.as_encoded_bytes()
            .iter()
            .take(15)
            .copied()
            .collect::<Vec<u8>>()
    });
    if let Some(name) = name.and_then(|n| std::ffi::CString::new(n).ok()) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// Executes this program again in this process, with the same command
/// line, the capture it wrote, the answer mode in force, and the listening
/// socket on descriptor `listener`, which survives the exec: connections
/// made meanwhile wait in its queue. Everything else this process held
/// (threads tiny_http deadlocked on, their descriptors) is gone with the
/// exec. Returns only if it failed.
fn restart_in_place(listener: std::os::fd::RawFd, capture: &std::path::Path, mode: Mode) -> Fatal {
    use std::os::unix::process::CommandExt;
    let mut args = restart_args(std::env::args_os().collect(), capture, mode, listener);
    let arg0 = if args.is_empty() {
        "autopi-rx".into()
    } else {
        args.remove(0)
    };
    let e = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    Fatal::new(1, format!("cannot restart in place: {e}"))
}

/// The flags a restart in place adds, in the order it adds them, after
/// the command line it was given.
const RESTART_FLAGS: [&str; 4] = [
    "--capture=",
    "--respond=",
    "--inherit-listener=",
    "--restarted-at=",
];

/// The command line of a restart in place: `args` (this process's own,
/// the program's name first), then the capture, the answer mode, the
/// listener's descriptor and the time, each last so that it overrides what
/// `args` said. What an earlier restart added is taken off first: the
/// line grew by each restart's flags (about 70 bytes each), and past the
/// system's limit on a command line the exec failed and the receiver
/// stopped (a hostile-client probe started one just under the limit).
pub fn restart_args(
    mut args: Vec<std::ffi::OsString>,
    capture: &std::path::Path,
    mode: Mode,
    listener: std::os::fd::RawFd,
) -> Vec<std::ffi::OsString> {
    // Before a `--`, after which they would be taken for arguments.
    let end =
        |args: &[std::ffi::OsString]| args.iter().position(|a| a == "--").unwrap_or(args.len());
    let at = end(&args);
    if let Some(added) = at.checked_sub(RESTART_FLAGS.len()).filter(|&from| from > 0)
        && args[added..at]
            .iter()
            .zip(RESTART_FLAGS)
            .all(|(arg, flag)| arg.as_encoded_bytes().starts_with(flag.as_bytes()))
    {
        args.drain(added..at);
    }
    let at = end(&args);
    let mut capture_arg = std::ffi::OsString::from("--capture=");
    capture_arg.push(capture);
    let added: [std::ffi::OsString; 4] = [
        capture_arg,
        format!("--respond={mode}").into(),
        format!("--inherit-listener={listener}").into(),
        format!("--restarted-at={}", jiff::Timestamp::now()).into(),
    ];
    args.splice(at..at, added);
    args
}

/// Checks the `--forward` targets before anything starts (exit 2 when one
/// is wrong).
fn forward_targets(settings: &Settings) -> Result<Vec<forward::Target>, Fatal> {
    let ca = match &settings.forward_ca {
        Some(path) => Some(forward::load_ca(path).map_err(|m| Fatal::new(2, m))?),
        None => None,
    };
    let identity = match &settings.forward_identity {
        Some((cert, key)) => Some(Arc::new(
            forward::ClientIdentity::load(cert, key).map_err(|m| Fatal::new(2, m))?,
        )),
        None => None,
    };
    let credentials = forward::Credentials {
        authorization: settings.forward_authorization.clone(),
        mqtt_username: settings.mqtt_username.clone(),
        mqtt_password: settings.mqtt_password.clone(),
        ca,
        identity,
        timeout: Some(settings.forward_timeout),
    };
    let targets: Vec<forward::Target> = settings
        .forward
        .iter()
        .enumerate()
        .map(|(n, url)| {
            forward::parse_target(url, &credentials).map_err(|m| match settings.forward.len() {
                1 => Fatal::new(2, m),
                all => Fatal::new(2, format!("{m} (the URL given {} of {all})", n + 1)),
            })
        })
        .collect::<Result<_, _>>()?;
    let tls = |t: &forward::Target| {
        ["https://", "mqtts://"]
            .iter()
            .any(|s| t.name().starts_with(s))
    };
    let unused: Vec<&str> = [
        (settings.forward_ca.is_some(), "--forward-ca"),
        (
            settings.forward_identity.is_some(),
            "--forward-cert/--forward-key",
        ),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !unused.is_empty() && !targets.iter().any(tls) {
        crate::say!(
            "warning: {}: for https:// and mqtts:// targets only, and no --forward target is one (unused)",
            unused.join(" and ")
        );
    }
    // Each target keeps its place in the cursor file under its name.
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.name() == t.name()) {
            return Err(Fatal::new(
                2,
                format!(
                    "--forward {} is given twice (URLs that differ only in their query are one target: a target keeps its place under its URL without the query, which may hold a key and is kept out of files)",
                    t.name()
                ),
            ));
        }
    }
    Ok(targets)
}

/// With `--forward`, starts a forwarder per target. They read the capture
/// after the fact (the capture is their outbox), so the device's answers
/// never wait for them.
fn start_forwarding(
    settings: &Settings,
    opened: Option<forward::Opened>,
    (capture, durable): (PathBuf, crate::capture::Durable),
    running: &server::Running,
    notes: Sender<ForwardStatus>,
) -> Result<Option<Forwarders>, Fatal> {
    let Some(opened) = opened else {
        return Ok(None);
    };
    let names = opened.names();
    let board = running.stats.forward.clone();
    let notes = settings.headless.then_some(notes);
    let forwarders =
        forward::start(opened, &capture, durable, board, notes).map_err(|m| Fatal::new(1, m))?;
    // Headless, stderr keeps to the listening line: the targets' states
    // are on stdout.
    if !settings.headless {
        crate::say!(
            "forward cursor: {}",
            crate::text::path(&forwarders.cursor_path())
        );
        for name in names {
            crate::say!("forwarding to {name}");
        }
    }
    Ok(Some(forwarders))
}

/// `word` as a shell takes it back: as it is when it holds only letters,
/// digits and `._/-:+@,`, else in single quotes (the exit's `--capture
/// PATH` is pasted into a shell; a path with a space split in two: a
/// review).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-:+@,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Stops the forwarders and says what each target still has to get: it
/// is sent on the next start with the same capture, named, since a
/// start without `--capture` makes a new file (a review: the command
/// run again forwarded nothing).
fn stop_forwarding(
    forwarders: Forwarders,
    capture: &str,
    signals: &Receiver<()>,
    restarting: &Cell<bool>,
) {
    let cursor = crate::text::path(&forwarders.cursor_path()).to_string();
    let parked = crate::text::path(&forwarders.parked_path()).to_string();
    // A second signal exits at once here too, as while requests finish:
    // it waited out the batch in flight (a hostile-upstream probe).
    let sending = forwarders.sending();
    if sending > 0 {
        crate::say!(
            "stopping: waiting up to {} s for the batch in flight to {sending} forward target(s) (signal again to exit now)",
            FORWARD_GRACE.as_secs()
        );
    }
    let (stopped_tx, stopped) = bounded(1);
    std::thread::spawn(move || {
        let _ = stopped_tx.send(forwarders.stop(FORWARD_GRACE));
    });
    // The stop itself gives up on a batch after `FORWARD_GRACE`.
    let Some(Some(stopped)) = within_grace(
        &stopped,
        signals,
        (
            "second signal: exiting without waiting for the batches in flight to the forward targets (each is sent again at the next start)",
            "warning: the forward targets did not stop in time: exiting without saying what each has left",
        ),
        restarting,
    ) else {
        return;
    };
    if let Some((e, batches)) = &stopped.unsaved {
        let again = match batches {
            0 => "no batch passed on since it was last saved is sent again".to_string(),
            n => format!(
                "the next start sends again the {n} batch(es) passed on since it was last saved (one per target each went to)"
            ),
        };
        crate::say!("forward cursor {cursor}: cannot be saved at exit ({e}); {again}");
    }
    for left in stopped.targets {
        if let Some(behind) = left.behind {
            let next = match left.next_start {
                forward::NextStart::Refused => format!(
                    "{cursor} points at what is no longer in the file, so the next start with --capture {capture} and --forward refuses it: move {cursor} away to forward the file at the path from its start"
                ),
                forward::NextStart::FromItsStart => {
                    format!(
                        "the next start with --capture {capture} forwards the file at the path from its start"
                    )
                }
                forward::NextStart::From(offset) => {
                    format!(
                        "the next start with --capture {capture} goes on from byte {offset} of the file at the path"
                    )
                }
            };
            let gone = match behind {
                forward::Behind::Replaced => {
                    "some of them in a capture file that was deleted or replaced while running, which is not at the capture path any more"
                }
                forward::Behind::CutShort => {
                    "and the capture file was cut short in place while it was behind: those that were in the part cut away are gone"
                }
            };
            crate::say!(
                "forward {}: {} batch(es) not yet passed on, {gone}; {next}",
                left.target,
                left.pending
            );
        } else if left.next_start == forward::NextStart::Refused {
            // Taken away after the last upload: the writer never saw it.
            crate::say!(
                "forward {}: {} batch(es) not yet passed on; {cursor} no longer matches the capture at {capture} (deleted, replaced or cut short after the last upload), so the next start with --capture {capture} and --forward refuses it: move {cursor} away to forward the file at the path from its start",
                left.target,
                left.pending
            );
        } else if left.pending > 0 {
            crate::say!(
                "forward {}: {} batch(es) not yet passed on; they are sent when autopi-rx starts again with --capture {capture} and the same --forward",
                left.target,
                left.pending
            );
        }
        if left.parked > 0 {
            crate::say!(
                "forward {}: {} batch(es) parked, listed in {parked} with the reason for each (the target refused it, it cannot go as it is, or its capture line could not be read)",
                left.target,
                left.parked
            );
        }
    }
}

/// Opens (and repairs) the capture, saying what it found there: the file
/// given, or else a new one under `captures/` named for the start time.
/// Two receivers started within the same second
/// (two demos side by side) would share that name, and the later one
/// stopped on the first one's lock (exit 1): it takes the name with `-2`
/// (`-3`, …) instead. A file of that name left by an earlier run is
/// appended to, as a given `--capture` is.
fn open_capture(given: Option<&std::path::Path>) -> Result<Capture, Fatal> {
    let cannot = |path: &std::path::Path, e: std::io::Error| {
        Fatal::new(
            1,
            format!("cannot open capture file {}: {e}", crate::text::path(&path)),
        )
    };
    let capture = match given {
        Some(path) => Capture::open(path).map_err(|e| cannot(path, e))?,
        None => {
            let start = jiff::Timestamp::now();
            let mut n = 1;
            loop {
                let path = default_capture_path(start, n);
                match Capture::open(&path) {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && n < DEFAULT_CAPTURE_TRIES =>
                    {
                        n += 1
                    }
                    opened => break opened.map_err(|e| cannot(&path, e))?,
                }
            }
        }
    };
    let path = capture.path();
    if !capture.regular {
        crate::say!(
            "warning: {} is not a regular file: batches are acknowledged once written there, with no fsync",
            crate::text::path(&path)
        );
    }
    let r = &capture.recovered;
    if r.torn_bytes > 0 {
        crate::say!(
            "warning: {}: cut an unfinished last line of {} bytes (a batch that was never acknowledged)",
            crate::text::path(&path),
            r.torn_bytes
        );
    }
    if r.ended_bytes > 0 {
        crate::say!(
            "warning: {}: its last line ({} bytes) had no line end and was not written by autopi-rx: given one, and kept as a line that is not a capture line",
            crate::text::path(&path),
            r.ended_bytes
        );
    }
    if r.unchecked_bytes > 0 {
        crate::say!(
            "warning: {}: cut a last line of {} bytes whose records are not a batch (it was being \
             refused when the receiver stopped, and was never acknowledged)",
            crate::text::path(&path),
            r.unchecked_bytes
        );
    }
    if r.unreadable > 0 {
        crate::say!(
            "warning: {}: {} of {} lines are not capture lines and were skipped",
            crate::text::path(&path),
            r.unreadable,
            r.lines
        );
    }
    Ok(capture)
}

/// SIGINT and SIGTERM (and SIGHUP, unless it reads the tokens again) as
/// channel messages: `received` is what the handler sends. `stop` and
/// `stopped` are a channel of their own for a closed stdout under
/// `--headless`, which stops the run as a signal does (it shared the
/// signals' channel, where it could pass for a second signal).
struct Signals {
    received: Receiver<()>,
    /// Ends the run as a signal does (a restart in place asks so).
    ask: Sender<()>,
    stop: Sender<()>,
    stopped: Receiver<()>,
}

impl Signals {
    fn install(hup_reloads: bool) -> Result<Signals, Fatal> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let (tx, received) = bounded::<()>(1);
        let (stop, stopped) = bounded::<()>(1);
        let mut wanted = vec![SIGINT, SIGTERM];
        if !hup_reloads {
            wanted.push(SIGHUP);
        }
        let cannot =
            |e: std::io::Error| Fatal::new(1, format!("cannot install the signal handler: {e}"));
        let mut signals = signal_hook::iterator::Signals::new(wanted).map_err(cannot)?;
        let ask = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut untaken = crate::panic::Untaken::default();
                for _ in signals.forever() {
                    let delivered = !matches!(tx.try_send(()), Err(TrySendError::Full(())));
                    // What should take it is stuck (a hung screen once
                    // ignored every signal and q alike). As a second
                    // signal does, exit now.
                    untaken.exit_if_stuck(delivered, |waited| format!(
                        "autopi-rx: a signal while the one before has waited {waited:.1} s untaken (the screen or the start is stuck or busy): exiting now; any request in flight was not acknowledged, so its device sends it again"
                    ));
                }
            })
            .map_err(cannot)?;
        Ok(Signals {
            received,
            ask,
            stop,
            stopped,
        })
    }
}

/// Binds and starts the workers, then says where it listens.
fn start_server(
    settings: &Settings,
    capture: Capture,
    events: Sender<RequestEvent>,
    respond: Arc<Control>,
) -> Result<server::Running, Fatal> {
    let server_settings = server::Settings {
        listen: settings.listen.clone(),
        ingest: Config {
            auth: settings.auth.clone(),
            max_body: settings.max_body,
        },
        workers: settings.workers,
        event_bodies: !settings.headless,
        read_timeout: settings.read_timeout,
        max_connections: settings.max_connections,
    };
    let running = match settings.inherit_listener {
        Some(fd) => {
            let listener = crate::receiver::listener::inherit(fd, settings.read_timeout).map_err(|e| {
                Fatal::new(
                    1,
                    format!(
                        "cannot take over the listening socket (descriptor {fd}) from before the restart: {e}"
                    ),
                )
            })?;
            crate::say!("restarted in place: the listening socket is the one from before");
            name_process_again();
            server::start_on(listener, server_settings, capture, events, respond)
        }
        None => server::start_with(server_settings, capture, events, respond),
    }
    .map_err(|e| Fatal::new(1, e.to_string()))?;
    if settings.respond != Mode::Ok {
        crate::say!(
            "answer mode {}: every valid batch is captured, then answered as the mode says; {}",
            settings.respond,
            settings.respond.consequence()
        );
    }
    if !settings.headless {
        crate::say!("capture: {}", crate::text::path(&running.capture_path()));
    }
    crate::say!("listening on http://{}", running.addr);
    Ok(running)
}

/// On SIGHUP, reads the tokens again (`--token` and `--token-file`) and
/// says how many are configured; a file that cannot be read or holds no
/// valid token leaves the tokens in force.
fn reload_on_sighup(
    reload: TokenReload,
    mut hups: signal_hook::iterator::Signals,
    switch: server::AuthSwitch,
    headless: bool,
) -> Result<(), Fatal> {
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in hups.forever() {
                let line = match reload() {
                    Ok(tokens) => {
                        let n = tokens.len();
                        if !switch.set(Auth::tokens(&tokens)) {
                            return;
                        }
                        let mut line =
                            format!("SIGHUP: tokens read again: {n} token(s) configured");
                        if let Some(warning) = crate::cli::short_tokens_warning(&tokens) {
                            line = format!("{line}\nautopi-rx: {warning}");
                        }
                        line
                    }
                    Err(why) => format!("SIGHUP: tokens kept as they were: {why}"),
                };
                // Under the dashboard stderr is hidden: the header's
                // token count changes instead (and the status page's).
                if headless {
                    crate::say!("autopi-rx: {line}");
                }
            }
        })
        .map_err(|e| Fatal::new(1, format!("cannot start the SIGHUP thread: {e}")))?;
    Ok(())
}

/// With `--demo`, starts the simulated device against this receiver.
fn start_demo(settings: &Settings, running: &server::Running) -> Result<Option<Demo>, Fatal> {
    let Some(token) = &settings.demo_token else {
        return Ok(None);
    };
    let mut addr = running.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let demo = Demo::start(addr, token).map_err(|e| Fatal::new(1, e.to_string()))?;
    crate::say!(
        "DEMO: a simulated device posts to http://{addr}/logbook/storage about once a second"
    );
    Ok(Some(demo))
}

/// What the receiver says while it runs (accepting failed or recovered,
/// the capture replaced): on stderr at once when headless; under the
/// dashboard, kept (the returned channel) to be said once the terminal is
/// back.
fn relay_notices(running: &server::Running, headless: bool) -> Receiver<String> {
    let notices = running.notices.clone();
    let (kept_tx, kept) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for notice in notices {
            if headless {
                crate::say!("autopi-rx: {notice}");
            } else if kept_tx.send(notice).is_err() {
                return;
            }
        }
    });
    kept
}

/// Shows the requests until a signal (or q on the dashboard): the JSON-line
/// printer (headless: what is returned closes when it is done, to be
/// waited for once the workers are gone, so every event is printed) or the
/// dashboard.
fn show(
    settings: &Settings,
    running: &server::Running,
    token_count: usize,
    demo: bool,
    respond: Arc<Control>,
    (events, notes, held, durable): (
        Receiver<RequestEvent>,
        Receiver<ForwardStatus>,
        u64,
        Durable,
    ),
    signals: &Signals,
) -> std::io::Result<Option<Receiver<()>>> {
    if settings.headless {
        let stop = signals.stop.clone();
        let (done, printed) = bounded::<()>(0);
        std::thread::Builder::new()
            .name("headless".into())
            .spawn(move || {
                headless::print(events, notes, std::io::stdout().lock(), stop);
                drop(done);
            })?;
        select! {
            recv(signals.received) -> _ => {}
            recv(signals.stopped) -> _ => {}
        }
        return Ok(Some(printed));
    }
    let mut setup = screen_setup(running, token_count, demo, respond);
    setup.restarted = settings.restarted_at;
    let capture = running.capture_path().to_path_buf();
    let so_far = match load_so_far(&capture, held, &events, &signals.received) {
        Ok(state) => state,
        Err(read) => {
            // Taken here, so the shutdown does not count it as a second one.
            let _ = signals.received.try_recv();
            crate::say!(
                "stopping: a signal while the dashboard was loading what {} held ({} % read); the file is untouched",
                crate::text::path(&capture),
                read * 100 / held.max(1)
            );
            return Ok(None);
        }
    };
    tui::run(
        so_far,
        setup,
        events,
        signals.received.clone(),
        readings(running, capture, durable),
    )
    .map(|()| None)
}

/// What the dashboard reads on each tick: the capture's size, the events
/// it missed, the tokens accepted now (SIGHUP changes the count; `--no-auth`
/// stays 0), and what became of the capture file.
fn readings(
    running: &server::Running,
    capture: PathBuf,
    durable: Durable,
) -> Box<dyn FnMut() -> Probed + Send> {
    let switch = running.auth_switch();
    let stats = running.stats.clone();
    Box::new(move || Probed {
        capture_bytes: std::fs::metadata(&capture).ok().map(|m| m.len()),
        dropped_events: Stats::get(&stats.dropped_events),
        tokens: switch.token_count(),
        short_tokens: switch.short_token_count(),
        capture_taken: durable
            .taken()
            .map(|(at, what)| format!("{} {}", what.label(), crate::dashboard::format::clock(at))),
    })
}

/// The session so far: what the capture held before this run, folded as
/// the dashboard folded it live (with progress on stderr for big files),
/// then the events that arrived during the load. They are taken off the
/// queue while the file is read (a big file takes seconds, and the queue
/// holds 4096), and folded after it, in arrival order: every event that
/// arrives later is newer, so the order the live fold sees is kept. When
/// a signal comes during the load (a big file takes seconds), the load
/// stops there: the bytes read by then, the signal left in `signals`.
fn load_so_far(
    capture: &std::path::Path,
    held: u64,
    events: &Receiver<RequestEvent>,
    signals: &Receiver<()>,
) -> Result<State, u64> {
    let mut state = State::default();
    if held == 0 {
        return Ok(state);
    }
    let (done_tx, done) = bounded::<()>(0);
    let arriving = events.clone();
    let holder = std::thread::Builder::new()
        .name("held-events".into())
        .spawn(move || hold_events(&arriving, &done));
    let mut progress = Progress::new(format!("loading {}", crate::text::path(&capture)), held);
    let mut read = 0;
    let loaded = load::scan_events(
        capture,
        Some(held),
        0,
        |e| state.apply(&e),
        |done, total| {
            read = done;
            progress.update(done, total);
        },
        || !signals.is_empty(),
    );
    if !signals.is_empty() {
        progress.stopped();
        return Err(read);
    }
    progress.finish();
    match loaded {
        Ok(report) => report.warn(),
        Err(e) => crate::say!(
            "warning: cannot load what {} holds ({e}); the dashboard starts empty",
            crate::text::path(&capture)
        ),
    }
    drop(done_tx);
    if let Ok(holder) = holder {
        for e in holder.join().unwrap_or_default() {
            state.apply(&e);
        }
    }
    Ok(state)
}

/// What one held event counts for beside its body.
const EVENT_OVERHEAD: u64 = 8 * 1024;

/// Takes events off the queue until `done` closes (at most
/// `HELD_DURING_LOAD` bytes, bodies plus `EVENT_OVERHEAD` each), and gives
/// them back in order.
fn hold_events(events: &Receiver<RequestEvent>, done: &Receiver<()>) -> Vec<RequestEvent> {
    let mut held = Vec::new();
    let mut bytes = 0u64;
    while bytes < HELD_DURING_LOAD {
        select! {
            recv(events) -> e => match e {
                Ok(e) => {
                    // Each event also costs its own fields (headers are
                    // capped at 4 KiB): counted at a fixed size, so bodiless
                    // events cannot pile up without bound either.
                    bytes += EVENT_OVERHEAD + e.body.as_ref().map_or(0, |b| b.len() as u64);
                    held.push(e);
                }
                Err(_) => break,
            },
            recv(done) -> _ => return held,
        }
    }
    let _ = done.recv();
    held
}

/// Header facts for the dashboard: where to point the device, auth, capture.
fn screen_setup(
    running: &server::Running,
    tokens: usize,
    demo: bool,
    respond: Arc<Control>,
) -> Setup {
    let (urls, url_note) = tui::device_urls(running.addr, &tui::interface_addresses());
    // The demo's device is built in: the loopback warning is beside the point.
    let url_note = url_note.filter(|_| !demo);
    Setup {
        urls,
        url_note,
        tokens,
        short_tokens: running.auth_switch().short_token_count().unwrap_or(0),
        // Written for the header, its invisible characters as `\u{..}`
        // (the frame drops them); `s` saves beside `save_beside`.
        capture_path: crate::text::path(running.capture_path()).to_string(),
        save_beside: running.capture_path().to_path_buf(),
        capture_bytes: None,
        dropped_events: 0,
        capture_taken: None,
        demo,
        respond: Some(respond),
        forward_board: Some(running.stats.forward.clone()),
        // The forwarders are registered already: the header has its
        // forward line from the first frame.
        forward: running.stats.forward.snapshot(),
        viewing: false,
        restarted: None,
    }
}

/// Finishes the requests in flight and flushes the capture. A second
/// signal exits at once; after `SHUTDOWN_GRACE` it stops waiting (false).
/// For a restart in place (`keep_listening`) the listening socket keeps
/// listening.
/// For a restart in place (`restarting`) the listening socket keeps
/// listening, and a signal stops the run instead (`within_grace`).
fn shut_down(running: server::Running, signals: &Receiver<()>, restarting: &Cell<bool>) -> bool {
    let keep_listening = restarting.get();
    let in_flight = running.in_flight();
    if in_flight > 0 {
        crate::say!(
            "stopping: finishing {in_flight} request(s) in flight (signal again to exit now)"
        );
    }
    let (done_tx, done) = bounded::<()>(0);
    std::thread::spawn(move || {
        if keep_listening {
            running.shutdown_keeping_listener();
        } else {
            running.shutdown();
        }
        drop(done_tx);
    });
    let second = "second signal: exiting without waiting for the requests in flight (none of them was acknowledged)";
    let late = format!(
        "warning: requests still in flight after {} s (a stalled upload?): {} without them; none was acknowledged, so the device sends them again",
        SHUTDOWN_GRACE.as_secs(),
        if keep_listening {
            "restarting"
        } else {
            "exiting"
        }
    );
    within_grace(&done, signals, (second, &late), restarting).is_some()
}

/// Waits until `done` gives a value (`Some(Some(value))`) or closes
/// (`Some(None)`); a second signal exits at once (status 1) saying
/// `second`, and after `SHUTDOWN_GRACE` the wait stops (None) saying
/// `late`. While `restarting`, a signal is the first: the run stops
/// instead of restarting (`restarting` cleared), and the wait goes on.
/// (Until December 8 the first signal during a restart was taken for a
/// second one, and the process exited 1 without finishing: a probe.)
fn within_grace<T>(
    done: &Receiver<T>,
    signals: &Receiver<()>,
    (second, late): (&str, &str),
    restarting: &Cell<bool>,
) -> Option<Option<T>> {
    let until = Instant::now() + SHUTDOWN_GRACE;
    loop {
        select! {
            recv(done) -> value => return Some(value.ok()),
            recv(signals) -> _ => {
                if restarting.replace(false) {
                    crate::say!(
                        "autopi-rx: a signal during the restart in place: stopping instead (signal again to exit now)"
                    );
                    continue;
                }
                crate::say!("autopi-rx: {second}");
                std::process::exit(1);
            }
            default(until.saturating_duration_since(Instant::now())) => {
                crate::say!("{late}");
                return None;
            }
        }
    }
}

/// Waits for the headless printer to print the last events (`printed`
/// closes then). Stdout may take none: a pipe nobody reads (a `| less`
/// left alone) blocks the printer in its write. A second signal, or
/// `SHUTDOWN_GRACE`, stops the wait then: the capture has every batch.
/// (Until December 6 it waited for ever, deaf to signals: a hostile-client
/// probe had to `kill -9` it.)
fn wait_for_printer(printed: &Receiver<()>, signals: &Receiver<()>, restarting: &Cell<bool>) {
    within_grace(
        printed,
        signals,
        (
            "second signal: exiting without printing the last request events (the capture has every batch)",
            &format!(
                "warning: stdout did not take the last request events within {} s (a pipe nobody reads?): exiting without printing them; the capture has every batch",
                SHUTDOWN_GRACE.as_secs()
            ),
        ),
        restarting,
    );
}

/// Says how many request events the consumer missed (the capture has all).
fn warn_dropped_events(stats: &Stats, headless: bool) {
    let dropped = Stats::get(&stats.dropped_events);
    if dropped > 0 {
        let (what, who) = if headless {
            ("printed", "stdout")
        } else {
            ("shown", "the screen")
        };
        crate::say!(
            "warning: {dropped} request events were not {what} ({who} was too slow); the capture has every batch"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_written_as_a_shell_takes_it_back() {
        assert_eq!(
            shell_word("captures/2026-12-07.jsonl"),
            "captures/2026-12-07.jsonl"
        );
        assert_eq!(shell_word("my captures/a.jsonl"), "'my captures/a.jsonl'");
        assert_eq!(shell_word("it's.jsonl"), "'it'\\''s.jsonl'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
    }

    /// A restart's command line keeps every flag given, and its capture,
    /// answer mode and listener override those given (or defaulted).
    #[test]
    fn a_restart_keeps_the_command_line_and_overrides_what_it_must() {
        use clap::Parser;
        let given =
            |words: &[&str]| -> Vec<std::ffi::OsString> { words.iter().map(Into::into).collect() };
        let parse = |args: Vec<std::ffi::OsString>| crate::cli::Cli::try_parse_from(args).unwrap();
        let capture = std::path::Path::new("captures/-odd name.jsonl");
        for words in [
            &["autopi-rx", "--token", "ABCDEFGH12", "--read-timeout", "7"][..],
            &[
                "autopi-rx",
                "--token",
                "ABCDEFGH12",
                "--read-timeout",
                "7",
                "--capture",
                "old.jsonl",
                "--respond",
                "500",
                "--inherit-listener",
                "3",
            ],
        ] {
            let args = restart_args(
                given(words),
                capture,
                Mode::Late(Duration::from_secs(12)),
                41,
            );
            let cli = parse(args);
            assert!(cli.command.is_none());
            let r = cli.receive;
            assert_eq!(r.capture.as_deref(), Some(capture), "{words:?}");
            assert_eq!(r.respond, Mode::Late(Duration::from_secs(12)));
            assert_eq!(r.inherit_listener, Some(41));
            assert!(r.restarted_at.is_some());
            assert_eq!(r.tokens, ["ABCDEFGH12"]);
            assert_eq!(r.read_timeout, 7);
        }
        // Before a `--` ending the line.
        let ended = restart_args(
            given(&["autopi-rx", "--token", "ABCDEFGH12", "--"]),
            capture,
            Mode::Ok,
            41,
        );
        assert_eq!(parse(ended.clone()).receive.inherit_listener, Some(41));
        assert_eq!(
            ended.last().map(|a| a.as_os_str()),
            Some(std::ffi::OsStr::new("--"))
        );
        let again = restart_args(ended.clone(), capture, Mode::Ok, 41);
        assert_eq!(again.len(), ended.len());
        // A restart of a restart adds no more to the line.
        let once = restart_args(
            given(&["autopi-rx", "--token", "ABCDEFGH12"]),
            capture,
            Mode::Ok,
            41,
        );
        let twice = restart_args(once.clone(), capture, Mode::Refuse(503), 41);
        assert_eq!(twice.len(), once.len());
        let r = parse(twice).receive;
        assert_eq!(r.respond, Mode::Refuse(503));
        assert_eq!(r.tokens, ["ABCDEFGH12"]);
    }
}

//! The `autopi-rx` main job: set up, receive until a signal, shut down.

use std::io::IsTerminal;
use std::path::PathBuf;

use crossbeam_channel::{bounded, select};

use crate::app::Setup;
use crate::capture::Capture;
use crate::cli::{ReceiveArgs, collect_tokens};
use crate::demo::{self, Demo};
use crate::event::Stats;
use crate::ingest::{Auth, Config};
use crate::{headless, server, tui};

/// Events queued for the consumer before new ones are dropped (and counted):
/// the listener never waits for the screen.
pub const EVENT_QUEUE: usize = 4096;
/// How long shutdown waits for requests in flight (a device's timeout is
/// 10 to 60 s; an upload stalled longer is not coming).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// A reason to stop, with the process exit status.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    fn new(code: u8, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

/// Builds the authentication from the flags, or says how to give a token.
pub fn auth_from(args: &ReceiveArgs) -> Result<Auth, Fatal> {
    if args.no_auth {
        return Ok(Auth::Open);
    }
    let tokens = collect_tokens(args).map_err(|m| Fatal::new(2, m))?;
    if tokens.is_empty() {
        return Err(Fatal::new(
            2,
            "no auth token configured: give the device's Auth Token with --token TOKEN \
             (or the AUTOPI_RX_TOKEN environment variable, or --token-file FILE), \
             or pass --no-auth to accept uploads from anyone",
        ));
    }
    Ok(Auth::tokens(&tokens))
}

/// Default capture file: `captures/<start time, UTC>.jsonl`.
pub fn default_capture_path() -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    PathBuf::from("captures").join(format!("{stamp}.jsonl"))
}

/// Header facts for the dashboard: where to point the device, auth, capture.
fn screen_setup(running: &server::Running, tokens: usize, demo: bool) -> Setup {
    let (urls, url_note) = tui::device_urls(running.addr, &tui::interface_addresses());
    // The demo's device is built in: the loopback warning is beside the point.
    let url_note = url_note.filter(|_| !demo);
    Setup {
        urls,
        url_note,
        tokens,
        capture_path: running.capture_path().display().to_string(),
        capture_bytes: None,
        dropped_events: 0,
        demo,
    }
}

/// Runs the receiver until SIGINT or SIGTERM (or q on the dashboard).
pub fn run(args: ReceiveArgs) -> Result<(), Fatal> {
    let demo_token = args.demo.then(demo::generate_token);
    let auth = match &demo_token {
        Some(token) => Auth::tokens(&[token]),
        None => auth_from(&args)?,
    };
    let listen = args.listen.clone().unwrap_or_else(|| {
        if args.demo {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:8000"
        }
        .to_string()
    });
    // More descriptors than the default 1024: tiny_http stops accepting for
    // good after its first accept error.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let headless = args.headless || !std::io::stdout().is_terminal();
    if matches!(auth, Auth::Open) {
        eprintln!("WARNING: --no-auth: accepting uploads from anyone, without checking a token");
    }
    let capture_path = args.capture.clone().unwrap_or_else(default_capture_path);
    let capture = Capture::open(&capture_path).map_err(|e| {
        Fatal::new(
            1,
            format!("cannot open capture file {}: {e}", capture_path.display()),
        )
    })?;
    if !capture.regular {
        eprintln!(
            "warning: {} is not a regular file: batches are acknowledged once written there, with no fsync",
            capture_path.display()
        );
    }
    let r = &capture.recovered;
    if r.torn_bytes > 0 {
        eprintln!(
            "warning: {}: cut an unfinished last line of {} bytes (a batch that was never acknowledged)",
            capture_path.display(),
            r.torn_bytes
        );
    }
    if r.unreadable > 0 {
        eprintln!(
            "warning: {}: {} of {} lines are not capture lines and were skipped",
            capture_path.display(),
            r.unreadable,
            r.lines
        );
    }

    let (signal_tx, signal_rx) = bounded::<()>(1);
    let stop_tx = signal_tx.clone();
    ctrlc::set_handler(move || {
        let _ = signal_tx.try_send(());
    })
    .map_err(|e| Fatal::new(1, format!("cannot install the signal handler: {e}")))?;

    let token_count = auth.token_count();
    let (events_tx, events_rx) = bounded(EVENT_QUEUE);
    let settings = server::Settings {
        listen,
        ingest: Config {
            auth,
            max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        },
        workers: args.workers,
        event_bodies: !headless,
    };
    let running =
        server::start(settings, capture, events_tx).map_err(|e| Fatal::new(1, e.to_string()))?;
    if !headless {
        eprintln!("capture: {}", running.capture_path().display());
    }
    eprintln!("listening on http://{}", running.addr);
    let demo = match &demo_token {
        Some(token) => {
            let mut addr = running.addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let demo = Demo::start(addr, token).map_err(|e| Fatal::new(1, e.to_string()))?;
            eprintln!(
                "DEMO: a simulated device posts to http://{addr}/logbook/storage about once a second"
            );
            Some(demo)
        }
        None => None,
    };
    let stats = running.stats.clone();
    // A dead listener stops the run like a signal does, and says why.
    let fatal = running.fatal.clone();
    let (reason_tx, reason) = bounded::<String>(1);
    std::thread::spawn(move || {
        if let Ok(why) = fatal.recv() {
            let _ = reason_tx.send(why);
            let _ = stop_tx.try_send(());
        }
    });
    let mut printer = None;
    let shown = if headless {
        printer = Some(
            std::thread::Builder::new()
                .name("headless".into())
                .spawn(move || headless::print(events_rx, std::io::stdout().lock()))
                .map_err(|e| Fatal::new(1, e.to_string()))?,
        );
        let _ = signal_rx.recv();
        Ok(())
    } else {
        let setup = screen_setup(&running, token_count, demo.is_some());
        let capture = running.capture_path().to_path_buf();
        tui::run(setup, events_rx, signal_rx.clone(), capture, stats.clone())
    };
    let outcome = match reason.try_recv() {
        Ok(why) => Err(Fatal::new(1, why)),
        Err(_) => shown.map_err(|e| Fatal::new(1, format!("terminal: {e}"))),
    };
    if let Some(demo) = demo {
        demo.stop();
    }
    let in_flight = running.in_flight();
    if in_flight > 0 {
        eprintln!(
            "stopping: finishing {in_flight} request(s) in flight (signal again to exit now)"
        );
    }
    let (done_tx, done) = bounded::<()>(0);
    std::thread::spawn(move || {
        running.shutdown();
        drop(done_tx);
    });
    select! {
        recv(done) -> _ => {}
        recv(signal_rx) -> _ => {
            eprintln!("autopi-rx: second signal: exiting without waiting for the requests in flight (none of them was acknowledged)");
            std::process::exit(1);
        }
        default(SHUTDOWN_GRACE) => {
            eprintln!(
                "warning: requests still in flight after {} s (a stalled upload?): exiting without them; none was acknowledged, so the device sends them again",
                SHUTDOWN_GRACE.as_secs()
            );
            return outcome;
        }
    }
    if let Some(printer) = printer {
        let _ = printer.join();
    }
    let dropped = Stats::get(&stats.dropped_events);
    if dropped > 0 {
        let (what, who) = if headless {
            ("printed", "stdout")
        } else {
            ("shown", "the screen")
        };
        eprintln!(
            "warning: {dropped} request events were not {what} ({who} was too slow); the capture has every batch"
        );
    }
    outcome
}

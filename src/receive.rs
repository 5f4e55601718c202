//! The `autopi-rx` main job: set up, receive until a signal, shut down.

use std::io::IsTerminal;
use std::path::PathBuf;

use crossbeam_channel::bounded;

use crate::app::Setup;
use crate::capture::Capture;
use crate::cli::{ReceiveArgs, collect_tokens};
use crate::event::Stats;
use crate::ingest::{Auth, Config};
use crate::{headless, server, tui};

/// Events queued for the consumer before new ones are dropped (and counted):
/// the listener never waits for the screen.
pub const EVENT_QUEUE: usize = 4096;

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
fn screen_setup(running: &server::Running, tokens: usize) -> Setup {
    let (urls, url_note) = tui::device_urls(running.addr, &tui::interface_addresses());
    Setup {
        urls,
        url_note,
        tokens,
        capture_path: running.capture_path().display().to_string(),
        capture_bytes: None,
        dropped_events: 0,
    }
}

/// Runs the receiver until SIGINT or SIGTERM (or q on the dashboard).
pub fn run(args: ReceiveArgs) -> Result<(), Fatal> {
    let auth = auth_from(&args)?;
    if args.max_body == 0 {
        return Err(Fatal::new(2, "--max-body must be at least 1 byte"));
    }
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
    ctrlc::set_handler(move || {
        let _ = signal_tx.try_send(());
    })
    .map_err(|e| Fatal::new(1, format!("cannot install the signal handler: {e}")))?;

    let token_count = auth.token_count();
    let (events_tx, events_rx) = bounded(EVENT_QUEUE);
    let settings = server::Settings {
        listen: args.listen.clone(),
        ingest: Config {
            auth,
            max_body: args.max_body,
        },
        workers: args.workers,
    };
    let running =
        server::start(settings, capture, events_tx).map_err(|e| Fatal::new(1, e.to_string()))?;
    if !headless {
        eprintln!("capture: {}", running.capture_path().display());
    }
    eprintln!("listening on http://{}", running.addr);
    let stats = running.stats.clone();
    if headless {
        let printer = std::thread::Builder::new()
            .name("headless".into())
            .spawn(move || headless::print(events_rx, std::io::stdout().lock()))
            .map_err(|e| Fatal::new(1, e.to_string()))?;
        let _ = signal_rx.recv();
        running.shutdown();
        let _ = printer.join();
    } else {
        let setup = screen_setup(&running, token_count);
        let capture = running.capture_path().to_path_buf();
        let shown = tui::run(setup, events_rx, signal_rx, capture, stats.clone());
        running.shutdown();
        shown.map_err(|e| Fatal::new(1, format!("terminal: {e}")))?;
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
    Ok(())
}

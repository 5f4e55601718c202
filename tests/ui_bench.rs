//! Dashboard benchmarks with printed figures (timings are never pass/fail
//! tests: these machines are noisy). Run with
//!
//! ```sh
//! cargo test --release --test ui_bench -- --run
//! ```
//!
//! (A test binary without the test harness, so the fold runs on a real main
//! thread as in the dashboard; without `--run` it does nothing, which keeps
//! `cargo test` fast.)
//!
//! 1. folding 1 M records (1 000 batches of the 1 000-record sample);
//! 2. rendering one 120×40 frame of each tab;
//! 3. a backlog of 2 000 full batches (2 M records) queued at once: how
//!    fast the dashboard folds it and how often it still redraws;
//! 4. a flood of uploads over HTTP: acknowledgement latency with the
//!    dashboard consuming events (on a TestBackend) and without it, and
//!    how often the dashboard redrew meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use autopi_rx::capture::Capture;
use autopi_rx::dashboard::app::{App, Outside, Setup};
use autopi_rx::dashboard::state::State;
use autopi_rx::dashboard::theme::Theme;
use autopi_rx::event::RequestEvent;
use autopi_rx::fixtures::{accepted, at, sample};
use autopi_rx::latency::Latencies;
use autopi_rx::receiver::ingest::{Auth, Config};
use autopi_rx::receiver::server::{self, Settings};
use common::{Conn, request_bytes};
use crossbeam_channel::{Receiver, bounded};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Position, Size};

const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";

fn main() {
    if !std::env::args().any(|a| a == "--run") {
        println!("ui_bench: skipped (run with: cargo test --release --test ui_bench -- --run)");
        return;
    }
    // `-- --run fold render` runs only those parts (for a profiler, say).
    const PARTS: [&str; 5] = ["fold", "render", "backlog", "flood", "wide"];
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| a != "--run").collect();
    if let Some(unknown) = picked.iter().find(|p| !PARTS.contains(&p.as_str())) {
        eprintln!("ui_bench: no part {unknown:?}; the parts are {PARTS:?}");
        std::process::exit(2);
    }
    let part = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    if part("fold") {
        // The dashboard folds on the main thread; glibc's allocator behaves
        // differently there than on other threads, so both are shown.
        fold_one_million("main thread");
        std::thread::spawn(|| fold_one_million("other thread"))
            .join()
            .unwrap();
    }
    if part("render") {
        render_frames();
    }
    if part("backlog") {
        backlog();
    }
    if part("flood") {
        flood(false);
        flood(true);
    }
    if part("wide") {
        wide();
    }
}

/// One record of `keys` fields (`"k0":0,…`), of type `kind`, with a tag
/// when `tag`.
fn wide_batch(kind: &str, keys: usize, tag: bool) -> String {
    let mut body = format!(r#"[{{"@t":"{kind}","@ts":"2026-11-27T08:04:00Z""#);
    if tag {
        body.push_str(r#","@tag":"wide""#);
    }
    for k in 0..keys {
        body.push_str(&format!(r#","k{k}":{k}"#));
    }
    body.push_str("}]");
    body
}

/// How long the dashboard takes over one batch holding a single record of
/// 200 000 fields (3 MB), for an event, an OBD reading and another type,
/// against the same bytes as 1 000-record batches.
fn wide() {
    for (kind, tag) in [
        ("event.wide", false),
        ("obd.wide", false),
        ("other.wide", false),
        ("other.wide", true),
    ] {
        let body = wide_batch(kind, 200_000, tag);
        let event = accepted(1, at("2026-11-27T08:04:01Z"), Some(UNIT), &body);
        let times: Latencies = (0..5)
            .map(|_| {
                let mut app =
                    App::new(Setup::default(), Theme::color(), at("2026-11-27T08:04:05Z"));
                let started = Instant::now();
                app.apply(&event);
                started.elapsed()
            })
            .collect();
        let l = times.summary().unwrap();
        println!(
            "one {kind}{} record of 200 000 fields ({:.1} MB): median {:.0} ms, slowest {:.0} ms",
            if tag { " (tagged)" } else { "" },
            body.len() as f64 / 1e6,
            l.p50.as_secs_f64() * 1e3,
            l.max.as_secs_f64() * 1e3
        );
    }
}

/// 1 000 distinct-looking events carrying the 1 000-record sample.
fn batches() -> Vec<RequestEvent> {
    let text = sample("batch-1000-naive.json");
    let first = accepted(1, at("2026-11-27T08:04:00Z"), Some(UNIT), &text);
    (0..1000u64)
        .map(|i| {
            let mut e = first.clone();
            e.id = i + 1;
            e.received = at("2026-11-27T08:04:00Z") + jiff::SignedDuration::from_secs(i as i64);
            e
        })
        .collect()
}

/// Folds 1 M records three times into fresh states; prints the first
/// (cold caches, cold allocator) and the best.
fn fold_one_million(thread: &str) {
    let events = batches();
    let runs: Vec<(u64, Duration)> = (0..3)
        .map(|_| {
            let mut state = State::default();
            let started = Instant::now();
            for e in &events {
                state.apply(e);
            }
            (state.totals.records, started.elapsed())
        })
        .collect();
    let best = runs.iter().map(|r| r.1).min().unwrap();
    println!(
        "fold on the {thread}: {} records, first run {:.0} ms, best of 3 {:.0} ms ({:.2} M records/s)",
        runs[0].0,
        runs[0].1.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        runs[0].0 as f64 / best.as_secs_f64() / 1e6
    );
}

fn render_frames() {
    let mut app = App::new(Setup::default(), Theme::color(), at("2026-11-27T08:04:05Z"));
    for e in batches().iter().take(20) {
        app.apply(e);
    }
    app.tick(at("2026-11-27T08:20:00Z"));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    app.resize(120, 40);
    let tabs: [(&str, &[KeyCode]); 5] = [
        ("live", &[]),
        ("requests", &[KeyCode::Char('2')]),
        ("detail (1000 records), top", &[KeyCode::Enter]),
        ("detail (1000 records), end", &[KeyCode::Char('G')]),
        ("types", &[KeyCode::Char('3')]),
    ];
    for (name, keys) in tabs {
        for &k in keys {
            app.handle_key(KeyEvent::from(k));
        }
        let frames = 200;
        let times: Latencies = (0..frames)
            .map(|_| {
                terminal.clear().unwrap();
                let started = Instant::now();
                terminal.draw(|f| f.render_widget(&app, f.area())).unwrap();
                started.elapsed()
            })
            .collect();
        println!(
            "render 120x40 {name}: median {:.2} ms, p99 {:.2} ms",
            times.quantile(0.5).as_secs_f64() * 1e3,
            times.quantile(0.99).as_secs_f64() * 1e3
        );
    }
}

/// A TestBackend that counts the frames flushed to it.
struct Counting(TestBackend, Arc<AtomicU64>);

impl Backend for Counting {
    type Error = <TestBackend as Backend>::Error;
    fn draw<'a, I: Iterator<Item = (u16, u16, &'a Cell)>>(
        &mut self,
        c: I,
    ) -> Result<(), Self::Error> {
        self.0.draw(c)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.0.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, p: P) -> Result<(), Self::Error> {
        self.0.set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.0.clear()
    }
    fn clear_region(&mut self, t: ClearType) -> Result<(), Self::Error> {
        self.0.clear_region(t)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.0.size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.0.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.flush()
    }
}

/// Queues 2 000 batches of 1 000 records for the dashboard loop at once
/// and prints how long folding them took and how often it redrew meanwhile.
fn backlog() {
    let (tx, rx) = bounded(2000);
    for e in batches().into_iter().cycle().take(2000) {
        tx.send(e).unwrap();
    }
    let watcher = rx.clone();
    let (stop_tx, stop) = bounded(1);
    let frames = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let consumer = {
        let frames = frames.clone();
        std::thread::spawn(move || consume(rx, stop, true, frames))
    };
    while !watcher.is_empty() {
        // Watching a queue drain, not ordering threads.
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    consumer.join().unwrap();
    println!(
        "backlog: 2 M records folded by the dashboard loop in {elapsed:.2} s, {:.1} redraws/s meanwhile",
        frames.load(Ordering::Relaxed) as f64 / elapsed
    );
}

/// Flood parameters: clients posting for `SECONDS`, aiming at `RATE`
/// batches/s together.
const CLIENTS: usize = 64;
const RATE: u64 = 1000;
const SECONDS: u64 = 5;
const RECORDS: usize = 100;

/// Posts batches at `RATE`/s for `SECONDS` and prints ack latencies; with
/// `ui`, the dashboard loop consumes the events meanwhile.
fn flood(ui: bool) {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::open(&dir.path().join("flood.jsonl")).unwrap();
    let (tx, rx) = bounded(autopi_rx::run::EVENT_QUEUE);
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        ingest: Config {
            auth: Auth::tokens(&["t"]),
            max_body: 1 << 24,
        },
        // One worker per client: each waits for its batch's fsync, and a
        // group commit can only gather as many batches as there are workers.
        workers: CLIENTS,
        event_bodies: ui,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    let running = server::start(settings, capture, tx).unwrap();
    let addr = running.addr;
    let stats = running.stats.clone();
    let (stop_tx, stop) = bounded(1);
    let frames = Arc::new(AtomicU64::new(0));
    let consumer = {
        let frames = frames.clone();
        std::thread::spawn(move || consume(rx, stop, ui, frames))
    };
    // Connected and warmed up one at a time: tiny_http's connection pool
    // can leave a burst of new keep-alive connections unserved until
    // others close (reported separately), which is not what this measures.
    let streams: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut conn = Conn::open(addr);
            assert_eq!(post(&mut conn, batch(c, 1_000_000).as_bytes()), 200);
            conn
        })
        .collect();
    let started = Instant::now();
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, stream)| std::thread::spawn(move || client(stream, c)))
        .collect();
    let latencies: Latencies = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let drawn = frames.load(Ordering::Relaxed);
    let _ = stop_tx.send(());
    running.shutdown();
    consumer.join().unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = latencies.count();
    print!(
        "flood {}: {n} batches of {RECORDS} records in {elapsed:.1} s ({:.0}/s), ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if ui {
            "with dashboard   "
        } else {
            "without dashboard"
        },
        n as f64 / elapsed,
        ms(latencies.quantile(0.5)),
        ms(latencies.quantile(0.99)),
        ms(latencies.summary().map_or(Duration::ZERO, |l| l.max)),
    );
    if ui {
        print!(
            ", {:.1} redraws/s, {} events dropped",
            drawn as f64 / elapsed,
            autopi_rx::event::Stats::get(&stats.dropped_events)
        );
    }
    println!();
}

/// Drains events: plainly, or through the dashboard's loop.
fn consume(rx: Receiver<RequestEvent>, stop: Receiver<()>, ui: bool, frames: Arc<AtomicU64>) {
    if !ui {
        for _ in rx {}
        return;
    }
    let (_input_tx, input) = bounded(1);
    let outside = Outside {
        events: rx,
        input,
        stop,
        clock: Box::new(Timestamp::now),
        probe: Box::new(autopi_rx::dashboard::app::Probed::default),
    };
    let mut app = App::new(Setup::default(), Theme::color(), Timestamp::now());
    let mut terminal = Terminal::new(Counting(TestBackend::new(120, 40), frames)).unwrap();
    autopi_rx::dashboard::app::run(&mut terminal, &mut app, outside).unwrap();
}

/// One keep-alive connection posting its share of the flood for
/// `SECONDS`, paced to the target rate (at once when behind); returns each
/// acknowledgement's latency.
fn client(mut conn: Conn, c: usize) -> Vec<Duration> {
    let interval = Duration::from_secs_f64(CLIENTS as f64 / RATE as f64);
    let start = Instant::now();
    let mut latencies = Vec::new();
    for i in 0u64.. {
        if start.elapsed() >= Duration::from_secs(SECONDS) {
            break;
        }
        // Pacing a load generator, not ordering threads.
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body = batch(c, i);
        let sent = Instant::now();
        assert_eq!(post(&mut conn, body.as_bytes()), 200);
        latencies.push(sent.elapsed());
    }
    latencies
}

/// A distinct batch of `RECORDS` mixed records.
fn batch(c: usize, i: u64) -> String {
    let records: Vec<String> = (0..RECORDS)
        .map(|r| {
            let ts = format!("2026-11-27T08:{:02}:{:02}.{:03}", (i / 60) % 60, i % 60, r);
            match r % 5 {
                0 => format!(r#"{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":57.02{c}{r:02},"lon":9.89{i:03}}},"alt":30,"sog":12.5,"cog":140,"nsat":9}}"#),
                1 => format!(r#"{{"@t":"obd.bat","@ts":"{ts}","voltage":{}.{r},"level":100,"state":"charging"}}"#, 12 + r % 3),
                2 => format!(r#"{{"@t":"obd.rpm","@ts":"{ts}","value":{},"unit":"revolutions_per_minute"}}"#, 800 + r),
                3 => format!(r#"{{"@t":"ec2x.data_usage","@ts":"{ts}","sent":{},"recv":{}}}"#, i * 100 + r as u64, i * 300),
                _ => format!(r#"{{"@t":"event.vehicle.motion","@ts":"{ts}","@tag":"vehicle/motion/steady","client":{c},"n":{i}}}"#),
            }
        })
        .collect();
    format!("[{}]", records.join(","))
}

/// One POST on a keep-alive connection; returns the status.
fn post(conn: &mut Conn, body: &[u8]) -> u16 {
    let headers = [
        ("authorization", "token t"),
        ("unit-id", UNIT),
        ("content-type", "application/json"),
    ];
    conn.request(&request_bytes("POST", &headers, body)).status
}

//! Benchmarks of reading captures back, with printed figures (timings are
//! never pass/fail tests: these machines are noisy). Run with
//!
//! ```sh
//! cargo test --release --test capture_bench -- --run          # 1 M records
//! cargo test --release --test capture_bench -- --run 1gb      # and a 1 GB load
//! ```
//!
//! A capture of 1 M records (10 000 batches of 100, the simulator's
//! session, two devices) is written straight to a file, then read back:
//! by the live receiver's start (the fold into the dashboard's state), by
//! `view` (index and timeline), by `view --summary` and by each `export`
//! format, in-process and through the release binary.
//! `AUTOPI_RX_BENCH_DIR` chooses where the files go (default: a temporary
//! folder).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autopi_rx::capture::export::{self, CsvOut, Filter};
use autopi_rx::capture::{load, summary};
use autopi_rx::dashboard::app::{App, Setup};
use autopi_rx::dashboard::state::State;
use autopi_rx::dashboard::theme::Theme;
use autopi_rx::simulate::{Batches, Scheme, Settings, SimulateArgs, Stamps, unit_id_for};
use jiff::Timestamp;

const RECORDS_PER_BATCH: u64 = 100;

fn main() {
    if !std::env::args().any(|a| a == "--run") {
        println!(
            "capture_bench: skipped (run with: cargo test --release --test capture_bench -- --run [1gb])"
        );
        return;
    }
    let big = std::env::args().any(|a| a == "1gb");
    let base = std::env::var_os("AUTOPI_RX_BENCH_DIR").map(PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("1m.jsonl");
    let made = Instant::now();
    let (records, fixes) = write_capture(&path, 1_000_000, 1);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "capture: {} records ({fixes} track.pos) in {} batches, {:.0} MB, written in {:.1} s",
        records,
        records / RECORDS_PER_BATCH,
        size as f64 / 1e6,
        made.elapsed().as_secs_f64()
    );
    // Warm the page cache: the figures are for reading, not for the disk.
    let _ = std::fs::read(&path).unwrap();
    if std::env::args().any(|a| a == "parts") {
        parts(&path, size);
        return;
    }
    all_readers(&path, size);
    if big {
        let path = dir.path().join("1gb.jsonl");
        let made = Instant::now();
        let (records, _) = write_capture(&path, 9_500_000, 10);
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "\ncapture: {records} records, {:.2} GB, written in {:.1} s",
            size as f64 / 1e9,
            made.elapsed().as_secs_f64()
        );
        let _ = std::fs::read(&path).unwrap();
        let (took, folded) = live_load(&path);
        report("live start: load and fold", took, size, folded);
        let (took, folded) = view_load(&path);
        report("view: index, load and fold", took, size, folded);
        let took = timed(|| {
            binary(&["view", "--summary", path.to_str().unwrap()]);
        });
        report("view --summary (binary)", took, size, records);
    }
}

/// Every reader over the 1 M-record file.
fn all_readers(path: &Path, size: u64) {
    let p = path.to_str().unwrap();
    let (took, folded) = live_load(path);
    report("live start: load and fold", took, size, folded);
    let (took, folded) = view_load(path);
    report("view: index, load and fold", took, size, folded);
    let mut n = 0;
    let took = timed(|| {
        let s = summary::summarize(&[path.to_path_buf()]).unwrap();
        n = s.devices.iter().map(|d| d.records).sum();
    });
    report("view --summary (in-process)", took, size, n);
    let took = timed(|| binary(&["view", "--summary", p]));
    report("view --summary (binary)", took, size, n);
    let took = timed(|| binary(&["view", "--summary", "--json", p]));
    report("view --summary --json (binary)", took, size, n);
    let files = [path.to_path_buf()];
    let none = Filter::default();
    let sink = || Box::new(std::io::sink());
    let mut w = export::Written::default();
    let took = timed(|| w = export::gpx(&files, &none, sink()).unwrap());
    report("export gpx (in-process)", took, size, w.records);
    let fixes = w.records;
    let took = timed(|| w = export::geojson(&files, &none, sink()).unwrap());
    report("export geojson (in-process)", took, size, w.records);
    let pos = Filter {
        kind: Some("track.pos".into()),
        ..Filter::default()
    };
    let took =
        timed(|| w = export::csv(&files, &pos, CsvOut::One(sink()), Default::default()).unwrap());
    report("export csv --type track.pos", took, size, w.records);
    let out = tempfile::tempdir().unwrap();
    let took = timed(|| {
        w = export::csv(
            &files,
            &none,
            CsvOut::Folder(out.path()),
            Default::default(),
        )
        .unwrap()
    });
    report("export csv, every type", took, size, w.records);
    for format in ["gpx", "geojson"] {
        let took = timed(|| binary(&["export", p, "--format", format, "-o", "/dev/null"]));
        report(&format!("export {format} (binary)"), took, size, fixes);
    }
    let took = timed(|| {
        binary(&[
            "export",
            p,
            "--format",
            "csv",
            "-o",
            out.path().to_str().unwrap(),
        ])
    });
    report("export csv, every type (binary)", took, size, 1_000_000);
}

/// Where the time of a load goes: reading and parsing lines, counting
/// records, and the fold alone.
fn parts(path: &Path, size: u64) {
    let mut n = 0u64;
    let took = timed(|| {
        load::scan(
            path,
            None,
            load::Packed::Refused("not in this benchmark"),
            |_, l| Some(l.records.len()),
            |_, _| n += 1,
            |_, _| {},
        )
        .unwrap();
    });
    report("lines parsed", took, size, n * RECORDS_PER_BATCH);
    let took = timed(|| {
        load::scan(
            path,
            None,
            load::Packed::Refused("not in this benchmark"),
            |_, l| Some(load::count_records(&l.records_text().unwrap()).records),
            |_, r| n += r as u64,
            |_, _| {},
        )
        .unwrap();
    });
    report("lines parsed, records counted", took, size, n / 2);
    let mut events = Vec::new();
    load::scan_events(path, None, 0, |e| events.push(e), |_, _| {}, || false).unwrap();
    let mut state = State::default();
    let took = timed(|| events.iter().for_each(|e| state.apply(e)));
    report("fold alone", took, size, state.totals.records);
}

/// The receiver's start: the capture folded into the dashboard's state.
fn live_load(path: &Path) -> (Duration, u64) {
    let mut state = State::default();
    let took = timed(|| {
        load::scan_events(path, None, 0, |e| state.apply(&e), |_, _| {}, || false).unwrap();
    });
    (took, state.totals.records)
}

/// `view`: the capture indexed, then folded into a timeline; then the
/// time of a step back (←) from 50 places spread over the capture.
fn view_load(path: &Path) -> (Duration, u64) {
    let mut app = App::new(Setup::default(), Theme::mono(), Timestamp::now());
    let mut timeline = None;
    let took = timed(|| {
        timeline = Some(autopi_rx::dashboard::view::load(&[path.to_path_buf()], &mut app).unwrap());
    });
    let records = app.live().totals.records;
    let mut timeline = timeline.unwrap();
    let n = timeline.position();
    let mut steps: Vec<Duration> = (1..=50)
        .map(|k| {
            // Spread, and off any saved state's position.
            timeline.seek(&mut app, n * k / 51 + 7 * k % 97 + 2);
            let at = timeline.position();
            timed(|| timeline.seek(&mut app, at - 1))
        })
        .collect();
    steps.sort();
    println!(
        "{:<34} median {:.1} ms, max {:.1} ms (50 places)",
        "view: one step back (←)",
        steps[25].as_secs_f64() * 1e3,
        steps[49].as_secs_f64() * 1e3
    );
    (took, records)
}

fn binary(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_autopi-rx"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "autopi-rx {args:?}");
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn report(what: &str, took: Duration, bytes: u64, records: u64) {
    let s = took.as_secs_f64();
    println!(
        "{what:<34} {s:>7.2} s   {:>6.0} MB/s   {:>5.2} M records/s   ({records} records)",
        bytes as f64 / 1e6 / s,
        records as f64 / 1e6 / s
    );
}

/// Writes `records` of the simulator's session as capture lines, half from
/// each of two devices; the session's batches are made once and, for
/// bigger files, written `copies` times with distinct hashes. Returns the
/// records and track.pos records written.
fn write_capture(path: &Path, records: u64, copies: u64) -> (u64, u64) {
    let batches = records / RECORDS_PER_BATCH / copies;
    let per_device = batches.div_ceil(2);
    let mut made = Vec::new();
    for seed in [1, 2] {
        let args = SimulateArgs {
            url: "http://127.0.0.1:1/".into(),
            token: "t".into(),
            scheme: Scheme::Token,
            gzip: None,
            unit_id: None,
            batch: RECORDS_PER_BATCH,
            interval: 0.0,
            count: None,
            concurrency: 1,
            seed,
            timestamps: Stamps::Naive,
            start: None,
            timeout: 10.0,
            retry_wait: 0.0,
            ca: None,
        };
        let settings = Settings::from_args(&args).unwrap();
        for p in Batches::new(&settings).take(per_device as usize) {
            made.push((unit_id_for(seed), p.body));
        }
    }
    let fixes_per_copy: u64 = made
        .iter()
        .map(|(_, b)| memchr_count(b, br#""@t":"track.pos""#))
        .sum();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let start: Timestamp = "2026-11-27T08:00:00Z".parse().unwrap();
    let mut n = 0u64;
    for copy in 0..copies {
        for (i, (unit, body)) in made.iter().enumerate() {
            let received = start + Duration::from_millis(n * 1000);
            let hash = blake3::hash(format!("{copy} {i}").as_bytes()).to_hex();
            writeln!(
                out,
                r#"{{"received":"{}","peer":"192.168.1.57:40522","unit_id":"{unit}","encoding":"identity","wire_bytes":{},"batch_hash":"{hash}","duplicate_of":null,"records":{}}}"#,
                autopi_rx::time::format_received(received),
                body.len(),
                std::str::from_utf8(body).unwrap()
            )
            .unwrap();
            n += 1;
        }
    }
    out.flush().unwrap();
    (n * RECORDS_PER_BATCH, fixes_per_copy * copies)
}

fn memchr_count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

//! `autopi-rx view`: captures looked back at. On a terminal the dashboard
//! with a timeline (no listener); otherwise, or with `--summary`/`--json`,
//! the per-device summary. The capture's lines become request events
//! (`capture::load`) and go through the live dashboard's own fold.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;

use crate::capture::load::{self, CaptureLine, LOADED_ID_BASE, Located, Progress};
use crate::capture::summary;
use crate::cli::ViewArgs;
use crate::dashboard::app::{App, Setup};
use crate::dashboard::theme::Theme;
use crate::dashboard::timeline::{self, Batches, Timeline};
use crate::dashboard::tui;
use crate::event::RequestEvent;

/// Why the dashboard cannot show a capture gzipped to keep.
const VIEW_PACKED: &str = "the dashboard reads batches again by their place in the file, \
     which a gzip stream does not allow; unpack it (gunzip -k), or give it as it is to \
     view --summary, export or replay";

/// `autopi-rx view FILE...`.
pub fn main(args: ViewArgs) -> ExitCode {
    if args.wants_summary() {
        return print_summary(&args);
    }
    match show(&args.files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::say!("autopi-rx view: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_summary(args: &ViewArgs) -> ExitCode {
    match summary::summarize(&args.files) {
        // A device's `unit-id` and `@t`s are in it: their bidi controls,
        // C1 controls and DEL were written raw (a probe found it).
        Ok(s) if args.json => match serde_json::to_string_pretty(&s) {
            Ok(text) => crate::cli::written(
                &(crate::text::escape_invisible(text) + "\n"),
                "autopi-rx view: cannot write the summary",
            ),
            Err(e) => {
                crate::say!("autopi-rx view: {e}");
                ExitCode::from(1)
            }
        },
        Ok(s) => crate::cli::written(&s.to_string(), "autopi-rx view: cannot write the summary"),
        Err(e) => {
            crate::say!("autopi-rx view: {e}");
            ExitCode::from(1)
        }
    }
}

/// One batch of the merged captures.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    pub received: Timestamp,
    pub file: usize,
    pub at: Located,
    /// Whether it has a batch hash, so that the merge below decides what
    /// copy of its batch it is (`repeated`, `retried`) in place of its
    /// line's own marks; a line without one keeps its own.
    pub keyed: bool,
    /// A copy after a delivered one (in any file): the first delivered.
    pub repeated: Option<Timestamp>,
    /// A copy after copies none of which was acknowledged (in this file
    /// or another): the first copy.
    pub retried: Option<Timestamp>,
}

/// A batch's identity for duplicates: (unit-id, batch hash).
type BatchKey = (Option<String>, String);

/// Captures indexed by arrival time, read again line by line on demand.
pub struct Captures {
    pub files: Vec<File>,
    pub marks: Vec<Mark>,
}

impl Captures {
    /// Indexes every file: where each batch is and when it arrived, merged
    /// in arrival order (a file's own order where times tie). Warnings go
    /// to stderr.
    pub fn index(paths: &[PathBuf]) -> io::Result<Captures> {
        let mut files = Vec::new();
        let mut found: Vec<(Mark, Option<BatchKey>, bool)> = Vec::new();
        for (n, path) in paths.iter().enumerate() {
            let file = crate::input::open_file(path).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", crate::text::path(&path)))
            })?;
            let total = file.metadata()?.len();
            let mut progress =
                Progress::new(format!("indexing {}", crate::text::path(&path)), total);
            let report = load::scan(
                path,
                None,
                load::Packed::Refused(VIEW_PACKED),
                |at, line: CaptureLine| {
                    let key = line.batch_hash.clone().map(|h| (line.unit_id.clone(), h));
                    let mark = Mark {
                        received: line.received,
                        file: n,
                        at,
                        keyed: key.is_some(),
                        repeated: None,
                        retried: None,
                    };
                    Some((mark, key, line.acked))
                },
                |_, item| found.push(item),
                |done, total| progress.update(done, total),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", crate::text::path(&path))))?;
            progress.finish();
            report.warn();
            files.push(file);
        }
        found.sort_by_key(|(m, _, _)| m.received);
        // The copies of each batch marked as one receiver would have
        // marked them, in arrival order over every file, in place of each
        // line's own marks: a copy after an acknowledged one is a
        // duplicate of the first acknowledged; a copy after copies never
        // acknowledged is a retry of the first; copies never acknowledged
        // make no duplicate (a retry acknowledged after a refusal was shown
        // as a duplicate of the refused copy). So each batch has exactly
        // one first copy, whose records count: a refused copy in a second
        // file of a batch delivered in the first was counted again (a
        // cross-tool probe: 16 250 records where the summary and export
        // had 15 350), and keeping a line's own marks beside the merge's
        // could count a batch whose copies came out of order in a file
        // never (a review).
        let mut copies: std::collections::HashMap<BatchKey, (Timestamp, Option<Timestamp>)> =
            std::collections::HashMap::new();
        let marks = found
            .into_iter()
            .map(|(mut mark, key, delivered)| {
                let Some(key) = key else {
                    return mark;
                };
                match copies.get_mut(&key) {
                    Some((_, Some(first_delivered))) => mark.repeated = Some(*first_delivered),
                    Some((first, was_delivered)) => {
                        mark.retried = Some(*first);
                        if delivered {
                            *was_delivered = Some(mark.received);
                        }
                    }
                    None => {
                        let delivered_at = delivered.then_some(mark.received);
                        copies.insert(key, (mark.received, delivered_at));
                    }
                }
                mark
            })
            .collect();
        Ok(Captures { files, marks })
    }

    /// Batch `i` as a request event.
    fn read(&self, i: usize) -> Option<RequestEvent> {
        let mark = self.marks.get(i)?;
        let line = load::read_at(&self.files[mark.file], mark.at).ok()?;
        Some(event_of(i, mark, &line))
    }
}

/// The event for mark `i`; ids are stable however often it is read.
fn event_of(i: usize, mark: &Mark, line: &CaptureLine) -> RequestEvent {
    let mut e = line.to_event(LOADED_ID_BASE + i as u64);
    if mark.keyed {
        e.duplicate_of = mark.repeated.map(crate::time::format_received);
        e.retry_of = mark.retried.map(crate::time::format_received);
    }
    e
}

impl Batches for Captures {
    fn len(&self) -> usize {
        self.marks.len()
    }
    fn received(&self, i: usize) -> Timestamp {
        self.marks[i].received
    }
    fn event(&mut self, i: usize) -> Option<RequestEvent> {
        self.read(i)
    }
    /// A batch's line length: what its fold costs, near enough.
    fn weight(&self, i: usize) -> u64 {
        self.marks[i].at.len as u64
    }
    /// 4 MB of lines (some 40 000 records, a few tens of ms to fold).
    fn min_spacing(&self) -> u64 {
        4_000_000
    }
}

/// Every batch in order as a request event (None if it cannot be read
/// again), read on a second thread.
pub fn all_events(captures: &Captures) -> impl Iterator<Item = Option<RequestEvent>> + use<> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Option<RequestEvent>>>(8);
    let files: Vec<File> = captures
        .files
        .iter()
        .filter_map(|f| f.try_clone().ok())
        .collect();
    let marks: Arc<[Mark]> = captures.marks.clone().into();
    let complete = files.len() == captures.files.len();
    std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(256);
        for (i, mark) in marks.iter().enumerate() {
            if !complete {
                break;
            }
            let line = load::read_at(&files[mark.file], mark.at).ok();
            chunk.push(line.map(|line| event_of(i, mark, &line)));
            if chunk.len() == 256 && tx.send(std::mem::take(&mut chunk)).is_err() {
                return;
            }
        }
        let _ = tx.send(chunk);
    });
    rx.into_iter().flatten()
}

/// Loads the captures into a timeline positioned at their end.
pub fn load(paths: &[PathBuf], app: &mut App) -> io::Result<Timeline<Captures>> {
    let captures = Captures::index(paths)?;
    let n = captures.marks.len().max(1) as u64;
    let bytes: u64 = captures.marks.iter().map(|m| m.at.len as u64).sum();
    let mut progress = Progress::new("loading", bytes);
    let events = all_events(&captures);
    let mut timeline = Timeline::new(captures);
    timeline.load(app, events, |done| {
        progress.update(done as u64 * bytes / n, bytes)
    });
    progress.finish();
    Ok(timeline)
}

/// Shows the dashboard over the captures until q.
fn show(paths: &[PathBuf]) -> io::Result<()> {
    let total: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let names: Vec<String> = paths
        .iter()
        .map(|p| crate::text::path(p).to_string())
        .collect();
    let setup = Setup {
        capture_path: names.join(", "),
        save_beside: paths.first().cloned().unwrap_or_default(),
        capture_bytes: Some(total),
        viewing: true,
        ..Setup::default()
    };
    let mut app = App::new(setup, Theme::from_env(), Timestamp::now());
    let mut timeline = load(paths, &mut app)?;
    let (input_tx, input_rx) = crossbeam_channel::bounded(256);
    let quit = Arc::new(AtomicBool::new(false));
    let reader = tui::spawn_input(input_tx, quit.clone())?;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    // As for the receiver: a signal while the one before has waited
    // untaken for 2 s exits at once (a hung screen ignored every one).
    let mut untaken = crate::panic::Untaken::default();
    let _ = ctrlc::set_handler(move || {
        let delivered = !matches!(
            stop_tx.try_send(()),
            Err(crossbeam_channel::TrySendError::Full(()))
        );
        untaken.exit_if_stuck(delivered, |waited| {
            format!(
                "autopi-rx view: a signal while the one before has waited {waited:.1} s untaken (the screen is stuck): exiting now"
            )
        });
    });
    let screen = crate::panic::screen_up(tui::restore);
    let mut terminal = tui::init_terminal()?;
    let result = timeline::run(&mut terminal, &mut app, &mut timeline, input_rx, stop_rx);
    tui::restore();
    for message in screen.finish() {
        crate::say!("autopi-rx: a thread panicked while the view was up: {message}");
    }
    quit.store(true, Ordering::Relaxed);
    drop(reader);
    if timeline.unreadable() > 0 {
        crate::say!(
            "warning: {} batches could not be read again (did a capture change meanwhile?)",
            timeline.unreadable()
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The dashboard goes back to a batch by its offset in the file, which
    /// a gzip stream has not: it says so and names the readers that take
    /// the file as it is.
    #[test]
    fn the_dashboard_refuses_a_gzipped_capture_saying_who_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl.gz");
        let line = br#"{"received":"2026-12-05T08:00:00.000Z","unit_id":"u","batch_hash":"aa","records":[{"@t":"x"}]}
"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(line).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let Err(e) = Captures::index(std::slice::from_ref(&path)) else {
            panic!("indexed a gzip stream");
        };
        let said = e.to_string();
        let named = format!("{}: it is gzip-compressed: ", path.display());
        assert!(said.starts_with(&named), "{said}");
        assert!(said.contains("view --summary, export or replay"), "{said}");
        std::fs::write(&path, line).unwrap();
        assert!(Captures::index(&[path]).is_ok());
    }
}

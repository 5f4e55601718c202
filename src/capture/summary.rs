//! `autopi-rx view --summary`: per device, what a set of captures holds:
//! time span, batches, records per `@t`, duplicates, retries, gaps in the
//! records' time longer than five minutes, first and last position.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use super::load::{self, CaptureLine, Progress, Report};
use crate::record::{View, for_each_record};
// Names are cut in the text form as on the dashboard (the JSON has them
// whole): a 1 MB `@t` made a 1 MB line.
use crate::text::NAME_CHARS;

/// A silence in a device's records longer than this is listed as a gap.
pub const GAP: i64 = 5 * 60 * 1000;
/// Gaps listed one by one in the text form (the JSON has all).
const GAPS_SHOWN: usize = 10;

/// Everything the summary says.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: Vec<FileFacts>,
    pub devices: Vec<DeviceSummary>,
}

/// How a file read.
#[derive(Debug, Default, Serialize)]
pub struct FileFacts {
    /// In `--json`, a name that is not UTF-8 has U+FFFD for what is not
    /// (serde refused it: "path contains invalid UTF-8 characters", naming
    /// no file, exit 1, where the text summary showed it; a probe).
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    pub lines: u64,
    pub corrupt_lines: u64,
    pub torn_bytes: u64,
}

fn lossy<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// One device's part of the captures.
#[derive(Debug, Default, Serialize)]
pub struct DeviceSummary {
    pub unit_id: String,
    pub first_received: Option<Timestamp>,
    pub last_received: Option<Timestamp>,
    pub first_record: Option<Timestamp>,
    pub last_record: Option<Timestamp>,
    /// New batches, delivered once.
    pub batches: u64,
    /// The same batch received again (the device's re-send after a late answer).
    pub duplicates: u64,
    /// Of the new batches, those acknowledged only on a retry (`retry_of`:
    /// earlier copies were refused or went unanswered).
    pub retries: u64,
    /// Lines saying the batch was never acknowledged (`"acked":false`).
    pub unacknowledged: u64,
    /// Records of the new batches.
    pub records: u64,
    /// Records lacking `@t` or a readable `@ts`.
    pub malformed: u64,
    pub types: BTreeMap<String, u64>,
    pub gaps: Vec<Gap>,
    pub first_position: Option<Fix>,
    pub last_position: Option<Fix>,
}

/// A silence in the records' time.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Gap {
    pub from: Timestamp,
    pub to: Timestamp,
    pub seconds: i64,
}

/// A position at a time.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Fix {
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    /// Where it sorts among the device's fixes (`time::rank`): a batch
    /// stamped far past its arrival (one stamped 2038) is no later than
    /// its arrival, as on the dashboard; its fix stayed the last for good.
    #[serde(skip)]
    rank: Timestamp,
}

/// What one line contributes, worked out on the reading thread.
struct Digest {
    unit_id: Option<String>,
    received: Timestamp,
    /// The batch's key (`seen_batch`), made here on the
    /// reading thread.
    key: Option<crate::capture::SeenBatch>,
    kind: LineKind,
    /// A new batch acknowledged only on a retry (`retry_of`).
    retried: bool,
    records: u64,
    malformed: u64,
    /// Records per `@t`. Keyed: a list searched for each record took
    /// 5 s for a batch of 50 000 distinct `@t`s, and grew with the square
    /// (a 20 MB batch of them held `view --summary` for minutes).
    types: foldhash::HashMap<String, u64>,
    stamps: Vec<i64>,
    first_fix: Option<Fix>,
    last_fix: Option<Fix>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LineKind {
    New,
    Duplicate,
    Unacknowledged,
}

/// Reads every file and sums them up; warnings go to stderr.
pub fn summarize(paths: &[PathBuf]) -> std::io::Result<Summary> {
    let mut acc = Accumulator::default();
    let mut summary = Summary::default();
    for path in paths {
        let named = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{}: {e}", crate::text::path(&path)))
        };
        let total = crate::input::capture_metadata(path).map_err(named)?.len();
        let mut progress = Progress::new(format!("reading {}", crate::text::path(&path)), total);
        let report = load::scan(
            path,
            None,
            load::Packed::Inflated,
            |_, line| Some(digest(&line)),
            |_, d| acc.add(d),
            |done, total| progress.update(done, total),
        )
        .map_err(named)?;
        progress.finish();
        report.warn();
        summary.files.push(facts(&report));
    }
    summary.devices = acc.finish();
    Ok(summary)
}

fn facts(r: &Report) -> FileFacts {
    FileFacts {
        path: r.path.clone(),
        lines: r.lines,
        corrupt_lines: r.corrupt,
        torn_bytes: r.torn_bytes,
    }
}

/// Reads one line's records once.
fn digest(line: &CaptureLine) -> Digest {
    let kind = if !line.acked {
        LineKind::Unacknowledged
    } else if line.retry {
        LineKind::New
    } else if line.duplicate_of.is_some() {
        LineKind::Duplicate
    } else {
        LineKind::New
    };
    let received = line.received;
    let mut d = Digest {
        unit_id: line.unit_id.clone(),
        received: line.received,
        key: line
            .batch_hash
            .as_deref()
            .map(|h| crate::capture::seen_batch(line.unit_id.as_deref(), h)),
        kind,
        retried: kind == LineKind::New && line.retry,
        records: 0,
        malformed: 0,
        types: Default::default(),
        stamps: Vec::new(),
        first_fix: None,
        last_fix: None,
    };
    if kind != LineKind::New {
        return d;
    }
    let Some(text) = line.records_text() else {
        return d;
    };
    let mut newest: Option<Timestamp> = None;
    let mut fixes: Vec<Fix> = Vec::new();
    let passed_over = for_each_record(&text, |r| {
        d.records += 1;
        if r.kind_name.is_empty() || r.ts.is_none() {
            d.malformed += 1;
        }
        match d.types.get_mut(r.kind_name.as_ref()) {
            Some(n) => *n += 1,
            None => {
                d.types.insert(r.kind_name.to_string(), 1);
            }
        }
        let Some(ts) = r.ts else {
            return;
        };
        d.stamps.push(ts.as_millisecond());
        newest = newest.max(Some(ts));
        if r.kind_name == "track.pos"
            && let View::Position(p) = r.make_view()
            && let Some((lat, lon)) = p.on_earth()
        {
            let fix = Fix {
                ts,
                lat,
                lon,
                rank: ts,
            };
            if d.first_fix.as_ref().is_none_or(|f| ts < f.ts) {
                d.first_fix = Some(fix.clone());
            }
            fixes.push(fix);
        }
    })
    .unwrap_or(0);
    // The last fix where it sorts: the batch's rule, as the fold's.
    let far_ahead = newest.is_some_and(|n| crate::time::past_ahead(n, received));
    for mut fix in fixes {
        fix.rank = crate::time::rank(fix.ts, received, far_ahead);
        if d.last_fix.as_ref().is_none_or(|f| fix.rank >= f.rank) {
            d.last_fix = Some(fix);
        }
    }
    // Counted as loading a capture counts them (`count_records`):
    // records, and malformed.
    d.records += passed_over;
    d.malformed += passed_over;
    d
}

/// Per-device sums over every file, in reading order.
#[derive(Default)]
struct Accumulator {
    devices: Vec<(DeviceSummary, Vec<i64>)>,
    index: HashMap<Option<String>, usize>,
    /// Batches already seen per device, so a batch found again in another
    /// file is a duplicate too.
    seen: crate::capture::SeenBatches,
}

impl Accumulator {
    fn add(&mut self, mut d: Digest) {
        if d.kind == LineKind::New
            && let Some(key) = d.key
            && !self.seen.insert(key)
        {
            d.kind = LineKind::Duplicate;
        }
        let i = *self.index.entry(d.unit_id.clone()).or_insert_with(|| {
            let summary = DeviceSummary {
                unit_id: crate::event::device_name(d.unit_id.as_deref()).into(),
                ..DeviceSummary::default()
            };
            self.devices.push((summary, Vec::new()));
            self.devices.len() - 1
        });
        let (s, stamps) = &mut self.devices[i];
        s.first_received = Some(s.first_received.map_or(d.received, |t| t.min(d.received)));
        s.last_received = Some(s.last_received.map_or(d.received, |t| t.max(d.received)));
        match d.kind {
            LineKind::Duplicate => s.duplicates += 1,
            LineKind::Unacknowledged => s.unacknowledged += 1,
            LineKind::New => {
                s.batches += 1;
                s.retries += u64::from(d.retried);
                s.records += d.records;
                s.malformed += d.malformed;
                for (t, n) in d.types {
                    *s.types.entry(t).or_default() += n;
                }
                stamps.extend(d.stamps);
                if let Some(f) = d.first_fix
                    && s.first_position.as_ref().is_none_or(|p| f.ts < p.ts)
                {
                    s.first_position = Some(f);
                }
                if let Some(f) = d.last_fix
                    && s.last_position.as_ref().is_none_or(|p| f.rank >= p.rank)
                {
                    s.last_position = Some(f);
                }
            }
        }
    }

    fn finish(self) -> Vec<DeviceSummary> {
        self.devices
            .into_iter()
            .map(|(mut s, mut stamps)| {
                stamps.sort_unstable();
                let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or_default();
                s.first_record = stamps.first().map(|&t| at(t));
                s.last_record = stamps.last().map(|&t| at(t));
                s.gaps = stamps
                    .windows(2)
                    .filter(|w| w[1] - w[0] > GAP)
                    .map(|w| Gap {
                        from: at(w[0]),
                        to: at(w[1]),
                        seconds: (w[1] - w[0]) / 1000,
                    })
                    .collect();
                s
            })
            .collect()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            write!(f, "{}: {} lines", crate::text::path(&file.path), file.lines)?;
            if file.corrupt_lines > 0 {
                write!(f, ", {} not capture lines (skipped)", file.corrupt_lines)?;
            }
            if file.torn_bytes > 0 {
                write!(f, ", an unfinished last line of {} bytes", file.torn_bytes)?;
            }
            writeln!(f)?;
        }
        if self.devices.is_empty() {
            writeln!(f, "no batches")?;
        }
        for d in &self.devices {
            // What a device sent is shown, never obeyed by the terminal.
            writeln!(
                f,
                "\ndevice {}",
                crate::text::shown_cut(&d.unit_id, NAME_CHARS)
            )?;
            writeln!(
                f,
                "  received   {}",
                span(d.first_received, d.last_received)
            )?;
            writeln!(f, "  records    {}", span(d.first_record, d.last_record))?;
            writeln!(
                f,
                "  batches    {} new ({} acknowledged on a retry), {} duplicates, {} not acknowledged",
                d.batches, d.retries, d.duplicates, d.unacknowledged
            )?;
            let mut types = String::new();
            for (t, n) in &d.types {
                let name = crate::text::shown_cut(crate::event::type_label(t), NAME_CHARS);
                let _ = write!(types, "\n    {n:>9}  {name}");
            }
            writeln!(
                f,
                "  records    {} ({} malformed){types}",
                d.records, d.malformed
            )?;
            write!(f, "  gaps over 5 min: {}", d.gaps.len())?;
            for g in d.gaps.iter().take(GAPS_SHOWN) {
                write!(f, "\n    {} to {} ({})", g.from, g.to, duration(g.seconds))?;
            }
            if d.gaps.len() > GAPS_SHOWN {
                write!(
                    f,
                    "\n    … {} more (--json lists all)",
                    d.gaps.len() - GAPS_SHOWN
                )?;
            }
            writeln!(f)?;
            writeln!(f, "  first fix  {}", fix(&d.first_position))?;
            writeln!(f, "  last fix   {}", fix(&d.last_position))?;
        }
        Ok(())
    }
}

fn span(a: Option<Timestamp>, b: Option<Timestamp>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!(
            "{a} to {b} ({})",
            duration((b.as_millisecond() - a.as_millisecond()) / 1000)
        ),
        _ => "none".into(),
    }
}

fn fix(p: &Option<Fix>) -> String {
    match p {
        Some(p) => format!("{:.5}, {:.5} at {}", p.lat, p.lon, p.ts),
        None => "none".into(),
    }
}

/// `2 h 05 min`, `4 min 10 s`, `12 s`.
fn duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(received: &str, unit: &str, hash: &str, dup: bool, records: &str) -> String {
        format!(
            r#"{{"received":"{received}","unit_id":"{unit}","batch_hash":"{hash}","duplicate_of":{},"records":{records}}}"#,
            if dup { "\"x\"" } else { "null" }
        )
    }

    #[test]
    fn counts_gaps_duplicates_and_positions_per_device() {
        let p = |ts: &str, lat: f64| {
            format!(r#"{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":{lat},"lon":9.9}}}}"#)
        };
        let b1 = format!(
            "[{},{}]",
            p("2026-11-27T08:00:00", 57.1),
            p("2026-11-27T08:01:00", 57.2)
        );
        let b2 = format!(
            r#"[{},{{"@t":"obd.rpm","@ts":"2026-11-27T08:20:00","value":900}}]"#,
            p("2026-11-27T08:10:00", 57.3)
        );
        let text = [
            line("2026-11-27T08:01:05Z", "a", "h1", false, &b1),
            line("2026-11-27T08:01:06Z", "a", "h1", true, &b1),
            line("2026-11-27T08:20:05Z", "a", "h2", false, &b2),
            line("2026-11-27T08:20:06Z", "b", "h1", false, &b1),
        ]
        .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, text + "\n").unwrap();
        let s = summarize(&[path.clone(), path]).unwrap();
        assert_eq!(s.devices.len(), 2);
        let a = &s.devices[0];
        // The second file is the same batches again: all duplicates.
        assert_eq!((a.batches, a.duplicates, a.records), (2, 4, 4));
        assert_eq!(a.types.get("track.pos"), Some(&3));
        assert_eq!(a.gaps.len(), 2);
        assert_eq!(a.gaps[0].seconds, 540);
        assert_eq!(a.first_position.as_ref().unwrap().lat, 57.1);
        assert_eq!(a.last_position.as_ref().unwrap().lat, 57.3);
        // The same batch from another device is a batch of its own.
        let b = &s.devices[1];
        assert_eq!((b.batches, b.duplicates), (1, 1));
        let text = s.to_string();
        assert!(
            text.contains("device b") && text.contains("gaps over 5 min: 2"),
            "{text}"
        );
    }

    /// A batch stamped far past its arrival (2038) does not stay the last
    /// fix: the next batch's is, as on the dashboard.
    #[test]
    fn a_fix_stamped_far_ahead_is_not_the_last_for_good() {
        let p = |ts: &str, lat: f64| {
            format!(r#"[{{"@t":"track.pos","@ts":"{ts}","loc":{{"lat":{lat},"lon":9.9}}}}]"#)
        };
        let text = [
            line(
                "2026-11-27T08:00:05Z",
                "a",
                "h1",
                false,
                &p("2026-11-27T08:00:00", 57.1),
            ),
            line(
                "2026-11-27T08:01:05Z",
                "a",
                "h2",
                false,
                &p("2038-01-19T03:14:07", 57.2),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        let s = summarize(std::slice::from_ref(&path)).unwrap();
        assert_eq!(s.devices[0].last_position.as_ref().unwrap().lat, 57.2);
        let third = line(
            "2026-11-27T08:02:05Z",
            "a",
            "h3",
            false,
            &p("2026-11-27T08:02:00", 57.3),
        );
        std::fs::write(&path, text.join("\n") + "\n" + &third + "\n").unwrap();
        let s = summarize(&[path]).unwrap();
        let last = s.devices[0].last_position.clone().unwrap();
        assert_eq!(
            (last.lat, last.ts.to_string().as_str()),
            (57.3, "2026-11-27T08:02:00Z")
        );
        assert_eq!(
            s.devices[0].last_record.unwrap().to_string(),
            "2038-01-19T03:14:07Z",
            "the records' span is still as stamped"
        );
    }

    /// Names are cut in the text form as on the dashboard (a 1 MB `@t`
    /// made a 1 MB line); the JSON form has them whole.
    #[test]
    fn a_file_name_that_is_not_utf8_is_in_the_json_all_the_same() {
        use std::os::unix::ffi::OsStrExt as _;
        let facts = FileFacts {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(b"cap\xff.jsonl")),
            ..FileFacts::default()
        };
        let json = serde_json::to_value(&facts).unwrap();
        assert_eq!(json["path"], "cap\u{fffd}.jsonl");
    }

    #[test]
    fn long_names_are_cut_in_the_text_and_whole_in_the_json() {
        let (unit, kind) = ("u".repeat(5000), "t".repeat(100_000));
        let records = format!(r#"[{{"@t":"{kind}","@ts":"2026-11-27T08:00:00"}}]"#);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let text = line("2026-11-27T08:01:05Z", &unit, "h1", false, &records);
        std::fs::write(&path, text + "\n").unwrap();
        let s = summarize(&[path]).unwrap();
        let text = s.to_string();
        let longest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(longest < NAME_CHARS + 20, "{longest}");
        assert!(text.contains(&format!("{}…", "t".repeat(NAME_CHARS - 1))));
        assert!(text.contains(&format!("device {}…", "u".repeat(NAME_CHARS - 1))));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(&kind) && json.contains(&unit));
    }
}

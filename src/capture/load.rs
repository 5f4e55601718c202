//! Reading captures back for everything that looks at them later (view,
//! the live receiver's start, replay, export, the summary). Every reader
//! goes through `scan`: a torn last line is left out and said, a corrupt
//! line is skipped, counted and said; nothing panics and nothing is
//! dropped silently. Lines are read tolerantly: unknown fields are
//! ignored, and fields added later (`acked`, `retry_of`) default.
//!
//! Parsing runs on its own thread, one chunk of lines ahead of whoever
//! consumes them, so a big capture loads on two cores.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::RequestEvent;
use crate::time::TimestampKind;

/// Bytes read from the file at a time.
const CHUNK: usize = 8 * 1024 * 1024;
/// Parsed lines handed over at a time.
const HANDOVER: usize = 512;
/// Corrupt lines described one by one before only the count is kept.
const EXAMPLES: usize = 5;
/// Files smaller than this load without a progress line.
const PROGRESS_FROM: u64 = 32 * 1024 * 1024;
/// Ids of loaded request events start here, far from the listener's own
/// (which count up from 1), so both can share the Requests tab.
pub const LOADED_ID_BASE: u64 = 1 << 63;

/// How a request is named on screen and in a saved body's file name: the
/// listener's own by its number (`#12`, `request-12`), a loaded one by its
/// place among the loaded, from 1 (`#12 from the capture`, `captured-12`).
/// The loaded ones' ids were shown raw: `Request #9223372036854775923`.
pub fn request_names(id: u64) -> (String, String) {
    match id.checked_sub(LOADED_ID_BASE) {
        Some(n) => (
            format!("#{} from the capture", n + 1),
            format!("captured-{}", n + 1),
        ),
        None => (format!("#{id}"), format!("request-{id}")),
    }
}

/// One capture line, as every reader sees it.
#[derive(Clone, Debug)]
pub struct CaptureLine {
    pub received: Timestamp,
    pub peer: String,
    pub unit_id: Option<String>,
    /// `gzip` or `identity` as it arrived (None if the line lacks it).
    pub encoding: Option<String>,
    pub wire_bytes: u64,
    pub batch_hash: Option<String>,
    pub duplicate_of: Option<String>,
    /// `retry_of` was set: the batch was sent again by us, not delivered anew.
    pub retry: bool,
    /// `received` of the unacknowledged copy this one repeats.
    pub retry_of: Option<String>,
    /// False when the line says it was never acknowledged (`"acked":false`).
    pub acked: bool,
    /// The answer mode in force when it was captured (`ok`, `500`, …).
    pub mode: Option<String>,
    /// The records array, byte for byte as captured.
    pub records: Arc<[u8]>,
}

/// The line as written, borrowed; optional fields default.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    received: Cow<'a, str>,
    #[serde(default, borrow)]
    peer: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    unit_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    encoding: Option<Cow<'a, str>>,
    #[serde(default)]
    wire_bytes: Option<u64>,
    #[serde(default, borrow)]
    batch_hash: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    duplicate_of: Option<Cow<'a, str>>,
    #[serde(default)]
    acked: Option<bool>,
    #[serde(default, borrow)]
    retry_of: Option<&'a RawValue>,
    #[serde(default, borrow)]
    mode: Option<Cow<'a, str>>,
    #[serde(borrow)]
    records: &'a RawValue,
}

impl CaptureLine {
    /// Parses one line (without its newline), or says what is wrong. A
    /// byte-order mark before it is passed over: an editor that saves
    /// UTF-8 with one puts it before the first line, which was then
    /// skipped as not a capture line (a probe of the offline tools).
    pub fn parse(line: &[u8]) -> Result<CaptureLine, String> {
        let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        let f: Fields<'_> = serde_json::from_slice(line).map_err(|e| within_the_line(&e))?;
        let received = f
            .received
            .parse::<Timestamp>()
            .map_err(|_| format!("\"received\" is not a time: {:?}", clip(&f.received)))?;
        let records = f.records.get();
        if !records.starts_with('[') {
            return Err("\"records\" is not an array".into());
        }
        Ok(CaptureLine {
            received,
            peer: f.peer.map(Cow::into_owned).unwrap_or_default(),
            unit_id: f.unit_id.map(Cow::into_owned),
            encoding: f.encoding.map(Cow::into_owned),
            wire_bytes: f.wire_bytes.unwrap_or(records.len() as u64),
            batch_hash: f.batch_hash.map(Cow::into_owned),
            duplicate_of: f.duplicate_of.map(Cow::into_owned),
            retry: f.retry_of.is_some_and(|r| r.get() != "null"),
            retry_of: f
                .retry_of
                .and_then(|r| serde_json::from_str::<Option<String>>(r.get()).ok())
                .flatten(),
            acked: f.acked.unwrap_or(true),
            mode: f.mode.map(Cow::into_owned),
            records: records.as_bytes().into(),
        })
    }

    /// A new batch the device delivered: the first acknowledged copy of a
    /// batch, a retry of refused or unanswered copies included (the
    /// receiver marks a copy after an acknowledged one `duplicate_of`).
    /// Export and replay take only these.
    pub fn delivered(&self) -> bool {
        self.acked && self.duplicate_of.is_none()
    }

    /// The records as text to read (captures hold JSON, which is UTF-8),
    /// lone surrogate escapes as the replacement character
    /// (`batch::readable`), as the receiver read them when it took them.
    pub fn records_text(&self) -> Option<Cow<'_, str>> {
        std::str::from_utf8(&self.records)
            .ok()
            .map(crate::batch::readable)
    }

    /// The request event the listener would have reported for this line,
    /// so the dashboard's fold is fed exactly what it was fed live.
    pub fn to_event(&self, id: u64) -> RequestEvent {
        let counts = self
            .records_text()
            .as_deref()
            .map(count_records)
            .unwrap_or_default();
        let mut headers = Vec::new();
        if let Some(u) = &self.unit_id {
            headers.push(("unit-id".to_string(), u.clone()));
        }
        let encoding = match self.encoding.as_deref() {
            Some("gzip") => Some("gzip"),
            _ => Some("identity"),
        };
        let duplicate_of = self.duplicate_of.clone();
        // What the device was told: the capture keeps whether it was
        // acknowledged and the mode that decided it.
        let status = match (self.acked, self.mode.as_deref()) {
            (true, _) => 200,
            (false, Some("hangup")) => crate::event::NO_ANSWER,
            (false, Some(m)) => m.parse().unwrap_or(500),
            (false, None) => 500,
        };
        RequestEvent {
            id,
            received: self.received,
            peer: self.peer.clone(),
            method: "POST".into(),
            path: "(from the capture)".into(),
            unit_id: self.unit_id.clone(),
            status,
            headers,
            token_matched: None,
            wire_bytes: self.wire_bytes,
            body_bytes: self.records.len() as u64,
            encoding,
            records: counts.records,
            malformed: counts.malformed,
            naive_timestamps: counts.naive,
            duplicate_of,
            retry_of: self.retry_of.clone().or_else(|| {
                self.retry
                    .then(|| crate::time::format_received(self.received))
            }),
            captured: true,
            mode: self.mode.clone(),
            newest_ts: counts.newest,
            warning: None,
            error: None,
            elapsed: Duration::ZERO,
            body: Some(self.records.clone()),
        }
    }
}

/// Records, malformed ones and naive timestamps, as the listener counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: usize,
    pub malformed: usize,
    pub naive: usize,
    /// The newest readable `@ts` (the dashboard judges a batch's data lag
    /// by it).
    pub newest: Option<jiff::Timestamp>,
}

/// Counts the records of a batch the way the listener does: a record
/// lacking `@t` or a readable `@ts` is malformed, one whose `@ts` has no
/// offset is naive. Only those two keys are looked at, without copying.
pub fn count_records(text: &str) -> Counts {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct Batch<'c>(&'c mut Counts);
    impl<'de> Visitor<'de> for Batch<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(head) = seq.next_element_seed(Head)? {
                self.0.records += 1;
                match head {
                    (true, Some((ts, kind))) => {
                        self.0.naive += usize::from(kind == TimestampKind::Naive);
                        self.0.newest = self.0.newest.max(Some(ts));
                    }
                    _ => self.0.malformed += 1,
                }
            }
            Ok(())
        }
    }
    /// (has a string `@t`, a readable `@ts` and its kind).
    struct Head;
    impl<'de> DeserializeSeed<'de> for Head {
        type Value = (bool, Option<(jiff::Timestamp, TimestampKind)>);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Head {
        type Value = (bool, Option<(jiff::Timestamp, TimestampKind)>);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut typed, mut kind) = (false, None);
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Type => typed = map.next_value::<&'de RawValue>()?.get().starts_with('"'),
                    Key::Timestamp => {
                        let raw = map.next_value::<&'de RawValue>()?;
                        let raw = raw.get();
                        // A plain literal is its own text between the quotes.
                        let plain = raw
                            .strip_prefix('"')
                            .and_then(|r| r.strip_suffix('"'))
                            .filter(|t| !t.contains('\\'));
                        kind = match plain {
                            Some(t) => crate::time::parse_timestamp(t),
                            None => serde_json::from_str::<String>(raw)
                                .ok()
                                .and_then(|t| crate::time::parse_timestamp(&t)),
                        };
                    }
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok((typed, kind))
        }
        // Not an object: malformed, but still a record of the batch.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok((false, None))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok((false, None))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok((false, None))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok((false, None))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok((false, None))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok((false, None))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok((false, None))
        }
    }
    /// A record key, told apart without copying it (serde's `Cow<str>`
    /// always copies, which cost more than the rest of the count).
    enum Key {
        Type,
        Timestamp,
        Other,
    }
    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                    Ok(match k {
                        "@t" => Key::Type,
                        "@ts" => Key::Timestamp,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(V)
        }
    }
    let mut c = Counts::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = de.deserialize_seq(Batch(&mut c));
    c
}

/// Where a line sits in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// 1-based line number.
    pub line: u64,
    pub offset: u64,
    pub len: usize,
}

/// What a scan found besides the lines it handed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    /// Complete lines read (good or not).
    pub lines: u64,
    /// Complete lines that were not capture lines (skipped).
    pub corrupt: u64,
    /// The first few corrupt lines: number and why.
    pub examples: Vec<(u64, String)>,
    /// Bytes of an unfinished last line (left out).
    pub torn_bytes: u64,
    /// Complete lines that were capture lines.
    pub good: u64,
    /// Of the corrupt lines, those that start as the receiver writes a
    /// line (damaged, not foreign).
    pub damaged_ours: u64,
    /// The unfinished last line does not start as the receiver writes a
    /// line (notes saved without a last line end), so it is no line of
    /// the receiver's cut short.
    pub torn_foreign: bool,
}

impl Report {
    /// The warnings to print, one per line; none when the file was clean.
    pub fn warnings(&self) -> Vec<String> {
        let name = crate::text::path(&self.path);
        let mut out = Vec::new();
        for (line, why) in &self.examples {
            out.push(format!(
                "warning: {name}: line {line} is not a capture line, skipped: {why}"
            ));
        }
        if self.corrupt > self.examples.len() as u64 {
            out.push(format!(
                "warning: {name}: {} of {} lines are not capture lines and were skipped",
                self.corrupt, self.lines
            ));
        }
        if self.torn_bytes > 0 {
            out.push(format!(
                "warning: {name}: the last line is unfinished ({} bytes, a batch never acknowledged) and was left out",
                self.torn_bytes
            ));
        }
        out
    }

    /// Prints the warnings on stderr.
    pub fn warn(&self) {
        for w in self.warnings() {
            crate::say!("{w}");
        }
    }
}

/// Reads `path` (at most `limit` bytes of it), turns every good line into a
/// `T` with `prepare` on a reading thread, and hands each to `consume` in
/// file order on the calling thread; `progress` hears (bytes done, total).
/// `prepare` returning None drops the line on purpose (a filter).
/// serde_json's error for one capture line, placed by its column: its
/// own "at line 1" (of the one line it was given) read beside the file's
/// line number as another line ("line 4 is not a capture line, skipped:
/// … at line 1 column 457", a probe of the offline tools).
fn within_the_line(e: &serde_json::Error) -> String {
    let said = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    match said.strip_suffix(&place) {
        Some(what) if e.line() == 1 => format!("{what} at column {}", e.column()),
        _ => said,
    }
}

pub fn scan<T: Send>(
    path: &Path,
    limit: Option<u64>,
    packed: Packed,
    prepare: impl Fn(Located, CaptureLine) -> Option<T> + Send,
    consume: impl FnMut(Located, T),
    progress: impl FnMut(u64, u64),
) -> io::Result<Report> {
    scan_until(path, limit, packed, prepare, consume, progress, || false)
}

/// What a reader does with a capture gzipped to keep (`gzip -k`).
#[derive(Clone, Copy, Debug)]
pub enum Packed {
    /// Inflated as it is read: for readers that go through a file once,
    /// from its start to its end. Offsets are then the inflated text's.
    Inflated,
    /// Refused with the reason, for readers that go back to a line by
    /// its offset in the file.
    Refused(&'static str),
}

/// `scan`, stopped early (between two chunks of lines, each up to a block
/// of the file) once `stop` says so: what was consumed until then stays
/// consumed, and the report counts what the reading thread had read by
/// then (a few chunks more than were consumed).
pub fn scan_until<T: Send>(
    path: &Path,
    limit: Option<u64>,
    packed: Packed,
    prepare: impl Fn(Located, CaptureLine) -> Option<T> + Send,
    mut consume: impl FnMut(Located, T),
    mut progress: impl FnMut(u64, u64),
    stop: impl Fn() -> bool,
) -> io::Result<Report> {
    // Not a regular file: its length says 0, and it was read as empty
    // without a word (`view <(zcat c.jsonl.gz)` said "no batches").
    let file = crate::input::open_file(path)?;
    let meta = file.metadata()?;
    let gzip = crate::input::gzipped(&file);
    if let (true, Packed::Refused(why)) = (gzip, packed) {
        // A capture gzipped to keep: read as 36 lines that were not
        // capture lines, "no batches", exit 0, until December 5.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is gzip-compressed: {why}"),
        ));
    }
    let total = meta.len().min(limit.unwrap_or(u64::MAX));
    let (tx, rx) = crossbeam_channel::bounded::<(u64, Vec<(Located, T)>)>(4);
    let mut report = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            // Small files need no 8 MB block (a file growing meanwhile is
            // read up to `total` only anyway).
            let block = usize::try_from(total).map_or(CHUNK, |t| t.clamp(4096, CHUNK));
            let parse = |at, line: &[u8]| CaptureLine::parse(line).map(|l| prepare(at, l));
            // Progress is told in bytes of the file read so far (for a
            // gzip capture, the packed ones, up to a buffer ahead of
            // the inflating): its only known length.
            let read = std::cell::Cell::new(0u64);
            let counted = Counted {
                inner: file.take(total),
                count: &read,
            };
            let input: Box<dyn Read + '_> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
                    counted,
                )))
            } else {
                Box::new(counted)
            };
            let lines = read_lines(input, block, parse, |chunk| {
                tx.send((read.get(), chunk)).is_ok()
            });
            lines.map_err(|e| match gzip {
                true => io::Error::new(
                    e.kind(),
                    format!(
                        "it is gzip-compressed, and its gzip stream does not inflate to its \
                             end (damaged or cut short): {e}"
                    ),
                ),
                false => e,
            })
        });
        for (done, chunk) in rx {
            if stop() {
                // The reader's next hand-over fails, and it ends.
                break;
            }
            for (at, item) in chunk {
                consume(at, item);
            }
            progress(done, total);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the capture reader panicked")))
    })?;
    report.path = path.to_path_buf();
    if report.good == 0 && (report.corrupt > 0 || report.torn_foreign) && report.damaged_ours == 0 {
        // The wrong file (notes, a typo, even one line without a line
        // end): the receiver refuses it as its capture the same way (a
        // file whose lines start as its own do is a damaged capture, read
        // with warnings); the readers warned about each line and ended
        // with "no batches", exit 0.
        let lines = report.lines + u64::from(report.torn_foreign);
        let why = match report.examples.first() {
            Some((n, why)) => format!("line {n}: {why}"),
            None => format!("line {lines} has no line end and does not start as a capture line"),
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            if lines == 1 {
                format!("its one line is not a capture line, so it is not a capture ({why})")
            } else {
                format!(
                    "not one of its {lines} lines is a capture line, so it is not a capture ({why})"
                )
            },
        ));
    }
    Ok(report)
}

/// Splits `input` into lines, parses each with `parse` and passes chunks
/// of results to `send` (false: stop reading).
fn read_lines<R: Read, T>(
    mut input: R,
    block_size: usize,
    parse: impl Fn(Located, &[u8]) -> Result<Option<T>, String>,
    mut send: impl FnMut(Vec<(Located, T)>) -> bool,
) -> io::Result<Report> {
    let mut report = Report::default();
    // Read into a zeroed block once (zeroing the pending buffer on every
    // read cost more than the parsing, in debug builds), appended to what
    // is left of the last one.
    let mut block = vec![0u8; block_size];
    let mut buf: Vec<u8> = Vec::with_capacity(block_size);
    let mut start_offset = 0u64; // file offset of buf[0]
    let mut out = Vec::with_capacity(HANDOVER);
    loop {
        let n = loop {
            match input.read(&mut block) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        buf.extend_from_slice(&block[..n]);
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let line = &buf[pos..pos + nl];
            report.lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                // A blank line (an edit by hand) holds nothing to lose.
                pos += nl + 1;
                continue;
            }
            let at = Located {
                line: report.lines,
                offset: start_offset + pos as u64,
                len: nl,
            };
            match parse(at, line) {
                Ok(Some(item)) => {
                    report.good += 1;
                    out.push((at, item));
                }
                Ok(None) => report.good += 1,
                Err(why) => {
                    report.corrupt += 1;
                    if super::reader::written_as_a_capture(line) {
                        report.damaged_ours += 1;
                    }
                    if report.examples.len() < EXAMPLES {
                        report.examples.push((at.line, clip(&why)));
                    }
                }
            }
            pos += nl + 1;
        }
        if !out.is_empty() && !send(std::mem::replace(&mut out, Vec::with_capacity(HANDOVER))) {
            return Ok(report);
        }
        buf.drain(..pos);
        start_offset += pos as u64;
        if n == 0 {
            // Whatever is left has no newline: a line still being written
            // or cut by a crash, never acknowledged.
            report.torn_bytes = buf.len() as u64;
            if buf.iter().all(u8::is_ascii_whitespace) {
                report.torn_bytes = 0;
            } else {
                report.torn_foreign = !super::reader::starts_ours(&buf);
            }
            send(Vec::new());
            return Ok(report);
        }
    }
}

/// Counts the bytes read through it (the progress in the file).
struct Counted<'a, R> {
    inner: R,
    count: &'a std::cell::Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Reads the line at `at` again (the view steps back and forth this way
/// instead of holding every batch in memory).
pub fn read_at(file: &File, at: Located) -> Result<CaptureLine, String> {
    let mut line = vec![0u8; at.len];
    file.read_exact_at(&mut line, at.offset)
        .map_err(|e| format!("cannot read line {} again: {e}", at.line))?;
    CaptureLine::parse(&line)
}

/// Scans a capture into request events for the dashboard's fold, in file
/// order; ids start at `LOADED_ID_BASE + first_id`. Stops early once
/// `stop` says so (see `scan_until`).
pub fn scan_events(
    path: &Path,
    limit: Option<u64>,
    first_id: u64,
    mut consume: impl FnMut(RequestEvent),
    progress: impl FnMut(u64, u64),
    stop: impl Fn() -> bool,
) -> io::Result<Report> {
    let mut next = LOADED_ID_BASE + first_id;
    scan_until(
        path,
        limit,
        Packed::Refused(
            "the receiver appends to its capture as written; unpack it first (gunzip -k)",
        ),
        |_, line| Some(line.to_event(0)),
        |_, mut event| {
            event.id = next;
            next += 1;
            consume(event);
        },
        progress,
        stop,
    )
}

/// A one-line progress display on stderr, for big files on a terminal.
pub struct Progress {
    what: String,
    shown: bool,
    enabled: bool,
    last: Option<Instant>,
    started: Instant,
}

impl Progress {
    /// Progress for reading `total` bytes, said as `what`; silent unless
    /// stderr is a terminal and the file is big.
    pub fn new(what: impl Into<String>, total: u64) -> Progress {
        Progress {
            what: what.into(),
            shown: false,
            enabled: total >= PROGRESS_FROM && io::stderr().is_terminal(),
            last: None,
            started: Instant::now(),
        }
    }

    /// Updates the line at most ten times a second.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r{}: {pct:>3}% ({} of {} MB, {:.1} s)\x1b[K",
            self.what,
            done / 1_000_000,
            total / 1_000_000,
            self.started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Ends the line, if one was shown.
    pub fn finish(&mut self) {
        self.end("done in");
    }

    /// Ends the line, saying the read stopped short.
    pub fn stopped(&mut self) {
        self.end("stopped after");
    }

    fn end(&mut self, how: &str) {
        if self.shown {
            crate::say!(
                "\r{}: {how} {:.1} s\x1b[K",
                self.what,
                self.started.elapsed().as_secs_f64()
            );
            self.shown = false;
        }
    }
}

/// A value quoted in a message, cut at 200 characters.
/// `s` cut at 200 characters for a warning, a secret kept out of stderr
/// taken out first (cut first, one across the cut came through in part:
/// a review).
fn clip(s: &str) -> String {
    let s = &crate::scrub::said(s.to_string());
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_before_a_line_is_passed_over() {
        let with = [b"\xef\xbb\xbf".as_slice(), GOOD.as_bytes()].concat();
        assert_eq!(
            CaptureLine::parse(&with).unwrap().received,
            CaptureLine::parse(GOOD.as_bytes()).unwrap().received
        );
    }

    /// A line that is no JSON is placed by its column alone: "at line 1"
    /// of the one line read beside the file's line number as another.
    #[test]
    fn a_broken_line_is_placed_by_its_column() {
        let why = CaptureLine::parse(br#"{"received": nope}"#).unwrap_err();
        assert_eq!(why, "expected ident at column 15");
        // Given a line end (never, from a file: lines are split at them),
        // both are said as serde_json says them.
        let why = CaptureLine::parse(b"{\n\"received\": nope}").unwrap_err();
        assert!(why.ends_with("at line 2 column 14"), "{why}");
    }

    #[test]
    fn loaded_requests_are_named_by_their_place_among_the_loaded() {
        assert_eq!(request_names(12), ("#12".into(), "request-12".into()));
        assert_eq!(
            request_names(LOADED_ID_BASE + 11),
            ("#12 from the capture".into(), "captured-12".into())
        );
    }

    const GOOD: &str = r#"{"received":"2026-11-27T08:00:07.412Z","peer":"1.2.3.4:5","unit_id":"ab","encoding":"gzip","wire_bytes":9,"batch_hash":"00","duplicate_of":null,"records":[{"@t":"track.pos","@ts":"2026-11-27T08:00:00","loc":{"lat":1,"lon":2}},{"@t":"x"}]}"#;

    fn scan_text(text: &str) -> (Vec<CaptureLine>, Report) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut got = Vec::new();
        let report = scan(
            &path,
            None,
            Packed::Inflated,
            |_, l| Some(l),
            |_, l| got.push(l),
            |_, _| {},
        )
        .unwrap();
        (got, report)
    }

    #[test]
    fn a_line_becomes_the_event_the_listener_sent() {
        let line = CaptureLine::parse(GOOD.as_bytes()).unwrap();
        let e = line.to_event(7);
        assert_eq!((e.records, e.malformed, e.naive_timestamps), (2, 1, 1));
        assert_eq!(e.unit_id.as_deref(), Some("ab"));
        assert_eq!(e.encoding, Some("gzip"));
        assert!(e.accepted() && !e.duplicate());
        assert!(line.delivered());
    }

    #[test]
    fn odd_records_are_counted_as_the_listener_counts_them() {
        let text = r#"[{"@t":5,"@ts":"2026-11-27T08:00:00Z"},7,{"@ts":"bad","@t":"a"},{"x":{"@t":1},"@t":"a","@ts":"2026-11-27T08:00:00"},{"@t":"b","@ts":"2026-11-27T08:00:09+00:00"}]"#;
        let c = count_records(text);
        assert_eq!((c.records, c.malformed, c.naive), (5, 3, 1));
        assert_eq!(c.newest, Some(crate::fixtures::at("2026-11-27T08:00:09Z")));
    }

    #[test]
    fn later_fields_are_read_and_unknown_ones_ignored() {
        let text = GOOD.replace(
            "\"duplicate_of\":null",
            "\"duplicate_of\":null,\"acked\":false,\"mode\":\"x\",\"retry_of\":\"2026\"",
        );
        let line = CaptureLine::parse(text.as_bytes()).unwrap();
        assert!(!line.acked && line.retry && !line.delivered());
        let minimal = r#"{"received":"2026-11-27T08:00:07Z","records":[]}"#;
        let line = CaptureLine::parse(minimal.as_bytes()).unwrap();
        assert!(line.delivered() && line.unit_id.is_none());
    }

    #[test]
    fn torn_and_corrupt_lines_are_counted_and_said() {
        let text = format!(
            "{GOOD}\nnot json\n{{\"received\":\"soon\",\"records\":[]}}\n\n{GOOD}\n{{\"recei"
        );
        let (lines, report) = scan_text(&text);
        assert_eq!(lines.len(), 2);
        // The blank line is read but is no capture line gone bad.
        assert_eq!((report.lines, report.corrupt, report.torn_bytes), (5, 2, 7));
        let w = report.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("line 2") && w[1].contains("line 3") && w[2].contains("unfinished"));
    }

    #[test]
    fn lines_longer_than_a_chunk_and_offsets_read_back() {
        let big = format!(
            r#"{{"received":"2026-11-27T08:00:07Z","records":[{}]}}"#,
            vec![
                r#"{"@t":"a","@ts":"2026-11-27T08:00:00Z","v":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
                CHUNK / 50
            ]
            .join(",")
        );
        let text = format!("{GOOD}\n{big}\n{GOOD}\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut at = Vec::new();
        let report = scan(
            &path,
            None,
            Packed::Inflated,
            |_, l| Some(l),
            |a, _| at.push(a),
            |_, _| {},
        )
        .unwrap();
        assert_eq!((report.lines, report.corrupt), (3, 0));
        let file = File::open(&path).unwrap();
        let again = read_at(&file, at[1]).unwrap();
        assert!(again.records.len() > CHUNK);
        assert!(big.contains(std::str::from_utf8(&again.records).unwrap()));
        assert_eq!(at[2].offset as usize, GOOD.len() + 1 + big.len() + 1);
    }

    #[test]
    fn a_limit_reads_only_the_start() {
        let text = format!("{GOOD}\n{GOOD}\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut n = 0;
        let limit = Some(GOOD.len() as u64 + 1);
        let report = scan(
            &path,
            limit,
            Packed::Inflated,
            |_, l| Some(l),
            |_, _| n += 1,
            |_, _| {},
        )
        .unwrap();
        assert_eq!((n, report.torn_bytes), (1, 0));
    }
}

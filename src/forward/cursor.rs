//! The cursor file beside the capture (`<capture>.forward`): for each
//! target, the byte offset up to which it acknowledged the capture and the
//! line it acknowledged last (to notice a replaced capture). Rewritten
//! whole and atomically (temporary file, fsync, rename) after every
//! acknowledgement, so a crash at any moment leaves either the old or the
//! new cursor: at most the batch in flight is sent twice.
//!
//! The batches a target refused for good (parked) are listed in a log of
//! their own (`<capture>.forward.parked`, one JSON line each), appended
//! and synced before the cursor moves past them. The cursor stays a few
//! hundred bytes however many are parked; it held the list until
//! December 2026, and a wrong token left running made every later batch
//! rewrite all of it (17 000 parked, 3 MB, about 150 batches a second).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::capture::OutboxLine;
use crate::capture::{make_folder_again, sync_folder_of};

/// Where the cursor of a capture lives.
pub fn path_for(capture: &Path) -> PathBuf {
    let mut name = capture.as_os_str().to_owned();
    name.push(".forward");
    PathBuf::from(name)
}

/// Where the parked batches of a capture are listed.
pub fn parked_path_for(capture: &Path) -> PathBuf {
    let mut name = path_for(capture).into_os_string();
    name.push(".parked");
    PathBuf::from(name)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    targets: BTreeMap<String, TargetCursor>,
    /// Batches targets passed on since the file was last saved: sent
    /// again by the next start, if no save comes before it.
    #[serde(skip)]
    unsaved: u64,
}

impl Doc {
    /// Moves `target` past the line `start..end` whose batch hash is
    /// `hash`; false when it was there already (the same line again).
    fn done_with(&mut self, target: &str, start: u64, end: u64, hash: Option<&str>) -> bool {
        let c = self.targets.entry(target.to_string()).or_default();
        let moved = c.offset != end || c.last_line != Some(start);
        c.offset = end;
        c.last_line = Some(start);
        c.last_hash = hash.map(str::to_owned);
        moved
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TargetCursor {
    /// Everything before this offset was passed on (or skipped, or parked).
    offset: u64,
    /// Start and `batch_hash` of the line that ends at `offset`.
    #[serde(default)]
    last_line: Option<u64>,
    #[serde(default)]
    last_hash: Option<String>,
    /// Read from a cursor written before the parked log, moved to the log
    /// at start and never written again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parked: Vec<Parked>,
}

/// A batch the target refused for good, kept here instead of being
/// retried forever or dropped unseen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Parked {
    /// Byte offset of its line in the capture.
    pub offset: u64,
    /// Its `batch_hash`, when its line has one.
    pub batch_hash: Option<String>,
    pub received: String,
    pub reason: String,
}

/// What the cursor keeps of a line done with whose batch hash cannot be
/// read (an unreadable line, parked): a hash of its bytes, so that the
/// next start checks the line is still there, as it does a batch's
/// (with no mark it checked only the file's length, and a capture
/// replaced by a longer file while stopped was resumed mid-file: a
/// review).
pub fn line_mark(line: &[u8]) -> String {
    format!("{LINE_MARK}{}", blake3::hash(line).to_hex())
}

/// How `line_mark` begins.
const LINE_MARK: &str = "line:";

/// One line of the parked log.
#[derive(Debug, Serialize, Deserialize)]
struct ParkedLine {
    target: String,
    offset: u64,
    #[serde(default)]
    batch_hash: Option<String>,
    received: String,
    reason: String,
}

/// What tells a batch parked again after a crash (between its line and
/// the cursor) from the batch before it: offset, batch hash, time received.
type Key = (u64, Option<String>, String);

/// A target and the key of a batch it parked.
type Listed = (String, Key);

impl ParkedLine {
    fn key(&self) -> Key {
        (self.offset, self.batch_hash.clone(), self.received.clone())
    }
}

/// The parked log, appended to.
struct ParkedLog {
    path: PathBuf,
    /// Opened at the first append.
    file: Option<File>,
    /// Whether the folder is known to hold the file after a crash: false
    /// from its creation until a sync of the folder succeeds (a failed one
    /// is tried again at the next append, not skipped because the file is
    /// there by then).
    in_folder: bool,
    /// Its length after the last whole line.
    len: u64,
    /// Lines per target (`append` never lists a batch twice in a row).
    count: HashMap<String, u64>,
    /// The key of each target's last line: parking that batch again
    /// (after a crash before the cursor moved, or a retry after the
    /// cursor could not be saved) adds nothing.
    last: HashMap<String, Key>,
}

impl ParkedLog {
    /// Reads the log a line at a time and counts each target's lines. A
    /// last line without its line end is kept if it is a whole entry (an
    /// editor may leave it so) and cut off if not (a crash left it
    /// unfinished, and its batch was never moved past). `keys`: also gives
    /// every line's key, to move an old cursor's list without repeating
    /// what a start before moved.
    fn open(path: PathBuf, keys: bool) -> Result<(ParkedLog, HashSet<Listed>), String> {
        let mut log = ParkedLog {
            path,
            file: None,
            in_folder: true,
            len: 0,
            count: HashMap::new(),
            last: HashMap::new(),
        };
        let mut listed = HashSet::new();
        let file = match File::open(&log.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log.in_folder = false;
                return Ok((log, listed));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", crate::text::path(&log.path))),
        };
        let shown = crate::text::path(&log.path).to_string();
        let cannot_read = |e: io::Error| format!("cannot read {shown}: {e}");
        let mut reader = io::BufReader::new(file);
        let mut line = Vec::new();
        let mut n = 0;
        let mut unended = false;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(cannot_read)?;
            if read == 0 {
                break;
            }
            n += 1;
            let ended = line.last() == Some(&b'\n');
            if line.iter().all(u8::is_ascii_whitespace) {
                if ended {
                    log.len += read as u64;
                }
                continue;
            }
            let entry = match serde_json::from_slice::<ParkedLine>(&line) {
                Ok(entry) => entry,
                Err(_) if !ended => break,
                Err(e) => {
                    return Err(format!(
                        "line {n} of {shown} is not a parked batch ({e}); move the file away to start a new list"
                    ));
                }
            };
            if keys {
                listed.insert((entry.target.clone(), entry.key()));
            }
            log.note(entry);
            log.len += read as u64;
            unended = !ended;
        }
        let on_disk = std::fs::metadata(&log.path).map_err(cannot_read)?.len();
        if unended || on_disk > log.len {
            let mended = OpenOptions::new()
                .write(true)
                .open(&log.path)
                .and_then(|mut f| {
                    f.set_len(log.len)?;
                    if unended {
                        f.seek(SeekFrom::End(0))?;
                        f.write_all(b"\n")?;
                        log.len += 1;
                    }
                    f.sync_all()
                });
            mended.map_err(|e| format!("cannot mend the end of {shown}: {e}"))?;
        }
        Ok((log, listed))
    }

    /// Counts `entry` for its target, and keeps its key as the last.
    fn note(&mut self, entry: ParkedLine) {
        *self.count.entry(entry.target.clone()).or_default() += 1;
        self.last.insert(entry.target.clone(), entry.key());
    }

    /// Appends the entries of a cursor written before the log, in one
    /// write and one sync, leaving out any a start before this one moved.
    fn migrate(
        &mut self,
        listed: &mut HashSet<Listed>,
        entries: Vec<ParkedLine>,
    ) -> io::Result<()> {
        let new = entries
            .into_iter()
            .filter(|e| listed.insert((e.target.clone(), e.key())))
            .collect();
        self.write(new)
    }

    /// Appends `entry` and syncs it; a batch already last in the log for
    /// its target is not listed twice. Gives the target's count.
    fn append(&mut self, entry: ParkedLine) -> io::Result<u64> {
        let target = entry.target.clone();
        if self.last.get(&target) != Some(&entry.key()) {
            self.write(vec![entry])?;
        }
        Ok(self.count.get(&target).copied().unwrap_or(0))
    }

    /// Appends `entries` and syncs them. A failed write is cut off again,
    /// and whatever of it a failed cut left is cut before the next one, so
    /// whole lines follow whole lines.
    fn write(&mut self, entries: Vec<ParkedLine>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut text, entry).expect("plain struct serializes");
            text.push(b'\n');
        }
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        if !self.in_folder {
            sync_folder_of(&self.path)?;
            self.in_folder = true;
        }
        let on_disk = f.metadata()?.len();
        if on_disk > self.len {
            f.set_len(self.len)?;
        } else if on_disk < self.len {
            // Shortened by someone else while running: appended after
            // what is there.
            self.len = on_disk;
        }
        if let Err(e) = f.write_all(&text).and_then(|()| f.sync_data()) {
            let _ = f.set_len(self.len);
            return Err(e);
        }
        self.len += text.len() as u64;
        for entry in entries {
            self.note(entry);
        }
        Ok(())
    }
}

/// The cursor file of one capture, shared by its forward targets, and
/// the log of what they parked.
pub struct Cursors {
    path: PathBuf,
    doc: Mutex<Doc>,
    parked: Mutex<ParkedLog>,
}

impl Cursors {
    /// Reads `<capture>.forward`, or starts empty when there is none.
    pub fn open(capture: &Path) -> Result<Cursors, String> {
        let path = path_for(capture);
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a forward cursor ({e}); move it away to forward the capture from its start",
                    crate::text::path(&path)
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Doc::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", crate::text::path(&path))),
        };
        let mut doc: Doc = doc;
        let old_list = doc.targets.values().any(|c| !c.parked.is_empty());
        let (mut parked, mut listed) = ParkedLog::open(parked_path_for(capture), old_list)?;
        // A cursor from before the log: its list goes to the log first
        // (each batch once, also when a start before this one moved it
        // and stopped before the cursor was saved without it).
        let mut old = Vec::new();
        for (target, c) in &mut doc.targets {
            old.extend(
                std::mem::take(&mut c.parked)
                    .into_iter()
                    .map(|p| ParkedLine {
                        target: target.clone(),
                        offset: p.offset,
                        batch_hash: None,
                        received: p.received,
                        reason: p.reason,
                    }),
            );
        }
        parked
            .migrate(&mut listed, old)
            .map_err(|e| format!("cannot write {}: {e}", crate::text::path(&parked.path)))?;
        Ok(Cursors {
            path,
            doc: Mutex::new(doc),
            parked: Mutex::new(parked),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `target` resumes and how many batches it has parked, after
    /// checking that its last acknowledged line is still where it was.
    pub fn resume(&self, target: &str, capture: &Path) -> Result<(u64, u64), String> {
        let doc = self.lock();
        let parked = self.parked_count(target);
        let Some(c) = doc.targets.get(target) else {
            return Ok((0, parked));
        };
        let mismatch = |why: String| {
            format!(
                "{} says {target} has the capture {} up to byte {}, but {why}: was the capture replaced or cut short? Move {} away to forward it from its start (and {} with it, to start the list of parked batches afresh)",
                crate::text::path(&self.path),
                crate::text::path(&capture),
                c.offset,
                crate::text::path(&self.path),
                crate::text::path(&self.parked_path())
            )
        };
        // None at the path (deleted while a run was stopping): the next
        // start creates it empty, so that is what is judged.
        let len = match std::fs::metadata(capture) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("cannot read {}: {e}", crate::text::path(&capture))),
        };
        if c.offset > len {
            return Err(mismatch(format!("the file has only {len} bytes")));
        }
        if let (Some(start), Some(hash)) = (c.last_line, &c.last_hash) {
            let line = read_span(capture, start, c.offset)
                .map_err(|e| format!("cannot read {}: {e}", crate::text::path(&capture)))?;
            let whole = line.last() == Some(&b'\n');
            // The line as the forwarder read it decides how it was kept:
            // by its batch hash, or (none) by its bytes. A batch hash is
            // whatever the line says, `line:…` included (a hand-edited
            // one so named was refused as a mark: a review).
            let found = whole
                .then(|| OutboxLine::parse(&line).ok()?.batch_hash)
                .flatten();
            match found {
                Some(found) if found == *hash => {}
                None if whole && line_mark(&line) == *hash => {}
                _ if hash.starts_with(LINE_MARK) => {
                    return Err(mismatch(
                        "the line before it is not the line without a batch hash it was last done with"
                            .into(),
                    ));
                }
                _ => {
                    return Err(mismatch(format!(
                        "the line before it is not the batch {hash} it acknowledged last"
                    )));
                }
            }
        }
        Ok((c.offset, parked))
    }

    /// Records that `target` is done with the line `start..end` and saves
    /// the file.
    pub fn passed(&self, target: &str, start: u64, end: u64, hash: Option<&str>) -> io::Result<()> {
        let mut doc = self.lock();
        // Tried again after a failed save: one batch still.
        let new = doc.done_with(target, start, end, hash);
        doc.unsaved += u64::from(new);
        self.save(&mut doc)
    }

    /// Batches passed on since the file was last saved (a save failed
    /// since): the next start sends them again.
    pub fn unsaved(&self) -> u64 {
        self.lock().unsaved
    }

    /// Moves `target` past a line it need not send (a duplicate, a batch
    /// not acknowledged) without saving: redoing that after a crash costs
    /// nothing. The next `passed` or `flush` saves it.
    pub fn skipped(&self, target: &str, start: u64, end: u64, hash: Option<&str>) {
        self.lock().done_with(target, start, end, hash);
    }

    /// Records that the capture path names a new file (the old one was
    /// deleted or replaced while running) and that `target` is done with
    /// the old one: from now on its offset is in the new file, from
    /// where the writer started it. Saves the file.
    pub fn moved(&self, target: &str, offset: u64) -> io::Result<()> {
        let mut doc = self.lock();
        let c = doc.targets.entry(target.to_string()).or_default();
        c.offset = offset;
        c.last_line = None;
        c.last_hash = None;
        self.save(&mut doc)
    }

    /// Records a batch `target` refused for good in the parked log, then
    /// moves past it and saves the cursor: a crash between the two sends
    /// the batch again, and parking it again lists it once. Gives how many
    /// batches the log lists for `target`.
    pub fn park(
        &self,
        target: &str,
        start: u64,
        end: u64,
        mark: Option<&str>,
        parked: Parked,
    ) -> io::Result<u64> {
        let mut doc = self.lock();
        let count = self.parked().append(ParkedLine {
            target: target.to_string(),
            offset: parked.offset,
            batch_hash: parked.batch_hash,
            received: parked.received,
            reason: parked.reason,
        })?;
        doc.done_with(target, start, end, mark);
        self.save(&mut doc)?;
        Ok(count)
    }

    /// How many batches the parked log lists for `target`.
    pub fn parked_count(&self, target: &str) -> u64 {
        self.parked().count.get(target).copied().unwrap_or(0)
    }

    /// Where the parked batches are listed.
    pub fn parked_path(&self) -> PathBuf {
        self.parked().path.clone()
    }

    /// Whether `target` has a place in the file yet.
    pub fn has(&self, target: &str) -> bool {
        self.lock().targets.contains_key(target)
    }

    /// The offset `target` has reached (what a restart resumes from).
    pub fn offset(&self, target: &str) -> u64 {
        self.lock().targets.get(target).map_or(0, |c| c.offset)
    }

    /// Saves what `skipped` moved.
    pub fn flush(&self) -> io::Result<()> {
        let mut doc = self.lock();
        if doc.targets.is_empty() {
            return Ok(());
        }
        self.save(&mut doc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Doc> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, ParkedLog> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a temporary file, syncs it, renames it over the cursor and
    /// syncs the folder: the cursor on disk is always a whole one.
    fn save(&self, doc: &mut Doc) -> io::Result<()> {
        self.write(doc)?;
        doc.unsaved = 0;
        Ok(())
    }

    fn write(&self, doc: &Doc) -> io::Result<()> {
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut text = serde_json::to_vec_pretty(doc).expect("plain struct serializes");
        text.push(b'\n');
        let mut f = match File::create(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The capture's folder moved away (`mv captures old`): made
                // again, as the writer makes it at the next upload, so the
                // cursor is saved at once beside the new file (see
                // `FileSink::ensure_at_path`).
                if let Some(dir) = make_folder_again(&self.path)? {
                    sync_folder_of(dir)?;
                }
                File::create(&tmp)?
            }
            f => f?,
        };
        f.write_all(&text)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        sync_folder_of(&self.path)
    }
}

fn read_span(path: &Path, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    f.take(to.saturating_sub(from)).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreadable line set aside last is checked at the next start by
    /// its bytes: a capture replaced by a longer file while stopped is
    /// refused, as it is when the line was a batch (with no batch hash,
    /// only the length was checked, and it was resumed mid-file: a
    /// review).
    #[test]
    fn an_unreadable_line_set_aside_last_is_checked_by_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        let torn = b"{\"received\":\"t\",\"records\":[\n";
        std::fs::write(&capture, torn).unwrap();
        let cursors = Cursors::open(&capture).unwrap();
        let end = torn.len() as u64;
        let mark = line_mark(torn);
        cursors.park("t1", 0, end, Some(&mark), parked(0)).unwrap();
        let again = Cursors::open(&capture).unwrap();
        assert_eq!(again.resume("t1", &capture).unwrap(), (end, 1));
        // Another file, longer, in its place.
        let other = format!("{{\"oops\":1}}\n{}", "x".repeat(40));
        std::fs::write(&capture, format!("{other}\n")).unwrap();
        let refused = again.resume("t1", &capture).unwrap_err();
        // A batch hash that reads like a mark is a batch hash: a restart
        // after it is taken (it was refused: a review).
        let odd = b"{\"received\":\"t\",\"batch_hash\":\"line:0\",\"records\":[]}\n";
        let other_capture = dir.path().join("d.jsonl");
        std::fs::write(&other_capture, odd).unwrap();
        let cursors = Cursors::open(&other_capture).unwrap();
        let end = odd.len() as u64;
        cursors.passed("t2", 0, end, Some("line:0")).unwrap();
        assert_eq!(cursors.resume("t2", &other_capture).unwrap(), (end, 0));
        assert!(
            refused.contains(
                "the line before it is not the line without a batch hash it was last done with"
            ),
            "{refused}"
        );
    }

    /// Batches passed on while the file cannot be saved are counted once
    /// each, however often the save is tried again, until a save works.
    #[test]
    fn batches_passed_on_since_the_last_save_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        std::fs::write(&capture, "").unwrap();
        let cursors = Cursors::open(&capture).unwrap();
        cursors.passed("t1", 0, 10, Some("aa")).unwrap();
        assert_eq!(cursors.unsaved(), 0);
        let blocker = dir.path().join("c.jsonl.forward.tmp");
        std::fs::create_dir(&blocker).unwrap();
        for _ in 0..3 {
            assert!(cursors.passed("t1", 10, 20, Some("bb")).is_err());
        }
        assert_eq!(cursors.unsaved(), 1);
        assert!(cursors.passed("t2", 0, 20, None).is_err());
        assert_eq!(cursors.unsaved(), 2);
        assert!(cursors.flush().is_err());
        std::fs::remove_dir(&blocker).unwrap();
        cursors.flush().unwrap();
        assert_eq!(cursors.unsaved(), 0);
    }

    #[test]
    fn resumes_where_acknowledged_and_refuses_a_replaced_capture() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        let line =
            |h: &str| format!("{{\"received\":\"t\",\"batch_hash\":\"{h}\",\"records\":[]}}\n");
        let (a, b) = (line("aa"), line("bb"));
        std::fs::write(&capture, format!("{a}{b}")).unwrap();
        let end_a = a.len() as u64;
        let cursors = Cursors::open(&capture).unwrap();
        assert_eq!(cursors.resume("t1", &capture).unwrap(), (0, 0));
        cursors.passed("t1", 0, end_a, Some("aa")).unwrap();
        let parked = Parked {
            offset: end_a,
            batch_hash: Some("bb".into()),
            received: "t".into(),
            reason: "413".into(),
        };
        cursors
            .park("t1", end_a, end_a + b.len() as u64, Some("bb"), parked)
            .unwrap();
        // A restart reads it back.
        let again = Cursors::open(&capture).unwrap();
        assert_eq!(
            again.resume("t1", &capture).unwrap(),
            ((a.len() + b.len()) as u64, 1)
        );
        // The same length, other batches: not the capture it counted in.
        std::fs::write(&capture, format!("{}{}", line("cc"), line("dd"))).unwrap();
        let err = again.resume("t1", &capture).unwrap_err();
        assert!(
            err.contains("was the capture replaced or cut short?"),
            "{err}"
        );
        std::fs::write(&capture, "").unwrap();
        assert!(
            again
                .resume("t1", &capture)
                .unwrap_err()
                .contains("only 0 bytes")
        );
        assert!(!dir.path().join("c.jsonl.forward.tmp").exists());
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn parked(offset: u64) -> Parked {
        Parked {
            offset,
            batch_hash: None,
            received: format!("t{offset}"),
            reason: "401: invalid token".into(),
        }
    }

    /// `parked`, of the batch `hash`.
    fn parked_as(offset: u64, hash: &str) -> Parked {
        Parked {
            batch_hash: Some(hash.to_string()),
            ..parked(offset)
        }
    }

    /// A wrong token parks every batch: the cursor must not grow with
    /// them (it is rewritten and synced after each batch), the log gets
    /// one line each, and a restart counts them.
    #[test]
    fn parked_batches_go_to_a_log_and_the_cursor_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        std::fs::write(&capture, "").unwrap();
        let cursors = Cursors::open(&capture).unwrap();
        for i in 0..500u64 {
            let hash = format!("h{i}");
            cursors
                .park(
                    "t1",
                    i * 10,
                    i * 10 + 10,
                    Some(&hash),
                    parked_as(i * 10, &hash),
                )
                .unwrap();
        }
        cursors
            .park("t2", 0, 10, Some("h0"), parked_as(0, "h0"))
            .unwrap();
        let cursor = std::fs::read(path_for(&capture)).unwrap();
        assert!(cursor.len() < 1024, "{}", String::from_utf8_lossy(&cursor));
        let log = lines(&parked_path_for(&capture));
        assert_eq!(log.len(), 501);
        assert_eq!(log[499]["target"], "t1");
        assert_eq!(log[499]["offset"], 4990);
        assert_eq!(log[499]["batch_hash"], "h499");
        assert_eq!(log[499]["reason"], "401: invalid token");
        std::fs::write(&capture, "x".repeat(5000)).unwrap();
        let again = Cursors::open(&capture).unwrap();
        let resume = |c: &Cursors, t| {
            let c = c.lock();
            (c.targets[t].offset, c.targets[t].last_line)
        };
        assert_eq!(resume(&again, "t1"), (5000, Some(4990)));
        assert_eq!(again.parked().count["t1"], 500);
        assert_eq!(again.parked().count["t2"], 1);
    }

    /// A crash after the log's line and before the cursor moved sends the
    /// batch again; parking it again lists it once. A line cut short by
    /// the crash is cut off, and the next one is whole.
    #[test]
    fn a_batch_parked_again_after_a_crash_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        std::fs::write(&capture, "x".repeat(100)).unwrap();
        let cursors = Cursors::open(&capture).unwrap();
        cursors
            .park("t1", 0, 10, Some("a"), parked_as(0, "a"))
            .unwrap();
        // What park does up to the crash: the line, not the cursor.
        cursors
            .parked()
            .append(ParkedLine {
                target: "t1".into(),
                offset: 10,
                batch_hash: Some("b".into()),
                received: "t10".into(),
                reason: "413".into(),
            })
            .unwrap();
        drop(cursors);
        let again = Cursors::open(&capture).unwrap();
        assert_eq!(again.offset("t1"), 10, "the cursor did not move past b");
        assert_eq!(again.parked().count["t1"], 2);
        // The count the status shows comes from the log.
        assert_eq!(
            again
                .park("t1", 10, 20, Some("b"), parked_as(10, "b"))
                .unwrap(),
            2
        );
        assert_eq!(lines(&parked_path_for(&capture)).len(), 2);
        assert_eq!(again.offset("t1"), 20);
        // A crash inside a line: cut off at the next start.
        let log = parked_path_for(&capture);
        let whole = std::fs::metadata(&log).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(br#"{"target":"t1","off"#).unwrap();
        drop((f, again));
        let third = Cursors::open(&capture).unwrap();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), whole);
        assert_eq!(
            third
                .park("t1", 20, 30, Some("c"), parked_as(20, "c"))
                .unwrap(),
            3
        );
        assert_eq!(lines(&log).len(), 3);
        // A failed write whose cut failed too left part of a line: cut
        // before the next line is written.
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(br#"{"target":"t1","off"#).unwrap();
        drop(f);
        assert_eq!(
            third
                .park("t1", 30, 40, Some("d"), parked_as(30, "d"))
                .unwrap(),
            4
        );
        assert_eq!(lines(&log).len(), 4);
        drop(third);
        // A whole last line without its line end (an editor's save) is
        // kept, and given its line end.
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::write(&log, text.trim_end()).unwrap();
        let fourth = Cursors::open(&capture).unwrap();
        assert_eq!(fourth.parked_count("t1"), 4);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
        // A target the cursor does not know (moved away) still has the
        // log's count.
        std::fs::remove_file(path_for(&capture)).unwrap();
        drop(fourth);
        assert_eq!(
            Cursors::open(&capture)
                .unwrap()
                .resume("t1", &capture)
                .unwrap(),
            (0, 4)
        );
        // A line that is not a parked batch stops the start, naming it.
        std::fs::write(&log, "{}\n").unwrap();
        let err = Cursors::open(&capture).err().unwrap();
        assert!(
            err.contains("line 1 of") && err.contains("not a parked batch"),
            "{err}"
        );
    }

    /// A cursor written before the log lists its parked batches itself:
    /// they move to the log once, also when the start that moved them
    /// ended before the cursor was saved without them.
    #[test]
    fn a_cursor_from_before_the_log_has_its_list_moved_to_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("c.jsonl");
        std::fs::write(&capture, "x".repeat(100)).unwrap();
        let old = serde_json::json!({"targets": {"t1": {
            "offset": 30, "last_line": null, "last_hash": null,
            "parked": [
                {"offset": 0, "received": "t0", "reason": "413"},
                {"offset": 20, "received": "t20", "reason": "401"},
            ],
        }}});
        std::fs::write(path_for(&capture), old.to_string()).unwrap();
        for _ in 0..2 {
            let cursors = Cursors::open(&capture).unwrap();
            assert_eq!(cursors.resume("t1", &capture).unwrap(), (30, 2));
        }
        let log = lines(&parked_path_for(&capture));
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[1]["reason"], "401");
        let cursors = Cursors::open(&capture).unwrap();
        cursors.passed("t1", 30, 40, None).unwrap();
        let cursor = std::fs::read_to_string(path_for(&capture)).unwrap();
        assert!(!cursor.contains("parked"), "{cursor}");
        assert_eq!(
            Cursors::open(&capture)
                .unwrap()
                .resume("t1", &capture)
                .unwrap(),
            (40, 2)
        );
    }
}

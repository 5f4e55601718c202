//! The cursor file beside the capture (`<capture>.forward`): for each
//! target, the byte offset up to which it acknowledged the capture, the
//! line it acknowledged last (to notice a replaced capture), and the
//! batches it refused for good (parked). Rewritten whole and atomically
//! (temporary file, fsync, rename) after every acknowledgement, so a crash
//! at any moment leaves either the old or the new cursor: at most the
//! batch in flight is sent twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::capture::OutboxLine;

/// Where the cursor of a capture lives.
pub fn path_for(capture: &Path) -> PathBuf {
    let mut name = capture.as_os_str().to_owned();
    name.push(".forward");
    PathBuf::from(name)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    targets: BTreeMap<String, TargetCursor>,
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
    #[serde(default)]
    parked: Vec<Parked>,
}

/// A batch the target refused for good, kept here instead of being
/// retried forever or dropped unseen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Parked {
    /// Byte offset of its line in the capture.
    pub offset: u64,
    pub received: String,
    pub reason: String,
}

/// The cursor file of one capture, shared by its forward targets.
pub struct Cursors {
    path: PathBuf,
    doc: Mutex<Doc>,
}

impl Cursors {
    /// Reads `<capture>.forward`, or starts empty when there is none.
    pub fn open(capture: &Path) -> Result<Cursors, String> {
        let path = path_for(capture);
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a forward cursor ({e}); move it away to forward the capture from its start",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Doc::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Cursors {
            path,
            doc: Mutex::new(doc),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `target` resumes and how many batches it has parked, after
    /// checking that its last acknowledged line is still where it was.
    pub fn resume(&self, target: &str, capture: &Path) -> Result<(u64, u64), String> {
        let doc = self.lock();
        let Some(c) = doc.targets.get(target) else {
            return Ok((0, 0));
        };
        let mismatch = |why: String| {
            format!(
                "{} says {target} has the capture {} up to byte {}, but {why}: was the capture replaced? Move {} away to forward it from its start",
                self.path.display(),
                capture.display(),
                c.offset,
                self.path.display()
            )
        };
        let len = std::fs::metadata(capture)
            .map_err(|e| format!("cannot read {}: {e}", capture.display()))?
            .len();
        if c.offset > len {
            return Err(mismatch(format!("the file has only {len} bytes")));
        }
        if let (Some(start), Some(hash)) = (c.last_line, &c.last_hash) {
            let line = read_span(capture, start, c.offset)
                .map_err(|e| format!("cannot read {}: {e}", capture.display()))?;
            let found = (line.last() == Some(&b'\n'))
                .then(|| OutboxLine::parse(&line).ok()?.batch_hash)
                .flatten();
            if found.as_deref() != Some(hash.as_str()) {
                return Err(mismatch(format!(
                    "the line before it is not the batch {hash} it acknowledged last"
                )));
            }
        }
        Ok((c.offset, c.parked.len() as u64))
    }

    /// Records that `target` is done with the line `start..end` and saves
    /// the file.
    pub fn passed(&self, target: &str, start: u64, end: u64, hash: Option<&str>) -> io::Result<()> {
        let mut doc = self.lock();
        let c = doc.targets.entry(target.to_string()).or_default();
        c.offset = end;
        c.last_line = Some(start);
        c.last_hash = hash.map(str::to_owned);
        self.save(&doc)
    }

    /// Moves `target` past a line it need not send (a duplicate, a batch
    /// not acknowledged) without saving: redoing that after a crash costs
    /// nothing. The next `passed` or `flush` saves it.
    pub fn skipped(&self, target: &str, start: u64, end: u64, hash: Option<&str>) {
        let mut doc = self.lock();
        let c = doc.targets.entry(target.to_string()).or_default();
        c.offset = end;
        c.last_line = Some(start);
        c.last_hash = hash.map(str::to_owned);
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
        self.save(&doc)
    }

    /// Records a batch `target` refused for good, moves past it and saves.
    pub fn park(
        &self,
        target: &str,
        start: u64,
        end: u64,
        hash: Option<&str>,
        parked: Parked,
    ) -> io::Result<()> {
        let mut doc = self.lock();
        let c = doc.targets.entry(target.to_string()).or_default();
        c.offset = end;
        c.last_line = Some(start);
        c.last_hash = hash.map(str::to_owned);
        c.parked.push(parked);
        self.save(&doc)
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
        let doc = self.lock();
        if doc.targets.is_empty() {
            return Ok(());
        }
        self.save(&doc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Doc> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a temporary file, syncs it, renames it over the cursor and
    /// syncs the folder: the cursor on disk is always a whole one.
    fn save(&self, doc: &Doc) -> io::Result<()> {
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut text = serde_json::to_vec_pretty(doc).expect("plain struct serializes");
        text.push(b'\n');
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
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
        assert!(err.contains("was the capture replaced?"), "{err}");
        std::fs::write(&capture, "").unwrap();
        assert!(
            again
                .resume("t1", &capture)
                .unwrap_err()
                .contains("only 0 bytes")
        );
        assert!(!dir.path().join("c.jsonl.forward.tmp").exists());
    }
}

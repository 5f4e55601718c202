//! Reading captures back: the tolerant line reader, at open the scan that
//! cuts a torn last line and rebuilds the duplicate index, and the tail
//! that the forwarders follow (the capture is their outbox).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine as _;

use serde::{Deserialize, Serialize};

use super::{DeviceBatch, Index, Recovered, device_batch};

/// One line of the capture as written. Records stay raw JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct CapturedBatch {
    pub received: String,
    pub peer: String,
    pub unit_id: Option<String>,
    pub encoding: String,
    pub wire_bytes: u64,
    pub batch_hash: String,
    pub duplicate_of: Option<String>,
    /// `received` of the first identical batch when none of its copies
    /// had been acknowledged yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Whether a 2xx was sent (lines from before answer modes: always).
    #[serde(default = "acked_by_default")]
    pub acked: bool,
    /// The answer mode in force (absent before answer modes: `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The `content-encoding` header as sent (absent in older captures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// The `user-agent` header as sent (None when none was sent, or in
    /// captures from before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The `content-type` header as sent (as `user_agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The `accept` and `accept-encoding` headers as sent (as `user_agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_encoding: Option<String>,
    /// The wire body in base64, when it differs from `records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
    pub records: Box<serde_json::value::RawValue>,
}

/// What a forwarder needs from one capture line, read tolerantly: fields
/// other writers add are ignored, and fields older captures lack default.
#[derive(Debug, Deserialize)]
pub struct OutboxLine {
    pub received: String,
    #[serde(default)]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub batch_hash: Option<String>,
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// False when the batch was saved but the device was not told so (a
    /// test answer mode); absent means acknowledged.
    #[serde(default)]
    pub acked: Option<bool>,
    #[serde(default)]
    pub content_encoding: Option<String>,
    /// The device's `user-agent`, `content-type`, `accept` and
    /// `accept-encoding` headers: `Some(None)` when it sent none, `None` in
    /// lines from before they were kept.
    #[serde(default, deserialize_with = "present")]
    pub user_agent: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub content_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub accept: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub accept_encoding: Option<Option<String>>,
    #[serde(default)]
    pub wire: Option<String>,
    pub records: Box<serde_json::value::RawValue>,
}

/// A field that is there, null or not (a missing one is `None` by
/// `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl OutboxLine {
    /// Parses one capture line (with or without its newline).
    pub fn parse(line: &[u8]) -> Result<OutboxLine, String> {
        serde_json::from_slice(line).map_err(|e| format!("not a capture line: {e}"))
    }

    /// The body as the device sent it and its `content-encoding` header:
    /// the kept wire bytes, or `records` itself when they were the same.
    /// Lines from before the wire was kept give the records as plain JSON.
    pub fn wire_body(&self) -> Result<(Cow<'_, [u8]>, Option<&str>), String> {
        let body = match &self.wire {
            Some(b64) => Cow::Owned(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("the kept wire body is not base64: {e}"))?,
            ),
            None => Cow::Borrowed(self.records.get().as_bytes()),
        };
        Ok((body, self.content_encoding.as_deref()))
    }

    /// The headers to send with the body, as the device sent them:
    /// `user-agent`, `accept` and `accept-encoding` (none when it sent
    /// none; none for lines from before they were kept) and `content-type`
    /// (`application/json`, what every device sends, for lines from before
    /// it was kept).
    pub fn device_headers(&self) -> [(&'static str, Option<&str>); 4] {
        fn sent(h: &Option<Option<String>>) -> Option<&str> {
            h.as_ref().and_then(|v| v.as_deref())
        }
        [
            ("user-agent", sent(&self.user_agent)),
            (
                "content-type",
                match &self.content_type {
                    Some(sent) => sent.as_deref(),
                    None => Some("application/json"),
                },
            ),
            ("accept", sent(&self.accept)),
            ("accept-encoding", sent(&self.accept_encoding)),
        ]
    }

    /// Whether the device was told this batch was saved.
    pub fn acknowledged(&self) -> bool {
        self.acked != Some(false)
    }
}

/// Follows a capture file from a byte offset, one complete line at a time,
/// never reading past a limit (the synced length): bytes beyond it may
/// still be cut away by the writer, so none of them is ever buffered.
pub struct Tail {
    file: File,
    /// File offset of `buf[0]`.
    buf_at: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already returned.
    used: usize,
}

/// Bytes read from the file at a time.
const TAIL_CHUNK: u64 = 256 * 1024;

impl Tail {
    /// Opens `path` to read from byte `pos` (a line start).
    pub fn open(path: &Path, pos: u64) -> io::Result<Tail> {
        Ok(Tail {
            file: File::open(path)?,
            buf_at: pos,
            buf: Vec::new(),
            used: 0,
        })
    }

    /// Reads `file` (already open) from byte `pos` (a line start).
    pub fn from_file(file: File, pos: u64) -> Tail {
        Tail {
            file,
            buf_at: pos,
            buf: Vec::new(),
            used: 0,
        }
    }

    /// Goes on in the same file from `pos` (a file cut short in place,
    /// where the writer went on), what was read ahead let go.
    pub fn move_to(&mut self, pos: u64) {
        self.buf.clear();
        self.buf_at = pos;
        self.used = 0;
    }

    /// Whether the file read is the one at `path` (not moved or deleted
    /// from it since it was opened, nor replaced there). A look that fails
    /// for another reason than nothing being there (no permission, an I/O
    /// error) is taken as yes, as the writer takes it.
    pub fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(read), Ok(there)) => read.dev() == there.dev() && read.ino() == there.ino(),
            (_, Err(e)) => e.kind() != io::ErrorKind::NotFound,
            (Err(_), Ok(_)) => true,
        }
    }

    /// The length of the file read now, if it can be known.
    pub fn file_len(&self) -> Option<u64> {
        self.file.metadata().ok().map(|m| m.len())
    }

    /// Offset of the next line to be returned.
    pub fn pos(&self) -> u64 {
        self.buf_at + self.used as u64
    }

    /// The next complete line ending within the first `limit` bytes of the
    /// file, newline included, with its start offset; None when there is
    /// none yet.
    pub fn next_line(&mut self, limit: u64, line: &mut Vec<u8>) -> io::Result<Option<u64>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.used..]) {
                let start = self.pos();
                line.clear();
                line.extend_from_slice(&self.buf[self.used..self.used + i + 1]);
                self.used += i + 1;
                return Ok(Some(start));
            }
            self.buf.drain(..self.used);
            self.buf_at += self.used as u64;
            self.used = 0;
            let end = self.buf_at + self.buf.len() as u64;
            if end >= limit {
                return Ok(None);
            }
            let want = (limit - end).min(TAIL_CHUNK) as usize;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            // Positioned read: the handle may be a clone of the writer's (a
            // capture re-created at its path), whose file offset every clone
            // shares; seeking it would race other readers.
            let n = std::os::unix::fs::FileExt::read_at(&self.file, &mut self.buf[old..], end)?;
            self.buf.truncate(old + n);
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

fn acked_by_default() -> bool {
    true
}

/// The fields of a line needed to rebuild the duplicate index.
#[derive(Deserialize)]
struct LineHead {
    received: String,
    #[serde(default)]
    unit_id: Option<String>,
    batch_hash: String,
    #[serde(default = "acked_by_default")]
    acked: bool,
}

/// Cuts a torn last line, and a last line whose records are not a batch,
/// and indexes the batch hashes already captured.
///
/// A line is written while its records are still being checked, and cut
/// off again when they fail (`CaptureHandle::save_checking`); only ever
/// the last line, alone. A crash between the two leaves it complete at
/// the end: it was never acknowledged or passed on, so it goes.
pub(super) fn repair_and_index(file: &mut File, seen: &mut Index) -> io::Result<Recovered> {
    let mut recovered = Recovered::default();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut line = Vec::new();
    // The last complete line, indexed only once another follows it or its
    // records passed.
    let mut last = Vec::new();
    let mut last_head = None;
    let mut complete_len = 0u64;
    let mut torn_ours = false;
    // Whether the file holds anything but whitespace, and a complete line
    // that is a capture line or starts as the writer's do (a line being
    // checked holds a body that may not be JSON, so it may not parse).
    let mut anything = false;
    let mut ours = false;
    let index = |seen: &mut Index, head: Option<(DeviceBatch, String, bool)>| {
        if let Some((key, received, acked)) = head {
            seen.note(key, &received, acked);
        }
    };
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            torn_ours = starts_ours(&line);
            recovered.torn_bytes = n as u64;
            break;
        }
        complete_len += n as u64;
        anything |= !line.iter().all(u8::is_ascii_whitespace);
        ours |= line.starts_with(OURS);
        recovered.lines += 1;
        index(seen, last_head.take());
        let head = serde_json::from_slice::<LineHead>(&line)
            .ok()
            .and_then(|h| {
                let hash = blake3::Hash::from_hex(&h.batch_hash).ok()?;
                Some((
                    device_batch(h.unit_id.as_deref(), hash.as_bytes()),
                    h.received,
                    h.acked,
                ))
            });
        if head.is_none() {
            recovered.unreadable += 1;
        } else {
            // Written by another program, or in another key order.
            ours = true;
        }
        last_head = head;
        std::mem::swap(&mut line, &mut last);
    }
    drop(reader);
    let foreign_tail = recovered.torn_bytes > 0 && !torn_ours;
    if !ours && (anything || foreign_tail) && !torn_ours {
        // Not one line of ours: the wrong file (a typo, a completion), and
        // its last line is not ours to cut.
        let hint = if crate::input::gzipped(file) {
            // A capture gzipped to keep, given to go on with it.
            "; it is gzip-compressed: the receiver appends to a capture as written, so unpack \
             one to go on with it (gunzip -k); view --summary, export and replay read it as it is"
        } else {
            ""
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it holds {} bytes and not one capture line, so it is not a capture (nothing \
                 was changed): give --capture a new file or the capture you meant{hint}",
                complete_len + recovered.torn_bytes
            ),
        ));
    }
    if foreign_tail {
        // A last line without its line end that the receiver did not
        // write (added by hand): ended, so the next line is a line of its
        // own, and kept, unread, as lines that are not ours are.
        recovered.ended_bytes = std::mem::take(&mut recovered.torn_bytes);
        recovered.lines += 1;
        recovered.unreadable += 1;
        if !last.starts_with(OURS) || records_are_a_batch(&last) {
            index(seen, last_head.take());
        }
        file.write_all(b"\n")?;
        file.sync_all()?;
        file.seek(SeekFrom::End(0))?;
        return Ok(recovered);
    }
    let mut keep = complete_len;
    // Only a line of ours (the writer's lines start with their time
    // received); a line put there by anything else stays, as unreadable.
    if recovered.lines > 0 && last.starts_with(OURS) && !records_are_a_batch(&last) {
        keep -= last.len() as u64;
        recovered.lines -= 1;
        recovered.unchecked_bytes = last.len() as u64;
        if last_head.take().is_none() {
            recovered.unreadable -= 1;
        }
    }
    index(seen, last_head);
    if keep < complete_len + recovered.torn_bytes {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(recovered)
}

/// What every line the writer writes starts with.
const OURS: &[u8] = b"{\"received\":\"";

/// Whether `line`, read back and found no capture line, was still one a
/// receiver wrote (damaged, or in another key order): the rule by which
/// the receiver takes a file as a capture, for the readers to share.
pub(crate) fn written_as_a_capture(line: &[u8]) -> bool {
    line.starts_with(OURS)
        || serde_json::from_slice::<LineHead>(line)
            .is_ok_and(|h| blake3::Hash::from_hex(&h.batch_hash).is_ok())
}

/// Whether `line` (perhaps cut short anywhere) may be one the writer
/// wrote: it starts as they do, or is the start of that start, or is
/// NUL bytes only (what some file systems show of a write a power loss
/// cut, the length saved and the data not).
pub(crate) fn starts_ours(line: &[u8]) -> bool {
    line.starts_with(OURS) || OURS.starts_with(line) || line.iter().all(|&b| b == 0)
}

/// Whether a capture line's records are what the receiver accepts: the
/// same rule (`batch::scan`), its counts unused.
fn records_are_a_batch(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Records<'a> {
        #[serde(borrow)]
        records: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Records>(line)
        .is_ok_and(|line| crate::batch::scan(line.records.get()).is_ok())
}

/// Reads a capture file line by line; a line that is not a capture line
/// (such as a torn last line not yet repaired) is an error item.
pub fn read(path: &Path) -> io::Result<impl Iterator<Item = Result<CapturedBatch, String>>> {
    let reader = BufReader::new(File::open(path)?);
    let mut lines = reader.split(b'\n').enumerate();
    Ok(std::iter::from_fn(move || {
        let (i, line) = lines.next()?;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(format!("line {}: {e}", i + 1))),
        };
        Some(
            serde_json::from_slice::<CapturedBatch>(&line)
                .map_err(|e| format!("line {}: {e}", i + 1)),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_returns_whole_lines_and_never_reads_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\ntwo\nthr").unwrap();
        let mut tail = Tail::open(&path, 0).unwrap();
        let mut line = Vec::new();
        // Only "one\n" is synced: "two\n" is on disk but may still be cut.
        assert_eq!(tail.next_line(4, &mut line).unwrap(), Some(0));
        assert_eq!(line, b"one\n");
        assert_eq!(tail.next_line(4, &mut line).unwrap(), None);
        // The writer cut the unsynced group and wrote another in its place.
        f.set_len(4).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"TWO\nthree\n").unwrap();
        assert_eq!(tail.next_line(14, &mut line).unwrap(), Some(4));
        assert_eq!(line, b"TWO\n");
        assert_eq!(tail.next_line(14, &mut line).unwrap(), Some(8));
        assert_eq!(line, b"three\n");
        assert_eq!(tail.pos(), 14);
    }

    #[test]
    fn outbox_lines_give_the_wire_body_and_read_unknown_fields() {
        let gz = base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 1, 2]);
        let text = format!(
            r#"{{"received":"t","unit_id":"u","acked":false,"mode":"500","retry_of":null,"content_encoding":"gzip","wire":"{gz}","records":[{{"@t":"a"}}]}}"#
        );
        let line = OutboxLine::parse(text.as_bytes()).unwrap();
        assert!(!line.acknowledged());
        let (body, encoding) = line.wire_body().unwrap();
        assert_eq!((&*body, encoding), (&[0x1f, 0x8b, 1, 2][..], Some("gzip")));
        let plain = OutboxLine::parse(br#"{"received":"t","records":[ {"@t":"a"} ]}"#).unwrap();
        assert!(plain.acknowledged());
        assert_eq!(
            plain.wire_body().unwrap(),
            (Cow::Borrowed(&br#"[ {"@t":"a"} ]"#[..]), None)
        );
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::OutboxLine;

    #[test]
    fn device_headers_as_captured_and_for_lines_from_before_they_were_kept() {
        let line = |extra: &str| {
            OutboxLine::parse(
                format!(r#"{{"received":"t","unit_id":null,{extra}"records":[]}}"#).as_bytes(),
            )
            .unwrap()
            .device_headers()
            .map(|(_, v)| v.map(str::to_owned))
        };
        let kept = line(
            r#""user_agent":"python-requests/2.27.1","content_type":"text/x","accept":"*/*","accept_encoding":"gzip, deflate","#,
        );
        assert_eq!(
            kept,
            [
                Some("python-requests/2.27.1".into()),
                Some("text/x".into()),
                Some("*/*".into()),
                Some("gzip, deflate".into())
            ]
        );
        // The device sent none.
        assert_eq!(
            line(r#""user_agent":null,"content_type":null,"accept":null,"accept_encoding":null,"#),
            [None, None, None, None]
        );
        // Written before they were kept: what every device sends as type.
        assert_eq!(
            line(""),
            [None, Some("application/json".into()), None, None]
        );
    }
}

//! The capture file: JSON Lines, one line per accepted batch, the record of
//! truth. Lines are committed in groups: a committer writes every pending
//! line, calls `fdatasync` once, then answers every waiter, so concurrent
//! uploads share the cost of durability. The committer is the worker
//! saving a batch when nobody else is committing (no hand-off for a lone
//! upload), else the writer thread, which takes over whatever is queued.

use crate::panic::lock;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::Serialize;

use super::cache::CacheRelease;
use super::reader::repair_and_index;
use super::{DeviceBatch, device_batch};
use crate::batch::Batch;

/// Most bytes written in one group before the `fdatasync`.
const GROUP_BYTES: usize = 16 * 1024 * 1024;

/// Where the bytes go. The file is the real one; tests swap in failing sinks
/// to check that the writer recovers.
pub trait Sink: Send + 'static {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the sink back to `len` bytes after a failed group, so no half
    /// line stays in front of later ones.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes sure the sink is still what its path names (a capture file
    /// deleted or replaced while running would take lines nobody can
    /// read), at least `len` bytes long as the writer left it (a file cut
    /// short in place, `: > capture` or logrotate's `copytruncate`, lost
    /// them). When it is not, goes on in what the path names, from its
    /// end, and says so.
    fn ensure_at_path(&mut self, _len: u64) -> io::Result<Option<Switched>> {
        Ok(None)
    }
    /// Cuts the file the path named before the last switch back to `len`
    /// bytes, synced: what was written there just before the switch is
    /// written again in the new file, and must not stay in both (a view
    /// of the two counted a duplicate the device never sent).
    fn cut_left(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// After a write of `len` bytes that the writer expected at `at`: the
    /// file it went to if it landed elsewhere (the file was cut short, or
    /// written to, between the look at the path and the write); None when
    /// it landed there or where cannot be told.
    fn landed(&mut self, _len: u64, _at: u64) -> Option<Switched> {
        None
    }
    /// Whether a line written can be taken back (`truncate` really cuts):
    /// only then is a line written before its records are checked.
    fn retractable(&self) -> bool {
        false
    }
    /// Everything before `len` is written and synced, and answered for:
    /// a file may let its cached pages go.
    fn synced_to(&mut self, _len: u64) {}
}

/// A new file started at the capture path.
pub struct Switched {
    /// What the operator is told.
    pub message: String,
    /// Its length when taken over: the writer appends from there.
    pub len: u64,
    /// A handle to read it with (None for sinks that are not files, and
    /// for the same file cut short: a reader goes on with its own).
    pub file: Option<File>,
    /// The same file, cut short in place to this many bytes: its lines
    /// end there (what was after is gone), and the writer goes on at `len`.
    pub cut_at: Option<u64>,
    /// What became of the file: the dashboard's header and the status
    /// page show it for the rest of the run.
    pub what: Taken,
}

/// Groups failing to be saved: since when, the last one when, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    pub since: jiff::Timestamp,
    pub last: jiff::Timestamp,
    pub why: String,
}

/// What became of the file at the capture path while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    DeletedOrMoved,
    Replaced,
    /// The same file, cut short in place (`: >`, `truncate`, logrotate's
    /// `copytruncate`).
    CutShort,
}

impl Taken {
    /// In a word or two, loud: the dashboard's header shows it.
    pub fn label(self) -> &'static str {
        match self {
            Taken::DeletedOrMoved => "DELETED OR MOVED",
            Taken::Replaced => "REPLACED",
            Taken::CutShort => "CUT SHORT",
        }
    }

    /// Where the writer goes on.
    pub fn then(self) -> &'static str {
        match self {
            Taken::DeletedOrMoved => "a new file was started at the path",
            Taken::Replaced => "the file now at the path is written on at its end",
            Taken::CutShort => "it is written on at its new end",
        }
    }
}

/// Gives the last line of `file`, `len` bytes long, its line end if it has
/// none (as a start's repair does), so that the next line is not glued to
/// it (both were unreadable); the length then.
fn end_last_line(file: &File, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    if len == 0 {
        return Ok(0);
    }
    file.read_exact_at(&mut last, len - 1)?;
    if last == *b"\n" {
        return Ok(len);
    }
    let mut file = file;
    file.write_all(b"\n")?;
    file.sync_data()?;
    Ok(file.metadata()?.len())
}

/// A capture file opened for appending.
pub struct FileSink {
    file: File,
    /// False for devices such as `/dev/full`, which cannot be truncated.
    regular: bool,
    path: PathBuf,
    /// Device and inode of the open file, to tell it from whatever the
    /// path names now.
    identity: (u64, u64),
    /// Lets the synced past's cached pages go (None for devices).
    cache: Option<CacheRelease>,
    /// The file the path named before the last switch, until the writer
    /// has cut what it wrote there last (`cut_left`).
    left: Option<File>,
}

/// Device and inode of a file.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl Sink for FileSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // The file left at a switch is needed only to cut what was written
        // there before the switch, which comes before any write here; a
        // switch before this write had nothing there to cut. Let go now,
        // not at the next look: a deleted capture kept its blocks, and a
        // full disk stayed full, until another upload came (a review).
        self.left = None;
        self.file.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.regular {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.regular {
            // Never longer: a file cut short meanwhile (see
            // `ensure_at_path`) would grow a run of NUL bytes to `len`,
            // and the next line would be glued to it.
            if self.file.metadata()?.len() < len {
                return Err(io::Error::other(
                    "the capture file was cut short while a line was taken back",
                ));
            }
            if let Some(cache) = &mut self.cache {
                cache.cut(len);
            }
            self.file.set_len(len)?;
            self.file.seek(SeekFrom::End(0))?;
        }
        Ok(())
    }
    fn retractable(&self) -> bool {
        self.regular
    }
    fn cut_left(&mut self, len: u64) -> io::Result<()> {
        let Some(left) = self.left.take() else {
            return Ok(());
        };
        // Never longer (see `truncate`).
        if left.metadata()?.len() < len {
            return Ok(());
        }
        left.set_len(len)?;
        left.sync_data()
    }
    fn synced_to(&mut self, len: u64) {
        if let Some(cache) = &mut self.cache {
            cache.synced_to(len);
        }
    }

    fn ensure_at_path(&mut self, len: u64) -> io::Result<Option<Switched>> {
        self.left = None;
        if !self.regular {
            return Ok(None);
        }
        let (said, what) = match std::fs::metadata(&self.path) {
            Ok(meta) if identity(&meta) == self.identity && meta.len() >= len => return Ok(None),
            Ok(meta) if identity(&meta) == self.identity => return self.cut_short(len, meta.len()),
            Ok(meta) if !meta.is_file() => return Err(not_a_file(&self.path)),
            Ok(_) => ("was replaced by another file", Taken::Replaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ("was deleted or moved away", Taken::DeletedOrMoved)
            }
            Err(e) => return Err(e),
        };
        // Its folder moved away too (`mv captures old`): made again, as at
        // start, rather than every upload answered 503 until someone
        // makes it (a hostile-client probe, December 7).
        // A failed sync of where it is listed refuses nothing: the next
        // group would find the folder there and never sync it again.
        let made_folder = make_folder_again(&self.path)?
            .inspect(|dir| sync_parent(dir))
            .is_some();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        if !file.metadata()?.is_file() {
            return Err(not_a_file(&self.path));
        }
        // Another autopi-rx may hold what replaced it.
        file.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the new file at the capture path is in use by another autopi-rx (locked)",
            )
        })?;
        // Its length once locked (one that held it may have written until
        // it let go), its last line ended (a file put there by hand).
        let meta = file.metadata()?;
        let len = end_last_line(&file, meta.len())?;
        sync_parent(&self.path);
        let reader = file.try_clone().ok();
        if let Some(cache) = &mut self.cache
            && cache.moved_to(&file).is_err()
        {
            self.cache = None;
        }
        self.left = Some(std::mem::replace(&mut self.file, file));
        self.identity = identity(&meta);
        let message = format!(
            "capture file {} {said} while running: writing to a new file at that path from now on{} \
             (batches acknowledged before are in the old file only if it was moved, not deleted)",
            crate::text::path(&self.path),
            if made_folder {
                ", in its folder made again"
            } else {
                ""
            }
        );
        Ok(Some(Switched {
            message,
            len,
            file: reader,
            cut_at: None,
            what,
        }))
    }

    fn landed(&mut self, len: u64, at: u64) -> Option<Switched> {
        // Appending, the file's offset is where the write ended.
        let end = self.file.stream_position().ok()?;
        let landed = end.checked_sub(len)?;
        if !self.regular || landed == at {
            return None;
        }
        let message = format!(
            "capture file {} changed under the receiver while running, {at} bytes long where \
             {landed} were found (cut short, or \
             written to by another program): writing on at its end",
            crate::text::path(&self.path)
        );
        Some(Switched {
            message,
            len: landed,
            file: None,
            cut_at: Some(landed),
            what: Taken::CutShort,
        })
    }
}

impl FileSink {
    /// The open file was cut short in place, from `was` to `now` bytes: the
    /// writer goes on at its end. A last line left without its line end is
    /// given one first (as for a file put at the path), so that the next
    /// line is not glued to it.
    fn cut_short(&mut self, was: u64, now: u64) -> io::Result<Option<Switched>> {
        let len = end_last_line(&self.file, now)?;
        if let Some(cache) = &mut self.cache {
            cache.cut(len);
        }
        let message = format!(
            "capture file {} was cut short while running, from {was} to {now} bytes (`: >`, \
             `truncate`, logrotate's copytruncate?): writing on at its end; the batches acknowledged \
             in the bytes cut away are gone from it, and forward targets that had not sent them \
             yet never will",
            crate::text::path(&self.path)
        );
        Ok(Some(Switched {
            message,
            len,
            file: None,
            cut_at: Some(now),
            what: Taken::CutShort,
        }))
    }
}

/// The capture path replaced by what is not a file (a pipe, a device, a
/// folder): nothing is written there, so nothing is acknowledged, until a
/// file (or nothing) is at the path again. A pipe nobody reads held every
/// upload unanswered once full; `/dev/null` acknowledged lines it threw
/// away.
fn not_a_file(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the capture path {} no longer names a file (it was replaced by a pipe, a device or \
             a folder): nothing is saved until a file, or nothing, is there again",
            crate::text::path(&path)
        ),
    )
}

/// What a capture file held when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Complete lines already in the file.
    pub lines: usize,
    /// Lines that are complete but not valid capture lines (skipped).
    pub unreadable: usize,
    /// Bytes of an unterminated last line that were cut off. Such a line was
    /// never acknowledged: the answer is sent only after the full line and
    /// its newline are synced.
    pub torn_bytes: u64,
    /// Bytes of a complete last line whose records are not a batch, cut
    /// off: written while its records were checked, and not yet cut off
    /// again when the receiver stopped. Never acknowledged either.
    pub unchecked_bytes: u64,
    /// Bytes of an unterminated last line the writer did not write (added
    /// by hand): given its line end and kept, as an unreadable line.
    pub ended_bytes: u64,
}

/// Facts about one request that go on its capture line.
pub struct Entry {
    pub received: String,
    pub peer: String,
    pub unit_id: Option<String>,
    /// The `user-agent`, `content-type`, `accept` and `accept-encoding`
    /// headers as the device sent them (None when it sent none): a forward
    /// sends them again.
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub accept_encoding: Option<String>,
    pub wire_bytes: u64,
    /// Whether a 2xx is sent for it (decided before saving).
    pub acked: bool,
    /// The answer mode in force (`ok`, `500`, `late:15`, ...).
    pub mode: String,
}

/// The writer's answer once a line is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// `received` of the earlier identical batch that was acknowledged.
    pub duplicate_of: Option<String>,
    /// `received` of the first identical batch, when none was
    /// acknowledged yet: a retry after a refusal or no answer.
    pub retry_of: Option<String>,
}

/// What the index knows of one batch (per device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// `received` of its first copy.
    pub first: String,
    /// `received` of its first acknowledged copy.
    pub acked: Option<String>,
}

impl Seen {
    /// A copy arriving at `received` (acknowledged or not) is known now.
    pub fn note(&mut self, received: &str, acked: bool) {
        if acked && self.acked.is_none() {
            self.acked = Some(received.to_string());
        }
    }

    /// How a new identical copy relates to what was seen: a duplicate of
    /// the acknowledged one, else a retry of the first one.
    pub fn relate(&self) -> (Option<String>, Option<String>) {
        match &self.acked {
            Some(acked) => (Some(acked.clone()), None),
            None => (None, Some(self.first.clone())),
        }
    }
}

/// The duplicate index: what is known of each batch, by device. Both
/// times of an entry are kept as milliseconds where the text is what
/// `format_received` writes for them (every line the receiver writes),
/// and given back as that text: 48 bytes an entry in the table, where two
/// strings took 80 and 64 more on the heap (100 000 distinct uploads took
/// the headless receiver from 9.6 to 27.9 MB before, December 6). A time
/// written otherwise (a line edited by hand, another program's) is kept
/// as text, so that `duplicate_of` and `retry_of` quote it as it was.
///
/// It holds `INDEX_AT_MOST` batches at most: past them, the half first
/// seen longest ago is forgotten (`forgotten` counts them), and a copy of
/// one of those is taken as a new batch from then on. A client with the
/// token posting distinct tiny batches as fast as they were answered grew
/// it without end: 1.9 million in 3 minutes took the headless receiver to
/// 312 MB at the peak (a hostile-client probe, December 7).
#[derive(Debug)]
pub struct Index {
    packed: HashMap<DeviceBatch, Packed>,
    text: HashMap<DeviceBatch, Seen>,
    at_most: usize,
    /// Batches forgotten so far, and whether some were since the last
    /// `newly_forgotten`.
    forgotten: u64,
    forgot: bool,
}

/// Batches the duplicate index holds at most: what a table of 2^19
/// buckets holds (hashbrown fills seven eighths of them), about 26 MB of
/// table, so it is never grown past that.
pub const INDEX_AT_MOST: usize = (1 << 19) / 8 * 7;

impl Default for Index {
    fn default() -> Self {
        Index::holding_at_most(INDEX_AT_MOST)
    }
}

/// An entry of the index with both times in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Packed {
    first: i64,
    /// `NOT_ACKED` when no copy was acknowledged.
    acked: i64,
}

/// `Packed::acked` for a batch no copy of which was acknowledged: no
/// millisecond `format_received` gives back (jiff's timestamps start
/// after it).
const NOT_ACKED: i64 = i64::MIN;

/// `received` as milliseconds, when `format_received` gives it back
/// exactly.
fn pack(received: &str) -> Option<i64> {
    let t: jiff::Timestamp = received.parse().ok()?;
    (crate::time::format_received(t) == received).then(|| t.as_millisecond())
}

/// The text `pack` took `ms` from.
fn unpack(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), crate::time::format_received)
}

impl Index {
    /// An index of `at_most` batches at most (at least 2).
    pub fn holding_at_most(at_most: usize) -> Index {
        Index {
            packed: HashMap::new(),
            text: HashMap::new(),
            at_most: at_most.max(2),
            forgotten: 0,
            forgot: false,
        }
    }

    /// Batches held.
    fn len(&self) -> usize {
        self.packed.len() + self.text.len()
    }

    /// What the operator hears when batches were forgotten since the
    /// last call.
    fn newly_forgotten(&mut self) -> Option<String> {
        std::mem::replace(&mut self.forgot, false).then(|| {
            format!(
                "the duplicate index holds {} batches at most: {} first seen longest ago are \
                 forgotten so far, and a copy of one of them is taken as a new batch (not \
                 flagged as a duplicate); every batch is still captured",
                self.at_most, self.forgotten
            )
        })
    }

    /// Makes room for a batch: forgets the older half by first arrival
    /// (and every one whose time was not written the receiver's way,
    /// which cannot be placed in time).
    fn make_room(&mut self) {
        let mut firsts: Vec<i64> = self.packed.values().map(|p| p.first).collect();
        let before = self.len();
        if firsts.is_empty() {
            self.text.clear();
        } else {
            // Ties with the cut go too (a millisecond apart, or the
            // same): a little more than half at worst. A clock set back
            // makes the newest look oldest; they are forgotten first.
            let middle = (firsts.len() / 2).saturating_sub(1);
            let cut = *firsts.select_nth_unstable(middle).1;
            // Into a table of its own: one emptied in place keeps a
            // tombstone for each entry gone, and refilled, it grew to
            // twice the size (2^20 buckets, about 51 MB) rather than
            // cleaning them up.
            let mut kept = HashMap::with_capacity(self.at_most);
            kept.extend(self.packed.drain().filter(|(_, p)| p.first > cut));
            self.packed = kept;
            self.text.clear();
        }
        self.forgotten += (before - self.len()) as u64;
        self.forgot = true;
    }

    /// What is known of `key`'s batch.
    pub fn get(&self, key: &DeviceBatch) -> Option<Seen> {
        if let Some(p) = self.packed.get(key) {
            return Some(Seen {
                first: unpack(p.first),
                acked: (p.acked != NOT_ACKED).then(|| unpack(p.acked)),
            });
        }
        self.text.get(key).cloned()
    }

    /// Knows `seen` of `key`'s batch from now on.
    pub fn insert(&mut self, key: DeviceBatch, seen: Seen) {
        if self.len() >= self.at_most
            && !self.packed.contains_key(&key)
            && !self.text.contains_key(&key)
        {
            self.make_room();
        }
        let acked = match &seen.acked {
            None => Some(NOT_ACKED),
            Some(a) => pack(a),
        };
        match (pack(&seen.first), acked) {
            (Some(first), Some(acked)) => {
                self.packed.insert(key, Packed { first, acked });
                self.text.remove(&key);
            }
            _ => {
                self.text.insert(key, seen);
                self.packed.remove(&key);
            }
        }
    }

    /// A copy of `key`'s batch received at `received` (acknowledged or
    /// not) is known now.
    pub fn note(&mut self, key: DeviceBatch, received: &str, acked: bool) {
        match self.get(&key) {
            None => {
                let mut seen = Seen {
                    first: received.to_string(),
                    acked: None,
                };
                seen.note(received, acked);
                self.insert(key, seen);
            }
            Some(mut seen) if acked && seen.acked.is_none() => {
                seen.note(received, acked);
                self.insert(key, seen);
            }
            Some(_) => {}
        }
    }
}

struct Job {
    /// The line up to and including `"batch_hash":"…"`.
    head: Vec<u8>,
    /// The duplicate index's key (content hash and device).
    key: DeviceBatch,
    received: String,
    acked: bool,
    /// `,"acked":…,"mode":…` for the line.
    tail: Vec<u8>,
    records: Arc<[u8]>,
    reply: Sender<io::Result<Saved>>,
    /// Whether the records are a batch, for a line queued before its
    /// records were checked (None: checked before, or heard). A sender
    /// dropped without a word counts as no.
    verdict: Option<Receiver<bool>>,
    /// The verdict heard was no: the line is never written.
    refused: bool,
}

impl Job {
    /// Whether the verdict is in (or none is awaited); heard now if it
    /// just came.
    fn settled(&mut self) -> bool {
        let Some(verdict) = &self.verdict else {
            return true;
        };
        match verdict.try_recv() {
            Ok(passed) => self.refused = !passed,
            Err(crossbeam_channel::TryRecvError::Disconnected) => self.refused = true,
            Err(crossbeam_channel::TryRecvError::Empty) => return false,
        }
        self.verdict = None;
        true
    }

    /// Whether this job, alone in its group, is written before its check
    /// ends: only when a line can be cut off again, its check is still
    /// running, and its records hold no newline (never valid JSON on one
    /// line: they would be written as several lines, and the repair at
    /// start looks at the last one only).
    fn written_unchecked(&self, retractable: bool) -> bool {
        retractable
            && self.verdict.as_ref().is_some_and(Receiver::is_empty)
            && memchr::memchr(b'\n', &self.records).is_none()
    }
}

/// Handle to the writer; cheap to clone for every worker.
pub struct CaptureHandle {
    shared: Arc<Shared>,
}

impl Clone for CaptureHandle {
    fn clone(&self) -> CaptureHandle {
        self.shared.handles.fetch_add(1, Ordering::SeqCst);
        CaptureHandle {
            shared: self.shared.clone(),
        }
    }
}

/// The last handle gone, the writer thread writes what is queued and ends.
impl Drop for CaptureHandle {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            lock(&self.shared.queue).closed = true;
            self.shared.more.notify_all();
        }
    }
}

/// What the handles and the writer thread share. Whoever holds `writer`
/// commits: the writer thread, or a worker in `save` that found it free
/// (two hand-offs fewer for an upload that does not meet another). A
/// committer that lets go of `writer` with jobs still queued wakes the
/// writer thread, so no job waits for a committer that is not coming.
struct Shared {
    writer: Mutex<Committer>,
    queue: Mutex<Queue>,
    /// Signalled when jobs are queued for the writer thread, or closed.
    more: Condvar,
    /// Live handles: the writer thread ends after the last.
    handles: AtomicU64,
}

struct Committer {
    writer: Writer<Box<dyn Sink>>,
    buf: Vec<u8>,
}

impl Committer {
    fn commit(&mut self, group: Vec<Job>) {
        self.writer.commit(group, &mut self.buf);
    }
}

#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    closed: bool,
}

impl Sink for Box<dyn Sink> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (**self).write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        (**self).truncate(len)
    }
    fn ensure_at_path(&mut self, len: u64) -> io::Result<Option<Switched>> {
        (**self).ensure_at_path(len)
    }
    fn landed(&mut self, len: u64, at: u64) -> Option<Switched> {
        (**self).landed(len, at)
    }
    fn retractable(&self) -> bool {
        (**self).retractable()
    }
    fn cut_left(&mut self, len: u64) -> io::Result<()> {
        (**self).cut_left(len)
    }
    fn synced_to(&mut self, len: u64) {
        (**self).synced_to(len)
    }
}

impl Shared {
    /// The next group, oldest first: the queued jobs whose records are
    /// known to be a batch (or not), up to `GROUP_BYTES` and up to the
    /// first one whose check is still running. Lines that are ready are
    /// not held back by a check behind them: their answers go out while
    /// it runs, and their connections send again. When the oldest job's
    /// check is still running, it is the group alone (its line is then
    /// written while the check ends).
    fn take_group(&self) -> Vec<Job> {
        let mut queue = lock(&self.queue);
        let mut group = Vec::new();
        let mut bytes = 0;
        while bytes < GROUP_BYTES {
            let Some(job) = queue.jobs.front_mut() else {
                break;
            };
            if !job.settled() && !group.is_empty() {
                break;
            }
            let job = queue.jobs.pop_front().expect("a front job");
            bytes += job.head.len() + job.records.len();
            let alone = job.verdict.is_some();
            group.push(job);
            if alone {
                break;
            }
        }
        group
    }

    /// Commits the queued jobs, group by group, while holding `committer`.
    fn commit_queued(&self, committer: &mut Committer) {
        loop {
            let group = self.take_group();
            if group.is_empty() {
                return;
            }
            committer.commit(group);
        }
    }

    /// Commits now if nobody else is (the caller's own job among the
    /// queued ones), then hands what arrived meanwhile to the writer
    /// thread. When someone else is committing, they see the job.
    fn commit_if_free(&self) {
        let mut committer = match self.writer.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let group = self.take_group();
        if !group.is_empty() {
            committer.commit(group);
        }
        drop(committer);
        if !lock(&self.queue).jobs.is_empty() {
            self.more.notify_one();
        }
    }

    /// The writer thread: commits whatever is queued and not taken by a
    /// worker, until the last handle is gone and the queue is empty.
    fn run(&self) {
        loop {
            {
                let mut queue = lock(&self.queue);
                while queue.jobs.is_empty() && !queue.closed {
                    queue = self.more.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.jobs.is_empty() {
                    return;
                }
            }
            self.commit_queued(&mut lock(&self.writer));
        }
    }
}

/// How far the capture file is complete and synced: every line before this
/// length was acknowledged (or is about to be). Readers that act on lines
/// (the forwarders) read no further, so they never pass on a line that a
/// failed write is about to cut away. It also counts those lines.
///
/// When the capture path is deleted or replaced while running, the writer
/// goes on in a new file at the path: the files are numbered from 0 (the
/// one opened at start), and for each earlier file this keeps where its
/// synced lines end, so a reader finishes a file and then goes on where
/// the writer started the next. It keeps a handle to read each file after
/// the first for as long as a registered reader (`Durable::reader`) has not
/// moved there yet, so that one finds it even when it was deleted since,
/// and no longer: a deleted capture's space is the disk's again, and its
/// descriptor is closed, once no reader needs it. (Until December 6 every
/// file's handle was kept until exit, even with no reader at all: a
/// capture deleted to free a full disk kept the disk full and every upload
/// answered 503, and each rotation of the file held one more descriptor.)
#[derive(Clone, Debug)]
pub struct Durable {
    state: Arc<(Mutex<Files>, Condvar)>,
    lines: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Files {
    /// Synced length of the current file (the last).
    len: u64,
    /// Every file the writer wrote to, by number, the current one last.
    files: Vec<Written>,
    /// What became of the file at the path last, and when (see
    /// `Switched::what`).
    taken: Option<(jiff::Timestamp, Taken)>,
    /// Since when groups fail to be saved, when the last failed and why;
    /// None once one is saved.
    failing: Option<Failing>,
    /// The file each registered reader reads now, by its number.
    readers: HashMap<u64, usize>,
    next_reader: u64,
}

/// One file the writer wrote to: a file at the capture path, or the one
/// before it cut short in place.
#[derive(Debug, Default)]
struct Written {
    /// Where the writer started in it.
    start: u64,
    /// Once the writer left it, where it left it.
    left: Option<Left>,
    /// The file before it, cut short in place, and not another file.
    same_as_before: bool,
    /// A handle to read it with, while a reader may still need it.
    handle: Option<Arc<File>>,
}

#[derive(Clone, Copy, Debug)]
struct Left {
    /// Where its synced lines end.
    end: u64,
    /// The lines counted up to there (all files so far), those a cut took
    /// away included.
    lines_through: u64,
}

impl Files {
    /// The number of the file the writer writes to now.
    fn current(&self) -> usize {
        self.files.len() - 1
    }

    /// Says which file a registered reader reads now (None: it is gone),
    /// then lets go of the handles no reader needs: a reader of file `n`
    /// opens the files after it by their handles, never `n` itself or
    /// earlier.
    fn reads(&mut self, reader: u64, n: Option<usize>) {
        match n {
            Some(n) => self.readers.insert(reader, n),
            None => self.readers.remove(&reader),
        };
        self.prune();
    }

    fn prune(&mut self) {
        let first = self.readers.values().min().copied();
        for (n, file) in self.files.iter_mut().enumerate() {
            if first.is_none_or(|first| n <= first) {
                file.handle = None;
            }
        }
    }
}

/// A reader of the capture that goes on into newer files as the writer
/// moves to them (a forwarder): the handles of the files it has not moved
/// to yet are kept for it. Dropped, it needs none.
#[derive(Debug)]
pub struct Reader {
    durable: Durable,
    id: u64,
}

impl Reader {
    /// It reads file `n` now.
    pub fn moved_to(&self, n: usize) {
        self.durable.lock().reads(self.id, Some(n));
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.durable.lock().reads(self.id, None);
    }
}

/// Where a reader of file `n` may read to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Synced bytes of that file: read no further.
    pub limit: u64,
    /// When a newer file is written to, where the writer started in it:
    /// go on there once `limit` is reached.
    pub next: Option<u64>,
}

impl Durable {
    fn new(len: u64, lines: u64) -> Durable {
        Durable {
            state: Arc::new((
                Mutex::new(Files {
                    len,
                    files: vec![Written::default()],
                    taken: None,
                    failing: None,
                    readers: HashMap::new(),
                    next_reader: 0,
                }),
                Condvar::new(),
            )),
            lines: Arc::new(AtomicU64::new(lines)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        lock(&self.state.0)
    }

    /// Bytes known complete and synced in the current file.
    pub fn synced(&self) -> u64 {
        self.lock().len
    }

    /// The number of the file the writer writes to now.
    pub fn current(&self) -> usize {
        self.lock().current()
    }

    /// How far file `n` may be read, and where to go on after it.
    pub fn bound(&self, n: usize) -> Bound {
        let files = self.lock();
        match files.files[n.min(files.current())].left {
            Some(left) => Bound {
                limit: left.end,
                next: Some(files.files[n + 1].start),
            },
            None => Bound {
                limit: files.len,
                next: None,
            },
        }
    }

    /// Whether file `n` is the one before it, cut short in place: a reader
    /// goes on in it with the handle it has (each cut took a descriptor
    /// of its own until December 6, kept while a forwarder was behind: a
    /// hostile-client probe's cuts held 912 of them, and out of
    /// descriptors the forwarder could not move on).
    pub fn same_file(&self, n: usize) -> bool {
        self.lock().files.get(n).is_some_and(|f| f.same_as_before)
    }

    /// A group could not be saved (its uploads are answered 503): since
    /// when saving fails, and why, until one is saved.
    fn failed(&self, why: String) {
        let mut guard = self.lock();
        let last = jiff::Timestamp::now();
        let since = guard.failing.take().map_or(last, |f| f.since);
        guard.failing = Some(Failing { since, last, why });
    }

    /// Since when saving fails, when it last did and why (the status page
    /// says it); None while batches are saved.
    pub fn failing(&self) -> Option<Failing> {
        self.lock().failing.clone()
    }

    /// What became of the file at the capture path last while running,
    /// and when (deleted, replaced, cut short); None while nothing did.
    pub fn taken(&self) -> Option<(jiff::Timestamp, Taken)> {
        self.lock().taken
    }

    /// The lines counted up to the end of file `n` once the writer has left
    /// it (every earlier file's included): a reader that moves on from it
    /// is done with that many, also those a cut took away before it read
    /// them (which it would otherwise count as a backlog for ever).
    pub fn lines_through(&self, n: usize) -> Option<u64> {
        Some(self.lock().files.get(n)?.left?.lines_through)
    }

    /// A reader that reads file `n` now, registered so that the handles of
    /// the files after it are kept for it (see `Reader`).
    pub fn reader(&self, n: usize) -> Reader {
        let mut files = self.lock();
        let id = files.next_reader;
        files.next_reader += 1;
        files.reads(id, Some(n));
        Reader {
            durable: self.clone(),
            id,
        }
    }

    /// A handle to read file `n` (the writer's own, so it reads a file
    /// deleted since); None when the writer has none (test sinks), or no
    /// registered reader was before file `n` when it came (the first file
    /// has none: it is opened by its path).
    pub fn file(&self, n: usize) -> Option<io::Result<File>> {
        let files = self.lock();
        let handle = files.files.get(n)?.handle.as_ref()?;
        Some(handle.try_clone())
    }

    /// Complete lines in those bytes, kept up to date by the writer: a
    /// reader may hold it to count a backlog without reading the file.
    pub fn lines(&self) -> Arc<AtomicU64> {
        self.lines.clone()
    }

    /// Waits until more than `seen` bytes are durable (or the writer moved
    /// to a new file), at most `timeout`; returns the durable length.
    pub fn wait_beyond(&self, seen: u64, timeout: Duration) -> u64 {
        let (_, grown) = &*self.state;
        let guard = self.lock();
        let file = guard.current();
        let (guard, _) = grown
            .wait_timeout_while(guard, timeout, |f| f.len <= seen && f.current() == file)
            .unwrap_or_else(|p| p.into_inner());
        guard.len
    }

    fn grew(&self, new_len: u64, new_lines: u64) {
        let mut guard = self.lock();
        guard.failing = None;
        // Lines first: a reader that sees the length sees them counted.
        self.lines.fetch_add(new_lines, Ordering::SeqCst);
        guard.len = new_len;
        self.state.1.notify_all();
    }

    /// The writer goes on in a new file, from `start`; or in the same one,
    /// cut short in place `cut_at` bytes: its synced lines then end there.
    /// `what` became of the file (see `Switched::what`).
    fn switched(&self, start: u64, file: Option<File>, cut_at: Option<u64>, what: Taken) {
        let mut guard = self.lock();
        guard.taken = Some((jiff::Timestamp::now(), what));
        let left = Left {
            end: cut_at.map_or(guard.len, |cut| guard.len.min(cut)),
            lines_through: self.lines.load(Ordering::SeqCst),
        };
        if let Some(last) = guard.files.last_mut() {
            last.left = Some(left);
        }
        guard.files.push(Written {
            start,
            left: None,
            same_as_before: cut_at.is_some(),
            handle: file.map(Arc::new),
        });
        guard.len = start;
        guard.prune();
        self.state.1.notify_all();
    }
}

/// The writer thread itself; `close` waits for it to flush and stop.
pub struct Capture {
    handle: CaptureHandle,
    durable: Durable,
    thread: JoinHandle<()>,
    path: PathBuf,
    pub recovered: Recovered,
    /// False for devices and pipes: nothing is synced there (`/dev/full`
    /// still fails every write, which is how a full disk is reproduced).
    pub regular: bool,
    /// What the operator must hear while it runs, one line each (the
    /// capture file deleted or replaced).
    pub notices: Receiver<String>,
}

impl Capture {
    /// Opens (creating folders and file as needed) and repairs `path`, loads
    /// its duplicate index, and starts the writer.
    pub fn open(path: &Path) -> io::Result<Capture> {
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::create_dir_all(dir)?;
            sync_parent(dir);
        }
        let existed = path.exists();
        let stream = |kind: std::fs::FileType| {
            use std::os::unix::fs::FileTypeExt;
            kind.is_fifo() || kind.is_socket()
        };
        // A reader that stops (or never came) would leave every upload
        // unanswered once the pipe is full. A socket is not opened at all
        // (ENXIO, "No such device or address"), so it is told by its type
        // first.
        let refused = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a pipe or a socket: a capture must be a file, or a device such as \
                 /dev/null",
            )
        };
        if std::fs::metadata(path).is_ok_and(|m| stream(m.file_type())) {
            return Err(refused());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let kind = file.metadata()?.file_type();
        if stream(kind) {
            return Err(refused());
        }
        let regular = kind.is_file();
        let mut seen = Index::default();
        let mut recovered = Recovered::default();
        if regular {
            // Repair and rollback cut the file at lengths only this process
            // knows: a second writer would lose acknowledged lines.
            file.try_lock().map_err(|e| match e {
                std::fs::TryLockError::WouldBlock => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "it is in use by another autopi-rx (locked)",
                ),
                std::fs::TryLockError::Error(e) => e,
            })?;
            recovered = repair_and_index(&mut file, &mut seen)?;
            if !existed {
                sync_parent(path);
            }
        }
        let meta = file.metadata()?;
        let len = if regular { meta.len() } else { 0 };
        let sink = FileSink {
            identity: identity(&meta),
            cache: regular.then(|| CacheRelease::start(&file)).flatten(),
            file,
            regular,
            path: path.to_path_buf(),
            left: None,
        };
        let mut capture = Capture::start(sink, len, recovered.lines as u64, seen);
        capture.path = path.to_path_buf();
        capture.recovered = recovered;
        capture.regular = regular;
        Ok(capture)
    }

    /// Starts a writer on any sink (tests use failing ones).
    pub fn with_sink<S: Sink>(sink: S, len: u64, seen: Index) -> Capture {
        Capture::start(sink, len, 0, seen)
    }

    /// Starts the writer on a sink already holding `lines` lines in `len`
    /// bytes.
    fn start<S: Sink>(sink: S, len: u64, lines: u64, mut seen: Index) -> Capture {
        let (notice_tx, notices) = unbounded();
        if let Some(notice) = seen.newly_forgotten() {
            let _ = notice_tx.send(notice);
        }
        let durable = Durable::new(len, lines);
        let shared = Arc::new(Shared {
            writer: Mutex::new(Committer {
                writer: Writer {
                    sink: Box::new(sink) as Box<dyn Sink>,
                    notices: notice_tx,
                    seen,
                    good_len: len,
                    dirty: false,
                    durable: durable.clone(),
                    path_failing: false,
                },
                buf: Vec::new(),
            }),
            queue: Mutex::default(),
            more: Condvar::new(),
            handles: AtomicU64::new(1),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || theirs.run())
            .expect("spawn capture writer");
        Capture {
            handle: CaptureHandle { shared },
            durable,
            thread,
            path: PathBuf::new(),
            recovered: Recovered::default(),
            regular: true,
            notices,
        }
    }

    pub fn handle(&self) -> CaptureHandle {
        self.handle.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The synced length, for readers that follow the file as it grows.
    pub fn durable(&self) -> Durable {
        self.durable.clone()
    }

    /// Waits until every line handed in so far is written, then stops.
    /// Every cloned handle must be dropped first.
    pub fn close(self) {
        drop(self.handle);
        let _ = self.thread.join();
    }
}

impl CaptureHandle {
    /// Appends one batch and returns once it is on disk (or failed to be).
    /// When no group is being committed, the caller commits its own (and
    /// whatever else is queued) without waking the writer thread.
    pub fn save(&self, entry: &Entry, batch: &Batch) -> io::Result<Saved> {
        let pending = self.queue(entry, batch)?;
        self.shared.commit_if_free();
        pending.wait()
    }

    /// Hands one batch to the writer thread; the answer comes once its
    /// line is written and synced (or failed to be).
    pub fn submit(&self, entry: &Entry, batch: &Batch) -> io::Result<Pending> {
        let pending = self.queue(entry, batch)?;
        self.shared.more.notify_one();
        Ok(pending)
    }

    /// Saves a batch whose records are checked by `check` on this thread
    /// while the writer writes and syncs its line; the line is published
    /// (to readers, the duplicate index, the answer) only once `check`
    /// passed. A line that fails is cut off the file again. A line whose
    /// check still runs is only ever taken into a group alone (the ready
    /// lines before it go first), so a line that fails is only ever
    /// written alone, last.
    ///
    /// Returns `check`'s error once the line is gone again, or its value
    /// with the save's result.
    pub fn save_checking<T, E>(
        &self,
        entry: &Entry,
        batch: &Batch,
        check: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, io::Result<Saved>), E> {
        let (said, verdict) = bounded(1);
        let queued = self.queue_job(entry, batch, Some(verdict));
        if queued.is_ok() {
            self.shared.more.notify_one();
        }
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
        let _ = said.send(matches!(checked, Ok(Ok(_))));
        // Should the writer thread be gone (it never ends while handles
        // live, but a panic would end it), this worker commits.
        self.shared.commit_if_free();
        match checked {
            Ok(Ok(value)) => Ok((value, queued.and_then(Pending::wait))),
            // A check that panics fails like one that says no: the line
            // is cut off before the panic goes on to answer the request.
            Err(panic) => {
                let _ = queued.map(Pending::wait);
                std::panic::resume_unwind(panic)
            }
            Ok(Err(e)) => {
                // The writer lets go of the job once its line is cut off
                // again (or left out): after the answer, the file holds no
                // trace of it (unless the cut itself failed: see `retract`).
                let _ = queued.map(Pending::wait);
                Err(e)
            }
        }
    }

    fn queue(&self, entry: &Entry, batch: &Batch) -> io::Result<Pending> {
        self.queue_job(entry, batch, None)
    }

    fn queue_job(
        &self,
        entry: &Entry,
        batch: &Batch,
        verdict: Option<Receiver<bool>>,
    ) -> io::Result<Pending> {
        let (reply, answer) = bounded(1);
        let job = Job {
            head: line_head(entry, batch),
            key: device_batch(entry.unit_id.as_deref(), &batch.hash),
            received: entry.received.clone(),
            acked: entry.acked,
            tail: line_tail(entry),
            records: batch.records_json.clone(),
            reply,
            verdict,
            refused: false,
        };
        let mut queue = lock(&self.shared.queue);
        if queue.closed {
            return Err(stopped());
        }
        queue.jobs.push_back(job);
        Ok(Pending { answer })
    }

    /// Batches handed in and not yet taken into a group by the writer.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).jobs.len()
    }
}

/// A batch handed to the writer, its answer still to come.
pub struct Pending {
    answer: Receiver<io::Result<Saved>>,
}

impl Pending {
    /// Waits for the answer.
    pub fn wait(self) -> io::Result<Saved> {
        self.answer.recv().map_err(|_| stopped())?
    }

    /// The answer if it has come (None while the line is not yet durable).
    pub fn try_answer(&self) -> Option<io::Result<Saved>> {
        self.answer.try_recv().ok()
    }
}

fn stopped() -> io::Error {
    io::Error::other("capture writer has stopped")
}

fn line_head(entry: &Entry, batch: &Batch) -> Vec<u8> {
    #[derive(Serialize)]
    struct Head<'a> {
        received: &'a str,
        peer: &'a str,
        unit_id: Option<&'a str>,
        encoding: &'a str,
        wire_bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        content_encoding: Option<&'a str>,
        // Always written, null when the device sent none: a line without
        // the fields is from before they were kept.
        user_agent: Option<&'a str>,
        content_type: Option<&'a str>,
        accept: Option<&'a str>,
        accept_encoding: Option<&'a str>,
    }
    let wire_len = batch
        .wire
        .as_ref()
        .map_or(0, |w| base64::encoded_len(w.len(), true).unwrap_or(0));
    let mut head = Vec::with_capacity(512 + wire_len);
    serde_json::to_writer(
        &mut head,
        &Head {
            received: &entry.received,
            peer: &entry.peer,
            unit_id: entry.unit_id.as_deref(),
            encoding: batch.encoding.as_str(),
            wire_bytes: entry.wire_bytes,
            content_encoding: batch.content_encoding.as_deref(),
            user_agent: entry.user_agent.as_deref(),
            content_type: entry.content_type.as_deref(),
            accept: entry.accept.as_deref(),
            accept_encoding: entry.accept_encoding.as_deref(),
        },
    )
    .expect("plain struct serializes");
    head.pop(); // the closing brace: the rest follows
    // Base64 and hex need no escaping: written as they are, which spares
    // a scan of the 20 kB or so of base64 a gzip batch carries.
    if let Some(w) = &batch.wire {
        head.extend_from_slice(b",\"wire\":\"");
        let at = head.len();
        head.resize(at + wire_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(w, &mut head[at..])
            .expect("sized by encoded_len");
        head.truncate(at + written);
        head.push(b'"');
    }
    head.extend_from_slice(b",\"batch_hash\":\"");
    head.extend_from_slice(blake3::Hash::from_bytes(batch.hash).to_hex().as_bytes());
    head.push(b'"');
    head
}

fn line_tail(entry: &Entry) -> Vec<u8> {
    let mut tail = format!(",\"acked\":{},\"mode\":", entry.acked).into_bytes();
    serde_json::to_writer(&mut tail, &entry.mode).expect("string serializes");
    tail
}

struct Writer<S> {
    sink: S,
    /// What the operator must hear (the capture file replaced).
    notices: Sender<String>,
    /// Every batch (per device) in this capture: its first copy and its
    /// first acknowledged one.
    seen: Index,
    /// Bytes known to be complete and synced.
    good_len: u64,
    /// A failed group could not be cut off yet.
    dirty: bool,
    /// `good_len`, published for readers following the file.
    durable: Durable,
    /// The path could not be looked at or opened, and the operator was
    /// told (once, until it works again).
    path_failing: bool,
}

/// How a group's write ended.
enum Landed {
    /// Written, synced and where the path points.
    Kept,
    /// A lone line whose records failed their check, cut off again.
    Retracted,
}

impl<S: Sink> Writer<S> {
    fn commit(&mut self, mut group: Vec<Job>, buf: &mut Vec<u8>) {
        buf.clear();
        // A group holds lines whose checks are over, or one line still
        // being checked (`take_group`). That one is written while its
        // check ends, unless nothing can be cut off (a pipe or a device):
        // then its check is awaited. Failed lines are left out, so the
        // lines of others are never written next to one that has to be
        // cut off again.
        let unchecked = match group.as_mut_slice() {
            [job] if job.written_unchecked(self.sink.retractable()) => job.verdict.take(),
            _ => None,
        };
        group.retain_mut(|job| {
            !job.refused && job.verdict.take().is_none_or(|v| v.recv() == Ok(true))
        });
        if group.is_empty() {
            return;
        }
        // Duplicates are decided against lines that really landed, so a
        // failed group leaves the index as it was.
        let mut landing: HashMap<DeviceBatch, Seen> = HashMap::new();
        let mut answers = Vec::with_capacity(group.len());
        for job in &group {
            let known = landing
                .get(&job.key)
                .cloned()
                .or_else(|| self.seen.get(&job.key));
            let (duplicate_of, retry_of) = known.as_ref().map(Seen::relate).unwrap_or_default();
            let mut seen = known.unwrap_or_else(|| Seen {
                first: job.received.clone(),
                acked: None,
            });
            seen.note(&job.received, job.acked);
            landing.insert(job.key, seen);
            buf.extend_from_slice(&job.head);
            buf.extend_from_slice(b",\"duplicate_of\":");
            match &duplicate_of {
                Some(r) => serde_json::to_writer(&mut *buf, r).expect("string serializes"),
                None => buf.extend_from_slice(b"null"),
            }
            if let Some(r) = &retry_of {
                buf.extend_from_slice(b",\"retry_of\":");
                serde_json::to_writer(&mut *buf, r).expect("string serializes");
            }
            buf.extend_from_slice(&job.tail);
            buf.extend_from_slice(b",\"records\":");
            buf.extend_from_slice(&job.records);
            buf.extend_from_slice(b"}\n");
            answers.push(Saved {
                duplicate_of,
                retry_of,
            });
        }
        match self.write_group(buf, unchecked) {
            // Its worker answers the records' error; nobody hears of the
            // line.
            Ok(Landed::Retracted) => {}
            Ok(Landed::Kept) => {
                // Readers see the group only now: a group left behind in a
                // file that went away, or cut off again, is never passed on.
                self.durable.grew(self.good_len, group.len() as u64);
                for (key, seen) in landing {
                    self.seen.insert(key, seen);
                }
                if let Some(notice) = self.seen.newly_forgotten() {
                    let _ = self.notices.send(notice);
                }
                for (job, saved) in group.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(saved));
                }
                self.sink.synced_to(self.good_len);
            }
            Err(e) => {
                self.durable.failed(e.to_string());
                for job in group {
                    let _ = job.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }

    /// Writes and syncs the group where the capture path points: checked
    /// before, and again after the sync, so no line is acknowledged that
    /// sits only in a file deleted meanwhile (it is written again to the
    /// new file at the path).
    ///
    /// A lone line written before its records' check ended (`verdict`)
    /// waits for it after the sync: cut off again when the check failed,
    /// else the path is looked at as after any write (the check took a
    /// while, and the file may have gone meanwhile).
    fn write_group(
        &mut self,
        buf: &[u8],
        mut verdict: Option<Receiver<bool>>,
    ) -> io::Result<Landed> {
        const TRIES: usize = 3;
        for _ in 0..TRIES {
            self.follow_path()?;
            self.write_here(buf)?;
            if let Some(verdict) = verdict.take()
                && verdict.recv() != Ok(true)
            {
                self.retract(buf.len() as u64);
                return Ok(Landed::Retracted);
            }
            let start = self.good_len - buf.len() as u64;
            match self.follow_path() {
                Ok(false) => return Ok(Landed::Kept),
                Ok(true) => {
                    // Written again in the file now at the path: the copy
                    // in the one it left is cut off.
                    if let Err(e) = self.sink.cut_left(start) {
                        let _ = self.notices.send(format!(
                            "a batch written to the capture file just before it went away \
                             could not be cut off there ({e}): it is in both files"
                        ));
                    }
                }
                Err(e) => {
                    // Answered 503: cut off now, from the file still held.
                    // Only marked for the next write, it stayed whenever
                    // that write went to a new file at the path: a file
                    // moved away held lines `acked:true` whose batches
                    // were refused, and the device's re-send counted as
                    // their duplicate (a hostile-client probe, December 7).
                    self.retract(buf.len() as u64);
                    return Err(e);
                }
            }
        }
        Err(io::Error::other(
            "the capture file keeps being deleted or replaced while written",
        ))
    }

    /// Starts over in a new file when the path no longer names the sink;
    /// true when it did.
    fn follow_path(&mut self) -> io::Result<bool> {
        let looked = self.sink.ensure_at_path(self.good_len);
        if let Err(e) = &looked
            && !std::mem::replace(&mut self.path_failing, true)
        {
            // Each upload's 503 says it too; this is the line the operator
            // sees once.
            let _ = self.notices.send(format!(
                "capture not writable, uploads answered 503 until it is: {e}"
            ));
        }
        match looked? {
            None => {
                self.path_failing = false;
                Ok(false)
            }
            Some(switched) => {
                self.path_failing = false;
                self.switch(switched);
                Ok(true)
            }
        }
    }

    /// Goes on where `switched` says, and tells the operator and readers.
    fn switch(&mut self, switched: Switched) {
        let _ = self.notices.send(switched.message);
        self.good_len = switched.len;
        self.dirty = false;
        self.durable
            .switched(switched.len, switched.file, switched.cut_at, switched.what);
    }

    /// Takes back the last `len` bytes written when whether they are
    /// where the path points cannot be told (the group fails): the next
    /// write cuts them off first, and readers never see them.
    fn unwrite(&mut self, len: u64) {
        self.good_len -= len;
        self.dirty = true;
    }

    /// Cuts off the last `len` bytes written (one line whose records
    /// failed their check), synced, so a crash cannot bring it back. When
    /// the cut or its sync fails, the line stays past what readers are
    /// shown until the next write cuts it first (or a start's repair).
    fn retract(&mut self, len: u64) {
        self.unwrite(len);
        self.dirty = self
            .sink
            .truncate(self.good_len)
            .and_then(|()| self.sink.sync())
            .is_err();
    }

    fn write_here(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.dirty {
            // A half-written group is still in the file: nothing may follow
            // it until it is cut away.
            self.sink.truncate(self.good_len)?;
            self.dirty = false;
        }
        match self.sink.write_all(buf).and_then(|()| self.sink.sync()) {
            Ok(()) => {
                // A file cut short (or written to) between the look at the
                // path and the write took the group at its end, not where
                // the writer expected it: readers are told before the
                // group counts, and a take-back cuts where it landed.
                let len = buf.len() as u64;
                if let Some(moved) = self.sink.landed(len, self.good_len) {
                    self.switch(moved);
                }
                self.good_len += len;
                Ok(())
            }
            Err(e) => {
                self.dirty = self.sink.truncate(self.good_len).is_err();
                Err(e)
            }
        }
    }
}

/// Syncs the folder holding `path`, so a file created or renamed there
/// is found after a crash.
pub(crate) fn sync_folder_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// [`sync_folder_of`] where a failure changes nothing the caller does
/// (the file itself is synced; only finding it after a crash is at stake).
fn sync_parent(path: &Path) {
    let _ = sync_folder_of(path);
}

/// Makes the folder holding `path` again if it is gone (`mv captures
/// old` while running); the folder, if this call made it, for the caller
/// to sync where it is listed ([`sync_folder_of`]). The writer (at its
/// next group) and the forwarder (at its next cursor save) both call
/// this, and either may find the other made it first (then the other
/// syncs it). Its own level only, not the folders above: a disk unmounted
/// from under the folder's parent is not quietly replaced by folders on
/// the one below.
pub(crate) fn make_folder_again(path: &Path) -> io::Result<Option<&Path>> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if dir.exists() {
        return Ok(None);
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(Some(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Capture::open` in a test of a file a test opened before: a child
/// process another test starts (`mkfifo`, `fincore`) holds a copy of every
/// descriptor of the test process between its fork and its exec, and with
/// it the file's lock, for a moment after this test let it go. Waited out
/// for up to 10 s; any other failure, or the lock held longer, fails.
#[cfg(test)]
fn open_again(path: &Path) -> Capture {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Capture::open(path) {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < until =>
            {
                std::thread::yield_now();
            }
            opened => return opened.unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::ingest::{Auth, Config, decode};
    use std::sync::{Arc, Mutex};

    /// Each time is given back as it was written, packed when the
    /// receiver wrote it, kept as text otherwise, whichever came first.
    #[test]
    fn the_index_gives_back_each_time_as_it_was_written() {
        let seen = |first: &str, acked: Option<&str>| Seen {
            first: first.into(),
            acked: acked.map(Into::into),
        };
        let mut ix = Index::default();
        // The receiver's own: a retry, its acknowledged copy, a duplicate.
        ix.note([1; 32], "2026-12-06T10:00:00.123Z", false);
        ix.note([1; 32], "2026-12-06T10:00:01.456Z", true);
        ix.note([1; 32], "2026-12-06T10:00:02.000Z", true);
        // Written by hand: no milliseconds, an offset, not a time.
        ix.note([2; 32], "2026-12-06T10:00:00Z", true);
        ix.note([3; 32], "2026-12-06T11:00:00.000+01:00", false);
        ix.note([3; 32], "2026-12-06T10:00:05.000Z", true);
        ix.note([4; 32], "2026-12-06T10:00:00.000Z", false);
        ix.note([4; 32], "yesterday", true);
        // Before 1970 and far ahead, as the receiver writes them.
        ix.note([5; 32], "1969-12-31T23:59:59.999Z", true);
        ix.note([6; 32], "2106-02-07T06:28:16.000Z", false);
        let expected = [
            seen("2026-12-06T10:00:00.123Z", Some("2026-12-06T10:00:01.456Z")),
            seen("2026-12-06T10:00:00Z", Some("2026-12-06T10:00:00Z")),
            seen(
                "2026-12-06T11:00:00.000+01:00",
                Some("2026-12-06T10:00:05.000Z"),
            ),
            seen("2026-12-06T10:00:00.000Z", Some("yesterday")),
            seen("1969-12-31T23:59:59.999Z", Some("1969-12-31T23:59:59.999Z")),
            seen("2106-02-07T06:28:16.000Z", None),
        ];
        for (n, want) in (1..).zip(expected) {
            assert_eq!(ix.get(&[n; 32]), Some(want), "batch {n}");
        }
        assert_eq!(ix.get(&[7; 32]), None);
        assert_eq!((ix.packed.len(), ix.text.len()), (3, 3));
        // What the table holds for a packed entry: the key and two times.
        assert_eq!(std::mem::size_of::<(DeviceBatch, Packed)>(), 48);
    }

    /// A sink whose writes fail while `failing` is set, keeping what "landed".
    /// With `lost_after_write`, looking at the path fails right after the
    /// next write (its bytes landed, where is not known). With `cut_to`, it
    /// is cut short there between the writer's look and its next write (a
    /// `truncate` by another program in that moment): the write lands at
    /// the cut, and `landed` says where.
    #[derive(Clone, Default)]
    struct Flaky {
        data: Arc<Mutex<Vec<u8>>>,
        failing: Arc<Mutex<bool>>,
        lost_after_write: Arc<Mutex<bool>>,
        written: Arc<Mutex<bool>>,
        cut_to: Arc<Mutex<Option<usize>>>,
    }

    impl Sink for Flaky {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let mut data = self.data.lock().unwrap();
            if let Some(cut) = self.cut_to.lock().unwrap().take() {
                data.truncate(cut);
            }
            if *self.failing.lock().unwrap() {
                // A partial write, as a full disk leaves behind.
                data.extend_from_slice(&buf[..buf.len() / 2]);
                return Err(io::Error::from_raw_os_error(28));
            }
            data.extend_from_slice(buf);
            *self.written.lock().unwrap() = true;
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.lock().unwrap().truncate(len as usize);
            Ok(())
        }
        fn ensure_at_path(&mut self, _len: u64) -> io::Result<Option<Switched>> {
            let written = std::mem::take(&mut *self.written.lock().unwrap());
            if written && std::mem::take(&mut *self.lost_after_write.lock().unwrap()) {
                return Err(io::Error::from_raw_os_error(13));
            }
            Ok(None)
        }
        fn landed(&mut self, len: u64, at: u64) -> Option<Switched> {
            let landed = self.data.lock().unwrap().len() as u64 - len;
            (landed != at).then(|| Switched {
                message: "moved".into(),
                len: landed,
                file: None,
                cut_at: Some(landed),
                what: Taken::CutShort,
            })
        }
    }

    #[test]
    fn a_group_whose_place_is_lost_after_its_write_is_cut_off_by_the_next() {
        let sink = Flaky::default();
        let cap = Capture::with_sink(sink.clone(), 0, Index::default());
        let h = cap.handle();
        h.save(&entry("t1"), &batch(r#"[{"@t":"a"}]"#)).unwrap();
        *sink.lost_after_write.lock().unwrap() = true;
        let err = h.save(&entry("t2"), &batch(r#"[{"@t":"b"}]"#)).unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        h.save(&entry("t3"), &batch(r#"[{"@t":"c"}]"#)).unwrap();
        drop(h);
        cap.close();
        let data = String::from_utf8(sink.data.lock().unwrap().clone()).unwrap();
        let received: Vec<String> = data
            .lines()
            .map(|l| {
                serde_json::from_str::<crate::capture::CapturedBatch>(l)
                    .unwrap()
                    .received
            })
            .collect();
        assert_eq!(
            received,
            ["t1", "t3"],
            "a group answered 503 stayed in the file"
        );
    }

    /// Cut short between the look and the write: the line lands at the
    /// cut, and the writer goes on from there, telling readers that the
    /// file's lines now end at the cut (its own length count said 2 lines
    /// further, and a take-back of the next line cut there: NUL bytes in a
    /// real file, or half a line).
    #[test]
    fn a_line_that_landed_at_a_cut_is_where_the_writer_goes_on() {
        let sink = Flaky::default();
        let cap = Capture::with_sink(sink.clone(), 0, Index::default());
        let durable = cap.durable();
        let h = cap.handle();
        h.save(&entry("t1"), &batch(r#"[{"@t":"a"}]"#)).unwrap();
        h.save(&entry("t2"), &batch(r#"[{"@t":"b"}]"#)).unwrap();
        let first = sink.data.lock().unwrap().len();
        let one = first / 2;
        *sink.cut_to.lock().unwrap() = Some(one);
        h.save(&entry("t3"), &batch(r#"[{"@t":"c"}]"#)).unwrap();
        assert_eq!(
            durable.bound(0),
            Bound {
                limit: one as u64,
                next: Some(one as u64)
            }
        );
        assert_eq!(durable.lines_through(0), Some(2));
        let len = sink.data.lock().unwrap().len() as u64;
        assert_eq!(durable.bound(1).limit, len, "the line that landed counts");
        drop(h);
        cap.close();
        let data = String::from_utf8(sink.data.lock().unwrap().clone()).unwrap();
        assert!(
            data.ends_with('\n') && data[one..].starts_with('{'),
            "{data}"
        );
    }

    /// Past the most it holds, the index forgets the older half by first
    /// arrival (and what it keeps as text), once per overflow, and says
    /// so once each time; a copy of a batch it knows never makes room.
    #[test]
    fn the_index_forgets_the_older_half_past_the_most_it_holds() {
        let at = |s: u32| format!("2026-12-07T10:00:{s:02}.000Z");
        let mut ix = Index::holding_at_most(4);
        ix.note([1; 32], &at(1), true);
        ix.note([2; 32], &at(2), false);
        ix.note([3; 32], "yesterday", true);
        ix.note([4; 32], &at(4), true);
        assert_eq!(ix.newly_forgotten(), None);
        // Known copies make no room.
        ix.note([2; 32], &at(5), true);
        ix.note([1; 32], &at(6), true);
        assert_eq!((ix.len(), ix.newly_forgotten()), (4, None));
        ix.note([5; 32], &at(7), true);
        let held: Vec<u8> = (1..=5).filter(|n| ix.get(&[*n; 32]).is_some()).collect();
        assert_eq!(
            held,
            [2, 4, 5],
            "the newer of 1, 2 and 4, without the text one"
        );
        let said = ix.newly_forgotten().expect("said");
        assert!(
            said.contains("holds 4 batches at most: 2 first seen"),
            "{said}"
        );
        assert_eq!(ix.newly_forgotten(), None, "said once");
        // A forgotten batch comes again: new, and the newest.
        ix.note([1; 32], &at(8), true);
        assert_eq!((ix.len(), ix.newly_forgotten()), (4, None));
        ix.note([6; 32], &at(9), true);
        let held: Vec<u8> = (1..=6).filter(|n| ix.get(&[*n; 32]).is_some()).collect();
        assert_eq!(held, [1, 5, 6]);
        assert!(ix.newly_forgotten().unwrap().contains(": 4 first seen"));
    }

    /// Forgetting and refilling, over and over, never grows the table
    /// past what the most it holds needs.
    #[test]
    fn the_index_table_stays_the_size_of_the_most_it_holds() {
        let at_most = (1 << 12) / 8 * 7;
        let mut ix = Index::holding_at_most(at_most);
        let mut key = [0u8; 32];
        for n in 0..20 * at_most as u64 {
            key[..8].copy_from_slice(&n.to_le_bytes());
            let ms = 1_765_000_000_000 + n as i64;
            ix.insert(
                key,
                Seen {
                    first: unpack(ms),
                    acked: None,
                },
            );
            assert!(ix.len() <= at_most);
        }
        assert!(ix.packed.capacity() <= at_most, "{}", ix.packed.capacity());
    }

    /// Through the writer: past the index's most, a batch forgotten is
    /// taken as new when it comes again, and the operator is told.
    #[test]
    fn a_batch_the_index_forgot_is_new_again_and_the_operator_told() {
        let cap = Capture::with_sink(Flaky::default(), 0, Index::holding_at_most(2));
        let h = cap.handle();
        let [a, b, c] = ["a", "b", "c"].map(|t| batch(&format!(r#"[{{"@t":"{t}"}}]"#)));
        let at = |s: u32| format!("2026-12-07T10:00:{s:02}.000Z");
        h.save(&entry(&at(1)), &a).unwrap();
        h.save(&entry(&at(2)), &b).unwrap();
        assert_eq!(
            h.save(&entry(&at(3)), &a).unwrap().duplicate_of,
            Some(at(1))
        );
        assert!(cap.notices.try_recv().is_err());
        h.save(&entry(&at(4)), &c).unwrap();
        let said = cap.notices.try_recv().expect("a notice");
        assert!(said.contains("duplicate index holds 2 batches"), "{said}");
        assert_eq!(h.save(&entry(&at(5)), &a).unwrap().duplicate_of, None);
        assert_eq!(
            h.save(&entry(&at(6)), &c).unwrap().duplicate_of,
            Some(at(4))
        );
        drop(h);
        cap.close();
    }

    pub(super) fn batch(text: &str) -> Batch {
        let cfg = Config {
            auth: Auth::Open,
            max_body: 1 << 20,
        };
        decode(&cfg, None, text.as_bytes()).unwrap()
    }

    pub(super) fn entry(received: &str) -> Entry {
        Entry {
            received: received.into(),
            peer: "127.0.0.1:1".into(),
            unit_id: None,
            user_agent: None,
            content_type: None,
            accept: None,
            accept_encoding: None,
            wire_bytes: 3,
            acked: true,
            mode: "ok".into(),
        }
    }

    #[test]
    fn failed_writes_leave_no_partial_line_and_recover() {
        let sink = Flaky::default();
        let cap = Capture::with_sink(sink.clone(), 0, Index::default());
        let h = cap.handle();
        let a = batch(r#"[{"@t":"a","@ts":"2026-01-01T00:00:00"}]"#);
        let b = batch(r#"[{"@t":"b","@ts":"2026-01-01T00:00:00"}]"#);
        assert_eq!(
            h.save(&entry("t1"), &a).unwrap(),
            Saved {
                duplicate_of: None,
                retry_of: None
            }
        );
        *sink.failing.lock().unwrap() = true;
        let err = h.save(&entry("t2"), &b).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        *sink.failing.lock().unwrap() = false;
        // The failed batch was not indexed: its re-send is not a duplicate.
        assert_eq!(
            h.save(&entry("t3"), &b).unwrap(),
            Saved {
                duplicate_of: None,
                retry_of: None
            }
        );
        assert_eq!(
            h.save(&entry("t4"), &a).unwrap(),
            Saved {
                duplicate_of: Some("t1".into()),
                retry_of: None,
            }
        );
        drop(h);
        cap.close();
        let data = String::from_utf8(sink.data.lock().unwrap().clone()).unwrap();
        let lines: Vec<crate::capture::CapturedBatch> = data
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let received: Vec<_> = lines.iter().map(|l| l.received.as_str()).collect();
        assert_eq!(received, ["t1", "t3", "t4"]);
        assert_eq!(lines[2].duplicate_of.as_deref(), Some("t1"));
        assert_eq!(
            lines[0].records.get(),
            r#"[{"@t":"a","@ts":"2026-01-01T00:00:00"}]"#
        );
    }
}

/// Lines written while their records are checked (`save_checking`).
#[cfg(test)]
mod checking_tests {
    use super::tests::{batch, entry};
    use super::*;
    use crate::receiver::ingest::{Auth, Config, prepare};
    use std::time::{Duration, Instant};

    fn cfg() -> Config {
        Config {
            auth: Auth::Open,
            max_body: 1 << 20,
        }
    }

    /// A capture in a folder of its own (kept while the folder lives).
    fn fresh() -> (tempfile::TempDir, PathBuf, Capture) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let cap = super::open_again(&path);
        (dir, path, cap)
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Waits (bounded) for the file to hold more than `len` bytes.
    fn grew_past(path: &Path, len: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if size(path) > len {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_line_whose_records_fail_is_written_then_cut_off_and_never_published() {
        let (_dir, path, cap) = fresh();
        let durable = cap.durable();
        let h = cap.handle();
        h.save(&entry("t1"), &batch(r#"[{"@t":"a"}]"#)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let len = before.len() as u64;
        assert_eq!(durable.synced(), len);

        let body = br#"{"@t":"not a list"}"#;
        let unchecked = prepare(&cfg(), None, body).unwrap();
        let mut written = false;
        let out = h.save_checking(&entry("t2"), unchecked.batch(), || {
            // The line goes to the file while the records are read.
            written = grew_past(&path, len);
            unchecked.check()
        });
        assert!(
            written,
            "the line was not written while its records were read"
        );
        let Err(err) = out else {
            panic!("records that are not a list were accepted")
        };
        assert_eq!(err.status, 400);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the line was not cut off"
        );
        assert_eq!(durable.synced(), len, "readers were shown the line");

        // The next line follows the first, and the index knows nothing of
        // the refused one.
        let b = batch(r#"[{"@t":"b"}]"#);
        let saved = h
            .save_checking(&entry("t3"), &b, || Ok::<_, ()>(()))
            .unwrap()
            .1
            .unwrap();
        assert_eq!(saved.duplicate_of, None);
        assert!(durable.synced() > len);
        drop((h, durable));
        cap.close();
        let reopened = super::open_again(&path);
        assert_eq!(reopened.recovered.lines, 2);
        assert_eq!(reopened.recovered.unchecked_bytes, 0);
        assert_eq!(reopened.recovered.unreadable, 0);
    }

    #[test]
    fn a_check_that_panics_has_its_line_cut_off_before_the_panic_goes_on() {
        let (_dir, path, cap) = fresh();
        let durable = cap.durable();
        let h = cap.handle();
        let b = batch(r#"[{"@t":"b"}]"#);
        let mut written = false;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.save_checking(&entry("t1"), &b, || -> Result<(), ()> {
                written = grew_past(&path, 0);
                panic!("a check that breaks")
            })
        }));
        assert!(written, "the line was not written while it was checked");
        assert!(out.is_err(), "the panic goes on to the caller");
        assert_eq!(size(&path), 0, "the line was not cut off first");
        assert_eq!(durable.synced(), 0, "readers were shown the line");
        drop(h);
        cap.close();
    }

    #[test]
    fn a_capture_deleted_while_the_records_are_read_gets_the_line_again() {
        let (_dir, path, cap) = fresh();
        let h = cap.handle();
        let b = batch(r#"[{"@t":"b"}]"#);
        let mut written = false;
        let (_, saved) = h
            .save_checking(&entry("t1"), &b, || {
                written = grew_past(&path, 0);
                std::fs::remove_file(&path).unwrap();
                Ok::<_, ()>(())
            })
            .unwrap();
        assert!(
            written,
            "the line was not written while its records were read"
        );
        saved.unwrap();
        // Acknowledged: so it is in the file at the path now.
        let text = std::fs::read_to_string(&path).expect("a new file at the path");
        assert!(text.contains(r#""records":[{"@t":"b"}]"#), "{text:?}");
        assert!(cap.notices.try_recv().unwrap().contains("deleted"));
        drop(h);
        cap.close();
    }

    #[test]
    fn only_a_line_that_can_be_cut_off_whole_is_written_before_its_check() {
        let job = |records: &[u8]| {
            let (reply, _) = bounded(1);
            let (said, verdict) = bounded(1);
            let job = Job {
                head: Vec::new(),
                key: device_batch(None, &[0; 32]),
                received: String::new(),
                acked: true,
                tail: Vec::new(),
                records: records.into(),
                reply,
                verdict: Some(verdict),
                refused: false,
            };
            (job, said)
        };
        let (plain, _said) = job(br#"[{"@t":"a"}]"#);
        assert!(plain.written_unchecked(true));
        assert!(!plain.written_unchecked(false), "a pipe cannot cut");
        // An invalid body with a raw newline in a "string" stays so on its
        // one line: written, it would be two lines.
        let (split, _said) = job(b"[{\"@t\":\"a\nb\"}]");
        assert!(!split.written_unchecked(true));
        let (told, said) = job(br#"[{"@t":"a"}]"#);
        said.send(false).unwrap();
        assert!(!told.written_unchecked(true), "the verdict is in: no need");
        let checked = Job {
            verdict: None,
            ..job(br#"[{"@t":"a"}]"#).0
        };
        assert!(!checked.written_unchecked(true));
    }

    #[test]
    fn in_a_group_a_line_whose_records_fail_is_never_written() {
        let (_dir, path, cap) = fresh();
        let h = cap.handle();
        // Holding the committer keeps the lines queued until both are in,
        // so they are taken as one group.
        let committer = lock(&h.shared.writer);
        let good = batch(r#"[{"@t":"good"}]"#);
        let first = h.submit(&entry("t1"), &good).unwrap();
        let unchecked = prepare(&cfg(), None, br#"[1,2]"#).unwrap();
        let (tell, told) = bounded(1);
        let bad = std::thread::scope(|s| {
            let bad = s.spawn(|| {
                h.save_checking(&entry("t2"), unchecked.batch(), || {
                    tell.send(()).unwrap();
                    unchecked.check()
                })
            });
            told.recv().unwrap();
            assert_eq!(h.queued(), 2);
            // Its verdict is in before the group is taken (a check still
            // running would keep it out of the group).
            let until = Instant::now() + Duration::from_secs(10);
            while lock(&h.shared.queue).jobs[1]
                .verdict
                .as_ref()
                .is_some_and(Receiver::is_empty)
            {
                assert!(Instant::now() < until, "no verdict in 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(committer);
            h.shared.more.notify_one();
            bad.join().unwrap()
        });
        assert_eq!(bad.err().unwrap().status, 400);
        first.wait().unwrap();
        drop(h);
        cap.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#""records":[{"@t":"good"}]"#), "{text}");
        assert!(!text.contains("[1,2]"), "{text}");
    }

    #[test]
    fn a_ready_line_is_answered_while_a_check_behind_it_still_runs() {
        let (_dir, path, cap) = fresh();
        let h = cap.handle();
        // Both queued before anyone commits: the ready line first.
        let committer = lock(&h.shared.writer);
        let first = h.submit(&entry("t1"), &batch(r#"[{"@t":"a"}]"#)).unwrap();
        let b = batch(r#"[{"@t":"b"}]"#);
        let (queued, running) = bounded(1);
        let (go, release) = bounded::<()>(1);
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                h.save_checking(&entry("t2"), &b, || {
                    queued.send(()).unwrap();
                    release.recv().unwrap();
                    Ok::<_, ()>(())
                })
            });
            running.recv().unwrap();
            drop(committer);
            h.shared.more.notify_one();
            let answer = first.answer.recv_timeout(Duration::from_secs(10));
            go.send(()).unwrap();
            assert!(
                matches!(answer, Ok(Ok(_))),
                "the ready line waited for the check behind it: {answer:?}"
            );
            second.join().unwrap().unwrap().1.unwrap();
        });
        drop(h);
        cap.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_last_line_whose_records_are_not_a_batch_is_cut_at_start() {
        let (_dir, path, cap) = fresh();
        let h = cap.handle();
        let a = batch(r#"[{"@t":"a"}]"#);
        let b = batch(r#"[{"@t":"b"}]"#);
        h.save(&entry("t1"), &a).unwrap();
        h.save(&entry("t2"), &b).unwrap();
        drop(h);
        cap.close();
        // What a stop between the write and the cut leaves: the second
        // line with records that are not a batch.
        let text = std::fs::read_to_string(&path).unwrap();
        let (first, second) = text.split_once('\n').unwrap();
        let second = second.replace(r#""records":[{"@t":"b"}]"#, r#""records":{"@t":"b"}"#);
        assert_ne!(second, text.split_once('\n').unwrap().1);
        std::fs::write(&path, format!("{first}\n{second}")).unwrap();

        let cap = super::open_again(&path);
        assert_eq!(cap.recovered.lines, 1);
        assert_eq!(cap.recovered.unchecked_bytes, second.len() as u64);
        assert_eq!(size(&path), first.len() as u64 + 1);
        // Its batch was not indexed: sent again, it is no duplicate.
        let saved = cap.handle().save(&entry("t3"), &b).unwrap();
        assert_eq!(saved.duplicate_of, None);
        cap.close();
        // A last line that is a batch stays.
        let cap = super::open_again(&path);
        assert_eq!((cap.recovered.lines, cap.recovered.unchecked_bytes), (2, 0));
        cap.close();
        // So does a last line that is not one of ours, as unreadable.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"note\":\"added by hand\"}\n").unwrap();
        drop(f);
        let cap = super::open_again(&path);
        assert_eq!(cap.recovered.lines, 3);
        assert_eq!(cap.recovered.unreadable, 1);
        assert_eq!(cap.recovered.unchecked_bytes, 0);
        cap.close();
        // A last line added by hand without its line end: ended, kept.
        let before = std::fs::read(&path).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"a note").unwrap();
        drop(f);
        let cap = super::open_again(&path);
        assert_eq!(cap.recovered.ended_bytes, 6);
        assert_eq!((cap.recovered.lines, cap.recovered.unreadable), (4, 2));
        assert_eq!(cap.recovered.torn_bytes, 0);
        cap.close();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [&before[..], b"a note\n"].concat()
        );
    }

    /// `--capture` naming the wrong file (a typo, a completion) leaves it
    /// as it was: it used to lose its last line, as a torn line of ours.
    #[test]
    fn a_file_with_no_capture_line_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let gzip = dir.path().join("archive.gz");
        let mut bytes = vec![0x1f, 0x8b, 8, 0];
        bytes.extend((0..3_000u32).map(|i| (i * 7 % 251) as u8));
        std::fs::write(&gzip, &bytes).unwrap();
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "first line\nlast line without an end").unwrap();
        for (path, content) in [
            (&gzip, bytes.clone()),
            (&notes, std::fs::read(&notes).unwrap()),
        ] {
            let e = Capture::open(path).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("not one capture line"), "{e}");
            let packed = e.to_string().contains("it is gzip-compressed");
            assert_eq!(packed, path == &gzip, "{e}");
            assert_eq!(std::fs::read(path).unwrap(), content, "{}", path.display());
        }
        // Empty, or blank: a capture to be.
        for blank in ["", "\n\n"] {
            std::fs::write(&notes, blank).unwrap();
            super::open_again(&notes).close();
        }
        // A first line of ours cut anywhere, even in its first bytes: cut.
        for torn in [&b"{"[..], b"{\"rece", b"{\"received\":\"2026-11-27T08"] {
            std::fs::write(&notes, torn).unwrap();
            let cap = super::open_again(&notes);
            assert_eq!(cap.recovered.torn_bytes, torn.len() as u64);
            cap.close();
            assert_eq!(size(&notes), 0);
        }
        // A first line of ours whose records were being refused when the
        // receiver stopped (its body not even JSON): ours, and cut.
        let refused = r#"{"received":"2026-11-27T08:00:00.000Z","peer":"p","unit_id":"u","batch_hash":"00","records":[{"@t":"a",}]}"#;
        std::fs::write(&notes, format!("\n{refused}\n")).unwrap();
        let cap = super::open_again(&notes);
        assert_eq!(cap.recovered.unchecked_bytes, refused.len() as u64 + 1);
        cap.close();
        // A capture line in another key order (another program's, a
        // test's): a capture.
        let reordered = r#"{"batch_hash":"0000000000000000000000000000000000000000000000000000000000000000","received":"2026-11-27T08:00:00.000Z","records":[]}"#;
        std::fs::write(&notes, format!("{reordered}\n")).unwrap();
        let cap = super::open_again(&notes);
        assert_eq!((cap.recovered.lines, cap.recovered.unreadable), (1, 0));
        cap.close();
        // What a power loss may leave of an unsynced write: NUL bytes,
        // alone or after a good line. Cut, as a torn line of ours.
        let (_d, good_path, cap) = fresh();
        cap.handle().save(&entry("t1"), &batch("[]")).unwrap();
        cap.close();
        let good = std::fs::read(&good_path).unwrap();
        for (path, before) in [(&notes, Vec::new()), (&good_path, good.clone())] {
            std::fs::write(path, [&before[..], &[0u8; 16]].concat()).unwrap();
            let cap = super::open_again(path);
            assert_eq!(
                (cap.recovered.torn_bytes, cap.recovered.ended_bytes),
                (16, 0)
            );
            cap.close();
            assert_eq!(std::fs::read(path).unwrap(), before);
        }
        // A pipe: refused (a reader that stops would hold every upload).
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = Capture::open(&fifo).err().expect("refused");
        assert!(e.to_string().contains("a pipe or a socket"), "{e}");
        // A socket: refused the same way (its open failed with "No such
        // device or address").
        let socket = dir.path().join("socket");
        let _listening = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let e = Capture::open(&socket).err().expect("refused");
        assert!(e.to_string().contains("a pipe or a socket"), "{e}");
    }
}

/// The promise behind every 2xx: an answer comes only after the write and
/// the sync that cover its line. A recording sink logs each call and holds
/// each one at a gate until the test lets it through, so the test can look
/// at the answers while a write or a sync is in progress.
#[cfg(test)]
mod order_tests {
    use super::*;
    use crate::fixtures::{Call, Gate, RecordingSink};
    use crate::receiver::ingest::{Auth, Config, decode};
    use std::time::{Duration, Instant};

    fn recording(writes: Arc<Gate>, syncs: Arc<Gate>) -> (RecordingSink, Capture) {
        let sink = RecordingSink::new(writes, syncs);
        let capture = Capture::with_sink(sink.clone(), 0, Index::default());
        (sink, capture)
    }

    fn batch(tag: &str) -> Batch {
        let cfg = Config {
            auth: Auth::Open,
            max_body: 1 << 20,
        };
        let text = format!(r#"[{{"@t":"{tag}","@ts":"2026-01-01T00:00:00"}}]"#);
        decode(&cfg, None, text.as_bytes()).unwrap()
    }

    fn entry(received: &str) -> Entry {
        Entry {
            received: received.into(),
            peer: "127.0.0.1:1".into(),
            unit_id: Some("ee3df171ff0f6209a3dbaa00b00e1d05".into()),
            user_agent: None,
            content_type: None,
            accept: None,
            accept_encoding: None,
            wire_bytes: 3,
            acked: true,
            mode: "ok".into(),
        }
    }

    /// Whether the write `call` holds the whole line of the batch tagged `tag`.
    fn holds_line(call: &Call, tag: &str) -> bool {
        let needle = format!(r#""records":[{{"@t":"{tag}","@ts":"2026-01-01T00:00:00"}}]}}"#);
        matches!(call, Call::Write(text) if text.lines().any(|l| l.ends_with(&needle)))
    }

    #[test]
    fn a_lone_batch_is_answered_after_its_write_and_sync() {
        let syncs = Gate::closed();
        let (sink, capture) = recording(Gate::open(), syncs.clone());
        let pending = capture.handle().submit(&entry("t1"), &batch("a")).unwrap();
        syncs.reached(1);
        // The sync is under way: the line is written, nothing is answered.
        assert!(
            pending.try_answer().is_none(),
            "answered before the sync ended"
        );
        assert!(holds_line(&sink.calls()[0], "a"));
        syncs.allow(1);
        assert_eq!(
            pending.wait().unwrap(),
            Saved {
                duplicate_of: None,
                retry_of: None
            }
        );
        let calls = sink.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[1], Call::Sync);
        capture.close();
    }

    #[test]
    fn a_group_is_written_once_synced_once_then_every_batch_answered() {
        let writes = Gate::closed();
        let syncs = Gate::closed();
        let (sink, capture) = recording(writes.clone(), syncs.clone());
        let h = capture.handle();
        let first = h.submit(&entry("t1"), &batch("a")).unwrap();
        writes.reached(1);
        // While the first group is being written, three more arrive.
        let group: Vec<Pending> = ["b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                h.submit(&entry(&format!("t{}", i + 2)), &batch(tag))
                    .unwrap()
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.queued() < 3 {
            assert!(Instant::now() < deadline, "the batches never queued");
            std::thread::yield_now();
        }
        writes.allow(usize::MAX / 2);
        syncs.reached(1);
        assert!(
            first.try_answer().is_none(),
            "answered before the sync ended"
        );
        syncs.allow(1);
        assert!(first.wait().is_ok());
        syncs.reached(2);
        {
            let calls = sink.calls();
            assert_eq!(calls.len(), 3, "{calls:?}");
            for tag in ["b", "c", "d"] {
                assert!(
                    holds_line(&calls[2], tag),
                    "{tag} not in the group's one write"
                );
            }
        }
        for p in &group {
            assert!(
                p.try_answer().is_none(),
                "answered before the group's sync ended"
            );
        }
        syncs.allow(1);
        for p in group {
            assert!(p.wait().is_ok());
        }
        assert_eq!(sink.calls().len(), 4);
        assert_eq!(sink.calls()[3], Call::Sync);
        drop(h);
        capture.close();
    }

    #[test]
    fn the_same_batch_from_two_devices_is_two_batches() {
        let (_sink, capture) = recording(Gate::open(), Gate::open());
        let h = capture.handle();
        let mut other = entry("t2");
        other.unit_id = Some("0123456789abcdef0123456789abcdef".into());
        let no_id = Entry {
            unit_id: None,
            ..entry("t3")
        };
        assert_eq!(
            h.save(&entry("t1"), &batch("a")).unwrap().duplicate_of,
            None
        );
        assert_eq!(h.save(&other, &batch("a")).unwrap().duplicate_of, None);
        assert_eq!(h.save(&no_id, &batch("a")).unwrap().duplicate_of, None);
        assert_eq!(
            h.save(&entry("t4"), &batch("a"))
                .unwrap()
                .duplicate_of
                .as_deref(),
            Some("t1")
        );
        let mut again = entry("t5");
        again.unit_id = other.unit_id.clone();
        assert_eq!(
            h.save(&again, &batch("a")).unwrap().duplicate_of.as_deref(),
            Some("t2")
        );
        drop(h);
        capture.close();
    }

    #[test]
    fn a_copy_of_an_unacknowledged_batch_is_a_retry_until_one_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let refused = |r: &str| Entry {
            acked: false,
            mode: "500".into(),
            ..entry(r)
        };
        let cap = super::open_again(&path);
        let h = cap.handle();
        let a = batch("a");
        let first = h.save(&refused("t1"), &a).unwrap();
        assert_eq!((first.duplicate_of, first.retry_of), (None, None));
        let again = h.save(&refused("t2"), &a).unwrap();
        assert_eq!(
            (again.duplicate_of, again.retry_of.as_deref()),
            (None, Some("t1"))
        );
        let acked = h.save(&entry("t3"), &a).unwrap();
        assert_eq!(
            (acked.duplicate_of, acked.retry_of.as_deref()),
            (None, Some("t1"))
        );
        drop(h);
        cap.close();
        // Reopened, the index knows which copy was acknowledged.
        let cap = super::open_again(&path);
        let h = cap.handle();
        let after = h.save(&refused("t4"), &a).unwrap();
        assert_eq!(
            (after.duplicate_of.as_deref(), after.retry_of),
            (Some("t3"), None)
        );
        drop(h);
        cap.close();
        let lines: Vec<_> = crate::capture::read(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let acked: Vec<bool> = lines.iter().map(|l| l.acked).collect();
        assert_eq!(acked, [false, false, true, false]);
        assert_eq!(lines[0].mode.as_deref(), Some("500"));
        assert_eq!(lines[1].retry_of.as_deref(), Some("t1"));
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use crate::receiver::ingest::{Auth, Config, decode};
    use std::sync::Mutex;

    /// Two files in turn: the path switches to the second at the check
    /// numbered `switch_at` (0 is the first check).
    /// When `fail_at` is given, that check fails (a pipe at the path).
    #[derive(Clone, Default)]
    struct Switching {
        files: Arc<Mutex<[Vec<u8>; 2]>>,
        current: Arc<Mutex<usize>>,
        checks: Arc<Mutex<usize>>,
        switch_at: usize,
        fail_at: Option<usize>,
    }

    impl Sink for Switching {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let at = *self.current.lock().unwrap();
            self.files.lock().unwrap()[at].extend_from_slice(buf);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            let at = *self.current.lock().unwrap();
            self.files.lock().unwrap()[at].truncate(len as usize);
            Ok(())
        }
        fn cut_left(&mut self, len: u64) -> io::Result<()> {
            self.files.lock().unwrap()[0].truncate(len as usize);
            Ok(())
        }
        fn ensure_at_path(&mut self, _len: u64) -> io::Result<Option<Switched>> {
            let mut checks = self.checks.lock().unwrap();
            *checks += 1;
            if Some(*checks - 1) == self.fail_at {
                return Err(io::Error::other("no longer names a file"));
            }
            if *checks - 1 == self.switch_at {
                *self.current.lock().unwrap() = 1;
                return Ok(Some(Switched {
                    message: "switched".into(),
                    len: 0,
                    file: None,
                    cut_at: None,
                    what: Taken::Replaced,
                }));
            }
            Ok(None)
        }
    }

    /// A file cut short in place: its synced lines end where it was cut,
    /// so a reader of it stops there (what the writer adds after the cut is
    /// the next file's), and goes on from there; a file replaced keeps its
    /// end.
    #[test]
    fn a_file_cut_short_ends_its_lines_where_it_was_cut() {
        let durable = Durable::new(0, 0);
        durable.grew(1000, 4);
        durable.switched(121, None, Some(120), Taken::CutShort);
        assert_eq!(
            durable.bound(0),
            Bound {
                limit: 120,
                next: Some(121)
            }
        );
        assert!(durable.same_file(1), "cut short: the same file");
        durable.grew(300, 1);
        durable.switched(40, None, None, Taken::Replaced);
        assert!(!durable.same_file(2), "replaced: another");
        assert_eq!(
            durable.bound(1),
            Bound {
                limit: 300,
                next: Some(40)
            }
        );
    }

    /// The handles of the files after the first are kept while a
    /// registered reader has not moved there, and only then: none with no
    /// reader, and each let go once every reader is past it.
    #[test]
    fn old_files_are_held_for_the_readers_behind_them_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: usize| Some(File::create(dir.path().join(format!("{n}"))).unwrap());
        let held =
            |d: &Durable| -> Vec<bool> { (0..=d.current()).map(|n| d.file(n).is_some()).collect() };
        let durable = Durable::new(0, 0);
        durable.switched(0, file(1), None, Taken::Replaced);
        assert_eq!(held(&durable), [false, false], "no reader: none kept");
        let (behind, ahead) = (durable.reader(1), durable.reader(1));
        durable.switched(0, file(2), None, Taken::Replaced);
        durable.switched(0, file(3), None, Taken::Replaced);
        assert_eq!(held(&durable), [false, false, true, true]);
        behind.moved_to(2);
        assert_eq!(held(&durable), [false, false, true, true], "one still at 1");
        ahead.moved_to(3);
        assert_eq!(held(&durable), [false, false, false, true], "both past 2");
        drop(ahead);
        behind.moved_to(3);
        assert_eq!(held(&durable), [false, false, false, false]);
        drop(behind);
        durable.switched(0, file(4), None, Taken::Replaced);
        assert_eq!(held(&durable), [false; 5], "no reader left");
    }

    #[test]
    fn a_file_deleted_during_the_write_gets_the_group_again_before_any_answer() {
        // Checks: 0 before the write, 1 after the sync: the file goes in
        // between, as if deleted while the group was being written.
        let sink = Switching {
            switch_at: 1,
            ..Switching::default()
        };
        let capture = Capture::with_sink(sink.clone(), 0, Index::default());
        let cfg = Config {
            auth: Auth::Open,
            max_body: 1 << 20,
        };
        let batch = decode(&cfg, None, br#"[{"@t":"a","@ts":"2026-01-01T00:00:00"}]"#).unwrap();
        let entry = Entry {
            received: "t1".into(),
            peer: "127.0.0.1:1".into(),
            unit_id: None,
            user_agent: None,
            content_type: None,
            accept: None,
            accept_encoding: None,
            wire_bytes: 3,
            acked: true,
            mode: "ok".into(),
        };
        assert!(capture.handle().save(&entry, &batch).is_ok());
        assert_eq!(capture.notices.try_recv().as_deref(), Ok("switched"));
        // Readers never see the group in the file that went away: it ends
        // before it, and they go on in the new file, where it is.
        let durable = capture.durable();
        assert_eq!(durable.current(), 1);
        assert_eq!(
            durable.bound(0),
            Bound {
                limit: 0,
                next: Some(0)
            }
        );
        let written = sink.files.lock().unwrap()[1].len() as u64;
        assert_eq!(
            durable.bound(1),
            Bound {
                limit: written,
                next: None
            }
        );
        assert_eq!(durable.lines().load(Ordering::SeqCst), 1);
        capture.close();
        let files = sink.files.lock().unwrap();
        let new = String::from_utf8(files[1].clone()).unwrap();
        assert_eq!(
            new.lines().count(),
            1,
            "the answered line is in the file at the path"
        );
        assert!(new.contains(r#""received":"t1""#), "{new}");
        assert!(
            files[0].is_empty(),
            "the copy in the file that went away was kept"
        );
    }

    /// A file switched from before a write is let go by that write, not
    /// held until the next look: a deleted capture on a full disk kept
    /// its blocks while the new file's write failed (a review).
    #[test]
    fn the_file_left_at_a_switch_before_a_write_is_let_go_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        let meta = file.metadata().unwrap();
        let mut sink = FileSink {
            identity: identity(&meta),
            cache: None,
            file,
            regular: true,
            path: path.clone(),
            left: None,
        };
        std::fs::remove_file(&path).unwrap();
        let deleted = format!("{} (deleted)", path.display());
        let open = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|to| to.to_str() == Some(deleted.as_str()))
        };
        assert!(sink.ensure_at_path(0).unwrap().is_some());
        assert!(open(), "kept for a cut until the write");
        sink.write_all(b"{}\n").unwrap();
        assert!(!open(), "the deleted file is still held");
    }

    /// The path lost after the write (a pipe put there): the group is
    /// answered 503 and cut off from the file it went to at once, also
    /// when the next write goes to a new file at the path. It stayed
    /// there, `acked:true`, and the device's re-send counted as its
    /// duplicate (a hostile-client probe).
    #[test]
    fn a_group_refused_for_a_path_lost_after_its_write_leaves_no_line() {
        // Checks: 0 before t1's write, 1 after it (fails), 2 before t2's
        // (the new file), 3 after it.
        let sink = Switching {
            switch_at: 2,
            fail_at: Some(1),
            ..Switching::default()
        };
        let capture = Capture::with_sink(sink.clone(), 0, Index::default());
        let h = capture.handle();
        let (entry, batch) = (super::tests::entry, super::tests::batch);
        let err = h.save(&entry("t1"), &batch(r#"[{"@t":"a"}]"#)).unwrap_err();
        assert!(err.to_string().contains("no longer names a file"), "{err}");
        let failing = capture.durable().failing().map(|f| f.why);
        assert_eq!(failing.as_deref(), Some("no longer names a file"));
        h.save(&entry("t2"), &batch(r#"[{"@t":"b"}]"#)).unwrap();
        assert_eq!(capture.durable().failing(), None);
        drop(h);
        capture.close();
        let files = sink.files.lock().unwrap();
        assert!(
            files[0].is_empty(),
            "{}",
            String::from_utf8_lossy(&files[0])
        );
        let new = String::from_utf8(files[1].clone()).unwrap();
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains(r#""received":"t2""#), "{new}");
    }
}

#[cfg(test)]
mod committer_tests {
    use super::*;
    use std::time::Duration;

    /// A sink that notes which thread wrote each group.
    #[derive(Clone, Default)]
    struct ThreadNames(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<u8>>>);

    impl Sink for ThreadNames {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.0.lock().unwrap().push(name);
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.1.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    fn batch(n: usize) -> Batch {
        super::tests::batch(&format!(
            r#"[{{"@t":"x","@ts":"2026-01-01T00:00:00","n":{n}}}]"#
        ))
    }

    fn entry(n: usize) -> Entry {
        super::tests::entry(&format!("t{n}"))
    }

    /// An upload that meets no other is committed by the thread saving it:
    /// no hand-off to the writer thread and back.
    #[test]
    fn a_lone_save_is_committed_by_its_own_thread() {
        let sink = ThreadNames::default();
        let capture = Capture::with_sink(sink.clone(), 0, Index::default());
        let handle = capture.handle();
        std::thread::Builder::new()
            .name("saver".into())
            .spawn(move || {
                for n in 0..20 {
                    handle.save(&entry(n), &batch(n)).unwrap();
                }
            })
            .unwrap()
            .join()
            .unwrap();
        capture.close();
        let names = sink.0.lock().unwrap().clone();
        assert_eq!(names.len(), 20);
        assert!(names.iter().all(|n| n == "saver"), "{names:?}");
    }

    /// Many savers at once: each is answered (whoever commits its line),
    /// and every line lands once.
    #[test]
    fn concurrent_saves_are_all_answered_and_written_once() {
        let sink = ThreadNames::default();
        let capture = Capture::with_sink(sink.clone(), 0, Index::default());
        let (done, answers) = crossbeam_channel::unbounded();
        for t in 0..8 {
            let handle = capture.handle();
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let n = t * 100 + i;
                    done.send(handle.save(&entry(n), &batch(n)).is_ok())
                        .unwrap();
                }
            });
        }
        drop(done);
        for _ in 0..800 {
            let ok = answers
                .recv_timeout(Duration::from_secs(20))
                .expect("a save was never answered");
            assert!(ok);
        }
        capture.close();
        let data = sink.1.lock().unwrap().clone();
        let text = String::from_utf8(data).unwrap();
        let mut received: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["received"].to_string())
            .collect();
        assert_eq!(received.len(), 800);
        received.sort();
        received.dedup();
        assert_eq!(received.len(), 800, "a line was written twice");
    }
}

/// The page cache of a capture's synced past is let go.
#[cfg(test)]
mod cache_tests {
    use super::super::cache::{CACHE_KEPT, CACHE_STEP};
    use super::tests::{batch, entry};
    use super::*;
    use std::time::Instant;

    /// Bytes of `path` in the page cache, by util-linux's `fincore`.
    fn resident(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) tells which pages are cached");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[test]
    fn a_long_capture_keeps_only_its_last_bytes_cached_and_every_line() {
        // On the disk under the build (a tmpfs /tmp has no pages to let go).
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        let path = dir.path().join("c.jsonl");
        let cap = super::open_again(&path);
        let h = cap.handle();
        // About 120 kB of records per line, 80 MiB in all.
        let records = format!(
            "[{}]",
            vec![r#"{"@t":"x","@ts":"2026-01-01T00:00:00","v":"0123456789"}"#; 2000].join(",")
        );
        let b = batch(&records);
        let lines = (80 << 20) / records.len();
        for i in 0..lines {
            h.save(&entry(&format!("t{i}")), &b).unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let most = CACHE_KEPT + CACHE_STEP + (1 << 20);
        // The pages are let go on a thread of their own: wait (bounded).
        let until = Instant::now() + Duration::from_secs(10);
        let mut cached = resident(&path);
        while cached > most && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            cached = resident(&path);
        }
        assert!(
            cached <= most,
            "{cached} of {len} bytes still cached (at most {most} expected)"
        );
        drop(h);
        cap.close();
        let reopened = super::open_again(&path);
        assert_eq!(reopened.recovered.lines, lines);
        assert_eq!(reopened.recovered.unreadable, 0);
    }
}

//! The capture wing: the file that is the record of truth. `writer` owns
//! the file and commits in groups (write every pending line, one fsync,
//! then answer every waiter); `reader` reads captures back tolerantly and
//! rebuilds the duplicate index when a capture is reopened, and follows
//! the file for the forwarders (`Tail`, up to the writer's `Durable` length);
//! `load` reads captures back tolerantly for the view, the live receiver's
//! start, `summary`, `export` and `replay`; `cache` lets the page cache of
//! the capture's synced past go.

mod cache;
pub mod export;
pub mod load;
mod reader;
pub mod replay;
pub mod summary;
mod writer;

pub use reader::{CapturedBatch, OutboxLine, Tail, read};
pub use writer::{
    Bound, Capture, CaptureHandle, Durable, Entry, FileSink, INDEX_AT_MOST, Index, Pending, Reader,
    Recovered, Saved, Seen, Sink, Switched, Taken,
};
pub(crate) use writer::{make_folder_again, sync_folder_of};

/// The duplicate index's key: a batch's content hash seen from one device.
/// The same body from two `unit-id`s is two batches (two devices can send
/// identical records, e.g. an empty power event at the same second).
pub type DeviceBatch = [u8; 32];

/// The key of `hash` sent by `unit_id` (None: very old firmware sends no
/// `unit-id`; all such batches share one device).
pub fn device_batch(unit_id: Option<&str>, hash: &[u8; 32]) -> DeviceBatch {
    let mut h = blake3::Hasher::new();
    h.update(hash);
    match unit_id {
        Some(id) => {
            h.update(b"\x01");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"\x00");
        }
    }
    *h.finalize().as_bytes()
}

/// The key of a capture line's `batch_hash` text sent by `unit_id`, the
/// text hashed as written, whatever it holds (a line edited by hand).
pub fn device_batch_of_text(unit_id: Option<&str>, hash: &str) -> DeviceBatch {
    device_batch(unit_id, blake3::hash(hash.as_bytes()).as_bytes())
}

/// What the offline readers (`view --summary`, `export`) keep of each
/// batch to tell one seen before: the first 16 bytes of its key (a unit id
/// and the hash's 64 hex digits as two strings took about 180 bytes a
/// batch: 2 million batches, 571 MB for a GPX export). Two batches of a
/// capture share one with a chance of about n² / 2¹²⁹.
pub type SeenBatch = u128;

/// `device_batch_of_text`, shortened to a `SeenBatch`.
pub fn seen_batch(unit_id: Option<&str>, hash: &str) -> SeenBatch {
    let key = device_batch_of_text(unit_id, hash);
    let mut first = [0u8; 16];
    first.copy_from_slice(&key[..16]);
    u128::from_le_bytes(first)
}

/// The set of batches seen, by `SeenBatch` (already a hash: a fast hasher
/// is enough).
pub type SeenBatches = foldhash::HashSet<SeenBatch>;

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

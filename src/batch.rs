//! The decoded batch: what the receiver accepted and the capture keeps.

use std::sync::Arc;

/// How the body actually arrived on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
        }
    }
}

/// A validated batch, ready to be captured.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The JSON array as the device sent it, on one line (whitespace between
    /// tokens removed only when the body spanned several lines).
    pub records_json: Arc<[u8]>,
    pub records: usize,
    /// Records lacking `@t` or `@ts`, or with an unparseable `@ts`.
    pub malformed: usize,
    /// Records whose `@ts` has no UTC offset (the device's own format).
    pub naive_timestamps: usize,
    pub encoding: Encoding,
    /// Bytes after inflating (equal to the wire size for plain bodies).
    pub body_bytes: usize,
    /// Set when the `content-encoding` header disagrees with the body.
    pub warning: Option<String>,
    /// Content hash of `records_json`: equal for byte-identical re-sends.
    pub hash: [u8; 32],
    /// The newest valid `@ts` of the batch (None: no record has one).
    pub newest_ts: Option<jiff::Timestamp>,
    /// The body exactly as it came over the wire, kept only when it differs
    /// from `records_json` (gzip, or whitespace between tokens): a forward
    /// sends the device's own bytes, and gzip cannot be redone byte for byte.
    pub wire: Option<Arc<[u8]>>,
    /// The `content-encoding` header as the device sent it.
    pub content_encoding: Option<String>,
}

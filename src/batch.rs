//! The decoded batch: what the receiver accepted and the capture keeps.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::time::TimestampKind;

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

/// What reading a batch's records found.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub records: usize,
    pub malformed: usize,
    pub naive: usize,
    pub newest: Option<jiff::Timestamp>,
}

/// Reads every record: the text must be a JSON array of objects. The one
/// rule for what the receiver accepts (`ingest`) and what a capture's
/// repair keeps as a batch.
pub fn scan(text: &str) -> Result<Counts, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    BatchSeed
        .deserialize(&mut de)
        .and_then(|s| de.end().map(|()| s))
}

struct BatchSeed;

impl<'de> DeserializeSeed<'de> for BatchSeed {
    type Value = Counts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Counts, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = Counts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of record objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counts, A::Error> {
        let mut scan = Counts::default();
        while let Some(head) = seq.next_element_seed(RecordSeed {
            index: scan.records,
        })? {
            scan.records += 1;
            let parsed = head.timestamp();
            if let Some((ts, _)) = parsed {
                scan.newest = scan.newest.max(Some(ts));
            }
            match parsed.map(|(_, kind)| kind) {
                Some(TimestampKind::Naive) if head.has_type => scan.naive += 1,
                Some(_) if head.has_type => {}
                _ => scan.malformed += 1,
            }
        }
        Ok(scan)
    }
}

/// The two fields every record should have, read without copying.
struct RecordHead<'de> {
    has_type: bool,
    ts: Option<Cow<'de, str>>,
}

impl RecordHead<'_> {
    fn timestamp(&self) -> Option<(jiff::Timestamp, TimestampKind)> {
        self.ts.as_deref().and_then(crate::time::parse_timestamp)
    }
}

struct RecordSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = RecordHead<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = RecordHead<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "record {} (0-based) to be a JSON object", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut head = RecordHead {
            has_type: false,
            ts: None,
        };
        while let Some(key) = map.next_key::<HeadKey>()? {
            match key {
                HeadKey::Type => head.has_type = map.next_value::<MaybeStr<'de>>()?.0.is_some(),
                HeadKey::Timestamp => head.ts = map.next_value::<MaybeStr<'de>>()?.0,
                HeadKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// A record key, told apart without allocating (serde's `Cow<str>` always
/// copies, which cost more than the rest of the scan).
enum HeadKey {
    Type,
    Timestamp,
    Other,
}

impl<'de> serde::Deserialize<'de> for HeadKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HeadKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeadKey, E> {
                Ok(match v {
                    "@t" => HeadKey::Type,
                    "@ts" => HeadKey::Timestamp,
                    _ => HeadKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A value that is kept when it is a string and skipped otherwise.
struct MaybeStr<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

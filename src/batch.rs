//! The decoded batch: what the receiver accepted and the capture keeps.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

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
///
/// A lone UTF-16 surrogate escape (`"\udc80"`, no partner) is JSON by its
/// grammar, and Python's `json.dumps` writes one for a string holding a
/// surrogate, but serde_json refuses it wherever a string is read as text
/// (a key, `@t`, `@ts`): such a body is read again as `readable` gives it,
/// so that it is not refused, and retried by the device for ever, for one
/// character. Only a body that failed is looked at again.
///
/// A number too large for an f64 in `@t` or `@ts` (`"@ts":1e400`) fails
/// the first reading, which takes numbers there as serde_json parses them
/// (the fast way for the strings they nearly always are): the second reads
/// those two fields as raw text, so such a record is malformed, not the
/// batch refused (a hostile-client probe, December 5). Raw text for every
/// record cost 9 % of a 1000-record batch's decoding (218 → 238 µs), so
/// only a body that failed on a lone surrogate or such a number pays it.
pub fn scan(text: &str) -> Result<Counts, serde_json::Error> {
    scan_as_is::<false>(text).or_else(|e| match readable(text) {
        Cow::Owned(read) => scan_as_is::<true>(&read),
        Cow::Borrowed(_) if out_of_range(&e) => scan_as_is::<true>(text),
        Cow::Borrowed(_) => Err(e),
    })
}

/// serde_json's error for a number too large for an f64 (its message is
/// all that tells it; `numbers_beyond_an_f64_in_the_head_are_malformed_not_refused`
/// fails if it changes).
fn out_of_range(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("number out of range")
}

/// `text` as readers of records take it: each `\u` escape of a lone
/// surrogate written `\ufffd` (the replacement character) in place, so
/// the text keeps its length and an error its position. Escapes of a
/// surrogate pair, and everything else, are left as they are; borrowed
/// when there is nothing to replace. What is captured, hashed and
/// forwarded is the text as it came; only reading goes through this.
pub fn readable(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    if memchr::memmem::find(b, b"\\u").is_none() {
        return Cow::Borrowed(text);
    }
    let hex = |at: usize| -> Option<u32> {
        let digits = b.get(at..at + 4)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let (high, low) = (0xD800..0xDC00, 0xDC00..0xE000);
    // Where the four hex digits of each lone surrogate's escape begin.
    let mut lone = Vec::new();
    let mut at = 0;
    // Backslashes are walked from the start, each escape skipped whole, so
    // that `\\u` (an escaped backslash, then `u`) is not taken for one.
    while let Some(found) = b.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let i = at + found;
        at = i + 2;
        if b.get(i + 1) != Some(&b'u') {
            continue;
        }
        let Some(unit) = hex(i + 2) else {
            continue;
        };
        at = i + 6;
        if high.contains(&unit) {
            let paired = b.get(i + 6..i + 8) == Some(&b"\\u"[..])
                && hex(i + 8).is_some_and(|next| low.contains(&next));
            if paired {
                at = i + 12;
            } else {
                lone.push(i + 2);
            }
        } else if low.contains(&unit) {
            lone.push(i + 2);
        }
    }
    if lone.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut read = text.to_owned();
    for at in lone {
        read.replace_range(at..at + 4, "fffd");
    }
    Cow::Owned(read)
}

/// One reading of `text`: `@t` and `@ts` as raw text when `RAW`.
fn scan_as_is<const RAW: bool>(text: &str) -> Result<Counts, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    BatchSeed::<RAW>
        .deserialize(&mut de)
        .and_then(|s| de.end().map(|()| s))
}

struct BatchSeed<const RAW: bool>;

impl<'de, const RAW: bool> DeserializeSeed<'de> for BatchSeed<RAW> {
    type Value = Counts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Counts, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, const RAW: bool> Visitor<'de> for BatchSeed<RAW> {
    type Value = Counts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of record objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counts, A::Error> {
        let mut scan = Counts::default();
        while let Some(head) = seq.next_element_seed(RecordSeed::<RAW> {
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

struct RecordSeed<const RAW: bool> {
    index: usize,
}

impl<'de, const RAW: bool> DeserializeSeed<'de> for RecordSeed<RAW> {
    type Value = RecordHead<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const RAW: bool> Visitor<'de> for RecordSeed<RAW> {
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
                HeadKey::Type => {
                    head.has_type = map.next_value::<MaybeStr<'de, RAW>>()?.0.is_some();
                }
                HeadKey::Timestamp => head.ts = map.next_value::<MaybeStr<'de, RAW>>()?.0,
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

/// A value that is kept when it is a string and skipped otherwise; read
/// as raw text when `RAW` (see `scan`).
struct MaybeStr<'de, const RAW: bool>(Option<Cow<'de, str>>);

impl<'de, const RAW: bool> serde::Deserialize<'de> for MaybeStr<'de, RAW> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if RAW {
            // serde_json's own reading of a number as an f64 is skipped.
            let raw = <&'de serde_json::value::RawValue>::deserialize(d)?.get();
            let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
                return Ok(MaybeStr(None));
            };
            if !inner.contains('\\') {
                return Ok(MaybeStr(Some(Cow::Borrowed(inner))));
            }
            return serde_json::from_str::<String>(raw)
                .map(|s| MaybeStr(Some(Cow::Owned(s))))
                .map_err(de::Error::custom);
        }
        struct V<const RAW: bool>;
        impl<'de, const RAW: bool> Visitor<'de> for V<RAW> {
            type Value = MaybeStr<'de, RAW>;
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
        d.deserialize_any(V::<RAW>)
    }
}

/// Calls `each` with every record of `records` (a JSON array) and its
/// index, in order, holding none (a list of a batch's records costs 16
/// bytes a record, and a 33 MB batch of `{}` has 11 million), until
/// `each` says no; how many there were (those taken), or why the text is
/// not an array (or holds more after it).
pub fn each_record<'a>(
    records: &'a str,
    each: impl FnMut(usize, &'a RawValue) -> bool,
) -> Result<usize, serde_json::Error> {
    struct Each<'s, F>(F, &'s std::cell::Cell<Option<usize>>);
    impl<'de, F: FnMut(usize, &'de RawValue) -> bool> serde::de::Visitor<'de> for Each<'_, F> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            mut self,
            mut seq: A,
        ) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(record) = seq.next_element::<&'de RawValue>()? {
                if !(self.0)(n, record) {
                    self.1.set(Some(n));
                    return Ok(n);
                }
                n += 1;
            }
            Ok(n)
        }
    }
    // Stopped early, the rest is not read: serde_json then finds the
    // array unended, which is no error here.
    let stopped = std::cell::Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(records);
    match serde::Deserializer::deserialize_seq(&mut de, Each(each, &stopped)) {
        Ok(n) if stopped.get().is_some() => Ok(n),
        Ok(n) => de.end().map(|()| n),
        Err(e) => stopped.get().ok_or(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Records are handed over one at a time, in order, until told to
    /// stop; a text that is not an array is an error.
    #[test]
    fn records_are_read_one_at_a_time_until_told_to_stop() {
        let mut seen = Vec::new();
        let all = each_record(r#"[{"a":1}, 2 ,"x"]"#, |i, r| {
            seen.push((i, r.get().to_string()));
            true
        });
        assert_eq!(all.unwrap(), 3);
        assert_eq!(
            seen,
            [
                (0, r#"{"a":1}"#.into()),
                (1, "2".into()),
                (2, r#""x""#.into())
            ]
        );
        assert_eq!(each_record("[1,2,3,4]", |i, _| i < 1).unwrap(), 1);
        assert_eq!(each_record("[]", |_, _| true).unwrap(), 0);
        assert!(each_record(r#"{"a":1}"#, |_, _| true).is_err());
        assert!(each_record("[1,", |_, _| true).is_err());
        assert!(each_record("[1] x", |_, _| true).is_err());
        // Stopped early, what follows is not read.
        assert_eq!(each_record("[1,2] x", |i, _| i < 1).unwrap(), 1);
    }

    #[test]
    fn readable_replaces_lone_surrogates_only() {
        let cases = [
            (r#""a\udc80b""#, r#""a\ufffdb""#),
            (r#""\ud800""#, r#""\ufffd""#),
            (r#""\uD83D\uDE00""#, r#""\uD83D\uDE00""#),
            (r#""\ud83d\ud83d\ude00""#, r#""\ufffd\ud83d\ude00""#),
            (r#""\ude00\ud83d""#, r#""\ufffd\ufffd""#),
            (r#""\\ud800""#, r#""\\ud800""#),
            (r#""\\\ud800""#, r#""\\\ufffd""#),
            (r#""\u00e6\n\"""#, r#""\u00e6\n\"""#),
            ("\"\\ud8", "\"\\ud8"),
            ("\\", "\\"),
            ("", ""),
        ];
        for (given, read) in cases {
            assert_eq!(readable(given), read, "{given}");
        }
        assert!(matches!(readable(r#""\u00e6""#), Cow::Borrowed(_)));
    }

    #[test]
    fn numbers_beyond_an_f64_in_the_head_are_malformed_not_refused() {
        let body = r#"[{"@t":"x","@ts":1e400},{"@t":-1e400,"@ts":"2026-12-05T00:00:00Z"},{"@t":"y","@ts":"2026-12-05T00:00:0\u0031Z","v":1e400}]"#;
        let counts = scan(body).unwrap();
        assert_eq!((counts.records, counts.malformed), (3, 2));
        assert_eq!(counts.newest, Some("2026-12-05T00:00:01Z".parse().unwrap()));
    }

    #[test]
    fn a_lone_surrogate_is_read_not_refused() {
        let body = r#"[{"@t":"obd.\udc80x","@ts":"2026-12-05T00:00:00Z","k\ud800":"\udfff"},{"@t":"obd.rpm","@ts":"2026-12-05T00:00:01Z"}]"#;
        let counts = scan(body).unwrap();
        assert_eq!(counts.records, 2);
        assert_eq!(counts.malformed, 0);
        // A timestamp with a lone surrogate is read, and is no timestamp.
        let bad_ts = r#"[{"@t":"x","@ts":"2026-12-05\udc80"}]"#;
        assert_eq!(scan(bad_ts).unwrap().malformed, 1);
        // A body wrong for another reason is refused where serde_json says.
        let wrong = r#"[{"@t":"\udc80"},]"#;
        let as_is = serde_json::from_str::<serde_json::Value>(&readable(wrong)).unwrap_err();
        let e = scan(wrong).unwrap_err();
        assert_eq!((e.line(), e.column()), (as_is.line(), as_is.column()));
    }

    proptest! {
        /// Any UTF-16 string, lone surrogates included, written as
        /// Python's json.dumps writes it (every unit past ASCII as `\u`),
        /// reads back as its lossy decoding: each lone unit one U+FFFD.
        #[test]
        fn readable_reads_what_python_writes(units in proptest::collection::vec(
            prop_oneof![
                Just(u16::from(b'\\')),
                Just(u16::from(b'"')),
                Just(u16::from(b'u')),
                0x20u16..0x7f,
                0xd800u16..0xe000,
                0x80u16..0xffff,
            ],
            0..24,
        )) {
            let mut json = String::from("\"");
            for &u in &units {
                match u {
                    0x5c => json.push_str("\\\\"),
                    0x22 => json.push_str("\\\""),
                    0x20..0x7f => json.push(char::from(u as u8)),
                    _ => json.push_str(&format!("\\u{u:04x}")),
                }
            }
            json.push('"');
            let read: String = serde_json::from_str(&readable(&json)).unwrap();
            prop_assert_eq!(read, String::from_utf16_lossy(&units));
        }
    }
}

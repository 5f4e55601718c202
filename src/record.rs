//! Typed views of the records the screen shows. Parsing borrows from the
//! batch text and leaves untouched whatever the screen does not need: the
//! capture keeps every original value anyway.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::time::{TimestampKind, parse_timestamp};

/// One record: its type, its time and what the screen shows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    /// `@t`, or "" when missing.
    pub kind_name: Cow<'a, str>,
    /// `@ts` as UTC; None when missing or unparseable.
    pub ts: Option<Timestamp>,
    /// True when `@ts` had no offset (the device's own format).
    pub naive: bool,
    pub view: View<'a>,
    /// `@tag`, for events.
    pub tag: Option<Cow<'a, str>>,
    /// Every field but `@t`/`@ts`/`@tag`, as raw JSON text, in arrival order.
    pub fields: Vec<(Cow<'a, str>, &'a str)>,
    /// `@t`, `@ts` and `@tag` as raw JSON text, as sent (the last of
    /// each): an export writes the record back with them.
    pub head: [Option<&'a str>; 3],
    /// Of `@t`, `@ts` or `@tag` given twice, the earlier, in arrival
    /// order: only CSV writes them (`@ts#2`...); every other reader takes
    /// the last (while they were kept among `fields`, the dashboard
    /// showed `@tag=a`).
    pub earlier: Vec<(Cow<'a, str>, &'a str)>,
}

/// What the screen knows how to show.
#[derive(Clone, Debug, PartialEq)]
pub enum View<'a> {
    Position(Position),
    Battery(Battery<'a>),
    DataUsage {
        sent: Option<u64>,
        recv: Option<u64>,
    },
    Event {
        tag: Cow<'a, str>,
    },
    Obd {
        pid: Cow<'a, str>,
        value: Option<Scalar<'a>>,
        unit: Option<Cow<'a, str>>,
    },
    Dtc {
        code: Option<Cow<'a, str>>,
        text: Option<Cow<'a, str>>,
    },
    Accelerometer {
        x: Option<f64>,
        y: Option<f64>,
        z: Option<f64>,
    },
    RpiTemp {
        cpu: Option<f64>,
        gpu: Option<f64>,
    },
    /// Any other `@t`: shown by its fields only.
    Other,
}

/// `track.pos`. Speed (`sog`) is in km/h.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub alt: Option<f64>,
    pub sog_kmh: Option<f64>,
    pub cog: Option<f64>,
    pub nsat: Option<u32>,
    pub utc: Option<String>,
}

impl Position {
    /// Latitude and longitude when both name a place on Earth (latitude
    /// -90 to 90, longitude -180 to 180): what a map or a summary can show.
    /// `1e308` was a summary's first fix, 309 digits. A longitude of 180
    /// is given as -180, the same meridian, in GPX's range (-180 up to
    /// 180): it was no place at all, and left off the map, a review found.
    pub fn on_earth(&self) -> Option<(f64, f64)> {
        match (self.lat, self.lon) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, if lon == 180.0 { -180.0 } else { lon }))
            }
            _ => None,
        }
    }
}

/// `obd.bat`.
#[derive(Clone, Debug, PartialEq)]
pub struct Battery<'a> {
    pub voltage: Option<f64>,
    pub level: Option<f64>,
    pub state: Option<Cow<'a, str>>,
}

impl Battery<'_> {
    /// The states the device reports as faults.
    pub fn is_error_state(&self) -> bool {
        matches!(
            self.state.as_deref(),
            Some("overcharging" | "charging_slow" | "critical_level")
        )
    }
}

/// An OBD value: usually a number, sometimes text.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Number(f64),
    Text(Cow<'a, str>),
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Number(n) => Shown(*n).fmt(f),
            Scalar::Text(t) => f.write_str(t),
        }
    }
}

/// A device's number as the screen writes it: past any reading's size, or
/// below its precision, in exponent form (`1e308` written out is 309
/// digits, and a number beyond f64's precision looks exact when it is
/// not); otherwise as it is.
pub struct Shown(pub f64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n.abs() >= 1e15 || (n != 0.0 && n.abs() < 1e-6) {
            write!(f, "{n:e}")
        } else {
            write!(f, "{n}")
        }
    }
}

/// Parses a whole batch (a JSON array of objects) into typed views.
pub fn parse_batch(json: &str) -> Result<Vec<Record<'_>>, serde_json::Error> {
    let mut records = Vec::new();
    for_each_record(json, |mut r| {
        r.view = r.make_view();
        records.push(r);
    })?;
    Ok(records)
}

/// Calls `f` with each record of a batch in order, view left `Other`,
/// without collecting them: no batch-sized allocation per call (those went
/// back to the OS and were faulted in again on every batch). An item that
/// is not an object (`"a"`, `1`, `null`: the receiver refuses such a
/// batch, but a capture edited by hand or written by another tool may
/// hold one) is passed over and counted: the count is returned. Until December 5 the first such item ended the walk, and every
/// record after it was missing from the summary, the exports and the
/// dashboard.
pub fn for_each_record<'a>(
    json: &'a str,
    mut f: impl FnMut(Record<'a>),
) -> Result<u64, serde_json::Error> {
    struct Each<'f, F>(&'f mut F);
    impl<'de, F: FnMut(Record<'de>)> Visitor<'de> for Each<'_, F> {
        type Value = u64;
        fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
            out.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut passed_over = 0;
            while let Some(item) = seq.next_element::<RawFields<'de>>()? {
                match item.0 {
                    Some(fields) => (self.0)(Record::from_fields(fields)),
                    None => passed_over += 1,
                }
            }
            Ok(passed_over)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let passed_over = de.deserialize_seq(Each(&mut f))?;
    de.end()?;
    Ok(passed_over)
}

impl<'a> Record<'a> {
    fn from_fields(mut fields: Vec<(Cow<'a, str>, &'a str)>) -> Record<'a> {
        let mut kind_name = Cow::Borrowed("");
        let mut ts_text = None;
        let mut tag = None;
        let mut head: [Option<&'a str>; 3] = [None; 3];
        // Of `@t`, `@ts` or `@tag` given twice, the last is read, and the
        // earlier are kept for CSV (`@ts#2`...: they were gone from every
        // export, a second probe, December 7).
        let mut earlier = Vec::new();
        // In place: one allocation per record is most of the parsing cost.
        fields.retain(|(key, value)| {
            let at = match key.as_ref() {
                "@t" => {
                    kind_name = json_str(value).unwrap_or_default();
                    0
                }
                "@ts" => {
                    ts_text = json_str(value);
                    1
                }
                "@tag" => {
                    tag = json_str(value);
                    2
                }
                _ => return true,
            };
            if let Some(before) = head[at].replace(*value) {
                earlier.push((key.clone(), before));
            }
            false
        });
        let parsed = ts_text.as_deref().and_then(parse_timestamp);
        Record {
            ts: parsed.map(|(t, _)| t),
            naive: matches!(parsed, Some((_, TimestampKind::Naive))),
            kind_name,
            view: View::Other,
            tag,
            fields,
            head,
            earlier,
        }
    }

    /// The raw JSON text of field `key`.
    /// A field's raw value; of a key given twice, the last, as `@t` and
    /// `@ts` are read and as JSON parsers (serde_json, JavaScript, Python)
    /// take it: the first made a GeoJSON fix's position disagree with its
    /// properties and time (a hostile-client probe).
    pub fn field(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.field(key).and_then(number)
    }

    fn text(&self, key: &str) -> Option<Cow<'a, str>> {
        self.field(key).and_then(json_str)
    }

    /// `{"value": 45.2, "unit": "C"}` or a bare number.
    fn nested_value(&self, key: &str) -> Option<f64> {
        let raw = self.field(key)?;
        match members(raw, ["value"]) {
            Some([value]) => value.and_then(number),
            None => number(raw),
        }
    }

    /// The typed view of this record, from its type and fields.
    pub fn make_view(&self) -> View<'a> {
        let tag = self.tag.clone();
        let name = self.kind_name.as_ref();
        match name {
            "track.pos" => {
                let [lat, lon] = self
                    .field("loc")
                    .and_then(|raw| members(raw, ["lat", "lon"]))
                    .unwrap_or_default();
                View::Position(Position {
                    lat: lat.and_then(number),
                    lon: lon.and_then(number),
                    alt: self.num("alt"),
                    sog_kmh: self.num("sog"),
                    cog: self.num("cog"),
                    // A count: anything that is not one is no count
                    // (`as` would saturate 2^80 to 4294967295).
                    nsat: self
                        .num("nsat")
                        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
                        .map(|n| n as u32),
                    utc: self.text("utc").map(Cow::into_owned),
                })
            }
            "obd.bat" => View::Battery(Battery {
                voltage: self.num("voltage"),
                level: self.num("level"),
                state: self.text("state"),
            }),
            "ec2x.data_usage" => View::DataUsage {
                sent: self.num("sent").map(|n| n as u64),
                recv: self.num("recv").map(|n| n as u64),
            },
            "obd.dtc" => View::Dtc {
                code: self.text("code"),
                text: self.text("text"),
            },
            "acc.xyz" => View::Accelerometer {
                x: self.num("x"),
                y: self.num("y"),
                z: self.num("z"),
            },
            "rpi.temp" => View::RpiTemp {
                cpu: self.nested_value("cpu"),
                gpu: self.nested_value("gpu"),
            },
            _ if name.starts_with("event.") || tag.is_some() => View::Event {
                tag: tag.unwrap_or(Cow::Borrowed("")),
            },
            _ if name.starts_with("obd.") => {
                let pid = match &self.kind_name {
                    Cow::Borrowed(s) => Cow::Borrowed(&s[4..]),
                    Cow::Owned(s) => Cow::Owned(s[4..].to_string()),
                };
                let value = self.field("value").and_then(scalar);
                View::Obd {
                    pid,
                    value,
                    unit: self.text("unit"),
                }
            }
            _ => View::Other,
        }
    }

    /// Event fields other than the `@` ones as `key=value`, strings
    /// unquoted, stopped once it holds more than `most` characters (the
    /// caller cuts it there and marks the cut): a record of 1.6 M fields
    /// was written out whole, 28 MB, to show 160 characters of it.
    pub fn fields_as_pairs(&self, most: usize) -> String {
        let mut out = String::new();
        // Characters are at most 4 bytes: past this, more than `most`.
        let enough = most.saturating_mul(4).saturating_add(4);
        let push = |out: &mut String, piece: &str| {
            let mut cut = enough.saturating_sub(out.len()).min(piece.len());
            while !piece.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&piece[..cut]);
        };
        for (k, v) in &self.fields {
            if out.len() >= enough {
                break;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            push(&mut out, k);
            out.push('=');
            match json_str(v) {
                Some(s) => push(&mut out, &s),
                None => push(&mut out, v),
            }
        }
        out
    }
}

/// A JSON string literal's text, borrowed unless it holds escapes. (serde's
/// own `Cow<str>` always allocates, which made parsing twice as slow.)
/// `raw` is one value of a batch serde_json has already validated, so a
/// literal without a backslash is its own text between the quotes.
///
/// Anything but a string literal is None at once: asking serde_json made
/// it build an error message for each number, and one record of 200 000
/// numeric fields took the dashboard 300 ms (a hostile-client probe).
fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<BorrowedStr<'_>>(raw)
        .ok()
        .map(|s| s.0)
}

/// A JSON number's value, as serde_json reads it. `raw` is a validated
/// JSON value. Up to 15 digits without an exponent both readers are exact,
/// so Rust's own parser is used there; longer numbers go to serde_json,
/// which may round them differently in the last place.
fn number(raw: &str) -> Option<f64> {
    if !raw.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
        return None;
    }
    let digits = raw.bytes().filter(u8::is_ascii_digit).count();
    if digits <= 15 && !raw.contains(['e', 'E']) {
        raw.parse::<f64>().ok()
    } else {
        serde_json::from_str::<f64>(raw).ok()
    }
}

/// A string that borrows from the input whenever serde_json allows it.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BorrowedStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// An OBD value: a number, a string, and any other JSON value by its kind
/// (`true`, `null`, `{…}`, `[…]`: they showed blank).
fn scalar(raw: &str) -> Option<Scalar<'_>> {
    if let Some(n) = number(raw) {
        return Some(Scalar::Number(n));
    }
    if let Some(text) = json_str(raw) {
        return Some(Scalar::Text(text));
    }
    let raw = raw.trim();
    let kind = match raw.as_bytes().first()? {
        b'{' => "{…}",
        b'[' => "[…]",
        _ if matches!(raw, "true" | "false" | "null") => raw,
        _ => return None,
    };
    Some(Scalar::Text(Cow::Borrowed(kind)))
}

/// One record's `@t` from its JSON, as every reader takes it: of `@t`
/// given twice, the last; None when it has none that is a string, or
/// `raw` is no object. The MQTT forwarder's topic read it with a derived
/// struct, which refuses a key given twice, so such a record went to
/// `_untyped` (a review).
pub fn type_of(raw: &str) -> Option<String> {
    let [t] = members(raw, ["@t"])?;
    json_str(t?).map(Cow::into_owned)
}

/// Of `raw`, a JSON object, the raw values of `keys`: of a key given
/// twice, the last, as a record's own fields are read (see
/// `Record::field`); `None` when `raw` is no object. One pass, nothing
/// kept but the values asked for (the others are skipped). serde's
/// derived structs refuse a key given twice, and a fix with `lat` twice
/// in its `loc` was dropped by every reader, which the README says take
/// the last (a hostile-client probe, December 7); they also read an array
/// as the fields in order, so `[57.3, 9.9]` was a fix.
fn members<'a, const N: usize>(raw: &'a str, keys: [&str; N]) -> Option<[Option<&'a str>; N]> {
    struct Seed<'k, const N: usize>([&'k str; N]);
    impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for Seed<'_, N> {
        type Value = [Option<&'de str>; N];
        // Anything but an object (an array, a string, a number...) is
        // refused by serde_json here, and read as none below.
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, const N: usize> Visitor<'de> for Seed<'_, N> {
        type Value = [Option<&'de str>; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = [None; N];
            while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
                match self.0.iter().position(|k| *k == key) {
                    Some(i) => found[i] = Some(map.next_value::<&'de RawValue>()?.get()),
                    None => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    serde::de::DeserializeSeed::deserialize(Seed(keys), &mut de).ok()
}

/// Every field of one object, values left as raw JSON text; None for an
/// item of a batch that is not an object (read past, not kept).
struct RawFields<'a>(Option<Vec<(Cow<'a, str>, &'a str)>>);

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawFields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a record object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, value.get()));
                }
                Ok(RawFields(Some(fields)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawFields(None))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RawFields(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_that_are_not_objects_are_passed_over_and_counted() {
        let mut kinds = Vec::new();
        let passed = for_each_record(
            r#"[{"@t":"a"},"s",1,-2,3.5,true,null,[{"@t":"x"}],{"@t":"b"},{}]"#,
            |r| kinds.push(r.kind_name.to_string()),
        )
        .unwrap();
        assert_eq!(kinds, ["a", "b", ""]);
        assert_eq!(passed, 7);
        assert!(for_each_record(r#"[{"@t":"a"},"#, |_| {}).is_err());
    }

    #[test]
    fn numbers_past_a_reading_are_shown_in_exponent_form() {
        let shown = |n: f64| Scalar::Number(n).to_string();
        assert_eq!(shown(1500.0), "1500");
        assert_eq!(shown(-12.25), "-12.25");
        assert_eq!(shown(0.0), "0");
        assert_eq!(shown(1e308), "1e308");
        assert_eq!(
            shown(123456789012345678901234567890.0),
            "1.2345678901234568e29"
        );
        assert_eq!(shown(1e-7), "1e-7");
    }

    #[test]
    fn a_place_on_earth_takes_either_edge_of_the_meridian_180() {
        let at = |lat: f64, lon: f64| {
            Position {
                lat: Some(lat),
                lon: Some(lon),
                ..Position::default()
            }
            .on_earth()
        };
        assert_eq!(at(57.0, 180.0), Some((57.0, -180.0)));
        assert_eq!(at(57.0, -180.0), Some((57.0, -180.0)));
        assert_eq!(at(90.0, 179.9), Some((90.0, 179.9)));
        assert_eq!(at(57.0, 180.0001), None);
        assert_eq!(at(-90.1, 9.9), None);
    }

    #[test]
    fn a_key_given_twice_is_read_at_its_last() {
        let batch = r#"[{"@t":"track.pos","@ts":"2026-11-27T08:00:00Z","loc":{"lat":1,"lon":2},"loc":{"lat":57,"lon":9}}]"#;
        let recs = parse_batch(batch).unwrap();
        let View::Position(p) = &recs[0].view else {
            panic!("{:?}", recs[0].view);
        };
        assert_eq!((p.lat, p.lon), (Some(57.0), Some(9.0)));
        // Inside the object too: a fix with `lat` twice was no fix.
        let batch = r#"[{"@t":"track.pos","loc":{"lat":57.2,"lon":9.9,"lat":58}},
            {"@t":"rpi.temp","cpu":{"value":40,"unit":"C","value":41}},
            {"@t":"track.pos","loc":[57.3,9.9]},
            {"@t":"track.pos","loc":{"lat":"57","lon":null}}]"#;
        let recs = parse_batch(batch).unwrap();
        let View::Position(p) = &recs[0].view else {
            panic!("{:?}", recs[0].view);
        };
        assert_eq!((p.lat, p.lon), (Some(58.0), Some(9.9)));
        let View::RpiTemp { cpu, .. } = &recs[1].view else {
            panic!("{:?}", recs[1].view);
        };
        assert_eq!(*cpu, Some(41.0));
        // A bare number is a reading too; an array or a string is none.
        for (cpu, want) in [("45.2", Some(45.2)), ("[45.2]", None), ("\"45.2\"", None)] {
            let text = format!(r#"[{{"@t":"rpi.temp","cpu":{cpu}}}]"#);
            let recs = parse_batch(&text).unwrap();
            let View::RpiTemp { cpu, .. } = &recs[0].view else {
                panic!("{:?}", recs[0].view);
            };
            assert_eq!(*cpu, want, "{text}");
        }
        // `@tag` twice: the last is the tag, and the earlier is no field
        // a reader other than CSV sees (the dashboard showed `@tag=a`).
        let recs = parse_batch(r#"[{"@t":"event.x","@tag":"a","@tag":"b","n":1}]"#).unwrap();
        assert_eq!(recs[0].tag.as_deref(), Some("b"));
        assert_eq!(recs[0].fields_as_pairs(100), "n=1");
        assert_eq!(recs[0].earlier, [(Cow::Borrowed("@tag"), "\"a\"")]);
        let recs = parse_batch(batch).unwrap();
        // An array is no `loc`, and a string no latitude.
        for r in &recs[2..] {
            let View::Position(p) = &r.view else {
                panic!("{:?}", r.view);
            };
            assert_eq!((p.lat, p.lon), (None, None));
        }
    }

    /// OBD values that are neither number nor string are shown by kind
    /// (they showed blank).
    #[test]
    fn an_obd_value_of_another_kind_is_shown_by_its_kind() {
        let value = |v: &str| {
            let batch = format!(r#"[{{"@t":"obd.x","@ts":"2026-11-27T08:00:00Z","value":{v}}}]"#);
            let recs = parse_batch(&batch).unwrap();
            let View::Obd { value, .. } = &recs[0].view else {
                panic!("{:?}", recs[0].view);
            };
            value.as_ref().map(|v| v.to_string())
        };
        assert_eq!(value("true").as_deref(), Some("true"));
        assert_eq!(value("false").as_deref(), Some("false"));
        assert_eq!(value("null").as_deref(), Some("null"));
        assert_eq!(value(r#"{"a": [1, 2]}"#).as_deref(), Some("{…}"));
        assert_eq!(value(" [1, 2]").as_deref(), Some("[…]"));
        assert_eq!(value("1e308").as_deref(), Some("1e308"));
        assert_eq!(value(r#""P0300""#).as_deref(), Some("P0300"));
    }

    #[test]
    fn raw_values_read_like_serde_json_reads_them() {
        for raw in [
            "12",
            "-0.5",
            "1e3",
            "2.5E-2",
            "0",
            "-0",
            "123456789012345",
            "905848.5486265641",
            "96666.484773788636",
            "192e-83",
            "18446744073709551616",
        ] {
            assert_eq!(number(raw), serde_json::from_str::<f64>(raw).ok(), "{raw}");
        }
        for raw in [r#""12""#, "null", "true", "[1]", "1e400"] {
            assert_eq!(number(raw), None, "{raw}");
        }
        assert_eq!(json_str(r#""plain""#), Some(Cow::Borrowed("plain")));
        assert_eq!(json_str(r#""a\"b""#).as_deref(), Some(r#"a"b"#));
        assert_eq!(json_str(r#""\u00e6""#).as_deref(), Some("æ"));
        assert_eq!(json_str(r#""""#).as_deref(), Some(""));
        assert_eq!(json_str("12"), None);
        assert_eq!(json_str("\""), None);
    }

    #[test]
    fn guide_position_and_event() {
        let text = r#"[{"utc":"06:02:24","cog":140.22,"nsat":9,"alt":34,"@ts":"2020-09-03T12:38:24.374314Z","@t":"track.pos","sog":0,"loc":{"lat":57.02241,"lon":9.89919}},
        {"trigger":"stn","awaken":"sleeping","@ts":"2021-02-24T09:02:02.532461Z","@tag":"system/power/on","@t":"event.system.power"}]"#;
        let recs = parse_batch(text).unwrap();
        let View::Position(p) = &recs[0].view else {
            panic!("{:?}", recs[0].view)
        };
        assert_eq!(
            (p.lat, p.lon, p.nsat, p.sog_kmh),
            (Some(57.02241), Some(9.89919), Some(9), Some(0.0))
        );
        assert_eq!(p.utc.as_deref(), Some("06:02:24"));
        assert!(!recs[0].naive);
        // A satellite count that is no count is none, not clamped.
        for nsat in ["1208925819614629174706176", "-1", "2.5"] {
            let one =
                format!(r#"[{{"@t":"track.pos","@ts":"2020-09-03T12:38:24Z","nsat":{nsat}}}]"#);
            let View::Position(p) = &parse_batch(&one).unwrap()[0].view else {
                panic!()
            };
            assert_eq!(p.nsat, None, "{nsat}");
        }
        assert_eq!(
            recs[1].view,
            View::Event {
                tag: "system/power/on".into()
            }
        );
        assert_eq!(recs[1].fields_as_pairs(100), "trigger=stn awaken=sleeping");
    }

    #[test]
    fn obd_values_and_unknown_types() {
        let text = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:02","value":830.5,"unit":"revolutions_per_minute"},
        {"@t":"obd.vin","@ts":"2026-11-27T08:00:02","value":"WVW123"},
        {"@t":"rpi.temp","@ts":"2026-11-27T08:00:02","cpu":{"value":51.5,"unit":"C"},"gpu":{"value":50,"unit":"C"}},
        {"@t":"custom.thing","@ts":"bad","x":1}]"#;
        let recs = parse_batch(text).unwrap();
        assert_eq!(
            recs[0].view,
            View::Obd {
                pid: "rpm".into(),
                value: Some(Scalar::Number(830.5)),
                unit: Some("revolutions_per_minute".into())
            }
        );
        assert!(recs[0].naive);
        assert_eq!(
            recs[1].view,
            View::Obd {
                pid: "vin".into(),
                value: Some(Scalar::Text("WVW123".into())),
                unit: None
            }
        );
        assert_eq!(
            recs[2].view,
            View::RpiTemp {
                cpu: Some(51.5),
                gpu: Some(50.0)
            }
        );
        assert_eq!(recs[3].view, View::Other);
        assert_eq!(recs[3].ts, None);
        assert_eq!(recs[3].field("x"), Some("1"));
    }

    #[test]
    fn fields_as_pairs_stops_past_what_is_asked() {
        let mut text = String::from(r#"[{"@t":"event.wide","@ts":"2026-11-27T08:00:00Z""#);
        for k in 0..10_000 {
            text.push_str(&format!(r#","k{k}":{k}"#));
        }
        text.push_str(&format!(r#","long":"{}"}}]"#, "é".repeat(100_000)));
        let recs = parse_batch(&text).unwrap();
        let pairs = recs[0].fields_as_pairs(10);
        assert!(pairs.starts_with("k0=0 k1=1 k2=2"), "{pairs}");
        assert!(pairs.chars().count() > 10 && pairs.len() <= 60, "{pairs}");
        // One long value is cut too, on a character's edge.
        let text = format!(r#"[{{"@t":"x","note":"{}"}}]"#, "é".repeat(100_000));
        let recs = parse_batch(&text).unwrap();
        let pairs = recs[0].fields_as_pairs(10);
        assert!(pairs.starts_with("note=éé"), "{pairs}");
        assert!(pairs.chars().count() > 10 && pairs.len() <= 60, "{pairs}");
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let text =
            r#"[{"@t":"event.x","@ts":"2026-11-27T08:00:00Z","@tag":"a/b","note":"tab\there"}]"#;
        let recs = parse_batch(text).unwrap();
        assert!(matches!(recs[0].kind_name, Cow::Borrowed("event.x")));
        assert!(matches!(recs[0].fields[0].0, Cow::Borrowed("note")));
        assert_eq!(recs[0].fields_as_pairs(100), "note=tab\there");
        assert_eq!(recs[0].view, View::Event { tag: "a/b".into() });
    }
}

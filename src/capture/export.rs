//! `autopi-rx export`: captures into the formats other tools read. GPX
//! (one track per device, a segment per drive), GeoJSON (a LineString per
//! drive, cut at the antimeridian, and a Point per fix) and CSV (one record
//! type per file, nested fields as dotted columns), and `batches` (JSON
//! Lines, a batch a line, as the device sent it: the format of the
//! dashboard's save key too, both written by `write_batch`). Only delivered
//! batches count (a batch's first acknowledged copy, a retry's
//! included): duplicates and unacknowledged lines are left out, also a
//! batch found again in another file.
//!
//! A drive is a run of one device's fixes, in time order, with no silence
//! longer than `summary::GAP` (five minutes) between two of them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::load::{self, CaptureLine, Located, Progress};
use super::summary::GAP;
use crate::record::{Record, View, for_each_record};

/// The Garmin track point extension: where GPX 1.1 readers look for speed
/// and course (plain GPX 1.1 has neither).
const TPX_NS: &str = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2";
const GPX_NS: &str = "http://www.topografix.com/GPX/1/1";
/// Record types written to a folder at most (one file each).
const MAX_TYPE_FILES: usize = 1024;

/// What to keep.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only records of this `@t`.
    pub kind: Option<String>,
    pub unit_id: Option<String>,
    /// Records stamped at or after this time.
    pub from: Option<Timestamp>,
    /// Records stamped before this time.
    pub to: Option<Timestamp>,
    /// Only the batch received at this time (its capture line's
    /// `received`, as the request detail shows it).
    pub received: Option<Timestamp>,
}

impl Filter {
    /// A device is picked by its unit-id, or by the name `view --summary`
    /// and the dashboard give a missing or empty one: `(no unit-id)` picks
    /// the batches sent without one (they could not be exported alone
    /// before: a probe, December 7), `(empty unit-id)` those sent with an
    /// empty one. The name stands for that case only: a device that calls
    /// itself `(no unit-id)` is not picked with them (a second probe).
    fn batch(&self, line: &CaptureLine) -> bool {
        self.device(line) && self.received.is_none_or(|r| r == line.received)
    }

    /// Whether the line's device is the one `--unit-id` picks (or none is
    /// asked).
    fn device(&self, line: &CaptureLine) -> bool {
        self.unit_id.as_deref().is_none_or(|u| match u {
            crate::event::NO_UNIT_ID => line.unit_id.is_none(),
            crate::event::EMPTY_UNIT_ID => line.unit_id.as_deref() == Some(""),
            u => line.unit_id.as_deref() == Some(u),
        })
    }

    /// Whether any record is left out by type or time.
    fn picks_records(&self) -> bool {
        self.kind.is_some() || self.from.is_some() || self.to.is_some()
    }

    fn record(&self, r: &Record<'_>) -> bool {
        // `(no @t)`, the name the summary gives, picks the records
        // without a type, and only those (it picked a type so named as
        // well, and two types to one CSV panicked: a second probe).
        let kind = match self.kind.as_deref() {
            Some(crate::event::NO_TYPE) => Some(""),
            kind => kind,
        };
        if kind.is_some_and(|k| k != r.kind_name) {
            return false;
        }
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        r.ts.is_some_and(|ts| self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts < t))
    }
}

/// Why an export failed.
#[derive(Debug)]
pub struct ExportError(pub String);

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError(e.to_string())
    }
}

/// What was written, for the closing line on stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub batches: u64,
    /// Lines left out: duplicates, unacknowledged.
    pub left_out: u64,
    /// Records (CSV rows, or fixes for GPX and GeoJSON).
    pub records: u64,
    /// Drives (GPX segments, GeoJSON LineStrings).
    pub drives: u64,
    /// Positions without a usable latitude/longitude, not drawn.
    pub unusable_fixes: u64,
    pub files: Vec<PathBuf>,
}

/// Reads every delivered batch of `paths` that passes the unit-id filter,
/// in file order, skipping a batch already read from an earlier line or
/// file; `consume` says whether the batch gave the output anything (a
/// batch with no record of the filter's type or times counts in no
/// closing line). Each file is read up to its length when its reading
/// begins, or up to `upto`'s (a first pass's), and the lengths read to are
/// given back: a capture still being written is read to the same line by
/// both passes of a CSV export (the second read lines the first never saw,
/// and a type or a column only they held was left out without a word: a
/// probe of the offline tools). Warnings about the files go to stderr, on
/// a first pass only (a second one said each again).
fn for_each_batch<T: Send>(
    paths: &[PathBuf],
    upto: Option<&[u64]>,
    filter: &Filter,
    written: &mut Written,
    prepare: impl Fn(Located, CaptureLine) -> T + Sync,
    mut consume: impl FnMut(T) -> bool,
) -> io::Result<Vec<u64>> {
    let mut seen = crate::capture::SeenBatches::default();
    let mut lengths = Vec::with_capacity(paths.len());
    // With --unit-id, the devices the files hold, to name when it picks
    // none (a typo exported nothing, exit 0, without a word: a probe). By
    // the device alone: with --received too it named the device it said
    // was missing (a review).
    let mut device_found = false;
    let mut devices: Vec<String> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let total = match upto.and_then(|u| u.get(i)) {
            Some(&length) => length,
            None => crate::input::capture_metadata(path)?.len(),
        };
        lengths.push(total);
        let mut progress = Progress::new(format!("reading {}", crate::text::path(&path)), total);
        let report = load::scan(
            path,
            Some(total),
            load::Packed::Inflated,
            |at, line| {
                let picked = filter.batch(&line);
                let delivered = line.delivered();
                let keep = delivered && picked;
                let key = line
                    .batch_hash
                    .as_deref()
                    .map(|h| crate::capture::seen_batch(line.unit_id.as_deref(), h));
                let found = filter.device(&line);
                let device = (filter.unit_id.is_some() && !found)
                    .then(|| crate::event::device_name(line.unit_id.as_deref()).to_string());
                Some((
                    keep,
                    picked,
                    key,
                    delivered,
                    (found, device, keep.then(|| prepare(at, line))),
                ))
            },
            |_, (keep, picked, key, delivered, (found, device, item))| {
                device_found |= found;
                if let Some(device) = device
                    && devices.len() < DEVICES_NAMED
                    && !devices.contains(&device)
                {
                    devices.push(device);
                }
                // Counted left out only among the batches the filter picks
                // (it counted the whole file's: a UX review).
                if !delivered {
                    written.left_out += u64::from(picked);
                    return;
                }
                if let Some(key) = key
                    && !seen.insert(key)
                {
                    written.left_out += u64::from(picked);
                    return;
                }
                if let (true, Some(item)) = (keep, item)
                    && consume(item)
                {
                    written.batches += 1;
                }
            },
            |done, total| progress.update(done, total),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", crate::text::path(&path))))?;
        progress.finish();
        if upto.is_none() {
            report.warn();
        }
    }
    if let (Some(unit), false, None) = (&filter.unit_id, device_found, upto) {
        let held = match devices.len() {
            0 => "no batch at all".to_string(),
            n => format!(
                "batches from {}{}",
                devices
                    .iter()
                    .map(|d| crate::text::shown(d).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                if n == DEVICES_NAMED { ", …" } else { "" }
            ),
        };
        crate::say!(
            "warning: no batch from unit-id {} in the captures; they hold {held}",
            crate::text::shown(unit)
        );
    }
    Ok(lengths)
}

/// Devices a warning names at most.
const DEVICES_NAMED: usize = 8;

/// One position, as exported.
#[derive(Clone, Debug)]
struct Fix {
    /// `@ts`, or when the batch arrived if the record has none.
    order: Timestamp,
    ts: Option<Timestamp>,
    lat: f64,
    lon: f64,
    alt: Option<f64>,
    sog_kmh: Option<f64>,
    cog: Option<f64>,
    nsat: Option<u32>,
    /// The record as sent (for GeoJSON properties).
    raw: Option<Box<str>>,
}

/// Fixes per device, in time order (late batches take their place).
struct Tracks {
    devices: Vec<(Option<String>, Vec<Fix>)>,
}

/// The refusal of `--type` other than `track.pos` with GPX or GeoJSON.
const POSITIONS_ONLY: &str = "GPX and GeoJSON hold positions: --type can only be track.pos there";

fn collect_fixes(
    paths: &[PathBuf],
    filter: &Filter,
    keep_raw: bool,
    written: &mut Written,
) -> Result<Tracks, ExportError> {
    if filter.kind.as_deref().is_some_and(|k| k != "track.pos") {
        return Err(ExportError(POSITIONS_ONLY.into()));
    }
    let filter = Filter {
        kind: Some("track.pos".into()),
        ..filter.clone()
    };
    let mut index: HashMap<Option<String>, usize> = HashMap::new();
    let mut devices: Vec<(Option<String>, Vec<Fix>)> = Vec::new();
    let mut unusable = 0;
    for_each_batch(
        paths,
        None,
        &filter,
        written,
        |_, line| {
            let mut fixes = Vec::new();
            let mut bad = 0u64;
            let Some(text) = line.records_text() else {
                return (line.unit_id, fixes, bad);
            };
            let _ = for_each_record(&text, |r| {
                if !filter.record(&r) {
                    return;
                }
                let View::Position(p) = r.make_view() else {
                    return;
                };
                match p.on_earth() {
                    Some((lat, lon)) => fixes.push(Fix {
                        order: r.ts.unwrap_or(line.received),
                        ts: r.ts,
                        lat,
                        lon,
                        alt: p.alt,
                        sog_kmh: p.sog_kmh,
                        cog: p.cog,
                        nsat: p.nsat,
                        raw: keep_raw.then(|| record_text(&r)),
                    }),
                    _ => bad += 1,
                }
            });
            (line.unit_id, fixes, bad)
        },
        |(unit, fixes, bad)| {
            unusable += bad;
            if fixes.is_empty() {
                return false;
            }
            let i = *index.entry(unit.clone()).or_insert_with(|| {
                devices.push((unit, Vec::new()));
                devices.len() - 1
            });
            devices[i].1.extend(fixes);
            true
        },
    )?;
    written.unusable_fixes = unusable;
    for (_, fixes) in &mut devices {
        fixes.sort_by_key(|f| f.order);
        written.records += fixes.len() as u64;
    }
    Ok(Tracks { devices })
}

/// The record back as one JSON object, `@t`/`@ts`/`@tag` as sent (the
/// last of each, as every reader but CSV takes them). `@ts` was left out,
/// so a stamp the export could not read was gone from it (a review,
/// December 7). Its own size, not the doubling capacity it was made in:
/// every fix's text is held until the end.
fn record_text(r: &Record<'_>) -> Box<str> {
    let mut out = String::from("{");
    let mut push = |k: &str, v: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v);
    };
    for (k, v) in &r.fields {
        push(k, v);
    }
    for (k, v) in ["@t", "@ts", "@tag"].into_iter().zip(r.head) {
        if let Some(v) = v {
            push(k, v);
        }
    }
    out.push('}');
    out.into_boxed_str()
}

/// Puts `value` at `key` among a fix's properties; a field of the
/// record's own by that name moves to `key#2` (or `#3`…), as CSV keeps
/// it, also when there is no `value` (a fix without a readable stamp has
/// no `time`, and a `time` there is the device's, not UTC). It was
/// overwritten without a word (a probe, December 7).
fn own_property(props: &mut geojson::JsonObject, key: &str, value: Option<geojson::JsonValue>) {
    if let Some(theirs) = props.remove(key) {
        let free = (2..)
            .map(|n| format!("{key}#{n}"))
            .find(|k| !props.contains_key(k))
            .expect("a free name");
        props.insert(free, theirs);
    }
    if let Some(value) = value {
        props.insert(key.into(), value);
    }
}

/// A course over ground as GPX's extension takes it, in [0, 360):
/// `rem_euclid` rounds a tiny negative (-1e-15) up to 360 itself, which
/// the schema refuses (a review, December 7).
fn course(cog: f64) -> Option<f64> {
    let c = cog.rem_euclid(360.0);
    c.is_finite().then_some(if c < 360.0 { c } else { 0.0 })
}

/// 0001-01-01T00:00:00Z in seconds since the Unix epoch: the first time
/// GPX's `xs:dateTime` can say.
const GPX_YEAR_ONE: i64 = -62_135_596_800;

/// Splits time-ordered fixes into drives.
fn drives(fixes: &[Fix]) -> Vec<&[Fix]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=fixes.len() {
        let split = i == fixes.len()
            || fixes[i].order.as_millisecond() - fixes[i - 1].order.as_millisecond() > GAP;
        if split {
            out.push(&fixes[start..i]);
            start = i;
        }
    }
    out
}

fn device_name(unit: &Option<String>) -> &str {
    crate::event::device_name(unit.as_deref())
}

/// GPX 1.1: a track per device, a segment per drive; each point with its
/// time, elevation, satellites, and speed (m/s) and course in the Garmin
/// track point extension. Written with xml-rs: the `gpx` crate's writer
/// (0.10) drops speed and has no course or extensions.
pub fn gpx(paths: &[PathBuf], filter: &Filter, out: impl Write) -> Result<Written, ExportError> {
    use xml::writer::{EmitterConfig, XmlEvent};
    let mut written = Written::default();
    let tracks = collect_fixes(paths, filter, false, &mut written)?;
    let mut w = EmitterConfig::new()
        .perform_indent(true)
        .create_writer(io::BufWriter::new(out));
    let xml_err = |e: xml::writer::Error| ExportError(format!("writing GPX: {e}"));
    let el = |w: &mut xml::EventWriter<_>, name: &str, text: &str| -> Result<(), ExportError> {
        w.write(XmlEvent::start_element(name)).map_err(xml_err)?;
        w.write(XmlEvent::characters(text)).map_err(xml_err)?;
        w.write(XmlEvent::end_element()).map_err(xml_err)
    };
    w.write(
        XmlEvent::start_element("gpx")
            .default_ns(GPX_NS)
            .ns("gpxtpx", TPX_NS)
            .ns("xsi", "http://www.w3.org/2001/XMLSchema-instance")
            .attr("version", "1.1")
            .attr("creator", concat!("autopi-rx ", env!("CARGO_PKG_VERSION")))
            .attr(
                "xsi:schemaLocation",
                "http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd",
            ),
    )
    .map_err(xml_err)?;
    for (unit, fixes) in &tracks.devices {
        w.write(XmlEvent::start_element("trk")).map_err(xml_err)?;
        // XML 1.0 holds no control characters, which a unit-id may; nor
        // is a bidi control shown as it is.
        el(&mut w, "name", &crate::text::xml_text(device_name(unit)))?;
        el(&mut w, "src", "AutoPi device, via autopi-rx")?;
        for drive in drives(fixes) {
            written.drives += 1;
            w.write(XmlEvent::start_element("trkseg"))
                .map_err(xml_err)?;
            for f in drive {
                let (lat, lon) = (f.lat.to_string(), f.lon.to_string());
                w.write(
                    XmlEvent::start_element("trkpt")
                        .attr("lat", &lat)
                        .attr("lon", &lon),
                )
                .map_err(xml_err)?;
                if let Some(alt) = f.alt.filter(|a| a.is_finite()) {
                    el(&mut w, "ele", &alt.to_string())?;
                }
                // GPX's `xs:dateTime` has no year 0, which a device's
                // `0000-01-01T00:00:00Z` (or year 1 at +23:59) is: such a
                // point keeps its place without a time (the file failed the
                // schema until December 6, a hostile-client probe).
                if let Some(ts) = f.ts.filter(|t| t.as_second() >= GPX_YEAR_ONE) {
                    el(&mut w, "time", &ts.to_string())?;
                }
                if let Some(n) = f.nsat {
                    el(&mut w, "sat", &n.to_string())?;
                }
                let speed = f.sog_kmh.filter(|s| s.is_finite() && *s >= 0.0);
                let course = f.cog.and_then(course);
                if speed.is_some() || course.is_some() {
                    w.write(XmlEvent::start_element("extensions"))
                        .map_err(xml_err)?;
                    w.write(XmlEvent::start_element("gpxtpx:TrackPointExtension"))
                        .map_err(xml_err)?;
                    if let Some(s) = speed {
                        el(&mut w, "gpxtpx:speed", &(s / 3.6).to_string())?;
                    }
                    if let Some(c) = course {
                        el(&mut w, "gpxtpx:course", &c.to_string())?;
                    }
                    w.write(XmlEvent::end_element()).map_err(xml_err)?;
                    w.write(XmlEvent::end_element()).map_err(xml_err)?;
                }
                w.write(XmlEvent::end_element()).map_err(xml_err)?;
            }
            w.write(XmlEvent::end_element()).map_err(xml_err)?;
        }
        w.write(XmlEvent::end_element()).map_err(xml_err)?;
    }
    w.write(XmlEvent::end_element()).map_err(xml_err)?;
    let mut inner = w.into_inner();
    inner.write_all(b"\n")?;
    inner.flush()?;
    Ok(written)
}

/// GeoJSON: a FeatureCollection with a LineString per drive of two fixes
/// or more (a MultiLineString when it crosses the antimeridian; properties:
/// device, drive number, start, end, points) and a Point per fix whose
/// properties are the record's fields plus `unit_id` and `time` (UTC).
pub fn geojson(
    paths: &[PathBuf],
    filter: &Filter,
    out: impl Write,
) -> Result<Written, ExportError> {
    use geojson::{Feature, FeatureWriter, Geometry, JsonObject};
    let mut written = Written::default();
    let tracks = collect_fixes(paths, filter, true, &mut written)?;
    // Bidi, C1 and DEL in a device's strings written as JSON escapes (the
    // same values): the file may be shown on a terminal (stdout).
    let mut fw = FeatureWriter::from_writer(io::BufWriter::new(crate::text::JsonEscaper::new(
        io::BufWriter::new(out),
    )));
    // The geojson crate wraps every serde_json error, a failed write
    // included, as "Error while deserializing GeoJSON: …": a full disk is
    // said as the write error it is.
    let gj_err = |e: geojson::Error| {
        ExportError(match e {
            geojson::Error::MalformedGeoJson(e) if e.is_io() => format!("writing GeoJSON: {e}"),
            geojson::Error::Io(e) => format!("writing GeoJSON: {e}"),
            e => format!("writing GeoJSON: {e}"),
        })
    };
    for (unit, fixes) in &tracks.devices {
        for (n, drive) in drives(fixes).into_iter().enumerate() {
            written.drives += 1;
            let parts = split_at_antimeridian(drive.iter().map(|f| [f.lon, f.lat]));
            let mut props = JsonObject::new();
            props.insert("unit_id".into(), unit.clone().into());
            props.insert("drive".into(), (n + 1).into());
            props.insert("start".into(), drive[0].order.to_string().into());
            props.insert(
                "end".into(),
                drive[drive.len() - 1].order.to_string().into(),
            );
            props.insert("points".into(), drive.len().into());
            // A LineString needs two positions (RFC 7946); a lone fix is
            // only its Point. A drive across the antimeridian is cut there
            // (RFC 7946, 3.1.9): a MultiLineString of its parts.
            let geometry = match <[_; 1]>::try_from(parts) {
                Ok([line]) => Some(Geometry::new_line_string(line)),
                Err(parts) if parts.is_empty() => None,
                Err(parts) => Some(Geometry::new_multi_line_string(parts)),
            };
            if let Some(geometry) = geometry {
                let feature = Feature {
                    geometry: Some(geometry),
                    properties: Some(props),
                    ..Feature::default()
                };
                fw.write_feature(&feature).map_err(gj_err)?;
            }
            for f in drive {
                let mut props = f.raw.as_deref().map(properties).unwrap_or_default();
                own_property(&mut props, "unit_id", Some(unit.clone().into()));
                own_property(&mut props, "drive", Some((n + 1).into()));
                let time = f.ts.map(|ts| ts.to_string().into());
                own_property(&mut props, "time", time);
                let feature = Feature {
                    geometry: Some(Geometry::new_point([f.lon, f.lat])),
                    properties: Some(props),
                    ..Feature::default()
                };
                fw.write_feature(&feature).map_err(gj_err)?;
            }
        }
    }
    fw.finish().map_err(gj_err)?;
    // `finish` leaves what is buffered to the drop, which drops a write
    // error too: `-o /dev/full` said "exported" with exit 0.
    fw.flush().map_err(gj_err)?;
    Ok(written)
}

/// A drive's positions (`[lon, lat]`) as lines that never cross the
/// antimeridian (RFC 7946, 3.1.9). Two fixes more than 180 degrees of
/// longitude apart are taken the short way, across the line: the first
/// part ends at the crossing (latitude interpolated along the step) on its
/// side, +180 or -180, and the next starts there on the other side. A part
/// left with fewer than two positions (a drive that leaves from a fix
/// exactly on the line) is dropped. Without a crossing, one part: the
/// drive as it is. Longitudes are in [-180, 180) (`collect_fixes` keeps no
/// other): a step from +180 itself would divide by zero.
fn split_at_antimeridian(fixes: impl IntoIterator<Item = [f64; 2]>) -> Vec<Vec<[f64; 2]>> {
    let mut parts = Vec::new();
    let mut part: Vec<[f64; 2]> = Vec::new();
    for p @ [lon, lat] in fixes {
        if let Some(&last @ [last_lon, last_lat]) = part.last()
            && (lon - last_lon).abs() > 180.0
        {
            // The side left from, the step taken the short way.
            let side = if last_lon > 0.0 { 180.0 } else { -180.0 };
            let unwrapped = lon + 2.0 * side;
            let t = (side - last_lon) / (unwrapped - last_lon);
            let cross = last_lat + t * (lat - last_lat);
            // A fix on the line is not written twice.
            if last != [side, cross] {
                part.push([side, cross]);
            }
            parts.push(std::mem::take(&mut part));
            part.push([-side, cross]);
            if p == [-side, cross] {
                continue;
            }
        }
        part.push(p);
    }
    parts.push(part);
    parts.retain(|p| p.len() >= 2);
    parts
}

/// A fix's record as GeoJSON properties, field by field: a field nested
/// deeper than serde_json reads into a `Value` (128 levels; the receiver
/// accepts any depth) is its JSON text, where the whole record's
/// properties used to be left out.
fn properties(raw: &str) -> geojson::JsonObject {
    let Ok(Entries(entries)) = serde_json::from_str::<Entries<'_>>(raw) else {
        return geojson::JsonObject::new();
    };
    entries
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v.get())
                .unwrap_or_else(|_| serde_json::Value::String(v.get().to_string()));
            (k.into_owned(), value)
        })
        .collect()
}

/// Where CSV goes: one file (or stdout) for one type, or a folder.
pub enum CsvOut<'a> {
    One(Box<dyn Write + 'a>),
    Folder(&'a Path),
}

/// The columns every CSV starts with.
const FIXED: [&str; 4] = ["@ts", "@t", "unit_id", "received"];

/// How CSV cells are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cells {
    /// As captured.
    #[default]
    AsCaptured,
    /// A cell a spreadsheet would take for a formula gets a leading `'`
    /// (`--spreadsheet-safe`).
    SpreadsheetSafe,
}

impl Cells {
    /// `cell`, with a `'` before it when it is to be spreadsheet-safe and
    /// starts as a formula does (`=`, `+`, `-`, `@`, a tab or a carriage
    /// return: OWASP's list for CSV injection; also a line feed, and any
    /// of the four behind spaces or line breaks, which an import that
    /// trims cells would take as a formula too) without being a JSON
    /// number (`-5.2` stays a number; `-inf` does not).
    fn written<'a>(self, cell: &'a str) -> Cow<'a, [u8]> {
        const BLANK: [char; 4] = [' ', '\t', '\r', '\n'];
        // serde_json takes whitespace around a number: `\t1` is not one
        // here.
        let number =
            cell.trim() == cell && serde_json::from_str::<serde_json::Number>(cell).is_ok();
        let formula = (cell.starts_with(['\t', '\r', '\n'])
            || cell
                .trim_start_matches(BLANK)
                .starts_with(['=', '+', '-', '@']))
            && !number;
        if self == Cells::SpreadsheetSafe && formula {
            Cow::Owned(format!("'{cell}").into_bytes())
        } else {
            Cow::Borrowed(cell.as_bytes())
        }
    }
}

/// CSV: one record type per file, `@ts` as RFC 3339 UTC (empty when
/// missing or unreadable), nested fields as dotted columns (`loc.lat`, arrays by
/// index: `x.0`), in the order first seen. Two passes: the first finds
/// every column, so the header is complete. With `Cells::SpreadsheetSafe`
/// every cell, the header's too (a field's name comes from the device),
/// goes through `Cells::written`.
pub fn csv(
    paths: &[PathBuf],
    filter: &Filter,
    out: CsvOut<'_>,
    cells: Cells,
) -> Result<Written, ExportError> {
    if matches!(out, CsvOut::One(_)) && filter.kind.is_none() {
        return Err(ExportError(
            "CSV holds one record type per file: give --type T, or -o FOLDER for a file per type"
                .into(),
        ));
    }
    // Pass 1: the columns of every type. Written to one file, every row
    // is taken as of the one type asked for, so that no filter can give
    // the one writer two (a filter that let two through indexed past it:
    // a panic, a second probe).
    let one = matches!(out, CsvOut::One(_));
    let mut types = Types::default();
    let mut ignored = Written::default();
    let read_to = for_each_batch(
        paths,
        None,
        filter,
        &mut ignored,
        |_, line| {
            // A batch's types and their columns, each looked up by name: a
            // batch of 100 000 types, or of as many keys, was searched
            // through once per record (or key), 24 s before the refusal
            // for too many types (a hostile-client probe, December 7).
            let mut found = Types::default();
            if let Some(text) = line.records_text() {
                let _ = for_each_record(&text, |r| {
                    if !filter.record(&r) {
                        return;
                    }
                    let cols = found.columns(if one { "" } else { &r.kind_name });
                    for k in flat_keys(&r) {
                        cols.add(k);
                    }
                });
            }
            found
        },
        |found| {
            for (kind, keys) in found.list {
                let cols = types.columns(&kind);
                for k in keys.names {
                    cols.add(k);
                }
            }
            true
        },
    )?;
    let Types {
        list: mut columns,
        at: index,
    } = types;
    if columns.len() > MAX_TYPE_FILES {
        return Err(ExportError(format!(
            "the captures hold {} record types, more than the {MAX_TYPE_FILES} files written at most",
            columns.len()
        )));
    }
    let mut written = Written::default();
    let mut partials: Vec<(Partial, PathBuf)> = Vec::new();
    let mut writers: Vec<csv::Writer<Box<dyn Write + '_>>> = Vec::new();
    match out {
        CsvOut::One(w) => {
            writers.push(csv::Writer::from_writer(w));
        }
        CsvOut::Folder(dir) => {
            // A folder made here goes again with its files on a signal
            // (an empty one was left, a review found).
            remove_partials_on_a_signal();
            let mut partials_held = Partial::listed();
            if !dir.exists() {
                partials_held.made_dir = Some(dir.to_path_buf());
            }
            std::fs::create_dir_all(dir).map_err(|e| {
                ExportError(format!("cannot create {}: {e}", crate::text::path(&dir)))
            })?;
            drop(partials_held);
            let mut names = HashSet::new();
            for (kind, _) in &columns {
                let path = dir.join(file_name(kind, &mut names));
                // Written beside, renamed over the name once every file is
                // whole: a failure (a full disk) leaves the files there were.
                let (partial, file) = beside(&path)?;
                partials.push((partial, path.clone()));
                written.files.push(path);
                writers.push(csv::Writer::from_writer(Box::new(io::BufWriter::new(file))));
            }
        }
    }
    let csv_err = |e: csv::Error| ExportError(format!("writing CSV: {e}"));
    let single = writers.len() == 1 && columns.len() <= 1;
    if single && columns.is_empty() {
        // Nothing of that type: still a header, so the file is a valid CSV.
        columns.push((filter.kind.clone().unwrap_or_default(), Columns::default()));
    }
    for (i, (_, cols)) in columns.iter().enumerate() {
        let w = &mut writers[if single { 0 } else { i }];
        w.write_record(
            FIXED
                .iter()
                .copied()
                .chain(cols.names.iter().map(String::as_str))
                .map(|name| cells.written(name)),
        )
        .map_err(csv_err)?;
    }
    // Pass 2: the rows.
    let mut failed: Option<ExportError> = None;
    let mut rows_written = 0;
    for_each_batch(
        paths,
        Some(&read_to),
        filter,
        &mut written,
        |_, line| {
            // A batch's rows are made beside the writing, on the reading
            // thread, when they are few; a large batch's are made one at a
            // time as they are written: a batch of 10 million `{}` held
            // 2.9 GB of rows (about 250 bytes each) until it was written.
            if line.records.len() > ROWS_MADE_AHEAD {
                return Rows::Later(line);
            }
            let mut rows = Vec::new();
            each_row(&line, filter, |row| rows.push(row));
            Rows::Made(rows)
        },
        |rows| {
            let mut some = false;
            let mut write = |row: Row| {
                some = true;
                let i = match index.get(&row.kind) {
                    _ if single => 0,
                    Some(&i) => i,
                    None => return,
                };
                let cols = &columns[i].1;
                let mut out = vec![String::new(); FIXED.len() + cols.names.len()];
                for (slot, cell) in out.iter_mut().zip(row.fixed) {
                    *slot = cell;
                }
                for (k, v) in row.values {
                    if let Some(&c) = cols.at.get(&k) {
                        out[FIXED.len() + c] = v;
                    }
                }
                let w = &mut writers[if single { 0 } else { i }];
                if let Err(e) = w.write_record(out.iter().map(|cell| cells.written(cell))) {
                    failed.get_or_insert(csv_err(e));
                }
                rows_written += 1;
            };
            match rows {
                Rows::Made(rows) => rows.into_iter().for_each(&mut write),
                Rows::Later(line) => each_row(&line, filter, &mut write),
            }
            some
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    written.records = rows_written;
    for mut w in writers {
        w.flush()?;
    }
    persist(partials, None)?;
    Ok(written)
}

/// Renames the files `beside` made over their names, once all are whole,
/// all under one hold of `PARTIALS`: a signal comes before every rename
/// (and removes every file) or after all of them (a CSV folder was left
/// with some of its files new and the rest gone, a review found). `named`
/// is what the operator asked for (`-o`) when it is not the file itself,
/// said if a rename fails.
fn persist(partials: Vec<(Partial, PathBuf)>, named: Option<&Path>) -> Result<(), ExportError> {
    let mut held = Partial::listed();
    // Taken out of their `Partial`s first: one dropped while the list is
    // held would wait for it for ever.
    let files: Vec<(tempfile::NamedTempFile, PathBuf)> = partials
        .into_iter()
        .map(|(mut partial, target)| (partial.0.take().expect("persisted once"), target))
        .collect();
    held.listed
        .retain(|l| !files.iter().any(|(file, _)| file.path() == l));
    // A folder where a file goes fails its rename, after those before it
    // replaced their files: a CSV folder was left part new, part old (a
    // review). Refused before any rename, every file as it was.
    let all = files.len();
    // What became of the files, after `done` of them were renamed.
    let said = |done: usize| match done {
        0 if all > 1 => format!(" (none of the {all} files was written)"),
        0 => String::new(),
        n => format!(
            " ({n} of the {all} files {} written before it; the rest are as they were)",
            if n == 1 { "was" } else { "were" }
        ),
    };
    if let Some((_, target)) = files
        .iter()
        .find(|(_, target)| std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()))
    {
        return Err(ExportError(format!(
            "cannot write {}: a folder is in its place{}",
            crate::text::path(&named.unwrap_or(target)),
            said(0)
        )));
    }
    for (file, target) in files {
        let done = held.renamed;
        if let Err(e) = file.persist(&target) {
            // Renames cannot be undone: the files they replaced are gone.
            // A signal from now to the exit says the error stands.
            held.failed = true;
            return Err(ExportError(format!(
                "cannot write {}: {}{}",
                crate::text::path(&named.unwrap_or(&target)),
                e.error,
                said(done)
            )));
        }
        held.renamed += 1;
    }
    Ok(())
}

/// The files an export is writing beside their names, and how many it
/// renamed over them: a signal removes the first and says the second.
struct Partials {
    listed: Vec<PathBuf>,
    renamed: usize,
    /// A rename failed: the export ends with its error, whatever came of
    /// the renames before it.
    failed: bool,
    /// A CSV folder this export made: removed with its partial files.
    made_dir: Option<PathBuf>,
}

static PARTIALS: std::sync::Mutex<Partials> = std::sync::Mutex::new(Partials {
    listed: Vec::new(),
    renamed: 0,
    failed: false,
    made_dir: None,
});

/// A file being written beside its name, listed in `PARTIALS` until it is
/// renamed over the name or deleted. Both happen with the list held, as
/// does a signal's removal of the listed files, which holds it until the
/// process exits: a file is either whole under its name or gone, never
/// left half-written.
struct Partial(Option<tempfile::NamedTempFile>);

impl Partial {
    fn file(&self) -> &std::fs::File {
        self.0.as_ref().expect("held until persisted").as_file()
    }

    fn listed() -> std::sync::MutexGuard<'static, Partials> {
        PARTIALS.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            let mut partials = Partial::listed();
            partials.listed.retain(|p| p != file.path());
            drop(file);
        }
    }
}

/// On Ctrl-C or SIGTERM, once a file is being written beside its name:
/// every listed file removed, what became of the output said, exit 130.
/// The list stays held to the exit, so no file is made or renamed after
/// the removal (one was, between them, and left behind: a review). Until
/// December 7 the signal's default action left the partial files. An
/// output written where it is (stdout, a pipe, a device) keeps the
/// default action: what was written there is there.
fn remove_partials_on_a_signal() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            let mut held = Partial::listed();
            for path in &held.listed {
                let _ = std::fs::remove_file(path);
            }
            let removed = std::mem::take(&mut held.listed).len();
            if held.renamed == 0
                && let Some(dir) = &held.made_dir
            {
                let _ = std::fs::remove_dir(dir);
            }
            let plural = if removed == 1 { "" } else { "s" };
            if held.failed {
                crate::say!(
                    "autopi-rx export: stopped by a signal after a file could not be written ({} written before it, the rest as they were)",
                    held.renamed
                );
            } else if held.renamed > 0 {
                crate::say!("autopi-rx export: stopped by a signal after the output was written whole");
            } else {
                crate::say!(
                    "autopi-rx export: stopped by a signal: the output is as it was ({removed} partial file{plural} removed)"
                );
            }
            std::process::exit(130);
        });
        if let Err(e) = installed {
            crate::say!(
                "autopi-rx export: warning: cannot catch Ctrl-C ({e}): stopped by a signal, it leaves its partial files"
            );
        }
    });
}

/// A new file beside `path`, deleted when dropped unless renamed over it,
/// and a handle to write it with. A name of its own each time, created new
/// (never through a link someone left at a fixed name), as a plain
/// `create` would make it (0666 less the umask): a fixed `OUT.partial`
/// was shared by two exports to the same OUT, each truncating and renaming
/// the other's file. Of fixed length: one built from OUT's failed for an
/// OUT within 16 bytes of the 255 a name may have (a reviewer's finding).
fn beside(path: &Path) -> Result<(Partial, std::fs::File), ExportError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let cannot = |e: io::Error| {
        // Its folder missing is said so ("entity not found" said nothing
        // of which: a probe of the offline tools).
        let why = match e.kind() {
            io::ErrorKind::NotFound if !dir.is_dir() => {
                format!("its folder {} does not exist", crate::text::path(&dir))
            }
            kind => format!("cannot create a file beside it: {kind}"),
        };
        ExportError(format!("cannot write {}: {why}", crate::text::path(&path)))
    };
    remove_partials_on_a_signal();
    // Listed as it is made: a signal in between would leave it.
    let mut partials = Partial::listed();
    let partial = tempfile::Builder::new()
        .prefix(".autopi-rx-export-")
        .suffix(".partial")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(cannot)?;
    partials.listed.push(partial.path().to_path_buf());
    drop(partials);
    let partial = Partial(Some(partial));
    let file = partial.file().try_clone().map_err(cannot)?;
    Ok((partial, file))
}

/// One CSV row before it is laid out in its type's columns.
struct Row {
    kind: String,
    fixed: [String; 4],
    values: Vec<(String, String)>,
}

/// A batch's rows, made beside the writing, or its line, for rows made
/// as they are written (see `ROWS_MADE_AHEAD`).
enum Rows {
    Made(Vec<Row>),
    Later(CaptureLine),
}

/// Largest batch (its records' bytes) whose rows are all made before the
/// first is written: a row costs about 250 bytes for a record of 3 (`{}`).
const ROWS_MADE_AHEAD: usize = 1 << 20;

/// Calls `each` with the row of every record of `line` that `filter`
/// keeps, in order.
fn each_row(line: &CaptureLine, filter: &Filter, mut each: impl FnMut(Row)) {
    let received = line.received.to_string();
    let Some(text) = line.records_text() else {
        return;
    };
    let _ = for_each_record(&text, |r| {
        if !filter.record(&r) {
            return;
        }
        let ts = r.ts.map(|ts| ts.to_string()).unwrap_or_default();
        let mut values = Vec::new();
        flatten_record(&r, &mut values);
        each(Row {
            kind: r.kind_name.to_string(),
            fixed: [
                ts,
                r.kind_name.to_string(),
                line.unit_id.clone().unwrap_or_default(),
                received.clone(),
            ],
            values,
        });
    });
}

/// Record types and their columns, in first-seen order, each found by
/// its name.
#[derive(Default)]
struct Types {
    list: Vec<(String, Columns)>,
    at: HashMap<String, usize>,
}

impl Types {
    /// `kind`'s columns, the type added if new.
    fn columns(&mut self, kind: &str) -> &mut Columns {
        let i = match self.at.get(kind) {
            Some(&i) => i,
            None => {
                self.at.insert(kind.to_string(), self.list.len());
                self.list.push((kind.to_string(), Columns::default()));
                self.list.len() - 1
            }
        };
        &mut self.list[i].1
    }
}

/// A type's columns beyond the fixed ones, in first-seen order.
#[derive(Default)]
struct Columns {
    names: Vec<String>,
    at: HashMap<String, usize>,
}

impl Columns {
    fn add(&mut self, name: String) {
        if !self.at.contains_key(&name) {
            self.at.insert(name.clone(), self.names.len());
            self.names.push(name);
        }
    }
}

/// The dotted column names of a record's fields (as `flatten_record`
/// names them, without decoding any value).
fn flat_keys(r: &Record<'_>) -> Vec<String> {
    let mut keys = Vec::new();
    if r.tag.is_some() {
        keys.push("@tag".to_string());
    }
    for (k, v) in unread_head(r) {
        flatten_keys(k, v, &mut keys, 1);
    }
    for (k, v) in &r.earlier {
        flatten_keys(k, v, &mut keys, 1);
    }
    for (k, v) in &r.fields {
        flatten_keys(k, v, &mut keys, 1);
    }
    make_unique(keys.iter_mut());
    keys
}

/// Gives each of a record's column names that is taken already (by a
/// fixed column, or by an earlier field that flattens to the same name:
/// a key `"a.b"` beside `"a":{"b":…}`, a key given twice, a field called
/// `unit_id`) a `#2`, `#3`… of its own, the same way in both passes, so
/// no value overwrites another or lands in a fixed column. Until December
/// 5 the later value won and the earlier was lost without a word, and a
/// `unit_id` field made a second `unit_id` column.
fn make_unique<'a>(names: impl Iterator<Item = &'a mut String>) {
    let names: Vec<&mut String> = names.collect();
    // Nearly every record has no name twice: told by borrowed names,
    // without a copy of each.
    let mut seen = HashSet::with_capacity(names.len());
    if !names
        .iter()
        .any(|n| FIXED.contains(&n.as_str()) || !seen.insert(n.as_str()))
    {
        return;
    }
    drop(seen);
    let mut taken: HashSet<String> = FIXED.iter().map(|f| f.to_string()).collect();
    for name in names {
        if taken.contains(name.as_str()) {
            let mut n = 2;
            while taken.contains(&format!("{name}#{n}")) {
                n += 1;
            }
            *name = format!("{name}#{n}");
        }
        taken.insert(name.clone());
    }
}

/// How deep `flatten` goes into nested objects and arrays; a value deeper
/// than that is one column holding its JSON. The receiver accepts any
/// depth (10 000 nested arrays overflowed the stack here, and each level
/// was read again by the next).
const FLAT_DEPTH: usize = 32;

/// The names `flatten` gives the parts of one value, `depth` levels down.
fn flatten_keys(prefix: &str, raw: &str, out: &mut Vec<String>, depth: usize) {
    if depth >= FLAT_DEPTH {
        out.push(prefix.to_string());
        return;
    }
    let nested = match raw.trim_start().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<Entries<'_>>(raw)
            .ok()
            .filter(|e| !e.0.is_empty())
            .map(|e| {
                e.0.into_iter()
                    .map(|(k, v)| (format!("{prefix}.{k}"), v))
                    .collect::<Vec<_>>()
            }),
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(raw)
            .ok()
            .filter(|items| !items.is_empty())
            .map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{prefix}.{i}"), v))
                    .collect()
            }),
        _ => None,
    };
    match nested {
        Some(parts) => {
            for (name, v) in parts {
                flatten_keys(&name, v.get(), out, depth + 1);
            }
        }
        None => out.push(prefix.to_string()),
    }
}

/// A record's `@t` or `@tag` that is no string and `@ts` that is no time,
/// as sent: their fixed cells hold what was read (a blank), so these go
/// in columns of their own (`@t#2`, `@ts#2`, `@tag`). They were gone from
/// the CSV (a probe, December 7).
fn unread_head<'a>(r: &Record<'a>) -> impl Iterator<Item = (&'static str, &'a str)> {
    let [t, ts, tag] = r.head;
    let text = |raw: &&str| raw.trim_start().starts_with('"');
    let t = t.filter(|raw| !text(raw));
    let ts = ts.filter(|raw| r.ts.is_none() && raw.trim() != "null");
    // A tag that is no string has no `@tag` cell of its own.
    let tag = tag.filter(|raw| !text(raw) && raw.trim() != "null");
    [("@t", t), ("@ts", ts), ("@tag", tag)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
}

/// `@tag` and every field, flattened to (dotted name, text), with what
/// `unread_head` and `Record::earlier` hold of `@t`, `@ts` and `@tag`.
fn flatten_record(r: &Record<'_>, out: &mut Vec<(String, String)>) {
    // `@tag` among the names made unique, as `flat_keys` has it: an
    // earlier `@tag` of the record's own is a field (`@tag#2`).
    let from = out.len();
    if let Some(tag) = &r.tag {
        out.push(("@tag".into(), tag.to_string()));
    }
    for (k, v) in unread_head(r) {
        flatten(k, v, out, 1);
    }
    for (k, v) in &r.earlier {
        flatten(k, v, out, 1);
    }
    for (k, v) in &r.fields {
        flatten(k, v, out, 1);
    }
    make_unique(out[from..].iter_mut().map(|(k, _)| k));
}

/// Flattens one JSON value, `depth` levels down: objects by key, arrays
/// by index, strings unquoted, numbers as spelled, null empty; at
/// `FLAT_DEPTH`, an object or array as its JSON.
fn flatten(prefix: &str, raw: &str, out: &mut Vec<(String, String)>, depth: usize) {
    let first = raw.trim_start().as_bytes().first();
    if depth >= FLAT_DEPTH && matches!(first, Some(b'{' | b'[')) {
        out.push((prefix.to_string(), raw.trim().to_string()));
        return;
    }
    match first {
        Some(b'{') => match serde_json::from_str::<Entries<'_>>(raw) {
            Ok(Entries(entries)) if !entries.is_empty() => {
                for (k, v) in entries {
                    flatten(&format!("{prefix}.{k}"), v.get(), out, depth + 1);
                }
            }
            _ => out.push((prefix.to_string(), String::new())),
        },
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(raw) {
            Ok(items) if !items.is_empty() => {
                for (i, v) in items.into_iter().enumerate() {
                    flatten(&format!("{prefix}.{i}"), v.get(), out, depth + 1);
                }
            }
            _ => out.push((prefix.to_string(), String::new())),
        },
        Some(b'"') => out.push((
            prefix.to_string(),
            serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string()),
        )),
        Some(b'n') => out.push((prefix.to_string(), String::new())),
        _ => out.push((prefix.to_string(), raw.trim().to_string())),
    }
}

/// An object's entries in their order, values raw.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The most of a type's name kept in its file's name (ASCII by then),
/// leaving room for `-NNNN.csv` within the 255 bytes a name may have.
const FILE_BASE_MOST: usize = 200;

/// A file name for a record type: safe characters only, unique.
fn file_name(kind: &str, taken: &mut HashSet<String>) -> String {
    let mut base: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() || base.starts_with('.') {
        base = format!("_{base}");
    }
    // A name is at most 255 bytes: a 300-character `@t` stopped the whole
    // export ("File name too long"). What is cut is still told apart by
    // the number added below.
    base.truncate(FILE_BASE_MOST);
    let mut name = format!("{base}.csv");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}.csv");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_course_is_from_0_up_to_360() {
        assert_eq!(course(-1e-15), Some(0.0));
        assert_eq!(course(-90.0), Some(270.0));
        assert_eq!(course(360.0), Some(0.0));
        assert_eq!(course(725.5), Some(5.5));
        assert_eq!(course(f64::NAN), None);
        assert_eq!(course(f64::INFINITY), None);
    }

    #[test]
    fn descriptor_names_are_told_from_files() {
        for alias in [
            "/dev/stdout",
            "/dev/stderr",
            "/dev/fd/1",
            "/proc/self/fd/2",
            "/proc/thread-self/fd/1",
            "/proc/1234/fd/9",
        ] {
            assert!(is_descriptor_alias(Path::new(alias)), "{alias}");
        }
        for file in ["/proc/self/status", "/tmp/fd/1", "drive.gpx", "/dev/null"] {
            assert!(!is_descriptor_alias(Path::new(file)), "{file}");
        }
    }

    #[test]
    fn links_are_followed_to_what_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.gpx");
        std::fs::write(&file, "x").unwrap();
        let near = dir.path().join("near");
        std::os::unix::fs::symlink("a.gpx", &near).unwrap();
        let far = dir.path().join("far");
        std::os::unix::fs::symlink(&near, &far).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("none/b.gpx", &dangling).unwrap();
        let to_fd = dir.path().join("to-fd");
        std::os::unix::fs::symlink("/dev/stdout", &to_fd).unwrap();
        assert_eq!(
            destination(&file).unwrap(),
            Destination::Replace(file.clone())
        );
        assert_eq!(
            destination(&far).unwrap(),
            Destination::Replace(dir.path().join("a.gpx"))
        );
        assert_eq!(
            destination(&dangling).unwrap(),
            Destination::Replace(dir.path().join("none/b.gpx"))
        );
        assert_eq!(
            destination(&to_fd).unwrap(),
            Destination::Descriptor("/dev/stdout".into())
        );
        assert_eq!(
            destination(Path::new("/dev/null")).unwrap(),
            Destination::Through("/dev/null".into())
        );
        let looped = dir.path().join("loop");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        assert!(destination(&looped).is_err());
    }

    #[test]
    fn nested_fields_flatten_to_dotted_columns() {
        let mut out = Vec::new();
        flatten(
            "loc",
            r#"{"lat":57.022410,"lon":9.9,"x":[1,{"y":"a\"b"}],"n":null}"#,
            &mut out,
            1,
        );
        let got: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("loc.lat", "57.022410"),
                ("loc.lon", "9.9"),
                ("loc.x.0", "1"),
                ("loc.x.1.y", "a\"b"),
                ("loc.n", "")
            ]
        );
    }

    #[test]
    fn column_names_are_the_flattened_names() {
        let text =
            r#"[{"@t":"x","@tag":"a/b","loc":{"lat":1,"in":{"deep":[2,{}]}},"e":[],"s":"t"}]"#;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let _ = for_each_record(text, |r| {
            keys = flat_keys(&r);
            flatten_record(&r, &mut values);
        });
        let names: Vec<String> = values.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, names);
        assert_eq!(
            keys,
            [
                "@tag",
                "loc.lat",
                "loc.in.deep.0",
                "loc.in.deep.1",
                "e",
                "s"
            ]
        );
    }

    #[test]
    fn type_names_become_safe_unique_file_names() {
        let mut taken = HashSet::new();
        assert_eq!(file_name("obd.rpm", &mut taken), "obd.rpm.csv");
        assert_eq!(file_name("obd/rpm", &mut taken), "obd_rpm.csv");
        assert_eq!(file_name("obd_rpm", &mut taken), "obd_rpm-2.csv");
        assert_eq!(file_name("../x", &mut taken), "_.._x.csv");
        assert_eq!(file_name("", &mut taken), "_.csv");
        let long = "x".repeat(300);
        let first = file_name(&long, &mut taken);
        assert_eq!(first, format!("{}.csv", "x".repeat(FILE_BASE_MOST)));
        let second = file_name(&format!("{long}y"), &mut taken);
        assert_eq!(second, format!("{}-2.csv", "x".repeat(FILE_BASE_MOST)));
    }

    #[test]
    fn names_that_flatten_alike_get_columns_of_their_own() {
        let text = r#"[{"@t":"x","a.b":1,"a":{"b":2},"v":3,"v":4,"unit_id":"u","a.b#2":5}]"#;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let _ = for_each_record(text, |r| {
            keys = flat_keys(&r);
            flatten_record(&r, &mut values);
        });
        let got: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.b", "1"),
                ("a.b#2", "2"),
                ("v", "3"),
                ("v#2", "4"),
                ("unit_id#2", "u"),
                ("a.b#2#2", "5"),
            ]
        );
        let names: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, names);
    }

    #[test]
    fn a_drive_is_cut_where_it_crosses_the_antimeridian() {
        // No crossing: the drive as it is, a step of exactly 180 and a
        // fix given twice included.
        let plain = [[9.9, 57.0], [10.0, 57.1], [10.0, 57.1], [-170.0, 57.2]];
        assert_eq!(split_at_antimeridian(plain), [plain.to_vec()]);
        // Eastwards over the line, 179 to -179: the crossing halfway.
        assert_eq!(
            split_at_antimeridian([[178.0, 64.0], [179.0, 65.0], [-179.0, 66.0]]),
            [
                vec![[178.0, 64.0], [179.0, 65.0], [180.0, 65.5]],
                vec![[-180.0, 65.5], [-179.0, 66.0]],
            ]
        );
        // Westwards, a quarter of the step before the line, and back.
        assert_eq!(
            split_at_antimeridian([[-179.5, 10.0], [178.5, 14.0], [-178.5, 10.0]]),
            [
                vec![[-179.5, 10.0], [-180.0, 11.0]],
                vec![[180.0, 11.0], [178.5, 14.0], [180.0, 12.0]],
                vec![[-180.0, 12.0], [-178.5, 10.0]],
            ]
        );
        // A fix on the line (-180) going west: no part of one position.
        assert_eq!(
            split_at_antimeridian([[-180.0, 1.0], [179.0, 2.0]]),
            [vec![[180.0, 1.0], [179.0, 2.0]]]
        );
        // Eastwards onto the line (-180): the fix is the next part's start.
        assert_eq!(
            split_at_antimeridian([[179.0, 1.0], [-180.0, 2.0], [-179.0, 3.0]]),
            [
                vec![[179.0, 1.0], [180.0, 2.0]],
                vec![[-180.0, 2.0], [-179.0, 3.0]]
            ]
        );
        // One fix: no line at all.
        assert!(split_at_antimeridian([[1.0, 2.0]]).is_empty());
    }

    #[test]
    fn spreadsheet_safe_cells_are_never_formulas_and_numbers_stay_numbers() {
        let safe = |c| String::from_utf8(Cells::SpreadsheetSafe.written(c).into_owned()).unwrap();
        for formula in [
            "=1+1",
            "+cmd",
            "-2+3+cmd|' /C calc'!A0",
            "@SUM(A1)",
            "\t=x",
            "\r=x",
            "-inf",
            "\t1",
            "\r-1",
            "-1\n",
            "\n=x",
            "\nplain",
            " =1+1",
            "  \n@SUM(A1)",
        ] {
            assert_eq!(safe(formula), format!("'{formula}"));
        }
        for kept in [
            "-5.2",
            "-1e3",
            "57.1",
            "",
            "a=b",
            "obd.rpm",
            "2026-11-27T08:00:00Z",
            " plain",
            "a\n=b",
        ] {
            assert_eq!(safe(kept), kept);
        }
        assert_eq!(&*Cells::AsCaptured.written("=1+1"), b"=1+1");
    }
}

/// Writes one batch as a line of the `batches` format, which is also what
/// the dashboard's save key writes for a batch: its records array exactly
/// as captured (the body the device sent, decompressed; a body that
/// spanned several lines without the whitespace between tokens), then a
/// newline. Each line can be POSTed again as it is.
pub fn write_batch(out: &mut dyn Write, records: &[u8]) -> io::Result<()> {
    out.write_all(records)?;
    out.write_all(b"\n")
}

/// The part of a batch's records array that passes the record filter:
/// the array itself when nothing is left out, else the kept records as
/// captured, joined into a new array; None when none is kept. With how
/// many records it holds.
fn picked(records: &Arc<[u8]>, filter: &Filter) -> Option<(Arc<[u8]>, u64)> {
    let text = std::str::from_utf8(records).ok()?;
    // Records are walked, not listed: a list of 16 bytes a record took an
    // 11-million-record batch (33 MB of `{}`) to 350 MB.
    if !filter.picks_records() {
        let n = crate::batch::each_record(text, |_, _| true).ok()? as u64;
        return (n > 0).then(|| (records.clone(), n));
    }
    let (mut kept, mut n) = (String::from("["), 0u64);
    crate::batch::each_record(text, |_, item| {
        let one = format!("[{}]", item.get());
        let mut keep = false;
        let _ = for_each_record(&crate::batch::readable(&one), |r| keep = filter.record(&r));
        if keep {
            if n > 0 {
                kept.push(',');
            }
            kept.push_str(item.get());
            n += 1;
        }
        true
    })
    .ok()?;
    kept.push(']');
    (n > 0).then(|| (kept.into_bytes().into(), n))
}

/// `batches`: a delivered batch a line, as `write_batch` writes it.
fn batches(
    paths: &[PathBuf],
    filter: &Filter,
    mut out: Box<dyn Write + '_>,
) -> Result<Written, ExportError> {
    let mut written = Written::default();
    let mut failed: Option<io::Error> = None;
    let mut records = 0;
    for_each_batch(
        paths,
        None,
        filter,
        &mut written,
        |_, line| picked(&line.records, filter),
        |item| {
            let Some((bytes, n)) = item else {
                return false;
            };
            if failed.is_none() {
                match write_batch(&mut out, &bytes) {
                    Ok(()) => records += n,
                    Err(e) => failed = Some(e),
                }
            }
            true
        },
    )?;
    // Named as the other formats name theirs (a full disk said only "No
    // space left on device": a probe of the offline tools).
    let writing = |e: io::Error| ExportError(format!("writing batches: {e}"));
    if let Some(e) = failed {
        return Err(writing(e));
    }
    out.flush().map_err(writing)?;
    written.records = records;
    Ok(written)
}

/// Which format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gpx,
    Geojson,
    Csv,
    Batches,
}

/// `autopi-rx export`: writes the file (or stdout, or a CSV folder) and
/// says on stderr what went in and what was left out.
pub fn main(
    paths: &[PathBuf],
    format: Format,
    filter: Result<Filter, String>,
    output: Option<&Path>,
    cells: Cells,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let filter = match filter {
        Ok(f) => f,
        Err(message) => {
            crate::say!("autopi-rx export: {message}");
            return ExitCode::from(2);
        }
    };
    if cells == Cells::SpreadsheetSafe && format != Format::Csv {
        crate::say!("autopi-rx export: --spreadsheet-safe is for --format csv only");
        return ExitCode::from(2);
    }
    // Said before any file is read, as other misuse of the flags is (it
    // came after the output was made, exit 1).
    if matches!(format, Format::Gpx | Format::Geojson)
        && filter.kind.as_deref().is_some_and(|k| k != "track.pos")
    {
        crate::say!("autopi-rx export: {POSITIONS_ONLY}");
        return ExitCode::from(2);
    }
    // `-o /dev/stdout` is stdout itself, written where it already points
    // (a file opened for appending keeps its lines; a reader that left is
    // let be as below).
    let output = output.filter(|o| o.as_os_str() != "-" && o.as_os_str() != "/dev/stdout");
    let reader_gone = std::cell::Cell::new(false);
    // CSV of every type: a file per type, in the folder `-o` names.
    let folder = format == Format::Csv && filter.kind.is_none();
    if folder && output.is_none() {
        crate::say!(
            "autopi-rx export: CSV holds one record type per file: give --type T, or -o FOLDER for a file per type"
        );
        return ExitCode::from(2);
    }
    if folder
        && let Some(dir) = output
        && let Ok(m) = std::fs::metadata(dir)
        && !m.is_dir()
    {
        // It said "cannot create /dev/null: File exists".
        crate::say!(
            "autopi-rx export: -o {} is {}, not a folder: CSV of every type is a file per type in a folder; give --type T for one file",
            crate::text::path(&dir),
            crate::input::what_it_is(m.file_type())
        );
        return ExitCode::from(2);
    }
    for p in paths {
        if let Err(e) = crate::input::capture_metadata(p) {
            crate::say!(
                "autopi-rx export: cannot read {}: {e}",
                crate::text::path(&p)
            );
            return ExitCode::from(1);
        }
    }
    if folder
        && let Some(dir) = output
        && let Some((file, input)) = folder_holds_an_input(paths, dir)
    {
        // Until December 6 each type's file was created in place: one that
        // was a capture read (the same name, a hard or symbolic link to
        // it) was emptied, and the export said "0 records" (a
        // hostile-client probe).
        crate::say!(
            "autopi-rx export: {} in the folder is {}, one of the captures it reads: write the CSV files elsewhere",
            crate::text::path(&file),
            crate::text::path(&input)
        );
        return ExitCode::from(2);
    }
    if !folder && let Some(input) = output_among_inputs(paths, output) {
        crate::say!(
            "autopi-rx export: the output is {}, one of the captures it reads: write it elsewhere",
            crate::text::path(&input)
        );
        return ExitCode::from(2);
    }
    let result = match (format, output) {
        (Format::Csv, Some(dir)) if folder => csv(paths, &filter, CsvOut::Folder(dir), cells),
        (format, Some(file)) => write_file(format, paths, &filter, file, cells),
        (format, None) => {
            let out = Watched {
                inner: io::stdout().lock(),
                gone: &reader_gone,
            };
            write_one(format, paths, &filter, Box::new(out), cells)
        }
    };
    if result.is_err() && reader_gone.get() {
        // The reader went away (`export … | head`): nothing to say.
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(w) => {
            crate::say!("{}", describe(format, &w, output));
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::say!("autopi-rx export: {e}");
            ExitCode::from(1)
        }
    }
}

/// Stdout, noting when its reader went away (a broken pipe).
struct Watched<'a, W> {
    inner: W,
    gone: &'a std::cell::Cell<bool>,
}

impl<W: Write> Watched<'_, W> {
    fn noted<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.gone.set(true);
        }
        r
    }
}

impl<W: Write> Write for Watched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.noted(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.noted(r)
    }
}

/// Where `-o` sends an export, once symbolic links are followed.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A regular file or nothing: written next to it first and renamed
    /// over it once complete (at the link's target, for a link).
    Replace(PathBuf),
    /// Another name for a descriptor this process holds (`/dev/fd/1`,
    /// `/proc/self/fd/2`, `/dev/stderr`): appended to, so a file the shell
    /// opened for appending keeps what it held.
    Descriptor(PathBuf),
    /// A device or a pipe (`-o /dev/null`): written as it is.
    Through(PathBuf),
}

/// Whether `path` names one of a process's open descriptors.
fn is_descriptor_alias(path: &Path) -> bool {
    use std::path::Component;
    let parts: Vec<Component<'_>> = path.components().collect();
    let proc_fd = parts.len() == 5
        && parts[1] == Component::Normal("proc".as_ref())
        && parts[3] == Component::Normal("fd".as_ref());
    proc_fd
        || path.starts_with("/dev/fd")
        || path == Path::new("/dev/stdout")
        || path == Path::new("/dev/stderr")
}

/// Follows `file`'s symbolic links (40 at most, as the kernel does) to
/// what the export replaces or writes into. Renaming over a link replaced
/// the link itself (`-o /dev/stdout`, stdout sent to a file, made the
/// machine's /dev/stdout a regular file); writing through a link with
/// truncation emptied its target before the export read it (a link to
/// the input) or when the export then failed.
fn destination(file: &Path) -> io::Result<Destination> {
    let mut at = file.to_path_buf();
    for _ in 0..40 {
        if is_descriptor_alias(&at) {
            return Ok(Destination::Descriptor(at));
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            Ok(m) if m.is_file() => return Ok(Destination::Replace(at)),
            Ok(_) => return Ok(Destination::Through(at)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Destination::Replace(at)),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// Writes the export to `file` (see `Destination`): a regular file is
/// written next to it first and renamed into place once complete, so a
/// failed export never leaves half a file under the name asked for.
fn write_file(
    format: Format,
    paths: &[PathBuf],
    filter: &Filter,
    file: &Path,
    cells: Cells,
) -> Result<Written, ExportError> {
    let cannot_open =
        |e: io::Error| ExportError(format!("cannot open {}: {e}", crate::text::path(&file)));
    let (at, append) = match destination(file).map_err(cannot_open)? {
        Destination::Replace(target) => {
            return replace_whole(format, paths, filter, file, &target, cells);
        }
        Destination::Descriptor(at) => (at, true),
        Destination::Through(at) => (at, false),
    };
    let opened = std::fs::File::options()
        .write(true)
        .append(append)
        .open(&at)
        .map_err(cannot_open)?;
    write_one(format, paths, filter, Box::new(opened), cells)
}

/// Writes the export next to `target` (a regular file, or nothing yet),
/// renamed over it once complete; `file` is the name asked for (`-o`).
fn replace_whole(
    format: Format,
    paths: &[PathBuf],
    filter: &Filter,
    file: &Path,
    target: &Path,
    cells: Cells,
) -> Result<Written, ExportError> {
    let (partial, writer) = beside(target)?;
    let written = write_one(format, paths, filter, Box::new(writer), cells)?;
    persist(vec![(partial, target.to_path_buf())], Some(file))?;
    Ok(written)
}

/// A `.csv` file in `dir` (the CSV folder) that is one of the inputs
/// (by its name, a hard link or a symbolic link), and that input.
fn folder_holds_an_input(paths: &[PathBuf], dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .find_map(|f| Some((f.clone(), output_among_inputs(paths, Some(&f))?)))
}

/// The input that `output` (stdout when None) is, if it is one: the
/// export would replace a capture with itself, or read what it appends.
fn output_among_inputs(paths: &[PathBuf], output: Option<&Path>) -> Option<PathBuf> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let out = match output {
        Some(file) => std::fs::metadata(file).ok()?,
        None => {
            let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
            std::fs::File::from(fd).metadata().ok()?
        }
    };
    paths
        .iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (out.dev(), out.ino())))
        .cloned()
}

fn write_one(
    format: Format,
    paths: &[PathBuf],
    filter: &Filter,
    out: Box<dyn Write + '_>,
    cells: Cells,
) -> Result<Written, ExportError> {
    match format {
        Format::Gpx => gpx(paths, filter, out),
        Format::Geojson => geojson(paths, filter, out),
        Format::Csv => csv(paths, filter, CsvOut::One(out), cells),
        Format::Batches => batches(paths, filter, out),
    }
}

/// The closing line: what went where, and what was left out.
fn describe(format: Format, w: &Written, output: Option<&Path>) -> String {
    let what = match format {
        Format::Csv | Format::Batches => format!("{} records", w.records),
        _ => format!("{} fixes in {} drives", w.records, w.drives),
    };
    let to = match (output, w.files.len()) {
        (Some(dir), n) if n > 0 => format!("{} files in {}", n, crate::text::path(&dir)),
        (Some(file), _) => crate::text::path(&file).to_string(),
        (None, _) => "stdout".into(),
    };
    let batches = |n: u64| match n {
        1 => "1 batch".to_string(),
        n => format!("{n} batches"),
    };
    let mut line = format!(
        "exported {what} from {} to {to}; left out {} (duplicates, unacknowledged)",
        batches(w.batches),
        batches(w.left_out)
    );
    if w.unusable_fixes > 0 {
        line.push_str(&format!(
            "; {} positions without a usable latitude/longitude",
            w.unusable_fixes
        ));
    }
    line
}

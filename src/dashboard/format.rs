//! Numbers, sizes and ages as the screen writes them.

use jiff::Timestamp;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A length of time in at most two units: `42s`, `4m10s`, `2h05m`, `3d04h`;
/// from 100 days in days alone (`123d`), from 1000 days in years of 365.25
/// days (`5.8y`, `56y`): the guide's examples, stamped 2020, were
/// `2110d04h` old, cut in the Uplink tab's data lag column, and a device
/// whose clock starts at 1970 is twenty thousand days behind.
pub fn span(secs: u64) -> String {
    const DAY: u64 = 86_400;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3_599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..=86_399 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ if secs < 100 * DAY => format!("{}d{:02}h", secs / DAY, secs % DAY / 3_600),
        _ if secs < 1000 * DAY => format!("{}d", secs / DAY),
        _ => {
            let years = secs as f64 / (365.25 * DAY as f64);
            if years < 99.95 {
                format!("{years:.1}y")
            } else {
                format!("{years:.0}y")
            }
        }
    }
}

/// A length of time in its largest unit: `40s`, `4m`, `2h`, `3d`, `56y`.
pub fn short_span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3_599 => format!("{}m", secs / 60),
        3_600..=86_399 => format!("{}h", secs / 3_600),
        86_400..=86_399_999 => format!("{}d", secs / 86_400),
        // From 1000 days in whole years of 365.25 days, as `format::span`
        // goes to years (a clock at 1970 was `↺ +20784d`).
        _ => format!("{}y", secs / 31_557_600),
    }
}

/// How long before `now` something happened: `3s ago`, or `2s ahead` for a
/// device clock running fast.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let ms = now.as_millisecond() - then.as_millisecond();
    // Under a second ahead is clock jitter between the device and the
    // screen's tick, not a device clock running fast.
    if ms > -1000 {
        format!("{} ago", span(ms.max(0) as u64 / 1000))
    } else {
        format!("{} ahead", span(ms.unsigned_abs() / 1000))
    }
}

/// Bytes in binary units: `850 B`, `12.3 KiB`, `1.50 MiB`.
///
/// At most 9 characters: a unit goes up at 1 000 of it (`0.98 MiB`, not
/// `1023.4 KiB`), to EiB for the largest counter (a probe's `2^64 - 1` was
/// `16384.0 PiB`, and ran into the label beside it).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 999.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 { 2 } else { 1 };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// A count with thousands separators: `1,000,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number in at most `width` columns: as `plain` writes it when that
/// fits, else with an SI suffix (`12.3M`), else in exponent form. Never
/// cut: a cut number reads as another number.
pub fn fitted_number(n: f64, width: usize, plain: impl Fn(f64) -> String) -> String {
    let text = plain(n);
    if text.len() <= width {
        return text;
    }
    for (scale, suffix) in [(1e3, 'k'), (1e6, 'M'), (1e9, 'G'), (1e12, 'T')] {
        let scaled = n / scale;
        if scaled.abs() >= 1000.0 {
            continue;
        }
        for decimals in [1, 0] {
            let digits = format!("{scaled:.decimals$}");
            // 999 960 rounds to `1000.0k`: the next suffix says it.
            if digits.parse::<f64>().is_ok_and(|d| d.abs() >= 1000.0) {
                continue;
            }
            let text = format!("{digits}{suffix}");
            if text.len() <= width {
                return text;
            }
        }
    }
    for decimals in [1, 0] {
        let text = format!("{n:.decimals$e}");
        if text.len() <= width {
            return text;
        }
    }
    "…".to_string()
}

/// `s` cut to `width` columns (`fit`) and padded with spaces to exactly
/// `width` columns, after it (`Left`) or before it: `format!`'s padding
/// counts characters, which wide and combining characters are not.
pub fn padded(s: &str, width: usize, side: Side) -> String {
    let text = fit(s, width);
    let pad = " ".repeat(width.saturating_sub(text.width()));
    match side {
        Side::Left => text + &pad,
        Side::Right => pad + &text,
    }
}

/// Which side of its column a padded text keeps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// Time of day in UTC with seconds: `08:00:01`.
pub fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// Whether `a` and `b` fall on one UTC day.
pub fn same_day(a: Timestamp, b: Timestamp) -> bool {
    a.as_second().div_euclid(86_400) == b.as_second().div_euclid(86_400)
}

/// Whether `a` and `b` fall in one UTC year.
pub fn same_year(a: Timestamp, b: Timestamp) -> bool {
    let year = |t: Timestamp| jiff::tz::TimeZone::UTC.to_datetime(t).year();
    year(a) == year(b)
}

/// When `t` was, as short as `now` allows, in UTC: the time of day on
/// `now`'s day (`08:00:01`), the date in its year (`11-26`, with the
/// minute `11-26 23:59` when `minute`), the date in another year
/// (`1970-01-01`): a crank a day or years before read as a time of today.
pub fn clock_or_date(now: Timestamp, t: Timestamp, minute: bool) -> String {
    if same_day(t, now) {
        clock(t)
    } else if !same_year(t, now) {
        t.strftime("%Y-%m-%d").to_string()
    } else if minute {
        t.strftime("%m-%d %H:%M").to_string()
    } else {
        t.strftime("%m-%d").to_string()
    }
}

/// Time of day in UTC with milliseconds: `08:00:01.250`.
pub fn clock_ms(t: Timestamp) -> String {
    t.strftime("%H:%M:%S%.3f").to_string()
}

/// An optional number with fixed decimals, `-` when missing; one past
/// any reading's size (a device's or a hostile client's `1e308`) in
/// scientific notation, where fixed decimals wrote 309 digits over two
/// lines of a panel.
pub fn fixed(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(
        || "-".to_string(),
        |v| {
            if v.abs() >= 1e12 {
                format!("{v:.3e}")
            } else {
                format!("{v:.decimals$}")
            }
        },
    )
}

/// A unit as the screen writes it: python-OBD's long names (what the
/// device sends, e.g. `revolutions_per_minute`) shortened to the usual
/// symbols; anything else exactly as sent. Only the vehicle panel
/// shortens: the Types tab, the request detail and the capture keep the
/// device's text.
pub fn unit(sent: &str) -> &str {
    match sent {
        "revolutions_per_minute" => "rpm",
        "kph" | "kilometer_per_hour" | "kilometers_per_hour" => "km/h",
        "mph" | "mile_per_hour" | "miles_per_hour" => "mph",
        "degC" | "celsius" | "degree_Celsius" => "°C",
        "degF" | "fahrenheit" | "degree_Fahrenheit" => "°F",
        "degree" | "degrees" => "°",
        "percent" => "%",
        "volt" | "volts" => "V",
        "millivolt" => "mV",
        "ampere" => "A",
        "milliampere" => "mA",
        "pascal" => "Pa",
        "kilopascal" => "kPa",
        "gram_per_second" | "grams_per_second" => "g/s",
        "liter_per_hour" | "liters_per_hour" => "L/h",
        "kilometer" | "kilometers" => "km",
        "meter" | "meters" => "m",
        "second" | "seconds" => "s",
        "minute" | "minutes" => "min",
        "hour" | "hours" => "h",
        _ => sent,
    }
}

/// The longest start of `s` that takes at most `cols` columns.
pub fn prefix(s: &str, cols: usize) -> &str {
    let mut used = 0;
    for (at, c) in s.char_indices() {
        used += c.width().unwrap_or(0);
        if used > cols {
            return &s[..at];
        }
    }
    s
}

/// `s` in at most `width` terminal columns; when cut, it ends in `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.width() <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        format!("{}…", prefix(s, width - 1))
    }
}

/// Prose (a trouble code's text, an error) in at most `width` columns:
/// cut, when it must be, after a whole word if one ends in the last third,
/// and ending in `…`.
pub fn fit_words(s: &str, width: usize) -> String {
    if s.width() <= width || width == 0 {
        return fit(s, width);
    }
    let head = prefix(s, width - 1);
    match head.rfind(' ') {
        Some(at) if at >= head.len() * 2 / 3 => format!("{}…", head[..at].trim_end()),
        _ => format!("{head}…"),
    }
}

/// `text` in lines of at most `width` columns, broken between words (a
/// word wider than a line is cut with `…`).
pub fn wrapped(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word = fit(word, width);
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `s` in at most `width` columns, cut at the start (`…` then the end):
/// for paths, whose end says most.
pub fn fit_start(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        tail.push(c);
        used += w;
    }
    if width == 0 {
        return String::new();
    }
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// A unit-id shortened to its first and last four characters.
pub fn short_id(id: &str) -> String {
    let id = unit_shown(id);
    if id.chars().count() <= 12 {
        return id.into_owned();
    }
    let head: String = id.chars().take(4).collect();
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}…{tail}")
}

pub use crate::text::is_invisible;

/// A `unit-id` as the screen writes it: its invisible characters as
/// `\u{..}`, as `view --summary` and a GPX track's name write them. The
/// frame drops every invisible character it is given, so `ctl\x1b]0;T`
/// and `ctl]0;T` read alike as `ctl]0;T` (a probe, December 7).
pub fn unit_shown(id: &str) -> std::borrow::Cow<'_, str> {
    crate::text::shown(id)
}

/// A `unit-id` in a column `width` wide: whole, escapes included, where it
/// fits, else shortened (`short_id`), never cut at its end (a 32-digit id
/// with an escape lost the escape to the cut).
pub fn unit_in(id: &str, width: usize) -> String {
    let shown = unit_shown(id);
    if shown.width() <= width {
        shown.into_owned()
    } else {
        short_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_on_another_day_or_year_says_its_date() {
        let now = crate::fixtures::at("2026-11-27T08:10:00Z");
        let when = |t: &str| clock_or_date(now, crate::fixtures::at(t), true);
        assert_eq!(when("2026-11-27T00:00:01Z"), "00:00:01");
        assert_eq!(when("2026-11-26T23:59:59Z"), "11-26 23:59");
        let day = clock_or_date(now, crate::fixtures::at("2026-11-26T23:59:59Z"), false);
        assert_eq!(day, "11-26");
        assert_eq!(when("2025-11-27T08:10:00Z"), "2025-11-27");
        assert_eq!(when("1970-01-01T00:00:42Z"), "1970-01-01");
    }

    #[test]
    fn numbers_fit_their_column_without_being_cut() {
        let rate = |r: f64| fitted_number(r, 7, |r| format!("{r:.1}"));
        assert_eq!(rate(12.5), "12.5");
        assert_eq!(rate(99_999.94), "99999.9");
        assert_eq!(rate(599_940_000.0), "599.9M");
        assert_eq!(rate(297_255.4), "297.3k");
        assert_eq!(rate(999_960.0), "1.0M");
        assert_eq!(rate(-999_960.0), "-1.0M");
        assert_eq!(rate(1e300), "1.0e300");
        assert_eq!(rate(-1e300), "-1e300");
        let counted = |n: u64| fitted_number(n as f64, 9, |n| count(n as u64));
        assert_eq!(counted(9_999_999), "9,999,999");
        assert_eq!(counted(10_000_000), "10.0M");
        assert_eq!(counted(u64::MAX), "1.8e19");
    }

    #[test]
    fn padding_counts_columns() {
        for s in [
            "rpm",
            "燃料",
            "e\u{301}\u{301}x",
            "zw\u{200b}sp",
            "a-name-too-long",
        ] {
            for side in [Side::Left, Side::Right] {
                assert_eq!(padded(s, 8, side).width(), 8, "{s:?}");
            }
        }
        assert_eq!(padded("燃料", 6, Side::Left), "燃料  ");
        assert_eq!(padded("1500", 6, Side::Right), "  1500");
        assert_eq!(padded("a-name-too-long", 8, Side::Left), "a-name-…");
    }

    #[test]
    fn device_units_are_shortened_and_others_kept() {
        assert_eq!(unit("revolutions_per_minute"), "rpm");
        assert_eq!(unit("kph"), "km/h");
        assert_eq!(unit("degC"), "°C");
        assert_eq!(unit("percent"), "%");
        assert_eq!(unit("kilopascal"), "kPa");
        assert_eq!(unit("furlongs_per_fortnight"), "furlongs_per_fortnight");
        assert_eq!(unit(""), "");
    }

    #[test]
    fn numbers_past_any_reading_are_written_short() {
        assert_eq!(fixed(Some(12.456), 2), "12.46");
        assert_eq!(fixed(None, 2), "-");
        assert_eq!(fixed(Some(999_999_999_999.0), 0), "999999999999");
        assert_eq!(fixed(Some(1e308), 2), "1.000e308");
        assert_eq!(fixed(Some(-1.7e308), 6), "-1.700e308");
    }

    #[test]
    fn spans_and_ages() {
        assert_eq!(span(42), "42s");
        assert_eq!(
            wrapped("no answer: the device waits for its timeout", 16),
            ["no answer: the", "device waits for", "its timeout"]
        );
        assert_eq!(wrapped("abcdefghij xy", 5), ["abcd…", "xy"]);
        assert!(wrapped("", 5).is_empty());
        assert_eq!(span(250), "4m10s");
        assert_eq!(span(7_500), "2h05m");
        assert_eq!(span(2 * 86_400 + 3_600), "2d01h");
        assert_eq!(span(99 * 86_400 + 23 * 3_600), "99d23h");
        assert_eq!(span(123 * 86_400 + 5), "123d");
        // The guide's examples, seen in December 2026.
        assert_eq!(span(2110 * 86_400 + 4 * 3_600), "5.8y");
        // A clock that started at 1970.
        assert_eq!(span(1_796_000_000), "56.9y");
        assert_eq!(span(u64::MAX), "584542046091y");
        let now: Timestamp = "2026-11-27T08:00:10Z".parse().unwrap();
        let then: Timestamp = "2026-11-27T08:00:07.9Z".parse().unwrap();
        assert_eq!(age(now, then), "2s ago");
        assert_eq!(age(then, now), "2s ahead");
        let jitter: Timestamp = "2026-11-27T08:00:10.6Z".parse().unwrap();
        assert_eq!(age(now, jitter), "0s ago", "under a second ahead is jitter");
        let fast: Timestamp = "2026-11-27T08:00:11.2Z".parse().unwrap();
        assert_eq!(age(now, fast), "1s ahead");
    }

    #[test]
    fn cut_text_ends_in_an_ellipsis() {
        assert_eq!(fit("ambiant_air_temp", 16), "ambiant_air_temp");
        assert_eq!(fit("ambiant_air_temp", 12), "ambiant_air…");
        assert_eq!(fit("ambiant_air_temp", 1), "…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(
            fit_words("Random/multiple cylinder misfire detected", 30),
            "Random/multiple cylinder…"
        );
        assert_eq!(fit_words("Thermostat", 6), "Therm…");
        assert_eq!(
            fit_start("captures/20261127T075950Z.jsonl", 12),
            "…5950Z.jsonl"
        );
        assert_eq!(fit_start("c.jsonl", 12), "c.jsonl");
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(bytes(850), "850 B");
        assert_eq!(bytes(1_000), "0.98 KiB");
        assert_eq!(bytes(1_047_000), "1.00 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        for n in [999, 1_023_999, 1_048_524, u64::MAX / 2, u64::MAX] {
            assert!(bytes(n).chars().count() <= 9, "{}", bytes(n));
        }
        assert_eq!(bytes(12_595), "12.3 KiB");
        assert_eq!(bytes(1_572_864), "1.50 MiB");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(short_id("ee3df171ff0f6209a3dbaa00b00e1d05"), "ee3d…1d05");
    }
}

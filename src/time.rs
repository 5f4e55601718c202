//! Time in the shared vocabulary: the device's `@ts` as it is read, and
//! `received` as the capture and every output write it.

use jiff::{SignedDuration, Timestamp};

/// A batch stamped further than this past its arrival has a clock gone
/// wrong (one batch stamped 2038): see `rank`. A clock running fast by
/// less is taken at its word.
pub const AHEAD: SignedDuration = SignedDuration::from_secs(10 * 60);

/// Where a record stamped `ts` sorts among the device's values, in a batch
/// that arrived at `received`: its stamp; in a batch stamped further than
/// `AHEAD` past its arrival (`far_ahead`: its newest stamp is; or this
/// record is), no later than its arrival, so that the batches after it
/// are newer, and the batch keeps its order (its records past the arrival
/// sort there together, in the order they came). Until December 6 one
/// record stamped in 2038 stayed the latest of its kind for good:
/// position, battery, counters, OBD values and the Types tab showed it
/// whatever came after, also after a restart (a hostile-client probe).
/// (Deciding record by record, a review found, put a fix 10:01 ahead
/// before one 9:59 ahead in the same batch.)
pub fn rank(ts: Timestamp, received: Timestamp, far_ahead: bool) -> Timestamp {
    if far_ahead || past_ahead(ts, received) {
        ts.min(received)
    } else {
        ts
    }
}

/// Whether `ts` is further than `AHEAD` past `received`.
pub fn past_ahead(ts: Timestamp, received: Timestamp) -> bool {
    received.checked_add(AHEAD).is_ok_and(|latest| ts > latest)
}

/// The shapes of `@ts` that are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampKind {
    /// Carries `Z` or a numeric offset.
    Offset,
    /// No offset: UTC by the device's convention.
    Naive,
}

/// Tells whether `s` is a valid `@ts`, and which kind; None when it is not.
pub fn classify_timestamp(s: &str) -> Option<TimestampKind> {
    parse_timestamp(s).map(|(_, kind)| kind)
}

/// Parses `@ts`: `Z`, `+00:00` and naive (taken as UTC), 0 to 9 fraction digits.
pub fn parse_timestamp(s: &str) -> Option<(Timestamp, TimestampKind)> {
    match device_shaped_timestamp(s) {
        Some(parsed) => Some(parsed),
        None => parse_timestamp_with_jiff(s),
    }
}

thread_local! {
    /// The last minute parsed on this thread: its text up to the minute
    /// (`2026-11-27T08:00`) and the timestamp of its second 00.
    static LAST_MINUTE: std::cell::Cell<Option<([u8; 16], Timestamp)>> =
        const { std::cell::Cell::new(None) };
}

/// The device's own shape, `2026-11-27T08:00:03.158955` (or ending in
/// `Z`), read fast: the records of a batch mostly share their minute (the
/// 1000-record sample has 228 seconds and 4 minutes), so the date and time
/// up to the minute are parsed by jiff once per minute and kept per
/// thread, and only the seconds and the fraction digits are read here.
/// None for any other shape or anything in doubt: jiff then reads the
/// whole text.
fn device_shaped_timestamp(s: &str) -> Option<(Timestamp, TimestampKind)> {
    let bytes = s.as_bytes();
    if bytes.len() < 19 {
        return None;
    }
    let (head, rest) = bytes.split_at(19);
    // Exactly `DDDD-DD-DDTDD:DD:DD`: jiff also takes other 19-byte texts
    // (with an offset or no colons), which must be read whole.
    let shaped = head.iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        10 => *b == b'T',
        13 | 16 => *b == b':',
        _ => b.is_ascii_digit(),
    });
    if !shaped {
        return None;
    }
    let (rest, kind) = match rest.split_last() {
        Some((b'Z' | b'z', before)) => (before, TimestampKind::Offset),
        _ => (rest, TimestampKind::Naive),
    };
    let nanos = match rest {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut n: i32 = 0;
            for d in digits {
                if !d.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + i32::from(d - b'0');
            }
            n * 10_i32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let seconds = i64::from(head[17] - b'0') * 10 + i64::from(head[18] - b'0');
    let second = if seconds < 60 {
        let minute_head: [u8; 16] = head[..16].try_into().ok()?;
        let minute = match LAST_MINUTE.get() {
            Some((text, minute)) if text == minute_head => minute,
            _ => {
                let mut text = [b'0'; 19];
                text[..16].copy_from_slice(&minute_head);
                text[16] = b':';
                let (minute, _) = parse_timestamp_with_jiff(std::str::from_utf8(&text).ok()?)?;
                LAST_MINUTE.set(Some((minute_head, minute)));
                minute
            }
        };
        minute.as_second() + seconds
    } else {
        // A leap second (or worse) is jiff's to judge.
        parse_timestamp_with_jiff(std::str::from_utf8(head).ok()?)?
            .0
            .as_second()
    };
    let t = Timestamp::new(second, nanos).ok()?;
    Some((t, kind))
}

/// `@ts` read by jiff alone.
fn parse_timestamp_with_jiff(s: &str) -> Option<(Timestamp, TimestampKind)> {
    if has_offset(s) {
        if !offset_hour_in_range(s) {
            return None;
        }
        s.parse::<Timestamp>()
            .ok()
            .map(|t| (t, TimestampKind::Offset))
    } else {
        let dt = s.parse::<jiff::civil::DateTime>().ok()?;
        let ts = jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()?;
        Some((ts, TimestampKind::Naive))
    }
}

/// RFC 3339 offsets run to ±23:59, where jiff reads up to ±25:59:59.
fn offset_hour_in_range(s: &str) -> bool {
    let time = s.get(10..).unwrap_or_default();
    time.rfind(['+', '-'])
        .and_then(|at| time.get(at + 1..at + 3))
        .and_then(|hour| hour.parse::<u8>().ok())
        .is_none_or(|hour| hour <= 23)
}

fn has_offset(s: &str) -> bool {
    s.ends_with(['Z', 'z']) || s.get(10..).is_some_and(|time| time.contains(['+', '-']))
}

/// `received` in the capture: RFC 3339, UTC, milliseconds.
pub fn format_received(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_of_every_accepted_shape() {
        use TimestampKind::*;
        for (s, kind) in [
            ("2026-11-27T08:00:03.158955", Some(Naive)),
            ("2026-11-27T08:00:03", Some(Naive)),
            ("2026-11-27T08:00:03.123456789", Some(Naive)),
            ("2020-09-03T12:38:24.374314Z", Some(Offset)),
            ("2020-09-03T12:38:24+00:00", Some(Offset)),
            ("2020-09-03T12:38:24.5-02:00", Some(Offset)),
            ("2020-09-03T12:38:24+23:59", Some(Offset)),
            ("2020-09-03T12:38:24+24:00", None),
            ("2020-09-03T12:38:24-25:00", None),
            ("2020-13-03T12:38:24", None),
            ("yesterday", None),
            ("", None),
        ] {
            assert_eq!(classify_timestamp(s), kind, "{s}");
        }
        let (naive, _) = parse_timestamp("2026-11-27T08:00:03.5").unwrap();
        let (zulu, _) = parse_timestamp("2026-11-27T08:00:03.500Z").unwrap();
        assert_eq!(naive, zulu);
    }

    proptest::proptest! {
        /// The fast path for the device's shape reads every text exactly as
        /// jiff alone does, refusals included.
        #[test]
        fn fast_timestamps_agree_with_jiff(
            year in proptest::prop_oneof![0..10_000u32, 2019..2031u32, 9_990..10_000u32],
            month in 0..14u32,
            day in 0..33u32,
            hour in 0..26u32,
            minute in 0..61u32,
            second in 0..62u32,
            sep in proptest::sample::select(vec!["T", "T", "t", " "]),
            fraction in proptest::sample::select(vec!["", ".", ",5", ".5", ".158955", ".123456789", ".1234567890", ".12a"]),
            suffix in proptest::sample::select(vec!["", "", "Z", "z", "+00:00", "-02:00", "x", " "]),
        ) {
            let s = format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{fraction}{suffix}");
            proptest::prop_assert_eq!(parse_timestamp(&s), parse_timestamp_with_jiff(&s), "{}", s);
            // Twice: the second time the cached minute is used.
            proptest::prop_assert_eq!(parse_timestamp(&s), parse_timestamp_with_jiff(&s), "{}", s);
            // And after another second of the same minute was read first.
            let other = format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{:02}", (second + 1) % 60);
            let _ = parse_timestamp(&other);
            proptest::prop_assert_eq!(parse_timestamp(&s), parse_timestamp_with_jiff(&s), "{}", s);
        }

        #[test]
        fn any_text_reads_as_jiff_reads_it(s in "[0-9T:.Zz+ -]{0,32}") {
            proptest::prop_assert_eq!(parse_timestamp(&s), parse_timestamp_with_jiff(&s));
        }

        /// Heads of the right length but any layout (offsets, fractions or
        /// missing colons inside the first 19 bytes).
        #[test]
        fn odd_heads_read_as_jiff_reads_them(
            head in "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3])(:[0-5][0-9]:[0-5][0-9]|[+-][01][0-9]:[0-5][0-9]|:[0-5][0-9][+-][01][0-9]|[0-5][0-9][0-5][0-9][.][0-9])",
            tail in "(|[.][0-9]{1,3}|Z|[.][0-9]Z|:00)",
        ) {
            let s = format!("{head}{tail}");
            proptest::prop_assert_eq!(parse_timestamp(&s), parse_timestamp_with_jiff(&s), "{}", s);
        }
    }

    #[test]
    fn seconds_are_counted_from_the_cached_minute_and_a_leap_second_is_jiffs() {
        for s in [
            "2026-11-27T08:00:00",
            "2026-11-27T08:00:59.999999999",
            "2026-11-27T08:00:60",
            "2026-11-27T08:00:61Z",
            "2026-11-27T08:01:00",
            "2026-12-31T23:59:59.5Z",
            "9999-12-30T22:00:00",
            "9999-12-30T22:00:01",
        ] {
            // Twice: the second time the cached minute is used.
            assert_eq!(parse_timestamp(s), parse_timestamp_with_jiff(s), "{s}");
            assert_eq!(parse_timestamp(s), parse_timestamp_with_jiff(s), "{s}");
        }
        let a = parse_timestamp("2026-11-27T08:00:07.25").unwrap().0;
        let b = parse_timestamp("2026-11-27T08:00:59").unwrap().0;
        assert_eq!(b.as_second() - a.as_second(), 52);
    }

    #[test]
    fn heads_with_offsets_or_without_colons_are_read_whole() {
        for s in [
            "2026-11-27T08+05:00",
            "2026-11-27T08:00-05",
            "2026-11-27T08+05:00.5",
            "2026-11-27T08:00-05Z",
            "2026-11-27T080003.1Z",
        ] {
            assert_eq!(parse_timestamp(s), parse_timestamp_with_jiff(s), "{s}");
        }
        assert_eq!(
            classify_timestamp("2026-11-27T08+05:00"),
            Some(TimestampKind::Offset)
        );
    }

    #[test]
    fn timestamps_in_one_second_share_the_cache_and_keep_their_fraction() {
        let a = parse_timestamp("2026-11-27T08:00:03.1").unwrap().0;
        let b = parse_timestamp("2026-11-27T08:00:03.000000002").unwrap().0;
        let c = parse_timestamp("2026-11-27T08:00:04Z").unwrap();
        assert_eq!(a.subsec_nanosecond(), 100_000_000);
        assert_eq!(b.subsec_nanosecond(), 2);
        assert_eq!(b.as_second(), a.as_second());
        assert_eq!(c.0.as_second(), a.as_second() + 1);
        assert_eq!(c.1, TimestampKind::Offset);
    }
}

//! Uplink health of one device, from when its uploads arrived: the cycle
//! it keeps (learned, not configured) and whether it is keeping it now.
//! Pure: the clock is an argument.

use std::time::Duration;

use jiff::Timestamp;

use crate::dashboard::state::Device;

/// Arrivals kept per device.
pub const ARRIVALS_KEPT: usize = 32;
/// Gaps shorter than this are uploads within one cycle (a retry next to
/// the new batch, a backlog draining), not a cycle.
pub const SAME_CYCLE: Duration = Duration::from_secs(1);
/// Slack on top of the cycle before an upload counts as late (a device
/// adds up to 10 s of random splay to its 60 s).
const SLACK: Duration = Duration::from_secs(2);

/// Whether the device keeps its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keeping {
    /// Too few uploads yet to know its cycle.
    Learning,
    /// The last upload is no older than 1.5 cycles (plus slack).
    OnTime,
    /// Up to 3 cycles.
    Late,
    /// Up to 10 cycles.
    Overdue,
    /// Longer.
    Silent,
}

impl Keeping {
    pub fn as_str(self) -> &'static str {
        match self {
            Keeping::Learning => "learning its cycle",
            Keeping::OnTime => "on time",
            Keeping::Late => "late",
            Keeping::Overdue => "overdue",
            Keeping::Silent => "silent",
        }
    }
}

/// A device's uplink at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// Since the last upload.
    pub age: Duration,
    /// The median gap between upload cycles, once two are known.
    pub cycle: Option<Duration>,
    pub keeping: Keeping,
}

/// The cycle learned from `arrivals` (oldest first): the median of the
/// gaps that are not within one cycle; None until two such gaps are known.
pub fn cycle(arrivals: &[Timestamp]) -> Option<Duration> {
    let mut gaps: Vec<Duration> = arrivals
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).try_into().ok())
        .filter(|g: &Duration| *g >= SAME_CYCLE)
        .collect();
    if gaps.len() < 2 {
        return None;
    }
    gaps.sort();
    Some(gaps[gaps.len() / 2])
}

/// How the device with these arrivals (oldest first) is doing at `now`.
pub fn of_arrivals(arrivals: &[Timestamp], now: Timestamp) -> Option<Uplink> {
    let last = *arrivals.last()?;
    let age: Duration = now.duration_since(last).try_into().unwrap_or_default();
    let cycle = cycle(arrivals);
    let keeping = match cycle {
        None => Keeping::Learning,
        Some(c) if age <= c.mul_f64(1.5) + SLACK => Keeping::OnTime,
        Some(c) if age <= c * 3 => Keeping::Late,
        Some(c) if age <= c * 10 => Keeping::Overdue,
        Some(_) => Keeping::Silent,
    };
    Some(Uplink {
        age,
        cycle,
        keeping,
    })
}

/// How `device` is doing at `now`.
pub fn of(device: &Device, now: Timestamp) -> Option<Uplink> {
    let arrivals: Vec<Timestamp> = device.arrivals.iter().copied().collect();
    of_arrivals(&arrivals, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;

    /// Arrivals at these seconds after 08:00:00.
    fn arrivals(secs: &[i64]) -> Vec<Timestamp> {
        let base = at("2026-11-27T08:00:00Z");
        secs.iter()
            .map(|s| base + jiff::SignedDuration::from_secs(*s))
            .collect()
    }

    fn keeping(secs: &[i64], now: i64) -> (Option<u64>, Keeping) {
        let now = at("2026-11-27T08:00:00Z") + jiff::SignedDuration::from_secs(now);
        let u = of_arrivals(&arrivals(secs), now).unwrap();
        (u.cycle.map(|c| c.as_secs()), u.keeping)
    }

    #[test]
    fn a_device_keeping_its_60_s_cycle_with_splay_is_on_time_then_late_overdue_silent() {
        let cycle = [0, 63, 125, 190, 251];
        assert_eq!(keeping(&cycle, 251), (Some(63), Keeping::OnTime));
        assert_eq!(keeping(&cycle, 251 + 90), (Some(63), Keeping::OnTime));
        assert_eq!(keeping(&cycle, 251 + 100), (Some(63), Keeping::Late));
        assert_eq!(keeping(&cycle, 251 + 189), (Some(63), Keeping::Late));
        assert_eq!(keeping(&cycle, 251 + 190), (Some(63), Keeping::Overdue));
        assert_eq!(keeping(&cycle, 251 + 631), (Some(63), Keeping::Silent));
    }

    #[test]
    fn uploads_within_one_cycle_do_not_shorten_it() {
        // A retry right after the new batch, and a backlog of three.
        let arrivals = [0, 60, 60, 120, 120, 120, 180];
        assert_eq!(keeping(&arrivals, 185), (Some(60), Keeping::OnTime));
    }

    #[test]
    fn two_uploads_are_not_enough_to_know_a_cycle() {
        assert_eq!(keeping(&[0, 60], 1000), (None, Keeping::Learning));
        assert_eq!(
            of_arrivals(&[], at("2026-11-27T08:00:00Z")),
            None,
            "no upload, no uplink"
        );
    }
}

//! The Battery panel (`obd.bat`): voltage and state (fault states stand
//! out), time in the current state on the device's clock, level gauge, the
//! lowest and highest voltage kept with the last crank's lowest, and the
//! voltage history over a time axis. At 80×24 (below 8 inner rows):
//! ```text
//! ╭ Battery ───────────────────── 3s ago ╮
//! │14.12 V  charging  for 0s  level 100 %│
//! │10.5–14.1 V · crank 10.46 V 01:36:23  │
//! │15V│                              ⢀⣀⡠⠤│
//! │   │⠒⠒⠤⠤⠤⣀⣀⣀⡀            ⢀⣀⣀⠤⠤⠒⠒⠊⠉⠁   │
//! │10V│        ⠈⠉⠉⠑⠒⠒⠢⠤⠤⠔⠒⠊⠉⠁            │
//! │    01:36:22                  01:36:24│
//! ╰──────────────────────────────────────╯
//! ```
//! With more rows the level has its own gauge line and the figures read
//! `min 10.46 V · max 14.12 V · crank 10.46 V at 01:36:23 (3s ago)`.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, LineGauge, Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, clock, clock_or_date, fixed, span};
use crate::dashboard::state::{BatteryNow, Device, Stamped, VoltageSummary};
use crate::dashboard::ui::{bottom_edge, fit_line, old_data_title, panel, placeholder};

/// Draws the Battery panel. Below 8 inner rows the level joins the
/// minimum and maximum line, so the chart keeps three rows at 80×24.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let device = app.device();
    let battery = device.and_then(|d| d.battery.as_ref());
    let block = bottom_edge(
        panel(
            app,
            "Battery",
            battery.map(|b| age(app.now(), b.ts)),
            area.width,
        ),
        area.width,
        battery
            .is_some_and(|b| b.old)
            .then(|| old_data_title(app))
            .into_iter()
            .collect(),
        None,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let (Some(device), Some(battery)) = (device, battery) else {
        placeholder(app, "no battery reading yet (obd.bat)", inner, buf);
        return;
    };
    let roomy = inner.height >= 8;
    let [state_row, gauge_row, stats_row, chart_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(roomy)),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let mut state = state_line(app, battery);
    // Without room for the gauge the level goes on the state line, or
    // first on the next one when the state line is full.
    let level = format!("{} %", fixed(battery.value.level, 0));
    let mut level_first = None;
    if !roomy && state.width() + 8 + level.len() <= state_row.width as usize {
        state.spans.push(Span::styled("  level ", app.theme.label));
        state.spans.push(Span::styled(level, app.theme.value));
    } else if !roomy {
        level_first = Some(vec![
            Span::styled("level ", app.theme.label),
            Span::styled(level, app.theme.value),
            Span::styled(" · ", app.theme.label),
        ]);
    }
    Paragraph::new(fit_line(state, state_row.width)).render(state_row, buf);
    if roomy {
        gauge(app, &battery.value, gauge_row, buf);
    }
    if let Some(summary) = device.voltage_summary() {
        let first = level_first.unwrap_or_default();
        let first_width: usize = first.iter().map(Span::width).sum();
        let width = (stats_row.width as usize).saturating_sub(first_width);
        let mut line = [
            stats_line(app, &summary, true),
            stats_line(app, &summary, false),
        ]
        .into_iter()
        .find(|l| l.width() <= width)
        .unwrap_or_else(|| short_stats_line(app, &summary));
        line.spans.splice(0..0, first);
        Paragraph::new(fit_line(line, stats_row.width)).render(stats_row, buf);
    }
    history(app, device, chart_area, buf);
}

/// The same as `stats_line` in some 36 columns.
fn short_stats_line(app: &App, s: &VoltageSummary) -> Line<'static> {
    let t = &app.theme;
    let mut spans = vec![Span::styled(
        format!(
            "{}–{} V",
            fixed(Some(s.min.volts), 1),
            fixed(Some(s.max.volts), 1)
        ),
        t.value,
    )];
    if let Some(c) = s.last_crank {
        spans.push(Span::styled(" · crank ", t.label));
        spans.push(Span::styled(
            format!("{} V", fixed(Some(c.volts), 2)),
            t.value,
        ));
        spans.push(Span::styled(
            format!(" {}", clock_or_date(app.now(), c.ts, false)),
            t.label,
        ));
    }
    Line::from(spans)
}

/// Lowest and highest voltage shown, and the last crank's lowest and when
/// (`wide`: with the units and words spelt out).
fn stats_line(app: &App, s: &VoltageSummary, wide: bool) -> Line<'static> {
    let t = &app.theme;
    let (unit, at) = if wide { (" V", " at") } else { ("", "") };
    let mut spans = vec![
        Span::styled("min ", t.label),
        Span::styled(format!("{}{unit}", fixed(Some(s.min.volts), 2)), t.value),
        Span::styled(" · max ", t.label),
        Span::styled(format!("{} V", fixed(Some(s.max.volts), 2)), t.value),
    ];
    match s.last_crank {
        Some(c) => {
            spans.push(Span::styled(" · crank ", t.label));
            spans.push(Span::styled(
                format!("{} V", fixed(Some(c.volts), 2)),
                t.value,
            ));
            spans.push(Span::styled(
                format!(
                    "{at} {} ({})",
                    clock_or_date(app.now(), c.ts, true),
                    age(app.now(), c.ts)
                ),
                t.label,
            ));
        }
        None => spans.push(Span::styled(" · no crank kept", t.dim)),
    }
    Line::from(spans)
}

/// Style of a battery state: faults loud, charging fine, the rest plain.
pub fn state_style(app: &App, b: &BatteryNow) -> Style {
    match b.state.as_str() {
        _ if b.error => app.theme.error,
        "charging" => app.theme.ok,
        _ => app.theme.value,
    }
}

/// Voltage, state and how long the state has held, on the device's own
/// timeline: from the first reading in this state to the latest one (the
/// panel's title says how old that is, or how far ahead).
fn state_line(app: &App, reading: &Stamped<BatteryNow>) -> Line<'static> {
    let t = &app.theme;
    let b = &reading.value;
    let held =
        (reading.rank.as_millisecond() - b.state_since.as_millisecond()).max(0) as u64 / 1000;
    let state = if b.state.is_empty() {
        "state unknown"
    } else {
        &b.state
    };
    let shown = if b.error {
        format!(" {state} ")
    } else {
        state.to_string()
    };
    Line::from(vec![
        Span::styled(fixed(b.voltage, 2), t.value),
        Span::styled(" V  ", t.dim),
        Span::styled(shown, state_style(app, b)),
        Span::styled(format!("  for {}", span(held)), t.label),
    ])
}

/// The charge level as a one-line gauge.
fn gauge(app: &App, b: &BatteryNow, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let level = b.level.unwrap_or(0.0).clamp(0.0, 100.0);
    LineGauge::default()
        .ratio(level / 100.0)
        .label(Line::from(vec![
            Span::styled("level ", t.label),
            Span::styled(format!("{} %", fixed(b.level, 0)), t.value),
        ]))
        .filled_style(if b.error { t.error } else { t.chart })
        .unfilled_style(t.dim)
        .render(area, buf);
}

/// Volts past which the chart draws a reading at its end.
const OFF_THE_SCALE: f64 = 1000.0;

/// The voltage history chart in time order (late retries slot in where
/// they belong), its y axis labelled with its bounds and a time axis
/// below: the first and last reading's time of day.
fn history(app: &App, device: &Device, area: Rect, buf: &mut Buffer) {
    if area.height < 2 || device.voltages.is_empty() {
        return;
    }
    // A reading beyond any vehicle's battery is drawn at the scale's end:
    // near f64's limit, ratatui's line drawing overflows to infinity and
    // never returns (1e307 V hung the screen, and a restart on that
    // capture hung again).
    let points: Vec<(f64, f64)> = device
        .voltages
        .iter()
        .map(|s| {
            let volts = s.volts.clamp(-OFF_THE_SCALE, OFF_THE_SCALE);
            (s.ts.as_millisecond() as f64 / 1000.0, volts)
        })
        .collect();
    let (first, last) = (
        device.voltages.iter().next().map(|s| s.ts),
        device.voltages.last().map(|s| s.ts),
    );
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    // From 0 V up unless a reading is below it, and never upside down
    // (readings all below -0.1 V made the axis run from 0 down).
    let lo = if lo < 0.0 {
        (lo - 0.1).floor()
    } else {
        (lo - 0.1).floor().max(0.0)
    };
    let hi = (hi + 0.1).ceil().max(lo + 1.0);
    let t = &app.theme;
    let [plot, axis] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    let data = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.chart)
        .data(&points);
    let labels = [format!("{lo:.0}V"), format!("{hi:.0}V")];
    let label_width = labels.iter().map(|l| l.len()).max().unwrap_or(0) as u16;
    Chart::new(vec![data])
        .x_axis(Axis::default().bounds([x0, x1.max(x0 + 1.0)]))
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels(labels.map(|l| Span::styled(l, t.dim)))
                .style(t.border),
        )
        .render(plot, buf);
    if let (Some(first), Some(last)) = (first, last) {
        let [_, times] =
            Layout::horizontal([Constraint::Length(label_width + 1), Constraint::Fill(1)])
                .areas(axis);
        let (from, to) = axis_ends(first, last);
        let gap = (times.width as usize).saturating_sub(from.len() + to.len());
        let line = Line::from(vec![
            Span::styled(from, t.dim),
            Span::raw(" ".repeat(gap)),
            Span::styled(to, t.dim),
        ]);
        Paragraph::new(fit_line(line, times.width)).render(times, buf);
    }
}

/// The time axis's two ends: the time of day when the readings are of
/// one day (UTC), the date and time when they span days, the date when
/// they span a year or more (the time of day alone read as one day's
/// readings).
fn axis_ends(first: jiff::Timestamp, last: jiff::Timestamp) -> (String, String) {
    let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d").to_string();
    if day(first) == day(last) {
        return (clock(first), clock(last));
    }
    let year = jiff::SignedDuration::from_hours(365 * 24);
    let format = if last.duration_since(first) < year {
        "%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    };
    (
        first.strftime(format).to_string(),
        last.strftime(format).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{accepted, at};

    #[test]
    fn the_time_axis_says_the_date_when_readings_span_days() {
        let ends = |a, b| axis_ends(at(a), at(b));
        assert_eq!(
            ends("2026-11-27T08:00:00Z", "2026-11-27T09:30:05Z"),
            ("08:00:00".into(), "09:30:05".into())
        );
        assert_eq!(
            ends("2026-11-26T23:00:00Z", "2026-11-27T01:00:00Z"),
            ("11-26 23:00".into(), "11-27 01:00".into())
        );
        assert_eq!(
            ends("2024-02-01T08:00:00Z", "2026-11-27T08:00:00Z"),
            ("2024-02-01".into(), "2026-11-27".into())
        );
        // Over new year, two hours apart: still the times.
        assert_eq!(
            ends("2025-12-31T23:00:00Z", "2026-01-01T01:00:00Z"),
            ("12-31 23:00".into(), "01-01 01:00".into())
        );
    }

    /// The rows of the chart that hold any plotted dot, top row 0.
    fn plotted_rows(voltages: &[f64]) -> Vec<u16> {
        let records: Vec<String> = voltages
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(r#"{{"@t":"obd.bat","@ts":"2026-11-27T08:00:{i:02}Z","voltage":{v},"state":"charging"}}"#)
            })
            .collect();
        let body = format!("[{}]", records.join(","));
        let mut app = App::new(
            Default::default(),
            crate::dashboard::theme::Theme::color(),
            at("2026-11-27T08:01:00Z"),
        );
        app.apply(&accepted(1, at("2026-11-27T08:01:00Z"), Some("u"), &body));
        let area = Rect::new(0, 0, 60, 14);
        let mut buf = Buffer::empty(area);
        render(&app, area, &mut buf);
        // Braille cells right of the y axis, below the state and gauge lines.
        (4..13)
            .filter(|&y| {
                (6..59).any(|x| {
                    buf[(x, y)]
                        .symbol()
                        .chars()
                        .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
                })
            })
            .map(|y| y - 4)
            .collect()
    }

    /// An absurd reading (1e307 V) once hung the screen for good:
    /// ratatui's line drawing overflowed to infinity and never ended, and
    /// a restart on the capture hung again. Each is drawn, off the scale.
    #[test]
    fn an_absurd_voltage_is_drawn_off_the_scale_not_hung_on() {
        // Every reading below 0 V (a probe's wiring backwards): drawn, on
        // an axis that runs the right way.
        assert!(!plotted_rows(&[-3.0, -2.5, -3.2]).is_empty());
        for v in [1e307, 1.7e308, -1.7e308, 5e3] {
            // On a thread of its own, so that a hang fails the test.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(plotted_rows(&[12.5, v, 12.4])));
            let rows = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("drawing {v:e} V did not end"));
            assert!(!rows.is_empty(), "{v:e}: {rows:?}");
        }
    }

    #[test]
    fn a_cranking_dip_reaches_the_bottom_of_the_chart() {
        let steady = vec![12.6; 40];
        let mut cranking = steady.clone();
        cranking[20] = 9.6;
        let flat = plotted_rows(&steady);
        let dip = plotted_rows(&cranking);
        assert!(flat.len() <= 2, "a steady voltage is a flat line: {flat:?}");
        assert!(
            dip.len() >= 6,
            "the one-sample dip spans the chart: {dip:?}"
        );
    }
}

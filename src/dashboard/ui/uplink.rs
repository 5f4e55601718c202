//! The Uplink tab: one row per device (by `unit-id`) saying whether it
//! behaves: when it last uploaded, the cycle learned from its arrivals and
//! whether it keeps it, how full its batches are and whether a backlog is
//! draining, how old its data is when it arrives, its clock, how often it
//! had to send a batch again, the refusals it got, and the gaps between
//! its uploads as a sparkline. Below the rows, one line per thing flagged.
//! Cells flow onto a second line per device when the terminal is narrow.
//! ```text
//! ╭ Uplink ────────────────────────── 2 devices · OLD: data over 1h00m late on arrival ╮
//! │device    last       state    cycle  fill      backlog    data lag   clock     … │
//! │ee3d…1d05 3s ago     on time   60 s  100/100   draining 4 2.1 s      ok        … │
//! │                                                                                  │
//! │ee3d…1d05 backlog draining: 4 full batches of 100 records back to back            │
//! ╰ on time: ≤ 1.5 cycles + 2 s · late: ≤ 3 · overdue: ≤ 10 cycles · then silent ───╯
//! ```
//! The Live tab's summary line (`summary_line`) comes from here too.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline, Widget, Wrap};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, fit, short_id, short_span, span};
use crate::dashboard::theme::Theme;
use crate::dashboard::ui::{fit_line, panel, placeholder};
use crate::dashboard::uplink::{self, Keeping, Log, OLD_DATA};

/// The columns in order: heading and width. The sparkline takes the rest
/// of the line (at least `SPARK_MIN`).
const COLUMNS: [(&str, u16); 11] = [
    ("device", 9),
    ("last", 9),
    ("state", 8),
    ("cycle", 6),
    ("fill", 9),
    ("backlog", 12),
    ("data lag", 9),
    ("clock", 8),
    ("retries", 7),
    ("re-sends", 8),
    ("refused", 14),
];
/// The narrowest sparkline drawn on a line.
const SPARK_MIN: u16 = 8;
/// From this width the device column shows the whole unit-id.
const WHOLE_ID_FROM: u16 = 180;

/// Where each cell of one device goes: (line, x, width) per column, then
/// the sparkline's.
struct Flow {
    cells: Vec<(u16, u16, u16)>,
    spark: (u16, u16, u16),
    lines: u16,
}

/// Lays the columns out in `width`, wrapping onto further lines
/// (indented under the device) when they do not fit.
fn flow(width: u16) -> Flow {
    let device = if width >= WHOLE_ID_FROM {
        32
    } else {
        COLUMNS[0].1
    };
    let indent = device + 1;
    // On a line with room to spare (a sparkline of 30 and more), the
    // refusals get up to 12 more: `hangup×1 500×18 503×21` was cut at 200
    // columns (a cross-tool probe).
    let one_line: u16 = device + COLUMNS[1..].iter().map(|(_, w)| w + 1).sum::<u16>() + 1;
    let more_refused = width.saturating_sub(one_line + 30).min(12);
    let (mut line, mut x) = (0u16, 0u16);
    let mut cells = Vec::with_capacity(COLUMNS.len());
    for (i, (_, w)) in COLUMNS.iter().enumerate() {
        let w = match i {
            0 => device,
            i if i == COLUMNS.len() - 1 => w + more_refused,
            _ => *w,
        };
        if x > indent && x + w > width {
            line += 1;
            x = indent;
        }
        cells.push((line, x, w.min(width.saturating_sub(x))));
        x += w + 1;
    }
    if x + SPARK_MIN > width {
        line += 1;
        x = indent;
    }
    let spark = (line, x, width.saturating_sub(x));
    Flow {
        cells,
        spark,
        lines: line + 1,
    }
}

/// Draws the Uplink tab.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let shown = app.shown();
    let logs = &shown.uplinks;
    let mut note = format!(
        "{} device{}",
        shown.and_more(logs.len()),
        if logs.len() == 1 { "" } else { "s" },
    );
    if shown.untracked_batches > 0 {
        note.push_str(&format!(
            " ({} batches of further devices not shown)",
            shown.untracked_batches
        ));
    }
    if shown.devices_let_go > 0 {
        note.push_str(&format!(
            " · {} let go after 10 min quiet",
            shown.devices_let_go
        ));
    }
    // A definition, not an alert (it read as one with no old data at all:
    // a UX review).
    note.push_str(&format!(
        " · OLD: data over {} late on arrival",
        span(OLD_DATA.as_secs())
    ));
    // The short form where the long one does not fit the border (at 80
    // columns it was cut after "overdue: 10 ·").
    // Each bound is where the state ends ("late: 3 cycles" read as where
    // it starts: a UX review).
    let long = " on time: last upload ≤ 1.5 cycles + 2 s ago · late: up to 3 (a cycle at least) · overdue: up to 10 · then silent ";
    let short = " on time: ≤ 1.5 cycles + 2 s · late: ≤ 3 · overdue: ≤ 10 cycles · then silent ";
    let fits = long.chars().count() <= usize::from(area.width.saturating_sub(2));
    let legend = Line::from(Span::styled(if fits { long } else { short }, t.label));
    let block = panel(app, "Uplink", Some(note), area.width).title_bottom(legend);
    let inner = block.inner(area);
    block.render(area, buf);
    if logs.is_empty() {
        placeholder(app, "no upload yet", inner, buf);
        return;
    }
    let layout = flow(inner.width);
    let notes = notes(app, logs);
    // The notes (wrapped, and a blank line before them) take up to half
    // the tab.
    let wrapped: usize = notes
        .iter()
        .map(|l| {
            // Words wrap early: count on a little less than the width.
            let room = inner.width.saturating_sub(12).max(1) as usize;
            l.width().div_ceil(room).max(1)
        })
        .sum();
    let notes_height = if notes.is_empty() {
        0
    } else {
        (wrapped as u16 + 1).min(inner.height / 2)
    };
    let [table, below] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(notes_height)]).areas(inner);
    heading(app, &layout, table, buf);
    let per_device = layout.lines;
    // Below the headings; a line is kept for "+N more" when not all fit.
    let room = table.height.saturating_sub(per_device);
    let mut fits = (room / per_device) as usize;
    if logs.len() > fits {
        fits = (room.saturating_sub(1) / per_device) as usize;
    }
    let fits = fits.max(1);
    // The first device shown: every step moves the view, to the last
    // device alone at the end.
    let scroll = app.viewer.uplink_scroll.min(logs.len() - 1);
    for (i, log) in logs.iter().skip(scroll).take(fits).enumerate() {
        let y = table.y + (i as u16 + 1) * per_device;
        if y + per_device > table.bottom() {
            break;
        }
        device_row(
            app,
            log,
            &layout,
            Rect::new(table.x, y, table.width, per_device),
            buf,
        );
    }
    let hidden = logs.len().saturating_sub(scroll + fits);
    if scroll > 0 || hidden > 0 {
        let text = format!(" {scroll} above · +{hidden} more · ↑↓ scroll ");
        let y = table.bottom().saturating_sub(1);
        let line = Line::from(Span::styled(text, t.warn)).right_aligned();
        Paragraph::new(line).render(Rect::new(table.x, y, table.width, 1), buf);
    }
    if !notes.is_empty() && below.height > 0 {
        // A blank line between the rows and the notes when there is room.
        let skip = u16::from(below.height as usize > wrapped);
        let area = Rect::new(below.x, below.y + skip, below.width, below.height - skip);
        Paragraph::new(notes)
            .wrap(Wrap { trim: false })
            .render(area, buf);
    }
}

/// The column headings, on as many lines as a device takes.
fn heading(app: &App, layout: &Flow, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    for ((name, _), (line, x, w)) in COLUMNS.iter().zip(&layout.cells) {
        put(buf, area.x + x, area.y + line, *w, name, t.label);
    }
    let (line, x, w) = layout.spark;
    put(buf, area.x + x, area.y + line, w, "gaps", t.label);
}

/// Writes `text` cut to `width` at (x, y).
fn put(buf: &mut Buffer, x: u16, y: u16, width: u16, text: &str, style: Style) {
    if width > 0 {
        buf.set_stringn(x, y, fit(text, width as usize), width as usize, style);
    }
}

/// One device's cells, and its sparkline.
fn device_row(app: &App, log: &Log, layout: &Flow, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    for ((line, x, w), (text, style)) in layout.cells.iter().zip(cells(app, log, layout)) {
        put(buf, area.x + x, area.y + line, *w, &text, style);
    }
    let (line, x, w) = layout.spark;
    let gaps = log.gaps_ms();
    let shown = &gaps[gaps.len().saturating_sub(w as usize)..];
    if w > 0 && !shown.is_empty() {
        // Every upload gets a bar: gaps far shorter than the longest (a
        // backlog, a retry) show as the lowest one rather than nothing.
        let bars = ratatui::symbols::bar::Set {
            empty: ratatui::symbols::bar::ONE_EIGHTH,
            ..ratatui::symbols::bar::NINE_LEVELS
        };
        Sparkline::default()
            .data(shown)
            .bar_set(bars)
            .style(t.value)
            .render(Rect::new(area.x + x, area.y + line, w, 1), buf);
    } else if w > 0 {
        put(buf, area.x + x, area.y + line, w, "-", t.dim);
    }
}

/// The text and style of each column for one device.
fn cells(app: &App, log: &Log, layout: &Flow) -> Vec<(String, Style)> {
    let t = &app.theme;
    let now = app.now();
    let up = uplink::of(log, now);
    let id = crate::dashboard::format::unit_in(&log.unit_id, usize::from(layout.cells[0].2));
    // Its latest attempt, captured or refused before (a device refused
    // 400 every cycle read "5m05s ago" beside a state judged by its
    // attempts: a truthfulness probe).
    let last = log
        .last_seen
        .or(log.last_arrival())
        .map_or("-".into(), |at| age(now, at));
    let state = up.map_or(("-".into(), t.dim), |u| {
        (u.keeping.short().to_string(), keeping_style(t, u.keeping))
    });
    let cycle = up
        .and_then(|u| u.cycle)
        .map_or("-".into(), |c| format!("{:>3.0} s", c.as_secs_f64()));
    let draining = log.draining();
    let fill = log.fill().map_or("-".into(), |(n, of)| format!("{n}/{of}"));
    let unacked = log.unacked();
    let backlog = if draining > 0 {
        (format!("draining {draining}"), t.warn)
    } else if log.paused() {
        (format!("{unacked} unacked"), t.alarm)
    } else if unacked > 0 {
        (format!("{unacked} unacked"), t.warn)
    } else {
        ("-".into(), t.dim)
    };
    let old = log.batches.last().is_some_and(uplink::Seen::old);
    let lag = match log.lag() {
        None => ("-".into(), t.dim),
        Some(l) if old => {
            // In its largest unit where two do not fit: `OLD 22h27m` was
            // cut in the column's 9 (a soak run).
            let secs = l.as_secs().unsigned_abs();
            let whole = format!("OLD {}", span(secs));
            let fits = whole.chars().count() <= usize::from(COLUMNS[6].1);
            let text = if fits {
                whole
            } else {
                format!("OLD {}", short_span(secs))
            };
            (text, t.alarm)
        }
        Some(l) => (lag_text(l), if l.is_negative() { t.warn } else { t.value }),
    };
    let clock = match log.clock_flag() {
        Some(flag) => (flag.short().to_string(), t.warn),
        None => ("ok".into(), t.dim),
    };
    let counted = |n: u64| (n.to_string(), if n > 0 { t.warn } else { t.dim });
    let refused = log.refusals_within(usize::from(layout.cells[COLUMNS.len() - 1].2));
    let refused = if refused.is_empty() {
        ("-".into(), t.dim)
    } else {
        (refused, t.error)
    };
    vec![
        (id, t.url),
        (last, t.value),
        state,
        (cycle, t.value),
        (fill, if draining > 0 { t.warn } else { t.value }),
        backlog,
        lag,
        clock,
        counted(log.retries),
        counted(log.resends),
        refused,
    ]
}

/// A data lag: tenths of a second up to a minute, then minutes and hours;
/// a minus sign when the records are stamped after they arrived.
fn lag_text(l: jiff::SignedDuration) -> String {
    let sign = if l.is_negative() { "-" } else { "" };
    let secs = l.as_secs_f64().abs();
    if secs < 60.0 {
        format!("{sign}{secs:.1} s")
    } else {
        format!("{sign}{}", span(secs as u64))
    }
}

/// How a state is drawn, here and in the header.
pub fn keeping_style(t: &Theme, k: Keeping) -> Style {
    match k {
        Keeping::OnTime => t.ok,
        Keeping::Learning => t.value,
        Keeping::Retrying | Keeping::Late => t.warn,
        Keeping::Overdue | Keeping::Silent => t.error,
    }
}

/// One line per thing flagged, device by device: a backlog draining,
/// batches it holds unacknowledged, retrying, the clock, old data.
fn notes(app: &App, logs: &[Log]) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = Vec::new();
    for log in logs {
        let id = Span::styled(format!("{} ", short_id(&log.unit_id)), t.url);
        let draining = log.draining();
        if draining > 0 {
            lines.push(Line::from(vec![
                id.clone(),
                Span::styled(
                    format!(
                        "backlog draining: {draining} full batches of {} back to back",
                        log.largest
                    ),
                    t.warn,
                ),
            ]));
        }
        let unacked = log.unacked();
        if unacked > 0 {
            let pause = if log.paused() {
                format!(
                    "; its last run sent no new batch, as it does behind 10 retry queues ({} now)",
                    log.retry_queues()
                )
            } else {
                String::new()
            };
            // Gone quiet, it was holding them when it last uploaded; it
            // does not send them each cycle now (a review).
            let quiet = uplink::of(log, app.now())
                .is_some_and(|u| matches!(u.keeping, Keeping::Overdue | Keeping::Silent));
            let held = if quiet {
                let last = log.last_seen.map_or("-".into(), |at| age(app.now(), at));
                format!("held by the device at its last upload ({last})")
            } else {
                "the device holds them and sends them again each cycle".to_string()
            };
            let text = format!("{unacked} batch(es) captured, not acknowledged: {held}{pause}");
            let style = if pause.is_empty() { t.warn } else { t.alarm };
            lines.push(Line::from(vec![id.clone(), Span::styled(text, style)]));
        }
        if let (Some(since), Some((_, answer))) = (log.unacked_since, log.last_answer) {
            lines.push(Line::from(vec![
                id.clone(),
                Span::styled(
                    format!(
                        "retrying since {} UTC ({}), nothing acknowledged since; last answered {}",
                        crate::dashboard::format::clock_or_date(app.now(), since, true),
                        age(app.now(), since),
                        answer.said()
                    ),
                    t.warn,
                ),
            ]));
        }
        if let Some(flag) = log.clock_flag() {
            lines.push(Line::from(vec![
                id.clone(),
                Span::styled(flag.hint(), t.warn),
            ]));
        }
        if let Some((by, until)) = log.was_ahead() {
            lines.push(Line::from(vec![
                id.clone(),
                Span::styled(
                    format!(
                        "clock was ahead (up to {}) until {} UTC; on time since",
                        span(by.as_secs().unsigned_abs()),
                        crate::dashboard::format::clock_or_date(app.now(), until, true),
                    ),
                    t.dim,
                ),
            ]));
        }
        if log.old_batches > 0 {
            lines.push(Line::from(vec![
                id.clone(),
                Span::styled(
                    format!(
                        "old data: {} batch(es) over {} late, marked O, never current",
                        log.old_batches,
                        span(OLD_DATA.as_secs())
                    ),
                    t.warn,
                ),
            ]));
        }
    }
    lines
}

/// The Live tab's one-line summary of every device's uplink in `width`
/// columns: how many keep their cycle, the worst one, and old data. What
/// gives way first: the pointer to the tab, then the worst one's age.
pub fn summary_line(app: &App, width: u16) -> Option<Line<'static>> {
    [(true, true), (false, true), (false, false)]
        .into_iter()
        .map(|(pointer, worst_age)| summary_spans(app, pointer, worst_age))
        .find(|l| l.as_ref().is_none_or(|l| l.width() <= width as usize))
        .unwrap_or_else(|| summary_spans(app, false, false))
        .map(|l| fit_line(l, width))
}

fn summary_spans(app: &App, pointer: bool, worst_age: bool) -> Option<Line<'static>> {
    let t = &app.theme;
    let logs = &app.shown().uplinks;
    if logs.is_empty() {
        return None;
    }
    let s = uplink::summary(logs, app.now());
    let mut spans = vec![Span::styled(" uplink ", t.label)];
    let states = [
        (s.on_time, Keeping::OnTime),
        (s.retrying, Keeping::Retrying),
        (s.late, Keeping::Late),
        (s.overdue, Keeping::Overdue),
        (s.silent, Keeping::Silent),
        (s.learning, Keeping::Learning),
    ];
    let mut first = true;
    for (n, k) in states.into_iter().filter(|(n, _)| *n > 0) {
        if !first {
            spans.push(Span::styled(" · ", t.label));
        }
        first = false;
        spans.push(Span::styled(
            format!("{n} {}", k.short()),
            keeping_style(t, k),
        ));
    }
    if let Some((id, u)) = &s.worst {
        spans.push(Span::styled(" · worst ", t.label));
        spans.push(Span::styled(short_id(id), t.url));
        let age = if worst_age {
            format!(" {}", span(u.age.as_secs()))
        } else {
            String::new()
        };
        spans.push(Span::styled(
            format!(" {}{age}", u.keeping.short()),
            keeping_style(t, u.keeping),
        ));
    }
    if let Some(id) = &s.old_now {
        // Named unless it is the worst one, named already.
        let whose = if s.worst.as_ref().is_some_and(|(w, _)| w == id) {
            String::new()
        } else {
            format!(" {}", short_id(id))
        };
        spans.push(Span::styled(" · ", t.label));
        spans.push(Span::styled(format!("OLD DATA{whose}"), t.alarm));
    } else if s.old_batches > 0 {
        spans.push(Span::styled(" · ", t.label));
        spans.push(Span::styled(format!("old data {}", s.old_batches), t.warn));
    }
    spans.push(Span::styled(
        if pointer { " · 4 Uplink " } else { " " },
        t.label,
    ));
    Some(Line::from(spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals' cell takes up to 12 more columns where the line has
    /// room to spare; at 118 columns, none (the sparkline keeps its room).
    #[test]
    fn the_refusals_get_room_a_wide_line_spares() {
        let refused = |width: u16| flow(width).cells[COLUMNS.len() - 1];
        assert_eq!(refused(118).2, 14);
        assert_eq!(refused(198).2, 26);
        let wide = flow(198);
        assert_eq!(wide.lines, 1);
        assert!(wide.spark.2 >= 30, "{:?}", wide.spark);
    }
}

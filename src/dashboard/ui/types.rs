//! The Types tab: every `@t` the chosen device sent, with its count, rate
//! (`ended` once the device records others without it), age of the newest
//! and that record in one line.
//! ```text
//! ╭ Types ──────────────────────────── 1 of 15 types · 97 records ╮
//! │type                     count    /min last seen last value    │
//! │obd.bat                    200    14.5 12s ago   14.38 V 100 % …│
//! ╰ filter: bat▏ Enter keeps · Esc clears ────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Cell, Row, Table, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, count, fit, fitted_number};
use crate::dashboard::state::{MAX_KEYS, TypeStats};
use crate::dashboard::ui::{
    column_widths, filter_title, fit_line, nothing_shown, panel, placeholder,
};
use crate::event::type_label;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

/// Draws the Types tab.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let types = app.matching_types();
    let note = app.device().map(|d| {
        let shown = if types.len() == d.types.len() {
            types.len().to_string()
        } else {
            format!("{} of {}", types.len(), d.types.len())
        };
        let mut note = format!("{shown} types · {} records", count(d.records));
        if d.unlisted > 0 {
            note += &format!(" · {} in types past {MAX_KEYS} unlisted", count(d.unlisted));
        }
        note
    });
    let mut block = panel(app, "Types", note, area.width);
    let filter = filter_title(app, area.width.saturating_sub(2));
    // What the filter leaves of the bottom edge, corners off.
    let room =
        usize::from(area.width).saturating_sub(2 + filter.as_ref().map_or(0, |f| f.width() + 1));
    if let Some(title) = filter {
        block = block.title_bottom(title);
    }
    if types.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        placeholder(app, &nothing_shown(app, "no record yet"), inner, buf);
        return;
    }
    let visible = area.height.saturating_sub(3) as usize;
    let scroll = app
        .viewer
        .types_scroll
        .min(types.len().saturating_sub(visible));
    let below = types.len().saturating_sub(scroll + visible);
    if scroll > 0 || below > 0 {
        // Beside the filter being typed, a short form, cut where it still
        // does not fit: it ran over the filter at 80 columns (a review).
        let long = format!(" {scroll} above · +{below} more · ↑↓ PgUp PgDn scroll ");
        let text = if long.width() <= room {
            long
        } else {
            format!(" {scroll} above · +{below} more ")
        };
        let line = fit_line(Line::from(Span::styled(text, t.warn)), room as u16);
        block = block.title_bottom(line.right_aligned());
    }
    // The name column takes the widest name, up to 45% of the width; the
    // value the rest. Whatever is cut ends in `…`.
    let inner_width = area.width.saturating_sub(2);
    let widest =
        |w: &dyn Fn(&(&str, &TypeStats)) -> usize| types.iter().map(w).max().unwrap_or(0) as u16;
    let name_w = widest(&|(n, _)| type_label(n).width());
    let age_w = widest(&|(_, s)| age(app.now(), s.value_ts).width()).max(9);
    // Name and value share what the numbers leave; the name takes what it
    // needs up to half of it.
    let shared = inner_width.saturating_sub(9 + 7 + age_w + 4);
    let constraints = [
        Constraint::Length(name_w.clamp(4, (shared / 2).max(16))),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(age_w),
        Constraint::Fill(1),
    ];
    let widths = column_widths(&constraints, inner_width, 1);
    // The device's newest stamp of any type: a type it stopped recording
    // while it went on with others reads `ended`, not its old rate.
    let newest = app
        .device()
        .and_then(|d| d.types.values().map(|s| s.last_ts).max());
    let rows = types.iter().skip(scroll).take(visible).map(|(name, s)| {
        Row::new(vec![
            Cell::from(fit(type_label(name), widths[0] as usize)).style(if name.is_empty() {
                t.dim
            } else {
                t.value
            }),
            Cell::from(format!(
                "{:>9}",
                fitted_number(s.count as f64, 9, |n| count(n as u64))
            )),
            if newest.is_some_and(|n| s.ended(n)) {
                Cell::from("  ended").style(t.dim)
            } else {
                Cell::from(format!(
                    "{:>7}",
                    s.per_minute()
                        .map_or("-".into(), |r| fitted_number(r, 7, |r| format!("{r:.1}")))
                ))
            },
            Cell::from(fit(&age(app.now(), s.value_ts), widths[3] as usize)).style(t.dim),
            Cell::from(fit(&s.last_value, widths[4] as usize)),
        ])
    });
    let header = Row::new(
        ["type", "    count", "   /min", "last seen", "last value"]
            .map(|h| Cell::from(h).style(t.label)),
    );
    Table::new(rows, constraints)
        .header(header)
        .block(block)
        .column_spacing(1)
        .render(area, buf);
}

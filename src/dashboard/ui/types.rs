//! The Types tab: every `@t` the chosen device sent, with its count, rate,
//! age of the newest and that record in one line.
//! ```text
//! ╭ Types ─────────────────────────────── 13 types · 2,000 records ╮
//! │type                     count    /min last seen     last value│
//! │obd.bat                    200    14.5 12s ago       14.38 V 10│
//! ╰────────────────────────────────────────────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Cell, Row, Table, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, count};
use crate::dashboard::ui::{filter_title, nothing_shown, panel, placeholder};

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
        format!("{shown} types · {} records", count(d.records))
    });
    let mut block = panel(app, "Types", note);
    if let Some(title) = filter_title(app) {
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
    let rows = types.iter().skip(scroll).map(|(name, s)| {
        Row::new(vec![
            Cell::from(name.to_string()).style(t.value),
            Cell::from(format!("{:>9}", count(s.count))),
            Cell::from(format!(
                "{:>7}",
                s.per_minute().map_or("-".into(), |r| format!("{r:.1}"))
            )),
            Cell::from(age(app.now(), s.last_ts)).style(t.dim),
            Cell::from(s.last_value.clone()),
        ])
    });
    let header = Row::new(
        ["type", "    count", "   /min", "last seen", "last value"]
            .map(|h| Cell::from(h).style(t.label)),
    );
    Table::new(
        rows,
        [
            Constraint::Length(24),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(13),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .block(block)
    .column_spacing(1)
    .render(area, buf);
}

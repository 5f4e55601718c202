//! The Types tab: every `@t` the chosen device sent, with its count, rate,
//! age of the newest and that record in one line.
//! ```text
//! ┌ Types ─────────────────────────────────────────────────────────┐
//! │ type             count   /min  last seen  last value           │
//! │ obd.bat            100   26.4  3s ago     12.86 V 100 % charging│
//! └────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Cell, Row, Table, Widget};

use crate::dashboard::app::App;
use crate::dashboard::ui::format::{age, count};
use crate::dashboard::ui::{panel, placeholder};

/// Draws the Types tab.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let needle = app.view.filter.to_lowercase();
    let types: Vec<_> = app
        .device()
        .map(|d| {
            d.types
                .iter()
                .filter(|(name, s)| {
                    needle.is_empty()
                        || name.to_lowercase().contains(&needle)
                        || s.last_value.to_lowercase().contains(&needle)
                })
                .collect()
        })
        .unwrap_or_default();
    let note = app
        .device()
        .map(|d| format!("{} types · {} records", types.len(), count(d.records)));
    let block = panel(app, "Types", note);
    if types.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        placeholder(app, "no record yet", inner, buf);
        return;
    }
    let visible = area.height.saturating_sub(3) as usize;
    let scroll = app
        .view
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

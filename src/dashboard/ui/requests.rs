//! The Requests tab: every request, accepted or not, newest at the bottom;
//! Enter opens the highlighted one.
//! ```text
//! ╭ Requests ──────────────────────────── 5 · following · Enter opens ╮
//! │time         peer               unit-id   status recs   wire   ms mark│
//! │08:03:48.120 192.168.1.57:40522 ee3d…1d05   200    1000 103.9 KiB 4.2 N│
//! ╰ marks: D duplicate  E encoding mismatch  N naive timestamps  M mal…╯
//! ```
//! From 110 columns the path and the inflated size are shown too.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, StatefulWidget, Table, TableState, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{bytes, clock_ms, count, short_id};
use crate::dashboard::ui::{filter_title, nothing_shown, panel, placeholder};
use crate::event::RequestEvent;

/// Width from which the path and inflated size columns are shown.
const WIDE: u16 = 110;

/// Draws the Requests tab.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let list = app.filtered_requests();
    let selected = app.selected_request().map(|r| r.id);
    let follow = if app.viewer.selected.is_none() {
        "following"
    } else {
        "G follows"
    };
    let note = format!("{} · {follow} · Enter opens", count(list.len() as u64));
    let mut block = panel(app, "Requests", Some(note)).title_bottom(Line::from(vec![
        Span::styled(" marks: ", t.label),
        Span::styled("D", t.warn),
        Span::styled(" duplicate  ", t.label),
        Span::styled("E", t.warn),
        Span::styled(" encoding mismatch  ", t.label),
        Span::styled("N", t.warn),
        Span::styled(" naive timestamps  ", t.label),
        Span::styled("M", t.warn),
        Span::styled(" malformed records ", t.label),
    ]));
    if let Some(title) = filter_title(app) {
        block = block.title(title);
    }
    if list.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        placeholder(app, &nothing_shown(app, "no request yet"), inner, buf);
        return;
    }
    let wide = area.width >= WIDE;
    let rows: Vec<Row> = list.iter().map(|r| row(app, r, wide)).collect();
    let mut state =
        TableState::default().with_selected(list.iter().position(|r| Some(r.id) == selected));
    let table = Table::new(rows, widths(wide))
        .header(header(app, wide))
        .block(block)
        .row_highlight_style(t.selected)
        .column_spacing(1);
    StatefulWidget::render(table, area, buf, &mut state);
}

/// Column widths; path and inflated size only when wide.
fn widths(wide: bool) -> Vec<Constraint> {
    let mut w = vec![
        Constraint::Length(12), // time
        Constraint::Length(21), // peer
        Constraint::Length(9),  // unit-id
        Constraint::Fill(1),    // path
        Constraint::Length(6),  // status
        Constraint::Length(6),  // records
        Constraint::Length(9),  // wire
        Constraint::Length(9),  // inflated
        Constraint::Length(7),  // ms
        Constraint::Length(4),  // marks
    ];
    if !wide {
        w.remove(7);
        w.remove(3);
    }
    w
}

/// The column names.
fn header(app: &App, wide: bool) -> Row<'static> {
    let mut names = vec![
        "time", "peer", "unit-id", "path", "status", "recs", "wire", "inflated", "ms", "mark",
    ];
    if !wide {
        names.remove(7);
        names.remove(3);
    }
    Row::new(
        names
            .into_iter()
            .map(|n| Cell::from(n).style(app.theme.label)),
    )
}

/// One request as a table row.
fn row(app: &App, r: &RequestEvent, wide: bool) -> Row<'static> {
    let t = &app.theme;
    let unit = r.unit_id.as_deref().map_or("-".to_string(), short_id);
    let mut cells = vec![
        Cell::from(clock_ms(r.received)).style(t.dim),
        Cell::from(r.peer.clone()),
        Cell::from(unit),
        Cell::from(format!("{} {}", r.method, r.path)),
        Cell::from(format!("{:>5}", r.status)).style(app.theme.status(r.status)),
        Cell::from(format!("{:>6}", r.records)),
        Cell::from(format!("{:>9}", bytes(r.wire_bytes))),
        Cell::from(format!("{:>9}", bytes(r.body_bytes))),
        Cell::from(format!("{:>7.1}", r.elapsed.as_secs_f64() * 1000.0)),
        Cell::from(marks(r)).style(t.warn),
    ];
    if !wide {
        cells.remove(7);
        cells.remove(3);
    }
    Row::new(cells)
}

/// One letter per oddity: Duplicate, Encoding mismatch, Naive timestamps,
/// Malformed records.
pub fn marks(r: &RequestEvent) -> String {
    [
        (r.duplicate(), 'D'),
        (r.warning.is_some(), 'E'),
        (r.naive_timestamps > 0, 'N'),
        (r.malformed > 0, 'M'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { ' ' })
    .collect::<String>()
    .trim_end()
    .to_string()
}

//! The Requests tab: every request, accepted or not, newest at the bottom;
//! Enter opens the highlighted one, `r` shows only the refused ones.
//! Columns take the width the terminal gives: the error (why a request was
//! refused) takes what is left once the optional columns (peer, handling
//! time, inflated size, path, whole unit-id) have had theirs, each added
//! only while the error keeps 24 columns, and anything cut ends in `…`.
//! ```text
//! ╭ Requests ───────────────────────────────── 5 · following · Enter opens ╮
//! │time         unit-id   status recs      wire mark error                   │
//! │08:13:52.300 ee3d…1d05    401     0       0 B      token does not match a…│
//! ╰ marks: D duplicate  R retry  O old  E encoding  N naive  M malformed ──╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, StatefulWidget, Table, TableState, Widget};
use unicode_width::UnicodeWidthStr;

use crate::dashboard::app::App;
use crate::dashboard::format::{bytes, clock_ms, count, fit, fit_words, unit_in};
use crate::dashboard::ui::{filter_title, nothing_shown, panel, placeholder, saved_title};
use crate::event::RequestEvent;

/// The error column is given at least this much before optional columns
/// are added.
const ERROR_MIN: u16 = 24;

/// The table's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Time,
    Peer,
    Unit,
    Path,
    Status,
    Records,
    Wire,
    Inflated,
    Ms,
    Marks,
    Error,
}

/// Columns and their widths for `width` columns inside the borders.
fn layout(list: &[&RequestEvent], width: u16) -> (Vec<Col>, Vec<u16>) {
    let widest_peer = list.iter().map(|r| r.peer.width()).max().unwrap_or(4) as u16;
    let peer = widest_peer.clamp(4, if width < 100 { 15 } else { 21 });
    let mut cols = vec![
        (Col::Time, 12),
        (Col::Unit, 9),
        (Col::Status, 6),
        (Col::Records, 5),
        (Col::Wire, 9),
        (Col::Marks, 5),
    ];
    let used = |cols: &[(Col, u16)]| cols.iter().map(|c| c.1 + 1).sum::<u16>();
    let widest_path = list
        .iter()
        .map(|r| r.method.width() + 1 + r.path.width())
        .max()
        .unwrap_or(4) as u16;
    // The peer is the first to go (the detail has it): at 80 columns the
    // error, why a request was refused, had 9 columns beside it.
    let optional = [
        (Col::Peer, peer),
        (Col::Ms, 7),
        (Col::Inflated, 9),
        (Col::Path, widest_path.clamp(4, 30)),
        (Col::Unit, 32),
    ];
    for (col, w) in optional {
        let mut tried = cols.clone();
        match tried.iter_mut().find(|c| c.0 == col) {
            Some(c) => c.1 = w,
            None => tried.push((col, w)),
        }
        if used(&tried) + ERROR_MIN <= width {
            cols = tried;
        }
    }
    let order = [
        Col::Time,
        Col::Peer,
        Col::Unit,
        Col::Path,
        Col::Status,
        Col::Records,
        Col::Wire,
        Col::Inflated,
        Col::Ms,
        Col::Marks,
    ];
    cols.sort_by_key(|c| order.iter().position(|o| *o == c.0));
    let error = width.saturating_sub(used(&cols));
    cols.push((Col::Error, error));
    cols.into_iter().unzip()
}

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
    let only = if app.viewer.refused_only {
        "refused only (r) · "
    } else {
        ""
    };
    let note = format!(
        "{only}{} · {follow} · Enter opens",
        count(list.len() as u64)
    );
    // Each mark's long name, and the short one used when the long ones do
    // not fit the border (at 80 columns the last was cut: "M ma"). R was
    // missing.
    let marks = [
        ("D", " duplicate  ", " duplicate  "),
        ("R", " retry  ", " retry  "),
        ("O", " old data  ", " old  "),
        ("E", " encoding or NaN  ", " warning  "),
        ("N", " naive timestamps  ", " naive  "),
        ("M", " malformed ", " malformed "),
    ];
    let long: usize = 8 + marks
        .iter()
        .map(|(m, l, _)| m.len() + l.len())
        .sum::<usize>();
    let fits = long <= usize::from(area.width.saturating_sub(2));
    let legend = Line::from(
        std::iter::once(Span::styled(" marks: ", t.label))
            .chain(marks.iter().flat_map(|&(mark, long, short)| {
                [
                    Span::styled(mark, t.warn),
                    Span::styled(if fits { long } else { short }, t.label),
                ]
            }))
            .collect::<Vec<_>>(),
    );
    // The filter goes on the top edge (the legend has the bottom one),
    // left of the note: the note is fitted to what it leaves (it ran over
    // the filter being typed at 80 columns: a review).
    // Beside the title (` Requests `, a cell each side of it), at most.
    let filter = filter_title(app, area.width.saturating_sub(15));
    let beside = filter.as_ref().map_or(0, |f| f.width() as u16 + 1);
    let mut block = panel(
        app,
        "Requests",
        Some(note),
        area.width.saturating_sub(beside),
    )
    .title_bottom(saved_title(app, area.width).unwrap_or(legend));
    if let Some(title) = filter {
        block = block.title(title);
    }
    if list.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        let nothing = if app.viewer.refused_only {
            "no refused request (r shows all)"
        } else {
            "no request yet"
        };
        placeholder(app, &nothing_shown(app, nothing), inner, buf);
        return;
    }
    let (cols, widths) = layout(&list, area.width.saturating_sub(2));
    let rows: Vec<Row> = list.iter().map(|r| row(app, r, &cols, &widths)).collect();
    let mut state =
        TableState::default().with_selected(list.iter().position(|r| Some(r.id) == selected));
    let header = Row::new(
        cols.iter()
            .zip(&widths)
            .map(|(c, w)| Cell::from(fit(name(*c), *w as usize)).style(t.label)),
    );
    let constraints: Vec<Constraint> = widths.iter().map(|w| Constraint::Length(*w)).collect();
    let table = Table::new(rows, constraints)
        .header(header)
        .block(block)
        .row_highlight_style(t.selected)
        .column_spacing(1);
    StatefulWidget::render(table, area, buf, &mut state);
}

/// A column's name in the header.
fn name(col: Col) -> &'static str {
    match col {
        Col::Time => "time UTC",
        Col::Peer => "peer",
        Col::Unit => "unit-id",
        Col::Path => "path",
        Col::Status => "status",
        Col::Records => " recs",
        Col::Wire => "     wire",
        Col::Inflated => " inflated",
        Col::Ms => "     ms",
        Col::Marks => "mark",
        Col::Error => "error",
    }
}

/// One request as a table row, each cell cut to its column with `…`.
fn row(app: &App, r: &RequestEvent, cols: &[Col], widths: &[u16]) -> Row<'static> {
    let t = &app.theme;
    let cells = cols.iter().zip(widths).map(|(col, &w)| {
        let w = w as usize;
        let (text, style) = match col {
            Col::Time => (clock_ms(r.received), t.dim),
            Col::Peer => (r.peer.clone(), t.base),
            Col::Unit => (unit_in(r.unit_id.as_deref().unwrap_or("-"), w), t.base),
            Col::Path => (format!("{} {}", r.method, r.path), t.base),
            Col::Status if r.status == crate::event::NO_ANSWER => (" none".to_string(), t.error),
            Col::Status => (format!("{:>5}", r.status), t.status(r.status)),
            Col::Records => (format!("{:>5}", r.records), t.base),
            Col::Wire => (format!("{:>9}", bytes(r.wire_bytes)), t.base),
            Col::Inflated => (format!("{:>9}", bytes(r.body_bytes)), t.base),
            Col::Ms => (format!("{:>7.1}", r.elapsed.as_secs_f64() * 1000.0), t.base),
            Col::Marks => (marks(r), t.warn),
            Col::Error => {
                // A late 200 read as a fast one (a UX review): said here.
                if let (None, Some(secs)) = (&r.error, r.held_back()) {
                    let late = format!("200 sent after {secs} s (late)");
                    return Cell::from(fit_words(&late, w)).style(t.warn);
                }
                let error = r.error.as_deref().unwrap_or_default();
                return Cell::from(fit_words(error, w)).style(t.error);
            }
        };
        Cell::from(fit(&text, w)).style(style)
    });
    Row::new(cells.collect::<Vec<_>>())
}

/// One letter per oddity: Duplicate (or Retry of an unacknowledged
/// batch), Old data, a warning (Encoding mismatch, NaN or Infinity read
/// as null), Naive timestamps, Malformed records.
pub fn marks(r: &RequestEvent) -> String {
    [
        (
            r.duplicate() || r.retry(),
            if r.retry() { 'R' } else { 'D' },
        ),
        (r.captured && crate::dashboard::uplink::old_data(r), 'O'),
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

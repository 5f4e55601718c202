//! The header, always on screen:
//! ```text
//!  autopi-rx  point the device at http://192.168.1.20:8000/ …     FROZEN
//!  last upload 3s ago · devices 1 · auth 1 token · capture 1.2 MiB in captures/x.jsonl
//!  requests 12 · batches 10 · records 5,000 · duplicates 1 · rejected 2
//!  1 Live  2 Requests  3 Types     device ◀ ee3d…1d05 (1/2) ▶ d     ? help  q quit
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::{App, Tab};
use crate::dashboard::ui::format::{age, bytes, count, short_id};

/// Lines the header takes.
pub const HEIGHT: u16 = 4;

/// Draws the header into its four lines.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let rows: [Rect; 4] = Layout::vertical([Constraint::Length(1); 4]).areas(area);
    where_to_point(app, rows[0], buf);
    Paragraph::new(setup_line(app)).render(rows[1], buf);
    Paragraph::new(totals_line(app)).render(rows[2], buf);
    tabs_line(app, rows[3], buf);
}

/// First line: the URLs for the device's Cloud Storage setting, and badges.
fn where_to_point(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" autopi-rx ", t.title)];
    if app.setup.demo {
        spans.push(Span::styled(" DEMO: simulated device ", t.frozen));
    }
    if app.setup.viewing {
        spans.push(Span::styled(" VIEW ", t.frozen));
        spans.push(Span::styled(
            " looking back at a capture: no listener",
            t.label,
        ));
    } else {
        spans.push(Span::styled(" point the device at ", t.label));
    }
    if app.setup.urls.is_empty() && !app.setup.viewing {
        spans.push(Span::styled("no network address found", t.warn));
    }
    for url in &app.setup.urls {
        spans.push(Span::styled(url.clone(), t.url));
        spans.push(Span::raw("  "));
    }
    if let Some(note) = &app.setup.url_note {
        spans.push(Span::styled(note.clone(), t.warn));
    }
    let badge = app
        .is_frozen()
        .then(|| Span::styled(" FROZEN (f) ", t.frozen));
    let badge_width = badge.as_ref().map_or(0, |b| b.width() as u16);
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(badge_width)]).areas(area);
    Paragraph::new(Line::from(spans)).render(left, buf);
    if let Some(badge) = badge {
        Paragraph::new(Line::from(badge)).render(right, buf);
    }
}

/// Second line: auth, capture file, devices, last upload.
fn setup_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let s = app.shown();
    let auth = match app.setup.tokens {
        0 => Span::styled(" NO AUTH: anyone can upload ", t.alarm),
        1 => Span::styled("1 token", t.value),
        n => Span::styled(format!("{n} tokens"), t.value),
    };
    // The size goes first: a narrow screen cuts the long path, not it.
    let size = app
        .setup
        .capture_bytes
        .map_or(String::new(), |b| format!("{} in ", bytes(b)));
    let last = match s.last_upload {
        Some(at) => Span::styled(format!("last upload {}", age(app.now(), at)), t.value),
        None => Span::styled("no upload yet", t.warn),
    };
    let mut spans = vec![
        Span::styled(" ", t.label),
        last,
        Span::styled(" · devices ", t.label),
        Span::styled(s.devices.len().to_string(), t.value),
        Span::styled(" · auth ", t.label),
        auth,
        Span::styled(" · capture ", t.label),
        Span::styled(format!("{size}{}", app.setup.capture_path), t.value),
    ];
    // Looking back, there is no listener and so no auth to speak of.
    if app.setup.viewing {
        spans.drain(4..6);
    }
    Line::from(spans)
}

/// Third line: the totals, and a warning when events were dropped.
fn totals_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let tot = &app.shown().totals;
    let mut spans = Vec::new();
    // First, so that a narrow screen cannot cut it off.
    if app.setup.dropped_events > 0 {
        spans.push(Span::styled(
            format!(
                " {} events not shown (screen too slow; all saved) ",
                count(app.setup.dropped_events)
            ),
            t.alarm,
        ));
    }
    let items = [
        ("requests", tot.requests, t.value),
        ("batches", tot.batches, t.value),
        ("records", tot.records, t.value),
        (
            "duplicates",
            tot.duplicates,
            if tot.duplicates > 0 { t.warn } else { t.value },
        ),
        (
            "rejected",
            tot.rejected,
            if tot.rejected > 0 { t.error } else { t.value },
        ),
        (
            "malformed",
            tot.malformed,
            if tot.malformed > 0 { t.warn } else { t.value },
        ),
    ];
    for (i, (name, n, style)) in items.into_iter().enumerate() {
        let sep = if i == 0 { " " } else { " · " };
        spans.push(Span::styled(format!("{sep}{name} "), t.label));
        spans.push(Span::styled(count(n), style));
    }
    Line::from(spans)
}

/// Fourth line: tabs, the device picker (two devices or more), key hints.
fn tabs_line(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let style = if *tab == app.view.tab {
            t.tab_active
        } else {
            t.tab
        };
        spans.push(Span::styled(format!(" {} {} ", i + 1, tab.title()), style));
        spans.push(Span::raw(" "));
    }
    let devices = &app.shown().devices;
    if let (true, Some(d)) = (devices.len() > 1, app.device()) {
        let index = devices
            .iter()
            .position(|x| x.unit_id == d.unit_id)
            .unwrap_or(0);
        spans.push(Span::styled("   device ◀ ", t.label));
        spans.push(Span::styled(short_id(&d.unit_id), t.url));
        spans.push(Span::styled(
            format!(" ({}/{}) ▶ d", index + 1, devices.len()),
            t.label,
        ));
    }
    let hints = Line::from(vec![
        Span::styled("?", t.key),
        Span::styled(" help  ", t.label),
        Span::styled("q", t.key),
        Span::styled(" quit ", t.label),
    ]);
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(hints.width() as u16),
    ])
    .areas(area);
    Paragraph::new(Line::from(spans)).render(left, buf);
    Paragraph::new(hints).render(right, buf);
}

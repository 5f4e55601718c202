//! The help overlay (`?`): every key.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::state::{EVENT_RING, REQUEST_RING};
use crate::dashboard::ui::panel;

/// Every key and what it does, as shown in the overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit (the capture is flushed first)"),
    ("Tab  1 2 3", "switch tab: Live, Requests, Types"),
    (
        "f  space",
        "freeze the display (receiving and saving go on)",
    ),
    ("↑ ↓  j k", "scroll events / select a request / scroll"),
    ("PgUp PgDn", "scroll by a page"),
    ("g  G", "oldest / newest (G follows new lines again)"),
    ("/", "filter events, requests and types by text"),
    ("Enter", "open the selected request (Requests tab)"),
    ("Esc", "close help or request; clear the filter"),
    ("d D  → ←", "next / previous device (two devices or more)"),
    ("?", "show or hide this help"),
];

/// Draws the help box centred over `area`.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    // Looking back at a capture, the timeline's keys come first (and take
    // the arrows, Home, End and space).
    let view_keys = app
        .timeline
        .as_ref()
        .map_or(&[][..], |_| crate::dashboard::timeline::KEYS);
    let mut lines: Vec<Line> = view_keys
        .iter()
        .chain(KEYS)
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<12}"), t.key),
                Span::styled(*what, t.base),
            ])
        })
        .collect();
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        format!(" Keeps the last {REQUEST_RING} requests and {EVENT_RING} events per device."),
        t.dim,
    )));
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 66.min(area.width);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [spot] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    Clear.render(spot, buf);
    Paragraph::new(lines)
        .block(panel(app, "Keys", Some("Esc or ? closes".into())))
        .render(spot, buf);
}

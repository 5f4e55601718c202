//! The help overlay (`?`): every key.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::dashboard::app::App;
use crate::dashboard::state::{EVENT_RING, REQUEST_RING};
use crate::dashboard::ui::overlay;

/// Every key and what it does, as shown in the overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit (the capture is flushed first)"),
    ("Tab 1 2 3 4", "switch tab: Live, Requests, Types, Uplink"),
    (
        "f  space",
        "freeze the display (receiving and saving go on)",
    ),
    (
        "↑ ↓  j k",
        "scroll events / select a request / scroll a tab",
    ),
    ("PgUp PgDn", "scroll by a page"),
    (
        "g G Home End",
        "oldest / newest (G follows new lines again)",
    ),
    ("/", "filter events, requests and types by text"),
    ("v  a", "Live: every vehicle value / every drive on the map"),
    ("m", "answer mode: refuse, answer late or hang up"),
    ("r", "Requests: only the refused ones"),
    ("Enter", "open the selected request (Requests tab)"),
    ("p  s", "request: pretty body / save the body to a file"),
    ("Esc", "close help, request or values; clear the filter"),
    (
        "d D  → ←",
        "pick next / previous device (else: last to upload)",
    ),
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
    // Keys that do nothing here are left out: looking back, nothing is
    // received (freezing, the answer mode) and the arrows are the
    // timeline's; without a listener there is no answer mode.
    let here = |keys: &str| match keys {
        "f  space" | "d D  → ←" => app.timeline.is_none(),
        "m" => app.setup.respond.is_some(),
        _ => true,
    };
    // Looking back, Home and End are the timeline's.
    let named = |keys: &'static str| match keys {
        "g G Home End" if app.timeline.is_some() => "g  G",
        keys => keys,
    };
    let mut lines: Vec<Line> = view_keys
        .iter()
        .copied()
        .chain(
            KEYS.iter()
                .filter(|(keys, _)| here(keys))
                .map(|&(keys, what)| (named(keys), what)),
        )
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<13}"), t.key),
                Span::styled(what, t.base),
            ])
        })
        .collect();
    lines.push(Line::default());
    if !app.setup.urls.is_empty() {
        lines.push(Line::from(Span::styled(" Point the device at:", t.label)));
        for url in &app.setup.urls {
            lines.push(Line::from(Span::styled(format!("   {url}"), t.url)));
        }
    }
    lines.push(Line::from(Span::styled(
        format!(" Keeps the last {REQUEST_RING} requests and {EVENT_RING} events per device."),
        t.dim,
    )));
    // The note on what is kept gives way first on a small screen.
    if lines.len() + 2 > area.height as usize {
        lines.pop();
    }
    overlay(app, "Keys", "Esc or ? closes", lines, 68, area, buf);
}

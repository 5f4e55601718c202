//! The help overlay (`?`): every key.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::dashboard::app::App;
use crate::dashboard::state::{EVENT_RING, REQUEST_RING};
use crate::dashboard::ui::overlay;

/// One line of the help: the keys, what they do, and where they do it.
pub struct Key {
    /// The keys, live.
    pub keys: &'static str,
    /// The keys looking back at a capture (the timeline takes the arrows,
    /// Home, End and space there); None where they do nothing there.
    pub looking_back: Option<&'static str>,
    /// Only with a listener's answer mode.
    pub answer_mode: bool,
    pub what: &'static str,
    /// What they do looking back, where it differs (`view` writes no
    /// capture and follows no new lines: its help said so, a UX review).
    pub what_looking_back: Option<&'static str>,
}

impl Key {
    const fn everywhere(keys: &'static str, what: &'static str) -> Key {
        Key {
            keys,
            looking_back: Some(keys),
            answer_mode: false,
            what,
            what_looking_back: None,
        }
    }

    /// Keys that act on what is being received: nothing is, looking back.
    const fn live(keys: &'static str, what: &'static str) -> Key {
        Key {
            looking_back: None,
            ..Key::everywhere(keys, what)
        }
    }
}

/// Every key and what it does, as shown in the overlay.
pub const KEYS: &[Key] = &[
    Key {
        what_looking_back: Some("quit"),
        ..Key::everywhere("q  Ctrl-C", "quit (the capture is flushed first)")
    },
    Key::everywhere("Tab 1 2 3 4", "switch tab: Live, Requests, Types, Uplink"),
    Key::live(
        "f  space",
        "freeze the display (receiving and saving go on)",
    ),
    Key::everywhere(
        "↑ ↓  j k",
        "scroll events / select a request / scroll a tab",
    ),
    Key::everywhere("PgUp PgDn", "scroll by a page"),
    Key {
        looking_back: Some("g  G"),
        what_looking_back: Some("oldest / newest request"),
        ..Key::everywhere(
            "g G Home End",
            "oldest / newest (G follows new lines again)",
        )
    },
    Key::everywhere("/", "filter events, requests and types by text"),
    Key::everywhere("v  a", "Live: every vehicle value / every drive on the map"),
    Key {
        answer_mode: true,
        ..Key::live("m", "answer mode: refuse, answer late or hang up")
    },
    Key::everywhere("r", "Requests: only the refused ones"),
    Key::everywhere("Enter", "open the selected request (Requests tab)"),
    Key::everywhere("p  s", "request: pretty body / save the body to a file"),
    Key::everywhere("Esc", "close help, request or values; clear the filter"),
    Key::live(
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
    // Keys that do nothing here are left out.
    let ours = KEYS.iter().filter_map(|k| {
        let (keys, what) = match app.timeline {
            Some(_) => (k.looking_back?, k.what_looking_back.unwrap_or(k.what)),
            None => (k.keys, k.what),
        };
        (!k.answer_mode || app.setup.respond.is_some()).then_some((keys, what))
    });
    let mut lines: Vec<Line> = view_keys
        .iter()
        .copied()
        .chain(ours)
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<13}"), t.key),
                Span::styled(what, t.base),
            ])
        })
        .collect();
    let mut after = vec![Line::default()];
    if !app.setup.urls.is_empty() {
        after.push(Line::from(Span::styled(" Point the device at:", t.label)));
        for url in &app.setup.urls {
            after.push(Line::from(Span::styled(format!("   {url}"), t.url)));
        }
    }
    // On a small screen the note on what is kept gives way first, then
    // the last keys, counted: the addresses are all listed, as the
    // header's "+N more (?)" promises (the box was cut at the screen's
    // edge, and the last addresses with it: a review, December 7).
    let room = usize::from(area.height).saturating_sub(2);
    if lines.len() + after.len() < room {
        after.push(Line::from(Span::styled(
            format!(" Keeps the last {REQUEST_RING} requests and {EVENT_RING} events per device."),
            t.dim,
        )));
    } else if lines.len() + after.len() > room {
        // More addresses than the screen has rows (a host with many
        // interfaces): as many as fit, the rest counted.
        if after.len() + 1 > room && !app.setup.urls.is_empty() {
            after.remove(0);
            let fit = room.saturating_sub(3).min(app.setup.urls.len());
            let rest = app.setup.urls.len() - fit;
            after.truncate(1 + fit);
            if rest > 0 {
                after.push(Line::from(Span::styled(
                    format!("   +{rest} more: a taller terminal shows them"),
                    t.dim,
                )));
            }
        }
        let keep = room.saturating_sub(after.len() + 1).min(lines.len());
        let left = lines.len() - keep;
        lines.truncate(keep);
        lines.push(Line::from(Span::styled(
            format!(" … {left} more keys: a taller terminal shows them"),
            t.dim,
        )));
    }
    lines.extend(after);
    overlay(app, "Keys", "Esc or ? closes", lines, 68, area, buf);
}

//! The answer-mode menu (`m`): how the receiver answers valid batches,
//! for the next upload only or until changed. Every batch is captured
//! first, whatever the mode.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::dashboard::app::App;
use crate::dashboard::format::wrapped;
use crate::dashboard::ui::overlay;
use crate::receiver::respond::{MENU, Mode, Scope};

/// The menu's width, borders included.
const WIDTH: u16 = 60;

/// What each line of the menu says of its mode.
fn what(mode: &Mode) -> String {
    match mode {
        Mode::Ok => "200 once saved".into(),
        Mode::Refuse(code) => format!("saved, answered {code}"),
        Mode::Late(d) => format!("saved, 200 after {} s", d.as_secs()),
        Mode::Hangup => "saved, no answer at all".into(),
        Mode::Flaky(pct) => format!("{pct} % answered 500, the rest 200"),
    }
}

/// Draws the menu centred over `area`.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(menu) = app.viewer.mode_menu else {
        return;
    };
    let t = &app.theme;
    let in_force = app.mode().map(|m| m.upcoming()).unwrap_or_default();
    let mut lines: Vec<Line> = MENU
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let mark = if *mode == in_force { "●" } else { " " };
            let style = if i == menu.selected {
                t.selected
            } else {
                t.base
            };
            Line::from(vec![
                Span::styled(format!(" {mark} {:<9}", mode.to_string()), style),
                Span::styled(
                    what(mode),
                    if i == menu.selected {
                        t.selected
                    } else {
                        t.dim
                    },
                ),
            ])
        })
        .collect();
    lines.push(Line::default());
    let (until, next) = match menu.scope {
        Scope::UntilChanged => (t.selected, t.dim),
        Scope::NextUpload => (t.dim, t.selected),
    };
    lines.push(Line::from(vec![
        Span::styled(" Tab ", t.key),
        Span::styled(" until changed ", until),
        Span::raw(" "),
        Span::styled(" next upload only ", next),
    ]));
    // What the device does, on as many lines as the longest of them takes,
    // so the box keeps its size while the cursor moves (it was one line,
    // cut: `no answer: the device waits for its timeout, then re-sen…`).
    let room = usize::from(WIDTH.min(area.width)).saturating_sub(4);
    let said = wrapped(MENU[menu.selected].consequence(), room);
    let most = MENU
        .iter()
        .map(|m| wrapped(m.consequence(), room).len())
        .max()
        .unwrap_or(1);
    for n in 0..most {
        let text = said.get(n).map_or("", String::as_str);
        lines.push(Line::from(Span::styled(format!(" {text}"), t.warn)));
    }
    overlay(
        app,
        "Answer mode",
        "↑↓ pick · Enter set · Esc closes",
        lines,
        WIDTH,
        area,
        buf,
    );
}

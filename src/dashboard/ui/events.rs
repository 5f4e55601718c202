//! The Events panel: event records, newest at the bottom, following unless
//! scrolled; failures stand out; `/` filters by text.
//! ```text
//! ╭ Events ─────────────────────────────── 200 · following ╮
//! │08:13:44  @vehicle/motion/steady                         │
//! │08:13:47  @vehicle/battery/charging                      │
//! ╰ filter: power ──────────────────────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::clock;
use crate::dashboard::state::LogLine;
use crate::dashboard::ui::{filter_title, fit_line, nothing_shown, panel, placeholder};

/// Draws the Events panel.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let matching = app.matching_events();
    let height = area.height.saturating_sub(2) as usize;
    let scroll = app
        .viewer
        .events_scroll
        .min(matching.len().saturating_sub(height));
    let end = matching.len() - scroll;
    let start = end.saturating_sub(height);
    let block = panel(app, "Events", Some(note(app, matching.len(), scroll)));
    let block = match filter_title(app) {
        Some(title) => block.title_bottom(title),
        None => block,
    };
    let inner = block.inner(area);
    block.render(area, buf);
    if matching.is_empty() {
        placeholder(app, &nothing_shown(app, "no events yet"), inner, buf);
        return;
    }
    let lines: Vec<Line> = matching[start..end]
        .iter()
        .map(|l| fit_line(line(app, l), inner.width))
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

/// How many lines match and whether the view follows new ones.
fn note(app: &App, shown: usize, scroll: usize) -> String {
    let follow = if scroll == 0 {
        "following".to_string()
    } else {
        format!("{scroll} newer below · G follows")
    };
    let total = app.device().map_or(0, |d| d.events.len());
    if shown == total {
        format!("{shown} · {follow}")
    } else {
        format!("{shown} of {total} · {follow}")
    }
}

/// One event: time, `@tag`, fields; failures loud.
fn line(app: &App, l: &LogLine) -> Line<'static> {
    let t = &app.theme;
    let tag_style = if l.failure { t.error } else { t.value };
    Line::from(vec![
        Span::styled(format!("{}  ", clock(l.ts)), t.dim),
        Span::styled(format!("@{}", l.tag), tag_style),
        Span::styled(
            format!(" {}", l.fields),
            if l.failure { t.warn } else { t.base },
        ),
    ])
}

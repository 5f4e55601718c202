//! The Events panel: event records in the device's time order (a retried
//! batch's events take their place, marked `↺ +4m`: they came 4 minutes
//! after they happened), newest at the bottom, following unless scrolled;
//! the date shows when the lines span days; failures stand out; `/`
//! filters by text.
//! ```text
//! ╭ Events ─────────────────────────────── 200 · following ╮
//! │08:06:00  ↺ +4m @vehicle/motion/steady                   │
//! │08:13:47  @vehicle/battery/charging                      │
//! ╰ filter: power ──────────────────────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{clock, same_day, same_year, short_span};
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
    // Every time on the screen is UTC; said where the times are listed
    // (nothing said so: a UX review).
    let block = panel(
        app,
        "Events (UTC)",
        Some(note(app, matching.len(), scroll)),
        area.width,
    );
    // The filter first on the bottom edge, every device's uplink in one
    // line in what it leaves (the two ran into each other at 80 columns
    // while a long filter was typed: a probe).
    let filter = filter_title(app, area.width.saturating_sub(2));
    let beside = filter.as_ref().map_or(0, |f| f.width() as u16 + 1);
    let block = match filter {
        Some(title) => block.title_bottom(title),
        None => block,
    };
    let room = area.width.saturating_sub(4 + beside);
    let block = match crate::dashboard::ui::uplink::summary_line(app, room) {
        Some(line) if room > 0 => block.title_bottom(line.right_aligned()),
        _ => block,
    };
    let inner = block.inner(area);
    block.render(area, buf);
    if matching.is_empty() {
        placeholder(app, &nothing_shown(app, "no events yet"), inner, buf);
        return;
    }
    // The date shows once the lines kept span more than one day, and on a
    // line stamped on another day than where it sorts (a clock gone
    // wrong: see `state::rank`).
    let dated = match (matching.first(), matching.last()) {
        (Some(first), Some(last)) => !same_day(first.ts, last.ts),
        _ => false,
    };
    let lines: Vec<Line> = matching[start..end]
        .iter()
        .map(|l| {
            let dated = dated || !same_day(l.ts, l.rank);
            fit_line(line(app, l, dated), inner.width)
        })
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

/// One event: device time (with the date when `dated`), a mark when it
/// arrived after newer ones (`↺ +4m`: how long after its time it came),
/// `@tag`, fields; failures loud.
fn line(app: &App, l: &LogLine, dated: bool) -> Line<'static> {
    let t = &app.theme;
    let tag_style = if l.failure { t.error } else { t.value };
    let time = if !same_year(l.ts, l.rank) || !same_year(l.ts, app.now()) {
        // Stamped in another year than where it sorts, or than now (a
        // device at 1970 before its clock is set read `01-01` with no
        // year, or only the time when all its lines were of that day):
        // the whole date.
        l.ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
    } else if dated {
        l.ts.strftime("%m-%d %H:%M:%S").to_string()
    } else {
        clock(l.ts)
    };
    let mut spans = vec![Span::styled(format!("{time}  "), t.dim)];
    if let Some(late) = l.late {
        spans.push(Span::styled(
            format!("↺ +{} ", short_span(late.as_secs())),
            t.warn,
        ));
    }
    spans.push(Span::styled(format!("@{}", l.tag), tag_style));
    spans.push(Span::styled(
        format!(" {}", l.fields),
        if l.failure { t.warn } else { t.base },
    ));
    Line::from(spans)
}

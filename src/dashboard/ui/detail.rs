//! One request in full (Enter on the Requests tab): what we answered, the
//! headers with the token replaced by its scheme and a fingerprint, whether
//! it matched a configured token, where the JSON broke for a 400, and the
//! body; all of it scrolls. The text is laid out by `app::detail` when the
//! request is opened; this draws the lines in view.
//! ```text
//! ╭ Request #12 ───────────────────────── Esc closes · ↑↓ PgUp PgDn g G scroll ╮
//! │POST /logbook/storage → 200 · 1,000 records · handled in 1.9 ms              │
//! │matches a configured token: yes                                              │
//! │Headers                                                                      │
//! │  authorization: token [redacted, fingerprint 5e1f0c2a]                      │
//! │Body (104 KiB, pretty)                                                       │
//! ╰─────────────────────────────────────────────────────────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::app::detail::{TextLine, Tone};
use crate::dashboard::ui::{fit_line, panel, placeholder, saved_title};

/// Draws the open request over the tab's area.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let id = app.viewer.detail.unwrap_or_default();
    let mut block = panel(
        app,
        &format!("Request {}", crate::capture::load::request_names(id).0),
        Some("Esc closes · ↑↓ PgUp PgDn g G scroll".into()),
        area.width,
    );
    if let Some(saved) = saved_title(app, area.width) {
        block = block.title_bottom(saved);
    }
    let inner = block.inner(area);
    block.render(area, buf);
    if !app.shown().requests.iter().any(|r| r.id == id) {
        placeholder(
            app,
            "this request is no longer kept (see the capture file)",
            inner,
            buf,
        );
        return;
    }
    let detail = app.detail();
    let height = inner.height as usize;
    let (head, body) = (&detail.head, &detail.body);
    let scroll = app
        .viewer
        .detail_scroll
        .min(detail.len().saturating_sub(height));
    // Only the lines in view become ratatui Lines.
    let from = scroll.saturating_sub(head.len()).min(body.len());
    let to = (scroll + height).saturating_sub(head.len()).min(body.len());
    let visible: Vec<Line> = head
        .iter()
        .skip(scroll)
        .take(height)
        .map(|l| styled(app, l))
        .chain(body[from..to].iter().map(|l| Line::from(format!("  {l}"))))
        .map(|l| fit_line(l, inner.width))
        .collect();
    Paragraph::new(visible).render(inner, buf);
}

/// A line of the head in the theme's styles.
fn styled(app: &App, line: &TextLine) -> Line<'static> {
    Line::from(
        line.iter()
            .map(|p| Span::styled(p.text.clone(), style(app, p.tone)))
            .collect::<Vec<_>>(),
    )
}

/// The theme's style for a tone.
pub fn style(app: &App, tone: Tone) -> Style {
    let t = &app.theme;
    match tone {
        Tone::Title => t.title,
        Tone::Label => t.label,
        Tone::Value => t.value,
        Tone::Dim => t.dim,
        Tone::Ok => t.ok,
        Tone::Warn => t.warn,
        Tone::Error => t.error,
        Tone::Status(code) => t.status(code),
    }
}

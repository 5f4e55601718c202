//! Drawing: `impl Widget for &App` lays out the header and the chosen tab;
//! each panel and tab lives in its own file under `ui/`. Nothing here reads
//! the clock: ages are measured against `App::now`.

pub mod battery;
pub mod detail;
pub mod events;
pub mod format;
pub mod header;
pub mod help;
pub mod position;
pub mod requests;
pub mod svg;
pub mod theme;
pub mod types;
pub mod usage;
pub mod vehicle;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Widget, Wrap};

use crate::dashboard::app::{App, Tab};

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        buf.set_style(area, self.theme.base);
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(self, area, buf);
            return;
        }
        let [head, body] =
            Layout::vertical([Constraint::Length(header::HEIGHT), Constraint::Fill(1)]).areas(area);
        header::render(self, head, buf);
        let body = match &self.timeline {
            Some(cursor) => {
                let [body, bar] = Layout::vertical([
                    Constraint::Fill(1),
                    Constraint::Length(crate::dashboard::timeline::HEIGHT),
                ])
                .areas(body);
                crate::dashboard::timeline::render(self, cursor, bar, buf);
                body
            }
            None => body,
        };
        match self.view.tab {
            Tab::Live => live(self, body, buf),
            Tab::Requests if self.view.detail.is_some() => detail::render(self, body, buf),
            Tab::Requests => requests::render(self, body, buf),
            Tab::Types => types::render(self, body, buf),
        }
        if self.view.help {
            help::render(self, body, buf);
        }
    }
}

/// The Live tab:
/// ```text
/// ┌ Position ──────┬─ map ─┐┌ Battery ────────────┐
/// │ lat lon alt …  │  ···  ││ V state gauge chart │
/// ┌ Data usage ───────────┐┌ Vehicle and sensors ┐
/// ┌ Events ──────────────────────────────────────┐
/// ```
fn live(app: &App, area: Rect, buf: &mut Buffer) {
    let [top, middle, bottom] = live_rows(area);
    let halves = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]);
    let [position_area, battery_area] = halves.areas(top);
    let [usage_area, vehicle_area] = halves.areas(middle);
    position::render(app, position_area, buf);
    battery::render(app, battery_area, buf);
    usage::render(app, usage_area, buf);
    vehicle::render(app, vehicle_area, buf);
    events::render(app, bottom, buf);
}

/// The Live tab's three rows: position and battery, usage and vehicle,
/// events.
fn live_rows(area: Rect) -> [Rect; 3] {
    let top = (area.height * 2 / 5).max(8);
    let middle = (area.height / 4).max(6);
    Layout::vertical([
        Constraint::Length(top),
        Constraint::Length(middle),
        Constraint::Fill(1),
    ])
    .areas(area)
}

/// Lines visible at once in the scrolling views, for a terminal size (0
/// when unknown or too small).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pages {
    pub events: usize,
    pub detail: usize,
    pub types: usize,
}

/// The scrolling views' page heights at this terminal size.
pub fn pages(width: u16, height: u16) -> Pages {
    pages_above(width, height, 0)
}

/// The page heights when `footer` lines at the bottom are taken (the
/// view's timeline).
pub fn pages_above(width: u16, height: u16, footer: u16) -> Pages {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return Pages::default();
    }
    let body = Rect::new(
        0,
        0,
        width,
        height - header::HEIGHT - footer.min(height - header::HEIGHT),
    );
    let [_, _, events] = live_rows(body);
    Pages {
        events: events.height.saturating_sub(2) as usize,
        detail: body.height.saturating_sub(2) as usize,
        types: body.height.saturating_sub(3) as usize,
    }
}

/// A bordered panel with a title and, on the right, a note (often an age).
pub fn panel(app: &App, title: &str, note: Option<String>) -> Block<'static> {
    let t = &app.theme;
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(t.border)
        .title(Line::from(Span::styled(format!(" {title} "), t.title)));
    if let Some(note) = note {
        block = block.title(Line::from(Span::styled(format!(" {note} "), t.dim)).right_aligned());
    }
    block
}

/// Draws `text` as a dim placeholder inside an empty panel.
pub fn placeholder(app: &App, text: &str, area: Rect, buf: &mut Buffer) {
    Paragraph::new(Line::from(Span::styled(text.to_string(), app.theme.dim)))
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

/// A label and a value with a unit, as spans.
pub fn labelled<'a>(app: &App, label: &'a str, value: String, unit: &'a str) -> Vec<Span<'a>> {
    vec![
        Span::styled(label, app.theme.label),
        Span::styled(value, app.theme.value),
        Span::styled(unit, app.theme.dim),
    ]
}

/// The message shown instead of the dashboard below 80×24.
fn too_small(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let lines = vec![
        Line::from(Span::styled(" terminal too small ", t.alarm)),
        Line::from(format!(
            "{}×{} here; the dashboard needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
            area.width, area.height
        )),
        Line::from("Enlarge the window. Receiving and saving go on; q quits."),
    ];
    let height = (lines.len() as u16).min(area.height);
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    Paragraph::new(lines)
        .centered()
        .wrap(Wrap { trim: true })
        .render(middle, buf);
}

//! Drawing: `impl Widget for &App` lays out the header and the chosen tab;
//! each panel and tab lives in its own file under `ui/`. Nothing here reads
//! the clock: ages are measured against `App::now`.

pub mod battery;
pub mod cells;
pub mod detail;
pub mod events;
pub mod header;
pub mod help;
pub mod mode_menu;
pub mod position;
pub mod requests;
pub mod svg;
pub mod types;
pub mod uplink;
pub mod usage;
pub mod vehicle;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Widget, Wrap};

use crate::dashboard::app::layout::{MIN_HEIGHT, MIN_WIDTH, header_height, live_rows};
use crate::dashboard::app::{App, Tab};
use crate::dashboard::format::{fit_start, prefix};
use unicode_width::UnicodeWidthStr as _;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        draw(self, area, buf);
        cells::settle(area, buf);
    }
}

/// The screen as of the app's state, before its cells are settled
/// (`cells::settle`).
fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    buf.set_style(area, app.theme.base);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(app, area, buf);
        return;
    }
    let [head, body] = Layout::vertical([
        Constraint::Length(header_height(&app.setup)),
        Constraint::Fill(1),
    ])
    .areas(area);
    header::render(app, head, buf);
    let body = match &app.timeline {
        Some(cursor) => {
            let [body, bar] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(crate::dashboard::timeline::HEIGHT),
            ])
            .areas(body);
            crate::dashboard::timeline::render(app, cursor, bar, buf);
            body
        }
        None => body,
    };
    match app.viewer.tab {
        Tab::Live => live(app, body, buf),
        Tab::Requests if app.viewer.detail.is_some() => detail::render(app, body, buf),
        Tab::Requests => requests::render(app, body, buf),
        Tab::Types => types::render(app, body, buf),
        Tab::Uplink => uplink::render(app, body, buf),
    }
    if app.viewer.help {
        help::render(app, body, buf);
    }
    mode_menu::render(app, body, buf);
}

/// The Live tab, in three rows of panels:
/// ```text
/// ╭ Position ──── fix 3s ago ╮╭ Battery ─────── 4s ago ╮
/// │lat lon alt …   map  ●    ││V state · level · chart │
/// ╭ Data usage ───── 4s ago ╮╭ Vehicle and sensors ───╮
/// │modem counters, wire      ││DTCs, obd.<pid>, …      │
/// ╭ Events ───────────────────────────── 1 · following ╮
/// │08:00:04  @system/service/modem/failed reason=…     │
/// ```
/// With `v` the Vehicle and sensors panel takes the whole tab instead.
fn live(app: &App, area: Rect, buf: &mut Buffer) {
    if app.viewer.vehicle_focus {
        vehicle::render(app, area, buf);
        return;
    }
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

/// A bordered panel with a title and, on the right, a note (often an age).
/// `width` is the panel's, corners included: a note longer than the room
/// beside the title is cut with `…`, where ratatui let it run over the
/// title from its start (the Uplink tab at 80 columns read "╭vices (2872
/// batches…", a probe, December 7).
pub fn panel(app: &App, title: &str, note: Option<String>, width: u16) -> Block<'static> {
    let t = &app.theme;
    let title = Line::from(Span::styled(format!(" {title} "), t.title));
    // Two corners, a cell between title and note, the note's own spaces.
    let room = usize::from(width).saturating_sub(title.width() + 5);
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(t.border)
        .title(title);
    if let Some(note) = note.filter(|_| room >= 2) {
        let room = u16::try_from(room).unwrap_or(u16::MAX);
        let mut note = fit_line(Line::from(Span::styled(note, t.dim)), room);
        note.spans.insert(0, Span::styled(" ", t.dim));
        note.spans.push(Span::styled(" ", t.dim));
        block = block.title(note.right_aligned());
    }
    block
}

/// The `/` filter where it applies, for a panel's edge, in at most
/// `width` columns: the prompt and text while typing, the text once kept.
/// A text too long for them shows its end, after `…` (where it is being
/// typed), the hint giving way first: it ran off the edge, the cursor
/// and what was typed last with it (a probe, December 7).
pub fn filter_title(app: &App, width: u16) -> Option<Line<'static>> {
    let t = &app.theme;
    let filter = &app.viewer.filter;
    let width = usize::from(width);
    const PROMPT: &str = " filter: ";
    const HINT: &str = " Enter keeps · Esc clears ";
    if filter.editing {
        let typed = format!("{}▏", filter.text());
        let mut spans = vec![Span::styled(PROMPT, t.key)];
        if PROMPT.len() + typed.width() + HINT.width() <= width {
            spans.push(Span::styled(typed, t.value));
            spans.push(Span::styled(HINT, t.dim));
        } else {
            let room = width.saturating_sub(PROMPT.len() + 1);
            spans.push(Span::styled(fit_start(&typed, room), t.value));
            spans.push(Span::styled(" ", t.dim));
        }
        return Some(Line::from(spans));
    }
    (!filter.is_empty()).then(|| {
        let room = width.saturating_sub(PROMPT.len() + 1);
        Line::from(vec![
            Span::styled(PROMPT, t.label),
            Span::styled(format!("{} ", fit_start(filter.text(), room)), t.value),
        ])
    })
}

/// What an empty list says: that nothing matches the filter, when one
/// is set, else `nothing_yet`.
pub fn nothing_shown(app: &App, nothing_yet: &str) -> String {
    let filter = &app.viewer.filter;
    if filter.is_empty() {
        nothing_yet.to_string()
    } else {
        format!("no match for '{}'", filter.text())
    }
}

/// A box of `lines` centred over `area` (help, the answer-mode menu): at
/// most `width` columns, as tall as its lines, cleared beneath, each line
/// cut to fit.
pub fn overlay(
    app: &App,
    title: &str,
    note: &str,
    lines: Vec<Line<'static>>,
    width: u16,
    area: Rect,
    buf: &mut Buffer,
) {
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = width.min(area.width);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [spot] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|l| fit_line(l, width.saturating_sub(2)))
        .collect();
    Clear.render(spot, buf);
    Paragraph::new(lines)
        .block(panel(app, title, Some(note.to_string()), width))
        .render(spot, buf);
}

/// `line` in at most `width` columns; when cut, it ends in `…` (styled
/// as the span it cut).
pub fn fit_line(line: Line<'static>, width: u16) -> Line<'static> {
    let width = width as usize;
    if line.width() <= width {
        return line;
    }
    // Columns for text before the ellipsis.
    let mut left = width.saturating_sub(1);
    let mut spans = Vec::new();
    for span in line.spans {
        let w = span.width();
        if w <= left {
            left -= w;
            spans.push(span);
            continue;
        }
        if width > 0 {
            let cut = format!("{}…", prefix(&span.content, left));
            spans.push(Span::styled(cut, span.style));
        }
        break;
    }
    Line { spans, ..line }
}

/// The widths `constraints` give columns in `width` with `spacing`
/// between them, as a table lays them out.
pub fn column_widths(constraints: &[Constraint], width: u16, spacing: u16) -> Vec<u16> {
    Layout::horizontal(constraints.iter().copied())
        .spacing(spacing)
        .split(Rect::new(0, 0, width, 1))
        .iter()
        .map(|r| r.width)
        .collect()
}

/// What `s` did, for the bottom edge of a panel `width` columns wide
/// (corners included): a long path cut from its start, so the file name
/// stays, a long reason cut with `…` (the path ran into the corner, its
/// file name lost).
pub fn saved_title(app: &App, width: u16) -> Option<Line<'static>> {
    let t = &app.theme;
    let room = width.saturating_sub(2);
    match app.viewer.saved.as_ref()? {
        Ok(path) => {
            let said = " body saved to ";
            let left = (room as usize).saturating_sub(said.width() + 1);
            Some(Line::from(vec![
                Span::styled(said, t.label),
                Span::styled(format!("{} ", fit_start(path, left)), t.ok),
            ]))
        }
        Err(why) => Some(fit_line(
            Line::from(Span::styled(format!(" {why} "), t.error)),
            room,
        )),
    }
}

/// One title of a bottom edge: its wordings, the fullest first.
pub type EdgePiece = Vec<Line<'static>>;

/// A panel's bottom edge, `width` columns wide (corners included): the
/// `left` pieces one after another at the left and `right` at the right;
/// while they do not fit between the corners, pieces are shortened in the
/// order given, each as far as needed (the first is shortened before the
/// others are touched); when even the shortest do not fit, one line of
/// them, cut with `…` before the corner. Two titles
/// were drawn over each other (`OLD DATA · not the current sta all 2
/// drives`), and one too long ran into the corner uncut.
pub fn bottom_edge(
    mut block: Block<'static>,
    width: u16,
    left: Vec<EdgePiece>,
    right: Option<EdgePiece>,
) -> Block<'static> {
    let room = width.saturating_sub(2) as usize;
    let has_right = right.as_ref().is_some_and(|p| !p.is_empty());
    let pieces: Vec<EdgePiece> = left
        .into_iter()
        .chain(right)
        .filter(|p| !p.is_empty())
        .collect();
    // Titles side by side on one edge are a column apart.
    let wanted = |choice: &[usize]| {
        pieces
            .iter()
            .zip(choice)
            .map(|(p, &c)| p[c].width())
            .sum::<usize>()
            + pieces.len().saturating_sub(1)
    };
    if pieces.is_empty() {
        return block;
    }
    let mut choice = vec![0; pieces.len()];
    for i in 0..pieces.len() {
        while wanted(&choice) > room && choice[i] + 1 < pieces[i].len() {
            choice[i] += 1;
        }
    }
    let fits = wanted(&choice) <= room;
    let mut chosen: Vec<Line<'static>> = pieces
        .into_iter()
        .zip(&choice)
        .map(|(mut p, &c)| p.swap_remove(c))
        .collect();
    if fits {
        let right = if has_right { chosen.pop() } else { None };
        for piece in chosen {
            block = block.title_bottom(piece);
        }
        if let Some(piece) = right {
            block = block.title_bottom(piece.right_aligned());
        }
        return block;
    }
    let spans: Vec<Span<'static>> = chosen.into_iter().flat_map(|l| l.spans).collect();
    block.title_bottom(fit_line(Line::from(spans), room as u16))
}

/// A panel's bottom edge when what it shows came in a batch of old data
/// (`uplink::OLD_DATA`): the newest known, not the current state.
pub fn old_data_title(app: &App) -> EdgePiece {
    [" OLD DATA · not the current state ", " OLD DATA "]
        .map(|text| Line::from(Span::styled(text, app.theme.alarm)))
        .into()
}

/// The age of a value, `OLD` in front when it came in a batch of old data.
pub fn value_age(app: &App, ts: jiff::Timestamp, old: bool) -> String {
    let a = crate::dashboard::format::age(app.now(), ts);
    if old { format!("OLD {a}") } else { a }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bottom edge of `block` drawn `width` columns wide.
    fn edge(block: Block<'static>, width: u16) -> String {
        let area = Rect::new(0, 0, width, 3);
        let mut buf = Buffer::empty(area);
        block.render(area, &mut buf);
        (0..width)
            .map(|x| buf[(x, 2)].symbol().to_string())
            .collect()
    }

    fn piece(words: &[&'static str]) -> EdgePiece {
        words.iter().map(|w| Line::from(*w)).collect()
    }

    #[test]
    fn a_bottom_edge_keeps_its_pieces_apart() {
        let old = || piece(&[" OLD DATA · not the current state ", " OLD DATA "]);
        // Old data at the left and the drive at the right, `width` wide.
        let drawn = |width: u16| {
            let block = bottom_edge(
                Block::bordered(),
                width,
                vec![old()],
                Some(piece(&[" drive 2 "])),
            );
            edge(block, width)
        };
        // Room for both: one at each end.
        let wide = drawn(60);
        assert!(
            wide.starts_with("└ OLD DATA · not the current state ─"),
            "{wide}"
        );
        assert!(wide.ends_with("─ drive 2 ┘"), "{wide}");
        // Less room: the first piece in its short wording.
        let narrow = drawn(30);
        assert!(narrow.starts_with("└ OLD DATA ─"), "{narrow}");
        assert!(narrow.ends_with("─ drive 2 ┘"), "{narrow}");
        // Too little even then: one line, cut.
        let cut = drawn(14);
        assert!(cut.contains('…'), "{cut}");
        // An empty right piece leaves the left one at the left.
        let alone = edge(
            bottom_edge(Block::bordered(), 40, vec![old()], Some(vec![])),
            40,
        );
        assert!(alone.starts_with("└ OLD DATA"), "{alone}");
    }
}

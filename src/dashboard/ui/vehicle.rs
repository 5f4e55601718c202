//! The Vehicle and sensors panel: active trouble codes first, then the
//! latest value of every `obd.<pid>`, `rpi.temp` and `acc.xyz`, each with
//! its unit and age; two columns when there is room. Names take the width
//! they need, cut text ends in `…`, and rows that do not fit are counted
//! at the bottom edge (`v` shows the panel over the whole tab, where ↑↓
//! scroll it).
//! ```text
//! ╭ Vehicle and sensors ───────────────────────╮
//! │ DTC P0300  Random/multiple cylinder…  3s ago│
//! │coolant_temp         50 °C           11s ago│
//! │ambiant_air_temp     18 °C            9s ago│
//! ╰ +3 more · v shows all ─────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{Side, fit_words, fixed, padded, unit};
use crate::dashboard::state::Device;
use crate::dashboard::ui::{
    EdgePiece, bottom_edge, fit_line, old_data_title, panel, placeholder, value_age,
};
use unicode_width::UnicodeWidthStr;

/// Inner width from which the values are laid out in two columns.
const TWO_COLUMNS: u16 = 70;

/// Draws the Vehicle and sensors panel.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let focused = app.viewer.vehicle_focus;
    let title_note = focused.then(|| "↑↓ scroll · v or Esc back".to_string());
    let Some(device) = app.device() else {
        let block = panel(app, "Vehicle and sensors", title_note, area.width);
        let inner = block.inner(area);
        block.render(area, buf);
        placeholder(app, "no upload yet", inner, buf);
        return;
    };
    let codes = trouble_codes(app, device);
    let rows = values(app, device);
    let total = codes.len() + rows.len();
    let block = panel(app, "Vehicle and sensors", title_note, area.width);
    let mut edge: Vec<EdgePiece> = device
        .has_old_vehicle_values()
        .then(|| old_data_title(app))
        .into_iter()
        .collect();
    let inner = block.inner(area);
    let height = inner.height as usize;
    if total == 0 {
        bottom_edge(block, area.width, edge, None).render(area, buf);
        placeholder(
            app,
            "no obd.<pid>, obd.dtc, rpi.temp or acc.xyz yet",
            inner,
            buf,
        );
        return;
    }
    let columns = if inner.width >= TWO_COLUMNS && total > height {
        2
    } else {
        1
    };
    // Scrolling (when focused) skips rows from the top, codes first.
    let scroll = if focused {
        app.viewer.vehicle_scroll.min(total.saturating_sub(1))
    } else {
        0
    };
    let codes_shown: Vec<_> = codes.iter().skip(scroll).take(height).cloned().collect();
    let rows_skipped = scroll.saturating_sub(codes.len());
    let values_height = height - codes_shown.len();
    let capacity = values_height * columns;
    let shown_rows: Vec<_> = rows.iter().skip(rows_skipped).take(capacity).collect();
    let hidden = total - scroll - codes_shown.len() - shown_rows.len();
    if hidden > 0 || scroll > 0 {
        let hint = if focused {
            "↑↓ scroll"
        } else {
            "v shows all"
        };
        let above = if scroll > 0 {
            format!("{scroll} above · ")
        } else {
            String::new()
        };
        edge.push(
            [
                format!(" {above}+{hidden} more · {hint} "),
                format!(" {above}+{hidden} more "),
                format!(" +{hidden} "),
            ]
            .map(|text| Line::from(Span::styled(text, app.theme.warn)))
            .into(),
        );
    }
    bottom_edge(block, area.width, edge, None).render(area, buf);
    let [codes_area, values_area] = Layout::vertical([
        Constraint::Length(codes_shown.len() as u16),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let code_lines: Vec<Line> = codes_shown
        .into_iter()
        .map(|c| code_line(app, c, codes_area.width))
        .collect();
    Paragraph::new(code_lines).render(codes_area, buf);
    if columns == 1 {
        draw_values(app, &shown_rows, values_area, buf);
        return;
    }
    let [left, right] = Layout::horizontal([Constraint::Fill(1); 2])
        .spacing(2)
        .areas(values_area);
    let split = shown_rows.len().min(values_height);
    draw_values(app, &shown_rows[..split], left, buf);
    draw_values(app, &shown_rows[split..], right, buf);
}

/// Value rows in one column of `area`'s width: the age and the value keep
/// their width, the name takes what it needs of the rest and the unit
/// what remains; anything cut ends in `…`.
fn draw_values(app: &App, rows: &[&[String; 4]], area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let widest = |col: usize| rows.iter().map(|r| r[col].width()).max().unwrap_or(0);
    let width = area.width as usize;
    let age_w = widest(3);
    let value_w = widest(1).min(18);
    let room = width.saturating_sub(age_w + value_w + 3);
    let unit_w = widest(2).min(room / 3);
    let name_w = widest(0).min(room.saturating_sub(unit_w));
    let unit_w = room.saturating_sub(name_w).min(widest(2));
    let lines: Vec<Line> = rows
        .iter()
        .map(|[name, value, unit, age]| {
            let gap = width.saturating_sub(name_w + value_w + unit_w + age_w + 3);
            fit_line(
                Line::from(vec![
                    Span::styled(padded(name, name_w, Side::Left), t.label),
                    Span::raw(" "),
                    Span::styled(padded(value, value_w, Side::Right), t.value),
                    Span::raw(" "),
                    Span::styled(padded(unit, unit_w, Side::Left), t.dim),
                    Span::raw(" ".repeat(gap + 1)),
                    // Right-aligned, as a trouble code's: `1s ago` and
                    // `56s ago` end at the same column.
                    Span::styled(padded(age, age_w, Side::Right), t.dim),
                ]),
                area.width,
            )
        })
        .collect();
    Paragraph::new(lines).render(area, buf);
}

/// One trouble code in `width` columns: code, text (cut with `…`), age.
fn code_line(app: &App, (code, text, age): (String, String, String), width: u16) -> Line<'static> {
    let t = &app.theme;
    let code = format!(" DTC {code} ");
    let room = (width as usize).saturating_sub(code.width() + age.width() + 3);
    let text = fit_words(&text, room);
    let gap = room.saturating_sub(text.width());
    fit_line(
        Line::from(vec![
            Span::styled(code, t.error),
            Span::styled(format!(" {text}"), t.value),
            Span::raw(" ".repeat(gap + 2)),
            Span::styled(age, t.dim),
        ]),
        width,
    )
}

/// Active trouble codes (`obd.dtc`): code, text and age.
pub fn trouble_codes(app: &App, d: &Device) -> Vec<(String, String, String)> {
    d.dtcs
        .iter()
        .map(|(code, stamped)| {
            (
                code.clone(),
                stamped.value.clone(),
                value_age(app, stamped.ts, stamped.old),
            )
        })
        .collect()
}

/// One row per `obd.<pid>`, then `rpi.temp` and `acc.xyz`.
pub fn values(app: &App, d: &Device) -> Vec<[String; 4]> {
    let mut out = Vec::new();
    for (pid, stamped) in &d.obd {
        let sent = stamped.value.unit.as_deref().unwrap_or("");
        out.push([
            pid.clone(),
            stamped.value.value.clone(),
            unit(sent).to_string(),
            value_age(app, stamped.ts, stamped.old),
        ]);
    }
    if let Some(temp) = &d.rpi_temp {
        let (cpu, gpu) = temp.value;
        let text = format!("{}/{}", fixed(cpu, 1), fixed(gpu, 1));
        out.push([
            "rpi.temp".into(),
            text,
            "°C cpu/gpu".into(),
            value_age(app, temp.ts, temp.old),
        ]);
    }
    if let Some(acc) = &d.acc {
        let [x, y, z] = acc.value;
        let text = format!("{}/{}/{}", fixed(x, 2), fixed(y, 2), fixed(z, 2));
        out.push([
            "acc.xyz".into(),
            text,
            "g x/y/z".into(),
            value_age(app, acc.ts, acc.old),
        ]);
    }
    out
}

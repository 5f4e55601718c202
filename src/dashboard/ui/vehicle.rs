//! The Vehicle and sensors panel: active trouble codes first, then the
//! latest value of every `obd.<pid>`, `rpi.temp` and `acc.xyz`, each with
//! its unit and age; two columns when there is room.
//! ```text
//! ╭ Vehicle and sensors ──────────────────────╮
//! │ DTC P0300  Random/multiple cylinder m… 3s ago│
//! │coolant_temp        50 °C          11s ago│
//! │rpm              717.1 rpm         12s ago│
//! ╰──────────────────────────────────────────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, fixed, unit};
use crate::dashboard::state::Device;
use crate::dashboard::ui::{panel, placeholder};

/// Inner width from which the values are laid out in two columns.
const TWO_COLUMNS: u16 = 70;

/// Draws the Vehicle and sensors panel.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = panel(app, "Vehicle and sensors", None);
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(device) = app.device() else {
        placeholder(app, "no upload yet", inner, buf);
        return;
    };
    let codes = trouble_codes(app, device);
    let mut rows = values(app, device);
    if codes.is_empty() && rows.is_empty() {
        placeholder(
            app,
            "no obd.<pid>, obd.dtc, rpi.temp or acc.xyz yet",
            inner,
            buf,
        );
        return;
    }
    let [codes_area, values_area] =
        Layout::vertical([Constraint::Length(codes.len() as u16), Constraint::Fill(1)])
            .areas(inner);
    Paragraph::new(codes).render(codes_area, buf);
    let height = values_area.height as usize;
    if inner.width < TWO_COLUMNS || rows.len() <= height {
        rows.truncate(height);
        table(app, rows).render(values_area, buf);
        return;
    }
    let [left, right] = Layout::horizontal([Constraint::Fill(1); 2])
        .spacing(2)
        .areas(values_area);
    let mut second = rows.split_off(rows.len().div_ceil(2).max(height).min(rows.len()));
    second.truncate(height);
    table(app, rows).render(left, buf);
    table(app, second).render(right, buf);
}

/// Values as a table whose unit column gives way first, so ages stay.
fn table(app: &App, rows: Vec<[String; 4]>) -> Table<'static> {
    let t = &app.theme;
    let widest = |col: usize, min: usize, max: usize| {
        let w = rows
            .iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0);
        w.clamp(min, max) as u16
    };
    let widths = [
        Constraint::Length(12),
        Constraint::Length(widest(1, 4, 18)),
        Constraint::Fill(1),
        Constraint::Length(widest(3, 6, 13)),
    ];
    let rows = rows.into_iter().map(|[name, value, unit, age]| {
        Row::new(vec![
            Cell::from(name).style(t.label),
            Cell::from(Line::from(value).right_aligned()).style(t.value),
            Cell::from(unit).style(t.dim),
            Cell::from(Line::from(age).right_aligned()).style(t.dim),
        ])
    });
    Table::new(rows, widths).column_spacing(1)
}

/// Active trouble codes (`obd.dtc`), loud.
pub fn trouble_codes(app: &App, d: &Device) -> Vec<Line<'static>> {
    let t = &app.theme;
    d.dtcs
        .iter()
        .map(|(code, stamped)| {
            Line::from(vec![
                Span::styled(format!(" DTC {code} "), t.error),
                Span::styled(format!(" {} ", stamped.value), t.value),
                Span::styled(age(app.now(), stamped.ts), t.dim),
            ])
        })
        .collect()
}

/// One row per `obd.<pid>`, then `rpi.temp` and `acc.xyz`.
pub fn values(app: &App, d: &Device) -> Vec<[String; 4]> {
    let now = app.now();
    let mut out = Vec::new();
    for (pid, stamped) in &d.obd {
        let sent = stamped.value.unit.as_deref().unwrap_or("");
        out.push([
            pid.clone(),
            stamped.value.value.clone(),
            unit(sent).to_string(),
            age(now, stamped.ts),
        ]);
    }
    if let Some(temp) = &d.rpi_temp {
        let (cpu, gpu) = temp.value;
        let text = format!("{}/{}", fixed(cpu, 1), fixed(gpu, 1));
        out.push([
            "rpi.temp".into(),
            text,
            "°C cpu/gpu".into(),
            age(now, temp.ts),
        ]);
    }
    if let Some(acc) = &d.acc {
        let [x, y, z] = acc.value;
        let text = format!("{}/{}/{}", fixed(x, 2), fixed(y, 2), fixed(z, 2));
        out.push(["acc.xyz".into(), text, "g x/y/z".into(), age(now, acc.ts)]);
    }
    out
}

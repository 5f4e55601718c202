//! The Data usage panel (`ec2x.data_usage`): modem counters, their growth
//! since the session began and its rate, beside what reached us. After a
//! counter reset the growth is summed across it and marked `↺`:
//! ```text
//! ╭ Data usage ───────────────── 12s ago ╮
//! │         total  +session↺1       rate │
//! │sent  1.10 MiB  +1.24 MiB↺ 1.53 KiB/s │
//! │recv 266.1 KiB +526.3 KiB↺    653 B/s │
//! │wire 207.8 KiB json 207.8 KiB ×1.0    │
//! ╰ ↺ counter reset 08:10:00, summed ────╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, bytes, clock_or_date};
use crate::dashboard::state::Device;
use crate::dashboard::ui::{bottom_edge, fit_line, old_data_title, panel, placeholder};

/// Draws the Data usage panel.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let device = app.device();
    let usage = device.and_then(|d| d.usage.as_ref());
    let mut edge = Vec::new();
    if usage.is_some_and(|u| u.old) {
        edge.push(old_data_title(app));
    }
    if let Some(at) = usage.and_then(|u| u.value.last_reset) {
        let marks = [
            format!(
                " ↺ counter reset {}, summed ",
                clock_or_date(app.now(), at, true)
            ),
            format!(" ↺ reset {} ", clock_or_date(app.now(), at, false)),
            " ↺ ".to_string(),
        ];
        edge.push(
            marks
                .map(|mark| Line::from(Span::styled(mark, app.theme.warn)))
                .into(),
        );
    }
    let block = bottom_edge(
        panel(
            app,
            "Data usage",
            usage.map(|u| age(app.now(), u.ts)),
            area.width,
        ),
        area.width,
        edge,
        None,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(device) = device else {
        placeholder(app, "no upload yet", inner, buf);
        return;
    };
    let mut lines = modem_lines(app, device);
    lines.push(wire_line(app, device));
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|l| fit_line(l, inner.width))
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

/// The modem counters with their growth and rate.
fn modem_lines(app: &App, device: &Device) -> Vec<Line<'static>> {
    let t = &app.theme;
    let Some(u) = &device.usage else {
        return vec![Line::from(Span::styled(
            "modem counters: none yet (ec2x.data_usage)",
            t.dim,
        ))];
    };
    let rate = device.usage_rate();
    // After a reset the growth is summed across it: marked, as it can
    // then exceed the counter.
    let mark = if u.value.resets > 0 { "↺" } else { "" };
    let row = |name: &'static str, total: u64, change: u64, rate: Option<f64>| {
        let rate = rate.map_or("-".into(), |r| format!("{}/s", bytes(r.round() as u64)));
        Line::from(vec![
            Span::styled(name, t.label),
            Span::styled(format!("{:>10}", bytes(total)), t.value),
            Span::styled(
                format!(" {:>11}", format!("+{}{mark}", bytes(change))),
                t.value,
            ),
            Span::styled(format!(" {rate:>10}"), t.value),
        ])
    };
    let session = if u.value.resets > 0 {
        format!("+session{mark}{}", u.value.resets)
    } else {
        "+session".to_string()
    };
    vec![
        Line::from(Span::styled(
            format!("{:<4}{:>10}{:>12}{:>11}", "", "total", session, "rate"),
            t.label,
        )),
        row("sent", u.value.sent, u.value.sent_change, rate.map(|r| r.0)),
        row("recv", u.value.recv, u.value.recv_change, rate.map(|r| r.1)),
    ]
}

/// What reached us on the wire, inflated to JSON, and how well gzip did.
fn wire_line(app: &App, device: &Device) -> Line<'static> {
    let t = &app.theme;
    let ratio = if device.wire_bytes > 0 {
        format!(
            "×{:.1}",
            device.body_bytes as f64 / device.wire_bytes as f64
        )
    } else {
        "-".into()
    };
    Line::from(vec![
        Span::styled("wire", t.label),
        Span::styled(format!("{:>10}", bytes(device.wire_bytes)), t.value),
        Span::styled(" json", t.label),
        Span::styled(format!("{:>10}", bytes(device.body_bytes)), t.value),
        Span::styled(" ", t.label),
        Span::styled(ratio, t.value),
    ])
}

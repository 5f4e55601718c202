//! One request in full (Enter on the Requests tab): what we answered, the
//! headers with the token replaced by its scheme and a fingerprint, whether
//! it matched a configured token, where the JSON broke for a 400, and the
//! body pretty-printed; all of it scrolls.
//! ```text
//! ┌ Request #12 ─────────────────────────── Esc closes · ↑↓ PgUp PgDn g G ┐
//! │ POST /logbook/storage → 200 · 1000 records · 1.9 ms                    │
//! │ matches a configured token: yes                                        │
//! │ Headers                                                                │
//! │   authorization: token [redacted, fingerprint 5e1f0c2a]                │
//! │ Body (104 KiB, pretty)                                                 │
//! └────────────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::ui::format::{bytes, count};
use crate::dashboard::ui::{panel, placeholder};
use crate::event::RequestEvent;
use crate::time::format_received;

/// Most body lines shown; the capture file has the whole batch.
const MAX_BODY_LINES: usize = 50_000;
/// Characters shown before and after the spot where the JSON broke.
const CONTEXT: usize = 60;

/// Draws the open request over the tab's area.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let id = app.view.detail.unwrap_or_default();
    let block = panel(
        app,
        &format!("Request #{id}"),
        Some("Esc closes · ↑↓ PgUp PgDn g G scroll".into()),
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(r) = app.shown().requests.iter().find(|r| r.id == id) else {
        placeholder(
            app,
            "this request is no longer kept (see the capture file)",
            inner,
            buf,
        );
        return;
    };
    let height = inner.height as usize;
    let head = head(app, r);
    let body = app.detail_body();
    let total = head.len() + body.len();
    let scroll = app.view.detail_scroll.min(total.saturating_sub(height));
    // Only the body lines in view become ratatui Lines.
    let from = scroll.saturating_sub(head.len()).min(body.len());
    let to = (scroll + height).saturating_sub(head.len()).min(body.len());
    let visible: Vec<Line> = head
        .into_iter()
        .skip(scroll)
        .take(height)
        .chain(body[from..to].iter().map(|l| Line::from(format!("  {l}"))))
        .collect();
    Paragraph::new(visible).render(inner, buf);
}

/// The lines above the body: summary, token match, headers, where the JSON
/// broke, and the body's title.
pub fn head(app: &App, r: &RequestEvent) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = summary(app, r);
    let matched = match r.token_matched {
        Some(true) => Span::styled("yes", t.ok),
        Some(false) => Span::styled(" no ", t.error),
        None => Span::styled("not checked (no authorization header, or --no-auth)", t.dim),
    };
    out.push(Line::from(vec![
        Span::styled("matches a configured token: ", t.label),
        matched,
    ]));
    out.push(Line::default());
    out.push(Line::from(Span::styled("Headers", t.title)));
    for (name, value) in &r.headers {
        out.push(Line::from(vec![
            Span::styled(format!("  {name}: "), t.label),
            Span::styled(value.clone(), t.value),
        ]));
    }
    if let Some(spot) = broke_at(r) {
        out.push(Line::default());
        out.push(Line::from(Span::styled("Where the JSON broke", t.title)));
        out.extend(
            spot.into_iter()
                .map(|l| Line::from(Span::styled(l, t.warn))),
        );
    }
    out.push(Line::default());
    out.push(body_title(app, r));
    out
}

/// What was asked and answered, and anything odd about it.
fn summary(app: &App, r: &RequestEvent) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("{} {} → ", r.method, r.path), t.value),
            Span::styled(r.status.to_string(), t.status(r.status)),
            Span::styled(
                format!(
                    " · {} records · handled in {:.1} ms",
                    count(r.records as u64),
                    r.elapsed.as_secs_f64() * 1000.0
                ),
                t.value,
            ),
        ]),
        Line::from(Span::styled(
            format!(
                "received {} from {} · unit-id {}",
                format_received(r.received),
                r.peer,
                r.unit_id.as_deref().unwrap_or("-"),
            ),
            t.label,
        )),
        Line::from(Span::styled(
            match r.encoding {
                Some(encoding) => format!(
                    "{} on the wire ({encoding}), {} of JSON",
                    bytes(r.wire_bytes),
                    bytes(r.body_bytes)
                ),
                None => format!("{} on the wire, not decoded", bytes(r.wire_bytes)),
            },
            t.label,
        )),
    ];
    let notes = [
        (
            r.duplicate_of
                .as_ref()
                .map(|d| format!("duplicate of the batch received {d}: not counted again")),
            t.warn,
        ),
        (
            (r.malformed > 0).then(|| {
                format!(
                    "{} malformed records (no @t/@ts, or a bad @ts)",
                    r.malformed
                )
            }),
            t.warn,
        ),
        (
            (r.naive_timestamps > 0)
                .then(|| format!("{} naive timestamps (read as UTC)", r.naive_timestamps)),
            t.dim,
        ),
        (r.warning.as_ref().map(|w| format!("warning: {w}")), t.warn),
        (r.error.as_ref().map(|e| format!("error: {e}")), t.error),
    ];
    out.extend(
        notes
            .into_iter()
            .filter_map(|(text, style)| text.map(|s| Line::from(Span::styled(s, style)))),
    );
    out
}

/// For a refused body whose error names a byte: the text around it with
/// a caret under the spot.
pub fn broke_at(r: &RequestEvent) -> Option<Vec<String>> {
    let error = r.error.as_deref()?;
    let offset: usize = error
        .rsplit_once("(byte ")?
        .1
        .strip_suffix(')')?
        .parse()
        .ok()?;
    let body = r.body.as_deref()?;
    if offset > body.len() || error.starts_with("gzip body") {
        return None;
    }
    let start = offset.saturating_sub(CONTEXT);
    let end = (offset + CONTEXT / 3).min(body.len());
    let printable = |bytes: &[u8]| -> String {
        String::from_utf8_lossy(bytes)
            .chars()
            .map(|c| if c.is_control() { '·' } else { c })
            .collect()
    };
    let before = printable(&body[start..offset]);
    let after = printable(&body[offset..end]);
    Some(vec![
        format!("  byte {offset}: {before}{after}"),
        format!(
            "  {}^",
            " ".repeat(format!("byte {offset}: ").len() + before.chars().count())
        ),
    ])
}

/// True when the kept body is JSON (and so is pretty-printed).
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The body's title: its size and how it is shown.
fn body_title(app: &App, r: &RequestEvent) -> Line<'static> {
    let t = &app.theme;
    match r.body.as_deref() {
        None => Line::from(Span::styled("Body: not kept (see the capture file)", t.dim)),
        Some(body) => {
            // Accepted bodies were validated by the listener; refused ones
            // are kept to 64 KiB, so this stays cheap on every frame.
            let what = if r.accepted() || is_json(body) {
                "pretty"
            } else {
                "as received"
            };
            Line::from(Span::styled(
                format!("Body ({}, {what})", bytes(body.len() as u64)),
                t.title,
            ))
        }
    }
}

/// The body's lines: pretty when it is JSON, else as received.
pub fn body_lines(r: &RequestEvent) -> Vec<String> {
    let Some(body) = r.body.as_deref() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(body);
    if is_json(body) {
        pretty(&text, MAX_BODY_LINES)
    } else {
        raw(&text, MAX_BODY_LINES)
    }
}

/// The lines of a non-JSON body, control characters made visible.
fn raw(text: &str, max_lines: usize) -> Vec<String> {
    text.lines()
        .take(max_lines)
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() { '·' } else { c })
                .collect()
        })
        .collect()
}

/// JSON text indented two spaces per level, keys in their original order.
pub fn pretty(json: &str, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let (mut depth, mut in_string, mut escaped, mut just_opened) = (0usize, false, false, false);
    for c in json.chars() {
        if lines.len() >= max_lines {
            lines.push("…".to_string());
            return lines;
        }
        if in_string {
            line.push(c);
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let closing = matches!(c, '}' | ']');
        if just_opened && !closing {
            lines.push(std::mem::replace(&mut line, "  ".repeat(depth)));
        }
        if closing {
            depth = depth.saturating_sub(1);
            if !just_opened {
                lines.push(std::mem::replace(&mut line, "  ".repeat(depth)));
            }
        }
        just_opened = false;
        match c {
            '{' | '[' => {
                line.push(c);
                depth += 1;
                just_opened = true;
            }
            ',' => {
                line.push(c);
                lines.push(std::mem::replace(&mut line, "  ".repeat(depth)));
            }
            ':' => line.push_str(": "),
            '"' => {
                line.push(c);
                in_string = true;
            }
            _ => line.push(c),
        }
    }
    if !line.trim().is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_keeps_key_order_and_strings() {
        let lines = pretty(r#"[{"b":1,"a":"x, {y}"},{},[]]"#, 100);
        assert_eq!(
            lines,
            [
                "[",
                "  {",
                "    \"b\": 1,",
                "    \"a\": \"x, {y}\"",
                "  },",
                "  {},",
                "  []",
                "]"
            ]
        );
    }

    #[test]
    fn pretty_stops_at_the_line_limit() {
        let lines = pretty("[1,2,3,4,5,6]", 3);
        assert_eq!(lines.last().map(String::as_str), Some("…"));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn broke_at_points_at_the_byte() {
        let body = r#"[{"a":1} {"b":2}]"#;
        let config = crate::receiver::ingest::Config {
            auth: crate::receiver::ingest::Auth::Open,
            max_body: 1024,
        };
        let error = crate::receiver::ingest::decode(&config, None, body.as_bytes())
            .unwrap_err()
            .error;
        let at = crate::fixtures::at("2026-11-27T08:00:00Z");
        let mut r = crate::fixtures::refused(1, at, 400, &error, body);
        let spot = broke_at(&r).unwrap();
        assert_eq!(spot[0], r#"  byte 9: [{"a":1} {"b":2}]"#);
        let caret = spot[1].find('^').unwrap();
        assert_eq!(
            &spot[0][caret..caret + 1],
            "{",
            "caret under the second object"
        );
        r.error = Some("gzip body: body is not ... (byte 3)".into());
        assert_eq!(broke_at(&r), None);
    }
}

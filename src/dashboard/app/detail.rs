//! The text of one request in full (Enter on the Requests tab), laid out
//! once when it is opened: the lines above the body (what we answered, the
//! headers as the event carries them, where the JSON broke) and the body's
//! lines. Each piece of text says what it is (`Tone`); the drawing code
//! picks its style.

use crate::dashboard::format::{bytes, count, prefix};
use crate::event::RequestEvent;
use crate::time::format_received;
use unicode_width::UnicodeWidthStr;

/// Most body lines laid out; the capture file has the whole batch.
const MAX_BODY_LINES: usize = 50_000;
/// The last line of a body cut at `MAX_BODY_LINES`: it said `…` alone
/// (a text body ended there without a word), and the rest is not lost
/// (a probe, December 7).
const CUT: &str = "… the rest is not shown here (s saves it)";
/// How much of a refused body the listener hands over for this view.
const REFUSED_BODY_HELD: usize = 64 * 1024;
/// Characters shown before and after the spot where the JSON broke.
const CONTEXT: usize = 60;
/// Most characters kept of one body line (a 30 MB string is one line),
/// past any terminal's width; the rest is `…`.
const LINE_CHARS: usize = 2_000;
/// Levels indented in a pretty body; deeper ones stay at this indentation
/// (a body nested 25 000 deep made lines of 50 000 spaces each).
const MAX_INDENT: usize = 64;

/// One body line being laid out, kept to `LINE_CHARS` characters.
#[derive(Default)]
struct Laid {
    text: String,
    chars: usize,
}

impl Laid {
    fn indented(depth: usize) -> Laid {
        let mut line = Laid::default();
        line.push_str(&"  ".repeat(depth.min(MAX_INDENT)));
        line
    }
    fn push(&mut self, c: char) {
        if self.chars < LINE_CHARS {
            self.text.push(c);
        } else if self.chars == LINE_CHARS {
            self.text.push('…');
        }
        self.chars += 1;
    }
    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }
    /// The line so far, a new one (indented `depth` levels) in its place.
    fn next(&mut self, depth: usize) -> String {
        std::mem::replace(self, Laid::indented(depth)).text
    }
}

/// What a piece of text is, for its style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Title,
    Label,
    Value,
    Dim,
    Ok,
    Warn,
    Error,
    /// An HTTP status, styled by its class.
    Status(u16),
}

/// One run of text in one tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub tone: Tone,
    pub text: String,
}

/// One line of pieces.
pub type TextLine = Vec<Piece>;

fn piece(tone: Tone, text: impl Into<String>) -> Piece {
    Piece {
        tone,
        text: text.into(),
    }
}

/// The open request as laid out when it was opened.
#[derive(Clone, Debug, Default)]
pub struct Detail {
    pub id: u64,
    /// The width the head was wrapped to.
    pub width: u16,
    pub head: Vec<TextLine>,
    pub body: Vec<String>,
    /// `p`: a batch pretty-printed, one key per line, instead of one
    /// record per line.
    pub pretty: bool,
}

impl Detail {
    /// Lays out request `r`; `let_go` when its body was let go for the
    /// memory budget (rather than never kept).
    pub fn of(r: &RequestEvent, let_go: bool, width: u16, pretty: bool) -> Detail {
        Detail {
            id: r.id,
            width,
            head: head(r, let_go, width, pretty),
            body: body_lines(r, pretty),
            pretty,
        }
    }

    /// Lines in all, head and body.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// True when there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lines above the body: summary, token match, headers, where the JSON
/// broke, and the body's title; wrapped to `width` columns (except the
/// lines around the broken byte, whose caret must stay under it).
pub fn head(r: &RequestEvent, let_go: bool, width: u16, pretty: bool) -> Vec<TextLine> {
    let wrap = |lines: Vec<TextLine>| -> Vec<TextLine> {
        lines
            .into_iter()
            .flat_map(|l| wrap_line(l, width as usize))
            .collect()
    };
    let mut out = summary(r);
    let matched = match r.token_matched {
        Some(true) => piece(Tone::Ok, "yes"),
        Some(false) => piece(Tone::Error, " no "),
        // Read back from the capture, which keeps no authorization: a line
        // is only written for an upload that passed the check (it said
        // "not checked (no authorization header, or --no-auth)").
        None if r.id >= crate::capture::load::LOADED_ID_BASE => piece(
            Tone::Dim,
            "yes, or --no-auth (the capture keeps only uploads that passed)",
        ),
        None => piece(
            Tone::Dim,
            "not checked (no authorization header, or --no-auth)",
        ),
    };
    out.push(vec![
        piece(Tone::Label, "matches a configured token: "),
        matched,
    ]);
    out.push(Vec::new());
    out.push(vec![piece(Tone::Title, "Headers")]);
    // Invisible characters as `\u{..}`, as the panels write them: the
    // frame drops them, so a unit-id `ctl\x1b]0;T` read `ctl]0;T`.
    for (name, value) in &r.headers {
        out.push(vec![
            piece(Tone::Label, format!("  {}: ", crate::text::shown(name))),
            piece(Tone::Value, crate::text::shown(value).into_owned()),
        ]);
    }
    let mut out = wrap(out);
    if let Some(spot) = broke_at(r) {
        out.push(Vec::new());
        out.push(vec![piece(Tone::Title, "Where the JSON broke")]);
        out.extend(spot.into_iter().map(|l| vec![piece(Tone::Warn, l)]));
    }
    out.push(Vec::new());
    out.extend(wrap(body_title(r, let_go, pretty)));
    out
}

/// `line` broken into lines of at most `width` columns, the following
/// ones indented by two spaces (0: left whole).
fn wrap_line(line: TextLine, width: usize) -> Vec<TextLine> {
    let total: usize = line.iter().map(|p| p.text.width()).sum();
    if width <= 4 || total <= width {
        return vec![line];
    }
    let mut out = Vec::new();
    let mut current: TextLine = Vec::new();
    let mut used = 0;
    for p in line {
        let mut text = p.text.as_str();
        while !text.is_empty() {
            if used == width {
                out.push(std::mem::take(&mut current));
                current.push(piece(Tone::Dim, "  "));
                used = 2;
                // Spaces where the line broke are not carried over: they
                // indented some continuations a column more than others
                // (a UX review).
                text = text.trim_start_matches(' ');
                if text.is_empty() {
                    break;
                }
            }
            let part = prefix(text, width - used);
            // A character wider than what is left starts the next line.
            let part = if part.is_empty() && used > 2 {
                used = width;
                continue;
            } else if part.is_empty() {
                &text[..text.chars().next().map_or(0, char::len_utf8)]
            } else {
                part
            };
            current.push(piece(p.tone, part));
            used += part.width();
            text = &text[part.len()..];
        }
    }
    out.push(current);
    out
}

/// What was asked and answered, and anything odd about it.
fn summary(r: &RequestEvent) -> Vec<TextLine> {
    let mut out = vec![
        vec![
            piece(Tone::Value, format!("{} {} → ", r.method, r.path)),
            piece(Tone::Status(r.status), r.status.to_string()),
            piece(
                Tone::Value,
                format!(
                    " · {} records · handled in {:.1} ms",
                    count(r.records as u64),
                    r.elapsed.as_secs_f64() * 1000.0
                ),
            ),
        ],
        vec![piece(
            Tone::Label,
            format!("received {} from {}", format_received(r.received), r.peer),
        )],
        // A line of its own: after the time and peer, a 32-digit unit-id
        // was broken in the middle at 80 columns.
        vec![piece(
            Tone::Label,
            format!(
                "unit-id {}",
                crate::dashboard::format::unit_shown(r.unit_id.as_deref().unwrap_or("-"))
            ),
        )],
        vec![piece(
            Tone::Label,
            match r.encoding {
                Some(encoding) => format!(
                    "{} on the wire ({encoding}), {} of JSON",
                    bytes(r.wire_bytes),
                    bytes(r.body_bytes)
                ),
                // A request refused on its head (a 401) had its body's
                // length beside "0 B on the wire" (a UX review).
                None if r.wire_bytes == 0 => "no body read".to_string(),
                None => format!("{} on the wire, not decoded", bytes(r.wire_bytes)),
            },
        )],
    ];
    let notes = [
        (
            r.duplicate_of
                .as_ref()
                .map(|d| format!("duplicate of the batch received {d}: not counted again")),
            Tone::Warn,
        ),
        (
            r.retry_of.as_ref().map(|d| {
                format!(
                    "retry of the batch received {d}, which was not acknowledged: not counted again"
                )
            }),
            Tone::Warn,
        ),
        (
            r.mode.as_ref().filter(|m| *m != "ok").map(|m| {
                let what = match r.held_back() {
                    Some(secs) => format!(
                        "captured at once, acknowledged {secs} s later (the time above is the saving)"
                    ),
                    None if r.accepted() => "acknowledged".to_string(),
                    None => "captured, not acknowledged".to_string(),
                };
                format!("answer mode {m}: {what}")
            }),
            Tone::Warn,
        ),
        (
            (r.malformed > 0).then(|| {
                format!(
                    "{} malformed records (no @t/@ts, or a bad @ts)",
                    r.malformed
                )
            }),
            Tone::Warn,
        ),
        (
            (r.naive_timestamps > 0)
                .then(|| format!("{} naive timestamps (read as UTC)", r.naive_timestamps)),
            Tone::Dim,
        ),
        (
            r.warning.as_ref().map(|w| format!("warning: {w}")),
            Tone::Warn,
        ),
        (r.error.as_ref().map(|e| format!("error: {e}")), Tone::Error),
    ];
    out.extend(
        notes
            .into_iter()
            .filter_map(|(text, tone)| text.map(|s| vec![piece(tone, s)])),
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
    // Controls as `·`, the other invisible characters as `\u{..}` (as
    // `raw` writes them): a zero-width space read as nothing here.
    let printable = |bytes: &[u8]| -> String {
        let mut out = String::new();
        for c in String::from_utf8_lossy(bytes).chars() {
            visible(c, |v| out.push(v));
        }
        out
    };
    let before = printable(&body[start..offset]);
    let after = printable(&body[offset..end]);
    Some(vec![
        format!("  byte {offset}: {before}{after}"),
        format!(
            "  {}^",
            " ".repeat(format!("byte {offset}: ").len() + before.width())
        ),
    ])
}

/// True when the kept body is JSON (and so is pretty-printed), lone
/// surrogate escapes included, as the receiver reads them.
pub(super) fn is_json(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|text| {
        serde_json::from_str::<serde::de::IgnoredAny>(&crate::batch::readable(text)).is_ok()
    })
}

/// The body's title: its size, how it is shown, and exactly what is kept
/// where (captured batches, those an answer mode refused included, are in
/// the capture file; refused bodies never are, and only their first 64 KiB
/// are held here).
fn body_title(r: &RequestEvent, let_go: bool, pretty: bool) -> Vec<TextLine> {
    let title = |text: String| vec![piece(Tone::Title, text)];
    let note = |text: String| vec![piece(Tone::Dim, text)];
    // A batch an answer mode refused is in the capture all the same: its
    // body was said to be held for this view only and never saved.
    match (r.body.as_deref(), r.accepted() || r.captured) {
        (Some(body), true) => vec![
            title(format!(
                "Body ({}, {}) · s saves it to a file",
                bytes(body.len() as u64),
                shown_as(body, pretty)
            )),
            note("the batch as saved in the capture file".into()),
        ],
        (Some(body), false) => {
            let what = shown_as(body, pretty);
            let kept = body.len() as u64;
            let of = if kept < r.wire_bytes {
                format!("the first {} of {}", bytes(kept), bytes(r.wire_bytes))
            } else {
                format!("all {}", bytes(kept))
            };
            vec![
                title(format!(
                    "Body ({}, {what}) · s saves it to a file",
                    bytes(kept)
                )),
                note(format!(
                    "{of} as received, held in memory for this view only (up to {} of a refused body)",
                    bytes(REFUSED_BODY_HELD as u64)
                )),
                note("refused bodies are never saved to the capture file".into()),
            ]
        }
        (None, true) if let_go => vec![
            title("Body: let go from memory (oldest first past 64 MiB of bodies)".into()),
            note("the capture file has this batch".into()),
        ],
        (None, true) => vec![
            title("Body: not held by this view".into()),
            note(
                "not passed to the screen while 32 MiB of batches waited for it, or let go since"
                    .into(),
            ),
            note("the capture file has this batch".into()),
        ],
        (None, false) if let_go => vec![
            title("Body: let go from memory (past 64 MiB of bodies)".into()),
            note("refused bodies are never saved to the capture file".into()),
        ],
        (None, false) => vec![
            title("Body: none held".into()),
            note(
                "refused before its body was read or decoded (token, size, a cut-short body), \
                 or not passed to the screen while 32 MiB of batches waited for it"
                    .into(),
            ),
            note("refused bodies are never saved to the capture file".into()),
        ],
    }
}

/// True when `body` is a JSON array: a batch, shown one record a line.
fn is_batch(body: &[u8]) -> bool {
    opens_an_array(body) && is_json(body)
}

/// True when `body` starts as a JSON array does (not checked further).
fn opens_an_array(body: &[u8]) -> bool {
    body.trim_ascii_start().starts_with(b"[")
}

/// How a body is shown, for its title.
fn shown_as(body: &[u8], pretty: bool) -> &'static str {
    // Accepted bodies were validated by the listener and refused ones are
    // held to 64 KiB, so checking them stays cheap.
    match (is_batch(body), pretty, is_json(body)) {
        (true, false, _) => "one record a line · p pretty",
        (true, true, _) => "pretty · p one record a line",
        (false, _, true) => "pretty",
        (false, _, false) => "as received",
    }
}

/// The body's lines: a batch one record a line (or pretty with `pretty`),
/// other JSON pretty, anything else as received.
pub fn body_lines(r: &RequestEvent, pretty_batch: bool) -> Vec<String> {
    let Some(body) = r.body.as_deref() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(body);
    let json = is_json(body);
    // Invisible characters (bidi controls, zero-width ones) written as
    // JSON escapes, the same JSON: the drawing drops them, and this view
    // says it shows the body as received (`P0` U+200B `300` read `P0300`
    // here until December 6, a hostile-client probe; the panels escaped
    // it).
    let text = if json {
        crate::text::escape_invisible(text.into_owned()).into()
    } else {
        text
    };
    // JSON already: a batch if it opens an array (`is_batch` would check
    // the whole body again).
    if json && opens_an_array(body) && !pretty_batch {
        compact(&text, MAX_BODY_LINES)
    } else if json {
        pretty(&text, MAX_BODY_LINES)
    } else {
        raw(&text, MAX_BODY_LINES)
    }
}

/// A JSON array one element a line, without whitespace between tokens.
pub fn compact(json: &str, max_lines: usize) -> Vec<String> {
    let mut lines = vec!["[".to_string()];
    let mut line = Laid::default();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in json.chars() {
        if in_string {
            line.push(c);
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        match c {
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                line.push(',');
                lines.push(format!("  {}", line.next(0)));
                if lines.len() > max_lines {
                    lines.push(CUT.to_string());
                    return lines;
                }
                continue;
            }
            '"' => in_string = true,
            _ => {}
        }
        line.push(c);
    }
    if !line.text.is_empty() {
        lines.push(format!("  {}", line.text));
    }
    lines.push("]".to_string());
    lines
}

/// The lines of a non-JSON body, control characters made visible as `·`,
/// the other invisible ones written `\u{..}` (see `text::shown`).
fn raw(text: &str, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .take(max_lines + 1)
        .map(|l| {
            let mut line = Laid::default();
            for c in l.chars().take(LINE_CHARS + 1) {
                visible(c, |v| line.push(v));
            }
            line.text
        })
        .collect();
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        lines.push(CUT.to_string());
    }
    lines
}

/// `c` as text outside JSON shows it, given to `push`: a control as `·`,
/// another invisible character (see `text::is_invisible`) as `\u{..}`.
fn visible(c: char, mut push: impl FnMut(char)) {
    if c.is_control() {
        push('·');
    } else if crate::text::is_invisible(c) {
        format!("\\u{{{:x}}}", u32::from(c)).chars().for_each(push);
    } else {
        push(c);
    }
}

/// JSON text indented two spaces per level (up to `MAX_INDENT` levels),
/// keys in their original order, each line kept to `LINE_CHARS`.
pub fn pretty(json: &str, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = Laid::default();
    let (mut depth, mut in_string, mut escaped, mut just_opened) = (0usize, false, false, false);
    for c in json.chars() {
        if lines.len() >= max_lines {
            lines.push(CUT.to_string());
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
            lines.push(line.next(depth));
        }
        if closing {
            depth = depth.saturating_sub(1);
            if !just_opened {
                lines.push(line.next(depth));
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
                lines.push(line.next(depth));
            }
            ':' => line.push_str(": "),
            '"' => {
                line.push(c);
                in_string = true;
            }
            _ => line.push(c),
        }
    }
    if !line.text.trim().is_empty() {
        lines.push(line.text);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_read_back_from_the_capture_passed_the_token_check() {
        let at = crate::fixtures::at("2026-11-27T08:00:00Z");
        let body = r#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#;
        let mut e = crate::fixtures::accepted(1, at, Some("u"), body);
        e.token_matched = None;
        let said = |e: &RequestEvent| -> String {
            head(e, false, 200, false)
                .iter()
                .flat_map(|l| l.iter().map(|p| p.text.clone()))
                .collect()
        };
        assert!(said(&e).contains("not checked"), "{}", said(&e));
        e.id = crate::capture::load::LOADED_ID_BASE + 3;
        assert!(
            said(&e).contains("token: yes, or --no-auth"),
            "{}",
            said(&e)
        );
    }

    #[test]
    fn a_batch_an_answer_mode_refused_is_said_to_be_in_the_capture() {
        let at = crate::fixtures::at("2026-11-27T08:00:00Z");
        let body = r#"[{"@t":"a","@ts":"2026-11-27T08:00:00"}]"#;
        let batch = crate::fixtures::accepted(1, at, Some("u"), body);
        let refused = crate::fixtures::answered_by_mode(batch, "503", 503, None);
        let said: Vec<String> = body_title(&refused, false, false)
            .iter()
            .map(|l| l.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(
            said[1], "the batch as saved in the capture file",
            "{said:?}"
        );
        assert!(!said.iter().any(|l| l.contains("never saved")), "{said:?}");
    }

    #[test]
    fn invisible_characters_are_written_as_escapes() {
        let body = "[{\"@t\":\"obd.dtc\",\"code\":\"P0\u{200b}300\",\"s\":\"\u{202e}evil\"}]";
        let mut r =
            crate::fixtures::accepted(1, crate::fixtures::at("2026-11-27T08:00:00Z"), None, body);
        r.body = Some(body.as_bytes().to_vec().into());
        for pretty in [false, true] {
            let lines = body_lines(&r, pretty).join("\n");
            assert!(lines.contains(r#"P0\u200b300"#), "{lines}");
            assert!(lines.contains(r#"\u202eevil"#), "{lines}");
            assert!(!lines.contains(['\u{200b}', '\u{202e}']), "{lines}");
        }
        let text = "not json \u{202e}evil\u{1b}";
        r.body = Some(text.as_bytes().to_vec().into());
        assert_eq!(body_lines(&r, false), [r"not json \u{202e}evil·"]);
    }

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
    fn long_lines_wrap_with_an_indent() {
        let line = vec![
            piece(Tone::Label, "error: "),
            piece(Tone::Error, "abcdefghij"),
        ];
        let lines = wrap_line(line, 8);
        let texts: Vec<String> = lines
            .iter()
            .map(|l| l.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(texts, ["error: a", "  bcdefg", "  hij"]);
        assert_eq!(lines[1][1].tone, Tone::Error);
        // A break at a space carries none over: every continuation is
        // indented alike.
        let line = vec![piece(Tone::Value, "one two three four")];
        let texts: Vec<String> = wrap_line(line, 8)
            .iter()
            .map(|l| l.iter().map(|p| p.text.as_str()).collect())
            .collect();
        assert_eq!(texts, ["one two ", "  three ", "  four"]);
    }

    #[test]
    fn compact_puts_one_record_on_each_line() {
        let lines = compact("[ {\"a\": 1, \"b\": [1, 2]},\n {\"c\": \"x, ]\"} ]", 100);
        assert_eq!(
            lines,
            ["[", "  {\"a\":1,\"b\":[1,2]},", "  {\"c\":\"x, ]\"}", "]"]
        );
    }

    #[test]
    fn pretty_stops_at_the_line_limit() {
        let lines = pretty("[1,2,3,4,5,6]", 3);
        assert_eq!(lines.last().map(String::as_str), Some(CUT));
        assert_eq!(lines.len(), 4);
        let lines = compact("[1,2,3,4,5,6]", 3);
        assert_eq!(lines.last().map(String::as_str), Some(CUT), "{lines:?}");
        assert_eq!(raw("a\nb\nc\nd", 3), ["a", "b", "c", CUT]);
        assert_eq!(raw("a\nb\nc", 3), ["a", "b", "c"]);
    }

    #[test]
    fn broke_at_points_at_the_byte() {
        let config = crate::receiver::ingest::Config {
            auth: crate::receiver::ingest::Auth::Open,
            max_body: 1024,
        };
        let at = crate::fixtures::at("2026-11-27T08:00:00Z");
        // `body` refused as the receiver refuses it.
        let refused = |id: u64, body: &str| {
            let error = crate::receiver::ingest::decode(&config, None, body.as_bytes())
                .unwrap_err()
                .error;
            crate::fixtures::refused(id, at, 400, &error, body)
        };
        // The character above the caret, counted in terminal columns.
        let under_caret = |spot: &[String]| {
            let caret = spot[1].find('^').unwrap();
            let mut cols = 0;
            spot[0].chars().find(|&c| {
                let here = cols == caret;
                cols += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
                here
            })
        };
        let mut r = refused(1, r#"[{"a":1} {"b":2}]"#);
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

        // Wide and combining characters before the spot: the caret counts
        // terminal columns, not characters.
        let spot = broke_at(&refused(2, "[{\"note\":\"燃料燃料 e\u{301}\"} {\"b\":2}]")).unwrap();
        assert_eq!(under_caret(&spot), Some('{'), "{spot:?}");

        // An invisible character before the spot is written out, and
        // the caret still under it; a line end is a `·`.
        let spot = broke_at(&refused(3, "[{\"code\":\"P0\u{200b}300\"}\n{\"b\":2}]")).unwrap();
        assert!(spot[0].contains(r#"P0\u{200b}300"}·{"#), "{spot:?}");
        assert_eq!(under_caret(&spot), Some('{'), "{spot:?}");
    }

    #[test]
    fn lines_stay_short_however_deep_or_long_the_body() {
        let deep = format!("{}1{}", "[".repeat(25_000), "]".repeat(25_000));
        let lines = pretty(&deep, MAX_BODY_LINES);
        assert_eq!(
            lines.len(),
            MAX_BODY_LINES + 1,
            "the line limit still holds"
        );
        let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
        assert_eq!(
            widest,
            2 * MAX_INDENT + 1,
            "indentation stops at MAX_INDENT"
        );

        let long = format!(r#"[{{"s":"{}"}},{{"a":1}}]"#, "x".repeat(1_000_000));
        for lines in [pretty(&long, 100), compact(&long, 100), raw(&long, 100)] {
            let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
            assert!(widest <= LINE_CHARS + 3, "{widest}");
            assert!(lines.iter().any(|l| l.ends_with('…')));
        }
        let kept = compact(&long, 100);
        assert_eq!(kept[2], r#"  {"a":1}"#, "the next record is whole");
    }
}

//! Text from the network shown to a person: which characters a terminal
//! would obey rather than show, and how JSON output keeps them harmless.

/// Whether a terminal would obey `c` rather than show it: control
/// characters, bidi embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, marks U+200E/U+200F/U+061C), zero-width and other
/// format characters, line and paragraph separators. None of them is ever
/// drawn.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// `json` (serialized JSON) with every invisible character (see
/// `is_invisible`) written as a `\uXXXX` escape: the same JSON value, but a
/// terminal showing the line shows the escape instead of obeying it.
/// Outside strings JSON is ASCII, so only string contents change.
/// serde_json escapes the controls below U+0020 already, DEL (U+007F) not:
/// it is escaped here with the rest (it reached terminals raw until
/// December 5, found by a probe).
pub fn escape_invisible(json: String) -> String {
    match json_escaped(&json) {
        std::borrow::Cow::Borrowed(_) => json,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// `text` (JSON, or a piece of it cut between characters) with every
/// invisible character from DEL up written as a `\uXXXX` escape; borrowed
/// when there is none.
fn json_escaped(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    // Copied up to `from`; looked at up to `next` (ASCII below DEL is
    // passed over at a byte's cost: nearly all of what JSON holds).
    let (mut from, mut next) = (0, 0);
    while let Some(skip) = bytes[next..].iter().position(|&b| b >= 0x7f) {
        let at = next + skip;
        // A character's first byte: every one before it was passed over
        // whole.
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        next = at + c.len_utf8();
        if is_invisible(c) {
            use std::fmt::Write as _;
            if out.is_empty() {
                out.reserve(text.len() + 16);
            }
            out.push_str(&text[from..at]);
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{unit:04x}");
            }
            from = next;
        }
    }
    if from == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// `s`'s characters for one line of plain text: each invisible one (see
/// `is_invisible`: controls, line ends, bidi controls) a space.
pub fn on_one_line(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().map(|c| if is_invisible(c) { ' ' } else { c })
}

/// A writer of JSON text that writes every invisible character (see
/// `is_invisible`; DEL and above, serde_json escaping the rest) as a
/// `\uXXXX` escape on its way to `inner`, as `escape_invisible` does for
/// a whole line (the same `json_escaped`): the same JSON values, shown rather than obeyed where the
/// text reaches a terminal. A character split between two writes is held
/// until its last byte comes. What it is given must be UTF-8, as JSON is.
pub struct JsonEscaper<W: std::io::Write> {
    inner: W,
    /// The first bytes of a character whose last ones are still to come.
    held: Vec<u8>,
}

impl<W: std::io::Write> JsonEscaper<W> {
    pub fn new(inner: W) -> Self {
        JsonEscaper {
            inner,
            held: Vec::new(),
        }
    }
}

impl<W: std::io::Write> std::io::Write for JsonEscaper<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let joined;
        let bytes = if self.held.is_empty() {
            buf
        } else {
            joined = [std::mem::take(&mut self.held).as_slice(), buf].concat();
            &joined[..]
        };
        let whole = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            // Cut inside a character: the rest of it comes with the next
            // write.
            Err(e) if e.error_len().is_none() => {
                let (text, rest) = bytes.split_at(e.valid_up_to());
                self.held = rest.to_vec();
                // Checked by `from_utf8` up to here.
                std::str::from_utf8(text).unwrap_or_default()
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("JSON output is not UTF-8: {e}"),
                ));
            }
        };
        self.inner.write_all(json_escaped(whole).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.held.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "JSON output ends inside a character",
            ));
        }
        self.inner.flush()
    }
}

/// `s` for plain text on a terminal: every invisible character (see
/// `is_invisible`: escapes, bidi controls, line ends) written as `\u{..}`,
/// so that a device's `unit-id` or `@t` is shown, never obeyed.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    escaped(s, is_invisible)
}

/// Longest name from the network (an `@t`, a `unit-id`, a tag) a line of
/// text shows: the dashboard keeps names so, `view --summary` writes them
/// so.
pub const NAME_CHARS: usize = 200;

/// `shown`, cut to `max` characters with `…` where cut: a name from the
/// network (an `@t`, a `unit-id`) as a line of text shows it.
pub fn shown_cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    // Most names (`obd.rpm`, a hex unit-id): nothing to escape or cut,
    // told without walking the characters twice. The dashboard asks for
    // every record's type.
    if s.len() <= max && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    match shown(s) {
        std::borrow::Cow::Borrowed(s) => cut(s, max),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(match cut(&s, max) {
            std::borrow::Cow::Borrowed(_) => s,
            std::borrow::Cow::Owned(cut) => cut,
        }),
    }
}

/// `s` cut to `max` characters, its last one `…` where cut; a cut one is
/// a new string of its own length (`truncate` keeps the capacity: a
/// 100 000-character tag cut to 200 held its 100 000 bytes).
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(s),
        Some((at, _)) => {
            let mut cut = s[..at].to_owned();
            cut.pop();
            cut.push('…');
            std::borrow::Cow::Owned(cut)
        }
    }
}

/// A file name for a message on a terminal: as `Path::display` writes it,
/// with every invisible character written as `\u{..}` (see `shown`). A
/// name given on the command line (or made from one) can hold an escape
/// sequence as well as any text from the network can.
pub fn path(path: &(impl AsRef<std::path::Path> + ?Sized)) -> ShownPath<'_> {
    ShownPath(path.as_ref())
}

/// A path written for a terminal: see `path`.
pub struct ShownPath<'a>(&'a std::path::Path);

impl std::fmt::Display for ShownPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&shown(&self.0.to_string_lossy()))
    }
}

/// `s` for a name in XML 1.0: the characters it cannot hold (controls
/// other than tab and line ends, U+FFFE and U+FFFF) and those a terminal
/// showing the file would obey (DEL, C1 and bidi controls: see
/// `is_invisible`) written as `\u{..}`, as `shown` writes a name.
pub fn xml_text(s: &str) -> std::borrow::Cow<'_, str> {
    escaped(s, |c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
            || (c >= '\u{7f}' && is_invisible(c))
            || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
}

/// `s` with each character `unfit` holds for written as `\u{..}`, and
/// each backslash of a run just before one, or before `u{` sent as text,
/// written as `\\`, so that an escape written here is never mistaken for
/// text sent: the printable `ctl\u{1b}` is written `ctl\\u{1b}`, where an
/// ESC is written `ctl\u{1b}`. An odd run before `u{` ends in an escape.
/// Any other backslash is written as it is (a Windows path reads as sent).
fn escaped(s: &str, unfit: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(&unfit) && !s.contains("\\u{") {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    // Backslashes waiting to be written: doubled if `u{` follows them.
    let mut run = 0;
    for (at, c) in s.char_indices() {
        if c == '\\' {
            run += 1;
            continue;
        }
        // Before an escape written here, or text that reads as one.
        let doubled = if unfit(c) || s[at..].starts_with("u{") {
            2
        } else {
            1
        };
        out.extend(std::iter::repeat_n('\\', run * doubled));
        run = 0;
        if unfit(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.extend(std::iter::repeat_n('\\', run));
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_for_a_terminal_or_xml_shows_what_would_be_obeyed() {
        assert!(matches!(shown("ee3d…1d05"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            shown("dev\u{1b}]0;PWNED\u{7}\u{1b}[2J\u{202e}x\n"),
            "dev\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\\u{202e}x\\u{a}"
        );
        assert_eq!(xml_text("a\tb\u{1b}c\u{ffff}é"), "a\tb\\u{1b}c\\u{ffff}é");
        assert_eq!(
            xml_text("u\u{7f}\u{9b}\u{202e}1"),
            "u\\u{7f}\\u{9b}\\u{202e}1"
        );
    }

    /// What `shown` wrote, read back by its rule: an odd run of
    /// backslashes before `u{` ends in an escape, and the run's pairs
    /// (or a run before anything else) are backslashes sent.
    fn read_back(shown: &str) -> String {
        let mut out = String::new();
        let mut rest = shown;
        while let Some(c) = rest.chars().next() {
            if c != '\\' {
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let run = rest.len() - rest.trim_start_matches('\\').len();
            rest = &rest[run..];
            if !rest.starts_with("u{") {
                out.extend(std::iter::repeat_n('\\', run));
                continue;
            }
            out.extend(std::iter::repeat_n('\\', run / 2));
            if run % 2 == 1 {
                let end = rest.find('}').expect("an escape ends");
                let value = u32::from_str_radix(&rest[2..end], 16).expect("hex");
                out.push(char::from_u32(value).expect("a character"));
                rest = &rest[end + 1..];
            }
        }
        out
    }

    #[test]
    fn a_backslash_sent_never_reads_as_an_escape_written() {
        assert_eq!(shown("ctl\\u{1b}"), "ctl\\\\u{1b}");
        assert_eq!(shown("ctl\u{1b}"), "ctl\\u{1b}");
        assert_eq!(shown("ctl\\\u{1b}"), "ctl\\\\\\u{1b}");
        assert_eq!(
            shown("C:\\dev\\u1"),
            "C:\\dev\\u1",
            "other backslashes stay"
        );
        assert!(matches!(shown("C:\\dev"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(shown_cut("a\\u{41}", 200), "a\\\\u{41}");
        // Every text of up to six of these characters is written so that
        // it reads back as sent.
        let alphabet = ['\\', 'u', '{', '1', 'b', '}', '\u{1b}'];
        let mut texts = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.chars().count() == texts.last().unwrap().chars().count())
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(longer);
        }
        assert!(texts.len() > 100_000, "{}", texts.len());
        for text in &texts {
            let written = shown(text);
            assert!(!written.chars().any(is_invisible), "{written:?}");
            assert_eq!(&read_back(&written), text, "{text:?} written {written:?}");
            assert_eq!(&read_back(&xml_text(text)), text, "{text:?}");
        }
    }

    #[test]
    fn invisible_characters_become_escapes_of_the_same_value() {
        let value = serde_json::json!({"error": "bad \u{202E}gnp.exe \u{2066}x\u{2069} \u{E0041} \u{7f}\u{9b} é"});
        let line = escape_invisible(serde_json::to_string(&value).unwrap());
        assert!(!line.chars().any(is_invisible), "{line}");
        assert!(
            line.contains("\\u202e") && line.contains("\\udb40\\udc41") && line.contains("\\u007f"),
            "{line}"
        );
        assert!(line.contains('é'), "visible text is left as it is: {line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }

    /// The writer escapes as `escape_invisible` does, however its input is
    /// cut into writes, characters cut in two included.
    #[test]
    fn the_escaping_writer_gives_the_same_line_in_pieces() {
        use std::io::Write;
        let value = serde_json::json!({"a\u{9b}": "x\u{202E}y \u{E0041}\u{7f} é 燃料 \u{1b}"});
        let text = serde_json::to_string(&value).unwrap();
        let whole = escape_invisible(text.clone());
        for size in 1..=7 {
            let mut w = JsonEscaper::new(Vec::new());
            for piece in text.as_bytes().chunks(size) {
                assert_eq!(w.write(piece).unwrap(), piece.len());
            }
            w.flush().unwrap();
            assert_eq!(
                String::from_utf8(w.inner).unwrap(),
                whole,
                "pieces of {size}"
            );
        }
        // Output that ends inside a character, or is not UTF-8, is an error.
        let mut w = JsonEscaper::new(Vec::new());
        w.write_all(&"é".as_bytes()[..1]).unwrap();
        assert!(w.flush().is_err());
        assert!(JsonEscaper::new(Vec::new()).write(b"\xff\xfe").is_err());
    }
}

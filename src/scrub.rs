//! Taking a credential of ours out of what a server said back: a receiver
//! `replay` or `simulate` posts to, or an upstream the receiver forwards to,
//! may quote the request's headers in its answer (a debugging echo, a
//! proxy's error page), in any spelling its software writes. What it said
//! is shown (a refusal's reason, a target's state on the status page, a
//! parked batch's reason), so the credential is found in every spelling
//! that is a plain decoding away and taken out; one that cannot be taken
//! out alone (split across lines) has the whole text withheld.

use base64::Engine as _;

/// Rounds of decoding tried (percent-encoding of percent-encoding, JSON
/// escapes inside percent-encoding, and so on).
const DECODINGS: usize = 4;

/// `text` with `secret` taken out, written as `label`. Found:
/// - as it is, and as a JSON writer quoting it spells it (`"` and `\`
///   escaped; `/` as `\/`, PHP's default; `&`, `<`, `>` as `\u0026`…,
///   Go's): replaced in place;
/// - after percent-decoding, JSON escapes (`\u002F`, .NET's default for
///   `+`) and HTML character references, in any mix and up to four deep:
///   the decoded text is then what is shown, with the secret replaced (as
///   the receiver shows a request's decoded path);
/// - inside base64 (standard or URL-safe, any alignment: `token T` and
///   `Basic`-like echoes): the base64 run is replaced;
/// - split by whitespace or invisible characters (a line folded in the
///   middle of it): the whole text is withheld, saying why.
pub fn taken_out(text: String, secret: Option<&str>, label: &str) -> String {
    let Some(secret) = secret.filter(|c| !c.is_empty()) else {
        return text;
    };
    let spellings = spellings(secret);
    let replaced = |text: String| {
        spellings
            .iter()
            .fold(text, |text, spelling| text.replace(spelling, label))
    };
    let mut text = replaced(text);
    let mut probe = text.clone();
    for _ in 0..DECODINGS {
        let next = decoded_once(&probe);
        if next == probe {
            break;
        }
        probe = next;
        if spellings.iter().any(|s| probe.contains(s.as_str())) {
            text = replaced(probe);
            probe = text.clone();
        }
    }
    let text = without_base64_of(text, secret, label);
    let compact: String = text
        .chars()
        .filter(|&c| !c.is_whitespace() && !crate::text::is_invisible(c))
        .collect();
    if compact.contains(secret) {
        return format!(
            "(not shown: it quotes {label} split across lines or by invisible characters)"
        );
    }
    text
}

/// The secret as sent and as JSON writers quote it.
fn spellings(secret: &str) -> Vec<String> {
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let json = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(secret)
        .to_string();
    let html = |s: &str| {
        s.replace('&', "\\u0026")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
    };
    let slashed = json.replace('/', "\\/");
    let mut all = vec![
        secret.to_string(),
        html(&slashed),
        html(&json),
        slashed,
        json,
    ];
    all.dedup();
    all
}

/// One round of the decodings an echo may have gone through: percent-
/// encoding, JSON string escapes, HTML character references.
fn decoded_once(text: &str) -> String {
    let text = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    let text = json_unescaped(&text);
    html_escape::decode_html_entities(&text).into_owned()
}

/// `text` with JSON's backslash escapes read (`\uXXXX`, surrogate pairs
/// joined and a lone one as U+FFFD, `\/`, `\\`, `\"`, `\n`…); a backslash
/// that starts none is left as it is.
fn json_unescaped(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let unit = |s: &str| {
            s.strip_prefix("\\u")
                .and_then(|h| h.get(..4))
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u16::from_str_radix(h, 16).ok())
        };
        if let Some(first) = unit(rest) {
            let second = unit(&rest[6..]).filter(|_| (0xD800..0xDC00).contains(&first));
            let units: &[u16] = match second {
                Some(ref s) if (0xDC00..0xE000).contains(s) => &[first, *s],
                _ => &[first],
            };
            let taken = 6 * units.len();
            out.extend(char::decode_utf16(units.iter().copied()).map(|c| c.unwrap_or('\u{FFFD}')));
            rest = &rest[taken..];
            continue;
        }
        let simple = match rest.as_bytes().get(1) {
            Some(b'/') => Some('/'),
            Some(b'\\') => Some('\\'),
            Some(b'"') => Some('"'),
            Some(b'n') => Some('\n'),
            Some(b't') => Some('\t'),
            Some(b'r') => Some('\r'),
            Some(b'b') => Some('\u{8}'),
            Some(b'f') => Some('\u{c}'),
            _ => None,
        };
        match simple {
            Some(c) => {
                out.push(c);
                rest = &rest[2..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with each run of base64 characters whose decoding holds `secret`
/// (at any of the four places a run may be cut into groups, in either
/// alphabet) replaced by `label`.
fn without_base64_of(text: String, secret: &str, label: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_');
    // Base64 of the secret alone is a third longer than it.
    let shortest = secret.len() * 4 / 3;
    let mut runs = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (start, is_b64(c)) {
            (None, true) => start = Some(at),
            (Some(from), false) => {
                if at - from >= shortest {
                    runs.push(from..at);
                }
                start = None;
            }
            _ => {}
        }
    }
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // A run cut at any place ends in bits that belong to no whole byte.
    let lenient = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engines = [
        GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
    ];
    let holds = |run: &str| {
        (0..4).any(|skip| {
            let Some(part) = run.get(skip..) else {
                return false;
            };
            // Whole groups only, and a tail of two or three characters.
            let usable = match part.len() % 4 {
                1 => part.len() - 1,
                _ => part.len(),
            };
            engines.iter().any(|engine| {
                engine
                    .decode(&part[..usable])
                    .is_ok_and(|bytes| contains(&bytes, secret.as_bytes()))
            })
        })
    };
    let mut out = text.clone();
    for run in runs.into_iter().rev() {
        if holds(&text[run.clone()]) {
            // Its padding goes with it.
            let padding = text[run.end..].bytes().take_while(|&b| b == b'=').count();
            out.replace_range(run.start..run.end + padding, label);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const SECRET: &str = "Fw0rdT0ken/Secret+xyz9876";

    fn out(text: &str) -> String {
        taken_out(text.to_string(), Some(SECRET), "[forward token]")
    }

    /// Every spelling a probe's upstream echoed the token in: none is
    /// shown, and the text around it is.
    #[test]
    fn a_secret_is_taken_out_in_every_spelling_an_echo_gave() {
        let double = "a=Fw0rdT0ken%2FSecret%2Bxyz9876 b=Fw0rdT0ken%252FSecret%252Bxyz9876";
        let cases = [
            format!("token {SECRET}"),
            r#"{"headers":{"Authorization":"token Fw0rdT0ken/Secret\u002Bxyz9876"}}"#.into(),
            r"plain Fw0rdT0ken\u002FSecret+xyz9876 text".into(),
            SECRET
                .encode_utf16()
                .map(|u| format!("\\u{u:04x}"))
                .collect::<String>(),
            double.into(),
            "Fw0rdT0ken&#x2F;Secret&#43;xyz9876".into(),
            "%5Cu0046w0rdT0ken%2FSecret%2Bxyz9876".into(),
            format!("echo: {}", STANDARD.encode(format!("token {SECRET}"))),
            format!("echo: {}", STANDARD.encode(SECRET)),
            format!("echo: {}=", STANDARD.encode(format!("{SECRET}!"))),
            format!("echo: {}.", URL_SAFE_NO_PAD.encode(format!("ab{SECRET}"))),
            format!(
                "Authorization: Basic {}",
                STANDARD.encode(format!("u:{SECRET}"))
            ),
        ];
        for case in &cases {
            let shown = out(case);
            assert!(shown.contains("[forward token]"), "{case}: {shown}");
            for piece in ["Fw0rdT0ken", "xyz9876", "Rnc"] {
                assert!(!shown.contains(piece), "{case}: {shown}");
            }
            assert!(!decoded_fully(&shown).contains(SECRET), "{case}: {shown}");
        }
        assert_eq!(out(&format!("x {SECRET} y")), "x [forward token] y");
        let padded = format!("b64 {} end", STANDARD.encode(format!("token {SECRET}")));
        assert_eq!(out(&padded), "b64 [forward token] end");
        // Split across lines: withheld.
        let folded = "Authorization: token Fw0rdT0ken\r\n /Secret+xyz9876";
        let shown = out(folded);
        assert!(shown.starts_with("(not shown"), "{shown}");
        assert!(!shown.contains("Fw0rd"), "{shown}");
        // Text without it is left as it is, escapes and all.
        for plain in [r"a \u002F b %2F c &amp; QUJD", "Cannot POST /hooks/x"] {
            assert_eq!(out(plain), plain);
        }
    }

    fn decoded_fully(text: &str) -> String {
        (0..DECODINGS).fold(text.to_string(), |t, _| decoded_once(&t))
    }

    #[test]
    fn json_escapes_are_read_as_json_reads_them() {
        for s in ["a/b", "é \u{1F600} \"q\" \\ \n\t", "\u{1b}[2J"] {
            let written = serde_json::to_string(s).unwrap();
            let inner = &written[1..written.len() - 1];
            assert_eq!(json_unescaped(inner), s);
        }
        assert_eq!(
            json_unescaped(r"\ud83d\ude00 \ud800x \q \u12"),
            "😀 \u{FFFD}x \\q \\u12"
        );
    }
}

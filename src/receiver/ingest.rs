//! Pure decisions about one upload: authentication, content decoding, size
//! limits and JSON validation. Nothing here touches a socket or a file, so
//! every row of the answer table is testable as a plain function call.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::read::MultiGzDecoder;
use subtle::ConstantTimeEq;

use crate::batch::{Batch, Counts, Encoding, scan};
use crate::receiver::turns::{Budget, LARGE_BODY, Share, Turn, Turns};

/// Longest JSON error text passed on (the position is always kept).
const MAX_ERROR_CHARS: usize = 300;

/// Default for `--max-body`: 32 MiB, far above the ~100 kB of a full batch.
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;

/// Who may upload.
#[derive(Clone)]
pub enum Auth {
    /// Accept every request (`--no-auth`).
    Open,
    /// Accept requests whose token hashes to one of these digests. Only
    /// digests are kept, so comparisons take the same time whatever the
    /// lengths and the token itself is never stored twice. Beside them,
    /// the same tokens by length, for the scrub.
    Tokens(Vec<Known>, Arc<Scan>),
}

/// How the scrub finds the configured tokens in text in one pass, without
/// keeping them: each window as long as the shortest token is looked up by
/// its rolling hash among the tokens' first bytes, and only where one
/// starts so is the window of each length starting so looked up among
/// the tokens of that length. Each window was compared with every token,
/// one pass per length: a request with 60 KB of headers cost 550 ms of CPU
/// against 200 tokens of as many lengths, 20 ms against 1 000 of one (a
/// hostile-client probe, December 7).
pub struct Scan {
    /// The shortest token's length (0: none).
    least: usize,
    /// `base()` to the power `least - 1`: what the byte leaving a window
    /// of that length weighs.
    top: u64,
    /// By the rolling hash of a token's first `least` bytes: the lengths
    /// (in `lengths`) of the tokens starting so.
    by_start: HashMap<u64, Vec<usize>>,
    lengths: Vec<Length>,
}

/// Percent-decodings looked through for a token, one inside another, in
/// all.
const PERCENT_DEPTH: usize = 4;
/// The most characters of a text a token's byte takes in the spellings
/// looked for (`%25252541`, `A` percent-encoded four times over, is 9; in
/// base64, a third more): how far past a cut `Auth::cut` looks.
const SPELT: usize = 12;
/// Tokens shorter than this are looked for only as sent: in base64 or in
/// a decoding a short one stands in too much ordinary text (a 1-byte
/// token in the base64 reading of about a third of 32-digit hex unit ids,
/// which would then be kept as `[token]`).
const ENCODED_LEAST: usize = 8;

/// Shorter than this, a token is easy to guess, and the scrub that keeps
/// it out of every output hides ordinary text as well.
pub const SHORT_TOKEN: usize = 16;

/// A configured token as it is kept: its digest, for the check and to
/// confirm a find, and its length; `Scan` holds rolling hashes of it, to
/// find it in text without keeping the token itself.
#[derive(Clone)]
pub struct Known {
    digest: [u8; 32],
    len: usize,
}

/// The configured tokens of one length: their digests by rolling hash.
struct Length {
    len: usize,
    /// `base()` to the power `len`.
    power: u64,
    by_rolled: HashMap<u64, Vec<[u8; 32]>>,
}

impl Auth {
    /// Builds the token set from the configured tokens.
    pub fn tokens<S: AsRef<str>>(tokens: &[S]) -> Auth {
        let known: Vec<Known> = tokens
            .iter()
            .map(|t| {
                let t = t.as_ref().as_bytes();
                Known {
                    digest: digest(t),
                    len: t.len(),
                }
            })
            .collect();
        let least = tokens
            .iter()
            .map(|t| t.as_ref().len())
            .filter(|&len| len > 0)
            .min()
            .unwrap_or(0);
        let mut scan = Scan {
            least,
            top: power(least.saturating_sub(1)),
            by_start: HashMap::new(),
            lengths: Vec::new(),
        };
        for t in tokens.iter().map(|t| t.as_ref().as_bytes()) {
            if t.is_empty() {
                continue;
            }
            let at = match scan.lengths.iter().position(|l| l.len == t.len()) {
                Some(at) => at,
                None => {
                    scan.lengths.push(Length {
                        len: t.len(),
                        power: power(t.len()),
                        by_rolled: HashMap::new(),
                    });
                    scan.lengths.len() - 1
                }
            };
            let by_rolled = &mut scan.lengths[at].by_rolled;
            by_rolled.entry(rolled(t)).or_default().push(digest(t));
            let starts = scan.by_start.entry(rolled(&t[..least])).or_default();
            if !starts.contains(&at) {
                starts.push(at);
            }
        }
        Auth::Tokens(known, Arc::new(scan))
    }

    /// How many tokens are configured (0 for `--no-auth`).
    pub fn token_count(&self) -> usize {
        match self {
            Auth::Open => 0,
            Auth::Tokens(t, _) => t.len(),
        }
    }

    /// How many of them are shorter than `SHORT_TOKEN` (warned of at
    /// start, and in the dashboard's header).
    pub fn short_count(&self) -> usize {
        match self {
            Auth::Open => 0,
            Auth::Tokens(t, _) => t.iter().filter(|k| k.len < SHORT_TOKEN).count(),
        }
    }

    /// True when the presented credential matches a configured token,
    /// compared in constant time against every one of them.
    pub fn matches(&self, credential: &str) -> bool {
        match self {
            Auth::Open => true,
            Auth::Tokens(known, _) => {
                let presented = digest(credential.as_bytes());
                let mut hit = subtle::Choice::from(0);
                for k in known {
                    hit |= k.digest.ct_eq(&presented);
                }
                hit.into()
            }
        }
    }

    /// The longest configured token, in bytes (0 for none).
    pub fn longest(&self) -> usize {
        match self {
            Auth::Open => 0,
            Auth::Tokens(known, _) => known.iter().map(|k| k.len).max().unwrap_or(0),
        }
    }

    /// `text` with every configured token in it replaced by `[token]`:
    /// for what a client sent that is shown or kept beside its batch (the
    /// path, header values), where a token sent in the wrong place (a
    /// query string, another header) would otherwise be printed. Each
    /// window of a token's length is compared by its rolling hash (keyed
    /// per process), and a hit confirmed by the digest, so the token is
    /// found without being kept; about 8 ns a byte here (release build, a
    /// 32-byte token over a 1 KiB path) for the token as sent.
    ///
    /// A token spelt otherwise is found too (`unwrapped`): percent-encoded,
    /// or inside base64 (`Basic`-like credentials in another header), at
    /// several times that cost for text that looks encoded.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let text = self.unwrapped(text);
        let found = self.found(&text);
        if found.is_empty() {
            return text;
        }
        Cow::Owned(replaced(&text, &found, text.len()))
    }

    /// `text` as it is shown when a token is spelt in it otherwise than
    /// as it is: each run of base64 whose decoding holds one (`Basic`
    /// credentials, a key packed with a user name; tokens of
    /// `ENCODED_LEAST` bytes or more) replaced by `[token]` whole; and
    /// percent-decoded, up to `PERCENT_DEPTH` times over
    /// (`%252B` is `+` encoded twice), when a decoding holds one, plainly
    /// or in base64 (what is shown is then that decoding, as a browser
    /// shows a URL). A token found as it is before a decoding is replaced
    /// first, so that only what the decoding reveals leads to it.
    fn unwrapped<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let least = match self {
            Auth::Tokens(known, _) if !known.is_empty() => known
                .iter()
                .map(|k| k.len)
                .filter(|&len| len >= ENCODED_LEAST)
                .min(),
            _ => return Cow::Borrowed(text),
        };
        let mut text = self.without_base64(Cow::Borrowed(text), least);
        let mut depth = 0;
        while depth < PERCENT_DEPTH {
            let plain = self.found(&text);
            let labelled = match plain.is_empty() {
                true => Cow::Borrowed(&*text),
                false => Cow::Owned(replaced(&text, &plain, text.len())),
            };
            match self.decoding_holding(&labelled, least, PERCENT_DEPTH - depth) {
                Some((decoded, levels)) => {
                    depth += levels;
                    text = self.without_base64(Cow::Owned(decoded), least);
                }
                None => break,
            }
        }
        text
    }

    /// The first of `text`'s percent-decodings, one inside another and at
    /// most `levels` deep, that holds a token as it is or in base64, and
    /// how deep it is.
    fn decoding_holding(
        &self,
        text: &str,
        least: Option<usize>,
        levels: usize,
    ) -> Option<(String, usize)> {
        let mut text = Cow::Borrowed(text);
        for level in 1..=levels {
            if !text.contains('%') {
                return None;
            }
            let decoded = percent_encoding::percent_decode_str(&text)
                .decode_utf8_lossy()
                .into_owned();
            if decoded == *text {
                return None;
            }
            let holds =
                !self.found(&decoded).is_empty() || !self.base64_runs(&decoded, least).is_empty();
            if holds {
                return Some((decoded, level));
            }
            text = Cow::Owned(decoded);
        }
        None
    }

    /// `text` with each run of base64 holding a token replaced whole.
    fn without_base64<'a>(&self, text: Cow<'a, str>, least: Option<usize>) -> Cow<'a, str> {
        let runs = self.base64_runs(&text, least);
        if runs.is_empty() {
            return text;
        }
        let mut out = text.into_owned();
        for run in runs.into_iter().rev() {
            out.replace_range(run, "[token]");
        }
        Cow::Owned(out)
    }

    /// The runs of base64 in `text` whose decoding holds a token.
    /// Only tokens of `ENCODED_LEAST` bytes or more, the shortest `least`
    /// (none: nothing looked for).
    fn base64_runs(&self, text: &str, least: Option<usize>) -> Vec<std::ops::Range<usize>> {
        let Some(least) = least else {
            return Vec::new();
        };
        crate::scrub::base64_holding(text, least, |bytes| {
            !self.found_in(bytes, ENCODED_LEAST).is_empty()
        })
    }

    /// `text` scrubbed and cut to at most `max` characters, `…` marking a
    /// cut. Scrubbed past the cut by a token's length first, so a token
    /// across the cut is replaced whole, not shown in part (`[token]` is
    /// shorter than a token: scrubbed and then cut, a token just past the
    /// cut slid into view).
    pub fn shown(&self, text: &str, max: usize) -> String {
        let (mut out, more) = self.cut(text, max);
        if more {
            out.push('…');
        }
        out
    }

    /// `shown` without the mark: a value quoted in an error.
    pub fn clipped(&self, text: &str, max: usize) -> String {
        self.cut(text, max).0
    }

    /// `text` scrubbed and cut to at most `max` characters, and whether
    /// anything was cut. Only the beginning of a long text is looked at
    /// (enough to spell `max` characters and a token after them, `SPELT`
    /// characters a byte), so a long value costs no more than a short one.
    fn cut(&self, text: &str, max: usize) -> (String, bool) {
        let at_char =
            |text: &str, n: usize| text.char_indices().nth(n).map_or(text.len(), |(at, _)| at);
        let reach = at_char(text, SPELT * (max + self.longest()) + 16);
        let text_cut = reach < text.len();
        let text = self.unwrapped(&text[..reach]);
        // A spelling of a token across `reach` was decoded in part: it ends
        // what was decoded, within a token's length (its base64 a third
        // more) and a few characters of escapes cut in the middle. Those
        // last characters are never shown.
        let unseen = 2 * self.longest() + 16;
        let end = match text_cut {
            true => text
                .char_indices()
                .rev()
                .nth(unseen - 1)
                .map_or(0, |(at, _)| at),
            false => text.len(),
        };
        let (cut, near) = (
            at_char(&text, max).min(end),
            at_char(&text, max + self.longest()),
        );
        // A token that begins before the cut ends within `near`: found
        // whole, and replaced whole; what follows the cut is not shown.
        let out = replaced(&text, &self.found(&text[..near]), cut);
        (out, text_cut || cut < text.len())
    }

    /// Where configured tokens stand in `text`, as byte ranges in order,
    /// overlapping finds merged into one. Tokens are ASCII (refused
    /// otherwise at start), so each range starts and ends on character
    /// boundaries.
    pub fn found(&self, text: &str) -> Vec<(usize, usize)> {
        self.found_in(text.as_bytes(), 0)
    }

    /// `found` over bytes (a decoding that need not be UTF-8), for tokens
    /// of at least `least` bytes.
    fn found_in(&self, bytes: &[u8], least: usize) -> Vec<(usize, usize)> {
        let Auth::Tokens(_, scan) = self else {
            return Vec::new();
        };
        let m = scan.least;
        if m == 0 || bytes.len() < m {
            return Vec::new();
        }
        let mut found: Vec<(usize, usize)> = Vec::new();
        // The rolling hash of every prefix of `bytes`, made at the first
        // window that starts as a token does: then any window's hash is
        // two operations, also where many do (tokens sharing their first
        // bytes, and a text made of them).
        let mut prefixes: Option<Vec<u64>> = None;
        let mut h = rolled(&bytes[..m]);
        for start in 0..=bytes.len() - m {
            if start > 0 {
                let out = mul(u64::from(bytes[start - 1]), scan.top);
                h = add(
                    mul(add(h, ROLL_PRIME - out), base()),
                    u64::from(bytes[start + m - 1]),
                );
            }
            let Some(lengths) = scan.by_start.get(&h) else {
                continue;
            };
            for &at in lengths {
                let Length {
                    len,
                    power,
                    ref by_rolled,
                } = scan.lengths[at];
                if len < least || start + len > bytes.len() {
                    continue;
                }
                let window = &bytes[start..start + len];
                let whole = if len == m {
                    h
                } else {
                    let p = prefixes.get_or_insert_with(|| {
                        let mut p = Vec::with_capacity(bytes.len() + 1);
                        p.push(0);
                        for &b in bytes {
                            let last = *p.last().expect("starts with 0");
                            p.push(add(mul(last, base()), u64::from(b)));
                        }
                        p
                    });
                    add(p[start + len], ROLL_PRIME - mul(p[start], power))
                };
                if by_rolled
                    .get(&whole)
                    .is_some_and(|digests| digests.contains(&digest(window)))
                {
                    found.push((start, start + len));
                }
            }
        }
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

/// `text` up to `cut` with each of `found` (byte ranges, in order) that
/// begins before `cut` replaced by `[token]`, whole even past `cut`.
fn replaced(text: &str, found: &[(usize, usize)], cut: usize) -> String {
    let mut out = String::with_capacity(cut + 8);
    let mut at = 0;
    for &(start, end) in found.iter().take_while(|&&(start, _)| start < cut) {
        out.push_str(&text[at..start]);
        out.push_str("[token]");
        at = end;
    }
    if at < cut {
        out.push_str(&text[at..cut]);
    }
    out
}

/// The rolling hash's modulus, a Mersenne prime: sums of two residues fit
/// in 64 bits.
const ROLL_PRIME: u64 = (1 << 61) - 1;

/// The rolling hash's base, drawn once per process from the standard
/// library's random hasher keys.
fn base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(b"autopi-rx scrub base");
        256 + h.finish() % (ROLL_PRIME - 256)
    })
}

/// `a + b` modulo `ROLL_PRIME`, for `a` below it and `b` at most it.
fn add(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= ROLL_PRIME { s - ROLL_PRIME } else { s }
}

/// `a * b` modulo `ROLL_PRIME`, for `a` and `b` below it: a Mersenne
/// prime reduces by shifts and adds rather than a 128-bit division.
fn mul(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    let p = u128::from(ROLL_PRIME);
    let r = (x & p) + (x >> 61);
    let r = ((r & p) + (r >> 61)) as u64;
    if r >= ROLL_PRIME { r - ROLL_PRIME } else { r }
}

/// `base()` to the power `n`.
fn power(n: usize) -> u64 {
    (0..n).fold(1, |p, _| mul(p, base()))
}

/// The rolling hash of `bytes`, as `scrub` slides it.
fn rolled(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0, |h, &b| add(mul(h, base()), u64::from(b)))
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Open => f.write_str("Auth::Open"),
            Auth::Tokens(t, _) => write!(f, "Auth::Tokens({} configured)", t.len()),
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(b"autopi-rx token digest, v1......", token).as_bytes()
}

/// A short, non-reversible fingerprint of a credential for screens and logs
/// ("which token did the device send?") that never reveals the token.
pub fn fingerprint(credential: &str) -> String {
    let d = blake3::keyed_hash(b"autopi-rx token fingerprint, v1.", credential.as_bytes());
    d.to_hex()[..8].to_string()
}

/// Settings that decide what is accepted.
#[derive(Clone, Debug)]
pub struct Config {
    pub auth: Auth,
    pub max_body: usize,
}

/// A refusal: the status to answer and a one-line reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error: String,
}

impl Rejection {
    fn new(status: u16, error: impl Into<String>) -> Self {
        Rejection {
            status,
            error: error.into(),
        }
    }
}

/// Checks how the request says its body ends, before anything is read:
/// `Content-Length` and `Transfer-Encoding` together, `Content-Length`s
/// that disagree or are not plain digits, are 400 (where the body ends is
/// in doubt, so nothing after it on the connection may be trusted); a
/// chunked body is 411, any other transfer coding 501. A request whose
/// first `Connection` header mentions `upgrade` anywhere is 400: tiny_http
/// 0.12 reads it so, and then hands the rest of the connection over as the body
/// (a POST's read would run into the next request, or wait for the read
/// timeout), and the receiver upgrades to nothing. An HTTP/1.0 request
/// (`http_1_0`) with `Transfer-Encoding` is 400 too: that version has no
/// transfer codings, so a server or proxy in front may read its body as
/// running to the close while tiny_http decodes chunks and takes what
/// follows them as the next request (RFC 9112, 6.1: treat the framing as
/// faulty and close).
///
/// Values quoted in an error go through `quote` (the receiver's own takes
/// any token out before it cuts them: `clip` alone could cut one in part).
pub fn check_framing<'a>(
    http_1_0: bool,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    quote: impl Fn(&str) -> String,
) -> Result<(), Rejection> {
    // The values as sent, quoted so: a piece of one, split at a comma
    // and trimmed, was no longer a token the scrub knew (a token holding
    // a comma, sent as Transfer-Encoding, was quoted whole with a space
    // added: a hostile-client probe).
    let (mut length_values, mut coding_values): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut connection: Option<&str> = None;
    for (name, value) in headers {
        if name.is_empty() {
            return Err(Rejection::new(
                400,
                "a header line with no name (': value'): every header is NAME: VALUE".to_string(),
            ));
        }
        // tiny_http ends a line at CRLF only: a bare LF or CR (or a NUL)
        // stayed inside the value, where a proxy in front may have ended
        // the header and read the rest as another (`unit-id: dev\n
        // Transfer-Encoding: chunked`). RFC 9110 (5.5) has a recipient
        // refuse them or make them spaces; the value was captured as sent.
        if let Some(&bad) = name
            .as_bytes()
            .iter()
            .chain(value.as_bytes())
            .find(|b| matches!(b, b'\r' | b'\n' | b'\0'))
        {
            let what = match bad {
                b'\n' => "a line feed without its carriage return",
                b'\r' => "a carriage return without its line feed",
                _ => "a NUL byte",
            };
            return Err(Rejection::new(
                400,
                format!(
                    "the {} header holds {what}: where it ends is ambiguous",
                    // Scrubbed before it is escaped: an escape inside a
                    // token would hide it from the scrub.
                    quote(name).escape_debug()
                ),
            ));
        }
        if name.eq_ignore_ascii_case("connection") {
            connection.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            length_values.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coding_values.push(value);
        }
    }
    let pieces = |values: &[&'a str]| -> Vec<&'a str> {
        values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect()
    };
    let (lengths, codings) = (pieces(&length_values), pieces(&coding_values));
    if connection.is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")) {
        return Err(Rejection::new(
            400,
            "Connection: upgrade is not supported: the receiver upgrades to nothing, and \
             tiny_http would take the rest of the connection as this request's body"
                .to_string(),
        ));
    }
    if !lengths.is_empty() && !codings.is_empty() {
        return Err(Rejection::new(
            400,
            "both Content-Length and Transfer-Encoding: where the body ends is ambiguous"
                .to_string(),
        ));
    }
    if http_1_0 && !codings.is_empty() {
        return Err(Rejection::new(
            400,
            "Transfer-Encoding in an HTTP/1.0 request, a version without transfer codings: \
             where the body ends is ambiguous (send HTTP/1.1, or Content-Length)"
                .to_string(),
        ));
    }
    if lengths.iter().any(|l| {
        l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.parse::<u64>().is_err()
    }) {
        return Err(Rejection::new(
            400,
            format!(
                "invalid Content-Length '{}'",
                quote(&length_values.join("', '"))
            ),
        ));
    }
    if lengths.len() > 1 {
        let first = lengths[0].parse::<u64>().ok();
        if lengths.iter().any(|l| l.parse::<u64>().ok() != first) {
            return Err(Rejection::new(
                400,
                format!(
                    "conflicting Content-Lengths: '{}'",
                    quote(&length_values.join("', '"))
                ),
            ));
        }
        // The same length twice is still one tiny_http cannot read.
        return Err(Rejection::new(
            400,
            "Content-Length given more than once".to_string(),
        ));
    }
    match codings.as_slice() {
        [] => Ok(()),
        // A device sends `Content-Length`, never chunked. tiny_http's
        // chunked decoder (`chunked_transfer` 1.5) takes loose chunk lines
        // (a `+` or whitespace in a size, control bytes in an extension),
        // no trailers, and a body cut inside a chunk as whole; none of it
        // reaches the receiver, which is handed the decoded body alone.
        // So chunked uploads are refused before any of their body is
        // read (RFC 9110, 15.5.12).
        [only] if only.eq_ignore_ascii_case("chunked") => Err(Rejection::new(
            411,
            "chunked uploads are refused: send the body with Content-Length, as AutoPi \
             devices do (curl: --data-binary @FILE, not -T -)"
                .to_string(),
        )),
        _ => Err(Rejection::new(
            501,
            format!(
                "transfer-encoding '{}' is not supported: send the body with Content-Length",
                quote(&coding_values.join("', '"))
            ),
        )),
    }
}

/// 505 for a request line whose version is not HTTP/1.0 or HTTP/1.1.
/// tiny_http 0.12 hands over `HTTP/0.9` (which it then kept alive and
/// answered with an `HTTP/0.9 200` status line, which that version does
/// not have), answers `HTTP/2.0` and `HTTP/3.0` itself, and refuses any
/// other.
pub fn check_version(major: u8, minor: u8) -> Result<(), Rejection> {
    if (major, minor) == (1, 0) || (major, minor) == (1, 1) {
        return Ok(());
    }
    Err(Rejection::new(
        505,
        format!("HTTP/{major}.{minor} is not supported: send HTTP/1.1 (or 1.0)"),
    ))
}

/// 400 when the request line's method or target holds a control
/// character. tiny_http splits the request line at spaces and ends it at
/// CRLF only, so a bare LF, a CR or a NUL inside the target stayed in the
/// path (`POST /a\nTransfer-Encoding: HTTP/1.1` was answered 200 and
/// saved), where a proxy in front that ends lines at LF, or splits words
/// at any whitespace, reads another request line and headers (a
/// hostile-client probe, December 7). RFC 9112 (3.2) allows none of them
/// in a request target.
pub fn check_request_line(
    method: &str,
    target: &str,
    quote: impl Fn(&str) -> String,
) -> Result<(), Rejection> {
    for (part, text) in [("method", method), ("target", target)] {
        let Some(&bad) = text.as_bytes().iter().find(|b| b.is_ascii_control()) else {
            continue;
        };
        let what = match bad {
            b'\n' => "a line feed".to_string(),
            b'\r' => "a carriage return".to_string(),
            b'\t' => "a tab".to_string(),
            0 => "a NUL byte".to_string(),
            b => format!("the control character 0x{b:02X}"),
        };
        let hint = match part {
            "target" => format!(" (percent-encode it: %{bad:02X})"),
            _ => String::new(),
        };
        return Err(Rejection::new(
            400,
            format!(
                "the request line's {part} '{}' holds {what}: where the line ends, or its \
                 words, is ambiguous{hint}",
                // Scrubbed before it is escaped, as a header's name.
                quote(text).escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Headers the receiver reads one of (the credential, the device's
/// unit, the coding): given more than once, the first would win without
/// a word (a hostile-client probe: a good token then a bad one was 200,
/// the other way round 401), so a second is refused.
pub const ONCE_HEADERS: [&str; 3] = ["authorization", "unit-id", "content-encoding"];

/// 400 when a header of `ONCE_HEADERS` is among `names` more than once.
pub fn check_once<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), Rejection> {
    let mut seen = [0usize; ONCE_HEADERS.len()];
    for name in names {
        if let Some(i) = ONCE_HEADERS
            .iter()
            .position(|o| name.eq_ignore_ascii_case(o))
        {
            seen[i] += 1;
            if seen[i] > 1 {
                return Err(Rejection::new(
                    400,
                    format!(
                        "the {} header is given more than once: which one counts would be a \
                         guess; send it once",
                        ONCE_HEADERS[i]
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A header value quoted in an error: at most 40 characters.
pub fn clip(value: &str) -> String {
    value.chars().take(40).collect()
}

/// The headers a capture line keeps (and a forward sends again).
pub const KEPT_HEADERS: [&str; 6] = [
    "unit-id",
    "user-agent",
    "content-type",
    "content-encoding",
    "accept",
    "accept-encoding",
];

/// The longest value of a kept header: a device's are under 100 bytes. A
/// longer one is refused rather than cut, so a line holds what came; kept
/// whole, a client with the token could have each line carry as much as
/// tiny_http reads of a head (1 MiB), six times over once control bytes
/// are escaped (`\u0001`): gigabytes of capture in 10 s from four clients
/// (README, Hostile networks).
pub const KEPT_HEADER_LIMIT: usize = 1024;

/// Checks that each header a capture line keeps (`KEPT_HEADERS`), as
/// `find` finds it, is at most `KEPT_HEADER_LIMIT` bytes: 431 otherwise.
pub fn check_kept_headers<'a>(
    find: impl Fn(&'static str) -> Option<&'a str>,
) -> Result<(), Rejection> {
    for name in KEPT_HEADERS {
        if let Some(value) = find(name).filter(|v| v.len() > KEPT_HEADER_LIMIT) {
            return Err(Rejection::new(
                431,
                format!(
                    "the {name} header is {} bytes long; a capture line keeps it whole, up to \
                     {KEPT_HEADER_LIMIT} bytes (a device's are under 100)",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the `authorization` header: `token T` or `Bearer T`, scheme in any
/// case, T one of the configured tokens.
pub fn authorize(auth: &Auth, header: Option<&str>) -> Result<(), Rejection> {
    if matches!(auth, Auth::Open) {
        return Ok(());
    }
    let header = header.ok_or_else(|| {
        Rejection::new(
            401,
            format!(
                "missing authorization header (expected 'token <T>' or 'Bearer <T>'); {WHERE_SET}"
            ),
        )
    })?;
    let (scheme, credential) = split_authorization(header).ok_or_else(|| {
        Rejection::new(
            401,
            format!(
                "malformed authorization header (expected 'token <T>' or 'Bearer <T>'); {WHERE_SET}"
            ),
        )
    })?;
    if !scheme.eq_ignore_ascii_case("token") && !scheme.eq_ignore_ascii_case("bearer") {
        // The scheme is not echoed: a device misconfigured as `<token> x`
        // would otherwise see its token in the answer and the output.
        return Err(Rejection::new(
            401,
            "unsupported authorization scheme (expected 'token <T>' or 'Bearer <T>')",
        ));
    }
    if auth.matches(credential) {
        Ok(())
    } else {
        let scheme = if scheme.eq_ignore_ascii_case("token") {
            "token, as the device's code sends"
        } else {
            "Bearer, as AutoPi's guide shows"
        };
        Err(Rejection::new(
            401,
            format!(
                "token does not match any configured token (fingerprint {}; scheme {scheme}; \
                 both schemes are accepted, so the token itself differs: compare fingerprints \
                 with `autopi-rx fingerprint`); {WHERE_SET}",
                fingerprint(credential)
            ),
        ))
    }
}

/// Where a device's token is set, said in every 401.
const WHERE_SET: &str = "the device's Auth Token is set in AutoPi Cloud under the device's \
     Advanced Settings > Cloud Storage > Endpoint (older firmware: Cloud API)";

/// Splits `Scheme credential` into its two parts; None when either is missing.
pub fn split_authorization(header: &str) -> Option<(&str, &str)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once([' ', '\t'])?;
    let credential = rest.trim();
    if scheme.is_empty() || credential.is_empty() {
        return None;
    }
    Some((scheme, credential))
}

/// What the `content-encoding` header claims.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Declared {
    Identity,
    Gzip,
    Other(String),
}

impl Declared {
    fn from_header(header: Option<&str>) -> Declared {
        match header.map(str::trim) {
            None => Declared::Identity,
            Some(h) if h.is_empty() || h.eq_ignore_ascii_case("identity") => Declared::Identity,
            Some(h) if h.eq_ignore_ascii_case("gzip") || h.eq_ignore_ascii_case("x-gzip") => {
                Declared::Gzip
            }
            // Quoted as sent: the value has had any token taken out, and
            // one lowered after that could spell a token again (a client
            // sending it in upper case had it quoted back as configured).
            Some(h) => Declared::Other(h.chars().take(40).collect()),
        }
    }
}

/// Turns a wire body into a validated batch, or says exactly what is wrong.
pub fn decode(
    config: &Config,
    content_encoding: Option<&str>,
    wire: &[u8],
) -> Result<Batch, Rejection> {
    let unchecked = prepare(config, content_encoding, wire)?;
    let counts = unchecked.check()?;
    Ok(unchecked.finish(counts))
}

/// A body inflated, on one line and hashed: everything its capture line
/// needs. Whether its records are what a batch must be (`check`) is still
/// to be found out, which the receiver does while the line is written.
pub struct Unchecked<'a> {
    /// The batch as it will be, its counts still zero.
    batch: Batch,
    /// The body as JSON text (inflated when it came as gzip).
    text: Cow<'a, str>,
    declared: Declared,
    /// `NaN`, `Infinity` and `-Infinity` read as `null` (see `finite_only`).
    non_finite: usize,
    /// Its turn at decoding, for a large body: given back when the batch
    /// is finished (its records checked and its line saved) or dropped.
    _turn: Option<Turn>,
    /// Its share of the budget for smaller bodies, held as long.
    _share: Option<Share>,
}

/// `decode` up to the records check: inflates, checks size and UTF-8, lays
/// the body on one line and hashes it. Fails only for what the check would
/// never see (too large, bad gzip, not UTF-8, empty).
pub fn prepare<'a>(
    config: &Config,
    content_encoding: Option<&str>,
    wire: &'a [u8],
) -> Result<Unchecked<'a>, Rejection> {
    prepare_in_turn(config, content_encoding, wire, None, None)
}

/// `prepare`, a body over `LARGE_BODY` (inflated) decoded only in its turn
/// from `turns`, held until the batch is finished or dropped. A gzip body
/// is first inflated up to `LARGE_BODY`; past it, that output is let go
/// of while the turn is waited for, and the body inflated again. `held`
/// is a turn taken already (before a large body was read). A smaller body
/// holds a share of `budget` as long: see `inflate_in_share`.
pub fn prepare_in_turn<'a>(
    config: &Config,
    content_encoding: Option<&str>,
    wire: &'a [u8],
    gates: Option<(&Arc<Turns>, &Arc<Budget>)>,
    held: Option<Turn>,
) -> Result<Unchecked<'a>, Rejection> {
    let turns = gates.map(|(turns, _)| turns);
    if wire.len() > config.max_body {
        return Err(too_large("body", wire.len(), config.max_body));
    }
    let large = |size: usize| size > LARGE_BODY && turns.is_some();
    let mut turn = held;
    if turn.is_none() && large(wire.len()) {
        turn = turns.map(Turns::take).transpose()?;
    }
    let declared = Declared::from_header(content_encoding);
    let budget = gates.filter(|_| turn.is_none()).map(|(_, budget)| budget);
    let mut share = None;
    let (body, encoding, warning): (Cow<'a, [u8]>, _, _) = if wire.starts_with(&[0x1f, 0x8b]) {
        let inflated = match turns.filter(|_| turn.is_none() && large(config.max_body)) {
            // A body whose trailer says it is large asks for the turn at once
            // rather than for a share it would not use.
            Some(turns) if trailer_size(wire).is_some_and(|size| size > LARGE_BODY) => {
                turn = Some(turns.take()?);
                inflate(wire, config.max_body)?
            }
            Some(turns) => match inflate_in_share(wire, LARGE_BODY, budget, &mut share) {
                Err(r) if r.status == 413 => {
                    share = None;
                    turn = Some(turns.take()?);
                    inflate(wire, config.max_body)?
                }
                done => done?,
            },
            None => inflate_in_share(wire, config.max_body, budget, &mut share)?,
        };
        if inflated.starts_with(&[0x1f, 0x8b]) {
            return Err(Rejection::new(
                415,
                format!(
                    "the body inflated to another gzip stream (content-encoding '{}'): it \
                     was coded twice, and the receiver inflates one gzip layer",
                    clip(content_encoding.unwrap_or(""))
                ),
            ));
        }
        let warning = match &declared {
            Declared::Gzip => None,
            Declared::Identity => {
                Some("body is gzip but no content-encoding says so; inflated anyway".to_string())
            }
            Declared::Other(name) => Some(format!(
                "body is gzip but content-encoding says '{name}'; inflated anyway"
            )),
        };
        (Cow::Owned(inflated), Encoding::Gzip, warning)
    } else {
        share = budget.map(|budget| budget.take(wire.len())).transpose()?;
        (Cow::Borrowed(wire), Encoding::Identity, None)
    };
    if let Some(share) = share.as_mut() {
        share.shrink(wire.len() + body.len());
    }
    let text = as_text(body).map_err(|e| reject(encoding, &declared, e))?;
    let body_bytes = text.len();
    let (text, non_finite) = match finite_only(&text) {
        Some((read, n)) => {
            // Let go of now, not at the end of this function.
            drop(text);
            (Cow::Owned(read), n)
        }
        None => (text, 0),
    };
    // Copied once, straight into the shared buffer the capture, the
    // dashboard and the forwards read.
    let records_json: Arc<[u8]> = Arc::from(&*one_line(text.as_bytes()));
    let hash = *blake3::hash(&records_json).as_bytes();
    let wire = (*wire != *records_json).then(|| wire.into());
    Ok(Unchecked {
        batch: Batch {
            records_json,
            records: 0,
            malformed: 0,
            naive_timestamps: 0,
            encoding,
            body_bytes,
            warning,
            hash,
            newest_ts: None,
            wire,
            content_encoding: content_encoding.map(str::to_owned),
        },
        text,
        declared,
        non_finite,
        _turn: turn,
        _share: share,
    })
}

impl Unchecked<'_> {
    /// The batch its capture line is made from (counts not yet known).
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Over `LARGE_BODY` as JSON text: decoded in its turn, and checked
    /// before its line is queued rather than while it is written (a line
    /// being checked is committed alone, and the devices' lines queued
    /// after it would wait for its check).
    pub fn large(&self) -> bool {
        self.text.len() > LARGE_BODY
    }

    /// Reads every record: the body must be a JSON array of objects.
    pub fn check(&self) -> Result<Counts, Rejection> {
        self.check_on(None, &plain)
    }

    /// `check`, a large body read in two halves at once, one of them on
    /// `helper` (for a lone upload, which leaves a core idle). A refusal
    /// that quotes the body is cut by `cut(text, max)`: `Auth::shown`, so
    /// that a token quoted across the cut is not left in part.
    pub fn check_on(
        &self,
        helper: Option<&rayon::ThreadPool>,
        cut: &dyn Fn(&str, usize) -> String,
    ) -> Result<Counts, Rejection> {
        if let Some(counts) = helper.and_then(|pool| scan_halves(&self.text, pool, HALVES_FROM)) {
            return Ok(counts);
        }
        scan(&self.text).map_err(|e| {
            reject(
                self.batch.encoding,
                &self.declared,
                Invalid(describe_json_error(self.text.as_bytes(), &e, cut)),
            )
        })
    }

    /// The checked batch.
    pub fn finish(self, counts: Counts) -> Batch {
        let mut batch = self.batch;
        batch.records = counts.records;
        batch.malformed = counts.malformed;
        batch.naive_timestamps = counts.naive;
        batch.newest_ts = counts.newest;
        if batch.encoding == Encoding::Identity {
            batch.warning = match &self.declared {
                Declared::Identity => None,
                Declared::Gzip => {
                    Some("content-encoding says gzip but the body is plain JSON".to_string())
                }
                Declared::Other(name) => Some(format!(
                    "content-encoding says '{name}' but the body is plain JSON"
                )),
            };
        }
        if self.non_finite > 0 {
            let note = format!(
                "{} NaN or Infinity (not JSON; Python's json.dumps writes them) captured as \
                 null; the wire keeps them as sent",
                self.non_finite
            );
            batch.warning = Some(match batch.warning {
                Some(w) => format!("{w}; {note}"),
                None => note,
            });
        }
        batch
    }
}

/// Bodies at least this long are worth reading in two halves at once.
const HALVES_FROM: usize = 64 * 1024;

/// A thread that reads the second half of a lone upload's records (None
/// when it cannot be started: everything is then read in one pass).
pub fn helper() -> Option<&'static rayon::ThreadPool> {
    static HELPER: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    HELPER
        .get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "check-helper".into())
                .build()
                .ok()
        })
        .as_ref()
}

/// Reads the records in two halves at once, split after a record near the
/// middle (`},{`). Each half is read as an array of its own: the first
/// closed with `]`, the second opened with `[`. Both pass only when the
/// split lies between two records of the top-level array (a split inside
/// a string or a nested value leaves a bracket or a quote open in the
/// first half), and then the whole passes. None when the body is short,
/// has no such place, or a half fails: the caller then reads it in one
/// pass, which also names the error exactly.
///
/// On two shared cores the helper's may be busy, or taken by the host:
/// the helper gets the second half only if it starts on it before this
/// thread is done with the first, and once started it has half as long
/// again as the first half took here. Otherwise this thread reads the
/// second half too (the helper's late answer is dropped, and until it
/// ends both cores read that half). So a stalled core holds this thread
/// up for at most half the first half's time: an accepted body costs at
/// most about a quarter more than one pass (a body refused in its second
/// half, read again in one pass to name the error, more).
fn scan_halves(text: &str, pool: &rayon::ThreadPool, shortest: usize) -> Option<Counts> {
    if text.len() < shortest {
        return None;
    }
    let middle = text.len() / 2;
    let at = middle + memchr::memmem::find(&text.as_bytes()[middle..], b"},{")?;
    let first = format!("{}]", &text[..=at]);
    let second = Arc::new(format!("[{}", &text[at + 2..]));
    let taken = Arc::new(AtomicBool::new(false));
    let (said, answer) = crossbeam_channel::bounded(1);
    {
        let (second, taken) = (second.clone(), taken.clone());
        pool.spawn(move || {
            if !taken.swap(true, Ordering::AcqRel) {
                // A panic here would abort the process (rayon's default for
                // a spawned job): it is caught, and the worker, hearing
                // nothing, reads the half itself under its own catch.
                let read = std::panic::catch_unwind(|| scan(&second));
                if let Ok(read) = read {
                    let _ = said.send(read);
                }
            }
        });
    }
    let started = std::time::Instant::now();
    let a = scan(&first);
    // Taken now even when the first half failed, so a helper that has not
    // started yet never reads a half nobody will use.
    let helper_started = taken.swap(true, Ordering::AcqRel);
    let a = a.ok()?;
    let b = if helper_started {
        // Started: it has half as long again as the first half took, then
        // its half is read here as well and the first answer taken.
        match answer.recv_timeout(started.elapsed() / 2) {
            Ok(b) => b,
            Err(_) => scan(&second),
        }
    } else {
        scan(&second)
    }
    .ok()?;
    Some(Counts {
        records: a.records + b.records,
        malformed: a.malformed + b.malformed,
        naive: a.naive + b.naive,
        newest: a.newest.max(b.newest),
    })
}

/// The body as text, checked once here (the device sends ASCII, which the
/// standard library checks a word at a time), so the JSON reader works on
/// a str and does not check every string again.
fn as_text(body: Cow<'_, [u8]>) -> Result<Cow<'_, str>, Invalid> {
    let text = match body {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).map_err(|e| not_utf8(&e))?),
        Cow::Owned(b) => Cow::Owned(String::from_utf8(b).map_err(|e| not_utf8(&e.utf8_error()))?),
    };
    if text.trim_ascii().is_empty() {
        return Err(Invalid(
            "empty body: expected a JSON array of records".into(),
        ));
    }
    Ok(text)
}

fn not_utf8(e: &std::str::Utf8Error) -> Invalid {
    Invalid(format!(
        "body is not valid UTF-8 at byte {}",
        e.valid_up_to()
    ))
}

/// The answer to a body that is not a batch, from how it came and what its
/// `content-encoding` said.
fn reject(encoding: Encoding, declared: &Declared, e: Invalid) -> Rejection {
    match (encoding, declared) {
        (Encoding::Gzip, _) => e.with_prefix("gzip body: "),
        (Encoding::Identity, Declared::Other(name)) => Rejection::new(
            415,
            format!(
                "unsupported content-encoding '{name}': only gzip is decoded, and the body is not plain JSON"
            ),
        ),
        (Encoding::Identity, Declared::Gzip) => Rejection::new(
            400,
            format!(
                "content-encoding says gzip but the body is neither gzip nor JSON: {}",
                e.0
            ),
        ),
        (Encoding::Identity, Declared::Identity) => Rejection::new(400, e.0),
    }
}

pub(crate) fn too_large(what: &str, size: usize, limit: usize) -> Rejection {
    Rejection::new(
        413,
        format!(
            "{what} is larger than the limit of {limit} bytes (--max-body){}",
            if size > limit {
                format!(": at least {size} bytes")
            } else {
                String::new()
            }
        ),
    )
}

/// `inflate`, holding a share of `budget` (when there is one) for what
/// came and what inflating may give: first what the gzip trailer says the
/// body gives (what one member gives: the device's case, so a device's
/// batch of 100 kB waits only for that much), inflating no further; past
/// that (several members, or a trailer that lies), a share of `limit` and
/// once more up to it. Whatever its trailer says, a body never inflates
/// past what its share counts.
fn inflate_in_share(
    wire: &[u8],
    limit: usize,
    budget: Option<&Arc<Budget>>,
    share: &mut Option<Share>,
) -> Result<Vec<u8>, Rejection> {
    let Some(budget) = budget else {
        return inflate(wire, limit);
    };
    let said = trailer_size(wire).map_or(limit, |size| size.min(limit));
    *share = Some(budget.take(wire.len() + said + 1)?);
    match inflate(wire, said) {
        Err(r) if r.status == 413 && said < limit => {
            // Given back before the larger one is waited for: no upload
            // holds a share while it waits for another.
            *share = None;
            *share = Some(budget.take(wire.len() + limit + 1)?);
            inflate(wire, limit)
        }
        done => done,
    }
}

/// The length a gzip body's trailer gives (of its last member, modulo
/// 2^32): what it inflates to when it is one member that tells the truth.
fn trailer_size(wire: &[u8]) -> Option<usize> {
    let size = wire.last_chunk::<4>()?;
    Some(u32::from_le_bytes(*size) as usize)
}

/// Inflates gzip, never holding more than `limit` + 1 bytes of output.
fn inflate(wire: &[u8], limit: usize) -> Result<Vec<u8>, Rejection> {
    match inflate_lone_member(wire, limit) {
        Lone::Whole(out) => return Ok(out),
        Lone::TooLarge => return Err(inflated_too_large(limit)),
        Lone::Corrupt(why) => return Err(Rejection::new(400, why)),
        Lone::Other(first_end) => {
            // Bytes after a whole first member that cannot start another
            // (`gzip -d` takes trailing zeros; this says what they are).
            if let Some(end) = first_end.filter(|&end| !wire[end..].starts_with(&[0x1f, 0x8b])) {
                return Err(Rejection::new(
                    400,
                    format!(
                        "gzip body has {} bytes of trailing data after its gzip member, which \
                         ends at byte {end} (the first of them 0x{:02x}): send the member alone",
                        wire.len() - end,
                        wire[end]
                    ),
                ));
            }
        }
    }
    let mut out = Vec::with_capacity((wire.len() * 8).min(limit) + 1);
    let mut decoder = MultiGzDecoder::new(wire).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Rejection::new(400, format!("gzip body is truncated or corrupt: {e}")))?;
    if out.len() > limit {
        return Err(inflated_too_large(limit));
    }
    Ok(out)
}

fn inflated_too_large(limit: usize) -> Rejection {
    Rejection::new(
        413,
        format!("inflated body is larger than the limit of {limit} bytes (--max-body)"),
    )
}

/// What inflating a body as one gzip member found.
#[derive(Debug, PartialEq)]
enum Lone {
    /// One member, ending at the body's last byte: its records.
    Whole(Vec<u8>),
    /// The first member alone inflates past the limit.
    TooLarge,
    /// The first member is corrupt, as zlib's reason says.
    Corrupt(String),
    /// Anything else (more members, trailing bytes, truncated): read
    /// again by `MultiGzDecoder`, which says what is wrong; with where a
    /// whole first member ended when more came after it.
    Other(Option<usize>),
}

impl Lone {
    /// A first member zlib found corrupt, with its reason (`message`) and
    /// the bytes inflated until then. The checks of the trailer are said
    /// as what they compare: flate2's reader calls a length that is wrong
    /// and a CRC that is wrong alike "does not have a matching checksum".
    fn corrupt(message: Option<&str>, inflated: usize) -> Lone {
        let Some(message) = message else {
            return Lone::Other(None);
        };
        Lone::Corrupt(match message {
            "incorrect length check" => format!(
                "gzip body is corrupt: the length its trailer gives is not the {inflated} bytes \
                 it inflates to (zlib: {message})"
            ),
            "incorrect data check" => format!(
                "gzip body is corrupt: the CRC-32 its trailer gives is not that of the \
                 {inflated} bytes it inflates to (zlib: {message})"
            ),
            _ => format!("gzip body is corrupt: {message}, after {inflated} bytes inflated"),
        })
    }
}

/// The device's case (one gzip member, the whole body) inflated in one
/// call into one buffer: zlib's own gzip mode checks the header, the CRC
/// and the length, and says how much input the member took, so a body
/// with more after its first member is told apart. About a sixth faster
/// than the streaming reader, which feeds the output in growing chunks.
fn inflate_lone_member(wire: &[u8], limit: usize) -> Lone {
    use flate2::{Decompress, FlushDecompress, Status};
    let most = limit.saturating_add(1);
    let mut out = Vec::with_capacity((wire.len().saturating_mul(8)).min(most));
    let mut zlib = Decompress::new_gzip(15);
    loop {
        let (read, written) = (zlib.total_in(), zlib.total_out());
        let taken = usize::try_from(read).unwrap_or(usize::MAX).min(wire.len());
        match zlib.decompress_vec(&wire[taken..], &mut out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(_) if out.len() >= most => return Lone::TooLarge,
            Ok(_) if out.len() == out.capacity() => {
                out.reserve_exact(out.capacity().clamp(1, most - out.len()));
            }
            // Input used up, or no progress, short of the member's end.
            Ok(_) if (zlib.total_in(), zlib.total_out()) == (read, written) => {
                return Lone::Other(None);
            }
            Ok(_) => {}
            Err(e) => return Lone::corrupt(e.message(), out.len()),
        }
    }
    if out.len() > limit {
        return Lone::TooLarge;
    }
    if zlib.total_in() != wire.len() as u64 {
        return Lone::Other(usize::try_from(zlib.total_in()).ok());
    }
    Lone::Whole(out)
}

/// A 400 reason, before the encoding logic decides the final answer.
#[derive(Debug)]
struct Invalid(String);

impl Invalid {
    fn with_prefix(self, prefix: &str) -> Rejection {
        Rejection::new(400, format!("{prefix}{}", self.0))
    }
}

/// A cut with no token to look for.
fn plain(text: &str, max: usize) -> String {
    Auth::Open.shown(text, max)
}

/// Names what broke and where: serde's message (cut when long, since it
/// quotes offending values, by `cut`) with line, column and byte offset.
fn describe_json_error(
    body: &[u8],
    e: &serde_json::Error,
    cut: &dyn Fn(&str, usize) -> String,
) -> String {
    if body.starts_with(b"\xef\xbb\xbf") && (e.line(), e.column()) == (1, 1) {
        return "body starts with a UTF-8 byte-order mark (bytes EF BB BF), which JSON text \
                must not (RFC 8259, 8.1): send the array without it"
            .to_string();
    }
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&position).unwrap_or(&full);
    let long = what.chars().nth(MAX_ERROR_CHARS).is_some();
    let mut what = cut(what, MAX_ERROR_CHARS);
    if long {
        what.push_str(" (cut)");
    }
    if e.line() == 0 {
        return format!("body is not a JSON array of records: {what}");
    }
    let offset = byte_offset(body, e.line(), e.column());
    format!("body is not a JSON array of records: {what}{position} (byte {offset})")
}

/// Converts serde_json's 1-based line and column into a 0-based byte offset.
pub fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        body.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(body.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Spaces in a row that make a body's whitespace layout (`one_line`).
const SPACE_RUN: usize = 8;

/// The body on one line, trimmed. Compact bodies (what the device sends,
/// single spaces after its commas and colons) are kept byte for byte;
/// bodies with layout lose the whitespace between tokens, which JSON does
/// not give meaning to. Layout is a line end or a tab (strings cannot hold
/// either raw), or a run of `SPACE_RUN` spaces outside strings: a body of
/// spaces costs its client nothing once gzipped (1 KiB inflates to 1 MB,
/// which the capture line would keep whole). The wire itself is kept
/// beside the line whenever they differ.
fn one_line(body: &[u8]) -> Cow<'_, [u8]> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let end = body
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let body = &body[start..end];
    if memchr::memchr3(b'\n', b'\r', b'\t', body).is_none()
        && (memchr::memmem::find(body, &[b' '; SPACE_RUN]).is_none() || !spaced_out(body))
    {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut strings = Strings::default();
    // Whitespace was dropped since the last byte kept: kept as one space
    // between two bytes that would otherwise join into one token (`1 2`,
    // `tr ue`), so a body that is not JSON does not become JSON.
    let mut dropped = false;
    let apart = |c: u8| matches!(c, b'[' | b']' | b'{' | b'}' | b':' | b',' | b'"');
    for &b in body {
        if strings.step(b) {
            dropped = false;
            out.push(b);
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            dropped = true;
        } else {
            if dropped && !apart(b) && out.last().is_some_and(|&c| !apart(c)) {
                out.push(b' ');
            }
            dropped = false;
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// `text` with each `NaN`, `Infinity` and `-Infinity` outside its strings,
/// where a value goes, written `null`, and how many there were; None when
/// there is none. They are not JSON, but Python's `json.dumps`, the
/// device's, writes them for a float that is not a number: refused, the
/// device retried the batch until it gave up on it (a device-realism
/// review). What is captured, hashed and checked is the text with `null`;
/// the wire keeps the device's bytes (and a forward sends them).
fn finite_only(text: &str) -> Option<(String, usize)> {
    let b = text.as_bytes();
    // One pass for both words' first letters, which a device's batch
    // rarely holds (none in the 1000-record sample): 2–4 µs on its
    // 106 kB, against 11–12 µs for a search of each word.
    let word_at = |i: usize| b[i..].starts_with(b"NaN") || b[i..].starts_with(b"Infinity");
    if !memchr::memchr2_iter(b'N', b'I', b).any(word_at) {
        return None;
    }
    // `null` is a byte longer than `NaN`: a third more at most.
    let mut out = Vec::with_capacity(b.len() + b.len() / 3 + 1);
    let mut strings = Strings::default();
    let mut n = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let rest = &b[i..];
        let token = (!strings.step(c))
            .then(|| {
                [&b"NaN"[..], b"Infinity", b"-Infinity"]
                    .into_iter()
                    .find(|t| {
                        rest.starts_with(t)
                            && rest.get(t.len()).is_none_or(|d| {
                                matches!(d, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                            })
                    })
            })
            .flatten()
            .filter(|_| {
                // Where a value goes: after `[`, `,` or `:`.
                out.iter()
                    .rev()
                    .find(|c: &&u8| !c.is_ascii_whitespace())
                    .is_some_and(|c| matches!(c, b'[' | b',' | b':'))
            });
        match token {
            Some(t) => {
                out.extend_from_slice(b"null");
                n += 1;
                i += t.len();
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    if n == 0 {
        return None;
    }
    String::from_utf8(out).ok().map(|read| (read, n))
}

/// Whether `body` has a run of `SPACE_RUN` spaces outside its strings.
fn spaced_out(body: &[u8]) -> bool {
    let mut strings = Strings::default();
    let mut run = 0;
    for &b in body {
        if strings.step(b) || b != b' ' {
            run = 0;
        } else {
            run += 1;
            if run == SPACE_RUN {
                return true;
            }
        }
    }
    false
}

/// Follows a JSON text byte by byte, telling which bytes belong to its
/// strings (their quotes included), escapes followed.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `b`, the next byte, belongs to a string.
    fn step(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = b == b'"';
            self.inside
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::turns::DECODE_BUDGET;
    use proptest::prelude::*;

    fn unchecked(body: &str) -> Unchecked<'_> {
        prepare(&cfg_open(), None, body.as_bytes()).unwrap()
    }

    fn cfg_open() -> Config {
        Config {
            auth: Auth::Open,
            max_body: 32 << 20,
        }
    }

    fn pool() -> &'static rayon::ThreadPool {
        helper().expect("a helper thread")
    }

    #[test]
    fn a_large_batch_read_in_halves_counts_what_one_pass_counts() {
        let body = include_str!("../../tests/fixtures/batch-1000-naive.json");
        let halves = scan_halves(body, pool(), HALVES_FROM).expect("split and read in halves");
        let whole = unchecked(body).check().unwrap();
        assert_eq!(whole.records, 1000);
        assert_eq!(halves, whole);
        assert_eq!(
            unchecked(body).check_on(Some(pool()), &plain).unwrap(),
            whole
        );
    }

    /// With the helper's thread held elsewhere, both halves are read here,
    /// without waiting for it (the old scope waited until it was free).
    #[test]
    fn a_busy_helper_is_not_waited_for() {
        let body = include_str!("../../tests/fixtures/batch-1000-naive.json");
        let whole = unchecked(body).check().unwrap();
        let busy = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (release, held) = crossbeam_channel::bounded::<()>(0);
        let (started, running) = crossbeam_channel::bounded(0);
        busy.spawn(move || {
            started.send(()).unwrap();
            let _ = held.recv();
        });
        running.recv().unwrap();
        // Detached: should it block for good, the test still fails in 10 s.
        let (done, result) = crossbeam_channel::bounded(1);
        let busy = Arc::new(busy);
        let pool = busy.clone();
        std::thread::spawn(move || {
            let _ = done.send(scan_halves(body, &pool, HALVES_FROM));
        });
        let got = result.recv_timeout(std::time::Duration::from_secs(10));
        drop(release);
        assert_eq!(
            got.expect("scan_halves waited for a helper that was busy"),
            Some(whole)
        );
    }

    #[test]
    fn a_split_inside_a_string_or_a_nested_value_falls_back_to_one_pass() {
        let small = r#"{"@t":"a","@ts":"2026-01-01T00:00:00"}"#;
        let pad = |n: usize| vec![small; n].join(",");
        // The first `},{` after the middle is inside a string, then inside
        // a nested array of objects.
        let in_string = format!(
            r#"[{},{{"@t":"s","note":"{}}},{{x"}},{}]"#,
            pad(10),
            "y".repeat(2000),
            pad(1)
        );
        let nested = format!(
            r#"[{},{{"@t":"n","v":[{}, {{"k":1}},{{"k":2}}]}},{}]"#,
            pad(40),
            "1,".repeat(1000) + "1",
            pad(1)
        );
        for body in [&in_string, &nested] {
            let whole = unchecked(body).check().unwrap();
            assert_eq!(scan_halves(body, pool(), 0), None, "{body:.80}");
            assert_eq!(
                unchecked(body).check_on(Some(pool()), &plain).unwrap(),
                whole
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Read in halves or in one pass, a body gets the same verdict:
        /// the same counts, or the same error.
        #[test]
        fn halves_and_one_pass_agree(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(r#"{"@t":"a","@ts":"2026-01-01T00:00:00"}"#.to_string()),
                    Just(r#"{"@t":"b","@ts":"2026-01-01T00:00:00+02:00"}"#.to_string()),
                    Just(r#"{"@t":"c"}"#.to_string()),
                    Just(r#"{"s":"},{"}"#.to_string()),
                    Just(r#"{"v":[{"a":1},{"b":2}]}"#.to_string()),
                    Just(r#"{"o":{"p":{}},"q":"]"}"#.to_string()),
                    Just("[]".to_string()),
                    Just("1".to_string()),
                    Just(r#"{"x":"#.to_string()),
                    Just("}".to_string()),
                ],
                1..40,
            ),
            sep in prop_oneof![Just(","), Just(", "), Just("},{")],
        ) {
            let body = format!("[{}]", parts.join(sep));
            let one = unchecked(&body).check().map_err(|r| r.error);
            let halves = scan_halves(&body, pool(), 0);
            if let Some(h) = &halves {
                prop_assert_eq!(Ok(h), one.as_ref(), "{}", body);
            }
            let checked = unchecked(&body).check_on(Some(pool()), &plain).map_err(|r| r.error);
            prop_assert_eq!(checked, one, "{}", body);
        }
    }

    fn cfg() -> Config {
        Config {
            auth: Auth::tokens(&["secret-1", "secret-2"]),
            max_body: 1024,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// What `one_line` gives is JSON exactly when the body is, and
        /// the same JSON: whitespace between tokens goes, nothing joins.
        #[test]
        fn one_line_keeps_what_is_json_and_what_is_not(
            pieces in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "1", "2", "tr", "ue", "[", "]", "{", "}", ",", ":", r#""a""#, r#""a \" b""#,
                    ]),
                    proptest::sample::select(vec!["", " ", "\t", "\n", "        "]),
                ),
                0..8,
            )
        ) {
            let body: String = pieces.iter().flat_map(|(token, ws)| [*token, *ws]).collect();
            let original = serde_json::from_str::<serde_json::Value>(&body).ok();
            let compact = one_line(body.as_bytes());
            let compacted = serde_json::from_slice::<serde_json::Value>(&compact).ok();
            prop_assert_eq!(original, compacted, "{:?} -> {:?}", body, String::from_utf8_lossy(&compact));
        }
    }

    #[test]
    fn one_line_keeps_strings_and_drops_layout() {
        let body = b"[\n  {\"a b\": \"x\\\" \\n y\",\n \"c\": 1}\n]\n";
        assert_eq!(&*one_line(body), br#"[{"a b":"x\" \n y","c":1}]"#);
        assert_eq!(&*one_line(b" [1, 2] "), b"[1, 2]");
        // What a device sends is kept as it came, not copied.
        let device = br#"[{"@t": "pos", "v": "a   b", "n": 1}]"#;
        assert!(matches!(one_line(device), Cow::Borrowed(b) if b == device));
        // A run of spaces or a tab is layout; a run in a string is kept.
        let spaced = format!("[{}{{\"s\": \"{}\"}}]", " ".repeat(1_000), " ".repeat(8));
        let compact = format!(r#"[{{"s":"{}"}}]"#, " ".repeat(8));
        assert_eq!(&*one_line(spaced.as_bytes()), compact.as_bytes());
        assert_eq!(&*one_line(b"[1,\t2]"), b"[1,2]");
        let seven = format!("[1,{}2]", " ".repeat(7));
        assert_eq!(&*one_line(seven.as_bytes()), seven.as_bytes());
        // A run inside a string alone is not layout: kept as it came.
        let padded = format!(
            r#"[{{"a": 1, "s": "x{}y\"{}"}}]"#,
            " ".repeat(8),
            " ".repeat(8)
        );
        assert!(matches!(one_line(padded.as_bytes()), Cow::Borrowed(_)));
        // What is not JSON stays not JSON: tokens are not joined.
        assert_eq!(&*one_line(b"[{\"a\":1\t2}]"), b"[{\"a\":1 2}]");
        let split = format!("[tr{}ue, \"a\"\n\"b\"]", " ".repeat(8));
        assert_eq!(&*one_line(split.as_bytes()), br#"[tr ue,"a""b"]"#);
    }

    #[test]
    fn byte_offset_counts_lines() {
        let body = b"[\n{\"a\":1},\n x]";
        assert_eq!(byte_offset(body, 3, 2), 12);
        assert_eq!(body[12], b'x');
        assert_eq!(byte_offset(body, 1, 1), 0);
    }

    #[test]
    fn headers_read_once_are_refused_when_given_twice() {
        let once = |names: &[&str]| check_once(names.iter().copied());
        assert!(
            once(&[
                "Authorization",
                "unit-id",
                "Content-Encoding",
                "accept",
                "accept"
            ])
            .is_ok()
        );
        for twice in [
            ["authorization", "Authorization"],
            ["unit-id", "UNIT-ID"],
            ["content-encoding", "Content-Encoding"],
        ] {
            let e = once(&[twice[0], "host", twice[1]]).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(
                e.error
                    .contains(&format!("the {} header is given more than once", twice[0])),
                "{}",
                e.error
            );
        }
    }

    #[test]
    fn versions_other_than_1_0_and_1_1_are_505() {
        assert_eq!(check_version(1, 1), Ok(()));
        assert_eq!(check_version(1, 0), Ok(()));
        for (major, minor) in [(0, 9), (1, 2), (2, 0)] {
            assert_eq!(check_version(major, minor).map_err(|r| r.status), Err(505));
        }
    }

    /// A name or target quoted in a framing refusal is scrubbed before it
    /// is cut or escaped: cut first, a token across the cut was shown in
    /// part; escaped first, one holding a `'` was missed.
    #[test]
    fn framing_refusals_quote_what_they_name_scrubbed_first() {
        let token = "tok-it's-9f8e7d6c5b4a";
        // As `Auth::clipped` does: scrubbed, then cut (here past the token).
        let quote = |t: &str| {
            t.replace(token, "[token]")
                .chars()
                .take(60)
                .collect::<String>()
        };
        let long = format!("x-{}-{token}\nb", "p".repeat(30));
        let said = check_framing(false, [(long.as_str(), "v")].into_iter(), quote).unwrap_err();
        let target = format!("/{}?t={token}\n", "p".repeat(30));
        let said_too = check_request_line("POST", &target, quote).unwrap_err();
        for said in [said.error, said_too.error] {
            assert!(said.contains("[token]"), "{said}");
            assert!(!said.contains("tok-it"), "{said}");
        }
    }

    /// A token holding a comma, sent as a framing header's value, is
    /// quoted as sent, so that the scrub finds it: split at the comma and
    /// trimmed, the pieces were quoted (a hostile-client probe).
    #[test]
    fn a_token_with_a_comma_in_a_framing_header_is_never_quoted() {
        let token = "Zq7Xw9RkLm42,Vb8Hn3Pd5Tf6";
        let auth = Auth::tokens(&[token]);
        let quote = |t: &str| auth.shown(t, 300);
        for headers in [
            vec![("Transfer-Encoding", token)],
            vec![("Content-Length", token)],
            vec![("Content-Length", "5"), ("Content-Length", token)],
            vec![("Transfer-Encoding", "gzip"), ("Transfer-Encoding", token)],
        ] {
            let said = check_framing(false, headers.iter().copied(), quote).unwrap_err();
            assert!(said.error.contains("[token]"), "{}", said.error);
            for piece in ["Zq7", "Vb8", "Tf6"] {
                assert!(!said.error.contains(piece), "{}", said.error);
            }
        }
    }

    #[test]
    fn control_characters_in_the_request_line_are_400() {
        let check = |m: &str, t: &str| check_request_line(m, t, clip).map_err(|r| r.status);
        assert_eq!(check("POST", "/"), Ok(()));
        assert_eq!(check("POST", "/a%0Ab?x=caf%C3%A9"), Ok(()));
        assert_eq!(check("GET", "*"), Ok(()));
        for (method, target) in [
            ("POST", "/a\nb"),
            ("POST", "/a\nTransfer-Encoding:"),
            ("POST", "/a\rb"),
            ("POST", "/a\0b"),
            ("POST", "/a\tb"),
            ("POST", "/a\x1b[2J"),
            ("POST", "/a\x7f"),
            ("PO\0ST", "/"),
        ] {
            assert_eq!(check(method, target), Err(400), "{method:?} {target:?}");
        }
        let said = check_request_line("POST", "/a\nb", clip).unwrap_err();
        assert!(
            said.error
                .starts_with("the request line's target '/a\\nb' holds a line feed"),
            "{}",
            said.error
        );
    }

    #[test]
    fn framing_is_strict() {
        let check = |h: &[(&str, &str)]| {
            check_framing(false, h.iter().copied(), clip).map_err(|r| r.status)
        };
        assert_eq!(check(&[("Content-Length", "12")]), Ok(()));
        assert_eq!(check(&[]), Ok(()));
        for chunked in ["chunked", "Chunked", " chunked "] {
            assert_eq!(check(&[("transfer-encoding", chunked)]), Err(411));
        }
        // Only the first Connection header counts, as for tiny_http.
        assert_eq!(
            check(&[("Connection", "keep-alive"), ("Connection", "upgrade")]),
            Ok(())
        );
        for bad in [
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")][..],
            &[("Content-Length", "5"), ("content-length", "6")],
            &[("Content-Length", "5"), ("content-length", "5")],
            &[("Content-Length", "5, 6")],
            &[("Content-Length", "+5")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "0x10")],
            &[("Content-Length", "")],
            &[("Content-Length", "99999999999999999999999")],
            &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
            &[("connection", "keep-alive, x-upgraded")],
            &[("connection", "upgrade"), ("connection", "close")],
            &[("unit-id", "dev\nTransfer-Encoding: chunked")],
            &[("x-a", "a\rb")],
            &[("x-a", "a\0b")],
            &[("x\na", "b")],
            &[("", "value")],
        ] {
            assert_eq!(check(bad), Err(400), "{bad:?}");
        }
        // A tab is part of a value; the message shows a name escaped.
        assert_eq!(check(&[("x-a", "a\tb")]), Ok(()));
        let said = check_framing(false, [("x\na", "b")].into_iter(), clip).unwrap_err();
        assert!(
            said.error.starts_with("the x\\na header holds a line feed"),
            "{}",
            said.error
        );
        for unsupported in [
            &[("Transfer-Encoding", "gzip")][..],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
        ] {
            assert_eq!(check(unsupported), Err(501), "{unsupported:?}");
        }
        // HTTP/1.0 has no transfer codings: any is a framing fault there.
        let check_1_0 =
            |h: &[(&str, &str)]| check_framing(true, h.iter().copied(), clip).map_err(|r| r.status);
        assert_eq!(check_1_0(&[("Content-Length", "12")]), Ok(()));
        for coding in ["chunked", "gzip"] {
            assert_eq!(check_1_0(&[("Transfer-Encoding", coding)]), Err(400));
        }
    }

    /// The shift-and-add reduction agrees with a division, at the edges
    /// and across the range.
    #[test]
    fn mul_reduces_as_a_division_would() {
        let slow =
            |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(ROLL_PRIME)) as u64;
        let edges = [
            0,
            1,
            2,
            255,
            256,
            ROLL_PRIME - 2,
            ROLL_PRIME - 1,
            1 << 60,
            (1 << 60) + 1,
        ];
        for a in edges {
            for b in edges {
                assert_eq!(mul(a, b), slow(a, b), "{a} * {b}");
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (a, b) = ((x >> 3) % ROLL_PRIME, x.rotate_left(17) % ROLL_PRIME);
            assert_eq!(mul(a, b), slow(a, b), "{a} * {b}");
        }
    }

    /// Every configured token is replaced wherever it stands, whole and
    /// only whole: at either end, twice in a row, overlapping itself, two
    /// tokens of different lengths, beside other characters; a near miss
    /// and text shorter than a token are left as they are, and with no
    /// tokens nothing is touched.
    #[test]
    fn scrub_replaces_every_configured_token_and_nothing_else() {
        let auth = Auth::tokens(&["s3cret-token", "ab", "aaaa"]);
        let cases = [
            ("/x?token=s3cret-token", "/x?token=[token]"),
            ("s3cret-token/", "[token]/"),
            ("s3cret-tokens3cret-token", "[token][token]"),
            ("é s3cret-token é", "é [token] é"),
            ("s3cret-tokeN", "s3cret-tokeN"),
            ("3cret-token", "3cret-token"),
            ("xabx", "x[token]x"),
            // Overlapping finds are replaced as one.
            ("aaaaa", "[token]"),
            ("a", "a"),
            ("", ""),
        ];
        for (text, scrubbed) in cases {
            assert_eq!(auth.scrub(text), scrubbed, "{text:?}");
        }
        assert!(matches!(auth.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(Auth::Open.scrub("s3cret-token"), "s3cret-token");
        assert_eq!(auth.longest(), 12);
        // Two tokens of one length: found in the same pass.
        let two = Auth::tokens(&["ab", "cd", "abc"]);
        assert_eq!(two.scrub("xcdxabx"), "x[token]x[token]x");
        // Many tokens, of many lengths and many of one: each is found.
        let many: Vec<String> = (0..50)
            .map(|i| format!("tok{i}-{}", "q".repeat(i)))
            .chain((0..50).map(|i| format!("same-{i:04}")))
            .collect();
        let auth = Auth::tokens(&many);
        for t in &many {
            assert_eq!(auth.scrub(&format!("<{t}>")), "<[token]>", "{t}");
        }
    }

    proptest::proptest! {
        /// Every place a configured token stands is found, and nothing
        /// else, whatever the tokens share (an alphabet of two letters:
        /// tokens of many lengths starting alike, inside each other and
        /// overlapping in the text), as a plain search finds them.
        #[test]
        fn the_scan_finds_what_a_plain_search_finds(
            tokens in proptest::collection::vec("[ab]{1,8}", 1..6),
            text in "[ab]{0,60}",
        ) {
            let auth = Auth::tokens(&tokens);
            let mut want: Vec<(usize, usize)> = Vec::new();
            for t in &tokens {
                for start in 0..=text.len().saturating_sub(t.len()) {
                    if text[start..].starts_with(t.as_str()) {
                        want.push((start, start + t.len()));
                    }
                }
            }
            want.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for (start, end) in want {
                match merged.last_mut() {
                    Some(last) if start < last.1 => last.1 = last.1.max(end),
                    _ => merged.push((start, end)),
                }
            }
            proptest::prop_assert_eq!(auth.found(&text), merged);
        }
    }

    /// A refusal quotes the value that broke the batch, cut at 300
    /// characters: a token quoted across the cut is replaced whole, where
    /// the cut left its first characters in view.
    #[test]
    fn a_token_quoted_in_a_refusal_is_not_shown_in_part() {
        let auth = Auth::tokens(&["s3cret-token"]);
        let mut quoted = 0;
        for pad in 250..320 {
            let body = format!(r#"[{{"@t":"x"}}, "{}s3cret-token"]"#, "9".repeat(pad));
            let unchecked = prepare(&cfg_open(), None, body.as_bytes()).unwrap();
            let error = unchecked
                .check_on(None, &|text, max| auth.shown(text, max))
                .unwrap_err()
                .error;
            assert!(!error.contains("s3c"), "{error}");
            quoted += usize::from(error.contains("[token]"));
        }
        assert!(quoted > 0, "no refusal quoted the value");
    }

    #[test]
    fn auth_schemes_and_tokens() {
        let auth = cfg().auth;
        assert!(authorize(&auth, Some("token secret-1")).is_ok());
        assert!(authorize(&auth, Some("Bearer secret-2")).is_ok());
        assert!(authorize(&auth, Some("TOKEN   secret-2 ")).is_ok());
        assert!(authorize(&auth, Some("bEaReR secret-1")).is_ok());
        for bad in [
            None,
            Some(""),
            Some("token"),
            Some("secret-1"),
            Some("Basic secret-1"),
            Some("token secret-3"),
        ] {
            let e = authorize(&auth, bad).unwrap_err();
            assert_eq!(e.status, 401, "{bad:?}");
            assert!(!e.error.contains("secret"), "{}", e.error);
        }
        assert!(authorize(&Auth::Open, None).is_ok());
    }

    #[test]
    fn counts_malformed_and_naive_records() {
        let body = br#"[{"@t":"a","@ts":"2026-11-27T08:00:03"},{"@t":"b","@ts":"2026-11-27T08:00:03Z"},
            {"@t":"c"},{"@ts":"2026-11-27T08:00:03Z"},{"@t":"d","@ts":"never"},{"@t":1,"@ts":"2026-11-27T08:00:03Z"},{}]"#;
        let b = decode(&cfg(), None, body).unwrap();
        assert_eq!((b.records, b.malformed, b.naive_timestamps), (7, 5, 1));
        assert!(!b.records_json.contains(&b'\n'));
    }

    /// `NaN`, `Infinity` and `-Infinity` where a value goes are read as
    /// `null`, never inside a string or a key, nor where no value goes;
    /// the batch is taken with a warning and the wire kept as sent.
    #[test]
    fn python_s_nan_and_infinity_are_captured_as_null() {
        let (read, n) = finite_only(
            r#"[{"a":NaN,"b":Infinity,"c": -Infinity,"s":"NaN \"Infinity","NaN":[NaN ,1]}]"#,
        )
        .unwrap();
        assert_eq!(
            read,
            r#"[{"a":null,"b":null,"c": null,"s":"NaN \"Infinity","NaN":[null ,1]}]"#
        );
        assert_eq!(n, 4);
        // Each word alone, after letters the first look stops at.
        for (alone, read) in [
            (r#"[{"N":"INF","v":NaN}]"#, r#"[{"N":"INF","v":null}]"#),
            (r#"[{"I":"Na","v":Infinity}]"#, r#"[{"I":"Na","v":null}]"#),
        ] {
            assert_eq!(finite_only(alone), Some((read.to_string(), 1)), "{alone}");
        }
        for left in [
            r#"[{"s":"NaN"}]"#,
            r#"[NaNa]"#,
            r#"[1 NaN]"#,
            r#"[{"a":"\\"}]"#,
        ] {
            assert_eq!(finite_only(left), None, "{left}");
        }
        let body = br#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:03","value":NaN},{"@t":"x","@ts":"2026-11-27T08:00:04","v":-Infinity}]"#;
        let b = decode(&cfg(), None, body).unwrap();
        assert_eq!((b.records, b.malformed), (2, 0));
        assert_eq!(b.body_bytes, body.len());
        assert!(
            std::str::from_utf8(&b.records_json)
                .unwrap()
                .contains(r#""value":null"#)
        );
        assert_eq!(b.wire.as_deref(), Some(&body[..]));
        let warning = b.warning.unwrap();
        assert!(warning.starts_with("2 NaN or Infinity"), "{warning}");
        // Also behind another warning, and inside gzip.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, body).unwrap();
        let zipped = gz.finish().unwrap();
        let b = decode(&cfg(), None, &zipped).unwrap();
        let warning = b.warning.unwrap();
        assert!(
            warning.starts_with("body is gzip but no content-encoding")
                && warning.contains("; 2 NaN"),
            "{warning}"
        );
        // Something else wrong is still refused.
        assert_eq!(decode(&cfg(), None, b"[NaN NaN]").unwrap_err().status, 400);
    }

    #[test]
    fn errors_name_the_place() {
        let e = decode(&cfg(), None, b"[{\"@t\":\"a\"},\n  5]").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.error.contains("record 1 (0-based) to be a JSON object"),
            "{}",
            e.error
        );
        assert!(e.error.contains("line 2 column"), "{}", e.error);
        let e = decode(&cfg(), None, b"{\"@t\":\"a\"}").unwrap_err();
        assert!(e.error.contains("expected a JSON array"), "{}", e.error);
        let e = decode(&cfg(), None, b"[{\"a\":\"\xff\"}]").unwrap_err();
        assert_eq!(e.error, "body is not valid UTF-8 at byte 7");
        let e = decode(&cfg(), None, b" \n").unwrap_err();
        assert!(e.error.starts_with("empty body"), "{}", e.error);
        let e = decode(&cfg(), None, b"[] x").unwrap_err();
        assert!(e.error.contains("trailing characters"), "{}", e.error);
    }

    /// A body over `LARGE_BODY` once inflated is decoded only in its turn,
    /// held until its batch is finished; a small one never waits, whatever
    /// its gzip claims; a large one that cannot get its turn is 503.
    #[test]
    fn large_bodies_are_decoded_in_turn_and_small_ones_never_wait() {
        let turns = Arc::new(Turns::new(std::time::Duration::ZERO));
        let cfg = cfg_open();
        let record = r#"{"@t":"x","@ts":"2026-12-02T01:00:00"}"#;
        let small = format!("[{record}]");
        let spaced = format!("[{}{record}]", "\n".repeat(2 * LARGE_BODY));
        fn turn_of<'a>(
            cfg: &Config,
            body: &'a [u8],
            turns: &Arc<Turns>,
        ) -> Result<Unchecked<'a>, Rejection> {
            let budget = Arc::new(Budget::new(
                DECODE_BUDGET,
                std::time::Duration::ZERO,
                "uploads".into(),
            ));
            prepare_in_turn(cfg, None, body, Some((turns, &budget)), None)
        }
        let held = turns.take().unwrap();
        // Taken by another: a small body, plain or gzip, goes ahead.
        assert!(turn_of(&cfg, small.as_bytes(), &turns).is_ok());
        assert!(turn_of(&cfg, &gz(small.as_bytes(), None), &turns).is_ok());
        // A large one, plain or gzip (2 MiB from a few KB), waits, here
        // not at all: 503.
        for body in [spaced.as_bytes().to_vec(), gz(spaced.as_bytes(), None)] {
            let refused = turn_of(&cfg, &body, &turns).err().expect("no turn");
            assert_eq!(refused.status, 503, "{}", refused.error);
        }
        drop(held);
        // Free: decoded, and the turn is its own until it is finished.
        let wire = gz(spaced.as_bytes(), None);
        let unchecked = turn_of(&cfg, &wire, &turns).expect("its turn");
        assert!(turns.take().is_err(), "held while it is decoded");
        let counts = unchecked.check().unwrap();
        let batch = unchecked.finish(counts);
        assert_eq!(batch.records, 1);
        assert!(turns.take().is_ok(), "given back once finished");
        // Past `--max-body` inflated, still 413.
        let tight = Config {
            max_body: LARGE_BODY + 10,
            ..cfg_open()
        };
        let refused = turn_of(&tight, &gz(spaced.as_bytes(), None), &turns)
            .err()
            .expect("too large");
        assert_eq!(refused.status, 413, "{}", refused.error);
    }

    /// A body below the large ones holds a share of the budget from before
    /// it is inflated until its batch is finished: what its gzip trailer
    /// says while it inflates, what came and what it gave after. One that
    /// does not fit waits (here not at all: 503), while a device's batch
    /// fits beside what a larger one would need.
    #[test]
    fn smaller_bodies_hold_a_share_of_the_budget_while_decoded() {
        let no_wait = std::time::Duration::ZERO;
        let turns = Arc::new(Turns::new(no_wait));
        let cfg = cfg_open();
        let device = include_bytes!("../../tests/fixtures/batch-1000-naive.json");
        let wire = gz(device, None);
        let share = wire.len() + device.len();
        let budget = Arc::new(Budget::new(share + 1, no_wait, "uploads".into()));
        let gates = Some((&turns, &budget));
        let unchecked = prepare_in_turn(&cfg, None, &wire, gates, None).expect("fits");
        assert_eq!(budget.held(), share);
        // Nothing left for a second one meanwhile.
        let refused = prepare_in_turn(&cfg, None, &wire, gates, None)
            .err()
            .expect("full");
        assert_eq!(refused.status, 503, "{}", refused.error);
        assert!(refused.error.contains("share"), "{}", refused.error);
        let counts = unchecked.check().unwrap();
        drop(unchecked.finish(counts));
        assert_eq!(budget.held(), 0, "given back once finished");
        // A plain body holds what came.
        let unchecked = prepare_in_turn(&cfg, None, device, gates, None).expect("fits");
        assert_eq!(budget.held(), device.len());
        drop(unchecked);
        // Whitespace that inflates to 1 MiB from a hundredth of that asks
        // for a share of 1 MiB: with 200 kB left, a device's batch fits and
        // it does not.
        let record = r#"{"@t":"x","@ts":"2026-12-02T01:00:00"}"#;
        let spaced = format!("[{}{record}]", " ".repeat(LARGE_BODY - 100));
        let bomb = gz(spaced.as_bytes(), None);
        assert!(bomb.len() < spaced.len() / 100, "{} bytes", bomb.len());
        let roomy = Arc::new(Budget::new(DECODE_BUDGET, no_wait, "uploads".into()));
        let gates = Some((&turns, &roomy));
        let others = roomy.take(DECODE_BUDGET - 200_000).unwrap();
        let refused = prepare_in_turn(&cfg, None, &bomb, gates, None)
            .err()
            .expect("no share");
        assert_eq!(refused.status, 503, "{}", refused.error);
        assert!(prepare_in_turn(&cfg, None, &wire, gates, None).is_ok());
        drop(others);
        assert!(prepare_in_turn(&cfg, None, &bomb, gates, None).is_ok());
        // Two members, the last one of one byte: its trailer says too
        // little, so the first inflating stops there, and the body is
        // inflated again in a share of the limit.
        let last = device.len() - 1;
        let two = [gz(&device[..last], None), gz(&device[last..], None)].concat();
        let unchecked = prepare_in_turn(&cfg, None, &two, gates, None).expect("inflated again");
        assert_eq!(unchecked.batch().body_bytes, device.len());
        assert_eq!(roomy.held(), two.len() + device.len());
    }

    fn gz(data: &[u8], name: Option<&str>) -> Vec<u8> {
        use std::io::Write;
        let mut builder = flate2::GzBuilder::new();
        if let Some(name) = name {
            builder = builder.filename(name).comment("c").extra(vec![1, 2, 3]);
        }
        let mut e = builder.write(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// What `MultiGzDecoder` alone makes of a body: the reference the one
    /// call must agree with.
    fn streamed(wire: &[u8], limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        MultiGzDecoder::new(wire)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    #[test]
    fn one_gzip_member_is_inflated_in_one_call_and_anything_more_is_streamed() {
        let body = include_bytes!("../../tests/fixtures/batch-1000-naive.json");
        let member = gz(body, Some("batch.json"));
        assert_eq!(
            inflate_lone_member(&member, 32 << 20),
            Lone::Whole(body.to_vec())
        );
        // Two equal members: the trailer at the end of the body is the
        // first member's too, so only the input count tells them apart.
        let twice = [&member[..], &member[..]].concat();
        assert_eq!(
            inflate_lone_member(&twice, 32 << 20),
            Lone::Other(Some(member.len()))
        );
        assert_eq!(
            inflate(&twice, 32 << 20).unwrap(),
            [&body[..], &body[..]].concat()
        );
        let e = decode(&cfg_open(), Some("gzip"), &twice).unwrap_err();
        assert!(e.error.contains("trailing characters"), "{}", e.error);
        // Bytes after the member, a cut member.
        let trailing = [&member[..], b"x"].concat();
        assert_eq!(
            inflate_lone_member(&trailing, 32 << 20),
            Lone::Other(Some(member.len()))
        );
        let e = inflate(&trailing, 32 << 20).unwrap_err();
        assert_eq!(e.status, 400);
        let said = format!(
            "gzip body has 1 bytes of trailing data after its gzip member, which ends at byte {} \
             (the first of them 0x78)",
            member.len()
        );
        assert!(e.error.starts_with(&said), "{}", e.error);
        // Zeros after it (which `gzip -d` takes) are named the same way.
        let zeros = [&member[..], &[0u8; 10]].concat();
        let e = inflate(&zeros, 32 << 20).unwrap_err();
        assert!(e.error.contains("10 bytes of trailing data"), "{}", e.error);
        // A second member cut short is the reader's to name.
        let second = [&member[..], &member[..member.len() - 1]].concat();
        let e = inflate(&second, 32 << 20).unwrap_err();
        assert!(e.error.starts_with("gzip body is truncated"), "{}", e.error);
        let cut = &member[..member.len() - 1];
        assert_eq!(inflate_lone_member(cut, 32 << 20), Lone::Other(None));
        let e = inflate(cut, 32 << 20).unwrap_err();
        assert!(e.error.starts_with("gzip body is truncated"), "{}", e.error);
    }

    /// A body with a byte-order mark, and one gzipped twice, are refused
    /// saying so (a hostile-client probe found "expected value at line 1
    /// column 1" and "body is not valid UTF-8 at byte 1").
    #[test]
    fn a_byte_order_mark_and_a_body_gzipped_twice_are_named() {
        let json = br#"[{"@t":"a","@ts":"2026-12-04T01:00:00"}]"#;
        let bom = [&b"\xef\xbb\xbf"[..], json].concat();
        let e = decode(&cfg_open(), None, &bom).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.error.contains("byte-order mark"), "{}", e.error);
        // Past the first byte, a mark is the JSON reader's to name.
        let late = [&b" "[..], &bom].concat();
        let e = decode(&cfg_open(), None, &late).unwrap_err();
        assert!(!e.error.contains("byte-order mark"), "{}", e.error);
        let twice = gz(&gz(json, None), None);
        let e = decode(&cfg_open(), Some("gzip, gzip"), &twice).unwrap_err();
        assert_eq!(e.status, 415);
        assert!(
            e.error
                .contains("inflated to another gzip stream (content-encoding 'gzip, gzip')"),
            "{}",
            e.error
        );
        assert!(decode(&cfg_open(), Some("gzip"), &gz(json, None)).is_ok());
    }

    #[test]
    fn one_gzip_member_past_the_limit_is_refused_without_inflating_all_of_it() {
        let zeros = gz(&vec![0u8; 8 << 20], None);
        assert_eq!(inflate_lone_member(&zeros, 1 << 20), Lone::TooLarge);
        let e = inflate(&zeros, 1 << 20).unwrap_err();
        assert_eq!(e.status, 413, "{}", e.error);
        assert!(e.error.contains("limit of 1048576 bytes"), "{}", e.error);
        // Exactly at the limit is not past it.
        let at = gz(&vec![b' '; 1 << 20], None);
        assert!(matches!(inflate_lone_member(&at, 1 << 20), Lone::Whole(o) if o.len() == 1 << 20));
        assert_eq!(inflate_lone_member(&at, (1 << 20) - 1), Lone::TooLarge);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The one call agrees with the streaming reader whatever the body:
        /// it inflates a lone whole member to the same bytes, leaves every
        /// other body to the reader, and calls too large only what is.
        #[test]
        fn inflating_in_one_call_agrees_with_the_streaming_reader(
            data in prop::collection::vec(prop_oneof![Just(b'a'), any::<u8>()], 0..4000),
            members in 1usize..4,
            named in any::<bool>(),
            damage in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
            cut in prop::option::of(any::<prop::sample::Index>()),
            limit in prop_oneof![Just(32usize << 20), 0usize..5000],
        ) {
            let member = gz(&data, named.then_some("f.json"));
            let mut wire: Vec<u8> = member.repeat(members);
            if let Some((at, x)) = damage {
                let i = at.index(wire.len());
                wire[i] ^= x;
            }
            if let Some(at) = cut {
                wire.truncate(at.index(wire.len() + 1));
            }
            let reference = streamed(&wire, limit);
            match inflate_lone_member(&wire, limit) {
                Lone::Whole(out) => prop_assert_eq!(Some(out), reference),
                Lone::TooLarge => prop_assert!(reference.is_some_and(|r| r.len() > limit)),
                // Only a damaged body is corrupt, and the reader refuses it
                // too (unless it stopped at the limit first).
                Lone::Corrupt(_) => prop_assert!(
                    damage.is_some() && reference.is_none_or(|r| r.len() > limit)
                ),
                Lone::Other(_) => {
                    // Only a body that is not one whole member within the
                    // limit is left to the reader.
                    let untouched = members == 1 && damage.is_none() && cut.is_none();
                    prop_assert!(!(untouched && data.len() <= limit));
                }
            }
        }
    }
}

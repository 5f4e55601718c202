//! One POST the way the device's uploader makes it, and what its answer
//! means to the device: shared by the simulator (and its demo), `replay`,
//! and the HTTP forward (which reads refusals the same way).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use crate::scrub::taken_out;

/// Says who is talking in the receiver's request view: not a real device.
const USER_AGENT: &str = concat!("autopi-rx-simulate/", env!("CARGO_PKG_VERSION"));
/// Failed attempts after which the device stops trying a batch (MAX RETRY
/// in its code).
pub const MAX_FAILURES: u32 = 10;
/// How much of a refusal's body is kept to explain it: enough for the
/// receiver's own 401 whole (about 400), whose end holds the hint to
/// compare fingerprints. It was 200, cut with no mark, and that hint was
/// lost (a README audit).
pub const REASON_CHARS: usize = 600;

/// Where and as whom to upload.
pub struct Target {
    pub url: String,
    /// The whole `authorization` value: secret, never printed.
    authorization: String,
    pub unit_id: String,
    pub timeout: Duration,
    /// CA certificates (DER) trusted instead of the Mozilla roots (`--ca`).
    pub ca: Option<Arc<Vec<Vec<u8>>>>,
}

impl Target {
    /// `authorization` is the full header value, e.g. `token T`.
    pub fn new(url: String, authorization: String, unit_id: String, timeout: Duration) -> Target {
        Target {
            url,
            authorization,
            unit_id,
            timeout,
            ca: None,
        }
    }

    /// Trusts only these CA certificates for an `https://` URL.
    pub fn trusting(mut self, ca: Option<Arc<Vec<Vec<u8>>>>) -> Target {
        self.ca = ca;
        self
    }
}

/// One batch, encoded once and sent byte for byte as often as needed.
pub struct Payload {
    /// Position of the batch in the session, from 0.
    pub number: u64,
    pub records: usize,
    /// Size of the JSON before compression.
    pub json_bytes: usize,
    /// What goes on the wire.
    pub body: Vec<u8>,
    pub gzip: bool,
}

/// Compact JSON array, gzipped at `gzip` level when asked.
pub fn encode(number: u64, records: &[Value], gzip: Option<u32>) -> Payload {
    let json = serde_json::to_vec(records).expect("JSON values serialize");
    encode_json(number, records.len(), json, gzip)
}

/// A batch already in JSON (`records` of them), gzipped when asked.
pub fn encode_json(number: u64, records: usize, json: Vec<u8>, gzip: Option<u32>) -> Payload {
    let json_bytes = json.len();
    let body = match gzip {
        Some(level) => {
            let mut gz =
                GzEncoder::new(Vec::with_capacity(json_bytes / 4), Compression::new(level));
            gz.write_all(&json).expect("writing to a Vec cannot fail");
            gz.finish().expect("writing to a Vec cannot fail")
        }
        None => json,
    };
    Payload {
        number,
        records,
        json_bytes,
        body,
        gzip: gzip.is_some(),
    }
}

/// Whether a refusal is for the batch itself, so that the same bytes
/// would be refused again: a 4xx other than 408 (the request timed out)
/// and 429 (too many requests). The device retries every refusal; a
/// replay stops at one of these, and a forward parks the batch.
pub fn refused_for_good(status: u16) -> bool {
    (400..=499).contains(&status) && !matches!(status, 408 | 429)
}

/// What the answer means to the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Status below 400: the device deletes the batch.
    Acknowledged { status: u16, latency: Duration },
    /// 4xx or 5xx: the batch goes to the retry queue. `retry_after`: how
    /// long the answer's `Retry-After` asked to wait (the device ignores
    /// it; `replay` waits that long).
    Refused {
        status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Timeout or broken connection: the same bytes go again.
    NoAnswer { reason: String },
}

/// Refuses a URL whose port is not one (`:80000`, `:99999`): the `http`
/// crate takes such an authority, its port reads as none, and the request
/// went to the scheme's default port (a typo for 8000 sent the batches
/// and the token to port 80).
///
/// A refusal of a URL never quotes it or a part of it: it may hold a
/// password, a key in its query, or a token pasted in by mistake (a
/// review: `mqtt://u:PASS/WORD@h/x` was refused quoting `PASS`).
pub fn check_port(flag: &str, uri: &ureq::http::Uri) -> Result<(), String> {
    let Some(authority) = uri.authority() else {
        return Ok(());
    };
    let text = authority.as_str();
    let host = text.rsplit_once('@').map_or(text, |(_, host)| host);
    let after_host = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
    match after_host.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.parse::<u16>().is_err() => Err(format!(
            "{flag}: the port after the host is not a port (a number from 0 to 65535)"
        )),
        _ => Ok(()),
    }
}

/// A device's HTTP client: one keep-alive connection, reused.
pub struct Uploader {
    agent: ureq::Agent,
    target: Arc<Target>,
}

impl Uploader {
    pub fn new(target: Arc<Target>) -> Uploader {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(target.timeout))
            // The device judges the status itself; a 3xx is shown, not
            // followed, so a receiver that redirects is caught.
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(USER_AGENT)
            .tls_config(crate::forward::http::tls_config(target.ca.as_deref()))
            .build();
        Uploader {
            agent: config.into(),
            target,
        }
    }

    pub fn post(&self, payload: &Payload) -> Answer {
        self.post_as(payload, Some(&self.target.unit_id))
    }

    /// Posts with this `unit-id` (none: the header is left out, as very old
    /// firmware does); replay sends each batch with the one it came with.
    /// The token: what follows the scheme in `authorization`.
    fn secret(&self) -> Option<&str> {
        self.target.authorization.split_once(' ').map(|(_, s)| s)
    }

    pub fn post_as(&self, payload: &Payload, unit_id: Option<&str>) -> Answer {
        let t = &*self.target;
        let mut request = self
            .agent
            .post(&t.url)
            .header("authorization", &t.authorization)
            .header("content-type", "application/json");
        if let Some(unit_id) = unit_id {
            request = request.header("unit-id", unit_id);
        }
        if payload.gzip {
            request = request.header("content-encoding", "gzip");
        }
        let started = Instant::now();
        let mut response = match request.send(&payload.body[..]) {
            Ok(r) => r,
            Err(e) => return no_answer(&e, t.timeout, self.secret()),
        };
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name)?.to_str().ok();
        let retry_after =
            header("retry-after").and_then(|v| retry_after(v, header("date"), SystemTime::now()));
        // The answer is read to its end when it is short (the connection is
        // then used again); past `ANSWER_BYTES`, or when the rest does not
        // come in time, what came is enough: the status decides, as for the
        // device. A refusal's large page (a proxy's login form) was taken
        // for no answer, and a 2xx whose body dripped for a re-send.
        let mut body = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(ANSWER_BYTES)
            .read_to_end(&mut body);
        let latency = started.elapsed();
        if status < 400 {
            return Answer::Acknowledged { status, latency };
        }
        let secret = self.secret();
        Answer::Refused {
            status,
            reason: reason_from_cleaned(&body, |text| taken_out(text, secret, "[token]")),
            retry_after,
        }
    }
}

/// The most of an answer's body read to explain it.
const ANSWER_BYTES: u64 = 64 * 1024;

/// How long `Retry-After` asks to wait: seconds, or an HTTP date (any of
/// the three forms RFC 9110 has a recipient read). A date counts from the
/// answer's own `Date` when it has a readable one, so the upstream's clock
/// and ours need not agree, else from `now`; a date already past asks for
/// no wait. Anything else (a sign, a fraction, a date in no HTTP form or
/// with the wrong weekday) is not a wait.
pub fn retry_after(value: &str, date: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds is still a long wait (capped by
        // the caller), not none.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let until = httpdate::parse_http_date(value).ok()?;
    let from = date
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or(now);
    Some(until.duration_since(from).unwrap_or_default())
}

fn no_answer(e: &ureq::Error, timeout: Duration, secret: Option<&str>) -> Answer {
    let reason = match e {
        ureq::Error::Timeout(_) => format!("no answer within {:.3} s", timeout.as_secs_f64()),
        // A TLS failure names the certificate's names, which the server
        // chose: escape sequences in them reached the terminal (a probe),
        // and a name may spell the token it was sent before (another).
        other => format!(
            "connection failed: {}",
            crate::text::shown(&taken_out(other.to_string(), secret, "[token]"))
        ),
    };
    Answer::NoAnswer { reason }
}

/// A refusal's reason on one line: the receiver's `error` field when the
/// body is `{"error": ...}`, otherwise the start of the body; `clean` is
/// applied to the text before it is put on one line and cut (the token
/// is taken out there: cut first, a token near the cut would be left in
/// part).
pub fn reason_from_cleaned(body: &[u8], clean: impl Fn(String) -> String) -> String {
    let from_json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
    let text = clean(from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()));
    match one_line(&text).as_str() {
        "" => "no reason given".to_string(),
        l => l.to_string(),
    }
}

/// An answer's words as a reason shows them: on one line, trimmed, cut to
/// `REASON_CHARS` characters with `…` where cut. Whatever must not be
/// shown is to be taken out first: a cut could leave part of it.
pub fn one_line(text: &str) -> String {
    one_line_within(text, REASON_CHARS)
}

/// `one_line`, cut to `most` characters.
pub fn one_line_within(text: &str, most: usize) -> String {
    let mut chars = crate::text::on_one_line(text);
    let mut line: String = chars.by_ref().take(most).collect();
    if chars.any(|c| !c.is_whitespace()) {
        line.truncate(line.trim_end().len());
        line.push('…');
    }
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_with_a_mark_and_only_where_it_goes_on() {
        let long = format!("why {}", "x".repeat(1000));
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), REASON_CHARS + 1);
        assert!(cut.ends_with("x…"), "{cut}");
        let exact = "y".repeat(REASON_CHARS);
        assert_eq!(one_line(&format!("{exact} \n ")), exact);
        assert_eq!(one_line(" short\nreason "), "short reason");
    }

    #[test]
    fn a_port_that_is_not_one_is_refused() {
        let check = |url: &str| check_port("--url", &url.parse().unwrap());
        assert!(check("http://127.0.0.1:8000/x").is_ok());
        assert!(check("http://[::1]:8000/x").is_ok());
        assert!(check("http://bench.lan/x").is_ok());
        assert!(check("http://[::1]/x").is_ok());
        assert!(check("http://u:pw@h:8000/x").is_ok());
        for bad in [
            "http://127.0.0.1:80080/",
            "http://h:99999",
            "http://[::1]:65536/",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("is not a port"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_reason_shows_no_invisible_character_and_no_token() {
        let body = "{\"error\":\"bad \u{202e}token s3/cret \\u001b[2J token s3\\\\/cret\"}";
        let reason = reason_from_cleaned(body.as_bytes(), |t| {
            taken_out(t, Some("s3/cret"), "[token]")
        });
        assert_eq!(reason, "bad  token [token]  [2J token [token]");
        // Quoted back inside other JSON, as writers escape it.
        let secret = r#"a"b\c&d/e"#;
        for echo in [
            r#"{"headers":{"authorization":"token a\"b\\c&d/e"}}"#,
            r#"{"headers":{"authorization":"token a\"b\\c&d\/e"}}"#,
            r#"{"headers":{"authorization":"token a\"b\\c\u0026d/e"}}"#,
        ] {
            let reason =
                reason_from_cleaned(echo.as_bytes(), |t| taken_out(t, Some(secret), "[token]"));
            assert!(
                reason.contains("token [token]") && !reason.contains("c&d"),
                "{reason}"
            );
            assert!(!reason.contains("u0026d"), "{reason}");
        }
        // Percent-encoded, in either case of hex digit.
        for echo in [
            "echo: FWD%2Fabc%2Bxyz",
            "echo: FWD%2fabc%2bxyz",
            "echo: FWD/abc%2Bxyz",
        ] {
            let reason = reason_from_cleaned(echo.as_bytes(), |t| {
                taken_out(t, Some("FWD/abc+xyz"), "[forward token]")
            });
            assert_eq!(reason, "echo: [forward token]");
        }
    }
}

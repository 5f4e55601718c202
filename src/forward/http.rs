//! Forwarding to an HTTP upstream (the AutoPi cloud's storage endpoint, or
//! the user's own server): each batch is POSTed as the device sent it, the
//! same body bytes with its `content-encoding` and `unit-id`, so the
//! upstream cannot tell it from the device.

use crate::scrub::all_taken_out;
use crate::upload::{reason_from_cleaned, refused_for_good, retry_after};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::{HeaderValue, Uri};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::{Attempt, Deliver};
use crate::capture::OutboxLine;

/// How long an upstream may keep a POST waiting at any one step (see
/// `Http::new`) before it counts as failed and is retried, unless
/// `--forward-timeout` says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest an upstream may read a body, in bytes a second (256 kbit/s):
/// a body of N bytes has `timeout` + N / this to be taken, and as long
/// again for the answer once it was all sent (the socket buffers take a
/// few MB at once, so the upstream may still be reading it then): 33 s for
/// a device's 100 kB, about 17 min for 32 MiB, each at the default.
const SLOWEST_TAKE: u64 = 32 * 1024;

/// A checked `--forward http(s)://…` target.
#[derive(Clone)]
pub struct HttpTarget {
    pub url: String,
    /// The URL without its query (which may hold a key).
    pub name: String,
    /// The whole `authorization` header value; never shown.
    authorization: Option<String>,
    /// The URL's query (which may hold a key); never shown.
    query: Option<String>,
    /// `--forward-timeout`.
    timeout: Duration,
    /// CA certificates (DER) trusted instead of the Mozilla roots.
    ca: Option<Arc<Vec<Vec<u8>>>>,
    /// The client certificate, for an upstream that asks for one.
    identity: Option<Arc<super::ClientIdentity>>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HttpTarget {
    pub fn parse(url: &str, credentials: &super::Credentials) -> Result<HttpTarget, String> {
        let authorization = credentials.authorization.clone();
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--forward is not a URL: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err("--forward must name a host (http://HOST/PATH)".into());
        };
        if authority.as_str().contains('@') {
            return Err("--forward: put no credentials in the URL (they would show in process lists and on screen); give the token with --forward-token or AUTOPI_RX_FORWARD_TOKEN".into());
        }
        crate::upload::check_port("--forward", &uri)?;
        if let Some(a) = &authorization
            && HeaderValue::from_str(a).is_err()
        {
            return Err("the --forward-token (or AUTOPI_RX_FORWARD_TOKEN) holds characters a header cannot carry".into());
        }
        Ok(HttpTarget {
            query: uri.query().filter(|q| !q.is_empty()).map(str::to_owned),
            timeout: credentials.timeout.unwrap_or(TIMEOUT),
            url: url.to_string(),
            name: format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                authority,
                uri.path()
            ),
            authorization,
            ca: credentials.ca.clone(),
            identity: credentials.identity.clone(),
        })
    }
}

impl HttpTarget {
    /// What is never shown, with what is shown in its place: the token,
    /// and the URL's query, whole and each of its values of 8 characters
    /// or more (a key quoted on its own), where an answer quotes them, as
    /// written in the URL and decoded (`%2B` as `+`, and a form's `+` as a
    /// space): an upstream quotes the key it read, and a base64 key or a
    /// signature holds `%2B`, `%2F` or `%3D` (a review found `Sup3r%2BKey`
    /// quoted as `Sup3r+Key` on the status page).
    pub fn secrets(&self) -> Vec<(String, &'static str)> {
        let token = self
            .authorization
            .as_deref()
            .and_then(|a| a.split_once(' '))
            .map(|(_, credential)| (credential.to_string(), "[forward token]"));
        let mut query: Vec<String> = Vec::new();
        if let Some(q) = &self.query {
            let values = q
                .split('&')
                .filter_map(|pair| pair.split_once('=').map(|(_, v)| v));
            // Chosen by the part as written, then every spelling of it:
            // a key of 8 written characters can read as fewer (`Ab%2BCd9`
            // is `Ab+Cd9`), and that spelling was left in view (a review).
            for part in std::iter::once(q.as_str()).chain(values) {
                if part.chars().count() < 8 && part != q {
                    continue;
                }
                for spelled in spelled_as_read(part) {
                    if !spelled.is_empty() && !query.contains(&spelled) {
                        query.push(spelled);
                    }
                }
            }
        }
        let query = query.into_iter().map(|s| (s, crate::scrub::QUERY));
        token.into_iter().chain(query).collect()
    }
}

/// A part of a URL as written and as a server reads it: percent-decoded,
/// and with a form's `+` read as a space as well.
pub fn spelled_as_read(part: &str) -> Vec<String> {
    let decoded = crate::scrub::percent_decoded;
    let mut all = vec![
        part.to_string(),
        decoded(part),
        decoded(&part.replace('+', " ")),
    ];
    all.sort();
    all.dedup();
    all
}

/// rustls with the Mozilla roots, or only the given CA's (`--forward-ca`,
/// and `--ca` of `replay` and `simulate`).
pub fn tls_config(ca: Option<&Vec<Vec<u8>>>) -> TlsConfig {
    tls_config_with(ca, None)
}

/// `tls_config`, presenting `identity` to a server that asks for a client
/// certificate (mutual TLS).
pub fn tls_config_with(
    ca: Option<&Vec<Vec<u8>>>,
    identity: Option<&super::ClientIdentity>,
) -> TlsConfig {
    let roots = match ca {
        Some(certs) => RootCerts::new_with_certs(
            &certs
                .iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect::<Vec<_>>(),
        ),
        None => RootCerts::WebPki,
    };
    let client = identity.map(|id| id.http.clone());
    TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client)
        .build()
}

/// How long the upstream's answer may take to send its body (at most
/// 64 KiB is read) once its status came: a 2xx whose body stalls used to
/// hold each batch for the whole `TIMEOUT` (a hostile-upstream probe saw 2
/// batches a minute go out). It is judged by its status once this passes.
pub const ANSWER_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an upstream's answer that is read.
const ANSWER_BODY_MOST: u64 = 64 * 1024;

/// How long ureq keeps an idle connection (`max_idle_age`, set to this in
/// `Http::new`).
const KEPT_AT_MOST: Duration = Duration::from_secs(15);

/// Whether a POST failed the way a kept connection the upstream closed
/// fails: reset, cut, or ended before any answer. Not a timeout, a name
/// not resolved (looked up before the pool), or an answer ureq could not
/// read (the upstream may have taken the batch).
fn closed_unanswered(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    ))
}

/// The HTTP forwarder: one keep-alive agent, redirects not followed.
pub struct Http {
    target: HttpTarget,
    agent: ureq::Agent,
    /// `target.secrets()`, made once: taken out of every answer.
    secrets: Vec<(String, &'static str)>,
    /// When the last POST's answer was read to its end on a connection
    /// ureq keeps (see `deliver`): the next POST within `KEPT_AT_MOST`
    /// goes on it.
    warm: Option<Instant>,
}

impl Http {
    /// Each step of a POST has `target.timeout`: resolving, connecting
    /// (TLS included), sending the head, each write of the body; the body
    /// in the whole, and the answer's head once it is sent, have more the
    /// larger the body is (`body_timeout`), and the answer's body
    /// `ANSWER_BODY_TIMEOUT`. One timeout for the whole POST (until
    /// December 5) never let a 3 MB batch reach an upstream taking 64 KiB
    /// a second: tried again for ever, everything behind it waiting, and
    /// the upstream given the whole batch at each try (a probe's finding).
    pub fn new(target: HttpTarget) -> Http {
        let step = Some(target.timeout);
        let config = ureq::Agent::config_builder()
            .timeout_resolve(step)
            .timeout_connect(step)
            .timeout_send_request(step)
            .timeout_per_write(step)
            .timeout_recv_body(Some(ANSWER_BODY_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_age(KEPT_AT_MOST)
            // The device's own user-agent and accept headers are sent, or
            // none: nothing of the client's own.
            .user_agent("")
            .accept("")
            .accept_encoding("")
            .tls_config(tls_config_with(
                target.ca.as_deref(),
                target.identity.as_deref(),
            ))
            .build();
        Http {
            secrets: target.secrets(),
            target,
            agent: config.into(),
            warm: None,
        }
    }
}

/// A device's header value as it can be sent on: each control character
/// but the tab (ESC, DEL, which tiny_http takes and HTTP forbids in a
/// value) becomes a space, as RFC 9110 (5.5) has a recipient do before
/// passing a message on. The capture keeps the value as the device sent
/// it. Until December 6 such a batch was parked as unsendable: answered
/// 200, never forwarded (a hostile-client probe).
fn controls_as_spaces(value: &str) -> std::borrow::Cow<'_, str> {
    let control = |c: char| c.is_ascii_control() && c != '\t';
    if value.contains(control) {
        value.replace(control, " ").into()
    } else {
        value.into()
    }
}

impl Deliver for Http {
    fn deliver(&mut self, line: &OutboxLine) -> Attempt {
        let (body, encoding) = match line.wire_body() {
            Ok(b) => b,
            Err(reason) => return Attempt::Unsendable { reason },
        };
        let [user_agent, content_type, accept, accept_encoding] = line.device_headers();
        let mut headers = Vec::with_capacity(7);
        for (name, value) in [
            user_agent,
            content_type,
            accept,
            accept_encoding,
            ("content-encoding", encoding),
            ("unit-id", line.unit_id.as_deref()),
        ] {
            let Some(value) = value else { continue };
            let value = controls_as_spaces(value);
            if HeaderValue::from_str(&value).is_err() {
                return Attempt::Unsendable {
                    reason: format!("its {name} cannot be sent as a header"),
                };
            }
            headers.push((name, value));
        }
        if let Some(a) = &self.target.authorization {
            headers.push(("authorization", a.as_str().into()));
        }
        let whole = body_timeout(self.target.timeout, body.len());
        let mut sent = self.post(&headers, &body, whole, false);
        // The connection kept from the last answer may have been closed by
        // the upstream between ureq's check of it and our request reaching
        // it (a server's keep-alive timeout running out just then): nothing
        // is wrong with the upstream, and the POST goes again at once on a
        // new connection. Until December 6 it waited the backoff, and an
        // upstream closing each connection 10 ms after its answer had half
        // the batches fail once (a hostile-upstream probe: 49 delivered in
        // 13 s against 15 a second arriving).
        let warm = self
            .warm
            .take()
            .is_some_and(|at| at.elapsed() < KEPT_AT_MOST);
        if warm && matches!(&sent, Err(e) if closed_unanswered(e)) {
            sent = self.post(&headers, &body, whole, true);
        }
        let mut response = match sent {
            Ok(r) => r,
            Err(ureq::Error::Timeout(which)) => {
                return Attempt::Retry {
                    error: timed_out(which, self.target.timeout, whole, body.len()),
                    after: None,
                };
            }
            Err(e) => {
                return Attempt::Retry {
                    error: self.with_hint(e),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name)?.to_str().ok();
        let retry_after =
            header("retry-after").and_then(|v| retry_after(v, header("date"), SystemTime::now()));
        let location = header("location").map(str::to_owned);
        // What has ureq keep the connection (ureq-proto's own rules, as
        // far as the answer shows them): HTTP/1.1, no `connection: close`
        // in any of its headers, and a body whose end is marked (a length
        // or chunks; one that ends with the connection cannot be kept).
        let keeps = response.version() == ureq::http::Version::HTTP_11
            && !response
                .headers()
                .get_all("connection")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
            && (response.headers().contains_key("content-length")
                || response.headers().contains_key("transfer-encoding"));
        // Read to the end so the connection is reused; what came is kept
        // when the rest does not (its time or its size ran out).
        let mut answer = Vec::new();
        let read = response
            .body_mut()
            .as_reader()
            .take(ANSWER_BODY_MOST)
            .read_to_end(&mut answer);
        // Read to its end, the answer's connection went back to the pool.
        if read.is_ok() && (answer.len() as u64) < ANSWER_BODY_MOST && keeps {
            self.warm = Some(Instant::now());
        }
        judged(status, &answer, retry_after, location, &self.secrets)
    }
}

impl Http {
    /// POSTs `body` with `headers`, on a new connection when `fresh`
    /// (else on one kept from an earlier answer where there is one).
    fn post(
        &self,
        headers: &[(&str, std::borrow::Cow<'_, str>)],
        body: &[u8],
        whole: Duration,
        fresh: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.agent.post(&self.target.url);
        for (name, value) in headers {
            request = request.header(*name, &**value);
        }
        let mut config = request
            .config()
            .timeout_send_body(Some(whole))
            .timeout_recv_response(Some(whole));
        if fresh {
            // A kept connection is always older than no time at all.
            config = config.max_idle_age(Duration::ZERO);
        }
        config.build().send(body)
    }

    /// `e` as a reason, with a hint where it may be a missing client
    /// certificate: over TLS 1.3 a server that requires one finishes the
    /// handshake and then closes, so the client sees only a broken pipe
    /// or a reset, and ureq leaves no way to learn that it was asked.
    fn with_hint(&self, e: ureq::Error) -> String {
        let closed = closed_unanswered(&e);
        let unreadable = matches!(e, ureq::Error::Protocol(_));
        let mut reason = e.to_string();
        if unreadable {
            // It may have taken the batch, and answered 200 in a head
            // ureq refuses (a control byte in a value, a folded line): it
            // gets it again (a hostile-upstream probe; nothing said so).
            reason.push_str(
                " (the upstream's answer could not be read: it may have taken the batch, which goes again)",
            );
            return reason;
        }
        let https = self.target.name.starts_with("https://");
        if https && reason.contains("InvalidContentType") {
            // A plain-HTTP server's answer to a TLS hello (a 400 page).
            reason.push_str(" (the upstream may speak plain HTTP: try http://)");
            return reason;
        }
        if self.target.identity.is_some() || !https {
            return reason;
        }
        if reason.contains("CertificateRequired") {
            // The alert, when it is read before the write fails.
            reason.push_str(" (the upstream requires a client certificate: see --forward-cert)");
        } else if closed {
            reason.push_str(
                " (an upstream that requires a client certificate closes so when none is given: \
                 see --forward-cert)",
            );
        }
        reason
    }
}

/// The most time a body of `len` bytes has to be taken, and then to be
/// answered (see `SLOWEST_TAKE`).
fn body_timeout(step: Duration, len: usize) -> Duration {
    step + Duration::from_secs(len as u64 / SLOWEST_TAKE)
}

/// What a timeout of step `which` says: which step the upstream kept us
/// waiting at.
fn timed_out(which: ureq::Timeout, step: Duration, whole: Duration, len: usize) -> String {
    let (step, whole) = (step.as_secs(), whole.as_secs());
    match which {
        ureq::Timeout::Resolve => format!("its name not resolved within {step} s"),
        ureq::Timeout::Connect => format!("not connected within {step} s"),
        ureq::Timeout::PerWrite | ureq::Timeout::SendRequest => {
            format!("it took nothing more of the request for {step} s")
        }
        ureq::Timeout::SendBody => {
            format!("the {len}-byte body not taken within {whole} s ({step} s, and 1 s per 32 KiB)")
        }
        ureq::Timeout::RecvResponse if whole > step => format!(
            "no answer within {whole} s of the {len}-byte body ({step} s, and 1 s per 32 KiB)"
        ),
        _ => format!("no answer within {step} s"),
    }
}

/// `judge`, with the target's secrets (our forward credential, the URL's
/// query) taken out of what the upstream said: the answer's text (decoded
/// from a JSON `error`, which may spell it with any escapes) before the
/// reason is cut from it (cut first, a secret near the cut was left in
/// part: the query was, for a day), and the `Location` quoted in a
/// redirect's reason. The status page, the headless output and the cursor
/// file show the reason.
fn judged(
    status: u16,
    answer: &[u8],
    retry_after: Option<Duration>,
    location: Option<String>,
    secrets: &[(String, &str)],
) -> Attempt {
    let clean = |text: String| all_taken_out(text, secrets);
    let location = location.map(|l| crate::upload::one_line(&clean(l)));
    judge(status, answer, retry_after, location, clean)
}

/// What an upstream's status means for the batch:
/// - 2xx: delivered;
/// - 408, 429, 5xx: the upstream is busy or broken, try again (after
///   `Retry-After` when given);
/// - 3xx: the URL is not the final one, and a redirect is not followed:
///   nobody has judged the batch, so the target is down with the reason
///   (tried every 30 s) until `--forward` names the final URL;
/// - any other 4xx (401, 403, 404, 413, …): the upstream refused this
///   batch: parked with the reason (a hint added for the statuses that
///   usually mean the token or the URL), and the next batch goes on.
///
/// `clean` is applied to the answer's text before the reason is cut from
/// it.
fn judge(
    status: u16,
    answer: &[u8],
    retry_after: Option<Duration>,
    location: Option<String>,
    clean: impl Fn(String) -> String,
) -> Attempt {
    let reason = || format!("{status}: {}", reason_from_cleaned(answer, &clean));
    match status {
        200..=299 => Attempt::Delivered,
        300..=399 => Attempt::Retry {
            error: format!(
                "{status}: redirected to {} (not followed: give the final URL to --forward; a new URL starts from the capture's first line unless its cursor is carried over, see the README)",
                location.as_deref().unwrap_or("nowhere")
            ),
            after: Some(super::BACKOFF_MAX),
        },
        401 | 403 | 407 => Attempt::Park {
            reason: format!("{} (check --forward-token and --forward-scheme)", reason()),
        },
        404 | 405 => Attempt::Park {
            reason: format!("{} (check the --forward URL)", reason()),
        },
        _ if refused_for_good(status) => Attempt::Park { reason: reason() },
        // 408, 429, 5xx.
        400..=599 => Attempt::Retry {
            error: reason(),
            after: retry_after,
        },
        // Not a status HTTP defines: a broken upstream.
        _ => Attempt::Retry {
            error: reason(),
            after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Retry-After` in seconds, and as a date in each of HTTP's three
    /// forms, counted from the answer's `Date` (the upstream's clock) when
    /// it has one, else from ours.
    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let at = |s: &str| httpdate::parse_http_date(s).unwrap();
        let now = at("Sun, 06 Nov 1994 08:49:37 GMT");
        let wait = |v: &str, date: Option<&str>| retry_after(v, date, now);
        assert_eq!(wait("7", None), Some(Duration::from_secs(7)));
        assert_eq!(wait(" 0 ", None), Some(Duration::ZERO));
        assert_eq!(
            wait("99999999999999999999999", None),
            Some(Duration::from_secs(u64::MAX))
        );
        for ahead in [
            "Sun, 06 Nov 1994 08:49:49 GMT",
            "Sunday, 06-Nov-94 08:49:49 GMT",
            "Sun Nov  6 08:49:49 1994",
        ] {
            assert_eq!(wait(ahead, None), Some(Duration::from_secs(12)), "{ahead}");
        }
        // The upstream's clock is an hour behind ours: its own Date says
        // how far ahead it means.
        let date = Some("Sun, 06 Nov 1994 07:49:37 GMT");
        assert_eq!(
            wait("Sun, 06 Nov 1994 07:49:40 GMT", date),
            Some(Duration::from_secs(3))
        );
        // An unreadable Date: ours.
        assert_eq!(
            wait("Sun, 06 Nov 1994 08:49:40 GMT", Some("yesterday")),
            Some(Duration::from_secs(3))
        );
        // A date already past: no wait beyond the backoff.
        assert_eq!(
            wait("Sun, 06 Nov 1994 08:00:00 GMT", None),
            Some(Duration::ZERO)
        );
        for not_a_wait in [
            "-5",
            "+5",
            "soon",
            "",
            "1.5",
            "Sun, 06 Nov 1994 08:49:49 CET",
        ] {
            assert_eq!(wait(not_a_wait, None), None, "{not_a_wait:?}");
        }
    }

    /// An echo of our token, anywhere in the answer: also where the reason
    /// is cut (it was left there in part, found by a hostile-upstream
    /// probe), and JSON-escaped as PHP writes it.
    #[test]
    fn an_answer_echoing_our_token_does_not_put_it_in_the_reason() {
        let ours = [("s3cret/forward".to_string(), "[forward token]")];
        let near_the_cut = format!(r#"{{"error":"{}token s3cret/forward"}}"#, "x".repeat(181));
        // With escapes that are decoded only when the reason is made
        // (`\u0073` for `s`, as some JSON writers spell characters).
        let near_the_cut_escaped = format!(
            r#"{{"error":"{}token \u0073\u0033cret/forward"}}"#,
            "x".repeat(181)
        );
        for (status, echo) in [
            (401, &br#"{"error":"bad token: token s3cret/forward"}"#[..]),
            (500, b"Authorization: token s3cret/forward"),
            (401, near_the_cut.as_bytes()),
            (401, near_the_cut_escaped.as_bytes()),
            (
                401,
                br#"{"headers":{"authorization":"token s3cret\/forward"}}"#,
            ),
        ] {
            let attempt = judged(status, echo, None, None, &ours);
            let text = match attempt {
                Attempt::Park { reason } => reason,
                Attempt::Retry { error, .. } => error,
                Attempt::Delivered | Attempt::NothingToSend | Attempt::Unsendable { .. } => {
                    unreachable!("refused")
                }
            };
            assert!(!text.contains("s3cret"), "{status}: {text}");
            assert!(text.contains("[forward tok"), "{status}: {text}");
        }
        // The URL's query, near the cut and quoted on its own: taken out
        // before the cut, as the token is (a reviewer's finding).
        let target = HttpTarget::parse(
            "http://up.example/x?key=SUPERSECRETKEY1234",
            &crate::forward::Credentials::default(),
        )
        .unwrap();
        let echo = format!("{} key=SUPERSECRETKEY1234 trailing", "x".repeat(185));
        for answer in [echo.as_str(), "invalid api key SUPERSECRETKEY1234"] {
            let Attempt::Park { reason } =
                judged(401, answer.as_bytes(), None, None, &target.secrets())
            else {
                panic!("parked");
            };
            assert!(!reason.contains("SUPERSEC"), "{reason}");
        }
        // In a redirect's `Location`.
        let location = Some("https://up.example/?t=s3cret/forward".to_string());
        let Attempt::Retry { error, .. } = judged(302, b"", None, location, &ours) else {
            panic!("a redirect is tried again");
        };
        assert!(error.contains("?t=[forward token]"), "{error}");
        // A Location of 60 000 bytes is cut as an answer's words are (it
        // filled the status page's forward line and the headless notes,
        // a hostile-client probe).
        let long = Some(format!("https://up.example/{}", "a".repeat(60_000)));
        let Attempt::Retry { error, .. } = judged(301, b"", None, long, &ours) else {
            panic!("a redirect is tried again");
        };
        assert!(
            error.len() < crate::upload::REASON_CHARS + 200,
            "{} bytes",
            error.len()
        );
        assert!(error.contains("aaa…"), "{error}");
    }

    fn kind(status: u16) -> &'static str {
        match judged(status, br#"{"error":"why"}"#, None, None, &[]) {
            Attempt::Delivered => "delivered",
            Attempt::NothingToSend => "nothing to send",
            Attempt::Retry { .. } => "retry",
            Attempt::Park { .. } => "park",
            Attempt::Unsendable { .. } => "unsendable",
        }
    }

    #[test]
    fn statuses_decide_deliver_retry_or_park() {
        for (status, want) in [
            (200, "delivered"),
            (204, "delivered"),
            (302, "retry"),
            (400, "park"),
            (301, "retry"),
            (308, "retry"),
            (401, "park"),
            (403, "park"),
            (404, "park"),
            (405, "park"),
            (407, "park"),
            (408, "retry"),
            (413, "park"),
            (415, "park"),
            (422, "park"),
            (429, "retry"),
            (499, "park"),
            (500, "retry"),
            (503, "retry"),
            (599, "retry"),
            // Not statuses HTTP defines, and a 1xx as a final answer: a
            // broken upstream.
            (99, "retry"),
            (100, "retry"),
            (199, "retry"),
            (600, "retry"),
        ] {
            assert_eq!(kind(status), want, "{status}");
        }
        // A busy upstream's wait is taken; a broken one's is not.
        let asked = Some(Duration::from_secs(7));
        for (status, after) in [(408, asked), (429, asked), (503, asked), (600, None)] {
            let Attempt::Retry { after: got, .. } = judged(status, b"", asked, None, &[]) else {
                panic!("{status} retries");
            };
            assert_eq!(got, after, "{status}");
        }
        let Attempt::Park { reason } = judged(413, br#"{"error":"too big"}"#, None, None, &[])
        else {
            panic!("413 parks");
        };
        assert_eq!(reason, "413: too big");
    }

    #[test]
    fn urls_with_credentials_are_refused_and_names_drop_the_query() {
        let none = super::super::Credentials::default();
        assert!(HttpTarget::parse("http://u:p@h/x", &none).is_err());
        let port = HttpTarget::parse("http://127.0.0.1:80080/x", &none).unwrap_err();
        assert!(port.contains("is not a port"), "{port}");
        let t = HttpTarget::parse("https://h:8443/a/b?key=SECRET", &none).unwrap();
        assert_eq!(t.name, "https://h:8443/a/b");
        assert!(!format!("{t:?}").contains("SECRET"));
        // A value of 8 written characters is a secret in every spelling,
        // also where it reads as fewer (a review: `Ab+Cd/9` was left).
        let t = HttpTarget::parse("https://h/a?sig=Ab%2BCd%2F9&k=1", &none).unwrap();
        let secrets: Vec<String> = t.secrets().into_iter().map(|(s, _)| s).collect();
        for want in ["Ab%2BCd%2F9", "Ab+Cd/9"] {
            assert!(secrets.iter().any(|s| s == want), "{want}: {secrets:?}");
        }
        assert!(!secrets.iter().any(|s| s == "1"), "{secrets:?}");
    }
}

//! Command line: flags, environment, and turning them into settings.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::receiver::ingest::{Auth, DEFAULT_MAX_BODY, SHORT_TOKEN};
use crate::run::{Fatal, Settings};
use crate::simulate::demo;
use crate::simulate::{Scheme, SimulateArgs};

/// Receives AutoPi uploads on the bench: saves every batch durably before
/// answering 2xx, and shows each request as it comes.
#[derive(Parser)]
#[command(name = "autopi-rx", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub receive: ReceiveArgs,
}

/// The flags whose value is a credential, and the label a refusal shows
/// in its place.
const CREDENTIAL_FLAGS: [(&str, &str); 2] = [
    ("--token", "[token]"),
    ("--forward-token", "[forward token]"),
];

/// The command line parsed as clap parses it, with two differences for a
/// credential: one starting with `-` given after its flag (`--token
/// -x9…`, or `--token -- -x9…` as clap's tip has it) is that flag's value,
/// where clap would refuse it as an unknown flag and quote it; and a
/// refusal never quotes a credential given on the command line. Exits as
/// clap does on a refusal, `--help` or `--version`.
pub fn parse() -> Cli {
    let args = credentials_as_values(std::env::args_os().collect());
    let refused = match Cli::try_parse_from(&args) {
        Ok(cli) => return cli,
        Err(refused) => refused,
    };
    let credentials = credentials_in(&args);
    if !refused.use_stderr() || credentials.is_empty() {
        refused.exit()
    }
    // The same refusal made from the command line with each credential
    // replaced by a marker wherever it stands in a value: the message
    // quotes the marker where it would quote the credential (also inside
    // a value, or lowered), and the marker is then replaced by the label.
    // clap's own words are left as they are (replacing the credential in
    // the text replaced a short token inside them, and so showed it).
    match Cli::try_parse_from(masked(&args, &credentials)) {
        Err(again) if again.kind() == refused.kind() => {
            let mut shown = again.render().to_string();
            for (n, (credential, label)) in credentials.iter().enumerate() {
                shown = shown.replace(&marker(n, credential), label);
            }
            crate::say!("{}", shown.trim_end());
            std::process::exit(again.exit_code())
        }
        _ => {
            crate::say!(
                "error: the command line was refused, in words that would quote a token given \
                 on it, so they are not shown; check the flags and their values (--help)"
            );
            std::process::exit(2)
        }
    }
}

/// What stands for credential `n` in the masked command line: lower-case
/// letters and digits, so a value parser that lowers what it quotes
/// quotes it unchanged, after the dashes the credential starts with (so a
/// word that was taken for a flag still is).
fn marker(n: usize, credential: &str) -> String {
    let dashes = credential.len() - credential.trim_start_matches('-').len();
    format!("{}zqxcredential{n}zqx", "-".repeat(dashes))
}

/// `args` with every credential in a value replaced by its marker,
/// matched without regard to ASCII case; flags' names are left.
fn masked(args: &[OsString], credentials: &[(String, &str)]) -> Vec<OsString> {
    let known = known_flags(args);
    let mut order: Vec<(usize, &String)> = credentials.iter().map(|(c, _)| c).enumerate().collect();
    order.sort_by_key(|(_, c)| std::cmp::Reverse(c.len()));
    let mask = |text: &str| -> String {
        let mut text = text.to_string();
        for &(n, credential) in &order {
            let wanted = credential.to_ascii_lowercase();
            // ASCII lowering keeps every byte where it was; the search goes
            // on after each marker put in (a marker may hold the credential).
            let mut from = 0;
            while let Some(at) = text.to_ascii_lowercase()[from..].find(&wanted) {
                let at = from + at;
                let mark = marker(n, credential);
                text.replace_range(at..at + wanted.len(), &mark);
                from = at + mark.len();
            }
        }
        text
    };
    args.iter()
        .enumerate()
        .map(|(i, word)| match word.to_str() {
            Some(w) if i == 0 || w == "--" => word.clone(),
            Some(w) if names_a_flag(&known, w) => match w.split_once('=') {
                Some((flag, value)) => format!("{flag}={}", mask(value)).into(),
                None => word.clone(),
            },
            Some(w) => mask(w).into(),
            None => word.clone(),
        })
        .collect()
}

/// The flags of the command `args` name (the subcommand given first, else
/// the receiver's own), as typed (`--listen`, `-h`).
fn known_flags(args: &[OsString]) -> Vec<String> {
    let root = <Cli as clap::CommandFactory>::command();
    let command = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| root.find_subcommand(name))
        .unwrap_or(&root);
    let mut flags: Vec<String> = ["--help", "-h", "--version", "-V"].map(String::from).into();
    for arg in command.get_arguments() {
        let longs = arg.get_long_and_visible_aliases().into_iter().flatten();
        flags.extend(longs.map(|l| format!("--{l}")));
        let shorts = arg.get_short_and_visible_aliases().into_iter().flatten();
        flags.extend(shorts.map(|c| format!("-{c}")));
    }
    flags
}

/// Whether `word` is one of `known` flags, alone or as `--flag=value`.
fn names_a_flag(known: &[String], word: &str) -> bool {
    let name = word.split('=').next().unwrap_or(word);
    known.iter().any(|k| k == name)
}

/// `args` with a credential flag followed by a word starting with `-` that
/// is no flag of the command written as `--token=-word`, so clap takes it
/// as the value (a forgotten value followed by a flag stays a forgotten
/// value); and `--token -- WORD` (clap's tip for a value starting with
/// `-`, which it does not take for a flag's value) as `--token=WORD`.
fn credentials_as_values(args: Vec<OsString>) -> Vec<OsString> {
    // Most command lines hold no credential flag: clap's description of
    // the commands is not built for them.
    let is_credential_flag =
        |word: &OsString| CREDENTIAL_FLAGS.iter().any(|(flag, _)| word == *flag);
    if !args.iter().any(is_credential_flag) {
        return args;
    }
    let known = known_flags(&args);
    let mut out = Vec::with_capacity(args.len());
    let mut words = args.into_iter().peekable();
    while let Some(word) = words.next() {
        if word == "--" {
            out.push(word);
            out.extend(words);
            break;
        }
        let credential_flag = is_credential_flag(&word);
        let next = words
            .peek()
            .and_then(|next| next.to_str())
            .map(String::from);
        let value = match next.as_deref() {
            Some("--") if credential_flag => {
                words.next();
                words.next()
            }
            Some(next)
                if credential_flag && next.starts_with('-') && !names_a_flag(&known, next) =>
            {
                words.next()
            }
            _ => None,
        };
        match value {
            Some(value) => {
                let mut joined = word;
                joined.push("=");
                joined.push(value);
                out.push(joined);
            }
            None => out.push(word),
        }
    }
    out
}

/// The credentials given on the command line `args` (as
/// `credentials_as_values` left it), with their labels: the word after a
/// credential flag and the value in `--token=…`.
fn credentials_in(args: &[OsString]) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for (i, word) in args.iter().enumerate() {
        let Some(word) = word.to_str() else { continue };
        for (flag, label) in CREDENTIAL_FLAGS {
            let value = if word == flag {
                args.get(i + 1)
                    .and_then(|next| next.to_str())
                    .filter(|next| !next.starts_with('-'))
            } else {
                word.strip_prefix(flag)
                    .and_then(|rest| rest.strip_prefix('='))
            };
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                found.push((value.to_string(), label));
            }
        }
    }
    found
}

#[derive(Subcommand)]
pub enum Command {
    /// Act as an AutoPi device uploading a generated drive (also a load generator).
    Simulate(SimulateArgs),
    /// Look back at captures: the dashboard offline with a timeline, or a summary.
    View(ViewArgs),
    /// Send a capture's batches to a receiver again, with the device's pacing, answers and retries.
    Replay(ReplayArgs),
    /// Write captures as GPX, GeoJSON, CSV or batches (JSON Lines).
    Export(ExportArgs),
    /// Read a token on stdin and print the fingerprint refusals show for
    /// it (never the token), to tell which token a device sent.
    Fingerprint,
}

#[derive(Args)]
pub struct ViewArgs {
    /// Capture files (several devices or days are merged by arrival time).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print a summary per device instead of the dashboard (the default
    /// when stdout is not a terminal).
    #[arg(long)]
    pub summary: bool,

    /// The summary as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ViewArgs {
    /// True when the summary, not the dashboard, is wanted.
    pub fn wants_summary(&self) -> bool {
        self.summary || self.json || !std::io::stdout().is_terminal()
    }
}

#[derive(Args)]
// A negative number is a flag's value, refused with its range, where
// clap took `-1` for a flag and advised `-- -1`, which does not work.
#[command(allow_negative_numbers = true)]
pub struct ReplayArgs {
    /// The capture to send again.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Where to POST (nothing is appended).
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// The receiving side's token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "AUTOPI_RX_TOKEN",
        hide_env_values = true
    )]
    pub token: String,

    /// Replay at X times the capture's pace [default: 1].
    #[arg(long, value_name = "X", conflicts_with = "as_fast_as_possible")]
    pub speed: Option<f64>,

    /// Send each batch as soon as the one before is acknowledged.
    #[arg(long)]
    pub as_fast_as_possible: bool,

    /// Authorization scheme: `token` (the device's code) or `bearer` (the guide).
    #[arg(long, value_enum, default_value_t = Scheme::Token)]
    pub scheme: Scheme,

    /// Gzip every body at LEVEL 0-9 [9 when no level is given].
    #[arg(
        long,
        value_name = "LEVEL",
        num_args = 0..=1,
        default_missing_value = "9",
        value_parser = clap::value_parser!(u32).range(0..=9)
    )]
    pub gzip: Option<u32>,

    /// Also send the batches captured as duplicates.
    #[arg(long)]
    pub include_duplicates: bool,

    /// Seconds to wait for an answer before sending the same bytes again.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Seconds to wait before sending a failed batch again (longer when a
    /// refusal's Retry-After asks, up to 300).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub retry_wait: f64,

    /// Trust the CA certificates in this PEM file (instead of the Mozilla
    /// roots) for an https:// URL.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl ReplayArgs {
    /// Checks the flags; the message names the flag, never the token.
    pub fn settings(&self) -> Result<crate::capture::replay::Settings, String> {
        use crate::capture::replay::{Pacing, Settings};
        use crate::simulate::{Target, authorization, check_url, seconds};
        // Whatever a message quotes from here on (a path given as the
        // token by mistake, a capture line holding it: a probe).
        crate::scrub::keep_out_of_stderr(&self.token, "[token]");
        let pacing = match (self.as_fast_as_possible, self.speed) {
            (true, _) => Pacing::AsFastAsPossible,
            (false, Some(x)) if !(x.is_finite() && (1e-6..=1e9).contains(&x)) => {
                return Err(format!(
                    "--speed {x:?} is out of range: give a number from 0.000001 to 1000000000"
                ));
            }
            (false, x) => Pacing::Speed(x.unwrap_or(1.0)),
        };
        let target = Target::new(
            check_url(&self.url)?,
            authorization(&self.token, self.scheme)?,
            String::new(),
            seconds("--timeout", self.timeout, 0.001)?,
        )
        .trusting(crate::forward::load_ca_of("--ca", self.ca.as_deref())?);
        Ok(Settings {
            target: std::sync::Arc::new(target),
            pacing,
            gzip: self.gzip,
            include_duplicates: self.include_duplicates,
            retry_wait: seconds("--retry-wait", self.retry_wait, 0.0)?,
            notes: true,
        })
    }
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Gpx,
    Geojson,
    Csv,
    /// JSON Lines, a batch a line as the device sent it (what the
    /// dashboard's save key writes).
    Batches,
}

impl From<Format> for crate::capture::export::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Gpx => Self::Gpx,
            Format::Geojson => Self::Geojson,
            Format::Csv => Self::Csv,
            Format::Batches => Self::Batches,
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// Capture files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,

    /// Only records of this `@t` (CSV: the one type written).
    #[arg(long = "type", value_name = "T")]
    pub kind: Option<String>,

    /// Only batches from this unit-id.
    #[arg(long, value_name = "ID")]
    pub unit_id: Option<String>,

    /// Only records stamped at or after TIME (RFC 3339, or naive UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,

    /// Only records stamped before TIME.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,

    /// Only the batch received at TIME (as the capture's `received` and the
    /// request detail show it).
    #[arg(long, value_name = "TIME")]
    pub received: Option<String>,

    /// Output file, `-` for stdout [default: stdout]; CSV without --type:
    /// a folder, one file per record type.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// CSV: a cell a spreadsheet would take for a formula (starting with
    /// =, +, -, @, a tab, a CR or a LF, or one of the first four behind
    /// spaces or line breaks, and not a plain number) gets a leading '.
    #[arg(long)]
    pub spreadsheet_safe: bool,
}

impl ExportArgs {
    /// The record filter from the flags.
    pub fn filter(&self) -> Result<crate::capture::export::Filter, String> {
        let time = |flag: &str, v: &Option<String>| -> Result<Option<jiff::Timestamp>, String> {
            v.as_deref()
                .map(|s| {
                    crate::time::parse_timestamp(s)
                        .map(|(t, _)| t)
                        .ok_or_else(|| {
                            // A date in range as a calendar date, out of
                            // range as an instant: at the ends of time.
                            let civil = s.strip_suffix(['Z', 'z']).unwrap_or(s);
                            let at_an_end = civil
                                .parse::<jiff::civil::DateTime>()
                                .is_ok_and(|d| d.year().abs() == 9999);
                            if at_an_end {
                                format!(
                                    "{flag} {s:?} is beyond the times a stamp can say ({} to {}): \
                                     give one within them, or leave {flag} out",
                                    jiff::Timestamp::MIN,
                                    jiff::Timestamp::MAX
                                )
                            } else {
                                format!(
                                    "{flag} {s:?} is not a time: give e.g. 2026-11-27T08:00:00Z"
                                )
                            }
                        })
                })
                .transpose()
        };
        let from = time("--from", &self.from)?;
        let to = time("--to", &self.to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            // Nothing could match: it exported nothing and said so as if
            // the captures held nothing then.
            return Err(format!(
                "--from {f} is not before --to {t}: no record could be in between"
            ));
        }
        Ok(crate::capture::export::Filter {
            kind: self.kind.clone(),
            unit_id: self.unit_id.clone(),
            from,
            to,
            received: time("--received", &self.received)?,
        })
    }
}

/// Writes `text` on stdout for a command whose whole output it is: a
/// reader that went away (`view --summary | head`, `fingerprint | true`)
/// is let be, exit 0 (`print!` panicked on it, exit 101); any other
/// failure (a full disk) is said after `failed`, exit 1.
pub fn written(text: &str, failed: &str) -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            crate::say!("{failed}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The first line of `input`, at most 64 KiB: read up to its line end,
/// so a token typed on a terminal is taken at Enter, and whatever follows
/// (a second line that is not UTF-8, `yes` piped in for ever) is never
/// read. All of stdin was read (up to Ctrl-D, and into memory without
/// bound).
pub fn first_line(input: &mut impl std::io::BufRead) -> Result<String, String> {
    use std::io::{BufRead, Read};
    const MOST: u64 = 64 * 1024;
    let mut line = Vec::new();
    input
        .take(MOST + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if line.len() as u64 > MOST {
        return Err("the first line of stdin is over 64 KiB: that is no token".into());
    }
    String::from_utf8(line).map_err(|_| "the first line of stdin is not UTF-8".to_string())
}

/// `autopi-rx fingerprint`: the fingerprint of the token on the first line
/// of `input` (surrounding whitespace and a `token `/`Bearer ` scheme
/// dropped, as the receiver drops them).
pub fn fingerprint(input: &str) -> Result<String, String> {
    let line = input.lines().next().unwrap_or("").trim();
    let token = match crate::receiver::ingest::split_authorization(line) {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") =>
        {
            rest.trim()
        }
        _ => line,
    };
    if token.is_empty() {
        return Err("no token on stdin: pipe or type the token, then Enter or Ctrl-D".into());
    }
    Ok(crate::receiver::ingest::fingerprint(token))
}

#[derive(Args, Clone)]
pub struct ReceiveArgs {
    /// Address to listen on (port 0 picks a free port) [default: 0.0.0.0:8000,
    /// or 127.0.0.1:0 with --demo].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Auth token a device may send; repeat for several devices. Without
    /// --token, the AUTOPI_RX_TOKEN environment variable is used.
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,

    /// File with one token per line (blank lines and '#' comments ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Accept uploads without checking any token.
    #[arg(long, conflicts_with_all = ["tokens", "token_file"])]
    pub no_auth: bool,

    /// Append accepted batches to FILE [default: captures/<start time>.jsonl].
    #[arg(long, value_name = "FILE", overrides_with = "capture")]
    pub capture: Option<PathBuf>,

    /// Largest body accepted, on the wire and after inflating.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_BODY as u64,
        value_parser = clap::value_parser!(u64).range(1..=MAX_BODY_CAP)
    )]
    pub max_body: u64,

    /// Demo: receive on loopback with a generated token from a simulated
    /// device posting about once a second.
    #[arg(long, conflicts_with_all = ["tokens", "token_file", "no_auth"])]
    pub demo: bool,

    /// Print one JSON object per request on stdout instead of a screen.
    #[arg(long)]
    pub headless: bool,

    /// Threads answering requests at start (each waits for its batch's
    /// fsync), 1 to 1024; more are added while all are busy.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=1024)
    )]
    pub workers: u64,

    /// Idle or stalled connections are dropped after SECS without data
    /// (a device's own timeout is 10 to 60 s); a head or body still coming
    /// 4 × SECS after its first byte (plus 1 s per 8 KiB that came) is cut.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub read_timeout: u64,

    /// Past N open connections, idle ones (nothing of them in hand, open
    /// a second at least) are closed, those open longest first, down to
    /// three quarters of N; each costs about 20 KiB (a thread of
    /// tiny_http's). Connections with a request in hand are never closed
    /// for this.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::receiver::server::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u64).range(crate::receiver::server::MIN_MAX_CONNECTIONS..=1_000_000)
    )]
    pub max_connections: u64,

    /// How valid batches are answered (each is captured first): ok, 500,
    /// 503, 401, 413, late:SECS, hangup or flaky:PCT. Change it live with
    /// `m` on the dashboard.
    #[arg(long, value_name = "MODE", default_value = "ok", value_parser = crate::receiver::respond::Mode::parse, overrides_with = "respond")]
    pub respond: crate::receiver::respond::Mode,

    /// Restart in place (the same process and listening socket, the same
    /// capture, the answer mode kept) once N connections are held for good
    /// by tiny_http 0.12, each with a thread and two descriptors (an
    /// `HTTP/2.0` request line deadlocks one), or a sixteenth of the
    /// descriptor limit's worth if that is fewer, or once the longest held
    /// has been for 10 read timeouts, or once any is held while
    /// descriptors run short; 0: never.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub restart_held: u64,

    /// The listening socket, on this descriptor, inherited from the
    /// process a restart in place replaced (set by that restart).
    #[arg(
        long,
        value_name = "FD",
        hide = true,
        overrides_with = "inherit_listener"
    )]
    pub inherit_listener: Option<std::os::fd::RawFd>,

    /// When the restart in place that started this run came (set by it).
    #[arg(
        long,
        value_name = "TIME",
        hide = true,
        overrides_with = "restarted_at"
    )]
    pub restarted_at: Option<jiff::Timestamp>,
    /// Pass every acknowledged batch on to URL: http(s)://… (POSTed as the
    /// device sent it) or mqtt(s)://HOST[:PORT]/PREFIX (one message per
    /// record). Repeat for several targets.
    #[arg(long = "forward", value_name = "URL")]
    pub forward: Vec<String>,

    /// Token for HTTP forward targets (sent as --forward-scheme says).
    #[arg(
        long,
        value_name = "T",
        env = FORWARD_TOKEN_ENV,
        hide_env_values = true
    )]
    pub forward_token: Option<String>,

    /// How the forward token is sent: `authorization: token T` or `Bearer T`.
    #[arg(long, value_enum, value_name = "SCHEME", default_value_t = Scheme::Token)]
    pub forward_scheme: Scheme,

    /// Forward every captured line: also batches the device was not told
    /// were saved, and re-sends of batches already forwarded.
    #[arg(long, requires = "forward")]
    pub forward_all: bool,

    /// Trust the CA certificates in this PEM file (instead of the Mozilla
    /// roots) for https:// and mqtts:// forward targets.
    #[arg(long, value_name = "FILE", requires = "forward")]
    pub forward_ca: Option<PathBuf>,

    /// Present this client certificate (PEM, the certificate first, then
    /// any intermediates) to https:// and mqtts:// forward targets that
    /// ask for one (mutual TLS, as AWS IoT Core does). Needs --forward-key.
    #[arg(long, value_name = "FILE", requires_all = ["forward", "forward_key"])]
    pub forward_cert: Option<PathBuf>,

    /// The private key of --forward-cert (PEM: PKCS#8, PKCS#1 or SEC1, not
    /// encrypted). Never shown.
    #[arg(long, value_name = "FILE", requires_all = ["forward", "forward_cert"])]
    pub forward_key: Option<PathBuf>,

    /// How long an HTTP forward target may keep us waiting at any one step
    /// (connecting, taking each piece of the body, answering once it has
    /// it); a large batch to a slow upstream has all the time it needs as
    /// long as it keeps taking it.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        requires = "forward",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub forward_timeout: u64,
}

/// The token for HTTP forward targets, when --forward-token is not given.
pub const FORWARD_TOKEN_ENV: &str = "AUTOPI_RX_FORWARD_TOKEN";
/// Credentials for MQTT forward targets.
pub const MQTT_USERNAME_ENV: &str = "AUTOPI_RX_MQTT_USERNAME";
pub const MQTT_PASSWORD_ENV: &str = "AUTOPI_RX_MQTT_PASSWORD";

/// Largest `--max-body` (1 TiB): beyond any upload, and far from overflow.
pub const MAX_BODY_CAP: u64 = 1 << 40;

/// The environment variable read when no `--token` is given. Read here
/// rather than by clap so that `--no-auth`/`--demo` simply ignore it
/// instead of clashing with a token nobody typed.
pub const TOKEN_ENV: &str = "AUTOPI_RX_TOKEN";

/// The most of a `--token-file` read (a thousand tokens take 64 KiB):
/// `/dev/zero` given by mistake was read until memory ran out.
const TOKEN_FILE_MOST: u64 = 1 << 20;

/// Collects tokens from `--token` (or `AUTOPI_RX_TOKEN`) and `--token-file`.
pub fn collect_tokens(args: &ReceiveArgs) -> Result<Vec<String>, String> {
    let mut tokens: Vec<String> = Vec::new();
    let from_env: Vec<String> = match std::env::var(TOKEN_ENV) {
        Ok(t) if args.tokens.is_empty() => vec![t],
        _ => Vec::new(),
    };
    let given = if args.tokens.is_empty() {
        &from_env
    } else {
        &args.tokens
    };
    for t in given {
        let t = t.trim();
        if t.is_empty() {
            return Err("an empty --token (or AUTOPI_RX_TOKEN) was given".into());
        }
        check_token(t).map_err(|why| format!("--token (or AUTOPI_RX_TOKEN): {why}"))?;
        tokens.push(t.to_string());
    }
    if let Some(path) = &args.token_file {
        let text = crate::input::read_at_most(path, TOKEN_FILE_MOST)
            .map_err(|e| format!("cannot read token file {}: {e}", crate::text::path(&path)))?;
        let text = String::from_utf8(text).map_err(|_| {
            format!(
                "cannot read token file {}: it is not UTF-8 text",
                crate::text::path(&path)
            )
        })?;
        // Editors on Windows start files with a byte-order mark and end
        // lines with CRLF; neither is part of a token.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let before = tokens.len();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check_token(line).map_err(|why| {
                format!(
                    "token file {} line {}: {why}",
                    crate::text::path(&path),
                    i + 1
                )
            })?;
            tokens.push(line.to_string());
        }
        if tokens.len() == before {
            use std::os::unix::fs::FileTypeExt;
            // A named pipe is read at once, not waited on: a writer that
            // comes later finds nobody reading.
            let pipe = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
            return Err(format!(
                "token file {} holds no token{}",
                crate::text::path(&path),
                if pipe {
                    " (a pipe nobody had written to yet: start the writer first, or use <(…))"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(tokens)
}

impl ReceiveArgs {
    /// The main job's settings: auth (or how to give a token), the demo's
    /// generated token, the listen address, the capture path, and headless
    /// when asked or when stdout is not a terminal.
    pub fn settings(self) -> Result<Settings, Fatal> {
        let demo_token = self.demo.then(demo::generate_token);
        let reload: Option<fn(&ReceiveArgs) -> crate::run::TokenReload> =
            match (&self.token_file, self.no_auth || self.demo) {
                (Some(_), false) => Some(|args| {
                    let args = args.clone();
                    Box::new(move || collect_tokens(&args))
                }),
                _ => None,
            };
        let reload_tokens = reload.map(|make| make(&self));
        let tokens_again = reload.map(|make| make(&self));
        let auth = match &demo_token {
            Some(token) => Auth::tokens(&[token]),
            None => auth_from(&self)?,
        };
        let default_listen = if self.demo {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:8000"
        };
        Ok(Settings {
            listen: self.listen.unwrap_or_else(|| default_listen.to_string()),
            auth,
            demo_token,
            capture: self.capture,
            max_body: usize::try_from(self.max_body).unwrap_or(usize::MAX),
            headless: self.headless || !std::io::stdout().is_terminal(),
            workers: self.workers as usize,
            read_timeout: std::time::Duration::from_secs(self.read_timeout),
            max_connections: self.max_connections,
            respond: self.respond,
            restart_held: self.restart_held,
            inherit_listener: self.inherit_listener,
            restarted_at: self.restarted_at,
            reload_tokens,
            tokens_again,
            token_file: self
                .token_file
                .clone()
                .filter(|_| !(self.no_auth || self.demo)),
            forward: self.forward,
            forward_authorization: forward_authorization(
                self.forward_token.as_deref(),
                self.forward_scheme,
            )?,
            forward_all: self.forward_all,
            forward_ca: self.forward_ca,
            forward_identity: self.forward_cert.zip(self.forward_key),
            forward_timeout: std::time::Duration::from_secs(self.forward_timeout),
            mqtt_username: std::env::var(MQTT_USERNAME_ENV).ok(),
            mqtt_password: std::env::var(MQTT_PASSWORD_ENV).ok(),
        })
    }
}

/// The `authorization` header for HTTP forward targets; the message names
/// the flag, never the token.
fn forward_authorization(token: Option<&str>, scheme: Scheme) -> Result<Option<String>, Fatal> {
    let Some(token) = token.map(str::trim) else {
        return Ok(None);
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Fatal::new(
            2,
            "the --forward-token (or AUTOPI_RX_FORWARD_TOKEN) is empty or holds spaces or non-ASCII characters",
        ));
    }
    Ok(Some(match scheme {
        Scheme::Token => format!("token {token}"),
        Scheme::Bearer => format!("Bearer {token}"),
    }))
}

/// Builds the authentication from the flags, or says how to give a token.
fn auth_from(args: &ReceiveArgs) -> Result<Auth, Fatal> {
    if args.no_auth {
        return Ok(Auth::Open);
    }
    let tokens = collect_tokens(args).map_err(|m| Fatal::new(2, m))?;
    if tokens.is_empty() {
        return Err(Fatal::new(
            2,
            "no auth token configured: give the device's Auth Token with --token TOKEN \
             (or the AUTOPI_RX_TOKEN environment variable, or --token-file FILE), \
             or pass --no-auth to accept uploads from anyone",
        ));
    }
    if let Some(line) = short_tokens_warning(&tokens) {
        crate::say!("{line}");
    }
    Ok(Auth::tokens(&tokens))
}

/// The start-time warning for tokens under `SHORT_TOKEN` characters, or
/// None. It says how many, never which or how long.
pub fn short_tokens_warning(tokens: &[String]) -> Option<String> {
    let short = tokens.iter().filter(|t| t.len() < SHORT_TOKEN).count();
    (short > 0).then(|| {
        let which = if tokens.len() == 1 {
            "the token is".to_string()
        } else {
            format!("{short} of the {} tokens are", tokens.len())
        };
        format!(
            "warning: {which} shorter than {SHORT_TOKEN} characters: easy to guess on a shared \
             network, and from its fingerprint too (the 8 hex digits refusals and the request \
             detail show: anyone who sees them can try guesses offline, hundreds of thousands a \
             second); and wherever one appears in what a client sends (the method, the path, a \
             header) it is shown as [token], so a short one hides ordinary text too (with a \
             one-letter token, every POST shows as POS[token]). A device's Auth Token is longer"
        )
    })
}

/// A token must be printable ASCII: a device sends it in an HTTP header,
/// where anything else either cannot travel or would never match. Nor
/// may it hold `"` or `\`: a refusal that quotes what a client sent
/// escapes them (`\"`, `\\`), and the token so spelt is out of reach of
/// the scrub that keeps it out of every output. The token itself is never
/// quoted back.
fn check_token(token: &str) -> Result<(), String> {
    if let Some(c) = token.chars().find(|c| matches!(c, '"' | '\\')) {
        return Err(format!(
            "the token holds {c:?}, which a quoted text would escape out of reach of the scrub that keeps the token out of every output; a device's Auth Token is letters and digits"
        ));
    }
    if let Some(c) = token
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control())
    {
        let what = if c.is_ascii_control() {
            "a control character"
        } else {
            "a non-ASCII character"
        };
        return Err(format!(
            "the token holds {what} (U+{:04X}); a device's Auth Token is printable ASCII",
            u32::from(c)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_in_values_and_flags_are_left() {
        let args = |words: &[&str]| -> Vec<OsString> { words.iter().map(OsString::from).collect() };
        let credentials = [
            ("Token".to_string(), "[token]"),
            ("x9-long".to_string(), "[forward token]"),
        ];
        assert_eq!(
            masked(
                &args(&[
                    "x",
                    "--token",
                    "Token",
                    "--respond",
                    "late:TOKEN",
                    "--forward-token=x9-long"
                ]),
                &credentials
            ),
            args(&[
                "x",
                "--token",
                &marker(0, "Token"),
                "--respond",
                &format!("late:{}", marker(0, "Token")),
                &format!("--forward-token={}", marker(1, "x9-long")),
            ])
        );
    }

    #[test]
    fn a_dashed_credential_becomes_its_flags_value_and_a_flag_stays_a_flag() {
        let args = |words: &[&str]| words.iter().map(OsString::from).collect();
        assert_eq!(
            credentials_as_values(args(&["x", "--token", "-t1", "--forward-token", "--t2"])),
            args(&["x", "--token=-t1", "--forward-token=--t2"])
        );
        // clap's tip for a value starting with `-`.
        assert_eq!(
            credentials_as_values(args(&["x", "--token", "--", "-t3", "--demo"])),
            args(&["x", "--token=-t3", "--demo"])
        );
        // A flag of another command is a value here.
        assert_eq!(
            credentials_as_values(args(&["x", "--token", "-o"])),
            args(&["x", "--token=-o"])
        );
        let kept = args(&[
            "x",
            "--token",
            "--demo",
            "--token",
            "--listen=1",
            "--",
            "--token",
            "-t",
        ]);
        assert_eq!(credentials_as_values(kept.clone()), kept);
        assert_eq!(
            credentials_in(&args(&[
                "x",
                "--token",
                "t1",
                "--token=t2",
                "--token",
                "--demo"
            ])),
            [("t1".to_string(), "[token]"), ("t2".to_string(), "[token]")]
        );
    }
}

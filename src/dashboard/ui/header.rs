//! The header, always on screen:
//! ```text
//!  autopi-rx  point the device at http://192.168.1.20:8000/  +1 more (?)     FROZEN (f)
//!  last upload 3s ago · devices 2 · auth 1 token · capture 1.2 MiB in …/20261127T075950Z.jsonl
//!  requests 12 · batches 10 · records 5,000 · duplicates 1 · rejected 2 · malformed 0
//!  forward 10.0.0.5:8000 catching up 12 (lag 40 s) · mqtt broker:1883 up   (with --forward)
//!   1 Live   2 Requests   3 Types   device ◀ 7c1e…0112 2s ago (2/2) last to upload ▶ d   ? help  q quit
//! ```
//! (the forward line only with `--forward`)

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::layout::header_height;
use crate::dashboard::app::{App, Tab};
use crate::dashboard::format::{age, bytes, count, fit_start, short_id};
use crate::dashboard::ui::fit_line;
use crate::dashboard::uplink::{self, Keeping};
use crate::receiver::respond::Mode;
use unicode_width::UnicodeWidthStr;

/// Draws the header into its four (or five) lines.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let lines = header_height(&app.setup);
    let rows = Layout::vertical(vec![Constraint::Length(1); lines as usize]).split(area);
    where_to_point(app, rows[0], buf);
    Paragraph::new(setup_line(app, area.width)).render(rows[1], buf);
    Paragraph::new(totals_line(app, area.width)).render(rows[2], buf);
    if !app.setup.forward.is_empty() {
        Paragraph::new(forward_line(app)).render(rows[3], buf);
    }
    tabs_line(app, rows[rows.len() - 1], buf);
}

/// The forward line: each target and its state (nothing sent yet, up,
/// catching up, down since…, no answer for…, parked), brief; cut with `…`
/// where it does not fit; the status page and headless output give the
/// full URLs and errors.
fn forward_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" forward", t.label)];
    for (i, f) in app.setup.forward.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" ·", t.label));
        }
        let style = match f.kind() {
            "down" => t.error,
            "catching_up" => t.warn,
            _ if f.parked > 0 => t.warn,
            _ => t.value,
        };
        spans.push(Span::styled(format!(" {} ", f.short_target()), t.url));
        spans.push(Span::styled(f.brief(app.now()), style));
    }
    Line::from(spans)
}

/// First line: the URLs for the device's Cloud Storage setting, and badges.
fn where_to_point(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" autopi-rx ", t.title)];
    if let Some(banner) = mode_banner(app) {
        // The device is failing on purpose: that, not the URL, is what
        // the line is for now (help still lists the URLs).
        spans.extend(banner);
        Paragraph::new(fit_line(Line::from(spans), area.width)).render(area, buf);
        return;
    }
    if app.setup.demo {
        spans.push(Span::styled(" DEMO: simulated device ", t.frozen));
    }
    if app.setup.viewing {
        spans.push(Span::styled(" VIEW ", t.frozen));
        spans.push(Span::styled(
            " looking back at a capture: no listener",
            t.label,
        ));
    } else {
        spans.push(Span::styled(" point the device at ", t.label));
    }
    let label_at = spans.len() - 1;
    if app.setup.urls.is_empty() && !app.setup.viewing {
        spans.push(Span::styled("no network address found", t.warn));
    }
    // An address is typed into the device: shown whole or not at all
    // (help lists every one).
    let badge_width = if app.is_frozen() { 12 } else { 0 };
    let room = (area.width as usize).saturating_sub(badge_width);
    for (i, url) in app.setup.urls.iter().enumerate() {
        let used = Line::from(spans.clone()).width();
        let rest = app.setup.urls.len() - i;
        let more = if rest > 1 { 14 } else { 0 };
        let gap = if i > 0 { "  " } else { "" };
        if used + gap.len() + url.width() + more > room {
            spans.push(Span::styled(format!("{gap}+{rest} more (?)"), t.label));
            break;
        }
        spans.push(Span::raw(gap));
        spans.push(Span::styled(url.clone(), t.url));
    }
    if let Some(note) = &app.setup.url_note {
        // The note says how to be reached: the label gives way to it
        // (at 80 columns it was cut to "(loopback: a device can…": a UX
        // review).
        let note = format!("  {note}");
        if Line::from(spans.clone()).width() + note.width() > room && !app.setup.viewing {
            spans[label_at] = Span::raw(" ");
        }
        spans.push(Span::styled(note, t.warn));
    }
    let badge = app
        .is_frozen()
        .then(|| Span::styled(" FROZEN (f) ", t.frozen));
    let badge_width = badge.as_ref().map_or(0, |b| b.width() as u16);
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(badge_width)]).areas(area);
    Paragraph::new(fit_line(Line::from(spans), left.width)).render(left, buf);
    if let Some(badge) = badge {
        Paragraph::new(Line::from(badge)).render(right, buf);
    }
}

/// The answer mode when it is not plain `ok`, and what the device does
/// about it.
fn mode_banner(app: &App) -> Option<Vec<Span<'static>>> {
    let t = &app.theme;
    let shown = app.mode()?;
    let upcoming = shown.upcoming();
    let badge = match shown.next {
        Some(next) => format!(
            " ANSWERING {next} (next upload only, then {}) ",
            shown.lasting
        ),
        None if upcoming == Mode::Ok => return None,
        None => format!(" ANSWERING {upcoming} "),
    };
    // The key in brackets: "m past the device's timeout" read as one
    // phrase (a UX review).
    Some(vec![
        Span::styled(badge, t.alarm),
        Span::styled(" [m] ", t.key),
        Span::styled(upcoming.consequence(), t.warn),
    ])
}

/// Second line: auth, capture file, devices, last upload; a long capture
/// path gives way from its start, so the file name stays. Where the long
/// words leave the capture's size no room, shorter ones (at 80 columns
/// it read `capture 23.8 …`: a UX review).
fn setup_line(app: &App, width: u16) -> Line<'static> {
    let size = app.capture_bytes().map_or(String::new(), bytes);
    let name = std::path::Path::new(&app.setup.capture_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // The device shown named where the file's name still fits whole; the
    // long words where the whole line fits, the size and some of the path
    // (at least 8 columns of it, else the size alone); else short ones.
    let line = |words| capture_spans(app, setup_spans(app, width, words), &size, width);
    // Naming needs two devices: with one the line is the long one.
    let named = (app.shown().devices.len() > 1)
        .then(|| line(Words::Named))
        .filter(|l| l.width() <= width as usize && l.to_string().contains(name));
    let line = named.unwrap_or_else(|| {
        let long = line(Words::Long);
        if long.width() <= width as usize {
            long
        } else {
            line(Words::Short)
        }
    });
    fit_line(line, width)
}

/// How the second line says things, from the most room to the least.
#[derive(Clone, Copy, PartialEq)]
enum Words {
    /// With the device the uplink state is of, where there are several.
    Named,
    Long,
    Short,
}

/// The second line up to its capture, in `words`.
fn setup_spans(app: &App, width: u16, words: Words) -> Vec<Span<'static>> {
    let short = words == Words::Short;
    let t = &app.theme;
    let s = app.shown();
    let auth = match (app.setup.tokens, app.setup.short_tokens) {
        (0, _) => Span::styled(" NO AUTH: anyone can upload ", t.alarm),
        (1, 0) => Span::styled("1 token", t.value),
        (1, _) => Span::styled("1 token, SHORT", t.warn),
        (n, 0) => Span::styled(format!("{n} tokens"), t.value),
        (n, short) => Span::styled(format!("{n} tokens, {short} SHORT"), t.warn),
    };
    let last = match s.last_upload {
        Some(at) if short => Span::styled(format!("last {}", age(app.now(), at)), t.value),
        Some(at) => Span::styled(format!("last upload {}", age(app.now(), at)), t.value),
        None => Span::styled("no upload yet", t.warn),
    };
    let mut spans = vec![Span::styled(" ", t.label), last];
    // The device shown (d/D, else the last to upload): is it keeping its
    // cycle? The last upload above covers every device; with several,
    // the one shown is named where there is room (the line flipped
    // between two devices' cycles, naming neither: a UX review).
    // Nothing while its cycle is still being learned.
    let device = app.device();
    let shown = device
        .and_then(|d| s.uplink(&d.unit_id))
        .and_then(|log| uplink::of(log, app.now()))
        .filter(|u| u.keeping != Keeping::Learning);
    if let Some(u) = shown {
        let style = crate::dashboard::ui::uplink::keeping_style(t, u.keeping);
        spans.push(Span::styled(" · uplink ", t.label));
        if let Some(d) = device.filter(|_| words == Words::Named) {
            spans.push(Span::styled(format!("{} ", short_id(&d.unit_id)), t.url));
        }
        spans.push(Span::styled(u.keeping.as_str(), style));
        // The cycle gives way on a narrow screen, before the capture path.
        if let Some(c) = u.cycle.filter(|_| width >= 100 && !short) {
            spans.push(Span::styled(
                format!(" (cycle {:.0} s)", c.as_secs_f64()),
                t.label,
            ));
        }
    }
    if short {
        spans.extend([
            Span::styled(" · ", t.label),
            Span::styled(s.devices_shown(), t.value),
            Span::styled(
                if s.devices.len() == 1 {
                    " device"
                } else {
                    " devices"
                },
                t.label,
            ),
        ]);
    } else {
        spans.extend([
            Span::styled(" · devices ", t.label),
            Span::styled(s.devices_shown(), t.value),
        ]);
    }
    // Looking back, there is no listener and so no auth to speak of.
    if !app.setup.viewing {
        let label = if short { " · " } else { " · auth " };
        spans.extend([Span::styled(label, t.label), auth]);
    }
    // A restart in place began this run: what is shown before it was read
    // back from the capture.
    if let Some(at) = app.setup.restarted {
        let said = if short {
            "restarted".to_string()
        } else {
            format!(
                "restarted {}",
                crate::dashboard::format::clock_or_date(app.now(), at, false)
            )
        };
        spans.extend([Span::styled(" · ", t.label), Span::styled(said, t.warn)]);
    }
    spans
}

/// `spans` and the capture: what became of it, its size and its path in
/// the room left (not cut to `width`).
fn capture_spans(
    app: &App,
    mut spans: Vec<Span<'static>>,
    size: &str,
    width: u16,
) -> Line<'static> {
    let t = &app.theme;
    spans.push(Span::styled(" · capture ", t.label));
    // What became of the capture file, before its size: the time it
    // happened gives way on a narrow screen.
    if let Some(taken) = &app.setup.capture_taken {
        let taken = match taken.rsplit_once(' ') {
            Some((what, _)) if width < 100 => what,
            _ => taken,
        };
        spans.push(Span::styled(format!(" {taken} "), t.alarm));
        spans.push(Span::raw(" "));
    }
    let joint = if size.is_empty() { "" } else { " in " };
    let room = (width as usize)
        .saturating_sub(Line::from(spans.clone()).width() + size.width() + joint.len());
    // Too little room for a recognisable end of the path: the size alone
    // (`capture 3.54 KiB`, not `capture 3.54 KiB in`).
    let shown = if room >= 8 {
        format!("{size}{joint}{}", path_in(&app.setup.capture_path, room))
    } else {
        size.to_string()
    };
    if shown.is_empty() {
        spans.pop();
    } else {
        spans.push(Span::styled(shown, t.value));
    }
    Line::from(spans)
}

/// `path` in `room` columns, cut from its start, the file name kept whole
/// while it fits: alone when it fits only without the `…` (cut from the
/// start, a file name as wide as the room lost its first character).
fn path_in(path: &str, room: usize) -> String {
    let name = std::path::Path::new(path)
        .file_name()
        .map_or(path, |n| n.to_str().unwrap_or(path));
    if path.width() > room && name.width() == room {
        name.to_string()
    } else {
        fit_start(path, room)
    }
}

/// Third line: the totals, and a warning when events were dropped; the
/// separators narrow before anything is cut.
fn totals_line(app: &App, width: u16) -> Line<'static> {
    let t = &app.theme;
    let tot = &app.shown().totals;
    let mut spans = Vec::new();
    // First, so that a narrow screen cannot cut it off.
    if app.dropped_events() > 0 {
        spans.push(Span::styled(
            format!(
                " {} events not shown (screen too slow; all saved) ",
                count(app.dropped_events())
            ),
            t.alarm,
        ));
    }
    let items = [
        ("requests", tot.requests, t.value),
        ("batches", tot.batches, t.value),
        ("records", tot.records, t.value),
        (
            "duplicates",
            tot.duplicates,
            if tot.duplicates > 0 { t.warn } else { t.value },
        ),
        (
            "rejected",
            tot.rejected,
            if tot.rejected > 0 { t.error } else { t.value },
        ),
        (
            "malformed",
            tot.malformed,
            if tot.malformed > 0 { t.warn } else { t.value },
        ),
    ];
    let with = |sep: &str| {
        let mut spans = spans.clone();
        for (i, (name, n, style)) in items.iter().enumerate() {
            let sep = if i == 0 { " " } else { sep };
            spans.push(Span::styled(format!("{sep}{name} "), t.label));
            spans.push(Span::styled(count(*n), *style));
        }
        Line::from(spans)
    };
    let wide = with(" · ");
    let line = if wide.width() <= width as usize {
        wide
    } else {
        with("  ")
    };
    fit_line(line, width)
}

/// Fourth line: tabs, the device picker (two devices or more), key hints.
fn tabs_line(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let style = if *tab == app.viewer.tab {
            t.tab_active
        } else {
            t.tab
        };
        spans.push(Span::styled(format!(" {} {} ", i + 1, tab.title()), style));
        spans.push(Span::raw(" "));
    }
    let mut hints = Line::from(vec![
        Span::styled("?", t.key),
        Span::styled(" help  ", t.label),
        Span::styled("q", t.key),
        Span::styled(" quit ", t.label),
    ]);
    let tabs = Line::from(spans.clone()).width();
    // A column kept free before the hints.
    let room = (area.width as usize).saturating_sub(hints.width() + tabs + 1);
    let mut chosen = picker(app, room);
    // The picker before the hints: `? help` still says where help is,
    // and `?` alone where even that does not fit (it went straight to a
    // bare `?`, which read as a cut: a UX review).
    let briefer = [
        Line::from(vec![
            Span::styled("?", t.key),
            Span::styled(" help ", t.label),
        ]),
        Line::from(vec![Span::styled("? ", t.key)]),
    ];
    for brief in briefer {
        if !chosen.is_empty() {
            break;
        }
        let room = (area.width as usize).saturating_sub(brief.width() + tabs + 1);
        chosen = picker(app, room);
        if !chosen.is_empty() {
            hints = brief;
        }
    }
    spans.extend(chosen);
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(hints.width() as u16),
    ])
    .areas(area);
    Paragraph::new(Line::from(spans)).render(left, buf);
    Paragraph::new(hints).render(right, buf);
}

/// The device picker (two devices or more) in `room` columns: every
/// device with the age of its last upload when they fit, else the shown
/// one with its age, its place and whether it was picked or is followed as
/// the last to upload.
fn picker(app: &App, room: usize) -> Vec<Span<'static>> {
    let t = &app.theme;
    let devices = &app.shown().devices;
    let Some(shown) = app.device().filter(|_| devices.len() > 1) else {
        return Vec::new();
    };
    let index = devices
        .iter()
        .position(|x| x.unit_id == shown.unit_id)
        .unwrap_or(0);
    // A device picked and since let go (quiet 10 minutes, see
    // `state::QUIET_DEVICE`) is no longer the one shown.
    let picked = app
        .viewer
        .device
        .as_deref()
        .is_some_and(|id| devices.iter().any(|d| d.unit_id == id));
    let how = if picked {
        "picked"
    } else if app.shown().untracked_batches > 0 {
        // The last to upload may be one of the devices not shown.
        "last shown to upload"
    } else {
        "last to upload"
    };
    let ago = |d: &crate::dashboard::state::Device| age(app.now(), d.last_upload);
    let mut all = vec![Span::styled("  device ◀ d ▶ ", t.label)];
    for d in devices {
        let style = if d.unit_id == shown.unit_id {
            t.tab_active
        } else {
            t.label
        };
        all.push(Span::styled(
            format!(" {} {} ", short_id(&d.unit_id), ago(d)),
            style,
        ));
    }
    all.push(Span::styled(format!(" {how}"), t.label));
    let place = format!(" ({}/{})", index + 1, app.shown().devices_shown());
    let long = vec![
        Span::styled("  device ◀ ", t.label),
        Span::styled(short_id(&shown.unit_id), t.url),
        Span::styled(format!(" {}{place} {how} ▶ d", ago(shown)), t.label),
    ];
    let short = vec![
        Span::styled(" ◀ ", t.label),
        Span::styled(short_id(&shown.unit_id), t.url),
        Span::styled(format!(" {}{place} ▶", ago(shown)), t.label),
    ];
    // Every device still, without saying how the shown one was chosen.
    let all_brief = all[..all.len() - 1].to_vec();
    let width = |spans: &Vec<Span>| spans.iter().map(Span::width).sum::<usize>();
    [all, all_brief, long, short]
        .into_iter()
        .find(|v| width(v) <= room)
        .unwrap_or_default()
}

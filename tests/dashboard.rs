//! The dashboard stepped without threads: keys, freeze, scrolling, the run
//! loop on a TestBackend, styles that carry meaning, and a real upload
//! whose token must never reach the screen.

mod ui_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use autopi_rx::dashboard::app::{Action, App, Outside, Probed, Tab};
use autopi_rx::dashboard::theme::Theme;
use autopi_rx::fixtures::{accepted, at, guide_examples};
use crossbeam_channel::{bounded, never, unbounded};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ui_support::*;

/// The first cell where `needle` starts on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for y in 0..buf.area.height {
        let row: Vec<String> = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        let line = row.concat();
        if let Some(byte) = line.find(needle) {
            let x = line[..byte].chars().count() as u16;
            return Some((x, y));
        }
    }
    None
}

#[test]
fn tabs_help_and_escape() {
    let mut app = busy();
    assert_eq!(app.viewer.tab, Tab::Live);
    press(&mut app, &[KeyCode::Tab]);
    assert_eq!(app.viewer.tab, Tab::Requests);
    press(&mut app, &[KeyCode::BackTab, KeyCode::BackTab]);
    assert_eq!(app.viewer.tab, Tab::Uplink, "Shift-Tab goes round");
    press(&mut app, &[KeyCode::Tab]);
    assert_eq!(app.viewer.tab, Tab::Live);
    press(&mut app, &[KeyCode::Char('4'), KeyCode::BackTab]);
    assert_eq!(app.viewer.tab, Tab::Types);
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Enter, KeyCode::Char('?')],
    );
    assert!(app.viewer.help && app.viewer.detail.is_some());
    press(&mut app, &[KeyCode::Esc]);
    assert!(
        !app.viewer.help && app.viewer.detail.is_some(),
        "Esc closes help first"
    );
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.viewer.detail, None);
    assert!(text(&draw(&app, 120, 40)).contains("Requests"));
}

#[test]
fn q_and_ctrl_c_quit_but_q_types_into_the_filter() {
    let mut app = busy();
    assert_eq!(
        app.handle_key(KeyEvent::from(KeyCode::Char('/'))),
        Action::Continue
    );
    assert_eq!(
        app.handle_key(KeyEvent::from(KeyCode::Char('q'))),
        Action::Continue
    );
    assert_eq!(app.viewer.filter.text(), "q");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl_c), Action::Quit);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.viewer.filter.text(), "");
    assert_eq!(
        app.handle_key(KeyEvent::from(KeyCode::Char('q'))),
        Action::Quit
    );
}

#[test]
fn freeze_holds_the_screen_while_receiving_goes_on() {
    let mut app = guide();
    press(&mut app, &[KeyCode::Char(' ')]);
    let before = text(&draw(&app, 120, 40));
    assert!(before.contains("FROZEN"));
    app.apply(&accepted(
        9,
        at("2026-11-27T08:00:09Z"),
        Some(UNIT),
        &sample_batch(),
    ));
    app.tick(at("2026-11-27T08:00:30Z"));
    // The probes go on reading too: the capture grows, the screen fell behind.
    app.setup.capture_bytes = Some(9_999_999);
    app.setup.dropped_events = 3;
    assert_eq!(
        app.live().totals.records,
        1005,
        "still folding while frozen"
    );
    assert_eq!(text(&draw(&app, 120, 40)), before, "display unchanged");
    press(&mut app, &[KeyCode::Char('f')]);
    let after = text(&draw(&app, 120, 40));
    assert!(after.contains("records 1,005") && !after.contains("FROZEN"));
    assert!(after.contains("9.54 MiB") && after.contains("3 events not shown"));
}

fn sample_batch() -> String {
    autopi_rx::fixtures::sample("batch-1000-naive.json")
}

#[test]
fn events_scroll_back_and_follow_again() {
    let mut app = busy();
    app.resize(120, 40);
    let newest = text(&draw(&app, 120, 40));
    assert!(newest.contains("following"));
    press(
        &mut app,
        &[KeyCode::Char('k'), KeyCode::Up, KeyCode::Char('k')],
    );
    let scrolled = text(&draw(&app, 120, 40));
    assert!(scrolled.contains("3 newer below"), "{scrolled}");
    assert!(!scrolled.contains("08:13:47  @vehicle/battery/charging"));
    let body = r#"[{"@t":"event.vehicle.engine","@ts":"2026-11-27T08:13:59Z","@tag":"vehicle/engine/stopped"}]"#;
    app.apply(&accepted(6, at("2026-11-27T08:14:00Z"), Some(UNIT), body));
    let still = text(&draw(&app, 120, 40));
    assert!(
        still.contains("4 newer below"),
        "the view stays put: {still}"
    );
    let event_lines = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .filter(|l| l.starts_with("│08:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(event_lines(&still), event_lines(&scrolled));
    press(&mut app, &[KeyCode::PageUp, KeyCode::Char('g')]);
    assert_eq!(
        app.viewer.events_scroll,
        201 - 11,
        "g shows the oldest page"
    );
    assert!(text(&draw(&app, 120, 40)).contains("190 newer below"));
    press(&mut app, &[KeyCode::Char('j')]);
    assert_eq!(app.viewer.events_scroll, 189, "one key, one line");
    press(&mut app, &[KeyCode::Char('G')]);
    let followed = text(&draw(&app, 120, 40));
    assert!(followed.contains("@vehicle/engine/stopped") && followed.contains("following"));
    assert!(!newest.contains("@vehicle/engine/stopped"));
}

/// Scrolled back on one device's events while following the last to
/// upload, another device uploads: the panel shows the new one's newest
/// lines, following, not a place in its list found from the other's
/// lines (it jumped to the new one's oldest; a review).
#[test]
fn events_scrolled_back_follow_a_new_device_from_its_newest() {
    let mut app = busy();
    app.resize(120, 40);
    press(&mut app, &[KeyCode::Char('k'), KeyCode::Char('k')]);
    assert!(text(&draw(&app, 120, 40)).contains("2 newer below"));
    let events: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"@t":"event.x","@ts":"2026-11-27T08:14:{i:02}Z","@tag":"other/event/n{i}"}}"#
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    app.apply(&accepted(7, at("2026-11-27T08:15:00Z"), Some(UNIT2), &body));
    let screen = text(&draw(&app, 120, 40));
    assert_eq!(app.viewer.events_scroll, 0, "{screen}");
    assert!(
        screen.contains("@other/event/n29") && screen.contains("following"),
        "{screen}"
    );
}

#[test]
fn request_detail_scrolls_through_the_body() {
    let mut app = busy();
    app.resize(80, 24);
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Char('g'), KeyCode::Enter],
    );
    let top = text(&draw(&app, 80, 24));
    assert!(top.contains("Headers") && !top.contains("{\"@t\":\"obd.coolant_temp\""));
    press(&mut app, &[KeyCode::Char('G')]);
    let bottom = text(&draw(&app, 80, 24));
    assert!(
        bottom.contains("{\"@t\":\"event.vehicle.battery\"") && !bottom.contains("Headers"),
        "{bottom}"
    );
    assert!(
        bottom.contains("│  ]"),
        "ends with the array's close: {bottom}"
    );
    press(&mut app, &[KeyCode::Char('k')]);
    assert_ne!(text(&draw(&app, 80, 24)), bottom, "k moves at once after G");
    press(&mut app, &[KeyCode::PageDown]);
    assert_eq!(text(&draw(&app, 80, 24)), bottom);
}

#[test]
fn requests_selection_opens_the_chosen_request() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2'), KeyCode::Up, KeyCode::Enter]);
    assert_eq!(app.viewer.detail, Some(4));
    let screen = text(&draw(&app, 120, 40));
    assert!(screen.contains("Request #4") && screen.contains("matches a configured token:  no"));
    press(&mut app, &[KeyCode::Esc, KeyCode::Down]);
    assert_eq!(
        app.viewer.selected, None,
        "back on the newest row: following"
    );
}

#[test]
fn filter_narrows_events_requests_and_types() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('/')]);
    for c in "minion".chars() {
        press(&mut app, &[KeyCode::Char(c)]);
    }
    press(&mut app, &[KeyCode::Enter]);
    let live = text(&draw(&app, 120, 40));
    assert!(live.contains("@system/minion/online") && !live.contains("@vehicle/motion"));
    press(&mut app, &[KeyCode::Char('3')]);
    let types = text(&draw(&app, 120, 40));
    assert!(types.contains("event.system.minion") && !types.contains("obd.rpm"));
}

/// `n` devices, each uploading one battery reading at 08:00:01, their
/// `unit-id`s made by `unit`.
fn devices_uploading(n: u64, unit: impl Fn(u64) -> String) -> App {
    let mut app = empty();
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.5}]"#;
    for i in 0..n {
        let e = accepted(i + 1, at("2026-11-27T08:00:01Z"), Some(&unit(i)), body);
        app.apply(&e);
    }
    app
}

/// Past the 64 devices the screen tracks, the header, the picker and the
/// Uplink tab say so: the header said `devices 64` with 66 uploading and
/// the picker followed a device that was not the last to upload.
#[test]
fn devices_past_the_tracked_ones_are_said_to_be_there() {
    let mut app = devices_uploading(66, |i| format!("{i:032x}"));
    app.tick(at("2026-11-27T08:00:02Z"));
    let live = text(&draw(&app, 200, 60));
    assert!(live.contains("devices 64+"), "{live}");
    assert!(live.contains("(64/64+) last shown to upload"), "{live}");
    press(&mut app, &[KeyCode::Char('4')]);
    let uplink = text(&draw(&app, 200, 60));
    assert!(
        uplink.contains("64+ devices (2 batches of further devices not shown)"),
        "{uplink}"
    );
    // Ten minutes on, one more: shown in the place of the first, and the
    // tab says one was let go; a device picked and let go is no longer
    // called picked.
    press(&mut app, &[KeyCode::Char('1'), KeyCode::Char('d')]);
    let picked = text(&draw(&app, 200, 60));
    assert!(picked.contains(") picked"), "{picked}");
    press(&mut app, &[KeyCode::Char('4')]);
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:10:00Z","voltage":11.9}]"#;
    app.apply(&accepted(
        100,
        at("2026-11-27T08:10:01Z"),
        Some("a-new-one"),
        body,
    ));
    app.tick(at("2026-11-27T08:10:02Z"));
    let uplink = text(&draw(&app, 200, 60));
    assert!(uplink.contains("· 1 let go after 10 min quiet"), "{uplink}");
    press(&mut app, &[KeyCode::Char('1')]);
    let live = text(&draw(&app, 200, 60));
    assert!(
        live.contains("11.90 V") && live.contains("(64/64+) last shown to upload"),
        "{live}"
    );
}

#[test]
fn device_picker_follows_the_last_upload_until_one_is_picked() {
    let mut app = two_devices();
    // The second device uploaded last: it is in front.
    let first = text(&draw(&app, 80, 24));
    assert!(
        first.contains("11.20 V") && first.contains("(2/2)"),
        "{first}"
    );
    assert!(first.contains("7c1e…0112 2s ago"), "{first}");
    let wide = text(&draw(&app, 200, 60));
    assert!(
        wide.contains("ee3d…1d05 7s ago") && wide.contains("7c1e…0112 2s ago"),
        "every device with its last upload's age: {wide}"
    );
    assert!(wide.contains("last to upload"), "{wide}");
    // The first one uploads again: followed.
    let bat =
        r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:06Z","voltage":12.7,"state":"discharging"}]"#;
    app.apply(&accepted(7, at("2026-11-27T08:00:06Z"), Some(UNIT), bat));
    assert!(text(&draw(&app, 120, 40)).contains("12.70 V"));
    // Picked: stays put whoever uploads.
    press(&mut app, &[KeyCode::Char('d')]);
    let second = text(&draw(&app, 120, 40));
    assert!(second.contains("11.20 V") && second.contains("P0300"));
    assert!(second.contains("picked"), "{second}");
    app.apply(&accepted(8, at("2026-11-27T08:00:08Z"), Some(UNIT), bat));
    assert!(text(&draw(&app, 120, 40)).contains("11.20 V"));
    press(&mut app, &[KeyCode::Left]);
    assert!(text(&draw(&app, 80, 24)).contains("(1/2)"));
    assert!(
        !text(&draw(&guide(), 120, 40)).contains("(1/"),
        "no picker for one device"
    );
}

#[test]
fn run_folds_everything_queued_before_drawing_and_quits_on_q() {
    let (events_tx, events) = unbounded();
    for (i, body) in guide_examples().iter().enumerate() {
        events_tx
            .send(accepted(
                i as u64 + 1,
                at("2026-11-27T08:00:00Z"),
                Some(UNIT),
                body,
            ))
            .unwrap();
    }
    let (input_tx, input) = unbounded();
    input_tx
        .send(Event::Key(KeyEvent::from(KeyCode::Char('q'))))
        .unwrap();
    let outside = Outside {
        events,
        input,
        stop: never(),
        clock: Box::new(|| at("2026-11-27T08:00:04Z")),
        probe: Box::new(|| Probed {
            capture_bytes: Some(1_234),
            dropped_events: 7,
            // Three tokens now, where the setup said one (a SIGHUP).
            tokens: Some(3),
            short_tokens: Some(1),
            capture_taken: Some("REPLACED 08:00:03".into()),
        }),
    };
    let mut app = empty();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    autopi_rx::dashboard::app::run(&mut terminal, &mut app, outside).unwrap();
    let screen = text(&terminal);
    assert!(screen.contains("records 5"), "{screen}");
    assert!(screen.contains("last upload 4s ago"));
    // What became of the capture file, before its size and path.
    assert!(
        screen.contains("capture  REPLACED 08:00:03  1.21 KiB in ")
            && screen.contains("7 events not shown"),
        "{screen}"
    );
    // One of them short: said beside the count, where stderr's warning
    // at start was hidden by the dashboard (a UX review).
    assert!(screen.contains("auth 3 tokens, 1 SHORT"), "{screen}");
    // On the narrowest screen the warning and the size still show, and
    // what became of the capture without its time.
    let narrow = text(&draw(&app, 80, 24));
    assert!(
        narrow.contains("7 events not shown") && narrow.contains("capture  REPLACED  1.21 KiB"),
        "{narrow}"
    );
}

#[test]
fn run_ends_on_a_signal() {
    let (_events_tx, events) = bounded(1);
    let (_input_tx, input) = bounded(1);
    let (stop_tx, stop) = bounded(1);
    stop_tx.send(()).unwrap();
    let outside = Outside {
        events,
        input,
        stop,
        clock: Box::new(|| at("2026-11-27T08:00:04Z")),
        probe: Box::new(Probed::default),
    };
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    autopi_rx::dashboard::app::run(&mut terminal, &mut empty(), outside).unwrap();
    assert!(
        text(&terminal).contains("no upload yet"),
        "drew once before waiting"
    );
}

#[test]
fn battery_faults_stand_out_in_colour_and_in_monochrome() {
    for theme in [Theme::color(), Theme::mono()] {
        let mut app = guide();
        app.theme = theme.clone();
        let area = Rect::new(0, 0, 60, 10);
        let mut buf = Buffer::empty(area);
        autopi_rx::dashboard::ui::battery::render(&app, area, &mut buf);
        let (x, y) = find(&buf, "overcharging").expect("state shown");
        let style = buf[(x, y)].style();
        assert_eq!(style.fg, theme.error.fg.or(Some(Color::Reset)));
        assert_eq!(style.add_modifier, theme.error.add_modifier);
        assert_ne!(theme.error, theme.value, "an error is not a plain value");
    }
}

#[test]
fn monochrome_uses_no_colour_at_all() {
    let mut app = busy();
    app.theme = Theme::mono();
    for tab in ['1', '2', '3', '4'] {
        press(&mut app, &[KeyCode::Char(tab)]);
        let terminal = draw(&app, 120, 40);
        for cell in terminal.backend().buffer().content() {
            assert_eq!(
                (cell.fg, cell.bg),
                (Color::Reset, Color::Reset),
                "{:?}",
                cell.symbol()
            );
        }
    }
    press(&mut app, &[KeyCode::Char('2')]);
    let terminal = draw(&app, 120, 40);
    let buf = terminal.backend().buffer();
    let (x, y) = find(buf, "08:13:55.700").unwrap();
    assert!(
        buf[(x, y)].modifier.contains(Modifier::REVERSED),
        "selection shows by reverse"
    );
}

#[test]
fn no_auth_is_loud_and_statuses_are_coloured_by_class() {
    let mut app = busy();
    app.setup.tokens = 0;
    press(&mut app, &[KeyCode::Char('2')]);
    let terminal = draw(&app, 120, 40);
    let buf = terminal.backend().buffer();
    let (x, y) = find(buf, "NO AUTH").expect("NO AUTH shown");
    assert_eq!(buf[(x, y)].bg, Color::Red);
    // The status cell of the row whose time is `when`.
    let status_fg = |when: &str, status: &str| {
        let (_, y) = find(buf, when).unwrap();
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        let byte = line.find(&format!(" {status} ")).unwrap() + 1;
        buf[(line[..byte].chars().count() as u16, y)].fg
    };
    assert_eq!(status_fg("08:03:48.120", "200"), Color::Green);
    assert_eq!(status_fg("08:13:52.300", "401"), Color::Yellow);
}

#[test]
fn failure_events_stand_out() {
    let app = two_devices();
    let area = Rect::new(0, 0, 100, 8);
    let mut buf = Buffer::empty(area);
    autopi_rx::dashboard::ui::events::render(&app, area, &mut buf);
    let (x, y) = find(&buf, "@system/service/modem/failed").unwrap();
    assert_eq!(buf[(x, y)].style().fg, app.theme.error.fg);
}

/// Posts `body` over a real socket and returns the status line.
fn post(addr: std::net::SocketAddr, authorization: &str, body: &str) -> String {
    post_with(addr, authorization, "", body)
}

/// `post` with `extra` header lines (each ending in CRLF).
fn post_with(addr: std::net::SocketAddr, authorization: &str, extra: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /logbook/storage HTTP/1.1\r\nHost: bench\r\nauthorization: {authorization}\r\nunit-id: {UNIT}\r\ncontent-type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// A receiver on 127.0.0.1 whose events carry bodies, as the screen's do,
/// capturing to `path`; with the channel its events come on.
fn receiver_for_the_screen(
    path: &std::path::Path,
    token: &str,
    max_body: usize,
) -> (
    autopi_rx::receiver::server::Running,
    crossbeam_channel::Receiver<autopi_rx::event::RequestEvent>,
) {
    let capture = autopi_rx::capture::Capture::open(path).unwrap();
    let (tx, rx) = bounded(16);
    let settings = autopi_rx::receiver::server::Settings {
        listen: "127.0.0.1:0".into(),
        ingest: autopi_rx::receiver::ingest::Config {
            auth: autopi_rx::receiver::ingest::Auth::tokens(&[token]),
            max_body,
        },
        workers: 2,
        event_bodies: true,
        max_connections: autopi_rx::receiver::server::DEFAULT_MAX_CONNECTIONS,
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    let running = autopi_rx::receiver::server::start(settings, capture, tx).unwrap();
    (running, rx)
}

/// While the events waiting for the screen carry `QUEUED_BODIES` of
/// batches, the next goes without its body (the screen counts it; the
/// capture has it all), and once the screen has taken them bodies go with
/// their events again. Bodies of 14 MiB: two fit in the 32 MiB, a third
/// does not.
#[test]
fn events_waiting_for_the_screen_carry_a_bounded_amount_of_bodies() {
    use autopi_rx::receiver::server::QUEUED_BODIES;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    let (running, rx) = receiver_for_the_screen(&path, "t", 32 << 20);
    let size = 14 << 20;
    assert!(2 * size <= QUEUED_BODIES as usize && 3 * size > QUEUED_BODIES as usize);
    let batch = |i: usize| {
        let head = format!(r#"[{{"@t":"big","@ts":"2026-12-04T01:00:0{i}","blob":""#);
        let pad = size - head.len() - 3;
        format!("{head}{}\"}}]", "a".repeat(pad))
    };
    let mut events = Vec::new();
    let mut take = |n: usize| {
        for _ in 0..n {
            events.push(rx.recv_timeout(Duration::from_secs(30)).expect("event"));
        }
    };
    // Three waiting: the third goes without.
    for i in 0..3 {
        assert!(post(running.addr, "token t", &batch(i)).contains("200"));
    }
    // One taken: the two still waiting carry one body between them, so
    // the next goes with its own, and the one after that without.
    take(1);
    for i in 3..5 {
        assert!(post(running.addr, "token t", &batch(i)).contains("200"));
    }
    take(4);
    // None waiting: a body goes with its event again.
    assert!(post(running.addr, "token t", &batch(5)).contains("200"));
    take(1);
    running.shutdown();
    let carried: Vec<Option<usize>> = events
        .iter()
        .map(|e| e.body.as_ref().map(|b| b.len()))
        .collect();
    let (with, without) = (Some(size), None);
    assert_eq!(carried, [with, with, without, with, without, with]);
    assert!(
        events
            .iter()
            .all(|e| e.accepted() && e.captured && e.records == 1)
    );
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(lines, 6);
}

#[test]
fn a_real_upload_never_shows_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (running, rx) =
        receiver_for_the_screen(&dir.path().join("c.jsonl"), "sekrit-token-42", 1 << 20);
    let body = &guide_examples()[0];
    // The token spelt otherwise in other headers too: inside base64 (a
    // proxy's Basic credentials, a key packed with a name) and
    // percent-encoded.
    use base64::Engine as _;
    let packed = [
        base64::engine::general_purpose::STANDARD.encode("u:sekrit-token-42"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("key=sekrit-token-42;v=2"),
    ];
    let extra = format!(
        "proxy-authorization: Basic {}\r\nx-api-key: {}\r\ncookie: sid=sekrit%2Dtoken%2D42; a=1\r\n",
        packed[0], packed[1]
    );
    assert!(post_with(running.addr, "token sekrit-token-42", &extra, body).contains("200"));
    assert!(post(running.addr, "Bearer wrong-token-99", body).contains("401"));
    let mut app = empty();
    for _ in 0..2 {
        app.apply(&rx.recv_timeout(Duration::from_secs(10)).expect("event"));
    }
    running.shutdown();
    // Events are sent after the answer, so the two may arrive either way round.
    for (accepted, matched) in [(true, "yes"), (false, " no ")] {
        let r = app
            .live()
            .requests
            .iter()
            .find(|r| r.accepted() == accepted)
            .unwrap();
        app.viewer.selected = Some(r.id);
        press(&mut app, &[KeyCode::Char('2'), KeyCode::Enter]);
        let screen = text(&draw(&app, 120, 40));
        assert!(
            screen.contains(&format!("matches a configured token: {matched}")),
            "{screen}"
        );
        assert!(screen.contains("[redacted, fingerprint "));
        assert!(
            !screen.contains("sekrit") && !screen.contains("wrong-token"),
            "{screen}"
        );
        if accepted {
            for shown in [
                "proxy-authorization: Basic [token]",
                "x-api-key: [token]",
                "cookie: sid=[token]; a=1",
            ] {
                assert!(screen.contains(shown), "{shown} not in {screen}");
            }
        }
        for spelling in &packed {
            assert!(!screen.contains(&spelling[..12]), "{screen}");
        }
        press(&mut app, &[KeyCode::Esc]);
    }
}

/// Both sizes the issue asks the fixes to hold at.
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

#[test]
fn refused_request_detail_says_what_is_kept_where() {
    for (w, h) in SIZES {
        let mut app = busy();
        app.resize(w, h);
        // The 401: refused before its body was read.
        press(&mut app, &[KeyCode::Char('2'), KeyCode::Up, KeyCode::Enter]);
        press(&mut app, &[KeyCode::Char('G')]);
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("Body: none held"), "{screen}");
        assert!(
            screen.contains("refused bodies are never saved to the"),
            "{screen}"
        );
        assert!(!screen.contains("see the capture file"), "{screen}");
        // The 400: its body is held here, and only here.
        press(
            &mut app,
            &[
                KeyCode::Esc,
                KeyCode::Down,
                KeyCode::Enter,
                KeyCode::Char('G'),
            ],
        );
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("Body (78 B, as received)"), "{screen}");
        assert!(
            screen.contains("all 78 B as received, held in memory"),
            "{screen}"
        );
    }
}

#[test]
fn time_in_a_battery_state_runs_on_the_device_clock() {
    // The guide's reading is from 2021: it says nothing of how long since.
    let screen = text(&draw(&guide(), 120, 40));
    assert!(screen.contains("overcharging   for 0s"), "{screen}");
    // A device clock five minutes fast: charging for two minutes by it.
    let mut app = empty();
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:05:00Z","voltage":14.1,"state":"charging"},
      {"@t":"obd.bat","@ts":"2026-11-27T08:07:00Z","voltage":14.2,"state":"charging"}]"#;
    app.apply(&accepted(1, at("2026-11-27T08:00:05Z"), Some(UNIT), body));
    app.tick(at("2026-11-27T08:00:07Z"));
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("charging  for 2m00s"), "{screen}");
        assert!(screen.contains("6m53s ahead"), "{screen}");
    }
}

#[test]
fn a_modem_counter_reset_is_summed_and_marked() {
    let mut app = empty();
    let body = r#"[{"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:00Z","sent":1000,"recv":5000},
      {"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:10Z","sent":1500,"recv":6000},
      {"@t":"ec2x.data_usage","@ts":"2026-11-27T08:00:20Z","sent":200,"recv":100}]"#;
    app.apply(&accepted(1, at("2026-11-27T08:00:25Z"), Some(UNIT), body));
    app.tick(at("2026-11-27T08:00:30Z"));
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        // 500 before the reset and 200 after it.
        assert!(screen.contains("+700 B↺"), "{screen}");
        assert!(screen.contains("+session↺1"), "{screen}");
        assert!(
            screen.contains("↺ counter reset 08:00:20, summed"),
            "{screen}"
        );
    }
    // A day on: the reset's date (it read as a time of today).
    app.tick(at("2026-11-28T09:00:00Z"));
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("↺ counter reset 11-27 08:00, summed"),
        "{screen}"
    );
}

#[test]
fn every_filter_shows_its_prompt_and_says_when_nothing_matches() {
    for (w, h) in SIZES {
        let mut app = busy();
        press(
            &mut app,
            &[KeyCode::Char('3'), KeyCode::Char('/'), KeyCode::Char('q')],
        );
        let types = text(&draw(&app, w, h));
        assert!(types.contains("filter: q▏"), "{types}");
        assert!(types.contains("no match for 'q'"), "{types}");
        assert!(types.contains("0 of 13 types"), "{types}");
        press(&mut app, &[KeyCode::Enter, KeyCode::Char('2')]);
        let requests = text(&draw(&app, w, h));
        assert!(requests.contains("filter: q"), "{requests}");
        assert!(requests.contains("no match for 'q'"), "{requests}");
        press(&mut app, &[KeyCode::Char('1')]);
        let live = text(&draw(&app, w, h));
        assert!(live.contains("no match for 'q'"), "{live}");
    }
}

/// Names of `many_values`' OBD pids.
const PIDS: [&str; 10] = [
    "ambiant_air_temp",
    "barometric_pressure",
    "coolant_temp",
    "engine_load",
    "fuel_level",
    "intake_temp",
    "maf",
    "rpm",
    "speed",
    "throttle_pos",
];

#[test]
fn vehicle_values_are_shown_cut_with_a_sign_or_counted() {
    for (w, h) in [(80, 24), (120, 40), (200, 60)] {
        let mut app = many_values();
        let screen = text(&draw(&app, w, h));
        let whole = PIDS
            .iter()
            .filter(|p| screen.contains(&format!("│{p} ")) || screen.contains(&format!("  {p} ")))
            .count();
        let more = screen
            .split("+")
            .nth(1)
            .and_then(|s| s.split(" more").next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        assert_eq!(
            whole + more,
            PIDS.len(),
            "{w}x{h}: {whole} shown whole, {more} counted:\n{screen}"
        );
        assert!(
            screen.contains("Random/multiple") && screen.contains("4s ago"),
            "{screen}"
        );
        if more > 0 {
            assert!(screen.contains("v shows all"), "{screen}");
        }
        // `v`: the panel over the tab, every name whole.
        app.resize(w, h);
        press(&mut app, &[KeyCode::Char('v')]);
        let all = text(&draw(&app, w, h));
        for p in PIDS {
            assert!(all.contains(p), "{w}x{h}: {p} missing:\n{all}");
        }
        press(&mut app, &[KeyCode::Esc]);
        assert!(text(&draw(&app, w, h)).contains("Events"));
    }
}

#[test]
fn requests_say_why_they_were_refused_and_r_lists_only_those() {
    let why = "token does not match any configured token";
    for (w, h) in [(80, 24), (120, 40), (200, 60)] {
        let mut app = busy();
        press(&mut app, &[KeyCode::Char('2')]);
        let screen = text(&draw(&app, w, h));
        let row = screen
            .lines()
            .find(|l| l.contains(" 401 "))
            .expect("the 401 row");
        let error = row
            .trim_end_matches('│')
            .trim_end()
            .rsplit("   ")
            .next()
            .unwrap()
            .trim();
        assert!(
            error == why || (error.ends_with('…') && why.starts_with(error.trim_end_matches('…'))),
            "{w}x{h}: {row}"
        );
        if w >= 200 {
            assert!(row.contains(why) && row.contains(UNIT), "{row}");
        }
        press(&mut app, &[KeyCode::Char('r')]);
        let refused = text(&draw(&app, w, h));
        assert!(refused.contains("refused only"), "{refused}");
        assert!(refused.contains(" 401 ") && refused.contains(" 400 "));
        assert!(!refused.contains(" 200 "), "{refused}");
        press(&mut app, &[KeyCode::Char('r')]);
        assert!(text(&draw(&app, w, h)).contains(" 200 "));
    }
}

#[test]
fn type_names_take_the_room_the_terminal_gives() {
    let name = "obd.fuel_rail_pressure_direct_injection";
    let mut app = busy();
    let body = format!(r#"[{{"@t":"{name}","@ts":"2026-11-27T08:13:57Z","value":1}}]"#);
    app.apply(&accepted(6, at("2026-11-27T08:13:57Z"), Some(UNIT), &body));
    press(&mut app, &[KeyCode::Char('3')]);
    let wide = text(&draw(&app, 120, 40));
    assert!(wide.contains(&format!("│{name} ")), "{wide}");
    let narrow = text(&draw(&app, 80, 24));
    let row = narrow
        .lines()
        .find(|l| l.starts_with("│obd.fuel_rail"))
        .unwrap();
    let shown = row
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches('│');
    assert!(shown.ends_with('…') && shown.len() > 20, "{narrow}");
    // The value column keeps room too.
    assert!(narrow.contains("14.38 V 100 % charging"), "{narrow}");
}

/// Records without `@t` are listed under a name that says so, as
/// `view --summary` lists them, not as a blank row; the filter finds them
/// by that name.
#[test]
fn records_without_a_type_are_listed_as_such() {
    let mut app = empty();
    let body = r#"[{"@ts":"2026-11-27T08:00:00Z","odd":1},{"@t":"obd.rpm","@ts":"2026-11-27T08:00:01Z","value":900}]"#;
    app.apply(&accepted(1, at("2026-11-27T08:00:05Z"), Some(UNIT), body));
    press(&mut app, &[KeyCode::Char('3')]);
    let screen = text(&draw(&app, 120, 40));
    let row = screen
        .lines()
        .find(|l| l.starts_with("│(no @t) "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains(" 1 "), "{row}");
    assert!(screen.contains("2 types · 2 records"), "{screen}");
    press(&mut app, &[KeyCode::Char('/')]);
    press(
        &mut app,
        &"no @t".chars().map(KeyCode::Char).collect::<Vec<_>>(),
    );
    let filtered = text(&draw(&app, 120, 40));
    assert!(filtered.contains("1 of 2 types"), "{filtered}");
    assert!(filtered.contains("│(no @t) "), "{filtered}");
}

/// Past a device's first 256 types, the records of later ones are
/// counted in the Types tab's title rather than silently left out.
#[test]
fn types_past_the_listed_ones_are_counted_in_the_title() {
    let records: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"@t":"obd.pid{i}","@ts":"2026-11-27T08:00:00Z","value":{i}}}"#))
        .collect();
    let body = format!("[{}]", records.join(","));
    let mut app = empty();
    app.apply(&accepted(1, at("2026-11-27T08:00:05Z"), Some(UNIT), &body));
    press(&mut app, &[KeyCode::Char('3')]);
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("256 types · 300 records · 44 in types past 256 unlisted"),
        "{screen}"
    );
}

/// With no room left for the capture's file name, the header shows its
/// size alone, not a size followed by a dangling `in`.
#[test]
fn the_capture_item_never_ends_in_a_dangling_in() {
    let mut app = busy();
    app.setup.capture_path = "/home/bench/autopi/captures/20261127T075950Z.jsonl".into();
    let mut sizes_alone = 0;
    for tokens in [0, 1, 3] {
        app.setup.tokens = tokens;
        for width in 80..=130 {
            let screen = text(&draw(&app, width, 24));
            let line = screen.lines().nth(1).unwrap().trim_end();
            assert!(!line.ends_with(" in"), "{width}:\n{screen}");
            sizes_alone += usize::from(line.ends_with(" KiB"));
            assert!(
                line.ends_with(" KiB") || line.ends_with('…') || line.ends_with("Z.jsonl"),
                "{width}:\n{screen}"
            );
            // The file name stays whole as long as there is room for it
            // (as wide as the room, it lost its first character to `…`).
            let name = "20261127T075950Z.jsonl";
            if let Some((_, path)) = line.rsplit_once(" in ") {
                assert!(
                    path.chars().count() < name.len() || path.ends_with(name),
                    "{width}:\n{screen}"
                );
            }
        }
    }
    assert!(sizes_alone > 0, "no width left room for the size alone");
}

#[test]
fn the_header_fits_80_columns_and_says_where_it_cut() {
    let mut app = busy();
    app.setup.capture_path = "/home/bench/autopi/captures/20261127T075950Z.jsonl".into();
    for frozen in [false, true] {
        let screen = text(&draw(&app, 80, 24));
        let lines: Vec<&str> = screen.lines().take(3).collect();
        assert!(lines[2].contains("malformed 0"), "{screen}");
        // The device retrying (its last batch refused 400) leaves the
        // file name no room: the size stays whole, no name in part.
        assert!(
            lines[1].contains("uplink retrying")
                && lines[1].trim_end().ends_with("capture 210.8 KiB"),
            "{screen}"
        );
        // An address is shown whole or counted, never cut.
        assert!(
            lines[0].contains("http://192.168.1.20:8000/ ") || lines[0].contains("more (?)"),
            "{screen}"
        );
        assert!(!lines[0].contains("8000…"), "{screen}");
        if frozen {
            assert!(lines[0].contains("FROZEN"), "{screen}");
        }
        press(&mut app, &[KeyCode::Char('f')]);
    }
    // With no uplink to say, the file name is there, cut at its start.
    let mut app = empty();
    app.setup.capture_path = "/home/bench/autopi/captures/20261127T075950Z.jsonl".into();
    let screen = text(&draw(&app, 80, 24));
    let second = screen.lines().nth(1).unwrap().trim_end();
    let path = second.rsplit(" in ").next().unwrap();
    assert!(
        second.contains(" in ") && path.starts_with("…") && path.ends_with("Z.jsonl"),
        "{screen}"
    );
}

#[test]
fn a_batch_body_is_one_record_a_line_pretty_on_p_and_saved_on_s() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = busy();
    app.setup.save_beside = dir.path().join("20261127T075950Z.jsonl");
    app.setup.capture_path = app.setup.save_beside.display().to_string();
    app.resize(120, 40);
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Char('g'), KeyCode::Enter],
    );
    // 1000 records: 1000 lines and the brackets, not one line per key.
    assert_eq!(app.detail().body.len(), 1002);
    let screen = text(&draw(&app, 120, 40));
    assert!(screen.contains("one record a line · p pretty"), "{screen}");
    press(&mut app, &[KeyCode::Char('p')]);
    assert!(app.detail().body.len() > 6000);
    press(&mut app, &[KeyCode::Char('G')]);
    let pretty = text(&draw(&app, 120, 40));
    assert!(
        pretty.contains("\"@t\": \"event.vehicle.battery\""),
        "{pretty}"
    );
    press(&mut app, &[KeyCode::Char('s')]);
    let saved = dir.path().join("20261127T075950Z-request-1.json");
    let first = &app.live().requests.iter().next().unwrap().body;
    // A batch: its records as held, a line, as `export --format batches`.
    let mut want = first.as_deref().unwrap().to_vec();
    want.push(b'\n');
    assert!(
        std::fs::read(&saved).unwrap() == want,
        "the body as held, a line"
    );
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("body saved to "), "{screen}");
    }
    // A refused body is saved as received; a request with none says so.
    press(
        &mut app,
        &[KeyCode::Esc, KeyCode::Char('G'), KeyCode::Char('s')],
    );
    let refused = dir.path().join("20261127T075950Z-request-5.bin");
    assert!(
        std::fs::read(&refused)
            .unwrap()
            .starts_with(b"[{\"@t\":\"obd.bat\"")
    );
    press(&mut app, &[KeyCode::Up, KeyCode::Char('s')]);
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("request #4: no body held to save"),
        "{screen}"
    );
}

#[test]
fn events_in_device_order_late_ones_marked_dates_across_days() {
    let event = |t: &str, tag: &str| format!(r#"[{{"@t":"event.x","@ts":"{t}","@tag":"{tag}"}}]"#);
    let mut app = empty();
    app.apply(&accepted(
        1,
        at("2026-11-27T08:10:05Z"),
        Some(UNIT),
        &event("2026-11-27T08:10:00Z", "x/new"),
    ));
    app.apply(&accepted(
        2,
        at("2026-11-27T08:10:30Z"),
        Some(UNIT),
        &event("2026-11-27T08:06:00Z", "x/retried"),
    ));
    app.tick(at("2026-11-27T08:10:31Z"));
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        let retried = screen.find("08:06:00  ↺ +4m @x/retried").expect(&screen);
        let new = screen.find("08:10:00  @x/new").expect(&screen);
        assert!(retried < new, "older first: {screen}");
        assert!(!screen.contains("11-27 08:"), "one day: no date: {screen}");
    }
    // A fail-queue batch from the day before, after a reboot.
    app.apply(&accepted(
        3,
        at("2026-11-27T08:11:00Z"),
        Some(UNIT),
        &event("2026-11-26T23:59:00Z", "x/yesterday"),
    ));
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("11-26 23:59:00  ↺ +8h @x/yesterday"),
        "{screen}"
    );
    assert!(screen.contains("11-27 08:10:00  @x/new"), "{screen}");
    // A clock gone wrong: listed where it arrived, with its year; the
    // lines after it below it.
    app.apply(&accepted(
        4,
        at("2026-11-27T08:12:00Z"),
        Some(UNIT),
        &event("2038-01-19T03:14:07Z", "x/glitch"),
    ));
    app.apply(&accepted(
        5,
        at("2026-11-27T08:15:00Z"),
        Some(UNIT),
        &event("2026-11-27T08:14:55Z", "x/after"),
    ));
    let screen = text(&draw(&app, 120, 40));
    let glitch = screen
        .find("2038-01-19 03:14:07  @x/glitch")
        .expect(&screen);
    let after = screen.find("11-27 08:14:55  @x/after").expect(&screen);
    assert!(glitch < after, "{screen}");
    // A clock not yet set (1970, before NTP): old data, with its year.
    app.apply(&accepted(
        6,
        at("2026-11-27T08:16:00Z"),
        Some(UNIT),
        &event("1970-01-01T00:00:42Z", "x/unset"),
    ));
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("1970-01-01 00:00:42  ↺ +56y @x/unset"),
        "{screen}"
    );
    assert!(screen.contains("11-27 08:14:55  @x/after"), "{screen}");
}

#[test]
fn battery_shows_min_max_the_last_crank_and_a_time_axis() {
    const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];
    let volts = [12.6, 12.6, 12.5, 10.4, 10.1, 14.2, 14.3, 14.2, 14.1, 14.2];
    let records: Vec<String> = volts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(r#"{{"@t":"obd.bat","@ts":"2026-11-27T08:00:{:02}Z","voltage":{v},"level":90,"state":"charging"}}"#, i * 5)
        })
        .collect();
    let mut app = empty();
    let body = format!("[{}]", records.join(","));
    app.apply(&accepted(1, at("2026-11-27T08:00:50Z"), Some(UNIT), &body));
    app.tick(at("2026-11-27T08:01:00Z"));
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        if w >= 200 {
            assert!(screen.contains("min 10.10 V · max 14.30 V"), "{screen}");
            assert!(
                screen.contains("crank 10.10 V at 08:00:20 (40s ago)"),
                "{screen}"
            );
        } else if w >= 120 {
            assert!(
                screen.contains("min 10.10 · max 14.30 V · crank 10.10 V 08:00:20 (40s ago)"),
                "{screen}"
            );
        } else {
            assert!(
                screen.contains("10.1–14.3 V · crank 10.10 V 08:00:20"),
                "{screen}"
            );
        }
        assert!(
            screen.contains("08:00:00") && screen.contains("08:00:45"),
            "{screen}"
        );
        assert!(screen.contains("level 90 %"), "{screen}");
    }
    // A day on, and a year on: the crank's date (it read as a time of
    // today).
    app.tick(at("2026-11-28T09:00:00Z"));
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("crank 10.10 V 11-27 "), "{screen}");
    let screen = text(&draw(&app, 200, 60));
    assert!(
        screen.contains("crank 10.10 V at 11-27 08:00 (1d00h ago)"),
        "{screen}"
    );
    app.tick(at("2027-01-02T09:00:00Z"));
    let screen = text(&draw(&app, 200, 60));
    assert!(
        screen.contains("crank 10.10 V at 2026-11-27 (36d00h ago)"),
        "{screen}"
    );
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("crank 10.10 V 2026-11-27"), "{screen}");
}

/// A drive in Copenhagen, an hour's gap, then one in Aalborg, on `day`,
/// in one batch that arrived on 2026-11-27 at 08:01:05.
fn two_drives_on(day: &str) -> App {
    let pos = |t: &str, lat: f64, lon: f64| {
        format!(r#"{{"@t":"track.pos","@ts":"{day}T{t}Z","loc":{{"lat":{lat},"lon":{lon}}}}}"#)
    };
    let body = format!(
        "[{},{},{},{}]",
        pos("07:00:00", 55.6759, 12.5655),
        pos("07:01:00", 55.6800, 12.5700),
        pos("08:00:00", 57.0224, 9.8992),
        pos("08:01:00", 57.0231, 9.9004),
    );
    let mut app = empty();
    app.apply(&accepted(1, at("2026-11-27T08:01:05Z"), Some(UNIT), &body));
    app.tick(at("2026-11-27T08:01:10Z"));
    app
}

#[test]
fn the_map_shows_the_last_drive_with_a_scale_bar_and_m_shows_all() {
    let app = two_drives_on("2026-11-27");
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("drive 2 of 2 · a all"), "{screen}");
        let bar = screen.lines().find(|l| l.contains('├')).expect(&screen);
        assert!(bar.contains("┤") && bar.contains(" m "), "a street: {bar}");
        let mut all = app.clone();
        press(&mut all, &[KeyCode::Char('a')]);
        let screen = text(&draw(&all, w, h));
        assert!(screen.contains("all 2 drives · a the last"), "{screen}");
        let bar = screen.lines().find(|l| l.contains('├')).expect(&screen);
        assert!(bar.contains(" km "), "a country: {bar}");
    }
}

#[test]
fn types_that_do_not_fit_are_counted_and_scroll_into_view() {
    let records: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"@t":"kind.{i:02}","@ts":"2026-11-27T08:00:00Z","v":{i}}}"#))
        .collect();
    let mut app = empty();
    let body = format!("[{}]", records.join(","));
    app.apply(&accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), &body));
    app.resize(80, 24);
    press(&mut app, &[KeyCode::Char('3')]);
    // 17 rows under the table's header at 80×24.
    let top = text(&draw(&app, 80, 24));
    assert!(top.contains("0 above · +13 more"), "{top}");
    assert!(top.contains("kind.16") && !top.contains("kind.17"), "{top}");
    press(&mut app, &[KeyCode::Char('G')]);
    let bottom = text(&draw(&app, 80, 24));
    assert!(bottom.contains("13 above · +0 more"), "{bottom}");
    assert!(
        bottom.contains("kind.29") && !bottom.contains("kind.12 "),
        "{bottom}"
    );
}

#[test]
fn m_changes_the_answer_mode_live_until_changed_or_for_one_upload() {
    use autopi_rx::receiver::respond::{Answer, Control, Mode};
    use std::sync::Arc;
    let control = Arc::new(Control::default());
    let mut app = guide();
    app.setup.respond = Some(control.clone());
    let screen = text(&draw(&app, 120, 40));
    assert!(!screen.contains("ANSWERING"), "ok is the quiet default");

    // m, one down (500), Enter: until changed.
    press(&mut app, &[KeyCode::Char('m')]);
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("Answer mode") && screen.contains("next upload only"),
        "{screen}"
    );
    press(&mut app, &[KeyCode::Down, KeyCode::Enter]);
    assert_eq!(control.shown().lasting, Mode::Refuse(500));
    assert_eq!(app.viewer.mode_menu, None, "Enter closes the menu");
    for (w, h) in SIZES {
        let screen = text(&draw(&app, w, h));
        let first = screen.lines().next().unwrap();
        assert!(first.contains("ANSWERING 500"), "{first}");
        assert!(
            first.contains("retry queue"),
            "what the device does: {first}"
        );
    }

    // m, up to ok... then hangup for the next upload only (Tab).
    press(&mut app, &[KeyCode::Char('m')]);
    let hangup = autopi_rx::receiver::respond::MENU
        .iter()
        .position(|m| *m == Mode::Hangup)
        .unwrap();
    // The menu opens on the mode in force (500, the second line).
    for _ in 1..hangup {
        press(&mut app, &[KeyCode::Char('j')]);
    }
    press(
        &mut app,
        &[KeyCode::Tab, KeyCode::Char('q'), KeyCode::Char('m')],
    );
    assert_eq!(control.shown().next, None, "q closed the menu, set nothing");
    assert_eq!(
        app.handle_key(KeyEvent::from(KeyCode::Char('q'))),
        Action::Continue,
        "q in the menu closes it, it does not quit"
    );
    press(&mut app, &[KeyCode::Char('m')]);
    for _ in 1..hangup {
        press(&mut app, &[KeyCode::Down]);
    }
    press(&mut app, &[KeyCode::Tab, KeyCode::Enter]);
    let shown = control.shown();
    assert_eq!(
        (shown.next, shown.lasting),
        (Some(Mode::Hangup), Mode::Refuse(500))
    );
    let first = text(&draw(&app, 200, 60))
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        first.contains("ANSWERING hangup (next upload only, then 500)"),
        "{first}"
    );
    assert_eq!(control.take(), (Mode::Hangup, Answer::Hangup));
    assert_eq!(control.take().0, Mode::Refuse(500));
}

/// Bidi overrides, isolates and other invisible controls in what a device
/// sends (record fields, the unit-id, headers, the path) never reach the
/// screen: a terminal would reorder or hide text with them.
#[test]
fn invisible_and_bidi_controls_are_never_drawn() {
    const TRICKS: [char; 8] = [
        '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200F}', '\u{FEFF}', '\u{061C}',
        '\u{0007}',
    ];
    let unit = "ee3df171ff0f6209a3dbaa00b00e1d05";
    let body = r#"[{"@t":"event.system.power","@ts":"2026-11-27T08:00:01Z","@tag":"system/power/on","trigger":"\u202egnp.exe\u2066x\u2069"},{"@t":"obd.vin","@ts":"2026-11-27T08:00:02Z","value":"WVW\u200b\u200fZZZ\ufeff\u061c1K\u0007"}]"#;
    let mut app = empty();
    let mut e = accepted(1, at("2026-11-27T08:00:05Z"), Some(unit), body);
    e.path = "/logbook/\u{202E}storage".into();
    e.headers.push(("x-note".into(), "a\u{2066}b".into()));
    app.apply(&e);
    app.tick(at("2026-11-27T08:00:06Z"));
    let mut screens = vec![draw(&app, 120, 40)];
    press(&mut app, &[KeyCode::Char('2')]);
    screens.push(draw(&app, 120, 40));
    press(&mut app, &[KeyCode::Enter]);
    screens.push(draw(&app, 120, 40));
    press(&mut app, &[KeyCode::Esc, KeyCode::Char('3')]);
    screens.push(draw(&app, 120, 40));
    for (i, terminal) in screens.iter().enumerate() {
        let buf = terminal.backend().buffer();
        for cell in buf.content() {
            assert!(
                !cell.symbol().chars().any(|c| TRICKS.contains(&c)),
                "screen {i} draws {:?}",
                cell.symbol()
            );
        }
    }
    // The visible text around them is still there.
    assert!(
        text(&screens[0]).contains("gnp.exe"),
        "{}",
        text(&screens[0])
    );
}

/// The screen as a terminal shows it: each cell's symbol, and the cells
/// a wide one covers skipped (as ratatui's diff skips them).
fn as_shown(terminal: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    use unicode_width::UnicodeWidthStr;
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut x = 0;
        while x < buf.area.width {
            let symbol = buf[(x, y)].symbol();
            out.push_str(symbol);
            x += symbol.width().max(1) as u16;
        }
        out.push('\n');
    }
    out
}

/// A zero-width joiner holds a cluster together (a family emoji, laid
/// out 2 columns wide); removed from the laid-out cell, the four emoji it
/// joined took 8 columns and covered the text after them.
#[test]
fn a_joined_cluster_keeps_its_width_once_its_joiners_go() {
    let body = "[{\"@t\":\"event.x\",\"@ts\":\"2026-11-27T08:00:01Z\",\"@tag\":\"fam\",\
        \"msg\":\"A\\u200dB \\ud83d\\udc68\\u200d\\ud83d\\udc69\\u200d\\ud83d\\udc67\\u200d\\ud83d\\udc66 then normal text\"}]";
    let mut app = empty();
    app.apply(&accepted(1, at("2026-11-27T08:00:05Z"), Some(UNIT), body));
    app.tick(at("2026-11-27T08:00:06Z"));
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = as_shown(&draw(&app, w, h));
        assert!(screen.contains("then normal text"), "{w}x{h}:\n{screen}");
        assert!(!screen.contains('\u{200d}'), "{screen}");
    }
}

#[test]
fn a_retry_is_marked_r_and_its_detail_says_what_it_repeats() {
    use autopi_rx::fixtures::answered_by_mode;
    let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":900}]"#;
    let first = answered_by_mode(
        accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), body),
        "503",
        503,
        None,
    );
    let retry = answered_by_mode(
        accepted(2, at("2026-11-27T08:01:01Z"), Some(UNIT), body),
        "ok",
        200,
        Some(&first),
    );
    assert_eq!(autopi_rx::dashboard::ui::requests::marks(&retry), "R");
    assert_eq!(autopi_rx::dashboard::ui::requests::marks(&first), "");
    let mut app = empty();
    app.apply(&first);
    app.apply(&retry);
    app.tick(at("2026-11-27T08:01:02Z"));
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Char('g'), KeyCode::Enter],
    );
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("answer mode 503: captured, not acknowledged"),
        "{screen}"
    );
    press(
        &mut app,
        &[KeyCode::Esc, KeyCode::Char('G'), KeyCode::Enter],
    );
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("retry of the batch received 2026-11-27T08:00:01"),
        "{screen}"
    );
}

#[test]
fn the_header_says_whether_the_shown_device_keeps_its_cycle() {
    let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":900}]"#;
    let mut app = empty();
    for (i, s) in ["08:00:00", "08:01:00", "08:02:01", "08:03:00"]
        .iter()
        .enumerate()
    {
        let t = at(&format!("2026-11-27T{s}Z"));
        app.apply(&accepted(i as u64 + 1, t, Some(UNIT), body));
    }
    let header = |app: &autopi_rx::dashboard::app::App| {
        text(&draw(app, 200, 60))
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    for (now, want) in [
        ("08:03:30", "uplink on time (cycle 60 s)"),
        ("08:05:00", "uplink late"),
        ("08:08:00", "uplink overdue"),
        ("08:20:00", "uplink silent"),
    ] {
        app.tick(at(&format!("2026-11-27T{now}Z")));
        let line = header(&app);
        assert!(line.contains(want), "{now}: {line}");
    }
}

/// A 200 held back by `late:SECS` is said on its row and in its detail:
/// it read as a fast 200 (a UX review).
#[test]
fn a_late_answer_is_said_on_its_row_and_in_its_detail() {
    use autopi_rx::fixtures::answered_by_mode;
    let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":900}]"#;
    let late = answered_by_mode(
        accepted(1, at("2026-11-27T08:00:01Z"), Some(UNIT), body),
        "late:15",
        200,
        None,
    );
    let mut app = empty();
    app.apply(&late);
    app.tick(at("2026-11-27T08:00:02Z"));
    press(&mut app, &[KeyCode::Char('2')]);
    let screen = text(&draw(&app, 120, 40));
    assert!(
        line_with(&screen, "08:00:01.000").contains("200 sent after 15 s (late)"),
        "{screen}"
    );
    press(&mut app, &[KeyCode::Enter]);
    let screen = text(&draw(&app, 120, 40));
    assert!(
        screen.contains("answer mode late:15: captured at once, acknowledged 15 s later"),
        "{screen}"
    );
}

/// A device whose latest upload was not acknowledged in time is shown
/// retrying: in the header, on the Uplink tab with a note saying since
/// when and how it was last answered, and on the Live tab's summary; an
/// upload acknowledged ends it. Nothing said so (a UX review).
#[test]
fn a_device_not_acknowledged_in_time_is_shown_retrying() {
    use autopi_rx::fixtures::answered_by_mode;
    let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":900}]"#;
    let mut app = empty();
    for (i, s) in ["08:00:00", "08:01:00", "08:02:00"].iter().enumerate() {
        let t = at(&format!("2026-11-27T{s}Z"));
        app.apply(&accepted(i as u64 + 1, t, Some(UNIT), body));
    }
    let refused = answered_by_mode(
        accepted(4, at("2026-11-27T08:03:00Z"), Some(UNIT), body),
        "503",
        503,
        None,
    );
    app.apply(&refused);
    app.tick(at("2026-11-27T08:03:20Z"));
    let live = text(&draw(&app, 120, 40));
    assert!(
        live.lines()
            .nth(1)
            .unwrap()
            .contains("uplink retrying (cycle 60 s)"),
        "{live}"
    );
    assert!(live.contains("uplink 1 retrying"), "{live}");
    press(&mut app, &[KeyCode::Char('4')]);
    let tab = text(&draw(&app, 120, 40));
    let row = line_with(&tab, "ee3d…1d05 20s ago");
    assert!(row.contains("retrying"), "{tab}");
    assert!(
        tab.contains(
            "retrying since 08:03:00 UTC (20s ago), nothing acknowledged since; last answered 503"
        ),
        "{tab}"
    );
    let acked = answered_by_mode(
        accepted(5, at("2026-11-27T08:04:00Z"), Some(UNIT), body),
        "ok",
        200,
        Some(&refused),
    );
    app.apply(&acked);
    app.tick(at("2026-11-27T08:04:01Z"));
    let tab = text(&draw(&app, 120, 40));
    assert!(!tab.contains("retrying"), "{tab}");
    assert!(
        line_with(&tab, "ee3d…1d05 1s ago").contains("on time"),
        "{tab}"
    );
}

/// With several devices the header names the one its uplink state is
/// of, where the capture's file name still fits whole; at 80 columns the
/// words shorten so that the capture's size stays whole (it read
/// `capture 23.8 …`: a UX review).
#[test]
fn the_header_names_the_device_its_uplink_is_of_and_keeps_the_size() {
    let body = r#"[{"@t":"obd.rpm","@ts":"2026-11-27T08:00:00Z","value":900}]"#;
    let mut app = empty();
    let other = "0123456789abcdef0123456789abcdef";
    for (i, s) in ["08:00:00", "08:01:00", "08:02:00", "08:03:00"]
        .iter()
        .enumerate()
    {
        let t = at(&format!("2026-11-27T{s}Z"));
        app.apply(&accepted(2 * i as u64 + 1, t, Some(other), body));
        app.apply(&accepted(2 * i as u64 + 2, t, Some(UNIT), body));
    }
    app.tick(at("2026-11-27T08:03:01Z"));
    let line = |w| text(&draw(&app, w, 40)).lines().nth(1).unwrap().to_string();
    let wide = line(200);
    assert!(
        wide.contains("uplink ee3d…1d05 on time (cycle 60 s) · devices 2")
            && wide.contains("20261127T075950Z.jsonl"),
        "{wide}"
    );
    let narrow = line(80);
    assert!(
        narrow.starts_with(" last 1s ago · uplink on time · 2 devices · 1 token · capture ")
            && narrow.contains(" KiB"),
        "{narrow}"
    );
}

/// Listening on loopback, the note saying how to be reached is whole at
/// 80 columns: the label gives way to it (it was cut to "(loopback: a
/// device can…": a UX review); at 120 both show.
#[test]
fn the_loopback_note_is_whole_at_80_columns() {
    let (urls, url_note) =
        autopi_rx::dashboard::tui::device_urls("127.0.0.1:8765".parse().unwrap(), &[]);
    let setup = autopi_rx::dashboard::app::Setup {
        urls,
        url_note,
        ..setup()
    };
    let app = App::new(setup, Theme::mono(), at("2026-11-27T07:59:55Z"));
    let first = |w| text(&draw(&app, w, 40)).lines().next().unwrap().to_string();
    let narrow = first(80);
    assert!(
        narrow.contains("http://127.0.0.1:8765/  (loopback only: --listen 0.0.0.0:8765)"),
        "{narrow}"
    );
    let wide = first(120);
    assert!(
        wide.contains("point the device at http://127.0.0.1:8765/  (loopback"),
        "{wide}"
    );
}

/// A batch of old data is marked `O` in the Requests tab; the device's
/// Live panels carry it as old, and the Uplink tab says so.
#[test]
fn old_data_is_marked_in_requests_and_uplink() {
    // The guide's examples are from 2020 and 2021.
    let mut guide = guide();
    let live = text(&draw(&guide, 120, 40));
    assert!(live.contains("OLD DATA · not the current state"), "{live}");
    // Years old: said in years, whole in the data lag column (it was cut,
    // `OLD 2110…`, at every width).
    press(&mut guide, &[KeyCode::Char('4')]);
    let uplink = text(&draw(&guide, 120, 40));
    assert!(
        uplink
            .lines()
            .any(|l| l.contains("OLD ") && l.contains("y ")),
        "{uplink}"
    );
    assert!(!uplink.contains("OLD 2"), "{uplink}");
    let mut app = bench();
    press(&mut app, &[KeyCode::Char('2')]);
    let requests = text(&draw(&app, 120, 40));
    let row = requests
        .lines()
        .find(|l| l.contains("08:03:10.000"))
        .expect("the fail-queue batch is listed");
    assert!(row.contains(" O "), "{row}");
    let fresh = requests
        .lines()
        .find(|l| l.contains("08:02:10.000"))
        .unwrap();
    assert!(!fresh.contains(" O "), "{fresh}");
    press(&mut app, &[KeyCode::Char('4')]);
    let uplink = text(&draw(&app, 120, 40));
    assert!(uplink.contains("OLD 1d02h"), "{uplink}");
    // Two units that do not fit the column: the larger alone (`OLD
    // 22h27m` was cut to `OLD 22h2…`).
    let mut app = bench();
    app.tick(at("2026-11-29T06:00:00Z"));
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-28T07:33:00Z","voltage":12.5}]"#;
    app.apply(&accepted(90, at("2026-11-29T06:00:00Z"), Some(UNIT), body));
    press(&mut app, &[KeyCode::Char('4')]);
    let uplink = text(&draw(&app, 120, 40));
    assert!(uplink.contains("OLD 22h "), "{uplink}");
    assert!(
        uplink.contains("old data: 1 batch(es) over 1h00m late"),
        "{uplink}"
    );
}

/// More devices than the Uplink tab holds: counted, and every step of the
/// arrows moves the rows.
#[test]
fn the_uplink_tab_scrolls_device_by_device() {
    let mut app = devices_uploading(20, |i| format!("{i:02}aa00000000000000000000000000bb"));
    app.tick(at("2026-11-27T08:00:05Z"));
    press(&mut app, &[KeyCode::Char('4')]);
    let row = |screen: &str, n: u32| {
        let id = format!("│{n:02}aa…00bb");
        screen.lines().any(|l| l.starts_with(&id))
    };
    for (w, h) in [(80, 24), (120, 24)] {
        let screen = text(&draw(&app, w, h));
        assert!(row(&screen, 0) && screen.contains("more"), "{screen}");
        assert!(!row(&screen, 19), "{screen}");
    }
    press(&mut app, &[KeyCode::Down, KeyCode::Down]);
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("2 above") && !row(&screen, 1), "{screen}");
    assert!(row(&screen, 2), "{screen}");
    press(&mut app, &[KeyCode::End]);
    let screen = text(&draw(&app, 80, 24));
    assert!(row(&screen, 19) && screen.contains("19 above"), "{screen}");
    press(&mut app, &[KeyCode::Up]);
    let screen = text(&draw(&app, 80, 24));
    assert!(row(&screen, 18), "one step back shows one more: {screen}");
}

/// Text whose width a terminal could count otherwise than the layout did
/// (a flag: two regional indicators in one 2-column cluster, drawn by tmux
/// as two cells; a Devanagari conjunct; an emoji variation selector;
/// characters the width tables disagree on) is drawn one character that
/// takes room a cell: the columns a terminal uses are then the ones laid
/// out, and ratatui redraws every cell it covered (a flag left its second
/// half on screen after a tab change).
#[test]
fn every_cell_holds_one_character_of_the_width_laid_out() {
    use ratatui::buffer::CellWidth;
    use unicode_width::UnicodeWidthChar;
    let text = "\\ud83c\\udde9\\ud83c\\uddf0 \u{915}\u{94d}\u{937}\u{924}\u{94d}\u{930}\u{93f}\u{92f} \
        \u{2764}\\ufe0f \u{2630} \u{3248} \u{995}\u{9be} \u{ff76}\u{ff9e} \u{2018}\u{fe01} \u{1fa77} |END";
    let body = format!(
        "[{{\"@t\":\"event.x\",\"@ts\":\"2026-11-27T08:00:01Z\",\"@tag\":\"flag/{text}\",\"msg\":\"{text}\"}},\
         {{\"@t\":\"obd.{text}\",\"@ts\":\"2026-11-27T08:00:02Z\",\"value\":\"{text}\"}}]"
    );
    let mut app = empty();
    app.apply(&accepted(1, at("2026-11-27T08:00:05Z"), Some(UNIT), &body));
    app.tick(at("2026-11-27T08:00:06Z"));
    let mut screens = vec![];
    for (w, h) in [(80, 24), (120, 40)] {
        screens.push(draw(&app, w, h));
        press(&mut app, &[KeyCode::Char('3')]);
        screens.push(draw(&app, w, h));
        press(&mut app, &[KeyCode::Char('1')]);
    }
    for terminal in &screens {
        let buf = terminal.backend().buffer();
        for y in 0..buf.area.height {
            let mut x = 0;
            while x < buf.area.width {
                // As ratatui's diff steps: by its own count of the cell.
                let symbol = buf[(x, y)].symbol();
                let columns = usize::from(symbol.cell_width());
                let mut chars = symbol.chars();
                let first = chars.next().unwrap();
                assert_eq!(first.width(), Some(columns), "{symbol:?} at {x},{y}");
                assert!(chars.all(|c| c.width() == Some(0)), "{symbol:?}");
                assert!(
                    !symbol.chars().any(|c| matches!(
                        c,
                        '\u{1F1E6}'..='\u{1F1FF}'
                            | '\u{FE00}'..='\u{FE0F}'
                            | '\u{2630}'
                            | '\u{3248}'
                            | '\u{9BE}'
                            | '\u{FF9E}'
                            | '\u{1FA77}'
                    )),
                    "{symbol:?} at {x},{y}"
                );
                x += columns.max(1) as u16;
            }
        }
        let screen = as_shown(terminal);
        assert!(screen.contains("DK"), "{screen}");
    }
    // The text after them is drawn where the layout put it.
    assert!(
        screens.iter().any(|t| as_shown(t).contains("|END")),
        "{}",
        as_shown(&screens[3])
    );
}

/// The text between a panel's bottom corners on the line holding `mark`.
fn bottom_edge_holding(screen: &str, mark: &str) -> String {
    let line = screen
        .lines()
        .find(|l| l.contains(mark) && l.contains('╰'))
        .unwrap_or_else(|| panic!("no bottom edge holds {mark}:\n{screen}"));
    let start = line.find('╰').unwrap();
    let end = line[start..].find('╯').map_or(line.len(), |e| start + e);
    line[start..end].to_string()
}

/// Two titles on one bottom edge are both whole or cut with `…`, never
/// drawn over each other (`OLD DATA · not the current sta all 2 drives`).
#[test]
fn titles_on_a_bottom_edge_are_whole_or_cut_never_overlaid() {
    // Two drives, two days before they arrived: old data.
    let app = two_drives_on("2026-11-25");
    let mut whole = 0;
    for (w, h) in [(80, 24), (120, 40), (200, 60)] {
        let screen = text(&draw(&app, w, h));
        let edge = bottom_edge_holding(&screen, "OLD");
        // OLD DATA in its full wording or its short one, whole.
        let old = edge.contains(" OLD DATA · not the current state ")
            || (edge.contains(" OLD DATA ") && !edge.contains("OLD DATA ·"));
        let both = old && edge.contains(" drive 2 of 2 · a all ");
        assert!(both || edge.contains('…'), "{w}x{h}: {edge}");
        whole += usize::from(both && edge.contains("the current state"));
    }
    assert!(whole > 0, "no size had room for both titles in full");
}

/// `s` with a long path at 80 columns: the path gives way from its start,
/// so the file name stays (it ran into the corner, its name lost).
#[test]
fn a_saved_body_keeps_its_file_name_on_a_narrow_edge() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2')]);
    let path =
        "/tmp/a_very_long_directory_name_for_checking/another_long_folder/bench-request-3.json";
    app.viewer.saved = Some(Ok(path.into()));
    let screen = text(&draw(&app, 80, 24));
    let edge = bottom_edge_holding(&screen, "body saved to");
    assert!(
        edge.contains("…") && edge.contains("/bench-request-3.json "),
        "{edge}"
    );
}

/// The first line of `screen` holding `marker`, its end trimmed ("" if
/// none).
fn line_with<'a>(screen: &'a str, marker: &str) -> &'a str {
    let line = screen.lines().find(|l| l.contains(marker));
    line.unwrap_or_default().trim_end()
}

/// The last line of `screen` holding `marker`, its end trimmed.
fn last_line_with<'a>(screen: &'a str, marker: &str) -> &'a str {
    let line = screen.lines().rfind(|l| l.contains(marker));
    line.unwrap_or_default().trim_end()
}

/// On the Requests tab the filter shares the top edge with the note: the
/// note gives way, cut with `…`, and the filter being typed stays whole
/// (at 80 columns the note ran over it: a review).
#[test]
fn the_requests_note_gives_way_to_the_filter_being_typed() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2'), KeyCode::Char('/')]);
    for c in "power".chars() {
        press(&mut app, &[KeyCode::Char(c)]);
    }
    for width in [80, 120] {
        let screen = text(&draw(&app, width, 24));
        let edge = line_with(&screen, "╭ Requests");
        assert!(
            edge.contains("filter: power▏ Enter keeps · Esc clears "),
            "{width}:\n{screen}"
        );
        assert!(edge.ends_with('╮'), "{width}:\n{screen}");
        assert_eq!(edge.ends_with("… ╮"), width == 80, "{width}:\n{screen}");
    }
}

/// A filter typed longer than the edge shows its end after `…`, the
/// cursor with it, on every tab, and the note beside it gives way: it ran
/// off the edge, the uplink summary over it on Events (a probe).
#[test]
fn a_long_filter_being_typed_shows_its_end() {
    let typed = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789";
    for (tab, edge) in [('1', "╰"), ('2', "╭ Requests"), ('3', "╰")] {
        let mut app = busy();
        press(&mut app, &[KeyCode::Char(tab), KeyCode::Char('/')]);
        for c in typed.chars() {
            press(&mut app, &[KeyCode::Char(c)]);
        }
        let screen = text(&draw(&app, 80, 24));
        let line = if edge == "╰" {
            last_line_with(&screen, "filter: ")
        } else {
            line_with(&screen, edge)
        };
        assert!(
            line.contains("filter: …") && line.contains("3456789▏ "),
            "{tab}:\n{screen}"
        );
        assert!(
            line.ends_with('╯') || line.ends_with('╮'),
            "{tab}:\n{screen}"
        );
    }
}

/// On the Types tab the filter being typed and the scroll note share the
/// bottom edge: the note takes a short form where the long one does not
/// fit, and the filter stays whole (the note ran over it at 80 columns).
#[test]
fn the_types_scroll_note_gives_way_to_the_filter_being_typed() {
    let mut app = busy();
    // 13 types and 20 more: more than the rows.
    let more: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"@t":"more.k{i}","@ts":"2026-11-27T08:14:00Z"}}"#))
        .collect();
    let body = format!("[{}]", more.join(","));
    app.apply(&accepted(9, at("2026-11-27T08:14:01Z"), Some(UNIT), &body));
    press(&mut app, &[KeyCode::Char('3'), KeyCode::Char('/')]);
    press(&mut app, &[KeyCode::Char('.')]);
    for width in [80, 160] {
        let screen = text(&draw(&app, width, 24));
        let edge = last_line_with(&screen, "filter: ");
        assert!(
            edge.contains("filter: .▏ Enter keeps · Esc clears "),
            "{width}:\n{screen}"
        );
        assert!(
            edge.contains(" above · +") && edge.ends_with('╯'),
            "{width}:\n{screen}"
        );
        assert_eq!(
            edge.contains("PgUp PgDn scroll"),
            width > 80,
            "{width}:\n{screen}"
        );
    }
}

/// A unit-id's control characters are written as `\u{..}` wherever the
/// dashboard shows it (request list and detail, Uplink, device picker),
/// as `view --summary` writes it: the frame dropped them, and `ctl\x1b]0;T`
/// read `ctl]0;T`, like another device of that name (a probe).
#[test]
fn a_unit_id_s_control_characters_are_shown_escaped() {
    let mut app = empty();
    let unit = "ctl\u{1}\u{1b}]0;T\u{7}";
    let shown = "ctl\\u{1}\\u{1b}]0;T\\u{7}";
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.6}]"#;
    app.apply(&accepted(1, at("2026-11-27T08:00:00Z"), Some(unit), body));
    app.tick(at("2026-11-27T08:00:07Z"));
    for keys in [
        &[KeyCode::Char('4')][..],
        &[KeyCode::Char('2')],
        &[KeyCode::Enter],
    ] {
        press(&mut app, keys);
        let screen = text(&draw(&app, 200, 40));
        assert!(screen.contains(shown), "{keys:?}:\n{screen}");
        assert!(!screen.contains("ctl]0;T"), "{keys:?}:\n{screen}");
    }
    // A 32-digit id with an escape in it is shortened on Uplink where
    // it does not fit whole, not cut at its end (which hid the escape);
    // the device picker shows it escaped.
    let long = "0123456789abcdef0123456789abcde\u{200b}f";
    app.apply(&accepted(2, at("2026-11-27T08:00:01Z"), Some(long), body));
    press(&mut app, &[KeyCode::Esc, KeyCode::Char('4')]);
    let screen = text(&draw(&app, 200, 40));
    assert!(
        !screen.contains("0123456789abcdef0123456789abcde…"),
        "{screen}"
    );
    assert!(screen.contains("0123…0b}f"), "{screen}");
    press(&mut app, &[KeyCode::Char('d')]);
    let screen = text(&draw(&app, 200, 40));
    let picker = screen.lines().find(|l| l.contains('◀')).unwrap_or_default();
    assert!(picker.contains("ctl\\…u{7}"), "{picker}");
    // A device whose unit-id is that escaped text, sent as printable
    // characters, reads apart from it: its backslashes are doubled.
    app.apply(&accepted(3, at("2026-11-27T08:00:02Z"), Some(shown), body));
    press(&mut app, &[KeyCode::Esc, KeyCode::Char('2')]);
    let screen = text(&draw(&app, 200, 40));
    let rows = |unit: &str| screen.lines().filter(|l| l.contains(unit)).count();
    assert_eq!(rows("ctl\\\\u{1}\\\\u{1b}]0;T\\\\u{7}"), 1, "{screen}");
    assert_eq!(rows(shown), 1, "{screen}");
}

/// A panel's note longer than the room beside its title is cut with `…`
/// and leaves the title whole: ratatui let it run over the title from its
/// start (the Uplink tab at 80 columns with more devices than it keeps
/// read "╭vices (2872 batches of further devices not shown)…"; a probe).
#[test]
fn a_long_panel_note_is_cut_and_leaves_the_title() {
    let mut app = empty();
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:00Z","voltage":12.6}]"#;
    for i in 0..70u64 {
        let unit = format!("{i:032x}");
        app.apply(&accepted(
            i + 1,
            at("2026-11-27T08:00:00Z"),
            Some(&unit),
            body,
        ));
    }
    app.tick(at("2026-11-27T08:00:07Z"));
    press(&mut app, &[KeyCode::Char('4')]);
    for width in [80, 120] {
        let screen = text(&draw(&app, width, 24));
        let edge = line_with(&screen, "╭");
        assert!(edge.starts_with("╭ Uplink "), "{width}:\n{screen}");
        assert!(edge.ends_with('╮'), "{width}:\n{screen}");
        assert!(
            edge.contains("64+ devices (6 batches"),
            "{width}:\n{screen}"
        );
        let whole = edge.ends_with(" on arrival ╮");
        assert!(whole || edge.ends_with("… ╮"), "{width}:\n{screen}");
        assert_eq!(whole, width > 80, "{width}:\n{screen}");
    }
}

/// The help lists every address the device can be pointed at, as the
/// header's "+N more (?)" promises: on a screen too short for all, the
/// last keys give way, counted, not the addresses (the box was cut at the
/// screen's edge: 3 addresses at 80x24 showed 2; a review). On a tall
/// screen every key and the note on what is kept are there.
#[test]
fn help_lists_every_address_on_a_small_screen() {
    // The help open over a dashboard with these addresses.
    let help = |urls: &[String]| {
        let setup = autopi_rx::dashboard::app::Setup {
            urls: urls.to_vec(),
            ..setup()
        };
        let mut app = App::new(setup, Theme::mono(), at("2026-11-27T07:59:55Z"));
        press(&mut app, &[KeyCode::Char('?')]);
        app
    };
    let urls: Vec<String> = (1..=5)
        .map(|i| format!("http://192.168.{i}.20:8000/"))
        .collect();
    let app = help(&urls);
    let small = text(&draw(&app, 80, 24));
    for url in &urls {
        assert!(small.contains(url.as_str()), "{url} missing:\n{small}");
    }
    assert!(
        small.contains("more keys: a taller terminal shows them"),
        "{small}"
    );
    assert!(
        small.contains("quit (the capture is flushed first)"),
        "{small}"
    );
    // More addresses than rows: as many as fit, the rest counted, the
    // box whole.
    let many: Vec<String> = (1..=30)
        .map(|i| format!("http://10.0.{i}.1:8000/"))
        .collect();
    let screen = text(&draw(&help(&many), 80, 24));
    let listed = many
        .iter()
        .filter(|u| screen.contains(&format!("{u} ")))
        .count();
    let rest: usize = screen
        .split("   +")
        .nth(1)
        .and_then(|r| r.split(" more: a taller terminal shows them").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count:\n{screen}"));
    assert!(listed > 0, "{screen}");
    assert_eq!(listed + rest, many.len(), "{screen}");
    assert!(
        screen.contains("╰") && screen.contains("more keys"),
        "{screen}"
    );
    let tall = text(&draw(&app, 120, 40));
    assert!(!tall.contains("more keys"), "{tall}");
    assert!(tall.contains("pick next / previous device"), "{tall}");
    assert!(tall.contains("Keeps the last"), "{tall}");
}

/// The help lists only keys that do something where it is opened: looking
/// back, no freeze, answer mode or device arrows (the timeline has them);
/// Home and End are listed with g and G.
#[test]
fn help_lists_the_keys_that_work_here() {
    let mut live = answering();
    press(&mut live, &[KeyCode::Esc, KeyCode::Char('?')]);
    let screen = text(&draw(&live, 120, 40));
    for key in ["f  space", "m ", "d D  → ←", "g G Home End"] {
        assert!(screen.contains(key), "live lacks {key}:\n{screen}");
    }
    let mut view = viewing();
    press(&mut view, &[KeyCode::Char('?')]);
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = text(&draw(&view, w, h));
        assert!(
            screen.contains("Home End     first / last upload"),
            "{screen}"
        );
        // Nothing is written and no new line comes, looking back: the
        // help said the capture is flushed and G follows new lines (a UX
        // review).
        assert!(
            line_with(&screen, "q  Ctrl-C").contains("q  Ctrl-C    quit    "),
            "{screen}"
        );
        assert!(
            !screen.contains("flushed first") && !screen.contains("follows new lines"),
            "{screen}"
        );
        // Home and End are the timeline's here.
        assert!(!screen.contains("g G Home End"), "{screen}");
        assert!(screen.contains("g  G "), "{screen}");
        for key in [
            "freeze the display",
            "answer mode: refuse",
            "pick next / previous device",
        ] {
            assert!(!screen.contains(key), "view lists {key}:\n{screen}");
        }
        // Every key line fits: the last one is shown.
        assert!(screen.contains("p  s "), "{w}x{h}:\n{screen}");
    }
}

//! The dashboard stepped without threads: keys, freeze, scrolling, the run
//! loop on a TestBackend, styles that carry meaning, and a real upload
//! whose token must never reach the screen.

mod ui_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use autopi_rx::dashboard::app::{Action, Outside, Tab};
use autopi_rx::dashboard::ui::theme::Theme;
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
    assert_eq!(app.view.tab, Tab::Live);
    press(&mut app, &[KeyCode::Tab]);
    assert_eq!(app.view.tab, Tab::Requests);
    press(&mut app, &[KeyCode::BackTab, KeyCode::BackTab]);
    assert_eq!(app.view.tab, Tab::Types);
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Enter, KeyCode::Char('?')],
    );
    assert!(app.view.help && app.view.detail.is_some());
    press(&mut app, &[KeyCode::Esc]);
    assert!(
        !app.view.help && app.view.detail.is_some(),
        "Esc closes help first"
    );
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.view.detail, None);
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
    assert_eq!(app.view.filter, "q");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl_c), Action::Quit);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.view.filter, "");
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
    assert_eq!(
        app.live().totals.records,
        1005,
        "still folding while frozen"
    );
    assert_eq!(text(&draw(&app, 120, 40)), before, "display unchanged");
    press(&mut app, &[KeyCode::Char('f')]);
    let after = text(&draw(&app, 120, 40));
    assert!(after.contains("records 1,005") && !after.contains("FROZEN"));
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
    assert_eq!(app.view.events_scroll, 201 - 11, "g shows the oldest page");
    assert!(text(&draw(&app, 120, 40)).contains("190 newer below"));
    press(&mut app, &[KeyCode::Char('j')]);
    assert_eq!(app.view.events_scroll, 189, "one key, one line");
    press(&mut app, &[KeyCode::Char('G')]);
    let followed = text(&draw(&app, 120, 40));
    assert!(followed.contains("@vehicle/engine/stopped") && followed.contains("following"));
    assert!(!newest.contains("@vehicle/engine/stopped"));
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
    assert!(top.contains("Headers") && !top.contains("\"@t\": \"obd.coolant_temp\""));
    press(&mut app, &[KeyCode::Char('G')]);
    let bottom = text(&draw(&app, 80, 24));
    assert!(bottom.contains("\"@t\": \"event.vehicle.battery\"") && !bottom.contains("Headers"));
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
    assert_eq!(app.view.detail, Some(4));
    let screen = text(&draw(&app, 120, 40));
    assert!(screen.contains("Request #4") && screen.contains("matches a configured token:  no"));
    press(&mut app, &[KeyCode::Esc, KeyCode::Down]);
    assert_eq!(app.view.selected, None, "back on the newest row: following");
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

#[test]
fn device_picker_switches_panels() {
    let mut app = two_devices();
    let first = text(&draw(&app, 120, 40));
    assert!(first.contains("(1/2)") && first.contains("15.40 V"));
    press(&mut app, &[KeyCode::Char('d')]);
    let second = text(&draw(&app, 120, 40));
    assert!(second.contains("(2/2)") && second.contains("11.20 V") && second.contains("P0300"));
    press(&mut app, &[KeyCode::Left]);
    assert!(text(&draw(&app, 120, 40)).contains("(1/2)"));
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
        probe: Box::new(|| (Some(1_234), 7)),
    };
    let mut app = empty();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    autopi_rx::dashboard::app::run(&mut terminal, &mut app, outside).unwrap();
    let screen = text(&terminal);
    assert!(screen.contains("records 5"), "{screen}");
    assert!(screen.contains("last upload 4s ago"));
    assert!(screen.contains("capture 1.21 KiB in ") && screen.contains("7 events not shown"));
    // On the narrowest screen the warning and the size still show.
    let narrow = text(&draw(&app, 80, 24));
    assert!(
        narrow.contains("7 events not shown") && narrow.contains("1.21 KiB"),
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
        probe: Box::new(|| (None, 0)),
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
    for tab in ['1', '2', '3'] {
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
    let mut app = two_devices();
    press(&mut app, &[KeyCode::Char('d')]);
    let area = Rect::new(0, 0, 100, 8);
    let mut buf = Buffer::empty(area);
    autopi_rx::dashboard::ui::events::render(&app, area, &mut buf);
    let (x, y) = find(&buf, "@system/service/modem/failed").unwrap();
    assert_eq!(buf[(x, y)].style().fg, app.theme.error.fg);
}

/// Posts `body` over a real socket and returns the status line.
fn post(addr: std::net::SocketAddr, authorization: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /logbook/storage HTTP/1.1\r\nHost: bench\r\nauthorization: {authorization}\r\nunit-id: {UNIT}\r\ncontent-type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_real_upload_never_shows_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let capture = autopi_rx::capture::Capture::open(&dir.path().join("c.jsonl")).unwrap();
    let (tx, rx) = bounded(16);
    let settings = autopi_rx::receiver::server::Settings {
        listen: "127.0.0.1:0".into(),
        ingest: autopi_rx::receiver::ingest::Config {
            auth: autopi_rx::receiver::ingest::Auth::tokens(&["sekrit-token-42"]),
            max_body: 1 << 20,
        },
        workers: 2,
        event_bodies: true,
        read_timeout: autopi_rx::receiver::server::DEFAULT_READ_TIMEOUT,
    };
    let running = autopi_rx::receiver::server::start(settings, capture, tx).unwrap();
    let body = &guide_examples()[0];
    assert!(post(running.addr, "token sekrit-token-42", body).contains("200"));
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
        app.view.selected = Some(r.id);
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
        press(&mut app, &[KeyCode::Esc]);
    }
}

//! Scenes for the dashboard tests and screenshots: an app fed with the
//! sample requests (tests/fixtures) at fixed times, so every frame is reproducible.

#![allow(dead_code)]

use autopi_rx::dashboard::app::{App, Setup};
use autopi_rx::dashboard::theme::Theme;
use autopi_rx::fixtures::{accepted, at, duplicate, guide_examples, refused, sample};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

pub const UNIT: &str = "ee3df171ff0f6209a3dbaa00b00e1d05";
pub const UNIT2: &str = "7c1e9a0b4d2f48e3a5b6c7d8e9f00112";

/// Header facts as a bench PC would have them.
pub fn setup() -> Setup {
    Setup {
        urls: vec![
            "http://192.168.1.20:8000/".into(),
            "http://10.8.0.3:8000/".into(),
        ],
        url_note: None,
        tokens: 1,
        capture_path: "captures/20261127T075950Z.jsonl".into(),
        save_beside: "captures/20261127T075950Z.jsonl".into(),
        capture_bytes: Some(215_880),
        dropped_events: 0,
        demo: false,
        // The listener's answer mode, at `ok` as it starts.
        respond: Some(std::sync::Arc::new(
            autopi_rx::receiver::respond::Control::new(autopi_rx::receiver::respond::Mode::Ok),
        )),
        ..Setup::default()
    }
}

/// A dashboard that has seen nothing yet.
pub fn empty() -> App {
    App::new(setup(), Theme::color(), at("2026-11-27T07:59:55Z"))
}

/// After the five examples of AutoPi's guide, one request each.
pub fn guide() -> App {
    let mut app = empty();
    for (i, body) in guide_examples().iter().enumerate() {
        app.apply(&accepted(
            i as u64 + 1,
            at("2026-11-27T08:00:00Z"),
            Some(UNIT),
            body,
        ));
    }
    app.tick(at("2026-11-27T08:00:07Z"));
    app
}

/// A device draining a backlog: full 1000-record batches (the second one
/// shifted 4 minutes on), a re-sent duplicate, a wrong token and broken JSON.
pub fn busy() -> App {
    let mut app = empty();
    let first = sample("batch-1000-naive.json");
    let second = first
        .replace("2026-11-27T08:0", "2026-11-27T08:1")
        .replace("\"sent\":", "\"sent\":1");
    let e1 = accepted(1, at("2026-11-27T08:03:48.120Z"), Some(UNIT), &first);
    let mut e1 = with_naive(e1, 1000);
    e1.elapsed = std::time::Duration::from_micros(4_210);
    app.apply(&e1);
    app.apply(&with_naive(
        accepted(2, at("2026-11-27T08:13:48.480Z"), Some(UNIT), &second),
        1000,
    ));
    app.apply(&duplicate(&e1, 3, at("2026-11-27T08:13:49.010Z")));
    // The listener checks the token before reading a body: none is kept.
    let mut wrong_token = refused(
        4,
        at("2026-11-27T08:13:52.300Z"),
        401,
        "token does not match any configured token",
        "",
    );
    wrong_token.body = None;
    app.apply(&wrong_token);
    let broken =
        r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:13:50","voltage":12.6} {"@t":"obd.rpm"}]"#;
    let error = autopi_rx::receiver::ingest::decode(
        &autopi_rx::receiver::ingest::Config {
            auth: autopi_rx::receiver::ingest::Auth::Open,
            max_body: 1 << 20,
        },
        None,
        broken.as_bytes(),
    )
    .unwrap_err()
    .error;
    app.apply(&refused(
        5,
        at("2026-11-27T08:13:55.700Z"),
        400,
        &error,
        broken,
    ));
    app.tick(at("2026-11-27T08:13:58Z"));
    app
}

/// Two devices; the second one has a battery fault and a trouble code.
pub fn two_devices() -> App {
    let mut app = guide();
    let body = r#"[{"@t":"obd.bat","@ts":"2026-11-27T08:00:03Z","voltage":11.2,"level":10,"state":"critical_level"},
      {"@t":"obd.dtc","@ts":"2026-11-27T08:00:03Z","code":"P0300","text":"Random/multiple cylinder misfire"},
      {"@t":"event.system.service","@ts":"2026-11-27T08:00:04Z","@tag":"system/service/modem/failed","reason":"timeout"},
      {"@t":"track.pos","@ts":"2026-11-27T08:00:04Z","loc":{"lat":55.67594,"lon":12.56553},"alt":12,"sog":0,"cog":0,"nsat":7}]"#;
    app.apply(&accepted(6, at("2026-11-27T08:00:05Z"), Some(UNIT2), body));
    app.tick(at("2026-11-27T08:00:07Z"));
    app
}

fn with_naive(mut e: autopi_rx::event::RequestEvent, n: usize) -> autopi_rx::event::RequestEvent {
    e.naive_timestamps = n;
    e
}

/// Presses the keys in order.
pub fn press(app: &mut App, keys: &[KeyCode]) {
    for &k in keys {
        app.handle_key(KeyEvent::from(k));
    }
}

/// Renders one frame at the given size, told to the app first as the run
/// loop does (on a copy, so the caller's app keeps its own size).
pub fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut app = app.clone();
    app.resize(width, height);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|f| f.render_widget(&app, f.area()))
        .expect("draw");
    terminal
}

/// The frame as plain text lines.
pub fn text(terminal: &Terminal<TestBackend>) -> String {
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// Ten OBD values with long names and a trouble code with a long text.
pub fn many_values() -> App {
    let mut app = empty();
    let pids = [
        ("ambiant_air_temp", "18", "degC"),
        ("barometric_pressure", "101", "kilopascal"),
        ("coolant_temp", "88", "degC"),
        ("engine_load", "34.5", "percent"),
        ("fuel_level", "61.2", "percent"),
        ("intake_temp", "31", "degC"),
        ("maf", "12.44", "gram_per_second"),
        ("rpm", "2210.5", "revolutions_per_minute"),
        ("speed", "64", "kph"),
        ("throttle_pos", "17.6", "percent"),
    ];
    let mut records: Vec<String> = pids
        .iter()
        .map(|(pid, v, u)| {
            format!(r#"{{"@t":"obd.{pid}","@ts":"2026-11-27T08:00:01Z","value":{v},"unit":"{u}"}}"#)
        })
        .collect();
    records.push(r#"{"@t":"obd.dtc","@ts":"2026-11-27T08:00:01Z","code":"P0300","text":"Random/multiple cylinder misfire detected in several cylinders"}"#.into());
    let body = format!("[{}]", records.join(","));
    app.apply(&accepted(1, at("2026-11-27T08:00:02Z"), Some(UNIT), &body));
    app.tick(at("2026-11-27T08:00:05Z"));
    app
}

/// `autopi-rx view` over a capture: the guide's examples, a full batch and
/// the examples again from a second device, the cursor stepped back to the
/// second batch (ages count from its arrival), the timeline at the bottom.
pub fn viewing() -> App {
    use autopi_rx::dashboard::timeline::{Batches, Timeline};
    use autopi_rx::event::RequestEvent;

    struct Capture(Vec<RequestEvent>);
    impl Batches for Capture {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn received(&self, i: usize) -> jiff::Timestamp {
            self.0[i].received
        }
        fn event(&mut self, i: usize) -> Option<RequestEvent> {
            self.0.get(i).cloned()
        }
    }
    let records: Vec<serde_json::Value> = guide_examples()
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
        .collect();
    let guide = serde_json::to_string(&records).unwrap();
    let full = sample("batch-1000-naive.json");
    let events = vec![
        accepted(1, at("2026-11-27T08:00:02Z"), Some(UNIT), &guide),
        accepted(2, at("2026-11-27T08:03:48.120Z"), Some(UNIT), &full),
        accepted(3, at("2026-11-27T09:40:00Z"), Some(UNIT2), &guide),
    ];
    let mut app = empty();
    app.setup.viewing = true;
    app.setup.urls.clear();
    app.setup.respond = None;
    let mut timeline = Timeline::new(Capture(events.clone()));
    timeline.load(&mut app, events.into_iter().map(Some), |_| {});
    timeline.handle_key(&mut app, KeyEvent::from(KeyCode::Left));
    assert_eq!(timeline.position(), 2);
    app
}

/// Busy, with the receiver answering 500 and the answer-mode menu open.
pub fn answering() -> App {
    use autopi_rx::receiver::respond::{Control, Mode};
    let mut app = busy();
    app.setup.respond = Some(std::sync::Arc::new(Control::new(Mode::Refuse(500))));
    press(&mut app, &[KeyCode::Char('m'), KeyCode::Down]);
    app
}

/// A bench session for the Uplink tab, at fixed times: one device keeping
/// its 60 s cycle that was refused (500), retried, hung up on and re-sent,
/// then drained a backlog of full batches; a second one whose clock runs
/// ahead, which sent naive and `Z` timestamps, then its fail queue from the
/// day before after a reboot, and went silent; a third whose batches were
/// all too large (413).
pub fn bench() -> App {
    use autopi_rx::event::NO_ANSWER;
    use autopi_rx::fixtures::answered_by_mode;
    let base = at("2026-11-27T08:00:00Z");
    let t = |secs: f64| base + jiff::SignedDuration::from_secs_f64(secs);
    let stamp = |secs: f64, zulu: bool| {
        let s = t(secs).strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string();
        if zulu { s + "Z" } else { s }
    };
    let batch = |n: usize, newest: &str| {
        let records: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"@t":"obd.bat","@ts":"{newest}","voltage":12.{}}}"#,
                    i % 10
                )
            })
            .collect();
        format!("[{}]", records.join(","))
    };
    let naive = |mut e: autopi_rx::event::RequestEvent, body: &str| {
        e.naive_timestamps = autopi_rx::capture::load::count_records(body).naive;
        e
    };
    let mut app = empty();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    // The first device: a 60 s cycle with a little splay.
    let send = |app: &mut App, e: autopi_rx::event::RequestEvent| app.apply(&e);
    for (i, secs) in [0.0, 62.0, 121.0].iter().enumerate() {
        let body = batch(40 + i * 5, &stamp(secs - 1.5, true));
        send(&mut app, accepted(next(), t(*secs), Some(UNIT), &body));
    }
    let refused_body = batch(50, &stamp(181.0, true));
    let refused = answered_by_mode(
        accepted(next(), t(183.0), Some(UNIT), &refused_body),
        "500",
        500,
        None,
    );
    send(&mut app, refused.clone());
    let retry = answered_by_mode(
        accepted(next(), t(244.0), Some(UNIT), &refused_body),
        "ok",
        200,
        Some(&refused),
    );
    send(&mut app, retry);
    let hung_body = batch(45, &stamp(302.0, true));
    let hung = answered_by_mode(
        accepted(next(), t(304.0), Some(UNIT), &hung_body),
        "hangup",
        NO_ANSWER,
        None,
    );
    send(&mut app, hung.clone());
    let resent = answered_by_mode(
        accepted(next(), t(365.0), Some(UNIT), &hung_body),
        "ok",
        200,
        Some(&hung),
    );
    send(&mut app, resent);
    // Behind: full batches of 100, each sent once the last was answered.
    for (i, secs) in [425.0, 425.6, 426.1, 426.7].iter().enumerate() {
        let body = batch(100, &stamp(secs - 60.0 + i as f64 * 10.0, true));
        send(&mut app, accepted(next(), t(*secs), Some(UNIT), &body));
    }
    // The second device: its clock 3 minutes ahead, naive stamps, then a
    // `Z` batch, then yesterday's fail queue; silent since.
    for (i, secs) in [10.0, 71.0, 130.0].iter().enumerate() {
        let zulu = i == 2;
        let body = batch(12, &stamp(secs + 180.0, zulu));
        send(
            &mut app,
            naive(accepted(next(), t(*secs), Some(UNIT2), &body), &body),
        );
    }
    // Refused: it held that one when it went quiet.
    let stale = batch(30, &stamp(-26.0 * 3600.0, true));
    let stale = answered_by_mode(
        accepted(next(), t(190.0), Some(UNIT2), &stale),
        "503",
        503,
        None,
    );
    send(&mut app, stale);
    // The third: a batch too large, refused before it was read, three times.
    for secs in [20.0, 80.0, 140.0] {
        let mut e = accepted(
            next(),
            t(secs),
            Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
            "[]",
        );
        e.status = 413;
        e.captured = false;
        e.records = 0;
        e.error = Some("body larger than --max-body".into());
        send(&mut app, e);
    }
    app.tick(t(428.0));
    app
}

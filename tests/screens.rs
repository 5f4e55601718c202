//! Whole screens at 80×24 and 120×40, compared with the committed
//! snapshots in tests/snapshots/ (review changes with `cargo insta review`).

mod ui_support;

use ratatui::crossterm::event::KeyCode;
use ui_support::*;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

/// Snapshots the app at both sizes.
fn both_sizes(name: &str, app: &autopi_rx::dashboard::app::App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), draw(app, w, h).backend());
    }
}

#[test]
fn nothing_received_yet() {
    both_sizes("empty", &empty());
}

#[test]
fn after_the_guide_examples() {
    both_sizes("guide", &guide());
}

#[test]
fn busy_live() {
    both_sizes("busy_live", &busy());
}

#[test]
fn requests_tab() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2')]);
    both_sizes("requests", &app);
}

#[test]
fn request_detail_of_an_accepted_batch() {
    let mut app = busy();
    press(
        &mut app,
        &[KeyCode::Char('2'), KeyCode::Char('g'), KeyCode::Enter],
    );
    both_sizes("detail_accepted", &app);
}

#[test]
fn request_detail_of_broken_json() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2'), KeyCode::Enter]);
    both_sizes("detail_400", &app);
}

#[test]
fn types_tab() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('3')]);
    both_sizes("types", &app);
}

#[test]
fn help_overlay() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('?')]);
    both_sizes("help", &app);
}

#[test]
fn too_small() {
    insta::assert_snapshot!("too_small_79x24", draw(&busy(), 79, 24).backend());
    insta::assert_snapshot!("too_small_60x15", draw(&busy(), 60, 15).backend());
}

#[test]
fn two_devices_the_last_to_upload_in_front() {
    both_sizes("two_devices", &two_devices());
}

#[test]
fn frozen_with_filter() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('f'), KeyCode::Char('/')]);
    for c in "power".chars() {
        press(&mut app, &[KeyCode::Char(c)]);
    }
    press(&mut app, &[KeyCode::Enter]);
    both_sizes("frozen_filtered", &app);
}

#[test]
fn many_values_counted_then_shown_whole_on_v() {
    both_sizes("many_values", &many_values());
    let mut app = many_values();
    press(&mut app, &[KeyCode::Char('v')]);
    both_sizes("vehicle_all", &app);
}

#[test]
fn refused_requests_only() {
    let mut app = busy();
    press(&mut app, &[KeyCode::Char('2'), KeyCode::Char('r')]);
    both_sizes("requests_refused", &app);
}

/// `autopi-rx view` over a capture, stepped back to the second of three
/// batches (ages count from its arrival), the timeline at the bottom.
#[test]
fn view_with_the_timeline() {
    both_sizes("view_timeline", &viewing());
}

/// In the view, the timeline takes two lines: the page sizes leave them
/// out, so one line down from the oldest event shows the second oldest at
/// the top (not a line further on).
#[test]
fn view_scrolls_line_by_line_above_the_timeline() {
    for (w, h) in SIZES {
        let mut app = viewing();
        app.resize(w, h);
        press(&mut app, &[KeyCode::Char('g'), KeyCode::Char('j')]);
        let device = app.device().unwrap();
        let second = device.events.get(1).unwrap();
        // Its batch was old data, so the line is marked with how late it
        // came (`↺ +2101d`) between its time and its tag.
        let (time, tag) = (
            second.ts.strftime("%H:%M:%S").to_string(),
            format!("@{}", second.tag),
        );
        let drawn = text(&draw(&app, w, h));
        let first_event = drawn
            .lines()
            .skip_while(|l| !l.contains("Events"))
            .nth(1)
            .unwrap();
        assert!(
            first_event.contains(&format!("{time}  ↺")) && first_event.contains(&tag),
            "{w}x{h}: {time} {tag} not first:\n{drawn}"
        );
    }
}

#[test]
fn answer_mode_banner_and_menu() {
    both_sizes("answer_mode", &answering());
}

/// The Uplink tab over a bench session (see `ui_support::bench`).
#[test]
fn uplink_tab() {
    let mut app = bench();
    press(&mut app, &[KeyCode::Char('4')]);
    both_sizes("uplink", &app);
}

/// The Live tab of that session: the uplink summary on the bottom edge.
#[test]
fn live_with_the_uplink_summary() {
    both_sizes("bench_live", &bench());
}

/// A run begun by a restart in place says so, and when, in the header
/// (`restarted` alone where the short words are used).
#[test]
fn after_a_restart_in_place() {
    let mut app = guide();
    app.setup.restarted = Some(autopi_rx::fixtures::at("2026-11-27T08:00:05Z"));
    both_sizes("restarted", &app);
}

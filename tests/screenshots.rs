//! The pictures in `screenshots/` are the real UI: each is rendered here
//! from the same scenes as the snapshot tests. This test fails when one is
//! stale; regenerate them all with
//!
//! ```sh
//! UPDATE_SCREENSHOTS=1 cargo test --test screenshots
//! ```

mod ui_support;

use std::path::PathBuf;

use autopi_rx::dashboard::app::App;
use autopi_rx::dashboard::theme::Theme;
use autopi_rx::dashboard::ui::svg::to_svg;
use ratatui::crossterm::event::KeyCode;
use ui_support::*;

/// Every screenshot: file name and the app as pictured.
fn scenes() -> Vec<(&'static str, App)> {
    let keys = |mut app: App, keys: &[KeyCode]| {
        press(&mut app, keys);
        app
    };
    let mut mono = busy();
    mono.theme = Theme::mono();
    vec![
        ("live", busy()),
        ("live-two-devices", two_devices()),
        ("requests", keys(busy(), &[KeyCode::Char('2'), KeyCode::Up])),
        (
            "request-detail",
            keys(
                busy(),
                &[KeyCode::Char('2'), KeyCode::Char('g'), KeyCode::Enter],
            ),
        ),
        (
            "request-detail-400",
            keys(busy(), &[KeyCode::Char('2'), KeyCode::Enter]),
        ),
        ("types", keys(busy(), &[KeyCode::Char('3')])),
        ("help", keys(busy(), &[KeyCode::Char('?')])),
        ("answer-mode", answering()),
        ("uplink", keys(bench(), &[KeyCode::Char('4')])),
        ("live-no-color", mono),
        ("view", viewing()),
    ]
}

#[test]
fn screenshots_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    let update = std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, app) in scenes() {
        let svg = to_svg(draw(&app, 120, 40).backend().buffer());
        let path = dir.join(format!("{name}.svg"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &svg).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(svg.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale screenshots (regenerate with `UPDATE_SCREENSHOTS=1 cargo test --test screenshots`): {stale:?}"
    );
}

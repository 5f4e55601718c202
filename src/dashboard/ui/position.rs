//! The Position panel (`track.pos`): the last fix beside a map of the
//! current drive (or, with `a`, every drive kept), zoomed to it, over the
//! world's coastlines, with a scale bar.
//! ```text
//! ╭ Position ─────────────── fix 11s ago ╮
//! │lat   57.022855°              ⢀●⡿     │
//! │lon   9.900590°             ⣀⢀⣸⠿⠁     │
//! │sats  9                   ├───┤ 100 m │
//! ╰──────────────── drive 2 of 2 · a all ╯
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as Segment, Map, MapResolution};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::App;
use crate::dashboard::format::{age, fixed};
use crate::dashboard::state::Device;
use crate::dashboard::ui::{bottom_edge, fit_line, labelled, old_data_title, panel, placeholder};

/// Narrowest view of the map, in degrees of latitude (about 220 m), so a
/// standing device is shown in its street rather than in one dot.
const MIN_SPAN_DEG: f64 = 0.002;
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// Draws the Position panel.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let device = app.device();
    let fix = device.and_then(|d| d.position.as_ref());
    let note = fix.map(|f| format!("fix {}", age(app.now(), f.ts)));
    let old = fix.is_some_and(|f| f.old).then(|| old_data_title(app));
    let drives = device.map_or(0, |d| d.drive_starts().len());
    let which = (drives > 1).then(|| {
        let which = if app.viewer.all_drives {
            format!(" all {drives} drives · a the last ")
        } else {
            format!(" drive {drives} of {drives} · a all ")
        };
        vec![Line::from(Span::styled(which, app.theme.label))]
    });
    let block = bottom_edge(
        panel(app, "Position", note, area.width),
        area.width,
        old.into_iter().collect(),
        which,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let (Some(device), Some(fix)) = (device, fix) else {
        placeholder(app, "no position yet (track.pos)", inner, buf);
        return;
    };
    let [text_area, map_area] =
        Layout::horizontal([Constraint::Length(22), Constraint::Fill(1)]).areas(inner);
    let f = &fix.value;
    let lines = vec![
        Line::from(labelled(app, "lat   ", fixed(f.lat, 6), "°")),
        Line::from(labelled(app, "lon   ", fixed(f.lon, 6), "°")),
        Line::from(labelled(app, "alt   ", fixed(f.alt, 1), " m")),
        Line::from(labelled(app, "speed ", fixed(f.sog_kmh, 1), " km/h")),
        Line::from(labelled(
            app,
            "course",
            format!(" {}", fixed(f.cog, 0)),
            "°",
        )),
        Line::from(labelled(
            app,
            "sats  ",
            f.nsat.map_or("-".into(), |n| n.to_string()),
            "",
        )),
    ];
    Paragraph::new(lines).render(text_area, buf);
    map(app, device, map_area, buf);
    if f.on_earth().is_none() {
        // The newest fix is in the text but on no map: the mark is an
        // older fix's, said here (nothing said so).
        // The mark is an older fix's, when there is one.
        let note = if device.track.is_empty() {
            " newest fix: no place "
        } else {
            " newest fix: no place · ● older "
        };
        let note = Span::styled(note, app.theme.warn);
        let spot = Rect::new(
            map_area.x,
            map_area.y,
            map_area.width,
            1.min(map_area.height),
        );
        Paragraph::new(fit_line(Line::from(note), map_area.width)).render(spot, buf);
    }
}

/// Bounds of the map: the track plus a margin, widened so a dot covers the
/// same distance across and up (terminal cells are twice as high as wide).
pub fn bounds(track: &[(f64, f64)], cols: u16, rows: u16) -> ([f64; 2], [f64; 2]) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in track {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if track.is_empty() {
        return ([-180.0, 180.0], [-90.0, 90.0]);
    }
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let shrink = cy.to_radians().cos().max(0.05);
    let dots_x = f64::from(cols.max(1)) * 2.0;
    let dots_y = f64::from(rows.max(1)) * 4.0;
    // Degrees of latitude per dot needed to fit the track both ways.
    let per_dot = ((y1 - y0) * 1.2 / dots_y)
        .max((x1 - x0) * 1.2 * shrink / dots_x)
        .max(MIN_SPAN_DEG / dots_y);
    let half_x = per_dot * dots_x / shrink / 2.0;
    let half_y = per_dot * dots_y / 2.0;
    ([cx - half_x, cx + half_x], [cy - half_y, cy + half_y])
}

/// The map: coastlines, the track as joined segments, the last fix marked.
fn map(app: &App, device: &Device, area: Rect, buf: &mut Buffer) {
    if area.width < 4 || area.height < 2 {
        return;
    }
    let starts = device.drive_starts();
    let all = app.viewer.all_drives;
    let from = if all {
        0
    } else {
        starts.last().copied().unwrap_or(0)
    };
    // Only what is shown is unwrapped: one drive round the world before
    // would leave a later one across the antimeridian as it came (a
    // review).
    let raw: Vec<(f64, f64)> = device.track.iter().map(|p| (p.lon, p.lat)).collect();
    let points: Vec<(f64, f64)> = raw[..from]
        .iter()
        .copied()
        .chain(unwrapped(raw[from..].iter().copied()))
        .collect();
    let track = &points[from..];
    // Segments join fixes of one drive, never the end of one to the next.
    let drives: Vec<&[(f64, f64)]> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&points.len()]))
        .filter(|(start, _)| **start >= from)
        .map(|(&start, &end)| &points[start..end])
        .collect();
    let (xb, yb) = bounds(track, area.width, area.height);
    let across_m = (xb[1] - xb[0]) * M_PER_DEG * ((yb[0] + yb[1]) / 2.0).to_radians().cos();
    let t = &app.theme;
    let resolution = if yb[1] - yb[0] > 20.0 {
        MapResolution::Low
    } else {
        MapResolution::High
    };
    let last = track.last().copied();
    // A view past the antimeridian (a track across it) shows the world's
    // coasts there too: the map drawn again 360° over, under the rest.
    for shift in [-360.0, 360.0] {
        let (from, to) = (xb[0] + shift, xb[1] + shift);
        if to > -180.0 && from < 180.0 {
            Canvas::default()
                .marker(Marker::Braille)
                .x_bounds([from, to])
                .y_bounds(yb)
                .paint(|ctx| {
                    ctx.draw(&Map {
                        resolution,
                        color: t.world,
                    })
                })
                .render(area, buf);
        }
    }
    Canvas::default()
        .marker(Marker::Braille)
        .x_bounds(xb)
        .y_bounds(yb)
        .paint(|ctx| {
            ctx.draw(&Map {
                resolution,
                color: t.world,
            });
            ctx.layer();
            for pair in drives.iter().flat_map(|d| d.windows(2)) {
                let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                ctx.draw(&Segment {
                    x1,
                    y1,
                    x2,
                    y2,
                    color: t.track,
                });
            }
            // A whole-cell mark: one braille dot is easily missed.
            if let Some((x, y)) = last {
                let mark = Style::default().fg(t.here).add_modifier(Modifier::BOLD);
                ctx.print(x, y, Span::styled("●", mark));
            }
        })
        .render(area, buf);
    let scale = scale_bar(across_m / f64::from(area.width), area.width / 2);
    let line = Line::from(Span::styled(scale, t.dim));
    let width = (line.width() as u16).min(area.width);
    let spot = Rect::new(area.right() - width, area.bottom() - 1, width, 1);
    Paragraph::new(fit_line(line, area.width)).render(spot, buf);
}

/// The track's (longitude, latitude) points with each longitude moved by
/// whole turns so that it is within 180° of the one before: a track that
/// crosses the antimeridian (179.9° to -179.9°, 0.2° east) stays one short
/// line, where it was drawn across the world and the map zoomed out to it.
///
/// A track that goes round the world that way (fixes hopping 170° each,
/// random fixes over the world) is left as it came: unwrapped, its
/// longitudes drifted by whole turns to ±350 000° and the map became a
/// flat band with no coast (a hostile-client probe).
fn unwrapped(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let raw: Vec<(f64, f64)> = points.collect();
    let mut before: Option<f64> = None;
    let (mut west, mut east) = (f64::MAX, f64::MIN);
    let moved: Vec<(f64, f64)> = raw
        .iter()
        .map(|&(lon, lat)| {
            let lon = match before {
                Some(b) => lon - ((lon - b) / 360.0).round() * 360.0,
                None => lon,
            };
            before = Some(lon);
            (west, east) = (west.min(lon), east.max(lon));
            (lon, lat)
        })
        .collect();
    if east - west > 360.0 { raw } else { moved }
}

/// A scale bar (`├────┤ 100 m`) for `m_per_cell` metres a column: the
/// longest round distance (1, 2 or 5 × a power of ten) whose bar takes at
/// most `max_cells` columns.
pub fn scale_bar(m_per_cell: f64, max_cells: u16) -> String {
    if m_per_cell.is_nan() || m_per_cell <= 0.0 || max_cells < 3 {
        return String::new();
    }
    let fits = |m: f64| m / m_per_cell <= f64::from(max_cells);
    let mut best = None;
    let mut power = 1.0;
    while power < 1e8 {
        for step in [1.0, 2.0, 5.0] {
            let m = step * power;
            if fits(m) && m / m_per_cell >= 2.0 {
                best = Some(m);
            }
        }
        power *= 10.0;
    }
    let Some(m) = best else {
        return String::new();
    };
    let cells = (m / m_per_cell).round() as usize;
    format!("├{}┤ {} ", "─".repeat(cells.saturating_sub(2)), distance(m))
}

/// A distance in m or km.
fn distance(m: f64) -> String {
    if m < 1_000.0 {
        format!("{m:.0} m")
    } else {
        format!("{:.0} km", m / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_the_track_and_keep_dots_square() {
        let track = [(9.899, 57.022), (9.905, 57.025)];
        let (x, y) = bounds(&track, 40, 10);
        for (lon, lat) in track {
            assert!(x[0] < lon && lon < x[1] && y[0] < lat && lat < y[1]);
        }
        let metres_per_dot_x = (x[1] - x[0]) * 57.0235f64.to_radians().cos() / 80.0;
        let metres_per_dot_y = (y[1] - y[0]) / 40.0;
        assert!((metres_per_dot_x / metres_per_dot_y - 1.0).abs() < 1e-6);
    }

    #[test]
    fn one_point_is_shown_in_its_street() {
        let (_, y) = bounds(&[(9.9, 57.0)], 40, 10);
        assert!((y[1] - y[0] - MIN_SPAN_DEG).abs() < 1e-9);
    }

    #[test]
    fn the_scale_bar_is_a_round_distance_that_fits() {
        // 10 m a column, at most 12 columns: 100 m in 10.
        assert_eq!(scale_bar(10.0, 12), "├────────┤ 100 m ");
        assert_eq!(scale_bar(300.0, 12), "├─────┤ 2 km ");
        assert_eq!(scale_bar(10.0, 2), "");
    }

    #[test]
    fn no_track_shows_the_world() {
        assert_eq!(bounds(&[], 40, 10), ([-180.0, 180.0], [-90.0, 90.0]));
    }

    /// Cells of the map drawn in the world (coastline) colour.
    fn world_cells(track: &str) -> usize {
        world_cells_at(track).len()
    }

    /// The map's cells drawn in the world colour (column, row).
    fn world_cells_at(track: &str) -> Vec<(u16, u16)> {
        let mut app = crate::dashboard::app::App::new(
            crate::dashboard::app::Setup::default(),
            crate::dashboard::theme::Theme::color(),
            crate::fixtures::at("2026-11-27T08:10:00Z"),
        );
        let e = crate::fixtures::accepted(
            1,
            crate::fixtures::at("2026-11-27T08:00:00Z"),
            Some("u"),
            track,
        );
        app.apply(&e);
        let area = Rect::new(0, 0, 60, 14);
        let mut buf = Buffer::empty(area);
        render(&app, area, &mut buf);
        // The map's cells: right of the 22 text columns, above the scale.
        let map = (23..59).flat_map(|x| (1..12).map(move |y| (x, y)));
        map.filter(|&(x, y)| buf[(x, y)].fg == app.theme.world)
            .collect()
    }

    /// Coordinates no place has (a latitude of 1e307) are no track: near
    /// f64's limit ratatui's canvas overflows and its line drawing never
    /// returns (see the battery chart).
    #[test]
    fn coordinates_no_place_has_are_not_drawn_and_do_not_hang() {
        let pos = |lat: f64, lon: f64| {
            format!(
                r#"{{"@t":"track.pos","@ts":"2026-11-27T08:00:00Z","loc":{{"lat":{lat},"lon":{lon}}}}}"#
            )
        };
        for (lat, lon) in [
            (1e307, 9.9),
            (57.0, -1e307),
            (1e308, 1e308),
            (-1e308, 9.9),
            (91.0, 9.9),
        ] {
            let track = format!("[{},{}]", pos(57.0224, 9.8992), pos(lat, lon));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(world_cells(&track)));
            rx.recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("drawing {lat:e}, {lon:e} did not end"));
        }
    }

    /// The panel, 80 by 14, as text, for one batch `body` received at
    /// `received` and drawn at `now`.
    fn panel_text(body: &str, received: &str, now: &str) -> String {
        let mut app = crate::dashboard::app::App::new(
            crate::dashboard::app::Setup::default(),
            crate::dashboard::theme::Theme::color(),
            crate::fixtures::at(now),
        );
        let t = crate::fixtures::at(received);
        app.apply(&crate::fixtures::accepted(1, t, Some("u"), body));
        let area = Rect::new(0, 0, 80, 14);
        let mut buf = Buffer::empty(area);
        render(&app, area, &mut buf);
        (0..area.height)
            .map(|y| (0..area.width).map(|x| buf[(x, y)].symbol()).collect())
            .collect::<Vec<String>>()
            .join("\n")
    }

    /// The newest fix in the text with no place on the map: said on the
    /// map, where the mark is an older fix's.
    #[test]
    fn a_newest_fix_with_no_place_is_said_on_the_map() {
        let pos = |lat: &str, ts: &str| {
            format!(
                r#"{{"@t":"track.pos","@ts":"2026-11-27T08:00:{ts}Z","loc":{{"lat":{lat},"lon":9.9}}}}"#
            )
        };
        let screen =
            |track: String| panel_text(&track, "2026-11-27T08:01:00Z", "2026-11-27T08:10:00Z");
        let off = screen(format!("[{},{}]", pos("57.02", "00"), pos("1e308", "05")));
        assert!(off.contains("newest fix: no place · ● older"), "{off}");
        let on = screen(format!("[{},{}]", pos("1e308", "00"), pos("57.02", "05")));
        assert!(!on.contains("no place"), "{on}");
        // No older fix: no mark to point at.
        let alone = screen(format!("[{}]", pos("1e308", "00")));
        assert!(
            alone.contains("newest fix: no place") && !alone.contains("older"),
            "{alone}"
        );
    }

    /// A track going round the world is not unwrapped into a band of
    /// whole turns; one across the antimeridian still is (below).
    #[test]
    fn a_track_round_the_world_keeps_its_longitudes() {
        let hops: Vec<(f64, f64)> = (0..200)
            .map(|i| (f64::from(i * 170 % 360) - 180.0, 10.0))
            .collect();
        let track = unwrapped(hops.iter().copied());
        assert!(
            track
                .iter()
                .all(|&(lon, _)| (-180.0..=180.0).contains(&lon))
        );
        let (xb, _) = bounds(&track, 40, 10);
        assert!(xb[1] - xb[0] < 1000.0, "{xb:?}");
    }

    /// A drive round the world, then one across the antimeridian: the
    /// map shows the second as it shows it alone (its unwrapping was
    /// turned off by the first, a review).
    #[test]
    fn an_earlier_drive_round_the_world_leaves_the_next_one_unwrapped() {
        let pos = |t: u32, lat: f64, lon: f64| {
            format!(
                r#"{{"@t":"track.pos","@ts":"2026-11-27T08:{:02}:{:02}Z","loc":{{"lat":{lat},"lon":{lon}}}}}"#,
                t / 60,
                t % 60
            )
        };
        let round: Vec<String> = (0..200)
            .map(|i| pos(i, 10.0, f64::from(i * 170 % 360) - 180.0))
            .collect();
        let crossing = [pos(900, 64.73, 177.5), pos(901, 64.42, -173.23)];
        let screen = |records: Vec<String>| {
            let body = format!("[{}]", records.join(","));
            panel_text(&body, "2026-11-27T08:16:00Z", "2026-11-27T08:20:00Z")
        };
        let alone = screen(crossing.to_vec());
        let after = screen(round.into_iter().chain(crossing).collect());
        let scale = |s: &str| s.lines().find(|l| l.contains('├')).map(str::to_string);
        assert!(scale(&alone).is_some_and(|l| l.contains(" km")), "{alone}");
        assert_eq!(scale(&after), scale(&alone), "{after}");
    }

    #[test]
    fn a_track_across_the_antimeridian_is_short_and_shown_with_its_coasts() {
        let track = unwrapped([(179.95, -16.8), (-179.95, -16.8), (-179.85, -16.9)].into_iter());
        assert!((track[1].0 - 180.05).abs() < 1e-9 && (track[2].0 - 180.15).abs() < 1e-9);
        let (x, _) = bounds(&track, 36, 11);
        assert!(x[1] - x[0] < 1.0, "zoomed to the track: {x:?}");
        // Chukotka, from Anadyr (177.5° E) to Provideniya (173.2° W):
        // its coasts on both sides of the line.
        let pos = |lat: f64, lon: f64| {
            format!(
                r#"{{"@t":"track.pos","@ts":"2026-11-27T08:00:00Z","loc":{{"lat":{lat},"lon":{lon}}}}}"#
            )
        };
        let (from, to) = ((177.5, 64.73), (-173.23, 64.42));
        let track = format!("[{},{}]", pos(from.1, from.0), pos(to.1, to.0));
        let (x, _) = bounds(&unwrapped([from, to].into_iter()), 36, 12);
        assert!(x[0] < 180.0 && 180.0 < x[1], "{x:?}");
        let meridian = 23.0 + (180.0 - x[0]) / (x[1] - x[0]) * 36.0;
        let cells = world_cells_at(&track);
        let east = cells
            .iter()
            .filter(|(c, _)| f64::from(*c) > meridian + 1.0)
            .count();
        let west = cells
            .iter()
            .filter(|(c, _)| f64::from(*c) < meridian - 1.0)
            .count();
        assert!(
            east >= 4 && west >= 4,
            "{west} cells west of 180°, {east} east"
        );
    }

    #[test]
    fn coastlines_show_when_the_track_spans_a_country_not_a_street() {
        let pos = |lat: f64, lon: f64| {
            format!(
                r#"{{"@t":"track.pos","@ts":"2026-11-27T08:00:00Z","loc":{{"lat":{lat},"lon":{lon}}}}}"#
            )
        };
        let street = format!("[{},{}]", pos(57.0224, 9.8992), pos(57.0231, 9.9004));
        let country = format!("[{},{}]", pos(57.0224, 9.8992), pos(55.6759, 12.5655));
        assert_eq!(world_cells(&street), 0);
        assert!(world_cells(&country) >= 4, "Danish coasts drawn");
    }
}

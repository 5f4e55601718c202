//! Where things go on screen, as plain arithmetic: the smallest terminal,
//! the header's height, the Live tab's rows and the scrolling views' page
//! heights. The app needs these for page keys and scroll limits, the
//! drawing code for its areas; both take them from here.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::dashboard::app::Setup;

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// Lines the header takes without `--forward`.
pub const HEADER_HEIGHT: u16 = 4;

/// The Live tab's three rows: position and battery, usage and vehicle,
/// events.
pub fn live_rows(area: Rect) -> [Rect; 3] {
    let top = (area.height * 2 / 5).max(8);
    let middle = (area.height / 4).max(6);
    Layout::vertical([
        Constraint::Length(top),
        Constraint::Length(middle),
        Constraint::Fill(1),
    ])
    .areas(area)
}

/// Lines visible at once in the scrolling views, for a terminal size (0
/// when unknown or too small).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pages {
    pub events: usize,
    pub requests: usize,
    pub detail: usize,
    pub types: usize,
}

/// Lines the header takes: four, and one more for the `--forward` targets.
pub fn header_height(setup: &Setup) -> u16 {
    HEADER_HEIGHT + u16::from(!setup.forward.is_empty())
}

/// The scrolling views' page heights at this terminal size, under a header
/// of `header` lines.
pub fn pages(width: u16, height: u16, header: u16) -> Pages {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return Pages::default();
    }
    let body = Rect::new(0, 0, width, height.saturating_sub(header));
    let [_, _, events] = live_rows(body);
    // Inside the borders; the tables also lose a line to their header.
    Pages {
        events: events.height.saturating_sub(2) as usize,
        requests: body.height.saturating_sub(3) as usize,
        detail: body.height.saturating_sub(2) as usize,
        types: body.height.saturating_sub(3) as usize,
    }
}

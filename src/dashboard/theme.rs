//! Every style the dashboard uses, in colour and in monochrome. With
//! `NO_COLOR` set (and non-empty) state still shows, by bold and reverse.

use ratatui::style::{Color, Modifier, Style};

/// The styles of one look.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub base: Style,
    pub title: Style,
    pub label: Style,
    pub value: Style,
    pub dim: Style,
    pub url: Style,
    pub ok: Style,
    pub warn: Style,
    pub error: Style,
    /// Loud banners: NO AUTH, FROZEN, too small.
    pub alarm: Style,
    pub frozen: Style,
    pub border: Style,
    pub tab: Style,
    pub tab_active: Style,
    pub selected: Style,
    pub key: Style,
    pub track: Color,
    pub world: Color,
    pub here: Color,
    pub chart: Style,
}

impl Theme {
    /// Colour, unless `NO_COLOR` is set and non-empty.
    pub fn from_env() -> Theme {
        Theme::for_no_color(std::env::var_os("NO_COLOR").as_deref())
    }

    /// The theme for a value of `NO_COLOR` (see no-color.org: any non-empty
    /// value turns colour off).
    pub fn for_no_color(value: Option<&std::ffi::OsStr>) -> Theme {
        match value {
            Some(v) if !v.is_empty() => Theme::mono(),
            _ => Theme::color(),
        }
    }

    /// The colour look (16 basic colours: readable over SSH and on any palette).
    pub fn color() -> Theme {
        let bold = Modifier::BOLD;
        Theme {
            base: Style::default(),
            title: Style::default().fg(Color::Cyan).add_modifier(bold),
            label: Style::default().fg(Color::DarkGray),
            value: Style::default().add_modifier(bold),
            dim: Style::default().fg(Color::DarkGray),
            url: Style::default().fg(Color::LightCyan).add_modifier(bold),
            ok: Style::default().fg(Color::Green),
            warn: Style::default().fg(Color::Yellow).add_modifier(bold),
            error: Style::default().fg(Color::LightRed).add_modifier(bold),
            alarm: Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(bold),
            frozen: Style::default()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(bold),
            border: Style::default().fg(Color::DarkGray),
            tab: Style::default().fg(Color::Gray),
            tab_active: Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(bold),
            selected: Style::default().bg(Color::DarkGray).add_modifier(bold),
            key: Style::default().fg(Color::Yellow).add_modifier(bold),
            track: Color::LightYellow,
            world: Color::DarkGray,
            here: Color::LightRed,
            chart: Style::default().fg(Color::LightGreen),
        }
    }

    /// The monochrome look: bold for emphasis, reverse for alarms and selection.
    pub fn mono() -> Theme {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let reverse = Style::default().add_modifier(Modifier::REVERSED);
        let plain = Style::default();
        Theme {
            base: plain,
            title: bold,
            label: plain,
            value: bold,
            dim: plain,
            url: bold,
            ok: plain,
            warn: bold,
            error: reverse.add_modifier(Modifier::BOLD),
            alarm: reverse.add_modifier(Modifier::BOLD),
            frozen: reverse.add_modifier(Modifier::BOLD),
            border: plain,
            tab: plain,
            tab_active: reverse.add_modifier(Modifier::BOLD),
            selected: reverse,
            key: bold,
            track: Color::Reset,
            world: Color::Reset,
            here: Color::Reset,
            chart: plain,
        }
    }

    /// Style for an HTTP status by class.
    pub fn status(&self, status: u16) -> Style {
        match status {
            200..=299 => self.ok,
            400..=499 => self.warn,
            _ => self.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_set_and_non_empty_means_monochrome() {
        assert_eq!(Theme::for_no_color(None), Theme::color());
        assert_eq!(Theme::for_no_color(Some(OsStr::new(""))), Theme::color());
        assert_eq!(Theme::for_no_color(Some(OsStr::new("1"))), Theme::mono());
        assert_ne!(Theme::mono(), Theme::color());
    }
}

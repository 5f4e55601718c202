//! A rendered buffer as an SVG picture, with its colours, for the
//! screenshots in `screenshots/`. Each run of cells with one style becomes
//! one `<text>` stretched to its cells, so columns line up in any font.

use std::fmt::Write;

use ratatui::buffer::{Buffer, Cell};
use ratatui::style::{Color, Modifier};

/// Width and height of one cell in pixels.
const CELL_W: u32 = 9;
const CELL_H: u32 = 19;
const FONT_SIZE: u32 = 15;
/// Default colours of the pictured terminal.
const FOREGROUND: &str = "#d4d4d4";
const BACKGROUND: &str = "#1b1d23";

/// The whole buffer as a standalone SVG document.
pub fn to_svg(buf: &Buffer) -> String {
    let (w, h) = (
        u32::from(buf.area.width) * CELL_W,
        u32::from(buf.area.height) * CELL_H,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace" font-size="{FONT_SIZE}" xml:space="preserve">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{w}" height="{h}" fill="{BACKGROUND}"/>"#
    );
    for y in 0..buf.area.height {
        let row: Vec<&Cell> = (0..buf.area.width)
            .map(|x| &buf[(buf.area.x + x, buf.area.y + y)])
            .collect();
        backgrounds(&mut out, &row, u32::from(y));
        texts(&mut out, &row, u32::from(y));
    }
    out.push_str("</svg>\n");
    out
}

/// Foreground and background of a cell after REVERSED is applied.
fn colours(cell: &Cell) -> (String, String) {
    let fg = hex(cell.fg).unwrap_or_else(|| FOREGROUND.to_string());
    let bg = hex(cell.bg).unwrap_or_else(|| BACKGROUND.to_string());
    if cell.modifier.contains(Modifier::REVERSED) {
        (bg, fg)
    } else {
        (fg, bg)
    }
}

/// One rectangle per run of cells sharing a non-default background.
fn backgrounds(out: &mut String, row: &[&Cell], y: u32) {
    let mut x = 0;
    while x < row.len() {
        let bg = colours(row[x]).1;
        let run = row[x..].iter().take_while(|c| colours(c).1 == bg).count();
        if bg != BACKGROUND {
            let _ = writeln!(
                out,
                r#"<rect x="{}" y="{}" width="{}" height="{CELL_H}" fill="{bg}"/>"#,
                x as u32 * CELL_W,
                y * CELL_H,
                run as u32 * CELL_W
            );
        }
        x += run;
    }
}

/// What a text run shares: colour and font modifiers.
fn text_key(cell: &Cell) -> (String, Modifier) {
    let keep = Modifier::BOLD | Modifier::DIM | Modifier::ITALIC | Modifier::UNDERLINED;
    (colours(cell).0, cell.modifier & keep)
}

/// One `<text>` per run of cells sharing a style, blank runs left out.
fn texts(out: &mut String, row: &[&Cell], y: u32) {
    let mut x = 0;
    while x < row.len() {
        let key = text_key(row[x]);
        let run = row[x..].iter().take_while(|c| text_key(c) == key).count();
        let text: String = row[x..x + run].iter().map(|c| c.symbol()).collect();
        if !text.trim().is_empty() {
            let (fill, modifier) = &key;
            let mut attrs = format!(r#" fill="{fill}""#);
            if modifier.contains(Modifier::BOLD) {
                attrs.push_str(r#" font-weight="bold""#);
            }
            if modifier.contains(Modifier::DIM) {
                attrs.push_str(r#" opacity="0.6""#);
            }
            if modifier.contains(Modifier::ITALIC) {
                attrs.push_str(r#" font-style="italic""#);
            }
            if modifier.contains(Modifier::UNDERLINED) {
                attrs.push_str(r#" text-decoration="underline""#);
            }
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" textLength="{}" lengthAdjust="spacingAndGlyphs"{attrs}>{}</text>"#,
                x as u32 * CELL_W,
                y * CELL_H + CELL_H * 3 / 4,
                run as u32 * CELL_W,
                escape(&text)
            );
        }
        x += run;
    }
}

/// Text made safe inside an XML element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A colour as `#rrggbb`; None for the terminal's default.
pub fn hex(color: Color) -> Option<String> {
    let (r, g, b) = match color {
        Color::Reset => return None,
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i) => indexed(i),
        named => ansi16(named),
    };
    Some(format!("#{r:02x}{g:02x}{b:02x}"))
}

/// The 16 basic colours as a common dark palette draws them.
fn ansi16(color: Color) -> (u8, u8, u8) {
    match color {
        Color::Black => (0x1e, 0x1e, 0x1e),
        Color::Red => (0xcd, 0x31, 0x31),
        Color::Green => (0x0d, 0xbc, 0x79),
        Color::Yellow => (0xe5, 0xe5, 0x10),
        Color::Blue => (0x24, 0x72, 0xc8),
        Color::Magenta => (0xbc, 0x3f, 0xbc),
        Color::Cyan => (0x11, 0xa8, 0xcd),
        Color::Gray => (0xcc, 0xcc, 0xcc),
        Color::DarkGray => (0x76, 0x76, 0x76),
        Color::LightRed => (0xf1, 0x4c, 0x4c),
        Color::LightGreen => (0x23, 0xd1, 0x8b),
        Color::LightYellow => (0xf5, 0xf5, 0x43),
        Color::LightBlue => (0x3b, 0x8e, 0xea),
        Color::LightMagenta => (0xd6, 0x70, 0xd6),
        Color::LightCyan => (0x29, 0xb8, 0xdb),
        _ => (0xe5, 0xe5, 0xe5),
    }
}

/// xterm's 256-colour palette.
fn indexed(i: u8) -> (u8, u8, u8) {
    const NAMED: [Color; 16] = [
        Color::Black,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::Gray,
        Color::DarkGray,
        Color::LightRed,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::White,
    ];
    match i {
        0..=15 => ansi16(NAMED[i as usize]),
        16..=231 => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            let n = i - 16;
            (level(n / 36), level(n / 6 % 6), level(n % 6))
        }
        _ => {
            let v = 8 + (i - 232) * 10;
            (v, v, v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::Style;

    #[test]
    fn runs_keep_colours_and_escape_text() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 8, 1));
        buf.set_string(
            0,
            0,
            "a<b",
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        );
        buf.set_string(
            4,
            0,
            "ok",
            Style::default()
                .bg(Color::Green)
                .add_modifier(Modifier::REVERSED),
        );
        let svg = to_svg(&buf);
        assert!(
            svg.contains(r##"fill="#cd3131" font-weight="bold">a&lt;b</text>"##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"<rect x="36" y="0" width="18" height="19" fill="#d4d4d4"/>"##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"fill="#0dbc79">ok</text>"##),
            "reversed: green text {svg}"
        );
    }

    #[test]
    fn palette() {
        assert_eq!(hex(Color::Reset), None);
        assert_eq!(hex(Color::Rgb(1, 2, 255)).unwrap(), "#0102ff");
        assert_eq!(hex(Color::Indexed(196)).unwrap(), "#ff0000");
        assert_eq!(hex(Color::Indexed(244)).unwrap(), "#808080");
    }
}

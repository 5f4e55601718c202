//! The last step of every frame: each cell is made to hold what any
//! terminal draws at the width ratatui laid it out at.
//!
//! ratatui puts a whole grapheme cluster in one cell and reserves the
//! cluster's width (unicode-width) for it; the terminal then draws the
//! cluster by its own rules. Where the two disagree, text after it moves,
//! borders break, and pieces of an earlier frame stay on screen (ratatui
//! does not redraw the cells it believes a wide cluster covers). Found on
//! tmux 3.3a with glibc 2.36's widths: a flag (two regional indicators,
//! one 2-column cluster for ratatui, two 1-column cells for the
//! terminal), a Devanagari conjunct (several letters in one cluster), an
//! emoji variation selector (`❤️`, 2 columns for ratatui), and single
//! characters the two width tables count differently (`㉈`, `☰`).

use ratatui::buffer::{Buffer, CellWidth};
use ratatui::layout::Rect;
use unicode_width::UnicodeWidthChar;

use crate::dashboard::format::is_invisible;

/// Rewrites every cell of `area` that a terminal could draw at another
/// width than ratatui reserved for it:
/// - what a terminal obeys rather than shows (`format::is_invisible`:
///   bidi controls, joiners, escapes) is removed;
/// - a cluster of several characters that each take room (a flag, a
///   conjunct, emoji once their joiner is gone) is spread over the cells
///   it was given, one character a cell, as a terminal that does not
///   join them draws it; what does not fit is dropped (a family emoji
///   keeps its first person);
/// - a regional indicator is written as its letter (🇩🇰 is `DK`);
/// - the emoji variation selector U+FE0F is dropped (the character is
///   drawn as text, 1 column, then a space);
/// - a character whose width the tables disagree on (see `CONTESTED`)
///   becomes U+FFFD, and a combining one is dropped.
pub fn settle(area: Rect, buf: &mut Buffer) {
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        let mut x = area.left();
        while x < area.right() {
            let symbol = buf[(x, y)].symbol();
            // One byte is one column (ratatui's `cell_width` asserts it
            // is not a control character, and one set in a cell directly
            // can be).
            let room = if symbol.len() == 1 {
                1
            } else {
                symbol.cell_width().max(1)
            };
            if !is_printable_ascii(symbol) && !is_settled(symbol) {
                let pieces = pieces(symbol, usize::from(room));
                let end = (x + room).min(area.right());
                let mut cell = buf[(x, y)].clone();
                cell.set_symbol(" ");
                for at in x..end {
                    buf[(at, y)] = cell.clone();
                }
                let mut at = x;
                for (piece, width) in pieces {
                    if at >= end {
                        break;
                    }
                    buf[(at, y)].set_symbol(&piece);
                    at += width;
                }
            }
            x += room;
        }
    }
}

/// The common case, settled without a look at widths.
fn is_printable_ascii(symbol: &str) -> bool {
    symbol.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Whether every terminal draws `symbol` at the width ratatui gave it:
/// one character that takes room and is not contested, followed only by
/// combining characters no table counts.
fn is_settled(symbol: &str) -> bool {
    let mut chars = symbol.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    taken(first).is_some_and(|w| w == usize::from(symbol.cell_width()))
        && chars.all(|c| c != '\u{FE0F}' && taken(c) == Some(0))
}

/// The width `c` takes wherever it is drawn alone, when every terminal
/// agrees on it; None for what is never drawn as itself (invisible,
/// contested, a regional indicator).
fn taken(c: char) -> Option<usize> {
    if is_invisible(c) || contested(c) || regional_letter(c).is_some() {
        return None;
    }
    Some(columns(c))
}

/// The columns `c` takes on its own (unicode-width).
fn columns(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// `symbol` as text every terminal draws in at most `room` columns: one
/// string a cell (each taking room of its own), as `settle` says.
fn pieces(symbol: &str, room: usize) -> Vec<(String, u16)> {
    let mut pieces: Vec<(String, u16)> = Vec::new();
    let mut used = 0;
    let mut full = false;
    for c in symbol.chars() {
        if is_invisible(c) || c == '\u{FE0F}' {
            continue;
        }
        let (c, width) = match regional_letter(c) {
            Some(letter) => (letter, 1),
            None if contested(c) && columns(c) == 0 => continue,
            None if contested(c) => ('\u{FFFD}', 1),
            None => (c, columns(c)),
        };
        if width == 0 {
            // A combining character joins the piece before it (none
            // before it: nothing to join, dropped).
            if !full && let Some((last, _)) = pieces.last_mut() {
                last.push(c);
            }
            continue;
        }
        if full || used + width > room {
            full = true;
            continue;
        }
        used += width;
        pieces.push((c.to_string(), width as u16));
    }
    if pieces.is_empty() {
        pieces.push((" ".to_string(), 1));
    }
    pieces
}

/// The letter a regional indicator stands for (U+1F1E6 is `A`).
fn regional_letter(c: char) -> Option<char> {
    let offset = u32::from(c).checked_sub(0x1F1E6)?;
    (offset < 26).then(|| char::from(b'A' + offset as u8))
}

/// Whether the width tables disagree on `c`.
fn contested(c: char) -> bool {
    let u = u32::from(c);
    u >= 0xAD
        && CONTESTED
            .binary_search_by(|&(low, high)| {
                if high < u {
                    std::cmp::Ordering::Less
                } else if low > u {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// Characters whose width unicode-width 0.2 (Unicode 16, what ratatui lays
/// out by) and glibc 2.36's `wcwidth` (Unicode 14, what tmux and most
/// Linux terminals draw by) count differently, found by asking both for
/// every code point: spacing vowel signs one counts 0 and the other 1,
/// symbols made wide in Unicode 16 (trigrams, tetragrams), circled numbers
/// on black squares and Hangul fillers one counts 2 and the other 1 or 0.
const CONTESTED: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0605, 0x0605),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x09BE, 0x09BE),
    (0x09D7, 0x09D7),
    (0x0B3E, 0x0B3E),
    (0x0B57, 0x0B57),
    (0x0BBE, 0x0BBE),
    (0x0BD7, 0x0BD7),
    (0x0CC0, 0x0CC0),
    (0x0CC2, 0x0CC2),
    (0x0CC7, 0x0CC8),
    (0x0CCA, 0x0CCB),
    (0x0CD5, 0x0CD6),
    (0x0D3E, 0x0D3E),
    (0x0D4E, 0x0D4E),
    (0x0D57, 0x0D57),
    (0x0DCF, 0x0DCF),
    (0x0DDF, 0x0DDF),
    (0x1715, 0x1715),
    (0x1734, 0x1734),
    (0x17A4, 0x17A4),
    (0x17D8, 0x17D8),
    (0x1B35, 0x1B35),
    (0x1B3B, 0x1B3B),
    (0x1B3D, 0x1B3D),
    (0x1B43, 0x1B44),
    (0x1BAA, 0x1BAA),
    (0x1BF2, 0x1BF3),
    (0x2630, 0x2637),
    (0x268A, 0x268F),
    (0x2D7F, 0x2D7F),
    (0x302E, 0x302F),
    (0x3164, 0x3164),
    (0x3248, 0x324F),
    (0xA8FA, 0xA8FA),
    (0xA953, 0xA953),
    (0xA9C0, 0xA9C0),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x111C0, 0x111C0),
    (0x111C2, 0x111C3),
    (0x11235, 0x11235),
    (0x1133E, 0x1133E),
    (0x1134D, 0x1134D),
    (0x11357, 0x11357),
    (0x114B0, 0x114B0),
    (0x114BD, 0x114BD),
    (0x115AF, 0x115AF),
    (0x116B6, 0x116B6),
    (0x1171E, 0x1171E),
    (0x11930, 0x11930),
    (0x1193D, 0x1193D),
    (0x1193F, 0x1193F),
    (0x11941, 0x11941),
    (0x11A84, 0x11A89),
    (0x11D46, 0x11D46),
    (0x13430, 0x13438),
    (0x16FF0, 0x16FF1),
    (0x1D165, 0x1D166),
    (0x1D16D, 0x1D172),
    (0x1D300, 0x1D356),
    (0x1D360, 0x1D376),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn settled_row(text: &str, width: u16) -> Vec<String> {
        let area = Rect::new(0, 0, width, 1);
        let mut buf = Buffer::empty(area);
        buf.set_string(0, 0, text, ratatui::style::Style::default());
        settle(area, &mut buf);
        (0..width)
            .map(|x| buf[(x, 0)].symbol().to_string())
            .collect()
    }

    #[test]
    fn cells_hold_what_every_terminal_draws_at_the_laid_out_width() {
        assert_eq!(settled_row("🇩🇰|", 4).concat(), "DK| ");
        // A conjunct: three letters in one 2-column cluster.
        assert_eq!(settled_row("क्ष|", 3), ["क्", "ष", "|"]);
        assert_eq!(settled_row("❤\u{FE0F}|", 3), ["❤", " ", "|"]);
        assert_eq!(settled_row("㉈|", 2), ["\u{FFFD}", "|"]);
        // Made wide in Unicode 16: still 2 cells, one of them blank.
        assert_eq!(settled_row("☰|", 3), ["\u{FFFD}", " ", "|"]);
        // A spacing vowel sign one table counts 0: dropped.
        assert_eq!(settled_row("কা|", 2), ["ক", "|"]);
        // What every terminal agrees on is left as laid out.
        assert_eq!(settled_row("é́|", 2), ["é́", "|"]);
        assert_eq!(settled_row("燃|", 3), ["燃", " ", "|"]);
        assert_eq!(settled_row("😀|", 3), ["😀", " ", "|"]);
        assert_eq!(settled_row("ab", 2), ["a", "b"]);
        // A halfwidth sound mark: ratatui counts its cluster 3 columns
        // (unicode-width's 2, and 1 more for the mark); drawn in 2.
        assert_eq!(
            settled_row("\u{FF76}\u{FF9E}|", 4),
            ["\u{FF76}", "\u{FF9E}", " ", "|"]
        );
    }

    #[test]
    fn a_control_character_set_in_a_cell_is_blanked() {
        let area = Rect::new(0, 0, 3, 1);
        let mut buf = Buffer::empty(area);
        buf[(0, 0)].set_symbol("a");
        buf[(1, 0)].set_symbol("\u{7}");
        buf[(2, 0)].set_symbol("\u{1b}");
        settle(area, &mut buf);
        let symbols: Vec<&str> = (0..3).map(|x| buf[(x, 0)].symbol()).collect();
        assert_eq!(symbols, ["a", " ", " "]);
    }

    #[test]
    fn a_cluster_keeps_what_fits_its_room() {
        // Skin tone: two 2-column emoji in one 2-column cluster.
        assert_eq!(settled_row("👋🏽|", 3), ["👋", " ", "|"]);
        // A family held by joiners: its first person.
        let family = "👨\u{200D}👩\u{200D}👧|";
        assert_eq!(settled_row(family, 3), ["👨", " ", "|"]);
        // Nothing but invisible characters: a blank.
        assert_eq!(settled_row("a\u{200B}\u{200D}", 1), ["a"]);
    }

    #[test]
    fn the_contested_table_is_ordered() {
        assert!(CONTESTED.iter().all(|(low, high)| low <= high));
        assert!(CONTESTED.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(contested('\u{3248}') && contested('\u{324F}') && !contested('\u{3250}'));
        assert!(contested('\u{1D376}') && !contested('\u{1D377}'));
    }
}

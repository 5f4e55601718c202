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
/// - a variation selector (U+FE00–FE0F) is dropped (`❤️`: the character
///   is drawn as text, 1 column, then a space);
/// - a character whose width the tables disagree on (see `CONTESTED`)
///   becomes U+FFFD, and a combining one is dropped;
/// - a piece ratatui itself would count at another width than laid out
///   here becomes U+FFFD (its diff steps over cells by its own count).
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
        && chars.all(|c| !is_selector(c) && taken(c) == Some(0))
}

/// A variation selector (U+FE00–FE0F): it changes how the character
/// before it is drawn, and with it the width tables give the pair (`❤️`
/// is 2 columns for ratatui, 1 for glibc).
fn is_selector(c: char) -> bool {
    ('\u{FE00}'..='\u{FE0F}').contains(&c)
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
        if is_invisible(c) || is_selector(c) {
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
    // What ratatui's diff steps over is its own count of a cell
    // (`cell_width`): a piece it counts otherwise than laid out here would
    // leave a column undrawn.
    for (piece, width) in &mut pieces {
        if piece.cell_width() != *width {
            *piece = "\u{FFFD}".to_string();
            *width = 1;
        }
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
/// Linux terminals draw by; a character it does not know, `-1`, is drawn 1
/// column wide) count differently, found by asking both for every code
/// point outside `is_invisible`: spacing vowel signs one counts 0 and the
/// other 1, symbols made wide in Unicode 16 (trigrams, tetragrams),
/// circled numbers on black squares, Hangul fillers, emoji and ideographs
/// newer than glibc's tables (2 columns for ratatui, 1 for tmux). The
/// halfwidth sound marks U+FF9E and U+FF9F are added: both tables count
/// them 1, but ratatui counts one alone 2 (its `cell_width` adds a column
/// for each, on top of unicode-width's).
const CONTESTED: &[(u32, u32)] = &[
    (0x05C8, 0x05C9),
    (0x0897, 0x0897),
    (0x09BE, 0x09BE),
    (0x09D7, 0x09D7),
    (0x0B3E, 0x0B3E),
    (0x0B53, 0x0B54),
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
    (0x0ECE, 0x0ECE),
    (0x1715, 0x1715),
    (0x1734, 0x1734),
    (0x17A4, 0x17A4),
    (0x17D8, 0x17D8),
    (0x1ACF, 0x1AF0),
    (0x1B35, 0x1B35),
    (0x1B3B, 0x1B3B),
    (0x1B3D, 0x1B3D),
    (0x1B43, 0x1B44),
    (0x1BAA, 0x1BAA),
    (0x1BF2, 0x1BF3),
    (0x2630, 0x2637),
    (0x268A, 0x268F),
    (0x2D7F, 0x2D7F),
    (0x2FFC, 0x2FFF),
    (0x302E, 0x302F),
    (0x3164, 0x3164),
    (0x31E4, 0x31E5),
    (0x31EF, 0x31EF),
    (0x3248, 0x324F),
    (0xA8FA, 0xA8FA),
    (0xA953, 0xA953),
    (0xA9C0, 0xA9C0),
    (0xFA6E, 0xFA6F),
    (0xFADA, 0xFAFF),
    (0xFF9E, 0xFF9F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x10D69, 0x10D6D),
    (0x10ECB, 0x10ECF),
    (0x10EF0, 0x10EFF),
    (0x111C0, 0x111C0),
    (0x111C2, 0x111C3),
    (0x11235, 0x11235),
    (0x11241, 0x11241),
    (0x1133E, 0x1133E),
    (0x1134D, 0x1134D),
    (0x11357, 0x11357),
    (0x113B8, 0x113B8),
    (0x113BB, 0x113C0),
    (0x113C2, 0x113C2),
    (0x113C5, 0x113C5),
    (0x113C7, 0x113C9),
    (0x113CE, 0x113D2),
    (0x113E1, 0x113E2),
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
    (0x11B60, 0x11B60),
    (0x11B62, 0x11B64),
    (0x11B66, 0x11B66),
    (0x11D46, 0x11D46),
    (0x11DF0, 0x11DF0),
    (0x11F00, 0x11F02),
    (0x11F36, 0x11F3A),
    (0x11F40, 0x11F42),
    (0x11F5A, 0x11F5A),
    (0x13440, 0x13440),
    (0x13447, 0x13455),
    (0x1611E, 0x16129),
    (0x1612D, 0x1612F),
    (0x16FF0, 0x16FF6),
    (0x187F8, 0x187FF),
    (0x18CD6, 0x18CDA),
    (0x18CFF, 0x18CFF),
    (0x18D09, 0x18D20),
    (0x18D80, 0x18DF2),
    (0x18E00, 0x19191),
    (0x191A0, 0x191D2),
    (0x1B123, 0x1B128),
    (0x1B132, 0x1B132),
    (0x1B155, 0x1B155),
    (0x1B168, 0x1B168),
    (0x1D127, 0x1D128),
    (0x1D165, 0x1D166),
    (0x1D16D, 0x1D172),
    (0x1D250, 0x1D252),
    (0x1D25B, 0x1D25C),
    (0x1D25F, 0x1D25F),
    (0x1D280, 0x1D281),
    (0x1D300, 0x1D356),
    (0x1D360, 0x1D376),
    (0x1E08F, 0x1E08F),
    (0x1E4EC, 0x1E4EF),
    (0x1E5EE, 0x1E5EF),
    (0x1E6E3, 0x1E6E3),
    (0x1E6E6, 0x1E6E6),
    (0x1E6EE, 0x1E6EF),
    (0x1E6F5, 0x1E6F5),
    (0x1F1AE, 0x1F1AE),
    (0x1F6D8, 0x1F6D9),
    (0x1F6DC, 0x1F6DC),
    (0x1F7DA, 0x1F7DA),
    (0x1FA75, 0x1FA77),
    (0x1FA87, 0x1FA8F),
    (0x1FAAD, 0x1FAAF),
    (0x1FABB, 0x1FABF),
    (0x1FAC6, 0x1FAC6),
    (0x1FAC8, 0x1FAC8),
    (0x1FACC, 0x1FACF),
    (0x1FADA, 0x1FADD),
    (0x1FADF, 0x1FADF),
    (0x1FAE8, 0x1FAEB),
    (0x1FAEF, 0x1FAEF),
    (0x1FAF7, 0x1FAFA),
    (0x2A6E0, 0x2A6FF),
    (0x2B739, 0x2B73F),
    (0x2B81E, 0x2B81F),
    (0x2CEA2, 0x2CEAF),
    (0x2EBE1, 0x2F7FF),
    (0x2FA1E, 0x2FFFD),
    (0x3134B, 0x3FFFD),
    (0xE0000, 0xE0000),
    (0xE0002, 0xE001F),
    (0xE0080, 0xE00FF),
    (0xE01F0, 0xE0FFF),
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
        // (unicode-width's 2, and 1 more for the mark), and the mark alone
        // 2; terminals draw it in 1.
        assert_eq!(
            settled_row("\u{FF76}\u{FF9E}|", 4),
            ["\u{FF76}", "\u{FFFD}", " ", "|"]
        );
        // A selector other than U+FE0F: `‘` with it is 2 columns for
        // unicode-width, 1 for glibc.
        assert_eq!(settled_row("\u{2018}\u{FE01}|", 3), ["\u{2018}", " ", "|"]);
        // Newer than glibc's tables: drawn 1 column wide by tmux.
        assert_eq!(settled_row("\u{1FA77}|", 3), ["\u{FFFD}", " ", "|"]);
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

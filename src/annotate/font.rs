//! A small built-in bitmap font and a clipped text renderer for `RgbImage`.
//!
//! Every printable ASCII character (0x20..=0x7E) has a glyph of
//! [`GLYPH_W`] x [`GLYPH_H`] pixels, one `u8` per row with the leftmost
//! pixel in bit 4 (`0b1_0000`) and the rightmost in bit 0. Rows 0..=6 hold
//! capitals and digits (the baseline is under row 6), rows 7..=8 hold the
//! descenders of `g j p q y` and the like. Characters advance by
//! [`ADVANCE`] pixels (one blank column between glyphs), everything scaled
//! by an integer factor. Characters outside the table are drawn as `?`.

use image::{Rgb, RgbImage};

/// Width of a glyph in unscaled pixels.
pub const GLYPH_W: u32 = 5;
/// Height of a glyph in unscaled pixels, descenders included.
pub const GLYPH_H: u32 = 9;
/// Horizontal distance from one character to the next, in unscaled pixels.
pub const ADVANCE: u32 = GLYPH_W + 1;
/// Vertical distance from one text line to the next, in unscaled pixels.
pub const LINE_HEIGHT: u32 = GLYPH_H + 1;

/// First character in [`GLYPHS`].
pub const FIRST_CHAR: char = ' ';
/// Last character in [`GLYPHS`].
pub const LAST_CHAR: char = '~';

/// One glyph: `GLYPH_H` rows, bit 4 is the leftmost column.
pub type Glyph = [u8; GLYPH_H as usize];

/// Turns a row drawing (`#` ink, `.` blank) into a glyph at compile time.
/// A malformed drawing is a compile error.
const fn g(rows: [&str; GLYPH_H as usize]) -> Glyph {
    let mut out = [0u8; GLYPH_H as usize];
    let mut r = 0;
    while r < rows.len() {
        let bytes = rows[r].as_bytes();
        assert!(bytes.len() == GLYPH_W as usize, "glyph row must be 5 wide");
        let mut bits = 0u8;
        let mut c = 0;
        while c < bytes.len() {
            bits <<= 1;
            match bytes[c] {
                b'#' => bits |= 1,
                b'.' => {}
                _ => panic!("glyph rows may only contain '#' and '.'"),
            }
            c += 1;
        }
        out[r] = bits;
        r += 1;
    }
    out
}

/// Glyphs for `' '..='~'`, indexed by `char as usize - 0x20`.
#[rustfmt::skip]
pub const GLYPHS: [Glyph; 95] = [
    // 0x20 ' '
    g([
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x21 '!'
    g([
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".....",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x22 '"'
    g([
        ".#.#.",
        ".#.#.",
        ".#.#.",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x23 '#'
    g([
        ".#.#.",
        ".#.#.",
        "#####",
        ".#.#.",
        "#####",
        ".#.#.",
        ".#.#.",
        ".....",
        ".....",
    ]),
    // 0x24 '$'
    g([
        "..#..",
        ".####",
        "#.#..",
        ".###.",
        "..#.#",
        "####.",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x25 '%'
    g([
        "##...",
        "##..#",
        "...#.",
        "..#..",
        ".#...",
        "#..##",
        "...##",
        ".....",
        ".....",
    ]),
    // 0x26 '&'
    g([
        ".##..",
        "#..#.",
        "#.#..",
        ".#...",
        "#.#.#",
        "#..#.",
        ".##.#",
        ".....",
        ".....",
    ]),
    // 0x27 '\''
    g([
        "..#..",
        "..#..",
        ".#...",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x28 '('
    g([
        "...#.",
        "..#..",
        ".#...",
        ".#...",
        ".#...",
        "..#..",
        "...#.",
        ".....",
        ".....",
    ]),
    // 0x29 ')'
    g([
        ".#...",
        "..#..",
        "...#.",
        "...#.",
        "...#.",
        "..#..",
        ".#...",
        ".....",
        ".....",
    ]),
    // 0x2A '*'
    g([
        ".....",
        "..#..",
        "#.#.#",
        ".###.",
        "#.#.#",
        "..#..",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x2B '+'
    g([
        ".....",
        "..#..",
        "..#..",
        "#####",
        "..#..",
        "..#..",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x2C ','
    g([
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".##..",
        ".##..",
        "..#..",
        ".#...",
    ]),
    // 0x2D '-'
    g([
        ".....",
        ".....",
        ".....",
        "#####",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x2E '.'
    g([
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".##..",
        ".##..",
        ".....",
        ".....",
    ]),
    // 0x2F '/'
    g([
        "....#",
        "....#",
        "...#.",
        "..#..",
        ".#...",
        "#....",
        "#....",
        ".....",
        ".....",
    ]),
    // 0x30 '0'
    g([
        ".###.",
        "#...#",
        "#..##",
        "#.#.#",
        "##..#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x31 '1'
    g([
        "..#..",
        ".##..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x32 '2'
    g([
        ".###.",
        "#...#",
        "....#",
        "...#.",
        "..#..",
        ".#...",
        "#####",
        ".....",
        ".....",
    ]),
    // 0x33 '3'
    g([
        "#####",
        "...#.",
        "..#..",
        "...#.",
        "....#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x34 '4'
    g([
        "...#.",
        "..##.",
        ".#.#.",
        "#..#.",
        "#####",
        "...#.",
        "...#.",
        ".....",
        ".....",
    ]),
    // 0x35 '5'
    g([
        "#####",
        "#....",
        "####.",
        "....#",
        "....#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x36 '6'
    g([
        "..##.",
        ".#...",
        "#....",
        "####.",
        "#...#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x37 '7'
    g([
        "#####",
        "....#",
        "...#.",
        "..#..",
        ".#...",
        ".#...",
        ".#...",
        ".....",
        ".....",
    ]),
    // 0x38 '8'
    g([
        ".###.",
        "#...#",
        "#...#",
        ".###.",
        "#...#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x39 '9'
    g([
        ".###.",
        "#...#",
        "#...#",
        ".####",
        "....#",
        "...#.",
        ".##..",
        ".....",
        ".....",
    ]),
    // 0x3A ':'
    g([
        ".....",
        ".##..",
        ".##..",
        ".....",
        ".##..",
        ".##..",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x3B ';'
    g([
        ".....",
        ".##..",
        ".##..",
        ".....",
        ".##..",
        ".##..",
        "..#..",
        ".#...",
        ".....",
    ]),
    // 0x3C '<'
    g([
        "...#.",
        "..#..",
        ".#...",
        "#....",
        ".#...",
        "..#..",
        "...#.",
        ".....",
        ".....",
    ]),
    // 0x3D '='
    g([
        ".....",
        ".....",
        "#####",
        ".....",
        "#####",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x3E '>'
    g([
        ".#...",
        "..#..",
        "...#.",
        "....#",
        "...#.",
        "..#..",
        ".#...",
        ".....",
        ".....",
    ]),
    // 0x3F '?'
    g([
        ".###.",
        "#...#",
        "....#",
        "...#.",
        "..#..",
        ".....",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x40 '@'
    g([
        ".###.",
        "#...#",
        "....#",
        ".##.#",
        "#.#.#",
        "#.#.#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x41 'A'
    g([
        ".###.",
        "#...#",
        "#...#",
        "#####",
        "#...#",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x42 'B'
    g([
        "####.",
        "#...#",
        "#...#",
        "####.",
        "#...#",
        "#...#",
        "####.",
        ".....",
        ".....",
    ]),
    // 0x43 'C'
    g([
        ".###.",
        "#...#",
        "#....",
        "#....",
        "#....",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x44 'D'
    g([
        "###..",
        "#..#.",
        "#...#",
        "#...#",
        "#...#",
        "#..#.",
        "###..",
        ".....",
        ".....",
    ]),
    // 0x45 'E'
    g([
        "#####",
        "#....",
        "#....",
        "####.",
        "#....",
        "#....",
        "#####",
        ".....",
        ".....",
    ]),
    // 0x46 'F'
    g([
        "#####",
        "#....",
        "#....",
        "####.",
        "#....",
        "#....",
        "#....",
        ".....",
        ".....",
    ]),
    // 0x47 'G'
    g([
        ".###.",
        "#...#",
        "#....",
        "#.###",
        "#...#",
        "#...#",
        ".####",
        ".....",
        ".....",
    ]),
    // 0x48 'H'
    g([
        "#...#",
        "#...#",
        "#...#",
        "#####",
        "#...#",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x49 'I'
    g([
        ".###.",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x4A 'J'
    g([
        "..###",
        "...#.",
        "...#.",
        "...#.",
        "...#.",
        "#..#.",
        ".##..",
        ".....",
        ".....",
    ]),
    // 0x4B 'K'
    g([
        "#...#",
        "#..#.",
        "#.#..",
        "##...",
        "#.#..",
        "#..#.",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x4C 'L'
    g([
        "#....",
        "#....",
        "#....",
        "#....",
        "#....",
        "#....",
        "#####",
        ".....",
        ".....",
    ]),
    // 0x4D 'M'
    g([
        "#...#",
        "##.##",
        "#.#.#",
        "#.#.#",
        "#...#",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x4E 'N'
    g([
        "#...#",
        "#...#",
        "##..#",
        "#.#.#",
        "#..##",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x4F 'O'
    g([
        ".###.",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x50 'P'
    g([
        "####.",
        "#...#",
        "#...#",
        "####.",
        "#....",
        "#....",
        "#....",
        ".....",
        ".....",
    ]),
    // 0x51 'Q'
    g([
        ".###.",
        "#...#",
        "#...#",
        "#...#",
        "#.#.#",
        "#..#.",
        ".##.#",
        ".....",
        ".....",
    ]),
    // 0x52 'R'
    g([
        "####.",
        "#...#",
        "#...#",
        "####.",
        "#.#..",
        "#..#.",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x53 'S'
    g([
        ".####",
        "#....",
        "#....",
        ".###.",
        "....#",
        "....#",
        "####.",
        ".....",
        ".....",
    ]),
    // 0x54 'T'
    g([
        "#####",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x55 'U'
    g([
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x56 'V'
    g([
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        ".#.#.",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x57 'W'
    g([
        "#...#",
        "#...#",
        "#...#",
        "#.#.#",
        "#.#.#",
        "#.#.#",
        ".#.#.",
        ".....",
        ".....",
    ]),
    // 0x58 'X'
    g([
        "#...#",
        "#...#",
        ".#.#.",
        "..#..",
        ".#.#.",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x59 'Y'
    g([
        "#...#",
        "#...#",
        ".#.#.",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x5A 'Z'
    g([
        "#####",
        "....#",
        "...#.",
        "..#..",
        ".#...",
        "#....",
        "#####",
        ".....",
        ".....",
    ]),
    // 0x5B '['
    g([
        ".###.",
        ".#...",
        ".#...",
        ".#...",
        ".#...",
        ".#...",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x5C '\\'
    g([
        "#....",
        "#....",
        ".#...",
        "..#..",
        "...#.",
        "....#",
        "....#",
        ".....",
        ".....",
    ]),
    // 0x5D ']'
    g([
        ".###.",
        "...#.",
        "...#.",
        "...#.",
        "...#.",
        "...#.",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x5E '^'
    g([
        "..#..",
        ".#.#.",
        "#...#",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x5F '_'
    g([
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        "#####",
        ".....",
    ]),
    // 0x60 '`'
    g([
        ".#...",
        "..#..",
        "...#.",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
    // 0x61 'a'
    g([
        ".....",
        ".....",
        ".###.",
        "....#",
        ".####",
        "#...#",
        ".####",
        ".....",
        ".....",
    ]),
    // 0x62 'b'
    g([
        "#....",
        "#....",
        "#.##.",
        "##..#",
        "#...#",
        "#...#",
        "####.",
        ".....",
        ".....",
    ]),
    // 0x63 'c'
    g([
        ".....",
        ".....",
        ".###.",
        "#....",
        "#....",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x64 'd'
    g([
        "....#",
        "....#",
        ".##.#",
        "#..##",
        "#...#",
        "#...#",
        ".####",
        ".....",
        ".....",
    ]),
    // 0x65 'e'
    g([
        ".....",
        ".....",
        ".###.",
        "#...#",
        "#####",
        "#....",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x66 'f'
    g([
        "..##.",
        ".#..#",
        ".#...",
        "###..",
        ".#...",
        ".#...",
        ".#...",
        ".....",
        ".....",
    ]),
    // 0x67 'g'
    g([
        ".....",
        ".....",
        ".####",
        "#...#",
        "#...#",
        "#...#",
        ".####",
        "....#",
        ".###.",
    ]),
    // 0x68 'h'
    g([
        "#....",
        "#....",
        "#.##.",
        "##..#",
        "#...#",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x69 'i'
    g([
        "..#..",
        ".....",
        ".##..",
        "..#..",
        "..#..",
        "..#..",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x6A 'j'
    g([
        "...#.",
        ".....",
        "..##.",
        "...#.",
        "...#.",
        "...#.",
        "...#.",
        "#..#.",
        ".##..",
    ]),
    // 0x6B 'k'
    g([
        "#....",
        "#....",
        "#..#.",
        "#.#..",
        "##...",
        "#.#..",
        "#..#.",
        ".....",
        ".....",
    ]),
    // 0x6C 'l'
    g([
        ".##..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x6D 'm'
    g([
        ".....",
        ".....",
        "##.#.",
        "#.#.#",
        "#.#.#",
        "#.#.#",
        "#.#.#",
        ".....",
        ".....",
    ]),
    // 0x6E 'n'
    g([
        ".....",
        ".....",
        "#.##.",
        "##..#",
        "#...#",
        "#...#",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x6F 'o'
    g([
        ".....",
        ".....",
        ".###.",
        "#...#",
        "#...#",
        "#...#",
        ".###.",
        ".....",
        ".....",
    ]),
    // 0x70 'p'
    g([
        ".....",
        ".....",
        "####.",
        "#...#",
        "#...#",
        "#...#",
        "####.",
        "#....",
        "#....",
    ]),
    // 0x71 'q'
    g([
        ".....",
        ".....",
        ".####",
        "#...#",
        "#...#",
        "#...#",
        ".####",
        "....#",
        "....#",
    ]),
    // 0x72 'r'
    g([
        ".....",
        ".....",
        "#.##.",
        "##..#",
        "#....",
        "#....",
        "#....",
        ".....",
        ".....",
    ]),
    // 0x73 's'
    g([
        ".....",
        ".....",
        ".####",
        "#....",
        ".###.",
        "....#",
        "####.",
        ".....",
        ".....",
    ]),
    // 0x74 't'
    g([
        ".#...",
        ".#...",
        "###..",
        ".#...",
        ".#...",
        ".#..#",
        "..##.",
        ".....",
        ".....",
    ]),
    // 0x75 'u'
    g([
        ".....",
        ".....",
        "#...#",
        "#...#",
        "#...#",
        "#..##",
        ".##.#",
        ".....",
        ".....",
    ]),
    // 0x76 'v'
    g([
        ".....",
        ".....",
        "#...#",
        "#...#",
        "#...#",
        ".#.#.",
        "..#..",
        ".....",
        ".....",
    ]),
    // 0x77 'w'
    g([
        ".....",
        ".....",
        "#...#",
        "#...#",
        "#.#.#",
        "#.#.#",
        ".#.#.",
        ".....",
        ".....",
    ]),
    // 0x78 'x'
    g([
        ".....",
        ".....",
        "#...#",
        ".#.#.",
        "..#..",
        ".#.#.",
        "#...#",
        ".....",
        ".....",
    ]),
    // 0x79 'y'
    g([
        ".....",
        ".....",
        "#...#",
        "#...#",
        "#...#",
        "#...#",
        ".####",
        "....#",
        ".###.",
    ]),
    // 0x7A 'z'
    g([
        ".....",
        ".....",
        "#####",
        "...#.",
        "..#..",
        ".#...",
        "#####",
        ".....",
        ".....",
    ]),
    // 0x7B '{'
    g([
        "...##",
        "..#..",
        "..#..",
        ".#...",
        "..#..",
        "..#..",
        "...##",
        ".....",
        ".....",
    ]),
    // 0x7C '|'
    g([
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        "..#..",
        ".....",
    ]),
    // 0x7D '}'
    g([
        "##...",
        "..#..",
        "..#..",
        "...#.",
        "..#..",
        "..#..",
        "##...",
        ".....",
        ".....",
    ]),
    // 0x7E '~'
    g([
        ".....",
        ".....",
        ".#...",
        "#.#.#",
        "...#.",
        ".....",
        ".....",
        ".....",
        ".....",
    ]),
];

/// The glyph drawn for `c`; `?` for anything outside printable ASCII.
pub fn glyph(c: char) -> &'static Glyph {
    let code = c as u32;
    let idx = if (FIRST_CHAR as u32..=LAST_CHAR as u32).contains(&code) {
        code - FIRST_CHAR as u32
    } else {
        '?' as u32 - FIRST_CHAR as u32
    };
    &GLYPHS[idx as usize]
}

/// Scale 0 is treated as 1.
#[inline]
fn eff_scale(scale: u32) -> u32 {
    scale.max(1)
}

/// Width in pixels of `chars` characters on one line (no trailing gap).
pub fn width_of_chars(chars: usize, scale: u32) -> u32 {
    if chars == 0 {
        return 0;
    }
    let s = eff_scale(scale) as u64;
    let w = (chars as u64)
        .saturating_mul(ADVANCE as u64 * s)
        .saturating_sub(s);
    w.min(u32::MAX as u64) as u32
}

/// Width in pixels of `text` drawn on one line at `scale`
/// (one glyph cell per `char`, no trailing gap; 0 for an empty string).
pub fn text_width(text: &str, scale: u32) -> u32 {
    width_of_chars(text.chars().count(), scale)
}

/// Height in pixels of one line of text at `scale`, descenders included.
pub fn text_height(scale: u32) -> u32 {
    GLYPH_H.saturating_mul(eff_scale(scale))
}

/// `(text_width, text_height)` of `text` at `scale`.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    (text_width(text, scale), text_height(scale))
}

/// Draws `text` on one line with its top-left corner at `(x, y)`, each font
/// pixel a `scale` x `scale` square of `color`. Only glyph ink is written
/// (no background). Anything outside the image is clipped; any position,
/// scale and string is accepted. Returns the x just past the last character
/// cell (where following text would continue), saturating.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32, color: Rgb<u8>) -> i64 {
    let s = eff_scale(scale) as i64;
    let (img_w, img_h) = (img.width() as i64, img.height() as i64);
    let advance = ADVANCE as i64 * s;
    let y = y as i64;
    let mut gx = x as i64;
    // Nothing of this line can be visible: still report where it ends.
    let rows_visible = y < img_h && y.saturating_add(GLYPH_H as i64 * s) > 0;
    if !rows_visible || img_w == 0 {
        let n = text.chars().count() as i64;
        return gx.saturating_add(n.saturating_mul(advance));
    }
    let buf: &mut [u8] = img.as_mut();
    let stride = img_w as usize * 3;
    let px = color.0;
    for c in text.chars() {
        if gx >= img_w {
            // Everything further right is clipped too; only account for it.
            gx = gx.saturating_add(advance);
            continue;
        }
        if gx.saturating_add(GLYPH_W as i64 * s) > 0 {
            blit_glyph(buf, stride, img_w, img_h, gx, y, s, glyph(c), px);
        }
        gx = gx.saturating_add(advance);
    }
    gx
}

/// Writes one scaled glyph, clipped to the image. Coordinates are i64 so no
/// scaled offset can overflow for any `i32` position and `u32` scale.
#[allow(clippy::too_many_arguments)]
#[inline]
fn blit_glyph(
    buf: &mut [u8],
    stride: usize,
    img_w: i64,
    img_h: i64,
    gx: i64,
    gy: i64,
    s: i64,
    rows: &Glyph,
    px: [u8; 3],
) {
    for (r, &bits) in rows.iter().enumerate() {
        if bits == 0 {
            continue;
        }
        let y0 = gy + r as i64 * s;
        let y1 = (y0 + s).min(img_h);
        let y0 = y0.max(0);
        if y0 >= y1 {
            continue;
        }
        for col in 0..GLYPH_W as i64 {
            if bits & (1 << (GLYPH_W as i64 - 1 - col)) == 0 {
                continue;
            }
            let x0 = gx + col * s;
            let x1 = (x0 + s).min(img_w);
            let x0 = x0.max(0);
            if x0 >= x1 {
                continue;
            }
            for py in y0..y1 {
                let start = py as usize * stride + x0 as usize * 3;
                let end = py as usize * stride + x1 as usize * 3;
                for p in buf[start..end].chunks_exact_mut(3) {
                    p.copy_from_slice(&px);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INK: Rgb<u8> = Rgb([255, 255, 255]);

    /// Bounding box `(x0, y0, x1, y1)` (exclusive ends) of non-black pixels.
    fn ink_bounds(img: &RgbImage) -> Option<(u32, u32, u32, u32)> {
        let mut b: Option<(u32, u32, u32, u32)> = None;
        for (x, y, p) in img.enumerate_pixels() {
            if p.0 != [0, 0, 0] {
                b = Some(match b {
                    None => (x, y, x + 1, y + 1),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)),
                });
            }
        }
        b
    }

    #[test]
    fn table_covers_printable_ascii_with_distinct_glyphs() {
        assert_eq!(GLYPHS.len(), 95);
        assert_eq!((LAST_CHAR as usize) - (FIRST_CHAR as usize) + 1, GLYPHS.len());
        for (i, a) in GLYPHS.iter().enumerate() {
            let ch = char::from(0x20 + i as u8);
            for &row in a {
                assert_eq!(row & !0b1_1111, 0, "{ch:?} has ink outside 5 columns");
            }
            if ch != ' ' {
                assert!(a.iter().any(|&r| r != 0), "{ch:?} is blank");
            }
            for (j, b) in GLYPHS.iter().enumerate().skip(i + 1) {
                let other = char::from(0x20 + j as u8);
                assert_ne!(a, b, "{ch:?} and {other:?} have the same glyph");
            }
        }
        assert!(GLYPHS[0].iter().all(|&r| r == 0), "space must be blank");
    }

    #[test]
    fn glyph_lookup_maps_unknown_to_question_mark() {
        assert_eq!(glyph('A'), &GLYPHS[('A' as usize) - 0x20]);
        assert_eq!(glyph('~'), &GLYPHS[94]);
        for c in ['é', '\n', '\t', '\u{7f}', '日', '\u{1F600}', '\0'] {
            assert_eq!(glyph(c), glyph('?'), "{c:?}");
        }
    }

    #[test]
    fn measurements() {
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("a", 1), 5);
        assert_eq!(text_width("ab", 2), 22);
        // One cell per char, not per byte.
        assert_eq!(text_width("héllo", 1), text_width("hello", 1));
        assert_eq!(text_height(1), 9);
        assert_eq!(text_height(3), 27);
        assert_eq!(text_size("dog", 0), text_size("dog", 1));
        assert_eq!(text_width("x", u32::MAX), u32::MAX);
    }

    #[test]
    fn rendering_changes_exactly_the_measured_bounds() {
        // 'H' inks the left column and top row, 'g' the right column and the
        // bottom descender row, so the ink box must equal the measured box.
        for scale in 1..=4 {
            let mut img = RgbImage::new(80, 60);
            let (x, y) = (7, 5);
            draw_text(&mut img, x, y, "Hg", scale, INK);
            let (w, h) = text_size("Hg", scale);
            assert_eq!(
                ink_bounds(&img),
                Some((x as u32, y as u32, x as u32 + w, y as u32 + h)),
                "scale {scale}"
            );
        }
        // For arbitrary text, ink never leaves the measured box.
        let text = "The quick brown fox {jumps} over_the lazy dog 0123456789 !?@#";
        let mut img = RgbImage::new(800, 40);
        draw_text(&mut img, 3, 4, text, 2, INK);
        let (w, h) = text_size(text, 2);
        let (x0, y0, x1, y1) = ink_bounds(&img).unwrap();
        assert!(x0 >= 3 && y0 >= 4 && x1 <= 3 + w && y1 <= 4 + h);
    }

    #[test]
    fn draw_text_returns_pen_position() {
        let mut img = RgbImage::new(10, 10);
        assert_eq!(draw_text(&mut img, 2, 0, "abc", 2, INK), 2 + 3 * 12);
        assert_eq!(draw_text(&mut img, 2, 500, "abc", 1, INK), 2 + 3 * 6);
    }

    #[test]
    fn clipped_rendering_matches_the_unclipped_part() {
        let text = "Wg|x";
        let (w, h) = text_size(text, 3);
        let mut full = RgbImage::new(w + 40, h + 40);
        draw_text(&mut full, 20, 20, text, 3, INK);
        // Same text at (-7, -9) on a small image: shifted window of `full`.
        let mut small = RgbImage::new(30, 20);
        draw_text(&mut small, -7, -9, text, 3, INK);
        for (x, y, p) in small.enumerate_pixels() {
            assert_eq!(p, full.get_pixel(x + 27, y + 29), "at {x},{y}");
        }
        assert!(small.pixels().any(|p| p.0 != [0, 0, 0]));
    }

    #[test]
    fn unknown_chars_draw_as_question_mark() {
        let mut a = RgbImage::new(40, 12);
        let mut b = RgbImage::new(40, 12);
        draw_text(&mut a, 1, 1, "a?b", 1, INK);
        draw_text(&mut b, 1, 1, "a\u{e9}b", 1, INK);
        assert_eq!(a, b);
    }

    #[test]
    fn extreme_positions_and_strings_do_not_panic() {
        let mut img = RgbImage::new(37, 23);
        let positions = [
            i32::MIN,
            i32::MIN + 1,
            -100_000,
            -50,
            -1,
            0,
            1,
            20,
            36,
            37,
            100,
            i32::MAX - 1,
            i32::MAX,
        ];
        let texts = ["", "A", "héllo wörld 日本 \u{1F600}\n\t\0", &"x".repeat(10_000)];
        for &x in &positions {
            for &y in &positions {
                for t in texts {
                    for scale in [0, 1, 2, 7, 1000, u32::MAX] {
                        draw_text(&mut img, x, y, t, scale, INK);
                    }
                }
            }
        }
        let mut empty = RgbImage::new(0, 0);
        draw_text(&mut empty, 0, 0, "abc", 1, INK);
        let mut thin = RgbImage::new(0, 10);
        draw_text(&mut thin, 0, 0, "abc", 1, INK);
    }
}

//! The frame shown while a camera is down: "NO SIGNAL" and why. Drawn by the
//! capture loop; it lives here, not in `capture`, so capture needs nothing
//! from `annotate`.

use std::time::{Duration, Instant};

use image::Rgb;

use crate::annotate::{draw_text, line_height, text_width};
use crate::capture::{with_rgb_image, Frame};

/// Splits `text` into at most `max_lines` lines of at most `max_chars`
/// characters, breaking at spaces where possible; "..." marks a cut.
fn wrap(text: &str, max_chars: usize, max_lines: usize) -> Vec<String> {
    let max_chars = max_chars.max(4);
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut truncated = false;
    'words: for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let cur_len = cur.chars().count();
            let sep = usize::from(cur_len > 0);
            if cur_len + sep + word.len() <= max_chars {
                if sep == 1 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                continue 'words;
            }
            if cur_len > 0 {
                lines.push(std::mem::take(&mut cur));
            } else {
                // A word longer than a line: hard split.
                let rest = word.split_off(max_chars);
                lines.push(word.iter().collect());
                word = rest;
            }
            if lines.len() >= max_lines {
                truncated = true;
                break 'words;
            }
        }
    }
    if !truncated && !cur.is_empty() {
        if lines.len() < max_lines {
            lines.push(cur);
        } else {
            truncated = true;
        }
    }
    if truncated {
        if let Some(last) = lines.last_mut() {
            let keep: String = last.chars().take(max_chars - 3).collect();
            *last = keep + "...";
        }
    }
    lines
}

/// Fills `frame` with a dark grey `width` x `height` image (0: 640x480) with
/// a large "NO SIGNAL" and `message` (wrapped, up to three lines) under it.
pub fn no_signal_frame(width: u32, height: u32, message: &str, frame: &mut Frame) {
    let w = if width == 0 { 640 } else { width };
    let h = if height == 0 { 480 } else { height };
    frame.reshape(w, h);
    frame.rgb.fill(40);
    const TITLE: &str = "NO SIGNAL";
    // Title about 60% of the width, at most a fifth of the height: text
    // width grows with the pixel size, so measure once at 100 px.
    let width_100 = text_width(TITLE, 100).max(1);
    let by_w = (w * 6 / 10).saturating_mul(100) / width_100;
    let px = by_w.min(h / 5).max(10);
    let (tw, th) = (text_width(TITLE, px), line_height(px));
    let title_y = (h as i32 / 2) - th as i32;
    let small = (px / 3).max(10);
    let margin = (w / 20).max(2);
    // Wrap by the widest common letter, so lines never overflow.
    let advance = text_width("M", small).max(1);
    let max_chars = (w.saturating_sub(2 * margin) / advance).max(1) as usize;
    let lines = wrap(message, max_chars, 3);
    let line_h = line_height(small) + small / 4;
    with_rgb_image(frame, |img| {
        draw_text(
            img,
            (w as i32 - tw as i32) / 2,
            title_y,
            TITLE,
            px,
            Rgb([230, 230, 230]),
        );
        let mut y = title_y + th as i32 + (th as i32 / 3);
        for line in &lines {
            let lw = text_width(line, small);
            draw_text(
                img,
                (w as i32 - lw as i32) / 2,
                y,
                line,
                small,
                Rgb([200, 170, 60]),
            );
            y += line_h as i32;
        }
    });
    frame.captured_at = Instant::now();
    frame.decode_time = Duration::ZERO;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_signal_frame_draws_text() {
        let mut frame = Frame::default();
        no_signal_frame(
            640,
            480,
            "v4l2:/dev/video0: cannot open: No such file or directory",
            &mut frame,
        );
        assert_eq!(
            (frame.width, frame.height, frame.rgb.len()),
            (640, 480, 640 * 480 * 3)
        );
        let bright = frame
            .rgb
            .chunks_exact(3)
            .filter(|p| p[0] > 200 && p[1] > 200)
            .count();
        let amber = frame.rgb.chunks_exact(3).filter(|p| p == &[200, 170, 60]).count();
        let bg = frame.rgb.chunks_exact(3).filter(|p| p == &[40, 40, 40]).count();
        assert!(bright > 2000, "{bright}");
        assert!(amber > 200, "{amber}");
        assert!(bg > 640 * 480 / 2);
        // Tiny and default sizes do not panic.
        no_signal_frame(8, 4, &"x".repeat(500), &mut frame);
        no_signal_frame(0, 0, "", &mut frame);
        assert_eq!((frame.width, frame.height), (640, 480));
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc", 20, 3), ["a bb ccc"]);
        assert_eq!(wrap("aaaa bbbb cccc", 9, 3), ["aaaa bbbb", "cccc"]);
        assert_eq!(wrap("abcdefghij", 4, 3), ["abcd", "efgh", "ij"]);
        let w = wrap(&"word ".repeat(50), 12, 2);
        assert_eq!(w.len(), 2);
        assert!(w[1].ends_with("...") && w[1].chars().count() <= 12, "{w:?}");
        assert!(wrap("", 10, 3).is_empty());
    }
}

//! Zones and counting lines on the stream: thin outlines and their names,
//! in two fixed colours the label palette keeps clear of, so the page, VLC
//! and the pictures all show where they are.

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_line_segment_mut;

use super::AnnotateStyle;
use crate::track::{Line, Zone};

/// Zone outlines and names: light blue, as the page draws them.
pub const ZONE_COLOR: Rgb<u8> = Rgb([124, 183, 255]);
/// Counting lines: amber.
pub const LINE_COLOR: Rgb<u8> = Rgb([255, 209, 102]);

/// Draws `a`-`b` (pixels) `width` pixels wide.
fn thick_line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), width: u32, color: Rgb<u8>) {
    let steep = (b.1 - a.1).abs() > (b.0 - a.0).abs();
    let w = width.max(1) as i32;
    for k in 0..w {
        let off = (k - w / 2) as f32;
        let (da, db) = if steep {
            ((a.0 + off, a.1), (b.0 + off, b.1))
        } else {
            ((a.0, a.1 + off), (b.0, b.1 + off))
        };
        draw_line_segment_mut(img, da, db, color);
    }
}

/// Draws every zone's outline and every line, with their names, on `img`
/// (coordinates are fractions of the frame). Allocates nothing.
pub fn draw_places(img: &mut RgbImage, zones: &[Zone], lines: &[Line], style: &AnnotateStyle) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let px = |p: [f32; 2]| (p[0] * (w - 1.0), p[1] * (h - 1.0));
    let lw = style.line_width.max(1).div_ceil(2);
    let text_px = (style.text_px * 3 / 4).max(10);
    let font = super::typeface();
    for z in zones {
        let n = z.polygon.len();
        for i in 0..n {
            thick_line(img, px(z.polygon[i]), px(z.polygon[(i + 1) % n]), lw, ZONE_COLOR);
        }
        if let (Some(font), Some(first)) = (font, z.polygon.first()) {
            let (x, y) = px(*first);
            font.draw(
                img,
                x as i64 + 4,
                y as i64 + 2,
                &[z.name.as_str()],
                text_px,
                ZONE_COLOR,
            );
        }
    }
    for l in lines {
        let (a, b) = (px(l.a), px(l.b));
        thick_line(img, a, b, lw + 1, LINE_COLOR);
        if let Some(font) = font {
            let mid = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            font.draw(
                img,
                mid.0 as i64 + 4,
                mid.1 as i64 + 2,
                &[l.name.as_str()],
                text_px,
                LINE_COLOR,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_lines_are_drawn_where_they_are() {
        let mut img = RgbImage::new(200, 100);
        let zone = Zone {
            name: "z".into(),
            polygon: vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.9], [0.1, 0.9]],
            labels: vec![],
            min_frames: 1,
            loiter_ms: 0,
        };
        let line = Line {
            name: "l".into(),
            a: [0.75, 0.0],
            b: [0.75, 1.0],
            labels: vec![],
        };
        draw_places(&mut img, &[zone], &[line], &AnnotateStyle::for_size(200, 100));
        // The zone's right edge (x = 0.5 of 199: 99.5) and the line
        // (x = 0.75 of 199: 149.25).
        assert!([99, 100].iter().any(|&x| *img.get_pixel(x, 50) == ZONE_COLOR));
        assert!([149, 150].iter().any(|&x| *img.get_pixel(x, 80) == LINE_COLOR));
        // Inside the zone nothing is painted.
        assert_eq!(*img.get_pixel(60, 60), Rgb([0, 0, 0]));
    }
}

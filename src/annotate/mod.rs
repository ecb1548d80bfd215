//! Drawing detections onto frames.
//!
//! [`draw_detections`] outlines every detection in a colour chosen from its
//! label ([`palette::label_color`]) and puts a filled tag with
//! `"{label} {score}%"` above the box; [`draw_text_block`] draws a
//! semi-opaque panel of text lines for status overlays. Text is drawn
//! anti-aliased from a TrueType font ([`text`]); without one, boxes are
//! drawn without tags. Nothing here allocates per frame once the glyphs
//! are cached, and no input (box coordinates, NaN, strings, image size)
//! makes it panic.

pub mod palette;
pub mod places;
/// Text drawing lives at the crate's top level (capture's test pattern
/// draws text too, and has no business with detections); it is re-exported
/// here for the annotation code and its users.
pub use crate::text;

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_filled_rect_mut;
use imageproc::rect::Rect;

use crate::infer::detection::{BBox, Detection};

pub use crate::text::{draw_text, line_height, text_width, typeface, use_font, FontError, Typeface};
pub use palette::{label_color, text_color_on};

/// How boxes and text are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnotateStyle {
    /// Box outline thickness in pixels (0 is drawn as 1).
    pub line_width: u32,
    /// Font size in pixels (ascender to descender), clamped to
    /// [`text::MIN_PX`]..=[`text::MAX_PX`].
    pub text_px: u32,
    /// Append the score as a percentage to each label.
    pub show_score: bool,
}

impl Default for AnnotateStyle {
    /// Suits a 640x480 frame: 2 px lines, 16 px text, scores shown.
    fn default() -> Self {
        Self {
            line_width: 2,
            text_px: 16,
            show_score: true,
        }
    }
}

impl AnnotateStyle {
    /// Sizes for a `width` x `height` frame, from its shorter side: lines
    /// one pixel per 240 px (at least 1), text a thirtieth of it (at least
    /// 10 px, which stays legible): 320x240 -> 1 and 10, 640x480 -> 2 and
    /// 16, 1280x720 -> 3 and 24, 1920x1080 -> 4 and 36. Scores are shown.
    pub fn for_size(width: u32, height: u32) -> Self {
        let short = width.min(height);
        Self {
            line_width: (short / 240).max(1),
            text_px: (short / 30).max(10),
            show_score: true,
        }
    }

    /// Padding around text in a tag: an eighth of the text size, at least 1.
    fn pad(&self) -> i64 {
        (text_px(self) / 8).max(1) as i64
    }
}

fn text_px(style: &AnnotateStyle) -> u32 {
    style.text_px.clamp(text::MIN_PX, text::MAX_PX)
}

/// Box coordinates beyond this many pixels are clamped before conversion to
/// integers; no image is that large, and it keeps the arithmetic in range.
const COORD_LIMIT: f32 = 1_000_000.0;

/// A box in whole pixels, `[x0, x1) x [y0, y1)`, not necessarily inside the
/// image but non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixRect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl PixRect {
    /// Rounds a detection box to pixels and clips it to a `w` x `h` image
    /// (so a box reaching past the frame is outlined along the frame edge);
    /// `None` for NaN, zero-size or inverted boxes and boxes entirely
    /// outside the image.
    fn from_bbox(b: &BBox, w: u32, h: u32) -> Option<Self> {
        let conv = |v: f32| -> Option<i64> {
            if v.is_nan() {
                None
            } else {
                Some(v.clamp(-COORD_LIMIT, COORD_LIMIT).round() as i64)
            }
        };
        let r = Self {
            x0: conv(b.left)?,
            y0: conv(b.top)?,
            x1: conv(b.right)?,
            y1: conv(b.bottom)?,
        };
        let visible =
            r.x0 < r.x1 && r.y0 < r.y1 && r.x1 > 0 && r.y1 > 0 && r.x0 < w as i64 && r.y0 < h as i64;
        visible.then_some(Self {
            x0: r.x0.max(0),
            y0: r.y0.max(0),
            x1: r.x1.min(w as i64),
            y1: r.y1.min(h as i64),
        })
    }
}

/// Fills `[x0, x1) x [y0, y1)` clipped to the image (empty or outside: no-op).
fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0, x1, y1) = (x0.max(0), y0.max(0), x1.min(w), y1.min(h));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    // Clipped to the image, so every value fits and the size is positive.
    let rect = Rect::at(x0 as i32, y0 as i32).of_size((x1 - x0) as u32, (y1 - y0) as u32);
    draw_filled_rect_mut(img, rect, color);
}

/// Blends `[x0, x1) x [y0, y1)` (clipped) towards `color` by `alpha`/255.
fn blend_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>, alpha: u8) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0, x1, y1) = (x0.max(0), y0.max(0), x1.min(w), y1.min(h));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let a = alpha as u32;
    let stride = w as usize * 3;
    let buf: &mut [u8] = img.as_mut();
    for y in y0 as usize..y1 as usize {
        let row = &mut buf[y * stride + x0 as usize * 3..y * stride + x1 as usize * 3];
        for p in row.chunks_exact_mut(3) {
            for (v, &c) in p.iter_mut().zip(&color.0) {
                *v = ((*v as u32 * (255 - a) + c as u32 * a + 127) / 255) as u8;
            }
        }
    }
}

/// Draws a `width`-px outline just inside `r` (clipped to the image).
fn draw_outline(img: &mut RgbImage, r: PixRect, width: u32, color: Rgb<u8>) {
    let lw = width.max(1) as i64;
    let PixRect { x0, y0, x1, y1 } = r;
    // Thicker than half the box: the outline fills it.
    if 2 * lw >= x1 - x0 || 2 * lw >= y1 - y0 {
        fill_rect(img, x0, y0, x1, y1, color);
        return;
    }
    fill_rect(img, x0, y0, x1, y0 + lw, color); // top
    fill_rect(img, x0, y1 - lw, x1, y1, color); // bottom
    fill_rect(img, x0, y0 + lw, x0 + lw, y1 - lw, color); // left
    fill_rect(img, x1 - lw, y0 + lw, x1, y1 - lw, color); // right
}

/// `" 95%"` for a score in 0..=1 (clamped), as a stack buffer and length;
/// empty for a non-finite score.
fn score_suffix(score: f32) -> ([u8; 5], usize) {
    let mut buf = [b' '; 5];
    if !score.is_finite() {
        return (buf, 0);
    }
    let pct = (score.clamp(0.0, 1.0) * 100.0).round() as u32;
    let mut len = 1;
    if pct >= 100 {
        buf[len] = b'1';
        len += 1;
    }
    if pct >= 10 {
        buf[len] = b'0' + (pct / 10 % 10) as u8;
        len += 1;
    }
    buf[len] = b'0' + (pct % 10) as u8;
    buf[len + 1] = b'%';
    (buf, len + 2)
}

/// How many boxes and tags the placement of later tags looks at: a frame
/// with more detections than this places the rest avoiding only these, so
/// the layout needs no allocation.
pub const MAX_PLACED: usize = 64;

/// Pixels of overlap between two rectangles (0 when apart or empty).
fn overlap(a: &PixRect, b: &PixRect) -> i64 {
    let w = a.x1.min(b.x1) - a.x0.max(b.x0);
    let h = a.y1.min(b.y1) - a.y0.max(b.y0);
    if w > 0 && h > 0 {
        w.saturating_mul(h)
    } else {
        0
    }
}

/// Where the `tag_w` x `tag_h` label tag of box `r` on an `img_w` x
/// `img_h` frame goes, so that it hides
/// no other box or label where that can be avoided. Tried in order: above
/// the box, below it, inside it at its top, each shifted left if needed to
/// stay in the image; the first that lies inside the image and overlaps
/// none of `boxes` (except `own`, the box's own index there) and `tags` is
/// taken. When every one overlaps something, the in-image one with the
/// least overlap; when none fits in the image (a tag taller than it), the
/// top of the box, clamped. Returns the tag's rectangle.
fn place_tag(
    r: PixRect,
    (tag_w, tag_h): (i64, i64),
    (img_w, img_h): (i64, i64),
    boxes: &[PixRect],
    own: Option<usize>,
    tags: &[PixRect],
) -> PixRect {
    let x = r.x0.min(img_w - tag_w).max(0);
    let at = |y: i64| PixRect {
        x0: x,
        y0: y,
        x1: x.saturating_add(tag_w),
        y1: y.saturating_add(tag_h),
    };
    let mut best: Option<(i64, PixRect)> = None;
    for y in [r.y0.saturating_sub(tag_h), r.y1, r.y0] {
        if y < 0 || y.saturating_add(tag_h) > img_h {
            continue;
        }
        let cand = at(y);
        let covered: i64 = boxes
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != own)
            .map(|(_, b)| overlap(&cand, b))
            .chain(tags.iter().map(|t| overlap(&cand, t)))
            .fold(0, i64::saturating_add);
        if covered == 0 {
            return cand;
        }
        if best.is_none_or(|(c, _)| covered < c) {
            best = Some((covered, cand));
        }
    }
    match best {
        Some((_, cand)) => cand,
        None => at(r.y0.min(img_h - tag_h).max(0)),
    }
}

/// The text of a detection's tag, `"{label}"`, `" #{id}"` and
/// `" {score}%"`, and the stack buffers the id and score are written to.
struct TagText<'a> {
    label: &'a str,
    id: ([u8; 22], usize),
    suffix: ([u8; 5], usize, usize),
}

/// `" #N"` into a stack buffer.
fn id_suffix(id: Option<u64>) -> ([u8; 22], usize) {
    let mut buf = [0u8; 22];
    let Some(mut n) = id else { return (buf, 0) };
    let mut digits = [0u8; 20];
    let mut d = 0;
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[0] = b' ';
    buf[1] = b'#';
    for i in 0..d {
        buf[2 + i] = digits[d - 1 - i];
    }
    (buf, 2 + d)
}

impl<'a> TagText<'a> {
    fn new(det: &'a Detection, id: Option<u64>, style: &AnnotateStyle) -> Self {
        let (buf, mut len) = if style.show_score {
            score_suffix(det.score)
        } else {
            ([0; 5], 0)
        };
        // Without a label the suffix loses its leading space.
        let label = det.label.as_str();
        let mut start = 0;
        if label.is_empty() && len > 0 {
            start = 1;
            len -= 1;
        }
        Self {
            label,
            id: id_suffix(id),
            suffix: (buf, start, len),
        }
    }

    fn parts(&self) -> [&str; 3] {
        let (buf, start, len) = &self.suffix;
        let suffix = std::str::from_utf8(&buf[*start..*start + *len]).unwrap_or_default();
        let id = std::str::from_utf8(&self.id.0[..self.id.1]).unwrap_or_default();
        [self.label, id, suffix]
    }
}

/// Lays out the tags of `dets` on a `img_w` x `img_h` frame, in order
/// (earlier detections get the first choice), and calls `f` with each
/// detection, its tag's rectangle and text. Detections without a visible
/// box or text get no tag.
fn layout_tags(
    img_w: u32,
    img_h: u32,
    dets: &[Detection],
    ids: &[Option<u64>],
    style: &AnnotateStyle,
    font: &Typeface,
    mut f: impl FnMut(usize, &Detection, PixRect, [&str; 3]),
) {
    let empty = PixRect {
        x0: 0,
        y0: 0,
        x1: 0,
        y1: 0,
    };
    let mut boxes = [empty; MAX_PLACED];
    let mut n_boxes = 0;
    for det in dets {
        if n_boxes == MAX_PLACED {
            break;
        }
        if let Some(r) = PixRect::from_bbox(&det.bbox, img_w, img_h) {
            boxes[n_boxes] = r;
            n_boxes += 1;
        }
    }
    let mut tags = [empty; MAX_PLACED];
    let mut n_tags = 0;
    let mut box_idx = 0;
    let px = text_px(style);
    let pad = style.pad();
    let text_h = font.line_height(px) as i64;
    for (i, det) in dets.iter().enumerate() {
        let Some(r) = PixRect::from_bbox(&det.bbox, img_w, img_h) else {
            continue;
        };
        let own = (box_idx < n_boxes).then_some(box_idx);
        box_idx += 1;
        let text = TagText::new(det, ids.get(i).copied().flatten(), style);
        let parts = text.parts();
        if parts.iter().all(|p| p.is_empty()) {
            continue;
        }
        let text_w = font.text_width(&parts, px) as i64;
        let (tag_w, tag_h) = (text_w + 2 * pad, text_h + 2 * pad);
        let tag = place_tag(
            r,
            (tag_w, tag_h),
            (img_w as i64, img_h as i64),
            &boxes[..n_boxes],
            own,
            &tags[..n_tags],
        );
        if n_tags < MAX_PLACED {
            tags[n_tags] = tag;
            n_tags += 1;
        }
        f(i, det, tag, parts);
    }
}

/// The rectangle (`[left, top, right, bottom)`, pixels) of each visible
/// detection's label tag on a `width` x `height` frame, as
/// [`draw_detections`] places them with `font`; `None` for a detection
/// that gets no tag. For tests and tools: it allocates.
pub fn tag_rects(
    width: u32,
    height: u32,
    dets: &[Detection],
    style: &AnnotateStyle,
    font: &Typeface,
) -> Vec<Option<[i64; 4]>> {
    let mut out = vec![None; dets.len()];
    layout_tags(width, height, dets, &[], style, font, |i, _, t, _| {
        out[i] = Some([t.x0, t.y0, t.x1, t.y1]);
    });
    out
}

/// Draws every detection: a `style.line_width` outline in the label's
/// colour, then (after all outlines, so no outline covers a tag) a filled
/// tag with `"{label} {score}%"` in black or white, whichever reads better
/// on the tag colour. The tag goes above the box, else below, else inside
/// its top, whichever first hides no other box or tag ([`place_tag`]).
/// Boxes with NaN coordinates, zero or negative size, or entirely outside
/// the image are skipped; the rest are clipped to the image first, so the
/// part of a box reaching past the frame is outlined along the frame edge.
/// Outlines lie inside the box.
pub fn draw_detections(img: &mut RgbImage, dets: &[Detection], style: &AnnotateStyle) {
    draw_objects(img, dets, &[], style);
}

/// [`draw_detections`] with each tracked object's id in its tag
/// (`"dog #7 87%"`); `ids` runs beside `dets`, `None` for no id.
pub fn draw_objects(img: &mut RgbImage, dets: &[Detection], ids: &[Option<u64>], style: &AnnotateStyle) {
    draw_objects_with(img, dets, ids, style, typeface());
}

/// [`draw_detections`] with a given font; `None` draws the boxes only.
pub fn draw_detections_with(
    img: &mut RgbImage,
    dets: &[Detection],
    style: &AnnotateStyle,
    font: Option<&Typeface>,
) {
    draw_objects_with(img, dets, &[], style, font);
}

/// [`draw_objects`] with a given font; `None` draws the boxes only.
pub fn draw_objects_with(
    img: &mut RgbImage,
    dets: &[Detection],
    ids: &[Option<u64>],
    style: &AnnotateStyle,
    font: Option<&Typeface>,
) {
    let (img_w, img_h) = (img.width(), img.height());
    for det in dets {
        if let Some(r) = PixRect::from_bbox(&det.bbox, img_w, img_h) {
            draw_outline(img, r, style.line_width, label_color(&det.label));
        }
    }
    let Some(font) = font else {
        return;
    };
    let px = text_px(style);
    let pad = style.pad();
    layout_tags(img_w, img_h, dets, ids, style, font, |_, det, t, parts| {
        let bg = label_color(&det.label);
        fill_rect(img, t.x0, t.y0, t.x1, t.y1, bg);
        font.draw(img, t.x0 + pad, t.y0 + pad, &parts, px, text_color_on(bg));
    });
}

/// Panel colour and opacity (out of 255) for [`draw_text_block`].
const PANEL_COLOR: Rgb<u8> = Rgb([0, 0, 0]);
const PANEL_ALPHA: u8 = 160;

/// Draws `lines` in white on a semi-opaque dark panel whose top-left corner
/// is `(x, y)`, at `style.text_px`. The panel is sized to the widest line
/// plus padding and clipped to the image; nothing is drawn for no lines or
/// without a font.
pub fn draw_text_block(img: &mut RgbImage, x: i32, y: i32, lines: &[&str], style: &AnnotateStyle) {
    draw_text_block_with(img, x, y, lines, style, typeface());
}

/// [`draw_text_block`] with a given font (`None`: nothing is drawn).
pub fn draw_text_block_with(
    img: &mut RgbImage,
    x: i32,
    y: i32,
    lines: &[&str],
    style: &AnnotateStyle,
    font: Option<&Typeface>,
) {
    let Some(font) = font else {
        return;
    };
    if lines.is_empty() {
        return;
    }
    let px = text_px(style);
    let pad = 2 * style.pad();
    let line_h = font.line_height(px) as i64;
    let gap = style.pad();
    let line_step = line_h + gap;
    let max_w = lines
        .iter()
        .map(|l| font.text_width(&[l], px) as i64)
        .max()
        .unwrap_or(0);
    let n = lines.len() as i64;
    let panel_w = max_w + 2 * pad;
    // Lines are line_step apart; the last one needs no gap below.
    let panel_h = n
        .saturating_mul(line_step)
        .saturating_sub(gap)
        .saturating_add(2 * pad);
    let (x, y) = (x as i64, y as i64);
    blend_rect(
        img,
        x,
        y,
        x + panel_w,
        y.saturating_add(panel_h),
        PANEL_COLOR,
        PANEL_ALPHA,
    );
    let img_h = img.height() as i64;
    let tx = x.saturating_add(pad);
    for (i, line) in lines.iter().enumerate() {
        let ly = (i as i64).saturating_mul(line_step).saturating_add(y + pad);
        if ly >= img_h {
            break;
        }
        if ly + line_step > 0 {
            font.draw(img, tx, ly, &[line], px, palette::WHITE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BG: Rgb<u8> = Rgb([40, 40, 40]);

    fn det(label: &str, score: f32, left: f32, top: f32, right: f32, bottom: f32) -> Detection {
        Detection {
            label: label.to_string(),
            class_id: 0,
            score,
            bbox: BBox {
                left,
                top,
                right,
                bottom,
            },
        }
    }

    fn canvas(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, BG)
    }

    #[test]
    fn style_defaults_and_size_helper() {
        let d = AnnotateStyle::default();
        assert_eq!((d.line_width, d.text_px, d.show_score), (2, 16, true));
        assert_eq!(AnnotateStyle::for_size(640, 480), d);
        let s = AnnotateStyle::for_size(320, 240);
        assert_eq!((s.line_width, s.text_px), (1, 10));
        let s = AnnotateStyle::for_size(1920, 1080);
        assert_eq!((s.line_width, s.text_px), (4, 36));
        let s = AnnotateStyle::for_size(0, 0);
        assert_eq!((s.line_width, s.text_px), (1, 10));
        // Portrait frames are judged by their short side too.
        assert_eq!(AnnotateStyle::for_size(480, 640), d);
    }

    #[test]
    fn score_suffix_formats_percentages() {
        let s = |v: f32| {
            let (b, n) = score_suffix(v);
            String::from_utf8(b[..n].to_vec()).unwrap()
        };
        assert_eq!(s(0.953), " 95%");
        assert_eq!(s(0.0), " 0%");
        assert_eq!(s(0.05), " 5%");
        assert_eq!(s(1.0), " 100%");
        assert_eq!(s(7.0), " 100%");
        assert_eq!(s(-1.0), " 0%");
        assert_eq!(s(f32::NAN), "");
        assert_eq!(s(f32::INFINITY), "");
    }

    #[test]
    fn box_outline_is_drawn_and_interior_untouched() {
        let mut img = canvas(200, 160);
        let style = AnnotateStyle {
            line_width: 3,
            text_px: 10,
            show_score: true,
        };
        draw_detections(&mut img, &[det("dog", 0.95, 40.0, 60.0, 140.0, 150.0)], &style);
        let c = label_color("dog");
        // Every side, at the outer edge and at the innermost line pixel.
        for (x, y) in [
            (90, 60),
            (90, 62),
            (90, 149),
            (90, 147),
            (40, 100),
            (42, 100),
            (139, 100),
            (137, 100),
        ] {
            assert_eq!(*img.get_pixel(x, y), c, "outline at {x},{y}");
        }
        // Just inside the outline, the centre, and just outside: untouched.
        for (x, y) in [
            (90, 63),
            (90, 146),
            (43, 100),
            (136, 100),
            (90, 105),
            (39, 100),
            (140, 100),
            (90, 150),
        ] {
            assert_eq!(*img.get_pixel(x, y), BG, "untouched at {x},{y}");
        }
        // The tag sits directly above the box, left-aligned with it.
        let tag_h = line_height(10) + 2;
        assert_eq!(*img.get_pixel(40, 60 - tag_h), c);
        assert_eq!(*img.get_pixel(40, 60 - tag_h - 1), BG);
        let tag_w = text_width("dog 95%", 10) + 2;
        assert_eq!(*img.get_pixel(40 + tag_w - 1, 59), c);
        assert_eq!(*img.get_pixel(40 + tag_w, 59), BG);
        // And contains text in the contrasting colour.
        let fg = text_color_on(c);
        let text_px = (40..40 + tag_w)
            .flat_map(|x| (60 - tag_h..60).map(move |y| (x, y)))
            .filter(|&(x, y)| *img.get_pixel(x, y) == fg)
            .count();
        assert!(text_px > 20, "only {text_px} text pixels");
    }

    #[test]
    fn label_tag_moves_inside_the_box_at_the_top_edge() {
        let style = AnnotateStyle {
            line_width: 2,
            text_px: 16,
            show_score: true,
        };
        let c = label_color("person");
        for top in [0.0, 5.0, -30.0] {
            let mut img = canvas(160, 120);
            draw_detections(&mut img, &[det("person", 0.5, 10.0, top, 150.0, 110.0)], &style);
            let tag_h = line_height(16) + 4;
            let top_px = (top as i64).max(0) as u32;
            // The tag's left column, from the box top down, is tag colour.
            for y in top_px..top_px + tag_h {
                assert_eq!(*img.get_pixel(10, y), c, "top {top}, y {y}");
                assert_eq!(*img.get_pixel(11, y), c, "top {top}, y {y}");
            }
            // Its text is inside the image, i.e. some pixels have the text colour.
            let fg = text_color_on(c);
            assert!(img.pixels().any(|p| *p == fg));
        }
    }

    fn rect(x0: i64, y0: i64, x1: i64, y1: i64) -> PixRect {
        PixRect { x0, y0, x1, y1 }
    }

    #[test]
    fn place_tag_alone_follows_the_frame() {
        let r = rect(50, 40, 90, 80);
        let place = |r, w, h| {
            let t = place_tag(r, (w, h), (200, 100), &[r], Some(0), &[]);
            (t.x0, t.y0, t.x1 - t.x0, t.y1 - t.y0)
        };
        assert_eq!(place(r, 30, 12), (50, 28, 30, 12)); // above
        assert_eq!(place(r, 170, 12), (30, 28, 170, 12)); // pushed left
        assert_eq!(place(r, 300, 12), (0, 28, 300, 12)); // wider than image
                                                         // No room above: below; no room below either: inside the top.
        assert_eq!(place(rect(0, 5, 10, 60), 30, 12), (0, 60, 30, 12));
        assert_eq!(place(rect(0, 5, 10, 95), 30, 12), (0, 5, 30, 12));
        // Taller than any place in the frame: at the top of the box, clamped.
        assert_eq!(place(rect(0, 95, 10, 120), 30, 120), (0, 0, 30, 120));
        assert_eq!(place(rect(-20, -20, 10, 10), 30, 12), (0, 10, 30, 12));
    }

    #[test]
    fn place_tag_avoids_other_boxes_and_tags() {
        let (w, h) = (300, 200);
        let me = rect(100, 50, 160, 150);
        // A box just above: the tag goes below mine.
        let above = rect(90, 20, 200, 45);
        let t = place_tag(me, (40, 12), (w, h), &[above, me], Some(1), &[]);
        assert_eq!((t.x0, t.y0), (100, 150));
        // Boxes above and below: inside the top of mine.
        let below = rect(80, 155, 170, 190);
        let t = place_tag(me, (40, 12), (w, h), &[above, me, below], Some(1), &[]);
        assert_eq!((t.x0, t.y0), (100, 50));
        // An earlier tag counts like a box.
        let tag = rect(95, 30, 140, 45);
        let t = place_tag(me, (40, 12), (w, h), &[me], Some(0), &[tag]);
        assert_eq!((t.x0, t.y0), (100, 150));
        // Everything taken: the least covered place (inside: only a sliver
        // of the box that reaches into mine).
        let inside_corner = rect(130, 55, 170, 70);
        let t = place_tag(
            me,
            (40, 12),
            (w, h),
            &[above, me, below, inside_corner],
            Some(1),
            &[],
        );
        assert_eq!((t.x0, t.y0), (100, 50), "{t:?}");
        // My own box never counts; a box that only touches does not either.
        let touching = rect(100, 0, 200, 38);
        let t = place_tag(me, (40, 12), (w, h), &[me, touching], Some(0), &[]);
        assert_eq!((t.x0, t.y0), (100, 38));
        // Nested in a big box: every place overlaps it equally; above wins.
        let big = rect(0, 0, 300, 200);
        let t = place_tag(me, (40, 12), (w, h), &[big, me], Some(1), &[]);
        assert_eq!((t.x0, t.y0), (100, 38));
    }

    #[test]
    fn drawn_tags_do_not_cover_a_neighbour() {
        let font = typeface().expect("fonts-dejavu-core (scripts/deps)");
        let style = AnnotateStyle::default();
        // A person, and a bicycle's box just above where the person's tag
        // would go: that tag moves below the person.
        let dets = [
            det("person", 0.9, 100.0, 120.0, 200.0, 300.0),
            det("bicycle", 0.8, 150.0, 95.0, 260.0, 118.0),
        ];
        let tags = tag_rects(640, 480, &dets, &style, font);
        let t0 = tags[0].expect("a tag");
        assert_eq!((t0[0], t0[1]), (100, 300), "{tags:?}");
        let mut img = canvas(640, 480);
        draw_detections(&mut img, &dets, &style);
        let c = label_color("person");
        assert_eq!(*img.get_pixel(100, 300), c);
        assert_eq!(*img.get_pixel(101, t0[3] as u32 - 1), c);
        // The bicycle's outline is intact where the tag would have been.
        let b = label_color("bicycle");
        assert_ne!(b, c);
        for x in 150..200 {
            assert_eq!(*img.get_pixel(x, 117), b, "x {x}");
        }
        // Boxes that are skipped get no tag; empty text neither.
        let more = [
            det("nan", 0.9, f32::NAN, 0.0, 1.0, 1.0),
            det("", f32::NAN, 10.0, 10.0, 50.0, 50.0),
        ];
        assert_eq!(tag_rects(640, 480, &more, &style, font), vec![None, None]);
    }

    #[test]
    fn degenerate_boxes_are_skipped_and_nothing_panics() {
        let style = AnnotateStyle::default();
        let n = f32::NAN;
        let inf = f32::INFINITY;
        let skipped = [
            det("nan", 0.9, n, 10.0, 50.0, 50.0),
            det("nan", 0.9, 10.0, 10.0, 50.0, n),
            det("zero", 0.9, 20.0, 20.0, 20.0, 40.0),
            det("zero", 0.9, 20.0, 20.0, 40.0, 20.0),
            det("inverted", 0.9, 50.0, 50.0, 10.0, 10.0),
            det("left of", 0.9, -500.0, 10.0, -100.0, 50.0),
            det("below", 0.9, 10.0, 1e9, 50.0, 2e9),
            det("at right edge", 0.9, 64.0, 10.0, 90.0, 20.0),
        ];
        let mut img = canvas(64, 48);
        draw_detections(&mut img, &skipped, &style);
        assert!(img.pixels().all(|p| *p == BG), "a skipped box was drawn");

        let clipped = [
            det("huge", 0.9, -1e30, -1e30, 1e30, 1e30),
            det("inf", f32::NAN, -inf, -inf, inf, inf),
            det("neg", -3.0, -50.0, -50.0, 5.0, 5.0),
            det("max", 2.0, f32::MIN, 3.0, f32::MAX, 4.0),
            det("tiny", 0.5, 30.4, 30.4, 30.6, 30.6),
            det("", 0.5, 1.0, 1.0, 3.0, 3.0),
            det("日本語 ünïcode \u{1F600}", 0.5, 10.0, 10.0, 40.0, 40.0),
            det(&"very long label ".repeat(100), 0.5, 10.0, 10.0, 40.0, 40.0),
        ];
        for style in [
            style,
            AnnotateStyle {
                line_width: 0,
                text_px: 0,
                show_score: false,
            },
            AnnotateStyle {
                line_width: u32::MAX,
                text_px: u32::MAX,
                show_score: true,
            },
            AnnotateStyle {
                line_width: 1000,
                text_px: 50,
                show_score: true,
            },
        ] {
            for size in [(64, 48), (1, 1), (0, 0), (0, 10), (3, 200)] {
                let mut img = canvas(size.0, size.1);
                draw_detections(&mut img, &clipped, &style);
                draw_detections(&mut img, &skipped, &style);
            }
        }
        // A box covering the whole image still shows its outline.
        let mut img = canvas(64, 48);
        draw_detections(
            &mut img,
            &clipped[..1],
            &AnnotateStyle {
                show_score: false,
                ..style
            },
        );
        assert_eq!(*img.get_pixel(63, 47), label_color("huge"));
    }

    #[test]
    fn without_a_font_boxes_are_drawn_without_tags() {
        let style = AnnotateStyle::default();
        let d = [det("dog", 0.95, 40.0, 60.0, 140.0, 150.0)];
        let mut img = canvas(200, 160);
        draw_detections_with(&mut img, &d, &style, None);
        let c = label_color("dog");
        assert_eq!(*img.get_pixel(90, 60), c);
        // Nothing above the box: no tag.
        assert!((0..60).all(|y| (0..200).all(|x| *img.get_pixel(x, y) == BG)));
        draw_text_block_with(&mut img, 0, 0, &["FPS 30"], &style, None);
        assert!((0..60).all(|y| (0..200).all(|x| *img.get_pixel(x, y) == BG)));
    }

    #[test]
    fn text_block_darkens_a_panel_and_writes_white_text() {
        let mut img = RgbImage::from_pixel(120, 80, Rgb([200, 200, 200]));
        let style = AnnotateStyle {
            line_width: 1,
            text_px: 12,
            show_score: true,
        };
        draw_text_block(&mut img, 10, 5, &["FPS 30.0", "lat 12 ms"], &style);
        // pad = 2 * max(12 / 8, 1), lines line_height apart plus a 1 px gap.
        let pad = 2;
        let w = text_width("lat 12 ms", 12) + 2 * pad;
        let h = 2 * line_height(12) + 1 + 2 * pad;
        let (x0, y0) = (10, 5);
        // 200 blended towards black by 160/255.
        let panel = ((200 * (255 - 160) + 127) / 255) as u8;
        let (mut dark, mut white, mut edge) = (0, 0, 0);
        for (x, y, p) in img.enumerate_pixels() {
            let inside = (x0..x0 + w).contains(&x) && (y0..y0 + h).contains(&y);
            if !inside {
                assert_eq!(p.0, [200, 200, 200], "outside panel at {x},{y}");
            } else if p.0 == [255, 255, 255] {
                white += 1;
            } else if p.0 == [panel; 3] {
                // Semi-opaque: darker than before but not black.
                dark += 1;
            } else {
                // Anti-aliased glyph edges: between the panel and white.
                assert!(p.0[0] > panel && p.0[0] == p.0[2], "{p:?} at {x},{y}");
                edge += 1;
            }
        }
        assert!(white > 40 && edge > 40 && dark > white, "{white} {edge} {dark}");
        // Off-image and degenerate inputs.
        for (x, y) in [
            (-1000, -1000),
            (i32::MAX, 0),
            (i32::MIN, i32::MIN),
            (100, 70),
            (-5, 70),
        ] {
            draw_text_block(&mut img, x, y, &["a", "", "日本"], &style);
        }
        let huge = AnnotateStyle {
            text_px: u32::MAX,
            ..style
        };
        draw_text_block(&mut img, 0, 0, &["x"; 100], &huge);
        draw_text_block(&mut img, 0, 0, &[], &style);
        draw_text_block(&mut RgbImage::new(0, 0), 0, 0, &["x"], &style);
    }

    /// Writes `edgevision_annotate_demo.png` to the temp dir for a visual check.
    #[test]
    fn demo_png() {
        let (w, h) = (640, 480);
        // A background with dark, light and coloured regions.
        let mut img = RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 255 / w) as u8;
            if y < h / 2 {
                Rgb([v, v, v])
            } else {
                Rgb([v, (y * 255 / h) as u8, 255 - v])
            }
        });
        let dets = [
            det("dog", 0.953, 30.0, 40.0, 220.0, 200.0),
            det("cat", 0.81, 250.0, 0.0, 400.0, 150.0),
            det("person", 0.67, 420.0, 60.0, 630.0, 460.0),
            det("traffic light", 0.42, 560.0, 250.0, 660.0, 300.0),
            det("car", 1.0, 40.0, 260.0, 300.0, 420.0),
            det("bicycle", 0.05, 310.0, 300.0, 400.0, 470.0),
        ];
        let style = AnnotateStyle::for_size(w, h);
        draw_detections(&mut img, &dets, &style);
        draw_text_block(
            &mut img,
            240,
            180,
            &["FPS 29.97", "infer 12.3 ms", "top-1: tabby cat 0.81"],
            &style,
        );
        let all: String = (0x20u8..=0x7e).map(char::from).collect();
        let (a, b) = all.split_at(48);
        draw_text_block(&mut img, 0, 420, &[a, b], &AnnotateStyle { text_px: 12, ..style });
        let dir = std::env::temp_dir();
        let path = dir.join("edgevision_annotate_demo.png");
        img.save(&path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        eprintln!("wrote {}", path.display());
    }
}

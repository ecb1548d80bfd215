//! Anti-aliased text from a TrueType font, drawn onto `RgbImage`s: the
//! annotations' labels and panels, and the test pattern's caption.
//!
//! The font is read once per process ([`use_font`], or the first draw picks
//! [`DEFAULT_FONTS`]). Glyph coverage is rasterized once per pixel size and
//! kept ([`Typeface`]), so drawing a label is a table look-up and a blend:
//! no outline work and no allocation per frame once its glyphs have been
//! seen. Without a font, text is skipped (one warning) and boxes still drawn.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ab_glyph::{Font, FontArc, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// Where the font is looked for when none is configured: Debian's
/// `fonts-dejavu-core`, which the package depends on and Raspberry Pi OS
/// ships. Bold first: it stays legible on small, coloured tags.
pub const DEFAULT_FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];

/// Pixel sizes are clamped to this range: beyond it, glyph bitmaps would
/// only cost memory.
pub const MIN_PX: u32 = 4;
pub const MAX_PX: u32 = 512;

/// At most this many sizes are cached (the least recently used goes).
const MAX_SIZES: usize = 8;
/// A size's glyph bitmaps are dropped and rebuilt past this many bytes, so
/// odd labels cannot grow the cache without bound.
const MAX_COVERAGE_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error("cannot read font file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a TrueType or OpenType font: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "no font found (tried {tried}); install the Debian package fonts-dejavu-core or set stream.font"
    )]
    NotFound { tried: String },
    #[error("the font is already {current}; using {wanted} takes a restart")]
    AlreadySet { current: PathBuf, wanted: PathBuf },
}

/// One rasterized glyph: a `w` x `h` coverage bitmap at `offset` in its
/// size's arena, placed `left` px right of the pen and `top` px below the
/// top of the line.
#[derive(Debug, Clone, Copy)]
struct Glyph {
    w: u32,
    h: u32,
    left: i32,
    top: i32,
    advance: f32,
    offset: usize,
}

/// The glyphs of one pixel size, rasterized on first use.
struct SizedGlyphs {
    px: u32,
    /// Baseline distance from the top of the line, in whole pixels.
    ascent: i32,
    line_height: u32,
    /// Printable ASCII, indexed by `c - ' '`.
    ascii: [Option<Glyph>; 95],
    other: HashMap<char, Glyph>,
    coverage: Vec<u8>,
    last_used: u64,
}

/// A font and its glyph cache; shared by every thread that draws.
pub struct Typeface {
    font: FontArc,
    path: PathBuf,
    cache: Mutex<Cache>,
}

struct Cache {
    sizes: Vec<SizedGlyphs>,
    clock: u64,
}

impl std::fmt::Debug for Typeface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typeface").field("path", &self.path).finish()
    }
}

fn clamp_px(px: u32) -> u32 {
    px.clamp(MIN_PX, MAX_PX)
}

impl Typeface {
    /// Reads a `.ttf`/`.otf` file (the first face of a collection).
    pub fn load(path: &Path) -> Result<Self, FontError> {
        let data = std::fs::read(path).map_err(|source| FontError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let font = FontArc::try_from_vec(data).map_err(|e| FontError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            font,
            path: path.to_path_buf(),
            cache: Mutex::new(Cache {
                sizes: Vec::new(),
                clock: 0,
            }),
        })
    }

    /// The first of [`DEFAULT_FONTS`] that loads.
    pub fn load_default() -> Result<Self, FontError> {
        let mut tried = Vec::new();
        for p in DEFAULT_FONTS {
            match Self::load(Path::new(p)) {
                Ok(t) => return Ok(t),
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(FontError::NotFound {
            tried: tried.join("; "),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the glyphs of size `px` (created if needed).
    fn with_size<R>(&self, px: u32, f: impl FnOnce(&FontArc, &mut SizedGlyphs) -> R) -> R {
        let px = clamp_px(px);
        // A panic elsewhere while the lock was held leaves a usable cache.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.clock += 1;
        let now = cache.clock;
        let idx = match cache.sizes.iter().position(|s| s.px == px) {
            Some(i) => i,
            None => {
                if cache.sizes.len() >= MAX_SIZES {
                    let lru = (0..cache.sizes.len())
                        .min_by_key(|&i| cache.sizes[i].last_used)
                        .unwrap_or(0);
                    cache.sizes.swap_remove(lru);
                }
                cache.sizes.push(SizedGlyphs::new(&self.font, px));
                cache.sizes.len() - 1
            }
        };
        let sized = &mut cache.sizes[idx];
        sized.last_used = now;
        f(&self.font, sized)
    }

    /// Height of a line of text at `px`: ascender to descender, in pixels.
    pub fn line_height(&self, px: u32) -> u32 {
        self.with_size(px, |_, s| s.line_height)
    }

    /// Width in pixels of `parts` written one after the other at `px`.
    pub fn text_width(&self, parts: &[&str], px: u32) -> u32 {
        self.with_size(px, |font, s| {
            let mut pen = 0.0f32;
            for c in parts.iter().flat_map(|p| p.chars()) {
                pen += s.glyph(font, c).advance;
            }
            pen.ceil().max(0.0) as u32
        })
    }

    /// Draws `parts` one after the other in `color`, the top of the line at
    /// `y` and the pen starting at `x`, clipped to the image. Returns the
    /// pen's final x.
    pub fn draw(&self, img: &mut RgbImage, x: i64, y: i64, parts: &[&str], px: u32, color: Rgb<u8>) -> i64 {
        let (img_w, img_h) = (img.width() as i64, img.height() as i64);
        let buf: &mut [u8] = img.as_mut();
        self.with_size(px, |font, s| {
            let mut pen = x as f64;
            for c in parts.iter().flat_map(|p| p.chars()) {
                let g = s.glyph(font, c);
                let gx = (pen.round() as i64).saturating_add(g.left as i64);
                let gy = y.saturating_add(g.top as i64);
                blend_glyph(buf, img_w, img_h, gx, gy, &g, &s.coverage, color.0);
                pen += g.advance as f64;
                if pen.round() as i64 >= img_w {
                    break;
                }
            }
            pen.round() as i64
        })
    }
}

impl SizedGlyphs {
    fn new(font: &FontArc, px: u32) -> Self {
        let scaled = font.as_scaled(PxScale::from(px as f32));
        let ascent = scaled.ascent().round() as i32;
        let descent = scaled.descent().round() as i32; // negative
        Self {
            px,
            ascent,
            line_height: (ascent - descent).max(1) as u32,
            ascii: [None; 95],
            other: HashMap::new(),
            coverage: Vec::new(),
            last_used: 0,
        }
    }

    /// The glyph for `c`, rasterized on first use. Characters the font
    /// lacks get its "missing" glyph.
    fn glyph(&mut self, font: &FontArc, c: char) -> Glyph {
        let ascii = (c as u32).wrapping_sub(0x20);
        if ascii < 95 {
            if let Some(g) = self.ascii[ascii as usize] {
                return g;
            }
        } else if let Some(g) = self.other.get(&c) {
            return *g;
        }
        if self.coverage.len() > MAX_COVERAGE_BYTES {
            self.ascii = [None; 95];
            self.other.clear();
            self.coverage.clear();
        }
        let g = self.rasterize(font, c);
        if ascii < 95 {
            self.ascii[ascii as usize] = Some(g);
        } else {
            self.other.insert(c, g);
        }
        g
    }

    fn rasterize(&mut self, font: &FontArc, c: char) -> Glyph {
        let scale = PxScale::from(self.px as f32);
        let scaled = font.as_scaled(scale);
        let id = font.glyph_id(c);
        let advance = scaled.h_advance(id);
        let offset = self.coverage.len();
        let glyph = id.with_scale_and_position(scale, ab_glyph::point(0.0, 0.0));
        let Some(outline) = font.outline_glyph(glyph) else {
            // Blank (a space) or no outline: advance only.
            return Glyph {
                w: 0,
                h: 0,
                left: 0,
                top: 0,
                advance,
                offset,
            };
        };
        let b = outline.px_bounds();
        let (w, h) = (b.width().max(0.0) as u32, b.height().max(0.0) as u32);
        self.coverage.resize(offset + (w * h) as usize, 0);
        let cov = &mut self.coverage[offset..];
        outline.draw(|x, y, a| {
            if x < w && y < h {
                cov[(y * w + x) as usize] = (a.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        });
        Glyph {
            w,
            h,
            left: b.min.x as i32,
            top: self.ascent + b.min.y as i32,
            advance,
            offset,
        }
    }
}

/// Blends glyph `g`'s coverage, its top-left at `(gx, gy)`, into an RGB8
/// buffer of `img_w` x `img_h`, clipped.
#[allow(clippy::too_many_arguments)]
fn blend_glyph(
    buf: &mut [u8],
    img_w: i64,
    img_h: i64,
    gx: i64,
    gy: i64,
    g: &Glyph,
    coverage: &[u8],
    color: [u8; 3],
) {
    let (gw, gh) = (g.w as i64, g.h as i64);
    let (x0, y0) = (gx.max(0), gy.max(0));
    let (x1, y1) = (gx.saturating_add(gw).min(img_w), gy.saturating_add(gh).min(img_h));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let n = (x1 - x0) as usize;
    for y in y0..y1 {
        let c0 = g.offset + ((y - gy) * gw + (x0 - gx)) as usize;
        let d0 = ((y * img_w + x0) * 3) as usize;
        let (Some(crow), Some(drow)) = (coverage.get(c0..c0 + n), buf.get_mut(d0..d0 + 3 * n)) else {
            return;
        };
        for (p, &a) in drow.chunks_exact_mut(3).zip(crow) {
            match a {
                0 => {}
                255 => p.copy_from_slice(&color),
                _ => {
                    let a = a as u32;
                    for (v, &c) in p.iter_mut().zip(&color) {
                        *v = ((*v as u32 * (255 - a) + c as u32 * a + 127) / 255) as u8;
                    }
                }
            }
        }
    }
}

static GLOBAL: OnceLock<Option<Typeface>> = OnceLock::new();

/// Chooses the process's font: `path`, or the first of [`DEFAULT_FONTS`].
/// Call it before anything is drawn. A named file that cannot be loaded is
/// an error; a missing default font only a warning (text is then left out).
/// Once chosen, the font stays: another path is [`FontError::AlreadySet`].
pub fn use_font(path: Option<&Path>) -> Result<(), FontError> {
    let mut result = Ok(());
    let chosen = GLOBAL.get_or_init(|| match path {
        Some(p) => match Typeface::load(p) {
            Ok(t) => Some(t),
            Err(e) => {
                result = Err(e);
                None
            }
        },
        None => load_default_or_warn(),
    });
    result?;
    match (path, chosen) {
        (Some(p), Some(t)) if t.path() != p => Err(FontError::AlreadySet {
            current: t.path().to_path_buf(),
            wanted: p.to_path_buf(),
        }),
        // The default was looked for (and missed) before this call.
        (Some(p), None) => Err(FontError::AlreadySet {
            current: PathBuf::from("(none)"),
            wanted: p.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn load_default_or_warn() -> Option<Typeface> {
    match Typeface::load_default() {
        Ok(t) => {
            tracing::debug!("font: {}", t.path().display());
            Some(t)
        }
        Err(e) => {
            tracing::warn!("{e}; boxes are drawn without labels");
            None
        }
    }
}

/// The process's font (the default one unless [`use_font`] chose another);
/// `None` when there is none, after one warning.
pub fn typeface() -> Option<&'static Typeface> {
    GLOBAL.get_or_init(load_default_or_warn).as_ref()
}

/// Line height at `px` in the process's font (`px` without a font).
pub fn line_height(px: u32) -> u32 {
    typeface().map_or(clamp_px(px), |t| t.line_height(px))
}

/// Width of `text` at `px` in the process's font (0 without a font).
pub fn text_width(text: &str, px: u32) -> u32 {
    typeface().map_or(0, |t| t.text_width(&[text], px))
}

/// Draws `text` with the process's font, the top of the line at `y`;
/// returns the pen's final x (`x` without a font).
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, px: u32, color: Rgb<u8>) -> i64 {
    match typeface() {
        Some(t) => t.draw(img, x as i64, y as i64, &[text], px, color),
        None => x as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dejavu() -> Typeface {
        Typeface::load(Path::new(DEFAULT_FONTS[0])).expect("fonts-dejavu-core (scripts/deps)")
    }

    #[test]
    fn missing_and_bad_font_files_are_clear_errors() {
        let e = Typeface::load(Path::new("/nonexistent/font.ttf")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read font file /nonexistent/font.ttf"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.ttf");
        std::fs::write(&bad, b"not a font at all").unwrap();
        let e = Typeface::load(&bad).unwrap_err();
        assert!(matches!(e, FontError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("is not a TrueType or OpenType font"));
    }

    #[test]
    fn text_is_anti_aliased_and_scales_with_px() {
        let t = dejavu();
        let mut img = RgbImage::from_pixel(200, 40, Rgb([0, 0, 0]));
        let end = t.draw(&mut img, 5, 5, &["Hello 95%"], 20, Rgb([255, 255, 255]));
        let w = t.text_width(&["Hello 95%"], 20) as i64;
        assert!((end - 5 - w).abs() <= 1, "pen {end}, width {w}");
        let (mut full, mut partial) = (0, 0);
        for p in img.pixels() {
            match p.0[0] {
                0 => {}
                255 => full += 1,
                _ => partial += 1,
            }
            assert!(p.0[0] == p.0[1] && p.0[1] == p.0[2]);
        }
        assert!(full > 50 && partial > 50, "full {full}, partial {partial}");
        // Nothing lands left of the pen or below the line.
        let lh = t.line_height(20);
        assert!((18..=26).contains(&lh), "line height {lh}");
        for (x, y, p) in img.enumerate_pixels() {
            if x < 4 || y >= 5 + lh {
                assert_eq!(p.0, [0, 0, 0], "ink at {x},{y}");
            }
        }
        // Twice the size: about twice the width.
        let w40 = t.text_width(&["Hello 95%"], 40) as f32;
        assert!((w40 / w as f32 - 2.0).abs() < 0.1, "{w40} vs {w}");
        // Parts are one string.
        assert_eq!(t.text_width(&["Hel", "lo 95%"], 20) as i64, w);
    }

    #[test]
    fn glyphs_are_rasterized_once_per_size() {
        let t = dejavu();
        let mut img = RgbImage::new(100, 30);
        t.draw(&mut img, 0, 0, &["abc"], 16, Rgb([255, 0, 0]));
        let bytes = |t: &Typeface| t.cache.lock().unwrap().sizes[0].coverage.len();
        let after_first = bytes(&t);
        assert!(after_first > 0);
        for _ in 0..10 {
            t.draw(&mut img, 0, 0, &["cab", "ba"], 16, Rgb([255, 0, 0]));
        }
        assert_eq!(bytes(&t), after_first, "glyphs rasterized again");
        // Sizes are bounded.
        for px in 10..40 {
            t.line_height(px);
        }
        assert!(t.cache.lock().unwrap().sizes.len() <= MAX_SIZES);
    }

    #[test]
    fn odd_input_never_panics() {
        let t = dejavu();
        for (w, h) in [(0, 0), (1, 1), (3, 200), (64, 48)] {
            let mut img = RgbImage::new(w, h);
            for (x, y) in [(i64::MIN, i64::MIN), (i64::MAX, 0), (-30, -10), (10, 40), (0, 0)] {
                for px in [0, 1, 16, u32::MAX] {
                    t.draw(
                        &mut img,
                        x,
                        y,
                        &["日本語 ünïcode \u{1F600}\n\t", ""],
                        px,
                        Rgb([1, 2, 3]),
                    );
                }
            }
        }
        assert_eq!(t.text_width(&[], 16), 0);
        assert_eq!(t.text_width(&[""], 16), 0);
    }
}

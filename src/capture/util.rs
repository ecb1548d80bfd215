//! Helpers shared by the sources: frame pacing, letterboxed scaling into
//! reused buffers, and drawing on a [`Frame`] through `image`'s types.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::jpeg::JpegDecoder;
use super::Frame;

thread_local! {
    /// The flag that ends this thread's sleeps early ([`set_cancel`]).
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Makes [`sleep`] on this thread return as soon as `flag` is set (and the
/// thread unparked): a source paced at one frame a minute still stops at once.
pub fn set_cancel(flag: Arc<AtomicBool>) {
    CANCEL.with(|c| *c.borrow_mut() = Some(flag));
}

/// Whether this thread was asked to stop ([`set_cancel`]).
pub fn cancelled() -> bool {
    CANCEL.with(|c| c.borrow().as_ref().is_some_and(|f| f.load(Ordering::SeqCst)))
}

/// Sleeps for `d`, or until this thread's cancel flag is set and the
/// thread unparked.
pub fn sleep(d: Duration) {
    let end = Instant::now() + d;
    loop {
        if cancelled() {
            return;
        }
        let now = Instant::now();
        if now >= end {
            return;
        }
        // Wakes early on unpark (or spuriously): the loop checks again.
        std::thread::park_timeout(end - now);
    }
}

/// Sleeps so that frames come out at a steady rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Option<Duration>,
    next_due: Option<Instant>,
}

impl Pacer {
    /// `fps` <= 0 (or not finite) disables pacing.
    pub fn new(fps: f32) -> Self {
        let interval =
            (fps.is_finite() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps.max(0.001) as f64));
        Self {
            interval,
            next_due: None,
        }
    }

    /// The next frame is handed out at once (after opening or a reconnect).
    pub fn reset(&mut self) {
        self.next_due = None;
    }

    /// Blocks until the next frame is due. A caller that fell more than one
    /// interval behind is not made to catch up with a burst of frames.
    pub fn wait(&mut self) {
        let Some(iv) = self.interval else { return };
        let now = Instant::now();
        let due = match self.next_due {
            None => now,
            Some(due) if due > now => {
                sleep(due - now);
                due
            }
            Some(due) if now - due > iv => now,
            Some(due) => due,
        };
        self.next_due = Some(due + iv);
    }
}

/// The `w` x `h` rectangle (and its offset) that an `sw` x `sh` image scaled
/// to fit inside `dw` x `dh` with its aspect ratio kept covers, centred.
pub(crate) fn fit_rect(sw: u32, sh: u32, dw: u32, dh: u32) -> (u32, u32, u32, u32) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return (0, 0, dw, dh);
    }
    // Compare sw/sh with dw/dh without floating point.
    let (w, h) = if sw as u64 * dh as u64 >= sh as u64 * dw as u64 {
        // Wider than the destination: full width, bars top and bottom.
        let h = ((sh as u64 * dw as u64 + sw as u64 / 2) / sw as u64).clamp(1, dh as u64) as u32;
        (dw, h)
    } else {
        let w = ((sw as u64 * dh as u64 + sh as u64 / 2) / sh as u64).clamp(1, dw as u64) as u32;
        (w, dh)
    };
    ((dw - w) / 2, (dh - h) / 2, w, h)
}

/// The output size for a `sw` x `sh` source when `want_w` x `want_h` was
/// asked for: a 0 takes the source's size, or keeps its aspect ratio when
/// the other dimension is given.
pub(crate) fn target_size(want_w: u32, want_h: u32, sw: u32, sh: u32) -> (u32, u32) {
    let scaled = |a: u32, num: u32, den: u32| -> u32 {
        if den == 0 {
            a
        } else {
            ((a as u64 * num as u64 + den as u64 / 2) / den as u64).clamp(1, u32::MAX as u64) as u32
        }
    };
    match (want_w, want_h) {
        (0, 0) => (sw, sh),
        (w, 0) => (w, scaled(w, sh, sw)),
        (0, h) => (scaled(h, sw, sh), h),
        (w, h) => (w, h),
    }
}

/// The JPEG decoding state of a source whose frames arrive as JPEGs in
/// memory (MJPEG files, HTTP cameras, commands writing MJPEG): the decoder,
/// the resizer and the buffer they reuse from frame to frame.
pub(crate) struct JpegFrames {
    decoder: Option<JpegDecoder>,
    resizer: Resizer,
    decoded: Vec<u8>,
}

impl Default for JpegFrames {
    fn default() -> Self {
        JpegFrames {
            decoder: None,
            resizer: Resizer::new(),
            decoded: Vec::new(),
        }
    }
}

impl JpegFrames {
    /// Decodes `jpeg` into `frame` at the size `opts` asks for, or keeps
    /// it as it is with `opts.pass_jpeg` ([`decode_jpeg_frame`]).
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        frame: &mut Frame,
        opts: &super::SourceOptions,
    ) -> Result<(), super::CaptureError> {
        let dec = super::jpeg::get_or_create(&mut self.decoder)?;
        let (want_w, want_h) = (opts.width, opts.height);
        decode_jpeg_frame(
            dec,
            &mut self.resizer,
            jpeg,
            &mut self.decoded,
            frame,
            opts.pass_jpeg,
            |w, h| target_size(want_w, want_h, w, h),
        )
        .map_err(super::CaptureError::Corrupt)?;
        Ok(())
    }
}

/// Decodes a JPEG into `frame` at the size `size(jpeg_w, jpeg_h)` returns,
/// letterboxed when the aspect ratios differ. The decoder scales in the DCT
/// domain down to what covers that size; the rest is a resize. `decoded` is
/// scratch space that is swapped with the frame's buffer when no resize is
/// needed (no copy). With `pass_jpeg` (see [`super::SourceOptions`]) the
/// frame keeps the JPEG's bytes and gets only a decode that covers that
/// size instead. Returns the JPEG's own size.
pub(crate) fn decode_jpeg_frame(
    dec: &mut JpegDecoder,
    resizer: &mut Resizer,
    data: &[u8],
    decoded: &mut Vec<u8>,
    frame: &mut Frame,
    pass_jpeg: Option<(u32, u32)>,
    size: impl FnOnce(u32, u32) -> (u32, u32),
) -> Result<(u32, u32), String> {
    if let Some(need) = pass_jpeg {
        super::jpeg::decode_passing_jpeg(dec, data, need, frame)?;
        return Ok((frame.jpeg_width, frame.jpeg_height));
    }
    frame.jpeg.clear();
    let mut out = (0, 0);
    let d = dec.decode(data, decoded, |w, h| {
        out = size(w, h);
        let (_, _, fw, fh) = fit_rect(w, h, out.0, out.1);
        (fw, fh)
    })?;
    let (ow, oh) = out;
    frame.reshape(ow, oh);
    if (d.width, d.height) == (ow, oh) {
        std::mem::swap(&mut frame.rgb, decoded);
    } else {
        letterbox_rgb(
            resizer,
            decoded,
            d.width,
            d.height,
            &mut frame.rgb,
            ow,
            oh,
            FilterType::Bilinear,
        )?;
    }
    Ok((d.jpeg_width, d.jpeg_height))
}

/// A crop of the source, in source pixels (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Scales packed RGB8 `src` (`sw` x `sh`, optionally only `crop` of it) into
/// the `rect` = (x, y, w, h) part of packed RGB8 `dst` (`dw` x `dh`). Only
/// the rectangle is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_rgb_into(
    resizer: &mut Resizer,
    src: &[u8],
    sw: u32,
    sh: u32,
    crop: Option<Crop>,
    dst: &mut [u8],
    dw: u32,
    dh: u32,
    rect: (u32, u32, u32, u32),
    filter: FilterType,
) -> Result<(), String> {
    let src_img = ImageRef::new(sw, sh, src, PixelType::U8x3).map_err(|e| format!("source image: {e}"))?;
    let mut dst_img =
        Image::from_slice_u8(dw, dh, dst, PixelType::U8x3).map_err(|e| format!("destination image: {e}"))?;
    let (x, y, w, h) = rect;
    let mut view =
        CroppedImageMut::new(&mut dst_img, x, y, w, h).map_err(|e| format!("destination rectangle: {e}"))?;
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    if let Some(c) = crop {
        options = options.crop(c.left, c.top, c.width, c.height);
    }
    resizer
        .resize(&src_img, &mut view, &options)
        .map_err(|e| format!("resize: {e}"))
}

/// Fills the pixels of packed RGB8 `dst` (`dw` x `dh`) outside `rect` with black.
pub(crate) fn clear_outside(dst: &mut [u8], dw: u32, dh: u32, rect: (u32, u32, u32, u32)) {
    let (x, y, w, h) = rect;
    let stride = dw as usize * 3;
    for (row, line) in dst.chunks_exact_mut(stride).take(dh as usize).enumerate() {
        let row = row as u32;
        if row < y || row >= y + h {
            line.fill(0);
        } else {
            line[..x as usize * 3].fill(0);
            line[(x + w) as usize * 3..].fill(0);
        }
    }
}

/// Scales `src` to fit `dw` x `dh` keeping its aspect ratio, black bars
/// around it; a plain copy when the sizes match.
#[allow(clippy::too_many_arguments)]
pub(crate) fn letterbox_rgb(
    resizer: &mut Resizer,
    src: &[u8],
    sw: u32,
    sh: u32,
    dst: &mut [u8],
    dw: u32,
    dh: u32,
    filter: FilterType,
) -> Result<(), String> {
    let n = dw as usize * dh as usize * 3;
    if sw == dw && sh == dh && src.len() >= n && dst.len() >= n {
        dst[..n].copy_from_slice(&src[..n]);
        return Ok(());
    }
    let rect = fit_rect(sw, sh, dw, dh);
    clear_outside(dst, dw, dh, rect);
    resize_rgb_into(resizer, src, sw, sh, None, dst, dw, dh, rect, filter)
}

/// Runs `f` on the frame's pixels as an [`RgbImage`] without copying them.
/// The frame must already be shaped (`rgb.len() == width * height * 3`).
pub(crate) fn with_rgb_image<R>(frame: &mut Frame, f: impl FnOnce(&mut RgbImage) -> R) -> R {
    let buf = std::mem::take(&mut frame.rgb);
    let mut img = match RgbImage::from_raw(frame.width, frame.height, buf) {
        Some(img) => img,
        None => {
            // Not shaped: give it a correctly sized buffer (allocates once).
            RgbImage::new(frame.width, frame.height)
        }
    };
    let r = f(&mut img);
    frame.rgb = img.into_raw();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_rect_keeps_aspect() {
        assert_eq!(fit_rect(640, 480, 640, 480), (0, 0, 640, 480));
        assert_eq!(fit_rect(1280, 720, 640, 480), (0, 60, 640, 360));
        assert_eq!(fit_rect(480, 640, 640, 480), (140, 0, 360, 480));
        assert_eq!(fit_rect(100, 100, 640, 480), (80, 0, 480, 480));
        assert_eq!(fit_rect(10000, 1, 640, 480), (0, 239, 640, 1));
    }

    #[test]
    fn target_size_fills_in_zeros() {
        assert_eq!(target_size(0, 0, 800, 600), (800, 600));
        assert_eq!(target_size(640, 480, 800, 600), (640, 480));
        assert_eq!(target_size(400, 0, 800, 600), (400, 300));
        assert_eq!(target_size(0, 300, 800, 600), (400, 300));
    }

    #[test]
    fn letterbox_paints_bars_black() {
        let mut r = Resizer::new();
        let src = vec![200u8; 20 * 10 * 3];
        let mut dst = vec![7u8; 20 * 20 * 3];
        letterbox_rgb(&mut r, &src, 20, 10, &mut dst, 20, 20, FilterType::Bilinear).unwrap();
        assert!(dst[..20 * 5 * 3].iter().all(|&v| v == 0));
        assert!(dst[20 * 15 * 3..].iter().all(|&v| v == 0));
        assert!(dst[20 * 5 * 3..20 * 15 * 3].iter().all(|&v| v == 200));
    }

    #[test]
    fn pacer_paces() {
        let mut p = Pacer::new(50.0);
        let t = Instant::now();
        for _ in 0..6 {
            p.wait();
        }
        // First frame immediately, then 5 intervals of 20 ms.
        assert!(t.elapsed() >= Duration::from_millis(95), "{:?}", t.elapsed());
        let mut p = Pacer::new(0.0);
        let t = Instant::now();
        for _ in 0..100 {
            p.wait();
        }
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}

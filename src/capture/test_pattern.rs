//! `test:` — a synthetic moving pattern: colour bars, a grey ramp, a square
//! bouncing across the frame and a frame counter.

use std::time::Instant;

use image::Rgb;

use super::util::{with_rgb_image, Pacer};
use super::{CaptureError, Frame, Source, SourceOptions};

const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

/// The test-pattern source; never fails.
pub struct TestPatternSource {
    width: u32,
    height: u32,
    pacer: Pacer,
    counter: u64,
    is_open: bool,
}

impl TestPatternSource {
    /// `opts.width`/`height` of 0 mean 640x480; paced at `opts.fps` (0 = unpaced).
    pub fn new(opts: SourceOptions) -> Self {
        Self {
            width: if opts.width == 0 { 640 } else { opts.width },
            height: if opts.height == 0 { 480 } else { opts.height },
            pacer: Pacer::new(opts.fps),
            counter: 0,
            is_open: false,
        }
    }

    fn render(&self, frame: &mut Frame) {
        let (w, h) = (self.width as usize, self.height as usize);
        frame.reshape(self.width, self.height);
        let bars_h = h * 2 / 3;
        let stride = w * 3;
        // Colour bars on top, a horizontal grey ramp below.
        for (y, row) in frame.rgb.chunks_exact_mut(stride).enumerate() {
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let c = if y < bars_h {
                    BARS[(x * BARS.len() / w).min(BARS.len() - 1)]
                } else {
                    let g = (x * 255 / w.max(2).saturating_sub(1).max(1)).min(255) as u8;
                    [g, g, g]
                };
                px.copy_from_slice(&c);
            }
        }
        // A square bouncing diagonally; its colour cycles.
        let side = (w.min(h) / 6).max(1);
        let pos = |t: u64, span: usize| -> usize {
            if span == 0 {
                return 0;
            }
            let period = 2 * span as u64;
            let p = (t * 4) % period;
            (if p < span as u64 { p } else { period - p }) as usize
        };
        let sx = pos(self.counter, w.saturating_sub(side));
        let sy = pos(self.counter * 3 / 4, h.saturating_sub(side));
        let hue = (self.counter % 3) as usize;
        let mut color = [40u8, 40, 40];
        color[hue] = 250;
        for row in frame.rgb.chunks_exact_mut(stride).skip(sy).take(side) {
            for px in row.chunks_exact_mut(3).skip(sx).take(side) {
                px.copy_from_slice(&color);
            }
        }
        let px = (self.width.min(self.height) / 20).max(10);
        let text = format!("edgevision test {}", self.counter);
        let y = (bars_h as i32) + 4;
        with_rgb_image(frame, |img| {
            crate::text::draw_text(img, 8, y, &text, px, Rgb([255, 64, 64]));
        });
    }
}

impl Source for TestPatternSource {
    fn describe(&self) -> String {
        format!("test: {}x{}", self.width, self.height)
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.pacer.reset();
        self.is_open = true;
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if !self.is_open {
            return Err(CaptureError::Unavailable("test pattern not opened".into()));
        }
        self.pacer.wait();
        let start = Instant::now();
        self.render(frame);
        self.counter += 1;
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(())
    }

    fn close(&mut self) {
        self.is_open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn moving_pattern_of_the_right_size() {
        let mut src = TestPatternSource::new(SourceOptions {
            width: 0,
            height: 0,
            fps: 0.0,
            ..SourceOptions::default()
        });
        let mut frame = Frame::default();
        assert!(src.read(&mut frame).is_err(), "read before open");
        src.open().unwrap();
        src.read(&mut frame).unwrap();
        assert_eq!(
            (frame.width, frame.height, frame.rgb.len()),
            (640, 480, 640 * 480 * 3)
        );
        let first = frame.rgb.clone();
        src.read(&mut frame).unwrap();
        assert_ne!(first, frame.rgb, "the pattern moves");
        // Top-left is the first (white) bar, unless the square is there.
        src.read(&mut frame).unwrap();
        assert_eq!(&frame.rgb[640 * 3 * 300 + 3 * 630..][..3], &[16, 16, 16]);
    }

    #[test]
    fn paced_at_fps() {
        let mut src = TestPatternSource::new(SourceOptions {
            width: 64,
            height: 48,
            fps: 40.0,
            ..SourceOptions::default()
        });
        src.open().unwrap();
        let mut frame = Frame::default();
        let t = Instant::now();
        for _ in 0..5 {
            src.read(&mut frame).unwrap();
        }
        let el = t.elapsed();
        assert!(
            el >= Duration::from_millis(95) && el < Duration::from_secs(3),
            "{el:?}"
        );
    }
}

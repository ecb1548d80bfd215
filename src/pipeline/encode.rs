//! JPEG encoding with libjpeg-turbo (SIMD on x86 and on the Pi's NEON) into
//! a reused buffer. The pure-Rust encoders we tried took about 3x as long
//! per 640x480 frame, which was the pipeline's largest cost after inference.

use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

pub struct JpegEncoder {
    compressor: Compressor,
    buf: Vec<u8>,
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Result<Self, String> {
        let mut compressor = Compressor::new().map_err(|e| format!("libturbojpeg: {e}"))?;
        compressor.set_quality(quality.clamp(1, 100) as i32);
        // 4:2:0 chroma: the usual choice for camera streams, and the fastest.
        compressor.set_subsamp(Subsamp::Sub2x2);
        Ok(JpegEncoder {
            compressor,
            buf: Vec::new(),
        })
    }

    /// Changes the quality (1..100) from the next frame on.
    pub fn set_quality(&mut self, quality: u8) {
        self.compressor.set_quality(quality.clamp(1, 100) as i32);
    }

    /// Encodes packed RGB8; the bytes stay valid until the next call.
    pub fn encode(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<&[u8], String> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || w > 65535 || h > 65535 || rgb.len() < w * h * 3 {
            return Err(format!(
                "cannot encode a {width}x{height} frame from {} bytes",
                rgb.len()
            ));
        }
        let need = self.compressor.buf_len(w, h).map_err(|e| e.to_string())?;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        let image = Image {
            pixels: &rgb[..w * h * 3],
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        let n = self
            .compressor
            .compress_to_slice(image, &mut self.buf)
            .map_err(|e| e.to_string())?;
        Ok(&self.buf[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_decodable_jpeg_of_the_right_size() {
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let mut e = JpegEncoder::new(80).unwrap();
        let bytes = e.encode(&rgb, w, h).unwrap().to_vec();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
        assert!(e.encode(&rgb, 70000, 1).is_err());
        assert!(e.encode(&rgb[..10], w, h).is_err());
    }
}

//! JPEG encoding into a reused buffer.

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

pub struct JpegEncoder {
    quality: u8,
    buf: Vec<u8>,
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Self {
        JpegEncoder {
            quality: quality.clamp(1, 100),
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    /// Encodes packed RGB8; the bytes stay valid until the next call.
    pub fn encode(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<&[u8], String> {
        let (w, h) = (
            u16::try_from(width).map_err(|_| format!("frame width {width} too large for JPEG"))?,
            u16::try_from(height).map_err(|_| format!("frame height {height} too large for JPEG"))?,
        );
        self.buf.clear();
        let mut enc = Encoder::new(&mut self.buf, self.quality);
        // 4:2:0 chroma: the usual choice for camera streams, and the fastest.
        enc.set_sampling_factor(SamplingFactor::F_2_2);
        enc.encode(rgb, w, h, ColorType::Rgb).map_err(|e| e.to_string())?;
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_decodable_jpeg_of_the_right_size() {
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let mut e = JpegEncoder::new(80);
        let bytes = e.encode(&rgb, w, h).unwrap().to_vec();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
        assert!(e.encode(&rgb, 70000, 1).is_err());
    }
}

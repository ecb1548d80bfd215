//! JPEG decoding with libjpeg-turbo (SIMD: SSE2/AVX2 on x86_64, NEON on
//! aarch64) into reused buffers, scaled in the DCT domain when less than the
//! full picture is needed.
//!
//! Scaling by 1/2, 1/4 or 1/8 while decoding skips most of the inverse DCT
//! and colour conversion work: a 1920x1080 frame needed at 300x300 decodes
//! at 960x540 (see [`scale_for`] for what it saves).
//!
//! libjpeg-turbo reports recoverable problems (extraneous bytes before a
//! marker, a few corrupt coefficients: common in USB cameras' MJPEG) as
//! warnings and still delivers the whole picture; those frames are kept. A
//! JPEG that ends before its first scan is complete, or that is not a JPEG,
//! is an error.

use std::ffi::CStr;

use turbojpeg::raw;

/// A libjpeg-turbo decompressor; one per thread that decodes.
#[derive(Debug)]
pub struct JpegDecoder {
    handle: raw::tjhandle,
}

// The handle is only used through `&mut self`; libjpeg-turbo handles may move
// between threads, they must not be shared.
unsafe impl Send for JpegDecoder {}

impl Drop for JpegDecoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is not used again.
        unsafe {
            raw::tjDestroy(self.handle);
        }
    }
}

/// The size an `M/8` scale gives a dimension (libjpeg-turbo's `TJSCALED`).
fn scaled(dim: u32, m: u32) -> u32 {
    ((dim as u64 * m as u64).div_ceil(8)) as u32
}

/// The smallest scale, in eighths, at which a `w` x `h` JPEG still covers
/// `min_w` x `min_h`: 1/8, 1/4 or 1/2, else 8 (full size). Only those
/// have SIMD inverse DCTs; the others cost more than a full decode
/// (measured on a 640x480 frame, x86_64 AVX2: full 1.04 ms, 1/2 0.94,
/// 5/8 1.49, 7/8 2.25). Entropy decoding dominates at such sizes, so
/// scaling pays off mostly on larger frames.
pub fn scale_for(w: u32, h: u32, min_w: u32, min_h: u32) -> u32 {
    [1, 2, 4]
        .into_iter()
        .find(|&m| scaled(w, m) >= min_w && scaled(h, m) >= min_h)
        .unwrap_or(8)
}

impl JpegDecoder {
    pub fn new() -> Result<Self, String> {
        // SAFETY: no arguments; a null handle is checked.
        let handle = unsafe { raw::tjInitDecompress() };
        if handle.is_null() {
            return Err("libturbojpeg: cannot create a decompressor".into());
        }
        Ok(Self { handle })
    }

    /// A fresh handle after an error: libjpeg-turbo 2.1 leaves a handle
    /// whose header parse failed half-way through a marker, and the next
    /// (good) JPEG then fails with "Bogus marker length".
    fn reset(&mut self) {
        // SAFETY: no arguments; a null handle is checked.
        let fresh = unsafe { raw::tjInitDecompress() };
        if !fresh.is_null() {
            // SAFETY: the old handle came from tjInitDecompress and is replaced.
            unsafe {
                raw::tjDestroy(self.handle);
            }
            self.handle = fresh;
        }
    }

    fn error(&self) -> String {
        // SAFETY: the handle is valid; the string is copied out at once.
        unsafe { CStr::from_ptr(raw::tjGetErrorStr2(self.handle)) }
            .to_string_lossy()
            .into_owned()
    }

    /// The JPEG's width and height, from its header.
    pub fn size(&mut self, data: &[u8]) -> Result<(u32, u32), String> {
        let (mut w, mut h, mut sub, mut cs) = (0, 0, 0, 0);
        // SAFETY: the pointers are to live locals and to `data` of its length.
        let rc = unsafe {
            raw::tjDecompressHeader3(
                self.handle,
                data.as_ptr(),
                data.len() as libc::c_ulong,
                &mut w,
                &mut h,
                &mut sub,
                &mut cs,
            )
        };
        if rc != 0 {
            let e = format!("bad JPEG header: {}", self.error());
            self.reset();
            return Err(e);
        }
        if w <= 0 || h <= 0 {
            return Err(format!("bad JPEG header: size {w}x{h}"));
        }
        Ok((w as u32, h as u32))
    }

    /// Decodes `data` into packed RGB8 in `out` (its capacity reused).
    /// `need` gets the JPEG's size and returns the least the caller needs
    /// (0 x 0: full size); the smallest DCT scale that covers it is used.
    /// Returns the size of what was decoded and of the JPEG itself.
    pub fn decode(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        need: impl FnOnce(u32, u32) -> (u32, u32),
    ) -> Result<Decoded, String> {
        let (w, h) = self.size(data)?;
        let (min_w, min_h) = need(w, h);
        let m = if min_w == 0 && min_h == 0 {
            8
        } else {
            scale_for(w, h, min_w, min_h)
        };
        let (sw, sh) = (scaled(w, m), scaled(h, m));
        let n = sw as usize * sh as usize * 3;
        out.resize(n, 0);
        // SAFETY: `out` holds exactly sw * sh * 3 bytes, the size libjpeg-turbo
        // writes for this scale with pitch 0 (tightly packed RGB).
        let rc = unsafe {
            raw::tjDecompress2(
                self.handle,
                data.as_ptr(),
                data.len() as libc::c_ulong,
                out.as_mut_ptr(),
                sw as libc::c_int,
                0,
                sh as libc::c_int,
                raw::TJPF_TJPF_RGB as libc::c_int,
                0,
            )
        };
        if rc != 0 {
            // SAFETY: valid handle.
            let code = unsafe { raw::tjGetErrorCode(self.handle) };
            let msg = self.error();
            // A warning still delivered the whole picture: keep the frame.
            if code as u32 != raw::TJERR_TJERR_WARNING || msg.contains("Premature end") {
                self.reset();
                return Err(format!("bad JPEG data: {msg}"));
            }
        }
        Ok(Decoded {
            width: sw,
            height: sh,
            jpeg_width: w,
            jpeg_height: h,
        })
    }
}

/// The decoder in `slot`, created on first use (a source's constructor
/// cannot fail; its first read can).
pub(crate) fn get_or_create(slot: &mut Option<JpegDecoder>) -> Result<&mut JpegDecoder, super::CaptureError> {
    Ok(match slot {
        Some(d) => d,
        None => slot.insert(JpegDecoder::new().map_err(super::CaptureError::Fatal)?),
    })
}

/// `data` without the zero padding a V4L2 buffer may carry after the EOI
/// marker (what is forwarded to clients).
pub fn trim_padding(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &data[..end]
}

/// Decodes `data` for inference only: `frame.rgb` gets the smallest DCT
/// scale that covers `need`, `frame.jpeg` a copy of the bytes (padding
/// trimmed). Both buffers keep their capacity.
pub(super) fn decode_passing_jpeg(
    dec: &mut JpegDecoder,
    data: &[u8],
    need: (u32, u32),
    frame: &mut super::Frame,
) -> Result<(), String> {
    let data = trim_padding(data);
    let d = dec.decode(data, &mut frame.rgb, |_, _| need)?;
    frame.width = d.width;
    frame.height = d.height;
    frame.jpeg_width = d.jpeg_width;
    frame.jpeg_height = d.jpeg_height;
    frame.jpeg.clear();
    frame.jpeg.extend_from_slice(data);
    Ok(())
}

/// What [`JpegDecoder::decode`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub jpeg_width: u32,
    pub jpeg_height: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: u32, h: u32) -> Vec<u8> {
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            px.copy_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
        }
        let img = turbojpeg::Image {
            pixels: &rgb[..],
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(img, 90, turbojpeg::Subsamp::Sub2x2)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn scale_covers_what_is_needed() {
        assert_eq!(scale_for(640, 480, 300, 300), 8); // 1/2 is 240 high
        assert_eq!(scale_for(640, 480, 320, 240), 4);
        assert_eq!(scale_for(640, 480, 640, 480), 8);
        assert_eq!(scale_for(640, 480, 1000, 1000), 8);
        assert_eq!(scale_for(1920, 1080, 300, 300), 4); // 960x540
        assert_eq!(scale_for(2592, 1944, 300, 300), 2); // 648x486
        assert_eq!(scale_for(640, 480, 1, 1), 1);
    }

    #[test]
    fn decodes_full_and_scaled_into_the_same_buffer() {
        let jpeg = encode(64, 48);
        let mut d = JpegDecoder::new().unwrap();
        let mut out = Vec::new();
        let full = d.decode(&jpeg, &mut out, |_, _| (0, 0)).unwrap();
        assert_eq!((full.width, full.height), (64, 48));
        assert_eq!(out.len(), 64 * 48 * 3);
        // Top-left is dark red/green, bottom-right bright: the gradient survived.
        assert!(out[0] < 30 && out[1] < 30);
        let last = out.len() - 3;
        assert!(out[last] > 220 && out[last + 1] > 220, "{:?}", &out[last..]);
        let cap = out.capacity();
        let half = d.decode(&jpeg, &mut out, |_, _| (30, 20)).unwrap();
        assert_eq!((half.width, half.height, half.jpeg_width), (32, 24, 64));
        assert_eq!(out.len(), 32 * 24 * 3);
        assert_eq!(out.capacity(), cap, "the buffer is reused");
    }

    #[test]
    fn padding_after_the_end_is_ignored_and_garbage_is_an_error() {
        let mut jpeg = encode(32, 16);
        jpeg.extend_from_slice(&[0u8; 4096]);
        let mut d = JpegDecoder::new().unwrap();
        let mut out = Vec::new();
        assert_eq!(d.decode(&jpeg, &mut out, |_, _| (0, 0)).unwrap().width, 32);
        assert!(d.decode(b"not a jpeg at all", &mut out, |_, _| (0, 0)).is_err());
        let cut = encode(64, 48);
        let e = d
            .decode(&cut[..cut.len() / 2], &mut out, |_, _| (0, 0))
            .unwrap_err();
        assert!(e.contains("bad JPEG"), "{e}");
        assert!(d.decode(&[], &mut out, |_, _| (0, 0)).is_err());
        // A header broken mid-marker does not spoil the next good JPEG.
        let mut bad = encode(32, 16);
        bad[4..6].copy_from_slice(&[0xFF, 0xFF]);
        assert!(d.decode(&bad, &mut out, |_, _| (0, 0)).is_err());
        assert_eq!(d.decode(&jpeg, &mut out, |_, _| (0, 0)).unwrap().width, 32);
    }
}

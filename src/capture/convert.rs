//! Raw V4L2 pixel formats to packed RGB8.
//!
//! YUV formats (YUYV, NV12) use BT.601 limited range ("studio swing", what
//! webcams and `vivid` deliver) with 8-bit fixed-point integer math:
//!
//! ```text
//! C = Y - 16, D = U - 128, E = V - 128
//! R = (298 C + 409 E + 128) >> 8
//! G = (298 C - 100 D - 208 E + 128) >> 8
//! B = (298 C + 516 D + 128) >> 8            (each clamped to 0..=255)
//! ```
//!
//! GREY is taken as full-range luma (it is a plain greyscale format, as
//! monochrome sensors deliver it) and is replicated into R, G and B.
//!
//! Every converter takes the source row stride in bytes (`bytesperline`; 0 =
//! tightly packed), writes exactly `width * height * 3` bytes of `dst`, never
//! allocates, and returns an error instead of panicking when a buffer is too
//! short (a truncated frame from the driver).

/// Why a frame could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

/// Bytes a plane of `rows` rows of `row_bytes` each, `stride` apart, needs.
fn plane_len(rows: usize, row_bytes: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + row_bytes
    }
}

fn check(what: &str, have: usize, need: usize) -> Result<(), ConvertError> {
    if have < need {
        Err(ConvertError(format!("{what}: {have} bytes, need {need}")))
    } else {
        Ok(())
    }
}

/// Checks sizes and returns (row bytes of the source, stride, rgb bytes).
fn prepare(
    name: &str,
    src_len: usize,
    dst_len: usize,
    width: u32,
    height: u32,
    bytes_per_row: usize,
    stride: usize,
) -> Result<(usize, usize), ConvertError> {
    let stride = if stride == 0 { bytes_per_row } else { stride };
    if stride < bytes_per_row {
        return Err(ConvertError(format!(
            "{name}: stride {stride} is less than a row of {width} pixels ({bytes_per_row} bytes)"
        )));
    }
    let need = plane_len(height as usize, bytes_per_row, stride);
    check(&format!("{name} {width}x{height} frame"), src_len, need)?;
    check("RGB output buffer", dst_len, width as usize * height as usize * 3)?;
    Ok((bytes_per_row, stride))
}

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    (v >> 8).clamp(0, 255) as u8
}

/// Chroma terms of one U, V pair, shared by the pixels that use it.
#[inline(always)]
fn chroma(u: u8, v: u8) -> (i32, i32, i32) {
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    (409 * e + 128, -100 * d - 208 * e + 128, 516 * d + 128)
}

#[inline(always)]
fn yuv_px(y: u8, (rv, guv, bu): (i32, i32, i32), out: &mut [u8]) {
    let c = 298 * (y as i32 - 16);
    out[0] = clamp8(c + rv);
    out[1] = clamp8(c + guv);
    out[2] = clamp8(c + bu);
}

/// One BT.601 limited-range pixel; for tests and one-off use.
pub fn yuv_to_rgb_pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
    let mut px = [0u8; 3];
    yuv_px(y, chroma(u, v), &mut px);
    px
}

/// YUYV 4:2:2 (`Y0 U Y1 V` per pixel pair) to RGB.
pub fn yuyv_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let pairs = (width as usize).div_ceil(2);
    let (row_bytes, stride) = prepare("YUYV", src.len(), dst.len(), width, height, pairs * 4, stride)?;
    let w = width as usize;
    let out_row = w * 3;
    if w == 0 {
        return Ok(());
    }
    for (src_row, dst_row) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(out_row))
        .take(height as usize)
    {
        let src_row = &src_row[..row_bytes];
        let full = w / 2;
        for (s, d) in src_row
            .chunks_exact(4)
            .zip(dst_row.chunks_exact_mut(6))
            .take(full)
        {
            let ch = chroma(s[1], s[3]);
            yuv_px(s[0], ch, &mut d[0..3]);
            yuv_px(s[2], ch, &mut d[3..6]);
        }
        if w % 2 == 1 {
            let s = &src_row[full * 4..full * 4 + 4];
            yuv_px(s[0], chroma(s[1], s[3]), &mut dst_row[full * 6..full * 6 + 3]);
        }
    }
    Ok(())
}

/// NV12 4:2:0 (a Y plane, then one plane of interleaved U, V at half
/// resolution, both rows `stride` apart) to RGB.
pub fn nv12_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let w = width as usize;
    let h = height as usize;
    let chroma_w = w.div_ceil(2);
    let chroma_h = h.div_ceil(2);
    let stride_eff = if stride == 0 { w } else { stride };
    // The UV plane starts right after `height` rows of the Y plane.
    let uv_offset = h * stride_eff;
    let uv_len = plane_len(chroma_h, chroma_w * 2, stride_eff);
    let (_, stride) = prepare("NV12", src.len(), dst.len(), width, height, w, stride)?;
    check(
        &format!("NV12 {width}x{height} frame"),
        src.len(),
        uv_offset + uv_len,
    )?;
    if w == 0 {
        return Ok(());
    }
    let (y_plane, uv_plane) = src.split_at(uv_offset);
    let out_row = w * 3;
    for (row, dst_row) in dst.chunks_exact_mut(out_row).take(h).enumerate() {
        let y_row = &y_plane[row * stride..row * stride + w];
        let uv_start = (row / 2) * stride;
        let uv_row = &uv_plane[uv_start..uv_start + chroma_w * 2];
        let full = w / 2;
        for ((ys, uv), d) in y_row
            .chunks_exact(2)
            .zip(uv_row.chunks_exact(2))
            .zip(dst_row.chunks_exact_mut(6))
            .take(full)
        {
            let ch = chroma(uv[0], uv[1]);
            yuv_px(ys[0], ch, &mut d[0..3]);
            yuv_px(ys[1], ch, &mut d[3..6]);
        }
        if w % 2 == 1 {
            let ch = chroma(uv_row[full * 2], uv_row[full * 2 + 1]);
            yuv_px(y_row[w - 1], ch, &mut dst_row[full * 6..full * 6 + 3]);
        }
    }
    Ok(())
}

/// I420 (YUV 4:2:0 planar: a Y plane, then U, then V at half resolution)
/// to RGB. `y_stride` and `c_stride` are the row strides of the luma and
/// chroma planes (0 = tightly packed); each plane holds `height` (chroma:
/// `ceil(height / 2)`) rows of its stride, and the planes follow one
/// another. Padding at the ends of rows (rpicam-vid aligns rows to 64
/// bytes) is skipped.
pub fn i420_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    y_stride: usize,
    c_stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let w = width as usize;
    let h = height as usize;
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let ys = if y_stride == 0 { w } else { y_stride };
    let cs = if c_stride == 0 { cw } else { c_stride };
    if ys < w || cs < cw {
        return Err(ConvertError(format!(
            "I420: strides {ys}/{cs} are less than a row of {width} pixels"
        )));
    }
    let need = i420_frame_len(width, height, ys, cs);
    check(&format!("I420 {width}x{height} frame"), src.len(), need)?;
    check("RGB output buffer", dst.len(), w * h * 3)?;
    if w == 0 {
        return Ok(());
    }
    let (y_plane, rest) = src.split_at(ys * h);
    let (u_plane, v_plane) = rest.split_at(cs * ch);
    for (row, dst_row) in dst.chunks_exact_mut(w * 3).take(h).enumerate() {
        let y_row = &y_plane[row * ys..row * ys + w];
        let c0 = (row / 2) * cs;
        let (u_row, v_row) = (&u_plane[c0..c0 + cw], &v_plane[c0..c0 + cw]);
        // Two pixels share one chroma pair.
        let full = w / 2;
        for (((ys, &u), &v), d) in y_row
            .chunks_exact(2)
            .zip(u_row)
            .zip(v_row)
            .zip(dst_row.chunks_exact_mut(6))
            .take(full)
        {
            let c = chroma(u, v);
            yuv_px(ys[0], c, &mut d[0..3]);
            yuv_px(ys[1], c, &mut d[3..6]);
        }
        if w % 2 == 1 {
            let c = chroma(u_row[full], v_row[full]);
            yuv_px(y_row[w - 1], c, &mut dst_row[full * 6..full * 6 + 3]);
        }
    }
    Ok(())
}

/// Bytes of one I420 frame with these strides (see [`i420_to_rgb`]).
pub fn i420_frame_len(width: u32, height: u32, y_stride: usize, c_stride: usize) -> usize {
    let w = width as usize;
    let ys = if y_stride == 0 { w } else { y_stride };
    let cs = if c_stride == 0 { w.div_ceil(2) } else { c_stride };
    ys * height as usize + 2 * cs * (height as usize).div_ceil(2)
}

/// GREY (8-bit full-range luma) to RGB.
pub fn grey_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let w = width as usize;
    let (row_bytes, stride) = prepare("GREY", src.len(), dst.len(), width, height, w, stride)?;
    if w == 0 {
        return Ok(());
    }
    for (s, d) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(w * 3))
        .take(height as usize)
    {
        for (&g, px) in s[..row_bytes].iter().zip(d.chunks_exact_mut(3)) {
            px[0] = g;
            px[1] = g;
            px[2] = g;
        }
    }
    Ok(())
}

/// RGB24 (`RGB3`) to RGB: a copy that drops row padding.
pub fn rgb24_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let w = width as usize;
    let (row_bytes, stride) = prepare("RGB24", src.len(), dst.len(), width, height, w * 3, stride)?;
    if w == 0 {
        return Ok(());
    }
    if stride == row_bytes {
        let n = row_bytes * height as usize;
        dst[..n].copy_from_slice(&src[..n]);
        return Ok(());
    }
    for (s, d) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(row_bytes))
        .take(height as usize)
    {
        d.copy_from_slice(&s[..row_bytes]);
    }
    Ok(())
}

/// BGR24 (`BGR3`) to RGB.
pub fn bgr24_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let w = width as usize;
    let (row_bytes, stride) = prepare("BGR24", src.len(), dst.len(), width, height, w * 3, stride)?;
    if w == 0 {
        return Ok(());
    }
    for (s, d) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(row_bytes))
        .take(height as usize)
    {
        for (sp, dp) in s[..row_bytes].chunks_exact(3).zip(d.chunks_exact_mut(3)) {
            dp[0] = sp[2];
            dp[1] = sp[1];
            dp[2] = sp[0];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
        a.iter()
            .zip(b.iter())
            .all(|(&x, &y)| (x as i32 - y as i32).abs() <= tol)
    }

    /// BT.601 limited-range encoding of an RGB colour, in floating point,
    /// independent of the integer decoder under test.
    fn rgb_to_yuv(r: f32, g: f32, b: f32) -> (u8, u8, u8) {
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        (y.round() as u8, u.round() as u8, v.round() as u8)
    }

    #[test]
    fn known_yuv_values() {
        assert_eq!(yuv_to_rgb_pixel(235, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb_pixel(16, 128, 128), [0, 0, 0]);
        assert!(near(yuv_to_rgb_pixel(126, 128, 128), [128, 128, 128], 1));
        // Colours through the float encoder and back.
        for (rgb, name) in [
            ([255u8, 0, 0], "red"),
            ([0, 255, 0], "green"),
            ([0, 0, 255], "blue"),
            ([255, 255, 0], "yellow"),
            ([40, 90, 200], "blueish"),
        ] {
            let (y, u, v) = rgb_to_yuv(rgb[0] as f32, rgb[1] as f32, rgb[2] as f32);
            let got = yuv_to_rgb_pixel(y, u, v);
            assert!(
                near(got, rgb, 3),
                "{name}: yuv {y},{u},{v} -> {got:?}, want {rgb:?}"
            );
        }
        // Textbook pure red: Y=81 U=90 V=240.
        assert!(near(yuv_to_rgb_pixel(81, 90, 240), [255, 0, 0], 2));
        // Out-of-range inputs clamp rather than wrap.
        assert_eq!(yuv_to_rgb_pixel(255, 255, 255)[0], 255);
        assert_eq!(yuv_to_rgb_pixel(0, 0, 0)[0], 0);
    }

    #[test]
    fn yuyv_frame() {
        // 4x2: row 0 white, black; row 1 red, white. Rows padded to stride 12.
        let (ry, ru, rv) = rgb_to_yuv(255.0, 0.0, 0.0);
        let mut src = vec![0xEEu8; 12 * 2];
        src[..8].copy_from_slice(&[235, 128, 235, 128, 16, 128, 16, 128]);
        src[12..20].copy_from_slice(&[ry, ru, ry, rv, 235, 128, 235, 128]);
        let mut dst = vec![0u8; 4 * 2 * 3];
        yuyv_to_rgb(&src, 4, 2, 12, &mut dst).unwrap();
        let px = |i: usize| [dst[i * 3], dst[i * 3 + 1], dst[i * 3 + 2]];
        assert_eq!(px(0), [255, 255, 255]);
        assert_eq!(px(1), [255, 255, 255]);
        assert_eq!(px(2), [0, 0, 0]);
        assert_eq!(px(3), [0, 0, 0]);
        assert!(near(px(4), [255, 0, 0], 3), "{:?}", px(4));
        assert!(near(px(5), [255, 0, 0], 3));
        assert_eq!(px(6), [255, 255, 255]);
        // Too short a buffer is an error, not a panic.
        assert!(yuyv_to_rgb(&src[..19], 4, 2, 12, &mut dst).is_err());
        assert!(
            yuyv_to_rgb(&src[..20], 4, 2, 12, &mut dst).is_ok(),
            "the last row needs no padding"
        );
        assert!(yuyv_to_rgb(&src, 4, 2, 4, &mut dst).is_err());
        assert!(yuyv_to_rgb(&src, 4, 2, 12, &mut dst[..10]).is_err());
        // Odd width: the last pixel uses the first half of its macropixel.
        let mut dst3 = vec![0u8; 3 * 3];
        yuyv_to_rgb(&[235, 128, 235, 128, 16, 128, 99, 128], 3, 1, 0, &mut dst3).unwrap();
        assert_eq!(&dst3[6..9], &[0, 0, 0]);
    }

    #[test]
    fn nv12_frame() {
        // 4x2 Y plane, one 2x1 chroma row: left pair blue, right pair neutral.
        let (by, bu, bv) = rgb_to_yuv(0.0, 0.0, 255.0);
        let src = [
            by, by, 235, 235, // Y row 0
            by, by, 16, 16, // Y row 1
            bu, bv, 128, 128, // UV row
        ];
        let mut dst = vec![0u8; 4 * 2 * 3];
        nv12_to_rgb(&src, 4, 2, 0, &mut dst).unwrap();
        let px = |i: usize| [dst[i * 3], dst[i * 3 + 1], dst[i * 3 + 2]];
        for i in [0, 1, 4, 5] {
            assert!(near(px(i), [0, 0, 255], 3), "{i}: {:?}", px(i));
        }
        assert_eq!(px(2), [255, 255, 255]);
        assert_eq!(px(7), [0, 0, 0]);
        assert!(nv12_to_rgb(&src[..10], 4, 2, 0, &mut dst).is_err());
        // With a padded stride of 6.
        let mut padded = vec![0u8; 6 * 3];
        for r in 0..3 {
            padded[r * 6..r * 6 + 4].copy_from_slice(&src[r * 4..r * 4 + 4]);
        }
        let mut dst2 = vec![0u8; 4 * 2 * 3];
        nv12_to_rgb(&padded, 4, 2, 6, &mut dst2).unwrap();
        assert_eq!(dst, dst2);
    }

    #[test]
    fn grey_rgb_bgr_frames() {
        let mut dst = vec![0u8; 3 * 2 * 3];
        grey_to_rgb(&[0, 128, 255, 9, 10, 20, 30, 9], 3, 2, 4, &mut dst).unwrap();
        assert_eq!(
            dst,
            [0, 0, 0, 128, 128, 128, 255, 255, 255, 10, 10, 10, 20, 20, 20, 30, 30, 30]
        );

        let bgr = [255u8, 0, 0, 0, 0, 255, 1, 2, 3];
        let mut dst = vec![0u8; 9];
        bgr24_to_rgb(&bgr, 3, 1, 0, &mut dst).unwrap();
        assert_eq!(dst, [0, 0, 255, 255, 0, 0, 3, 2, 1]);

        let rgb = [1u8, 2, 3, 4, 5, 6, 0xAA, 7, 8, 9, 10, 11, 12, 0xAA];
        let mut dst = vec![0u8; 12];
        rgb24_to_rgb(&rgb, 2, 2, 7, &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(rgb24_to_rgb(&rgb, 2, 2, 5, &mut dst).is_err());
    }
}

//! Quantization arithmetic of the TFLite spec: symmetric int8 weights
//! (per channel or per tensor), int32 biases, asymmetric int8 activations.

/// Per-channel symmetric int8 weights in [-127, 127] along `dim` of
/// `shape`. `min_scale[c]` (if given) is a floor for channel c's scale.
pub fn symmetric(
    values: &[f32],
    shape: &[usize],
    dim: Option<usize>,
    min_scale: Option<&[f32]>,
) -> (Vec<i8>, Vec<f32>) {
    let (channels, inner) = match dim {
        Some(d) if d < shape.len() => (shape[d].max(1), shape[d + 1..].iter().product::<usize>().max(1)),
        _ => (1, values.len().max(1)),
    };
    let channel = |k: usize| if channels > 1 { (k / inner) % channels } else { 0 };
    let mut maxabs = vec![0f32; channels];
    for (k, v) in values.iter().enumerate() {
        let c = channel(k);
        maxabs[c] = maxabs[c].max(v.abs());
    }
    let scales: Vec<f32> = maxabs
        .iter()
        .enumerate()
        .map(|(c, m)| {
            let floor = min_scale.and_then(|s| s.get(c)).copied().unwrap_or(0.0);
            // A channel of zeros still needs a positive scale.
            (m / 127.0).max(floor).max(1e-12)
        })
        .collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(k, v)| (v / scales[channel(k)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// Bias bits of an int32 bias whose scale is in_scale * w_scale: the
/// floor on w_scale that keeps |bias / scale| <= 2^20, so a channel whose
/// weights are all (nearly) zero still adds its bias exactly instead of
/// saturating the int32 and losing it after the output rescale.
pub const BIAS_HEADROOM: f32 = (1u32 << 20) as f32;

pub fn weight_scale_floor(bias: &[f32], in_scale: f32) -> Vec<f32> {
    bias.iter()
        .map(|b| b.abs() / (in_scale * BIAS_HEADROOM))
        .collect()
}

/// The smallest weight scale whose output multiplier
/// (in_scale x w_scale / out_scale) stays at or above 2^-30.
pub fn multiplier_floor(in_scale: f32, out_scale: f32) -> f32 {
    out_scale * 2f32.powi(-30) / in_scale
}

/// int32 bias with per-channel scales.
pub fn bias_i32(bias: &[f32], scales: &[f32]) -> Vec<i32> {
    bias.iter()
        .enumerate()
        .map(|(c, b)| {
            let s = scales.get(c).or(scales.first()).copied().unwrap_or(1.0);
            (f64::from(*b) / f64::from(s))
                .round()
                .clamp(-(i32::MAX as f64), i32::MAX as f64) as i32
        })
        .collect()
}

/// Asymmetric int8 parameters (scale, zero point) covering [min, max]
/// and always 0.
pub fn asymmetric(min: f32, max: f32) -> (f32, i64) {
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-9);
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i64;
    (scale, zp)
}

pub fn quantize_i8(values: &[f32], scale: f32, zp: i64) -> Vec<i8> {
    values
        .iter()
        .map(|v| ((v / scale).round() + zp as f32).clamp(-128.0, 127.0) as i8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_scales_follow_each_channel() {
        // Shape [2, 3], channels along dim 0.
        let v = [1.0, -0.5, 0.25, 0.0, 0.0, 0.0];
        let (q, s) = symmetric(&v, &[2, 3], Some(0), None);
        assert_eq!(q[..3], [127, -64, 32]);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!(s[1] > 0.0);
        // Channels along the last dim (depthwise layout).
        let (q, s) = symmetric(&[2.0, 1.0, -1.0, 0.5], &[2, 2], Some(1), None);
        assert_eq!(q, vec![127, 127, -64, 64]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn dead_channel_keeps_its_bias() {
        let in_scale = 0.02;
        let bias = [3.5f32, -0.1];
        let floor = weight_scale_floor(&bias, in_scale);
        // Channel 0 all zero: scale from the bias, not ~1e-12.
        let (_, s) = symmetric(&[0.0, 0.0, 0.5, -0.5], &[2, 2], Some(0), Some(&floor));
        let bias_scales: Vec<f32> = s.iter().map(|w| w * in_scale).collect();
        let q = bias_i32(&bias, &bias_scales);
        assert!(q[0].abs() <= 1 << 20);
        assert!((q[0] as f32 * bias_scales[0] - 3.5).abs() < 1e-5);
        assert!((q[1] as f32 * bias_scales[1] + 0.1).abs() < 1e-3);
    }

    #[test]
    fn asymmetric_covers_zero_and_the_range() {
        let (s, zp) = asymmetric(-1.0, 1.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        assert!(zp == 0 || zp == -1);
        let (s, zp) = asymmetric(0.0, 6.0);
        assert_eq!(zp, -128);
        assert!((s - 6.0 / 255.0).abs() < 1e-7);
        let (_, zp) = asymmetric(2.0, 3.0);
        assert_eq!(zp, -128, "zero must be representable");
        assert_eq!(quantize_i8(&[0.0, 6.0, 100.0], s, -128), vec![-128, 127, 127]);
    }
}

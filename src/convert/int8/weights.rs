//! Constants of quantized ops: per-channel symmetric int8 weights, int32
//! biases at input x weight scale, and asymmetric int8 for the rest.

use super::plan::Params;
use crate::convert::quant;
use crate::tflite::schema::{BuiltinOperator as Op, QuantizationParametersT, TensorType};

/// A quantized constant: its type, data and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantConst {
    pub type_: TensorType,
    pub data: Vec<u8>,
    pub quantization: Option<Box<QuantizationParametersT>>,
}

pub fn qparams(scale: Vec<f32>, zp: Vec<i64>, dim: i32) -> Option<Box<QuantizationParametersT>> {
    Some(Box::new(QuantizationParametersT {
        scale: Some(scale),
        zero_point: Some(zp),
        quantized_dimension: dim,
        ..Default::default()
    }))
}

/// A weighted op's weights, quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub tensor: QuantConst,
    /// One per output channel.
    pub scales: Vec<f32>,
    /// Channels whose weights are all (nearly) zero.
    pub dead: usize,
    /// Per output channel, the mean output error the rounding adds (with
    /// bias correction and fitting channel means).
    pub bias_shift: Option<Vec<f32>>,
}

/// What quantizing one weighted op's weights needs to know.
#[derive(Debug, Clone, Copy)]
pub struct WeightInput<'a> {
    pub kind: Op,
    /// The output-channel dimension.
    pub dim: usize,
    pub values: &'a [f32],
    pub shape: &'a [usize],
    /// The float bias, if the op has a readable one.
    pub bias: Option<&'a [f32]>,
    pub in_scale: f32,
    pub out_scale: f32,
    /// Per-channel means of the op's input, for bias correction.
    pub means: Option<&'a [f32]>,
}

/// Per-channel symmetric weights. Each channel's scale is floored so that
/// its bias fits the int32 with headroom (dead channels keep their bias)
/// and its output multiplier stays representable.
pub fn weights(w: &WeightInput) -> Weights {
    let channels = w.shape.get(w.dim).copied().unwrap_or(1);
    let mut floor = match w.bias {
        Some(b) => quant::weight_scale_floor(b, w.in_scale),
        None => vec![0.0; channels],
    };
    // Kernels (XNNPACK's among them) refuse output multipliers
    // in x w / out below 2^-32: keep dead channels above that.
    let min = quant::multiplier_floor(w.in_scale, w.out_scale);
    floor.iter_mut().for_each(|f| *f = f.max(min));
    let (qv, scales) = quant::symmetric(w.values, w.shape, Some(w.dim), Some(&floor));
    let dead = count_dead(w.values, w.shape, Some(w.dim));
    let bias_shift = w
        .means
        .and_then(|means| weight_error_shift(w.values, &qv, &scales, w.shape, w.dim, w.kind, means));
    let n = scales.len();
    Weights {
        tensor: QuantConst {
            type_: TensorType::INT8,
            data: qv.iter().map(|v| *v as u8).collect(),
            quantization: qparams(scales.clone(), vec![0; n], w.dim as i32),
        },
        scales,
        dead,
        bias_shift,
    }
}

/// int32 bias at scale input scale x weight scale (per channel, or one
/// scale repeated when the weights have one). `values` already corrected.
pub fn bias(values: &[f32], w_scales: &[f32], in_scale: f32) -> QuantConst {
    let scales: Vec<f32> = w_scales.iter().map(|w| w * in_scale).collect();
    let per = if scales.len() == 1 {
        vec![scales[0]; values.len()]
    } else {
        scales.clone()
    };
    let qv = quant::bias_i32(values, &per);
    let n = scales.len();
    QuantConst {
        type_: TensorType::INT32,
        data: qv.iter().flat_map(|v| v.to_le_bytes()).collect(),
        quantization: qparams(scales, vec![0; n], 0),
    }
}

/// Any other float constant: at `same` (the op's output parameters, for
/// ops that cannot rescale), else asymmetric over its values and 0.
pub fn other(values: &[f32], same: Option<Params>) -> QuantConst {
    let (s, zp) = same.unwrap_or_else(|| {
        let (lo, hi) = values
            .iter()
            .fold((0f32, 0f32), |(a, b), x| (a.min(*x), b.max(*x)));
        quant::asymmetric(lo, hi)
    });
    let qv = quant::quantize_i8(values, s, zp);
    QuantConst {
        type_: TensorType::INT8,
        data: qv.iter().map(|v| *v as u8).collect(),
        quantization: qparams(vec![s], vec![zp], 0),
    }
}

/// Per output channel, the mean error that rounding the weights adds to
/// the output: sum of (q x scale - w) x the mean of the input channel each
/// weight multiplies. `None` when the shapes do not fit the op's layout.
pub fn weight_error_shift(
    w: &[f32],
    q: &[i8],
    scales: &[f32],
    shape: &[usize],
    dim: usize,
    kind: Op,
    means: &[f32],
) -> Option<Vec<f32>> {
    let channels = *shape.get(dim)?;
    let inner: usize = shape[dim + 1..].iter().product::<usize>().max(1);
    if scales.len() != channels || w.len() != q.len() || means.is_empty() {
        return None;
    }
    let mut shift = vec![0f32; channels];
    for (k, (wv, qv)) in w.iter().zip(q).enumerate() {
        let o = (k / inner) % channels;
        let err = f32::from(*qv) * scales[o] - wv;
        // The input channel this weight multiplies.
        let i = match kind {
            // [O, H, W, I] and [O, I]: the innermost index.
            Op::CONV_2D | Op::FULLY_CONNECTED => k % *shape.last()?,
            // [1, H, W, I x multiplier]: output o reads input o / multiplier.
            Op::DEPTHWISE_CONV_2D => o / (channels / means.len()).max(1),
            _ => return None,
        };
        shift[o] += err * means.get(i)?;
    }
    Some(shift)
}

/// Channels whose weights are all below 1e-5 in magnitude.
pub fn count_dead(values: &[f32], shape: &[usize], dim: Option<usize>) -> usize {
    let Some(d) = dim.filter(|d| *d < shape.len()) else {
        return 0;
    };
    let (channels, inner) = (shape[d].max(1), shape[d + 1..].iter().product::<usize>().max(1));
    let mut live = vec![false; channels];
    for (k, v) in values.iter().enumerate() {
        if v.abs() >= 1e-5 {
            live[(k / inner) % channels] = true;
        }
    }
    live.iter().filter(|l| !**l).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_error_shift_weights_each_input_channel_by_its_mean() {
        // CONV_2D [O=2, 1, 1, I=2]; scale 0.1 so q x 0.1 - w is the error.
        let w = [0.12, 0.0, -0.31, 0.2];
        let q = [1, 0, -3, 2];
        let means = [10.0, -1.0];
        let s = weight_error_shift(&w, &q, &[0.1, 0.1], &[2, 1, 1, 2], 0, Op::CONV_2D, &means).unwrap();
        // o0: (0.1 - 0.12) x 10 + 0 x -1 = -0.2; o1: (-0.3 + 0.31) x 10 + 0 = 0.1.
        assert!((s[0] + 0.2).abs() < 1e-5 && (s[1] - 0.1).abs() < 1e-5, "{s:?}");
        // DEPTHWISE [1, 1, 2, O=2], multiplier 2 over one input channel.
        let s = weight_error_shift(
            &w,
            &q,
            &[0.1, 0.1],
            &[1, 1, 2, 2],
            3,
            Op::DEPTHWISE_CONV_2D,
            &[10.0],
        )
        .unwrap();
        // o0 gets w[0], w[2]; o1 gets w[1], w[3]; all read input 0 (mean 10).
        assert!((s[0] - (-0.2 + 0.1)).abs() < 1e-5 && s[1].abs() < 1e-5, "{s:?}");
        // A mean vector that does not fit the layout is no correction.
        assert!(weight_error_shift(&w, &q, &[0.1], &[2, 1, 1, 2], 0, Op::CONV_2D, &means).is_none());
    }
}

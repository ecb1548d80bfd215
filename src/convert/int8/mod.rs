//! `--mode int8`: full-integer quantization from calibrated ranges,
//! following the TFLite quantization spec: per-channel symmetric int8
//! weights, int32 biases at input x weight scale, asymmetric int8
//! activations, one scale across ops that cannot rescale (CONCATENATION,
//! RESHAPE, pooling, PAD...), fixed output parameters for LOGISTIC,
//! SOFTMAX and TANH. Ops that cannot be quantized stay float behind
//! DEQUANTIZE ops (and QUANTIZE after them).
//!
//! The steps, one file each: `plan` decides on the float graph which ops
//! become int8 and every activation's parameters; `rewrite` carries that
//! out, with the constants quantized by `weights`; `kernels` says what
//! LiteRT's int8 kernels support and require.

mod kernels;
mod plan;
mod rewrite;
mod weights;

use std::collections::BTreeMap;

use super::calibrate::Ranges;
use super::{ConvertError, IoType};
use crate::tflite::schema::ModelT;

/// What [`quantize`] did, by op name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Int8Summary {
    pub quantized: BTreeMap<String, usize>,
    pub kept_float: BTreeMap<String, usize>,
    /// Channels whose weights are all (nearly) zero, given a bias-keeping scale.
    pub dead_channels: usize,
    /// Tensors of subgraph 0 that became int8 (for the report).
    pub int8_tensors: Vec<i32>,
    /// Weighted ops whose bias absorbed the mean error of their int8 weights.
    pub bias_corrected: usize,
    /// Data-movement ops left float because only float consumers read them.
    pub float_boundary: usize,
}

/// Quantizes subgraph 0 of a float model with the calibrated `ranges`.
/// With `bias_correction`, each weighted op's float bias first absorbs the
/// mean output error its rounded weights cause on the calibration data:
/// sum over the kernel of (dequantized w - w) x the mean of the input
/// channel it multiplies (Nagel et al., "Data-Free Quantization", 2019).
/// The model is left as it was when this fails.
pub fn quantize(
    m: &mut ModelT,
    ranges: &Ranges,
    io: IoType,
    bias_correction: bool,
) -> Result<Int8Summary, ConvertError> {
    let mut summary = Int8Summary::default();
    let plan = plan::plan(m, ranges, io, &mut summary)?;
    rewrite::rewrite(m, plan, ranges, io, bias_correction, &mut summary);
    Ok(summary)
}

#[cfg(test)]
mod tests;

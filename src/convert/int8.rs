//! `--mode int8`: full-integer quantization from calibrated ranges,
//! following the TFLite quantization spec: per-channel symmetric int8
//! weights, int32 biases at input x weight scale, asymmetric int8
//! activations, one scale across ops that cannot rescale (CONCATENATION,
//! RESHAPE, pooling, PAD...), fixed output parameters for LOGISTIC,
//! SOFTMAX and TANH. Ops that cannot be quantized stay float behind
//! DEQUANTIZE ops (and QUANTIZE after them).

use std::collections::{BTreeMap, HashMap};

use super::calibrate::Ranges;
use super::{graph, quant, ConvertError, IoType};
use crate::tflite::schema::{
    BuiltinOperator as Op, BuiltinOptionsT, ModelT, OperatorT, QuantizationParametersT, TensorT, TensorType,
};

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

/// int8 kernel version of each supported op; `None`: not quantizable here.
fn int8_version(op: Op) -> Option<i32> {
    Some(match op {
        Op::CONV_2D | Op::DEPTHWISE_CONV_2D => 3,
        Op::FULLY_CONNECTED => 4,
        Op::RESHAPE => 1,
        Op::ADD
        | Op::SUB
        | Op::MUL
        | Op::CONCATENATION
        | Op::SQUEEZE
        | Op::MAX_POOL_2D
        | Op::AVERAGE_POOL_2D
        | Op::PAD
        | Op::LOGISTIC
        | Op::SOFTMAX
        | Op::TANH
        | Op::MEAN
        | Op::RELU
        | Op::RELU6
        | Op::RESIZE_BILINEAR
        | Op::RESIZE_NEAREST_NEIGHBOR => 2,
        _ => return None,
    })
}

/// Ops whose int8 kernels need the same scale on input(s) and output.
fn same_scale(op: Op) -> bool {
    matches!(
        op,
        Op::RESHAPE
            | Op::SQUEEZE
            | Op::CONCATENATION
            | Op::MAX_POOL_2D
            | Op::AVERAGE_POOL_2D
            | Op::PAD
            | Op::RESIZE_BILINEAR
            | Op::RESIZE_NEAREST_NEIGHBOR
    )
}

/// Output parameters the int8 kernels require.
fn fixed_output(op: Op) -> Option<(f32, i64)> {
    match op {
        Op::LOGISTIC | Op::SOFTMAX => Some((1.0 / 256.0, -128)),
        Op::TANH => Some((1.0 / 128.0, 0)),
        _ => None,
    }
}

fn is_weighted(op: Op) -> bool {
    matches!(op, Op::CONV_2D | Op::DEPTHWISE_CONV_2D | Op::FULLY_CONNECTED)
}

fn find(parent: &mut HashMap<i32, i32>, t: i32) -> i32 {
    let p = *parent.get(&t).unwrap_or(&t);
    if p == t {
        return t;
    }
    let r = find(parent, p);
    parent.insert(t, r);
    r
}

fn qparams(scale: Vec<f32>, zp: Vec<i64>, dim: i32) -> Option<Box<QuantizationParametersT>> {
    Some(Box::new(QuantizationParametersT {
        scale: Some(scale),
        zero_point: Some(zp),
        quantized_dimension: dim,
        ..Default::default()
    }))
}

/// Quantizes subgraph 0 of a float model with the calibrated `ranges`.
/// With `bias_correction`, each weighted op's float bias first absorbs the
/// mean output error its rounded weights cause on the calibration data:
/// sum over the kernel of (dequantized w - w) x the mean of the input
/// channel it multiplies (Nagel et al., "Data-Free Quantization", 2019).
pub fn quantize(
    m: &mut ModelT,
    ranges: &Ranges,
    io: IoType,
    bias_correction: bool,
) -> Result<Int8Summary, ConvertError> {
    let mut summary = Int8Summary::default();
    let ops: Vec<OperatorT> = graph::ops(m).to_vec();
    let ts = graph::tensors(m).to_vec();
    let sg = graph::subgraph0(m)?;
    let inputs: Vec<i32> = sg.inputs.clone().unwrap_or_default();
    let outputs: Vec<i32> = sg.outputs.clone().unwrap_or_default();
    let consts: Vec<bool> = ts.iter().map(|t| graph::is_const(m, t)).collect();
    let is_const = |t: i32| consts[t as usize];
    let float = |t: i32| ts[t as usize].type_ == TensorType::FLOAT32;

    // 1. Which ops become int8.
    let mut kinds = Vec::with_capacity(ops.len());
    let mut quantized = vec![false; ops.len()];
    for (k, op) in ops.iter().enumerate() {
        let kind = graph::op_of(m, op).unwrap_or(Op::CUSTOM);
        kinds.push(kind);
        let ins: Vec<i32> = op.inputs.iter().flatten().copied().filter(|i| *i >= 0).collect();
        let outs: Vec<i32> = op.outputs.iter().flatten().copied().collect();
        let ok = int8_version(kind).is_some()
            && !outs.is_empty()
            && outs.iter().all(|o| float(*o) && ranges.ranges.contains_key(o))
            && ins.iter().all(|i| {
                if is_const(*i) {
                    !float(*i) || graph::const_f32(m, &ts[*i as usize]).is_some()
                } else {
                    float(*i) && ranges.ranges.contains_key(i)
                }
            })
            && (!is_weighted(kind)
                || op
                    .inputs
                    .as_ref()
                    .and_then(|v| v.get(1))
                    .is_some_and(|w| *w >= 0 && is_const(*w) && float(*w)));
        quantized[k] = ok;
    }
    // Data-movement ops (CONCATENATION, RESHAPE, SQUEEZE) whose results only
    // reach float consumers (a float op, or a model output with
    // `--io-type float`) stay float: each input then crosses into float at
    // its own scale. Quantized, the SSD's concatenated heads would share the
    // widest head's scale (box encodings: 0.34 instead of 0.02-0.03).
    let consumers = graph::consumers(m);
    let mut boundary = vec![false; ops.len()];
    loop {
        let mut changed = false;
        for k in (0..ops.len()).rev() {
            if !quantized[k] || !matches!(kinds[k], Op::CONCATENATION | Op::RESHAPE | Op::SQUEEZE) {
                continue;
            }
            let float_only = ops[k].outputs.iter().flatten().all(|o| {
                let readers = consumers.get(o).map_or(&[][..], Vec::as_slice);
                let is_output = outputs.contains(o);
                (is_output || !readers.is_empty())
                    && (!is_output || io == IoType::Float)
                    && readers.iter().all(|c| !quantized[*c])
            });
            if float_only {
                quantized[k] = false;
                boundary[k] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (k, op) in ops.iter().enumerate() {
        let name = graph::op_name(m, op);
        if quantized[k] {
            *summary.quantized.entry(name).or_insert(0) += 1;
        } else if boundary[k] {
            summary.float_boundary += 1;
        } else if !matches!(kinds[k], Op::QUANTIZE | Op::DEQUANTIZE) {
            *summary.kept_float.entry(name).or_insert(0) += 1;
        }
    }

    // 2. Activation parameters: same-scale groups share a range.
    let mut parent: HashMap<i32, i32> = HashMap::new();
    for (k, op) in ops.iter().enumerate() {
        if !quantized[k] || !same_scale(kinds[k]) {
            continue;
        }
        let out = op.outputs.as_ref().expect("checked")[0];
        // CONCATENATION inputs keep their own ranges: one shared range
        // would squeeze the narrow ones (the SSD's box heads lost 12 dB), so
        // each input whose scale differs gets a requantizing QUANTIZE.
        if kinds[k] == Op::CONCATENATION {
            continue;
        }
        for i in op.inputs.iter().flatten().take(1).copied() {
            if i >= 0 && !is_const(i) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, out));
                if a != b {
                    parent.insert(a, b);
                }
            }
        }
    }
    let mut fixed: HashMap<i32, (f32, i64)> = HashMap::new();
    for (k, op) in ops.iter().enumerate() {
        if let (true, Some(p)) = (quantized[k], fixed_output(kinds[k])) {
            let out = op.outputs.as_ref().expect("checked")[0];
            let root = find(&mut parent, out);
            fixed.insert(root, p);
        }
    }
    let mut group_range: HashMap<i32, (f32, f32)> = HashMap::new();
    let mut touched: Vec<i32> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        if !quantized[k] {
            continue;
        }
        for &t in op.inputs.iter().flatten().chain(op.outputs.iter().flatten()) {
            if t >= 0 && !is_const(t) && float(t) {
                touched.push(t);
            }
        }
    }
    for &t in &touched {
        let root = find(&mut parent, t);
        let r = ranges.ranges[&t];
        let g = group_range.entry(root).or_insert(r);
        g.0 = g.0.min(r.0);
        g.1 = g.1.max(r.1);
    }
    let mut params: HashMap<i32, (f32, i64)> = HashMap::new();
    for &t in &touched {
        let root = find(&mut parent, t);
        let p = fixed.get(&root).copied().unwrap_or_else(|| {
            let (lo, hi) = group_range[&root];
            quant::asymmetric(lo, hi)
        });
        params.insert(t, p);
    }

    // 3. Rewrite.
    let quantize_code = graph::opcode(m, Op::QUANTIZE, 2);
    let dequantize_code = graph::opcode(m, Op::DEQUANTIZE, 2);
    let mut int8_of: HashMap<i32, i32> = HashMap::new();
    let mut float_of: HashMap<i32, i32> = HashMap::new();
    let mut new_ops: Vec<OperatorT> = Vec::with_capacity(ops.len() + 16);
    for &i in &inputs {
        match (io, params.get(&i)) {
            (IoType::Int8, Some(&(s, zp))) => {
                let t = &mut graph::tensors_mut(m)[i as usize];
                t.type_ = TensorType::INT8;
                t.quantization = qparams(vec![s], vec![zp], 0);
                int8_of.insert(i, i);
            }
            (IoType::Uint8, Some(&(s, zp))) => {
                let mut q = graph::tensors(m)[i as usize].clone();
                q.name = Some(format!("{}_int8", q.name.as_deref().unwrap_or("input")));
                q.type_ = TensorType::INT8;
                q.quantization = qparams(vec![s], vec![zp], 0);
                let qi = graph::add_tensor(m, q);
                let t = &mut graph::tensors_mut(m)[i as usize];
                t.type_ = TensorType::UINT8;
                t.quantization = qparams(vec![s], vec![zp + 128], 0);
                new_ops.push(graph::simple_op(quantize_code, i, qi, BuiltinOptionsT::NONE));
                int8_of.insert(i, qi);
            }
            _ => {
                float_of.insert(i, i);
            }
        }
    }
    for (k, op) in ops.into_iter().enumerate() {
        let mut op = op;
        let kind = kinds[k];
        if !quantized[k] {
            for idx in op.inputs.iter_mut().flatten() {
                let t = *idx;
                if t < 0 || is_const(t) || float_of.contains_key(&t) && float_of[&t] == t {
                    continue;
                }
                if let Some(&f) = float_of.get(&t) {
                    *idx = f;
                } else if let Some(&q) = int8_of.get(&t) {
                    let mut ft = graph::tensors(m)[q as usize].clone();
                    ft.name = Some(format!("{}_dequantized", ft.name.as_deref().unwrap_or("t")));
                    ft.type_ = TensorType::FLOAT32;
                    ft.quantization = None;
                    let f = graph::add_tensor(m, ft);
                    new_ops.push(graph::simple_op(dequantize_code, q, f, BuiltinOptionsT::NONE));
                    float_of.insert(t, f);
                    *idx = f;
                }
            }
            for &o in op.outputs.iter().flatten() {
                float_of.insert(o, o);
            }
            new_ops.push(op);
            continue;
        }
        // Inputs of a quantized op.
        let in_scale = op
            .inputs
            .as_ref()
            .and_then(|v| v.first())
            .and_then(|i| params.get(i))
            .map_or(1.0, |p| p.0);
        let out0 = op.outputs.as_ref().expect("checked")[0];
        let n_in = op.inputs.as_ref().map_or(0, Vec::len);
        let mut w_scales: Vec<f32> = Vec::new();
        let mut bias_shift: Option<Vec<f32>> = None;
        let input0 = op.inputs.as_ref().and_then(|v| v.first()).copied().unwrap_or(-1);
        for j in 0..n_in {
            let t = op.inputs.as_ref().expect("checked")[j];
            if t < 0 {
                continue;
            }
            if is_const(t) {
                if !float(t) {
                    continue;
                }
                let src = ts[t as usize].clone();
                let values = graph::const_f32(m, &src).expect("checked in step 1");
                let shape: Vec<usize> = src.shape.iter().flatten().map(|d| (*d).max(0) as usize).collect();
                let (ty, data, q) = if is_weighted(kind) && j == 1 {
                    // Output channels: dim 0 of CONV_2D [O,H,W,I] and
                    // FULLY_CONNECTED [O,I] weights, dim 3 of depthwise [1,H,W,O].
                    let dim = match kind {
                        Op::CONV_2D | Op::FULLY_CONNECTED => Some(0),
                        Op::DEPTHWISE_CONV_2D => Some(3),
                        _ => None,
                    };
                    let bias = op
                        .inputs
                        .as_ref()
                        .and_then(|v| v.get(2))
                        .filter(|b| **b >= 0)
                        .and_then(|b| graph::const_f32(m, &ts[*b as usize]));
                    let out_scale = params[&out0].0;
                    let channels = dim.and_then(|d| shape.get(d)).copied().unwrap_or(1);
                    let mut floor = match bias {
                        Some(b) => quant::weight_scale_floor(&b, in_scale),
                        None => vec![0.0; channels],
                    };
                    // Kernels (XNNPACK's among them) refuse output multipliers
                    // in x w / out below 2^-32: keep dead channels above that.
                    let min = quant::multiplier_floor(in_scale, out_scale);
                    floor.iter_mut().for_each(|f| *f = f.max(min));
                    if dim.is_none() {
                        floor = vec![floor.iter().copied().fold(min, f32::max)];
                    }
                    let (qv, scales) = quant::symmetric(&values, &shape, dim, Some(&floor));
                    summary.dead_channels += count_dead(&values, &shape, dim);
                    if let (true, Some(means), Some(d)) =
                        (bias_correction, ranges.channel_means.get(&input0), dim)
                    {
                        bias_shift = weight_error_shift(&values, &qv, &scales, &shape, d, kind, means);
                    }
                    w_scales = scales.clone();
                    let n = scales.len();
                    (
                        TensorType::INT8,
                        qv.iter().map(|v| *v as u8).collect::<Vec<u8>>(),
                        qparams(scales, vec![0; n], dim.unwrap_or(0) as i32),
                    )
                } else if is_weighted(kind) && j == 2 {
                    let mut values = values;
                    if let Some(shift) = bias_shift.as_ref().filter(|s| s.len() == values.len()) {
                        values.iter_mut().zip(shift).for_each(|(b, e)| *b -= e);
                        summary.bias_corrected += 1;
                    }
                    let scales: Vec<f32> = w_scales.iter().map(|w| w * in_scale).collect();
                    let per = if scales.len() == 1 {
                        vec![scales[0]; values.len()]
                    } else {
                        scales.clone()
                    };
                    let qv = quant::bias_i32(&values, &per);
                    let n = scales.len();
                    (
                        TensorType::INT32,
                        qv.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        qparams(scales, vec![0; n], 0),
                    )
                } else {
                    let (s, zp) = if same_scale(kind) {
                        params[&out0]
                    } else {
                        let (lo, hi) = values
                            .iter()
                            .fold((0f32, 0f32), |(a, b), x| (a.min(*x), b.max(*x)));
                        quant::asymmetric(lo, hi)
                    };
                    let qv = quant::quantize_i8(&values, s, zp);
                    (
                        TensorType::INT8,
                        qv.iter().map(|v| *v as u8).collect(),
                        qparams(vec![s], vec![zp], 0),
                    )
                };
                let buffer = graph::add_buffer(m, data);
                let nt = TensorT {
                    name: src.name.clone(),
                    shape: src.shape.clone(),
                    shape_signature: src.shape_signature.clone(),
                    type_: ty,
                    buffer,
                    quantization: q,
                    ..Default::default()
                };
                let ni = graph::add_tensor(m, nt);
                op.inputs.as_mut().expect("checked")[j] = ni;
                continue;
            }
            // An activation: its int8 version, quantizing a float one if needed.
            let q = match int8_of.get(&t) {
                Some(&q) => q,
                None => {
                    let src = float_of.get(&t).copied().unwrap_or(t);
                    let (s, zp) = params[&t];
                    let mut qt = graph::tensors(m)[src as usize].clone();
                    qt.name = Some(format!("{}_int8", qt.name.as_deref().unwrap_or("t")));
                    qt.type_ = TensorType::INT8;
                    qt.quantization = qparams(vec![s], vec![zp], 0);
                    qt.buffer = 0;
                    let q = graph::add_tensor(m, qt);
                    new_ops.push(graph::simple_op(quantize_code, src, q, BuiltinOptionsT::NONE));
                    int8_of.insert(t, q);
                    q
                }
            };
            let q = if kind == Op::CONCATENATION && params[&t] != params[&out0] {
                requantize(m, &mut new_ops, quantize_code, q, params[&out0])
            } else {
                q
            };
            op.inputs.as_mut().expect("checked")[j] = q;
        }
        for &o in op.outputs.iter().flatten() {
            let (s, zp) = params[&o];
            let t = &mut graph::tensors_mut(m)[o as usize];
            t.type_ = TensorType::INT8;
            t.quantization = qparams(vec![s], vec![zp], 0);
            int8_of.insert(o, o);
            summary.int8_tensors.push(o);
        }
        if let Some(v) = int8_version(kind) {
            graph::raise_version(m, &op, v);
        }
        new_ops.push(op);
    }

    // 4. Model outputs per --io-type.
    let mut new_outputs = outputs.clone();
    for (k, &o) in outputs.iter().enumerate() {
        if float_of.get(&o) == Some(&o) || int8_of.get(&o) != Some(&o) {
            continue;
        }
        let name = graph::tensors(m)[o as usize].name.clone();
        match io {
            IoType::Int8 => {}
            IoType::Float | IoType::Uint8 => {
                let (s, zp) = params[&o];
                let mut nt = graph::tensors(m)[o as usize].clone();
                let (ty, code, q) = if io == IoType::Float {
                    (TensorType::FLOAT32, dequantize_code, None)
                } else {
                    (
                        TensorType::UINT8,
                        quantize_code,
                        qparams(vec![s], vec![zp + 128], 0),
                    )
                };
                let reuse = if io == IoType::Float {
                    float_of.get(&o).copied()
                } else {
                    None
                };
                let f = match reuse {
                    Some(f) => f,
                    None => {
                        nt.type_ = ty;
                        nt.quantization = q;
                        let f = graph::add_tensor(m, nt);
                        new_ops.push(graph::simple_op(code, o, f, BuiltinOptionsT::NONE));
                        f
                    }
                };
                // The boundary tensor keeps the output's name.
                graph::tensors_mut(m)[f as usize].name = name.clone();
                graph::tensors_mut(m)[o as usize].name =
                    Some(format!("{}_int8", name.as_deref().unwrap_or("output")));
                new_outputs[k] = f;
            }
        }
    }
    graph::put_ops(m, new_ops);
    m.subgraphs.as_mut().expect("checked")[0].outputs = Some(new_outputs);
    Ok(summary)
}

/// Per output channel, the mean error that rounding the weights adds to
/// the output: sum of (q x scale - w) x the mean of the input channel each
/// weight multiplies. `None` when the shapes do not fit the op's layout.
fn weight_error_shift(
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

/// A copy of int8 tensor `q` rescaled to `(scale, zp)` by a QUANTIZE op.
fn requantize(m: &mut ModelT, ops: &mut Vec<OperatorT>, code: u32, q: i32, (scale, zp): (f32, i64)) -> i32 {
    let mut t = graph::tensors(m)[q as usize].clone();
    t.name = Some(format!("{}_requantized", t.name.as_deref().unwrap_or("t")));
    t.quantization = qparams(vec![scale], vec![zp], 0);
    t.buffer = 0;
    let r = graph::add_tensor(m, t);
    ops.push(graph::simple_op(code, q, r, BuiltinOptionsT::NONE));
    r
}

/// Channels whose weights are all below 1e-5 in magnitude.
fn count_dead(values: &[f32], shape: &[usize], dim: Option<usize>) -> usize {
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

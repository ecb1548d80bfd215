//! `--mode float32`: a quantized model (e.g. Coral's uint8 SSD) turned
//! into a float one: constants dequantized, activations float, boundary
//! QUANTIZE/DEQUANTIZE ops removed, and ReLU6 restored where the old
//! converter folded it into the uint8 output range (every conv of the
//! Coral model says "no activation" but its output range is [0, 6]).

use std::collections::HashMap;

use super::{graph, ConvertError};
use crate::tflite::schema::{
    ActivationFunctionType as Act, BuiltinOperator as Op, BuiltinOptionsT, ModelT, TensorType,
};

/// What [`to_float32`] changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dequantized {
    pub constants: usize,
    pub activations: usize,
    pub relu6_restored: usize,
    pub relu_restored: usize,
    pub removed_ops: usize,
}

/// The real range a quantized tensor can hold, from its type and params.
fn real_range(t: &crate::tflite::schema::TensorT) -> Option<(f32, f32)> {
    let q = t.quantization.as_ref()?;
    let s = *q.scale.as_ref()?.first()?;
    let zp = q
        .zero_point
        .as_ref()
        .and_then(|z| z.first())
        .copied()
        .unwrap_or(0) as f32;
    let (lo, hi) = match t.type_ {
        TensorType::UINT8 => (0.0, 255.0),
        TensorType::INT8 => (-128.0, 127.0),
        _ => return None,
    };
    Some(((lo - zp) * s, (hi - zp) * s))
}

fn fused_activation(o: &mut BuiltinOptionsT) -> Option<&mut Act> {
    Some(match o {
        BuiltinOptionsT::Conv2DOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::DepthwiseConv2DOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::FullyConnectedOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::AddOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::SubOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::MulOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::Pool2DOptions(o) => &mut o.fused_activation_function,
        BuiltinOptionsT::ConcatenationOptions(o) => &mut o.fused_activation_function,
        _ => return None,
    })
}

fn is_quantized_type(t: TensorType) -> bool {
    matches!(
        t,
        TensorType::UINT8 | TensorType::INT8 | TensorType::INT16 | TensorType::INT32
    )
}

pub fn to_float32(m: &mut ModelT) -> Result<Dequantized, ConvertError> {
    let mut out = Dequantized::default();
    // 1. Restore ReLU6 from the output ranges (before the ranges go).
    let mut ops = graph::take_ops(m);
    for op in &mut ops {
        let Some(&o) = op.outputs.as_ref().and_then(|v| v.first()) else {
            continue;
        };
        let Some((lo, hi)) = real_range(&graph::tensors(m)[o as usize]) else {
            continue;
        };
        // A range that starts at exactly 0 is a folded ReLU: ReLU6 when it
        // ends at or below 6 (MobileNet's; a narrower learned range clips
        // below 6 anyway), plain ReLU above.
        if lo.abs() < 1e-6 && hi > 0.0 {
            if let Some(act) = fused_activation(&mut op.builtin_options) {
                if *act == Act::NONE {
                    if hi <= 6.05 {
                        *act = Act::RELU6;
                        out.relu6_restored += 1;
                    } else {
                        *act = Act::RELU;
                        out.relu_restored += 1;
                    }
                }
            }
        }
    }
    graph::put_ops(m, ops);

    // 2. Tensors: constants to float32 values, activations to float32.
    let n = graph::tensors(m).len();
    for i in 0..n {
        let t = &graph::tensors(m)[i];
        let has_q = t
            .quantization
            .as_ref()
            .and_then(|q| q.scale.as_ref())
            .is_some_and(|s| !s.is_empty());
        if !has_q || !is_quantized_type(t.type_) {
            continue;
        }
        if graph::is_const(m, t) {
            let values = graph::dequantize_const(m, t).ok_or_else(|| {
                ConvertError::Unsupported(format!(
                    "cannot dequantize constant {}",
                    t.name.as_deref().unwrap_or("?")
                ))
            })?;
            let b = graph::add_buffer(m, graph::f32_bytes(&values));
            let t = &mut graph::tensors_mut(m)[i];
            t.buffer = b;
            out.constants += 1;
        } else {
            out.activations += 1;
        }
        let t = &mut graph::tensors_mut(m)[i];
        t.type_ = TensorType::FLOAT32;
        t.quantization = None;
    }

    // 3. QUANTIZE/DEQUANTIZE are now float -> float copies: bypass them.
    let mut alias: HashMap<i32, i32> = HashMap::new();
    let ops = graph::take_ops(m);
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let kind = graph::op_of(m, &op);
        if matches!(kind, Some(Op::QUANTIZE | Op::DEQUANTIZE)) {
            let i = op.inputs.as_ref().and_then(|v| v.first()).copied();
            let o = op.outputs.as_ref().and_then(|v| v.first()).copied();
            if let (Some(i), Some(o)) = (i, o) {
                let ti = &graph::tensors(m)[i as usize];
                if i >= 0 && ti.type_ == TensorType::FLOAT32 && !graph::is_const(m, ti) {
                    let src = *alias.get(&i).unwrap_or(&i);
                    alias.insert(o, src);
                    out.removed_ops += 1;
                    continue;
                }
            }
        }
        kept.push(op);
    }
    let fix = |v: &mut Option<Vec<i32>>| {
        for i in v.iter_mut().flatten() {
            if let Some(a) = alias.get(i) {
                *i = *a;
            }
        }
    };
    for op in &mut kept {
        fix(&mut op.inputs);
    }
    graph::put_ops(m, kept);
    let sg = &mut m.subgraphs.as_mut().expect("checked")[0];
    // A subgraph output produced by a removed op: the op's input takes its
    // place (and its name, so callers see the same output name).
    if let Some(outs) = sg.outputs.as_mut() {
        for o in outs.iter_mut() {
            if let Some(a) = alias.get(o) {
                let name = sg.tensors.as_ref().and_then(|t| t[*o as usize].name.clone());
                *o = *a;
                if let Some(t) = sg.tensors.as_mut() {
                    t[*a as usize].name = name;
                }
            }
        }
    }
    Ok(out)
}

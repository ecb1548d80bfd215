//! `--mode dynamic`: int8 weights for CONV_2D, DEPTHWISE_CONV_2D and
//! FULLY_CONNECTED, activations float (LiteRT's hybrid kernels quantize
//! them on the fly). Small weights stay float, as in TFLite's converter.

use std::collections::BTreeMap;

use super::{graph, quant};
use crate::tflite::schema::{BuiltinOperator as Op, ModelT, QuantizationParametersT, TensorType};

/// Weights with fewer elements stay float.
pub const MIN_ELEMENTS: usize = 1024;

/// Quantizes the weights; returns per-op-type counts of ops changed.
pub fn quantize_weights(m: &mut ModelT) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let n_ops = graph::ops(m).len();
    for k in 0..n_ops {
        let op = graph::ops(m)[k].clone();
        let kind = graph::op_of(m, &op);
        // Channel dimension of the weights, and the hybrid kernel version.
        let (dim, version) = match kind {
            Some(Op::CONV_2D) => (Some(0), 5),
            Some(Op::DEPTHWISE_CONV_2D) => (Some(3), 6),
            Some(Op::FULLY_CONNECTED) => (None, 3),
            _ => continue,
        };
        let Some(&w) = op.inputs.as_ref().and_then(|i| i.get(1)) else {
            continue;
        };
        if w < 0 {
            continue;
        }
        let t = &graph::tensors(m)[w as usize];
        if t.type_ != TensorType::FLOAT32 || graph::num_elements(t) < MIN_ELEMENTS {
            continue;
        }
        let Some(values) = graph::const_f32(m, t) else {
            continue;
        };
        let shape: Vec<usize> = t.shape.iter().flatten().map(|d| (*d).max(0) as usize).collect();
        let (q, scales) = quant::symmetric(&values, &shape, dim, None);
        let buffer = graph::add_buffer(m, q.iter().map(|v| *v as u8).collect());
        let t = &mut graph::tensors_mut(m)[w as usize];
        t.buffer = buffer;
        t.type_ = TensorType::INT8;
        t.quantization = Some(Box::new(QuantizationParametersT {
            zero_point: Some(vec![0; scales.len()]),
            scale: Some(scales),
            quantized_dimension: dim.unwrap_or(0) as i32,
            ..Default::default()
        }));
        graph::raise_version(m, &op, version);
        *counts.entry(graph::op_name(m, &op)).or_insert(0) += 1;
    }
    counts
}

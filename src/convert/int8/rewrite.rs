//! Carries out a [`Plan`]: retypes the model inputs, rebuilds the op list
//! (int8 ops with quantized constants, QUANTIZE/DEQUANTIZE ops where int8
//! and float meet) and retypes the model outputs per `--io-type`.

use std::collections::HashMap;

use super::kernels::{int8_version, same_scale, weight_channel_dim};
use super::plan::{Operand, Params, Plan, QuantOp};
use super::weights::{self, qparams, QuantConst, WeightInput};
use super::Int8Summary;
use crate::convert::calibrate::Ranges;
use crate::convert::{graph, IoType};
use crate::tflite::schema::{BuiltinOperator as Op, BuiltinOptionsT, ModelT, OperatorT, TensorT, TensorType};

/// The rewrite's state: the model, the ops rebuilt so far, and which
/// int8 and float versions of each activation exist.
struct Rewrite<'a> {
    m: &'a mut ModelT,
    io: IoType,
    quantize_code: u32,
    dequantize_code: u32,
    /// Activation -> its int8 version (itself once retyped).
    int8_of: HashMap<i32, i32>,
    /// Activation -> its float version (itself while it stays float).
    float_of: HashMap<i32, i32>,
    new_ops: Vec<OperatorT>,
}

/// Rewrites subgraph 0 of `m` as `plan` says.
pub fn rewrite(
    m: &mut ModelT,
    plan: Plan,
    ranges: &Ranges,
    io: IoType,
    bias_correction: bool,
    summary: &mut Int8Summary,
) {
    let quantize_code = graph::opcode(m, Op::QUANTIZE, 2);
    let dequantize_code = graph::opcode(m, Op::DEQUANTIZE, 2);
    let ops = graph::take_ops(m);
    let mut r = Rewrite {
        m,
        io,
        quantize_code,
        dequantize_code,
        int8_of: HashMap::new(),
        float_of: HashMap::new(),
        new_ops: Vec::with_capacity(ops.len() + 16),
    };
    r.model_inputs(&plan);
    for (op, q) in ops.into_iter().zip(plan.ops) {
        match q {
            Some(q) => r.int8_op(op, q, ranges, bias_correction, summary),
            None => r.float_op(op, &plan.graph.consts),
        }
    }
    let outputs = r.model_outputs(&plan.graph.outputs, &plan.params);
    let Rewrite { m, new_ops, .. } = r;
    graph::put_ops(m, new_ops);
    if let Some(sg) = m.subgraphs.as_mut().and_then(|s| s.first_mut()) {
        sg.outputs = Some(outputs);
    }
}

impl Rewrite<'_> {
    /// Model inputs with parameters become int8 (or uint8 with a QUANTIZE
    /// into int8) unless they stay float.
    fn model_inputs(&mut self, plan: &Plan) {
        for &i in &plan.graph.inputs {
            match (self.io, plan.params.get(&i)) {
                (IoType::Int8, Some(&(s, zp))) => {
                    let t = &mut graph::tensors_mut(self.m)[i as usize];
                    t.type_ = TensorType::INT8;
                    t.quantization = qparams(vec![s], vec![zp], 0);
                    self.int8_of.insert(i, i);
                }
                (IoType::Uint8, Some(&(s, zp))) => {
                    let mut q = graph::tensors(self.m)[i as usize].clone();
                    q.name = Some(format!("{}_int8", q.name.as_deref().unwrap_or("input")));
                    q.type_ = TensorType::INT8;
                    q.quantization = qparams(vec![s], vec![zp], 0);
                    let qi = graph::add_tensor(self.m, q);
                    let t = &mut graph::tensors_mut(self.m)[i as usize];
                    t.type_ = TensorType::UINT8;
                    t.quantization = qparams(vec![s], vec![zp + 128], 0);
                    self.push(self.quantize_code, i, qi);
                    self.int8_of.insert(i, qi);
                }
                _ => {
                    self.float_of.insert(i, i);
                }
            }
        }
    }

    fn push(&mut self, code: u32, input: i32, output: i32) {
        self.new_ops
            .push(graph::simple_op(code, input, output, BuiltinOptionsT::NONE));
    }

    /// An op that stays float reads float versions of its activations,
    /// dequantizing int8 ones (once each).
    fn float_op(&mut self, mut op: OperatorT, consts: &[bool]) {
        for idx in op.inputs.iter_mut().flatten() {
            let t = *idx;
            if t < 0 || consts[t as usize] || self.float_of.get(&t) == Some(&t) {
                continue;
            }
            if let Some(&f) = self.float_of.get(&t) {
                *idx = f;
            } else if let Some(&q) = self.int8_of.get(&t) {
                let mut ft = graph::tensors(self.m)[q as usize].clone();
                ft.name = Some(format!("{}_dequantized", ft.name.as_deref().unwrap_or("t")));
                ft.type_ = TensorType::FLOAT32;
                ft.quantization = None;
                let f = graph::add_tensor(self.m, ft);
                self.push(self.dequantize_code, q, f);
                self.float_of.insert(t, f);
                *idx = f;
            }
        }
        for &o in op.outputs.iter().flatten() {
            self.float_of.insert(o, o);
        }
        self.new_ops.push(op);
    }

    /// An int8 op: new int8/int32 constants, int8 versions of its
    /// activation inputs, its outputs retyped in place.
    fn int8_op(
        &mut self,
        mut op: OperatorT,
        q: QuantOp,
        ranges: &Ranges,
        bias_correction: bool,
        summary: &mut Int8Summary,
    ) {
        let in_scale = q.input_scale();
        let input0 = q.inputs.first().map_or(-1, Operand::tensor);
        let means = ranges
            .channel_means
            .get(&input0)
            .filter(|_| bias_correction)
            .map(Vec::as_slice);
        let out_params = q.output.1;
        let mut new_inputs = Vec::with_capacity(q.inputs.len());
        // Set by the weights (input 1) for the bias (input 2).
        let mut w_scales: Vec<f32> = Vec::new();
        let mut bias_shift: Option<Vec<f32>> = None;
        for (j, operand) in q.inputs.iter().enumerate() {
            let new = match operand {
                Operand::Omitted | Operand::OtherConst(_) => operand.tensor(),
                Operand::FloatConst { tensor, values } => {
                    let c = match (weight_channel_dim(q.kind), j) {
                        (Some(dim), 1) => {
                            let shape = dims(&graph::tensors(self.m)[*tensor as usize]);
                            let bias = q
                                .inputs
                                .get(2)
                                .map(Operand::tensor)
                                .filter(|b| *b >= 0)
                                .and_then(|b| graph::const_f32(self.m, &graph::tensors(self.m)[b as usize]));
                            let w = weights::weights(&WeightInput {
                                kind: q.kind,
                                dim,
                                values,
                                shape: &shape,
                                bias: bias.as_deref(),
                                in_scale,
                                out_scale: out_params.0,
                                means,
                            });
                            summary.dead_channels += w.dead;
                            bias_shift = w.bias_shift;
                            w_scales = w.scales;
                            w.tensor
                        }
                        (Some(_), 2) => {
                            let mut values = values.clone();
                            if let Some(shift) = bias_shift.as_ref().filter(|s| s.len() == values.len()) {
                                values.iter_mut().zip(shift).for_each(|(b, e)| *b -= e);
                                summary.bias_corrected += 1;
                            }
                            weights::bias(&values, &w_scales, in_scale)
                        }
                        _ => weights::other(values, same_scale(q.kind).then_some(out_params)),
                    };
                    self.add_const(*tensor, c)
                }
                Operand::Activation((t, p)) => {
                    let i8 = self.int8_version(*t, *p);
                    if q.kind == Op::CONCATENATION && *p != out_params {
                        self.requantize(i8, out_params)
                    } else {
                        i8
                    }
                }
            };
            new_inputs.push(new);
        }
        if let Some(v) = op.inputs.as_mut() {
            *v = new_inputs;
        }
        for (o, (s, zp)) in std::iter::once(q.output).chain(q.more_outputs) {
            let t = &mut graph::tensors_mut(self.m)[o as usize];
            t.type_ = TensorType::INT8;
            t.quantization = qparams(vec![s], vec![zp], 0);
            self.int8_of.insert(o, o);
            summary.int8_tensors.push(o);
        }
        if let Some(v) = int8_version(q.kind) {
            graph::raise_version(self.m, &op, v);
        }
        self.new_ops.push(op);
    }

    /// A new constant tensor like `src` holding `c`; returns its index.
    fn add_const(&mut self, src: i32, c: QuantConst) -> i32 {
        let buffer = graph::add_buffer(self.m, c.data);
        let src = &graph::tensors(self.m)[src as usize];
        let t = TensorT {
            name: src.name.clone(),
            shape: src.shape.clone(),
            shape_signature: src.shape_signature.clone(),
            type_: c.type_,
            buffer,
            quantization: c.quantization,
            ..Default::default()
        };
        graph::add_tensor(self.m, t)
    }

    /// The int8 version of activation `t`, quantizing its float version
    /// at `(s, zp)` the first time it is needed.
    fn int8_version(&mut self, t: i32, (s, zp): Params) -> i32 {
        if let Some(&q) = self.int8_of.get(&t) {
            return q;
        }
        let src = self.float_of.get(&t).copied().unwrap_or(t);
        let mut qt = graph::tensors(self.m)[src as usize].clone();
        qt.name = Some(format!("{}_int8", qt.name.as_deref().unwrap_or("t")));
        qt.type_ = TensorType::INT8;
        qt.quantization = qparams(vec![s], vec![zp], 0);
        qt.buffer = 0;
        let q = graph::add_tensor(self.m, qt);
        self.push(self.quantize_code, src, q);
        self.int8_of.insert(t, q);
        q
    }

    /// A copy of int8 tensor `q` rescaled to `(scale, zp)` by a QUANTIZE op.
    fn requantize(&mut self, q: i32, (scale, zp): Params) -> i32 {
        let mut t = graph::tensors(self.m)[q as usize].clone();
        t.name = Some(format!("{}_requantized", t.name.as_deref().unwrap_or("t")));
        t.quantization = qparams(vec![scale], vec![zp], 0);
        t.buffer = 0;
        let r = graph::add_tensor(self.m, t);
        self.push(self.quantize_code, q, r);
        r
    }

    /// The model outputs per `--io-type`: int8 outputs stay as they are
    /// with `int8`, get a DEQUANTIZE (or reuse the float version an op
    /// already made) with `float`, a QUANTIZE to uint8 with `uint8`. The
    /// boundary tensor keeps the output's name. Returns the new outputs.
    fn model_outputs(&mut self, outputs: &[i32], params: &HashMap<i32, Params>) -> Vec<i32> {
        let mut new_outputs = outputs.to_vec();
        for (k, &o) in outputs.iter().enumerate() {
            if self.float_of.get(&o) == Some(&o) || self.int8_of.get(&o) != Some(&o) {
                continue;
            }
            // Every tensor retyped to int8 has parameters.
            let (IoType::Float | IoType::Uint8, Some(&(s, zp))) = (self.io, params.get(&o)) else {
                continue;
            };
            let name = graph::tensors(self.m)[o as usize].name.clone();
            let f = match self
                .float_of
                .get(&o)
                .copied()
                .filter(|_| self.io == IoType::Float)
            {
                Some(f) => f,
                None => {
                    let mut nt = graph::tensors(self.m)[o as usize].clone();
                    let code = if self.io == IoType::Float {
                        nt.type_ = TensorType::FLOAT32;
                        nt.quantization = None;
                        self.dequantize_code
                    } else {
                        nt.type_ = TensorType::UINT8;
                        nt.quantization = qparams(vec![s], vec![zp + 128], 0);
                        self.quantize_code
                    };
                    let f = graph::add_tensor(self.m, nt);
                    self.push(code, o, f);
                    f
                }
            };
            graph::tensors_mut(self.m)[f as usize].name = name.clone();
            graph::tensors_mut(self.m)[o as usize].name =
                Some(format!("{}_int8", name.as_deref().unwrap_or("output")));
            new_outputs[k] = f;
        }
        new_outputs
    }
}

/// A tensor's shape as sizes (negative dimensions as 0).
fn dims(t: &TensorT) -> Vec<usize> {
    t.shape.iter().flatten().map(|d| (*d).max(0) as usize).collect()
}

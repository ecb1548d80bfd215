//! What the int8 rewrite will do, decided on the float graph before any
//! edit: which ops become int8, and the parameters of every activation
//! they read or write. Each op's tensors are classified once here, so the
//! rewrite never has to re-check what this step established.

use std::collections::HashMap;

use super::kernels::{fixed_output, int8_version, same_scale, weight_channel_dim};
use super::Int8Summary;
use crate::convert::calibrate::Ranges;
use crate::convert::{graph, quant, ConvertError, IoType};
use crate::tflite::schema::{BuiltinOperator as Op, ModelT, TensorType};

/// Scale and zero point of an int8 tensor.
pub type Params = (f32, i64);

/// One input of a quantized op. `A` is what an activation carries: its
/// tensor while ops are being selected, tensor and parameters after.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand<A> {
    /// An omitted optional input (-1).
    Omitted,
    /// A float32 constant and its values.
    FloatConst { tensor: i32, values: Vec<f32> },
    /// Any other constant (int32 axes or shapes, float16): left as it is.
    OtherConst(i32),
    /// A float activation, with a range from calibration.
    Activation(A),
}

impl<A> Operand<A> {
    fn map<B>(self, f: impl FnOnce(A) -> Result<B, ConvertError>) -> Result<Operand<B>, ConvertError> {
        Ok(match self {
            Operand::Omitted => Operand::Omitted,
            Operand::FloatConst { tensor, values } => Operand::FloatConst { tensor, values },
            Operand::OtherConst(t) => Operand::OtherConst(t),
            Operand::Activation(a) => Operand::Activation(f(a)?),
        })
    }
}

impl Operand<(i32, Params)> {
    /// The tensor index, -1 when omitted.
    pub fn tensor(&self) -> i32 {
        match self {
            Operand::Omitted => -1,
            Operand::FloatConst { tensor, .. }
            | Operand::OtherConst(tensor)
            | Operand::Activation((tensor, _)) => *tensor,
        }
    }

    pub fn params(&self) -> Option<Params> {
        match self {
            Operand::Activation((_, p)) => Some(*p),
            _ => None,
        }
    }
}

/// An op that becomes int8, its tensors resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantOp {
    pub kind: Op,
    /// One per entry of the op's input list, in order.
    pub inputs: Vec<Operand<(i32, Params)>>,
    /// The first output and its parameters (every quantizable op has one).
    pub output: (i32, Params),
    /// Any further outputs.
    pub more_outputs: Vec<(i32, Params)>,
}

impl QuantOp {
    /// The scale of input 0 (1 when it is not an activation): biases and
    /// weight-scale floors are relative to it.
    pub fn input_scale(&self) -> f32 {
        self.inputs.first().and_then(Operand::params).map_or(1.0, |p| p.0)
    }
}

/// Subgraph 0 as the planning steps read it.
#[derive(Debug, Clone)]
pub struct Graph {
    pub ops: Vec<OpTensors>,
    /// Per tensor: has constant data.
    pub consts: Vec<bool>,
    /// Per tensor: is float32.
    pub float: Vec<bool>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// An op's kind, display name and tensor lists, extracted once.
#[derive(Debug, Clone)]
pub struct OpTensors {
    pub kind: Op,
    pub name: String,
    /// As listed, -1 for an omitted input.
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

impl Graph {
    /// Reads subgraph 0 of `m`, whose indices `graph::check` has validated.
    pub fn read(m: &ModelT) -> Result<Self, ConvertError> {
        let sg = graph::subgraph0(m)?;
        let ts = graph::tensors(m);
        let ops = graph::ops(m)
            .iter()
            .map(|op| OpTensors {
                kind: graph::op_of(m, op).unwrap_or(Op::CUSTOM),
                name: graph::op_name(m, op),
                inputs: op.inputs.clone().unwrap_or_default(),
                outputs: op.outputs.clone().unwrap_or_default(),
            })
            .collect();
        Ok(Graph {
            ops,
            consts: ts.iter().map(|t| graph::is_const(m, t)).collect(),
            float: ts.iter().map(|t| t.type_ == TensorType::FLOAT32).collect(),
            inputs: sg.inputs.clone().unwrap_or_default(),
            outputs: sg.outputs.clone().unwrap_or_default(),
        })
    }

    pub fn is_const(&self, t: i32) -> bool {
        self.consts[t as usize]
    }

    fn is_float(&self, t: i32) -> bool {
        self.float[t as usize]
    }
}

/// An op step 1 found quantizable; activations still without parameters.
#[derive(Debug, Clone)]
struct Candidate {
    inputs: Vec<Operand<i32>>,
    output: i32,
    more_outputs: Vec<i32>,
}

/// The plan: per op whether and how it becomes int8, and the parameters
/// of every activation a quantized op touches.
#[derive(Debug, Clone)]
pub struct Plan {
    pub graph: Graph,
    /// Per op of subgraph 0: `Some` when it becomes int8.
    pub ops: Vec<Option<QuantOp>>,
    pub params: HashMap<i32, Params>,
}

/// Plans the quantization of `m` with `ranges`; counts what becomes int8
/// and what stays float into `summary`.
pub fn plan(
    m: &ModelT,
    ranges: &Ranges,
    io: IoType,
    summary: &mut Int8Summary,
) -> Result<Plan, ConvertError> {
    let g = Graph::read(m)?;
    let mut selected: Vec<Option<Candidate>> = g.ops.iter().map(|op| select(m, &g, op, ranges)).collect();
    let boundary = keep_float_boundary(&g, &mut selected, &graph::consumers(m), io);
    count(&g, &selected, &boundary, summary);
    let params = activation_params(&g, &selected, ranges);
    let ops = selected
        .into_iter()
        .zip(&g.ops)
        .enumerate()
        .map(|(k, (c, op))| c.map(|c| resolve(k, op.kind, c, &params)).transpose())
        .collect::<Result<_, _>>()?;
    Ok(Plan {
        graph: g,
        ops,
        params,
    })
}

/// Step 1: an op becomes int8 when it has an int8 kernel, its outputs and
/// activation inputs are float with calibrated ranges, its constants are
/// readable, and (weighted ops) its weights are a float constant.
fn select(m: &ModelT, g: &Graph, op: &OpTensors, ranges: &Ranges) -> Option<Candidate> {
    int8_version(op.kind)?;
    let (&output, more) = op.outputs.split_first()?;
    if !op
        .outputs
        .iter()
        .all(|o| g.is_float(*o) && ranges.ranges.contains_key(o))
    {
        return None;
    }
    let ts = graph::tensors(m);
    let mut inputs = Vec::with_capacity(op.inputs.len());
    for &i in &op.inputs {
        inputs.push(if i < 0 {
            Operand::Omitted
        } else if g.is_const(i) {
            if !g.is_float(i) {
                Operand::OtherConst(i)
            } else {
                Operand::FloatConst {
                    tensor: i,
                    values: graph::const_f32(m, &ts[i as usize])?,
                }
            }
        } else if g.is_float(i) && ranges.ranges.contains_key(&i) {
            Operand::Activation(i)
        } else {
            return None;
        });
    }
    if weight_channel_dim(op.kind).is_some() && !matches!(inputs.get(1), Some(Operand::FloatConst { .. })) {
        return None;
    }
    Some(Candidate {
        inputs,
        output,
        more_outputs: more.to_vec(),
    })
}

/// Step 2: data-movement ops (CONCATENATION, RESHAPE, SQUEEZE) whose
/// results only reach float consumers (a float op, or a model output with
/// `--io-type float`) stay float: each input then crosses into float at
/// its own scale. Quantized, the SSD's concatenated heads would share the
/// widest head's scale (box encodings: 0.34 instead of 0.02-0.03).
/// Returns which ops were turned back to float.
fn keep_float_boundary(
    g: &Graph,
    selected: &mut [Option<Candidate>],
    consumers: &HashMap<i32, Vec<usize>>,
    io: IoType,
) -> Vec<bool> {
    let mut boundary = vec![false; g.ops.len()];
    loop {
        let mut changed = false;
        for k in (0..g.ops.len()).rev() {
            if selected[k].is_none()
                || !matches!(g.ops[k].kind, Op::CONCATENATION | Op::RESHAPE | Op::SQUEEZE)
            {
                continue;
            }
            let float_only = g.ops[k].outputs.iter().all(|o| {
                let readers = consumers.get(o).map_or(&[][..], Vec::as_slice);
                let is_output = g.outputs.contains(o);
                (is_output || !readers.is_empty())
                    && (!is_output || io == IoType::Float)
                    && readers.iter().all(|c| selected[*c].is_none())
            });
            if float_only {
                selected[k] = None;
                boundary[k] = true;
                changed = true;
            }
        }
        if !changed {
            return boundary;
        }
    }
}

/// Op counts for the report; QUANTIZE and DEQUANTIZE ops are not counted.
fn count(g: &Graph, selected: &[Option<Candidate>], boundary: &[bool], summary: &mut Int8Summary) {
    for (k, op) in g.ops.iter().enumerate() {
        if selected[k].is_some() {
            *summary.quantized.entry(op.name.clone()).or_insert(0) += 1;
        } else if boundary[k] {
            summary.float_boundary += 1;
        } else if !matches!(op.kind, Op::QUANTIZE | Op::DEQUANTIZE) {
            *summary.kept_float.entry(op.name.clone()).or_insert(0) += 1;
        }
    }
}

/// Union-find root of `t`, compressing the path.
fn find(parent: &mut HashMap<i32, i32>, t: i32) -> i32 {
    let p = *parent.get(&t).unwrap_or(&t);
    if p == t {
        return t;
    }
    let r = find(parent, p);
    parent.insert(t, r);
    r
}

/// Step 3: activation parameters. Same-scale ops join their first input
/// and output into one group sharing the union of their ranges; groups
/// holding a LOGISTIC, SOFTMAX or TANH output take its fixed parameters.
fn activation_params(g: &Graph, selected: &[Option<Candidate>], ranges: &Ranges) -> HashMap<i32, Params> {
    let quantized = || {
        selected
            .iter()
            .zip(&g.ops)
            .filter_map(|(c, op)| Some((c.as_ref()?, op.kind)))
    };
    let mut parent: HashMap<i32, i32> = HashMap::new();
    for (c, kind) in quantized() {
        // CONCATENATION inputs keep their own ranges: one shared range
        // would squeeze the narrow ones (the SSD's box heads lost 12 dB), so
        // each input whose scale differs gets a requantizing QUANTIZE.
        if !same_scale(kind) || kind == Op::CONCATENATION {
            continue;
        }
        if let Some(Operand::Activation(i)) = c.inputs.first() {
            let (a, b) = (find(&mut parent, *i), find(&mut parent, c.output));
            if a != b {
                parent.insert(a, b);
            }
        }
    }
    let mut fixed: HashMap<i32, Params> = HashMap::new();
    for (c, kind) in quantized() {
        if let Some(p) = fixed_output(kind) {
            fixed.insert(find(&mut parent, c.output), p);
        }
    }
    // Every activation a quantized op reads or writes, in op order.
    let mut touched: Vec<i32> = Vec::new();
    for (c, _) in quantized() {
        let ins = c.inputs.iter().filter_map(|i| match i {
            Operand::Activation(t) => Some(*t),
            _ => None,
        });
        let outs = std::iter::once(&c.output).chain(&c.more_outputs).copied();
        touched.extend(ins.chain(outs.filter(|o| !g.is_const(*o))));
    }
    let mut group_range: HashMap<i32, (f32, f32)> = HashMap::new();
    for &t in &touched {
        let root = find(&mut parent, t);
        // Step 1 took only tensors with a range.
        if let Some(&r) = ranges.ranges.get(&t) {
            let g = group_range.entry(root).or_insert(r);
            g.0 = g.0.min(r.0);
            g.1 = g.1.max(r.1);
        }
    }
    let mut params: HashMap<i32, Params> = HashMap::new();
    for &t in &touched {
        let root = find(&mut parent, t);
        let p = match (fixed.get(&root), group_range.get(&root)) {
            (Some(p), _) => *p,
            (None, Some(&(lo, hi))) => quant::asymmetric(lo, hi),
            (None, None) => continue,
        };
        params.insert(t, p);
    }
    params
}

/// Attaches parameters to a candidate's activations. An output without
/// parameters is a constant written by an op: not a valid model.
fn resolve(k: usize, kind: Op, c: Candidate, params: &HashMap<i32, Params>) -> Result<QuantOp, ConvertError> {
    let with_params = |t: i32| {
        params.get(&t).map(|p| (t, *p)).ok_or_else(|| {
            ConvertError::Unsupported(format!("invalid model: operator {k} writes constant tensor {t}"))
        })
    };
    Ok(QuantOp {
        kind,
        inputs: c
            .inputs
            .into_iter()
            .map(|i| i.map(with_params))
            .collect::<Result<_, _>>()?,
        output: with_params(c.output)?,
        more_outputs: c
            .more_outputs
            .into_iter()
            .map(with_params)
            .collect::<Result<_, _>>()?,
    })
}

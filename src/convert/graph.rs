//! Small edits of the owned model tree shared by every mode: op codes,
//! constant data, new tensors/buffers/ops, folding of DEQUANTIZE ops on
//! constants and removal of what no op uses any more.

use std::collections::{HashMap, HashSet};

use super::fp16;
use super::ConvertError;
use crate::tflite::schema::{
    BufferT, BuiltinOperator as Op, BuiltinOptionsT, ModelT, OperatorCodeT, OperatorT, SubGraphT, TensorT,
    TensorType,
};

/// The real op of an op code: old converters fill only
/// `deprecated_builtin_code` (and leave `builtin_code` = 0 = ADD), new ones
/// saturate the old field at 127; the larger one is right.
pub fn resolved(code: &OperatorCodeT) -> Op {
    Op(i32::from(code.deprecated_builtin_code).max(code.builtin_code.0))
}

/// Writes both op code fields the way current converters do.
pub fn normalize_opcodes(m: &mut ModelT) {
    for c in m.operator_codes.iter_mut().flatten() {
        let op = resolved(c);
        c.builtin_code = op;
        c.deprecated_builtin_code = op.0.min(127) as i8;
    }
}

/// The op of `op`, or `None` when its opcode index is out of range.
pub fn op_of(m: &ModelT, op: &OperatorT) -> Option<Op> {
    m.operator_codes
        .as_ref()?
        .get(op.opcode_index as usize)
        .map(resolved)
}

/// A display name: builtin name or custom code.
pub fn op_name(m: &ModelT, op: &OperatorT) -> String {
    let codes = m.operator_codes.as_deref().unwrap_or_default();
    match codes.get(op.opcode_index as usize) {
        Some(c) if resolved(c) == Op::CUSTOM => c.custom_code.clone().unwrap_or_else(|| "CUSTOM".into()),
        Some(c) => resolved(c)
            .variant_name()
            .map_or_else(|| format!("BUILTIN_{}", resolved(c).0), str::to_owned),
        None => "INVALID".into(),
    }
}

/// Index of the op code for `op` (added if missing), with its version
/// raised to at least `version`.
pub fn opcode(m: &mut ModelT, op: Op, version: i32) -> u32 {
    let codes = m.operator_codes.get_or_insert_with(Vec::new);
    if let Some(i) = codes.iter().position(|c| resolved(c) == op && op != Op::CUSTOM) {
        codes[i].version = codes[i].version.max(version);
        return i as u32;
    }
    codes.push(OperatorCodeT {
        deprecated_builtin_code: op.0.min(127) as i8,
        builtin_code: op,
        version,
        custom_code: None,
    });
    (codes.len() - 1) as u32
}

/// Raises the version of the op code `op` uses.
pub fn raise_version(m: &mut ModelT, op: &OperatorT, version: i32) {
    if let Some(c) = m
        .operator_codes
        .as_mut()
        .and_then(|c| c.get_mut(op.opcode_index as usize))
    {
        c.version = c.version.max(version);
    }
}

pub fn subgraph0(m: &ModelT) -> Result<&SubGraphT, ConvertError> {
    m.subgraphs
        .as_ref()
        .and_then(|s| s.first())
        .ok_or_else(|| ConvertError::Unsupported("the model has no subgraph".into()))
}

/// Checks every index subgraph 0 uses, so later steps can index freely.
pub fn check(m: &ModelT) -> Result<(), ConvertError> {
    let sg = subgraph0(m)?;
    let nt = sg.tensors.as_ref().map_or(0, Vec::len);
    let nb = m.buffers.as_ref().map_or(0, Vec::len);
    let nc = m.operator_codes.as_ref().map_or(0, Vec::len);
    let bad = |what: String| Err(ConvertError::Unsupported(format!("invalid model: {what}")));
    for (i, t) in sg.tensors.iter().flatten().enumerate() {
        if t.buffer as usize >= nb {
            return bad(format!("tensor {i} refers to buffer {}", t.buffer));
        }
    }
    let ok = |i: i32| i == -1 || (i >= 0 && (i as usize) < nt);
    for i in sg.inputs.iter().chain(sg.outputs.iter()).flatten() {
        if *i < 0 || !ok(*i) {
            return bad(format!("subgraph input/output {i}"));
        }
    }
    for (k, op) in sg.operators.iter().flatten().enumerate() {
        if op.opcode_index as usize >= nc {
            return bad(format!("operator {k} uses opcode {}", op.opcode_index));
        }
        for i in op.inputs.iter().chain(op.outputs.iter()).flatten() {
            if !ok(*i) {
                return bad(format!("operator {k} refers to tensor {i}"));
            }
        }
        if op.outputs.iter().flatten().any(|i| *i < 0) {
            return bad(format!("operator {k} has an omitted output"));
        }
    }
    Ok(())
}

/// The data of tensor `t`'s buffer, if it has any (a constant).
pub fn const_data<'a>(m: &'a ModelT, t: &TensorT) -> Option<&'a [u8]> {
    m.buffers
        .as_ref()?
        .get(t.buffer as usize)?
        .data
        .as_deref()
        .filter(|d| !d.is_empty() && t.buffer != 0)
}

pub fn is_const(m: &ModelT, t: &TensorT) -> bool {
    const_data(m, t).is_some()
}

pub fn num_elements(t: &TensorT) -> usize {
    t.shape
        .iter()
        .flatten()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .product()
}

/// A constant's values as f32 (float32, float16 or int32), if it is one.
pub fn const_f32(m: &ModelT, t: &TensorT) -> Option<Vec<f32>> {
    let d = const_data(m, t)?;
    match t.type_ {
        TensorType::FLOAT32 => Some(
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        TensorType::FLOAT16 => Some(
            d.chunks_exact(2)
                .map(|c| fp16::to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        _ => None,
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Appends a buffer holding `data`; returns its index.
pub fn add_buffer(m: &mut ModelT, data: Vec<u8>) -> u32 {
    let b = m.buffers.get_or_insert_with(|| vec![BufferT::default()]);
    if b.is_empty() {
        b.push(BufferT::default());
    }
    b.push(BufferT {
        data: Some(data),
        ..Default::default()
    });
    (b.len() - 1) as u32
}

/// Appends a tensor to subgraph 0; returns its index.
pub fn add_tensor(m: &mut ModelT, t: TensorT) -> i32 {
    let ts = m.subgraphs.as_mut().expect("checked")[0]
        .tensors
        .get_or_insert_with(Vec::new);
    ts.push(t);
    (ts.len() - 1) as i32
}

pub fn tensors(m: &ModelT) -> &[TensorT] {
    m.subgraphs.as_ref().expect("checked")[0]
        .tensors
        .as_deref()
        .unwrap_or_default()
}

pub fn tensors_mut(m: &mut ModelT) -> &mut Vec<TensorT> {
    m.subgraphs.as_mut().expect("checked")[0]
        .tensors
        .get_or_insert_with(Vec::new)
}

/// Takes subgraph 0's operator list out (to be rebuilt and put back).
pub fn take_ops(m: &mut ModelT) -> Vec<OperatorT> {
    m.subgraphs.as_mut().expect("checked")[0]
        .operators
        .take()
        .unwrap_or_default()
}

pub fn put_ops(m: &mut ModelT, ops: Vec<OperatorT>) {
    m.subgraphs.as_mut().expect("checked")[0].operators = Some(ops);
}

pub fn ops(m: &ModelT) -> &[OperatorT] {
    m.subgraphs.as_ref().expect("checked")[0]
        .operators
        .as_deref()
        .unwrap_or_default()
}

/// A single-input single-output op with the given options.
pub fn simple_op(opcode_index: u32, input: i32, output: i32, options: BuiltinOptionsT) -> OperatorT {
    OperatorT {
        opcode_index,
        inputs: Some(vec![input]),
        outputs: Some(vec![output]),
        builtin_options: options,
        ..Default::default()
    }
}

/// Replaces every DEQUANTIZE whose input is a constant (fp16 or int8
/// weights) by a float32 constant, so the graph sees plain float weights.
/// Returns how many were folded. The output keeps the input's shape, as
/// LiteRT's kernel does; a different stored shape (other than none) is an
/// error rather than a constant whose buffer does not fit its shape.
pub fn fold_constant_dequantize(m: &mut ModelT) -> Result<usize, ConvertError> {
    let ops = take_ops(m);
    let mut kept = Vec::with_capacity(ops.len());
    let mut folded = 0;
    let mut ops = ops.into_iter().enumerate();
    while let Some((k, op)) = ops.next() {
        let is_deq = op_of(m, &op) == Some(Op::DEQUANTIZE);
        let (i, o) = (
            op.inputs.as_ref().and_then(|v| v.first().copied()),
            op.outputs.as_ref().and_then(|v| v.first().copied()),
        );
        if let (true, Some(i), Some(o)) = (is_deq, i, o) {
            if i >= 0 {
                let t = &tensors(m)[i as usize];
                let values = const_f32(m, t).or_else(|| dequantize_const(m, t));
                if let Some(v) = values {
                    let shape = t.shape.clone().unwrap_or_default();
                    let out_shape = tensors(m)[o as usize].shape.clone().unwrap_or_default();
                    if !out_shape.is_empty() && out_shape != shape {
                        // Put the ops back: the model is left as it was.
                        kept.push(op);
                        kept.extend(ops.map(|(_, op)| op));
                        put_ops(m, kept);
                        return Err(ConvertError::Unsupported(format!(
                            "invalid model: DEQUANTIZE operator {k} turns tensor {i} of shape {shape:?} \
                             into tensor {o} of shape {out_shape:?}"
                        )));
                    }
                    let b = add_buffer(m, f32_bytes(&v));
                    let out = &mut tensors_mut(m)[o as usize];
                    out.buffer = b;
                    out.type_ = TensorType::FLOAT32;
                    out.quantization = None;
                    out.shape = Some(shape);
                    folded += 1;
                    continue;
                }
            }
        }
        kept.push(op);
    }
    put_ops(m, kept);
    Ok(folded)
}

/// A quantized constant (int8, uint8, int32) as real values.
pub fn dequantize_const(m: &ModelT, t: &TensorT) -> Option<Vec<f32>> {
    let d = const_data(m, t)?;
    let q = t.quantization.as_ref()?;
    let scales = q.scale.as_deref().filter(|s| !s.is_empty())?;
    let zps = q.zero_point.as_deref().unwrap_or_default();
    let raw: Vec<i64> = match t.type_ {
        TensorType::INT8 => d.iter().map(|b| i64::from(*b as i8)).collect(),
        TensorType::UINT8 => d.iter().map(|b| i64::from(*b)).collect(),
        TensorType::INT32 => d
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => return None,
    };
    // Per-channel: channel of element k along quantized_dimension.
    let shape: Vec<usize> = t.shape.iter().flatten().map(|d| (*d).max(1) as usize).collect();
    let dim = usize::try_from(q.quantized_dimension).unwrap_or(0);
    let (channels, inner) = if scales.len() > 1 && dim < shape.len() {
        (shape[dim], shape[dim + 1..].iter().product::<usize>())
    } else {
        (1, 1)
    };
    if scales.len() > 1 && scales.len() != channels {
        return None;
    }
    Some(
        raw.iter()
            .enumerate()
            .map(|(k, q)| {
                let c = if channels > 1 { (k / inner) % channels } else { 0 };
                let zp = zps.get(c).copied().unwrap_or(0);
                ((q - zp) as f64 * f64::from(scales[c])) as f32
            })
            .collect(),
    )
}

/// Drops tensors no op or subgraph input/output of subgraph 0 refers to,
/// and empties buffers no tensor or metadata refers to (indices of
/// buffers are kept; tensor indices are remapped everywhere, signature
/// defs included).
pub fn remove_unused(m: &mut ModelT) {
    let sg = &mut m.subgraphs.as_mut().expect("checked")[0];
    let n = sg.tensors.as_ref().map_or(0, Vec::len);
    let mut used = vec![false; n];
    let mark = |v: &Option<Vec<i32>>, used: &mut Vec<bool>| {
        for i in v.iter().flatten() {
            if *i >= 0 && (*i as usize) < n {
                used[*i as usize] = true;
            }
        }
    };
    mark(&sg.inputs, &mut used);
    mark(&sg.outputs, &mut used);
    for op in sg.operators.iter().flatten() {
        mark(&op.inputs, &mut used);
        mark(&op.outputs, &mut used);
        mark(&op.intermediates, &mut used);
    }
    for s in m.signature_defs.iter().flatten() {
        if s.subgraph_index == 0 {
            for t in s.inputs.iter().flatten().chain(s.outputs.iter().flatten()) {
                if (t.tensor_index as usize) < n {
                    used[t.tensor_index as usize] = true;
                }
            }
        }
    }
    let mut remap = vec![-1i32; n];
    let mut next = 0;
    for (i, u) in used.iter().enumerate() {
        if *u {
            remap[i] = next;
            next += 1;
        }
    }
    let fix = |v: &mut Option<Vec<i32>>| {
        for i in v.iter_mut().flatten() {
            if *i >= 0 && (*i as usize) < n {
                *i = remap[*i as usize];
            }
        }
    };
    fix(&mut sg.inputs);
    fix(&mut sg.outputs);
    for op in sg.operators.iter_mut().flatten() {
        fix(&mut op.inputs);
        fix(&mut op.outputs);
        fix(&mut op.intermediates);
    }
    if let Some(ts) = sg.tensors.take() {
        sg.tensors = Some(
            ts.into_iter()
                .zip(&used)
                .filter_map(|(t, u)| u.then_some(t))
                .collect(),
        );
    }
    for s in m.signature_defs.iter_mut().flatten() {
        if s.subgraph_index == 0 {
            for t in s
                .inputs
                .iter_mut()
                .flatten()
                .chain(s.outputs.iter_mut().flatten())
            {
                if (t.tensor_index as usize) < n {
                    t.tensor_index = remap[t.tensor_index as usize].max(0) as u32;
                }
            }
        }
    }
    // Buffers.
    let mut live: HashSet<usize> = HashSet::new();
    for sg in m.subgraphs.iter().flatten() {
        for t in sg.tensors.iter().flatten() {
            live.insert(t.buffer as usize);
        }
    }
    for md in m.metadata.iter().flatten() {
        live.insert(md.buffer as usize);
    }
    for b in m.metadata_buffer.iter().flatten() {
        live.insert(*b as usize);
    }
    for (i, b) in m.buffers.iter_mut().flatten().enumerate() {
        if !live.contains(&i) {
            b.data = None;
        }
    }
}

/// For each tensor of subgraph 0, the operators that read it.
pub fn consumers(m: &ModelT) -> HashMap<i32, Vec<usize>> {
    let mut c: HashMap<i32, Vec<usize>> = HashMap::new();
    for (k, op) in ops(m).iter().enumerate() {
        for i in op.inputs.iter().flatten() {
            if *i >= 0 {
                c.entry(*i).or_default().push(k);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An fp16 constant [2] behind a DEQUANTIZE whose output has `out_shape`.
    fn fp16_behind_dequantize(out_shape: Option<Vec<i32>>) -> ModelT {
        let mut m = ModelT {
            version: 3,
            buffers: Some(vec![BufferT::default()]),
            subgraphs: Some(vec![SubGraphT::default()]),
            ..Default::default()
        };
        let data = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| fp16::from_f32(*v).to_le_bytes())
            .collect();
        let b = add_buffer(&mut m, data);
        let w = add_tensor(
            &mut m,
            TensorT {
                name: Some("w".into()),
                shape: Some(vec![2]),
                type_: TensorType::FLOAT16,
                buffer: b,
                ..Default::default()
            },
        );
        let o = add_tensor(
            &mut m,
            TensorT {
                name: Some("w_f32".into()),
                shape: out_shape,
                ..Default::default()
            },
        );
        let code = opcode(&mut m, Op::DEQUANTIZE, 2);
        let sg = &mut m.subgraphs.as_mut().unwrap()[0];
        sg.operators = Some(vec![OperatorT {
            opcode_index: code,
            inputs: Some(vec![w]),
            outputs: Some(vec![o]),
            ..Default::default()
        }]);
        m
    }

    #[test]
    fn folding_keeps_the_constant_consistent_with_its_shape() {
        for shape in [Some(vec![2]), None, Some(vec![])] {
            let mut m = fp16_behind_dequantize(shape.clone());
            assert_eq!(fold_constant_dequantize(&mut m).unwrap(), 1, "{shape:?}");
            let t = &tensors(&m)[1];
            assert_eq!(t.shape.as_deref(), Some(&[2][..]));
            assert_eq!(const_f32(&m, t).unwrap(), [1.5, -2.0]);
            assert!(ops(&m).is_empty());
        }
        for shape in [vec![3], vec![-1], vec![1, 2]] {
            let mut m = fp16_behind_dequantize(Some(shape.clone()));
            let before = m.clone();
            let e = fold_constant_dequantize(&mut m).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "unsupported model: invalid model: DEQUANTIZE operator 0 turns tensor 0 of shape [2] \
                     into tensor 1 of shape {shape:?}"
                )
            );
            assert_eq!(m, before, "the model is left as it was");
        }
    }
}

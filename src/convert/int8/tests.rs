//! The planning and rewrite steps on hand-built graphs with literal
//! ranges: no calibration, no runtime.

use std::collections::HashMap;

use super::plan::{plan, Params, Plan};
use super::{quantize, Int8Summary};
use crate::convert::build::{i32_bytes, GraphBuilder};
use crate::convert::calibrate::Ranges;
use crate::convert::{graph, quant, ConvertError, IoType};
use crate::tflite::schema::{BuiltinOperator as Op, BuiltinOptionsT, ModelT, TensorT, TensorType};

const NONE: BuiltinOptionsT = BuiltinOptionsT::NONE;

fn ranges(r: &[(i32, (f32, f32))]) -> Ranges {
    Ranges {
        ranges: r.iter().copied().collect(),
        ..Default::default()
    }
}

fn planned(m: &ModelT, r: &Ranges, io: IoType) -> (Plan, Int8Summary) {
    let mut s = Int8Summary::default();
    let p = plan(m, r, io, &mut s).unwrap();
    (p, s)
}

fn counts(v: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn params(p: &Plan, t: i32) -> Params {
    *p.params
        .get(&t)
        .unwrap_or_else(|| panic!("no parameters for tensor {t}"))
}

fn tensor(m: &ModelT, t: i32) -> &TensorT {
    &graph::tensors(m)[t as usize]
}

fn scales(t: &TensorT) -> Vec<f32> {
    t.quantization.as_ref().unwrap().scale.clone().unwrap()
}

/// Ops of subgraph 0 by name, in order.
fn op_names(m: &ModelT) -> Vec<String> {
    graph::ops(m).iter().map(|op| graph::op_name(m, op)).collect()
}

#[test]
fn ops_without_an_int8_kernel_a_range_or_constant_weights_stay_float() {
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 2]);
    let w = g.float_const("w", &[2, 2], &[1.0, -1.0, 0.5, 0.25]);
    let b = g.float_const("b", &[2], &[0.1, -0.1]);
    let y = g.float("y", &[1, 2]);
    let z = g.float("z", &[1, 2]);
    let u = g.float("u", &[1, 2]);
    // Weights that are an activation: no int8 FULLY_CONNECTED.
    let wx = g.float("w_activation", &[2, 2]);
    let v = g.float("v", &[1, 2]);
    g.op(Op::FULLY_CONNECTED, &[x, w, b], y, NONE);
    g.op(Op::EXP, &[y], z, NONE);
    g.op(Op::RELU, &[z], u, NONE);
    g.op(Op::FULLY_CONNECTED, &[x, wx, -1], v, NONE);
    let m = g.finish(&[x, wx], &[u, v], "t");
    let r = ranges(&[
        (x, (-1.0, 1.0)),
        (y, (-2.0, 2.0)),
        (z, (0.0, 8.0)),
        (wx, (-1.0, 1.0)),
        (v, (-1.0, 1.0)),
    ]);
    let (p, s) = planned(&m, &r, IoType::Float);
    let quantized: Vec<bool> = p.ops.iter().map(Option::is_some).collect();
    // EXP: no int8 kernel; RELU: its output has no range.
    assert_eq!(quantized, [true, false, false, false]);
    assert_eq!(s.quantized, counts(&[("FULLY_CONNECTED", 1)]));
    assert_eq!(
        s.kept_float,
        counts(&[("EXP", 1), ("RELU", 1), ("FULLY_CONNECTED", 1)])
    );
    assert_eq!(s.float_boundary, 0);
}

#[test]
fn data_movement_read_only_by_float_ops_stays_float() {
    // x -> RELU -> a -> RESHAPE -> b -> EXP -> c
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 4]);
    let a = g.float("a", &[1, 4]);
    let shape = g.tensor("shape", &[2], TensorType::INT32, None, Some(i32_bytes(&[2, 2])));
    let b = g.float("b", &[2, 2]);
    let c = g.float("c", &[2, 2]);
    g.op(Op::RELU, &[x], a, NONE);
    g.op(Op::RESHAPE, &[a, shape], b, NONE);
    g.op(Op::EXP, &[b], c, NONE);
    let m = g.finish(&[x], &[c], "t");
    let r = ranges(&[
        (x, (-1.0, 1.0)),
        (a, (0.0, 1.0)),
        (b, (0.0, 1.0)),
        (c, (1.0, 3.0)),
    ]);
    let (p, s) = planned(&m, &r, IoType::Float);
    assert!(p.ops[0].is_some() && p.ops[1].is_none());
    assert_eq!(s.float_boundary, 1);
    assert_eq!(s.quantized, counts(&[("RELU", 1)]));
    assert_eq!(
        s.kept_float,
        counts(&[("EXP", 1)]),
        "the boundary op is not kept_float"
    );

    // A RESHAPE that is a model output: float with --io-type float,
    // int8 with --io-type int8.
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 4]);
    let a = g.float("a", &[1, 4]);
    let shape = g.tensor("shape", &[2], TensorType::INT32, None, Some(i32_bytes(&[2, 2])));
    let b = g.float("b", &[2, 2]);
    g.op(Op::RELU, &[x], a, NONE);
    g.op(Op::RESHAPE, &[a, shape], b, NONE);
    let m = g.finish(&[x], &[b], "t");
    let r = ranges(&[(x, (-1.0, 1.0)), (a, (0.0, 1.0)), (b, (0.0, 1.0))]);
    let (p, s) = planned(&m, &r, IoType::Float);
    assert!(p.ops[1].is_none() && s.float_boundary == 1);
    let (p, s) = planned(&m, &r, IoType::Int8);
    assert!(p.ops[1].is_some() && s.float_boundary == 0);
    assert_eq!(s.quantized, counts(&[("RELU", 1), ("RESHAPE", 1)]));
}

#[test]
fn same_scale_ops_share_the_union_of_their_ranges() {
    // x -> MAX_POOL_2D -> p -> RESHAPE -> r, and RELU x -> y beside them.
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 2, 2, 1]);
    let p = g.float("p", &[1, 1, 1, 1]);
    let shape = g.tensor("shape", &[2], TensorType::INT32, None, Some(i32_bytes(&[1, 1])));
    let r = g.float("r", &[1, 1]);
    let y = g.float("y", &[1, 2, 2, 1]);
    g.op(Op::MAX_POOL_2D, &[x], p, NONE);
    g.op(Op::RESHAPE, &[p, shape], r, NONE);
    g.op(Op::RELU, &[x], y, NONE);
    let m = g.finish(&[x], &[r, y], "t");
    let rs = ranges(&[
        (x, (-1.0, 1.0)),
        (p, (0.0, 2.0)),
        (r, (-3.0, 0.5)),
        (y, (0.0, 1.0)),
    ]);
    let (plan, _) = planned(&m, &rs, IoType::Int8);
    let shared = quant::asymmetric(-3.0, 2.0);
    for t in [x, p, r] {
        assert_eq!(params(&plan, t), shared, "tensor {t}");
    }
    // RELU is not a same-scale op: its output keeps its own range.
    assert_eq!(params(&plan, y), quant::asymmetric(0.0, 1.0));
    assert!(
        !plan.params.contains_key(&shape),
        "constants have no activation parameters"
    );
}

#[test]
fn concatenation_inputs_keep_their_ranges_and_are_requantized() {
    let mut g = GraphBuilder::new();
    let a = g.float("a", &[1, 2]);
    let b = g.float("b", &[1, 2]);
    let c = g.float("c", &[1, 4]);
    g.op(Op::CONCATENATION, &[a, b], c, NONE);
    let mut m = g.finish(&[a, b], &[c], "t");
    let r = ranges(&[(a, (0.0, 1.0)), (b, (-4.0, 4.0)), (c, (-4.0, 4.0))]);
    let (plan, _) = planned(&m, &r, IoType::Int8);
    assert_eq!(params(&plan, a), quant::asymmetric(0.0, 1.0));
    assert_eq!(params(&plan, b), quant::asymmetric(-4.0, 4.0));
    assert_eq!(params(&plan, c), quant::asymmetric(-4.0, 4.0));
    quantize(&mut m, &r, IoType::Int8, false).unwrap();
    // Only `a` differs from the output's parameters: one QUANTIZE, int8 to int8.
    assert_eq!(op_names(&m), ["QUANTIZE", "CONCATENATION"]);
    let op = &graph::ops(&m)[0];
    let (i, o) = (op.inputs.as_ref().unwrap()[0], op.outputs.as_ref().unwrap()[0]);
    assert_eq!(i, a);
    assert_eq!(tensor(&m, o).type_, TensorType::INT8);
    assert_eq!(tensor(&m, o).name.as_deref(), Some("a_requantized"));
    assert_eq!(scales(tensor(&m, o)), [quant::asymmetric(-4.0, 4.0).0]);
    assert_eq!(graph::ops(&m)[1].inputs.as_deref(), Some(&[o, b][..]));
}

#[test]
fn logistic_softmax_and_tanh_outputs_get_fixed_parameters() {
    // x -> LOGISTIC -> l -> RESHAPE -> r; x -> SOFTMAX -> s; x -> TANH -> t.
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 4]);
    let l = g.float("l", &[1, 4]);
    let shape = g.tensor("shape", &[2], TensorType::INT32, None, Some(i32_bytes(&[2, 2])));
    let r = g.float("r", &[2, 2]);
    let s = g.float("s", &[1, 4]);
    let t = g.float("t", &[1, 4]);
    g.op(Op::LOGISTIC, &[x], l, NONE);
    g.op(Op::RESHAPE, &[l, shape], r, NONE);
    g.op(Op::SOFTMAX, &[x], s, NONE);
    g.op(Op::TANH, &[x], t, NONE);
    let m = g.finish(&[x], &[r, s, t], "t");
    let wide = (-10.0, 10.0);
    let rs = ranges(&[
        (x, wide),
        (l, (0.0, 1.0)),
        (r, (0.0, 0.9)),
        (s, (0.0, 0.7)),
        (t, (-0.5, 0.5)),
    ]);
    let (plan, _) = planned(&m, &rs, IoType::Int8);
    assert_eq!(params(&plan, l), (1.0 / 256.0, -128));
    // The RESHAPE after it shares the fixed parameters.
    assert_eq!(params(&plan, r), (1.0 / 256.0, -128));
    assert_eq!(params(&plan, s), (1.0 / 256.0, -128));
    assert_eq!(params(&plan, t), (1.0 / 128.0, 0));
    assert_eq!(params(&plan, x), quant::asymmetric(-10.0, 10.0));
}

/// x [1,1,1,2] -> CONV_2D (3 output channels, the last all zero) -> y.
fn conv(bias: [f32; 3]) -> (ModelT, Ranges, [i32; 4]) {
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 1, 1, 2]);
    let w = g.float_const("w", &[3, 1, 1, 2], &[1.0, -0.5, 0.25, 0.1, 0.0, 0.0]);
    let b = g.float_const("b", &[3], &bias);
    let y = g.float("y", &[1, 1, 1, 3]);
    g.op(Op::CONV_2D, &[x, w, b], y, NONE);
    let m = g.finish(&[x], &[y], "t");
    let r = ranges(&[(x, (-1.0, 1.0)), (y, (-2.0, 6.0))]);
    (m, r, [x, w, b, y])
}

#[test]
fn conv_weights_are_per_channel_and_bias_scales_are_input_times_weight_scales() {
    let (mut m, r, [x, _, _, y]) = conv([0.5, -0.25, 3.0]);
    let s = quantize(&mut m, &r, IoType::Int8, false).unwrap();
    assert_eq!(
        op_names(&m),
        ["CONV_2D"],
        "int8 input and output: no boundary ops"
    );
    let op = &graph::ops(&m)[0];
    let ins = op.inputs.clone().unwrap();
    assert_eq!(ins[0], x);
    let (w, b) = (tensor(&m, ins[1]), tensor(&m, ins[2]));
    assert_eq!((w.type_, b.type_), (TensorType::INT8, TensorType::INT32));
    let wq = w.quantization.as_ref().unwrap();
    assert_eq!(wq.quantized_dimension, 0, "output channels of [O,H,W,I]");
    assert_eq!(wq.zero_point.as_deref(), Some(&[0, 0, 0][..]));
    let ws = scales(w);
    assert_eq!(ws[..2], [1.0 / 127.0, 0.25 / 127.0]);
    let in_scale = quant::asymmetric(-1.0, 1.0).0;
    let want: Vec<f32> = ws.iter().map(|w| w * in_scale).collect();
    assert_eq!(scales(b), want);
    let data = graph::const_data(&m, w).unwrap();
    assert_eq!(
        data.iter().map(|v| *v as i8).collect::<Vec<_>>(),
        [127, -64, 127, 51, 0, 0]
    );
    // Channel 2 is dead: its scale comes from the bias, which stays exact
    // within the int32's headroom.
    assert_eq!(s.dead_channels, 1);
    let bias = graph::const_data(&m, b).unwrap();
    let q2 = i32::from_le_bytes(bias[8..12].try_into().unwrap());
    assert!(q2.unsigned_abs() <= 1 << 20, "{q2}");
    assert!(
        (q2 as f32 * want[2] - 3.0).abs() < 1e-5,
        "{}",
        q2 as f32 * want[2]
    );
    // The output in place, the kernel version raised for int8.
    assert_eq!(op.outputs.as_deref(), Some(&[y][..]));
    assert_eq!(tensor(&m, y).type_, TensorType::INT8);
    assert_eq!(s.int8_tensors, [y]);
    assert_eq!(
        m.operator_codes.as_ref().unwrap()[op.opcode_index as usize].version,
        3
    );
}

#[test]
fn depthwise_weights_are_per_channel_along_the_last_dimension() {
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 1, 1, 2]);
    let w = g.float_const("w", &[1, 1, 1, 2], &[2.0, -0.5]);
    let y = g.float("y", &[1, 1, 1, 2]);
    g.op(Op::DEPTHWISE_CONV_2D, &[x, w, -1], y, NONE);
    let mut m = g.finish(&[x], &[y], "t");
    let r = ranges(&[(x, (-1.0, 1.0)), (y, (-2.0, 2.0))]);
    let s = quantize(&mut m, &r, IoType::Int8, false).unwrap();
    let ins = graph::ops(&m)[0].inputs.clone().unwrap();
    assert_eq!(ins[2], -1, "an omitted bias stays omitted");
    let wt = tensor(&m, ins[1]);
    assert_eq!(wt.quantization.as_ref().unwrap().quantized_dimension, 3);
    assert_eq!(scales(wt), [2.0 / 127.0, 0.5 / 127.0]);
    assert_eq!(s.dead_channels, 0);
}

#[test]
fn bias_correction_needs_the_flag_and_the_input_channel_means() {
    // Weights 0.1 and 0.3 do not round exactly at scale 0.3/127.
    let with = |flag: bool, means: Option<Vec<f32>>| {
        let mut g = GraphBuilder::new();
        let x = g.float("x", &[1, 2]);
        let w = g.float_const("w", &[1, 2], &[0.1, 0.3]);
        let b = g.float_const("b", &[1], &[0.0]);
        let y = g.float("y", &[1, 1]);
        g.op(Op::FULLY_CONNECTED, &[x, w, b], y, NONE);
        let mut m = g.finish(&[x], &[y], "t");
        let mut r = ranges(&[(x, (-1.0, 1.0)), (y, (-1.0, 1.0))]);
        if let Some(means) = means {
            r.channel_means = HashMap::from([(x, means)]);
        }
        let s = quantize(&mut m, &r, IoType::Int8, flag).unwrap();
        let bias = tensor(&m, graph::ops(&m)[0].inputs.as_ref().unwrap()[2]);
        let q = i32::from_le_bytes(graph::const_data(&m, bias).unwrap()[..4].try_into().unwrap());
        (s.bias_corrected, q)
    };
    assert_eq!(with(false, Some(vec![50.0, 0.0])), (0, 0));
    assert_eq!(with(true, None), (0, 0));
    let (n, q) = with(true, Some(vec![50.0, 0.0]));
    assert_eq!(n, 1);
    assert_ne!(q, 0, "the bias absorbed the first weight's rounding error x 50");
}

#[test]
fn io_types_retype_the_model_boundary() {
    let build = || {
        let mut g = GraphBuilder::new();
        let x = g.float("x", &[1, 2]);
        let y = g.float("y", &[1, 2]);
        g.op(Op::RELU, &[x], y, NONE);
        let m = g.finish(&[x], &[y], "t");
        (m, ranges(&[(x, (-1.0, 1.0)), (y, (0.0, 1.0))]), x, y)
    };
    let io_of = |m: &ModelT| {
        let sg = graph::subgraph0(m).unwrap();
        let (i, o) = (sg.inputs.as_ref().unwrap()[0], sg.outputs.as_ref().unwrap()[0]);
        (tensor(m, i).clone(), tensor(m, o).clone())
    };
    let (px, py) = (quant::asymmetric(-1.0, 1.0), quant::asymmetric(0.0, 1.0));

    let (mut m, r, _, y) = build();
    quantize(&mut m, &r, IoType::Float, false).unwrap();
    assert_eq!(op_names(&m), ["QUANTIZE", "RELU", "DEQUANTIZE"]);
    let (i, o) = io_of(&m);
    assert_eq!((i.type_, o.type_), (TensorType::FLOAT32, TensorType::FLOAT32));
    assert_eq!(
        o.name.as_deref(),
        Some("y"),
        "the boundary keeps the output's name"
    );
    assert_eq!(tensor(&m, y).name.as_deref(), Some("y_int8"));

    let (mut m, r, ..) = build();
    quantize(&mut m, &r, IoType::Int8, false).unwrap();
    assert_eq!(op_names(&m), ["RELU"]);
    let (i, o) = io_of(&m);
    assert_eq!((i.type_, o.type_), (TensorType::INT8, TensorType::INT8));
    assert_eq!(i.quantization.unwrap().zero_point, Some(vec![px.1]));

    let (mut m, r, ..) = build();
    quantize(&mut m, &r, IoType::Uint8, false).unwrap();
    assert_eq!(op_names(&m), ["QUANTIZE", "RELU", "QUANTIZE"]);
    let (i, o) = io_of(&m);
    assert_eq!((i.type_, o.type_), (TensorType::UINT8, TensorType::UINT8));
    assert_eq!(i.quantization.unwrap().zero_point, Some(vec![px.1 + 128]));
    assert_eq!(o.quantization.unwrap().zero_point, Some(vec![py.1 + 128]));
}

#[test]
fn a_constant_written_by_an_op_is_an_error_and_the_model_is_left_as_it_was() {
    let mut g = GraphBuilder::new();
    let x = g.float("x", &[1, 2]);
    let c = g.float_const("c", &[1, 2], &[1.0, 2.0]);
    g.op(Op::RELU, &[x], c, NONE);
    let mut m = g.finish(&[x], &[c], "t");
    let before = m.clone();
    let r = ranges(&[(x, (-1.0, 1.0)), (c, (0.0, 2.0))]);
    let e = quantize(&mut m, &r, IoType::Int8, false).unwrap_err();
    assert!(matches!(e, ConvertError::Unsupported(_)), "{e}");
    assert!(
        e.to_string().contains("operator 0 writes constant tensor 1"),
        "{e}"
    );
    assert_eq!(m, before);
}

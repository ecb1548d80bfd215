//! IEEE half precision by hand (round to nearest even), and `--mode
//! float16`: float32 constants stored as float16 behind DEQUANTIZE ops.

use super::graph;
use crate::tflite::schema::{BuiltinOperator as Op, BuiltinOptionsT, ModelT, TensorT, TensorType};

/// f32 -> f16 bits, round to nearest even; overflow goes to infinity.
pub fn from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Inf or NaN (keep NaN quiet).
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero).
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = u32::from(rem > mid || (rem == mid && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && half & 1 == 1));
    // A carry into the exponent is the correct rounding (up to infinity).
    sign | (half + round) as u16
}

/// f16 bits -> f32 (exact).
pub fn to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Stores every float32 constant read by an op as float16, with a
/// DEQUANTIZE op (version 3) producing the float32 tensor the users read.
/// Returns how many constants were converted.
pub fn to_float16(m: &mut ModelT) -> usize {
    let consumers = graph::consumers(m);
    let sg = graph::subgraph0(m).expect("checked");
    let io: Vec<i32> = sg
        .inputs
        .iter()
        .chain(sg.outputs.iter())
        .flatten()
        .copied()
        .collect();
    let mut targets: Vec<i32> = consumers.keys().copied().collect();
    targets.sort_unstable();
    let deq = graph::opcode(m, Op::DEQUANTIZE, 3);
    let mut new_ops = Vec::new();
    for t in targets {
        let tensor = graph::tensors(m)[t as usize].clone();
        if tensor.type_ != TensorType::FLOAT32 || io.contains(&t) {
            continue;
        }
        let Some(values) = graph::const_f32(m, &tensor) else {
            continue;
        };
        let data: Vec<u8> = values.iter().flat_map(|v| from_f32(*v).to_le_bytes()).collect();
        let buffer = graph::add_buffer(m, data);
        let f16 = TensorT {
            name: Some(format!("{}_fp16", tensor.name.as_deref().unwrap_or("weights"))),
            type_: TensorType::FLOAT16,
            buffer,
            shape: tensor.shape.clone(),
            ..Default::default()
        };
        let h = graph::add_tensor(m, f16);
        graph::tensors_mut(m)[t as usize].buffer = 0;
        new_ops.push(graph::simple_op(deq, h, t, BuiltinOptionsT::NONE));
    }
    let n = new_ops.len();
    new_ops.extend(graph::take_ops(m));
    graph::put_ops(m, new_ops);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions_match_known_values() {
        for (f, h) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (6.1035156e-5, 0x0400),
            (5.9604645e-8, 0x0001),
            (0.33325195, 0x3555),
        ] {
            assert_eq!(from_f32(f), h, "{f}");
            assert_eq!(to_f32(h), f, "{h:#x}");
        }
        assert_eq!(from_f32(1e6), 0x7c00, "overflow is infinity");
        // Ties go to even; just above a tie rounds up.
        assert_eq!(from_f32(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(from_f32(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert!(to_f32(from_f32(f32::NAN)).is_nan());
        // Every half survives a round trip.
        for h in 0..=u16::MAX {
            let f = to_f32(h);
            if !f.is_nan() {
                assert_eq!(from_f32(f), h);
            }
        }
    }
}

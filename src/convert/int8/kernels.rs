//! What LiteRT's int8 kernels support and require, per op.

use crate::tflite::schema::BuiltinOperator as Op;

/// int8 kernel version of each supported op; `None`: not quantizable here.
pub fn int8_version(op: Op) -> Option<i32> {
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
pub fn same_scale(op: Op) -> bool {
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
pub fn fixed_output(op: Op) -> Option<(f32, i64)> {
    match op {
        Op::LOGISTIC | Op::SOFTMAX => Some((1.0 / 256.0, -128)),
        Op::TANH => Some((1.0 / 128.0, 0)),
        _ => None,
    }
}

/// The output-channel dimension of a weighted op's weights (input 1):
/// dim 0 of CONV_2D [O,H,W,I] and FULLY_CONNECTED [O,I] weights, dim 3 of
/// depthwise [1,H,W,O]. `None`: the op has no weights to quantize per channel.
pub fn weight_channel_dim(op: Op) -> Option<usize> {
    match op {
        Op::CONV_2D | Op::FULLY_CONNECTED => Some(0),
        Op::DEPTHWISE_CONV_2D => Some(3),
        _ => None,
    }
}

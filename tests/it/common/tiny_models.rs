//! Tiny but real `.tflite` models that the tests build themselves with the
//! library's graph builder (`edgevision::convert::build`), so classifier
//! decoding can be tested through the real LiteRT runtime without shipping
//! a classifier.
//!
//! The "colour classifier" takes an RGB image [1, 32, 32, 3], averages it
//! over height and width (MEAN over axes [1, 2]) into one colour [1, 3], and
//! scores that colour against four classes with a FULLY_CONNECTED layer:
//!
//! | class | weights (r, g, b) | bias |
//! |-------|-------------------|------|
//! | red   | ( 2, -1, -1)      | 0    |
//! | green | (-1,  2, -1)      | 0    |
//! | blue  | (-1, -1,  2)      | 0    |
//! | grey  | ( 0,  0,  0)      | 2    |
//!
//! With inputs in -1..1 (float models get `(pixel - 127.5) / 127.5`), a
//! solid red image gives logits [4, -2, -2, 2], grey gives [0, 0, 0, 2].
//!
//! Variants ([`Variant`]): float logits, float with a final SOFTMAX, and a
//! uint8-quantized graph (MEAN, FULLY_CONNECTED, SOFTMAX all in uint8).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgevision::convert::build::{self, f32_bytes as le_f32, i32_bytes as le_i32, GraphBuilder};
use edgevision::tflite::schema::{
    BuiltinOperator, BuiltinOptionsT, GatherOptionsT, ReducerOptionsT, SoftmaxOptionsT, TensorType,
};

/// Class names in output order.
pub const CLASSES: [&str; 4] = ["red", "green", "blue", "grey"];
/// Number of classes C.
pub const NUM_CLASSES: usize = CLASSES.len();
/// Model input side (the input is [1, SIDE, SIDE, 3]).
pub const SIDE: i32 = 32;
/// FULLY_CONNECTED weights [C, 3], row = class.
pub const WEIGHTS: [[f32; 3]; NUM_CLASSES] =
    [[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0], [0.0; 3]];
/// FULLY_CONNECTED bias [C].
pub const BIAS: [f32; NUM_CLASSES] = [0.0, 0.0, 0.0, 2.0];

/// Quantization of the uint8 variant's input and MEAN output: real = (q - 128) * 2/255.
pub const Q_IN_SCALE: f32 = 2.0 / 255.0;
pub const Q_IN_ZERO: i64 = 128;
/// Weights: real = (q - 128) / 32, so -1, 0 and 2 are exact.
pub const Q_W_SCALE: f32 = 1.0 / 32.0;
pub const Q_W_ZERO: i64 = 128;
/// Logits: real = (q - 128) / 16, range -8..7.94.
pub const Q_LOGIT_SCALE: f32 = 1.0 / 16.0;
pub const Q_LOGIT_ZERO: i64 = 128;
/// uint8 SOFTMAX output, as TFLite requires: real = q / 256.
pub const Q_PROB_SCALE: f32 = 1.0 / 256.0;

/// Which colour classifier to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// float32 in, float32 logits out (MEAN, FULLY_CONNECTED).
    FloatLogits,
    /// float32 in, float32 probabilities out (MEAN, FULLY_CONNECTED, SOFTMAX).
    FloatSoftmax,
    /// uint8 in, uint8 probabilities out (all three ops quantized).
    Uint8Softmax,
}

impl Variant {
    fn tag(self) -> &'static str {
        match self {
            Variant::FloatLogits => "float_logits",
            Variant::FloatSoftmax => "float_softmax",
            Variant::Uint8Softmax => "uint8_softmax",
        }
    }
}

/// The logits the float model computes for a solid image of colour `rgb`
/// (with the engine's default float normalisation).
pub fn expected_logits(rgb: [u8; 3]) -> [f32; NUM_CLASSES] {
    let x = rgb.map(|p| (p as f32 - 127.5) / 127.5);
    let mut out = BIAS;
    for (o, w) in out.iter_mut().zip(WEIGHTS.iter()) {
        *o += w.iter().zip(x.iter()).map(|(w, x)| w * x).sum::<f32>();
    }
    out
}

/// Softmax, computed in f64 for a reference value.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

fn mean_options() -> BuiltinOptionsT {
    let mut o = ReducerOptionsT::default();
    o.keep_dims = false;
    BuiltinOptionsT::ReducerOptions(Box::new(o))
}

fn fc_options() -> BuiltinOptionsT {
    BuiltinOptionsT::FullyConnectedOptions(Box::default())
}

fn softmax_options() -> BuiltinOptionsT {
    let mut o = SoftmaxOptionsT::default();
    o.beta = 1.0;
    BuiltinOptionsT::SoftmaxOptions(Box::new(o))
}

/// Builds the colour classifier as `.tflite` bytes.
pub fn build_colour_classifier(variant: Variant) -> Vec<u8> {
    let c = NUM_CLASSES as i32;
    let mut g = GraphBuilder::new();
    let axes = g.tensor("axes", &[2], TensorType::INT32, None, Some(le_i32(&[1, 2])));
    let (input, output) = match variant {
        Variant::FloatLogits | Variant::FloatSoftmax => {
            let f32t = TensorType::FLOAT32;
            let input = g.tensor("image", &[1, SIDE, SIDE, 3], f32t, None, None);
            let mean = g.tensor("mean_colour", &[1, 3], f32t, None, None);
            let weights: Vec<f32> = WEIGHTS.iter().flatten().copied().collect();
            let w = g.tensor("fc_weights", &[c, 3], f32t, None, Some(le_f32(&weights)));
            let b = g.tensor("fc_bias", &[c], f32t, None, Some(le_f32(&BIAS)));
            let logits = g.tensor("logits", &[1, c], f32t, None, None);
            g.op(BuiltinOperator::MEAN, &[input, axes], mean, mean_options());
            g.op(
                BuiltinOperator::FULLY_CONNECTED,
                &[mean, w, b],
                logits,
                fc_options(),
            );
            if variant == Variant::FloatSoftmax {
                let probs = g.tensor("probabilities", &[1, c], f32t, None, None);
                g.op(BuiltinOperator::SOFTMAX, &[logits], probs, softmax_options());
                (input, probs)
            } else {
                (input, logits)
            }
        }
        Variant::Uint8Softmax => {
            let u8t = TensorType::UINT8;
            let q_in = Some((Q_IN_SCALE, Q_IN_ZERO));
            let input = g.tensor("image", &[1, SIDE, SIDE, 3], u8t, q_in, None);
            let mean = g.tensor("mean_colour", &[1, 3], u8t, q_in, None);
            let weights: Vec<u8> = WEIGHTS
                .iter()
                .flatten()
                .map(|w| (w / Q_W_SCALE + Q_W_ZERO as f32).round() as u8)
                .collect();
            let w = g.tensor(
                "fc_weights",
                &[c, 3],
                u8t,
                Some((Q_W_SCALE, Q_W_ZERO)),
                Some(weights),
            );
            let bias_scale = Q_IN_SCALE * Q_W_SCALE;
            let bias: Vec<i32> = BIAS.iter().map(|b| (b / bias_scale).round() as i32).collect();
            let b = g.tensor(
                "fc_bias",
                &[c],
                TensorType::INT32,
                Some((bias_scale, 0)),
                Some(le_i32(&bias)),
            );
            let logits = g.tensor("logits", &[1, c], u8t, Some((Q_LOGIT_SCALE, Q_LOGIT_ZERO)), None);
            let probs = g.tensor("probabilities", &[1, c], u8t, Some((Q_PROB_SCALE, 0)), None);
            g.op(BuiltinOperator::MEAN, &[input, axes], mean, mean_options());
            g.op(
                BuiltinOperator::FULLY_CONNECTED,
                &[mean, w, b],
                logits,
                fc_options(),
            );
            g.op(BuiltinOperator::SOFTMAX, &[logits], probs, softmax_options());
            (input, probs)
        }
    };
    build::to_bytes(&g.finish(
        &[input],
        &[output],
        &format!("edgevision test colour classifier ({})", variant.tag()),
    ))
}

/// A classifier that loads but fails on every inference: the colour
/// classifier's MEAN, then a GATHER of the mean colour's channels whose
/// constant indices [0, 1, 2, 7] point past its 3 channels. LiteRT checks
/// gather indices when the op runs, not when the model is prepared.
pub fn build_failing_classifier() -> Vec<u8> {
    let f32t = TensorType::FLOAT32;
    let mut g = GraphBuilder::new();
    let axes = g.tensor("axes", &[2], TensorType::INT32, None, Some(le_i32(&[1, 2])));
    let input = g.tensor("image", &[1, SIDE, SIDE, 3], f32t, None, None);
    let mean = g.tensor("mean_colour", &[1, 3], f32t, None, None);
    let indices = g.tensor(
        "indices",
        &[4],
        TensorType::INT32,
        None,
        Some(le_i32(&[0, 1, 2, 7])),
    );
    let scores = g.tensor("scores", &[1, 4], f32t, None, None);
    g.op(BuiltinOperator::MEAN, &[input, axes], mean, mean_options());
    let mut gather = GatherOptionsT::default();
    gather.axis = 1;
    g.op(
        BuiltinOperator::GATHER,
        &[mean, indices],
        scores,
        BuiltinOptionsT::GatherOptions(Box::new(gather)),
    );
    build::to_bytes(&g.finish(
        &[input],
        &[scores],
        "edgevision test classifier failing at every inference",
    ))
}

/// A file removed when dropped.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `bytes` to a fresh file in the temp directory whose name ends
    /// with `suffix`.
    pub fn new(suffix: &str, bytes: &[u8]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("edgevision-test-{}-{n}-{suffix}", std::process::id()));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        TempFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Builds the colour classifier and writes it to a temporary `.tflite` file.
pub fn colour_classifier_file(variant: Variant) -> TempFile {
    TempFile::new(
        &format!("colour_{}.tflite", variant.tag()),
        &build_colour_classifier(variant),
    )
}

/// A one-name-a-line labels file holding `names`.
pub fn labels_file(names: &[&str]) -> TempFile {
    let mut text = names.join("\n");
    text.push('\n');
    TempFile::new("labels.txt", text.as_bytes())
}

//! `edgevision convert`: post-training quantization of `.tflite` models.
//!
//! * [`model_io`]: bytes <-> owned flatbuffer tree, external buffers kept.
//! * [`graph`]: small edits shared by the modes (op codes, constants, folding).
//! * [`build`]: hand-built one-subgraph models, for tests.
//! * [`fp16`]: `float16` mode; [`dynamic`]: `dynamic` mode;
//!   [`dequantize`]: `float32` mode; [`int8`]: full-integer mode with
//!   ranges from [`calibrate`] (the real LiteRT runtime).
//! * [`report`]: sizes, op counts, SQNR/cosine, detection agreement.

#[doc(hidden)]
pub mod build;
pub mod calibrate;
pub mod dequantize;
pub mod dynamic;
pub mod fp16;
pub mod graph;
pub mod int8;
pub mod model_io;
pub mod quant;
pub mod report;

use std::path::PathBuf;

use crate::infer::{InferError, Runtime};
use crate::tflite::schema::{ModelT, TensorType};
use crate::tflite::ModelFileError;

pub use calibrate::RangeMethod;
pub use report::Report;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error(transparent)]
    Model(#[from] ModelFileError),
    #[error("the model is already quantized ({0}); int8 and dynamic modes need a float model (use --mode float32 first)")]
    AlreadyQuantized(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("calibration: {0}")]
    Calibration(String),
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The safety net: what convert would write fails the checks its input
    /// passed, so nothing is written.
    #[error("the converted model fails validation, nothing written: {0}")]
    InvalidOutput(ModelFileError),
}

/// Conversion mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// float32 constants stored as float16 behind DEQUANTIZE ops.
    Float16,
    /// int8 weights of conv/fully-connected ops, float activations.
    Dynamic,
    /// Full integer: int8 weights and activations (needs --calibration).
    Int8,
    /// Dequantize a quantized model into a float32 one.
    Float32,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Float16 => "float16",
            Mode::Dynamic => "dynamic",
            Mode::Int8 => "int8",
            Mode::Float32 => "float32",
        }
    }
}

/// Type of the model's input and quantized outputs in `int8` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IoType {
    /// Keep float at the boundary (QUANTIZE/DEQUANTIZE ops inside).
    #[default]
    Float,
    Int8,
    Uint8,
}

/// Everything [`convert`] needs besides the model.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub mode: Mode,
    /// JPEG/PNG directory: calibration for `int8`, comparison images for the report.
    pub calibration: Option<PathBuf>,
    pub samples: usize,
    pub io_type: IoType,
    pub range: RangeMethod,
    pub threads: usize,
    /// Compare against the input model on the images (needs them).
    pub compare: bool,
    /// Fold the mean output error of int8 weights into the biases (int8).
    pub bias_correction: bool,
    /// Held-out JPEG/PNG directory: compare on these instead of the
    /// calibration images (all of them, not `samples`).
    pub validation: Option<PathBuf>,
}

/// A converted model and its report.
pub struct Converted {
    pub bytes: Vec<u8>,
    pub report: Report,
}

/// Describes the first quantized activation or weight, if any.
fn quantized_tensor(m: &ModelT) -> Option<String> {
    graph::tensors(m).iter().find_map(|t| {
        let q = t
            .quantization
            .as_ref()?
            .scale
            .as_ref()
            .filter(|s| !s.is_empty())?;
        let _ = q;
        matches!(t.type_, TensorType::INT8 | TensorType::UINT8 | TensorType::INT16).then(|| {
            format!(
                "tensor {} is {}",
                t.name.as_deref().unwrap_or("?"),
                t.type_.variant_name().unwrap_or("?")
            )
        })
    })
}

/// Converts model `input` (file bytes). `rt` is needed for `int8` and for
/// comparisons.
pub fn convert(
    rt: Option<&'static Runtime>,
    input: &[u8],
    opts: &ConvertOptions,
) -> Result<Converted, ConvertError> {
    let mut m = model_io::read_model_t(input)?;
    graph::check(&m)?;
    graph::normalize_opcodes(&mut m);
    let mut report = Report {
        mode: opts.mode.name().into(),
        input_bytes: input.len(),
        ..Default::default()
    };
    if opts.mode != Mode::Float32 {
        let folded = graph::fold_constant_dequantize(&mut m)?;
        if folded > 0 {
            report.notes.push(format!(
                "folded {folded} DEQUANTIZE ops of constants into float32 weights"
            ));
        }
    }
    let reference = m.clone();
    let need_images =
        opts.mode == Mode::Int8 || (opts.compare && opts.validation.is_none() && opts.calibration.is_some());
    let images = match (&opts.calibration, need_images) {
        (Some(dir), true) => Some(calibrate::load_images(dir, opts.samples)?),
        (None, true) => {
            return Err(ConvertError::Calibration(
                "--mode int8 needs --calibration DIR (JPEG/PNG images)".into(),
            ))
        }
        _ => None,
    };
    if let Some(i) = &images {
        report.calibration_images = i.images.len();
        report.skipped_images = i
            .skipped
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect();
    }
    let runtime =
        || rt.ok_or_else(|| ConvertError::Calibration("the LiteRT runtime is needed for calibration".into()));
    let mut compared_tensors: Vec<i32> = Vec::new();
    match opts.mode {
        Mode::Float16 => {
            let n = fp16::to_float16(&mut m);
            report
                .ops_quantized
                .insert("DEQUANTIZE (float16 constants)".into(), n);
        }
        Mode::Dynamic => {
            if let Some(q) = quantized_tensor(&m) {
                return Err(ConvertError::AlreadyQuantized(q));
            }
            report.ops_quantized = dynamic::quantize_weights(&mut m);
        }
        Mode::Float32 => {
            let d = dequantize::to_float32(&mut m)?;
            report.notes.push(format!(
                "dequantized {} constants and {} activations; restored RELU6 on {} ops and RELU on {}; removed {} QUANTIZE/DEQUANTIZE ops",
                d.constants, d.activations, d.relu6_restored, d.relu_restored, d.removed_ops
            ));
        }
        Mode::Int8 => {
            if let Some(q) = quantized_tensor(&m) {
                return Err(ConvertError::AlreadyQuantized(q));
            }
            let imgs = &images.as_ref().expect("loaded above").images;
            let ranges = calibrate::calibrate(runtime()?, &m, imgs, opts.range, opts.threads)?;
            let s = int8::quantize(&mut m, &ranges, opts.io_type, opts.bias_correction)?;
            report.ops_quantized = s.quantized;
            report.ops_kept_float = s.kept_float;
            if s.dead_channels > 0 {
                report.notes.push(format!(
                    "{} dead weight channels (all |w| < 1e-5) got scales that keep their bias exact",
                    s.dead_channels
                ));
            }
            if s.float_boundary > 0 {
                report.notes.push(format!(
                    "{} data-movement ops (CONCATENATION, RESHAPE, SQUEEZE) that only float consumers read stay float, so each input keeps its own scale",
                    s.float_boundary
                ));
            }
            if s.bias_corrected > 0 {
                report.notes.push(format!(
                    "bias correction: {} weighted ops absorbed their weights' mean rounding error",
                    s.bias_corrected
                ));
            }
            compared_tensors = s.int8_tensors;
        }
    }
    let held_out = match (&opts.validation, opts.compare) {
        (Some(dir), true) => Some(calibrate::load_images(dir, usize::MAX)?),
        _ => None,
    };
    if let Some(v) = &held_out {
        report
            .skipped_images
            .extend(v.skipped.iter().map(|(p, e)| format!("{}: {e}", p.display())));
    }
    let compared = held_out.as_ref().or(images.as_ref());
    if let (Some(imgs), true) = (compared, opts.compare) {
        report.compared_on = if held_out.is_some() {
            "validation"
        } else {
            "calibration"
        }
        .into();
        report.compared_images = imgs.images.len();
        let rt = runtime()?;
        let (outs, tensors) =
            report::compare(rt, &reference, &m, &compared_tensors, &imgs.images, opts.threads)?;
        report.outputs = outs;
        report.tensors = tensors;
        let mut r = reference.clone();
        if let Some(a) = report::detections(rt, &mut r, &imgs.images, opts.threads)? {
            if let Some(b) = report::detections(rt, &mut m, &imgs.images, opts.threads)? {
                report.detections = Some(report::agreement(&a, &b));
            }
        }
    }
    drop(reference);
    graph::remove_unused(&mut m);
    let bytes = model_io::write_model(&mut m, model_io::Layout::Auto);
    // Whatever we write must read back through the same checks.
    crate::tflite::read_model(&bytes).map_err(ConvertError::InvalidOutput)?;
    report.output_bytes = bytes.len();
    report.size_ratio = input.len() as f64 / bytes.len().max(1) as f64;
    Ok(Converted { bytes, report })
}

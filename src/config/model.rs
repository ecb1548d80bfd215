//! `[model]`: the network, how it runs and how its outputs are decoded.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::infer::ssd::{ScoreActivation, SsdDecodeParams};
use crate::infer::DecoderKind;

/// `[model]`: the model file, its labels, and inference settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The `.tflite` model. Default `models/ssd_mobilenet_v2_coco_int8.tflite`.
    pub path: PathBuf,
    /// Label file: `id name` lines or one name a line. `""` = no labels
    /// (class numbers are shown). Default `models/coco_labels.txt`.
    #[serde(deserialize_with = "empty_path_is_none")]
    pub labels: Option<PathBuf>,
    /// CPU threads per interpreter; `0` = chosen with `workers` (see
    /// `pipeline::layout`; `detect` uses all cores). Default 0.
    pub threads: usize,
    /// Interpreters working on alternate frames (0..=64; `0` = one per core,
    /// at most 4). Default 0.
    pub workers: usize,
    /// XNNPACK kernels; `false` uses LiteRT's builtin kernels. Default true.
    pub xnnpack: bool,
    /// How outputs are decoded: `auto` (from the model's outputs),
    /// `postprocess`, `raw_ssd` or `classifier`. Default `auto`.
    pub decoder: DecoderKind,
    /// Classifiers: how many top classes to report. Default 5.
    pub top_k: usize,
    /// Classifiers: `none`, `sigmoid` or `softmax`. Unset: softmax when the
    /// scores are not already a distribution.
    pub classifier_activation: Option<ScoreActivation>,
    /// Input normalisation, real = (pixel - mean) / std. Unset: 127.5 for
    /// float inputs; quantized inputs get the raw pixel.
    pub mean: Option<f32>,
    /// See `mean`. Unset: 127.5 for float inputs.
    pub std: Option<f32>,
    /// `[model.ssd]`: raw SSD heads: box coder, score activation, NMS, and
    /// `[model.ssd.anchors]`. Defaults fit the 300x300 SSD MobileNet.
    pub ssd: SsdDecodeParams,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("models/ssd_mobilenet_v2_coco_int8.tflite"),
            labels: Some(PathBuf::from("models/coco_labels.txt")),
            threads: 0,
            workers: 0,
            xnnpack: true,
            decoder: DecoderKind::Auto,
            top_k: 5,
            classifier_activation: None,
            mean: None,
            std: None,
            ssd: SsdDecodeParams::default(),
        }
    }
}

/// A path where `""` means none.
pub(crate) fn empty_path_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let p = PathBuf::deserialize(d)?;
    Ok((!p.as_os_str().is_empty()).then_some(p))
}

//! One module per subcommand; `main.rs` only dispatches.

pub mod bench;
pub mod bench_model;
pub mod check_config;
pub mod convert;
pub mod detect;
pub mod devices;
pub mod run;

use std::path::PathBuf;

use clap::Args;

use crate::infer::{
    DecodeSettings, DecoderKind, DetectorSettings, FilterSettings, Normalization, Runtime, RuntimeSearch,
    SessionOptions,
};

/// Options shared by every subcommand that runs a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The .tflite model.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// Label file: `id name` lines or one name a line.
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<PathBuf>,
    /// CPU threads for inference (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Use LiteRT's builtin kernels instead of XNNPACK.
    #[arg(long)]
    pub no_xnnpack: bool,
    /// How to decode the outputs (default: chosen from the model).
    #[arg(long, value_enum, default_value = "auto")]
    pub decoder: DecoderArg,
    /// The LiteRT library (libLiteRt.so); see README for the search order.
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DecoderArg {
    Auto,
    Postprocess,
    RawSsd,
    Classifier,
}

impl From<DecoderArg> for DecoderKind {
    fn from(d: DecoderArg) -> Self {
        match d {
            DecoderArg::Auto => DecoderKind::Auto,
            DecoderArg::Postprocess => DecoderKind::Postprocess,
            DecoderArg::RawSsd => DecoderKind::RawSsd,
            DecoderArg::Classifier => DecoderKind::Classifier,
        }
    }
}

impl ModelArgs {
    pub fn runtime(&self) -> anyhow::Result<&'static Runtime> {
        Ok(Runtime::load(&RuntimeSearch {
            cli: self.runtime.clone(),
            config: None,
        })?)
    }

    pub fn session(&self) -> anyhow::Result<SessionOptions> {
        let mut s = SessionOptions::default();
        if let Some(t) = self.threads {
            anyhow::ensure!(t >= 1, "--threads must be 1 or more");
            s.threads = t;
        }
        s.xnnpack = !self.no_xnnpack;
        Ok(s)
    }

    /// Detector settings from the command line: a global threshold and,
    /// for classifiers, `top_k` classes.
    pub fn detector_settings(&self, threshold: f32, top_k: usize) -> anyhow::Result<DetectorSettings> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&threshold),
            "--threshold must be between 0 and 1, not {threshold}"
        );
        Ok(DetectorSettings {
            model: self.model.clone(),
            labels: self.labels.clone(),
            session: self.session()?,
            normalization: Normalization::default(),
            decode: DecodeSettings {
                kind: self.decoder.into(),
                top_k,
                ..Default::default()
            },
            filter: FilterSettings {
                threshold,
                ..Default::default()
            },
        })
    }
}

//! One module per subcommand; `main.rs` only dispatches.

pub mod bench;
pub mod bench_model;
pub mod bench_source;
pub mod check_config;
pub mod convert;
pub mod detect;
pub mod devices;
pub mod run;

use std::path::PathBuf;

use clap::Args;

use crate::config::ModelConfig;

use crate::infer::{
    DecodeSettings, DecoderKind, DetectorSettings, FilterSettings, Normalization, Runtime, RuntimeSearch,
    SessionOptions,
};

/// Options shared by every subcommand that runs a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The .tflite model (default: the daemon's,
    /// models/ssd_mobilenet_v2_coco_int8.tflite).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Label file: `id name` lines or one name a line (default: the default model's COCO labels, else NAME.txt,
    /// NAME_labels.txt or labels.txt beside the model).
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
    /// `--model`, else the daemon's default model.
    pub fn model_path(&self) -> PathBuf {
        let m = self.model.clone().unwrap_or_else(|| ModelConfig::default().path);
        crate::config::installed::locate(&m)
    }

    /// `--labels`; else the default model's labels for the
    /// default model; else a label file beside the model.
    pub fn labels_path(&self) -> Option<PathBuf> {
        if let Some(l) = &self.labels {
            return Some(l.clone());
        }
        let d = ModelConfig::default();
        let default_labels = || d.labels.as_deref().map(crate::config::installed::locate);
        match &self.model {
            None => default_labels(),
            Some(m) if *m == d.path => default_labels(),
            Some(m) => crate::infer::labels::beside_model(m),
        }
    }

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
            let cores = crate::pipeline::layout::usable_cores();
            if t > cores {
                tracing::warn!("--threads {t} is more than the {cores} cores this process may use: {cores}");
            }
            s.threads = t.min(cores);
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
            model: self.model_path(),
            labels: self.labels_path(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelArgs,
    }

    fn args(a: &[&str]) -> ModelArgs {
        Cli::parse_from(std::iter::once("x").chain(a.iter().copied())).model
    }

    #[test]
    fn model_and_labels_default_as_the_daemon_does() {
        let d = ModelConfig::default();
        let a = args(&[]);
        assert_eq!(
            (a.model_path(), a.labels_path()),
            (d.path.clone(), d.labels.clone())
        );
        let a = args(&["--model", d.path.to_str().unwrap()]);
        assert_eq!(a.labels_path(), d.labels);
        assert_eq!(
            args(&["--labels", "x.txt"]).labels_path(),
            Some(PathBuf::from("x.txt"))
        );

        // Another model: the label file beside it, else none.
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("birds.tflite");
        let a = args(&["--model", model.to_str().unwrap()]);
        assert_eq!(a.labels_path(), None);
        std::fs::write(dir.path().join("birds_labels.txt"), "robin\n").unwrap();
        assert_eq!(a.labels_path(), Some(dir.path().join("birds_labels.txt")));
    }
}

//! `edgevision check-config`: load and validate a config file, and load its
//! model and labels into the runtime, without starting anything. The
//! systemd unit runs it before a start and before a reload, so a corrupt
//! model is refused while the running daemon goes on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::infer::Detector;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Check the config and that its files exist, without loading the model
    /// (for a machine without the LiteRT runtime).
    #[arg(long)]
    pub skip_model: bool,
}

/// Prints `FILE: ok (...)`, or returns the first problem (file, line, key).
pub fn run(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load_checked(&args.file)?;
    if args.skip_model {
        println!(
            "{}: ok ({}; model not loaded)",
            args.file.display(),
            cfg.summary()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = super::run::runtime_for(&cfg)?;
    let mut settings = cfg.detector_settings();
    // One small interpreter proves the model and labels work; the daemon's
    // layout is chosen when it starts.
    settings.session.threads = 1;
    let det = Detector::new(rt, &settings)
        .with_context(|| format!("model.path: {} does not load", settings.model.display()))?;
    let unknown = det.labels().unknown_in(&settings.filter);
    if !unknown.is_empty() {
        // Not an error: a label list may be shared by several models.
        eprintln!(
            "{}: warning: no class of the model's labels is called {} (detect.allow, deny, label_thresholds)",
            args.file.display(),
            unknown
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (w, h) = det.input_size();
    println!(
        "{}: ok ({}; model loads: {}, {w}x{h} input, {} labels)",
        args.file.display(),
        cfg.summary(),
        det.kind().as_str(),
        det.labels().len()
    );
    Ok(ExitCode::SUCCESS)
}

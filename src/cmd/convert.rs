//! `edgevision convert`: post-training quantization of a `.tflite` model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::convert::{self, ConvertOptions, IoType, Mode, RangeMethod};
use crate::infer::{Runtime, RuntimeSearch};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model to convert.
    #[arg(long, value_name = "MODEL")]
    pub input: PathBuf,
    /// Where to write the converted model.
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Directory of JPEG/PNG images, or a source URI (rtsp://, http://,
    /// exec:, /dev/videoN, ...; `--samples` frames at 640x480):
    /// calibration (int8) and comparison.
    #[arg(long, value_name = "DIR|URI")]
    pub calibration: Option<PathBuf>,
    /// How many calibration images to use (sorted by name), or frames to take.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Input/output type of an int8 model.
    #[arg(long, value_enum, default_value = "float")]
    pub io_type: IoType,
    /// How per-image activation ranges combine.
    #[arg(long, value_enum, default_value = "min-max")]
    pub range: RangeMethod,
    /// int8: leave the biases as they are (by default each absorbs the mean
    /// output error of its rounded weights on the calibration images).
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Held-out JPEG/PNG directory to compare on instead of the calibration
    /// images (with --report).
    #[arg(long, value_name = "DIR")]
    pub validation: Option<PathBuf>,
    /// Write a JSON report here (comparison needs --calibration or --validation).
    #[arg(long, value_name = "REPORT.json")]
    pub report: Option<PathBuf>,
    /// CPU threads for calibration.
    #[arg(long)]
    pub threads: Option<usize>,
    /// The LiteRT library (libLiteRt.so).
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.samples >= 1, "--samples must be 1 or more");
    let input = crate::tflite::model_file::read_file_checked(&args.input)?;
    let compare = args.report.is_some();
    anyhow::ensure!(
        args.validation.is_none() || compare,
        "--validation needs --report (it only changes what the report compares on)"
    );
    let needs_rt =
        args.mode == Mode::Int8 || (compare && (args.calibration.is_some() || args.validation.is_some()));
    let rt: Option<&'static Runtime> = if needs_rt {
        Some(Runtime::load(&RuntimeSearch {
            cli: args.runtime.clone(),
            config: None,
        })?)
    } else {
        None
    };
    let opts = ConvertOptions {
        mode: args.mode,
        calibration: args.calibration.clone(),
        samples: args.samples,
        io_type: args.io_type,
        range: args.range,
        threads: args
            .threads
            .unwrap_or_else(crate::infer::session::default_threads),
        compare,
        validation: args.validation.clone(),
        bias_correction: !args.no_bias_correction,
    };
    let out = convert::convert(rt, &input, &opts)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    std::fs::write(&args.output, &out.bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    print!("{}", convert::report::summary(&out.report));
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&out.report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

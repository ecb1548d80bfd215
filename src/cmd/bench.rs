//! `edgevision bench`: the daemon's pipeline, headless, on a file source,
//! for a fixed number of frames; prints one JSON object.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::run::{pipeline_settings, runtime_for, Overrides};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pipeline::{FrameTiming, Pipeline};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// Frames to process.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
    /// Pace the source at its configured fps instead of as fast as possible.
    #[arg(long)]
    pub paced: bool,
    /// Print JSON (the only format).
    #[arg(long)]
    pub json: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mean(t: &[FrameTiming], f: impl Fn(&FrameTiming) -> Duration) -> f64 {
    if t.is_empty() {
        return 0.0;
    }
    t.iter().map(|x| ms(f(x))).sum::<f64>() / t.len() as f64
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.frames >= 1, "--frames must be 1 or more");
    let cfg = args.overrides.load()?;
    let rt = runtime_for(&cfg)?;
    let mut settings = pipeline_settings(&cfg)?;
    if !args.paced {
        settings.source_options.fps = 0.0;
    }
    settings.source_options.looping = true;
    settings.frame_limit = Some(args.frames);
    let threads = settings.detector.session.threads;
    let workers = settings.workers;
    let hub = Hub::new(std::sync::Arc::new(Metrics::new()));
    let start = Instant::now();
    let pipeline = Pipeline::start(rt, settings, hub, true)?;
    while !pipeline.finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut timings = pipeline.stop();
    anyhow::ensure!(
        !timings.is_empty(),
        "no frame was processed: is the source readable?"
    );
    let frames = timings.len();
    let mut lat: Vec<Duration> = timings.iter().map(|t| t.latency).collect();
    lat.sort_unstable();
    let pct = |q: f64| ms(lat[((lat.len() - 1) as f64 * q).round() as usize]);
    let inferred: Vec<FrameTiming> = timings.iter().copied().filter(|t| t.inferred).collect();
    let report = json!({
        "frames": frames,
        "seconds": seconds,
        "fps": frames as f64 / seconds,
        "threads": threads,
        "workers": workers,
        "source": cfg.source.uri,
        "model": cfg.model.path.display().to_string(),
        "stage_ms": {
            "decode": mean(&timings, |t| t.decode),
            "preprocess": mean(&inferred, |t| t.preprocess),
            "infer": mean(&inferred, |t| t.infer),
            "annotate": mean(&timings, |t| t.annotate),
            "encode": mean(&timings, |t| t.encode),
        },
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
    });
    timings.clear();
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

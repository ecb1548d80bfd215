//! `edgevision bench-model`: per-invoke time through edgevision's engine
//! (pre-process, run, decode, label, filter) against the runtime alone
//! (run only, on the same input), interleaved in one run so that the noise
//! of a shared machine hits both alike. `--against` adds other models to
//! the same loop (runtime only), for same-run speed ratios between models.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::ModelArgs;
use crate::infer::Detector;

#[derive(Debug, Args)]
pub struct BenchModelArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The image to run on.
    #[arg(long, value_name = "IMAGE")]
    pub image: PathBuf,
    /// Frame size fed to the engine, WxH (default: the model's input size,
    /// so the engine's resize is a no-op and only its own overhead shows).
    #[arg(long, value_name = "WxH")]
    pub frame_size: Option<String>,
    /// Timed iterations of each kind.
    #[arg(long, default_value_t = 300)]
    pub iterations: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Minimum score, as `detect --threshold`.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Other models timed in the same loop (runtime only, same image),
    /// reported with their time relative to `--model`. Repeatable.
    #[arg(long, value_name = "MODEL")]
    pub against: Vec<PathBuf>,
    /// Print JSON (the only format; kept for symmetry with `bench`).
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s.split_once('x').context("--frame-size must look like 640x480")?;
    let (w, h): (u32, u32) = (w.parse()?, h.parse()?);
    anyhow::ensure!(w > 0 && h > 0, "--frame-size must be positive");
    Ok((w, h))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and 90th percentile in milliseconds.
fn stats(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.9))
}

pub fn run(args: BenchModelArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.iterations >= 1, "--iterations must be 1 or more");
    let rt = args.model.runtime()?;
    let settings = args.model.detector_settings(args.threshold, 5)?;
    let mut det = Detector::new(rt, &settings)?;
    let img = crate::capture::images::read_rgb(&args.image)
        .map_err(|e| anyhow::anyhow!("cannot read image {}: {e}", args.image.display()))?;
    let (w, h) = match &args.frame_size {
        Some(s) => parse_size(s)?,
        None => det.input_size(),
    };
    let frame = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut dets = Vec::new();
    for _ in 0..args.warmup {
        det.detect(frame.as_raw(), w, h, &mut dets)?;
        det.run_only()?;
    }
    det.load_input(frame.as_raw(), w, h)?;
    let mut others = Vec::with_capacity(args.against.len());
    for path in &args.against {
        // Defaults for everything model-specific (decoder, normalisation).
        let mut s = crate::infer::DetectorSettings::new(path.clone());
        s.session = settings.session;
        let mut d = Detector::new(rt, &s).with_context(|| format!("--against {}", path.display()))?;
        let (ow, oh) = d.input_size();
        let f = image::imageops::resize(&img, ow, oh, image::imageops::FilterType::Triangle);
        d.load_input(f.as_raw(), ow, oh)?;
        for _ in 0..args.warmup {
            d.run_only()?;
        }
        others.push((path, d, Vec::with_capacity(args.iterations)));
    }
    let n = args.iterations;
    let (mut runtime, mut engine) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut pre, mut infer, mut post) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for _ in 0..n {
        let t = Instant::now();
        det.run_only()?;
        runtime.push(t.elapsed());
        let t = Instant::now();
        let timings = det.detect(frame.as_raw(), w, h, &mut dets)?;
        engine.push(t.elapsed());
        pre.push(timings.preprocess);
        infer.push(timings.infer);
        post.push(timings.decode);
        for (_, d, times) in &mut others {
            let t = Instant::now();
            d.run_only()?;
            times.push(t.elapsed());
        }
    }
    let (rt50, rt90) = stats(&mut runtime);
    let (en50, en90) = stats(&mut engine);
    let (pre50, _) = stats(&mut pre);
    let (inf50, _) = stats(&mut infer);
    let (post50, _) = stats(&mut post);
    let overhead = en50 - rt50;
    let against: Vec<serde_json::Value> = others
        .iter_mut()
        .map(|(path, _, times)| {
            let (p50, p90) = stats(times);
            json!({
                "model": path.display().to_string(),
                "runtime_only_ms": {"p50": p50, "p90": p90},
                "time_vs_model": p50 / rt50,
            })
        })
        .collect();
    let report = json!({
        "model": args.model.model_path().display().to_string(),
        "runtime_library": rt.path().display().to_string(),
        "decoder": format!("{:?}", det.decoder_kind()),
        "threads": settings.session.threads,
        "xnnpack": settings.session.xnnpack,
        "frame": format!("{w}x{h}"),
        "iterations": n,
        "detections": dets.len(),
        "runtime_only_ms": {"p50": rt50, "p90": rt90},
        "engine_ms": {"p50": en50, "p90": en90},
        "engine_stage_ms": {"preprocess": pre50, "infer": inf50, "decode": post50},
        "overhead_ms": overhead,
        "overhead_pct": overhead / rt50 * 100.0,
        "pre_post_ms": pre50 + post50,
        "pre_post_pct": (pre50 + post50) / inf50 * 100.0,
        "against": against,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

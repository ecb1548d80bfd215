//! `edgevision detect`: one-shot detection on image files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::ModelArgs;
use crate::annotate::{draw_detections, AnnotateStyle};
use crate::capture;
use crate::infer::{detection_json, Detection, Detector};

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Minimum score to report (0..1).
    #[arg(long, default_value_t = 0.5, value_name = "T")]
    pub threshold: f32,
    /// Classifier models: how many top classes to report.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top_k: usize,
    /// Print one JSON object per image, one per line.
    #[arg(long)]
    pub json: bool,
    /// Write each image with its detections drawn into this directory.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,
    /// Sources (URIs such as rtsp://, http://, exec:, /dev/videoN,
    /// images:DIR): how many frames to take from each, at 640x480.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub samples: usize,
    /// Images (JPEG, PNG), or source URIs (see `run --source`).
    #[arg(required = true, value_name = "IMAGE|URI")]
    pub images: Vec<PathBuf>,
}

/// Frames taken from a source: their size, and the longest wait for one.
const SOURCE_SIZE: (u32, u32) = (640, 480);
const SOURCE_STALL: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct JsonImage {
    image: String,
    width: u32,
    height: u32,
    inference_ms: f64,
    detections: Vec<serde_json::Value>,
}

pub fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let rt = args.model.runtime()?;
    let settings = args.model.detector_settings(args.threshold, args.top_k)?;
    let mut detector = Detector::new(rt, &settings)?;
    if let Some(dir) = &args.annotate {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    anyhow::ensure!(args.samples >= 1, "--samples must be 1 or more");
    let mut failures = 0usize;
    let mut inputs = 0usize;
    for arg in &args.images {
        // A source URI gives `--samples` frames, named URI#1, URI#2, ...
        let pictures: Vec<(PathBuf, image::RgbImage)> = match capture::grab::source_arg(arg) {
            Some(uri) => {
                let opts = capture::grab::grab_options(SOURCE_SIZE.0, SOURCE_SIZE.1, SOURCE_STALL);
                match capture::grab::grab_frames(&uri, &opts, args.samples) {
                    Ok(frames) => frames
                        .into_iter()
                        .enumerate()
                        .map(|(i, f)| (PathBuf::from(format!("{uri}#{}", i + 1)), f))
                        .collect(),
                    Err(e) => {
                        eprintln!("error: cannot read from source {e}");
                        failures += 1;
                        inputs += 1;
                        continue;
                    }
                }
            }
            None => match crate::capture::images::read_rgb(arg) {
                Ok(img) => vec![(arg.clone(), img)],
                Err(e) => {
                    eprintln!("error: cannot read image {}: {e}", arg.display());
                    failures += 1;
                    inputs += 1;
                    continue;
                }
            },
        };
        for (path, img) in pictures {
            inputs += 1;
            failures += detect_one(&mut detector, &args, &mut out, &path, img)?;
        }
    }
    out.flush()?;
    if failures > 0 {
        eprintln!("{failures} of {inputs} images failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Detects on one picture, prints the result and writes the annotated copy;
/// returns the failures (0 or 1: the copy could not be written).
fn detect_one(
    detector: &mut Detector,
    args: &DetectArgs,
    out: &mut impl Write,
    path: &Path,
    img: image::RgbImage,
) -> anyhow::Result<usize> {
    let mut failures = 0;
    {
        let (dets, timings) = detector.detect_image(&img)?;
        if args.json {
            let obj = JsonImage {
                image: path.display().to_string(),
                width: img.width(),
                height: img.height(),
                inference_ms: (timings.infer.as_secs_f64() * 1e6).round() / 1e3,
                detections: detection_json(&dets),
            };
            writeln!(out, "{}", serde_json::to_string(&obj)?)?;
        } else {
            write_table(out, path, &img, timings.infer.as_secs_f64() * 1e3, &dets)?;
        }
        if let Some(dir) = &args.annotate {
            let mut canvas = img;
            let style = AnnotateStyle::for_size(canvas.width(), canvas.height());
            draw_detections(&mut canvas, &dets, &style);
            let dest = annotated_path(dir, path);
            if let Err(e) = canvas.save(&dest) {
                eprintln!("error: cannot write {}: {e}", dest.display());
                failures += 1;
            }
        }
    }
    Ok(failures)
}

fn annotated_path(dir: &Path, image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dir.join(format!("{stem}.jpg"))
}

fn write_table(
    out: &mut impl Write,
    path: &Path,
    img: &image::RgbImage,
    ms: f64,
    dets: &[Detection],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} ({}x{}, inference {ms:.1} ms)",
        path.display(),
        img.width(),
        img.height()
    )?;
    if dets.is_empty() {
        writeln!(out, "  no detections")?;
    } else {
        writeln!(
            out,
            "  {:<20} {:>6}  {:>5} {:>5} {:>5} {:>5}",
            "label", "score", "left", "top", "right", "bottom"
        )?;
        for d in dets {
            writeln!(
                out,
                "  {:<20} {:>5.1}%  {:>5.0} {:>5.0} {:>5.0} {:>5.0}",
                d.label,
                d.score * 100.0,
                d.bbox.left,
                d.bbox.top,
                d.bbox.right,
                d.bbox.bottom
            )?;
        }
    }
    Ok(())
}

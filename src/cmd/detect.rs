//! `edgevision detect`: one-shot detection on image files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::ModelArgs;
use crate::annotate::{draw_detections, AnnotateStyle};
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
    /// Images (JPEG, PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

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
    let mut failures = 0usize;
    for path in &args.images {
        let img = match crate::capture::images::read_rgb(path) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("error: cannot read image {}: {e}", path.display());
                failures += 1;
                continue;
            }
        };
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
            write_table(&mut out, path, &img, timings.infer.as_secs_f64() * 1e3, &dets)?;
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
    out.flush()?;
    if failures > 0 {
        eprintln!("{failures} of {} images failed", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
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

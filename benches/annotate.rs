//! The annotate stage alone: ten labelled boxes and the FPS overlay drawn on
//! a 640x480 frame, as the pipeline's workers do for every frame.
//!
//!   cargo bench --bench annotate [-- --frames N]
//!
//! Prints one JSON object: per-frame microseconds (mean, p50, p99, max).
//! The frame is restored from a copy before each draw; only the drawing is
//! timed.

use std::time::Instant;

use edgevision::annotate::{draw_detections, draw_text_block, AnnotateStyle};
use edgevision::infer::detection::{BBox, Detection};
use image::{Rgb, RgbImage};

fn det(label: &str, score: f32, l: f32, t: f32, r: f32, b: f32) -> Detection {
    Detection {
        label: label.to_string(),
        class_id: 0,
        score,
        bbox: BBox {
            left: l,
            top: t,
            right: r,
            bottom: b,
        },
    }
}

fn main() {
    let mut frames = 5000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--frames") {
        frames = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(frames);
    }
    let (w, h) = (640, 480);
    let base = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    // Ten boxes as a busy scene gives them: some overlapping, some at edges.
    let dets = [
        det("person", 0.91, 40.0, 60.0, 180.0, 400.0),
        det("person", 0.88, 150.0, 80.0, 300.0, 420.0),
        det("dog", 0.83, 300.0, 250.0, 460.0, 470.0),
        det("bicycle", 0.77, 320.0, 120.0, 600.0, 330.0),
        det("car", 0.71, 480.0, 0.0, 639.0, 110.0),
        det("traffic light", 0.66, 10.0, 5.0, 40.0, 60.0),
        det("kite", 0.61, 250.0, 10.0, 300.0, 50.0),
        det("backpack", 0.55, 90.0, 150.0, 140.0, 220.0),
        det("handbag", 0.52, 220.0, 300.0, 260.0, 350.0),
        det("umbrella", 0.5, 500.0, 380.0, 630.0, 475.0),
    ];
    let style = AnnotateStyle::for_size(w, h);
    let overlay = "29.9 fps  infer 14.2 ms  lat 38 ms";
    let mut img = base.clone();
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames + frames / 10 {
        img.copy_from_slice(&base);
        let t = Instant::now();
        draw_detections(&mut img, &dets, &style);
        draw_text_block(&mut img, 8, h as i32 - 40, &[overlay], &style);
        let us = t.elapsed().as_secs_f64() * 1e6;
        // The first tenth warms caches and is not counted.
        if i >= frames / 10 {
            times.push(us);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{{\"bench\":\"annotate\",\"width\":{w},\"height\":{h},\"boxes\":{},\"frames\":{},\"us_per_frame\":{{\"mean\":{mean:.1},\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}}}",
        dets.len(),
        times.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

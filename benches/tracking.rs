//! The tracking stage alone: the tracker with three zones and two lines,
//! fed the detections of N moving objects per frame, as a worker feeds it
//! after each inference.
//!
//!   cargo bench --bench tracking [-- --frames N]
//!
//! Prints one JSON object a line, for 5 and for 50 objects: microseconds
//! per update (mean, p50, p99, max). Objects walk across the frame with a
//! little jitter, so association, zones, lines and the stationary check
//! all run; events are made and dropped (publishing is not timed).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use edgevision::infer::detection::{BBox, Detection};
use edgevision::track::{Line, ObjectTracker, TrackOutput, TrackingSettings, Zone};

const LABELS: [&str; 4] = ["person", "car", "dog", "bicycle"];

/// A small deterministic generator: the same scene on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn settings() -> TrackingSettings {
    let rect = |name: &str, x0: f32, y0: f32, x1: f32, y1: f32| Zone {
        name: name.into(),
        polygon: vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
        labels: vec![],
        min_frames: 3,
        loiter_ms: 0,
    };
    TrackingSettings {
        zones: vec![
            rect("left", 0.0, 0.0, 0.33, 1.0),
            rect("road", 0.0, 0.6, 1.0, 1.0),
            Zone {
                name: "porch".into(),
                polygon: vec![[0.6, 0.2], [0.9, 0.25], [0.95, 0.6], [0.7, 0.7], [0.55, 0.5]],
                labels: vec!["person".into()],
                min_frames: 3,
                loiter_ms: 2000,
            },
        ],
        lines: vec![
            Line {
                name: "gate".into(),
                a: [0.5, 1.0],
                b: [0.5, 0.0],
                labels: vec![],
            },
            Line {
                name: "kerb".into(),
                a: [0.0, 0.6],
                b: [1.0, 0.55],
                labels: vec![],
            },
        ],
        ..Default::default()
    }
}

fn run(objects: usize, frames: usize) -> serde_json::Value {
    let (w, h) = (640.0f32, 480.0f32);
    let mut rng = Lcg(objects as u64);
    // Position, velocity (pixels per frame) and size of each object.
    let mut state: Vec<[f32; 6]> = (0..objects)
        .map(|_| {
            [
                rng.next() * w,
                rng.next() * h,
                (rng.next() - 0.5) * 8.0,
                (rng.next() - 0.5) * 4.0,
                20.0 + rng.next() * 40.0,
                30.0 + rng.next() * 60.0,
            ]
        })
        .collect();
    let mut tracker = ObjectTracker::new(settings(), Arc::new(AtomicU64::new(0)));
    let mut out = TrackOutput::default();
    let mut dets: Vec<Detection> = Vec::with_capacity(objects);
    let mut times = Vec::with_capacity(frames);
    let mut events = 0usize;
    let warmup = frames / 10;
    for f in 0..frames + warmup {
        dets.clear();
        for (i, s) in state.iter_mut().enumerate() {
            s[0] = (s[0] + s[2]).rem_euclid(w);
            s[1] = (s[1] + s[3]).rem_euclid(h);
            let j = (rng.next() - 0.5) * 2.0;
            dets.push(Detection {
                label: LABELS[i % LABELS.len()].to_string(),
                class_id: 0,
                score: 0.6 + rng.next() * 0.4,
                bbox: BBox {
                    left: s[0] + j,
                    top: s[1] + j,
                    right: s[0] + s[4] + j,
                    bottom: s[1] + s[5] + j,
                },
            });
        }
        let t = Instant::now();
        tracker.update(&dets, (640, 480), (640, 480), f as u64 * 66, &mut out);
        let us = t.elapsed().as_secs_f64() * 1e6;
        if f >= warmup {
            times.push(us);
            events += out.events.len();
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    serde_json::json!({
        "bench": "tracking",
        "objects": objects,
        "zones": 3,
        "lines": 2,
        "frames": frames,
        "events": events,
        "tracked_at_end": tracker.objects().len(),
        "us_per_update": { "mean": r1(mean), "p50": r1(pct(0.5)), "p99": r1(pct(0.99)), "max": r1(pct(1.0)) },
    })
}

fn main() {
    let mut frames = 3000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--frames") {
        frames = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(frames);
    }
    for objects in [5, 50] {
        println!("{}", run(objects, frames.max(10)));
    }
}

//! SORT-style association: each frame's detections are matched to the
//! tracks of the same label by IoU with where each track's constant-velocity
//! motion puts it now, greedily, best overlap first. At low inference rates
//! a moving object may no longer overlap its last box, so a detection whose
//! centre is near the predicted centre, at a similar size, may still match.

use crate::infer::BBox;

/// How tracks are made, kept and ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    /// Matched inferences before a track is confirmed (and reported).
    pub min_hits: u32,
    /// Inferences without a match before a track ends.
    pub max_age: u32,
    /// Least IoU between a track's predicted box and a detection to match.
    pub iou_threshold: f32,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            min_hits: 2,
            max_age: 10,
            iou_threshold: 0.2,
        }
    }
}

/// A detection in normalized coordinates, as the tracker takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub label: String,
    pub score: f32,
    pub bbox: BBox,
}

/// One tracked object's motion state.
#[derive(Debug, Clone)]
pub struct Motion {
    pub bbox: BBox,
    /// Change of each edge per millisecond (left, top, right, bottom).
    velocity: [f32; 4],
    pub last_ms: u64,
    pub hits: u32,
    pub misses: u32,
}

/// How much of a new velocity estimate replaces the old one.
const VELOCITY_GAIN: f32 = 0.5;
/// Predictions go no further than this into the future (a long-lost track
/// stays near where it was last seen, not flying off).
const MAX_PREDICT_MS: f32 = 2000.0;

impl Motion {
    pub fn new(bbox: BBox, now_ms: u64) -> Self {
        Motion {
            bbox,
            velocity: [0.0; 4],
            last_ms: now_ms,
            hits: 1,
            misses: 0,
        }
    }

    /// Where the box should be at `now_ms`.
    pub fn predict(&self, now_ms: u64) -> BBox {
        let dt = (now_ms.saturating_sub(self.last_ms) as f32).min(MAX_PREDICT_MS);
        let v = self.velocity;
        BBox {
            left: self.bbox.left + v[0] * dt,
            top: self.bbox.top + v[1] * dt,
            right: self.bbox.right + v[2] * dt,
            bottom: self.bbox.bottom + v[3] * dt,
        }
    }

    /// Takes a matched detection's box.
    pub fn update(&mut self, bbox: BBox, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last_ms) as f32;
        if dt > 0.0 {
            let old = self.bbox.to_array();
            let new = bbox.to_array();
            for i in 0..4 {
                let v = (new[i] - old[i]) / dt;
                self.velocity[i] = if self.hits == 1 {
                    v
                } else {
                    VELOCITY_GAIN * v + (1.0 - VELOCITY_GAIN) * self.velocity[i]
                };
            }
        }
        self.bbox = bbox;
        self.last_ms = now_ms;
        self.hits += 1;
        self.misses = 0;
    }
}

fn centre(b: &BBox) -> [f32; 2] {
    [(b.left + b.right) / 2.0, (b.top + b.bottom) / 2.0]
}

/// How well a detection fits a predicted box, higher is better; `None`
/// when it does not fit at all. IoU matches rank above near-centre ones.
fn affinity(pred: &BBox, det: &BBox, iou_threshold: f32) -> Option<f32> {
    let iou = pred.iou(det);
    if iou >= iou_threshold {
        return Some(1.0 + iou);
    }
    let (a, b) = (pred.area(), det.area());
    if a <= 0.0 || b <= 0.0 || a / b > 2.5 || b / a > 2.5 {
        return None;
    }
    let (p, d) = (centre(pred), centre(det));
    let dist = ((p[0] - d[0]).powi(2) + (p[1] - d[1]).powi(2)).sqrt();
    let size = (pred.width().max(det.width()) + pred.height().max(det.height())) / 2.0;
    let near = dist / size.max(1e-6);
    (near < 0.75).then_some(1.0 - near)
}

/// Pairs (track index, detection index), best affinity first, each track
/// and detection used once; only equal labels pair.
pub fn associate(
    tracks: &[(&str, BBox)],
    dets: &[Observation],
    iou_threshold: f32,
    pairs: &mut Vec<(usize, usize)>,
) {
    pairs.clear();
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (ti, (label, pred)) in tracks.iter().enumerate() {
        for (di, d) in dets.iter().enumerate() {
            if d.label != *label {
                continue;
            }
            if let Some(a) = affinity(pred, &d.bbox, iou_threshold) {
                candidates.push((a, ti, di));
            }
        }
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut track_used = vec![false; tracks.len()];
    let mut det_used = vec![false; dets.len()];
    for (_, ti, di) in candidates {
        if !track_used[ti] && !det_used[di] {
            track_used[ti] = true;
            det_used[di] = true;
            pairs.push((ti, di));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(l: f32, t: f32, r: f32, bo: f32) -> BBox {
        BBox {
            left: l,
            top: t,
            right: r,
            bottom: bo,
        }
    }

    fn obs(label: &str, bbox: BBox) -> Observation {
        Observation {
            label: label.into(),
            score: 0.9,
            bbox,
        }
    }

    #[test]
    fn overlapping_boxes_of_the_same_label_pair_best_first() {
        let tracks = [("dog", b(0.1, 0.1, 0.3, 0.3)), ("dog", b(0.5, 0.5, 0.7, 0.7))];
        let dets = [
            obs("dog", b(0.52, 0.5, 0.72, 0.7)),
            obs("dog", b(0.11, 0.1, 0.31, 0.3)),
        ];
        let mut pairs = Vec::new();
        associate(&tracks, &dets, 0.2, &mut pairs);
        pairs.sort();
        assert_eq!(pairs, vec![(0, 1), (1, 0)]);
        // Another label never pairs, however well it overlaps.
        let cats = [obs("cat", b(0.1, 0.1, 0.3, 0.3))];
        associate(&tracks, &cats, 0.2, &mut pairs);
        assert!(pairs.is_empty());
    }

    #[test]
    fn a_fast_object_is_found_where_its_velocity_puts_it() {
        // Moving right by 0.2 of the frame per second, seen once a second:
        // its boxes never overlap, the prediction does.
        let mut m = Motion::new(b(0.0, 0.4, 0.1, 0.6), 0);
        m.update(b(0.2, 0.4, 0.3, 0.6), 1000);
        let pred = m.predict(2000);
        assert!((pred.left - 0.4).abs() < 1e-4, "{pred:?}");
        assert!(affinity(&pred, &b(0.4, 0.4, 0.5, 0.6), 0.2).unwrap() > 1.9);
        // Without motion the old box and the new one do not overlap, but
        // the centre is close enough for the fallback.
        let still = Motion::new(b(0.2, 0.4, 0.3, 0.6), 1000);
        let a = affinity(&still.predict(2000), &b(0.3, 0.4, 0.4, 0.6), 0.2).unwrap();
        assert!(a < 1.0, "{a}");
        // Too far, or a very different size: no match.
        assert!(affinity(&still.predict(2000), &b(0.7, 0.4, 0.8, 0.6), 0.2).is_none());
        assert!(affinity(&b(0.2, 0.4, 0.3, 0.6), &b(0.0, 0.0, 1.0, 1.0), 0.2).is_none());
    }
}

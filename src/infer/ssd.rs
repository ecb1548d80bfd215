//! Raw SSD heads: anchor generation, box decoding and class-aware NMS.
//!
//! TensorFlow Object Detection API SSD models exported without the
//! `TFLite_Detection_PostProcess` op end in two tensors: box encodings
//! `[1, N, 4]` (`ty, tx, th, tw` relative to N fixed anchors) and class
//! scores `[1, N, C]`. This module rebuilds the anchors the model was trained
//! with (`ssd_anchor_generator`), turns the encodings back into boxes
//! (`faster_rcnn_box_coder`) and runs per-class greedy non-maximum
//! suppression.
//!
//! [`SsdDecoder`] keeps its scratch buffers between frames, so once they have
//! grown to the size a scene needs, decoding allocates nothing.

use serde::{Deserialize, Serialize};

use super::detection::RawDetection;
use super::FieldError;

/// Upper bound on the number of anchors we agree to generate; far above any
/// real SSD layout, low enough that a typo cannot exhaust memory.
const MAX_ANCHORS: usize = 1 << 22;

/// Parameters of TF OD API's `ssd_anchor_generator`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorParams {
    /// Number of feature maps the heads predict from.
    pub num_layers: usize,
    /// Anchor scale of the first layer, as a fraction of the input side.
    pub min_scale: f32,
    /// Anchor scale of the last layer.
    pub max_scale: f32,
    /// Side of each (square) feature map, one per layer.
    pub feature_map_sizes: Vec<usize>,
    /// Aspect ratios (width / height) of the anchors of every layer but a
    /// reduced lowest one.
    pub aspect_ratios: Vec<f32>,
    /// Layer 0 gets only three anchors: (0.1, 1.0), (s0, 2.0), (s0, 0.5).
    pub reduce_boxes_in_lowest_layer: bool,
    /// Aspect ratio of the extra anchor with scale `sqrt(s_i * s_{i+1})`;
    /// `0` (or any value <= 0) leaves that anchor out, as in TF.
    pub interpolated_scale_aspect_ratio: f32,
}

impl Default for AnchorParams {
    /// The 300x300 SSD MobileNet v1/v2 layout: 1917 anchors.
    fn default() -> Self {
        Self {
            num_layers: 6,
            min_scale: 0.2,
            max_scale: 0.95,
            feature_map_sizes: vec![19, 10, 5, 3, 2, 1],
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 1.0 / 3.0],
            reduce_boxes_in_lowest_layer: true,
            interpolated_scale_aspect_ratio: 1.0,
        }
    }
}

/// One anchor box in normalised input coordinates (centre and size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub cy: f32,
    pub cx: f32,
    pub h: f32,
    pub w: f32,
}

impl AnchorParams {
    /// Checks the parameters and returns the (scale, aspect ratio) list of
    /// each layer, in the order TF tiles them within a grid cell.
    fn box_specs(&self) -> Result<Vec<Vec<(f32, f32)>>, FieldError> {
        self.checked_specs().map_err(|e| e.within("anchors"))
    }

    fn checked_specs(&self) -> Result<Vec<Vec<(f32, f32)>>, FieldError> {
        let p = self;
        if p.num_layers == 0 {
            return Err(FieldError::named("num_layers", "must be at least 1"));
        }
        if p.feature_map_sizes.len() != p.num_layers {
            return Err(FieldError::alone(
                "",
                format!(
                    "{} feature_map_sizes given for num_layers = {}",
                    p.feature_map_sizes.len(),
                    p.num_layers
                ),
            ));
        }
        if let Some(i) = p.feature_map_sizes.iter().position(|&s| s == 0) {
            return Err(FieldError::alone(
                "feature_map_sizes",
                format!("feature_map_sizes[{i}] is 0"),
            ));
        }
        if !(p.min_scale.is_finite() && p.max_scale.is_finite())
            || p.min_scale <= 0.0
            || p.max_scale < p.min_scale
            || p.max_scale > 1.0
        {
            return Err(FieldError::alone(
                "",
                format!(
                    "need 0 < min_scale <= max_scale <= 1, got min_scale = {}, max_scale = {}",
                    p.min_scale, p.max_scale
                ),
            ));
        }
        if p.aspect_ratios.is_empty() {
            return Err(FieldError::named("aspect_ratios", "is empty"));
        }
        if let Some(a) = p.aspect_ratios.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(FieldError::alone(
                "aspect_ratios",
                format!("aspect ratio {a} is not a positive number"),
            ));
        }
        if !p.interpolated_scale_aspect_ratio.is_finite() {
            return Err(FieldError::named(
                "interpolated_scale_aspect_ratio",
                "is not finite",
            ));
        }

        // s_i = min + (max - min) * i / (L - 1), then 1.0 for the interpolated
        // anchor of the last layer. TF divides by zero for L = 1; we use
        // min_scale there.
        let l = p.num_layers;
        let mut scales: Vec<f32> = (0..l)
            .map(|i| {
                if l == 1 {
                    p.min_scale
                } else {
                    p.min_scale + (p.max_scale - p.min_scale) * i as f32 / (l - 1) as f32
                }
            })
            .collect();
        scales.push(1.0);

        let specs: Vec<Vec<(f32, f32)>> = (0..l)
            .map(|i| {
                let s = scales[i];
                if i == 0 && p.reduce_boxes_in_lowest_layer {
                    vec![(0.1, 1.0), (s, 2.0), (s, 0.5)]
                } else {
                    let mut v: Vec<(f32, f32)> = p.aspect_ratios.iter().map(|&a| (s, a)).collect();
                    if p.interpolated_scale_aspect_ratio > 0.0 {
                        v.push(((s * scales[i + 1]).sqrt(), p.interpolated_scale_aspect_ratio));
                    }
                    v
                }
            })
            .collect();

        let mut total = 0usize;
        for (&fm, layer) in p.feature_map_sizes.iter().zip(&specs) {
            total = fm
                .checked_mul(fm)
                .and_then(|cells| cells.checked_mul(layer.len()))
                .and_then(|n| n.checked_add(total))
                .filter(|&n| n <= MAX_ANCHORS)
                .ok_or_else(|| FieldError::alone("", format!("more than {MAX_ANCHORS} anchors")))?;
        }
        Ok(specs)
    }
}

/// Generates the anchors of TF OD API's `ssd_anchor_generator`
/// (`multiple_grid_anchor_generator.create_ssd_anchors`) for a square input:
/// layer by layer, grid cells in row-major order, then each anchor of the
/// cell. Errors on parameters that make no sense.
pub fn generate_anchors(p: &AnchorParams) -> Result<Vec<Anchor>, FieldError> {
    let specs = p.box_specs()?;
    let total: usize = p
        .feature_map_sizes
        .iter()
        .zip(&specs)
        .map(|(&fm, layer)| fm * fm * layer.len())
        .sum();
    let mut anchors = Vec::with_capacity(total);
    for (&fm, layer) in p.feature_map_sizes.iter().zip(&specs) {
        // Precompute (h, w) of the layer's anchors: h = s / sqrt(a), w = s * sqrt(a).
        let sizes: Vec<(f32, f32)> = layer
            .iter()
            .map(|&(s, a)| {
                let r = a.sqrt();
                (s / r, s * r)
            })
            .collect();
        let step = 1.0 / fm as f32;
        for y in 0..fm {
            let cy = (y as f32 + 0.5) * step;
            for x in 0..fm {
                let cx = (x as f32 + 0.5) * step;
                anchors.extend(sizes.iter().map(|&(h, w)| Anchor { cy, cx, h, w }));
            }
        }
    }
    Ok(anchors)
}

/// How the raw class scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreActivation {
    /// Independent sigmoid per class (TF OD API `score_converter: SIGMOID`).
    #[default]
    Sigmoid,
    /// Softmax over all C classes of an anchor, background included.
    Softmax,
    /// The scores already are probabilities.
    None,
}

/// Everything [`SsdDecoder`] needs: anchor layout, box coder and NMS settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsdDecodeParams {
    pub anchors: AnchorParams,
    /// Box coder scale factors for y, x, h, w (TF: 10, 10, 5, 5).
    pub box_scales: [f32; 4],
    pub score_activation: ScoreActivation,
    /// Class 0 is background and never reported.
    pub background_class: bool,
    /// Only scores strictly above this become NMS candidates.
    pub score_threshold: f32,
    /// A box is suppressed when its IoU with a kept box of the same class
    /// exceeds this.
    pub iou_threshold: f32,
    /// Cap on the number of detections returned.
    pub max_detections: usize,
    /// Cap on the number of detections kept per class.
    pub max_per_class: usize,
}

impl Default for SsdDecodeParams {
    fn default() -> Self {
        Self {
            anchors: AnchorParams::default(),
            box_scales: [10.0, 10.0, 5.0, 5.0],
            score_activation: ScoreActivation::Sigmoid,
            background_class: true,
            score_threshold: 0.3,
            iou_threshold: 0.5,
            max_detections: 100,
            max_per_class: 100,
        }
    }
}

impl SsdDecodeParams {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(s) = self.box_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(FieldError::labelled(
                "box_scales",
                format!("{s} is not a positive number"),
            ));
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return Err(FieldError::named(
                "score_threshold",
                format!("must be in 0..=1, got {}", self.score_threshold),
            ));
        }
        if !(0.0..=1.0).contains(&self.iou_threshold) {
            return Err(FieldError::named(
                "iou_threshold",
                format!("must be in 0..=1, got {}", self.iou_threshold),
            ));
        }
        if self.max_detections == 0 {
            return Err(FieldError::named("max_detections", "must be at least 1"));
        }
        if self.max_per_class == 0 {
            return Err(FieldError::named("max_per_class", "must be at least 1"));
        }
        Ok(())
    }
}

/// An NMS candidate: one (anchor, class) pair above the score threshold.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    class: u32,
    anchor: u32,
    /// ymin, xmin, ymax, xmax, clamped to 0..1.
    bbox: [f32; 4],
}

/// Decodes raw SSD outputs into [`RawDetection`]s. Holds the anchors and
/// scratch buffers reused from frame to frame.
#[derive(Debug, Clone)]
pub struct SsdDecoder {
    params: SsdDecodeParams,
    anchors: Vec<Anchor>,
    candidates: Vec<Candidate>,
    kept: Vec<Candidate>,
}

impl SsdDecoder {
    /// Builds the decoder, generating the anchors from `params.anchors`.
    pub fn new(params: SsdDecodeParams) -> Result<Self, FieldError> {
        let anchors = generate_anchors(&params.anchors)?;
        Self::with_anchors(params, anchors)
    }

    /// Builds the decoder with anchors from elsewhere (e.g. a file shipped
    /// with the model); `params.anchors` is ignored.
    pub fn with_anchors(params: SsdDecodeParams, anchors: Vec<Anchor>) -> Result<Self, FieldError> {
        params.validate()?;
        if anchors.is_empty() {
            return Err(FieldError::alone("", "no anchors"));
        }
        if anchors.len() > MAX_ANCHORS {
            return Err(FieldError::alone("", format!("more than {MAX_ANCHORS} anchors")));
        }
        if let Some(i) = anchors.iter().position(|a| {
            !(a.cy.is_finite() && a.cx.is_finite() && a.h.is_finite() && a.w.is_finite())
                || a.h <= 0.0
                || a.w <= 0.0
        }) {
            return Err(FieldError::alone(
                "",
                format!("anchor {i} is not a finite box with positive size"),
            ));
        }
        Ok(Self {
            params,
            anchors,
            candidates: Vec::new(),
            kept: Vec::new(),
        })
    }

    /// N, the number of anchors (rows) the model's heads must have.
    pub fn num_anchors(&self) -> usize {
        self.anchors.len()
    }

    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    pub fn params(&self) -> &SsdDecodeParams {
        &self.params
    }

    /// Changes the pre-NMS candidate threshold (e.g. to the caller's minimum
    /// score). Clamped to 0..=1; NaN leaves it unchanged.
    pub fn set_score_threshold(&mut self, score: f32) {
        if !score.is_nan() {
            self.params.score_threshold = score.clamp(0.0, 1.0);
        }
    }

    /// `box_encodings`: N*4 floats (ty, tx, th, tw) per anchor; `scores`:
    /// N*C floats (logits or probabilities as `score_activation` says).
    /// Output `class_id` is the index into C (so with `background_class` the
    /// first real class is id 1, matching a label file whose line 0 is the
    /// background "???"). Clears `out`, then fills it sorted by score
    /// descending.
    pub fn decode(
        &mut self,
        box_encodings: &[f32],
        scores: &[f32],
        num_classes: usize,
        out: &mut Vec<RawDetection>,
    ) -> Result<(), String> {
        out.clear();
        let n = self.anchors.len();
        if box_encodings.len() != n * 4 {
            return Err(format!(
                "box encodings: expected {} floats ({n} anchors x 4), got {}",
                n * 4,
                box_encodings.len()
            ));
        }
        if num_classes == 0 || u32::try_from(num_classes).is_err() {
            return Err(format!("num_classes must be in 1..2^32, got {num_classes}"));
        }
        if n.checked_mul(num_classes) != Some(scores.len()) {
            return Err(format!(
                "scores: expected {n} anchors x {num_classes} classes, got {} floats",
                scores.len()
            ));
        }

        let Self {
            params: p,
            anchors,
            candidates,
            kept,
        } = self;
        candidates.clear();
        kept.clear();

        let first = usize::from(p.background_class);
        if first >= num_classes {
            return Ok(());
        }
        let t = p.score_threshold;
        let coder = BoxCoder::new(&p.box_scales);
        let rows = scores
            .chunks_exact(num_classes)
            .zip(box_encodings.chunks_exact(4))
            .zip(anchors.iter());

        // Pushes the candidate (anchor, class, score), decoding the anchor's
        // box the first time one of its classes qualifies.
        let mut push = |bbox: &mut Option<[f32; 4]>,
                        enc: &[f32],
                        anchor: &Anchor,
                        idx: usize,
                        class: usize,
                        score: f32| {
            let b = *bbox.get_or_insert_with(|| coder.decode(enc, anchor));
            // A non-finite encoding gives a non-finite box: drop it.
            if b.iter().all(|v| v.is_finite()) {
                candidates.push(Candidate {
                    score,
                    class: class as u32,
                    anchor: idx as u32,
                    bbox: b,
                });
            }
        };

        match p.score_activation {
            ScoreActivation::Sigmoid => {
                // sigmoid(x) > t  <=>  x > ln(t / (1 - t)); -inf for t = 0, +inf for t = 1.
                let logit_t = (t / (1.0 - t)).ln();
                for (idx, ((row, enc), anchor)) in rows.enumerate() {
                    let mut bbox = None;
                    for (class, &x) in row.iter().enumerate().skip(first) {
                        if x > logit_t {
                            let s = 1.0 / (1.0 + (-x).exp());
                            if s > t {
                                push(&mut bbox, enc, anchor, idx, class, s);
                            }
                        }
                    }
                }
            }
            ScoreActivation::Softmax => {
                // p_c = exp(x_c - m) / S with S >= 1, so p_c > t needs
                // x_c - m > ln t: most anchors are rejected without any exp.
                let ln_t = t.ln();
                for (idx, ((row, enc), anchor)) in rows.enumerate() {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    if !row[first..].iter().any(|&x| x - m > ln_t) {
                        continue;
                    }
                    let sum: f32 = row.iter().map(|&x| (x - m).exp()).sum();
                    let inv = 1.0 / sum;
                    let mut bbox = None;
                    for (class, &x) in row.iter().enumerate().skip(first) {
                        if x - m > ln_t {
                            let s = (x - m).exp() * inv;
                            if s > t {
                                push(&mut bbox, enc, anchor, idx, class, s);
                            }
                        }
                    }
                }
            }
            ScoreActivation::None => {
                for (idx, ((row, enc), anchor)) in rows.enumerate() {
                    let mut bbox = None;
                    for (class, &s) in row.iter().enumerate().skip(first) {
                        if s > t {
                            push(&mut bbox, enc, anchor, idx, class, s);
                        }
                    }
                }
            }
        }

        // Group by class, best first; ties broken by anchor for determinism.
        candidates.sort_unstable_by(|a, b| {
            a.class
                .cmp(&b.class)
                .then(b.score.total_cmp(&a.score))
                .then(a.anchor.cmp(&b.anchor))
        });
        // A class's detections beyond the overall cap can never make the
        // final list, so the effective per-class cap is the smaller one.
        let per_class = p.max_per_class.min(p.max_detections);
        let mut rest = &candidates[..];
        while let Some(head) = rest.first() {
            let len = rest
                .iter()
                .position(|c| c.class != head.class)
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(len);
            rest = tail;
            let start = kept.len();
            for c in group {
                if kept.len() - start >= per_class {
                    break;
                }
                if kept[start..]
                    .iter()
                    .all(|k| iou(&k.bbox, &c.bbox) <= p.iou_threshold)
                {
                    kept.push(*c);
                }
            }
        }

        kept.sort_unstable_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.class.cmp(&b.class))
                .then(a.anchor.cmp(&b.anchor))
        });
        kept.truncate(p.max_detections);
        out.extend(kept.iter().map(|c| RawDetection {
            class_id: c.class,
            score: c.score,
            ymin: c.bbox[0],
            xmin: c.bbox[1],
            ymax: c.bbox[2],
            xmax: c.bbox[3],
        }));
        Ok(())
    }
}

/// TF's `faster_rcnn_box_coder` decode with the scale factors inverted once.
#[derive(Clone, Copy)]
struct BoxCoder {
    inv: [f32; 4],
}

impl BoxCoder {
    fn new(scales: &[f32; 4]) -> Self {
        Self {
            inv: scales.map(|s| 1.0 / s),
        }
    }

    /// ymin, xmin, ymax, xmax clamped to 0..1 (NaN stays NaN).
    #[inline]
    fn decode(&self, enc: &[f32], a: &Anchor) -> [f32; 4] {
        let yc = enc[0] * self.inv[0] * a.h + a.cy;
        let xc = enc[1] * self.inv[1] * a.w + a.cx;
        let h = (enc[2] * self.inv[2]).exp() * a.h;
        let w = (enc[3] * self.inv[3]).exp() * a.w;
        [
            (yc - 0.5 * h).clamp(0.0, 1.0),
            (xc - 0.5 * w).clamp(0.0, 1.0),
            (yc + 0.5 * h).clamp(0.0, 1.0),
            (xc + 0.5 * w).clamp(0.0, 1.0),
        ]
    }
}

/// IoU of two ymin, xmin, ymax, xmax boxes; 0 when the union is empty.
#[inline]
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ih * iw;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f32 = 1e-5;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < EPS
    }

    fn assert_anchor(a: &Anchor, cy: f32, cx: f32, h: f32, w: f32) {
        assert!(
            close(a.cy, cy) && close(a.cx, cx) && close(a.h, h) && close(a.w, w),
            "{a:?} != cy {cy} cx {cx} h {h} w {w}"
        );
    }

    /// Three hand-placed anchors: two overlapping heavily (IoU ~0.82), one far away.
    fn hand_anchors() -> Vec<Anchor> {
        vec![
            Anchor {
                cy: 0.5,
                cx: 0.5,
                h: 0.4,
                w: 0.4,
            },
            Anchor {
                cy: 0.52,
                cx: 0.52,
                h: 0.4,
                w: 0.4,
            },
            Anchor {
                cy: 0.15,
                cx: 0.15,
                h: 0.2,
                w: 0.2,
            },
        ]
    }

    fn hand_decoder(p: SsdDecodeParams) -> SsdDecoder {
        SsdDecoder::with_anchors(p, hand_anchors()).unwrap()
    }

    /// Scores for 3 anchors x `c` classes, all `fill`, with `set` overrides.
    fn scores(c: usize, fill: f32, set: &[(usize, usize, f32)]) -> Vec<f32> {
        let mut s = vec![fill; 3 * c];
        for &(a, k, v) in set {
            s[a * c + k] = v;
        }
        s
    }

    #[test]
    fn default_layout_has_1917_anchors_with_tf_values() {
        let a = generate_anchors(&AnchorParams::default()).unwrap();
        assert_eq!(a.len(), 1917);
        let c0 = 0.5 / 19.0;
        let r2 = 2f32.sqrt();
        // Cell (0, 0) of layer 0: (0.1, 1), (0.2, 2), (0.2, 0.5).
        assert_anchor(&a[0], c0, c0, 0.1, 0.1);
        assert_anchor(&a[1], c0, c0, 0.2 / r2, 0.2 * r2);
        assert_anchor(&a[2], c0, c0, 0.2 * r2, 0.2 / r2);
        // Cell (0, 1): x moves first.
        assert_anchor(&a[3], c0, 1.5 / 19.0, 0.1, 0.1);
        // Cell (1, 0) starts after the 19 cells of row 0.
        assert_anchor(&a[19 * 3], 1.5 / 19.0, c0, 0.1, 0.1);
        // First anchor of layer 1 (10x10, s1 = 0.35): ratio 1.
        assert_anchor(&a[1083], 0.05, 0.05, 0.35, 0.35);
        // Ratio 3 of that cell.
        let r3 = 3f32.sqrt();
        assert_anchor(&a[1083 + 3], 0.05, 0.05, 0.35 / r3, 0.35 * r3);
        // Interpolated anchor of that cell: sqrt(s1 * s2), s2 = 0.5.
        let si = (0.35f32 * 0.5).sqrt();
        assert_anchor(&a[1083 + 5], 0.05, 0.05, si, si);
        // Last layer: one 1x1 cell, last anchor is the interpolated one with
        // scale sqrt(0.95 * 1.0); the one before it is ratio 1/3.
        let last = 0.95f32.sqrt();
        assert_anchor(&a[1916], 0.5, 0.5, last, last);
        assert_anchor(&a[1915], 0.5, 0.5, 0.95 * r3, 0.95 / r3);
        assert_anchor(&a[1911], 0.5, 0.5, 0.95, 0.95);
    }

    #[test]
    fn anchor_layout_options_change_count() {
        let p = AnchorParams {
            reduce_boxes_in_lowest_layer: false,
            interpolated_scale_aspect_ratio: 0.0,
            ..AnchorParams::default()
        };
        let a = generate_anchors(&p).unwrap();
        assert_eq!(a.len(), (361 + 100 + 25 + 9 + 4 + 1) * 5);
        assert_anchor(&a[0], 0.5 / 19.0, 0.5 / 19.0, 0.2, 0.2);
        // A single layer uses min_scale instead of dividing by zero.
        let one = AnchorParams {
            num_layers: 1,
            feature_map_sizes: vec![2],
            aspect_ratios: vec![1.0],
            reduce_boxes_in_lowest_layer: false,
            min_scale: 0.3,
            max_scale: 0.3,
            interpolated_scale_aspect_ratio: 1.0,
        };
        let a = generate_anchors(&one).unwrap();
        assert_eq!(a.len(), 8);
        assert_anchor(&a[0], 0.25, 0.25, 0.3, 0.3);
        assert_anchor(&a[1], 0.25, 0.25, 0.3f32.sqrt(), 0.3f32.sqrt());
        assert_anchor(&a[7], 0.75, 0.75, 0.3f32.sqrt(), 0.3f32.sqrt());
    }

    #[test]
    fn nonsense_anchor_params_are_rejected() {
        let d = AnchorParams::default;
        let bad = [
            AnchorParams {
                num_layers: 0,
                feature_map_sizes: vec![],
                ..d()
            },
            AnchorParams { num_layers: 5, ..d() },
            AnchorParams {
                feature_map_sizes: vec![19, 10, 5, 3, 0, 1],
                ..d()
            },
            AnchorParams {
                min_scale: 0.0,
                ..d()
            },
            AnchorParams {
                min_scale: 0.5,
                max_scale: 0.4,
                ..d()
            },
            AnchorParams {
                max_scale: 1.5,
                ..d()
            },
            AnchorParams {
                max_scale: f32::NAN,
                ..d()
            },
            AnchorParams {
                aspect_ratios: vec![],
                ..d()
            },
            AnchorParams {
                aspect_ratios: vec![1.0, -2.0],
                ..d()
            },
            AnchorParams {
                interpolated_scale_aspect_ratio: f32::INFINITY,
                ..d()
            },
            AnchorParams {
                feature_map_sizes: vec![1 << 20, 10, 5, 3, 2, 1],
                ..d()
            },
        ];
        for p in bad {
            assert!(generate_anchors(&p).is_err(), "accepted {p:?}");
            let sp = SsdDecodeParams {
                anchors: p,
                ..SsdDecodeParams::default()
            };
            assert!(SsdDecoder::new(sp).is_err());
        }
    }

    #[test]
    fn nonsense_decode_params_are_rejected() {
        let d = SsdDecodeParams::default;
        let bad = [
            SsdDecodeParams {
                box_scales: [10.0, 0.0, 5.0, 5.0],
                ..d()
            },
            SsdDecodeParams {
                score_threshold: 1.5,
                ..d()
            },
            SsdDecodeParams {
                score_threshold: f32::NAN,
                ..d()
            },
            SsdDecodeParams {
                iou_threshold: -0.1,
                ..d()
            },
            SsdDecodeParams {
                max_detections: 0,
                ..d()
            },
            SsdDecodeParams {
                max_per_class: 0,
                ..d()
            },
        ];
        for p in bad {
            assert!(SsdDecoder::new(p.clone()).is_err(), "accepted {p:?}");
        }
        assert!(SsdDecoder::with_anchors(d(), vec![]).is_err());
        let flat = vec![Anchor {
            cy: 0.5,
            cx: 0.5,
            h: 0.0,
            w: 0.1,
        }];
        assert!(SsdDecoder::with_anchors(d(), flat).is_err());
        assert_eq!(SsdDecoder::new(d()).unwrap().num_anchors(), 1917);
    }

    #[test]
    fn errors_read_as_sentences_and_name_the_setting() {
        let e = SsdDecoder::new(SsdDecodeParams {
            anchors: AnchorParams {
                num_layers: 0,
                feature_map_sizes: vec![],
                ..AnchorParams::default()
            },
            ..SsdDecodeParams::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "anchors: num_layers must be at least 1");
        assert_eq!(
            (e.key().as_str(), e.message.as_str()),
            ("anchors.num_layers", "must be at least 1")
        );
        let e = SsdDecoder::new(SsdDecodeParams {
            box_scales: [10.0, 0.0, 5.0, 5.0],
            ..SsdDecodeParams::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "box_scales: 0 is not a positive number");
        assert_eq!(e.key(), "box_scales");
    }

    #[test]
    fn params_deserialize_with_defaults_and_reject_unknown_keys() {
        let p: SsdDecodeParams = toml::from_str(
            "score_activation = \"softmax\"\nscore_threshold = 0.5\n[anchors]\nmin_scale = 0.1\n",
        )
        .unwrap();
        assert_eq!(p.score_activation, ScoreActivation::Softmax);
        assert_eq!(p.score_threshold, 0.5);
        assert_eq!(p.anchors.min_scale, 0.1);
        assert_eq!(p.anchors.num_layers, 6);
        assert_eq!(p.box_scales, [10.0, 10.0, 5.0, 5.0]);
        assert!(toml::from_str::<SsdDecodeParams>("score_treshold = 0.5").is_err());
        assert!(toml::from_str::<SsdDecodeParams>("[anchors]\nlayers = 3").is_err());
    }

    #[test]
    fn zero_encodings_decode_to_the_anchor_boxes() {
        let p = SsdDecodeParams {
            score_threshold: 0.0,
            iou_threshold: 1.0,
            max_detections: 10_000,
            max_per_class: 10_000,
            score_activation: ScoreActivation::None,
            background_class: false,
            ..SsdDecodeParams::default()
        };
        let mut dec = SsdDecoder::new(p).unwrap();
        let n = dec.num_anchors();
        let boxes = vec![0.0; n * 4];
        // Distinct scores so every anchor survives and can be identified.
        let sc: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 / (2 * n) as f32).collect();
        let mut out = Vec::new();
        dec.decode(&boxes, &sc, 1, &mut out).unwrap();
        assert_eq!(out.len(), n);
        for (i, d) in out.iter().enumerate() {
            let a = dec.anchors()[i];
            assert_eq!(d.class_id, 0);
            assert!(close(d.ymin, (a.cy - a.h / 2.0).max(0.0)), "{i}: {d:?} {a:?}");
            assert!(close(d.xmin, (a.cx - a.w / 2.0).max(0.0)));
            assert!(close(d.ymax, (a.cy + a.h / 2.0).min(1.0)));
            assert!(close(d.xmax, (a.cx + a.w / 2.0).min(1.0)));
        }
    }

    #[test]
    fn encodings_shift_and_scale_the_anchor() {
        let p = SsdDecodeParams {
            score_activation: ScoreActivation::None,
            ..SsdDecodeParams::default()
        };
        let mut dec = hand_decoder(p);
        // Anchor 0 (0.5, 0.5, 0.4, 0.4): move down by 0.1 * 0.4, halve the
        // height (th = 5 ln 0.5), keep x and width.
        let mut boxes = vec![0.0; 12];
        boxes[0] = 1.0;
        boxes[2] = 5.0 * 0.5f32.ln();
        let sc = scores(2, 0.0, &[(0, 1, 0.9)]);
        let mut out = Vec::new();
        dec.decode(&boxes, &sc, 2, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let d = out[0];
        assert!(close(d.ymin, 0.54 - 0.1) && close(d.ymax, 0.54 + 0.1), "{d:?}");
        assert!(close(d.xmin, 0.3) && close(d.xmax, 0.7), "{d:?}");
        // Growing the box past the image edge clamps it to 0..1.
        boxes[2] = 5.0 * 4f32.ln();
        dec.decode(&boxes, &sc, 2, &mut out).unwrap();
        assert_eq!((out[0].ymin, out[0].ymax), (0.0, 1.0));
    }

    #[test]
    fn nms_suppresses_same_class_overlap_and_keeps_other_classes() {
        let mut dec = hand_decoder(SsdDecodeParams::default());
        let boxes = vec![0.0; 12];
        let mut out = Vec::new();
        // Same class 1 on the two overlapping anchors: only the best stays.
        let sc = scores(3, -10.0, &[(0, 1, 3.0), (1, 1, 2.0)]);
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert!(close(out[0].ymin, 0.3) && close(out[0].xmax, 0.7));
        // A lower IoU threshold than their overlap is needed to suppress:
        // raising it above ~0.82 keeps both.
        let mut loose = hand_decoder(SsdDecodeParams {
            iou_threshold: 0.9,
            ..SsdDecodeParams::default()
        });
        loose.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        // Different classes on the same two anchors: both kept, best first.
        let sc = scores(3, -10.0, &[(0, 1, 2.0), (1, 2, 3.0)]);
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].class_id, out[1].class_id), (2, 1));
        assert!(out[0].score > out[1].score);
        assert!(close(out[0].ymin, 0.32));
    }

    #[test]
    fn background_is_skipped_unless_disabled() {
        let boxes = vec![0.0; 12];
        let sc = scores(3, -10.0, &[(2, 0, 5.0), (0, 2, 1.0)]);
        let mut out = Vec::new();
        let mut dec = hand_decoder(SsdDecodeParams::default());
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 2);
        let mut dec = hand_decoder(SsdDecodeParams {
            background_class: false,
            ..SsdDecodeParams::default()
        });
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].class_id, 0);
        assert!(close(out[0].ymin, 0.05) && close(out[0].xmax, 0.25));
        // Only a background class: nothing to report, not an error.
        let mut dec = hand_decoder(SsdDecodeParams::default());
        dec.decode(&boxes, &[9.0; 3], 1, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn softmax_and_sigmoid_give_their_own_scores() {
        let boxes = vec![0.0; 12];
        let sc = scores(3, 0.0, &[(0, 1, 2.0), (1, 0, 10.0), (2, 0, 10.0)]);
        let mut out = Vec::new();
        let e2 = 2f32.exp();

        let mut sig = hand_decoder(SsdDecodeParams::default());
        sig.decode(&boxes, &sc, 3, &mut out).unwrap();
        // sigmoid(2) for class 1 of anchor 0; class 2 logit 0 -> 0.5 also
        // passes 0.3 on every anchor, but anchors 0/1 overlap: NMS keeps one.
        let a0c1 = out.iter().find(|d| d.class_id == 1).unwrap();
        assert!(close(a0c1.score, 1.0 / (1.0 + (-2f32).exp())));
        assert_eq!(out.iter().filter(|d| d.class_id == 2).count(), 2);
        assert!(out
            .iter()
            .filter(|d| d.class_id == 2)
            .all(|d| close(d.score, 0.5)));

        let mut soft = hand_decoder(SsdDecodeParams {
            score_activation: ScoreActivation::Softmax,
            ..SsdDecodeParams::default()
        });
        soft.decode(&boxes, &sc, 3, &mut out).unwrap();
        // Anchor 0: softmax([0, 2, 0]); anchors 1, 2 are all background.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert!(close(out[0].score, e2 / (2.0 + e2)));
        // Softmax is over all classes: the background logit lowers class 1.
        let sc = scores(3, 0.0, &[(0, 0, 2.0), (0, 1, 2.0)]);
        soft.decode(&boxes, &sc, 3, &mut out).unwrap();
        let d = out.iter().find(|d| d.class_id == 1).unwrap();
        assert!(close(d.score, e2 / (1.0 + 2.0 * e2)));
    }

    #[test]
    fn threshold_is_strict_and_caps_apply() {
        let boxes = vec![0.0; 12];
        let mut out = Vec::new();
        let none = SsdDecodeParams {
            score_activation: ScoreActivation::None,
            iou_threshold: 1.0,
            ..SsdDecodeParams::default()
        };
        let sc = scores(2, 0.0, &[(0, 1, 0.3), (1, 1, 0.31), (2, 1, 0.8)]);
        let mut dec = hand_decoder(none.clone());
        dec.decode(&boxes, &sc, 2, &mut out).unwrap();
        assert_eq!(out.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.8, 0.31]);
        dec.set_score_threshold(0.5);
        dec.decode(&boxes, &sc, 2, &mut out).unwrap();
        assert_eq!(out.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.8]);
        dec.set_score_threshold(f32::NAN);
        assert_eq!(dec.params().score_threshold, 0.5);
        dec.set_score_threshold(-1.0);
        assert_eq!(dec.params().score_threshold, 0.0);

        let sc = scores(3, 0.0, &[(0, 1, 0.5), (1, 1, 0.6), (2, 1, 0.7), (0, 2, 0.9)]);
        let mut dec = hand_decoder(SsdDecodeParams {
            max_per_class: 2,
            ..none.clone()
        });
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|d| d.score).collect::<Vec<_>>(),
            vec![0.9, 0.7, 0.6]
        );
        let mut dec = hand_decoder(SsdDecodeParams {
            max_detections: 2,
            ..none
        });
        dec.decode(&boxes, &sc, 3, &mut out).unwrap();
        assert_eq!(out.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.9, 0.7]);
    }

    #[test]
    fn length_mismatches_are_errors() {
        let mut dec = hand_decoder(SsdDecodeParams::default());
        let mut out = vec![RawDetection {
            class_id: 1,
            score: 1.0,
            ymin: 0.0,
            xmin: 0.0,
            ymax: 1.0,
            xmax: 1.0,
        }];
        assert!(dec.decode(&[0.0; 11], &[0.0; 9], 3, &mut out).is_err());
        assert!(out.is_empty(), "out is cleared even on error");
        assert!(dec.decode(&[0.0; 12], &[0.0; 8], 3, &mut out).is_err());
        assert!(dec.decode(&[0.0; 12], &[0.0; 9], 4, &mut out).is_err());
        assert!(dec.decode(&[0.0; 12], &[], 0, &mut out).is_err());
        assert!(dec.decode(&[0.0; 12], &[0.0; 9], 3, &mut out).is_ok());
    }

    #[test]
    fn non_finite_inputs_are_dropped() {
        let mut dec = hand_decoder(SsdDecodeParams::default());
        let mut boxes = vec![0.0; 12];
        boxes[4] = f32::NAN; // anchor 1
        let sc = scores(2, -10.0, &[(0, 1, f32::NAN), (1, 1, 5.0), (2, 1, 5.0)]);
        let mut out = Vec::new();
        dec.decode(&boxes, &sc, 2, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(close(out[0].ymin, 0.05));
    }

    /// Deterministic pseudo-random logits resembling a real frame: background
    /// dominant everywhere, a few anchors with confident objects.
    fn busy_frame(n: usize, c: usize) -> (Vec<f32>, Vec<f32>) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let boxes: Vec<f32> = (0..n * 4).map(|_| rnd() * 2.0 - 1.0).collect();
        let mut sc: Vec<f32> = (0..n * c).map(|_| rnd() * 4.0 - 6.0).collect();
        for a in 0..n {
            sc[a * c] = 3.0;
            if a % 40 == 0 {
                sc[a * c + 1 + a % (c - 1)] = 4.0 + rnd();
            }
        }
        (boxes, sc)
    }

    #[test]
    fn steady_state_decode_reuses_buffers() {
        let mut dec = SsdDecoder::new(SsdDecodeParams::default()).unwrap();
        let (boxes, sc) = busy_frame(dec.num_anchors(), 24);
        let mut out = Vec::new();
        dec.decode(&boxes, &sc, 24, &mut out).unwrap();
        assert!(!out.is_empty());
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
        let first = out.clone();
        let ptrs = (dec.candidates.as_ptr(), dec.kept.as_ptr(), out.as_ptr());
        let caps = (dec.candidates.capacity(), dec.kept.capacity(), out.capacity());
        for _ in 0..3 {
            dec.decode(&boxes, &sc, 24, &mut out).unwrap();
        }
        assert_eq!(out, first);
        assert_eq!(ptrs, (dec.candidates.as_ptr(), dec.kept.as_ptr(), out.as_ptr()));
        assert_eq!(
            caps,
            (dec.candidates.capacity(), dec.kept.capacity(), out.capacity())
        );
    }
}

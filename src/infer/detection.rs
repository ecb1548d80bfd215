//! The result types every decoder produces and every consumer reads.

use serde::Serialize;

/// An axis-aligned box in pixels of the original image: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BBox {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

impl BBox {
    pub fn width(&self) -> f32 {
        (self.right - self.left).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.bottom - self.top).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let l = self.left.max(other.left);
        let t = self.top.max(other.top);
        let r = self.right.min(other.right);
        let b = self.bottom.min(other.bottom);
        let inter = (r - l).max(0.0) * (b - t).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Serialised as `[left, top, right, bottom]`, as `detect --json` prints it.
    pub fn to_array(&self) -> [f32; 4] {
        [self.left, self.top, self.right, self.bottom]
    }
}

/// One detected object (or, for classifiers, one top-k class with a whole-image box).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub label: String,
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

/// What a model's results are: boxes, or the top classes of the whole
/// picture. Reports serialize it as `"detector"` / `"classifier"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Detector,
    Classifier,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Detector => "detector",
            ModelKind::Classifier => "classifier",
        }
    }
}

/// A detection in normalised coordinates (0..1 of the model input), before
/// labels and the original image size are applied. Decoders produce these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub class_id: u32,
    pub score: f32,
    /// ymin, xmin, ymax, xmax in 0..1, the order TFLite detection models use.
    pub ymin: f32,
    pub xmin: f32,
    pub ymax: f32,
    pub xmax: f32,
}

/// The JSON shape of detections that `detect --json` prints and the
/// daemon's API serves: label, class id, score (4 decimals) and box
/// (`[left, top, right, bottom]`, 2 decimals).
pub fn detection_json(dets: &[Detection]) -> Vec<serde_json::Value> {
    let r2 = |v: f32| (v as f64 * 100.0).round() / 100.0;
    dets.iter()
        .map(|d| {
            serde_json::json!({
                "label": d.label,
                "class_id": d.class_id,
                "score": (d.score as f64 * 10000.0).round() / 10000.0,
                "box": d.bbox.to_array().map(r2),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_boxes_is_one_and_disjoint_is_zero() {
        let a = BBox {
            left: 0.0,
            top: 0.0,
            right: 10.0,
            bottom: 10.0,
        };
        let b = BBox {
            left: 20.0,
            top: 20.0,
            right: 30.0,
            bottom: 30.0,
        };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&b), 0.0);
        let c = BBox {
            left: 5.0,
            top: 0.0,
            right: 15.0,
            bottom: 10.0,
        };
        assert!((a.iou(&c) - 50.0 / 150.0).abs() < 1e-6);
    }
}

//! Which detections to keep: thresholds, label lists, minimum area.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Detection, FieldError};

/// Detection filter settings, as the config's `[filter]` table holds them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    /// Minimum score for any label (0..1).
    pub threshold: f32,
    /// Per-label minimum scores that replace `threshold` for that label.
    pub label_thresholds: HashMap<String, f32>,
    /// When non-empty, only these labels are kept.
    pub allow: Vec<String>,
    /// These labels are always dropped.
    pub deny: Vec<String>,
    /// Minimum box area in pixels of the original image.
    pub min_area: f32,
}

impl Default for FilterSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            label_thresholds: HashMap::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            min_area: 0.0,
        }
    }
}

impl FilterSettings {
    /// Checks value ranges; the message names the offending setting.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(FieldError::named(
                "threshold",
                format!("must be between 0 and 1, not {}", self.threshold),
            ));
        }
        for (label, t) in &self.label_thresholds {
            if !(0.0..=1.0).contains(t) {
                return Err(FieldError::named(
                    format!("label_thresholds.{label}"),
                    format!("must be between 0 and 1, not {t}"),
                ));
            }
        }
        if self.min_area.is_nan() || self.min_area < 0.0 {
            return Err(FieldError::named(
                "min_area",
                format!("must be 0 or more, not {}", self.min_area),
            ));
        }
        Ok(())
    }

    /// The lowest score any label can pass with: decoders may drop
    /// candidates below it early.
    pub fn lowest_threshold(&self) -> f32 {
        self.label_thresholds
            .values()
            .copied()
            .fold(self.threshold, f32::min)
    }

    /// Whether a detection passes.
    pub fn keep(&self, d: &Detection) -> bool {
        let t = self
            .label_thresholds
            .get(&d.label)
            .copied()
            .unwrap_or(self.threshold);
        d.score >= t
            && (self.allow.is_empty() || self.allow.contains(&d.label))
            && !self.deny.contains(&d.label)
            && d.bbox.area() >= self.min_area
    }

    /// Drops what does not pass, in place.
    pub fn apply(&self, dets: &mut Vec<Detection>) {
        dets.retain(|d| self.keep(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::BBox;

    fn det(label: &str, score: f32, side: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: BBox {
                left: 0.0,
                top: 0.0,
                right: side,
                bottom: side,
            },
        }
    }

    #[test]
    fn thresholds_lists_and_area() {
        let mut f = FilterSettings {
            threshold: 0.5,
            ..Default::default()
        };
        f.label_thresholds.insert("cat".into(), 0.8);
        assert!(f.keep(&det("dog", 0.6, 10.0)));
        assert!(!f.keep(&det("dog", 0.4, 10.0)));
        assert!(!f.keep(&det("cat", 0.7, 10.0)));
        assert!(f.keep(&det("cat", 0.85, 10.0)));
        assert_eq!(f.lowest_threshold(), 0.5);
        f.deny.push("dog".into());
        assert!(!f.keep(&det("dog", 0.9, 10.0)));
        f.allow.push("cat".into());
        assert!(!f.keep(&det("car", 0.9, 10.0)));
        f.min_area = 200.0;
        assert!(!f.keep(&det("cat", 0.9, 10.0)));
        assert!(f.keep(&det("cat", 0.9, 20.0)));
    }

    #[test]
    fn validation_names_the_setting() {
        let mut f = FilterSettings {
            threshold: 1.5,
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().to_string().contains("threshold"));
        f.threshold = 0.5;
        f.label_thresholds.insert("dog".into(), -1.0);
        assert!(f
            .validate()
            .unwrap_err()
            .to_string()
            .contains("label_thresholds.dog"));
        assert_eq!(f.validate().unwrap_err().field, "label_thresholds.dog");
    }
}

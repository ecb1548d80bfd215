//! `[detect]`: which detections to keep, and how often to run the model.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::infer::FilterSettings;

/// `[detect]`: the detection filter ([`FilterSettings`]) and the inference
/// rate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Minimum score for any label (0..1). Default 0.5.
    pub threshold: f32,
    /// `[detect.label_thresholds]`: label -> minimum score (0..1) that
    /// replaces `threshold` for that label. Default empty.
    pub label_thresholds: BTreeMap<String, f32>,
    /// When non-empty, only these labels are kept. Default empty.
    pub allow: Vec<String>,
    /// These labels are always dropped. Default empty.
    pub deny: Vec<String>,
    /// Minimum box area in pixels of the frame. Default 0.
    pub min_area: f32,
    /// Run inference on every Nth frame (1 = all); the latest detections
    /// are drawn on every frame. Default 1.
    pub every_nth: u32,
    /// Cap on inferences per second; `0` = no cap. Default 0.
    pub max_inference_fps: f32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        let f = FilterSettings::default();
        Self {
            threshold: f.threshold,
            label_thresholds: f.label_thresholds.into_iter().collect(),
            allow: f.allow,
            deny: f.deny,
            min_area: f.min_area,
            every_nth: 1,
            max_inference_fps: 0.0,
        }
    }
}

impl DetectConfig {
    /// The filter part.
    pub fn filter(&self) -> FilterSettings {
        FilterSettings {
            threshold: self.threshold,
            label_thresholds: self
                .label_thresholds
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            min_area: self.min_area,
        }
    }
}

//! The whole per-frame path: pre-process, run, decode, label, filter.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decode::{DecodeSettings, Decoder, DecoderKind};
use super::error::InferError;
use super::filter::FilterSettings;
use super::labels::Labels;
use super::preprocess::{Normalization, Preprocessor};
use super::runtime::Runtime;
use super::session::{Model, Session, SessionOptions};
use super::{BBox, Detection, RawDetection};

/// Everything needed to build a detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    pub model: PathBuf,
    pub labels: Option<PathBuf>,
    pub session: SessionOptions,
    pub normalization: Normalization,
    pub decode: DecodeSettings,
    pub filter: FilterSettings,
}

impl DetectorSettings {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            labels: None,
            session: SessionOptions::default(),
            normalization: Normalization::default(),
            decode: DecodeSettings::default(),
            filter: FilterSettings::default(),
        }
    }
}

/// Time spent in each stage of one `detect` call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub preprocess: Duration,
    pub infer: Duration,
    pub decode: Duration,
}

/// One interpreter with its pre- and post-processing: frame in, filtered
/// detections out. Its tensors and scratch buffers are kept between calls
/// (the resize library and the label strings still allocate a little per
/// frame: see `preprocess`); a pool holds several to run frames in parallel, and
/// each call may bring its camera's filter ([`Detector::detect_with`]).
pub struct Detector {
    session: Session,
    pre: Preprocessor,
    decoder: Decoder,
    labels: Labels,
    filter: FilterSettings,
    raw: Vec<RawDetection>,
}

impl Detector {
    /// Loads the model and labels and compiles the model.
    pub fn new(rt: &'static Runtime, settings: &DetectorSettings) -> Result<Self, InferError> {
        settings.filter.validate()?;
        let model = Model::load(rt, &settings.model)?;
        Self::with_model(model, settings)
    }

    /// Builds a detector on an already loaded model (workers share one).
    pub fn with_model(model: Arc<Model>, settings: &DetectorSettings) -> Result<Self, InferError> {
        let input = model.inputs().first().cloned().expect("models have an input");
        let pre = Preprocessor::new(&input, settings.normalization).map_err(|e| match e {
            InferError::Settings(reason) => InferError::ModelUnsupported {
                path: model.path().to_path_buf(),
                reason,
            },
            e => e,
        })?;
        let post = model.postprocess();
        let mut decoder = Decoder::new(model.outputs(), post.is_some(), &settings.decode)?;
        decoder.set_min_score(settings.filter.lowest_threshold());
        let labels = match &settings.labels {
            Some(path) => {
                let labels = Labels::load(path)?;
                let classes = decoder.num_classes(post.as_ref().map(|p| p.num_classes as usize));
                if let Some(c) = classes {
                    labels.check_fits(c)?;
                }
                labels
            }
            None => Labels::default(),
        };
        let session = Session::new(model, settings.session)?;
        Ok(Detector {
            session,
            pre,
            decoder,
            labels,
            filter: settings.filter.clone(),
            raw: Vec::with_capacity(128),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        self.session.model()
    }

    pub fn decoder_kind(&self) -> DecoderKind {
        self.decoder.kind()
    }

    pub fn is_classifier(&self) -> bool {
        self.decoder.is_classifier()
    }

    /// Boxes or classes.
    pub fn kind(&self) -> super::ModelKind {
        if self.is_classifier() {
            super::ModelKind::Classifier
        } else {
            super::ModelKind::Detector
        }
    }

    /// Model input size (width, height).
    pub fn input_size(&self) -> (u32, u32) {
        self.pre.input_size()
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn filter(&self) -> &FilterSettings {
        &self.filter
    }

    /// Replaces the filter (thresholds, label lists) without reloading.
    pub fn set_filter(&mut self, filter: FilterSettings) -> Result<(), InferError> {
        filter.validate()?;
        self.decoder.set_min_score(filter.lowest_threshold());
        self.filter = filter;
        Ok(())
    }

    /// Runs the model on a packed RGB8 frame and writes the detections that
    /// pass the filter into `out`, in pixels of that frame.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<Timings, InferError> {
        let filter = std::mem::take(&mut self.filter);
        let result = self.detect_with(&filter, rgb, width, height, out);
        self.filter = filter;
        result
    }

    /// [`Detector::detect`] with another filter than the detector's own:
    /// cameras sharing interpreters each keep their thresholds. `filter`
    /// must have passed [`FilterSettings::validate`].
    pub fn detect_with(
        &mut self,
        filter: &FilterSettings,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<Timings, InferError> {
        out.clear();
        self.decoder.set_min_score(filter.lowest_threshold());
        let expected = width as usize * height as usize * 3;
        if width == 0 || height == 0 || rgb.len() < expected {
            return Err(InferError::Settings(format!(
                "frame of {width}x{height} needs {expected} bytes of RGB, got {}",
                rgb.len()
            )));
        }
        let t0 = Instant::now();
        let pre = &mut self.pre;
        self.session
            .write_input(0, |dst| pre.run(rgb, width, height, dst))??;
        let t1 = Instant::now();
        self.session.run()?;
        let t2 = Instant::now();
        self.decoder.decode(&mut self.session, &mut self.raw)?;
        let (w, h) = (width as f32, height as f32);
        for r in &self.raw {
            let d = Detection {
                label: self.labels.name(r.class_id),
                class_id: r.class_id,
                score: r.score,
                bbox: BBox {
                    left: r.xmin * w,
                    top: r.ymin * h,
                    right: r.xmax * w,
                    bottom: r.ymax * h,
                },
            };
            if filter.keep(&d) {
                out.push(d);
            }
        }
        let t3 = Instant::now();
        Ok(Timings {
            preprocess: t1 - t0,
            infer: t2 - t1,
            decode: t3 - t2,
        })
    }

    /// Convenience for one image.
    pub fn detect_image(&mut self, img: &image::RgbImage) -> Result<(Vec<Detection>, Timings), InferError> {
        let mut out = Vec::new();
        let t = self.detect(img.as_raw(), img.width(), img.height(), &mut out)?;
        Ok((out, t))
    }

    /// Runs inference alone on whatever the input tensor holds: the
    /// benchmark's baseline for "the runtime alone".
    pub fn run_only(&mut self) -> Result<(), InferError> {
        self.session.run()
    }

    /// Fills the input tensor from a frame without running (benchmarks).
    pub fn load_input(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<(), InferError> {
        let pre = &mut self.pre;
        self.session
            .write_input(0, |dst| pre.run(rgb, width, height, dst))?
    }
}

//! Output decoding, chosen from the model's output signature:
//! `TFLite_Detection_PostProcess` outputs, raw SSD heads, or class scores.

use serde::{Deserialize, Serialize};

use super::error::InferError;
use super::session::{DType, Session, TensorSpec};
use super::ssd::{ScoreActivation, SsdDecodeParams, SsdDecoder};
use super::RawDetection;

/// Which decoder to use; `auto` picks from the output signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    #[default]
    Auto,
    /// Boxes, classes, scores and count from the postprocess op.
    Postprocess,
    /// Box encodings [1,N,4] and class scores [1,N,C], decoded with anchors and NMS here.
    RawSsd,
    /// Class scores [1,C]: top-k labels for the whole image.
    Classifier,
}

impl DecoderKind {
    /// The name the config and `--decoder` use.
    pub fn as_str(self) -> &'static str {
        match self {
            DecoderKind::Auto => "auto",
            DecoderKind::Postprocess => "postprocess",
            DecoderKind::RawSsd => "raw_ssd",
            DecoderKind::Classifier => "classifier",
        }
    }

    /// Picks the decoder a model's outputs call for.
    pub fn detect(outputs: &[TensorSpec], has_postprocess: bool) -> Result<DecoderKind, String> {
        if has_postprocess && outputs.len() == 4 {
            return Ok(DecoderKind::Postprocess);
        }
        if outputs.len() == 2 && raw_ssd_layout(outputs).is_some() {
            return Ok(DecoderKind::RawSsd);
        }
        if outputs.len() == 1 && classifier_classes(&outputs[0]).is_some() {
            return Ok(DecoderKind::Classifier);
        }
        Err(format!(
            "cannot tell how to decode outputs [{}]; expected the SSD postprocess op's four outputs, \
             raw SSD heads [1,N,4] + [1,N,C], or classifier scores [1,C] (set `decoder` to override)",
            outputs
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Which of two outputs is the box encodings and which the class scores.
fn raw_ssd_layout(outputs: &[TensorSpec]) -> Option<(usize, usize, usize)> {
    let dims = |s: &TensorSpec| -> Option<(usize, usize)> {
        match s.shape.as_slice() {
            [1, n, c] => Some((*n, *c)),
            [n, c] => Some((*n, *c)),
            _ => None,
        }
    };
    let (a, b) = (dims(&outputs[0])?, dims(&outputs[1])?);
    if a.0 != b.0 {
        return None;
    }
    match (a.1, b.1) {
        (4, c) if c >= 2 => Some((0, 1, c)),
        (c, 4) if c >= 2 => Some((1, 0, c)),
        _ => None,
    }
}

fn classifier_classes(spec: &TensorSpec) -> Option<usize> {
    match spec.shape.as_slice() {
        [1, c] | [c] if *c >= 2 => Some(*c),
        _ => None,
    }
}

/// Settings a decoder may use; unused ones are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeSettings {
    pub kind: DecoderKind,
    pub ssd: SsdDecodeParams,
    /// Classifier: how many classes to report.
    pub top_k: usize,
    /// Classifier: activation of the scores (`none` = already probabilities).
    /// Unset: softmax when the scores are not already a distribution.
    pub classifier_activation: Option<ScoreActivation>,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        Self {
            kind: DecoderKind::Auto,
            ssd: SsdDecodeParams::default(),
            top_k: 5,
            classifier_activation: None,
        }
    }
}

enum Plan {
    Postprocess {
        boxes: usize,
        classes: usize,
        scores: usize,
        count: usize,
    },
    RawSsd {
        boxes: usize,
        scores: usize,
        classes: usize,
        ssd: Box<SsdDecoder>,
    },
    Classifier {
        output: usize,
        classes: usize,
        top_k: usize,
        activation: Option<ScoreActivation>,
    },
}

/// Turns a session's outputs into detections in normalised coordinates.
pub struct Decoder {
    plan: Plan,
    kind: DecoderKind,
    buf_a: Vec<f32>,
    buf_b: Vec<f32>,
    order: Vec<u32>,
}

impl Decoder {
    pub fn new(
        outputs: &[TensorSpec],
        has_postprocess: bool,
        settings: &DecodeSettings,
    ) -> Result<Self, InferError> {
        let kind = match settings.kind {
            DecoderKind::Auto => {
                DecoderKind::detect(outputs, has_postprocess).map_err(InferError::Settings)?
            }
            k => k,
        };
        let wrong = |what: &str| {
            InferError::Settings(format!(
                "decoder `{}` does not fit this model: {what}",
                kind.as_str()
            ))
        };
        let plan = match kind {
            DecoderKind::Postprocess => {
                if outputs.len() != 4 {
                    return Err(wrong("it needs four outputs (boxes, classes, scores, count)"));
                }
                let boxes = outputs
                    .iter()
                    .position(|o| o.shape.last() == Some(&4) && o.shape.len() == 3)
                    .ok_or_else(|| wrong("no [1,N,4] boxes output"))?;
                let count = outputs
                    .iter()
                    .position(|o| o.num_elements() == 1)
                    .ok_or_else(|| wrong("no [1] count output"))?;
                // The other two, in TensorFlow's order: classes, then scores.
                let rest: Vec<usize> = (0..4).filter(|i| *i != boxes && *i != count).collect();
                if rest.len() != 2 {
                    return Err(wrong("cannot tell classes from scores"));
                }
                Plan::Postprocess {
                    boxes,
                    classes: rest[0],
                    scores: rest[1],
                    count,
                }
            }
            DecoderKind::RawSsd => {
                if outputs.len() != 2 {
                    return Err(wrong("it needs two outputs (box encodings, class scores)"));
                }
                let (boxes, scores, classes) =
                    raw_ssd_layout(outputs).ok_or_else(|| wrong("outputs are not [1,N,4] and [1,N,C]"))?;
                let ssd = SsdDecoder::new(settings.ssd.clone())?;
                let n = outputs[boxes].shape[outputs[boxes].shape.len() - 2];
                if ssd.num_anchors() != n {
                    return Err(wrong(&format!(
                        "the anchor settings give {} anchors but the model has {n} boxes",
                        ssd.num_anchors()
                    )));
                }
                Plan::RawSsd {
                    boxes,
                    scores,
                    classes,
                    ssd: Box::new(ssd),
                }
            }
            DecoderKind::Classifier => {
                let (output, classes) = outputs
                    .iter()
                    .enumerate()
                    .find_map(|(i, o)| classifier_classes(o).map(|c| (i, c)))
                    .ok_or_else(|| wrong("no [1,C] scores output"))?;
                Plan::Classifier {
                    output,
                    classes,
                    top_k: settings.top_k.max(1),
                    activation: settings.classifier_activation,
                }
            }
            DecoderKind::Auto => unreachable!("resolved above"),
        };
        Ok(Decoder {
            plan,
            kind,
            buf_a: Vec::new(),
            buf_b: Vec::new(),
            order: Vec::new(),
        })
    }

    pub fn kind(&self) -> DecoderKind {
        self.kind
    }

    /// Number of classes the model can output, for checking labels: the
    /// postprocess op's `num_classes`, the SSD head's C, the classifier's C.
    pub fn num_classes(&self, postprocess_classes: Option<usize>) -> Option<usize> {
        match &self.plan {
            Plan::Postprocess { .. } => postprocess_classes,
            Plan::RawSsd { classes, .. } | Plan::Classifier { classes, .. } => Some(*classes),
        }
    }

    /// Sets the lowest score the caller will keep, so candidates below it
    /// are dropped before NMS.
    pub fn set_min_score(&mut self, score: f32) {
        if let Plan::RawSsd { ssd, .. } = &mut self.plan {
            ssd.set_score_threshold(score);
        }
    }

    /// Decodes the session's current outputs into `out` (cleared first).
    pub fn decode(&mut self, session: &mut Session, out: &mut Vec<RawDetection>) -> Result<(), InferError> {
        out.clear();
        match &mut self.plan {
            Plan::Postprocess {
                boxes,
                classes,
                scores,
                count,
            } => {
                // An Arc clone, not a copy of the specs: nothing allocated per frame.
                let model = session.model().clone();
                let specs = model.outputs();
                let n_out = read_f32(session, *count, &specs[*count], &mut self.buf_a)?;
                let count = if n_out > 0 {
                    self.buf_a[0].max(0.0) as usize
                } else {
                    0
                };
                read_f32(session, *boxes, &specs[*boxes], &mut self.buf_a)?;
                read_f32(session, *scores, &specs[*scores], &mut self.buf_b)?;
                let n = count.min(self.buf_a.len() / 4).min(self.buf_b.len());
                for i in 0..n {
                    let b = &self.buf_a[i * 4..i * 4 + 4];
                    out.push(RawDetection {
                        class_id: 0,
                        score: self.buf_b[i],
                        ymin: b[0].clamp(0.0, 1.0),
                        xmin: b[1].clamp(0.0, 1.0),
                        ymax: b[2].clamp(0.0, 1.0),
                        xmax: b[3].clamp(0.0, 1.0),
                    });
                }
                read_f32(session, *classes, &specs[*classes], &mut self.buf_b)?;
                for (i, d) in out.iter_mut().enumerate() {
                    d.class_id = self.buf_b.get(i).copied().unwrap_or(0.0).max(0.0).round() as u32;
                }
            }
            Plan::RawSsd {
                boxes,
                scores,
                classes,
                ssd,
            } => {
                let model = session.model().clone();
                let specs = model.outputs();
                read_f32(session, *boxes, &specs[*boxes], &mut self.buf_a)?;
                read_f32(session, *scores, &specs[*scores], &mut self.buf_b)?;
                ssd.decode(&self.buf_a, &self.buf_b, *classes, out)
                    .map_err(|e| InferError::Runtime {
                        call: "raw SSD decode",
                        message: e,
                    })?;
            }
            Plan::Classifier {
                output,
                classes,
                top_k,
                activation,
            } => {
                let model = session.model().clone();
                let spec = &model.outputs()[*output];
                read_f32(session, *output, spec, &mut self.buf_a)?;
                let scores = &mut self.buf_a[..*classes];
                let act = activation.unwrap_or_else(|| guess_activation(scores, spec.dtype));
                apply_activation(scores, act);
                self.order.clear();
                self.order.extend(0..*classes as u32);
                let k = (*top_k).min(*classes);
                let cmp = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]);
                if k < self.order.len() {
                    self.order.select_nth_unstable_by(k - 1, cmp);
                    self.order.truncate(k);
                }
                self.order.sort_unstable_by(cmp);
                for &c in &self.order {
                    out.push(RawDetection {
                        class_id: c,
                        score: scores[c as usize],
                        ymin: 0.0,
                        xmin: 0.0,
                        ymax: 1.0,
                        xmax: 1.0,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn is_classifier(&self) -> bool {
        matches!(self.plan, Plan::Classifier { .. })
    }
}

/// Quantized outputs are probabilities already (softmax is usually inside
/// the graph); float outputs are logits unless they form a distribution.
fn guess_activation(scores: &[f32], dtype: DType) -> ScoreActivation {
    if matches!(dtype, DType::U8 | DType::I8) {
        return ScoreActivation::None;
    }
    let in_range = scores.iter().all(|s| (0.0..=1.0).contains(s));
    let sum: f32 = scores.iter().sum();
    if in_range && (sum - 1.0).abs() < 0.05 {
        ScoreActivation::None
    } else {
        ScoreActivation::Softmax
    }
}

fn apply_activation(scores: &mut [f32], act: ScoreActivation) {
    match act {
        ScoreActivation::None => {}
        ScoreActivation::Sigmoid => scores.iter_mut().for_each(|s| *s = 1.0 / (1.0 + (-*s).exp())),
        ScoreActivation::Softmax => {
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            if sum > 0.0 {
                scores.iter_mut().for_each(|s| *s /= sum);
            }
        }
    }
}

/// Reads an output as f32 into `buf` (resized, not reallocated once large
/// enough), dequantizing integer outputs. Returns the element count.
fn read_f32(
    session: &mut Session,
    index: usize,
    spec: &TensorSpec,
    buf: &mut Vec<f32>,
) -> Result<usize, InferError> {
    let n = spec.num_elements();
    buf.resize(n, 0.0);
    let (scale, zp) = spec.quantization().unwrap_or((1.0, 0));
    let dtype = spec.dtype;
    session.read_output(index, |bytes| match dtype {
        DType::F32 => {
            for (d, c) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
                *d = f32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
            Ok(())
        }
        DType::U8 => {
            for (d, q) in buf.iter_mut().zip(bytes) {
                *d = (*q as i64 - zp) as f32 * scale;
            }
            Ok(())
        }
        DType::I8 => {
            for (d, q) in buf.iter_mut().zip(bytes) {
                *d = (*q as i8 as i64 - zp) as f32 * scale;
            }
            Ok(())
        }
        other => Err(InferError::Settings(format!(
            "output {} has type {}, which edgevision cannot decode",
            spec.name,
            other.name()
        ))),
    })??;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: "t".into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            scale: vec![],
            zero_point: vec![],
        }
    }

    #[test]
    fn picks_the_decoder_from_the_outputs() {
        let pp = [spec(&[1, 10, 4]), spec(&[1, 10]), spec(&[1, 10]), spec(&[1])];
        assert_eq!(DecoderKind::detect(&pp, true).unwrap(), DecoderKind::Postprocess);
        let raw = [spec(&[1, 1917, 4]), spec(&[1, 1917, 24])];
        assert_eq!(DecoderKind::detect(&raw, false).unwrap(), DecoderKind::RawSsd);
        let raw_swapped = [spec(&[1, 1917, 91]), spec(&[1, 1917, 4])];
        assert_eq!(raw_ssd_layout(&raw_swapped), Some((1, 0, 91)));
        let cls = [spec(&[1, 1001])];
        assert_eq!(DecoderKind::detect(&cls, false).unwrap(), DecoderKind::Classifier);
        let err = DecoderKind::detect(&[spec(&[1, 5, 5, 3])], false).unwrap_err();
        assert!(err.contains("cannot tell"), "{err}");
    }

    #[test]
    fn activations() {
        let mut s = [1.0f32, 2.0, 3.0];
        assert_eq!(guess_activation(&s, DType::F32), ScoreActivation::Softmax);
        apply_activation(&mut s, ScoreActivation::Softmax);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(s[2] > s[1] && s[1] > s[0]);
        assert_eq!(guess_activation(&[0.2, 0.8], DType::F32), ScoreActivation::None);
        assert_eq!(guess_activation(&[5.0, 250.0], DType::U8), ScoreActivation::None);
        let mut z = [0.0f32];
        apply_activation(&mut z, ScoreActivation::Sigmoid);
        assert!((z[0] - 0.5).abs() < 1e-6);
    }
}

#[cfg(test)]
mod kind_names {
    use super::DecoderKind;

    #[test]
    fn names_are_what_the_config_reads() {
        for k in [
            DecoderKind::Auto,
            DecoderKind::Postprocess,
            DecoderKind::RawSsd,
            DecoderKind::Classifier,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json.trim_matches('"'), k.as_str());
        }
    }
}

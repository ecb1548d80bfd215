//! `--report`: what the conversion changed and how close the result is to
//! the input model on the calibration (or held-out validation) images (SQNR and cosine similarity
//! per output and per quantized tensor, as ai-edge-quantizer validates),
//! plus, for detection models, how well the detections agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use super::calibrate::Exposed;
use super::{model_io, ConvertError};
use crate::infer::{Detection, Detector, DetectorSettings, FilterSettings, Runtime};
use crate::tflite::schema::ModelT;

/// Closeness of one tensor to its reference.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    pub name: String,
    /// 10 log10(signal power / error power); large when equal.
    pub sqnr_db: f64,
    pub cosine: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    signal: f64,
    noise: f64,
    dot: f64,
    a2: f64,
    b2: f64,
}

impl Acc {
    fn add(&mut self, reference: &[f32], test: &[f32]) {
        for (r, t) in reference.iter().zip(test) {
            let (r, t) = (f64::from(*r), f64::from(*t));
            self.signal += r * r;
            self.noise += (r - t) * (r - t);
            self.dot += r * t;
            self.a2 += r * r;
            self.b2 += t * t;
        }
    }

    fn quality(&self, name: String) -> Quality {
        let sqnr_db = if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        };
        let cosine = if self.a2 == 0.0 || self.b2 == 0.0 {
            f64::from(u8::from(self.a2 == self.b2))
        } else {
            self.dot / (self.a2.sqrt() * self.b2.sqrt())
        };
        // JSON has no infinity: cap at 200 dB (identical for f32 data).
        Quality {
            name,
            sqnr_db: sqnr_db.min(200.0),
            cosine,
        }
    }
}

/// Precision and recall of the converted model's detections against the
/// reference's (score >= 0.5, same class, IoU >= 0.5).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agreement {
    pub reference_detections: usize,
    pub converted_detections: usize,
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub mode: String,
    pub input_bytes: usize,
    pub output_bytes: usize,
    pub size_ratio: f64,
    pub ops_quantized: BTreeMap<String, usize>,
    pub ops_kept_float: BTreeMap<String, usize>,
    pub notes: Vec<String>,
    pub calibration_images: usize,
    pub skipped_images: Vec<String>,
    /// Which images the comparison ran on: "calibration" or "validation".
    pub compared_on: String,
    pub compared_images: usize,
    pub outputs: Vec<Quality>,
    pub tensors: Vec<Quality>,
    pub detections: Option<Agreement>,
}

/// Compares `test` with `reference` on `images`: every output, plus the
/// tensors `tensors` (indices valid in both models).
pub fn compare(
    rt: &'static Runtime,
    reference: &ModelT,
    test: &ModelT,
    tensors: &[i32],
    images: &[(PathBuf, RgbImage)],
    threads: usize,
) -> Result<(Vec<Quality>, Vec<Quality>), ConvertError> {
    let outputs = |m: &ModelT| -> Vec<i32> {
        m.subgraphs
            .as_ref()
            .and_then(|s| s.first())
            .and_then(|s| s.outputs.clone())
            .unwrap_or_default()
    };
    let (ref_outs, test_outs) = (outputs(reference), outputs(test));
    // A tensor that is an output of either model is already compared as
    // one; appending it to one model only would misalign the pairs.
    let extra: Vec<i32> = tensors
        .iter()
        .copied()
        .filter(|t| !ref_outs.contains(t) && !test_outs.contains(t))
        .collect();
    let mut a = Exposed::new(rt, reference, &extra, threads)?;
    let mut b = Exposed::new(rt, test, &extra, threads)?;
    let n_out = ref_outs.len();
    if a.tensors.len() != b.tensors.len() || test_outs.len() != n_out {
        return Err(ConvertError::Unsupported(format!(
            "the converted model has {} outputs, the input {}",
            test_outs.len(),
            n_out
        )));
    }
    let mut accs = vec![Acc::default(); a.tensors.len()];
    for (_, img) in images {
        let (_, ra) = a.run(img)?;
        let (_, rb) = b.run(img)?;
        for (k, acc) in accs.iter_mut().enumerate() {
            acc.add(&ra[k], &rb[k]);
        }
    }
    let names = super::graph::tensors(reference);
    let q: Vec<Quality> = accs
        .iter()
        .zip(&a.tensors)
        .map(|(acc, t)| acc.quality(names[*t as usize].name.clone().unwrap_or_default()))
        .collect();
    let (outs, rest) = q.split_at(n_out.min(q.len()));
    Ok((outs.to_vec(), rest.to_vec()))
}

/// Matches detections greedily by score: same class, IoU >= 0.5.
pub fn agreement(reference: &[Vec<Detection>], test: &[Vec<Detection>]) -> Agreement {
    let (mut nr, mut nt, mut matched) = (0, 0, 0);
    for (r, t) in reference.iter().zip(test) {
        nr += r.len();
        nt += t.len();
        let mut used = vec![false; r.len()];
        let mut t: Vec<&Detection> = t.iter().collect();
        t.sort_by(|a, b| b.score.total_cmp(&a.score));
        for d in t {
            let best = r
                .iter()
                .enumerate()
                .filter(|(i, e)| !used[*i] && e.class_id == d.class_id)
                .map(|(i, e)| (i, e.bbox.iou(&d.bbox)))
                .filter(|(_, iou)| *iou >= 0.5)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, _)) = best {
                used[i] = true;
                matched += 1;
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(matched, nt), ratio(matched, nr));
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Agreement {
        reference_detections: nr,
        converted_detections: nt,
        matched,
        precision,
        recall,
        f1,
    }
}

/// Detections (score >= 0.5) of a model on each image; `None` when the
/// model is not a detector (e.g. a classifier).
pub fn detections(
    rt: &'static Runtime,
    m: &mut ModelT,
    images: &[(PathBuf, RgbImage)],
    threads: usize,
) -> Result<Option<Vec<Vec<Detection>>>, ConvertError> {
    let file =
        model_io::write_temp(m).map_err(|e| ConvertError::Calibration(format!("temporary file: {e}")))?;
    let mut settings = DetectorSettings::new(file.path());
    settings.session.threads = threads.max(1);
    settings.filter = FilterSettings {
        threshold: 0.5,
        ..Default::default()
    };
    let mut det = match Detector::new(rt, &settings) {
        Ok(d) if !d.is_classifier() => d,
        _ => return Ok(None),
    };
    let mut all = Vec::with_capacity(images.len());
    for (_, img) in images {
        all.push(det.detect_image(img)?.0);
    }
    Ok(Some(all))
}

/// The one-paragraph summary the command prints.
pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "{}: {} -> {} bytes ({:.2}x smaller)\n",
        r.mode,
        r.input_bytes,
        r.output_bytes,
        r.input_bytes as f64 / r.output_bytes.max(1) as f64
    );
    if !r.ops_quantized.is_empty() {
        let ops: Vec<String> = r.ops_quantized.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        s += &format!("quantized ops: {}\n", ops.join(", "));
    }
    if !r.ops_kept_float.is_empty() {
        let ops: Vec<String> = r
            .ops_kept_float
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect();
        s += &format!("kept float: {}\n", ops.join(", "));
    }
    for n in &r.notes {
        s += &format!("{n}\n");
    }
    if r.compared_images > 0 {
        s += &format!(
            "compared with the input model on {} {} images\n",
            r.compared_images, r.compared_on
        );
    }
    for q in &r.outputs {
        s += &format!(
            "output {}: SQNR {:.1} dB, cosine {:.5}\n",
            q.name, q.sqnr_db, q.cosine
        );
    }
    if !r.tensors.is_empty() {
        let worst = r.tensors.iter().min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        if let Some(w) = worst {
            s += &format!(
                "{} quantized tensors compared; lowest SQNR {:.1} dB ({})\n",
                r.tensors.len(),
                w.sqnr_db,
                w.name
            );
        }
    }
    if let Some(d) = &r.detections {
        s += &format!(
            "detections vs input model (score >= 0.5, IoU >= 0.5): precision {:.3}, recall {:.3}, F1 {:.3} ({} vs {})\n",
            d.precision, d.recall, d.f1, d.converted_detections, d.reference_detections
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::BBox;

    fn det(class_id: u32, score: f32, left: f32) -> Detection {
        Detection {
            label: String::new(),
            class_id,
            score,
            bbox: BBox {
                left,
                top: 0.0,
                right: left + 10.0,
                bottom: 10.0,
            },
        }
    }

    #[test]
    fn sqnr_and_cosine() {
        let mut a = Acc::default();
        a.add(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        let q = a.quality("x".into());
        assert_eq!(q.sqnr_db, 200.0);
        assert!((q.cosine - 1.0).abs() < 1e-12);
        let mut a = Acc::default();
        a.add(&[1.0, 0.0], &[1.1, 0.0]);
        let q = a.quality("x".into());
        assert!((q.sqnr_db - 20.0).abs() < 1e-4, "{}", q.sqnr_db);
    }

    #[test]
    fn agreement_needs_class_and_overlap() {
        let r = vec![vec![det(1, 0.9, 0.0), det(2, 0.8, 50.0)]];
        let t = vec![vec![det(1, 0.7, 1.0), det(3, 0.8, 50.0), det(2, 0.6, 80.0)]];
        let a = agreement(&r, &t);
        assert_eq!(a.matched, 1);
        assert!((a.precision - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.recall - 0.5).abs() < 1e-9);
    }
}

//! Calibration: run the real LiteRT runtime on a copy of the model whose
//! subgraph outputs also list the intermediate tensors (the runtime then
//! keeps them, and their values are exactly those of a normal run), and
//! record each tensor's range over the calibration images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::{graph, model_io, ConvertError};
use crate::infer::preprocess::Preprocessor;
use crate::infer::{DType, Model, Normalization, Runtime, Session, SessionOptions};
use crate::tflite::schema::{ModelT, TensorType};

/// How per-image ranges combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeMethod {
    /// Smallest minimum and largest maximum over all images.
    #[default]
    MinMax,
    /// Exponential moving average of the per-image minima and maxima
    /// (factor 0.95; the first image starts it): less sensitive to outliers.
    MovingAverage,
}

/// The images of a calibration directory.
pub struct Images {
    pub images: Vec<(PathBuf, RgbImage)>,
    /// Files that could not be decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Loads up to `samples` JPEG/PNG files of `dir` (sorted by name), or
/// `samples` frames when `dir` is a source URI. Files
/// that cannot be decoded are skipped with a warning; no usable image at
/// all is an error.
pub fn load_images(dir: &Path, samples: usize) -> Result<Images, ConvertError> {
    let err = |m: String| ConvertError::Calibration(m);
    // A source URI instead (rtsp://, http://, exec:, /dev/videoN, ...):
    // `samples` frames from it, as the daemon would see them.
    if let Some(uri) = crate::capture::grab::source_arg(dir) {
        let opts = crate::capture::grab::grab_options(640, 480, std::time::Duration::from_secs(10));
        let frames = crate::capture::grab::grab_frames(&uri, &opts, samples).map_err(err)?;
        return Ok(Images {
            images: frames
                .into_iter()
                .enumerate()
                .map(|(i, f)| (PathBuf::from(format!("{uri}#{}", i + 1)), f))
                .collect(),
            skipped: Vec::new(),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(err(format!("no JPEG or PNG images in {}", dir.display())));
    }
    let mut out = Images {
        images: Vec::new(),
        skipped: Vec::new(),
    };
    for p in paths {
        if out.images.len() >= samples {
            break;
        }
        match image::open(&p) {
            Ok(img) => out.images.push((p, img.to_rgb8())),
            Err(e) => {
                tracing::warn!("skipping calibration image {}: {e}", p.display());
                eprintln!("warning: skipping calibration image {}: {e}", p.display());
                out.skipped.push((p, e.to_string()));
            }
        }
    }
    if out.images.is_empty() {
        return Err(err(format!(
            "none of the images in {} could be read",
            dir.display()
        )));
    }
    Ok(out)
}

/// (min, max) of a tensor.
pub type Range = (f32, f32);

/// A compiled copy of a model with extra tensors exposed as outputs.
pub struct Exposed {
    session: Session,
    pre: Preprocessor,
    /// Tensor index of each output, in output order.
    pub tensors: Vec<i32>,
    _file: tempfile::NamedTempFile,
}

/// Float32 activations produced by ops whose shape the file fully knows:
/// what can be exposed and calibrated.
pub fn activations(m: &ModelT) -> Vec<i32> {
    let mut v = Vec::new();
    let ts = graph::tensors(m);
    for op in graph::ops(m) {
        if graph::op_of(m, op) == Some(crate::tflite::schema::BuiltinOperator::CUSTOM) {
            continue;
        }
        for &o in op.outputs.iter().flatten() {
            let t = &ts[o as usize];
            let known = t
                .shape
                .as_ref()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|d| *d > 0));
            if t.type_ == TensorType::FLOAT32 && known && !graph::is_const(m, t) {
                v.push(o);
            }
        }
    }
    v
}

impl Exposed {
    /// Compiles `m` with `extra` tensors appended to its outputs.
    pub fn new(
        rt: &'static Runtime,
        m: &ModelT,
        extra: &[i32],
        threads: usize,
    ) -> Result<Self, ConvertError> {
        let mut copy = m.clone();
        let sg = &mut copy.subgraphs.as_mut().expect("checked")[0];
        let outs = sg.outputs.get_or_insert_with(Vec::new);
        for t in extra {
            if !outs.contains(t) {
                outs.push(*t);
            }
        }
        let tensors = outs.clone();
        let file = model_io::write_temp(&mut copy)
            .map_err(|e| ConvertError::Calibration(format!("temporary file: {e}")))?;
        drop(copy);
        let model: Arc<Model> = Model::load(rt, file.path())?;
        let input = model
            .inputs()
            .first()
            .cloned()
            .ok_or_else(|| ConvertError::Unsupported("the model has no input".into()))?;
        let pre = Preprocessor::new(&input, Normalization::default())?;
        let session = Session::new(
            model,
            SessionOptions {
                threads: threads.max(1),
                xnnpack: true,
            },
        )?;
        Ok(Self {
            session,
            pre,
            tensors,
            _file: file,
        })
    }

    /// Runs one image; returns the range of the model input and of each
    /// output. `input_sums`, if given, gets the input's per-channel sums.
    pub fn run_ranges(
        &mut self,
        img: &RgbImage,
        input_sums: Option<&mut [f64]>,
    ) -> Result<(Range, Vec<Range>), ConvertError> {
        let pre = &mut self.pre;
        let spec = self.session.model().inputs()[0].clone();
        let input = self
            .session
            .write_input(0, |dst| -> Result<(f32, f32), ConvertError> {
                pre.run(img.as_raw(), img.width(), img.height(), dst)?;
                if let (Some(sums), DType::F32) = (input_sums, spec.dtype) {
                    add_channel_sums(dst, sums);
                }
                Ok(min_max_bytes(dst, spec.dtype, spec.quantization()))
            })??;
        self.session.run()?;
        let n = self.session.model().outputs().len();
        let mut outs = Vec::with_capacity(n);
        for k in 0..n {
            let spec = &self.session.model().outputs()[k];
            let (dtype, q) = (spec.dtype, spec.quantization());
            outs.push(self.session.read_output(k, |b| min_max_bytes(b, dtype, q))?);
        }
        Ok((input, outs))
    }

    /// Runs one image; returns the model input as float values (as the
    /// model sees them, dequantized) and every output as float values.
    pub fn run(&mut self, img: &RgbImage) -> Result<(Vec<f32>, Vec<Vec<f32>>), ConvertError> {
        let pre = &mut self.pre;
        let spec = self.session.model().inputs()[0].clone();
        let input = self
            .session
            .write_input(0, |dst| -> Result<Vec<f32>, ConvertError> {
                pre.run(img.as_raw(), img.width(), img.height(), dst)?;
                Ok(to_f32(dst, spec.dtype, spec.quantization()))
            })??;
        self.session.run()?;
        let n = self.session.model().outputs().len();
        let mut outs = Vec::with_capacity(n);
        for k in 0..n {
            let spec = self.session.model().outputs()[k].clone();
            outs.push(
                self.session
                    .read_output(k, |b| to_f32(b, spec.dtype, spec.quantization()))?,
            );
        }
        Ok((input, outs))
    }
}

/// `b` seen as f32 values when it is 4-aligned (runtime buffers are).
fn as_f32(b: &[u8]) -> Option<&[f32]> {
    // SAFETY: every bit pattern is a valid f32; align_to only returns a
    // middle part that is aligned and in bounds.
    let (pre, mid, post) = unsafe { b.align_to::<f32>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Smallest and largest real value of a tensor's bytes (no allocation:
/// this runs on every activation of every calibration image).
pub fn min_max_bytes(b: &[u8], dtype: DType, q: Option<(f32, i64)>) -> (f32, f32) {
    if dtype == DType::F32 {
        if let Some(v) = as_f32(b) {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for &x in v {
                if x < lo {
                    lo = x;
                }
                if x > hi {
                    hi = x;
                }
            }
            return (lo, hi);
        }
    }
    min_max(&to_f32(b, dtype, q))
}

/// Raw tensor bytes as real values.
pub fn to_f32(b: &[u8], dtype: DType, q: Option<(f32, i64)>) -> Vec<f32> {
    let (s, zp) = q.unwrap_or((1.0, 0));
    if let (DType::F32, Some(v)) = (dtype, as_f32(b)) {
        return v.to_vec();
    }
    match dtype {
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::U8 => b.iter().map(|v| (i64::from(*v) - zp) as f32 * s).collect(),
        DType::I8 => b.iter().map(|v| (i64::from(*v as i8) - zp) as f32 * s).collect(),
        DType::I32 => b
            .chunks_exact(4)
            .map(|c| (i64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]])) - zp) as f32 * s)
            .collect(),
        _ => Vec::new(),
    }
}

/// Ranges of tensors, by tensor index of subgraph 0; the model input too.
#[derive(Debug, Clone, Default)]
pub struct Ranges {
    pub ranges: HashMap<i32, (f32, f32)>,
    /// Mean of each channel (last dimension) of the weighted ops' inputs,
    /// for bias correction.
    pub channel_means: HashMap<i32, Vec<f32>>,
    pub images: usize,
}

/// Adds each channel's (last dimension's) values of float32 `bytes` to `sums`.
fn add_channel_sums(bytes: &[u8], sums: &mut [f64]) {
    let c = sums.len().max(1);
    for (k, v) in bytes.chunks_exact(4).enumerate() {
        sums[k % c] += f64::from(f32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
    }
}

/// Float activations feeding CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED,
/// with their channel count.
fn weighted_inputs(m: &ModelT) -> HashMap<i32, usize> {
    use crate::tflite::schema::BuiltinOperator as Op;
    let ts = graph::tensors(m);
    let mut out = HashMap::new();
    for op in graph::ops(m) {
        let weighted = matches!(
            graph::op_of(m, op),
            Some(Op::CONV_2D | Op::DEPTHWISE_CONV_2D | Op::FULLY_CONNECTED)
        );
        let Some(&t) = op.inputs.as_ref().and_then(|v| v.first()) else {
            continue;
        };
        if !weighted || t < 0 || graph::is_const(m, &ts[t as usize]) {
            continue;
        }
        let tensor = &ts[t as usize];
        let c = tensor.shape.as_ref().and_then(|s| s.last()).copied().unwrap_or(0);
        if tensor.type_ == TensorType::FLOAT32 && c > 0 {
            out.insert(t, c as usize);
        }
    }
    out
}

fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(*x), hi.max(*x))
    })
}

/// Calibrates every float activation of `m` on `images`, with a progress bar.
pub fn calibrate(
    rt: &'static Runtime,
    m: &ModelT,
    images: &[(PathBuf, RgbImage)],
    method: RangeMethod,
    threads: usize,
) -> Result<Ranges, ConvertError> {
    let extra = activations(m);
    let mut exposed = Exposed::new(rt, m, &extra, threads)?;
    let input = graph::subgraph0(m)?
        .inputs
        .as_ref()
        .and_then(|i| i.first())
        .copied()
        .ok_or_else(|| ConvertError::Unsupported("the model has no input".into()))?;
    let bar = indicatif::ProgressBar::new(images.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} images {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut ema: HashMap<i32, (f32, f32)> = HashMap::new();
    let mut out = Ranges::default();
    let wanted = weighted_inputs(m);
    let mut sums: HashMap<i32, Vec<f64>> = wanted.iter().map(|(t, c)| (*t, vec![0.0; *c])).collect();
    let mut elements: HashMap<i32, usize> = HashMap::new();
    for (_, img) in images {
        let (inp, outs) = exposed.run_ranges(img, sums.get_mut(&input).map(Vec::as_mut_slice))?;
        for (k, &t) in exposed.tensors.iter().enumerate() {
            if let Some(s) = sums.get_mut(&t) {
                let n = exposed.session.read_output(k, |b| {
                    add_channel_sums(b, s);
                    b.len() / 4
                })?;
                *elements.entry(t).or_insert(0) += n;
            }
        }
        if sums.contains_key(&input) {
            let n = graph::num_elements(&graph::tensors(m)[input as usize]);
            *elements.entry(input).or_insert(0) += n;
        }
        let per = std::iter::once((input, inp)).chain(exposed.tensors.iter().copied().zip(outs));
        for (t, (lo, hi)) in per {
            if !lo.is_finite() || !hi.is_finite() {
                continue;
            }
            let r = out.ranges.entry(t).or_insert((lo, hi));
            r.0 = r.0.min(lo);
            r.1 = r.1.max(hi);
            ema.entry(t)
                .and_modify(|e| *e = (ema_step(e.0, lo), ema_step(e.1, hi)))
                .or_insert((lo, hi));
        }
        out.images += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if method == RangeMethod::MovingAverage {
        out.ranges.extend(ema);
    }
    for (t, s) in sums {
        let per_channel = elements.get(&t).copied().unwrap_or(0) / s.len().max(1);
        if per_channel > 0 {
            let means = s.iter().map(|v| (v / per_channel as f64) as f32).collect();
            out.channel_means.insert(t, means);
        }
    }
    Ok(out)
}

/// Weight of the running value in the moving average.
const EMA_KEEP: f32 = 0.95;

fn ema_step(running: f32, new: f32) -> f32 {
    EMA_KEEP * running + (1.0 - EMA_KEEP) * new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_follows_new_ranges_slowly() {
        // One outlier image moves the range by 5% of the jump only.
        let mut hi = 6.0;
        hi = ema_step(hi, 106.0);
        assert!((hi - 11.0).abs() < 1e-4, "{hi}");
        for _ in 0..200 {
            hi = ema_step(hi, 6.0);
        }
        assert!((hi - 6.0).abs() < 1e-3, "{hi}");
    }
}

//! A model file and a compiled, runnable instance of it.
//!
//! Tensor shapes, types and quantization come from our own reading of the
//! flatbuffer (`crate::tflite`), which also gives the true sizes of outputs
//! whose shapes the file leaves empty.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgefirst_tflite_sys::litert as lr;

use super::error::InferError;
use super::runtime::{Runtime, TensorBuf};
use crate::tflite::model_file::{self, ModelInfo, PostProcessOptions};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    U8,
    I8,
    I16,
    I32,
    I64,
    Bool,
    Other,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 | DType::Bool | DType::Other => 1,
            DType::F16 | DType::I16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
            DType::Other => "other",
        }
    }
}

/// What a model says about one of its input or output tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    /// The true shape (computed for postprocess outputs left empty in the file).
    pub shape: Vec<usize>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
}

impl TensorSpec {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn byte_size(&self) -> usize {
        self.num_elements() * self.dtype.size()
    }

    /// Per-tensor quantization (scale, zero point), if the tensor is quantized.
    pub fn quantization(&self) -> Option<(f32, i64)> {
        match (self.scale.first(), self.zero_point.first()) {
            (Some(s), zp)
                if *s > 0.0 && matches!(self.dtype, DType::U8 | DType::I8 | DType::I16 | DType::I32) =>
            {
                Some((*s, zp.copied().unwrap_or(0)))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {:?}", self.name, self.dtype.name(), self.shape)?;
        if let Some((s, zp)) = self.quantization() {
            write!(f, " (scale {s}, zero point {zp})")?;
        }
        Ok(())
    }
}

/// A loaded model: the bytes, LiteRT's handle and our description of it.
pub struct Model {
    rt: &'static Runtime,
    raw: lr::Model,
    path: PathBuf,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    info: ModelInfo,
    // LiteRT reads the model from this memory for as long as `raw` lives.
    _bytes: Vec<u8>,
}

// SAFETY: LiteRT models are immutable after creation.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Reads, checks and loads a `.tflite` file.
    pub fn load(rt: &'static Runtime, path: &Path) -> Result<Arc<Model>, InferError> {
        // Verify the file and flatbuffer ourselves first: LiteRT trusts its input.
        let model_file::CheckedModel { bytes, info } = model_file::read_checked(path)?;
        let invalid = |reason: String| InferError::ModelInvalid {
            path: path.to_path_buf(),
            reason,
        };
        let (inputs, outputs) = specs(&info).map_err(invalid)?;
        let mut raw: lr::Model = std::ptr::null_mut();
        // SAFETY: `bytes` outlives `raw` (both owned by the returned Model).
        let (status, log) = super::quiet::capture_stderr(|| unsafe {
            (rt.fns().create_model_from_buffer)(rt.env(), bytes.as_ptr().cast(), bytes.len(), &mut raw)
        });
        rt.check(status, "LiteRtCreateModelFromBuffer").map_err(|e| {
            invalid(
                format!("{e} {}", super::quiet::error_lines(&log))
                    .trim_end()
                    .to_string(),
            )
        })?;
        if raw.is_null() {
            return Err(invalid("LiteRT returned no model".into()));
        }
        let model = Model {
            rt,
            raw,
            path: path.to_path_buf(),
            inputs,
            outputs,
            info,
            _bytes: bytes,
        };
        model.check_signature()?;
        Ok(Arc::new(model))
    }

    /// LiteRT's default signature must list the subgraph's inputs and
    /// outputs in the same order, with the same element types.
    fn check_signature(&self) -> Result<(), InferError> {
        let fns = self.rt.fns();
        let invalid = |reason: String| InferError::ModelInvalid {
            path: self.path.clone(),
            reason,
        };
        let mut sig: lr::Signature = std::ptr::null_mut();
        // SAFETY: live model; out-pointers.
        unsafe {
            self.rt.check(
                (fns.get_model_signature)(self.raw, 0, &mut sig),
                "LiteRtGetModelSignature",
            )?;
            let (mut ni, mut no) = (0usize, 0usize);
            self.rt.check(
                (fns.get_num_signature_inputs)(sig, &mut ni),
                "LiteRtGetNumSignatureInputs",
            )?;
            self.rt.check(
                (fns.get_num_signature_outputs)(sig, &mut no),
                "LiteRtGetNumSignatureOutputs",
            )?;
            if ni != self.inputs.len() || no != self.outputs.len() {
                return Err(invalid(format!(
                    "LiteRT sees {ni} inputs and {no} outputs, the file lists {} and {}",
                    self.inputs.len(),
                    self.outputs.len()
                )));
            }
        }
        for i in 0..self.inputs.len() {
            let ty = self.litert_type(true, i)?;
            check_dtype(&self.inputs[i], ty.element_type).map_err(invalid)?;
        }
        for i in 0..self.outputs.len() {
            let ty = self.litert_type(false, i)?;
            check_dtype(&self.outputs[i], ty.element_type).map_err(invalid)?;
        }
        Ok(())
    }

    fn litert_type(&self, input: bool, index: usize) -> Result<lr::RankedTensorType, InferError> {
        let fns = self.rt.fns();
        // SAFETY: live model; index checked against the signature's counts;
        // the ranked type is plain data.
        unsafe {
            let mut sig: lr::Signature = std::ptr::null_mut();
            self.rt.check(
                (fns.get_model_signature)(self.raw, 0, &mut sig),
                "LiteRtGetModelSignature",
            )?;
            let mut t: lr::Tensor = std::ptr::null_mut();
            if input {
                self.rt.check(
                    (fns.get_signature_input_tensor_by_index)(sig, index, &mut t),
                    "LiteRtGetSignatureInputTensorByIndex",
                )?;
            } else {
                self.rt.check(
                    (fns.get_signature_output_tensor_by_index)(sig, index, &mut t),
                    "LiteRtGetSignatureOutputTensorByIndex",
                )?;
            }
            let mut ty = std::mem::zeroed::<lr::RankedTensorType>();
            self.rt.check(
                (fns.get_ranked_tensor_type)(t, &mut ty),
                "LiteRtGetRankedTensorType",
            )?;
            Ok(ty)
        }
    }

    /// The runtime the model was loaded into.
    pub fn runtime(&self) -> &'static Runtime {
        self.rt
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Options of the `TFLite_Detection_PostProcess` op, if the model has one.
    pub fn postprocess(&self) -> Option<PostProcessOptions> {
        self.info.detection_postprocess()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: created by LiteRtCreateModelFromBuffer; every compiled
        // model holds an Arc to us, so none outlives this.
        unsafe { (self.rt.fns().destroy_model)(self.raw) }
    }
}

fn check_dtype(spec: &TensorSpec, element_type: lr::LiteRtElementType) -> Result<(), String> {
    let expected = match spec.dtype {
        DType::F32 => 1,
        DType::I32 => 2,
        DType::U8 => 3,
        DType::I64 => 4,
        DType::Bool => 6,
        DType::I16 => 7,
        DType::I8 => 9,
        DType::F16 => 10,
        DType::Other => return Ok(()),
    };
    if element_type == expected {
        Ok(())
    } else {
        Err(format!(
            "tensor {} is {} in the file but LiteRT reports element type {element_type}",
            spec.name,
            spec.dtype.name()
        ))
    }
}

fn specs(info: &ModelInfo) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), String> {
    let out_shapes = info.output_shapes();
    let spec = |index: usize, shape: Option<Vec<usize>>| -> Result<TensorSpec, String> {
        let t = info
            .tensors
            .get(index)
            .ok_or_else(|| format!("tensor index {index} out of range"))?;
        Ok(TensorSpec {
            name: t.name.clone(),
            dtype: dtype_of(&t.dtype),
            shape: shape.unwrap_or_else(|| t.shape.iter().map(|d| (*d).max(0) as usize).collect()),
            scale: t.scale.clone(),
            zero_point: t.zero_point.clone(),
        })
    };
    let inputs = info
        .inputs
        .iter()
        .map(|i| spec(*i, None))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = info
        .outputs
        .iter()
        .enumerate()
        .map(|(k, i)| spec(*i, out_shapes.get(k).cloned()))
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err("the model has no inputs".into());
    }
    if outputs.is_empty() {
        return Err("the model has no outputs".into());
    }
    Ok((inputs, outputs))
}

fn dtype_of(d: &model_file::TensorType) -> DType {
    use model_file::TensorType as T;
    match d {
        T::Float32 => DType::F32,
        T::Float16 => DType::F16,
        T::Uint8 => DType::U8,
        T::Int8 => DType::I8,
        T::Int16 => DType::I16,
        T::Int32 => DType::I32,
        T::Int64 => DType::I64,
        T::Bool => DType::Bool,
        _ => DType::Other,
    }
}

/// Compilation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionOptions {
    /// CPU threads for one inference (XNNPACK's pool).
    pub threads: usize,
    /// XNNPACK kernels; off falls back to LiteRT's builtin kernels.
    pub xnnpack: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            xnnpack: true,
        }
    }
}

/// All cores: the default thread count.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A compiled model with its input and output buffers, run from one thread
/// at a time.
pub struct Session {
    model: Arc<Model>,
    compiled: lr::CompiledModel,
    inputs: Vec<TensorBuf>,
    outputs: Vec<TensorBuf>,
    in_raw: Vec<lr::TensorBuffer>,
    out_raw: Vec<lr::TensorBuffer>,
    /// The last run failed: the next one captures LiteRT's stderr.
    failing: bool,
}

// SAFETY: the compiled model and its buffers are used from one thread at a
// time (`&mut self`), which LiteRT allows.
unsafe impl Send for Session {}

impl Session {
    pub fn new(model: Arc<Model>, opts: SessionOptions) -> Result<Self, InferError> {
        let rt = model.rt;
        let options = rt.create_options(opts.threads, opts.xnnpack)?;
        let mut compiled: lr::CompiledModel = std::ptr::null_mut();
        // SAFETY: live env, model and options; out-pointer.
        let (status, log) = super::quiet::capture_stderr(|| unsafe {
            (rt.fns().create_compiled_model)(rt.env(), model.raw, options.raw, &mut compiled)
        });
        rt.check(status, "LiteRtCreateCompiledModel")
            .map_err(|e| InferError::ModelUnsupported {
                path: model.path.clone(),
                reason: format!("{e} {}", super::quiet::error_lines(&log))
                    .trim_end()
                    .to_string(),
            })?;
        drop(options);
        let mut session = Session {
            model: model.clone(),
            compiled,
            inputs: Vec::new(),
            outputs: Vec::new(),
            in_raw: Vec::new(),
            out_raw: Vec::new(),
            failing: false,
        };
        for (i, spec) in model.inputs.iter().enumerate() {
            let ty = model.litert_type(true, i)?;
            let size = spec.byte_size().max(session.required(true, i)?);
            session.inputs.push(TensorBuf::new(rt, &ty, size)?);
        }
        for (i, spec) in model.outputs.iter().enumerate() {
            let ty = model.litert_type(false, i)?;
            let size = spec.byte_size().max(session.required(false, i)?);
            session.outputs.push(TensorBuf::new(rt, &ty, size)?);
        }
        session.in_raw = session.inputs.iter().map(|b| b.raw).collect();
        session.out_raw = session.outputs.iter().map(|b| b.raw).collect();
        Ok(session)
    }

    fn required(&self, input: bool, index: usize) -> Result<usize, InferError> {
        let rt = self.model.rt;
        let fns = rt.fns();
        let mut reqs: lr::TensorBufferRequirements = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: live compiled model; the requirements are borrowed.
        unsafe {
            let status = if input {
                (fns.get_compiled_model_input_buffer_requirements)(self.compiled, 0, index, &mut reqs)
            } else {
                (fns.get_compiled_model_output_buffer_requirements)(self.compiled, 0, index, &mut reqs)
            };
            rt.check(status, "LiteRtGetCompiledModelBufferRequirements")?;
            rt.check(
                (fns.get_tensor_buffer_requirements_buffer_size)(reqs, &mut size),
                "LiteRtGetTensorBufferRequirementsBufferSize",
            )?;
        }
        Ok(size)
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Writes input `index` through `f`, which gets exactly the tensor's bytes.
    pub fn write_input<R>(&mut self, index: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, InferError> {
        let n = self.model.inputs[index].byte_size();
        self.inputs[index].write(|b| f(&mut b[..n]))
    }

    /// Reads output `index` through `f`, which gets exactly the tensor's bytes.
    pub fn read_output<R>(&mut self, index: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, InferError> {
        let n = self.model.outputs[index].byte_size();
        self.outputs[index].read(|b| f(&b[..n]))
    }

    /// Runs the model once on the current inputs.
    pub fn run(&mut self) -> Result<(), InferError> {
        let rt = self.model.rt;
        let (compiled, ins, outs) = (self.compiled, &mut self.in_raw, &mut self.out_raw);
        // SAFETY: the handle arrays hold live buffers matching the signature.
        let mut invoke = || unsafe {
            (rt.fns().run_compiled_model)(
                compiled,
                0,
                ins.len(),
                ins.as_mut_ptr(),
                outs.len(),
                outs.as_mut_ptr(),
            )
        };
        if !self.failing {
            let result = rt.check(invoke(), "LiteRtRunCompiledModel");
            self.failing = result.is_err();
            return result;
        }
        // LiteRT prints a few lines of its own per failed run: after a
        // failure, runs go through the stderr capture (slower, and it holds
        // a process-wide lock) so a model failing on every frame does not
        // flood the log; its reason goes into the error instead.
        let (status, log) = super::quiet::capture_stderr(invoke);
        let result = rt.check(status, "LiteRtRunCompiledModel").map_err(|e| match e {
            InferError::Runtime { call, message } => {
                let reason = super::quiet::error_lines(&log);
                InferError::Runtime {
                    call,
                    message: if reason.is_empty() {
                        message
                    } else {
                        format!("{message} ({reason})")
                    },
                }
            }
            other => other,
        });
        self.failing = result.is_err();
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: destroyed once, before the buffers and the model it uses.
        unsafe { (self.model.rt.fns().destroy_compiled_model)(self.compiled) }
    }
}

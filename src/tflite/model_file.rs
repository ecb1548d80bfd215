//! A safe reader for `.tflite` model files.
//!
//! [`read_model`] verifies the whole flatbuffer (with the `TFL3` file
//! identifier) before touching it, so corrupt, truncated or unrelated input
//! is an [`ModelFileError`], never a panic. It returns a [`ModelInfo`]: an
//! owned summary of subgraph 0 (tensors, inputs, outputs, operators) that
//! copies names and shapes but no weights.
//!
//! [`ModelFile`] keeps the verified view of the bytes for callers that need
//! more, e.g. buffer contents via [`ModelFile::buffer_data`], which also
//! handles models larger than 2 GB that keep buffer data after the
//! flatbuffer.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use flatbuffers::{InvalidFlatbuffer, VerifierOptions};

use super::flexbuf;
use super::schema;

/// Largest model file [`read_checked`] reads: edge models are tens of MB;
/// anything far bigger is a mistake, and would be read whole into memory.
pub const MAX_MODEL_FILE_BYTES: u64 = 512 << 20;

/// Largest tensor a model may declare. A constant's size is also bounded by
/// the file; this bounds activations, which LiteRT and the converter
/// allocate from the shape alone.
pub const MAX_TENSOR_BYTES: u64 = 256 << 20;

/// Name of the custom op that ends SSD-style detection models.
pub const DETECTION_POSTPROCESS: &str = "TFLite_Detection_PostProcess";

/// Why a model file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelFileError {
    /// Not a TFLite flatbuffer at all (empty, too short, wrong identifier).
    #[error("not a TFLite model: {0}")]
    NotTflite(String),
    /// The data ends before something the model refers to.
    #[error("truncated TFLite model: {0}")]
    Truncated(String),
    /// The flatbuffer or the model it describes is inconsistent.
    #[error("corrupt TFLite model: {0}")]
    Corrupt(String),
    /// The `TFLite_Detection_PostProcess` op's options are unusable.
    #[error("invalid {DETECTION_POSTPROCESS} options: {0}")]
    PostProcess(String),
}

/// Element type of a tensor (the schema's `TensorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    Uint8,
    Int64,
    String,
    Bool,
    Int16,
    Complex64,
    Int8,
    Float64,
    Complex128,
    Uint64,
    Resource,
    Variant,
    Uint32,
    Uint16,
    Int4,
    Bfloat16,
    /// A code this schema version does not know.
    Unknown(i8),
}

impl TensorType {
    fn from_schema(t: schema::TensorType) -> Self {
        use schema::TensorType as S;
        match t {
            S::FLOAT32 => Self::Float32,
            S::FLOAT16 => Self::Float16,
            S::INT32 => Self::Int32,
            S::UINT8 => Self::Uint8,
            S::INT64 => Self::Int64,
            S::STRING => Self::String,
            S::BOOL => Self::Bool,
            S::INT16 => Self::Int16,
            S::COMPLEX64 => Self::Complex64,
            S::INT8 => Self::Int8,
            S::FLOAT64 => Self::Float64,
            S::COMPLEX128 => Self::Complex128,
            S::UINT64 => Self::Uint64,
            S::RESOURCE => Self::Resource,
            S::VARIANT => Self::Variant,
            S::UINT32 => Self::Uint32,
            S::UINT16 => Self::Uint16,
            S::INT4 => Self::Int4,
            S::BFLOAT16 => Self::Bfloat16,
            S(code) => Self::Unknown(code),
        }
    }

    /// The schema's name, e.g. `"FLOAT32"`; `"UNKNOWN"` for unknown codes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "FLOAT32",
            Self::Float16 => "FLOAT16",
            Self::Int32 => "INT32",
            Self::Uint8 => "UINT8",
            Self::Int64 => "INT64",
            Self::String => "STRING",
            Self::Bool => "BOOL",
            Self::Int16 => "INT16",
            Self::Complex64 => "COMPLEX64",
            Self::Int8 => "INT8",
            Self::Float64 => "FLOAT64",
            Self::Complex128 => "COMPLEX128",
            Self::Uint64 => "UINT64",
            Self::Resource => "RESOURCE",
            Self::Variant => "VARIANT",
            Self::Uint32 => "UINT32",
            Self::Uint16 => "UINT16",
            Self::Int4 => "INT4",
            Self::Bfloat16 => "BFLOAT16",
            Self::Unknown(_) => "UNKNOWN",
        }
    }

    /// Bytes per element; `None` for variable-size, packed (INT4) and
    /// unknown types.
    pub fn element_size(self) -> Option<usize> {
        match self {
            Self::Uint8 | Self::Int8 | Self::Bool => Some(1),
            Self::Float16 | Self::Bfloat16 | Self::Int16 | Self::Uint16 => Some(2),
            Self::Float32 | Self::Int32 | Self::Uint32 => Some(4),
            Self::Float64 | Self::Int64 | Self::Uint64 | Self::Complex64 => Some(8),
            Self::Complex128 => Some(16),
            Self::String | Self::Resource | Self::Variant | Self::Int4 | Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(code) => write!(f, "UNKNOWN({code})"),
            t => f.write_str(t.name()),
        }
    }
}

/// One tensor of subgraph 0.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// The shape stored in the file. Empty for scalars, and for outputs
    /// whose shape only the runtime knows (see [`ModelInfo::output_shapes`]).
    pub shape: Vec<i32>,
    /// The shape with `-1` for dynamic dimensions, if the file has one.
    pub shape_signature: Option<Vec<i32>>,
    pub dtype: TensorType,
    /// Quantization scales: empty if not quantized, one for per-tensor,
    /// one per channel of `quantized_dimension` for per-channel.
    pub scale: Vec<f32>,
    /// Quantization zero points, parallel to `scale`.
    pub zero_point: Vec<i64>,
    pub quantized_dimension: i32,
    /// Index into the model's buffers (0: no data).
    pub buffer: u32,
}

/// One operator of subgraph 0.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorInfo {
    /// The op's name: the builtin operator's schema name (`"CONV_2D"`), or
    /// the custom code for custom ops (`"TFLite_Detection_PostProcess"`).
    /// Unknown builtin codes read `"BUILTIN_<code>"`.
    pub name: String,
    /// The resolved builtin code: the larger of `deprecated_builtin_code`
    /// and `builtin_code`, as TFLite does (old converters fill only the
    /// former, newer ones the latter; codes above 127 only fit the latter).
    pub builtin_code: i32,
    pub custom_code: Option<String>,
    /// Version of the op kernel.
    pub version: i32,
    /// Input tensor indices; `None` for omitted optional inputs (`-1`).
    pub inputs: Vec<Option<usize>>,
    /// Output tensor indices.
    pub outputs: Vec<Option<usize>>,
}

impl OperatorInfo {
    pub fn is_custom(&self) -> bool {
        self.builtin_code == schema::BuiltinOperator::CUSTOM.0
    }
}

/// The options of a `TFLite_Detection_PostProcess` op (its flexbuffer
/// `custom_options`), checked like TFLite's kernel does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostProcessOptions {
    pub max_detections: u32,
    /// Classes kept per box with fast NMS.
    pub max_classes_per_detection: u32,
    /// Boxes kept per class with regular NMS (100 if absent, like TFLite).
    pub detections_per_class: u32,
    /// Regular (per-class) NMS instead of fast NMS (false if absent).
    pub use_regular_nms: bool,
    /// Classes without background.
    pub num_classes: u32,
    pub nms_score_threshold: f32,
    pub nms_iou_threshold: f32,
    pub y_scale: f32,
    pub x_scale: f32,
    pub h_scale: f32,
    pub w_scale: f32,
    /// Tensor indices of the op's outputs: boxes, classes, scores, count.
    pub outputs: [usize; 4],
}

impl PostProcessOptions {
    /// Rows of the boxes, classes and scores outputs, as TFLite's `Prepare`
    /// sizes them: `max_detections * max_classes_per_detection`, with fast
    /// and regular NMS alike. With regular NMS only the first
    /// `max_detections` rows are ever written; see [`Self::rows_per_detection`].
    pub fn num_detected_boxes(&self) -> usize {
        // Checked to fit an i32 when parsed.
        self.max_detections as usize * self.max_classes_per_detection as usize
    }

    /// Output rows per counted detection: fast NMS counts boxes and writes
    /// `max_classes_per_detection` rows per box; regular NMS counts rows.
    pub fn rows_per_detection(&self) -> usize {
        if self.use_regular_nms {
            1
        } else {
            self.max_classes_per_detection as usize
        }
    }

    /// Shapes of the four outputs: `[1,n,4]`, `[1,n]`, `[1,n]`, `[1]` with
    /// `n` = [`Self::num_detected_boxes`].
    pub fn output_shapes(&self) -> [Vec<usize>; 4] {
        let n = self.num_detected_boxes();
        [vec![1, n, 4], vec![1, n], vec![1, n], vec![1]]
    }

    /// Parses and checks the flexbuffer map `bytes`.
    fn parse(bytes: &[u8], outputs: [usize; 4]) -> Result<Self, String> {
        let map = flexbuf::Map::root(bytes)?;
        let get = |key: &str| -> Result<Option<flexbuf::Value>, String> {
            match map.get(key)? {
                None | Some(flexbuf::Value::Null) => Ok(None),
                Some(v) => Ok(Some(v)),
            }
        };
        let count = |key: &str, default: Option<u32>| -> Result<u32, String> {
            let Some(v) = get(key)? else {
                return default.ok_or_else(|| format!("\"{key}\" is missing"));
            };
            let i = v
                .as_i64()
                .ok_or_else(|| format!("\"{key}\" is {v:?}, expected an integer"))?;
            i32::try_from(i)
                .ok()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| format!("\"{key}\" is {i}, expected 0..=2^31-1"))
        };
        let float = |key: &str| -> Result<f32, String> {
            let v = get(key)?.ok_or_else(|| format!("\"{key}\" is missing"))?;
            let f = v
                .as_f64()
                .ok_or_else(|| format!("\"{key}\" is {v:?}, expected a number"))?;
            Ok(f as f32)
        };
        let use_regular_nms = match get("use_regular_nms")? {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("\"use_regular_nms\" is {v:?}, expected a boolean"))?,
        };
        let opts = PostProcessOptions {
            max_detections: count("max_detections", None)?,
            max_classes_per_detection: count("max_classes_per_detection", None)?,
            detections_per_class: count("detections_per_class", Some(100))?,
            use_regular_nms,
            num_classes: count("num_classes", None)?,
            nms_score_threshold: float("nms_score_threshold")?,
            nms_iou_threshold: float("nms_iou_threshold")?,
            y_scale: float("y_scale")?,
            x_scale: float("x_scale")?,
            h_scale: float("h_scale")?,
            w_scale: float("w_scale")?,
            outputs,
        };
        // The checks of TFLite's Prepare.
        if opts.num_classes == 0 {
            return Err("\"num_classes\" must be positive".into());
        }
        if u64::from(opts.max_detections) * u64::from(opts.max_classes_per_detection) > i32::MAX as u64 {
            return Err(format!(
                "max_detections * max_classes_per_detection = {} * {} overflows int32",
                opts.max_detections, opts.max_classes_per_detection
            ));
        }
        if 2 * u64::from(opts.max_detections) > i32::MAX as u64 {
            return Err(format!(
                "2 * max_detections ({}) overflows int32",
                opts.max_detections
            ));
        }
        Ok(opts)
    }
}

/// What [`read_model`] reports about a model: header fields and subgraph 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Schema version (3 for current models).
    pub version: u32,
    pub description: Option<String>,
    pub num_subgraphs: usize,
    /// Tensors of subgraph 0.
    pub tensors: Vec<TensorInfo>,
    /// Input tensor indices of subgraph 0 (checked to be in range).
    pub inputs: Vec<usize>,
    /// Output tensor indices of subgraph 0 (checked to be in range).
    pub outputs: Vec<usize>,
    /// Operators of subgraph 0 in execution order.
    pub operators: Vec<OperatorInfo>,
    postprocess: Option<PostProcessOptions>,
}

impl ModelInfo {
    /// How often each op (by [`OperatorInfo::name`]) occurs in subgraph 0.
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in &self.operators {
            *counts.entry(op.name.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Options and outputs of the first `TFLite_Detection_PostProcess` op
    /// of subgraph 0, if there is one (its options were checked by
    /// [`read_model`]).
    pub fn detection_postprocess(&self) -> Option<PostProcessOptions> {
        self.postprocess
    }

    /// The shape each subgraph output has at run time, in output order.
    ///
    /// Outputs of the postprocess op get the shapes TFLite's kernel gives
    /// them (the file usually leaves them empty); every other output has
    /// the shape stored in the file, with negative (dynamic) dimensions
    /// as 0.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        let post = self.postprocess.map(|p| (p.outputs, p.output_shapes()));
        self.outputs
            .iter()
            .map(|&t| {
                if let Some((outs, shapes)) = &post {
                    if let Some(k) = outs.iter().position(|&o| o == t) {
                        return shapes[k].clone();
                    }
                }
                self.tensors
                    .get(t)
                    .map(|t| t.shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Input tensors of subgraph 0, in order.
    pub fn input_tensors(&self) -> impl Iterator<Item = &TensorInfo> + '_ {
        self.inputs.iter().filter_map(|&i| self.tensors.get(i))
    }

    /// Output tensors of subgraph 0, in order.
    pub fn output_tensors(&self) -> impl Iterator<Item = &TensorInfo> + '_ {
        self.outputs.iter().filter_map(|&i| self.tensors.get(i))
    }
}

/// Reads and checks a `.tflite` file held in memory.
///
/// The bytes are verified as a flatbuffer (`TFL3` identifier, every offset
/// in bounds, strings UTF-8), then subgraph 0 is summarised and checked
/// (tensor and opcode indices in range, postprocess options valid).
pub fn read_model(bytes: &[u8]) -> Result<ModelInfo, ModelFileError> {
    ModelFile::parse(bytes)?.info()
}

/// Why [`read_checked`] could not give a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelReadError {
    #[error("cannot read model {}: {cause}", .path.display())]
    Io { path: PathBuf, cause: io::Error },
    /// A FIFO, device, directory or socket: reading it could block or
    /// never end.
    #[error("cannot read model {}: it is {kind}, not a regular file", .path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "cannot read model {}: it is {size} bytes, over the bound of {} MiB for model files",
        .path.display(), MAX_MODEL_FILE_BYTES >> 20
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("invalid model {}: {cause}", .path.display())]
    Invalid { path: PathBuf, cause: ModelFileError },
}

/// A model file read by [`read_checked`]: its bytes and what they hold.
#[derive(Debug, Clone)]
pub struct CheckedModel {
    pub bytes: Vec<u8>,
    pub info: ModelInfo,
}

/// Reads a model file the way every caller should: [`read_file_checked`],
/// then the whole flatbuffer verified and every tensor checked
/// ([`ModelFile::parse`]) and subgraph 0 summarised ([`ModelFile::info`]).
pub fn read_checked(path: &Path) -> Result<CheckedModel, ModelReadError> {
    let bytes = read_file_checked(path)?;
    let info = read_model(&bytes).map_err(|cause| ModelReadError::Invalid {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(CheckedModel { bytes, info })
}

/// Reads a file that claims to be a model without trusting it: it must be
/// a regular file (opened non-blocking, so a FIFO cannot hang us) of at
/// most [`MAX_MODEL_FILE_BYTES`] whose first 8 bytes carry the `TFL3`
/// identifier; only then is it read whole (and never past the bound,
/// should it grow meanwhile). The flatbuffer itself is not verified.
pub fn read_file_checked(path: &Path) -> Result<Vec<u8>, ModelReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let io_err = |cause| ModelReadError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let check_type = |meta: &std::fs::Metadata| match file_kind(meta) {
        Some(kind) => Err(ModelReadError::NotAFile {
            path: path.to_path_buf(),
            kind,
        }),
        None if meta.len() > MAX_MODEL_FILE_BYTES => Err(ModelReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        }),
        None => Ok(()),
    };
    // By path first: opening a socket fails with an unhelpful errno.
    check_type(&std::fs::metadata(path).map_err(io_err)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    // Again on what was opened: the path may have been swapped meanwhile.
    let meta = file.metadata().map_err(io_err)?;
    check_type(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file).take(8).read_to_end(&mut bytes).map_err(io_err)?;
    check_identifier(&bytes).map_err(|cause| ModelReadError::Invalid {
        path: path.to_path_buf(),
        cause,
    })?;
    (&file)
        .take(MAX_MODEL_FILE_BYTES + 1 - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_MODEL_FILE_BYTES {
        return Err(ModelReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// What a non-regular file is, for errors; `None` for a regular file.
pub fn file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("an unusual kind of file")
    }
}

/// A verified model flatbuffer, borrowed from the file's bytes.
#[derive(Clone, Copy)]
pub struct ModelFile<'a> {
    bytes: &'a [u8],
    model: schema::Model<'a>,
}

impl fmt::Debug for ModelFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelFile")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ModelFile<'a> {
    /// Checks the identifier and verifies the flatbuffer. Nothing is copied.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ModelFileError> {
        let len = bytes.len();
        check_identifier(bytes)?;
        let opts = VerifierOptions::default();
        let model =
            flatbuffers::root_with_opts::<schema::Model>(&opts, bytes).map_err(|e| verify_error(&e, len))?;
        let file = ModelFile { bytes, model };
        file.check_sizes()?;
        Ok(file)
    }

    /// Checks every size the file states before anyone reads or allocates
    /// by it: data stored after the flatbuffer lies within the file; every
    /// tensor of every subgraph has non-negative dimensions (`-1`, dynamic,
    /// only in the shape signature), a byte size computed with checked
    /// multiplication and bounded by [`MAX_TENSOR_BYTES`], and, if it is a
    /// constant, a buffer of exactly that many bytes.
    fn check_sizes(&self) -> Result<(), ModelFileError> {
        let corrupt = ModelFileError::Corrupt;
        let buffers = self.model.buffers();
        let num_buffers = buffers.map_or(0, |b| b.len());
        // Data stored after the flatbuffer must be in the file: LiteRT
        // reads it from the offsets without looking.
        for (i, b) in buffers.into_iter().flatten().enumerate() {
            if b.offset() > 1 {
                external(self.bytes, b.offset(), b.size(), &format!("buffer {i}"))?;
            }
        }
        for (s, sg) in self.model.subgraphs().into_iter().flatten().enumerate() {
            for (k, op) in sg.operators().into_iter().flatten().enumerate() {
                if op.custom_options().is_none() && op.large_custom_options_offset() > 1 {
                    external(
                        self.bytes,
                        op.large_custom_options_offset(),
                        op.large_custom_options_size(),
                        &format!("custom options of operator {k} in subgraph {s}"),
                    )?;
                }
            }
        }
        for (s, sg) in self.model.subgraphs().into_iter().flatten().enumerate() {
            for (t, tensor) in sg.tensors().into_iter().flatten().enumerate() {
                let name = tensor.name().unwrap_or_default();
                let what = || format!("tensor {t} ({name}) of subgraph {s}");
                let b = tensor.buffer() as usize;
                let data_len = match buffers {
                    Some(bufs) if b < num_buffers => {
                        let buf = bufs.get(b);
                        if buf.offset() > 1 {
                            buf.size()
                        } else {
                            buf.data().map_or(0, |d| d.len() as u64)
                        }
                    }
                    _ if b == 0 => 0,
                    _ => {
                        return Err(corrupt(format!(
                            "{} refers to buffer {b}, but the model has {num_buffers}",
                            what()
                        )))
                    }
                };
                let constant = b != 0 && data_len > 0;
                let shape: Vec<i32> = tensor.shape().into_iter().flatten().collect();
                let mut elements: Option<u64> = Some(1);
                for (k, &d) in shape.iter().enumerate() {
                    // LiteRT refuses -1 here too ("invalidly specified in
                    // schema"): dynamic dimensions go in shape_signature.
                    let Ok(dim) = u64::try_from(d) else {
                        return Err(corrupt(format!(
                            "dimension {k} of {} is {d} (shape {shape:?})",
                            what()
                        )));
                    };
                    elements = elements.and_then(|e| e.checked_mul(dim));
                }
                if let Some(sig) = tensor.shape_signature() {
                    if let Some((k, d)) = sig.iter().enumerate().find(|(_, d)| *d < -1) {
                        return Err(corrupt(format!(
                            "dimension {k} of the shape signature of {} is {d}",
                            what()
                        )));
                    }
                }
                let dtype = TensorType::from_schema(tensor.type_());
                let bytes = elements.and_then(|e| match dtype {
                    TensorType::Int4 => Some(e.div_ceil(2)),
                    t => e.checked_mul(t.element_size().unwrap_or(1) as u64),
                });
                let bytes = match bytes {
                    Some(n) if n <= MAX_TENSOR_BYTES => n,
                    n => {
                        return Err(corrupt(format!(
                            "{} has shape {shape:?} of {dtype}: {}, over the bound of {} MiB per tensor",
                            what(),
                            n.map_or("more than 2^64 bytes".into(), |n| format!("{n} bytes")),
                            MAX_TENSOR_BYTES >> 20
                        )))
                    }
                };
                let fixed = dtype.element_size().is_some() || dtype == TensorType::Int4;
                if constant && fixed && tensor.sparsity().is_none() && data_len != bytes {
                    return Err(corrupt(format!(
                        "{} has shape {shape:?} of {dtype} ({bytes} bytes), but its buffer {b} holds {data_len} bytes",
                        what()
                    )));
                }
                check_quantization(tensor, &shape).map_err(|e| corrupt(format!("{}: {e}", what())))?;
            }
        }
        Ok(())
    }

    /// The whole input.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The verified root table, for anything [`ModelInfo`] leaves out.
    pub fn model(&self) -> schema::Model<'a> {
        self.model
    }

    /// The data of buffer `index`: inline in the flatbuffer, or for models
    /// that keep it after the flatbuffer (`offset > 1`),
    /// `bytes[offset..offset + size]`, bounds-checked.
    pub fn buffer_data(&self, index: usize) -> Result<&'a [u8], ModelFileError> {
        let buffers = self.model.buffers();
        let count = buffers.map_or(0, |b| b.len());
        let buffer = match buffers {
            Some(b) if index < count => b.get(index),
            _ => {
                return Err(ModelFileError::Corrupt(format!(
                    "buffer {index} does not exist (the model has {count})"
                )))
            }
        };
        if buffer.offset() > 1 {
            external(
                self.bytes,
                buffer.offset(),
                buffer.size(),
                &format!("buffer {index}"),
            )
        } else {
            Ok(buffer.data().map_or(&[][..], |d| d.bytes()))
        }
    }

    /// Summarises subgraph 0; see [`ModelInfo`].
    pub fn info(&self) -> Result<ModelInfo, ModelFileError> {
        let corrupt = ModelFileError::Corrupt;
        let m = self.model;
        let subgraphs = m
            .subgraphs()
            .ok_or_else(|| corrupt("the model has no subgraphs".into()))?;
        if subgraphs.is_empty() {
            return Err(corrupt("the model has no subgraphs".into()));
        }
        let sg = subgraphs.get(0);

        let tensors: Vec<TensorInfo> = sg.tensors().into_iter().flatten().map(tensor_info).collect();
        let n = tensors.len();
        let index = |i: i32, what: &dyn Fn() -> String| -> Result<usize, ModelFileError> {
            usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| {
                corrupt(format!(
                    "{} refers to tensor {i}, but subgraph 0 has {n} tensors",
                    what()
                ))
            })
        };
        let optional = |i: i32, what: &dyn Fn() -> String| -> Result<Option<usize>, ModelFileError> {
            if i == -1 {
                Ok(None)
            } else {
                index(i, what).map(Some)
            }
        };
        let inputs = sg
            .inputs()
            .iter()
            .flatten()
            .enumerate()
            .map(|(k, i)| index(i, &|| format!("subgraph input {k}")))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = sg
            .outputs()
            .iter()
            .flatten()
            .enumerate()
            .map(|(k, i)| index(i, &|| format!("subgraph output {k}")))
            .collect::<Result<Vec<_>, _>>()?;

        let codes = m.operator_codes();
        let num_codes = codes.map_or(0, |c| c.len());
        let mut operators = Vec::new();
        let mut postprocess = None;
        for (k, op) in sg.operators().into_iter().flatten().enumerate() {
            let code_index = op.opcode_index() as usize;
            let code = match codes {
                Some(c) if code_index < num_codes => c.get(code_index),
                _ => {
                    return Err(corrupt(format!(
                        "operator {k} uses opcode {code_index}, but the model has {num_codes}"
                    )))
                }
            };
            let (builtin_code, name) = op_name(code);
            let inputs = op
                .inputs()
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, i)| optional(i, &|| format!("operator {k} ({name}) input {j}")))
                .collect::<Result<Vec<_>, _>>()?;
            let outputs = op
                .outputs()
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, i)| optional(i, &|| format!("operator {k} ({name}) output {j}")))
                .collect::<Result<Vec<_>, _>>()?;
            let info = OperatorInfo {
                name,
                builtin_code,
                custom_code: code.custom_code().map(str::to_owned),
                version: code.version(),
                inputs,
                outputs,
            };
            if postprocess.is_none() && info.is_custom() && info.name == DETECTION_POSTPROCESS {
                postprocess = Some(self.postprocess_options(op, &info)?);
            }
            operators.push(info);
        }

        Ok(ModelInfo {
            version: m.version(),
            description: m.description().map(str::to_owned),
            num_subgraphs: subgraphs.len(),
            tensors,
            inputs,
            outputs,
            operators,
            postprocess,
        })
    }

    fn postprocess_options(
        &self,
        op: schema::Operator<'a>,
        info: &OperatorInfo,
    ) -> Result<PostProcessOptions, ModelFileError> {
        let err = ModelFileError::PostProcess;
        let outputs: [usize; 4] = match info.outputs[..] {
            [Some(a), Some(b), Some(c), Some(d)] => [a, b, c, d],
            _ => {
                return Err(err(format!(
                    "the op must have 4 outputs (boxes, classes, scores, count), it has {:?}",
                    info.outputs
                )))
            }
        };
        if op.custom_options_format() != schema::CustomOptionsFormat::FLEXBUFFERS {
            return Err(err(format!(
                "custom options format {} is not FLEXBUFFERS",
                op.custom_options_format().0
            )));
        }
        let bytes = match op.custom_options() {
            Some(v) => v.bytes(),
            None if op.large_custom_options_offset() > 1 => external(
                self.bytes,
                op.large_custom_options_offset(),
                op.large_custom_options_size(),
                "custom options",
            )?,
            None => return Err(err("the op has no custom options".into())),
        };
        PostProcessOptions::parse(bytes, outputs).map_err(err)
    }
}

/// The `TFL3` identifier at bytes 4..8; enough to tell a model from
/// anything else before reading a whole file.
pub fn check_identifier(bytes: &[u8]) -> Result<(), ModelFileError> {
    let len = bytes.len();
    if len == 0 {
        return Err(ModelFileError::NotTflite("the input is empty".into()));
    }
    if len < 8 {
        return Err(ModelFileError::NotTflite(format!(
            "{len} bytes is too short for a flatbuffer header (8 bytes)"
        )));
    }
    let ident = &bytes[4..8];
    if ident != schema::MODEL_IDENTIFIER.as_bytes() {
        return Err(ModelFileError::NotTflite(format!(
            "file identifier is \"{}\", expected \"{}\"",
            ident.escape_ascii(),
            schema::MODEL_IDENTIFIER
        )));
    }
    Ok(())
}

/// Per-channel quantization must match the shape it indexes into (the
/// converter and LiteRT index channels by it).
fn check_quantization(tensor: schema::Tensor<'_>, shape: &[i32]) -> Result<(), String> {
    let Some(q) = tensor.quantization() else {
        return Ok(());
    };
    let scales = q.scale().map_or(0, |s| s.len());
    let zero_points = q.zero_point().map_or(0, |z| z.len());
    if zero_points > 1 && zero_points != scales {
        return Err(format!("{zero_points} zero points for {scales} scales"));
    }
    if scales > 1 {
        let qd = q.quantized_dimension();
        let channels = usize::try_from(qd).ok().and_then(|d| shape.get(d));
        match channels {
            Some(&c) if c as usize == scales => {}
            Some(&c) => {
                return Err(format!(
                    "{scales} per-channel scales, but dimension {qd} has {c} channels"
                ))
            }
            None => return Err(format!("quantized dimension {qd} is outside the shape {shape:?}")),
        }
    }
    Ok(())
}

/// `bytes[offset..offset + size]` for data stored after the flatbuffer.
fn external<'a>(bytes: &'a [u8], offset: u64, size: u64, what: &str) -> Result<&'a [u8], ModelFileError> {
    let len = bytes.len();
    offset
        .checked_add(size)
        .and_then(|end| Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?))
        .and_then(|range| bytes.get(range))
        .ok_or_else(|| {
            ModelFileError::Truncated(format!(
                "{what} is stored at bytes {offset}..{}, past the end of the {len}-byte file",
                u128::from(offset) + u128::from(size)
            ))
        })
}

/// The resolved builtin code and the op's display name.
fn op_name(code: schema::OperatorCode<'_>) -> (i32, String) {
    let builtin = i32::from(code.deprecated_builtin_code()).max(code.builtin_code().0);
    let name = if builtin == schema::BuiltinOperator::CUSTOM.0 {
        code.custom_code().unwrap_or("CUSTOM").to_owned()
    } else {
        match schema::BuiltinOperator(builtin).variant_name() {
            Some(n) => n.to_owned(),
            None => format!("BUILTIN_{builtin}"),
        }
    };
    (builtin, name)
}

fn tensor_info(t: schema::Tensor<'_>) -> TensorInfo {
    let q = t.quantization();
    TensorInfo {
        name: t.name().unwrap_or_default().to_owned(),
        shape: t.shape().into_iter().flatten().collect(),
        shape_signature: t.shape_signature().map(|s| s.iter().collect()),
        dtype: TensorType::from_schema(t.type_()),
        scale: q.and_then(|q| q.scale()).into_iter().flatten().collect(),
        zero_point: q.and_then(|q| q.zero_point()).into_iter().flatten().collect(),
        quantized_dimension: q.map_or(0, |q| q.quantized_dimension()),
        buffer: t.buffer(),
    }
}

/// Turns a verifier error into a one-line message.
fn verify_error(e: &InvalidFlatbuffer, len: usize) -> ModelFileError {
    match e {
        InvalidFlatbuffer::RangeOutOfBounds { range, .. } if range.end > len => {
            ModelFileError::Truncated(format!(
                "the {len}-byte input ends before flatbuffer data at bytes {}..{}",
                range.start, range.end
            ))
        }
        e => {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("invalid flatbuffer")
                .trim_end_matches('.');
            ModelFileError::Corrupt(format!("flatbuffer verification failed: {first}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{
        BufferT, BuiltinOperator, ModelT, OperatorCodeT, OperatorT, QuantizationParametersT, SubGraphT,
        TensorT,
    };

    fn pack(m: &ModelT) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let root = m.pack(&mut fbb);
        schema::finish_model_buffer(&mut fbb, root);
        fbb.finished_data().to_vec()
    }

    fn tensor(name: &str, shape: &[i32], ty: schema::TensorType) -> TensorT {
        TensorT {
            name: Some(name.into()),
            shape: Some(shape.to_vec()),
            type_: ty,
            ..Default::default()
        }
    }

    fn builtin(code: BuiltinOperator) -> OperatorCodeT {
        OperatorCodeT {
            // What current converters write: the deprecated field saturates.
            deprecated_builtin_code: code.0.min(127) as i8,
            builtin_code: code,
            version: 1,
            ..Default::default()
        }
    }

    fn custom(name: &str) -> OperatorCodeT {
        OperatorCodeT {
            custom_code: Some(name.into()),
            ..builtin(BuiltinOperator::CUSTOM)
        }
    }

    fn op(opcode_index: u32, inputs: &[i32], outputs: &[i32]) -> OperatorT {
        OperatorT {
            opcode_index,
            inputs: Some(inputs.to_vec()),
            outputs: Some(outputs.to_vec()),
            ..Default::default()
        }
    }

    /// One uint8 tensor that is both input and output, no operators.
    fn tiny_model() -> ModelT {
        let mut t = tensor("x", &[1, 2, 2, 3], schema::TensorType::UINT8);
        t.quantization = Some(Box::new(QuantizationParametersT {
            scale: Some(vec![0.5]),
            zero_point: Some(vec![128]),
            ..Default::default()
        }));
        t.buffer = 1;
        ModelT {
            version: 3,
            description: Some("tiny".into()),
            subgraphs: Some(vec![SubGraphT {
                tensors: Some(vec![t]),
                inputs: Some(vec![0]),
                outputs: Some(vec![0]),
                ..Default::default()
            }]),
            buffers: Some(vec![
                BufferT::default(),
                BufferT {
                    data: Some((0..12).collect()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    /// Builds postprocess custom options with the flexbuffers crate.
    fn pp_options(
        max_detections: i32,
        max_classes_per_detection: i32,
        use_regular_nms: Option<bool>,
    ) -> Vec<u8> {
        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", max_detections);
        m.push("max_classes_per_detection", max_classes_per_detection);
        m.push("num_classes", 90);
        if let Some(r) = use_regular_nms {
            m.push("use_regular_nms", r);
        }
        m.push("nms_score_threshold", 1e-8f32);
        m.push("nms_iou_threshold", 0.6f32);
        m.push("y_scale", 10.0f32);
        m.push("x_scale", 10.0f32);
        m.push("h_scale", 5.0f32);
        m.push("w_scale", 5.0f32);
        m.end_map();
        b.view().to_vec()
    }

    /// An SSD tail: a conv head, a reshape, then the postprocess op whose
    /// four outputs have empty shapes, as converters write them.
    fn detection_model(options: Vec<u8>) -> ModelT {
        let f32_ = schema::TensorType::FLOAT32;
        let tensors = vec![
            tensor("image", &[1, 8, 8, 3], schema::TensorType::UINT8),
            tensor("head", &[1, 10, 4], f32_),
            tensor("scores", &[1, 10, 91], f32_),
            TensorT {
                buffer: 1,
                ..tensor("anchors", &[10, 4], f32_)
            },
            tensor("boxes", &[], f32_),
            tensor("classes", &[], f32_),
            tensor("det_scores", &[], f32_),
            tensor("count", &[], f32_),
            tensor("raw_scores", &[1, 10, 91], f32_),
        ];
        let mut post = op(2, &[1, 2, 3], &[4, 5, 6, 7]);
        post.custom_options = Some(options);
        ModelT {
            version: 3,
            operator_codes: Some(vec![
                builtin(BuiltinOperator::CONV_2D),
                builtin(BuiltinOperator::RESHAPE),
                custom(DETECTION_POSTPROCESS),
            ]),
            subgraphs: Some(vec![SubGraphT {
                tensors: Some(tensors),
                inputs: Some(vec![0]),
                outputs: Some(vec![4, 5, 6, 7, 8]),
                operators: Some(vec![
                    op(0, &[0, -1, -1], &[1]),
                    op(0, &[0], &[2]),
                    op(1, &[2], &[8]),
                    post,
                ]),
                ..Default::default()
            }]),
            buffers: Some(vec![
                BufferT::default(),
                BufferT {
                    data: Some(vec![7; 160]),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    /// A deterministic 64-bit LCG (Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 16
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn reads_tiny_model() {
        let bytes = pack(&tiny_model());
        let info = read_model(&bytes).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.description.as_deref(), Some("tiny"));
        assert_eq!(info.num_subgraphs, 1);
        assert_eq!(info.inputs, vec![0]);
        assert_eq!(info.outputs, vec![0]);
        let t = &info.tensors[0];
        assert_eq!(t.name, "x");
        assert_eq!(t.shape, vec![1, 2, 2, 3]);
        assert_eq!(t.dtype, TensorType::Uint8);
        assert_eq!(t.dtype.name(), "UINT8");
        assert_eq!(t.scale, vec![0.5]);
        assert_eq!(t.zero_point, vec![128]);
        assert!(info.operators.is_empty());
        assert!(info.op_counts().is_empty());
        assert_eq!(info.detection_postprocess(), None);
        assert_eq!(info.output_shapes(), vec![vec![1, 2, 2, 3]]);
        let file = ModelFile::parse(&bytes).unwrap();
        assert_eq!(file.buffer_data(0).unwrap(), &[] as &[u8]);
        assert_eq!(file.buffer_data(1).unwrap(), (0..12).collect::<Vec<u8>>());
        assert!(matches!(file.buffer_data(2), Err(ModelFileError::Corrupt(_))));
    }

    #[test]
    fn empty_input_is_an_error() {
        let e = read_model(&[]).unwrap_err();
        assert_eq!(e.to_string(), "not a TFLite model: the input is empty");
    }

    #[test]
    fn garbage_is_an_error() {
        let e = read_model(b"GIF89a, certainly not a model").unwrap_err();
        assert!(matches!(e, ModelFileError::NotTflite(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("not a TFLite model: file identifier is"),
            "{e}"
        );
        assert!(matches!(read_model(b"abc"), Err(ModelFileError::NotTflite(_))));

        // Random bytes behind a valid identifier.
        let mut rng = Lcg(1);
        for len in [8, 9, 16, 100, 1000, 4096] {
            for _ in 0..50 {
                let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                bytes[4..8].copy_from_slice(b"TFL3");
                assert!(read_model(&bytes).is_err(), "{len} random bytes read as a model");
            }
        }
    }

    #[test]
    fn truncated_model_is_an_error() {
        let bytes = pack(&tiny_model());
        for len in 0..bytes.len() {
            let r = read_model(&bytes[..len]);
            assert!(
                r.is_err(),
                "prefix of {len}/{} bytes read as a model",
                bytes.len()
            );
        }
        let e = read_model(&bytes[..bytes.len() - 8]).unwrap_err();
        assert!(e.to_string().starts_with("truncated TFLite model: "), "{e}");
    }

    #[test]
    fn shapes_are_checked_before_anything_is_sized_by_them() {
        let with = |shape: &[i32], ty: schema::TensorType, buffer: u32| {
            let mut m = tiny_model();
            let t = &mut m.subgraphs.as_mut().unwrap()[0].tensors.as_mut().unwrap()[0];
            t.shape = Some(shape.to_vec());
            t.type_ = ty;
            t.buffer = buffer;
            t.quantization = None;
            read_model(&pack(&m))
        };
        let u8_ = schema::TensorType::UINT8;
        assert!(with(&[1, 2, 2, 3], u8_, 1).is_ok());
        assert!(with(&[12], schema::TensorType::INT8, 1).is_ok());
        assert!(with(&[3], schema::TensorType::FLOAT32, 1).is_ok());
        // Dynamic (-1) belongs in the shape signature, as LiteRT insists.
        let e = with(&[1, -1, 2, 3], u8_, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "corrupt TFLite model: dimension 1 of tensor 0 (x) of subgraph 0 is -1 (shape [1, -1, 2, 3])"
        );
        assert!(with(&[1, -1, 2, 3], u8_, 1).is_err());
        assert!(with(&[1, -2, 2, 3], u8_, 0).is_err());
        assert!(with(&[i32::MIN], u8_, 0).is_err());
        // The constant's buffer must hold exactly what the shape says.
        let e = with(&[1, 4, 2, 3], u8_, 1).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("(24 bytes), but its buffer 1 holds 12 bytes"),
            "{e}"
        );
        // Activations are bounded; products cannot overflow.
        let e = with(&[1, 0x1000_0000, 2, 3], u8_, 0).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "[1, 268435456, 2, 3] of UINT8: 1610612736 bytes, over the bound of 256 MiB per tensor"
            ),
            "{e}"
        );
        let e = with(&[i32::MAX, i32::MAX, i32::MAX], schema::TensorType::FLOAT32, 0).unwrap_err();
        assert!(e.to_string().contains("more than 2^64 bytes"), "{e}");
        assert!(with(&[0x400_0000, 0], schema::TensorType::FLOAT32, 0).is_ok());
        // A buffer that does not exist.
        let e = with(&[1], u8_, 9).unwrap_err();
        assert!(
            e.to_string().ends_with("refers to buffer 9, but the model has 2"),
            "{e}"
        );
    }

    #[test]
    fn per_channel_quantization_must_fit_the_shape() {
        let with = |scales: usize, zero_points: usize, dim: i32| {
            let mut m = tiny_model();
            let t = &mut m.subgraphs.as_mut().unwrap()[0].tensors.as_mut().unwrap()[0];
            t.quantization = Some(Box::new(QuantizationParametersT {
                scale: Some(vec![0.5; scales]),
                zero_point: Some(vec![0; zero_points]),
                quantized_dimension: dim,
                ..Default::default()
            }));
            read_model(&pack(&m))
        };
        assert!(with(3, 3, 3).is_ok());
        assert!(with(2, 2, 1).is_ok());
        assert!(with(1, 1, 0).is_ok());
        assert!(with(3, 2, 3).is_err());
        let e = with(3, 3, 1).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("3 per-channel scales, but dimension 1 has 2 channels"),
            "{e}"
        );
        let e = with(3, 3, 7).unwrap_err();
        assert!(e.to_string().contains("quantized dimension 7 is outside"), "{e}");
        assert!(with(3, 3, -1).is_err());
    }

    #[test]
    fn model_files_are_checked_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.tflite");
        let bytes = pack(&tiny_model());
        std::fs::write(&good, &bytes).unwrap();
        let m = read_checked(&good).unwrap();
        assert_eq!(m.bytes, bytes);
        assert_eq!(m.info.tensors.len(), 1);

        // Sparse: the size alone refuses it.
        let big = dir.path().join("big.tflite");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_MODEL_FILE_BYTES + 1).unwrap();
        let e = read_checked(&big).unwrap_err();
        assert!(matches!(e, ModelReadError::TooLarge { size, .. } if size == MAX_MODEL_FILE_BYTES + 1));
        assert!(
            e.to_string()
                .ends_with("it is 536870913 bytes, over the bound of 512 MiB for model files"),
            "{e}"
        );
        // At the bound the header is read first.
        f.set_len(MAX_MODEL_FILE_BYTES).unwrap();
        let e = read_checked(&big).unwrap_err();
        assert!(
            matches!(
                e,
                ModelReadError::Invalid {
                    cause: ModelFileError::NotTflite(_),
                    ..
                }
            ),
            "{e}"
        );

        let e = read_checked(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read model /dev/zero: it is a character device, not a regular file"
        );
        let e = read_checked(dir.path()).unwrap_err();
        assert!(
            e.to_string().ends_with("it is a directory, not a regular file"),
            "{e}"
        );
        let e = read_checked(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, ModelReadError::Io { .. }), "{e}");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_checked(&fifo).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("it is a FIFO (named pipe), not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn op_code_is_max_of_both_fields() {
        let mut m = tiny_model();
        m.operator_codes = Some(vec![
            // Old converters: only the deprecated field, builtin_code = ADD (0).
            OperatorCodeT {
                deprecated_builtin_code: 3,
                builtin_code: BuiltinOperator::ADD,
                version: 1,
                ..Default::default()
            },
            // New converters for codes > 127: placeholder in the old field.
            OperatorCodeT {
                deprecated_builtin_code: 127,
                builtin_code: BuiltinOperator::BROADCAST_TO,
                ..Default::default()
            },
            builtin(BuiltinOperator::ADD),
            custom("MyOp"),
        ]);
        let sg = &mut m.subgraphs.as_mut().unwrap()[0];
        sg.operators = Some(vec![
            op(0, &[0], &[0]),
            op(1, &[0], &[0]),
            op(2, &[0, 0], &[0]),
            op(3, &[0], &[0]),
            op(0, &[0], &[0]),
        ]);
        let info = read_model(&pack(&m)).unwrap();
        let names: Vec<&str> = info.operators.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["CONV_2D", "BROADCAST_TO", "ADD", "MyOp", "CONV_2D"]);
        assert_eq!(info.operators[0].builtin_code, 3);
        assert_eq!(info.operators[1].builtin_code, 130);
        assert!(info.operators[3].is_custom());
        let counts = info.op_counts();
        assert_eq!(counts["CONV_2D"], 2);
        assert_eq!(counts["ADD"], 1);
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn bad_indices_are_errors() {
        let mut m = tiny_model();
        m.subgraphs.as_mut().unwrap()[0].outputs = Some(vec![1]);
        let e = read_model(&pack(&m)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "corrupt TFLite model: subgraph output 0 refers to tensor 1, but subgraph 0 has 1 tensors"
        );

        let mut m = tiny_model();
        m.operator_codes = Some(vec![builtin(BuiltinOperator::ADD)]);
        m.subgraphs.as_mut().unwrap()[0].operators = Some(vec![op(1, &[0], &[0])]);
        assert!(matches!(read_model(&pack(&m)), Err(ModelFileError::Corrupt(_))));

        m.subgraphs.as_mut().unwrap()[0].operators = Some(vec![op(0, &[0, -2], &[0])]);
        assert!(matches!(read_model(&pack(&m)), Err(ModelFileError::Corrupt(_))));

        let mut m = tiny_model();
        m.subgraphs = Some(vec![]);
        assert!(matches!(read_model(&pack(&m)), Err(ModelFileError::Corrupt(_))));
    }

    #[test]
    fn postprocess_output_shapes_fast_nms() {
        let info = read_model(&pack(&detection_model(pp_options(10, 1, Some(false))))).unwrap();
        let p = info.detection_postprocess().expect("postprocess op");
        assert_eq!(p.max_detections, 10);
        assert_eq!(p.max_classes_per_detection, 1);
        assert_eq!(p.detections_per_class, 100, "default");
        assert!(!p.use_regular_nms);
        assert_eq!(p.num_classes, 90);
        assert_eq!(p.nms_iou_threshold, 0.6);
        assert_eq!(p.nms_score_threshold, 1e-8);
        assert_eq!(
            (p.y_scale, p.x_scale, p.h_scale, p.w_scale),
            (10.0, 10.0, 5.0, 5.0)
        );
        assert_eq!(p.outputs, [4, 5, 6, 7]);
        // The file leaves the postprocess outputs empty.
        assert!(info.tensors[4].shape.is_empty());
        assert_eq!(
            info.output_shapes(),
            vec![vec![1, 10, 4], vec![1, 10], vec![1, 10], vec![1], vec![1, 10, 91]]
        );
        let counts = info.op_counts();
        assert_eq!(counts[DETECTION_POSTPROCESS], 1);
        assert_eq!(counts["CONV_2D"], 2);
        assert_eq!(info.operators[0].inputs, vec![Some(0), None, None]);

        // Several classes per box: n = max_detections * max_classes_per_detection.
        let info = read_model(&pack(&detection_model(pp_options(10, 3, None)))).unwrap();
        assert!(!info.detection_postprocess().unwrap().use_regular_nms, "default");
        assert_eq!(
            info.output_shapes()[..4],
            [vec![1, 30, 4], vec![1, 30], vec![1, 30], vec![1]]
        );
        assert_eq!(info.detection_postprocess().unwrap().rows_per_detection(), 3);
    }

    #[test]
    fn postprocess_output_shapes_regular_nms() {
        // TFLite's Prepare sizes the outputs the same way for regular NMS;
        // only the first max_detections rows are written.
        let info = read_model(&pack(&detection_model(pp_options(20, 2, Some(true))))).unwrap();
        let p = info.detection_postprocess().unwrap();
        assert!(p.use_regular_nms);
        assert_eq!(p.rows_per_detection(), 1);
        assert_eq!(p.num_detected_boxes(), 40);
        assert_eq!(
            info.output_shapes()[..4],
            [vec![1, 40, 4], vec![1, 40], vec![1, 40], vec![1]]
        );
    }

    #[test]
    fn postprocess_shape_in_file_is_overridden() {
        let mut m = detection_model(pp_options(5, 1, Some(false)));
        m.subgraphs.as_mut().unwrap()[0].tensors.as_mut().unwrap()[4].shape = Some(vec![1, 1, 1]);
        let info = read_model(&pack(&m)).unwrap();
        assert_eq!(info.output_shapes()[0], vec![1, 5, 4]);
    }

    #[test]
    fn postprocess_option_values_are_converted_like_tflite() {
        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", flexbuffers::IndirectInt(25));
        m.push("max_classes_per_detection", 1u8);
        m.push("detections_per_class", 7.0f64);
        m.push("num_classes", 80u64);
        m.push("use_regular_nms", 1);
        m.push("nms_score_threshold", flexbuffers::IndirectFloat(0.25));
        m.push("nms_iou_threshold", 0.5f64);
        m.push("y_scale", 10);
        m.push("x_scale", 10u16);
        m.push("h_scale", 5);
        m.push("w_scale", 5);
        m.push("something_else", "ignored");
        m.end_map();
        let p = PostProcessOptions::parse(b.view(), [0, 1, 2, 3]).unwrap();
        assert_eq!(p.max_detections, 25);
        assert_eq!(p.detections_per_class, 7);
        assert_eq!(p.num_classes, 80);
        assert!(p.use_regular_nms);
        assert_eq!(p.nms_score_threshold, 0.25);
        assert_eq!(p.y_scale, 10.0);
        assert_eq!(p.x_scale, 10.0);
    }

    #[test]
    fn bad_postprocess_options_are_errors() {
        let read = |options: Vec<u8>| read_model(&pack(&detection_model(options)));
        let e = read(pp_options(-1, 1, None)).unwrap_err();
        assert!(matches!(e, ModelFileError::PostProcess(_)), "{e}");
        assert!(e.to_string().contains("max_detections"), "{e}");
        assert!(read(pp_options(1 << 16, 1 << 16, None)).is_err());
        assert!(read(flexbuffers::singleton(3)).is_err());
        assert!(read(vec![]).is_err());
        assert!(read(vec![1, 2]).is_err());

        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", 10);
        m.end_map();
        let e = read(b.view().to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid TFLite_Detection_PostProcess options: \"max_classes_per_detection\" is missing"
        );

        let mut m = detection_model(pp_options(10, 1, None));
        m.subgraphs.as_mut().unwrap()[0].operators.as_mut().unwrap()[3].outputs = Some(vec![4, 5]);
        assert!(matches!(
            read_model(&pack(&m)),
            Err(ModelFileError::PostProcess(_))
        ));
    }

    /// Packs `m` with buffer 1's data stored after the flatbuffer, the way
    /// converters write models over 2 GB. Returns the file and the data.
    fn with_external_buffer(mut m: ModelT, offset_delta: i64) -> (Vec<u8>, Vec<u8>) {
        // As long as the data it replaces: the tensor's shape says so.
        let len = m.buffers.as_ref().unwrap()[1].data.as_ref().unwrap().len();
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let set = |m: &mut ModelT, offset: u64| {
            m.buffers.as_mut().unwrap()[1] = BufferT {
                data: None,
                offset,
                size: data.len() as u64,
            };
        };
        // Non-default values pack to the same size whatever they are.
        set(&mut m, u64::MAX);
        let offset = pack(&m).len().next_multiple_of(16);
        set(&mut m, (offset as i64 + offset_delta) as u64);
        let mut bytes = pack(&m);
        assert!(bytes.len() <= offset);
        bytes.resize(offset, 0);
        bytes.extend_from_slice(&data);
        (bytes, data)
    }

    #[test]
    fn buffer_data_after_the_flatbuffer() {
        let (bytes, data) = with_external_buffer(tiny_model(), 0);
        let file = ModelFile::parse(&bytes).unwrap();
        assert_eq!(file.buffer_data(1).unwrap(), &data[..]);
        assert!(file.info().is_ok());

        // Data past the end is found when parsing, before anyone reads it.
        let (bytes, _) = with_external_buffer(tiny_model(), 1);
        let e = ModelFile::parse(&bytes).unwrap_err();
        assert!(matches!(e, ModelFileError::Truncated(_)), "{e}");
        assert!(e.to_string().contains("buffer 1 is stored at bytes"), "{e}");
        assert!(e.to_string().contains("past the end"), "{e}");

        // The whole file is needed: cutting it off is an error, not garbage.
        let (bytes, _) = with_external_buffer(tiny_model(), 0);
        let cut = &bytes[..bytes.len() - 1];
        assert!(ModelFile::parse(cut).is_err());
    }

    #[test]
    fn large_custom_options_after_the_flatbuffer() {
        let options = pp_options(7, 1, None);
        let mut m = detection_model(vec![]);
        let set = |m: &mut ModelT, offset: u64| {
            let p = &mut m.subgraphs.as_mut().unwrap()[0].operators.as_mut().unwrap()[3];
            p.custom_options = None;
            p.large_custom_options_offset = offset;
            p.large_custom_options_size = options.len() as u64;
        };
        set(&mut m, u64::MAX);
        let offset = pack(&m).len();
        set(&mut m, offset as u64);
        let mut bytes = pack(&m);
        bytes.extend_from_slice(&options);
        let info = read_model(&bytes).unwrap();
        assert_eq!(info.detection_postprocess().unwrap().max_detections, 7);
        assert!(read_model(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Runs everything a caller might do with `bytes`; panics propagate.
    fn exercise(bytes: &[u8]) {
        if let Ok(file) = ModelFile::parse(bytes) {
            if let Ok(info) = file.info() {
                let _ = info.op_counts();
                let _ = info.output_shapes();
                let _ = info.detection_postprocess();
                let _ = info.input_tensors().count() + info.output_tensors().count();
            }
            let n = file.model().buffers().map_or(0, |b| b.len());
            for i in 0..n.min(64) + 1 {
                let _ = file.buffer_data(i);
            }
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("needle in haystack")
    }

    #[test]
    fn mutated_models_never_panic() {
        let options = pp_options(10, 1, Some(false));
        let (bytes, _) = with_external_buffer(detection_model(options.clone()), 0);
        let fb_len = find(&bytes, &options) + options.len();
        assert!(read_model(&bytes).is_ok());
        let opts_at = find(&bytes, &options);
        let mut rng = Lcg(0x5eed);
        let mut read_ok = 0;
        for case in 0..2000 {
            let mut m = bytes.clone();
            let kind = case % 5;
            match kind {
                // Flip one bit anywhere in the flatbuffer.
                0 => m[rng.below(fb_len)] ^= 1 << rng.below(8),
                // Overwrite up to 4 bytes with random values.
                1 => {
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(m.len());
                        m[at] = rng.next() as u8;
                    }
                }
                // Truncate.
                2 => m.truncate(rng.below(m.len())),
                // Corrupt the flexbuffer custom options.
                3 => {
                    for _ in 0..=rng.below(3) {
                        m[opts_at + rng.below(options.len())] = rng.next() as u8;
                    }
                }
                // Small integers or extreme values at a 4-byte-aligned spot
                // (offsets, lengths, vtable entries).
                _ => {
                    let at = rng.below(fb_len / 4) * 4;
                    let v: u32 = [0, 1, 4, 0x7fff_ffff, 0xffff_ffff][rng.below(5)];
                    m[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            let r = std::panic::catch_unwind(|| {
                exercise(&m);
                read_model(&m).is_ok()
            });
            match r {
                Ok(ok) => read_ok += usize::from(ok),
                Err(_) => panic!("case {case} (mutation kind {kind}) panicked"),
            }
        }
        // Some mutations hit padding or unused fields; most must not read.
        assert!(read_ok < 2000, "{read_ok} of 2000 mutated models read fine");
    }

    #[test]
    fn mutated_options_never_panic() {
        let options = pp_options(10, 1, Some(true));
        let mut rng = Lcg(42);
        for case in 0..2000 {
            let mut m = options.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len());
                m[at] = if rng.below(2) == 0 {
                    rng.next() as u8
                } else {
                    m[at] ^ 0x80
                };
            }
            if case % 7 == 0 {
                m.truncate(rng.below(m.len()));
            }
            let r = std::panic::catch_unwind(|| PostProcessOptions::parse(&m, [0, 1, 2, 3]).is_ok());
            assert!(r.is_ok(), "options case {case} panicked");
        }
    }
}

//! Inference: loading the LiteRT runtime, model I/O, pre- and post-processing.

pub mod decode;
pub mod detection;
pub mod detector;
pub mod error;
pub mod field_error;
pub mod filter;
pub mod labels;
pub mod preprocess;
mod quiet;
pub mod runtime;
pub mod session;
pub mod ssd;

pub use decode::{DecodeSettings, DecoderKind};
pub use detection::{detection_json, BBox, Detection, ModelKind, RawDetection};
pub use detector::{Detector, DetectorSettings, Timings};
pub use error::InferError;
pub use field_error::FieldError;
pub use filter::FilterSettings;
pub use labels::Labels;
pub use preprocess::Normalization;
pub use quiet::log_writer;
pub use runtime::{Runtime, RuntimeSearch};
pub use session::{DType, Model, Session, SessionOptions, TensorSpec};

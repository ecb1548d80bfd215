//! Inference: loading the LiteRT runtime, model I/O, pre- and post-processing.

pub mod detection;
pub mod ssd;

pub use detection::{BBox, Detection, RawDetection};

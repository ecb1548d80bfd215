//! Errors of the inference engine. Each names the file or call at fault and,
//! where there is one, what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("LiteRT runtime library not found; tried:\n  {}\nRun scripts/setup, or pass --runtime PATH / set EDGEVISION_LITERT to libLiteRt.so", .tried.join("\n  "))]
    RuntimeNotFound { tried: Vec<String> },

    #[error("cannot use {} as the LiteRT runtime: {reason}", .path.display())]
    RuntimeInvalid { path: PathBuf, reason: String },

    #[error("LiteRT call {call} failed: {message}")]
    Runtime { call: &'static str, message: String },

    /// The file is unreadable, not a regular file, too big or not a valid model.
    #[error(transparent)]
    ModelFile(#[from] crate::tflite::ModelReadError),

    #[error("invalid model {}: {reason}", .path.display())]
    ModelInvalid { path: PathBuf, reason: String },

    #[error("model {} is not supported: {reason}", .path.display())]
    ModelUnsupported { path: PathBuf, reason: String },

    #[error("cannot read labels {}: {cause}", .path.display())]
    LabelsRead { path: PathBuf, cause: std::io::Error },

    #[error(
        "labels {} do not fit the model: {reason} (give the model's own label file: \
         --labels FILE, or model.labels in the config, where \"\" shows class numbers)",
        .path.display()
    )]
    LabelsMismatch { path: PathBuf, reason: String },

    #[error("invalid labels {} line {line}: {reason}", .path.display())]
    LabelsInvalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("invalid inference settings: {0}")]
    Settings(String),
}

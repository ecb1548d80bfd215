//! What a worker needs of an interpreter and of the pool that lends them:
//! two small traits, so the worker runs on stand-ins in tests (no LiteRT)
//! and, being generic over them, with no dynamic dispatch in production.

use std::sync::atomic::AtomicBool;

use super::pool::{CameraId, InferencePool, Lease};
use crate::infer::{Detection, Detector, FilterSettings, InferError, ModelKind, Timings};

/// One inference on a frame.
pub(crate) trait Infer {
    /// Runs on packed RGB8 `rgb` (`width` x `height`) and writes the
    /// detections passing `filter` into `out`, in pixels of the frame;
    /// see [`Detector::detect_with`].
    fn detect_with(
        &mut self,
        filter: &FilterSettings,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<Timings, InferError>;
}

impl Infer for Detector {
    fn detect_with(
        &mut self,
        filter: &FilterSettings,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<Timings, InferError> {
        Detector::detect_with(self, filter, rgb, width, height, out)
    }
}

/// Interpreters lent to cameras' workers one inference at a time.
pub(crate) trait Interpreters {
    type Interpreter: Infer;

    /// Boxes or classes: what the worker draws and reports.
    fn kind(&self) -> ModelKind;

    /// Waits for an interpreter for `camera`; `None` once `stop` is set.
    fn lease(&self, camera: CameraId, stop: &AtomicBool) -> Option<Lease<'_, Self::Interpreter>>;
}

impl Interpreters for InferencePool {
    type Interpreter = Detector;

    fn kind(&self) -> ModelKind {
        InferencePool::kind(self)
    }

    fn lease(&self, camera: CameraId, stop: &AtomicBool) -> Option<Lease<'_, Detector>> {
        InferencePool::lease(self, camera, stop)
    }
}

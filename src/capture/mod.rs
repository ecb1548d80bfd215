//! Frame sources: V4L2 cameras and files, behind one trait.
//!
//! A source fills a caller-owned [`Frame`] so its RGB buffer is reused from
//! frame to frame. Errors say whether to skip the frame, reconnect, or stop.

use std::time::{Duration, Instant};

/// One captured frame, packed RGB8.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// width * height * 3 bytes; capacity is kept between frames.
    pub rgb: Vec<u8>,
    /// When the source handed the frame over (after decode/convert).
    pub captured_at: Instant,
    /// Time spent decoding or converting into RGB.
    pub decode_time: Duration,
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            width: 0,
            height: 0,
            rgb: Vec::new(),
            captured_at: Instant::now(),
            decode_time: Duration::ZERO,
        }
    }
}

impl Frame {
    /// Resizes the buffer for a `width` x `height` frame without shrinking
    /// its capacity.
    pub fn reshape(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.rgb.resize(width as usize * height as usize * 3, 0);
    }
}

/// Why a read failed, and so what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The device or file is gone or cannot be opened: close, back off, reopen.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// One bad frame (corrupt JPEG, buffer flagged as error): skip it.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// No frame arrived within the stall timeout: treat as unavailable.
    #[error("no frame for {0:?}")]
    Stalled(Duration),
    /// A file source without `loop` reached its end.
    #[error("end of stream")]
    EndOfStream,
    /// Misconfiguration that retrying cannot fix (bad URI, unsupported format).
    #[error("{0}")]
    Fatal(String),
}

/// A frame source. `open` may be called again after `close` to reconnect.
pub trait Source: Send {
    /// Human-readable name for logs and the status page.
    fn describe(&self) -> String;
    /// Opens (or reopens) the device or file.
    fn open(&mut self) -> Result<(), CaptureError>;
    /// Blocks until the next frame is ready and writes it into `frame`.
    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError>;
    /// Releases the device; `open` may follow.
    fn close(&mut self);
}

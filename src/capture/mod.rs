//! Frame sources: V4L2 cameras, files and HTTP MJPEG streams, behind one trait.
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
    /// With [`SourceOptions::pass_jpeg`]: the source's own JPEG bytes for
    /// this frame (empty for sources that do not deliver JPEG), whose size
    /// is `jpeg_width` x `jpeg_height`; `rgb` is then a DCT-scaled decode.
    pub jpeg: Vec<u8>,
    pub jpeg_width: u32,
    pub jpeg_height: u32,
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            width: 0,
            height: 0,
            rgb: Vec::new(),
            captured_at: Instant::now(),
            decode_time: Duration::ZERO,
            jpeg: Vec::new(),
            jpeg_width: 0,
            jpeg_height: 0,
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

// ---------------------------------------------------------------------------
// Concrete sources, the options they share, and the constructor.

pub mod convert;
pub mod exec;
pub mod grab;
pub mod http;
pub mod images;
pub mod jpeg;
pub mod mjpeg;
pub mod resilient;
pub mod rtsp;
pub mod test_pattern;
pub mod uri;
mod util;
pub mod v4l2;

pub use resilient::{Event, Resilient};
pub use uri::{SourceUri, UriError};
pub(crate) use util::with_rgb_image;
pub use util::{cancelled, set_cancel};
pub use v4l2::{list_devices, DeviceInfo};

/// Which pixel format to ask a V4L2 device for. Anything the device does not
/// offer falls back to MJPEG, YUYV, RGB24, BGR24, NV12, GREY in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormatPref {
    /// The first of the fallback order the device offers.
    #[default]
    Auto,
    #[serde(alias = "mjpg")]
    Mjpeg,
    #[serde(alias = "yuy2")]
    Yuyv,
    #[serde(alias = "rgb3")]
    Rgb24,
    #[serde(alias = "bgr3")]
    Bgr24,
    Nv12,
    #[serde(alias = "gray")]
    Grey,
    /// YUV 4:2:0 planar (`exec:` and `rpicam:` sources; V4L2 cameras fall
    /// back to the order above).
    #[serde(alias = "yuv420", alias = "yu12")]
    I420,
}

impl std::str::FromStr for PixelFormatPref {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Self::Auto,
            "mjpeg" | "mjpg" => Self::Mjpeg,
            "yuyv" | "yuy2" => Self::Yuyv,
            "rgb24" | "rgb3" => Self::Rgb24,
            "bgr24" | "bgr3" => Self::Bgr24,
            "nv12" => Self::Nv12,
            "grey" | "gray" => Self::Grey,
            "i420" | "yuv420" | "yu12" => Self::I420,
            other => {
                return Err(format!(
                    "unknown pixel format {other:?}: expected auto, mjpeg, yuyv, rgb24, bgr24, nv12, grey or i420"
                ))
            }
        })
    }
}

impl std::fmt::Display for PixelFormatPref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Mjpeg => "mjpeg",
            Self::Yuyv => "yuyv",
            Self::Rgb24 => "rgb24",
            Self::Bgr24 => "bgr24",
            Self::Nv12 => "nv12",
            Self::Grey => "grey",
            Self::I420 => "i420",
        })
    }
}

/// Settings shared by every source kind; each uses the ones that apply.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOptions {
    /// Output width; 0 = the source's own (first image's, JPEG's, camera's
    /// current) width; the test pattern uses 640.
    pub width: u32,
    /// Output height; 0 as for `width` (test pattern: 480).
    pub height: u32,
    /// File and test sources: frames per second they are paced at (0 = as
    /// fast as possible). V4L2: the frame rate asked of the camera (0 = its
    /// fastest interval).
    pub fps: f32,
    /// File sources: start over at the end instead of ending the stream.
    pub looping: bool,
    /// V4L2: the pixel format to ask for. `exec:`: what the command writes
    /// (auto = MJPEG; raw formats need `width` and `height`).
    pub format: PixelFormatPref,
    /// Image directories: slow pan/zoom over each photo so the stream moves.
    pub pan: bool,
    /// Image directories: how long each photo is shown (with `pan`, or when
    /// `fps` > 0). 0 = one frame per file.
    pub seconds_per_image: f32,
    /// V4L2 and `http://`: no frame (no byte, for HTTP) for this long means the camera has stalled
    /// ([`CaptureError::Stalled`]); zero disables the timeout.
    pub stall_timeout: Duration,
    /// [`Resilient`]: the longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// JPEG sources (V4L2 MJPEG, `mjpeg:`): keep each frame's JPEG bytes in
    /// [`Frame::jpeg`] and decode only at the smallest DCT scale that covers
    /// this size (the model input); `width` and `height` are then ignored.
    pub pass_jpeg: Option<(u32, u32)>,
    /// `rtsp://`: how RTP travels (TCP by default).
    pub rtsp_transport: rtsp::RtspTransport,
    /// `rtsp://`: extra ffmpeg input/decoder arguments, put before `-i`.
    pub ffmpeg_args: Vec<String>,
    /// `https://`: PEM certificates trusted besides the webpki roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 15.0,
            looping: true,
            format: PixelFormatPref::Auto,
            pan: false,
            seconds_per_image: 4.0,
            stall_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(8),
            pass_jpeg: None,
            rtsp_transport: rtsp::RtspTransport::Tcp,
            ffmpeg_args: Vec::new(),
            ca_file: None,
        }
    }
}

/// Builds the source for `uri`. Nothing is opened yet: [`Source::open`] (or
/// [`Resilient`]) does that, so a missing device is a retryable error
/// rather than a construction failure.
pub fn open_source(uri: &SourceUri, opts: &SourceOptions) -> Box<dyn Source> {
    match uri {
        SourceUri::V4l2(path) => Box::new(v4l2::V4l2Source::new(path.clone(), opts.clone())),
        SourceUri::Images(dir) => Box::new(images::ImageDirSource::new(dir.clone(), opts.clone())),
        SourceUri::Mjpeg(file) => Box::new(mjpeg::MjpegFileSource::new(file.clone(), opts.clone())),
        SourceUri::Exec(cmd) => Box::new(exec::ExecSource::new(
            exec::Program::Shell(cmd.clone()),
            opts.clone(),
        )),
        SourceUri::Rpicam(n) => Box::new(exec::ExecSource::new(exec::Program::Rpicam(*n), opts.clone())),
        SourceUri::Rtsp(url) => Box::new(exec::ExecSource::new(
            exec::Program::Rtsp(url.clone()),
            opts.clone(),
        )),
        SourceUri::Http(url) => Box::new(http::HttpMjpegSource::new(url.clone(), opts.clone())),
        SourceUri::Test => Box::new(test_pattern::TestPatternSource::new(opts.clone())),
    }
}

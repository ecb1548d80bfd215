//! `[source]`: where frames come from.

use serde::Deserialize;

use crate::capture::{exec, PixelFormatPref, SourceOptions, SourceUri, UriError};

/// `[source]`: the camera or file that frames come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Where frames come from ([`SourceUri`]): `v4l2:/dev/video0`, a bare
    /// `/dev/videoN` or `/dev/v4l/by-id/...` path, `images:DIR` (a directory
    /// of JPEG/PNG photos), `mjpeg:FILE` (concatenated JPEGs),
    /// `http://[user:pass@]HOST[:PORT]/PATH` (an MJPEG stream; may hold
    /// secrets, so log it only through [`crate::capture::http::redact`]) or
    /// `exec:COMMAND` (a command's stdout: MJPEG, or raw frames in
    /// `format`), `rpicam:N` (Raspberry Pi camera N via rpicam-vid) or
    /// `test:` (a generated test pattern). Default `test:`.
    pub uri: String,
    /// Frame width in pixels: requested from cameras; file sources scale
    /// their frames to it. `0` (with `height = 0`) = native size. Default 640.
    pub width: u32,
    /// Frame height in pixels; see `width`. Default 480.
    pub height: u32,
    /// Frames per second. `0` = as fast as possible (files) or the fastest
    /// interval the camera offers. Default 15.
    pub fps: f32,
    /// File sources start over at the end (key `loop`). Default true.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// V4L2 pixel format preference; `auto` picks the best the camera
    /// offers. `exec:` sources: what the command writes (`auto` = MJPEG;
    /// i420, nv12, yuyv, rgb24, bgr24 or grey = raw frames of `width` x
    /// `height`). Default `auto`.
    pub format: PixelFormatPref,
    /// Seconds without a frame before the source counts as lost and is
    /// reopened. Default 5.
    pub stall_timeout: f32,
    /// Seconds: cap of the exponential backoff between attempts to reopen a
    /// lost source. Default 10.
    pub reconnect_max_backoff: f32,
    /// `images:` sources: show each photo as a slow pan, so a still photo
    /// makes moving frames (demos). Default false.
    pub pan: bool,
    /// `images:` sources: seconds each photo is shown. Default 3.
    pub seconds_per_image: f32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            uri: "test:".into(),
            width: 640,
            height: 480,
            fps: 15.0,
            looping: true,
            format: PixelFormatPref::Auto,
            stall_timeout: 5.0,
            reconnect_max_backoff: 10.0,
            pan: false,
            seconds_per_image: 3.0,
        }
    }
}

impl SourceConfig {
    /// `uri`, parsed.
    pub fn parsed_uri(&self) -> Result<SourceUri, UriError> {
        self.uri.parse()
    }

    /// The program an `exec:` or `rpicam:` source runs.
    fn program(&self) -> Option<exec::Program> {
        match self.parsed_uri().ok()? {
            SourceUri::Exec(c) => Some(exec::Program::Shell(c)),
            SourceUri::Rpicam(n) => Some(exec::Program::Rpicam(n)),
            _ => None,
        }
    }

    fn options(&self) -> SourceOptions {
        SourceOptions {
            width: self.width,
            height: self.height,
            fps: self.fps,
            format: self.format,
            ..SourceOptions::default()
        }
    }

    /// `exec:`/`rpicam:`: whether the frame size and format can work
    /// (`None` for other sources).
    pub fn check_layout(&self) -> Option<Result<(), String>> {
        self.program().map(|p| exec::layout_check(&p, &self.options()))
    }

    /// `exec:`/`rpicam:`: [`Self::check_layout`], and that the program is
    /// found on `PATH` (`None` for other sources).
    pub fn check_program(&self) -> Option<Result<(), String>> {
        self.program().map(|p| exec::check(&p, &self.options()))
    }
}

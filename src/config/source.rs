//! `[source]`: where frames come from.

use std::path::PathBuf;

use serde::Deserialize;

use crate::capture::http::HttpUrl;
use crate::capture::rtsp::{with_userinfo, RtspTransport};
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
    /// `rtsp[s]://[user:pass@]HOST[:PORT]/PATH` (an RTSP camera, decoded
    /// by ffmpeg; may hold secrets like `http://`),
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
    /// `rtsp://`: `tcp` (RTP inside the RTSP connection) or `udp`.
    /// Default `tcp`.
    pub rtsp_transport: RtspTransport,
    /// `rtsp://`: extra ffmpeg input/decoder arguments, put before `-i`,
    /// e.g. `["-c:v", "h264_v4l2m2m"]` for the Pi 4's hardware decoder.
    /// Default none.
    pub ffmpeg_args: Vec<String>,
    /// `http://`/`rtsp://`: the user name to log in with; the password comes
    /// from `password_file` or `password_env`, so the URI holds no secret.
    /// Default none.
    pub username: String,
    /// The password's file, e.g. systemd's `LoadCredential=` one under
    /// `/run/credentials/edgevision.service/` (a final newline is dropped).
    pub password_file: Option<PathBuf>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// `https://`: a PEM file of certificates to trust besides the usual
    /// (webpki) roots, e.g. a camera's self-signed one. Default none.
    pub ca_file: Option<PathBuf>,
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
            rtsp_transport: RtspTransport::Tcp,
            ffmpeg_args: Vec::new(),
            username: String::new(),
            password_file: None,
            password_env: None,
            ca_file: None,
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
            SourceUri::Rtsp(u) => Some(exec::Program::Rtsp(u)),
            _ => None,
        }
    }

    fn options(&self) -> SourceOptions {
        SourceOptions {
            width: self.width,
            height: self.height,
            fps: self.fps,
            format: self.format,
            rtsp_transport: self.rtsp_transport,
            ffmpeg_args: self.ffmpeg_args.clone(),
            ca_file: self.ca_file.clone(),
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

/// A credentials problem: (dotted key, message).
type KeyError = (String, String);

impl SourceConfig {
    /// Value checks of the credential keys (nothing is read): errors as
    /// (dotted key, message).
    pub fn check_credential_keys(&self) -> Result<(), KeyError> {
        let err = |key: &str, m: &str| Err((format!("source.{key}"), m.to_string()));
        let set = [
            ("username", !self.username.is_empty()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
        ];
        let Some(&(first, _)) = set.iter().find(|(_, on)| *on) else {
            return Ok(());
        };
        let has_userinfo = match self.parsed_uri() {
            Ok(SourceUri::Http(u)) => u.credentials.is_some(),
            Ok(SourceUri::Rtsp(u)) => u.has_credentials(),
            Ok(_) => return err(first, "is only for http:// and rtsp:// sources"),
            Err(_) => return Ok(()), // source.uri's own error comes first
        };
        if self.password_file.is_some() && self.password_env.is_some() {
            return err("password_env", "set password_file or password_env, not both");
        }
        if self.username.is_empty() {
            return err(first, "needs source.username too");
        }
        if self.username.contains(':') {
            return err("username", "may not contain ':'");
        }
        if has_userinfo {
            return err(
                "username",
                "source.uri already has user:pass@; set the credentials in one place",
            );
        }
        if matches!(&self.password_env, Some(v) if v.is_empty() || v.contains('=')) {
            return err("password_env", "must name an environment variable");
        }
        Ok(())
    }

    /// The password from `password_file` or `password_env` (`""` when
    /// neither is set), or why it cannot be had.
    pub fn password(&self) -> Result<String, KeyError> {
        if let Some(p) = &self.password_file {
            let text = std::fs::read_to_string(p).map_err(|e| {
                (
                    "source.password_file".to_string(),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let pw = text.strip_suffix('\n').unwrap_or(&text);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            if pw.is_empty() {
                return Err(("source.password_file".into(), format!("{} is empty", p.display())));
            }
            return Ok(pw.to_string());
        }
        if let Some(var) = &self.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(("source.password_env".into(), format!("${var} is empty"))),
                Err(_) => Err((
                    "source.password_env".into(),
                    format!("the environment variable {var} is not set"),
                )),
            };
        }
        Ok(String::new())
    }

    /// `uri` parsed, with `username` and the password put into it.
    pub fn source_uri(&self) -> Result<SourceUri, KeyError> {
        let uri = self
            .parsed_uri()
            .map_err(|e| ("source.uri".to_string(), e.to_string()))?;
        self.check_credential_keys()?;
        if self.username.is_empty() {
            return Ok(uri);
        }
        let pw = self.password()?;
        let bad = |e: String| ("source.uri".to_string(), e);
        Ok(match uri {
            SourceUri::Http(u) => {
                SourceUri::Http(HttpUrl::parse(&with_userinfo(u.full(), &self.username, &pw)).map_err(bad)?)
            }
            SourceUri::Rtsp(u) => SourceUri::Rtsp(u.with_credentials(&self.username, &pw)),
            other => other,
        })
    }
}

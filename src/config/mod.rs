//! The daemon's TOML config file.
//!
//! Every key has a default, so an empty file is a runnable config (the test
//! pattern through the COCO SSD, served on 127.0.0.1:8080). Tables:
//! top-level `runtime`, then `[source]`, `[model]` (with `[model.ssd]` and
//! `[model.ssd.anchors]`), `[detect]` (with `[detect.label_thresholds]`),
//! `[stream]`, `[http]` and `[http.auth]`. `config/edgevision.toml`
//! documents every key.
//!
//! Errors name the file, the line and the dotted key:
//!
//! ```text
//! config/demo.toml:12: unknown key `treshold` in [detect] (expected one of: threshold, ...)
//! config/x.toml:3: source.fps: invalid type: string "fast", expected f32
//! config/x.toml:7: detect.threshold: must be between 0 and 1, not 1.5
//! ```
//!
//! A value check on a key the file does not set (it holds its default, e.g.
//! `http.auth.token` when `mode = "bearer"`) has no line.
//!
//! **Relative paths** (`runtime`, `model.path`, `model.labels`, and the
//! directory or file of `images:` and `mjpeg:` sources) are relative to the
//! working directory. Only when nothing exists there is the path taken
//! relative to the directory of the config file instead (if something exists
//! there); otherwise it stays as written, so errors show it as written. See
//! [`Config::resolve_paths`].

mod cameras;
mod detect;
mod error;
mod http;
pub mod installed;
mod locate;
mod model;
mod mqtt;
mod source;
mod stream;
#[cfg(test)]
mod tests;
mod tracking;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::capture::{PixelFormatPref, SourceUri, UriError};
pub use detect::DetectConfig;
pub use error::ConfigError;
pub use http::{AuthConfig, AuthMode, HttpConfig, UserConfig};
pub use model::ModelConfig;
pub use mqtt::MqttConfig;
pub use source::SourceConfig;
pub use stream::{Annotate, StreamConfig};
pub use tracking::{EventsConfig, LineConfig, TrackingConfig, WebhookConfig, ZoneConfig};

use crate::infer::ssd::SsdDecoder;
use crate::infer::{DecodeSettings, DetectorSettings, Normalization, SessionOptions};
use locate::{line_of, KeyMap};

/// The whole config file. `Default` is the documented defaults.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The LiteRT library (`libLiteRt.so`). Unset (or `""`): the built-in
    /// search (see the README).
    #[serde(deserialize_with = "model::empty_path_is_none")]
    pub runtime: Option<PathBuf>,
    /// The camera's name, in MQTT topics and events; `""` (default) is
    /// `default`.
    pub name: String,
    /// `[source]`: where frames come from.
    pub source: SourceConfig,
    /// `[model]`: the model and how it runs.
    pub model: ModelConfig,
    /// `[detect]`: which detections are kept; how often the model runs.
    pub detect: DetectConfig,
    /// `[stream]`: the annotated MJPEG stream.
    pub stream: StreamConfig,
    /// `[http]`: the server and its authentication.
    pub http: HttpConfig,
    /// `[tracking]`: how detections become objects.
    pub tracking: TrackingConfig,
    /// `[[zone]]`: named areas objects enter and leave.
    pub zone: Vec<ZoneConfig>,
    /// `[[line]]`: counting lines.
    pub line: Vec<LineConfig>,
    /// `[events]`: recent events and object pictures.
    pub events: EventsConfig,
    /// `[[webhook]]`: where object events are POSTed.
    pub webhook: Vec<WebhookConfig>,
    /// `[mqtt]`: the broker and Home Assistant discovery.
    pub mqtt: MqttConfig,
    /// `[[camera]]`: several cameras, as written (see [`Config::cameras`]).
    pub camera: Vec<toml::Table>,
    /// Each `[[camera]]` merged over the top level and validated.
    #[serde(skip)]
    pub cameras: Vec<Config>,
}

/// Largest frame side accepted.
const MAX_SIDE: u32 = 16384;
/// Frame rates: below one frame in 1000 s is a stopped source, above 1000
/// no camera.
const MIN_FPS: f32 = 0.001;
const MAX_FPS: f32 = 1000.0;
/// Timeouts and intervals in seconds: an hour at most.
const MAX_SECONDS: f32 = 3600.0;
const MAX_EVERY_NTH: u32 = 10_000;
const MAX_CLIENTS: usize = 10_000;
/// Most interpreters accepted in `model.workers`.
const MAX_WORKERS: usize = 64;
/// Most CPU threads accepted in `model.threads`.
const MAX_THREADS: usize = 256;

impl Config {
    /// Reads, parses and validates `path`, then resolves relative paths
    /// against the file's directory ([`Config::resolve_paths`]). Does not
    /// check that the model and other files exist; see
    /// [`Config::load_checked`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (cfg, text) = Self::load_text(path)?;
        // A missing password file or variable is a config error, with its line.
        if cfg.cameras.is_empty() {
            cfg.source
                .source_uri()
                .map_err(|(key, message)| invalid_at(path, &text, key, message))?;
        }
        for (i, cam) in cfg.cameras.iter().enumerate() {
            cam.source.source_uri().map_err(|(key, message)| {
                cameras::invalid_at(path, &text, i, cam.camera_name(), key, message)
            })?;
        }
        Ok(cfg)
    }

    /// [`Config::load`], then checks that the files the config names exist
    /// ([`Config::check_files`]); errors name the key and its line.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let (cfg, text) = Self::load_text(path)?;
        cfg.check_files()
            .map_err(|(key, message)| invalid_at(path, &text, key, message))?;
        for (i, cam) in cfg.cameras.iter().enumerate() {
            cam.check_files().map_err(|(key, message)| {
                cameras::invalid_at(path, &text, i, cam.camera_name(), key, message)
            })?;
        }
        Ok(cfg)
    }

    fn load_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok((cfg, text))
    }

    /// Parses and validates config text; `path` is only used in errors.
    /// Paths are left as written.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let keys = match KeyMap::new(text) {
            Some(keys) => keys,
            // Not TOML: let the deserializer say why and where.
            None => {
                let e = toml::from_str::<Config>(text).err();
                let (line, message) = match &e {
                    Some(e) => (e.span().map(|s| line_of(text, s.start)), one_line(e.message())),
                    None => (None, "not valid TOML".to_string()),
                };
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    message,
                });
            }
        };
        let mut cfg: Config = toml::from_str(text).map_err(|e| deserialize_error(&e, text, &keys, path))?;
        cfg.validate().map_err(|(key, message)| {
            let line = keys.span_of(&key).map(|s| line_of(text, s.start));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message,
            }
        })?;
        cfg.cameras = cameras::expand(&cfg, text, &keys, path)?;
        Ok(cfg)
    }

    /// Value checks beyond types: the first problem as (dotted key, message),
    /// e.g. `("detect.threshold", "must be between 0 and 1, not 1.5")`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));

        if self.runtime.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return err("runtime", "must not be empty".into());
        }

        // [source]: with [[camera]] tables the top level only holds what
        // cameras inherit, checked in each camera's merged config (shared
        // credentials need the camera's rtsp:// to make sense).
        if self.camera.is_empty() {
            self.validate_source()?;
        }

        // [model]
        let m = &self.model;
        if m.path.as_os_str().is_empty() {
            return err("model.path", "must name the .tflite model".into());
        }
        if m.workers > MAX_WORKERS {
            return err(
                "model.workers",
                format!("must be between 0 (choose) and {MAX_WORKERS}, not {}", m.workers),
            );
        }
        if m.threads > MAX_THREADS {
            return err(
                "model.threads",
                format!("must be between 0 (choose) and {MAX_THREADS}, not {}", m.threads),
            );
        }
        if m.top_k == 0 {
            return err("model.top_k", "must be 1 or more, not 0".into());
        }
        if let Some(mean) = m.mean {
            if !mean.is_finite() {
                return err("model.mean", format!("must be a finite number, not {mean}"));
            }
        }
        if let Some(std) = m.std {
            finite_at_least("model.std", std, 0.0, true)?;
        }
        if let Err(e) = SsdDecoder::new(m.ssd.clone()) {
            return Err((sub_key("model.ssd", &e.key()), e.message));
        }

        // [detect]
        let d = &self.detect;
        if let Err(e) = d.filter().validate() {
            return Err((sub_key("detect", &e.key()), e.message));
        }
        if !(1..=MAX_EVERY_NTH).contains(&d.every_nth) {
            return err(
                "detect.every_nth",
                format!("must be between 1 and {MAX_EVERY_NTH}, not {}", d.every_nth),
            );
        }
        finite_at_least("detect.max_inference_fps", d.max_inference_fps, 0.0, false)?;
        at_most("detect.max_inference_fps", d.max_inference_fps, MAX_FPS)?;

        // [stream]
        let st = &self.stream;
        if !(1..=100).contains(&st.quality) {
            return err(
                "stream.quality",
                format!("must be between 1 and 100, not {}", st.quality),
            );
        }
        if !(1..=MAX_CLIENTS).contains(&st.max_clients) {
            return err(
                "stream.max_clients",
                format!("must be between 1 and {MAX_CLIENTS}, not {}", st.max_clients),
            );
        }
        finite_at_least("stream.client_timeout", st.client_timeout, 0.0, true)?;
        at_most("stream.client_timeout", st.client_timeout, MAX_SECONDS)?;

        // [http]
        self.http.validate()?;

        tracking::validate(
            &self.tracking,
            &self.zone,
            &self.line,
            &self.events,
            &self.webhook,
        )?;
        if !self.name.is_empty() && !cameras::valid_name(&self.name) {
            return err(
                "name",
                format!("{:?}: 1 to 64 letters, digits, '_' or '-'", self.name),
            );
        }
        self.mqtt.validate()
    }

    /// The cameras to run: each `[[camera]]`, or this config as the only
    /// one.
    pub fn camera_configs(&self) -> Vec<Config> {
        if self.cameras.is_empty() {
            vec![self.clone()]
        } else {
            self.cameras.clone()
        }
    }

    /// The `[source]` checks of [`Config::validate`].
    fn validate_source(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));
        let s = &self.source;
        if let Err(e) = s.parsed_uri() {
            return err("source.uri", e.to_string());
        }
        if let Some(Err(e)) = s.check_layout() {
            return err("source.uri", e);
        }
        s.check_credential_keys()?;
        for (key, v) in [("source.width", s.width), ("source.height", s.height)] {
            if v > MAX_SIDE {
                return err(key, format!("must be at most {MAX_SIDE}, not {v}"));
            }
        }
        if (s.width == 0) != (s.height == 0) {
            let (zero, other, v) = if s.width == 0 {
                ("source.width", "source.height", s.height)
            } else {
                ("source.height", "source.width", s.width)
            };
            return err(
                zero,
                format!("is 0 (native size) but {other} is {v}; set both or neither to 0"),
            );
        }
        if !(s.fps == 0.0 || (MIN_FPS..=MAX_FPS).contains(&s.fps)) {
            return err(
                "source.fps",
                format!(
                    "must be 0 (the source's own rate) or between {MIN_FPS} and {MAX_FPS}, not {}",
                    s.fps
                ),
            );
        }
        finite_at_least("source.stall_timeout", s.stall_timeout, 0.0, true)?;
        at_most("source.stall_timeout", s.stall_timeout, MAX_SECONDS)?;
        finite_at_least("source.reconnect_max_backoff", s.reconnect_max_backoff, 0.0, true)?;
        at_most(
            "source.reconnect_max_backoff",
            s.reconnect_max_backoff,
            MAX_SECONDS,
        )?;
        finite_at_least("source.seconds_per_image", s.seconds_per_image, 0.0, true)?;
        at_most("source.seconds_per_image", s.seconds_per_image, MAX_SECONDS)?;
        Ok(())
    }

    /// The camera's name (`name`, or `default`).
    pub fn camera_name(&self) -> &str {
        if self.name.is_empty() {
            "default"
        } else {
            &self.name
        }
    }

    /// The MQTT client's settings (`None` without `mqtt.url`); reads
    /// `mqtt.password_file`.
    pub fn mqtt_settings(&self) -> Result<Option<crate::mqtt::MqttSettings>, (String, String)> {
        mqtt::settings(self)
    }

    /// The tracker, zones and lines ([`crate::track`]).
    pub fn tracking_settings(&self) -> crate::track::TrackingSettings {
        tracking::tracking_settings(&self.tracking, &self.zone, &self.line, &self.events)
    }

    /// Where object pictures go, if anywhere.
    pub fn snapshot_settings(&self) -> Option<crate::track::snapshots::SnapshotSettings> {
        tracking::snapshot_settings(&self.events)
    }

    pub fn webhook_settings(&self) -> Vec<crate::track::webhook::WebhookSettings> {
        tracking::webhook_settings(&self.webhook)
    }

    /// Checks that the files the config names exist: `model.path`,
    /// `model.labels`, `runtime`, `stream.font` (and that it is a font), and the directory or file of `images:` and
    /// `mjpeg:` sources (cameras are not checked: they may be plugged in
    /// later). Errors as (dotted key, message).
    pub fn check_files(&self) -> Result<(), (String, String)> {
        let missing = |key: &str, p: &Path, what: &str| -> Result<(), (String, String)> {
            let hint = if p.is_relative() {
                " (relative paths are looked up in the working directory, then next to the config file)"
            } else {
                ""
            };
            Err((
                key.to_string(),
                format!("{what} not found: {}{hint}", p.display()),
            ))
        };
        // A path that exists but is the wrong kind (a device, a FIFO that
        // would block, a directory) says what it is rather than "not found".
        let check = |key: &str, p: &Path, what: &str, dir: bool| -> Result<(), (String, String)> {
            let Ok(meta) = std::fs::metadata(p) else {
                return missing(key, p, what);
            };
            let kind = match crate::tflite::model_file::file_kind(&meta) {
                Some("a directory") if dir => return Ok(()),
                None if !dir => return Ok(()),
                Some(kind) => kind,
                None => "a regular file",
            };
            let want = if dir { "a directory" } else { "a regular file" };
            Err((
                key.to_string(),
                format!("{what} {} is {kind}, not {want}", p.display()),
            ))
        };
        check("model.path", &self.model.path, "model file", false)?;
        if let Some(labels) = &self.model.labels {
            check("model.labels", labels, "label file", false)?;
        }
        if let Some(rt) = &self.runtime {
            check("runtime", rt, "LiteRT library", false)?;
        }
        if let Some(font) = &self.stream.font {
            check("stream.font", font, "font file", false)?;
            crate::annotate::Typeface::load(font).map_err(|e| ("stream.font".to_string(), e.to_string()))?;
        }
        if !self.camera.is_empty() {
            // Each camera's source is checked in its own config.
            return Ok(());
        }
        if let Some(Err(e)) = self.source.check_program() {
            return Err(("source.uri".into(), e));
        }
        self.source.source_uri()?;
        if let Some(ca) = &self.source.ca_file {
            crate::capture::http::tls_config(Some(ca)).map_err(|e| ("source.ca_file".to_string(), e))?;
        }
        match self.source.parsed_uri() {
            Ok(SourceUri::Images(dir)) => check("source.uri", &dir, "image directory", true)?,
            Ok(SourceUri::Mjpeg(file)) => check("source.uri", &file, "MJPEG file", false)?,
            _ => {}
        }
        Ok(())
    }

    /// Makes relative paths (`runtime`, `model.path`, `model.labels`,
    /// `stream.font`, the
    /// path of `images:` and `mjpeg:` sources) relative to `base`, the
    /// directory of the config file, when they do not exist relative to the
    /// working directory but do exist under `base`. Absolute paths, paths
    /// that exist from the working directory, and paths found in neither
    /// place are left alone.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.as_os_str().is_empty() || p.is_absolute() || p.exists() {
                return;
            }
            let alt = base.join(&*p);
            if alt.exists() {
                *p = alt;
            }
        };
        for cam in &mut self.cameras {
            cam.resolve_paths(base);
        }
        resolve(&mut self.model.path);
        if let Some(labels) = &mut self.model.labels {
            resolve(labels);
        }
        if let Some(rt) = &mut self.runtime {
            resolve(rt);
        }
        if let Some(font) = &mut self.stream.font {
            resolve(font);
        }
        let uri = match self.source.parsed_uri() {
            Ok(SourceUri::Images(mut p)) => {
                resolve(&mut p);
                SourceUri::Images(p)
            }
            Ok(SourceUri::Mjpeg(mut p)) => {
                resolve(&mut p);
                SourceUri::Mjpeg(p)
            }
            _ => return,
        };
        self.source.uri = uri.to_string();
    }

    /// What the detector needs; `model.threads = 0` becomes all cores.
    pub fn detector_settings(&self) -> DetectorSettings {
        let m = &self.model;
        // Left at the default (COCO) labels with another model: a label
        // file beside that model is the better guess.
        let d = ModelConfig::default();
        let labels = if m.labels == d.labels && m.path != d.path {
            crate::infer::labels::beside_model(&m.path).or_else(|| m.labels.clone())
        } else {
            m.labels.clone()
        };
        DetectorSettings {
            model: m.path.clone(),
            labels,
            session: SessionOptions {
                threads: if m.threads == 0 {
                    crate::infer::session::default_threads()
                } else {
                    m.threads
                },
                xnnpack: m.xnnpack,
            },
            normalization: Normalization {
                mean: m.mean,
                std: m.std,
            },
            decode: DecodeSettings {
                kind: m.decoder,
                ssd: m.ssd.clone(),
                top_k: m.top_k,
                classifier_activation: m.classifier_activation,
            },
            filter: self.detect.filter(),
        }
    }

    /// One line for logs and `check-config`: source (each camera's), model,
    /// listen address.
    pub fn summary(&self) -> String {
        if self.cameras.is_empty() {
            return self.camera_summary();
        }
        let cams: Vec<String> = self
            .cameras
            .iter()
            .map(|c| format!("{} ({})", c.camera_name(), c.source_summary()))
            .collect();
        format!(
            "{} cameras: {}; {}",
            cams.len(),
            cams.join(", "),
            self.shared_summary()
        )
    }

    fn camera_summary(&self) -> String {
        format!("source {}, {}", self.source_summary(), self.shared_summary())
    }

    /// `URI SIZE@FPSfps`, credentials redacted.
    fn source_summary(&self) -> String {
        let s = &self.source;
        let size = if s.width == 0 {
            "native".to_string()
        } else {
            format!("{}x{}", s.width, s.height)
        };
        let fps = if s.fps == 0.0 {
            "max".to_string()
        } else {
            format!("{}", s.fps)
        };
        format!("{} {size}@{fps}fps", crate::capture::http::redact(&s.uri))
    }

    /// The model, labels, listen address and auth.
    fn shared_summary(&self) -> String {
        format!(
            "model {}, labels {}, listen {}, auth {}",
            self.model.path.display(),
            self.detector_settings()
                .labels
                .map_or("none (class numbers)".to_string(), |l| l.display().to_string()),
            self.http.listen,
            self.http.auth.mode.name()
        )
    }
}

/// `v` is a finite number above `min` (`strict`) or at least `min`.
fn finite_at_least(key: &str, v: f32, min: f32, strict: bool) -> Result<(), (String, String)> {
    let ok = v.is_finite() && if strict { v > min } else { v >= min };
    if ok {
        Ok(())
    } else if strict {
        Err((key.to_string(), format!("must be more than {min}, not {v}")))
    } else {
        Err((key.to_string(), format!("must be {min} or more, not {v}")))
    }
}

fn at_most(key: &str, v: f32, max: f32) -> Result<(), (String, String)> {
    if v <= max {
        Ok(())
    } else {
        Err((key.to_string(), format!("must be at most {max}, not {v}")))
    }
}

/// A located [`ConfigError::Invalid`] for `key` of the config `text`.
fn invalid_at(path: &Path, text: &str, key: String, message: String) -> ConfigError {
    let line = KeyMap::new(text)
        .and_then(|k| k.span_of(&key))
        .map(|s| line_of(text, s.start));
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        key,
        message,
    }
}

/// Multi-line parser messages on one line.
fn one_line(msg: &str) -> String {
    msg.trim().lines().map(str::trim).collect::<Vec<_>>().join("; ")
}

/// The names between backticks: "`a`, `b` or `c`" -> [a, b, c].
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Turns a deserializer error into an unknown-key or wrong-type error with
/// the key found at the error's span.
fn deserialize_error(e: &toml::de::Error, text: &str, keys: &KeyMap, path: &Path) -> ConfigError {
    let path = path.to_path_buf();
    let span = e.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    let at = span.as_ref().and_then(|s| keys.key_at(s.start));
    let message = one_line(e.message());

    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once('`') {
            let table = match at {
                Some((_, table)) => table.to_string(),
                None => String::new(),
            };
            return ConfigError::UnknownKey {
                path,
                line,
                table,
                name: name.to_string(),
                expected: backticked(expected),
            };
        }
    }
    let Some((key, _)) = at else {
        return ConfigError::Syntax { path, line, message };
    };
    // "unknown variant `x`, expected one of `a`, `b`" -> a friendlier form.
    let message = match message
        .strip_prefix("unknown variant `")
        .and_then(|r| r.split_once('`'))
    {
        Some((value, expected)) => {
            format!(
                "unknown value `{value}` (expected one of: {})",
                backticked(expected).join(", ")
            )
        }
        None => message,
    };
    ConfigError::WrongType {
        path,
        line,
        key: key.to_string(),
        message,
    }
}

/// `table.key`, or `table` itself when `key` is empty.
fn sub_key(table: &str, key: &str) -> String {
    if key.is_empty() {
        table.to_string()
    } else {
        format!("{table}.{key}")
    }
}

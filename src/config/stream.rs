//! `[stream]`: the annotated MJPEG stream.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Who draws the detection boxes (`stream.annotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Annotate {
    /// `true`: burned into the frames, which are decoded and re-encoded
    /// (what VLC, ffmpeg and `<img>` embeds need).
    #[default]
    Burn,
    /// `false`: not drawn.
    Off,
    /// `"client"`: JPEG sources' frames are forwarded untouched and the
    /// page draws the boxes from `/api/events`; inference decodes only at
    /// the scale the model needs.
    Client,
}

impl Annotate {
    pub fn as_str(self) -> &'static str {
        match self {
            Annotate::Burn => "burn",
            Annotate::Off => "off",
            Annotate::Client => "client",
        }
    }
}

impl<'de> Deserialize<'de> for Annotate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Annotate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"true, false or "client""#)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Annotate, E> {
                Ok(if v { Annotate::Burn } else { Annotate::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Annotate, E> {
                match v {
                    "client" => Ok(Annotate::Client),
                    "burn" => Ok(Annotate::Burn),
                    "off" => Ok(Annotate::Off),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[stream]`: JPEG encoding, drawing, and stream clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// JPEG quality, 1..=100. Default 80.
    pub quality: u8,
    /// Draw the FPS / latency overlay on frames. Default true.
    pub overlay: bool,
    /// Concurrent `/stream.mjpg` clients (at least 1); more get 503.
    /// Default 20.
    pub max_clients: usize,
    /// Seconds a stalled client may block its own send before it is cut
    /// off. Default 10.
    pub client_timeout: f32,
    /// Boxes and labels: `true` draws them into the frames, `false` does
    /// not, `"client"` forwards JPEG sources' frames untouched and lets the
    /// page draw them. Default true.
    pub annotate: Annotate,
    /// The TrueType/OpenType font for burned-in labels and overlays. Default
    /// none: Debian's DejaVu Sans Bold (`fonts-dejavu-core`), and without
    /// it, boxes without labels and a warning. A named font that cannot be
    /// loaded is an error. Read at start only.
    pub font: Option<PathBuf>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            quality: 80,
            overlay: true,
            max_clients: 20,
            client_timeout: 10.0,
            annotate: Annotate::Burn,
            font: None,
        }
    }
}

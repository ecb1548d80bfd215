//! `[stream]`: the annotated MJPEG stream.

use serde::Deserialize;

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
    /// Draw detection boxes and labels. Default true.
    pub annotate: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            quality: 80,
            overlay: true,
            max_clients: 20,
            client_timeout: 10.0,
            annotate: true,
        }
    }
}

//! `/stream.mjpg`: `multipart/x-mixed-replace`, one JPEG part per new frame.
//!
//! Layout (what mjpg-streamer sends, which Chromium, Firefox and VLC play):
//! the body opens with `--BOUNDARY\r\n`, then per frame
//! `Content-Type: image/jpeg\r\nContent-Length: N\r\nX-Frame: SEQ\r\n\r\n<N bytes>\r\n--BOUNDARY\r\n`.
//! Sending the next boundary right after the bytes lets browsers show the
//! frame at once instead of waiting for the next one. The JPEG `Bytes` are
//! shared, never copied per client.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use prometheus::IntGauge;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::{stopped, AppState};
use crate::hub::EncodedFrame;

macro_rules! boundary {
    () => {
        "edgevision-mjpeg-frame-boundary"
    };
}

/// The multipart boundary (without the leading `--`).
pub const BOUNDARY: &str = boundary!();
const CONTENT_TYPE: &str = concat!("multipart/x-mixed-replace; boundary=", boundary!());
const OPENING: &[u8] = concat!("--", boundary!(), "\r\n").as_bytes();
const PART_END: &[u8] = concat!("\r\n--", boundary!(), "\r\n").as_bytes();

pub(crate) async fn stream(
    State(state): State<AppState>,
    super::camera::Cam(hub): super::camera::Cam,
) -> Response {
    let Ok(permit) = state.stream_slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5"), (header::CACHE_CONTROL, "no-store")],
            "too many stream clients\n",
        )
            .into_response();
    };
    let pump = Pump {
        frames: hub.subscribe_frames(),
        stop: state.stop.subscribe(),
        first: true,
        _client: ClientGuard::new(hub.metrics.stream_clients.clone(), permit),
    };
    let mut response = Response::new(Body::from_stream(parts(pump)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Counts a stream client for as long as its body lives; the body is dropped
/// whichever way the client goes (closed, reset, timed out, shutdown).
struct ClientGuard {
    gauge: IntGauge,
    _slot: OwnedSemaphorePermit,
}

impl ClientGuard {
    fn new(gauge: IntGauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        ClientGuard { gauge, _slot: slot }
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

struct Pump {
    frames: watch::Receiver<Option<Arc<EncodedFrame>>>,
    stop: watch::Receiver<bool>,
    first: bool,
    _client: ClientGuard,
}

impl Pump {
    /// The newest frame on the first call (if any), then each new one; frames
    /// published while the client was busy are skipped. `None` on shutdown.
    async fn next_frame(&mut self) -> Option<Arc<EncodedFrame>> {
        if *self.stop.borrow() {
            return None;
        }
        if std::mem::take(&mut self.first) {
            if let Some(frame) = self.frames.borrow_and_update().clone() {
                return Some(frame);
            }
        }
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return None,
                changed = self.frames.changed() => {
                    changed.ok()?;
                    if let Some(frame) = self.frames.borrow_and_update().clone() {
                        return Some(frame);
                    }
                }
            }
        }
    }
}

fn parts(pump: Pump) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let frames = stream::unfold(pump, |mut pump| async move {
        let frame = pump.next_frame().await?;
        Some((frame, pump))
    });
    stream::once(async { Bytes::from_static(OPENING) })
        .chain(frames.flat_map(|frame| stream::iter(part(&frame))))
        .map(Ok)
}

fn part(frame: &EncodedFrame) -> [Bytes; 3] {
    // X-Frame is the report's `frame` number: a page drawing the boxes
    // itself pairs each picture with its detections by it.
    let head = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame: {}\r\n\r\n",
        frame.jpeg.len(),
        frame.seq
    );
    [
        Bytes::from(head),
        frame.jpeg.clone(),
        Bytes::from_static(PART_END),
    ]
}

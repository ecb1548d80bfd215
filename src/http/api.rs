//! Snapshot, JSON, Server-Sent Events, metrics and the health probes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use super::{stopped, AppState};
use crate::hub::FrameReport;

/// A comment line (`: keepalive`) this often keeps idle proxies from
/// closing the event stream.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn snapshot(State(state): State<AppState>) -> Response {
    match state.hub.latest_frame() {
        Some(frame) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-cache, no-store"),
            ],
            frame.jpeg.clone(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "no frame yet\n",
        )
            .into_response(),
    }
}

pub(crate) async fn detections(State(state): State<AppState>) -> Response {
    match state.hub.latest_report() {
        // Serialized here: `Json` would need serde's `rc` feature for the Arc.
        Some(report) => match serde_json::to_vec(&*report) {
            Ok(json) => (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                json,
            )
                .into_response(),
            Err(e) => {
                tracing::warn!("http: report {} not serializable: {e}", report.frame);
                (StatusCode::INTERNAL_SERVER_ERROR, "report not serializable\n").into_response()
            }
        },
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({ "error": "no frame processed yet" })),
        )
            .into_response(),
    }
}

pub(crate) async fn events(State(state): State<AppState>) -> Response {
    let Ok(slot) = state.event_slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5"), (header::CACHE_CONTROL, "no-store")],
            "too many event stream clients\n",
        )
            .into_response();
    };
    let reports = EventPump {
        reports: state.hub.subscribe_reports(),
        stop: state.stop.subscribe(),
        first: true,
        _slot: slot,
    };
    let sse = Sse::new(event_stream(reports))
        .keep_alive(KeepAlive::new().interval(SSE_KEEPALIVE).text("keepalive"));
    ([("x-accel-buffering", "no")], sse).into_response()
}

struct EventPump {
    reports: watch::Receiver<Option<Arc<FrameReport>>>,
    stop: watch::Receiver<bool>,
    first: bool,
    /// Freed when the client leaves (the stream is dropped).
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl EventPump {
    async fn next_report(&mut self) -> Option<Arc<FrameReport>> {
        if *self.stop.borrow() {
            return None;
        }
        if std::mem::take(&mut self.first) {
            if let Some(report) = self.reports.borrow_and_update().clone() {
                return Some(report);
            }
        }
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return None,
                changed = self.reports.changed() => {
                    changed.ok()?;
                    if let Some(report) = self.reports.borrow_and_update().clone() {
                        return Some(report);
                    }
                }
            }
        }
    }
}

/// One event per report the client gets to see; a slow client skips some.
fn event_stream(pump: EventPump) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(pump, |mut pump| async move {
        loop {
            let report = pump.next_report().await?;
            match serde_json::to_string(&*report) {
                Ok(json) => {
                    let event = Event::default().id(report.frame.to_string()).data(json);
                    return Some((Ok(event), pump));
                }
                Err(e) => tracing::warn!("http: report {} not serializable: {e}", report.frame),
            }
        }
    })
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.hub.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.hub.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

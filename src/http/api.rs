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

use super::camera::Cam;
use super::{stopped, AppState};
use crate::hub::FrameReport;

/// A comment line (`: keepalive`) this often keeps idle proxies from
/// closing the event stream.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn snapshot(Cam(hub): Cam) -> Response {
    match hub.latest_frame() {
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

pub(crate) async fn detections(Cam(hub): Cam) -> Response {
    match hub.latest_report() {
        // Serialized by hand: `Json` would need serde's `rc` feature for the Arc.
        Some(report) => json_response(&*report),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({ "error": "no frame processed yet" })),
        )
            .into_response(),
    }
}

pub(crate) async fn events(State(state): State<AppState>, Cam(hub): Cam) -> Response {
    let Ok(slot) = state.event_slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5"), (header::CACHE_CONTROL, "no-store")],
            "too many event stream clients\n",
        )
            .into_response();
    };
    let reports = EventPump {
        objects: hub.events.subscribe(),
        reports: hub.subscribe_reports(),
        stop: state.stop.subscribe(),
        first: true,
        _slot: slot,
    };
    let sse = Sse::new(event_stream(reports))
        .keep_alive(KeepAlive::new().interval(SSE_KEEPALIVE).text("keepalive"));
    ([("x-accel-buffering", "no")], sse).into_response()
}

struct EventPump {
    /// Object events (`event: object`); a client that falls behind skips some.
    objects: tokio::sync::broadcast::Receiver<Arc<crate::track::ObjectEvent>>,
    reports: watch::Receiver<Option<Arc<FrameReport>>>,
    stop: watch::Receiver<bool>,
    first: bool,
    /// Freed when the client leaves (the stream is dropped).
    _slot: tokio::sync::OwnedSemaphorePermit,
}

enum Next {
    Report(Arc<FrameReport>),
    Object(Arc<crate::track::ObjectEvent>),
}

impl EventPump {
    async fn next(&mut self) -> Option<Next> {
        use tokio::sync::broadcast::error::RecvError;
        if *self.stop.borrow() {
            return None;
        }
        if std::mem::take(&mut self.first) {
            if let Some(report) = self.reports.borrow_and_update().clone() {
                return Some(Next::Report(report));
            }
        }
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return None,
                ev = self.objects.recv() => match ev {
                    Ok(ev) => return Some(Next::Object(ev)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                changed = self.reports.changed() => {
                    changed.ok()?;
                    if let Some(report) = self.reports.borrow_and_update().clone() {
                        return Some(Next::Report(report));
                    }
                }
            }
        }
    }
}

/// One unnamed event per report the client gets to see (a slow client
/// skips some), and an `object` event per object event.
fn event_stream(pump: EventPump) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(pump, |mut pump| async move {
        loop {
            match pump.next().await? {
                Next::Report(report) => match serde_json::to_string(&*report) {
                    Ok(json) => {
                        let event = Event::default().id(report.frame.to_string()).data(json);
                        return Some((Ok(event), pump));
                    }
                    Err(e) => tracing::warn!("http: report {} not serializable: {e}", report.frame),
                },
                Next::Object(ev) => match serde_json::to_string(&*ev) {
                    Ok(json) => return Some((Ok(Event::default().event("object").data(json)), pump)),
                    Err(e) => tracing::warn!("http: object event not serializable: {e}"),
                },
            }
        }
    })
}

pub(crate) fn json_response(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!("http: not serializable: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "not serializable\n").into_response()
        }
    }
}

/// `GET /api/objects`: the objects tracked now.
pub(crate) async fn objects(Cam(hub): Cam) -> Response {
    let objects = hub.events.objects();
    let geometry = hub.events.geometry();
    json_response(&serde_json::json!({
        "objects": &*objects,
        "zones": geometry["zones"],
        "lines": geometry["lines"],
    }))
}

#[derive(serde::Deserialize)]
pub(crate) struct RecentQuery {
    limit: Option<usize>,
}

/// Most events `/api/events/recent` returns at once.
const RECENT_LIMIT: usize = 1000;

/// `GET /api/events/recent?limit=N`: recently ended objects, newest first.
pub(crate) async fn recent_events(
    Cam(hub): Cam,
    axum::extract::Query(q): axum::extract::Query<RecentQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, RECENT_LIMIT);
    let events = hub.events.recent(limit);
    let events: Vec<&crate::track::ObjectEvent> = events.iter().map(|e| &**e).collect();
    json_response(&serde_json::json!({ "events": events }))
}

/// `GET /api/events/{id}/snapshot.jpg`: an object's best picture. Ids are
/// unique across cameras: the unprefixed path finds any camera's.
pub(crate) async fn object_snapshot(
    State(state): State<AppState>,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no picture of that object\n").into_response();
    let Some(Ok(id)) = params.get("id").map(|id| id.parse::<u64>()) else {
        return not_found();
    };
    let hubs = match params.get("camera") {
        Some(name) => state.cameras.get(name).into_iter().collect(),
        None => state.cameras.all(),
    };
    let path = hubs.iter().find_map(|hub| {
        hub.events
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(&id)
            .cloned()
    });
    let Some(path) = path else {
        return not_found();
    };
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(jpeg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            jpeg,
        )
            .into_response(),
        _ => not_found(),
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.cameras.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: every camera ready. With several cameras a 503 names the
/// ones that are not. `/cameras/{camera}/readyz` asks about one.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let hubs = state.cameras.all();
    let waiting: Vec<&str> = hubs.iter().filter(|h| !h.is_ready()).map(|h| &*h.name).collect();
    if hubs.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    } else if waiting.is_empty() {
        "ready\n".into_response()
    } else if hubs.len() == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    } else {
        let body = format!("not ready: {}\n", waiting.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

pub(crate) async fn camera_readyz(Cam(hub): Cam) -> Response {
    if hub.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

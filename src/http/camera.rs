//! Which camera a request is about, the camera list and the grid page.
//!
//! `/cameras/{camera}/...` serves the paths of one camera; the unprefixed
//! paths serve the first camera, so a single-camera daemon's URLs are what
//! they always were.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::api::json_response;
use super::AppState;
use crate::hub::Hub;

/// The hub of the camera a request names (`{camera}` in the path), or the
/// first camera's.
pub(crate) struct Cam(pub Arc<Hub>);

impl FromRequestParts<AppState> for Cam {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Cam, Response> {
        let params = RawPathParams::from_request_parts(parts, state).await.ok();
        let name = params
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| *k == "camera").map(|(_, v)| v.to_string()));
        match name {
            Some(name) => state
                .cameras
                .get(&name)
                .map(Cam)
                .ok_or_else(|| (StatusCode::NOT_FOUND, "no such camera\n").into_response()),
            None => state.cameras.first().map(Cam).ok_or_else(|| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "no camera running\n",
                )
                    .into_response()
            }),
        }
    }
}

/// `/cameras/{camera}`: on to `/cameras/{camera}/`, whose page reads its
/// stream and reports by relative URLs.
pub(crate) async fn camera_root(Cam(hub): Cam, uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let to = format!("{}/{query}", hub.name);
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response()
}

/// `/`: the live page of the only camera, or a grid of all of them.
pub(crate) async fn index(State(state): State<AppState>) -> Response {
    if state.cameras.all().len() > 1 {
        super::page::grid()
    } else {
        super::page::index().await
    }
}

/// `GET /api/cameras`: each camera, in config order, with its state.
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let hubs = state.cameras.all();
    let rates: Vec<f64> = hubs.iter().map(|h| h.inference_rate()).collect();
    let total: f64 = rates.iter().sum();
    let cameras: Vec<serde_json::Value> = hubs
        .iter()
        .zip(&rates)
        .map(|(h, rate)| {
            let report = h.latest_report();
            let m = &h.metrics;
            serde_json::json!({
                "name": &*h.name,
                "source": h.source(),
                "ready": h.is_ready(),
                "signal": report.as_ref().is_some_and(|r| r.signal),
                "failed": h.failure(),
                "width": report.as_ref().map(|r| r.width),
                "height": report.as_ref().map(|r| r.height),
                "fps": (m.processing_fps.get() * 10.0).round() / 10.0,
                "capture_fps": (m.capture_fps.get() * 10.0).round() / 10.0,
                "inferences_per_second": (rate * 10.0).round() / 10.0,
                // Of all the inferences made lately, the part this camera had.
                "inference_share": if total > 0.0 { ((rate / total) * 1000.0).round() / 1000.0 } else { 0.0 },
                "detect": h.detect_enabled(),
                "stream_clients": m.stream_clients.get(),
                "objects": h.events.objects().len(),
                "path": format!("cameras/{}/", h.name),
            })
        })
        .collect();
    json_response(&serde_json::json!({ "cameras": cameras }))
}

//! Request limits. No endpoint takes a body and every request is a short
//! GET, so anything large is refused before it reaches a handler. Hyper
//! itself stops at about 400 KB of headers (431) and malformed requests
//! (400); these tighter limits are ours.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Largest accepted request body (no endpoint reads one).
pub(crate) const MAX_BODY_BYTES: u64 = 1024;
/// Largest single header value.
pub(crate) const MAX_HEADER_LINE: usize = 8 * 1024;
/// Largest sum of all header names and values.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest request target (path and query).
pub(crate) const MAX_URI_BYTES: usize = 4 * 1024;

pub(crate) async fn check(req: Request, next: Next) -> Response {
    if let Some(refusal) = refuse(&req) {
        return refusal;
    }
    next.run(req).await
}

fn refuse(req: &Request) -> Option<Response> {
    let headers = req.headers();
    let total: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if total > MAX_HEADER_BYTES || headers.values().any(|v| v.len() > MAX_HEADER_LINE) {
        return Some(close(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large\n",
        ));
    }
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(close(StatusCode::URI_TOO_LONG, "request target too long\n"));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) || headers.contains_key(header::TRANSFER_ENCODING) {
        return Some(close(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body not accepted\n",
        ));
    }
    None
}

/// Refusals close the connection: the rest of the request is not read.
fn close(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONNECTION, "close")], body).into_response()
}

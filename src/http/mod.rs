//! The HTTP side of the daemon: an MJPEG stream, snapshots, a JSON and
//! Server-Sent-Events API, Prometheus metrics and health probes, all read
//! from the [`Hub`]. Nothing here ever makes the pipeline wait: every client
//! owns a `watch` receiver and simply skips frames it is too slow for.
//!
//! Endpoints (all relative, so the page works behind a reverse-proxy
//! sub-path):
//!
//! | path               | what                                                        |
//! |--------------------|-------------------------------------------------------------|
//! | `/`                | the live page (stream, detections, FPS/latency)             |
//! | `/stream.mjpg`     | `multipart/x-mixed-replace` MJPEG, at most `max_clients`    |
//! | `/snapshot.jpg`    | the latest JPEG, 503 before the first frame                 |
//! | `/api/detections`  | the latest `FrameReport` as JSON, 503 before the first      |
//! | `/api/events`      | SSE, one `data:` event per report, keep-alive every 15 s    |
//! | `/metrics`         | Prometheus text exposition                                  |
//! | `/healthz`         | 200 `ok` while the process runs (never behind auth)         |
//! | `/readyz`          | 200 `ready` / 503 `not ready` from `Hub::is_ready`          |

mod api;
mod auth;
mod conn;
mod limits;
pub mod mjpeg;
mod page;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use tokio::sync::{watch, Semaphore};

use crate::hub::Hub;

pub use mjpeg::BOUNDARY;

/// How long `serve` waits, after the shutdown signal, for connections to
/// finish before it returns anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct HttpSettings {
    /// Concurrent `/stream.mjpg` clients; more get 503.
    pub max_clients: usize,
    /// A client whose socket accepts no bytes for this long while the server
    /// has data for it is disconnected (applied by [`serve`] to every
    /// connection's writes).
    pub client_timeout: Duration,
    pub auth: Auth,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_clients: 16,
            client_timeout: Duration::from_secs(10),
            auth: Auth::None,
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("max_clients", &self.max_clients)
            .field("client_timeout", &self.client_timeout)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Who may use the server. `/healthz` is always open.
pub enum Auth {
    None,
    /// `Authorization: Basic`; each entry is (user, argon2 PHC hash string).
    Basic(Vec<(String, String)>),
    /// `Authorization: Bearer <token>` or `?token=<token>`.
    Bearer(String),
}

impl Auth {
    /// Checks the configuration (PHC strings parse, token not empty), so the
    /// daemon can refuse to start instead of locking everyone out.
    pub fn validate(&self) -> Result<(), String> {
        auth::validate(self)
    }
}

/// Never prints passwords, hashes or tokens.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic(users) => {
                let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
                f.debug_tuple("Basic").field(&names).finish()
            }
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) stream_slots: Arc<Semaphore>,
    /// Becomes `true` on shutdown; long-lived streams end then.
    pub(crate) stop: Arc<watch::Sender<bool>>,
}

/// The application without the connection-level write timeout that
/// [`serve`] adds; use it when embedding into another server.
pub fn router(hub: Arc<Hub>, settings: HttpSettings) -> Router {
    build(hub, settings).0
}

fn build(hub: Arc<Hub>, settings: HttpSettings) -> (Router, Arc<watch::Sender<bool>>) {
    if let Err(e) = settings.auth.validate() {
        tracing::error!("http auth configuration: {e}; affected credentials will never be accepted");
    }
    let stop = Arc::new(watch::channel(false).0);
    let state = AppState {
        hub,
        stream_slots: Arc::new(Semaphore::new(settings.max_clients)),
        stop: stop.clone(),
    };
    let authenticator = Arc::new(auth::Authenticator::new(&settings.auth));
    let protected = Router::new()
        .route("/", get(page::index))
        .route("/stream.mjpg", get(mjpeg::stream))
        .route("/snapshot.jpg", get(api::snapshot))
        .route("/api/detections", get(api::detections))
        .route("/api/events", get(api::events))
        .route("/metrics", get(api::metrics))
        .route("/readyz", get(api::readyz))
        .route_layer(middleware::from_fn_with_state(authenticator, auth::require));
    let app = Router::new()
        .merge(protected)
        .route("/healthz", get(api::healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(limits::check))
        .with_state(state);
    (app, stop)
}

/// Serves until `shutdown` completes, then ends the streams, lets open
/// responses finish (at most a few seconds) and returns.
///
/// Every accepted socket gets `TCP_NODELAY` and a write timeout of
/// `settings.client_timeout`: a client that stops reading is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let write_timeout = settings.client_timeout;
    let (app, stop) = build(hub, settings);
    let listener = conn::TimeoutListener::new(listener, write_timeout);
    let signal_stop = stop.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("http: shutting down");
        signal_stop.send_replace(true);
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    let mut stopped = stop.subscribe();
    let grace = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result,
        () = grace => {
            tracing::warn!("http: connections still open {SHUTDOWN_GRACE:?} after shutdown; leaving them");
            Ok(())
        }
    }
}

/// Resolves once `stop` is `true`; never if its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

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
//! | `/readyz`          | 200 `ready` / 503 `not ready`: every camera `Hub::is_ready` |
//! | `/api/cameras`     | each camera: name, source, signal, fps, inference share     |
//! | `/cameras/{camera}/...` | one camera's page, stream, snapshot and API            |
//!
//! The unprefixed camera paths serve the first camera.
//!
//! Every response carries `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and a Content-Security-Policy (the page
//! its own, everything else `default-src 'none'`).

mod api;
mod auth;
mod camera;
mod conn;
mod host;
mod limiter;
mod limits;
pub mod mjpeg;
mod page;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::{watch, Semaphore};

use crate::hub::Cameras;

pub use auth::{check_argon2_cost, MAX_ARGON2_M_KIB, MAX_ARGON2_WORK, MIN_TOKEN_LEN};
pub use host::check_host_name;
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
    /// Time for a whole request head, from the connection or from the first
    /// byte of a later request; slower clients are disconnected.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// `Some(names)`: only `Host` headers naming localhost, an IP address or
    /// one of `names` are served (against DNS rebinding; for servers
    /// without auth). `None`: no check.
    pub host_check: Option<Vec<String>>,
    pub auth: Auth,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_clients: 16,
            client_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            host_check: None,
            auth: Auth::None,
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("max_clients", &self.max_clients)
            .field("client_timeout", &self.client_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("host_check", &self.host_check)
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
    /// Checks the configuration (PHC strings parse and cost at most
    /// [`MAX_ARGON2_M_KIB`] and [`MAX_ARGON2_WORK`], the token has at least
    /// [`MIN_TOKEN_LEN`] characters), so the daemon can refuse to start
    /// instead of locking everyone out.
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
    pub(crate) cameras: Arc<Cameras>,
    pub(crate) stream_slots: Arc<Semaphore>,
    /// `/api/events` streams, limited like `/stream.mjpg` (and apart from
    /// it: the page opens one of each), so they cannot fill every
    /// connection the server allows.
    pub(crate) event_slots: Arc<Semaphore>,
    /// Becomes `true` on shutdown; long-lived streams end then.
    pub(crate) stop: Arc<watch::Sender<bool>>,
}

/// The application without the connection-level write timeout that
/// [`serve`] adds; use it when embedding into another server.
pub fn router(cameras: Arc<Cameras>, settings: HttpSettings) -> Router {
    build(cameras, settings).0
}

fn build(cameras: Arc<Cameras>, settings: HttpSettings) -> (Router, Arc<watch::Sender<bool>>) {
    if let Err(e) = settings.auth.validate() {
        tracing::error!("http auth configuration: {e}; affected credentials will never be accepted");
    }
    let stop = Arc::new(watch::channel(false).0);
    let state = AppState {
        cameras,
        stream_slots: Arc::new(Semaphore::new(settings.max_clients)),
        event_slots: Arc::new(Semaphore::new(settings.max_clients)),
        stop: stop.clone(),
    };
    let authenticator = Arc::new(auth::Authenticator::new(&settings.auth));
    // Each camera's paths, under `/cameras/{camera}` and (the first
    // camera's) at the top.
    let camera = |prefix: &str, r: Router<AppState>| {
        r.route(&format!("{prefix}/stream.mjpg"), get(mjpeg::stream))
            .route(&format!("{prefix}/snapshot.jpg"), get(api::snapshot))
            .route(&format!("{prefix}/api/detections"), get(api::detections))
            .route(&format!("{prefix}/api/events"), get(api::events))
            .route(&format!("{prefix}/api/events/recent"), get(api::recent_events))
            .route(
                &format!("{prefix}/api/events/{{id}}/snapshot.jpg"),
                get(api::object_snapshot),
            )
            .route(&format!("{prefix}/api/objects"), get(api::objects))
    };
    let mut protected = Router::new()
        .route("/", get(camera::index))
        .route("/cameras/{camera}", get(camera::camera_root))
        .route("/cameras/{camera}/", get(page::camera_page))
        .route("/cameras/{camera}/readyz", get(api::camera_readyz))
        .route("/api/cameras", get(camera::list))
        .route("/metrics", get(api::metrics))
        .route("/readyz", get(api::readyz));
    protected = camera("", protected);
    protected = camera("/cameras/{camera}", protected);
    let protected = protected.route_layer(middleware::from_fn_with_state(authenticator, auth::require));
    let mut guarded = Router::new().merge(protected);
    if let Some(names) = &settings.host_check {
        let check = Arc::new(host::HostCheck::new(names));
        guarded = guarded.route_layer(middleware::from_fn_with_state(check, host::check));
    }
    let app = Router::new()
        .merge(guarded)
        .route("/healthz", get(api::healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(limits::check))
        .layer(middleware::from_fn(conn::track))
        .layer(middleware::from_fn(security_headers))
        .with_state(state);
    (app, stop)
}

/// What no response should lack: no MIME sniffing (a JPEG or JSON body must
/// not run as a page), no referrer leaking a `?token=`, and a CSP that
/// allows nothing but what the page itself declares.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'self'",
        ));
    response
}

/// Serves until `shutdown` completes, then ends the streams, lets open
/// responses finish (at most a few seconds) and returns.
///
/// Every accepted socket gets `TCP_NODELAY`, a write timeout of
/// `settings.client_timeout` (a client that stops reading is disconnected),
/// the header and idle read deadlines, and counts towards
/// `settings.max_connections`, which is lowered if the open-file limit
/// would not hold that many.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cameras: Arc<Cameras>,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let nofile = conn::open_file_limit();
    let max_connections = conn::connection_cap(settings.max_connections, nofile);
    if max_connections < settings.max_connections {
        tracing::warn!(
            "http: at most {max_connections} connections instead of {}: the open-file limit is {} \
             and {} files are kept for the rest (raise LimitNOFILE= or ulimit -n)",
            settings.max_connections,
            nofile.unwrap_or(0),
            conn::FD_RESERVE
        );
    }
    let limits = conn::Limits {
        write_timeout: settings.client_timeout,
        header_timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections,
    };
    let (app, stop) = build(cameras, settings);
    let listener = conn::TimeoutListener::new(listener, limits);
    let signal_stop = stop.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("http: shutting down");
        signal_stop.send_replace(true);
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<conn::ConnInfo>(),
    )
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

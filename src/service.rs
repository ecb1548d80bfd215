//! The daemon's life cycle: start the pipeline and the HTTP server, stop
//! both cleanly on SIGINT/SIGTERM, apply filter changes on SIGHUP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::http::{self, HttpSettings};
use crate::hub::Hub;
use crate::infer::{FilterSettings, Runtime};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineSettings};

/// What `run` needs, resolved from config and command line.
pub struct DaemonSettings {
    pub pipeline: PipelineSettings,
    pub http: HttpSettings,
    pub listen: SocketAddr,
}

/// Loads a new filter on SIGHUP; returns None when reloading is impossible.
pub type ReloadFn = Box<dyn Fn() -> anyhow::Result<FilterSettings> + Send + Sync>;

/// Runs until SIGINT or SIGTERM. Model, label and port errors are returned
/// before anything is served.
pub fn run_daemon(
    rt: &'static Runtime,
    settings: DaemonSettings,
    reload: Option<ReloadFn>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::new(metrics);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind(settings.listen))
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let pipeline = Pipeline::start(rt, settings.pipeline, hub.clone(), false)?;
    let addr = listener.local_addr().unwrap_or(settings.listen);
    tracing::info!(
        "serving on http://{addr}/ (model {})",
        pipeline.model().path().display()
    );
    eprintln!("edgevision: serving on http://{addr}/");
    let pipeline = Arc::new(pipeline);
    let result = tokio.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, hub.clone(), settings.http, async move {
            let _ = stop_rx.await;
        }));
        wait_for_shutdown(&pipeline, reload).await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(());
        // Streams are endless: give the server a moment, then stop anyway.
        match tokio::time::timeout(Duration::from_millis(1500), server).await {
            Ok(Ok(r)) => r.context("HTTP server failed"),
            Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            Err(_) => Ok(()),
        }
    });
    tokio.shutdown_timeout(Duration::from_millis(200));
    match Arc::try_unwrap(pipeline) {
        Ok(p) => drop(p.stop()),
        Err(p) => drop(p),
    }
    result
}

async fn wait_for_shutdown(pipeline: &Pipeline, reload: Option<ReloadFn>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match &reload {
                Some(f) => match f().and_then(|filter| pipeline.update_filter(filter).map_err(anyhow::Error::msg)) {
                    Ok(()) => tracing::info!("SIGHUP: detection filter reloaded"),
                    Err(e) => tracing::error!("SIGHUP: reload failed, keeping the current settings: {e:#}"),
                },
                None => tracing::warn!("SIGHUP ignored: no config file to reload"),
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if pipeline.finished() {
                    tracing::warn!("the pipeline ended (source finished); stopping");
                    return;
                }
            }
        }
    }
}

//! The daemon's life cycle: start the pipeline and the HTTP server, tell
//! systemd how it goes (`sd_notify`), apply a changed config on SIGHUP and
//! stop both cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::http::{self, HttpSettings};
use crate::hub::Hub;
use crate::infer::Runtime;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier, WatchdogGate};
use crate::pipeline::{Pipeline, PipelineSettings, Prepared, StartError};

/// What `run` needs, resolved from config and command line.
pub struct DaemonSettings {
    pub pipeline: PipelineSettings,
    pub http: HttpSettings,
    pub listen: SocketAddr,
}

/// Reads the config again on SIGHUP and returns the pipeline settings it
/// asks for.
pub type ReloadFn = Box<dyn Fn() -> anyhow::Result<PipelineSettings> + Send + Sync>;

/// How often `STATUS=` is refreshed for `systemctl status`.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The async runtime the HTTP server runs on: two worker threads are
/// plenty, since the stream's frames are encoded once, off these threads.
pub fn http_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs until SIGINT or SIGTERM. Model, label and port errors are returned
/// before anything is served.
pub fn run_daemon(
    rt: &'static Runtime,
    settings: DaemonSettings,
    reload: Option<ReloadFn>,
) -> anyhow::Result<()> {
    let notifier = Notifier::from_env()?;
    let watchdog = notify::watchdog_from_env()?;
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::new(&settings.pipeline.camera, &metrics);
    let tokio = http_runtime()?;
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
    let mut daemon = Daemon {
        rt,
        hub: hub.clone(),
        pipeline: Some(pipeline),
        notifier,
        reload,
    };
    let result = tokio.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, hub.clone(), settings.http, async move {
            let _ = stop_rx.await;
        }));
        // The socket listens and the server task runs: ready.
        daemon.notify(&format!("READY=1\n{}", status(&hub)));
        if let Some(interval) = watchdog {
            tracing::info!("systemd watchdog: {interval:?}, pinged while frames flow");
        }
        daemon.run_until_signal(watchdog).await;
        tracing::info!("shutting down");
        daemon.notify("STOPPING=1\nSTATUS=stopping");
        let _ = stop_tx.send(());
        // Streams are endless: give the server a moment, then stop anyway.
        match tokio::time::timeout(Duration::from_millis(1500), server).await {
            Ok(Ok(r)) => r.context("HTTP server failed"),
            Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            Err(_) => Ok(()),
        }
    });
    tokio.shutdown_timeout(Duration::from_millis(200));
    let fatal = daemon.pipeline.as_ref().and_then(Pipeline::fatal);
    let stopped = daemon.pipeline.take().map(|p| drop(p.stop()));
    // After the pipeline: its objects' end events go out, then "offline".
    crate::mqtt::stop(&daemon.hub);
    match stopped {
        Some(()) => {}
        // Exit with an error so that systemd (Restart=on-failure) tries again.
        None => anyhow::bail!("the pipeline could not be restarted after a reload"),
    }
    if let Some(reason) = fatal {
        anyhow::bail!("the source cannot work: {reason}");
    }
    result
}

/// The running parts the signal loop changes.
struct Daemon {
    rt: &'static Runtime,
    hub: Arc<Hub>,
    /// `None` only while a restart is under way.
    pipeline: Option<Pipeline>,
    notifier: Option<Notifier>,
    reload: Option<ReloadFn>,
}

/// `STATUS=` for systemd: frame rate, frames so far, clients.
fn status(hub: &Hub) -> String {
    let m = &hub.metrics;
    let text = if hub.inference_failing() {
        format!(
            "inference failing ({} errors so far); {} frames processed",
            m.inference_errors.get(),
            m.frames_processed.get()
        )
    } else if hub.is_ready() {
        format!(
            "{:.1} fps, {} frames processed, {} stream clients",
            m.processing_fps.get(),
            m.frames_processed.get(),
            m.stream_clients.get()
        )
    } else {
        format!(
            "waiting for the source; {} frames processed, {} stream clients",
            m.frames_processed.get(),
            m.stream_clients.get()
        )
    };
    notify::status_line(&text)
}

impl Daemon {
    fn notify(&self, message: &str) {
        if let Some(n) = &self.notifier {
            n.notify(message);
        }
    }

    async fn run_until_signal(&mut self, watchdog: Option<Duration>) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        let mut check = tokio::time::interval(Duration::from_millis(250));
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        // Half the interval, as sd_watchdog_enabled(3) advises; an idle tick
        // when there is no watchdog.
        let half = watchdog.map_or(Duration::from_secs(3600), |w| w / 2);
        let mut watchdog_tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        let mut gate = WatchdogGate::default();
        gate.should_ping(self.hub.frames_published());
        let mut stalled = false;
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => self.reload(),
                _ = status_tick.tick() => self.notify(&status(&self.hub)),
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    // Frames that go out without inference are no sign of
                    // health: a model failing on every frame gets the
                    // daemon restarted.
                    let alive = gate.should_ping(self.hub.frames_published());
                    if alive && !self.hub.inference_failing() {
                        self.notify("WATCHDOG=1");
                        stalled = false;
                    } else if !std::mem::replace(&mut stalled, true) {
                        if alive {
                            tracing::warn!("inference is failing: not feeding the systemd watchdog");
                        } else {
                            tracing::warn!("no frame published for {:?}: not feeding the systemd watchdog",
                                watchdog.unwrap_or_default() / 2);
                        }
                    }
                }
                _ = check.tick() => {
                    if self.pipeline.as_ref().is_none_or(Pipeline::finished) {
                        if self.pipeline.as_ref().and_then(Pipeline::fatal).is_none() {
                            tracing::warn!("the pipeline ended (source finished); stopping");
                        }
                        return;
                    }
                }
            }
        }
    }

    /// SIGHUP: read the config again; apply filter and stream settings in
    /// place, and start the pipeline again (same hub, same HTTP server, so
    /// clients stay connected) when the source or model changed.
    fn reload(&mut self) {
        let Some(reload) = &self.reload else {
            tracing::warn!("SIGHUP ignored: no config file to reload");
            return;
        };
        self.notify("RELOADING=1\nSTATUS=reloading the configuration");
        match reload() {
            Ok(new) => {
                if let Err(e) = self.apply(new) {
                    tracing::error!("SIGHUP: reload failed, keeping the current settings: {e:#}");
                }
            }
            Err(e) => tracing::error!("SIGHUP: reload failed, keeping the current settings: {e:#}"),
        }
        self.notify(&format!("READY=1\n{}", status(&self.hub)));
    }

    fn apply(&mut self, new: PipelineSettings) -> anyhow::Result<()> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            anyhow::bail!("no pipeline running");
        };
        let Some(reason) = pipeline.restart_reason(&new) else {
            pipeline.update_live(&new).map_err(anyhow::Error::msg)?;
            tracing::info!("SIGHUP: detection filter and stream settings reloaded");
            return Ok(());
        };
        // Load the new model while the old pipeline runs: a model that does
        // not load (a file replaced by a corrupt one) changes nothing.
        tracing::info!("SIGHUP: {reason}; loading the new settings while the pipeline runs");
        let prepared = tokio::task::block_in_place(|| Prepared::load(self.rt, new))
            .context("the new model does not load")?;
        let old = self.pipeline.take().expect("checked above");
        let (old_model, old_mtime) = (old.model().clone(), old.model_mtime());
        let old_settings = old.settings().clone();
        // The source (a V4L2 device) may be opened by one pipeline at a time.
        tokio::task::block_in_place(|| drop(old.stop()));
        let hub = self.hub.clone();
        match tokio::task::block_in_place(|| Pipeline::launch(prepared, hub, false)) {
            Ok(p) => {
                tracing::info!(
                    "SIGHUP: pipeline restarted (model {})",
                    p.model().path().display()
                );
                self.pipeline = Some(p);
                Ok(())
            }
            Err(e) => {
                // Back to the old settings, with the old model from memory:
                // its file may have changed since it was loaded.
                let hub = self.hub.clone();
                let back = tokio::task::block_in_place(|| {
                    Prepared::with_model(old_model, old_mtime, old_settings)
                        .map_err(StartError::from)
                        .and_then(|p| Pipeline::launch(p, hub, false))
                });
                match back {
                    Ok(p) => self.pipeline = Some(p),
                    Err(e2) => tracing::error!("cannot restart the previous pipeline either: {e2}"),
                }
                Err(anyhow::Error::new(e).context("the new pipeline did not start"))
            }
        }
    }
}

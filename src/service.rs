//! The daemon's life cycle: start the pipeline and the HTTP server, tell
//! systemd how it goes (`sd_notify`), apply a changed config on SIGHUP and
//! stop both cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::http::{self, HttpSettings};
use crate::hub::{Cameras, Hub};
use crate::infer::Runtime;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier, WatchdogGate};
use crate::pipeline::{self, InferencePool, Pipeline, PipelineSettings};

/// What `run` needs, resolved from config and command line.
pub struct DaemonSettings {
    /// One per camera, in config order; all share the first one's model.
    pub cameras: Vec<PipelineSettings>,
    pub http: HttpSettings,
    pub listen: SocketAddr,
}

/// Reads the config again on SIGHUP and returns the cameras it asks for.
pub type ReloadFn = Box<dyn Fn() -> anyhow::Result<Vec<PipelineSettings>> + Send + Sync>;

/// How often `STATUS=` is refreshed for `systemctl status`.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Threads the async runtime may start for blocking work (password checks,
/// event pictures read from disk, reloads). Tokio's default is 512: a burst
/// of slow disk reads could then take a service's whole `TasksMax=`, and
/// the task budget ([`crate::pipeline::layout::RESERVED_THREADS`]) counts
/// on this bound.
pub const HTTP_BLOCKING_THREADS: usize = 3;

/// The async runtime the HTTP server runs on: two worker threads are
/// plenty, since the stream's frames are encoded once, off these threads.
pub fn http_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(HTTP_BLOCKING_THREADS)
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
    let cameras = Cameras::new(metrics.clone());
    let tokio = http_runtime()?;
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind(settings.listen))
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let pool = Arc::new(pipeline::load_pool(rt, &settings.cameras)?);
    pipeline::announce(&pool, &metrics);
    let mqtt = mqtt_settings(&settings.cameras);
    let mut running = Vec::with_capacity(settings.cameras.len());
    for cs in settings.cameras {
        let hub = cameras.new_hub(&cs.camera);
        running.push(Pipeline::launch(cs, pool.clone(), hub, false)?);
    }
    cameras.set(running.iter().map(|p| p.hub().clone()).collect());
    crate::mqtt::configure(&cameras, &mqtt);
    let addr = listener.local_addr().unwrap_or(settings.listen);
    tracing::info!(
        "serving on http://{addr}/ ({} camera{}, model {})",
        running.len(),
        if running.len() == 1 { "" } else { "s" },
        pool.model().path().display()
    );
    eprintln!("edgevision: serving on http://{addr}/");
    let mut daemon = Daemon {
        rt,
        cameras: cameras.clone(),
        pool,
        pipelines: running,
        notifier,
        reload,
    };
    let result = tokio.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(
            listener,
            cameras.clone(),
            settings.http,
            async move {
                let _ = stop_rx.await;
            },
        ));
        // The socket listens and the server task runs: ready.
        daemon.notify(&format!("READY=1\n{}", status(&cameras)));
        if let Some(interval) = watchdog {
            tracing::info!("systemd watchdog: {interval:?}, pinged while frames flow");
        }
        let ended = daemon.run_until_signal(watchdog).await;
        tracing::info!("shutting down");
        daemon.notify("STOPPING=1\nSTATUS=stopping");
        let _ = stop_tx.send(());
        // Streams are endless: give the server a moment, then stop anyway.
        match tokio::time::timeout(Duration::from_millis(1500), server).await {
            Ok(Ok(r)) => r.context("HTTP server failed").map(|()| ended),
            Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            Err(_) => Ok(ended),
        }
    });
    tokio.shutdown_timeout(Duration::from_millis(200));
    let none_left = daemon.pipelines.is_empty();
    let fatal: Vec<String> = daemon
        .pipelines
        .iter()
        .filter_map(|p| p.fatal().map(|r| format!("camera {}: {r}", p.settings().camera)))
        .collect();
    for p in daemon.pipelines.drain(..) {
        drop(p.stop());
    }
    // After the pipelines: their objects' end events go out, then "offline".
    crate::mqtt::stop(&cameras);
    // The cameras have all ended, some because their source can never
    // work: exit with an error so that systemd (Restart=on-failure) and the
    // operator see it.
    let ended = result?;
    if ended && !fatal.is_empty() {
        anyhow::bail!("the source cannot work: {}", fatal.join("; "));
    }
    if ended && none_left {
        anyhow::bail!("no camera is running (a reload could not start any)");
    }
    Ok(())
}

/// The running parts the signal loop changes.
struct Daemon {
    rt: &'static Runtime,
    cameras: Arc<Cameras>,
    pool: Arc<InferencePool>,
    /// One per camera, in config order.
    pipelines: Vec<Pipeline>,
    notifier: Option<Notifier>,
    reload: Option<ReloadFn>,
}

/// `STATUS=` for systemd: frame rate, frames so far, clients; per camera
/// when there are several.
fn status(cameras: &Cameras) -> String {
    let hubs = cameras.all();
    let text = match hubs.as_slice() {
        [hub] => camera_status(hub),
        hubs => hubs
            .iter()
            .map(|h| format!("{}: {}", h.name, camera_status(h)))
            .collect::<Vec<_>>()
            .join("; "),
    };
    notify::status_line(&text)
}

fn camera_status(hub: &Hub) -> String {
    let m = &hub.metrics;
    if hub.inference_failing() {
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
    }
}

/// Frames published by every camera: the watchdog's sign of life.
fn frames_published(cameras: &Cameras) -> u64 {
    cameras.all().iter().map(|h| h.frames_published()).sum()
}

/// Inference failing on every camera: the model (or the runtime) is at
/// fault, and a restart may help; one camera's bad frames are not.
fn inference_failing(cameras: &Cameras) -> bool {
    let hubs = cameras.all();
    !hubs.is_empty() && hubs.iter().all(|h| h.inference_failing())
}

impl Daemon {
    fn notify(&self, message: &str) {
        if let Some(n) = &self.notifier {
            n.notify(message);
        }
    }

    /// Runs until a stop signal (false) or until every camera has ended
    /// (true).
    async fn run_until_signal(&mut self, watchdog: Option<Duration>) -> bool {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
            return false;
        };
        let mut check = tokio::time::interval(Duration::from_millis(250));
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        // Half the interval, as sd_watchdog_enabled(3) advises; an idle tick
        // when there is no watchdog.
        let half = watchdog.map_or(Duration::from_secs(3600), |w| w / 2);
        let mut watchdog_tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        let mut gate = WatchdogGate::default();
        gate.should_ping(frames_published(&self.cameras));
        let mut stalled = false;
        // Cameras whose end has been logged.
        let mut ended = std::collections::HashSet::new();
        loop {
            tokio::select! {
                _ = term.recv() => return false,
                _ = int.recv() => return false,
                _ = hup.recv() => self.reload(),
                _ = status_tick.tick() => self.notify(&status(&self.cameras)),
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    // Frames that go out without inference are no sign of
                    // health: a model failing on every frame gets the
                    // daemon restarted.
                    let alive = gate.should_ping(frames_published(&self.cameras));
                    if alive && !inference_failing(&self.cameras) {
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
                    // A camera that ends leaves the others running; the
                    // daemon stops when none is left.
                    for p in &self.pipelines {
                        let name = &p.settings().camera;
                        if p.finished() && ended.insert(name.clone()) && p.fatal().is_none() && self.pipelines.len() > 1 {
                            tracing::warn!("camera {name}: the source finished");
                        }
                    }
                    if self.pipelines.iter().all(Pipeline::finished) {
                        if self.pipelines.is_empty() {
                            tracing::error!("no camera is running; stopping");
                        } else if self.pipelines.iter().all(|p| p.fatal().is_none()) {
                            tracing::warn!("the pipeline ended (source finished); stopping");
                        }
                        return true;
                    }
                }
            }
        }
    }

    /// SIGHUP: read the config again; apply filter and stream settings in
    /// place, start a camera again when its source changed (same hub, same
    /// HTTP server, so clients stay connected), add and remove cameras, and
    /// start every camera again on a new pool when the model changed. The
    /// cameras not named by a change keep running untouched.
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
        self.notify(&format!("READY=1\n{}", status(&self.cameras)));
    }

    fn apply(&mut self, new: Vec<PipelineSettings>) -> anyhow::Result<()> {
        let Some(first) = new.first() else {
            anyhow::bail!("no camera configured");
        };
        let mut restart_all = false;
        if let Some(reason) = pipeline::pool_restart_reason(&self.pool, first) {
            // Load the new model while the cameras run: a model that does
            // not load (a file replaced by a corrupt one) changes nothing.
            tracing::info!("SIGHUP: {reason}; loading the new settings while the cameras run");
            let pool = tokio::task::block_in_place(|| pipeline::load_pool(self.rt, &new))
                .context("the new model does not load")?;
            pipeline::announce(&pool, &self.cameras.metrics);
            // The old pool's interpreters are freed once its cameras stop.
            self.pool = Arc::new(pool);
            restart_all = true;
        }
        if !restart_all {
            if let Some(why) = pipeline::layout_outgrown(&self.pool, &new) {
                tracing::warn!("SIGHUP: {why}");
            }
        }
        let mqtt = mqtt_settings(&new);
        // Removed cameras stop first: a renamed camera may open the same
        // device.
        let (mut old, removed): (Vec<Pipeline>, Vec<Pipeline>) = std::mem::take(&mut self.pipelines)
            .into_iter()
            .partition(|p| new.iter().any(|s| s.camera == p.settings().camera));
        for p in removed {
            let name = p.settings().camera.clone();
            let hub = p.hub().clone();
            tokio::task::block_in_place(|| drop(p.stop()));
            retire(&hub);
            tracing::info!("SIGHUP: camera {name} removed");
        }
        let mut old: Vec<Option<Pipeline>> = old.drain(..).map(Some).collect();
        for s in new {
            let name = s.camera.clone();
            let found = old
                .iter_mut()
                .find(|p| p.as_ref().is_some_and(|p| p.settings().camera == name))
                .and_then(Option::take);
            let Some(mut p) = found else {
                let hub = self.cameras.new_hub(&name);
                match self.launch(s, hub.clone()) {
                    Ok(p) => {
                        tracing::info!("SIGHUP: camera {name} added");
                        self.pipelines.push(p);
                    }
                    Err(e) => {
                        tracing::error!("SIGHUP: camera {name} did not start: {e:#}");
                        retire(&hub);
                    }
                }
                continue;
            };
            let reason = if restart_all {
                Some("the model changed")
            } else if p.finished() {
                // Its source had failed for good: the reload tries again
                // (the device may be back).
                Some("it had stopped")
            } else {
                p.restart_reason(&s)
            };
            let Some(reason) = reason else {
                match p.update_live(&s) {
                    Ok(()) => {
                        tracing::info!(
                            "SIGHUP: detection filter and stream settings reloaded (camera {name})"
                        )
                    }
                    Err(e) => tracing::error!("SIGHUP: camera {name}: {e}; keeping its settings"),
                }
                self.pipelines.push(p);
                continue;
            };
            tracing::info!("SIGHUP: camera {name}: {reason}; starting it again");
            let hub = p.hub().clone();
            let previous = p.settings().clone();
            // The source (a V4L2 device) may be opened by one pipeline at a time.
            tokio::task::block_in_place(|| drop(p.stop()));
            match self.launch(s, hub.clone()) {
                Ok(p) => {
                    tracing::info!(
                        "SIGHUP: pipeline restarted (camera {name}, model {})",
                        p.model().path().display()
                    );
                    self.pipelines.push(p);
                }
                Err(e) => {
                    tracing::error!("SIGHUP: camera {name}: the new settings did not start: {e:#}; back to the previous ones");
                    match self.launch(previous, hub.clone()) {
                        Ok(p) => self.pipelines.push(p),
                        Err(e) => {
                            tracing::error!("SIGHUP: camera {name}: cannot restart it either: {e:#}; it is gone until the next reload");
                            retire(&hub);
                        }
                    }
                }
            }
        }
        debug_assert!(old.iter().all(Option::is_none), "every kept camera was matched");
        self.cameras
            .set(self.pipelines.iter().map(|p| p.hub().clone()).collect());
        // The one MQTT client follows: cameras added and removed on its
        // connection, a new connection only when the broker settings changed.
        tokio::task::block_in_place(|| crate::mqtt::configure(&self.cameras, &mqtt));
        if self.pipelines.is_empty() {
            anyhow::bail!("no camera is running");
        }
        Ok(())
    }

    fn launch(&self, settings: PipelineSettings, hub: Arc<Hub>) -> anyhow::Result<Pipeline> {
        let pool = self.pool.clone();
        Ok(tokio::task::block_in_place(|| {
            Pipeline::launch(settings, pool, hub, false)
        })?)
    }
}

/// Lets a removed camera go: its pictures' writer and webhooks stop and its
/// series leave `/metrics` (MQTT clears its topics once
/// [`crate::mqtt::configure`] is told the new list).
fn retire(hub: &Hub) {
    hub.events.configure(None, &[], 1, &hub.metrics);
    hub.metrics.all.remove_camera(&hub.name);
}

/// Each camera's MQTT settings, in config order (empty without `[mqtt]`).
fn mqtt_settings(cameras: &[PipelineSettings]) -> Vec<crate::mqtt::MqttSettings> {
    cameras.iter().filter_map(|c| c.mqtt.clone()).collect()
}

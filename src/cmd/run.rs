//! `edgevision run`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::capture::SourceOptions;
use crate::config::{installed, Annotate, AuthMode, Config};
use crate::http::{Auth, HttpSettings};
use crate::infer::{Runtime, RuntimeSearch};
use crate::pipeline::{layout, PipelineSettings};
use crate::service::{run_daemon, DaemonSettings, ReloadFn};

/// Settings a command line may override in the config.
#[derive(Debug, Clone, Args, Default)]
pub struct Overrides {
    /// Config file (TOML); without it the built-in defaults apply.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Frame source URI: v4l2:/dev/video0, images:DIR, mjpeg:FILE,
    /// http://HOST:PORT/PATH (an MJPEG stream), exec:COMMAND, rpicam:N, test:
    #[arg(long, value_name = "URI")]
    pub source: Option<String>,
    /// The .tflite model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Label file.
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<PathBuf>,
    /// Threads per interpreter.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Interpreters working on alternate frames.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Minimum detection score (0..1).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f32>,
    /// Who draws the boxes (`stream.annotate`): burn (into the frames),
    /// off, or client (JPEG sources' frames forwarded untouched, the page
    /// draws).
    #[arg(long, value_name = "MODE", value_parser = ["burn", "off", "client"])]
    pub annotate: Option<String>,
    /// The LiteRT library.
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
}

impl Overrides {
    /// The config file (or defaults) with the command line applied and
    /// validated; errors name the key, file and line.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if self.source.is_some() && !cfg.cameras.is_empty() {
            anyhow::bail!("--source: the config has [[camera]] tables; set each camera's source there");
        }
        self.apply(&mut cfg);
        let mut cameras = std::mem::take(&mut cfg.cameras);
        for cam in &mut cameras {
            self.apply(cam);
        }
        cfg.cameras = cameras;
        for c in std::iter::once(&cfg).chain(&cfg.cameras) {
            if let Err((key, message)) = c.validate() {
                anyhow::bail!("{key}: {message} (from the command line)");
            }
        }
        Ok(cfg)
    }

    /// The command line's settings, on one camera's config.
    fn apply(&self, cfg: &mut Config) {
        if let Some(s) = &self.source {
            cfg.source.uri = s.clone();
        }
        if let Some(m) = &self.model {
            cfg.model.path = m.clone();
        }
        if let Some(l) = &self.labels {
            cfg.model.labels = Some(l.clone());
        }
        if let Some(t) = self.threads {
            cfg.model.threads = t;
        }
        if let Some(w) = self.workers {
            cfg.model.workers = w;
        }
        if let Some(t) = self.threshold {
            cfg.detect.threshold = t;
        }
        match self.annotate.as_deref() {
            Some("burn") => cfg.stream.annotate = Annotate::Burn,
            Some("off") => cfg.stream.annotate = Annotate::Off,
            Some("client") => cfg.stream.annotate = Annotate::Client,
            _ => {}
        }
        if let Some(r) = &self.runtime {
            cfg.runtime = Some(r.clone());
        }
        // Relative model and label paths not found from here: the installed
        // copies (PREFIX/share/edgevision), as the runtime is found.
        cfg.model.path = installed::locate(&cfg.model.path);
        if let Some(l) = &cfg.model.labels {
            cfg.model.labels = Some(installed::locate(l));
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// Address to serve on, e.g. 0.0.0.0:8080 (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// Every camera's pipeline settings, in config order.
pub fn camera_settings(cfg: &Config) -> anyhow::Result<Vec<PipelineSettings>> {
    let cameras = cfg.camera_configs();
    let mut out = Vec::with_capacity(cameras.len());
    for (i, cam) in cameras.iter().enumerate() {
        let s = camera_pipeline(cam, cameras.len() - 1, i == 0).map_err(|e| {
            if cfg.cameras.is_empty() {
                e
            } else {
                e.context(format!("camera {:?}", cam.camera_name()))
            }
        })?;
        out.push(s);
    }
    Ok(out)
}

/// Pipeline settings from a validated config (one camera's).
pub fn pipeline_settings(cfg: &Config) -> anyhow::Result<PipelineSettings> {
    camera_pipeline(cfg, 0, true)
}

/// Threads each camera beyond the first needs besides the shared
/// interpreters: its capture thread and picture writer, plus one worker per
/// interpreter.
const THREADS_PER_CAMERA: usize = 2;

/// One camera's pipeline settings, with `others` more cameras sharing the
/// task limit; `log` says what the layout had to give up (once, not per
/// camera).
fn camera_pipeline(cfg: &Config, others: usize, log: bool) -> anyhow::Result<PipelineSettings> {
    let s = &cfg.source;
    let cores = layout::usable_cores();
    let chosen = layout::choose(cores, cfg.model.workers, cfg.model.threads);
    let m = &cfg.model;
    for (key, asked, used) in [
        ("model.workers", m.workers, chosen.workers),
        ("model.threads", m.threads, chosen.threads),
    ] {
        if asked > used && log {
            tracing::warn!("{key} = {asked} is more than the {cores} cores this process may use: {used}");
        }
    }
    let for_others = others * (THREADS_PER_CAMERA + chosen.workers);
    let room = layout::thread_room().map(|r| r.saturating_sub(for_others));
    let layout = layout::fit_room(chosen, room).map_err(|e| {
        if others == 0 {
            anyhow::Error::msg(e)
        } else {
            anyhow::anyhow!("{e}; the {others} other cameras' threads ({for_others}) are already counted out")
        }
    })?;
    if layout != chosen && log {
        tracing::warn!("inference cut to {layout} to stay within the task limit (TasksMax=, ulimit -u)");
    }
    let mut detector = cfg.detector_settings();
    detector.session.threads = layout.threads;
    Ok(PipelineSettings {
        camera: cfg.camera_name().to_string(),
        source: s.source_uri().map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?,
        source_options: SourceOptions {
            width: s.width,
            height: s.height,
            fps: s.fps,
            looping: s.looping,
            format: s.format,
            pan: s.pan,
            seconds_per_image: s.seconds_per_image,
            stall_timeout: Duration::from_secs_f32(s.stall_timeout.max(0.0)),
            max_backoff: Duration::from_secs_f32(s.reconnect_max_backoff.max(0.1)),
            // Set by the pipeline from the model's input size.
            pass_jpeg: None,
            rtsp_transport: s.rtsp_transport,
            ffmpeg_args: s.ffmpeg_args.clone(),
            ca_file: s.ca_file.clone(),
        },
        detector,
        workers: layout.workers,
        layout,
        every_nth: cfg.detect.every_nth.max(1),
        max_inference_fps: cfg.detect.max_inference_fps,
        jpeg_quality: cfg.stream.quality,
        overlay: cfg.stream.overlay,
        annotate: cfg.stream.annotate,
        frame_limit: None,
        tracking: cfg.tracking_settings(),
        snapshots: cfg.snapshot_settings(),
        webhooks: cfg.webhook_settings(),
        recent_events: cfg.events.recent,
        mqtt: cfg
            .mqtt_settings()
            .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?,
    })
}

pub(crate) fn http_settings(cfg: &Config) -> HttpSettings {
    let h = &cfg.http;
    let a = &h.auth;
    // Without auth, a loopback-only daemon is what DNS rebinding targets;
    // elsewhere the check runs once names are configured.
    let loopback = h.listen_addr().is_ok_and(|addr| addr.ip().is_loopback());
    let host_check = (a.mode == AuthMode::None && (loopback || !h.allowed_hosts.is_empty()))
        .then(|| h.allowed_hosts.clone());
    HttpSettings {
        max_clients: cfg.stream.max_clients,
        client_timeout: Duration::from_secs_f32(cfg.stream.client_timeout.max(0.1)),
        header_timeout: Duration::from_secs_f32(h.header_timeout.max(0.1)),
        idle_timeout: Duration::from_secs_f32(h.idle_timeout.max(0.1)),
        max_connections: h.max_connections,
        host_check,
        auth: match a.mode {
            AuthMode::None => Auth::None,
            AuthMode::Basic => Auth::Basic(
                a.users
                    .iter()
                    .map(|u| (u.name.clone(), u.password_hash.clone()))
                    .collect(),
            ),
            AuthMode::Bearer => Auth::Bearer(a.token.clone()),
        },
    }
}

/// The keys read only at start (the HTTP server's, and the font) that
/// differ in `new`.
fn http_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.stream.font != new.stream.font {
        changed.push("stream.font");
    }
    if old.http.listen != new.http.listen {
        changed.push("http.listen");
    }
    if old.http.auth != new.http.auth {
        changed.push("[http.auth]");
    }
    let (mut rest_old, mut rest_new) = (old.http.clone(), new.http.clone());
    rest_old.listen.clear();
    rest_new.listen.clear();
    rest_old.auth = Default::default();
    rest_new.auth = Default::default();
    if rest_old != rest_new {
        changed.push("[http]");
    }
    if old.stream.max_clients != new.stream.max_clients {
        changed.push("stream.max_clients");
    }
    if old.stream.client_timeout != new.stream.client_timeout {
        changed.push("stream.client_timeout");
    }
    changed
}

pub fn runtime_for(cfg: &Config) -> anyhow::Result<&'static Runtime> {
    Ok(Runtime::load(&RuntimeSearch {
        cli: None,
        config: cfg.runtime.clone(),
    })?)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.overrides.load()?;
    if let Some(l) = &args.listen {
        cfg.http.listen = l.clone();
    }
    let listen = cfg
        .http
        .listen
        .parse()
        .with_context(|| format!("http.listen: not an address: {}", cfg.http.listen))?;
    let rt = runtime_for(&cfg)?;
    crate::annotate::use_font(cfg.stream.font.as_deref()).context("stream.font")?;
    tracing::info!(
        "LiteRT {} ({})",
        rt.version().unwrap_or("of unknown release"),
        rt.path().display()
    );
    match &args.overrides.config {
        Some(path) => tracing::info!("config {}", path.display()),
        None => tracing::info!(
            "no --config: built-in defaults and the command line{}",
            if cfg.source.uri == crate::config::SourceConfig::default().uri {
                " (the source is the test pattern: pass --source, e.g. --source /dev/video0)"
            } else {
                ""
            }
        ),
    }
    tracing::info!("{}", cfg.summary());
    for cam in cfg.camera_configs() {
        if let Some(Err(e)) = cam.source.check_program() {
            // Like an unplugged camera: retried, so installing it later works.
            tracing::error!(
                "camera {}: source.uri: {e}; retrying until it can be started",
                cam.camera_name()
            );
        }
    }
    let settings = DaemonSettings {
        cameras: camera_settings(&cfg)?,
        http: http_settings(&cfg),
        listen,
    };
    let reload: Option<ReloadFn> = args.overrides.config.clone().map(|path| {
        let overrides = args.overrides.clone();
        let listen_override = args.listen.clone();
        let at_start = cfg.clone();
        let f: ReloadFn = Box::new(move || {
            tracing::info!("reloading {}", path.display());
            let mut new = overrides.load()?;
            if let Some(l) = &listen_override {
                new.http.listen = l.clone();
            }
            // The listener, auth and client limits are set up once: say so
            // rather than let a changed password look applied.
            let changed = http_changes(&at_start, &new);
            if !changed.is_empty() {
                tracing::warn!(
                    "SIGHUP: {} changed, which takes a restart (systemctl restart edgevision); \
                     the server keeps the settings it started with",
                    changed.join(", ")
                );
            }
            camera_settings(&new)
        });
        f
    });
    run_daemon(rt, settings, reload)?;
    Ok(ExitCode::SUCCESS)
}

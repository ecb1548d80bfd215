//! `edgevision bench`: the daemon's pipeline on a file source; prints one
//! JSON object. By default it runs headless for a fixed number of frames;
//! `--compare-clients` and `--seconds` also serve the stream (see `serve`).

mod clients;
mod rss;
mod serve;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::run::{http_settings, pipeline_settings, runtime_for, Overrides};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pipeline::{FrameTiming, Pipeline};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// Frames to process.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
    /// Pace the source at its configured fps instead of as fast as possible.
    #[arg(long)]
    pub paced: bool,
    /// Print JSON (the only format).
    #[arg(long)]
    pub json: bool,
    /// Serve the stream and alternate phases with no client and with N
    /// real HTTP clients; reports the frame-rate cost of serving them.
    #[arg(long, value_name = "N", conflicts_with = "seconds")]
    pub compare_clients: Option<usize>,
    /// Phases of each kind for --compare-clients.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Length of one --compare-clients phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub phase_seconds: f64,
    /// Serve the stream for this long (instead of --frames), sampling
    /// resident memory every second: a soak test.
    #[arg(long, value_name = "S")]
    pub seconds: Option<u64>,
    /// Stream clients connected during a --seconds run.
    #[arg(long, default_value_t = 0, requires = "seconds")]
    pub clients: usize,
}

/// User plus system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The CPU's model name and whether it has the int8 dot-product
/// instructions that make int8 models twice as fast as float ones.
pub(crate) fn cpu_info() -> serde_json::Value {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    json!({
        "model": field("model name").or_else(|| field("Model")).unwrap_or_default(),
        "cores": crate::pipeline::layout::usable_cores(),
        "avx512_vnni": has("avx512_vnni"),
        "avx_vnni": has("avx_vnni"),
        "asimddp": has("asimddp"),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mean(t: &[FrameTiming], f: impl Fn(&FrameTiming) -> Duration) -> f64 {
    if t.is_empty() {
        return 0.0;
    }
    t.iter().map(|x| ms(f(x))).sum::<f64>() / t.len() as f64
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.frames >= 1, "--frames must be 1 or more");
    let cfg = args.overrides.load()?;
    let rt = runtime_for(&cfg)?;
    crate::annotate::use_font(cfg.stream.font.as_deref()).map_err(|e| anyhow::anyhow!("stream.font: {e}"))?;
    let mut settings = pipeline_settings(&cfg)?;
    // A benchmark beside a running daemon must not take over its MQTT
    // client id, post to its webhooks or prune its pictures.
    settings.mqtt = None;
    settings.webhooks.clear();
    settings.snapshots = None;
    settings.tracking.snapshots = false;
    if !args.paced {
        settings.source_options.fps = 0.0;
    }
    settings.source_options.looping = true;
    settings.frame_limit = Some(args.frames);
    let mut layout = settings.layout;
    if args.compare_clients.is_some() || args.seconds.is_some() {
        settings.frame_limit = None;
        let served = serve::Served::start(
            rt,
            settings,
            http_settings(&cfg),
            args.clients.max(args.compare_clients.unwrap_or(0)),
        )?;
        let result = if let Some(n) = args.compare_clients {
            anyhow::ensure!(
                n >= 1 && args.rounds >= 1,
                "--compare-clients and --rounds must be 1 or more"
            );
            anyhow::ensure!(args.phase_seconds >= 0.5, "--phase-seconds must be at least 0.5");
            let phase = Duration::from_secs_f64(args.phase_seconds);
            serve::compare_clients(&served, n, args.rounds, phase)?
        } else {
            let s = args.seconds.unwrap_or(1);
            anyhow::ensure!(s >= 1, "--seconds must be 1 or more");
            serve::soak(&served, args.clients, s)?
        };
        let mut report = json!({
            "threads": layout.threads,
            "workers": layout.workers,
            "layout": layout,
            "cpu": cpu_info(),
            "source": crate::capture::http::redact(&cfg.source.uri),
            "model": cfg.model.path.display().to_string(),
        });
        if let (Some(r), Some(m)) = (report.as_object_mut(), result.as_object()) {
            r.extend(m.clone());
        }
        println!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let hub = Hub::new("default", &std::sync::Arc::new(Metrics::new()));
    // The model is loaded and the interpreters built before the clocks start.
    let pipeline = Pipeline::start(rt, settings, hub, true)?;
    layout = pipeline.layout();
    let start = Instant::now();
    let cpu_start = process_cpu();
    while !pipeline.finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let mut timings = pipeline.stop();
    anyhow::ensure!(
        !timings.is_empty(),
        "no frame was processed: is the source readable?"
    );
    let frames = timings.len();
    let mut lat: Vec<Duration> = timings.iter().map(|t| t.latency).collect();
    lat.sort_unstable();
    let pct = |q: f64| ms(lat[((lat.len() - 1) as f64 * q).round() as usize]);
    let inferred: Vec<FrameTiming> = timings.iter().copied().filter(|t| t.inferred).collect();
    let report = json!({
        "frames": frames,
        "seconds": seconds,
        "fps": frames as f64 / seconds,
        "cpu_ms_per_frame": ms(cpu) / frames as f64,
        "annotate": cfg.stream.annotate.as_str(),
        "threads": layout.threads,
        "workers": layout.workers,
        "layout": layout,
        "cpu": cpu_info(),
        "source": crate::capture::http::redact(&cfg.source.uri),
        "model": cfg.model.path.display().to_string(),
        "stage_ms": {
            "decode": mean(&timings, |t| t.decode),
            "preprocess": mean(&inferred, |t| t.preprocess),
            "infer": mean(&inferred, |t| t.infer),
            "annotate": mean(&timings, |t| t.annotate),
            "encode": mean(&timings, |t| t.encode),
        },
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
    });
    timings.clear();
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

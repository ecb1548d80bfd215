//! `bench` modes that serve the stream: the daemon's pipeline and HTTP
//! server on a loopback port, read by real HTTP clients in this process.
//!
//! * `--compare-clients N`: alternates phases with no client and with N
//!   clients on one running pipeline, so the cost of serving is a ratio
//!   measured in one run.
//! * `--seconds S`: a soak run that samples resident memory every second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use super::clients::Clients;
use super::rss::resident_bytes;
use crate::http::HttpSettings;
use crate::hub::Hub;
use crate::infer::Runtime;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineSettings};

/// A running pipeline with its HTTP server.
pub struct Served {
    pub pipeline: Pipeline,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tokio: Option<tokio::runtime::Runtime>,
}

impl Served {
    pub fn start(
        rt: &'static Runtime,
        settings: PipelineSettings,
        mut http: HttpSettings,
        clients: usize,
    ) -> anyhow::Result<Served> {
        let hub = Hub::new("default", &Arc::new(Metrics::new()));
        let tokio = crate::service::http_runtime()?;
        let listener = tokio
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("cannot listen on a loopback port")?;
        let addr = listener.local_addr()?;
        http.max_clients = http.max_clients.max(clients);
        let pipeline = Pipeline::start(rt, settings, hub.clone(), false)?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio.spawn(crate::http::serve(
            listener,
            crate::hub::Cameras::single(hub),
            http,
            async move {
                let _ = stop_rx.await;
            },
        ));
        Ok(Served {
            pipeline,
            addr,
            stop: Some(stop),
            tokio: Some(tokio),
        })
    }

    /// Frames processed over `d`, as frames per second.
    fn fps_over(&self, d: Duration) -> f64 {
        let (n0, t0) = (self.pipeline.processed(), Instant::now());
        std::thread::sleep(d);
        (self.pipeline.processed() - n0) as f64 / t0.elapsed().as_secs_f64()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.tokio.take() {
            t.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

const FIRST_FRAME: Duration = Duration::from_secs(30);

/// Alternates `rounds` phases without and with `n` clients.
pub fn compare_clients(served: &Served, n: usize, rounds: usize, phase: Duration) -> anyhow::Result<Value> {
    // Warm-up: the first frames pay for page faults and caches.
    served.fps_over(phase / 2);
    let (mut without, mut with, mut per_client) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(served.fps_over(phase));
        let clients = Clients::connect(served.addr, n)?;
        clients.wait_for_first_frames(FIRST_FRAME)?;
        let before = clients.frames();
        let fps = served.fps_over(phase);
        let got: Vec<u64> = clients.frames().iter().zip(&before).map(|(a, b)| a - b).collect();
        clients.close()?;
        with.push(fps);
        per_client.push(got.iter().copied().min().unwrap_or(0) as f64 / phase.as_secs_f64());
    }
    let (a, b) = (median(&without), median(&with));
    // Each phase with clients against the phase just before it: on a
    // shared machine the load drifts, and neighbours see the same drift.
    let paired: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    Ok(json!({
        "clients": n,
        "rounds": rounds,
        "phase_seconds": phase.as_secs_f64(),
        "fps_without_clients": without,
        "fps_with_clients": with,
        "slowest_client_fps": per_client,
        "median_fps_without": a,
        "median_fps_with": b,
        "paired_ratios": paired,
        "cost_percent": (1.0 - median(&paired)) * 100.0,
    }))
}

/// Runs for `seconds` with `n` clients connected, sampling resident memory.
pub fn soak(served: &Served, n: usize, seconds: u64) -> anyhow::Result<Value> {
    let rss_mb = || {
        resident_bytes()
            .map(|b| b as f64 / (1024.0 * 1024.0))
            .unwrap_or(0.0)
    };
    let clients = if n > 0 {
        let c = Clients::connect(served.addr, n)?;
        c.wait_for_first_frames(FIRST_FRAME)?;
        Some(c)
    } else {
        None
    };
    let start = Instant::now();
    let n0 = served.pipeline.processed();
    let mut samples = Vec::with_capacity(seconds as usize + 1);
    let mut minute_marks = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let r = rss_mb();
        samples.push(r);
        if samples.len() % 60 == 0 {
            minute_marks.push(r);
        }
        anyhow::ensure!(
            !served.pipeline.finished(),
            "the pipeline stopped during the run (see the log)"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let frames = served.pipeline.processed() - n0;
    let client_frames = match clients {
        Some(c) => c.close()?,
        None => Vec::new(),
    };
    // The first tenth of the run (at least 5 s) is warm-up: model, buffers
    // and the allocator's arenas settle there.
    let warm = (samples.len() / 10).max(5).min(samples.len().saturating_sub(1));
    let max = samples.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "seconds": secs,
        "frames": frames,
        "fps": frames as f64 / secs,
        "clients": n,
        "client_frames_min": client_frames.iter().min(),
        "rss_mb": {
            "after_warmup": samples.get(warm),
            "max": max,
            "end": samples.last(),
            "growth_after_warmup": samples.last().zip(samples.get(warm)).map(|(e, w)| e - w),
            "per_minute": minute_marks,
        },
    }))
}

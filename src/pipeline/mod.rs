//! Threads and the slots that connect them:
//! source -> infer -> annotate -> encode -> broadcast.
//!
//! One capture thread reads frames into a single "latest frame" slot; a
//! newer frame replaces an unconsumed one (counted as dropped), so latency
//! never builds up. One or more workers each own an interpreter; a worker
//! takes the newest frame, runs (or skips) inference, draws, encodes the
//! JPEG once and publishes it to the hub. Frame buffers are recycled.

mod capture;
pub(crate) mod encode;
mod fps;
mod health;
mod interpreter;
pub mod layout;
mod no_signal;
pub mod pool;
mod slot;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::{Frame, SourceOptions, SourceUri};
use crate::config::Annotate;
use crate::hub::Hub;
use crate::infer::{Detection, DetectorSettings, FilterSettings, InferError, Model, Runtime};
pub use pool::InferencePool;
use pool::{model_mtime, CameraId};

pub use health::FAILING_AFTER;
pub use slot::Captured;
use slot::Slot;

/// Everything the pipeline needs besides the hub.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// The camera's name (metrics, events, MQTT topics, URLs).
    pub camera: String,
    pub source: SourceUri,
    pub source_options: SourceOptions,
    pub detector: DetectorSettings,
    /// Interpreters working on alternate frames (resolved: 1 or more).
    pub workers: usize,
    /// How `workers` and the detector's threads were chosen.
    pub layout: layout::Layout,
    /// Run inference on every Nth frame; others reuse the latest detections.
    pub every_nth: u32,
    /// At most this many inferences per second (0: no cap).
    pub max_inference_fps: f32,
    pub jpeg_quality: u8,
    /// FPS and latency text on the frames.
    pub overlay: bool,
    /// Who draws boxes and labels.
    pub annotate: Annotate,
    /// Stop after this many processed frames (benchmarks).
    pub frame_limit: Option<u64>,
    /// Objects, zones and lines.
    pub tracking: crate::track::TrackingSettings,
    /// Where object pictures are written, if anywhere.
    pub snapshots: Option<crate::track::snapshots::SnapshotSettings>,
    pub webhooks: Vec<crate::track::webhook::WebhookSettings>,
    /// Ended events `/api/events/recent` keeps.
    pub recent_events: usize,
    /// The MQTT broker and this camera's topics, if any: the service hands
    /// every camera's to the daemon's one client ([`crate::mqtt::configure`]);
    /// the pipeline itself publishes nothing there.
    pub mqtt: Option<crate::mqtt::MqttSettings>,
}

/// Per-frame timings kept for `bench`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameTiming {
    pub decode: Duration,
    pub preprocess: Duration,
    pub infer: Duration,
    pub annotate: Duration,
    pub encode: Duration,
    /// From the frame being read to its JPEG being ready.
    pub latency: Duration,
    pub inferred: bool,
}

/// State shared by the pipeline's threads.
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub slot: Slot,
    /// Set to stop; the capture thread's sleeps watch it too
    /// ([`crate::capture::set_cancel`]).
    pub stop: Arc<AtomicBool>,
    /// Woken on stop, out of a pacing or back-off sleep.
    pub capture_thread: std::sync::OnceLock<std::thread::Thread>,
    /// Latest detections and their object ids, drawn on frames that skip
    /// inference.
    pub latest: Mutex<(u64, Vec<Detection>, Vec<Option<u64>>)>,
    /// The tracker, fed by whichever worker has the newest inference.
    pub tracking: Mutex<Tracking>,
    pub last_published: AtomicU64,
    /// Frames processed per second, whichever worker processed them.
    pub fps: Mutex<fps::FpsMeter>,
    pub processed: AtomicU64,
    pub frame_limit: Option<u64>,
    pub timings: Option<Mutex<Vec<FrameTiming>>>,
    pub inference_gate: Mutex<Instant>,
    /// Settings changed while running (SIGHUP); workers pick them up when
    /// `live_generation` moves.
    pub live_update: Mutex<Option<LiveSettings>>,
    pub live_generation: AtomicU64,
    pub health: health::InferenceHealth,
    /// Why the source can never work, once it has said so: the pipeline
    /// has ended and the daemon exits with an error.
    pub fatal: Mutex<Option<String>>,
}

impl Shared {
    /// Fresh state for a pipeline running `settings`.
    pub(crate) fn new(hub: Arc<Hub>, settings: &PipelineSettings, keep_timings: bool) -> Shared {
        let ids = hub.events.id_counter();
        Shared {
            hub,
            slot: Slot::new(),
            stop: Arc::new(AtomicBool::new(false)),
            capture_thread: std::sync::OnceLock::new(),
            latest: Mutex::new((0, Vec::new(), Vec::new())),
            tracking: Mutex::new(Tracking {
                tracker: crate::track::ObjectTracker::new(settings.tracking.clone(), ids),
                last_seq: 0,
                out: Default::default(),
            }),
            last_published: AtomicU64::new(0),
            fps: Mutex::new(fps::FpsMeter::new()),
            processed: AtomicU64::new(0),
            frame_limit: settings.frame_limit,
            timings: keep_timings.then(|| Mutex::new(Vec::new())),
            inference_gate: Mutex::new(Instant::now() - Duration::from_secs(3600)),
            live_update: Mutex::new(None),
            live_generation: AtomicU64::new(0),
            health: health::InferenceHealth::default(),
            fatal: Mutex::new(None),
        }
    }

    /// Stops every thread soon, whatever the frame rate: the slot closes
    /// and the capture thread wakes from any sleep.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.slot.close();
        if let Some(t) = self.capture_thread.get() {
            t.unpark();
        }
    }
}

/// The tracker and the newest frame it has seen: workers finishing out of
/// order never feed it an older frame.
pub(crate) struct Tracking {
    pub tracker: crate::track::ObjectTracker,
    pub last_seq: u64,
    pub out: crate::track::TrackOutput,
}

/// What workers can change between two frames: the detection filter and the
/// stream settings.
#[derive(Debug, Clone)]
pub(crate) struct LiveSettings {
    pub filter: FilterSettings,
    pub worker: worker::WorkerSettings,
}

/// One camera's threads: a capture thread filling its slot and workers
/// that take its newest frame, borrow an interpreter from the shared
/// [`InferencePool`] when the frame is to be inferred, draw, encode once
/// and publish to the camera's [`Hub`].
pub struct Pipeline {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    pool: Arc<InferencePool>,
    camera: CameraId,
    settings: PipelineSettings,
}

/// Warns about filter names no class has (typos filter nothing).
fn warn_unknown_labels(labels: &crate::infer::Labels, filter: &FilterSettings) {
    let unknown = labels.unknown_in(filter);
    if !unknown.is_empty() {
        tracing::warn!(
            "detect: no class of the model's labels is called {}: check the spelling in allow, deny and label_thresholds",
            unknown.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
        );
    }
}

/// Why a pipeline did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Infer(#[from] InferError),
    /// Out of threads (`ulimit -u`, systemd's `TasksMax`).
    #[error("cannot start the {thread} thread: {cause} (out of threads? see TasksMax= or ulimit -u)")]
    Spawn { thread: String, cause: std::io::Error },
}

/// Inferences per second `settings` asks for (0: unknown), for the
/// layout's start-up timing.
pub fn inference_rate(settings: &PipelineSettings) -> f64 {
    layout::inference_rate(
        settings.source_options.fps,
        settings.every_nth,
        settings.max_inference_fps,
    )
}

/// The pool for cameras running `cameras` (the first one's model settings;
/// every camera's inference rate, added up).
pub fn load_pool(rt: &'static Runtime, cameras: &[PipelineSettings]) -> Result<InferencePool, InferError> {
    let first = cameras.first().expect("at least one camera");
    let rate = total_rate(cameras);
    InferencePool::load(rt, &first.detector, first.layout, rate)
}

/// Why `pool`'s layout may no longer fit `cameras`, if it may not: one
/// interpreter on all cores was kept at start because it kept up with the
/// rate then, and the cameras now ask for more. Changing the layout would
/// restart every camera, so a reload only says so.
pub fn layout_outgrown(pool: &InferencePool, cameras: &[PipelineSettings]) -> Option<String> {
    outgrown(pool.rule(), pool.layout(), pool.rate(), total_rate(cameras))
}

/// [`layout_outgrown`] on plain values, so it is tested without a model:
/// the layout asked for (`rule`) and the one used, the inference rate the
/// layout was chosen for, and the rate the cameras ask for now (0: as many
/// as they can get).
fn outgrown(rule: layout::Layout, used: layout::Layout, chosen_for: f64, rate: f64) -> Option<String> {
    let narrowed = rule.both_auto && used.workers < rule.workers;
    (narrowed && (rate == 0.0 || rate > chosen_for * 1.05)).then(|| {
        format!(
            "the inference layout ({used}) was chosen for {chosen_for:.1} inferences/s and the cameras now ask for {}; \
             restart the daemon (systemctl restart edgevision) to choose again",
            if rate == 0.0 {
                "as many as they can get".to_string()
            } else {
                format!("{rate:.1}/s")
            }
        )
    })
}

/// The inference rate of all `cameras` together; 0 if any is unknown.
fn total_rate(cameras: &[PipelineSettings]) -> f64 {
    let rates: Vec<f64> = cameras.iter().map(inference_rate).collect();
    if rates.iter().any(|r| *r <= 0.0) {
        0.0
    } else {
        rates.iter().sum()
    }
}

/// Logs the pool's layout and sets the daemon-wide inference series.
pub fn announce(pool: &InferencePool, metrics: &crate::metrics::Metrics) {
    let layout = pool.layout();
    let rt = pool.model().runtime();
    metrics.set_build_info(&rt.path().display().to_string(), rt.version());
    metrics.inference_workers.set(pool.size() as i64);
    metrics.inference_threads.set(layout.threads as i64);
    tracing::info!("inference: {layout}{}", pool.why());
}

impl Pipeline {
    /// One camera with a pool of its own: loads the model, builds the
    /// interpreters and starts the threads. Model and label errors are
    /// returned here, before anything runs.
    pub fn start(
        rt: &'static Runtime,
        settings: PipelineSettings,
        hub: Arc<Hub>,
        keep_timings: bool,
    ) -> Result<Pipeline, StartError> {
        let pool = Arc::new(load_pool(rt, std::slice::from_ref(&settings))?);
        announce(&pool, &hub.metrics.all);
        Pipeline::launch(settings, pool, hub, keep_timings)
    }

    /// Starts one camera's threads on `pool`.
    pub fn launch(
        settings: PipelineSettings,
        pool: Arc<InferencePool>,
        hub: Arc<Hub>,
        keep_timings: bool,
    ) -> Result<Pipeline, StartError> {
        settings.detector.filter.validate().map_err(InferError::from)?;
        let workers = pool.size();
        hub.events.configure(
            settings.snapshots.clone(),
            &settings.webhooks,
            settings.recent_events,
            &hub.metrics,
        );
        hub.events
            .set_geometry(&settings.tracking.zones, &settings.tracking.lines);
        hub.set_source(&settings.source.to_string());
        let shared = Arc::new(Shared::new(hub, &settings, keep_timings));
        // A new pipeline (new model, maybe) starts healthy, and ready once
        // its model has produced a result.
        shared.hub.set_inference_failing(false);
        shared.hub.set_inferred(false);
        let mut source_opts = settings.source_options.clone();
        if settings.annotate == Annotate::Client {
            // JPEG frames go to clients as they came; inference needs only
            // enough pixels for the model's input.
            source_opts.pass_jpeg = Some(pool.input_size());
        }
        warn_unknown_labels(pool.labels(), &settings.detector.filter);
        // Threads already started are stopped and joined if a later one
        // cannot start: the pipeline is dropped.
        let mut pipeline = Pipeline {
            shared: shared.clone(),
            threads: Vec::new(),
            pool: pool.clone(),
            camera: pool::camera_id(),
            settings: settings.clone(),
        };
        let source = crate::capture::open_source(&settings.source, &source_opts);
        let cap_shared = shared.clone();
        let opts = settings.source_options.clone();
        // Unpaced file sources are read on demand; cameras (network ones
        // too) and paced sources keep their own clock and replace
        // unprocessed frames.
        let pull = opts.fps == 0.0 && !settings.source.is_live();
        let name = &settings.camera;
        // Log lines name the camera when there are (or may be) several.
        let span = || (name != "default").then(|| tracing::info_span!("camera", name = %name));
        let cap_span = span();
        pipeline.spawn(format!("capture-{name}"), move || {
            let _span = cap_span.as_ref().map(|s| s.enter());
            crate::capture::set_cancel(cap_shared.stop.clone());
            capture::capture_loop(source, opts, pull, workers > 1, cap_shared)
        })?;
        if let Some(t) = pipeline.threads.first() {
            let _ = shared.capture_thread.set(t.thread().clone());
        }
        let worker_settings = worker::WorkerSettings::from(&settings);
        for i in 0..workers {
            let sh = shared.clone();
            let ws = worker_settings.clone();
            let (p, cam) = (pool.clone(), pipeline.camera);
            let filter = settings.detector.filter.clone();
            let worker_span = span();
            pipeline.spawn(format!("worker-{name}-{i}"), move || {
                let _span = worker_span.as_ref().map(|s| s.enter());
                worker::run(p, cam, filter, ws, sh)
            })?;
        }
        Ok(pipeline)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|cause| StartError::Spawn { thread: name, cause })?;
        self.threads.push(handle);
        Ok(())
    }

    /// The inference layout in use (after the start-up timing, if any).
    pub fn layout(&self) -> layout::Layout {
        self.pool.layout()
    }

    pub fn model(&self) -> &Arc<Model> {
        self.pool.model()
    }

    /// The interpreters this camera shares with the others.
    pub fn pool(&self) -> &Arc<InferencePool> {
        &self.pool
    }

    /// The camera's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// Frames processed so far.
    pub fn processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// True once every thread has ended (frame limit reached, or a fatal
    /// source error).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Why the source can never work, when it has ended the pipeline so.
    pub fn fatal(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The settings the pipeline runs with (live changes included).
    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// Why `new` cannot be applied to the running pipeline, if it cannot: a
    /// different source or source settings need this camera started again
    /// ([`pool_restart_reason`] says when every camera must).
    pub fn restart_reason(&self, new: &PipelineSettings) -> Option<&'static str> {
        restart_reason(&self.settings, new)
    }

    /// Applies thresholds, label filters and stream settings (JPEG quality,
    /// overlay, boxes, inference rate) to every worker from its next frame,
    /// without reloading the model or dropping clients. Parts that need a
    /// restart ([`Pipeline::restart_reason`]) are ignored.
    pub fn update_live(&mut self, new: &PipelineSettings) -> Result<(), String> {
        new.detector.filter.validate().map_err(|e| e.to_string())?;
        if new.detector.filter != self.settings.detector.filter {
            warn_unknown_labels(self.pool.labels(), &new.detector.filter);
        }
        let live = LiveSettings {
            filter: new.detector.filter.clone(),
            worker: worker::WorkerSettings::from(new),
        };
        *self.shared.live_update.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
        if new.tracking != self.settings.tracking {
            let mut t = self.shared.tracking.lock().unwrap_or_else(|e| e.into_inner());
            t.tracker.set_settings(new.tracking.clone());
        }
        let hub = &self.shared.hub;
        hub.events.configure(
            new.snapshots.clone(),
            &new.webhooks,
            new.recent_events,
            &hub.metrics,
        );
        hub.events.set_geometry(&new.tracking.zones, &new.tracking.lines);
        self.shared.live_generation.fetch_add(1, Ordering::SeqCst);
        let s = &mut self.settings;
        s.detector.filter = new.detector.filter.clone();
        s.every_nth = new.every_nth;
        s.max_inference_fps = new.max_inference_fps;
        s.jpeg_quality = new.jpeg_quality;
        s.overlay = new.overlay;
        s.annotate = new.annotate;
        s.tracking = new.tracking.clone();
        s.snapshots = new.snapshots.clone();
        s.webhooks = new.webhooks.clone();
        s.recent_events = new.recent_events;
        s.mqtt = new.mqtt.clone();
        Ok(())
    }

    /// Signals every thread to stop and waits for them.
    pub fn stop(mut self) -> Vec<FrameTiming> {
        self.shutdown();
        self.shared
            .timings
            .as_ref()
            .map(|t| std::mem::take(&mut *t.lock().unwrap()))
            .unwrap_or_default()
    }

    fn shutdown(&mut self) {
        self.shared.request_stop();
        // Workers waiting for an interpreter see the stop now.
        self.pool.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.pool.forget(self.camera);
        // The objects of this pipeline end with it.
        let mut guard = self.shared.tracking.lock().unwrap_or_else(|e| e.into_inner());
        let t = &mut *guard;
        t.tracker.finish(&mut t.out);
        let hub = &self.shared.hub;
        hub.events.publish(&t.out.events, &hub.metrics);
        hub.events.set_objects(Vec::new());
        worker::share_counts(hub, &t.tracker);
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// [`Pipeline::restart_reason`] for a camera running `old`.
fn restart_reason(old: &PipelineSettings, new: &PipelineSettings) -> Option<&'static str> {
    if old.source != new.source {
        Some("the source changed")
    } else if old.source_options != new.source_options {
        Some("the source settings changed")
    } else if (old.annotate == Annotate::Client) != (new.annotate == Annotate::Client) {
        Some("stream.annotate changed to or from \"client\"")
    } else {
        None
    }
}

/// Why `pool` cannot serve cameras running `new`, if it cannot: another
/// model (or model file), model options or interpreter count need a new
/// pool, and every camera started again on it.
pub fn pool_restart_reason(pool: &InferencePool, new: &PipelineSettings) -> Option<&'static str> {
    model_change(pool.settings(), pool.rule().workers, pool.model_mtime(), new)
}

/// [`pool_restart_reason`] for a pool built with `old` (default filter) and
/// `workers` interpreters asked for, whose model file had modification time
/// `old_mtime` when it was loaded.
fn model_change(
    old: &DetectorSettings,
    workers: usize,
    old_mtime: Option<std::time::SystemTime>,
    new: &PipelineSettings,
) -> Option<&'static str> {
    let mut b = new.detector.clone();
    b.filter = FilterSettings::default();
    if *old != b {
        Some("the model or its settings changed")
    } else if workers != new.layout.workers {
        Some("the number of workers changed")
    } else if model_mtime(&new.detector.model) != old_mtime {
        Some("the model file was replaced")
    } else {
        None
    }
}

/// A frame buffer from the recycle pool, or a new one.
pub(crate) fn spare_frame(shared: &Shared) -> Frame {
    shared.slot.take_spare().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn settings(model: &std::path::Path) -> PipelineSettings {
        PipelineSettings {
            camera: "default".into(),
            source: SourceUri::Test,
            source_options: SourceOptions::default(),
            detector: DetectorSettings::new(model),
            workers: 1,
            layout: layout::choose(1, 1, 1),
            every_nth: 1,
            max_inference_fps: 0.0,
            jpeg_quality: 80,
            overlay: true,
            annotate: Annotate::Burn,
            frame_limit: None,
            tracking: Default::default(),
            snapshots: None,
            webhooks: Vec::new(),
            recent_events: 100,
            mqtt: None,
        }
    }

    #[test]
    fn filter_and_stream_changes_apply_in_place_others_restart() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.tflite");
        std::fs::write(&model, b"model").unwrap();
        let old = settings(&model);
        let mtime = model_mtime(&model);
        let mut pooled = old.detector.clone();
        pooled.filter = FilterSettings::default();
        let workers = old.layout.workers;
        let model_change = |new: &PipelineSettings| model_change(&pooled, workers, mtime, new);

        let mut live = old.clone();
        live.detector.filter.threshold = 0.9;
        live.detector.filter.deny = vec!["car".into()];
        live.jpeg_quality = 30;
        live.overlay = false;
        live.every_nth = 3;
        assert_eq!(restart_reason(&old, &live), None);
        assert_eq!(model_change(&live), None);

        let mut s = old.clone();
        s.source = SourceUri::Images(dir.path().into());
        assert_eq!(restart_reason(&old, &s), Some("the source changed"));
        assert_eq!(model_change(&s), None, "one camera restarts, not the pool");
        let mut s = old.clone();
        s.source_options.width = 320;
        assert_eq!(restart_reason(&old, &s), Some("the source settings changed"));
        let mut s = old.clone();
        s.annotate = Annotate::Client;
        assert_eq!(
            restart_reason(&old, &s),
            Some("stream.annotate changed to or from \"client\"")
        );
        let mut s = old.clone();
        s.detector.labels = Some(dir.path().join("labels.txt"));
        assert_eq!(model_change(&s), Some("the model or its settings changed"));
        let mut s = old.clone();
        s.layout.workers = 2;
        assert_eq!(model_change(&s), Some("the number of workers changed"));

        // Same path, new file: reloaded too.
        let earlier = mtime.map(|t| t - Duration::from_secs(60));
        assert_eq!(
            super::model_change(&pooled, workers, earlier, &old),
            Some("the model file was replaced")
        );
    }

    /// Started on a 2-core machine with both values automatic, the pool
    /// kept one wide interpreter because it kept up with 10 inferences/s.
    #[test]
    fn a_reload_warns_when_the_cameras_outgrow_a_narrowed_layout() {
        let (rule, wide) = (layout::choose(2, 0, 0), layout::wide(2));
        assert_eq!((rule.workers, wide.workers), (2, 1));

        let warning = outgrown(rule, wide, 10.0, 20.0).expect("a warning at twice the rate");
        assert!(warning.contains(&format!("({wide})")), "{warning}");
        assert!(warning.contains("chosen for 10.0 inferences/s"), "{warning}");
        assert!(warning.contains("now ask for 20.0/s"), "{warning}");
        assert!(warning.contains("restart the daemon"), "{warning}");
        // An unpaced camera asks for all it can get.
        let warning = outgrown(rule, wide, 10.0, 0.0).expect("a warning when unpaced");
        assert!(warning.contains("as many as they can get"), "{warning}");

        // As fast as before, or within 5% of it: no warning.
        assert_eq!(outgrown(rule, wide, 10.0, 10.0), None);
        assert_eq!(outgrown(rule, wide, 10.0, 10.4), None);
        assert_eq!(outgrown(rule, wide, 10.0, 5.0), None);
        // The layout asked for is the one used: nothing to choose again.
        assert_eq!(outgrown(rule, rule, 10.0, 20.0), None);
        // Set by hand: the start-up timing never narrowed it.
        let manual = layout::choose(2, 2, 1);
        assert_eq!(outgrown(manual, layout::choose(2, 1, 2), 10.0, 20.0), None);
    }

    /// What [`layout_outgrown`] compares: the cameras' rates added up, 0
    /// once any camera is unpaced.
    #[test]
    fn the_cameras_rates_add_up_unless_one_is_unpaced() {
        let mut a = settings(std::path::Path::new("m.tflite"));
        a.source_options.fps = 10.0;
        let mut b = a.clone();
        b.source_options.fps = 6.0;
        b.every_nth = 2;
        assert_eq!(total_rate(&[a.clone(), b.clone()]), 13.0);
        b.source_options.fps = 0.0;
        assert_eq!(total_rate(&[a, b]), 0.0);
    }
}

//! Threads and the slots that connect them:
//! source -> infer -> annotate -> encode -> broadcast.
//!
//! One capture thread reads frames into a single "latest frame" slot; a
//! newer frame replaces an unconsumed one (counted as dropped), so latency
//! never builds up. One or more workers each own an interpreter; a worker
//! takes the newest frame, runs (or skips) inference, draws, encodes the
//! JPEG once and publishes it to the hub. Frame buffers are recycled.

pub(crate) mod encode;
mod health;
pub mod layout;
mod slot;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::capture::{self, Frame, SourceOptions, SourceUri};
use crate::config::Annotate;
use crate::hub::Hub;
use crate::infer::{Detection, Detector, DetectorSettings, FilterSettings, InferError, Model, Runtime};

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
    /// The MQTT broker, if any.
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
    /// ([`capture::set_cancel`]).
    pub stop: Arc<AtomicBool>,
    /// Woken on stop, out of a pacing or back-off sleep.
    pub capture_thread: std::sync::OnceLock<std::thread::Thread>,
    /// Latest detections and their object ids, drawn on frames that skip
    /// inference.
    pub latest: Mutex<(u64, Vec<Detection>, Vec<Option<u64>>)>,
    /// The tracker, fed by whichever worker has the newest inference.
    pub tracking: Mutex<Tracking>,
    pub last_published: AtomicU64,
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

pub struct Pipeline {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    model: Arc<Model>,
    settings: PipelineSettings,
    /// When the model file was last modified as it was loaded, so a reload
    /// notices a replaced file at the same path.
    model_mtime: Option<SystemTime>,
    layout: layout::Layout,
    /// The model's labels, to check filters against.
    labels: crate::infer::Labels,
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

/// The interpreters for `settings.layout`. With a fully automatic layout and
/// a source with a frame rate, one interpreter on all cores is timed first
/// and kept when it keeps up (lowest latency); see [`layout`]. Returns the
/// detectors, the layout used and a note for the log.
fn build_detectors(
    model: &Arc<Model>,
    settings: &PipelineSettings,
) -> Result<(Vec<Detector>, layout::Layout, String), InferError> {
    let rule = settings.layout;
    let rate = layout::inference_rate(
        settings.source_options.fps,
        settings.every_nth,
        settings.max_inference_fps,
    );
    let mut why = String::new();
    if rule.both_auto && rule.workers > 1 && rate > 0.0 {
        let wide = layout::wide(rule.cores);
        let mut ds = settings.detector.clone();
        ds.session.threads = wide.threads;
        let mut det = Detector::with_model(model.clone(), &ds)?;
        let ms = time_inference(&mut det, layout::budget_ms(rate))?;
        if layout::keeps_up(ms, rate) {
            let why = format!(" ({ms:.1} ms per inference keeps up with {rate:.1} inferences/s)");
            return Ok((vec![det], wide, why));
        }
        why = format!(
            " (one interpreter on all cores, {ms:.1} ms per inference, cannot keep up with {rate:.1}/s)"
        );
    }
    let mut detectors = Vec::with_capacity(rule.workers.max(1));
    for _ in 0..rule.workers.max(1) {
        detectors.push(Detector::with_model(model.clone(), &settings.detector)?);
    }
    Ok((detectors, rule, why))
}

/// Median time of three inferences (preprocess included) on a grey frame
/// of the model's input size, after an untimed one. A first run already
/// three times over `budget_ms` ends the timing early: a slow machine
/// does not wait for more proof.
fn time_inference(det: &mut Detector, budget_ms: f64) -> Result<f64, InferError> {
    let (w, h) = det.input_size();
    let rgb = vec![128u8; w as usize * h as usize * 3];
    let mut out = Vec::new();
    let ms = |t: crate::infer::Timings| (t.preprocess + t.infer).as_secs_f64() * 1e3;
    let first = ms(det.detect(&rgb, w, h, &mut out)?);
    if first > 3.0 * budget_ms {
        return Ok(first);
    }
    let mut runs = [0.0; 3];
    for r in &mut runs {
        *r = ms(det.detect(&rgb, w, h, &mut out)?);
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
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

/// A loaded model and its interpreters, not yet running: made while an old
/// pipeline still runs, so a reload that cannot load its model changes
/// nothing.
pub struct Prepared {
    settings: PipelineSettings,
    model: Arc<Model>,
    model_mtime: Option<SystemTime>,
    detectors: Vec<Detector>,
    layout: layout::Layout,
    why: String,
}

impl Prepared {
    /// Loads the model file and builds the interpreters for `settings`.
    pub fn load(rt: &'static Runtime, settings: PipelineSettings) -> Result<Prepared, InferError> {
        let model_mtime = model_mtime(&settings.detector.model);
        let model = Model::load(rt, &settings.detector.model)?;
        Prepared::with_model(model, model_mtime, settings)
    }

    /// Builds the interpreters from a model already in memory (a running
    /// pipeline's, whose file may have changed since).
    pub fn with_model(
        model: Arc<Model>,
        model_mtime: Option<SystemTime>,
        settings: PipelineSettings,
    ) -> Result<Prepared, InferError> {
        let (detectors, layout, why) = build_detectors(&model, &settings)?;
        Ok(Prepared {
            settings,
            model,
            model_mtime,
            detectors,
            layout,
            why,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
}

impl Pipeline {
    /// Loads the model, builds one detector per worker and starts the
    /// threads. Model and label errors are returned here, before anything runs.
    pub fn start(
        rt: &'static Runtime,
        settings: PipelineSettings,
        hub: Arc<Hub>,
        keep_timings: bool,
    ) -> Result<Pipeline, StartError> {
        Pipeline::launch(Prepared::load(rt, settings)?, hub, keep_timings)
    }

    /// Starts the threads of a prepared pipeline.
    pub fn launch(prepared: Prepared, hub: Arc<Hub>, keep_timings: bool) -> Result<Pipeline, StartError> {
        let Prepared {
            settings,
            model,
            model_mtime,
            detectors,
            layout,
            why,
        } = prepared;
        let workers = detectors.len();
        hub.metrics.all.set_build_info(
            &model.runtime().path().display().to_string(),
            model.runtime().version(),
        );
        hub.metrics.all.inference_workers.set(workers as i64);
        hub.metrics.all.inference_threads.set(layout.threads as i64);
        tracing::info!("inference: {layout}{why}");
        hub.events.configure(
            settings.snapshots.clone(),
            &settings.webhooks,
            settings.recent_events,
            &hub.metrics,
        );
        hub.events
            .set_geometry(&settings.tracking.zones, &settings.tracking.lines);
        crate::mqtt::configure(&hub, settings.mqtt.clone());
        let shared = Arc::new(Shared::new(hub, &settings, keep_timings));
        // A new pipeline (new model, maybe) starts healthy, and ready once
        // its model has produced a result.
        shared.hub.set_inference_failing(false);
        shared.hub.set_inferred(false);
        let mut source_opts = settings.source_options.clone();
        if settings.annotate == Annotate::Client {
            // JPEG frames go to clients as they came; inference needs only
            // enough pixels for the model's input.
            source_opts.pass_jpeg = detectors.first().map(|d| d.input_size());
        }
        // Threads already started are stopped and joined if a later one
        // cannot start: the pipeline is dropped.
        let labels = detectors.first().map(|d| d.labels().clone()).unwrap_or_default();
        warn_unknown_labels(&labels, &settings.detector.filter);
        let mut pipeline = Pipeline {
            shared: shared.clone(),
            threads: Vec::new(),
            labels,
            model,
            settings: settings.clone(),
            layout,
            model_mtime,
        };
        let source = capture::open_source(&settings.source, &source_opts);
        let cap_shared = shared.clone();
        let opts = settings.source_options.clone();
        // Unpaced file sources are read on demand; cameras (network ones
        // too) and paced sources keep their own clock and replace
        // unprocessed frames.
        let pull = opts.fps == 0.0 && !settings.source.is_live();
        pipeline.spawn("capture".into(), move || {
            capture::set_cancel(cap_shared.stop.clone());
            slot::capture_loop(source, opts, pull, workers > 1, cap_shared)
        })?;
        if let Some(t) = pipeline.threads.first() {
            let _ = shared.capture_thread.set(t.thread().clone());
        }
        let worker_settings = worker::WorkerSettings::from(&settings);
        for (i, det) in detectors.into_iter().enumerate() {
            let sh = shared.clone();
            let ws = worker_settings.clone();
            pipeline.spawn(format!("worker-{i}"), move || worker::run(det, ws, sh))?;
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

    /// When the running model's file was modified as it was loaded.
    pub fn model_mtime(&self) -> Option<SystemTime> {
        self.model_mtime
    }

    /// The inference layout in use (after the start-up timing, if any).
    pub fn layout(&self) -> layout::Layout {
        self.layout
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
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
    /// different source, model (or model file), model options or worker
    /// count need the pipeline started again.
    pub fn restart_reason(&self, new: &PipelineSettings) -> Option<&'static str> {
        restart_reason(&self.settings, self.model_mtime, new)
    }

    /// Applies thresholds, label filters and stream settings (JPEG quality,
    /// overlay, boxes, inference rate) to every worker from its next frame,
    /// without reloading the model or dropping clients. Parts that need a
    /// restart ([`Pipeline::restart_reason`]) are ignored.
    pub fn update_live(&mut self, new: &PipelineSettings) -> Result<(), String> {
        new.detector.filter.validate()?;
        if new.detector.filter != self.settings.detector.filter {
            warn_unknown_labels(&self.labels, &new.detector.filter);
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
        crate::mqtt::configure(hub, new.mqtt.clone());
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
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
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

/// [`Pipeline::restart_reason`] for a pipeline running `old`, whose model
/// file had modification time `old_mtime` when it was loaded.
fn restart_reason(
    old: &PipelineSettings,
    old_mtime: Option<SystemTime>,
    new: &PipelineSettings,
) -> Option<&'static str> {
    let (mut a, mut b) = (old.detector.clone(), new.detector.clone());
    a.filter = FilterSettings::default();
    b.filter = FilterSettings::default();
    if old.source != new.source {
        Some("the source changed")
    } else if old.source_options != new.source_options {
        Some("the source settings changed")
    } else if a != b {
        Some("the model or its settings changed")
    } else if (old.annotate == Annotate::Client) != (new.annotate == Annotate::Client) {
        Some("stream.annotate changed to or from \"client\"")
    } else if old.workers != new.workers {
        Some("the number of workers changed")
    } else if model_mtime(&new.detector.model) != old_mtime {
        Some("the model file was replaced")
    } else {
        None
    }
}

fn model_mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
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

        let mut live = old.clone();
        live.detector.filter.threshold = 0.9;
        live.detector.filter.deny = vec!["car".into()];
        live.jpeg_quality = 30;
        live.overlay = false;
        live.every_nth = 3;
        assert_eq!(restart_reason(&old, mtime, &live), None);

        let mut s = old.clone();
        s.source = SourceUri::Images(dir.path().into());
        assert_eq!(restart_reason(&old, mtime, &s), Some("the source changed"));
        let mut s = old.clone();
        s.source_options.width = 320;
        assert_eq!(
            restart_reason(&old, mtime, &s),
            Some("the source settings changed")
        );
        let mut s = old.clone();
        s.detector.labels = Some(dir.path().join("labels.txt"));
        assert_eq!(
            restart_reason(&old, mtime, &s),
            Some("the model or its settings changed")
        );
        let mut s = old.clone();
        s.workers = 2;
        assert_eq!(
            restart_reason(&old, mtime, &s),
            Some("the number of workers changed")
        );

        // Same path, new file: reloaded too.
        let earlier = mtime.map(|t| t - Duration::from_secs(60));
        assert_eq!(
            restart_reason(&old, earlier, &old),
            Some("the model file was replaced")
        );
    }
}

//! What the pipeline publishes and the HTTP side reads: the newest encoded
//! frame, the newest detection report, readiness and the metrics.
//!
//! Each is a `watch` channel holding only the latest value, so a client that
//! reads slowly simply skips frames; the pipeline never waits for anyone,
//! and a frame is encoded once however many clients watch it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::{CameraMetrics, Metrics};

/// One annotated frame, JPEG-encoded once, shared by every client.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// Increases by one per published frame.
    pub seq: u64,
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    /// Milliseconds since the Unix epoch when the frame was captured.
    pub timestamp_ms: u64,
}

/// The result for one processed frame, as `/api/detections` and
/// `/api/events` serve it. `detections` has the shape `detect --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FrameReport {
    /// The camera's name.
    #[serde(serialize_with = "serialize_str")]
    pub camera: Arc<str>,
    pub frame: u64,
    pub timestamp_ms: u64,
    pub width: u32,
    pub height: u32,
    /// Whether the source is delivering frames (false: "no signal" frame).
    pub signal: bool,
    /// Who draws the boxes: "burn" (in the frames), "client" (the page, from
    /// these reports) or "off".
    pub annotate: &'static str,
    pub inference_ms: f64,
    /// From frame read to JPEG ready.
    pub latency_ms: f64,
    pub fps: f64,
    /// `"detector"` or `"classifier"` (then `detections` are the top-k classes).
    pub model_kind: crate::infer::ModelKind,
    pub detections: Vec<serde_json::Value>,
}

/// One camera's side of the daemon: what its pipeline publishes and the
/// HTTP side, MQTT and the watchdog read. Outlives the camera's pipeline
/// restarts (a SIGHUP), so clients stay connected.
fn serialize_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

pub struct Hub {
    /// The camera's name (`default` for a config without `[[camera]]`);
    /// shared, so each frame's report points at it rather than copies it.
    pub name: Arc<str>,
    frames: watch::Sender<Option<Arc<EncodedFrame>>>,
    reports: watch::Sender<Option<Arc<FrameReport>>>,
    ready: AtomicBool,
    /// Inference has failed on several frames in a row: not ready, and the
    /// systemd watchdog goes unfed, whatever the source does.
    inference_failing: AtomicBool,
    /// The running pipeline's model has produced a result: until then
    /// `/readyz` says 503 even though frames flow.
    inferred: AtomicBool,
    /// Frames published since start, across pipeline restarts (the
    /// watchdog's sign of life).
    published: AtomicU64,
    /// The highest frame number published: a restarted pipeline numbers
    /// its frames on from here, so clients never see the numbers go back.
    last_seq: AtomicU64,
    /// This camera's series; `metrics.all` is the daemon's registry.
    pub metrics: Arc<CameraMetrics>,
    /// Tracked objects and their events.
    pub events: crate::track::bus::EventBus,
    /// Inference on (the default) or paused by MQTT's detect switch.
    detect: AtomicBool,
    started: std::time::Instant,
    /// The source URI, credentials redacted (`/api/cameras`).
    source: std::sync::Mutex<String>,
    /// Why the source can never work, once it has said so.
    failure: std::sync::Mutex<Option<String>>,
    /// When the latest inferences ran: the camera's recent inference rate.
    inferences: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// Inferences remembered for [`Hub::inference_rate`].
const RATE_WINDOW: usize = 32;

impl Hub {
    /// The hub of camera `name`, its series in `metrics`.
    pub fn new(name: &str, metrics: &Arc<Metrics>) -> Arc<Self> {
        Hub::with_ids(name, metrics, Default::default())
    }

    /// [`Hub::new`], its objects' ids drawn from `ids` (shared by cameras).
    pub fn with_ids(name: &str, metrics: &Arc<Metrics>, ids: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Hub {
            name: Arc::from(name),
            metrics: Arc::new(metrics.camera(name)),
            events: crate::track::bus::EventBus::with_ids(ids),
            frames: watch::channel(None).0,
            reports: watch::channel(None).0,
            ready: AtomicBool::new(false),
            inference_failing: AtomicBool::new(false),
            inferred: AtomicBool::new(false),
            published: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            detect: AtomicBool::new(true),
            started: std::time::Instant::now(),
            source: Default::default(),
            failure: Default::default(),
            inferences: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RATE_WINDOW)),
        })
    }

    /// Records the source (shown with credentials redacted).
    pub fn set_source(&self, uri: &str) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = crate::capture::http::redact(uri);
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.metrics.source_failed.set(0);
    }

    pub fn source(&self) -> String {
        self.source.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The source can never work, for `reason`: the camera has stopped
    /// (`edgevision_source_failed` 1 until [`Hub::set_source`]).
    pub fn set_failure(&self, reason: &str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        self.metrics.source_failed.set(1);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts one inference for [`Hub::inference_rate`].
    pub fn note_inference(&self) {
        let mut q = self.inferences.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == RATE_WINDOW {
            q.pop_front();
        }
        q.push_back(std::time::Instant::now());
    }

    /// Inferences per second lately: over the last few (up to 32); 0 once
    /// none has run for 3 s.
    pub fn inference_rate(&self) -> f64 {
        let q = self.inferences.lock().unwrap_or_else(|e| e.into_inner());
        if q.back()
            .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3))
        {
            return 0.0;
        }
        match q.front() {
            Some(first) if q.len() > 1 => {
                let span = first.elapsed().as_secs_f64().max(1e-3);
                (q.len() - 1) as f64 / span
            }
            _ => 0.0,
        }
    }

    /// Replaces the current frame; never blocks.
    pub fn publish_frame(&self, frame: EncodedFrame) {
        self.last_seq.fetch_max(frame.seq, Ordering::Relaxed);
        self.frames.send_replace(Some(Arc::new(frame)));
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames published so far, "no signal" frames included: it keeps rising
    /// while the pipeline works, even with the camera unplugged.
    pub fn frames_published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The highest frame number published so far (0: none yet).
    pub fn last_frame_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Replaces the current report; never blocks.
    pub fn publish_report(&self, report: FrameReport) {
        self.reports.send_replace(Some(Arc::new(report)));
    }

    pub fn subscribe_frames(&self) -> watch::Receiver<Option<Arc<EncodedFrame>>> {
        self.frames.subscribe()
    }

    pub fn subscribe_reports(&self) -> watch::Receiver<Option<Arc<FrameReport>>> {
        self.reports.subscribe()
    }

    pub fn latest_frame(&self) -> Option<Arc<EncodedFrame>> {
        self.frames.borrow().clone()
    }

    pub fn latest_report(&self) -> Option<Arc<FrameReport>> {
        self.reports.borrow().clone()
    }

    /// Ready: the model is loaded and the source delivers frames.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Ready: frames flow, the model has produced a result, and inference
    /// is not failing frame after frame.
    pub fn is_ready(&self) -> bool {
        // With detection switched off nothing is inferred, and that is
        // no fault.
        self.ready.load(Ordering::Relaxed)
            && (self.inferred.load(Ordering::Relaxed) || !self.detect_enabled())
            && !self.inference_failing()
    }

    /// Whether the running pipeline has had an inference succeed (a new
    /// pipeline starts with `false`).
    pub fn set_inferred(&self, inferred: bool) {
        self.inferred.store(inferred, Ordering::Relaxed);
    }

    pub fn set_inference_failing(&self, failing: bool) {
        self.inference_failing.store(failing, Ordering::Relaxed);
    }

    /// Whether frames get inference (MQTT's detect switch pauses it; the
    /// stream goes on).
    pub fn detect_enabled(&self) -> bool {
        self.detect.load(Ordering::Relaxed)
    }

    pub fn set_detect_enabled(&self, on: bool) {
        self.detect.store(on, Ordering::Relaxed);
    }

    /// Since the hub was made (the daemon started).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// See [`Hub::set_inference_failing`]; the pipeline sets it after
    /// [`crate::pipeline::FAILING_AFTER`] failed inferences in a row.
    pub fn inference_failing(&self) -> bool {
        self.inference_failing.load(Ordering::Relaxed)
    }
}

/// Every camera's hub, in config order: what the HTTP side serves. The
/// first camera also answers the unprefixed paths (`/stream.mjpg`...).
/// A reload adds and removes cameras while clients of the others stay.
pub struct Cameras {
    list: std::sync::RwLock<Vec<Arc<Hub>>>,
    /// Object ids, unique across cameras.
    ids: Arc<AtomicU64>,
    /// The daemon's registry (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The daemon's one MQTT client, serving every camera, when `[mqtt]`
    /// names a broker (see [`crate::mqtt::configure`]).
    pub mqtt: std::sync::Mutex<Option<crate::mqtt::Mqtt>>,
}

impl Cameras {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Cameras> {
        Arc::new(Cameras {
            list: Default::default(),
            ids: Default::default(),
            metrics,
            mqtt: Default::default(),
        })
    }

    /// A hub for camera `name` (not yet listed: see [`Cameras::set`]).
    pub fn new_hub(&self, name: &str) -> Arc<Hub> {
        Hub::with_ids(name, &self.metrics, self.ids.clone())
    }

    /// A registry of one hub (tests, benchmarks).
    pub fn single(hub: Arc<Hub>) -> Arc<Cameras> {
        let c = Cameras::new(hub.metrics.all.clone());
        c.set(vec![hub]);
        c
    }

    /// The hubs, in order.
    pub fn all(&self) -> Vec<Arc<Hub>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first camera's hub.
    pub fn first(&self) -> Option<Arc<Hub>> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Hub>> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|h| &*h.name == name)
            .cloned()
    }

    /// Replaces the list.
    pub fn set(&self, hubs: Vec<Arc<Hub>>) {
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = hubs;
    }
}

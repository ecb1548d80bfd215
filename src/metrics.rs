//! Prometheus metrics, one registry per daemon. Names follow Prometheus
//! conventions: `_total` counters, base units (seconds), one unit a name.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The label every per-camera series has.
pub const CAMERA: &str = "camera";

/// Stages whose time `edgevision_stage_seconds` records.
pub const STAGES: [&str; 5] = ["decode", "preprocess", "infer", "annotate", "encode"];

/// The daemon's registry. Per-camera series are vectors with a `camera`
/// label; a camera's code uses its [`CameraMetrics`].
pub struct Metrics {
    registry: Registry,
    pub frames_captured: IntCounterVec,
    pub frames_processed: IntCounterVec,
    pub frames_dropped: IntCounterVec,
    pub frames_corrupt: IntCounterVec,
    pub capture_fps: GaugeVec,
    pub source_up: IntGaugeVec,
    pub source_failed: IntGaugeVec,
    pub processing_fps: GaugeVec,
    pub inference_seconds: HistogramVec,
    pub inference_errors: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub detections: IntCounterVec,
    pub stream_clients: IntGaugeVec,
    pub camera_reconnects: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub inference_workers: IntGauge,
    pub inference_threads: IntGauge,
    pub objects: IntGaugeVec,
    pub zone_objects: IntGaugeVec,
    pub line_crossings: IntCounterVec,
    pub object_events: IntCounterVec,
    pub snapshots_written: IntCounterVec,
    pub snapshots_dropped: IntCounterVec,
    pub snapshot_errors: IntCounterVec,
    pub webhook_sent: IntCounterVec,
    pub webhook_failures: IntCounterVec,
    pub webhook_dropped: IntCounterVec,
    pub mqtt_connected: IntGauge,
    pub mqtt_published: IntCounter,
    pub mqtt_dropped: IntCounter,
}

/// One camera's series, looked up once (not per frame), plus the daemon's
/// registry for the shared ones.
pub struct CameraMetrics {
    pub camera: String,
    pub frames_captured: IntCounter,
    pub frames_processed: IntCounter,
    pub frames_dropped: IntCounter,
    pub frames_corrupt: IntCounter,
    pub camera_reconnects: IntCounter,
    pub inference_errors: IntCounter,
    pub snapshots_written: IntCounter,
    pub snapshots_dropped: IntCounter,
    pub snapshot_errors: IntCounter,
    pub capture_fps: Gauge,
    pub processing_fps: Gauge,
    pub source_up: IntGauge,
    pub source_failed: IntGauge,
    pub stream_clients: IntGauge,
    pub inference_seconds: Histogram,
    /// `edgevision_stage_seconds`, in the order of [`STAGES`].
    pub stage: [Histogram; 5],
    pub all: Arc<Metrics>,
}

impl CameraMetrics {
    /// A stage's histogram by name (one of [`STAGES`]).
    pub fn stage(&self, name: &str) -> Histogram {
        let i = STAGES.iter().position(|s| *s == name).expect("a known stage");
        self.stage[i].clone()
    }

    pub fn detection(&self, label: &str) -> IntCounter {
        self.all.detections.with_label_values(&[&self.camera, label])
    }

    pub fn objects(&self, label: &str) -> IntGauge {
        self.all.objects.with_label_values(&[&self.camera, label])
    }

    pub fn zone_objects(&self, zone: &str, label: &str) -> IntGauge {
        self.all
            .zone_objects
            .with_label_values(&[&self.camera, zone, label])
    }

    pub fn line_crossing(&self, line: &str, label: &str, direction: &str) -> IntCounter {
        self.all
            .line_crossings
            .with_label_values(&[&self.camera, line, label, direction])
    }

    pub fn object_event(&self, kind: &str, label: &str) -> IntCounter {
        self.all
            .object_events
            .with_label_values(&[&self.camera, kind, label])
    }

    /// (sent, failures, dropped) of the webhook labelled `webhook`.
    pub fn webhook(&self, webhook: &str) -> (IntCounter, IntCounter, IntCounter) {
        let l = [self.camera.as_str(), webhook];
        (
            self.all.webhook_sent.with_label_values(&l),
            self.all.webhook_failures.with_label_values(&l),
            self.all.webhook_dropped.with_label_values(&l),
        )
    }
}

/// Removes the series of `vec` whose `camera` label is `name`, whatever
/// their other labels.
fn remove_camera_from<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    name: &str,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels = m.get_label();
            if labels.iter().any(|l| l.name() == CAMERA && l.value() == name) {
                let map: std::collections::HashMap<&str, &str> =
                    labels.iter().map(|l| (l.name(), l.value())).collect();
                let _ = vec.remove(&map);
            }
        }
    }
}

/// Buckets from 0.5 ms to 1 s: per-frame work on an edge CPU.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
    ]
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        // Per-camera series: `camera` first, then the series' own labels.
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let l: Vec<&str> = [CAMERA].iter().chain(labels).copied().collect();
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &l).expect("valid metric"),
            )
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let l: Vec<&str> = [CAMERA].iter().chain(labels).copied().collect();
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), &l).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            reg(
                &registry,
                GaugeVec::new(Opts::new(name, help), &[CAMERA]).expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let l: Vec<&str> = [CAMERA].iter().chain(labels).copied().collect();
            let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
            reg(&registry, HistogramVec::new(opts, &l).expect("valid metric"))
        };
        let global_gauge =
            |name: &str, help: &str| reg(&registry, IntGauge::new(name, help).expect("valid metric"));
        let global_counter =
            |name: &str, help: &str| reg(&registry, IntCounter::new(name, help).expect("valid metric"));
        let m = Metrics {
            frames_captured: counter("edgevision_frames_captured_total", "Frames read from the source.", &[]),
            frames_processed: counter(
                "edgevision_frames_processed_total",
                "Frames that went through inference and encoding.",
                &[],
            ),
            frames_dropped: counter(
                "edgevision_frames_dropped_total",
                "Captured frames replaced by a newer one before processing.",
                &[],
            ),
            frames_corrupt: counter(
                "edgevision_frames_corrupt_total",
                "Frames the source delivered corrupt and were skipped.",
                &[],
            ),
            camera_reconnects: counter(
                "edgevision_camera_reconnects_total",
                "Times the source was lost and opened again.",
                &[],
            ),
            capture_fps: gauge("edgevision_capture_fps", "Frames per second read from the source."),
            // A lost camera otherwise shows only as capture_fps 0, which a
            // slow source shows too.
            source_up: int_gauge(
                "edgevision_source_up",
                "1 while the source delivers frames, 0 before the first and while it is lost.",
                &[],
            ),
            // source_up is 0 for a camera being retried too: this one says
            // that retrying has stopped (the reason is in /api/cameras).
            source_failed: int_gauge(
                "edgevision_source_failed",
                "1 once the source has said it can never work (the camera has stopped), else 0.",
                &[],
            ),
            processing_fps: gauge("edgevision_processing_fps", "Frames per second processed and encoded."),
            inference_errors: counter(
                "edgevision_inference_errors_total",
                "Model invocations that failed (the frame went out without detections).",
                &[],
            ),
            inference_seconds: histogram("edgevision_inference_seconds", "Time of one model invocation.", &[]),
            stage_seconds: histogram(
                "edgevision_stage_seconds",
                "Time spent per frame in each pipeline stage.",
                &["stage"],
            ),
            detections: counter(
                "edgevision_detections_total",
                "Detections that passed the filter, by label.",
                &["label"],
            ),
            stream_clients: int_gauge("edgevision_stream_clients", "Clients watching the MJPEG stream.", &[]),
            inference_workers: global_gauge(
                "edgevision_inference_workers",
                "Interpreters running inference, shared by every camera.",
            ),
            inference_threads: global_gauge("edgevision_inference_threads", "CPU threads of each interpreter."),
            build_info: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "edgevision_build_info",
                        "Always 1; labels carry the version, the runtime library and its release.",
                    ),
                    &["version", "runtime", "runtime_version"],
                )
                .expect("valid metric"),
            ),
            objects: int_gauge(
                "edgevision_objects",
                "Objects tracked now (confirmed tracks), by label.",
                &["label"],
            ),
            zone_objects: int_gauge(
                "edgevision_zone_objects",
                "Tracked objects in each zone now, by label.",
                &["zone", "label"],
            ),
            line_crossings: counter(
                "edgevision_line_crossings_total",
                "Tracked objects that crossed a line, by label and direction (forward: left to right of the line as drawn).",
                &["line", "label", "direction"],
            ),
            object_events: counter(
                "edgevision_object_events_total",
                "Object events published, by type (new, update, end) and label.",
                &["type", "label"],
            ),
            snapshots_written: counter("edgevision_snapshots_written_total", "Object pictures written to disk.", &[]),
            snapshots_dropped: counter(
                "edgevision_snapshots_dropped_total",
                "Object pictures not written because the writer was busy.",
                &[],
            ),
            snapshot_errors: counter(
                "edgevision_snapshot_errors_total",
                "Object pictures that could not be written (disk full, read-only, missing directory).",
                &[],
            ),
            webhook_sent: counter(
                "edgevision_webhook_sent_total",
                "Object events delivered to a webhook.",
                &["webhook"],
            ),
            webhook_failures: counter(
                "edgevision_webhook_failures_total",
                "Webhook posts that failed (and are retried).",
                &["webhook"],
            ),
            webhook_dropped: counter(
                "edgevision_webhook_dropped_total",
                "Object events dropped from a full webhook queue (the oldest go first).",
                &["webhook"],
            ),
            mqtt_connected: global_gauge(
                "edgevision_mqtt_connected",
                "1 while connected to the MQTT broker, else 0.",
            ),
            mqtt_published: global_counter(
                "edgevision_mqtt_published_total",
                "MQTT messages handed to the broker connection.",
            ),
            mqtt_dropped: global_counter(
                "edgevision_mqtt_dropped_total",
                "MQTT messages dropped from the full queue while the broker was away (the oldest go first).",
            ),
            registry,
        };
        // process_* (resident memory, CPU seconds, open and maximum file
        // descriptors, start time) from /proc, as Prometheus exporters have.
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        m
    }

    /// The series of camera `name`, created (at zero) now so that they
    /// show before the first frame.
    pub fn camera(self: &Arc<Self>, name: &str) -> CameraMetrics {
        let c = |v: &IntCounterVec| v.with_label_values(&[name]);
        let stage = |s: &str| self.stage_seconds.with_label_values(&[name, s]);
        CameraMetrics {
            camera: name.to_string(),
            frames_captured: c(&self.frames_captured),
            frames_processed: c(&self.frames_processed),
            frames_dropped: c(&self.frames_dropped),
            frames_corrupt: c(&self.frames_corrupt),
            camera_reconnects: c(&self.camera_reconnects),
            inference_errors: c(&self.inference_errors),
            snapshots_written: c(&self.snapshots_written),
            snapshots_dropped: c(&self.snapshots_dropped),
            snapshot_errors: c(&self.snapshot_errors),
            capture_fps: self.capture_fps.with_label_values(&[name]),
            processing_fps: self.processing_fps.with_label_values(&[name]),
            source_up: self.source_up.with_label_values(&[name]),
            source_failed: self.source_failed.with_label_values(&[name]),
            stream_clients: self.stream_clients.with_label_values(&[name]),
            inference_seconds: self.inference_seconds.with_label_values(&[name]),
            stage: STAGES.map(stage),
            all: self.clone(),
        }
    }

    /// Drops every series of camera `name` (removed from the config).
    pub fn remove_camera(&self, name: &str) {
        remove_camera_from(&self.frames_captured, name);
        remove_camera_from(&self.frames_processed, name);
        remove_camera_from(&self.frames_dropped, name);
        remove_camera_from(&self.frames_corrupt, name);
        remove_camera_from(&self.camera_reconnects, name);
        remove_camera_from(&self.inference_errors, name);
        remove_camera_from(&self.snapshots_written, name);
        remove_camera_from(&self.snapshots_dropped, name);
        remove_camera_from(&self.snapshot_errors, name);
        remove_camera_from(&self.detections, name);
        remove_camera_from(&self.line_crossings, name);
        remove_camera_from(&self.object_events, name);
        remove_camera_from(&self.webhook_sent, name);
        remove_camera_from(&self.webhook_failures, name);
        remove_camera_from(&self.webhook_dropped, name);
        remove_camera_from(&self.source_up, name);
        remove_camera_from(&self.source_failed, name);
        remove_camera_from(&self.stream_clients, name);
        remove_camera_from(&self.objects, name);
        remove_camera_from(&self.zone_objects, name);
        remove_camera_from(&self.capture_fps, name);
        remove_camera_from(&self.processing_fps, name);
        remove_camera_from(&self.inference_seconds, name);
        remove_camera_from(&self.stage_seconds, name);
    }

    /// Records the version, the runtime library and its release
    /// ("unknown" when not recorded beside it) in `edgevision_build_info`.
    pub fn set_build_info(&self, runtime: &str, runtime_version: Option<&str>) {
        // One series: a reload onto another runtime replaces the old one.
        self.build_info.reset();
        self.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                runtime,
                runtime_version.unwrap_or("unknown"),
            ])
            .set(1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_conventions() {
        let m = Arc::new(Metrics::new());
        let door = m.camera("door");
        door.frames_captured.inc();
        door.detection("dog").inc();
        m.set_build_info("libLiteRt.so", Some("2.3.0"));
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            // process_* is the standard prefix of the process collector.
            assert!(
                name.starts_with("edgevision_") || name.starts_with("process_"),
                "{line}"
            );
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            if kind == "histogram" {
                assert!(name.ends_with("_seconds"), "{line}");
            }
        }
        assert!(
            text.contains("edgevision_frames_captured_total{camera=\"door\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.contains("edgevision_detections_total{camera=\"door\",label=\"dog\"} 1"));
        assert!(text.contains("edgevision_stage_seconds_bucket{camera=\"door\",stage=\"encode\""));
        assert!(text.contains(&format!(
            "edgevision_build_info{{runtime=\"libLiteRt.so\",runtime_version=\"2.3.0\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn a_removed_camera_leaves_no_series_and_others_keep_theirs() {
        let m = Arc::new(Metrics::new());
        let (door, yard) = (m.camera("door"), m.camera("yard"));
        door.detection("dog").inc();
        door.zone_objects("porch", "dog").set(1);
        yard.detection("cat").inc();
        m.remove_camera("door");
        let text = m.render();
        assert!(!text.contains("camera=\"door\""), "{text}");
        assert!(
            text.contains("edgevision_detections_total{camera=\"yard\",label=\"cat\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edgevision_frames_captured_total{camera=\"yard\"} 0"),
            "{text}"
        );
    }
}

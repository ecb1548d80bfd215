//! Prometheus metrics, one registry per daemon. Names follow Prometheus
//! conventions: `_total` counters, base units (seconds), one unit a name.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Stages whose time `edgevision_stage_seconds` records.
pub const STAGES: [&str; 5] = ["decode", "preprocess", "infer", "annotate", "encode"];

pub struct Metrics {
    registry: Registry,
    pub frames_captured: IntCounter,
    pub frames_processed: IntCounter,
    pub frames_dropped: IntCounter,
    pub frames_corrupt: IntCounter,
    pub capture_fps: Gauge,
    pub source_up: IntGauge,
    pub processing_fps: Gauge,
    pub inference_seconds: Histogram,
    pub inference_errors: IntCounter,
    pub stage_seconds: HistogramVec,
    pub detections: IntCounterVec,
    pub stream_clients: IntGauge,
    pub camera_reconnects: IntCounter,
    pub build_info: IntGaugeVec,
    pub inference_workers: IntGauge,
    pub inference_threads: IntGauge,
    pub objects: IntGaugeVec,
    pub zone_objects: IntGaugeVec,
    pub line_crossings: IntCounterVec,
    pub object_events: IntCounterVec,
    pub snapshots_written: IntCounter,
    pub snapshots_dropped: IntCounter,
    pub snapshot_errors: IntCounter,
    pub webhook_sent: IntCounterVec,
    pub webhook_failures: IntCounterVec,
    pub webhook_dropped: IntCounterVec,
    pub mqtt_connected: IntGauge,
    pub mqtt_published: IntCounter,
    pub mqtt_dropped: IntCounter,
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
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let frames_captured = counter("edgevision_frames_captured_total", "Frames read from the source.");
        let frames_processed = counter(
            "edgevision_frames_processed_total",
            "Frames that went through inference and encoding.",
        );
        let frames_dropped = counter(
            "edgevision_frames_dropped_total",
            "Captured frames replaced by a newer one before processing.",
        );
        let frames_corrupt = counter(
            "edgevision_frames_corrupt_total",
            "Frames the source delivered corrupt and were skipped.",
        );
        let camera_reconnects = counter(
            "edgevision_camera_reconnects_total",
            "Times the source was lost and opened again.",
        );
        let capture_fps = gauge(
            "edgevision_capture_fps",
            "Frames per second read from the source.",
        );
        // A lost camera otherwise shows only as capture_fps 0, which a slow
        // source shows too.
        let source_up = IntGauge::new(
            "edgevision_source_up",
            "1 while the source delivers frames, 0 before the first and while it is lost.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(source_up.clone()))
            .expect("unique metric");
        let processing_fps = gauge(
            "edgevision_processing_fps",
            "Frames per second processed and encoded.",
        );
        let inference_errors = counter(
            "edgevision_inference_errors_total",
            "Model invocations that failed (the frame went out without detections).",
        );
        let inference_seconds = Histogram::with_opts(
            HistogramOpts::new("edgevision_inference_seconds", "Time of one model invocation.")
                .buckets(latency_buckets()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(inference_seconds.clone()))
            .expect("unique metric");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "edgevision_stage_seconds",
                "Time spent per frame in each pipeline stage.",
            )
            .buckets(latency_buckets()),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(stage_seconds.clone()))
            .expect("unique metric");
        let detections = IntCounterVec::new(
            Opts::new(
                "edgevision_detections_total",
                "Detections that passed the filter, by label.",
            ),
            &["label"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(detections.clone()))
            .expect("unique metric");
        let stream_clients = IntGauge::new("edgevision_stream_clients", "Clients watching the MJPEG stream.")
            .expect("valid metric");
        registry
            .register(Box::new(stream_clients.clone()))
            .expect("unique metric");
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let inference_workers = int_gauge(
            "edgevision_inference_workers",
            "Interpreters running inference on alternate frames.",
        );
        let inference_threads = int_gauge("edgevision_inference_threads", "CPU threads of each interpreter.");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "edgevision_build_info",
                "Always 1; labels carry the version, the runtime library and its release.",
            ),
            &["version", "runtime", "runtime_version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        // process_* (resident memory, CPU seconds, open and maximum file
        // descriptors, start time) from /proc, as Prometheus exporters have.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        for stage in STAGES {
            stage_seconds.with_label_values(&[stage]);
        }
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let objects = gauge_vec(
            "edgevision_objects",
            "Objects tracked now (confirmed tracks), by label.",
            &["label"],
        );
        let zone_objects = gauge_vec(
            "edgevision_zone_objects",
            "Tracked objects in each zone now, by label.",
            &["zone", "label"],
        );
        let line_crossings = counter_vec(
            "edgevision_line_crossings_total",
            "Tracked objects that crossed a line, by label and direction (forward: left to right of the line as drawn).",
            &["line", "label", "direction"],
        );
        let object_events = counter_vec(
            "edgevision_object_events_total",
            "Object events published, by type (new, update, end) and label.",
            &["type", "label"],
        );
        let snapshots_written = counter(
            "edgevision_snapshots_written_total",
            "Object pictures written to disk.",
        );
        let snapshots_dropped = counter(
            "edgevision_snapshots_dropped_total",
            "Object pictures not written because the writer was busy.",
        );
        let snapshot_errors = counter(
            "edgevision_snapshot_errors_total",
            "Object pictures that could not be written (disk full, read-only, missing directory).",
        );
        let mqtt_connected = int_gauge(
            "edgevision_mqtt_connected",
            "1 while connected to the MQTT broker, else 0.",
        );
        let mqtt_published = counter(
            "edgevision_mqtt_published_total",
            "MQTT messages handed to the broker connection.",
        );
        let mqtt_dropped = counter(
            "edgevision_mqtt_dropped_total",
            "MQTT messages dropped from the full queue while the broker was away (the oldest go first).",
        );
        let webhook_sent = counter_vec(
            "edgevision_webhook_sent_total",
            "Object events delivered to a webhook.",
            &["webhook"],
        );
        let webhook_failures = counter_vec(
            "edgevision_webhook_failures_total",
            "Webhook posts that failed (and are retried).",
            &["webhook"],
        );
        let webhook_dropped = counter_vec(
            "edgevision_webhook_dropped_total",
            "Object events dropped from a full webhook queue (the oldest go first).",
            &["webhook"],
        );
        Metrics {
            registry,
            frames_captured,
            frames_processed,
            frames_dropped,
            frames_corrupt,
            capture_fps,
            source_up,
            processing_fps,
            inference_seconds,
            inference_errors,
            stage_seconds,
            detections,
            stream_clients,
            camera_reconnects,
            build_info,
            inference_workers,
            inference_threads,
            objects,
            zone_objects,
            line_crossings,
            object_events,
            snapshots_written,
            snapshots_dropped,
            snapshot_errors,
            webhook_sent,
            webhook_failures,
            webhook_dropped,
            mqtt_connected,
            mqtt_published,
            mqtt_dropped,
        }
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
        let m = Metrics::new();
        m.frames_captured.inc();
        m.detections.with_label_values(&["dog"]).inc();
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
        assert!(text.contains("edgevision_frames_captured_total 1"));
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.contains("edgevision_detections_total{label=\"dog\"} 1"));
        assert!(text.contains("edgevision_stage_seconds_bucket{stage=\"encode\""));
        assert!(text.contains(&format!(
            "edgevision_build_info{{runtime=\"libLiteRt.so\",runtime_version=\"2.3.0\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}

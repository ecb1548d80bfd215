//! The worker on stand-in interpreters: which frames it infers, what it
//! publishes, and how it ends. No LiteRT needed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::interpreter::{Infer, Interpreters};
use super::super::pool::{CameraId, Lease, Lender};
use super::super::{Captured, LiveSettings, PipelineSettings, Shared};
use super::{run, WorkerSettings};
use crate::capture::Frame;
use crate::infer::{BBox, Detection, FilterSettings, InferError, ModelKind, Timings};

/// One call of a stand-in: the frame it saw (its number is stamped in the
/// first pixels), the threshold it was given, and when.
#[derive(Debug, Clone, Copy)]
struct Call {
    seq: u64,
    threshold: f32,
    at: Instant,
}

/// What the stand-ins of one test share: their calls, and how long they
/// take (the very first call may take longer).
#[derive(Default)]
struct Script {
    calls: Mutex<Vec<Call>>,
    started: AtomicUsize,
    first: Duration,
    each: Duration,
}

impl Script {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn seqs(&self) -> Vec<u64> {
        self.calls().iter().map(|c| c.seq).collect()
    }
}

/// Finds one cat wherever it looks, after a while.
struct StandIn(Arc<Script>);

impl Infer for StandIn {
    fn detect_with(
        &mut self,
        filter: &FilterSettings,
        rgb: &[u8],
        _width: u32,
        _height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<Timings, InferError> {
        let s = &self.0;
        let n = s.started.fetch_add(1, Ordering::SeqCst);
        let seq = u64::from_le_bytes(rgb[..8].try_into().unwrap());
        s.calls.lock().unwrap().push(Call {
            seq,
            threshold: filter.threshold,
            at: Instant::now(),
        });
        std::thread::sleep(if n == 0 { s.first } else { s.each });
        out.clear();
        out.push(Detection {
            label: "cat".into(),
            class_id: 0,
            score: 0.9,
            bbox: BBox {
                left: 1.0,
                top: 1.0,
                right: 8.0,
                bottom: 8.0,
            },
        });
        Ok(Timings::default())
    }
}

struct StandInPool(Lender<StandIn>);

impl Interpreters for StandInPool {
    type Interpreter = StandIn;

    fn kind(&self) -> ModelKind {
        ModelKind::Detector
    }

    fn lease(&self, camera: CameraId, stop: &AtomicBool) -> Option<Lease<'_, StandIn>> {
        self.0.lease(camera, stop)
    }
}

/// A camera's state and `interpreters` stand-ins following `script`.
struct Rig {
    settings: PipelineSettings,
    shared: Arc<Shared>,
    pool: Arc<StandInPool>,
    script: Arc<Script>,
    workers: Vec<JoinHandle<()>>,
}

const SIDE: u32 = 16;

impl Rig {
    fn new(interpreters: usize, script: Script, edit: impl FnOnce(&mut PipelineSettings)) -> Rig {
        let mut settings = super::super::tests::settings(std::path::Path::new("unused.tflite"));
        settings.overlay = false;
        edit(&mut settings);
        let hub = crate::hub::Hub::new("default", &Arc::new(crate::metrics::Metrics::new()));
        let shared = Arc::new(Shared::new(hub, &settings, false));
        let script = Arc::new(script);
        let pool = Arc::new(StandInPool(Lender::new(
            (0..interpreters).map(|_| StandIn(script.clone())).collect(),
        )));
        Rig {
            settings,
            shared,
            pool,
            script,
            workers: Vec::new(),
        }
    }

    /// Starts `n` workers of camera 1.
    fn start(&mut self, n: usize) {
        for _ in 0..n {
            let (pool, shared) = (self.pool.clone(), self.shared.clone());
            let filter = self.settings.detector.filter.clone();
            let ws = WorkerSettings::from(&self.settings);
            self.workers
                .push(std::thread::spawn(move || run(pool, 1, filter, ws, shared)));
        }
    }

    /// Puts frame `seq` in the slot, counting the one it replaces as the
    /// capture loop does.
    fn put(&self, seq: u64) {
        let mut rgb = vec![90u8; (SIDE * SIDE * 3) as usize];
        rgb[..8].copy_from_slice(&seq.to_le_bytes());
        let frame = Frame {
            width: SIDE,
            height: SIDE,
            rgb,
            ..Default::default()
        };
        let c = Captured {
            seq,
            frame,
            signal: true,
            read_at: Instant::now(),
            timestamp_ms: seq,
        };
        if self.shared.slot.put(c) {
            self.shared.hub.metrics.frames_dropped.inc();
        }
    }

    fn processed(&self) -> u64 {
        self.shared.processed.load(Ordering::SeqCst)
    }

    /// Puts frame `seq` and waits until it has been processed.
    fn put_and_wait(&self, seq: u64) {
        let before = self.processed();
        self.put(seq);
        wait_for(|| self.processed() > before, "the frame to be processed");
    }

    fn published_seq(&self) -> u64 {
        self.shared.hub.latest_frame().map_or(0, |f| f.seq)
    }

    /// Closes the slot and joins the workers.
    fn finish(&mut self) {
        self.shared.request_stop();
        for w in self.workers.drain(..) {
            w.join().expect("the worker does not panic");
        }
    }
}

fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_newest_frame_wins_and_numbers_only_rise() {
    let script = Script {
        each: Duration::from_millis(40),
        ..Default::default()
    };
    let mut rig = Rig::new(1, script, |_| {});
    rig.start(1);
    let mut seen = Vec::new();
    let last = 30;
    for seq in 1..=last {
        rig.put(seq);
        seen.push(rig.published_seq());
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for(|| rig.published_seq() == last, "the last frame to be published");
    seen.push(rig.published_seq());
    rig.finish();

    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "went back: {seen:?}");
    let metrics = &rig.shared.hub.metrics;
    let (dropped, processed) = (metrics.frames_dropped.get(), metrics.frames_processed.get());
    assert!(dropped > 0, "nothing dropped");
    assert_eq!(
        dropped + processed,
        last,
        "each frame either processed or dropped"
    );
    let inferred = rig.script.seqs();
    assert!(
        inferred.len() < last as usize,
        "inferred every frame: {inferred:?}"
    );
    assert!(inferred.windows(2).all(|w| w[0] < w[1]), "{inferred:?}");
    assert_eq!(inferred.last(), Some(&last), "the newest frame was inferred");
}

#[test]
fn every_third_frame_is_inferred_the_others_reuse_its_detections() {
    let mut rig = Rig::new(1, Script::default(), |s| s.every_nth = 3);
    rig.start(1);
    let mut boxes = Vec::new();
    for seq in 1..=10 {
        rig.put_and_wait(seq);
        let report = rig.shared.hub.latest_report().expect("a report");
        assert_eq!(report.frame, seq);
        boxes.push(report.detections.len());
    }
    rig.finish();
    assert_eq!(rig.script.seqs(), [3, 6, 9]);
    // Nothing before the first inference; its cat after it.
    assert_eq!(boxes, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
}

#[test]
fn inference_stays_within_max_inference_fps() {
    let mut rig = Rig::new(1, Script::default(), |s| s.max_inference_fps = 10.0);
    rig.start(1);
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < Duration::from_millis(500) {
        seq += 1;
        rig.put(seq);
        std::thread::sleep(Duration::from_millis(5));
    }
    rig.finish();
    let calls = rig.script.calls();
    let first = calls.first().expect("some inference").at;
    let in_window = calls
        .iter()
        .filter(|c| c.at - first < Duration::from_millis(500))
        .count();
    // 10/s over 0.5 s: 5, plus the one at the start.
    assert!(in_window <= 6, "{in_window} inferences in 0.5 s");
    assert!(in_window >= 3, "only {in_window} inferences in 0.5 s");
    assert!(rig.processed() > calls.len() as u64, "frames skipped inference");
}

#[test]
fn a_slow_worker_never_publishes_an_older_frame() {
    let script = Script {
        first: Duration::from_millis(300),
        ..Default::default()
    };
    let mut rig = Rig::new(2, script, |s| s.workers = 2);
    rig.start(2);
    rig.put(1);
    wait_for(
        || rig.script.started.load(Ordering::SeqCst) == 1,
        "frame 1's inference",
    );
    rig.put(2);
    wait_for(|| rig.published_seq() == 2, "frame 2 to be published");
    // Frame 1 ends after frame 2 was published: it is counted, not shown.
    wait_for(|| rig.processed() == 2, "frame 1 to be done");
    assert_eq!(rig.published_seq(), 2);
    assert_eq!(rig.shared.hub.latest_report().unwrap().frame, 2);
    assert_eq!(rig.shared.hub.metrics.frames_dropped.get(), 1);
    assert_eq!(rig.script.seqs(), [1, 2]);
    rig.finish();
}

#[test]
fn a_live_filter_update_reaches_the_worker() {
    let mut rig = Rig::new(1, Script::default(), |_| {});
    rig.start(1);
    rig.put_and_wait(1);
    let mut new = rig.settings.clone();
    new.detector.filter.threshold = 0.8;
    // What `Pipeline::update_live` does for the workers.
    *rig.shared.live_update.lock().unwrap() = Some(LiveSettings {
        filter: new.detector.filter.clone(),
        worker: WorkerSettings::from(&new),
    });
    rig.shared.live_generation.fetch_add(1, Ordering::SeqCst);
    rig.put_and_wait(2);
    rig.finish();
    let seen: Vec<(u64, f32)> = rig.script.calls().iter().map(|c| (c.seq, c.threshold)).collect();
    assert_eq!(seen, [(1, 0.5), (2, 0.8)]);
}

#[test]
fn a_worker_waiting_for_an_interpreter_ends_on_stop() {
    // No interpreter ever comes free.
    let mut rig = Rig::new(0, Script::default(), |_| {});
    rig.start(1);
    rig.put(1);
    // Returns once the worker has taken the frame: it waits for a lease.
    rig.shared.slot.wait_for_demand(true);
    // Stop alone, the slot left open: the lease must say no.
    rig.shared.stop.store(true, Ordering::SeqCst);
    let worker = rig.workers.pop().unwrap();
    wait_for(|| worker.is_finished(), "the worker to end");
    worker.join().unwrap();
    assert_eq!(rig.processed(), 0);
    assert!(rig.script.calls().is_empty());
    assert!(rig.shared.hub.latest_frame().is_none());
}

/// A worker that waited for an interpreter infers the newest frame, not
/// the one it took before the wait: the wait must not add to the latency.
#[test]
fn after_waiting_for_an_interpreter_the_newest_frame_is_inferred() {
    let mut rig = Rig::new(1, Script::default(), |_| {});
    // Another camera holds the only interpreter.
    let stop = AtomicBool::new(false);
    let pool = rig.pool.clone();
    let held = pool.0.lease(2, &stop).expect("the interpreter is free");
    rig.start(1);
    rig.put(1);
    wait_for(
        || rig.pool.0.waiting_for(1) == 1,
        "the worker to wait for the interpreter with frame 1",
    );
    // Two frames come while it waits; the second replaces the first.
    rig.put(2);
    rig.put(3);
    drop(held);
    wait_for(|| rig.published_seq() == 3, "frame 3 to be published");
    rig.finish();
    assert_eq!(rig.script.seqs(), [3], "the frames inferred");
    assert_eq!(rig.shared.hub.latest_report().unwrap().frame, 3);
    assert_eq!(rig.processed(), 1);
    // Frame 2 replaced in the slot, frame 1 swapped out.
    assert_eq!(rig.shared.hub.metrics.frames_dropped.get(), 2);
}

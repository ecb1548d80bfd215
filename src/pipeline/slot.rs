//! The newest-frame slot between the capture thread and the workers, and
//! the capture loop that fills it.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Shared;
use crate::capture::{no_signal_frame, Event, Frame, Resilient, Source, SourceOptions};

/// A frame on its way through the pipeline.
pub struct Captured {
    pub seq: u64,
    pub frame: Frame,
    /// False for the "no signal" frame shown while the source is down.
    pub signal: bool,
    pub read_at: Instant,
    pub timestamp_ms: u64,
}

struct State {
    latest: Option<Captured>,
    spares: Vec<Frame>,
    /// No more frames will come (stop, or the source ended).
    closed: bool,
    /// Workers blocked in `take`.
    idle_workers: usize,
}

pub struct Slot {
    state: Mutex<State>,
    ready: Condvar,
    taken: Condvar,
}

impl Slot {
    pub fn new() -> Self {
        Slot {
            state: Mutex::new(State {
                latest: None,
                spares: Vec::new(),
                closed: false,
                idle_workers: 0,
            }),
            ready: Condvar::new(),
            taken: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a frame in the slot; returns true if it replaced an unconsumed one.
    pub fn put(&self, c: Captured) -> bool {
        let mut s = self.lock();
        let old = s.latest.replace(c);
        let dropped = old.is_some();
        if let Some(old) = old {
            s.spares.push(old.frame);
        }
        drop(s);
        self.ready.notify_one();
        dropped
    }

    /// Waits for the next frame; None once closed and empty.
    pub fn take(&self) -> Option<Captured> {
        let mut s = self.lock();
        loop {
            if let Some(c) = s.latest.take() {
                drop(s);
                self.taken.notify_all();
                return Some(c);
            }
            if s.closed {
                return None;
            }
            s.idle_workers += 1;
            self.taken.notify_all();
            s = self
                .ready
                .wait_timeout(s, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.idle_workers -= 1;
        }
    }

    /// The waiting frame, if there is one and it is a camera frame: a
    /// worker that waited for an interpreter takes it instead of the frame
    /// it holds, so the wait does not add to the latency.
    pub fn take_newer(&self) -> Option<Captured> {
        let mut s = self.lock();
        if !s.latest.as_ref().is_some_and(|c| c.signal) {
            return None;
        }
        let c = s.latest.take();
        drop(s);
        self.taken.notify_all();
        c
    }

    /// Waits until a worker is idle and the slot is empty (or closed).
    /// File sources read as fast as possible use this: they decode a frame
    /// only when a worker is ready for it, instead of spinning a core on
    /// frames that would be dropped or letting one wait in the slot (which
    /// would add a frame time of latency). Cameras never wait.
    /// With `read_ahead` (several workers) it only waits for the slot to
    /// empty, so decoding overlaps the other workers' inference.
    pub fn wait_for_demand(&self, read_ahead: bool) {
        let mut s = self.lock();
        while (s.latest.is_some() || (!read_ahead && s.idle_workers == 0)) && !s.closed {
            s = self
                .taken
                .wait_timeout(s, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Returns a frame buffer for reuse.
    pub fn recycle(&self, f: Frame) {
        let mut s = self.lock();
        if s.spares.len() < 8 {
            s.spares.push(f);
        }
    }

    pub fn take_spare(&self) -> Option<Frame> {
        self.lock().spares.pop()
    }

    /// No more frames: wakes every waiting worker.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.taken.notify_all();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Exponentially weighted frames-per-second from frame intervals.
pub struct FpsMeter {
    last: Option<Instant>,
    fps: f64,
}

impl FpsMeter {
    pub fn new() -> Self {
        FpsMeter { last: None, fps: 0.0 }
    }

    pub fn tick(&mut self) -> f64 {
        let now = Instant::now();
        if let Some(last) = self.last {
            let dt = (now - last).as_secs_f64().max(1e-6);
            let inst = 1.0 / dt;
            self.fps = if self.fps == 0.0 {
                inst
            } else {
                self.fps * 0.9 + inst * 0.1
            };
        }
        self.last = Some(now);
        self.fps
    }

    pub fn reset(&mut self) {
        self.last = None;
        self.fps = 0.0;
    }
}

/// Reads frames until stopped. While the source is down it publishes a
/// "no signal" frame twice a second and keeps `/readyz` false.
pub(crate) fn capture_loop(
    source: Box<dyn Source>,
    opts: SourceOptions,
    pull: bool,
    read_ahead: bool,
    shared: std::sync::Arc<Shared>,
) {
    let metrics = shared.hub.metrics.clone();
    let stage_decode = metrics.stage("decode");
    let name = source.describe();
    let mut src = Resilient::new(source, opts.max_backoff);
    let (ns_w, ns_h) = if opts.width > 0 && opts.height > 0 {
        (opts.width, opts.height)
    } else {
        (640, 480)
    };
    // Numbers go on from the previous pipeline's (a reload restarts it).
    let mut seq = shared.hub.last_frame_seq();
    let mut fps = FpsMeter::new();
    let mut last_no_signal: Option<Instant> = None;
    let mut down_reason = String::from("starting");
    // Frames still to see after a reconnect before the source counts as
    // ready: a v4l2loopback reader that reopens during a stall is handed the
    // last frame again, and one frame must not end the outage.
    let mut ready_after: u32 = 0;
    let mut push = |frame: Frame, signal: bool, read_at: Instant, shared: &Shared| {
        seq += 1;
        let c = Captured {
            seq,
            frame,
            signal,
            read_at,
            timestamp_ms: now_ms(),
        };
        if shared.slot.put(c) {
            metrics.frames_dropped.inc();
        }
    };
    while !shared.stop.load(Ordering::Relaxed) {
        if pull {
            shared.slot.wait_for_demand(read_ahead);
        }
        let mut frame = super::spare_frame(&shared);
        match src.next(&mut frame) {
            Event::Frame => {
                let read_at = Instant::now();
                metrics.frames_captured.inc();
                metrics.capture_fps.set(fps.tick());
                metrics.source_up.set(1);
                stage_decode.observe(frame.decode_time.as_secs_f64());
                // The first frame after a reconnect may be the last one
                // before the outage, handed out again (v4l2loopback does):
                // it does not count as signal until the next one arrives.
                let probation = ready_after > 1;
                ready_after = ready_after.saturating_sub(1);
                if ready_after == 0 {
                    shared.hub.set_ready(true);
                }
                last_no_signal = None;
                push(frame, !probation, read_at, &shared);
            }
            Event::Corrupt => {
                metrics.frames_corrupt.inc();
                shared.slot.recycle(frame);
            }
            Event::Reconnected => {
                ready_after = 2;
                metrics.camera_reconnects.inc();
                tracing::info!(source = %name, "source is back");
                shared.slot.recycle(frame);
            }
            Event::Fatal(reason) => {
                // Retrying cannot help (not a capture device, no usable
                // format): say so once and end, so the daemon exits non-zero
                // and systemd (Restart=on-failure) and the operator see it.
                tracing::error!(source = %name, "the source cannot work: {reason}; stopping");
                metrics.source_up.set(0);
                shared.hub.set_ready(false);
                metrics.capture_fps.set(0.0);
                no_signal_frame(ns_w, ns_h, &reason, &mut frame);
                push(frame, false, Instant::now(), &shared);
                shared.hub.set_failure(&reason);
                *shared.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                break;
            }
            Event::Lost(reason) => {
                tracing::warn!(source = %name, "source lost: {reason}");
                // Down before not-ready: whoever sees /readyz 503 sees 0 here.
                metrics.source_up.set(0);
                shared.hub.set_ready(false);
                metrics.capture_fps.set(0.0);
                fps.reset();
                down_reason = reason;
                no_signal_frame(ns_w, ns_h, &down_reason, &mut frame);
                last_no_signal = Some(Instant::now());
                push(frame, false, Instant::now(), &shared);
            }
            Event::Waiting => {
                if last_no_signal.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                    no_signal_frame(ns_w, ns_h, &down_reason, &mut frame);
                    last_no_signal = Some(Instant::now());
                    push(frame, false, Instant::now(), &shared);
                } else {
                    shared.slot.recycle(frame);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Event::End => {
                if !shared.stop.load(Ordering::Relaxed) {
                    tracing::info!(source = %name, "source ended");
                }
                break;
            }
        }
    }
    shared.slot.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureError, Frame, Source};

    /// A stand-in source whose device can never work.
    struct Hopeless(std::sync::Arc<std::sync::atomic::AtomicU32>);

    impl Source for Hopeless {
        fn describe(&self) -> String {
            "hopeless".into()
        }
        fn open(&mut self) -> Result<(), CaptureError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(CaptureError::Fatal("not a video capture device".into()))
        }
        fn read(&mut self, _: &mut Frame) -> Result<(), CaptureError> {
            unreachable!("never opened")
        }
        fn close(&mut self) {}
    }

    #[test]
    fn a_fatal_source_ends_the_loop_once_with_its_reason() {
        let hub = crate::hub::Hub::new("default", &std::sync::Arc::new(crate::metrics::Metrics::new()));
        let model = std::path::Path::new("unused.tflite");
        let settings = super::super::tests::settings(model);
        let shared = std::sync::Arc::new(super::super::Shared::new(hub.clone(), &settings, false));
        let opens = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let source = Box::new(Hopeless(opens.clone()));
        let s = shared.clone();
        let t = std::thread::spawn(move || capture_loop(source, SourceOptions::default(), false, false, s));
        // It returns by itself: no retry loop, no spinning on the error.
        let start = Instant::now();
        while !t.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(5), "the loop kept going");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.join().unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), 1, "tried once");
        assert_eq!(
            shared.fatal.lock().unwrap().as_deref(),
            Some("not a video capture device")
        );
        assert!(!hub.is_ready());
        // One no-signal frame saying why went out before the end.
        let last = shared.slot.take().expect("the no-signal frame");
        assert!(!last.signal);
        assert!(shared.slot.take().is_none(), "the slot is closed");
    }
}

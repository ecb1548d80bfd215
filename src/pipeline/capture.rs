//! The capture loop: reads the source into the newest-frame slot, and
//! stands in a "no signal" frame while the source is down.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::fps::FpsMeter;
use super::no_signal::no_signal_frame;
use super::{Captured, Shared};
use crate::capture::{Event, Frame, Resilient, Source, SourceOptions};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        assert_eq!(hub.failure().as_deref(), Some("not a video capture device"));
        assert_eq!(hub.metrics.source_up.get(), 0);
        assert_eq!(
            hub.metrics.source_failed.get(),
            1,
            "the metrics say it has stopped"
        );
        // One no-signal frame saying why went out before the end.
        let last = shared.slot.take().expect("the no-signal frame");
        assert!(!last.signal);
        assert!(shared.slot.take().is_none(), "the slot is closed");
        // Started again (a reload with another source): not failed until it says so.
        hub.set_source("v4l2:/dev/video9");
        assert_eq!(hub.failure(), None);
        assert_eq!(hub.metrics.source_failed.get(), 0);
    }
}

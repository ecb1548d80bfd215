//! The newest-frame slot between the capture thread and the workers.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::capture::Frame;

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

/// Holds only the newest frame: a new one replaces one not yet taken, so a
/// slow worker never falls behind the camera (latency stays one frame).
/// It also keeps spare frame buffers so capture reuses them instead of
/// allocating.
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

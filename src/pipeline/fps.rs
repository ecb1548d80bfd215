//! A frames-per-second meter: the capture rate and each camera's
//! processing rate.

use std::time::Instant;

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

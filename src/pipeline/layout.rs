//! How the inference budget is split: `model.workers` interpreters on
//! alternate frames, `model.threads` CPU threads each. `0` means "choose for
//! this machine"; an explicit value always wins.
//!
//! The automatic rule gives each core its own single-threaded interpreter
//! (at most [`AUTO_MAX_WORKERS`], then more threads each). Why, measured on a
//! 2-core x86_64 (AVX2), SSD MobileNetV2 int8, 640x480 MJPEG, `bench`:
//! XNNPACK scales well inside one invocation (23.3 ms at 1 thread, 12.3 ms
//! at 2), yet one 2-thread interpreter ran 59 frames/s and two 1-thread ones
//! 73: with one worker, decoding, drawing and encoding (about 3 ms a frame)
//! sit between inferences while both cores wait; with one interpreter per
//! core they overlap with the other worker's inference. The price is
//! latency: each frame waits for a 1-thread inference.

use serde::Serialize;

/// Most interpreters the automatic rule starts: each holds its own copy of
/// the model's activations, and past four the frames-per-second gain is
/// small next to what wider interpreters give.
pub const AUTO_MAX_WORKERS: usize = 4;

/// The layout in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub workers: usize,
    pub threads: usize,
    /// Cores the process may use.
    pub cores: usize,
    /// Whether any part was chosen automatically.
    pub auto: bool,
}

/// Cores this process may run on (its CPU affinity, cgroup quota).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The layout for `cores` cores given the configured values (0 = choose).
pub fn choose(cores: usize, workers: usize, threads: usize) -> Layout {
    let cores = cores.max(1);
    let (w, t) = match (workers, threads) {
        (0, 0) => {
            let w = cores.min(AUTO_MAX_WORKERS);
            (w, (cores / w).max(1))
        }
        (0, t) => ((cores / t).max(1), t),
        (w, 0) => (w, (cores / w).max(1)),
        (w, t) => (w, t),
    };
    Layout {
        workers: w,
        threads: t,
        cores,
        auto: workers == 0 || threads == 0,
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} interpreter{} x {} thread{} on {} core{}{}",
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            if self.auto { " (chosen automatically)" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_layout_uses_every_core_once() {
        for cores in 1..=16 {
            let l = choose(cores, 0, 0);
            assert!(l.workers >= 1 && l.threads >= 1, "{l:?}");
            assert!(l.workers <= AUTO_MAX_WORKERS, "{l:?}");
            assert!(l.workers * l.threads <= cores, "oversubscribed: {l:?}");
            // No more than a worker's worth of cores left idle.
            assert!(cores - l.workers * l.threads < l.workers, "{l:?}");
            assert!(l.auto);
        }
        assert_eq!((choose(1, 0, 0).workers, choose(1, 0, 0).threads), (1, 1));
        assert_eq!((choose(2, 0, 0).workers, choose(2, 0, 0).threads), (2, 1));
        assert_eq!((choose(4, 0, 0).workers, choose(4, 0, 0).threads), (4, 1));
        assert_eq!((choose(8, 0, 0).workers, choose(8, 0, 0).threads), (4, 2));
        // Zero cores reported (should not happen) still gives a layout.
        assert_eq!(choose(0, 0, 0).workers * choose(0, 0, 0).threads, 1);
    }

    #[test]
    fn explicit_values_win() {
        assert_eq!(
            choose(4, 1, 3),
            Layout {
                workers: 1,
                threads: 3,
                cores: 4,
                auto: false
            }
        );
        let l = choose(4, 1, 0);
        assert_eq!((l.workers, l.threads, l.auto), (1, 4, true));
        let l = choose(4, 0, 2);
        assert_eq!((l.workers, l.threads), (2, 2));
        let l = choose(2, 0, 4);
        assert_eq!((l.workers, l.threads), (1, 4));
        let l = choose(1, 3, 0);
        assert_eq!((l.workers, l.threads), (3, 1));
    }

    #[test]
    fn describes_itself() {
        assert_eq!(
            choose(2, 0, 0).to_string(),
            "2 interpreters x 1 thread on 2 cores (chosen automatically)"
        );
        assert_eq!(
            choose(4, 1, 4).to_string(),
            "1 interpreter x 4 threads on 4 cores"
        );
    }
}

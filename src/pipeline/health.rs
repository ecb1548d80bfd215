//! Inference failures: counted, logged at a bounded rate, and after a few in
//! a row reported as unhealthy (`/readyz` 503, no systemd watchdog pings),
//! so a model that fails on every frame does not look like a quiet scene.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::hub::Hub;

/// Failed inferences in a row after which the daemon reports itself unhealthy.
pub const FAILING_AFTER: u32 = 5;

/// At most one "inference failed" log line per worker this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shared by the workers: failures in a row, across all of them.
#[derive(Default)]
pub(crate) struct InferenceHealth {
    in_a_row: AtomicU32,
}

impl InferenceHealth {
    /// A successful inference: healthy again.
    pub fn success(&self, hub: &Hub) {
        hub.set_inferred(true);
        self.in_a_row.store(0, Ordering::Relaxed);
        // Checked on the hub, not the count: with several workers a
        // failure may set the flag just after another worker's success
        // reset the count, and the next success must still clear it.
        if hub.inference_failing() {
            hub.set_inference_failing(false);
            tracing::info!("inference works again: ready");
        }
    }

    /// A failed inference; returns the failures in a row so far.
    pub fn failure(&self, hub: &Hub) -> u32 {
        hub.metrics.inference_errors.inc();
        let n = self.in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if n == FAILING_AFTER {
            hub.set_inference_failing(true);
            tracing::error!(
                "inference failed on {n} frames in a row: not ready (/readyz 503), \
                 and the systemd watchdog is no longer fed"
            );
        }
        n
    }
}

/// One worker's "inference failed" lines: the first at once, then one per
/// [`LOG_EVERY`] saying how many were not logged.
#[derive(Default)]
pub(crate) struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl FailureLog {
    /// Whether to log a failure now, and how many went unlogged before it.
    pub fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    #[test]
    fn the_first_failure_is_logged_then_one_line_per_interval_with_the_count() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(log.should_log(t0), Some(0));
        for i in 1..=30 {
            assert_eq!(log.should_log(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(log.should_log(t0 + LOG_EVERY), Some(30));
        assert_eq!(log.should_log(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn failures_in_a_row_make_the_hub_unready_until_a_success() {
        let hub = Hub::new("default", &Arc::new(Metrics::new()));
        hub.set_ready(true);
        let health = InferenceHealth::default();
        assert!(!hub.is_ready(), "ready before any inference");
        health.success(&hub);
        assert!(hub.is_ready());
        for i in 1..FAILING_AFTER {
            assert_eq!(health.failure(&hub), i);
            assert!(hub.is_ready(), "unready after {i} failures");
        }
        // A success in between starts the count again.
        health.success(&hub);
        for _ in 0..FAILING_AFTER - 1 {
            health.failure(&hub);
        }
        assert!(hub.is_ready());
        health.failure(&hub);
        assert!(!hub.is_ready() && hub.inference_failing());
        assert_eq!(hub.metrics.inference_errors.get(), (2 * FAILING_AFTER - 1) as u64);
        health.success(&hub);
        assert!(hub.is_ready() && !hub.inference_failing());
    }
}

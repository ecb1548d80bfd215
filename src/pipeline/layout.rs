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
//!
//! So when both are 0 and the source has a frame rate (a camera, a paced
//! file), the pipeline first times one interpreter on all cores: if it
//! keeps up with the frames that get inference ([`keeps_up`]), that
//! lowest-latency layout is used instead. Unpaced sources (`bench`) keep
//! the frames-per-second rule.

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
    /// Both were 0: the pipeline may prefer one wide interpreter when it
    /// keeps up with the source.
    #[serde(skip)]
    pub both_auto: bool,
}

/// The share of each frame interval one interpreter may spend inferring;
/// the rest is for drawing, encoding and the machine's other work.
pub const BUDGET_SHARE: f64 = 0.7;

/// Milliseconds of inference a frame may take at `rate` inferences/s.
pub fn budget_ms(rate: f64) -> f64 {
    1000.0 * BUDGET_SHARE / rate
}

/// Whether one interpreter taking `infer_ms` per frame keeps up with
/// `rate` inferences per second.
pub fn keeps_up(infer_ms: f64, rate: f64) -> bool {
    rate > 0.0 && infer_ms.is_finite() && infer_ms <= budget_ms(rate)
}

/// Inferences per second a source at `fps` asks for, given that only
/// every `every_nth` frame is inferred and at most `max_fps` per second
/// (0: no cap). 0 when the source is unpaced.
pub fn inference_rate(fps: f32, every_nth: u32, max_fps: f32) -> f64 {
    if !(fps.is_finite() && fps > 0.0) {
        return 0.0;
    }
    let rate = fps as f64 / every_nth.max(1) as f64;
    if max_fps > 0.0 && max_fps.is_finite() {
        rate.min(max_fps as f64)
    } else {
        rate
    }
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
    // More threads or interpreters than cores only adds contention (and
    // each thread is a task under systemd's TasksMax).
    let (w, t) = (w.min(cores), t.min(cores));
    Layout {
        workers: w,
        threads: t,
        cores,
        auto: workers == 0 || threads == 0,
        both_auto: workers == 0 && threads == 0,
    }
}

/// Threads kept for everything but inference: the main thread, the HTTP
/// runtime's 2 workers and at most [`crate::service::HTTP_BLOCKING_THREADS`]
/// (3) blocking threads, the first camera's capture thread and its picture
/// writer. The MQTT client and webhooks (one thread each) are not counted.
pub const RESERVED_THREADS: usize = 8;

/// Tasks this process may still start, when a limit is known: its cgroup's
/// `pids.max` (systemd's `TasksMax=`) less the tasks the cgroup has, and
/// `RLIMIT_NPROC` (`ulimit -u`, which root ignores) less this process's
/// own threads.
pub fn thread_room() -> Option<usize> {
    let cgroup = cgroup_room();
    let nproc = nproc_room();
    match (cgroup, nproc) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn cgroup_room() -> Option<usize> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2 ("0::/path"), else v1's pids controller ("N:pids:/path").
    let (root, path) = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(|p| ("/sys/fs/cgroup", p)))
        .filter(|(r, p)| {
            std::path::Path::new(r)
                .join(p.trim_start_matches('/'))
                .join("pids.max")
                .exists()
        })
        .or_else(|| {
            cgroup
                .lines()
                .find_map(|l| l.split_once(":pids:").map(|(_, p)| ("/sys/fs/cgroup/pids", p)))
        })?;
    let dir = std::path::Path::new(root).join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    // "max": no limit.
    let max: usize = read("pids.max")?.trim().parse().ok()?;
    let current: usize = read("pids.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

fn nproc_room() -> Option<usize> {
    // SAFETY: plain getters.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: out-pointer to a live struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    Some((lim.rlim_cur as usize).saturating_sub(threads))
}

/// `layout` made to fit `room` more tasks, [`RESERVED_THREADS`] kept aside:
/// threads per interpreter capped at what is left, then as many
/// interpreters as fit. An
/// interpreter of `t` threads is `t` tasks (its worker and `t - 1` in
/// the runtime's pool).
pub fn fit_room(layout: Layout, room: Option<usize>) -> Result<Layout, String> {
    let Some(room) = room else { return Ok(layout) };
    let budget = room.saturating_sub(RESERVED_THREADS);
    if budget == 0 {
        return Err(format!(
            "no room for inference threads: only {room} more tasks allowed \
             (systemd TasksMax=, the cgroup's pids.max or ulimit -u), {RESERVED_THREADS} are needed besides inference"
        ));
    }
    let mut l = layout;
    l.threads = l.threads.min(budget);
    l.workers = l.workers.min(budget / l.threads).max(1);
    Ok(l)
}

/// One interpreter on all `cores`, chosen because it keeps up.
pub fn wide(cores: usize) -> Layout {
    let cores = cores.max(1);
    Layout {
        workers: 1,
        threads: cores,
        cores,
        auto: true,
        both_auto: true,
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
                auto: false,
                both_auto: false
            }
        );
        assert!(choose(4, 0, 0).both_auto && !choose(4, 0, 2).both_auto);
        let l = choose(4, 1, 0);
        assert_eq!((l.workers, l.threads, l.auto), (1, 4, true));
        let l = choose(4, 0, 2);
        assert_eq!((l.workers, l.threads), (2, 2));
        // Never more of either than cores.
        let l = choose(2, 0, 4);
        assert_eq!((l.workers, l.threads), (1, 2));
        let l = choose(1, 3, 0);
        assert_eq!((l.workers, l.threads), (1, 1));
        let l = choose(2, 30, 100_000);
        assert_eq!((l.workers, l.threads), (2, 2));
    }

    #[test]
    fn a_task_limit_shrinks_threads_then_interpreters() {
        let l = choose(8, 4, 2);
        assert_eq!(fit_room(l, None), Ok(l));
        assert_eq!(fit_room(l, Some(100)), Ok(l));
        let f = fit_room(l, Some(RESERVED_THREADS + 5)).unwrap();
        assert_eq!((f.workers, f.threads), (2, 2));
        let f = fit_room(l, Some(RESERVED_THREADS + 1)).unwrap();
        assert_eq!((f.workers, f.threads), (1, 1));
        let e = fit_room(l, Some(RESERVED_THREADS)).unwrap_err();
        assert!(e.contains("TasksMax"), "{e}");
    }

    #[test]
    fn one_wide_interpreter_when_it_keeps_up() {
        // 14 ms per inference at 15 fps uses 21% of each interval.
        assert!(keeps_up(14.0, 15.0));
        assert!(keeps_up(23.0, 30.0));
        assert!(!keeps_up(24.0, 30.0));
        assert!(!keeps_up(14.0, 0.0), "unpaced: frames per second first");
        assert!(!keeps_up(f64::NAN, 15.0));
        assert_eq!(inference_rate(30.0, 3, 0.0), 10.0);
        assert_eq!(inference_rate(30.0, 1, 5.0), 5.0);
        assert_eq!(inference_rate(0.0, 1, 5.0), 0.0);
        let w = wide(4);
        assert_eq!((w.workers, w.threads, w.cores), (1, 4, 4));
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

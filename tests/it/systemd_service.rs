//! The daemon as systemd runs it: the real `edgevision run` binary talks the
//! notify protocol to a Unix datagram socket this test binds (as systemd
//! would, through `$NOTIFY_SOCKET`), and a SIGHUP reload keeps clients.

use crate::common;

use common::daemon::{get, open_stream, start_with_env};
use common::{photo_dir, wait_for};

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The socket systemd would listen on.
struct NotifySocket {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            sock,
            path: path.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// The next message, or None after `secs`.
    fn recv(&self, secs: f64) -> Option<String> {
        self.sock
            .set_read_timeout(Some(Duration::from_secs_f64(secs.max(0.001))))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one satisfies `f` (returned), failing after `secs`.
    fn wait(&self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
            assert!(left > 0.0, "timed out waiting for {what}");
            if let Some(m) = self.recv(left) {
                if f(&m) {
                    return m;
                }
            }
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn config(photos: &std::path::Path, threshold: f32, quality: u8) -> String {
    format!(
        r#"
[source]
uri = "images:{photos}"
width = 640
height = 480
fps = 10.0

[model]
path = "{model}"
labels = "{labels}"
threads = 1

[detect]
threshold = {threshold}

[stream]
quality = {quality}
"#,
        photos = photos.display(),
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

#[test]
fn tells_systemd_ready_status_watchdog_and_stopping() {
    let sock = NotifySocket::bind();
    let photos = photo_dir(&["dog.jpg"]);
    let mut d = start_with_env(
        &config(photos.path(), 0.5, 80),
        &[("NOTIFY_SOCKET", &sock.path), ("WATCHDOG_USEC", "1000000")],
    );

    let ready = sock.wait(60, "READY=1", |m| has_line(m, "READY=1"));
    // READY comes once the model is loaded and the server serves: the port
    // answers at once, and the runtime is already recorded.
    assert_eq!(
        get(&d.addr, "/healthz").0,
        200,
        "READY before the port answers ({ready})"
    );
    let metrics = String::from_utf8(get(&d.addr, "/metrics").1).unwrap();
    assert!(metrics.contains("edgevision_build_info{"), "{metrics}");
    // The runtime's release, which scripts/setup pins and records beside it.
    let setup = std::fs::read_to_string(common::root().join("scripts/setup")).unwrap();
    let pinned = setup
        .lines()
        .find_map(|l| l.strip_prefix("LITERT_VERSION="))
        .expect("scripts/setup pins LITERT_VERSION");
    assert!(
        metrics.contains(&format!("runtime_version=\"{pinned}\"")),
        "{metrics}"
    );

    // STATUS carries the frame rate once frames flow (refreshed every 5 s).
    let status = sock.wait(20, "STATUS with fps", |m| {
        m.lines()
            .filter_map(|l| l.strip_prefix("STATUS="))
            .filter_map(|s| s.split(" fps").next()?.parse::<f64>().ok())
            .any(|fps| fps > 0.0)
    });
    assert!(status.contains("frames processed"), "{status}");

    // WATCHDOG_USEC=1 s: pings every half second while frames flow.
    let t = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        sock.wait(5, "WATCHDOG=1", |m| has_line(m, "WATCHDOG=1"));
        pings += 1;
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{:?} for 3 pings",
        t.elapsed()
    );

    d.signal(libc::SIGTERM);
    sock.wait(10, "STOPPING=1", |m| has_line(m, "STOPPING=1"));
    let status = d.wait_exit(10);
    assert!(status.success(), "{status:?}");
}

#[test]
fn no_watchdog_pings_without_watchdog_usec_or_for_another_pid() {
    let sock = NotifySocket::bind();
    let photos = photo_dir(&["dog.jpg"]);
    let d = start_with_env(
        &config(photos.path(), 0.5, 80),
        &[
            ("NOTIFY_SOCKET", &sock.path),
            ("WATCHDOG_USEC", "500000"),
            // systemd sets WATCHDOG_PID to the main pid; another pid means
            // the watchdog is not ours to feed.
            ("WATCHDOG_PID", "1"),
        ],
    );
    sock.wait(60, "READY=1", |m| has_line(m, "READY=1"));
    wait_for(30, "frames", || (get(&d.addr, "/readyz").0 == 200).then_some(()));
    let end = Instant::now() + Duration::from_secs(3);
    while let Some(m) = sock.recv(end.saturating_duration_since(Instant::now()).as_secs_f64()) {
        assert!(!has_line(&m, "WATCHDOG=1"), "unexpected ping: {m}");
        if Instant::now() >= end {
            break;
        }
    }
}

/// Parts of /stream.mjpg as (arrival, JPEG size), read by a background thread.
fn watch_stream(addr: &str) -> Arc<Mutex<Vec<(Instant, usize)>>> {
    let mut r = open_stream(addr, Duration::from_secs(120));
    let parts = Arc::new(Mutex::new(Vec::new()));
    let out = parts.clone();
    std::thread::spawn(move || {
        while let Ok(jpeg) = r.next_part() {
            out.lock().unwrap().push((Instant::now(), jpeg.len()));
        }
    });
    parts
}

fn labels_and_scores(addr: &str) -> Option<Vec<(String, f64)>> {
    let (code, body) = get(addr, "/api/detections");
    let v: Value = serde_json::from_slice(&body).ok()?;
    (code == 200).then_some(())?;
    Some(
        v["detections"]
            .as_array()?
            .iter()
            .map(|d| {
                (
                    d["label"].as_str().unwrap().to_string(),
                    d["score"].as_f64().unwrap(),
                )
            })
            .collect(),
    )
}

/// After the reload message: parts that arrived later, once `n` have.
fn parts_after(parts: &Mutex<Vec<(Instant, usize)>>, t: Instant, n: usize) -> Vec<usize> {
    wait_for(30, "stream parts after the reload", || {
        let p = parts.lock().unwrap();
        let after: Vec<usize> = p.iter().filter(|(at, _)| *at > t).map(|(_, s)| *s).collect();
        (after.len() >= n).then_some(after)
    })
}

#[test]
fn sighup_reloads_threshold_and_stream_settings_and_restarts_on_a_new_source() {
    let sock = NotifySocket::bind();
    let dogs = photo_dir(&["dog.jpg"]);
    let d = start_with_env(&config(dogs.path(), 0.5, 90), &[("NOTIFY_SOCKET", &sock.path)]);
    sock.wait(60, "READY=1", |m| has_line(m, "READY=1"));

    // dog .95, bicycle .91, car .88 at threshold 0.5.
    let before = wait_for(30, "three detections", || {
        labels_and_scores(&d.addr).filter(|v| v.len() >= 3)
    });
    assert!(before.iter().any(|(l, _)| l == "car"), "{before:?}");
    let parts = watch_stream(&d.addr);
    wait_for(20, "stream frames", || {
        (parts.lock().unwrap().len() >= 3).then_some(())
    });
    let big = parts.lock().unwrap().last().unwrap().1;

    // Threshold 0.9 and JPEG quality 30, in place.
    std::fs::write(&d.config, config(dogs.path(), 0.9, 30)).unwrap();
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    sock.wait(10, "RELOADING=1", |m| has_line(m, "RELOADING=1"));
    sock.wait(10, "READY=1 after the reload", |m| has_line(m, "READY=1"));
    let after = wait_for(20, "the new threshold in /api/detections", || {
        labels_and_scores(&d.addr).filter(|v| !v.iter().any(|(l, _)| l == "car"))
    });
    assert!(!after.is_empty(), "{after:?}");
    assert!(after.iter().all(|(_, s)| *s >= 0.9), "{after:?}");
    assert!(after.iter().any(|(l, _)| l == "dog"), "{after:?}");
    // The client connected before is still served, with smaller frames now.
    let sizes = parts_after(&parts, t, 5);
    let small = *sizes.last().unwrap();
    assert!(
        small * 10 < big * 7,
        "quality 30 frame {small} B vs quality 90 {big} B"
    );

    // A new source restarts the pipeline inside the process; same client.
    let people = photo_dir(&["person.jpg"]);
    std::fs::write(&d.config, config(people.path(), 0.5, 30)).unwrap();
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    sock.wait(10, "RELOADING=1", |m| has_line(m, "RELOADING=1"));
    sock.wait(60, "READY=1 after the restart", |m| has_line(m, "READY=1"));
    let now = wait_for(30, "person and horse", || {
        labels_and_scores(&d.addr)
            .filter(|v| v.iter().any(|(l, _)| l == "person") && v.iter().any(|(l, _)| l == "horse"))
    });
    // dog.jpg's bicycle is gone: the frames come from the new source.
    assert!(!now.iter().any(|(l, _)| l == "bicycle"), "{now:?}");
    parts_after(&parts, t, 5);

    // A config that no longer parses is refused; the daemon keeps going.
    std::fs::write(&d.config, "[detect]\nthreshold = 7\n").unwrap();
    d.signal(libc::SIGHUP);
    sock.wait(10, "READY=1 after a refused reload", |m| has_line(m, "READY=1"));
    let t = Instant::now();
    parts_after(&parts, t, 3);
    assert!(labels_and_scores(&d.addr)
        .unwrap()
        .iter()
        .any(|(l, _)| l == "person"));
}

/// A model that loads but fails on every inference: frames still go out
/// (without detections), yet the daemon says it is not ready, stops feeding
/// the watchdog so systemd restarts it, counts the failures and logs them
/// at a bounded rate.
#[test]
fn a_model_failing_every_inference_is_unready_unfed_counted_and_logged_sparingly() {
    use common::tiny_models::{build_failing_classifier, labels_file, TempFile, CLASSES};
    let sock = NotifySocket::bind();
    let photos = photo_dir(&["dog.jpg"]);
    let model = TempFile::new("failing.tflite", &build_failing_classifier());
    let labels = labels_file(&CLASSES);
    let config = format!(
        "[source]\nuri = \"images:{}\"\nfps = 20.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\nworkers = 1\n",
        photos.path().display(),
        model.path().display(),
        labels.path().display()
    );
    let d = start_with_env(
        &config,
        &[("NOTIFY_SOCKET", &sock.path), ("WATCHDOG_USEC", "1000000")],
    );
    sock.wait(60, "READY=1", |m| has_line(m, "READY=1"));
    let failing = edgevision::pipeline::FAILING_AFTER as f64;
    wait_for(30, "failed inferences counted", || {
        let m = common::daemon::metrics(&d.addr);
        (common::metric(&m, "edgevision_inference_errors_total")? >= failing).then_some(())
    });
    // The source works and frames go out: only inference fails.
    let m = common::daemon::metrics(&d.addr);
    assert_eq!(common::metric(&m, "edgevision_source_up"), Some(1.0), "{m}");
    let (code, body) = get(&d.addr, "/api/detections");
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 200);
    assert_eq!(report["signal"], true, "{report}");
    assert_eq!(report["detections"].as_array().map(Vec::len), Some(0), "{report}");
    // The flag is set just after the failure that made the count.
    wait_for(10, "/readyz 503", || {
        (get(&d.addr, "/readyz").0 == 503).then_some(())
    });

    // Pings sent before the failures were counted are still queued: drain.
    while sock.recv(0.05).is_some() {}
    // Six half-intervals of the 1 s watchdog without a ping; STATUS says why.
    let end = Instant::now() + Duration::from_secs(3);
    let mut status = String::new();
    while let Some(msg) = sock.recv(end.saturating_duration_since(Instant::now()).as_secs_f64()) {
        assert!(!has_line(&msg, "WATCHDOG=1"), "pinged while failing: {msg}");
        if let Some(s) = msg.lines().find_map(|l| l.strip_prefix("STATUS=")) {
            status = s.to_string();
        }
        if Instant::now() >= end {
            break;
        }
    }
    let status = if status.is_empty() {
        sock.wait(10, "STATUS", |m| m.contains("STATUS="))
    } else {
        status
    };
    assert!(status.contains("inference failing"), "{status}");

    // Every failure is counted; the log has one line for the first of them
    // and then at most one per 10 s.
    let errors = common::metric(
        &common::daemon::metrics(&d.addr),
        "edgevision_inference_errors_total",
    )
    .unwrap();
    // 20 fps for 3 s; a busy machine may run far fewer.
    assert!(errors >= 2.0 * failing, "{errors} failures counted");
    let lines = d.log_lines("inference failed:");
    assert!(
        (1..=2).contains(&lines.len()),
        "{} log lines for {errors} failures: {lines:?}",
        lines.len()
    );
    assert_eq!(d.log_lines("frames in a row").len(), 1);
    // LiteRT's own lines for a failed run: only for the first failure.
    let runtime_lines = d.log_lines("gather index out of bounds");
    assert!(runtime_lines.len() <= 2, "{runtime_lines:?}");
}

/// The model file overwritten in place with a corrupt one, then SIGHUP:
/// `check-config` (the unit's ExecReload) refuses it, and a reload that
/// goes ahead anyway keeps the running pipeline. Auth changes are not
/// applied by a reload, and the log says a restart is needed.
#[test]
fn a_reload_never_kills_the_daemon_and_says_what_takes_a_restart() {
    let photos = photo_dir(&["dog.jpg"]);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.tflite");
    let good = std::fs::read(common::coco_model()).unwrap();
    std::fs::write(&model, &good).unwrap();
    let body = format!(
        "[source]\nuri = \"images:{}\"\nfps = 10.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\nworkers = 1\n",
        photos.path().display(),
        model.display(),
        common::coco_labels().display()
    );
    let mut d = common::daemon::start_until_dog(&body);
    let frame = |addr: &str| -> u64 {
        let (_, body) = get(addr, "/api/detections");
        serde_json::from_slice::<Value>(&body).unwrap()["frame"]
            .as_u64()
            .unwrap()
    };

    // Corrupt in place: same path, new contents (half the file).
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    let out = common::run(common::bin().arg("check-config").arg(&d.config));
    assert_ne!(out.code, Some(0), "check-config passed a corrupt model");
    let err = &out.stderr;
    assert!(
        err.contains("model.path") && err.contains("model.tflite"),
        "{err}"
    );

    for round in 1..=2 {
        d.signal(libc::SIGHUP);
        wait_for(30, "the refused reload", || {
            (d.log_lines("keeping the current settings: the new model does not load")
                .len()
                >= round)
                .then_some(())
        });
        assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited");
        let before = frame(&d.addr);
        wait_for(10, "new frames", || (frame(&d.addr) > before).then_some(()));
        assert_eq!(get(&d.addr, "/readyz").0, 200);
        let (_, body) = get(&d.addr, "/api/detections");
        assert!(String::from_utf8_lossy(&body).contains("\"dog\""));
    }

    // The good file back: the next reload loads it.
    std::fs::write(&model, &good).unwrap();
    let out = common::run(common::bin().arg("check-config").arg(&d.config));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("model loads"), "{}", out.stdout);
    d.signal(libc::SIGHUP);
    wait_for(30, "the restart", || {
        (!d.log_lines("SIGHUP: pipeline restarted").is_empty()).then_some(())
    });

    // Bearer auth added: not applied by a reload, and the log says so.
    let token = "a-long-enough-token-for-the-test";
    std::fs::write(
        &d.config,
        format!("{body}[http.auth]\nmode = \"bearer\"\ntoken = \"{token}\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let warning = wait_for(30, "the restart warning", || {
        d.log_lines("which takes a restart").pop()
    });
    assert!(warning.contains("[http.auth]"), "{warning}");
    assert_eq!(get(&d.addr, "/api/detections").0, 200);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited");
}

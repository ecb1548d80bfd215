//! Several cameras in one daemon: each on its own paths and series, one
//! model for all, a fair share of inference each, and a reload that adds
//! or removes one camera without touching the others.

use std::time::{Duration, Instant};

use crate::common;
use common::daemon::{get, metrics, open_stream_at, start, Daemon};
use common::{photo_dir, wait_for};

/// The top of every config here: the COCO model, small frames.
fn head(extra_model: &str) -> String {
    format!(
        "[model]\npath = \"{}\"\nlabels = \"{}\"\n{extra_model}\n[source]\nwidth = 320\nheight = 240\n",
        common::coco_model().display(),
        common::coco_labels().display()
    )
}

fn camera(name: &str, uri: &str, fps: f32) -> String {
    format!("\n[[camera]]\nname = \"{name}\"\n[camera.source]\nuri = \"{uri}\"\nfps = {fps}\n")
}

fn json(d: &Daemon, path: &str) -> serde_json::Value {
    let (code, body) = get(&d.addr, path);
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A camera's sample of a per-camera series.
fn camera_metric(text: &str, name: &str, camera: &str) -> Option<f64> {
    let series = format!("{name}{{camera=\"{camera}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

fn cameras(d: &Daemon) -> Vec<serde_json::Value> {
    json(d, "/api/cameras")["cameras"].as_array().unwrap().clone()
}

#[test]
fn two_live_cameras_detect_and_stream_while_a_missing_one_shows_no_signal() {
    let photos = photo_dir(&["dog.jpg"]);
    let config = format!(
        "{}{}{}{}",
        head(""),
        camera("photos", &format!("images:{}", photos.path().display()), 5.0),
        camera("pattern", "test:", 5.0),
        camera("usb", "/dev/video63", 5.0),
    ) + &camera("ipcam", "rtsp://viewer:hunter2@127.0.0.1:9/stream1", 5.0);
    let d = start(&config);
    // Each camera's reports on its own path, named.
    wait_for(90, "the dog on camera photos", || {
        let (code, body) = get(&d.addr, "/cameras/photos/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    let pattern = wait_for(30, "a report of camera pattern", || {
        let (code, body) = get(&d.addr, "/cameras/pattern/api/detections");
        (code == 200).then(|| serde_json::from_slice::<serde_json::Value>(&body).unwrap())
    });
    assert_eq!(pattern["camera"], "pattern");
    assert_eq!(pattern["signal"], true);
    let usb = wait_for(30, "a report of camera usb", || {
        let (code, body) = get(&d.addr, "/cameras/usb/api/detections");
        (code == 200).then(|| serde_json::from_slice::<serde_json::Value>(&body).unwrap())
    });
    assert_eq!(
        (usb["camera"].as_str(), usb["signal"].as_bool()),
        (Some("usb"), Some(false))
    );
    // The unprefixed paths are the first camera's.
    assert_eq!(json(&d, "/api/detections")["camera"], "photos");

    // The list, in config order, with each camera's state.
    let list = wait_for(30, "both live cameras inferring", || {
        let list = cameras(&d);
        list[..2]
            .iter()
            .all(|c| c["inferences_per_second"].as_f64() > Some(0.0) && c["fps"].as_f64() > Some(0.0))
            .then_some(list)
    });
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["photos", "pattern", "usb", "ipcam"]);
    // An IP camera's password is never shown (nobody listens on port 9:
    // it is lost, like the USB camera).
    let ipcam = list[3]["source"].as_str().unwrap();
    assert!(
        ipcam.starts_with("rtsp://") && !ipcam.contains("hunter2"),
        "{ipcam}"
    );
    assert!(!String::from_utf8_lossy(&get(&d.addr, "/api/cameras").1).contains("hunter2"));
    assert_eq!(list[3]["signal"], false);
    for c in &list[..2] {
        assert_eq!(
            (c["signal"].as_bool(), c["ready"].as_bool()),
            (Some(true), Some(true)),
            "{c}"
        );
        assert!(c["fps"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert_eq!(
        (list[2]["signal"].as_bool(), list[2]["ready"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(list[2]["source"], "v4l2:/dev/video63");
    assert_eq!(list[2]["inference_share"], 0.0);

    // Readiness: the daemon's names the camera that is not; each camera's own.
    let (code, body) = get(&d.addr, "/readyz");
    assert_eq!(
        (code, String::from_utf8_lossy(&body).trim()),
        (503, "not ready: usb, ipcam")
    );
    assert_eq!(get(&d.addr, "/cameras/photos/readyz").0, 200);
    assert_eq!(get(&d.addr, "/cameras/usb/readyz").0, 503);
    assert_eq!(get(&d.addr, "/cameras/nope/snapshot.jpg").0, 404);

    // Streams per camera: the pattern's frames, and the lost camera's
    // no-signal frames, each a JPEG of its own.
    let mut s = open_stream_at(&d.addr, "/cameras/pattern/stream.mjpg", Duration::from_secs(10));
    let pattern_jpeg = s.next_part().unwrap();
    let mut s = open_stream_at(&d.addr, "/cameras/usb/stream.mjpg", Duration::from_secs(10));
    let usb_jpeg = s.next_part().unwrap();
    assert_ne!(pattern_jpeg, usb_jpeg);
    assert_eq!(image::load_from_memory(&pattern_jpeg).unwrap().width(), 320);

    // Every per-camera series carries its camera.
    let m = metrics(&d.addr);
    for cam in ["photos", "pattern"] {
        assert!(
            camera_metric(&m, "edgevision_frames_processed_total", cam) > Some(0.0),
            "{m}"
        );
        assert_eq!(camera_metric(&m, "edgevision_source_up", cam), Some(1.0), "{m}");
    }
    assert_eq!(camera_metric(&m, "edgevision_source_up", "usb"), Some(0.0), "{m}");
    // A lost camera is retried, not failed: nothing says it stopped.
    for cam in ["photos", "usb"] {
        assert_eq!(
            camera_metric(&m, "edgevision_source_failed", cam),
            Some(0.0),
            "{m}"
        );
    }
    assert_eq!(list[2]["failed"], serde_json::Value::Null);
    assert!(
        m.contains("edgevision_detections_total{camera=\"photos\",label=\"dog\"}"),
        "{m}"
    );

    // The page: a grid at the top, each camera's page under its path.
    let (_, grid) = get(&d.addr, "/");
    assert!(String::from_utf8_lossy(&grid).contains("api/cameras"));
    let (code, page) = get(&d.addr, "/cameras/photos/");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("stream.mjpg"));
}

#[test]
fn busy_cameras_share_inference_evenly_and_a_slow_one_gets_its_rate() {
    let photos = photo_dir(&["dog.jpg", "person.jpg"]);
    let images = format!("images:{}", photos.path().display());
    // One single-threaded interpreter; two sources read as fast as they
    // can (they want all of it) and one at 2 frames/s.
    let config = format!(
        "{}{}{}{}",
        head("workers = 1\nthreads = 1\n"),
        camera("a", &images, 0.0),
        camera("b", &images, 0.0),
        camera("slow", "test:", 2.0),
    );
    let d = start(&config);
    let counts = |d: &Daemon| {
        let m = metrics(&d.addr);
        ["a", "b", "slow"].map(|c| camera_metric(&m, "edgevision_inference_seconds_count", c).unwrap_or(0.0))
    };
    wait_for(90, "every camera inferring", || {
        counts(&d).iter().all(|n| *n > 0.0).then_some(())
    });
    let (t0, before) = (Instant::now(), counts(&d));
    std::thread::sleep(Duration::from_secs(8));
    let after = counts(&d);
    let secs = t0.elapsed().as_secs_f64();
    let [a, b, slow] = [0, 1, 2].map(|i| after[i] - before[i]);
    eprintln!("inferences in {secs:.1} s: a {a}, b {b}, slow {slow}");
    assert!(a + b > 10.0, "a {a}, b {b}");
    let share = a / (a + b);
    assert!((0.4..=0.6).contains(&share), "a {a}, b {b}: a's share {share:.2}");
    // The slow camera is not starved by the busy ones: it gets its 2 a
    // second, or a third of what the interpreter made when that is less
    // (a busy machine).
    let fair = (2.0f64).min((a + b + slow) / secs / 3.0);
    assert!(
        slow / secs >= 0.75 * fair,
        "slow camera: {slow} inferences in {secs:.1} s, its fair share {fair:.2}/s"
    );
    let list = cameras(&d);
    let shares: Vec<f64> = list
        .iter()
        .map(|c| c["inference_share"].as_f64().unwrap())
        .collect();
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 0.01, "{shares:?}");
    assert!((shares[0] - shares[1]).abs() < 0.25, "{shares:?}");
}

#[test]
fn sighup_adds_and_removes_a_camera_while_the_others_stream_on() {
    let photos = photo_dir(&["dog.jpg"]);
    let first = camera("photos", &format!("images:{}", photos.path().display()), 10.0);
    let second = camera("pattern", "test:", 10.0);
    let added = camera("added", "test:", 5.0);
    let d = start(&format!("{}{first}{second}", head("")));
    wait_for(90, "camera pattern inferring", || {
        let list = cameras(&d);
        (list.len() == 2 && list[1]["inferences_per_second"].as_f64() > Some(0.0)).then_some(())
    });
    let mut stream = open_stream_at(&d.addr, "/cameras/photos/stream.mjpg", Duration::from_secs(10));
    stream.next_part().unwrap();
    // Read camera photos' stream across the reload, timing its frames.
    let reader = std::thread::spawn(move || {
        let (start, mut last, mut gap) = (Instant::now(), Instant::now(), Duration::ZERO);
        while start.elapsed() < Duration::from_secs(6) {
            stream.next_part().expect("the stream goes on");
            gap = gap.max(last.elapsed());
            last = Instant::now();
        }
        gap
    });
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&d.config, format!("{}{first}{second}{added}", head(""))).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(60, "camera added streaming", || {
        let (code, body) = get(&d.addr, "/cameras/added/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"signal\":true")).then_some(())
    });
    let gap = reader.join().unwrap();
    assert!(
        gap < Duration::from_secs(1),
        "camera photos' stream stopped for {gap:?}"
    );
    assert_eq!(cameras(&d).len(), 3);
    assert_eq!(d.log_lines("camera added added").len(), 1);
    assert!(d.log_lines("starting it again").is_empty(), "no camera restarted");

    // Removing one: its paths and series go, the others stay.
    std::fs::write(&d.config, format!("{}{first}{added}", head(""))).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "camera pattern removed", || {
        (cameras(&d).len() == 2).then_some(())
    });
    let names: Vec<String> = cameras(&d)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["photos", "added"]);
    assert_eq!(get(&d.addr, "/cameras/pattern/api/detections").0, 404);
    let m = metrics(&d.addr);
    assert!(!m.contains("camera=\"pattern\""), "{m}");
    assert!(camera_metric(&m, "edgevision_frames_processed_total", "added") > Some(0.0));
}

#[test]
fn check_config_names_the_camera_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cams.toml");
    let text = format!(
        "{}{}\n[camera.detect]\nthreshold = 1.5\n",
        head(""),
        camera("door", "test:", 5.0)
    );
    let line = text.lines().position(|l| l == "threshold = 1.5").unwrap() + 1;
    std::fs::write(&file, &text).unwrap();
    let out = common::run(common::bin().args(["check-config", "--skip-model"]).arg(&file));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let want = format!("cams.toml:{line}: camera \"door\": detect.threshold");
    assert!(out.stderr.contains(&want), "{}", out.stderr);
}

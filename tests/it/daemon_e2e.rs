//! `edgevision run` end to end: the real binary on real photos, read by
//! real HTTP clients (and, in `browser.rs`, a real browser).

use crate::common;

use common::daemon::{get, metrics, open_stream, start};
use common::{metric, photo_dir, wait_for};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Reads `n` JPEG parts from /stream.mjpg.
fn stream_frames(addr: &str, n: usize) -> Vec<Vec<u8>> {
    let mut r = open_stream(addr, Duration::from_secs(20));
    (0..n)
        .map(|_| r.next_part().expect("the stream ended early"))
        .collect()
}

fn demo_config(source: &str, extra: &str) -> String {
    format!(
        r#"
[source]
uri = "{source}"
width = 640
height = 480
fps = 10.0
stall_timeout = 2.0
reconnect_max_backoff = 1.0
{extra}

[model]
path = "{model}"
labels = "{labels}"
threads = 1

[detect]
threshold = 0.5

[stream]
quality = 85
"#,
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

#[test]
fn serves_annotated_frames_detections_metrics_and_events() {
    // Only dog.jpg: the stream should show a dog, a bicycle and a car.
    let photos = photo_dir(&["dog.jpg"]);
    let d = start(&demo_config(&format!("images:{}", photos.path().display()), ""));

    // Ready once frames flow.
    wait_for(60, "/readyz", || (get(&d.addr, "/readyz").0 == 200).then_some(()));
    assert_eq!(get(&d.addr, "/healthz").0, 200);

    // The latest detections list the expected labels.
    let report: Value = wait_for(30, "detections", || {
        let (code, body) = get(&d.addr, "/api/detections");
        let v: Value = serde_json::from_slice(&body).ok()?;
        (code == 200 && v["detections"].as_array().is_some_and(|a| a.len() >= 3)).then_some(v)
    });
    let labels: Vec<&str> = report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    for want in ["dog", "bicycle", "car"] {
        assert!(labels.contains(&want), "{labels:?}");
    }
    assert!(report["frame"].as_u64().unwrap() > 0);
    assert_eq!(report["signal"], true);

    // The stream yields valid JPEGs of the configured size, with boxes drawn
    // in the label's colour where the API says the dog is.
    let frames = stream_frames(&d.addr, 3);
    let img = image::load_from_memory(frames.last().unwrap())
        .expect("valid JPEG")
        .to_rgb8();
    assert_eq!(img.dimensions(), (640, 480));
    let dog = report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == "dog")
        .unwrap();
    assert_boxed(&img, dog, "dog");

    // Snapshot too.
    let (code, body) = get(&d.addr, "/snapshot.jpg");
    assert_eq!(code, 200);
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 640);

    // Metrics parse and count frames, rising over time.
    let first = metric(&metrics(&d.addr), "edgevision_frames_processed_total").expect("frames metric");
    let later = wait_for(10, "frames to rise", || {
        let v = metric(&metrics(&d.addr), "edgevision_frames_processed_total")?;
        (v > first).then_some(v)
    });
    assert!(later > first);
    let text = metrics(&d.addr);
    assert!(metric(&text, "edgevision_capture_fps").unwrap() > 0.0, "{text}");
    assert!(
        text.contains("edgevision_detections_total{camera=\"default\",label=\"dog\"}"),
        "{text}"
    );
    assert!(text.contains("edgevision_build_info{"), "{text}");
    // The process collector: this daemon's own memory, CPU, descriptors.
    let rss = metric(&text, "process_resident_memory_bytes").expect("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "resident memory {rss}");
    assert!(metric(&text, "process_open_fds").unwrap_or(0.0) >= 3.0, "{text}");
    assert!(
        metric(&text, "process_start_time_seconds").unwrap_or(0.0) > 1.6e9,
        "{text}"
    );
    assert!(text.contains("process_cpu_seconds_total"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "unparsable sample: {line}");
    }

    // Server-Sent Events arrive, one per processed frame.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut events = Vec::new();
    while events.len() < 3 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if let Some(json) = line.strip_prefix("data: ") {
            events.push(
                serde_json::from_str::<Value>(json.trim()).expect("event JSON")["frame"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
    assert!(events.windows(2).all(|w| w[1] > w[0]), "{events:?}");
}

/// Along the top edge of the box the API reports, most pixels have the
/// label's colour (JPEG blurs it a little).
fn assert_boxed(img: &image::RgbImage, det: &Value, label: &str) {
    let b = common::json_box(&det["box"]);
    let colour = edgevision::annotate::label_color(label);
    let near = |p: &image::Rgb<u8>| {
        p.0.iter()
            .zip(colour.0.iter())
            .all(|(a, b)| (*a as i32 - *b as i32).abs() < 70)
    };
    // The frame may be a different pan position than the report; search a
    // band around the reported edges for a line of the label colour.
    let (x0, x1) = (b[0].max(0.0) as u32, (b[2] as u32).min(img.width() - 1));
    let mut best = 0usize;
    for y in 0..img.height() {
        let run = (x0..=x1).filter(|x| near(img.get_pixel(*x, y))).count();
        best = best.max(run);
    }
    let width = (x1 - x0) as usize;
    assert!(
        best * 2 > width,
        "no {label}-coloured box edge: best run {best} of {width}"
    );
}

#[test]
fn recovers_when_the_source_goes_away_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("cam.mjpg");
    // An MJPEG file of two real photos, as `ffmpeg -f mjpeg` would write.
    let mut bytes = Vec::new();
    for p in ["dog.jpg", "person.jpg"] {
        bytes.extend(std::fs::read(common::photo(p)).unwrap());
    }
    std::fs::write(&video, &bytes).unwrap();
    let d = start(&demo_config(&format!("mjpeg:{}", video.display()), ""));
    wait_for(60, "ready", || (get(&d.addr, "/readyz").0 == 200).then_some(()));
    let before = metric(&metrics(&d.addr), "edgevision_camera_reconnects_total").unwrap_or(0.0);
    assert_eq!(metric(&metrics(&d.addr), "edgevision_source_up"), Some(1.0));

    std::fs::remove_file(&video).unwrap();
    wait_for(20, "not ready after the source vanished", || {
        (get(&d.addr, "/readyz").0 == 503).then_some(())
    });
    assert_eq!(metric(&metrics(&d.addr), "edgevision_source_up"), Some(0.0));
    wait_for(
        5,
        "processing_fps 0 while only no-signal frames are published",
        || (metric(&metrics(&d.addr), "edgevision_processing_fps")? == 0.0).then_some(()),
    );
    wait_for(10, "the no-signal frame", || {
        let report: Value = serde_json::from_slice(&get(&d.addr, "/api/detections").1).ok()?;
        (report["signal"] == false).then_some(())
    });
    let (code, body) = get(&d.addr, "/snapshot.jpg");
    assert_eq!(code, 200);
    assert!(image::load_from_memory(&body).is_ok());

    std::fs::write(&video, &bytes).unwrap();
    wait_for(30, "ready again", || {
        (get(&d.addr, "/readyz").0 == 200).then_some(())
    });
    let after = wait_for(10, "reconnect counted", || {
        let v = metric(&metrics(&d.addr), "edgevision_camera_reconnects_total")?;
        (v > before).then_some(v)
    });
    assert!(after >= before + 1.0);
    assert_eq!(metric(&metrics(&d.addr), "edgevision_source_up"), Some(1.0));
    let processed = metric(&metrics(&d.addr), "edgevision_frames_processed_total").unwrap();
    wait_for(10, "frames flowing again", || {
        (metric(&metrics(&d.addr), "edgevision_frames_processed_total")? > processed).then_some(())
    });
}

#[test]
fn stops_within_two_seconds_on_sigterm() {
    let d = start(&demo_config("test:", ""));
    wait_for(60, "ready", || (get(&d.addr, "/readyz").0 == 200).then_some(()));
    // Keep a stream client connected: shutdown must not wait for it.
    let _client = TcpStream::connect(&d.addr).and_then(|mut s| {
        write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        Ok(s)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut d = d;
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(5);
    let took = t.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// One frame every 20 s, or every 1000 s: the capture thread sleeps
/// between frames, and SIGTERM must still end the daemon within 2 s.
#[test]
fn stops_within_two_seconds_whatever_the_frame_rate() {
    let photos = common::photo_dir(&["dog.jpg"]);
    let images = format!("images:{}", photos.path().display());
    for (uri, fps) in [("test:", 0.05), (images.as_str(), 0.001)] {
        let config = format!(
            "[source]\nuri = \"{uri}\"\nfps = {fps}\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\nworkers = 1\n",
            common::coco_model().display(),
            common::coco_labels().display()
        );
        let mut d = start(&config);
        wait_for(60, "the first frame", || {
            (get(&d.addr, "/readyz").0 == 200).then_some(())
        });
        // The capture thread is asleep until the next frame is due.
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        d.signal(libc::SIGTERM);
        let status = common::poll(Duration::from_secs(30), Duration::from_millis(10), || {
            d.child.try_wait().ok().flatten()
        })
        .expect("exit");
        let took = t.elapsed();
        assert!(status.success(), "{uri} at {fps} fps: exit status {status:?}");
        assert!(took < Duration::from_secs(2), "{uri} at {fps} fps: took {took:?}");
    }
}

#[test]
fn bad_config_and_busy_port_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[source]\nuri = \"rtsp://camera:port/x\"\n").unwrap();
    let out = common::run(common::bin().args(["run", "--config"]).arg(&cfg));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("bad.toml:2") && out.stderr.contains("source.uri"),
        "{}",
        out.stderr
    );

    let missing = Path::new("/nonexistent/model.tflite");
    let out = common::run(
        common::bin()
            .args(["run", "--source", "test:", "--model"])
            .arg(missing),
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("/nonexistent/model.tflite"), "{}", out.stderr);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = common::run(
        common::bin()
            .args([
                "run",
                "--source",
                "test:",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--model",
            ])
            .arg(common::coco_model()),
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

#[test]
fn bench_runs_the_pipeline_headless_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mjpg");
    let mut bytes = Vec::new();
    for p in ["dog.jpg", "person.jpg", "eagle.jpg"] {
        bytes.extend(std::fs::read(common::photo(p)).unwrap());
    }
    std::fs::write(&video, &bytes).unwrap();
    let v = bench_json(&["--frames", "12"], &video);
    assert!(v["frames"].as_u64().unwrap() >= 12);
    assert!(v["fps"].as_f64().unwrap() > 0.0 && v["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(v["threads"], 1);
    for stage in ["decode", "preprocess", "infer", "annotate", "encode"] {
        assert!(v["stage_ms"][stage].as_f64().unwrap() > 0.0, "stage {stage}: {v}");
    }
    let (p50, p99) = (
        v["latency_ms"]["p50"].as_f64().unwrap(),
        v["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{v}");
}

fn short_video(dir: &std::path::Path) -> std::path::PathBuf {
    let video = dir.join("clip.mjpg");
    let mut bytes = Vec::new();
    for p in ["dog.jpg", "chelsea.png", "astronaut.png"] {
        let img = image::open(common::photo(p)).unwrap().to_rgb8();
        let img = image::imageops::resize(&img, 320, 240, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
            .encode_image(&img)
            .unwrap();
        bytes.extend(jpeg);
    }
    std::fs::write(&video, &bytes).unwrap();
    video
}

fn bench_json(extra: &[&str], video: &std::path::Path) -> Value {
    let out = common::run(
        common::bin()
            .args(["bench", "--threads", "1", "--json", "--source"])
            .arg(format!("mjpeg:{}", video.display()))
            .arg("--model")
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .args(extra),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(out.stdout.trim()).expect("one JSON object")
}

#[test]
fn bench_compares_frame_rates_with_and_without_stream_clients() {
    let dir = tempfile::tempdir().unwrap();
    let video = short_video(dir.path());
    let v = bench_json(
        &["--compare-clients", "3", "--rounds", "2", "--phase-seconds", "1"],
        &video,
    );
    assert_eq!(v["clients"], 3);
    for key in [
        "fps_without_clients",
        "fps_with_clients",
        "slowest_client_fps",
        "paired_ratios",
    ] {
        let a = v[key].as_array().unwrap_or_else(|| panic!("{key}: {v}"));
        assert_eq!(a.len(), 2, "{key}: {v}");
        assert!(a.iter().all(|x| x.as_f64().unwrap() > 0.0), "{key}: {v}");
    }
    assert!(v["cost_percent"].as_f64().is_some(), "{v}");
}

#[test]
fn bench_soak_reports_resident_memory_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let video = short_video(dir.path());
    let v = bench_json(&["--seconds", "3", "--clients", "2"], &video);
    assert!(v["frames"].as_u64().unwrap() > 0, "{v}");
    assert!(v["client_frames_min"].as_u64().unwrap() > 0, "{v}");
    let max = v["rss_mb"]["max"].as_f64().unwrap();
    assert!(max > 5.0 && max < 2000.0, "{v}");
    assert!(v["rss_mb"]["end"].as_f64().unwrap() <= max, "{v}");
}

/// `bench` with the default layout (workers = threads = 0) on all cores and
/// pinned to one core with `taskset`: the layout fits the cores it was given
/// and the JSON reports it, with the CPU time per frame.
#[test]
fn automatic_layout_fits_the_cores_the_process_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let video = short_video(dir.path());
    let bench = |pin: Option<&str>| -> Value {
        let mut cmd = match pin {
            Some(cpus) => {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", cpus])
                    .arg(env!("CARGO_BIN_EXE_edgevision"))
                    .current_dir(common::root())
                    .env_remove("EDGEVISION_LITERT");
                c
            }
            None => common::bin(),
        };
        cmd.args(["bench", "--frames", "8", "--json", "--source"])
            .arg(format!("mjpeg:{}", video.display()))
            .arg("--model")
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels());
        let out = common::run(&mut cmd);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        serde_json::from_str(out.stdout.trim()).expect("one JSON object")
    };
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let all = bench(None);
    let layout = &all["layout"];
    assert_eq!(layout["cores"], cores, "{all}");
    assert_eq!(layout["auto"], true, "{all}");
    let (w, t) = (
        layout["workers"].as_u64().unwrap(),
        layout["threads"].as_u64().unwrap(),
    );
    assert!(w >= 1 && t >= 1 && w * t <= cores, "{all}");
    assert_eq!(
        (all["workers"].as_u64(), all["threads"].as_u64()),
        (Some(w), Some(t))
    );
    let cpu = all["cpu_ms_per_frame"].as_f64().unwrap();
    assert!(cpu > 0.0, "{all}");

    let one = bench(Some("0"));
    assert_eq!(one["layout"]["cores"], 1, "{one}");
    assert_eq!(
        (one["workers"].as_u64(), one["threads"].as_u64()),
        (Some(1), Some(1)),
        "{one}"
    );
}

/// With both `workers` and `threads` automatic and a source at 5 fps, one
/// interpreter on all cores keeps up (it needs well under 140 ms here), so
/// that lowest-latency layout is used rather than one per core.
#[test]
fn a_paced_source_gets_one_interpreter_on_all_cores_when_it_keeps_up() {
    let d = start(&format!(
        "[source]\nuri = \"test:\"\nfps = 5.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\n",
        common::coco_model().display(),
        common::coco_labels().display()
    ));
    wait_for(60, "ready", || (get(&d.addr, "/readyz").0 == 200).then_some(()));
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let m = metrics(&d.addr);
    assert_eq!(metric(&m, "edgevision_inference_workers"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "edgevision_inference_threads"), Some(cores), "{m}");
}

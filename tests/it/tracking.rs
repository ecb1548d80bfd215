//! Objects, zones, lines, events, snapshots and webhooks (issue 16), end to
//! end: clips made with ffmpeg from the dog photo, so the truth is known,
//! played to the real daemon with the real model; events collected by a
//! real HTTP webhook receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common;
use common::daemon::{get, metrics, start, Daemon};
use common::wait_for;

const TOKEN: &str = "webhook-test-token-81f3";

use crate::sources::ffmpeg;

/// The dog, cropped from `dog.jpg`, on a grey 640x480 background at `x`
/// (overlay expression, `n` = frame number), `frames` frames from
/// `dir/PREFIX001.jpg`.
fn dog_frames(dir: &Path, prefix: &str, x: &str, frames: usize) {
    let dog = common::photo("dog.jpg");
    let pattern = dir.join(format!("{prefix}%03d.jpg"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x808080:s=640x480:r=10",
        "-i",
        dog.to_str().unwrap(),
        "-filter_complex",
        &format!("[1]crop=260:376:90:200[p];[0][p]overlay=x='{x}':y=104"),
        "-frames:v",
        &frames.to_string(),
        pattern.to_str().unwrap(),
    ]);
}

/// `frames` frames of the background alone, from `dir/PREFIX001.jpg`.
fn empty_frames(dir: &Path, prefix: &str, frames: usize) {
    let pattern = dir.join(format!("{prefix}%03d.jpg"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x808080:s=640x480:r=10",
        "-frames:v",
        &frames.to_string(),
        pattern.to_str().unwrap(),
    ]);
}

/// The clip of the crossing tests: the dog walks left to right across
/// the middle of the picture in 30 frames, then 15 frames without it.
fn crossing_clip() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    dog_frames(dir.path(), "a", "-40+n*15", 30);
    empty_frames(dir.path(), "b", 15);
    dir
}

/// A real HTTP server collecting what webhooks POST.
struct Receiver {
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    auth: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(Vec::new()));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let (ev, au) = (events.clone(), auth.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (ev, au) = (ev.clone(), au.clone());
                std::thread::spawn(move || serve(conn, &ev, &au));
            }
        });
        Receiver { port, events, auth }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, events: &Mutex<Vec<Value>>, auth: &Mutex<Vec<String>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(&conn);
    let mut len = 0usize;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => len = value.trim().parse().unwrap(),
            "authorization" => auth.lock().unwrap().push(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    events
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    (&conn)
        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        .unwrap();
}

fn config(dir: &Path, fps: f32, extra: &str) -> String {
    format!(
        r#"
[source]
uri = "images:{dir}"
width = 640
height = 480
fps = {fps}
seconds_per_image = 0.1

[model]
path = "{model}"
labels = "{labels}"
threads = 1
workers = 1

[detect]
threshold = 0.8
allow = ["dog"]

[tracking]
min_hits = 2
max_age = 5
{extra}
"#,
        dir = dir.display(),
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

fn webhook(port: u16, queue: usize) -> String {
    format!(
        r#"
[[webhook]]
url = "http://127.0.0.1:{port}/hook"
token = "{TOKEN}"
queue = {queue}
"#
    )
}

/// The events about object `id`, as `type` or `update:reason`.
fn story(events: &[Value], id: u64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["object"]["id"] == id)
        .map(|e| match e["reason"].as_str() {
            Some(r) => format!("update:{r}"),
            None => e["type"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn first_ended(events: &[Value]) -> Option<u64> {
    events
        .iter()
        .find(|e| e["type"] == "end")
        .and_then(|e| e["object"]["id"].as_u64())
}

fn json(d: &Daemon, path: &str) -> Value {
    let (code, body) = get(&d.addr, path);
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn a_dog_crossing_a_line_once_is_one_object_one_crossing_and_one_zone_entry() {
    let clip = crossing_clip();
    let hook = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap());
    let extra = format!(
        r#"
[[zone]]
name = "right"
polygon = [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]]
min_frames = 3

[[line]]
name = "middle"
points = [[0.5, 1.0], [0.5, 0.0]]
{}"#,
        webhook(hook.port, 1000)
    );
    // As fast as frames can be processed, each one (file sources are read
    // on demand): the clip plays over and over.
    let d = start(&config(clip.path(), 0.0, &extra));
    let (events, id) = wait_for(120, "a dog's whole story at the webhook", || {
        let ev = hook.events();
        first_ended(&ev).map(|id| (ev, id))
    });
    let s = story(&events, id);
    assert_eq!(s.first().map(String::as_str), Some("new"), "{s:?}");
    assert_eq!(s.last().map(String::as_str), Some("end"), "{s:?}");
    assert_eq!(s.iter().filter(|k| *k == "new").count(), 1, "{s:?}");
    assert_eq!(
        s.iter().filter(|k| *k == "update:line_crossed").count(),
        1,
        "{s:?}"
    );
    assert_eq!(
        s.iter().filter(|k| *k == "update:zone_entered").count(),
        1,
        "{s:?}"
    );
    let crossing = events
        .iter()
        .find(|e| e["object"]["id"] == id && e["reason"] == "line_crossed")
        .unwrap();
    assert_eq!(crossing["line"], "middle");
    // The line is drawn bottom to top; its right is the right of the picture.
    assert_eq!(crossing["direction"], "forward", "{crossing}");
    let end = events
        .iter()
        .find(|e| e["object"]["id"] == id && e["type"] == "end")
        .unwrap();
    let obj = &end["object"];
    assert_eq!(obj["label"], "dog");
    assert_eq!(obj["entered_zones"], serde_json::json!(["right"]));
    assert_eq!(obj["crossings"].as_array().unwrap().len(), 1);
    assert!(obj["score"].as_f64().unwrap() >= 0.8, "{obj}");
    assert!(obj["end_ms"].as_u64().unwrap() > obj["start_ms"].as_u64().unwrap());
    // Every event reached the receiver with the token.
    assert!(hook
        .auth
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == &format!("Bearer {TOKEN}")));

    // The same story from the daemon's own API and metrics.
    let recent = json(&d, "/api/events/recent?limit=100");
    let ended: Vec<&Value> = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"]["id"] == id)
        .collect();
    assert_eq!(ended.len(), 1, "{recent}");
    assert_eq!(ended[0]["type"], "end");
    let m = metrics(&d.addr);
    let crossings = metric_labelled(
        &m,
        r#"edgevision_line_crossings_total{camera="default",direction="forward",label="dog",line="middle"}"#,
    );
    assert!(crossings >= 1.0, "{m}");
    assert_eq!(
        metric_labelled(
            &m,
            r#"edgevision_line_crossings_total{camera="default",direction="backward",label="dog",line="middle"}"#
        ),
        0.0,
        "the jump back to the start of the clip is no crossing"
    );
    assert!(
        metric_labelled(
            &m,
            r#"edgevision_object_events_total{camera="default",label="dog",type="new"}"#
        ) >= 1.0
    );
    // The reports name the object each box is.
    let report = json(&d, "/api/detections");
    for det in report["detections"].as_array().unwrap() {
        assert!(
            det["id"].as_u64().is_some_and(|i| i >= id) || det.get("id").is_none(),
            "{det}"
        );
    }
}

/// A labelled sample's value; 0 when absent.
fn metric_labelled(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_zone_needs_its_inertia_and_a_still_dog_becomes_stationary_once() {
    // Outside the porch (anchor at x 0.43), two frames just inside (0.53),
    // back out, then inside for good: only the last visit enters.
    let dir = tempfile::tempdir().unwrap();
    let frame = |name: &str, x: &str| dog_frames(dir.path(), name, x, 1);
    frame("a", "140");
    frame("b", "200");
    let copy = |from: &str, to: String| std::fs::copy(dir.path().join(from), dir.path().join(to)).unwrap();
    let mut n = 0;
    let mut put = |from: &str, count: usize| {
        for _ in 0..count {
            n += 1;
            copy(from, format!("f{n:03}.jpg"));
        }
    };
    put("a001.jpg", 6);
    put("b001.jpg", 2);
    put("a001.jpg", 6);
    put("b001.jpg", 10);
    std::fs::remove_file(dir.path().join("a001.jpg")).unwrap();
    // The last frame stays: the source ends there and is not looped.
    std::fs::remove_file(dir.path().join("b001.jpg")).unwrap();
    put_last(dir.path(), n);

    let hook = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap());
    let extra = format!(
        r#"
stationary_seconds = 2.0

[[zone]]
name = "porch"
polygon = [[0.48, 0.0], [1.0, 0.0], [1.0, 1.0], [0.48, 1.0]]
min_frames = 3
{}"#,
        webhook(hook.port, 1000)
    );
    // Ten frames a second; the clip plays once, then its last frame stays.
    let cfg = config(dir.path(), 10.0, &extra)
        .replace("seconds_per_image = 0.1", "seconds_per_image = 0.1\nloop = false");
    let d = start(&cfg);
    let events = wait_for(60, "the dog stationary", || {
        let ev = hook.events();
        ev.iter().any(|e| e["reason"] == "stationary").then_some(ev)
    });
    let id = events[0]["object"]["id"].as_u64().unwrap();
    let s = story(&events, id);
    assert_eq!(
        s,
        ["new", "update:zone_entered", "update:stationary"],
        "{events:#?}"
    );
    let entered = events.iter().find(|e| e["reason"] == "zone_entered").unwrap();
    assert_eq!(entered["zone"], "porch");
    // Standing still: nothing more, however long.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(story(&hook.events(), id).len(), 3, "{:#?}", hook.events());
    let objects = json(&d, "/api/objects");
    let list = objects["objects"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{objects}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["stationary"], true);
    assert_eq!(list[0]["zones"], serde_json::json!(["porch"]));
    let m = metrics(&d.addr);
    assert_eq!(
        metric_labelled(&m, r#"edgevision_objects{camera="default",label="dog"}"#),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_labelled(
            &m,
            r#"edgevision_zone_objects{camera="default",label="dog",zone="porch"}"#
        ),
        1.0,
        "{m}"
    );
}

/// Holds the clip's last frame: a source that stops after its last file
/// ends the daemon, so the last picture is repeated for a minute.
fn put_last(dir: &Path, n: usize) {
    let last = dir.join(format!("f{n:03}.jpg"));
    for i in 1..=600 {
        std::fs::copy(&last, dir.join(format!("f{:03}.jpg", n + i))).unwrap();
    }
}

/// A daemon playing the crossing clip with a line and pictures kept; for
/// the page's test.
pub fn crossing_daemon_with_pictures() -> (Daemon, tempfile::TempDir, tempfile::TempDir) {
    let clip = crossing_clip();
    let snaps = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[line]]\nname = \"middle\"\npoints = [[0.5, 1.0], [0.5, 0.0]]\n[events]\nsnapshot_dir = \"{}\"\n",
        snaps.path().display()
    );
    (start(&config(clip.path(), 0.0, &extra)), clip, snaps)
}

#[test]
fn snapshots_are_written_served_and_kept_within_their_count() {
    let clip = crossing_clip();
    let snaps = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[events]
snapshot_dir = "{}"
snapshot_max_count = 2
"#,
        snaps.path().display()
    );
    let d = start(&config(clip.path(), 0.0, &extra));
    // Three dogs have ended: three pictures taken, two kept.
    let recent = wait_for(120, "three dogs ended", || {
        let r = json(&d, "/api/events/recent?limit=10");
        (r["events"].as_array().unwrap().len() >= 3).then_some(r)
    });
    let files: Vec<_> = std::fs::read_dir(snaps.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    assert!(files.len() <= 2, "retention: {files:?}");
    assert!(!files.is_empty());
    let newest = &recent["events"][0]["object"];
    let id = newest["id"].as_u64().unwrap();
    assert_eq!(newest["snapshot"], format!("/api/events/{id}/snapshot.jpg"));
    let (code, jpeg) = get(&d.addr, &format!("/api/events/{id}/snapshot.jpg"));
    assert_eq!(code, 200);
    let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 480));
    // The dog's box is drawn: pixels of its colour along the box's top.
    let [r, g, b] = edgevision::annotate::label_color("dog").0;
    let coloured = img
        .pixels()
        .filter(|p| {
            (p[0] as i32 - r as i32).abs() < 40
                && (p[1] as i32 - g as i32).abs() < 40
                && (p[2] as i32 - b as i32).abs() < 40
        })
        .count();
    assert!(coloured > 300, "{coloured} pixels of the box colour");
    // The oldest dog's picture is gone, and so is its URL.
    let oldest = recent["events"][2]["object"]["id"].as_u64().unwrap();
    assert_eq!(get(&d.addr, &format!("/api/events/{oldest}/snapshot.jpg")).0, 404);
    assert!(metric_labelled(&metrics(&d.addr), "edgevision_snapshots_written_total") >= 3.0);
}

#[test]
fn an_unwritable_snapshot_directory_is_a_warning_and_frames_go_on() {
    let clip = crossing_clip();
    let tmp = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be written (root
    // ignores permissions, not this).
    let not_a_dir = tmp.path().join("snapshots");
    std::fs::write(&not_a_dir, b"in the way").unwrap();
    let extra = format!("[events]\nsnapshot_dir = \"{}\"\n", not_a_dir.display());
    let d = start(&config(clip.path(), 10.0, &extra));
    // The same clip without pictures, side by side: the machine's load
    // falls on both alike.
    let baseline = start(&config(clip.path(), 10.0, ""));
    wait_for(60, "snapshot errors counted", || {
        (metric_labelled(&metrics(&d.addr), "edgevision_snapshot_errors_total") >= 1.0).then_some(())
    });
    assert!(!d.log_lines("snapshot").is_empty(), "a warning names the problem");
    let processed = |d: &Daemon| metric_labelled(&metrics(&d.addr), "edgevision_frames_processed_total");
    let (d0, b0) = (processed(&d), processed(&baseline));
    std::thread::sleep(Duration::from_secs(4));
    let (d1, b1) = (processed(&d), processed(&baseline));
    let (failing, plain) = (d1 - d0, b1 - b0);
    assert!(plain >= 8.0, "the baseline processed {plain} frames in 4 s");
    assert!(
        failing >= 0.7 * plain,
        "{failing} frames with a failing disk against {plain} without pictures"
    );
}

#[test]
fn a_webhook_that_is_down_gets_its_events_when_it_returns_and_overflow_is_counted() {
    let clip = crossing_clip();
    // A port with nobody listening, kept for the receiver later.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = start(&config(clip.path(), 0.0, &webhook(port, 3)));
    let label = format!(r#"camera="default",webhook="http://127.0.0.1:{port}"}}"#);
    wait_for(90, "posts failing and events dropped", || {
        let m = metrics(&d.addr);
        let failed = metric_labelled(&m, &format!("edgevision_webhook_failures_total{{{label}"));
        let dropped = metric_labelled(&m, &format!("edgevision_webhook_dropped_total{{{label}"));
        (failed >= 1.0 && dropped >= 1.0).then_some(())
    });
    let hook = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    // Back-off is at most 30 s.
    wait_for(60, "events delivered after the receiver came back", || {
        (hook.events().len() >= 3).then_some(())
    });
    let m = metrics(&d.addr);
    assert!(
        metric_labelled(&m, &format!("edgevision_webhook_sent_total{{{label}")) >= 3.0,
        "{m}"
    );
    for e in hook.events() {
        assert!(
            ["new", "update", "end"].contains(&e["type"].as_str().unwrap()),
            "{e}"
        );
        assert_eq!(e["object"]["label"], "dog");
    }
}

#[test]
fn sighup_applies_new_zones_to_the_objects_tracked_now() {
    let dir = tempfile::tempdir().unwrap();
    dog_frames(dir.path(), "a", "200", 1);
    let zone = |x0: f32, x1: f32| {
        format!("[[zone]]\nname = \"z\"\npolygon = [[{x0}, 0.0], [{x1}, 0.0], [{x1}, 1.0], [{x0}, 1.0]]\nmin_frames = 1\n")
    };
    // The dog's anchor is at x 0.53: first a zone beside it, then one round it.
    let d = start(&config(dir.path(), 10.0, &zone(0.0, 0.3)));
    let objects = |d: &Daemon| json(d, "/api/objects")["objects"].as_array().unwrap().clone();
    let id = wait_for(60, "the dog tracked", || {
        objects(&d).first().and_then(|o| o["id"].as_u64())
    });
    assert_eq!(objects(&d)[0]["zones"], serde_json::json!([]));
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(&zone(0.0, 0.3), &zone(0.4, 0.7));
    std::fs::write(&d.config, text).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "the dog in the new zone", || {
        let o = objects(&d);
        (o[0]["zones"] == serde_json::json!(["z"])).then_some(())
    });
    // The same object: a reload keeps what is tracked.
    assert_eq!(objects(&d)[0]["id"], id);
}

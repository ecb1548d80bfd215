//! Network and process sources (issue 15), end to end with the real
//! binary: an edgevision reading another edgevision's `/stream.mjpg`.

use crate::common;

use common::daemon::{get, metrics, start, start_listening, Daemon};
use common::{metric, photo_dir, wait_for};

/// At least 16 characters, as bearer mode requires.
const TOKEN: &str = "sources-test-token-5f1c9a";

/// A daemon serving `dog.jpg` as its stream, unannotated, behind a bearer token.
fn camera_config(photos: &std::path::Path) -> String {
    format!(
        r#"
[source]
uri = "images:{photos}"
width = 640
height = 480
fps = 8.0

[model]
path = "{model}"
labels = "{labels}"
threads = 1

[stream]
annotate = "off"

[http.auth]
mode = "bearer"
token = "{TOKEN}"
"#,
        photos = photos.display(),
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

fn viewer_config(uri: &str) -> String {
    format!(
        r#"
[source]
uri = "{uri}"
width = 640
height = 480
stall_timeout = 2.0
reconnect_max_backoff = 1.0

[model]
path = "{model}"
labels = "{labels}"
threads = 1

[detect]
threshold = 0.5
"#,
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

fn start_camera(photos: &std::path::Path, listen: &str) -> Daemon {
    let cam = start_listening(&camera_config(photos), listen, |_| {});
    wait_for(60, "the camera daemon ready", || {
        (get(&cam.addr, &format!("/readyz?token={TOKEN}")).0 == 200).then_some(())
    });
    cam
}

#[test]
fn http_source_reads_another_edgevision_and_survives_its_restart() {
    let photos = photo_dir(&["dog.jpg"]);
    let mut cam = start_camera(photos.path(), "127.0.0.1:0");
    // Without the token the camera refuses the stream: the token is needed.
    assert_eq!(get(&cam.addr, "/stream.mjpg").0, 401);

    let uri = format!("http://{}/stream.mjpg?token={TOKEN}", cam.addr);
    let viewer = start(&viewer_config(&uri));
    wait_for(90, "the dog seen through the camera's stream", || {
        let (code, body) = get(&viewer.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    assert_eq!(get(&viewer.addr, "/readyz").0, 200);
    assert_eq!(metric(&metrics(&viewer.addr), "edgevision_source_up"), Some(1.0));
    let before = metric(&metrics(&viewer.addr), "edgevision_camera_reconnects_total").unwrap_or(0.0);

    // The camera dies: the viewer notices, says so, and keeps running.
    let cam_addr = cam.addr.clone();
    cam.child.kill().unwrap();
    cam.child.wait().unwrap();
    wait_for(20, "the viewer not ready once the camera is gone", || {
        (get(&viewer.addr, "/readyz").0 == 503).then_some(())
    });
    assert_eq!(metric(&metrics(&viewer.addr), "edgevision_source_up"), Some(0.0));
    assert_eq!(get(&viewer.addr, "/healthz").0, 200);
    drop(cam);

    // A new camera on the same port: the viewer reconnects by itself.
    let cam = start_camera(photos.path(), &cam_addr);
    assert_eq!(cam.addr, cam_addr);
    wait_for(60, "the viewer ready again", || {
        (get(&viewer.addr, "/readyz").0 == 200).then_some(())
    });
    let after = wait_for(10, "the reconnect counted", || {
        let v = metric(&metrics(&viewer.addr), "edgevision_camera_reconnects_total")?;
        (v > before).then_some(v)
    });
    assert!(after >= before + 1.0);
    assert_eq!(metric(&metrics(&viewer.addr), "edgevision_source_up"), Some(1.0));
    wait_for(30, "the dog seen again", || {
        let (code, body) = get(&viewer.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });

    // The token is nowhere the viewer shows or logs; the redacted URL is.
    let lost = viewer.log_lines("source lost");
    assert!(!lost.is_empty(), "the loss was logged");
    assert!(
        !viewer
            .log_lines(&format!("http://{cam_addr}/stream.mjpg?token=***"))
            .is_empty(),
        "the redacted URL is logged"
    );
    assert_eq!(viewer.log_lines(TOKEN), Vec::<String>::new());
    for path in ["/api/detections", "/metrics", "/"] {
        let (code, body) = get(&viewer.addr, path);
        assert_eq!(code, 200, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains(TOKEN),
            "{path} shows the token"
        );
    }
}

#[test]
fn https_and_a_malformed_http_uri_are_clear_config_errors() {
    for (uri, want) in [
        ("https://cam/video", "https:// is not supported yet"),
        ("http://admin:hunter2@cam:port/video", "not a port number"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("edgevision.toml");
        std::fs::write(&cfg, viewer_config(uri)).unwrap();
        let out = common::run(common::bin().arg("check-config").arg(&cfg));
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_ne!(out.code, Some(0), "{uri}: {text}");
        assert!(
            text.contains("source.uri") && text.contains(want),
            "{uri}: {text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}

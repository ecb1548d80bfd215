//! `stream.annotate = "client"`: the camera's JPEGs reach clients byte for
//! byte, and the reports carry boxes in the full frame's pixels (inference
//! decoded the frames DCT-scaled) with their colours, for the page to draw.

use crate::common;

use common::daemon::{get, open_stream, start_until_dog, Daemon};
use edgevision::infer::{Detector, DetectorSettings, FilterSettings};
use serde_json::Value;

/// An MJPEG file made of dog.jpg, played by the daemon in client mode.
pub fn client_mode_daemon(extra_stream: &str) -> (Daemon, tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let dog = std::fs::read(common::photo("dog.jpg")).unwrap();
    let video = dir.path().join("cam.mjpg");
    std::fs::write(&video, [dog.as_slice(), dog.as_slice()].concat()).unwrap();
    let config = format!(
        "[source]\nuri = \"mjpeg:{}\"\nfps = 10.0\n\
         [model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\nworkers = 1\n\
         [stream]\nannotate = \"client\"\n{extra_stream}\n",
        video.display(),
        common::coco_model().display(),
        common::coco_labels().display()
    );
    let d = start_until_dog(&config);
    (d, dir, dog)
}

#[test]
fn the_camera_jpegs_pass_untouched_and_reports_use_their_pixels() {
    let (d, _dir, dog) = client_mode_daemon("");
    let mut stream = open_stream(&d.addr, std::time::Duration::from_secs(10));
    for _ in 0..3 {
        let part = stream.next_part().unwrap();
        assert!(
            part == dog,
            "a part of {} bytes is not dog.jpg ({} bytes)",
            part.len(),
            dog.len()
        );
    }

    let report: Value = serde_json::from_slice(&get(&d.addr, "/api/detections").1).unwrap();
    assert_eq!(report["annotate"], "client");
    // dog.jpg is 768x576; the source's 640x480 default does not apply.
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(768), Some(576))
    );
    let dets = report["detections"].as_array().unwrap();
    let got = dets
        .iter()
        .find(|x| x["label"] == "dog")
        .expect("dog in the report");
    let [r, g, b] = edgevision::annotate::label_color("dog").0;
    assert_eq!(got["color"], format!("#{r:02x}{g:02x}{b:02x}"));

    // The same box as inference on the full-size photo, within 2% of the frame.
    let mut s = DetectorSettings::new(common::coco_model());
    s.labels = Some(common::coco_labels());
    s.filter = FilterSettings {
        threshold: 0.5,
        ..Default::default()
    };
    let mut det = Detector::new(common::runtime(), &s).unwrap();
    let full = edgevision::capture::images::read_rgb(&common::photo("dog.jpg")).unwrap();
    let want = det.detect_image(&full).unwrap().0;
    let want = want.iter().find(|x| x.label == "dog").unwrap().bbox.to_array();
    let got: Vec<f64> = common::json_box(&got["box"]);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let size = if i % 2 == 0 { 768.0 } else { 576.0 };
        assert!(
            (a - b as f64).abs() / size <= 0.02,
            "box {got:?} against the full-size photo's {want:?}"
        );
    }
}

#[test]
fn burned_in_mode_still_reencodes_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("cam.mjpg");
    std::fs::write(&video, std::fs::read(common::photo("dog.jpg")).unwrap()).unwrap();
    let config = format!(
        "[source]\nuri = \"mjpeg:{}\"\nfps = 10.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\n",
        video.display(),
        common::coco_model().display(),
        common::coco_labels().display()
    );
    let d = start_until_dog(&config);
    let report: Value = serde_json::from_slice(&get(&d.addr, "/api/detections").1).unwrap();
    assert_eq!(report["annotate"], "burn");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(640), Some(480))
    );
    let part = open_stream(&d.addr, std::time::Duration::from_secs(10))
        .next_part()
        .unwrap();
    assert_eq!(image::load_from_memory(&part).unwrap().width(), 640);
}

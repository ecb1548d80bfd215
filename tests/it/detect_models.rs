//! The real runtime on the real models and photos, in process.

use crate::common;

use edgevision::infer::{BBox, DecoderKind, Detection, Detector, DetectorSettings, FilterSettings};
use serde_json::Value;

fn detector(model: std::path::PathBuf, labels: std::path::PathBuf, threshold: f32) -> Detector {
    let mut s = DetectorSettings::new(model);
    s.labels = Some(labels);
    s.filter = FilterSettings {
        threshold,
        ..Default::default()
    };
    Detector::new(common::runtime(), &s).expect("build detector")
}

fn detect(d: &mut Detector, photo: &str) -> Vec<Detection> {
    let img = image::open(common::photo(photo)).expect("decode photo").to_rgb8();
    d.detect_image(&img).expect("detect").0
}

fn labels(dets: &[Detection]) -> Vec<&str> {
    dets.iter().map(|d| d.label.as_str()).collect()
}

#[test]
fn coco_quant_finds_the_expected_objects() {
    let mut d = detector(common::coco_model(), common::coco_labels(), 0.5);
    assert_eq!(d.decoder_kind(), DecoderKind::Postprocess);
    let dog = detect(&mut d, "dog.jpg");
    for want in ["dog", "bicycle", "car"] {
        assert!(labels(&dog).contains(&want), "dog.jpg: no {want} in {dog:?}");
    }
    let person = detect(&mut d, "person.jpg");
    for want in ["person", "horse"] {
        assert!(
            labels(&person).contains(&want),
            "person.jpg: no {want} in {person:?}"
        );
    }
    let cat = detect(&mut d, "chelsea.png");
    assert!(labels(&cat).contains(&"cat"), "chelsea.png: no cat in {cat:?}");
    // COCO ids with gaps: the class id is the label file's id.
    let dog_det = dog.iter().find(|x| x.label == "dog").unwrap();
    assert_eq!(dog_det.class_id, 17);
}

/// The default model (Coral's file -> float32 -> int8 by `edgevision
/// convert`, scripts/make-models) finds what Coral's file finds, on the
/// test photos and on the 20 held-out ones it was not calibrated on.
#[test]
fn default_int8_model_detects_like_the_coral_file() {
    let mut coral = detector(common::coco_model(), common::coco_labels(), 0.5);
    let mut ours = detector(common::coco_int8_model(), common::coco_labels(), 0.5);
    assert_eq!(ours.decoder_kind(), DecoderKind::Postprocess);
    let mut photos: Vec<std::path::PathBuf> = std::fs::read_dir(common::root().join("tests/photos"))
        .unwrap()
        .chain(std::fs::read_dir(common::heldout_dir()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    photos.sort();
    assert!(photos.len() >= 31, "{} photos", photos.len());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for p in &photos {
        let img = image::open(p).unwrap().to_rgb8();
        a.push(coral.detect_image(&img).unwrap().0);
        b.push(ours.detect_image(&img).unwrap().0);
    }
    let all = edgevision::convert::report::agreement(&a, &b);
    // Measured: every Coral detection found (38/38); 4 extra ones score
    // exactly 0.50, a quantization level of the uint8 scores.
    assert!(all.recall >= 0.95 && all.f1 >= 0.9, "{all:?}");
    let dog = &b[photos.iter().position(|p| p.ends_with("dog.jpg")).unwrap()];
    assert!(labels(dog).contains(&"dog"), "{dog:?}");
}

/// Boxes agree with LiteRT's own Python interpreter (reference written by
/// scripts/make-reference.py) to IoU >= 0.8, for every reference detection
/// scoring 0.5 or more.
#[test]
fn coco_quant_boxes_match_the_python_reference() {
    let text = std::fs::read_to_string(common::root().join("tests/reference/coco_quant.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let mut d = detector(common::coco_model(), common::coco_labels(), 0.3);
    let mut checked = 0;
    for (name, want) in reference["images"].as_object().unwrap() {
        let got = detect(&mut d, name);
        let img = image::image_dimensions(common::photo(name)).unwrap();
        assert_eq!(want["width"].as_u64().unwrap() as u32, img.0);
        for r in want["detections"].as_array().unwrap() {
            if r["score"].as_f64().unwrap() < 0.5 {
                continue;
            }
            let b: Vec<f32> = common::json_box(&r["box"])
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let rb = BBox {
                left: b[0],
                top: b[1],
                right: b[2],
                bottom: b[3],
            };
            let class = r["class_id"].as_u64().unwrap() as u32;
            let best = got
                .iter()
                .filter(|g| g.class_id == class)
                .map(|g| g.bbox.iou(&rb))
                .fold(0.0f32, f32::max);
            assert!(
                best >= 0.8,
                "{name}: class {class} box {rb:?}: best IoU {best} in {got:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} reference boxes checked");
}

#[test]
fn oidv4_float_model_through_the_raw_ssd_decoder() {
    let mut d = detector(common::oidv4_model(), common::oidv4_labels(), 0.5);
    assert_eq!(d.decoder_kind(), DecoderKind::RawSsd);
    let cat = detect(&mut d, "chelsea.png");
    assert!(labels(&cat).contains(&"Cat"), "chelsea.png: {cat:?}");
    let dog = detect(&mut d, "dog.jpg");
    assert!(labels(&dog).contains(&"Dog"), "dog.jpg: {dog:?}");
    // The dog box lies where the dog is (left part of the photo, lower half).
    let b = dog.iter().find(|x| x.label == "Dog").unwrap().bbox;
    assert!(b.left < 200.0 && b.right < 400.0 && b.bottom > 450.0, "{b:?}");
}

#[test]
fn postprocess_outputs_get_their_true_sizes() {
    let d = detector(common::coco_model(), common::coco_labels(), 0.5);
    let shapes: Vec<Vec<usize>> = d.model().outputs().iter().map(|o| o.shape.clone()).collect();
    assert_eq!(shapes, vec![vec![1, 20, 4], vec![1, 20], vec![1, 20], vec![1]]);
    let input = &d.model().inputs()[0];
    assert_eq!(input.shape, vec![1, 300, 300, 3]);
    assert_eq!(input.quantization(), Some((0.0078125, 128)));
}

#[test]
fn filters_apply_per_label_and_by_list() {
    let mut d = detector(common::coco_model(), common::coco_labels(), 0.3);
    let mut f = FilterSettings {
        threshold: 0.3,
        ..Default::default()
    };
    f.deny.push("car".into());
    f.label_thresholds.insert("bicycle".into(), 0.99);
    d.set_filter(f).unwrap();
    let got = detect(&mut d, "dog.jpg");
    assert!(labels(&got).contains(&"dog"));
    assert!(
        !labels(&got).contains(&"car") && !labels(&got).contains(&"bicycle"),
        "{got:?}"
    );
}

#[test]
fn labels_that_do_not_fit_are_an_error() {
    let mut s = DetectorSettings::new(common::coco_model());
    s.labels = Some(common::oidv4_labels());
    let err = Detector::new(common::runtime(), &s)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("do not fit") && err.contains("24 labels") && err.contains("90 classes"),
        "{err}"
    );
}

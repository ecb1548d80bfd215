//! Classifier decoding, tested on small real `.tflite` classifiers the tests
//! build themselves (see `common/tiny_models.rs`) and run through LiteRT.

use crate::common::{runtime, tiny_models};

use edgevision::infer::{
    DecodeSettings, DecoderKind, Detection, Detector, DetectorSettings, FilterSettings, SessionOptions,
};
use edgevision::tflite::model_file::read_model;
use image::{Rgb, RgbImage};

use tiny_models::{
    build_colour_classifier, colour_classifier_file, expected_logits, labels_file, softmax, TempFile,
    Variant, CLASSES, NUM_CLASSES, Q_PROB_SCALE,
};

/// Test images: 64x48, so the engine has to resize to the model's 32x32.
const W: u32 = 64;
const H: u32 = 48;

const COLOURS: [(&str, [u8; 3]); 4] = [
    ("red", [255, 0, 0]),
    ("green", [0, 255, 0]),
    ("blue", [0, 0, 255]),
    ("grey", [128, 128, 128]),
];

fn solid(rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(W, H, Rgb(rgb))
}

/// Settings with every class reported (top_k = C) and nothing filtered out.
fn settings(model: &TempFile, labels: Option<&TempFile>, top_k: usize) -> DetectorSettings {
    let mut s = DetectorSettings::new(model.path());
    s.labels = labels.map(|l| l.path().to_path_buf());
    s.session = SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    };
    s.decode = DecodeSettings {
        top_k,
        ..DecodeSettings::default()
    };
    s.filter = FilterSettings {
        threshold: 0.0,
        ..FilterSettings::default()
    };
    s
}

fn detector(variant: Variant, top_k: usize) -> (Detector, TempFile, TempFile) {
    let model = colour_classifier_file(variant);
    let labels = labels_file(&CLASSES);
    let det = Detector::new(runtime(), &settings(&model, Some(&labels), top_k))
        .unwrap_or_else(|e| panic!("{variant:?} colour classifier does not load: {e}"));
    (det, model, labels)
}

fn classify(det: &mut Detector, rgb: [u8; 3]) -> Vec<Detection> {
    det.detect_image(&solid(rgb)).expect("detect_image").0
}

/// Checks what every variant must give: a classifier decoder, C results in
/// descending order with whole-image boxes, a distribution over the classes,
/// and the right colour on top with more than half the probability.
fn check_colours(variant: Variant, sum_tolerance: f32) {
    let (mut det, _model, _labels) = detector(variant, NUM_CLASSES);
    assert_eq!(det.decoder_kind(), DecoderKind::Classifier, "{variant:?}");
    assert!(det.is_classifier());
    assert_eq!(det.input_size(), (32, 32));
    for (name, rgb) in COLOURS {
        let dets = classify(&mut det, rgb);
        assert_eq!(dets.len(), NUM_CLASSES, "{variant:?} {name}: {dets:?}");
        assert_eq!(dets[0].label, name, "{variant:?} {name}: {dets:?}");
        assert_eq!(CLASSES[dets[0].class_id as usize], name);
        assert!(dets[0].score > 0.5, "{variant:?} {name}: {dets:?}");
        for d in &dets {
            assert!((0.0..=1.0).contains(&d.score), "{variant:?} {name}: {dets:?}");
            assert_eq!(d.label, CLASSES[d.class_id as usize]);
            assert_eq!(d.bbox.to_array(), [0.0, 0.0, W as f32, H as f32]);
        }
        assert!(dets.windows(2).all(|p| p[0].score >= p[1].score), "{dets:?}");
        let mut ids: Vec<u32> = dets.iter().map(|d| d.class_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3], "each class exactly once: {dets:?}");
        let sum: f32 = dets.iter().map(|d| d.score).sum();
        assert!(
            (sum - 1.0).abs() < sum_tolerance,
            "{variant:?} {name}: sum {sum}, {dets:?}"
        );
    }
}

#[test]
fn float_logits_classifier_labels_solid_colours() {
    check_colours(Variant::FloatLogits, 1e-4);
}

#[test]
fn logits_are_softmaxed_to_the_hand_computed_probabilities() {
    let (mut det, _model, _labels) = detector(Variant::FloatLogits, NUM_CLASSES);
    for (name, rgb) in COLOURS {
        let want = softmax(&expected_logits(rgb));
        for d in classify(&mut det, rgb) {
            let p = want[d.class_id as usize];
            assert!(
                (d.score - p).abs() < 1e-3,
                "{name}/{}: got {}, want {p}",
                d.label,
                d.score
            );
        }
    }
}

#[test]
fn top_k_limits_and_orders_the_classes() {
    let (mut det, _model, _labels) = detector(Variant::FloatLogits, 2);
    // Red: logits [4, -2, -2, 2], so red then grey.
    let dets = classify(&mut det, [255, 0, 0]);
    assert_eq!(dets.len(), 2, "{dets:?}");
    assert!(dets[0].score > dets[1].score, "{dets:?}");
    assert_eq!(
        dets.iter().map(|d| d.label.as_str()).collect::<Vec<_>>(),
        ["red", "grey"]
    );
    // The two are the first two of the full ranking, with the same scores.
    let (mut all, _m, _l) = detector(Variant::FloatLogits, NUM_CLASSES);
    for (name, rgb) in COLOURS {
        let top2 = classify(&mut det, rgb);
        let full = classify(&mut all, rgb);
        assert_eq!(top2.len(), 2, "{name}: {top2:?}");
        assert_eq!(top2[..], full[..2], "{name}");
    }

    // top_k = 1: one result, the same top class.
    let (mut det, _model, _labels) = detector(Variant::FloatLogits, 1);
    let dets = classify(&mut det, [0, 0, 255]);
    assert_eq!(dets.len(), 1, "{dets:?}");
    assert_eq!(dets[0].label, "blue");
}

#[test]
fn top_k_larger_than_the_class_count_reports_every_class() {
    let (mut det, _model, _labels) = detector(Variant::FloatLogits, 10);
    assert_eq!(classify(&mut det, [0, 255, 0]).len(), NUM_CLASSES);
}

#[test]
fn softmax_output_is_not_softmaxed_again() {
    check_colours(Variant::FloatSoftmax, 1e-4);
    let (mut logits, _m1, _l1) = detector(Variant::FloatLogits, NUM_CLASSES);
    let (mut probs, _m2, _l2) = detector(Variant::FloatSoftmax, NUM_CLASSES);
    for (name, rgb) in COLOURS {
        let a = classify(&mut logits, rgb);
        let b = classify(&mut probs, rgb);
        assert_eq!(a[0].label, b[0].label, "{name}");
        let want = softmax(&expected_logits(rgb))[b[0].class_id as usize];
        // Softmax applied twice would flatten the distribution (e.g. red's
        // 0.877 would become about 0.45).
        assert!(
            (b[0].score - want).abs() < 1e-3,
            "{name}: got {}, want {want}",
            b[0].score
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.class_id, y.class_id, "{name}: {a:?} vs {b:?}");
            assert!((x.score - y.score).abs() < 1e-3, "{name}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn uint8_classifier_output_is_read_as_probabilities() {
    // Quantized softmax output has a step of 1/256 per class.
    check_colours(Variant::Uint8Softmax, 4.0 * Q_PROB_SCALE + 1e-6);
    let (mut det, _model, _labels) = detector(Variant::Uint8Softmax, NUM_CLASSES);
    for (name, rgb) in COLOURS {
        let want = softmax(&expected_logits(rgb));
        for d in classify(&mut det, rgb) {
            let p = want[d.class_id as usize];
            // Input, logit and output quantization together stay within a few 1/256 steps.
            assert!(
                (d.score - p).abs() < 3.0 * Q_PROB_SCALE,
                "{name}/{}: got {}, want {p}",
                d.label,
                d.score
            );
        }
    }
}

#[test]
fn without_labels_classes_are_numbered() {
    let model = colour_classifier_file(Variant::FloatLogits);
    let mut det = Detector::new(runtime(), &settings(&model, None, 1)).expect("loads");
    let dets = classify(&mut det, [0, 0, 255]);
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].label, "class 2");
    assert_eq!(dets[0].class_id, 2);
}

#[test]
fn filter_threshold_applies_to_classifier_scores() {
    let (mut det, _model, _labels) = detector(Variant::FloatLogits, NUM_CLASSES);
    det.set_filter(FilterSettings {
        threshold: 0.5,
        ..FilterSettings::default()
    })
    .unwrap();
    let dets = classify(&mut det, [255, 0, 0]);
    assert_eq!(dets.len(), 1, "only red is above 0.5: {dets:?}");
    assert_eq!(dets[0].label, "red");
}

#[test]
fn labels_with_the_wrong_line_count_are_an_error() {
    let model = colour_classifier_file(Variant::FloatLogits);
    let labels = labels_file(&CLASSES[..3]);
    let err = match Detector::new(runtime(), &settings(&model, Some(&labels), NUM_CLASSES)) {
        Ok(_) => panic!("3 labels for a 4-class model were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("3 labels"), "{err}");
    assert!(err.contains("4 classes"), "{err}");
    assert!(err.contains(&labels.path().display().to_string()), "{err}");

    // One label too many is just as wrong.
    let labels = labels_file(&["red", "green", "blue", "grey", "pink"]);
    let err = match Detector::new(runtime(), &settings(&model, Some(&labels), NUM_CLASSES)) {
        Ok(_) => panic!("5 labels for a 4-class model were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("5 labels") && err.contains("4 classes"), "{err}");
}

#[test]
fn the_built_models_read_back_with_their_ops() {
    let cases = [
        (Variant::FloatLogits, vec![("FULLY_CONNECTED", 1), ("MEAN", 1)]),
        (
            Variant::FloatSoftmax,
            vec![("FULLY_CONNECTED", 1), ("MEAN", 1), ("SOFTMAX", 1)],
        ),
        (
            Variant::Uint8Softmax,
            vec![("FULLY_CONNECTED", 1), ("MEAN", 1), ("SOFTMAX", 1)],
        ),
    ];
    for (variant, ops) in cases {
        let bytes = build_colour_classifier(variant);
        let info = read_model(&bytes).unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        assert_eq!(info.version, 3);
        assert_eq!(info.num_subgraphs, 1);
        let counts = info.op_counts();
        let counts: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(counts, ops, "{variant:?}");
        assert_eq!(info.output_shapes(), vec![vec![1, NUM_CLASSES]], "{variant:?}");
        let input = info.input_tensors().next().expect("an input");
        assert_eq!(input.shape, [1, 32, 32, 3], "{variant:?}");
        assert!(info.detection_postprocess().is_none());
    }
}

#[test]
fn builtin_kernels_agree_with_xnnpack() {
    for (variant, tolerance) in [
        (Variant::FloatLogits, 1e-5),
        (Variant::FloatSoftmax, 1e-5),
        (Variant::Uint8Softmax, Q_PROB_SCALE + 1e-6),
    ] {
        let model = colour_classifier_file(variant);
        let labels = labels_file(&CLASSES);
        let mut s = settings(&model, Some(&labels), NUM_CLASSES);
        let mut xnn = Detector::new(runtime(), &s).expect("loads with XNNPACK");
        s.session.xnnpack = false;
        let mut builtin = Detector::new(runtime(), &s).expect("loads with builtin kernels");
        for (name, rgb) in COLOURS {
            let a = classify(&mut xnn, rgb);
            let b = classify(&mut builtin, rgb);
            assert_eq!(a[0].label, name, "{variant:?}");
            assert_eq!(b[0].label, name, "{variant:?}");
            let by_class = |d: &[Detection], c: u32| d.iter().find(|d| d.class_id == c).expect("class").score;
            for c in 0..NUM_CLASSES as u32 {
                let (x, y) = (by_class(&a, c), by_class(&b, c));
                assert!(
                    (x - y).abs() <= tolerance,
                    "{variant:?} {name} class {c}: {x} vs {y}"
                );
            }
        }
    }
}

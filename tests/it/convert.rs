//! `edgevision convert` on the real models, photos and runtime: int8 with
//! calibration, float16, dynamic, float32 (dequantize), and the errors.
//!
//! Cost: six SSD conversions (a few seconds of CPU each in a debug build,
//! 8 calibration photos) plus ~150 SSD inferences: ~80 s on a loaded
//! 2-core machine.

use crate::common;
use crate::common::tiny_models;

use std::path::{Path, PathBuf};

use edgevision::convert::{self, ConvertError, ConvertOptions, Converted, IoType, Mode, RangeMethod};
use edgevision::infer::{Detection, Detector, DetectorSettings, FilterSettings};
use tiny_models::{build_colour_classifier, TempFile, Variant};

const PHOTOS: [&str; 11] = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "dog.jpg",
    "eagle.jpg",
    "giraffe.jpg",
    "horses.jpg",
    "kite.jpg",
    "motorcycle_left.png",
    "person.jpg",
    "rocket.jpg",
];

fn opts(mode: Mode) -> ConvertOptions {
    ConvertOptions {
        mode,
        // tests/photos sorted: the first 8 calibrate, all 11 evaluate.
        calibration: Some(common::root().join("tests/photos")),
        samples: 8,
        io_type: IoType::Float,
        range: RangeMethod::MinMax,
        threads: 2,
        compare: false,
        validation: None,
        bias_correction: true,
    }
}

fn convert_file(input: &Path, o: &ConvertOptions) -> Result<Converted, ConvertError> {
    let bytes = std::fs::read(input).unwrap();
    convert::convert(Some(common::runtime()), &bytes, o)
}

/// Detections (score >= 0.5) of a model on every test photo.
fn detect_all(model: &Path, labels: &Path) -> Vec<Vec<Detection>> {
    let mut s = DetectorSettings::new(model);
    s.labels = Some(labels.to_path_buf());
    s.session.threads = 2;
    s.filter = FilterSettings {
        threshold: 0.5,
        ..Default::default()
    };
    let mut det = Detector::new(common::runtime(), &s).expect("model loads and compiles");
    PHOTOS
        .iter()
        .map(|p| {
            let img = image::open(common::photo(p)).unwrap().to_rgb8();
            det.detect_image(&img).unwrap().0
        })
        .collect()
}

fn has(dets: &[Vec<Detection>], photo: &str, label: &str) -> bool {
    let i = PHOTOS.iter().position(|p| *p == photo).unwrap();
    dets[i].iter().any(|d| d.label == label)
}

/// QUANTIZE ops from int8 to int8 (requantizing) in a model file.
fn requantizing_ops(bytes: &[u8]) -> usize {
    use edgevision::convert::graph;
    let m = edgevision::convert::model_io::read_model_t(bytes).unwrap();
    let t = graph::tensors(&m);
    graph::ops(&m)
        .iter()
        .filter(|op| {
            let (i, o) = (op.inputs.as_ref().unwrap()[0], op.outputs.as_ref().unwrap()[0]);
            graph::op_name(&m, op) == "QUANTIZE" && t[i as usize].type_ == t[o as usize].type_
        })
        .count()
}

fn write(c: &Converted, name: &str) -> TempFile {
    TempFile::new(name, &c.bytes)
}

#[test]
fn oidv4_float_ssd_to_int8_detects_like_the_float_model() {
    let input = common::oidv4_model();
    let mut o = opts(Mode::Int8);
    // The report compares on the held-out photos (scripts/setup --heldout).
    o.compare = true;
    o.validation = Some(common::heldout_dir());
    let c = convert_file(&input, &o).unwrap();
    let r = &c.report;
    assert_eq!(r.compared_on, "validation");
    assert_eq!(r.compared_images, 20, "run scripts/setup --heldout");
    // Every compared tensor lines up with its float twin: a misaligned pair
    // (as when an output was compared with another tensor) is noise, < 0 dB.
    let worst = r.tensors.iter().map(|q| q.sqnr_db).fold(f64::INFINITY, f64::min);
    assert!(worst > 8.0, "lowest tensor SQNR {worst:.1} dB: {:?}", r.tensors);
    assert!(r.tensors.len() > 80, "{}", r.tensors.len());
    for q in &r.outputs {
        assert!(q.sqnr_db > 15.0 && q.cosine > 0.99, "{q:?}");
    }
    assert!(
        r.notes.iter().any(|n| n.starts_with("bias correction: 72 ")),
        "{:?}",
        r.notes
    );
    // Bias correction brings both outputs closer to the float model's on
    // the held-out photos (measured: boxes 18.3 -> 19.8 dB, classes 29.9 -> 31.6).
    let mut plain = o.clone();
    plain.bias_correction = false;
    let p = convert_file(&input, &plain).unwrap().report;
    for (with, without) in r.outputs.iter().zip(&p.outputs) {
        assert!(
            with.sqnr_db > without.sqnr_db + 0.5,
            "{}: {:.1} dB with bias correction, {:.1} without",
            with.name,
            with.sqnr_db,
            without.sqnr_db
        );
    }
    // With float outputs the heads' RESHAPEs and CONCATENATIONs stay float,
    // so each head crosses into float at its own scale (12 heads: 12 + 2
    // head RESHAPEs, 2 CONCATENATIONs and the 2 output RESHAPEs: 15 ops).
    assert!(
        r.notes.iter().any(|n| n.starts_with("15 data-movement ops")),
        "{:?}",
        r.notes
    );
    assert_eq!(requantizing_ops(&c.bytes), 0);
    // With int8 outputs they stay int8: each head is requantized into its
    // CONCATENATION (all but the widest of each).
    let mut int8_io = opts(Mode::Int8);
    int8_io.io_type = IoType::Int8;
    let q = convert_file(&input, &int8_io).unwrap();
    let requantized = requantizing_ops(&q.bytes);
    assert!((10..=12).contains(&requantized), "{requantized} requantizing ops");
    let in_size = std::fs::metadata(&input).unwrap().len() as f64;
    let ratio = in_size / c.bytes.len() as f64;
    // Int8 weights against fp16 ones, plus per-channel parameters.
    assert!(ratio > 1.7, "only {ratio:.2}x smaller than the fp16 model");
    assert_eq!(r.ops_quantized["CONV_2D"], 55);
    assert_eq!(r.ops_quantized["DEPTHWISE_CONV_2D"], 17);
    assert!(r.ops_kept_float.is_empty(), "{:?}", r.ops_kept_float);
    assert!(
        r.notes.iter().any(|n| n.contains("dead weight channels")),
        "{:?}",
        r.notes
    );
    let model = write(&c, "oid_int8.tflite");
    let labels = common::oidv4_labels();
    let float = detect_all(&input, &labels);
    let int8 = detect_all(model.path(), &labels);
    assert!(has(&int8, "chelsea.png", "Cat"), "{:?}", int8[1]);
    assert!(has(&int8, "dog.jpg", "Dog"), "{:?}", int8[3]);
    let a = convert::report::agreement(&float, &int8);
    assert!(a.f1 >= 0.9, "F1 {:.3} against the float model: {a:?}", a.f1);

    // The same file through `edgevision detect`.
    let out = common::run(
        common::bin()
            .args(["detect", "--json", "--labels"])
            .arg(&labels)
            .arg("--model")
            .arg(model.path())
            .arg(common::photo("chelsea.png")),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"Cat\""), "{}", out.stdout);
}

#[test]
fn coco_to_float32_and_back_to_uint8_keeps_the_coral_detections() {
    let labels = common::coco_labels();
    let coral = detect_all(&common::coco_model(), &labels);
    let f32c = convert_file(&common::coco_model(), &opts(Mode::Float32)).unwrap();
    assert!(
        f32c.report
            .notes
            .iter()
            .any(|n| n.contains("restored RELU6 on 43 ops")),
        "{:?}",
        f32c.report.notes
    );
    let f32m = write(&f32c, "coco_f32.tflite");
    let float = detect_all(f32m.path(), &labels);
    let a = convert::report::agreement(&coral, &float);
    assert!(a.f1 >= 0.95, "float32 vs Coral: {a:?}");
    assert!(has(&float, "chelsea.png", "cat") && has(&float, "dog.jpg", "dog"));

    // Back to integers with uint8 input, as the Coral file.
    let mut o = opts(Mode::Int8);
    o.io_type = IoType::Uint8;
    let q = convert_file(f32m.path(), &o).unwrap();
    // The postprocess op cannot be quantized: kept float, reported.
    assert_eq!(
        q.report.ops_kept_float.get("TFLite_Detection_PostProcess"),
        Some(&1),
        "{:?}",
        q.report.ops_kept_float
    );
    let qm = write(&q, "coco_u8.tflite");
    let info = edgevision::tflite::read_model(&q.bytes).unwrap();
    assert_eq!(
        info.tensors[info.inputs[0]].dtype,
        edgevision::tflite::TensorType::Uint8
    );
    let again = detect_all(qm.path(), &labels);
    let a = convert::report::agreement(&coral, &again);
    assert!(a.f1 >= 0.9, "int8 (uint8 io) vs Coral: {a:?}");
    assert!(has(&again, "chelsea.png", "cat") && has(&again, "dog.jpg", "dog"));
}

#[test]
fn float16_and_dynamic_outputs_stay_close_to_float() {
    for mode in [Mode::Float16, Mode::Dynamic] {
        let mut o = opts(mode);
        o.samples = 3;
        o.compare = true;
        let c = convert_file(&common::oidv4_model(), &o).unwrap();
        let r = &c.report;
        assert_eq!(r.outputs.len(), 2, "{mode:?}");
        for q in &r.outputs {
            assert!(
                q.sqnr_db >= 25.0,
                "{mode:?} output {}: {:.1} dB",
                q.name,
                q.sqnr_db
            );
            assert!(q.cosine > 0.99, "{mode:?} {q:?}");
        }
        if mode == Mode::Dynamic {
            assert!(r.ops_quantized["CONV_2D"] > 40, "{:?}", r.ops_quantized);
            assert!(c.bytes.len() < 7_000_000, "{} bytes", c.bytes.len());
        } else {
            let info = edgevision::tflite::read_model(&c.bytes).unwrap();
            assert!(info.op_counts()["DEQUANTIZE"] >= 144);
        }
        assert_eq!(r.detections.as_ref().map(|d| d.f1), Some(1.0), "{mode:?}");
    }
}

#[test]
fn tiny_classifier_int8_with_every_io_type_keeps_its_answers() {
    let float = TempFile::new("float.tflite", &build_colour_classifier(Variant::FloatSoftmax));
    let labels = tiny_models::labels_file(&tiny_models::CLASSES);
    let top_with = |model: &Path, xnnpack: bool| -> Vec<String> {
        let mut s = DetectorSettings::new(model);
        s.labels = Some(labels.path().to_path_buf());
        s.session.xnnpack = xnnpack;
        let mut det = Detector::new(common::runtime(), &s).unwrap();
        PHOTOS
            .iter()
            .map(|p| {
                let img = image::open(common::photo(p)).unwrap().to_rgb8();
                det.detect_image(&img).unwrap().0[0].label.clone()
            })
            .collect()
    };
    let top = |model: &Path| top_with(model, true);
    let want = top(float.path());
    for io in [IoType::Float, IoType::Int8, IoType::Uint8] {
        let mut o = opts(Mode::Int8);
        o.io_type = io;
        o.compare = true;
        let c = convert_file(float.path(), &o).unwrap();
        let m = write(&c, "tiny_int8.tflite");
        assert_eq!(top(m.path()), want, "{io:?}");
        // LiteRT's builtin kernels agree (per-channel FULLY_CONNECTED too).
        assert_eq!(top_with(m.path(), false), want, "{io:?} without XNNPACK");
        let r = &c.report;
        assert_eq!(r.ops_quantized.len(), 3, "{:?}", r.ops_quantized);
        assert!(r.outputs[0].sqnr_db > 20.0, "{io:?}: {:?}", r.outputs);
        let info = edgevision::tflite::read_model(&c.bytes).unwrap();
        // FULLY_CONNECTED weights [4 classes, 3]: one scale per class.
        let fc_weights = info
            .tensors
            .iter()
            .filter(|t| t.dtype == edgevision::tflite::TensorType::Int8 && t.shape == [4, 3])
            .collect::<Vec<_>>();
        assert_eq!(fc_weights.len(), 1, "{io:?}");
        assert_eq!(fc_weights[0].scale.len(), 4, "{io:?}: per-channel weights");
        let out = &info.tensors[info.outputs[0]];
        let (scale, zp) = (out.scale.first().copied(), out.zero_point.first().copied());
        use edgevision::tflite::TensorType as T;
        match io {
            IoType::Float => assert_eq!(out.dtype, T::Float32),
            // SOFTMAX's fixed output parameters.
            IoType::Int8 => assert_eq!((out.dtype, scale, zp), (T::Int8, Some(1.0 / 256.0), Some(-128))),
            IoType::Uint8 => assert_eq!((out.dtype, scale, zp), (T::Uint8, Some(1.0 / 256.0), Some(0))),
        }
    }
}

#[test]
fn errors_are_clear() {
    // Already quantized.
    let e = convert_file(&common::coco_model(), &opts(Mode::Int8))
        .err()
        .unwrap();
    assert!(matches!(e, ConvertError::AlreadyQuantized(_)), "{e}");
    assert!(e.to_string().contains("float32 first"), "{e}");
    let e = convert_file(&common::coco_model(), &opts(Mode::Dynamic))
        .err()
        .unwrap();
    assert!(matches!(e, ConvertError::AlreadyQuantized(_)), "{e}");

    let tiny = TempFile::new("tiny.tflite", &build_colour_classifier(Variant::FloatLogits));
    // Empty calibration directory.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(Mode::Int8);
    o.calibration = Some(dir.path().to_path_buf());
    let e = convert_file(tiny.path(), &o).err().unwrap();
    assert!(matches!(e, ConvertError::Calibration(_)), "{e}");
    assert!(e.to_string().contains("no JPEG or PNG images"), "{e}");
    // No directory at all.
    o.calibration = None;
    assert!(matches!(
        convert_file(tiny.path(), &o),
        Err(ConvertError::Calibration(_))
    ));
    // An unreadable image is skipped; with only unreadable ones it fails.
    std::fs::write(dir.path().join("broken.jpg"), b"not a jpeg").unwrap();
    o.calibration = Some(dir.path().to_path_buf());
    let e = convert_file(tiny.path(), &o).err().unwrap();
    assert!(e.to_string().contains("none of the images"), "{e}");
    std::fs::copy(common::photo("coffee.png"), dir.path().join("coffee.png")).unwrap();
    let c = convert_file(tiny.path(), &o).unwrap();
    assert_eq!(c.report.calibration_images, 1);
    assert_eq!(c.report.skipped_images.len(), 1, "{:?}", c.report.skipped_images);
    // Not a model.
    let e = convert::convert(None, b"definitely not a model", &opts(Mode::Float16))
        .err()
        .unwrap();
    assert!(matches!(e, ConvertError::Model(_)), "{e}");
}

#[test]
fn cli_writes_the_model_and_a_json_report() {
    let tiny = TempFile::new("cli.tflite", &build_colour_classifier(Variant::FloatSoftmax));
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("out.tflite");
    let report = dir.path().join("report.json");
    let cal = tempfile::tempdir().unwrap();
    for p in ["coffee.png", "dog.jpg"] {
        std::fs::copy(common::photo(p), cal.path().join(p)).unwrap();
    }
    std::fs::write(cal.path().join("bad.png"), b"nope").unwrap();
    let o = common::run(
        common::bin()
            .arg("convert")
            .arg("--input")
            .arg(tiny.path())
            .arg("--output")
            .arg(&out)
            .args(["--mode", "int8", "--range", "moving-average", "--calibration"])
            .arg(cal.path())
            .arg("--report")
            .arg(&report)
            .arg("--runtime")
            .arg(common::runtime_path()),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("skipping calibration image"), "{}", o.stderr);
    assert!(
        o.stdout.contains("quantized ops: FULLY_CONNECTED x1"),
        "{}",
        o.stdout
    );
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(j["mode"], "int8");
    assert_eq!(
        j["output_bytes"].as_u64(),
        Some(std::fs::metadata(&out).unwrap().len())
    );
    assert_eq!(j["calibration_images"], 2);
    // Two images and averaged ranges: some clipping, still close.
    assert!(j["outputs"][0]["sqnr_db"].as_f64().unwrap() > 10.0, "{j}");
    assert!(!j["tensors"].as_array().unwrap().is_empty(), "{j}");
    // Errors through the CLI: exit code 1 and one line.
    let o = common::run(
        common::bin()
            .args(["convert", "--mode", "int8", "--output"])
            .arg(dir.path().join("x.tflite"))
            .arg("--input")
            .arg(common::coco_model())
            .arg("--calibration")
            .arg(cal.path())
            .arg("--runtime")
            .arg(common::runtime_path()),
    );
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("already quantized"), "{}", o.stderr);
}

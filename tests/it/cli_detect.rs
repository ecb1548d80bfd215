//! `edgevision detect` as a user runs it: the real binary, real files.

use crate::common;

use common::{bin, run};
use serde_json::Value;

fn coco_args(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.arg("detect")
        .arg("--model")
        .arg(common::coco_model())
        .arg("--labels")
        .arg(common::coco_labels())
}

#[test]
fn json_lines_carry_every_field() {
    let out = run(coco_args(&mut bin())
        .arg("--json")
        .arg(common::photo("dog.jpg"))
        .arg(common::photo("person.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let dog = &lines[0];
    assert!(dog["image"].as_str().unwrap().ends_with("dog.jpg"));
    assert_eq!(
        (dog["width"].as_u64(), dog["height"].as_u64()),
        (Some(768), Some(576))
    );
    assert!(dog["inference_ms"].as_f64().unwrap() > 0.0);
    let dets = dog["detections"].as_array().unwrap();
    let d = dets.iter().find(|d| d["label"] == "dog").expect("a dog");
    assert_eq!(d["class_id"], 17);
    assert!(d["score"].as_f64().unwrap() > 0.9);
    let b = common::json_box(&d["box"]);
    assert_eq!(b.len(), 4);
    assert!(
        b[0] < b[2] && b[1] < b[3] && b[2] <= 768.0 && b[3] <= 576.0,
        "{b:?}"
    );
    let labels: Vec<&str> = lines[1]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"person") && labels.contains(&"horse"),
        "{labels:?}"
    );
}

#[test]
fn table_and_annotated_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(coco_args(&mut bin())
        .arg("--annotate")
        .arg(dir.path())
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("dog.jpg (768x576"), "{}", out.stdout);
    for l in ["dog", "bicycle", "car"] {
        assert!(
            out.stdout.lines().any(|line| line.trim_start().starts_with(l)),
            "{}",
            out.stdout
        );
    }
    let annotated = image::open(dir.path().join("dog.jpg"))
        .expect("annotated image written")
        .to_rgb8();
    let original = image::open(common::photo("dog.jpg")).unwrap().to_rgb8();
    assert_eq!(annotated.dimensions(), original.dimensions());
    // Boxes were drawn: many pixels differ strongly from the original.
    let changed = annotated
        .pixels()
        .zip(original.pixels())
        .filter(|(a, b)| {
            a.0.iter()
                .zip(b.0.iter())
                .any(|(x, y)| (*x as i32 - *y as i32).abs() > 60)
        })
        .count();
    assert!(changed > 2000, "only {changed} pixels changed");
}

#[test]
fn unreadable_images_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"this is not a JPEG").unwrap();
    let missing = dir.path().join("missing.png");
    let out = run(coco_args(&mut bin())
        .arg("--json")
        .arg(&bad)
        .arg(common::photo("chelsea.png"))
        .arg(&missing));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read image") && out.stderr.contains("broken.jpg"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("missing.png"), "{}", out.stderr);
    assert!(out.stderr.contains("2 of 3 images failed"), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the good image is still processed: {}",
        out.stdout
    );
    assert!(lines[0].contains("\"cat\""), "{}", lines[0]);
}

fn detect_with_model(model: &std::path::Path) -> common::Output {
    run(bin()
        .arg("detect")
        .arg("--model")
        .arg(model)
        .arg(common::photo("dog.jpg")))
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = detect_with_model(std::path::Path::new("/nonexistent/model.tflite"));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("cannot read model /nonexistent/model.tflite"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn truncated_and_garbage_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::coco_model()).unwrap();
    let truncated = dir.path().join("truncated.tflite");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let out = detect_with_model(&truncated);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("invalid model") && out.stderr.contains("truncated.tflite"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    let garbage = dir.path().join("garbage.tflite");
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&garbage, noise).unwrap();
    let out = detect_with_model(&garbage);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not a TFLite model"), "{}", out.stderr);

    let empty = dir.path().join("empty.tflite");
    std::fs::write(&empty, b"").unwrap();
    let out = detect_with_model(&empty);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("invalid model"), "{}", out.stderr);
}

/// Data memory a run that refuses its model before reading much of it may
/// use (the damaged files claim gigabytes).
const SMALL_MEMORY: u64 = 512 << 20;

#[test]
fn model_files_are_checked_before_they_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // 3 GB, sparse: no disk used, and nothing may read it whole.
    let big = dir.path().join("big.tflite");
    std::fs::File::create(&big).unwrap().set_len(3 << 30).unwrap();
    // Under the 512 MiB bound but not a model: the header says so.
    let zeros = dir.path().join("zeros.tflite");
    std::fs::File::create(&zeros).unwrap().set_len(400 << 20).unwrap();
    let cases: [(&std::path::Path, &str); 4] = [
        (
            &big,
            "it is 3221225472 bytes, over the bound of 512 MiB for model files",
        ),
        (&zeros, "not a TFLite model: file identifier is"),
        (
            std::path::Path::new("/dev/zero"),
            "cannot read model /dev/zero: it is a character device, not a regular file",
        ),
        (dir.path(), "it is a directory, not a regular file"),
    ];
    for (path, message) in cases {
        let out = common::run_with_memory_limit(
            bin()
                .arg("detect")
                .arg("--model")
                .arg(path)
                .arg(common::photo("dog.jpg")),
            SMALL_MEMORY,
        );
        assert_eq!(out.code, Some(1), "{}: {}", path.display(), out.stderr);
        assert!(out.stderr.contains(message), "{}: {}", path.display(), out.stderr);
    }
}

#[test]
fn a_fifo_as_model_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.tflite");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    for sub in ["detect", "convert"] {
        let mut cmd = bin();
        if sub == "detect" {
            cmd.args(["detect", "--model"])
                .arg(&fifo)
                .arg(common::photo("dog.jpg"));
        } else {
            cmd.args(["convert", "--mode", "float16", "--input"])
                .arg(&fifo)
                .arg("--output")
                .arg(dir.path().join("out.tflite"));
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A hang is a failure, not a stuck test run: no writer ever comes.
        let exited = common::wait_until(std::time::Duration::from_secs(60), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{sub} hung on a FIFO as model");
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sub}: {stderr}");
        assert!(
            stderr.contains("it is a FIFO (named pipe), not a regular file"),
            "{sub}: {stderr}"
        );
    }
}

#[test]
fn inflated_dimension_of_a_model_is_a_clear_error() {
    // Dimension 512 of the Open Images model's first activation with one
    // set to 0x10000000 (issue 19): refused before LiteRT sees it.
    let bytes = std::fs::read(common::oidv4_model()).unwrap();
    let (t, k) = common::damage::find_dim(&bytes, 512, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inflated.tflite");
    std::fs::write(&path, common::damage::with_dim(&bytes, t, k, 0x1000_0000)).unwrap();
    let out = common::run_with_memory_limit(
        bin()
            .arg("detect")
            .arg("--model")
            .arg(&path)
            .arg("--labels")
            .arg(common::oidv4_labels())
            .arg(common::photo("dog.jpg")),
        SMALL_MEMORY,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid model")
            && out.stderr.contains(&format!("tensor {t} ("))
            && out.stderr.contains("over the bound of 256 MiB per tensor"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_labels_file_with_a_utf8_bom_works() {
    // The COCO labels as a Windows editor saves them: BOM and CRLF.
    let text = std::fs::read_to_string(common::coco_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bom = dir.path().join("labels.txt");
    std::fs::write(&bom, format!("\u{feff}{}", text.replace('\n', "\r\n"))).unwrap();
    let detect = |labels: &std::path::Path| {
        run(bin()
            .arg("detect")
            .arg("--json")
            .arg("--model")
            .arg(common::coco_model())
            .arg("--labels")
            .arg(labels)
            .arg(common::photo("dog.jpg"))
            .arg(common::photo("person.jpg")))
    };
    let (with_bom, plain) = (detect(&bom), detect(&common::coco_labels()));
    assert_eq!(with_bom.code, Some(0), "{}", with_bom.stderr);
    assert!(
        with_bom.stdout.contains("\"label\":\"person\""),
        "{}",
        with_bom.stdout
    );
    let labels = |out: &str| -> Vec<String> {
        out.lines()
            .flat_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["detections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| format!("{} {}", d["class_id"], d["label"]))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(labels(&with_bom.stdout), labels(&plain.stdout));
}

#[test]
fn labels_that_do_not_fit_are_named() {
    let out = run(bin()
        .arg("detect")
        .arg("--model")
        .arg(common::coco_model())
        .arg("--labels")
        .arg(common::oidv4_labels())
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("oidv4_labels.txt do not fit the model"),
        "{}",
        out.stderr
    );
    let out = run(bin()
        .arg("detect")
        .arg("--model")
        .arg(common::coco_model())
        .arg("--labels")
        .arg("/nonexistent/labels.txt")
        .arg(common::photo("dog.jpg")));
    assert!(
        out.stderr.contains("cannot read labels /nonexistent/labels.txt"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_or_wrong_runtime_is_a_clear_error() {
    let out = run(coco_args(&mut bin())
        .arg("--runtime")
        .arg("/nonexistent/libLiteRt.so")
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("LiteRT runtime library not found"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("/nonexistent/libLiteRt.so (--runtime)"),
        "{}",
        out.stderr
    );

    // A real shared library that is not LiteRT.
    let out = run(coco_args(&mut bin())
        .env("EDGEVISION_LITERT", "/lib/x86_64-linux-gnu/libz.so.1")
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("not a LiteRT runtime: symbol LiteRtCreateEnvironment is missing"),
        "{}",
        out.stderr
    );

    // Nothing anywhere: a copy of the binary away from the checkout lists
    // every place it looked.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("edgevision");
    std::fs::copy(env!("CARGO_BIN_EXE_edgevision"), &exe).unwrap();
    let out = run(std::process::Command::new(&exe)
        .current_dir(dir.path())
        .env_remove("EDGEVISION_LITERT")
        .env_remove("LD_LIBRARY_PATH")
        .arg("detect")
        .arg("--model")
        .arg(common::coco_model())
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("LiteRT runtime library not found"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("{}/runtime/", dir.path().display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("/usr/lib/edgevision/libLiteRt.so"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("scripts/setup"), "{}", out.stderr);
}

#[test]
fn bench_model_prints_json_with_both_timings() {
    let out = run(bin()
        .args([
            "bench-model",
            "--iterations",
            "5",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
        ])
        .arg("--model")
        .arg(common::coco_model())
        .arg("--against")
        .arg(common::oidv4_model())
        .arg("--image")
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    let other = &v["against"][0];
    assert!(
        other["model"].as_str().unwrap().ends_with("oidv4_fp16.tflite"),
        "{v}"
    );
    assert!(other["runtime_only_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert!(other["time_vs_model"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["runtime_only_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["engine_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["overhead_ms"].is_number() && v["pre_post_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["frame"], "300x300");
    assert_eq!(v["threads"], 1);
}

/// Logs that go to a file, a pipe or the journal are plain text: colour
/// codes only reach a terminal.
#[test]
fn log_lines_on_a_pipe_carry_no_colour_codes() {
    let out = run(coco_args(&mut bin())
        .env("EDGEVISION_LOG", "debug")
        .env_remove("NO_COLOR")
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("DEBUG") && out.stderr.contains("loaded LiteRT runtime"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
}

/// Without `--model`, `detect` uses the daemon's defaults (the int8 COCO
/// model and its labels, relative to the working directory); a model with
/// wrong labels gets an error that says how to fix it.
#[test]
fn defaults_as_the_daemon_and_a_label_mismatch_says_what_to_do() {
    let out = run(bin().args(["detect", "--json"]).arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let dets = v["detections"].as_array().unwrap();
    assert!(dets.iter().any(|d| d["label"] == "dog"), "{v}");

    // The 24-class Open Images model with the 80-class COCO labels.
    let out = run(bin()
        .args(["detect", "--model"])
        .arg(common::root().join("models/ssd_mobilenet_v2_oidv4_fp16.tflite"))
        .arg("--labels")
        .arg(common::coco_labels())
        .arg(common::photo("dog.jpg")));
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("do not fit the model") && out.stderr.contains("--labels FILE"),
        "{}",
        out.stderr
    );
}

/// An installed layout (PREFIX/bin, PREFIX/lib/edgevision,
/// PREFIX/share/edgevision/models), run from a directory without models:
/// `detect` and `bench` find the default model, labels and runtime there.
#[test]
fn an_installed_binary_finds_its_model_and_labels_from_any_directory() {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    for d in ["bin", "lib/edgevision", "share/edgevision/models"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    // A copy, not a link: the binary finds its prefix from its real path.
    std::fs::copy(env!("CARGO_BIN_EXE_edgevision"), p.join("bin/edgevision")).unwrap();
    let link = |from: std::path::PathBuf, to: &str| std::os::unix::fs::symlink(from, p.join(to)).unwrap();
    link(common::runtime_path(), "lib/edgevision/libLiteRt.so");
    link(
        common::coco_int8_model(),
        "share/edgevision/models/ssd_mobilenet_v2_coco_int8.tflite",
    );
    link(common::coco_labels(), "share/edgevision/models/coco_labels.txt");
    let elsewhere = tempfile::tempdir().unwrap();
    let installed = || {
        let mut c = std::process::Command::new(p.join("bin/edgevision"));
        c.current_dir(elsewhere.path()).env_remove("EDGEVISION_LITERT");
        c
    };

    let out = run(installed()
        .args(["detect", "--json"])
        .arg(common::photo("dog.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"label\":\"dog\""), "{}", out.stdout);

    let out = run(installed().args(["bench", "--frames", "2", "--json"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let model = v["model"].as_str().unwrap();
    assert!(
        model.ends_with("share/edgevision/models/ssd_mobilenet_v2_coco_int8.tflite"),
        "{v}"
    );
}

/// kite.jpg has people close together, so a tag above one box covers
/// another (the case of issue 14). With the real model's detections: every
/// tag that overlaps another box or an earlier tag had no free place among
/// above / below / inside the top; at least one tag left its "above" place
/// to avoid a box; and the annotated JPEG shows each tag where the layout
/// says (its colour fills the tag).
#[test]
fn burned_in_tags_avoid_other_boxes_on_kite() {
    use edgevision::annotate::{label_color, tag_rects, typeface, AnnotateStyle};
    use edgevision::infer::detection::{BBox, Detection};
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin()
        .arg("detect")
        .arg("--model")
        .arg(common::coco_int8_model())
        .arg("--labels")
        .arg(common::coco_labels())
        .arg("--json")
        .arg("--annotate")
        .arg(dir.path())
        .arg(common::photo("kite.jpg")));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let (w, h) = (
        v["width"].as_u64().unwrap() as u32,
        v["height"].as_u64().unwrap() as u32,
    );
    let dets: Vec<Detection> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b = common::json_box(&d["box"]);
            Detection {
                label: d["label"].as_str().unwrap().to_string(),
                class_id: d["class_id"].as_u64().unwrap() as u32,
                score: d["score"].as_f64().unwrap() as f32,
                bbox: BBox {
                    left: b[0] as f32,
                    top: b[1] as f32,
                    right: b[2] as f32,
                    bottom: b[3] as f32,
                },
            }
        })
        .collect();
    let people = dets.iter().filter(|d| d.label == "person").count();
    assert!(people >= 3, "{dets:?}");
    let font = typeface().expect("fonts-dejavu-core (scripts/deps)");
    let style = AnnotateStyle::for_size(w, h);
    let tags = tag_rects(w, h, &dets, &style, font);
    // Boxes in pixels, clipped to the frame, as they are drawn.
    let px = |d: &Detection| {
        let b = d.bbox;
        [
            (b.left.round() as i64).max(0),
            (b.top.round() as i64).max(0),
            (b.right.round() as i64).min(w as i64),
            (b.bottom.round() as i64).min(h as i64),
        ]
    };
    let overlaps =
        |a: [i64; 4], b: [i64; 4]| a[2].min(b[2]) > a[0].max(b[0]) && a[3].min(b[3]) > a[1].max(b[1]);
    let mut moved = 0;
    for (i, d) in dets.iter().enumerate() {
        let t = tags[i].expect("every detection here has a tag");
        let (tw, th) = (t[2] - t[0], t[3] - t[1]);
        let b = px(d);
        let hits = |r: [i64; 4]| {
            dets.iter().enumerate().any(|(j, o)| j != i && overlaps(r, px(o)))
                || tags[..i].iter().flatten().any(|&e| overlaps(r, e))
        };
        let places = [b[1] - th, b[3], b[1]].map(|y| [t[0], y, t[0] + tw, y + th]);
        assert!(places.contains(&t), "tag {i} {t:?} is none of {places:?}");
        if t != places[0] {
            moved += 1;
        }
        if hits(t) {
            for p in places {
                assert!(
                    p[1] < 0 || p[3] > h as i64 || hits(p),
                    "tag {i} of {} at {t:?} covers something, but {p:?} was free",
                    d.label
                );
            }
        }
    }
    assert!(moved >= 1, "no tag moved from above its box: {tags:?}");
    // The JPEG: inside each tag, the median pixel is the tag's colour (the
    // text covers less than half of it).
    let img = image::open(dir.path().join("kite.jpg")).unwrap().to_rgb8();
    for (d, t) in dets.iter().zip(&tags) {
        let t = t.unwrap();
        let c = label_color(&d.label);
        for ch in 0..3 {
            let mut vals: Vec<u8> = (t[1]..t[3])
                .flat_map(|y| (t[0]..t[2]).map(move |x| (x, y)))
                .map(|(x, y)| img.get_pixel(x as u32, y as u32).0[ch])
                .collect();
            vals.sort_unstable();
            let median = vals[vals.len() / 2];
            assert!(
                (median as i32 - c.0[ch] as i32).abs() <= 40,
                "{} tag {t:?}: channel {ch} median {median}, colour {c:?}",
                d.label
            );
        }
    }
}

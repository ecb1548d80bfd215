//! `edgevision check-config`: what the real binary prints for broken configs
//! and for the demo config.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{bin, root};

/// Runs `edgevision check-config FILE` from the crate root.
fn check_config(file: &Path) -> Output {
    bin()
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run edgevision")
}

/// Writes `text` to a config file in a fresh temporary directory.
fn temp_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgevision.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

/// Asserts that the command failed with a single `error: FILE:...` line
/// containing every one of `parts`; returns stderr.
fn assert_fails(out: &Output, file: &Path, parts: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty(), "stdout: {stdout}");
    let prefix = format!("error: {}:", file.display());
    assert!(stderr.starts_with(&prefix), "want `{prefix}...`, got: {stderr}");
    for part in parts {
        assert!(stderr.contains(part), "want `{part}` in: {stderr}");
    }
    stderr
}

#[test]
fn unknown_key_names_the_key_table_and_line() {
    let (_dir, file) = temp_config("[source]\nuri = \"test:\"\n\n[detect]\ntreshold = 0.6\n");
    let out = check_config(&file);
    assert_fails(
        &out,
        &file,
        &[
            ":5: unknown key `treshold` in [detect]",
            "expected one of: threshold,",
        ],
    );
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let (_dir, file) = temp_config("[source]\nuri = \"test:\"\nfps = \"fast\"\n");
    let out = check_config(&file);
    assert_fails(
        &out,
        &file,
        &[":3: source.fps: invalid type: string \"fast\", expected f32"],
    );
}

#[test]
fn bad_source_uri_lists_the_accepted_forms() {
    let (_dir, file) = temp_config("# camera\n[source]\nuri = \"rtps://cam/stream\"\n");
    let out = check_config(&file);
    assert_fails(
        &out,
        &file,
        &[
            ":3: source.uri: ",
            "rtps://cam/stream",
            "rtsp[s]://",
            "images:DIR",
            "mjpeg:FILE",
            "test:",
        ],
    );
}

#[test]
fn missing_model_file_names_model_path() {
    let (_dir, file) =
        temp_config("[model]\nlabels = \"models/coco_labels.txt\"\npath = \"models/no_such_model.tflite\"\n");
    let out = check_config(&file);
    assert_fails(&out, &file, &[":3: model.path: ", "no_such_model.tflite"]);
}

#[test]
fn paths_of_the_wrong_kind_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let photo = root().join("tests/photos/dog.jpg");
    let cases = [
        (
            "[source]\nuri = \"mjpeg:/dev/zero\"\n".to_string(),
            "source.uri: MJPEG file /dev/zero is a character device, not a regular file",
        ),
        (
            format!("[source]\nuri = \"images:{}\"\n", photo.display()),
            "is a regular file, not a directory",
        ),
        (
            "[model]\npath = \"/dev/zero\"\n".to_string(),
            "model.path: model file /dev/zero is a character device, not a regular file",
        ),
        (
            format!("[model]\nlabels = \"{}\"\n", dir.path().display()),
            "is a directory, not a regular file",
        ),
    ];
    for (text, message) in cases {
        let (_dir, file) = temp_config(&text);
        let stderr = assert_fails(&check_config(&file), &file, &[message]);
        assert!(!stderr.contains("not found"), "{stderr}");
    }
}

#[test]
fn unreadable_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.toml");
    let out = check_config(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot read config {}: ", file.display())),
        "{stderr}"
    );
}

#[test]
fn demo_config_is_ok() {
    let file = Path::new("config/demo.toml");
    for asset in [
        "models/ssd_mobilenet_v2_coco_int8.tflite",
        "models/coco_labels.txt",
        "tests/photos",
    ] {
        assert!(
            root().join(asset).exists(),
            "{asset} is missing: run scripts/setup and scripts/make-models first"
        );
    }
    let out = check_config(file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("config/demo.toml: ok ("), "{stdout}");
    assert!(stdout.contains("images:tests/photos"), "{stdout}");
    assert!(stdout.contains("ssd_mobilenet_v2_coco_int8.tflite"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:8080"), "{stdout}");
    // The model was loaded, and the filter names only real classes.
    assert!(
        stdout.contains("model loads: detector, 300x300 input"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Filter names no class has (typos) are accepted with a warning naming
/// them; `--skip-model` checks without loading anything.
#[test]
fn filter_labels_the_model_lacks_are_named() {
    let (_dir, file) = temp_config(&format!(
        "[model]\npath = \"{}\"\nlabels = \"{}\"\n[detect]\nallow = [\"person\", \"persn\"]\n\
         [detect.label_thresholds]\n\"trafic light\" = 0.3\n",
        crate::common::coco_model().display(),
        crate::common::coco_labels().display()
    ));
    let out = check_config(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("\"persn\", \"trafic light\""),
        "{stderr}"
    );
    let out = bin()
        .args(["check-config", "--skip-model"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("model not loaded"),
        "{stdout}"
    );
}

/// `stream.font` names a file that is not a font: check-config names the
/// key and line, and `run` refuses to start with the same reason (no panic,
/// no silent fallback to the default font).
#[test]
fn a_font_that_is_not_one_is_named_by_check_config_and_run() {
    let (dir, file) = temp_config("[model]\nlabels = \"\"\n[stream]\nfont = \"labels.txt\"\n");
    std::fs::write(dir.path().join("labels.txt"), "person\n").unwrap();
    let out = check_config(&file);
    assert_fails(
        &out,
        &file,
        &[":4: stream.font: ", "is not a TrueType or OpenType font"],
    );
    let out = bin()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .expect("run edgevision");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stream.font") && stderr.contains("is not a TrueType or OpenType font"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

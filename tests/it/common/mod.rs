//! Shared by the end-to-end tests: where the assets are and how to run the
//! binary. Missing assets fail the test with a hint; they never skip it.

pub mod daemon;
pub mod damage;
pub mod mjpeg;
pub mod tiny_models;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgevision::infer::{Runtime, RuntimeSearch};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file set-up provides; panics (fails the test) when it is missing.
pub fn asset(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.is_file(), "{} is missing: run scripts/setup first", p.display());
    p
}

/// The held-out photos (`scripts/setup --heldout`); fails when absent.
pub fn heldout_dir() -> PathBuf {
    let p = root().join("tests/photos/heldout");
    assert!(
        p.is_dir(),
        "{} is missing: run scripts/setup --heldout",
        p.display()
    );
    p
}

pub fn photo(name: &str) -> PathBuf {
    asset(&format!("tests/photos/{name}"))
}

pub fn coco_model() -> PathBuf {
    asset("models/ssd_mobilenet_v2_coco_quant.tflite")
}

/// The default model, made by `scripts/make-models` with `edgevision convert`.
pub fn coco_int8_model() -> PathBuf {
    let p = root().join("models/ssd_mobilenet_v2_coco_int8.tflite");
    assert!(p.is_file(), "{} is missing: run scripts/make-models", p.display());
    p
}

pub fn coco_labels() -> PathBuf {
    asset("models/coco_labels.txt")
}

pub fn oidv4_model() -> PathBuf {
    asset("models/ssd_mobilenet_v2_oidv4_fp16.tflite")
}

pub fn oidv4_labels() -> PathBuf {
    asset("models/oidv4_labels.txt")
}

pub fn runtime_path() -> PathBuf {
    asset(&format!("runtime/{}/libLiteRt.so", std::env::consts::ARCH))
}

/// The runtime, loaded once for the test process.
pub fn runtime() -> &'static Runtime {
    Runtime::load(&RuntimeSearch {
        cli: Some(runtime_path()),
        config: None,
    })
    .expect("load LiteRT")
}

const MALLOC_DEBUG: &str = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0";

/// The `edgevision` binary, run from the crate root with glibc's heap
/// checks on, so that a runtime writing past a buffer aborts the run.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgevision"));
    c.current_dir(root())
        .env("MALLOC_CHECK_", "3")
        .env_remove("EDGEVISION_LITERT");
    if std::path::Path::new(MALLOC_DEBUG).exists() {
        c.env("LD_PRELOAD", MALLOC_DEBUG);
    }
    c
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn edgevision");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` like [`run`] with its data memory (heap, private writable
/// mappings: `RLIMIT_DATA`) capped at `limit` bytes, so that reading or
/// allocating what a damaged file claims fails the run instead of passing
/// unnoticed. (Peak RSS from `wait4` cannot tell: a child spawned with
/// vfork inherits the test process's high-water mark at exec.)
pub fn run_with_memory_limit(cmd: &mut Command, limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(cmd.stdin(std::process::Stdio::null()))
}

/// Calls `f` every `every` until it returns `Some` (returned), or `None` once
/// `timeout` has passed.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls every 200 ms until `f` returns Some, or fails after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(Duration::from_secs(secs), Duration::from_millis(200), f)
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `done` every 20 ms; whether it held within `timeout`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    poll(timeout, Duration::from_millis(20), || done().then_some(())).is_some()
}

/// A temporary directory holding copies of the photos `names`.
pub fn photo_dir(names: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(photo(name), d.path().join(name)).unwrap();
    }
    d
}

/// The value of the sample `name` in Prometheus text format: the
/// daemon-wide one (no labels), or the `default` camera's.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let camera = format!("{name}{{camera=\"default\"}}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n == name || n == camera)
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A detection's `box` as JSON gives it (`detect --json`, `/api/detections`):
/// its numbers.
pub fn json_box(b: &serde_json::Value) -> Vec<f64> {
    b.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// A self-signed certificate for 127.0.0.1 made with openssl in `dir`, as
/// (certificate, key) PEM files. Not a CA (`CA:FALSE`): webpki refuses a
/// CA certificate as a server's own (`CaUsedAsEndEntity`), and a client
/// can trust this one directly (`ca_file`).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed (scripts/deps --test installs it)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

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
fn check_config_shows_an_http_source_without_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edgevision.toml");
    let uri = format!("http://admin:hunter2@127.0.0.1:9/stream.mjpg?token={TOKEN}");
    std::fs::write(&cfg, viewer_config(&uri)).unwrap();
    let out = common::run(common::bin().arg("check-config").arg(&cfg));
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "{text}");
    assert!(
        text.contains("http://***@127.0.0.1:9/stream.mjpg?token=***"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !text.contains(TOKEN), "{text}");
}

#[test]
fn a_malformed_http_uri_and_a_bad_ca_file_are_clear_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (uri, want) in [
        ("http://admin:hunter2@cam:port/video", "not a port number"),
        ("https://admin:hunter2@cam:port/video", "not a port number"),
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
    let body = viewer_config("https://cam/video").replace(
        "reconnect_max_backoff = 1.0",
        &format!("reconnect_max_backoff = 1.0\nca_file = \"{}\"", not_pem.display()),
    );
    let cfg = dir.path().join("edgevision.toml");
    std::fs::write(&cfg, &body).unwrap();
    let out = common::run(common::bin().arg("check-config").arg(&cfg));
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_ne!(out.code, Some(0), "{text}");
    let line = body.lines().position(|l| l.starts_with("ca_file")).unwrap() + 1;
    assert!(
        text.contains(&format!(":{line}: source.ca_file")) && text.contains("no PEM certificate"),
        "{text}"
    );
}

/// socat terminating TLS on 127.0.0.1 (a free port) in front of `upstream`,
/// with `cert`/`key`; killed on drop.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
}

impl TlsProxy {
    fn start(upstream: &str, cert: &std::path::Path, key: &std::path::Path) -> TlsProxy {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:{upstream}"))
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("socat is needed (scripts/deps --test installs it)");
        wait_for(10, "socat listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        TlsProxy { child, port }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_source_reads_a_camera_behind_tls_trusting_only_its_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(tmp.path());
    let photos = photo_dir(&["dog.jpg"]);
    let cam = start_camera(photos.path(), "127.0.0.1:0");
    let proxy = TlsProxy::start(&cam.addr, &cert, &key);
    let uri = format!("https://127.0.0.1:{}/stream.mjpg?token={TOKEN}", proxy.port);

    // Without the CA file the self-signed certificate is refused.
    let untrusting = start(&viewer_config(&uri));
    wait_for(30, "the certificate refused", || {
        let lines = untrusting.log_lines("invalid peer certificate");
        (!lines.is_empty()).then_some(())
    });
    assert_eq!(get(&untrusting.addr, "/readyz").0, 503);
    drop(untrusting);

    // With it: the dog through TLS.
    let cfg = viewer_config(&uri).replace(
        "reconnect_max_backoff = 1.0",
        &format!("reconnect_max_backoff = 1.0\nca_file = \"{}\"", cert.display()),
    );
    let viewer = start(&cfg);
    wait_for(90, "the dog through https", || {
        let (code, body) = get(&viewer.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    assert_eq!(get(&viewer.addr, "/readyz").0, 200);
    assert_eq!(viewer.log_lines(TOKEN), Vec::<String>::new());
    assert!(!viewer
        .log_lines(&format!("https://127.0.0.1:{}/stream.mjpg?token=***", proxy.port))
        .is_empty());
}

fn exec_config(uri: &str, extra: &str) -> String {
    format!(
        r#"
[source]
uri = "{uri}"
stall_timeout = 1.0
reconnect_max_backoff = 0.5
{extra}

[model]
path = "{model}"
labels = "{labels}"
threads = 1
"#,
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

/// Process ids (not zombies) whose process group is `pgid`, from /proc.
/// The group's members once gone, or those still there after 2 s: SIGKILL
/// reaches members other than the reaped leader a moment later.
pub(crate) fn group_gone(pgid: u32) -> Vec<u32> {
    use std::time::Duration;
    common::poll(Duration::from_secs(2), Duration::from_millis(20), || {
        group_members(pgid).is_empty().then_some(())
    });
    group_members(pgid)
}

pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        if f[2].parse::<u32>() == Ok(pgid) && f[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// The pids of the commands the daemon logged as started.
pub(crate) fn started_pids(d: &Daemon) -> Vec<u32> {
    d.log_lines("started process ")
        .iter()
        .filter_map(|l| {
            l.split("started process ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn exec_sources_that_fail_are_retried_with_clear_errors_and_leave_no_process() {
    let cases = [
        (
            "exec:sleep 600 & while :; do echo garbage; sleep 0.1; done",
            "no complete frame in",
        ),
        (
            "exec:echo starting >&2; exit 4",
            "the command ended: exit status: 4",
        ),
        ("exec:edgevision-no-such-command --x", "(command not found)"),
    ];
    for (uri, want) in cases {
        let mut d = start(&exec_config(uri, ""));
        wait_for(30, "two failed starts", || {
            (started_pids(&d).len() >= 2).then_some(())
        });
        wait_for(10, "the error logged", || {
            (!d.log_lines(want).is_empty()).then_some(())
        });
        assert_eq!(get(&d.addr, "/healthz").0, 200, "{uri}");
        assert_eq!(get(&d.addr, "/readyz").0, 503, "{uri}");
        assert_eq!(metric(&metrics(&d.addr), "edgevision_source_up"), Some(0.0));
        if uri.contains("no-such-command") {
            assert!(
                !d.log_lines("edgevision-no-such-command: command not found on PATH")
                    .is_empty(),
                "the missing command is named at start"
            );
        }
        if uri.contains("echo starting") {
            assert!(!d.log_lines("stderr: starting").is_empty(), "stderr is logged");
        }
        // The garbage case runs a background `sleep 600` in the group.
        let pids = started_pids(&d);
        d.signal(libc::SIGTERM);
        let status = d.wait_exit(10);
        assert!(status.success(), "{uri}: {status:?}");
        for pgid in pids {
            assert_eq!(
                group_gone(pgid),
                Vec::<u32>::new(),
                "{uri}: group {pgid} left behind"
            );
        }
    }
}

#[test]
fn check_config_names_a_missing_command() {
    for (uri, want) in [
        (
            "exec:edgevision-no-such-command -f mjpeg",
            "edgevision-no-such-command: command not found on PATH",
        ),
        ("rpicam:0", "rpicam-vid: command not found on PATH"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("edgevision.toml");
        std::fs::write(&cfg, exec_config(uri, "")).unwrap();
        let out = common::run(
            common::bin()
                .arg("check-config")
                .arg(&cfg)
                .env("PATH", "/usr/bin:/bin"),
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_ne!(out.code, Some(0), "{uri}: {text}");
        assert!(
            text.contains("source.uri") && text.contains(want),
            "{uri}: {text}"
        );
    }
}

/// Runs ffmpeg (a test dependency, see scripts/deps), failing if it is missing.
pub(crate) fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is needed (scripts/deps --test installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rpicam_source_unpads_rpicam_vid_frames_and_finds_the_dog_where_it_is() {
    let (w, h) = (600usize, 450usize);
    let tmp = tempfile::tempdir().unwrap();
    let dog = common::photo("dog.jpg");
    let scaled = tmp.path().join("dog600.png");
    let raw = tmp.path().join("dog600.yuv");
    let dog_arg = dog.to_str().unwrap();
    ffmpeg(&["-i", dog_arg, "-vf", "scale=600:450", scaled.to_str().unwrap()]);
    ffmpeg(&[
        "-i",
        dog_arg,
        "-vf",
        "scale=600:450",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "rawvideo",
        raw.to_str().unwrap(),
    ]);
    let packed = std::fs::read(&raw).unwrap();
    assert_eq!(packed.len(), w * h * 3 / 2);
    // Re-pad as rpicam-vid writes it: luma rows 640 bytes, chroma 320.
    let (ys, cs) = (640usize, 320usize);
    let mut padded = Vec::new();
    let (y, rest) = packed.split_at(w * h);
    let (u, v) = rest.split_at(w * h / 4);
    for (plane, width, stride) in [(y, w, ys), (u, w / 2, cs), (v, w / 2, cs)] {
        for row in plane.chunks(width) {
            padded.extend_from_slice(row);
            padded.resize(padded.len() + stride - width, 0x80);
        }
    }
    assert_eq!(padded.len(), ys * h + 2 * cs * h / 2);
    let frame = tmp.path().join("frame.yuv");
    std::fs::write(&frame, &padded).unwrap();
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let script = bin_dir.join("rpicam-vid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             # Stand-in for rpicam-vid: checks its arguments, then writes padded yuv420 frames.\n\
             want='-t 0 -n --codec yuv420 --width 600 --height 450 --framerate 5 --camera 0 -o -'\n\
             if [ \"$*\" != \"$want\" ]; then echo \"rpicam-vid stand-in: unexpected arguments: $*\" >&2; exit 2; fi\n\
             while :; do cat '{}' || exit 1; sleep 0.2; done\n",
            frame.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let d = common::daemon::start_with_env(
        &exec_config("rpicam:0", "width = 600\nheight = 450\nfps = 5.0"),
        &[("PATH", path.as_str())],
    );
    let report: serde_json::Value = wait_for(60, "the dog from the rpicam stand-in", || {
        let (code, body) = get(&d.addr, "/api/detections");
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(v)
    });
    assert!(
        d.log_lines("unexpected arguments").is_empty(),
        "{:?}",
        d.log_lines("unexpected")
    );
    let got = dog_box(&report);

    let out = common::run(
        common::bin()
            .args(["detect", "--json", "--model"])
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .arg(&scaled),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let want: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    let want = dog_box(&want);
    // Within 3 % of the frame: a wrong stride would shear the picture and
    // lose or move the dog.
    for (g, e) in got.iter().zip(&want) {
        assert!(
            (g - e).abs() < 0.03 * w as f64,
            "daemon {got:?} vs detect {want:?}"
        );
    }
}

#[test]
fn exec_mjpeg_source_finds_the_dog_and_a_reload_kills_the_old_command() {
    let dog = common::photo("dog.jpg");
    let looped = |pause: &str| format!("exec:while :; do cat '{}'; sleep {pause}; done", dog.display());
    let mut d = start(&exec_config(&looped("0.2"), ""));
    wait_for(60, "the dog from the command's MJPEG", || {
        let (code, body) = get(&d.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    let first = started_pids(&d);
    assert_eq!(first.len(), 1, "started once: {first:?}");
    assert!(!group_members(first[0]).is_empty(), "the command runs");

    // A new command on reload: the old one's whole group is gone.
    std::fs::write(&d.config, exec_config(&looped("0.25"), "")).unwrap();
    d.signal(libc::SIGHUP);
    let pids = wait_for(30, "the new command started", || {
        let p = started_pids(&d);
        (p.len() >= 2).then_some(p)
    });
    assert_eq!(
        group_gone(first[0]),
        Vec::<u32>::new(),
        "the old command was left running"
    );
    wait_for(30, "ready with the new command", || {
        (get(&d.addr, "/readyz").0 == 200).then_some(())
    });
    let last = *pids.last().unwrap();
    assert!(!group_members(last).is_empty());
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(10).success());
    assert_eq!(
        group_gone(last),
        Vec::<u32>::new(),
        "the command outlived the daemon"
    );
}

/// The dog's box in a report (`/api/detections` or a `detect --json` line).
fn dog_box(report: &serde_json::Value) -> Vec<f64> {
    let dets = report["detections"].as_array().expect("detections");
    let dog = dets.iter().find(|d| d["label"] == "dog").expect("a dog");
    common::json_box(&dog["box"])
}

#[test]
fn bench_source_counts_the_cpu_of_the_command_it_runs() {
    // A command that burns CPU for each frame it writes: the figure must
    // include the child's time, not only edgevision's.
    let out = common::run(common::bin().args([
        "bench-source",
        "exec:while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; head -c 1200 /dev/zero; done",
        "--format",
        "i420",
        "--width",
        "40",
        "--height",
        "20",
        "--frames",
        "10",
        "--warmup",
        "1",
    ]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["frames"], 10);
    assert_eq!((j["width"].as_u64(), j["height"].as_u64()), (Some(40), Some(20)));
    // 20000 shell loop steps take well over 1 ms of CPU anywhere.
    let ms = j["cpu_ms_per_frame"].as_f64().unwrap();
    assert!(ms > 1.0, "{j}");
}

//! `rtsp://` sources end to end: the real daemon, its real ffmpeg child, and
//! GStreamer's real RTSP server (`tests/rtsp_server.py`, run with the system
//! Python) streaming `dog.jpg` as H.264 on 127.0.0.1. Missing packages make
//! the server fail to start, and the tests with it (scripts/deps --test
//! installs them).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common;
use crate::sources::{group_gone, group_members, started_pids};
use common::daemon::{get, metrics, start, Daemon};
use common::{metric, wait_for};

/// The camera's login; the password has characters URLs must escape.
const USER: &str = "camuser";
const PASSWORD: &str = "s3cret:@/pw-7d41";

/// GStreamer's RTSP server on loopback, killed on drop.
struct RtspServer {
    child: Child,
    url: String,
    port: u16,
}

impl RtspServer {
    /// Serves `dog.jpg` at `width` x `height` on `port` (0: a free one),
    /// behind basic auth with [`USER`] and [`PASSWORD`] when `auth`.
    fn start(port: u16, width: u32, height: u32, auth: bool) -> RtspServer {
        Self::start_with(port, width, height, auth, &[])
    }

    /// [`RtspServer::start`] with more arguments for `tests/rtsp_server.py`.
    fn start_with(port: u16, width: u32, height: u32, auth: bool, extra: &[&str]) -> RtspServer {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(common::root().join("tests/rtsp_server.py"))
            .arg(common::photo("dog.jpg"))
            .args(["--port", &port.to_string()])
            .args(["--width", &width.to_string(), "--height", &height.to_string()])
            .args(extra);
        if auth {
            cmd.args(["--user", USER, "--password", PASSWORD]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 is needed for the RTSP server");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "the RTSP server did not start (scripts/deps --test installs \
                 gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-*): {line}{err}"
            );
        };
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        RtspServer {
            child,
            url: url.to_string(),
            port,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rtsp_config(uri: &str, extra: &str) -> String {
    format!(
        r#"
[source]
uri = "{uri}"
width = 640
height = 480
stall_timeout = 2.0
reconnect_max_backoff = 1.0
{extra}

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

/// `/api/detections`, or `null` before the first result.
fn report(d: &Daemon) -> serde_json::Value {
    let (code, body) = get(&d.addr, "/api/detections");
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&body).unwrap()
}

fn wait_dog(d: &Daemon, secs: u64, what: &str) {
    wait_for(secs, what, || {
        let r = report(d);
        (r["signal"] == true && r["detections"].to_string().contains("\"dog\"")).then_some(())
    });
}

fn reconnects(d: &Daemon) -> f64 {
    metric(&metrics(&d.addr), "edgevision_camera_reconnects_total").unwrap_or(0.0)
}

/// The command line of process `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn rtsp_camera_with_a_password_file_survives_stop_cont_a_killed_ffmpeg_and_a_server_restart() {
    let server = RtspServer::start(0, 640, 480, true);
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("camera-password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    let cfg = rtsp_config(
        &server.url,
        &format!("username = \"{USER}\"\npassword_file = \"{}\"", pw_file.display()),
    );
    let mut d = start(&cfg);
    wait_dog(&d, 90, "the dog through RTSP");
    assert_eq!(get(&d.addr, "/readyz").0, 200);
    let pids = started_pids(&d);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(
        cmdline(pids[0]).contains("-rtsp_transport tcp"),
        "{}",
        cmdline(pids[0])
    );

    // The server freezes past the stall timeout: not ready, "no signal".
    let before = reconnects(&d);
    server.signal(libc::SIGSTOP);
    wait_for(20, "/readyz 503 while the server is stopped", || {
        (get(&d.addr, "/readyz").0 == 503).then_some(())
    });
    wait_for(10, "the no-signal frame", || {
        (report(&d)["signal"] == false).then_some(())
    });
    assert_eq!(metric(&metrics(&d.addr), "edgevision_source_up"), Some(0.0));
    assert_eq!(get(&d.addr, "/healthz").0, 200);
    // The stalled ffmpeg was killed, its group with it.
    assert_eq!(
        group_gone(pids[0]),
        Vec::<u32>::new(),
        "the stalled ffmpeg is left"
    );

    // It thaws: frames again, and the reconnect is counted.
    server.signal(libc::SIGCONT);
    wait_for(60, "ready after SIGCONT", || {
        (get(&d.addr, "/readyz").0 == 200).then_some(())
    });
    wait_for(10, "the reconnect counted", || {
        (reconnects(&d) > before).then_some(())
    });
    wait_dog(&d, 30, "the dog after SIGCONT");

    // ffmpeg is killed from outside: it is started again.
    let n = started_pids(&d).len();
    let current = *started_pids(&d).last().unwrap();
    // SAFETY: a signal to a process of this test's daemon.
    assert_eq!(unsafe { libc::kill(current as i32, libc::SIGKILL) }, 0);
    let pids = wait_for(30, "ffmpeg started again", || {
        let p = started_pids(&d);
        (p.len() > n).then_some(p)
    });
    assert!(
        !d.log_lines("the command ended: signal: 9").is_empty(),
        "the kill is logged"
    );
    wait_dog(&d, 60, "the dog after the killed ffmpeg");
    assert!(!group_members(*pids.last().unwrap()).is_empty());

    // The server dies and comes back on the same port. Counted from before
    // it dies: ffmpeg is started again at once and counts as a reopen, and
    // that same ffmpeg may be the one that reaches the new server.
    let port = server.port;
    let before = reconnects(&d);
    drop(server);
    wait_for(20, "/readyz 503 without a server", || {
        (get(&d.addr, "/readyz").0 == 503).then_some(())
    });
    let server = RtspServer::start(port, 640, 480, true);
    wait_dog(&d, 60, "the dog after the server restart");
    assert!(reconnects(&d) > before);

    // The password appears nowhere: logs, API, metrics, the page.
    assert_eq!(d.log_lines(PASSWORD).len(), 0);
    assert_eq!(d.log_lines("s3cret").len(), 0);
    for path in ["/api/detections", "/metrics", "/"] {
        let (code, body) = get(&d.addr, path);
        assert_eq!(code, 200, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("s3cret"),
            "{path} shows the password"
        );
    }

    // After the daemon stops, no ffmpeg is left.
    let pids = started_pids(&d);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(10).success());
    for pid in pids {
        assert_eq!(
            group_gone(pid),
            Vec::<u32>::new(),
            "ffmpeg {pid} outlived the daemon"
        );
    }
    drop(server);
}

#[test]
fn ffmpeg_dies_with_a_killed_daemon_and_udp_and_extra_arguments_are_used() {
    let server = RtspServer::start(0, 640, 480, false);
    let cfg = rtsp_config(
        &server.url,
        "rtsp_transport = \"udp\"\nffmpeg_args = [\"-fflags\", \"nobuffer\"]",
    );
    let mut d = start(&cfg);
    wait_dog(&d, 90, "the dog over RTP/UDP");
    let pid = *started_pids(&d).last().unwrap();
    let args = cmdline(pid);
    assert!(
        args.contains("-rtsp_transport udp -fflags nobuffer -i rtsp://"),
        "{args}"
    );
    // SIGKILL leaves the daemon no chance to clean up: the kernel kills
    // ffmpeg (PR_SET_PDEATHSIG).
    d.child.kill().unwrap();
    d.wait_exit(10);
    assert_eq!(
        group_gone(pid),
        Vec::<u32>::new(),
        "ffmpeg outlived a killed daemon"
    );
}

/// A TCP server on loopback that answers every connection with `reply`
/// and closes it.
fn garbage_server(reply: &'static [u8]) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(reply);
        }
    });
    port
}

#[test]
fn bad_rtsp_sources_are_retried_with_clear_errors_and_leave_no_ffmpeg() {
    let server = RtspServer::start(0, 640, 480, true);
    let refused = {
        // A port nobody listens on: bound, then closed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let garbage = garbage_server(b"HELLO THIS IS NOT RTSP\r\n\r\n\x00\xff\xfe garbage\r\n");
    let wrong_path = server.url.replace("/cam", "/nope");
    let no_password = server.url.clone();
    let cases = [
        (format!("rtsp://127.0.0.1:{refused}/cam"), "Connection refused"),
        (format!("rtsp://127.0.0.1:{garbage}/cam"), "the command ended"),
        (wrong_path, "404 Not Found"),
        (no_password, "401 Unauthorized"),
    ];
    for (uri, want) in cases {
        let mut d = start(&rtsp_config(&uri, ""));
        wait_for(60, "two failed starts", || {
            (started_pids(&d).len() >= 2).then_some(())
        });
        wait_for(10, "the error logged", || {
            (!d.log_lines(want).is_empty()).then_some(())
        });
        assert_eq!(get(&d.addr, "/healthz").0, 200, "{uri}");
        assert_eq!(get(&d.addr, "/readyz").0, 503, "{uri}");
        // No frame came: no result, or the no-signal frame's.
        let r = report(&d);
        assert!(r.is_null() || r["signal"] == false, "{uri}: {r}");
        let pids = started_pids(&d);
        d.signal(libc::SIGTERM);
        assert!(d.wait_exit(10).success(), "{uri}");
        for pid in pids {
            assert_eq!(group_gone(pid), Vec::<u32>::new(), "{uri}: ffmpeg {pid} left");
        }
    }
}

fn check_config(body: &str, path_env: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edgevision.toml");
    std::fs::write(&cfg, body).unwrap();
    let mut cmd = common::bin();
    cmd.arg("check-config").arg("--skip-model").arg(&cfg);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    cmd.envs(env.iter().copied());
    let out = common::run(&mut cmd);
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

/// The line of `key` in `body`, as config errors number them.
fn line_of(body: &str, key: &str) -> usize {
    body.lines().position(|l| l.starts_with(key)).unwrap() + 1
}

#[test]
fn check_config_validates_rtsp_sources_and_their_credentials() {
    let uri = "rtsp://127.0.0.1:9/cam";
    // Fine, with the password from the environment; the URL shown redacted.
    let body = rtsp_config(uri, "username = \"u\"\npassword_env = \"EV_TEST_CAM_PW\"");
    let (code, text) = check_config(&body, None, &[("EV_TEST_CAM_PW", "hunter2")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(uri) && !text.contains("hunter2"), "{text}");
    let body = rtsp_config("rtsp://admin:hunter2@127.0.0.1:9/cam", "");
    let (code, text) = check_config(&body, None, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("rtsp://***@127.0.0.1:9/cam") && !text.contains("hunter2"),
        "{text}"
    );

    let missing_file = "/nonexistent/edgevision-camera-password";
    let cases: Vec<(String, Option<&str>, &str, &str)> = vec![
        // No ffmpeg on PATH.
        (
            rtsp_config(uri, ""),
            Some("/nonexistent"),
            "source.uri",
            "ffmpeg: command not found on PATH",
        ),
        (
            rtsp_config(uri, "username = \"u\"\npassword_env = \"EV_TEST_UNSET_PW\""),
            None,
            "source.password_env",
            "the environment variable EV_TEST_UNSET_PW is not set",
        ),
        (
            rtsp_config(
                uri,
                &format!("username = \"u\"\npassword_file = \"{missing_file}\""),
            ),
            None,
            "source.password_file",
            "cannot read /nonexistent/edgevision-camera-password",
        ),
        (
            rtsp_config("test:", "username = \"u\""),
            None,
            "source.username",
            "only for http:// and rtsp:// sources",
        ),
        (
            rtsp_config(
                "rtsp://a:b@127.0.0.1/cam",
                "username = \"u\"\npassword_env = \"X\"",
            ),
            None,
            "source.username",
            "already has user:pass@",
        ),
        (
            rtsp_config(uri, "rtsp_transport = \"sctp\""),
            None,
            "source.rtsp_transport",
            "unknown value `sctp` (expected one of: tcp, udp)",
        ),
        (
            rtsp_config(uri, "").replace("width = 640", "width = 641"),
            None,
            "source.uri",
            "even width and height",
        ),
        (
            rtsp_config("rtsp://127.0.0.1:port/cam", ""),
            None,
            "source.uri",
            "not a port number",
        ),
    ];
    for (body, path, key, want) in cases {
        let (code, text) = check_config(&body, path, &[]);
        assert_ne!(code, Some(0), "{want}: {text}");
        assert!(text.contains(key) && text.contains(want), "{want}: {text}");
        // The line named is the key's own, where the file sets it.
        let short = key.trim_start_matches("source.");
        if short != "uri" {
            let line = line_of(&body, short);
            assert!(
                text.contains(&format!(".toml:{line}:")),
                "{want}: line {line}: {text}"
            );
        }
    }
}

#[test]
fn run_says_when_ffmpeg_is_missing_and_starts_it_once_installed() {
    let server = RtspServer::start(0, 640, 480, false);
    let bin_dir = tempfile::tempdir().unwrap();
    let path = bin_dir.path().to_str().unwrap().to_string();
    let d = common::daemon::start_with_env(&rtsp_config(&server.url, ""), &[("PATH", path.as_str())]);
    wait_for(30, "the missing ffmpeg named", || {
        (!d.log_lines("ffmpeg: command not found on PATH").is_empty()).then_some(())
    });
    wait_for(30, "the failed start logged", || {
        (!d.log_lines("cannot start ffmpeg").is_empty()).then_some(())
    });
    assert_eq!(get(&d.addr, "/healthz").0, 200);
    assert_eq!(get(&d.addr, "/readyz").0, 503);
    // "Installing" ffmpeg: the daemon's retries find it, no restart needed.
    std::os::unix::fs::symlink("/usr/bin/ffmpeg", bin_dir.path().join("ffmpeg")).unwrap();
    wait_dog(&d, 90, "the dog once ffmpeg is there");
}

#[test]
fn detect_and_convert_take_their_frames_from_an_rtsp_camera() {
    use common::tiny_models::{build_colour_classifier, TempFile, Variant};
    let server = RtspServer::start(0, 640, 480, false);
    let out = common::run(
        common::bin()
            .args(["detect", "--json", "--samples", "3", "--model"])
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .arg(&server.url),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for (i, r) in lines.iter().enumerate() {
        assert_eq!(r["image"], format!("{}#{}", server.url, i + 1));
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(640), Some(480))
        );
        assert!(r["detections"].to_string().contains("\"dog\""), "{r}");
    }

    // int8 calibration on 3 frames of the camera (a tiny model: fast).
    let tiny = TempFile::new("rtsp-cal.tflite", &build_colour_classifier(Variant::FloatSoftmax));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let o = common::run(
        common::bin()
            .arg("convert")
            .arg("--input")
            .arg(tiny.path())
            .arg("--output")
            .arg(dir.path().join("out.tflite"))
            .args(["--mode", "int8", "--samples", "3", "--calibration", &server.url])
            .arg("--report")
            .arg(&report)
            .arg("--runtime")
            .arg(common::runtime_path()),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(j["calibration_images"], 3, "{j}");

    // A camera that is not there: a clear error, no crash.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = common::run(
        common::bin()
            .args(["detect", "--model"])
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .arg(format!("rtsp://u:hunter2@127.0.0.1:{refused}/cam")),
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot read from source rtsp://***@127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

/// `rtsps://`: RTSP over TLS, from GStreamer's server with a certificate
/// made here by openssl; ffmpeg reads it and the dog is found.
#[test]
fn an_rtsps_camera_over_tls_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());
    let server = RtspServer::start_with(
        0,
        640,
        480,
        false,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("rtsps://"), "{}", server.url);
    let d = start(&rtsp_config(&server.url, ""));
    wait_dog(&d, 90, "the dog through rtsps://");
}

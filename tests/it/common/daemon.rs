//! Starting the real daemon for end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mjpeg::Mjpeg;
use super::wait_for;

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    /// The config file it was started with (tests may rewrite it and send SIGHUP).
    pub config: PathBuf,
    /// Every line the daemon wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Sends `sig` to the daemon process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// The log lines so far that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }

    /// Waits for the daemon to exit, failing after `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        wait_for(secs, "exit", || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `edgevision run` with the given config body (paths relative to
/// the crate root) on a free port and waits until it listens.
pub fn start(config: &str) -> Daemon {
    start_with_env(config, &[])
}

/// [`start`] with extra environment variables.
pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
    start_with(config, |cmd| {
        cmd.envs(env.iter().copied());
    })
}

/// [`start`], with the command adjusted by `adjust` before it is spawned.
pub fn start_with(config: &str, adjust: impl FnOnce(&mut Command)) -> Daemon {
    start_listening(config, "127.0.0.1:0", adjust)
}

/// [`start_with`] on `listen` (e.g. the port of a daemon that was stopped,
/// to start it again where its clients look for it).
pub fn start_listening(config: &str, listen: &str, adjust: impl FnOnce(&mut Command)) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edgevision.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = super::bin();
    cmd.args(["run", "--listen", listen, "--config"])
        .arg(&cfg)
        .env("EDGEVISION_LOG", "info");
    adjust(&mut cmd);
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn edgevision run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").trim_end_matches('/');
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
            }
            eprintln!("[daemon] {line}");
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("daemon did not start listening");
    Daemon {
        child,
        addr,
        config: cfg,
        log,
        _dir: dir,
    }
}

pub fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.bytes().unwrap().to_vec())
}

/// GET /metrics, as text.
pub fn metrics(addr: &str) -> String {
    String::from_utf8(get(addr, "/metrics").1).unwrap()
}

/// [`start`], then waits until `/api/detections` reports a dog (the test
/// photos' surest detection).
pub fn start_until_dog(config: &str) -> Daemon {
    let d = start(config);
    wait_for(60, "the dog reported", || {
        let (code, body) = get(&d.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    d
}

/// GET /stream.mjpg, checked to be a multipart stream; read its parts with
/// [`Mjpeg::next_part`].
pub fn open_stream(addr: &str, timeout: Duration) -> Mjpeg {
    open_stream_at(addr, "/stream.mjpg", timeout)
}

/// [`open_stream`] for another path (a camera's: `/cameras/NAME/stream.mjpg`).
pub fn open_stream_at(addr: &str, path: &str, timeout: Duration) -> Mjpeg {
    let resp = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .expect("stream request");
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("multipart/x-mixed-replace"), "{ctype}");
    Mjpeg::new(&ctype, Box::new(BufReader::new(resp)))
}

//! The HTTP server as its clients see it: a real server on 127.0.0.1:0, fed
//! real JPEG frames at ~30 fps, read by raw sockets (to check the wire
//! format byte by byte) and by reqwest.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use bytes::Bytes;
use edgevision::http::{serve, Auth, HttpSettings};
use edgevision::hub::{EncodedFrame, FrameReport, Hub};
use edgevision::metrics::Metrics;
use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use serde_json::Value;

use crate::common::mjpeg::{read_line, Mjpeg};
use crate::common::wait_until;

const FPS: u64 = 30;

// ---------------------------------------------------------------------------
// Server, feeder and frames

struct Server {
    addr: SocketAddr,
    hub: Arc<Hub>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    fn start(settings: HttpSettings) -> Server {
        let hub = Hub::new("default", &Arc::new(Metrics::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = hub.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(
                    listener,
                    edgevision::hub::Cameras::single(served),
                    settings,
                    async {
                        let _ = rx.await;
                    },
                )
                .await
            })
        });
        Server {
            addr,
            hub,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn open() -> Server {
        Server::start(settings(16, Duration::from_secs(5), Auth::None))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown; returns how long `serve` took to return, and what.
    fn stop(&mut self) -> (Duration, io::Result<()>) {
        let started = Instant::now();
        let _ = self.shutdown.take().expect("running").send(());
        let result = self.thread.take().unwrap().join().expect("server thread");
        (started.elapsed(), result)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
            let _ = self.thread.take().map(JoinHandle::join);
        }
    }
}

fn settings(max_clients: usize, client_timeout: Duration, auth: Auth) -> HttpSettings {
    HttpSettings {
        max_clients,
        client_timeout,
        auth,
        ..HttpSettings::default()
    }
}

/// `count` distinct JPEGs: a moving gradient, optionally with noise so the
/// frames have a realistic size (tens of KB) instead of a few hundred bytes.
fn jpeg_frames(width: u32, height: u32, count: usize, noise: bool) -> Vec<Bytes> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|i| {
            let mut rgb = Vec::with_capacity((width * height * 3) as usize);
            for y in 0..height {
                for x in 0..width {
                    let n = if noise {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state & 0x3f) as u32
                    } else {
                        0
                    };
                    let shift = i as u32 * 8;
                    rgb.push(((x * 255 / width + shift + n) % 256) as u8);
                    rgb.push(((y * 255 / height + n) % 256) as u8);
                    rgb.push(((shift * 3 + n) % 256) as u8);
                }
            }
            let mut jpeg = Vec::new();
            JpegEncoder::new_with_quality(&mut jpeg, 85)
                .encode(&rgb, width, height, ExtendedColorType::Rgb8)
                .unwrap();
            Bytes::from(jpeg)
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn publish(hub: &Hub, seq: u64, jpeg: Bytes, width: u32, height: u32) {
    let timestamp_ms = now_ms();
    hub.publish_frame(EncodedFrame {
        seq,
        jpeg,
        width,
        height,
        timestamp_ms,
    });
    hub.publish_report(FrameReport {
        camera: "default".into(),
        frame: seq,
        timestamp_ms,
        width,
        height,
        signal: true,
        annotate: "burn",
        inference_ms: 12.5,
        latency_ms: 20.25,
        fps: FPS as f64,
        model_kind: edgevision::infer::ModelKind::Detector,
        detections: vec![serde_json::json!({
            "label": "person",
            "class_id": 0,
            "score": 0.8731,
            "box": [4.0, 5.5, 40.25, 44.0],
        })],
    });
}

/// Publishes frames and reports at ~30 fps until dropped.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(hub: Arc<Hub>) -> Feeder {
        Feeder::with_frames(hub, 64, 48, jpeg_frames(64, 48, 16, false))
    }

    fn with_frames(hub: Arc<Hub>, width: u32, height: u32, frames: Vec<Bytes>) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let period = Duration::from_micros(1_000_000 / FPS);
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                seq += 1;
                let jpeg = frames[seq as usize % frames.len()].clone();
                publish(&hub, seq, jpeg, width, height);
                next += period;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Feeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.take().map(JoinHandle::join);
    }
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as sent: chunked transfer decoded, or `Content-Length` bytes,
    /// or up to EOF.
    fn body(self) -> Box<dyn BufRead + Send> {
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = self.header("content-length").map(|v| v.parse::<u64>().unwrap());
        match (chunked, length) {
            (true, _) => Box::new(BufReader::new(Chunked::new(self.reader))),
            (false, Some(n)) => Box::new(BufReader::new(self.reader.take(n))),
            (false, None) => Box::new(self.reader),
        }
    }

    fn text(self) -> String {
        let mut body = String::new();
        self.body().read_to_string(&mut body).unwrap();
        body
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

fn get_request(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\r\n")
}

/// Sends `request` as is and reads the response head.
fn raw(addr: SocketAddr, request: &[u8]) -> io::Result<RawResponse> {
    let mut stream = connect(addr);
    stream.write_all(request)?;
    read_response(stream)
}

fn raw_get(addr: SocketAddr, path: &str, extra_headers: &str) -> RawResponse {
    raw(addr, get_request(path, extra_headers).as_bytes()).unwrap()
}

fn read_response(stream: TcpStream) -> io::Result<RawResponse> {
    let mut reader = BufReader::new(stream);
    let status_line = read_line(&mut reader)?;
    let mut fields = status_line.split_whitespace();
    assert_eq!(fields.next(), Some("HTTP/1.1"), "{status_line:?}");
    let status = fields.next().unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(RawResponse {
        status,
        headers,
        reader,
    })
}

/// Decodes `Transfer-Encoding: chunked`; EOF after the last chunk.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = read_line(&mut self.inner)?;
            let size = line.trim_end().split(';').next().unwrap();
            self.left = u64::from_str_radix(size, 16).expect("chunk size");
            if self.left == 0 {
                self.done = true;
                assert_eq!(read_line(&mut self.inner)?, "\r\n");
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        if self.left == 0 {
            assert_eq!(read_line(&mut self.inner)?, "\r\n", "chunk not CRLF-terminated");
        }
        Ok(n)
    }
}

impl Mjpeg {
    fn open(addr: SocketAddr, path: &str) -> Mjpeg {
        Mjpeg::from_response(raw_get(addr, path, ""))
    }

    fn from_response(response: RawResponse) -> Mjpeg {
        assert_eq!(response.status, 200);
        let content_type = response.header("content-type").unwrap().to_owned();
        assert_eq!(response.header("cache-control"), Some("no-cache, no-store"));
        assert_eq!(response.header("pragma"), Some("no-cache"));
        Mjpeg::new(&content_type, response.body())
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn stream_clients(server: &Server) -> i64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("edgevision_stream_clients{camera=\"default\"} "))
        .expect("gauge in exposition");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_for_frame(hub: &Hub) {
    assert!(wait_until(Duration::from_secs(2), || hub
        .latest_frame()
        .is_some()));
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn stream_delivers_valid_jpeg_parts() {
    let server = Server::open();
    // Connected before the first frame: the stream waits for it.
    let mut stream = Mjpeg::open(server.addr, "/stream.mjpg");
    let _feeder = Feeder::start(server.hub.clone());
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..6 {
        let jpeg = stream.next_part().unwrap();
        let image = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
        assert_ne!(previous.as_ref(), Some(&jpeg), "each part is a new frame");
        previous = Some(jpeg);
    }
    // A client joining later gets the newest frame at once.
    let start = Instant::now();
    let mut late = Mjpeg::open(server.addr, "/stream.mjpg");
    late.next_part().unwrap();
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn snapshot_and_detections_are_503_until_the_first_frame() {
    let server = Server::open();
    let http = client();
    let response = http.get(server.url("/snapshot.jpg")).send().unwrap();
    assert_eq!(response.status(), 503);
    let response = http.get(server.url("/api/detections")).send().unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().unwrap();
    assert!(body["error"].is_string(), "{body}");

    let jpeg = jpeg_frames(64, 48, 1, false).remove(0);
    publish(&server.hub, 7, jpeg.clone(), 64, 48);
    let response = http.get(server.url("/snapshot.jpg")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let body = response.bytes().unwrap();
    assert_eq!(body, jpeg);
    let image = image::load_from_memory(&body).unwrap();
    assert_eq!((image.width(), image.height()), (64, 48));
}

#[test]
fn detections_serve_the_latest_report() {
    let server = Server::open();
    let _feeder = Feeder::start(server.hub.clone());
    wait_for_frame(&server.hub);
    let response = client().get(server.url("/api/detections")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let report: Value = response.json().unwrap();
    assert!(report["frame"].as_u64().unwrap() >= 1);
    assert!(report["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(report["width"], 64);
    assert_eq!(report["height"], 48);
    assert_eq!(report["signal"], true);
    assert_eq!(report["inference_ms"], 12.5);
    assert_eq!(report["latency_ms"], 20.25);
    assert_eq!(report["fps"], 30.0);
    assert_eq!(report["model_kind"], "detector");
    let detection = &report["detections"][0];
    assert_eq!(detection["label"], "person");
    assert_eq!(detection["class_id"], 0);
    assert_eq!(detection["score"], 0.8731);
    assert_eq!(detection["box"], serde_json::json!([4.0, 5.5, 40.25, 44.0]));
}

#[test]
fn events_stream_one_report_per_event() {
    let server = Server::open();
    let _feeder = Feeder::start(server.hub.clone());
    let response = client().get(server.url("/api/events")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut lines = BufReader::new(response).lines();
    let mut frames = Vec::new();
    while frames.len() < 4 {
        let line = lines.next().expect("event stream open").unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            let report: Value = serde_json::from_str(data).unwrap();
            assert_eq!(report["model_kind"], "detector");
            frames.push(report["frame"].as_u64().unwrap());
        }
    }
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
}

#[test]
fn metrics_count_stream_clients() {
    let server = Server::open();
    let _feeder = Feeder::start(server.hub.clone());
    let response = client().get(server.url("/metrics")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(response
        .text()
        .unwrap()
        .contains("# TYPE edgevision_stream_clients gauge"));
    assert_eq!(stream_clients(&server), 0);

    let mut stream = Mjpeg::open(server.addr, "/stream.mjpg");
    stream.next_part().unwrap();
    assert!(wait_until(Duration::from_secs(2), || stream_clients(&server) == 1));
    let mut second = Mjpeg::open(server.addr, "/stream.mjpg");
    second.next_part().unwrap();
    assert!(wait_until(Duration::from_secs(2), || stream_clients(&server) == 2));
    drop(stream);
    drop(second);
    assert!(wait_until(Duration::from_secs(2), || stream_clients(&server) == 0));
}

#[test]
fn health_and_readiness_probes() {
    let server = Server::open();
    let http = client();
    let healthz = http.get(server.url("/healthz")).send().unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().unwrap().trim(), "ok");
    let readyz = http.get(server.url("/readyz")).send().unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.text().unwrap().trim(), "not ready");
    server.hub.set_ready(true);
    // Frames flow, but the model has not produced a result yet.
    assert_eq!(http.get(server.url("/readyz")).send().unwrap().status(), 503);
    server.hub.set_inferred(true);
    let readyz = http.get(server.url("/readyz")).send().unwrap();
    assert_eq!(readyz.status(), 200);
    assert_eq!(readyz.text().unwrap().trim(), "ready");
    server.hub.set_ready(false);
    assert_eq!(http.get(server.url("/readyz")).send().unwrap().status(), 503);
}

/// Connects with a tiny receive buffer and sends the request; never reads.
fn stalled_client(addr: SocketAddr) -> TcpStream {
    #[cfg(target_os = "linux")]
    let mut stream = {
        use std::os::fd::FromRawFd;
        let SocketAddr::V4(v4) = addr else { unreachable!() };
        // SAFETY: plain socket calls on a descriptor this function owns; it is
        // handed to TcpStream, which closes it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let size: libc::c_int = 4096;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let rc = libc::connect(
                fd,
                &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            TcpStream::from_raw_fd(fd)
        }
    };
    #[cfg(not(target_os = "linux"))]
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(get_request("/stream.mjpg", "").as_bytes())
        .unwrap();
    stream
}

#[test]
fn a_stalled_client_neither_slows_the_others_nor_stays_connected() {
    let server = Server::start(settings(32, Duration::from_secs(1), Auth::None));
    // Realistically sized frames (tens of KB), so a stalled socket fills.
    let frames = jpeg_frames(320, 240, 24, true);
    assert!(frames[0].len() > 20_000, "{} bytes", frames[0].len());
    let _feeder = Feeder::with_frames(server.hub.clone(), 320, 240, frames);
    wait_for_frame(&server.hub);
    let window = Duration::from_secs(3);

    let single = Mjpeg::open(server.addr, "/stream.mjpg").count_for(window);
    assert!(single >= 45, "one client got {single} frames in 3 s");
    assert!(wait_until(Duration::from_secs(2), || stream_clients(&server) == 0));

    let stalled = stalled_client(server.addr);
    let stalled_at = Instant::now();
    let finished = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..19)
        .map(|_| {
            let addr = server.addr;
            let finished = finished.clone();
            thread::spawn(move || {
                let count = Mjpeg::open(addr, "/stream.mjpg").count_for(window);
                finished.fetch_add(1, Ordering::SeqCst);
                count
            })
        })
        .collect();
    // While the 19 stream, the gauge should go from 20 to 19: the stalled
    // client is cut once its socket has accepted nothing for 1 s.
    let mut seen_all = false;
    let mut cut_after = None;
    while finished.load(Ordering::SeqCst) == 0 && cut_after.is_none() {
        match stream_clients(&server) {
            20 => seen_all = true,
            19 if seen_all => cut_after = Some(stalled_at.elapsed()),
            _ => {}
        }
        thread::sleep(Duration::from_millis(25));
    }
    let counts: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let floor = single * 8 / 10;
    assert!(
        counts.iter().all(|&c| c >= floor),
        "single client: {single}; with a stalled one: {counts:?}"
    );
    let cut_after = cut_after.expect("stalled client disconnected while the others streamed");
    assert!(cut_after >= Duration::from_millis(900), "cut after {cut_after:?}");
    assert!(wait_until(Duration::from_secs(2), || stream_clients(&server) == 0));

    // The server closed the stalled socket: draining it ends in EOF or reset.
    let mut stalled = stalled;
    stalled.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0; 1 << 16];
    let drained = Instant::now();
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => assert!(
                drained.elapsed() < Duration::from_secs(5),
                "stalled socket still fed"
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("stalled socket not closed: {e}"),
        }
    }
}

#[test]
fn clients_beyond_max_clients_get_503() {
    let server = Server::start(settings(2, Duration::from_secs(5), Auth::None));
    let _feeder = Feeder::start(server.hub.clone());
    let mut first = Mjpeg::open(server.addr, "/stream.mjpg");
    let mut second = Mjpeg::open(server.addr, "/stream.mjpg");
    first.next_part().unwrap();
    second.next_part().unwrap();
    let third = raw_get(server.addr, "/stream.mjpg", "");
    assert_eq!(third.status, 503);
    assert!(third.header("content-type").unwrap().starts_with("text/plain"));
    assert!(!third.text().trim().is_empty());
    // Other endpoints are not limited.
    assert_eq!(
        client().get(server.url("/snapshot.jpg")).send().unwrap().status(),
        200
    );
    // A slot frees up when a client leaves.
    drop(first);
    assert!(wait_until(Duration::from_secs(2), || {
        raw_get(server.addr, "/stream.mjpg", "").status == 200
    }));
    second.next_part().unwrap();
}

/// `/api/events` streams are limited like MJPEG streams, apart from them:
/// they cannot take every connection the server allows.
#[test]
fn event_streams_beyond_max_clients_get_503() {
    let server = Server::start(settings(2, Duration::from_secs(5), Auth::None));
    let _feeder = Feeder::start(server.hub.clone());
    let open = || client().get(server.url("/api/events")).send().unwrap();
    let (first, second) = (open(), open());
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = raw_get(server.addr, "/api/events", "");
    assert_eq!(third.status, 503);
    assert!(third.header("retry-after").is_some());
    // MJPEG streams have their own slots.
    let mut mjpeg = Mjpeg::open(server.addr, "/stream.mjpg");
    mjpeg.next_part().unwrap();
    drop(first);
    assert!(wait_until(Duration::from_secs(2), || {
        raw_get(server.addr, "/api/events", "").status == 200
    }));
    drop(second);
}

fn phc(password: &str) -> String {
    let salt = SaltString::from_b64("ZWRnZXZpc2lvbnRlc3RzYWx0").unwrap();
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[test]
fn basic_auth_guards_everything_but_healthz() {
    let auth = Auth::Basic(vec![
        ("ann".to_owned(), phc("correct horse")),
        ("bob".to_owned(), phc("battery staple")),
    ]);
    auth.validate().unwrap();
    assert!(!format!("{auth:?}").contains("argon2"), "Debug hides hashes");
    let server = Server::start(settings(4, Duration::from_secs(5), auth));
    let _feeder = Feeder::start(server.hub.clone());
    wait_for_frame(&server.hub);
    let http = client();

    for path in [
        "/",
        "/snapshot.jpg",
        "/api/detections",
        "/metrics",
        "/readyz",
        "/stream.mjpg",
    ] {
        let response = http.get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic realm=\"edgevision\""), "{challenge}");
    }
    let wrong = http
        .get(server.url("/snapshot.jpg"))
        .basic_auth("ann", Some("battery staple"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = http
        .get(server.url("/snapshot.jpg"))
        .basic_auth("eve", Some("correct horse"))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 401);
    for _ in 0..3 {
        let right = http
            .get(server.url("/snapshot.jpg"))
            .basic_auth("ann", Some("correct horse"))
            .send()
            .unwrap();
        assert_eq!(right.status(), 200);
    }
    let bob = http
        .get(server.url("/api/detections"))
        .basic_auth("bob", Some("battery staple"))
        .send()
        .unwrap();
    assert_eq!(bob.status(), 200);
    // A verified header is cached; a different password still fails.
    let wrong_again = http
        .get(server.url("/snapshot.jpg"))
        .basic_auth("ann", Some("correct horsE"))
        .send()
        .unwrap();
    assert_eq!(wrong_again.status(), 401);
    let credentials = "Authorization: Basic YW5uOmNvcnJlY3QgaG9yc2U=\r\n"; // ann:correct horse
    let mut stream = Mjpeg::from_response(raw_get(server.addr, "/stream.mjpg", credentials));
    stream.next_part().unwrap();
    assert_eq!(http.get(server.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn bearer_auth_accepts_header_or_query_token() {
    let token = "s3cret-t0ken-0123456789";
    let server = Server::start(settings(
        4,
        Duration::from_secs(5),
        Auth::Bearer(token.to_owned()),
    ));
    let _feeder = Feeder::start(server.hub.clone());
    wait_for_frame(&server.hub);
    let http = client();

    let none = http.get(server.url("/api/detections")).send().unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let header = http
        .get(server.url("/api/detections"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(header.status(), 200);
    let wrong = http
        .get(server.url("/api/detections"))
        .bearer_auth("s3cret-t0keN")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let query = http
        .get(server.url(&format!("/snapshot.jpg?token={token}")))
        .send()
        .unwrap();
    assert_eq!(query.status(), 200);
    let wrong_query = http.get(server.url("/snapshot.jpg?token=nope")).send().unwrap();
    assert_eq!(wrong_query.status(), 401);
    let events = http
        .get(server.url(&format!("/api/events?token={token}")))
        .send()
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = Mjpeg::open(server.addr, &format!("/stream.mjpg?token={token}"));
    stream.next_part().unwrap();
    assert_eq!(http.get(server.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn a_too_short_bearer_token_opens_nothing() {
    // The config check refuses it; a library user gets a log line, and
    // nobody gets in with it.
    let server = Server::start(settings(4, Duration::from_secs(5), Auth::Bearer("x".into())));
    let http = client();
    let header = http.get(server.url("/readyz")).bearer_auth("x").send().unwrap();
    assert_eq!(header.status(), 401);
    let query = http.get(server.url("/readyz?token=x")).send().unwrap();
    assert_eq!(query.status(), 401);
}

#[test]
fn connections_beyond_max_connections_get_503_when_all_are_busy() {
    let server = Server::start(HttpSettings {
        max_connections: 8,
        ..HttpSettings::default()
    });
    let _feeder = Feeder::start(server.hub.clone());
    wait_for_frame(&server.hub);
    let mut streams: Vec<Mjpeg> = (0..8)
        .map(|_| {
            let mut m = Mjpeg::open(server.addr, "/stream.mjpg");
            m.next_part().unwrap();
            m
        })
        .collect();
    // All eight stream (never idle, so none is closed to make room): a
    // ninth connection is answered 503 and closed without a request.
    let mut ninth = connect(server.addr);
    let mut answer = String::new();
    ninth.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\ntoo many connections\n"), "{answer:?}");
    for s in &mut streams {
        s.next_part().expect("the streams go on");
    }
    // One stream ends: there is room again.
    drop(streams.pop());
    assert!(wait_until(Duration::from_secs(3), || {
        raw(server.addr, get_request("/healthz", "").as_bytes()).is_ok_and(|r| r.status == 200)
    }));
}

#[test]
fn malformed_requests_get_4xx_and_the_stream_runs_on() {
    let server = Server::open();
    let _feeder = Feeder::start(server.hub.clone());
    let addr = server.addr;
    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (received, done) = (received.clone(), done.clone());
        thread::spawn(move || {
            let mut stream = Mjpeg::open(addr, "/stream.mjpg");
            while !done.load(Ordering::Relaxed) {
                stream.next_part().unwrap();
                received.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(2), || received
        .load(Ordering::Relaxed)
        >= 3));

    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let response = raw(addr, get_request("/snapshot.jpg", &big).as_bytes()).unwrap();
    assert!([400, 431].contains(&response.status), "{}", response.status);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = raw(addr, get_request("/snapshot.jpg", &many).as_bytes()).unwrap();
    assert!((400..500).contains(&response.status), "{}", response.status);
    let long_uri = format!("/snapshot.jpg?{}", "q".repeat(10 * 1024));
    let response = raw(addr, get_request(&long_uri, "").as_bytes()).unwrap();
    assert!((400..500).contains(&response.status), "{}", response.status);
    let response = raw(addr, b"NOT AN HTTP REQUEST\r\n\r\n").unwrap();
    assert_eq!(response.status, 400);
    let body = format!(
        "{}{}",
        get_request("/snapshot.jpg", "Content-Length: 4096\r\n"),
        "x".repeat(4096)
    );
    let response = raw(addr, body.as_bytes()).unwrap();
    assert_eq!(response.status, 413);

    let http = client();
    assert_eq!(
        http.get(server.url("/no/such/page")).send().unwrap().status(),
        404
    );
    assert_eq!(
        http.post(server.url("/snapshot.jpg")).send().unwrap().status(),
        405
    );
    assert_eq!(
        http.delete(server.url("/stream.mjpg")).send().unwrap().status(),
        405
    );

    let before = received.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(2), || {
        received.load(Ordering::Relaxed) >= before + 5
    }));
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("the stream kept delivering valid parts");
}

#[test]
fn page_is_self_contained_with_relative_urls() {
    let server = Server::open();
    let response = client().get(server.url("/")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().unwrap();
    assert!(page.contains("name=\"viewport\""));
    for url in ["stream.mjpg", "api/events", "snapshot.jpg"] {
        assert!(page.contains(&format!("\"{url}")), "{url}");
        assert!(!page.contains(&format!("\"/{url}")), "{url} must be relative");
    }
    assert!(page.contains("EventSource"));
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"));
}

#[test]
fn shutdown_ends_streams_and_serve_returns() {
    let mut server = Server::open();
    let _feeder = Feeder::start(server.hub.clone());
    let mut stream = Mjpeg::open(server.addr, "/stream.mjpg");
    stream.next_part().unwrap();
    let events = client().get(server.url("/api/events")).send().unwrap();
    assert_eq!(events.status(), 200);
    let (took, result) = server.stop();
    result.unwrap();
    assert!(took < Duration::from_secs(3), "serve took {took:?} to return");
    // The stream ends cleanly (last chunk), not with a hang.
    let ended = (0..100).find_map(|_| stream.next_part().err());
    assert_eq!(ended.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    let mut rest = String::new();
    BufReader::new(events).read_to_string(&mut rest).unwrap();
}

//! The daemon under abuse (issue 19): the real `edgevision run` on real
//! photos, attacked over real sockets: wrong-password floods (memory,
//! 429), silent and slow connections under a low open-file limit, foreign
//! `Host` headers, and configs whose credentials would hurt it.

use crate::common;

use common::daemon::{start, start_with, Daemon};
use common::{photo_dir, run, wait_for};

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;

/// An argon2id PHC hash of `password` with the crate's (and OWASP's)
/// default parameters: m=19456 (19 MiB), t=2, p=1.
fn phc(password: &str) -> String {
    let salt = SaltString::encode_b64(b"edgevision-test!").unwrap();
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A config serving `dog.jpg` slowly (little CPU), plus `http` (the body of
/// `[http]` and what follows).
fn config(photos: &Path, http: &str) -> String {
    format!(
        r#"
[source]
uri = "images:{photos}"
width = 320
height = 240
fps = 4.0

[model]
path = "{model}"
labels = "{labels}"
threads = 1

[http]
{http}
"#,
        photos = photos.display(),
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

/// The daemon's resident memory in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A blocking client whose connections come from `from` (any 127.x.y.z is
/// this machine, so each can stand for another client address).
fn client_from(from: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(from)
        .build()
        .unwrap()
}

fn loopback(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n))
}

/// GET `path` as `user:password` from `from`: status and `Retry-After`.
fn login(d: &Daemon, from: IpAddr, user: &str, password: &str, path: &str) -> (u16, Option<u64>) {
    let r = client_from(from)
        .get(format!("http://{}{path}", d.addr))
        .basic_auth(user, Some(password))
        .send()
        .expect("request");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status().as_u16(), retry)
}

/// Whether the server has closed `s`: a read ends in EOF or a reset
/// (`false` when it is still open after `wait`).
fn closed_by_server(mut s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

fn basic_auth_config(photos: &Path) -> String {
    config(
        photos,
        &format!(
            "[http.auth]\nmode = \"basic\"\nusers = [\n  {{ name = \"admin\", password_hash = \"{}\" }},\n  \
             {{ name = \"viewer\", password_hash = \"{}\" }},\n]\n",
            phc("right"),
            phc("also-right"),
        ),
    )
}

#[test]
fn wrong_password_flood_keeps_memory_flat_and_valid_logins_answer() {
    let photos = photo_dir(&["dog.jpg"]);
    // glibc's allocator as in production: its debugging mode (see
    // `common::bin`) hides how freed argon2 blocks stay resident.
    let d = start_with(&basic_auth_config(photos.path()), |cmd| {
        cmd.env_remove("LD_PRELOAD").env_remove("MALLOC_CHECK_");
    });
    let me = loopback(1);
    wait_for(60, "/readyz", || {
        (login(&d, me, "admin", "right", "/readyz").0 == 200).then_some(())
    });
    let before = rss_kib(&d);

    // 60 wrong passwords, 10 at a time, each from its own address (so the
    // failure limiter does not step in and every one is a full check).
    let started = Instant::now();
    let threads: Vec<_> = (0..10u32)
        .map(|t| {
            let addr = d.addr.clone();
            std::thread::spawn(move || {
                (0..6u32)
                    .map(|i| {
                        let from = loopback(100 + t * 6 + i);
                        client_from(from)
                            .get(format!("http://{addr}/readyz"))
                            .basic_auth("admin", Some(format!("wrong{t}-{i}")))
                            .send()
                            .expect("request")
                            .status()
                            .as_u16()
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let flood = started.elapsed();
    assert!(codes.iter().all(|&c| c == 401), "{codes:?}");
    let after = rss_kib(&d);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS {before} KiB -> {after} KiB after 60 wrong passwords in {flood:?}");
    // Two reusable 19 MiB blocks at most (one was in use before).
    assert!(
        grown_mib < 60,
        "RSS grew by {grown_mib} MiB: {before} -> {after} KiB"
    );

    // Valid logins still answer: a cached one and a first one.
    assert_eq!(login(&d, me, "admin", "right", "/readyz").0, 200);
    assert_eq!(login(&d, me, "viewer", "also-right", "/api/detections").0, 200);
    assert!(rss_kib(&d).saturating_sub(before) / 1024 < 60);
}

/// Clients that send a wrong password and hang up at once: their checks
/// still hold a slot until they end (abandoned checks used to pile up
/// beyond the pool), logins past the waiting room get 503 rather than a
/// connection each, and a valid login gets in once the flood is over.
#[test]
fn abandoned_password_checks_stay_within_the_pool() {
    let photos = photo_dir(&["dog.jpg"]);
    let d = start_with(&basic_auth_config(photos.path()), |cmd| {
        cmd.env_remove("LD_PRELOAD").env_remove("MALLOC_CHECK_");
    });
    let me = loopback(2);
    wait_for(60, "/readyz", || {
        (login(&d, me, "admin", "right", "/readyz").0 == 200).then_some(())
    });
    let before = rss_kib(&d);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let addr = d.addr.clone();
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    // Each from its own address, so the limiter stays out.
                    let from = loopback(1000 + t * 25 + i);
                    let _ = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_millis(30))
                        .local_address(from)
                        .build()
                        .unwrap()
                        .get(format!("http://{addr}/readyz"))
                        .basic_auth("admin", Some(format!("gone{t}-{i}")))
                        .send();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = rss_kib(&d);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS {before} KiB -> {after} KiB after 200 abandoned checks");
    assert!(
        grown_mib < 60,
        "RSS grew by {grown_mib} MiB: {before} -> {after} KiB"
    );
    // The queue drains (at most 2 + 32 checks were admitted); then a
    // first-time login from a new address answers.
    wait_for(120, "a valid login after the flood", || {
        (login(&d, loopback(3), "admin", "right", "/readyz").0 == 200).then_some(())
    });
}

#[test]
fn repeated_failures_get_429_with_retry_after_and_few_log_lines() {
    let photos = photo_dir(&["dog.jpg"]);
    let d = start(&basic_auth_config(photos.path()));
    let attacker = loopback(7);
    let mut codes = Vec::new();
    let mut retry = None;
    for i in 0..8 {
        let (code, r) = login(&d, attacker, "admin", &format!("guess{i}"), "/readyz");
        codes.push(code);
        if code == 429 {
            retry = retry.or(r);
        }
    }
    // Five failures are free; then the address has to wait.
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert_eq!(&codes[5..], &[429; 3], "{codes:?}");
    let retry = retry.expect("429 carries Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    // While blocked, even the right password waits; other addresses do not.
    assert_eq!(
        login(&d, attacker, "admin", "right", "/healthz").0,
        200,
        "/healthz is open"
    );
    assert_eq!(login(&d, attacker, "admin", "right", "/readyz").0, 429);
    assert!(matches!(
        login(&d, loopback(8), "admin", "right", "/readyz").0,
        200 | 503
    ));
    // After the wait, the right password gets in and clears the record.
    std::thread::sleep(Duration::from_secs(retry));
    assert!(matches!(
        login(&d, attacker, "admin", "right", "/readyz").0,
        200 | 503
    ));
    assert_eq!(login(&d, attacker, "admin", "wrong-again", "/readyz").0, 401);

    // One line for the first failure, one when the block starts: not eight.
    let from = "failed login from 127.0.0.7";
    let blocked = "failed logins from 127.0.0.7";
    wait_for(5, "the log lines about the block and the last failure", || {
        (!d.log_lines(blocked).is_empty() && d.log_lines(from).len() >= 2).then_some(())
    });
    // Nothing more comes.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.log_lines(from).len(), 2, "{:?}", d.log.lock().unwrap());
    assert_eq!(d.log_lines(blocked).len(), 1, "{:?}", d.log.lock().unwrap());
}

/// `edgevision check-config` on `text`: exit code and stderr.
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgevision.toml");
    std::fs::write(&file, text).unwrap();
    let out = run(common::bin().arg("check-config").arg(&file));
    (out.code, out.stderr)
}

#[test]
fn check_config_refuses_costly_argon2_hashes_and_short_tokens() {
    let hash = |params: &str| {
        format!(
            "[http.auth]\nmode = \"basic\"\nusers = [\n  {{ name = \"admin\", password_hash = \
             \"$argon2id$v=19${params}$ZWRnZXZpc2lvbi10ZXN0IQ$Yw1ALN3qh4mj2nh/iJyk2tUO2CKffLW2zbRMu6nOcT0\" }},\n]\n"
        )
    };
    // Would allocate 256 GiB at the first login.
    let (code, err) = check_config(&hash("m=268435455,t=2,p=1"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(":4: http.auth.users[0].password_hash: argon2 memory m=268435455 KiB"),
        "{err}"
    );
    assert!(err.contains("limit of m=65536 KiB"), "{err}");
    // Would take hours per login.
    let (code, err) = check_config(&hash("m=19456,t=4294967295,p=1"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("http.auth.users[0].password_hash: argon2 work m*t"),
        "{err}"
    );
    assert!(err.contains("limit of 262144"), "{err}");

    let (code, err) = check_config("[http.auth]\nmode = \"bearer\"\ntoken = \"x\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(":3: http.auth.token: is 1 characters; at least 16 are needed"),
        "{err}"
    );

    let (code, err) = check_config("[http]\nmax_connections = 1\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(":2: http.max_connections: must be between 8 and 65536, not 1"),
        "{err}"
    );
}

/// `GET path` with `Host: host` over a raw socket: the status and the head.
fn get_with_host(addr: &str, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (code, text)
}

#[test]
fn foreign_host_headers_are_refused_and_every_response_has_security_headers() {
    let photos = photo_dir(&["dog.jpg"]);
    let d = start(&config(photos.path(), "allowed_hosts = [\"camera.lan\"]"));
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    wait_for(60, "the first report", || {
        (get_with_host(&d.addr, "/api/detections", "localhost").0 == 200).then_some(())
    });

    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost.evil.example",
    ] {
        let (code, text) = get_with_host(&d.addr, "/api/detections", host);
        assert_eq!(code, 421, "{host}: {text}");
        assert!(text.contains("is not served here"), "{text}");
        assert!(text.contains("http.allowed_hosts"), "{text}");
    }
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "camera.lan".to_string(),
        format!("CAMERA.LAN:{port}"),
    ] {
        let (code, text) = get_with_host(&d.addr, "/api/detections", &host);
        assert_eq!(code, 200, "{host}: {text}");
    }
    // The liveness probe answers whatever the Host.
    assert_eq!(get_with_host(&d.addr, "/healthz", "evil.example").0, 200);

    let lower = |t: &str| t.to_ascii_lowercase();
    for (path, host, code) in [
        ("/metrics", "localhost", 200),
        ("/api/detections", "localhost", 200),
        ("/snapshot.jpg", "localhost", 200),
        ("/healthz", "localhost", 200),
        ("/nope", "localhost", 404),
        ("/metrics", "evil.example", 421),
    ] {
        let (got, text) = get_with_host(&d.addr, path, host);
        assert_eq!(got, code, "{path}: {text}");
        let head = lower(text.split("\r\n\r\n").next().unwrap());
        assert!(
            head.contains("\r\nx-content-type-options: nosniff"),
            "{path}: {head}"
        );
        assert!(
            head.contains("\r\nreferrer-policy: no-referrer"),
            "{path}: {head}"
        );
        assert!(
            head.contains("\r\ncontent-security-policy: default-src 'none'"),
            "{path}: {head}"
        );
    }
    // The page keeps its own policy.
    let (_, page) = get_with_host(&d.addr, "/", "localhost");
    assert!(lower(&page).contains("content-security-policy: default-src 'none'; img-src 'self'"));
}

/// Limits the child's open files to `n` (soft and hard), as a unit's
/// `LimitNOFILE=n` does.
fn limit_open_files(cmd: &mut std::process::Command, n: u64) {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn idle_connection_flood_under_a_low_file_limit_leaves_health_checks_and_streams_working() {
    const FILE_LIMIT: u64 = 256;
    const FLOOD: usize = 300;
    let photos = photo_dir(&["dog.jpg"]);
    let d = start_with(
        &config(photos.path(), "header_timeout = 2.0\nidle_timeout = 3.0\n"),
        |cmd| limit_open_files(cmd, FILE_LIMIT),
    );
    wait_for(60, "/readyz", || {
        (common::daemon::get(&d.addr, "/readyz").0 == 200).then_some(())
    });
    // The cap was lowered to fit the limit, and said so.
    assert_eq!(d.log_lines("at most 192 connections instead of 512").len(), 1);

    // A stream runs through everything below (streams are never idle): a
    // reader notes when each part arrives.
    let mut stream = common::daemon::open_stream(&d.addr, Duration::from_secs(20));
    let parts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = parts.clone();
    std::thread::spawn(move || {
        while stream.next_part().is_ok() {
            seen.lock().unwrap().push(Instant::now());
        }
    });

    // More silent sockets than the cap, and than the daemon's file limit.
    let flooded = Instant::now();
    let idle: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(&d.addr).expect("connect"))
        .collect();
    // Health checks still get through, at once.
    for _ in 0..5 {
        let asked = Instant::now();
        assert_eq!(get_with_host(&d.addr, "/healthz", "localhost").0, 200);
        assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
    }
    assert_eq!(get_with_host(&d.addr, "/readyz", "localhost").0, 200);

    // A slow client: a request head one byte at a time, never finished.
    let mut slow = TcpStream::connect(&d.addr).unwrap();
    let slow_started = Instant::now();
    slow.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut slow_cut = None;
    for b in
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
    {
        if slow.write_all(&[*b]).is_err() {
            slow_cut = Some(slow_started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let slow_cut =
        slow_cut.or_else(|| closed_by_server(&slow, Duration::from_secs(1)).then(|| slow_started.elapsed()));
    let slow_cut = slow_cut.expect("a request head dribbled in for 8 s was not cut");
    assert!(slow_cut < Duration::from_secs(5), "cut after {slow_cut:?}");

    // Every silent socket is closed by now (header timeout 2 s, or evicted).
    let waited = flooded.elapsed();
    if waited < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_secs(4) - waited);
    }
    let still_open = idle
        .iter()
        .filter(|s| !closed_by_server(s, Duration::from_millis(200)))
        .count();
    assert_eq!(still_open, 0, "{still_open} of {FLOOD} silent sockets still open");

    // A kept-alive connection is closed after idle_timeout (3 s), not before.
    let mut keep = TcpStream::connect(&d.addr).unwrap();
    write!(keep, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    keep.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = keep.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(
        !closed_by_server(&keep, Duration::from_secs(2)),
        "closed before idle_timeout"
    );
    assert!(
        closed_by_server(&keep, Duration::from_secs(4)),
        "open long after idle_timeout"
    );
    let idle_for = answered.elapsed();
    assert!(idle_for >= Duration::from_millis(2900), "{idle_for:?}");

    // The stream went on through all of it, well past both timeouts.
    let parts = parts.lock().unwrap().clone();
    let late = parts.iter().filter(|t| **t > answered).count();
    assert!(
        late >= 4,
        "{} parts in all, {late} in the last seconds",
        parts.len()
    );
    assert_eq!(common::daemon::get(&d.addr, "/readyz").0, 200);
    let fd_errors = d.log_lines("Too many open files").len() + d.log_lines("os error 24").len();
    assert_eq!(fd_errors, 0, "{:?}", d.log.lock().unwrap());
}

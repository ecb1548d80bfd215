//! MQTT and Home Assistant discovery (issue 17) against a real broker:
//! Debian's `mosquitto` started on a free 127.0.0.1 port, read with
//! `mosquitto_sub` and driven with `mosquitto_pub` (package
//! mosquitto-clients), both installed by scripts/deps --test.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common;
use common::daemon::{get, metrics, start};
use common::{metric, wait_for};

/// A mosquitto broker on 127.0.0.1:`port`, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// Its log file (connections, disconnections, takeovers).
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// `login`: (user, password) required; anonymous clients otherwise.
    fn start(port: u16, login: Option<(&str, &str)>) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        // `user root`: mosquitto started as root would switch to its own
        // user, which cannot read this test's files.
        let log = dir.path().join("mosquitto.log");
        let mut text = format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nlog_dest file {}\n",
            log.display()
        );
        match login {
            None => text.push_str("allow_anonymous true\n"),
            Some((user, pass)) => {
                let file = dir.path().join("passwd");
                let out = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg("-c")
                    .arg(&file)
                    .args([user, pass])
                    .output()
                    .expect("mosquitto_passwd (package mosquitto) is needed: scripts/deps --test");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                text.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is needed: scripts/deps --test");
        wait_for(10, "mosquitto listening", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Broker {
            child,
            port,
            _dir: dir,
            log,
        }
    }

    /// The broker's log lines so far that contain `text`.
    fn log_lines(&self, text: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .map(String::from)
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Up to `count` messages on `topic` within `secs`, as (topic, payload).
fn sub(port: u16, topic: &str, count: usize, secs: u32, retained_only: bool) -> Vec<(String, Vec<u8>)> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        // Topic, a tab, the payload length, a tab: binary payloads split safely.
        .args(["-F", "%t\t%l\t%p", "-N"]);
    if retained_only {
        cmd.arg("--retained-only");
    }
    let out = cmd
        .output()
        .expect("mosquitto_sub (package mosquitto-clients) is needed");
    let mut rest = &out.stdout[..];
    let mut msgs = Vec::new();
    while !rest.is_empty() {
        let tab = rest.iter().position(|&b| b == b'\t').unwrap();
        let topic = String::from_utf8_lossy(&rest[..tab]).into_owned();
        rest = &rest[tab + 1..];
        let tab = rest.iter().position(|&b| b == b'\t').unwrap();
        let len: usize = std::str::from_utf8(&rest[..tab]).unwrap().parse().unwrap();
        rest = &rest[tab + 1..];
        msgs.push((topic, rest[..len].to_vec()));
        rest = &rest[len..];
    }
    msgs
}

/// The retained payload of `topic`, as text, if any within `secs`.
fn retained(port: u16, topic: &str, secs: u32) -> Option<String> {
    sub(port, topic, 1, secs, true)
        .pop()
        .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
}

/// Waits until the broker holds the daemon's retained `online`.
fn wait_online(port: u16) {
    wait_for(30, "availability online", || {
        (retained(port, "edgevision/available", 2).as_deref() == Some("online")).then_some(())
    });
}

fn publish(port: u16, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-m",
            payload,
            "-q",
            "1",
        ])
        .output()
        .expect("mosquitto_pub (package mosquitto-clients) is needed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn config(photos: &Path, fps: f32, mqtt: &str, extra: &str) -> String {
    format!(
        r#"
[source]
uri = "images:{photos}"
width = 640
height = 480
fps = {fps}
seconds_per_image = 0.1

[model]
path = "{model}"
labels = "{labels}"
threads = 1
workers = 1

[detect]
threshold = 0.8
allow = ["dog"]

[tracking]
min_hits = 2
max_age = 5

[mqtt]
client_id = "edgevision-test"
stats_interval = 1.0
{mqtt}
{extra}
"#,
        photos = photos.display(),
        model = common::coco_model().display(),
        labels = common::coco_labels().display(),
    )
}

/// The dog photo alone, as a still source.
fn still_dog() -> tempfile::TempDir {
    common::photo_dir(&["dog.jpg"])
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn availability_discovery_events_counts_pictures_and_stats_reach_the_broker() {
    let broker = Broker::start(free_port(), None);
    let port = broker.port;
    let photos = still_dog();
    let snaps = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[zone]]\nname = \"yard\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n\n[events]\nsnapshot_dir = \"{}\"\n",
        snaps.path().display()
    );
    let mut d = start(&config(
        photos.path(),
        10.0,
        &format!("url = \"mqtt://127.0.0.1:{port}\""),
        &extra,
    ));

    wait_online(port);
    // Events: the dog, as documented.
    let ev = wait_for(60, "a dog event", || {
        sub(port, "edgevision/default/events", 1, 5, false).pop()
    });
    let ev = json(&ev.1);
    assert!(
        ["new", "update", "end"].contains(&ev["type"].as_str().unwrap()),
        "{ev}"
    );
    let obj = &ev["object"];
    assert_eq!(obj["label"], "dog");
    for key in [
        "id",
        "score",
        "box",
        "zones",
        "entered_zones",
        "stationary",
        "start_ms",
        "end_ms",
        "snapshot",
    ] {
        assert!(obj.get(key).is_some(), "no {key} in {obj}");
    }
    // Counts, retained; the dog in the yard.
    wait_for(30, "one dog counted", || {
        (retained(port, "edgevision/default/dog", 3).as_deref() == Some("1")).then_some(())
    });
    wait_for(30, "the dog in the yard", || {
        (retained(port, "edgevision/default/yard/dog", 3).as_deref() == Some("1")).then_some(())
    });
    // Its picture, retained: a JPEG.
    let pic = wait_for(30, "the dog's picture", || {
        sub(port, "edgevision/default/dog/snapshot", 1, 3, true).pop()
    });
    assert_eq!(&pic.1[..3], &[0xff, 0xd8, 0xff], "a JPEG");
    assert!(image::load_from_memory(&pic.1).is_ok());
    // Stats every second.
    let stats = json(
        &sub(port, "edgevision/stats", 1, 10, false)
            .pop()
            .expect("stats")
            .1,
    );
    assert!(
        stats["fps"].as_f64().is_some() && stats["uptime_s"].as_u64().is_some(),
        "{stats}"
    );
    assert_eq!(stats["detect"], "ON");
    assert_eq!(
        retained(port, "edgevision/default/detect/state", 3).as_deref(),
        Some("ON")
    );

    // Home Assistant discovery: retained configs, one device, availability.
    let configs = sub(port, "homeassistant/#", 100, 3, true);
    let find = |object: &str| {
        configs
            .iter()
            .find(|(t, _)| t.ends_with(&format!("/edgevision_test/{object}/config")))
            .map(|(_, p)| json(p))
            .unwrap_or_else(|| {
                panic!(
                    "no {object} config in {:?}",
                    configs.iter().map(|c| &c.0).collect::<Vec<_>>()
                )
            })
    };
    let detected = find("default_dog_detected");
    assert_eq!(detected["state_topic"], "edgevision/default/dog");
    assert_eq!(detected["device_class"], "occupancy");
    assert_eq!(detected["availability_topic"], "edgevision/available");
    assert_eq!(detected["unique_id"], "edgevision_test_default_dog_detected");
    assert_eq!(detected["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        find("default_yard_dog_detected")["state_topic"],
        "edgevision/default/yard/dog"
    );
    assert_eq!(find("default_dog_count")["state_class"], "measurement");
    assert_eq!(
        find("default_detect")["command_topic"],
        "edgevision/default/detect/set"
    );
    assert_eq!(
        find("default_dog_snapshot")["image_topic"],
        "edgevision/default/dog/snapshot"
    );
    assert_eq!(find("fps")["entity_category"], "diagnostic");
    assert_eq!(metric(&metrics(&d.addr), "edgevision_mqtt_connected"), Some(1.0));

    // A clean stop says offline.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(20).success());
    assert_eq!(
        retained(port, "edgevision/available", 5).as_deref(),
        Some("offline")
    );
}

#[test]
fn a_restarted_broker_gets_everything_again_and_detect_off_pauses_inference() {
    let port = free_port();
    let broker = Broker::start(port, None);
    let photos = still_dog();
    let d = start(&config(
        photos.path(),
        10.0,
        &format!("url = \"mqtt://127.0.0.1:{port}\""),
        "",
    ));
    wait_online(port);
    // Down for five seconds; the new broker starts empty (no persistence).
    drop(broker);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(metric(&metrics(&d.addr), "edgevision_mqtt_connected"), Some(0.0));
    let _broker = Broker::start(port, None);
    wait_for(60, "availability published again", || {
        (retained(port, "edgevision/available", 2).as_deref() == Some("online")).then_some(())
    });
    assert!(
        !sub(port, "homeassistant/#", 100, 3, true).is_empty(),
        "discovery published again"
    );
    // The subscription is renewed: OFF is obeyed, the stream goes on.
    publish(port, "edgevision/default/detect/set", "OFF");
    wait_for(20, "detect state OFF", || {
        (retained(port, "edgevision/default/detect/state", 2).as_deref() == Some("OFF")).then_some(())
    });
    let count = |name: &str| metric(&metrics(&d.addr), name).unwrap_or(0.0);
    // An inference already running when OFF came may still finish: wait
    // until the count holds still for a second.
    wait_for(20, "inference to stop", || {
        let before = count("edgevision_inference_seconds_count");
        std::thread::sleep(Duration::from_secs(1));
        (count("edgevision_inference_seconds_count") == before).then_some(())
    });
    let (i0, f0) = (
        count("edgevision_inference_seconds_count"),
        count("edgevision_frames_processed_total"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (i1, f1) = (
        count("edgevision_inference_seconds_count"),
        count("edgevision_frames_processed_total"),
    );
    assert_eq!(i1, i0, "no inference while detect is OFF");
    assert!(f1 - f0 >= 5.0, "frames go on: {} in 2 s", f1 - f0);
    assert_eq!(get(&d.addr, "/snapshot.jpg").0, 200);
    publish(port, "edgevision/default/detect/set", "ON");
    wait_for(20, "inference again", || {
        (count("edgevision_inference_seconds_count") > i1).then_some(())
    });
}

#[test]
fn a_killed_daemon_is_offline_through_its_last_will() {
    let broker = Broker::start(free_port(), None);
    let photos = still_dog();
    let mut d = start(&config(
        photos.path(),
        10.0,
        &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        "",
    ));
    wait_online(broker.port);
    d.signal(libc::SIGKILL);
    d.wait_exit(10);
    wait_for(20, "the broker saying offline", || {
        (retained(broker.port, "edgevision/available", 2).as_deref() == Some("offline")).then_some(())
    });
}

#[test]
fn a_wrong_password_is_one_clear_line_the_stream_goes_on_and_a_reload_fixes_it() {
    let broker = Broker::start(free_port(), Some(("cam", "right-password")));
    let photos = still_dog();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "wrong-password\n").unwrap();
    let mqtt = format!(
        "url = \"mqtt://127.0.0.1:{}\"\nusername = \"cam\"\npassword_file = \"{}\"",
        broker.port,
        secret.path().display()
    );
    let d = start(&config(photos.path(), 10.0, &mqtt, ""));
    wait_for(30, "the refusal logged", || {
        (!d.log_lines("refused the login").is_empty()).then_some(())
    });
    // Attempts go on with back-off (1, 2, 4 s...), logged once a minute.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(d.log_lines("refused the login").len(), 1, "one line, not a flood");
    assert_eq!(get(&d.addr, "/readyz").0, 200, "the daemon serves on");
    assert_eq!(get(&d.addr, "/snapshot.jpg").0, 200);
    assert_eq!(metric(&metrics(&d.addr), "edgevision_mqtt_connected"), Some(0.0));
    assert!(!String::from_utf8_lossy(&get(&d.addr, "/metrics").1).contains("wrong-password"));
    assert!(
        d.log_lines("wrong-password").is_empty(),
        "the password is never logged"
    );
    // The right password, applied with SIGHUP.
    std::fs::write(secret.path(), "right-password\n").unwrap();
    d.signal(libc::SIGHUP);
    wait_for(60, "connected after the reload", || {
        (metric(&metrics(&d.addr), "edgevision_mqtt_connected") == Some(1.0)).then_some(())
    });
}

#[test]
fn entities_of_a_removed_zone_are_cleared_at_the_next_start() {
    let broker = Broker::start(free_port(), None);
    let port = broker.port;
    let photos = still_dog();
    let url = format!("url = \"mqtt://127.0.0.1:{port}\"");
    let zone = "[[zone]]\nname = \"yard\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n";
    let yard = "homeassistant/binary_sensor/edgevision_test/default_yard_dog_detected/config";
    let dog = "homeassistant/binary_sensor/edgevision_test/default_dog_detected/config";
    let mut first = start(&config(photos.path(), 10.0, &url, zone));
    wait_for(30, "the yard's entity", || retained(port, yard, 2));
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(20).success());
    // The zone is gone from the config: its entities go from the broker.
    let _second = start(&config(photos.path(), 10.0, &url, ""));
    wait_for(30, "the yard's entity cleared", || {
        let left = sub(port, "homeassistant/#", 100, 3, true);
        (!left.is_empty() && left.iter().all(|(t, _)| t != yard)).then_some(())
    });
    assert!(retained(port, dog, 3).is_some(), "the dog's entity stays");
}

/// `mqtts://` through rustls, trusting the broker's certificate from
/// `ca_file`; the certificate is made here with openssl for 127.0.0.1.
#[test]
fn mqtts_with_a_ca_file_connects_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    // Self-signed: the daemon trusts the broker's certificate itself.
    let (cert, key) = common::self_signed_cert(dir.path());
    let p = |f: &std::path::Path| f.to_str().unwrap().to_string();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            p(&cert),
            p(&cert),
            p(&key)
        ),
    )
    .unwrap();
    let mut broker = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    wait_for(10, "mosquitto listening", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let photos = still_dog();
    let mqtt = format!("url = \"mqtts://127.0.0.1:{port}\"\nca_file = \"{}\"", p(&cert));
    let d = start(&config(photos.path(), 10.0, &mqtt, ""));
    wait_for(30, "connected over TLS", || {
        (metric(&metrics(&d.addr), "edgevision_mqtt_connected") == Some(1.0)).then_some(())
    });
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", &p(&cert)])
        .args([
            "-t",
            "edgevision/available",
            "-C",
            "1",
            "-W",
            "10",
            "--retained-only",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");
    // Without the CA the same broker is refused: the certificate is checked.
    drop(d);
    let plain = start(&config(
        photos.path(),
        10.0,
        &format!("url = \"mqtts://127.0.0.1:{port}\""),
        "",
    ));
    wait_for(30, "the certificate refused", || {
        (!plain.log_lines("cannot connect").is_empty()).then_some(())
    });
    assert_eq!(
        metric(&metrics(&plain.addr), "edgevision_mqtt_connected"),
        Some(0.0)
    );
    let _ = broker.kill();
    let _ = broker.wait();
}

/// A per-camera sample `name{camera="CAMERA"}` of the Prometheus text.
fn camera_metric(text: &str, name: &str, camera: &str) -> f64 {
    let sample = format!("{name}{{camera=\"{camera}\"}}");
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(sample.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Two cameras, one client: one connection for both (never two clients
/// with one id pushing each other off), each camera's entities, state and
/// switch; a switch pauses its own camera only; a camera removed with
/// SIGHUP is cleared from the broker on the same connection.
#[test]
fn two_cameras_share_one_connection_and_a_removed_camera_is_cleared() {
    let broker = Broker::start(free_port(), None);
    let port = broker.port;
    let photos = still_dog();
    let url = format!("url = \"mqtt://127.0.0.1:{port}\"");
    let yard = "[[camera]]\nname = \"yard\"\n";
    let door = "[[camera]]\nname = \"door\"\n[camera.source]\nuri = \"test:\"\n";
    let mut d = start(&config(photos.path(), 10.0, &url, &format!("{yard}\n{door}")));
    wait_online(port);
    // mosquitto_sub and mosquitto_pub connect too, with ids of their own.
    let connected = "as edgevision-test ";
    wait_for(10, "the connection logged", || {
        (!broker.log_lines(connected).is_empty()).then_some(())
    });

    // Each camera: its switch, its entities, its detect state.
    let config_topic =
        |component: &str, object: &str| format!("homeassistant/{component}/edgevision_test/{object}/config");
    for cam in ["yard", "door"] {
        let switch = wait_for(30, "the camera's switch", || {
            retained(port, &config_topic("switch", &format!("{cam}_detect")), 2)
        });
        let switch = json(switch.as_bytes());
        assert_eq!(switch["command_topic"], format!("edgevision/{cam}/detect/set"));
        assert_eq!(
            switch["device"]["identifiers"][0],
            format!("edgevision_test_{cam}")
        );
        assert!(retained(
            port,
            &config_topic("binary_sensor", &format!("{cam}_dog_detected")),
            3
        )
        .is_some());
        wait_for(30, "the camera's detect state", || {
            (retained(port, &format!("edgevision/{cam}/detect/state"), 2).as_deref() == Some("ON"))
                .then_some(())
        });
    }
    // The dog is seen on its camera, on its camera's topics.
    wait_for(60, "the yard's dog counted", || {
        (retained(port, "edgevision/yard/dog", 3).as_deref() == Some("1")).then_some(())
    });
    let stats = json(
        &sub(port, "edgevision/stats", 1, 10, false)
            .pop()
            .expect("stats")
            .1,
    );
    assert_eq!(stats["camera"], "yard");
    assert!(stats["cameras"]["yard"]["fps"].as_f64().is_some(), "{stats}");
    assert!(stats["cameras"]["door"]["fps"].as_f64().is_some(), "{stats}");

    // Availability holds still: no second client taking the first's place.
    let seen = sub(port, "edgevision/available", 100, 4, false);
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, p)| p == b"online"),
        "availability flapped: {:?}",
        seen.iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
    );

    // OFF on the door pauses the door only.
    publish(port, "edgevision/door/detect/set", "OFF");
    wait_for(20, "the door's detect state OFF", || {
        (retained(port, "edgevision/door/detect/state", 2).as_deref() == Some("OFF")).then_some(())
    });
    assert_eq!(
        retained(port, "edgevision/yard/detect/state", 2).as_deref(),
        Some("ON")
    );
    let inferences = |cam: &str| camera_metric(&metrics(&d.addr), "edgevision_inference_seconds_count", cam);
    // An inference already running when OFF came may still finish.
    wait_for(20, "the door's inference to stop", || {
        let before = inferences("door");
        std::thread::sleep(Duration::from_secs(1));
        (inferences("door") == before).then_some(())
    });
    let (door0, yard0) = (inferences("door"), inferences("yard"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        inferences("door"),
        door0,
        "no inference on the door while it is OFF"
    );
    assert!(inferences("yard") > yard0, "the yard infers on");

    // The door is removed: its entities and retained state go, the yard's
    // stay, on the same connection.
    let door_configs: Vec<String> = sub(port, "homeassistant/#", 100, 3, true)
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| t.contains("/edgevision_test/door_"))
        .collect();
    assert!(door_configs.len() >= 3, "{door_configs:?}");
    std::fs::write(&d.config, config(photos.path(), 10.0, &url, yard)).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "the door's entities cleared", || {
        let left = sub(port, "homeassistant/#", 100, 3, true);
        (!left.is_empty() && left.iter().all(|(t, _)| !t.contains("/edgevision_test/door_"))).then_some(())
    });
    assert_eq!(retained(port, "edgevision/door/detect/state", 2), None);
    assert!(retained(port, &config_topic("switch", "yard_detect"), 3).is_some());
    assert_eq!(
        retained(port, "edgevision/yard/detect/state", 2).as_deref(),
        Some("ON")
    );
    assert_eq!(
        retained(port, "edgevision/available", 2).as_deref(),
        Some("online")
    );

    // Added again: its entities and switch come back, detection on.
    std::fs::write(
        &d.config,
        config(photos.path(), 10.0, &url, &format!("{yard}\n{door}")),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "the door's switch again", || {
        retained(port, &config_topic("switch", "door_detect"), 2)
    });
    wait_for(30, "the door's detect state again", || {
        (retained(port, "edgevision/door/detect/state", 2).as_deref() == Some("ON")).then_some(())
    });

    // One connection all along, never taken over.
    assert_eq!(
        broker.log_lines(connected).len(),
        1,
        "{:?}",
        broker.log_lines(connected)
    );
    assert!(broker.log_lines("already connected").is_empty());
    assert_eq!(d.log_lines("mqtt: connected to").len(), 1);

    // Without [mqtt] nothing could switch the yard back on: it is on again.
    publish(port, "edgevision/yard/detect/set", "OFF");
    wait_for(20, "the yard's detect state OFF", || {
        (retained(port, "edgevision/yard/detect/state", 2).as_deref() == Some("OFF")).then_some(())
    });
    std::fs::write(&d.config, config(photos.path(), 10.0, "", yard)).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "offline once [mqtt] is gone", || {
        (retained(port, "edgevision/available", 2).as_deref() == Some("offline")).then_some(())
    });
    let yard1 = inferences("yard");
    wait_for(20, "the yard inferring again", || {
        (inferences("yard") > yard1 + 1.0).then_some(())
    });

    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(20).success());
    assert_eq!(broker.log_lines(connected).len(), 1);
}

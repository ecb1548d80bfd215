//! The client thread: rumqttc's connection driven with short timeouts, so
//! one thread both keeps the connection and publishes, for every camera of
//! the daemon: one connection, one client id and one last will however
//! many cameras there are (a broker drops a client whose id connects
//! twice). While the broker is away messages wait in a bounded queue
//! (oldest dropped, counted) and the connection is retried with back-off;
//! on every (re)connect availability, discovery and the retained state go
//! out again and the subscriptions are renewed. The cameras served change
//! while connected ([`Mqtt::set_cameras`]): an added camera's discovery,
//! state and switch go out on the same connection, a removed camera's
//! retained topics are cleared.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;

use super::discovery;
use super::stats::{stats_json, CameraFigures};
use super::topics::Topics;
use super::MqttSettings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::track::ObjectEvent;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A failing broker is logged at most this often (the first failure at once).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How long after connecting retained discovery configs are collected to
/// find entities the config no longer has.
const CLEANUP_AFTER: Duration = Duration::from_secs(2);
/// Largest picture sent.
const MAX_PACKET: usize = 8 << 20;

/// The cameras the daemon wants served; `generation` changes with every
/// update so the session notices without comparing lists.
#[derive(Default)]
struct Wanted {
    generation: u64,
    cameras: Vec<(MqttSettings, Arc<Hub>)>,
}

/// A running MQTT client; dropping it says `offline` and disconnects.
pub struct Mqtt {
    settings: MqttSettings,
    wanted: Arc<Mutex<Wanted>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mqtt {
    /// Connects with `settings`' broker parts; serves no camera until
    /// [`Mqtt::set_cameras`].
    pub fn start(settings: MqttSettings, metrics: Arc<Metrics>) -> std::io::Result<Mqtt> {
        let stop = Arc::new(AtomicBool::new(false));
        let wanted = Arc::new(Mutex::new(Wanted::default()));
        let (s, st, w) = (settings.clone(), stop.clone(), wanted.clone());
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || Session::new(s, metrics, w, st).run())?;
        Ok(Mqtt {
            settings,
            wanted,
            stop,
            thread: Some(thread),
        })
    }

    /// The settings it was started with (their broker parts are what
    /// matters: see [`super::same_broker`]).
    pub fn settings(&self) -> &MqttSettings {
        &self.settings
    }

    /// Serves these cameras from the session's next turn (within 100 ms).
    pub fn set_cameras(&self, cameras: Vec<(MqttSettings, Arc<Hub>)>) {
        let mut w = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        w.generation += 1;
        w.cameras = cameras;
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// One camera served by the session.
struct Cam {
    s: MqttSettings,
    hub: Arc<Hub>,
    topics: Topics,
    events: Receiver<Arc<ObjectEvent>>,
    /// Pictures already sent: label -> sequence number.
    pictures: BTreeMap<String, u64>,
}

impl Cam {
    fn new(s: MqttSettings, hub: Arc<Hub>) -> Cam {
        Cam {
            topics: Topics::new(&s.topic_prefix, &s.camera),
            events: hub.events.subscribe(),
            s,
            hub,
            pictures: BTreeMap::new(),
        }
    }
}

struct Session {
    /// The broker parts (the camera parts are each [`Cam`]'s).
    s: MqttSettings,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    wanted: Arc<Mutex<Wanted>>,
    /// The [`Wanted::generation`] `cams` follow.
    generation: u64,
    cams: Vec<Cam>,
    /// The daemon's own topics (availability, stats).
    daemon: Topics,
    qos: QoS,
    queue: VecDeque<Msg>,
    /// Retained topics and their last payload: sent again after a reconnect.
    retained: BTreeMap<String, Vec<u8>>,
    /// Every discovery config wanted now: sent on connect and when it changes.
    discovery: BTreeMap<String, String>,
    /// Retained topics to clear (empty payload): a removed camera's, and
    /// discovery configs no longer wanted. Kept until sent.
    clears: BTreeSet<String>,
    connected: bool,
    /// Discovery topics seen retained since connecting, to clear stale ones.
    cleanup: Option<(Instant, BTreeSet<String>)>,
}

impl Session {
    fn new(
        s: MqttSettings,
        metrics: Arc<Metrics>,
        wanted: Arc<Mutex<Wanted>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let qos = if s.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        Session {
            daemon: Topics::new(&s.topic_prefix, ""),
            s,
            metrics,
            stop,
            wanted,
            generation: 0,
            cams: Vec::new(),
            qos,
            queue: VecDeque::new(),
            retained: BTreeMap::new(),
            discovery: BTreeMap::new(),
            clears: BTreeSet::new(),
            connected: false,
            cleanup: None,
        }
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let s = &self.s;
        let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(15));
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_last_will(LastWill::new(
            self.daemon.available(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(u) = &s.username {
            o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
        }
        if s.tls {
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(
                s.ca_file.as_deref(),
            )?))));
        }
        Ok(o)
    }

    fn run(mut self) {
        let metrics = self.metrics.clone();
        let opts = match self.options() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("mqtt: {e}; not connecting");
                return;
            }
        };
        let (client, conn) = Client::new(opts, 256);
        // The connection runs on its own thread: connecting (DNS, TCP, TLS,
        // the broker's answer) takes what it takes, and is never cut short.
        let (tx, rx) = std::sync::mpsc::channel();
        let conn_stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("mqtt-conn".into())
            .spawn(move || drive(conn, tx, conn_stop));
        if let Err(e) = spawned {
            tracing::error!("mqtt: cannot start the connection thread: {e}");
            return;
        }
        let mut last_log: Option<Instant> = None;
        let mut suppressed = 0u64;
        let mut last_stats = Instant::now() - self.s.stats_interval;
        self.sync_cameras(&client);
        metrics.mqtt_connected.set(0);
        let where_ = format!("{}:{}", self.s.host, self.s.port);
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    tracing::info!("mqtt: connected to {where_} as {}", self.s.client_id);
                    self.connected = true;
                    metrics.mqtt_connected.set(1);
                    last_log = None;
                    self.on_connect(&client);
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => self.incoming(&p.topic, &p.payload, &client),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if self.connected {
                        tracing::warn!(
                            "mqtt: connection to {where_} lost: {e}; reconnecting (the stream goes on)"
                        );
                        last_log = Some(Instant::now());
                    } else if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        let more = if suppressed > 0 {
                            format!(" ({suppressed} more failed attempts since the last message)")
                        } else {
                            String::new()
                        };
                        tracing::warn!(
                            "mqtt: cannot connect to {where_}: {}{more}; retrying with back-off up to {} s (the stream goes on)",
                            explain(&e),
                            MAX_BACKOFF.as_secs()
                        );
                        last_log = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    self.connected = false;
                    self.cleanup = None;
                    metrics.mqtt_connected.set(0);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }

            // What happened since: events, then the cameras wanted (a
            // removed camera's last events go out before it goes), counts,
            // pictures, detect states, stats.
            self.gather_events();
            self.sync_cameras(&client);
            self.gather_counts();
            self.gather_pictures();
            for i in 0..self.cams.len() {
                let c = &self.cams[i];
                let (topic, detect) = (c.topics.detect_state(), on_off(c.hub.detect_enabled()));
                self.set_retained(topic, detect.as_bytes().to_vec());
            }
            if last_stats.elapsed() >= self.s.stats_interval {
                last_stats = Instant::now();
                let stats = self.stats();
                self.enqueue(self.daemon.stats(), stats, false);
            }
            if self.connected {
                self.flush(&client);
                self.send_clears(&client);
                self.finish_cleanup(&client);
            }
            if stopping {
                break;
            }
        }
        // A clean stop: what is queued, "offline", then disconnect. The
        // connection thread ends with the client; it is not waited for.
        if self.connected {
            self.flush(&client);
            let _ = client.try_publish(self.daemon.available(), QoS::AtLeastOnce, true, "offline");
            let _ = client.try_disconnect();
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    _ => {}
                }
            }
        }
        metrics.mqtt_connected.set(0);
    }

    /// Follows [`Mqtt::set_cameras`]: a removed camera's retained topics
    /// and discovery configs are cleared and its switch unsubscribed; an
    /// added one gets its counts at 0, its discovery and its switch; a
    /// camera whose labels or zones changed gets its discovery redone.
    fn sync_cameras(&mut self, client: &Client) {
        let list = {
            let w = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            if w.generation == self.generation {
                return;
            }
            self.generation = w.generation;
            w.cameras.clone()
        };
        let mut gone = Vec::new();
        self.cams.retain(|c| {
            let keep = list.iter().any(|(s, _)| s.camera == c.s.camera);
            if !keep {
                gone.push(c.topics.clone());
            }
            keep
        });
        for t in gone {
            tracing::info!(
                "mqtt: camera {} removed: clearing its retained topics",
                t.camera()
            );
            if self.connected {
                let _ = client.try_unsubscribe(t.detect_set());
            }
            let mine: Vec<String> = self
                .retained
                .keys()
                .filter(|k| t.is_camera_topic(k))
                .cloned()
                .collect();
            for k in mine {
                self.retained.remove(&k);
                self.clears.insert(k);
            }
            // Its events still go out; its older state must not land after the clear.
            self.queue.retain(|m| !(m.retain && t.is_camera_topic(&m.topic)));
        }
        for (s, hub) in &list {
            match self.cams.iter_mut().find(|c| c.s.camera == s.camera) {
                Some(c) if Arc::ptr_eq(&c.hub, hub) => c.s = s.clone(),
                Some(c) => *c = Cam::new(s.clone(), hub.clone()),
                None => {
                    let c = Cam::new(s.clone(), hub.clone());
                    if self.connected {
                        let _ = client.try_subscribe(c.topics.detect_set(), QoS::AtLeastOnce);
                    }
                    self.cams.push(c);
                }
            }
        }
        self.cams
            .sort_by_key(|c| list.iter().position(|(s, _)| s.camera == c.s.camera));
        // Counts start at 0 for the labels and zones of interest.
        let mut zero = Vec::new();
        for c in &self.cams {
            zero.extend(c.s.labels.iter().map(|l| c.topics.count(l)));
            for (z, labels) in &c.s.zones {
                let labels = if labels.is_empty() { &c.s.labels } else { labels };
                zero.extend(labels.iter().map(|l| c.topics.zone_count(z, l)));
            }
        }
        for topic in zero {
            if !self.retained.contains_key(&topic) {
                self.set_retained(topic, b"0".to_vec());
            }
        }
        self.refresh_discovery(client);
    }

    /// Works out the discovery configs of the cameras served: new or
    /// changed ones go out now (when connected), those no longer wanted are
    /// cleared.
    fn refresh_discovery(&mut self, client: &Client) {
        if !self.s.discovery {
            return;
        }
        let cams: Vec<MqttSettings> = self.cams.iter().map(|c| c.s.clone()).collect();
        let wanted: BTreeMap<String, String> = discovery::configs(&self.s, &cams).into_iter().collect();
        for topic in self.discovery.keys() {
            if !wanted.contains_key(topic) {
                self.clears.insert(topic.clone());
            }
        }
        let changed: Vec<(String, String)> = wanted
            .iter()
            .filter(|(t, p)| self.discovery.get(*t) != Some(*p))
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        self.discovery = wanted;
        if self.connected {
            for (topic, payload) in changed {
                self.publish_now(client, topic, payload.into_bytes());
            }
            self.send_clears(client);
        }
    }

    /// Straight to the connection, never through the queue: a full queue
    /// must not drop "online", discovery or a clear.
    fn publish_now(&self, client: &Client, topic: String, payload: Vec<u8>) -> bool {
        let sent = client.try_publish(topic, self.qos, true, payload).is_ok();
        if sent {
            self.metrics.mqtt_published.inc();
        } else {
            self.metrics.mqtt_dropped.inc();
        }
        sent
    }

    /// Empty retained payloads for [`Session::clears`], except topics wanted again.
    fn send_clears(&mut self, client: &Client) {
        let (retained, discovery) = (&self.retained, &self.discovery);
        self.clears
            .retain(|t| !retained.contains_key(t) && !discovery.contains_key(t));
        for topic in std::mem::take(&mut self.clears) {
            if topic.ends_with("/config") {
                tracing::info!("mqtt: clearing the discovery config {topic}, no longer configured");
            }
            if !self.publish_now(client, topic.clone(), Vec::new()) {
                // rumqttc's own queue is full: the next turn tries again.
                self.clears.insert(topic);
            }
        }
    }

    /// Availability, discovery, every retained state and the pending clears
    /// first, then the subscriptions.
    fn on_connect(&mut self, client: &Client) {
        let mut first = vec![(self.daemon.available(), b"online".to_vec())];
        for (topic, payload) in &self.discovery {
            first.push((topic.clone(), payload.clone().into_bytes()));
        }
        for (topic, payload) in &self.retained {
            first.push((topic.clone(), payload.clone()));
        }
        for (topic, payload) in first {
            self.publish_now(client, topic, payload);
        }
        self.send_clears(client);
        // Retained state still queued is older than what went out above.
        self.queue.retain(|m| !m.retain);
        for c in &self.cams {
            let _ = client.try_subscribe(c.topics.detect_set(), QoS::AtLeastOnce);
        }
        if self.s.discovery {
            let _ = client.try_subscribe(self.cleanup_filter(), QoS::AtLeastOnce);
            self.cleanup = Some((Instant::now() + CLEANUP_AFTER, BTreeSet::new()));
        }
    }

    /// Every discovery config of this daemon's node.
    fn cleanup_filter(&self) -> String {
        let node = discovery::slug(&self.s.client_id);
        format!("{}/+/{node}/+/config", self.s.discovery_prefix)
    }

    fn incoming(&mut self, topic: &str, payload: &[u8], client: &Client) {
        if let Some(i) = self.cams.iter().position(|c| c.topics.detect_set() == topic) {
            let hub = self.cams[i].hub.clone();
            match std::str::from_utf8(payload)
                .map(|p| p.trim().to_ascii_uppercase())
                .as_deref()
            {
                Ok("ON") => set_detect(&hub, topic, true),
                Ok("OFF") => set_detect(&hub, topic, false),
                _ => tracing::warn!(
                    "mqtt: {topic}: expected ON or OFF, got {:?}",
                    String::from_utf8_lossy(&payload[..payload.len().min(40)])
                ),
            }
            let state = self.cams[i].topics.detect_state();
            self.set_retained(state, on_off(hub.detect_enabled()).as_bytes().to_vec());
            self.flush(client);
        } else if let Some((_, seen)) = &mut self.cleanup {
            if !payload.is_empty() && topic.ends_with("/config") {
                seen.insert(topic.to_string());
            }
        }
    }

    /// Clears (empty retained config) discovery entities of this node the
    /// config no longer has: cameras, labels or zones removed while the
    /// daemon was not running.
    fn finish_cleanup(&mut self, client: &Client) {
        let Some((at, _)) = &self.cleanup else { return };
        if Instant::now() < *at {
            return;
        }
        let (_, seen) = self.cleanup.take().unwrap_or((Instant::now(), BTreeSet::new()));
        let _ = client.try_unsubscribe(self.cleanup_filter());
        for topic in seen {
            if !self.discovery.contains_key(&topic) {
                self.clears.insert(topic);
            }
        }
        self.send_clears(client);
    }

    fn enqueue(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        while self.queue.len() >= self.s.queue.max(1) {
            self.queue.pop_front();
            self.metrics.mqtt_dropped.inc();
        }
        self.queue.push_back(Msg {
            topic,
            payload,
            retain,
        });
    }

    /// Queues a retained message when its payload changed.
    fn set_retained(&mut self, topic: String, payload: Vec<u8>) {
        if self.retained.get(&topic) == Some(&payload) {
            return;
        }
        self.retained.insert(topic.clone(), payload.clone());
        // While the broker is away only the newest value matters, and it
        // goes out on reconnect: nothing is queued.
        if self.connected {
            self.enqueue(topic, payload, true);
        }
    }

    fn flush(&mut self, client: &Client) {
        while let Some(m) = self.queue.front() {
            match client.try_publish(m.topic.clone(), self.qos, m.retain, m.payload.clone()) {
                Ok(()) => {
                    self.queue.pop_front();
                    self.metrics.mqtt_published.inc();
                }
                // rumqttc's own queue is full: the rest waits for the next turn.
                Err(_) => break,
            }
        }
    }

    fn gather_events(&mut self) {
        let mut out = Vec::new();
        for c in &mut self.cams {
            loop {
                match c.events.try_recv() {
                    Ok(ev) => {
                        if let Ok(json) = serde_json::to_vec(&*ev) {
                            out.push((c.topics.events(), json));
                        }
                    }
                    Err(TryRecvError::Lagged(n)) => self.metrics.mqtt_dropped.inc_by(n),
                    Err(_) => break,
                }
            }
        }
        for (topic, json) in out {
            self.enqueue(topic, json, false);
        }
    }

    fn gather_counts(&mut self) {
        let mut out = Vec::new();
        for c in &self.cams {
            let counts = c.hub.events.counts();
            let (labels, zones) = &*counts;
            for (label, n) in labels.iter() {
                out.push((c.topics.count(label), n.to_string().into_bytes()));
            }
            for ((zone, label), n) in zones.iter() {
                out.push((c.topics.zone_count(zone, label), n.to_string().into_bytes()));
            }
        }
        for (topic, payload) in out {
            self.set_retained(topic, payload);
        }
    }

    fn gather_pictures(&mut self) {
        let mut out = Vec::new();
        for c in &mut self.cams {
            for (label, seq, path) in c.hub.events.latest_pictures() {
                if c.pictures.get(&label) == Some(&seq) {
                    continue;
                }
                c.pictures.insert(label.clone(), seq);
                match std::fs::read(&path) {
                    Ok(jpeg) if jpeg.len() <= MAX_PACKET - 1024 => {
                        out.push((c.topics.snapshot(&label), jpeg))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("mqtt: picture {}: {e}", path.display()),
                }
            }
        }
        for (topic, jpeg) in out {
            self.set_retained(topic, jpeg);
        }
    }

    fn stats(&self) -> Vec<u8> {
        let figures: Vec<CameraFigures> = self
            .cams
            .iter()
            .map(|c| {
                let hub = &c.hub;
                let report = hub.latest_report();
                CameraFigures {
                    name: c.s.camera.clone(),
                    fps: hub.metrics.processing_fps.get(),
                    inference_ms: report.as_ref().map(|r| r.inference_ms),
                    signal: report.as_ref().is_some_and(|r| r.signal),
                    detect: hub.detect_enabled(),
                    objects: hub.events.objects().len(),
                }
            })
            .collect();
        // The oldest hub was made when the daemon started.
        let uptime = self
            .cams
            .iter()
            .map(|c| c.hub.uptime().as_secs())
            .max()
            .unwrap_or(0);
        stats_json(&figures, uptime, cpu_temperature())
            .to_string()
            .into_bytes()
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

fn set_detect(hub: &Hub, topic: &str, on: bool) {
    if hub.detect_enabled() != on {
        tracing::info!(
            "mqtt: detection turned {} by {topic}",
            if on { "on" } else { "off (the stream goes on)" },
        );
    }
    hub.set_detect_enabled(on);
}

/// The first thermal zone's temperature in °C, where the system has one
/// (a Pi's SoC sensor).
fn cpu_temperature() -> Option<f64> {
    let text = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp").ok()?;
    text.trim().parse::<f64>().ok().map(|m| m / 1000.0)
}

/// Connection errors as an operator reads them.
fn explain(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword)
        | ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
            "the broker refused the login (check mqtt.username and mqtt.password)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection ({code:?})"),
        other => other.to_string(),
    }
}

/// TLS with the ring provider, trusting the system's CA certificates and
/// `ca_file` (PEM) when given.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("mqtt.ca_file {}: no certificate in it", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Drives rumqttc's connection, passing every event on; after an error it
/// waits (back-off from 1 s to 30 s, reset by a successful connect) before
/// the next attempt. Ends when the client is gone or on stop.
fn drive(
    mut conn: rumqttc::Connection,
    tx: std::sync::mpsc::Sender<Result<Event, ConnectionError>>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = FIRST_BACKOFF;
    for ev in conn.iter() {
        let failed = ev.is_err();
        if matches!(ev, Ok(Event::Incoming(Packet::ConnAck(_)))) {
            backoff = FIRST_BACKOFF;
        }
        if tx.send(ev).is_err() {
            return;
        }
        if failed {
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

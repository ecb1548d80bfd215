//! The client thread: rumqttc's connection driven with short timeouts, so
//! one thread both keeps the connection and publishes. While the broker is
//! away messages wait in a bounded queue (oldest dropped, counted) and the
//! connection is retried with back-off; on every (re)connect availability,
//! discovery and the retained state go out again and the subscriptions are
//! renewed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::broadcast::error::TryRecvError;

use super::discovery;
use super::topics::Topics;
use super::MqttSettings;
use crate::hub::Hub;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A failing broker is logged at most this often (the first failure at once).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How long after connecting retained discovery configs are collected to
/// find entities the config no longer has.
const CLEANUP_AFTER: Duration = Duration::from_secs(2);
/// Largest picture sent.
const MAX_PACKET: usize = 8 << 20;

/// A running MQTT client; dropping it says `offline` and disconnects.
pub struct Mqtt {
    settings: MqttSettings,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mqtt {
    pub fn start(settings: MqttSettings, hub: Weak<Hub>) -> std::io::Result<Mqtt> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (settings.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("mqtt".into()).spawn(move || {
            if let Some(hub) = hub.upgrade() {
                Session::new(s, hub, st).run();
            }
        })?;
        Ok(Mqtt {
            settings,
            stop,
            thread: Some(thread),
        })
    }

    pub fn settings(&self) -> &MqttSettings {
        &self.settings
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

struct Session {
    s: MqttSettings,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    topics: Topics,
    qos: QoS,
    queue: VecDeque<Msg>,
    /// Retained topics and their last payload: sent again after a reconnect.
    retained: BTreeMap<String, Vec<u8>>,
    connected: bool,
    /// Pictures already sent: label -> sequence number.
    pictures: BTreeMap<String, u64>,
    /// Discovery topics seen retained since connecting, to clear stale ones.
    cleanup: Option<(Instant, BTreeSet<String>)>,
    ours: BTreeSet<String>,
}

impl Session {
    fn new(s: MqttSettings, hub: Arc<Hub>, stop: Arc<AtomicBool>) -> Self {
        let topics = Topics::new(&s.topic_prefix, &s.camera);
        let qos = if s.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let ours = if s.discovery {
            discovery::configs(&s, &topics)
                .into_iter()
                .map(|(t, _)| t)
                .collect()
        } else {
            BTreeSet::new()
        };
        Session {
            s,
            hub,
            stop,
            topics,
            qos,
            queue: VecDeque::new(),
            retained: BTreeMap::new(),
            connected: false,
            pictures: BTreeMap::new(),
            cleanup: None,
            ours,
        }
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let s = &self.s;
        let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(15));
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_last_will(LastWill::new(
            self.topics.available(),
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
        let metrics = self.hub.metrics.clone();
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
        let mut events = self.hub.events.subscribe();
        let mut last_log: Option<Instant> = None;
        let mut suppressed = 0u64;
        let mut last_stats = Instant::now() - self.s.stats_interval;
        for l in self.s.labels.clone() {
            self.set_retained(self.topics.count(&l), b"0".to_vec());
        }
        for (z, labels) in self.s.zones.clone() {
            let labels = if labels.is_empty() {
                self.s.labels.clone()
            } else {
                labels
            };
            for l in labels {
                self.set_retained(self.topics.zone_count(&z, &l), b"0".to_vec());
            }
        }
        metrics.all.mqtt_connected.set(0);
        let where_ = format!("{}:{}", self.s.host, self.s.port);
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    tracing::info!("mqtt: connected to {where_} as {}", self.s.client_id);
                    self.connected = true;
                    metrics.all.mqtt_connected.set(1);
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
                    metrics.all.mqtt_connected.set(0);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }

            // What happened since: events, counts, pictures, stats.
            loop {
                match events.try_recv() {
                    Ok(ev) => {
                        if let Ok(json) = serde_json::to_vec(&*ev) {
                            self.enqueue(self.topics.events(), json, false);
                        }
                    }
                    Err(TryRecvError::Lagged(n)) => metrics.all.mqtt_dropped.inc_by(n),
                    Err(_) => break,
                }
            }
            self.gather_counts();
            self.gather_pictures();
            let detect = if self.hub.detect_enabled() { "ON" } else { "OFF" };
            self.set_retained(self.topics.detect_state(), detect.as_bytes().to_vec());
            if last_stats.elapsed() >= self.s.stats_interval {
                last_stats = Instant::now();
                let stats = self.stats();
                self.enqueue(self.topics.stats(), stats, false);
            }
            if self.connected {
                self.flush(&client);
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
            let _ = client.try_publish(self.topics.available(), QoS::AtLeastOnce, true, "offline");
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
        metrics.all.mqtt_connected.set(0);
    }

    /// Availability, discovery and every retained state first, then the
    /// subscriptions.
    fn on_connect(&mut self, client: &Client) {
        let mut first = vec![(self.topics.available(), b"online".to_vec())];
        if self.s.discovery {
            for (topic, payload) in discovery::configs(&self.s, &self.topics) {
                first.push((topic, payload.into_bytes()));
            }
        }
        for (topic, payload) in &self.retained {
            first.push((topic.clone(), payload.clone()));
        }
        // Straight to the connection, never through the queue: a full queue
        // must not drop "online" or discovery.
        for (topic, payload) in first {
            if client.try_publish(topic, self.qos, true, payload).is_ok() {
                self.hub.metrics.all.mqtt_published.inc();
            } else {
                self.hub.metrics.all.mqtt_dropped.inc();
            }
        }
        // Retained state still queued is older than what went out above.
        self.queue.retain(|m| !m.retain);
        let _ = client.try_subscribe(self.topics.detect_set(), QoS::AtLeastOnce);
        if self.s.discovery {
            let node = discovery::slug(&self.s.client_id);
            let _ = client.try_subscribe(
                format!("{}/+/{node}/+/config", self.s.discovery_prefix),
                QoS::AtLeastOnce,
            );
            self.cleanup = Some((Instant::now() + CLEANUP_AFTER, BTreeSet::new()));
        }
    }

    fn incoming(&mut self, topic: &str, payload: &[u8], client: &Client) {
        if topic == self.topics.detect_set() {
            match std::str::from_utf8(payload)
                .map(|p| p.trim().to_ascii_uppercase())
                .as_deref()
            {
                Ok("ON") => self.set_detect(true),
                Ok("OFF") => self.set_detect(false),
                _ => tracing::warn!(
                    "mqtt: {topic}: expected ON or OFF, got {:?}",
                    String::from_utf8_lossy(&payload[..payload.len().min(40)])
                ),
            }
            let state = if self.hub.detect_enabled() { "ON" } else { "OFF" };
            self.set_retained(self.topics.detect_state(), state.as_bytes().to_vec());
            self.flush(client);
        } else if let Some((_, seen)) = &mut self.cleanup {
            if !payload.is_empty() && topic.ends_with("/config") {
                seen.insert(topic.to_string());
            }
        }
    }

    fn set_detect(&self, on: bool) {
        if self.hub.detect_enabled() != on {
            tracing::info!(
                "mqtt: detection turned {} by {}",
                if on { "on" } else { "off (the stream goes on)" },
                self.topics.detect_set()
            );
        }
        self.hub.set_detect_enabled(on);
    }

    /// Clears (empty retained config) discovery entities of this node the
    /// config no longer has: labels or zones removed.
    fn finish_cleanup(&mut self, client: &Client) {
        let Some((at, _)) = &self.cleanup else { return };
        if Instant::now() < *at {
            return;
        }
        let (_, seen) = self.cleanup.take().unwrap_or((Instant::now(), BTreeSet::new()));
        let node = discovery::slug(&self.s.client_id);
        let _ = client.try_unsubscribe(format!("{}/+/{node}/+/config", self.s.discovery_prefix));
        for topic in seen.difference(&self.ours) {
            tracing::info!("mqtt: clearing the discovery config {topic}, no longer configured");
            self.queue.push_front(Msg {
                topic: topic.clone(),
                payload: Vec::new(),
                retain: true,
            });
        }
        self.flush(client);
    }

    fn enqueue(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        while self.queue.len() >= self.s.queue.max(1) {
            self.queue.pop_front();
            self.hub.metrics.all.mqtt_dropped.inc();
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
                    self.hub.metrics.all.mqtt_published.inc();
                }
                // rumqttc's own queue is full: the rest waits for the next turn.
                Err(_) => break,
            }
        }
    }

    fn gather_counts(&mut self) {
        let counts = self.hub.events.counts();
        let (labels, zones) = &*counts;
        for (label, n) in labels.iter() {
            self.set_retained(self.topics.count(label), n.to_string().into_bytes());
        }
        for ((zone, label), n) in zones.iter() {
            self.set_retained(self.topics.zone_count(zone, label), n.to_string().into_bytes());
        }
    }

    fn gather_pictures(&mut self) {
        for (label, seq, path) in self.hub.events.latest_pictures() {
            if self.pictures.get(&label) == Some(&seq) {
                continue;
            }
            self.pictures.insert(label.clone(), seq);
            match std::fs::read(&path) {
                Ok(jpeg) if jpeg.len() <= MAX_PACKET - 1024 => {
                    self.set_retained(self.topics.snapshot(&label), jpeg)
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("mqtt: picture {}: {e}", path.display()),
            }
        }
    }

    fn stats(&self) -> Vec<u8> {
        let hub = &self.hub;
        let report = hub.latest_report();
        let mut v = serde_json::json!({
            "camera": self.topics.camera(),
            "fps": (hub.metrics.processing_fps.get() * 10.0).round() / 10.0,
            "inference_ms": report.as_ref().map(|r| (r.inference_ms * 10.0).round() / 10.0),
            "signal": report.as_ref().is_some_and(|r| r.signal),
            "detect": if hub.detect_enabled() { "ON" } else { "OFF" },
            "objects": hub.events.objects().len(),
            "uptime_s": hub.uptime().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(t) = cpu_temperature() {
            v["cpu_temperature_c"] = ((t * 10.0).round() / 10.0).into();
        }
        v.to_string().into_bytes()
    }
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

//! MQTT: object events, counts, pictures, stats and availability published
//! to a broker, Home Assistant discovery, and a detect switch. The broker is
//! how a fleet of Pis reports to one place; the daemon streams on whether it
//! is there or not.
//!
//! One client per daemon, whatever the number of cameras: one connection,
//! one client id, one last will on `<prefix>/available` (two clients with
//! the same id would push each other off the broker, endlessly). Its
//! thread ([`client`]) runs rumqttc's connection and does all publishing:
//! it takes object events from every camera's bus, watches counts and
//! pictures, and keeps its own bounded queue while the broker is away
//! (oldest dropped, counted). [`topics`] names every topic, [`discovery`]
//! builds the Home Assistant configs, [`stats`] the stats message.

mod client;
pub mod discovery;
pub mod stats;
pub mod topics;

use std::path::PathBuf;
use std::time::Duration;

pub use client::Mqtt;

use crate::hub::Cameras;

/// Everything the client is configured with, validated: one per camera,
/// the broker parts (top-level `[mqtt]`) the same in each.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Extra CA certificates (PEM) for `mqtts://`, beside the system's.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    pub topic_prefix: String,
    pub discovery: bool,
    pub discovery_prefix: String,
    /// 0 or 1.
    pub qos: u8,
    pub stats_interval: Duration,
    /// The camera's name in topics.
    pub camera: String,
    /// Labels that get Home Assistant entities (and count topics from the
    /// start, at 0).
    pub labels: Vec<String>,
    /// Zone names, with the labels each counts (empty: all of `labels`).
    pub zones: Vec<(String, Vec<String>)>,
    /// Messages kept while the broker is away.
    pub queue: usize,
    /// Whether object pictures are kept (then image entities and picture
    /// topics exist).
    pub snapshots: bool,
}

/// Whether `a` and `b` connect the same way and name the same daemon
/// topics: everything but the camera's own parts (name, labels, zones,
/// pictures), which change without reconnecting.
pub fn same_broker(a: &MqttSettings, b: &MqttSettings) -> bool {
    let daemon = |s: &MqttSettings| MqttSettings {
        camera: String::new(),
        labels: Vec::new(),
        zones: Vec::new(),
        snapshots: false,
        ..s.clone()
    };
    daemon(a) == daemon(b)
}

/// Serves `settings` (one per camera, in config order; empty: no MQTT)
/// with the daemon's one client, in `cameras`: started when missing,
/// started again when the broker parts changed (the old connection says
/// `offline` first), otherwise told the cameras, which it adds and removes
/// on its connection. Call it after every change of the camera list.
pub fn configure(cameras: &Cameras, settings: &[MqttSettings]) {
    let mut slot = cameras.mqtt.lock().unwrap_or_else(|e| e.into_inner());
    let Some(first) = settings.first() else {
        if slot.take().is_some() {
            tracing::info!(
                "mqtt: no broker configured any more: disconnected, detection on for every camera"
            );
        }
        // Nothing can switch detection back on without MQTT.
        for hub in cameras.all() {
            hub.set_detect_enabled(true);
        }
        return;
    };
    if settings.iter().any(|s| !same_broker(s, first)) {
        tracing::warn!("mqtt: cameras disagree on the broker settings; using the first camera's");
    }
    if slot.as_ref().is_some_and(|m| !same_broker(m.settings(), first)) {
        slot.take();
    }
    if slot.is_none() {
        match Mqtt::start(first.clone(), cameras.metrics.clone()) {
            Ok(m) => *slot = Some(m),
            Err(e) => {
                tracing::error!("mqtt: cannot start the client thread: {e}");
                return;
            }
        }
    }
    let served = settings
        .iter()
        .filter_map(|s| cameras.get(&s.camera).map(|hub| (s.clone(), hub)))
        .collect();
    if let Some(m) = slot.as_ref() {
        m.set_cameras(served);
    }
}

/// Stops the client cleanly (availability `offline`), at daemon exit once
/// the pipelines have stopped, so their objects' `end` events go out first.
pub fn stop(cameras: &Cameras) {
    cameras.mqtt.lock().unwrap_or_else(|e| e.into_inner()).take();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broker_parts_need_a_new_connection() {
        let a = MqttSettings {
            host: "broker".into(),
            port: 1883,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            client_id: "edgevision-pi".into(),
            topic_prefix: "edgevision".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            qos: 0,
            stats_interval: Duration::from_secs(60),
            camera: "door".into(),
            labels: vec!["person".into()],
            zones: Vec::new(),
            queue: 1000,
            snapshots: false,
        };
        let other_camera = MqttSettings {
            camera: "yard".into(),
            labels: vec!["dog".into()],
            zones: vec![("lawn".into(), Vec::new())],
            snapshots: true,
            ..a.clone()
        };
        assert!(same_broker(&a, &other_camera));
        for changed in [
            MqttSettings {
                port: 1884,
                ..a.clone()
            },
            MqttSettings {
                client_id: "other".into(),
                ..a.clone()
            },
            MqttSettings {
                topic_prefix: "ev".into(),
                ..a.clone()
            },
            MqttSettings {
                password: Some("x".into()),
                ..a.clone()
            },
        ] {
            assert!(!same_broker(&a, &changed), "{changed:?}");
        }
    }
}

//! MQTT: object events, counts, pictures, stats and availability published
//! to a broker, Home Assistant discovery, and a detect switch. The broker is
//! how a fleet of Pis reports to one place; the daemon streams on whether it
//! is there or not.
//!
//! One thread per client ([`client`]) runs rumqttc's connection and does all
//! publishing: it takes object events from the hub's bus, watches counts
//! and pictures, and keeps its own bounded queue while the broker is away
//! (oldest dropped, counted). [`topics`] names every topic, [`discovery`]
//! builds the Home Assistant configs.

mod client;
pub mod discovery;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::Mqtt;

use crate::hub::Hub;

/// Everything the client is configured with, validated.
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

/// Starts, restarts (settings changed) or stops the hub's MQTT client.
pub fn configure(hub: &Arc<Hub>, settings: Option<MqttSettings>) {
    let mut slot = hub.mqtt.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().map(|m| m.settings()) == settings.as_ref() {
        return;
    }
    // The old client says "offline" and disconnects before a new one starts.
    slot.take();
    if settings.is_none() {
        // Nothing can switch detection back on without MQTT.
        hub.set_detect_enabled(true);
    }
    if let Some(s) = settings {
        match Mqtt::start(s, Arc::downgrade(hub)) {
            Ok(m) => *slot = Some(m),
            Err(e) => tracing::error!("mqtt: cannot start the client thread: {e}"),
        }
    }
}

/// Stops the client cleanly (availability `offline`), at daemon exit.
pub fn stop(hub: &Hub) {
    hub.mqtt.lock().unwrap_or_else(|e| e.into_inner()).take();
}

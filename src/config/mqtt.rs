//! `[mqtt]`: the broker to publish to, and Home Assistant discovery.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::mqtt::MqttSettings;

/// `[mqtt]`. Without `url` nothing is published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883); `""`
    /// (default): no MQTT.
    pub url: String,
    pub username: String,
    pub password: String,
    /// A file holding the password (systemd's `LoadCredential=`), instead
    /// of `password`.
    pub password_file: PathBuf,
    /// Extra CA certificates (PEM) for `mqtts://`.
    pub ca_file: PathBuf,
    /// Default `edgevision-<hostname>`.
    pub client_id: String,
    /// Default `edgevision`.
    pub topic_prefix: String,
    /// Home Assistant discovery. Default true.
    pub discovery: bool,
    /// Default `homeassistant`.
    pub discovery_prefix: String,
    /// 0 or 1. Default 0.
    pub qos: u8,
    /// Seconds between `<prefix>/stats` messages. Default 60.
    pub stats_interval: f32,
    /// Labels that get Home Assistant entities; default the
    /// `detect.allow` list, or `["person"]` when that is empty.
    pub labels: Vec<String>,
    /// Messages kept while the broker is away. Default 1000.
    pub queue: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            username: String::new(),
            password: String::new(),
            password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            client_id: String::new(),
            topic_prefix: "edgevision".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            qos: 0,
            stats_interval: 60.0,
            labels: Vec::new(),
            queue: 1000,
        }
    }
}

type Invalid = (String, String);

fn bad<T>(key: &str, msg: impl Into<String>) -> Result<T, Invalid> {
    Err((key.to_string(), msg.into()))
}

/// (host, port, tls) of an `mqtt://` or `mqtts://` URL.
pub(crate) fn parse_url(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("mqtt://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (r, true)
    } else {
        return Err(format!("{url:?}: must start with mqtt:// or mqtts://"));
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "{url:?}: only mqtt[s]://host[:port]; put credentials in mqtt.username and mqtt.password"
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: missing ']'"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: the host is missing"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url:?}: {p:?} is not a port number"))?,
    };
    Ok((host.to_string(), port, tls))
}

/// Topic levels the daemon builds must not hold wildcards or `/`.
fn topic_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#', '\0'])
}

impl MqttConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.url.is_empty() {
            return Ok(());
        }
        if let Err(e) = parse_url(&self.url) {
            return bad("mqtt.url", e);
        }
        if !self.password.is_empty() && !self.password_file.as_os_str().is_empty() {
            return bad("mqtt.password_file", "set password or password_file, not both");
        }
        if self.username.is_empty()
            && (!self.password.is_empty() || !self.password_file.as_os_str().is_empty())
        {
            return bad("mqtt.username", "a password needs a username");
        }
        if !self.client_id.is_empty() && (self.client_id.len() > 64 || !topic_safe(&self.client_id)) {
            return bad("mqtt.client_id", "must be 1 to 64 characters without + or #");
        }
        for (key, v) in [
            ("mqtt.topic_prefix", &self.topic_prefix),
            ("mqtt.discovery_prefix", &self.discovery_prefix),
        ] {
            if !topic_safe(v) || v.starts_with('/') || v.ends_with('/') {
                return bad(
                    key,
                    format!("{v:?}: a topic prefix without +, # or a leading or trailing /"),
                );
            }
        }
        if self.qos > 1 {
            return bad("mqtt.qos", format!("must be 0 or 1, not {}", self.qos));
        }
        if !(self.stats_interval.is_finite() && (1.0..=86_400.0).contains(&self.stats_interval)) {
            return bad(
                "mqtt.stats_interval",
                format!("must be between 1 and 86400 seconds, not {}", self.stats_interval),
            );
        }
        for (i, l) in self.labels.iter().enumerate() {
            if !topic_safe(l) || l.contains('/') {
                return bad(
                    &format!("mqtt.labels[{i}]"),
                    format!("{l:?} cannot be a topic level"),
                );
            }
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return bad(
                "mqtt.queue",
                format!("must be between 1 and 1000000, not {}", self.queue),
            );
        }
        Ok(())
    }

    /// The password, from `password` or read from `password_file` (one
    /// trailing newline dropped).
    pub(crate) fn password(&self) -> Result<Option<String>, Invalid> {
        if !self.password.is_empty() {
            return Ok(Some(self.password.clone()));
        }
        if self.password_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.password_file).map_err(|e| {
            (
                "mqtt.password_file".to_string(),
                format!("cannot read {}: {e}", self.password_file.display()),
            )
        })?;
        let p = text.strip_suffix('\n').unwrap_or(&text);
        let p = p.strip_suffix('\r').unwrap_or(p);
        Ok(Some(p.to_string()))
    }
}

/// `edgevision-<hostname>`.
fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("edgevision-{host}")
}

/// The client's settings; `None` without a URL.
pub(crate) fn settings(cfg: &super::Config) -> Result<Option<MqttSettings>, Invalid> {
    let m = &cfg.mqtt;
    if m.url.is_empty() {
        return Ok(None);
    }
    let (host, port, tls) = parse_url(&m.url).map_err(|e| ("mqtt.url".to_string(), e))?;
    let labels = if !m.labels.is_empty() {
        m.labels.clone()
    } else if !cfg.detect.allow.is_empty() {
        cfg.detect.allow.clone()
    } else {
        vec!["person".into()]
    };
    Ok(Some(MqttSettings {
        host,
        port,
        tls,
        ca_file: (!m.ca_file.as_os_str().is_empty()).then(|| m.ca_file.clone()),
        username: (!m.username.is_empty()).then(|| m.username.clone()),
        password: m.password()?,
        client_id: if m.client_id.is_empty() {
            default_client_id()
        } else {
            m.client_id.clone()
        },
        topic_prefix: m.topic_prefix.clone(),
        discovery: m.discovery,
        discovery_prefix: m.discovery_prefix.clone(),
        qos: m.qos,
        stats_interval: Duration::from_secs_f32(m.stats_interval),
        camera: cfg.camera_name().to_string(),
        labels,
        zones: cfg
            .zone
            .iter()
            .map(|z| (z.name.clone(), z.labels.clone()))
            .collect(),
        queue: m.queue,
        snapshots: !cfg.events.snapshot_dir.as_os_str().is_empty(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        assert_eq!(
            parse_url("mqtt://broker").unwrap(),
            ("broker".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://broker:9000/").unwrap(),
            ("broker".into(), 9000, true)
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1884").unwrap(),
            ("::1".into(), 1884, false)
        );
        for bad in [
            "tcp://x",
            "mqtt://",
            "mqtt://u:p@x",
            "mqtt://x:0",
            "mqtt://x/topic",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

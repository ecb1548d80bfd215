//! Home Assistant MQTT discovery: one retained config per entity under
//! `<discovery_prefix>/<component>/<node>/<object>/config`, all on one
//! device per daemon, each with the availability topic. Ids are built
//! from names only, so they are stable across restarts.

use serde_json::{json, Value};

use super::topics::Topics;
use super::MqttSettings;

/// Lower-case letters, digits and `_`: what discovery ids may hold.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// `(topic, payload)` of every discovery config for these settings.
pub fn configs(s: &MqttSettings, topics: &Topics) -> Vec<(String, String)> {
    let snapshots = s.snapshots;
    let node = slug(&s.client_id);
    let cam = topics.camera();
    let cam_slug = slug(cam);
    let device = json!({
        "identifiers": [node],
        "name": format!("edgevision {}", s.client_id),
        "manufacturer": "edgevision",
        "model": "edgevision",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let avail = topics.available();
    let mut out = Vec::new();
    let mut add = |component: &str, object: String, mut cfg: Value| {
        let unique = format!("{node}_{object}");
        cfg["unique_id"] = unique.clone().into();
        cfg["object_id"] = unique.into();
        cfg["availability_topic"] = avail.clone().into();
        cfg["device"] = device.clone();
        let topic = format!("{}/{component}/{node}/{object}/config", s.discovery_prefix);
        out.push((topic, cfg.to_string()));
    };
    let occupied = "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}";
    let mut places: Vec<(Option<&str>, &str)> = s.labels.iter().map(|l| (None, l.as_str())).collect();
    for (zone, labels) in &s.zones {
        let labels = if labels.is_empty() { &s.labels } else { labels };
        places.extend(labels.iter().map(|l| (Some(zone.as_str()), l.as_str())));
    }
    for (zone, label) in places {
        let (name, object, state) = match zone {
            None => (
                format!("{cam} {label}"),
                format!("{cam_slug}_{}", slug(label)),
                topics.count(label),
            ),
            Some(z) => (
                format!("{cam} {z} {label}"),
                format!("{cam_slug}_{}_{}", slug(z), slug(label)),
                topics.zone_count(z, label),
            ),
        };
        add(
            "binary_sensor",
            format!("{object}_detected"),
            json!({
                "name": format!("{name} detected"),
                "state_topic": state,
                "value_template": occupied,
                "device_class": "occupancy",
            }),
        );
        add(
            "sensor",
            format!("{object}_count"),
            json!({
                "name": format!("{name} count"),
                "state_topic": state,
                "state_class": "measurement",
                "icon": "mdi:counter",
            }),
        );
        if snapshots && zone.is_none() {
            add(
                "image",
                format!("{object}_snapshot"),
                json!({
                    "name": format!("{name} snapshot"),
                    "image_topic": topics.snapshot(label),
                    "content_type": "image/jpeg",
                }),
            );
        }
    }
    add(
        "switch",
        format!("{cam_slug}_detect"),
        json!({
            "name": format!("{cam} detect"),
            "command_topic": topics.detect_set(),
            "state_topic": topics.detect_state(),
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:motion-sensor",
        }),
    );
    for (key, name, unit) in [("fps", "fps", "fps"), ("inference_ms", "inference time", "ms")] {
        add(
            "sensor",
            slug(key),
            json!({
                "name": name,
                "state_topic": topics.stats(),
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "entity_category": "diagnostic",
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MqttSettings {
        MqttSettings {
            host: "broker".into(),
            port: 1883,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            client_id: "edgevision-Pi-5".into(),
            topic_prefix: "edgevision".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            qos: 0,
            stats_interval: std::time::Duration::from_secs(60),
            camera: "default".into(),
            labels: vec!["person".into(), "traffic light".into()],
            zones: vec![("porch".into(), vec!["person".into()])],
            queue: 100,
            snapshots: true,
        }
    }

    #[test]
    fn every_entity_has_a_stable_id_the_device_and_availability() {
        let s = settings();
        let t = Topics::new("edgevision", "default");
        let cfgs = configs(&s, &t);
        let topics: Vec<&str> = cfgs.iter().map(|(t, _)| t.as_str()).collect();
        assert!(
            topics.contains(&"homeassistant/binary_sensor/edgevision_pi_5/default_person_detected/config")
        );
        assert!(topics.contains(&"homeassistant/sensor/edgevision_pi_5/default_traffic_light_count/config"));
        assert!(topics
            .contains(&"homeassistant/binary_sensor/edgevision_pi_5/default_porch_person_detected/config"));
        assert!(topics.contains(&"homeassistant/image/edgevision_pi_5/default_person_snapshot/config"));
        assert!(topics.contains(&"homeassistant/switch/edgevision_pi_5/default_detect/config"));
        assert!(topics.contains(&"homeassistant/sensor/edgevision_pi_5/fps/config"));
        // 2 labels x (detected, count, image) + 1 zone label x 2 + switch + 2 stats.
        assert_eq!(cfgs.len(), 6 + 2 + 1 + 2);
        for (topic, payload) in &cfgs {
            let v: Value = serde_json::from_str(payload).unwrap();
            assert_eq!(v["availability_topic"], "edgevision/available", "{topic}");
            assert_eq!(v["device"]["identifiers"][0], "edgevision_pi_5");
            assert_eq!(v["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
            let object = topic.rsplit('/').nth(1).unwrap();
            assert_eq!(v["unique_id"], format!("edgevision_pi_5_{object}"));
        }
        // The same settings give the same configs: ids survive restarts.
        assert_eq!(cfgs, configs(&s, &t));
        let porch: Value = serde_json::from_str(
            &cfgs
                .iter()
                .find(|(t, _)| t.contains("default_porch_person_detected"))
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(porch["state_topic"], "edgevision/default/porch/person");
        assert_eq!(porch["device_class"], "occupancy");
        assert!(configs(
            &MqttSettings {
                snapshots: false,
                ..s.clone()
            },
            &t
        )
        .iter()
        .all(|(t, _)| !t.contains("/image/")));
    }

    #[test]
    fn slugs_are_plain() {
        assert_eq!(slug("edgevision-Pi 5!"), "edgevision_pi_5");
        assert_eq!(slug("traffic light"), "traffic_light");
    }
}

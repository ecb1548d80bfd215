//! Home Assistant MQTT discovery: one retained config per entity under
//! `<discovery_prefix>/<component>/<node>/<object>/config`, `<node>` being
//! the daemon's `client_id`, each with the daemon's availability topic.
//! Ids are built from names only (the camera's among them, so they are
//! unique across cameras), so they are stable across restarts.
//!
//! Devices: with one camera every entity is on one device, the daemon's,
//! as it always was. With several, each camera is a device of its own
//! (linked to the daemon's with `via_device`), the way Frigate shows its
//! cameras: Home Assistant users put each camera in its own area (the door
//! camera in the hall), which only works per device; the daemon's own
//! figures (fps, inference time) stay on the daemon's device. Adding a
//! second camera moves the first one's entities to its new device; their
//! `unique_id`s do not change, so Home Assistant updates the same entities
//! rather than making new ones.

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

/// The daemon's device.
fn daemon_device(s: &MqttSettings) -> Value {
    json!({
        "identifiers": [slug(&s.client_id)],
        "name": format!("edgevision {}", s.client_id),
        "manufacturer": "edgevision",
        "model": "edgevision",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

/// A camera's own device, shown under the daemon's.
fn camera_device(s: &MqttSettings, camera: &str) -> Value {
    let node = slug(&s.client_id);
    json!({
        "identifiers": [format!("{node}_{}", slug(camera))],
        "name": camera,
        "manufacturer": "edgevision",
        "model": "edgevision camera",
        "sw_version": env!("CARGO_PKG_VERSION"),
        "via_device": node,
    })
}

/// `(topic, payload)` of every discovery config: `broker` gives the
/// daemon's parts (`client_id`, prefixes), `cameras` one entry per camera.
pub fn configs(broker: &MqttSettings, cameras: &[MqttSettings]) -> Vec<(String, String)> {
    let node = slug(&broker.client_id);
    let daemon = Topics::new(&broker.topic_prefix, "");
    let avail = daemon.available();
    let mut out = Vec::new();
    let mut add = |component: &str, object: String, device: &Value, mut cfg: Value| {
        let unique = format!("{node}_{object}");
        cfg["unique_id"] = unique.clone().into();
        cfg["object_id"] = unique.into();
        cfg["availability_topic"] = avail.clone().into();
        cfg["device"] = device.clone();
        let topic = format!("{}/{component}/{node}/{object}/config", broker.discovery_prefix);
        out.push((topic, cfg.to_string()));
    };
    let own_devices = cameras.len() > 1;
    for s in cameras {
        let topics = Topics::new(&broker.topic_prefix, &s.camera);
        let device = if own_devices {
            camera_device(broker, &s.camera)
        } else {
            daemon_device(broker)
        };
        camera_configs(s, &topics, &device, &mut add);
    }
    let device = daemon_device(broker);
    for (key, name, unit) in [("fps", "fps", "fps"), ("inference_ms", "inference time", "ms")] {
        add(
            "sensor",
            slug(key),
            &device,
            json!({
                "name": name,
                "state_topic": daemon.stats(),
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "entity_category": "diagnostic",
            }),
        );
    }
    out
}

/// One camera's entities: per label and zone, its pictures, its switch.
fn camera_configs(
    s: &MqttSettings,
    topics: &Topics,
    device: &Value,
    add: &mut impl FnMut(&str, String, &Value, Value),
) {
    let cam = topics.camera();
    let cam_slug = slug(cam);
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
            device,
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
            device,
            json!({
                "name": format!("{name} count"),
                "state_topic": state,
                "state_class": "measurement",
                "icon": "mdi:counter",
            }),
        );
        if s.snapshots && zone.is_none() {
            add(
                "image",
                format!("{object}_snapshot"),
                device,
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
        device,
        json!({
            "name": format!("{cam} detect"),
            "command_topic": topics.detect_set(),
            "state_topic": topics.detect_state(),
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:motion-sensor",
        }),
    );
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
        let cfgs = configs(&s, std::slice::from_ref(&s));
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
        assert_eq!(cfgs, configs(&s, std::slice::from_ref(&s)));
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
        let no_pictures = MqttSettings {
            snapshots: false,
            ..s.clone()
        };
        assert!(configs(&s, &[no_pictures])
            .iter()
            .all(|(t, _)| !t.contains("/image/")));
    }

    #[test]
    fn several_cameras_are_each_a_device_with_ids_of_their_own() {
        let s = settings();
        let door = MqttSettings {
            camera: "door".into(),
            labels: vec!["dog".into()],
            zones: Vec::new(),
            snapshots: false,
            ..s.clone()
        };
        let cfgs = configs(&s, &[s.clone(), door]);
        let parsed: Vec<(&str, Value)> = cfgs
            .iter()
            .map(|(t, p)| (t.as_str(), serde_json::from_str(p).unwrap()))
            .collect();
        // Every topic and unique_id once: the camera is in each.
        let topics: std::collections::BTreeSet<&str> = parsed.iter().map(|(t, _)| *t).collect();
        assert_eq!(topics.len(), cfgs.len());
        let ids: std::collections::BTreeSet<String> =
            parsed.iter().map(|(_, v)| v["unique_id"].to_string()).collect();
        assert_eq!(ids.len(), cfgs.len());
        // The first camera's as before, plus the door's: dog x 2 and a switch.
        assert_eq!(cfgs.len(), 6 + 2 + 1 + 2 + 3);
        let get = |object: &str| {
            parsed
                .iter()
                .find(|(t, _)| t.ends_with(&format!("/edgevision_pi_5/{object}/config")))
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no {object}"))
        };
        let door_switch = get("door_detect");
        assert_eq!(door_switch["command_topic"], "edgevision/door/detect/set");
        assert_eq!(door_switch["state_topic"], "edgevision/door/detect/state");
        assert_eq!(door_switch["device"]["identifiers"][0], "edgevision_pi_5_door");
        assert_eq!(door_switch["device"]["name"], "door");
        assert_eq!(door_switch["device"]["via_device"], "edgevision_pi_5");
        assert_eq!(get("door_dog_detected")["state_topic"], "edgevision/door/dog");
        assert_eq!(
            get("default_person_detected")["device"]["identifiers"][0],
            "edgevision_pi_5_default"
        );
        // The daemon's figures stay on the daemon's device, once.
        assert_eq!(get("fps")["device"]["identifiers"][0], "edgevision_pi_5");
        assert_eq!(parsed.iter().filter(|(t, _)| t.contains("/fps/")).count(), 1);
        for (topic, v) in &parsed {
            assert_eq!(v["availability_topic"], "edgevision/available", "{topic}");
        }
    }

    #[test]
    fn slugs_are_plain() {
        assert_eq!(slug("edgevision-Pi 5!"), "edgevision_pi_5");
        assert_eq!(slug("traffic light"), "traffic_light");
    }
}

//! Every topic the daemon publishes or reads, in one place.

/// A label or zone as one topic level: MQTT's wildcards and the level
/// separator (a custom labels file may have them) become `_`.
fn level(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['+', '#', '/', '\0']) {
        s.replace(['+', '#', '/', '\0'], "_").into()
    } else {
        s.into()
    }
}

/// Topic names for one daemon and camera.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    camera: String,
}

impl Topics {
    pub fn new(prefix: &str, camera: &str) -> Self {
        Topics {
            prefix: prefix.trim_end_matches('/').to_string(),
            camera: camera.to_string(),
        }
    }

    /// `online` / `offline`, retained; the last will says `offline`.
    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// Object events as JSON.
    pub fn events(&self) -> String {
        format!("{}/{}/events", self.prefix, self.camera)
    }

    /// Objects of `label` tracked now, retained.
    pub fn count(&self, label: &str) -> String {
        format!("{}/{}/{}", self.prefix, self.camera, level(label))
    }

    /// Objects of `label` in `zone` now, retained.
    pub fn zone_count(&self, zone: &str, label: &str) -> String {
        format!("{}/{}/{}/{}", self.prefix, self.camera, level(zone), level(label))
    }

    /// The latest picture of a `label` object (JPEG), retained.
    pub fn snapshot(&self, label: &str) -> String {
        format!("{}/{}/{}/snapshot", self.prefix, self.camera, level(label))
    }

    /// Daemon figures as JSON, every `stats_interval`.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }

    /// `ON` / `OFF` from outside: inference on or paused.
    pub fn detect_set(&self) -> String {
        format!("{}/{}/detect/set", self.prefix, self.camera)
    }

    /// The detect switch's state, retained.
    pub fn detect_state(&self) -> String {
        format!("{}/{}/detect/state", self.prefix, self.camera)
    }

    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// Whether `topic` is one of this camera's (`<prefix>/<camera>/...`):
    /// what is cleared when the camera is removed. Camera names hold no
    /// `/`, so one camera's topics never look like another's.
    pub fn is_camera_topic(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(self.camera.as_str()))
            .is_some_and(|t| t.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_documented_layout() {
        let t = Topics::new("edgevision/", "garden");
        assert_eq!(t.available(), "edgevision/available");
        assert_eq!(t.events(), "edgevision/garden/events");
        assert_eq!(t.count("person"), "edgevision/garden/person");
        assert_eq!(t.zone_count("porch", "person"), "edgevision/garden/porch/person");
        assert_eq!(t.snapshot("dog"), "edgevision/garden/dog/snapshot");
        assert_eq!(t.stats(), "edgevision/stats");
        assert_eq!(t.detect_set(), "edgevision/garden/detect/set");
        assert_eq!(t.detect_state(), "edgevision/garden/detect/state");
        // Wildcards in a label cannot make a topic the broker refuses.
        assert_eq!(t.count("a+b/c#"), "edgevision/garden/a_b_c_");
    }

    #[test]
    fn a_camera_owns_only_its_own_topics() {
        let garden = Topics::new("edgevision", "garden");
        let door = Topics::new("edgevision", "door");
        for t in [
            garden.count("dog"),
            garden.zone_count("yard", "dog"),
            garden.snapshot("dog"),
            garden.detect_state(),
        ] {
            assert!(garden.is_camera_topic(&t), "{t}");
            assert!(!door.is_camera_topic(&t), "{t}");
        }
        assert!(!garden.is_camera_topic(&garden.available()));
        assert!(!garden.is_camera_topic(&garden.stats()));
        assert!(!garden.is_camera_topic("edgevision/gardens/dog"));
        assert!(!garden.is_camera_topic("other/garden/dog"));
        // A camera named like the daemon's own topics owns nothing of them.
        let stats = Topics::new("edgevision", "stats");
        assert!(!stats.is_camera_topic("edgevision/stats"));
        assert!(stats.is_camera_topic("edgevision/stats/dog"));
    }
}

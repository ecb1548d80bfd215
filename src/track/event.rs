//! What the tracker tells the world: object events and the objects tracked
//! now, in the JSON shape `/api/events`, `/api/objects`, webhooks and MQTT
//! carry.

use serde::Serialize;

/// An object event's type: its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The track is confirmed: a new object.
    New,
    /// Something about it changed: see [`ObjectEvent::reason`].
    Update,
    /// The object has not been seen for `tracking.max_age` inferences.
    End,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::New => "new",
            EventType::Update => "update",
            EventType::End => "end",
        }
    }

    /// Parses a name as the config writes it.
    pub fn parse(s: &str) -> Option<EventType> {
        match s {
            "new" => Some(EventType::New),
            "update" => Some(EventType::Update),
            "end" => Some(EventType::End),
            _ => None,
        }
    }
}

/// Why an `update` event was sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    ZoneEntered {
        zone: String,
    },
    ZoneLeft {
        zone: String,
    },
    Stationary,
    Moving,
    LineCrossed {
        line: String,
        direction: &'static str,
    },
    /// A higher-scoring picture of it was taken.
    Snapshot,
}

/// A line crossing, kept on the object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    pub line: String,
    /// `forward`: from the left of the line's first->second point to its
    /// right, as seen on the picture; `backward` the other way.
    pub direction: &'static str,
    pub at_ms: u64,
}

/// One tracked object as events and `/api/objects` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectInfo {
    /// Unique within the daemon's run; drawn on the stream beside the label.
    pub id: u64,
    pub label: String,
    /// The best score it has had.
    pub score: f32,
    /// The latest score.
    pub current_score: f32,
    /// `[left, top, right, bottom]` in pixels of the streamed frame.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Zones it is in now.
    pub zones: Vec<String>,
    /// Zones it has been in, in the order it entered them.
    pub entered_zones: Vec<String>,
    pub crossings: Vec<Crossing>,
    pub stationary: bool,
    /// Milliseconds since the Unix epoch of its first sighting.
    pub start_ms: u64,
    /// Of its last sighting, once it has ended.
    pub end_ms: Option<u64>,
    /// Where its best picture is served, once one was taken.
    pub snapshot: Option<String>,
}

/// One event, as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The camera that saw it (set as the event is published).
    pub camera: String,
    /// For `update` events: why.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub object: ObjectInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_reason_beside_the_type() {
        let ev = ObjectEvent {
            camera: String::new(),
            kind: EventType::Update,
            reason: Some(Reason::LineCrossed {
                line: "gate".into(),
                direction: "forward",
            }),
            object: ObjectInfo {
                id: 7,
                label: "dog".into(),
                score: 0.9,
                current_score: 0.8,
                bbox: [1.0, 2.0, 3.0, 4.0],
                zones: vec![],
                entered_zones: vec!["yard".into()],
                crossings: vec![],
                stationary: false,
                start_ms: 10,
                end_ms: None,
                snapshot: None,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "update");
        assert_eq!(v["reason"], "line_crossed");
        assert_eq!(v["line"], "gate");
        assert_eq!(v["direction"], "forward");
        assert_eq!(v["object"]["box"][3], 4.0);
        assert_eq!(v["object"]["end_ms"], serde_json::Value::Null);
        let new = ObjectEvent {
            camera: String::new(),
            kind: EventType::New,
            reason: None,
            ..ev
        };
        let v = serde_json::to_value(&new).unwrap();
        assert!(v.get("reason").is_none(), "{v}");
    }
}

//! `[tracking]`, `[[zone]]`, `[[line]]`, `[events]` and `[[webhook]]`:
//! objects, where they are, and who hears about them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::capture::http::HttpUrl;
use crate::track::geometry::{area2, self_crossing};
use crate::track::snapshots::SnapshotSettings;
use crate::track::webhook::WebhookSettings;
use crate::track::{Anchor, EventType, Line, TrackerSettings, TrackingSettings, Zone};

/// `[tracking]`: how detections become objects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Matched inferences before an object is confirmed. Default 2.
    pub min_hits: u32,
    /// Inferences without a match before an object ends. Default 10.
    pub max_age: u32,
    /// Least overlap (IoU) of a detection with where an object is
    /// expected. Default 0.2.
    pub iou_threshold: f32,
    /// The point of a box that is tested against zones and lines:
    /// `bottom_center` (default), `center`, `top_center`.
    pub anchor: Anchor,
    /// Seconds without moving before an object is stationary. Default 10.
    pub stationary_seconds: f32,
    /// "Not moving": its box overlaps where it stopped by this IoU. Default 0.8.
    pub stationary_iou: f32,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        let t = TrackerSettings::default();
        let s = TrackingSettings::default();
        TrackingConfig {
            min_hits: t.min_hits,
            max_age: t.max_age,
            iou_threshold: t.iou_threshold,
            anchor: s.anchor,
            stationary_seconds: s.stationary_ms as f32 / 1000.0,
            stationary_iou: s.stationary_iou,
        }
    }
}

/// One `[[zone]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// Corners in normalized frame coordinates (0..1, y down), 3 or more.
    pub polygon: Vec<[f32; 2]>,
    /// Only these labels count; all when empty.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Consecutive inferences inside (or outside) before entering (or
    /// leaving) counts. Default 3.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Seconds inside before the object is in the zone. Default 0.
    #[serde(default)]
    pub loiter_seconds: f32,
}

fn default_min_frames() -> u32 {
    3
}

/// One `[[line]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub name: String,
    /// Its two ends, normalized. Crossing from the left of the first ->
    /// second point to its right, as seen on the picture, is `forward`.
    pub points: Vec<[f32; 2]>,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// `[events]`: recent events kept in memory and object pictures on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Ended events `/api/events/recent` keeps. Default 100.
    pub recent: usize,
    /// Directory for each object's best picture; `""` (default): none kept.
    pub snapshot_dir: PathBuf,
    /// Pictures kept at most. Default 1000.
    pub snapshot_max_count: usize,
    /// Pictures older than this many hours are deleted. Default 168 (a week).
    pub snapshot_max_hours: f32,
    /// Megabytes of pictures kept at most. Default 500.
    pub snapshot_max_megabytes: f32,
    /// JPEG quality of the pictures. Default 85.
    pub snapshot_quality: u8,
    /// A better picture of the same object at most this often, seconds. Default 2.
    pub snapshot_interval: f32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            recent: 100,
            snapshot_dir: PathBuf::new(),
            snapshot_max_count: 1000,
            snapshot_max_hours: 168.0,
            snapshot_max_megabytes: 500.0,
            snapshot_quality: 85,
            snapshot_interval: 2.0,
        }
    }
}

/// One `[[webhook]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host[:port]/path`; `user:pass@` sends basic auth.
    pub url: String,
    /// Event types sent: any of "new", "update", "end"; all when empty.
    #[serde(default)]
    pub events: Vec<String>,
    /// Sent as `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub token: Option<String>,
    /// Events waiting at most while the receiver is away. Default 1000.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Seconds for one POST. Default 5.
    #[serde(default = "default_timeout")]
    pub timeout: f32,
}

fn default_queue() -> usize {
    1000
}

fn default_timeout() -> f32 {
    5.0
}

type Invalid = (String, String);

fn bad<T>(key: String, msg: impl Into<String>) -> Result<T, Invalid> {
    Err((key, msg.into()))
}

/// Names become metric labels and MQTT topic levels: keep them plain.
fn check_name(key: String, name: &str, seen: &mut Vec<String>) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > 64 {
        return bad(key, "must be 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad(key, format!("{name:?}: use letters, digits, '_' and '-' only"));
    }
    if seen.iter().any(|s| s == name) {
        return bad(key, format!("{name:?} is used twice"));
    }
    seen.push(name.to_string());
    Ok(())
}

fn check_point(key: String, p: [f32; 2]) -> Result<(), Invalid> {
    if p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
        Ok(())
    } else {
        bad(
            key,
            format!(
                "[{}, {}] is outside the frame: coordinates are fractions of the width and height, 0 to 1",
                p[0], p[1]
            ),
        )
    }
}

fn check_range(key: &str, v: f32, lo: f32, hi: f32, unit: &str) -> Result<(), Invalid> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        bad(
            key.to_string(),
            format!("must be between {lo} and {hi}{unit}, not {v}"),
        )
    }
}

fn check_count(key: String, v: u64, lo: u64, hi: u64) -> Result<(), Invalid> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        bad(key, format!("must be between {lo} and {hi}, not {v}"))
    }
}

/// Checks the tracking, zone, line, events and webhook keys.
pub(crate) fn validate(
    t: &TrackingConfig,
    zones: &[ZoneConfig],
    lines: &[LineConfig],
    ev: &EventsConfig,
    hooks: &[WebhookConfig],
) -> Result<(), Invalid> {
    check_count("tracking.min_hits".into(), t.min_hits.into(), 1, 100)?;
    check_count("tracking.max_age".into(), t.max_age.into(), 1, 10_000)?;
    check_range("tracking.iou_threshold", t.iou_threshold, 0.01, 1.0, "")?;
    check_range(
        "tracking.stationary_seconds",
        t.stationary_seconds,
        0.1,
        86_400.0,
        " seconds",
    )?;
    check_range("tracking.stationary_iou", t.stationary_iou, 0.01, 1.0, "")?;

    let mut names = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let k = |f: &str| format!("zone[{i}].{f}");
        check_name(k("name"), &z.name, &mut names)?;
        if z.polygon.len() < 3 {
            return bad(
                k("polygon"),
                format!("has {} points; a zone needs 3 or more", z.polygon.len()),
            );
        }
        for (j, p) in z.polygon.iter().enumerate() {
            check_point(format!("zone[{i}].polygon[{j}]"), *p)?;
        }
        if let Some((a, b)) = self_crossing(&z.polygon) {
            return bad(
                k("polygon"),
                format!("crosses itself: the edge from point {a} and the edge from point {b} intersect (points count from 0)"),
            );
        }
        if area2(&z.polygon) < 1e-6 {
            return bad(k("polygon"), "has no area (its points are on one line)");
        }
        check_count(k("min_frames"), z.min_frames.into(), 1, 1000)?;
        check_range(&k("loiter_seconds"), z.loiter_seconds, 0.0, 86_400.0, " seconds")?;
    }
    let mut names = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let k = |f: &str| format!("line[{i}].{f}");
        check_name(k("name"), &l.name, &mut names)?;
        if l.points.len() != 2 {
            return bad(
                k("points"),
                format!("has {} points; a line has exactly 2", l.points.len()),
            );
        }
        for (j, p) in l.points.iter().enumerate() {
            check_point(format!("line[{i}].points[{j}]"), *p)?;
        }
        if l.points[0] == l.points[1] {
            return bad(k("points"), "both ends are the same point");
        }
    }

    check_count("events.recent".into(), ev.recent as u64, 1, 100_000)?;
    check_count(
        "events.snapshot_max_count".into(),
        ev.snapshot_max_count as u64,
        1,
        10_000_000,
    )?;
    check_range(
        "events.snapshot_max_hours",
        ev.snapshot_max_hours,
        0.01,
        87_600.0,
        " hours",
    )?;
    check_range(
        "events.snapshot_max_megabytes",
        ev.snapshot_max_megabytes,
        1.0,
        10_000_000.0,
        " MB",
    )?;
    check_count(
        "events.snapshot_quality".into(),
        ev.snapshot_quality.into(),
        1,
        100,
    )?;
    check_range(
        "events.snapshot_interval",
        ev.snapshot_interval,
        0.0,
        3600.0,
        " seconds",
    )?;

    for (i, w) in hooks.iter().enumerate() {
        let k = |f: &str| format!("webhook[{i}].{f}");
        if w.url.starts_with("https://") {
            return bad(
                k("url"),
                "https:// receivers are not supported: use http:// on a trusted network, or a local relay",
            );
        }
        if let Err(e) = HttpUrl::parse(&w.url) {
            return bad(k("url"), format!("{}: {e}", crate::capture::http::redact(&w.url)));
        }
        for (j, e) in w.events.iter().enumerate() {
            if EventType::parse(e).is_none() {
                return bad(
                    format!("webhook[{i}].events[{j}]"),
                    format!("unknown event type {e:?} (expected one of: new, update, end)"),
                );
            }
        }
        if w.token
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.contains(['\r', '\n']))
        {
            return bad(k("token"), "must not be empty or contain line breaks");
        }
        check_count(k("queue"), w.queue as u64, 1, 1_000_000)?;
        check_range(&k("timeout"), w.timeout, 0.1, 300.0, " seconds")?;
    }
    Ok(())
}

/// The runtime settings of validated config tables.
pub(crate) fn tracking_settings(
    t: &TrackingConfig,
    zones: &[ZoneConfig],
    lines: &[LineConfig],
    ev: &EventsConfig,
) -> TrackingSettings {
    TrackingSettings {
        tracker: TrackerSettings {
            min_hits: t.min_hits,
            max_age: t.max_age,
            iou_threshold: t.iou_threshold,
        },
        anchor: t.anchor,
        stationary_ms: (t.stationary_seconds * 1000.0) as u64,
        stationary_iou: t.stationary_iou,
        zones: zones
            .iter()
            .map(|z| Zone {
                name: z.name.clone(),
                polygon: z.polygon.clone(),
                labels: z.labels.clone(),
                min_frames: z.min_frames,
                loiter_ms: (z.loiter_seconds * 1000.0) as u64,
            })
            .collect(),
        lines: lines
            .iter()
            .map(|l| Line {
                name: l.name.clone(),
                a: l.points[0],
                b: l.points[1],
                labels: l.labels.clone(),
            })
            .collect(),
        snapshots: !ev.snapshot_dir.as_os_str().is_empty(),
        snapshot_interval_ms: (ev.snapshot_interval * 1000.0) as u64,
    }
}

pub(crate) fn snapshot_settings(ev: &EventsConfig) -> Option<SnapshotSettings> {
    (!ev.snapshot_dir.as_os_str().is_empty()).then(|| SnapshotSettings {
        dir: ev.snapshot_dir.clone(),
        max_count: ev.snapshot_max_count,
        max_age: Duration::from_secs_f32(ev.snapshot_max_hours * 3600.0),
        max_bytes: (ev.snapshot_max_megabytes as f64 * 1e6) as u64,
        quality: ev.snapshot_quality,
    })
}

pub(crate) fn webhook_settings(hooks: &[WebhookConfig]) -> Vec<WebhookSettings> {
    hooks
        .iter()
        .filter_map(|w| {
            Some(WebhookSettings {
                url: HttpUrl::parse(&w.url).ok()?,
                events: w.events.iter().filter_map(|e| EventType::parse(e)).collect(),
                token: w.token.clone(),
                queue: w.queue,
                timeout: Duration::from_secs_f32(w.timeout),
            })
        })
        .collect()
}

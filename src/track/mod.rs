//! Objects, not frames: each inference's detections become tracked objects
//! with stable ids ([`tracker`]), which enter and leave zones and cross
//! lines ([`zones`]), stand still ([`ObjectTracker`]'s stationary check),
//! and end; every change is an [`ObjectEvent`]. Snapshots and webhooks
//! take the events off the hot path ([`snapshots`], [`webhook`]).

pub mod bus;
pub mod event;
pub mod geometry;
pub mod snapshots;
pub mod tracker;
pub mod webhook;
pub mod zones;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use event::{Crossing, EventType, ObjectEvent, ObjectInfo, Reason};
pub use tracker::{Observation, TrackerSettings};
pub use zones::{Anchor, Line, Zone};

use crate::infer::{BBox, Detection};
use tracker::Motion;
use zones::{LineState, ZoneChange, ZoneState};

/// Crossings kept on an object (the newest): someone pacing at a line for
/// hours must not make every event bigger.
const MAX_CROSSINGS: usize = 16;

/// Everything the tracking stage is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingSettings {
    pub tracker: TrackerSettings,
    pub anchor: Anchor,
    /// Still this long (its box overlapping where it stopped by at least
    /// `stationary_iou`): stationary, no more snapshot updates.
    pub stationary_ms: u64,
    pub stationary_iou: f32,
    pub zones: Vec<Zone>,
    pub lines: Vec<Line>,
    /// Whether best pictures are taken ([`snapshots`]).
    pub snapshots: bool,
    /// At most one better picture of an object this often.
    pub snapshot_interval_ms: u64,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        TrackingSettings {
            tracker: TrackerSettings::default(),
            anchor: Anchor::default(),
            stationary_ms: 10_000,
            stationary_iou: 0.8,
            zones: Vec::new(),
            lines: Vec::new(),
            snapshots: false,
            snapshot_interval_ms: 2000,
        }
    }
}

/// A better picture of an object is wanted: the frame this update came
/// from, with this box drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRequest {
    pub id: u64,
    pub label: String,
    pub score: f32,
    /// In pixels of the streamed frame.
    pub bbox: [f32; 4],
    pub start_ms: u64,
}

/// What one update produced; reused from frame to frame.
#[derive(Debug, Default)]
pub struct TrackOutput {
    pub events: Vec<ObjectEvent>,
    /// Per detection, the id of the confirmed object it is.
    pub ids: Vec<Option<u64>>,
    pub snapshots: Vec<SnapshotRequest>,
    /// (line, label, direction) for each crossing.
    pub crossings: Vec<(String, String, &'static str)>,
}

impl TrackOutput {
    fn clear(&mut self) {
        self.events.clear();
        self.ids.clear();
        self.snapshots.clear();
        self.crossings.clear();
    }
}

#[derive(Debug, Clone)]
struct Track {
    /// 0 until confirmed.
    id: u64,
    label: String,
    motion: Motion,
    best_score: f32,
    score: f32,
    start_ms: u64,
    zone_states: Vec<ZoneState>,
    line_states: Vec<LineState>,
    entered: Vec<String>,
    crossings: Vec<Crossing>,
    still_box: BBox,
    still_since_ms: u64,
    stationary: bool,
    /// Score of the last picture taken and when; `None`: none yet.
    snapshot: Option<(f32, u64)>,
}

/// The tracker with zones, lines and the stationary check, for one camera.
pub struct ObjectTracker {
    settings: TrackingSettings,
    tracks: Vec<Track>,
    next_id: Arc<AtomicU64>,
    /// Size of the streamed frame, for boxes in events.
    frame: (f32, f32),
    // Scratch, reused.
    observations: Vec<Observation>,
    pairs: Vec<(usize, usize)>,
    /// Labels and (zone, label) pairs counted so far, so their gauges go
    /// back to 0 rather than vanish.
    seen_labels: BTreeMap<String, i64>,
    seen_zone_labels: BTreeMap<(String, String), i64>,
}

impl ObjectTracker {
    /// `next_id` hands out object ids; shared across restarts of the
    /// pipeline so ids never repeat within a run.
    pub fn new(settings: TrackingSettings, next_id: Arc<AtomicU64>) -> Self {
        ObjectTracker {
            settings,
            tracks: Vec::new(),
            next_id,
            frame: (1.0, 1.0),
            observations: Vec::new(),
            pairs: Vec::new(),
            seen_labels: BTreeMap::new(),
            seen_zone_labels: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &TrackingSettings {
        &self.settings
    }

    /// New settings from the next update; tracks are kept, their zone and
    /// line states start again when the zones or lines changed.
    pub fn set_settings(&mut self, settings: TrackingSettings) {
        // A zone or line that is unchanged keeps each object's state in it
        // (no events fire again); new or changed ones start afresh.
        let zone_from: Vec<Option<usize>> = settings
            .zones
            .iter()
            .map(|z| self.settings.zones.iter().position(|o| o == z))
            .collect();
        let line_from: Vec<Option<usize>> = settings
            .lines
            .iter()
            .map(|l| self.settings.lines.iter().position(|o| o == l))
            .collect();
        for t in &mut self.tracks {
            t.zone_states = zone_from
                .iter()
                .map(|i| i.and_then(|i| t.zone_states.get(i).cloned()).unwrap_or_default())
                .collect();
            t.line_states = line_from
                .iter()
                .map(|i| i.and_then(|i| t.line_states.get(i).cloned()).unwrap_or_default())
                .collect();
        }
        // Zones that are gone stop being counted (their gauges read 0).
        let names: Vec<&str> = settings.zones.iter().map(|z| z.name.as_str()).collect();
        for ((zone, _), v) in self.seen_zone_labels.iter_mut() {
            if !names.contains(&zone.as_str()) {
                *v = 0;
            }
        }
        self.settings = settings;
    }

    /// Takes one inference's detections (`dets` in pixels of a `size`
    /// frame; the stream is `stream` pixels) made at `now_ms`.
    pub fn update(
        &mut self,
        dets: &[Detection],
        size: (u32, u32),
        stream: (u32, u32),
        now_ms: u64,
        out: &mut TrackOutput,
    ) {
        out.clear();
        self.frame = (stream.0.max(1) as f32, stream.1.max(1) as f32);
        let (w, h) = (size.0.max(1) as f32, size.1.max(1) as f32);
        self.observations.clear();
        self.observations.extend(dets.iter().map(|d| Observation {
            label: d.label.clone(),
            score: d.score,
            bbox: BBox {
                left: d.bbox.left / w,
                top: d.bbox.top / h,
                right: d.bbox.right / w,
                bottom: d.bbox.bottom / h,
            },
        }));
        let predicted: Vec<(&str, BBox)> = self
            .tracks
            .iter()
            .map(|t| (t.label.as_str(), t.motion.predict(now_ms)))
            .collect();
        tracker::associate(
            &predicted,
            &self.observations,
            self.settings.tracker.iou_threshold,
            &mut self.pairs,
        );
        out.ids.resize(dets.len(), None);

        let mut matched = vec![false; self.tracks.len()];
        let pairs = std::mem::take(&mut self.pairs);
        for &(ti, di) in &pairs {
            matched[ti] = true;
            let o = self.observations[di].clone();
            self.observe(ti, &o, now_ms, out);
            let id = self.tracks[ti].id;
            out.ids[di] = (id != 0).then_some(id);
        }
        self.pairs = pairs;

        // Detections nobody claimed start tentative tracks.
        let mut claimed = vec![false; dets.len()];
        for &(_, di) in &self.pairs {
            claimed[di] = true;
        }
        for (di, o) in self.observations.clone().into_iter().enumerate() {
            if claimed[di] {
                continue;
            }
            let t = Track {
                id: 0,
                label: o.label.clone(),
                motion: Motion::new(o.bbox, now_ms),
                best_score: o.score,
                score: o.score,
                start_ms: now_ms,
                zone_states: vec![ZoneState::default(); self.settings.zones.len()],
                line_states: vec![LineState::default(); self.settings.lines.len()],
                entered: Vec::new(),
                crossings: Vec::new(),
                still_box: o.bbox,
                still_since_ms: now_ms,
                stationary: false,
                snapshot: None,
            };
            self.tracks.push(t);
            matched.push(true);
            let ti = self.tracks.len() - 1;
            self.track_places(ti, now_ms, out);
            if self.settings.tracker.min_hits <= 1 {
                self.confirm(ti, now_ms, out);
            }
            let id = self.tracks[ti].id;
            out.ids[di] = (id != 0).then_some(id);
        }

        // Unmatched tracks age; old ones end (tentative ones sooner).
        let max_age = self.settings.tracker.max_age;
        let mut i = 0;
        let mut mi = 0;
        while i < self.tracks.len() {
            let was_matched = matched[mi];
            mi += 1;
            if !was_matched {
                let t = &mut self.tracks[i];
                t.motion.misses += 1;
                let limit = if t.id == 0 { 1 } else { max_age };
                if t.motion.misses > limit {
                    let t = self.tracks.remove(i);
                    self.end(&t, out);
                    continue;
                }
            }
            i += 1;
        }
        self.count_objects();
    }

    /// Ends every confirmed object now (the pipeline is stopping).
    pub fn finish(&mut self, out: &mut TrackOutput) {
        out.clear();
        for t in std::mem::take(&mut self.tracks) {
            self.end(&t, out);
        }
        self.count_objects();
    }

    /// The `end` event of a track that is gone, if it was ever confirmed.
    fn end(&self, t: &Track, out: &mut TrackOutput) {
        if t.id == 0 {
            return;
        }
        let mut info = self.info(t);
        info.end_ms = Some(t.motion.last_ms);
        info.zones.clear();
        out.events.push(ObjectEvent {
            camera: String::new(),
            kind: EventType::End,
            reason: None,
            object: info,
        });
    }

    /// The confirmed objects now.
    pub fn objects(&self) -> Vec<ObjectInfo> {
        self.tracks
            .iter()
            .filter(|t| t.id != 0)
            .map(|t| self.info(t))
            .collect()
    }

    /// Confirmed objects per label, every label seen so far included (0).
    pub fn label_counts(&self) -> &BTreeMap<String, i64> {
        &self.seen_labels
    }

    /// Confirmed objects in each zone per label, every pair seen so far
    /// included.
    pub fn zone_counts(&self) -> &BTreeMap<(String, String), i64> {
        &self.seen_zone_labels
    }

    fn count_objects(&mut self) {
        for v in self.seen_labels.values_mut() {
            *v = 0;
        }
        for v in self.seen_zone_labels.values_mut() {
            *v = 0;
        }
        for t in self.tracks.iter().filter(|t| t.id != 0) {
            *self.seen_labels.entry(t.label.clone()).or_default() += 1;
            for (z, s) in self.settings.zones.iter().zip(&t.zone_states) {
                if s.counted {
                    *self
                        .seen_zone_labels
                        .entry((z.name.clone(), t.label.clone()))
                        .or_default() += 1;
                }
            }
        }
    }

    fn info(&self, t: &Track) -> ObjectInfo {
        let (fw, fh) = self.frame;
        let r1 = |v: f32| (v * 10.0).round() / 10.0;
        let b = &t.motion.bbox;
        ObjectInfo {
            id: t.id,
            label: t.label.clone(),
            score: (t.best_score * 1e4).round() / 1e4,
            current_score: (t.score * 1e4).round() / 1e4,
            bbox: [
                r1(b.left * fw),
                r1(b.top * fh),
                r1(b.right * fw),
                r1(b.bottom * fh),
            ],
            zones: self
                .settings
                .zones
                .iter()
                .zip(&t.zone_states)
                .filter(|(_, s)| s.counted)
                .map(|(z, _)| z.name.clone())
                .collect(),
            entered_zones: t.entered.clone(),
            crossings: t.crossings.clone(),
            stationary: t.stationary,
            start_ms: t.start_ms,
            end_ms: None,
            snapshot: t
                .snapshot
                .is_some()
                .then(|| format!("/api/events/{}/snapshot.jpg", t.id)),
        }
    }

    fn update_event(&self, ti: usize, reason: Reason, out: &mut TrackOutput) {
        let t = &self.tracks[ti];
        if t.id != 0 {
            out.events.push(ObjectEvent {
                camera: String::new(),
                kind: EventType::Update,
                reason: Some(reason),
                object: self.info(t),
            });
        }
    }

    /// A matched detection for track `ti`.
    fn observe(&mut self, ti: usize, o: &Observation, now_ms: u64, out: &mut TrackOutput) {
        {
            let t = &mut self.tracks[ti];
            t.motion.update(o.bbox, now_ms);
            t.score = o.score;
            t.best_score = t.best_score.max(o.score);
        }
        if self.tracks[ti].id == 0 && self.tracks[ti].motion.hits >= self.settings.tracker.min_hits {
            self.track_places(ti, now_ms, out);
            self.confirm(ti, now_ms, out);
            return;
        }
        self.track_places(ti, now_ms, out);
        if self.tracks[ti].id == 0 {
            return;
        }
        // Stationary: still overlapping where it stopped.
        let (iou, since, was) = {
            let t = &self.tracks[ti];
            (t.still_box.iou(&o.bbox), t.still_since_ms, t.stationary)
        };
        if iou < self.settings.stationary_iou {
            let t = &mut self.tracks[ti];
            t.still_box = o.bbox;
            t.still_since_ms = now_ms;
            if was {
                t.stationary = false;
                self.update_event(ti, Reason::Moving, out);
            }
        } else if !was && now_ms.saturating_sub(since) >= self.settings.stationary_ms {
            self.tracks[ti].stationary = true;
            self.update_event(ti, Reason::Stationary, out);
        }
        // A better picture, at most every snapshot_interval_ms, not of
        // things standing still.
        let t = &self.tracks[ti];
        if self.settings.snapshots && !t.stationary {
            let better = match t.snapshot {
                None => true,
                Some((score, at)) => {
                    o.score > score + 0.02 && now_ms.saturating_sub(at) >= self.settings.snapshot_interval_ms
                }
            };
            if better {
                let had = t.snapshot.is_some();
                self.take_snapshot(ti, o.score, now_ms, out);
                if had {
                    self.update_event(ti, Reason::Snapshot, out);
                }
            }
        }
    }

    fn take_snapshot(&mut self, ti: usize, score: f32, now_ms: u64, out: &mut TrackOutput) {
        let info = self.info(&self.tracks[ti]);
        self.tracks[ti].snapshot = Some((score, now_ms));
        out.snapshots.push(SnapshotRequest {
            id: info.id,
            label: info.label,
            score,
            bbox: info.bbox,
            start_ms: info.start_ms,
        });
    }

    fn confirm(&mut self, ti: usize, now_ms: u64, out: &mut TrackOutput) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.tracks[ti].id = id;
        let score = self.tracks[ti].score;
        if self.settings.snapshots {
            self.take_snapshot(ti, score, now_ms, out);
        }
        out.events.push(ObjectEvent {
            camera: String::new(),
            kind: EventType::New,
            reason: None,
            object: self.info(&self.tracks[ti]),
        });
        // Crossings seen while it was tentative count now.
        self.track_lines(ti, now_ms, out);
    }

    /// Zones and lines for the track's current box.
    fn track_places(&mut self, ti: usize, now_ms: u64, out: &mut TrackOutput) {
        let anchor = self.settings.anchor.of(&self.tracks[ti].motion.bbox);
        let label = self.tracks[ti].label.clone();
        for zi in 0..self.settings.zones.len() {
            let zone = &self.settings.zones[zi];
            let change = self.tracks[ti].zone_states[zi].observe(zone, &label, anchor, now_ms);
            let name = zone.name.clone();
            match change {
                Some(ZoneChange::Entered) => {
                    let t = &mut self.tracks[ti];
                    if !t.entered.contains(&name) {
                        t.entered.push(name.clone());
                    }
                    self.update_event(ti, Reason::ZoneEntered { zone: name }, out);
                }
                Some(ZoneChange::Left) => self.update_event(ti, Reason::ZoneLeft { zone: name }, out),
                None => {}
            }
        }
        if self.tracks[ti].id != 0 {
            self.track_lines(ti, now_ms, out);
        } else {
            for li in 0..self.settings.lines.len() {
                let line = &self.settings.lines[li];
                self.tracks[ti].line_states[li].observe(line, &label, anchor, false);
            }
        }
    }

    fn track_lines(&mut self, ti: usize, now_ms: u64, out: &mut TrackOutput) {
        let anchor = self.settings.anchor.of(&self.tracks[ti].motion.bbox);
        let label = self.tracks[ti].label.clone();
        for li in 0..self.settings.lines.len() {
            let line = &self.settings.lines[li];
            if let Some(direction) = self.tracks[ti].line_states[li].observe(line, &label, anchor, true) {
                let name = line.name.clone();
                let t = &mut self.tracks[ti];
                if t.crossings.len() >= MAX_CROSSINGS {
                    t.crossings.remove(0);
                }
                self.tracks[ti].crossings.push(Crossing {
                    line: name.clone(),
                    direction,
                    at_ms: now_ms,
                });
                out.crossings.push((name.clone(), label.clone(), direction));
                self.update_event(
                    ti,
                    Reason::LineCrossed {
                        line: name,
                        direction,
                    },
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Where object events go once made: live subscribers (`/api/events`),
//! the recent-events list, the objects tracked now, the picture writer and
//! the webhooks. Lives in the hub, so it outlasts a pipeline restart:
//! ids never repeat and queued webhook events survive a reload.

use std::collections::{BTreeMap, VecDeque};

/// Objects per label, and per (zone, label).
pub type Counts = (BTreeMap<String, i64>, BTreeMap<(String, String), i64>);
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::snapshots::{SnapshotIndex, SnapshotSettings, SnapshotWriter};
use super::webhook::{Webhook, WebhookSettings};
use super::{EventType, ObjectEvent, ObjectInfo, SnapshotRequest};
use crate::metrics::CameraMetrics as Metrics;

/// Events a live subscriber may fall behind by before it skips some.
const LIVE_BACKLOG: usize = 256;

#[derive(Default)]
struct Sinks {
    snapshots: Option<SnapshotWriter>,
    webhooks: Vec<Webhook>,
}

pub struct EventBus {
    next_id: Arc<AtomicU64>,
    live: broadcast::Sender<Arc<ObjectEvent>>,
    objects: Mutex<Arc<Vec<ObjectInfo>>>,
    recent: Mutex<VecDeque<Arc<ObjectEvent>>>,
    recent_limit: AtomicUsize,
    /// Zones and lines as `/api/objects` shows them (the page draws them).
    geometry: Mutex<Arc<serde_json::Value>>,
    /// Objects per label, and per zone and label, now.
    counts: Mutex<Arc<Counts>>,
    /// Object id -> its picture on disk.
    pub snapshots: SnapshotIndex,
    sinks: Mutex<Sinks>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::with_ids(Arc::new(AtomicU64::new(0)))
    }
}

impl EventBus {
    /// A bus whose objects draw their ids from `ids`: cameras sharing one
    /// counter never give two objects the same id.
    pub fn with_ids(ids: Arc<AtomicU64>) -> Self {
        EventBus {
            next_id: ids,
            live: broadcast::channel(LIVE_BACKLOG).0,
            objects: Mutex::new(Arc::new(Vec::new())),
            recent: Mutex::new(VecDeque::new()),
            recent_limit: AtomicUsize::new(100),
            counts: Mutex::new(Arc::new(Default::default())),
            geometry: Mutex::new(Arc::new(serde_json::json!({ "zones": [], "lines": [] }))),
            snapshots: SnapshotIndex::default(),
            sinks: Mutex::new(Sinks::default()),
        }
    }

    /// The id counter trackers draw from.
    pub fn id_counter(&self) -> Arc<AtomicU64> {
        self.next_id.clone()
    }

    /// Applies `[events]` and `[[webhook]]`: writers and senders whose
    /// settings are unchanged keep running (and their queues).
    pub fn configure(
        &self,
        snapshots: Option<SnapshotSettings>,
        webhooks: &[WebhookSettings],
        recent: usize,
        metrics: &Arc<Metrics>,
    ) {
        self.recent_limit.store(recent.max(1), Ordering::Relaxed);
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            while r.len() > recent.max(1) {
                r.pop_front();
            }
        }
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        // Replaced writers and senders are stopped after the lock is
        // released: their threads may take a moment to finish, and the
        // workers publish through this lock.
        let mut old_writer = None;
        let same = sinks.snapshots.as_ref().map(|w| w.settings()) == snapshots.as_ref();
        if !same {
            old_writer = sinks.snapshots.take();
            if let Some(s) = snapshots {
                match SnapshotWriter::start(s, self.snapshots.clone(), metrics.clone()) {
                    Ok(w) => sinks.snapshots = Some(w),
                    Err(e) => tracing::error!("cannot start the snapshot writer: {e}"),
                }
            }
        }
        let mut old = std::mem::take(&mut sinks.webhooks);
        for s in webhooks {
            if let Some(i) = old.iter().position(|w| w.settings() == s) {
                sinks.webhooks.push(old.remove(i));
                continue;
            }
            match Webhook::start(s.clone(), metrics) {
                Ok(w) => sinks.webhooks.push(w),
                Err(e) => tracing::error!("cannot start the webhook sender for {}: {e}", s.url),
            }
        }
        drop(sinks);
        drop(old_writer);
        drop(old);
    }

    /// Publishes events: metrics, live subscribers, the recent list (ended
    /// objects) and the webhooks. Never blocks on a client.
    pub fn publish(&self, events: &[ObjectEvent], metrics: &Metrics) {
        if events.is_empty() {
            return;
        }
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        for ev in events {
            let mut ev = ev.clone();
            ev.camera.clone_from(&metrics.camera);
            let ev = Arc::new(ev);
            metrics.object_event(ev.kind.as_str(), &ev.object.label).inc();
            if ev.kind == EventType::End {
                let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if r.len() >= self.recent_limit.load(Ordering::Relaxed) {
                    r.pop_front();
                }
                r.push_back(ev.clone());
            }
            for w in &sinks.webhooks {
                w.push(&ev);
            }
            // No subscriber is not an error.
            let _ = self.live.send(ev);
        }
    }

    /// Queues a picture of an object if pictures are kept.
    pub fn submit_snapshot(&self, req: &SnapshotRequest, rgb: &[u8], width: u32, height: u32) {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &sinks.snapshots {
            w.submit(req, rgb, width, height);
        }
    }

    /// Records the object counts (every label and pair seen, 0 included).
    pub fn set_counts(&self, labels: &BTreeMap<String, i64>, zones: &BTreeMap<(String, String), i64>) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 != *labels || c.1 != *zones {
            *c = Arc::new((labels.clone(), zones.clone()));
        }
    }

    /// Objects per label, and per (zone, label), now.
    pub fn counts(&self) -> Arc<Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The newest picture of each label: (label, sequence number, file).
    pub fn latest_pictures(&self) -> Vec<(String, u64, std::path::PathBuf)> {
        let p = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        p.latest
            .iter()
            .map(|(l, (seq, path))| (l.clone(), *seq, path.clone()))
            .collect()
    }

    /// Records the zones and lines in use.
    pub fn set_geometry(&self, zones: &[super::Zone], lines: &[super::Line]) {
        let zones: Vec<_> = zones
            .iter()
            .map(|z| serde_json::json!({ "name": z.name, "polygon": z.polygon, "labels": z.labels }))
            .collect();
        let lines: Vec<_> = lines
            .iter()
            .map(|l| serde_json::json!({ "name": l.name, "points": [l.a, l.b], "labels": l.labels }))
            .collect();
        *self.geometry.lock().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(serde_json::json!({ "zones": zones, "lines": lines }));
    }

    /// `{"zones": [{name, polygon, labels}], "lines": [{name, points, labels}]}`.
    pub fn geometry(&self) -> Arc<serde_json::Value> {
        self.geometry.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ObjectEvent>> {
        self.live.subscribe()
    }

    pub fn set_objects(&self, objects: Vec<ObjectInfo>) {
        *self.objects.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(objects);
    }

    /// The objects tracked now.
    pub fn objects(&self) -> Arc<Vec<ObjectInfo>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The newest `limit` ended events, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<ObjectEvent>> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().take(limit).cloned().collect()
    }
}

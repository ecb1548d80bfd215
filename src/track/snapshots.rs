//! Best pictures of objects, written off the hot path: the worker hands a
//! copy of the frame to a bounded queue (full: dropped and counted), and
//! one thread draws the box, encodes, writes and enforces retention. A
//! full or read-only disk is a warning and a counter, never a stall.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;

use super::SnapshotRequest;
use crate::infer::{BBox, Detection};
use crate::metrics::CameraMetrics as Metrics;

/// Where and how many pictures are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSettings {
    pub dir: PathBuf,
    /// Pictures kept at most (oldest deleted first).
    pub max_count: usize,
    /// Pictures older than this are deleted.
    pub max_age: Duration,
    /// Bytes of pictures kept at most.
    pub max_bytes: u64,
    pub quality: u8,
}

/// Pictures waiting for the writer at most; more are dropped.
const QUEUE: usize = 4;
/// A failing disk is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The pictures on disk.
#[derive(Debug, Default)]
pub struct Pictures {
    /// Object id -> its picture, for `/api/events/{id}/snapshot.jpg`.
    pub by_id: BTreeMap<u64, PathBuf>,
    /// Label -> (sequence number, its newest picture), for MQTT.
    pub latest: BTreeMap<String, (u64, PathBuf)>,
    seq: u64,
}

pub type SnapshotIndex = Arc<Mutex<Pictures>>;

struct Job {
    req: SnapshotRequest,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
}

/// The writer thread and its queue.
pub struct SnapshotWriter {
    tx: Option<SyncSender<Job>>,
    /// Pictures queued and not yet written: a full queue is known before
    /// the frame is copied.
    pending: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    settings: SnapshotSettings,
    metrics: Arc<Metrics>,
}

impl SnapshotWriter {
    /// Starts the writer; the directory is made if it is missing (a failure
    /// is a warning: it may appear later).
    pub fn start(
        settings: SnapshotSettings,
        index: SnapshotIndex,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(&settings.dir) {
            tracing::warn!(
                "events.snapshot_dir {}: {e}; pictures are not kept until it can be written",
                settings.dir.display()
            );
        }
        let (tx, rx) = sync_channel(QUEUE);
        let s = settings.clone();
        let m = metrics.clone();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = pending.clone();
        let thread = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || write_loop(rx, s, index, m, p))?;
        Ok(SnapshotWriter {
            tx: Some(tx),
            pending,
            thread: Some(thread),
            settings,
            metrics,
        })
    }

    pub fn settings(&self) -> &SnapshotSettings {
        &self.settings
    }

    /// Queues a picture of `rgb` (copied); never blocks.
    pub fn submit(&self, req: &SnapshotRequest, rgb: &[u8], width: u32, height: u32) {
        use std::sync::atomic::Ordering;
        let Some(tx) = &self.tx else { return };
        if self.pending.load(Ordering::SeqCst) >= QUEUE {
            self.metrics.snapshots_dropped.inc();
            return;
        }
        let job = Job {
            req: req.clone(),
            rgb: rgb.to_vec(),
            width,
            height,
        };
        match tx.try_send(job) {
            Ok(()) => {
                self.pending.fetch_add(1, Ordering::SeqCst);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.snapshots_dropped.inc();
            }
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    rx: Receiver<Job>,
    s: SnapshotSettings,
    index: SnapshotIndex,
    metrics: Arc<Metrics>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut encoder = match crate::pipeline::encode::JpegEncoder::new(s.quality) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("snapshots: cannot start the JPEG encoder: {e}");
            return;
        }
    };
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: String| {
        metrics.snapshot_errors.inc();
        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            tracing::warn!("snapshots: {what} (repeats are not logged for a minute)");
        }
    };
    while let Ok(job) = rx.recv() {
        // Taken off the queue: room for one more.
        let _ = pending.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        let Some(mut img) = RgbImage::from_raw(job.width, job.height, job.rgb) else {
            continue;
        };
        let b = job.req.bbox;
        let det = Detection {
            label: job.req.label.clone(),
            class_id: 0,
            score: job.req.score,
            bbox: BBox {
                left: b[0],
                top: b[1],
                right: b[2],
                bottom: b[3],
            },
        };
        let style = crate::annotate::AnnotateStyle::for_size(job.width, job.height);
        crate::annotate::draw_objects(&mut img, std::slice::from_ref(&det), &[Some(job.req.id)], &style);
        let jpeg = match encoder.encode(img.as_raw(), job.width, job.height) {
            Ok(j) => j,
            Err(e) => {
                warn(format!("cannot encode: {e}"));
                continue;
            }
        };
        let path = s.dir.join(file_name(&job.req));
        match write_atomically(&path, jpeg) {
            Ok(()) => {
                metrics.snapshots_written.inc();
                let mut p = index.lock().unwrap_or_else(|e| e.into_inner());
                p.seq += 1;
                let seq = p.seq;
                p.latest.insert(job.req.label.clone(), (seq, path.clone()));
                p.by_id.insert(job.req.id, path);
            }
            Err(e) => warn(format!("cannot write {}: {e}", path.display())),
        }
        if let Err(e) = enforce_retention(&s, &index) {
            warn(format!("cannot apply retention in {}: {e}", s.dir.display()));
        }
    }
}

/// `START_MS-ID-LABEL.jpg`: sorts by time, one file per object (a better
/// picture replaces the earlier one).
fn file_name(r: &SnapshotRequest) -> String {
    let label: String = r
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}-{}-{label}.jpg", r.start_ms, r.id)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("jpg.tmp");
    std::fs::write(&tmp, bytes).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path)
}

/// Whether a file name is one of ours (`DIGITS-DIGITS-LABEL.jpg`): nothing
/// else in the directory is ever deleted.
fn ours(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".jpg")?;
    let mut parts = stem.splitn(3, '-');
    let start = parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    if start.is_empty() || !start.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Deletes the oldest pictures beyond the count, the bytes, and the age.
pub fn enforce_retention(s: &SnapshotSettings, index: &SnapshotIndex) -> std::io::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&s.dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(ours) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        files.push((modified, meta.len(), id, entry.path()));
    }
    // Newest first: keep from the front.
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let now = SystemTime::now();
    let (mut count, mut bytes) = (0usize, 0u64);
    let mut failed: Option<std::io::Error> = None;
    for (modified, len, id, path) in files {
        let old = now.duration_since(modified).unwrap_or_default() > s.max_age;
        if count < s.max_count && bytes + len <= s.max_bytes && !old {
            count += 1;
            bytes += len;
            continue;
        }
        // One file that cannot go must not stop retention for the rest.
        if let Err(e) = std::fs::remove_file(&path) {
            failed.get_or_insert(e);
            continue;
        }
        let mut idx = index.lock().unwrap_or_else(|e| e.into_inner());
        if idx.by_id.get(&id) == Some(&path) {
            idx.by_id.remove(&id);
        }
        idx.latest.retain(|_, (_, p)| *p != path);
    }
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> SnapshotSettings {
        SnapshotSettings {
            dir: dir.to_path_buf(),
            max_count: 3,
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 20,
            quality: 80,
        }
    }

    #[test]
    fn retention_keeps_the_newest_within_count_and_bytes_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let index: SnapshotIndex = Default::default();
        for i in 0..5u64 {
            let p = dir.path().join(format!("{}-{i}-dog.jpg", 1000 + i));
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(100 - i);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            index.lock().unwrap().by_id.insert(i, p);
        }
        std::fs::write(dir.path().join("notes.jpg"), b"mine").unwrap();
        enforce_retention(&settings(dir.path()), &index).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["1002-2-dog.jpg", "1003-3-dog.jpg", "1004-4-dog.jpg", "notes.jpg"]
        );
        assert_eq!(
            index.lock().unwrap().by_id.keys().copied().collect::<Vec<_>>(),
            [2, 3, 4]
        );

        let mut s = settings(dir.path());
        s.max_bytes = 150;
        enforce_retention(&s, &index).unwrap();
        assert_eq!(
            index.lock().unwrap().by_id.keys().copied().collect::<Vec<_>>(),
            [4]
        );
        s.max_age = Duration::from_secs(10);
        enforce_retention(&s, &index).unwrap();
        assert!(index.lock().unwrap().by_id.is_empty());
        assert!(dir.path().join("notes.jpg").exists());
    }

    #[test]
    fn only_our_names_are_ours() {
        assert_eq!(ours("1700000000000-12-traffic_light.jpg"), Some(12));
        assert_eq!(ours("1700000000000-12-dog.jpg.tmp"), None);
        assert_eq!(ours("holiday-12-dog.jpg"), None);
        assert_eq!(ours("12-dog.jpg"), None);
    }
}

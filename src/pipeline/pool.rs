//! The interpreters every camera shares: the model is loaded once, and its
//! detectors are lent to the cameras' workers one inference at a time. When
//! inference is the bottleneck, a free detector goes to the waiting camera
//! served longest ago, so each camera gets a fair share whatever its frame
//! rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::layout::{self, Layout};
use crate::infer::{
    Detector, DetectorSettings, FilterSettings, InferError, Labels, Model, ModelKind, Runtime,
};

/// How long a waiting worker sleeps before it looks at its stop flag again
/// (a stop also wakes it at once: [`InferencePool::wake`]).
const RECHECK: Duration = Duration::from_millis(100);

/// Which camera a lease is for: each pipeline draws a new one.
pub type CameraId = u64;

static NEXT_CAMERA: AtomicU64 = AtomicU64::new(1);

/// A fresh [`CameraId`].
pub fn camera_id() -> CameraId {
    NEXT_CAMERA.fetch_add(1, Ordering::Relaxed)
}

struct State<T> {
    free: Vec<T>,
    /// Workers waiting, by camera (entries stay at 0 until the camera is
    /// forgotten: no allocation per lease).
    waiting: Vec<(CameraId, usize)>,
    /// The grant number of each camera's latest lease (0: never served).
    last_served: HashMap<CameraId, u64>,
    grants: u64,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        State {
            free: Vec::new(),
            waiting: Vec::new(),
            last_served: HashMap::new(),
            grants: 0,
        }
    }
}

impl<T> State<T> {
    /// The waiting camera served longest ago.
    fn next_camera(&self) -> Option<CameraId> {
        self.waiting
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, _)| (self.last_served.get(c).copied().unwrap_or(0), *c))
            .min()
            .map(|(_, c)| c)
    }

    fn wait(&mut self, camera: CameraId) {
        match self.waiting.iter_mut().find(|(c, _)| *c == camera) {
            Some((_, n)) => *n += 1,
            None => self.waiting.push((camera, 1)),
        }
    }

    fn unwait(&mut self, camera: CameraId) {
        if let Some((_, n)) = self.waiting.iter_mut().find(|(c, _)| *c == camera) {
            *n = n.saturating_sub(1);
        }
    }

    /// Workers of `camera` waiting.
    #[cfg(test)]
    fn waiting_for(&self, camera: CameraId) -> usize {
        self.waiting
            .iter()
            .find(|(c, _)| *c == camera)
            .map_or(0, |(_, n)| *n)
    }
}

/// Lends a few `T`s to cameras' workers in turn.
pub struct Lender<T> {
    state: Mutex<State<T>>,
    freed: Condvar,
}

/// A `T` lent to one worker; it goes back when dropped.
pub struct Lease<'a, T> {
    lender: &'a Lender<T>,
    item: Option<T>,
    waited: bool,
}

impl<T> Lease<'_, T> {
    /// Whether the item was not free at once (others had it).
    pub fn waited(&self) -> bool {
        self.waited
    }
}

impl<T> std::ops::Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.lender.lock().free.push(item);
            self.lender.freed.notify_all();
        }
    }
}

impl<T> Lender<T> {
    pub fn new(items: Vec<T>) -> Self {
        Lender {
            state: Mutex::new(State {
                free: items,
                ..Default::default()
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for an item for `camera`, taking turns with the other
    /// cameras waiting; `None` once `stop` is set.
    pub fn lease(&self, camera: CameraId, stop: &AtomicBool) -> Option<Lease<'_, T>> {
        let mut s = self.lock();
        s.wait(camera);
        let mut waited = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                s.unwait(camera);
                drop(s);
                // Another camera may be next now.
                self.freed.notify_all();
                return None;
            }
            if !s.free.is_empty() && s.next_camera() == Some(camera) {
                s.unwait(camera);
                s.grants += 1;
                let grant = s.grants;
                s.last_served.insert(camera, grant);
                let item = s.free.pop();
                let more = !s.free.is_empty();
                drop(s);
                if more {
                    self.freed.notify_all();
                }
                return Some(Lease {
                    lender: self,
                    item,
                    waited,
                });
            }
            waited = true;
            s = self
                .freed
                .wait_timeout(s, RECHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes every waiting worker (one of them has been told to stop).
    pub fn wake(&self) {
        // Under the lock: a waiter between its stop check and its wait
        // cannot miss this.
        let _s = self.lock();
        self.freed.notify_all();
    }

    /// Workers of `camera` waiting for an item: tests wait on it to know
    /// a worker is blocked in [`Lender::lease`].
    #[cfg(test)]
    pub(crate) fn waiting_for(&self, camera: CameraId) -> usize {
        self.lock().waiting_for(camera)
    }

    /// Forgets a camera that has stopped.
    pub fn forget(&self, camera: CameraId) {
        let mut s = self.lock();
        s.last_served.remove(&camera);
        s.waiting.retain(|(c, n)| *c != camera || *n > 0);
    }
}

/// One model and its interpreters, shared by every camera.
pub struct InferencePool {
    model: Arc<Model>,
    /// When the model file was modified as it was loaded: a reload notices
    /// a file replaced at the same path.
    model_mtime: Option<SystemTime>,
    /// What the detectors were built with (the filter aside: cameras bring
    /// their own).
    settings: DetectorSettings,
    layout: Layout,
    /// The layout asked for (before the start-up timing).
    rule: Layout,
    /// The inferences per second the layout was chosen for (0: unknown).
    rate: f64,
    /// Why the layout is what it is, for the log.
    why: String,
    kind: ModelKind,
    input_size: (u32, u32),
    labels: Labels,
    size: usize,
    detectors: Lender<Detector>,
}

impl InferencePool {
    /// Loads the model and builds the interpreters of `rule` (see
    /// [`InferencePool::with_model`]).
    pub fn load(
        rt: &'static Runtime,
        settings: &DetectorSettings,
        rule: Layout,
        rate: f64,
    ) -> Result<InferencePool, InferError> {
        let mtime = model_mtime(&settings.model);
        let model = Model::load(rt, &settings.model)?;
        InferencePool::with_model(model, mtime, settings, rule, rate)
    }

    /// Builds the interpreters from a model already in memory. With a
    /// fully automatic layout and a known inference rate (all cameras'
    /// together, per second), one interpreter on all cores is timed first
    /// and kept when it keeps up (lowest latency); see [`layout`].
    pub fn with_model(
        model: Arc<Model>,
        model_mtime: Option<SystemTime>,
        settings: &DetectorSettings,
        rule: Layout,
        rate: f64,
    ) -> Result<InferencePool, InferError> {
        let mut settings = settings.clone();
        settings.filter = FilterSettings::default();
        let (detectors, layout, why) = build_detectors(&model, &settings, rule, rate)?;
        let first = detectors.first().expect("at least one detector");
        let (kind, input_size, labels) = (first.kind(), first.input_size(), first.labels().clone());
        Ok(InferencePool {
            model,
            model_mtime,
            settings,
            layout,
            rule,
            rate,
            why,
            kind,
            input_size,
            labels,
            size: detectors.len(),
            detectors: Lender::new(detectors),
        })
    }

    /// Waits for a detector for `camera`'s next inference, taking turns
    /// with the other cameras waiting; `None` once `stop` is set.
    pub fn lease(&self, camera: CameraId, stop: &AtomicBool) -> Option<Lease<'_, Detector>> {
        self.detectors.lease(camera, stop)
    }

    /// Wakes every waiting worker (one of them has been told to stop).
    pub fn wake(&self) {
        self.detectors.wake();
    }

    /// Forgets a camera that has stopped.
    pub fn forget(&self, camera: CameraId) {
        self.detectors.forget(camera);
    }

    /// Interpreters in the pool.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The layout asked for, before the start-up timing.
    pub fn rule(&self) -> Layout {
        self.rule
    }

    /// The inferences per second (all cameras) the layout was chosen for.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Why the layout was chosen, for the log (may be empty).
    pub fn why(&self) -> &str {
        &self.why
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn model_mtime(&self) -> Option<SystemTime> {
        self.model_mtime
    }

    /// The detector settings the pool was built with (default filter).
    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn input_size(&self) -> (u32, u32) {
        self.input_size
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// The interpreters for `rule`; see [`InferencePool::with_model`]. Returns
/// the detectors, the layout used and a note for the log.
fn build_detectors(
    model: &Arc<Model>,
    settings: &DetectorSettings,
    rule: Layout,
    rate: f64,
) -> Result<(Vec<Detector>, Layout, String), InferError> {
    let mut why = String::new();
    if rule.both_auto && rule.workers > 1 && rate > 0.0 {
        let wide = layout::wide(rule.cores);
        let mut ds = settings.clone();
        ds.session.threads = wide.threads;
        let mut det = Detector::with_model(model.clone(), &ds)?;
        let ms = time_inference(&mut det, layout::budget_ms(rate))?;
        if layout::keeps_up(ms, rate) {
            let why = format!(" ({ms:.1} ms per inference keeps up with {rate:.1} inferences/s)");
            return Ok((vec![det], wide, why));
        }
        why = format!(
            " (one interpreter on all cores, {ms:.1} ms per inference, cannot keep up with {rate:.1}/s)"
        );
    }
    let mut detectors = Vec::with_capacity(rule.workers.max(1));
    for _ in 0..rule.workers.max(1) {
        detectors.push(Detector::with_model(model.clone(), settings)?);
    }
    Ok((detectors, rule, why))
}

/// Median time of three inferences (preprocess included) on a grey frame
/// of the model's input size, after an untimed one. A first run already
/// three times over `budget_ms` ends the timing early: a slow machine
/// does not wait for more proof.
fn time_inference(det: &mut Detector, budget_ms: f64) -> Result<f64, InferError> {
    let (w, h) = det.input_size();
    let rgb = vec![128u8; w as usize * h as usize * 3];
    let mut out = Vec::new();
    let ms = |t: crate::infer::Timings| (t.preprocess + t.infer).as_secs_f64() * 1e3;
    let first = ms(det.detect(&rgb, w, h, &mut out)?);
    if first > 3.0 * budget_ms {
        return Ok(first);
    }
    let mut runs = [0.0; 3];
    for r in &mut runs {
        *r = ms(det.detect(&rgb, w, h, &mut out)?);
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}

pub(crate) fn model_mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(pairs: &[(CameraId, usize)], served: &[(CameraId, u64)]) -> State<()> {
        State {
            waiting: pairs.to_vec(),
            last_served: served.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_camera_served_longest_ago_goes_next() {
        // Never served beats served; then the oldest grant.
        let s = waiting(&[(1, 2), (2, 1), (3, 1)], &[(1, 5), (2, 7)]);
        assert_eq!(s.next_camera(), Some(3));
        let s = waiting(&[(1, 2), (2, 1)], &[(1, 5), (2, 7)]);
        assert_eq!(s.next_camera(), Some(1));
        let s = waiting(&[(1, 2), (2, 1)], &[(1, 9), (2, 7)]);
        assert_eq!(s.next_camera(), Some(2));
        assert_eq!(waiting(&[], &[(1, 1)]).next_camera(), None);
    }

    #[test]
    fn waiting_counts_go_up_and_down_and_never_below_zero() {
        let mut s = waiting(&[(1, 2)], &[]);
        s.unwait(1);
        assert_eq!(s.waiting_for(1), 1);
        s.unwait(1);
        assert_eq!((s.waiting_for(1), s.next_camera()), (0, None));
        s.unwait(1);
        assert_eq!(s.waiting_for(1), 0);
        s.wait(2);
        assert_eq!((s.waiting_for(2), s.next_camera()), (1, Some(2)));
    }

    /// Two cameras whose workers always want inference, one item: the
    /// grants alternate, whatever the order the threads ask in.
    #[test]
    fn busy_cameras_take_turns() {
        let lender = Arc::new(Lender::new(vec![()]));
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let mut threads = Vec::new();
        // Camera 1 has three workers, camera 2 one: still half each.
        for (cam, workers) in [(1u64, 3), (2u64, 1)] {
            for _ in 0..workers {
                let (l, st, c) = (lender.clone(), stop.clone(), counts.clone());
                threads.push(std::thread::spawn(move || {
                    while let Some(_lease) = l.lease(cam, &st) {
                        c[cam as usize - 1].fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::Relaxed);
        lender.wake();
        for t in threads {
            t.join().unwrap();
        }
        let (a, b) = (
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed),
        );
        assert!(a + b > 50, "{a} + {b} grants");
        // A worker between giving its item back and asking again is not
        // waiting: the other camera may take two turns then, rarely.
        assert!(
            a.abs_diff(b) <= (a + b) / 50 + 2,
            "camera 1 got {a}, camera 2 got {b}"
        );
    }

    #[test]
    fn a_stopped_waiter_returns_and_lets_the_next_camera_in() {
        let lender = Lender::new(vec![7u8]);
        let stop = AtomicBool::new(false);
        let held = lender.lease(1, &stop).unwrap();
        assert_eq!(*held, 7);
        let stopped = AtomicBool::new(true);
        std::thread::scope(|s| {
            // Nothing is free and it is told to stop: it gives up.
            assert!(s.spawn(|| lender.lease(2, &stopped).is_none()).join().unwrap());
        });
        drop(held);
        assert_eq!(*lender.lease(3, &stop).unwrap(), 7);
    }
}

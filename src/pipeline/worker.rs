//! One worker: newest frame -> inference (or the latest detections) ->
//! annotate -> encode once -> publish.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::RgbImage;

use super::encode::JpegEncoder;
use super::interpreter::{Infer, Interpreters};
use super::pool::CameraId;
use super::{FrameTiming, PipelineSettings, Shared};
use crate::annotate::{draw_objects, draw_text_block, label_color, AnnotateStyle};
use crate::config::Annotate;
use crate::hub::{EncodedFrame, FrameReport};
use crate::infer::{detection_json, Detection, FilterSettings, ModelKind};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerSettings {
    every_nth: u64,
    min_interval: Option<Duration>,
    quality: u8,
    overlay: bool,
    annotate: Annotate,
    /// Zones and lines, drawn when boxes are burned in.
    places: Arc<(Vec<crate::track::Zone>, Vec<crate::track::Line>)>,
}

impl From<&PipelineSettings> for WorkerSettings {
    fn from(s: &PipelineSettings) -> Self {
        WorkerSettings {
            every_nth: s.every_nth.max(1) as u64,
            min_interval: (s.max_inference_fps > 0.0)
                .then(|| Duration::from_secs_f64(1.0 / s.max_inference_fps as f64)),
            quality: s.jpeg_quality,
            overlay: s.overlay,
            annotate: s.annotate,
            places: Arc::new((s.tracking.zones.clone(), s.tracking.lines.clone())),
        }
    }
}

/// Whether this frame gets inference: every Nth, and no more often than the cap.
fn should_infer(ws: &WorkerSettings, shared: &Shared, seq: u64) -> bool {
    if seq % ws.every_nth != 0 {
        return false;
    }
    match ws.min_interval {
        None => true,
        Some(min) => {
            let mut last = shared.inference_gate.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= min {
                *last = Instant::now();
                true
            } else {
                false
            }
        }
    }
}

/// Processes `shared`'s frames until its slot closes, borrowing an
/// interpreter from `pool` (as camera `camera`) for each inference and
/// keeping detections that pass `filter`.
pub(crate) fn run<P: Interpreters>(
    pool: Arc<P>,
    camera: CameraId,
    mut filter: FilterSettings,
    mut ws: WorkerSettings,
    shared: Arc<Shared>,
) {
    let metrics = shared.hub.metrics.clone();
    // Histogram handles looked up once, not per frame.
    let (stage_preprocess, stage_infer) = (metrics.stage("preprocess"), metrics.stage("infer"));
    let (stage_annotate, stage_encode) = (metrics.stage("annotate"), metrics.stage("encode"));
    let kind = pool.kind();
    let mut encoder = match JpegEncoder::new(ws.quality) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot start the JPEG encoder: {e}");
            shared.request_stop();
            return;
        }
    };
    let mut dets: Vec<Detection> = Vec::with_capacity(64);
    let mut ids: Vec<Option<u64>> = Vec::with_capacity(64);
    let tracking = kind == ModelKind::Detector;
    let mut live_gen = 0u64;
    let mut overlay_text = String::with_capacity(64);
    let mut last_inference_ms = 0.0f64;
    let mut failure_log = super::health::FailureLog::default();
    while let Some(mut c) = shared.slot.take() {
        let gen = shared.live_generation.load(Ordering::SeqCst);
        if gen != live_gen {
            let live = shared
                .live_update
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(live) = live {
                // Checked by `update_live`.
                filter = live.filter;
                if live.worker.quality != ws.quality {
                    encoder.set_quality(live.worker.quality);
                }
                ws = live.worker;
            }
            live_gen = gen;
        }
        let mut t = FrameTiming {
            decode: c.frame.decode_time,
            ..Default::default()
        };
        let (mut w, mut h) = (c.frame.width, c.frame.height);
        let (mut sw, mut sh) = stream_size(&c.frame);
        let detect = shared.hub.detect_enabled();
        if c.signal && detect && should_infer(&ws, &shared, c.seq) {
            let Some(mut det) = pool.lease(camera, &shared.stop) else {
                // Stopping.
                break;
            };
            // Other cameras had the interpreters meanwhile: infer the
            // newest frame, not the one taken before the wait.
            if let Some(newer) = det.waited().then(|| shared.slot.take_newer()).flatten() {
                let old = std::mem::replace(&mut c, newer);
                shared.slot.recycle(old.frame);
                metrics.frames_dropped.inc();
                (w, h) = (c.frame.width, c.frame.height);
                (sw, sh) = stream_size(&c.frame);
                t.decode = c.frame.decode_time;
            }
            let result = det.detect_with(&filter, &c.frame.rgb, w, h, &mut dets);
            drop(det);
            match result {
                Ok(timings) => {
                    t.preprocess = timings.preprocess;
                    t.infer = timings.infer;
                    t.inferred = true;
                    last_inference_ms = timings.infer.as_secs_f64() * 1e3;
                    shared.hub.note_inference();
                    shared.health.success(&shared.hub);
                    metrics.inference_seconds.observe(timings.infer.as_secs_f64());
                    stage_preprocess.observe(timings.preprocess.as_secs_f64());
                    stage_infer.observe(timings.infer.as_secs_f64());
                    for d in &dets {
                        metrics.detection(&d.label).inc();
                    }
                    ids.clear();
                    ids.resize(dets.len(), None);
                    if tracking {
                        track(&shared, &dets, (w, h), (sw, sh), &c, &mut ids);
                    }
                    let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
                    if c.seq >= latest.0 {
                        latest.0 = c.seq;
                        latest.1.clone_from(&dets);
                        latest.2.clone_from(&ids);
                    }
                }
                Err(e) => {
                    let in_a_row = shared.health.failure(&shared.hub);
                    if let Some(unlogged) = failure_log.should_log(Instant::now()) {
                        tracing::error!(
                            "inference failed: {e} ({in_a_row} in a row; {unlogged} more not logged since the last message)"
                        );
                    }
                    dets.clear();
                    ids.clear();
                }
            }
        } else if c.signal && detect {
            let latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
            dets.clone_from(&latest.1);
            ids.clone_from(&latest.2);
        } else {
            dets.clear();
            ids.clear();
            // No camera, no objects: they age out as if unseen.
            if tracking {
                track(&shared, &dets, (w, h), (sw, sh), &c, &mut ids);
            }
        }

        let t_annotate = Instant::now();
        let mut img = match RgbImage::from_raw(w, h, c.frame.rgb) {
            Some(img) => img,
            None => {
                tracing::error!("frame buffer does not match {w}x{h}");
                continue;
            }
        };
        let style = AnnotateStyle::for_size(w, h);
        // "client": the page draws boxes and figures; the frame stays as
        // the camera sent it.
        let burn = ws.annotate == Annotate::Burn;
        if burn && c.signal {
            if kind == ModelKind::Classifier {
                let lines: Vec<String> = dets
                    .iter()
                    .map(|d| format!("{} {:.0}%", d.label, d.score * 100.0))
                    .collect();
                let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                draw_text_block(&mut img, 8, 8, &refs, &style);
            } else {
                crate::annotate::places::draw_places(&mut img, &ws.places.0, &ws.places.1, &style);
                draw_objects(&mut img, &dets, &ids, &style);
            }
        }
        // Only camera frames count: the no-signal frames published twice a
        // second while the source is down are not processing.
        // One meter per camera, not per worker: workers take turns.
        let fps_now = {
            let mut fps = shared.fps.lock().unwrap_or_else(|e| e.into_inner());
            if c.signal {
                fps.tick()
            } else {
                fps.reset();
                0.0
            }
        };
        if ws.overlay && c.signal && ws.annotate != Annotate::Client {
            use std::fmt::Write;
            overlay_text.clear();
            let latency = c.read_at.elapsed().as_secs_f64() * 1e3;
            let _ = write!(
                overlay_text,
                "{fps_now:.1} fps  infer {last_inference_ms:.1} ms  lat {latency:.0} ms"
            );
            let y = h as i32 - (crate::annotate::line_height(style.text_px) as i32 + 16);
            draw_text_block(&mut img, 8, y.max(0), &[overlay_text.as_str()], &style);
        }
        t.annotate = t_annotate.elapsed();

        let t_encode = Instant::now();
        let passed = !c.frame.jpeg.is_empty();
        let jpeg = if passed {
            Bytes::copy_from_slice(&c.frame.jpeg)
        } else {
            match encoder.encode(img.as_raw(), w, h) {
                Ok(b) => Bytes::copy_from_slice(b),
                Err(e) => {
                    tracing::error!("JPEG encoding failed: {e}");
                    recycle(&shared, img, c.frame.jpeg, w, h);
                    continue;
                }
            }
        };
        t.encode = t_encode.elapsed();
        t.latency = c.read_at.elapsed() + t.decode;
        stage_annotate.observe(t.annotate.as_secs_f64());
        stage_encode.observe(t.encode.as_secs_f64());

        // Workers may finish out of order: never publish an older frame.
        let prev = shared.last_published.fetch_max(c.seq, Ordering::SeqCst);
        if c.seq > prev {
            shared.hub.publish_frame(EncodedFrame {
                seq: c.seq,
                jpeg,
                width: sw,
                height: sh,
                timestamp_ms: c.timestamp_ms,
            });
            shared.hub.publish_report(FrameReport {
                camera: shared.hub.name.clone(),
                frame: c.seq,
                timestamp_ms: c.timestamp_ms,
                width: sw,
                height: sh,
                annotate: ws.annotate.as_str(),
                signal: c.signal,
                inference_ms: last_inference_ms,
                latency_ms: t.latency.as_secs_f64() * 1e3,
                fps: fps_now,
                model_kind: kind,
                detections: report_detections(&dets, &ids, (w, h), (sw, sh)),
            });
            metrics.processing_fps.set(fps_now);
        } else {
            metrics.frames_dropped.inc();
        }
        if c.signal {
            metrics.frames_processed.inc();
            if let Some(timings) = &shared.timings {
                timings.lock().unwrap_or_else(|e| e.into_inner()).push(t);
            }
            let n = shared.processed.fetch_add(1, Ordering::SeqCst) + 1;
            if shared.frame_limit.is_some_and(|limit| n >= limit) {
                shared.request_stop();
            }
        }
        recycle(&shared, img, c.frame.jpeg, w, h);
    }
}

/// The report's detections: in pixels of the streamed frame (the camera's
/// JPEG when it is passed through, which inference saw DCT-scaled), each
/// with the colour its box is drawn in (`#rrggbb`) for clients that draw.
fn report_detections(
    dets: &[Detection],
    ids: &[Option<u64>],
    (w, h): (u32, u32),
    (sw, sh): (u32, u32),
) -> Vec<serde_json::Value> {
    let mut json = if (w, h) == (sw, sh) || w == 0 || h == 0 {
        detection_json(dets)
    } else {
        let (fx, fy) = (sw as f32 / w as f32, sh as f32 / h as f32);
        let scaled: Vec<Detection> = dets
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.bbox.left *= fx;
                d.bbox.right *= fx;
                d.bbox.top *= fy;
                d.bbox.bottom *= fy;
                d
            })
            .collect();
        detection_json(&scaled)
    };
    for (i, (j, d)) in json.iter_mut().zip(dets).enumerate() {
        let [r, g, b] = label_color(&d.label).0;
        j["color"] = format!("#{r:02x}{g:02x}{b:02x}").into();
        if let Some(Some(id)) = ids.get(i) {
            j["id"] = (*id).into();
        }
    }
    json
}

/// The size of the frame clients see: the camera's JPEG when it is passed
/// through, else the decoded frame.
fn stream_size(f: &crate::capture::Frame) -> (u32, u32) {
    if f.jpeg.is_empty() {
        (f.width, f.height)
    } else {
        (f.jpeg_width, f.jpeg_height)
    }
}

/// Feeds one inference's detections to the tracker unless a newer frame
/// already has; publishes its events and counts, queues its pictures, and
/// fills `ids` (per detection, the object it is).
fn track(
    shared: &Shared,
    dets: &[Detection],
    (w, h): (u32, u32),
    (sw, sh): (u32, u32),
    c: &super::Captured,
    ids: &mut Vec<Option<u64>>,
) {
    let mut guard = shared.tracking.lock().unwrap_or_else(|e| e.into_inner());
    let t = &mut *guard;
    if c.seq <= t.last_seq {
        return;
    }
    t.last_seq = c.seq;
    t.tracker
        .update(dets, (w, h), (sw, sh), c.timestamp_ms, &mut t.out);
    ids.clone_from(&t.out.ids);
    let hub = &shared.hub;
    let metrics = &hub.metrics;
    for (line, label, direction) in &t.out.crossings {
        metrics.line_crossing(line, label, direction).inc();
    }
    hub.events.publish(&t.out.events, metrics);
    if !t.out.events.is_empty() || !t.out.ids.is_empty() {
        hub.events.set_objects(t.tracker.objects());
    }
    share_counts(hub, &t.tracker);
    // Pictures are taken of the decoded frame: boxes from stream pixels.
    let (fx, fy) = (w as f32 / sw.max(1) as f32, h as f32 / sh.max(1) as f32);
    for req in &t.out.snapshots {
        let mut r = req.clone();
        r.bbox = [r.bbox[0] * fx, r.bbox[1] * fy, r.bbox[2] * fx, r.bbox[3] * fy];
        hub.events.submit_snapshot(&r, &c.frame.rgb, w, h);
    }
}

/// Sets the object gauges from the tracker's counts, and puts the counts
/// on the bus for MQTT.
pub(crate) fn share_counts(hub: &crate::hub::Hub, tracker: &crate::track::ObjectTracker) {
    let metrics = &hub.metrics;
    for (label, n) in tracker.label_counts() {
        metrics.objects(label).set(*n);
    }
    for ((zone, label), n) in tracker.zone_counts() {
        metrics.zone_objects(zone, label).set(*n);
    }
    hub.events
        .set_counts(tracker.label_counts(), tracker.zone_counts());
}

/// Hands the buffers back to the capture thread, the JPEG one emptied.
fn recycle(shared: &Shared, img: RgbImage, mut jpeg: Vec<u8>, w: u32, h: u32) {
    jpeg.clear();
    let mut frame = crate::capture::Frame {
        width: w,
        height: h,
        rgb: img.into_raw(),
        jpeg,
        ..Default::default()
    };
    frame.reshape(w, h);
    shared.slot.recycle(frame);
}

#[cfg(test)]
mod tests;

//! The tracker, zones and lines on hand-made detection sequences.

use super::*;
use crate::infer::BBox;

fn det(label: &str, score: f32, l: f32, t: f32, r: f32, b: f32) -> Detection {
    Detection {
        label: label.into(),
        class_id: 0,
        score,
        bbox: BBox {
            left: l,
            top: t,
            right: r,
            bottom: b,
        },
    }
}

const SIZE: (u32, u32) = (1000, 1000);

fn tracker(settings: TrackingSettings) -> ObjectTracker {
    ObjectTracker::new(settings, Arc::new(AtomicU64::new(0)))
}

fn kinds(events: &[ObjectEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.reason {
            Some(r) => format!(
                "{}:{}",
                e.kind.as_str(),
                serde_json::to_value(r).unwrap()["reason"].as_str().unwrap()
            ),
            None => e.kind.as_str().to_string(),
        })
        .collect()
}

#[test]
fn an_object_crossing_a_line_once_at_one_inference_a_second_is_one_object_one_crossing() {
    let mut s = TrackingSettings::default();
    s.tracker.max_age = 3;
    s.lines.push(Line {
        name: "gate".into(),
        a: [0.5, 0.0],
        b: [0.5, 1.0],
        labels: vec![],
    });
    let mut tr = tracker(s);
    let mut out = TrackOutput::default();
    let mut all = Vec::new();
    let mut ids = Vec::new();
    // 100 px wide, moving 120 px a second: consecutive boxes never overlap.
    for step in 0..8u64 {
        let x = 50.0 + 120.0 * step as f32;
        tr.update(
            &[det("person", 0.8, x, 400.0, x + 100.0, 700.0)],
            SIZE,
            (500, 500),
            step * 1000,
            &mut out,
        );
        all.append(&mut out.events);
        ids.extend(out.ids.iter().flatten().copied());
    }
    for step in 8..12u64 {
        tr.update(&[], SIZE, (500, 500), step * 1000, &mut out);
        all.append(&mut out.events);
    }
    assert_eq!(kinds(&all), ["new", "update:line_crossed", "end"], "{all:#?}");
    ids.dedup();
    assert_eq!(ids, [1], "one id throughout");
    // Right of a top-to-bottom line is the left half: left to right is backward.
    assert_eq!(
        all[1].reason,
        Some(Reason::LineCrossed {
            line: "gate".into(),
            direction: "backward"
        })
    );
    assert_eq!(tr.settings().lines.len(), 1);
    let end = &all[2].object;
    assert_eq!(end.crossings.len(), 1);
    assert_eq!(end.end_ms, Some(7000));
    assert_eq!(end.start_ms, 0);
    // Boxes are in pixels of the streamed frame (half the size here).
    assert_eq!(end.bbox, [445.0, 200.0, 495.0, 350.0]);
    assert_eq!(tr.label_counts()["person"], 0);
}

#[test]
fn short_misses_keep_the_id_and_flicker_never_becomes_an_object() {
    let mut s = TrackingSettings::default();
    s.tracker.max_age = 3;
    s.tracker.min_hits = 2;
    let mut tr = tracker(s);
    let mut out = TrackOutput::default();
    let mut all = Vec::new();
    let dog = det("dog", 0.9, 100.0, 100.0, 300.0, 300.0);
    let frames: Vec<Vec<Detection>> = vec![
        vec![dog.clone(), det("cat", 0.6, 600.0, 600.0, 700.0, 700.0)],
        vec![dog.clone()],
        vec![],
        vec![],
        vec![],
        vec![dog.clone()],
        vec![dog.clone()],
    ];
    let mut ids = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        tr.update(f, SIZE, SIZE, i as u64 * 100, &mut out);
        all.append(&mut out.events);
        ids.extend(out.ids.iter().flatten().copied());
    }
    assert_eq!(kinds(&all), ["new"], "the cat seen once is nothing: {all:#?}");
    ids.dedup();
    assert_eq!(ids, [1], "the dog is the same object after three misses");
    assert_eq!(tr.objects().len(), 1);
    assert_eq!(tr.label_counts().get("cat"), None);
    assert_eq!(tr.label_counts()["dog"], 1);
}

#[test]
fn two_labels_side_by_side_keep_their_own_ids() {
    let mut tr = tracker(TrackingSettings::default());
    let mut out = TrackOutput::default();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..6u64 {
        let x = i as f32 * 10.0;
        let f = [
            det("dog", 0.9, 100.0 + x, 100.0, 300.0 + x, 300.0),
            det("person", 0.9, 150.0 + x, 80.0, 320.0 + x, 400.0),
        ];
        tr.update(&f, SIZE, SIZE, i * 100, &mut out);
        for (d, id) in f.iter().zip(&out.ids) {
            if let Some(id) = id {
                seen.entry(d.label.clone())
                    .or_insert_with(std::collections::BTreeSet::new)
                    .insert(*id);
            }
        }
    }
    assert_eq!(seen["dog"].len(), 1);
    assert_eq!(seen["person"].len(), 1);
    assert_ne!(seen["dog"], seen["person"]);
}

#[test]
fn a_still_object_becomes_stationary_once_then_moving_again() {
    let mut s = TrackingSettings {
        stationary_ms: 2000,
        snapshots: true,
        ..Default::default()
    };
    s.tracker.min_hits = 1;
    let mut tr = tracker(s);
    let mut out = TrackOutput::default();
    let mut all = Vec::new();
    let mut snaps = 0;
    for i in 0..50u64 {
        // Jitter of a pixel, and a rising score: still no new pictures once
        // it stands still.
        let j = (i % 2) as f32;
        let score = 0.5 + i as f32 * 0.005;
        tr.update(
            &[det("car", score, 100.0 + j, 100.0, 400.0 + j, 300.0)],
            SIZE,
            SIZE,
            i * 200,
            &mut out,
        );
        all.append(&mut out.events);
        snaps += out.snapshots.len();
    }
    let k = kinds(&all);
    assert_eq!(k.iter().filter(|k| *k == "update:stationary").count(), 1, "{k:?}");
    let stationary_at = k.iter().position(|k| k == "update:stationary").unwrap();
    assert!(
        k[stationary_at + 1..].is_empty(),
        "no events once stationary: {k:?}"
    );
    assert!((1..=3).contains(&snaps), "{snaps} pictures");
    assert!(tr.objects()[0].stationary);
    tr.update(
        &[det("car", 0.9, 300.0, 100.0, 600.0, 300.0)],
        SIZE,
        SIZE,
        50 * 200,
        &mut out,
    );
    // Moving again, and at a better score: a new picture too.
    assert_eq!(kinds(&out.events), ["update:moving", "update:snapshot"]);
}

#[test]
fn zones_report_entry_with_inertia_and_count_per_label() {
    let mut s = TrackingSettings::default();
    s.tracker.min_hits = 1;
    s.zones.push(Zone {
        name: "yard".into(),
        polygon: vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]],
        labels: vec![],
        min_frames: 3,
        loiter_ms: 0,
    });
    let mut tr = tracker(s);
    let mut out = TrackOutput::default();
    let mut all = Vec::new();
    // Anchor (bottom centre) at x = 0.45, then inside from the third frame.
    for (i, x) in [400.0, 400.0, 470.0, 520.0, 540.0, 560.0].iter().enumerate() {
        tr.update(
            &[det("dog", 0.9, *x, 100.0, *x + 100.0, 300.0)],
            SIZE,
            SIZE,
            i as u64 * 100,
            &mut out,
        );
        all.append(&mut out.events);
        if i == 3 {
            assert!(
                tr.objects()[0].zones.is_empty(),
                "two frames inside are not enough"
            );
        }
    }
    assert_eq!(kinds(&all), ["new", "update:zone_entered"]);
    let obj = &tr.objects()[0];
    assert_eq!(obj.zones, ["yard"]);
    assert_eq!(obj.entered_zones, ["yard"]);
    assert_eq!(tr.zone_counts()[&("yard".to_string(), "dog".to_string())], 1);
}

#[test]
fn finishing_ends_every_confirmed_object() {
    let mut s = TrackingSettings::default();
    s.tracker.min_hits = 1;
    let mut tr = tracker(s);
    let mut out = TrackOutput::default();
    tr.update(
        &[
            det("dog", 0.9, 1.0, 1.0, 50.0, 50.0),
            det("cat", 0.9, 500.0, 500.0, 550.0, 550.0),
        ],
        SIZE,
        SIZE,
        5,
        &mut out,
    );
    tr.finish(&mut out);
    assert_eq!(kinds(&out.events), ["end", "end"]);
    assert!(tr.objects().is_empty());
}

#[test]
fn adding_a_zone_keeps_objects_in_the_zones_that_did_not_change() {
    let zone = |name: &str, x0: f32| Zone {
        name: name.into(),
        polygon: vec![[x0, 0.0], [1.0, 0.0], [1.0, 1.0], [x0, 1.0]],
        labels: vec![],
        min_frames: 1,
        loiter_ms: 0,
    };
    let mut s = TrackingSettings::default();
    s.tracker.min_hits = 1;
    s.zones.push(zone("yard", 0.0));
    let mut tr = tracker(s.clone());
    let mut out = TrackOutput::default();
    let dog = [det("dog", 0.9, 600.0, 100.0, 800.0, 300.0)];
    tr.update(&dog, SIZE, SIZE, 0, &mut out);
    // Confirmed already inside: the `new` event carries the zone.
    assert_eq!(kinds(&out.events), ["new"]);
    assert_eq!(out.events[0].object.zones, ["yard"]);
    s.zones.push(zone("right", 0.5));
    tr.set_settings(s);
    tr.update(&dog, SIZE, SIZE, 100, &mut out);
    // Only the new zone is entered; the yard is not entered again.
    let k = kinds(&out.events);
    assert_eq!(k, ["update:zone_entered"], "{:#?}", out.events);
    assert_eq!(tr.objects()[0].zones, ["yard", "right"]);
}

//! Zones (polygons an object is in or out of, with inertia and loitering
//! time) and lines (counted when an object's anchor point crosses them).

use super::geometry::{contains, segments_intersect, side_distance, Point};

/// Which point of a box decides where the object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Where a person or a car touches the ground.
    #[default]
    BottomCenter,
    Center,
    TopCenter,
}

impl Anchor {
    pub fn of(self, b: &crate::infer::BBox) -> Point {
        let x = (b.left + b.right) / 2.0;
        let y = match self {
            Anchor::BottomCenter => b.bottom,
            Anchor::Center => (b.top + b.bottom) / 2.0,
            Anchor::TopCenter => b.top,
        };
        [x, y]
    }
}

/// A zone, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub polygon: Vec<Point>,
    /// Empty: every label.
    pub labels: Vec<String>,
    /// Consecutive inferences inside (or outside) before it counts.
    pub min_frames: u32,
    /// Seconds inside before the object is in the zone.
    pub loiter_ms: u64,
}

impl Zone {
    pub fn applies_to(&self, label: &str) -> bool {
        self.labels.is_empty() || self.labels.iter().any(|l| l == label)
    }
}

/// A counting line, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub a: Point,
    pub b: Point,
    /// Empty: every label.
    pub labels: Vec<String>,
}

/// How far (in frame widths) from a line the anchor must be for its side
/// to count: jitter on the line itself counts nothing.
const SIDE_MARGIN: f32 = 0.01;

/// One object's state for one zone.
#[derive(Debug, Clone, Default)]
pub struct ZoneState {
    run_in: u32,
    run_out: u32,
    /// Inside, with inertia.
    inside: bool,
    since_ms: u64,
    /// Inside for the loitering time: reported in `zones`.
    pub counted: bool,
}

/// What changed in one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneChange {
    Entered,
    Left,
}

impl ZoneState {
    /// Takes one observation of the anchor; returns a change of `counted`.
    pub fn observe(&mut self, zone: &Zone, label: &str, anchor: Point, now_ms: u64) -> Option<ZoneChange> {
        let is_in = zone.applies_to(label) && contains(&zone.polygon, anchor);
        let need = zone.min_frames.max(1);
        if is_in {
            self.run_in += 1;
            self.run_out = 0;
            if !self.inside && self.run_in >= need {
                self.inside = true;
                self.since_ms = now_ms;
            }
        } else {
            self.run_out += 1;
            self.run_in = 0;
            if self.inside && self.run_out >= need {
                self.inside = false;
            }
        }
        let counted = self.inside && now_ms.saturating_sub(self.since_ms) >= zone.loiter_ms;
        match (self.counted, counted) {
            (false, true) => {
                self.counted = true;
                Some(ZoneChange::Entered)
            }
            (true, false) => {
                self.counted = false;
                Some(ZoneChange::Left)
            }
            _ => None,
        }
    }
}

/// One object's state for one line: the last side it was clearly on.
#[derive(Debug, Clone, Default)]
pub struct LineState {
    side: Option<(bool, Point)>,
}

impl LineState {
    /// Takes one observation of the anchor; returns the direction of a
    /// crossing (`forward`: left to right of a -> b as seen on the
    /// picture). `count` false only records the side (unconfirmed tracks
    /// keep the first side they were seen on, so a crossing made before
    /// confirmation counts once confirmed).
    pub fn observe(&mut self, line: &Line, label: &str, anchor: Point, count: bool) -> Option<&'static str> {
        if !line.labels.is_empty() && !line.labels.iter().any(|l| l == label) {
            return None;
        }
        let d = side_distance(line.a, line.b, anchor);
        if d.abs() < SIDE_MARGIN {
            return None;
        }
        let right = d > 0.0;
        match self.side {
            None => {
                self.side = Some((right, anchor));
                None
            }
            Some(_) if !count => None,
            Some((was_right, from)) => {
                self.side = Some((right, anchor));
                if was_right == right || !segments_intersect(from, anchor, line.a, line.b) {
                    return None;
                }
                Some(if right { "forward" } else { "backward" })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(min_frames: u32, loiter_ms: u64) -> Zone {
        Zone {
            name: "right".into(),
            polygon: vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]],
            labels: vec!["dog".into()],
            min_frames,
            loiter_ms,
        }
    }

    #[test]
    fn a_zone_counts_after_min_frames_inside_and_ends_after_min_frames_out() {
        let z = zone(3, 0);
        let mut s = ZoneState::default();
        let (inside, outside) = ([0.7, 0.5], [0.2, 0.5]);
        assert_eq!(s.observe(&z, "dog", inside, 0), None);
        assert_eq!(s.observe(&z, "dog", inside, 100), None);
        // One frame out resets the run.
        assert_eq!(s.observe(&z, "dog", outside, 200), None);
        assert_eq!(s.observe(&z, "dog", inside, 300), None);
        assert_eq!(s.observe(&z, "dog", inside, 400), None);
        assert_eq!(s.observe(&z, "dog", inside, 500), Some(ZoneChange::Entered));
        assert_eq!(s.observe(&z, "dog", outside, 600), None);
        assert_eq!(s.observe(&z, "dog", outside, 700), None);
        assert_eq!(s.observe(&z, "dog", outside, 800), Some(ZoneChange::Left));
        // Labels the zone is not for never enter.
        let mut c = ZoneState::default();
        for t in 0..10 {
            assert_eq!(c.observe(&z, "cat", inside, t * 100), None);
        }
    }

    #[test]
    fn loitering_time_delays_the_entry() {
        let z = zone(1, 1000);
        let mut s = ZoneState::default();
        assert_eq!(s.observe(&z, "dog", [0.7, 0.5], 0), None);
        assert_eq!(s.observe(&z, "dog", [0.7, 0.5], 900), None);
        assert_eq!(s.observe(&z, "dog", [0.7, 0.5], 1000), Some(ZoneChange::Entered));
    }

    #[test]
    fn crossings_count_once_per_side_change_within_the_line() {
        // Vertical line down the middle, drawn top to bottom: its right as
        // seen on the picture is the left half.
        let line = Line {
            name: "mid".into(),
            a: [0.5, 0.0],
            b: [0.5, 1.0],
            labels: vec![],
        };
        let mut s = LineState::default();
        assert_eq!(s.observe(&line, "dog", [0.2, 0.5], true), None);
        assert_eq!(
            s.observe(&line, "dog", [0.495, 0.5], true),
            None,
            "jitter on the line"
        );
        assert_eq!(s.observe(&line, "dog", [0.7, 0.5], true), Some("backward"));
        assert_eq!(s.observe(&line, "dog", [0.8, 0.5], true), None);
        assert_eq!(s.observe(&line, "dog", [0.3, 0.5], true), Some("forward"));
        // Passing beside a short line is no crossing.
        let short = Line {
            a: [0.5, 0.0],
            b: [0.5, 0.3],
            ..line.clone()
        };
        let mut s = LineState::default();
        s.observe(&short, "dog", [0.2, 0.8], true);
        assert_eq!(s.observe(&short, "dog", [0.8, 0.8], true), None);
        // Unconfirmed: the first side stays; the crossing counts later.
        let mut s = LineState::default();
        s.observe(&line, "dog", [0.2, 0.5], false);
        assert_eq!(s.observe(&line, "dog", [0.7, 0.5], false), None);
        assert_eq!(s.observe(&line, "dog", [0.75, 0.5], true), Some("backward"));
    }
}

//! Plane geometry in normalized frame coordinates (0..1, y down): points in
//! polygons, which side of a line a point is on, and segment crossings.

/// A point in normalized frame coordinates.
pub type Point = [f32; 2];

/// Twice the signed area of the triangle a, b, p: positive when `p` is to
/// the right of a -> b as seen on the picture (y grows downwards).
pub fn cross(a: Point, b: Point, p: Point) -> f32 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// Whether `p` is inside the polygon (even-odd rule; points on an edge may
/// go either way).
pub fn contains(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    let n = polygon.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Whether segments p1-p2 and q1-q2 cross or touch.
pub fn segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    let on = |a: Point, b: Point, p: Point, d: f32| {
        d == 0.0
            && p[0] >= a[0].min(b[0])
            && p[0] <= a[0].max(b[0])
            && p[1] >= a[1].min(b[1])
            && p[1] <= a[1].max(b[1])
    };
    on(q1, q2, p1, d1) || on(q1, q2, p2, d2) || on(p1, p2, q1, d3) || on(p1, p2, q2, d4)
}

/// The first pair of edges of `polygon` that cross (edges that share a
/// corner do not count), as edge indices: edge `i` runs from corner `i` to
/// corner `i + 1`.
pub fn self_crossing(polygon: &[Point]) -> Option<(usize, usize)> {
    let n = polygon.len();
    for i in 0..n {
        for j in i + 1..n {
            // Neighbours share a corner.
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue;
            }
            let (a1, a2) = (polygon[i], polygon[(i + 1) % n]);
            let (b1, b2) = (polygon[j], polygon[(j + 1) % n]);
            if segments_intersect(a1, a2, b1, b2) {
                return Some((i, j));
            }
        }
    }
    None
}

/// Twice the polygon's area (absolute); 0 for a degenerate one.
pub fn area2(polygon: &[Point]) -> f32 {
    let n = polygon.len();
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + 1) % n]);
        s += a[0] * b[1] - b[0] * a[1];
    }
    s.abs()
}

/// Signed distance of `p` from the infinite line through a, b, in frame
/// widths: positive on the right of a -> b as seen on the picture.
pub fn side_distance(a: Point, b: Point, p: Point) -> f32 {
    let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
    if len == 0.0 {
        0.0
    } else {
        cross(a, b, p) / len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [Point; 4] = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]];

    #[test]
    fn points_inside_and_outside_a_square_and_a_concave_polygon() {
        assert!(contains(&SQUARE, [0.5, 0.5]));
        assert!(!contains(&SQUARE, [0.1, 0.5]));
        assert!(!contains(&SQUARE, [0.5, 0.9]));
        // A "U": the notch at the top middle is outside.
        let u = [
            [0.0, 0.0],
            [0.3, 0.0],
            [0.3, 0.6],
            [0.7, 0.6],
            [0.7, 0.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.0, 1.0],
        ];
        assert!(!contains(&u, [0.5, 0.3]));
        assert!(contains(&u, [0.5, 0.8]));
        assert!(contains(&u, [0.1, 0.3]));
    }

    #[test]
    fn a_bow_tie_crosses_itself_a_square_does_not() {
        assert_eq!(self_crossing(&SQUARE), None);
        let bow = [[0.2, 0.2], [0.8, 0.8], [0.8, 0.2], [0.2, 0.8]];
        assert_eq!(self_crossing(&bow), Some((0, 2)));
        assert!(area2(&SQUARE) > 0.7);
        assert_eq!(area2(&[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]), 0.0);
    }

    #[test]
    fn sides_are_right_positive_as_seen_on_the_picture() {
        // A line drawn left to right: below it (larger y) is its right.
        let (a, b) = ([0.0, 0.5], [1.0, 0.5]);
        assert!(side_distance(a, b, [0.5, 0.7]) > 0.0);
        assert!(side_distance(a, b, [0.5, 0.3]) < 0.0);
        assert!((side_distance(a, b, [0.5, 0.7]) - 0.2).abs() < 1e-6);
        assert!(segments_intersect([0.5, 0.3], [0.5, 0.7], a, b));
        assert!(!segments_intersect([0.5, 0.3], [0.5, 0.4], a, b));
        // Past the end of a short line: no crossing.
        assert!(!segments_intersect(
            [0.9, 0.3],
            [0.9, 0.7],
            [0.0, 0.5],
            [0.5, 0.5]
        ));
    }
}

//! Stable per-label colours and a readable text colour for any background.

use image::Rgb;

/// Twenty saturated colours: ten bright hues 36 degrees apart, then ten
/// darker ones on the hues in between, so neighbours in hue also differ in
/// brightness.
pub const PALETTE: [Rgb<u8>; 20] = [
    Rgb([255, 38, 38]),  // red
    Rgb([255, 168, 38]), // orange
    Rgb([212, 255, 38]), // lime yellow
    Rgb([82, 255, 38]),  // bright green
    Rgb([38, 255, 125]), // spring green
    Rgb([38, 255, 255]), // cyan
    Rgb([38, 125, 255]), // azure
    Rgb([82, 38, 255]),  // violet blue
    Rgb([212, 38, 255]), // purple
    Rgb([255, 38, 168]), // hot pink
    Rgb([184, 55, 0]),   // rust
    Rgb([184, 165, 0]),  // olive gold
    Rgb([92, 184, 0]),   // leaf green
    Rgb([0, 184, 18]),   // green
    Rgb([0, 184, 129]),  // teal green
    Rgb([0, 129, 184]),  // steel blue
    Rgb([0, 18, 184]),   // navy blue
    Rgb([92, 0, 184]),   // indigo
    Rgb([184, 0, 165]),  // magenta
    Rgb([184, 0, 55]),   // crimson
];

/// 64-bit FNV-1a of `bytes`: fixed constants, so the same input gives the
/// same value in every run, process and platform.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

/// The colour for a label: a palette entry picked by the FNV-1a hash of the
/// label text, so e.g. "dog" is drawn in the same colour everywhere.
pub fn label_color(label: &str) -> Rgb<u8> {
    let h = fnv1a64(label.as_bytes());
    // Fold the high bits in: FNV's low bits mix less well than its high ones.
    let folded = h ^ (h >> 32);
    PALETTE[(folded % PALETTE.len() as u64) as usize]
}

/// sRGB component (0..=255) to linear light (0..=1).
fn linear(c: u8) -> f32 {
    let c = c as f32 / 255.0;
    if c <= 0.040_45 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Relative luminance (WCAG 2 / Rec. 709 weights), 0 for black, 1 for white.
pub fn relative_luminance(c: Rgb<u8>) -> f32 {
    let [r, g, b] = c.0;
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/// WCAG contrast ratio between two colours, 1..=21.
pub fn contrast_ratio(a: Rgb<u8>, b: Rgb<u8>) -> f32 {
    let (la, lb) = (relative_luminance(a), relative_luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// Black or white, whichever contrasts more with `background`.
pub fn text_color_on(background: Rgb<u8>) -> Rgb<u8> {
    // Contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05;
    // they are equal at L = sqrt(1.05 * 0.05) - 0.05 ~= 0.179.
    if relative_luminance(background) > 0.179 {
        BLACK
    } else {
        WHITE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn label_colour_is_stable_and_separates_common_labels() {
        assert_eq!(label_color("dog"), label_color("dog"));
        assert_eq!(label_color(&(String::from("do") + "g")), label_color("dog"));
        assert_ne!(label_color("dog"), label_color("cat"));
        assert_ne!(label_color("person"), label_color("car"));
        // Pinned so a change of hash or palette order is noticed: colours are
        // part of what users see from run to run.
        let idx = |l: &str| PALETTE.iter().position(|&c| c == label_color(l)).unwrap();
        assert_eq!([idx("dog"), idx("cat"), idx("person"), idx("car")], PINNED);
    }

    const PINNED: [usize; 4] = [9, 6, 19, 8];

    #[test]
    fn labels_spread_over_the_palette() {
        let labels = [
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
            "boat",
            "traffic light",
            "fire hydrant",
            "stop sign",
            "bench",
            "bird",
            "cat",
            "dog",
            "horse",
            "sheep",
            "cow",
            "elephant",
            "bear",
            "zebra",
            "giraffe",
            "backpack",
            "umbrella",
            "handbag",
            "tie",
            "suitcase",
            "frisbee",
            "skis",
        ];
        let mut used = [false; PALETTE.len()];
        for l in labels {
            let i = PALETTE.iter().position(|&c| c == label_color(l)).unwrap();
            used[i] = true;
        }
        assert!(used.iter().filter(|&&u| u).count() >= 12);
    }

    #[test]
    fn palette_is_distinct_and_saturated() {
        for (i, a) in PALETTE.iter().enumerate() {
            let (mx, mn) = (*a.0.iter().max().unwrap(), *a.0.iter().min().unwrap());
            assert!(mx - mn >= 150, "{a:?} is not saturated");
            for b in &PALETTE[i + 1..] {
                let d: i32 =
                    a.0.iter()
                        .zip(b.0)
                        .map(|(&x, y)| (x as i32 - y as i32).pow(2))
                        .sum();
                assert!(d >= 60 * 60, "{a:?} and {b:?} are too close");
            }
        }
    }

    #[test]
    fn text_colour_follows_background_luminance() {
        assert_eq!(text_color_on(Rgb([255, 255, 0])), BLACK); // yellow
        assert_eq!(text_color_on(Rgb([0, 0, 139])), WHITE); // dark blue
        assert_eq!(text_color_on(WHITE), BLACK);
        assert_eq!(text_color_on(BLACK), WHITE);
        // The choice is always the better of the two, which is >= 4.5:1.
        for &c in PALETTE.iter() {
            let t = text_color_on(c);
            let other = if t == BLACK { WHITE } else { BLACK };
            assert!(contrast_ratio(c, t) >= contrast_ratio(c, other), "{c:?}");
            assert!(contrast_ratio(c, t) >= 4.5, "{c:?}");
        }
    }
}

//! `convert` model I/O: a read/write round trip of every model we have
//! (inline and with buffers stored after the flatbuffer) runs in LiteRT
//! with bitwise identical outputs, and corrupt models are errors, never
//! panics, all the way through the unpack/write path.

use crate::common;
use crate::common::tiny_models;

use edgevision::convert::calibrate::Exposed;
use edgevision::convert::graph;
use edgevision::convert::model_io::{read_model_t, write_model, Layout};
use tiny_models::{build_colour_classifier, Variant};

fn models() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![
        ("coco".to_string(), std::fs::read(common::coco_model()).unwrap()),
        ("oidv4".to_string(), std::fs::read(common::oidv4_model()).unwrap()),
    ];
    for variant in [Variant::FloatLogits, Variant::FloatSoftmax, Variant::Uint8Softmax] {
        v.push((format!("{variant:?}"), build_colour_classifier(variant)));
    }
    v
}

/// Every output of `bytes` on two photos, as raw f32 bit patterns.
fn outputs(bytes: &[u8]) -> Vec<Vec<u32>> {
    let m = read_model_t(bytes).unwrap();
    let mut e = Exposed::new(common::runtime(), &m, &[], 1).unwrap();
    let mut all = Vec::new();
    for photo in ["dog.jpg", "chelsea.png"] {
        let img = image::open(common::photo(photo)).unwrap().to_rgb8();
        let (_, outs) = e.run(&img).unwrap();
        all.extend(outs.into_iter().map(|o| o.iter().map(|v| v.to_bits()).collect()));
    }
    all
}

#[test]
fn round_trip_of_every_model_gives_identical_outputs() {
    for (name, bytes) in models() {
        let mut m = read_model_t(&bytes).unwrap();
        let inline = write_model(&mut m, Layout::Inline);
        let external = write_model(&mut m, Layout::External { min_bytes: 16 });
        let file = edgevision::tflite::ModelFile::parse(&external).unwrap();
        let moved = file
            .model()
            .buffers()
            .unwrap()
            .iter()
            .filter(|b| b.offset() > 1)
            .count();
        assert!(moved > 0, "{name}: no buffer was stored after the flatbuffer");
        // External -> tree -> inline gives the same file as inline directly.
        let mut back = read_model_t(&external).unwrap();
        assert_eq!(back, m, "{name}: external layout round trip");
        assert_eq!(write_model(&mut back, Layout::Inline), inline, "{name}");
        let reference = outputs(&bytes);
        assert!(!reference.is_empty());
        assert_eq!(outputs(&inline), reference, "{name}: inline outputs differ");
        assert_eq!(outputs(&external), reference, "{name}: external outputs differ");
        // Metadata and signature defs survive.
        let again = read_model_t(&inline).unwrap();
        assert_eq!(again.metadata, m.metadata, "{name}");
        assert_eq!(again.signature_defs, m.signature_defs, "{name}");
        assert_eq!(again.description, m.description, "{name}");
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Reads, checks, edits and writes whatever reads; panics propagate.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(mut m) = read_model_t(bytes) else {
        return false;
    };
    if graph::check(&m).is_err() {
        return true;
    }
    graph::normalize_opcodes(&mut m);
    let _ = graph::fold_constant_dequantize(&mut m);
    graph::remove_unused(&mut m);
    let out = write_model(&mut m, Layout::External { min_bytes: 16 });
    // What we write reads back.
    read_model_t(&out).expect("a written model reads back");
    true
}

#[test]
fn mutated_models_never_panic_through_the_write_path() {
    let mut rng = Lcg(0xc0ffee);
    let mut seeds: Vec<Vec<u8>> = [Variant::FloatSoftmax, Variant::Uint8Softmax]
        .into_iter()
        .map(build_colour_classifier)
        .collect();
    // The same models with their buffers after the flatbuffer.
    for i in 0..seeds.len() {
        let mut m = read_model_t(&seeds[i]).unwrap();
        seeds.push(write_model(&mut m, Layout::External { min_bytes: 8 }));
    }
    let cases = 4000;
    let mut read_ok = 0;
    for case in 0..cases {
        let mut m = seeds[case % seeds.len()].clone();
        match case % 4 {
            0 => {
                let at = rng.below(m.len());
                m[at] ^= 1 << rng.below(8);
            }
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(m.len());
                    m[at] = rng.next() as u8;
                }
            }
            2 => m.truncate(rng.below(m.len())),
            _ => {
                let at = rng.below(m.len() / 4) * 4;
                let v: u32 = [0, 1, 16, 0x7fff_ffff, 0xffff_ffff][rng.below(5)];
                m[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        match std::panic::catch_unwind(|| exercise(&m)) {
            Ok(ok) => read_ok += usize::from(ok),
            Err(_) => panic!("mutation case {case} panicked"),
        }
    }
    assert!(read_ok < cases, "every mutated model read fine");
    assert!(
        read_ok > 0,
        "no mutated model read at all: the mutations are too coarse"
    );
}

#[test]
fn mutated_real_model_never_panics() {
    // Fewer cases on the 6 MB Coral model, aimed at its flatbuffer tables
    // (the last bytes hold the tables; the weights come first).
    let bytes = std::fs::read(common::coco_model()).unwrap();
    let mut rng = Lcg(7);
    for case in 0..60 {
        let mut m = bytes.clone();
        let tail = m.len() - 64 * 1024;
        for _ in 0..=rng.below(3) {
            let at = if case % 2 == 0 {
                rng.below(1024)
            } else {
                tail + rng.below(64 * 1024)
            };
            m[at] = rng.next() as u8;
        }
        if std::panic::catch_unwind(|| exercise(&m)).is_err() {
            panic!("Coral mutation case {case} panicked");
        }
    }
}

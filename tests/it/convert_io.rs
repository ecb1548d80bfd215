//! `convert` model I/O: a read/write round trip of every model we have
//! (inline and with buffers stored after the flatbuffer) runs in LiteRT
//! with bitwise identical outputs, and corrupt models are errors, never
//! panics, all the way through the unpack/write path.

use crate::common;

use crate::common::tiny_models;

use edgevision::convert::calibrate::Exposed;
use edgevision::convert::model_io::{read_model_t, write_model, Layout};
use edgevision::convert::{self, graph, ConvertError, ConvertOptions, IoType, Mode, RangeMethod};
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

/// Reads, checks, edits and writes whatever reads, then converts it in
/// every mode that needs no runtime; panics propagate. A conversion may
/// fail, but never on its own output check: a model that passes the
/// reader's checks must convert into one that passes them too.
fn exercise(bytes: &[u8]) -> bool {
    exercise_modes(bytes, &[Mode::Float16, Mode::Dynamic, Mode::Float32])
}

/// [`exercise`] with the conversion modes `modes` only.
fn exercise_modes(bytes: &[u8], modes: &[Mode]) -> bool {
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
    for &mode in modes {
        match convert::convert(None, bytes, &no_images(mode)) {
            Ok(out) => {
                if let Err(e) = consistent(&out.bytes) {
                    panic!("--mode {} wrote an inconsistent model: {e}", mode.name());
                }
            }
            Err(ConvertError::InvalidOutput(e)) => {
                // Widening a tensor within the bound past it (a 256 MiB
                // uint8 activation dequantized to float32) is a fair refusal.
                assert!(
                    e.to_string().contains("MiB per tensor"),
                    "--mode {} made an invalid model: {e}",
                    mode.name()
                );
            }
            Err(_) => {}
        }
    }
    true
}

/// The test's own oracle, independent of the reader's checks: every
/// constant of subgraph 0 holds exactly shape x element size bytes, and no
/// dimension is below -1.
fn consistent(bytes: &[u8]) -> Result<(), String> {
    use edgevision::tflite::schema::TensorType as T;
    let m = read_model_t(bytes).map_err(|e| e.to_string())?;
    let buffers = m.buffers.as_deref().unwrap_or_default();
    for (i, t) in graph::tensors(&m).iter().enumerate() {
        let shape = t.shape.as_deref().unwrap_or_default();
        if shape.iter().any(|&d| d < -1) {
            return Err(format!("tensor {i} has shape {shape:?}"));
        }
        let Some(data) = buffers.get(t.buffer as usize).and_then(|b| b.data.as_ref()) else {
            continue;
        };
        let size: u128 = match t.type_ {
            T::FLOAT32 | T::INT32 => 4,
            T::FLOAT16 | T::INT16 => 2,
            T::INT8 | T::UINT8 | T::BOOL => 1,
            T::INT64 | T::FLOAT64 => 8,
            _ => continue,
        };
        let want = shape.iter().map(|&d| d.max(0) as u128).product::<u128>() * size;
        if t.buffer != 0 && !data.is_empty() && want != data.len() as u128 {
            return Err(format!(
                "tensor {i} has shape {shape:?} ({want} bytes), its buffer {} bytes",
                data.len()
            ));
        }
    }
    Ok(())
}

fn no_images(mode: Mode) -> ConvertOptions {
    ConvertOptions {
        mode,
        calibration: None,
        samples: 1,
        io_type: IoType::Float,
        range: RangeMethod::MinMax,
        threads: 1,
        compare: false,
        validation: None,
        bias_correction: false,
    }
}

/// Number of mutated models [`mutated_models_never_panic_through_the_write_path`]
/// tries: thousands, at a fixed seed, so a failure names a case to replay.
const MUTATION_CASES: usize = 16_000;

/// Little-endian u64 `v`'s first position in `bytes[..end]`.
fn find_u64(bytes: &[u8], v: u64, end: usize) -> Option<usize> {
    bytes[..end].windows(8).position(|w| w == v.to_le_bytes())
}

/// One seeded mutation of `m`; returns its kind, for the failure message.
fn mutate(m: &mut Vec<u8>, rng: &mut Lcg) -> &'static str {
    let sites = common::damage::shape_sites(m);
    let fb_len = edgevision::tflite::ModelFile::parse(m)
        .ok()
        .and_then(|f| {
            let bufs = f.model().buffers()?;
            bufs.iter()
                .filter(|b| b.offset() > 1)
                .map(|b| b.offset() as usize)
                .min()
        })
        .unwrap_or(m.len());
    match rng.below(8) {
        0 => {
            let at = rng.below(m.len());
            m[at] ^= 1 << rng.below(8);
            "bit flip"
        }
        1 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len());
                m[at] = rng.next() as u8;
            }
            "random bytes"
        }
        2 => {
            m.truncate(rng.below(m.len()));
            "truncation"
        }
        3 => {
            let at = rng.below(m.len() / 4) * 4;
            let v: u32 = [0, 1, 16, 0x7fff_ffff, 0xffff_ffff][rng.below(5)];
            m[at..at + 4].copy_from_slice(&v.to_le_bytes());
            "extreme u32"
        }
        // Inflated, zero and negative dimensions of a random tensor.
        k @ (4 | 5) => {
            let s = &sites[rng.below(sites.len())];
            let dim = rng.below(s.shape.len());
            let v: i32 = if k == 4 {
                [0x1000_0000, 0x7fff_ffff, 0x10000, 2 * s.shape[dim].max(1), 0][rng.below(5)]
            } else {
                [-1, -2, i32::MIN][rng.below(3)]
            };
            let at = s.at + 4 * dim;
            m[at..at + 4].copy_from_slice(&v.to_le_bytes());
            if k == 4 {
                "inflated dimension"
            } else {
                "negative dimension"
            }
        }
        // Huge or shifted offsets/sizes of data stored after the flatbuffer.
        6 => {
            let file = edgevision::tflite::ModelFile::parse(m).ok();
            let ext: Vec<(u64, u64)> = file
                .and_then(|f| f.model().buffers())
                .map(|b| {
                    b.iter()
                        .filter(|b| b.offset() > 1)
                        .map(|b| (b.offset(), b.size()))
                        .collect()
                })
                .unwrap_or_default();
            let Some(&(offset, size)) = ext.get(rng.below(ext.len())) else {
                return "none (no external buffer)";
            };
            let v = [u64::MAX, 1 << 40, offset + 1, size + 16, i64::MAX as u64, 2][rng.below(6)];
            let target = if rng.below(2) == 0 { offset } else { size };
            if let Some(at) = find_u64(m, target, fb_len) {
                m[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            "external buffer offset/size"
        }
        // A vector length in the tables grown (vectors are length-prefixed).
        _ => {
            let s = &sites[rng.below(sites.len())];
            let at = s.at - 4;
            let v: u32 = [s.shape.len() as u32 + 1, 0x1000_0000, u32::MAX][rng.below(3)];
            m[at..at + 4].copy_from_slice(&v.to_le_bytes());
            "vector length"
        }
    }
}

#[test]
fn mutated_models_never_panic_through_the_write_path() {
    let mut rng = Lcg(0xc0ffee);
    let mut seeds: Vec<Vec<u8>> = [Variant::FloatLogits, Variant::FloatSoftmax, Variant::Uint8Softmax]
        .into_iter()
        .map(build_colour_classifier)
        .collect();
    // The same models with their buffers after the flatbuffer.
    for i in 0..seeds.len() {
        let mut m = read_model_t(&seeds[i]).unwrap();
        seeds.push(write_model(&mut m, Layout::External { min_bytes: 8 }));
    }
    let mut read_ok = 0;
    for case in 0..MUTATION_CASES {
        let mut m = seeds[case % seeds.len()].clone();
        let kind = mutate(&mut m, &mut rng);
        match std::panic::catch_unwind(|| exercise(&m)) {
            Ok(ok) => read_ok += usize::from(ok),
            Err(_) => panic!(
                "mutation case {case} ({kind}, seed {}) panicked",
                case % seeds.len()
            ),
        }
    }
    assert!(read_ok < MUTATION_CASES, "every mutated model read fine");
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

#[test]
fn damaged_shapes_of_the_oidv4_model_never_panic() {
    // The issue 19 mutation on the real model, at random tensors: any
    // dimension of any tensor set to an extreme, zero, doubled or negative,
    // through --mode float16 (the mode that wrote a broken model). Few
    // cases: each that reads converts 14 MB of weights.
    let bytes = std::fs::read(common::oidv4_model()).unwrap();
    let sites = common::damage::shape_sites(&bytes);
    let mut rng = Lcg(19);
    let mut refused = 0;
    for case in 0..24 {
        let s = &sites[rng.below(sites.len())];
        let dim = rng.below(s.shape.len());
        let v = [0x1000_0000, 0x7fff_ffff, -1, -512, 0, 2 * s.shape[dim]][case % 6];
        let mut m = bytes.clone();
        m[s.at + 4 * dim..s.at + 4 * dim + 4].copy_from_slice(&v.to_le_bytes());
        let what = format!("dimension {dim} of tensor {} set to {v}", s.tensor);
        match std::panic::catch_unwind(|| exercise_modes(&m, &[Mode::Float16])) {
            Ok(read) => refused += usize::from(!read),
            Err(_) => panic!("case {case} ({what}) panicked"),
        }
    }
    assert!(refused > 0, "no damaged shape was refused");
}

#[test]
fn dequantized_weights_of_another_shape_are_refused() {
    // Found by the mutation test on the Open Images model: the float32
    // output of a DEQUANTIZE of fp16 weights (tensor 314 then; here the
    // first such) with dimension 0 set to -1 was folded into a constant
    // whose buffer did not fit its shape, which convert then wrote. Now -1
    // is refused on reading, and a stored shape other than the weights'
    // when folding.
    use edgevision::tflite::schema::BuiltinOperator;
    let bytes = std::fs::read(common::oidv4_model()).unwrap();
    let m = read_model_t(&bytes).unwrap();
    let (k, out) = graph::ops(&m)
        .iter()
        .enumerate()
        .find_map(|(k, op)| {
            let (i, o) = (op.inputs.as_ref()?[0], op.outputs.as_ref()?[0]);
            let deq = graph::op_of(&m, op) == Some(BuiltinOperator::DEQUANTIZE);
            (deq && graph::is_const(&m, &graph::tensors(&m)[i as usize])).then_some((k, o as usize))
        })
        .expect("a DEQUANTIZE of constant weights");
    let d0 = graph::tensors(&m)[out].shape.as_ref().unwrap()[0];
    for (value, why) in [
        (-1, format!("dimension 0 of tensor {out} (")),
        (2 * d0, format!("DEQUANTIZE operator {k} turns tensor")),
    ] {
        let damaged = common::damage::with_dim(&bytes, out, 0, value);
        for mode in [Mode::Float16, Mode::Dynamic] {
            let e = convert::convert(None, &damaged, &no_images(mode)).err();
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&why), "--mode {} with {value}: {e:?}", mode.name());
        }
    }
}

#[test]
fn damaged_shapes_through_int8_calibration_never_panic() {
    // --mode int8 runs the damaged model in LiteRT (calibration): whatever
    // the reader lets through must give LiteRT's error or a model that
    // passes the checks, never a crash. The tiny float classifier, every
    // dimension of every tensor, zero, -1, doubled and inflated.
    let bytes = build_colour_classifier(Variant::FloatSoftmax);
    let photos = common::photo_dir(&["dog.jpg", "chelsea.png"]);
    let mut o = no_images(Mode::Int8);
    o.calibration = Some(photos.path().to_path_buf());
    o.samples = 2;
    let (mut cases, mut converted) = (0, 0);
    for s in common::damage::shape_sites(&bytes) {
        for dim in 0..s.shape.len() {
            for v in [0, -1, 2 * s.shape[dim], 0x1000_0000] {
                let mut m = bytes.clone();
                m[s.at + 4 * dim..s.at + 4 * dim + 4].copy_from_slice(&v.to_le_bytes());
                let what = format!("dimension {dim} of tensor {} set to {v}", s.tensor);
                let r = std::panic::catch_unwind(|| convert::convert(Some(common::runtime()), &m, &o));
                match r {
                    Ok(Ok(out)) => {
                        consistent(&out.bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                        converted += 1;
                    }
                    Ok(Err(ConvertError::InvalidOutput(e))) => panic!("{what}: {e}"),
                    Ok(Err(_)) => {}
                    Err(_) => panic!("{what}: panicked"),
                }
                cases += 1;
            }
        }
    }
    // Some damage LiteRT repairs (a doubled activation it resizes).
    assert!(
        cases > 20 && converted > 0 && converted < cases,
        "{converted} of {cases} converted"
    );
}

/// Data memory a refused conversion may use: the model and its tree, far
/// below the gigabytes the inflated shapes describe.
const REFUSAL_MEMORY: u64 = 512 << 20;

/// `convert --mode MODE` on `model`, its memory capped at [`REFUSAL_MEMORY`].
fn convert_cli(model: &std::path::Path, mode: Mode, out: &std::path::Path) -> common::Output {
    let mut cmd = common::bin();
    cmd.args(["convert", "--mode", mode.name(), "--input"])
        .arg(model)
        .arg("--output")
        .arg(out)
        .arg("--runtime")
        .arg(common::runtime_path());
    if mode == Mode::Int8 {
        cmd.arg("--calibration").arg(common::root().join("tests/photos"));
    }
    common::run_with_memory_limit(&mut cmd, REFUSAL_MEMORY)
}

/// Regression cases of issue 19: dimension 512 of the first constant and
/// of the first activation of the Open Images model (fp16, DEQUANTIZE ops
/// on its weights) set to 0x10000000 (it made `convert` panic with
/// "cannot grow buffer beyond 2 gigabytes" at 3.2 GB RSS, and `--mode
/// float16` write a model LiteRT rejects), to -512, and to 1024 (a
/// constant whose buffer no longer fits its shape). Every mode refuses
/// each with exit code 1, a message naming the tensor, and little memory.
#[test]
fn damaged_dimensions_of_the_oidv4_model_are_refused_by_every_mode() {
    use common::damage::{find_dim, with_dim};
    let bytes = std::fs::read(common::oidv4_model()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for constant in [true, false] {
        let (t, k) = find_dim(&bytes, 512, constant);
        for value in [0x1000_0000, -512, 1024] {
            if !constant && value == 1024 {
                continue; // a plausible activation shape; LiteRT resizes it
            }
            let name = format!("t{t}_d{k}_{value}.tflite");
            let path = dir.path().join(&name);
            std::fs::write(&path, with_dim(&bytes, t, k, value)).unwrap();
            cases.push((path, format!("tensor {t} ("), value));
        }
    }
    let out = dir.path().join("out.tflite");
    for (path, tensor, value) in &cases {
        for mode in [Mode::Float16, Mode::Dynamic, Mode::Float32, Mode::Int8] {
            let o = convert_cli(path, mode, &out);
            let what = format!("--mode {} on {}", mode.name(), path.display());
            assert_eq!(o.code, Some(1), "{what}: {}", o.stderr);
            assert!(!o.stderr.contains("panicked"), "{what}: {}", o.stderr);
            assert!(
                o.stderr.contains("corrupt TFLite model") && o.stderr.contains(tensor.as_str()),
                "{what}: {}",
                o.stderr
            );
            let why = match value {
                0x1000_0000 => "over the bound of 256 MiB per tensor",
                -512 => "is -512",
                _ => "but its buffer",
            };
            assert!(o.stderr.contains(why), "{what}: {}", o.stderr);
            assert!(!out.exists(), "{what} wrote a model");
        }
    }
}

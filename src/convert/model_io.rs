//! `.tflite` bytes <-> the owned flatbuffer object tree (`ModelT`).
//!
//! Reading goes through the verified reader ([`ModelFile::parse`]) first, so
//! corrupt input is an error before the generated unpacking code sees it.
//! Data stored after the flatbuffer (`Buffer.offset/size`, large custom
//! options) is pulled into the tree, so that every later step sees one
//! representation; writing puts it back after the flatbuffer when asked (or
//! when the model would not fit the flatbuffer's 2 GB limit).

use crate::tflite::schema::{self, ModelT};
use crate::tflite::{ModelFile, ModelFileError};

/// Where [`write_model`] puts buffer data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Inline unless the flatbuffer would pass 2 GB (what TFLite's converter does).
    Auto,
    /// Every buffer inside the flatbuffer.
    Inline,
    /// Buffers of at least `min_bytes` after the flatbuffer, 16-aligned.
    External { min_bytes: usize },
}

/// Flatbuffers address with 32-bit offsets; keep well below 2 GB inline.
const INLINE_LIMIT: usize = (1 << 31) - (1 << 27);
const ALIGN: usize = 16;

/// Parses, verifies and unpacks a model, with external data pulled inline.
pub fn read_model_t(bytes: &[u8]) -> Result<ModelT, ModelFileError> {
    let file = ModelFile::parse(bytes)?;
    let mut m = unpack(file.model());
    if let Some(buffers) = m.buffers.as_mut() {
        for (i, b) in buffers.iter_mut().enumerate() {
            if b.offset > 1 {
                b.data = Some(file.buffer_data(i)?.to_vec());
                b.offset = 0;
                b.size = 0;
            }
        }
    }
    for (s, sg) in m.subgraphs.iter_mut().flatten().enumerate() {
        for (k, op) in sg.operators.iter_mut().flatten().enumerate() {
            if op.custom_options.is_none() && op.large_custom_options_offset > 1 {
                let (off, size) = (op.large_custom_options_offset, op.large_custom_options_size);
                let data = usize::try_from(off)
                    .ok()
                    .zip(usize::try_from(size).ok())
                    .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?))
                    .ok_or_else(|| {
                        ModelFileError::Truncated(format!(
                            "custom options of operator {k} in subgraph {s} are stored at bytes \
                             {off}..+{size}, past the end of the {}-byte file",
                            bytes.len()
                        ))
                    })?;
                op.custom_options = Some(data.to_vec());
                op.large_custom_options_offset = 0;
                op.large_custom_options_size = 0;
            }
        }
    }
    Ok(m)
}

/// The generated `Model::unpack`, except that buffer data is copied as
/// one slice instead of byte by byte (megabytes of weights).
fn unpack(model: schema::Model<'_>) -> ModelT {
    ModelT {
        version: model.version(),
        operator_codes: model
            .operator_codes()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        subgraphs: model.subgraphs().map(|x| x.iter().map(|t| t.unpack()).collect()),
        description: model.description().map(str::to_owned),
        buffers: model.buffers().map(|x| {
            x.iter()
                .map(|b| schema::BufferT {
                    data: b.data().map(|d| d.bytes().to_vec()),
                    offset: b.offset(),
                    size: b.size(),
                })
                .collect()
        }),
        metadata_buffer: model.metadata_buffer().map(|x| x.iter().collect()),
        metadata: model.metadata().map(|x| x.iter().map(|t| t.unpack()).collect()),
        signature_defs: model
            .signature_defs()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
    }
}

fn pack(m: &ModelT) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(1 << 20);
    let root = m.pack(&mut fbb);
    schema::finish_model_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// Total bytes of buffer data held in the tree.
pub fn buffer_bytes(m: &ModelT) -> usize {
    m.buffers
        .iter()
        .flatten()
        .map(|b| b.data.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Writes `m` to a temporary `.tflite` file for LiteRT to load (LiteRT
/// reads models from paths); the file goes when the handle is dropped.
pub fn write_temp(m: &mut ModelT) -> std::io::Result<tempfile::NamedTempFile> {
    let bytes = write_model(m, Layout::Auto);
    let file = tempfile::Builder::new().suffix(".tflite").tempfile()?;
    std::fs::write(file.path(), &bytes)?;
    Ok(file)
}

/// Serialises `m`. The tree is borrowed mutably only to move large buffers
/// out while packing; it is restored before returning.
pub fn write_model(m: &mut ModelT, layout: Layout) -> Vec<u8> {
    let min_bytes = match layout {
        Layout::Inline => return pack(m),
        Layout::Auto if buffer_bytes(m) < INLINE_LIMIT => return pack(m),
        Layout::Auto => 1024,
        Layout::External { min_bytes } => min_bytes.max(1),
    };
    let buffers = m.buffers.get_or_insert_with(Vec::new);
    let mut moved: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, b) in buffers.iter_mut().enumerate() {
        if b.data.as_ref().is_some_and(|d| d.len() >= min_bytes) {
            let data = b.data.take().unwrap_or_default();
            // Any non-default value packs to the same size; fixed below.
            b.offset = u64::MAX;
            b.size = data.len() as u64;
            moved.push((i, data));
        }
    }
    let first = pack(m);
    let mut at = first.len().next_multiple_of(ALIGN);
    let mut places = Vec::with_capacity(moved.len());
    for (i, data) in &moved {
        places.push(at);
        m.buffers.as_mut().expect("set above")[*i].offset = at as u64;
        at = (at + data.len()).next_multiple_of(ALIGN);
    }
    let mut out = pack(m);
    debug_assert_eq!(out.len(), first.len(), "offsets changed the flatbuffer size");
    let buffers = m.buffers.as_mut().expect("set above");
    for ((i, data), place) in moved.into_iter().zip(places) {
        out.resize(place, 0);
        out.extend_from_slice(&data);
        let b = &mut buffers[i];
        b.data = Some(data);
        b.offset = 0;
        b.size = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{BufferT, SubGraphT, TensorT};

    fn model(data: Vec<Vec<u8>>) -> ModelT {
        let mut buffers = vec![BufferT::default()];
        let mut tensors = Vec::new();
        for (i, d) in data.into_iter().enumerate() {
            let len = d.len() as i32;
            buffers.push(BufferT {
                data: Some(d),
                ..Default::default()
            });
            tensors.push(TensorT {
                name: Some(format!("t{i}")),
                buffer: i as u32 + 1,
                shape: Some(vec![len]),
                type_: schema::TensorType::UINT8,
                ..Default::default()
            });
        }
        ModelT {
            version: 3,
            buffers: Some(buffers),
            subgraphs: Some(vec![SubGraphT {
                tensors: Some(tensors),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn external_layout_round_trips_and_is_aligned() {
        let big: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let small = vec![1u8, 2, 3];
        let mut m = model(vec![big.clone(), small.clone(), big[..33].to_vec()]);
        let ext = write_model(&mut m, Layout::External { min_bytes: 32 });
        // The tree is restored.
        assert_eq!(m.buffers.as_ref().unwrap()[1].data.as_ref().unwrap(), &big);
        let file = ModelFile::parse(&ext).unwrap();
        let b = file.model().buffers().unwrap();
        assert!(b.get(1).offset() > 1 && b.get(1).offset() % 16 == 0);
        assert!(b.get(3).offset() % 16 == 0);
        assert_eq!(b.get(2).offset(), 0, "small buffers stay inline");
        assert_eq!(file.buffer_data(1).unwrap(), &big[..]);
        let back = read_model_t(&ext).unwrap();
        let mut back2 = back.clone();
        assert_eq!(back, m);
        // Our unpack is the generated one, faster.
        let file = ModelFile::parse(&ext).unwrap();
        let mut generated = file.model().unpack();
        for b in generated.buffers.iter_mut().flatten() {
            if b.offset > 1 {
                b.data = Some(ext[b.offset as usize..(b.offset + b.size) as usize].to_vec());
                (b.offset, b.size) = (0, 0);
            }
        }
        assert_eq!(generated, m);
        let inline = write_model(&mut back2, Layout::Inline);
        assert_eq!(inline, write_model(&mut m, Layout::Auto));
        assert_eq!(read_model_t(&inline).unwrap(), m);
        // Cutting the external data off is an error.
        assert!(read_model_t(&ext[..ext.len() - 1]).is_err());
    }
}

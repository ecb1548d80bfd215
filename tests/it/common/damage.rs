//! Damaged copies of real models, made by patching bytes in place (no
//! re-serialisation), so that a regression case is a sentence in a test
//! ("dimension 3 of tensor 5 set to 0x10000000") instead of a committed
//! copy of someone else's model.

use edgevision::tflite::ModelFile;

/// One tensor's shape as stored: where its dimensions start in the file.
#[derive(Debug, Clone)]
pub struct ShapeSite {
    pub subgraph: usize,
    pub tensor: usize,
    pub shape: Vec<i32>,
    /// Byte offset of dimension 0 (little-endian i32s follow).
    pub at: usize,
    /// Whether the tensor has data (a constant).
    pub constant: bool,
}

/// Every non-empty shape of every subgraph of `bytes` (a valid model).
pub fn shape_sites(bytes: &[u8]) -> Vec<ShapeSite> {
    let file = ModelFile::parse(bytes).expect("a valid model");
    let model = file.model();
    let mut sites = Vec::new();
    for (s, sg) in model.subgraphs().into_iter().flatten().enumerate() {
        for (t, tensor) in sg.tensors().into_iter().flatten().enumerate() {
            let Some(shape) = tensor.shape().filter(|s| !s.is_empty()) else {
                continue;
            };
            let at = shape.bytes().as_ptr() as usize - bytes.as_ptr() as usize;
            let constant = tensor.buffer() != 0
                && file
                    .buffer_data(tensor.buffer() as usize)
                    .is_ok_and(|d| !d.is_empty());
            sites.push(ShapeSite {
                subgraph: s,
                tensor: t,
                shape: shape.iter().collect(),
                at,
                constant,
            });
        }
    }
    sites
}

/// The first tensor of subgraph 0 (constant or not) with a dimension of
/// `value`: (tensor, dimension).
pub fn find_dim(bytes: &[u8], value: i32, constant: bool) -> (usize, usize) {
    shape_sites(bytes)
        .iter()
        .filter(|s| s.subgraph == 0 && s.constant == constant)
        .find_map(|s| Some((s.tensor, s.shape.iter().position(|&d| d == value)?)))
        .unwrap_or_else(|| panic!("no tensor (constant: {constant}) has a dimension {value}"))
}

/// `bytes` with dimension `dim` of tensor `tensor` of subgraph 0 set to `value`.
pub fn with_dim(bytes: &[u8], tensor: usize, dim: usize, value: i32) -> Vec<u8> {
    let site = shape_sites(bytes)
        .into_iter()
        .find(|s| s.subgraph == 0 && s.tensor == tensor)
        .expect("tensor with a shape");
    assert!(
        dim < site.shape.len(),
        "tensor {tensor} has shape {:?}",
        site.shape
    );
    let mut out = bytes.to_vec();
    let at = site.at + 4 * dim;
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    out
}

//! A small builder of one-subgraph models, for tests: the int8 planner's
//! unit tests and the integration tests' hand-built tiny models use it
//! instead of each spelling out the flatbuffer object tree.

use crate::tflite::schema::{
    BufferT, BuiltinOperator, BuiltinOptionsT, ModelT, OperatorCodeT, OperatorT, QuantizationParametersT,
    SubGraphT, TensorT, TensorType,
};

/// Accumulates tensors, constant buffers, opcodes and operators of one subgraph.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    tensors: Vec<TensorT>,
    buffers: Vec<BufferT>,
    opcodes: Vec<OperatorCodeT>,
    operators: Vec<OperatorT>,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphBuilder {
    pub fn new() -> Self {
        // Buffer 0 is the empty sentinel every non-constant tensor points at.
        GraphBuilder {
            tensors: Vec::new(),
            buffers: vec![BufferT::default()],
            opcodes: Vec::new(),
            operators: Vec::new(),
        }
    }

    /// Adds a tensor; `data` (little-endian bytes) makes it a constant,
    /// `quant` gives it per-tensor (scale, zero point).
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[i32],
        ty: TensorType,
        quant: Option<(f32, i64)>,
        data: Option<Vec<u8>>,
    ) -> i32 {
        let buffer = match data {
            Some(bytes) => {
                self.buffers.push(BufferT {
                    data: Some(bytes),
                    ..Default::default()
                });
                (self.buffers.len() - 1) as u32
            }
            None => 0,
        };
        self.tensors.push(TensorT {
            name: Some(name.to_string()),
            shape: Some(shape.to_vec()),
            type_: ty,
            buffer,
            has_rank: true,
            quantization: quant.map(|(scale, zero_point)| {
                Box::new(QuantizationParametersT {
                    scale: Some(vec![scale]),
                    zero_point: Some(vec![zero_point]),
                    ..Default::default()
                })
            }),
            ..Default::default()
        });
        (self.tensors.len() - 1) as i32
    }

    /// A float32 activation (no data).
    pub fn float(&mut self, name: &str, shape: &[i32]) -> i32 {
        self.tensor(name, shape, TensorType::FLOAT32, None, None)
    }

    /// A float32 constant holding `values`.
    pub fn float_const(&mut self, name: &str, shape: &[i32], values: &[f32]) -> i32 {
        self.tensor(name, shape, TensorType::FLOAT32, None, Some(f32_bytes(values)))
    }

    /// Index of the opcode for a builtin op, added (version 1) on first use.
    pub fn opcode(&mut self, op: BuiltinOperator) -> u32 {
        if let Some(i) = self.opcodes.iter().position(|c| c.builtin_code == op) {
            return i as u32;
        }
        self.opcodes.push(OperatorCodeT {
            builtin_code: op,
            // Readers of old files look only at the deprecated i8 field.
            deprecated_builtin_code: op.0.min(127) as i8,
            version: 1,
            custom_code: None,
        });
        (self.opcodes.len() - 1) as u32
    }

    /// Appends an op with one output; returns its index.
    pub fn op(
        &mut self,
        code: BuiltinOperator,
        inputs: &[i32],
        output: i32,
        options: BuiltinOptionsT,
    ) -> usize {
        let opcode_index = self.opcode(code);
        self.operators.push(OperatorT {
            opcode_index,
            inputs: Some(inputs.to_vec()),
            outputs: Some(vec![output]),
            builtin_options: options,
            ..Default::default()
        });
        self.operators.len() - 1
    }

    /// The model: one subgraph named "main" with these inputs and outputs.
    pub fn finish(self, inputs: &[i32], outputs: &[i32], description: &str) -> ModelT {
        let sg = SubGraphT {
            tensors: Some(self.tensors),
            inputs: Some(inputs.to_vec()),
            outputs: Some(outputs.to_vec()),
            operators: Some(self.operators),
            name: Some("main".into()),
            ..Default::default()
        };
        ModelT {
            version: 3,
            description: Some(description.into()),
            operator_codes: Some(self.opcodes),
            subgraphs: Some(vec![sg]),
            buffers: Some(self.buffers),
            ..Default::default()
        }
    }
}

/// `.tflite` bytes of `model`: packed as is, buffers inline.
pub fn to_bytes(model: &ModelT) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let root = model.pack(&mut fbb);
    fbb.finish(root, Some("TFL3"));
    fbb.finished_data().to_vec()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#!/usr/bin/env python3
"""The peer `edgevision convert --mode int8` is compared with: Google's
ai-edge-quantizer (static int8 weights and activations), on the same float
model and calibration photos. Used for benchmarks only, never by the tests.

    python3 -m venv .cache/quantizer-peer
    .cache/quantizer-peer/bin/pip install ai-edge-quantizer==0.10.0 pillow==13.0.0
    .cache/quantizer-peer/bin/python scripts/quantizer-peer.py \\
        models/ssd_mobilenet_v2_oidv4_fp16.tflite out/oid_aq_int8.tflite \\
        tests/photos/astronaut.png tests/photos/chelsea.png ...

The quantizer cannot read this model as shipped, so two edits come first:
its fp16 weights sit behind DEQUANTIZE ops (the quantizer then finds no bias
data), and it has no SignatureDef (the quantizer calibrates per signature).
Here each constant DEQUANTIZE output becomes a float32 constant and a
`serving_default` signature names the subgraph's inputs and outputs.
Photos are resized (bilinear) to 300x300 and scaled to [-1, 1], as
edgevision's pre-processing does for this model.
"""
import sys

import flatbuffers
import numpy as np
from PIL import Image
from ai_edge_litert import schema_py_generated as schema
from ai_edge_quantizer import quantizer, recipe


def prepared(path: str) -> bytes:
    """The model with fp16 constants folded to float32 and a signature."""
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    kept = []
    for op in graph.operators:
        src = graph.tensors[op.inputs[0]]
        data = model.buffers[src.buffer].data
        if (codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE
                and src.type == schema.TensorType.FLOAT16 and data is not None and len(data)):
            values = np.frombuffer(bytes(bytearray(data)), np.float16).astype(np.float32)
            buf = schema.BufferT()
            buf.data = np.frombuffer(values.tobytes(), np.uint8)
            model.buffers.append(buf)
            graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
            continue
        kept.append(op)
    graph.operators = kept

    def tensor_map(i: int):
        m = schema.TensorMapT()
        m.name, m.tensorIndex = graph.tensors[i].name, i
        return m

    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = b"serving_default", 0
    sig.inputs = [tensor_map(i) for i in graph.inputs]
    sig.outputs = [tensor_map(i) for i in graph.outputs]
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    src, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
    model = prepared(src)
    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    from ai_edge_litert.interpreter import Interpreter
    sig = Interpreter(model_content=model).get_signature_list()["serving_default"]
    name = sig["inputs"][0]
    samples = []
    for p in photos:
        img = Image.open(p).convert("RGB").resize((300, 300), Image.BILINEAR)
        x = (np.asarray(img, np.float32) - 127.5) / 127.5
        samples.append({name: x[None]})
    calibration = qt.calibrate({"serving_default": samples})
    qt.quantize(calibration).export_model(out, overwrite=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/reference/coco_quant.json: the detections that LiteRT's own
Python interpreter gives for the quantized COCO SSD on the test photos.

The Rust tests compare edgevision's boxes against these (IoU >= 0.8). The
reference was written once with this script; rerun it after `scripts/setup`:

    python3 -m venv .cache/refenv
    .cache/refenv/bin/pip install ai-edge-litert==2.3.0 pillow==11.3.0 numpy==2.3.5
    .cache/refenv/bin/python scripts/make-reference.py

Pre-processing is what the model asks for and what edgevision does: RGB,
plain (aspect-distorting) bilinear resize to the input size, raw uint8.
"""
import json
import pathlib
import sys

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "ssd_mobilenet_v2_coco_quant.tflite"
PHOTOS = ["dog.jpg", "person.jpg", "horses.jpg", "giraffe.jpg", "eagle.jpg",
          "chelsea.png", "coffee.png", "motorcycle_left.png"]
MIN_SCORE = 0.3


def main() -> int:
    interp = Interpreter(model_path=str(MODEL), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    _, h, w, _ = inp["shape"]
    outs = interp.get_output_details()
    result = {"model": MODEL.name, "min_score": MIN_SCORE, "images": {}}
    for name in PHOTOS:
        img = Image.open(ROOT / "tests" / "photos" / name).convert("RGB")
        resized = img.resize((w, h), Image.BILINEAR)
        interp.set_tensor(inp["index"], np.asarray(resized, dtype=np.uint8)[None])
        interp.invoke()
        boxes, classes, scores, count = (interp.get_tensor(o["index"]) for o in outs)
        dets = []
        for i in range(int(count[0])):
            if scores[0, i] < MIN_SCORE:
                continue
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[0, i])
            dets.append({
                "class_id": int(classes[0, i]),
                "score": round(float(scores[0, i]), 4),
                "box": [round(xmin * img.width, 2), round(ymin * img.height, 2),
                        round(xmax * img.width, 2), round(ymax * img.height, 2)],
            })
        result["images"][name] = {"width": img.width, "height": img.height, "detections": dets}
    out = ROOT / "tests" / "reference" / "coco_quant.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

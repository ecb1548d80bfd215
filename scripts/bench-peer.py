#!/usr/bin/env python3
"""The Python peer edgevision is measured against, and its input video.

    bench-peer.py make-video OUT.mjpg [--frames 300]
        Writes 640x480 MJPEG frames (concatenated JPEGs, as `ffmpeg -f mjpeg`
        writes) that pan slowly across the test photos.

    bench-peer.py run MODEL VIDEO.mjpg [--threads 2] [--frames 300]
        A sequential loop as a Python user writes it: OpenCV decodes each
        MJPEG frame, resizes it to the model input, LiteRT runs the model,
        detections are filtered by confidence, boxes and labels are drawn
        with cv2, and the frame is JPEG-encoded with cv2. Prints one JSON
        object: frames, seconds, fps, threads, per-stage mean milliseconds.

scripts/bench sets up the pinned environment and runs both.
"""
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PHOTOS = ["dog.jpg", "person.jpg", "horses.jpg", "kite.jpg", "giraffe.jpg", "eagle.jpg",
          "chelsea.png", "coffee.png", "motorcycle_left.png", "astronaut.png"]


def make_video(out: str, frames: int) -> None:
    from PIL import Image
    import io
    per_photo = max(1, frames // len(PHOTOS))
    written = 0
    with open(out, "wb") as f:
        while written < frames:
            name = PHOTOS[(written // per_photo) % len(PHOTOS)]
            img = Image.open(ROOT / "tests" / "photos" / name).convert("RGB")
            t = (written % per_photo) / per_photo
            # Crop a 4:3 window at 80% of the photo, moving left to right.
            cw = int(min(img.width, img.height * 4 / 3) * 0.8)
            ch = int(cw * 3 / 4)
            x = int((img.width - cw) * t)
            y = (img.height - ch) // 2
            frame = img.crop((x, y, x + cw, y + ch)).resize((640, 480), Image.BILINEAR)
            buf = io.BytesIO()
            frame.save(buf, format="JPEG", quality=85)
            f.write(buf.getvalue())
            written += 1
    print(f"wrote {written} frames to {out}")


def split_jpegs(data: bytes):
    start = 0
    while True:
        soi = data.find(b"\xff\xd8", start)
        if soi < 0:
            return
        eoi = data.find(b"\xff\xd9", soi + 2)
        if eoi < 0:
            return
        yield data[soi:eoi + 2]
        start = eoi + 2


def run(model: str, video: str, threads: int, frames: int) -> None:
    import cv2
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=model, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    _, h, w, _ = inp["shape"]
    outs = interp.get_output_details()
    jpegs = list(split_jpegs(pathlib.Path(video).read_bytes()))
    stages = {"decode": 0.0, "preprocess": 0.0, "infer": 0.0, "annotate": 0.0, "encode": 0.0}
    # Warm up once, as edgevision's bench does when it builds its interpreters.
    interp.set_tensor(inp["index"], np.zeros((1, h, w, 3), dtype=np.uint8))
    interp.invoke()
    t_start = time.perf_counter()
    for i in range(frames):
        data = jpegs[i % len(jpegs)]
        t0 = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        interp.set_tensor(inp["index"], rgb[None])
        t2 = time.perf_counter()
        interp.invoke()
        boxes, classes, scores, count = (interp.get_tensor(o["index"]) for o in outs)
        t3 = time.perf_counter()
        fh, fw = bgr.shape[:2]
        for k in range(int(count[0])):
            if scores[0, k] < 0.5:
                continue
            ymin, xmin, ymax, xmax = boxes[0, k]
            p1 = (int(xmin * fw), int(ymin * fh))
            p2 = (int(xmax * fw), int(ymax * fh))
            cv2.rectangle(bgr, p1, p2, (0, 255, 0), 2)
            cv2.putText(bgr, f"{int(classes[0, k])} {int(scores[0, k] * 100)}%", (p1[0], max(p1[1] - 4, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
        t4 = time.perf_counter()
        ok, _ = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
        t5 = time.perf_counter()
        assert ok
        for k, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[k] += dt
    seconds = time.perf_counter() - t_start
    print(json.dumps({
        "frames": frames, "seconds": seconds, "fps": frames / seconds, "threads": threads,
        "stage_ms": {k: v / frames * 1e3 for k, v in stages.items()},
        "frame_ms": seconds / frames * 1e3,
    }))


def main(argv):
    import argparse
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    mv = sub.add_parser("make-video")
    mv.add_argument("out")
    mv.add_argument("--frames", type=int, default=300)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("video")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--frames", type=int, default=300)
    a = p.parse_args(argv)
    if a.cmd == "make-video":
        make_video(a.out, a.frames)
    else:
        run(a.model, a.video, a.threads, a.frames)


if __name__ == "__main__":
    main(sys.argv[1:])

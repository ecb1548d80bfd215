#!/usr/bin/env python3
"""The Python peer edgevision is measured against, its input video, and the
comparison of the two.

    bench-peer.py make-video OUT.mjpg [--frames 300]
        Writes 640x480 MJPEG frames (concatenated JPEGs, as `ffmpeg -f mjpeg`
        writes) that pan slowly across the test photos. Needs Pillow.

    bench-peer.py run MODEL VIDEO.mjpg [--threads 2] [--frames 300]
        A sequential loop as a Python user writes it: OpenCV decodes each
        MJPEG frame, resizes it to the model input, LiteRT runs the model,
        detections are filtered by confidence, boxes and labels are drawn
        with cv2, and the frame is JPEG-encoded with cv2. The video is looped
        if it has fewer frames. Prints one JSON object: frames, seconds, fps,
        threads, per-stage mean milliseconds (stage_ms), frame_ms, and
        cpu_ms_per_frame (process CPU time, all threads, over the timed loop).

    bench-peer.py compare --edgevision BIN --video VIDEO.mjpg
                          [--models M1 M2 ...] [--frames 300] [--rounds 3]
                          [--threads 2] [-- EXTRA EDGEVISION BENCH ARGS]
        For each model, runs `rounds` rounds; each round runs the peer (`run`,
        in a fresh process of this Python) and `BIN bench --source
        mjpeg:VIDEO --model M --frames N --json EXTRA...` on the same frames,
        one after the other, swapping which goes first every round.
        edgevision keeps its own defaults (threads, workers) unless EXTRA sets
        them (e.g. `-- --threads 1 --workers 2`); EXTRA is forwarded as is.
        Prints one JSON object on stdout: the CPU, and per model the median
        and all fps of both, the median of the per-round ratios
        edgevision/peer, edgevision's latency and CPU per frame, the peer's
        frame_ms and CPU per frame, and every round's raw output. Progress
        goes to stderr.

scripts/bench sets up the pinned environment (scripts/bench-peer-requirements.txt)
and the video, then runs `compare`.
"""
import json
import os
import pathlib
import statistics
import subprocess
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
    c_start = time.process_time()
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
    cpu_seconds = time.process_time() - c_start
    print(json.dumps({
        "frames": frames, "seconds": seconds, "fps": frames / seconds, "threads": threads,
        "stage_ms": {k: v / frames * 1e3 for k, v in stages.items()},
        "frame_ms": seconds / frames * 1e3,
        "cpu_ms_per_frame": cpu_seconds / frames * 1e3,
    }))


DEFAULT_MODELS = [ROOT / "models" / "ssd_mobilenet_v2_coco_int8.tflite",
                  ROOT / "models" / "ssd_mobilenet_v2_coco_quant.tflite"]


def say(msg: str) -> None:
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    print(f"compare: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def cpu_info() -> dict:
    model, flags = None, set()
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    if model is None:
        import platform
        model = platform.machine() or None
    return {
        "model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
    }


def versions(edgevision: str) -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for dist in ("ai-edge-litert", "opencv-python-headless", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        r = subprocess.run([edgevision, "--version"], capture_output=True, text=True, timeout=30)
        out["edgevision"] = r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["edgevision"] = None
    return out


def run_json(cmd: list, what: str) -> dict:
    """Runs cmd, returns the last JSON object line of its stdout."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        die(f"{what} failed (exit {r.returncode}): {' '.join(map(str, cmd))}")
    for line in reversed(r.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    sys.stderr.write(r.stdout[-2000:] + r.stderr[-2000:])
    die(f"{what} printed no JSON object: {' '.join(map(str, cmd))}")


def r3(v):
    return None if v is None else round(v, 3)


def summary(values: list) -> dict:
    """{median, all} over the values that are present (None when none are)."""
    present = [v for v in values if v is not None]
    return {"median": r3(statistics.median(present)) if present else None, "all": [r3(v) for v in values]}


def stage_medians(runs: list) -> dict:
    stages = {}
    for r in runs:
        for k, v in (r.get("stage_ms") or {}).items():
            stages.setdefault(k, []).append(v)
    return {k: r3(statistics.median(v)) for k, v in stages.items()}


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# Keys of an edgevision/peer result that compare summarises itself; every
# other key of the first round (threads, workers, layout, ...) is passed on.
SUMMARISED = {"frames", "seconds", "fps", "stage_ms", "latency_ms", "cpu_ms_per_frame",
              "frame_ms", "source", "model"}


def compare(edgevision: str, video: str, models: list, frames: int, rounds: int,
            threads: int, extra: list) -> None:
    if not os.access(edgevision, os.X_OK):
        die(f"{edgevision} is not an executable (build it: cargo build --release --locked)")
    if not pathlib.Path(video).is_file():
        die(f"no video {video} (make one: bench-peer.py make-video {video})")
    for m in models:
        if not pathlib.Path(m).is_file():
            die(f"no model {m} (scripts/setup fetches the Coral uint8 model, "
                "scripts/make-models makes the int8 default)")
    if frames < 1 or rounds < 1 or threads < 1:
        die("--frames, --rounds and --threads must be at least 1")
    video_frames = sum(1 for _ in split_jpegs(pathlib.Path(video).read_bytes()))
    if video_frames == 0:
        die(f"{video} holds no JPEG frames")
    if video_frames < frames:
        say(f"{video} has {video_frames} frames; both loop it to make {frames}")

    cpu = cpu_info()
    load_before = load_average()
    say(f"CPU {cpu['model']}, {cpu['cores']} cores, avx512_vnni={cpu['avx512_vnni']}, "
        f"avx_vnni={cpu['avx_vnni']}; {len(models)} model(s) x {rounds} round(s) x {frames} frames")
    results = {}
    for model in models:
        name = pathlib.Path(model).name
        peer_cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "run", str(model), video,
                    "--threads", str(threads), "--frames", str(frames)]
        ev_cmd = [edgevision, "bench", "--source", f"mjpeg:{video}", "--model", str(model),
                  "--frames", str(frames), "--json", *extra]
        per_round = []
        for i in range(rounds):
            # Swap the order every round, so drift (clock, heat, cache) hits both alike.
            order = ["peer", "edgevision"] if i % 2 == 0 else ["edgevision", "peer"]
            got = {}
            for who in order:
                got[who] = run_json(peer_cmd if who == "peer" else ev_cmd, f"{who} on {name}")
            pf, ef = got["peer"].get("fps"), got["edgevision"].get("fps")
            ratio = ef / pf if pf and ef is not None else None
            say(f"{name} round {i + 1}/{rounds}: peer {pf and round(pf, 1)} fps, edgevision "
                f"{ef and round(ef, 1)} fps, ratio {ratio and round(ratio, 2)}")
            per_round.append({"order": order, "ratio": ratio, "peer": got["peer"],
                              "edgevision": got["edgevision"]})
        peer_runs = [r["peer"] for r in per_round]
        ev_runs = [r["edgevision"] for r in per_round]
        peer = {
            "fps": summary([r.get("fps") for r in peer_runs]),
            "frame_ms": summary([r.get("frame_ms") for r in peer_runs]),
            "cpu_ms_per_frame": summary([r.get("cpu_ms_per_frame") for r in peer_runs]),
            "stage_ms": stage_medians(peer_runs),
        }
        peer.update({k: v for k, v in peer_runs[0].items() if k not in SUMMARISED})
        ev = {
            "fps": summary([r.get("fps") for r in ev_runs]),
            "latency_ms": {
                q: summary([(r.get("latency_ms") or {}).get(q) for r in ev_runs]) for q in ("p50", "p99")
            },
        }
        if any("cpu_ms_per_frame" in r for r in ev_runs):
            ev["cpu_ms_per_frame"] = summary([r.get("cpu_ms_per_frame") for r in ev_runs])
        ev["stage_ms"] = stage_medians(ev_runs)
        ev.update({k: v for k, v in ev_runs[0].items() if k not in SUMMARISED})
        results[str(model)] = {
            "ratio": summary([r["ratio"] for r in per_round]),
            "peer": peer,
            "edgevision": ev,
            "rounds": per_round,
        }
        say(f"{name}: median peer {peer['fps']['median']} fps, edgevision {ev['fps']['median']} fps, "
            f"ratio {results[str(model)]['ratio']['median']}")
    print(json.dumps({
        "cpu": cpu,
        "versions": versions(edgevision),
        "video": video,
        "video_frames": video_frames,
        "frames": frames,
        "rounds": rounds,
        "peer_threads": threads,
        # 1/5/15-minute load averages: other work on the machine skews both sides.
        "load_average": {"before": load_before, "after": load_average()},
        "edgevision_cmd": [edgevision, "bench", "--source", f"mjpeg:{video}", "--model", "MODEL",
                           "--frames", str(frames), "--json", *extra],
        "ratio": "edgevision fps / peer fps, median of the per-round ratios",
        "models": results,
    }, indent=2))


def main(argv):
    import argparse
    extra = []
    if argv[:1] == ["compare"] and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    mv = sub.add_parser("make-video")
    mv.add_argument("out")
    mv.add_argument("--frames", type=int, default=300)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("video")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--frames", type=int, default=300)
    c = sub.add_parser("compare", usage="%(prog)s --edgevision BIN --video VIDEO [--models M ...] "
                       "[--frames N] [--rounds N] [--threads N] [-- EDGEVISION BENCH ARGS]",
                       epilog="Arguments after `--` go to `edgevision bench` as they are.")
    c.add_argument("--edgevision", required=True, metavar="BIN", help="the edgevision binary")
    c.add_argument("--video", required=True, help="MJPEG file both read (make-video writes one)")
    c.add_argument("--models", nargs="+", default=[str(m) for m in DEFAULT_MODELS], metavar="M",
                   help="models to compare (default: the int8 and the Coral uint8 SSD MobileNet v2)")
    c.add_argument("--frames", type=int, default=300, help="frames per run (default 300)")
    c.add_argument("--rounds", type=int, default=3, help="rounds per model, each runs both (default 3)")
    c.add_argument("--threads", type=int, default=2, help="the peer's LiteRT threads (default 2)")
    a, unknown = p.parse_known_args(argv)
    if unknown:
        hint = " (edgevision bench options go after `--`)" if a.cmd == "compare" else ""
        p.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if a.cmd == "make-video":
        make_video(a.out, a.frames)
    elif a.cmd == "run":
        run(a.model, a.video, a.threads, a.frames)
    else:
        compare(a.edgevision, a.video, a.models, a.frames, a.rounds, a.threads, extra)

if __name__ == "__main__":
    main(sys.argv[1:])

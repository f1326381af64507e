"""Peak memory of a real ComfyUI server upscaling a video: the streaming node vs the IMAGE path.

``COMFYUI_DIR=... COMFYUI_PYTHON=... python benchmarks/video_memory.py [--size 640x360]
[--frames 240,960] [--paths streaming,image] [--json out.json]``

For every (path, length) a fresh server is started (``main.py --cpu``, a throw-away base
directory, this pack linked into custom_nodes), left idle for a moment, then one prompt runs:

- streaming: Load Video -> ParagonSR2 Upscale Video (streaming) -> Save Video;
- image: Load Video -> Get Video Components -> ParagonSR2 Video Upscale -> Create Video (fps and
  audio from the components) -> Save Video (the shipped video template's chain).

Reported: the server's peak RSS above its idle RSS (the kernel's high-water mark VmHWM of the
server process minus VmRSS before the prompt; model loading is included in both paths alike),
the wall time of the prompt, and the frames in the saved file. The clip is a pan across
assets/rocket.jpg with a moving disc and a 440 Hz tone (H.264 + AAC, 24 fps), written with PyAV.
The bundled realtime x2 demo model, default settings. Numbers, not assertions: the structural
bound lives in tests/test_real_comfyui_video.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from comfyui_probe import Install, make_base, process_memory, reset_peak, server_pid, start_server  # noqa: E402

DEMO = "(bundled) ParagonSR2_realtime_x2_demo.safetensors"
FPS = 24
SAMPLE_RATE = 44_100
IDLE_S = 3.0  # let the server settle after start before reading its idle RSS
TEMPORAL = {"temporal_strength": 0.2, "scene_cut_sensitivity": 0.6, "motion_adaptive": False}
TILES = {"tile_size": 0, "frames_per_chunk": 0}


def write_clip(path: Path, frames: int, width: int, height: int) -> None:
    """A pan across a photo with a moving disc, plus a tone: H.264 + AAC in MP4."""
    import av
    from PIL import Image, ImageDraw

    photo = Image.open(ROOT / "assets" / "rocket.jpg").convert("RGB")
    scale = max(width * 1.5 / photo.width, height * 1.2 / photo.height)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
    span_x, span_y = photo.width - width, photo.height - height
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=Fraction(FPS))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for i in range(frames):
            t = (i % 240) / 239  # back and forth every 10 s
            t = t if (i // 240) % 2 == 0 else 1 - t
            left, top = round(span_x * t), round(span_y * (0.5 - 0.5 * np.cos(np.pi * t)))
            frame = photo.crop((left, top, left + width, top + height))
            cx = width * (0.1 + 0.8 * t)
            ImageDraw.Draw(frame).ellipse((cx - 12, height * 0.7, cx + 12, height * 0.7 + 24), fill=(240, 200, 40))
            for packet in video.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        n = round(frames / FPS * SAMPLE_RATE)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
        for start in range(0, n, 1024):
            block = av.AudioFrame.from_ndarray(tone[None, start : start + 1024].copy(), format="flt", layout="mono")
            block.sample_rate, block.pts = SAMPLE_RATE, start
            for packet in audio.encode(block):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def prompt_for(path: str, clip: str) -> dict:
    load = {"1": {"class_type": "LoadVideo", "inputs": {"file": clip}}}
    loader = {
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": DEMO, "sharpness": "auto", "precision": "auto"},
        }
    }
    save = {"class_type": "SaveVideo", "inputs": {"filename_prefix": "video/bench", "format": "auto", "codec": "auto"}}
    if path == "streaming":
        node = {"model": ["2", 0], "video": ["1", 0], **TEMPORAL, **TILES, "codec": "h264", "quality": 16}
        save["inputs"]["video"] = ["3", 0]
        return {**load, **loader, "3": {"class_type": "ParagonSR2UpscaleVideoStreaming", "inputs": node}, "4": save}
    save["inputs"]["video"] = ["5", 0]
    return {
        **load,
        **loader,
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "4": {
            "class_type": "ParagonSR2VideoUpscale",
            "inputs": {"model": ["2", 0], "frames": ["3", 0], **TEMPORAL, **TILES},
        },
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "audio": ["3", 1], "fps": ["3", 2]}},
        "6": save,
    }


def saved_frames(server, outputs: dict, node: str) -> int:
    import io

    import av

    with av.open(io.BytesIO(server.video_bytes(outputs, node))) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


def measure(install: Install, path: str, frames: int, width: int, height: int, clip: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="paragonsr2-vidmem-") as tmp:
        base = make_base(Path(tmp), probe=False)
        shutil.copy(clip, base / "input" / clip.name)
        with start_server(install, base) as server:
            pid = server_pid(server.port)
            if pid is None:
                raise RuntimeError(f"no ComfyUI process on port {server.port} in /proc")
            time.sleep(IDLE_S)
            idle = process_memory(pid, "VmRSS")
            reset_peak(pid)  # peak since now
            t0 = time.monotonic()
            prompt = prompt_for(path, clip.name)
            outputs = server.run(prompt, timeout=3600)
            wall = time.monotonic() - t0
            peak = process_memory(pid, "VmHWM")
            save = next(k for k, n in prompt.items() if n["class_type"] == "SaveVideo")
            written = saved_frames(server, outputs, save)
    return {
        "comfyui": install.version,
        "path": path,
        "frames": frames,
        "size": f"{width}x{height}",
        "idle_mb": idle / 2**20,
        "peak_above_idle_mb": (peak - idle) / 2**20,
        "wall_s": wall,
        "saved_frames": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", default="640x360", help="WxH of the clip (default 640x360)")
    parser.add_argument("--frames", default="240,960", help="clip lengths, comma-separated")
    parser.add_argument("--paths", default="streaming,image", help="streaming and/or image")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    checkout = os.environ.get("COMFYUI_DIR")
    if not checkout:
        raise SystemExit("set COMFYUI_DIR (and COMFYUI_PYTHON, its interpreter) to a ComfyUI checkout")
    install = Install(Path(checkout), os.environ.get("COMFYUI_PYTHON") or sys.executable)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="paragonsr2-clips-") as clips:
        for frames in (int(f) for f in args.frames.split(",")):
            clip = Path(clips) / f"clip_{frames}_{width}x{height}.mp4"
            write_clip(clip, frames, width, height)
            for path in args.paths.split(","):
                row = measure(install, path, frames, width, height, clip)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nComfyUI {install.version}, CPU, {width}x{height} at {FPS} fps, realtime x2 demo, defaults")
    print("| path | frames | server peak RSS above idle | wall | frames saved |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['path']} | {r['frames']} | {r['peak_above_idle_mb']:.0f} MB | {r['wall_s']:.0f} s | "
            f"{r['saved_frames']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

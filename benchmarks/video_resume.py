#!/usr/bin/env python3
"""What resume saves: the command line on one clip, run whole, then interrupted and resumed.

    python benchmarks/video_resume.py [--size 320x180] [--frames 240] [--segment 48] [--model FILE]

1. the whole run (`paragonsr2.py upscale clip -o out --segment-frames N`), timed;
2. the same command again, sent SIGINT once half the segments are committed in its work area
   (`.NAME.paragonsr2-work/`, read from the manifest), timed up to the signal;
3. the same command a third time: it resumes at the first missing segment; timed, and its
   "resuming at frame ..." line printed.
Real subprocesses and a real signal; the bundled realtime x2 demo model by default.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


def make_clip(path: Path, width: int, height: int, frames: int) -> None:
    """A noise picture panning one pixel per frame (every frame differs), H.264 at 24 fps."""
    picture = np.random.default_rng(0).integers(0, 256, (height, width + frames, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:, t : t + width]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def committed_segments(folder: Path) -> int:
    best = 0
    for manifest in folder.glob(".*paragonsr2-work*/**/manifest.json"):
        try:
            best = max(best, len(json.loads(manifest.read_text())["segments"]))
        except (OSError, ValueError, KeyError):
            pass  # being replaced atomically: read it on the next poll
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="320x180")
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--segment", type=int, default=48)
    p.add_argument("--model", type=Path, default=DEMO)
    a = p.parse_args()
    width, height = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="paragonsr2-resume-") as tmp:
        folder = Path(tmp)
        clip = folder / "clip.mp4"
        make_clip(clip, width, height, a.frames)

        def command(out: Path) -> list[str]:
            return [sys.executable, str(ROOT / "paragonsr2.py"), "upscale", str(clip), "-o", str(out)] + [
                "--model", str(a.model), "--segment-frames", str(a.segment), "--overwrite"
            ]  # fmt: skip

        t0 = time.perf_counter()
        subprocess.run(command(folder / "whole.mp4"), check=True, capture_output=True)
        whole = time.perf_counter() - t0

        target = folder / "resumed.mp4"
        half = max(1, (a.frames // a.segment) // 2)
        t0 = time.perf_counter()
        run = subprocess.Popen(command(target), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while committed_segments(folder) < half and run.poll() is None:
            time.sleep(0.1)
        before_signal = time.perf_counter() - t0
        run.send_signal(signal.SIGINT)
        run.communicate()
        kept = committed_segments(folder)

        t0 = time.perf_counter()
        done = subprocess.run(command(target), check=True, capture_output=True, text=True)
        resumed = time.perf_counter() - t0
        said = [line for line in (done.stdout + done.stderr).splitlines() if "resuming" in line]

    print(f"# {a.frames} frames {width}x{height}, segments of {a.segment}, {a.model.name}")
    print("| run | seconds |")
    print("|---|---|")
    print(f"| whole run | {whole:.1f} |")
    print(f"| interrupted run, until SIGINT (exit {run.returncode}, {kept} segments kept) | {before_signal:.1f} |")
    print(f"| rerun, resumed | {resumed:.1f} |")
    print(f"# {said[0] if said else 'the rerun did not say it resumed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

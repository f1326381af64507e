"""Write assets/sample_clip.mp4: the small clip the video template and the real-ComfyUI test use.

A slow pan across assets/chelsea.png (CC0, see assets/LICENSES.md) with a moving disc, so
temporal stability and motion are visible, plus a 440 Hz sine tone, so a workflow that loses the
audio track is caught. H.264 + AAC in MP4: what ComfyUI's core LoadVideo/SaveVideo read and write.

    python scripts/make_sample_clip.py [out.mp4] [--frames 48] [--fps 24]
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

PACK = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 160, 96  # even sides (yuv420p); x2 output is 320x192
SOURCE_WINDOW = (240, 144)  # crop of chelsea.png per frame, downscaled to WIDTH x HEIGHT
SAMPLE_RATE = 44_100
TONE_HZ = 440.0


def frames(count: int):
    source = Image.open(PACK / "assets" / "chelsea.png").convert("RGB")
    span_x = source.width - SOURCE_WINDOW[0]
    span_y = source.height - SOURCE_WINDOW[1]
    for i in range(count):
        t = i / max(1, count - 1)
        left, top = round(span_x * t), round(span_y * (0.5 - 0.5 * np.cos(np.pi * t)))
        crop = source.crop((left, top, left + SOURCE_WINDOW[0], top + SOURCE_WINDOW[1]))
        frame = crop.resize((WIDTH, HEIGHT), Image.Resampling.BOX)
        draw = ImageDraw.Draw(frame)
        cx = 12 + (WIDTH - 24) * t
        draw.ellipse((cx - 8, 70, cx + 8, 86), fill=(240, 200, 40), outline=(20, 20, 20))
        yield np.asarray(frame)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def write_clip(path: Path, count: int = 48, fps: int = 24) -> None:
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "20", "preset": "slow"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for rgb in frames(count):
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        out.mux(video.encode(None))
        samples = tone(count / fps)
        chunk = 1024  # AAC frame size
        for start in range(0, len(samples), chunk):
            piece = samples[start : start + chunk][None, :]
            frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(PACK / "assets" / "sample_clip.mp4"))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=int, default=24)
    args = parser.parse_args()
    write_clip(Path(args.out), args.frames, args.fps)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()

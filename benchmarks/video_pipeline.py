#!/usr/bin/env python3
"""The streaming video pipeline (engines/video/stream.py) against the network alone.

    python benchmarks/video_pipeline.py [--size 320x180] [--frames 48] [--runs 3]
                                        [--codec h264] [--device cpu] [--model FILE] [--threads N]

On the same clip, in one process, interleaved, median of --runs runs (frames per second):
- network alone: the decoded frames already in memory, upscaled chunk by chunk with the state
  carried (temporal.upscale_video, the chunk size the pipeline picks): the pipeline's ceiling;
- codecs alone: decode the clip and encode the network's output frames, no network;
- serial estimate: 1 / (1/network + 1/codecs), what a pipeline that does not overlap gets;
- pipeline: stream.upscale_file, decode file -> network -> encoded segments -> joined file.
On a GPU the pipeline should approach the network alone (the codecs run on the CPU beside it);
on a CPU the codecs and the network share the same cores, so overlap hides less. On a loaded
machine torch's OpenMP threads wait for each other's descheduled peers (measured 5-10x slower
per frame with 2 threads than with 1 at load 10 on 2 cores): compare with --threads 1 there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paragonsr2 import submodule  # noqa: E402

DEMO_MODEL = ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


def make_clip(path: Path, width: int, height: int, frames: int) -> None:
    """A panning picture of smooth noise plus fine texture, H.264 4:2:0 (a typical input)."""
    import av

    g = torch.Generator().manual_seed(0)
    big = F.interpolate(torch.rand(1, 3, height // 8 + 1, (width + frames * 2) // 8 + 1, generator=g), scale_factor=8)
    big = (0.8 * big + 0.2 * torch.rand(big.shape, generator=g)).clamp(0, 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for t in range(frames):
            rgb = big[0, :, :height, 2 * t : 2 * t + width].permute(1, 2, 0).mul(255).round().byte().numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))

    arch = submodule("paragonsr2_arch")
    torch_engine = submodule("engines.backends.torch_engine")
    container = submodule("engines.video.container")
    encode = submodule("engines.video.encode")
    stream = submodule("engines.video.stream")
    temporal = submodule("engines.video.temporal")
    VideoOptions = submodule("engines.video.options").VideoOptions

    engine = torch_engine.TorchEngine(arch.load_model(args.model), device=args.device, precision="fp32")
    options = VideoOptions(codec=args.codec)
    folder = Path(tempfile.mkdtemp(prefix="paragonsr2-bench-"))
    src = folder / "in.mp4"
    make_clip(src, width, height, args.frames)
    with container.open_source(src) as source:
        info = source.info
        frames = torch.stack([f.image for f in source.frames()])
    chunk = stream.stream_chunk_size(engine, height, width, options)
    sync = torch.cuda.synchronize if engine.info.device.type == "cuda" else (lambda: None)
    outputs: list = []

    def network(keep: bool = False) -> None:
        """Like the pipeline, each chunk's output is dropped once made (keeping 48 outputs alive
        measured 2-4x slower on the CPU: the allocator then page-faults fresh memory)."""
        state = None
        for i in range(0, frames.shape[0], chunk):
            out, state = temporal.upscale_video(
                engine, frames[i : i + chunk], **{**options.upscale_kwargs(), "frames_per_chunk": chunk}, state=state
            )
            if keep:
                outputs.append(out)
        sync()

    def codecs() -> None:
        with container.open_source(src, threads=stream.codec_threads(engine)) as source:
            pts = [f.pts for f in source.frames()]
        out = torch.cat(outputs)
        dst = folder / "codecs.mp4"
        writer = encode.VideoWriter(
            dst,
            width=out.shape[2],
            height=out.shape[1],
            codec=args.codec,
            quality=options.quality,
            source=info,
            time_base=info.time_base,
            rate=info.rate,
            threads=stream.codec_threads(engine),
        )
        for image, p in zip(out, pts):
            writer.write(image, p)
        writer.close()

    def pipeline() -> None:
        stream.upscale_file(engine, src, folder / "out.mp4", options)

    network(keep=True)  # warm-up (allocator, kernels) and the outputs codecs() encodes
    pipeline()
    times: dict[str, list[float]] = {"network": [], "codecs": [], "pipeline": []}
    cpu: dict[str, list[float]] = {"network": [], "codecs": [], "pipeline": []}
    for _ in range(args.runs):
        for name, fn in (("network", network), ("codecs", codecs), ("pipeline", pipeline)):
            start, cpu0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu0)
    fps = {name: args.frames / statistics.median(t) for name, t in times.items()}
    cpu_ms = {name: 1e3 * statistics.median(t) / args.frames for name, t in cpu.items()}
    serial = 1 / (1 / fps["network"] + 1 / fps["codecs"])
    print(
        f"{width}x{height} -> x{engine.info.scale}, {args.frames} frames, {args.codec}, {args.device}, "
        f"torch threads {torch.get_num_threads()}, chunk {chunk}, {os.cpu_count()} CPUs, median of {args.runs}"
    )
    print("| stage | fps (wall) | vs network alone | process CPU ms per frame |")
    print("|---|---|---|---|")
    for name, value, ms in (
        ("network alone", fps["network"], f"{cpu_ms['network']:.1f}"),
        ("codecs alone (decode + encode)", fps["codecs"], f"{cpu_ms['codecs']:.1f}"),
        ("serial estimate", serial, f"{cpu_ms['network'] + cpu_ms['codecs']:.1f}"),
        ("pipeline (upscale_file)", fps["pipeline"], f"{cpu_ms['pipeline']:.1f}"),
    ):
        print(f"| {name} | {value:.1f} | {value / fps['network']:.2f}x | {ms} |")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()

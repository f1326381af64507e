#!/usr/bin/env python3
"""Video pipeline benchmarks (CPU): speed of batched vs frame-by-frame, memory vs clip length,
and temporal stability / ghosting on synthetic clips.

    python benchmarks/video.py [--speed [--fresh]] [--memory] [--stability] [--model FILE]
                               [--variant realtime|stream] [--runs 5] [--size 256]

With no section flag, all three run. Speed: a realtime model (the bundled demo model when
present) on 256x256 frames; "frame by frame" is the spec's recurrence through the model's own
forward one frame at a time (batch 1), "pipeline chunk=k" is engines.video.temporal.upscale_video
with k frames per call. Median of --runs runs, interleaved, in one process. --fresh adds the
same comparison with each method in its own fresh process (what a user sees: a script running
the network alone vs the video node). Memory: each clip
length runs in a fresh subprocess; peak RSS growth during upscale_video minus the output
tensor it returns. Stability: see docs/video.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paragonsr2 import submodule  # noqa: E402

DEMO_MODEL = ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


def load(model_path: str | None, variant: str = "realtime"):
    """The given model file; else the bundled demo model for realtime, an untrained x2 network
    (seeded) for the other variants."""
    arch = submodule("paragonsr2_arch")
    path = Path(model_path) if model_path else (DEMO_MODEL if variant == "realtime" else None)
    if path is not None and path.is_file():
        return arch.load_model(path), path.name
    torch.manual_seed(0)
    return arch.build_model(variant, 2), f"untrained {variant} x2"


def synthetic_clip(h: int, w: int, n: int, seed: int = 0, shift: int = 1) -> torch.Tensor:
    """(n, h, w, 3): a smooth-plus-texture image panning ``shift`` px per frame, plus grain."""
    sys.path.insert(0, str(ROOT / "tests"))
    from packlib import natural_image

    big = natural_image(h, w + shift * n, seed=seed)
    frames = torch.cat([big[..., shift * t : shift * t + w] for t in range(n)])
    g = torch.Generator().manual_seed(seed)
    frames = (frames + 0.02 * torch.randn(frames.shape, generator=g)).clamp(0, 1)
    return frames.permute(0, 2, 3, 1).contiguous()


@torch.inference_mode()
def frame_by_frame(model, frames: torch.Tensor, alpha: float) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2)
    feat, outs = None, []
    for t in range(x.shape[0]):
        out, feat = model(x[t : t + 1], feature_tap=True, prev_feat=feat, alpha=alpha)
        outs.append(out)
    return torch.cat(outs)


def bench_speed(model, name: str, runs: int, size: int = 256, frames_n: int = 16) -> dict:
    """Same process, interleaved runs: the frame-by-frame forward loop vs upscale_video.
    frames_per_chunk=k runs k frames per call; auto (0) is one 256x256 frame per call on CPU."""
    temporal = submodule("engines.video.temporal")
    TorchEngine = submodule("engines.backends.torch_engine").TorchEngine
    engine = TorchEngine(model, device="cpu", precision="fp32")  # warms the CPU allocator for both
    frames = synthetic_clip(size, size, frames_n)
    methods = {"frame by frame (model forward)": lambda: frame_by_frame(engine.model, frames, 0.2)}
    for chunk in (0, 1, 2, 4, 8):
        label = "pipeline auto" if chunk == 0 else f"pipeline chunk={chunk}"
        methods[label] = lambda c=chunk: temporal.upscale_video(engine, frames, frames_per_chunk=c)
    wall = {k: [] for k in methods}
    cpu = {k: [] for k in methods}  # process CPU time: steadier than wall time on a busy machine
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(runs):
        for k, fn in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    base_wall = statistics.median(wall["frame by frame (model forward)"])
    base_cpu = statistics.median(cpu["frame by frame (model forward)"])
    result = {"model": name, "frames": frames_n, "size": f"{size}x{size}", "threads": torch.get_num_threads()}
    print(
        f"\nSpeed, {name}, {frames_n} frames {size}x{size}, CPU fp32, {torch.get_num_threads()} threads, "
        f"same process, median of {runs} (wall clock, and process CPU time):"
    )
    for k in methods:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        result[k] = {
            "fps": frames_n / w,
            "speedup": base_wall / w,
            "cpu_s_per_frame": c / frames_n,
            "cpu_speedup": base_cpu / c,
        }
        print(
            f"  {k:32s} {frames_n / w:6.2f} frames/s  x{base_wall / w:.2f} wall   "
            f"{c / frames_n:6.3f} CPU s/frame  x{base_cpu / c:.2f} CPU"
        )
    return result


_SPEED_CHILD = r"""
import statistics, sys, time, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
import video
mode, variant, path = sys.argv[2], sys.argv[6], sys.argv[7]
size, n, runs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model, _ = video.load(path or None, variant)
frames = video.synthetic_clip(size, size, n)
if mode == "loop":  # what a script does with the network alone: no engine, no allocator warm-up
    model.eval()
    fn = lambda: video.frame_by_frame(model, frames, 0.2)
else:
    engine = video.submodule("engines.backends.torch_engine").TorchEngine(model, device="cpu", precision="fp32")
    fn = lambda: video.submodule("engines.video.temporal").upscale_video(engine, frames)
fn()
times = []
for _ in range(runs):
    t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
print(n / statistics.median(times))
"""


def bench_speed_fresh(
    model_path: str | None, variant: str, runs: int, size: int = 256, frames_n: int = 16, rounds: int = 3
) -> dict:
    """Each method in its own fresh process (alternating, ``rounds`` times; median): a plain
    frame-by-frame loop over the network, as a script without this pack runs it, vs the
    pipeline (whose CPU engine warms the allocator, engines/runtime/memory.py). This is the speed a user
    sees; the same-process table isolates what the pipeline itself adds or saves."""
    fps = {"loop": [], "pipeline": []}
    for _ in range(rounds):
        for mode in fps:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _SPEED_CHILD,
                    str(ROOT),
                    mode,
                    str(size),
                    str(frames_n),
                    str(runs),
                    variant,
                    model_path or "",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            fps[mode].append(float(done.stdout.split()[-1]))
    loop, pipe = statistics.median(fps["loop"]), statistics.median(fps["pipeline"])
    print(
        f"\nSpeed, {variant}, {frames_n} frames {size}x{size}, CPU fp32, each in a fresh process "
        f"(median of {rounds} processes x {runs} runs):"
    )
    print(f"  frame by frame, network alone        {loop:6.2f} frames/s  x1.00")
    print(f"  pipeline auto (video node)           {pipe:6.2f} frames/s  x{pipe / loop:.2f}")
    return {"loop_fps": loop, "pipeline_fps": pipe, "speedup": pipe / loop}


_MEMORY_CHILD = r"""
import resource, sys, json, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
import video
n, size, chunk = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model, _ = video.load(sys.argv[5] or None)
temporal = video.submodule("engines.video.temporal")
engine = video.submodule("engines.backends.torch_engine").TorchEngine(model, device="cpu", precision="fp32")
frames = video.synthetic_clip(size, size, n)
temporal.upscale_video(engine, frames[:chunk], frames_per_chunk=chunk)  # warm-up: kernels, allocator
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to the current RSS
    f.write("5")
before = rss()
out, state = temporal.upscale_video(engine, frames, frames_per_chunk=chunk)
peak = rss()
print(json.dumps({"frames": n, "input_bytes": frames.numel() * 4, "output_bytes": out.numel() * 4,
                  "peak_growth": peak - before}))
"""


def bench_memory(model_path: str | None, size: int = 64, chunk: int = 8) -> dict:
    rows = {}
    print(
        f"\nPeak RSS growth during upscale_video, {size}x{size} frames, chunk={chunk} (input already allocated before):"
    )
    for n in (30, 300):
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(ROOT), str(n), str(size), str(chunk), model_path or ""],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["beyond_output"] = row["peak_growth"] - row["output_bytes"]
        rows[n] = row
        mib = 1 / 2**20
        print(
            f"  {n:4d} frames: input {row['input_bytes'] * mib:6.1f} MiB, "
            f"output {row['output_bytes'] * mib:6.1f} MiB, peak growth {row['peak_growth'] * mib:6.1f} MiB, "
            f"beyond the output {row['beyond_output'] * mib:6.1f} MiB"
        )
    return rows


def bench_stability(model, name: str) -> dict:
    """The clips of tests/test_temporal.py, larger: a noisy still, and a square moving 3 px/frame."""
    sys.path.insert(0, str(ROOT / "tests"))
    from packlib import natural_image

    temporal = submodule("engines.video.temporal")
    engine = submodule("engines.backends.torch_engine").TorchEngine(model, device="cpu", precision="fp32")
    h, w, n, s = 64, 96, 10, model.scale
    g = torch.Generator().manual_seed(0)
    background = natural_image(h, w, seed=21)[0]
    square = natural_image(16, 16, seed=22)[0] * 0.5 + 0.4
    moving = []
    for t in range(n):
        frame = background.clone()
        frame[:, 24:40, 4 + 3 * t : 20 + 3 * t] = square
        moving.append(frame)
    moving = (torch.stack(moving) + 0.03 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    still = (background.expand(n, -1, -1, -1) + 0.03 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)

    def run(clip, alpha, adaptive):
        frames = clip.permute(0, 2, 3, 1).contiguous()
        return temporal.upscale_video(
            engine, frames, temporal_strength=alpha, motion_adaptive=adaptive, scene_cut_sensitivity=0
        )[0]

    def detail(clip, out):
        with torch.inference_mode():
            return out - engine.model.base(clip).clamp(0, 1).permute(0, 2, 3, 1)

    def variation(x, mask=None):
        d = (x[1:] - x[:-1]).abs()
        return (d if mask is None else d[:, mask]).mean().item()

    settings = {
        "none (alpha 0)": (0.0, False),
        "plain (alpha 0.2)": (0.2, False),
        "motion-adaptive (alpha 0.2)": (0.2, True),
        "plain (alpha 0.5)": (0.5, False),
        "motion-adaptive (alpha 0.5)": (0.5, True),
    }
    result = {"model": name, "still": {}, "moving": {}}
    print(f"\nStability, {name}: noisy still clip {w}x{h} x{n} (noise std 0.03); mean |frame t - frame t-1|")
    for label, (a, ma) in settings.items():
        out = run(still, a, ma)
        result["still"][label] = {"output": variation(out), "detail": variation(detail(still, out))}
        print(f"  {label:28s} output {variation(out):.5f}   detail branch {variation(detail(still, out)):.5f}")
    single = run(moving, 0.0, False)
    static = torch.ones(h * s, w * s, dtype=torch.bool)
    static[20 * s : 44 * s] = False
    print(
        "Moving square (3 px/frame): trail = mean |out - single-image out| where the square was or is;"
        " static = detail-branch variation in rows it never reaches"
    )
    for label, (a, ma) in settings.items():
        out = single if a == 0 else run(moving, a, ma)
        trail = []
        for t in range(1, n):
            region = torch.zeros(h * s, w * s, dtype=torch.bool)
            region[22 * s : 42 * s, (2 + 3 * (t - 1)) * s : (22 + 3 * t) * s] = True
            trail.append((out[t] - single[t]).abs()[region].mean().item())
        result["moving"][label] = {
            "trail": sum(trail) / len(trail),
            "static_detail_variation": variation(detail(moving, out), static),
        }
        print(
            f"  {label:28s} trail {sum(trail) / len(trail):.5f}   static detail variation "
            f"{variation(detail(moving, out), static):.5f}"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--stability", action="store_true")
    parser.add_argument("--model", help="a realtime/stream model file (default: the bundled demo model)")
    parser.add_argument(
        "--variant",
        default="realtime",
        choices=["realtime", "stream"],
        help="without --model: realtime = the demo model, stream = an untrained x2 network",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="with --speed: also time each method in its own fresh process"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=256, help="frame side for --speed")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    every = not (args.speed or args.memory or args.stability)
    model, name = load(args.model, args.variant)
    results = {}
    if every or args.speed:
        results["speed"] = bench_speed(model, name, args.runs, args.size)
        if args.fresh:
            results["speed_fresh"] = bench_speed_fresh(args.model, args.variant, args.runs, args.size)
    if every or args.memory:
        results["memory"] = bench_memory(args.model)
    if every or args.stability:
        results["stability"] = bench_stability(model, name)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

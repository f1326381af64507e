"""Scale-out on Ray: what one chunk costs, what Ray adds per task, and 1 vs 2 workers.

    .venv/bin/python benchmarks/distributed.py [--frames 96] [--size 256x144] [--chunk-frames 24] [--compare]

Prints three tables (docs/distributed.md turns them into the throughput model):
1. per-frame and per-chunk costs inside one worker (one thread): decode, the driver's cut scan,
   the warm-up state, upscaling, encoding; seek + encoder start per chunk;
2. Ray's scheduling overhead per task (no-op tasks on a warm 2-worker local cluster),
   sequential round trip and pipelined;
3. the same video job: one process with two threads (the plain command), Ray with 1 worker
   (one thread), Ray with 2 workers (one thread each); medians of --repeats runs on a warm
   cluster (the cluster start and the workers' first import are reported separately).
With --compare it prints only how Ray's output differs from one process's: --lossless (largest
level difference) and the default codec (PSNR). The model is the bundled demo (realtime x2), CPU
only. Ray binds to the machine's address: on a machine whose tests must stay on loopback run it
in a private network namespace (unshare --net, as scripts/test.sh does).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import PACK_ROOT, submodule

cli = submodule("cli")
ray_cluster = submodule("cli.distributed.cluster")
ray_video = submodule("cli.distributed.video")
ray_summary = submodule("cli.distributed.summary")
worker_video = submodule("cli.distributed.worker_video")
video_plan = submodule("cli.video_plan")
container = submodule("engines.video.container")
encode = submodule("engines.video.encode")
remux = submodule("engines.video.remux")
chunks = submodule("engines.video.chunks")
temporal = submodule("engines.video.temporal")
scene_cuts = submodule("engines.video.scene_cuts")
torch_engine = submodule("engines.backends.torch_engine")
arch = submodule("paragonsr2_arch")
MODEL = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


def make_clip(path: Path, frames: int, width: int, height: int) -> None:
    """Three shots of smooth texture panning 2 px per frame (two cuts), H.264, keyframe every 24."""
    g = torch.Generator().manual_seed(0)
    lengths = [frames // 4, frames // 2, frames - frames // 4 - frames // 2]
    av = container.require_av()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "14", "g": "24"}
        for n in lengths:
            base = torch.rand(3, height // 8 + 1, (width + 2 * n) // 8 + 1, generator=g)
            big = torch.nn.functional.interpolate(base[None], size=(height, width + 2 * n), mode="bicubic")[0]
            for t in range(n):
                rgb = (big[:, :, 2 * t : 2 * t + width].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def median_cpu(fn, repeats: int) -> float:
    """CPU seconds of this process (one torch thread): on a machine shared with other jobs the
    wall time mostly measures the wait for a core; this is what an idle core would take."""
    return median_time(fn, repeats, clock=time.process_time)


def chunk_costs(clip: Path, chunk_frames: int, repeats: int) -> dict:
    """Seconds per frame / per chunk inside one worker (torch on one thread), CPU time."""
    torch.set_num_threads(1)
    engine = torch_engine.TorchEngine(arch.load_model(MODEL), device="cpu", precision="fp32")
    info = container.probe(clip)
    with container.open_source(clip) as source:
        decoded = list(source.frames())
    n = len(decoded)
    lr = torch.stack([f.image for f in decoded])
    out = {}
    out["decode"] = median_cpu(lambda: list(worker_video.frames_from(clip, None, 0, n, info.time_base)), repeats) / n
    out["scan"] = median_cpu(lambda: chunks.CutFinder(scene_cuts.DEFAULT_SENSITIVITY).add(lr), repeats) / n
    signature = ("k", lr.shape[1], lr.shape[2])
    out["state"] = (
        median_cpu(lambda: chunks.state_at_frame(lr, temporal_strength=0.2, signature=signature), repeats) / n
    )
    sub = lr[:chunk_frames]
    out["upscale"] = median_cpu(lambda: temporal.upscale_video(engine, sub), repeats) / sub.shape[0]
    hr, _ = temporal.upscale_video(engine, sub)

    def encode_frames(count: int):
        with tempfile.TemporaryDirectory() as d:
            w = encode.VideoWriter(
                Path(d) / "s.mp4", width=hr.shape[2], height=hr.shape[1], rate=Fraction(24), time_base=Fraction(1, 24)
            )
            for i in range(count):
                w.write(hr[i], i)
            w.close()

    per_chunk_encode = median_cpu(lambda: encode_frames(hr.shape[0]), repeats)
    one = median_cpu(lambda: encode_frames(1), repeats)
    out["encode"] = (per_chunk_encode - one) / max(1, hr.shape[0] - 1)
    out["encoder_start"] = max(0.0, one - out["encode"])
    pts = [f.pts for f in decoded]
    target = n // 2 + 5  # mid-GOP: seek lands on the keyframe before and decodes forward
    out["seek_to_frame"] = median_cpu(
        lambda: next(worker_video.frames_from(clip, pts[target], target, 1, info.time_base)), repeats
    )
    return out


def ray_overhead(c, tasks: int) -> dict:
    ray = c.ray

    @ray.remote(num_cpus=1)
    def noop(x):
        return x

    ray.get([noop.remote(i) for i in range(4)])  # both workers up
    t0 = time.perf_counter()
    for i in range(tasks // 4):
        ray.get(noop.remote(i))
    sequential = (time.perf_counter() - t0) / (tasks // 4)
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(tasks)])
    pipelined = (time.perf_counter() - t0) / tasks
    return {"round_trip": sequential, "pipelined": pipelined}


def video_args(clip: Path, out: Path | None, chunk_frames: int, workers: int, lossless=False) -> SimpleNamespace:
    return SimpleNamespace(
        input=clip,
        output=out,
        overwrite=True,
        temporal_strength=0.2,
        scene_cut_sensitivity=None,
        frames_per_chunk=16,
        quiet=True,
        model=MODEL,
        sharpness=None,
        device="cpu",
        backend="torch",
        precision="fp32",
        tile=0,
        workers=workers,
        devices="cpu",
        ray_address=None,
        transfer="shared",
        chunk_frames=chunk_frames,
        lossless=lossless,
        codec=None,
        quality=None,
        factor=None,
        long_side=None,
        segment_frames=240,
        accept_partial=False,
    )


def join_cost(folder: Path, clip: Path, plan, frames: int) -> float:
    """Seconds per frame to join segments and copy audio (the driver's last step)."""
    out = folder / "ray2.mp4"
    target = folder / "joined.mp4"
    return median_cpu(lambda: remux.join_segments([out], target, source=clip), 3) / frames


def model_rows(costs: dict, over: dict, frame_s: float, chunk: int, warm: int) -> tuple[float, float]:
    """(per-frame worker seconds, per-chunk overhead seconds) of the docs' throughput model."""
    # the scan pass (decode + cut scores) runs on the workers too, over ranges of the video
    t_f = costs["decode"] + frame_s + costs["encode"] + costs["decode"] + costs["scan"]
    t_c = (
        over["round_trip"] + costs["seek_to_frame"] + costs["encoder_start"] + warm * (costs["decode"] + costs["state"])
    )
    return t_f, t_c


def print_model(costs, over, join_s, chunk, warm, frame_ms: float | None) -> None:
    frame_s = costs["upscale"] if frame_ms is None else frame_ms / 1e3
    t_f, t_c = model_rows(costs, over, frame_s, chunk, warm)
    label = "measured CPU upscale" if frame_ms is None else f"--frame-ms {frame_ms:g} (given)"
    print(
        f"\n4. throughput model ({label}; per frame t_f = decode + upscale + encode + scan pass = {1e3 * t_f:.1f} ms,"
    )
    print(
        f"   per mid-shot chunk t_c = round trip + seek + encoder start + {warm} warm-up frames = {1e3 * t_c:.1f} ms,"
    )
    print(f"   driver: join {1e3 * join_s:.3f} ms/frame, serial after the tasks)")
    l_min = 19 * t_c / t_f  # L t_f / (t_c + L t_f) >= 0.95
    print(f"   chunk length for overhead < 5 %: L >= 19 t_c / t_f = {l_min:.1f} frames")
    print(f"   {'workers G':>9} {'chunk L':>8} {'efficiency':>10} {'frames/s':>9} {'driver-bound at':>16}")
    driver_fps = 1 / join_s
    for g in (1, 2, 4, 8, 16, 32):
        for length in (24, 240):
            e = length * t_f / (t_c + length * t_f)
            fps = g * e / t_f
            total = 1 / (1 / fps + 1 / driver_fps)  # the join runs after the tasks
            print(f"   {g:>9} {length:>8} {e:>10.3f} {total:>9.2f} {driver_fps:>13.1f} f/s")


def frames_of(path: Path) -> np.ndarray:
    with container.require_av().open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def compare(clip: Path, folder: Path, chunk_frames: int) -> None:
    """Ray (2 workers, chunks of ``chunk_frames``) against one process on the same clip, with
    --lossless and with the default codec (h264 crf 16): the largest level difference, and the
    PSNR of the Ray output against the one-process output (whole clip, and the worst frame)."""
    print(f"\nRay (2 workers, chunks of {chunk_frames}) vs one process, same clip, same options")
    truth = None  # the one-process lossless frames: how far each lossy output is from them
    with ray_cluster.cluster(video_args(clip, None, chunk_frames, 2)) as c:
        for lossless in (True, False):
            name = "lossless" if lossless else "default (h264 crf 16)"
            single, ray = folder / f"single_{lossless}.mp4", folder / f"ray_{lossless}.mp4"
            argv = [str(clip), "-o", str(single), "--overwrite", "--device", "cpu", "--precision", "fp32"]
            argv += ["--quiet", "--model", str(MODEL)] + (["--lossless"] if lossless else [])
            args = video_args(clip, ray, chunk_frames, 2, lossless)
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(argv) == 0
                ray_video.upscale_video(args, ray, video_plan.plan_video(args, clip, ray), 2, running=c)
            a, b = frames_of(single), frames_of(ray)
            worst = min(psnr(x, y) for x, y in zip(a, b))
            differing = int(sum(np.any(x != y) for x, y in zip(a, b)))
            print(
                f"   {name:<24} frames {len(a)}/{len(b)}  max |level difference| {int(np.abs(a - b).max())}  "
                f"PSNR {psnr(a, b):.1f} dB (worst frame {worst:.1f} dB)  frames that differ {differing}"
            )
            if truth is None:
                truth = a
            else:
                print(
                    f"   {'':<24} against the lossless frames: one process {psnr(a, truth):.1f} dB, "
                    f"Ray {psnr(b, truth):.1f} dB"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", default="256x144", help="LR width x height")
    ap.add_argument("--chunk-frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument(
        "--frame-ms",
        type=float,
        default=None,
        help="model: per-frame upscale cost of your GPU (benchmarks/speed.py), instead of the CPU's",
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="only compare Ray's output with one process's (lossless: level difference; default codec: PSNR)",
    )
    opts = ap.parse_args()
    width, height = (int(v) for v in opts.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="paragonsr2-bench-"))
    clip = folder / "clip.mp4"
    make_clip(clip, opts.frames, width, height)
    print(f"clip: {opts.frames} frames {width}x{height} LR, demo model realtime x2, CPU, chunks of {opts.chunk_frames}")
    if opts.compare:
        compare(clip, folder, opts.chunk_frames)
        return

    costs = chunk_costs(clip, opts.chunk_frames, opts.repeats)
    print("\n1. inside one worker (1 thread), CPU ms")
    for name in ("decode", "scan", "state", "upscale", "encode"):
        print(f"   {name + ' per frame':<34} {1e3 * costs[name]:8.2f}")
    for name in ("encoder_start", "seek_to_frame"):
        print(f"   {name.replace('_', ' ') + ' per chunk':<34} {1e3 * costs[name]:8.2f}")

    plan = video_plan.plan_video(video_args(clip, None, opts.chunk_frames, 2), clip, folder / "x.mp4")
    results = {}
    t0 = time.perf_counter()
    with ray_cluster.cluster(video_args(clip, None, opts.chunk_frames, 2)) as c:
        started = time.perf_counter() - t0
        over = ray_overhead(c, opts.tasks)
        print(f"\n2. Ray, local cluster of 2 workers (started in {started:.1f} s)")
        print(f"   round trip per task (submit, run, get)   {1e3 * over['round_trip']:8.2f} ms")
        print(f"   per task, {opts.tasks} pipelined                {1e3 * over['pipelined']:8.2f} ms")
        for label, workers in (("Ray, 1 worker x 1 thread", 1), ("Ray, 2 workers x 1 thread", 2)):
            c.workers, c.threads = workers, 1  # tasks in flight; each worker runs one thread
            args = video_args(clip, folder / f"ray{workers}.mp4", opts.chunk_frames, workers)

            def job(args=args):
                with contextlib.redirect_stdout(io.StringIO()):  # its own summary: not part of these tables
                    ray_video.upscale_video(args, args.output, plan, 2, running=c)
                return ray_summary.last_summary.cpu_seconds

            t0 = time.perf_counter()
            job()  # warms the workers (pack import, model load)
            first = time.perf_counter() - t0
            runs = [timed(job) for _ in range(opts.repeats)]
            results[label] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), first)
    join_s = join_cost(folder, clip, plan, opts.frames)
    single = [
        str(clip),
        "-o",
        str(folder / "single.mp4"),
        "--overwrite",
        "--device",
        "cpu",
        "--quiet",
        "--precision",
        "fp32",
        "--model",
        str(MODEL),
    ]
    base = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)

        def plain():
            with contextlib.redirect_stdout(io.StringIO()):
                cli.main(single)

        runs = [timed_cpu(plain) for _ in range(opts.repeats)]
        base[threads] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    ref = base[2][0]
    print(
        f"\n3. the whole job ({opts.frames} frames), median of {opts.repeats}"
        f"      wall s  frames/s  cpu s  vs 1 process x 2 threads"
    )
    for threads in (1, 2):
        wall, cpu = base[threads]
        print(
            f"   {f'1 process x {threads} thread(s) (plain command)':<40} {wall:7.2f} {opts.frames / wall:9.2f} "
            f"{cpu:6.1f} {ref / wall:8.2f}"
        )
    for label, (wall, cpu, first) in results.items():
        print(
            f"   {label:<40} {wall:7.2f} {opts.frames / wall:9.2f} {cpu:6.1f} {ref / wall:8.2f}"
            f"   (first run {first:.1f} s)"
        )
    (one, cpu1, _), (two, cpu2, _) = results.values()
    print(
        f"   2 workers vs 1: wall-clock efficiency {one / (2 * two):.2f} (1.00 = twice the throughput); "
        f"worker CPU per frame {cpu2 / cpu1:.2f}x the 1-worker run"
    )
    print_model(costs, over, join_s, opts.chunk_frames, chunks.lead_in_frames(0.2), opts.frame_ms)


def timed(job) -> tuple[float, float]:
    """(wall seconds, worker CPU seconds) of a Ray job."""
    t0 = time.perf_counter()
    cpu = job()
    return time.perf_counter() - t0, cpu


def timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


if __name__ == "__main__":
    main()

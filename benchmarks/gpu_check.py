#!/usr/bin/env python3
"""The device check: everything the CPU-only CI cannot prove, in one command on one CUDA GPU.

    python benchmarks/gpu_check.py [--json PATH] [--sections precision,tiling,video,speed]
                                   [--size 512] [--repeats 10] [--require-gpu]

Needs only torch (a CUDA build), numpy, safetensors and this repository. Planned to finish
in well under 8 minutes on one H200 (every model is small; the slowest part is the eager
pro pass in the speed section). Sections:

precision  Each reference model (tests/data/reference, or --reference DIR) on CUDA in fp32,
           fp16 and bf16 against the CPU fp32 output: max and mean abs error. fp32 runs with
           TF32 off (limit 1e-4, the project's float32 tolerance) and again with TF32 on for
           convolutions and matmuls (reported, no limit); fp16/bf16 use the limits of
           tests/test_arch_precision.py (max 0.008 / 0.06, mean 10x smaller). The CPU output is
           also checked against the stored upstream output.
tiling     engines.tiling.runner.upscale_image on CUDA (fp32, TF32 off) against one
           whole-image call, with the cases of tests/test_tiling.py: realtime and stream
           within 1e-5, photo and pro above the PSNR floors (50 / 45 dB); plus a 1024x768 image
           in 256-px tiles per variant in fp16 (reported).
video      engines.video.temporal.upscale_video (batched: whole clip per call) against the
           spec's frame-by-frame recurrence through the model's own forward, CUDA fp32
           (limit 1e-4), per variant; then frames per second of both on 64 frames of 256x256
           (realtime and stream, fp16).
speed      Throughput per variant on a --size square LR input, batch 1: the default fast
           path in fp16 and fp32, and the spec-as-written eager path in fp16
           (paragonsr2_arch.reference_mode); medians of --repeats timed runs after warm-up,
           output megapixels per second, the fast/eager ratio, the fast-vs-eager max abs
           difference, and the peak VRAM of each.
backends   The engine choices: ``auto`` on a GPU ComfyUI manages is torch, elsewhere on CUDA
           TensorRT when installed (no engine is built here) else torch, and torch for bf16;
           OpenVINO refuses CUDA devices (it does not run on NVIDIA GPUs); ONNX Runtime's CUDA
           provider in fp16 against the CPU fp32 output (fp16 limit), when installed.

The JSON report goes to --json PATH, else $OUT/gpu_check.json when $OUT is set, else
./gpu_check.json. A section that raises is recorded with its traceback and counts as a failure;
the other sections still run.

Exit codes: 0 every check passed (or no CUDA device and no --require-gpu: nothing to check,
said on stderr, and the report says "cuda": false); 1 a check failed or a section raised;
2 bad arguments; 3 no CUDA device with --require-gpu.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from packlib import natural_image, psnr  # noqa: E402  (tests' image generator: torch only)
from paragonsr2 import import_pack  # noqa: E402  (the launcher imports the pack as ComfyUI does)

import_pack()  # registers the pack as the package `paragonsr2_pack`; the sections import from it

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA = 0, 1, 2, 3
SECTIONS = ("precision", "tiling", "video", "speed", "backends")
VARIANTS = ("realtime", "stream", "photo", "pro")

FP32_LIMIT = 1e-4  # the project's float32 tolerance
TILED_EXACT = 1e-5  # tests/test_tiling.py: realtime/stream tiles equal the whole image
LOW_PRECISION_LIMITS = {"fp16": (0.008, 0.0008), "bf16": (0.06, 0.006)}  # tests/test_arch_precision.py
PSNR_FLOOR = {"photo": 50.0, "pro": 45.0}  # tests/test_tiling.py
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# The device under test. --cpu-dry-run swaps in the CPU (tiny sizes, no limits on speed) so the
# script's own code paths can be exercised on a machine without a GPU before a GPU day.
DEVICE = torch.device("cuda")


# ---------------------------------------------------------------------------- helpers


@contextmanager
def tf32(enabled: bool):
    """Set cuDNN's and cuBLAS's TF32 use for a block (conv TF32 is on by default in PyTorch)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def errors(a: torch.Tensor, b: torch.Tensor) -> dict:
    diff = (a.detach().float().cpu() - b.detach().float().cpu()).abs()
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(), "finite": bool(torch.isfinite(a).all())}


def bhwc(h: int, w: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return natural_image(h, w, seed=seed, batch=batch).permute(0, 2, 3, 1).contiguous()


def reference_models(reference: Path) -> dict:
    """variant -> (model, io tensors, case) for the first x2 case of every variant."""
    from safetensors.torch import load_file

    from paragonsr2_pack import paragonsr2_arch as arch

    cases = json.loads((reference / "manifest.json").read_text())["cases"]
    found = {}
    for case in cases:
        if case["scale"] == 2 and case["variant"] not in found:
            model = arch.load_model(reference / case["weights"], upsampler_alpha=case["upsampler_alpha"])
            found[case["variant"]] = (model, load_file(str(reference / case["io"])), case)
    return found


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def cuda_timer(fn, repeats: int, warmup: int = 3) -> dict:
    """Median and min milliseconds of fn() measured with CUDA events, after warm-up."""
    if DEVICE.type != "cuda":  # dry run: wall clock, one warm-up
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
        return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeats}
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeats}


def peak_vram_mb(fn) -> float | None:
    if DEVICE.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


class Checks:
    """Collects named pass/fail results so the report lists every check with its numbers."""

    def __init__(self):
        self.failed: list[str] = []

    def limit(self, name: str, value: float, limit: float, *, above: bool = False) -> dict:
        ok = value >= limit if above else value <= limit
        if not ok:
            self.failed.append(f"{name}: {value:.3g} {'<' if above else '>'} {limit:.3g}")
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {value:.3g} ({'>=' if above else '<='} {limit:.3g})", flush=True)
        return {"value": value, "limit": limit, "ok": ok}


# ---------------------------------------------------------------------------- sections


@torch.inference_mode()
def check_precision(models: dict, checks: Checks, args) -> dict:
    cuda = DEVICE
    report = {}
    for variant, (model, io, case) in models.items():
        x_small = io["xb"]
        # several attention windows, edges off the grid (a dry run on the CPU keeps it small)
        x_large = natural_image(*((192, 224) if DEVICE.type == "cuda" else (40, 56)), seed=1)
        row = {"case": case["case"]}
        cpu_small = model(x_small)
        row["cpu_vs_upstream"] = checks.limit(
            f"{variant} CPU fp32 vs stored upstream output", errors(cpu_small, io["y_batch"])["max_abs"], FP32_LIMIT
        )
        large = f"{x_large.shape[-2]}x{x_large.shape[-1]}"
        cpu = {"xb": cpu_small, large: model(x_large)}
        for name, dtype in DTYPES.items():
            device_model = copy.deepcopy(model).to(cuda, dtype)
            for label, x in (("xb", x_small), (large, x_large)):
                if name == "fp32":
                    with tf32(False):
                        out = device_model(x.to(cuda, dtype))
                    err = errors(out, cpu[label])
                    err["limit"] = checks.limit(
                        f"{variant} {label} {DEVICE.type} fp32 (TF32 off) max", err["max_abs"], FP32_LIMIT
                    )
                    with tf32(True):
                        err["tf32_on_max_abs"] = errors(device_model(x.to(cuda, dtype)), cpu[label])["max_abs"]
                else:
                    err = errors(device_model(x.to(cuda, dtype)), cpu[label])
                    max_limit, mean_limit = LOW_PRECISION_LIMITS[name]
                    err["limit_max"] = checks.limit(
                        f"{variant} {label} {DEVICE.type} {name} max", err["max_abs"], max_limit
                    )
                    err["limit_mean"] = checks.limit(
                        f"{variant} {label} {DEVICE.type} {name} mean", err["mean_abs"], mean_limit
                    )
                    if not err["finite"]:
                        checks.failed.append(f"{variant} {label} {DEVICE.type} {name}: non-finite output")
                row[f"{name}_{label}"] = err
            del device_model
        report[variant] = row
    return report


def check_tiling(models: dict, checks: Checks, args) -> dict:
    from paragonsr2_pack.engines.backends import torch_engine
    from paragonsr2_pack.engines.tiling import runner as tiling

    report = {}

    def whole(engine, image):
        # One tile covering the image, through the same runner: whatever the runner does to a
        # whole image (padding to the window grid, alpha, clamping) applies to both sides.
        side = -(-max(image.shape[1:3]) // 16) * 16
        return tiling.upscale_image(engine, image, tile_size=side)

    with tf32(False):
        for variant, (model, _io, _case) in models.items():
            engine = torch_engine.TorchEngine(model, DEVICE, "fp32")
            row = {}
            if variant in ("realtime", "stream"):
                cases = {"realtime": [((37, 83), 16), ((37, 83), 32)], "stream": [((45, 70), 32)]}[variant]
                for size, tile in cases:
                    image = bhwc(*size, batch=2)
                    err = errors(tiling.upscale_image(engine, image, tile_size=tile), whole(engine, image))
                    err["limit"] = checks.limit(
                        f"{variant} {size} tile {tile} fp32 tiled vs whole", err["max_abs"], TILED_EXACT
                    )
                    row[f"{size[0]}x{size[1]}_tile{tile}"] = err
            else:
                image = bhwc(100, 120, seed=3)
                value = psnr(tiling.upscale_image(engine, image, tile_size=32), whole(engine, image))
                row["100x120_tile32_psnr_db"] = checks.limit(
                    f"{variant} 100x120 tile 32 fp32 PSNR dB", value, PSNR_FLOOR[variant], above=True
                )
            del engine
            half = torch_engine.TorchEngine(model, DEVICE, "fp16")
            h, w, tile = (768, 1024, 256) if DEVICE.type == "cuda" else (48, 64, 32)
            image = bhwc(h, w, seed=5)
            out = tiling.upscale_image(half, image, tile_size=tile)
            ref = whole(half, image)
            label = f"{w}x{h}_tile{tile}_fp16"
            row[label] = {**errors(out, ref), "psnr_db": psnr(out, ref)}
            print(f"  {variant} {label}: {row[label]}", flush=True)
            del half
            report[variant] = row
    return report


@torch.inference_mode()
def frame_by_frame(model, frames_bhwc: torch.Tensor, alpha: float) -> torch.Tensor:
    """The spec's recurrence (docs/network.md, section 7) one frame at a time via forward()."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = frames_bhwc.permute(0, 3, 1, 2).to(device, dtype)
    outs, feat = [], None
    for t in range(x.shape[0]):
        if feat is None:
            out, feat = model(x[t : t + 1], feature_tap=True)
        else:
            out, feat = model(x[t : t + 1], feature_tap=True, prev_feat=feat, alpha=alpha)
        outs.append(out)
    return torch.cat(outs).clamp(0, 1).permute(0, 2, 3, 1).float().cpu()


def clip(h: int, w: int, n: int, shift: int = 2, seed: int = 0) -> torch.Tensor:
    big = natural_image(h, w + shift * n, seed=seed)
    return torch.cat([big[..., shift * t : shift * t + w] for t in range(n)]).permute(0, 2, 3, 1).contiguous()


def check_video(models: dict, checks: Checks, args) -> dict:
    from paragonsr2_pack.engines.backends import torch_engine
    from paragonsr2_pack.engines.video import temporal

    alpha = 0.2
    report = {}
    with tf32(False):
        for variant, (model, _io, _case) in models.items():
            frames = clip(64, 80, 8)
            engine = torch_engine.TorchEngine(model, DEVICE, "fp32")
            batched, _state = temporal.upscale_video(
                engine,
                frames,
                temporal_strength=alpha,
                scene_cut_sensitivity=0,
                tile_size=512,
                frames_per_chunk=len(frames),
            )
            err = errors(batched, frame_by_frame(engine.model, frames, alpha))
            err["limit"] = checks.limit(
                f"{variant} 8 frames fp32 batched vs frame by frame", err["max_abs"], FP32_LIMIT
            )
            report[variant] = {"accuracy_64x80x8": err}
            del engine
    for variant in ("realtime", "stream"):
        model = models[variant][0]
        engine = torch_engine.TorchEngine(model, DEVICE, "fp16")
        frames = clip(256, 256, 64) if DEVICE.type == "cuda" else clip(32, 32, 4)

        def batched(engine=engine, frames=frames):
            temporal.upscale_video(
                engine,
                frames,
                temporal_strength=alpha,
                scene_cut_sensitivity=0,
                tile_size=512,
                frames_per_chunk=len(frames),
            )

        def single(engine=engine, frames=frames):
            frame_by_frame(engine.model, frames, alpha)

        timings = {}
        for name, fn in (("pipeline", batched), ("frame_by_frame", single)):
            fn()  # warm-up (cuDNN autotuning, allocator)
            synchronize()
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                synchronize()
                runs.append(time.perf_counter() - t0)
            timings[name] = {"fps": len(frames) / statistics.median(runs), "median_s": statistics.median(runs)}
        timings["pipeline_over_frame_by_frame"] = timings["pipeline"]["fps"] / timings["frame_by_frame"]["fps"]
        print(f"  {variant} 64 frames 256x256 fp16: {timings}", flush=True)
        report[variant]["speed_256x256x64_fp16"] = timings
        del engine
    return report


@torch.inference_mode()
def check_speed(models: dict, checks: Checks, args) -> dict:
    from paragonsr2_pack import paragonsr2_arch as arch

    cuda = DEVICE
    report = {}
    side = args.size
    for variant, (model, _io, case) in models.items():
        row = {"lr_size": [side, side], "scale": case["scale"]}
        out_mp = (side * case["scale"]) ** 2 / 1e6
        x32 = natural_image(side, side, seed=2).to(cuda)
        outputs = {}
        for label, dtype, eager in (
            ("fast_fp16", torch.float16, False),
            ("eager_fp16", torch.float16, True),
            ("fast_fp32", torch.float32, False),
        ):
            net = copy.deepcopy(model).to(cuda, dtype)
            x = x32.to(dtype)

            def run(net=net, x=x, eager=eager):
                if eager:
                    with arch.reference_mode():
                        return net(x)
                return net(x)

            timing = cuda_timer(run, args.repeats)
            timing["mp_per_s"] = out_mp / (timing["median_ms"] / 1e3)
            timing["peak_vram_mb"] = peak_vram_mb(run)
            outputs[label] = run().float()
            row[label] = timing
            print(
                f"  {variant} {side}x{side} {label}: {timing['median_ms']:.2f} ms, {timing['mp_per_s']:.1f} MP/s, "
                f"peak {timing['peak_vram_mb']} MiB",
                flush=True,
            )
            del net
        row["fast_over_eager_fp16"] = row["eager_fp16"]["median_ms"] / row["fast_fp16"]["median_ms"]
        row["fast_vs_eager_fp16_max_abs"] = errors(outputs["fast_fp16"], outputs["eager_fp16"])["max_abs"]
        row["fast_vs_eager_fp16"] = checks.limit(
            f"{variant} fast vs eager fp16 max", row["fast_vs_eager_fp16_max_abs"], LOW_PRECISION_LIMITS["fp16"][0]
        )
        report[variant] = row
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
    return report


def check_backends(models: dict, checks: Checks, args) -> dict:
    """The backend choices on this device: ``auto`` (engines/backends/auto.py) picks torch on a
    GPU ComfyUI manages, TensorRT (when installed) or torch elsewhere on CUDA, never another
    precision; OpenVINO refuses CUDA devices with a clear message; ONNX Runtime's CUDA provider
    (when installed) matches torch within the fp16 limit. No TensorRT engine is built here."""
    from paragonsr2_pack.engines.backends import auto, registry

    device = str(DEVICE) if DEVICE.type == "cpu" else f"cuda:{torch.cuda.current_device()}"
    model, _io, _case = models["realtime"]
    report: dict = {"device": device}
    managed, _ = auto.choose(model, device, "auto", managed_gpu=True, models_dir=args.scratch)
    report["auto_managed"] = managed.describe()
    standalone, _ = auto.choose(model, device, "auto", models_dir=args.scratch)
    report["auto_standalone"] = standalone.describe()
    bf16, _ = auto.choose(model, device, "bf16", models_dir=args.scratch)
    report["auto_bf16"] = bf16.describe()
    if DEVICE.type == "cuda":
        checks.limit("auto on a ComfyUI-managed GPU is torch", float(managed.backend != "torch"), 0.0)
        expected = "tensorrt" if auto.installed("tensorrt") else "torch"
        checks.limit(f"auto on CUDA outside ComfyUI is {expected}", float(standalone.backend != expected), 0.0)
        checks.limit("auto with bf16 on CUDA is torch (no bf16 graphs)", float(bf16.backend != "torch"), 0.0)
        if auto.installed("openvino"):
            try:
                registry.make_engine("openvino", model, device, "fp32", models_dir=args.scratch)
                refused = "not refused"
            except ValueError as exc:
                refused = str(exc)
            report["openvino_on_cuda"] = refused
            checks.limit("OpenVINO refuses CUDA devices", float("NVIDIA" not in refused), 0.0)
        providers = []
        if auto.installed("onnxruntime"):
            import onnxruntime

            providers = onnxruntime.get_available_providers()
        if "CUDAExecutionProvider" in providers:
            engine = registry.make_engine("onnxruntime", model, device, "fp16")
            x = natural_image(64, 80, seed=5)
            with torch.inference_mode():
                err = errors(engine(x).float().cpu(), model(x))["max_abs"]
            report["onnxruntime_cuda_fp16_max_abs"] = err
            checks.limit("ONNX Runtime CUDA fp16 vs CPU fp32 max", err, LOW_PRECISION_LIMITS["fp16"][0])
    else:  # dry run: the CPU probe
        checks.limit(
            "auto on the CPU picks an installed backend",
            float(standalone.backend not in auto.cpu_candidates("fp32")),
            0.0,
        )
    print(f"  auto: managed {report['auto_managed']}; standalone {report['auto_standalone']}", flush=True)
    return report


RUNNERS = {
    "precision": check_precision,
    "tiling": check_tiling,
    "video": check_video,
    "speed": check_speed,
    "backends": check_backends,
}


# ---------------------------------------------------------------------------- main


def default_json_path() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else Path("gpu_check.json")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="report path (default $OUT/gpu_check.json)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS)
    )
    parser.add_argument("--reference", type=Path, default=ROOT / "tests" / "data" / "reference")
    parser.add_argument("--size", type=int, default=512, help="LR side of the speed section's input")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--require-gpu", action="store_true", help="exit 3 instead of 0 when no CUDA device")
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run every section on the CPU with tiny sizes (tests the script, not a GPU)",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if args.size < 16 or args.repeats < 1:
        parser.error("--size must be >= 16 and --repeats >= 1")
    return args


def environment() -> dict:
    info = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda": torch.cuda.is_available(),
        "python": sys.version.split()[0],
    }
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            vram_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"report: {path}", flush=True)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return int(exc.code or 0) and EXIT_USAGE
    path = args.json or default_json_path()
    report = {"environment": environment(), "sections": {}, "failed": []}
    if args.cpu_dry_run:
        global DEVICE
        DEVICE = torch.device("cpu")
        args.size, args.repeats = min(args.size, 32), min(args.repeats, 2)
        report["environment"].update(dry_run="cpu", gpu="CPU dry run (no GPU numbers)")
    elif not report["environment"]["cuda"]:
        reason = (
            f"no CUDA device visible to torch {torch.__version__} "
            f"({'a CPU-only build' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda + ' build'}); "
            "nothing to check"
        )
        print(f"gpu_check: {reason}", file=sys.stderr)
        report["skipped"] = reason
        write(path, report)
        return EXIT_NO_CUDA if args.require_gpu else EXIT_OK

    started = time.perf_counter()
    print(
        f"gpu_check on {report['environment'].get('gpu')} (torch {torch.__version__}, CUDA {torch.version.cuda})",
        flush=True,
    )
    models = reference_models(args.reference)
    checks = Checks()
    import tempfile

    args.scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))  # probe and OpenVINO caches of this run
    for section in args.sections:
        t0 = time.perf_counter()
        print(f"[{section}]", flush=True)
        try:
            report["sections"][section] = RUNNERS[section](models, checks, args)
        except Exception as exc:  # record and go on: one broken section must not hide the others
            traceback.print_exc()
            report["sections"][section] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            checks.failed.append(f"{section}: raised {type(exc).__name__}: {exc}")
        report["sections"].setdefault(section, {})["seconds"] = round(time.perf_counter() - t0, 1)
        write(path, report)  # after every section, so a run cut short still leaves its numbers
    report["failed"] = checks.failed
    report["seconds"] = round(time.perf_counter() - started, 1)
    write(path, report)
    if checks.failed:
        print("FAILED:\n  " + "\n  ".join(checks.failed), file=sys.stderr)
        return EXIT_FAILED
    print(f"all checks passed in {report['seconds']} s", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Tiled-runner benchmarks (numbers, not tests): ``python benchmarks/tiling.py [--size N]``.

1. Overhead of tiled upscaling at default settings (and at 512-px tiles) vs one whole-image
   pass, realtime (--size) and stream (--size / 2) on the CPU (median wall time of --runs runs,
   same process). On the CPU the auto tile is sized for the allocator (engines/tiling/sizing.py), so
   it is faster than the whole image.
2. Seam error of our tiling vs ComfyUI core's method (fixed tiles with a linear feather in the
   overlap, re-implemented here from its description) at equal tile size: max abs error and
   PSNR against the whole-image result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from paragonsr2 import submodule  # noqa: E402  (the launcher imports the pack as ComfyUI does)


def reference_model(variant: str, scale: int = 2):
    """(model, weights file name) of the tests' reference case: ../shared/reference when present
    (or $PARAGONSR2_REFERENCE_DIR), else the compact subset in tests/data/reference."""
    sys.path.insert(0, str(ROOT / "tests"))
    from packlib import load_reference, reference_case_for

    case = reference_case_for(variant, scale)
    return load_reference(case)[0], case["weights"]


def photo(h: int, w: int) -> torch.Tensor:
    """A real photograph (scikit-image's sample data) resized to h x w, (1, 3, h, w)."""
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    except ImportError:  # fall back to the tests' synthetic natural image
        sys.path.insert(0, str(ROOT / "tests"))
        from packlib import natural_image

        return natural_image(h, w)
    return F.interpolate(img, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def comfy_style_tiled(engine, lr: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """ComfyUI core's scheme: tiles of `tile` px stepping by tile - overlap, each weighted by a
    mask that ramps linearly over `overlap` (HR: overlap * scale) px at all four sides."""
    b, _, h, w = lr.shape
    s = engine.scale
    acc = torch.zeros(b, 3, h * s, w * s)
    weight = torch.zeros(1, 1, h * s, w * s)
    step = tile - overlap
    ys = [max(0, min(h - overlap, y)) for y in range(0, h, step)]
    xs = [max(0, min(w - overlap, x)) for x in range(0, w, step)]
    feather = overlap * s
    for y in sorted(set(ys)):
        for x in sorted(set(xs)):
            crop = lr[:, :, y : y + tile, x : x + tile]
            out = engine(crop).cpu()
            th, tw = out.shape[-2:]
            mask = torch.ones(1, 1, th, tw)
            for t in range(feather):
                ramp = (t + 1) / feather
                mask[:, :, t, :] *= ramp
                mask[:, :, th - 1 - t, :] *= ramp
                mask[:, :, :, t] *= ramp
                mask[:, :, :, tw - 1 - t] *= ramp
            acc[:, :, y * s : y * s + th, x * s : x * s + tw] += out * mask
            weight[:, :, y * s : y * s + th, x * s : x * s + tw] += mask
    return (acc / weight).clamp(0, 1)


def psnr(a, b) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def timed(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _memory_child(variant: str, scale: str, side: str) -> None:
    import resource

    torch.set_num_threads(1)
    n, s = int(side), int(scale)
    model = submodule("paragonsr2_arch").build_model(variant, s)
    x = torch.rand(1, 3, n, n)
    with torch.inference_mode():
        model(x[:, :, :16, :16])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        model(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"memory {variant} x{s} {n}x{n} LR fp32 CPU: {(peak - base) / n / n:.0f} bytes per LR pixel")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="LR side for the overhead test (default 1024)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seam-size", type=int, default=1024, help="LR side for the seam comparison")
    ap.add_argument("--seam-variants", default="realtime,stream,photo,pro")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--memory", action="store_true", help="only: peak RSS growth per LR pixel per variant")
    ap.add_argument("--_memory_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory_child:
        return _memory_child(*args._memory_child)
    if args.memory:
        import subprocess

        for variant in ("realtime", "stream", "photo", "pro"):
            for scale in ("2", "4"):  # a fresh process each, so ru_maxrss is this pass's peak
                subprocess.run([sys.executable, __file__, "--_memory_child", variant, scale, "384"], check=True)
        return
    te, tiling = submodule("engines.backends.torch_engine"), submodule("engines.tiling.runner")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    if not args.skip_overhead:
        # stream is ~10x slower per pixel than realtime: half the side keeps the run short
        for variant, side in (("realtime", args.size), ("stream", args.size // 2)):
            model, name = reference_model(variant)
            engine = te.TorchEngine(model, "cpu", "fp32")  # also warms the CPU allocator
            lr = photo(side, side)
            img = lr.permute(0, 2, 3, 1).contiguous()
            tile = submodule("engines.tiling.sizing").tile_layout(engine.info, side, side)[0]
            # the lambdas are timed at once, inside this iteration: binding the loop values is safe
            whole = timed(lambda: engine(lr).clamp(0, 1), args.runs)  # noqa: B023
            auto = timed(lambda: tiling.upscale_image(engine, img), args.runs)  # noqa: B023
            t512 = timed(lambda: tiling.upscale_image(engine, img, tile_size=512), args.runs)  # noqa: B023
            print(f"overhead {variant} ({name}) {side}x{side} LR, CPU fp32, median of {args.runs}:")
            print(
                f"  whole {whole:.3f}s | auto tile ({tile} px) {auto:.3f}s ({auto / whole - 1:+.1%}) "
                f"| 512 tiles {t512:.3f}s ({t512 / whole - 1:+.1%})",
                flush=True,
            )

    n = args.seam_size
    lr = photo(n, n)
    for variant in args.seam_variants.split(","):
        model, name = reference_model(variant)
        engine = te.TorchEngine(model, "cpu", "fp32")
        whole = engine(lr).clamp(0, 1)
        ours = tiling.upscale_image(engine, lr.permute(0, 2, 3, 1), tile_size=512).permute(0, 3, 1, 2)
        comfy = comfy_style_tiled(engine, lr, 512, 32)
        print(
            f"seams {variant} ({name}) {n}x{n} LR, 512-px tiles: "
            f"ours max {(ours - whole).abs().max():.2e} PSNR {psnr(ours, whole):.1f} dB | "
            f"ComfyUI 32-px feather max {(comfy - whole).abs().max():.2e} PSNR {psnr(comfy, whole):.1f} dB",
            flush=True,
        )


if __name__ == "__main__":
    main()

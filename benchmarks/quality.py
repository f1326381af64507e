#!/usr/bin/env python3
"""Quality at x2 on the held-out images: bicubic vs the MagicKernelSharp base path vs a model.

    python benchmarks/quality.py [--model models/ParagonSR2_realtime_x2_demo.safetensors] [--json out.json]

Protocol: each held-out image (assets/, never used in training) is cropped to a multiple of 2,
downscaled with the training degradation (bicubic with antialias, rounded to 8 bits), then
upscaled x2 by each method; outputs are rounded to 8 bits (what a saved PNG holds) before
scoring. PSNR is on RGB over the whole image. PSNR-Y and SSIM are on the BT.601 luma
(Y = 16 + 65.481 R + 128.553 G + 24.966 B, in 0..255) with a border of `scale` (2) pixels
cropped on every side, as is usual in super-resolution papers. SSIM uses an 11x11 Gaussian
window (sigma 1.5), K1 = 0.01, K2 = 0.03, no padding ("valid" region).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT))

import demo_data  # noqa: E402
from paragonsr2 import submodule  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(peak * peak / mse)).item()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in 0..255 from RGB in 0..1; x: [..., 3, H, W] -> [..., 1, H, W]."""
    r, g, b = x.double().unbind(-3)
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b).unsqueeze(-3)


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border : x.shape[-2] - border, border : x.shape[-1] - border] if border else x


def psnr_y(a: torch.Tensor, b: torch.Tensor, border: int) -> float:
    return psnr(shave(rgb_to_y(a), border), shave(rgb_to_y(b), border), peak=255.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004) of single-channel images [1, 1, H, W] in 0..peak."""
    w = _gaussian_window()
    a, b = a.double(), b.double()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a**2
    var_b = F.conv2d(b * b, w) - mu_b**2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


def ssim_y(a: torch.Tensor, b: torch.Tensor, border: int) -> float:
    return ssim(shave(rgb_to_y(a), border), shave(rgb_to_y(b), border))


def evaluate(model, scale: int = 2) -> dict:
    """{method: {image: {psnr, psnr_y, ssim}}} plus a per-method "mean" entry."""
    methods = {
        "bicubic": lambda lr: demo_data.bicubic_upscale(lr, scale),
        "MagicKernelSharp base": model.base,
        "model": model,
    }
    results: dict = {m: {} for m in methods}
    with torch.inference_mode():
        for name, img in demo_data.heldout_images():
            hr = to_8bit(demo_data.modcrop(img, scale)[None])
            lr = demo_data.bicubic_downscale(hr, scale)
            for method, fn in methods.items():
                sr = to_8bit(fn(lr))
                results[method][name] = {
                    "psnr": psnr(sr, hr),
                    "psnr_y": psnr_y(sr, hr, scale),
                    "ssim": ssim_y(sr, hr, scale),
                }
    for per_image in results.values():
        rows = list(per_image.values())
        per_image["mean"] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    return results


def format_table(results: dict, model_label: str) -> str:
    images = [k for k in next(iter(results.values())) if k != "mean"] + ["mean"]
    lines = ["| method | image | PSNR (dB) | PSNR-Y (dB) | SSIM-Y |", "|---|---|---:|---:|---:|"]
    for method, per_image in results.items():
        label = model_label if method == "model" else method
        for image in images:
            r = per_image[image]
            lines.append(f"| {label} | {image} | {r['psnr']:.2f} | {r['psnr_y']:.2f} | {r['ssim']:.4f} |")
    gain = results["model"]["mean"]["psnr_y"] - results["bicubic"]["mean"]["psnr_y"]
    lines.append("")
    lines.append(f"{model_label} vs bicubic, mean PSNR-Y: {gain:+.2f} dB")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    arch = submodule("paragonsr2_arch")
    model = arch.load_model(args.model)
    if model.scale != 2:
        print(f"error: the benchmark is at x2; {args.model.name} is x{model.scale}", file=sys.stderr)
        return 2
    results = evaluate(model, model.scale)
    print(
        f"held-out images: {', '.join(n for _, n, _ in demo_data.HELDOUT_IMAGES)}; x{model.scale}; "
        f"PSNR-Y/SSIM on BT.601 Y with a {model.scale} px border cropped"
    )
    print(format_table(results, args.model.stem))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model.name, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

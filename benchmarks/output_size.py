"""Memory of an Upscale node batch with and without an output size (numbers, not tests).

``python benchmarks/output_size.py [--images 16] [--size 256] [--variant realtime] [--scale 4]``

Each case runs in a fresh process (peak RSS is per process): the ParagonSR2 Upscale node on
``--images`` random-texture images of ``--size``² with a freshly built ``--variant`` x``--scale``
model on the CPU, and reports the peak RSS growth over the process after set-up (model, engine,
input, one warm-up call on a small image), plus the output size.

Cases:
- model factor: the default (the batch at the model's size);
- factor 1.0 in the node: each image (batch chunk) resized as it is produced;
- model factor, then resized afterwards (what chaining a resize node does): both batches live.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CASES = ("model factor", "factor 1.0 (in the node)", "model factor, resized afterwards")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(case: str, images: int, size: int, variant: str, scale: int) -> dict:
    import torch
    import torch.nn.functional as F

    from paragonsr2 import submodule

    torch.set_num_threads(max(1, torch.get_num_threads()))
    arch = submodule("paragonsr2_arch")
    contract = submodule("engines.runtime.contract")
    nodes = submodule("nodes.image_nodes")
    model = arch.build_model(variant, scale)
    handle = contract.ModelHandle(model=model, name=f"{variant}-x{scale}", precision="fp32")
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(images, size, size, 3, generator=g)
    node = nodes.ParagonSR2Upscale
    node.execute(model=handle, image=batch[:1, :32, :32].contiguous(), device="cpu")  # engine built, allocator warm
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    if case == CASES[1]:
        (out,) = node.execute(model=handle, image=batch, device="cpu", output_size="factor", output_factor=1.0).args
    else:
        (out,) = node.execute(model=handle, image=batch, device="cpu").args
        if case == CASES[2]:
            resized = (
                F.interpolate(
                    out.permute(0, 3, 1, 2), size=(size, size), mode="bicubic", antialias=True, align_corners=False
                )
                .clamp(0, 1)
                .permute(0, 2, 3, 1)
            )
            out = resized.contiguous()
    seconds = time.perf_counter() - t0
    return {
        "case": case,
        "peak_growth_mb": round(max(0.0, _peak_rss_mb() - base), 1),
        "output": list(out.shape),
        "output_mb": round(out.numel() * 4 / 2**20, 1),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--variant", default="realtime")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.images, args.size, args.variant, args.scale)))
        return
    print(f"{args.images} images {args.size}x{args.size}, {args.variant} x{args.scale}, CPU fp32")
    print(f"{'case':36} {'peak RSS growth':>16} {'output':>18} {'time':>8}")
    for case in CASES:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            case,
            "--images",
            str(args.images),
            "--size",
            str(args.size),
            "--variant",
            args.variant,
            "--scale",
            str(args.scale),
        ]
        stdout = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        result = json.loads(stdout.strip().splitlines()[-1])
        shape = "x".join(str(v) for v in result["output"])
        print(f"{case:36} {result['peak_growth_mb']:>13.1f} MB {shape:>18} {result['seconds']:>7.2f}s")


if __name__ == "__main__":
    main()

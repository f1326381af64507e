"""Our tiling vs ComfyUI core's, same network, same process (numbers, not tests).

``COMFYUI_DIR=/work/comfyui /work/comfyui-venv/bin/python benchmarks/core_compare.py
[--variants realtime,stream,photo,pro] [--sizes 1024x768,2048x2048] [--repeats 3] [--device cpu]``

Per variant (the tests' x2 reference weights) and image size, three ways to upscale one image:

- ``ours auto``: engines/tiling/runner.upscale_image with tile_size 0 (what the node does);
- ``ours 512``: the same with 512-px tiles;
- ``core 512/32``: ComfyUI's method, ``comfy.utils.tiled_scale(tile 512, overlap 32)`` as the
  core "Upscale Image (using Model)" node calls it, on the same TorchEngine, plus the node's
  clamp. Imported from ComfyUI itself (``$COMFYUI_DIR``); without it the column is skipped.

The methods run interleaved (A B C A B C ...) after one warm-up each, so a change in machine
load hits all of them; medians of wall and process-CPU seconds are printed, and the ratio
core / ours-auto (> 1: ours is faster). On a machine shared with other jobs CPU time is the
steadier figure. Pixel counts actually run (context boxes) are printed too: on the CPU the
time is close to proportional to them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from paragonsr2 import submodule  # noqa: E402  (the launcher imports the pack as ComfyUI does)


def core_tiled_scale():
    """comfy.utils.tiled_scale from $COMFYUI_DIR, or None (the pack never ships core code)."""
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        return None
    sys.path.insert(0, comfy_dir)
    try:
        import comfy.utils
    except Exception as exc:  # not ComfyUI's venv, or a partial checkout
        print(f"# core column skipped: cannot import comfy.utils from {comfy_dir}: {exc}", file=sys.stderr)
        return None
    return comfy.utils.tiled_scale


def _image(height: int, width: int) -> torch.Tensor:
    from packlib import natural_image

    return natural_image(height, width, seed=11).permute(0, 2, 3, 1).contiguous()


def _core_pixels(height: int, width: int, tile: int = 512, overlap: int = 32) -> int:
    """LR pixels core's tiled_scale feeds the network (its tile positions, edge tiles cut)."""

    def axis(n):
        if n <= tile:
            return n
        return sum(min(tile, n - max(0, min(n - overlap, p))) for p in range(0, n - overlap, tile - overlap))

    return axis(height) * axis(width)


def _our_pixels(engine, height: int, width: int, tile_size: int) -> tuple[int, int, int]:
    """(LR pixels run, tiles, tile side) of our plan; photo/pro include the window padding."""
    plan = submodule("engines.tiling.plan")
    sizing = submodule("engines.tiling.sizing")
    try:
        window_pad = submodule("engines.tiling.window_pad")
        multiple = window_pad.pad_multiple(engine.info)
        height, width = window_pad.padded_size(height, multiple), window_pad.padded_size(width, multiple)
    except (ImportError, AttributeError):
        pass
    tile, halo, wrap = sizing.tile_layout(engine.info, height, width, tile_size)
    tiles = plan.plan_engine_tiles(engine.info, height, width, tile, halo, wrap)
    return sum(t.context_shape[0] * t.context_shape[1] for t in tiles), len(tiles), tile


def compare(variant: str, height: int, width: int, repeats: int, device: str, tiled_scale, warmup: int = 1) -> dict:
    from packlib import load_reference, reference_case_for

    torch_engine = submodule("engines.backends.torch_engine")
    runner = submodule("engines.tiling.runner")
    model, _ = load_reference(reference_case_for(variant, 2))
    engine = torch_engine.TorchEngine(model, device, "auto")
    image = _image(height, width)
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    methods = {
        "ours_auto": lambda: runner.upscale_image(engine, image, tile_size=0),
        "ours_512": lambda: runner.upscale_image(engine, image, tile_size=512),
    }
    if tiled_scale is not None:

        def core():
            lr = image.movedim(-1, -3).to(dev)
            out = tiled_scale(
                lr,
                lambda a: engine(a),
                tile_x=512,
                tile_y=512,
                overlap=32,
                upscale_amount=engine.info.scale,
                output_device="cpu",
            )
            return torch.clamp(out.movedim(-3, -1), min=0, max=1.0)

        methods["core_512_32"] = core

    walls = {name: [] for name in methods}
    cpus = {name: [] for name in methods}
    for rep in range(repeats + warmup):  # the first ``warmup`` rounds are not counted
        for name, fn in methods.items():
            sync()
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            if rep >= warmup:
                walls[name].append(time.perf_counter() - w0)
                cpus[name].append(time.process_time() - c0)
    auto_px, auto_tiles, auto_tile = _our_pixels(engine, height, width, 0)
    row = {
        "variant": variant,
        "size": f"{width}x{height}",
        "device": str(dev),
        "repeats": repeats,
        "auto_tile": auto_tile,
        "auto_tiles": auto_tiles,
        "pixels_ratio": {
            "ours_auto": round(auto_px / (height * width), 3),
            "ours_512": round(_our_pixels(engine, height, width, 512)[0] / (height * width), 3),
            "core_512_32": round(_core_pixels(height, width) / (height * width), 3),
        },
    }
    for name in methods:
        row[name] = {
            "wall_s": round(statistics.median(walls[name]), 3),
            "cpu_s": round(statistics.median(cpus[name]), 3),
        }
    if "core_512_32" in methods:
        row["core_over_auto_wall"] = round(row["core_512_32"]["wall_s"] / row["ours_auto"]["wall_s"], 3)
        row["core_over_auto_cpu"] = round(row["core_512_32"]["cpu_s"] / row["ours_auto"]["cpu_s"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="realtime,stream,photo,pro")
    parser.add_argument("--sizes", default="1024x768,2048x2048", help="W x H, comma separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (0 for slow photo/pro runs)")
    args = parser.parse_args()
    # The pack first, while comfy is not importable: its bridge then runs standalone (comfy's
    # model_management would pick a device at import time); comfy.utils needs nothing of it.
    submodule("engines.tiling.runner")
    tiled_scale = core_tiled_scale()
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, core: "
        f"{'comfy.utils.tiled_scale' if tiled_scale else 'not available (set COMFYUI_DIR)'}",
        flush=True,
    )
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        for variant in args.variants.split(","):
            print(
                json.dumps(
                    compare(variant.strip(), height, width, args.repeats, args.device, tiled_scale, args.warmup)
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

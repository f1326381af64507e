"""Cancel latency and first-progress time of the ParagonSR2 Upscale node (numbers, not tests).

``python benchmarks/cancel_latency.py [--variants photo,pro] [--size 2048x1536] [--after 8]``

Runs the real node (nodes/image_nodes.ParagonSR2Upscale, default settings: auto tiles, auto
halo, CPU) in this process on the tests' reference weights (x2). The node's interrupt check is
replaced by one that starts raising ``--after`` seconds after the node was called, the way
ComfyUI's ``throw_exception_if_processing_interrupted`` does once Cancel was pressed; progress
calls are recorded with their time. Reported per variant:

- first_progress_s: node start -> first progress call (ComfyUI sends a websocket "progress"
  message for each; the first one creates the bar);
- first_advance_s: node start -> first progress call with done > 0 (the bar moves);
- cancel_latency_s: cancel "pressed" -> the node's exception (the run stops);
- tiles / steps: the plan the node ran with.

In a real ComfyUI server the same hooks are ComfyUI's (see tests/test_real_comfyui.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from paragonsr2 import submodule  # noqa: E402  (the launcher imports the pack as ComfyUI does)


class Cancelled(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


def _image(height: int, width: int) -> torch.Tensor:
    from packlib import natural_image

    return natural_image(height, width, seed=7).permute(0, 2, 3, 1).contiguous()  # (1, H, W, 3)


def measure(variant: str, image: torch.Tensor, after_s: float, limit_s: float) -> dict:
    from packlib import load_reference, reference_case_for

    bridge = submodule("nodes.comfy_bridge")
    nodes = submodule("nodes.image_nodes")
    contract = submodule("engines.runtime.contract")
    model, _ = load_reference(reference_case_for(variant, 2))
    handle = contract.ModelHandle(model=model, name=f"{variant} x2 (reference)", precision="fp32")

    events: list[tuple[float, int, int]] = []
    state = {"start": 0.0, "pressed": None}

    def check_interrupt() -> None:
        now = time.perf_counter()
        if now - state["start"] >= min(after_s, limit_s):
            if state["pressed"] is None:
                state["pressed"] = state["start"] + after_s
            raise Cancelled()

    def make_progress(total: int = 0):
        def progress(done: int, steps: int = total) -> None:
            events.append((time.perf_counter() - state["start"], int(done), int(steps)))

        return progress

    saved = bridge.check_interrupt, bridge.make_progress
    bridge.check_interrupt, bridge.make_progress = check_interrupt, make_progress
    try:
        state["start"] = time.perf_counter()
        try:
            nodes.ParagonSR2Upscale.execute(model=handle, image=image, tile_size=0, halo=-1, device="cpu")
            stopped = None
        except Cancelled:
            stopped = time.perf_counter()
    finally:
        bridge.check_interrupt, bridge.make_progress = saved
    first = events[0][0] if events else None
    advance = next((t for t, d, _ in events if d > 0), None)
    return {
        "variant": variant,
        "size": f"{image.shape[2]}x{image.shape[1]}",
        "first_progress_s": None if first is None else round(first, 3),
        "first_advance_s": None if advance is None else round(advance, 3),
        "cancel_after_s": after_s,
        "cancel_latency_s": None if stopped is None else round(stopped - state["pressed"], 3),
        "progress_calls_before_cancel": len(events),
        "steps_total": events[0][2] if events else None,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="realtime,stream,photo,pro")
    parser.add_argument("--size", default="2048x1536", help="W x H of the input image")
    parser.add_argument("--after", type=float, default=8.0, help="seconds after the node starts to press cancel")
    parser.add_argument("--limit", type=float, default=120.0, help="cancel no later than this (slow machines)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = _image(height, width)
    for variant in args.variants.split(","):
        print(json.dumps(measure(variant.strip(), image, args.after, args.limit)), flush=True)


if __name__ == "__main__":
    main()

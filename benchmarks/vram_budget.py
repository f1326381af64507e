"""What an upscale asks of ComfyUI's model manager, and what it evicts (figures, not a test).

``python benchmarks/vram_budget.py [--cards 8,12,16] [--checkpoint-gib 6.5] [--vae-gib 0.16]
[--overhead-gib 0.45] [--variant photo] [--scale 4] [--size 1024] [--windows]``

The case: a GPU of ``--cards`` GiB holding an SDXL checkpoint (``--checkpoint-gib`` of weights
resident) and its VAE, plus ``--overhead-gib`` that is not free either (CUDA context, cuDNN
workspace, allocator cache); then a ``--variant`` x``--scale`` upscale of one ``--size``² image.

For each ComfyUI upscale path: the working memory it asks for, the free VRAM ComfyUI then wants
(its formula, read from core's comfy/model_management.py: ``load_models_gpu`` frees
``1.1 x weights + max(0.8 GiB + reserve, memory_required + reserve)``, reserve 400 MiB, 600 on
Windows; 0.3.64's core node called ``free_memory(weights + memory_required)`` itself), and how
much of the checkpoint is offloaded to get it (smart memory: only the shortfall).

- ours: the ParagonSR2 Upscale node: memory_required from nodes/managed.working_memory (the
  tile the runner plans from the free VRAM, at least a 512 px tile), classic ModelPatcher, so
  the same on 0.3.64 and 0.33 with or without dynamic VRAM;
- core 0.3.64 and core 0.33 (dynamic VRAM off): Upscale Image (using Model)'s fixed
  ``512 * 512 * 3 * 4 bytes * scale * 384`` plus the input image;
- core 0.33 with dynamic VRAM: its patcher is ModelPatcherDynamic and so is the checkpoint's:
  load_models_gpu frees nothing up front for dynamic models (comfy-aimdo evicts on demand when
  allocations need it), so the figure does not evict; what the 512 px tiles really allocate does.
"""

from __future__ import annotations

import argparse
import json

import torch

from _bench import submodule

GIB = 1 << 30
RESERVE = {"linux": 400 << 20, "windows": 600 << 20}
INFERENCE_FLOOR = 0.8 * GIB  # minimum_inference_memory without the reserve


def core_upscale_ask(height: int, width: int, scale: int) -> int:
    """Core Upscale Image (using Model)'s memory_required for one float32 IMAGE (0.3.64 and 0.33)."""
    return int(512 * 512 * 3 * 4 * max(scale, 1.0) * 384.0) + height * width * 3 * 4


def load_models_gpu_wants(weights: int, memory_required: int, reserve: int) -> int:
    """Free VRAM load_models_gpu makes room for when it loads a model of ``weights`` bytes."""
    return int(1.1 * weights + max(INFERENCE_FLOOR + reserve, memory_required + reserve))


def case(args, card_gib: float) -> list[dict]:
    arch = submodule("paragonsr2_arch")
    managed = submodule("nodes.managed")
    contract = submodule("engines.runtime.contract")
    model = arch.build_model(args.variant, args.scale)
    dtype = torch.float16  # precision "auto" on an NVIDIA GPU
    weights = sum(p.numel() for p in model.parameters()) * 2 + sum(b.numel() * 2 for b in model.buffers())

    class Planned:  # what managed.working_memory reads of an engine: its facts
        info = contract.EngineInfo.of_model(model, torch.device("cuda", 0), dtype)

    resident = (args.checkpoint_gib + args.vae_gib + args.overhead_gib) * GIB
    free = int(card_gib * GIB - resident)
    reserve = RESERVE["windows" if args.windows else "linux"]
    size = args.size
    ours = managed.working_memory(Planned(), size, size, free_memory=lambda: free)
    tile = submodule("engines.tiling.sizing").tile_layout(Planned.info, size, size, 0, None, lambda: free)[0]
    core = core_upscale_ask(size, size, args.scale)
    rows = [
        ("ours (0.3.64 / 0.33, any VRAM mode)", ours, load_models_gpu_wants(weights, ours, reserve)),
        ("core 0.3.64", core, weights + core),
        ("core 0.33, dynamic VRAM off", core, load_models_gpu_wants(weights, core, reserve)),
        ("core 0.33, dynamic VRAM on", core, None),
    ]
    out = []
    for who, asked, wants in rows:
        offload = 0 if wants is None else max(0, wants - free)
        out.append(
            {
                "card_gib": card_gib,
                "free_gib": free / GIB,
                "who": who,
                "asked_gib": asked / GIB,
                "wants_free_gib": None if wants is None else wants / GIB,
                "offloaded_gib": offload / GIB,
                "our_tile": tile if who.startswith("ours") else 512,
                "weights_mib": weights / (1 << 20),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", default="8,12,16", help="card sizes in GiB, comma separated")
    parser.add_argument("--checkpoint-gib", type=float, default=6.5)
    parser.add_argument("--vae-gib", type=float, default=0.16)
    parser.add_argument("--overhead-gib", type=float, default=0.45)
    parser.add_argument("--variant", default="photo")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--windows", action="store_true", help="Windows' larger reserve (600 MiB)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [row for card in args.cards.split(",") for row in case(args, float(card))]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"{args.variant} x{args.scale} on {args.size}x{args.size}, fp16 weights {rows[0]['weights_mib']:.1f} MiB; "
        f"resident: checkpoint {args.checkpoint_gib} + VAE {args.vae_gib} + overhead {args.overhead_gib} GiB"
    )
    print("| card | free | upscale path | tile (LR px) | asks (memory_required) | wants free | checkpoint offloaded |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        wants = "nothing up front" if r["wants_free_gib"] is None else f"{r['wants_free_gib']:.2f} GiB"
        offloaded = f"{r['offloaded_gib']:.2f} GiB" if r["offloaded_gib"] else "none"
        if r["wants_free_gib"] is None:
            offloaded = "none up front (on demand)"
        print(
            f"| {r['card_gib']:g} GiB | {r['free_gib']:.2f} GiB | {r['who']} | {r['our_tile']} | "
            f"{r['asked_gib']:.2f} GiB | {wants} | {offloaded} |"
        )


if __name__ == "__main__":
    main()

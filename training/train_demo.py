#!/usr/bin/env python3
"""Train the bundled demo model: ParagonSR2 realtime x2 on CPU, on sample images from wheels.

    pip install scikit-image matplotlib        # the training images ship inside these wheels
    nice -n 10 python training/train_demo.py   # one CPU thread; ~15 min idle, longer on a busy machine

Recipe (all fixed, so a rerun reproduces the shipped weights): seed 0; LR = bicubic downscale
with antialias of the whole image (training/demo_data.py), rounded to 8 bits; random aligned
HR/LR crops with random horizontal/vertical flips and transposes; L1 loss on RGB; Adam with a
cosine learning-rate decay; the fixed MagicKernelSharp base path is frozen. One thread and
``torch.use_deterministic_algorithms`` make the run bit-reproducible on the same torch build
and CPU; other CPUs/torch versions can differ in the last bits (float summation order).
A checkpoint is written every --save-every steps, so a usable model exists if the run is stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT))

import demo_data  # noqa: E402
from paragonsr2 import submodule  # noqa: E402

DEFAULT_OUT = ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
UPSAMPLER_ALPHA = 0.0  # the base path is sharpest (closest to the HR image) with no pre-sharpening: measured


def make_pairs(images: list[torch.Tensor], scale: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(HR, LR) per image, LR made once from the whole image so crops see real borders only at
    the image's own borders."""
    pairs = []
    for img in images:
        hr = demo_data.modcrop(img, scale)
        pairs.append((hr, demo_data.bicubic_downscale(hr[None], scale)[0]))
    return pairs


def sample_batch(pairs, batch: int, lr_patch: int, scale: int, gen: torch.Generator):
    """Random aligned crops (LR side ``lr_patch``) with random flips and transposes."""
    # Weight images by area so large images are not under-sampled.
    areas = torch.tensor([float(lr.shape[-2] * lr.shape[-1]) for _, lr in pairs])
    picks = torch.multinomial(areas, batch, replacement=True, generator=gen)
    lrs, hrs = [], []
    for i in picks.tolist():
        hr, lr = pairs[i]
        y = int(torch.randint(0, lr.shape[-2] - lr_patch + 1, (1,), generator=gen))
        x = int(torch.randint(0, lr.shape[-1] - lr_patch + 1, (1,), generator=gen))
        lc = lr[:, y : y + lr_patch, x : x + lr_patch]
        hc = hr[:, y * scale : (y + lr_patch) * scale, x * scale : (x + lr_patch) * scale]
        flip_h, flip_v, transpose = torch.randint(0, 2, (3,), generator=gen).tolist()
        if flip_h:
            lc, hc = lc.flip(-1), hc.flip(-1)
        if flip_v:
            lc, hc = lc.flip(-2), hc.flip(-2)
        if transpose:
            lc, hc = lc.transpose(-1, -2), hc.transpose(-1, -2)
        lrs.append(lc)
        hrs.append(hc)
    return torch.stack(lrs), torch.stack(hrs)


def train(
    model,
    pairs,
    *,
    steps: int,
    batch: int,
    lr_patch: int,
    learning_rate: float,
    seed: int,
    log_every: int = 100,
    on_checkpoint=None,
    save_every: int = 0,
    log=print,
    stop_after: int | None = None,
) -> list[float]:
    """Train ``model`` in place; returns the loss of every step. ``stop_after`` ends the run
    early without changing the schedule (which depends on ``steps`` only), so a stopped run
    is reproducible too."""
    scale = model.scale
    gen = torch.Generator().manual_seed(seed)
    model.train()
    model.base.requires_grad_(False)  # the MagicKernelSharp filters are fixed by design
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=learning_rate)
    min_lr = learning_rate * 0.01
    losses: list[float] = []
    start = time.perf_counter()
    last = steps if stop_after is None else min(steps, stop_after)
    for step in range(1, last + 1):
        lr_now = min_lr + 0.5 * (learning_rate - min_lr) * (1 + math.cos(math.pi * (step - 1) / max(steps, 1)))
        for group in opt.param_groups:
            group["lr"] = lr_now
        lr_img, hr_img = sample_batch(pairs, batch, lr_patch, scale, gen)
        loss = F.l1_loss(model(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            log(f"step {step}/{steps}  l1 {recent:.5f}  lr {lr_now:.2e}  {time.perf_counter() - start:.0f}s")
        if on_checkpoint and save_every and (step % save_every == 0 or step == last):
            on_checkpoint(step)
    model.eval()
    return losses


def metadata(args, step: int) -> dict[str, str]:
    licences = {name: f"{pkg}: {lic}" for pkg, name, lic in demo_data.TRAIN_IMAGES}
    return {
        "name": "ParagonSR2 realtime x2 demo model",
        "demo": "true",
        "description": "Demo model trained on CPU on sample images from the scikit-image and matplotlib wheels; "
        "for trying the pack, not for production quality.",
        "training_script": "training/train_demo.py",
        "training_args": json.dumps(
            {
                "steps": args.steps,
                "stop_after": args.stop_after,
                "batch": args.batch,
                "lr_patch": args.lr_patch,
                "learning_rate": args.lr,
                "seed": args.seed,
            }
        ),
        "training_steps_done": str(step),
        "degradation": "bicubic downscale with antialias (torch interpolate, antialias=True), 8-bit rounded",
        "training_data": json.dumps(licences),
        "heldout_data": json.dumps([name for _, name, _ in demo_data.HELDOUT_IMAGES]),
        "license": "model weights: same licence as this repository; training images are CC0 / public domain / "
        "no known copyright restrictions (see assets/LICENSES.md)",
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr-patch", type=int, default=48, help="LR crop side in pixels (HR is x2)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (cosine decay to 1%%)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps (the learning-rate schedule still spans --steps)",
    )
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    arch = submodule("paragonsr2_arch")
    model = arch.build_model("realtime", 2, upsampler_alpha=UPSAMPLER_ALPHA)
    pairs = make_pairs(demo_data.training_images(), model.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        arch.save_model(model, args.out, metadata(args, step))
        print(f"saved {args.out} at step {step}", flush=True)

    def checkpoint(step: int) -> None:
        model.eval()
        save(step)
        model.train()

    losses = train(
        model,
        pairs,
        steps=args.steps,
        batch=args.batch,
        lr_patch=args.lr_patch,
        learning_rate=args.lr,
        seed=args.seed,
        on_checkpoint=checkpoint,
        save_every=args.save_every,
        stop_after=args.stop_after,
        log=lambda m: print(m, flush=True),
    )
    print(f"done: final l1 {sum(losses[-100:]) / min(len(losses), 100):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

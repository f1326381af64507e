#!/usr/bin/env python3
"""Scene-cut detection on synthetic clips: hit and false-cut rates, today's rule vs the new one.

    python benchmarks/scene_cuts.py [--scores] [--sensitivities 0.4,0.6,0.8,1.0]

The clips are rendered from the three photos in assets/ (a moving, zooming crop window,
resampled bilinearly from an antialiased copy), 120x160 frames:
still shots with grain, pans (1-9 % of the frame width per frame), a handheld shake, zooms
(3 and 6 % per frame), fades through black, a cross-dissolve, flashes, cuts between photos,
cuts between photos of equal mean brightness, cuts between two crops of one photo, and cuts in
the middle of fast pans. Ground truth: the first frame of each new shot is a cut; every other
frame (fades and flashes included) is not. Frame 0 of a clip (always a restart) is not counted.

"old" is the rule before this detector: mean absolute difference of consecutive 32x32 luma
thumbnails above 0.25 x (1 - sensitivity). "new" is engines/video/scene_cuts.detect_cuts.
--scores also prints each clip's per-frame change scores (both measures).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paragonsr2 import submodule  # noqa: E402  (the launcher imports the pack as ComfyUI does)

FRAME_H, FRAME_W = 120, 160
PHOTOS = ("chelsea.png", "rocket.jpg", "grace_hopper.jpg")


@dataclass
class Clip:
    name: str
    kind: str  # the table row it counts in
    frames: torch.Tensor  # (n, 3, H, W) float32 0..1
    cuts: frozenset[int]  # ground-truth cut frames


def load_photos() -> list[torch.Tensor]:
    """The asset photos as (3, H, W) float32, antialiased down to about 2x the frame size so
    the bilinear crops below do not alias."""
    from PIL import Image

    out = []
    for name in PHOTOS:
        with Image.open(ROOT / "assets" / name) as im:
            x = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            x = x.reshape(im.height, im.width, 3).permute(2, 0, 1).float() / 255
        scale = 2 * FRAME_W / min(x.shape[1:])
        size = (round(x.shape[1] * scale), round(x.shape[2] * scale))
        out.append(F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0])
    return out


def render(photo: torch.Tensor, centres, widths) -> torch.Tensor:
    """One frame per (centre, width): the crop window centred at (cx, cy) (fractions of the
    photo) whose width is ``width`` x the largest 4:3 window, resampled to the frame size."""
    _, ph, pw = photo.shape
    aspect = (FRAME_W / FRAME_H) / (pw / ph)  # window width / height in normalised units
    thetas = []
    for (cx, cy), wfrac in zip(centres, widths):
        sx = wfrac * min(1.0, aspect)
        sy = sx / aspect
        thetas.append([[sx, 0.0, 2 * cx - 1], [0.0, sy, 2 * cy - 1]])
    theta = torch.tensor(thetas, dtype=torch.float32)
    grid = F.affine_grid(theta, (len(thetas), 3, FRAME_H, FRAME_W), align_corners=False)
    src = photo[None].expand(len(thetas), -1, -1, -1)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def still(photo, n, cx=0.5, cy=0.5, width=0.6) -> torch.Tensor:
    return render(photo, [(cx, cy)] * n, [width] * n)


def pan(photo, n, speed, dy=0.0, width=0.6, start=(0.3, 0.45)) -> torch.Tensor:
    """``speed``: horizontal motion per frame as a fraction of the frame width."""
    step = speed * width * 0.5  # window width in photo fractions is about width / 2 .. width
    centres = [(start[0] + t * step, start[1] + t * dy * width * 0.5) for t in range(n)]
    return render(photo, centres, [width] * n)


def zoom(photo, n, rate, width=0.9) -> torch.Tensor:
    """``rate`` < 0 zooms in: the window shrinks by that fraction each frame."""
    return render(photo, [(0.5, 0.5)] * n, [width * (1 + rate) ** t for t in range(n)])


def grain(frames, sigma, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (frames + sigma * torch.randn(frames.shape, generator=g)).clamp(0, 1)


def _luma(x):
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def match_brightness(frames, reference) -> torch.Tensor:
    """``frames`` with the mean luma of ``reference`` (an offset: what a grade would do)."""
    return (frames + (_luma(reference).mean() - _luma(frames).mean())).clamp(0, 1)


def shots(*parts) -> tuple[torch.Tensor, frozenset[int]]:
    """Concatenate shots; the first frame of every shot after the first is a cut."""
    cuts, at = set(), 0
    for i, p in enumerate(parts):
        if i:
            cuts.add(at)
        at += p.shape[0]
    return torch.cat(parts), frozenset(cuts)


def clips() -> list[Clip]:
    a, b, c = load_photos()
    out: list[Clip] = []

    def add(name, kind, frames, cuts=frozenset()):
        out.append(Clip(name, kind, frames.contiguous(), frozenset(cuts)))

    for i, p in enumerate((a, b, c)):
        add(f"still + grain {i}", "still, grain", grain(still(p, 16), 0.03, seed=i))
    for speed in (0.01, 0.03):
        add(f"slow pan {speed:.0%}/frame", "slow pans", pan(a, 20, speed))
    for i, p in enumerate((a, b, c)):
        for speed in (0.06, 0.09):
            add(f"fast pan {speed:.0%}/frame, photo {i}", "fast pans", pan(p, 16, speed))
    add("diagonal pan 6%/frame", "fast pans", pan(b, 16, 0.06, dy=0.04, start=(0.3, 0.35)))
    g = torch.Generator().manual_seed(7)
    jitter = [
        (0.5 + 0.02 * float(torch.randn(1, generator=g)), 0.5 + 0.02 * float(torch.randn(1, generator=g)))
        for _ in range(20)
    ]
    add("handheld shake", "shake", render(c, jitter, [0.6] * 20))
    for i, p in enumerate((a, b, c)):
        add(f"zoom in 3%/frame, photo {i}", "zooms", zoom(p, 16, -0.03))
        add(f"zoom out 6%/frame, photo {i}", "zooms", zoom(p, 12, 0.06, width=0.4))
    fade = torch.linspace(1, 0, 9)[:, None, None, None]
    add(
        "fade out, black, fade in",
        "fades",
        torch.cat(
            [
                still(a, 4),
                still(a, 9) * fade,
                torch.zeros(2, 3, FRAME_H, FRAME_W),
                still(b, 9) * fade.flip(0),
                still(b, 4),
            ]
        ),
    )
    w = torch.linspace(0, 1, 10)[:, None, None, None]
    add(
        "cross-dissolve (10 frames)",
        "fades",
        torch.cat([still(c, 4), (1 - w) * still(c, 10) + w * still(a, 10), still(a, 4)]),
    )
    add(
        "fade to white", "fades", torch.cat([still(b, 4), still(b, 8) + (1 - still(b, 8)) * w[:8], still(b, 1) * 0 + 1])
    )
    base = still(a, 14)
    flashed = base.clone()
    flashed[4] = 0.4 * base[4] + 0.6  # a flash towards white
    flashed[9] = (base[9] * 2.5).clamp(0, 1)  # an over-exposed frame (clipped)
    flashed[10] = (base[10] * 1.6).clamp(0, 1)
    add("flashes", "flashes", flashed)
    lit = pan(c, 14, 0.03)
    lit[6] = 0.5 * lit[6] + 0.5
    add("flash during a pan", "flashes", lit)
    add("cuts between photos", "cuts", *shots(still(a, 5), still(b, 5), still(c, 5), still(a, 5, cx=0.35)))
    sa, sb, sc = still(a, 6), still(b, 6), still(c, 6)
    add(
        "equal-brightness cuts",
        "equal-brightness cuts",
        *shots(sa, match_brightness(sb, sa), match_brightness(sc, sa), match_brightness(still(b, 6, cx=0.4), sa)),
    )
    add(
        "cuts within one photo",
        "cuts, same photo",
        *shots(
            still(a, 6, cx=0.3, cy=0.4, width=0.5),
            still(a, 6, cx=0.7, cy=0.6, width=0.5),
            still(a, 6, width=0.25),
            still(c, 6, cx=0.5, cy=0.3, width=0.4),
            still(c, 6, cx=0.5, cy=0.7, width=0.4),
        ),
    )
    add(
        "cuts to a closer framing",
        "cuts, same photo",
        *shots(still(b, 6, width=0.7), still(b, 6, width=0.45), still(c, 6, width=0.6), still(c, 6, width=0.4)),
    )
    dark = [0.08 + 0.25 * p for p in (a, b, c)]
    add(
        "cuts between dim, low-contrast shots",
        "cuts, low contrast",
        *shots(grain(still(dark[0], 6), 0.01, 4), grain(still(dark[1], 6), 0.01, 5), grain(still(dark[2], 6), 0.01, 6)),
    )
    add("dim pan 6%/frame", "fast pans", grain(pan(dark[0], 12, 0.06), 0.01, 7))
    add(
        "cuts during fast pans",
        "cuts in motion",
        *shots(pan(a, 8, 0.06), pan(b, 8, 0.06), pan(c, 8, 0.09), pan(a, 8, 0.09, start=(0.35, 0.6))),
    )
    add(
        "cuts during zooms, with grain",
        "cuts in motion",
        *shots(
            grain(zoom(b, 8, -0.03), 0.03, 1), grain(zoom(c, 8, -0.03), 0.03, 2), grain(zoom(a, 8, 0.06, 0.5), 0.03, 3)
        ),
    )
    return out


# -- the two rules ----------------------------------------------------------------------------


def old_scores(frames) -> list[float]:
    """Today's (previous) score: MAD of consecutive 32x32 luma thumbnails (area averaged, not
    blurred); inf for frame 0."""
    small = F.adaptive_avg_pool2d(frames.float(), (32, 32))
    t = 0.299 * small[:, 0] + 0.587 * small[:, 1] + 0.114 * small[:, 2]
    return [math.inf] + (t[1:] - t[:-1]).abs().mean(dim=(1, 2)).tolist()


def old_cuts(frames, sensitivity) -> list[bool]:
    threshold = 0.25 * (1 - min(sensitivity, 1.0)) if sensitivity > 0 else math.inf
    return [s == math.inf or s > threshold for s in old_scores(frames)]


def new_scores(frames) -> list[float]:
    sc = submodule("engines.video.scene_cuts")
    return sc.change_scores(sc.thumbnails(frames), None).tolist()


def new_cuts(frames, sensitivity) -> list[bool]:
    sc = submodule("engines.video.scene_cuts")
    return sc.detect_cuts(sc.thumbnails(frames), None, sensitivity)


def rates(clip_list, rule, sensitivity) -> dict[str, tuple[int, int, int, int]]:
    """Per kind: (cuts hit, cuts, false cuts, non-cut frames), frame 0 of each clip excluded."""
    table: dict[str, list[int]] = {}
    for clip in clip_list:
        flags = rule(clip.frames, sensitivity)
        row = table.setdefault(clip.kind, [0, 0, 0, 0])
        for k in range(1, len(flags)):
            if k in clip.cuts:
                row[0] += flags[k]
                row[1] += 1
            else:
                row[2] += flags[k]
                row[3] += 1
    return {kind: tuple(v) for kind, v in table.items()}


def _cell(hit, cuts, false, frames) -> str:
    return f"{hit}/{cuts} hit" if cuts else f"{false}/{frames} false"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--sensitivities", default="0.6,0.8,1.0")
    ap.add_argument("--scores", action="store_true", help="print each clip's per-frame scores")
    args = ap.parse_args(argv)
    sens = [float(s) for s in args.sensitivities.split(",")]
    clip_list = clips()
    if args.scores:
        for clip in clip_list:
            fmt = lambda xs: " ".join("  -  " if x == math.inf else f"{x:.3f}" for x in xs)  # noqa: E731
            print(
                f"{clip.name} (cuts at {sorted(clip.cuts)})\n  old {fmt(old_scores(clip.frames))}\n"
                f"  new {fmt(new_scores(clip.frames))}"
            )
    columns = [(f"old {s:g}", old_cuts, s) for s in sens] + [(f"new {s:g}", new_cuts, s) for s in sens]
    results = [rates(clip_list, rule, s) for _, rule, s in columns]
    kinds = list(results[0])
    print("| clips | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(_cell(*r[kind]) for r in results) + " |")
    totals = [tuple(sum(r[k][i] for k in kinds) for i in range(4)) for r in results]
    print("| **hit rate** | " + " | ".join(f"{t[0] / t[1]:.0%} ({t[0]}/{t[1]})" for t in totals) + " |")
    print("| **false-cut rate** | " + " | ".join(f"{t[2] / t[3]:.1%} ({t[2]}/{t[3]})" for t in totals) + " |")
    print_cost(clip_list)
    return 0


def print_cost(clip_list) -> None:
    """CPU time of the new detector per frame (thumbnails of 120x160 frames + scores + decision),
    median of 5 passes over all clips; process time, so other jobs on the machine do not count."""
    sc = submodule("engines.video.scene_cuts")
    frames = sum(c.frames.shape[0] for c in clip_list)
    passes = []
    for _ in range(5):
        t0 = time.process_time()
        for clip in clip_list:
            sc.detect_cuts(sc.thumbnails(clip.frames), None, sc.DEFAULT_SENSITIVITY)
        passes.append((time.process_time() - t0) / frames * 1e3)
    print(
        f"\nnew detector: {statistics.median(passes):.2f} ms CPU per frame ({frames} frames, "
        f"{torch.get_num_threads()} torch threads)"
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Write the example workflows' thumbnails (example_workflows/<workflow>.jpg): before/after of
the pack's own output with the bundled demo model, through the pack's nodes.

- ParagonSR2_image_upscale.jpg: a crop of assets/chelsea.png, left half the input enlarged
  bicubically, right half ParagonSR2 Upscale's x2 output.
- ParagonSR2_video_upscale.jpg: the same split on one frame of the synthetic clip of
  scripts/make_sample_clip.py (a pan over chelsea.png with a moving disc), upscaled by
  ParagonSR2 Video Upscale with its default temporal settings.
- ParagonSR2_video_streaming.jpg: the same picture (the streaming node runs the same model
  with the same temporal feedback; only how frames reach it differs).

    python scripts/make_thumbnails.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

PACK = Path(__file__).resolve().parents[1]
SIDE = 512  # thumbnail side (square: the template browser shows squares)
IMAGE_CROP = (90, 35, 250, 195)  # LR box of chelsea.png: the split runs through an eye
VIDEO_FRAMES, VIDEO_SHOWN = 12, 8


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tests/packlib.py imports the pack the way ComfyUI does and calls nodes the way ComfyUI calls
# them (widget defaults plus the given inputs); the thumbnails use the same two helpers.
_packlib = _load("paragonsr2_packlib", PACK / "tests" / "packlib.py")
image_nodes = _packlib.submodule("nodes.image_nodes")
video_nodes = _packlib.submodule("nodes.video_nodes")
call = _packlib.run_node


def demo_model():
    names = _packlib.combo_options(image_nodes.ParagonSR2Loader, "model_name")
    bundled = next(n for n in names if "ParagonSR2_realtime_x2_demo" in n)
    return call(image_nodes.ParagonSR2Loader, model_name=bundled, precision="fp32")[0]


def to_image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).float().div(255)[None]  # a writable copy


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0, ..., :3].clamp(0, 1).mul(255).round().byte()).numpy())


def split_view(before: Image.Image, after: Image.Image, caption: str) -> Image.Image:
    """Left half ``before`` enlarged bicubically, right half ``after`` (model output), both
    brought to SIDE x SIDE, a divider, and labels."""
    left = before.resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    right = after.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    out = left.copy()
    out.paste(right.crop((SIDE // 2, 0, SIDE, SIDE)), (SIDE // 2, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle((SIDE // 2 - 1, 0, SIDE // 2 + 1, SIDE), fill=(255, 255, 255))
    for x, text in ((8, "input (bicubic)"), (SIDE // 2 + 8, "ParagonSR2 x2")):
        draw.rectangle((x - 4, 6, x + 6 * len(text) + 4, 22), fill=(0, 0, 0))
        draw.text((x, 8), text, fill=(255, 255, 255))
    draw.rectangle((4, SIDE - 24, 8 + 6 * len(caption) + 4, SIDE - 6), fill=(0, 0, 0))
    draw.text((8, SIDE - 21), caption, fill=(255, 255, 255))
    return out


def image_thumbnail(model) -> Image.Image:
    with Image.open(PACK / "assets" / "chelsea.png") as im:
        crop = im.convert("RGB").crop(IMAGE_CROP)
    upscaled = call(image_nodes.ParagonSR2Upscale, model=model, image=to_image(np.asarray(crop)), device="cpu")[0]
    return split_view(crop, to_pil(upscaled), "demo model, assets/chelsea.png")


def video_thumbnail(model) -> Image.Image:
    clip = _load("make_sample_clip", PACK / "scripts" / "make_sample_clip.py")
    frames = torch.cat([to_image(f) for f in clip.frames(VIDEO_FRAMES)])
    upscaled = call(video_nodes.ParagonSR2VideoUpscale, model=model, frames=frames, device="cpu")[0]
    lr = to_pil(frames[VIDEO_SHOWN : VIDEO_SHOWN + 1])
    hr = to_pil(upscaled[VIDEO_SHOWN : VIDEO_SHOWN + 1])
    h = lr.height  # a square crop of the frame, where the disc is
    x0 = min(max(0, round(12 + (lr.width - 24) * VIDEO_SHOWN / (VIDEO_FRAMES - 1)) - h // 2), lr.width - h)
    scale = hr.width // lr.width
    return split_view(
        lr.crop((x0, 0, x0 + h, h)),
        hr.crop((x0 * scale, 0, (x0 + h) * scale, h * scale)),
        f"frame {VIDEO_SHOWN + 1} of a synthetic clip, temporal",
    )


def main() -> int:
    model = demo_model()
    out_dir = PACK / "example_workflows"
    video = video_thumbnail(model)
    thumbnails = {
        "ParagonSR2_image_upscale": image_thumbnail(model),
        "ParagonSR2_video_upscale": video,
        "ParagonSR2_video_streaming": video,
    }
    for name, picture in thumbnails.items():
        path = out_dir / f"{name}.jpg"
        picture.save(path, quality=88, optimize=True)
        print(f"wrote {path.relative_to(PACK)} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

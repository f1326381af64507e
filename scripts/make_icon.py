"""Write assets/icon.png, the registry icon ([tool.comfy] Icon): 256x256, drawn here.

A disc drawn twice, split down the middle: the left half as coarse blocks (the low-resolution
input), the right half smooth and sharp (the upscaled output), on a dark rounded square.

    python scripts/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

PACK = Path(__file__).resolve().parents[1]
SIDE, SUPER = 256, 4  # drawn 4x larger, then downsampled: antialiased edges
BACKGROUND, DISC, RING = (24, 28, 38, 255), (236, 172, 48, 255), (90, 190, 255, 255)


def smooth_half() -> Image.Image:
    big = SIDE * SUPER
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=44 * SUPER, fill=BACKGROUND)
    m = 48 * SUPER
    draw.ellipse((m, m, big - m, big - m), fill=DISC)
    draw.ellipse((m + 28 * SUPER, m + 28 * SUPER, big - m - 28 * SUPER, big - m - 28 * SUPER), fill=BACKGROUND)
    draw.ellipse((m + 52 * SUPER, m + 52 * SUPER, big - m - 52 * SUPER, big - m - 52 * SUPER), fill=RING)
    return im.resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def main() -> int:
    sharp = smooth_half()
    coarse = sharp.resize((16, 16), Image.Resampling.BOX).resize((SIDE, SIDE), Image.Resampling.NEAREST)
    icon = sharp.copy()
    icon.paste(coarse.crop((0, 0, SIDE // 2, SIDE)), (0, 0))
    # The rounded corners come from the sharp version, so the outline stays clean.
    icon.putalpha(sharp.getchannel("A"))
    draw = ImageDraw.Draw(icon)
    draw.rectangle((SIDE // 2 - 2, 28, SIDE // 2 + 1, SIDE - 29), fill=(255, 255, 255, 255))
    path = PACK / "assets" / "icon.png"
    icon.save(path, optimize=True)
    print(f"wrote {path.relative_to(PACK)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reading and writing images with Pillow, as ComfyUI-style tensors [1, H, W, C] float 0..1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_NO_ALPHA = (".jpg", ".jpeg", ".bmp")


class CliError(Exception):
    """A failure with a message meant for the user (no traceback)."""


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise CliError("Pillow is needed to read and write images: pip install pillow") from None
    return Image


def load_image(path: Path) -> torch.Tensor:
    """[1, H, W, C] float32 in 0..1; C = 1 (grey), 3 (RGB) or 4 (RGBA, when the file has alpha)."""
    image_mod = _pillow()
    try:
        with image_mod.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            if has_alpha:
                im = im.convert("RGBA")
            elif im.mode in ("L", "I;16", "I", "F"):
                im = im.convert("L") if im.mode == "L" else im.convert("RGB")
            else:
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as exc:
        raise CliError(f"cannot read image {path}: {exc}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy())[None]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[H, W, C] float 0..1 -> uint8, rounded to nearest."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def save_image(image: torch.Tensor, path: Path) -> None:
    """Write [H, W, C] float 0..1 (C = 3 or 4) as 8-bit; alpha is dropped for JPEG/BMP."""
    image_mod = _pillow()
    arr = to_uint8(image)
    if arr.shape[-1] == 4 and path.suffix.lower() in _NO_ALPHA:
        arr = arr[..., :3]
    im = image_mod.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)  # L, RGB or RGBA from the shape
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        im.save(tmp, quality=95) if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else im.save(tmp)
        tmp.replace(path)
    except (OSError, ValueError, KeyError) as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write image {path}: {exc}") from None

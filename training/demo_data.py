"""Images for the demo model: which ones train it, which ones are held out, and how LR is made.

Training images are read from the sample data that ships inside the scikit-image and
matplotlib wheels (bundled files only: nothing is downloaded). The held-out images are copies
of bundled files kept in ``assets/`` so the quality benchmark and the demo run without those
packages. Licences are recorded in ``assets/LICENSES.md`` and in the model's metadata.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ASSETS = Path(__file__).resolve().parents[1] / "assets"

# (package, file inside its sample-data folder, licence as the package documents it)
TRAIN_IMAGES = [
    ("scikit-image", "astronaut.png", "public domain (NASA)"),
    ("scikit-image", "coffee.png", "CC0 (Rachel Michetti)"),
    ("scikit-image", "hubble_deep_field.jpg", "public domain (NASA)"),
    ("scikit-image", "ihc.png", "no known copyright restrictions (CMMI)"),
    ("scikit-image", "retina.jpg", "CC0 (Mikael Häggström)"),
    ("scikit-image", "camera.png", "CC0 (Lav Varshney)"),
    ("scikit-image", "brick.png", "CC0 (CC0Textures)"),
    ("scikit-image", "grass.png", "CC0 (DeviantArt linolafett)"),
    ("scikit-image", "gravel.png", "CC0 (CC0Textures)"),
    ("scikit-image", "coins.png", "no known copyright restrictions (Brooklyn Museum)"),
]
# Never used in training; copies live in assets/ (byte-identical to the wheels' files).
HELDOUT_IMAGES = [
    ("scikit-image", "chelsea.png", "CC0 (Stefan van der Walt)"),
    ("scikit-image", "rocket.jpg", "public domain (SpaceX)"),
    ("matplotlib", "grace_hopper.jpg", "public domain (U.S. Navy photograph)"),
]
SAMPLE_IMAGE = ASSETS / "chelsea.png"  # the demo command's input


def package_data_dir(package: str) -> Path:
    """The bundled sample-data folder of scikit-image or matplotlib, found without importing it."""
    module = {"scikit-image": "skimage", "matplotlib": "matplotlib"}[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"{package} is not installed; the demo training data comes from its wheel "
            f"(pip install scikit-image matplotlib)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "data" if package == "scikit-image" else root / "mpl-data" / "sample_data"


def load_rgb(path: str | Path) -> torch.Tensor:
    """An image file as float32 RGB [3, H, W] in 0..1 (grey is replicated; alpha is dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def training_images() -> list[torch.Tensor]:
    held = {name for _, name, _ in HELDOUT_IMAGES}
    assert not held & {name for _, name, _ in TRAIN_IMAGES}, "held-out image in the training set"
    return [load_rgb(package_data_dir(pkg) / name) for pkg, name, _ in TRAIN_IMAGES]


def heldout_images() -> list[tuple[str, torch.Tensor]]:
    return [(name, load_rgb(ASSETS / name)) for _, name, _ in HELDOUT_IMAGES]


def modcrop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so both sides are multiples of ``scale``."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The degradation: bicubic with antialiasing (a = -0.75, like PIL's/MATLAB's imresize), on
    float data, clamped to 0..1 and rounded to 8 bits like a saved LR image. hr: [B, 3, H, W]
    with H, W multiples of ``scale``."""
    h, w = hr.shape[-2:]
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return (lr.clamp(0, 1) * 255).round() / 255


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical baseline the demo model is compared with."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)

"""Shared test helpers: import the pack as a package from its folder, find reference data.

The pack is imported under PACK_NAME exactly as ComfyUI would import it (a package whose name
is not one of our folder names), so an absolute ``import nodes`` inside it would fail here.
``import_pack()`` registers it in ``sys.modules`` as ``paragonsr2_pack`` (tests/conftest.py does
that before any test module is imported), so tests use ordinary import statements:

    from paragonsr2_pack.engines.tiling import runner as tiling

IDEs and pyright resolve ``paragonsr2_pack`` through ``.ide/paragonsr2_pack``, a link to the
repository that scripts/setup_env.sh creates (gitignored; see CONTRIBUTING.md).
``submodule("engines.tiling.runner")`` is the older spelling of the same thing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
_SHARED_REFERENCE = PACK_ROOT.parent / "shared" / "reference"


def _load_launcher():
    """paragonsr2.py holds the one implementation of "import the pack like ComfyUI does"."""
    spec = importlib.util.spec_from_file_location("paragonsr2_launcher", PACK_ROOT / "paragonsr2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_LAUNCHER = _load_launcher()
PACK_NAME = _LAUNCHER.PACK_NAME


def import_pack(name: str = PACK_NAME):
    return _LAUNCHER.import_pack(name)


def submodule(dotted: str):
    """A module of the pack, e.g. submodule("engines.tiling.runner")."""
    return _LAUNCHER.submodule(dotted, PACK_NAME)


def node_defaults(node_cls, **given) -> dict:
    """Arguments as ComfyUI builds them: widget defaults (first combo entry) plus the given
    links and values."""
    args = {}
    for section in ("required", "optional"):
        for name, (kind, *opts) in node_cls.INPUT_TYPES().get(section, {}).items():
            if name in given:
                args[name] = given[name]
            elif isinstance(kind, list):
                args[name] = (opts[0] if opts else {}).get("default", kind[0])
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                args[name] = opts[0]["default"]
    return args


def run_node(node_cls, **given):
    """Call a node class the way ComfyUI does: a fresh instance, FUNCTION, keyword inputs."""
    return getattr(node_cls(), node_cls.FUNCTION)(**node_defaults(node_cls, **given))


def reference_dir() -> Path:
    """The full upstream vectors in ../shared when present, else the compact in-repo subset."""
    override = os.environ.get("PARAGONSR2_REFERENCE_DIR")
    if override:
        return Path(override)
    if (_SHARED_REFERENCE / "manifest.json").is_file():
        return _SHARED_REFERENCE
    return TEST_DATA / "reference"


def reference_cases() -> list[dict]:
    return json.loads((reference_dir() / "manifest.json").read_text())["cases"]


def reference_case_for(variant: str, scale: int = 2) -> dict:
    """The first manifest case of ``variant`` at ``scale`` (x2 cases exist for every variant)."""
    return next(c for c in reference_cases() if c["variant"] == variant and c["scale"] == scale)


def load_reference(case: dict):
    """(model, io tensors) for one manifest case."""
    from safetensors.torch import load_file

    from paragonsr2_pack import paragonsr2_arch as arch

    model = arch.load_model(reference_dir() / case["weights"], upsampler_alpha=case["upsampler_alpha"])
    return model, load_file(str(reference_dir() / case["io"]))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(peak * peak / mse)).item()


def natural_image(h: int, w: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """A smooth-plus-texture RGB image in 0..1 (B, 3, H, W): edges, gradients and fine detail,
    so attention and tiling see something like a photograph rather than white noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = []
    for _ in range(batch):
        phase = torch.rand(6, generator=g) * 6.28
        freq = 2 + torch.rand(6, generator=g) * 10
        chans = []
        for c in range(3):
            wave_x = torch.sin(freq[c] * xx * 3.14 + phase[c])
            wave_y = torch.cos(freq[c + 3] * yy * 3.14 + phase[c + 3])
            v = 0.5 + 0.25 * wave_x * wave_y
            v = v + 0.2 * ((xx * (c + 1) + yy * 2 + phase[c]) % 0.37 > 0.18).float()  # hard edges
            chans.append(v)
        img = torch.stack(chans)
        noise = torch.rand(3, (h + 3) // 4, (w + 3) // 4, generator=g)
        texture = torch.nn.functional.interpolate(noise[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        out.append((0.8 * img + 0.2 * texture).clamp(0, 1))
    return torch.stack(out)

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
import subprocess
import sys
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
_SHARED_REFERENCE = PACK_ROOT.parent / "shared" / "reference"


LAUNCHER = PACK_ROOT / "paragonsr2.py"


def load_file_module(name: str, path: Path):
    """A module from a file outside any package (the launcher, a benchmark, a fixture maker),
    registered in ``sys.modules`` under ``name`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py path always gives both
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# paragonsr2.py holds the one implementation of "import the pack like ComfyUI does".
_LAUNCHER = load_file_module("paragonsr2_launcher", LAUNCHER)
PACK_NAME = _LAUNCHER.PACK_NAME


def import_pack(name: str = PACK_NAME):
    return _LAUNCHER.import_pack(name)


def launch_cli(args, cwd: Path) -> subprocess.Popen:
    """The command line (paragonsr2.py) as a real process with piped text output, for tests that
    send it signals; unbuffered so its progress lines arrive as they are written."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def has_encoder(name: str) -> bool:
    """Whether this PyAV build can encode with ``name`` (e.g. libx265); False without PyAV."""
    try:
        import av

        av.Codec(name, "w")
    except Exception:
        return False
    return True


def submodule(dotted: str):
    """A module of the pack, e.g. submodule("engines.tiling.runner")."""
    return _LAUNCHER.submodule(dotted, PACK_NAME)


def node_defaults(node_cls, **given) -> dict:
    """Arguments as ComfyUI builds them for a V3 node: each widget's default (a combo without
    one: its first option), plus the given links and values; unconnected sockets are left out."""
    args = {}
    for item in node_cls.define_schema().inputs or []:
        if item.id in given:
            args[item.id] = given[item.id]
        elif getattr(item, "default", None) is not None:
            args[item.id] = item.default
        elif getattr(item, "options", None):
            args[item.id] = item.options[0]
    unknown = set(given) - set(args)
    if unknown:
        raise TypeError(f"{node_cls.__name__} has no input(s) {sorted(unknown)}")
    return args


def node_input(node_cls, name: str):
    """One input object of a V3 node's schema (``.default``, ``.options``, ``.min``, ``.tooltip``...)."""
    return next(item for item in node_cls.define_schema().inputs if item.id == name)


def combo_options(node_cls, name: str) -> list:
    """The choices a combo input offers (model files, devices, ...)."""
    return list(node_input(node_cls, name).options)


def node_outputs(node_cls) -> list[tuple[str, str]]:
    """(type, name) of each output, as ComfyUI lists them (RETURN_TYPES, RETURN_NAMES)."""
    return [(str(o.io_type), o.display_name) for o in node_cls.define_schema().outputs]


class _Hidden:
    """``cls.hidden`` as ComfyUI fills it: the given values; any other name reads as None."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __getattr__(self, name):
        return None


def run_node(node_cls, hidden: dict | None = None, **given) -> tuple:
    """Call a V3 node the way ComfyUI does: ``execute`` with keyword inputs (defaults filled in)
    on a copy of the class that carries the hidden values (``cls.hidden.prompt``, ...); returns
    the outputs as a tuple (the NodeOutput's args)."""
    runner = type(node_cls.__name__, (node_cls,), {"hidden": _Hidden(**(hidden or {}))})
    result = runner.execute(**node_defaults(node_cls, **given))
    return tuple(result.args)


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


def video_facts(source) -> dict:
    """What the video tests compare in a media file (a path or its bytes): the video packets
    (bytes), frame times in seconds from the first, frames as uint8 RGB, size, average fps, codec
    name, and the audio's length in seconds (None without audio). Needs PyAV."""
    import io

    import av
    import numpy as np

    def opened():  # a fresh container per read: no read depends on a seek back to the start
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))

    with opened() as c:
        stream = c.streams.video[0]
        decoded = list(c.decode(stream))
        times = np.array([float(f.pts * stream.time_base) for f in decoded])
        facts = {
            "times": times - times[0],
            "frames": np.stack([f.to_ndarray(format="rgb24") for f in decoded]),
            "size": (stream.width, stream.height),
            "fps": float(stream.average_rate or 0),
            "codec": stream.codec_context.name,
        }
    with opened() as c:
        facts["packets"] = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    with opened() as c:
        facts["audio"] = None
        if c.streams.audio:
            a = c.streams.audio[0]
            facts["audio"] = sum(f.samples for f in c.decode(a)) / a.sample_rate
    return facts

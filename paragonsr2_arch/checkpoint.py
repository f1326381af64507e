"""Reading, normalising, validating and writing ParagonSR2 checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from .detect import detect_config
from .errors import ModelLoadError
from .network import ParagonSR2

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
MODEL_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
WRAPPER_KEYS = ("params_ema", "params", "state_dict")

# Older checkpoints, old name -> current name. Applied as substring replacements in order.
_LEGACY_PREFIXES = (
    ("base_upsampler.resample_conv.", "base.blur."),
    ("base_upsampler.sharpen.", "base.sharp."),
    ("global_detail_gain", "detail_gain"),
    ("detail_upsampler.up_conv.", "up.0."),
    ("conv_fuse.", "conv_mid."),
)
_LEGACY_IN_BASE = ((".conv_h.", ".h."), (".conv_v.", ".v."))
_LEGACY_IN_BLOCKS = ((".net.0.", ".conv1."), (".net.2.", ".dw."), (".net.4.", ".conv2."))


def _is_safetensors(path: Path) -> bool:
    """Sniff the content (8-byte little-endian header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= path.stat().st_size - 8


def _is_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (current) or a pickle (protocol 2+, legacy)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Return (raw object, metadata) from a model file; never executes code in the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name}: the file is empty (an interrupted download?)")
    if _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, metadata  # noqa: SIM118 (safe_open is no dict)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadError(f"{path.name}: damaged or truncated .safetensors file ({_first_line(exc)})") from None
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        raise ModelLoadError(f"{path.name}: not a valid .safetensors file (bad header)")
    if not _is_torch_file(path):
        raise ModelLoadError(
            f"{path.name}: not a model file (neither .safetensors nor a PyTorch zip archive or pickle)"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text or "REDUCE" in text:
            raise ModelLoadError(
                f"{path.name}: the file contains Python objects other than tensors (possibly code); "
                "it was refused and nothing in it was executed. Convert it to .safetensors with a "
                "tool you trust, or use a file from a trusted source."
            ) from None
        raise ModelLoadError(f"{path.name}: damaged or not a PyTorch model file ({_detail(exc)})") from None
    except Exception as exc:
        detail = _first_line(exc)[:120]
        raise ModelLoadError(f"{path.name}: damaged or truncated PyTorch model file ({detail})") from None
    return obj, {}


def _detail(exc: BaseException) -> str:
    """The specific part of torch's long weights-only message (e.g. 'Unsupported operand 197')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith("Unsupported")]
    return specific[0][:200] if specific else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def normalize_state_dict(obj: object, name: str = "state dict") -> dict[str, torch.Tensor]:
    """Unwrap trainer containers, strip ``module.``, map legacy names, check value types."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{name}: expected a dict of tensors, found {type(obj).__name__}")
    if not obj:
        raise ModelLoadError(f"{name}: the state dict is empty")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ModelLoadError(f"{name}: state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{name}: {key!r} holds a {type(value).__name__}, not a tensor")
        while key.startswith("module."):
            key = key[len("module.") :]
        state[_current_key_name(key)] = value
    return state


def _current_key_name(key: str) -> str:
    for old, new in _LEGACY_PREFIXES:
        if key.startswith(old):
            key = new + key[len(old) :]
    if key.startswith("base."):
        for old, new in _LEGACY_IN_BASE:
            key = key.replace(old, new)
    elif key.startswith("body."):
        for old, new in _LEGACY_IN_BLOCKS:
            key = key.replace(old, new)
    return key


def _check_against_model(state: Mapping[str, torch.Tensor], model: ParagonSR2, name: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        cfg = model.config
        raise ModelLoadError(
            f"{name}: looks like ParagonSR2 {cfg.variant} x{cfg.scale} ({cfg.num_feat} channels, "
            f"{cfg.num_groups}x{cfg.num_blocks} blocks) but does not match it; " + "; ".join(problems)
        )


def _metadata_alpha(metadata: Mapping[str, str], name: str) -> float | None:
    raw = metadata.get("upsampler_alpha")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ModelLoadError(f"{name}: metadata upsampler_alpha={raw!r} is not a number") from None


def load_model(source, *, upsampler_alpha: float | None = None) -> ParagonSR2:
    """Load a ParagonSR2 checkpoint (path or state dict) strictly (docs/network.md, section 10)."""
    metadata: dict = {}
    if isinstance(source, Mapping):
        name, obj = "state dict", source
    else:
        name = Path(source).name
        obj, metadata = read_checkpoint(source)
    state = normalize_state_dict(obj, name)
    if upsampler_alpha is None:
        upsampler_alpha = _metadata_alpha(metadata, name)
    try:
        config = detect_config(state, upsampler_alpha=upsampler_alpha)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{name}: {exc}") from None
    model = ParagonSR2(config)
    _check_against_model(state, model, name)
    model.load_state_dict(state, strict=True)
    model.metadata = dict(metadata)
    return model.float().eval().requires_grad_(False)


def save_model(model: ParagonSR2, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write a ``.safetensors`` with variant, scale and upsampler_alpha in its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"save_model writes .safetensors files, not {path.suffix!r}")
    info = {
        "architecture": "ParagonSR2",
        "variant": model.variant,
        "scale": str(model.scale),
        "upsampler_alpha": repr(float(model.upsampler_alpha)),
        "config": json.dumps(model.config.as_dict()),
    }
    info.update({str(k): str(v) for k, v in (metadata or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=info)
    os.replace(tmp, path)
    return path

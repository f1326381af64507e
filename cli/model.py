"""The model file and the engine that runs it, for the command line and its Ray workers."""

from __future__ import annotations

from pathlib import Path

from .. import paragonsr2_arch as arch
from ..engines.backends import registry
from .image_io import CliError


def load_model(path: Path, sharpness):
    """The ParagonSR2 model in ``path`` (``sharpness``: upsampler_alpha, None = the file's)."""
    if not path.is_file():
        raise CliError(f"model file not found: {path}")
    try:
        return arch.load_model(path, upsampler_alpha=sharpness)
    except arch.ModelLoadError as exc:  # its message already starts with the file name
        text = str(exc)
        message = text if path.name in text else f"{path}: {text}"
        raise CliError(f"cannot load model {message}") from None


def make_engine(model, backend: str, device: str, precision: str, video: bool = False):
    """The engine of ``backend`` (engines/backends/registry.py); ``video`` asks for one whose
    decode works (ONNX Runtime / TensorRT then use their video graphs)."""
    try:
        return registry.make_engine(backend, model, device, precision, video=video)
    except (RuntimeError, ValueError) as exc:
        raise CliError(
            f"cannot use the {backend} backend on device {device!r} with precision {precision!r}: {exc}"
        ) from None


def engine_for(args, video: bool = False):
    """The engine the command's options ask for (--model, --sharpness, --backend, --device, --precision)."""
    model = load_model(args.model, args.sharpness)
    backend = getattr(args, "backend", registry.DEFAULT_BACKEND)
    return make_engine(model, backend, args.device, args.precision, video=video)

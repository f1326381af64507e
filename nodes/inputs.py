"""Checks and options shared by the Upscale and Video Upscale nodes.

Everything a user can wire wrongly is checked here, before any engine is built or memory is
reserved, so a bad input is one line of ours and not a shape error from inside torch. Plain
functions: callable without ComfyUI (the inputs themselves are defined in nodes/sockets.py).
"""

from __future__ import annotations

import contextlib

from ..engines.runtime.checks import NonFiniteOutputError, check_images
from ..engines.runtime.contract import ModelHandle
from ..engines.tiling.output_size import MODEL_FACTOR, output_dims

__all__ = ["MODEL_FACTOR", "checked_request", "naming_model_on_failure"]


def checked_request(
    model, image, what: str, output_size: str = MODEL_FACTOR, output_factor: float = 2.0, output_long_side: int = 2048
) -> tuple[int, int] | None:
    """Check the model and the IMAGE input; returns the output (height, width) to resize to,
    or None for the model's own size."""
    if not isinstance(model, ModelHandle):
        raise ValueError(
            f"ParagonSR2: model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), not {type(model).__name__}"
        )
    check_images(image, what)
    return output_dims(
        output_size,
        float(output_factor),
        int(output_long_side),
        int(image.shape[1]),
        int(image.shape[2]),
        int(model.scale),
    )


@contextlib.contextmanager
def naming_model_on_failure(model: ModelHandle):
    """A NaN/Inf result becomes one line naming the model file (the runners only know the engine)."""
    try:
        yield
    except NonFiniteOutputError as exc:
        raise RuntimeError(exc.describe(model.name)) from None

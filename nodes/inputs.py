"""Checks and options shared by the Upscale and Video Upscale nodes.

Everything a user can wire wrongly is checked here, before any engine is built or memory is
reserved, so a bad input is one line of ours and not a shape error from inside torch.
"""

from __future__ import annotations

import contextlib

from ..engines.runtime.checks import NonFiniteOutputError, check_images
from ..engines.runtime.contract import ModelHandle
from ..engines.tiling.output_size import MODEL_FACTOR, OUTPUT_SIZE_MODES, output_dims

__all__ = ["MODEL_FACTOR", "checked_request", "naming_model_on_failure", "output_size_inputs"]


def output_size_inputs() -> dict:
    """The optional output-size inputs; their defaults keep the model's factor (old workflows)."""
    return {
        "output_size": (
            OUTPUT_SIZE_MODES,
            {
                "default": MODEL_FACTOR,
                "tooltip": "model factor = the model's own scale (fastest, no resampling). factor = "
                "output_factor x the input size (e.g. 1.5 with a 2x or 4x model). long side = "
                "the longer output side is output_long_side pixels, aspect ratio kept. The resize "
                "(bicubic, antialiased) happens image by image as they are produced, so the batch "
                "never holds the model-size results all at once.",
            },
        ),
        "output_factor": (
            "FLOAT",
            {
                "default": 2.0,
                "min": 0.05,
                "max": 16.0,
                "step": 0.05,
                "tooltip": "Output size relative to the input when output_size is 'factor'.",
            },
        ),
        "output_long_side": (
            "INT",
            {
                "default": 2048,
                "min": 1,
                "max": 32768,
                "step": 1,
                "tooltip": "Length in pixels of the output's longer side when output_size is 'long side'.",
            },
        ),
    }


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

"""The video options: one value for everything a video upscale is asked to do.

The Video Upscale nodes, the command line and the Ray workers all build a ``VideoOptions``
(from node inputs, arguments, or ``from_dict`` of what the driver sent), so an option is
spelled, defaulted and validated once. ``key()`` is a stable digest of the options that change
the output: resumed work (engines/video/resume.py) is only reused under the same key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from ..tiling.output_size import MODEL_FACTOR, OUTPUT_SIZE_MODES, output_dims
from . import scene_cuts, temporal

# Video codecs by what they mean to the user; engines/video/encode.py maps them to encoders and
# says which this PyAV build has. "h264 lossless" is H.264 RGB at qp 0 (libx264rgb): exact 8-bit
# frames, which MP4 carries; "ffv1" is lossless too (MKV only).
H264, H265, LOSSLESS = "h264", "h265", "h264 lossless"
CODECS = (H264, H265, LOSSLESS, "av1", "vp9", "ffv1")
LOSSLESS_CODECS = (LOSSLESS, "ffv1")
DEFAULT_QUALITY = 16  # CRF: 0 = best .. 51 = worst; 16 is visually transparent for x264/x265
MAX_QUALITY = 51
MAX_TILE = 8192
MAX_FRAMES_PER_CHUNK = 256


@dataclass(frozen=True)
class VideoOptions:
    """What to do with every frame, and how to encode the result.

    temporal_strength: alpha of the recurrence, 0..temporal.MAX_STRENGTH (0 = each frame alone).
    scene_cut_sensitivity: 0 (never cut) .. 1; motion_adaptive: blend less where it moved.
    tile_size: LR tile side, 0 = auto; frames_per_chunk: frames per network call, 0 = auto.
    output_size / output_factor / output_long_side: the output-size rule of the nodes
    (tiling/output_size.py); the factor and long side are read only in their mode.
    codec: one of CODECS (whether this PyAV build has it is checked when encoding starts);
    quality: CRF (lower = better), not used by the lossless codecs.
    """

    temporal_strength: float = temporal.DEFAULT_STRENGTH
    scene_cut_sensitivity: float = scene_cuts.DEFAULT_SENSITIVITY
    motion_adaptive: bool = False
    tile_size: int = 0
    frames_per_chunk: int = 0
    output_size: str = MODEL_FACTOR
    output_factor: float = 2.0
    output_long_side: int = 2048
    codec: str = H264
    quality: int = DEFAULT_QUALITY

    def __post_init__(self):
        # Normalise types first (node widgets and JSON give ints for floats and the like), so
        # equal options compare, hash and digest equal.
        for name, kind in (("temporal_strength", float), ("scene_cut_sensitivity", float), ("output_factor", float)):
            object.__setattr__(self, name, _number(name, getattr(self, name), kind))
        for name in ("tile_size", "frames_per_chunk", "output_long_side", "quality"):
            object.__setattr__(self, name, _number(name, getattr(self, name), int))
        object.__setattr__(self, "motion_adaptive", bool(self.motion_adaptive))
        if not 0.0 <= self.temporal_strength <= temporal.MAX_STRENGTH:
            raise ValueError(f"temporal_strength must be in [0, {temporal.MAX_STRENGTH}], got {self.temporal_strength}")
        if not 0.0 <= self.scene_cut_sensitivity <= 1.0:
            raise ValueError(f"scene_cut_sensitivity must be in [0, 1], got {self.scene_cut_sensitivity}")
        if not 0 <= self.tile_size <= MAX_TILE:
            raise ValueError(f"tile_size must be 0 (auto) or up to {MAX_TILE}, got {self.tile_size}")
        if not 0 <= self.frames_per_chunk <= MAX_FRAMES_PER_CHUNK:
            raise ValueError(
                f"frames_per_chunk must be 0 (auto) or up to {MAX_FRAMES_PER_CHUNK}, got {self.frames_per_chunk}"
            )
        if self.output_size not in OUTPUT_SIZE_MODES:
            raise ValueError(f"output_size must be one of {', '.join(OUTPUT_SIZE_MODES)}, got {self.output_size!r}")
        if self.output_factor <= 0:
            raise ValueError(f"output_factor must be above 0, got {self.output_factor}")
        if self.output_long_side < 1:
            raise ValueError(f"output_long_side must be at least 1, got {self.output_long_side}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if not 0 <= self.quality <= MAX_QUALITY:
            raise ValueError(f"quality (CRF) must be in [0, {MAX_QUALITY}], got {self.quality}")

    @property
    def lossless(self) -> bool:
        return self.codec in LOSSLESS_CODECS

    def output_dims(self, height: int, width: int, scale: int) -> tuple[int, int] | None:
        """(out_h, out_w) for LR frames of height x width, None at the model's own size."""
        return output_dims(self.output_size, self.output_factor, self.output_long_side, height, width, scale)

    def upscale_kwargs(self) -> dict:
        """The keywords of temporal.upscale_video these options set."""
        return {
            "temporal_strength": self.temporal_strength,
            "scene_cut_sensitivity": self.scene_cut_sensitivity,
            "motion_adaptive": self.motion_adaptive,
            "tile_size": self.tile_size,
            "frames_per_chunk": self.frames_per_chunk,
        }

    def to_dict(self) -> dict:
        """Plain values (JSON, Ray task arguments); ``from_dict`` gives back an equal value."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> VideoOptions:
        """Options from ``to_dict`` output; an unknown name is refused (a typo would otherwise
        silently fall back to a default), a missing one takes its default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown video option(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes) -> VideoOptions:
        return VideoOptions(**{**self.to_dict(), **changes})

    def key(self) -> str:
        """A stable digest (16 hex digits) of every option: equal options give the same key in
        any process, on any machine, in any Python version (sorted JSON of plain values, floats
        by repr). Resume keys use it: a changed option means a fresh run."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(name: str, value, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if kind is int:
        if value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value}")
        return int(value)
    return float(value)

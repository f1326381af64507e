"""Splitting one video into chunks that can be upscaled independently, and the temporal state
at any frame computed from the frames before it (no network).

Why this is exact: the recurrence's state is an average of LR *input* frames (temporal.py:
``b_t = (1 - w_t) x_t + w_t b_{t-1}``, restarted at cuts), so the state before frame k needs
the frames before k and pixel arithmetic only.

The warm-up rule. A chunk starts at frame k; H = scene_cuts.HISTORY_FRAMES (the cut decision
at frame t is a pure function of frames t - H .. t; motion weights read frame t - 1 only).
- The anchor a: k itself when k is frame 0 or a scene cut (the state restarts there);
  otherwise max(last cut before k, k - P) with P = warmup_frames(alpha).
- The worker decodes from max(0, a - H) (``Chunk.decode_start``) and runs the recurrence
  without the network (state_at_frame) up to k - 1, then upscales from k. Every cut decision
  from a on is then the single-process one (each has its H frames of history), and so is
  every motion weight.
- Exactness: when a is a cut (or 0) the average restarts at a in both runs: the state is
  exact. Otherwise the two runs agree from a on, and only the state before a differs; every
  per-frame weight w_t is at most alpha, so that old state holds at most alpha**P of the
  weight at frame k - 1, and P is the smallest with alpha**P <= WARMUP_TOLERANCE (1e-6): the
  state differs by at most 1e-6 per pixel (pixel range 1), far below one 8-bit level.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from . import scene_cuts, temporal
from .options import VideoOptions

WARMUP_TOLERANCE = 1e-6
# Frames per chunk of a long shot. Per-chunk overhead (task start, seek to a keyframe, the
# warm-up prefix, one more encoder start) is a few frames' worth; 240 frames (10 s at 24 fps)
# keeps it far below 5 % (docs/distributed.md has the measured model).
DEFAULT_CHUNK_FRAMES = 240
_STATE_BATCH = 8  # prefix frames converted to float at a time: memory stays a few frames


def history_frames() -> int:
    """How many frames before a frame its cut decision reads (motion weights read one)."""
    return int(getattr(scene_cuts, "HISTORY_FRAMES", 1))


def warmup_frames(alpha: float, tolerance: float = WARMUP_TOLERANCE) -> int:
    """The smallest P with alpha**P <= tolerance (0 when alpha is 0: no state at all).
    alpha 0.2 -> 9, 0.5 -> 20, 0.8 -> 62, 0.95 -> 270."""
    a = float(alpha)
    if a <= 0:
        return 0
    if a >= 1:
        raise ValueError(f"temporal strength must be below 1 for a bounded warm-up, got {a}")
    return max(1, math.ceil(math.log(tolerance) / math.log(a) - 1e-9))


def lead_in_frames(alpha: float) -> int:
    """Frames to load before a mid-shot starting frame (the warm-up plus the cut detector's
    history): 18 at alpha 0.2. Loading them and passing them as the prefix (the Video Upscale
    node's start_frame) makes the start seamless."""
    return warmup_frames(alpha) + history_frames()


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of the output; the worker decodes from ``decode_start`` (frames
    [decode_start, start) only build the state). ``restart``: start is frame 0 or a cut."""

    index: int
    start: int
    end: int
    decode_start: int
    restart: bool

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def warmup(self) -> int:
        return self.start - self.decode_start


def shots(n_frames: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    """[start, end) of every shot; ``cuts``: frames where a new shot starts (0 implied)."""
    starts = sorted({0, *(int(c) for c in cuts if 0 < int(c) < n_frames)})
    return [(s, e) for s, e in zip(starts, starts[1:] + [n_frames])]


def plan_chunks(
    n_frames: int, cuts: Iterable[int], alpha: float, chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> list[Chunk]:
    """Chunks of at most ``chunk_frames`` frames: scene cuts first (a chunk starting at a cut
    needs no warm-up), then long shots split into equal parts, and runs of short shots packed
    together (each task should be worth its overhead; cuts inside a chunk are found by the
    worker itself, exactly, since it has the frames before them)."""
    if n_frames <= 0:
        return []
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    merged: list[tuple[int, int, int]] = []  # (start, end, start of the shot holding start)
    for s, e in shots(n_frames, cuts):
        if merged and e - merged[-1][0] <= chunk_frames:
            merged[-1] = (merged[-1][0], e, merged[-1][2])  # a whole short shot joins the previous chunk
            continue
        parts = math.ceil((e - s) / chunk_frames)
        bounds = [s + round(i * (e - s) / parts) for i in range(parts + 1)]
        merged += [(a, b, s) for a, b in itertools.pairwise(bounds)]
    warm, history = warmup_frames(alpha), history_frames()
    plan = []
    for i, (start, end, shot) in enumerate(merged):
        anchor = start if start == shot else max(shot, start - warm)
        plan.append(Chunk(index=i, start=start, end=end, restart=start == shot, decode_start=max(0, anchor - history)))
    return plan


class CutFinder:
    """The frames (> 0) where the single-process run restarts the state, found batch by
    batch (memory: HISTORY_FRAMES thumbnails carried over), with the same thumbnails and rule as
    temporal.upscale_video. ``add(frames)`` with consecutive (N, H, W, C) IMAGE batches."""

    def __init__(self, sensitivity: float):
        self.sensitivity = float(sensitivity)
        self.cuts: list[int] = []
        self.frames = 0
        self._history: torch.Tensor | None = None  # the last HISTORY_FRAMES thumbnails

    def add(self, frames: torch.Tensor) -> None:
        with torch.inference_mode():
            for start in range(0, frames.shape[0], _STATE_BATCH):
                thumbs = scene_cuts.thumbnails(temporal.frames_to_rgb(frames[start : start + _STATE_BATCH]))
                restart = scene_cuts.detect_cuts(thumbs, self._history, self.sensitivity)
                self.cuts += [self.frames + i for i, r in enumerate(restart) if r and self.frames + i > 0]
                self.frames += thumbs.shape[0]
                self._history = scene_cuts.recent_history(self._history, thumbs)


def state_at_frame(
    frames: torch.Tensor,
    *,
    temporal_strength: float,
    scene_cut_sensitivity: float = scene_cuts.DEFAULT_SENSITIVITY,
    motion_adaptive: bool = False,
    signature: tuple,
    state: temporal.TemporalState | None = None,
) -> temporal.TemporalState:
    """The TemporalState after ``frames`` (N, H, W, C IMAGE), as temporal.upscale_video would
    return it for these frames, without running the network: the same thumbnails, cut
    decisions, motion weights and blend, frame by frame. ``state`` continues an earlier one
    (ignored, like upscale_video does, when its signature differs); without it the first frame
    restarts the average. ``signature``: (model key, LR height, LR width), the key the caller
    passes to upscale_video as model_key."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty (N, H, W, C) batch; got {tuple(frames.shape)}")
    key, height, width = signature
    state = state if temporal.state_matches(state, key, height, width) else None
    with torch.inference_mode():
        for start in range(0, frames.shape[0], _STATE_BATCH):
            lr = temporal.frames_to_rgb(frames[start : start + _STATE_BATCH])
            _, state = temporal.advance(
                lr,
                state,
                signature=(key, height, width),
                alpha=float(temporal_strength),
                sensitivity=scene_cut_sensitivity,
                motion_adaptive=motion_adaptive,
            )
    assert state is not None  # frames is not empty, so the loop ran (said for the type checker)
    return state


def warm_up(
    frames_before: torch.Tensor,
    options: VideoOptions,
    state: temporal.TemporalState | None,
    model_key: str,
) -> temporal.TemporalState | None:
    """The state before a run that starts mid-clip: ``frames_before`` (N, H, W, C IMAGE, the
    frames just before the first output frame) only build the state, exactly as upscaling them
    with ``options`` would (state_at_frame); no network. ``state`` continues an earlier one;
    ``model_key`` is what the caller passes to upscale_video (temporal.engine_key(engine) when
    it passes none). No frames: ``state`` unchanged. Used by the Video Upscale node's
    start_frame, the Ray workers and the streaming pipeline."""
    if frames_before.shape[0] == 0:
        return state
    return state_at_frame(
        frames_before,
        temporal_strength=options.temporal_strength,
        scene_cut_sensitivity=options.scene_cut_sensitivity,
        motion_adaptive=options.motion_adaptive,
        signature=(model_key, frames_before.shape[1], frames_before.shape[2]),
        state=state,
    )

"""Temporally stable video upscaling: the spec's feature recurrence, run in batches.

Section 7 of docs/network.md: the state is an exponential moving average of conv_in features,
``s_t = (1 - a) * conv_in(x_t) + a * s_{t-1}``, restarted (``s_t = conv_in(x_t)``) on the first
frame and after a scene cut; frame t's output is the network with ``s_t`` in place of conv_in's
output. conv_in is one convolution (linear, zero padded, with a bias) and the blend weights sum
to one, so ``s_t = conv_in(b_t)`` with ``b_t = (1 - a) * x_t + a * b_{t-1}``: the same
average taken over the 3-channel LR frames. The pipeline therefore
1. blends the LR frames of a chunk (3 channels instead of C = 16-64 feature channels),
2. encodes the blended frames (``engine.encode``) and decodes them with the unblended frames
   for the base path (``engine.decode``): on GPUs a whole chunk per call, on the CPU one frame
   per call (see plan_video).
The result equals the frame-by-frame recurrence up to float rounding (tested against the
network's own forward and the reference vectors).

Tiling: the state is a whole LR frame, so every tile simply crops it; with a halo of at least
the network's receptive radius the tiled output equals the untiled one, and the tile grid may
change between batches (or shrink on out-of-memory) without touching the state.

Memory: the output (N, sH, sW, C) is allocated once and filled in place; everything else
lives for one chunk x one tile, plus the (1, 3, H, W) state.

Only ``engine.encode`` / ``engine.decode`` are used, so any Engine (torch, ONNX Runtime,
TensorRT) runs it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..runtime.backoff import OutOfMemoryBackoff
from ..runtime.checks import check_images, check_output
from ..tiling.output_size import resize_into
from ..tiling.paste import as_rgb_bchw, crop_context, paste_alpha, paste_interior
from ..tiling.plan import plan_engine_tiles
from ..tiling.runner import PROGRESS_INTERVAL_S
from ..tiling.sizing import MIN_TILE, cpu_images_per_call, tile_layout
from ..tiling.window_pad import check_size, pad_bchw, pad_multiple, padded_size
from . import motion, scene_cuts

logger = logging.getLogger("ParagonSR2")

DEFAULT_STRENGTH = 0.2
MAX_STRENGTH = 0.95
DEFAULT_CHUNK = 8


@dataclass
class TemporalState:
    """The PARAGONSR2_TEMPORAL_STATE value: what the next batch of the same video needs.

    ``signature`` (model key, LR height, LR width) must match for the state to be used;
    ``blended`` (1, 3, H, W) float32 CPU is the last frame's blended LR frame b_t (its conv_in
    features are the spec's state s_t); ``last_thumb`` (h, 32, 32), h <= scene_cuts.HISTORY_FRAMES,
    holds the scene-cut thumbnails of the last frames (cut decisions read that bounded history, see
    scene_cuts); ``last_frame`` is the last LR RGB frame (1, 3, H, W), for motion-adaptive blending.
    """

    signature: tuple
    blended: torch.Tensor = field(repr=False)
    last_thumb: torch.Tensor = field(repr=False)
    last_frame: torch.Tensor = field(repr=False)
    frames_seen: int = 0

    def __repr__(self) -> str:
        key, h, w = self.signature
        return f"TemporalState({key}, {w}x{h} LR, after {self.frames_seen} frame(s))"


def engine_key(engine) -> str:
    """The model key of a state made by ``engine`` when the caller names none (command line, Ray
    workers): variant and scale. The nodes pass a key that also names the model file."""
    return f"{engine.info.variant or 'paragonsr2'} x{engine.info.scale}"


def state_matches(state: TemporalState | None, key: str, height: int, width: int) -> bool:
    if state is None:
        return False
    if not isinstance(state, TemporalState):
        logger.warning("ParagonSR2 video: ignoring a temporal state of type %s", type(state).__name__)
        return False
    if tuple(state.signature[:3]) != (key, height, width):
        logger.warning(
            "ParagonSR2 video: the temporal state is for %s at %dx%d, these frames are %s at %dx%d;"
            " starting a fresh state",
            state.signature[0],
            state.signature[2],
            state.signature[1],
            key,
            width,
            height,
        )
        return False
    frame_shape = (1, 3, height, width)
    if any(not isinstance(t, torch.Tensor) or tuple(t.shape) != frame_shape for t in (state.blended, state.last_frame)):
        # A signature that matches tensors of another size: built by hand or tampered with.
        logger.warning(
            "ParagonSR2 video: the temporal state's frames are not %dx%d although its "
            "signature says so; starting a fresh state",
            width,
            height,
        )
        return False
    return True


def plan_video(
    engine,
    height: int,
    width: int,
    n_frames: int,
    tile_size: int,
    frames_per_chunk: int,
    halo: int | None,
    free_memory: Callable[[], int] | None,
) -> tuple[list, int]:
    """(tile grid, frames per chunk). A chunk is blended, then encoded and decoded per tile in
    one call. frames_per_chunk > 0 is taken as is; auto is DEFAULT_CHUNK on GPUs (fewer, larger
    kernel launches; not measured here, no GPU was available) and on the CPU what
    sizing.cpu_images_per_call allows: one frame of 256x256 or more per call, several small ones.
    The CPU is compute bound at one frame: realtime x2, 256x256, 2-core EPYC: 127 ns per LR pixel
    at one frame per call, 139 at two, 163 at three (benchmarks/video.py --speed)."""
    if frames_per_chunk and frames_per_chunk > 0:
        chunk = int(frames_per_chunk)
    elif engine.info.device.type != "cpu":
        chunk = DEFAULT_CHUNK
    else:
        tiles = plan_grid(engine, height, width, tile_size, 1, halo, free_memory)
        largest = max(t.context_shape[0] * t.context_shape[1] for t in tiles)
        return tiles, max(1, min(n_frames, cpu_images_per_call(engine.info, largest) or 1))
    chunk = max(1, min(chunk, n_frames))
    return plan_grid(engine, height, width, tile_size, chunk, halo, free_memory), chunk


def plan_grid(
    engine, height: int, width: int, tile_size: int, batch: int, halo: int | None, free_memory: Callable[[], int] | None
) -> list:
    """The tile grid used for every frame, laid out like the image runner's (one tile covering
    the frame when it fits). ``batch``: frames per call, for the auto tile size."""
    tile, halo, wrap = tile_layout(engine.info, height, width, tile_size, halo, free_memory, batch)
    return plan_engine_tiles(engine.info, height, width, tile, halo, wrap)


def blend_frames(
    lr: torch.Tensor, weights: list[float], maps: torch.Tensor | None, prev: torch.Tensor | None
) -> torch.Tensor:
    """The recurrence over one chunk of LR frames (n, 3, H, W): b_t = (1 - w_t) x_t + w_t b_{t-1}
    (b_{-1} = ``prev``); ``weights[t] == 0`` restarts (b_t = x_t); ``maps`` (n, 1, H, W), when
    given, replaces the scalar w_t of non-restart frames. Returns ``lr`` itself when no frame
    blends, so alpha = 0 runs exactly the single-image network."""
    if not any(w > 0 and (t > 0 or prev is not None) for t, w in enumerate(weights)):
        return lr
    blended = torch.empty_like(lr)
    for t, w in enumerate(weights):
        if w > 0 and prev is not None:
            m = w if maps is None else maps[t : t + 1]
            blended[t : t + 1] = (1 - m) * lr[t : t + 1] + m * prev
        else:
            blended[t : t + 1] = lr[t : t + 1]
        prev = blended[t : t + 1]
    return blended


def advance(
    lr: torch.Tensor,
    state: TemporalState | None,
    *,
    signature: tuple,
    alpha: float,
    sensitivity: float,
    motion_adaptive: bool,
) -> tuple[torch.Tensor, TemporalState]:
    """THE recurrence step, over one chunk of LR frames (n, 3, H, W) in playback order: scene
    cuts (against the state's recent thumbnails), motion weights, the blend. Returns the blended
    frames b_t (``lr`` itself when nothing blends) and the state after the chunk's last frame.
    ``state`` must already match (see state_matches) or be None (the first frame restarts).
    Every path that needs the state (the runner, the warm-up, chunked and resumed runs) goes
    through here, so their states are bit-identical by construction."""
    prev_blend, prev_thumb, prev_frame = (
        (None, None, None) if state is None else (state.blended, state.last_thumb, state.last_frame)
    )
    thumbs = scene_cuts.thumbnails(lr)
    restart = scene_cuts.detect_cuts(thumbs, prev_thumb, sensitivity)
    weights = [0.0 if r else alpha for r in restart]
    maps = None
    if motion_adaptive and alpha > 0 and any(w > 0 for w in weights):
        maps = motion.motion_weights(lr, prev_frame if prev_frame is not None else lr[:1], alpha)
    blended = blend_frames(lr, weights, maps, prev_blend)
    seen = state.frames_seen if state is not None else 0
    after = TemporalState(
        signature=tuple(signature),
        blended=blended[-1:].clone(),
        last_thumb=scene_cuts.recent_history(prev_thumb, thumbs),
        last_frame=lr[-1:].clone(),
        frames_seen=seen + lr.shape[0],
    )
    return blended, after


def frames_to_rgb(chunk: torch.Tensor) -> torch.Tensor:
    """(n, H, W, C) IMAGE slice, C = 1, 3 or 4 -> (n, 3, H, W) float32 RGB (gray replicated),
    in channels-last memory: the layout the IMAGE already has and the torch fast path computes
    in, so no copy is made on the way in and none on the way to the network."""
    return as_rgb_bchw(chunk).float().contiguous(memory_format=torch.channels_last)


def upscale_video(
    engine,
    frames: torch.Tensor,
    *,
    temporal_strength: float = DEFAULT_STRENGTH,
    scene_cut_sensitivity: float = scene_cuts.DEFAULT_SENSITIVITY,
    motion_adaptive: bool = False,
    tile_size: int = 0,
    frames_per_chunk: int = 0,
    halo: int | None = None,
    state: TemporalState | None = None,
    model_key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
    free_memory: Callable[[], int] | None = None,
    output_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, TemporalState]:
    """Upscale a batch of frames with the temporal recurrence.

    frames: (N, H, W, C) float 0..1 (an IMAGE; C = 1, 3 or 4). Returns the upscaled frames
    (N, sH, sW, C') float32 CPU clamped to 0..1 (C' = 4 for RGBA, alpha resized bicubically;
    3 otherwise, gray comes back as RGB like the image runner) and the state after the last
    frame; pass that state with the next batch of the same video to continue seamlessly.
    temporal_strength: alpha in [0, 0.95]; 0 gives exactly the single-image result per frame.
    scene_cut_sensitivity: 0 disables cut detection; see scene_cuts.cut_threshold.
    tile_size: LR tile side (0 = auto); frames_per_chunk: frames blended, encoded and decoded
    together (0 = auto, see plan_video). On out-of-memory the frames per call, then the tile,
    are halved (down to sizing.MIN_TILE) before giving up (TileOutOfMemoryError).
    progress(done, total) counts engine stages like the image runner's: total = chunks x
    tiles x ``engine.info.steps_per_call`` (re-planned after an out-of-memory tile shrink). It is
    called with done = 0 before the first chunk, inside a tile at most every PROGRESS_INTERVAL_S
    and after each chunk x tile. check_interrupt() runs before every tile and, on engines with
    stages (torch), between the stages of each decode call (its exception propagates unchanged).
    output_size (out_h, out_w): each chunk is resized to it as soon as it is done.
    photo / pro: each chunk (after blending) is reflect-padded to a multiple of 16 as upstream
    does (tiling/window_pad.py); the state stays at the frame size (padding copies pixels, so it
    commutes with the blend).
    """
    check_images(frames, "frames")
    if not engine.info.supports_video:
        raise ValueError(
            f"ParagonSR2 video: this engine ({engine.info.variant} x{engine.info.scale}) runs "
            "single images only; export / build it as a video graph (video = yes)"
        )
    alpha = float(temporal_strength)
    if not 0.0 <= alpha <= MAX_STRENGTH:
        raise ValueError(f"temporal_strength must be in [0, {MAX_STRENGTH}], got {alpha}")
    n_frames, height, width, channels = frames.shape
    check_size(engine.info, height, width)
    multiple = pad_multiple(engine.info)
    key = model_key or engine_key(engine)
    tiles, chunk = plan_video(
        engine,
        padded_size(height, multiple),
        padded_size(width, multiple),
        n_frames,
        tile_size,
        frames_per_chunk,
        halo,
        free_memory,
    )

    previous = state if state_matches(state, key, height, width) else None

    # Allocated outside inference mode, so downstream nodes may modify it in place.
    out_channels = 4 if channels == 4 else 3  # gray comes back as RGB, like the image runner
    scale = int(engine.info.scale)
    out_h, out_w = output_size or (height * scale, width * scale)
    out = torch.empty((n_frames, out_h, out_w, out_channels), dtype=torch.float32)
    native_shape = (height * scale, width * scale, out_channels) if output_size is not None else None
    run = _VideoRun(engine, tiles, halo, chunk, progress, check_interrupt, multiple, native_shape)
    with torch.inference_mode():
        new_state = run.frames(
            frames, out, previous, (key, height, width), alpha, scene_cut_sensitivity, motion_adaptive, chunk
        )
    if new_state is None:  # check_images rejects an empty clip
        raise RuntimeError("ParagonSR2 video: no frame was upscaled")
    return out, new_state


class _VideoRun:
    """The chunk x tile loop of upscale_video, with the runners' out-of-memory back-off
    (runtime/backoff.py): frames per call first, then the tile side."""

    def __init__(self, engine, tiles, halo, decode_batch, progress, check_interrupt, pad_multiple=1, native_shape=None):
        self.engine, self.tiles, self.halo = engine, tiles, halo
        self.pad_multiple = pad_multiple
        self.native_shape = native_shape  # set: chunks are made at this size, then resized into out
        self.scale = int(engine.info.scale)
        self.sizes = OutOfMemoryBackoff(
            engine.info.device,
            self._tile_side(),
            decode_batch,
            min_tile=MIN_TILE,
            unit="frame",
            label="ParagonSR2 video",
        )
        self.progress, self.check_interrupt = progress, check_interrupt
        self.alpha = None
        # progress in engine stages: ``steps`` per chunk x tile, ``sub`` of them in the running one
        self.done = self.total = self.sub = 0
        self.steps = max(1, int(engine.info.steps_per_call))
        self.reported_at = 0.0
        self.call = (0, 1)  # (decode calls done in the running tile, calls it takes)
        # as in the image runner: only engines with stages get a hook, and only if it has work
        hooked = self.steps > 1 and (progress is not None or check_interrupt is not None)
        self.on_step = self._on_step if hooked else None

    def frames(self, frames, out, state, signature, alpha, sensitivity, motion_adaptive, chunk):
        """Blend and upscale every chunk, continuing ``state`` (a matching TemporalState or None);
        returns the state after the last frame (None for no frames)."""
        n_frames = frames.shape[0]
        self.alpha = frames[..., 3] if frames.shape[-1] == 4 else None
        chunks = math.ceil(n_frames / chunk)
        self.total = chunks * len(self.tiles)
        self.report()  # the bar at 0 before the first chunk
        for index, start in enumerate(range(0, n_frames, chunk)):
            lr = frames_to_rgb(frames[start : min(n_frames, start + chunk)])
            blended, state = advance(
                lr, state, signature=signature, alpha=alpha, sensitivity=sensitivity, motion_adaptive=motion_adaptive
            )
            self._chunk(lr, blended, out, start, chunks - index)
            del lr, blended
        return state

    def _chunk(self, lr, blended, out, start, chunks_left):
        """Upscale one chunk tile by tile, redone after an out-of-memory shrink; a smaller tile
        re-plans the grid (the state is per frame, not per tile). ``chunks_left`` (this one
        included) keeps the progress total right after a re-plan."""
        padded = pad_bchw(lr, self.pad_multiple)
        blended = padded if blended is lr else pad_bchw(blended, self.pad_multiple)
        lr, n = padded, lr.shape[0]
        dest = (
            out[start : start + n]
            if self.native_shape is None
            else torch.empty((n, *self.native_shape), dtype=torch.float32)
        )
        while True:
            side = self.sizes.tile
            finished, _ = self.sizes.attempt(self._tiles, lr, blended, dest, start)
            if finished:
                if self.native_shape is not None:
                    resize_into(out[start : start + n], dest)
                return
            if self.sizes.tile != side:
                height, width = lr.shape[-2:]
                self.tiles = plan_grid(self.engine, height, width, self.sizes.tile, 1, self.halo, None)
                self.sizes.tile = self._tile_side()
                self.total = self.done + chunks_left * len(self.tiles)

    def _tiles(self, lr, blended, dest, start):
        for tile in self.tiles:
            if self.check_interrupt is not None:
                self.check_interrupt()
            self.sub = 0
            self._tile(lr, blended, dest, start, tile)
            self.done += 1
            self.sub = 0
            self.report()

    def report(self) -> None:
        if self.progress is not None:
            self.reported_at = time.monotonic()
            self.progress(self.done * self.steps + self.sub, self.total * self.steps)

    def _on_step(self, step: int, steps: int) -> None:
        """The engine's hook between decode stages: cancel point, and progress in the tile (its
        ``steps`` split over the tile's decode calls; the last is reported after the paste)."""
        if self.check_interrupt is not None:
            self.check_interrupt()
        calls_done, calls = self.call
        sub = (calls_done * self.steps + step) // calls
        if sub < self.steps and sub > self.sub and time.monotonic() - self.reported_at >= PROGRESS_INTERVAL_S:
            self.sub = sub
            self.report()

    def _tile_side(self) -> int:
        return max(max(t.y1 - t.y0, t.x1 - t.x0) for t in self.tiles)

    def _tile(self, lr, blended, dest, start, tile):
        """One tile of the chunk (``lr``/``blended`` padded) into ``dest``, the chunk's output
        rows; ``start`` is the chunk's first frame (for its alpha)."""
        engine, n, per_call = self.engine, lr.shape[0], self.sizes.per_call
        x = crop_context(lr, tile)
        xb = x if blended is lr else crop_context(blended, tile)
        calls = math.ceil(n / per_call)
        for i in range(0, n, per_call):
            j = min(n, i + per_call)
            feat = engine.encode(xb[i:j])
            if self.on_step is None:
                hr = engine.decode(x[i:j], feat)
            else:
                self.call = (i // per_call, calls)
                hr = engine.decode(x[i:j], feat, on_step=self.on_step)
            del feat
            check_output(hr, engine.info)
            paste_interior(dest, hr, tile, self.scale, slice(i, j))
            del hr
        if self.alpha is not None:
            paste_alpha(dest, self.alpha[start : start + n], tile, self.scale)

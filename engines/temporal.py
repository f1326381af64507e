"""Temporally stable video upscaling: the spec's feature recurrence, run in batches.

Section 7 of the network spec: the state is an exponential moving average of conv_in features,
``s_t = (1 - a) * conv_in(x_t) + a * s_{t-1}``, restarted (``s_t = conv_in(x_t)``) on the first
frame and after a scene cut; frame t's output is the network with ``s_t`` in place of conv_in's
output. Only conv_in sits inside the recurrence, so for each chunk of frames we
1. encode all frames of the chunk at once (``engine.encode``),
2. run the cheap recurrence frame by frame on the features,
3. decode the blended features in batches (``engine.decode``; on GPUs the whole chunk at once,
   on the CPU one frame per call, which measured fastest there).
The result equals the frame-by-frame recurrence (up to float rounding of batched kernels).

Tiling: every frame uses the same tile grid and each tile carries its own state. Features
are blended per pixel, so cropping commutes with the recurrence, and with a halo of at least
the network's receptive radius the tiled output equals the untiled one.

Memory: the output (N, sH, sW, C) is allocated once and filled in place; everything else
lives for one chunk x one tile (plus one feature map per tile for the state).

Only ``engine.encode`` / ``engine.decode`` are used, so any Engine (torch, ONNX Runtime,
TensorRT) runs it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import motion, scene_cuts, tiling
from .memory import free_memory_bytes
from .torch_engine import is_out_of_memory, release_cached_memory

logger = logging.getLogger("ParagonSR2")

DEFAULT_STRENGTH = 0.2
MAX_STRENGTH = 0.95
DEFAULT_CHUNK = 8


@dataclass
class TemporalState:
    """The PARAGONSR2_TEMPORAL_STATE value: what the next batch of the same video needs.

    ``signature`` (model key, LR frame size, tile grid) must match for the state to be used;
    ``feats`` holds one (1, C, h, w) float32 CPU feature map per tile (its context box);
    ``last_thumb`` / ``last_frame`` are the last frame's scene-cut thumbnail and LR RGB
    frame (1, 3, H, W) for cut detection and motion-adaptive blending.
    """

    signature: tuple
    tiles: tuple
    feats: list = field(repr=False)
    last_thumb: torch.Tensor = field(repr=False)
    last_frame: torch.Tensor = field(repr=False)
    frames_seen: int = 0

    def __repr__(self) -> str:
        key, h, w, _ = self.signature
        return f"TemporalState({key}, {w}x{h} LR, {len(self.tiles)} tile(s), after {self.frames_seen} frame(s))"


def _engine_key(engine) -> str:
    variant = getattr(engine, "variant", None) or "paragonsr2"
    return f"{variant} x{engine.scale}"


def _grid_key(tiles) -> tuple:
    return tuple((t.y0, t.y1, t.x0, t.x1, t.cy0, t.cy1, t.cx0, t.cx1, t.pad_y, t.pad_x)
                 for t in tiles)


def _state_matches(state: TemporalState | None, key: str, height: int, width: int) -> bool:
    if state is None:
        return False
    if not isinstance(state, TemporalState):
        logger.warning("ParagonSR2 video: ignoring a temporal state of type %s", type(state).__name__)
        return False
    if state.signature[:3] != (key, height, width):
        logger.warning(
            "ParagonSR2 video: the temporal state is for %s at %dx%d, these frames are %s at %dx%d;"
            " starting a fresh state", state.signature[0], state.signature[2], state.signature[1],
            key, width, height)
        return False
    return True


def _on_cpu(engine) -> bool:
    return torch.device(getattr(engine, "device", "cpu")).type == "cpu"


def pick_chunk(engine, frames_per_chunk: int, total: int) -> int:
    """Frames per chunk (encoded, blended and decoded together): the user's value; auto is
    DEFAULT_CHUNK on GPUs and 1 on the CPU, where a chunk's conv_in features (16-64 channels
    per LR pixel) spill out of the caches before decode reads them: realtime x2, 256x256, 2-core
    EPYC: 95 fps at 1 frame per chunk vs 81 at 8 (same decode batch of 1)."""
    if frames_per_chunk and frames_per_chunk > 0:
        n = int(frames_per_chunk)
    else:
        n = 1 if _on_cpu(engine) else DEFAULT_CHUNK
    return max(1, min(n, total))


def pick_decode_batch(engine, frames_per_chunk: int, chunk: int) -> int:
    """Frames per decode call. A user's frames_per_chunk is taken as is. Auto: the whole chunk
    on GPUs (fewer, larger kernel launches), one frame on the CPU, where oneDNN convolutions
    got slower per pixel as soon as a call's activations outgrew the caches (realtime x2, 256x256
    on a 2-core EPYC: 134 ns/px at 1 frame per call, 289 at 2, 440 at 8; benchmarks/video.py)."""
    if frames_per_chunk and frames_per_chunk > 0:
        return chunk
    return 1 if _on_cpu(engine) else chunk


def plan_grid(engine, height: int, width: int, tile_size: int, batch: int, halo: int | None,
              free_memory: Callable[[], int] | None) -> tuple:
    """The tile grid used for every frame (one tile covering the frame when it fits), within
    the engine's shape profile (min_tile / max_tile) like the image runner's. ``batch``: frames
    per decode call, for the memory estimate of an auto tile size."""
    multiple, min_side, max_side = tiling.engine_shape_rules(engine)
    halo = tiling.default_halo(engine) if halo is None else int(halo)
    if max_side is not None and max_side - 2 * halo < tiling.ALIGN:
        halo = max(0, (max_side - tiling.ALIGN) // 2 // tiling.ALIGN * tiling.ALIGN)
    if tile_size and tile_size > 0:
        tile = int(tile_size)
    else:
        device = torch.device(getattr(engine, "device", "cpu"))
        free = free_memory() if free_memory is not None else free_memory_bytes(device)
        tile = tiling.auto_tile_size(engine, batch, free, halo)
    if max_side is not None:
        tile = min(tile, max_side - 2 * halo)
    tile = max(tiling.ALIGN, min(tile, -(-max(height, width) // tiling.ALIGN) * tiling.ALIGN))
    return tuple(tiling.plan_tiles(height, width, tile, halo, tiling.ALIGN, multiple=multiple,
                                   min_side=min_side))


def blend_features(feats: torch.Tensor, weights: list[float], maps: torch.Tensor | None,
                   prev: torch.Tensor | None) -> torch.Tensor:
    """The recurrence over one chunk, in place: feats[t] <- (1 - w_t) feats[t] + w_t feats[t-1]
    (feats[-1] of the chunk before is ``prev``). ``weights[t] == 0`` restarts the state;
    ``maps`` (n, 1, h, w), when given, replaces the scalar w_t for non-restart frames."""
    for t, w in enumerate(weights):
        if w > 0 and prev is not None:
            if maps is None:
                # Same expression as the network's forward, so the result is bit-identical.
                feats[t] = (1 - w) * feats[t] + w * prev
            else:
                m = maps[t]
                feats[t] = (1 - m) * feats[t] + m * prev
        prev = feats[t]
    return feats


def _frames_to_rgb(chunk: torch.Tensor) -> torch.Tensor:
    """(n, H, W, C) IMAGE slice, C = 1, 3 or 4 -> (n, 3, H, W) float32 RGB (gray replicated),
    in channels-last memory: the layout the IMAGE already has and the torch fast path computes
    in, so no copy is made on the way in and none on the way to the network."""
    return tiling.as_rgb_bchw(chunk).float().contiguous(memory_format=torch.channels_last)


def _upscale_alpha(chunk: torch.Tensor, scale: int) -> torch.Tensor:
    """RGBA input: alpha is resized bicubically (as the image runner does), not run through
    the network. (n, H, W, 4) -> (n, sH, sW, 1)."""
    a = chunk[..., 3:4].permute(0, 3, 1, 2).float()
    if scale != 1:
        a = torch.nn.functional.interpolate(a, scale_factor=scale, mode="bicubic", align_corners=False)
    return a.clamp_(0, 1).permute(0, 2, 3, 1)


def _decode_into(engine, lr: torch.Tensor, feats: torch.Tensor, out: torch.Tensor, tile, start: int,
                 batch: int) -> int:
    """Decode a chunk of one tile in sub-batches of ``batch`` frames, halving the sub-batch on
    out-of-memory (the tile grid must stay fixed: it carries the state). Returns the batch
    size that worked, so later chunks start there."""
    i, n = 0, lr.shape[0]
    while i < n:
        j = min(n, i + batch)
        try:
            hr = engine.decode(lr[i:j], feats[i:j])
        except Exception as exc:  # noqa: BLE001 - only allocator failures are retried
            if not is_out_of_memory(exc):
                raise
            if batch == 1:
                raise RuntimeError(
                    f"ParagonSR2 video: out of memory on {engine.device} for one frame of one tile; "
                    "set a smaller tile_size (or a lower precision)") from None
            batch //= 2
            release_cached_memory(engine.device)
            logger.warning("ParagonSR2 video: out of memory; decoding %d frame(s) at a time", batch)
            continue
        tiling.paste_interior(out, hr, tile, engine.scale, slice(start + i, start + j))
        del hr
        i = j
    return batch


def upscale_video(engine, frames: torch.Tensor, *, temporal_strength: float = DEFAULT_STRENGTH,
                  scene_cut_sensitivity: float = scene_cuts.DEFAULT_SENSITIVITY,
                  motion_adaptive: bool = False, tile_size: int = 0, frames_per_chunk: int = 0,
                  halo: int | None = None, state: TemporalState | None = None, model_key: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  check_interrupt: Callable[[], None] | None = None,
                  free_memory: Callable[[], int] | None = None) -> tuple[torch.Tensor, TemporalState]:
    """Upscale a batch of frames with the temporal recurrence.

    frames: (N, H, W, C) float 0..1 (an IMAGE; C = 1, 3 or 4). Returns the upscaled frames
    (N, sH, sW, C') float32 CPU clamped to 0..1 (C' = 4 for RGBA, alpha resized bicubically;
    3 otherwise, gray comes back as RGB like the image runner) and the state after the last
    frame; pass that state with the next batch of the same video to continue seamlessly.
    temporal_strength: alpha in [0, 0.95]; 0 gives exactly the single-image result per frame.
    scene_cut_sensitivity: 0 disables cut detection; see scene_cuts.cut_threshold.
    tile_size: LR tile side (0 = auto); frames_per_chunk: frames encoded, blended and decoded
    together (0 = auto: chunks of 8 decoded whole on GPUs, one frame at a time on the CPU).
    progress(done, total) is called once per chunk x tile; check_interrupt() between them.
    """
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames must be (N, H, W, C) with C = 1, 3 or 4; got {tuple(frames.shape)}")
    alpha = float(temporal_strength)
    if not 0.0 <= alpha <= MAX_STRENGTH:
        raise ValueError(f"temporal_strength must be in [0, {MAX_STRENGTH}], got {alpha}")
    n_frames, height, width, channels = frames.shape
    if n_frames == 0:
        raise ValueError("no frames to upscale")
    key = model_key or _engine_key(engine)
    scale = int(engine.scale)
    chunk = pick_chunk(engine, frames_per_chunk, n_frames)
    decode_batch = pick_decode_batch(engine, frames_per_chunk, chunk)

    reuse = _state_matches(state, key, height, width)
    if reuse and (not tile_size or tile_size <= 0):
        tiles = state.tiles  # auto tiling: keep the grid the state was made with
    else:
        tiles = plan_grid(engine, height, width, tile_size, decode_batch, halo, free_memory)
    signature = (key, height, width, _grid_key(tiles))
    if reuse and signature[3] != state.signature[3]:
        logger.warning("ParagonSR2 video: the temporal state was made with another tile grid;"
                       " starting a fresh state")
        reuse = False

    tile_state = [None] * len(tiles)
    prev_thumb, prev_frame, seen = None, None, 0
    if reuse:
        tile_state = [f.to(engine.device) for f in state.feats]
        prev_thumb, prev_frame, seen = state.last_thumb, state.last_frame, state.frames_seen

    # Allocated outside inference mode, so downstream nodes may modify it in place.
    out_channels = 4 if channels == 4 else 3  # gray comes back as RGB, like the image runner
    out = torch.empty((n_frames, height * scale, width * scale, out_channels), dtype=torch.float32)
    with torch.inference_mode():
        tile_state, last = _run(engine, frames, out, tiles, tile_state, prev_thumb, prev_frame, alpha,
                                scene_cut_sensitivity, motion_adaptive, chunk, decode_batch, progress,
                                check_interrupt)
    prev_thumb, prev_frame = last
    new_state = TemporalState(
        signature=signature, tiles=tuple(tiles), feats=[f.cpu() for f in tile_state],
        last_thumb=prev_thumb, last_frame=prev_frame, frames_seen=seen + n_frames)
    return out, new_state


def _run(engine, frames, out, tiles, tile_state, prev_thumb, prev_frame, alpha, sensitivity,
         motion_adaptive, chunk, decode_batch, progress, check_interrupt):
    """The chunk x tile loop of upscale_video; returns (per-tile states, (thumb, frame))."""
    n_frames, channels, scale = frames.shape[0], frames.shape[-1], int(engine.scale)
    steps, done = math.ceil(n_frames / chunk) * len(tiles), 0
    for start in range(0, n_frames, chunk):
        stop = min(n_frames, start + chunk)
        raw = frames[start:stop]
        lr = _frames_to_rgb(raw)
        thumbs = scene_cuts.thumbnails(lr)
        restart = scene_cuts.detect_cuts(thumbs, prev_thumb, sensitivity)
        weights = [0.0 if r else alpha for r in restart]
        maps = None
        if motion_adaptive and alpha > 0 and any(w > 0 for w in weights):
            previous = prev_frame if prev_frame is not None else lr[:1]
            maps = motion.motion_weights(lr, previous, alpha)
        for index, tile in enumerate(tiles):
            if check_interrupt is not None:
                check_interrupt()
            x = tiling.crop_context(lr, tile)
            feats = engine.encode(x).float()
            tile_maps = None if maps is None else tiling.crop_context(maps, tile).to(feats.device)
            if tile_state[index] is not None and tile_state[index].shape != feats[-1:].shape:
                logger.warning("ParagonSR2 video: the temporal state's features do not fit this"
                               " model; starting a fresh state")
                tile_state = [None] * len(tiles)
            blend_features(feats, weights, tile_maps, tile_state[index])
            tile_state[index] = feats[-1:].clone()
            decode_batch = _decode_into(engine, x, feats, out, tile, start, decode_batch)
            del feats, x, tile_maps
            done += 1
            if progress is not None:
                progress(done, steps)
        if channels == 4:
            out[start:stop, ..., 3:4] = _upscale_alpha(raw, scale)
        prev_thumb, prev_frame = thumbs[-1], lr[-1:].clone()
    return tile_state, (prev_thumb, prev_frame)

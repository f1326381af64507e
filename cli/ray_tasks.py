"""What a Ray worker runs (no Ray import here): upscale a group of images, or one video chunk
into an encoded segment. Inputs and results are plain values (cli/ray_bootstrap.py).

Transfer modes (chosen by the driver, cli/distributed.py):
- "shared": the input and the output folder are paths every worker sees (one machine, or a
  network file system). The worker reads the input itself and writes its result straight into
  the output folder under a temporary name (engines/runtime/files.atomic_output), so no pixel
  passes through the driver.
- "stream": the driver sent the input bytes; the worker returns the encoded result (PNG/JPEG
  bytes, or the encoded video segment), which the driver writes. Always correct, costs the
  driver's bandwidth (encoded bytes only, never raw frames).
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..engines.runtime.files import atomic_output
from ..engines.video import chunks, temporal

_ENGINES: dict = {}  # one loaded model per worker process, reused by every task it runs


def _engine(job: dict, video: bool = False):
    """The job's engine (the --backend of the command), loaded once per worker process."""
    key = (job["model"], job["sharpness"], job["backend"], job["device"], job["precision"], video)
    if key not in _ENGINES:
        from ..engines.backends import registry
        from . import app

        _ENGINES.clear()
        model = app.load_model(Path(job["model"]), job["sharpness"])
        _ENGINES[key] = registry.make_engine(job["backend"], model, job["device"], job["precision"], video=video)
    return _ENGINES[key]


def _who() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def run(kind: str, job: dict, item: dict, payload=None) -> dict:
    """``payload``: what every task of the job shares (the source video's bytes in stream mode)."""
    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "images":
        result = upscale_images(job, item)
    else:
        result = (scan_range if kind == "scan" else upscale_chunk)(job, item, payload)
    # wall and CPU seconds: on a busy machine the gap is time spent waiting for a core
    result.update(_who(), seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
    return result


# -- images ---------------------------------------------------------------------------------
def _cli_args(job: dict):
    """The option namespace jobs.upscale_picture reads, as the single-process run fills it."""
    from types import SimpleNamespace

    return SimpleNamespace(tile=job["tile"], quiet=True, overwrite=True, **job.get("image_args", {}))


def upscale_images(job: dict, item: dict) -> dict:
    """item: {"names": [...], "inputs": [path (shared) or bytes (stream)], "outputs": [path]}.
    Each image goes through jobs.upscale_picture, the single-process function, so the bytes
    written are the same."""
    from . import jobs
    from .image_io import read_image

    engine, args = _engine(job), _cli_args(job)
    done, blobs, errors = [], [], []
    for name, source, target in zip(item["names"], item["inputs"], item["outputs"]):
        try:
            if job["transfer"] == "shared":
                jobs.upscale_picture(engine, read_image(Path(source)), Path(target), args)
            else:
                with tempfile.TemporaryDirectory(prefix="paragonsr2-") as folder:
                    src, dst = Path(folder) / "in" / name, Path(folder) / name
                    src.parent.mkdir()
                    src.write_bytes(source)
                    jobs.upscale_picture(engine, read_image(src), dst, args)
                    blobs.append(dst.read_bytes())
            done.append(name)
        except Exception as exc:  # one bad image does not fail the group; the driver reports it
            errors.append(f"{name}: {exc}")
    return {"done": done, "blobs": blobs, "errors": errors, "frames": len(done)}


# -- video chunks ---------------------------------------------------------------------------
def _decoded(stream_source, first_pts: int | None, skip: int, count: int):
    """Yield ``count`` RGB frames (H, W, 3 uint8) of the first video stream, starting at the
    frame with presentation time ``first_pts`` (found by seeking to the keyframe before it), or
    when the source has no usable timestamps at the ``skip``-th frame (decoding from the start)."""
    import av

    with av.open(stream_source) as container:
        stream = container.streams.video[0]
        if first_pts is not None and skip > 0:
            container.seek(first_pts, stream=stream, backward=True, any_frame=False)
        started, given = first_pts is None or skip == 0, 0
        index = 0
        for frame in container.decode(stream):
            if not started:
                if frame.pts is None or frame.pts < first_pts:
                    continue
                if frame.pts != first_pts:
                    raise RuntimeError(f"seek landed after frame pts {first_pts} (got {frame.pts})")
                started = True
            elif first_pts is None and index < skip:
                index += 1
                continue
            yield frame.to_ndarray(format="rgb24")
            given += 1
            if given == count:
                return
    if given < count:
        raise RuntimeError(f"the video ended after {given} of {count} frames of this chunk")


def _batches(frames, size: int):
    batch = []
    for rgb in frames:
        batch.append(rgb)
        if len(batch) == size:
            yield torch.from_numpy(np.stack(batch)).float().div_(255)
            batch = []
    if batch:
        yield torch.from_numpy(np.stack(batch)).float().div_(255)


def scan_range(job: dict, item: dict, payload: bytes | None = None) -> dict:
    """The scene cuts in frames [start, end): decodes from ``decode_start`` (HISTORY_FRAMES
    earlier, so every decision has the history the single-process run gives it)."""
    start, end, decode_start = item["start"], item["end"], item["decode_start"]
    source = item["source"] if item["source"] is not None else io.BytesIO(payload)
    finder = chunks.CutFinder(job["video"]["scene_cut_sensitivity"])
    for lr in _batches(_decoded(source, item["first_pts"], decode_start, end - decode_start), 16):
        finder.add(lr)
    cuts = [decode_start + c for c in finder.cuts if decode_start + c >= start]
    return {"index": item["index"], "cuts": cuts, "frames": end - start}


def upscale_chunk(job: dict, item: dict, payload: bytes | None = None) -> dict:
    """item: chunk bounds (start, end, decode_start), first_pts (of decode_start), the source
    (path, or bytes in stream mode) and, in shared mode, the segment path to write."""
    from .video_io import VideoWriter

    engine = _engine(job, video=True)
    opts = job["video"]
    start, end, decode_start = item["start"], item["end"], item["decode_start"]
    source = item["source"] if item["source"] is not None else io.BytesIO(payload)
    frames = _decoded(source, item["first_pts"], decode_start, end - decode_start)
    key = temporal._engine_key(engine)
    state = None
    warm = start - decode_start
    batch = max(1, int(opts["frames_per_chunk"]))
    upscale = {
        "temporal_strength": opts["temporal_strength"],
        "scene_cut_sensitivity": opts["scene_cut_sensitivity"],
        "motion_adaptive": opts["motion_adaptive"],
        "tile_size": job["tile"],
        "model_key": key,
    }
    if warm:
        prefix = torch.from_numpy(np.stack([next(frames) for _ in range(warm)])).float().div_(255)
        state = chunks.state_at_frame(
            prefix,
            temporal_strength=opts["temporal_strength"],
            scene_cut_sensitivity=opts["scene_cut_sensitivity"],
            motion_adaptive=opts["motion_adaptive"],
            signature=(key, prefix.shape[1], prefix.shape[2]),
        )
        del prefix
    rate = Fraction(opts["rate"])
    with tempfile.TemporaryDirectory(prefix="paragonsr2-") as folder:
        target = Path(item["segment"]) if job["transfer"] == "shared" else Path(folder) / "segment.mp4"
        written = 0
        with atomic_output(target) as tmp:
            writer = None
            try:
                for lr in _batches(frames, batch):
                    out, state = temporal.upscale_video(engine, lr, state=state, **upscale)
                    if writer is None:
                        writer = VideoWriter(
                            tmp, rate, out.shape[2], out.shape[1], codec=opts["codec"], lossless=opts["lossless"]
                        )
                    writer.write(out[..., :3])
                    written += out.shape[0]
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            if writer is not None:
                writer.close()
        blob = None if job["transfer"] == "shared" else target.read_bytes()
    return {"index": item["index"], "frames": written, "blob": blob}

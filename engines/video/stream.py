"""The streaming video pipeline: frames decoded lazily, upscaled chunk by chunk through the
temporal recurrence, encoded as they are produced. Memory is a few chunks, whatever the length.

Three stages overlap:
- a decode thread pulls frames from the source iterator and stacks them into chunks;
- the calling thread runs the network (temporal.upscale_video per chunk, with the state carried
  from chunk to chunk), so progress callbacks and cancel checks run where the caller expects;
- an encode thread hands each finished chunk to the sink (the encoder).
They talk through bounded queues of QUEUE_CHUNKS chunks each, so a fast decoder cannot run ahead
and fill memory, and a slow encoder holds the network back instead of piling frames up.

Threads: a CPU network uses every core torch was given; the decoder and the encoder then get
CODEC_THREADS (2) threads each, so the codecs' work fits in the gaps of the network's instead of
competing for all cores. Beside a GPU network they get half the cores (codec_threads), and the
wall time approaches the network's alone. The encoder's count is part of the resume key: x264's
output depends on it.

Exactness: chunks never cross a segment boundary (``split_every``), so a run resumed at a segment
start chunks every later frame exactly as an uninterrupted run does, and its frames are
bit-identical (the state carried over is the exact one, engines/video/resume.py).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..runtime.files import atomic_output
from . import resume, temporal
from .options import VideoOptions
from .resume import STALE_AFTER_S

# Chunks waiting between two stages: enough to overlap. Decoded chunks are small (LR); an
# upscaled chunk is s^2 times larger (8 frames of 4K float32 = 0.8 GB), so only one waits for
# the encoder: memory is then about 3 output chunks (queued, being encoded, being made).
QUEUE_CHUNKS = 2
ENCODE_QUEUE_CHUNKS = 1
CODEC_THREADS = 2  # decoder / encoder threads each when the network runs on the CPU
MAX_CODEC_THREADS = 8
STREAM_MAX_CHUNK = 16  # auto chunk cap: a small-frame CPU plan could otherwise ask for hundreds
_POLL_S = 0.1  # how often a blocked stage looks whether the others stopped

Progress = Callable[[int, "int | None"], None]


@dataclass
class Chunk:
    """Consecutive frames: ``images`` (n, H, W, C) float32 0..1, their source ``pts`` and the
    index of the first one in the stream."""

    first: int
    images: torch.Tensor
    pts: list[int]


@dataclass
class Upscaled:
    """A finished chunk on its way to the sink: the output frames, their pts, and the temporal
    state after its last frame (what a segment stores to resume exactly)."""

    first: int
    images: torch.Tensor
    pts: list[int]
    state: temporal.TemporalState


class _Stop(Exception):
    """Internal: another stage failed or the run was stopped; the stage exits quietly."""


def chunk_frames(
    frames: Iterable, size: int, split_every: int = 0, first_index: int = 0, stop: threading.Event | None = None
) -> Iterator[Chunk]:
    """Group frames (objects with ``.image`` (H, W, C) tensors and ``.pts``) into chunks of at
    most ``size``; a chunk also ends before every frame index that is a multiple of
    ``split_every`` (segment starts). ``first_index``: the stream index of the first frame."""
    images: list[torch.Tensor] = []
    pts: list[int] = []
    index = start = first_index
    for frame in frames:
        if stop is not None and stop.is_set():
            return
        if images and (len(images) == size or (split_every and index % split_every == 0)):
            yield Chunk(start, torch.stack(images), pts)
            images, pts, start = [], [], index
        images.append(frame.image)
        pts.append(int(frame.pts))
        index += 1
    if images:
        yield Chunk(start, torch.stack(images), pts)


def stream_chunk_size(engine, height: int, width: int, options: VideoOptions, free_memory=None) -> int:
    """Frames per network call: the user's frames_per_chunk, else the runner's auto choice
    (temporal.plan_video) capped at STREAM_MAX_CHUNK."""
    if options.frames_per_chunk > 0:
        return options.frames_per_chunk
    _, auto = temporal.plan_video(engine, height, width, STREAM_MAX_CHUNK, options.tile_size, 0, None, free_memory)
    return max(1, min(auto, STREAM_MAX_CHUNK))


def codec_threads(engine) -> int:
    """Threads for the decoder and for the encoder. A CPU network uses every core, so the codecs
    get CODEC_THREADS and fill the gaps; beside a GPU network the CPU is mostly free, and a
    4K encoder on 2 threads would be the bottleneck: half the cores, up to MAX_CODEC_THREADS."""
    if engine.info.device.type == "cpu":
        return CODEC_THREADS
    return max(CODEC_THREADS, min(MAX_CODEC_THREADS, (os.cpu_count() or 2) // 2))


class _Stage(threading.Thread):
    """A daemon thread whose exception is kept for the caller to re-raise."""

    def __init__(self, name: str, target: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the calling thread, which re-raises it
            self.error = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def upscale_stream(
    engine,
    frames: Iterable,
    sink: Callable[[Upscaled], None],
    options: VideoOptions,
    *,
    state: temporal.TemporalState | None = None,
    model_key: str | None = None,
    total: int | None = None,
    first_index: int = 0,
    split_every: int = 0,
    progress: Progress | None = None,
    check_interrupt: Callable[[], None] | None = None,
    free_memory: Callable[[], int] | None = None,
) -> tuple[int, temporal.TemporalState | None]:
    """Upscale every frame of ``frames`` and hand the results to ``sink`` chunk by chunk.

    frames: an iterable of frames (container.Frame: ``.image`` (H, W, C) float32 0..1, ``.pts``),
    iterated lazily on a decode thread. sink(Upscaled): called on the encode thread for each
    chunk in order (write its frames; at a segment end also store its state). ``state``
    continues an earlier run (the state after frame ``first_index`` - 1); ``model_key`` is the
    state's model key (temporal.engine_key(engine) when None). ``split_every``: chunks end at
    multiples of it (segments). progress(done, total): frames through the network so far,
    ``total`` as given (None when unknown). check_interrupt(): between chunks and inside them
    (tiles and network stages); its exception stops every stage and propagates unchanged, as
    does an error of the source or the sink. Returns (frames upscaled, state after the last).
    """
    key = model_key or temporal.engine_key(engine)
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    encoded: queue.Queue = queue.Queue(maxsize=ENCODE_QUEUE_CHUNKS)
    plan: dict = {}
    peeked: list = []

    def decode() -> None:
        iterator = iter(frames)
        for frame in iterator:  # the first frame sets the chunk size (it depends on the frame size)
            peeked.append(frame)
            break
        if not peeked:
            _put(decoded, None, stop)
            return
        h, w = peeked[0].image.shape[:2]
        plan["size"] = size = stream_chunk_size(engine, h, w, options, free_memory)
        source = _chain(peeked, iterator)
        for chunk in chunk_frames(source, size, split_every, first_index, stop):
            _put(decoded, chunk, stop)
        _put(decoded, None, stop)

    def encode() -> None:
        while True:
            try:
                item = encoded.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is None or stop.is_set():
                return
            sink(item)

    decoder, encoder = _Stage("paragonsr2-decode", decode), _Stage("paragonsr2-encode", encode)
    decoder.start()
    encoder.start()
    done = 0
    try:
        if progress is not None:
            progress(0, total)
        while True:
            chunk = _get(decoded, decoder, encoder)
            if chunk is None:
                break
            if check_interrupt is not None:
                check_interrupt()
            n = chunk.images.shape[0]
            h, w = chunk.images.shape[1:3]
            out, state = temporal.upscale_video(
                engine,
                chunk.images,
                **{**options.upscale_kwargs(), "frames_per_chunk": plan["size"]},
                state=state,
                model_key=key,
                progress=_within(progress, done, n, total),
                check_interrupt=check_interrupt,
                free_memory=free_memory,
                output_size=options.output_dims(h, w, int(engine.info.scale)),
            )
            del chunk.images
            _put_checked(encoded, Upscaled(chunk.first, out, chunk.pts, state), encoder, stop)
            done += n
            if progress is not None:
                progress(done, total)
        _put_checked(encoded, None, encoder, stop)
        encoder.join()
        if encoder.error is not None:
            raise encoder.error
        decoder.join()
        if decoder.error is not None:
            raise decoder.error
    finally:
        stop.set()
        decoder.join()
        encoder.join()
    return done, state


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    first.clear()
    yield from rest


def _get(q: queue.Queue, decoder: _Stage, encoder: _Stage):
    """The next decoded chunk; a failed stage's error is raised here, in the calling thread."""
    while True:
        if encoder.error is not None:
            raise encoder.error
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if decoder.error is not None:
                raise decoder.error from None
            if not decoder.is_alive() and q.empty():
                raise RuntimeError("ParagonSR2 video: the decode thread stopped without finishing") from None


def _put_checked(q: queue.Queue, item, encoder: _Stage, stop: threading.Event) -> None:
    while True:
        if encoder.error is not None:
            raise encoder.error
        if not encoder.is_alive():
            raise RuntimeError("ParagonSR2 video: the encode thread stopped without finishing")
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _within(progress: Progress | None, done: int, n: int, total: int | None):
    """The runner's progress inside one chunk (engine stages) as whole frames of the stream."""
    if progress is None:
        return None
    last = [done]

    def report(step: int, steps: int) -> None:
        frames = done + (n * step) // max(1, steps)
        if frames > last[0] and frames < done + n:
            last[0] = frames
            progress(frames, total)

    return report


# -- a whole file, in resumable segments ---------------------------------------------------------
DEFAULT_SEGMENT_FRAMES = 240  # 10 s at 24 fps: an interruption loses at most that much work


@dataclass
class StreamResult:
    """frames: in the output; ended_early: where and why the input stopped before its end (None
    when it was read to the end); notes: what the output could not keep, each once;
    resumed_from: the first frame computed by this run (0 = from the start)."""

    frames: int
    ended_early: str | None
    notes: list[str]
    resumed_from: int


class DiskFull(OSError):
    """The disk filled up; the message says where the finished work is kept."""


class _SegmentSink:
    """The encode side of upscale_file: frames into the current segment's file; a segment is
    committed (with the state after its last frame) when its last frame is written."""

    def __init__(self, area, info, suffix: str, options: VideoOptions, segment_frames: int, threads: int):
        self.area, self.info, self.suffix = area, info, suffix
        self.options, self.segment_frames, self.threads = options, segment_frames, threads
        self.index = len(area.segments)
        self.writer = self.path = self.state = None
        self.count = self.first_pts = self.last_pts = 0

    def __call__(self, item: Upscaled) -> None:
        from .encode import VideoWriter

        n, height, width = item.images.shape[:3]
        if self.writer is None:
            self.path = self.area.scratch_path(self.index, self.suffix)
            self.writer = VideoWriter(
                self.path,
                width=width,
                height=height,
                codec=self.options.codec,
                quality=self.options.quality,
                source=self.info,
                time_base=self.info.time_base,
                rate=self.info.rate,
                threads=self.threads,  # fixed, not per machine: x264's output depends on it
            )
            self.count, self.first_pts = 0, item.pts[0]
        for image, pts in zip(item.images, item.pts):
            self.writer.write(image, pts)
        self.count += n
        self.last_pts, self.state = item.pts[-1], item.state
        if (item.first + n) % self.segment_frames == 0:
            self.finish()

    def finish(self) -> None:
        """Close and commit the open segment (the last one may be short)."""
        if self.writer is None:
            return
        self.writer.close()
        notes, self.writer = self.writer.notes, None
        assert self.path is not None and self.state is not None
        self.area.commit(self.index, self.path, self.count, self.first_pts, self.last_pts, self.state, notes)
        self.index += 1

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def upscale_file(
    engine,
    src: Path,
    dst: Path,
    options: VideoOptions,
    *,
    work_dir: Path | None = None,
    segment_frames: int = DEFAULT_SEGMENT_FRAMES,
    model_key: str | None = None,
    model_id: str | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    overwrite: bool = True,
    progress: Progress | None = None,
    check_interrupt: Callable[[], None] | None = None,
    free_memory: Callable[[], int] | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> StreamResult:
    """Upscale the video file ``src`` into ``dst`` (container from its suffix), streaming.

    The output is built as segments of ``segment_frames`` frames (independently decodable
    files), joined at the end without re-encoding with the source's audio and subtitles
    (remux.join_segments), and renamed into place atomically: nothing appears at ``dst`` unless
    it is complete. ``start_s``/``duration_s`` trim the input as core's trimmed VIDEO does.

    Resume: with ``work_dir``, finished segments and the exact state after each are kept in
    ``work_dir``/<key> (resume.py), the key made of the input's identity, the model
    (``model_id``: name the weights, e.g. container.identity(model file) or a digest; default
    ``model_key``), the options, the trim and segment size. A rerun with the same key continues
    at the first missing segment and gives the same output as an uninterrupted run. An
    interrupt (check_interrupt's exception, KeyboardInterrupt, SIGTERM made an exception)
    keeps the finished segments and leaves nothing at ``dst``; a full disk raises DiskFull (an
    OSError, one line) and keeps them too. The area is removed when the output is in place.
    WorkAreaBusy when another live run holds the same key. Without ``work_dir`` the segments
    live in a hidden temporary folder beside ``dst``, removed in any case.

    model_key: the temporal state's key (temporal.engine_key(engine) when None).
    progress(done, total): frames through the network, counting resumed ones; total from the
    container, None when it does not say.
    """
    from . import container
    from .encode import codec_choice
    from .remux import join_segments

    src, dst = Path(src), Path(dst)
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be at least 1, got {segment_frames}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists")
    if src.resolve() == dst.resolve():
        raise ValueError(f"the output {dst} is the input; choose another name")
    choice = codec_choice(options.codec)
    if not choice.available:
        raise ValueError(f"video codec {options.codec!r}: {choice.why_not}")
    if dst.suffix.lower() not in choice.containers:
        raise ValueError(
            f"{dst.suffix or 'a file without extension'} cannot hold {options.codec!r} video; "
            f"it goes in {' '.join(choice.containers)}"
        )
    key = model_key or temporal.engine_key(engine)
    threads = codec_threads(engine)
    with container.open_source(src, start_s=start_s, duration_s=duration_s, threads=threads) as source:
        parts = {
            "input": container.identity(src),
            "model": model_id or key,
            "state_key": key,
            # the same weights on another backend, device or precision give other float roundings
            "engine": f"{type(engine).__name__} {engine.info.device.type} {engine.info.precision}",
            "options": options.key(),
            "start_s": float(start_s or 0.0),
            "duration_s": float(duration_s) if duration_s else None,
            "segment_frames": int(segment_frames),
            "encoder_threads": threads,  # x264's output depends on its thread count
            "suffix": dst.suffix.lower(),
        }
        temporary = work_dir is None
        base = (
            Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".paragonsr2", dir=dst.parent))
            if temporary
            else Path(work_dir)
        )
        try:
            with resume.WorkArea.open(base, resume.run_key(**parts), stale_after_s=stale_after_s) as area:
                result = _run_segments(
                    engine,
                    source,
                    area,
                    dst,
                    options,
                    segment_frames,
                    key,
                    threads,
                    progress,
                    check_interrupt,
                    free_memory,
                )
                with _disk_full_said(area.folder), atomic_output(dst, overwrite=overwrite) as tmp:
                    result.notes += join_segments(
                        area.paths(), tmp, source=src, start_s=start_s or 0.0, duration_s=duration_s
                    )
                area.remove()
        finally:
            if temporary:
                shutil.rmtree(base, ignore_errors=True)
    return result


def _run_segments(
    engine, source, area, dst, options, segment_frames, key, threads, progress, check_interrupt, free_memory
):
    resumed_from = area.frames_done
    state = area.last_state()
    sink = _SegmentSink(area, source.info, dst.suffix.lower(), options, segment_frames, threads)
    total = source.expected_frames
    try:
        with _disk_full_said(area.folder):
            upscale_stream(
                engine,
                itertools.islice(source.frames(), resumed_from, None),  # done frames: decoded, skipped
                sink,
                options,
                state=state,
                model_key=key,
                total=total,
                first_index=resumed_from,
                split_every=segment_frames,
                progress=None if progress is None else (lambda done, t: progress(resumed_from + done, t)),
                check_interrupt=check_interrupt,
                free_memory=free_memory,
            )
            sink.finish()
    except BaseException:
        sink.abort()
        raise
    if area.frames_done == 0:
        raise ValueError(f"{source.info.path}: no frame could be decoded{_why(source.ended_early)}")
    return StreamResult(area.frames_done, source.ended_early, area.notes(), resumed_from)


def _why(ended_early: str | None) -> str:
    return f" ({ended_early})" if ended_early else ""


@contextlib.contextmanager
def _disk_full_said(folder: Path):
    try:
        yield
    except OSError as exc:
        if isinstance(exc, DiskFull) or not (exc.errno == errno.ENOSPC or "No space left" in str(exc)):
            raise
        full = DiskFull(
            f"the disk is full; the finished segments are kept in {folder}: free some space and run the "
            "same job again to continue"
        )
        full.errno = errno.ENOSPC
        raise full from None

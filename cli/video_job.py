"""One video on this machine, through the pack's streaming pipeline (engines/video/stream.py):
decoded lazily, upscaled chunk by chunk, encoded as it goes, in resumable segments.

Resume: the finished segments (and the exact temporal state after each) are kept in a hidden
work folder beside the output, ``.<output name>.paragonsr2-work/``. Ctrl-C, SIGTERM, a full disk
or a crash leave nothing under the output name and keep them there; the same command run again
continues at the first missing segment ("resuming at frame N of M") and gives the output an
uninterrupted run gives. The folder goes when the output is in place.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from pathlib import Path

from ..engines.runtime.files import atomic_output
from ..engines.video import container, resume, stream
from .checks import warn
from .image_io import CliError, save_animation, to_uint8
from .progress import Progress
from .video_plan import VideoPlan

WORK_SUFFIX = ".paragonsr2-work"


def work_dir(dst: Path) -> Path:
    """Where an interrupted run of ``dst`` keeps its finished segments."""
    return dst.with_name(f".{dst.name}{WORK_SUFFIX}")


def model_id(args) -> str:
    """What names the weights and how they run, for the resume key: another model file, another
    sharpness, backend or precision starts fresh instead of continuing someone else's frames."""
    backend = getattr(args, "backend", "torch")
    return f"{container.identity(args.model)} sharpness={args.sharpness} {backend} {args.precision}"


def run_video(engine, src: Path, dst: Path, args, plan: VideoPlan) -> int:
    """``src`` into the video file ``dst`` (``plan``: codec, options, streams; video_plan.py)."""
    folder = work_dir(dst)
    start = time.perf_counter()
    progress = _ResumeSaying(Progress(f"{src.name} frames", enabled=not args.quiet, unit="frame"))
    try:
        result = stream.upscale_file(
            engine,
            src,
            dst,
            plan.options,
            work_dir=folder,
            segment_frames=args.segment_frames,
            model_id=model_id(args),
            overwrite=args.overwrite,
            progress=progress,
        )
    except BaseException as exc:
        progress.close()
        _say_what_is_kept(folder, exc)
        if isinstance(exc, (ValueError, resume.WorkAreaBusy)):  # VideoInputError, no frame decoded, busy
            raise CliError(str(exc)) from None
        raise
    progress.close()
    with contextlib.suppress(OSError):
        folder.rmdir()  # the finished run removed its own area; the folder goes when empty
    for note in result.notes:
        if not note.startswith("kept "):
            warn(f"{src.name}: {note}")
    kept = [n[len("kept ") :] for n in result.notes if n.startswith("kept ")]
    said = f", kept {', '.join(kept)}" if kept else ""
    resumed = f", resumed at frame {result.resumed_from}" if result.resumed_from else ""
    seconds = time.perf_counter() - start
    print(f"wrote {dst} ({result.frames} frames, x{engine.info.scale}{said}{resumed}) in {seconds:.2f} s")
    return _partial_input(result.ended_early, result.frames, args)


def _partial_input(ended_early: str | None, frames: int, args) -> int:
    """A damaged or truncated input: what decoded is written; the run says where the input
    ended and why, and fails unless --accept-partial says partial input is fine."""
    if ended_early is None:
        return 0
    if getattr(args, "accept_partial", False):
        warn(f"{ended_early}; kept the {frames} frame(s) before it (--accept-partial)")
        return 0
    print(
        f"error: {ended_early}; the output holds the {frames} frame(s) before it "
        "(pass --accept-partial to accept a partial input)",
        file=sys.stderr,
    )
    return 1


def _say_what_is_kept(folder: Path, exc: BaseException) -> None:
    """Interrupted or failed: say where the finished segments wait for the rerun."""
    if isinstance(exc, (ValueError, resume.WorkAreaBusy)):
        return
    try:
        kept = any(p.is_dir() and any(p.glob("seg-*")) for p in folder.iterdir())
    except OSError:
        return
    if kept:
        print(f"finished segments are kept in {folder}: run the same command again to resume", file=sys.stderr)


class _ResumeSaying:
    """The progress callback; its first report is where this run starts (frames already done
    by an interrupted run), said once as 'resuming at frame N of M'."""

    def __init__(self, bar: Progress):
        self.bar, self.first = bar, True

    def __call__(self, done: int, total: int | None) -> None:
        if self.first:
            self.first = False
            if done > 0:
                print(f"resuming at frame {done} of {total or 'unknown'} (finished segments kept by an earlier run)")
                sys.stdout.flush()
        self.bar(done, max(done, total or 0))

    def close(self) -> None:
        self.bar.close()


# -- a video into an animated image (.gif / .webp): short clips, frames held until written ----------
def video_to_animation(engine, src: Path, dst: Path, args, plan_options) -> int:
    """Every frame through the same pipeline; each frame's duration from its timestamps."""
    start = time.perf_counter()
    frames, pts = [], []

    def sink(done: stream.Upscaled) -> None:
        frames.extend(to_uint8(image[..., :3]) for image in done.images)
        pts.extend(done.pts)

    progress = Progress(f"{src.name} frames", enabled=not args.quiet, unit="frame")
    try:
        with container.open_source(src) as source:
            total = source.expected_frames
            stream.upscale_stream(
                engine,
                source.frames(),
                sink,
                plan_options,
                total=total,
                progress=lambda done, _t: progress(done, max(done, total or 0)),
            )
            info, ended_early = source.info, source.ended_early
    except (container.VideoInputError, ValueError) as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    if not frames:
        raise CliError(f"{src}: no frames could be decoded")
    frame_ms = 1000 / float(info.rate)
    steps = [float((b - a) * info.time_base) * 1000 for a, b in itertools.pairwise(pts)]
    durations = [max(1, round(ms)) for ms in steps + [steps[-1] if steps else frame_ms]]
    with atomic_output(dst, overwrite=args.overwrite) as tmp:
        notes = save_animation(frames, durations, 0, tmp, None, format_suffix=dst.suffix)
    for note in notes:
        warn(f"{src.name}: {note}")
    print(f"wrote {dst} ({len(frames)} frames, x{engine.info.scale}) in {time.perf_counter() - start:.2f} s")
    return _partial_input(ended_early, len(frames), args)

"""The upscale jobs: one image, one animation, a folder of images (a video: video_job.py).

Every output is written through ``atomic_output``: a temporary file beside the target, renamed
into place only when complete, removed on an error, Ctrl-C or SIGTERM. So a file with the
requested name is always a finished result, and a rerun never meets a half-written one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..engines.runtime.files import atomic_output, remove_stale_partials
from ..engines.tiling import runner as tiling
from ..engines.tiling.output_size import FACTOR, LONG_SIDE, output_dims
from ..engines.video import temporal
from ..engines.video.container import VIDEO_SUFFIXES
from .checks import UsageError, check_output, warn
from .image_io import (
    IMAGE_SUFFIXES,
    CliError,
    Picture,
    read_image,
    save_animation,
    save_image,
    to_uint8,
)
from .outputs import check_target, default_output
from .progress import Progress
from .video_plan import video_options


def classify(src: Path) -> str:
    """'folder', 'video', 'animation' or 'image' (opening only the header of an image)."""
    if src.is_dir():
        return "folder"
    suffix = src.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix not in IMAGE_SUFFIXES:
        raise UsageError(
            f"{src}: unknown file type {suffix or '(no extension)'}; images: {' '.join(IMAGE_SUFFIXES)}; "
            f"videos: {' '.join(VIDEO_SUFFIXES)}"
        )
    return "animation" if _is_animation(src) else "image"


def _is_animation(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return getattr(im, "n_frames", 1) > 1 and im.format in ("GIF", "PNG", "WEBP")
    except ImportError:
        raise CliError("Pillow is needed to read and write images: pip install pillow") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CliError(f"cannot read image {path}: {exc}") from None


def default_target(src: Path, kind: str, scale: int) -> Path:
    return default_output(src, scale, ".mp4" if kind == "video" else None)


def say_notes(name: str, notes: list[str]) -> None:
    for note in notes:
        warn(f"{name}: {note}")


def output_size(args, height: int, width: int, scale: int) -> tuple[int, int] | None:
    """(height, width) asked for by --factor / --long-side for an input of ``height`` x ``width``,
    or None for the model's own size (the nodes' output_size rule, engines/tiling/output_size.py)."""
    factor, long_side = getattr(args, "factor", None), getattr(args, "long_side", None)
    if factor is not None:
        return output_dims(FACTOR, factor, 0, height, width, scale)
    if long_side is not None:
        return output_dims(LONG_SIDE, 0.0, long_side, height, width, scale)
    return None


# -- one image -------------------------------------------------------------------------------
def upscale_picture(engine, picture: Picture, dst: Path, args, label: str | None = None) -> tuple[int, int]:
    """Upscale a read still or animation into ``dst`` (atomically); returns (width, height)."""
    if picture.animated:
        return _upscale_animation(engine, picture, dst, args, label)
    progress = Progress(label or picture.path.name, enabled=not args.quiet)
    assert picture.pixels is not None  # a still
    try:
        size = output_size(args, picture.pixels.shape[1], picture.pixels.shape[2], engine.info.scale)
        out = tiling.upscale_image(engine, picture.pixels, tile_size=args.tile, progress=progress, output_size=size)
    finally:
        progress.close()
    with atomic_output(dst, overwrite=args.overwrite) as tmp:
        notes = save_image(out[0], tmp, picture, format_suffix=dst.suffix)
    say_notes(picture.path.name, picture.notes + notes)
    return out.shape[2], out.shape[1]


def _upscale_animation(engine, picture: Picture, dst: Path, args, label: str | None) -> tuple[int, int]:
    """Every frame through the temporal pipeline (an animation is a short clip), timing kept."""
    assert picture.frames is not None  # an animation
    frames, state, done = [], None, 0
    total = len(picture.frames)
    progress = Progress(f"{label or picture.path.name} frames", enabled=not args.quiet, unit="frame")
    options = video_options(args)  # the one VideoOptions value: an animation is a short clip
    size = options.output_dims(picture.frames.shape[1], picture.frames.shape[2], engine.info.scale)
    try:
        for chunk in picture.chunks(max(1, args.frames_per_chunk)):
            out, state = temporal.upscale_video(
                engine, chunk, state=state, output_size=size, **options.upscale_kwargs()
            )
            frames.extend(to_uint8(out))
            done += chunk.shape[0]
            progress(done, total)
    finally:
        progress.close()
    with atomic_output(dst, overwrite=args.overwrite) as tmp:
        notes = save_animation(frames, picture.durations, picture.loop or 0, tmp, picture, format_suffix=dst.suffix)
    say_notes(picture.path.name, picture.notes + notes)
    return frames[0].shape[1], frames[0].shape[0]


def run_image(engine, src: Path, dst: Path, args) -> int:
    start = time.perf_counter()
    width, height = upscale_picture(engine, read_image(src), dst, args)
    print(
        f"wrote {dst} ({width}x{height}, x{engine.info.scale}, {engine.device}, {engine.precision}) "
        f"in {time.perf_counter() - start:.2f} s"
    )
    return 0


# -- a folder --------------------------------------------------------------------------------
@dataclass
class FolderReport:
    finished: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    not_started: list[Path] = field(default_factory=list)


def folder_plan(src: Path, out_dir: Path, args) -> tuple[list[Path], list[Path]]:
    """(images to do, images whose output exists and is kept) — refused before any work when
    outputs exist and neither --skip-existing nor --overwrite says what to do with them."""
    files = sorted(
        p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise UsageError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in {src}")
    if out_dir.exists() and out_dir.resolve() == src.resolve():
        raise UsageError("the output folder is the input folder; choose another --output")
    check_output(out_dir, "folder")
    existing = [p for p in files if (out_dir / p.name).exists()]
    if existing and args.skip_existing:
        return [p for p in files if p not in existing], existing
    if existing and not args.overwrite:
        shown = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise UsageError(
            f"{len(existing)} of {len(files)} outputs already exist in {out_dir} ({shown}); "
            f"pass --skip-existing to keep them and do the rest, or --overwrite"
        )
    return files, []


def run_folder(engine, src: Path, out_dir: Path, args) -> int:
    todo, kept = folder_plan(src, out_dir, args)
    if out_dir.is_dir():
        remove_stale_partials(out_dir)  # litter of a run that was killed outright
    report = FolderReport(skipped=kept)
    total = len(todo) + len(kept)
    if kept:
        print(f"skipping {len(kept)} image(s) already done in {out_dir}")
    start, began = time.perf_counter(), time.time()
    try:
        for i, path in enumerate(todo, 1):
            try:
                dst = check_target(out_dir / path.name, todo, args.overwrite)
                t0 = time.perf_counter()
                width, height = upscale_picture(engine, read_image(path), dst, args)
                report.finished.append(path)
                print(f"[{i}/{len(todo)}] wrote {dst} ({width}x{height}) in {time.perf_counter() - t0:.2f} s")
            except CliError as exc:
                report.failed.append((path, str(exc)))
                print(f"[{i}/{len(todo)}] error: {exc}", file=sys.stderr)
    except BaseException:  # Ctrl-C / SIGTERM: say exactly what is done and what is not
        # Outputs are atomic, so an output that exists is complete, even one renamed into
        # place a moment before the signal landed (before it could be counted).
        failed, counted = {p for p, _ in report.failed}, set(report.finished)
        report.finished = [
            p for p in todo if p in counted or (p not in failed and _written_since(out_dir / p.name, began))
        ]
        report.not_started = [p for p in todo if p not in failed and p not in report.finished]
        _print_interrupted(report, out_dir, total)
        raise
    print(
        f"{len(report.finished) + len(kept)} of {total} images in {out_dir} "
        f"({len(report.finished)} written, {len(kept)} kept, {len(report.failed)} failed) "
        f"in {time.perf_counter() - start:.2f} s"
    )
    if report.failed:
        print(f"not written: {', '.join(p.name for p, _ in report.failed)}", file=sys.stderr)
    return 1 if report.failed else 0


def _written_since(path: Path, began: float) -> bool:
    try:
        return path.stat().st_mtime >= began - 1  # (--overwrite: an older file there is not this run's)
    except OSError:
        return False


def _names(paths: list[Path], limit: int = 8) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f", ... ({len(paths) - limit} more)" if len(paths) > limit else "")


def _print_interrupted(report: FolderReport, out_dir: Path, total: int) -> None:
    err = sys.stderr
    print(f"stopped: {len(report.finished) + len(report.skipped)} of {total} images finished in {out_dir}", file=err)
    if report.finished:
        print(f"finished: {_names(report.finished)}", file=err)
    if report.not_started:
        print(f"not finished (no file written): {_names(report.not_started)}", file=err)
    if report.failed:
        print(f"failed: {_names([p for p, _ in report.failed])}", file=err)
    print("rerun the same command with --skip-existing to do only the rest", file=err)

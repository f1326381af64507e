"""A group of images on a Ray worker (no Ray import here)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from .worker_engine import engine


def _picture_options(job: dict) -> SimpleNamespace:
    """The option namespace jobs.upscale_picture reads, as the single-process run fills it."""
    return SimpleNamespace(tile=job["tile"], quiet=True, overwrite=True, **job.get("image_args", {}))


def upscale_images(job: dict, item: dict) -> dict:
    """item: {"names": [...], "inputs": [path (shared) or bytes (stream)], "outputs": [path]}.
    Each image goes through jobs.upscale_picture, the single-process function, so the bytes
    written are the same."""
    from .. import jobs
    from ..image_io import read_image

    runner, args = engine(job), _picture_options(job)
    done, blobs, errors = [], [], []
    for name, source, target in zip(item["names"], item["inputs"], item["outputs"]):
        try:
            if job["transfer"] == "shared":
                jobs.upscale_picture(runner, read_image(Path(source)), Path(target), args)
            else:
                with tempfile.TemporaryDirectory(prefix="paragonsr2-") as folder:
                    src, dst = Path(folder) / "in" / name, Path(folder) / name
                    src.parent.mkdir()
                    src.write_bytes(source)
                    jobs.upscale_picture(runner, read_image(src), dst, args)
                    blobs.append(dst.read_bytes())
            done.append(name)
        except Exception as exc:  # one bad image does not fail the group; the driver reports it
            errors.append(f"{name}: {exc}")
    return {"done": done, "blobs": blobs, "errors": errors, "frames": len(done)}

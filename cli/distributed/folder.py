"""A folder of images over the workers: one task per small group of images.

Each worker calls the single-process function (jobs.upscale_picture), so it writes the same
bytes the plain command writes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ...engines.runtime.files import atomic_write_bytes
from ..progress import Progress
from .cluster import Cluster, transfer_mode, using
from .summary import Summary
from .tasks import TaskRunner, describe_job, remove_partials

GROUPS_PER_WORKER = 4  # aim for this many tasks per worker (load balance vs overhead)
MAX_GROUP = 16  # at most this many images per task


def picture_args(args) -> dict:
    """What jobs.upscale_picture reads besides tile/quiet/overwrite (animated images are clips)."""
    return {
        "frames_per_chunk": args.frames_per_chunk,
        "temporal_strength": args.temporal_strength,
        "scene_cut_sensitivity": args.scene_cut_sensitivity,
        "factor": getattr(args, "factor", None),
        "long_side": getattr(args, "long_side", None),
    }


def upscale_folder(args, files: list[Path], kept: list[Path], out_dir: Path, running: Cluster | None = None) -> int:
    """``files``: the images to do; ``kept``: those whose output exists and stays (--skip-existing)."""
    src: Path = args.input
    if kept:
        print(f"skipping {len(kept)} image(s) already done in {out_dir}")
    if not files:
        return 0
    targets = [out_dir / p.name for p in files]
    out_dir.mkdir(parents=True, exist_ok=True)
    with using(running, args) as c:
        transfer = transfer_mode(args, c)
        size = max(1, min(MAX_GROUP, math.ceil(len(files) / (c.workers * GROUPS_PER_WORKER))))
        items = []
        for i in range(0, len(files), size):
            group, outs = files[i : i + size], targets[i : i + size]
            items.append(
                {
                    "names": [p.name for p in group],
                    "inputs": [str(p.resolve()) if transfer == "shared" else p.read_bytes() for p in group],
                    "outputs": [str(t.resolve()) for t in outs],
                }
            )
        job = describe_job(args, c, transfer)
        job["image_args"] = picture_args(args)
        progress = Progress(f"{src.name} images", enabled=not args.quiet, unit="image")
        summary, state = Summary("images"), {"done": 0, "errors": []}

        def on_result(result):
            for name, blob in zip(result["done"], result["blobs"]):  # stream mode: written here
                atomic_write_bytes(out_dir / name, blob)
            summary.add(result)
            state["done"] += len(result["done"])
            state["errors"] += result["errors"]
            progress(state["done"] + len(state["errors"]), len(files))

        print(f"{len(files)} images in {len(items)} task(s) on {c.workers} {c.device} worker(s), transfer: {transfer}")
        try:
            TaskRunner(c, job, "images").run(items, on_result)
        finally:
            progress.close()
            remove_partials(out_dir, [t.name for t in targets])
    for error in state["errors"]:
        print(f"error: {error}", file=sys.stderr)
    summary.print(state["done"])
    print(
        f"{state['done'] + len(kept)} of {len(files) + len(kept)} images in {out_dir} "
        f"({state['done']} written, {len(kept)} kept, {len(state['errors'])} failed)"
    )
    return 1 if state["errors"] else 0

"""``upscale`` with --workers/--ray-address/--devices: checked like the single-process run, then split."""

from __future__ import annotations

from ...engines.video.encode import MUXERS
from .. import jobs
from ..checks import UsageError, check_output
from ..model import load_model
from ..video_plan import plan_and_say
from .cluster import address, import_ray
from .folder import upscale_folder
from .video import upscale_video


def run(args, kind: str, plan) -> int:
    """``plan``: the video_plan.VideoPlan of an explicit video output (None otherwise)."""
    if kind not in ("folder", "video"):
        raise UsageError("--workers/--ray-address split folders and videos; upscale a single image without them")
    import_ray(joining=bool(address(args)))  # missing Ray is said before anything is loaded or written
    scale = load_model(args.model, args.sharpness).scale  # on the CPU: the driver only needs the scale
    dst = args.output or jobs.default_target(args.input, kind, scale)
    if kind == "folder":
        files, kept = jobs.folder_plan(args.input, dst, args)
        return upscale_folder(args, files, kept, dst)
    if args.output is None:
        check_output(dst, kind)
    if dst.suffix.lower() not in MUXERS:
        raise UsageError(
            f"--workers joins encoded segments: the output must be a video file "
            f"({' '.join(MUXERS)}), not {dst.suffix or 'no extension'}"
        )
    return upscale_video(args, dst, plan or plan_and_say(args, args.input, dst), scale)

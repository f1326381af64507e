"""The Ray options of ``upscale`` (argument parsing only; nothing here imports Ray)."""

from __future__ import annotations

from ...engines.video import chunks


def add_arguments(p) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on Ray with N workers: a local cluster this command starts and stops "
        "(default with --devices/--ray-address: one per GPU, else 2)",
    )
    p.add_argument(
        "--devices", default=None, metavar="LIST", help="Ray workers' devices: cuda:0,cuda:1 (one worker each) or cpu"
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="join this Ray cluster (default $RAY_ADDRESS) instead of starting one",
    )
    p.add_argument(
        "--transfer",
        default="auto",
        choices=("auto", "shared", "stream"),
        help="Ray: shared = workers read the input and write the output paths themselves "
        "(one machine or a shared file system); stream = through the driver; auto = "
        "shared when every node is this machine",
    )
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=chunks.DEFAULT_CHUNK_FRAMES,
        metavar="N",
        help="Ray video: frames per task in a long shot (scene cuts also start tasks)",
    )


def requested(args) -> bool:
    """Whether the command asked for Ray (any of --workers, --ray-address, --devices)."""
    return bool(getattr(args, "workers", None) or getattr(args, "ray_address", None) or getattr(args, "devices", None))

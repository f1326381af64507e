"""A Ray cluster for one command: a private local one (started and stopped here) or a joined one.

Ray binds its services to the machine's address, not 127.0.0.1 (ray.init resolves loopback
addresses to a reachable one); the dashboard is off and Ray's token authentication is on by
default.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..image_io import CliError
from . import bootstrap

TASK_RETRIES = 3  # worker deaths survived per task


@dataclass
class Cluster:
    ray: Any  # the ray module (imported only when asked for)
    workers: int
    gpus_per_task: float
    threads: int
    device: str
    started: bool
    local_only: bool
    remote: Any = field(default=None, repr=False)  # the remote bootstrap.run_task


def address(args) -> str | None:
    return getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS")


def _token_mode_for_joining() -> None:
    """Ray 2.60 sends its token (RAY_AUTH_TOKEN or ~/.ray/auth_token, which `ray start` writes)
    to an existing cluster only in token mode, and `ray start --head` turns token authentication
    on by default: without this the join is refused ("missing authorization header"). Ray reads
    the mode when it is imported, so this runs before."""
    if "RAY_AUTH_MODE" not in os.environ and (
        os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def import_ray(joining: bool = False):
    """Ray, or a one-line CliError saying how to install it."""
    if joining and "ray" not in sys.modules:
        _token_mode_for_joining()
    try:
        import ray
    except ImportError:
        raise CliError("--workers/--ray-address need Ray, which is not installed: pip install ray") from None
    import ray.cloudpickle

    # Workers import the pack from its folder: the bootstrap function travels by value.
    ray.cloudpickle.register_pickle_by_value(bootstrap)
    return ray


def parse_devices(text: str | None) -> list[str]:
    if not text:
        return []
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise CliError(f"--devices: {d!r} is not cpu or cuda:INDEX")
    if "cpu" in devices and len(devices) > 1:
        raise CliError("--devices: give either cpu or a list of cuda:INDEX")
    return devices


@contextlib.contextmanager
def cluster(args):
    """Start (and at the end stop) a private local cluster, or join the one at --ray-address."""
    joined = address(args)
    ray = import_ray(joining=bool(joined))
    devices = parse_devices(args.devices)
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if joined:
        with _joined(ray, joined, args, devices) as c:
            yield c
        return
    import torch

    cuda = [int(d[5:]) for d in devices if d.startswith("cuda:")]
    if not devices and args.device != "cpu" and torch.cuda.is_available():
        cuda = list(range(torch.cuda.device_count()))
    workers = args.workers or len(cuda) or 2
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda:  # the workers see exactly the chosen GPUs; Ray gives each task one of them
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in cuda)
    try:
        ray.init(
            address="local",
            num_cpus=workers,
            num_gpus=len(cuda),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=256 * 1024 * 1024,
        )
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        threads = 2 if cuda else max(1, (os.cpu_count() or 1) // workers)
        yield _make(ray, workers, bool(cuda), threads, started=True, local_only=True)
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _joined(ray, joined: str, args, devices: list[str]):
    try:
        ray.init(address=joined, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as exc:
        raise CliError(
            f"cannot join the Ray cluster at {joined}: {exc} (a cluster with token "
            "authentication also needs its token: RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
        ) from None
    try:
        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0)) if devices != ["cpu"] and args.device != "cpu" else 0
        workers = args.workers or gpus or int(total.get("CPU", 1))
        here = ray.util.get_node_ip_address()
        local_only = all(n["NodeManagerAddress"] == here for n in ray.nodes() if n["Alive"])
        yield _make(ray, workers, gpus > 0, 1, started=False, local_only=local_only)
    finally:
        ray.shutdown()


def using(running: Cluster | None, args):
    """``running`` when given (benchmarks/distributed.py keeps one warm), else a new cluster."""
    return contextlib.nullcontext(running) if running is not None else cluster(args)


def _make(ray, workers, gpu, threads, *, started, local_only) -> Cluster:
    options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": TASK_RETRIES, "retry_exceptions": False}
    remote = ray.remote(**options)(bootstrap.run_task)
    return Cluster(
        ray=ray,
        workers=workers,
        gpus_per_task=1 if gpu else 0,
        threads=threads,
        device="cuda" if gpu else "cpu",
        started=started,
        local_only=local_only,
        remote=remote,
    )


def transfer_mode(args, c: Cluster) -> str:
    """'shared' when every worker sees this machine's paths, else 'stream' (see worker.py)."""
    if args.transfer != "auto":
        return args.transfer
    return "shared" if c.local_only else "stream"

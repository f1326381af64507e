"""What every task of a job is told, and running the tasks: at most ``workers`` in flight,
results handled in completion order, everything cancelled on any exception (Ctrl-C included)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ...engines.runtime.files import is_partial
from .cluster import Cluster

CANCEL_WAIT_S = 30.0  # how long Ctrl-C waits for cancelled tasks to stop
PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = __name__.split(".")[0]


def describe_job(args, c: Cluster, transfer: str) -> dict:
    """The model and engine every task loads (plain values: a worker unpickles them without the pack)."""
    return {
        "model": str(args.model.resolve()),
        "sharpness": args.sharpness,
        "device": c.device,
        "backend": getattr(args, "backend", "torch"),
        "precision": args.precision,
        "tile": args.tile,
        "threads": c.threads,
        "transfer": transfer,
    }


class TaskRunner:
    """Submit ``items`` as tasks of ``kind`` ('images', 'scan', 'video'); ``payload``: one object
    every task shares (the source video's bytes in stream mode, stored once by Ray)."""

    def __init__(self, c: Cluster, job: dict, kind: str, payload=None):
        self.c, self.job, self.kind, self.payload = c, job, kind, payload
        self.pending: dict = {}

    def run(self, items: list[dict], on_result) -> None:
        ray = self.c.ray
        queue = list(items)
        try:
            while queue or self.pending:
                while queue and len(self.pending) < self.c.workers:
                    item = queue.pop(0)
                    ref = self.c.remote.remote(str(PACK_ROOT), PACK_NAME, self.kind, self.job, item, self.payload)
                    self.pending[ref] = item
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    self.pending.pop(ref)
                    on_result(ray.get(ref))
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Force-cancel what is running and wait (bounded) until it stopped."""
        ray = self.c.ray
        refs = list(self.pending)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if refs:
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
        self.pending.clear()


def remove_partials(folder: Path, names: list[str]) -> None:
    """Temporary files of this job's outputs (atomic_output names them after the output)."""
    prefixes = tuple(f".{n}." for n in names)
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(prefixes) and is_partial(entry):
                with contextlib.suppress(OSError):
                    entry.unlink()

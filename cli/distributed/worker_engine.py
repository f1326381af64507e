"""The engine a Ray worker process runs: loaded once, reused by every task it runs."""

from __future__ import annotations

from pathlib import Path

from ..model import load_model, make_engine

_ENGINES: dict = {}  # one loaded model per worker process


def engine(job: dict, video: bool = False):
    """The job's engine (the --backend of the command), loaded once per worker process."""
    key = (job["model"], job["sharpness"], job["backend"], job["device"], job["precision"], video)
    if key not in _ENGINES:
        _ENGINES.clear()
        model = load_model(Path(job["model"]), job["sharpness"])
        _ENGINES[key] = make_engine(model, job["backend"], job["device"], job["precision"], video=video)
    return _ENGINES[key]

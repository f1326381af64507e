"""On-disk cache of TensorRT engines: keys, atomic writes, a JSON sidecar per engine.

An engine is tied to the exact graph (weights, variant, scale, precision, sharpness, video
inputs: all inside the ONNX bytes), the shape profile, the TensorRT version and the GPU
(name and compute capability). The key hashes all of them, so an engine built for another
GPU or TensorRT version is simply never found (and the sidecar check refuses it if a file is
copied in by hand). Files are written to a unique temporary name in the same folder, flushed
to disk and renamed over the final name, so a crash or a full disk leaves either the old file
or no file, never a torn one; writers of the same key serialise on a lock file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..runtime.files import atomic_write_bytes

logger = logging.getLogger("ParagonSR2")

CACHE_SUBDIR = ("tensorrt", "paragonsr2")
FORMAT = 1
_STALE_LOCK_S = 30 * 60  # a lock older than any sane build belongs to a crashed process


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile: LR tile sides and batch sizes (min <= opt <= max)."""

    min_side: int = 64
    opt_side: int = 512
    max_side: int = 1024
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1

    def __post_init__(self):
        sides = (self.min_side, self.opt_side, self.max_side)
        if any(int(s) < 16 or int(s) % 16 for s in sides):
            raise ValueError(f"tile sides must be multiples of 16 and at least 16, got {sides}")
        if not self.min_side <= self.opt_side <= self.max_side:
            raise ValueError(f"need min <= opt <= max tile side, got {sides}")
        batches = (self.min_batch, self.opt_batch, self.max_batch)
        if min(batches) < 1 or not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min <= opt <= max batch, got {batches}")

    def shapes(self, channels: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) NCHW shapes of an LR-sized input with ``channels`` channels."""
        return (
            (self.min_batch, channels, self.min_side, self.min_side),
            (self.opt_batch, channels, self.opt_side, self.opt_side),
            (self.max_batch, channels, self.max_side, self.max_side),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def engine_facts(
    onnx_bytes: bytes, profile: Profile, *, tensorrt_version: str, gpu_name: str, compute_capability: str, video: bool
) -> dict:
    """Everything an engine depends on; equal facts = interchangeable engines."""
    return {
        "format": FORMAT,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "profile": profile.as_dict(),
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": str(compute_capability),
        "video": bool(video),
    }


def engine_key(facts: dict) -> str:
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def default_models_dir() -> Path:
    """The models folder outside ComfyUI: ``$PARAGONSR2_MODELS_DIR``, else ``./models``."""
    return Path(os.environ.get("PARAGONSR2_MODELS_DIR") or "models").resolve()


def cache_dir(models_dir: str | Path) -> Path:
    return Path(models_dir).joinpath(*CACHE_SUBDIR)


def engine_paths(folder: Path, label: str, key: str) -> tuple[Path, Path]:
    """(engine file, JSON sidecar); ``label`` (e.g. "photo_x4_fp16") only helps humans."""
    stem = f"{_safe(label)}_{key}" if label else key
    return folder / f"{stem}.engine", folder / f"{stem}.json"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


class KeyLock:
    """Exclusive lock file for one key: concurrent builders of the same engine take turns.

    ``timeout`` seconds of waiting, then TimeoutError; a lock left by a crashed process is
    taken over once it is older than _STALE_LOCK_S.
    """

    def __init__(self, path: Path, timeout: float = 3600.0, poll: float = 0.2):
        self.path, self.timeout, self.poll = Path(path), timeout, poll
        self._fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(self._fd, f"{os.getpid()}\n".encode())
                return self
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if time.time() - self.path.stat().st_mtime > _STALE_LOCK_S:
                        logger.warning("ParagonSR2: removing stale engine lock %s", self.path)
                        os.unlink(self.path)
                        continue
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {self.path}") from None
                time.sleep(self.poll)

    def __exit__(self, *exc):
        if self._fd is None:
            raise RuntimeError(f"KeyLock {self.path} released without being acquired")
        os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


# -- the cache -----------------------------------------------------------------------------------


class EngineCache:
    """Engines under ``<models_dir>/tensorrt/paragonsr2/``, looked up by facts."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def paths(self, facts: dict, label: str = "") -> tuple[Path, Path]:
        return engine_paths(self.folder, label, engine_key(facts))

    def lock(self, facts: dict, label: str = "", timeout: float = 3600.0) -> KeyLock:
        engine, _ = self.paths(facts, label)
        return KeyLock(engine.with_suffix(".lock"), timeout=timeout)

    def load(self, facts: dict, label: str = "") -> bytes | None:
        """The cached engine bytes for ``facts``, or None (missing, stale or damaged)."""
        engine, sidecar = self.paths(facts, label)
        try:
            meta = json.loads(sidecar.read_text())
            data = engine.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("facts") != facts:
            logger.warning("ParagonSR2: %s was built for %s; rebuilding", engine.name, _describe(meta.get("facts")))
            return None
        if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
            logger.warning("ParagonSR2: %s does not match its sidecar (damaged?); rebuilding", engine.name)
            return None
        return data

    def store(self, facts: dict, engine_bytes: bytes, label: str = "", extra: dict | None = None) -> Path:
        """Write engine then sidecar atomically (call inside ``lock``); returns the engine path."""
        engine, sidecar = self.paths(facts, label)
        meta = {
            "facts": facts,
            "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
            "engine_bytes": len(engine_bytes),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        atomic_write_bytes(engine, engine_bytes)
        atomic_write_bytes(sidecar, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        return engine

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
        """One timing cache per (TensorRT version, GPU): reused across models, speeds rebuilds."""
        return self.folder / f"timing_{_safe(tensorrt_version)}_{_safe(gpu_name)}_sm{_safe(compute_capability)}.cache"


def _describe(facts) -> str:
    if not isinstance(facts, dict):
        return "unknown settings"
    return (
        f"TensorRT {facts.get('tensorrt_version')} on {facts.get('gpu_name')} "
        f"(compute {facts.get('compute_capability')})"
    )

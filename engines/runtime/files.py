"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def _write_all(handle, data: bytes) -> None:
    handle.write(data)


def atomic_write_bytes(path: Path, data: bytes, *, writer: Callable = _write_all) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    A unique temporary file in the same folder (same file system, so the rename is atomic) is
    written, flushed, fsynced and renamed over ``path``; on any error it is removed.
    ``writer(handle, data)`` exists so tests can simulate a crash mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Resumable video runs: finished segments and their exact temporal states, kept in a work area.

A work area is a folder named by the run's key (``run_key``: the input file's identity, the
model, the options and everything else that changes the output). It holds
- ``seg-NNNNN<suffix>``: finished segments, each an independently decodable file;
- ``seg-NNNNN.state.safetensors``: the exact TemporalState after the segment's last frame, so
  a resumed run continues bit-identically (no warm-up approximation);
- ``manifest.json``: one entry per finished segment (frames, first/last pts, SHA-256 of both
  files), rewritten atomically after each segment;
- ``lock``: held (fcntl.flock) by the run using the area; the kernel drops it when that process
  dies, even by SIGKILL, so a stale lock never blocks a rerun.
A segment counts only when its entry is in the manifest and both files still match their
checksums and the segment demuxes to its frame count: a half-written segment (SIGKILL, power
loss) is never listed, a damaged one is redone, and everything after it too.

Cleanup: a finished run removes its area; an area nobody holds and nobody touched for
STALE_AFTER_S (7 days) is removed when any run opens the same work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..runtime.files import atomic_write_bytes, fsync_dir
from . import temporal

FORMAT_VERSION = 1
STALE_AFTER_S = 7 * 24 * 3600
MANIFEST = "manifest.json"
LOCK = "lock"
_KEY_CHARS = 24


class WorkAreaBusy(RuntimeError):
    """Another live run holds the work area (one line naming it)."""


@dataclass(frozen=True)
class Segment:
    """A finished segment as the manifest lists it."""

    index: int
    file: str
    frames: int
    first_pts: int
    last_pts: int
    sha256: str
    state_file: str
    state_sha256: str
    notes: list[str] = field(default_factory=list)  # what its encoder could not keep (said at the end)


def run_key(**parts) -> str:
    """A stable digest of everything that makes a run's output what it is (sorted JSON)."""
    text = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_CHARS]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the temporal state on disk -----------------------------------------------------------------
def state_to_bytes(state: temporal.TemporalState) -> bytes:
    """The exact state (float32 tensors bit for bit, signature and frame count as metadata)."""
    from safetensors.torch import save

    key, height, width = state.signature[:3]
    tensors = {
        "blended": state.blended.contiguous(),
        "last_thumb": state.last_thumb.contiguous(),
        "last_frame": state.last_frame.contiguous(),
    }
    meta = {
        "key": str(key),
        "height": str(int(height)),
        "width": str(int(width)),
        "frames_seen": str(state.frames_seen),
    }
    return save(tensors, metadata=meta)


def state_from_bytes(data: bytes) -> temporal.TemporalState:
    """The state ``state_to_bytes`` stored (ValueError/KeyError on a damaged file)."""
    from safetensors.torch import load

    tensors = load(data)
    # safetensors' header is 8 bytes of length, then JSON; its metadata is read from there
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    return temporal.TemporalState(
        signature=(meta["key"], int(meta["height"]), int(meta["width"])),
        blended=tensors["blended"],
        last_thumb=tensors["last_thumb"],
        last_frame=tensors["last_frame"],
        frames_seen=int(meta["frames_seen"]),
    )


# -- locking ------------------------------------------------------------------------------------
class _Lock:
    """An exclusive lock on ``path``: fcntl.flock where there is one (released by the kernel when
    the process dies), else an O_EXCL file with the pid (stale when that pid is gone)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:
            return self._acquire_exclusive()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def _acquire_exclusive(self) -> bool:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _holder_alive(self.path):
                    return False
                with contextlib.suppress(OSError):
                    os.unlink(self.path)  # its process is gone: a stale lock
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return True
        return False

    def holder(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            return f"process {int(self.path.read_text().split()[0])}"
        return "another process"

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            os.close(fd)  # drops the flock
        try:
            import fcntl  # noqa: F401
        except ImportError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _holder_alive(path: Path) -> bool:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- the work area ------------------------------------------------------------------------------
class WorkArea:
    """One run's folder of finished segments (see the module docstring). Use ``open``."""

    def __init__(self, folder: Path, key: str, lock: _Lock):
        self.folder, self.key, self._lock = folder, key, lock
        self.segments: list[Segment] = []

    @classmethod
    def open(cls, base: Path, key: str, *, stale_after_s: float = STALE_AFTER_S) -> WorkArea:
        """Lock (creating it if needed) the area ``base``/``key``, after removing stale areas of
        ``base``. WorkAreaBusy when a live run holds it."""
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
        clean_stale(base, stale_after_s, keep=key)
        folder = base / key
        folder.mkdir(parents=True, exist_ok=True)  # parents: a finishing run may just have removed base
        lock = _Lock(folder / LOCK)
        if not lock.acquire():
            raise WorkAreaBusy(
                f"another run ({lock.holder()}) is writing the same video with the same options "
                f"(work area {folder}); wait for it to finish or stop it"
            )
        area = cls(folder, key, lock)
        try:
            area._load()
        except BaseException:
            lock.release()
            raise
        return area

    def __enter__(self) -> WorkArea:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        self._lock.release()

    def remove(self) -> None:
        """The run finished: its area goes (lock included), and the work folder when it is empty."""
        self.release()
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()  # only succeeds when no other area is left

    # manifest
    def _load(self) -> None:
        try:
            data = json.loads((self.folder / MANIFEST).read_text())
            if data.get("version") != FORMAT_VERSION or data.get("key") != self.key:
                raise ValueError("another format or key")
            listed = [Segment(**entry) for entry in data["segments"]]
        except (OSError, ValueError, TypeError, KeyError):
            listed = []
        self.segments = []
        for i, segment in enumerate(listed):
            if segment.index != i or not self._intact(segment):
                break
            self.segments.append(segment)
        self._forget_unlisted()
        self._write_manifest()

    def _intact(self, segment: Segment) -> bool:
        video, state = self.folder / segment.file, self.folder / segment.state_file
        try:
            if sha256_of(video) != segment.sha256 or sha256_of(state) != segment.state_sha256:
                return False
            return count_video_packets(video) == segment.frames
        except Exception:  # unreadable, undecodable: redo it
            return False

    def _forget_unlisted(self) -> None:
        """Remove files no manifest entry vouches for (a segment being written when the run died)."""
        keep = {MANIFEST, LOCK} | {s.file for s in self.segments} | {s.state_file for s in self.segments}
        for entry in self.folder.iterdir():
            if entry.name not in keep:
                with contextlib.suppress(OSError):
                    entry.unlink() if entry.is_file() else shutil.rmtree(entry)

    def _write_manifest(self) -> None:
        data = {"version": FORMAT_VERSION, "key": self.key, "segments": [asdict(s) for s in self.segments]}
        atomic_write_bytes(self.folder / MANIFEST, json.dumps(data, indent=1).encode())

    # segments
    @property
    def frames_done(self) -> int:
        return sum(s.frames for s in self.segments)

    def last_state(self) -> temporal.TemporalState | None:
        if not self.segments:
            return None
        return state_from_bytes((self.folder / self.segments[-1].state_file).read_bytes())

    def notes(self) -> list[str]:
        """Every segment's notes, each once, in order (also those of an earlier, resumed run)."""
        return list(dict.fromkeys(note for s in self.segments for note in s.notes))

    def paths(self) -> list[Path]:
        return [self.folder / s.file for s in self.segments]

    def scratch_path(self, index: int, suffix: str) -> Path:
        """Where segment ``index`` is written before ``commit`` (removed on reopen if unlisted)."""
        return self.folder / f"seg-{index:05d}.writing{suffix}"

    def commit(
        self,
        index: int,
        written: Path,
        frames: int,
        first_pts: int,
        last_pts: int,
        state: temporal.TemporalState,
        notes: list[str] | None = None,
    ) -> Segment:
        """Make the finished segment ``written`` (a scratch_path) part of the area: its state is
        stored, both are fsynced and renamed into place, then the manifest lists it."""
        if index != len(self.segments):
            raise ValueError(f"segment {index} committed after {len(self.segments)} segment(s)")
        name = f"seg-{index:05d}{written.suffix}"
        state_name = f"seg-{index:05d}.state.safetensors"
        state_bytes = state_to_bytes(state)
        atomic_write_bytes(self.folder / state_name, state_bytes)
        with open(written, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(written, self.folder / name)
        fsync_dir(self.folder)
        segment = Segment(
            index=index,
            file=name,
            frames=int(frames),
            first_pts=int(first_pts),
            last_pts=int(last_pts),
            sha256=sha256_of(self.folder / name),
            state_file=state_name,
            state_sha256=hashlib.sha256(state_bytes).hexdigest(),
            notes=list(notes or []),
        )
        self.segments.append(segment)
        self._write_manifest()
        return segment


def count_video_packets(path: Path) -> int:
    """Video packets (= frames for the encoders used here) of a file's first video stream."""
    from .container import require_av

    av = require_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def clean_stale(base: Path, max_age_s: float = STALE_AFTER_S, keep: str | None = None) -> list[Path]:
    """Remove work areas in ``base`` untouched for ``max_age_s`` whose lock nobody holds."""
    removed = []
    now = time.time()
    with contextlib.suppress(OSError):
        for folder in Path(base).iterdir():
            if folder.name == keep or not folder.is_dir() or not (folder / MANIFEST).exists():
                continue
            try:
                newest = max(p.stat().st_mtime for p in folder.iterdir())
            except (OSError, ValueError):
                continue
            if now - newest < max_age_s:
                continue
            lock = _Lock(folder / LOCK)
            if not lock.acquire():
                continue  # in use after all
            lock.release()
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

"""Writing files so that a reader never sees a partial one.

Everything the pack writes (images, videos, ONNX graphs, TensorRT engines and their sidecars)
goes through here: a uniquely named temporary file in the destination folder (same file
system, so the final rename is atomic) that is renamed over the target only when complete and
removed on any error, Ctrl-C or SIGTERM (once the CLI has turned SIGTERM into an exception).
Temporary files get the mode a plain ``open(path, "w")`` would give (0644 under umask 022),
not mkstemp's private 0600, so the renamed result looks like any other output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Temporary names: ".<final name>.<pid>-<random>.partial<final suffix>". Keeping the final
# suffix lets Pillow and FFmpeg pick the format from the name; the pid lets a later run tell
# the litter of a killed (SIGKILL, power loss) process from a write still in progress.
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[a-z0-9_]+\.partial(\.[^.]*)?$")


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
    fd, tmp = _reserve_temp(path)
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
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and put it back)
    os.umask(mask)
    return mask


def _reserve_temp(path: Path) -> tuple[int, str]:
    """mkstemp beside ``path``, with the mode a normal new file would get."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=f".partial{path.suffix}", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def is_partial(path: Path) -> bool:
    """True for a temporary file made by this module (never a finished output)."""
    return _PARTIAL.match(Path(path).name) is not None


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) to write the whole output to.

    When the block ends normally the temporary file is renamed over ``path`` (atomically: a
    reader sees the old file or the complete new one). When it raises (errors, KeyboardInterrupt,
    SystemExit) the temporary file is removed and ``path`` is untouched. With
    ``overwrite=False`` an output that appeared at ``path`` meanwhile is kept and
    FileExistsError raised instead of replacing it. The writer may delete or recreate the
    temporary file (some libraries do); its mode is reset to the umask's at the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _reserve_temp(path)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise FileNotFoundError(f"nothing was written for {path}")
        with contextlib.suppress(OSError):  # a writer that recreated the file may have used 0600
            os.chmod(tmp_path, 0o666 & ~current_umask())
        with contextlib.suppress(OSError), open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp_path, path)
        else:
            _rename_no_replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    fsync_dir(path.parent)


def _rename_no_replace(tmp: Path, path: Path) -> None:
    """Rename that fails with FileExistsError rather than replace (a hard link is the atomic
    test-and-set; file systems without links get an exists check just before the rename)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # FAT, some network shares: no hard links
        if path.exists():
            raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by processes that no longer run (SIGKILL,
    power loss); returns what was removed. Files of live processes are left alone."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            match = _PARTIAL.match(entry.name)
            if match and entry.is_file() and not _pid_alive(int(match["pid"])):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or cannot tell: keep its file
    return True


@contextlib.contextmanager
def scratch_file(beside: Path) -> Iterator[Path]:
    """A temporary path in ``beside``'s folder with its suffix (an intermediate file, e.g. the
    video stream before the audio is added); always removed when the block ends."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _reserve_temp(beside)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)

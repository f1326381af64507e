"""A running ComfyUI server's memory, read from Linux's /proc (tests and benchmarks/video_memory.py).

``server_pid(port)`` finds the server process by its command line (the process we start may be a
wrapper around the interpreter); ``process_memory(pid, "VmRSS")`` reads a /proc/PID/status size
(``VmHWM`` is the peak); ``reset_peak(pid)`` restarts that peak at the current RSS.
"""

from __future__ import annotations

from pathlib import Path


def server_pid(port: int) -> int | None:
    """The ``main.py`` process started with ``--port <port>``, or None if /proc does not show it."""
    needle = ["--port", str(port)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        if "main.py" in args and any(args[i : i + 2] == needle for i in range(len(args) - 1)):
            return int(entry.name)
    return None


def process_memory(pid: int, field: str) -> int:
    """A size from /proc/PID/status in bytes, e.g. ``VmRSS`` (now) or ``VmHWM`` (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel writes kB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make VmHWM start again from the current RSS (OSError where the kernel does not allow it)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")

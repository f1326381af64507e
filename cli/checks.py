"""Everything the command line can check before any pixel is computed.

Numeric options are argparse types (a bad value stops the parser: exit 2, one line). Output
paths are checked by ``check_output``: the extension is one we can write for this input, the
path is not a folder, the folder exists or can be made and is writable (probed by creating a
file there, the only test that is right for root, read-only mounts and ACLs alike).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from pathlib import Path

from .image_io import ANIMATION_SUFFIXES, FORMATS, CliError


class UsageError(CliError):
    """The command line asks for something that cannot be done: exit 2, nothing computed."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_in(low: float, high: float, kind=float, *, zero_ok: bool = False, what: str = ""):
    """An argparse type: ``kind`` in [low, high] (or exactly 0 when ``zero_ok``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if zero_ok and value == 0:
            return value
        if not low <= value <= high:
            extra = " or 0" if zero_ok else ""
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}{extra}{what}")
        return value

    return parse


def describe_os_error(exc: OSError) -> str:
    """'Permission denied: /path' rather than '[Errno 13] ...' or a class name."""
    text = exc.strerror or os.strerror(exc.errno or 0) or "cannot be written"
    return f"{text}: {exc.filename}" if exc.filename else text


def nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def check_writable_folder(folder: Path, what: str) -> None:
    """The folder exists (or its nearest existing parent does and is a folder) and a file can
    be created in it; nothing is left behind."""
    base = nearest_existing(folder)
    if not base.is_dir():
        raise UsageError(f"cannot write {what}: {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".paragonsr2-probe-"):
            pass
    except OSError as exc:  # the probe's own name would only confuse: the OS's reason alone
        reason = exc.strerror or os.strerror(exc.errno or errno.EACCES)
        raise UsageError(f"cannot write {what}: files cannot be created in {base} ({reason.lower()})") from None


def output_suffixes(kind: str) -> tuple[str, ...]:
    """Extensions an input of this kind can be written as."""
    from ..engines.video.encode import MUXERS

    if kind == "image":
        return tuple(FORMATS)
    if kind == "animation":  # per-frame timing: only animated image formats hold it exactly
        return ANIMATION_SUFFIXES
    return tuple(MUXERS) + (".gif", ".webp")  # video: a container, or a short animation


def check_output_file(target: Path) -> None:
    """A file output of any kind: not a folder, in a folder that can be written."""
    if target.is_dir():
        raise UsageError(f"--output {target} is a folder; give a file name")
    check_writable_folder(target.parent, str(target))


def check_output(target: Path, kind: str) -> None:
    """Refuse, before any work, an output that cannot be written for an input of ``kind``
    ('image', 'animation', 'video' or 'folder')."""
    if kind == "folder":
        if target.exists() and not target.is_dir():
            raise UsageError(f"--output {target} is a file; a folder input needs an output folder")
        check_writable_folder(target, f"into {target}")
        return
    if target.is_dir():
        example = target / ("result" + (target.suffix or ".png"))
        raise UsageError(f"--output {target} is a folder; give a file name, e.g. {example}")
    suffix = target.suffix.lower()
    allowed = output_suffixes(kind)
    if suffix not in allowed:
        named = f"extension {suffix}" if suffix else "no extension"
        raise UsageError(
            f"--output {target} has {named}; a{'n' if kind[0] in 'aeiou' else ''} {kind} can be "
            f"written as {' '.join(allowed)}"
        )
    check_writable_folder(target.parent, str(target))


def warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)

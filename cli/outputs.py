"""Where results go: default names next to the input, and the rule that no input is overwritten."""

from __future__ import annotations

from pathlib import Path

from .checks import UsageError


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def free_name(path: Path) -> Path:
    """``path`` if nothing is there, else ``stem_1.ext``, ``stem_2.ext``, ..."""
    if not path.exists():
        return path
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def default_output(source: Path, scale: int, suffix: str | None = None) -> Path:
    """``<stem>_ParagonSR2_x<scale><suffix>`` beside the source (a free name, never the source)."""
    if source.is_dir():
        return free_name(source.with_name(f"{source.name}_ParagonSR2_x{scale}"))
    return free_name(source.with_name(f"{source.stem}_ParagonSR2_x{scale}{suffix or source.suffix}"))


def check_target(target: Path, inputs: list[Path], overwrite: bool) -> Path:
    """Refuse to write over any input (always) or over an existing file (unless ``overwrite``);
    both are usage errors (exit 2), found before any work."""
    for src in inputs:
        if target.resolve() == src.resolve() or same_file(target, src):
            raise UsageError(f"refusing to overwrite the input {src}; choose another --output")
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists; pass --overwrite to replace it, or choose another --output")
    return target

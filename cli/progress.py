"""Progress reporting: tqdm when installed, else one rewritten stderr line."""

from __future__ import annotations

import sys
from typing import Any

_PERCENT_BAR = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


class Progress:
    """``progress(done, total)`` callable for the runners; ``close()`` when finished.

    ``unit`` names what ``done`` counts ("frame", "image"): shown as done/total. Without one the
    bar shows a percentage only: the image runner counts engine stages (tiles x stages per
    call), a number that means nothing to a reader."""

    def __init__(self, label: str, enabled: bool = True, unit: str | None = None):
        self.label = label
        self.enabled = enabled
        self.unit = unit
        self._bar: Any = None  # a tqdm bar, False without tqdm, None before the first call
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self._bar = False
            else:
                # no unit: percent and times only (no meaningless counts or rate)
                shape: dict[str, Any] = {"unit": self.unit} if self.unit else {"bar_format": _PERCENT_BAR}
                self._bar = tqdm(total=total, desc=self.label, leave=False, file=sys.stderr, **shape)
        if self._bar:
            self._bar.total = total  # the runner may re-plan (more tiles) after out-of-memory
            self._bar.update(done - self._bar.n)
        elif done != self._last:
            self._last = done
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{self.label}: {self._count(done, total)}")
            elif done >= total:  # logs get one line, not a stream of carriage returns
                sys.stderr.write(f"{self.label}: {self._count(done, total)}")
            sys.stderr.flush()

    def _count(self, done: int, total: int) -> str:
        if self.unit:
            return f"{done}/{total} {self.unit}s"
        return f"{100 * done // max(1, total):3d}%"

    def close(self) -> None:
        if self._bar:
            self._bar.close()
        elif self._bar is False and self._last >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()

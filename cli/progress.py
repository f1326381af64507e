"""Progress reporting: tqdm when installed, else one rewritten stderr line."""

from __future__ import annotations

import sys


class Progress:
    """``progress(done, total)`` callable for the runners; ``close()`` when finished."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled
        self._bar = None
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
                self._bar = tqdm(total=total, desc=self.label, unit="tile", leave=False, file=sys.stderr)
        if self._bar:
            self._bar.total = total  # the runner may re-plan (more tiles) after out-of-memory
            self._bar.update(done - self._bar.n)
        elif done != self._last:
            self._last = done
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{self.label}: {done}/{total}")
            elif done >= total:  # logs get one line, not a stream of carriage returns
                sys.stderr.write(f"{self.label}: {done}/{total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar:
            self._bar.close()
        elif self._bar is False and self._last >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()

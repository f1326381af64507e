"""The one out-of-memory back-off of the image and video runners.

A run holds two sizes that memory limits: images (frames) per engine call and the LR tile side.
When an engine call fails for lack of memory (any backend, see devices.is_out_of_memory) the
runner frees the allocator's cache, halves the images per call, and once that is down to one
halves the tile; below the floor it gives up with TileOutOfMemoryError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from .contract import ALIGN
from .devices import is_out_of_memory, release_cached_memory

logger = logging.getLogger("ParagonSR2")

T = TypeVar("T")


class TileOutOfMemoryError(RuntimeError):
    """Even the smallest tile with one image per call did not fit in memory."""


class OutOfMemoryBackoff:
    """``tile`` and ``per_call`` of a run, shrunk by ``shrink`` after an allocator failure.

    ``unit`` names what is batched ("image", "frame") and ``label`` prefixes log lines; the
    caller re-plans its tiles from ``tile`` after a shrink.
    """

    def __init__(
        self,
        device: torch.device,
        tile: int,
        per_call: int,
        *,
        min_tile: int,
        unit: str = "image",
        label: str = "ParagonSR2",
    ):
        self.device = torch.device(device)
        self.tile, self.per_call, self.min_tile = int(tile), max(1, int(per_call)), int(min_tile)
        self.unit, self.label = unit, label

    def attempt(self, work: Callable[..., T], *args) -> tuple[bool, T | None]:
        """Run ``work(*args)``; (True, its result), or (False, None) after an out-of-memory
        failure, the sizes then already shrunk. Other exceptions propagate unchanged."""
        try:
            return True, work(*args)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Out of the except block the failure's traceback (holding the failed call's device
        # tensors) is gone, so the cache release below can hand that memory back.
        self.shrink()
        return False, None

    def shrink(self) -> None:
        """Free cached memory and halve per_call, else the tile; raise at the floor."""
        release_cached_memory(self.device)
        if self.per_call > 1:
            self.per_call //= 2
        elif self.tile // 2 >= self.min_tile:
            self.tile = self.tile // 2 // ALIGN * ALIGN
        else:
            raise TileOutOfMemoryError(
                f"{self.label}: out of memory on {self.device} even with {self.tile}x{self.tile} LR tiles "
                f"and one {self.unit} per call. Set a smaller tile_size, use a lower precision "
                f"(fp16/bf16) or a smaller model variant, or free memory (close other programs or models)."
            )
        logger.warning(
            "%s: out of memory on %s; retrying with %d px tiles, %d %s(s) per call",
            self.label,
            self.device,
            self.tile,
            self.per_call,
            self.unit,
        )

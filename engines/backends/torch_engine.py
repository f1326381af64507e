"""Run a ParagonSR2 model with PyTorch on a chosen device and precision.

The engine keeps its own device copy of the network (the handle's CPU float32 master is never
moved or cast). Low-precision results that hold NaN/Inf are recomputed in float32, as the
upstream inference script does, and the first such fallback is logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from ..runtime.contract import ALLOCATOR_DEVICE, ALLOCATOR_MALLOC, EngineInfo, InfoAttributes, frozen_copy
from ..runtime.devices import pick_device, resolve_dtype
from ..runtime.memory import warm_cpu_allocator

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2

logger = logging.getLogger("ParagonSR2")


class TorchEngine(InfoAttributes):
    """An ``Engine`` (engines/runtime/contract.py) backed by a PyTorch copy of the model.

    ``TorchEngine(model, device=None, precision="auto")``: device None = ``pick_device("auto")``.
    Attributes: ``info``, ``model`` (the device copy), ``fallbacks`` (how many calls were recomputed in fp32).
    """

    def __init__(self, model: ParagonSR2, device: torch.device | str | None = None, precision: str = "auto"):
        device = pick_device("auto" if device is None else device)
        # CPU tensors come from the C library's malloc: the runners size CPU tiles for it.
        on_cpu = device.type == "cpu"
        if on_cpu:
            warm_cpu_allocator()
        self.info = EngineInfo.of_model(
            model,
            device,
            resolve_dtype(precision, device),
            allocator=ALLOCATOR_MALLOC if on_cpu else ALLOCATOR_DEVICE,
            steps_per_call=int(model.stage_count),
        )
        self._master = model  # read only: source of the lazy fp32 copy used for fallbacks
        self.model = self._device_copy(self.dtype)
        self._fp32_model = self.model if self.dtype == torch.float32 else None
        self.fallbacks = 0

    def _device_copy(self, dtype: torch.dtype) -> ParagonSR2:
        return frozen_copy(self._master, self.device, dtype)

    def _fp32(self) -> ParagonSR2:
        if self._fp32_model is None:
            self._fp32_model = self._device_copy(torch.float32)
        return self._fp32_model

    def _note_fallback(self, what: str) -> None:
        self.fallbacks += 1
        if self.fallbacks == 1:
            logger.warning(
                "ParagonSR2 %s: %s result in %s had NaN/Inf; recomputed in fp32 (logged once per engine)",
                self.variant,
                what,
                self.precision,
            )

    def _low_precision_failed(self, out: torch.Tensor) -> bool:
        return self.dtype != torch.float32 and not bool(torch.isfinite(out).all())

    def _input(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(device=self.device, dtype=dtype, non_blocking=True)

    @torch.inference_mode()
    def __call__(self, lr: torch.Tensor, on_step=None) -> torch.Tensor:
        """``on_step(done, info.steps_per_call)`` runs between network stages (it may raise
        to cancel); the output is bit-identical to a call without it."""
        out = self._forward(self.model, self._input(lr, self.dtype), on_step)
        if self._low_precision_failed(out):
            self._note_fallback("tile")
            out = self._forward(self._fp32(), self._input(lr, torch.float32), on_step)
        return out.float()

    @staticmethod
    def _forward(model: ParagonSR2, x: torch.Tensor, on_step) -> torch.Tensor:
        return model(x) if on_step is None else model.run_staged(x, on_step)

    @torch.inference_mode()
    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        feat = self.model.encode(self._input(lr, self.dtype))
        if self._low_precision_failed(feat):
            self._note_fallback("encode")
            feat = self._fp32().encode(self._input(lr, torch.float32))
        return feat.float()  # float32 like every engine, so runners can blend states in fp32

    @torch.inference_mode()
    def decode(self, lr: torch.Tensor, feat: torch.Tensor, on_step=None) -> torch.Tensor:
        """``on_step`` as in ``__call__`` (run_decode_staged: step 1 stands for the given
        features, then each body block and the tail); the output is bit-identical without it."""
        out = self._decode(self.model, self._input(lr, self.dtype), self._input(feat, self.dtype), on_step)
        if self._low_precision_failed(out):
            self._note_fallback("decode")
            fp32 = self._fp32()
            out = self._decode(fp32, self._input(lr, torch.float32), self._input(feat, torch.float32), on_step)
        return out.float()

    @staticmethod
    def _decode(model: ParagonSR2, x: torch.Tensor, feat: torch.Tensor, on_step) -> torch.Tensor:
        return model.decode(x, feat) if on_step is None else model.run_decode_staged(x, feat, on_step)

    def __repr__(self) -> str:
        return f"TorchEngine({self.variant} x{self.scale}, {self.device}, {self.precision})"


def create_engine(
    model: ParagonSR2, *, device: str | torch.device = "auto", precision: str = "auto", video: bool = False
) -> TorchEngine:
    """The registry's entry (registry.make_engine): every torch engine can decode video."""
    return TorchEngine(model, device, precision)

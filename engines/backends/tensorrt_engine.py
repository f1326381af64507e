"""Run a ParagonSR2 TensorRT engine behind the ``Engine`` protocol, and get one (cache or build).

Execution uses the documented TensorRT 10/11 API only: name-based I/O (``set_input_shape``,
``set_tensor_address`` on torch CUDA tensors), ``execute_async_v3`` on a dedicated CUDA stream
ordered after (and before) torch's current stream. Tiles must lie inside the engine's
optimisation profile: ``min_tile``/``max_tile``/``tile_multiple`` tell the tiled runner, so any
image size works; a direct call outside the profile raises a clear error.

Video engines: ``__call__`` runs with ``temporal_alpha = 0``; ``decode(lr, feat)`` with
``prev_feat = feat`` and ``temporal_alpha = 1`` (exact); ``encode(lr)`` is a torch copy of
conv_in on the same GPU in the engine's precision (a single 3x3 conv).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..runtime.contract import ALIGN, ALLOCATOR_DEVICE, EngineInfo, InfoAttributes, frozen_copy
from ..runtime.options import GRAPH_DTYPES, graph_precision
from .engine_cache import EngineCache, Profile, cache_dir, default_models_dir, engine_facts
from .onnx_export import ALPHA, FEATURE, INPUT, OUTPUT, PREV_FEAT, export_onnx_cached, pad_to_multiple
from .tensorrt_build import (
    INSTALL_HINT,
    TensorRTUnavailable,
    build_serialized_engine,
    gpu_facts,
    import_tensorrt,
    make_logger,
    unavailable_reason,
)

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2

logger = logging.getLogger("ParagonSR2")


class TensorRTEngine(InfoAttributes):
    """``TensorRTEngine(engine_bytes, model=..., precision=..., video=...)``.

    ``model`` (the CPU master) supplies scale, variant, receptive radius and conv_in.
    """

    def __init__(
        self,
        engine_bytes: bytes,
        *,
        model: ParagonSR2,
        precision: str,
        video: bool,
        device: torch.device | str | None = None,
    ):
        trt = import_tensorrt()
        self._trt = trt
        device = torch.device(device) if device else torch.device("cuda", torch.cuda.current_device())
        self._logger = make_logger(trt)
        with torch.cuda.device(device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise RuntimeError(
                    "TensorRT could not load this engine (built by another TensorRT "
                    "version or for another GPU?):\n" + self._logger.explain()
                )
            self.context = self.engine.create_execution_context()
            self._stream = torch.cuda.Stream(device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = {INPUT, OUTPUT} | ({PREV_FEAT, ALPHA, FEATURE} if video else set())
        if set(names) != expected:
            raise RuntimeError(
                f"engine I/O {sorted(names)} does not match a ParagonSR2 "
                f"{'video' if video else 'image'} graph {sorted(expected)}"
            )
        for name in names:  # fixed properties of the engine: check them once, not per call
            if self.engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise RuntimeError(f"engine tensor {name} is not float32; rebuild it with this version")
        self.num_feat = int(model.num_feat)
        window = int(model.window_size)
        self.align = ALIGN if window > 1 else 1  # realtime/stream graphs take any size
        lo, _, hi = self.engine.get_tensor_profile_shape(INPUT, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.info = EngineInfo.of_model(
            model,
            device,
            GRAPH_DTYPES[precision],
            tile_multiple=ALIGN if window > 1 else None,
            min_tile=int(max(lo[2], lo[3])),
            max_tile=int(min(hi[2], hi[3])),
            allocator=ALLOCATOR_DEVICE,
            supports_video=video,
        )
        self.conv_in = frozen_copy(model.conv_in, self.device, self.dtype)
        # temporal_alpha is only ever 0 (first frame, image use) or 1 (decode): make both once.
        self._alphas = {a: torch.tensor(a, dtype=torch.float32, device=self.device) for a in (0.0, 1.0)}
        self._lock = threading.Lock()  # one execution context: one call at a time

    # -- one engine call ---------------------------------------------------------------------
    def _check(self, h: int, w: int) -> None:
        if not (self.min_tile <= h <= self.max_tile and self.min_tile <= w <= self.max_tile):
            raise ValueError(
                f"{h}x{w} LR tile is outside this TensorRT engine's profile "
                f"({self.min_tile}..{self.max_tile} px); let the tiled runner choose tiles "
                f"or rebuild the engine with a wider shape range"
            )

    def _execute(self, x: torch.Tensor, feat: torch.Tensor | None, alpha: float) -> dict[str, torch.Tensor]:
        self._check(*x.shape[-2:])
        ctx = self.context
        tensors = {INPUT: x}
        ctx.set_input_shape(INPUT, tuple(x.shape))
        if self.video:
            if feat is None:
                raise ValueError("a video TensorRT engine call needs prev_feat")
            tensors[PREV_FEAT] = feat
            tensors[ALPHA] = self._alphas[alpha]
            ctx.set_input_shape(PREV_FEAT, tuple(feat.shape))
        missing = ctx.infer_shapes()
        if missing:
            raise RuntimeError(f"TensorRT could not infer the shapes of {missing}")
        for name in [OUTPUT] + ([FEATURE] if self.video else []):
            tensors[name] = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device=self.device)
        for name, t in tensors.items():
            if not ctx.set_tensor_address(name, t.data_ptr()):
                raise RuntimeError(f"TensorRT refused the address of {name}")
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)  # inputs were written on torch's stream
        for t in tensors.values():
            t.record_stream(self._stream)  # the allocator must not reuse them before we finish
        if not ctx.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed:\n" + self._logger.explain())
        current.wait_stream(self._stream)
        return tensors

    def _run(self, lr: torch.Tensor, feat: torch.Tensor | None, alpha: float, want: str) -> torch.Tensor:
        h, w = lr.shape[-2:]
        x = pad_to_multiple(lr.to(self.device, torch.float32), self.align)
        if self.video:
            feat = (
                torch.zeros(x.shape[0], self.num_feat, *x.shape[-2:], device=self.device)
                if feat is None
                else pad_to_multiple(feat.to(self.device, torch.float32), self.align)
            )
        outs = []
        with self._lock, torch.cuda.device(self.device), torch.inference_mode():
            for start in range(0, x.shape[0], self.max_batch):
                rows = slice(start, start + self.max_batch)
                part = self._execute(x[rows].contiguous(), None if feat is None else feat[rows].contiguous(), alpha)
                outs.append(part[want])
        factor = self.scale if want == OUTPUT else 1
        out = outs[0] if len(outs) == 1 else torch.cat(outs)  # no extra copy in the usual case
        return out[:, :, : h * factor, : w * factor]

    # -- Engine protocol -----------------------------------------------------------------------
    def __call__(self, lr: torch.Tensor, on_step=None) -> torch.Tensor:
        # on_step is not called: one engine run cannot stop midway (info.steps_per_call == 1)
        return self._run(lr, None, 0.0, OUTPUT)

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.conv_in(lr.to(self.device, self.dtype)).float()

    def decode(self, lr: torch.Tensor, feat: torch.Tensor, on_step=None) -> torch.Tensor:
        # on_step is not called, as in __call__
        if not self.video:
            raise RuntimeError("decode needs a video engine: build it with video = yes")
        return self._run(lr, feat, 1.0, OUTPUT)

    def __repr__(self) -> str:
        return (
            f"TensorRTEngine({self.variant} x{self.scale}, {self.precision}, "
            f"{'video' if self.video else 'image'}, tiles {self.min_tile}..{self.max_tile})"
        )


@dataclass(frozen=True)
class CachedEngine:
    """A serialized engine, the cache file holding it, and whether this call built it."""

    data: bytes
    path: Path
    built: bool


def ensure_engine_bytes(
    model: ParagonSR2,
    *,
    precision: str = "fp16",
    profile: Profile | None = None,
    video: bool = False,
    models_dir: str | Path,
    workspace_bytes: int = 4 << 30,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    rebuild: bool = False,
) -> CachedEngine:
    """The serialized engine for (model, precision, profile, video) on this GPU and TensorRT:
    from the cache under ``<models_dir>/tensorrt/paragonsr2/`` when present (and not
    ``rebuild``), else built and stored. The nodes and the command line both come here, so
    their cache entries are the same."""
    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    trt = import_tensorrt()
    profile = profile or Profile()
    onnx_bytes = export_onnx_cached(model, precision=precision, video=video)
    gpu, capability = gpu_facts()
    facts = engine_facts(
        onnx_bytes, profile, tensorrt_version=trt.__version__, gpu_name=gpu, compute_capability=capability, video=video
    )
    label = f"{model.variant}_x{int(model.scale)}_{precision}{'_video' if video else ''}"
    cache = EngineCache(cache_dir(models_dir))
    path, _ = cache.paths(facts, label)
    data = None if rebuild else cache.load(facts, label)
    if data is not None:
        return CachedEngine(data, path, built=False)
    with cache.lock(facts, label):
        data = None if rebuild else cache.load(facts, label)  # another process may have built it meanwhile
        if data is not None:
            return CachedEngine(data, path, built=False)
        logger.info("ParagonSR2: building TensorRT engine %s (this takes a few minutes)", label)
        data = build_serialized_engine(
            onnx_bytes,
            profile,
            num_feat=int(model.num_feat),
            video=video,
            workspace_bytes=workspace_bytes,
            timing_cache=cache.timing_cache_path(trt.__version__, gpu, capability),
            progress=progress,
            cancel=cancel,
        )
        path = cache.store(
            facts, data, label, extra={"variant": model.variant, "scale": int(model.scale), "precision": precision}
        )
    logger.info("ParagonSR2: TensorRT engine saved to %s", path)
    return CachedEngine(data, path, built=True)


def load_or_build(
    model: ParagonSR2,
    *,
    precision: str = "fp16",
    profile: Profile | None = None,
    video: bool = False,
    models_dir: str | Path,
    workspace_bytes: int = 4 << 30,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> TensorRTEngine:
    """``ensure_engine_bytes`` loaded as a TensorRTEngine on the current CUDA device."""

    def ensure(rebuild: bool = False) -> CachedEngine:
        return ensure_engine_bytes(
            model,
            precision=precision,
            profile=profile,
            video=video,
            models_dir=models_dir,
            workspace_bytes=workspace_bytes,
            progress=progress,
            cancel=cancel,
            rebuild=rebuild,
        )

    entry = ensure()
    try:
        return TensorRTEngine(entry.data, model=model, precision=precision, video=video)
    except RuntimeError:
        if entry.built:
            raise  # a fresh build that does not load: building again would not help
        # Same facts but unloadable (e.g. a driver update): rebuild once, replacing the file.
        logger.warning("ParagonSR2: cached engine %s does not load here; rebuilding", entry.path.name)
        entry = ensure(rebuild=True)
    return TensorRTEngine(entry.data, model=model, precision=precision, video=video)


def create_engine(
    model: ParagonSR2,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    video: bool = False,
    models_dir: str | Path | None = None,
    profile: Profile | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TensorRTEngine:
    """The registry's entry (registry.make_engine): the cached engine, built on first use, on
    the current CUDA device ("auto" / "cuda"); ``models_dir`` defaults to the CLI's models folder."""
    choice = str(device or "auto").strip().lower()
    if choice not in ("auto", "cuda") and not choice.startswith("cuda:"):
        raise ValueError(f"TensorRT runs on CUDA GPUs only, not on {device!r}")
    if choice.startswith("cuda:"):
        torch.cuda.set_device(torch.device(choice))
    return load_or_build(
        model,
        precision=graph_precision(precision, "cuda"),
        profile=profile,
        video=video,
        models_dir=default_models_dir() if models_dir is None else models_dir,
        progress=progress,
    )


__all__ = [
    "INSTALL_HINT",
    "CachedEngine",
    "TensorRTEngine",
    "TensorRTUnavailable",
    "create_engine",
    "ensure_engine_bytes",
    "load_or_build",
]

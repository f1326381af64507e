"""Run an exported ParagonSR2 graph with ONNX Runtime behind the ``Engine`` protocol.

This is how CI proves the exported graphs, and an option for machines without NVIDIA GPUs
(DirectML on Windows, CoreML on macOS, CPU everywhere). For attention graphs (photo, pro)
inputs are padded (replicate, bottom/right) to multiples of 16 as the graph requires and
outputs are cropped back; the tiled runner already feeds 16-aligned boxes (``tile_multiple``)
wherever the image is large enough. realtime/stream graphs run at any size, unpadded.

Video: ``decode(lr, feat)`` runs the video graph with ``prev_feat = feat`` and
``temporal_alpha = 1`` (exact: (1 - 1) * conv_in(lr) + 1 * feat = feat). ``encode(lr)`` uses a
torch copy of conv_in in the graph's precision when one is given (one 3x3 conv), else it runs
the video graph with ``temporal_alpha = 0`` and returns ``feature_map``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ..runtime.contract import ALLOCATOR_ARENA, EngineInfo, InfoAttributes, frozen_copy
from ..runtime.options import GRAPH_DTYPES, graph_precision
from .onnx_export import ALPHA, FEATURE, INPUT, OUTPUT, PREV_FEAT, export_onnx, pad_to_multiple

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2

logger = logging.getLogger("ParagonSR2")

# Preference order; ONNX Runtime itself falls back to CPU when a provider fails to start.
PREFERRED_PROVIDERS = (
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


def _require_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeError(
            "the ONNX Runtime engine needs onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu / onnxruntime-directml)"
        ) from exc
    return onnxruntime


def default_providers() -> list[str]:
    available = set(_require_ort().get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeEngine(InfoAttributes):
    """``OnnxRuntimeEngine(onnx, conv_in=None, providers=None)``; ``onnx`` = bytes or a path of a
    graph written by ``export_onnx`` (its metadata gives scale, variant, precision, video)."""

    def __init__(
        self,
        onnx: bytes | str | Path,
        *,
        conv_in: torch.nn.Module | None = None,
        providers: list[str] | None = None,
        threads: int = 0,
    ):
        ort = _require_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: CPU has no fp16 kernel for some folds
        if threads:
            options.intra_op_num_threads = int(threads)
        source = onnx if isinstance(onnx, (bytes, bytearray)) else str(onnx)
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=list(providers or default_providers())
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if "paragonsr2.scale" not in meta:
            raise ValueError("not a ParagonSR2 graph written by export_onnx (no paragonsr2.* metadata)")
        self.num_feat = int(meta["paragonsr2.num_feat"])
        # 16 for attention graphs; 1 = any size (realtime/stream); 0 = a fixed-size graph.
        self.align = int(meta["paragonsr2.align"])
        radius = meta.get("paragonsr2.receptive_radius", "")
        self.providers = self.session.get_providers()
        cuda = self.providers[0] == "CUDAExecutionProvider" and torch.cuda.is_available()
        self.info = EngineInfo(
            device=torch.device("cuda" if cuda else "cpu"),
            dtype=GRAPH_DTYPES[meta["paragonsr2.precision"]],
            variant=meta["paragonsr2.variant"],
            scale=int(meta["paragonsr2.scale"]),
            window=int(meta["paragonsr2.window"]),
            exact_halo=int(radius) if radius else None,  # exact: local graphs run unpadded at any size
            tile_multiple=self.align if self.align > 1 else None,
            allocator=ALLOCATOR_ARENA,
            supports_video=meta["paragonsr2.video"] == "1",
        )
        self.conv_in = conv_in
        self._zeros = None

    @classmethod
    def from_model(
        cls, model: ParagonSR2, precision: str = "fp32", video: bool = False, providers: list[str] | None = None
    ) -> OnnxRuntimeEngine:
        """Export ``model`` (a deep copy) and run it; conv_in is kept for ``encode``."""
        data = export_onnx(model, precision=precision, video=video)
        conv = frozen_copy(model.conv_in, dtype=GRAPH_DTYPES[precision])
        return cls(data, conv_in=conv, providers=providers)

    # -- running the graph ---------------------------------------------------------------------
    def _prepare(self, t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        t = t.detach().to("cpu", torch.float32)
        h, w = t.shape[-2:]
        return (pad_to_multiple(t, self.align) if self.align > 1 else t), h, w

    def _zero_feat(self, shape) -> np.ndarray:
        if self._zeros is None or self._zeros.shape != shape:
            self._zeros = np.zeros(shape, np.float32)
        return self._zeros

    def _run_video(self, x: torch.Tensor, feat: np.ndarray, alpha: float) -> list[np.ndarray]:
        outputs = self.session.run(
            [OUTPUT, FEATURE],
            {INPUT: np.ascontiguousarray(x.numpy()), PREV_FEAT: feat, ALPHA: np.asarray(alpha, np.float32)},
        )
        return cast("list[np.ndarray]", outputs)  # dense tensor outputs: arrays

    def _crop(self, out: np.ndarray, h: int, w: int, factor: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(out[:, :, : h * factor, : w * factor]))

    def __call__(self, lr: torch.Tensor, on_step=None) -> torch.Tensor:
        # on_step is not called: one graph run cannot stop midway (info.steps_per_call == 1)
        x, h, w = self._prepare(lr)
        if self.video:
            b, _, hp, wp = x.shape
            out, _ = self._run_video(x, self._zero_feat((b, self.num_feat, hp, wp)), 0.0)
        else:
            (out,) = cast("list[np.ndarray]", self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy())}))
        return self._crop(out, h, w, self.scale)

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        if self.conv_in is not None:
            with torch.inference_mode():
                return self.conv_in(lr.detach().to("cpu", self.dtype)).float()
        self._need_video("encode")
        x, h, w = self._prepare(lr)
        b, _, hp, wp = x.shape
        _, feat = self._run_video(x, self._zero_feat((b, self.num_feat, hp, wp)), 0.0)
        return self._crop(feat, h, w, 1)

    def decode(self, lr: torch.Tensor, feat: torch.Tensor, on_step=None) -> torch.Tensor:
        # on_step is not called, as in __call__
        self._need_video("decode")
        x, h, w = self._prepare(lr)
        f, _, _ = self._prepare(feat)
        out, _ = self._run_video(x, np.ascontiguousarray(f.numpy()), 1.0)
        return self._crop(out, h, w, self.scale)

    def _need_video(self, what: str) -> None:
        if not self.video:
            raise RuntimeError(f"{what} needs a video graph: export with video=True")

    def __repr__(self) -> str:
        kind = "video" if self.video else "image"
        return f"OnnxRuntimeEngine({self.variant} x{self.scale}, {self.precision}, {kind}, {self.providers[0]})"


def providers_for(device: str | torch.device) -> list:
    """ONNX Runtime providers for a device choice: "cpu" = the CPU provider only; "cuda" /
    "cuda:N" = CUDA (that GPU), falling back to the CPU; "auto" = the best one installed."""
    choice = str(device or "auto").strip().lower()
    if choice == "auto":
        return default_providers()
    target = torch.device(choice)
    if target.type == "cpu":
        return ["CPUExecutionProvider"]
    if target.type == "cuda":
        if "CUDAExecutionProvider" not in _require_ort().get_available_providers():
            raise RuntimeError("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu")
        return [("CUDAExecutionProvider", {"device_id": target.index or 0}), "CPUExecutionProvider"]
    raise ValueError(f"device {device!r} is not available with ONNX Runtime; use auto, cpu or cuda[:N]")


def create_engine(
    model: ParagonSR2, *, device: str | torch.device = "auto", precision: str = "auto", video: bool = False
) -> OnnxRuntimeEngine:
    """The registry's entry (registry.make_engine): ``model`` exported and run in a session."""
    providers = providers_for(device)
    first = providers[0] if isinstance(providers[0], str) else providers[0][0]
    graph = graph_precision(precision, "cuda" if first == "CUDAExecutionProvider" else "cpu")
    return OnnxRuntimeEngine.from_model(model, precision=graph, video=video, providers=providers)

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

import numpy as np
import torch

from ..runtime.contract import frozen_copy
from .onnx_export import ALPHA, FEATURE, INPUT, OUTPUT, PRECISIONS, PREV_FEAT, export_onnx, pad_to_multiple

logger = logging.getLogger("ParagonSR2")

# Preference order; ONNX Runtime itself falls back to CPU when a provider fails to start.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
                       "CPUExecutionProvider")


def _require_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeError("the ONNX Runtime engine needs onnxruntime: pip install onnxruntime "
                           "(or onnxruntime-gpu / onnxruntime-directml)") from exc
    return onnxruntime


def default_providers() -> list[str]:
    available = set(_require_ort().get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeEngine:
    """``OnnxRuntimeEngine(onnx, conv_in=None, providers=None)``; ``onnx`` = bytes or a path of a
    graph written by ``export_onnx`` (its metadata gives scale, variant, precision, video)."""

    min_tile = None
    max_tile = None

    def __init__(self, onnx: bytes | str | Path, *, conv_in: torch.nn.Module | None = None,
                 providers: list[str] | None = None, threads: int = 0):
        ort = _require_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: CPU has no fp16 kernel for some folds
        if threads:
            options.intra_op_num_threads = int(threads)
        source = onnx if isinstance(onnx, (bytes, bytearray)) else str(onnx)
        self.session = ort.InferenceSession(source, sess_options=options,
                                            providers=list(providers or default_providers()))
        meta = self.session.get_modelmeta().custom_metadata_map
        if "paragonsr2.scale" not in meta:
            raise ValueError("not a ParagonSR2 graph written by export_onnx (no paragonsr2.* metadata)")
        self.variant = meta["paragonsr2.variant"]
        self.scale = int(meta["paragonsr2.scale"])
        self.num_feat = int(meta["paragonsr2.num_feat"])
        self.window = int(meta["paragonsr2.window"])
        self.precision = meta["paragonsr2.precision"]
        self.dtype = PRECISIONS[self.precision]
        self.video = meta["paragonsr2.video"] == "1"
        # 16 for attention graphs; 1 = any size (realtime/stream); 0 = a fixed-size graph.
        self.align = int(meta["paragonsr2.align"])
        self.tile_multiple = self.align if self.align > 1 else None
        radius = meta.get("paragonsr2.receptive_radius", "")
        # Exact for local networks: their graphs run unpadded at any size.
        self.exact_halo = int(radius) if radius else None
        self.providers = self.session.get_providers()
        cuda = self.providers[0] == "CUDAExecutionProvider" and torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        self.conv_in = conv_in
        self._zeros = None

    @classmethod
    def from_model(cls, model: torch.nn.Module, precision: str = "fp32", video: bool = False,
                   providers: list[str] | None = None) -> "OnnxRuntimeEngine":
        """Export ``model`` (a deep copy) and run it; conv_in is kept for ``encode``."""
        data = export_onnx(model, precision=precision, video=video)
        conv = frozen_copy(model.conv_in, dtype=PRECISIONS[precision])
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

    def _run_video(self, x: torch.Tensor, feat: np.ndarray, alpha: float):
        return self.session.run([OUTPUT, FEATURE], {
            INPUT: np.ascontiguousarray(x.numpy()), PREV_FEAT: feat, ALPHA: np.asarray(alpha, np.float32)})

    def _crop(self, out: np.ndarray, h: int, w: int, factor: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(out[:, :, :h * factor, :w * factor]))

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        x, h, w = self._prepare(lr)
        if self.video:
            b, _, hp, wp = x.shape
            out, _ = self._run_video(x, self._zero_feat((b, self.num_feat, hp, wp)), 0.0)
        else:
            (out,) = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy())})
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

    def decode(self, lr: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
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

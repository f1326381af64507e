"""Export a loaded ParagonSR2 model to ONNX, for ONNX Runtime, TensorRT, chaiNNer, VapourSynth.

Graphs (float32 inputs and outputs; the network inside runs in the chosen precision):

* image: ``input`` (N, 3, H, W) -> ``output`` (N, 3, sH, sW);
* video: ``input``, ``prev_feat`` (N, C, H, W), ``temporal_alpha`` (a float32 scalar) ->
  ``output``, ``feature_map`` (N, C, H, W) with
  ``feature_map = (1 - temporal_alpha) * conv_in(input) + temporal_alpha * prev_feat``,
  so a first frame / scene cut runs with ``temporal_alpha = 0`` on the same graph.

N, H and W are dynamic; with window attention (photo, pro) H and W must be multiples of 16
(ALIGN): the runners and engines pad, so the window attention never needs its own padding and
the graph has no size-dependent padding. realtime/stream graphs take any H, W (no padding, so
their tiled results stay exact at every border). ``static_hw=(h, w)`` instead exports a graph
for exactly one LR size (any size; the
attention padding is then a fixed Pad), which is how the tests compare against the upstream
reference vectors (37 x 45).

The precision lives in the graph: fp16 graphs have fp16 weights and activations and
keep the spec's float32 internals (RMSNorm statistic, stream gate product) as explicit Casts,
which is what TensorRT's strongly typed networks need.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ...paragonsr2_arch import reference_mode
from ...paragonsr2_arch.window_pad import pad_bchw
from ..runtime.contract import ALIGN, frozen_copy
from ..runtime.options import GRAPH_DTYPES

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2

# TensorRT 10.0 parses opsets 9-20, TensorRT 11 more; 17 is what torch's TorchScript exporter
# emits best (LayerNorm-era ops, ReduceMean with an axes attribute).
OPSET = 17
INPUT, OUTPUT = "input", "output"
PREV_FEAT, ALPHA, FEATURE = "prev_feat", "temporal_alpha", "feature_map"
# GRAPH_DTYPES has no bf16: ONNX's Conv accepts bfloat16 only from opset 22, above what
# TensorRT 10.0 parses, so a bf16 graph would be invalid ONNX at opset <= 20.

# Every operator the exported graphs may contain. All are supported by the ONNX parser of
# TensorRT 10.0 and later (onnx-tensorrt docs/operators.md) and by ONNX Runtime's CPU provider.
# A new operator appearing here must be checked against that list first.
TENSORRT_OPS = frozenset(
    {
        "Add",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "DepthToSpace",
        "Div",
        "Erf",
        "Expand",
        "Gather",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "Identity",
        "MatMul",
        "Max",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "Pad",
        "Pow",
        "Range",
        "Reciprocal",
        "ReduceMean",
        "Reshape",
        "Resize",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Transpose",
        "Unsqueeze",
        "Where",
    }
)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad (B, C, h, w) at the bottom/right to multiples of ``multiple``."""
    return pad_bchw(x, multiple, mode="replicate")


class ExportError(RuntimeError):
    """The model could not be exported (missing package, unsupported operator, bad option)."""


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs the 'onnx' package: pip install onnx") from exc
    return onnx


@contextlib.contextmanager
def _typed_addcmul(opset: int):
    """Export ``addcmul(bias, t1, t2)`` (RMSNorm's affine step) as Add(bias, Mul(t1, t2)).

    The TorchScript exporter's own addcmul turns its implicit ``value=1`` into a float32
    constant, which promotes everything downstream of the first RMSNorm to float32 in fp16 and
    bf16 graphs (weights get Casts to float). The network never passes another value.
    """
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "v", "v", "f")
    def addcmul(g, bias, t1, t2, value):
        if value != 1.0:
            raise ExportError("addcmul with value != 1 is not supported by the ParagonSR2 exporter")
        return g.op("Add", bias, g.op("Mul", t1, t2))

    # Both are documented torch.onnx functions, left out of its __all__ only as deprecated.
    torch.onnx.register_custom_op_symbolic("aten::addcmul", addcmul, opset)  # pyright: ignore[reportPrivateImportUsage] (public, deprecated)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::addcmul", opset)  # pyright: ignore[reportPrivateImportUsage] (public, deprecated)


class ImageGraph(nn.Module):
    """input (float32) -> network in ``dtype`` -> output (float32)."""

    def __init__(self, net: ParagonSR2, dtype: torch.dtype):
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype)).float()


class VideoGraph(nn.Module):
    """(input, prev_feat, temporal_alpha) -> (output, feature_map); the blend is float32.

    temporal_alpha = 0 gives exactly the image graph (0 * prev_feat adds nothing); = 1 runs the
    network on prev_feat (engines use that as ``decode``).
    """

    def __init__(self, net: ParagonSR2, dtype: torch.dtype):
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: torch.Tensor, prev_feat: torch.Tensor, temporal_alpha: torch.Tensor):
        xt = x.to(self.dtype)
        f = self.net.encode(xt).float()
        feat = (1 - temporal_alpha) * f + temporal_alpha * prev_feat
        out = self.net.decode(xt, feat.to(self.dtype)).float()
        return out, feat


def export_copy(model: ParagonSR2, precision: str) -> ParagonSR2:
    """A deep copy in ``precision`` for tracing; the caller's model is never touched."""
    if precision == "bf16":
        raise ExportError(
            "bf16 ONNX graphs need opset 22 (Conv in bfloat16), newer than TensorRT 10.0 "
            "accepts; export fp16 (same speed on GPUs with bf16) or fp32"
        )
    if precision not in GRAPH_DTYPES:
        raise ExportError(f"unknown precision {precision!r}; use one of {', '.join(GRAPH_DTYPES)}")
    return cast("ParagonSR2", frozen_copy(model, dtype=GRAPH_DTYPES[precision]))


def metadata(model: ParagonSR2, precision: str, video: bool, static_hw) -> dict[str, str]:
    """Facts engines need to run a graph without the torch model (stored in the ONNX file)."""
    radius = getattr(model, "receptive_radius", None)
    return {
        "paragonsr2.variant": str(model.variant),
        "paragonsr2.scale": str(int(model.scale)),
        "paragonsr2.num_feat": str(int(model.num_feat)),
        "paragonsr2.window": str(int(getattr(model, "window_size", ALIGN))),
        "paragonsr2.receptive_radius": "" if radius is None else str(int(radius)),
        "paragonsr2.upsampler_alpha": repr(float(model.upsampler_alpha)),
        "paragonsr2.precision": precision,
        "paragonsr2.video": "1" if video else "0",
        # H, W granularity the graph needs: 16 with window attention; realtime/stream take any size.
        "paragonsr2.align": "0" if static_hw else str(ALIGN if int(getattr(model, "window_size", ALIGN)) > 1 else 1),
        "paragonsr2.static_hw": "" if not static_hw else f"{static_hw[0]}x{static_hw[1]}",
    }


def export_onnx(
    model: ParagonSR2,
    path: str | Path | None = None,
    *,
    precision: str = "fp32",
    video: bool = False,
    static_hw: tuple[int, int] | None = None,
    opset: int = OPSET,
) -> bytes:
    """Export ``model`` and return the ONNX bytes (also written atomically to ``path``).

    Dynamic batch always; dynamic H, W (multiples of 16) unless ``static_hw`` is given.
    Raises ExportError when the graph would contain an operator outside TENSORRT_OPS.
    """
    onnx = _require_onnx()
    if opset > 20:
        raise ExportError(f"opset {opset} is newer than TensorRT 10.0 accepts (<= 20)")
    net = export_copy(model, precision)
    dtype = GRAPH_DTYPES[precision]
    if static_hw:
        h, w = int(static_hw[0]), int(static_hw[1])
    else:
        h, w = 2 * ALIGN, 3 * ALIGN  # distinct sides so the tracer cannot confuse H and W
    # Batch 2 in the sample: a batch of 1 can be specialised away by tracers.
    x = torch.rand(2, 3, h, w)
    batch = {0: "batch"}
    lr_axes = dict(batch) if static_hw else {0: "batch", 2: "height", 3: "width"}
    hr_axes = dict(batch) if static_hw else {0: "batch", 2: "out_height", 3: "out_width"}
    if video:
        wrapper = VideoGraph(net, dtype)
        args = (x, torch.zeros(2, int(model.num_feat), h, w), torch.tensor(0.0))
        inputs, outputs = [INPUT, PREV_FEAT, ALPHA], [OUTPUT, FEATURE]
        axes = {INPUT: lr_axes, PREV_FEAT: lr_axes, OUTPUT: hr_axes, FEATURE: lr_axes}
    else:
        wrapper = ImageGraph(net, dtype)
        args = (x,)
        inputs, outputs = [INPUT], [OUTPUT]
        axes = {INPUT: lr_axes, OUTPUT: hr_axes}
    buffer = io.BytesIO()
    # The TorchScript exporter (dynamo=False): on these networks it is ~5x faster than the
    # dynamo exporter, writes one self-contained file, and takes dynamic_axes directly.
    # reference_mode: the network's straightforward forwards (no cached derived weights, no
    # fused kernels), so the exporter traces plain tensor ops.
    with reference_mode(), _typed_addcmul(opset), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            buffer,  # pyright: ignore[reportArgumentType] (f is typed for dynamo; TorchScript takes a BytesIO)
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "ComfyUI-ParagonSR2"
    proto.doc_string = (
        f"ParagonSR2 {model.variant} x{int(model.scale)} {precision} "
        f"{'video' if video else 'image'} graph; LR height/width multiples of {ALIGN}"
        if not static_hw
        else f"ParagonSR2 {model.variant} x{int(model.scale)} {precision} graph for {h}x{w} LR inputs"
    )
    for key, value in metadata(model, precision, video, static_hw).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    bad = disallowed_ops(proto)
    if bad:
        raise ExportError(f"the exported graph uses operators TensorRT may not support: {', '.join(bad)}")
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if path is not None:
        from ..runtime.files import atomic_write_bytes

        atomic_write_bytes(Path(path), data)
    return data


# model -> {(precision, video): (weights digest, ONNX bytes)}; an entry dies with its model.
_EXPORTS: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
_EXPORTS_LOCK = threading.Lock()


def weights_digest(model: nn.Module) -> str:
    """A digest of everything the exported bytes depend on besides precision and video: every
    parameter and buffer (name, dtype, shape, values) and the base sharpness.

    Hashing the values (tens of ms for the largest model, against seconds of export) also sees
    changes that data_ptr/_version keys miss (``p.data`` edits, a freed address reused).
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(repr(getattr(model, "upsampler_alpha", None)).encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy())
    return h.hexdigest()


def export_onnx_cached(model: ParagonSR2, *, precision: str = "fp32", video: bool = False) -> bytes:
    """``export_onnx(model, precision=..., video=...)``, reused while the model's weights and
    sharpness are unchanged (engine cache keys need the bytes on every Build node run)."""
    digest = weights_digest(model)
    with _EXPORTS_LOCK:
        entry = _EXPORTS.get(model, {}).get((precision, video))
    if entry is not None and entry[0] == digest:
        return entry[1]
    data = export_onnx(model, precision=precision, video=video)
    with _EXPORTS_LOCK:
        _EXPORTS.setdefault(model, {})[(precision, video)] = (digest, data)
    return data


def disallowed_ops(proto) -> list[str]:
    """Operators of the graph (and any subgraphs) that are not on the TensorRT allow-list."""
    found = set()

    def visit(graph):
        for node in graph.node:
            if node.op_type not in TENSORRT_OPS or node.domain not in ("", "ai.onnx"):
                found.add(f"{node.domain + '::' if node.domain else ''}{node.op_type}")
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(proto.graph)
    return sorted(found)


def read_metadata(proto) -> dict[str, str]:
    """The ``paragonsr2.*`` facts of an exported graph, without the prefix."""
    return {p.key.split(".", 1)[1]: p.value for p in proto.metadata_props if p.key.startswith("paragonsr2.")}

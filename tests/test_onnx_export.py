"""ONNX export: structure (checker, allow-list, opset, typed weights, float32 casts) and
numerics in ONNX Runtime against the upstream reference vectors.

Reference inputs are 37 x 45, not multiples of 16. The shipped graphs assume 16-aligned H, W
(engines pad), so a padded run cannot reproduce the reference at the borders. The parity test
therefore exports each case with ``static_hw=(37, 45)``: the same exporter and the same
network code, with the window attention's padding fixed at export time, compared with the
vectors at 1e-4. The dynamic (shipped) graphs are then proven equal to the torch model at
aligned sizes (tests below and test_onnxruntime_engine.py).

fp16 tolerance: the same limits as the torch fp16 test (tests/test_arch_precision.py), max
abs 8e-3 and mean abs 8e-4 against the float32 reference: 8 fp16 steps at 1.0, compounded
through up to 36 residual blocks. ONNX Runtime's CPU provider runs these fp16 graphs (it
upcasts internally where it has no fp16 kernel), so they are checked numerically too.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from packlib import load_reference, max_abs, natural_image, reference_case_for

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from paragonsr2_pack.engines.backends import onnx_export as ox  # noqa: E402 (after the skips above)

FP16_MAX_ABS, FP16_MEAN_ABS = 8e-3, 8e-4


def _session(data: bytes):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _run_video(sess, x, prev, alpha):
    return sess.run(
        None, {"input": x.numpy(), "prev_feat": prev.numpy(), "temporal_alpha": np.asarray(alpha, np.float32)}
    )


def _small(arch, variant, scale=2):
    """Small but complete networks (every block type, attention on); random weights with the
    LayerScales raised so every block changes the output."""
    torch.manual_seed(0)  # before building: the initial weights are random
    model = arch.build_model(variant, scale, num_groups=1, num_blocks=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.2)
    return model


# -- parity with the reference vectors (every case; both graphs) --------------------------------


@pytest.mark.slow_cases("photo", "pro")  # 10-34 s of CPU each (export + ORT session of the big graphs)
def test_reference_case_in_onnxruntime(reference_case):
    model, io = load_reference(reference_case)
    h, w = io["x0"].shape[-2:]
    video = _session(ox.export_onnx(model, video=True, static_hw=(h, w)))
    # The image graph is the video graph minus the blend (and proven identical to it at
    # temporal_alpha = 0 below); pro exports are the slowest, so pro's image graph is checked
    # at one scale only.
    image = None
    if reference_case["variant"] != "pro" or reference_case["scale"] == 2:
        image = _session(ox.export_onnx(model, video=False, static_hw=(h, w)))
    c = model.num_feat
    zeros1, zeros2 = torch.zeros(1, c, h, w), torch.zeros(2, c, h, w)
    out0, feat0 = _run_video(video, io["x0"], zeros1, 0.0)
    outb, _ = _run_video(video, io["xb"], zeros2, 0.0)
    out1, feat1 = _run_video(video, io["x1"], torch.from_numpy(feat0), reference_case["temporal_alpha"])
    t = torch.from_numpy
    errors = {}
    if image is not None:
        (y_single,) = image.run(None, {"input": io["x0"].numpy()})
        (y_batch,) = image.run(None, {"input": io["xb"].numpy()})
        errors.update(
            {
                "image.y_single": max_abs(t(y_single), io["y_single"]),
                "image.y_batch": max_abs(t(y_batch), io["y_batch"]),
            }
        )
    errors.update(
        {
            "video.y_single": max_abs(t(out0), io["y_single"]),
            "video.y_batch": max_abs(t(outb), io["y_batch"]),
            "out0": max_abs(t(out0), io["out0"]),
            "feat0": max_abs(t(feat0), io["feat0"]),
            "out1": max_abs(t(out1), io["out1"]),
            "feat1": max_abs(t(feat1), io["feat1"]),
        }
    )
    print(reference_case["case"], {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= 1e-4, errors


# -- structure ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graphs(arch):
    """Exported once per module: dynamic image/video graphs of small photo and stream models in
    fp32/fp16, and a pro video graph in fp16."""
    photo, stream, pro = _small(arch, "photo"), _small(arch, "stream"), _small(arch, "pro", 4)
    out = {"models": {"photo": photo, "stream": stream, "pro": pro}}
    for key, model, precision, video in [
        ("photo_fp32", photo, "fp32", False),
        ("photo_fp16", photo, "fp16", False),
        ("photo_video_fp32", photo, "fp32", True),
        ("stream_fp16", stream, "fp16", False),
        ("pro_fp16", pro, "fp16", True),
    ]:
        out[key] = ox.export_onnx(model, precision=precision, video=video)
    return out


GRAPH_KEYS = ["photo_fp32", "photo_fp16", "photo_video_fp32", "stream_fp16", "pro_fp16"]


@pytest.mark.parametrize("key", GRAPH_KEYS)
def test_graph_is_valid_single_file_and_on_allow_list(graphs, key):
    proto = onnx.load_from_string(graphs[key])
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 20
    assert all(not init.external_data for init in proto.graph.initializer)  # weights inside
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= ox.TENSORRT_OPS, sorted(ops - ox.TENSORRT_OPS)
    assert ox.disallowed_ops(proto) == []
    assert "If" not in ops and "Loop" not in ops  # no data-dependent branches


def test_allow_list_check_catches_foreign_ops(graphs):
    proto = onnx.load_from_string(graphs["photo_fp32"])
    proto.graph.node[0].op_type = "NonMaxSuppression"
    assert ox.disallowed_ops(proto) == ["NonMaxSuppression"]


def _initializer_types(proto) -> set[str]:
    names = {
        onnx.TensorProto.DataType.Name(i.data_type)
        for i in proto.graph.initializer
        if len(i.dims) >= 1 and np.prod(i.dims) > 1 and i.data_type in (1, 10, 16)
    }
    return names


@pytest.mark.parametrize(
    "key,dtype",
    [("photo_fp16", "FLOAT16"), ("stream_fp16", "FLOAT16"), ("pro_fp16", "FLOAT16"), ("photo_fp32", "FLOAT")],
)
def test_weights_are_typed(graphs, key, dtype):
    proto = onnx.load_from_string(graphs[key])
    assert _initializer_types(proto) == {dtype}
    # No weight is cast to another float type at run time (which would mean the network
    # silently runs in float32).
    inits = {i.name for i in proto.graph.initializer}
    assert not [n.name for n in proto.graph.node if n.op_type == "Cast" and n.input[0] in inits]


def _casts(proto, to: int, scope: str) -> int:
    return sum(
        1
        for n in proto.graph.node
        if n.op_type == "Cast" and scope in n.name and next(a.i for a in n.attribute if a.name == "to") == to
    )


def test_float32_internals_are_explicit_casts(graphs):
    photo = onnx.load_from_string(graphs["photo_fp16"])
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    # Every RMSNorm (norm and attn_norm of both blocks) casts x up for its statistic, and the
    # normalised result back down.
    for block in (0, 1):
        for norm in ("norm", "attn_norm"):
            scope = f"blocks.{block}/{norm}/"
            assert _casts(photo, f32, scope) >= 1, scope
            assert _casts(photo, f16, scope) >= 1, scope
        # the statistic itself (ReduceMean) runs in float32: its input comes from a Cast-to-float chain
    stream = onnx.load_from_string(graphs["stream_fp16"])
    for block in (0, 1):  # the gate product a*b: both halves cast to float32, result cast back
        scope = f"blocks.{block}/"
        assert _casts(stream, f32, scope) >= 2 and _casts(stream, f16, scope) >= 1


def test_rmsnorm_statistic_runs_in_float32(graphs):
    proto = onnx.load_from_string(graphs["photo_fp16"])
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    means = [n for n in proto.graph.node if n.op_type == "ReduceMean" and "norm" in n.name]
    assert means
    assert all(types.get(n.output[0]) == onnx.TensorProto.FLOAT for n in means)


def test_channel_attention_is_reduce_mean(graphs):
    proto = onnx.load_from_string(graphs["pro_fp16"])
    pools = [
        n for n in proto.graph.node if "channel_attn" in n.name and n.op_type in ("ReduceMean", "GlobalAveragePool")
    ]
    assert pools, "pro's channel attention must pool with ReduceMean/GlobalAveragePool"


def test_metadata_and_io(graphs):
    proto = onnx.load_from_string(graphs["photo_video_fp32"])
    meta = ox.read_metadata(proto)
    assert meta["variant"] == "photo" and meta["scale"] == "2" and meta["video"] == "1"
    assert meta["align"] == "16"  # attention: H, W multiples of 16
    assert ox.read_metadata(onnx.load_from_string(graphs["stream_fp16"]))["align"] == "1"  # any size
    assert [i.name for i in proto.graph.input] == ["input", "prev_feat", "temporal_alpha"]
    assert [o.name for o in proto.graph.output] == ["output", "feature_map"]
    alpha = proto.graph.input[2].type.tensor_type
    assert alpha.elem_type == onnx.TensorProto.FLOAT and len(alpha.shape.dim) == 0  # a scalar


# -- numerics of the dynamic graphs --------------------------------------------------------------


def test_dynamic_shapes_three_sizes_two_batches(graphs):
    """One file, three sizes, two batch sizes, each equal to the torch model (fp32)."""
    model = graphs["models"]["photo"]
    sess = _session(graphs["photo_fp32"])
    for b, h, w in [(1, 32, 48), (2, 48, 32), (1, 64, 80), (2, 16, 16)]:
        x = natural_image(h, w, seed=h + w, batch=b)
        (y,) = sess.run(None, {"input": x.numpy()})
        with torch.inference_mode():
            ref = model(x)
        assert y.shape == (b, 3, 2 * h, 2 * w)
        assert max_abs(torch.from_numpy(y), ref) <= 1e-4


def test_video_graph_alpha_zero_equals_image_graph(graphs):
    image, video = _session(graphs["photo_fp32"]), _session(graphs["photo_video_fp32"])
    model = graphs["models"]["photo"]
    x = natural_image(32, 48, seed=3, batch=2)
    (y_img,) = image.run(None, {"input": x.numpy()})
    junk = torch.randn(2, model.num_feat, 32, 48) * 5  # ignored at alpha = 0
    y_vid, feat = _run_video(video, x, junk, 0.0)
    assert np.array_equal(y_img, y_vid)
    with torch.inference_mode():
        assert max_abs(torch.from_numpy(feat), model.encode(x)) <= 1e-5


def test_video_graph_blend_and_decode(graphs):
    model = graphs["models"]["photo"]
    video = _session(graphs["photo_video_fp32"])
    x0, x1 = natural_image(32, 48, seed=4), natural_image(32, 48, seed=5)
    _, feat0 = _run_video(video, x0, torch.zeros(1, model.num_feat, 32, 48), 0.0)
    out1, feat1 = _run_video(video, x1, torch.from_numpy(feat0), 0.2)
    out_decode, feat_decode = _run_video(video, x1, torch.from_numpy(feat1), 1.0)
    with torch.inference_mode():
        ref1, ref_feat1 = model(x1, feature_tap=True, prev_feat=model.encode(x0), alpha=0.2)
    assert max_abs(torch.from_numpy(out1), ref1) <= 1e-4
    assert max_abs(torch.from_numpy(feat1), ref_feat1) <= 1e-5
    assert np.array_equal(feat_decode, feat1)  # alpha = 1 passes prev_feat through exactly
    assert max_abs(torch.from_numpy(out_decode), ref1) <= 1e-4


@pytest.mark.parametrize("key,variant", [("photo_fp16", "photo"), ("stream_fp16", "stream")])
def test_fp16_graph_close_to_fp32(graphs, key, variant):
    model = graphs["models"][variant]
    x = natural_image(48, 64, seed=7, batch=2)
    (y,) = _session(graphs[key]).run(None, {"input": x.numpy()})
    with torch.inference_mode():
        ref = model(x)
    err = (torch.from_numpy(y) - ref).abs()
    print(key, f"max {err.max():.2e} mean {err.mean():.2e}")
    assert torch.isfinite(torch.from_numpy(y)).all()
    assert err.max() <= FP16_MAX_ABS and err.mean() <= FP16_MEAN_ABS


def test_reference_fp16_graph_close_to_vectors(arch):
    """fp16 on real (reference) weights, at the reference size: within the fp16 limits."""
    case = reference_case_for("photo")
    model, io = load_reference(case)
    h, w = io["x0"].shape[-2:]
    (y,) = _session(ox.export_onnx(model, precision="fp16", static_hw=(h, w))).run(None, {"input": io["xb"].numpy()})
    err = (torch.from_numpy(y) - io["y_batch"]).abs()
    print(case["case"], f"fp16 max {err.max():.2e} mean {err.mean():.2e}")
    assert err.max() <= FP16_MAX_ABS and err.mean() <= FP16_MEAN_ABS


def test_export_writes_file_and_leaves_model_untouched(arch, tmp_path):
    model = _small(arch, "realtime")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "m.onnx"
    data = ox.export_onnx(model, path, precision="fp16")
    assert path.read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"]  # no temp or .data files
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_bad_precision_is_rejected(arch):
    model = _small(arch, "realtime")
    with pytest.raises(ox.ExportError, match="precision"):
        ox.export_onnx(model, precision="int8")
    with pytest.raises(ox.ExportError, match="opset 22"):  # Conv has no bf16 before opset 22
        ox.export_onnx(model, precision="bf16")


def test_cached_export_reuses_bytes_until_weights_or_sharpness_change(arch, monkeypatch):
    """What the Build TensorRT Engine node runs on every queue: one export per unchanged model."""
    model = _small(arch, "realtime")
    exports = []
    real_export = ox.export_onnx

    def counting_export(*args, **kwargs):
        exports.append(kwargs.get("precision"))
        return real_export(*args, **kwargs)

    monkeypatch.setattr(ox, "export_onnx", counting_export)
    first = ox.export_onnx_cached(model, precision="fp32")
    again = ox.export_onnx_cached(model, precision="fp32")
    assert again is first and exports == ["fp32"]
    assert first == real_export(model, precision="fp32")  # the cached bytes are the real export
    fp16 = ox.export_onnx_cached(model, precision="fp16")
    assert fp16 != first and exports == ["fp32", "fp16"]
    assert ox.export_onnx_cached(model, precision="fp32") is first  # one entry per precision

    original = model.conv_in.weight[0, 0, 0, 0].item()
    with torch.no_grad():  # new weights loaded in place (same tensors, same addresses)
        model.conv_in.weight[0, 0, 0, 0] += 1e-3
    changed = ox.export_onnx_cached(model, precision="fp32")
    assert changed != first and len(exports) == 3
    model.conv_in.weight.data[0, 0, 0, 0] = original  # through .data: no version counter bump
    assert ox.export_onnx_cached(model, precision="fp32") == first and len(exports) == 4

    model.upsampler_alpha = model.upsampler_alpha + 0.5  # sharpness is not a tensor
    sharper = ox.export_onnx_cached(model, precision="fp32")
    assert sharper != first and len(exports) == 5
    assert ox.export_onnx_cached(model, precision="fp32") is sharper and len(exports) == 5

    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cache does not keep models (or their graphs) alive

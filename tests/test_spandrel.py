"""ParagonSR2 registered with spandrel: core "Load Upscale Model" loads our files, and no file of
another architecture is claimed. Needs spandrel (which imports torchvision): run these under an
environment with both, e.g. torch==2.14.1 + torchvision==0.29.1 (see docs/nodes.md)."""

import pytest
import torch
import torch.nn.functional as F

from packlib import load_reference, max_abs, natural_image, reference_case_for, reference_cases, run_node
from paragonsr2_pack.engines.backends.torch_engine import TorchEngine
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.paragonsr2_arch import spandrel_arch as sparch

try:
    from spandrel import MAIN_REGISTRY, ImageModelDescriptor, ModelLoader
except Exception as exc:  # ImportError, or torchvision failing to import beside this torch
    pytest.skip(
        f"spandrel is not importable here ({type(exc).__name__}: {str(exc)[:120]}); "
        "install torch==2.14.1 torchvision==0.29.1 spandrel to run these",
        allow_module_level=True,
    )

ONE_PER_VARIANT = list({c["variant"]: c for c in reversed(reference_cases())}.values())
UPSTREAM_WINDOW = {"photo": 16, "pro": 16}  # upstream pads these; realtime / stream run as given


@torch.no_grad()
def upstream_inference(model, x):
    """Upstream's scripts/run_inference.py, written out independently of the pack: reflect-pad
    bottom/right to the window, run, crop, clamp."""
    window = UPSTREAM_WINDOW.get(model.variant, 1)
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, (-w) % window, 0, (-h) % window), mode="reflect") if window > 1 else x
    return model(padded)[..., : h * model.scale, : w * model.scale].clamp(0, 1)


def core_descriptor(arch, model, tmp_path):
    """What core "Load Upscale Model" builds from a file: spandrel's loader on its tensors."""
    from safetensors.torch import load_file

    path = arch.save_model(model, tmp_path / "m.safetensors")
    state = load_file(str(path))  # what ComfyUI's load_torch_file hands to spandrel
    return ModelLoader().load_from_state_dict(state).eval(), state


def _other_architectures():
    """Small real networks of other architectures, built with spandrel's own classes."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.PLKSR import RealPLKSR
    from spandrel.architectures.SAFMN import SAFMN
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "ESRGAN": ESRGAN(num_filters=16, num_blocks=2, scale=2),
        "Compact": Compact(num_feat=16, num_conv=4, upscale=2),
        "SPAN": SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2),
        "SwinIR": SwinIR(
            embed_dim=12, depths=[2], num_heads=[2], window_size=8, upscale=2, upsampler="pixelshuffledirect"
        ),
        "OmniSR": OmniSR(num_feat=16, up_scale=2),
        "PLKSR": RealPLKSR(dim=16, n_blocks=2, upscaling_factor=2),  # spandrel id of both PLKSR kinds
        "SAFMN": SAFMN(dim=16, n_blocks=2, upscaling_factor=2),
    }


def test_registered_once_on_pack_import():
    assert "ParagonSR2" in MAIN_REGISTRY  # the pack import (conftest) registered it
    count = len(MAIN_REGISTRY)
    assert sparch.register() is True
    assert len(MAIN_REGISTRY) == count
    first = MAIN_REGISTRY.architectures("detection")[0]
    assert first.architecture.id == "ParagonSR2"


@pytest.mark.parametrize("case", ONE_PER_VARIANT, ids=lambda c: c["case"])
def test_core_loader_path_loads_and_runs_paragonsr2(case, arch, tmp_path):
    model, _ = load_reference(case)
    descriptor, state = core_descriptor(arch, model, tmp_path)
    assert isinstance(descriptor, ImageModelDescriptor)
    assert descriptor.architecture.id == "ParagonSR2"
    assert descriptor.scale == case["scale"] and descriptor.purpose == "SR"
    assert (descriptor.input_channels, descriptor.output_channels) == (3, 3)
    assert case["variant"] in descriptor.tags
    # Core loaders cannot see file metadata: the sharpness is the published default, 0.0.
    expected = arch.load_model(state, upsampler_alpha=0.0)
    x = natural_image(21, 26, seed=3)
    assert max_abs(descriptor(x), upstream_inference(expected, x)) <= 1e-6


@pytest.mark.parametrize("variant", ["photo", "pro"])
def test_core_descriptor_gives_the_upscale_nodes_borders_on_odd_sizes(variant, arch, tmp_path):
    """Core Upscale Image (using Model) calls the descriptor on each core tile; on an odd-size
    image (one core tile) it must equal the pack's own runner, which pads as upstream does."""
    model, _ = load_reference(reference_case_for(variant))
    descriptor, state = core_descriptor(arch, model, tmp_path)
    ours = arch.load_model(state, upsampler_alpha=0.0)  # core loading sees no metadata: 0.0
    x = natural_image(37, 53, seed=11)
    out = descriptor(x)
    assert out.shape == (1, 3, 37 * 2, 53 * 2)
    engine_out = tiling.upscale_image(TorchEngine(ours, "cpu", "fp32"), x.permute(0, 2, 3, 1))
    assert max_abs(out.permute(0, 2, 3, 1), engine_out) <= 1e-4  # float rounding: optimised path
    assert max_abs(out, upstream_inference(ours, x)) <= 1e-5
    # The padding matters at these borders (an unpadded network is far off there).
    with torch.no_grad():
        unpadded = ours(x).clamp(0, 1)
    assert max_abs(out[..., -2:, :], unpadded[..., -2:, :]) > 0.02
    # A side reflection cannot pad to the window fails with the runner's one-line reason.
    with pytest.raises(ValueError, match="at least 9 px"):
        descriptor(natural_image(8, 40, seed=1))


@pytest.mark.parametrize("variant", ["realtime", "stream"])
def test_core_descriptor_runs_realtime_and_stream_unpadded_bit_for_bit(variant, arch, tmp_path):
    model, _ = load_reference(reference_case_for(variant))
    descriptor, state = core_descriptor(arch, model, tmp_path)
    ours = arch.load_model(state, upsampler_alpha=0.0)
    x = natural_image(37, 53, seed=11)
    with torch.no_grad():
        assert torch.equal(descriptor(x), ours(x).clamp(0, 1))


def test_wrapped_and_legacy_state_dicts_are_detected(arch):
    model, _ = load_reference(reference_cases()[0])
    state = model.state_dict()
    wrapped = {"params_ema": {"module." + k: v for k, v in state.items()}}
    assert ModelLoader().load_from_state_dict(wrapped).architecture.id == "ParagonSR2"
    legacy = {("global_detail_gain" if k == "detail_gain" else k): v for k, v in state.items()}
    assert "detail_gain" not in legacy
    assert sparch.detect(legacy)


def test_other_architectures_are_not_claimed_and_still_load_as_themselves():
    for expected_id, net in _other_architectures().items():
        state = {k: v.clone() for k, v in net.state_dict().items()}
        assert not sparch.detect(state), f"ParagonSR2 claimed a {expected_id} state dict"
        loaded = ModelLoader().load_from_state_dict(state)
        assert loaded.architecture.id == expected_id, (expected_id, loaded.architecture.id)


def test_detect_rejects_partial_and_foreign_dicts(arch):
    model, _ = load_reference(reference_cases()[0])
    state = model.state_dict()
    assert sparch.detect(state)
    assert not sparch.detect({k: v for k, v in state.items() if not k.startswith("base.")})
    assert not sparch.detect({k: v for k, v in state.items() if not k.startswith("body.")})
    assert not sparch.detect({"conv_in.weight": torch.zeros(1), "detail_gain": 3})


def test_loader_node_outputs_a_working_upscale_model(arch, tmp_path, monkeypatch):
    from paragonsr2_pack.nodes import image_nodes

    model, _ = load_reference(reference_cases()[0])
    (tmp_path / "paragonsr2").mkdir()
    arch.save_model(model, tmp_path / "paragonsr2" / "rt.safetensors")
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path))
    handle, descriptor = run_node(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    assert isinstance(descriptor, ImageModelDescriptor)
    assert descriptor.model is not handle.model  # core nodes move/cast it; the master stays put
    x = natural_image(19, 23, seed=5)
    assert max_abs(descriptor(x), handle.model(x).clamp(0, 1)) <= 1e-6
    descriptor.model.half()
    assert next(handle.model.parameters()).dtype == torch.float32

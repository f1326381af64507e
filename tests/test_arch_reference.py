"""Numerical parity with the upstream implementation's reference vectors (float32, CPU)."""

import json

import pytest
import torch

from packlib import load_reference, max_abs, reference_dir

TOL = 1e-4


def test_reference_case(reference_case):
    model, io = load_reference(reference_case)
    assert model.variant == reference_case["variant"]
    assert model.scale == reference_case["scale"]
    assert model.upsampler_alpha == pytest.approx(reference_case["upsampler_alpha"])
    assert sum(p.numel() for p in model.parameters()) == reference_case["num_parameters"]
    with torch.inference_mode():
        errors = {
            "y_single": max_abs(model(io["x0"]), io["y_single"]),
            "y_batch": max_abs(model(io["xb"]), io["y_batch"]),
        }
        out0, feat0 = model(io["x0"], feature_tap=True)
        out1, feat1 = model(io["x1"], feature_tap=True, prev_feat=feat0, alpha=reference_case["temporal_alpha"])
    errors.update(
        out0=max_abs(out0, io["out0"]),
        feat0=max_abs(feat0, io["feat0"]),
        out1=max_abs(out1, io["out1"]),
        feat1=max_abs(feat1, io["feat1"]),
    )
    print(reference_case["case"], json.dumps({k: f"{v:.2e}" for k, v in errors.items()}))
    assert max(errors.values()) <= TOL, errors


SPEC = json.loads((reference_dir() / "state_dict_spec.json").read_text())


@pytest.mark.parametrize("variant", ["realtime", "stream", "photo", "pro"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_build_model_matches_state_dict_spec(arch, variant, scale):
    expected = SPEC[f"{variant}_x{scale}"]
    model = arch.build_model(variant, scale)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == expected["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == expected["num_parameters"]


@pytest.mark.parametrize("variant", ["realtime", "stream", "photo", "pro"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_detection_recovers_factory_models(arch, variant, scale):
    model = arch.build_model(variant, scale)
    loaded = arch.load_model(model.state_dict())
    assert (loaded.variant, loaded.scale, loaded.num_feat) == (variant, scale, model.num_feat)
    assert loaded.config.num_groups == model.config.num_groups
    assert loaded.config.num_blocks == model.config.num_blocks
    assert loaded.config.attention == model.config.attention

"""The bundled demo model: loads through load_model, says what it is, and beats bicubic."""

import json
import sys

import pytest
import torch

from packlib import PACK_ROOT, psnr

sys.path.insert(0, str(PACK_ROOT / "training"))
import demo_data

DEMO = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"


@pytest.fixture(scope="module")
def demo(arch):
    return arch.load_model(DEMO)


def test_file_is_small_and_loads_as_realtime_x2(demo):
    assert DEMO.stat().st_size < 200_000
    assert (demo.variant, demo.scale, demo.num_feat) == ("realtime", 2, 16)
    assert not demo.training


def test_metadata_names_it_a_demo_and_records_data_and_licences(demo):
    meta = demo.metadata
    assert meta["variant"] == "realtime" and meta["scale"] == "2"
    assert float(meta["upsampler_alpha"]) == demo.upsampler_alpha == 0.0
    assert meta["demo"] == "true" and "demo model" in meta["name"]
    assert "demo" in DEMO.name
    training = json.loads(meta["training_data"])
    assert set(training) == {name for _, name, _ in demo_data.TRAIN_IMAGES}
    assert all(licence for licence in training.values())
    held_out = set(json.loads(meta["heldout_data"]))
    assert held_out == {name for _, name, _ in demo_data.HELDOUT_IMAGES}
    assert not held_out & set(training)
    assert json.loads(meta["training_args"])["seed"] == 0


def _y(x):
    return (16 + 65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]) / 255


def test_beats_bicubic_on_a_held_out_crop(demo):
    """A quick version of benchmarks/quality.py on one held-out image crop."""
    hr = demo_data.load_rgb(PACK_ROOT / "assets" / "chelsea.png")[:, 40:200, 100:300][None]
    lr = demo_data.bicubic_downscale(hr, 2)
    with torch.inference_mode():
        sr = demo(lr).clamp(0, 1)
    bicubic = demo_data.bicubic_upscale(lr, 2)
    inner = (slice(None), slice(2, -2), slice(2, -2))
    gain = psnr(_y(sr)[inner], _y(hr)[inner]) - psnr(_y(bicubic)[inner], _y(hr)[inner])
    assert gain > 0.5, gain

"""Checkpoint formats, detection of non-default shapes, metadata, and every kind of bad file."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from packlib import max_abs, natural_image, reference_cases, reference_dir


@pytest.fixture(scope="module")
def lr_image():
    return natural_image(23, 29, seed=3)


def _outputs_equal(a, b, x):
    with torch.inference_mode():
        return max_abs(a(x), b(x))


# --- round trips ------------------------------------------------------------------------------


def _to_legacy_names(state):
    """Inverse of the spec's legacy table, written independently of the loader."""
    out = {}
    for k, v in state.items():
        if k.startswith("base.blur."):
            k = "base_upsampler.resample_conv." + k[len("base.blur.") :]
        elif k.startswith("base.sharp."):
            k = "base_upsampler.sharpen." + k[len("base.sharp.") :]
        if k.startswith("base_upsampler."):
            k = k.replace(".h.", ".conv_h.").replace(".v.", ".conv_v.")
        if k.startswith("body."):
            k = k.replace(".conv1.", ".net.0.").replace(".dw.", ".net.2.").replace(".conv2.", ".net.4.")
        k = {"detail_gain": "global_detail_gain"}.get(k, k)
        if k.startswith("up.0."):
            k = "detail_upsampler.up_conv." + k[len("up.0.") :]
        if k.startswith("conv_mid."):
            k = "conv_fuse." + k[len("conv_mid.") :]
        out[k] = v
    return out


def _randomised(arch, variant, scale, **overrides):
    torch.manual_seed(0)
    model = arch.build_model(variant, scale, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "base." not in name:
                p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("variant,scale", [("realtime", 2), ("stream", 3), ("photo", 4), ("pro", 2)])
@pytest.mark.parametrize(
    "fmt", ["safetensors", "pth_params_ema", "pth_module_prefix", "legacy_names", "ckpt_state_dict"]
)
def test_round_trip(arch, tmp_path, lr_image, variant, scale, fmt):
    model = _randomised(arch, variant, scale)
    model.upsampler_alpha = 0.25
    state = model.state_dict()
    if fmt == "safetensors":
        path = arch.save_model(model, tmp_path / "m.safetensors")
    elif fmt == "pth_params_ema":
        path = tmp_path / "m.pth"
        torch.save({"params_ema": state, "params": {k: torch.zeros_like(v) for k, v in state.items()}}, path)
    elif fmt == "pth_module_prefix":
        path = tmp_path / "m.pt"
        torch.save({"params": {"module." + k: v for k, v in state.items()}}, path)
    elif fmt == "legacy_names":
        path = tmp_path / "m.bin"
        legacy = _to_legacy_names(state)
        assert set(legacy) != set(state)
        torch.save(legacy, path)
    else:
        path = tmp_path / "m.ckpt"
        torch.save({"state_dict": state}, path)
    loaded = arch.load_model(path, upsampler_alpha=0.25)
    assert (loaded.variant, loaded.scale) == (variant, scale)
    assert _outputs_equal(model, loaded, lr_image) == 0.0


def test_upsampler_alpha_from_metadata(arch, tmp_path, lr_image):
    model = _randomised(arch, "realtime", 2)
    model.upsampler_alpha = 0.3
    path = arch.save_model(model, tmp_path / "m.safetensors")
    assert arch.load_model(path).upsampler_alpha == pytest.approx(0.3)
    assert arch.load_model(path, upsampler_alpha=0.0).upsampler_alpha == 0.0
    # Without metadata (a plain published file) the default is 0.0, what the models were trained with.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    plain = arch.load_model(tmp_path / "plain.safetensors")
    assert plain.upsampler_alpha == 0.0
    # And the knob changes only the base path: the output moves.
    assert _outputs_equal(plain, arch.load_model(path), lr_image) > 1e-4
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["variant"] == "realtime" and meta["scale"] == "2" and float(meta["upsampler_alpha"]) == 0.3


@pytest.mark.parametrize(
    "variant,overrides",
    [
        ("photo", dict(num_feat=48, num_groups=3)),
        ("pro", dict(num_feat=32, num_groups=2, num_blocks=3, attention=False)),
        ("stream", dict(num_feat=24, num_blocks=5)),
        ("realtime", dict(num_feat=8, num_blocks=2)),
        ("photo", dict(attention=False)),
    ],
)
def test_non_default_shapes_are_detected(arch, tmp_path, lr_image, variant, overrides):
    model = _randomised(arch, variant, 2, **overrides)
    path = arch.save_model(model, tmp_path / "custom.safetensors")
    loaded = arch.load_model(path)
    for key, value in overrides.items():
        assert getattr(loaded.config, key) == value
    assert _outputs_equal(model, loaded, lr_image) == 0.0


@pytest.mark.parametrize("scale", [5, 6])
def test_other_consistent_scales_load(arch, tmp_path, lr_image, scale):
    model = _randomised(arch, "realtime", scale)
    loaded = arch.load_model(arch.save_model(model, tmp_path / "m.safetensors"))
    assert loaded.scale == scale
    with torch.inference_mode():
        assert loaded(lr_image).shape[-2:] == (23 * scale, 29 * scale)


def test_fp16_checkpoint_loads_as_float32(arch, tmp_path):
    model = _randomised(arch, "stream", 2)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "h.safetensors"))
    loaded = arch.load_model(tmp_path / "h.safetensors")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert not loaded.training


# --- bad files --------------------------------------------------------------------------------


class _Sentinel:
    """Unpickling this touches a file: proof of code execution if the file appears."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _esrgan_state():
    s = {"conv_first.weight": torch.randn(64, 3, 3, 3), "conv_first.bias": torch.randn(64)}
    for b in range(2):
        for r in (1, 2, 3):
            for c in range(1, 6):
                s[f"body.{b}.rdb{r}.conv{c}.weight"] = torch.randn(32, 64, 3, 3)
                s[f"body.{b}.rdb{r}.conv{c}.bias"] = torch.randn(32)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        s[f"{name}.weight"] = torch.randn(64, 64, 3, 3)
    s["conv_last.weight"] = torch.randn(3, 64, 3, 3)
    return s


def _reference_state():
    from safetensors.torch import load_file

    case = reference_cases()[0]
    return load_file(str(reference_dir() / case["weights"]))


def _write_bad(kind, tmp_path):
    """Returns (path, words the message must contain)."""
    if kind == "empty":
        p = tmp_path / "empty.safetensors"
        p.write_bytes(b"")
        return p, ["empty"]
    if kind == "random_pth":
        p = tmp_path / "random.pth"
        p.write_bytes(b"\x13" + os.urandom(4095))
        return p, ["not a model file"]
    if kind == "random_pickle":
        p = tmp_path / "random_pickle.pth"  # looks like a legacy pickle, then garbage
        p.write_bytes(b"\x80\x02\xc5" + os.urandom(4093))  # 0xc5 is no pickle opcode
        return p, ["damaged or not a PyTorch model file"]
    if kind == "jpeg":
        p = tmp_path / "photo.pth"
        p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(1000))
        return p, ["not a model file"]
    if kind == "random_safetensors":
        p = tmp_path / "random.safetensors"
        p.write_bytes(b"\x00" * 8 + os.urandom(4096))
        return p, ["safetensors"]
    if kind == "truncated":
        src = reference_dir() / reference_cases()[0]["weights"]
        p = tmp_path / "truncated.safetensors"
        data = src.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p, ["truncated"]
    if kind == "esrgan":
        p = tmp_path / "esrgan.pth"
        torch.save(_esrgan_state(), p)
        return p, ["not a ParagonSR2", "conv_first"]
    state = _reference_state()
    if kind == "missing_tensor":
        del state["body.0.blocks.1.conv2.weight"]
        words = ["missing", "body.0.blocks.1.conv2.weight"]
    elif kind == "extra_tensor":
        state["body.0.blocks.0.surprise"] = torch.zeros(3)
        words = ["unexpected", "body.0.blocks.0.surprise"]
    elif kind == "wrong_shape":
        state["conv_mid.weight"] = torch.zeros(16, 16, 5, 5)
        words = ["wrong shape", "conv_mid.weight"]
    elif kind == "non_tensor":
        p = tmp_path / "non_tensor.pth"
        state = dict(state)
        state["conv_in.bias"] = [0.0] * 16
        torch.save(state, p)
        return p, ["conv_in.bias", "list"]
    else:
        raise AssertionError(kind)
    p = tmp_path / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(p))
    return p, words


BAD_KINDS = [
    "empty",
    "random_pth",
    "random_pickle",
    "jpeg",
    "random_safetensors",
    "truncated",
    "esrgan",
    "missing_tensor",
    "extra_tensor",
    "wrong_shape",
    "non_tensor",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_gives_model_load_error(arch, tmp_path, kind):
    path, words = _write_bad(kind, tmp_path)
    with pytest.raises(arch.ModelLoadError) as info:
        arch.load_model(path)
    message = str(info.value)
    assert path.name in message
    for word in words:
        assert word in message, message
    assert isinstance(info.value, ValueError)


def test_malicious_pickle_is_refused_and_never_executed(arch, tmp_path):
    sentinel = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"params_ema": {"conv_in.weight": torch.zeros(1)}, "payload": _Sentinel(sentinel)}, f)
    with pytest.raises(arch.ModelLoadError) as info:
        arch.load_model(path)
    assert not sentinel.exists(), "loading executed code from the file"
    assert "evil.pth" in str(info.value) and "nothing in it was executed" in str(info.value)
    # The sentinel has teeth: an unsafe load does run it.
    torch.load(path, weights_only=False)
    assert sentinel.exists()


def test_state_dict_of_wrong_type(arch):
    with pytest.raises(arch.ModelLoadError):
        arch.load_model({"params_ema": {}})
    with pytest.raises(arch.ModelLoadError):
        arch.load_model({1: torch.zeros(1)})

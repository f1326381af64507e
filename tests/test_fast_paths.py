"""The optimised inference path (paragonsr2_arch/fast_paths.py) computes what the straightforward
implementation of the spec computes (``reference_mode()``), on odd sizes, batches and dtypes.

Factory weights have LayerScale gamma = 1e-5, which would make every block nearly an identity
and hide mistakes; the networks here get random weights of realistic magnitude instead.
"""

import math

import pytest
import torch

from paragonsr2_pack.paragonsr2_arch import mode

VARIANTS = ["realtime", "stream", "photo", "pro"]


def randomised(arch, variant, scale, seed=0, **overrides):
    model = arch.build_model(variant, scale, **overrides).requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("base."):
                continue  # the fixed filters stay as the file would hold them
            if name.endswith("gamma"):
                p.copy_(0.05 + 0.2 * torch.rand(p.shape, generator=g))
            elif name.endswith("norm.scale") or (".norm" in name and name.endswith(".scale")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name == "detail_gain":
                p.fill_(0.5)
            elif p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def both(model, *args, **kwargs):
    with torch.inference_mode():
        fast = model(*args, **kwargs)
        with mode.reference_mode():
            ref = model(*args, **kwargs)
    return fast, ref


def rel_err(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)).item()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale,shape", [(2, (1, 3, 19, 23)), (4, (2, 3, 17, 33)), (3, (1, 3, 21, 2))])
def test_fast_equals_reference_fp32(arch, variant, scale, shape):
    model = randomised(arch, variant, scale)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    fast, ref = both(model, x)
    assert fast.shape == ref.shape == (shape[0], 3, scale * shape[2], scale * shape[3])
    assert fast.dtype == torch.float32
    assert rel_err(fast, ref) < 2e-5, rel_err(fast, ref)


@pytest.mark.parametrize("variant", ["realtime", "photo"])
def test_fast_scale_1_and_8(arch, variant):
    for scale in (1, 8):
        model = randomised(arch, variant, scale, seed=scale)
        x = torch.rand(1, 3, 11, 18, generator=torch.Generator().manual_seed(2))
        fast, ref = both(model, x)
        assert rel_err(fast, ref) < 2e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_video_mode_and_feature_tap(arch, variant):
    model = randomised(arch, variant, 2, seed=3)
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.rand(1, 3, 18, 20, generator=g), torch.rand(1, 3, 18, 20, generator=g)
    with torch.inference_mode():
        (f0, feat0), (r0, rfeat0) = both(model, x0, feature_tap=True)
        f1, r1 = both(model, x1, prev_feat=feat0, alpha=0.3)
    assert torch.equal(feat0, rfeat0)  # conv_in features are untouched by the fast path
    assert rel_err(f0, r0) < 2e-5 and rel_err(f1, r1) < 2e-5


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-2), (torch.bfloat16, 8e-2)], ids=["fp16", "bf16"])
def test_fast_low_precision_close_to_reference(arch, variant, dtype, tol):
    model = randomised(arch, variant, 2, seed=5)
    x = torch.rand(1, 3, 17, 19, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode(), mode.reference_mode():
        ref32 = model(x)
    low = model.to(dtype)
    fast, ref = both(low, x.to(dtype))
    assert fast.dtype == dtype and torch.isfinite(fast).all()
    # The fast path is no further from the fp32 result than the straightforward one, give or take.
    assert rel_err(fast, ref32) < tol, rel_err(fast, ref32)
    assert rel_err(fast, ref) < tol


def test_cached_weights_follow_parameter_changes(arch):
    model = randomised(arch, "pro", 2, seed=7)
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(8))
    both(model, x)  # builds the caches
    with torch.no_grad():
        model.body[0].blocks[1].conv2.weight.mul_(1.5)
        model.body[0].blocks[1].scale3.gamma.mul_(-1)
        model.body[1].blocks[0].norm4.bias.add_(0.3)
        model.up[0].bias.add_(0.1)
        model.detail_gain.fill_(0.9)
    model.upsampler_alpha = 0.7
    fast, ref = both(model, x)
    assert rel_err(fast, ref) < 2e-5
    # Loading a different state dict (copy_ into the same tensors) is seen as well.
    other = randomised(arch, "pro", 2, seed=9)
    model.load_state_dict(other.state_dict())
    fast, ref = both(model, x)
    assert rel_err(fast, ref) < 2e-5


def test_state_dict_and_saving_unchanged_by_fast_runs(arch, tmp_path):
    model = randomised(arch, "photo", 2, seed=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    both(model, torch.rand(1, 3, 20, 20))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    path = arch.save_model(model, tmp_path / "m.safetensors")
    loaded = arch.load_model(path)
    assert set(loaded.state_dict()) == set(before)


def test_training_and_autograd_use_the_straightforward_path(arch):
    model = randomised(arch, "photo", 2, seed=11).requires_grad_(True).train()
    x = torch.rand(1, 3, 16, 16)
    model(x).square().mean().backward()
    assert model.body[0].blocks[0].conv1.weight.grad is not None
    assert model.body[0].blocks[0].scale.gamma.grad.abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_on_cuda_fp16(arch, variant):
    model = randomised(arch, variant, 4, seed=12)
    x = torch.rand(1, 3, 35, 41, generator=torch.Generator().manual_seed(13))
    with torch.inference_mode(), mode.reference_mode():
        ref32 = model(x)
    fast, _ = both(model.cuda().half(), x.cuda().half())
    assert rel_err(fast.cpu(), ref32) < 2e-2

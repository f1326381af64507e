"""fp16 and bf16 run, stay close to fp32, and keep the spec's float32 internals.

Tolerances: outputs live in ~0..1, where one unit in the last place (ulp) is 9.8e-4 in fp16
and 7.8e-3 in bf16. Rounding compounds through up to 36 residual blocks and the PixelShuffle
head, so we allow 8 ulps at 1.0 as the max abs error (0.008 fp16, 0.06 bf16) and a mean abs
error 10x smaller. Measured worst cases over the reference set: fp16 max 2.0e-3 / mean 3.0e-4
(pro x4), bf16 max 1.4e-2 / mean 2.3e-3 (pro x4), i.e. a 4x margin.
"""

import pytest
import torch

from packlib import load_reference

LIMITS = {torch.float16: (0.008, 0.0008), torch.bfloat16: (0.06, 0.006)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_low_precision_close_to_fp32(reference_case, dtype):
    model, io = load_reference(reference_case)
    x = io["xb"]
    with torch.inference_mode():
        ref = model(x)
        low = model.to(dtype)(x.to(dtype)).float()
    assert torch.isfinite(low).all()
    err = (low - ref).abs()
    max_limit, mean_limit = LIMITS[dtype]
    print(reference_case["case"], dtype, f"max {err.max().item():.2e} mean {err.mean().item():.2e}")
    assert err.max().item() <= max_limit
    assert err.mean().item() <= mean_limit


def test_rmsnorm_statistic_is_float32(arch):
    """In fp16, x*x of 1000 overflows (1e6 > 65504); a float32 statistic does not."""
    norm = arch.build_model("photo", 2).body[0].blocks[0].norm.half()
    x = torch.full((1, 64, 2, 2), 1000.0, dtype=torch.float16)
    y = norm(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.float(), torch.ones_like(y, dtype=torch.float32), atol=1e-3)


def test_stream_gate_product_is_float32_and_clamped(arch):
    block = arch.build_model("stream", 2).body[0].blocks[0]
    with torch.no_grad():
        for conv in (block.dw1, block.dw3, block.fuse, block.proj, block.gate, block.out):
            conv.weight.zero_()
            conv.bias.zero_()
        block.gate.bias.fill_(300.0)  # a and b are 300 each: the product 90000 exceeds fp16
        block.out.weight.fill_(1.0 / 64)
        block.scale.gamma.fill_(1.0)
    block = block.half()
    x = torch.zeros(1, 32, 4, 4, dtype=torch.float16)
    y = block(x)
    assert torch.isfinite(y).all()
    # Each of the 64 gate channels is clamped to 65504, averaged by out: 65504 (fp16 rounding).
    assert y.float().max().item() == pytest.approx(65504.0, rel=1e-3)

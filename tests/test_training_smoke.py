"""The demo-model training script: a few steps on tiny crops learn, and a rerun is identical."""

import sys

import numpy as np
import torch
from PIL import Image

from packlib import PACK_ROOT, natural_image

sys.path.insert(0, str(PACK_ROOT / "training"))
import train_demo

import demo_data


def _run(arch, steps=40):
    torch.manual_seed(0)
    model = arch.build_model("realtime", 2, upsampler_alpha=train_demo.UPSAMPLER_ALPHA)
    images = list(natural_image(64, 80, seed=3, batch=2))  # no scikit-image needed for the smoke run
    pairs = train_demo.make_pairs(images, 2)
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    losses = train_demo.train(model, pairs, steps=steps, batch=4, lr_patch=12, learning_rate=3e-3, seed=1, log_every=0)
    for k, v in model.base.state_dict().items():  # the fixed base path must stay fixed
        assert torch.equal(v, base_before[k]), k
    return model, losses


def test_a_few_steps_reduce_the_loss_and_are_reproducible(arch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training script runs
    try:
        with torch.random.fork_rng():
            _, losses = _run(arch)
            _, again = _run(arch)
    finally:
        torch.set_num_threads(threads)
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert losses == again  # fixed seed, one thread: bit-identical


def test_batches_are_aligned_crops_with_flips():
    hr = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).reshape(2, 3, 8, 10)[0]
    lr = hr[:, ::2, ::2]  # a stand-in LR whose pixel (y, x) is HR pixel (2y, 2x)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        lrb, hrb = train_demo.sample_batch([(hr, lr)], 3, 3, 2, gen)
        assert lrb.shape == (3, 3, 3, 3) and hrb.shape == (3, 3, 6, 6)
        # whatever flips/transpose were drawn, each LR crop is a 2x subsample of its own HR crop
        for lc, hc in zip(lrb, hrb):
            assert any(torch.equal(hc[:, dy::2, dx::2], lc) for dy in (0, 1) for dx in (0, 1))


def test_degradation_matches_pillow_bicubic_within_one_level():
    hr = demo_data.modcrop(natural_image(50, 66, seed=5)[0], 2)
    lr = demo_data.bicubic_downscale(hr[None], 2)[0]
    arr = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    hr8 = torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)
    lr8 = demo_data.bicubic_downscale(hr8[None], 2)[0]
    pil = np.asarray(Image.fromarray(arr).resize((arr.shape[1] // 2, arr.shape[0] // 2), Image.BICUBIC))
    assert lr.shape == (3, 25, 33)
    assert np.abs(pil.astype(np.float32) - lr8.permute(1, 2, 0).numpy() * 255).max() <= 1.0 + 1e-4

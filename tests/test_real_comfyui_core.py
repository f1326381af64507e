"""Core nodes and ComfyUI's model manager with ParagonSR2, on each configured ComfyUI version
(tests/comfyui_probe: 0.3.64 and 0.33.0 in .ci/comfyui.sh; skipped with the reason without one).

- Core "Load Upscale Model" -> "Upscale Image (using Model)" with photo and pro files gives the
  ParagonSR2 Upscale node's pixels, borders included: our spandrel model pads photo/pro to the
  16-px window as upstream's inference does (paragonsr2_arch/window_pad.py). An odd-size image
  under 512 px is one core tile, so the two agree within 2 levels (8-bit saving, float order);
  so does core's node fed with our Loader's own UPSCALE_MODEL output.
- Dynamic VRAM (0.33): ComfyUI's model manager imported in-process by the install's interpreter
  (tests/dynamic_vram_probe.py, no server, no GPU): 0.33's ModelPatcherDynamic loads our spandrel
  network through load_models_gpu as core's node does, and our managed engines keep the classic
  patcher. What this cannot show on a CPU is said in docs/nodes.md ("Dynamic VRAM").
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from comfyui_probe import install_params, server_fixture

from packlib import load_reference, natural_image, reference_case_for

pytestmark = pytest.mark.comfyui
LR_SIZE = (45, 67)  # height, width: odd, not multiples of 16, one core tile (< 512 px)
PADDED = ("photo", "pro")
PROBE = Path(__file__).resolve().parent / "dynamic_vram_probe.py"
LEVELS = 2.0


def _prepare(base):
    """photo and pro reference networks saved with sharpness 0.0 (what core loading uses, so our
    Loader's "auto" reads the same value), and the odd-size input image."""
    from PIL import Image

    from paragonsr2_pack import paragonsr2_arch as arch

    models = {}
    for variant in PADDED:
        case = reference_case_for(variant)
        trained, _ = load_reference(case)
        model = arch.load_model(trained.state_dict(), upsampler_alpha=0.0)
        arch.save_model(model, base / "models" / "upscale_models" / f"{variant}.safetensors")
        models[variant] = model
    lr = natural_image(*LR_SIZE, seed=21)
    pixels = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(base / "input" / "odd.png")
    return {"models": models, "lr_u8": pixels}


comfyui = server_fixture(prepare=_prepare)


def _prompt(variant: str) -> dict:
    """Core loader + core upscale, our Loader + Upscale (defaults), and our Loader's UPSCALE_MODEL
    in core's upscale, on the same file."""
    file = f"{variant}.safetensors"
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "odd.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": file}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"core_{variant}"}},
        "5": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": file, "sharpness": "auto", "precision": "fp32"},
        },
        "6": {
            "class_type": "ParagonSR2Upscale",
            "inputs": {"model": ["5", 0], "image": ["1", 0], "tile_size": 0, "halo": -1, "device": "auto"},
        },
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"ours_{variant}"}},
        # The Loader's own UPSCALE_MODEL output in core's node: the same descriptor, same borders.
        "8": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["5", 1], "image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"bridged_{variant}"}},
    }


@pytest.mark.parametrize("variant", PADDED)
def test_core_upscale_equals_our_node_at_the_borders(comfyui, variant):
    outputs = comfyui.run(_prompt(variant))
    core, ours, bridged = (comfyui.image(outputs, node) for node in ("4", "7", "9"))
    height, width = LR_SIZE
    assert core.shape == ours.shape == bridged.shape == (height * 2, width * 2, 3), (core.shape, ours.shape)
    for name, theirs in (("core", core), ("bridged", bridged)):
        diff = np.abs(theirs - ours)
        print(f"ComfyUI {comfyui.version} {variant}: {name} vs ours max {diff.max():.0f} levels")
        assert diff.max() <= LEVELS, (variant, name, diff.max(), np.unravel_index(diff.argmax(), diff.shape))
    # What core ran before the padding (the network on the unpadded image) is far off at the
    # right and bottom borders: the check above would catch a descriptor that stopped padding.
    lr = torch.from_numpy(comfyui.prepared["lr_u8"]).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        unpadded = comfyui.prepared["models"][variant](lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(core - unpadded).max() > 10 * LEVELS


@pytest.mark.parametrize("install", install_params())
def test_dynamic_vram_patchers_put_our_weights_on_the_load_device(install):
    run = subprocess.run(
        [install.python, str(PROBE)],
        cwd=install.checkout,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    if not report["has_dynamic"]:
        pytest.skip(f"ComfyUI {install.version} has no ModelPatcherDynamic (dynamic VRAM came later): nothing to check")
    assert report["in_comfyui"] and report["aimdo_library_loaded"]
    # The Loader's UPSCALE_MODEL patcher is made as core's loader makes it; for a CPU load
    # device core's own ModelPatcherDynamic.__new__ hands back the classic patcher.
    assert report["like_core_on_cpu"] == "ModelPatcher"
    dyn = report["dynamic"]
    assert dyn["is_dynamic"] and dyn["in_loaded_models"] and dyn["same_output"]
    # No comfy.ops layer, so nothing is left staged on the offload side: every leaf parameter
    # and buffer is force-loaded (a CPU backup kept for unloading); the root's own parameter
    # (detail_gain) is moved in place. All of it counts as loaded except that root scalar.
    assert dyn["comfy_ops_layers"] == 0 and dyn["staged_layers"] == 0
    assert dyn["force_loaded_params"] == dyn["params"] - len(dyn["moved_in_place"])
    assert dyn["moved_in_place"] == ["detail_gain"]
    assert dyn["force_loaded_buffers"] == dyn["buffers"] > 0
    assert dyn["loaded_bytes"] == dyn["model_bytes"] - dyn["root_param_bytes"]
    assert dyn["off_load_device"] == []
    # Our engines keep the classic patcher, whose full load moves the whole module.
    assert report["managed"] == {"patchers": ["ModelPatcher"], "in_loaded_models": 1, "off_load_device": 0}

"""How the nodes live inside ComfyUI, checked without a server (tests/test_real_comfyui.py runs
the same things in a real one): weights owned by ComfyUI's model manager, device names from
other machines, the temporal state across the prompts of a VHS meta batch.

"Inside ComfyUI" is the pack imported a second time with tests/comfy_standin on sys.path
(ComfyUI 0.3.64's names and signatures; it records what the pack asks of the model manager)."""

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

from packlib import (
    combo_options,
    import_pack,
    load_reference,
    max_abs,
    natural_image,
    reference_case_for,
    run_node,
    submodule,
)
from paragonsr2_pack.engines.tiling import sizing

STANDIN = Path(__file__).resolve().parent / "comfy_standin"
IN_COMFY = "paragonsr2_pack_managed"
STANDIN_MODULES = ("comfy", "folder_paths", IN_COMFY)


def bhwc(x_bchw):
    return x_bchw.permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="module")
def realtime():
    return load_reference(reference_case_for("realtime"))[0]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, realtime):
    base = tmp_path_factory.mktemp("comfy_base")
    os.environ["STANDIN_COMFY_BASE"] = str(base)
    # These tests are about the torch engine ComfyUI's manager owns: keep the CPU on torch (the
    # nodes' default may pick OpenVINO / ONNX Runtime on a CPU where they measure faster).
    os.environ["PARAGONSR2_CPU_BACKEND"] = "torch"
    sys.path.insert(0, str(STANDIN))
    try:
        import_pack(IN_COMFY)
        import comfy.model_management as mm

        (base / "models" / "paragonsr2").mkdir(parents=True, exist_ok=True)
        submodule("paragonsr2_arch").save_model(realtime, base / "models" / "paragonsr2" / "rt.safetensors")
        mods = {
            name: sys.modules[f"{IN_COMFY}.nodes.{name}"]
            for name in ("image_nodes", "video_nodes", "shared", "managed", "comfy_bridge")
        }
        yield dict(mm=mm, **mods)
    finally:
        sys.path.remove(str(STANDIN))
        os.environ.pop("STANDIN_COMFY_BASE", None)
        os.environ.pop("PARAGONSR2_CPU_BACKEND", None)
        for name in [m for m in sys.modules if m.split(".")[0] in STANDIN_MODULES]:
            del sys.modules[name]


def _reset(mm):
    mm.unload_all_models()
    mm.LOAD_CALLS.clear()
    mm.FREE_CALLS.clear()


def test_upscale_computes_on_the_module_comfyui_loaded(comfy, realtime):
    nodes, mm, managed = comfy["image_nodes"], comfy["mm"], comfy["managed"]
    assert comfy["comfy_bridge"].IN_COMFYUI
    handle, _ = run_node(nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    _reset(mm)
    x = bhwc(natural_image(40, 52, seed=3))
    (out,) = run_node(nodes.ParagonSR2Upscale, model=handle, image=x)
    engine = comfy["shared"].engine_for(handle)
    assert isinstance(engine, managed.ManagedTorchEngine)
    # One load request per run, for the one module the engine computes with, fully loaded, with
    # a working-memory figure from the tile plan: one tile covers this image, plus its halo.
    ((patchers, memory_required, full),) = mm.LOAD_CALLS
    assert [p.model for p in patchers] == [engine.model] and full
    halo = sizing.default_halo(engine.info)
    per_px = sizing.bytes_per_lr_pixel("realtime", torch.float32, 2)
    assert memory_required == (40 + 2 * halo) * (52 + 2 * halo) * per_px
    assert mm.loaded_models() == patchers
    # The handle's master is untouched: CPU float32, not the managed module.
    assert engine.model is not handle.model
    assert {p.dtype for p in handle.model.parameters()} == {torch.float32}
    with torch.no_grad():
        expected = realtime(x.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert max_abs(out, expected) <= 1e-5
    # "Unload models": the manager drops it; the next run asks again and computes the same.
    mm.unload_all_models()
    assert not mm.loaded_models()
    (again,) = run_node(nodes.ParagonSR2Upscale, model=handle, image=x)
    assert len(mm.LOAD_CALLS) == 2 and mm.loaded_models() == patchers and torch.equal(again, out)


def test_explicit_tile_size_is_the_memory_estimate(comfy):
    nodes, mm, managed = comfy["image_nodes"], comfy["mm"], comfy["managed"]
    handle, _ = run_node(nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    _reset(mm)
    run_node(nodes.ParagonSR2Upscale, model=handle, image=bhwc(natural_image(64, 64, seed=1)), tile_size=32)
    ((_, memory_required, _),) = mm.LOAD_CALLS
    engine = comfy["shared"].engine_for(handle)
    halo = sizing.default_halo(engine.info)
    assert memory_required == (32 + 2 * halo) ** 2 * sizing.bytes_per_lr_pixel("realtime", torch.float32, 2)
    # Auto: never planned below a 512 px tile's worth (what core's upscale node plans with), so
    # ComfyUI evicts other models before our tiles get small.
    big = managed.working_memory(engine, 4096, 4096)
    assert big >= (managed.MIN_PLANNED_TILE + 2 * halo) ** 2 * sizing.bytes_per_lr_pixel("realtime", torch.float32, 2)


def test_video_upscale_loads_through_the_manager_too(comfy):
    video, mm = comfy["video_nodes"], comfy["mm"]
    handle, _ = run_node(comfy["image_nodes"].ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    _reset(mm)
    frames = bhwc(natural_image(24, 32, seed=2, batch=3))
    run_node(video.ParagonSR2VideoUpscale, model=handle, frames=frames)
    assert len(mm.LOAD_CALLS) == 1 and mm.loaded_models()[0].model is comfy["shared"].engine_for(handle).model


def test_loader_output_carries_a_patcher_for_current_core_nodes(comfy):
    pytest.importorskip(
        "spandrel", reason="spandrel (UPSCALE_MODEL) is not installed here; .ci/run's spandrel environment has it"
    )
    _, descriptor = run_node(comfy["image_nodes"].ParagonSR2Loader, model_name="rt.safetensors")
    assert descriptor.patcher.model is descriptor.model
    assert descriptor.patcher.load_device == torch.device("cpu") == descriptor.patcher.offload_device


@pytest.mark.parametrize("nodes_module", ["image_nodes", "video_nodes"])
def test_a_device_from_another_machine_validates_and_falls_back(comfy, caplog, nodes_module):
    node = {"image_nodes": "ParagonSR2Upscale", "video_nodes": "ParagonSR2VideoUpscale"}[nodes_module]
    cls = getattr(comfy[nodes_module], node)
    assert "cuda:7" not in combo_options(cls, "device")  # built from this machine
    assert cls.validate_inputs(device="cuda:7") is True and cls.validate_inputs() is True
    assert cls.validate_inputs(device=3) is not True
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        assert comfy["shared"].resolve_device("cuda:7") == torch.device("cpu")  # ComfyUI's device
        assert comfy["shared"].resolve_device("no-such-device") == torch.device("cpu")
    assert "cuda:7" in caplog.text and "no-such-device" in caplog.text


# -- VHS meta batch: the state across prompts ---------------------------------------------------


class MetaBatchManager:
    """What our node reads of VHS's Meta Batch Manager object: its node id (``unique_id``)."""

    def __init__(self, unique_id="5"):
        self.unique_id = unique_id


def _prompt(manager, requeue):
    inputs = {"frames_per_batch": 4, "requeue": requeue}
    return {manager.unique_id: {"class_type": "VHS_BatchManager", "inputs": inputs}}


def test_meta_batch_state_continues_only_the_next_batch_of_the_same_run(caplog):
    from paragonsr2_pack.nodes import video_nodes

    handle = submodule("nodes.shared").load_model_handle("(bundled) ParagonSR2_realtime_x2_demo.safetensors")
    frames = bhwc(natural_image(24, 32, seed=7, batch=6))
    node = video_nodes.ParagonSR2VideoUpscale

    def run(part, manager, requeue, node_id="9"):
        # prompt and unique_id are hidden inputs: ComfyUI hands them to the node as cls.hidden
        hidden = {"prompt": _prompt(manager, requeue), "unique_id": node_id}
        return run_node(
            node,
            hidden=hidden,
            model=handle,
            frames=part,
            temporal_strength=0.6,
            scene_cut_sensitivity=0.0,
            meta_batch=manager,
        )[0]

    whole = run_node(node, model=handle, frames=frames, temporal_strength=0.6, scene_cut_sensitivity=0.0)[0]
    manager = MetaBatchManager()
    joined = torch.cat([run(frames[:3], manager, 0), run(frames[3:], manager, 1)])
    assert max_abs(joined, whole) <= 1e-5
    fresh = run(frames[3:], manager, 0)  # batch 0 = a new run: no state from before
    assert max_abs(fresh[0], whole[3]) > 1e-3
    # Another of our nodes under the same manager, or another manager, never sees this state.
    assert max_abs(run(frames[3:], manager, 1, node_id="10"), fresh) <= 1e-6
    assert max_abs(run(frames[3:], MetaBatchManager(), 1), fresh) <= 1e-6
    # A gap (batch 1 never ran for this node) starts fresh, with a warning.
    run(frames[:3], manager, 0, node_id="11")
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        assert max_abs(run(frames[3:], manager, 2, node_id="11"), fresh) <= 1e-6
    assert "meta batch 2 has no state from batch 1" in caplog.text

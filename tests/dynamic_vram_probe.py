"""Run by tests/test_real_comfyui_core.py with a ComfyUI install's own interpreter (cwd: its
checkout): ComfyUI's model manager imported in-process, without a server and without a GPU, with
dynamic VRAM's patcher installed the way 0.33's main.py installs it. Prints one JSON object.

What can run on a CPU: comfy-aimdo's library loads (its device set-up cannot), and a
``ModelPatcherDynamic`` is built around our spandrel model with a CPU load device (core reroutes
that to the classic patcher in ``__new__``, so it is built past that reroute here). Loading it
through ``load_models_gpu(..., force_full_load=True)``, as 0.33's Upscale Image (using Model)
does, runs 0.33's real dynamic ``load``; what it did with our plain torch layers is reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(Path.cwd()))  # the ComfyUI checkout
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    report: dict = {}
    try:  # before comfy.model_patcher binds the library, as main.py orders it
        import comfy_aimdo.control

        report["aimdo_library_loaded"] = bool(comfy_aimdo.control.init())
    except ImportError:
        report["aimdo_library_loaded"] = False
    import comfy.model_management as mm
    import comfy.model_patcher as patchers

    dynamic_cls = getattr(patchers, "ModelPatcherDynamic", None)
    report["has_dynamic"] = dynamic_cls is not None
    if dynamic_cls is None:
        print(json.dumps(report))
        return
    patchers.CoreModelPatcher = dynamic_cls  # what main.py does when comfy-aimdo starts

    sys.path.insert(0, str(PACK_ROOT))
    import paragonsr2 as launcher

    arch = launcher.submodule("paragonsr2_arch")
    bridge = launcher.submodule("nodes.comfy_bridge")
    managed = launcher.submodule("nodes.managed")
    sparch = launcher.submodule("paragonsr2_arch.spandrel_arch")
    report["in_comfyui"] = bridge.IN_COMFYUI
    cpu = torch.device("cpu")

    torch.manual_seed(0)
    model = arch.build_model("photo", 2, num_groups=1, num_blocks=2).eval()
    descriptor = sparch.descriptor_for_model(model)
    x = torch.rand(1, 3, 21, 27)
    before = descriptor(x)

    # 1. Our UPSCALE_MODEL patcher as the Loader makes it: CoreModelPatcher, which core itself
    #    reroutes to the classic patcher for a CPU load device.
    core_made = bridge.model_patcher(descriptor.model, cpu, like_core=True)
    report["like_core_on_cpu"] = type(core_made).__name__

    # 2. 0.33's dynamic load on the same network (the reroute bypassed: CPU load device).
    dynamic = patchers.ModelPatcher.__new__(dynamic_cls)
    dynamic.__init__(descriptor.model, load_device=cpu, offload_device=cpu)
    mm.load_models_gpu([dynamic], memory_required=1 << 20, force_full_load=True)
    net = descriptor.model
    params = dict(net.named_parameters())
    report["dynamic"] = {
        "is_dynamic": dynamic.is_dynamic(),
        "in_loaded_models": any(p is dynamic for p in mm.loaded_models()),
        "comfy_ops_layers": sum(hasattr(m, "comfy_cast_weights") for m in net.modules()),
        "staged_layers": sum(hasattr(m, "_v") for m in net.modules()),
        "params": len(params),
        "force_loaded_params": sum(name in dynamic.backup for name in params),
        "moved_in_place": sorted(name for name in params if name not in dynamic.backup),
        "buffers": len(dict(net.named_buffers())),
        "force_loaded_buffers": len(dynamic.backup_buffers),
        "loaded_bytes": int(net.model_loaded_weight_memory),
        "model_bytes": int(dynamic.model_size()),
        "root_param_bytes": sum(p.numel() * p.element_size() for p in net.parameters(recurse=False)),
        "off_load_device": [n for n, t in [*params.items(), *net.named_buffers()] if t.device != cpu],
        "same_output": bool(torch.equal(descriptor(x), before)),
    }

    # 3. Our managed engine: the classic ModelPatcher even where CoreModelPatcher is dynamic.
    engine = managed.ManagedTorchEngine(arch.build_model("realtime", 2), cpu, "fp32")
    engine.load(1 << 20)
    report["managed"] = {
        "patchers": [type(p).__name__ for p in engine.patchers],
        "in_loaded_models": bridge.loaded_model_count(engine.model),
        "off_load_device": sum(t.device != cpu for t in [*engine.model.parameters(), *engine.model.buffers()]),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""ParagonSR2 Loader / Upscale called the way ComfyUI calls them: schema defaults, ``execute``,
real model files written by the test, real tensors. Standalone (no ComfyUI) and under a
stand-in of ComfyUI's modules (tests/comfy_standin) for folders, progress and interrupts."""

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
    node_outputs,
    psnr,
    reference_case_for,
    submodule,
)
from packlib import (
    run_node as run,
)
from paragonsr2_pack.nodes import comfy_bridge as bridge
from paragonsr2_pack.nodes import image_nodes, shared

CASES = {v: reference_case_for(v) for v in ("realtime", "stream", "photo", "pro")}
STANDIN = Path(__file__).resolve().parent / "comfy_standin"
STANDIN_MODULES = ("comfy", "folder_paths", "paragonsr2_pack_in_comfyui")


def bhwc(x_bchw):
    return x_bchw.permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="module")
def realtime():
    return load_reference(CASES["realtime"])[0]


@pytest.fixture
def models_dir(tmp_path, monkeypatch, arch, realtime):
    """A standalone models folder: upscale_models/rt.safetensors, paragonsr2/sub/rt2.safetensors."""
    for sub, name in (("upscale_models", "rt.safetensors"), ("paragonsr2/sub", "rt2.safetensors")):
        (tmp_path / sub).mkdir(parents=True)
        arch.save_model(realtime, tmp_path / sub / name)
    (tmp_path / "upscale_models" / "notes.txt").write_text("not a model")
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_node_classes_follow_the_comfyui_contract():
    registered = import_pack().NODE_CLASS_MAPPINGS
    for cls in image_nodes.NODES:
        schema = cls.define_schema()
        assert registered[schema.node_id] is cls and schema.display_name
        assert schema.category == "image/upscaling/ParagonSR2"
        assert len(schema.description) > 40
        assert all(o.tooltip for o in schema.outputs)
        for item in schema.inputs:
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"
    assert node_outputs(image_nodes.ParagonSR2Loader) == [
        ("PARAGONSR2_MODEL", "paragonsr2_model"),
        ("UPSCALE_MODEL", "upscale_model"),
    ]


def test_loader_lists_model_folders_and_applies_sharpness(models_dir):
    names = combo_options(image_nodes.ParagonSR2Loader, "model_name")
    assert "rt.safetensors" in names and "sub/rt2.safetensors" in names
    assert "notes.txt" not in names
    handle, upscale_model = run(image_nodes.ParagonSR2Loader, model_name="sub/rt2.safetensors")
    assert handle.variant == "realtime" and handle.scale == 2 and handle.precision == "auto"
    # "auto" = the file's metadata (save_model recorded the reference's 0.3).
    assert handle.model.upsampler_alpha == pytest.approx(CASES["realtime"]["upsampler_alpha"])
    sharp0, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", sharpness="0.0", precision="fp32")
    assert sharp0.model.upsampler_alpha == 0.0 and sharp0.precision == "fp32"
    try:
        import spandrel  # noqa: F401

        has_spandrel = True
    except Exception:
        has_spandrel = False
    assert (upscale_model is not None) == has_spandrel


def test_loader_cache_reuses_models_until_the_file_changes(models_dir, arch, realtime):
    first, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors")
    again, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    assert again.model is first.model
    path = models_dir / "upscale_models" / "rt.safetensors"
    arch.save_model(realtime, path, metadata={"upsampler_alpha": "0.1"})
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors")
    assert changed.model is not first.model and changed.model.upsampler_alpha == pytest.approx(0.1)


def test_bad_model_files_give_the_loaders_message(models_dir, arch, realtime):
    folder = models_dir / "paragonsr2"
    (folder / "garbage.safetensors").write_bytes(b"\x00" * 64)
    state = {k: v for k, v in realtime.state_dict().items() if k != "conv_mid.weight"}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "incomplete.safetensors"))
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, folder / "other.pth")
    for name in ("garbage.safetensors", "incomplete.safetensors", "other.pth"):
        with pytest.raises(arch.ModelLoadError) as expected:
            arch.load_model(folder / name)
        with pytest.raises(ValueError) as got:
            run(image_nodes.ParagonSR2Loader, model_name=name)
        assert type(got.value) is ValueError  # shown in the UI as its message, no loader internals
        assert str(got.value) == str(expected.value) and name in str(got.value)
        assert "size mismatch" not in str(got.value)


def test_upscale_rgb_equals_whole_image_pass(models_dir, realtime):
    handle, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    x = natural_image(37, 45, seed=1, batch=2)
    whole = bhwc(realtime(x).clamp(0, 1))
    (auto,) = run(image_nodes.ParagonSR2Upscale, model=handle, image=bhwc(x))
    (tiled,) = run(image_nodes.ParagonSR2Upscale, model=handle, image=bhwc(x), tile_size=16)
    for out in (auto, tiled):
        assert out.shape == (2, 74, 90, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
        assert max_abs(out, whole) <= 1e-5


def test_upscale_rgba_and_grayscale(models_dir, realtime):
    handle, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    rgb = natural_image(24, 31, seed=2)
    alpha = natural_image(24, 31, seed=7)[:, :1]
    (out,) = run(image_nodes.ParagonSR2Upscale, model=handle, image=bhwc(torch.cat([rgb, alpha], 1)), tile_size=16)
    assert out.shape == (1, 48, 62, 4)
    assert max_abs(out[..., :3], bhwc(realtime(rgb).clamp(0, 1))) <= 1e-5
    smooth_alpha = torch.nn.functional.interpolate(alpha, scale_factor=2, mode="bicubic").clamp(0, 1)
    assert psnr(out[..., 3], smooth_alpha[:, 0]) > 30
    gray = rgb.mean(1, keepdim=True)
    (out,) = run(image_nodes.ParagonSR2Upscale, model=handle, image=bhwc(gray))
    assert out.shape == (1, 48, 62, 3)
    assert max_abs(out, bhwc(realtime(gray.expand(-1, 3, -1, -1)).clamp(0, 1))) <= 1e-5


def test_upscale_reuses_its_engine(models_dir):
    handle, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    e1 = shared.engine_for(handle, "cpu")
    assert shared.engine_for(handle, "cpu") is e1
    other, _ = run(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="bf16")
    assert shared.engine_for(other, "cpu") is not e1


def test_bundled_models_are_listed_and_loadable(models_dir, monkeypatch, arch, realtime, tmp_path):
    bundled = tmp_path / "pack_models"
    bundled.mkdir()
    arch.save_model(realtime, bundled / "demo.safetensors")
    monkeypatch.setattr(bridge, "BUNDLED_DIR", bundled)
    names = combo_options(image_nodes.ParagonSR2Loader, "model_name")
    assert names[-1] == "(bundled) demo.safetensors"
    handle, _ = run(image_nodes.ParagonSR2Loader, model_name="(bundled) demo.safetensors")
    assert handle.variant == "realtime"
    with pytest.raises(FileNotFoundError):
        bridge.model_file_path("(bundled) ../upscale_models/rt.safetensors")  # exists, but outside


# ---- inside "ComfyUI": the pack imported again with the stand-in modules on sys.path --------


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    os.environ["STANDIN_COMFY_BASE"] = str(base)
    sys.path.insert(0, str(STANDIN))
    try:
        pack = import_pack("paragonsr2_pack_in_comfyui")
        import comfy.model_management as mm
        import comfy.utils as cu
        import folder_paths

        nodes = sys.modules["paragonsr2_pack_in_comfyui.nodes.image_nodes"]
        yield dict(
            pack=pack,
            nodes=nodes,
            mm=mm,
            utils=cu,
            folder_paths=folder_paths,
            base=base,
            bridge=sys.modules["paragonsr2_pack_in_comfyui.nodes.comfy_bridge"],
            shared=sys.modules["paragonsr2_pack_in_comfyui.nodes.shared"],
        )
    finally:
        sys.path.remove(str(STANDIN))
        os.environ.pop("STANDIN_COMFY_BASE", None)
        for name in [m for m in sys.modules if m.split(".")[0] in STANDIN_MODULES]:
            del sys.modules[name]


def test_comfyui_folders_progress_and_interrupt(comfy, arch, realtime):
    nodes, mm, fp, base = comfy["nodes"], comfy["mm"], comfy["folder_paths"], comfy["base"]
    assert comfy["bridge"].IN_COMFYUI
    paths, extensions = fp.folder_names_and_paths["paragonsr2"]
    assert paths == [str(base / "models" / "paragonsr2")] and ".safetensors" in extensions
    assert (base / "models" / "paragonsr2").is_dir()
    (base / "models" / "upscale_models").mkdir(parents=True)
    arch.save_model(realtime, base / "models" / "upscale_models" / "core.safetensors")
    arch.save_model(realtime, base / "models" / "paragonsr2" / "own.safetensors")
    names = combo_options(nodes.ParagonSR2Loader, "model_name")
    assert {"core.safetensors", "own.safetensors"} <= set(names)

    handle, _ = run(nodes.ParagonSR2Loader, model_name="own.safetensors", precision="fp32")
    x = bhwc(natural_image(40, 40, seed=4))
    mm.reset()
    comfy["utils"].UPDATES.clear()
    (out,) = run(nodes.ParagonSR2Upscale, model=handle, image=x, tile_size=16)
    updates = comfy["utils"].UPDATES
    halo = submodule("engines.tiling.sizing").default_halo(comfy["shared"].engine_for(handle).info)
    steps = comfy["shared"].engine_for(handle).info.steps_per_call
    total = len(submodule("engines.tiling.plan").plan_tiles(40, 40, 16, halo)) * steps
    # the bar appears before the first tile, moves within tiles and ends full
    assert updates[0] == (0, total) and updates[-1] == (total, total)
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)

    mm.reset(interrupt_after=3)
    with pytest.raises(mm.InterruptProcessingException):
        run(nodes.ParagonSR2Upscale, model=handle, image=x, tile_size=16)
    mm.reset()
    (again,) = run(nodes.ParagonSR2Upscale, model=handle, image=x, tile_size=16)
    assert torch.equal(again, out)

    mm.FREE_MEMORY_CALLS.clear()
    (auto,) = run(nodes.ParagonSR2Upscale, model=handle, image=x)  # tile 0: sized from ComfyUI's figure
    assert mm.FREE_MEMORY_CALLS and max_abs(auto, out) <= 1e-5


# ---- example_workflows: the template is consistent with the nodes it uses -------------------

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def widget_inputs(node_cls) -> list:
    """The schema inputs with a widget, in the order the frontend stores their values."""
    return [item for item in node_cls.define_schema().inputs if str(item.io_type) in WIDGET_TYPES]


def test_example_workflow_matches_the_nodes():
    import json

    from packlib import PACK_ROOT

    all_nodes = submodule("nodes").NODE_CLASS_MAPPINGS  # every template of the pack, every node
    files = sorted((PACK_ROOT / "example_workflows").glob("*.json"))
    assert files, "example_workflows/ has no workflow"
    for path in files:
        wf = json.loads(path.read_text())
        assert wf["version"] == 0.4 and isinstance(wf["links"], list)
        nodes = {n["id"]: n for n in wf["nodes"]}
        assert wf["last_node_id"] >= max(nodes) and wf["last_link_id"] >= max(l[0] for l in wf["links"])
        for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
            out, inp = nodes[src]["outputs"][src_slot], nodes[dst]["inputs"][dst_slot]
            assert link_id in out["links"] and inp["link"] == link_id
            assert out["type"] == inp["type"] == kind
        if path.name == "ParagonSR2_image_upscale.json":
            types = {n["type"] for n in nodes.values()}
            assert {"LoadImage", "ParagonSR2Loader", "ParagonSR2Upscale", "SaveImage"} <= types
        for node in nodes.values():
            cls = all_nodes.get(node["type"])
            if cls is None:
                continue
            assert [o["type"] for o in node["outputs"]] == [kind for kind, _ in node_outputs(cls)]
            widgets = widget_inputs(cls)
            assert len(node["widgets_values"]) == len(widgets), node["type"]
            for item, value in zip(widgets, node["widgets_values"]):
                name, kind = item.id, str(item.io_type)
                if kind == "COMBO":
                    assert value in item.options, f"{node['type']}.{name}: {value!r} is not offered"
                elif kind == "BOOLEAN":
                    assert isinstance(value, bool), f"{node['type']}.{name}: {value!r}"
                elif kind in ("INT", "FLOAT"):
                    low = item.min if item.min is not None else -float("inf")
                    high = item.max if item.max is not None else float("inf")
                    assert low <= value <= high, f"{node['type']}.{name}: {value!r}"

"""ParagonSR2 Video Upscale called the way ComfyUI calls it (widget defaults, ``execute``, links),
with a model file written by the test and loaded through ParagonSR2 Loader."""

from __future__ import annotations

import logging

import pytest
import torch

from packlib import load_reference, max_abs, natural_image, node_outputs, reference_case_for
from packlib import run_node as call
from paragonsr2_pack.engines.runtime import contract
from paragonsr2_pack.engines.video import scene_cuts, temporal
from paragonsr2_pack.nodes import image_nodes, video_nodes

Node = video_nodes.ParagonSR2VideoUpscale


def to_image(x_bchw):
    return x_bchw.permute(0, 2, 3, 1).contiguous()


def clip(h, w, n, seed=0):
    """n frames panning 1 px per frame: small steps, no scene cut at the default sensitivity."""
    big = natural_image(h, w + n, seed=seed)
    return to_image(torch.cat([big[..., t : t + w] for t in range(n)]))


def _case(variant):
    return reference_case_for(variant)


@pytest.fixture(scope="module")
def realtime():
    return load_reference(_case("realtime"))[0]


@pytest.fixture
def loaded(tmp_path, monkeypatch, arch, realtime):
    """A PARAGONSR2_MODEL from ParagonSR2 Loader, read from a file this test wrote."""
    (tmp_path / "upscale_models").mkdir()
    arch.save_model(realtime, tmp_path / "upscale_models" / "rt.safetensors")
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path))
    handle, _ = call(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    return handle


@torch.inference_mode()
def recurrence(model, frames, alpha):
    """The spec's frame-by-frame recurrence (restarting where the default cut rule says)."""
    x = frames.permute(0, 3, 1, 2)
    restart = scene_cuts.detect_cuts(scene_cuts.thumbnails(x), None, scene_cuts.DEFAULT_SENSITIVITY)
    outs, feat = [], None
    for t in range(x.shape[0]):
        if restart[t]:
            out, feat = model(x[t : t + 1], feature_tap=True)
        else:
            out, feat = model(x[t : t + 1], feature_tap=True, prev_feat=feat, alpha=alpha)
        outs.append(out)
    return to_image(torch.cat(outs)).clamp(0, 1), restart


def test_node_follows_the_comfyui_contract(pack):
    assert pack.NODE_CLASS_MAPPINGS["ParagonSR2VideoUpscale"] is Node
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["ParagonSR2VideoUpscale"] == "ParagonSR2 Video Upscale"
    spec = Node.INPUT_TYPES()
    required, optional = spec["required"], spec["optional"]
    assert list(required) == [
        "model",
        "frames",
        "temporal_strength",
        "scene_cut_sensitivity",
        "motion_adaptive",
        "tile_size",
        "frames_per_chunk",
    ]
    assert required["model"][0] == "PARAGONSR2_MODEL" and required["frames"][0] == "IMAGE"
    assert required["temporal_strength"][1]["default"] == 0.2
    assert required["temporal_strength"][1]["max"] == 0.95
    assert required["motion_adaptive"] == ("BOOLEAN", required["motion_adaptive"][1])
    assert required["motion_adaptive"][1]["default"] is False
    assert required["tile_size"][1]["default"] == 0 and required["frames_per_chunk"][1]["default"] == 0
    assert optional["temporal_state"][0] == "PARAGONSR2_TEMPORAL_STATE"
    assert node_outputs(Node) == [("IMAGE", "frames"), ("PARAGONSR2_TEMPORAL_STATE", "temporal_state")]
    schema = Node.define_schema()
    assert schema.category == "image/upscaling/ParagonSR2" and schema.description
    assert list(spec["hidden"]) == ["prompt", "unique_id"]
    for section, inputs in spec.items():
        if section == "hidden":  # filled by ComfyUI (prompt, node id), never shown
            continue
        for name, (_, opts) in inputs.items():
            assert opts.get("tooltip"), name


def test_node_output_equals_the_recurrence(loaded, realtime):
    frames = clip(30, 40, 5, seed=1)
    out, state = call(Node, model=loaded, frames=frames)
    expected, restart = recurrence(realtime, frames, 0.2)
    assert restart == [True, False, False, False, False]  # the blending is really exercised
    assert out.shape == (5, 60, 80, 3) and out.dtype == torch.float32 and not out.is_inference()
    assert max_abs(out, expected) <= 1e-5
    assert isinstance(state, temporal.TemporalState) and state.frames_seen == 5


def test_node_batches_continue_through_the_state(loaded, realtime, arch, caplog):
    frames = clip(30, 40, 6, seed=2)
    whole, _ = call(Node, model=loaded, frames=frames, motion_adaptive=True, frames_per_chunk=4)
    first, state = call(Node, model=loaded, frames=frames[:2], motion_adaptive=True)
    second, _ = call(Node, model=loaded, frames=frames[2:], motion_adaptive=True, temporal_state=state)
    assert max_abs(torch.cat([first, second]), whole) <= 1e-6
    # a state from another model is not applied
    other = contract.ModelHandle(model=arch.build_model("realtime", 2), name="other")
    _, foreign = call(Node, model=other, frames=frames[:2])
    fresh, _ = call(Node, model=loaded, frames=frames[2:], motion_adaptive=True)
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        ignored, _ = call(Node, model=loaded, frames=frames[2:], motion_adaptive=True, temporal_state=foreign)
    assert "starting a fresh state" in caplog.text
    assert max_abs(ignored, fresh) == 0


def test_node_rgba_and_grayscale_frames(loaded):
    rgb = clip(20, 24, 3, seed=3)
    rgba = torch.cat([rgb, torch.full((3, 20, 24, 1), 0.5)], dim=-1)
    out_rgba, _ = call(Node, model=loaded, frames=rgba)
    out_rgb, _ = call(Node, model=loaded, frames=rgb)
    assert out_rgba.shape == (3, 40, 48, 4)
    assert max_abs(out_rgba[..., :3], out_rgb) == 0
    assert max_abs(out_rgba[..., 3], torch.full((3, 40, 48), 0.5)) <= 1e-6
    gray, _ = call(Node, model=loaded, frames=rgb[..., :1])
    assert gray.shape == (3, 40, 48, 3)


def test_node_rejects_other_model_types():
    with pytest.raises(ValueError, match="ParagonSR2 Loader"):
        call(Node, model=object(), frames=torch.zeros(1, 8, 8, 3))


def test_example_workflow_matches_the_nodes(pack):
    """The shipped UI workflow: only core nodes and ours, consistent links, and widget values
    in the order of our inputs (ComfyUI's INPUT_TYPES view of the V3 schema)."""
    import json

    from packlib import PACK_ROOT

    workflow = json.loads((PACK_ROOT / "example_workflows" / "ParagonSR2_video_upscale.json").read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    core = {"LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo", "MarkdownNote"}
    assert {n["type"] for n in nodes.values()} <= core | set(pack.NODE_CLASS_MAPPINGS)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert nodes[src]["outputs"][src_slot]["type"] == kind and link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[dst]["inputs"][dst_slot]["type"] == kind and nodes[dst]["inputs"][dst_slot]["link"] == link_id
    for n in nodes.values():
        if n["type"] in pack.NODE_CLASS_MAPPINGS:
            spec = pack.NODE_CLASS_MAPPINGS[n["type"]].INPUT_TYPES()
            widgets = [
                name
                for section in spec.values()
                for name, (kind, *_) in section.items()
                if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
            ]
            assert len(n["widgets_values"]) == len(widgets), n["type"]
    # Frame rate and audio go from Get Video Components straight to Create Video.
    (parts,) = [n for n in nodes.values() if n["type"] == "GetVideoComponents"]
    (create,) = [n for n in nodes.values() if n["type"] == "CreateVideo"]
    fed = {i["name"]: i["link"] for i in create["inputs"]}
    assert fed["audio"] in parts["outputs"][1]["links"] and fed["fps"] in parts["outputs"][2]["links"]

"""The pack inside a real ComfyUI server, as users run it, once per ComfyUI version configured
(.ci/comfyui.sh: 0.3.64 and 0.33.0; the servers come from tests/comfyui_probe).

Covers: nodes listed; workflows queued and their saved pixels checked; our UPSCALE_MODEL in
core's node and in a node written to current core's contract (``.patcher``); our weights in
ComfyUI's loaded models after an upscale and gone after ``POST /free``; a device name from
another machine; cancel latency and the first progress message (photo 2048x1536, defaults);
both templates validated against /object_info and run (the video one with core video nodes:
frame count, fps and audio kept); the temporal state across the prompts of a meta batch.

Version differences the checks allow for: 0.33's Save Video takes ``format`` as a DynamicCombo
(plain strings still validate), its Get Video Components adds ``bit_depth``/``color_space``
outputs after the three 0.3.64 has, and only 0.33's server sends ``search_aliases``.
"""

import re
import shutil
import time
import uuid

import numpy as np
import pytest
import torch
from comfyui_probe import PACK_FOLDER, PACK_ROOT, WIDGET_TYPES, combo_options, server_fixture, spec_type, ui_to_api

from packlib import load_reference, natural_image, reference_cases

pytestmark = pytest.mark.comfyui
SAMPLE_CLIP = PACK_ROOT / "assets" / "sample_clip.mp4"
CANCEL_IMAGE = (1536, 2048)  # height, width of the cancel-latency photo
RUN_TIMEOUT = 300
CASE = next(c for c in reference_cases() if c["variant"] == "realtime" and c["upsampler_alpha"] > 0)


def _prepare(base):
    """Models and inputs for this module: the reference realtime model (ours and core's folder),
    a broken file, an untrained photo x2, a small image, the sample clip and the big photo."""
    from PIL import Image

    from paragonsr2_pack import paragonsr2_arch as arch

    model, _ = load_reference(CASE)
    arch.save_model(model, base / "models" / "paragonsr2" / "own.safetensors")
    arch.save_model(model, base / "models" / "upscale_models" / "core.safetensors")
    (base / "models" / "paragonsr2" / "broken.safetensors").write_bytes(b"\x00" * 64)
    lr = natural_image(40, 52, seed=11)
    pixels = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(base / "input" / "lr.png")
    Image.fromarray(pixels).save(base / "input" / "example.png")  # what the template loads
    shutil.copy(SAMPLE_CLIP, base / "input" / SAMPLE_CLIP.name)  # as the video template's note says
    arch.save_model(arch.build_model("photo", 2), base / "models" / "paragonsr2" / "photo_x2.safetensors")
    big = natural_image(*CANCEL_IMAGE, seed=5)
    Image.fromarray((big[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(base / "input" / "big.png")
    return {"model": model, "lr_u8": pixels, "arch": arch}


comfyui = server_fixture(prepare=_prepare)


def test_pack_imports_and_nodes_are_listed(comfyui):
    log = comfyui.log_text()
    bad = [
        line
        for line in log.splitlines()
        if ("IMPORT FAILED" in line or "Cannot import" in line) and PACK_FOLDER in line
    ]
    assert not bad, "\n".join(bad)
    assert re.search(r"custom_nodes/" + re.escape(PACK_FOLDER), log), "the pack was not loaded:\n" + log[-3000:]
    info = comfyui.object_info()
    loader, upscale = info["ParagonSR2Loader"], info["ParagonSR2Upscale"]
    assert loader["output"] == ["PARAGONSR2_MODEL", "UPSCALE_MODEL"]
    assert loader["category"] == "image/upscaling/ParagonSR2" and loader["description"]
    names = combo_options(loader["input"]["required"]["model_name"])
    assert {"own.safetensors", "core.safetensors"} <= set(names)
    assert set(loader["input"]["required"]) == {"model_name", "sharpness", "precision"}
    assert {"model", "image", "tile_size"} <= set(upscale["input"]["required"])
    assert upscale["output"] == ["IMAGE"]
    for spec in upscale["input"]["required"].values():
        assert spec[1].get("tooltip")
    # Search aliases: 0.33's server sends the schema's search_aliases, 0.3.64's Schema has none.
    if comfyui.at_least(0, 33):
        assert "super resolution" in upscale.get("search_aliases", []), upscale.get("search_aliases")
    else:
        assert not upscale.get("search_aliases")


def _prompt():
    """API-format graph: our loader+upscale, core loader+upscale, our UPSCALE_MODEL into core."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "lr.png"}},
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": "own.safetensors", "sharpness": "auto", "precision": "fp32"},
        },
        "3": {
            "class_type": "ParagonSR2Upscale",
            "inputs": {"model": ["2", 0], "image": ["1", 0], "tile_size": 16, "halo": -1, "device": "auto"},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ours"}},
        "5": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "core.safetensors"}},
        "6": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["5", 0], "image": ["1", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "core"}},
        "8": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 1], "image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bridged"}},
    }


def test_workflows_save_the_librarys_pixels(comfyui):
    outputs = comfyui.run(_prompt())
    arch, model = comfyui.prepared["arch"], comfyui.prepared["model"]
    lr = torch.from_numpy(comfyui.prepared["lr_u8"]).float().div(255).permute(2, 0, 1)[None]
    scale = CASE["scale"]
    # The library's result (realtime: tiled == whole image), as SaveImage writes it (x255, truncated).
    with torch.no_grad():
        own = model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
        # Core "Load Upscale Model" sees no file metadata, so its sharpness is 0.0.
        core_model = arch.load_model(
            comfyui.base / "models" / "upscale_models" / "core.safetensors", upsampler_alpha=0.0
        )
        core = core_model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(own - core).max() > 2, "sharpness 0.3 vs 0.0 should differ visibly"
    for node, expected in (("4", own), ("7", core), ("9", own)):
        saved = comfyui.image(outputs, node)
        assert saved.shape == (40 * scale, 52 * scale, 3), (node, saved.shape)
        # Truncation to uint8 plus float differences between torch builds: within one level.
        assert np.abs(saved - expected).max() <= 1.0 + 1e-3, (node, np.abs(saved - expected).max())


def test_example_workflow_is_served_and_runs(comfyui):
    templates = comfyui.get("/workflow_templates")
    assert "ParagonSR2_image_upscale" in templates.get(PACK_FOLDER, []), templates
    workflow = comfyui.get(f"/api/workflow_templates/{PACK_FOLDER}/ParagonSR2_image_upscale.json")
    prompt = ui_to_api(workflow, comfyui.object_info())
    assert {n["class_type"] for n in prompt.values()} == {
        "LoadImage",
        "ParagonSR2Loader",
        "ParagonSR2Upscale",
        "SaveImage",
    }
    outputs = comfyui.run(prompt)
    save_id = next(k for k, n in prompt.items() if n["class_type"] == "SaveImage")
    saved = comfyui.image(outputs, save_id)

    loader = next(n for n in prompt.values() if n["class_type"] == "ParagonSR2Loader")
    bundled = loader["inputs"]["model_name"].removeprefix("(bundled) ")
    model = comfyui.prepared["arch"].load_model(PACK_ROOT / "models" / bundled)  # sharpness auto = metadata
    lr = torch.from_numpy(comfyui.prepared["lr_u8"]).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert saved.shape == expected.shape
    assert np.abs(saved - expected).max() <= 1.0 + 1e-3


def test_bad_model_file_shows_the_loaders_message(comfyui):
    prompt = _prompt()
    prompt["2"]["inputs"]["model_name"] = "broken.safetensors"
    prompt = {k: prompt[k] for k in ("1", "2", "3", "4")}
    messages = comfyui.run_expecting_error(prompt)
    error = messages.get("execution_error")
    assert error, messages
    with pytest.raises(comfyui.prepared["arch"].ModelLoadError) as expected:
        comfyui.prepared["arch"].load_model(comfyui.base / "models" / "paragonsr2" / "broken.safetensors")
    assert error["node_type"] == "ParagonSR2Loader" and error["exception_type"] == "ValueError"
    assert error["exception_message"].strip() == str(expected.value)  # ComfyUI appends a newline


# -- current core's UPSCALE_MODEL contract and ComfyUI's model manager -------------------------


def _lr_tensor(comfyui) -> torch.Tensor:
    return torch.from_numpy(comfyui.prepared["lr_u8"]).float().div(255).permute(2, 0, 1)[None]


def _ours_loaded(comfyui) -> list[dict]:
    return [m for m in comfyui.loaded_models() if m["class"] == "ParagonSR2"]


def _free_ours(comfyui) -> None:
    """ComfyUI's "Unload models", waited for until none of our models is loaded."""
    comfyui.free_models(still_loaded=lambda rows: any(r["class"] == "ParagonSR2" for r in rows))


def test_current_core_contract_runs_our_upscale_model(comfyui):
    """A node written like 0.33's Upscale Image (using Model) reads .patcher.load_device and loads
    the patcher with load_models_gpu, then runs the model where that load put it: our Loader's
    output must carry a patcher that moves our weights."""
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "lr.png"}},
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": "own.safetensors", "sharpness": "auto", "precision": "fp32"},
        },
        "3": {
            "class_type": "ParagonSR2TestCurrentCoreUpscale",
            "inputs": {"upscale_model": ["2", 1], "image": ["1", 0]},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "current_core"}},
    }
    outputs = comfyui.run(prompt)
    with torch.no_grad():
        expected = comfyui.prepared["model"](_lr_tensor(comfyui)).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    saved = comfyui.image(outputs, "4")
    assert saved.shape == expected.shape
    assert np.abs(saved - expected).max() <= 1.0 + 1e-3
    patchers = {m["patcher"] for m in _ours_loaded(comfyui)}
    # Made the way core's loader makes one: CoreModelPatcher on newer cores, ModelPatcher on 0.3.64.
    assert patchers & {"CoreModelPatcher", "ModelPatcher"}, comfyui.loaded_models()


@pytest.mark.parametrize("node", ["ParagonSR2Upscale", "ParagonSR2VideoUpscale"])
def test_comfyui_owns_our_weights_and_free_releases_them(comfyui, node):
    _free_ours(comfyui)
    assert not _ours_loaded(comfyui)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "lr.png"}},
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": "own.safetensors", "sharpness": "auto", "precision": "fp32"},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"managed_{node}"}},
    }
    if node == "ParagonSR2Upscale":
        prompt["3"] = {"class_type": node, "inputs": {"model": ["2", 0], "image": ["1", 0], "tile_size": 0}}
    else:
        prompt["3"] = {
            "class_type": node,
            "inputs": {
                "model": ["2", 0],
                "frames": ["1", 0],
                "temporal_strength": 0.2,
                "scene_cut_sensitivity": 0.6,
                "motion_adaptive": False,
                "tile_size": 0,
                "frames_per_chunk": 0,
            },
        }
    comfyui.run(prompt)
    ours = _ours_loaded(comfyui)
    # Exactly one copy, the one the node computed with, in ComfyUI's model manager on its device.
    assert len(ours) == 1, comfyui.loaded_models()
    assert ours[0]["load_device"] == ours[0]["weights_on"] == "cpu"  # --cpu: ComfyUI's device
    assert ours[0]["bytes"] == sum(p.numel() * p.element_size() for p in comfyui.prepared["model"].parameters()) + sum(
        b.numel() * b.element_size() for b in comfyui.prepared["model"].buffers()
    )
    _free_ours(comfyui)
    assert not _ours_loaded(comfyui), comfyui.loaded_models()
    # Queued again with nothing changed the node is cached; a new image runs it and reloads.
    prompt["1"]["inputs"]["image"] = "example.png"
    comfyui.run(prompt)
    assert len(_ours_loaded(comfyui)) == 1, comfyui.loaded_models()


def test_device_saved_on_another_machine_validates_and_falls_back(comfyui):
    prompt = _prompt()
    prompt = {k: prompt[k] for k in ("1", "2", "3", "4")}
    prompt["3"]["inputs"]["device"] = "cuda:7"
    prompt["4"]["inputs"]["filename_prefix"] = "portable"
    outputs = comfyui.run(prompt)  # validation accepted it
    with torch.no_grad():
        expected = comfyui.prepared["model"](_lr_tensor(comfyui)).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(comfyui.image(outputs, "4") - expected).max() <= 1.0 + 1e-3
    assert "cuda:7" in comfyui.log_text() and "using ComfyUI's device instead" in comfyui.log_text()


# -- cancel latency and the first progress message ---------------------------------------------


CANCEL_DELAYS = (1.0, 0.5, 2.0)  # seconds after the first progress message, one run each


def _cancel_once(comfyui, ws, client_id: str, prompt: dict, delay: float) -> dict:
    """Queue ``prompt``, wait for node 3's first progress message, POST /interrupt ``delay`` s
    later, wait for execution_interrupted; the times in seconds."""
    queued = time.monotonic()
    prompt_id = comfyui.queue(prompt, client_id)
    started = first_progress = None
    while first_progress is None:
        message = ws.next_json(queued + RUN_TIMEOUT)
        assert message is not None, "no progress message before the run timeout"
        data = message.get("data", {})
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        if message["type"] == "executing" and data.get("node") == "3":
            started = time.monotonic()
        elif message["type"] == "progress" and data.get("node") == "3":
            first_progress = time.monotonic()
        elif message["type"] in ("execution_error", "execution_success"):
            raise AssertionError(f"the run ended before any progress: {message}")
    time.sleep(delay)  # now inside a tile
    interrupted_at = time.monotonic()
    comfyui.post("/interrupt", {})
    stopped = None
    while stopped is None:
        message = ws.next_json(interrupted_at + 120)
        assert message is not None, "no execution_interrupted within 120 s of POST /interrupt"
        assert message["type"] != "execution_success", "the run finished instead of stopping"
        if message["type"] == "execution_interrupted":
            stopped = time.monotonic()
    entry = comfyui.get(f"/history/{prompt_id}").get(prompt_id, {})
    assert entry.get("status", {}).get("status_str") != "success"
    return {
        "node_to_progress": first_progress - (started or queued),
        "queue_to_progress": first_progress - queued,
        "cancel": stopped - interrupted_at,
    }


def test_cancel_latency_and_first_progress(comfyui):
    """photo x2 on a 2048x1536 image with default settings: progress must start soon after the
    node starts and POST /interrupt must stop it soon (targets 5 s and 3 s). The measured values
    are printed and asserted only against a hang ceiling: timings on shared CPU cores are noisy,
    and speed belongs in benchmarks/."""
    client_id = uuid.uuid4().hex
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "big.png"}},
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": "photo_x2.safetensors", "sharpness": "auto", "precision": "auto"},
        },
        "3": {"class_type": "ParagonSR2Upscale", "inputs": {"model": ["2", 0], "image": ["1", 0], "tile_size": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "cancelled"}},
    }
    ws = comfyui.websocket(client_id)
    try:
        runs = [_cancel_once(comfyui, ws, client_id, prompt, delay) for delay in CANCEL_DELAYS]
    finally:
        ws.close()
    for key in ("node_to_progress", "queue_to_progress", "cancel"):
        values = sorted(r[key] for r in runs)
        print(
            f"\nParagonSR2 photo x2 {CANCEL_IMAGE[1]}x{CANCEL_IMAGE[0]} (CPU, defaults) {key}: "
            f"median {values[len(values) // 2]:.2f} s, all {', '.join(f'{v:.2f}' for v in values)} s"
        )
    assert max(r["node_to_progress"] for r in runs) < 60 and max(r["cancel"] for r in runs) < 60, runs


# -- templates -------------------------------------------------------------------------------

FRONTEND_ONLY_NODES = {"MarkdownNote", "Note", "Reroute", "PrimitiveNode"}
TEMPLATES = ("ParagonSR2_image_upscale", "ParagonSR2_video_upscale", "ParagonSR2_video_streaming")


def _template(comfyui, name: str) -> dict:
    return comfyui.get(f"/api/workflow_templates/{PACK_FOLDER}/{name}.json")


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_matches_object_info(comfyui, name):
    """Every node exists, every link joins an output and an input of the link's type, widget
    values line up with the widget inputs, and our nodes carry registry properties."""
    assert name in comfyui.get("/workflow_templates")[PACK_FOLDER]
    workflow, info = _template(comfyui, name), comfyui.object_info()
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in nodes.values():
        if node["type"] in FRONTEND_ONLY_NODES:
            continue
        assert node["type"] in info, f"{name}: node type {node['type']} unknown to this ComfyUI"
        spec = info[node["type"]]
        inputs = {k: v for section in ("required", "optional") for k, v in spec["input"].get(section, {}).items()}
        widgets = [k for k, v in inputs.items() if spec_type(v) in WIDGET_TYPES]
        required = [k for k in widgets if k in spec["input"].get("required", {})]
        values = node.get("widgets_values") or []
        uploads = sum(
            1 for v in inputs.values() if len(v) > 1 and (v[1].get("image_upload") or v[1].get("video_upload"))
        )
        # A newer core may add optional widgets (0.33's Create Video: bit_depth) that a workflow
        # saved by an older frontend lacks; the frontend gives them their defaults.
        assert len(required) <= len(values) <= len(widgets) + uploads, (name, node["type"], widgets, values)
        for slot in node.get("inputs", []):
            assert slot["name"] in inputs, (name, node["type"], slot["name"])
        if node["type"].startswith("ParagonSR2"):
            props = node.get("properties", {})
            assert props.get("cnr_id") == "comfyui-paragonsr2" and props.get("ver"), (name, node["type"], props)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        out_type = info[nodes[src]["type"]]["output"][src_slot]
        target = nodes[dst]["inputs"][dst_slot]
        dst_spec = info[nodes[dst]["type"]]["input"]
        in_type = spec_type({**dst_spec.get("required", {}), **dst_spec.get("optional", {})}[target["name"]])
        assert target["link"] == link_id and kind == out_type == in_type, (name, link_id, kind, out_type, in_type)
    required = [
        (n["id"], k)
        for n in nodes.values()
        if n["type"] not in FRONTEND_ONLY_NODES
        for k in info[n["type"]]["input"].get("required", {})
    ]
    prompt = ui_to_api(workflow, info)
    missing = [(i, k) for i, k in required if k not in prompt[str(i)]["inputs"]]
    assert not missing, f"{name}: required inputs neither linked nor set: {missing}"


def _video_facts(data: bytes) -> dict:
    from io import BytesIO

    import av

    with av.open(BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video=0))
        facts = {"frames": frames, "fps": float(video.average_rate), "size": (video.width, video.height), "audio": None}
        if audio is not None:
            container.seek(0)
            samples = sum(f.samples for f in container.decode(audio=0))
            facts["audio"] = {
                "codec": audio.codec_context.name,
                "rate": audio.sample_rate,
                "seconds": samples / audio.sample_rate,
            }
    return facts


def test_video_template_keeps_frames_fps_and_audio(comfyui):
    pytest.importorskip("av")
    workflow, info = _template(comfyui, "ParagonSR2_video_upscale"), comfyui.object_info()
    prompt = ui_to_api(workflow, info)
    assert {n["class_type"] for n in prompt.values()} == {
        "LoadVideo",
        "GetVideoComponents",
        "ParagonSR2Loader",
        "ParagonSR2VideoUpscale",
        "CreateVideo",
        "SaveVideo",
    }
    note = next(n for n in workflow["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert "assets/sample_clip.mp4" in note and "input" in note
    loader = next(n for n in prompt.values() if n["class_type"] == "LoadVideo")
    assert loader["inputs"]["file"] == SAMPLE_CLIP.name
    outputs = comfyui.run(prompt)
    save_id = next(k for k, n in prompt.items() if n["class_type"] == "SaveVideo")
    result = _video_facts(comfyui.video_bytes(outputs, save_id))
    source = _video_facts(SAMPLE_CLIP.read_bytes())
    assert source["audio"] is not None and source["frames"] > 1
    assert result["frames"] == source["frames"]
    assert abs(result["fps"] - source["fps"]) < 1e-3
    assert result["size"] == (source["size"][0] * 2, source["size"][1] * 2)  # the x2 demo model
    assert result["audio"] is not None, "the audio track was lost"
    assert abs(result["audio"]["seconds"] - source["audio"]["seconds"]) < 0.1, (result, source)


# -- long videos: the temporal state across the prompts of one meta batch ----------------------


def _clip_prompt(
    first: int,
    count: int,
    prefix: str,
    requeue: int | None = None,
    *,
    strength: float = 0.6,
    sensitivity: float = 0.0,
    start_frame: int = 0,
) -> dict:
    """Frames [first, first + count) of the sample clip through Video Upscale; with ``requeue``
    under a meta batch manager (as VHS queues batch ``requeue`` of a run)."""
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": SAMPLE_CLIP.name}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": first, "length": count}},
        "4": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": "own.safetensors", "sharpness": "auto", "precision": "fp32"},
        },
        "6": {
            "class_type": "ParagonSR2VideoUpscale",
            "inputs": {
                "model": ["4", 0],
                "frames": ["3", 0],
                "temporal_strength": strength,
                "scene_cut_sensitivity": sensitivity,
                "motion_adaptive": False,
                "tile_size": 0,
                "frames_per_chunk": 0,
                "start_frame": start_frame,
            },
        },
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }
    if requeue is not None:
        prompt["5"] = {
            "class_type": "ParagonSR2TestMetaBatch",
            "inputs": {"frames_per_batch": count, "requeue": requeue},
        }
        prompt["6"]["inputs"]["meta_batch"] = ["5", 0]
    return prompt


def test_meta_batch_carries_the_temporal_state_between_prompts(comfyui):
    half = 5
    whole = comfyui.images(comfyui.run(_clip_prompt(0, 2 * half, "meta_whole")), "7")
    first = comfyui.images(comfyui.run(_clip_prompt(0, half, "meta_a", requeue=0)), "7")
    second = comfyui.images(comfyui.run(_clip_prompt(half, half, "meta_b", requeue=1)), "7")
    joined = np.concatenate([first, second])
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() <= 1.0 + 1e-3, np.abs(joined - whole).max()
    # Batch 0 of a new run starts fresh, so the state mattered: the second half on its own differs.
    fresh = comfyui.images(comfyui.run(_clip_prompt(half, half, "meta_fresh", requeue=0)), "7")
    assert np.abs(fresh[0] - whole[half]).max() > 2
    # A gap (batch 2 after a fresh batch 0) never joins frames that are not consecutive.
    gap = comfyui.images(comfyui.run(_clip_prompt(half, half, "meta_gap", requeue=2)), "7")
    assert np.abs(gap - fresh).max() <= 1.0 + 1e-3
    assert "meta batch 2 has no state from batch 1" in comfyui.log_text()


def test_two_ranges_with_start_frame_join_seamlessly(comfyui):
    """A clip split over two workflows (two machines, say): range A = frames [0, k), range B =
    frames [k - W, n) with start_frame W (its first W frames only rebuild the temporal state);
    A's and B's outputs joined equal one run over [0, n) (docs: start_frame)."""
    from paragonsr2_pack.engines.video import chunks

    n, k, strength = 24, 12, 0.2
    warmup = chunks.warmup_frames(strength)
    assert 0 < warmup < k
    whole = comfyui.images(comfyui.run(_clip_prompt(0, n, "range_whole", strength=strength, sensitivity=0.6)), "7")
    part_a = comfyui.images(comfyui.run(_clip_prompt(0, k, "range_a", strength=strength, sensitivity=0.6)), "7")
    tail = n - k + warmup
    range_b = _clip_prompt(k - warmup, tail, "range_b", strength=strength, sensitivity=0.6, start_frame=warmup)
    part_b = comfyui.images(comfyui.run(range_b), "7")
    assert part_a.shape[0] == k and part_b.shape[0] == n - k  # the warm-up frames are not output
    joined = np.concatenate([part_a, part_b])
    assert np.abs(joined - whole).max() <= 1.0 + 1e-3, np.abs(joined - whole).max()

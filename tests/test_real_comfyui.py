"""The pack inside a real ComfyUI server: nodes listed, a workflow queued, saved pixels checked.

Runs when COMFYUI_DIR points at a ComfyUI checkout (COMFYUI_PYTHON: its interpreter, default
this one); skipped otherwise. The server gets a temporary --base-directory (models, input,
output, custom_nodes with a link to this pack), so the checkout itself is never touched.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from packlib import PACK_ROOT, load_reference, natural_image, reference_cases

COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file():
    pytest.skip("set COMFYUI_DIR to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run "
                "the real-ComfyUI test; see docs/nodes.md", allow_module_level=True)

PYTHON = os.environ.get("COMFYUI_PYTHON") or sys.executable
PACK_FOLDER = "ComfyUI-ParagonSR2"
STARTUP_TIMEOUT = 240
RUN_TIMEOUT = 300
CASE = next(c for c in reference_cases() if c["variant"] == "realtime" and c["upsampler_alpha"] > 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url: str, payload: dict):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # ComfyUI explains a rejected prompt in the body
        raise AssertionError(f"POST {url} -> {exc.code}: {exc.read().decode()[:2000]}") from None


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory):
    """A ComfyUI server on a free loopback port with a throw-away base directory."""
    from PIL import Image

    base = tmp_path_factory.mktemp("comfyui_base")
    for sub in ("custom_nodes", "input", "output", "models/upscale_models", "models/paragonsr2"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(PACK_ROOT, target_is_directory=True)

    arch = sys.modules["paragonsr2_pack.paragonsr2_arch"]
    model, _ = load_reference(CASE)
    arch.save_model(model, base / "models" / "paragonsr2" / "own.safetensors")
    arch.save_model(model, base / "models" / "upscale_models" / "core.safetensors")
    (base / "models" / "paragonsr2" / "broken.safetensors").write_bytes(b"\x00" * 64)
    lr = natural_image(40, 52, seed=11)
    pixels = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(base / "input" / "lr.png")
    Image.fromarray(pixels).save(base / "input" / "example.png")  # what the template loads

    port = _free_port()
    log_path = base / "server.log"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--disable-auto-launch", "--base-directory", str(base)],
            cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                _get(url + "/system_stats", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer in {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.5)
        yield dict(url=url, base=base, log=log_path, model=model, lr_u8=pixels, arch=arch)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the session we started (server + its children)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_pack_imports_and_nodes_are_listed(comfyui):
    log = comfyui["log"].read_text()
    bad = [line for line in log.splitlines()
           if ("IMPORT FAILED" in line or "Cannot import" in line) and PACK_FOLDER in line]
    assert not bad, "\n".join(bad)
    assert re.search(r"custom_nodes/" + re.escape(PACK_FOLDER), log), "the pack was not loaded:\n" + log[-3000:]
    info = _get(comfyui["url"] + "/object_info")
    loader, upscale = info["ParagonSR2Loader"], info["ParagonSR2Upscale"]
    assert loader["output"] == ["PARAGONSR2_MODEL", "UPSCALE_MODEL"]
    assert loader["category"] == "image/upscaling/ParagonSR2" and loader["description"]
    names = loader["input"]["required"]["model_name"][0]
    assert {"own.safetensors", "core.safetensors"} <= set(names)
    assert set(loader["input"]["required"]) == {"model_name", "sharpness", "precision"}
    assert {"model", "image", "tile_size"} <= set(upscale["input"]["required"])
    assert upscale["output"] == ["IMAGE"]
    for spec in upscale["input"]["required"].values():
        assert spec[1].get("tooltip")


def _prompt():
    """API-format graph: our loader+upscale, core loader+upscale, our UPSCALE_MODEL into core."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "lr.png"}},
        "2": {"class_type": "ParagonSR2Loader",
              "inputs": {"model_name": "own.safetensors", "sharpness": "auto", "precision": "fp32"}},
        "3": {"class_type": "ParagonSR2Upscale",
              "inputs": {"model": ["2", 0], "image": ["1", 0], "tile_size": 16, "halo": -1, "device": "auto"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ours"}},
        "5": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "core.safetensors"}},
        "6": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["5", 0], "image": ["1", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "core"}},
        "8": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 1], "image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bridged"}},
    }


def _run_prompt(url: str, prompt: dict, expect_error: bool = False) -> dict:
    prompt_id = _post(url + "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})["prompt_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        entry = _get(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            status = entry["status"]
            if expect_error:
                return dict(status.get("messages", []))
            assert status.get("status_str") == "success", json.dumps(status.get("messages"), indent=1)[:4000]
            return entry["outputs"]
        time.sleep(0.5)
    raise AssertionError(f"prompt {prompt_id} did not finish in {RUN_TIMEOUT} s")


def _saved(url: str, outputs: dict, node: str) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    image = outputs[node]["images"][0]
    query = f"filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}"
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as r:
        return np.asarray(Image.open(BytesIO(r.read())).convert("RGB")).astype(np.float64)


def test_workflows_save_the_librarys_pixels(comfyui):
    outputs = _run_prompt(comfyui["url"], _prompt())
    arch, model = comfyui["arch"], comfyui["model"]
    lr = torch.from_numpy(comfyui["lr_u8"]).float().div(255).permute(2, 0, 1)[None]
    scale = CASE["scale"]
    # The library's result (realtime: tiled == whole image), as SaveImage writes it (x255, truncated).
    with torch.no_grad():
        own = model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
        # Core "Load Upscale Model" sees no file metadata, so its sharpness is 0.0.
        core_model = arch.load_model(comfyui["base"] / "models" / "upscale_models" / "core.safetensors",
                                     upsampler_alpha=0.0)
        core = core_model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(own - core).max() > 2, "sharpness 0.3 vs 0.0 should differ visibly"
    for node, expected in (("4", own), ("7", core), ("9", own)):
        saved = _saved(comfyui["url"], outputs, node)
        assert saved.shape == (40 * scale, 52 * scale, 3), (node, saved.shape)
        # Truncation to uint8 plus float differences between torch builds: within one level.
        assert np.abs(saved - expected).max() <= 1.0 + 1e-3, (node, np.abs(saved - expected).max())


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def _ui_to_api(workflow: dict, object_info: dict) -> dict:
    """A UI-format workflow as the API graph the frontend would queue (frontend-only nodes such
    as notes dropped; widget values matched to widget inputs in declaration order)."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if info is None or node.get("mode", 0) != 0:
            continue
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, values = {}, list(node.get("widgets_values") or [])
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                is_widget = isinstance(spec[0], list) or spec[0] in WIDGET_TYPES
                value = values.pop(0) if is_widget and values else None
                if name in linked:
                    inputs[name] = [str(linked[name][1]), linked[name][2]]
                elif is_widget and value is not None:
                    inputs[name] = value
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_example_workflow_is_served_and_runs(comfyui):
    url = comfyui["url"]
    templates = _get(url + "/workflow_templates")
    assert "ParagonSR2_image_upscale" in templates.get(PACK_FOLDER, []), templates
    workflow = _get(f"{url}/api/workflow_templates/{PACK_FOLDER}/ParagonSR2_image_upscale.json")
    prompt = _ui_to_api(workflow, _get(url + "/object_info"))
    assert {n["class_type"] for n in prompt.values()} == {"LoadImage", "ParagonSR2Loader", "ParagonSR2Upscale", "SaveImage"}
    outputs = _run_prompt(url, prompt)
    save_id = next(k for k, n in prompt.items() if n["class_type"] == "SaveImage")
    saved = _saved(url, outputs, save_id)

    loader = next(n for n in prompt.values() if n["class_type"] == "ParagonSR2Loader")
    bundled = loader["inputs"]["model_name"].removeprefix("(bundled) ")
    model = comfyui["arch"].load_model(PACK_ROOT / "models" / bundled)  # sharpness auto = metadata
    lr = torch.from_numpy(comfyui["lr_u8"]).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = model(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert saved.shape == expected.shape
    assert np.abs(saved - expected).max() <= 1.0 + 1e-3


def test_bad_model_file_shows_the_loaders_message(comfyui):
    prompt = _prompt()
    prompt["2"]["inputs"]["model_name"] = "broken.safetensors"
    prompt = {k: prompt[k] for k in ("1", "2", "3", "4")}
    messages = _run_prompt(comfyui["url"], prompt, expect_error=True)
    error = messages.get("execution_error")
    assert error, messages
    with pytest.raises(comfyui["arch"].ModelLoadError) as expected:
        comfyui["arch"].load_model(comfyui["base"] / "models" / "paragonsr2" / "broken.safetensors")
    assert error["node_type"] == "ParagonSR2Loader" and error["exception_type"] == "ValueError"
    assert error["exception_message"].strip() == str(expected.value)  # ComfyUI appends a newline

"""The browser stage: every example workflow and every saved-workflow fixture loaded in ComfyUI's
own frontend (headless Chromium), converted and queued by the frontend, run by the server.

For each ComfyUI version configured (tests/comfyui_probe; .ci/comfyui.sh runs 0.3.64 and 0.33.0)
and each workflow in example_workflows/*.json and tests/fixtures/workflows/*.json:
``app.loadGraphData(workflow)`` (what opening a saved file does), ``app.graphToPrompt()`` (the
frontend's conversion, which is where saved widget values meet the current node definitions) and
``app.queuePrompt(0)`` (the Queue button); then /history must show the prompt ran without error,
every output node's file must exist, and a fixture's saved frames must equal its expected
pixels (tests/fixtures/workflows/README.md) within one 8-bit level.

Needs selenium (PyPI) and Debian's chromium + chromium-driver (``apt-get install chromium
chromium-driver``; no downloaded browser builds); skipped with the reason without them.
The user setting Comfy.TutorialCompleted is set first (POST /settings) so no template dialog
covers the canvas; each browser gets a fresh --user-data-dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from comfyui_probe import PACK_ROOT, server_fixture

pytestmark = pytest.mark.comfyui

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FIXTURES = PACK_ROOT / "tests" / "fixtures" / "workflows"
EXAMPLES = sorted((PACK_ROOT / "example_workflows").glob("*.json"))
SAVED = sorted(FIXTURES.glob("*.json"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1280,900",
)
PAGE_TIMEOUT = 180  # seconds for the frontend to load and register every node (2 busy cores)
OUTPUT_NODES = {"SaveImage", "SaveVideo", "SaveAnimatedWEBP", "SaveAnimatedPNG"}


def _prepare(base: Path) -> dict:
    """Inputs the workflows name (the templates' example.png and sample clip, the fixtures' own
    image and clip) and an extra_model_paths.yaml putting the bundled demo model into
    upscale_models, as a user's shared model folder would."""
    from PIL import Image

    from packlib import natural_image

    lr = natural_image(40, 52, seed=11)[0].permute(1, 2, 0).numpy()
    Image.fromarray((lr * 255).round().astype(np.uint8)).save(base / "input" / "example.png")
    shutil.copy(PACK_ROOT / "assets" / "sample_clip.mp4", base / "input" / "sample_clip.mp4")
    for item in FIXTURES.glob("*"):
        if item.suffix not in (".json", ".py", ".md") and not item.name.startswith("expected_"):
            shutil.copy(item, base / "input" / item.name)
    (base / "extra_model_paths.yaml").write_text(
        f"paragonsr2_bundled:\n  base_path: {json.dumps(str(PACK_ROOT))}\n  upscale_models: models\n",
        encoding="utf-8",
    )
    return {}


comfyui = server_fixture(
    prepare=_prepare, extra_args=lambda base: ("--extra-model-paths-config", str(base / "extra_model_paths.yaml"))
)


@pytest.fixture(scope="module")
def browser(comfyui, tmp_path_factory):
    """Headless Chromium on the server's page, the frontend loaded and its nodes registered."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are missing (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    comfyui.post("/settings", {"Comfy.TutorialCompleted": True})
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_script_timeout(PAGE_TIMEOUT)
        driver.get(comfyui.url)
        ready = driver.execute_async_script(_JS_WAIT_FOR_APP, PAGE_TIMEOUT * 1000)
        assert ready.get("ok"), f"the frontend did not come up: {ready}"
        yield driver
    finally:
        driver.quit()


# Resolves when the app exists and knows our nodes (registered from /object_info).
_JS_WAIT_FOR_APP = """
const [timeoutMs, done] = [arguments[0], arguments[arguments.length - 1]];
const started = Date.now();
(function poll() {
  const app = window.app ?? window.comfyAPI?.app?.app;
  const types = globalThis.LiteGraph?.registered_node_types ?? {};
  if (app?.graph && types.ParagonSR2Loader && types.SaveImage) {
    done({ok: true, frontend: window.__COMFYUI_FRONTEND_VERSION__ ?? null});
  } else if (Date.now() - started > timeoutMs) {
    done({ok: false, app: !!app, graph: !!app?.graph, nodes: Object.keys(types).length});
  } else {
    setTimeout(poll, 250);
  }
})();
"""

# Load the workflow as opening a file does, let the frontend convert it and press Queue. The
# frontend's api.queuePrompt answers with the server's {prompt_id}; it is wrapped to keep that
# answer (or the error the server sent back, e.g. a validation failure).
_JS_LOAD_CONVERT_QUEUE = """
const [workflow, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const app = window.app ?? window.comfyAPI.app.app;
  const api = app.api ?? window.comfyAPI.api.api;
  if (!api.__paragonsr2Wrapped) {
    const original = api.queuePrompt.bind(api);
    api.queuePrompt = async (...args) => {
      try {
        const answer = await original(...args);
        window.__paragonsr2Queued.push({answer});
        return answer;
      } catch (error) {
        window.__paragonsr2Queued.push({error: String(error?.message ?? error), response: error?.response ?? null});
        throw error;
      }
    };
    api.__paragonsr2Wrapped = true;
  }
  window.__paragonsr2Queued = [];
  await app.loadGraphData(workflow);
  const converted = await app.graphToPrompt();
  await app.queuePrompt(0, 1);
  done({ok: true, prompt: converted.output, queued: window.__paragonsr2Queued});
})().catch((error) => done({ok: false, error: String(error?.stack ?? error), queued: window.__paragonsr2Queued}));
"""


def _expected_pixels(workflow_path: Path) -> np.ndarray | None:
    """The fixture's expected SaveImage result (frames stacked vertically), when it has one."""
    from PIL import Image

    expected = workflow_path.with_name(f"expected_{workflow_path.stem}.png")
    return np.asarray(Image.open(expected).convert("RGB")).astype(np.float64) if expected.is_file() else None


@pytest.mark.parametrize("path", EXAMPLES + SAVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_workflow_loads_converts_and_runs_in_the_frontend(comfyui, browser, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    result = browser.execute_async_script(_JS_LOAD_CONVERT_QUEUE, workflow)
    assert result.get("ok"), result.get("error")
    answers = [q for q in result["queued"] if "answer" in q]
    assert len(answers) == 1, f"the frontend did not queue it: {json.dumps(result['queued'])[:3000]}"
    prompt_id = answers[0]["answer"]["prompt_id"]
    prompt = result["prompt"]

    entry = comfyui.wait(prompt_id)
    status = entry["status"]
    assert status.get("status_str") == "success", json.dumps(status.get("messages"), indent=1)[:4000]

    outputs = entry["outputs"]
    savers = [node_id for node_id, node in prompt.items() if node["class_type"] in OUTPUT_NODES]
    assert savers, f"{path.name} has no output node"
    for node_id in savers:
        listed = [ref for refs in outputs.get(node_id, {}).values() if isinstance(refs, list) for ref in refs]
        files = [ref for ref in listed if isinstance(ref, dict) and ref.get("filename")]  # not "animated": [true]
        assert files, f"{prompt[node_id]['class_type']} {node_id} saved nothing: {outputs.get(node_id)}"
        for ref in files:
            assert len(comfyui.file_bytes(ref)) > 0, ref

    expected = _expected_pixels(path)
    if expected is not None:
        image_savers = [n for n in savers if prompt[n]["class_type"] == "SaveImage"]
        assert len(image_savers) == 1, image_savers
        saved = comfyui.images(outputs, image_savers[0])
        stacked = np.concatenate(list(saved), axis=0)
        assert stacked.shape == expected.shape, (stacked.shape, expected.shape)
        diff = np.abs(stacked - expected).max()
        assert diff <= 1.0, f"{path.name}: {diff} levels from the pixels the pre-V3 nodes saved"

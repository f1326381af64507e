"""Real ComfyUI servers for tests: one per installed ComfyUI version per test module.

Which installs: ``COMFYUI_DIR`` (+ ``COMFYUI_PYTHON``, its interpreter) and/or
``COMFYUI_SERVERS='DIR=PYTHON;DIR=PYTHON'``. Without any, every test that uses the fixture is
skipped with the reason. ``.ci/comfyui.sh`` builds 0.3.64 and 0.33.0 from their snapshots and runs
``-m comfyui`` once per version; ``install_params()`` (which ``server_fixture`` uses, and which a
test that needs an install but no server can parametrise over) marks every param ``comfyui``.

A test module gets servers like this::

    from comfyui_probe import server_fixture

    def _prepare(base):                      # runs before each server starts
        save_model(..., base / "models" / "upscale_models" / "x.safetensors")
        Image.fromarray(pixels).save(base / "input" / "lr.png")
        return {"pixels": pixels}            # -> server.prepared

    comfyui = server_fixture(prepare=_prepare)   # the fixture's name is the variable's

    def test_something(comfyui):             # runs once per version: test_something[comfyui-0.33.0]
        outputs = comfyui.run({"1": {"class_type": "LoadImage", "inputs": {"image": "lr.png"}}, ...})
        saved = comfyui.image(outputs, "4")  # float64 HxWx3, 0..255 as SaveImage wrote it
        if comfyui.at_least(0, 33): ...      # version-dependent expectations

``ComfyServer`` (comfyui_probe.server; calls from comfyui_probe.client.ComfyClient):
``url``, ``port``, ``base`` (its --base-directory), ``version``, ``at_least(*v)``, ``log_text()``,
``prepared``; ``get(path)``, ``post(path, payload)``, ``object_info()``; ``queue(prompt)`` ->
prompt id, ``wait(prompt_id)`` -> history entry, ``run(prompt)`` -> outputs (asserts success),
``run_expecting_error(prompt)`` -> status messages; ``image``/``images``/``video_bytes``/
``file_bytes`` fetch saved files through /view; ``loaded_models()`` and ``free_models()`` (the
model manager, through the probe route); ``websocket(client_id)`` -> ``WebSocket.next_json``.
``spec_type(spec)`` / ``combo_options(spec)`` read /object_info input specs (classic and V3
spellings); ``ui_to_api(workflow, object_info)`` converts a UI-format workflow (a shortcut; the browser stage,
tests/browser, uses the frontend's own conversion). ``server_pid(port)``, ``process_memory(pid,
field)`` and ``reset_peak(pid)`` read a server's memory from /proc (comfyui_probe.memory).

Each base directory's custom_nodes links this pack (as ``ComfyUI-ParagonSR2``) and
``probe_nodes/``: test-only nodes and routes (a node written to current core's UPSCALE_MODEL
contract, a stand-in for VideoHelperSuite's meta batch manager, ``GET
/paragonsr2_test/loaded_models``). Never part of the pack; .comfyignore leaves tests/ out.

Only the standard library, numpy, PIL and pytest are imported here (no comfy), so any test
module can import this package.
"""

from .client import RUN_TIMEOUT, WIDGET_TYPES, ComfyClient, WebSocket, combo_options, spec_type, ui_to_api
from .memory import process_memory, reset_peak, server_pid
from .server import (
    PACK_FOLDER,
    PACK_ROOT,
    ComfyServer,
    Install,
    configured_installs,
    install_params,
    make_base,
    server_fixture,
    start_server,
)

__all__ = [
    "PACK_FOLDER",
    "PACK_ROOT",
    "RUN_TIMEOUT",
    "WIDGET_TYPES",
    "ComfyClient",
    "ComfyServer",
    "Install",
    "WebSocket",
    "combo_options",
    "configured_installs",
    "install_params",
    "make_base",
    "process_memory",
    "reset_peak",
    "server_fixture",
    "server_pid",
    "spec_type",
    "start_server",
    "ui_to_api",
]

"""Talking to a running ComfyUI server: queue a prompt, wait for it, fetch what it saved.

Standard library plus numpy/PIL (the test environment has no HTTP or websocket package).
``ComfyClient`` is what ``comfyui_probe.server.ComfyServer`` inherits; it only needs ``url``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from io import BytesIO

import numpy as np

RUN_TIMEOUT = 300  # seconds one prompt may take on CI's 2 CPU cores

# Input types the frontend shows as widgets (their values sit in a UI workflow's widgets_values,
# in declaration order). COMFY_DYNAMICCOMBO_V3 (0.33's Save Video format) is a combo whose
# chosen option adds inputs; as a plain string it validates like a combo.
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "COMFY_DYNAMICCOMBO_V3")


def spec_type(spec) -> str:
    """The type name of an /object_info input spec (a list of options is a combo)."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def combo_options(spec) -> list:
    """A combo's choices: classic nodes list them first, V3 nodes as ``["COMBO", {"options": [...]}]``."""
    return spec[0] if isinstance(spec[0], list) else list(spec[1].get("options", []))


class ComfyClient:
    """HTTP calls against ``self.url`` (``http://127.0.0.1:PORT``)."""

    url: str
    port: int

    # -- plain HTTP ---------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 30):
        """GET ``path`` as JSON."""
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, payload: dict):
        """POST JSON; the answer as JSON (None for an empty body, e.g. /interrupt and /free).
        A rejected request fails with ComfyUI's explanation (the response body)."""
        req = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                return json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode()[:2000]}") from None

    def object_info(self) -> dict:
        return self.get("/object_info")

    # -- prompts ------------------------------------------------------------------------------

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        """POST /prompt (API format); the prompt id."""
        answer = self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """Poll /history until the prompt has finished (either way); its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = RUN_TIMEOUT) -> dict:
        """Queue, wait, assert success; the outputs ({node id: {"images": [...], ...}})."""
        entry = self.wait(self.queue(prompt), timeout)
        status = entry["status"]
        assert status.get("status_str") == "success", json.dumps(status.get("messages"), indent=1)[:4000]
        return entry["outputs"]

    def run_expecting_error(self, prompt: dict, timeout: float = RUN_TIMEOUT) -> dict:
        """Queue, wait; the status messages by type (e.g. ``["execution_error"]``)."""
        entry = self.wait(self.queue(prompt), timeout)
        return dict(entry["status"].get("messages", []))

    # -- outputs ------------------------------------------------------------------------------

    def file_bytes(self, ref: dict) -> bytes:
        """A saved file named by an output entry ({"filename", "subfolder", "type"})."""
        query = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=30) as r:
            return r.read()

    def image(self, outputs: dict, node: str, index: int = 0) -> np.ndarray:
        """Saved image ``index`` of ``node`` as float64 HxWx3 in 0..255."""
        from PIL import Image

        data = self.file_bytes(outputs[node]["images"][index])
        return np.asarray(Image.open(BytesIO(data)).convert("RGB")).astype(np.float64)

    def images(self, outputs: dict, node: str) -> np.ndarray:
        """Every image ``node`` saved, stacked: NxHxWx3 float64."""
        return np.stack([self.image(outputs, node, i) for i in range(len(outputs[node]["images"]))])

    def video_bytes(self, outputs: dict, node: str) -> bytes:
        """The file a video-saving node wrote (core Save Video lists it under "images")."""
        ref = next(iter(outputs[node].values()))[0]
        return self.file_bytes(ref)

    # -- test-only routes (tests/comfyui_probe/probe_nodes) -----------------------------------

    def loaded_models(self) -> list[dict]:
        """ComfyUI's model manager right now: class, patcher, devices, dtype, bytes."""
        return self.get("/paragonsr2_test/loaded_models")

    def free_models(self, still_loaded=lambda rows: bool(rows), timeout: float = 30) -> None:
        """POST /free {"unload_models": true} ("Unload models") and wait until the prompt worker
        has done it (between prompts): until ``still_loaded(loaded_models())`` is false."""
        self.post("/free", {"unload_models": True})
        deadline = time.monotonic() + timeout
        while still_loaded(self.loaded_models()):
            assert time.monotonic() < deadline, f"still loaded {timeout} s after POST /free: {self.loaded_models()}"
            time.sleep(0.25)

    def websocket(self, client_id: str) -> WebSocket:
        return WebSocket(self.port, client_id)


def ui_to_api(workflow: dict, object_info: dict, frontend_only=("MarkdownNote", "Note", "Reroute")) -> dict:
    """A UI-format workflow as an API prompt, the way the frontend converts one: frontend-only
    nodes and muted/bypassed nodes dropped, links kept, widget values matched to the widget
    inputs in declaration order (an upload button adds no value; "control_after_generate" does
    not occur in this pack's workflows). A test shortcut: the browser stage uses the frontend's own
    conversion."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if info is None or node["type"] in frontend_only or node.get("mode", 0) != 0:
            continue
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, values = {}, list(node.get("widgets_values") or [])
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                is_widget = spec_type(spec) in WIDGET_TYPES
                value = values.pop(0) if is_widget and values else None
                if name in linked:
                    inputs[name] = [str(linked[name][1]), linked[name][2]]
                elif is_widget and value is not None:
                    inputs[name] = value
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


class WebSocket:
    """The few lines of RFC 6455 a client needs to read ComfyUI's JSON messages (stdlib only).
    Unfragmented frames, no extensions; binary frames (previews) are skipped."""

    def __init__(self, port: int, client_id: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("websocket closed")
        return chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next_json(self, deadline: float) -> dict | None:
        """The next text message as JSON; None at the deadline (a ``time.monotonic()`` value)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                b0, b1 = self._take(2)
                size = b1 & 0x7F
                if size == 126:
                    size = struct.unpack(">H", self._take(2))[0]
                elif size == 127:
                    size = struct.unpack(">Q", self._take(8))[0]
                payload = self._take(size)
            except TimeoutError:
                return None
            if b0 & 0x0F == 1:
                return json.loads(payload)

    def close(self):
        self.sock.close()

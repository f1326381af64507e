"""ParagonSR2 Upscale Video (streaming) inside real ComfyUI servers (every configured version).

Load Video -> the streaming node -> Save Video keeps the frame count, the frame times and the
audio; Save Video's file holds the node's video packets byte for byte (it remuxed, no second
encode); the server's peak RSS does not grow with the clip's length (48 vs 192 frames, a
generous structural bound: the figures belong in benchmarks/video_memory.py); POST /interrupt
mid-run, then the same prompt again, continues from the kept segment (the log says so) and
gives exactly the uninterrupted result (lossless codec); the streaming template runs.

Skipped, with the reason, without a ComfyUI to test against (COMFYUI_DIR / COMFYUI_SERVERS,
see tests/comfyui_probe).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from comfyui_probe import PACK_FOLDER, PACK_ROOT, process_memory, reset_peak, server_fixture, server_pid, ui_to_api

av = pytest.importorskip("av", reason="the video checks read files with PyAV (pip install av)")
from test_stream_video_node import write_clip  # noqa: E402

from packlib import video_facts  # noqa: E402

pytestmark = pytest.mark.comfyui

SAMPLE_CLIP = PACK_ROOT / "assets" / "sample_clip.mp4"
DEMO = "(bundled) ParagonSR2_realtime_x2_demo.safetensors"
SHORT, LONG = 48, 192  # frames of the memory clips (4x longer)
MEMORY_SIZE = (160, 96)
SEGMENT = 240  # engines/video/stream.DEFAULT_SEGMENT_FRAMES (the node's resume granularity)
RESUME_FRAMES = 400  # one kept segment, then enough frames left to cancel in
RSS_BOUND = (1.3, 150 * 2**20)  # long run's peak <= short run's x 1.3 + 150 MB (above idle)
NODE_DEFAULTS = {  # the widgets' defaults, as the frontend fills them in
    "temporal_strength": 0.2,
    "scene_cut_sensitivity": 0.6,
    "motion_adaptive": False,
    "tile_size": 0,
    "frames_per_chunk": 0,
    "codec": "h264",
    "quality": 16,
}


def _prepare(base: Path) -> dict:
    shutil.copy(SAMPLE_CLIP, base / "input" / SAMPLE_CLIP.name)
    write_clip(base / "input" / "short.mp4", frames=SHORT, size=MEMORY_SIZE)
    write_clip(base / "input" / "long.mp4", frames=LONG, size=MEMORY_SIZE)
    write_clip(base / "input" / "resume.mp4", frames=RESUME_FRAMES, size=(32, 32))
    return {}


comfyui = server_fixture(prepare=_prepare)


def _prompt(file: str, prefix: str, **node_inputs) -> dict:
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": file}},
        "2": {
            "class_type": "ParagonSR2Loader",
            "inputs": {"model_name": DEMO, "sharpness": "auto", "precision": "auto"},
        },
        "3": {
            "class_type": "ParagonSR2UpscaleVideoStreaming",
            "inputs": {"model": ["2", 0], "video": ["1", 0], **NODE_DEFAULTS, **node_inputs},
        },
        "4": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["3", 0], "filename_prefix": f"video/{prefix}", "format": "auto", "codec": "auto"},
        },
    }


def _node_file(comfyui, outputs: dict) -> bytes:
    """The streaming node's own MP4 (its preview entry points at it in ComfyUI's temp folder)."""
    ref = outputs["3"]["images"][0]
    assert ref["type"] == "temp", ref
    return comfyui.file_bytes(ref)


def test_streaming_node_keeps_frames_times_audio_and_save_video_remuxes(comfyui):
    outputs = comfyui.run(_prompt(SAMPLE_CLIP.name, "streamed"))
    saved, node, source = (
        video_facts(comfyui.video_bytes(outputs, "4")),
        video_facts(_node_file(comfyui, outputs)),
        video_facts(SAMPLE_CLIP.read_bytes()),
    )
    assert len(saved["times"]) == len(source["times"]) > 1
    np.testing.assert_allclose(saved["times"], source["times"], atol=1e-3)
    assert abs(saved["fps"] - source["fps"]) < 1e-3, (saved["fps"], source["fps"])
    assert saved["size"] == (source["size"][0] * 2, source["size"][1] * 2)
    assert source["audio"] and saved["audio"] is not None, "the audio track was lost"
    assert abs(saved["audio"] - source["audio"]) < 0.05, (saved["audio"], source["audio"])
    assert saved["packets"] == node["packets"], "Save Video re-encoded the node's video instead of remuxing it"


def _server_pid(comfyui) -> int:
    pid = server_pid(comfyui.port)
    if pid is None:
        pytest.skip("the server's process is not visible in /proc here")
    return pid


def _peak_rss_of_run(comfyui, pid: int, prompt: dict) -> int:
    """Peak RSS (bytes) of the server during one prompt, above its RSS before it: the kernel's
    high-water mark (VmHWM), reset first."""
    reset_peak(pid)
    before = process_memory(pid, "VmRSS")
    comfyui.run(prompt)
    return process_memory(pid, "VmHWM") - before


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_clip_length(comfyui):
    pid = _server_pid(comfyui)
    try:
        reset_peak(pid)
    except OSError as exc:
        pytest.skip(f"cannot reset the peak RSS of the server here ({exc})")
    comfyui.run(_prompt("short.mp4", "warm", quality=17))  # model, torch and codecs loaded once
    short = _peak_rss_of_run(comfyui, pid, _prompt("short.mp4", "short"))
    long = _peak_rss_of_run(comfyui, pid, _prompt("long.mp4", "long"))
    print(
        f"\nComfyUI {comfyui.version}: peak RSS above the run's start: {SHORT} frames {short / 2**20:.0f} MB, "
        f"{LONG} frames {long / 2**20:.0f} MB ({MEMORY_SIZE[0]}x{MEMORY_SIZE[1]})"
    )
    factor, slack = RSS_BOUND
    assert long <= max(short, 0) * factor + slack, (short, long)


@pytest.mark.slow
def test_interrupt_then_requeue_resumes_and_gives_the_uninterrupted_result(comfyui):
    work = comfyui.base / "output" / ".paragonsr2_resume"
    prompt = _prompt("resume.mp4", "resumed", codec="h264 lossless")
    client_id = uuid.uuid4().hex
    ws = comfyui.websocket(client_id)
    try:
        prompt_id = comfyui.queue(prompt, client_id)
        deadline = time.monotonic() + 300
        while not list(work.glob("*/seg-00000.mp4")):  # the first segment is kept: press Cancel
            assert time.monotonic() < deadline, "no segment was finished in 300 s"
            entry = comfyui.get(f"/history/{prompt_id}").get(prompt_id)
            assert not entry, f"the run ended before a segment was kept: {json.dumps(entry)[:2000]}"
            time.sleep(0.05)
        comfyui.post("/interrupt", {})
        stopped = None
        while stopped is None:
            message = ws.next_json(time.monotonic() + 120)
            assert message is not None, "no execution_interrupted within 120 s of POST /interrupt"
            assert message["type"] != "execution_success", "the run finished instead of stopping"
            if message["type"] == "execution_interrupted":
                stopped = message
    finally:
        ws.close()
    entry = comfyui.wait(prompt_id)
    assert entry["status"].get("status_str") != "success"
    assert list(work.glob("*/seg-00000.mp4")), "the finished segment was not kept"
    log_before = len(comfyui.log_text())
    resumed = video_facts(comfyui.video_bytes(comfyui.run(prompt), "4"))
    log = comfyui.log_text()[log_before:]
    assert f"resuming resume.mp4 at frame {SEGMENT}" in log, log[-3000:]
    assert not work.exists() or not any(p.is_dir() for p in work.iterdir()), "the work area was left behind"
    # The same video uninterrupted ("cpu" = the device "auto" picks under --cpu: not cached, same frames)
    whole = video_facts(
        comfyui.video_bytes(comfyui.run(_prompt("resume.mp4", "whole", codec="h264 lossless", device="cpu")), "4")
    )
    assert len(resumed["times"]) == RESUME_FRAMES
    np.testing.assert_array_equal(resumed["frames"], whole["frames"])
    np.testing.assert_allclose(resumed["times"], whole["times"], atol=1e-6)


def test_streaming_template_runs_on_the_sample_clip(comfyui):
    workflow = comfyui.get(f"/api/workflow_templates/{PACK_FOLDER}/ParagonSR2_video_streaming.json")
    prompt = ui_to_api(workflow, comfyui.object_info())
    assert {n["class_type"] for n in prompt.values()} == {
        "LoadVideo",
        "ParagonSR2Loader",
        "ParagonSR2UpscaleVideoStreaming",
        "SaveVideo",
    }
    save = next(k for k, n in prompt.items() if n["class_type"] == "SaveVideo")
    saved = video_facts(comfyui.video_bytes(comfyui.run(prompt), save))
    source = video_facts(SAMPLE_CLIP.read_bytes())
    assert len(saved["times"]) == len(source["times"]) and saved["audio"] is not None

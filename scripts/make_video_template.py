"""Write example_workflows/ParagonSR2_video_upscale.json (UI format) from the nodes' inputs.

Core Load Video -> Get Video Components -> ParagonSR2 Video Upscale -> Create Video (fps and
audio from the components) -> Save Video, on the pack's sample clip. The Video Upscale widget
values are its INPUT_TYPES defaults in declaration order (what the frontend stores), so rerun
this after adding or reordering an input of that node:

    python scripts/make_video_template.py
"""

import importlib.util
import json
import re
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("paragonsr2_launcher", PACK / "paragonsr2.py")
assert _spec is not None and _spec.loader is not None
_launcher = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_launcher)
_launcher.import_pack()
video_cls = _launcher.submodule("nodes.video_nodes").ParagonSR2VideoUpscale


def widget_defaults(cls) -> list:
    out = []
    for section in ("required", "optional"):
        for _name, (kind, *opts) in cls.INPUT_TYPES().get(section, {}).items():
            if isinstance(kind, list):
                out.append((opts[0] if opts else {}).get("default", kind[0]))
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                out.append(opts[0]["default"])
    return out


NOTE = "\n\n".join(
    [
        "### ParagonSR2 video upscaling (audio and frame rate kept)",
        "**Try it:** this pack ships a 2-second clip with sound, `assets/sample_clip.mp4` (inside "
        "`custom_nodes/ComfyUI-ParagonSR2`). Copy it into ComfyUI's `input` folder (or use **Load Video**'s "
        "*choose file to upload*), refresh, and queue.",
        "1. **Load Video** -> **Get Video Components** splits the file into frames, audio and fps.\n"
        "2. **ParagonSR2 Video Upscale** upscales the frames with temporal feature feedback (`temporal_strength`, "
        "0 = off), restarts at scene cuts (`scene_cut_sensitivity`, 0 = never); `motion_adaptive` blends less where "
        "things move. `device` accepts any name: a workflow saved with `cuda:1` runs on a one-GPU machine (falls "
        "back to ComfyUI's device, with a warning in the log).\n"
        "3. **Create Video** puts the upscaled frames back together with the original **audio** and **fps**; "
        "**Save Video** writes an MP4 to `output/video/`.",
        "**Long videos** (all frames must fit in RAM here): split the clip into consecutive batches and chain the "
        "nodes' `temporal_state` output into the next node's `temporal_state` input; the result equals one run over "
        "the whole clip. VideoHelperSuite's *Meta Batch Manager* queues every batch as a new prompt: connect its "
        "`meta_batch` output to our node's `meta_batch` input and the state carries over between those prompts too.",
        "**Older ComfyUI without Load Video / Create Video / Save Video**: use VideoHelperSuite's *Load Video "
        "(Upload)* (frames, audio, video_info) and *Video Combine* (set `frame_rate` from video_info, connect "
        "`audio`).",
    ]
)


def properties(name: str, cnr_id: str, ver: str) -> dict:
    return {"Node name for S&R": name, "cnr_id": cnr_id, "ver": ver}


def main() -> None:
    found = re.search(r'^version = "([^"]+)"', (PACK / "pyproject.toml").read_text(), re.M)
    if found is None:
        raise SystemExit("pyproject.toml has no version line")
    ver = found.group(1)

    def core(name):
        return properties(name, "comfy-core", "0.3.64")

    def ours(name):
        return properties(name, "comfyui-paragonsr2", ver)

    note = NOTE
    nodes = [
        {
            "id": 1,
            "type": "LoadVideo",
            "pos": [40, 100],
            "size": [320, 420],
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "VIDEO", "type": "VIDEO", "links": [1], "slot_index": 0}],
            "properties": core("LoadVideo"),
            "widgets_values": ["sample_clip.mp4", "image"],
        },
        {
            "id": 2,
            "type": "GetVideoComponents",
            "pos": [400, 100],
            "size": [260, 90],
            "flags": {},
            "order": 2,
            "mode": 0,
            "inputs": [{"name": "video", "type": "VIDEO", "link": 1}],
            "outputs": [
                {"name": "images", "type": "IMAGE", "links": [2], "slot_index": 0},
                {"name": "audio", "type": "AUDIO", "links": [3], "slot_index": 1},
                {"name": "fps", "type": "FLOAT", "links": [4], "slot_index": 2},
            ],
            "properties": core("GetVideoComponents"),
            "widgets_values": [],
        },
        {
            "id": 3,
            "type": "ParagonSR2Loader",
            "pos": [400, 260],
            "size": [320, 130],
            "flags": {},
            "order": 1,
            "mode": 0,
            "inputs": [],
            "outputs": [
                {"name": "paragonsr2_model", "type": "PARAGONSR2_MODEL", "links": [5], "slot_index": 0},
                {"name": "upscale_model", "type": "UPSCALE_MODEL", "links": None},
            ],
            "properties": ours("ParagonSR2Loader"),
            "widgets_values": ["(bundled) ParagonSR2_realtime_x2_demo.safetensors", "auto", "auto"],
        },
        {
            "id": 4,
            "type": "ParagonSR2VideoUpscale",
            "pos": [760, 100],
            "size": [340, 290],
            "flags": {},
            "order": 3,
            "mode": 0,
            "inputs": [
                {"name": "model", "type": "PARAGONSR2_MODEL", "link": 5},
                {"name": "frames", "type": "IMAGE", "link": 2},
                {"name": "temporal_state", "shape": 7, "type": "PARAGONSR2_TEMPORAL_STATE", "link": None},
                {"name": "meta_batch", "shape": 7, "type": "VHS_BatchManager", "link": None},
            ],
            "outputs": [
                {"name": "frames", "type": "IMAGE", "links": [6], "slot_index": 0},
                {"name": "temporal_state", "type": "PARAGONSR2_TEMPORAL_STATE", "links": None},
            ],
            "properties": ours("ParagonSR2VideoUpscale"),
            "widgets_values": widget_defaults(video_cls),
        },
        {
            "id": 5,
            "type": "CreateVideo",
            "pos": [1140, 100],
            "size": [270, 100],
            "flags": {},
            "order": 4,
            "mode": 0,
            "inputs": [
                {"name": "images", "type": "IMAGE", "link": 6},
                {"name": "audio", "shape": 7, "type": "AUDIO", "link": 3},
                {"name": "fps", "type": "FLOAT", "widget": {"name": "fps"}, "link": 4},
            ],
            "outputs": [{"name": "VIDEO", "type": "VIDEO", "links": [7], "slot_index": 0}],
            "properties": core("CreateVideo"),
            "widgets_values": [24],
        },
        {
            "id": 6,
            "type": "SaveVideo",
            "pos": [1450, 100],
            "size": [480, 420],
            "flags": {},
            "order": 5,
            "mode": 0,
            "inputs": [{"name": "video", "type": "VIDEO", "link": 7}],
            "outputs": [],
            "properties": core("SaveVideo"),
            "widgets_values": ["video/ParagonSR2", "auto", "auto"],
        },
        {
            "id": 7,
            "type": "MarkdownNote",
            "pos": [40, 580],
            "size": [700, 470],
            "flags": {},
            "order": 6,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {},
            "widgets_values": [note],
            "color": "#432",
            "bgcolor": "#653",
        },
    ]
    links = [
        [1, 1, 0, 2, 0, "VIDEO"],
        [2, 2, 0, 4, 1, "IMAGE"],
        [3, 2, 1, 5, 1, "AUDIO"],
        [4, 2, 2, 5, 2, "FLOAT"],
        [5, 3, 0, 4, 0, "PARAGONSR2_MODEL"],
        [6, 4, 0, 5, 0, "IMAGE"],
        [7, 5, 0, 6, 0, "VIDEO"],
    ]
    wf = {
        "id": "b2c9e0a4-6f1d-4d3b-8c57-0e9a1f3c7d42",
        "revision": 0,
        "last_node_id": 7,
        "last_link_id": 7,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
        "version": 0.4,
    }
    (PACK / "example_workflows" / "ParagonSR2_video_upscale.json").write_text(json.dumps(wf, indent=2) + "\n")


if __name__ == "__main__":
    main()

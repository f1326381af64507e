"""Write the two video example workflows (UI format) from the nodes' schemas:

- example_workflows/ParagonSR2_video_upscale.json: core Load Video -> Get Video Components ->
  ParagonSR2 Video Upscale -> Create Video (fps and audio from the components) -> Save Video.
- example_workflows/ParagonSR2_video_streaming.json: core Load Video -> ParagonSR2 Upscale
  Video (streaming) -> Save Video.

Both run on the pack's sample clip. Our nodes' widget values are their widget defaults in
schema order (what the frontend stores), so rerun this after adding or reordering an input of
either node:

    python scripts/make_video_template.py
"""

import importlib.util
import json
import re
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
OUT_DIR = PACK / "example_workflows"
_spec = importlib.util.spec_from_file_location("paragonsr2_launcher", PACK / "paragonsr2.py")
assert _spec is not None and _spec.loader is not None
_launcher = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_launcher)
_launcher.import_pack()
video_cls = _launcher.submodule("nodes.video_nodes").ParagonSR2VideoUpscale
streaming_cls = _launcher.submodule("nodes.stream_video_nodes").ParagonSR2UpscaleVideoStreaming

BUNDLED_MODEL = "(bundled) ParagonSR2_realtime_x2_demo.safetensors"
CORE_VERSION = "0.3.64"  # the ComfyUI whose frontend the templates were laid out in


def widget_defaults(cls) -> list:
    """Each widget's default in the V3 schema's input order; links (no widget) are skipped."""
    out = []
    for item in cls.define_schema().inputs:
        kind = str(item.io_type)
        if kind == "COMBO":
            out.append(item.default if item.default is not None else item.options[0])
        elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            out.append(item.default)
    return out


TRY_IT = (
    "**Try it:** this pack ships a 2-second clip with sound, `assets/sample_clip.mp4` (inside "
    "`custom_nodes/ComfyUI-ParagonSR2`). Copy it into ComfyUI's `input` folder (or use **Load Video**'s "
    "*choose file to upload*), refresh, and queue."
)

VIDEO_NOTE = "\n\n".join(
    [
        "### ParagonSR2 video upscaling (audio and frame rate kept)",
        TRY_IT,
        "1. **Load Video** -> **Get Video Components** splits the file into frames, audio and fps.\n"
        "2. **ParagonSR2 Video Upscale** upscales the frames with temporal feature feedback (`temporal_strength`, "
        "0 = off), restarts at scene cuts (`scene_cut_sensitivity`, 0 = never); `motion_adaptive` blends less where "
        "things move. `device` accepts any name: a workflow saved with `cuda:1` runs on a one-GPU machine (falls "
        "back to ComfyUI's device, with a warning in the log).\n"
        "3. **Create Video** puts the upscaled frames back together with the original **audio** and **fps**; "
        "**Save Video** writes an MP4 to `output/video/`.",
        "**Long videos:** this chain holds every frame in memory (about 14 MB per 640x360 frame). For anything "
        "longer than a few seconds use the *ParagonSR2 video streaming* template: Load Video -> **ParagonSR2 "
        "Upscale Video (streaming)** -> Save Video upscales at constant memory, keeps audio and frame times, and "
        "continues after Cancel. Batches chained through `temporal_state`, or VideoHelperSuite's *Meta Batch "
        "Manager* connected to `meta_batch`, also work.",
        "**Older ComfyUI without Load Video / Create Video / Save Video**: use VideoHelperSuite's *Load Video "
        "(Upload)* (frames, audio, video_info) and *Video Combine* (set `frame_rate` from video_info, connect "
        "`audio`).",
    ]
)

STREAMING_NOTE = "\n\n".join(
    [
        "### ParagonSR2 video upscaling for long videos (constant memory)",
        TRY_IT,
        "1. **Load Video** only names the file: nothing is decoded into memory.\n"
        "2. **ParagonSR2 Upscale Video (streaming)** decodes, upscales (temporal feedback: `temporal_strength`, "
        "0 = off; restarts at scene cuts) and encodes frame by frame, so memory stays the same for a 10-second or "
        "a 2-hour video. Frame times (variable frame rate too), audio and subtitles (copied, not re-encoded), colour "
        "tags and 10-bit depth (h264/h265) are kept. `codec`: h264 (plays everywhere), h265 and `h264 lossless` "
        "(exact pixels; the browser preview cannot play these two, the saved file is fine); `quality` is the CRF "
        "(lower = better).\n"
        "3. **Save Video** stores the node's MP4 as it is (no second encode) in `output/video/`.",
        "**Cancel is not lost work:** finished parts (240 frames each) are kept in `output/.paragonsr2_resume/`; "
        "queue the same video with the same settings again and it continues where it stopped (the log says so), with "
        "the same result as one uninterrupted run.",
        "**Short clips as images:** the *ParagonSR2 video upscale* template (Video Upscale on an IMAGE batch) holds "
        "every frame in memory; use it for short clips or when other image nodes come between.",
    ]
)


def properties(name: str, cnr_id: str, ver: str) -> dict:
    return {"Node name for S&R": name, "cnr_id": cnr_id, "ver": ver}


def pack_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (PACK / "pyproject.toml").read_text(), re.M)
    if found is None:
        raise SystemExit("pyproject.toml has no version line")
    return found.group(1)


def node(id_, type_, pos, size, order, inputs, outputs, props, widgets, **style) -> dict:
    """One node in the frontend's key order (the files diff cleanly against a UI save)."""
    return {
        "id": id_,
        "type": type_,
        "pos": pos,
        "size": size,
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": inputs,
        "outputs": outputs,
        "properties": props,
        "widgets_values": widgets,
        **style,
    }


class Builder:
    """The nodes both templates share, with the registry properties the frontend stores."""

    def __init__(self, ver: str):
        self.ver = ver

    def core(self, name: str) -> dict:
        return properties(name, "comfy-core", CORE_VERSION)

    def ours(self, name: str) -> dict:
        return properties(name, "comfyui-paragonsr2", self.ver)

    def load_video(self, id_, link) -> dict:
        outputs = [{"name": "VIDEO", "type": "VIDEO", "links": [link], "slot_index": 0}]
        return node(
            id_,
            "LoadVideo",
            [40, 100],
            [320, 420],
            0,
            [],
            outputs,
            self.core("LoadVideo"),
            ["sample_clip.mp4", "image"],
        )

    def loader(self, id_, pos, link) -> dict:
        outputs = [
            {"name": "paragonsr2_model", "type": "PARAGONSR2_MODEL", "links": [link], "slot_index": 0},
            {"name": "upscale_model", "type": "UPSCALE_MODEL", "links": None},
        ]
        props = self.ours("ParagonSR2Loader")
        return node(id_, "ParagonSR2Loader", pos, [320, 130], 1, [], outputs, props, [BUNDLED_MODEL, "auto", "auto"])

    def save_video(self, id_, pos, order, link) -> dict:
        inputs = [{"name": "video", "type": "VIDEO", "link": link}]
        props = self.core("SaveVideo")
        return node(id_, "SaveVideo", pos, [480, 420], order, inputs, [], props, ["video/ParagonSR2", "auto", "auto"])

    @staticmethod
    def note(id_, pos, size, order, text) -> dict:
        return node(id_, "MarkdownNote", pos, size, order, [], [], {}, [text], color="#432", bgcolor="#653")


def workflow(uuid: str, nodes: list, links: list) -> dict:
    return {
        "id": uuid,
        "revision": 0,
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": max(link[0] for link in links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
        "version": 0.4,
    }


def video_upscale_template(b: Builder) -> dict:
    nodes = [
        b.load_video(1, link=1),
        node(
            2,
            "GetVideoComponents",
            [400, 100],
            [260, 90],
            2,
            [{"name": "video", "type": "VIDEO", "link": 1}],
            [
                {"name": "images", "type": "IMAGE", "links": [2], "slot_index": 0},
                {"name": "audio", "type": "AUDIO", "links": [3], "slot_index": 1},
                {"name": "fps", "type": "FLOAT", "links": [4], "slot_index": 2},
            ],
            b.core("GetVideoComponents"),
            [],
        ),
        b.loader(3, [400, 260], link=5),
        node(
            4,
            "ParagonSR2VideoUpscale",
            [760, 100],
            [340, 290],
            3,
            [
                {"name": "model", "type": "PARAGONSR2_MODEL", "link": 5},
                {"name": "frames", "type": "IMAGE", "link": 2},
                {"name": "temporal_state", "shape": 7, "type": "PARAGONSR2_TEMPORAL_STATE", "link": None},
                {"name": "meta_batch", "shape": 7, "type": "VHS_BatchManager", "link": None},
            ],
            [
                {"name": "frames", "type": "IMAGE", "links": [6], "slot_index": 0},
                {"name": "temporal_state", "type": "PARAGONSR2_TEMPORAL_STATE", "links": None},
            ],
            b.ours("ParagonSR2VideoUpscale"),
            widget_defaults(video_cls),
        ),
        node(
            5,
            "CreateVideo",
            [1140, 100],
            [270, 100],
            4,
            [
                {"name": "images", "type": "IMAGE", "link": 6},
                {"name": "audio", "shape": 7, "type": "AUDIO", "link": 3},
                {"name": "fps", "type": "FLOAT", "widget": {"name": "fps"}, "link": 4},
            ],
            [{"name": "VIDEO", "type": "VIDEO", "links": [7], "slot_index": 0}],
            b.core("CreateVideo"),
            [24],
        ),
        b.save_video(6, [1450, 100], 5, link=7),
        b.note(7, [40, 580], [700, 470], 6, VIDEO_NOTE),
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
    return workflow("b2c9e0a4-6f1d-4d3b-8c57-0e9a1f3c7d42", nodes, links)


def video_streaming_template(b: Builder) -> dict:
    nodes = [
        b.load_video(1, link=1),
        b.loader(2, [40, 560], link=2),
        node(
            3,
            "ParagonSR2UpscaleVideoStreaming",
            [400, 100],
            [360, 380],
            2,
            [
                {"name": "model", "type": "PARAGONSR2_MODEL", "link": 2},
                {"name": "video", "type": "VIDEO", "link": 1},
            ],
            [{"name": "video", "type": "VIDEO", "links": [3], "slot_index": 0}],
            b.ours("ParagonSR2UpscaleVideoStreaming"),
            widget_defaults(streaming_cls),
        ),
        b.save_video(4, [800, 100], 3, link=3),
        b.note(5, [400, 540], [700, 430], 4, STREAMING_NOTE),
    ]
    links = [[1, 1, 0, 3, 1, "VIDEO"], [2, 2, 0, 3, 0, "PARAGONSR2_MODEL"], [3, 3, 0, 4, 0, "VIDEO"]]
    return workflow("5d0f3a8e-2c47-4b1e-9a6d-7f3e8b21c905", nodes, links)


TEMPLATES = {
    "ParagonSR2_video_upscale": video_upscale_template,
    "ParagonSR2_video_streaming": video_streaming_template,
}


def main() -> None:
    builder = Builder(pack_version())
    for name, build in TEMPLATES.items():
        path = OUT_DIR / f"{name}.json"
        path.write_text(json.dumps(build(builder), indent=2) + "\n")
        print(f"wrote {path.relative_to(PACK)}")


if __name__ == "__main__":
    main()

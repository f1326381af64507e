"""nodes/comfy_io.py and its standalone stand-in (nodes/io_standin.py): what node modules rely on
when no ComfyUI is installed. tests/test_saved_workflows.py checks the same node classes against
the real comfy_api when COMFYUI_DIR is set."""

from enum import Enum

import pytest

from packlib import import_pack, run_node
from paragonsr2_pack.nodes import comfy_io, io_standin

io = comfy_io.io


def test_standalone_uses_the_stand_in_with_its_features():
    assert not comfy_io.IN_COMFYUI_API and io is io_standin
    assert comfy_io.HAS_SEARCH_ALIASES and not comfy_io.HAS_DYNAMIC_COMBO


def test_schema_drops_fields_this_version_lacks():
    # price_badge exists in 0.33's Schema only; a node naming it must still load elsewhere.
    s = comfy_io.schema(node_id="X", display_name="X node", search_aliases=["x"], price_badge=None)
    assert s.node_id == "X" and s.search_aliases == ["x"] and not hasattr(s, "price_badge")


class Mode(Enum):
    A = "a"
    B = "b"


class Sample(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return comfy_io.schema(
            node_id="Sample",
            inputs=[
                io.Image.Input("image"),
                io.Int.Input("n", default=3, min=0, max=9, tooltip="n"),
                io.Combo.Input("mode", options=Mode),
                io.Custom("THING").Input("thing", optional=True),
                io.String.Input("label", default="hi", optional=True),
            ],
            outputs=[io.Image.Output(display_name="image"), io.Int.Output(display_name="n")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, n=3, mode="a", thing=None, label="hi"):
        return io.NodeOutput(image, n * 2, ui={"text": [f"{mode}{label}{cls.hidden.unique_id}"]})


def test_stand_in_node_runs_like_a_v3_node():
    out = Sample.execute(image="img", n=4, mode="b")
    assert out.args == ("img", 8) and out[1] == 8 and out.ui == {"text": ["bhiNone"]}
    assert run_node(Sample, hidden={"unique_id": "7"}, image="img") == ("img", 6)
    assert [i.id for i in comfy_io.node_inputs(Sample)] == ["image", "n", "mode", "thing", "label"]
    mode = comfy_io.node_inputs(Sample)[2]
    assert mode.options == ["a", "b"] and mode.default is None and mode.min is None


def test_stand_in_serves_the_classic_view_comfyui_derives():
    spec = Sample.INPUT_TYPES()
    assert list(spec) == ["required", "optional", "hidden"]
    assert spec["required"]["image"] == ("IMAGE", {})
    assert spec["required"]["n"] == ("INT", {"tooltip": "n", "default": 3, "min": 0, "max": 9})
    assert spec["required"]["mode"] == ("COMBO", {"options": ["a", "b"]})
    assert spec["optional"]["thing"] == ("THING", {}) and spec["optional"]["label"][1]["default"] == "hi"
    assert spec["hidden"] == {"unique_id": ("UNIQUE_ID",)}


def test_duplicate_ids_are_refused():
    class Twice(Sample):
        @classmethod
        def define_schema(cls):
            return comfy_io.schema(node_id="Twice", inputs=[io.Int.Input("a"), io.Float.Input("a")])

    with pytest.raises(ValueError, match="unique"):
        Twice.INPUT_TYPES()


@pytest.mark.parametrize("node_id", ["ParagonSR2Upscale", "ParagonSR2VideoUpscale"])
def test_any_device_name_validates(node_id):
    node = import_pack().NODE_CLASS_MAPPINGS[node_id]
    assert node.validate_inputs(device="cuda:7") is True and node.validate_inputs() is True
    assert node.validate_inputs(device=3) is not True

"""Workflows saved before the V3 conversion still load and give the same pixels.

tests/fixtures/workflows/ holds the example workflows as the 0.3.64 frontend saves them (UI
format, positional widgets_values) with non-default widgets, and the pixels the classic nodes
gave for them; tests/fixtures/classic_node_definitions.json holds the classic nodes' INPUT_TYPES.
Here: the V3 nodes map those widget values to the same inputs and give the same pixels, and
their definitions (names, order, types, defaults, outputs) equal the classic ones, through the
stand-in ``io`` and, for each ComfyUI configured as for tests/test_real_comfyui.py
(COMFYUI_SERVERS, or COMFYUI_DIR with COMFYUI_PYTHON), through its real ``comfy_api`` in a
subprocess of its Python (the browser stage of .ci runs the same fixtures in
real frontends).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from comfyui_probe.server import install_params

from packlib import PACK_ROOT, import_pack, load_file_module

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WORKFLOWS = FIXTURES / "workflows"
CLASSIC = json.loads((FIXTURES / "classic_node_definitions.json").read_text())["nodes"]


maker = load_file_module("paragonsr2_make_fixtures", WORKFLOWS / "make_fixtures.py")


def definition(node_cls) -> dict:
    """A node's definition in the form classic_node_definitions.json records (tooltips left out)."""
    spec = node_cls.INPUT_TYPES()
    inputs, order = {}, {}
    for section in ("required", "optional"):
        order[section] = list(spec.get(section, {}))
        for name, (kind, *opts) in spec.get(section, {}).items():
            options = {k: v for k, v in (opts[0] if opts else {}).items() if k != "tooltip"}
            if isinstance(kind, list) or kind == "COMBO":
                listed = kind if isinstance(kind, list) else options.get("options")
                options["options"] = None if name in ("model_name", "device") else list(listed)
                kind = "COMBO"
            inputs[name] = {**options, "type": str(kind)}
    return {"input_order": order, "inputs": inputs, "hidden": list(spec.get("hidden", {}))}


def _expected_outputs(node_cls) -> tuple[list, list]:
    outputs = node_cls.define_schema().outputs
    return [str(o.io_type) for o in outputs], [o.display_name for o in outputs]


@pytest.mark.parametrize("node_id", sorted(CLASSIC))
def test_v3_definition_equals_the_classic_one(node_id):
    pack = import_pack()
    node_cls = pack.NODE_CLASS_MAPPINGS[node_id]
    classic = CLASSIC[node_id]
    got = definition(node_cls)
    assert got["input_order"] == classic["input_order"]
    for name, recorded in classic["inputs"].items():
        assert got["inputs"][name] == recorded, name
    assert got["hidden"] == classic["hidden"]
    types, names = _expected_outputs(node_cls)
    assert (types, names) == (classic["output"], classic["output_name"])
    node_schema = node_cls.define_schema()
    assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] == node_schema.display_name == classic["display_name"]
    assert node_schema.category == classic["category"]
    assert bool(node_schema.is_output_node) == classic["output_node"]
    assert bool(node_schema.is_experimental) == classic["experimental"]


@pytest.mark.parametrize("node_id", sorted(CLASSIC))
def test_schema_order_is_the_frontends_widget_order(node_id):
    """The frontend lists required inputs, then optional ones; saved values follow that order,
    so the schema keeps every required input before the optional ones."""
    node_cls = import_pack().NODE_CLASS_MAPPINGS[node_id]
    order = definition(node_cls)["input_order"]
    from paragonsr2_pack.nodes.comfy_io import node_inputs

    assert [i.id for i in node_inputs(node_cls)] == order["required"] + order["optional"]


@pytest.mark.parametrize("name", sorted(maker.CASES))
def test_saved_workflow_gives_the_recorded_pixels(name):
    from PIL import Image

    workflow = json.loads((WORKFLOWS / name).read_text())
    nodes = import_pack().NODE_CLASS_MAPPINGS
    case = maker.CASES[name]
    for node in workflow["nodes"]:
        if node["type"] in nodes:
            # Every saved value maps to an input of the V3 node (count and names).
            assert node["type"] in case and node["widgets_values"] == case[node["type"]]
            maker.widget_inputs(nodes[node["type"]], node["widgets_values"])
    expected = np.asarray(Image.open(WORKFLOWS / maker.expected_name(name)))
    got = maker.run_case(nodes, case)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_widget_values_map_by_name():
    """A value lands on the input it was saved for (not merely the right count)."""
    video = import_pack().NODE_CLASS_MAPPINGS["ParagonSR2VideoUpscale"]
    values = maker.widget_inputs(video, maker.CASES["video_factor_start_frame.json"]["ParagonSR2VideoUpscale"])
    assert values == {
        "temporal_strength": 0.35,
        "scene_cut_sensitivity": 0.8,
        "motion_adaptive": True,
        "tile_size": 32,
        "frames_per_chunk": 2,
        "device": "cpu",
        "start_frame": 2,
        "output_size": "factor",
        "output_factor": 1.5,
        "output_long_side": 2048,
    }


# -- the real comfy_api ---------------------------------------------------------------------------


@pytest.mark.parametrize("install", install_params())
def test_real_comfy_api_schema_equals_the_classic_definition(tmp_path, install):
    """Through a real comfy_api: what ComfyUI serves in /object_info for each node
    (GET_NODE_INFO_V1) has the classic input names, order, types, defaults and outputs, and the
    saved workflows give the recorded pixels with the real io.ComfyNode classes."""
    comfy_dir = str(install.checkout)
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path[:0] = [{comfy_dir!r}, {str(Path(__file__).resolve().parent)!r}]\n"
        "sys.argv = [sys.argv[0], '--cpu']\n"
        "import comfy.options\n"
        "comfy.options.enable_args_parsing()\n"
        "from comfy_api.latest import io  # noqa: F401  (the real one must import)\n"
        "import packlib\n"
        "pack = packlib.import_pack()\n"
        "from paragonsr2_pack.nodes import comfy_io\n"
        "assert comfy_io.IN_COMFYUI_API, 'the pack did not pick up the real comfy_api'\n"
        "info = {k: c.GET_NODE_INFO_V1() for k, c in pack.NODE_CLASS_MAPPINGS.items()}\n"
        "flags = dict(search_aliases=comfy_io.HAS_SEARCH_ALIASES, dynamic_combo=comfy_io.HAS_DYNAMIC_COMBO)\n"
        "import importlib.util, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('maker', {str(WORKFLOWS / 'make_fixtures.py')!r})\n"
        "maker = importlib.util.module_from_spec(spec); spec.loader.exec_module(maker)\n"
        "from PIL import Image\n"
        "diffs = {}\n"
        "for name, case in maker.CASES.items():\n"
        "    got = maker.run_case(pack.NODE_CLASS_MAPPINGS, case).astype(int)\n"
        "    want = np.asarray(Image.open(maker.HERE / maker.expected_name(name))).astype(int)\n"
        "    diffs[name] = int(np.abs(got - want).max()) if got.shape == want.shape else 255\n"
        "print(json.dumps(dict(info=info, flags=flags, diffs=diffs), default=str))\n"
    )
    run = subprocess.run(
        [install.python, str(script)],
        cwd=comfy_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0 and "No module named 'torch'" in run.stderr:
        pytest.skip(f"that ComfyUI's Python has no torch: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"real comfy_api features: {result['flags']}; saved-workflow pixel differences: {result['diffs']}")
    # The V3 classes built on the real io.ComfyNode give the recorded pixels too.
    assert set(result["diffs"]) == set(maker.CASES) and max(result["diffs"].values()) <= 1
    for node_id, classic in CLASSIC.items():
        info = result["info"][node_id]
        assert info["input_order"].get("required", []) == classic["input_order"]["required"], node_id
        assert info["input_order"].get("optional", []) == classic["input_order"]["optional"], node_id
        for name, recorded in classic["inputs"].items():
            section = "required" if name in classic["input_order"]["required"] else "optional"
            kind, options = info["input"][section][name]
            options = {k: v for k, v in options.items() if k != "tooltip"}
            # V3 spells out two settings the classic nodes left at their defaults.
            assert options.pop("multiselect", False) is False and options.pop("multiline", False) is False
            if kind == "COMBO":
                options["options"] = None if name in ("model_name", "device") else options["options"]
            assert {**options, "type": kind} == recorded, (node_id, name)
        hidden = list(info["input"].get("hidden", {}))
        if classic["output_node"]:  # ComfyUI hands every V3 output node these two; no widget, no socket
            hidden = [h for h in hidden if h not in ("prompt", "extra_pnginfo")]
        assert hidden == classic["hidden"]
        assert info["output"] == classic["output"] and info["output_name"] == classic["output_name"]
        assert info["display_name"] == classic["display_name"] and info["category"] == classic["category"]
        assert bool(info["output_node"]) == classic["output_node"]
        assert bool(info["experimental"]) == classic["experimental"]


def test_fixture_workflows_are_the_example_workflows_with_other_widgets():
    """The fixtures stay copies of what ships: same node types and links as the examples."""
    for name, case in maker.CASES.items():
        fixture = json.loads((WORKFLOWS / name).read_text())
        example = json.loads((PACK_ROOT / "example_workflows" / case["source"]).read_text())
        example_types = [n["type"] for n in example["nodes"]]
        assert [n["type"] for n in fixture["nodes"]][: len(example_types)] == example_types
        assert fixture["links"][: len(example["links"])] == example["links"]
